//! What the gateway makes of the OIDC outcomes: refused is a 401-kind answer, not checked is an
//! authority outage (503, not a failed login), and readiness says so without an address.

use base64::Engine;

use super::*;
use crate::error::ApiError;
use crate::oidc::Mapping;

/// An authority that refuses every token it is handed.
struct Refusing;

#[async_trait]
impl Authority for Refusing {
    async fn authenticate(&self, _: &SecretString) -> Result<Authn, AuthorityError> {
        Ok(Authn::Invalid {
            reason: "not ours either".into(),
        })
    }

    async fn authorize(
        &self,
        _: &UserInfo,
        _: Option<&SecretString>,
        _: &Attributes,
    ) -> Result<Decision, AuthorityError> {
        Ok(Decision::deny("no"))
    }

    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        Ok(false)
    }

    fn generation(&self) -> u64 {
        0
    }
}

/// Trusting an issuer whose keys are at an address nothing answers on.
fn unreachable_issuer() -> Arc<dyn Authority> {
    let settings = IssuerSettings {
        issuer: "https://issuer.example.com".into(),
        audiences: vec!["regate".into()],
        jwks_url: Some("https://127.0.0.1:9/keys".into()),
        mapping: Mapping::Kubernetes,
    };
    Trusting::wrap(&[settings], Arc::new(Refusing)).expect("built")
}

/// A JWT of `iss` naming key `k`, its signature made up: it is never looked at here.
fn token_of(iss: &str) -> SecretString {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = serde_json::json!({
        "iss": iss, "aud": "regate", "sub": "system:serviceaccount:a:b",
        "exp": 4_000_000_000u64,
    });
    let header = serde_json::json!({"alg": "ES256", "kid": "k"});
    SecretString::from(format!("{}.{}.c2ln", b64(header), b64(claims)))
}

#[tokio::test]
async fn an_issuer_that_cannot_be_reached_is_an_outage_not_a_refusal() {
    let authority = unreachable_issuer();
    let error = authority
        .authenticate(&token_of("https://issuer.example.com"))
        .await
        .expect_err("cannot be checked");
    let answer = ApiError::from(error);
    assert_eq!(answer.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(!answer.is_refused_credential(), "not a failed login");
    let message = answer.to_string();
    assert!(
        message.contains("https://issuer.example.com") && message.contains("cannot be reached"),
        "{message}"
    );
    assert!(!message.contains("127.0.0.1"), "{message}");

    // Not ready, saying what without where.
    let unready = authority.ready().await.expect_err("not ready");
    let issuers = unready.oidc_unready().expect("the issuers are why");
    assert_eq!(issuers.to_string(), "oidc issuer unreachable");

    // Tokens of other issuers go to the authority wrapped, as before.
    let other = authority
        .authenticate(&token_of("https://elsewhere.example.com"))
        .await
        .expect("answered");
    assert!(matches!(other, Authn::Invalid { .. }), "{other:?}");
}
