use super::*;
use secrecy::ExposeSecret;

fn header(v: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(v).unwrap()
}

fn token_of(v: &str) -> String {
    match credential(Some(&header(v))).unwrap() {
        Credential::Token(t) => t.expose_secret().to_string(),
        Credential::Anonymous => "<anonymous>".into(),
    }
}

#[test]
fn basic_takes_the_password_and_ignores_the_user() {
    let b = base64::engine::general_purpose::STANDARD.encode("anything:tok:en");
    assert_eq!(token_of(&format!("Basic {b}")), "tok:en");
    assert_eq!(token_of(&format!("basic {b}")), "tok:en");
}

#[test]
fn bearer_anonymous_and_empty_are_anonymous() {
    assert_eq!(token_of("Bearer anonymous"), "<anonymous>");
    assert_eq!(token_of("Bearer "), "<anonymous>");
    assert_eq!(token_of("BEARER abc"), "abc");
    assert!(matches!(credential(None), Ok(Credential::Anonymous)));
}

#[test]
fn bad_headers_are_errors() {
    let e = |v: &str| credential(Some(&header(v))).unwrap_err();
    assert_eq!(e("Basic !!!"), CredentialError::MalformedBasic);
    let nocolon = base64::engine::general_purpose::STANDARD.encode("nocolon");
    assert_eq!(
        e(&format!("Basic {nocolon}")),
        CredentialError::MalformedBasic
    );
    let empty = base64::engine::general_purpose::STANDARD.encode("user:");
    assert_eq!(e(&format!("Basic {empty}")), CredentialError::EmptyPassword);
    assert_eq!(e("Digest abc"), CredentialError::UnknownScheme);
    let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
    assert_eq!(e(&long), CredentialError::Unreadable);
}

#[test]
fn implicit_groups() {
    let u = UserInfo::authenticated(service_account_user("p", "builder"), "u1".into(), vec![]);
    assert_eq!(
        u.groups,
        vec![
            "system:authenticated",
            "system:serviceaccounts",
            "system:serviceaccounts:p"
        ]
    );
    assert_eq!(service_account_of(&u.name), Some(("p", "builder")));
    assert_eq!(service_account_of("alice"), None);
}
