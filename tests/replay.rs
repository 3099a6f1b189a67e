//! Replay and freshness through the real binaries (issue 11): a direct
//! message or a room message the client has shown is never shown as new
//! again, whether a recording man in the middle with the server's key sends
//! it again, or the server's data is restored from an old copy.

mod common;

use std::path::Path;
use std::time::Duration;

use common::proxy::Proxy;
use common::{contacts, ok, relogin, relogin_at, user, Client, Server, TempDir};
use serde_json::Value;
use sotto::opcodes::{RVRS, RVUS};

const ROOM_PW: &str = "correct-horse-battery";

fn send(c: &mut Client, to: &str, text: &str) {
    let v = c.run(&format!("/msg @{to} {text}"), "sent");
    assert_eq!(v["type"], "sent", "{v}");
}

fn next_dm(c: &mut Client) -> Value {
    c.wait_for("a dm", |v| v["type"] == "dm")
}

/// Every `dm` line this client printed with `text`.
fn shown(c: &Client, text: &str) -> usize {
    c.seen.iter().filter(|v| v["type"] == "dm" && v["text"] == text).count()
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_dm_sent_again_by_a_recording_man_in_the_middle_is_not_shown_again() {
    let dir = TempDir::new("replay-dm");
    let server = Server::start(&dir.join("data"));
    let proxy = Proxy::start(&server.addr);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    bob.finish();

    let mut bob = relogin_at(&proxy.addr, &dir, "bob", &[]);
    send(&mut alice, "bob", "first");
    let m = next_dm(&mut bob);
    assert_eq!((m["text"].as_str(), m["verified"].as_bool()), (Some("first"), Some(true)), "{m}");
    let recorded = proxy.recorded(RVUS);
    assert_eq!(recorded.len(), 1, "the proxy saw the message");

    // In the same session: the copy comes first, the next message second.
    proxy.inject(&recorded[0]);
    send(&mut alice, "bob", "second");
    assert_eq!(next_dm(&mut bob)["text"], "second", "the copy is not shown");
    // In a later session, long after the text was shown.
    bob.finish();
    let mut bob = relogin_at(&proxy.addr, &dir, "bob", &[]);
    proxy.inject(&recorded[0]);
    send(&mut alice, "bob", "third");
    assert_eq!(next_dm(&mut bob)["text"], "third", "the copy is not shown");
    bob.settle(Duration::from_millis(300));
    assert_eq!(shown(&bob, "first"), 0, "never again: {:?}", bob.seen);
}

#[test]
fn a_room_message_sent_again_by_a_recording_man_in_the_middle_is_flagged_replayed() {
    let dir = TempDir::new("replay-room");
    let server = Server::start(&dir.join("data"));
    let proxy = Proxy::start(&server.addr);
    let mut alice = user(&server, &dir, "alice", &[]);
    user(&server, &dir, "bob", &[]).finish();
    let mut bob = relogin_at(&proxy.addr, &dir, "bob", &[]);
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    assert_eq!(bob.run(&format!("/join lobby {ROOM_PW}"), "joined")["type"], "joined");
    ok(&alice.run("/say lobby hello once", "say"), "say");
    let m = &bob.room_messages("lobby", 1)[0];
    assert_eq!(
        (m["text"].as_str(), m["verified"].as_bool(), m["replayed"].as_bool()),
        (Some("hello once"), Some(true), Some(false))
    );
    let live = proxy.recorded(RVRS);
    let live = live.last().expect("the proxy saw the message");

    proxy.inject(live);
    let m = &bob.room_messages("lobby", 1)[0];
    assert_eq!(
        (m["text"].as_str(), m["history"].as_bool(), m["replayed"].as_bool()),
        (Some("hello once"), Some(false), Some(true)),
        "shown flagged, never as new: {m}"
    );
    // And in a later session.
    bob.finish();
    let mut bob = relogin_at(&proxy.addr, &dir, "bob", &[]);
    proxy.inject(live);
    let m = &bob.room_messages("lobby", 1)[0];
    assert_eq!(m["replayed"].as_bool(), Some(true), "{m}");
}

#[test]
fn a_dm_in_restored_server_data_is_not_shown_again() {
    let dir = TempDir::new("replay-restore-dm");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    bob.finish();
    let v = alice.run("/msg @bob while you were away", "sent");
    assert_eq!(v["status"], "queued", "{v}");
    alice.finish();
    assert!(server.stop().success());
    copy_dir(&data, &dir.join("backup"));

    let server = Server::start(&data);
    let mut bob = relogin(&server, &dir, "bob", &[]);
    assert_eq!(next_dm(&mut bob)["text"], "while you were away");
    bob.settle(Duration::from_millis(300));
    bob.finish();
    assert!(server.stop().success());

    // The operator (or an attacker) restores the old data: the message is queued again.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&dir.join("backup"), &data);
    let server = Server::start(&data);
    let mut bob = relogin(&server, &dir, "bob", &[]);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    send(&mut alice, "bob", "after the restore");
    assert_eq!(next_dm(&mut bob)["text"], "after the restore", "the restored copy is not shown");
    assert_eq!(shown(&bob, "while you were away"), 0, "{:?}", bob.seen);
}

#[test]
fn room_messages_in_restored_server_data_come_only_as_history() {
    let dir = TempDir::new("replay-restore-room");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    bob.run(&format!("/join lobby {ROOM_PW}"), "joined");
    ok(&alice.run("/say lobby before the backup", "say"), "say");
    assert_eq!(bob.room_messages("lobby", 1)[0]["text"], "before the backup");
    alice.finish();
    bob.finish();
    assert!(server.stop().success());
    copy_dir(&data, &dir.join("backup"));
    let server = Server::start(&data);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    alice.run("/join lobby", "joined");
    ok(&alice.run("/say lobby after the backup", "say"), "say");
    alice.finish();
    assert!(server.stop().success());

    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&dir.join("backup"), &data);
    let server = Server::start(&data);
    let mut bob = relogin(&server, &dir, "bob", &[]);
    bob.run("/join lobby", "joined");
    let m = &bob.room_messages("lobby", 1)[0];
    assert_eq!((m["text"].as_str(), m["history"].as_bool()), (Some("before the backup"), Some(true)), "{m}");
    bob.settle(Duration::from_millis(300));
    let live: Vec<&Value> = bob.seen.iter().filter(|v| v["type"] == "room_message" && v["history"] == false).collect();
    assert!(live.is_empty(), "nothing old shown as new: {live:?}");
}
