//! nginx as the load balancer in front of regate replicas: round robin, no session affinity,
//! keep-alive toward the replicas and nginx's default `max_fails=1 fail_timeout=10s`, as an
//! ingress controller runs it; and a second nginx serving the registry itself at a limited rate,
//! a slow source that makes a copy take seconds.

use std::net::SocketAddr;
use std::path::Path;

use super::*;

/// The balancer and the slow source; stopped when dropped.
pub struct Balancer {
    round_robin: Nginx,
    slow: Nginx,
}

impl Balancer {
    /// nginx in front of `replicas`, and `registry` served at `limit_rate` (nginx's syntax,
    /// e.g. `1m`) per connection.
    pub fn start(
        dir: &Path,
        replicas: &[SocketAddr],
        registry: SocketAddr,
        limit_rate: &str,
    ) -> Self {
        let servers: String = replicas
            .iter()
            .map(|addr| format!("    server {addr};\n"))
            .collect();
        let round_robin = Nginx::start(dir, "balancer", false, &[], |port, root| {
            proxy_config(
                port,
                root,
                &format!("upstream replicas {{\n{servers}    keepalive 32;\n  }}\n"),
                "http://replicas",
                "proxy_set_header Connection \"\";",
            )
        });
        let slow = Nginx::start(dir, "slow-source", false, &[], |port, root| {
            proxy_config(
                port,
                root,
                "",
                &format!("http://{registry}"),
                &format!("limit_rate {limit_rate};"),
            )
        });
        Balancer { round_robin, slow }
    }

    /// `127.0.0.1:PORT` of the round robin.
    pub fn addr(&self) -> SocketAddr {
        self.round_robin.addr()
    }

    /// `http://127.0.0.1:PORT` of the round robin.
    pub fn url(&self) -> String {
        self.round_robin.url()
    }

    /// `127.0.0.1:PORT` of the slow source.
    pub fn slow_source(&self) -> SocketAddr {
        self.slow.addr()
    }

    /// The round robin's error log so far.
    pub fn error_log(&self) -> String {
        self.round_robin.error_log()
    }
}

/// One nginx process proxying `127.0.0.1:port` to `pass` over HTTP/1.1, the `Host` kept,
/// bodies of any size; `upstream` declared first and `extra` in the location.
fn proxy_config(port: u16, root: &Path, upstream: &str, pass: &str, extra: &str) -> String {
    format!(
        "master_process off;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log {root}/access.log;\n\
         client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n  {upstream}\
         server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n\
         location / {{\n      proxy_pass {pass};\n      proxy_http_version 1.1;\n\
         proxy_set_header Host $http_host;\n      proxy_read_timeout 120s;\n      {extra}\n\
         }}\n  }}\n}}\n",
        root = root.display(),
    )
}
