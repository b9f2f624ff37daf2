//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: 200 only when the
//! authority answers, the registry answers `GET /v2/`, and regate is not draining; else 503
//! with a line saying which is not). Anyone may ask, so the body names the dependency and
//! nothing more: the cause, with addresses and error text, goes to the log, and the outcome to
//! `regate_dependency_up`.

use std::sync::atomic::Ordering;

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::Gateway;

/// `/readyz`: both checks run at once; the body has one line for each.
pub(super) async fn readyz(gw: &Gateway) -> Response {
    if gw.draining.load(Ordering::Acquire) {
        return answer(
            false,
            "draining: shutting down, finishing transfers in flight\n".into(),
        );
    }
    let (authority, upstream) = tokio::join!(gw.decisions.authority().ready(), gw.upstream.probe());
    // An OIDC issuer that cannot be reached fails only its own ID tokens (503 each): the
    // replica stays in rotation for every other credential, and the line says what is down.
    let mut oidc = None;
    let authority_ok = match authority {
        Ok(()) => true,
        Err(error) => match error.oidc_unready() {
            Some(issuers) => {
                oidc = Some(issuers.to_string());
                true
            }
            None => {
                tracing::warn!(%error, "readyz: the authority is not answering");
                false
            }
        },
    };
    let upstream_ok = match upstream {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, "readyz: the registry is not answering GET /v2/");
            false
        }
    };
    let mut body = String::new();
    for (dependency, up) in [("authority", authority_ok), ("upstream", upstream_ok)] {
        crate::metrics::get()
            .dependency_up
            .get_or_create(&crate::metrics::DependencyLabels { dependency })
            .set(i64::from(up));
        let state = if up {
            "ok"
        } else {
            "not answering (see regate's log)"
        };
        body.push_str(&format!("{dependency}: {state}\n"));
    }
    if let Some(issuers) = oidc {
        // Named without addresses: the detail is in the log (the issuers' check wrote it).
        body.push_str(&format!(
            "{issuers}: its ID tokens get 503 meanwhile (see regate's log)\n"
        ));
    }
    answer(authority_ok && upstream_ok, body)
}

fn answer(ready: bool, body: String) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
