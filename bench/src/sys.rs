//! Processes and the machine: CPU pinning, resident memory, CPU time, limits.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pins the calling process (and the threads it starts later) to `cpu`.
pub fn pin_self(cpu: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).is_ok() && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// Lowers the calling thread to nice +10, so that a latency probe on the
/// same core runs before it (the load threads of W1 are hundreds).
pub fn nice_thread() {
    // SAFETY: gettid and setpriority have no memory-safety preconditions.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The calling thread's nice value.
pub fn thread_nice() -> i32 {
    // SAFETY: gettid and getpriority have no memory-safety preconditions.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

/// Sets the calling thread's nice value (lowering it back needs root, as `make bench` runs).
pub fn set_thread_nice(nice: i32) {
    // SAFETY: gettid and setpriority have no memory-safety preconditions.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// Number of online CPUs (not only those this process may use).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Raises this process's descriptor limit to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(s, _)| s)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU time of each thread of `pid`, by thread name (for SOTTO_BENCH_DEBUG).
pub fn thread_cpu(pid: u32) -> Vec<(String, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out: Vec<(String, Duration)> = Vec::new();
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat.get(open + 1..close).unwrap_or("").to_owned();
        let f: Vec<&str> = stat.get(close + 2..).unwrap_or("").split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.push((name, Duration::from_millis(ticks * 10)));
    }
    out.sort();
    out
}

/// Time each thread of `pid` ran and waited on a run queue, by thread name,
/// from `/proc/<pid>/task/*/schedstat` (for SOTTO_BENCH_DEBUG): a thread
/// that waits long was ready but had no core.
pub fn thread_sched(pid: u32) -> Vec<(String, Duration, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        let Ok(sched) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let f: Vec<u64> = sched.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if let [run, wait, ..] = f[..] {
            out.push((comm.trim().to_owned(), Duration::from_nanos(run), Duration::from_nanos(wait)));
        }
    }
    out.sort();
    out
}

/// Prints (stderr) each thread of `pid` that ran or waited since `before`
/// ([`thread_sched`]): how long it ran and waited on a run queue.
pub fn print_sched_since(pid: u32, before: &[(String, Duration, Duration)]) {
    let mut seen = std::collections::HashMap::new();
    for (name, run, wait) in thread_sched(pid) {
        // Threads of one name (the disk thread's pool) in order: matched by name and rank.
        let rank = seen.entry(name.clone()).or_insert(0usize);
        let was = before.iter().filter(|(n, ..)| *n == name).nth(*rank);
        *rank += 1;
        let (r0, w0) = was.map_or((Duration::ZERO, Duration::ZERO), |(_, r, w)| (*r, *w));
        let (ran, waited) = (run.saturating_sub(r0), wait.saturating_sub(w0));
        if !ran.is_zero() || !waited.is_zero() {
            eprintln!("  {name}: ran {ran:?}, waited {waited:?}");
        }
    }
}

/// CPU time (user + system) of `pid`.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else { return Duration::ZERO };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A command's first line of output, or "not found".
pub fn version_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not found".into())
}

/// "model name" of the first CPU, and the kernel release.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(String::new(), |k| format!(", {} GiB RAM", k / 1024 / 1024));
    let kernel = version_of("uname", &["-r"]);
    format!("{} × {model}{mem}, Linux {kernel}", cpus())
}

/// The directory of this executable (where `make bench` put sottod too).
pub fn bin_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_else(|| ".".into())
}

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> io::Result<TempDir> {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// A private temporary directory in `parent`.
    pub fn new_in(parent: &Path, tag: &str) -> io::Result<TempDir> {
        use std::os::unix::fs::PermissionsExt;
        let p = parent.join(format!("sotto-bench-{tag}-{}", sotto::crypto::hex(&sotto::crypto::random::<4>())));
        std::fs::create_dir_all(&p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `cmd` pinned to `cpu` with the descriptor limit raised, stdout piped.
pub fn spawn_pinned(cmd: &mut Command, cpu: Option<usize>) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (sched_setaffinity, getrlimit, setrlimit) in the child.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(cpu) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
    cmd.stdin(Stdio::null()).spawn()
}

/// Waits until `f` is true or `within` passed.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
