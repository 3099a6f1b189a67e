//! Logs through the real binaries: levelled lines naming connections, no
//! secret and no message content anywhere in a whole conversation, and the
//! count of what was refused and why at exit.

mod common;

use common::{error, ok, user, Server, TempDir, PW, WORDS};

#[test]
fn logs_of_a_whole_conversation_hold_no_secret_and_no_text_and_count_refusals() {
    let dir = TempDir::new("logs");
    let server = Server::start_with(&dir.join("data"), &["--rate", "off", "--log-level", "debug"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    let room_pw = "lantern-orchid-basalt";
    let texts = ["the treasure is under the third oak", "a direct and private remark"];
    ok(&alice.run(&format!("/create grove {room_pw}"), "create"), "create");
    bob.run(&format!("/join grove {room_pw}"), "joined");
    ok(&alice.run(&format!("/say grove {}", texts[0]), "say"), "say");
    assert_eq!(bob.wait_for("room message", |v| v["type"] == "room_message")["text"], texts[0]);
    alice.run("/dm @bob", "dm");
    bob.wait_for("dm_request", |v| v["type"] == "dm_request");
    bob.run("/accept @alice", "dm_accepted");
    alice.wait_for("dm_accepted", |v| v["type"] == "dm_accepted");
    assert_eq!(alice.run(&format!("/msg @bob {}", texts[1]), "sent")["type"], "sent");
    assert_eq!(bob.wait_for("dm", |v| v["type"] == "dm")["text"], texts[1]);
    // Something to refuse: a wrong password and a wrong room password.
    let mut carol = common::client_for(&server, &dir, "carol", &[]);
    error(&carol.login("alice", "wrong-password-1", WORDS), "login", 401);
    drop((alice, bob, carol));
    let stderr = server.stderr.clone();
    assert!(server.stop().success());
    // The last lines may still be in the pipe when the process has exited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !stderr.lock().unwrap().iter().any(|l| l.contains("stopped (")) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = stderr.lock().unwrap().join("\n");
    let secrets = [PW, WORDS, "green", room_pw, "wrong-password-1", texts[0], texts[1], "treasure", "private"];
    for s in secrets {
        assert!(!log.contains(s), "the log contains {s:?}:\n{log}");
    }
    for line in log.lines() {
        let mut parts = line.splitn(3, ' ');
        let (ts, level) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        // An RFC 3339 UTC time with milliseconds: 2026-12-04T16:05:02.123Z.
        let t = ts.as_bytes();
        let time = ts.len() == 24 && t[4] == b'-' && t[10] == b'T' && t[19] == b'.' && ts.ends_with('Z');
        assert!(time && ["ERROR", "WARN", "INFO", "DEBUG"].contains(&level), "{line}");
    }
    assert!(log.contains("INFO conn ") && log.contains("logged in from 127.0.0.1"), "{log}");
    // User ids are written one way: 16 hex digits, at registration and at login alike.
    let uid_in = |after: &str, line_has: &str| {
        let line = log.lines().find(|l| l.contains(line_has)).unwrap_or_else(|| panic!("no {line_has:?}"));
        let at = line.find(after).unwrap() + after.len();
        line[at..at + 16].to_owned()
    };
    let registered = uid_in("(uid ", "registered user alice");
    assert_eq!(uid_in("(uid ", "alice (uid "), registered, "{log}");
    assert!(registered.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{registered}");
    assert!(log.contains("DEBUG conn ") && log.contains(" closed: "), "debug shows closes:\n{log}");
    let summary = log.lines().find(|l| l.contains("refused since start:")).expect("a summary at exit");
    assert!(summary.contains("unauthorized (401) 1"), "{summary}");
}
