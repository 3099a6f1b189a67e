//! Installing and configuring sottod as an operator would (issue 12): `make
//! install` lays out the binaries, the manual pages made from `--help`, the
//! systemd unit and the docs under DESTDIR; an installed sottod takes its
//! defaults from /etc/sotto and /var/lib/sotto and reads a TOML
//! configuration whose keys mirror the options; log lines carry RFC 3339
//! times, or none under systemd.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;

fn sottod() -> &'static str {
    env!("CARGO_BIN_EXE_sottod")
}

/// `sottod ARGS --check`: the settings in effect, by option.
fn check(bin: &Path, args: &[&str]) -> Result<Vec<(String, String)>, String> {
    let out = Command::new(bin).args(args).arg("--check").output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap())
        .collect())
}

fn get(settings: &[(String, String)], key: &str) -> String {
    settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn make_install_lays_out_binaries_man_pages_unit_and_docs() {
    let dir = TempDir::new("install");
    let dest = dir.join("dest");
    let built = Path::new(sottod()).parent().unwrap();
    let status = Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-s", "install", "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("BUILT={}", built.display()))
        .status()
        .expect("make");
    assert!(status.success(), "make install failed");
    let usr = dest.join("usr");
    for bin in ["sottod", "sotto", "sottoctl", "sotto-keygen"] {
        let path = usr.join("bin").join(bin);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755, "{bin}");
    }
    let help = String::from_utf8(Command::new(usr.join("bin/sottod")).arg("--help").output().unwrap().stdout).unwrap();
    let man = std::fs::read_to_string(usr.join("share/man/man8/sottod.8")).unwrap();
    assert!(man.starts_with(".TH SOTTOD 8 "), "{man}");
    for line in help.lines().filter(|l| !l.trim().is_empty() && !l.contains('\\')) {
        assert!(man.contains(line), "the man page holds every line of --help: {line:?}");
    }
    let ctl = std::fs::read_to_string(usr.join("share/man/man8/sottoctl.8")).unwrap();
    assert!(ctl.starts_with(".TH SOTTOCTL 8 ") && ctl.contains("admin.sock"), "{ctl}");
    let man1 = std::fs::read_to_string(usr.join("share/man/man1/sotto.1")).unwrap();
    assert!(man1.starts_with(".TH SOTTO 1 ") && man1.contains("--server HOST:PORT"), "{man1}");
    let unit = std::fs::read_to_string(usr.join("lib/systemd/system/sottod.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/sottod ") && unit.contains("User=sotto"), "{unit}");
    for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet=\n"] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    assert!(usr.join("share/doc/sotto/OPERATIONS.md").is_file());
    let example = usr.join("share/doc/sotto/sottod.toml.example");
    // The example configuration is one sottod accepts.
    let settings = check(&usr.join("bin/sottod"), &["--config", example.to_str().unwrap()]).unwrap();
    assert_eq!(get(&settings, "listen"), "0.0.0.0:7777");

    // systemd's own check of the unit, where systemd is on the machine.
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(_) => {
            let copy = dir.join("sottod.service");
            let exe = usr.join("bin/sottod");
            std::fs::write(&copy, unit.replace("/usr/bin/sottod", exe.to_str().unwrap())).unwrap();
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&copy)
                .env("MANPATH", usr.join("share/man"))
                .output()
                .unwrap();
            assert!(out.status.success(), "systemd-analyze verify: {}", String::from_utf8_lossy(&out.stderr));
        }
        Err(_) => eprintln!("NOTE: systemd-analyze is not on this machine; the unit was checked by content only"),
    }
}

#[test]
fn an_installed_sottod_defaults_to_etc_and_var_lib_and_a_build_tree_one_to_the_checkout() {
    let settings = check(Path::new(sottod()), &[]).unwrap();
    assert_eq!(get(&settings, "data"), "data", "in the build tree");
    assert_eq!(get(&settings, "user"), "sotto");
    // The same binary outside a cargo target directory is "installed".
    let dir = TempDir::new("installed");
    let copy: PathBuf = dir.join("sottod");
    std::fs::copy(sottod(), &copy).unwrap();
    let settings = check(&copy, &[]).unwrap();
    assert_eq!(get(&settings, "data"), "/var/lib/sotto");
    // (A build with keys/ defaults the key to /etc/sotto/server_rsa.pem; this
    // test build has throwaway development keys, whose path wins.)
    assert_eq!(get(&settings, "key"), sotto::build_info::BUILD_KEY_PATH);
}

#[test]
fn a_configuration_file_mirrors_the_options_and_the_command_line_wins() {
    let dir = TempDir::new("config");
    let conf = dir.join("sottod.toml");
    std::fs::write(&conf, "listen = \"127.0.0.1:9999\"\nworkers = 3\nrate = \"off\"\nlog-level = \"debug\"\n").unwrap();
    let c = conf.to_str().unwrap();
    let s = check(Path::new(sottod()), &["--config", c]).unwrap();
    assert_eq!(
        (get(&s, "listen"), get(&s, "workers"), get(&s, "rate"), get(&s, "log-level")),
        ("127.0.0.1:9999".into(), "3".into(), "off".into(), "debug".into())
    );
    let s = check(Path::new(sottod()), &["--workers", "5", "--config", c]).unwrap();
    assert_eq!(get(&s, "workers"), "5", "the command line wins");
    // A flag is set by `true`, and left unset by `false`.
    for (text, set) in [("no-resume = true\nticket-ttl = 3600\n", "true"), ("no-resume = false\n", "false")] {
        std::fs::write(&conf, text).unwrap();
        let s = check(Path::new(sottod()), &["--config", c]).unwrap();
        assert_eq!(get(&s, "no-resume"), set, "{text:?}");
    }
    assert_eq!(get(&check(Path::new(sottod()), &["--config", c]).unwrap(), "ticket-ttl"), "604800");
    for (bad, says) in [
        ("listn = \"x\"\n", "unknown option --listn"),
        ("workers = true\n", "a string or a whole number"),
        ("no-resume = \"yes\"\n", "a flag takes true or false"),
        ("ticket-ttl = 59\n", "--ticket-ttl: between 60 and 7776000"),
        ("check = 1\n", "not an option a configuration file can set"),
        ("workers = \n", "sottod.toml"),
    ] {
        std::fs::write(&conf, bad).unwrap();
        let err = check(Path::new(sottod()), &["--config", c]).unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    let err = check(Path::new(sottod()), &["--config", dir.join("missing.toml").to_str().unwrap()]).unwrap_err();
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn log_lines_carry_rfc3339_times_or_none_under_systemd() {
    let dir = TempDir::new("logtime");
    for journal in [false, true] {
        let mut cmd = Command::new(sottod());
        cmd.args(["--listen", "127.0.0.1:0", "--rate", "off", "--data"]).arg(dir.join("data")).arg("--key");
        cmd.arg(common::build_key()).args(["--workers", "1", "--user", "nobody"]);
        if journal {
            cmd.env("JOURNAL_STREAM", "8:1234");
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
        assert!(first.starts_with("listening "), "{first}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a SIGTERM just after `listening` is a clean stop: {:?}", out.status);
        let log = String::from_utf8(out.stderr).unwrap();
        // Every line (the start-up lines come before `listening`).
        let levels = ["ERROR ", "WARN ", "INFO ", "DEBUG "];
        assert!(log.lines().count() > 0, "no log at all");
        for line in log.lines() {
            if journal {
                assert!(levels.iter().any(|l| line.starts_with(l)), "{line}");
            } else {
                // 2026-12-04T16:05:02.123Z INFO ...
                let (time, rest) = line.split_once(' ').unwrap();
                let b = time.as_bytes();
                let ok = time.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && time.ends_with('Z');
                assert!(ok && levels.iter().any(|l| rest.starts_with(l)), "{line}");
            }
        }
    }
}

#[test]
fn threads_defaults_to_the_cores_up_to_sixteen_and_refuses_nonsense() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let s = check(Path::new(sottod()), &[]).unwrap();
    assert_eq!(get(&s, "threads"), cores.to_string());
    let s = check(Path::new(sottod()), &["--threads", "3"]).unwrap();
    assert_eq!(get(&s, "threads"), "3");
    for bad in ["0", "65", "two"] {
        let err = check(Path::new(sottod()), &["--threads", bad]).unwrap_err();
        assert!(err.contains("--threads"), "{bad}: {err}");
    }
}
