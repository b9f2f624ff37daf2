use std::time::Duration;

use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_800_000_000;
const IDLE: u64 = 15 * 60;
const MAX: u64 = 8 * 3600;

fn sessions_with(secret: u8) -> Sessions {
    let settings = ConsoleSettings {
        session_idle: Duration::from_secs(IDLE),
        session_max: Duration::from_secs(MAX),
        ..ConsoleSettings::default()
    };
    Sessions::new(Arc::new(Signer::from_secret(&[secret; 32])), &settings)
}

fn sessions() -> Sessions {
    sessions_with(1)
}

/// A request carrying the cookie `set_cookie` sets, beside another.
fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    with_value(pair.trim_start_matches(&format!("{COOKIE}=")))
}

/// A request whose session cookie is `value`.
fn with_value(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("other=1; {COOKIE}={value}")).unwrap(),
    );
    headers
}

/// A realistic ID token: an RS256 JWT whose payload has `claims` bytes of claims.
fn jwt(claims: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"key-2026-01","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        format!(
            r#"{{"iss":"https://issuer.example.com","groups":"{}"}}"#,
            "g".repeat(claims)
        )
        .as_bytes(),
    );
    let signature = URL_SAFE_NO_PAD.encode([0x5a; 256]);
    format!("{header}.{payload}.{signature}")
}

#[test]
fn a_session_is_carried_whole_by_its_cookie() {
    let sessions = sessions();
    let set = sessions.start_at(SecretString::from("tok"), NOW).unwrap();
    let text = set.to_str().unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(text.contains(attribute), "{text}");
    }
    assert!(text.contains(&format!("Max-Age={IDLE}")), "{text}");
    assert!(set.is_sensitive());
    assert!(
        !text.contains("tok;"),
        "the token is sealed, not shown: {text}"
    );
    let session = sessions.find_at(&with_cookie(&set), NOW + 1).expect("live");
    assert_eq!(session.token.expose_secret(), "tok");
    assert_eq!(session.started, NOW);
    assert_eq!(session.csrf.len(), CSRF_LEN);
    assert!(session.csrf_matches(&session.csrf.clone()));
    assert!(!session.csrf_matches("guess"));
    assert!(!session.csrf_matches(""));
    assert!(session.told().is_none());
}

#[test]
fn another_replica_with_the_same_key_reads_it_and_another_key_does_not() {
    let set = sessions().start_at(SecretString::from("tok"), NOW).unwrap();
    let headers = with_cookie(&set);
    let replica = sessions_with(1);
    let session = replica.find_at(&headers, NOW).expect("same key");
    assert_eq!(session.token.expose_secret(), "tok");
    assert!(sessions_with(2).find_at(&headers, NOW).is_none());
}

#[test]
fn the_idle_and_max_limits_hold_and_each_renewal_moves_the_idle_one() {
    let sessions = sessions();
    let set = sessions.start_at(SecretString::from("tok"), NOW).unwrap();
    let first = with_cookie(&set);
    assert!(sessions.find_at(&first, NOW + IDLE - 1).is_some());
    assert!(
        sessions.find_at(&first, NOW + IDLE).is_none(),
        "idle too long"
    );

    // Used every few minutes, it lives until the max age and no longer.
    let mut headers = first;
    let mut now = NOW;
    while now + IDLE / 2 < NOW + MAX {
        now += IDLE / 2;
        let session = sessions.find_at(&headers, now).expect("renewed");
        let renewed = sessions.issue_at(&session, now).unwrap();
        let left = MAX - (now - NOW);
        let max_age = format!("Max-Age={}", IDLE.min(left));
        assert!(renewed.to_str().unwrap().contains(&max_age));
        headers = with_cookie(&renewed);
    }
    assert!(sessions.find_at(&headers, NOW + MAX - 1).is_some());
    assert!(sessions.find_at(&headers, NOW + MAX).is_none(), "too old");
}

#[test]
fn the_flash_is_told_once_through_the_cookie() {
    let sessions = sessions();
    let set = sessions.start_at(SecretString::from("tok"), NOW).unwrap();
    let session = sessions.find_at(&with_cookie(&set), NOW).unwrap();
    session.tell(true, "Done: regate policy add-role-to-user x y -n z".into());
    let after_change = with_cookie(&sessions.issue_at(&session, NOW).unwrap());

    let next = sessions.find_at(&after_change, NOW + 1).unwrap();
    assert_eq!(
        next.told(),
        Some(Flash {
            done: true,
            text: "Done: regate policy add-role-to-user x y -n z".into()
        })
    );
    let after_page = with_cookie(&sessions.issue_at(&next, NOW + 1).unwrap());
    let later = sessions.find_at(&after_page, NOW + 2).unwrap();
    assert!(later.told().is_none(), "told once");
    assert_eq!(later.csrf, session.csrf, "the CSRF token stays");

    // A long outcome is cut, so the cookie keeps its size bound.
    later.tell(false, "é".repeat(1000));
    let told = later.told().unwrap();
    assert!(!told.done);
    assert!(told.text.len() <= FLASH_MAX && told.text.ends_with('…'));
}

#[test]
fn sign_out_deletes_the_cookie() {
    let cleared = Sessions::end();
    let text = cleared.to_str().unwrap();
    assert!(text.starts_with(&format!("{COOKIE}=;")), "{text}");
    assert!(text.contains("Max-Age=0"), "{text}");
    assert!(sessions().find_at(&with_cookie(&cleared), NOW).is_none());
}

#[test]
fn a_jwt_is_packed_a_quarter_shorter_and_unpacked_exactly() {
    for token in [
        jwt(1000),
        jwt(0),
        // Not canonical base64url, or not three parts: kept as given.
        format!("{}=", jwt(10)),
        "a.b.c".into(),
        "a.b.c.d".into(),
        "..".into(),
        "opaque-token".into(),
    ] {
        let mut packed = Vec::new();
        pack_token(&token, &mut packed);
        assert_eq!(packed.len(), packed_token_len(&token), "{token}");
        let unpacked = unpack_token(&packed).expect("unpacks");
        assert_eq!(unpacked.expose_secret(), token);
    }
    let token = jwt(1000);
    assert!(packed_token_len(&token) * 4 < token.len() * 3 + 16);
}

#[test]
fn realistic_tokens_fit_and_a_token_too_long_is_refused() {
    let sessions = sessions();
    // An ID token of about 2.5 KiB, and the longest opaque token that fits.
    for token in [jwt(1800), "x".repeat(2600)] {
        let set = sessions
            .start_at(SecretString::from(token.clone()), NOW)
            .unwrap();
        let session = sessions.find_at(&with_cookie(&set), NOW).unwrap();
        session.tell(false, "ü".repeat(FLASH_MAX));
        let longest = sessions.issue_at(&session, NOW).unwrap();
        assert!(longest.len() <= COOKIE_LIMIT, "{} bytes", longest.len());
    }
    for token in [jwt(3000), "x".repeat(3000)] {
        let error = sessions
            .start_at(SecretString::from(token.clone()), NOW)
            .unwrap_err();
        assert!(matches!(error, SessionError::TooLong { len } if len == token.len()));
        assert!(
            error
                .to_string()
                .contains("too long for the session cookie")
        );
    }
}

#[test]
fn garbage_and_altered_cookies_find_nothing() {
    let sessions = sessions();
    let set = sessions.start_at(SecretString::from("tok"), NOW).unwrap();
    let good = set.to_str().unwrap().split(';').next().unwrap()[COOKIE.len() + 1..].to_string();
    assert!(sessions.find_at(&HeaderMap::new(), NOW).is_none());
    for value in ["", "made-up", "AAAA", &good[..good.len() - 2], &good[2..]] {
        assert!(
            sessions.find_at(&with_value(value), NOW).is_none(),
            "{value}"
        );
    }
    // A credential sealed by the same key is not a session.
    let credential = Signer::from_secret(&[1; 32])
        .seal_for(Purpose::RegistryCredential, b"tok")
        .unwrap();
    assert!(sessions.find_at(&with_value(&credential), NOW).is_none());
}

#[test]
fn each_session_has_its_own_csrf_token() {
    let sessions = sessions();
    let a = sessions.start_at(SecretString::from("a"), NOW).unwrap();
    let b = sessions.start_at(SecretString::from("b"), NOW).unwrap();
    let a = sessions.find_at(&with_cookie(&a), NOW).unwrap();
    let b = sessions.find_at(&with_cookie(&b), NOW).unwrap();
    assert_ne!(a.csrf, b.csrf);
    assert!(!a.csrf_matches(&b.csrf));
}

proptest! {
    /// Any cookie value at all is no session, or (never, in practice) a whole one: no panic.
    #[test]
    fn any_cookie_value_is_no_session(value in "[ -~]{0,600}", raw in any::<String>()) {
        let sessions = sessions();
        for value in [value, raw] {
            let mut headers = HeaderMap::new();
            if let Ok(cookie) = HeaderValue::from_str(&format!("{COOKIE}={value}")) {
                headers.insert(header::COOKIE, cookie);
            }
            prop_assert!(sessions.find_at(&headers, NOW).is_none());
        }
    }

    /// A real cookie with any one character changed, or cut anywhere, opens nothing.
    #[test]
    fn an_altered_cookie_is_no_session(at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_-]") {
        let sessions = sessions();
        let set = sessions.start_at(SecretString::from(jwt(100)), NOW).unwrap();
        let good = set.to_str().unwrap().split(';').next().unwrap()[COOKIE.len() + 1..].to_string();
        let i = at.index(good.len());
        let mut altered = good.clone();
        altered.replace_range(i..=i, &to);
        prop_assume!(altered != good);
        prop_assert!(sessions.find_at(&with_value(&altered), NOW).is_none());
        prop_assert!(sessions.find_at(&with_value(&good[..i]), NOW).is_none());
    }

    /// Whatever bytes are sealed with the right key, unpacking never panics, and a session
    /// always unpacks to itself.
    #[test]
    fn any_sealed_bytes_unpack_without_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        token in "[ -~]{1,100}",
        flash in proptest::option::of(("[ -~é]{0,400}", any::<bool>())),
    ) {
        let _ = Session::unpack(&bytes);
        let session = Session {
            token: SecretString::from(token.clone()),
            csrf: "c".repeat(CSRF_LEN),
            started: NOW,
            flash: Mutex::new(None),
        };
        if let Some((text, done)) = flash.clone() {
            session.tell(done, text);
        }
        let told = session.flash.lock().unwrap().clone();
        let (back, used) = Session::unpack(&session.pack(NOW + 5)).expect("unpacks");
        prop_assert_eq!(used, NOW + 5);
        prop_assert_eq!(back.token.expose_secret(), token.as_str());
        prop_assert_eq!(back.told(), told);
    }
}
