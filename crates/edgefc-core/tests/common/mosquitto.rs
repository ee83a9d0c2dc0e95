//! A real Mosquitto broker for the bridge's tests: started on a free port
//! of 127.0.0.1 with its own config and directory (as `nobody` when the
//! tests run as root), stopped with SIGTERM (it saves its sessions) or
//! killed, and started again on the same port and directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Where mosquitto is, or why the test cannot run.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Skips a test (with a printed reason) where mosquitto is not installed.
#[macro_export]
macro_rules! need_mosquitto {
    () => {
        if common::mosquitto::binary().is_none() {
            eprintln!("skipped: mosquitto is not installed (scripts/services.sh installs it)");
            return;
        }
    };
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::Builder::new().prefix("mosq").tempdir_in("/tmp").unwrap();
        let port = free_port();
        let mut broker = Mosquitto { port, dir, child: None };
        broker.write_config();
        broker.launch();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
             max_queued_messages 0\nmax_inflight_messages 100\nlog_dest file {dir}/log\n",
            port = self.port,
            dir = dir.display()
        );
        std::fs::write(dir.join("m.conf"), config).unwrap();
        if is_root() {
            // mosquitto runs as nobody and keeps its sessions in this directory.
            let (uid, gid) = nobody();
            for path in [dir.to_path_buf(), dir.join("m.conf")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
    }

    fn launch(&mut self) {
        let binary = binary().expect("mosquitto");
        let config = self.dir.path().join("m.conf");
        let mut command = if is_root() {
            let mut command = Command::new("setpriv");
            command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        let child = command.arg("-c").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("mosquitto starts");
        self.child = Some(child);
        wait_for_port(self.port, self.dir.path());
    }

    /// SIGTERM: mosquitto saves its sessions and queued messages, then ends.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts it again after [`stop`](Mosquitto::stop), on the same port and directory.
    pub fn start_again(&mut self) {
        self.launch();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn nobody() -> (u32, u32) {
    let name = std::ffi::CString::new("nobody").unwrap();
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "the system has a user nobody");
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    panic!("mosquitto did not listen on {port}:\n{log}");
}
