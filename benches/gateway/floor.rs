//! The floor of the `cpu` measure: the least a proxy built like regate costs. A hyper
//! HTTP/1.1 server on tokio's multi-threaded runtime (one worker per core, as regate) that
//! forwards every request over kept-alive hyper client connections: no routing,
//! authentication, header rewriting, logging or metrics. It runs as this bench binary started
//! again with [`FLOOR_ENV`] set, so `/proc` measures it alone, like every other proxy.
//!
//! What regate costs above this line is its own work; what this line costs above nginx is the
//! stack's (hyper and tokio against nginx's event loop).

use std::collections::VecDeque;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Set to the registry's `host:port` to make this binary the floor proxy.
pub const FLOOR_ENV: &str = "REGATE_BENCH_FLOOR";

/// The floor proxy, running as a child process.
pub struct Floor {
    child: Child,
    addr: String,
}

impl Floor {
    /// Starts the floor proxy in front of the registry at `upstream` (`host:port`), by
    /// `launcher` (e.g. valgrind and its arguments) when it is not empty.
    pub fn start(upstream: &str, launcher: &[String]) -> Floor {
        let this = std::env::current_exe().expect("this binary");
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(this);
                command
            }
            None => Command::new(this),
        };
        let mut child = command
            .env(FLOOR_ENV, upstream)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the floor proxy");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("its stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the floor proxy's address");
        Floor {
            child,
            addr: line.trim().to_string(),
        }
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves as the floor proxy, and never returns, when [`FLOOR_ENV`] is set.
pub fn serve_if_asked() {
    let Ok(upstream) = std::env::var(FLOOR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(serve(upstream));
    std::process::exit(0);
}

/// Idle client connections to the registry.
type Pool = Arc<Mutex<VecDeque<SendRequest<Incoming>>>>;

async fn serve(upstream: String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    println!("{}", listener.local_addr().expect("address"));
    let host = http::HeaderValue::from_str(&upstream).expect("a host");
    let pool: Pool = Arc::default();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let (pool, upstream, host) = (pool.clone(), upstream.clone(), host.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (pool, upstream, host) = (pool.clone(), upstream.clone(), host.clone());
                async move {
                    let mut sender = checkout(&pool, &upstream).await?;
                    let (mut parts, body) = req.into_parts();
                    parts.headers.insert(http::header::HOST, host);
                    let response = sender
                        .send_request(http::Request::from_parts(parts, body))
                        .await
                        .map_err(std::io::Error::other)?;
                    // Taken again by a later request once this response's body is read.
                    pool.lock().expect("pool").push_back(sender);
                    Ok::<_, std::io::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An idle connection that is ready for a request, or a new one.
async fn checkout(pool: &Pool, upstream: &str) -> std::io::Result<SendRequest<Incoming>> {
    {
        let mut idle = pool.lock().expect("pool");
        for _ in 0..idle.len() {
            let Some(sender) = idle.pop_back() else { break };
            if sender.is_ready() {
                return Ok(sender);
            }
            if !sender.is_closed() {
                idle.push_front(sender);
            }
        }
    }
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}
