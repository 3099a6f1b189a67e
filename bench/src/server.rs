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
}

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
        let bin = sys::bin_dir().join("sottod");
        let mut flags: Vec<String> = BENCH_FLAGS.iter().map(|s| s.to_string()).collect();
        flags.extend(extra.iter().map(|s| s.to_string()));
        // SOTTO_BENCH_LOG=debug shows the server's log (to stderr) when a run goes wrong.
        if let Ok(level) = std::env::var("SOTTO_BENCH_LOG") {
            flags.extend(["--log-level".to_string(), level]);
        }
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--data"])
            .arg(&data.0)
            .arg("--key")
            .arg(sotto::build_info::BUILD_KEY_PATH)
            .args(&flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = sys::spawn_pinned(&mut cmd, cpu)?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("{} did not start: {line:?}", bin.display())))?;
        Ok(Sottod { child, addr, data, flags })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        sys::rss_kib(self.pid())
    }
}

impl Drop for Sottod {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = self.child.wait();
    }
}
