//! Test harness: real `sottod` and `sotto --batch` processes on loopback,
//! port 0, temporary directories; processes are killed in `Drop`.

#![allow(dead_code)]

pub mod proxy;
pub mod raw;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for any single expected line.
pub const WAIT: Duration = Duration::from_secs(30);

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir()
            .join(format!("sotto-test-{tag}-{}", sotto::crypto::hex(&sotto::crypto::random::<6>())));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(p)
    }

    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Flags every test server starts with, before the test's own (which win):
/// the per-address registration and room-creation throttles off, since every
/// test client connects from 127.0.0.1 (tests of the throttles set them); and,
/// as root, the service user `nobody`, since the default `sotto` account is
/// not on a test machine. And `--threads 2` (one core loop, one output
/// loop), so that every integration test runs the threaded server; tests of
/// the single loop pass `--threads 1`, which wins.
pub fn test_defaults() -> Vec<&'static str> {
    let mut flags = vec!["--registrations", "off", "--room-creations", "off", "--threads", "2"];
    if nix::unistd::geteuid().is_root() {
        flags.extend(["--user", "nobody"]);
    }
    flags
}

/// A running `sottod`.
pub struct Server {
    child: Child,
    pub addr: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// sottod's stdout lines (`standby ADDR`, `listening ADDR`).
    stdout: Receiver<String>,
}

/// The private key this build's server uses.
pub fn build_key() -> PathBuf {
    PathBuf::from(sotto::build_info::BUILD_KEY_PATH)
}

/// Collects sottod's stderr lines; with `SOTTO_TEST_ECHO=1` also echoes
/// them, tagged with `tag`, as they come (run the test with --nocapture).
fn collect_lines(r: impl std::io::Read + Send + 'static, tag: String) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let echo = std::env::var_os("SOTTO_TEST_ECHO").is_some();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if echo {
                eprintln!("[{tag}] {line}");
            }
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Server {
    /// Starts sottod on 127.0.0.1:0 with `data` and the build key, plus `extra` flags.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        Server::start_on(data, "127.0.0.1:0", extra)
    }

    /// Starts sottod listening on `listen` (a restart on the port it had before).
    pub fn start_on(data: &Path, listen: &str, extra: &[&str]) -> Server {
        Server::spawn(data, listen, extra, None)
    }

    /// Starts sottod on 127.0.0.1:0 allowed at most `nofile` open descriptors.
    pub fn start_with_nofile(data: &Path, extra: &[&str], nofile: u64) -> Server {
        Server::spawn(data, "127.0.0.1:0", extra, Some(nofile))
    }

    fn spawn(data: &Path, listen: &str, extra: &[&str], nofile: Option<u64>) -> Server {
        let mut s = Server::launch(data, listen, extra, nofile);
        s.wait_listening();
        s
    }

    /// Starts a cluster node (`extra` has `--cluster`) that another node's
    /// writer lease keeps a standby: returns once it printed `standby ADDR`.
    pub fn start_standby(data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut s = Server::launch(data, listen, extra, None);
        let line = s
            .stdout
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("sottod printed no `standby` line; stderr: {:?}", s.stderr.lock().unwrap()));
        let addr = line.strip_prefix("standby ").unwrap_or_else(|| {
            panic!("sottod printed {line:?}, not `standby ADDR`; stderr: {:?}", s.stderr.lock().unwrap())
        });
        s.addr = addr.to_owned();
        s
    }

    /// Waits (60 s at most) for `edge ADDR` after [`Server::start_standby`]:
    /// the node serves clients for the writer (DESIGN §8 "Edges").
    pub fn wait_edge(&mut self) {
        let line = self.stdout.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = self.child.kill();
            panic!("sottod did not print `edge` within 60 s; stderr: {:?}", self.stderr.lock().unwrap())
        });
        let addr = line.strip_prefix("edge ").unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("sottod printed {line:?}, not `edge ADDR`; stderr: {:?}", self.stderr.lock().unwrap())
        });
        self.addr = addr.to_owned();
    }

    /// Waits (60 s at most) for `listening ADDR`, past `standby ADDR` and
    /// `edge ADDR` lines: a cluster node writes once it holds the writer lease.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).unwrap_or_else(|_| {
                let _ = self.child.kill();
                panic!("sottod did not print `listening` within 60 s; stderr: {:?}", self.stderr.lock().unwrap())
            });
            if let Some(addr) = line.strip_prefix("listening ") {
                self.addr = addr.to_owned();
                return;
            }
            if !line.starts_with("standby ") && !line.starts_with("edge ") {
                let _ = self.child.kill();
                panic!("sottod printed {line:?}; stderr: {:?}", self.stderr.lock().unwrap())
            }
        }
    }

    /// Whether sottod has exited, and how.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn launch(data: &Path, listen: &str, extra: &[&str], nofile: Option<u64>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sottod"));
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit is async-signal-safe and only touches the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        // Log lines carry their time unless stderr is systemd's journal: a test
        // run from a systemd service must not inherit that.
        cmd.env_remove("JOURNAL_STREAM");
        let mut child = cmd
            .args(["--listen", listen, "--data"])
            .arg(data)
            .arg("--key")
            .arg(build_key())
            .args(test_defaults())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sottod");
        let stderr = collect_lines(child.stderr.take().unwrap(), format!("sottod {}", child.id()));
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line.trim().to_owned()).is_err() {
                    return;
                }
            }
        });
        Server { addr: String::new(), child, stderr, stdout }
    }

    /// Starts sottod without the chat rate limit (tests send bursts for other
    /// reasons); `start_with(data, &[])` keeps every default.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &["--rate", "off"])
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_child(&mut self.child)
    }
}

impl Server {
    /// sottod's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to sottod (e.g. SIGSTOP to freeze it).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// sottod's resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value")
    }

    /// CPU time sottod has used (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs sottod to completion (for start-up failures) and returns (status, stderr).
pub fn run_server_expecting_exit(args: &[&std::ffi::OsStr]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sottod"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// Runs sottod on 127.0.0.1:0 with `data`, `key` and `extra` flags, expecting
/// it to refuse to start: (status, stderr).
pub fn server_exit(data: &Path, key: &Path, extra: &[&str]) -> (ExitStatus, String) {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["--listen".as_ref(), "127.0.0.1:0".as_ref(), "--data".as_ref(), data.as_os_str(), "--key".as_ref()];
    args.push(key.as_os_str());
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    run_server_expecting_exit(&args)
}

/// A running `sotto --batch`.
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Lines read while waiting for another one, in arrival order.
    backlog: VecDeque<Value>,
    pub seen: Vec<Value>,
    /// How long to wait for one line (WAIT unless changed).
    patience: Duration,
}

impl Client {
    pub fn start(server: &str, home: &Path) -> Client {
        Client::start_buffered(server, home, usize::MAX)
    }

    /// A client whose output is read through a channel of `depth` lines: when
    /// the test stops reading, the client soon blocks on stdout and stops
    /// reading its socket — a slow consumer.
    pub fn start_buffered(server: &str, home: &Path, depth: usize) -> Client {
        Client::spawn(server, home, &[], depth)
    }

    fn spawn(server: &str, home: &Path, extra: &[&str], depth: usize) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sotto"))
            .args(["--batch", "--server", server, "--home"])
            .arg(home)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sotto");
        let stdout = child.stdout.take().unwrap();
        // Both channel kinds share the Receiver type; a bounded one preallocates, so only when asked.
        let (send, lines): (Box<dyn Fn(String) -> bool + Send>, Receiver<String>) = if depth == usize::MAX {
            let (tx, rx) = mpsc::channel();
            (Box::new(move |l| tx.send(l).is_ok()), rx)
        } else {
            let (tx, rx) = mpsc::sync_channel(depth);
            (Box::new(move |l| tx.send(l).is_ok()), rx)
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !send(line) {
                    return;
                }
            }
        });
        Client { stdin: child.stdin.take(), child, lines, backlog: VecDeque::new(), seen: Vec::new(), patience: WAIT }
    }

    /// Waits up to `d` for each line from now on (a client that may sit out
    /// a failover's reconnection back-off).
    pub fn set_patience(&mut self, d: Duration) {
        self.patience = d;
    }

    /// The client's process id (to stop and continue it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client started with extra flags (e.g. `--dm-ttl 2`).
    pub fn start_with_args(server: &str, home: &Path, extra: &[&str]) -> Client {
        Client::spawn(server, home, extra, usize::MAX)
    }

    /// Starts a client and waits for `connected`.
    pub fn connect(server: &Server, home: &Path) -> Client {
        let mut c = Client::start(&server.addr, home);
        let v = c.next().expect("a first line");
        assert_eq!(v["type"], "connected", "{v}");
        assert_eq!(v["server"], server.addr.as_str());
        c
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next JSON line, or None at EOF / after WAIT. Every line must be one JSON object.
    pub fn next(&mut self) -> Option<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(v);
        }
        self.read_line()
    }

    fn read_line(&mut self) -> Option<Value> {
        let line = self.lines.recv_timeout(self.patience).ok()?;
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["type"].is_string(), "no type: {line}");
        self.seen.push(v.clone());
        Some(v)
    }

    /// The first line (backlog first) matching `pred`; other lines stay in the backlog.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let v = self.read_line().unwrap_or_else(|| panic!("no {what}; backlog: {:?}", self.backlog));
            if pred(&v) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    /// Sends `line` and waits for the answer to command `cmd`: an ok or error
    /// line naming it, or a line of type `cmd` (joined, rooms, who).
    pub fn run(&mut self, line: &str, cmd: &str) -> Value {
        self.send(line);
        let word = line.split_whitespace().next().unwrap_or_default().trim_start_matches('/').to_owned();
        self.wait_for(&format!("answer to {line}"), |v| {
            let named = v["cmd"] == cmd || v["cmd"] == word.as_str();
            named && (v["type"] == "ok" || v["type"] == "error") || v["type"] == cmd
        })
    }

    /// Takes every `room_message` of `room` in the backlog or arriving until `n` are collected.
    pub fn room_messages(&mut self, room: &str, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                self.wait_for(&format!("room message #{i} of {n}"), |v| {
                    v["type"] == "room_message" && v["room"] == room
                })
            })
            .collect()
    }

    /// Reads every line that arrives within `quiet` of the previous one into
    /// the backlog (and `seen`): lets late or duplicate events show up.
    pub fn settle(&mut self, quiet: Duration) {
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            self.seen.push(v.clone());
            self.backlog.push_back(v);
        }
    }

    /// Takes the lines read but not yet consumed by a `wait_for`.
    pub fn take_backlog(&mut self) -> Vec<Value> {
        self.backlog.drain(..).collect()
    }

    /// Sends `line` and returns the next output line.
    pub fn ask(&mut self, line: &str) -> Value {
        self.send(line);
        self.next().unwrap_or_else(|| panic!("no answer to {line}"))
    }

    pub fn register(&mut self, name: &str, password: &str, words: &str) -> Value {
        self.ask(&format!("/register {name} {password} {words}"))
    }

    pub fn login(&mut self, name: &str, password: &str, words: &str) -> Value {
        self.ask(&format!("/login {name} {password} {words}"))
    }

    /// Closes stdin and waits for the exit status.
    pub fn finish(mut self) -> ExitStatus {
        self.stdin = None;
        wait_child(&mut self.child)
    }
}

pub fn wait_child(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The password and passphrase every test account uses.
pub const PW: &str = "password123";
pub const WORDS: &str = "red green blue";

/// A connected batch client for `name` with its home under `dir`, started with `extra` flags.
pub fn client_for(server: &Server, dir: &TempDir, name: &str, extra: &[&str]) -> Client {
    let mut c = Client::start_with_args(&server.addr, &dir.join(name), extra);
    let v = c.next().expect("a first line");
    assert_eq!(v["type"], "connected", "{v}");
    c
}

/// A registered, logged-in client named `name`.
pub fn user(server: &Server, dir: &TempDir, name: &str, extra: &[&str]) -> Client {
    user_at(&server.addr, dir, name, extra)
}

/// A registered, logged-in client named `name`, given `servers` (one
/// address, or a comma-separated list of nodes).
pub fn user_at(servers: &str, dir: &TempDir, name: &str, extra: &[&str]) -> Client {
    let mut c = Client::start_with_args(servers, &dir.join(name), extra);
    let v = c.next().expect("a first line");
    assert_eq!(v["type"], "connected", "{v}");
    assert_eq!(c.register(name, PW, WORDS)["type"], "ok");
    assert_eq!(c.login(name, PW, WORDS)["type"], "authenticated");
    c
}

/// A new session for an existing account, in its old home.
pub fn relogin(server: &Server, dir: &TempDir, name: &str, extra: &[&str]) -> Client {
    relogin_at(&server.addr, dir, name, extra)
}

/// A new session for an existing account, in its old home, through `addr`
/// (a proxy in front of the server).
pub fn relogin_at(addr: &str, dir: &TempDir, name: &str, extra: &[&str]) -> Client {
    let mut c = Client::start_with_args(addr, &dir.join(name), extra);
    let v = c.next().expect("a first line");
    assert_eq!(v["type"], "connected", "{v}");
    let v = c.run(&format!("/login {name} {PW} {WORDS}"), "authenticated");
    assert_eq!(v["type"], "authenticated", "{v}");
    c
}

/// `a` asks `b`, `b` accepts: both see `dm_accepted` with the other's fingerprint.
pub fn contacts(a: &mut Client, a_name: &str, b: &mut Client, b_name: &str) {
    ok(&a.run(&format!("/dm @{b_name}"), "dm"), "dm");
    let v = b.wait_for("dm_request", |v| v["type"] == "dm_request");
    assert_eq!(v["from"], a_name);
    let v = b.run(&format!("/accept @{a_name}"), "dm_accepted");
    assert_eq!((v["type"].as_str(), v["with"].as_str()), (Some("dm_accepted"), Some(a_name)), "{v}");
    assert_eq!(v["fingerprint"].as_str().map(str::len), Some(64));
    let v = a.wait_for("dm_accepted", |v| v["type"] == "dm_accepted");
    assert_eq!(v["with"], b_name);
}

pub fn ok(v: &Value, cmd: &str) {
    assert_eq!((v["type"].as_str(), v["cmd"].as_str()), (Some("ok"), Some(cmd)), "{v}");
}

pub fn error(v: &Value, cmd: &str, code: u64) {
    assert_eq!(
        (v["type"].as_str(), v["cmd"].as_str(), v["code"].as_u64()),
        (Some("error"), Some(cmd), Some(code)),
        "{v}"
    );
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
