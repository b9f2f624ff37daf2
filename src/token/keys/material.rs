//! The key material itself: generating a key and its self-signed certificate, signing tokens
//! with ring, and the public forms a registry reads (PEM bundle, JWKS, libtrust key ID).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    CERT_BACKDATE, CERT_COMMON_NAME, CERT_LIFETIME, KeyAlgorithm, KeyDir, KeyError, KeyInfo,
    RSA_BITS, Trust, read_optional,
};

/// The key tokens are signed with, loaded once, reused for every token.
pub struct SigningKey {
    pub(super) info: KeyInfo,
    pub(super) cert: Cert,
    private: PrivateKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("SigningKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads `signing-key.pem` and its certificate (in `signing-cert.pem`, or in
    /// `previous-cert.pem` while a rotation is being written).
    pub fn load(dir: &Path) -> Result<SigningKey, KeyError> {
        let keys = KeyDir::new(dir);
        let key_path = keys.signing_key();
        // The key is read before the certificates: rotation writes the key last, so whatever
        // key is read here has its certificate on disk already.
        let Some(key_pem) = read_optional(&key_path)? else {
            return Err(KeyError::Missing {
                dir: dir.to_path_buf(),
                path: key_path,
            });
        };
        let invalid = |reason: String| KeyError::Invalid {
            path: key_path.clone(),
            reason,
        };
        let pair = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(format!("not a PKCS#8 private key ({e})")))?;
        let algorithm = if pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::Es256
        } else if pair.algorithm() == &rcgen::PKCS_RSA_SHA256 {
            KeyAlgorithm::Rs256
        } else {
            return Err(invalid(
                "the key is neither P-256 (es256) nor RSA (rs256)".into(),
            ));
        };
        let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
        let pkcs8 = pair.serialize_der();
        let private = PrivateKey::from_pkcs8(algorithm, &pkcs8).map_err(invalid)?;

        let mut certs = Vec::new();
        for path in [keys.signing_cert(), keys.previous_cert()] {
            if let Some(text) = read_optional(&path)? {
                certs.push(Cert::from_pem_file(&path, &text)?);
            }
        }
        let Some(cert) = certs.into_iter().find(|c| c.spki == spki) else {
            return Err(KeyError::Mismatch {
                dir: dir.to_path_buf(),
                key: key_path,
                cert: keys.signing_cert(),
                previous: keys.previous_cert(),
            });
        };
        let decoding = cert.public.decoding_key();
        Ok(SigningKey {
            info: cert.info.clone(),
            cert,
            private,
            decoding,
        })
    }

    /// The key's algorithm and identifiers.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// The JOSE header for `trust`: `alg`, and for [`Trust::RootCertBundle`] `x5c` (the
    /// certificate, standard base64 DER) with `kid` the libtrust ID; for [`Trust::Jwks`] `kid`
    /// the JWK thumbprint and no `x5c`.
    pub fn header(&self, trust: Trust) -> Header {
        let mut header = Header::new(self.jwt_algorithm());
        match trust {
            Trust::RootCertBundle => {
                header.kid = Some(self.info.libtrust_id.clone());
                header.x5c = Some(vec![STANDARD.encode(&self.cert.der)]);
            }
            Trust::Jwks => header.kid = Some(self.info.thumbprint.clone()),
        }
        header
    }

    /// A compact JWT of `claims` with the header for `trust`.
    pub fn sign<T: Serialize>(&self, trust: Trust, claims: &T) -> Result<String, KeyError> {
        // A JWS in compact form (RFC 7515 §7.1), as jsonwebtoken writes it, signed by ring.
        let failed = |e: serde_json::Error| KeyError::Sign(e.to_string());
        let header = serde_json::to_vec(&self.header(trust)).map_err(failed)?;
        let claims = serde_json::to_vec(claims).map_err(failed)?;
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.private.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }

    /// Verifying key of the public half (for tests and tools), built from the certificate.
    pub fn decoding_key(&self) -> DecodingKey {
        self.decoding.clone()
    }

    /// The JWT algorithm tokens are signed with.
    pub fn jwt_algorithm(&self) -> Algorithm {
        self.info.algorithm.jwt()
    }
}

/// A private key as ring signs with it. jsonwebtoken's pure-Rust ES256 took about 570 µs a
/// token in a release build here, ring takes a few tens: token issuance is bound by it.
enum PrivateKey {
    /// P-256; signatures are the fixed-size `r || s` JWS wants.
    Es256(ring::signature::EcdsaKeyPair),
    /// RSA with PKCS#1 v1.5 padding and SHA-256.
    Rs256(ring::signature::RsaKeyPair),
}

impl PrivateKey {
    /// The key of a DER PKCS#8 document; `Err` says why ring refuses it.
    fn from_pkcs8(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<PrivateKey, String> {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        match algorithm {
            KeyAlgorithm::Es256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map(PrivateKey::Es256)
                    .map_err(|e| format!("not a usable P-256 key ({e})"))
            }
            KeyAlgorithm::Rs256 => RsaKeyPair::from_pkcs8(pkcs8)
                .map(PrivateKey::Rs256)
                .map_err(|e| format!("not a usable RSA key ({e})")),
        }
    }

    /// The JWS signature of `input`.
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let failed = |e: ring::error::Unspecified| KeyError::Sign(e.to_string());
        match self {
            PrivateKey::Es256(key) => Ok(key.sign(&rng, input).map_err(failed)?.as_ref().to_vec()),
            PrivateKey::Rs256(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    input,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

/// libtrust key ID of a DER SubjectPublicKeyInfo: the first 240 bits of its SHA-256 in base32,
/// as 12 groups of 4 joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = base32(&digest[..30]);
    let groups: Vec<&str> = (0..encoded.len())
        .step_by(4)
        .map(|i| &encoded[i..i + 4])
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 (standard alphabet) of `bytes`, whose length is a multiple of 5, so there is
/// no padding. Hand-written: 30 bytes are all it ever encodes.
pub(super) fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    debug_assert_eq!(bytes.len() % 5, 0);
    let mut out = String::with_capacity(bytes.len() / 5 * 8);
    for chunk in bytes.chunks(5) {
        let block = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        for i in (0..8).rev() {
            out.push(char::from(ALPHABET[((block >> (i * 5)) & 31) as usize]));
        }
    }
    out
}

/// A public key, as JWKs spell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PublicKey {
    /// A P-256 point.
    Ec { x: Vec<u8>, y: Vec<u8> },
    /// An RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl PublicKey {
    /// The key of a DER SubjectPublicKeyInfo, if it is P-256 or RSA.
    pub(super) fn from_spki(spki: &[u8]) -> Option<PublicKey> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        if let Ok(key) = p256::PublicKey::from_public_key_der(spki) {
            let point = key.to_encoded_point(false);
            Some(PublicKey::Ec {
                x: point.x()?.to_vec(),
                y: point.y()?.to_vec(),
            })
        } else if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) {
            Some(PublicKey::Rsa {
                n: key.n().to_bytes_be(),
                e: key.e().to_bytes_be(),
            })
        } else {
            None
        }
    }

    pub(super) fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ec { .. } => KeyAlgorithm::Es256,
            PublicKey::Rsa { .. } => KeyAlgorithm::Rs256,
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, no
    /// whitespace, base64url without padding.
    pub(super) fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicKey::Ec { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x),
                URL_SAFE_NO_PAD.encode(y)
            ),
            PublicKey::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(e),
                URL_SAFE_NO_PAD.encode(n)
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The key's JWK, `kid` its thumbprint.
    pub(super) fn jwk(&self) -> serde_json::Value {
        let kid = self.thumbprint();
        match self {
            PublicKey::Ec { x, y } => serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
                "alg": "ES256",
                "use": "sig",
                "kid": kid,
            }),
            PublicKey::Rsa { n, e } => serde_json::json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
                "alg": "RS256",
                "use": "sig",
                "kid": kid,
            }),
        }
    }

    pub(super) fn decoding_key(&self) -> DecodingKey {
        match self {
            PublicKey::Ec { x, y } => {
                // jsonwebtoken verifies EC signatures with the SEC1 uncompressed point.
                DecodingKey::from_ec_der(&[&[0x04][..], x, y].concat())
            }
            PublicKey::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
        }
    }
}

/// A certificate of a key directory.
#[derive(Clone, Debug)]
pub(super) struct Cert {
    /// PEM, as written to the files.
    pub(super) pem: String,
    pub(super) der: Vec<u8>,
    /// Its DER SubjectPublicKeyInfo.
    pub(super) spki: Vec<u8>,
    pub(super) public: PublicKey,
    pub(super) info: KeyInfo,
}

impl Cert {
    pub(super) fn from_der(der: Vec<u8>) -> Result<Cert, String> {
        use x509_cert::der::{Decode, Encode};
        let spki = x509_cert::Certificate::from_der(&der)
            .and_then(|c| c.tbs_certificate.subject_public_key_info.to_der())
            .map_err(|e| format!("not an X.509 certificate ({e})"))?;
        let public =
            PublicKey::from_spki(&spki).ok_or("the certificate's key is neither P-256 nor RSA")?;
        let info = KeyInfo {
            algorithm: public.algorithm(),
            libtrust_id: libtrust_key_id(&spki),
            thumbprint: public.thumbprint(),
        };
        Ok(Cert {
            pem: pem::encode_config(
                &pem::Pem::new(CERTIFICATE, der.as_slice()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            ),
            der,
            spki,
            public,
            info,
        })
    }

    /// The one certificate of the PEM file `path`.
    pub(super) fn from_pem_file(path: &Path, text: &str) -> Result<Cert, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut blocks = pem_certificates(text).map_err(invalid)?;
        if blocks.len() != 1 {
            return Err(invalid(format!(
                "holds {} certificates, expected 1",
                blocks.len()
            )));
        }
        Cert::from_der(blocks.remove(0)).map_err(invalid)
    }
}

/// A newly generated key and its certificate.
pub(super) struct Fresh {
    pub(super) key_pem: String,
    pub(super) cert: Cert,
}

pub(super) fn generate(algorithm: KeyAlgorithm) -> Result<Fresh, KeyError> {
    let failed = |reason: String| KeyError::Generate { algorithm, reason };
    let pair = match algorithm {
        KeyAlgorithm::Es256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| failed(e.to_string()))?,
        KeyAlgorithm::Rs256 => {
            // ring signs with RSA keys but does not generate them.
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| failed(e.to_string()))?;
            let pkcs8 = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
                &pkcs8.as_bytes().into(),
                &rcgen::PKCS_RSA_SHA256,
            )
            .map_err(|e| failed(e.to_string()))?
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CERT_COMMON_NAME);
    params.not_before = now - CERT_BACKDATE;
    params.not_after = now + CERT_LIFETIME;
    // A trust anchor of its own: Go's x509 and OpenSSL accept it as the root of a one-element
    // chain. No extended key usage means any, which is what distribution asks for.
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    let cert = params
        .self_signed(&pair)
        .map_err(|e| failed(e.to_string()))?;
    let cert = Cert::from_der(cert.der().to_vec()).map_err(failed)?;
    Ok(Fresh {
        key_pem: pair.serialize_pem(),
        cert,
    })
}

/// The PEM label of a certificate.
const CERTIFICATE: &str = "CERTIFICATE";

/// The DER of every CERTIFICATE block of PEM `text`; other blocks and text outside blocks are
/// ignored.
pub(super) fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("malformed PEM ({e})"))?;
    Ok(blocks
        .into_iter()
        .filter(|block| block.tag() == CERTIFICATE)
        .map(pem::Pem::into_contents)
        .collect())
}
