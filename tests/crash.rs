//! Crash safety through the real binaries: alice and bob talk in a room and
//! send direct messages (to each other, and to carol, who is offline) while
//! sottod is `kill -9`'d at random moments and restarted on the same port.
//! After each restart a reader joins the room and takes the history.
//!
//! Checked: every room message acknowledged to its sender is in the history
//! taken after it, exactly once; every history is free of corrupt entries and
//! consistent with the one before (what they share is a suffix of the older
//! and a prefix of the newer); and every direct message acknowledged to its
//! sender reaches its recipient exactly once, also those queued for carol.
//!
//! The schedule comes from a seed, printed first (the test output shows it on
//! failure); `SOTTO_CRASH_SEED=N` replays one.
//!
//! In cluster mode the same runs against two sottod nodes on three real NATS
//! servers (JetStream, R3): a writer and an edge (DESIGN §8 "Edges"), the
//! clients given both addresses, bob the edge's first (his messages cross
//! the relay). A crash is a `kill -9` of the writer, whose node the edge
//! takes over, and a new edge starts on the killed node's address; the third
//! is a `kill -9` of the edge instead, whose clients go to the writer while
//! a new edge starts in its place. One NATS server is killed at the second
//! crash and restarted at the fourth.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{relogin_at, user_at, Client, Server, TempDir};
use serde_json::Value;
use sotto::nats_harness::NatsCluster;

/// Kills per run.
const CRASHES: usize = 4;
/// Room messages a sender attempts between two history snapshots: two
/// senders, plus one in flight each, stay under the 20 kept.
const ROOM_BUDGET: usize = 8;
const FLAGS: &[&str] = &["--rate", "off"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A room message attempt: its text, when it was sent, when it was acknowledged.
struct Say {
    text: String,
    started: Instant,
    acked: Option<Instant>,
}

/// A direct message: its id, recipient and text.
struct Dm {
    id: String,
    to: String,
    text: String,
}

/// One history snapshot: the texts, oldest first, and when it was taken.
struct Snapshot {
    started: Instant,
    ended: Instant,
    texts: Vec<String>,
}

/// Talks until `stop`: a room message (within the budget of the current
/// epoch), then a DM to each of `peers`, again and again. `served` is set to
/// the epoch of the last acknowledged room message, plus one.
fn talk(
    mut c: Client,
    me: &str,
    peers: &[&str],
    stop: &AtomicBool,
    epoch: &AtomicUsize,
    served: &AtomicUsize,
) -> (Client, Vec<Say>, Vec<Dm>) {
    let (mut says, mut dms) = (Vec::new(), Vec::new());
    let mut known: HashSet<String> = HashSet::new();
    let (mut spent, mut spent_in) = (0, usize::MAX);
    let (mut k, mut j) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        let e = epoch.load(Ordering::SeqCst);
        if e != spent_in {
            (spent, spent_in) = (0, e);
        }
        let mut offline = false;
        if spent < ROOM_BUDGET {
            spent += 1;
            k += 1;
            let text = format!("{me} room {k}");
            let started = Instant::now();
            let v = c.run(&format!("/say lobby {text}"), "say");
            let acked = (v["type"] == "ok").then(Instant::now);
            offline |= acked.is_none();
            if acked.is_some() {
                served.store(e + 1, Ordering::SeqCst);
            }
            says.push(Say { text, started, acked });
        }
        for peer in peers {
            j += 1;
            let text = format!("{me} to {peer} {j}");
            c.send(&format!("/msg @{peer} {text}"));
            // The answer is a `sent` or `pending` with a new id (older ids' `sent` come too), or an error.
            let v = c.wait_for("the answer to /msg", |v| {
                let new_id = v["id"].as_str().is_some_and(|id| !known.contains(id));
                (v["type"] == "sent" || v["type"] == "pending") && new_id || v["type"] == "error" && v["cmd"] == "msg"
            });
            if let Some(id) = v["id"].as_str() {
                known.insert(id.to_owned());
                dms.push(Dm { id: id.to_owned(), to: (*peer).to_owned(), text });
            }
            offline |= v["type"] != "sent";
        }
        std::thread::sleep(Duration::from_millis(if offline { 200 } else { 20 }));
    }
    (c, says, dms)
}

/// The room's history as a fresh session of dave sees it.
fn snapshot(servers: &str, dir: &TempDir) -> Snapshot {
    let started = Instant::now();
    let mut dave = relogin_at(servers, dir, "dave", &[]);
    assert_eq!(dave.run("/join lobby", "joined")["type"], "joined");
    // Requests are answered in order: the history precedes the answer to /who.
    assert_eq!(dave.run("/who lobby", "who")["type"], "who");
    let history: Vec<Value> =
        dave.take_backlog().into_iter().filter(|v| v["type"] == "room_message" && v["history"] == true).collect();
    for m in &history {
        assert!(m["verified"] == true && m.get("error").is_none(), "a corrupt history entry: {m}");
    }
    let texts: Vec<String> = history.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect();
    Snapshot { started, ended: Instant::now(), texts }
}

/// Each sender's messages appear once, in the order sent.
fn check_snapshot(s: &Snapshot) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for t in &s.texts {
        let (who, n) = t.split_once(" room ").unwrap_or_else(|| panic!("a foreign entry {t:?}"));
        let n: u64 = n.parse().unwrap();
        let prev = last.insert(who, n).unwrap_or(0);
        assert!(n > prev, "{who}'s messages out of order or repeated in {:?}", s.texts);
    }
}

/// What two consecutive histories share is a suffix of the older and a prefix of the newer.
fn check_consistent(older: &Snapshot, newer: &Snapshot) {
    let in_newer: HashSet<&String> = newer.texts.iter().collect();
    let shared: Vec<&String> = older.texts.iter().filter(|t| in_newer.contains(t)).collect();
    let n = shared.len();
    let suffix: Vec<&String> = older.texts[older.texts.len() - n..].iter().collect();
    let prefix: Vec<&String> = newer.texts[..n].iter().collect();
    assert!(
        shared == suffix && shared == prefix,
        "histories not prefix-consistent:\n older {:?}\n newer {:?}",
        older.texts,
        newer.texts
    );
}

/// `asker` asks `askee` for a DM channel, which accepts.
fn channel(asker: &mut Client, asker_name: &str, askee: &mut Client, askee_name: &str) {
    assert_eq!(asker.run(&format!("/dm @{askee_name}"), "dm")["type"], "ok");
    askee.wait_for("dm_request", |v| v["type"] == "dm_request" && v["from"] == asker_name);
    assert_eq!(askee.run(&format!("/accept @{asker_name}"), "dm_accepted")["type"], "dm_accepted");
    asker.wait_for("dm_accepted", |v| v["type"] == "dm_accepted" && v["with"] == askee_name);
}

/// The servers under test: one sottod on files, or two cluster nodes on NATS.
struct Deployment {
    nats: Option<NatsCluster>,
    /// The data directory (files), or where the nodes' directories go (cluster).
    dir: PathBuf,
    /// The serving node (the writer, in cluster mode); `None` only mid-crash.
    server: Option<Server>,
    /// Cluster mode: the node waiting for the writer's lease (an edge).
    standby: Option<Server>,
    /// The clients' `--server` list.
    servers: String,
    /// The same nodes, the edge first (cluster mode; the list itself on files).
    edge_first: String,
    /// Nodes started so far (cluster mode names them n1, n2, …).
    started: usize,
}

impl Deployment {
    fn files(dir: &TempDir) -> Deployment {
        let data = dir.join("data");
        let server = Server::start_on(&data, "127.0.0.1:0", FLAGS);
        let servers = server.addr.clone();
        let edge_first = servers.clone();
        Deployment { nats: None, dir: data, server: Some(server), standby: None, servers, edge_first, started: 1 }
    }

    fn cluster(dir: &TempDir) -> Deployment {
        let nats = NatsCluster::start().expect("three NATS servers");
        let server = Deployment::node(&nats, &dir.join("n1"), "127.0.0.1:0", "n1", false);
        let standby = Deployment::node(&nats, &dir.join("n2"), "127.0.0.1:0", "n2", true);
        let servers = format!("{},{}", server.addr, standby.addr);
        let edge_first = format!("{},{}", standby.addr, server.addr);
        Deployment {
            nats: Some(nats),
            dir: dir.0.clone(),
            server: Some(server),
            standby: Some(standby),
            servers,
            edge_first,
            started: 2,
        }
    }

    fn node(nats: &NatsCluster, data: &Path, listen: &str, name: &str, standby: bool) -> Server {
        let urls = nats.urls();
        let mut flags = FLAGS.to_vec();
        flags.extend(["--cluster", &urls, "--node", name, "--cluster-replicas", "3"]);
        if standby {
            let mut edge = Server::start_standby(data, listen, &flags);
            edge.wait_edge();
            edge
        } else {
            Server::start_on(data, listen, &flags)
        }
    }

    /// `kill -9` of the serving node (in a cluster, of the edge at the
    /// third); returns once a node serves again.
    fn crash(&mut self, crash: usize, rng: &mut Rng) {
        if let (Some(nats), 2) = (self.nats.as_ref(), crash) {
            let edge = self.standby.take().expect("an edge");
            let addr = edge.addr.clone();
            eprintln!("crash {crash}: kill -9 of the edge {addr}");
            edge.kill9();
            self.started += 1;
            let name = format!("n{}", self.started);
            self.standby = Some(Deployment::node(nats, &self.dir.join(&name), &addr, &name, true));
            return;
        }
        let killed = self.server.take().expect("a serving node");
        let addr = killed.addr.clone();
        eprintln!("crash {crash}: kill -9 of {addr}");
        killed.kill9();
        let Some(nats) = self.nats.as_mut() else {
            if rng.next() % 2 == 0 {
                // Sometimes down for a moment, so that clients see refused connections.
                std::thread::sleep(Duration::from_millis(rng.between(0, 700)));
            }
            self.server = Some(Server::start_on(&self.dir, &addr, FLAGS));
            return;
        };
        if crash == 1 {
            nats.kill(1);
            eprintln!("crash {crash}: NATS server 2 of 3 killed");
        }
        let mut standby = self.standby.take().expect("a standby");
        standby.wait_listening();
        eprintln!("crash {crash}: {} took over", standby.addr);
        self.started += 1;
        let name = format!("n{}", self.started);
        self.standby = Some(Deployment::node(nats, &self.dir.join(&name), &addr, &name, true));
        self.server = Some(standby);
        if crash == 3 {
            nats.restart(1).expect("NATS restarted");
            eprintln!("crash {crash}: NATS server 2 of 3 restarted");
        }
    }
}

#[test]
fn acknowledged_messages_survive_kill_9_exactly_once() {
    crash_test(false);
}

#[test]
fn acknowledged_messages_survive_kill_9_exactly_once_in_a_cluster() {
    crash_test(true);
}

fn crash_test(cluster: bool) {
    let seed = std::env::var("SOTTO_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("crash test seed {seed} (replay with SOTTO_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    // A takeover waits for the writer's lease to lapse (5 s), and clients
    // retry with a back-off of up to 30 s.
    let (budget, patience) = if cluster { (600, 120) } else { (240, 30) };
    let deadline = Instant::now() + Duration::from_secs(budget);

    let dir = TempDir::new("crash");
    let mut dep = if cluster { Deployment::cluster(&dir) } else { Deployment::files(&dir) };
    if cluster {
        eprintln!("cluster mode: two sottod nodes on three NATS servers (JetStream R3)");
    }
    let servers = dep.servers.clone();
    let mut alice = user_at(&servers, &dir, "alice", &[]);
    let mut bob = user_at(&dep.edge_first, &dir, "bob", &[]);
    let mut carol = user_at(&servers, &dir, "carol", &[]);
    let mut dave = user_at(&servers, &dir, "dave", &[]);
    for c in [&mut alice, &mut bob] {
        c.set_patience(Duration::from_secs(patience));
    }
    assert_eq!(alice.run("/create lobby lobby-password", "create")["type"], "ok");
    for c in [&mut bob, &mut dave] {
        assert_eq!(c.run("/join lobby lobby-password", "joined")["type"], "joined");
    }
    drop(dave);
    // DM channels: alice-bob, alice-carol, bob-carol.
    channel(&mut alice, "alice", &mut bob, "bob");
    channel(&mut alice, "alice", &mut carol, "carol");
    channel(&mut bob, "bob", &mut carol, "carol");
    // carol goes offline: everything for her is queued.
    drop(carol);

    let stop = AtomicBool::new(false);
    let epoch = AtomicUsize::new(0);
    let served = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let mut snapshots = vec![snapshot(&servers, &dir)];
    let (alice, alice_says, alice_dms, bob, bob_says, bob_dms) = std::thread::scope(|s| {
        let a = s.spawn(|| talk(alice, "alice", &["bob", "carol"], &stop, &epoch, &served[0]));
        let b = s.spawn(|| talk(bob, "bob", &["alice", "carol"], &stop, &epoch, &served[1]));
        for crash in 0..CRASHES {
            assert!(Instant::now() < deadline, "seed {seed}: out of time");
            std::thread::sleep(Duration::from_millis(rng.between(300, 1500)));
            dep.crash(crash, &mut rng);
            snapshots.push(snapshot(&servers, &dir));
            let e = epoch.fetch_add(1, Ordering::SeqCst) + 1;
            if cluster {
                // Each talker back and acknowledged before the next kill: a client
                // whose retries all fell into takeovers would wait out its back-off.
                while served.iter().any(|s| s.load(Ordering::SeqCst) <= e) {
                    assert!(
                        Instant::now() < deadline,
                        "seed {seed}: the talkers did not come back after crash {crash}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let (alice, alice_says, alice_dms) = a.join().expect("alice's thread");
        let (bob, bob_says, bob_dms) = b.join().expect("bob's thread");
        (alice, alice_says, alice_dms, bob, bob_says, bob_dms)
    });
    let (mut alice, mut bob) = (alice, bob);

    // Whatever is still in an outbox goes out now: every DM ends up acknowledged.
    for (c, dms) in [(&mut alice, &alice_dms), (&mut bob, &bob_dms)] {
        for d in dms.iter() {
            if !c.seen.iter().any(|v| v["type"] == "sent" && v["id"] == d.id.as_str()) {
                c.wait_for("the outbox to drain", |v| v["type"] == "sent" && v["id"] == d.id.as_str());
            }
        }
    }
    snapshots.push(snapshot(&servers, &dir));

    // Room: every acknowledged message is in the history taken after its ack.
    for s in &snapshots {
        check_snapshot(s);
    }
    for w in snapshots.windows(2) {
        check_consistent(&w[0], &w[1]);
    }
    let says: Vec<&Say> = alice_says.iter().chain(bob_says.iter()).collect();
    let acked = says.iter().filter(|m| m.acked.is_some()).count();
    assert!(acked >= 10, "seed {seed}: only {acked} room messages were acknowledged");
    for m in says.iter().filter(|m| m.acked.is_some()) {
        let acked_at = m.acked.unwrap();
        let i = snapshots.iter().position(|s| s.started > acked_at).expect("a snapshot after every ack");
        let mut holders = vec![&snapshots[i]];
        if m.started < snapshots[i - 1].ended {
            // Stored around the previous snapshot: in that one or this one.
            holders.push(&snapshots[i - 1]);
        }
        assert!(
            holders.iter().any(|s| s.texts.contains(&m.text)),
            "seed {seed}: acknowledged room message {:?} is missing from the history after it",
            m.text
        );
    }

    // DMs: each acknowledged one reaches its recipient exactly once, and nothing else does.
    let mut carol = relogin_at(&servers, &dir, "carol", &[]);
    let all: Vec<&Dm> = alice_dms.iter().chain(bob_dms.iter()).collect();
    assert!(all.iter().filter(|d| d.to == "carol").count() >= 4, "seed {seed}: too few DMs to carol");
    for (name, c) in [("alice", &mut alice), ("bob", &mut bob), ("carol", &mut carol)] {
        let mine: Vec<&&Dm> = all.iter().filter(|d| d.to == name).collect();
        for d in &mine {
            if !c.seen.iter().any(|v| v["type"] == "dm" && v["id"] == d.id.as_str()) {
                c.wait_for("a DM", |v| v["type"] == "dm" && v["id"] == d.id.as_str());
            }
        }
        // Late duplicates would show up now.
        c.settle(Duration::from_millis(1500));
        let mut count: HashMap<&str, usize> = HashMap::new();
        for v in c.seen.iter().filter(|v| v["type"] == "dm") {
            let id = v["id"].as_str().unwrap();
            let d = mine
                .iter()
                .find(|d| d.id == id)
                .unwrap_or_else(|| panic!("seed {seed}: {name} got a DM never sent: {v}"));
            assert_eq!(v["text"], d.text.as_str(), "seed {seed}: {v}");
            assert_eq!(v["verified"], true, "seed {seed}: {v}");
            *count.entry(d.id.as_str()).or_default() += 1;
        }
        for d in &mine {
            assert_eq!(
                count.get(d.id.as_str()),
                Some(&1),
                "seed {seed}: DM {} to {name} delivered {:?} times",
                d.id,
                count.get(d.id.as_str())
            );
        }
    }
    // Live room messages: never twice.
    let mut live = HashSet::new();
    for c in [&alice, &bob] {
        live.clear();
        for v in c.seen.iter().filter(|v| v["type"] == "room_message" && v["history"] == false) {
            let text = v["text"].as_str().unwrap().to_owned();
            assert!(live.insert(text.clone()), "seed {seed}: live room message {text:?} shown twice");
        }
    }
    eprintln!(
        "seed {seed}: {acked} of {} room messages acknowledged, {} DMs, {} snapshots",
        says.len(),
        all.len(),
        snapshots.len()
    );
}
