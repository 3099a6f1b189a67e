//! Core tests without sockets: a library client talks to `Core` through byte
//! buffers and a virtual clock; worker jobs run inline.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use crate::frame::Deframer;
use crate::handshake::{self, BuildIdentity, ClientConfig, ServerConfig, SessionKeys};
use crate::identity::{self, Signer};
use crate::opcodes::{
    CreateRoom, DeleteRoom, DmRequest, Login, Passphrase, Register, SendRoomMessageS, StatusReply, CNNT, STAT,
};
use crate::record;
use crate::wire::{self, code, Message};
use x25519_dalek::{PublicKey, StaticSecret};
use zerocopy::{FromZeros, IntoBytes};

use crate::server::core::{Accounts, Core, Limits};
use crate::server::mailbox::Mail;
use crate::server::room::Rooms;
use crate::server::store::MemStore;
use crate::server::worker::{self, WorkerCtx};

const DEPLOY: [u8; 32] = [9; 32];
const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn server_key() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| identity::generate().unwrap().0.to_vec())
}

fn user_key() -> &'static (Vec<u8>, [u8; 256]) {
    static KEY: OnceLock<(Vec<u8>, [u8; 256])> = OnceLock::new();
    KEY.get_or_init(|| {
        let (der, n) = identity::generate().unwrap();
        (der.to_vec(), n)
    })
}

/// A library client and a core, the handshake done.
pub(super) struct Pair {
    pub(super) core: Core,
    pub(super) ctx: WorkerCtx,
    keys: SessionKeys,
    deframer: Deframer,
    pub(super) now: u64,
    next_id: u64,
}

/// The connection's id in the core.
pub(super) const ID: u64 = 1;

impl Pair {
    fn connect() -> Pair {
        Pair::connect_with(Rooms::default())
    }

    fn connect_with(rooms: Rooms) -> Pair {
        Pair::connect_limited(rooms, Limits::default())
    }

    fn connect_limited(rooms: Rooms, limits: Limits) -> Pair {
        Pair::connect_to(|scfg| Core::new(scfg, limits, Accounts::default(), rooms, Mail::default()))
    }

    /// The handshake with the core `make` builds for the server's configuration.
    pub(super) fn connect_to(make: impl FnOnce(ServerConfig) -> Core) -> Pair {
        let signer = Signer::from_pkcs8_der(server_key()).unwrap();
        let build = BuildIdentity::this_build();
        let ccfg = ClientConfig { build, deployment_key: DEPLOY, server_keys: vec![signer.public().clone()] };
        let scfg = ServerConfig { build, deployment_key: DEPLOY };
        let ctx = WorkerCtx { server: scfg.clone(), signer: Arc::new(signer), store: Arc::new(MemStore::default()) };
        let mut core = make(scfg);
        core.accept(ID, ADDR, 1_000).unwrap();
        let (state, hello) = handshake::client_hello(&ccfg);
        core.handle_input(ID, &hello, 1_000);
        let mut pair = Pair {
            core,
            ctx,
            keys: placeholder_keys(),
            deframer: Deframer::new(record::MAX_BODY),
            now: 1_000,
            next_id: 1,
        };
        pair.run_jobs();
        let out = std::mem::take(pair.core.transmit(ID).unwrap());
        pair.keys = state.handle_server_hello(&ccfg, &out[4..]).unwrap();
        pair
    }

    pub(super) fn run_jobs(&mut self) {
        loop {
            // As the event loop does at the end of a turn: jobs, then the group commit.
            let mut jobs = self.core.poll_jobs();
            jobs.extend(self.core.poll_commit(self.now));
            if jobs.is_empty() {
                return;
            }
            for job in jobs {
                let done = worker::run(job, &self.ctx);
                self.core.handle_completion(done, self.now);
            }
        }
    }

    /// Sends raw plaintext as one record; returns the decrypted responses.
    fn send_raw(&mut self, plaintext: &[u8]) -> Vec<Vec<u8>> {
        let mut frame = Vec::new();
        self.keys.sealer.seal(plaintext, &mut frame).unwrap();
        self.core.handle_input(ID, &frame, self.now);
        self.run_jobs();
        self.responses()
    }

    pub(super) fn responses(&mut self) -> Vec<Vec<u8>> {
        let Some(out) = self.core.transmit(ID) else { return Vec::new() };
        self.deframer.push(&std::mem::take(out));
        let mut got = Vec::new();
        while let Some(body) = self.deframer.pop().unwrap() {
            got.push(self.keys.opener.open(&body).unwrap());
        }
        got
    }

    pub(super) fn send<M: Message>(&mut self, mut m: M) -> Vec<Vec<u8>> {
        m.header_mut().msg_id.set(self.next_id);
        self.next_id += 1;
        self.send_raw(m.as_bytes())
    }

    fn status(&mut self, m: impl Message) -> (u16, String) {
        let got = self.send(m);
        assert_eq!(got.len(), 1, "one response");
        let r = wire::decode::<StatusReply>(&got[0]).unwrap();
        assert_eq!(r.hdr.msg_id.get(), self.next_id - 1, "echoes the request id");
        (r.hdr.code.get(), r.reason().unwrap().to_owned())
    }

    fn register(&mut self, name: &str, password: &str, phrase: &str) -> u16 {
        let uid = u64::from_be_bytes(crate::crypto::random()).max(1);
        self.register_as(name, uid, password, phrase)
    }

    /// Registers under a UID of the test's choice (clients choose theirs at random).
    fn register_as(&mut self, name: &str, uid: u64, password: &str, phrase: &str) -> u16 {
        let (der, n) = user_key();
        let secret = StaticSecret::from([5u8; 32]);
        let enc_pub = PublicKey::from(&secret).to_bytes();
        // Clients sign the canonical (case-folded) name, as the server checks it.
        let canonical = crate::account::normalize_username(name).unwrap_or_default();
        let binding = crate::account::enc_key_binding(&crate::account::deployment_id(), uid, &canonical, &enc_pub);
        let sig = Signer::from_pkcs8_der(der).unwrap().sign(&binding).unwrap();
        let mut m = Register::request(0, 0);
        m.uid.set(uid);
        m.set_username(name).unwrap();
        m.auth_secret = test_secret(password);
        m.pass_secret = test_secret(phrase);
        m.id_pub = *n;
        m.enc_pub = enc_pub;
        m.enc_sig = sig;
        self.status(m).0
    }

    fn login(&mut self, name: &str, password: &str) -> u16 {
        let mut m = Login::request(0, 0);
        m.set_username(name).unwrap();
        m.auth_secret = test_secret(password);
        self.status(m).0
    }

    fn passphrase(&mut self, phrase: &str) -> Vec<Vec<u8>> {
        let mut m = Passphrase::request(0, 0);
        m.pass_secret = test_secret(phrase);
        self.send(m)
    }

    fn closed(&self) -> bool {
        self.core.is_done(ID)
    }
}

/// Keys that are replaced right after the handshake; they never seal anything.
fn placeholder_keys() -> SessionKeys {
    let k = crate::crypto::AeadKeys::from_material(&[0; 48]);
    SessionKeys {
        sealer: record::Sealer::new(k.clone()),
        opener: record::Opener::new(k),
        resumption: crate::ticket::ResumptionMaster::from_bytes([0; 32]),
    }
}

#[test]
fn registers_logs_in_and_authenticates() {
    let mut p = Pair::connect();
    assert_eq!(p.register("Alice", "password123", "red green blue"), code::OK);
    assert_eq!(p.login("alice", "password123"), code::PENDING);
    let got = p.passphrase("red green blue");
    let c = wire::decode::<crate::opcodes::Connected>(&got[0]).unwrap();
    assert_eq!((c.hdr.opcode.get(), c.hdr.code.get(), c.username().unwrap()), (CNNT, code::OK, "alice"));
    assert_ne!(c.uid.get(), 0);
    assert_eq!(p.status(DmRequest::request(0, 0)).0, code::BAD_REQUEST, "a DM request names a user");
    assert_eq!(p.login("alice", "password123"), code::FORBIDDEN, "no second login in a session");
}

#[test]
fn a_uid_already_taken_is_refused_and_the_binding_must_sign_the_uid() {
    let mut p = Pair::connect();
    assert_eq!(p.register_as("bob", 7, "password123", "a b c"), code::OK);
    assert_eq!(p.register_as("carol", 7, "password123", "a b c"), code::CONFLICT, "bob's UID");
    // A binding signed for another UID does not verify for this one.
    let (der, n) = user_key();
    let enc_pub = [5u8; 32];
    let binding = crate::account::enc_key_binding(&crate::account::deployment_id(), 8, "dave", &enc_pub);
    let mut m = Register::request(0, 0);
    m.set_username("dave").unwrap();
    m.uid.set(9);
    (m.auth_secret, m.pass_secret) = (test_secret("password123"), test_secret("a b c"));
    (m.id_pub, m.enc_pub, m.enc_sig) = (*n, enc_pub, Signer::from_pkcs8_der(der).unwrap().sign(&binding).unwrap());
    assert_eq!(p.status(m).0, code::BAD_REQUEST);
}

#[test]
fn rejects_duplicate_and_invalid_registrations() {
    let mut p = Pair::connect();
    assert_eq!(p.register("bob", "password123", "a b c"), code::OK);
    assert_eq!(p.register("BOB", "password456", "d e f"), code::CONFLICT);
    assert_eq!(p.register("b", "password123", "a b c"), code::BAD_REQUEST);
    // Password and passphrase rules are the client's now: the server sees only their secrets.
    let mut m = Register::request(0, 0);
    m.set_username("carol").unwrap();
    m.auth_secret = test_secret("password123");
    m.pass_secret = test_secret("a b c");
    m.id_pub = user_key().1;
    assert_eq!(p.status(m).0, code::CONFLICT, "uid 0 is never an account's");
    m.uid.set(7);
    assert_eq!(p.status(m).0, code::BAD_REQUEST, "unsigned encryption key");
}

#[test]
fn wrong_password_or_passphrase_is_401_and_backs_off() {
    let mut p = Pair::connect();
    assert_eq!(p.register("dave", "password123", "one two three"), code::OK);
    assert_eq!(p.login("nobody", "password123"), code::UNAUTHORIZED);
    assert_eq!(p.login("dave", "wrongpassword"), code::UNAUTHORIZED);
    assert_eq!(p.login("dave", "password123"), code::PENDING);
    let got = p.passphrase("one two four");
    assert_eq!(wire::decode::<StatusReply>(&got[0]).unwrap().hdr.code.get(), code::UNAUTHORIZED);
    assert_eq!(p.login("dave", "wrongpassword"), code::UNAUTHORIZED);
    assert_eq!(p.login("dave", "password123"), code::RATE_LIMITED, "three failures of dave from this address");
    // An unknown name collects the same strikes as a known one.
    assert_eq!(p.login("nobody", "password123"), code::UNAUTHORIZED);
    assert_eq!(p.login("nobody", "password123"), code::UNAUTHORIZED);
    assert_eq!(p.login("nobody", "password123"), code::RATE_LIMITED, "three failures of nobody");
    p.now += 1_001;
    assert_eq!(p.login("dave", "password123"), code::PENDING);
}

#[test]
fn registrations_are_throttled_per_address_before_any_argon2id_job() {
    let limits = Limits { registrations: Some((3, 60_000)), ..Limits::default() };
    let mut p = Pair::connect_limited(Rooms::default(), limits);
    for name in ["reg1", "reg2", "reg3"] {
        assert_eq!(p.register(name, "password123", "a b c"), code::OK);
    }
    // The fourth within the minute: 429, and no job reaches the workers.
    let (der, n) = user_key();
    let enc_pub = [5u8; 32];
    let binding = crate::account::enc_key_binding(&crate::account::deployment_id(), 44, "reg4", &enc_pub);
    let sig = Signer::from_pkcs8_der(der).unwrap().sign(&binding).unwrap();
    let mut m = Register::request(99, 0);
    m.uid.set(44);
    m.set_username("reg4").unwrap();
    m.auth_secret = test_secret("password123");
    m.pass_secret = test_secret("a b c");
    m.id_pub = *n;
    m.enc_pub = enc_pub;
    m.enc_sig = sig;
    let mut frame = Vec::new();
    p.keys.sealer.seal(m.as_bytes(), &mut frame).unwrap();
    p.core.handle_input(ID, &frame, p.now);
    assert!(p.core.poll_jobs().is_empty(), "no argon2id job for a throttled registration");
    let got = p.responses();
    let r = wire::decode::<StatusReply>(&got[0]).unwrap();
    assert_eq!(r.hdr.code.get(), code::RATE_LIMITED);
    assert!(r.retry_after_ms.get() > 0 && r.retry_after_ms.get() <= 60_000);
    // A minute later it is allowed again.
    p.now += 60_000;
    assert_eq!(p.register("reg4", "password123", "a b c"), code::OK);
}

#[test]
fn room_creations_are_throttled_per_address() {
    let limits = Limits { room_creations: Some((2, 60_000)), ..Limits::default() };
    let mut p = Pair::connect_limited(Rooms::default(), limits);
    assert_eq!(p.register("erin", "password123", "a b c"), code::OK);
    assert_eq!(p.login("erin", "password123"), code::PENDING);
    p.passphrase("a b c");
    for (room, want) in [("r1", code::OK), ("r2", code::OK), ("r3", code::RATE_LIMITED)] {
        let mut m = CreateRoom::request(0, 0);
        m.set_room(room).unwrap();
        assert_eq!(p.status(m).0, want, "{room}");
    }
}

#[test]
fn the_dummy_hash_of_unknown_names_follows_the_stored_hashes() {
    // With no account, the cost of the hashes made from now on (--kdf-memory).
    crate::crypto::set_stored_hash_kib(16);
    let empty = Accounts::default();
    assert_eq!(empty.dummy_kib(), 16);
    crate::crypto::set_stored_hash_kib(crate::crypto::STORED_HASH_KIB);
    assert_eq!(empty.dummy_kib(), crate::crypto::STORED_HASH_KIB);
    assert_eq!(crate::crypto::phc_kib(&worker::dummy_phc(8)), Some(8));
    // With accounts, the cost most stored hashes have, whatever --kdf-memory says now.
    let mut accounts = Accounts::default();
    for (i, kib) in [(1u64, 8u32), (2, 8), (3, 16)] {
        let mut rec = crate::opcodes::UserRecord::new_zeroed();
        rec.uid.set(i);
        rec.set_username(&format!("user{i}")).unwrap();
        rec.set_password_hash(&crate::crypto::hash_secret_kib(b"pw", kib).unwrap()).unwrap();
        accounts.insert(rec);
    }
    assert_eq!(accounts.dummy_kib(), 8);
    // An unknown name is checked against a dummy of that cost.
    let mut p = Pair::connect();
    p.core.accounts = accounts;
    let mut m = Login::request(7, 0);
    m.set_username("ghost").unwrap();
    m.auth_secret = test_secret("password123");
    let mut frame = Vec::new();
    p.keys.sealer.seal(m.as_bytes(), &mut frame).unwrap();
    p.core.handle_input(ID, &frame, p.now);
    let jobs = p.core.poll_jobs();
    assert!(
        matches!(jobs.as_slice(), [worker::Job::Password { uid: None, dummy_kib: 8, .. }]),
        "one password job, against an 8 KiB dummy"
    );
}

#[test]
fn checks_opcode_size_and_state_before_handlers() {
    let mut p = Pair::connect();
    assert_eq!(p.status(CreateRoom::request(0, 0)).0, code::UNAUTHORIZED, "authenticated opcode before login");
    assert_eq!(p.passphrase("a b c").len(), 1);
    let mut m = Login::request(7, 0);
    m.hdr.opcode.set(123_456);
    let got = p.send_raw(m.as_bytes());
    assert_eq!(wire::decode::<StatusReply>(&got[0]).unwrap().hdr.code.get(), code::BAD_REQUEST);
    let mut long = Login::request(7, 0).as_bytes().to_vec();
    long.extend_from_slice(&[0; 16]);
    let got = p.send_raw(&long);
    let r = wire::decode::<StatusReply>(&got[0]).unwrap();
    assert_eq!(
        (r.hdr.opcode.get(), r.hdr.code.get(), r.reason().unwrap()),
        (STAT, code::BAD_REQUEST, "wrong size for opcode")
    );
    assert!(!p.closed(), "errors keep the session");
}

#[test]
fn bad_record_closes_silently() {
    let mut p = Pair::connect();
    let mut frame = Vec::new();
    p.keys.sealer.seal(Login::request(1, 0).as_bytes(), &mut frame).unwrap();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    p.core.handle_input(ID, &frame, p.now);
    assert!(p.responses().is_empty());
    assert!(p.closed());
}

#[test]
fn times_out_handshake_and_login() {
    let mut p = Pair::connect();
    p.core.handle_timeout(p.now + 59_000);
    assert!(!p.closed());
    p.core.handle_timeout(p.now + 60_001);
    assert!(p.closed(), "login timeout");
    let mut core =
        Core::new(ServerConfig::built_in(), Limits::default(), Accounts::default(), Rooms::default(), Mail::default());
    core.accept(2, ADDR, 0).unwrap();
    core.handle_timeout(10_001);
    assert!(core.is_done(2), "handshake timeout");
}

#[test]
fn closing_connection_that_never_reads_is_dropped_after_grace() {
    let mut p = Pair::connect();
    p.core.reply(ID, 1, 0, code::BAD_REQUEST, "x", p.now);
    p.core.close(ID, "test");
    assert!(!p.closed(), "output still waiting");
    p.core.handle_timeout(p.now);
    p.core.handle_timeout(p.now + 5_001);
    assert!(p.closed());
}

#[test]
fn foreign_client_hello_gets_no_answer() {
    let mut core = Core::new(
        ServerConfig { build: BuildIdentity::this_build(), deployment_key: DEPLOY },
        Limits::default(),
        Accounts::default(),
        Rooms::default(),
        Mail::default(),
    );
    core.accept(3, ADDR, 0).unwrap();
    let ccfg = ClientConfig { build: BuildIdentity::this_build(), deployment_key: [1; 32], server_keys: vec![] };
    let (_, hello) = handshake::client_hello(&ccfg);
    core.handle_input(3, &hello, 0);
    assert!(core.poll_jobs().is_empty(), "no RSA work for a foreign client");
    assert!(core.transmit(3).unwrap().is_empty());
    assert!(core.is_done(3));
}

#[test]
fn room_change_is_acknowledged_only_after_the_commit() {
    let mut p = Pair::connect();
    assert_eq!(p.register("gina", "password123", "a b c"), code::OK);
    assert_eq!(p.login("gina", "password123"), code::PENDING);
    p.passphrase("a b c");
    let mut m = CreateRoom::request(99, 0);
    m.set_room("Lobby").unwrap();
    let mut frame = Vec::new();
    p.keys.sealer.seal(m.as_bytes(), &mut frame).unwrap();
    p.core.handle_input(ID, &frame, p.now);
    assert!(p.core.poll_jobs().is_empty());
    assert!(p.responses().is_empty(), "no answer before the commit");
    let commit = p.core.poll_commit(p.now).expect("a commit for the new room");
    assert!(p.core.busy(), "a commit in flight keeps shutdown waiting");
    let done = worker::run(commit, &p.ctx);
    p.core.handle_completion(done, p.now);
    let got = p.responses();
    let r = wire::decode::<StatusReply>(&got[0]).unwrap();
    assert_eq!((r.hdr.msg_id.get(), r.hdr.code.get()), (99, code::OK));
    assert!(p.ctx.store.load_rooms().unwrap().iter().any(|r| r.name == "lobby"), "stored under its canonical name");
    assert!(!p.core.busy());
}

#[test]
fn room_refuses_non_members_and_wrong_auth_keys() {
    let keys = crate::room::from_master("club", &[4; 32], &[5; 16]);
    let mut rooms = Rooms::default();
    rooms.insert(crate::server::room::Room {
        name: "club".into(),
        salt: [5; 16],
        verifier: crate::room::verifier(&keys.auth),
        owner: 1,
        created: 0,
        members: vec![1],
        banned: Vec::new(),
        history: Default::default(),
        pushed: 0,
        durable: 0,
        emitted: 0,
        rewritten: true,
    });
    let mut p = Pair::connect_with(rooms);
    assert_eq!(p.register("hank", "password123", "a b c"), code::OK);
    assert_eq!(p.login("hank", "password123"), code::PENDING);
    p.passphrase("a b c");
    let mut say = crate::opcodes::SendRoomMessageS::request(0, 0);
    say.head.set_room("club").unwrap();
    assert_eq!(p.status(say).0, code::FORBIDDEN, "non-member send");
    let mut join = crate::opcodes::JoinRoom::request(0, 0);
    join.set_room("club").unwrap();
    join.auth_key = [9; 32];
    assert_eq!(p.status(join).0, code::FORBIDDEN, "wrong auth key");
    join.auth_key = *keys.auth;
    let got = p.send(join);
    let last = wire::decode::<StatusReply>(got.last().unwrap()).unwrap();
    assert_eq!((last.request_opcode.get(), last.hdr.code.get()), (crate::opcodes::JRMS, code::OK));
    assert_eq!(p.status(say).0, code::OK, "a member may send");
}

#[test]
fn a_room_message_sent_again_after_a_lost_answer_is_kept_once() {
    let mut p = Pair::connect();
    assert_eq!(p.register("gina", "password123", "a b c"), code::OK);
    assert_eq!(p.login("gina", "password123"), code::PENDING);
    p.passphrase("a b c");
    let mut create = CreateRoom::request(1, 0);
    create.set_room("club").unwrap();
    assert_eq!(p.status(create).0, code::OK);
    let mut say = SendRoomMessageS::request(2, 1_000);
    say.head.set_room("club").unwrap();
    say.head.iv = [7; 16];
    let stored = |got: Vec<Vec<u8>>| {
        let r = wire::decode::<StatusReply>(&got[0]).unwrap();
        assert_eq!((got.len(), r.hdr.msg_id.get(), r.hdr.code.get()), (1, 2, code::OK));
    };
    stored(p.send_raw(say.as_bytes()));
    stored(p.send_raw(say.as_bytes()));
    assert_eq!(p.core.rooms.get("club").unwrap().history.len(), 1, "the copy is answered, not kept twice");
    // The same msg_id in a later client run (another send time) is another message.
    let mut later = SendRoomMessageS::request(2, 2_000);
    later.head.set_room("club").unwrap();
    assert_eq!(p.status(later).0, code::OK);
    assert_eq!(p.core.rooms.get("club").unwrap().history.len(), 2);
}

#[test]
fn reading_pauses_after_max_bps_in_a_second() {
    let limits = Limits { max_bps: 100, ..Default::default() };
    let mut core = Core::new(ServerConfig::built_in(), limits, Accounts::default(), Rooms::default(), Mail::default());
    core.accept(5, ADDR, 0).unwrap();
    assert!(core.wants_read(5, 0));
    core.handle_input(5, &[0u8; 3], 10);
    assert!(core.wants_read(5, 10), "under the cap");
    let limits = Limits { max_bps: 2, ..Default::default() };
    let mut core = Core::new(ServerConfig::built_in(), limits, Accounts::default(), Rooms::default(), Mail::default());
    core.accept(6, ADDR, 0).unwrap();
    core.handle_input(6, &[0u8; 3], 10);
    assert!(!core.wants_read(6, 500), "over the cap: reading pauses");
    assert!(core.wants_read(6, 1_011), "a new second");
}

#[test]
fn caps_connections_per_address_and_in_all_and_handshakes_per_address() {
    let limits = Limits { max_conns: 3, max_conns_per_addr: 2, handshakes_per_sec: 1, ..Default::default() };
    let mut core = Core::new(ServerConfig::built_in(), limits, Accounts::default(), Rooms::default(), Mail::default());
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert!(core.accept(1, ADDR, 0).is_ok() && core.accept(2, ADDR, 0).is_ok());
    assert!(core.accept(3, ADDR, 0).is_err(), "third from one address");
    assert!(core.accept(4, other, 0).is_ok());
    assert!(core.accept(5, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), 0).is_err(), "global cap");
    core.close(1, "test");
    core.remove(1);
    assert!(core.accept(6, ADDR, 0).is_ok(), "a slot freed up");
    // Two authentic hellos from one address in the same second: only one is signed.
    let ccfg = ClientConfig::built_in().unwrap();
    for id in [2, 6] {
        core.handle_input(id, &handshake::client_hello(&ccfg).1, 10);
    }
    assert_eq!(core.poll_jobs().len(), 1, "one signature per second for this address");
    assert!(core.is_done(6), "the other is closed without an answer");
}

#[test]
fn output_of_a_slow_consumer_stays_bounded_after_it_is_closed() {
    // Found by the dispatch fuzz target: events for a connection already over
    // its bound kept being sealed into its output until the close grace ended.
    let mut w = crate::server::fuzz::World::new();
    let (alice, _) = w.open(0).unwrap();
    let (bob, _) = w.open(1).unwrap();
    // Alice never reads; her answers pile up until she is dropped.
    while w.dispatch(alice, crate::opcodes::ListRooms::request(1, 0).as_bytes()) {
        w.settle();
    }
    assert_eq!(w.closing(alice), Some("slow consumer: output bound exceeded"));
    for i in 0..5 {
        let mut say = crate::opcodes::SendRoomMessageS::request(i, 0);
        say.head.set_room("lobby").unwrap();
        assert!(w.dispatch(bob, say.as_bytes()));
        w.settle();
    }
    let held = w.core().transmit(alice).unwrap().len();
    let bound = crate::server::fuzz::limits().max_output + 4 + record::MAX_BODY;
    assert!(held <= bound, "{held} bytes held, bound {bound}");
}

#[test]
fn nothing_is_sealed_for_a_connection_after_its_output_was_dropped() {
    // Found by the dispatch fuzz target: once the close grace had dropped a
    // connection's unsent output, a DM status due in the same timer run was
    // still sealed for it, a record its client could never open (the ones
    // before it were never sent).
    let mut w = crate::server::fuzz::World::new();
    let (alice, _) = w.open(0).unwrap();
    let _bob = w.open(1).unwrap();
    let mut dm = crate::opcodes::SendDmS::request(7, 0);
    dm.head.peer_uid.set(crate::server::fuzz::uid(1));
    assert!(w.dispatch(alice, dm.as_bytes()));
    w.settle();
    // Bob is online and does not acknowledge: alice's answer waits 5 s. She stops reading and is closed.
    w.core().close(alice, "test");
    w.advance(1);
    w.advance(5_001);
    assert!(w.core().transmit(alice).unwrap().is_empty(), "dropped, and nothing sealed after");
}

#[test]
fn a_commit_of_a_deleted_room_does_not_make_a_new_room_of_its_name_durable() {
    let mut p = Pair::connect();
    assert_eq!(p.register("gina", "password123", "a b c"), code::OK);
    assert_eq!(p.login("gina", "password123"), code::PENDING);
    p.passphrase("a b c");
    let mut create = CreateRoom::request(1, 0);
    create.set_room("club").unwrap();
    assert_eq!(p.status(create).0, code::OK);
    // Without running the commit: a message, then its commit taken but not finished.
    let request = |p: &mut Pair, m: &[u8]| {
        let mut frame = Vec::new();
        p.keys.sealer.seal(m, &mut frame).unwrap();
        p.core.handle_input(ID, &frame, p.now);
    };
    let mut say = SendRoomMessageS::request(2, 0);
    say.head.set_room("club").unwrap();
    request(&mut p, say.as_bytes());
    let old_commit = p.core.poll_commit(p.now).expect("a commit for the message");
    // The room is deleted and made again under its name, with one message of its own.
    let mut delete = DeleteRoom::request(3, 0);
    delete.set_room("club").unwrap();
    request(&mut p, delete.as_bytes());
    request(&mut p, create.as_bytes());
    request(&mut p, say.as_bytes());
    let done = worker::run(old_commit, &p.ctx);
    p.core.handle_completion(done, p.now);
    let room = p.core.rooms.get("club").expect("the new room");
    assert_eq!(room.pushed, 1);
    assert_eq!(room.durable_history().count(), 0, "the new room's message is not on disk yet");
}

/// A stand-in for the client's argon2id secrets (the server only hashes what it gets).
fn test_secret(s: &str) -> [u8; 32] {
    crate::crypto::sha256(&[s.as_bytes()])
}

#[test]
fn a_protocol_mismatch_is_answered_signed_through_the_signing_pool_and_the_handshake_rate() {
    let limits = Limits { handshakes_per_sec: 1, ..Default::default() };
    let signer = Signer::from_pkcs8_der(server_key()).unwrap();
    let build = BuildIdentity::this_build();
    let scfg = ServerConfig { build, deployment_key: DEPLOY };
    let mut ccfg = ClientConfig { build, deployment_key: DEPLOY, server_keys: vec![signer.public().clone()] };
    ccfg.build.table_hash[0] ^= 1;
    let ctx = WorkerCtx { server: scfg.clone(), signer: Arc::new(signer), store: Arc::new(MemStore::default()) };
    let mut core = Core::new(scfg, limits, Accounts::default(), Rooms::default(), Mail::default());
    core.accept(1, ADDR, 0).unwrap();
    core.accept(2, ADDR, 0).unwrap();
    let (state, hello) = handshake::client_hello(&ccfg);
    core.handle_input(1, &hello, 10);
    assert!(!core.has_output(1), "nothing is sent before the signature");
    let jobs = core.poll_jobs();
    assert!(matches!(jobs.as_slice(), [worker::Job::Mismatch { conn: 1, .. }]), "one signing job");
    // A second mismatch hello from the address in the same second: closed unanswered, no job.
    core.handle_input(2, &handshake::client_hello(&ccfg).1, 20);
    assert!(core.poll_jobs().is_empty() && core.is_done(2), "over the handshake rate");
    for job in jobs {
        let done = worker::run(job, &ctx);
        core.handle_completion(done, 30);
    }
    let out = std::mem::take(core.transmit(1).unwrap());
    assert!(core.is_closing(1));
    match state.handle_server_hello(&ccfg, &out[4..]) {
        Err(handshake::HandshakeError::Mismatch { .. }) => {}
        Err(e) => panic!("expected a verified mismatch, got {e}"),
        Ok(_) => panic!("expected a verified mismatch, got keys"),
    }
}

#[test]
fn connections_and_handshakes_of_an_ipv6_host_count_by_its_64() {
    let limits = Limits { max_conns_per_addr: 2, handshakes_per_sec: 1, ..Default::default() };
    let mut core = Core::new(ServerConfig::built_in(), limits, Accounts::default(), Rooms::default(), Mail::default());
    let host = |i: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 5, 6, i, i, i, i));
    assert!(core.accept(1, host(1), 0).is_ok() && core.accept(2, host(2), 0).is_ok());
    assert!(core.accept(3, host(3), 0).is_err(), "a third address of the same /64");
    assert!(core.accept(4, IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 5, 7, 0, 0, 0, 1)), 0).is_ok());
    let ccfg = ClientConfig::built_in().unwrap();
    for id in [1, 2] {
        core.handle_input(id, &handshake::client_hello(&ccfg).1, 10);
    }
    assert_eq!(core.poll_jobs().len(), 1, "one signature per second for the /64");
    core.close(1, "test");
    core.remove(1);
    assert!(core.accept(5, host(9), 0).is_ok(), "a slot of the /64 freed up");
}

#[test]
fn a_room_message_is_sealed_once_for_every_other_member_session_and_not_past_a_bound() {
    // The fan-out seals side by side (`Core::send_bytes_many`): every
    // session of every member but the sender's gets the message once, in
    // order after what it already had; one over its bound gets nothing more.
    use crate::opcodes::{ListRooms, ReceiveRoomMessageS, RVRS};
    use zerocopy::FromBytes;
    let limits = crate::server::core::Limits { rate: None, ..crate::server::fuzz::limits() };
    let mut w = crate::server::fuzz::World::new_on(limits, std::sync::Arc::new(MemStore::default()));
    let mut sessions: Vec<_> = [0, 0, 1, 1, 1, 0].iter().filter_map(|&u| w.open(u)).collect();
    assert_eq!(sessions.len(), 6);
    w.settle();
    for (id, opener) in sessions.iter_mut() {
        w.received(*id, opener);
    }
    // The last alice session stops reading until it is over its bound.
    let slow = sessions[5].0;
    while w.dispatch(slow, ListRooms::request(1, 0).as_bytes()) {
        w.settle();
    }
    assert_eq!(w.closing(slow), Some("slow consumer: output bound exceeded"));
    let held = w.core().transmit(slow).unwrap().len();
    let sender = sessions[0].0;
    for n in 0..3u8 {
        let mut say = SendRoomMessageS::request(100 + u64::from(n), 0);
        say.head.set_room("lobby").unwrap();
        say.ciphertext.fill(n);
        assert!(w.dispatch(sender, say.as_bytes()));
        w.settle();
    }
    for (i, (id, opener)) in sessions.iter_mut().enumerate().take(5) {
        let got: Vec<u8> = w
            .received(*id, opener)
            .iter()
            .filter(|m| wire::header(m).unwrap().opcode.get() == RVRS)
            .map(|m| ReceiveRoomMessageS::read_from_bytes(m).unwrap().ciphertext[0])
            .collect();
        let want: &[u8] = if i == 0 { &[] } else { &[0, 1, 2] };
        assert_eq!(got, want, "session {i}");
    }
    assert_eq!(w.core().transmit(slow).unwrap().len(), held, "nothing more for the slow consumer");
}

#[test]
fn a_client_pipelining_faster_than_its_commits_is_paused_not_dropped() {
    // Found by W6 (make bench): a client pipelining room messages had every
    // answer of a slow commit sealed at once, over its output bound, and was
    // closed as a slow consumer of its own answers.
    let limits = Limits { max_output: 1 << 20, rate: None, ..crate::server::fuzz::limits() };
    let mut w = crate::server::fuzz::World::new_on(limits, Arc::new(crate::server::store::MemStore::default()));
    let (alice, mut opener) = w.open(0).unwrap();
    w.received(alice, &mut opener);
    let now = w.now_ms();
    let mut sent = 0u64;
    while w.core().wants_read(alice, now) {
        let mut say = SendRoomMessageS::request(1_000 + sent, 0);
        say.head.set_room("lobby").unwrap();
        assert!(w.dispatch(alice, say.as_bytes()));
        sent += 1;
        assert!(sent < 100_000, "still reading with {sent} answers waiting for a commit");
    }
    assert!(sent > 100, "paused after {sent} messages only");
    assert_eq!(w.closing(alice), None);
    // The commit lands: every answer goes out, and reading goes on.
    w.settle();
    assert_eq!(w.closing(alice), None, "its answers fit its output");
    let answers = w.received(alice, &mut opener);
    let ok = answers.iter().filter(|m| wire::header(m).unwrap().code.get() == code::OK).count();
    assert_eq!(ok as u64, sent);
    assert!(w.core().wants_read(alice, now));
}

#[test]
fn refusals_for_an_unreachable_cluster_are_answered_503_and_counted() {
    let store = Arc::new(crate::server::store::MemStore::default());
    let limits = Limits { rate: None, ..crate::server::fuzz::limits() };
    let mut w = crate::server::fuzz::World::new_on(limits, store.clone());
    let (alice, mut opener) = w.open(0).unwrap();
    w.received(alice, &mut opener);
    w.core().take_summary();
    store.fail_next_commits_unavailable(1);
    let mut say = SendRoomMessageS::request(500, 0);
    say.head.set_room("lobby").unwrap();
    assert!(w.dispatch(alice, say.as_bytes()));
    w.commit();
    let got = w.received(alice, &mut opener);
    assert_eq!(got.len(), 1);
    assert_eq!(wire::header(&got[0]).unwrap().code.get(), code::SERVICE_UNAVAILABLE);
    let summary = w.core().take_summary().unwrap_or_default();
    assert!(summary.contains("cluster storage unreachable (503) 1"), "{summary}");
}
