//! W8's baseline: scp through an sshd of the bench's own on loopback, with a
//! temporary host key, client key and configuration, stopped when dropped
//! (and killed by the kernel if the bench dies first).

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's sshd (package openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";

/// sshd's configuration for the bench: loopback only, one port, keys from
/// `dir`, public-key login only, no PAM, no mode checks on the temporary files.
pub fn sshd_config(port: u16, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "# sotto-bench W8: a temporary sshd for the scp baseline.\n\
         ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {d}/host_key\n\
         PidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         Subsystem sftp internal-sftp\n\
         LogLevel ERROR\n"
    )
}

/// The cipher of `ssh -v`'s key exchange (server to client), e.g.
/// `chacha20-poly1305@openssh.com`.
pub fn negotiated_cipher(ssh_verbose: &str) -> Option<String> {
    ssh_verbose.lines().find_map(|l| {
        let rest = l.split("kex: server->client cipher: ").nth(1)?;
        rest.split_whitespace().next().map(str::to_owned)
    })
}

/// MB/s (10^6 bytes per second) of `bytes` in `d`.
pub fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// A running sshd on 127.0.0.1.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    user: String,
    /// "installed now" or "already installed", and the version, for the report.
    pub version: String,
    /// The cipher OpenSSH negotiated by default.
    pub cipher: String,
}

fn run(cmd: &mut Command) -> Result<std::process::Output, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{cmd:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Sshd {
    /// Installs openssh-server when sshd is missing (root only, no service
    /// started), then starts sshd -D on a free loopback port with keys made in
    /// `dir`, on `cpu`. The error says what failed.
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<Sshd, String> {
        let installed_now = !Path::new(SSHD).exists();
        crate::peers::ensure_package("openssh-server", SSHD)?;
        if installed_now && Path::new("/run/systemd/system").exists() {
            // The packaged service must not run next to the bench (policy-rc.d is not always asked).
            let _ = Command::new("systemctl").args(["disable", "--now", "ssh.service", "ssh.socket"]).output();
        }
        if nix::unistd::geteuid().is_root() {
            // sshd's privilege separation directory, made at boot where the service runs.
            let _ = fs::create_dir_all("/run/sshd");
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for name in ["host_key", "client_key"] {
            let path = dir.join(name);
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(path.with_extension("pub"));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "sotto-bench", "-f"])
                .arg(&path))?;
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .map_err(|e| format!("authorized_keys: {e}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let config = dir.join("sshd_config");
        fs::write(&config, sshd_config(port, dir)).map_err(|e| format!("sshd_config: {e}"))?;
        let log = fs::File::create(dir.join("sshd.log")).map_err(|e| format!("sshd.log: {e}"))?;
        let mut cmd = Command::new(SSHD);
        cmd.args(["-D", "-e", "-f"]).arg(&config).stdout(Stdio::null()).stderr(log);
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; no allocation in the child.
            unsafe {
                cmd.pre_exec(|| {
                    // sshd goes when the bench goes, whatever ends it.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = crate::sys::spawn_pinned(&mut cmd, cpu).map_err(|e| format!("{SSHD}: {e}"))?;
        let user = run(Command::new("id").arg("-un"))
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| "root".into());
        let version = format!(
            "{} ({})",
            crate::sys::version_of("ssh", &["-V"]),
            if installed_now { "openssh-server installed by this run" } else { "openssh-server already installed" }
        );
        let mut sshd = Sshd { child, port, dir: dir.to_owned(), user, version, cipher: String::new() };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let up = crate::sys::wait_until(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !up || sshd.child.try_wait().ok().flatten().is_some() {
            let mut log = String::new();
            let _ = fs::File::open(dir.join("sshd.log")).and_then(|mut f| f.read_to_string(&mut log));
            return Err(format!("sshd did not start on 127.0.0.1:{port}: {}", log.trim()));
        }
        // Listening is not logging in: one ssh -v both checks the key and tells the cipher.
        sshd.cipher = sshd.cipher()?;
        Ok(sshd)
    }

    fn ssh_opts(&self, cmd: &mut Command, port_flag: &str) {
        cmd.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .arg("-i")
            .arg(self.dir.join("client_key"))
            .args([port_flag, &self.port.to_string()]);
    }

    /// `user@127.0.0.1:path`.
    pub fn remote(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.user, path.display())
    }

    /// The cipher OpenSSH negotiates by default (a login with `ssh -v`).
    pub fn cipher(&self) -> Result<String, String> {
        let mut cmd = Command::new("ssh");
        cmd.arg("-v");
        self.ssh_opts(&mut cmd, "-p");
        let out = cmd.arg(format!("{}@127.0.0.1", self.user)).arg("true").stdin(Stdio::null()).output();
        let out = out.map_err(|e| format!("ssh: {e}"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            return Err(format!("ssh to the bench sshd failed ({}): {}", out.status, tail.join(" / ")));
        }
        Ok(negotiated_cipher(&text).unwrap_or_else(|| "unknown".into()))
    }

    /// One scp (OpenSSH's defaults, as the current user): how long it took.
    pub fn scp(&self, from: &str, to: &str) -> Result<Duration, String> {
        let mut cmd = Command::new("scp");
        cmd.args(["-q", "-o", "LogLevel=ERROR"]);
        self.ssh_opts(&mut cmd, "-P");
        cmd.args([from, to]);
        let t = Instant::now();
        run(&mut cmd)?;
        Ok(t.elapsed())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// scp up (local → 127.0.0.1) and down of `src` (`bytes` long), `reps`
/// times each: (MB/s up, MB/s down, cipher, sshd version).
pub struct ScpFigures {
    pub up: Vec<f64>,
    pub down: Vec<f64>,
    pub cipher: String,
    pub version: String,
    /// sshd's configuration, for the report.
    pub config: String,
}

/// Runs the baseline in `dir` (next to sottod's data directory, the same disk).
pub fn measure(dir: &Path, src: &Path, bytes: usize, reps: usize, cpu: Option<usize>) -> Result<ScpFigures, String> {
    let sshd = Sshd::start(&dir.join("sshd"), cpu)?;
    let (up_path, down_path) = (dir.join("scp-up"), dir.join("scp-down"));
    let check = |p: &Path| match fs::metadata(p) {
        Ok(m) if m.len() == bytes as u64 => Ok(()),
        Ok(m) => Err(format!("{}: {} bytes, not {bytes}", p.display(), m.len())),
        Err(e) => Err(format!("{}: {e}", p.display())),
    };
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let _ = fs::remove_file(&up_path);
        let d = sshd.scp(&src.display().to_string(), &sshd.remote(&up_path))?;
        check(&up_path)?;
        up.push(mb_per_s(bytes, d));
        let _ = fs::remove_file(&up_path);
        let _ = fs::remove_file(&down_path);
        let d = sshd.scp(&sshd.remote(src), &down_path.display().to_string())?;
        check(&down_path)?;
        down.push(mb_per_s(bytes, d));
        let _ = fs::remove_file(&down_path);
    }
    let config = sshd_config(sshd.port, Path::new("<dir>"));
    Ok(ScpFigures { up, down, cipher: sshd.cipher.clone(), version: sshd.version.clone(), config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_loopback_key_only_in_the_temp_dir() {
        let c = sshd_config(2222, Path::new("/tmp/x"));
        for line in [
            "ListenAddress 127.0.0.1",
            "Port 2222",
            "HostKey /tmp/x/host_key",
            "PidFile /tmp/x/sshd.pid",
            "AuthorizedKeysFile /tmp/x/authorized_keys",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "Subsystem sftp internal-sftp",
        ] {
            assert!(c.lines().any(|l| l == line), "{line} missing from\n{c}");
        }
    }

    #[test]
    fn finds_the_cipher_in_ssh_verbose_output() {
        let v = "debug1: kex: algorithm: sntrup761x25519-sha512@openssh.com\n\
                 debug1: kex: host key algorithm: ssh-ed25519\n\
                 debug1: kex: server->client cipher: chacha20-poly1305@openssh.com MAC: <implicit> compression: none\n\
                 debug1: kex: client->server cipher: chacha20-poly1305@openssh.com MAC: <implicit> compression: none\n";
        assert_eq!(negotiated_cipher(v).as_deref(), Some("chacha20-poly1305@openssh.com"));
        assert_eq!(negotiated_cipher("debug1: nothing\n"), None);
    }

    #[test]
    fn megabytes_per_second() {
        assert_eq!(mb_per_s(256 << 20, Duration::from_secs(2)), 134.217728);
    }
}
