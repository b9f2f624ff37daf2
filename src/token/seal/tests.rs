use secrecy::ExposeSecret;

use super::*;
use crate::token::Signer;

fn signer() -> Signer {
    Signer::from_secret(&[7u8; 32])
}

#[test]
fn a_sealed_value_opens_for_its_purpose_under_its_secret_only() {
    let s = signer();
    let sealed = s.seal_for(Purpose::ConsoleSession, b"session").unwrap();
    assert_eq!(sealed.len(), sealed_len(b"session".len()));
    let opened = s.open_for(Purpose::ConsoleSession, &sealed).unwrap();
    assert_eq!(opened.expose_secret(), b"session");
    for purpose in [Purpose::RegistryCredential, Purpose::RefreshCredential] {
        assert!(s.open_for(purpose, &sealed).is_err(), "{purpose:?}");
    }
    let other = Signer::from_secret(&[8u8; 32]);
    assert!(other.open_for(Purpose::ConsoleSession, &sealed).is_err());
    // Each sealing has its own nonce: the same value never seals to the same text.
    assert_ne!(
        sealed,
        s.seal_for(Purpose::ConsoleSession, b"session").unwrap()
    );
}

#[test]
fn a_credential_never_opens_as_a_console_session() {
    let s = signer();
    let sealed = s
        .seal_for(Purpose::RegistryCredential, b"api-token")
        .unwrap();
    assert!(s.open_for(Purpose::ConsoleSession, &sealed).is_err());
    assert!(s.open_for(Purpose::RefreshCredential, &sealed).is_err());
    assert_eq!(
        s.open_for(Purpose::RegistryCredential, &sealed)
            .unwrap()
            .expose_secret(),
        b"api-token"
    );
}

#[test]
fn altered_cut_or_foreign_text_opens_nothing() {
    let s = signer();
    let sealed = s.seal_for(Purpose::ConsoleSession, b"session").unwrap();
    let mut flipped = sealed.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for text in [
        "",
        "not base64!",
        "AAAA",
        &sealed[..sealed.len() - 1],
        &sealed[..SEAL_OVERHEAD],
        &flipped,
        &format!("{sealed}A"),
    ] {
        let opened = s.open_for(Purpose::ConsoleSession, text);
        assert!(opened.is_err(), "{text:?} opened");
    }
}

#[test]
fn an_empty_value_seals_and_opens() {
    let s = signer();
    let sealed = s.seal_for(Purpose::ConsoleSession, b"").unwrap();
    assert_eq!(sealed.len(), sealed_len(0));
    let opened = s.open_for(Purpose::ConsoleSession, &sealed).unwrap();
    assert!(opened.expose_secret().is_empty());
}

/// Credentials sealed before sealing had purposes (a key from `regate/seal-credential/v1`, the
/// token's audience as associated data) still open: refresh tokens outlive an upgrade.
#[test]
fn credentials_sealed_the_earlier_way_still_open() {
    let secret = [7u8; 32];
    let key = derive(&secret, b"regate/seal-credential/v1");
    let nonce = [3u8; NONCE_LEN];
    let mut sealed = b"api-token".to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(REFRESH_AUDIENCE.as_bytes()),
        &mut sealed,
    )
    .unwrap();
    let text = URL_SAFE_NO_PAD.encode([nonce.as_slice(), &sealed].concat());
    let opened = Signer::from_secret(&secret)
        .open_for(Purpose::RefreshCredential, &text)
        .unwrap();
    assert_eq!(opened.expose_secret(), b"api-token");
}
