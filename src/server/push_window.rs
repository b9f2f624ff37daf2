//! Push windows at the gateway (docs/behaviour.md §3): a step of a push made with a registry
//! token whose credential has expired since it was issued, taken inside the window the token
//! carries (`token/window.rs`).
//!
//! Nothing here is kept in the process: the window travels in the token, sealed with the key
//! every replica shares, so any replica takes the step its neighbour would. The step is then
//! authorized like any other, so removing the binding stops the push at once. Where the
//! authority can still tell whose the expired credential is (the embedded store, an OIDC
//! issuer's keys), it must name the same subject as when the token was issued, or the step is
//! refused (a deleted or recreated subject stops the push); a Kubernetes API server reviews
//! unexpired tokens only, so there the identity sealed at issue is used.

use http::Method;

use crate::authority::{AfterExpiry, Authority};
use crate::identity::Caller;
use crate::route::{Name, Route};
use crate::token::{RegistryClaims, Signer};

/// The caller a registry token names inside its push window for a step on `repository`:
/// `None` when no window of the token admits the step (the token's refusal stands), `Some(Err)`
/// when one does but the authority says the subject is gone.
pub(super) async fn admit(
    signer: &Signer,
    authority: &dyn Authority,
    claims: &RegistryClaims,
    repository: &str,
) -> Option<Result<Caller, String>> {
    let window = signer.push_window(claims).ok()??;
    if !window.admits(repository, crate::token::now()) {
        return None;
    }
    let credential = signer.unseal(claims).ok()??;
    let user = match authority.after_expiry(&credential).await {
        AfterExpiry::Identity(now)
            if now.name == window.user.name
                && (window.user.uid.is_empty() || now.uid == window.user.uid) =>
        {
            now
        }
        AfterExpiry::Identity(_) => {
            return Some(Err("the identity of this token has changed".into()));
        }
        AfterExpiry::Refused { reason } => return Some(Err(reason)),
        AfterExpiry::CannotTell => window.user,
    };
    Some(Ok(Caller { user, token: None }))
}

/// The repository a request is a step of a push to: a blob `HEAD` (does the registry have
/// it), an upload start or any request of an upload session, a manifest `HEAD`/`PUT`; `None`
/// for anything else (a pull, a delete, the catalog).
pub(super) fn push_step<'a>(method: &Method, route: &'a Route) -> Option<&'a Name> {
    match (route, method) {
        (Route::Blob { name, .. }, &Method::HEAD)
        | (Route::UploadStart { name }, &Method::POST)
        | (Route::Upload { name, .. }, _)
        | (Route::Manifest { name, .. }, &Method::HEAD | &Method::PUT) => Some(name),
        _ => None,
    }
}
