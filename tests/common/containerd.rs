//! A containerd of a test's own, and `ctr` against it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::*;

/// A containerd of the test's own (root, state and socket in `dir`), killed on drop: the
/// engine's containerd, if any, is not touched.
pub struct Containerd {
    child: std::process::Child,
    pub socket: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        let dir = dir.join("containerd");
        fs::create_dir_all(&dir).expect("containerd dir");
        let socket = dir.join("c.sock");
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display()
            ),
        )
        .expect("write containerd config");
        let log = fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("start containerd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not listen: {}",
                fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd { child, socket }
    }

    /// `ctr --address SOCKET ARGS`, bounded to 5 minutes.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket).args(args);
        run_bounded(cmd, Duration::from_secs(300))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
