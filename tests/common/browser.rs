//! Headless Chromium driven through a chromedriver of the test's own (WebDriver, with
//! `fantoccini`), behind a blocking API so a test reads top-down beside its reqwest calls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::*;

/// How long one browser step (a page load, a click and the page it leads to) may take.
const STEP: Duration = Duration::from_secs(30);

/// A chromedriver on a loopback port and one headless Chromium session, both ended on drop.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// Where screenshots go: `target/console-screenshots/`.
    shots: PathBuf,
}

impl Browser {
    /// A fresh browser (no cookies), its window 1280×900.
    pub fn start() -> Browser {
        Browser::with_args(&[])
    }

    /// A fresh browser that trusts `cert` as if a CA it knows had signed it, so it speaks
    /// HTTPS (and h2, by ALPN) to a server presenting it.
    pub fn trusting(cert: &ServerCert) -> Browser {
        Browser::with_args(&[format!(
            "--ignore-certificate-errors-spki-list={}",
            cert.spki_sha256
        )])
    }

    /// The protocol the page shown now came over: `h2`, `http/1.1`.
    pub fn protocol(&self) -> String {
        let protocol =
            self.eval("return performance.getEntriesByType('navigation')[0].nextHopProtocol;");
        protocol.as_str().unwrap_or_default().to_string()
    }

    fn with_args(extra: &[String]) -> Browser {
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let driver = cmd
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver; .ci/run installs it)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!("http://127.0.0.1:{port}");
        let client = runtime.block_on(async {
            let mut args: Vec<String> = [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
            ]
            .map(String::from)
            .to_vec();
            args.extend_from_slice(extra);
            let mut caps = serde_json::Map::new();
            caps.insert(
                "goog:chromeOptions".into(),
                serde_json::json!({ "args": args }),
            );
            let deadline = Instant::now() + STARTUP;
            loop {
                // chromedriver speaks plain HTTP on loopback: no TLS stack is needed.
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                let mut builder = ClientBuilder::new(connector);
                match builder.capabilities(caps.clone()).connect(&url).await {
                    Ok(client) => break client,
                    Err(e) if Instant::now() > deadline => {
                        panic!("no WebDriver session from chromedriver at {url}: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Browser {
            runtime,
            client: Some(client),
            driver,
            shots,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session")
    }

    fn run<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.runtime
            .block_on(async { tokio::time::timeout(STEP, step).await })
            .unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Loads `url` and waits for it.
    pub fn goto(&self, url: &str) {
        self.run(&format!("open {url}"), self.client().goto(url));
    }

    /// The path of the page shown now.
    pub fn path(&self) -> String {
        self.run("current URL", self.client().current_url())
            .path()
            .to_string()
    }

    /// Types `text` into the field `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        self.run(&format!("type into {css}"), async {
            self.client()
                .find(Locator::Css(css))
                .await?
                .send_keys(text)
                .await
        });
    }

    /// Clicks what `css` selects and waits for the page it leads to.
    pub fn click(&self, css: &str) {
        self.run(&format!("click {css}"), async {
            self.client().find(Locator::Css(css)).await?.click().await
        });
    }

    /// The visible text of what `css` selects.
    pub fn text(&self, css: &str) -> String {
        self.run(&format!("text of {css}"), async {
            self.client().find(Locator::Css(css)).await?.text().await
        })
    }

    /// Whether something on the page matches `css`.
    pub fn has(&self, css: &str) -> bool {
        self.run(&format!("look for {css}"), async {
            Ok(!self.client().find_all(Locator::Css(css)).await?.is_empty())
        })
    }

    /// Waits until `css` matches something (a live update), panicking after `limit`.
    pub fn wait_for(&self, css: &str, limit: Duration) {
        self.run(&format!("wait for {css}"), async {
            self.client()
                .wait()
                .at_most(limit)
                .for_element(Locator::Css(css))
                .await
                .map(|_| ())
        });
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.run("page source", self.client().source())
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.run("script", self.client().execute(script, vec![]))
    }

    /// The browser's cookies for the page shown: `(name, http_only, secure, same_site)`.
    pub fn cookies(&self) -> Vec<(String, bool, bool, String)> {
        let cookies = self.run("cookies", self.client().get_all_cookies());
        cookies
            .iter()
            .map(|c| {
                (
                    c.name().to_string(),
                    c.http_only().unwrap_or(false),
                    c.secure().unwrap_or(false),
                    c.same_site().map(|s| format!("{s:?}")).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Saves the visible page as `target/console-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run("screenshot", self.client().screenshot());
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        kill(&mut self.driver);
    }
}
