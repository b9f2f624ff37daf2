//! The test environment: a registry, regate (and its authority in kubernetes modes) on ephemeral
//! ports, and the CLI run against the same state.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use super::*;

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
    listen: String,
    regate_env: Vec<(String, String)>,
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
            listen: "127.0.0.1:0".to_string(),
            regate_env: Vec::new(),
        }
    }
}

impl EnvBuilder {
    /// Where `regate serve` listens (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// An environment variable of `regate serve` (e.g. `SSL_CERT_FILE`).
    pub fn regate_env(mut self, name: &str, value: &str) -> Self {
        self.regate_env.push((name.to_string(), value.to_string()));
        self
    }

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

    /// The CLI alone: no registry and no regate, an upstream nothing listens on.
    pub fn cli_only(self) -> Self {
        self.without_regate().upstream("http://127.0.0.1:9")
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
            replicas: Vec::new(),
            upstream: String::new(),
            public_url: self.public_url.clone(),
            serve_args: self.serve_args.clone(),
            listen: self.listen.clone(),
            regate_env: self.regate_env.clone(),
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
    /// More `regate serve` processes on the same state (`start_replicas`).
    replicas: Vec<Regate>,
    state: PathBuf,
    upstream: String,
    public_url: Option<String>,
    serve_args: Vec<String>,
    listen: String,
    regate_env: Vec<(String, String)>,
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
    /// The CLI against a fresh state directory, with no server (see [`EnvBuilder::cli_only`]).
    pub fn cli_only() -> Env {
        EnvBuilder::default().cli_only().run()
    }

    pub fn with_projects() -> Env {
        EnvBuilder::default().namespaces(PROJECTS).run()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub(crate) fn regate_proc(&self) -> &Regate {
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

    /// `http://127.0.0.1:PORT` of regate (`https://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.regate_proc().https {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr())
    }

    pub fn regate_pid(&self) -> u32 {
        self.regate_proc().child.id()
    }

    pub(crate) fn registry_proc(&self) -> &Registry {
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

    /// Everything regate printed on stdout (its `listening on` line, and audit lines when
    /// `audit.path` is `-`).
    pub fn regate_stdout(&self) -> String {
        self.regate
            .as_ref()
            .map(|r| read_lossy(&r.stdout))
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

    /// The upstream `start_regate` passes from now on.
    pub fn set_upstream(&mut self, url: &str) {
        self.upstream = url.to_string();
    }

    /// The config file `start_regate` passes from now on.
    pub fn set_gateway_config(&mut self, yaml: &str) {
        self.gateway_config = Some(yaml.to_string());
    }

    /// Send `signal` (e.g. `libc::SIGTERM`) to regate.
    pub fn signal_regate(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own child; no memory is touched.
        let sent = unsafe { libc::kill(self.regate_pid() as i32, signal) };
        assert_eq!(sent, 0, "signal {signal} to regate");
    }

    /// Wait (bounded) for regate to exit; its exit status.
    pub fn wait_regate(&mut self, within: Duration) -> std::process::ExitStatus {
        let regate = self.regate.as_mut().expect("this Env runs no regate");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = regate.child.try_wait().expect("wait for regate") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "regate did not exit within {within:?}"
            );
            thread::sleep(Duration::from_millis(50));
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
        let args = self.serve_command(&self.listen.clone());
        self.regate = Some(Regate::start_with(self.dir(), &args, &self.regate_env));
    }

    /// `n` more `regate serve` processes like this Env's, each on a port of its own: replicas
    /// sharing its state, config (so `token.key_file`), upstream and authority, as replicas
    /// behind a load balancer do. Their addresses.
    pub fn start_replicas(&mut self, n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|_| {
                let args = self.serve_command("127.0.0.1:0");
                let replica = Regate::start_with(self.dir(), &args, &self.regate_env);
                let addr = replica.addr;
                self.replicas.push(replica);
                addr
            })
            .collect()
    }

    /// SIGKILL replica `i` (of [`Env::start_replicas`]), as a node failure would.
    pub fn kill_replica(&mut self, i: usize) {
        kill(&mut self.replicas[i].child);
    }

    /// The stderr (log) of replica `i`.
    pub fn replica_log(&self, i: usize) -> String {
        read_lossy(&self.replicas[i].stderr)
    }

    /// The arguments of `regate serve` on `listen`, its config file written; the authority is
    /// started first if this Env has one and it is not running.
    fn serve_command(&mut self, listen: &str) -> Vec<String> {
        if self.mode.is_kubernetes() && self.authority.is_none() {
            self.start_authority(None);
        }
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            listen.to_string(),
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
            for arg in ["--authority", "kubernetes", "--kubeconfig"] {
                args.push(arg.into());
            }
            args.push(self.kubeconfig().display().to_string());
            if self.mode == AuthorityMode::KubernetesSelf {
                args.extend(["--review".into(), "self".into()]);
            }
        }
        args.extend(self.serve_args.iter().cloned());
        args
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
        // The gateway's OIDC issuers are the authority's too, as a cluster's API server would
        // trust the issuers its gateways do.
        if let Some(yaml) = self
            .gateway_config
            .as_ref()
            .filter(|y| y.contains("identity:"))
        {
            let path = self.dir().join("authority.yaml");
            fs::write(&path, yaml).expect("write the authority's config");
            args.extend(["--config".into(), path.display().to_string()]);
        }
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

    pub(crate) fn cli(&self, args: &[&str]) -> Command {
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
        with_stdin(self.cli(args), input)
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

    /// Runs `line`, a command regate printed for people to paste, with bash in `dir`: `regate`
    /// stands for this Env's CLI (its state through `REGATE_STATE`).
    pub fn paste(&self, line: &str, dir: &Path) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("regate() {{ \"$REGATE_BIN\" \"$@\"; }}; {line}"))
            .env("REGATE_BIN", REGATE)
            .env("REGATE_STATE", &self.state)
            .current_dir(dir)
            .stdin(Stdio::null());
        run_bounded(cmd, Duration::from_secs(60))
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

    /// An API token of service account `sa` in `ns` that expires after `duration` (e.g. `3s`).
    pub fn token_for(&self, sa: &str, ns: &str, duration: &str) -> String {
        self.regate_ok(&["create", "token", sa, "-n", ns, "--duration", duration])
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
    pub(crate) fn client_env(&self, cmd: &mut Command) {
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
        for (i, mut r) in self.replicas.drain(..).enumerate() {
            kill(&mut r.child);
            if panicking {
                eprintln!(
                    "---- replica {i} stderr (tail) ----\n{}",
                    tail(&read_lossy(&r.stderr), 25)
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
