//! The peer IRC servers (ngircd, InspIRCd) from Debian's packages: installed when missing,
//! configured so that flood protection never throttles a benchmark, run in the foreground as
//! children of the benchmark. Invariant: a `Peer` that exists answers registrations on both its
//! ports, and its daemon dies and is reaped when the `Peer` is dropped.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::irc::{self, TlsTarget};

/// InspIRCd reads a client with edge-triggered epoll into a 10 KiB buffer (`netbuffersize`);
/// when a read fills it, the rest waits for its once-a-second timer. A client keeping less
/// than that in flight is read as fast as it sends.
const INSPIRCD_SEND_WINDOW: usize = 8 * 1024;

/// A peer server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Ngircd,
    Inspircd,
}

impl Kind {
    /// Both peers, in report order.
    pub const ALL: [Kind; 2] = [Kind::Ngircd, Kind::Inspircd];

    /// Short name, also the Debian package and the service name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ngircd => "ngircd",
            Kind::Inspircd => "inspircd",
        }
    }

    /// The daemon's path as the Debian package installs it.
    pub fn binary(self) -> &'static str {
        match self {
            Kind::Ngircd => "/usr/sbin/ngircd",
            Kind::Inspircd => "/usr/sbin/inspircd",
        }
    }

    /// How many connections may be opened but not yet registered at once
    /// ([`irc::connect_many`]). ngircd listens with a backlog of 10 (hard-coded) and accepts
    /// one connection per pass of its main loop, while `connect` returns before the server
    /// accepts: a client opening faster fills the queue and the kernel drops SYNs (1 s
    /// retransmissions, `listen_overflows`). InspIRCd listens with `somaxconn` (4096).
    pub fn connect_in_flight(self) -> usize {
        match self {
            Kind::Ngircd => 8,
            Kind::Inspircd => 1024,
        }
    }

    /// The send window a client of this server must keep to ([`irc::Irc::set_send_window`]).
    pub fn send_window(self) -> Option<usize> {
        match self {
            Kind::Ngircd => None,
            Kind::Inspircd => Some(INSPIRCD_SEND_WINDOW),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Installs the daemon's Debian package if its binary is missing (root only), without letting
/// the packaged service start.
pub fn ensure_installed(kind: Kind) -> Result<(), String> {
    ensure_package(kind.name(), kind.binary())
}

/// Installs Debian package `package` if `binary` is missing (root only), without letting a
/// packaged service start.
pub fn ensure_package(package: &str, binary: &str) -> Result<(), String> {
    if Path::new(binary).exists() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{binary} is missing and installing it needs root: apt-get install {package}"));
    }
    let _policy = NoServiceStart::new().map_err(|e| format!("policy-rc.d: {e}"))?;
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"])
            .arg(package)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let mut out = install().map_err(|e| format!("apt-get: {e}"))?;
    if !out.status.success() {
        // A fresh machine may not have package lists yet.
        let _ = Command::new("apt-get").args(["update", "-q"]).stdin(Stdio::null()).output();
        out = install().map_err(|e| format!("apt-get: {e}"))?;
    }
    if !out.status.success() {
        return Err(format!(
            "apt-get install {} failed ({}): {}",
            package,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if Path::new("/run/systemd/system").exists() {
        // Where systemd runs, policy-rc.d is not always asked: stop and disable explicitly.
        let _ = Command::new("systemctl").args(["disable", "--now", package]).stdin(Stdio::null()).output();
    }
    if Path::new(binary).exists() {
        Ok(())
    } else {
        Err(format!("{binary} still missing after apt-get install {package}"))
    }
}

/// A temporary `/usr/sbin/policy-rc.d` refusing every service start (invoke-rc.d(8)); an
/// existing one is left as it is and kept.
struct NoServiceStart(Option<PathBuf>);

impl NoServiceStart {
    fn new() -> io::Result<NoServiceStart> {
        let path = Path::new("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(NoServiceStart(None));
        }
        fs::write(path, "#!/bin/sh\n# sotto-bench: no service starts while it installs a peer.\nexit 101\n")?;
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(NoServiceStart(Some(path.to_owned())))
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// A certificate and its key, PEM files, for `localhost` and 127.0.0.1.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// `ecdsa-p256` or `rsa-2048`.
    pub label: &'static str,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// RFC 7919's ffdhe2048 group, for servers that want DH parameters (TLS 1.2 DHE only).
    pub dh: PathBuf,
}

/// The two certificates the benchmarks use.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ecdsa: CertPair,
    pub rsa: CertPair,
}

/// Self-signed end-entity certificates (not CAs, so that webpki accepts them as their own root).
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = localhost
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
";

/// Creates in `dir`, with the openssl CLI, an ECDSA P-256 and an RSA-2048 certificate and key.
pub fn make_certs(dir: &Path) -> io::Result<Certs> {
    fs::create_dir_all(dir)?;
    let cnf = dir.join("openssl.cnf");
    fs::write(&cnf, OPENSSL_CNF)?;
    let dh = dir.join("ffdhe2048.pem");
    openssl(&["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out"], &dh)?;
    let pair = |label: &'static str, newkey: &[&str]| -> io::Result<CertPair> {
        let cert = dir.join(format!("{label}.crt"));
        let key = dir.join(format!("{label}.key"));
        let mut args = vec!["req", "-x509", "-noenc", "-days", "3650", "-config"];
        args.push(path_str(&cnf)?);
        args.extend_from_slice(newkey);
        args.extend_from_slice(&["-keyout", path_str(&key)?, "-out"]);
        openssl(&args, &cert)?;
        Ok(CertPair { label, cert, key, dh: dh.clone() })
    };
    Ok(Certs {
        ecdsa: pair("ecdsa-p256", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])?,
        rsa: pair("rsa-2048", &["-newkey", "rsa:2048"])?,
    })
}

/// Runs `openssl args.. out`.
fn openssl(args: &[&str], out: &Path) -> io::Result<()> {
    let res = Command::new("openssl").args(args).arg(out).stdin(Stdio::null()).output()?;
    if res.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "openssl {} {}: {}: {}",
        args.join(" "),
        out.display(),
        res.status,
        String::from_utf8_lossy(&res.stderr).trim()
    )))
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str().ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, format!("not UTF-8: {}", p.display())))
}

/// How to run a peer.
#[derive(Debug, Clone)]
pub struct PeerOpts {
    /// Clients the configuration admits (the descriptor limit caps it too, see [`Peer::fd_limit`]).
    pub max_clients: u32,
    /// CPU the daemon is pinned to; `None` leaves it free.
    pub cpu: Option<usize>,
    /// How long [`Peer::start`] waits for both ports to answer a registration.
    pub ready_timeout: Duration,
}

impl Default for PeerOpts {
    fn default() -> PeerOpts {
        PeerOpts { max_clients: 20_000, cpu: None, ready_timeout: Duration::from_secs(15) }
    }
}

/// A running peer server.
pub struct Peer {
    kind: Kind,
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
    config: String,
    version: String,
    fd_limit: u64,
    logs: Vec<PathBuf>,
}

impl Peer {
    /// Writes a configuration into `workdir`, starts the daemon in the foreground with `cert`
    /// on its TLS port and returns once both ports answer a registration.
    pub fn start(kind: Kind, workdir: &Path, cert: &CertPair, opts: &PeerOpts) -> io::Result<Peer> {
        fs::create_dir_all(workdir)?;
        let (plain_port, tls_port) = free_ports()?;
        let root = nix::unistd::geteuid().is_root();
        let params = ConfigParams { plain_port, tls_port, cert, max_clients: opts.max_clients, workdir };
        let (config, mut args) = match kind {
            Kind::Ngircd => (ngircd_config(&params, root), vec!["--nodaemon", "--config"]),
            Kind::Inspircd => {
                let mut args = vec!["--nofork", "--nopid"];
                if root {
                    // InspIRCd refuses to run as root without it; ngircd switches to "nobody".
                    args.push("--runasroot");
                }
                args.push("--config");
                (inspircd_config(&params), args)
            }
        };
        let conf_path = workdir.join(format!("{kind}.conf"));
        fs::write(&conf_path, &config)?;
        args.push(path_str(&conf_path)?);

        let out_path = workdir.join(format!("{kind}.out"));
        let out = File::create(&out_path)?;
        let mut cmd = Command::new(kind.binary());
        cmd.args(&args).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).current_dir(workdir);
        let want = u64::from(opts.max_clients) + 1024;
        let cpu = opts.cpu;
        // SAFETY: only system calls (getrlimit, setrlimit, sched_setaffinity) between fork and
        // exec; nothing allocates or locks.
        unsafe {
            cmd.pre_exec(move || {
                raise_fd_limit(want);
                if let Some(cpu) = cpu {
                    let _ = pin_to(cpu);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", kind.binary())))?;
        let fd_limit = child_fd_limit(child.id()).unwrap_or(0);
        let mut logs = vec![out_path];
        if kind == Kind::Inspircd {
            logs.push(workdir.join("inspircd.log"));
        }
        let mut peer = Peer {
            kind,
            child,
            plain: SocketAddr::from((Ipv4Addr::LOCALHOST, plain_port)),
            tls: SocketAddr::from((Ipv4Addr::LOCALHOST, tls_port)),
            config,
            version: version(kind),
            fd_limit,
            logs,
        };
        peer.wait_ready(cert, opts.ready_timeout)?;
        Ok(peer)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The plain-text listener.
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain
    }

    /// The TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the daemon now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> io::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "no VmRSS in /proc/<pid>/status"))
    }

    /// CPU time (user + system) the daemon has used so far.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let bad = || io::Error::new(ErrorKind::InvalidData, "unexpected /proc/<pid>/stat");
        let rest = stat.rsplit_once(')').ok_or_else(bad)?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(bad);
        let total = ticks(11)? + ticks(12)?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_nanos(total.saturating_mul(1_000_000_000) / hz))
    }

    /// The exact configuration file the daemon runs with.
    pub fn config_text(&self) -> &str {
        &self.config
    }

    /// The daemon's version line and its Debian package version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The daemon's descriptor limit (RLIMIT_NOFILE), which caps its clients.
    pub fn fd_limit(&self) -> u64 {
        self.fd_limit
    }

    /// The last `lines` lines of the daemon's output and log, for diagnostics.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let text = fs::read_to_string(path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until both ports accept, then registers on both at once (InspIRCd registers
    /// clients once a second: one after the other would take two).
    fn wait_ready(&mut self, cert: &CertPair, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let target = TlsTarget::from_cert_file(&cert.cert)?;
        while TcpStream::connect(self.plain).is_err() || TcpStream::connect(self.tls).is_err() {
            if let Some(status) = self.child.try_wait()? {
                let log = self.log_tail(20);
                return Err(io::Error::other(format!("{} exited at start ({status})\n{log}", self.kind)));
            }
            if Instant::now() >= deadline {
                let log = self.log_tail(20);
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("{} not listening after {timeout:?}\n{log}", self.kind),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let (plain, tls) = (self.plain, self.tls);
        let (a, b) = thread::scope(|s| {
            let b = s.spawn(|| irc::connect(tls, Some(&target), "readytls"));
            let a = irc::connect(plain, None, "readyplain");
            (a, b.join().unwrap_or_else(|_| Err(io::Error::other("readiness probe panicked"))))
        });
        for (mut probe, addr) in [(a, plain), (b, tls)] {
            match probe {
                Ok(ref mut c) => c.quit(),
                Err(e) => {
                    let log = self.log_tail(20);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{} on {addr}: no registration: {e}\n{log}", self.kind),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's descriptor limit: to `want` if allowed to raise the hard limit
/// (root outside a container), else to the hard limit. Returns the soft limit in force.
/// Only system calls: safe between fork and exec.
pub fn raise_fd_limit(want: u64) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    if want > hard && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    }
}

/// Connections the kernel refused because a listen queue was full, since boot, all sockets
/// (TcpExt ListenOverflows in /proc/net/netstat): a difference over a run shows SYNs dropped.
pub fn listen_overflows() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/net/netstat")?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let bad = || io::Error::new(ErrorKind::InvalidData, "no TcpExt ListenOverflows in /proc/net/netstat");
    let (names, values) = (lines.next().ok_or_else(bad)?, lines.next().ok_or_else(bad)?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(bad)
}

/// Pins the calling process to one CPU.
fn pin_to(cpu: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// The soft "Max open files" of a running process.
fn child_fd_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Two distinct free loopback ports (free when asked; the daemon binds them a moment later).
fn free_ports() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// `<binary> --version`'s first line and the Debian package version.
fn version(kind: Kind) -> String {
    let daemon = Command::new(kind.binary())
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    format!("{daemon} (Debian package {} {})", kind.name(), package_version(kind.name()))
}

/// Both peers use GnuTLS (ngircd linked to it, InspIRCd through its ssl_gnutls module).
pub fn tls_library() -> String {
    format!("GnuTLS (Debian package libgnutls30 {})", package_version("libgnutls30"))
}

fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What a configuration depends on.
struct ConfigParams<'a> {
    plain_port: u16,
    tls_port: u16,
    cert: &'a CertPair,
    max_clients: u32,
    workdir: &'a Path,
}

/// ngircd.conf(5), ngircd 26.
fn ngircd_config(p: &ConfigParams<'_>, root: bool) -> String {
    let uid_note = if root {
        "\t# Started as root, ngircd switches to \"nobody\" itself (ServerUID unset),\n\
         \t# after reading the key.\n"
    } else {
        ""
    };
    format!(
        "# ngircd.conf for sotto-bench: flood protection off, no lookups, plain and TLS on loopback.
[Global]
\tName = bench.ngircd
\tInfo = sotto-bench peer
\tAdminInfo1 = sotto-bench
\tAdminEMail = root@localhost
\tListen = 127.0.0.1
\tPorts = {plain}
\tMotdPhrase = sotto-bench
{uid_note}
[Limits]
\t# 0: no limit on connections, in total and per address, nor on channels per user.
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 30
\t# 0: penalty times (command throttling) off altogether.
\tMaxPenaltyTime = 0

[Options]
\tDNS = no
\tIdent = no
\tPAM = no

[SSL]
\tCertFile = {cert}
\tKeyFile = {key}
\t# Only used by TLS 1.2 DHE suites; given so that ngircd does not generate parameters.
\tDHFile = {dh}
\t# GnuTLS priorities, TLS 1.3 with AES-128-GCM among them (the client offers nothing else).
\tCipherList = SECURE128:-VERS-SSL3.0
\tPorts = {tls}
",
        plain = p.plain_port,
        tls = p.tls_port,
        cert = p.cert.cert.display(),
        key = p.cert.key.display(),
        dh = p.cert.dh.display(),
    )
}

/// inspircd.conf, InspIRCd 3.
fn inspircd_config(p: &ConfigParams<'_>) -> String {
    format!(
        r#"# inspircd.conf for sotto-bench: flood protection off, no lookups, plain and TLS on loopback.
<server name="bench.inspircd" description="sotto-bench peer" network="bench">
<admin name="sotto-bench" nick="bench" email="root@localhost">
<bind address="127.0.0.1" port="{plain}" type="clients">
<bind address="127.0.0.1" port="{tls}" type="clients" sslprofile="bench">

# No CertificateRequest in the handshake; full 16 KiB records (default 2048);
# GnuTLS priorities with TLS 1.3 and AES-128-GCM (the client offers nothing else).
<module name="ssl_gnutls">
<sslprofile name="bench" provider="gnutls"
            certfile="{cert}"
            keyfile="{key}"
            dhfile="{dh}"
            priority="SECURE128:-VERS-SSL3.0"
            requestclientcert="no" outrecsize="16384">

# One class for every client. commandrate is in thousandths of a command per second
# (1,000,000 commands/s); threshold: a burst of 1,000,000 commands before any penalty;
# fakelag="no": never delayed. No DNS or ident lookups.
<connect name="bench" allow="*"
         commandrate="1000000000" threshold="1000000" fakelag="no"
         recvq="1M" softsendq="1M" hardsendq="16M"
         localmax="{max}" globalmax="{max}" limit="{max}" maxchans="100"
         resolvehostnames="no" useident="no" timeout="60">

<performance softlimit="{max}" somaxconn="4096" clonesonconnect="no">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="sparse" target="{log}">
"#,
        plain = p.plain_port,
        tls = p.tls_port,
        cert = p.cert.cert.display(),
        key = p.cert.key.display(),
        dh = p.cert.dh.display(),
        max = p.max_clients,
        log = p.workdir.join("inspircd.log").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(cert: &'a CertPair, dir: &'a Path) -> ConfigParams<'a> {
        ConfigParams { plain_port: 16667, tls_port: 16697, cert, max_clients: 20_000, workdir: dir }
    }

    fn pair() -> CertPair {
        CertPair { label: "ecdsa-p256", cert: "/c/e.crt".into(), key: "/c/e.key".into(), dh: "/c/dh.pem".into() }
    }

    #[test]
    fn ngircd_config_turns_flood_protection_off() {
        let cert = pair();
        let text = ngircd_config(&params(&cert, Path::new("/w")), true);
        for want in [
            "MaxPenaltyTime = 0",
            "MaxConnectionsIP = 0",
            "MaxConnections = 0",
            "DNS = no",
            "Ident = no",
            "PAM = no",
            "Ports = 16667",
            "Ports = 16697",
            "CertFile = /c/e.crt",
            "KeyFile = /c/e.key",
            "Listen = 127.0.0.1",
        ] {
            assert!(text.lines().any(|l| l.trim() == want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains('{'));
    }

    #[test]
    fn inspircd_config_turns_flood_protection_off() {
        let cert = pair();
        let text = inspircd_config(&params(&cert, Path::new("/w")));
        for want in [
            r#"fakelag="no""#,
            r#"commandrate="1000000000""#,
            r#"localmax="20000""#,
            r#"globalmax="20000""#,
            r#"softlimit="20000""#,
            r#"resolvehostnames="no""#,
            r#"useident="no""#,
            r#"port="16667""#,
            r#"port="16697" type="clients" sslprofile="bench""#,
            r#"certfile="/c/e.crt""#,
            r#"target="/w/inspircd.log""#,
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains('{'));
    }

    #[test]
    fn only_inspircd_needs_a_send_window() {
        assert_eq!(Kind::Ngircd.send_window(), None);
        assert!(Kind::Inspircd.send_window().is_some_and(|w| w + 512 + 64 < 10240));
    }
}
