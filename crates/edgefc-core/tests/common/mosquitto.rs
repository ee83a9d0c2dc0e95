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
    /// A second listener, with TLS, when started so.
    pub tls_port: Option<u16>,
    /// The ACL file's text, when started with one.
    acl: Option<String>,
    /// The port of the broker this one is bridged to (MQTT 5, `edgefc/#` both ways).
    bridged_to: Option<u16>,
    /// More lines for its config file.
    extra: String,
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
        Mosquitto::started(false, None)
    }

    /// With an ACL file (mosquitto's `acl_file` syntax) for anonymous clients.
    pub fn start_with_acl(acl: &str) -> Mosquitto {
        Mosquitto::started(false, Some(acl.to_string()))
    }

    /// With a TLS listener beside the plain one, on certificates of a CA of
    /// its own (`ca.crt` in its directory), for the name `localhost`.
    pub fn start_with_tls() -> Mosquitto {
        Mosquitto::started(true, None)
    }

    /// A site's broker, bridged to `hub` as separate sites' brokers are:
    /// mosquitto's own bridge, speaking MQTT 5 (a 3.1.1 bridge drops the
    /// request/response properties), carrying `edgefc/#` both ways. Returns
    /// once the bridge has connected.
    pub fn start_bridged_to(hub: &Mosquitto) -> Mosquitto {
        let dir = tempfile::Builder::new().prefix("mosq").tempdir_in("/tmp").unwrap();
        let mut broker = Mosquitto {
            port: free_port(),
            tls_port: None,
            acl: None,
            bridged_to: Some(hub.port),
            extra: String::new(),
            dir,
            child: None,
        };
        broker.write_config();
        broker.launch();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (log, connected) = (hub.dir.path().join("log"), format!(" as site-{} ", broker.port));
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(&connected) {
            assert!(Instant::now() < deadline, "the bridge did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        broker
    }

    /// With more lines in its config file (`max_packet_size 2000`, say).
    pub fn start_with_config(extra: &str) -> Mosquitto {
        let mut broker = Mosquitto::started_as(false, None, extra);
        broker.launch();
        broker
    }

    fn started(tls: bool, acl: Option<String>) -> Mosquitto {
        let mut broker = Mosquitto::started_as(tls, acl, "");
        broker.launch();
        broker
    }

    /// Configured, not yet launched.
    fn started_as(tls: bool, acl: Option<String>, extra: &str) -> Mosquitto {
        let dir = tempfile::Builder::new().prefix("mosq").tempdir_in("/tmp").unwrap();
        let port = free_port();
        let tls_port = tls.then(free_port);
        let broker = Mosquitto { port, tls_port, acl, bridged_to: None, extra: extra.to_string(), dir, child: None };
        if tls {
            make_certificates(broker.dir.path());
        }
        broker.write_config();
        broker
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let mut config = format!(
            "allow_anonymous true\npersistence true\npersistence_location {dir}/\n\
             max_queued_messages 0\nmax_inflight_messages 100\nlog_dest file {dir}/log\nlistener {port} 127.0.0.1\n",
            port = self.port,
            dir = dir.display()
        );
        if let Some(acl) = &self.acl {
            std::fs::write(dir.join("acl"), acl).unwrap();
            config += &format!("acl_file {}/acl\n", dir.display());
        }
        config += &self.extra;
        if let Some(hub) = self.bridged_to {
            config += &format!(
                "connection site-{port}\naddress 127.0.0.1:{hub}\nbridge_protocol_version mqttv50\n\
                 topic edgefc/# both 1\ncleansession false\nremote_clientid site-{port}\nrestart_timeout 1\n",
                port = self.port
            );
        }
        if let Some(tls_port) = self.tls_port {
            config += &format!(
                "listener {tls_port} 127.0.0.1\ncafile {dir}/ca.crt\ncertfile {dir}/server.crt\nkeyfile {dir}/server.key\n",
                dir = dir.display()
            );
        }
        std::fs::write(dir.join("m.conf"), config).unwrap();
        if is_root() {
            // mosquitto runs as nobody and keeps its sessions (and reads its keys) in this directory.
            let (uid, gid) = nobody();
            for entry in std::fs::read_dir(dir).unwrap() {
                std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
            }
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
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

/// A CA, and a server certificate it signed for `localhost`, with openssl.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl").args(args).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(status.expect("openssl runs").success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=edgefc test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
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

/// A TCP proxy in front of a broker that can cut the line: every open
/// connection through it ends, and new ones are refused, until `heal`.
pub struct CutProxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<tokio::sync::Notify>,
}

impl CutProxy {
    pub async fn start(target_port: u16) -> CutProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let (accepting, cuts) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue;
                }
                let cuts = cuts.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cuts.notified() => {}
                    }
                });
            }
        });
        CutProxy { port, open, cut }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
