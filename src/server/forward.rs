//! Forwarding an authorized request (docs/behaviour.md §6, §8): to the registry behind regate,
//! or to a remote (pull-through) namespace's registry, with the credential the registry's own
//! challenge asks for (a pull secret: regate's, the namespace's, or the caller's service
//! account's), never the client's.

use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;

use super::{Gateway, Remote, with_query};
use crate::access::Plan;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::proxy::{PublicOrigin, Upstream};
use crate::route::Name;

impl Gateway {
    /// Forwards an authorized request to the registry behind regate, with regate's own
    /// credential for it if it needs one (the global pull secret).
    pub(super) async fn forward(
        &self,
        req: Request,
        public: &PublicOrigin,
        plan: &Plan,
    ) -> Result<Response, ApiError> {
        // Taken once: a reload during the transfer does not change what it uses.
        let keyring = self.pull_secret.as_ref().map(|c| c.file.keyring());
        let credentials = self.pull_secret.as_ref().zip(keyring.as_deref());
        let image = match plan.repository() {
            Some(name) => format!("{}/{name}", self.upstream.authority()),
            None => self.upstream.authority().to_string(),
        };
        let target = Target {
            upstream: &self.upstream,
            credentials: credentials.map(|(c, k)| (&c.auth, k)),
            image,
            scope: upstream_scope(plan),
        };
        self.send(target, req, public).await
    }

    /// Forwards an authorized pull in a remote namespace to its registry: `NS/app` becomes
    /// `PREFIX/app` there, and the credentials tried are the caller's service account's and the
    /// namespace's pull secrets, then the global one.
    pub(super) async fn forward_remote(
        &self,
        mut req: Request,
        public: &PublicOrigin,
        remote: &Remote,
        name: &Name,
        caller: &Caller,
    ) -> Result<Response, ApiError> {
        let prefix = &remote.settings.prefix;
        let repository = if prefix.is_empty() {
            name.imagestream().to_string()
        } else {
            format!("{prefix}/{}", name.imagestream())
        };
        let path = req.uri().path();
        let rest = path
            .strip_prefix(&format!("/v2/{name}/"))
            .ok_or(ApiError::NotFound)?;
        let path = format!("/v2/{repository}/{rest}");
        let query = req.uri().query().unwrap_or("").to_string();
        *req.uri_mut() = with_query(&path.parse().map_err(|_| ApiError::NotFound)?, &query)?;
        let mut keyring = self
            .decisions
            .authority()
            .pull_keyring(&caller.user, name.namespace())
            .await?;
        if let Some(global) = &self.pull_secret {
            keyring = keyring.chain((*global.file.keyring()).clone());
        }
        let target = Target {
            upstream: &remote.upstream,
            credentials: Some((&remote.auth, &keyring)),
            image: format!("{}/{repository}", remote.upstream.authority()),
            scope: Some(format!("repository:{repository}:pull")),
        };
        self.send(target, req, public).await
    }

    /// Sends `req` to `target` with the credential its challenge asks for. A 401 from it is
    /// never passed on: the client was authorized by regate, and a challenge naming the
    /// registry's realm would only mislead it; it becomes a 502 naming the fix.
    async fn send(
        &self,
        target: Target<'_>,
        req: Request,
        public: &PublicOrigin,
    ) -> Result<Response, ApiError> {
        let upstream = target.upstream;
        let origin = upstream.origin();
        let scope = target.scope.as_deref();
        let credential = match target.credentials {
            None => None,
            // Boxed: the challenge dance is rare and its future large (docs/architecture.md).
            Some((auth, keyring)) => Box::pin(auth.authorization(keyring, &target.image, scope))
                .await
                .map_err(|e| upstream_credentials(e.to_string()))?,
        };
        let sent = credential.is_some();
        let response = upstream.forward(req, public, credential).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        if let Some((auth, _)) = target.credentials {
            auth.rejected(scope);
        }
        Err(upstream_credentials(if sent {
            format!(
                "credentials rejected by the registry at {origin}: fix its entry in the pull \
                     secret, e.g. `regate registry login --registry {} --auth-basic-stdin --to FILE`",
                crate::shell::Quoted(upstream.authority())
            )
        } else {
            format!(
                "the registry at {origin} asks for credentials and regate has none for it: \
                     give regate a pull secret (upstream.pull_secret or --pull-secret, or a \
                     namespace's docker-registry secret for a remote namespace)"
            )
        }))
    }

    /// The remote (pull-through) namespace `namespace` is, if it is one.
    pub(super) fn remote(&self, namespace: &str) -> Option<&Remote> {
        self.remotes
            .iter()
            .find(|r| r.settings.namespace == namespace)
    }
}

/// Where [`Gateway::send`] sends a request, and with which credentials.
struct Target<'a> {
    upstream: &'a Upstream,
    /// What answers the registry's challenge, and the pull secrets to answer it with.
    credentials: Option<(
        &'a crate::upstream::auth::UpstreamAuth,
        &'a crate::upstream::keyring::Keyring,
    )>,
    /// `host[:port]/repository`, to pick pull-secret entries by.
    image: String,
    /// The scope a Bearer token for the request needs.
    scope: Option<String>,
}

/// A 502 about regate's credentials toward the registry at `origin` (the message names it).
fn upstream_credentials(message: String) -> ApiError {
    ApiError::UpstreamCredentials { message }
}

/// The scope regate asks the registry's realm for: the request's own, and for a mount also
/// pull on its source, as distribution checks both.
fn upstream_scope(plan: &Plan) -> Option<String> {
    let scope = plan.scope.clone()?;
    Some(match &plan.mount_source {
        Some(mount) => format!("{scope} repository:{}:pull", mount.from),
        None => scope,
    })
}
