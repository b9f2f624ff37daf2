//! An OIDC issuer on 127.0.0.1: discovery and JWKS over HTTP, ES256 and RS256 keys made here,
//! and ID tokens minted with them, as a CI system or a cluster would. Its keys can be rotated
//! and the issuer taken down mid-test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;

/// The audience tests mint tokens for (and configure regate with).
pub const OIDC_AUDIENCE: &str = "regate";

struct SigningKey {
    kid: String,
    alg: jsonwebtoken::Algorithm,
    encoding: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

/// The issuer; stops with the test process.
pub struct Issuer {
    pub url: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    up: Arc<AtomicBool>,
    jwks_fetches: Arc<AtomicUsize>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn es256(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let point = pair.public_key_raw();
    SigningKey {
        kid: kid.to_string(),
        alg: jsonwebtoken::Algorithm::ES256,
        encoding: jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())
            .expect("EC key"),
        jwk: serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }),
    }
}

fn rs256(kid: &str) -> SigningKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let der = key.to_pkcs1_der().expect("PKCS#1");
    SigningKey {
        kid: kid.to_string(),
        alg: jsonwebtoken::Algorithm::RS256,
        encoding: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
        }),
    }
}

impl Issuer {
    /// An issuer with an ES256 key `es-1` and an RS256 key `rs-1`, serving
    /// `/.well-known/openid-configuration` and `/keys`.
    pub fn start() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let keys = Arc::new(Mutex::new(vec![es256("es-1"), rs256("rs-1")]));
        let up = Arc::new(AtomicBool::new(true));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (k, u, f, base) = (keys.clone(), up.clone(), jwks_fetches.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The rest of the header.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if !u.load(Ordering::SeqCst) {
                    ("503 Service Unavailable", "down".to_string())
                } else if path == "/.well-known/openid-configuration" {
                    let doc =
                        serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/keys")});
                    ("200 OK", doc.to_string())
                } else if path == "/keys" {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys = k.lock().unwrap();
                    let set: Vec<_> = keys.iter().map(|k| k.jwk.clone()).collect();
                    ("200 OK", serde_json::json!({ "keys": set }).to_string())
                } else {
                    ("404 Not Found", String::new())
                };
                let _ = write!(
                    &stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Issuer {
            url,
            keys,
            up,
            jwks_fetches,
        }
    }

    /// Claims of a token for `sub` and `aud`, valid from now for `lifetime` seconds.
    pub fn claims(&self, sub: &str, aud: &str, lifetime: i64) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        serde_json::json!({
            "iss": self.url, "sub": sub, "aud": aud,
            "iat": now, "nbf": now, "exp": now + lifetime,
        })
    }

    /// `claims` signed with key `kid`.
    pub fn mint(&self, kid: &str, claims: &serde_json::Value) -> String {
        self.mint_as(kid, kid, claims)
    }

    /// `claims` signed with key `key`, the header naming `kid`.
    pub fn mint_as(&self, key: &str, kid: &str, claims: &serde_json::Value) -> String {
        let keys = self.keys.lock().unwrap();
        let key = keys
            .iter()
            .find(|k| k.kid == key)
            .unwrap_or_else(|| panic!("no key {key}"));
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
    }

    /// A token for `sub` with audience [`OIDC_AUDIENCE`], minted ten minutes before `exp` (seconds
    /// since the epoch; regate takes it 30 s past that), signed with `es-1`: a CI job's token.
    pub fn token_until(&self, sub: &str, exp: i64) -> String {
        let mut claims = self.claims(sub, OIDC_AUDIENCE, 600);
        for (claim, at) in [("iat", exp - 600), ("nbf", exp - 600), ("exp", exp)] {
            claims[claim] = at.into();
        }
        self.mint("es-1", &claims)
    }

    /// A token for `sub` with audience [`OIDC_AUDIENCE`], an hour long, signed with `es-1`.
    pub fn token(&self, sub: &str) -> String {
        self.mint("es-1", &self.claims(sub, OIDC_AUDIENCE, 3600))
    }

    /// Adds an ES256 key `kid` (and keeps the others), as an issuer rotating its keys does.
    pub fn add_key(&self, kid: &str) {
        self.keys.lock().unwrap().push(es256(kid));
    }

    /// Takes the issuer down (every request 503) or brings it back.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// How many times its key set was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The `identity.oidc` entry trusting this issuer with `mapping` (YAML lines of the entry
    /// after `issuer` and `audiences`).
    pub fn config(&self, mapping: &str) -> String {
        format!(
            "identity:\n  oidc:\n    - issuer: {}\n      audiences: [{OIDC_AUDIENCE}]\n{mapping}",
            self.url
        )
    }
}

/// Seconds since the epoch, as JWT claims count them.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}
