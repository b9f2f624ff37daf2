//! The HTTP(S) client regate uses toward registries, their token realms and OIDC issuers:
//! rustls with the system's roots, a connect timeout, and a deadline per exchange.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::AuthError;
use crate::error::chain as error_chain;

/// The largest body read from a registry's `/v2/` or a realm; a token response is a few KiB.
const MAX_BODY: usize = 1 << 20;
const USER_AGENT: &str = concat!("regate/", env!("CARGO_PKG_VERSION"));

/// An HTTP(S) client with a deadline per exchange.
pub(crate) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// A response, its body read.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Http {
    pub(crate) fn new(timeout: Duration) -> Result<Http, AuthError> {
        let connector = https_connector(timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Http { client, timeout })
    }

    /// Sends `request` with `body` and reads the answer, all within the timeout. `shown` names
    /// the request in errors (no query: it may name an account).
    pub(crate) async fn exchange(
        &self,
        request: http::request::Builder,
        body: Bytes,
        shown: &str,
    ) -> Result<Answer, AuthError> {
        let unreachable = |reason: String| AuthError::Unreachable {
            url: shown.to_string(),
            reason,
        };
        let request = request
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            })?
    }
}

/// A connector for `http://` and `https://` registries (TLS as [`tls_config`]), giving up on a
/// connection after `connect_timeout`. Shared by the proxy and the token fetcher.
pub(crate) fn https_connector(
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, AuthError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The TLS settings: the ring provider and the system's CA certificates, loaded once.
fn tls_config() -> Result<rustls::ClientConfig, AuthError> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let builder = || {
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
            };
            match builder()?.with_native_roots() {
                Ok(config) => Ok(config.with_no_client_auth()),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "no CA certificates found: https registries and token realms will be \
                         refused; install the system's CA certificates or set SSL_CERT_FILE"
                    );
                    Ok(builder()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth())
                }
            }
        })
        .clone()
        .map_err(|reason| AuthError::Tls { reason })
}
