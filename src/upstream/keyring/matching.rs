//! Matching a pull-secret key against an image, the kubelet's way (`URLsMatch`) made stricter
//! where the module above says: a key parsed into host globs, port and path segments
//! ([`Pattern`]), an image reference parsed the same way ([`Target`]).

/// A parsed key: host labels as globs, port, path segments.
#[derive(Clone, Debug)]
pub(super) struct Pattern {
    labels: Vec<Glob>,
    port: Option<String>,
    path: Vec<String>,
    /// `host[:port][/path]` without scheme, `/v1`/`/v2` or trailing slash: what specificity is
    /// ordered by.
    pub(super) normalized: String,
}

impl Pattern {
    /// Parses a key as the kubelet does: without its scheme and a leading `/v1/` or `/v2/`.
    pub(super) fn parse(key: &str) -> Result<Pattern, String> {
        let rest = strip_scheme(key.trim());
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // A path ends at a query or fragment, as url.Parse has it.
        let path = tail.split(['?', '#']).next().unwrap_or("");
        let path = ["/v1/", "/v2/"]
            .iter()
            .find_map(|v| path.strip_prefix(v))
            .unwrap_or(path);
        // user@host: url.Parse keeps only the host.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err("has no registry host".into());
        }
        let labels = if ipv6_literal(authority).is_some() {
            vec![Glob::literal(&host)]
        } else {
            host.split('.')
                .map(|label| {
                    Glob::compile(label)
                        .map_err(|e| format!("host label {label:?} is not a valid glob ({e})"))
                })
                .collect::<Result<_, _>>()?
        };
        let path: Vec<String> = segments(path).map(str::to_string).collect();
        let mut normalized = authority.to_ascii_lowercase();
        for segment in &path {
            normalized.push('/');
            normalized.push_str(segment);
        }
        Ok(Pattern {
            labels,
            port,
            path,
            normalized,
        })
    }

    /// Whether the kubelet's `URLsMatch` (with whole path segments) holds.
    pub(super) fn matches(&self, target: &Target) -> bool {
        self.port == target.port
            && self.labels.len() == target.labels.len()
            && target.path.len() >= self.path.len()
            && self.path.iter().zip(&target.path).all(|(k, t)| k == t)
            && self
                .labels
                .iter()
                .zip(&target.labels)
                .all(|(glob, label)| glob.matches(label))
    }

    /// Whether this is the kubelet's default-registry key (`index.docker.io` after stripping
    /// the scheme and `/v1/`).
    pub(super) fn is_docker_hub_default(&self) -> bool {
        self.normalized == "index.docker.io"
    }
}

/// The image a lookup is for.
#[derive(Debug)]
pub(super) struct Target {
    labels: Vec<String>,
    port: Option<String>,
    path: Vec<String>,
}

impl Target {
    /// `host[:port]/path[:tag][@digest]`; `None` when there is no host to match.
    pub(super) fn parse(image: &str) -> Option<Target> {
        let rest = strip_scheme(image.trim());
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = split_host_port(authority).ok()?;
        if host.is_empty() {
            return None;
        }
        let labels = if ipv6_literal(authority).is_some() {
            vec![host]
        } else {
            host.split('.').map(str::to_string).collect()
        };
        // Drop a digest, then a tag (a ':' after the last '/').
        let path = path.split('@').next().unwrap_or("");
        let path = match path.rfind(':') {
            Some(colon) if !path[colon..].contains('/') => &path[..colon],
            _ => path,
        };
        Some(Target {
            labels,
            port,
            path: segments(path).map(str::to_string).collect(),
        })
    }

    /// Whether the image is on Docker Hub, where the kubelet falls back to the
    /// `https://index.docker.io/v1/` entry.
    pub(super) fn is_docker_hub(&self) -> bool {
        self.port.is_none()
            && matches!(
                self.labels.join(".").as_str(),
                "docker.io" | "index.docker.io" | "registry-1.docker.io"
            )
    }
}

/// `s` without a leading `http://` or `https://` (any case).
fn strip_scheme(s: &str) -> &str {
    for scheme in ["https://", "http://"] {
        // Compared as bytes: a multi-byte character may straddle the scheme's length.
        if s.as_bytes()
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            return &s[scheme.len()..];
        }
    }
    s
}

/// The non-empty `/`-separated segments of a path.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// `authority` without its `[` when it is a bracketed IPv6 literal (`[::1]:5000`), not a glob
/// class (`[a-c]*.example.com`).
fn ipv6_literal(authority: &str) -> Option<&str> {
    let inner = authority.strip_prefix('[')?;
    let bracketed = inner.split(']').next().unwrap_or("");
    bracketed.contains(':').then_some(inner)
}

/// (lowercased host, port) of `host[:port]` or `[v6]:port`, as Go's `net.SplitHostPort`, with a
/// missing port as `None`.
fn split_host_port(authority: &str) -> Result<(String, Option<String>), String> {
    let (host, port) = if let Some(v6) = ipv6_literal(authority) {
        let (host, after) = v6
            .split_once(']')
            .ok_or("has an unclosed '[' in its host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("has text after its bracketed host")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.to_string()),
        Some(p) => return Err(format!("port {p:?} is not a number")),
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// A host label pattern with Go `filepath.Match` syntax: `*`, `?`, `[class]`, `\` escapes.
#[derive(Clone, Debug)]
struct Glob(Vec<Token>);

#[derive(Clone, Debug)]
enum Token {
    /// Any run of characters.
    Star,
    /// Any one character.
    Any,
    /// This character.
    Literal(char),
    /// One character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// A pattern matching exactly `text`.
    fn literal(text: &str) -> Glob {
        Glob(text.chars().map(Token::Literal).collect())
    }

    /// Compiles `pattern`; an error where `filepath.Match` would return `ErrBadPattern`.
    fn compile(pattern: &str) -> Result<Glob, &'static str> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => Token::Literal(chars.next().ok_or("trailing '\\'")?),
                '[' => {
                    let negated = chars.next_if_eq(&'^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let lo = match chars.next() {
                            None => return Err("unclosed '['"),
                            Some(']') if !ranges.is_empty() => break,
                            Some(']' | '-') => return Err("bad character class"),
                            Some('\\') => chars.next().ok_or("trailing '\\'")?,
                            Some(c) => c,
                        };
                        let hi = if chars.next_if_eq(&'-').is_some() {
                            match chars.next() {
                                None => return Err("unclosed '['"),
                                Some(']' | '-') => return Err("bad character class"),
                                Some('\\') => chars.next().ok_or("trailing '\\'")?,
                                Some(c) => c,
                            }
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Literal(c.to_ascii_lowercase()),
            });
        }
        Ok(Glob(tokens))
    }

    /// Whether the whole of `text` matches.
    pub(super) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let tokens = &self.0;
        let (mut t, mut s) = (0, 0);
        // The last star and the text position it was tried at, for backtracking.
        let mut star: Option<(usize, usize)> = None;
        while s < text.len() {
            if let Some(token) = tokens.get(t) {
                if let Token::Star = token {
                    star = Some((t, s));
                    t += 1;
                    continue;
                }
                if token.matches_one(text[s]) {
                    t += 1;
                    s += 1;
                    continue;
                }
            }
            match star {
                Some((st, ss)) => {
                    t = st + 1;
                    s = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            }
        }
        tokens[t..].iter().all(|token| matches!(token, Token::Star))
    }
}

impl Token {
    /// Whether this (non-star) token matches the character `c`.
    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Literal(l) => *l == c,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}
