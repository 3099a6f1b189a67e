//! Real `nats-server` processes for the cluster tests and benchmarks (the
//! `nats-harness` feature; never in sottod's own build): three servers with
//! JetStream, routed to each other on loopback, each with its own store
//! directory. `tools/need-nats-server` (run by `make test` and `make bench`)
//! installs the binary; without it [`NatsCluster::start`] fails, naming it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server binary: on PATH, or where Debian's package puts it.
pub fn binary() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file())).ok_or_else(|| {
        "nats-server is not installed: run `bash tools/need-nats-server` (make test and make bench do)".to_owned()
    })
}

/// A private directory for the servers' stores, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Result<Dir, String> {
        use std::os::unix::fs::PermissionsExt;
        let name = format!("sotto-nats-{}", crate::crypto::hex(&crate::crypto::random::<6>()));
        let p = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
        Ok(Dir(p))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free now on 127.0.0.1 (the NATS servers' routes need ports known
/// in advance, and a restarted server takes its old ones again).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

struct Node {
    name: String,
    client: u16,
    route: u16,
    monitor: u16,
    store: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

/// Three NATS servers with JetStream, clustered.
pub struct NatsCluster {
    nodes: Vec<Node>,
    binary: PathBuf,
    _dir: Dir,
}

impl NatsCluster {
    /// Starts three servers and waits until JetStream has a leader.
    pub fn start() -> Result<NatsCluster, String> {
        let binary = binary()?;
        let dir = Dir::new()?;
        let mut nodes = Vec::new();
        for i in 1..=3 {
            nodes.push(Node {
                name: format!("n{i}"),
                client: free_port()?,
                route: free_port()?,
                monitor: free_port()?,
                store: dir.0.join(format!("n{i}")),
                child: None,
                log: dir.0.join(format!("n{i}.log")),
            });
        }
        let mut cluster = NatsCluster { nodes, binary, _dir: dir };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route))
            .collect();
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log).map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &n.client.to_string(), "-n", &n.name, "-js", "-sd"])
            .arg(&n.store)
            .args(["--cluster_name", "sotto-test", "--cluster", &format!("nats://127.0.0.1:{}", n.route)])
            .args(["--routes", &routes.join(","), "-m", &n.monitor.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        n.child = Some(child);
        Ok(())
    }

    /// The client URLs of all three, comma-separated (for `--cluster`).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client)).collect::<Vec<_>>().join(",")
    }

    /// Kills server `i` (0-2) with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again on its ports and store, and waits until all are healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy()
    }

    /// Kills all three, then starts them again from their stores.
    pub fn restart_all(&mut self) -> Result<(), String> {
        for i in 0..3 {
            self.kill(i);
        }
        for i in 0..3 {
            self.spawn(i)?;
        }
        self.wait_healthy()
    }

    /// Waits (60 s at most) until every running server answers `/healthz`
    /// with ok and sees a JetStream meta leader. A server that exited because
    /// one of its ports was taken meanwhile (a free port is only free until
    /// another process binds it) is started again on new ports, up to five
    /// times; the others reach it through the routes it opens to them.
    pub fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..self.nodes.len() {
            let mut respawns = 0;
            loop {
                let n = &mut self.nodes[i];
                let Some(child) = n.child.as_mut() else { break };
                if let Ok(Some(status)) = child.try_wait() {
                    let taken = self.log(&self.nodes[i]).contains("address already in use");
                    if !taken || respawns == 5 {
                        return Err(format!(
                            "NATS {} exited ({status}); log:\n{}",
                            self.nodes[i].name,
                            self.log(&self.nodes[i])
                        ));
                    }
                    respawns += 1;
                    let n = &mut self.nodes[i];
                    (n.client, n.route, n.monitor) = (free_port()?, free_port()?, free_port()?);
                    self.spawn(i)?;
                    continue;
                }
                let n = &self.nodes[i];
                let health = http_get(n.monitor, "/healthz");
                let jsz = http_get(n.monitor, "/jsz");
                let healthy = health.as_deref().is_some_and(|b| b.contains("\"ok\""));
                let leader = jsz.as_deref().is_some_and(has_leader);
                if healthy && leader {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("NATS {} not healthy in 60 s: {health:?}; log:\n{}", n.name, self.log(n)));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    fn log(&self, n: &Node) -> String {
        std::fs::read_to_string(&n.log).unwrap_or_default()
    }

    /// The servers' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.name, self.log(n))).collect()
    }
}

/// Whether `/jsz` names a meta leader: `"meta_cluster":{..."leader":"n2"...}`.
fn has_leader(jsz: &str) -> bool {
    let Some(meta) = jsz.find("\"meta_cluster\"") else { return false };
    let rest = &jsz[meta..];
    let Some(at) = rest.find("\"leader\"") else { return false };
    let value = rest[at + "\"leader\"".len()..].trim_start().trim_start_matches(':').trim_start();
    value.starts_with('"') && !value.starts_with("\"\"")
}

/// The body of `GET path` from the monitoring port, or `None`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
