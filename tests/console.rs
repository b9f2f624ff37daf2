//! The web console (docs/console.md), served by a real `regate serve --console` in front of a
//! real registry, driven by headless Chromium through chromedriver:
//! - an admin signs in, sees a pull denied, grants it from the page, and the next pull passes;
//! - a namespace's admin sees their namespace only, and is offered only the roles they hold;
//! - with plain HTTP requests: the cookie's attributes, CSRF and origin checks, refusals that
//!   change nothing, failed sign-ins, sign-out and a revoked token ending the session.
//!
//! Screenshots of the main pages land in `target/console-screenshots/`.
//!
//! Under `REGATE_TEST_AUTHORITY=kubernetes*` the console asks `regate authority serve` as the
//! signed-in viewer; what differs there (what a namespace admin may read) is checked by mode.

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use common::*;

const PULLER: &str = "system:serviceaccount:project-a:default";

/// A gateway serving the console, with project-a and project-b, in every authority mode.
fn console_env() -> Env {
    console_builder().run()
}

/// [`console_env`] serving HTTPS with `cert` (browsers then negotiate h2 by ALPN).
fn console_env_tls(cert: &ServerCert) -> Env {
    console_builder().tls(cert).run()
}

fn console_builder() -> EnvBuilder {
    Env::builder().namespaces(PROJECTS).serve_arg("--console")
}

/// Whether the console asks a Kubernetes API server (`regate authority serve`) as the viewer.
fn on_a_cluster() -> bool {
    AuthorityMode::from_env() != AuthorityMode::Embedded
}

/// Polls `status` until it gives `want`: on a cluster the gateway may keep an earlier
/// decision for its cache's lifetime.
fn eventually(want: u16, what: &str, status: impl Fn() -> u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = status();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {got}, not {want}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// User `name`, bound to `role` in `ns`, and an API token of theirs.
fn admin(env: &Env, name: &str, role: &str, ns: &str) -> String {
    env.regate_ok(&["create", "user", name]);
    env.regate_ok(&["policy", "add-role-to-user", role, name, "-n", ns]);
    env.user_token(name)
}

/// An image pushed straight to the registry as `repo:tag`.
fn pushed(env: &Env, repo: &str, tag: &str) {
    push_image(
        &env.registry_url(),
        Auth::None,
        repo,
        tag,
        &Image::unique(512),
    )
    .unwrap_or_else(|r| panic!("push {repo}:{tag} to the registry: {}", r.status));
}

/// Signs `browser` in with `token`, typed and sent with the Enter key (no mouse).
fn sign_in(browser: &Browser, env: &Env, token: &str) {
    browser.goto(&format!("{}/console/", env.url()));
    assert_eq!(
        browser.path(),
        "/console/login",
        "a visitor is sent to sign in"
    );
    browser.type_into("#token", &format!("{token}\u{E007}"));
    browser.wait_for("#signed-in-as", Duration::from_secs(20));
    assert_eq!(browser.path(), "/console/namespaces");
}

/// The names of form fields on the page that no label describes.
fn unlabelled_fields(browser: &Browser) -> serde_json::Value {
    browser.eval(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
         .filter(e => !e.labels || e.labels.length === 0).map(e => e.name);",
    )
}

/// Polls the text of `css` until it contains `needle`.
fn wait_text(browser: &Browser, css: &str, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = browser.text(css);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {needle:?}; it shows:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Over HTTPS, so Chromium speaks h2 (`:authority`, no `Host`) for every page and form.
#[test]
fn an_admin_sees_a_pull_denied_grants_it_from_the_page_and_the_next_pull_passes() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let cert = ca.local_server("gateway");
    let env = console_env_tls(&cert);
    pushed(&env, "project-b/app", "v1");
    let ops = admin(&env, "ops", "registry-admin", "project-b");
    let puller = env.token("default", "project-a");
    let pull = || env.https_manifest_status(&ca, "project-b/app", "v1", &puller);
    assert_eq!(
        pull(),
        403,
        "project-a's default service account may not pull project-b yet"
    );

    let browser = Browser::trusting(&cert);
    sign_in(&browser, &env, &ops);
    assert_eq!(
        browser.protocol(),
        "h2",
        "the sign-in form was posted over h2"
    );
    let cookies = browser.cookies();
    assert!(
        cookies.contains(&("__Host-regate-console".into(), true, true, "Strict".into())),
        "the session cookie is HttpOnly, Secure and SameSite=Strict: {cookies:?}"
    );
    assert!(browser.text("#namespaces").contains("project-b"));
    browser.screenshot("namespaces");

    // The namespace: its repository and tag from the registry, and who may pull.
    browser.click("a[href='/console/namespaces/project-b']");
    browser.wait_for("#repositories", Duration::from_secs(20));
    let repositories = browser.text("#repositories");
    assert!(
        repositories.contains("project-b/app") && repositories.contains("v1"),
        "{repositories}"
    );
    let pullers = browser.text("#who-can-pull");
    assert!(
        pullers.contains("system:serviceaccounts:project-b"),
        "{pullers}"
    );
    assert!(!pullers.contains(PULLER), "{pullers}");
    let accounts = browser.text("#service-accounts");
    if on_a_cluster() {
        // As the dashboard: only what the viewer may read, and the page says what is missing.
        assert!(
            accounts.contains("Not shown") && accounts.contains("may not list service accounts"),
            "registry-admin may not list service accounts: {accounts}"
        );
        assert!(browser.text("#partial").contains("ClusterRoles"));
        // Read as ops, not as regate (whose service account may list Secrets for pull secrets).
        assert!(
            browser.text("#secrets").contains("not shown"),
            "{}",
            browser.text("#secrets")
        );
    } else {
        assert!(accounts.contains("builder"), "{accounts}");
    }
    assert_eq!(
        unlabelled_fields(&browser),
        serde_json::json!([]),
        "every field has a label"
    );
    browser.screenshot("namespace");

    // The live view shows the denial, filtered to denials.
    browser.goto(&format!("{}/console/decisions?outcome=denied", env.url()));
    let rows = browser.text("#decisions-body");
    assert!(rows.contains(PULLER) && rows.contains("Denied"), "{rows}");
    assert!(!rows.contains("Allowed"), "filtered to denials: {rows}");
    assert_eq!(unlabelled_fields(&browser), serde_json::json!([]));
    browser.screenshot("decisions");

    // Its explanation names the missing grant and the command; the button applies it.
    browser.click("#decisions-body tr.denied a");
    browser.wait_for("#grant-command", Duration::from_secs(20));
    assert!(browser.path().starts_with("/console/decisions/"));
    assert!(
        browser
            .text("#missing")
            .contains("get imagestreams/layers \"app\" in namespace project-b")
    );
    assert_eq!(
        browser.text("#grant-command"),
        format!("regate policy add-role-to-user system:image-puller {PULLER} -n project-b")
    );
    browser.screenshot("denial");
    browser.click("#apply-grant");
    browser.wait_for("#now-allowed", Duration::from_secs(20));
    assert_eq!(browser.protocol(), "h2");
    assert!(
        browser
            .text("#flash")
            .starts_with("Done: regate policy add-role-to-user")
    );
    browser.screenshot("granted");

    // The next pull passes, and the CLI sees the binding the page made.
    if on_a_cluster() {
        eventually(200, "a pull once the grant is in force", pull);
    } else {
        assert_eq!(pull(), 200, "the grant is in force for the next pull");
    }
    let who = env.regate_ok(&[
        "policy",
        "who-can",
        "get",
        "imagestreams/layers",
        "-n",
        "project-b",
    ]);
    assert!(who.contains(PULLER), "{who}");

    // New decisions appear without a reload (the page's script), newest first.
    browser.goto(&format!("{}/console/decisions", env.url()));
    let stranger = env.token("builder", "project-a");
    let refused = env.https_manifest_status(&ca, "project-b/app", "v1", &stranger);
    assert_eq!(refused, 403);
    wait_text(
        &browser,
        "#decisions-body",
        "system:serviceaccount:project-a:builder",
        Duration::from_secs(15),
    );

    // Filtered by identity: only that identity's decisions.
    browser.goto(&format!(
        "{}/console/decisions?identity=project-a%3Abuilder",
        env.url()
    ));
    let rows = browser.text("#decisions-body");
    assert!(
        rows.contains("system:serviceaccount:project-a:builder"),
        "{rows}"
    );
    assert!(!rows.contains(PULLER), "{rows}");

    // Signing out ends the session.
    browser.click("form.signout button");
    browser.wait_for("#token", Duration::from_secs(20));
    browser.goto(&format!("{}/console/namespaces", env.url()));
    assert_eq!(browser.path(), "/console/login");
}

/// Over HTTPS (h2), as the test above.
#[test]
fn a_namespace_admin_sees_only_their_namespace() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let cert = ca.local_server("gateway");
    let env = console_env_tls(&cert);
    pushed(&env, "project-a/tool", "1.0");
    pushed(&env, "project-b/secret-app", "v1");
    let ann = admin(&env, "ann", "registry-admin", "project-a");
    // A denial in each namespace.
    let a_default = env.token("default", "project-a");
    let b_default = env.token("default", "project-b");
    assert_eq!(
        env.https_manifest_status(&ca, "project-b/secret-app", "v1", &a_default),
        403
    );
    assert_eq!(
        env.https_manifest_status(&ca, "project-a/tool", "1.0", &b_default),
        403
    );

    let browser = Browser::trusting(&cert);
    sign_in(&browser, &env, &ann);
    assert_eq!(browser.protocol(), "h2");
    let namespaces = browser.text("#namespaces");
    assert!(namespaces.contains("project-a"), "{namespaces}");
    assert!(!namespaces.contains("project-b"), "{namespaces}");
    assert!(!browser.has(".badge"), "ann does not see every namespace");
    // A namespace opened by name, as someone who may not list namespaces would.
    browser.type_into("#open", "project-a\u{E007}");
    browser.wait_for("#bindings", Duration::from_secs(20));
    assert_eq!(browser.path(), "/console/namespaces/project-a");

    // Another namespace is not found, and nothing of it shows.
    browser.goto(&format!("{}/console/namespaces/project-b", env.url()));
    assert!(browser.text("h1").contains("Not found"));
    assert!(!browser.source().contains("secret-app"));

    // Decisions: project-a's denial, not project-b's.
    browser.goto(&format!("{}/console/decisions", env.url()));
    let rows = browser.text("#decisions-body");
    assert!(rows.contains("/v2/project-a/tool/manifests/1.0"), "{rows}");
    assert!(!rows.contains("secret-app"), "{rows}");
    let options = browser.text("#namespace");
    assert!(!options.contains("project-b"), "{options}");

    // Only roles ann holds are offered: registry-admin cannot hand out admin.
    browser.goto(&format!("{}/console/namespaces/project-a", env.url()));
    let roles = browser.text("#role");
    assert!(roles.contains("system:image-puller"), "{roles}");
    assert!(roles.contains("registry-admin"), "{roles}");
    assert!(!roles.lines().any(|r| r.trim() == "admin"), "{roles}");
    browser.screenshot("namespace-admin");
}

/// A ClusterRole reading everything the console shows and writing RoleBindings whole.
const CONSOLE_ADMIN: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: console-admin
rules:
- apiGroups: [\"\"]
  resources: [namespaces, serviceaccounts, secrets]
  verbs: [get, list]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles, clusterrolebindings, roles, rolebindings]
  verbs: [get, list, create, update, delete]
- apiGroups: [\"\", image.openshift.io]
  resources: [imagestreams/layers]
  verbs: [get, update]
";

/// Someone who may read it all sees every namespace (listed by the authority, not found through
/// the registry), its service accounts, and no note of anything left out; removing one of two
/// subjects of a binding updates it in place. A namespace admin, who may create and delete
/// bindings but not update them, adds a second subject through a binding of its own, and
/// removing one of two subjects leaves the other bound throughout.
#[test]
fn a_cluster_reader_sees_everything_and_bindings_change_with_the_verbs_held() {
    let env = console_env();
    let manifest = env.dir().join("console-admin.yaml");
    std::fs::write(&manifest, CONSOLE_ADMIN).expect("write the role");
    env.regate_ok(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    env.regate_ok(&["create", "user", "root"]);
    env.regate_ok(&[
        "policy",
        "add-cluster-role-to-user",
        "console-admin",
        "root",
    ]);
    let root_token = env.user_token("root");
    let mut root = Visitor::new(&env);
    assert_eq!(root.sign_in(&root_token).status, 303);
    let list = root.get("/console/namespaces").text();
    assert!(
        list.contains("project-a") && list.contains("project-b") && list.contains("all namespaces"),
        "{list}"
    );
    let page = root.get("/console/namespaces/project-b").text();
    assert!(
        page.contains("builder") && page.contains("deployer"),
        "{page}"
    );
    assert!(!page.contains("id=\"partial\""), "nothing left out: {page}");

    let change = |v: &Visitor, path: &str, subject: &str| {
        let csrf = v.csrf();
        let form = [
            ("csrf", csrf.as_str()),
            ("role", "system:image-puller"),
            ("kind", "user"),
            ("subject", subject),
        ];
        let reply = v.post(&format!("/console/namespaces/project-b/{path}"), &form, &[]);
        assert_eq!(reply.status, 303, "{path} {subject}");
        let flash = v.get("/console/namespaces/project-b").text();
        assert!(
            flash.contains("Done: regate policy"),
            "{path} {subject}: {flash}"
        );
    };
    let binding_of = |subject: &str| -> Vec<String> {
        let who = env.regate_ok(&[
            "policy",
            "who-can",
            "get",
            "imagestreams/layers",
            "-n",
            "project-b",
        ]);
        who.lines()
            .filter(|line| line.contains(subject))
            .map(str::to_string)
            .collect()
    };
    change(&root, "grant", "alice");
    change(&root, "grant", "bob");
    // The bindings by name, as `regate get rolebindings` lists them.
    let names = || -> Vec<String> {
        env.regate_ok(&["get", "rolebindings", "-n", "project-b"])
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(
        names(),
        [
            "system:image-builders",
            "system:image-puller",
            "system:image-pullers"
        ],
        "alice and bob share the role's binding"
    );
    change(&root, "revoke", "alice");
    assert!(binding_of("alice").is_empty(), "{:?}", binding_of("alice"));
    assert!(!binding_of("bob").is_empty(), "bob is still bound");
    assert_eq!(names().len(), 3, "updated in place: {:?}", names());

    // A namespace admin holds create and delete, not update.
    let ann = admin(&env, "ann", "registry-admin", "project-b");
    let mut admin_visitor = Visitor::new(&env);
    assert_eq!(admin_visitor.sign_in(&ann).status, 303);
    change(&admin_visitor, "grant", "carol");
    if on_a_cluster() {
        assert!(
            names().contains(&"system:image-puller-0".to_string()),
            "a binding of carol's own: {:?}",
            names()
        );
    }
    assert!(!binding_of("carol").is_empty(), "carol is bound");
    assert!(!binding_of("bob").is_empty(), "bob still is");
    change(&admin_visitor, "revoke", "bob");
    assert!(binding_of("bob").is_empty(), "bob is not bound any more");
    assert!(!binding_of("carol").is_empty(), "carol stays bound");
}

/// A client of the console without a browser: its own cookie handling, so every header shows.
/// Like a browser, it keeps the session cookie each answer sets (the session travels in it).
struct Visitor {
    base: String,
    /// `__Host-regate-console=VALUE`, as last set.
    cookie: RefCell<Option<String>>,
}

impl Visitor {
    fn new(env: &Env) -> Self {
        Visitor::at(env.url())
    }

    /// A visitor of the console at `base`, e.g. `http://127.0.0.1:PORT`.
    fn at(base: String) -> Self {
        Visitor {
            base,
            cookie: RefCell::new(None),
        }
    }

    /// A visitor of `base` holding a copy of `other`'s session cookie.
    fn with_cookie_of(base: String, other: &Visitor) -> Self {
        let visitor = Visitor::at(base);
        *visitor.cookie.borrow_mut() = other.cookie();
        visitor
    }

    /// The session cookie held, as sent.
    fn cookie(&self) -> Option<String> {
        self.cookie.borrow().clone()
    }

    /// Signs in with `token`; a 303 sets the session cookie.
    fn sign_in(&mut self, token: &str) -> Reply {
        let reply = self.post("/console/login", &[("token", token)], &[]);
        if reply.status == 303 {
            assert!(self.cookie().is_some(), "a session cookie");
        }
        reply
    }

    /// Sends `request` with the session cookie and keeps the one the answer sets.
    fn send(&self, mut request: reqwest::blocking::RequestBuilder) -> Reply {
        if let Some(cookie) = self.cookie() {
            request = request.header("Cookie", cookie);
        }
        let reply = Reply::from_request(request);
        if let Some(set) = reply.header("set-cookie") {
            let pair = set.split(';').next().unwrap_or_default();
            *self.cookie.borrow_mut() = pair
                .strip_prefix("__Host-regate-console=")
                .filter(|value| !value.is_empty())
                .map(|_| pair.to_string());
        }
        reply
    }

    fn get(&self, path: &str) -> Reply {
        self.send(client().get(format!("{}{path}", self.base)))
    }

    fn post(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut request = client().post(format!("{}{path}", self.base)).form(form);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("origin"))
        {
            request = request.header("Origin", &self.base);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request)
    }

    /// The CSRF token of the session, from a page's sign-out form.
    fn csrf(&self) -> String {
        csrf_of(&self.get("/console/namespaces").text())
    }
}

/// The CSRF token in a console page (its sign-out form has one).
fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A visitor of the console over HTTPS with curl, speaking `--http2` or `--http1.1`: the
/// session in a cookie jar, and each form sent with `Origin` and `Sec-Fetch-Site` as a
/// browser sends them.
struct CurlVisitor<'a> {
    base: String,
    ca: &'a TestCa,
    version: &'static str,
    jar: std::path::PathBuf,
}

impl<'a> CurlVisitor<'a> {
    /// A visitor of `env` (serving HTTPS with a certificate of `ca`), its jar in `dir`.
    fn new(env: &Env, ca: &'a TestCa, version: &'static str, dir: &std::path::Path) -> Self {
        let jar = dir.join(format!("cookies{version}"));
        std::fs::write(&jar, "").expect("an empty cookie jar");
        CurlVisitor {
            base: env.url(),
            ca,
            version,
            jar,
        }
    }

    /// `curl ARGS` to `path` with the jar: the status and the body, once the answer came in
    /// the HTTP version asked for.
    fn send(&self, path: &str, args: &[&str]) -> (u16, String) {
        let jar = self.jar.to_str().expect("utf-8 path");
        let url = format!("{}{path}", self.base);
        let mut all = vec![
            self.version,
            "--cacert",
            self.ca.ca_path(),
            "-b",
            jar,
            "-c",
            jar,
        ];
        all.extend(["-w", "\n%{http_version} %{http_code}"]);
        all.extend_from_slice(args);
        all.push(&url);
        let out = curl(&all);
        assert!(out.status.success(), "{path}: {}", show_output(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, last) = text.rsplit_once('\n').unwrap_or_default();
        let (spoken, status) = last.split_once(' ').unwrap_or_default();
        let asked = self.version.trim_start_matches("--http");
        assert_eq!(spoken, asked, "{path} {}: {text}", self.version);
        (status.parse().unwrap_or(0), body.to_string())
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.send(path, &[])
    }

    /// The status of `form` posted to `path` from a page of `origin`.
    fn post(&self, path: &str, form: &[(&str, &str)], origin: &str) -> u16 {
        let origin = format!("Origin: {origin}");
        let fields: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-H", &origin, "-H", "Sec-Fetch-Site: same-origin"];
        for field in &fields {
            args.extend(["--data-urlencode", field.as_str()]);
        }
        self.send(path, &args).0
    }

    /// Whether the jar holds a session cookie.
    fn signed_in(&self) -> bool {
        std::fs::read_to_string(&self.jar)
            .unwrap_or_default()
            .contains("__Host-regate-console")
    }
}

fn bindings(env: &Env, ns: &str) -> String {
    env.regate_ok(&["get", "rolebindings", "-n", ns, "-o", "yaml"])
}

#[test]
fn the_console_refuses_forged_stale_and_unauthorized_requests() {
    let env = console_env();
    let ann = admin(&env, "ann", "registry-admin", "project-a");
    let before_a = bindings(&env, "project-a");
    let before_b = bindings(&env, "project-b");
    let grant = |v: &Visitor, ns: &str, role: &str, csrf: &str, headers: &[(&str, &str)]| {
        v.post(
            &format!("/console/namespaces/{ns}/grant"),
            &[
                ("csrf", csrf),
                ("role", role),
                ("kind", "user"),
                ("subject", "mallory"),
            ],
            headers,
        )
    };

    // A refused token: 401, no cookie, and the token is never echoed.
    let mut visitor = Visitor::new(&env);
    let forged = format!("{ann}x");
    let reply = visitor.sign_in(&forged);
    assert_eq!(reply.status, 401);
    assert!(reply.header("set-cookie").is_none());
    assert!(!reply.text().contains(&forged));
    assert!(reply.text().contains("This token was refused"));

    // The session cookie's attributes.
    let reply = visitor.sign_in(&ann);
    assert_eq!(reply.status, 303, "{}", reply.text());
    let set = reply.header("set-cookie").unwrap_or_default().to_string();
    for attribute in [
        "__Host-regate-console=",
        "Path=/",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    let csrf = visitor.csrf();
    assert!(csrf.len() >= 40, "a random CSRF token: {csrf:?}");

    // A push refused its first check is explained with the role a push needs, as the 403 says.
    let outsider = env.token("default", "project-b");
    assert_eq!(
        env.start_upload("project-a/new", Auth::Basic(&outsider))
            .status,
        403
    );
    let list = visitor.get("/console/decisions?outcome=denied").text();
    let newest = list
        .split("href=\"/console/decisions/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a denial listed");
    let explained = visitor.get(&format!("/console/decisions/{newest}")).text();
    assert!(
        explained.contains(
            "regate policy add-role-to-user system:image-pusher \
             system:serviceaccount:project-b:default -n project-a"
        ),
        "{explained}"
    );

    // Forged writes: no CSRF token, a wrong one, another site's form. Nothing changes.
    assert_eq!(
        grant(&visitor, "project-a", "system:image-puller", "", &[]).status,
        400
    );
    assert_eq!(
        grant(
            &visitor,
            "project-a",
            "system:image-puller",
            "0123456789abcdef",
            &[]
        )
        .status,
        400
    );
    let evil = [("Origin", "http://evil.example")];
    assert_eq!(
        grant(&visitor, "project-a", "system:image-puller", &csrf, &evil).status,
        403
    );
    let cross = [("Sec-Fetch-Site", "cross-site")];
    assert_eq!(
        grant(&visitor, "project-a", "system:image-puller", &csrf, &cross).status,
        403
    );
    // Beyond what ann holds: another namespace, and a role granting more than registry-admin.
    assert_eq!(
        grant(&visitor, "project-b", "system:image-puller", &csrf, &[]).status,
        404
    );
    let escalation = grant(&visitor, "project-a", "admin", &csrf, &[]);
    assert_eq!(escalation.status, 403);
    assert!(
        escalation
            .text()
            .contains("nobody may grant more than they hold")
    );
    assert_eq!(
        bindings(&env, "project-a"),
        before_a,
        "no refused write changed anything"
    );
    assert_eq!(bindings(&env, "project-b"), before_b);

    // The same form, sound, is taken.
    let done = grant(&visitor, "project-a", "system:image-puller", &csrf, &[]);
    assert_eq!(done.status, 303);
    assert_eq!(
        done.header("location"),
        Some("/console/namespaces/project-a")
    );
    assert!(bindings(&env, "project-a").contains("mallory"));
    let page = visitor.get("/console/namespaces/project-a").text();
    assert!(
        page.contains(
            "Done: regate policy add-role-to-user system:image-puller mallory -n project-a"
        )
    );
    let removed = visitor.post(
        "/console/namespaces/project-a/revoke",
        &[
            ("csrf", &csrf),
            ("role", "system:image-puller"),
            ("kind", "user"),
            ("subject", "mallory"),
        ],
        &[],
    );
    assert_eq!(removed.status, 303);
    assert!(!bindings(&env, "project-a").contains("mallory"));

    // Someone with no rights signs in and sees nothing, and may change nothing.
    env.regate_ok(&["create", "user", "nobody"]);
    let mut nobody = Visitor::new(&env);
    assert_eq!(nobody.sign_in(&env.user_token("nobody")).status, 303);
    assert!(
        nobody
            .get("/console/namespaces")
            .text()
            .contains("You administer no namespace")
    );
    assert_eq!(nobody.get("/console/namespaces/project-a").status, 404);
    let theirs = nobody.csrf();
    assert_eq!(
        grant(&nobody, "project-a", "system:image-puller", &theirs, &[]).status,
        404
    );
    assert_eq!(
        grant(&visitor, "project-a", "system:image-puller", &theirs, &[]).status,
        400
    );

    // Signed out: the browser's cookie is deleted. A copy taken before still opens until its
    // idle or max limit, or until its token is revoked (docs/console.md, "Signing in").
    let copy = Visitor::with_cookie_of(env.url(), &visitor);
    let out = visitor.post("/console/logout", &[("csrf", &csrf)], &[]);
    assert_eq!(out.status, 303);
    assert!(
        out.header("set-cookie")
            .unwrap_or_default()
            .contains("Max-Age=0")
    );
    assert_eq!(visitor.cookie(), None);
    assert_eq!(
        visitor.get("/console/namespaces").header("location"),
        Some("/console/login")
    );
    assert_eq!(copy.get("/console/namespaces").status, 200);

    // A deleted user's session ends at the next page, and every copy of its cookie with it.
    let nobody_copy = Visitor::with_cookie_of(env.url(), &nobody);
    env.change(&["delete", "user", "nobody"]);
    let ended = nobody.get("/console/namespaces");
    assert_eq!(ended.status, 401);
    assert!(ended.text().contains("Your session ended"));
    assert_eq!(
        nobody.cookie(),
        None,
        "the ended session's cookie is deleted"
    );
    assert_eq!(nobody_copy.get("/console/namespaces").status, 401);

    // The access log names the viewer of each page; no token reached the log.
    let log = env.regate_log();
    assert!(
        log.lines().any(
            |line| line.contains("path=\"/console/namespaces/project-a\"")
                && line.contains("identity=\"ann\"")
        ),
        "{log}"
    );
    for token in [&ann, &forged] {
        assert!(!log.contains(token.as_str()), "a token in regate's log");
    }
}

/// The console's origin is the authority however the request carries it: `:authority` over h2
/// (no `Host` there), `Host` over HTTP/1.1.
#[test]
fn forms_are_taken_over_h2_and_http1_from_the_consoles_own_origin_only() {
    let work = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(work.path(), "ca");
    let env = console_env_tls(&ca.local_server("gateway"));
    let ann = admin(&env, "ann", "registry-admin", "project-a");
    let (own, evil) = (env.url(), "https://evil.example");
    for (version, subject) in [("--http2", "h2-user"), ("--http1.1", "h1-user")] {
        let visitor = CurlVisitor::new(&env, &ca, version, work.path());
        assert_eq!(
            visitor.post("/console/login", &[("token", &ann)], evil),
            403
        );
        assert!(
            !visitor.signed_in(),
            "{version}: no session from a foreign form"
        );
        assert_eq!(
            visitor.post("/console/login", &[("token", &ann)], &own),
            303
        );
        assert!(visitor.signed_in(), "{version}: the session cookie");
        let (status, page) = visitor.get("/console/namespaces/project-a");
        assert_eq!(status, 200, "{version}: {page}");
        let csrf = csrf_of(&page);
        let grant = [
            ("csrf", csrf.as_str()),
            ("role", "system:image-puller"),
            ("kind", "user"),
            ("subject", subject),
        ];
        let path = "/console/namespaces/project-a/grant";
        assert_eq!(visitor.post(path, &grant, evil), 403, "{version}");
        assert!(!bindings(&env, "project-a").contains(subject), "{version}");
        assert_eq!(visitor.post(path, &grant, &own), 303, "{version}");
        assert!(bindings(&env, "project-a").contains(subject), "{version}");
        let out = [("csrf", csrf.as_str())];
        assert_eq!(
            visitor.post("/console/logout", &out, &own),
            303,
            "{version}"
        );
        assert!(!visitor.signed_in(), "{version}: signed out");
    }
}

/// The length of the session cookie `reply` sets, `Set-Cookie` attributes included.
fn cookie_len(reply: &Reply) -> usize {
    reply.header("set-cookie").expect("a session cookie").len()
}

#[test]
fn replicas_sharing_the_signing_key_share_sessions() {
    // The signing key the replicas share: the state directory's (embedded), a key file (any).
    let keys = tempfile::tempdir().expect("a dir for the key");
    let mut config = format!(
        "token:\n  key_file: {}\n",
        keys.path().join("token.key").display()
    );
    if on_a_cluster() {
        config.push_str(KUBERNETES_TEST_CONFIG);
    }
    let mut env = console_builder().gateway_config(&config).run();
    let ann = admin(&env, "ann", "registry-admin", "project-a");
    let replica = format!("http://{}", env.start_replicas(1)[0]);

    // Signed in on the first, with the CSRF token of one of its pages.
    let mut first = Visitor::new(&env);
    let signed_in = first.sign_in(&ann);
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    eprintln!(
        "session cookie for an API token of {} characters: {} bytes",
        ann.len(),
        cookie_len(&signed_in)
    );
    let csrf = first.csrf();

    // Every page of the other replica knows the session, and each re-issues the cookie.
    let second = Visitor::with_cookie_of(replica, &first);
    for path in [
        "/console/namespaces",
        "/console/namespaces/project-a",
        "/console/decisions",
    ] {
        let reply = second.get(path);
        assert_eq!(reply.status, 200, "{path} on the replica: {}", reply.text());
        assert!(
            reply.text().contains("id=\"signed-in-as\">ann<"),
            "{path} on the replica"
        );
        let set = reply.header("set-cookie").unwrap_or_default();
        assert!(set.starts_with("__Host-regate-console="), "{path}: {set}");
    }

    // A grant posted there with the first's CSRF token is made, and its outcome shows on the
    // first replica's next page.
    let done = second.post(
        "/console/namespaces/project-a/grant",
        &[
            ("csrf", &csrf),
            ("role", "system:image-puller"),
            ("kind", "user"),
            ("subject", "carol"),
        ],
        &[],
    );
    assert_eq!(done.status, 303, "{}", done.text());
    assert!(bindings(&env, "project-a").contains("carol"));
    let back = Visitor::with_cookie_of(env.url(), &second);
    let page = back.get("/console/namespaces/project-a").text();
    assert!(
        page.contains(
            "Done: regate policy add-role-to-user system:image-puller carol -n project-a"
        ),
        "{page}"
    );
    assert!(
        !back
            .get("/console/namespaces/project-a")
            .text()
            .contains("Done: "),
        "the outcome is shown once"
    );

    // Signing out on one replica deletes the browser's cookie for all.
    let out = second.post("/console/logout", &[("csrf", &csrf)], &[]);
    assert_eq!(out.status, 303);
    assert_eq!(second.cookie(), None);

    // A regate with another signing key opens nothing of it: sign in again, never a 500.
    let stranger = Env::builder()
        .upstream("http://127.0.0.1:9")
        .serve_arg("--console")
        .run();
    let foreign = Visitor::with_cookie_of(stranger.url(), &first);
    let refused = foreign.get("/console/namespaces");
    assert_eq!(refused.status, 303);
    assert_eq!(refused.header("location"), Some("/console/login"));
    assert_eq!(
        foreign.cookie(),
        None,
        "the cookie that did not open is deleted"
    );
    let sealed = first.cookie().unwrap_or_default();
    let value = sealed.trim_start_matches("__Host-regate-console=");
    let (head, tail) = value.split_at(value.len() / 2);
    let flipped = if tail.starts_with('A') { "B" } else { "A" };
    for garbage in [
        "x".to_string(),
        "%00%ff".to_string(),
        value[..value.len() - 3].to_string(),
        format!("{head}{flipped}{}", &tail[1..]),
        "A".repeat(6000),
    ] {
        let reply = Reply::from_request(
            client()
                .get(format!("{}/console/namespaces", env.url()))
                .header("Cookie", format!("__Host-regate-console={garbage}")),
        );
        assert_eq!(reply.status, 303, "cookie {garbage:.40}");
        assert_eq!(reply.header("location"), Some("/console/login"));
    }
    assert_eq!(
        first.get("/console/namespaces").status,
        200,
        "still signed in"
    );
}

#[test]
fn on_an_address_of_its_own_with_failed_sign_ins_limited() {
    let port = free_port();
    let logs = tempfile::tempdir().expect("a dir for the audit log");
    let audit_log = logs.path().join("audit.log");
    let env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config(&format!(
            "console:\n  listen: 127.0.0.1:{port}\nfailed_logins:\n  burst: 2\n  refill: 1m\n\
             audit:\n  path: {}\n",
            audit_log.display()
        ))
        .run();
    let token = admin(&env, "ann", "registry-admin", "project-a");
    assert_eq!(
        Visitor::new(&env).get("/console/login").status,
        404,
        "not beside the API"
    );
    let base = format!("http://127.0.0.1:{port}");
    let mut ann = Visitor::at(base.clone());
    assert_eq!(ann.sign_in(&token).status, 303);
    // Decisions made on the API's address show on the console's.
    pushed(&env, "project-a/tool", "1.0");
    let stranger = env.token("default", "project-b");
    assert_eq!(
        env.get_manifest("project-a/tool", "1.0", Auth::Basic(&stranger))
            .status,
        403
    );
    let page = ann.get("/console/decisions?outcome=denied").text();
    assert!(
        page.contains("system:serviceaccount:project-b:default"),
        "{page}"
    );

    // Changes, made and refused, are in the audit log with who asked.
    let csrf = ann.csrf();
    let change = |role: &str| {
        ann.post(
            "/console/namespaces/project-a/grant",
            &[
                ("csrf", &csrf),
                ("role", role),
                ("kind", "group"),
                ("subject", "qa"),
            ],
            &[],
        )
        .status
    };
    assert_eq!(change("system:image-puller"), 303);
    assert_eq!(change("admin"), 403);
    let bindings: Vec<serde_json::Value> =
        wait_for(Duration::from_secs(5), "binding lines", || {
            let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .filter(|line: &serde_json::Value| line["event"] == "binding")
                .collect();
            (lines.len() == 2).then_some(lines)
        });
    assert_eq!(bindings[0]["user"], "ann");
    assert_eq!(
        bindings[0]["command"],
        "regate policy add-role-to-group system:image-puller qa -n project-a"
    );
    assert_eq!(bindings[0]["done"], true);
    assert_eq!(bindings[0]["status"], 303);
    assert_eq!(bindings[1]["done"], false);
    let refused = bindings[1]["refused"].as_str().unwrap_or_default();
    assert!(refused.contains("grant more than they hold"), "{refused}");

    // Guessing tokens is limited as guessing `docker login` passwords is.
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            Visitor::at(base.clone())
                .sign_in(&format!("guess-{i}"))
                .status
        })
        .collect();
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert_eq!(statuses[3], 429, "{statuses:?}");
    assert_eq!(
        Visitor::at(base.clone()).sign_in(&token).status,
        429,
        "a barred client waits, whatever it sends"
    );
}

#[test]
fn an_id_token_signs_in_and_pull_secrets_show_by_name_only() {
    // The viewer's ID token goes to the API server on a cluster, which takes no ID tokens in
    // these tests; OIDC on a cluster is the API server's own (its --oidc-* flags).
    if AuthorityMode::from_env() != AuthorityMode::Embedded {
        return;
    }
    let issuer = Issuer::start();
    let mut config = issuer.config("      username_prefix: \"ci:\"\n");
    config.push_str("console: {}\n");
    let env = Env::builder()
        .namespaces(PROJECTS)
        .gateway_config(&config)
        .run();
    env.regate_ok(&[
        "policy",
        "add-role-to-user",
        "registry-admin",
        "ci:ops",
        "-n",
        "project-a",
    ]);
    env.regate_ok(&[
        "create",
        "secret",
        "docker-registry",
        "upstream-pull",
        "-n",
        "project-a",
        "--docker-server=registry.example.com:5000",
        "--docker-username=robot-account",
        "--docker-password=s3cret-pass",
    ]);
    env.regate_ok(&[
        "secrets",
        "link",
        "default",
        "upstream-pull",
        "--for=pull",
        "-n",
        "project-a",
    ]);

    // An ID token of the trusted issuer, mapped as the gateway maps it.
    let mut ops = Visitor::new(&env);
    assert_eq!(ops.sign_in(&issuer.token("ops")).status, 303);
    let page = ops.get("/console/namespaces/project-a").text();
    assert!(page.contains("id=\"signed-in-as\">ci:ops<"), "{page}");
    let default_row = page
        .split("<th scope=\"row\">default</th>")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_default();
    assert!(default_row.contains("upstream-pull"), "{page}");
    for secret in ["s3cret-pass", "robot-account", "registry.example.com"] {
        assert!(!page.contains(secret), "the page shows {secret}");
    }
    // A realistic ID token fits: RS256, profile claims and forty groups.
    let mut claims = issuer.claims("ops", OIDC_AUDIENCE, 3600);
    claims["name"] = "Olivia Operator".into();
    claims["email"] = "olivia.operator@example.com".into();
    claims["email_verified"] = true.into();
    claims["groups"] = (0..40)
        .map(|i| format!("team-{i:02}-registry-operators"))
        .collect::<Vec<_>>()
        .into();
    let id_token = issuer.mint("rs-1", &claims);
    let reply = Visitor::new(&env).sign_in(&id_token);
    assert_eq!(reply.status, 303, "{}", reply.text());
    eprintln!(
        "session cookie for an ID token of {} characters: {} bytes (ES256 minimal one of {}: {})",
        id_token.len(),
        cookie_len(&reply),
        issuer.token("ops").len(),
        cookie_len(&Visitor::new(&env).sign_in(&issuer.token("ops")))
    );
    assert!(cookie_len(&reply) <= 4096);
    // One too long for a cookie is refused, saying why.
    claims["padding"] = "p".repeat(3000).into();
    let too_long = issuer.mint("rs-1", &claims);
    let reply = Visitor::new(&env).sign_in(&too_long);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.header("set-cookie").is_none());
    let text = reply.text();
    assert!(
        text.contains("too long for the session cookie") && text.contains("regate create token"),
        "{text}"
    );
    assert!(!text.contains(&too_long));

    // A token from an issuer regate does not trust is refused.
    let stranger = Issuer::start();
    assert_eq!(
        Visitor::new(&env).sign_in(&stranger.token("ops")).status,
        401
    );
}

/// The console reads its forms itself, so each has the request's deadline and a cap
/// (docs/console.md, "Forms and headers"): an anonymous sign-in trickled a byte a second is
/// answered 408 at `connections.request_timeout` and its connection closed, and so is a grant
/// form; a form declared too large is answered 413 at once, unread.
#[test]
fn forms_that_trickle_or_are_too_large_are_refused_within_the_deadline() {
    let limit = Duration::from_secs(2);
    let env = Env::builder()
        .namespaces(PROJECTS)
        .serve_arg("--console")
        .gateway_config("connections:\n  request_timeout: 2s\n")
        .run();
    let head = |path: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n",
            env.host(),
            env.url()
        )
    };
    let (every, most) = (Duration::from_secs(1), Duration::from_secs(15));
    let addr = env.addr();
    let grant = head("/console/namespaces/project-a/grant", 100);
    let grant = std::thread::spawn(move || trickle(addr, &grant, every, most));
    let sign_in = trickle(addr, &head("/console/login", 100), every, most);
    for (what, slow) in [
        ("sign-in", sign_in),
        ("grant", grant.join().expect("grant")),
    ] {
        slow.expect_cut_at(408, limit, "did not arrive within 2s", what);
    }

    let large = trickle(addr, &head("/console/login", 10 << 20), every, most);
    large.expect_cut_at(413, Duration::ZERO, "larger than", "a form past the cap");

    // A form sent at once still signs in.
    let ann = admin(&env, "ann", "registry-admin", "project-a");
    assert_eq!(Visitor::new(&env).sign_in(&ann).status, 303);
}

#[test]
fn without_the_flag_there_is_no_console() {
    let env = Env::builder().namespaces(PROJECTS).run();
    let reply = Visitor::new(&env).get("/console/");
    assert_eq!(reply.status, 404);
}

/// A request is one row of the decisions table, with each of its checks; and a denied push is
/// "Allowed now" only once the whole push would pass, not when only its refused check would.
#[test]
fn a_request_is_one_row_and_allowed_now_rechecks_the_whole_request() {
    let env = console_env();
    let ann = admin(&env, "ann", "registry-admin", "project-a");
    let mut visitor = Visitor::new(&env);
    assert_eq!(visitor.sign_in(&ann).status, 303);

    // An upload start needs get and update: one row, two checks.
    let builder = env.token("builder", "project-a");
    env.expect_upload_started(
        &env.start_upload("project-a/rows", Auth::Basic(&builder)),
        "the builder's push",
    );
    let table = visitor.get("/console/decisions").text();
    assert_eq!(
        table.matches("/v2/project-a/rows/blobs/uploads/").count(),
        1,
        "one row for the request: {table}"
    );
    let row = table
        .split("/v2/project-a/rows/blobs/uploads/")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("the row");
    assert_eq!(row.matches("<li").count(), 2, "its two checks: {row}");

    // bob's push is refused its get.
    env.regate_ok(&["create", "user", "bob"]);
    let bob = env.user_token("bob");
    assert_eq!(
        env.start_upload("project-a/bob", Auth::Basic(&bob)).status,
        403
    );
    let list = visitor.get("/console/decisions?outcome=denied").text();
    let seq = list
        .split("href=\"/console/decisions/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the denial listed")
        .to_string();
    let page = format!("/console/decisions/{seq}");
    // The puller role lets its get through, not the push.
    env.policy(
        "add-role-to-user",
        "system:image-puller",
        "bob",
        "project-a",
    );
    let explained = visitor.get(&page).text();
    assert!(!explained.contains("now-allowed"), "{explained}");
    assert_eq!(
        env.start_upload("project-a/bob", Auth::Basic(&bob)).status,
        403,
        "the push is still refused"
    );
    // The pusher role lets the whole push through.
    env.policy(
        "add-role-to-user",
        "system:image-pusher",
        "bob",
        "project-a",
    );
    let explained = visitor.get(&page).text();
    assert!(explained.contains("now-allowed"), "{explained}");
    env.expect_upload_started(
        &env.start_upload("project-a/bob", Auth::Basic(&bob)),
        "the push once allowed",
    );
}
