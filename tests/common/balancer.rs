//! nginx as the load balancer in front of regate replicas: round robin, no session affinity,
//! keep-alive toward the replicas, and nginx's default `max_fails=1 fail_timeout=10s`, as an
//! ingress controller runs it. A second server of the same nginx serves the registry itself at
//! a limited rate, a slow source that makes a copy take seconds.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// A running nginx; stopped when dropped.
pub struct Balancer {
    child: Child,
    /// Round robin over the replicas.
    pub addr: SocketAddr,
    /// The registry itself, at `limit_rate` per connection.
    pub slow_source: SocketAddr,
    root: PathBuf,
}

impl Balancer {
    /// nginx in `dir/balancer` in front of `replicas`, and serving `registry` at `limit_rate`
    /// (nginx's syntax, e.g. `1m`) on `slow_source`.
    pub fn start(
        dir: &Path,
        replicas: &[SocketAddr],
        registry: SocketAddr,
        limit_rate: &str,
    ) -> Self {
        let root = dir.join("balancer");
        fs::create_dir_all(&root).expect("create the balancer's dir");
        let (port, slow) = (free_port(), free_port());
        let servers: String = replicas
            .iter()
            .map(|addr| format!("    server {addr};\n"))
            .collect();
        let conf = root.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\npid {root}/nginx.pid;\n\
                 error_log {root}/error.log info;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log {root}/access.log;\n\
                 client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n\
                 upstream replicas {{\n{servers}    keepalive 32;\n  }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n\
                 location / {{\n      proxy_pass http://replicas;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n\
                 proxy_read_timeout 120s;\n    }}\n  }}\n\
                 server {{\n    listen 127.0.0.1:{slow};\n    client_max_body_size 0;\n\
                 location / {{\n      proxy_pass http://{registry};\n      proxy_http_version 1.1;\n\
                 proxy_set_header Host $http_host;\n      limit_rate {limit_rate};\n    }}\n  }}\n}}\n",
                root = root.display(),
            ),
        )
        .expect("write nginx.conf");
        let mut cmd = Command::new("nginx");
        cmd.arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("start nginx (Debian nginx-light; .ci/run installs it)");
        let balancer = Balancer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            slow_source: SocketAddr::from(([127, 0, 0, 1], slow)),
            root,
        };
        for addr in [balancer.addr, balancer.slow_source] {
            wait_for(Duration::from_secs(30), "nginx to listen", || {
                std::net::TcpStream::connect(addr).ok()
            });
        }
        balancer
    }

    /// `http://ADDR` of the round robin.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        read_lossy(&self.root.join("error.log"))
    }

    /// nginx's access log so far.
    pub fn access_log(&self) -> String {
        read_lossy(&self.root.join("access.log"))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
