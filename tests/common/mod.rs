//! Whole-process test fixture: a real `docker-registry` and a real `regate serve` in a temp
//! dir, the `regate` CLI against the same state, and the clients the tests drive them with
//! (reqwest, raw HTTP over a `TcpStream`, skopeo, the Docker engine).
//!
//! Each test builds its own [`Env`], so tests run in parallel without sharing a port, a state
//! dir, a credential file or an image tag. Every process is killed when the `Env` drops (also
//! on panic, when the tails of regate's and the registry's logs are printed), and with
//! `PR_SET_PDEATHSIG` if the test binary itself dies.

#![allow(dead_code)]

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// The binary under test, built once by cargo for every test file.
pub const REGATE: &str = env!("CARGO_BIN_EXE_regate");
/// How long a process may take to come up.
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long a CLI change may take to be in force (the issue promises 1 s).
pub const POLICY_DELAY: Duration = Duration::from_millis(1200);
/// Timeout of one HTTP exchange made by a test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(120);
/// The two namespaces of the issue's walkthrough.
pub const PROJECTS: &[&str] = &["project-a", "project-b"];

/// Which authority the gateway under test asks. `REGATE_TEST_AUTHORITY` picks it for the
/// whole suite: `embedded` (the default: regate's own state directory), `kubernetes` (TokenReview
/// and SubjectAccessReview against `regate authority serve`) or `kubernetes-self`
/// (SelfSubjectReview and SelfSubjectAccessReview made with the caller's token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityMode {
    Embedded,
    Kubernetes,
    KubernetesSelf,
}

impl AuthorityMode {
    /// The mode `REGATE_TEST_AUTHORITY` names.
    pub fn from_env() -> AuthorityMode {
        match std::env::var("REGATE_TEST_AUTHORITY").as_deref() {
            Err(_) | Ok("") | Ok("embedded") => AuthorityMode::Embedded,
            Ok("kubernetes") => AuthorityMode::Kubernetes,
            Ok("kubernetes-self") => AuthorityMode::KubernetesSelf,
            Ok(other) => panic!(
                "REGATE_TEST_AUTHORITY={other:?}: use embedded, kubernetes or kubernetes-self"
            ),
        }
    }

    /// Whether the gateway asks a Kubernetes API (`regate authority serve`).
    pub fn is_kubernetes(self) -> bool {
        self != AuthorityMode::Embedded
    }
}

/// The gateway's config in kubernetes modes: short cache lifetimes, so a CLI change on the
/// authority's state is in force within [`POLICY_DELAY`] as in embedded mode (with the default
/// lifetimes a revocation takes up to 5 minutes, as with the Kubernetes webhook authorizer).
/// The `service` (the registry's `auth.token.service`) of token-server mode in tests.
pub const TOKEN_SERVICE: &str = "test-registry";
/// The `issuer` of token-server mode in tests (not the defaults, so a block or a token that
/// ignored the config would fail).
pub const TOKEN_ISSUER: &str = "regate-test";

pub const KUBERNETES_TEST_CONFIG: &str =
    "cache:\n  allow_ttl: 300ms\n  deny_ttl: 300ms\nauthority:\n  token_cache_ttl: 300ms\n";

/// What an [`Env`] starts. `EnvBuilder::default().run()` is a registry and regate, with no
/// namespace.
#[derive(Clone, Debug)]
pub struct EnvBuilder {
    authority: AuthorityMode,
    authority_args: Vec<String>,
    gateway_config: Option<String>,
    namespaces: Vec<String>,
    registry: bool,
    regate: bool,
    upstream: Option<String>,
    public_url: Option<String>,
    serve_args: Vec<String>,
    token_server: bool,
    registry_config: String,
}

impl Default for EnvBuilder {
    fn default() -> Self {
        EnvBuilder {
            authority: AuthorityMode::from_env(),
            authority_args: Vec::new(),
            gateway_config: None,
            namespaces: Vec::new(),
            registry: true,
            regate: true,
            upstream: None,
            public_url: None,
            serve_args: Vec::new(),
            token_server: false,
            registry_config: String::new(),
        }
    }
}

impl EnvBuilder {
    /// Namespaces created with `regate create namespace` before regate starts.
    pub fn namespaces(mut self, names: &[&str]) -> Self {
        self.namespaces.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Ask this authority instead of the one `REGATE_TEST_AUTHORITY` names.
    pub fn authority(mut self, mode: AuthorityMode) -> Self {
        self.authority = mode;
        self
    }

    /// An extra argument to `regate authority serve` (kubernetes modes).
    pub fn authority_arg(mut self, arg: &str) -> Self {
        self.authority_args.push(arg.to_string());
        self
    }

    /// `regate serve --config` with this YAML (in kubernetes modes instead of the short-TTL
    /// test config).
    pub fn gateway_config(mut self, yaml: &str) -> Self {
        self.gateway_config = Some(yaml.to_string());
        self
    }

    /// Start only the registry (to check the harness itself).
    pub fn without_regate(mut self) -> Self {
        self.regate = false;
        self
    }

    /// Put regate in front of this URL instead of a registry of its own (none is started).
    pub fn upstream(mut self, url: &str) -> Self {
        self.upstream = Some(url.to_string());
        self.registry = false;
        self
    }

    /// Pass `--public-url URL` to `regate serve` (by default none: the realm comes from `Host`).
    pub fn public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.to_string());
        self
    }

    /// An extra argument to `regate serve`.
    pub fn serve_arg(mut self, arg: &str) -> Self {
        self.serve_args.push(arg.to_string());
        self
    }

    /// YAML appended to the registry's config, e.g. an `auth: htpasswd` section.
    pub fn registry_config(mut self, yaml: &str) -> Self {
        self.registry_config.push_str(yaml);
        self
    }

    /// Token-server mode too: keys made with `regate keys init`, a `token_server:` section
    /// ([`TOKEN_SERVICE`], [`TOKEN_ISSUER`]) added to the gateway config, and a second registry
    /// configured with the `auth:` block `regate keys show` prints for this regate.
    pub fn token_server(mut self) -> Self {
        self.token_server = true;
        self
    }

    pub fn run(self) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("regate-test-")
            .tempdir()
            .expect("create temp dir");
        let state = dir.path().join("state");
        let mut env = Env {
            mode: self.authority,
            authority_args: self.authority_args.clone(),
            gateway_config: self.gateway_config.clone(),
            authority: None,
            state,
            registry: None,
            token_registry: None,
            regate: None,
            upstream: String::new(),
            public_url: self.public_url.clone(),
            serve_args: self.serve_args.clone(),
            dir,
        };
        fs::write(env.authfile(), "{\"auths\":{}}\n").expect("write skopeo authfile");
        fs::create_dir_all(env.dir().join("home")).expect("create HOME for clients");
        if self.registry {
            env.registry = Some(Registry::start(
                env.dir(),
                "registry",
                &self.registry_config,
            ));
        }
        env.upstream = match (&self.upstream, &env.registry) {
            (Some(url), _) => url.clone(),
            (None, Some(reg)) => format!("http://{}", reg.addr),
            (None, None) => "http://127.0.0.1:9".to_string(),
        };
        for ns in &self.namespaces {
            env.regate_ok(&["create", "namespace", ns]);
        }
        if self.token_server {
            let base = match (&env.gateway_config, env.mode.is_kubernetes()) {
                (Some(yaml), _) => yaml.clone(),
                (None, true) => KUBERNETES_TEST_CONFIG.to_string(),
                (None, false) => String::new(),
            };
            env.gateway_config = Some(format!(
                "{base}token_server:\n  service: {TOKEN_SERVICE}\n  issuer: {TOKEN_ISSUER}\n"
            ));
            env.regate_ok(&[
                "keys",
                "init",
                "--service",
                TOKEN_SERVICE,
                "--issuer",
                TOKEN_ISSUER,
            ]);
        }
        if self.regate {
            env.start_regate();
            if self.token_server {
                env.restart_token_registry();
            }
        }
        env
    }
}

/// A registry, a regate in front of it and a temp dir holding both, their logs, the regate
/// state and the clients' credentials.
pub struct Env {
    mode: AuthorityMode,
    authority_args: Vec<String>,
    gateway_config: Option<String>,
    /// `regate authority serve`, in kubernetes modes.
    authority: Option<Regate>,
    registry: Option<Registry>,
    /// A second registry with `auth: token`, for token-server mode.
    token_registry: Option<Registry>,
    regate: Option<Regate>,
    state: PathBuf,
    upstream: String,
    public_url: Option<String>,
    serve_args: Vec<String>,
    // Dropped last: the processes above write into it.
    dir: tempfile::TempDir,
}

impl Env {
    /// A registry and regate with no namespace.
    pub fn start() -> Env {
        EnvBuilder::default().run()
    }

    pub fn builder() -> EnvBuilder {
        EnvBuilder::default()
    }

    /// A registry and regate with `project-a` and `project-b` created.
    pub fn with_projects() -> Env {
        EnvBuilder::default().namespaces(PROJECTS).run()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    fn regate_proc(&self) -> &Regate {
        self.regate.as_ref().expect("this Env runs no regate")
    }

    /// regate's bound address.
    pub fn addr(&self) -> SocketAddr {
        self.regate_proc().addr
    }

    /// `127.0.0.1:PORT` of regate, as image references name it.
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// `http://127.0.0.1:PORT` of regate.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn regate_pid(&self) -> u32 {
        self.regate_proc().child.id()
    }

    fn registry_proc(&self) -> &Registry {
        self.registry.as_ref().expect("this Env runs no registry")
    }

    pub fn registry_addr(&self) -> SocketAddr {
        self.registry_proc().addr
    }

    /// `http://127.0.0.1:PORT` of the registry itself.
    pub fn registry_url(&self) -> String {
        format!("http://{}", self.registry_addr())
    }

    /// What regate forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Everything the registry printed (its access log included).
    pub fn registry_log(&self) -> String {
        self.registry
            .as_ref()
            .map(|r| read_lossy(&r.log))
            .unwrap_or_default()
    }

    /// Everything regate printed on stderr.
    pub fn regate_log(&self) -> String {
        self.regate
            .as_ref()
            .map(|r| read_lossy(&r.stderr))
            .unwrap_or_default()
    }

    /// The last `n` lines of regate's stderr, for assertion messages.
    pub fn regate_log_tail(&self, n: usize) -> String {
        tail(&self.regate_log(), n)
    }

    /// Start (or restart, on its data) a second registry whose config ends with `extra`, e.g.
    /// the `auth:` block `regate keys init` prints, making regate its token server.
    pub fn start_token_registry(&mut self, extra: &str) {
        if let Some(mut reg) = self.token_registry.take() {
            kill(&mut reg.child);
        }
        self.token_registry = Some(Registry::start(self.dir(), "token-registry", extra));
    }

    /// The `auth:` block `regate keys show` prints for this regate's token-server realm,
    /// checked to be YAML naming that realm, [`TOKEN_SERVICE`] and [`TOKEN_ISSUER`].
    pub fn token_registry_block(&self) -> String {
        let realm = format!("{}/token", self.url());
        let block = self.regate_ok(&[
            "keys",
            "show",
            "--realm",
            &realm,
            "--service",
            TOKEN_SERVICE,
            "--issuer",
            TOKEN_ISSUER,
        ]);
        let parsed: serde_yaml::Value = serde_yaml::from_str(&block)
            .unwrap_or_else(|e| panic!("`regate keys show` prints YAML: {e}\n{block}"));
        let token = &parsed["auth"]["token"];
        assert_eq!(token["realm"].as_str(), Some(realm.as_str()), "{block}");
        assert_eq!(token["service"].as_str(), Some(TOKEN_SERVICE), "{block}");
        assert_eq!(token["issuer"].as_str(), Some(TOKEN_ISSUER), "{block}");
        block
    }

    /// (Re)start the token-auth registry with the block `regate keys show` prints now, as an
    /// operator does after a key rotation.
    pub fn restart_token_registry(&mut self) {
        let block = self.token_registry_block();
        self.start_token_registry(&block);
    }

    /// `127.0.0.1:PORT` of the token-auth registry.
    pub fn token_registry_host(&self) -> String {
        let reg = self
            .token_registry
            .as_ref()
            .expect("no token registry started");
        reg.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` of the token-auth registry.
    pub fn token_registry_url(&self) -> String {
        format!("http://{}", self.token_registry_host())
    }

    /// Everything the token-auth registry printed.
    pub fn token_registry_log(&self) -> String {
        self.token_registry
            .as_ref()
            .map(|r| read_lossy(&r.log))
            .unwrap_or_default()
    }

    /// Kill the registry (regate keeps running).
    pub fn stop_registry(&mut self) {
        if let Some(mut reg) = self.registry.take() {
            kill(&mut reg.child);
        }
    }

    /// Kill regate.
    pub fn stop_regate(&mut self) {
        if let Some(mut r) = self.regate.take() {
            kill(&mut r.child);
        }
    }

    /// Start (or restart) `regate serve` against this Env's upstream and state.
    pub fn start_regate(&mut self) {
        self.stop_regate();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            self.upstream.clone(),
            "--state".into(),
            self.state.display().to_string(),
        ];
        if let Some(url) = &self.public_url {
            args.push("--public-url".into());
            args.push(url.clone());
        }
        let config = match (&self.gateway_config, self.mode.is_kubernetes()) {
            (Some(yaml), _) => Some(yaml.as_str()),
            (None, true) => Some(KUBERNETES_TEST_CONFIG),
            (None, false) => None,
        };
        if let Some(yaml) = config {
            let path = self.dir().join("gateway.yaml");
            fs::write(&path, yaml).expect("write the gateway config");
            args.extend(["--config".into(), path.display().to_string()]);
        }
        if self.mode.is_kubernetes() {
            if self.authority.is_none() {
                self.start_authority(None);
            }
            for arg in ["--authority", "kubernetes", "--kubeconfig"] {
                args.push(arg.into());
            }
            args.push(self.kubeconfig().display().to_string());
            if self.mode == AuthorityMode::KubernetesSelf {
                args.extend(["--review".into(), "self".into()]);
            }
        }
        args.extend(self.serve_args.iter().cloned());
        self.regate = Some(Regate::start(self.dir(), &args));
    }

    /// The authority mode of this Env.
    pub fn mode(&self) -> AuthorityMode {
        self.mode
    }

    /// The kubeconfig `regate authority serve` writes for the gateway.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("kubeconfig")
    }

    /// Start `regate authority serve` on this Env's state, on `addr` (to restart it where the
    /// gateway's kubeconfig points) or a free port.
    pub fn start_authority(&mut self, addr: Option<SocketAddr>) {
        let listen = addr.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
        let mut args: Vec<String> = vec![
            "authority".into(),
            "serve".into(),
            "--listen".into(),
            listen,
            "--state".into(),
            self.state.display().to_string(),
            "--kubeconfig".into(),
            self.kubeconfig().display().to_string(),
        ];
        args.extend(self.authority_args.iter().cloned());
        self.authority = Some(Regate::start(self.dir(), &args));
    }

    /// Kill `regate authority serve`; returns where it listened.
    pub fn stop_authority(&mut self) -> SocketAddr {
        let mut authority = self
            .authority
            .take()
            .expect("this Env runs no authority serve");
        kill(&mut authority.child);
        authority.addr
    }

    /// `http://ADDR` of `regate authority serve`.
    pub fn authority_url(&self) -> String {
        let authority = self
            .authority
            .as_ref()
            .expect("this Env runs no authority serve");
        format!("http://{}", authority.addr)
    }

    /// Reviews `regate authority serve` answered so far, by kind (`tokenreviews`,
    /// `subjectaccessreviews`, `selfsubjectreviews`, `selfsubjectaccessreviews`).
    pub fn reviews(&self) -> serde_json::Value {
        let url = format!("{}/debug/reviews", self.authority_url());
        reqwest::blocking::get(&url)
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// The log of the process that owns the policy: `regate authority serve` in kubernetes
    /// modes, else `regate serve`.
    pub fn policy_log(&self) -> String {
        match &self.authority {
            Some(a) => read_lossy(&a.stderr),
            None => self.regate_log(),
        }
    }

    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(REGATE);
        cmd.args(args)
            .arg("--state")
            .arg(&self.state)
            .env("REGATE_STATE", &self.state)
            .stdin(Stdio::null());
        cmd
    }

    /// Run the regate CLI against this Env's state with `input` on stdin (a password, say).
    pub fn regate_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cli(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn regate");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("regate output")
    }

    /// Run the regate CLI against this Env's state (`--state` is appended).
    pub fn regate(&self, args: &[&str]) -> Output {
        run_bounded(self.cli(args), Duration::from_secs(60))
    }

    /// Run the regate CLI and panic unless it exits with `code`.
    pub fn regate_exit(&self, args: &[&str], code: i32) -> Output {
        let out = self.regate(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "`regate {}`: {}",
            args.join(" "),
            show_output(&out)
        );
        out
    }

    /// Run the regate CLI, panic unless it succeeds, and return its stdout, trimmed.
    pub fn regate_ok(&self, args: &[&str]) -> String {
        let out = self.regate(args);
        assert!(
            out.status.success(),
            "`regate {}` failed: {}\nregate serve stderr tail:\n{}",
            args.join(" "),
            show_output(&out),
            self.regate_log_tail(30)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run a CLI command that changes policy, then wait until it must be in force.
    pub fn change(&self, args: &[&str]) {
        self.regate_ok(args);
        thread::sleep(POLICY_DELAY);
    }

    /// `regate policy VERB ROLE SUBJECT -n NS`, then wait until it must be in force.
    pub fn policy(&self, verb: &str, role: &str, subject: &str, ns: &str) {
        self.change(&["policy", verb, role, subject, "-n", ns]);
    }

    /// `regate policy add-role-to-user system:image-puller SUBJECT -n NS`, in force on return.
    pub fn grant_pull(&self, subject: &str, ns: &str) {
        self.policy("add-role-to-user", "system:image-puller", subject, ns);
    }

    /// An API token of service account `sa` in `ns`.
    pub fn token(&self, sa: &str, ns: &str) -> String {
        let t = self.regate_ok(&["create", "token", sa, "-n", ns]);
        assert!(
            !t.is_empty() && !t.contains(char::is_whitespace),
            "`regate create token {sa} -n {ns}` must print only the token, printed {t:?}"
        );
        t
    }

    /// An API token of user `name`.
    pub fn user_token(&self, name: &str) -> String {
        let t = self.regate_ok(&["create", "token", "--user", name]);
        assert!(
            !t.is_empty() && !t.contains(char::is_whitespace),
            "`regate create token --user {name}` must print only the token, printed {t:?}"
        );
        t
    }

    /// A blocking HTTP client that follows no redirect.
    pub fn client(&self) -> reqwest::blocking::Client {
        client()
    }

    /// A request to regate at `path` (which starts with `/`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        auth: Auth,
    ) -> reqwest::blocking::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        auth.apply(client().request(method, format!("{}{}", self.url(), path)))
    }

    /// Send a request to regate and collect the whole reply.
    pub fn send(&self, method: &str, path: &str, auth: Auth) -> Reply {
        Reply::from_request(self.request(method, path, auth))
    }

    /// `GET /v2/REPO/manifests/REFERENCE` through regate, accepting OCI manifests.
    pub fn get_manifest(&self, repo: &str, reference: &str, auth: Auth) -> Reply {
        Reply::from_request(
            self.request("GET", &format!("/v2/{repo}/manifests/{reference}"), auth)
                .header("Accept", OCI_MANIFEST),
        )
    }

    /// `POST /openshift/token` with the OAuth2 form `pairs` (containerd's way to a token).
    pub fn post_token_form(&self, pairs: &[(&str, &str)]) -> Reply {
        let body = pairs
            .iter()
            .map(|(k, v)| {
                let v =
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join("&");
        Reply::from_request(
            self.request("POST", "/openshift/token", Auth::None)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body),
        )
    }

    /// `POST /v2/REPO/blobs/uploads/` through regate: an upload start.
    pub fn start_upload(&self, repo: &str, auth: Auth) -> Reply {
        self.send("POST", &format!("/v2/{repo}/blobs/uploads/"), auth)
    }

    /// Send bytes to regate exactly as given (see [`raw_http`]).
    pub fn raw(&self, request: &[u8]) -> io::Result<Reply> {
        raw_http(self.addr(), request)
    }

    /// A raw request with `Host` and `Connection: close` added; panics if regate closes the
    /// connection without answering.
    pub fn raw_request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        let req = build_raw(method, target, &self.host(), headers, b"");
        self.raw(&req).unwrap_or_else(|e| {
            panic!(
                "{method} {target}: no reply from regate: {e}\n{}",
                self.regate_log_tail(30)
            )
        })
    }

    /// Panic with the reply and regate's log unless the status is `status`.
    pub fn expect_status(&self, reply: &Reply, status: u16, what: &str) {
        if reply.status != status {
            panic!(
                "{what}: expected {status}, got {reply}\nregate stderr tail:\n{}",
                self.regate_log_tail(30)
            );
        }
    }

    /// Panic unless the reply is an OCI error of regate's own: this status, this code, the
    /// `Docker-Distribution-API-Version` header and a `{"errors":[{code,message,detail}]}` body.
    /// Returns the first error object.
    pub fn expect_error(
        &self,
        reply: &Reply,
        status: u16,
        code: &str,
        what: &str,
    ) -> serde_json::Value {
        self.expect_status(reply, status, what);
        match reply.oci_error_problem(code) {
            None => reply.json()["errors"][0].clone(),
            Some(problem) => panic!(
                "{what}: {problem}\nreply: {reply}\nregate stderr tail:\n{}",
                self.regate_log_tail(30)
            ),
        }
    }

    /// Like [`Env::expect_error`] for a reply whose status may be any of `statuses` and whose
    /// code is not fixed by the spec.
    pub fn expect_error_status(
        &self,
        reply: &Reply,
        statuses: &[u16],
        what: &str,
    ) -> serde_json::Value {
        if !statuses.contains(&reply.status) {
            panic!(
                "{what}: expected one of {statuses:?}, got {reply}\nregate stderr tail:\n{}",
                self.regate_log_tail(30)
            );
        }
        let code = reply.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match reply.oci_error_problem(&code) {
            None => reply.json()["errors"][0].clone(),
            Some(problem) => panic!(
                "{what}: {problem}\nreply: {reply}\nregate stderr tail:\n{}",
                self.regate_log_tail(30)
            ),
        }
    }

    /// [`Env::expect_error`] 401 UNAUTHORIZED, and the challenge says `error="invalid_token"`.
    pub fn expect_invalid_token(&self, reply: &Reply, what: &str) {
        self.expect_error(reply, 401, "UNAUTHORIZED", what);
        let challenge = reply.header("WWW-Authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: challenge says invalid_token: {reply}"
        );
    }

    /// Panic unless the reply is a 202 upload start with a `Location`; returns the `Location`.
    pub fn expect_upload_started(&self, reply: &Reply, what: &str) -> String {
        self.expect_status(reply, 202, what);
        reply
            .header("Location")
            .unwrap_or_else(|| panic!("{what}: no Location of the upload: {reply}"))
            .to_string()
    }

    /// Panic with the command's output and regate's log unless a client command succeeded.
    pub fn expect_success(&self, out: &Output, what: &str) {
        assert!(
            out.status.success(),
            "{what}: {}\nregate stderr tail:\n{}",
            show_output(out),
            self.regate_log_tail(30)
        );
    }

    /// The request targets (`METHOD URI`) of the registry's access log, in order.
    pub fn registry_requests(&self) -> Vec<String> {
        access_log_requests(&self.registry_log())
    }

    /// Panic with `what`, the matching requests and the whole access log if any request the
    /// registry received matches `hit`.
    pub fn assert_registry_never_saw(&self, what: &str, hit: impl Fn(&str) -> bool) {
        let requests = self.registry_requests();
        let seen: Vec<&String> = requests.iter().filter(|r| hit(r)).collect();
        assert!(
            seen.is_empty(),
            "{what}: {seen:?}\nevery registry request: {requests:?}"
        );
    }

    /// `HEAD PATH` on the registry itself (no regate), accepting OCI manifests.
    pub fn registry_head(&self, path: &str) -> Reply {
        Reply::from_request(
            client()
                .head(format!("{}{path}", self.registry_url()))
                .header("Accept", OCI_MANIFEST),
        )
    }

    /// `oci:DIR:latest` of an OCI layout under this Env's dir.
    pub fn oci_ref(&self, name: &str) -> String {
        format!("oci:{}:latest", self.dir().join(name).display())
    }

    /// `docker://` reference of `repo:tag` through regate.
    pub fn docker_ref(&self, repo_tag: &str) -> String {
        format!("docker://{}/{}", self.host(), repo_tag)
    }

    /// `docker://` reference of `repo:tag` on the registry itself.
    pub fn registry_ref(&self, repo_tag: &str) -> String {
        format!("docker://{}/{}", self.registry_addr(), repo_tag)
    }

    /// This Env's (initially empty) registry credentials file for skopeo.
    pub fn authfile(&self) -> PathBuf {
        self.dir().join("auth.json")
    }

    /// `skopeo copy SRC DST` with this Env's own authfile and caches; `token` is given as
    /// `anything:TOKEN` to whichever side is `docker://`. Digests are preserved (no
    /// recompression), so what arrives can be compared with what was sent.
    pub fn skopeo_copy(&self, src: &str, dst: &str, token: Option<&str>) -> Output {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--insecure-policy")
            .arg("--tmpdir")
            .arg(self.dir())
            .args([
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg("--authfile")
            .arg(self.authfile());
        if let Some(token) = token {
            let creds = format!("anything:{token}");
            if src.starts_with("docker://") {
                cmd.arg("--src-creds").arg(&creds);
            }
            if dst.starts_with("docker://") {
                cmd.arg("--dest-creds").arg(&creds);
            }
        }
        cmd.arg(src).arg(dst);
        self.client_env(&mut cmd);
        run_bounded(cmd, Duration::from_secs(600))
    }

    /// Point a client's HOME, credentials and caches into this Env's dir.
    fn client_env(&self, cmd: &mut Command) {
        let home = self.dir().join("home");
        cmd.env("HOME", &home)
            .env("REGISTRY_AUTH_FILE", self.authfile())
            .env("XDG_RUNTIME_DIR", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("TMPDIR", self.dir())
            .stdin(Stdio::null());
    }

    /// A Docker CLI with its own `DOCKER_CONFIG` in this Env's dir.
    pub fn docker(&self) -> Docker {
        Docker::new(self.dir())
    }

    /// Push a one-layer image over HTTP to regate as `repo:tag`.
    pub fn push(&self, auth: Auth, repo: &str, tag: &str, image: &Image) -> Result<(), Reply> {
        push_image(&self.url(), auth, repo, tag, image)
    }

    /// Push a one-layer image straight to the registry (no regate), panicking on failure.
    pub fn seed(&self, repo: &str, tag: &str, image: &Image) {
        if let Err(reply) = push_image(&self.registry_url(), Auth::None, repo, tag, image) {
            panic!("seeding {repo}:{tag} on the registry failed: {reply}");
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        if let Some(mut a) = self.authority.take() {
            kill(&mut a.child);
            if panicking {
                eprintln!(
                    "---- regate authority serve stderr (tail) ----\n{}",
                    tail(&read_lossy(&a.stderr), 25)
                );
            }
        }
        if let Some(mut r) = self.regate.take() {
            kill(&mut r.child);
            if panicking {
                eprintln!(
                    "---- regate serve stderr (tail) ----\n{}\n---- regate serve stdout (tail) ----\n{}",
                    tail(&read_lossy(&r.stderr), 40),
                    tail(&read_lossy(&r.stdout), 10)
                );
            }
        }
        for (what, reg) in [
            ("registry", self.registry.take()),
            ("token registry", self.token_registry.take()),
        ] {
            let Some(mut reg) = reg else { continue };
            kill(&mut reg.child);
            if panicking {
                eprintln!(
                    "---- {what} log (tail) ----\n{}",
                    tail(&read_lossy(&reg.log), 25)
                );
            }
        }
    }
}

struct Registry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Registry {
    /// Start `docker-registry` on a free loopback port (picked by binding port 0 and letting
    /// go; retried if another process takes it first) and wait until `GET /v2/` answers (200,
    /// or 401 when `extra` configures auth). Its files are named after `name`.
    fn start(dir: &Path, name: &str, extra: &str) -> Registry {
        let root = dir.join(format!("{name}-data"));
        fs::create_dir_all(&root).expect("create registry root");
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let config = dir.join(format!("{name}.yml"));
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: {addr}\n  secret: regate-test-secret\n{extra}",
                    root.display()
                ),
            )
            .expect("write registry config");
            let log = dir.join(format!("{name}-{attempt}.log"));
            let out = File::create(&log).expect("create registry log");
            let err = out.try_clone().expect("clone registry log");
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            die_with_parent(&mut cmd);
            let mut child = cmd
                .spawn()
                .expect("spawn docker-registry (is Debian's docker-registry installed? .ci/run installs it)");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let probe = build_raw("GET", "/v2/", &addr.to_string(), &[], b"");
                if raw_http(addr, &probe).is_ok_and(|reply| matches!(reply.status, 200 | 401)) {
                    return Registry { child, addr, log };
                }
                if Instant::now() > deadline {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            kill(&mut child);
            last_log = read_lossy(&log);
        }
        panic!(
            "docker-registry did not come up after 5 attempts; last log:\n{}",
            tail(&last_log, 30)
        );
    }
}

struct Regate {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Regate {
    /// Spawn `regate ARGS` and wait (bounded) for its `listening on http://ADDR` line.
    fn start(dir: &Path, args: &[String]) -> Regate {
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr = dir.join(format!("regate-{n}.stderr"));
        let stdout = dir.join(format!("regate-{n}.stdout"));
        let mut cmd = Command::new(REGATE);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("create regate stderr file"));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn regate serve");
        let pipe = child.stdout.take().expect("regate stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let copy = stdout.clone();
        thread::spawn(move || {
            let mut file = File::create(copy).ok();
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(rest) = line.trim().strip_prefix("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let got = rx.recv_timeout(STARTUP);
        let addr = match got.as_deref().map(str::parse::<SocketAddr>) {
            Ok(Ok(addr)) => addr,
            other => {
                kill(&mut child);
                let why = match other {
                    Ok(Err(e)) => format!("its listening line has no address: {e}"),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        format!("no `listening on http://ADDR` line on stdout within {STARTUP:?}")
                    }
                    _ => "it exited before printing `listening on http://ADDR`".to_string(),
                };
                panic!(
                    "regate {} failed to start: {why}\nstdout:\n{}\nstderr tail:\n{}",
                    args.join(" "),
                    tail(&read_lossy(&stdout), 10),
                    tail(&read_lossy(&stderr), 40)
                );
            }
        };
        Regate {
            child,
            addr,
            stderr,
            stdout,
        }
    }
}

static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Ask the kernel to SIGKILL the child if the thread that spawned it (the test) dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes a `.dockerconfigjson` to `path`: for each (key, password), Basic `user:password`; and
/// an empty `credHelpers`, a top-level key edits must keep.
pub fn write_docker_config(path: &Path, user: &str, entries: &[(&str, &str)]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, password)| {
            let auth = b64.encode(format!("{user}:{password}"));
            (key.to_string(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let json = serde_json::json!({ "auths": auths, "credHelpers": {} });
    fs::write(path, serde_json::to_vec_pretty(&json).expect("json")).expect("write docker config");
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Run a command with stdin closed, killing it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Panic with the command's output unless it failed.
pub fn expect_failure(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} must fail: {}",
        show_output(out)
    );
}

/// A command's exit status, stdout and stderr, for assertion messages.
pub fn show_output(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Credentials a request carries.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    None,
    /// `Basic base64(anything:TOKEN)`.
    Basic(&'a str),
    /// `Bearer TOKEN`.
    Bearer(&'a str),
    /// This `Authorization` value, verbatim.
    Header(&'a str),
}

impl Auth<'_> {
    /// The `Authorization` header value, if any.
    pub fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Auth::None => None,
            Auth::Basic(t) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("anything:{t}"))
            )),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::Header(h) => Some(h.to_string()),
        }
    }

    pub fn apply(
        &self,
        rb: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match self.header() {
            Some(h) => rb.header("Authorization", h),
            None => rb,
        }
    }
}

/// A blocking HTTP client that follows no redirect and gives up after [`HTTP_TIMEOUT`].
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("build HTTP client")
}

/// A whole HTTP response: status, headers in order, body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Send a reqwest request and collect the reply; panics on a transport error.
    pub fn from_request(rb: reqwest::blocking::RequestBuilder) -> Reply {
        let desc = format!("{rb:?}");
        match rb.send() {
            Ok(resp) => Reply::from_response(resp),
            Err(e) => panic!("request {desc} failed: {e:#}"),
        }
    }

    pub fn from_response(resp: reqwest::blocking::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of this name.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or `Null` if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// What is wrong with this reply as regate's OCI error of `code`, or `None`.
    pub fn oci_error_problem(&self, code: &str) -> Option<String> {
        match self.header("Docker-Distribution-API-Version") {
            Some(v) if v.trim() == "registry/2.0" => {}
            other => {
                return Some(format!(
                    "header Docker-Distribution-API-Version is {other:?}, not registry/2.0"
                ));
            }
        }
        let json: serde_json::Value = match serde_json::from_slice(&self.body) {
            Ok(j) => j,
            Err(e) => return Some(format!("body is not JSON: {e}")),
        };
        let Some(errors) = json.get("errors").and_then(|e| e.as_array()) else {
            return Some("body has no `errors` array".into());
        };
        let Some(first) = errors.first() else {
            return Some("`errors` is empty".into());
        };
        for key in ["code", "message", "detail"] {
            if first.get(key).is_none() {
                return Some(format!("error object has no `{key}`"));
            }
        }
        if first["code"] != code {
            return Some(format!("error code is {}, expected {code}", first["code"]));
        }
        if first["message"].as_str().is_none_or(str::is_empty) {
            return Some("error message is not a non-empty string".into());
        }
        None
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status {}", self.status)?;
        for (k, v) in &self.headers {
            let v: String = v.chars().take(300).collect();
            writeln!(f, "  {k}: {v}")?;
        }
        let body = self.text();
        let shown: String = body.chars().take(2000).collect();
        write!(f, "  body ({} bytes): {shown}", self.body.len())
    }
}

/// A raw HTTP/1.1 request: `METHOD TARGET`, `Host`, `Connection: close`, the given headers
/// and, for a non-empty body, `Content-Length`.
pub fn build_raw(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Send `request` to `addr` byte for byte (nothing normalises `..`, `/./` or `%2F`), read
/// until the server closes, and parse the reply (a chunked body is decoded; a HEAD reply has
/// none). A write error is ignored if a reply can still be read.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let write_err = stream.write_all(request).and_then(|_| stream.flush()).err();
    let mut buf = Vec::new();
    let read_err = read_until_close(&mut stream, &mut buf).err();
    if buf.is_empty() {
        return Err(read_err.or(write_err).unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed with no reply",
            )
        }));
    }
    let is_head = request.starts_with(b"HEAD ");
    parse_reply(&buf, is_head)
}

fn read_until_close(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn parse_reply(buf: &[u8], is_head: bool) -> io::Result<Reply> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("reply has no end of headers"))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if is_head || status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The path and query of an upload `Location` (absolute or relative), to send a next request.
pub fn location_target(location: &str) -> String {
    match location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        Some(rest) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into()),
        None => location.to_string(),
    }
}

/// `url` with `key=value` appended to its query.
pub fn add_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let value = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC);
    format!("{url}{sep}{key}={value}")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256:HEX` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// `sha256:HEX` of a file, read in streaming fashion.
pub fn digest_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read file to hash");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Bytes that differ from one call to the next (so images of different tests never share a
/// layer).
pub fn unique_bytes(len: usize) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0) as u64;
    let mut seed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed = xorshift(seed);
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn xorshift(mut x: u64) -> u64 {
    if x == 0 {
        x = 0x9E37_79B9_7F4A_7C15;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A one-layer OCI image held in memory (the layer is any bytes, labelled tar+gzip).
#[derive(Clone, Debug)]
pub struct Image {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    pub fn new(layer: &[u8]) -> Image {
        Self::describe(layer.to_vec(), digest(layer), layer.len() as u64, None)
    }

    /// An image the Docker engine can unpack: one gzip'd tar holding one unique file, and a
    /// config whose `diff_ids` is the tar's digest.
    pub fn runnable() -> Image {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("hello.txt"), hex::encode(unique_bytes(32))).expect("write file");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .args(["-cf", "-", "hello.txt"])
            .output()
            .expect("run tar");
        assert!(tar.status.success(), "tar: {}", show_output(&tar));
        let mut gzip = Command::new("gzip")
            .args(["-n", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run gzip");
        let mut stdin = gzip.stdin.take().expect("gzip stdin");
        let data = tar.stdout.clone();
        let writer = thread::spawn(move || stdin.write_all(&data));
        let gz = gzip.wait_with_output().expect("gzip output");
        writer.join().expect("gzip writer").expect("write to gzip");
        assert!(gz.status.success(), "gzip failed");
        let layer_digest = digest(&gz.stdout);
        let size = gz.stdout.len() as u64;
        Self::describe(gz.stdout, layer_digest, size, Some(digest(&tar.stdout)))
    }

    /// An image of `len` bytes of layer unique to this call.
    pub fn unique(len: usize) -> Image {
        Image::new(&unique_bytes(len))
    }

    fn describe(
        layer: Vec<u8>,
        layer_digest: String,
        layer_size: u64,
        diff_id: Option<String>,
    ) -> Image {
        let diff_id = diff_id.unwrap_or_else(|| layer_digest.clone());
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("config JSON");
        let config_digest = digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
        }))
        .expect("manifest JSON");
        let manifest_digest = digest(&manifest);
        Image {
            layer,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn write_layout_metadata(dir: &Path, image: &Image) {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("create OCI layout");
    fs::write(
        dir.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .expect("write oci-layout");
    fs::write(blob_path(dir, &image.config_digest), &image.config).expect("write config blob");
    fs::write(blob_path(dir, &image.manifest_digest), &image.manifest)
        .expect("write manifest blob");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("write index.json");
}

/// Write an OCI image layout at `dir` (tag `latest`) whose one layer is `layer`; skopeo reads
/// it as `oci:DIR:latest`.
pub fn oci_layout(dir: &Path, layer: &[u8]) -> Image {
    let image = Image::new(layer);
    write_layout_metadata(dir, &image);
    fs::write(blob_path(dir, &image.layer_digest), layer).expect("write layer blob");
    image
}

/// Write an OCI image layout at `dir` whose one layer is `size` pseudo-random bytes, generated
/// and hashed in 1 MiB pieces, never held in memory. The returned image's `layer` is empty.
pub fn oci_layout_big(dir: &Path, size: u64) -> Image {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("create OCI layout");
    let tmp = dir.join("blobs/sha256/layer.partial");
    let mut file = io::BufWriter::new(File::create(&tmp).expect("create layer file"));
    let mut hasher = Sha256::new();
    let mut seed = u64::from_le_bytes(unique_bytes(8).try_into().expect("8 bytes"));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            seed = xorshift(seed);
            word.copy_from_slice(&seed.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).expect("write layer file");
        left -= n as u64;
    }
    file.flush().expect("flush layer file");
    drop(file);
    let layer_digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let image = Image::describe(Vec::new(), layer_digest, size, None);
    fs::rename(&tmp, blob_path(dir, &image.layer_digest)).expect("name layer blob by digest");
    write_layout_metadata(dir, &image);
    image
}

/// The path of a blob inside an OCI layout.
pub fn oci_blob(dir: &Path, digest: &str) -> PathBuf {
    blob_path(dir, digest)
}

/// The manifest digest an OCI layout's `index.json` names first.
pub fn oci_manifest_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("read index.json"))
            .expect("index.json is JSON");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json names a manifest")
        .to_string()
}

/// Upload one blob monolithically: `POST /v2/REPO/blobs/uploads/`, then `PUT LOCATION&digest=`.
pub fn push_blob(base: &str, auth: Auth, repo: &str, data: &[u8]) -> Result<(), Reply> {
    let c = client();
    let start = Reply::from_request(auth.apply(c.post(format!("{base}/v2/{repo}/blobs/uploads/"))));
    if start.status != 202 {
        return Err(start);
    }
    let location = start.header("Location").ok_or_else(|| start.clone())?;
    let url = add_query(&absolute(base, location), "digest", &digest(data));
    let put = Reply::from_request(
        auth.apply(c.put(url))
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec()),
    );
    if put.status != 201 {
        return Err(put);
    }
    Ok(())
}

/// Resolve a `Location` against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// Push `image` as `repo:tag` over HTTP (layer, config, manifest).
pub fn push_image(
    base: &str,
    auth: Auth,
    repo: &str,
    tag: &str,
    image: &Image,
) -> Result<(), Reply> {
    push_blob(base, auth, repo, &image.layer)?;
    push_blob(base, auth, repo, &image.config)?;
    let put = Reply::from_request(
        auth.apply(client().put(format!("{base}/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(image.manifest.clone()),
    );
    if put.status != 201 {
        return Err(put);
    }
    Ok(())
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The Docker CLI with a `DOCKER_CONFIG` of its own, so logins of different tests never mix.
/// The engine is shared, so every image this helper makes or pulls is removed on drop.
pub struct Docker {
    config: PathBuf,
    work: PathBuf,
    refs: Mutex<Vec<String>>,
}

impl Docker {
    pub fn new(dir: &Path) -> Docker {
        let config = dir.join("docker-config");
        let work = dir.join("docker-work");
        fs::create_dir_all(&config).expect("create DOCKER_CONFIG");
        fs::create_dir_all(&work).expect("create docker work dir");
        fs::write(config.join("config.json"), "{\"auths\":{}}\n").expect("write docker config");
        Docker {
            config,
            work,
            refs: Mutex::new(Vec::new()),
        }
    }

    /// `docker ARGS` with this helper's config, bounded to 5 minutes.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(args).env("DOCKER_CONFIG", &self.config);
        run_bounded(cmd, Duration::from_secs(300))
    }

    /// `docker ARGS`, panicking unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            show_output(&out)
        );
        out
    }

    /// `docker login HOST -u USER --password-stdin` with `password` on stdin.
    pub fn login(&self, host: &str, user: &str, password: &str) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["login", host, "-u", user, "--password-stdin"])
            .env("DOCKER_CONFIG", &self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn docker login");
        let mut stdin = child.stdin.take().expect("docker login stdin");
        stdin
            .write_all(password.as_bytes())
            .expect("write password");
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().expect("wait docker login").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("docker login {host} did not finish in 120 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("docker login output")
    }

    /// Make an image tagged `tag` offline: a tarball of one unique file, `docker import`ed.
    pub fn image(&self, tag: &str) {
        let root = self.work.join(format!(
            "root-{}",
            SERIAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        fs::create_dir_all(&root).expect("create image root");
        fs::write(root.join("hello.txt"), hex::encode(unique_bytes(32))).expect("write image file");
        let tarball = root.with_extension("tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .output()
            .expect("run tar");
        assert!(tar.status.success(), "tar failed: {}", show_output(&tar));
        self.track(tag);
        self.ok(&["import", tarball.to_str().expect("utf-8 path"), tag]);
    }

    /// Remember `reference` to remove it from the engine on drop.
    pub fn track(&self, reference: &str) {
        self.refs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reference.to_string());
    }

    /// `docker pull REF` (the image is removed again on drop).
    pub fn pull(&self, reference: &str) -> Output {
        self.track(reference);
        self.run(&["pull", reference])
    }

    /// Whether the engine has an image of this reference.
    pub fn has_image(&self, reference: &str) -> bool {
        self.run(&["image", "inspect", reference]).status.success()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let refs = std::mem::take(&mut *self.refs.lock().unwrap_or_else(|e| e.into_inner()));
        for r in refs {
            let mut cmd = Command::new("docker");
            cmd.args(["rmi", "-f", &r])
                .env("DOCKER_CONFIG", &self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}

/// The `METHOD URI` of each line of a Combined Log Format access log.
pub fn access_log_requests(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.starts_with("time="))
        .filter_map(|l| {
            let start = l.find("] \"")? + 3;
            let rest = &l[start..];
            let end = rest.find(" HTTP/")?;
            Some(rest[..end].to_string())
        })
        .collect()
}

/// A parsed `WWW-Authenticate` challenge: the scheme and its parameters in order. `None` if
/// a parameter value is not double-quoted (regate must quote every value).
pub fn parse_challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ')?;
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Some((scheme.to_string(), params));
        }
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        params.push((key.trim().to_string(), value));
        rest = &after[end + 1..];
    }
}

/// The value of parameter `key` of a parsed challenge.
pub fn challenge_param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// One request as a [`Recorder`] received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Recorded, SocketAddr) -> Vec<u8> + Send + Sync;

/// A fake upstream on a loopback port: records every request (head and body) and answers
/// each with what `handler` returns (raw response bytes; see [`http_response`]), one request
/// per connection. Stops on drop.
pub struct Recorder {
    addr: SocketAddr,
    requests: std::sync::Arc<Mutex<Vec<Recorded>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    pub fn start(
        handler: impl Fn(&Recorded, SocketAddr) -> Vec<u8> + Send + Sync + 'static,
    ) -> Recorder {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let requests = std::sync::Arc::new(Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler: std::sync::Arc<Handler> = std::sync::Arc::new(handler);
        let (reqs, stopping) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let (reqs, handler) = (reqs.clone(), handler.clone());
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let Some(req) = read_request(&mut conn) else {
                        return;
                    };
                    reqs.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(req.clone());
                    let _ = conn.write_all(&handler(&req, addr));
                    let _ = conn.flush();
                });
            }
        });
        Recorder {
            addr,
            requests,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Recorded {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).ok()?;
        req.body = body;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut reader = BufReader::new(conn);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                let mut end = String::new();
                reader.read_line(&mut end).ok()?;
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            req.body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(req)
}

/// Raw response bytes: status line, the given headers, `Content-Length` of `body` (unless
/// given), `Connection: close`, and the body.
pub fn http_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
