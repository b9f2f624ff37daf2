//! Who is calling: credentials from the `Authorization` header, and the identity they prove.
//!
//! The header gives a [`Credential`]: nothing (anonymous), or a token from Basic (`any-user:TOKEN`,
//! the user name is ignored as in OpenShift) or Bearer. Which identity a token proves is for the
//! [`crate::authority`] (API tokens) or [`crate::token`] (registry tokens) to say.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::authentication::v1::UserInfo as KubeUserInfo;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The user name of the anonymous identity.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group every anonymous request is in.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group every authenticated identity is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The prefix of a service account's user name.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// The group of all service accounts.
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// Longest `Authorization` value regate reads; a JWT is a few KiB at most.
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// An authenticated (or anonymous) identity, as Kubernetes' `UserInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserInfo {
    /// User name, e.g. `alice` or `system:serviceaccount:ns:builder`.
    pub name: String,
    /// The uid of the object behind the identity; empty for anonymous.
    #[serde(default)]
    pub uid: String,
    /// Groups, including the implicit `system:*` ones.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator, e.g. OpenShift's token scopes
    /// (`scopes.authorization.openshift.io`); passed on to SubjectAccessReviews so a scoped token
    /// is never allowed more than its scopes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous identity: `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        UserInfo {
            name: ANONYMOUS.to_string(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED.to_string()],
            extra: BTreeMap::new(),
        }
    }

    /// True for the anonymous identity.
    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }

    /// An authenticated identity with the implicit groups Kubernetes adds: `system:authenticated`,
    /// and for a service account `system:serviceaccounts` and `system:serviceaccounts:<ns>`.
    pub fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> Self {
        let mut implicit = vec![AUTHENTICATED.to_string()];
        if let Some((ns, _)) = service_account_of(&name) {
            implicit.push(SERVICE_ACCOUNTS.to_string());
            implicit.push(format!("{SERVICE_ACCOUNTS}:{ns}"));
        }
        for g in implicit {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        UserInfo {
            name,
            uid,
            groups,
            extra: BTreeMap::new(),
        }
    }
}

/// The identity as a review carries it (the user of a SubjectAccessReview regate asks, the
/// `status` of a review regate answers): an empty uid and no extra attributes are absent.
impl From<&UserInfo> for KubeUserInfo {
    fn from(user: &UserInfo) -> Self {
        KubeUserInfo {
            username: Some(user.name.clone()),
            uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
        }
    }
}

/// A request's proven identity, and the token that proved it (kept for authorities that ask as
/// the caller; `None` for anonymous callers and regate's own registry tokens).
#[derive(Debug)]
pub struct Caller {
    /// Who is calling.
    pub user: UserInfo,
    /// The API token the caller showed, if any.
    pub token: Option<SecretString>,
}

impl Caller {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Caller {
            user: UserInfo::anonymous(),
            token: None,
        }
    }
}

/// The `(namespace, name)` of a service account user name `system:serviceaccount:NS:NAME`.
pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The user name of service account `name` in `namespace`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// What the `Authorization` header carries.
#[derive(Debug)]
pub enum Credential {
    /// No header, `Bearer anonymous` or an empty Bearer value.
    Anonymous,
    /// A token, from Basic's password or Bearer's value.
    Token(SecretString),
}

/// Why an `Authorization` header could not be read. Messages never include the credential.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The scheme is neither Basic nor Bearer.
    #[error(
        "unsupported authorization scheme; use Basic (any user name, token as password) or Bearer"
    )]
    UnknownScheme,
    /// Basic credentials are not valid base64 of `user:password`.
    #[error("malformed Basic credentials: expected base64 of user:token")]
    MalformedBasic,
    /// Basic credentials with an empty password.
    #[error("empty password: log in with an API token as the password")]
    EmptyPassword,
    /// The header is longer than [`MAX_AUTHORIZATION_LEN`] or not visible ASCII.
    #[error("authorization header is too long or not plain text")]
    Unreadable,
}

/// Reads the credential in an `Authorization` header value (`None` when there is no header).
pub fn credential(header: Option<&http::HeaderValue>) -> Result<Credential, CredentialError> {
    let Some(value) = header else {
        return Ok(Credential::Anonymous);
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(CredentialError::Unreadable);
    }
    let value = value
        .to_str()
        .map_err(|_| CredentialError::Unreadable)?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest == "anonymous" {
            return Ok(Credential::Anonymous);
        }
        return Ok(Credential::Token(SecretString::from(rest.to_string())));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| CredentialError::MalformedBasic)?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialError::MalformedBasic)?;
        let (_user, password) = decoded
            .split_once(':')
            .ok_or(CredentialError::MalformedBasic)?;
        if password.is_empty() {
            return Err(CredentialError::EmptyPassword);
        }
        return Ok(Credential::Token(SecretString::from(password.to_string())));
    }
    Err(CredentialError::UnknownScheme)
}

#[cfg(test)]
mod tests;
