//! Direct messages through the real binaries, the server's side of the
//! promise: queued messages survive logouts, `kill -9` and torn queue files,
//! each is delivered exactly once, and none is readable on the server.

mod common;

use std::path::{Path, PathBuf};

use common::{files_under, relogin, user, Client, Server, TempDir, PW};
use serde_json::Value;

/// alice asks bob, bob accepts: both have the other pinned.
fn contacts(alice: &mut Client, bob: &mut Client) {
    let v = alice.run("/dm @bob", "dm");
    assert_eq!(v["type"], "ok", "{v}");
    let v = bob.wait_for("dm_request", |v| v["type"] == "dm_request");
    assert_eq!(v["from"], "alice");
    let v = bob.run("/accept @alice", "dm_accepted");
    assert_eq!(v["with"], "alice", "{v}");
    let v = alice.wait_for("dm_accepted", |v| v["type"] == "dm_accepted");
    assert_eq!(v["with"], "bob");
}

/// Sends `n` DMs to bob, each answered `sent` with `status`; returns their ids.
fn send_all(alice: &mut Client, n: usize, status: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let v = alice.run(&format!("/msg @bob message number {i}"), "sent");
            assert_eq!((v["to"].as_str(), v["status"].as_str()), (Some("bob"), Some(status)), "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn dms(c: &mut Client, n: usize) -> Vec<Value> {
    (0..n).map(|i| c.wait_for(&format!("dm #{i} of {n}"), |v| v["type"] == "dm")).collect()
}

fn assert_in_order_once(got: &[Value], ids: &[String]) {
    let got_ids: Vec<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "every message, in order");
    for (i, v) in got.iter().enumerate() {
        assert_eq!((v["from"].as_str(), v["verified"].as_bool()), (Some("alice"), Some(true)), "{v}");
        assert_eq!(v["text"], format!("message number {i}"));
    }
}

/// Quits and checks that no further DM arrives before `bye`.
fn quit_without_more_dms(mut c: Client) {
    c.send("/quit");
    loop {
        let v = c.next().expect("bye");
        assert_ne!(v["type"], "dm", "a message was delivered twice: {v}");
        if v["type"] == "bye" {
            break;
        }
    }
    assert!(c.finish().success());
}

fn queue_files(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("queues")).unwrap().flatten().map(|e| e.path()).collect()
}

#[test]
fn offline_recipient_receives_fifty_in_order_exactly_once() {
    let dir = TempDir::new("dm50");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, &mut bob);
    bob.send("/quit");
    assert!(bob.finish().success());
    let ids = send_all(&mut alice, 50, "queued");
    let mut bob = relogin(&server, &dir, "bob", &[]);
    let got = dms(&mut bob, 50);
    assert_in_order_once(&got, &ids);
    quit_without_more_dms(bob);
    // Acknowledged: a new session gets nothing again, and the queue is compacted away.
    let bob = relogin(&server, &dir, "bob", &[]);
    quit_without_more_dms(bob);
    drop(alice);
    assert!(server.stop().success());
    assert!(queue_files(&data).is_empty(), "fully acknowledged queues are removed: {:?}", queue_files(&data));
}

#[test]
fn online_recipient_is_reported_delivered() {
    let dir = TempDir::new("dmlive");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, &mut bob);
    let ids = send_all(&mut alice, 3, "delivered");
    assert_in_order_once(&dms(&mut bob, 3), &ids);
}

#[test]
fn kill_dash_nine_after_queued_loses_nothing_and_duplicates_nothing() {
    let dir = TempDir::new("dmkill");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, &mut bob);
    bob.send("/quit");
    assert!(bob.finish().success());
    let ids = send_all(&mut alice, 100, "queued");
    server.kill9();
    drop(alice);
    let server = Server::start(&data);
    let mut bob = relogin(&server, &dir, "bob", &[]);
    let got = dms(&mut bob, 100);
    assert_in_order_once(&got, &ids);
    quit_without_more_dms(bob);
}

#[test]
fn torn_last_record_is_skipped_and_the_rest_delivered() {
    let dir = TempDir::new("dmtorn");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, &mut bob);
    bob.send("/quit");
    assert!(bob.finish().success());
    let ids = send_all(&mut alice, 5, "queued");
    drop(alice);
    assert!(server.stop().success());
    let files = queue_files(&data);
    assert_eq!(files.len(), 1, "bob's queue: {files:?}");
    let len = std::fs::metadata(&files[0]).unwrap().len();
    // Cut into the middle of the last record (an rvus of about 400 bytes), as a crash mid-append would.
    let f = std::fs::OpenOptions::new().write(true).open(&files[0]).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    let server = Server::start(&data);
    let mut bob = relogin(&server, &dir, "bob", &[]);
    let got = dms(&mut bob, 4);
    assert_in_order_once(&got, &ids[..4]);
    quit_without_more_dms(bob);
    let log = server.stderr.lock().unwrap().join("\n");
    assert!(log.contains("torn or corrupt"), "the cut is reported:\n{log}");
}

#[test]
fn no_dm_plaintext_in_the_server_data_directory() {
    let dir = TempDir::new("dmscan");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, &mut bob);
    bob.send("/quit");
    assert!(bob.finish().success());
    let texts = ["the vault combination is 31-41-59", "quixotic-pangolin-marmalade"];
    for t in texts {
        let v = alice.run(&format!("/msg @bob {t}"), "sent");
        assert_eq!(v["status"], "queued");
    }
    drop(alice);
    assert!(server.stop().success());
    let files = files_under(&data);
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "q")), "the queued messages are on disk");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for t in texts.iter().map(|t| t.as_bytes()).chain([b"quixotic".as_slice(), PW.as_bytes()]) {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(t)
            );
        }
    }
}

#[test]
fn undelivered_messages_expire_and_the_sender_is_told() {
    let dir = TempDir::new("dmttl");
    let server = Server::start_with(&dir.join("data"), &["--queue-ttl", "1"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, &mut bob);
    bob.send("/quit");
    assert!(bob.finish().success());
    let ids = send_all(&mut alice, 2, "queued");
    for id in &ids {
        let v = alice.wait_for("expired", |v| v["type"] == "expired" && v["id"] == id.as_str());
        assert_eq!(v["id"], id.as_str());
    }
    let bob = relogin(&server, &dir, "bob", &[]);
    quit_without_more_dms(bob);
}
