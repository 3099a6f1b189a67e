//! sottod under test: started from the release build next to this binary,
//! pinned to its own core, with the limits meant for the internet lifted
//! where a benchmark would only measure them (rate limit, per-address caps).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::sys::{self, TempDir};

/// A running sottod and its data directory.
pub struct Sottod {
    child: Child,
    pub addr: SocketAddr,
    pub data: TempDir,
    /// The flags it was started with (for the report).
    pub flags: Vec<String>,
    cpu: Option<usize>,
    /// Edges of its cluster started for a benchmark ([`Sottod::start_edge`]), stopped first.
    pub edges: Vec<Sottod>,
    /// `--cluster fresh`: the three NATS servers started for it (dropped after it).
    _nats: Option<sotto::nats_harness::NatsCluster>,
}

/// The `--cluster` value that starts three NATS servers of its own for this
/// sottod (JetStream, on loopback, a fresh state), replaced by their URLs.
pub const FRESH_CLUSTER: &str = "fresh";

/// An edge's flags besides [`BENCH_FLAGS`] and its cluster's URLs.
pub const EDGE_FLAGS: &[&str] = &["--node", "edge", "--cluster-replicas", "3"];

/// The flags every benchmark server gets, besides listen, data and key.
pub const BENCH_FLAGS: &[&str] = &[
    "--rate",
    "off",
    "--registrations",
    "off",
    "--room-creations",
    "off",
    "--mailbox-max-msgs",
    "1000000",
    "--mailbox-max-bytes",
    "4294967296",
    "--max-bps",
    "0",
    "--max-conns",
    "60000",
    "--max-conns-per-addr",
    "60000",
    "--handshakes-per-sec",
    "1000000",
    "--idle-timeout",
    "600",
    // W2 holds 10,000 sessions of 100 accounts (the default allows 4 each).
    "--sessions-per-user",
    "100000",
    "--log-level",
    "warn",
    // One event loop on the server's core, as the IRC servers run; the
    // "Several loops" section passes --threads 2 after these (it wins).
    "--threads",
    "1",
    // Started as root (make bench installs the peers as root), sottod drops to
    // this account; the dedicated `sotto` account need not exist here.
    "--user",
    "nobody",
];

impl Sottod {
    /// Starts sottod on `cpu` with [`BENCH_FLAGS`] plus `extra`.
    pub fn start(cpu: Option<usize>, extra: &[&str]) -> std::io::Result<Sottod> {
        Sottod::start_in(cpu, extra, None)
    }

    /// As [`Sottod::start`], its data directory in `parent` (the system's
    /// temporary directory when None).
    pub fn start_in(cpu: Option<usize>, extra: &[&str], parent: Option<&Path>) -> std::io::Result<Sottod> {
        let data = match parent {
            Some(p) => TempDir::new_in(p, "data")?,
            None => TempDir::new("data")?,
        };
        let mut flags: Vec<String> = BENCH_FLAGS.iter().map(|s| s.to_string()).collect();
        flags.extend(extra.iter().map(|s| s.to_string()));
        let mut nats = None;
        if let Some(i) = flags.windows(2).position(|w| w[0] == "--cluster" && w[1] == FRESH_CLUSTER) {
            let cluster = sotto::nats_harness::NatsCluster::start().map_err(std::io::Error::other)?;
            flags[i + 1] = cluster.urls();
            nats = Some(cluster);
        }
        // SOTTO_BENCH_LOG=debug shows the server's log (to stderr) when a run goes wrong.
        if let Ok(level) = std::env::var("SOTTO_BENCH_LOG") {
            flags.extend(["--log-level".to_string(), level]);
        }
        let (child, addr) = spawn("127.0.0.1:0", &data.0, &flags, cpu)?;
        Ok(Sottod { child, addr, data, flags, cpu, edges: Vec::new(), _nats: nats })
    }

    /// Kills sottod with SIGKILL and starts it again on the same address,
    /// data directory, flags and core; returns once it listens.
    pub fn kill_and_restart(&mut self) -> std::io::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr) = spawn(&self.addr.to_string(), &self.data.0, &self.flags, self.cpu)?;
        self.child = child;
        self.addr = addr;
        Ok(())
    }

    /// A standby node of `writer`'s cluster (`--cluster fresh` started it),
    /// with `extra` besides: returns once it says `standby ADDR` (its address,
    /// bound, refuses connections until it takes over) and a channel that
    /// gets the moment it says `listening`.
    pub fn start_standby(
        writer: &Sottod,
        cpu: Option<usize>,
        extra: &[&str],
    ) -> std::io::Result<(Sottod, std::sync::mpsc::Receiver<std::time::Instant>)> {
        let (data, flags) = writer.sibling("standby", extra)?;
        let (child, mut out, line, bin) = launch("127.0.0.1:0", &data.0, &flags, cpu)?;
        let addr =
            line.trim().strip_prefix("standby ").and_then(|a| a.parse().ok()).ok_or_else(|| {
                std::io::Error::other(format!("{} did not start as a standby: {line:?}", bin.display()))
            })?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.starts_with("listening ") {
                    let _ = tx.send(std::time::Instant::now());
                }
                line.clear();
            }
        });
        Ok((Sottod { child, addr, data, flags, cpu, edges: Vec::new(), _nats: None }, rx))
    }

    /// Starts an edge of this writer's cluster (`--cluster fresh` started
    /// it; DESIGN §8 "Edges") on `cpu`, with `extra` besides; returns its
    /// address once it says `edge ADDR`. It is stopped before the writer.
    pub fn start_edge(&mut self, cpu: Option<usize>, extra: &[&str]) -> std::io::Result<SocketAddr> {
        let (data, flags) = self.sibling("edge", extra)?;
        let (child, mut out, mut line, bin) = launch("127.0.0.1:0", &data.0, &flags, cpu)?;
        if line.starts_with("standby ") {
            line.clear();
            out.read_line(&mut line)?;
        }
        let addr = line.trim().strip_prefix("edge ").and_then(|a| a.parse().ok());
        let addr: SocketAddr =
            addr.ok_or_else(|| std::io::Error::other(format!("{} did not start as an edge: {line:?}", bin.display())))?;
        // Its stdout is read on: a full pipe would stop it.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        self.edges.push(Sottod { child, addr, data, flags, cpu, edges: Vec::new(), _nats: None });
        Ok(addr)
    }

    /// A data directory and the flags of another node of this sottod's
    /// cluster (`--cluster fresh` started it), with `extra` besides.
    fn sibling(&self, what: &str, extra: &[&str]) -> std::io::Result<(TempDir, Vec<String>)> {
        let urls = self._nats.as_ref().map(|n| n.urls()).ok_or_else(|| std::io::Error::other("not a cluster"))?;
        let data = TempDir::new(what)?;
        let mut flags: Vec<String> = BENCH_FLAGS.iter().map(|s| s.to_string()).collect();
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags.extend(["--cluster".to_string(), urls]);
        if let Ok(level) = std::env::var("SOTTO_BENCH_LOG") {
            flags.extend(["--log-level".to_string(), level]);
        }
        Ok((data, flags))
    }

    /// Sends `sig` to sottod (SIGKILL: a crash; SIGTERM: a clean stop).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        sys::rss_kib(self.pid())
    }
}

/// Starts the sottod next to this binary listening on `listen`; returns once
/// it says where it listens (past `standby ADDR`, in cluster mode).
fn spawn(listen: &str, data: &Path, flags: &[String], cpu: Option<usize>) -> std::io::Result<(Child, SocketAddr)> {
    let (child, mut out, mut line, bin) = launch(listen, data, flags, cpu)?;
    // A cluster node: standby, then an edge until it holds the writer lease.
    while line.starts_with("standby ") || line.starts_with("edge ") {
        line.clear();
        out.read_line(&mut line)?;
    }
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("{} did not start: {line:?}", bin.display())))?;
    Ok((child, addr))
}

/// Starts the sottod next to this binary on `listen` with `flags`, pinned
/// to `cpu`; returns it, its stdout and the first line it printed there, and
/// the binary's path (for errors).
fn launch(
    listen: &str,
    data: &Path,
    flags: &[String],
    cpu: Option<usize>,
) -> std::io::Result<(Child, BufReader<std::process::ChildStdout>, String, std::path::PathBuf)> {
    let bin = sys::bin_dir().join("sottod");
    let mut cmd = Command::new(&bin);
    cmd.args(["--listen", listen, "--data"])
        .arg(data)
        .arg("--key")
        .arg(sotto::build_info::BUILD_KEY_PATH)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = sys::spawn_pinned(&mut cmd, cpu)?;
    let mut out = BufReader::new(child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    Ok((child, out, line, bin))
}

impl Drop for Sottod {
    fn drop(&mut self) {
        // Its edges first: stopped after it, one would take over.
        self.edges.clear();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = self.child.wait();
    }
}
