//! Direct-message rules in the core, without sockets: two sessions joined by
//! byte buffers, worker jobs and commits run inline when the test says so.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use crate::frame::Deframer;
use crate::handshake::{self, BuildIdentity, ClientConfig, ServerConfig, SessionKeys};
use crate::identity::{self, Signer};
use crate::opcodes::{
    DmAccept, DmRequest, DmStatus, Login, MailboxAck, Passphrase, ReceiveDmS, Register, SendDmHead, SendDmM, SendDmS,
    StatusReply, CTCT, DMRQ, DMST, PKST, RVUS, STAT,
};
use crate::record;
use crate::wire::{self, code, Classed, Message};
use zerocopy::IntoBytes;

use crate::server::core::{Accounts, ConnId, Core, Limits};
use crate::server::mailbox::Mail;
use crate::server::room::Rooms;
use crate::server::store::MemStore;
use crate::server::worker::{self, WorkerCtx};

const DEPLOY: [u8; 32] = [3; 32];

fn test_keys() -> &'static (Vec<u8>, Vec<u8>, [u8; 256]) {
    static K: OnceLock<(Vec<u8>, Vec<u8>, [u8; 256])> = OnceLock::new();
    K.get_or_init(|| {
        let server = identity::generate().unwrap().0.to_vec();
        let (user, n) = identity::generate().unwrap();
        (server, user.to_vec(), n)
    })
}

struct Side {
    id: ConnId,
    keys: SessionKeys,
    deframer: Deframer,
    uid: u64,
}

struct World {
    core: Core,
    ctx: WorkerCtx,
    ccfg: ClientConfig,
    now: u64,
}

impl World {
    fn new() -> World {
        World::new_with(Limits::default())
    }

    fn new_with(limits: Limits) -> World {
        // Every connection of a world comes from one address: no per-address registration throttle.
        let limits = Limits { registrations: None, ..limits };
        let signer = Signer::from_pkcs8_der(&test_keys().0).unwrap();
        let build = BuildIdentity::this_build();
        let ccfg = ClientConfig { build, deployment_key: DEPLOY, server_keys: vec![signer.public().clone()] };
        let scfg = ServerConfig { build, deployment_key: DEPLOY };
        let ctx = WorkerCtx { server: scfg.clone(), signer: Arc::new(signer), store: Arc::new(MemStore::default()) };
        let core = Core::new(scfg, limits, Accounts::default(), Rooms::default(), Mail::default());
        World { core, ctx, ccfg, now: 1_000 }
    }

    /// Worker jobs only (no commit): what the loop does before the end of a turn.
    fn run_jobs(&mut self) {
        loop {
            let jobs = self.core.poll_jobs();
            if jobs.is_empty() {
                return;
            }
            for j in jobs {
                let done = worker::run(j, &self.ctx);
                self.core.handle_completion(done, self.now);
            }
        }
    }

    /// The end of a loop turn: the group commit, made durable.
    fn commit(&mut self) {
        if let Some(job) = self.core.poll_commit(self.now) {
            let done = worker::run(job, &self.ctx);
            self.core.handle_completion(done, self.now);
        }
    }

    fn connect(&mut self, id: ConnId, name: &str) -> Side {
        self.core.accept(id, IpAddr::V4(Ipv4Addr::LOCALHOST), self.now).unwrap();
        let (state, hello) = handshake::client_hello(&self.ccfg);
        self.core.handle_input(id, &hello, self.now);
        self.run_jobs();
        let out = std::mem::take(self.core.transmit(id).unwrap());
        let keys = state.handle_server_hello(&self.ccfg, &out[4..]).unwrap();
        let mut side = Side { id, keys, deframer: Deframer::new(record::MAX_BODY), uid: 0 };
        let (der, n) = (&test_keys().1, test_keys().2);
        let enc_pub = [9u8; 32];
        let uid = u64::from_be_bytes(crate::crypto::random()).max(1);
        let binding = crate::account::enc_key_binding(&crate::account::deployment_id(), uid, name, &enc_pub);
        let sig = Signer::from_pkcs8_der(der).unwrap().sign(&binding).unwrap();
        let mut reg = Register::request(1, 0);
        reg.uid.set(uid);
        reg.set_username(name).unwrap();
        reg.auth_secret = test_secret("password123");
        reg.pass_secret = test_secret("a b c");
        reg.id_pub = n;
        reg.enc_pub = enc_pub;
        reg.enc_sig = sig;
        self.send(&mut side, reg.as_bytes());
        let got = self.log_in(&mut side, name);
        let cnnt = got.iter().find_map(|f| wire::decode::<crate::opcodes::Connected>(f).ok()).expect("cnnt");
        side.uid = cnnt.uid.get();
        side
    }

    /// A new session `id` of an existing account: handshake, password and
    /// passphrase; returns it and what it received after the passphrase.
    fn login_again(&mut self, id: ConnId, name: &str, uid: u64) -> (Side, Vec<Vec<u8>>) {
        let (state, hello) = handshake::client_hello(&self.ccfg);
        self.core.accept(id, IpAddr::V4(Ipv4Addr::LOCALHOST), self.now).unwrap();
        self.core.handle_input(id, &hello, self.now);
        self.run_jobs();
        let out = std::mem::take(self.core.transmit(id).unwrap());
        let keys = state.handle_server_hello(&self.ccfg, &out[4..]).unwrap();
        let mut side = Side { id, keys, deframer: Deframer::new(record::MAX_BODY), uid };
        let got = self.log_in(&mut side, name);
        (side, got)
    }

    /// Password, then passphrase, on `side`; what it received after the passphrase.
    fn log_in(&mut self, side: &mut Side, name: &str) -> Vec<Vec<u8>> {
        let mut login = Login::request(2, 0);
        login.set_username(name).unwrap();
        login.auth_secret = test_secret("password123");
        self.send(side, login.as_bytes());
        let mut pass = Passphrase::request(3, 0);
        pass.pass_secret = test_secret("a b c");
        self.send(side, pass.as_bytes())
    }

    /// Sends one request and runs the worker jobs; returns what the side received (no commit).
    fn send(&mut self, side: &mut Side, plaintext: &[u8]) -> Vec<Vec<u8>> {
        let mut frame = Vec::new();
        side.keys.sealer.seal(plaintext, &mut frame).unwrap();
        self.core.handle_input(side.id, &frame, self.now);
        self.run_jobs();
        self.take(side)
    }

    /// `a` asks `b` (named `b_name`) for direct messages and `b` accepts;
    /// `a`'s answers are taken.
    fn befriend(&mut self, (a, a_name): (&mut Side, &str), (b, b_name): (&mut Side, &str)) {
        self.send(a, named::<DmRequest>(b_name).as_bytes());
        self.send(b, named::<DmAccept>(a_name).as_bytes());
        self.commit();
        self.take(a);
    }

    fn take(&mut self, side: &mut Side) -> Vec<Vec<u8>> {
        let out = std::mem::take(self.core.transmit(side.id).unwrap());
        side.deframer.push(&out);
        let mut got = Vec::new();
        while let Some(b) = side.deframer.pop().unwrap() {
            got.push(side.keys.opener.open(&b).unwrap());
        }
        got
    }
}

fn opcodes(frames: &[Vec<u8>]) -> Vec<u32> {
    frames.iter().map(|f| wire::header(f).unwrap().opcode.get()).collect()
}

fn named<M: Message>(name: &str) -> M {
    let mut m = M::request(50, 0);
    let bytes = m.as_mut_bytes();
    // Every name-carrying DM request has its `str[32]` right after the header.
    bytes[24] = name.len() as u8;
    bytes[25..25 + name.len()].copy_from_slice(name.as_bytes());
    m
}

/// A DM of class `s` (most tests), or of `M`'s class.
fn dm(to: u64, dm_id: u64) -> SendDmS {
    dm_of::<SendDmS>(to, dm_id)
}

fn dm_of<M: Classed<Head = SendDmHead>>(to: u64, dm_id: u64) -> M {
    let mut m = M::request(dm_id, 7);
    m.head_mut().peer_uid.set(to);
    m
}

fn seq_of(frame: &[u8]) -> u64 {
    u64::from_be_bytes(frame[24..32].try_into().unwrap())
}

#[test]
fn dm_needs_an_accepted_channel_and_reports_delivered_only_after_the_commit_and_the_ack() {
    let mut w = World::new();
    let mut alice = w.connect(1, "alice");
    let mut bob = w.connect(2, "bob");
    let got = w.send(&mut alice, dm(bob.uid, 77).as_bytes());
    assert_eq!(wire::decode::<StatusReply>(&got[0]).unwrap().hdr.code.get(), code::FORBIDDEN, "no channel yet");

    assert!(w.send(&mut alice, named::<DmRequest>("bob").as_bytes()).is_empty(), "answered after the commit");
    assert_eq!(opcodes(&w.take(&mut bob)), [DMRQ], "bob is asked at once");
    w.commit();
    assert_eq!(opcodes(&w.take(&mut alice)), [STAT]);
    w.send(&mut bob, named::<DmAccept>("alice").as_bytes());
    w.commit();
    assert_eq!(opcodes(&w.take(&mut bob)), [CTCT, STAT], "bob gets alice's keys, then 200");
    assert_eq!(opcodes(&w.take(&mut alice)), [CTCT], "alice gets bob's keys");

    // Bob is online: the message reaches him now; alice hears nothing before the commit.
    assert!(w.send(&mut alice, dm(bob.uid, 77).as_bytes()).is_empty());
    let got = w.take(&mut bob);
    assert_eq!(opcodes(&got), [RVUS]);
    let rvum = wire::decode::<ReceiveDmS>(&got[0]).unwrap();
    let h = rvum.head();
    assert_eq!((h.sender_uid.get(), h.dm_id.get(), h.sender().unwrap()), (alice.uid, 77, "alice"));
    w.commit();
    assert!(w.take(&mut alice).is_empty(), "durable, but bob has not acknowledged yet");
    let mut ack = MailboxAck::request(9, 0);
    ack.seq.set(seq_of(&got[0]));
    w.send(&mut bob, ack.as_bytes());
    let got = w.take(&mut alice);
    let st = wire::decode::<DmStatus>(&got[0]).unwrap();
    assert_eq!((st.hdr.opcode.get(), st.hdr.msg_id.get(), st.state), (DMST, 77, 2), "delivered");
}

#[test]
fn offline_recipient_is_queued_a_resend_is_stored_once_and_login_delivers_in_order() {
    let mut w = World::new();
    let mut alice = w.connect(1, "alice");
    let mut bob = w.connect(2, "bob");
    w.befriend((&mut alice, "alice"), (&mut bob, "bob"));
    w.take(&mut bob);
    // Bob's request events are acknowledged, then he leaves.
    w.core.close(bob.id, "test");
    w.core.remove(bob.id);
    for id in [10u64, 11, 10] {
        w.send(&mut alice, dm(bob.uid, id).as_bytes());
    }
    w.commit();
    let states: Vec<(u64, u8)> = w
        .take(&mut alice)
        .iter()
        .map(|f| wire::decode::<DmStatus>(f).unwrap())
        .map(|s| (s.dm_id.get(), s.state))
        .collect();
    assert_eq!(states, [(10, 1), (11, 1), (10, 1)], "queued, and the resend answered again");
    // A new session of bob: login record, contacts, then the mailbox in order, each DM once.
    let (_again, got) = w.login_again(4, "bob", bob.uid);
    let ops = opcodes(&got);
    let first = [crate::opcodes::CNNT, crate::opcodes::LGRC, PKST, CTCT];
    assert_eq!(ops[..4], first, "then the login record, the prekey state and the contacts");
    let dms: Vec<u64> =
        got.iter().filter_map(|f| wire::decode::<ReceiveDmS>(f).ok()).map(|m| m.head.dm_id.get()).collect();
    assert_eq!(dms, [10, 11], "in order, the resend not stored twice");
}

#[test]
fn a_queued_dm_acknowledged_later_is_reported_delivered_to_its_sender() {
    let mut w = World::new();
    let mut alice = w.connect(1, "alice");
    let mut bob = w.connect(2, "bob");
    w.befriend((&mut alice, "alice"), (&mut bob, "bob"));
    w.take(&mut bob);
    w.core.close(bob.id, "test");
    w.core.remove(bob.id);
    w.send(&mut alice, dm(bob.uid, 10).as_bytes());
    w.commit();
    let queued = w.take(&mut alice);
    assert_eq!(wire::decode::<DmStatus>(&queued[0]).unwrap().state, 1, "queued");
    // Bob comes back and acknowledges the DM: alice hears "delivered", from her mailbox.
    let (mut again, got) = w.login_again(4, "bob", bob.uid);
    let rvum = got.iter().find_map(|f| wire::decode::<ReceiveDmS>(f).ok()).expect("the DM");
    let mut ack = MailboxAck::request(9, 0);
    ack.seq.set(rvum.head.seq.get());
    w.send(&mut again, ack.as_bytes());
    w.commit();
    let later: Vec<DmStatus> =
        w.take(&mut alice).iter().filter_map(|f| wire::decode::<DmStatus>(f).ok().copied()).collect();
    assert_eq!(later.len(), 1, "one notice");
    let n = &later[0];
    assert_eq!((n.hdr.msg_id.get(), n.dm_id.get(), n.state, n.peer().unwrap()), (0, 10, 2, "bob"), "delivered");
    assert_ne!(n.seq.get(), 0, "from the mailbox: alice acknowledges it");
}

/// (dm_id, state) of every `dmst` sealed to `id` so far.
fn dm_states(w: &mut crate::server::fuzz::World, id: ConnId, opener: &mut record::Opener) -> Vec<(u64, u8)> {
    let got = w.received(id, opener);
    got.iter().filter_map(|f| wire::decode::<DmStatus>(f).ok()).map(|s| (s.dm_id.get(), s.state)).collect()
}

#[test]
fn dm_resent_from_another_session_is_answered_in_that_session_too() {
    // Found by the dispatch fuzz target: a resend while the first request
    // waited for the recipient's ack was never answered in its own session.
    use crate::server::fuzz::{limits, uid, World as Seam};
    let mut w = Seam::new();
    let (first, mut o1) = w.open(0).unwrap();
    let (second, mut o2) = w.open(0).unwrap();
    let (bob, mut ob) = w.open(1).unwrap();
    w.received(bob, &mut ob);
    // Bob acknowledges while both requests wait: both hear "delivered".
    for id in [first, second] {
        assert!(w.dispatch(id, dm(uid(1), 5).as_bytes()));
        w.settle();
    }
    let got = w.received(bob, &mut ob);
    assert_eq!(opcodes(&got), [RVUS], "stored and delivered once");
    let mut ack = MailboxAck::request(9, 0);
    ack.seq.set(seq_of(&got[0]));
    assert!(w.dispatch(bob, ack.as_bytes()));
    w.settle();
    assert_eq!(dm_states(&mut w, first, &mut o1), [(5, 2)]);
    assert_eq!(dm_states(&mut w, second, &mut o2), [(5, 2)]);
    // Bob does not acknowledge in time: both hear "queued".
    for id in [first, second] {
        assert!(w.dispatch(id, dm(uid(1), 6).as_bytes()));
        w.settle();
    }
    w.advance(limits().deliver_wait_ms + 1);
    w.settle();
    assert_eq!(dm_states(&mut w, first, &mut o1), [(6, 1)]);
    assert_eq!(dm_states(&mut w, second, &mut o2), [(6, 1)]);
}

#[test]
fn a_mailbox_longer_than_the_output_bound_is_delivered_a_window_at_a_time() {
    use crate::server::handler::direct::MAIL_WINDOW;
    let mut w = World::new_with(Limits { rate: None, ..Limits::default() });
    let mut alice = w.connect(1, "alice");
    let mut bob = w.connect(2, "bob");
    w.befriend((&mut alice, "alice"), (&mut bob, "bob"));
    w.core.close(bob.id, "test");
    w.core.remove(bob.id);
    // 1,000 sealed DMs of class m (1,264 bytes each): about 1.2 MiB, over the 1 MiB output bound.
    let n = 1_000u64;
    for i in 0..n {
        w.send(&mut alice, dm_of::<SendDmM>(bob.uid, 100 + i).as_bytes());
    }
    w.commit();
    w.take(&mut alice);
    let (mut again, mut pending) = w.login_again(4, "bob", bob.uid);
    // Mailbox events carry their sequence number (bob's unacknowledged request events too).
    let from_mailbox = |f: &Vec<u8>| {
        let op = wire::header(f).map(|h| h.opcode.get()).unwrap_or(0);
        [crate::opcodes::RVUM, crate::opcodes::DMRQ, crate::opcodes::DMST, CTCT].contains(&op) && seq_of(f) != 0
    };
    let window = pending.iter().filter(|f| from_mailbox(f)).count();
    assert_eq!(window, MAIL_WINDOW, "a login gets one window of the mailbox");
    // Acknowledging each lets the next one come, in order, each once; the session stays open.
    let mut ids = Vec::new();
    while let Some(f) = pending.pop() {
        if from_mailbox(&f) {
            if let Ok(m) = wire::decode::<crate::opcodes::ReceiveDmM>(&f) {
                ids.push(m.head.dm_id.get());
            }
            let mut ack = crate::opcodes::MailboxAck::request(9, 0);
            ack.seq.set(seq_of(&f));
            let more = w.send(&mut again, ack.as_bytes());
            pending.splice(0..0, more.into_iter().rev());
        }
        assert!(!w.core.is_done(again.id), "closed after {} DMs", ids.len());
    }
    ids.sort_unstable();
    assert_eq!(ids, (100..100 + n).collect::<Vec<_>>());
}

/// A stand-in for the client's argon2id secrets (the server only hashes what it gets).
fn test_secret(s: &str) -> [u8; 32] {
    crate::crypto::sha256(&[s.as_bytes()])
}

/// The code of the one status reply in `got`.
fn code_of(got: &[Vec<u8>]) -> u16 {
    let stat: Vec<_> = got.iter().filter_map(|f| wire::decode::<StatusReply>(f).ok()).collect();
    assert_eq!(stat.len(), 1, "one status reply in {:?}", opcodes(got));
    stat[0].hdr.code.get()
}

#[test]
fn the_chat_rate_counts_every_session_of_a_user_together() {
    let mut w = World::new_with(Limits { rate: Some((5, 5_000)), ..Limits::default() });
    let mut alice = w.connect(1, "alice");
    let mut bob = w.connect(2, "bob");
    w.befriend((&mut alice, "alice"), (&mut bob, "bob"));
    let (mut alice2, _) = w.login_again(3, "alice", alice.uid);
    for dm_id in 1..=3 {
        w.send(&mut alice, dm(bob.uid, dm_id).as_bytes());
    }
    for dm_id in 4..=5 {
        w.send(&mut alice2, dm(bob.uid, dm_id).as_bytes());
    }
    w.commit();
    w.take(&mut alice);
    w.take(&mut alice2);
    // Five in the window from two sessions: the sixth, from either, is refused.
    for side in [&mut alice, &mut alice2] {
        let got = w.send(side, dm(bob.uid, 100 + side.id).as_bytes());
        assert_eq!(code_of(&got), code::RATE_LIMITED, "session {}", side.id);
    }
    // Another user is not limited by alice's messages.
    w.take(&mut bob);
    assert!(w.send(&mut bob, dm(alice.uid, 1).as_bytes()).iter().all(|f| wire::decode::<StatusReply>(f).is_err()));
    w.now += 5_000;
    assert!(w.send(&mut alice2, dm(bob.uid, 200).as_bytes()).iter().all(|f| wire::decode::<StatusReply>(f).is_err()));
}

#[test]
fn a_full_mailbox_refuses_with_508_before_acknowledging_and_keeps_what_it_acknowledged() {
    let msg = size_of::<ReceiveDmS>();
    // Room for four DMs by count and by bytes (whichever binds first is tested in turn).
    for (max_msgs, max_bytes) in [(4, usize::MAX), (1_000, 4 * msg + msg / 2)] {
        let mut w = World::new_with(Limits {
            rate: None,
            mailbox_max_msgs: max_msgs,
            mailbox_max_bytes: max_bytes,
            ..Limits::default()
        });
        let mut alice = w.connect(1, "alice");
        let mut bob = w.connect(2, "bob");
        w.befriend((&mut alice, "alice"), (&mut bob, "bob"));
        // Bob acknowledges alice's request (the first event of his mailbox),
        // so his mailbox is empty; then he goes away.
        let mut ack = MailboxAck::request(9, 0);
        ack.seq.set(1);
        w.send(&mut bob, ack.as_bytes());
        w.commit();
        w.core.close(bob.id, "test");
        w.core.remove(bob.id);
        let mut acked = Vec::new();
        for dm_id in 1..=6u64 {
            let mut got = w.send(&mut alice, dm(bob.uid, dm_id).as_bytes());
            w.commit();
            got.extend(w.take(&mut alice));
            match wire::decode::<DmStatus>(&got[0]) {
                Ok(st) => {
                    assert_eq!((st.dm_id.get(), st.state), (dm_id, 1), "queued");
                    acked.push(dm_id);
                }
                Err(_) => assert_eq!(code_of(&got), code::MAILBOX_FULL, "dm {dm_id} ({max_msgs}, {max_bytes})"),
            }
        }
        assert_eq!(acked, [1, 2, 3, 4], "({max_msgs}, {max_bytes})");
        // Bob logs in: every acknowledged DM is there, in order; nothing else.
        let (mut bob, got) = w.login_again(4, "bob", bob.uid);
        let ids: Vec<u64> =
            got.iter().filter_map(|f| wire::decode::<ReceiveDmS>(f).ok()).map(|r| r.head.dm_id.get()).collect();
        assert_eq!(ids, acked);
        // Once he acknowledges one, there is room again.
        let first = got.iter().find(|f| wire::decode::<ReceiveDmS>(f).is_ok()).unwrap();
        let mut ack = MailboxAck::request(9, 0);
        ack.seq.set(seq_of(first));
        w.send(&mut bob, ack.as_bytes());
        w.commit();
        let got = w.send(&mut alice, dm(bob.uid, 7).as_bytes());
        assert!(got.iter().all(|f| wire::decode::<StatusReply>(f).is_err()), "stored");
    }
}
