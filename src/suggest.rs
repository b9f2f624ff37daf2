//! "Did you mean …?": the close matches of a mistyped name, for errors a newcomer can act on.

/// The candidates close to `wanted`, closest first (at most three): same text ignoring case,
/// one contains the other, or a small edit distance relative to the length.
pub fn close_matches<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(usize, &'a str)> = candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            let distance = strsim::levenshtein(&wanted_lower, &lower);
            let near = distance <= (wanted.len().max(3) / 3).max(1)
                || (wanted_lower.len() >= 3
                    && (lower.contains(&wanted_lower) || wanted_lower.contains(&lower)));
            near.then_some((distance, candidate))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// `"; did you mean a or b?"`, or nothing when no candidate is close.
pub fn did_you_mean<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match close_matches(wanted, candidates).as_slice() {
        [] => String::new(),
        [one] => format!("; did you mean {one}?"),
        [init @ .., last] => format!("; did you mean {} or {last}?", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_names() {
        let roles = [
            "system:image-puller",
            "system:image-pusher",
            "registry-viewer",
            "view",
        ];
        assert_eq!(
            close_matches("system:image-pullr", roles),
            vec!["system:image-puller", "system:image-pusher"]
        );
        assert_eq!(
            did_you_mean("viewer", roles),
            "; did you mean view or registry-viewer?"
        );
        assert_eq!(
            did_you_mean("project-z", ["project-a", "kube-system"]),
            "; did you mean project-a?"
        );
        assert_eq!(did_you_mean("zzz", roles), "");
    }
}
