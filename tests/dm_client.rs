//! Direct messages through the real binaries, the client's side of the
//! promise: request/accept/reject, messages both ways verified, refusals, the
//! local time to live of shown messages, a changed key refused until
//! `/trust`, and an outbox that survives a killed client and a server outage.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client_for, contacts, error, ok, relogin, user, Client, Server, TempDir, PW, WORDS};
use serde_json::Value;
use sotto::identity::{self, Signer};

/// `/msg` answered by `sent`; returns its id.
fn send(c: &mut Client, to: &str, text: &str, status: &str) -> String {
    let v = c.run(&format!("/msg @{to} {text}"), "sent");
    assert_eq!(
        (v["type"].as_str(), v["to"].as_str(), v["status"].as_str()),
        (Some("sent"), Some(to), Some(status)),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
    id
}

fn next_dm(c: &mut Client) -> Value {
    c.wait_for("a dm", |v| v["type"] == "dm")
}

fn history(c: &mut Client, with: &str) -> Vec<Value> {
    let v = c.run(&format!("/history @{with}"), "history");
    assert_eq!(v["with"], with, "{v}");
    v["messages"].as_array().unwrap().clone()
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_named(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}

#[test]
fn request_accept_and_messages_both_ways_verified_and_refusals() {
    let dir = TempDir::new("dmc-basic");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    let mut carol = user(&server, &dir, "carol", &[]);

    // No channel yet: refused, nothing sent.
    let v = alice.run("/msg @bob too early", "msg");
    error(&v, "msg", 403);
    error(&alice.run("/dm @nobody", "dm"), "dm", 404);
    error(&alice.run("/dm @alice", "dm"), "dm", 400);
    error(&bob.run("/accept @carol", "accept"), "accept", 404);

    contacts(&mut alice, "alice", &mut bob, "bob");
    error(&alice.run("/dm @bob", "dm"), "dm", 409);

    let id = send(&mut alice, "bob", "hello bob,  two spaces kept", "delivered");
    let m = next_dm(&mut bob);
    assert_eq!(
        (m["from"].as_str(), m["id"].as_str(), m["text"].as_str(), m["verified"].as_bool()),
        (Some("alice"), Some(id.as_str()), Some("hello bob,  two spaces kept"), Some(true)),
        "{m}"
    );
    assert!(m["ts"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{m}");
    let id = send(&mut bob, "alice", "hello alice", "delivered");
    let m = next_dm(&mut alice);
    assert_eq!(
        (m["from"].as_str(), m["id"].as_str(), m["verified"].as_bool()),
        (Some("bob"), Some(id.as_str()), Some(true))
    );
    assert_eq!(m["text"], "hello alice");

    // Both sides compute the same safety number; each sees the other's fingerprint as "mine" there.
    let fa = alice.run("/fingerprint @bob", "fingerprint");
    let fb = bob.run("/fingerprint @alice", "fingerprint");
    assert_eq!(fa["safety_number"], fb["safety_number"]);
    assert_eq!((&fa["fingerprint"], &fa["mine"]), (&fb["mine"], &fb["fingerprint"]));
    let list = alice.run("/contacts", "contacts");
    assert_eq!(
        list["contacts"],
        serde_json::json!([{"name": "bob", "fingerprint": fa["fingerprint"], "trusted": true}])
    );

    // Too long: refused locally, and nothing reaches bob. Long texts (size
    // class x) arrive whole.
    let long = "x".repeat(16 * 1024 + 1);
    error(&alice.run(&format!("/msg @bob {long}"), "msg"), "msg", 413);
    for len in [12_000, 16 * 1024] {
        let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        send(&mut alice, "bob", &text, "delivered");
        assert_eq!(next_dm(&mut bob)["text"].as_str(), Some(text.as_str()), "{len} bytes");
    }

    // Reject.
    ok(&carol.run("/dm @alice", "dm"), "dm");
    assert_eq!(alice.wait_for("dm_request", |v| v["type"] == "dm_request")["from"], "carol");
    ok(&alice.run("/reject @carol", "reject"), "reject");
    let v = carol.wait_for("dm_rejected", |v| v["type"] == "dm_rejected");
    assert_eq!(v["by"], "alice");
    error(&carol.run("/msg @alice hi", "msg"), "msg", 403);
    error(&alice.run("/reject @carol", "reject"), "reject", 404);
}

#[test]
fn a_shown_message_is_erased_after_the_ttl_and_never_shown_again() {
    let dir = TempDir::new("dmc-ttl");
    let data = dir.join("data");
    let server = Server::start(&data);
    let addr = server.addr.clone();
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &["--dm-ttl", "2"]);
    contacts(&mut alice, "alice", &mut bob, "bob");

    // The message is typed while the server is down: it waits in alice's outbox,
    // whose file is copied to replay it later, with the key store's manifest of
    // that moment (an outbox restored alone is refused as rolled back).
    assert!(server.stop().success());
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    bob.wait_for("disconnected", |v| v["type"] == "disconnected");
    let v = alice.run("/msg @bob self-destructing note", "pending");
    assert_eq!((v["type"].as_str(), v["to"].as_str()), (Some("pending"), Some("bob")), "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let outbox = files_named(&dir.join("alice"), "outbox");
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let saved = std::fs::read(&outbox[0]).unwrap();
    assert!(!saved.windows(4).any(|w| w == b"note"), "the outbox is encrypted");
    let manifest = files_named(&dir.join("alice"), "manifest");
    assert_eq!(manifest.len(), 1, "{manifest:?}");
    let saved_manifest = std::fs::read(&manifest[0]).unwrap();

    // Both clients come back by themselves; the message is sent and shown once.
    let server = Server::start_with(&data, &["--listen", &addr]);
    alice.wait_for("reconnected", |v| v["type"] == "reconnected");
    let v = alice.wait_for("sent", |v| v["type"] == "sent");
    assert_eq!(v["id"], id.as_str());
    bob.wait_for("reconnected", |v| v["type"] == "reconnected");
    let m = next_dm(&mut bob);
    assert_eq!((m["id"].as_str(), m["text"].as_str()), (Some(id.as_str()), Some("self-destructing note")));
    let kept = history(&mut bob, "alice");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!((kept[0]["id"].as_str(), kept[0]["text"].as_str()), (Some(id.as_str()), Some("self-destructing note")));

    // Two seconds after it was shown it is gone, from memory and from the file.
    std::thread::sleep(Duration::from_millis(3000));
    assert!(history(&mut bob, "alice").is_empty());
    drop(bob);
    drop(alice);
    assert!(server.stop().success());

    // The same message delivered again (alice's old outbox replayed against a
    // restarted server that no longer knows it): bob's client never shows it again.
    // (Outbox and manifest together: a consistent rollback, which the client cannot tell.)
    std::fs::write(&outbox[0], &saved).unwrap();
    std::fs::write(&manifest[0], &saved_manifest).unwrap();
    let server = Server::start(&data);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    let v = alice.wait_for("sent", |v| v["type"] == "sent");
    assert_eq!((v["id"].as_str(), v["status"].as_str()), (Some(id.as_str()), Some("queued")), "stored again: {v}");
    let mut bob = relogin(&server, &dir, "bob", &["--dm-ttl", "2"]);
    assert!(history(&mut bob, "alice").is_empty(), "nothing kept after the restart");
    let marker = send(&mut alice, "bob", "marker", "delivered");
    let m = next_dm(&mut bob);
    assert_eq!(m["id"], marker.as_str(), "the replayed copy was dropped, not shown: {m}");
    assert!(!bob.seen.iter().any(|v| v["type"] == "dm" && v["id"] == id.as_str()), "{:?}", bob.seen);
    // It was acknowledged: a new session gets nothing of it.
    drop(bob);
    let mut bob = relogin(&server, &dir, "bob", &["--dm-ttl", "2"]);
    let marker = send(&mut alice, "bob", "second marker", "delivered");
    assert_eq!(next_dm(&mut bob)["id"], marker.as_str());
    assert!(!bob.seen.iter().any(|v| v["type"] == "dm" && v["id"] == id.as_str()));
}

/// Replaces `name`'s identity key in its user file (docs/OPCODES.md UserRecord):
/// a new RSA-2048 modulus, `enc_sig` made again with the new key (so the keys
/// bind, as after a genuine key change), and the trailing SHA-256 checksum.
fn replace_identity_key(data: &Path, name: &str) {
    const UID: usize = 8;
    const NAME: usize = 24;
    const ID_PUB: usize = 315;
    const ENC_PUB: usize = 571;
    const ENC_SIG: usize = 603;
    const CHECKSUM: usize = 859;
    let files: Vec<PathBuf> = std::fs::read_dir(data.join("users")).unwrap().flatten().map(|e| e.path()).collect();
    let file = files
        .iter()
        .find(|f| {
            let b = std::fs::read(f).unwrap();
            usize::from(b[NAME]) == name.len() && &b[NAME + 1..NAME + 1 + name.len()] == name.as_bytes()
        })
        .unwrap_or_else(|| panic!("no user file for {name} in {files:?}"));
    let mut bytes = std::fs::read(file).unwrap();
    assert_eq!(bytes.len(), CHECKSUM + 32);
    let (der, n) = identity::generate().unwrap();
    bytes[ID_PUB..ENC_PUB].copy_from_slice(&n);
    let enc_pub: [u8; 32] = bytes[ENC_PUB..ENC_SIG].try_into().unwrap();
    let uid = u64::from_be_bytes(bytes[UID..UID + 8].try_into().unwrap());
    let binding = sotto::account::enc_key_binding(&sotto::account::deployment_id(), uid, name, &enc_pub);
    let sig = Signer::from_pkcs8_der(&der).unwrap().sign(&binding).unwrap();
    bytes[ENC_SIG..CHECKSUM].copy_from_slice(&sig);
    let sum = sotto::crypto::sha256(&[&bytes[..CHECKSUM]]);
    bytes[CHECKSUM..].copy_from_slice(&sum);
    std::fs::write(file, &bytes).unwrap();
}

#[test]
fn a_changed_key_is_refused_until_trusted() {
    let dir = TempDir::new("dmc-key");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let pinned = alice.run("/fingerprint @bob", "fingerprint")["fingerprint"].clone();
    drop(alice);
    drop(bob);
    assert!(server.stop().success());

    replace_identity_key(&data, "bob");
    let server = Server::start(&data);
    let mut alice = client_for(&server, &dir, "alice", &[]);
    alice.send(&format!("/login alice {PW} {WORDS}"));
    assert_eq!(alice.wait_for("authenticated", |v| v["type"] == "authenticated")["user"], "alice");
    let v = alice.wait_for("key_changed", |v| v["type"] == "key_changed");
    assert_eq!(v["user"], "bob");

    // Refused both ways: nothing sent to bob, nothing shown from him (and not acknowledged).
    let v = alice.run("/msg @bob are you there?", "msg");
    error(&v, "msg", 403);
    assert!(v["message"].as_str().unwrap().contains("/trust @bob"), "{v}");
    let mut bob = relogin(&server, &dir, "bob", &[]);
    send(&mut bob, "alice", "held back", "queued");
    let w = alice.wait_for("a warning about bob's message", |v| v["type"] == "warning");
    assert!(w["message"].as_str().unwrap().contains("bob"), "{w}");
    let fp = alice.run("/fingerprint @bob", "fingerprint");
    assert_eq!(fp["fingerprint"], pinned, "the old key stays pinned until trusted");
    assert!(fp["listed"].is_string() && fp["listed"] != pinned, "{fp}");
    let list = alice.run("/contacts", "contacts");
    assert_eq!(list["contacts"][0]["trusted"], false, "{list}");

    ok(&alice.run("/trust @bob", "trust"), "trust");
    let list = alice.run("/contacts", "contacts");
    assert_eq!(
        (&list["contacts"][0]["trusted"], &list["contacts"][0]["fingerprint"]),
        (&Value::Bool(true), &fp["listed"])
    );
    // Bob's client signed its prekeys with the key it holds, not with the one
    // the server now lists and alice trusted: no session starts with them.
    let v = alice.run("/msg @bob trusted again", "msg");
    error(&v, "msg", 0);
    assert!(v["message"].as_str().unwrap().contains("not signed by bob's pinned identity key"), "{v}");
    assert!(!alice.seen.iter().any(|v| v["type"] == "dm"), "nothing from bob was shown before the trust");

    // The refused message comes again at the next login. Its session was
    // made with bob's encryption key, which the trusted identity key binds:
    // it opens and is authenticated.
    drop(alice);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    let m = next_dm(&mut alice);
    assert_eq!((m["text"].as_str(), m["verified"].as_bool()), (Some("held back"), Some(true)), "{m}");
    assert!(!alice.seen.iter().any(|v| v["type"] == "key_changed"), "trusted: no more key_changed");
}

#[test]
fn the_outbox_survives_a_killed_client_and_is_sent_once() {
    let dir = TempDir::new("dmc-outbox");
    let data = dir.join("data");
    let server = Server::start(&data);
    let addr = server.addr.clone();
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");

    assert!(server.stop().success());
    alice.wait_for("disconnected", |v| v["type"] == "disconnected");
    // Commands that need the server are refused meanwhile; local ones work.
    let v = alice.run("/dm @carol", "dm");
    assert_eq!((v["type"].as_str(), v["code"].as_u64()), (Some("error"), Some(0)), "{v}");
    assert_eq!(alice.run("/contacts", "contacts")["contacts"][0]["name"], "bob");
    let texts = ["first while offline", "second while offline", "third while offline"];
    let ids: Vec<String> = texts
        .iter()
        .map(|t| {
            let v = alice.run(&format!("/msg @bob {t}"), "pending");
            assert_eq!((v["type"].as_str(), v["to"].as_str()), (Some("pending"), Some("bob")), "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    drop(alice); // kill -9: only the outbox file remains

    let server = Server::start_with(&data, &["--listen", &addr]);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    let sent: Vec<String> = (0..3)
        .map(|_| {
            let v = alice.wait_for("sent", |v| v["type"] == "sent");
            assert_eq!(v["to"], "bob", "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(sent, ids, "sent once each, in order");

    // Bob's client reconnected by itself and gets each exactly once, in order.
    bob.wait_for("reconnected", |v| v["type"] == "reconnected");
    let got: Vec<Value> = (0..3).map(|_| next_dm(&mut bob)).collect();
    let got_ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for (m, t) in got.iter().zip(texts) {
        assert_eq!((m["text"].as_str(), m["verified"].as_bool()), (Some(t), Some(true)), "{m}");
    }
    let marker = send(&mut alice, "bob", "marker", "delivered");
    assert_eq!(next_dm(&mut bob)["id"], marker.as_str(), "no copy before the marker");

    // The outbox is empty now: a restarted client sends nothing again.
    drop(alice);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    let marker = send(&mut alice, "bob", "second marker", "delivered");
    assert_eq!(next_dm(&mut bob)["id"], marker.as_str());
    assert_eq!(alice.seen.iter().filter(|v| v["type"] == "sent").count(), 1, "{:?}", alice.seen);
}

#[test]
fn a_queued_message_is_reported_delivered_once_the_recipient_has_it() {
    let dir = TempDir::new("dmc-delivered");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    drop(bob);
    let id = send(&mut alice, "bob", "while you were out", "queued");
    let mut bob = relogin(&server, &dir, "bob", &[]);
    assert_eq!(next_dm(&mut bob)["id"], id.as_str());
    let v = alice.wait_for("delivered", |v| v["type"] == "delivered");
    assert_eq!((v["id"].as_str(), v["to"].as_str()), (Some(id.as_str()), Some("bob")), "{v}");
}
