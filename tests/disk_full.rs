//! A full disk through the real binaries: the data directory on a small
//! tmpfs; once it is full nothing is acknowledged (507), the server keeps
//! serving, and it recovers when space returns.

mod common;

use std::io::Write;

use common::{error, ok, user, Server, TempDir};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &TempDir, size: &str) -> Option<Tmpfs> {
        let at = dir.join("fs");
        std::fs::create_dir(&at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&at)
            .status()
            .ok()?;
        status.success().then_some(Tmpfs(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` until a write fails.
fn fill(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn full_disk_is_answered_507_and_the_server_recovers() {
    let dir = TempDir::new("diskfull");
    let Some(fs) = Tmpfs::mount(&dir, "4m") else {
        eprintln!("cannot mount a tmpfs here (not root?): the disk-full test needs one");
        return;
    };
    let data = fs.0.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    ok(&alice.run("/create full room-password", "create"), "create");
    bob.run("/join full room-password", "joined");
    ok(&alice.run("/say full before", "say"), "say");

    let filler = fs.0.join("filler");
    fill(&filler);
    let v = alice.run("/say full during", "say");
    error(&v, "say", 507);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("disk full")), "{v}");
    // Still serving: what needs no disk works.
    assert_eq!(alice.run("/rooms", "rooms")["rooms"][0]["name"], "full");

    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    ok(&alice.run("/say full after", "say"), "say");
    // What is acknowledged is durable: a restart keeps it.
    drop(alice);
    drop(bob);
    assert!(server.stop().success());
    let server = Server::start(&data);
    let mut bob = common::relogin(&server, &dir, "bob", &[]);
    bob.run("/join full", "joined");
    let texts: Vec<String> =
        bob.room_messages("full", 3).iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect();
    // "during" was refused with 507 but kept in memory and written once space returned.
    assert_eq!(texts, ["before", "during", "after"]);
    let log = server.stderr.lock().unwrap().join("\n");
    assert!(!log.contains("corrupt"), "{log}");
}
