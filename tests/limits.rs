//! Limits and liveness through the real binaries: the chat rate limit, the
//! heartbeat that keeps a quiet session open, the idle timeout, and a client
//! noticing a server that stopped answering.

mod common;

use std::time::Duration;

use common::raw::{closed_by_peer, connect_from, Raw};
use common::{client_for, ok, user, Server, TempDir, PW, WORDS};
use nix::sys::signal::Signal;
use zerocopy::FromZeros;

#[test]
fn chat_over_the_rate_limit_is_paced_by_the_client_never_dropped() {
    let dir = TempDir::new("rate");
    let server = Server::start_with(&dir.join("data"), &[]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    ok(&alice.run("/create fast room-password", "create"), "create");
    bob.run("/join fast room-password", "joined");
    for i in 0..5 {
        ok(&alice.run(&format!("/say fast message {i}"), "say"), "say");
    }
    // The sixth within 5 s: the server answers 429 with the wait; the client
    // keeps the line, says so, and sends it when allowed.
    alice.send("/say fast one too many");
    let v = alice.wait_for("pending", |v| v["type"] == "pending" && v["cmd"] == "say");
    assert_eq!((v["room"].as_str(), v["queued"].as_u64()), (Some("fast"), Some(1)), "{v}");
    // The connection stays open and other requests still work meanwhile.
    assert_eq!(alice.run("/rooms", "rooms")["rooms"][0]["name"], "fast");
    ok(&alice.wait_for("the paced line", |v| v["cmd"] == "say"), "say");
    let texts: Vec<String> =
        bob.room_messages("fast", 6).iter().map(|m| m["text"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(texts.last().map(String::as_str), Some("one too many"), "{texts:?}");
    drop((alice, bob));
    assert!(server.stop().success());
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

/// Raw TCP connections from `src` until the server closes one at once (the cap), or `max`.
fn fill_from(src: std::net::Ipv4Addr, addr: &str, max: usize) -> (Vec<std::net::TcpStream>, bool) {
    let mut held = Vec::new();
    for _ in 0..max {
        let mut c = connect_from(src, addr, None).unwrap();
        if closed_by_peer(&mut c, Duration::from_millis(300)) {
            return (held, true);
        }
        held.push(c);
    }
    (held, false)
}

fn attacker(i: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, 2 + i)
}

#[test]
fn connections_are_capped_per_address_and_in_all() {
    let dir = TempDir::new("caps");
    let server = Server::start_with(&dir.join("data"), &["--max-conns-per-addr", "3", "--max-conns", "6"]);
    // Per address: the fourth from 127.0.0.2 is closed at once; 127.0.0.1 is not affected.
    let (mut held, capped) = fill_from(attacker(0), &server.addr, 10);
    assert!(capped && held.len() == 3, "{} held, capped {capped}", held.len());
    assert!(Raw::connect(&server.addr).alive_pre_auth());
    // Closing one makes room for one more.
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    let (more, capped) = fill_from(attacker(0), &server.addr, 10);
    assert!(capped && more.len() == 1, "{} more", more.len());
    held.extend(more);
    // In all: 3 from .2 and 3 from .3 fill the six; the next, from anywhere, is closed at once.
    let (more, capped) = fill_from(attacker(1), &server.addr, 10);
    assert!(capped && more.len() == 3, "{} from the second address", more.len());
    held.extend(more);
    let (none, capped) = fill_from(attacker(2), &server.addr, 1);
    assert!(capped && none.is_empty());
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert!(Raw::connect(&server.addr).alive_pre_auth());
}

#[test]
fn handshakes_are_signed_at_most_n_per_second_per_address() {
    let dir = TempDir::new("hsrate");
    let server = Server::start_with(&dir.join("data"), &["--handshakes-per-sec", "2"]);
    let started = std::time::Instant::now();
    let answered: Vec<bool> =
        (0..5).map(|_| Raw::handshake(connect_from(attacker(0), &server.addr, None).unwrap()).is_ok()).collect();
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(answered, [true, true, false, false, false]);
    }
    // Another address is not affected, and a second later this one may sign again.
    assert!(Raw::handshake(connect_from(attacker(1), &server.addr, None).unwrap()).is_ok());
    std::thread::sleep(Duration::from_millis(1100));
    assert!(Raw::handshake(connect_from(attacker(0), &server.addr, None).unwrap()).is_ok());
}

#[test]
fn input_beyond_max_bps_is_read_later_not_dropped() {
    let dir = TempDir::new("bps");
    let server = Server::start_with(&dir.join("data"), &["--max-bps", "4096"]);
    let mut s = Raw::connect(&server.addr);
    // 192 requests of 48 bytes on the wire (a 16-byte message sealed): 9216 bytes,
    // more than two seconds' worth at 4096 bytes a second.
    let started = std::time::Instant::now();
    let cpu_before = server.cpu_ticks();
    let ids: Vec<u64> = (0..192).map(|_| s.request(sotto::opcodes::Heartbeat::new_zeroed())).collect();
    for id in ids {
        assert!(s.stat_for(id).is_some(), "request {id} was dropped");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "read at more than the cap: {took:?}");
    // Waiting out the cap with input pending is idle, not a spin on a
    // readable socket: well under a third of a core.
    let used = server.cpu_ticks() - cpu_before;
    let ticks = took.as_millis() as u64 / 10;
    assert!(used * 3 < ticks, "sottod used {used} ticks in {took:?} while throttling one connection");
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning_and_recovers() {
    let dir = TempDir::new("emfile");
    let server = Server::start_with_nofile(&dir.join("data"), &["--log-level", "debug"], 48);
    // Fill the descriptor table from several addresses (the per-address cap is 64).
    let mut held = Vec::new();
    for i in 0..60u8 {
        held.push(connect_from(attacker(i % 4), &server.addr, None).unwrap());
    }
    let log = || server.stderr.lock().unwrap().join("\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !log().contains("accept failed") {
        assert!(std::time::Instant::now() < deadline, "no accept failure logged: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Paused, not spinning: well under a tenth of a core over two seconds.
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = server.cpu_ticks() - before;
    assert!(used < 20, "sottod used {used} ticks in 2 s while out of descriptors");
    assert_eq!(log().matches("accept failed").count(), 1, "logged more than once: {}", log());
    // Descriptors free up: accepting resumes.
    drop(held);
    let mut s = Raw::connect(&server.addr);
    assert!(s.alive_pre_auth());
}

/// Scheduling policy and nice value of each of the server's threads, by name.
fn thread_priorities(pid: u32) -> Vec<(String, u32, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let (name, rest) =
            (&stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()], &stat[stat.rfind(')').unwrap() + 2..]);
        // After the name: field 3 is state; nice is field 19, policy field 41.
        let f: Vec<&str> = rest.split_whitespace().collect();
        out.push((name.to_owned(), f[38].parse().unwrap(), f[16].parse().unwrap()));
    }
    out.sort();
    out
}

#[test]
fn signing_and_commits_yield_to_the_event_loop() {
    let dir = TempDir::new("prio");
    let server = Server::start_with(&dir.join("data"), &["--workers", "2"]);
    // sottod inherits this test's nice value (`nice make test`): priorities are relative to it.
    // SAFETY: getpriority has no memory-safety preconditions.
    let base = i64::from(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
    let disk = (base + 10).min(19);
    // Each worker names itself and sets its own priority once running: wait for that.
    let expected = |t: &[(String, u32, i64)]| {
        t.iter().any(|t| t.0 == "sottod-disk" && t.2 == disk)
            && t.iter().any(|t| t.0 == "sottod-read" && t.2 == disk)
            && t.iter().filter(|t| t.0.starts_with("sottod-kdf-")).count() == 2
            && t.iter().filter(|t| t.0.starts_with("sottod-sign-") && t.1 == libc::SCHED_IDLE as u32).count() == 2
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut threads = thread_priorities(server.pid());
    while !expected(&threads) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        threads = thread_priorities(server.pid());
    }
    let find = |name: &str| threads.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no {name}: {threads:?}"));
    // The loop (the main thread) and argon2id: as started. Signing: SCHED_IDLE (5).
    assert_eq!((find("sottod").1, find("sottod").2), (libc::SCHED_OTHER as u32, base), "{threads:?}");
    for k in ["sottod-kdf-0", "sottod-kdf-1"] {
        assert_eq!((find(k).1, find(k).2), (libc::SCHED_OTHER as u32, base), "{threads:?}");
    }
    for s in ["sottod-sign-0", "sottod-sign-1"] {
        assert_eq!(find(s).1, libc::SCHED_IDLE as u32, "{threads:?}");
    }
    // Disk and the file reader: SCHED_BATCH (3, never preempts the loop on waking) at nice +10.
    for k in ["sottod-disk", "sottod-read"] {
        assert_eq!((find(k).1, find(k).2), (libc::SCHED_BATCH as u32, disk), "{threads:?}");
    }
    // And a handshake still gets signed while nothing else wants the CPU.
    let mut s = Raw::connect(&server.addr);
    assert!(s.alive_pre_auth());
}
