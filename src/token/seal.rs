//! Sealing: what regate hands to a client and must read back unchanged and unread by it (the API
//! token inside a registry or refresh token, a registry token's push window, a console session),
//! as base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag) under keys derived from the signing secret.
//!
//! Each [`Purpose`] seals under a key of its own and binds its name as associated data, so a value
//! sealed for one purpose never opens as another, and nothing sealed under another secret opens at
//! all. Separate keys also keep the console's frequent re-sealing (one per page) from spending the
//! random-nonce budget of the credential key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::SecretSlice;

use super::{REFRESH_AUDIENCE, REGISTRY_AUDIENCE, TokenError};

/// What a value is sealed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The API token inside a registry token.
    RegistryCredential,
    /// The API token inside a refresh token.
    RefreshCredential,
    /// A web console session cookie (docs/console.md, "Signing in").
    ConsoleSession,
    /// The push window inside a registry token (docs/behaviour.md §3).
    PushWindow,
}

impl Purpose {
    /// The associated data a value of this purpose is bound to. The credentials' are their
    /// tokens' audiences, as they always were, so tokens issued before stay readable.
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::RegistryCredential => REGISTRY_AUDIENCE.as_bytes(),
            Purpose::RefreshCredential => REFRESH_AUDIENCE.as_bytes(),
            Purpose::ConsoleSession => b"regate/console-session",
            Purpose::PushWindow => b"regate/push-window/v1",
        }
    }
}

/// The sealing keys of one signing secret.
pub(super) struct Seals {
    credential: LessSafeKey,
    console: LessSafeKey,
}

/// Bytes a sealed value adds to what it seals: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

impl Seals {
    /// The keys derived from `secret`.
    pub(super) fn derive(secret: &[u8]) -> Seals {
        Seals {
            credential: derive(secret, b"regate/seal-credential/v1"),
            console: derive(secret, b"regate/console-session/v1"),
        }
    }

    fn key(&self, purpose: Purpose) -> &LessSafeKey {
        match purpose {
            Purpose::RegistryCredential | Purpose::RefreshCredential | Purpose::PushWindow => {
                &self.credential
            }
            Purpose::ConsoleSession => &self.console,
        }
    }

    /// `plain` sealed for `purpose`, as base64url text.
    pub(super) fn seal(&self, purpose: Purpose, plain: &[u8]) -> Result<String, TokenError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut sealed = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plain);
        let tag = self
            .key(purpose)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                &mut sealed[NONCE_LEN..],
            )
            .map_err(|_| TokenError::Sign("cannot seal".into()))?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// What `text` seals, if it was sealed for `purpose` under this secret and not altered.
    pub(super) fn open(&self, purpose: Purpose, text: &str) -> Result<SecretSlice<u8>, TokenError> {
        let invalid = || TokenError::Invalid("malformed sealed value".into());
        let mut bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        if bytes.len() < SEAL_OVERHEAD {
            return Err(invalid());
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).map_err(|_| invalid())?;
        let opened = self
            .key(purpose)
            .open_in_place(nonce, Aad::from(purpose.aad()), &mut bytes[NONCE_LEN..])
            .map(|plain| plain.to_vec());
        // The buffer held the plain text too: wipe it before it is freed.
        secrecy::zeroize::Zeroize::zeroize(&mut bytes);
        opened.map(SecretSlice::from).map_err(|_| invalid())
    }
}

/// An AES-256 key of its own for `label`, so one secret file still holds everything.
fn derive(secret: &[u8], label: &[u8]) -> LessSafeKey {
    let derived = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        label,
    );
    UnboundKey::new(&AES_256_GCM, derived.as_ref())
        .map(LessSafeKey::new)
        .expect("an HMAC-SHA256 output is a valid AES-256 key")
}

/// Length of the text [`Seals::seal`] makes of `plain_len` bytes.
pub fn sealed_len(plain_len: usize) -> usize {
    base64::encoded_len(SEAL_OVERHEAD + plain_len, false).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
