use super::*;

fn signer() -> Signer {
    Signer::from_secret(&[7u8; 32])
}

#[test]
fn api_token_round_trip() {
    let s = signer();
    let t = s
        .issue_api_token(
            "system:serviceaccount:p:builder",
            "uid-1",
            Duration::from_secs(60),
        )
        .unwrap();
    let c = s.verify_api_token(&t.token).unwrap();
    assert_eq!(c.sub, "system:serviceaccount:p:builder");
    assert_eq!(c.uid, "uid-1");
}

#[test]
fn kinds_do_not_mix() {
    let s = signer();
    let api = s
        .issue_api_token("alice", "u", Duration::from_secs(60))
        .unwrap();
    assert!(s.verify_registry_token(&api.token).is_err());
    let user = UserInfo::authenticated("alice".into(), "u".into(), vec![]);
    let credential = SecretString::from(api.token.clone());
    let reg = s
        .issue_registry_token(&user, Some(&credential), now() + 60, None)
        .unwrap();
    assert!(s.verify_api_token(&reg.token).is_err());
    assert!(s.verify_refresh_token(&reg.token).is_err());
    let claims = s.verify_registry_token(&reg.token).unwrap();
    assert_eq!(claims.sub, "alice");
    let sealed = s.unseal(&claims).unwrap().expect("a credential");
    assert_eq!(sealed.expose_secret(), api.token);
    // Sealed for a registry token: it does not open as a refresh token's.
    let as_refresh = RegistryClaims {
        aud: REFRESH_AUDIENCE.into(),
        ..claims.clone()
    };
    assert!(s.unseal(&as_refresh).is_err());
    // Another key opens nothing.
    assert!(Signer::from_secret(&[9u8; 32]).unseal(&claims).is_err());
}

/// The sealed credential is not readable from the token: its payload is base64 JSON.
#[test]
fn the_credential_is_sealed_not_encoded() {
    let s = signer();
    let secret = "api-token-secret-value-1234567890";
    let user = UserInfo::authenticated("alice".into(), "u".into(), vec![]);
    let reg = s
        .issue_refresh_token(&user, &SecretString::from(secret), now() + 60)
        .unwrap();
    let payload = reg.token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let text = String::from_utf8_lossy(&json);
    assert!(
        !text.contains(secret) && !reg.token.contains(secret),
        "{text}"
    );
}

#[test]
fn unverified_expiry_reads_exp() {
    let s = signer();
    let t = s
        .issue_api_token("alice", "u", Duration::from_secs(600))
        .unwrap();
    assert_eq!(unverified_expiry(&t.token), Some(t.expires_at as f64));
    assert_eq!(unverified_expiry("opaque-token"), None);
    assert_eq!(unverified_expiry("a.!!!.c"), None);
}

#[test]
fn another_key_and_expiry_are_refused() {
    let t = signer()
        .issue_api_token("alice", "u", Duration::from_secs(60))
        .unwrap();
    let other = Signer::from_secret(&[8u8; 32]);
    let err = other.verify_api_token(&t.token).unwrap_err().to_string();
    assert!(err.contains("another key"), "{err}");
    let user = UserInfo::anonymous();
    let expired = signer()
        .issue_identity(&user, None, REGISTRY_AUDIENCE, now() - 10, None)
        .unwrap();
    // issue_identity never issues an already-expired token
    assert!(expired.expires_at > now() - 1);
}

#[test]
fn key_file_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    let a = Signer::load_or_create(&path).unwrap();
    let b = Signer::load_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let t = a
        .issue_api_token("alice", "u", Duration::from_secs(60))
        .unwrap();
    assert!(b.verify_api_token(&t.token).is_ok());
}

#[test]
fn a_remembered_token_still_expires_and_keeps_its_kind() {
    let s = signer();
    let api = s
        .issue_api_token("alice", "u", Duration::from_secs(1))
        .unwrap();
    // Remembered by the first look, whatever kind was asked for.
    assert!(matches!(
        s.verify_registry_token(&api.token),
        Err(TokenError::Invalid(reason)) if reason == "token is of another kind"
    ));
    assert_eq!(s.verify_api_token(&api.token).unwrap().sub, "alice");
    assert!(s.verify_refresh_token(&api.token).is_err());
    // Another key never sees it as verified.
    assert!(
        Signer::from_secret(&[8u8; 32])
            .verify_api_token(&api.token)
            .is_err()
    );
    // Past `exp`, the remembered claims are refused as a fresh decode would refuse them.
    std::thread::sleep(Duration::from_millis(2100));
    assert!(matches!(
        s.verify_api_token(&api.token),
        Err(TokenError::Invalid(reason)) if reason == "token expired"
    ));
}
