//! Several sottod nodes through the real binaries (`sottod`, `sotto --batch`,
//! docs/CLIENT.md "Several servers"): the client tries the `--server` list in
//! order at start and at every reconnection, names the node it reached in
//! `connected` and `reconnected`, goes on to the next node when one is down
//! (a `kill -9`, the same data directory and keys on another address) and
//! resumes there with its ticket; and says every address and why when none
//! answers.

mod common;

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;

/// A loopback address nothing listens on: a port bound, then released.
fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

fn authenticated(c: &mut Client) -> Value {
    c.wait_for("authenticated", |v| v["type"] == "authenticated")
}

fn reconnected(c: &mut Client) -> Value {
    c.wait_for("reconnected", |v| v["type"] == "reconnected")
}

/// A client of `servers` (a `--server` list) that connected to `expected`.
fn connect_to(servers: &str, expected: &str, dir: &TempDir, name: &str) -> Client {
    let mut c = Client::start(servers, &dir.join(name));
    let v = c.next().expect("a first line");
    assert_eq!((v["type"].as_str(), v["server"].as_str()), (Some("connected"), Some(expected)), "{v}");
    c
}

/// `from` sends `text` to `to` as a DM, delivered live and verified.
fn dm(from: &mut Client, to: &mut Client, to_name: &str, text: &str) {
    let v = from.run(&format!("/msg @{to_name} {text}"), "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    let m = to.wait_for(&format!("the DM {text:?}"), |v| v["type"] == "dm" && v["text"] == text);
    assert_eq!(m["verified"], true, "{m}");
}

#[test]
fn a_dead_first_address_is_passed_over_for_the_live_one() {
    let dir = TempDir::new("failover-start");
    let server = Server::start(&dir.join("data"));
    let dead = free_addr();
    let mut alice = connect_to(&format!("{dead},{}", server.addr), &server.addr, &dir, "alice");
    ok(&alice.register("alice", PW, WORDS), "register");
    let v = alice.login("alice", PW, WORDS);
    assert_eq!((v["type"].as_str(), v["user"].as_str()), (Some("authenticated"), Some("alice")), "{v}");
    ok(&alice.run("/create lobby roompassword1", "create"), "create");
}

#[test]
fn no_reachable_address_is_one_error_naming_each_and_why() {
    let dir = TempDir::new("failover-none");
    let (a, b) = (free_addr(), free_addr());
    let mut c = Client::start(&format!("{a},{b}"), &dir.join("home"));
    let v = c.next().expect("an error line");
    error(&v, "connect", 0);
    let said = v["message"].as_str().unwrap_or_default();
    assert!(said.starts_with("no server could be reached (tried 2): "), "{said}");
    let (at_a, at_b) = (said.find(&format!("{a}: cannot connect: ")), said.find(&format!("{b}: cannot connect: ")));
    assert!(at_a.is_some() && at_b.is_some() && at_a < at_b, "both, in order: {said}");
    assert!(!c.finish().success());
}

#[test]
fn a_bad_server_list_is_a_usage_error() {
    let dir = TempDir::new("failover-usage");
    for (list, why) in [("127.0.0.1:1,,127.0.0.1:2", "is empty"), ("h:1,h:1", "listed twice"), ("h", "HOST:PORT")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sotto"))
            .args(["--batch", "--server", list, "--home"])
            .arg(dir.join("home"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{list}: {err}");
        assert!(err.contains(why) && err.contains("usage: sotto"), "{list}: {err}");
        assert!(out.stdout.is_empty(), "nothing connected: {list}");
    }
}

#[test]
fn a_killed_node_hands_its_clients_to_the_next_address() {
    let dir = TempDir::new("failover-kill");
    let data = dir.join("data");
    let first = Server::start(&data);
    let a = first.addr.clone();
    let b = free_addr();
    let list = format!("{a},{b}");
    let mut alice = connect_to(&list, &a, &dir, "alice");
    ok(&alice.register("alice", PW, WORDS), "register");
    assert_eq!(alice.login("alice", PW, WORDS)["type"], "authenticated");
    let mut bob = connect_to(&list, &a, &dir, "bob");
    ok(&bob.register("bob", PW, WORDS), "register");
    assert_eq!(bob.login("bob", PW, WORDS)["type"], "authenticated");
    contacts(&mut alice, "alice", &mut bob, "bob");
    dm(&mut alice, &mut bob, "bob", "on the first node");

    first.kill9();
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    bob.wait_for("disconnected", |v| v["type"] == "disconnected");
    // Another node of the deployment: the same data directory and keys, on the second address.
    let second = Server::start_on(&data, &b, &["--rate", "off"]);
    assert_eq!(second.addr, b);

    for c in [&mut alice, &mut bob] {
        let v = reconnected(c);
        assert_eq!(v["server"], b.as_str(), "the second address: {v}");
        // The ticket of the first node resumes on the second (one ticket key).
        assert_eq!(authenticated(c)["resumed"], true);
    }
    dm(&mut alice, &mut bob, "bob", "on the second node");
    dm(&mut bob, &mut alice, "alice", "and back");
}

/// A byte relay to `upstream` (no protocol: the client's handshake goes
/// through to sottod) whose connections can be cut while it keeps listening.
struct Relay {
    addr: String,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (upstream, kept) = (upstream.to_owned(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                kept.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, conns }
    }

    /// Closes every connection relayed so far.
    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn every_reconnection_starts_again_from_the_first_address() {
    let dir = TempDir::new("failover-order");
    let server = Server::start(&dir.join("data"));
    let (one, two) = (Relay::start(&server.addr), Relay::start(&server.addr));
    // The first address is down at start: the client is on the second.
    let dead = free_addr();
    let mut alice = connect_to(&format!("{dead},{},{}", two.addr, one.addr), &two.addr, &dir, "alice");
    ok(&alice.register("alice", PW, WORDS), "register");
    assert_eq!(alice.login("alice", PW, WORDS)["type"], "authenticated");
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");

    // Its connection through the second address drops while both relays
    // still listen: the round goes from the top, past the dead first address,
    // to the second again, not on to the third.
    two.cut();
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    let v = reconnected(&mut alice);
    assert_eq!(v["server"], two.addr.as_str(), "{v}");
    assert_eq!(authenticated(&mut alice)["resumed"], true);
    dm(&mut alice, &mut bob, "bob", "through the second address again");
}
