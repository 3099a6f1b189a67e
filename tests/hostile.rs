//! Hostile clients against a live sottod. Each attack runs while a legitimate
//! client connects, logs in, joins a room and talks, and each of those steps
//! must still finish within five seconds, and the message must reach the other
//! member within that: a liveness bound (a server the attack stalls or starves
//! misses it), not a latency figure, which is the benchmarks' job; a login's
//! argon2id alone took over a second here while `make test` shared the two
//! cores with other builds.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 and up): the
//! per-address limits exist so that an attacker's connections do not count
//! against anyone else's. The attacks run one at a time (`SERIAL`), since the
//! bound is about the server, not about eleven attacks sharing two cores.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::raw::{closed_by_peer, connect_from, Raw};
use common::{client_for, ok, user, Client, Server, TempDir, PW, WORDS};
use sotto::handshake::{self, ClientConfig, SERVER_HELLO_LEN};
use sotto::opcodes::{
    CreateRoom, Heartbeat, JoinRoom, Login, SendRoomMessageM, StatusReply, MAX_MESSAGE, OPCODES, STAT,
};
use sotto::wire::{code, Message, State};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

static SERIAL: Mutex<()> = Mutex::new(());

/// What every legitimate step must stay under.
const BOUND: Duration = Duration::from_secs(5);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `i`-th attacker address: 127.0.0.2, 127.0.0.3, ...
fn attacker(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    sotto::crypto::fill_random(&mut v);
    v
}

fn within(what: &str, since: Instant) {
    let took = since.elapsed();
    assert!(took < BOUND, "{what} took {took:?} under attack (bound {BOUND:?})");
}

/// A live server with accounts alice and bob (bob online, in room `lobby`)
/// and `extra` accounts for the attacker's raw sessions.
struct Scene {
    dir: TempDir,
    server: Server,
    bob: Client,
    round: usize,
}

impl Scene {
    fn new(tag: &str, flags: &[&str], extra: &[&str]) -> Scene {
        let dir = TempDir::new(tag);
        let mut args = vec!["--log-level", "debug"];
        args.extend_from_slice(flags);
        let server = Server::start_with(&dir.join("data"), &args);
        let mut alice = user(&server, &dir, "alice", &[]);
        ok(&alice.run("/create lobby lobby-password", "create"), "create");
        drop(alice);
        let mut bob = user(&server, &dir, "bob", &[]);
        assert_eq!(bob.run("/join lobby lobby-password", "joined")["type"], "joined");
        for name in extra {
            drop(user(&server, &dir, name, &[]));
        }
        Scene { dir, server, bob, round: 0 }
    }

    /// One legitimate session: connect, log in, join, say; bob sees it. Each step within [`BOUND`].
    fn legit_round(&mut self) {
        self.round += 1;
        let text = format!("legit message {}", self.round);
        let t = Instant::now();
        let mut alice = client_for(&self.server, &self.dir, "alice", &[]);
        within("connect and handshake", t);
        let t = Instant::now();
        let v = alice.run(&format!("/login alice {PW} {WORDS}"), "authenticated");
        assert_eq!(v["type"], "authenticated", "{v}");
        within("login", t);
        let t = Instant::now();
        assert_eq!(alice.run("/join lobby", "joined")["type"], "joined");
        within("join", t);
        let t = Instant::now();
        ok(&alice.run(&format!("/say lobby {text}"), "say"), "say");
        within("say", t);
        self.bob.wait_for("the legitimate message", |v| v["type"] == "room_message" && v["text"] == text.as_str());
        within("say and delivery to bob", t);
    }

    /// Runs `attack` in a thread while three legitimate rounds run here; the
    /// attack sees `stop` set once they are done. Returns what the attack returns.
    fn under_attack<T: Send>(&mut self, attack: impl FnOnce(&AtomicBool) -> T + Send) -> T {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| attack(&stop));
            // Let the attack get going first.
            std::thread::sleep(Duration::from_millis(300));
            let rounds = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for _ in 0..3 {
                    self.legit_round();
                }
            }));
            stop.store(true, Ordering::SeqCst);
            let out = h.join().expect("attack thread");
            if let Err(e) = rounds {
                std::panic::resume_unwind(e);
            }
            out
        })
    }

    fn log(&self) -> String {
        self.server.stderr.lock().unwrap().join("\n")
    }

    /// Waits up to `within` for a log line containing `needle`.
    fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

#[test]
fn slowloris_a_byte_every_second() {
    let _g = serial();
    let mut scene = Scene::new("h-slowloris", &["--handshake-timeout", "3"], &[]);
    let addr = scene.server.addr.clone();
    let hello = handshake::client_hello(&ClientConfig::built_in().unwrap()).1;
    let opened = Instant::now();
    let mut conns: Vec<TcpStream> = (0..20).map(|_| connect_from(attacker(0), &addr, None).unwrap()).collect();
    let sent = scene.under_attack(|stop| {
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) && sent < hello.len() {
            for c in &mut conns {
                let _ = c.write_all(&hello[sent..=sent]);
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        sent
    });
    assert!(sent < hello.len(), "the hello was sent whole");
    // The handshake timeout (3 s here) ends every one of them.
    let left = Duration::from_secs(6).saturating_sub(opened.elapsed());
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(closed_by_peer(c, left.max(Duration::from_millis(100))), "slowloris connection {i} still open");
    }
    assert!(scene.wait_log("handshake timeout", BOUND), "{}", scene.log());
}

/// Announces a 4 GiB frame before a handshake and inside a session; both
/// connections must be closed at once. Returns how many were.
fn four_gib_frames(addr: &str) -> usize {
    let mut pre = connect_from(attacker(0), addr, None).unwrap();
    let _ = pre.write_all(&[0xff, 0xff, 0xff, 0xff]);
    let _ = pre.write_all(&random_bytes(64 * 1024));
    let t = Instant::now();
    assert!(closed_by_peer(&mut pre, BOUND), "a 4 GiB frame before the handshake was not refused");
    within("refusing a 4 GiB frame", t);
    let Ok(mut s) = Raw::handshake(connect_from(attacker(1), addr, None).unwrap()) else {
        return 1; // the handshake rate limit of this address
    };
    let _ = s.stream.write_all(&u32::MAX.to_be_bytes());
    let _ = s.stream.write_all(&random_bytes(64 * 1024));
    let t = Instant::now();
    assert!(closed_by_peer(&mut s.stream, BOUND), "a 4 GiB frame in a session was not refused");
    within("refusing a 4 GiB frame", t);
    2
}

#[test]
fn a_frame_announcing_4_gib_is_refused_without_allocating_it() {
    let _g = serial();
    let mut scene = Scene::new("h-4gib", &[], &[]);
    let addr = scene.server.addr.clone();
    // Alone first, to see the memory it costs: nothing worth the name.
    let rss_before = scene.server.rss_kib();
    for _ in 0..20 {
        four_gib_frames(&addr);
        std::thread::sleep(Duration::from_millis(25));
    }
    let grown = scene.server.rss_kib().saturating_sub(rss_before);
    assert!(grown < 4 * 1024, "sottod grew by {grown} KiB");
    let closed = scene.under_attack(|stop| {
        let mut closed = 0;
        while !stop.load(Ordering::SeqCst) {
            closed += four_gib_frames(&addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        closed
    });
    assert!(closed >= 4, "{closed}");
    assert!(scene.wait_log("framing error", BOUND), "{}", scene.log());
}

#[test]
fn random_garbage_is_dropped() {
    let _g = serial();
    let mut scene = Scene::new("h-garbage", &[], &[]);
    let addr = scene.server.addr.clone();
    let (made, closed) = scene.under_attack(|stop| {
        let (mut made, mut closed) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            let mut c = connect_from(attacker(made % 4), &addr, None).unwrap();
            made += 1;
            // Small announced lengths too, so that some garbage reaches the hello check.
            let mut junk = random_bytes(8 * 1024);
            if made % 2 == 0 {
                junk[..4].copy_from_slice(&160u32.to_be_bytes());
            }
            let _ = c.write_all(&junk);
            if closed_by_peer(&mut c, BOUND) {
                closed += 1;
            }
        }
        (made, closed)
    });
    assert!(made >= 3);
    assert_eq!(made, closed, "every garbage connection is closed within {BOUND:?}");
    assert!(scene.wait_log("bad client hello", BOUND) && scene.wait_log("framing error", BOUND), "{}", scene.log());
}

#[test]
fn garbage_after_a_valid_handshake_ends_that_session_only() {
    let _g = serial();
    let mut scene = Scene::new("h-postgarbage", &[], &[]);
    let addr = scene.server.addr.clone();
    let closed = scene.under_attack(|stop| {
        let mut closed = 0u32;
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut s) = Raw::handshake(connect_from(attacker(closed % 8), &addr, None).unwrap()) else {
                continue;
            };
            // A well-framed record of garbage, then raw garbage.
            let mut frame = Vec::new();
            sotto::frame::encode(&random_bytes(16 + 1024 + 32), &mut frame);
            let _ = s.stream.write_all(&frame);
            let _ = s.stream.write_all(&random_bytes(4096));
            assert!(closed_by_peer(&mut s.stream, BOUND), "a session sending garbage stayed open");
            closed += 1;
        }
        closed
    });
    assert!(closed >= 3, "{closed}");
    assert!(scene.wait_log("bad record", BOUND), "{}", scene.log());
}

/// A sealed login request for `user`.
fn login_request(user: &str) -> Login {
    let mut l = Login::new_zeroed();
    l.set_username(user).unwrap();
    l.auth_secret = *sotto::account::auth_secret(user, PW);
    *l.header_mut() = *Login::request(7, common::raw::now_ms()).header();
    l
}

#[test]
fn a_record_captured_in_one_session_is_refused_in_another() {
    let _g = serial();
    let mut scene = Scene::new("h-replay-other", &[], &["mallory"]);
    let addr = scene.server.addr.clone();
    let replays = scene.under_attack(|stop| {
        let mut replays = 0;
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut a) = Raw::handshake(connect_from(attacker(0), &addr, None).unwrap()) else { continue };
            let Ok(mut b) = Raw::handshake(connect_from(attacker(1), &addr, None).unwrap()) else { continue };
            // A login record that works in session a...
            let captured = a.seal(login_request("mallory").as_bytes());
            a.stream.write_all(&captured).unwrap();
            let st = a.stat_for(7).expect("an answer in the original session");
            assert_eq!(st.hdr.code.get(), code::PENDING);
            // ...closes session b without an answer, and logs nobody in there.
            let t = Instant::now();
            b.stream.write_all(&captured).unwrap();
            assert!(b.recv().is_none(), "the replayed record was answered");
            within("closing the replaying session", t);
            replays += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        replays
    });
    assert!(replays >= 2, "{replays}");
    assert!(scene.wait_log("bad record", BOUND), "{}", scene.log());
}

#[test]
fn a_record_replayed_in_the_same_session_ends_it() {
    let _g = serial();
    let mut scene = Scene::new("h-replay-same", &[], &[]);
    let addr = scene.server.addr.clone();
    let replays = scene.under_attack(|stop| {
        let mut replays = 0;
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut s) = Raw::handshake(connect_from(attacker(0), &addr, None).unwrap()) else { continue };
            let mut ping = Heartbeat::new_zeroed();
            *ping.header_mut() = *Heartbeat::request(1, 0).header();
            let rec = s.seal(ping.as_bytes());
            s.stream.write_all(&rec).unwrap();
            // Before a login the answer is a 401, which shows the record was taken.
            assert!(s.stat_for(1).is_some(), "the original record was not answered");
            let t = Instant::now();
            s.stream.write_all(&rec).unwrap();
            assert!(s.recv().is_none(), "the replayed record was answered");
            within("closing the session", t);
            replays += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        replays
    });
    assert!(replays >= 2, "{replays}");
}

#[test]
fn a_flood_of_1000_handshakes() {
    let _g = serial();
    let mut scene = Scene::new("h-hsflood", &[], &[]);
    let addr = scene.server.addr.clone();
    let answered = AtomicUsize::new(0);
    let dropped = AtomicUsize::new(0);
    let started = Instant::now();
    scene.under_attack(|stop| {
        // Ten addresses, at least 100 handshakes each, as fast as the server
        // takes them, and on until the legitimate rounds are done.
        std::thread::scope(|s| {
            for t in 0..10 {
                let (addr, answered, dropped) = (&addr, &answered, &dropped);
                s.spawn(move || {
                    let cfg = ClientConfig::built_in().unwrap();
                    let mut n = 0;
                    while n < 100 || !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let mut c = connect_from(attacker(t), addr, None).unwrap();
                        let (_, hello) = handshake::client_hello(&cfg);
                        let _ = c.write_all(&hello);
                        let mut d = sotto::frame::Deframer::new(SERVER_HELLO_LEN);
                        let mut buf = [0u8; 1024];
                        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let got = loop {
                            match std::io::Read::read(&mut c, &mut buf) {
                                Ok(0) | Err(_) => break false,
                                Ok(n) => d.push(&buf[..n]),
                            }
                            if let Ok(Some(_)) = d.pop() {
                                break true;
                            }
                        };
                        if got { answered } else { dropped }.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
    });
    let (answered, dropped) = (answered.into_inner(), dropped.into_inner());
    assert!(answered + dropped >= 1000, "{answered} + {dropped}");
    // Signed at most 50 per second per address (the default), plus the first second's allowance.
    let cap = 10 * 50 * (started.elapsed().as_secs() as usize + 2);
    assert!(answered > 0 && answered <= cap, "answered {answered}, cap {cap}");
}

#[test]
fn two_thousand_half_open_connections() {
    let _g = serial();
    let mut scene = Scene::new("h-halfopen", &["--handshake-timeout", "60"], &[]);
    let addr = scene.server.addr.clone();
    // 63 per address (the per-address cap is 64) from 32 addresses.
    let mut conns = Vec::new();
    for i in 0..2000u32 {
        let mut c = connect_from(attacker(i / 63), &addr, None).unwrap();
        // Half of them send half a hello.
        if i % 2 == 0 {
            c.write_all(&[0, 0, 0, 160, b'S', b'O']).unwrap();
        }
        conns.push(c);
    }
    scene.under_attack(|stop| {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // The server held them all: none was closed during the rounds.
    let open = conns.iter_mut().filter_map(|c| (!closed_by_peer(c, Duration::from_millis(1))).then_some(())).count();
    assert_eq!(open, 2000, "sottod dropped half-open connections it had room for");
}

#[test]
fn a_client_that_never_reads_in_a_busy_room_is_dropped_alone() {
    let _g = serial();
    let mut scene = Scene::new("h-noread", &["--rate", "off", "--max-bps", "0"], &["talker", "hog"]);
    let addr = scene.server.addr.clone();
    let auth = sotto::crypto::random::<32>();
    let mut talker = Raw::connect(&addr);
    talker.login("talker", PW, WORDS);
    let mut create = CreateRoom::new_zeroed();
    create.set_room("busy").unwrap();
    create.salt = sotto::crypto::random();
    create.verifier = sotto::room::verifier(&auth);
    let id = talker.request(create);
    assert_eq!(talker.stat_for(id).unwrap().hdr.code.get(), code::OK);
    // The hog: a tiny receive window, joins, never reads again.
    let mut hog = Raw::handshake(connect_from(attacker(0), &addr, Some(2048)).unwrap()).unwrap();
    hog.login("hog", PW, WORDS);
    let mut join = JoinRoom::new_zeroed();
    join.set_room("busy").unwrap();
    join.auth_key = auth;
    let id = hog.request(join);
    assert_eq!(hog.stat_for(id).unwrap().hdr.code.get(), code::OK);

    const N: usize = 2000;
    let acked = scene.under_attack(|_stop| {
        // Fifty in flight at a time; every one must be acknowledged.
        let mut acked = 0;
        for _ in 0..N / 50 {
            let ids: Vec<u64> = (0..50)
                .map(|_| {
                    // Class m: 2,000 of them fill the hog's buffers past the output bound.
                    let mut m = SendRoomMessageM::new_zeroed();
                    m.head.set_room("busy").unwrap();
                    sotto::crypto::fill_random(&mut m.ciphertext);
                    talker.request(m)
                })
                .collect();
            for id in ids {
                let st = talker.stat_for(id).expect("an answer to the busy room's sender");
                assert_eq!(st.hdr.code.get(), code::OK, "{:?}", st.reason());
                acked += 1;
            }
        }
        acked
    });
    assert_eq!(acked, N, "the busy room's sender lost acknowledgements");
    assert!(scene.wait_log("slow consumer", Duration::from_secs(10)), "{}", scene.log());
    assert!(closed_by_peer(&mut hog.stream, Duration::from_secs(10)), "the hog is still connected");
    assert!(talker.alive());
}

/// The code sottod answers a request of `required` state in `current`, or
/// None when the request is allowed there.
fn expected_code(required: Option<State>, current: State) -> Option<u16> {
    match (required, current) {
        (None, _) => Some(code::BAD_REQUEST),
        (Some(r), c) if r == c => None,
        (Some(State::Authenticated), _) | (Some(State::AwaitPassphrase), State::AwaitLogin) => Some(code::UNAUTHORIZED),
        _ => Some(code::FORBIDDEN),
    }
}

/// Sends every opcode not allowed in `current` at its exact size; each gets its stat.
fn every_opcode_refused(s: &mut Raw, current: State) -> usize {
    let mut checked = 0;
    for info in OPCODES.iter() {
        let Some(want) = expected_code(info.state, current) else { continue };
        let mut m = vec![0u8; info.size];
        let id = 1_000_000 + u64::from(info.opcode);
        let hdr = *Heartbeat::request(id, 0).header();
        m[..24].copy_from_slice(hdr.as_bytes());
        m[..4].copy_from_slice(&info.opcode.to_be_bytes());
        s.send_plain(&m).unwrap();
        let st = s.stat_for(id).unwrap_or_else(|| panic!("no answer to {} in {current:?}", info.mnemonic));
        assert_eq!((st.hdr.code.get(), st.request_opcode.get()), (want, info.opcode), "{}", info.mnemonic);
        checked += 1;
    }
    checked
}

#[test]
fn a_valid_session_sending_every_opcode_in_the_wrong_state() {
    let _g = serial();
    let mut scene = Scene::new("h-wrongstate", &[], &["mallory"]);
    let addr = scene.server.addr.clone();
    let checked = scene.under_attack(|stop| {
        let mut checked = 0;
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut s) = Raw::handshake(connect_from(attacker(0), &addr, None).unwrap()) else { continue };
            checked += every_opcode_refused(&mut s, State::AwaitLogin);
            let id = s.request(login_request("mallory"));
            assert_eq!(s.stat_for(id).unwrap().hdr.code.get(), code::PENDING);
            checked += every_opcode_refused(&mut s, State::AwaitPassphrase);
            let mut p = sotto::opcodes::Passphrase::new_zeroed();
            p.pass_secret = *sotto::account::pass_secret("mallory", WORDS);
            s.request(p);
            assert!(s.wait_opcode(sotto::opcodes::CNNT).is_some(), "the session cannot log in after the junk");
            checked += every_opcode_refused(&mut s, State::Authenticated);
            assert!(s.alive());
        }
        checked
    });
    assert!(checked >= 3 * 14, "{checked}");
}

/// The wrong sizes tried for a message of `own` bytes: every whole number of
/// blocks up to 4 KiB, and around the size of every message (each class of
/// each family among them) up to the largest.
fn wrong_sizes(own: usize) -> Vec<usize> {
    let near = |c: usize| c.saturating_sub(48)..=(c + 48).min(MAX_MESSAGE);
    let mut sizes: Vec<usize> = (16..=4128).step_by(16).collect();
    for c in OPCODES.iter().map(|i| i.size).chain([MAX_MESSAGE]) {
        sizes.extend(near(c).filter(|n| n % 16 == 0));
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes.retain(|&n| n != own && n >= 16);
    sizes
}

#[test]
fn every_opcode_with_every_size_but_the_right_one() {
    let _g = serial();
    let mut scene = Scene::new("h-wrongsize", &["--max-bps", "0"], &["mallory"]);
    let addr = scene.server.addr.clone();
    let mut s = Raw::handshake(connect_from(attacker(0), &addr, None).unwrap()).unwrap();
    s.login("mallory", PW, WORDS);
    let checked = scene.under_attack(|_stop| {
        let mut checked = 0;
        for info in OPCODES.iter() {
            let sizes = wrong_sizes(info.size);
            for &n in &sizes {
                let mut m = vec![0u8; n];
                if n >= 24 {
                    let hdr = *Heartbeat::request(n as u64, 0).header();
                    m[..24].copy_from_slice(hdr.as_bytes());
                    m[..4].copy_from_slice(&info.opcode.to_be_bytes());
                }
                s.send_plain(&m).unwrap();
            }
            for &n in &sizes {
                let m = s.recv().unwrap_or_else(|| panic!("no answer to {} at {n} bytes", info.mnemonic));
                let st = StatusReply::read_from_bytes(&m).expect("a stat");
                let (want_op, want_id) = if n >= 24 { (info.opcode, n as u64) } else { (0, 0) };
                assert_eq!(
                    (st.hdr.opcode.get(), st.hdr.code.get(), st.request_opcode.get(), st.hdr.msg_id.get()),
                    (STAT, code::BAD_REQUEST, want_op, want_id),
                    "{} at {n} bytes: {:?}",
                    info.mnemonic,
                    st.reason()
                );
                checked += 1;
            }
        }
        checked
    });
    assert_eq!(checked, OPCODES.iter().map(|i| wrong_sizes(i.size).len()).sum::<usize>());
    assert!(s.alive(), "the session did not survive its wrong sizes");
}
