//! Loading and reloading the served certificate.

use super::*;

/// A self-signed certificate for `name` and its key, as PEM.
fn pair(name: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("generate");
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

fn files(dir: &Path) -> TlsFiles {
    TlsFiles {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
    }
}

fn write(files: &TlsFiles, (cert, key): &(String, String)) {
    crate::fs::write_atomic(&files.cert_file, cert.as_bytes(), 0o644).expect("cert");
    crate::fs::write_atomic(&files.key_file, key.as_bytes(), 0o600).expect("key");
}

fn served_der(live: &LiveCert) -> Vec<u8> {
    live.current.load().cert[0].to_vec()
}

#[test]
fn a_pair_loads_and_a_changed_pair_replaces_it() {
    let dir = tempfile::tempdir().expect("dir");
    let files = files(dir.path());
    write(&files, &pair("one.test"));
    let live = LiveCert::open(files.clone()).expect("open");
    let first = served_der(&live);
    assert_eq!(live.poll(), Reloaded::Unchanged);
    write(&files, &pair("two.test"));
    assert!(matches!(live.poll(), Reloaded::Changed { .. }));
    assert_ne!(served_der(&live), first);
}

#[test]
fn a_key_that_does_not_match_keeps_the_pair_in_force() {
    let dir = tempfile::tempdir().expect("dir");
    let files = files(dir.path());
    let good = pair("one.test");
    write(&files, &good);
    let live = LiveCert::open(files.clone()).expect("open");
    let before = served_der(&live);
    // cert-manager writes the certificate and the key one after the other: in between they
    // do not match.
    let other = pair("two.test");
    crate::fs::write_atomic(&files.cert_file, other.0.as_bytes(), 0o644).expect("cert");
    match live.poll() {
        Reloaded::Failed(message) => {
            assert!(message.contains("tls.key"), "{message}");
            assert!(!message.contains("PRIVATE KEY"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(served_der(&live), before);
    assert_eq!(live.poll(), Reloaded::Unchanged, "logged once");
    crate::fs::write_atomic(&files.key_file, other.1.as_bytes(), 0o600).expect("key");
    assert_eq!(live.poll(), Reloaded::Changed { recovered: true });
    assert_ne!(served_der(&live), before);
}

#[test]
fn missing_or_empty_files_say_which_and_what_to_write() {
    let dir = tempfile::tempdir().expect("dir");
    let files = files(dir.path());
    let error = LiveCert::open(files.clone()).expect_err("no files");
    assert!(error.to_string().contains("tls.crt"), "{error}");
    std::fs::write(&files.cert_file, "not a certificate").expect("write");
    std::fs::write(&files.key_file, "not a key").expect("write");
    let error = LiveCert::open(files.clone()).expect_err("no certificate");
    assert!(error.to_string().contains("tls.cert_file"), "{error}");
    let (cert, _) = pair("one.test");
    std::fs::write(&files.cert_file, cert).expect("write");
    let error = LiveCert::open(files).expect_err("no key");
    assert!(error.to_string().contains("tls.key_file"), "{error}");
}
