use super::*;
use secrecy::ExposeSecret;

fn sessions() -> Sessions {
    Sessions::new(&ConsoleSettings::default())
}

fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
    );
    headers
}

#[test]
fn a_session_is_found_by_its_cookie_and_ends_on_sign_out() {
    let sessions = sessions();
    let set = sessions.start(SecretString::from("tok"));
    let text = set.to_str().unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(text.contains(attribute), "{text}");
    }
    assert!(set.is_sensitive());
    let headers = with_cookie(&set);
    let session = sessions.find(&headers).expect("live");
    assert_eq!(session.token.expose_secret(), "tok");
    assert!(session.csrf_matches(&session.csrf.clone()));
    assert!(!session.csrf_matches("guess"));
    assert!(!session.csrf_matches(""));
    let cleared = sessions.end(&headers);
    assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    assert!(sessions.find(&headers).is_none());
}

#[test]
fn an_unknown_or_missing_cookie_finds_nothing() {
    let sessions = sessions();
    sessions.start(SecretString::from("tok"));
    let mut headers = HeaderMap::new();
    assert!(sessions.find(&headers).is_none());
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{COOKIE}=made-up")).unwrap(),
    );
    assert!(sessions.find(&headers).is_none());
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{COOKIE}=")).unwrap(),
    );
    assert!(sessions.find(&headers).is_none());
}

#[test]
fn each_session_has_its_own_id_and_csrf_token() {
    let sessions = sessions();
    let a = sessions
        .find(&with_cookie(&sessions.start(SecretString::from("a"))))
        .unwrap();
    let b = sessions
        .find(&with_cookie(&sessions.start(SecretString::from("b"))))
        .unwrap();
    assert_ne!(a.csrf, b.csrf);
    assert!(!a.csrf_matches(&b.csrf));
}
