//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: 200 only when the
//! authority answers, the registry answers `GET /v2/`, and regate is not draining; else 503
//! with a line saying which is not).

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
    let mut body = String::new();
    let authority_ok = match authority {
        Ok(()) => {
            body.push_str("authority: ok\n");
            true
        }
        Err(error) => {
            match error.oidc_unready() {
                // What is down and no more: the issuers' addresses and errors are in the log.
                Some(issuers) => {
                    body.push_str(&format!("authority: not answering ({issuers})\n"));
                }
                None => body.push_str(&format!("authority: not answering: {error}\n")),
            }
            false
        }
    };
    let upstream_ok = match upstream {
        Ok(status) => {
            body.push_str(&format!(
                "upstream: ok (GET /v2/ answered {})\n",
                status.as_u16()
            ));
            true
        }
        Err(error) => {
            body.push_str(&format!("upstream: not answering: {error}\n"));
            false
        }
    };
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
