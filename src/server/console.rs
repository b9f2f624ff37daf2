//! The web console (docs/console.md): pages for operators at `/console/`, beside the API or
//! on an address of its own. Namespaces with their repositories and tags, who may pull and push
//! and through which binding, the bindings with add and remove, service accounts with the
//! names of their pull secrets, and a live view of recent decisions in which every denial opens
//! to its explanation and the grant that would fix it.
//!
//! Nothing here decides on its own: sign-in authenticates a token with the gateway's authority
//! (API token or OIDC ID token), every page asks the gateway's decision cache what the viewer
//! may see, and every change is the `regate policy` operation on the state directory, refused
//! unless RBAC lets the viewer make it. So the console needs the embedded authority.
//!
//! Each request reads top-down: session ([`session`]) -> viewer (the token authenticated
//! again) -> what they may see or do (this file) -> the page ([`pages`]).

mod changes;
mod decisions;
mod handlers;
mod pages;
mod recent;
mod registry;
mod session;

pub use recent::{Recent, Seen};

use std::sync::Arc;

use http::HeaderMap;
use secrecy::SecretString;

use super::Gateway;
use crate::authority::Authn;
use crate::authority::embedded::{Embedded, Snapshot};
use crate::config::ConsoleSettings;
use crate::error::ApiError;
use crate::identity::UserInfo;
use crate::policy::Attributes;
use session::{Session, Sessions};

/// The console of one `regate serve`.
pub struct Console {
    gateway: Arc<Gateway>,
    embedded: Arc<Embedded>,
    sessions: Sessions,
    recent: Arc<Recent>,
}

/// A signed-in person, as the authority sees them on this request.
pub(super) struct Viewer {
    user: UserInfo,
    token: SecretString,
    session: Session,
    /// Whether they see every namespace (cluster `list rolebindings`).
    cluster: bool,
}

/// Who a console answer was for, left in its extensions for the access line (`identified`).
#[derive(Clone)]
pub(super) struct Identified(UserInfo);

/// Why a console request cannot go on.
#[derive(Debug)]
pub(super) enum Refused {
    /// No live session, or its token is no longer valid: sign in (again).
    SignIn(Option<String>),
    /// Signed in, but RBAC does not allow it.
    Forbidden(String),
    /// No such page or object (or one the viewer may not know of).
    NotFound(String),
    /// A form that cannot be taken: a missing field, a bad CSRF token.
    BadRequest(String),
    /// A form body too large, or not whole within `connections.request_timeout`.
    Body(crate::body::BodyError),
    /// Too many failed sign-ins from this client.
    TooMany,
    /// The authority could not answer; nothing was shown or changed.
    Unavailable,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        // Failing closed: the cause goes to the log, never to the page.
        tracing::warn!(%error, "console: the authority could not answer");
        Refused::Unavailable
    }
}

impl Console {
    /// The console over `gateway`, whose authority is `embedded`; `recent` is the stream of
    /// decisions the gateway's access log feeds.
    pub fn new(
        gateway: Arc<Gateway>,
        embedded: Arc<Embedded>,
        settings: &ConsoleSettings,
        recent: Arc<Recent>,
    ) -> Arc<Console> {
        Arc::new(Console {
            sessions: Sessions::new(gateway.signer.clone(), settings),
            gateway,
            embedded,
            recent,
        })
    }

    /// The stream of recent decisions the gateway's access log feeds.
    pub fn recent(&self) -> Arc<Recent> {
        self.recent.clone()
    }

    /// The console's routes, all under `/console/`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        handlers::router(self.clone())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.embedded.snapshot()
    }

    /// Who `token` is, asked of the gateway's authority (OIDC issuers first, as the gateway
    /// does); `Err` says why it is refused.
    async fn authenticate(
        &self,
        token: &SecretString,
    ) -> Result<Result<UserInfo, String>, Refused> {
        let authority = self.gateway.decisions.authority();
        match authority.authenticate(token).await {
            Ok(Authn::User(user)) if user.is_anonymous() => {
                Ok(Err("an anonymous identity cannot sign in".into()))
            }
            Ok(Authn::User(user)) => Ok(Ok(user)),
            Ok(Authn::Invalid { reason }) => Ok(Err(reason)),
            Err(error) => Err(ApiError::from(error).into()),
        }
    }

    /// The signed-in viewer of a request: its session's token authenticated again, so a
    /// revoked or expired token ends the session here, on whichever replica.
    async fn viewer(&self, headers: &HeaderMap) -> Result<Viewer, Refused> {
        let Some(session) = self.sessions.find(headers) else {
            return Err(Refused::SignIn(None));
        };
        let user = match self.authenticate(&session.token).await? {
            Ok(user) => user,
            Err(reason) => {
                // The answer deletes the cookie; any copy of it fails here the same way.
                return Err(Refused::SignIn(Some(format!(
                    "Your session ended: {reason}. Sign in with a valid token."
                ))));
            }
        };
        let mut viewer = Viewer {
            token: session.token.clone(),
            session,
            user,
            cluster: false,
        };
        viewer.cluster = self
            .may(&viewer, &Attributes::rbac("list", "rolebindings", ""))
            .await?;
        Ok(viewer)
    }

    /// Whether `viewer` may do `attrs`, through the gateway's decision cache.
    async fn may(&self, viewer: &Viewer, attrs: &Attributes) -> Result<bool, Refused> {
        let decided = self
            .gateway
            .decisions
            .decide(&viewer.user, Some(&viewer.token), attrs)
            .await
            .map_err(ApiError::from)?;
        Ok(decided.allowed())
    }

    /// Whether `viewer` sees namespace `namespace`: its admins (`list rolebindings` there) do,
    /// and so does whoever sees every namespace.
    async fn sees(&self, viewer: &Viewer, namespace: &str) -> Result<bool, Refused> {
        if viewer.cluster {
            return Ok(true);
        }
        self.may(viewer, &Attributes::rbac("list", "rolebindings", namespace))
            .await
    }

    /// The namespaces `viewer` sees, sorted.
    async fn namespaces(&self, viewer: &Viewer) -> Result<Vec<String>, Refused> {
        let mut visible = Vec::new();
        for namespace in &self.snapshot().namespaces {
            if self.sees(viewer, namespace).await? {
                visible.push(namespace.clone());
            }
        }
        Ok(visible)
    }

    /// Namespace `namespace`, if `viewer` may see it; a namespace they may not see is "not
    /// found", so its existence is not told either.
    async fn namespace(&self, viewer: &Viewer, namespace: &str) -> Result<(), Refused> {
        if self.snapshot().namespaces.contains(namespace) && self.sees(viewer, namespace).await? {
            return Ok(());
        }
        Err(Refused::NotFound(format!(
            "no namespace {namespace:?} you may see"
        )))
    }

    /// `Ok` when `viewer` may bind ClusterRole `role` in `namespace`: `create rolebindings`
    /// there, and every permission of the role held there already (no escalation). `Err` says
    /// why not.
    async fn may_grant(
        &self,
        viewer: &Viewer,
        namespace: &str,
        role: &str,
    ) -> Result<Result<(), String>, Refused> {
        if !self
            .may(
                viewer,
                &Attributes::rbac("create", "rolebindings", namespace),
            )
            .await?
        {
            return Ok(Err(format!(
                "{} may not create rolebindings in namespace {namespace}",
                viewer.user.name
            )));
        }
        let snapshot = self.snapshot();
        if !snapshot.policy.cluster_role_names().contains(&role) {
            return Ok(Err(format!("there is no ClusterRole {role:?}")));
        }
        if let Some(missing) = snapshot
            .policy
            .first_not_held(&viewer.user, role, namespace)
        {
            return Ok(Err(format!(
                "{role} grants {} {} in namespace {namespace}, which {} may not do: nobody may \
                 grant more than they hold",
                missing.verb,
                missing.full_resource(),
                viewer.user.name
            )));
        }
        Ok(Ok(()))
    }

    /// Whether `viewer` may remove subjects from bindings in `namespace` (`delete
    /// rolebindings` there).
    async fn may_revoke(&self, viewer: &Viewer, namespace: &str) -> Result<bool, Refused> {
        self.may(
            viewer,
            &Attributes::rbac("delete", "rolebindings", namespace),
        )
        .await
    }
}
