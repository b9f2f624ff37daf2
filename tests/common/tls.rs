//! Certificates made in the test: a CA and server certificates it signs, written as the PEM
//! files regate, curl, skopeo, the Docker engine and containerd read; regate serving one, and
//! curl as the HTTPS client (reqwest here is built without TLS).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData,
};

use super::*;

/// A CA of the test's own, with its certificate at `ca_file`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// `ca.crt`: the CA certificate, PEM.
    pub ca_file: PathBuf,
    dir: PathBuf,
}

/// A server certificate's files.
pub struct ServerCert {
    /// The chain, server certificate first, then the CA.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// The base64 SHA-256 of its SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust it.
    pub spki_sha256: String,
}

impl TestCa {
    /// A new CA named `name`, its files under `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        fs::create_dir_all(dir).expect("create the CA's dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.join(format!("{name}.crt"));
        fs::write(&ca_file, issuer.pem()).expect("write the CA certificate");
        TestCa {
            issuer,
            ca_file,
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (host names or IP addresses), written as
    /// `FILE.crt` (chain) and `FILE.key`.
    pub fn server(&self, file: &str, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "regate test server");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_file = self.dir.join(format!("{file}.crt"));
        let key_file = self.dir.join(format!("{file}.key"));
        fs::write(&cert_file, format!("{}{}", cert.pem(), self.pem())).expect("write chain");
        fs::write(&key_file, key.serialize_pem()).expect("write key");
        use base64::Engine as _;
        use sha2::Digest as _;
        let spki_sha256 = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(key.subject_public_key_info()));
        ServerCert {
            cert_file,
            key_file,
            spki_sha256,
        }
    }

    /// A server certificate for [`local_names`], written as `FILE.crt` and `FILE.key`.
    pub fn local_server(&self, file: &str) -> ServerCert {
        let names = local_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.server(file, &names)
    }

    /// The CA certificate's path, as curl's `--cacert` takes it.
    pub fn ca_path(&self) -> &str {
        self.ca_file.to_str().expect("utf-8 path")
    }
}

impl EnvBuilder {
    /// `regate serve` serving HTTPS (h2 and HTTP/1.1 by ALPN) with `cert`.
    pub fn tls(self, cert: &ServerCert) -> Self {
        self.serve_arg("--tls-cert")
            .serve_arg(cert.cert_file.to_str().expect("utf-8 path"))
            .serve_arg("--tls-key")
            .serve_arg(cert.key_file.to_str().expect("utf-8 path"))
    }
}

/// `curl -sS ARGS`, bounded.
pub fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "120"]).args(args);
    run_bounded(cmd, Duration::from_secs(150))
}

/// The names a test server certificate carries: loopback, and the Docker bridge's address
/// when there is one (the engine verifies TLS only for registries off 127.0.0.0/8).
pub fn local_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Some(ip) = docker_bridge_ip() {
        names.push(ip);
    }
    names
}

/// The IPv4 address of `docker0`, if the host has that bridge.
pub fn docker_bridge_ip() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

impl Env {
    /// The status of `GET /v2/REPO/manifests/REFERENCE` through regate serving HTTPS, sent by
    /// curl trusting `ca`, with `token` as Basic credentials and OCI manifests accepted.
    pub fn https_manifest_status(
        &self,
        ca: &TestCa,
        repo: &str,
        reference: &str,
        token: &str,
    ) -> u16 {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let creds = format!("anything:{token}");
        let accept = format!("Accept: {OCI_MANIFEST}");
        let out = curl(&[
            "--cacert",
            ca.ca_path(),
            "-u",
            &creds,
            "-H",
            &accept,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert!(out.status.success(), "GET {url}: {}", show_output(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("GET {url}: {}", show_output(&out)))
    }
}
