//! What the registry holds, for the namespace pages: its catalog read page by page (as the
//! gateway's filtered catalog reads it) and each repository's tags, through the gateway's own
//! forwarding, so the registry's pull secret and timeouts apply as they do to clients.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use http::Method;

use super::Console;
use crate::access::Plan;
use crate::proxy::PublicOrigin;
use crate::route::Name;

/// Most repositories read from the catalog for one page.
const MAX_SCANNED: usize = 100_000;
/// Most bytes of one tag list.
const TAGS_BYTES: usize = 4 * 1024 * 1024;

/// Repositories by namespace.
pub(super) type Catalog = BTreeMap<String, Vec<String>>;

impl Console {
    /// The registry's repositories, by namespace (names outside the OCI grammar left out);
    /// `Err` says why the registry could not list them.
    pub(super) async fn catalog(&self) -> Result<Catalog, String> {
        let public = self.origin();
        let mut catalog = Catalog::new();
        let mut cursor: Option<String> = None;
        let mut scanned = 0;
        loop {
            let page = match self.gateway.upstream_page(&public, cursor.as_deref()).await {
                Ok(Ok(page)) => page,
                Ok(Err(response)) => {
                    return Err(format!("the registry answered {}", response.status()));
                }
                Err(error) => return Err(error.to_string()),
            };
            let full = page.len() >= crate::server::catalog::UPSTREAM_PAGE;
            scanned += page.len();
            cursor = page.last().cloned();
            for repository in page {
                if let Ok(name) = Name::parse(&repository) {
                    let namespace = name.namespace().to_string();
                    catalog.entry(namespace).or_default().push(repository);
                }
            }
            if !full || scanned >= MAX_SCANNED {
                return Ok(catalog);
            }
        }
    }

    /// The tags of `repository`, sorted; `Err` says why the registry could not list them.
    pub(super) async fn tags(&self, repository: &str) -> Result<Vec<String>, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("/v2/{repository}/tags/list"))
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let plan = Plan {
            scope: Some(format!("repository:{repository}:pull")),
            ..Plan::default()
        };
        let response = self
            .gateway
            .forward(request, &self.origin(), &plan)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the registry answered {}", response.status()));
        }
        let bytes = axum::body::to_bytes(response.into_body(), TAGS_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let tags: Tags = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let mut tags = tags.tags.unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// The gateway's public origin for forwarding (links the registry sends are not shown).
    fn origin(&self) -> PublicOrigin {
        let config = &self.gateway.config;
        config.public_url.clone().unwrap_or_else(|| PublicOrigin {
            scheme: if config.tls.is_some() {
                "https"
            } else {
                "http"
            }
            .to_string(),
            host: config.listen.to_string(),
        })
    }
}
