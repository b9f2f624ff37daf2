//! Docker config Secrets (`kubernetes.io/dockerconfigjson` and the legacy
//! `kubernetes.io/dockercfg`), as both authorities read them: which types are kept, the check a
//! Secret must pass (naming the field that fails), and how several are chained into one keyring
//! (docs/behaviour.md §8).

use k8s_openapi::api::core::v1::Secret;
use secrecy::SecretString;

use super::keyring::{Keyring, KeyringError};

/// The Secret types regate keeps, and the data key each holds its JSON under.
pub const SECRET_TYPES: [(&str, &str); 2] = [
    ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
    ("kubernetes.io/dockercfg", ".dockercfg"),
];

/// A docker config Secret as the authority keeps it; the JSON is never in `Debug` output.
#[derive(Clone, Debug)]
pub struct PullSecret {
    /// `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`.
    pub secret_type: String,
    /// The JSON document (`{"auths": {...}}` or the legacy `{REGISTRY: {...}}`).
    pub config: SecretString,
    /// `config` parsed as a keyring once, when loaded; `Err` holds why it is unusable (the
    /// [`KeyringError`] message, which never quotes the document).
    pub keyring: Result<Keyring, String>,
}

/// Checks that `secret` is of a type in [`SECRET_TYPES`] and holds, under that type's key, JSON
/// of the type's shape; returns the reason it is not, naming the field.
pub fn check_secret(secret: &Secret) -> Result<PullSecret, String> {
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    let Some((_, key)) = SECRET_TYPES.iter().find(|(t, _)| *t == secret_type) else {
        return Err(format!(
            "type: {secret_type:?} is not kept by regate; use one of {}",
            SECRET_TYPES.map(|(t, _)| t).join(", ")
        ));
    };
    let data = secret.data.as_ref().and_then(|d| d.get(*key));
    let string_data = secret.string_data.as_ref().and_then(|d| d.get(*key));
    let bytes: &[u8] = match (string_data, data) {
        (Some(text), _) => text.as_bytes(),
        (None, Some(bytes)) => &bytes.0,
        (None, None) => {
            return Err(format!(
                "data.{key} is missing; a {secret_type} Secret holds its JSON there"
            ));
        }
    };
    let field = format!("data.{key}");
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{field} is not UTF-8 text"))?;
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{field} is not JSON: {e}"))?;
    let registries = if *key == ".dockerconfigjson" {
        json.get("auths").ok_or_else(|| {
            format!(
                "{field} has no \"auths\" object (expected {{\"auths\": {{REGISTRY: {{...}}}}}})"
            )
        })?
    } else {
        &json
    };
    let Some(registries) = registries.as_object() else {
        return Err(format!(
            "{field}: registries must be a JSON object keyed by registry"
        ));
    };
    if let Some((registry, _)) = registries.iter().find(|(_, entry)| !entry.is_object()) {
        return Err(format!(
            "{field}: the entry of {registry:?} must be a JSON object"
        ));
    }
    Ok(PullSecret {
        secret_type: secret_type.to_string(),
        config: SecretString::from(text.to_string()),
        keyring: Keyring::parse(bytes).map_err(|e: KeyringError| e.to_string()),
    })
}

/// The keyrings of `secrets` (namespace, name, parsed document) chained in the order given; one
/// that did not parse is skipped with a warning naming it and why (never its content).
pub fn chain_pull_secrets<'a>(
    secrets: impl IntoIterator<Item = (&'a str, &'a str, &'a Result<Keyring, String>)>,
) -> Keyring {
    let mut keyring = Keyring::default();
    for (ns, name, parsed) in secrets {
        match parsed {
            Ok(parsed) => keyring = keyring.chain(parsed.clone()),
            Err(reason) => tracing::warn!(
                namespace = ns,
                secret = name,
                "pull secret {ns}/{name} skipped, it is not a usable docker config: {reason}"
            ),
        }
    }
    keyring
}
