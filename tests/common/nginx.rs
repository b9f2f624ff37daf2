//! nginx of the test's (or the bench's) own: its config, pid and logs in a directory of the
//! temp dir, listening on a free 127.0.0.1 port, stopped when dropped.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A running nginx.
pub struct Nginx {
    child: Child,
    port: u16,
    root: PathBuf,
    /// `http` or `https`.
    scheme: &'static str,
}

impl Nginx {
    /// Starts nginx in `dir/name`: `daemon off`, its pid file and `error.log` (warnings and
    /// worse, such as a server marked failed) there, and then
    /// `config(port, root)`, the rest of the config (processes, `events`, `http`) listening on
    /// `127.0.0.1:port`. `https` when it serves TLS; a non-empty `launcher` runs it under that
    /// program (e.g. valgrind and its arguments). Waits (bounded) until the port accepts.
    pub fn start(
        dir: &Path,
        name: &str,
        https: bool,
        launcher: &[String],
        config: impl FnOnce(u16, &Path) -> String,
    ) -> Nginx {
        let port = free_port();
        let root = dir.join(name);
        fs::create_dir_all(&root).expect("create nginx dir");
        let conf = root.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n{rest}",
                root = root.display(),
                rest = config(port, &root),
            ),
        )
        .expect("write nginx.conf");
        let (program, before) = match launcher.split_first() {
            Some((program, args)) => (program.as_str(), [args, &["nginx".to_string()]].concat()),
            None => ("nginx", Vec::new()),
        };
        let mut cmd = Command::new(program);
        cmd.args(before)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("start nginx (Debian's nginx-light; .ci/run installs it)");
        let mut nginx = Nginx {
            child,
            port,
            root,
            scheme: if https { "https" } else { "http" },
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(nginx.addr()).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}); error.log:\n{}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 60 s; error.log:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr())
    }

    /// Its directory (config, pid, logs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Everything in its `error.log`.
    pub fn error_log(&self) -> String {
        read_lossy(&self.root.join("error.log"))
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        std::iter::once(master)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers instead of orphaning them.
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill(&mut self.child);
    }
}
