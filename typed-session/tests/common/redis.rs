//! Real `redis-server`s for the tests: one node, or a three-master Cluster,
//! on free loopback ports in temporary directories, started once per test
//! binary and stopped when it exits (a shell wrapper kills the server when
//! the test process's end of its stdin pipe closes).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use typed_session::store::RedisStore;

use crate::common::harness::{Stored, TempDir};

/// One running server.
pub struct Server {
    pub port: u16,
    child: Child,
    dir: Option<TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the wrapper's stdin makes it kill the server and exit.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A loopback port that is free, and whose cluster bus port (+10000) is too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one inline command and returns the raw reply.
pub fn command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl Server {
    /// Starts `redis-server` with `extra` arguments; waits until it answers.
    pub fn start(extra: &[&str]) -> Server {
        let port = free_port();
        Server::start_on(port, extra, TempDir::new("redis"))
    }

    pub fn start_on(port: u16, extra: &[&str], dir: TempDir) -> Server {
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            "''".to_owned(),
            "--dir".to_owned(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let script = format!(
            "redis-server {} >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            args.join(" ")
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let start = Instant::now();
        while command(port, "PING").is_none_or(|r| !r.contains("PONG")) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            port,
            child,
            dir: Some(dir),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        let info = command(self.port, "INFO server").expect("INFO server");
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .expect("process_id in INFO server")
    }

    /// Sends a signal to the server process (`KILL`, `STOP`, `CONT`).
    pub fn signal(&self, pid: u32, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops the server (already killed or not) and keeps its directory.
    pub fn into_dir(mut self) -> TempDir {
        let dir = self.dir.take().unwrap();
        drop(self);
        dir
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A command count from `INFO commandstats` (`get`, `set`, `evalsha`...).
    pub fn calls(&self, command_name: &str) -> u64 {
        let info = command(self.port, "INFO commandstats").expect("INFO commandstats");
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command_name}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// The single node shared by this test binary.
pub fn node() -> &'static Server {
    static NODE: OnceLock<Server> = OnceLock::new();
    NODE.get_or_init(|| Server::start(&["--appendonly", "no"]))
}

/// The three-master Cluster shared by this test binary.
pub fn cluster() -> &'static [Server] {
    static CLUSTER: OnceLock<Vec<Server>> = OnceLock::new();
    CLUSTER.get_or_init(start_cluster)
}

/// A three-master Cluster of its own (for tests that count commands).
pub fn start_cluster() -> Vec<Server> {
    {
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                Server::start(&[
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let start = Instant::now();
        for n in &nodes {
            while command(n.port, "CLUSTER INFO").is_none_or(|r| !r.contains("cluster_state:ok")) {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "cluster not ready"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        nodes
    }
}

/// A prefix no other test of this binary uses.
pub fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn count_keys(ports: &[u16], prefix: &str) -> usize {
    ports
        .iter()
        .map(|p| {
            let reply = command(*p, &format!("KEYS {prefix}*")).expect("KEYS");
            // `*N` header of the array reply.
            reply
                .lines()
                .next()
                .and_then(|l| l.strip_prefix('*'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// A store on the shared node, with its own prefix, as a suite harness.
pub fn node_harness() -> Stored<RedisStore> {
    let prefix = prefix();
    let store = RedisStore::new(&node().url())
        .unwrap()
        .with_prefix(prefix.clone())
        .with_command_timeout(SUITE_TIMEOUT);
    let ports = vec![node().port];
    stored(store, ports, prefix)
}

/// Command timeout of the suites' stores. The suites run in parallel on one
/// shared server and plant a 100 MiB record through the store: with the
/// default 1 s a loaded machine can time out the plant itself. (The fault
/// tests, which are about timeouts, make stores of their own.)
const SUITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The same with the local copy on (`with_local_cache`).
pub fn node_harness_with_copy() -> Stored<RedisStore> {
    let prefix = prefix();
    let store = RedisStore::new(&node().url())
        .unwrap()
        .with_prefix(prefix.clone())
        .with_command_timeout(SUITE_TIMEOUT)
        .with_local_cache(1_000);
    let ports = vec![node().port];
    stored(store, ports, prefix)
}

/// A store on the shared Cluster, with its own prefix, as a suite harness.
pub fn cluster_harness() -> Stored<RedisStore> {
    cluster_harness_copying(0)
}

/// The same, with the local copy on (no tracking in a Cluster: every use
/// of a copy is a header check).
pub fn cluster_harness_with_copy() -> Stored<RedisStore> {
    cluster_harness_copying(1_000)
}

fn cluster_harness_copying(local_cache: usize) -> Stored<RedisStore> {
    let prefix = prefix();
    let nodes = cluster();
    let store = RedisStore::cluster(nodes.iter().map(Server::url))
        .unwrap()
        .with_prefix(prefix.clone())
        .with_command_timeout(SUITE_TIMEOUT)
        .with_local_cache(local_cache);
    let ports = nodes.iter().map(|n| n.port).collect();
    stored(store, ports, prefix)
}

fn stored(store: RedisStore, ports: Vec<u16>, prefix: String) -> Stored<RedisStore> {
    COUNTS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .push((prefix.clone(), ports));
    Stored::new(store, count_of)
}

type Counts = std::sync::Mutex<Vec<(String, Vec<u16>)>>;
static COUNTS: OnceLock<Counts> = OnceLock::new();

/// Keys under a store's prefix (looked up by the store's Debug-free prefix
/// registry: `Stored` takes a plain `fn`).
fn count_of(store: &RedisStore) -> usize {
    let prefix = store.prefix().to_owned();
    let counts = COUNTS.get_or_init(Default::default).lock().unwrap();
    let ports = counts
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, ports)| ports.clone())
        .unwrap_or_default();
    drop(counts);
    count_keys(&ports, &prefix)
}
