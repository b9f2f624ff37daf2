//! The web console (docs/console.md): pages for operators at `/console/`, beside the API or
//! on an address of its own. Namespaces with their repositories and tags, who may pull and push
//! and through which binding, the bindings with add and remove, service accounts with the
//! names of their pull secrets, and a live view of recent decisions in which every denial opens
//! to its explanation and the grant that would fix it.
//!
//! Nothing here decides on its own: sign-in authenticates a token with the gateway's authority
//! (API token or OIDC ID token). With the embedded authority every page asks the gateway's
//! decision cache what the viewer may see, and every change is the `regate policy` operation on
//! the state directory, refused unless RBAC lets the viewer make it. With a Kubernetes authority
//! every read, check and change goes to the API server with the viewer's own token
//! ([`directory`]).
//!
//! Each request reads top-down: session ([`session`]) -> viewer (the token authenticated
//! again) -> what they may see or do (this file) -> the page ([`pages`]).

mod changes;
mod decisions;
mod directory;
mod handlers;
mod pages;
mod recent;
mod registry;
mod session;

pub use recent::{Recent, Seen};

use directory::Directory;

use std::sync::Arc;

use http::HeaderMap;
use secrecy::SecretString;

use super::Gateway;
use crate::authority::Authn;
use crate::authority::embedded::Embedded;
use crate::authority::kubernetes::Kubernetes;
use crate::config::ConsoleSettings;
use crate::error::ApiError;
use crate::identity::UserInfo;
use crate::policy::{Attributes, Policy};
use session::{Session, Sessions};

/// The console of one `regate serve`.
pub struct Console {
    gateway: Arc<Gateway>,
    directory: Directory,
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

/// The authority behind a console: what it reads and changes.
pub enum Backing {
    /// The embedded store.
    Embedded(Arc<Embedded>),
    /// A Kubernetes API server, asked as each viewer.
    Kubernetes(Arc<Kubernetes>),
}

impl Console {
    /// The console over `gateway`, reading and changing `backing`; `recent` is the stream of
    /// decisions the gateway's access log feeds.
    pub fn new(
        gateway: Arc<Gateway>,
        backing: Backing,
        settings: &ConsoleSettings,
        recent: Arc<Recent>,
    ) -> Arc<Console> {
        Arc::new(Console {
            sessions: Sessions::new(gateway.signer.clone(), settings),
            gateway,
            directory: match backing {
                Backing::Embedded(embedded) => Directory::Embedded(embedded),
                Backing::Kubernetes(cluster) => Directory::Cluster(cluster),
            },
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

    /// Whether `viewer` may do `attrs`: asked of the API server as them with a Kubernetes
    /// authority, through the gateway's decision cache otherwise.
    async fn may(&self, viewer: &Viewer, attrs: &Attributes) -> Result<bool, Refused> {
        if let Some(answer) = self.directory.can_i(viewer, attrs).await {
            return answer;
        }
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

    /// The namespaces `viewer` sees, sorted. A viewer who may not list namespaces (on a
    /// cluster) is offered those the registry holds repositories of and those of the recent
    /// decisions.
    async fn namespaces(&self, viewer: &Viewer) -> Result<Vec<String>, Refused> {
        let candidates = match self.directory.namespace_names(viewer).await? {
            Some(names) => names,
            None => {
                let mut known = self.recent.namespaces();
                known.extend(self.catalog().await.unwrap_or_default().into_keys());
                known.into_iter().collect()
            }
        };
        let mut visible = Vec::new();
        for namespace in candidates {
            if self.sees(viewer, &namespace).await? {
                visible.push(namespace);
            }
        }
        Ok(visible)
    }

    /// Namespace `namespace`, if `viewer` may see it; a namespace they may not see is "not
    /// found", so its existence is not told either.
    async fn namespace(&self, viewer: &Viewer, namespace: &str) -> Result<(), Refused> {
        if self.sees(viewer, namespace).await? && self.directory.exists(viewer, namespace).await? {
            return Ok(());
        }
        Err(Refused::NotFound(format!(
            "no namespace {namespace:?} you may see"
        )))
    }

    /// `Ok` when `viewer` may add bindings in `namespace` (`create rolebindings` there); `Err`
    /// says why not.
    async fn may_bind(
        &self,
        viewer: &Viewer,
        namespace: &str,
    ) -> Result<Result<(), String>, Refused> {
        let allowed = self
            .may(
                viewer,
                &Attributes::rbac("create", "rolebindings", namespace),
            )
            .await?;
        Ok(if allowed {
            Ok(())
        } else {
            Err(format!(
                "{} may not create rolebindings in namespace {namespace}",
                viewer.user.name
            ))
        })
    }

    /// `Ok` when `viewer`, who may add bindings in `namespace`, may bind ClusterRole `role`
    /// there by `policy`: it exists, and every permission it grants is held there already (no
    /// escalation). `Err` says why not. On a cluster `policy` is what the viewer may read, so a
    /// role held through a binding they cannot read is not offered; the API server checks
    /// escalation again when the binding is written.
    fn grantable(
        &self,
        viewer: &Viewer,
        policy: &Policy,
        namespace: &str,
        role: &str,
    ) -> Result<(), String> {
        if !policy.cluster_role_names().contains(&role) {
            return Err(format!("there is no ClusterRole {role:?}"));
        }
        if let Some(missing) = policy.first_not_held(&viewer.user, role, namespace) {
            return Err(format!(
                "{role} grants {} {} in namespace {namespace}, which {} may not do: nobody may \
                 grant more than they hold",
                missing.verb,
                missing.full_resource(),
                viewer.user.name
            ));
        }
        Ok(())
    }

    /// [`Console::may_bind`], then [`Console::grantable`] by the policy the viewer may read.
    async fn may_grant(
        &self,
        viewer: &Viewer,
        namespace: &str,
        role: &str,
    ) -> Result<Result<(), String>, Refused> {
        if let Err(why) = self.may_bind(viewer, namespace).await? {
            return Ok(Err(why));
        }
        let (held, _) = self.directory.held(viewer, namespace).await?;
        Ok(self.grantable(viewer, held.policy(), namespace, role))
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
