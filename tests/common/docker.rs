//! The Docker engine as a client, with a config directory of its own.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

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
