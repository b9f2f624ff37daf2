//! Validating the file's sections into settings: durations, the token lifetime's minimum,
//! connections and failed logins, remotes and token-server mode. Every error names the file,
//! the field and the fix.

use super::file::*;
use super::*;

pub(super) fn duration(
    origin: &str,
    field: &'static str,
    value: Option<&str>,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v).map_err(|e| ConfigError::Field {
            origin: origin.to_string(),
            field,
            reason: format!("{v:?} is not a duration ({e}); write e.g. 30s, 5m or 1h"),
        }),
    }
}

/// The `connections:` section, validated: deadlines of at least a second, a cap of at least one.
pub(super) fn connections(
    section: &ConnectionsSection,
    origin: &str,
) -> Result<ConnectionSettings, ConfigError> {
    let d = ConnectionSettings::default();
    let at_least_a_second = |field: &'static str, value: Option<&str>, default| {
        let v = duration(origin, field, value, default)?;
        if v < std::time::Duration::from_secs(1) {
            return Err(ConfigError::Field {
                origin: origin.to_string(),
                field,
                reason: "must be at least 1s".into(),
            });
        }
        Ok(v)
    };
    let at_least_one = |field: &'static str, value: Option<usize>, default: usize| match value
        .unwrap_or(default)
    {
        0 => Err(ConfigError::Field {
            origin: origin.to_string(),
            field,
            reason: "must be at least 1".into(),
        }),
        n => Ok(n),
    };
    let max = at_least_one("connections.max", section.max, d.max)?;
    let max_in_flight = at_least_one(
        "connections.max_in_flight",
        section.max_in_flight,
        d.max_in_flight,
    )?;
    let max_in_flight_per_client = at_least_one(
        "connections.max_in_flight_per_client",
        section.max_in_flight_per_client,
        d.max_in_flight_per_client,
    )?;
    Ok(ConnectionSettings {
        header_timeout: at_least_a_second(
            "connections.header_timeout",
            section.header_timeout.as_deref(),
            d.header_timeout,
        )?,
        idle_timeout: at_least_a_second(
            "connections.idle_timeout",
            section.idle_timeout.as_deref(),
            d.idle_timeout,
        )?,
        max,
        max_in_flight,
        max_in_flight_per_client,
        request_timeout: at_least_a_second(
            "connections.request_timeout",
            section.request_timeout.as_deref(),
            d.request_timeout,
        )?,
    })
}

/// The `failed_logins:` section, validated.
pub(super) fn failed_logins(
    section: &FailedLoginsSection,
    origin: &str,
) -> Result<FailedLoginSettings, ConfigError> {
    let d = FailedLoginSettings::default();
    let refill = duration(
        origin,
        "failed_logins.refill",
        section.refill.as_deref(),
        d.refill,
    )?;
    if refill.is_zero() {
        return Err(ConfigError::Field {
            origin: origin.to_string(),
            field: "failed_logins.refill",
            reason: "must be longer than 0s (set failed_logins.burst: 0 to turn limiting off)"
                .into(),
        });
    }
    let replicas = section.replicas.unwrap_or(1);
    if replicas == 0 {
        return Err(ConfigError::Field {
            origin: origin.to_string(),
            field: "failed_logins.replicas",
            reason: "must be at least 1 (the number of replicas behind one address)".into(),
        });
    }
    // Each replica counts alone (docs/architecture.md, "Replicas"): a share of the burst and of
    // the refill each, so N replicas together allow about what one would.
    Ok(FailedLoginSettings {
        burst: section.burst.unwrap_or(d.burst).div_ceil(replicas),
        refill: refill.saturating_mul(replicas),
    })
}

/// Shortest registry token lifetime: the Docker token spec has clients assume 60 s, and skopeo
/// and the Docker engine reuse a token that long whatever `expires_in` says.
pub const MIN_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// A registry token lifetime: a duration of at least [`MIN_TOKEN_LIFETIME`].
pub(super) fn token_lifetime(
    origin: &str,
    field: &'static str,
    value: Option<&str>,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    let lifetime = duration(origin, field, value, default)?;
    if lifetime < MIN_TOKEN_LIFETIME {
        return Err(ConfigError::Field {
            origin: origin.to_string(),
            field,
            reason: format!(
                "{} is shorter than the minimum of 60s (clients reuse a token for 60 s); write \
                 60s or more",
                humantime::format_duration(lifetime)
            ),
        });
    }
    Ok(lifetime)
}

/// Validates `remotes:`.
pub(super) fn remotes(
    sections: Vec<RemoteSection>,
    origin: &str,
) -> Result<Vec<RemoteSettings>, ConfigError> {
    let field = |reason: String| ConfigError::Field {
        origin: origin.to_string(),
        field: "remotes",
        reason,
    };
    let mut remotes: Vec<RemoteSettings> = Vec::new();
    for section in sections {
        let namespace = section.namespace;
        // A namespace is a repository name's first component: check it as one.
        crate::route::Name::parse(&format!("{namespace}/x"))
            .ok()
            .filter(|_| !namespace.contains('/'))
            .ok_or_else(|| field(format!("namespace {namespace:?} is not a namespace name")))?;
        if remotes.iter().any(|r| r.namespace == namespace) {
            return Err(field(format!("namespace {namespace:?} is listed twice")));
        }
        if public_origin(&section.url).is_none() {
            return Err(field(format!(
                "url {:?} of namespace {namespace:?} is not an origin; write e.g. https://quay.io",
                section.url
            )));
        }
        let prefix = section.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() && crate::route::Name::parse(&format!("{prefix}/x")).is_err() {
            return Err(field(format!(
                "prefix {prefix:?} of namespace {namespace:?} is not a repository path"
            )));
        }
        remotes.push(RemoteSettings {
            namespace,
            url: section.url.trim_end_matches('/').to_string(),
            prefix,
        });
    }
    Ok(remotes)
}

/// Validates the `token_server:` section.
pub(super) fn token_server(
    section: TokenServerSection,
    origin: &str,
    state: &std::path::Path,
    gateway_realm: &str,
) -> Result<TokenServerSettings, ConfigError> {
    use token_server_defaults as d;
    let field = |field, reason: String| ConfigError::Field {
        origin: origin.to_string(),
        field,
        reason,
    };
    let realm_path = section.realm_path.unwrap_or_else(|| d::REALM_PATH.into());
    if !realm_path.starts_with('/') || realm_path.starts_with("/v2") {
        return Err(field(
            "token_server.realm_path",
            format!("{realm_path:?} must start with / and lie outside /v2/"),
        ));
    }
    if realm_path == gateway_realm {
        return Err(field(
            "token_server.realm_path",
            format!(
                "{realm_path:?} is also token.realm_path (the gateway's own realm); give one of \
                 them another path, e.g. /token"
            ),
        ));
    }
    let non_empty = |name: &'static str, value: Option<String>, default: &str| {
        let value = value.unwrap_or_else(|| default.to_string());
        if value.trim().is_empty() {
            return Err(field(
                name,
                "is empty; it must equal the registry's auth.token setting of that name".into(),
            ));
        }
        Ok(value)
    };
    Ok(TokenServerSettings {
        realm_path,
        service: non_empty("token_server.service", section.service, d::SERVICE)?,
        issuer: non_empty("token_server.issuer", section.issuer, d::ISSUER)?,
        keys: section.keys.unwrap_or_else(|| state.join(d::KEYS_DIR)),
        trust: section.trust.unwrap_or_default(),
        lifetime: token_lifetime(
            origin,
            "token_server.lifetime",
            section.lifetime.as_deref(),
            d::LIFETIME,
        )?,
    })
}

/// `tls:` and `--tls-cert`/`--tls-key`: both files or neither; flags win over the file. The
/// files are read when the server starts (errors then name the file).
pub(super) fn tls(
    flags: &TlsArgs,
    section: Option<TlsSection>,
    origin: &str,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    if let (Some(cert_file), Some(key_file)) = (&flags.tls_cert, &flags.tls_key) {
        return Ok(Some(crate::tls::TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        }));
    }
    let Some(section) = section else {
        return Ok(None);
    };
    let missing = |field| ConfigError::Field {
        origin: origin.to_string(),
        field,
        reason: "is missing: tls needs both cert_file (the PEM chain) and key_file (its key)"
            .to_string(),
    };
    Ok(Some(crate::tls::TlsFiles {
        cert_file: section.cert_file.ok_or_else(|| missing("tls.cert_file"))?,
        key_file: section.key_file.ok_or_else(|| missing("tls.key_file"))?,
    }))
}

/// Default `audit.max_size`: 100 MiB.
const AUDIT_MAX_SIZE: u64 = 100 * 1024 * 1024;
/// Default `audit.max_files`.
const AUDIT_MAX_FILES: u32 = 5;

/// `audit:`: `path` (`-` for stdout) turns the audit log on; a file rotates at `max_size`
/// (bytes, or e.g. `64KiB`, `100MiB`, `1GiB`) keeping `max_files` old files.
pub(super) fn audit(
    section: Option<AuditSection>,
    origin: &str,
) -> Result<Option<crate::audit::AuditOutput>, ConfigError> {
    let Some(section) = section else {
        return Ok(None);
    };
    let field = |field, reason: String| ConfigError::Field {
        origin: origin.to_string(),
        field,
        reason,
    };
    let Some(path) = section.path else {
        return Err(field(
            "audit.path",
            "is missing: write a file path, or \"-\" for stdout".into(),
        ));
    };
    if path.as_os_str() == "-" {
        if section.max_size.is_some() || section.max_files.is_some() {
            return Err(field(
                "audit.max_size",
                "applies to a file only; remove max_size and max_files, or give audit.path a \
                 file"
                    .into(),
            ));
        }
        return Ok(Some(crate::audit::AuditOutput::Stdout));
    }
    let max_size = match &section.max_size {
        None => AUDIT_MAX_SIZE,
        Some(value) => size(value).filter(|s| *s >= 4096).ok_or_else(|| {
            field(
                "audit.max_size",
                format!(
                    "{} is not a size of at least 4KiB; write bytes, or e.g. 64KiB, 100MiB, 1GiB",
                    match value {
                        serde_yaml::Value::String(s) => format!("{s:?}"),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    }
                ),
            )
        })?,
    };
    let max_files = section.max_files.unwrap_or(AUDIT_MAX_FILES);
    if max_files == 0 {
        return Err(field(
            "audit.max_files",
            "must be at least 1 (the rotated files kept)".into(),
        ));
    }
    Ok(Some(crate::audit::AuditOutput::File {
        path,
        max_size,
        max_files,
    }))
}

/// A byte size: a number, or a number with a unit (B, KB, KiB, MB, MiB, GB, GiB).
fn size(value: &serde_yaml::Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// `identity.oidc`: each issuer an `https://` URL (`http://` on loopback only, for tests and
/// sidecars), with at least one audience; the `kubernetes` preset, or a username claim with a
/// prefix and groups with one (by default the same), neither able to spell `system:` (so no ID
/// token can name a user or group of another source, or a reserved one).
pub(super) fn oidc(
    sections: Vec<OidcSection>,
    origin: &str,
) -> Result<Vec<crate::oidc::IssuerSettings>, ConfigError> {
    let field = |field, reason: String| ConfigError::Field {
        origin: origin.to_string(),
        field,
        reason,
    };
    let mut issuers: Vec<crate::oidc::IssuerSettings> = Vec::new();
    for (n, section) in sections.into_iter().enumerate() {
        let issuer = section.issuer.ok_or_else(|| {
            field(
                "identity.oidc.issuer",
                format!("entry {} has none; write the iss its tokens carry", n + 1),
            )
        })?;
        let issuer = issuer.trim_end_matches('/').to_string();
        if !served_safely(&issuer) {
            return Err(field(
                "identity.oidc.issuer",
                format!(
                    "{issuer:?} must be an https:// URL (http:// only on 127.0.0.1, ::1 or localhost)"
                ),
            ));
        }
        if issuers.iter().any(|i| i.issuer == issuer) {
            return Err(field(
                "identity.oidc.issuer",
                format!("{issuer:?} is listed twice"),
            ));
        }
        if let Some(url) = section.jwks_url.as_deref().filter(|u| !served_safely(u)) {
            return Err(field(
                "identity.oidc.jwks_url",
                format!("{url:?} must be an https:// URL (http:// only on loopback)"),
            ));
        }
        if section.audiences.iter().all(|a| a.trim().is_empty()) {
            return Err(field(
                "identity.oidc.audiences",
                format!("{issuer}: list the aud its tokens must carry, e.g. [regate]"),
            ));
        }
        let mapping = match section.preset.as_deref() {
            Some("kubernetes") => {
                if section.username_claim.is_some() || section.groups_claim.is_some() {
                    return Err(field(
                        "identity.oidc.preset",
                        "kubernetes maps sub and groups itself; remove username_claim and groups_claim".into(),
                    ));
                }
                crate::oidc::Mapping::Kubernetes
            }
            Some(other) => {
                return Err(field(
                    "identity.oidc.preset",
                    format!("{other:?} is not a preset; the one preset is kubernetes"),
                ));
            }
            None => {
                let prefix = section.username_prefix.unwrap_or_default();
                if prefix.is_empty() {
                    return Err(field(
                        "identity.oidc.username_prefix",
                        format!(
                            "{issuer}: give a prefix such as \"ci:\", so its users never collide with others (or preset: kubernetes)"
                        ),
                    ));
                }
                if reserved_prefix(&prefix) {
                    return Err(field(
                        "identity.oidc.username_prefix",
                        format!(
                            "{issuer}: {prefix:?} would let its tokens name system: users, which only Kubernetes names; use one of your own such as \"ci:\" (a cluster's service-account tokens take preset: kubernetes)"
                        ),
                    ));
                }
                // Groups are prefixed as users are unless told otherwise, so no claim can name a
                // group of another source (or a system: one).
                let groups_prefix = section.groups_prefix.unwrap_or_else(|| prefix.clone());
                if groups_prefix.is_empty() || reserved_prefix(&groups_prefix) {
                    return Err(field(
                        "identity.oidc.groups_prefix",
                        format!(
                            "{issuer}: {groups_prefix:?} would let its tokens name groups of other sources or system: groups; give one such as \"ci-group:\", or leave it out to use username_prefix"
                        ),
                    ));
                }
                crate::oidc::Mapping::Claims {
                    username_claim: section.username_claim.unwrap_or_else(|| "sub".into()),
                    username_prefix: prefix,
                    groups_claim: section.groups_claim,
                    groups_prefix,
                }
            }
        };
        issuers.push(crate::oidc::IssuerSettings {
            issuer,
            audiences: section.audiences,
            jwks_url: section.jwks_url,
            mapping,
        });
    }
    Ok(issuers)
}

/// Whether names made with `prefix` could be reserved `system:` ones: it holds `system:`, or
/// is the start of it (`sys` + a claim `tem:masters`), as EKS refuses.
fn reserved_prefix(prefix: &str) -> bool {
    prefix.contains("system:") || "system:".starts_with(prefix)
}

/// An `https://` URL, or `http://` to a loopback host.
fn served_safely(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") => !host.is_empty(),
        Some("http") => matches!(host, "127.0.0.1" | "[::1]" | "::1" | "localhost"),
        _ => false,
    }
}

/// The `console:` section (or `--console`), validated. It works with either authority
/// (docs/console.md).
pub(super) fn console(
    section: Option<ConsoleSection>,
    flag: bool,
    origin: &str,
) -> Result<Option<ConsoleSettings>, ConfigError> {
    let section = match (section, flag) {
        (Some(section), _) => section,
        (None, true) => ConsoleSection::default(),
        (None, false) => return Ok(None),
    };
    let field = |field, reason: String| ConfigError::Field {
        origin: origin.to_string(),
        field,
        reason,
    };
    let defaults = ConsoleSettings::default();
    let listen = match section.listen {
        None => None,
        Some(addr) => Some(addr.parse().map_err(|_| {
            field(
                "console.listen",
                format!("{addr:?} is not an address; write e.g. 0.0.0.0:9443, or remove it to serve /console/ beside the API"),
            )
        })?),
    };
    let at_least_a_minute = |name: &'static str, value: Option<&str>, default| {
        let d = duration(origin, name, value, default)?;
        if d < std::time::Duration::from_secs(60) {
            return Err(field(name, "must be at least 1m".into()));
        }
        Ok(d)
    };
    let session_idle = at_least_a_minute(
        "console.session_idle",
        section.session_idle.as_deref(),
        defaults.session_idle,
    )?;
    let session_max = at_least_a_minute(
        "console.session_max",
        section.session_max.as_deref(),
        defaults.session_max,
    )?;
    Ok(Some(ConsoleSettings {
        listen,
        session_idle,
        session_max,
    }))
}
