//! Cluster mode through the real binaries: three real `nats-server`
//! processes with JetStream (R3) on loopback, `sottod --cluster` nodes, and
//! `sotto --batch` clients given every node's address.
//!
//! Checked: rooms, history, DMs and the offline queue kept in JetStream
//! survive losing one NATS server, a restart of sottod, and a restart of
//! everything; with NATS wholly down writes get 503 and sottod recovers by
//! itself; alice on the writer and bob on an edge (DESIGN §8 "Edges") share
//! rooms, history, DMs and the offline queue, and one user's session limit
//! counts across the nodes; the edge takes over when the writer is `kill
//! -9`'d (at once: the writer's NATS connection closed) and the clients
//! follow it; a writer
//! paused past its lease (which lapses) exits with status 3, as
//! does a writer whose record another node wrote (fenced), and the standby
//! serves the state as stored; a file crosses a node whole, its chunks in
//! JetStream, to a recipient on an edge, and leaves JetStream once he has it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use sotto::nats_harness::NatsCluster;

/// sottod's flags for node `node` of `nats`.
fn node_flags(nats: &NatsCluster, node: &str) -> Vec<String> {
    ["--rate", "off", "--cluster", &nats.urls(), "--node", node, "--cluster-replicas", "3"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn start_node(data: &Path, listen: &str, nats: &NatsCluster, node: &str) -> Server {
    let flags = node_flags(nats, node);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_on(data, listen, &flags)
}

fn standby_node(data: &Path, listen: &str, nats: &NatsCluster, node: &str) -> Server {
    let flags = node_flags(nats, node);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_standby(data, listen, &flags)
}

/// Three NATS servers, a writer node `a` and a standby node `b` (an edge once it says so).
fn writer_and_standby(tag: &str) -> (NatsCluster, TempDir, Server, Server) {
    let nats = NatsCluster::start().expect("three NATS servers");
    let dir = TempDir::new(tag);
    let writer = start_node(&dir.join("node-a"), "127.0.0.1:0", &nats, "a");
    let standby = standby_node(&dir.join("node-b"), "127.0.0.1:0", &nats, "b");
    (nats, dir, writer, standby)
}

/// Node `b`, an edge, with node `a`'s `flags` (its name changed).
fn edge_b(dir: &TempDir, flags: &[String]) -> Server {
    let flags: Vec<String> = flags.iter().map(|f| if f == "a" { "b".to_owned() } else { f.clone() }).collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut edge = Server::start_standby(&dir.join("node-b"), "127.0.0.1:0", &flags);
    edge.wait_edge();
    edge
}

/// Waits (30 s at most) for `node` to exit with status 3 after logging `line`.
fn exits_with_3(node: &mut Server, line: &str) {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = node.try_exit() {
            break s;
        }
        assert!(Instant::now() < deadline, "the node kept running: {:?}", node.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    };
    let shown = format!("{status:?} (signal {:?})", status.signal());
    assert_eq!(status.code(), Some(3), "{shown}: {:?}", node.stderr.lock().unwrap());
    // The last lines may still be on their way from the pipe.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.stderr.lock().unwrap().iter().any(|l| l.contains(line)) {
        assert!(Instant::now() < deadline, "no {line:?} in {:?}", node.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `text` said in `room` by `from`, acknowledged, and seen live by `to`.
fn say(from: &mut Client, to: &mut Client, room: &str, text: &str) {
    ok(&from.run(&format!("/say {room} {text}"), "say"), "say");
    to.wait_for(&format!("the room message {text:?}"), |v| v["type"] == "room_message" && v["text"] == text);
}

/// The texts of `room`'s history as a new session of `name` sees it.
fn history(servers: &str, dir: &TempDir, name: &str, room: &str) -> Vec<String> {
    let mut c = relogin_at(servers, dir, name, &[]);
    join_history(&mut c, &format!("/join {room}"), room)
}

/// Joins with `join` and returns the texts of the history that came with it.
fn join_history(c: &mut Client, join: &str, room: &str) -> Vec<String> {
    assert_eq!(c.run(join, "joined")["type"], "joined");
    // Requests are answered in order: the history precedes the answer to /who.
    assert_eq!(c.run(&format!("/who {room}"), "who")["type"], "who");
    c.take_backlog()
        .into_iter()
        .filter(|v| v["type"] == "room_message" && v["history"] == true)
        .map(|v| {
            assert_eq!(v["verified"], true, "{v}");
            v["text"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Creates rooms `{tag}0`, `{tag}1`, … until one is acknowledged (60 s at
/// most): sottod writes to JetStream again. Each refusal must be a 503 (the
/// refused creates stay in memory and are stored later: harmless rooms).
fn until_writable(c: &mut Client, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        let v = c.run(&format!("/create {tag}{i} room-password"), "create");
        if v["type"] == "ok" {
            return;
        }
        assert_eq!(v["code"], 503, "{v}");
        assert!(Instant::now() < deadline, "sottod did not write again within 60 s: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every DM `c` shows, by text, with how often each was shown.
fn dm_texts(c: &Client) -> Vec<String> {
    c.seen.iter().filter(|v| v["type"] == "dm").map(|v| v["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn state_in_jetstream_survives_sottod_nats_and_full_restarts() {
    let mut nats = NatsCluster::start().expect("three NATS servers");
    let dir = TempDir::new("cluster-state");
    let data = dir.join("node-a");
    let mut server = start_node(&data, "127.0.0.1:0", &nats, "a");
    let addr = server.addr.clone();

    let mut alice = user_at(&addr, &dir, "alice", &[]);
    let mut bob = user_at(&addr, &dir, "bob", &[]);
    let mut carol = user_at(&addr, &dir, "carol", &[]);
    ok(&alice.run("/create lobby lobby-password", "create"), "create");
    assert_eq!(bob.run("/join lobby lobby-password", "joined")["type"], "joined");
    contacts(&mut alice, "alice", &mut bob, "bob");
    contacts(&mut alice, "alice", &mut carol, "carol");
    drop(carol);
    say(&mut alice, &mut bob, "lobby", "first");
    let v = alice.run("/msg @bob hello bob", "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    bob.wait_for("the DM", |v| v["type"] == "dm" && v["text"] == "hello bob");
    let v = alice.run("/msg @carol queued one", "sent");
    assert_eq!(v["status"], "queued", "{v}");

    // One NATS server of three gone: R3 streams keep a quorum, the service
    // continues (after a moment's 503 if sottod was connected to it, or it led
    // a stream).
    nats.kill(1);
    until_writable(&mut alice, "probe");
    say(&mut alice, &mut bob, "lobby", "second");
    let v = alice.run("/msg @carol queued two", "sent");
    assert_eq!(v["status"], "queued", "{v}");

    // All of NATS gone: writes are refused with 503, reads and live traffic go on.
    nats.kill(0);
    nats.kill(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        let v = alice.run(&format!("/create down{i} room-password"), "create");
        if v["type"] == "error" {
            assert_eq!(v["code"], 503, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "writes still accepted with NATS down: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.try_exit().is_none(), "sottod exited with NATS down");
    // A registration, written by a worker, is refused alike.
    let mut erin = Client::start(&addr, &dir.join("erin"));
    assert_eq!(erin.next().expect("a first line")["type"], "connected");
    let v = erin.register("erin", PW, WORDS);
    assert_eq!((v["type"].as_str(), v["code"].as_u64()), (Some("error"), Some(503)), "{v}");
    drop(erin);
    // Live traffic that needs no write goes on.
    let v = alice.run("/who lobby", "who");
    assert_eq!(v["type"], "who", "{v}");
    // Back: sottod reconnects by itself and writes again.
    nats.restart_all().expect("NATS restarted");
    until_writable(&mut alice, "again");
    say(&mut alice, &mut bob, "lobby", "third");
    drop(alice);
    drop(bob);

    // sottod restarted on the same NATS: everything is read back.
    server.kill9();
    server = start_node(&data, &addr, &nats, "a");
    assert_eq!(history(&addr, &dir, "bob", "lobby"), ["first", "second", "third"]);

    // Everything restarted: NATS from its stores, then sottod.
    server.kill9();
    nats.restart_all().expect("NATS restarted");
    let server = start_node(&data, &addr, &nats, "a");
    let mut dave = user_at(&server.addr, &dir, "dave", &[]);
    let texts = join_history(&mut dave, "/join lobby lobby-password", "lobby");
    assert_eq!(texts, ["first", "second", "third"], "{}", nats.logs());
    // carol's queue arrives once, in order; the accounts still log in.
    let mut carol = relogin_at(&server.addr, &dir, "carol", &[]);
    carol.wait_for("queued two", |v| v["type"] == "dm" && v["text"] == "queued two");
    carol.settle(Duration::from_millis(1000));
    assert_eq!(dm_texts(&carol), ["queued one", "queued two"]);
    let mut bob = relogin_at(&server.addr, &dir, "bob", &[]);
    bob.settle(Duration::from_millis(1000));
    assert!(!dm_texts(&bob).contains(&"hello bob".to_owned()), "a delivered DM came again: {:?}", bob.seen);
}

/// `sottoctl users` against the node whose data directory is `data`.
fn sottoctl_users(data: &Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sottoctl"));
    cmd.arg("--data").arg(data).arg("users").output().expect("run sottoctl")
}

#[test]
fn alice_on_the_writer_and_bob_on_an_edge_share_rooms_dms_and_the_queue_and_follow_a_takeover() {
    let (_nats, dir, writer, mut edge) = writer_and_standby("cluster-edge");
    // Not the writer: an edge, serving clients for it (DESIGN §8 "Edges").
    edge.wait_edge();
    let (a, b) = (writer.addr.clone(), edge.addr.clone());
    let mut alice = user_at(&format!("{a},{b}"), &dir, "alice", &[]);
    let mut bob = user_at(&format!("{b},{a}"), &dir, "bob", &[]);
    assert_eq!(alice.seen[0]["server"], a.as_str(), "{:?}", alice.seen);
    assert_eq!(bob.seen[0]["server"], b.as_str(), "{:?}", bob.seen);

    // A room across the nodes: created on the writer, joined through the edge, live both ways.
    ok(&alice.run("/create lobby lobby-password", "create"), "create");
    assert_eq!(bob.run("/join lobby lobby-password", "joined")["type"], "joined");
    say(&mut alice, &mut bob, "lobby", "from the writer");
    say(&mut bob, &mut alice, "lobby", "from the edge");
    // DMs both ways, after a request and an accept that crossed the nodes.
    contacts(&mut alice, "alice", &mut bob, "bob");
    let v = bob.run("/msg @alice hello from the edge", "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    alice.wait_for("the DM", |v| v["type"] == "dm" && v["text"] == "hello from the edge");
    let v = alice.run("/msg @bob hello from the writer", "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    bob.wait_for("the DM", |v| v["type"] == "dm" && v["text"] == "hello from the writer");
    // The offline queue: carol, registered through the edge, is away while
    // bob writes to her there; she gets it once, on the writer.
    let mut carol = user_at(&b, &dir, "carol", &[]);
    contacts(&mut bob, "bob", &mut carol, "carol");
    drop(carol);
    let v = bob.run("/msg @carol while you were away", "sent");
    assert_eq!(v["status"], "queued", "{v}");
    let mut carol = relogin_at(&a, &dir, "carol", &[]);
    carol.wait_for("the queued DM", |v| v["type"] == "dm" && v["text"] == "while you were away");
    carol.settle(Duration::from_millis(500));
    assert_eq!(dm_texts(&carol), ["while you were away"]);
    drop(carol);
    // The history, to a new member joining through the edge.
    let mut dave = user_at(&b, &dir, "dave", &[]);
    assert_eq!(join_history(&mut dave, "/join lobby lobby-password", "lobby"), ["from the writer", "from the edge"]);
    drop(dave);
    // One user's limits are the writer's, whichever node the session is on:
    // a wrong password through the edge counts as through the writer.
    assert!(edge.stderr.lock().unwrap().iter().all(|l| !l.contains("panicked")));

    // sottoctl on the edge hears that it is not the writer, and which node is.
    let out = sottoctl_users(&dir.join("node-b"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "refused by the server: {said}");
    assert!(
        said.contains("this node is an edge (a standby that relays its clients to the writer): node a writes"),
        "{said}"
    );

    // kill -9 of the writer: the edge takes over; both clients come back to it.
    writer.kill9();
    edge.wait_listening();
    assert_eq!(edge.addr, b);
    // The killed writer's NATS connection closed: nobody answers for it, and
    // the edge took the lease without waiting for it to lapse.
    let gone = |l: &String| l.contains("writer lease: node a is gone (its NATS connection closed");
    assert!(edge.stderr.lock().unwrap().iter().any(gone), "{:?}", edge.stderr.lock().unwrap());
    // It followed the records meanwhile: the takeover read nothing again.
    let followed =
        |l: &String| l.contains("records followed through sequence") && l.contains("loading them from memory");
    assert!(edge.stderr.lock().unwrap().iter().any(followed), "{:?}", edge.stderr.lock().unwrap());
    // Both resume with their tickets (bob's was sealed by b as an edge): a
    // client that reached b before it wrote waited in its listen queue,
    // its ticket not offered to a writer that was gone.
    for c in [&mut alice, &mut bob] {
        c.set_patience(Duration::from_secs(90));
        let v = c.wait_for("reconnected", |v| v["type"] == "reconnected");
        assert_eq!(v["server"], b.as_str(), "{v}");
        let v = c.wait_for("authenticated again", |v| v["type"] == "authenticated");
        assert_eq!(v["resumed"], true, "{v}");
    }
    say(&mut bob, &mut alice, "lobby", "after");
    // Now the writer, it answers sottoctl through its event loop.
    let out = sottoctl_users(&dir.join("node-b"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
    let v = bob.run("/msg @alice across the takeover", "sent");
    assert_eq!(v["status"], "delivered", "{v}");
    alice.wait_for("the DM", |v| v["type"] == "dm" && v["text"] == "across the takeover");
    let mut erin = user_at(&b, &dir, "erin", &[]);
    assert_eq!(
        join_history(&mut erin, "/join lobby lobby-password", "lobby"),
        ["from the writer", "from the edge", "after"]
    );
}

#[test]
fn a_session_on_an_edge_gets_a_ticket_and_resumes_through_another_edge_when_its_own_dies() {
    let (nats, dir, writer, mut b) = writer_and_standby("cluster-resume");
    b.wait_edge();
    let mut c = standby_node(&dir.join("node-c"), "127.0.0.1:0", &nats, "c");
    c.wait_edge();
    let mut bob = user_at(&format!("{},{},{}", b.addr, c.addr, writer.addr), &dir, "bob", &[]);
    assert_eq!(bob.seen[0]["server"], b.addr.as_str());
    ok(&bob.run("/create lobby lobby-password", "create"), "create");
    // Its ticket: issued by the writer, sealed by edge b under the followed
    // keys. Edge b dies; edge c opens the ticket and the writer strikes it.
    let c_addr = c.addr.clone();
    b.kill9();
    bob.set_patience(Duration::from_secs(60));
    let v = bob.wait_for("reconnected", |v| v["type"] == "reconnected");
    assert_eq!(v["server"], c_addr.as_str(), "{v}");
    let v = bob.wait_for("authenticated again", |v| v["type"] == "authenticated");
    assert_eq!(v["resumed"], true, "resumed through edge c, not logged in again: {v}");
    // The resumed session is whole: the writer serves it through c.
    assert_eq!(bob.run("/join lobby lobby-password", "joined")["type"], "joined");
    let mut alice = user_at(&writer.addr, &dir, "alice", &[]);
    assert_eq!(alice.run("/join lobby lobby-password", "joined")["type"], "joined");
    say(&mut alice, &mut bob, "lobby", "to the resumed session");
    drop(c);
}

#[test]
fn one_users_limits_hold_across_the_nodes() {
    let nats = NatsCluster::start().expect("three NATS servers");
    let dir = TempDir::new("cluster-limits");
    let mut flags = node_flags(&nats, "a");
    flags.extend(["--sessions-per-user".to_owned(), "1".to_owned()]);
    let flags_a: Vec<&str> = flags.iter().map(String::as_str).collect();
    let writer = Server::start_on(&dir.join("node-a"), "127.0.0.1:0", &flags_a);
    let edge = edge_b(&dir, &flags);

    let alice = user_at(&writer.addr, &dir, "alice", &[]);
    // A second session through the edge is alice's second at the writer, which counts them all.
    let mut again = Client::start_with_args(&edge.addr, &dir.join("alice"), &[]);
    assert_eq!(again.next().expect("a first line")["type"], "connected");
    let v = again.ask(&format!("/login alice {PW} {WORDS}"));
    error(&v, "login", 403);
    assert_eq!(v["message"], "too many sessions: at most 1 per user; close one first");
    // Her session on the writer ends: the one through the edge is let in.
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = again.ask(&format!("/login alice {PW} {WORDS}"));
        if v["type"] == "authenticated" {
            break;
        }
        error(&v, "login", 403);
        assert!(Instant::now() < deadline, "the writer still counts the closed session: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_writer_paused_past_its_lease_exits_and_the_standby_writes_then_hands_over_at_its_stop() {
    use nix::sys::signal::Signal;
    let (nats, dir, mut writer, mut standby) = writer_and_standby("cluster-lease");
    writer.signal(Signal::SIGSTOP);
    standby.wait_listening();
    // A paused writer's connection stays open: its silence is a timeout, not
    // "no responders", and the lease had to lapse.
    let gone = |l: &String| l.contains("is gone (its NATS connection closed");
    assert!(!standby.stderr.lock().unwrap().iter().any(gone), "{:?}", standby.stderr.lock().unwrap());
    writer.signal(Signal::SIGCONT);
    exits_with_3(&mut writer, "writer lease lost: node b took it");
    // The new writer serves and writes.
    let mut alice = user_at(&standby.addr, &dir, "alice", &[]);
    ok(&alice.run("/create lobby lobby-password", "create"), "create");
    ok(&alice.run("/say lobby from b", "say"), "say");

    // Restarted by its supervisor, node a is a standby; node b stopped
    // cleanly gives up the lease, and a takes it at once, not after 5 s.
    let mut a = standby_node(&dir.join("node-a"), "127.0.0.1:0", &nats, "a");
    let b_log = standby.stderr.clone();
    assert!(standby.stop().success());
    assert!(b_log.lock().unwrap().iter().any(|l| l.contains("writer lease released: a standby takes over at once")));
    a.wait_listening();
    let took = |l: &String| l.contains("writer lease released by node b at its stop: taking it");
    assert!(a.stderr.lock().unwrap().iter().any(took), "{:?}", a.stderr.lock().unwrap());
    let mut dave = user_at(&a.addr, &dir, "dave", &[]);
    assert_eq!(join_history(&mut dave, "/join lobby lobby-password", "lobby"), ["from b"]);
}

/// Writes `subject`'s last message again as a rollup, as another node would:
/// a new sequence, the same content when that message holds all of it (a
/// whole record, or a history's first entry after the empty rollup of the
/// room's creation).
fn rewrite_as_another_node(urls: &str, subject: &str) {
    use async_nats::jetstream::{self, message::PublishMessage};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(urls.split(',').next().unwrap()).await.expect("connect to NATS");
        let js = jetstream::new(client);
        let stream = js.get_stream("SOTTO").await.expect("the records stream");
        let last = stream.get_last_raw_message_by_subject(subject).await.expect("the record");
        let msg = PublishMessage::build()
            .payload(last.payload.clone())
            .header("Sotto-Op", "R1")
            .header("Nats-Rollup", "sub")
            .expected_last_subject_sequence(last.sequence);
        js.send_publish(subject.to_owned(), msg).await.unwrap().await.expect("stored");
    });
}

#[test]
fn a_writer_fenced_by_another_nodes_write_exits_and_the_standby_serves() {
    let (nats, dir, mut writer, mut standby) = writer_and_standby("cluster-fence");
    let servers = format!("{},{}", writer.addr, standby.addr);
    let mut alice = user_at(&servers, &dir, "alice", &[]);
    alice.set_patience(Duration::from_secs(90));
    ok(&alice.run("/create lobby lobby-password", "create"), "create");
    ok(&alice.run("/say lobby before", "say"), "say");

    // The room's history (sotto.r.hist.lobby) holds "before", appended after its creation's empty rollup.
    rewrite_as_another_node(&nats.urls(), "sotto.r.hist.lobby");
    // The writer's next write of the room is refused: it stores nothing and exits.
    alice.send("/say lobby after");
    exits_with_3(&mut writer, "sotto.r.hist.lobby was written by another node");
    // The standby takes over with the state as stored; the client sends again there.
    standby.wait_listening();
    let v = alice.wait_for("reconnected", |v| v["type"] == "reconnected");
    assert_eq!(v["server"], standby.addr.as_str(), "{v}");
    let v = alice.wait_for("the answer to /say", |v| v["cmd"] == "say" && (v["type"] == "ok" || v["type"] == "error"));
    ok(&v, "say");
    let mut dave = user_at(&servers, &dir, "dave", &[]);
    assert_eq!(join_history(&mut dave, "/join lobby lobby-password", "lobby"), ["before", "after"]);
}

/// How many chunk records of file `id` (16 hex digits) the `SOTTO_CHUNKS` stream holds.
fn chunks_in_jetstream(urls: &str, id: &str) -> u64 {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(urls.split(',').next().unwrap()).await.expect("connect to NATS");
        let stream = async_nats::jetstream::new(client).get_stream("SOTTO_CHUNKS").await.expect("the chunks stream");
        let mut info = stream.info_with_subjects(format!("sotto.c.{id}.>")).await.expect("subjects");
        let mut n = 0;
        while let Some(s) = info.next().await {
            n += s.expect("a subject").1 as u64;
        }
        n
    })
}

#[test]
fn a_file_crosses_a_cluster_node_whole_and_its_chunks_leave_jetstream_once_its_recipient_has_it() {
    let nats = NatsCluster::start().expect("three NATS servers");
    let dir = TempDir::new("cluster-file");
    let mut flags = node_flags(&nats, "a");
    flags.extend(["--max-bps", "0"].map(String::from));
    let flags_a: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = Server::start_on(&dir.join("node-a"), "127.0.0.1:0", &flags_a);
    // bob downloads through an edge: its chunks cross the relay, paced by
    // what the edge reports written to him.
    let edge = edge_b(&dir, &flags);
    let mut alice = user(&node, &dir, "alice", &[]);
    let mut bob = user_at(&edge.addr, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    // 1 MiB and a bit: 65 chunks of 16 KiB.
    let bytes: Vec<u8> = (0..(1 << 20) + 100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let src = dir.join("report.bin");
    std::fs::write(&src, &bytes).unwrap();
    let v = alice.run(&format!("/send @bob {}", src.display()), "file_offered");
    assert_eq!(v["type"], "file_offered", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    alice.wait_for("file_uploaded", |v| v["type"] == "file_uploaded" && v["id"] == id);
    assert_eq!(chunks_in_jetstream(&nats.urls(), &id), 65, "every chunk stored in JetStream");

    bob.wait_for("file_offer", |v| v["type"] == "file_offer" && v["id"] == id);
    let into = dir.join("downloads");
    std::fs::create_dir_all(&into).unwrap();
    bob.send(&format!("/get {id} {}", into.display()));
    let v = bob.wait_for("file_received", |v| {
        (v["type"] == "file_received" && v["id"] == id) || (v["type"] == "error" && v["cmd"] == "get")
    });
    assert_eq!((v["type"].as_str(), v["verified"].as_bool()), (Some("file_received"), Some(true)), "{v}");
    let got = std::fs::read(v["path"].as_str().unwrap()).unwrap();
    assert!(got == bytes, "the file received differs from the file sent");

    // Received (`fldn`): a DM file is deleted, the record at once, the chunks in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    while chunks_in_jetstream(&nats.urls(), &id) != 0 {
        assert!(
            Instant::now() < deadline,
            "{} chunks of the expired file left",
            chunks_in_jetstream(&nats.urls(), &id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last_op_of(&nats.urls(), &format!("sotto.r.file.{id}")), "D", "the file's record removed");
}

/// The operation header (`Sotto-Op`) of `subject`'s last message in the records stream.
fn last_op_of(urls: &str, subject: &str) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(urls.split(',').next().unwrap()).await.expect("connect to NATS");
        let stream = async_nats::jetstream::new(client).get_stream("SOTTO").await.expect("the records stream");
        let last = stream.get_last_raw_message_by_subject(subject).await.expect("the record");
        last.headers.get("Sotto-Op").map(|v| v.as_str().to_owned()).unwrap_or_default()
    })
}
