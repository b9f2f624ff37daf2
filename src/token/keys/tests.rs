use std::os::unix::fs::PermissionsExt;

use jsonwebtoken::{EncodingKey, Validation};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;

use super::material::{PublicKey, base32, pem_certificates};
use super::*;

/// The SubjectPublicKeyInfo of a P-256 key made with `openssl ecparam -genkey` and printed by
/// `openssl pkey -pubin -outform DER`; its libtrust ID was computed with Python's hashlib and
/// base64.b32encode, independently of this module.
const VECTOR_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d03010703420004480d0b209b57d2d93f05d74ae80678c6e8ab6fe9c3ea3afa57f502f19367e64b9cf78c9b67ab537be0207f6d864b6be1b819fbe1430d8758e10fab8769b0a31f";
const VECTOR_ID: &str = "U7IY:ZRZN:V6YW:XKOR:FRHV:V254:47N7:6JAW:EYJ5:KTUM:MHBX:C63C";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
}

fn claims() -> Claims {
    Claims {
        iss: "regate".into(),
        sub: "alice".into(),
        aud: "registry".into(),
        // Fixed, so two calls compare equal; far enough ahead to never expire.
        exp: 4_000_000_000,
    }
}

fn verify(key: &SigningKey, token: &str, decoding: &DecodingKey) -> Claims {
    let mut validation = Validation::new(key.jwt_algorithm());
    validation.set_audience(&["registry"]);
    jsonwebtoken::decode::<Claims>(token, decoding, &validation)
        .unwrap_or_else(|e| panic!("{token}: {e}"))
        .claims
}

fn jwk_kids(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(KeyDir::new(dir).jwks()).unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&text).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn bundle_ids(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(KeyDir::new(dir).bundle()).unwrap();
    pem_certificates(&text)
        .unwrap()
        .into_iter()
        .map(|der| Cert::from_der(der).unwrap().info.libtrust_id)
        .collect()
}

#[test]
fn libtrust_ids_are_twelve_groups_of_four_base32_characters() {
    let id = libtrust_key_id(b"anything");
    let groups: Vec<&str> = id.split(':').collect();
    assert_eq!(groups.len(), 12, "{id}");
    for group in groups {
        assert_eq!(group.len(), 4, "{id}");
        assert!(
            group
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
            "{id}"
        );
    }
}

#[test]
fn libtrust_id_matches_an_independently_computed_vector() {
    let spki = hex::decode(VECTOR_SPKI).unwrap();
    assert_eq!(libtrust_key_id(&spki), VECTOR_ID);
    assert!(matches!(
        PublicKey::from_spki(&spki),
        Some(PublicKey::Ec { x, y }) if x.len() == 32 && y.len() == 32
    ));
}

#[test]
fn base32_matches_rfc_4648() {
    // RFC 4648 §10: BASE32("fooba") = "MZXW6YTB".
    assert_eq!(base32(b"fooba"), "MZXW6YTB");
    assert_eq!(base32(&[0xff; 5]), "77777777");
}

#[test]
fn rsa_thumbprint_matches_rfc_7638() {
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let key = PublicKey::Rsa {
        n: URL_SAFE_NO_PAD.decode(n).unwrap(),
        e: URL_SAFE_NO_PAD.decode("AQAB").unwrap(),
    };
    assert_eq!(
        key.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn init_writes_every_file_and_the_key_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let published = init(&dir, KeyAlgorithm::Es256).unwrap();
    let keys = KeyDir::new(&dir);
    for path in [
        keys.signing_key(),
        keys.signing_cert(),
        keys.bundle(),
        keys.jwks(),
    ] {
        assert!(path.is_file(), "{} missing", path.display());
    }
    assert!(!keys.previous_cert().exists());
    let mode = std::fs::metadata(keys.signing_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(published.bundle.is_absolute() && published.bundle.ends_with("keys/bundle.pem"));
    assert!(published.jwks.is_absolute());
    assert_eq!(published.previous, None);
    assert_eq!(published.signing.algorithm, KeyAlgorithm::Es256);
    assert_eq!(
        bundle_ids(&dir),
        vec![published.signing.libtrust_id.clone()]
    );
    assert_eq!(jwk_kids(&dir), vec![published.signing.thumbprint.clone()]);
    assert_eq!(self::published(&dir).unwrap(), published);
}

#[test]
fn init_refuses_a_directory_that_has_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let first = init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let error = init(tmp.path(), KeyAlgorithm::Es256).unwrap_err();
    assert!(matches!(error, KeyError::Exists { .. }), "{error:?}");
    assert!(error.to_string().contains("regate keys rotate"), "{error}");
    // The key is untouched.
    assert_eq!(SigningKey::load(tmp.path()).unwrap().info(), &first.signing);
}

#[test]
fn a_directory_without_a_key_says_to_run_init() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing");
    for error in [
        published(&missing).unwrap_err(),
        rotate(&missing, None).unwrap_err(),
        SigningKey::load(tmp.path()).unwrap_err(),
    ] {
        assert!(matches!(error, KeyError::Missing { .. }), "{error:?}");
        assert!(error.to_string().contains("regate keys init"), "{error}");
    }
}

#[test]
fn a_corrupt_key_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let key = KeyDir::new(tmp.path()).signing_key();
    std::fs::write(&key, "garbage").unwrap();
    let error = SigningKey::load(tmp.path()).unwrap_err();
    assert!(
        error.to_string().contains(&key.display().to_string()),
        "{error}"
    );
}

#[test]
fn rotate_keeps_the_previous_key_and_drops_the_one_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = init(dir, KeyAlgorithm::Es256).unwrap().signing;
    let second = rotate(dir, None).unwrap();
    assert_eq!(second.previous.as_ref(), Some(&first));
    assert_ne!(second.signing, first);
    assert_eq!(
        bundle_ids(dir),
        [
            second.signing.libtrust_id.clone(),
            first.libtrust_id.clone()
        ]
    );
    assert_eq!(
        jwk_kids(dir),
        [second.signing.thumbprint.clone(), first.thumbprint.clone()]
    );
    assert_eq!(published(dir).unwrap(), second);

    let third = rotate(dir, None).unwrap();
    assert_eq!(third.previous.as_ref(), Some(&second.signing));
    assert_eq!(
        bundle_ids(dir),
        [
            third.signing.libtrust_id.clone(),
            second.signing.libtrust_id.clone()
        ]
    );
    assert!(!jwk_kids(dir).contains(&first.thumbprint));
    assert_eq!(SigningKey::load(dir).unwrap().info(), &third.signing);
    let mode = std::fs::metadata(KeyDir::new(dir).signing_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_staged_key_is_published_first_and_signs_after_the_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = init(dir, KeyAlgorithm::Es256).unwrap().signing;
    let second = rotate(dir, None).unwrap().signing;

    let staged = stage(dir, None).unwrap();
    let next = staged.next.clone().expect("a staged key");
    // Signing is unchanged; the bundle holds signing + staged, the previous is retired.
    assert_eq!(staged.signing, second);
    assert_eq!(staged.previous, None);
    assert_eq!(
        bundle_ids(dir),
        [second.libtrust_id.clone(), next.libtrust_id.clone()]
    );
    assert_eq!(
        jwk_kids(dir),
        [second.thumbprint.clone(), next.thumbprint.clone()]
    );
    assert!(!bundle_ids(dir).contains(&first.libtrust_id));
    assert_eq!(SigningKey::load(dir).unwrap().info(), &second);
    assert_eq!(published(dir).unwrap(), staged);
    let mode = std::fs::metadata(KeyDir::new(dir).next_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The rotation signs with exactly the staged key: the bundle the registry read at its
    // restart already trusts both keys in use.
    let bundle_after_stage = bundle_ids(dir);
    let rotated = rotate(dir, None).unwrap();
    assert_eq!(rotated.signing, next);
    assert_eq!(rotated.previous.as_ref(), Some(&second));
    assert_eq!(rotated.next, None);
    let mut after = bundle_ids(dir);
    let mut before = bundle_after_stage;
    after.sort();
    before.sort();
    assert_eq!(after, before, "the same two keys are published");
    assert!(!KeyDir::new(dir).next_key().exists());
    assert_eq!(SigningKey::load(dir).unwrap().info(), &next);
}

#[test]
fn a_staged_key_of_another_algorithm_is_not_replaced_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, KeyAlgorithm::Es256).unwrap();
    stage(dir, None).unwrap();
    let err = rotate(dir, Some(KeyAlgorithm::Rs256))
        .unwrap_err()
        .to_string();
    assert!(err.contains("staged es256 key, not rs256"), "{err}");
    assert!(err.contains("--stage --algorithm rs256"), "{err}");
}

#[test]
fn staged_files_left_by_an_interrupted_rotation_are_not_promoted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init(dir, KeyAlgorithm::Es256).unwrap();
    let next = stage(dir, None).unwrap().next.unwrap();
    let keys = KeyDir::new(dir);
    let next_key = std::fs::read(keys.next_key()).unwrap();
    let next_cert = std::fs::read(keys.next_cert()).unwrap();
    rotate(dir, None).unwrap();
    // As if the process died before removing the staged files.
    std::fs::write(keys.next_key(), next_key).unwrap();
    std::fs::write(keys.next_cert(), next_cert).unwrap();
    assert_eq!(published(dir).unwrap().next, None);
    let third = rotate(dir, None).unwrap();
    assert_ne!(third.signing, next, "a fresh key, not the same one again");
    assert_eq!(third.previous, Some(next));
}

#[test]
fn a_rotation_interrupted_before_the_key_was_written_still_loads_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = init(dir, KeyAlgorithm::Es256).unwrap().signing;
    let keys = KeyDir::new(dir);
    let old_key = std::fs::read(keys.signing_key()).unwrap();
    rotate(dir, None).unwrap();
    // As if the process died between writing signing-cert.pem and signing-key.pem.
    std::fs::write(keys.signing_key(), old_key).unwrap();
    let key = SigningKey::load(dir).unwrap();
    assert_eq!(key.info(), &first);
    // Its certificate is the previous one, which the bundle has.
    assert!(bundle_ids(dir).contains(&first.libtrust_id));
}

#[test]
fn the_header_carries_what_each_trust_needs() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let key = SigningKey::load(tmp.path()).unwrap();

    let header = key.header(Trust::RootCertBundle);
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(key.info().libtrust_id.as_str()));
    let x5c = header.x5c.unwrap();
    assert_eq!(x5c.len(), 1);
    let cert_pem = std::fs::read_to_string(KeyDir::new(tmp.path()).signing_cert()).unwrap();
    assert_eq!(
        STANDARD.decode(&x5c[0]).unwrap(),
        pem_certificates(&cert_pem).unwrap()[0]
    );

    let header = key.header(Trust::Jwks);
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(key.info().thumbprint.as_str()));
    assert_eq!(header.x5c, None);
}

/// The verifying key of the certificate the registry is given, not of the private key.
fn decoding_key_of_cert(dir: &Path) -> DecodingKey {
    let text = std::fs::read_to_string(KeyDir::new(dir).signing_cert()).unwrap();
    let der = pem_certificates(&text).unwrap().remove(0);
    Cert::from_der(der).unwrap().public.decoding_key()
}

fn signs_and_verifies(algorithm: KeyAlgorithm) {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), algorithm).unwrap();
    let key = SigningKey::load(tmp.path()).unwrap();
    assert_eq!(key.info().algorithm, algorithm);
    assert_eq!(key.jwt_algorithm(), algorithm.jwt());
    for trust in [Trust::RootCertBundle, Trust::Jwks] {
        let token = key.sign(trust, &claims()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header, key.header(trust));
        assert_eq!(verify(&key, &token, &key.decoding_key()), claims());
        assert_eq!(
            verify(&key, &token, &decoding_key_of_cert(tmp.path())),
            claims()
        );
    }
    // The key file is the PKCS#8 PEM the brief promises.
    let pem = std::fs::read_to_string(KeyDir::new(tmp.path()).signing_key()).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
}

#[test]
fn es256_tokens_verify_with_the_certificate_key() {
    signs_and_verifies(KeyAlgorithm::Es256);
}

#[test]
fn rs256_tokens_verify_with_the_certificate_key() {
    signs_and_verifies(KeyAlgorithm::Rs256);
}

#[test]
fn rotate_can_change_the_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let published = rotate(tmp.path(), Some(KeyAlgorithm::Rs256)).unwrap();
    assert_eq!(published.signing.algorithm, KeyAlgorithm::Rs256);
    assert_eq!(
        published.previous.map(|p| p.algorithm),
        Some(KeyAlgorithm::Es256)
    );
    let text = std::fs::read_to_string(KeyDir::new(tmp.path()).jwks()).unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["e"], "AQAB");
    assert_eq!(jwks["keys"][1]["kty"], "EC");
    assert_eq!(jwks["keys"][1]["crv"], "P-256");
    assert_eq!(jwks["keys"][1]["use"], "sig");
}

#[test]
fn the_jwk_verifies_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let key = SigningKey::load(tmp.path()).unwrap();
    let text = std::fs::read_to_string(KeyDir::new(tmp.path()).jwks()).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).unwrap();
    let jwk = jwks.find(&key.info().thumbprint).unwrap();
    let token = key.sign(Trust::Jwks, &claims()).unwrap();
    let decoding = DecodingKey::from_jwk(jwk).unwrap();
    assert_eq!(verify(&key, &token, &decoding), claims());
}

#[test]
fn debug_never_prints_key_material() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let key = SigningKey::load(tmp.path()).unwrap();
    let debug = format!("{key:?}");
    assert!(debug.contains(&key.info().libtrust_id), "{debug}");
    assert!(
        !debug.contains("encoding") && !debug.contains("cert"),
        "{debug}"
    );
}

#[test]
fn trust_and_algorithm_names() {
    assert_eq!(
        serde_json::to_string(&Trust::RootCertBundle).unwrap(),
        r#""rootcertbundle""#
    );
    assert_eq!(serde_json::to_string(&Trust::Jwks).unwrap(), r#""jwks""#);
    assert_eq!(
        serde_json::from_str::<KeyAlgorithm>(r#""rs256""#).unwrap(),
        KeyAlgorithm::Rs256
    );
    assert_eq!(Trust::default(), Trust::RootCertBundle);
    assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::Es256);
    use clap::ValueEnum;
    assert_eq!(
        Trust::from_str("rootcertbundle", false),
        Ok(Trust::RootCertBundle)
    );
    assert_eq!(
        KeyAlgorithm::from_str("es256", false),
        Ok(KeyAlgorithm::Es256)
    );
}

#[test]
fn live_key_picks_up_a_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let first = init(tmp.path(), KeyAlgorithm::Es256).unwrap().signing;
    let live = LiveKey::open(tmp.path()).unwrap();
    assert_eq!(live.current().info(), &first);
    assert!(!live.reload().unwrap());
    let second = rotate(tmp.path(), None).unwrap().signing;
    assert!(live.reload().unwrap());
    assert_eq!(live.current().info(), &second);

    // A broken file keeps the last good key.
    std::fs::write(KeyDir::new(tmp.path()).signing_key(), "garbage").unwrap();
    assert!(live.reload().is_err());
    assert_eq!(live.current().info(), &second);
    // And is not re-read until it changes.
    assert!(!live.reload().unwrap());
}

#[tokio::test]
async fn the_reloader_swaps_in_a_rotated_key() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let live = LiveKey::open(tmp.path()).unwrap();
    live.spawn_reloader();
    let rotated = rotate(tmp.path(), None).unwrap().signing;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live.current().info() != &rotated {
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn jsonwebtoken_loads_the_pkcs8_pem_key_file() {
    for algorithm in [KeyAlgorithm::Es256, KeyAlgorithm::Rs256] {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), algorithm).unwrap();
        let key = SigningKey::load(tmp.path()).unwrap();
        let pem = std::fs::read(KeyDir::new(tmp.path()).signing_key()).unwrap();
        let encoding = match algorithm {
            KeyAlgorithm::Es256 => EncodingKey::from_ec_pem(&pem),
            KeyAlgorithm::Rs256 => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        let token = jsonwebtoken::encode(&key.header(Trust::Jwks), &claims(), &encoding).unwrap();
        assert_eq!(verify(&key, &token, &key.decoding_key()), claims());
    }
}

#[test]
fn the_jwk_thumbprint_matches_jsonwebtokens() {
    for algorithm in [KeyAlgorithm::Es256, KeyAlgorithm::Rs256] {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), algorithm).unwrap();
        let key = SigningKey::load(tmp.path()).unwrap();
        let text = std::fs::read_to_string(KeyDir::new(tmp.path()).jwks()).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).unwrap();
        let jwk = &jwks.keys[0];
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            key.info().thumbprint,
            "{algorithm}"
        );
        if algorithm == KeyAlgorithm::Rs256 {
            // Big-endian without a leading zero: 2048 bits are 256 bytes.
            let Some(PublicKey::Rsa { n, e }) = PublicKey::from_spki(&key.cert.spki) else {
                panic!("not an RSA key");
            };
            assert_eq!((n.len(), e.as_slice()), (256, &[1, 0, 1][..]));
        }
    }
}

#[test]
fn certificate_pem_is_lf_with_64_character_lines() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    let pem = std::fs::read_to_string(KeyDir::new(tmp.path()).signing_cert()).unwrap();
    assert!(!pem.contains('\r'), "{pem:?}");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    assert!(pem.ends_with("\n-----END CERTIFICATE-----\n"), "{pem}");
    let lines: Vec<&str> = pem.lines().collect();
    let body = &lines[1..lines.len() - 1];
    assert!(
        body[..body.len() - 1].iter().all(|l| l.len() == 64),
        "{pem}"
    );
    assert!(
        !body.is_empty() && body[body.len() - 1].len() <= 64,
        "{pem}"
    );
}

#[test]
fn pem_certificates_reads_every_block_and_skips_other_text() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), KeyAlgorithm::Es256).unwrap();
    rotate(tmp.path(), None).unwrap();
    let keys = KeyDir::new(tmp.path());
    let bundle = std::fs::read_to_string(keys.bundle()).unwrap();
    let key = std::fs::read_to_string(keys.signing_key()).unwrap();
    let text = format!("comment\n{bundle}between\n{key}trailing");
    let ders = pem_certificates(&text).unwrap();
    assert_eq!(ders, pem_certificates(&bundle).unwrap());
    assert_eq!(ders.len(), 2);
    assert_eq!(
        Cert::from_der(ders[0].clone()).unwrap().info,
        SigningKey::load(tmp.path()).unwrap().info
    );
    // A file with two certificates is not a certificate file.
    let error = Cert::from_pem_file(&keys.signing_cert(), &bundle).unwrap_err();
    assert!(
        error.to_string().contains("holds 2 certificates"),
        "{error}"
    );
    assert!(pem_certificates("no PEM here").unwrap().is_empty());
    assert!(Cert::from_der(b"garbage".to_vec()).is_err());
}
