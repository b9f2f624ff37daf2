//! An OIDC issuer on 127.0.0.1: discovery and JWKS over HTTP, ES256 and RS256 keys made here,
//! and ID tokens minted with them, as a CI system or a cluster would. Its keys can be rotated or
//! retired, and the issuer taken down (503) or made to hang mid-test. Each connection is served
//! on a thread of its own, so a hanging answer holds up no other.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use super::{Env, Reply};

/// The audience tests mint tokens for (and configure regate with).
pub const OIDC_AUDIENCE: &str = "regate";

struct SigningKey {
    kid: String,
    alg: jsonwebtoken::Algorithm,
    encoding: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
    /// In the key set it serves (a retired key is not, but can still sign).
    listed: bool,
}

/// The issuer; stops with the test process.
pub struct Issuer {
    pub url: String,
    served: Served,
}

/// What the issuer's serving threads share with the test.
#[derive(Clone)]
struct Served {
    base: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    up: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    jwks_fetches: Arc<AtomicUsize>,
    jwks_in_flight: Arc<AtomicUsize>,
    jwks_most_in_flight: Arc<AtomicUsize>,
}

/// The longest a hanging answer is held (past any client's timeout).
const HANG_AT_MOST: Duration = Duration::from_secs(60);

impl Served {
    /// Answers one connection: a request, then close.
    fn answer(&self, stream: std::net::TcpStream) {
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        // The rest of the header.
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
            header.clear();
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let jwks = path == "/keys";
        if jwks {
            self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let now = self.jwks_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.jwks_most_in_flight.fetch_max(now, Ordering::SeqCst);
        }
        // Hanging: hold the connection, answer nothing, until told to stop.
        let hung = self.hang.load(Ordering::SeqCst);
        let held = Instant::now();
        while self.hang.load(Ordering::SeqCst) && held.elapsed() < HANG_AT_MOST {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, body) = if hung {
            ("503 Service Unavailable", "hung".to_string())
        } else if !self.up.load(Ordering::SeqCst) {
            ("503 Service Unavailable", "down".to_string())
        } else if path == "/.well-known/openid-configuration" {
            let base = &self.base;
            let doc = serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/keys")});
            ("200 OK", doc.to_string())
        } else if jwks {
            let keys = self.keys.lock().unwrap();
            let set: Vec<_> = keys
                .iter()
                .filter(|k| k.listed)
                .map(|k| k.jwk.clone())
                .collect();
            ("200 OK", serde_json::json!({ "keys": set }).to_string())
        } else {
            ("404 Not Found", String::new())
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if jwks {
            self.jwks_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
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
        listed: true,
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
        listed: true,
    }
}

impl Issuer {
    /// An issuer with an ES256 key `es-1` and an RS256 key `rs-1`, serving
    /// `/.well-known/openid-configuration` and `/keys`.
    pub fn start() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let served = Served {
            base: url.clone(),
            keys: Arc::new(Mutex::new(vec![es256("es-1"), rs256("rs-1")])),
            up: Arc::new(AtomicBool::new(true)),
            hang: Arc::new(AtomicBool::new(false)),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            jwks_in_flight: Arc::new(AtomicUsize::new(0)),
            jwks_most_in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let serving = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let serving = serving.clone();
                std::thread::spawn(move || serving.answer(stream));
            }
        });
        Issuer { url, served }
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
        let keys = self.served.keys.lock().unwrap();
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
        self.served.keys.lock().unwrap().push(es256(kid));
    }

    /// Retires key `kid`: the key set no longer lists it (tokens can still be minted with it).
    pub fn remove_key(&self, kid: &str) {
        let mut keys = self.served.keys.lock().unwrap();
        let key = keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .unwrap_or_else(|| panic!("no key {kid}"));
        key.listed = false;
    }

    /// Makes every request hang (held open, unanswered) until called with `false`, when the
    /// held ones are answered 503.
    pub fn set_hanging(&self, hanging: bool) {
        self.served.hang.store(hanging, Ordering::SeqCst);
    }

    /// The most key-set requests it was answering at one time.
    pub fn jwks_most_in_flight(&self) -> usize {
        self.served.jwks_most_in_flight.load(Ordering::SeqCst)
    }

    /// Takes the issuer down (every request 503) or brings it back.
    pub fn set_up(&self, up: bool) {
        self.served.up.store(up, Ordering::SeqCst);
    }

    /// Panics unless `reply` is regate's 503 for this issuer being unreachable:
    /// `Retry-After`, the issuer named, no token.
    pub fn expect_unreachable(&self, env: &Env, reply: &Reply, what: &str) {
        let err = env.expect_error(reply, 503, "UNAVAILABLE", what);
        assert!(reply.header("Retry-After").is_some(), "{what}: {reply}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&self.url) && message.contains("cannot be reached"),
            "{what}: {err}"
        );
        assert!(!reply.text().contains("eyJ"), "{what}: a token in {reply}");
    }

    /// How many times its key set was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.served.jwks_fetches.load(Ordering::SeqCst)
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
