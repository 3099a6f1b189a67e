//! Limits and liveness through the real binaries: the chat rate limit, the
//! heartbeat that keeps a quiet session open, the idle timeout, and a client
//! noticing a server that stopped answering.

mod common;

use std::time::Duration;

use common::{client_for, error, ok, user, Server, TempDir, PW, WORDS};
use nix::sys::signal::Signal;

#[test]
fn chat_rate_limit_answers_429_with_the_wait_and_keeps_the_connection() {
    let dir = TempDir::new("rate");
    let server = Server::start_with(&dir.join("data"), &[]);
    let mut alice = user(&server, &dir, "alice", &[]);
    ok(&alice.run("/create fast room-password", "create"), "create");
    for i in 0..5 {
        ok(&alice.run(&format!("/say fast message {i}"), "say"), "say");
    }
    let v = alice.run("/say fast one too many", "say");
    error(&v, "say", 429);
    let wait = v["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(wait > 0 && wait <= 5_000, "{v}");
    // The connection stays open and other requests still work.
    assert_eq!(alice.run("/rooms", "rooms")["rooms"][0]["name"], "fast");
    std::thread::sleep(Duration::from_millis(wait + 50));
    ok(&alice.run("/say fast after waiting", "say"), "say");
}

#[test]
fn heartbeats_keep_a_quiet_session_past_the_idle_timeout() {
    let dir = TempDir::new("beat");
    let server = Server::start_with(&dir.join("data"), &["--idle-timeout", "2", "--log-level", "debug"]);
    let mut alice = user(&server, &dir, "alice", &["--heartbeat", "1"]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(alice.run("/rooms", "rooms")["type"], "rooms");
    assert!(alice.seen.iter().all(|v| v["type"] != "disconnected"), "{:?}", alice.seen);
    let log = server.stderr.lock().unwrap().join("\n");
    assert!(!log.contains("idle timeout"), "{log}");
}

#[test]
fn a_silent_session_is_closed_and_the_client_reconnects() {
    let dir = TempDir::new("idle");
    let server = Server::start_with(&dir.join("data"), &["--idle-timeout", "2", "--log-level", "debug"]);
    // Heartbeats every 10 s: too slow for a 2 s idle timeout.
    let mut alice = user(&server, &dir, "alice", &[]);
    let v = alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("closed")), "{v}");
    alice.wait_for("reconnected", |v| v["type"] == "reconnected");
    alice.wait_for("authenticated again", |v| v["type"] == "authenticated");
    let log = server.stderr.lock().unwrap().join("\n");
    assert!(log.contains("idle timeout"), "{log}");
}

#[test]
fn client_notices_a_server_that_stopped_answering() {
    let dir = TempDir::new("frozen");
    let server = Server::start(&dir.join("data"));
    let mut alice = client_for(&server, &dir, "alice", &["--heartbeat", "1"]);
    assert_eq!(alice.register("alice", PW, WORDS)["type"], "ok");
    assert_eq!(alice.login("alice", PW, WORDS)["type"], "authenticated");
    server.signal(Signal::SIGSTOP);
    let v = alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    server.signal(Signal::SIGCONT);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("stopped answering")), "{v}");
    alice.wait_for("reconnected", |v| v["type"] == "reconnected");
}

#[test]
fn bad_rate_flag_is_refused_with_a_clear_message() {
    let dir = TempDir::new("rateflag");
    let data = dir.join("data");
    let key = common::build_key();
    for bad in ["0/5", "5", "x/y", "5/0"] {
        let (status, err) = common::server_exit(&data, &key, &["--rate", bad]);
        assert!(!status.success() && err.contains("--rate") && err.contains("N/SECS"), "{bad}: {err}");
    }
}

#[test]
fn an_outbox_larger_than_the_rate_is_sent_after_reconnecting_without_a_new_login() {
    let dir = TempDir::new("outboxrate");
    let data = dir.join("data");
    // All defaults: 5 chat messages per 5 s.
    let server = Server::start_with(&data, &[]);
    let addr = server.addr.clone();
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    alice.run("/dm @bob", "dm");
    bob.wait_for("dm_request", |v| v["type"] == "dm_request");
    bob.run("/accept @alice", "dm_accepted");
    alice.wait_for("dm_accepted", |v| v["type"] == "dm_accepted");
    drop(bob);
    assert!(server.stop().success());
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    let ids: Vec<String> = (0..7)
        .map(|i| alice.run(&format!("/msg @bob typed offline {i}"), "pending")["id"].as_str().unwrap().to_owned())
        .collect();
    let server = Server::start_with(&data, &["--listen", &addr]);
    alice.wait_for("reconnected", |v| v["type"] == "reconnected");
    let sent: Vec<String> = (0..7)
        .map(|i| alice.wait_for(&format!("sent #{i}"), |v| v["type"] == "sent")["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ids, "every message, in order, once");
    let mut bob = common::relogin(&server, &dir, "bob", &[]);
    let got: Vec<String> = (0..7)
        .map(|i| bob.wait_for(&format!("dm #{i}"), |v| v["type"] == "dm")["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids);
}
