//! A `redis-server` child process for one test: its own port and directory,
//! killed when dropped.

use crate::helpers::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    extra: Vec<String>,
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

/// True if and only if a Redis answers PING on `port`.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl TestRedis {
    /// Starts a Redis that keeps nothing on disk.
    ///
    /// # Panics
    /// When `redis-server` is not on the `PATH`: a test that needs it carries
    /// `#[cfg_attr(presenced_without_redis, ignore = ...)]`, which `build.rs` sets on
    /// a machine without one, so it reaches this only if Redis vanished since the build.
    pub fn start() -> TestRedis {
        TestRedis::launch(false, &[])
    }

    /// As [`TestRedis::start`], with more `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> TestRedis {
        TestRedis::launch(false, extra)
    }

    /// Starts a Redis that fsyncs every write to its append-only file, so
    /// what it acknowledged survives being killed.
    pub fn start_durable() -> TestRedis {
        TestRedis::launch(true, &[])
    }

    fn launch(durable: bool, extra: &[&str]) -> TestRedis {
        assert!(
            binary().is_some(),
            "redis-server is not on the PATH (apt-get install redis-server), \
             and it was when this test binary was built"
        );
        let mut redis = TestRedis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            durable,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and directory, and waits
    /// until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let persistence: &[&str] = if self.durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new(binary().expect("redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(persistence)
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to a Redis that a test can cut (every relayed connection
/// closed, new ones refused) and mend: one replica loses Redis while the others
/// keep it. Stops relaying when dropped.
pub struct CutProxy {
    port: u16,
    open: Arc<AtomicBool>,
    relays: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: u16) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let open = Arc::new(AtomicBool::new(true));
        let relays: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (open, relays) = (open.clone(), relays.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    relays.lock().expect("relays").push(relay);
                }
            })
        };
        CutProxy {
            port,
            open,
            relays,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every relayed connection and refuses new ones until [`CutProxy::mend`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }

    pub fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
