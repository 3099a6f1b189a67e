//! Resumption through the real binaries (`sottod`, `sotto --batch`): after a
//! `kill -9` of the server, every client comes back by its ticket, with no
//! password typed, and rooms, direct messages and the mailbox work as
//! before, with nothing acknowledged lost; a password changed through the
//! client takes its home directory along and still resumes, and `/login`
//! resumes only with the password and passphrase the ticket was issued to.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const ROOM_PW: &str = "roompassword1";

fn authenticated(c: &mut Client) -> Value {
    c.wait_for("authenticated", |v| v["type"] == "authenticated")
}

fn next_dm(c: &mut Client, text: &str) -> Value {
    c.wait_for(&format!("the DM {text:?}"), |v| v["type"] == "dm" && v["text"] == text)
}

fn signal(c: &Client, sig: Signal) {
    kill(Pid::from_raw(c.pid() as i32), sig).unwrap();
}

#[test]
fn a_killed_server_takes_its_clients_back_by_ticket_and_loses_nothing_acknowledged() {
    let dir = TempDir::new("resume-kill");
    let data = dir.join("data");
    let server = Server::start(&data);
    let addr = server.addr.clone();
    let mut alice = client_for(&server, &dir, "alice", &[]);
    ok(&alice.register("alice", PW, WORDS), "register");
    let v = alice.login("alice", PW, WORDS);
    assert_eq!((v["type"].as_str(), v["resumed"].as_bool()), (Some("authenticated"), Some(false)), "{v}");
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    bob.run(&format!("/join lobby {ROOM_PW}"), "joined");
    // Acknowledged before the kill: a room message and a DM.
    ok(&alice.run("/say lobby before the crash", "say"), "say");
    bob.wait_for("the room message", |v| v["type"] == "room_message" && v["text"] == "before the crash");
    let v = alice.run("/msg @bob dm before the crash", "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    next_dm(&mut bob, "dm before the crash");

    server.kill9();
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    bob.wait_for("disconnected", |v| v["type"] == "disconnected");
    // Bob's client is held back while the server comes up again: he is offline
    // when alice writes to him, so her DM waits in his mailbox.
    signal(&bob, Signal::SIGSTOP);
    let server = Server::start_on(&data, &addr, &[]);

    alice.wait_for("reconnected", |v| v["type"] == "reconnected");
    let v = authenticated(&mut alice);
    assert_eq!((v["user"].as_str(), v["resumed"].as_bool()), (Some("alice"), Some(true)), "no password sent: {v}");
    let v = alice.run("/msg @bob while you were away", "sent");
    assert_eq!(v["status"], "queued", "bob is offline: {v}");
    ok(&alice.run("/say lobby after the restart", "say"), "say");

    signal(&bob, Signal::SIGCONT);
    bob.wait_for("reconnected", |v| v["type"] == "reconnected");
    let v = authenticated(&mut bob);
    assert_eq!((v["user"].as_str(), v["resumed"].as_bool()), (Some("bob"), Some(true)), "{v}");
    // The mailbox, delivered to the resumed session.
    let m = next_dm(&mut bob, "while you were away");
    assert_eq!((m["from"].as_str(), m["verified"].as_bool()), (Some("alice"), Some(true)), "{m}");
    // Direct messages both ways, live.
    let v = bob.run("/msg @alice back again", "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    next_dm(&mut alice, "back again");
    // The room, live, and its history: both acknowledged messages survived the kill.
    ok(&bob.run("/say lobby hello from bob", "say"), "say");
    alice.wait_for("bob's room message", |v| v["type"] == "room_message" && v["text"] == "hello from bob");
    bob.run("/join lobby", "joined");
    let mut history: Vec<String> = Vec::new();
    while !history.iter().any(|t| t == "after the restart") {
        let v = bob.wait_for("room history", |v| v["type"] == "room_message" && v["history"] == true);
        history.push(v["text"].as_str().unwrap_or_default().to_owned());
    }
    assert!(history.iter().any(|t| t == "before the crash"), "{history:?}");
    drop(server);
}

#[test]
fn a_password_changed_through_the_client_reseals_its_home_and_still_resumes() {
    let dir = TempDir::new("resume-passwd");
    let data = dir.join("data");
    let server = Server::start(&data);
    let addr = server.addr.clone();
    let mut alice = user(&server, &dir, "alice", &[]);
    const NEW_PW: &str = "anotherpassword77";
    const NEW_WORDS: &str = "cyan magenta yellow";
    let v = alice.run(&format!("/password {PW} {WORDS} {NEW_PW} {NEW_WORDS}"), "password");
    ok(&v, "password");

    // The session got a fresh ticket with the change: it resumes after a kill -9.
    server.kill9();
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    let server = Server::start_on(&data, &addr, &[]);
    let v = authenticated(&mut alice);
    assert_eq!(v["resumed"], true, "{v}");
    alice.send("/quit");
    assert!(alice.finish().success());

    // The home opens with the new password only; with it, /login resumes by the stored ticket.
    let mut again = client_for(&server, &dir, "alice", &[]);
    let v = again.run(&format!("/login alice {PW} {WORDS}"), "login");
    assert_eq!(v["type"], "error", "the old password: {v}");
    // The new password opens the home, but with the old passphrase the stored
    // ticket is not offered: the server checks the passphrase and refuses it.
    let v = again.run(&format!("/login alice {NEW_PW} {WORDS}"), "login");
    error(&v, "login", 401);
    let v = again.run(&format!("/login alice {NEW_PW} {NEW_WORDS}"), "authenticated");
    assert_eq!((v["type"].as_str(), v["resumed"].as_bool()), (Some("authenticated"), Some(true)), "{v}");
}
