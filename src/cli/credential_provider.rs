//! `regate credential-provider`: a kubelet image credential provider (exec plugin, API
//! `credentialprovider.kubelet.k8s.io/v1`), so a pod pulls from regate as its own service
//! account with no pull secret (Kubernetes 1.33+, KEP-4412).
//!
//! The kubelet runs it with a `CredentialProviderRequest` on stdin carrying the image and, as
//! the CredentialProviderConfig's `tokenAttributes` ask, a service-account token minted for the
//! pod with regate's audience. The answer on stdout hands that token to the container runtime as
//! the password for regate's registry host(s) (`--registry`, matched as the kubelet matches
//! keys); regate verifies it (offline with `identity.oidc` preset `kubernetes`, or by a
//! TokenReview with `authority.audiences`). The kubelet may cache it (`cacheKeyType: Registry`)
//! for at most `--max-cache-duration`, and never past the token's `exp`. An image of another
//! registry gets an empty `auth`. Anything malformed is one line on stderr and exit code 1.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

/// The one API version spoken.
const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// Largest request read.
const MAX_REQUEST: u64 = 1 << 20;
/// A credential is not cached into its token's last this long (a pull started then must finish).
const MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub(super) struct CredentialProvider {
    /// regate's registry as images name it, e.g. registry.example.com or 10.0.0.5:5000
    /// (repeatable; globs per label as in matchImages, e.g. *.registry.example.com).
    #[arg(long = "registry", value_name = "HOST", required = true)]
    registries: Vec<String>,
    /// Longest the kubelet may keep the credentials; never past the token's exp.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    max_cache_duration: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: Option<String>,
    kind: Option<String>,
    image: Option<String>,
    service_account_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    api_version: &'static str,
    kind: &'static str,
    cache_key_type: &'static str,
    cache_duration: String,
    auth: BTreeMap<String, AuthConfig>,
}

#[derive(Serialize)]
struct AuthConfig {
    username: &'static str,
    password: String,
}

impl CredentialProvider {
    pub(super) fn run(self) -> anyhow::Result<()> {
        for key in &self.registries {
            crate::upstream::keyring::key_matches_image(key, "x")
                .map_err(|e| anyhow::anyhow!("--registry {key:?}: {e}"))?;
        }
        let mut input = Vec::new();
        std::io::stdin()
            .take(MAX_REQUEST)
            .read_to_end(&mut input)
            .context("reading the CredentialProviderRequest on stdin")?;
        let response = self.answer(&input, crate::token::now())?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &response)?;
        writeln!(out)?;
        Ok(())
    }

    /// The response to `input` at `now` (seconds since the epoch).
    fn answer(&self, input: &[u8], now: u64) -> anyhow::Result<Response> {
        let request: Request = serde_json::from_slice(input).map_err(|e| {
            anyhow::anyhow!("stdin is not a CredentialProviderRequest ({e}); the kubelet sends one")
        })?;
        match request.api_version.as_deref() {
            Some(API_VERSION) => {}
            other => bail!(
                "apiVersion {other:?} is not supported: set apiVersion: {API_VERSION} for this \
                 provider in the CredentialProviderConfig"
            ),
        }
        if request.kind.as_deref() != Some("CredentialProviderRequest") {
            bail!("kind {:?} is not CredentialProviderRequest", request.kind);
        }
        let Some(image) = request.image.filter(|i| !i.is_empty()) else {
            bail!("the CredentialProviderRequest names no image");
        };
        let matched: Vec<&String> = self
            .registries
            .iter()
            .filter(|key| crate::upstream::keyring::key_matches_image(key, &image) == Ok(true))
            .collect();
        if matched.is_empty() {
            // Not regate's: no credentials, and nothing to cache.
            return Ok(response("Image", Duration::ZERO, BTreeMap::new()));
        }
        let Some(token) = request.service_account_token.filter(|t| !t.is_empty()) else {
            bail!(
                "the request carries no serviceAccountToken: set tokenAttributes \
                 (serviceAccountTokenAudience) for this provider in the CredentialProviderConfig \
                 (Kubernetes 1.33 or later)"
            );
        };
        // Until MARGIN before the token's own expiry, at most max_cache_duration; an unknown
        // expiry is not cached.
        let cache = match crate::token::unverified_expiry(&token) {
            Some(exp) => {
                let left = Duration::from_secs((exp as u64).saturating_sub(now));
                left.saturating_sub(MARGIN).min(self.max_cache_duration)
            }
            None => Duration::ZERO,
        };
        let auth = matched
            .into_iter()
            .map(|key| {
                let config = AuthConfig {
                    // Any user name: regate reads only the password.
                    username: "serviceaccount",
                    password: token.clone(),
                };
                (key.clone(), config)
            })
            .collect();
        Ok(response("Registry", cache, auth))
    }
}

fn response(
    cache_key_type: &'static str,
    cache: Duration,
    auth: BTreeMap<String, AuthConfig>,
) -> Response {
    Response {
        api_version: API_VERSION,
        kind: "CredentialProviderResponse",
        cache_key_type,
        cache_duration: go_duration(cache),
        auth,
    }
}

/// A duration as Go's `time.Duration` prints it (`1h2m3s`, `0s`), which `metav1.Duration` reads.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests;
