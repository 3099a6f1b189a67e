//! Privilege drop through the real binary: started as root, sottod serves
//! from a chroot of its data directory as an unprivileged user, with no way
//! back to root. (CI runs as root; as another user these tests say so and
//! check the refusals that do not need root.)

mod common;

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
