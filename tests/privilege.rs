//! Privilege drop through the real binary: started as root, sottod serves
//! from a chroot of its data directory as an unprivileged user, with no way
//! back to root. (CI runs as root; as another user these tests say so and
//! check the refusals that do not need root.)

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{server_exit, user, Server, TempDir};

fn status_line(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
    line[key.len()..].split_whitespace().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn root_server_runs_chrooted_as_nobody_and_cannot_regain_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the privilege drop is exercised only when the tests run as root (as CI does)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user");
    let dir = TempDir::new("priv");
    let data = dir.join("data");
    let server = Server::start(&data);
    let pid = server.pid();
    let uid = nobody.uid.as_raw();
    let gid = nobody.gid.as_raw();
    assert_eq!(status_line(pid, "Uid:"), [uid; 4], "real, effective, saved and fs uid");
    assert_eq!(status_line(pid, "Gid:"), [gid; 4], "real, effective, saved and fs gid");
    assert!(status_line(pid, "Groups:").is_empty(), "no supplementary groups");
    // No capability left to change ids with.
    let caps = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = caps.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(eff.split_whitespace().nth(1).is_some_and(|h| u64::from_str_radix(h, 16) == Ok(0)), "{eff}");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(root, std::fs::canonicalize(&data).unwrap(), "chrooted into the data directory");
    // It still works from inside the chroot, and its files belong to nobody.
    let mut alice = user(&server, &dir, "alice", &[]);
    assert_eq!(alice.run("/rooms", "rooms")["type"], "rooms");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(data.join("users")).unwrap());
    assert_eq!(owner, uid);
}

#[test]
fn refuses_a_root_or_unknown_service_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: --user is only used when started as root");
        return;
    }
    let dir = TempDir::new("privuser");
    let data = dir.join("data");
    let key = common::build_key();
    for (name, why) in [("root", "does not serve as root"), ("no-such-user-here", "no such user")] {
        let (status, err) = server_exit(&data, &key, &["--user", name]);
        assert!(!status.success() && err.contains(why), "{name}: {err}");
    }
}

#[test]
fn the_default_service_user_is_sotto_and_its_absence_says_how_to_create_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: --user is only used when started as root");
        return;
    }
    if nix::unistd::User::from_name("sotto").ok().flatten().is_some() {
        eprintln!("this machine has a `sotto` account: the missing-account message cannot be shown");
        return;
    }
    let dir = TempDir::new("privdefault");
    let (status, err) = server_exit(&dir.join("data"), &common::build_key(), &[]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("no such user `sotto`"), "{err}");
    assert!(err.contains("useradd --system --home-dir /var/lib/sotto --shell /usr/sbin/nologin sotto"), "{err}");
}

/// Starts sottod as root on `data` (service user nobody), waits until it
/// serves or fails, and stops it.
fn start_and_stop(data: &std::path::Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sottod"))
        .args(["--listen", "127.0.0.1:0", "--user", "nobody", "--data"])
        .arg(data)
        .arg("--key")
        .arg(common::build_key())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first line comes after the privilege drop; EOF if the start failed.
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_link_swapped_in_during_start_up_never_gives_a_root_file_away() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the privilege drop is exercised only when the tests run as root (as CI does)");
        return;
    }
    let dir = TempDir::new("privrace");
    let data = dir.join("data");
    // Root's directory outside the data directory, with files whose names
    // the attacker knows (as it knows /etc/shadow's).
    let victim = dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    for name in &names {
        std::fs::write(victim.join(name), b"root's").unwrap();
    }
    drop(Server::start(&data));
    // The service user owns the data directory now and may put anything in
    // it: a subdirectory holding files of those names, which it keeps
    // swapping (atomically, RENAME_EXCHANGE) with a link to root's directory.
    let junk = data.join("junk");
    std::fs::create_dir(&junk).unwrap();
    for name in &names {
        std::fs::write(junk.join(name), b"x").unwrap();
    }
    let link = data.join("junk.link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = swap_until_stopped(&junk, &link, stop.clone());
    let given_away = || {
        let mut owners: Vec<u32> = names.iter().map(|n| std::fs::metadata(victim.join(n)).unwrap().uid()).collect();
        owners.push(std::fs::metadata(&victim).unwrap().uid());
        owners.into_iter().filter(|uid| *uid != 0).count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut starts = 0;
    while starts < 100 && std::time::Instant::now() < deadline {
        start_and_stop(&data);
        starts += 1;
        let n = given_away();
        if n > 0 {
            stop.store(true, Ordering::Relaxed);
            let _ = swapper.join();
            panic!("after {starts} starts, {n} of root's files were given to the service user");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 1000, "the swapper ran ({swaps} swaps over {starts} starts)");
}

#[test]
fn a_queue_directory_swapped_for_a_link_during_start_up_never_lets_root_cut_a_file() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the privilege drop is exercised only when the tests run as root (as CI does)");
        return;
    }
    let dir = TempDir::new("privqueue");
    let data = dir.join("data");
    // Root's private files (0600) outside the data directory, under names a
    // mailbox file could have (as the attacker knows /etc/shadow's name).
    let victim = dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    let names: Vec<String> = (1..=20u64).map(|uid| format!("{uid:016x}.q")).collect();
    for name in &names {
        std::fs::write(victim.join(name), b"root's own file, not a mailbox").unwrap();
        std::fs::set_permissions(victim.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    drop(Server::start(&data));
    // The service user owns the data directory: it puts torn mailbox files of
    // those names in its queues directory (a start cuts them back) and keeps
    // swapping that directory with a link to root's directory.
    let queues = data.join("queues");
    // SAFETY: a valid C path; the descriptor is checked, then owned.
    let real = unsafe { libc::open(cstr(&queues).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(real >= 0);
    // SAFETY: just opened, owned by nobody else.
    let real = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(real) };
    let tear = || {
        for name in &names {
            let c = std::ffi::CString::new(name.as_str()).unwrap();
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            // SAFETY: a directory descriptor and a valid C name; the result is checked and closed.
            let fd = unsafe { libc::openat(std::os::fd::AsRawFd::as_raw_fd(&real), c.as_ptr(), flags, 0o600) };
            assert!(fd >= 0, "{name}");
            // SAFETY: fd is open; one byte is written from a valid buffer.
            unsafe {
                libc::write(fd, b"x".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    };
    let link = data.join("queues.link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = swap_until_stopped(&queues, &link, stop.clone());
    let cut = || names.iter().filter(|n| std::fs::metadata(victim.join(n)).unwrap().len() != 30).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut starts = 0;
    while starts < 300 && std::time::Instant::now() < deadline {
        tear();
        start_and_stop(&data);
        starts += 1;
        let n = cut();
        if n > 0 {
            stop.store(true, Ordering::Relaxed);
            let _ = swapper.join();
            panic!("after {starts} starts, root cut {n} of its own files outside the data directory");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 1000, "the swapper ran ({swaps} swaps over {starts} starts)");
}

/// A thread that swaps `a` and `b` (RENAME_EXCHANGE, atomically) until
/// `stop`; it returns how many swaps succeeded.
fn swap_until_stopped(a: &std::path::Path, b: &std::path::Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let (a, b) = (cstr(a), cstr(b));
    std::thread::spawn(move || {
        let mut swaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: two valid C paths; renameat2 touches nothing else.
            let rc = unsafe {
                libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE)
            };
            swaps += u64::from(rc == 0);
        }
        swaps
    })
}

fn cstr(p: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())).unwrap()
}
