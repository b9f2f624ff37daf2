//! `GET /v2/_catalog` (docs/behaviour.md §2, §10): whole for callers with cluster
//! `list imagestreams`, else filtered to the repositories the caller may pull.
//!
//! A filtered catalog is paged by regate itself, from the filtered list only: the registry's
//! pages are read from the caller's `last` on, each repository checked, until the caller's page
//! is full and one more visible repository shows that a next page exists. So no name the caller
//! may not pull appears anywhere in the answer (not in `Link` either), and a page is empty only
//! at the end.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Gateway;
use super::access_log::Trail;
use crate::access::Plan;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::policy::Attributes;
use crate::proxy::PublicOrigin;
use crate::route::Name;

/// Most bytes of one `_catalog` page regate reads from the registry.
const PAGE_BYTES: usize = 16 * 1024 * 1024;
/// Repositories asked of the registry per page.
pub(super) const UPSTREAM_PAGE: usize = 1000;
/// Repositories one answer reads from the registry at most, visible or not.
const MAX_SCANNED: usize = 1_000_000;
/// A page's size when the caller gives no valid `n` (distribution's default).
const DEFAULT_PAGE: usize = 100;
/// What a query value escapes, as Go's `url.QueryEscape` (and so distribution's `Link`) does.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl Gateway {
    /// `_catalog` for `caller`: forwarded whole, or a filtered page built by regate.
    /// Only the `list` decision goes on the audit trail: a filtered catalog checks every
    /// repository it reads, thousands for one request.
    pub(super) async fn catalog(
        &self,
        req: Request,
        trail: &Trail,
        caller: &Caller,
        public: &PublicOrigin,
    ) -> Result<Response, ApiError> {
        let list_all = Attributes::cluster("list", "imagestreams");
        if self.allowed(Some(trail), caller, &list_all).await? {
            return self.forward(req, public, &catalog_plan()).await;
        }
        let (n, last) = page_request(req.uri().query());
        let mut visible = Vec::new();
        let mut more = false;
        let mut cursor = last;
        let mut scanned = 0;
        'pages: loop {
            let page = match self.upstream_page(public, cursor.as_deref()).await? {
                Ok(page) => page,
                // The registry's own error (e.g. 404 when the catalog is disabled) as it is.
                Err(response) => return Ok(response),
            };
            let full = page.len() >= UPSTREAM_PAGE;
            for repository in page {
                scanned += 1;
                cursor = Some(repository.clone());
                if !self.may_pull(caller, &repository).await? {
                    continue;
                }
                if visible.len() == n {
                    more = true;
                    break 'pages;
                }
                visible.push(repository);
            }
            if !full || scanned >= MAX_SCANNED {
                if full {
                    tracing::warn!(
                        scanned,
                        "the filtered catalog stops after {MAX_SCANNED} repositories"
                    );
                }
                break;
            }
        }
        let body = serde_json::json!({ "repositories": visible });
        let mut response = axum::Json(body).into_response();
        if more && let Some(last) = visible.last() {
            let link = format!(
                "</v2/_catalog?last={}&n={n}>; rel=\"next\"",
                utf8_percent_encode(last, QUERY_VALUE)
            );
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, value);
            }
        }
        Ok(response)
    }

    /// Whether `caller` may pull `repository` (a name outside the grammar: no).
    async fn may_pull(&self, caller: &Caller, repository: &str) -> Result<bool, ApiError> {
        let Ok(name) = Name::parse(repository) else {
            return Ok(false);
        };
        let get = Attributes::layers("get", name.namespace(), name.imagestream());
        self.allowed(None, caller, &get).await
    }

    /// One page of the registry's catalog after `last`: its repositories, or the registry's
    /// answer when it is not a success.
    pub(super) async fn upstream_page(
        &self,
        public: &PublicOrigin,
        last: Option<&str>,
    ) -> Result<Result<Vec<String>, Response>, ApiError> {
        let mut target = format!("/v2/_catalog?n={UPSTREAM_PAGE}");
        if let Some(last) = last {
            target.push_str("&last=");
            target.extend(utf8_percent_encode(last, QUERY_VALUE));
        }
        let req = Request::builder()
            .method(Method::GET)
            .uri(target)
            .body(Body::empty())
            .map_err(ApiError::upstream)?;
        let response = self.forward(req, public, &catalog_plan()).await?;
        if !response.status().is_success() {
            return Ok(Err(response));
        }
        let bytes = axum::body::to_bytes(response.into_body(), PAGE_BYTES)
            .await
            .map_err(ApiError::upstream)?;
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let page: Page = serde_json::from_slice(&bytes).map_err(ApiError::upstream)?;
        Ok(Ok(page.repositories))
    }
}

/// The caller's page size and cursor: `n` (distribution's default when missing or not a
/// number) and `last`.
fn page_request(query: Option<&str>) -> (usize, Option<String>) {
    let mut n = DEFAULT_PAGE;
    let mut last = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "n" => n = value.parse().unwrap_or(DEFAULT_PAGE),
            "last" if !value.is_empty() => last = Some(value.into_owned()),
            _ => {}
        }
    }
    (n, last)
}

/// The plan of `GET /v2/_catalog`, for forwarding it.
fn catalog_plan() -> Plan {
    Plan {
        catalog: true,
        scope: Some("registry:catalog:*".to_owned()),
        ..Plan::default()
    }
}
