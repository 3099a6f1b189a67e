//! Session-level direct-message tests: hand-built server frames in, events,
//! requests and acknowledgements out. Bob's client is played for real (his
//! prekeys, X3DH and his Double Ratchet sessions), so that what alice's
//! session sends is opened as bob would, and what it receives is sealed as
//! bob would. The fixtures are shared with `prekeys_tests.rs`.

use std::sync::OnceLock;

use sotto::dm::Prekey;
use sotto::identity::{Signer, RSA_BYTES};
use sotto::opcodes::{
    Class, Connected, Header, MailboxAck, PrekeyBundle, PrekeyFetch, ReceiveDmHead, SendDmHead, RVUS, SMPS,
};
use sotto::ratchet::Ratchet;
use sotto::wire::{self, code};
use sotto::x3dh::{self, Bundle};
use x25519_dalek::{PublicKey, StaticSecret};
use zerocopy::byteorder::big_endian::U64;
use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::ratchets::PeerSession;
use crate::session::tests::{feed, sent_id, status, NOW};
use crate::session::{Frame, Local, REQUEST_TIMEOUT_MS};

pub(in crate::session) const ALICE: u64 = 0xa11ce;
pub(in crate::session) const BOB: u64 = 0xb0b;
const ALICE_SECRET: [u8; 32] = [11; 32];
const BOB_SECRET: [u8; 32] = [22; 32];
/// One-time prekeys alice holds at login (ids 1 to 3), besides her signed prekey 1.
const ALICE_OPKS: usize = 3;

/// A user's keys: signer and the public keys the server lists.
pub(in crate::session) struct Ident {
    der: &'static [u8],
    pub(in crate::session) id_pub: [u8; RSA_BYTES],
    pub(in crate::session) enc_pub: [u8; 32],
}

impl Ident {
    pub(in crate::session) fn signer(&self) -> Signer {
        Signer::from_pkcs8_der(self.der).unwrap()
    }

    fn keys(&self) -> Keys {
        Keys { id_pub: self.id_pub, enc_pub: self.enc_pub }
    }
}

type KeyPair = (Zeroizing<Vec<u8>>, [u8; RSA_BYTES]);

/// RSA generation is slow: three keys serve every test (alice, bob, bob's
/// replacement; bob's two share his X25519 key).
fn ident(which: usize) -> Ident {
    static KEYS: OnceLock<Vec<KeyPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| (0..3).map(|_| identity::generate().unwrap()).collect());
    let (der, n) = &keys[which];
    let secret = if which == 0 { ALICE_SECRET } else { BOB_SECRET };
    Ident { der, id_pub: *n, enc_pub: PublicKey::from(&StaticSecret::from(secret)).to_bytes() }
}

pub(in crate::session) fn alice() -> Ident {
    ident(0)
}

pub(in crate::session) fn bob() -> Ident {
    ident(1)
}

pub(in crate::session) fn bob_new_key() -> Ident {
    ident(2)
}

pub(in crate::session) fn with_bob() -> Contacts {
    let mut c = Contacts::new();
    c.pin(BOB, "bob", bob().keys());
    c
}

/// Alice's prekeys as her client published them at an earlier login.
fn alice_prekeys() -> Sessions {
    let mut p = Sessions::new();
    p.rotate_spk(NOW);
    p.new_opks(ALICE_OPKS);
    p
}

/// Logged in as alice with her keys and prekeys installed and `contacts`; every setup event consumed.
pub(in crate::session) fn alice_session(contacts: Contacts) -> Session {
    alice_session_with(contacts, alice_prekeys())
}

/// As [`alice_session`], with `sessions` for her sessions file.
pub(in crate::session) fn alice_session_with(contacts: Contacts, sessions: Sessions) -> Session {
    let mut s = Session::new();
    s.login("alice", "password123", "red green blue", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(feed(&mut s, &status(id, Status::Pending, code::PENDING, "")).is_none());
    let id = sent_id(&mut s);
    let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
    c.uid = U64::new(ALICE);
    c.set_username("alice").unwrap();
    assert!(matches!(feed(&mut s, c.as_bytes()), Some(Event::Authenticated { again: false, .. })));
    let a = alice();
    let dm = DmLocal { enc_secret: Some(Zeroizing::new(ALICE_SECRET)), contacts, sessions, ..DmLocal::default() };
    s.install(Local { identity: Some((a.signer(), a.enc_pub)), dm, ..Local::default() });
    assert!(s.poll_event().is_none());
    let _ = s.dirty_pins().is_some();
    let _ = s.dirty_contacts().is_some();
    let _ = s.dirty_inbox().is_some();
    let _ = s.dirty_outbox().is_some();
    let _ = s.dirty_sessions().is_some();
    s
}

/// Alice's sessions and prekeys, as her session holds them.
pub(in crate::session) fn sessions_of(s: &Session) -> &Sessions {
    &s.me.as_ref().expect("logged in").dm.sessions
}

/// Bob's client, played for real: his prekeys and his sessions with alice.
pub(in crate::session) struct BobClient {
    /// His prekeys and sessions, as his client keeps them.
    pub(in crate::session) sessions: Sessions,
    /// Bob's one-time prekey the server hands out next.
    next_opk: u32,
    /// Alice's one-time prekey bob's next session starts with.
    next_alice_opk: u32,
}

impl BobClient {
    /// Bob with a signed prekey and three one-time prekeys published.
    pub(in crate::session) fn new() -> BobClient {
        let mut sessions = Sessions::new();
        sessions.rotate_spk(NOW);
        sessions.new_opks(3);
        BobClient { sessions, next_opk: 1, next_alice_opk: 1 }
    }

    /// The pkbd the server answers alice's pkgt with: bob's signed prekey, signed by `signer`, and a one-time prekey.
    pub(in crate::session) fn bundle(&mut self, pkgt: &[u8], signer: &Ident) -> Vec<u8> {
        let req = wire::decode::<PrekeyFetch>(pkgt).expect("a pkgt");
        assert_eq!(req.peer_uid.get(), BOB);
        let spk = self.sessions.current_spk().unwrap();
        let spk_pub = x3dh::public_key(&spk.secret);
        let binding = x3dh::spk_binding(&account::deployment_id(), BOB, spk.id, &spk_pub);
        let mut m = PrekeyBundle::new(Status::Ok, code::OK, req.hdr.msg_id.get(), NOW);
        m.peer_uid.set(BOB);
        m.spk_id.set(spk.id);
        m.spk_pub = spk_pub;
        m.spk_sig = signer.signer().sign(&binding).unwrap();
        let opk = self.next_opk;
        self.next_opk += 1;
        m.opk_id.set(opk);
        m.opk_pub = x3dh::public_key(self.sessions.opk_secret(opk).unwrap());
        m.as_bytes().to_vec()
    }

    /// The text of an smp* alice sent, opened as bob's client opens it (`None`: it does not open).
    pub(in crate::session) fn open(&mut self, smp: &[u8]) -> Option<String> {
        let m = relay(smp, 1, ALICE, "alice");
        prekeys::open(&mut self.sessions, (BOB, &BOB_SECRET), (ALICE, &alice().enc_pub), &m, false).ok().flatten()
    }

    /// Bob's message `dm_id` to alice, as the server relays it with mailbox `seq`.
    pub(in crate::session) fn write(&mut self, alice_s: &Session, seq: u64, dm_id: u64, text: &str) -> DmMsg {
        self.write_at(alice_s, seq, dm_id, text, NOW - 50)
    }

    /// As [`BobClient::write`], sent at `sent_time`; the first starts a
    /// session from the prekeys alice's session holds.
    pub(in crate::session) fn write_at(
        &mut self,
        alice_s: &Session,
        seq: u64,
        dm_id: u64,
        text: &str,
        sent_time: u64,
    ) -> DmMsg {
        if self.sessions.with(ALICE).is_empty() {
            self.start(sessions_of(alice_s));
        }
        let frame = prekeys::seal(&mut self.sessions, BOB, ALICE, text, dm_id, sent_time).unwrap();
        relay(&frame.bytes, seq, BOB, "bob")
    }

    /// X3DH from alice's signed prekey and her next one-time prekey, as her pkbd would hand them out.
    fn start(&mut self, hers: &Sessions) {
        let spk = hers.current_spk().expect("alice published a signed prekey");
        let opk = hers.opk_secret(self.next_alice_opk).map(|k| (self.next_alice_opk, x3dh::public_key(k)));
        self.next_alice_opk += 1;
        let bundle = Bundle { ik: alice().enc_pub, spk_id: spk.id, spk: x3dh::public_key(&spk.secret), opk };
        let ad = x3dh::session_ad(&account::deployment_id(), BOB, &bob().enc_pub, ALICE, &alice().enc_pub);
        let started = x3dh::initiate(&BOB_SECRET, &bundle, &ad).unwrap();
        let ratchet = Ratchet::initiator(&started.sk, &bundle.spk).unwrap();
        let prekey = Prekey { spk_id: spk.id, opk_id: opk.map_or(0, |o| o.0), ek: started.ek_pub };
        self.sessions.add(ALICE, PeerSession { ratchet, ad, initiator: true, prekey });
    }
}

/// An smp* as the server relays it to its recipient: the rvu* fields, with mailbox `seq`.
pub(in crate::session) fn relay(smp: &[u8], seq: u64, from_uid: u64, from: &str) -> DmMsg {
    let v = wire::decode_classed::<SendDmHead>(smp, SMPS).expect("an smp*");
    let mut h = ReceiveDmHead::new_zeroed();
    h.seq.set(seq);
    h.sender_uid.set(from_uid);
    h.set_sender(from).unwrap();
    h.server_time.set(NOW - 10);
    h.dm_id = v.hdr.msg_id;
    h.sent_time = v.hdr.timestamp;
    (h.prekey, h.spk_id, h.opk_id, h.ek) = (v.head.prekey, v.head.spk_id, v.head.opk_id, v.head.ek);
    (h.dh, h.pn, h.n, h.tag) = (v.head.dh, v.head.pn, v.head.n, v.head.tag);
    DmMsg { head: h, body: v.body.to_vec() }
}

/// The bytes of an rvu* (its class from the body's size).
pub(in crate::session) fn rvu(m: &DmMsg) -> Vec<u8> {
    let mut bytes = wire::encode_classed(RVUS, 0, NOW, &m.head, &m.body).unwrap();
    bytes[4] = Status::Ok as u8;
    bytes[6..8].copy_from_slice(&code::OK.to_be_bytes());
    bytes
}

/// An smp* alice's client sent: its header, shared fields, body and class.
pub(in crate::session) fn sent_dm(pt: &[u8]) -> (Header, SendDmHead, Vec<u8>, Class) {
    let v = wire::decode_classed::<SendDmHead>(pt, SMPS).expect("an smp*");
    (*v.hdr, *v.head, v.body.to_vec(), v.class)
}

pub(in crate::session) fn contact_frame(
    msg_id: u64,
    st: Status,
    seq: u64,
    kind: u8,
    uid: u64,
    name: &str,
    who: &Ident,
) -> Vec<u8> {
    let mut m = ContactMsg::new(st, code::OK, msg_id, NOW);
    m.seq.set(seq);
    m.kind = kind;
    m.uid.set(uid);
    m.set_name(name).unwrap();
    m.id_pub = who.id_pub;
    m.enc_pub = who.enc_pub;
    let binding = account::enc_key_binding(&account::deployment_id(), uid, name, &who.enc_pub);
    m.enc_sig = who.signer().sign(&binding).unwrap();
    m.as_bytes().to_vec()
}

pub(in crate::session) fn dmst(msg_id: u64, seq: u64, dm_id: u64, state: u8) -> Vec<u8> {
    let mut m = DmStatus::new(Status::Ok, code::OK, msg_id, NOW);
    m.seq.set(seq);
    m.dm_id.set(dm_id);
    m.peer_uid.set(BOB);
    m.set_peer("bob").unwrap();
    m.state = state;
    m.as_bytes().to_vec()
}

pub(in crate::session) fn dm_event(ev: Option<Event>) -> DmEvent {
    match ev {
        Some(Event::Dm(d)) => d,
        Some(Event::Failed(f)) => panic!("failed: {f:?}"),
        _ => panic!("expected a DM event"),
    }
}

pub(in crate::session) fn message(ev: Option<Event>) -> DmMessage {
    match dm_event(ev) {
        DmEvent::Message(m) => m,
        other => panic!("expected a dm, got {other:?}"),
    }
}

/// The seqs acknowledged once the driver releases the held acknowledgements.
pub(in crate::session) fn acked(s: &mut Session) -> Vec<u64> {
    s.release_acks(NOW);
    let mut seqs = Vec::new();
    while let Some(pt) = s.poll_transmit() {
        seqs.push(wire::decode::<MailboxAck>(&pt).expect("only acknowledgements").seq.get());
    }
    seqs
}

/// `/msg` to bob: the smp* sent. A first message fetches bob's bundle, which `bob` answers.
pub(in crate::session) fn send(s: &mut Session, peer: &mut BobClient, text: &str) -> Vec<u8> {
    s.send_dm("@bob", text, NOW).unwrap();
    let pt = s.poll_transmit().expect("a request").to_vec();
    if wire::decode::<PrekeyFetch>(&pt).is_err() {
        return pt;
    }
    assert!(feed(s, &peer.bundle(&pt, &bob())).is_none(), "the bundle verifies");
    s.poll_transmit().expect("an smp* once the bundle is here").to_vec()
}

#[test]
fn request_then_accept_pins_the_peer_and_reports_its_fingerprint() {
    let mut s = alice_session(Contacts::new());
    s.dm_request("@Bob", NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    let req = wire::decode::<DmRequest>(&pt).unwrap();
    assert_eq!(req.peer().unwrap(), "bob");
    let ok = status(req.hdr.msg_id.get(), Status::Ok, code::OK, "requested");
    assert_eq!(dm_event(feed(&mut s, &ok)), DmEvent::Ok { cmd: "dm", user: "bob".into() });
    assert_eq!(s.dm_request("@alice", NOW).unwrap_err().code, 400, "yourself");

    // Later, from the mailbox: bob accepted.
    let b = bob();
    assert_eq!(
        dm_event(feed(&mut s, &contact_frame(0, Status::Ok, 7, 1, BOB, "bob", &b))),
        DmEvent::Accepted { with: "bob".into(), fingerprint: b.keys().fingerprint() }
    );
    assert!(s.dirty_contacts().is_some_and(|c| c.get("bob").is_some_and(|c| c.trusted)));
    assert!(s.dirty_pins().is_some_and(|p| p.get("bob").is_some()), "room messages verify with the same key");
    assert_eq!(acked(&mut s), [7], "acknowledged after the pin");

    // Accepting bob's request the other way round: keys arrive, then the 200.
    let mut s = alice_session(Contacts::new());
    s.dm_accept("bob", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(feed(&mut s, &contact_frame(id, Status::Pending, 0, 1, BOB, "bob", &b)).is_none());
    assert!(s.busy());
    let ev = dm_event(feed(&mut s, &status(id, Status::Ok, code::OK, "accepted")));
    assert_eq!(ev, DmEvent::Accepted { with: "bob".into(), fingerprint: b.keys().fingerprint() });
    assert!(acked(&mut s).is_empty(), "not from the mailbox: nothing to acknowledge");
    s.fingerprint("@bob").unwrap();
    match dm_event(s.poll_event()) {
        DmEvent::Fingerprint { user, fingerprint, mine, safety_number, listed: None } => {
            assert_eq!((user.as_str(), fingerprint), ("bob", b.keys().fingerprint()));
            assert_eq!(mine, alice().keys().fingerprint());
            let (fa, fb) = (identity::fingerprint(&alice().id_pub), identity::fingerprint(&b.id_pub));
            assert_eq!(safety_number, dm::safety_number(&fb, &fa));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn accept_with_keys_that_do_not_bind_pins_nothing() {
    let mut s = alice_session(Contacts::new());
    s.dm_accept("bob", NOW).unwrap();
    let id = sent_id(&mut s);
    let mut frame = contact_frame(id, Status::Pending, 0, 1, BOB, "bob", &bob());
    let at = frame.len() - 40; // inside enc_sig
    frame[at] ^= 1;
    assert!(feed(&mut s, &frame).is_none());
    match feed(&mut s, &status(id, Status::Ok, code::OK, "accepted")) {
        Some(Event::Failed(f)) => assert!(f.cmd == "accept" && f.message.contains("do not verify"), "{f:?}"),
        _ => panic!("expected a failure"),
    }
    assert!(s.dirty_contacts().is_none());
    assert_eq!(s.send_dm("@bob", "hi", NOW).unwrap_err().code, 403);
}

#[test]
fn msg_is_sealed_to_the_pinned_key_kept_in_the_outbox_then_reported_sent() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let pt = send(&mut s, &mut b, "hello bob");
    let (hdr, head, _, _) = sent_dm(&pt);
    let id = hdr.msg_id.get();
    assert_ne!(id, 0);
    assert_eq!((head.peer_uid.get(), hdr.timestamp.get()), (BOB, NOW));
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![id]), "kept before it is sent");
    // Bob opens it with his secrets and alice's pinned key.
    assert_eq!(b.open(&pt).as_deref(), Some("hello bob"));

    assert!(s.busy());
    let ev = dm_event(feed(&mut s, &dmst(id, 0, id, 1)));
    assert_eq!(ev, DmEvent::Sent { id, to: "bob".into(), delivered: false });
    assert!(!s.busy());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![]), "answered: out of the outbox");
    let again = send(&mut s, &mut b, "again");
    let id2 = sent_dm(&again).0.msg_id.get();
    assert_ne!(id2, id, "a fresh id per message");
    assert_eq!(b.open(&again).as_deref(), Some("again"));
    assert_eq!(
        dm_event(feed(&mut s, &dmst(id2, 0, id2, 2))),
        DmEvent::Sent { id: id2, to: "bob".into(), delivered: true }
    );
}

#[test]
fn msg_refusals_are_local_and_send_nothing() {
    let mut s = alice_session(with_bob());
    let f = s.send_dm("@carol", "hi", NOW).unwrap_err();
    assert_eq!((f.cmd.as_str(), f.code), ("msg", 403));
    let f = s.send_dm("@bob", &"x".repeat(TEXT_MAX + 1), NOW).unwrap_err();
    assert_eq!(f.code, 413);
    assert_eq!(s.send_dm("@B!", "hi", NOW).unwrap_err().code, 400);
    assert!(s.poll_transmit().is_none() && s.dirty_outbox().is_none());
    assert!(Session::new().send_dm("@bob", "hi", NOW).unwrap_err().code == 401);
    // A server error drops the message from the outbox.
    let id = sent_dm(&send(&mut s, &mut BobClient::new(), &"y".repeat(TEXT_MAX))).0.msg_id.get();
    let _ = s.dirty_outbox();
    match feed(&mut s, &status(id, Status::Error, code::FORBIDDEN, "no accepted DM channel")) {
        Some(Event::Failed(f)) => assert_eq!((f.cmd.as_str(), f.code), ("msg", 403)),
        _ => panic!("expected a failure"),
    }
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![]));
}

#[test]
fn a_changed_key_at_login_refuses_the_contact_until_trusted() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let held = rvu(&b.write(&s, 4, 99, "held"));
    let new = bob_new_key();
    // Listed at login with another identity key.
    let ev = dm_event(feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, BOB, "bob", &new)));
    assert_eq!(ev, DmEvent::KeyChanged { user: "bob".into() });
    assert!(s.dirty_contacts().is_some_and(|c| !c.get("bob").unwrap().trusted), "saved as refused");
    assert!(feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, BOB, "bob", &new)).is_none(), "said once a run");
    // Sending is refused locally.
    let f = s.send_dm("@bob", "hi", NOW).unwrap_err();
    assert_eq!((f.cmd.as_str(), f.code), ("msg", 403));
    assert!(f.message.contains("/trust @bob"), "{f:?}");
    assert!(s.poll_transmit().is_none());
    // Messages from bob are not shown and not acknowledged: they stay on the server.
    assert!(matches!(feed(&mut s, &held), Some(Event::Warning(w)) if w.contains("/trust @bob")));
    assert!(acked(&mut s).is_empty());
    assert!(s.dirty_inbox().is_none());
    s.fingerprint("bob").unwrap();
    assert!(
        matches!(dm_event(s.poll_event()), DmEvent::Fingerprint { listed: Some(l), .. } if l == new.keys().fingerprint())
    );
    s.list_contacts().unwrap();
    match dm_event(s.poll_event()) {
        DmEvent::Contacts { contacts: list, .. } => {
            assert_eq!(list.len(), 1);
            assert_eq!((list[0].name.as_str(), list[0].trusted), ("bob", false));
            assert_eq!(list[0].fingerprint, bob().keys().fingerprint(), "the pinned key until trusted");
        }
        other => panic!("{other:?}"),
    }
    // /trust re-pins the listed key; sending works again.
    s.trust("@bob").unwrap();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Ok { cmd: "trust", user: "bob".into() });
    let c = s.dirty_contacts().map(|c| c.get("bob").unwrap().clone()).unwrap();
    assert!(c.trusted && c.keys == new.keys());
    assert!(s
        .dirty_pins()
        .is_some_and(|p| p.get("bob").is_some_and(|p| p.binding.id_pub == new.id_pub && !p.changed())));
    // Bob's prekeys still signed with the old identity key are refused now.
    s.send_dm("@bob", "hi again", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    match feed(&mut s, &b.bundle(&pkgt, &bob())) {
        Some(Event::Failed(f)) => assert!(f.cmd == "msg" && f.message.contains("not signed"), "{f:?}"),
        _ => panic!("expected a failure"),
    }
    assert!(s.poll_transmit().is_none());
    s.send_dm("@bob", "hi again", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    assert!(feed(&mut s, &b.bundle(&pkgt, &new)).is_none());
    let pt = s.poll_transmit().unwrap();
    assert_eq!(sent_dm(&pt).1.peer_uid.get(), BOB);
    assert_eq!(b.open(&pt).as_deref(), Some("hi again"));
    let id = sent_dm(&pt).0.msg_id.get();
    let _ = feed(&mut s, &dmst(id, 0, id, 1));
    // The message that waited on the server is shown now.
    let got = message(feed(&mut s, &held));
    assert_eq!((got.text.as_str(), got.verified), ("held", true));
    assert_eq!(acked(&mut s), [4]);
}

#[test]
fn received_messages_are_checked_shown_once_kept_and_acknowledged() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let first = b.write(&s, 5, 0x1234, "hi alice");
    let got = message(feed(&mut s, &rvu(&first)));
    assert_eq!(
        got,
        DmMessage {
            from: "bob".into(),
            id: 0x1234,
            text: "hi alice".into(),
            ts: NOW - 50,
            verified: true,
            error: None
        }
    );
    let seen = |i: &Inbox| i.check(BOB, NOW - 50, 0x1234) == crate::fresh::Verdict::Seen;
    assert!(s.dirty_inbox().is_some_and(seen), "kept before the acknowledgement");
    assert_eq!(acked(&mut s), [5]);

    // The same message again (another seq, as after a restart): acknowledged, not shown.
    let mut again = first.clone();
    again.head.seq.set(6);
    assert!(matches!(feed(&mut s, &rvu(&again)), Some(Event::Notice(n)) if n.contains("not shown again")));
    assert!(s.poll_event().is_none());
    assert_eq!(acked(&mut s), [6]);

    // A bad tag, or a changed body: no text, flagged.
    let mut m = b.write(&s, 7, 0x99, "forged?");
    m.head.tag[3] ^= 1;
    let got = message(feed(&mut s, &rvu(&m)));
    assert_eq!((got.text.as_str(), got.verified, got.error), ("", false, Some(UNDECRYPTABLE)));
    let mut m = b.write(&s, 8, 0x9a, "tampered");
    m.body[100] ^= 1;
    let got = message(feed(&mut s, &rvu(&m)));
    assert_eq!((got.text.as_str(), got.verified, got.error), ("", false, Some(UNDECRYPTABLE)));
    // Bound to its id: the same body under another id does not open.
    let mut m = b.write(&s, 9, 0x9b, "moved");
    m.head.dm_id.set(0x9c);
    assert!(!message(feed(&mut s, &rvu(&m))).verified);
    assert_eq!(acked(&mut s), [7, 8, 9]);

    // Not a contact: not shown, not acknowledged.
    let mut m = b.write(&s, 10, 0x77, "stranger");
    m.head.sender_uid.set(0x5555);
    assert!(matches!(feed(&mut s, &rvu(&m)), Some(Event::Warning(_))));
    assert!(acked(&mut s).is_empty());
    // History lists what is kept, and TTL erasure empties it.
    s.history("@bob").unwrap();
    match dm_event(s.poll_event()) {
        DmEvent::History { with, messages } => {
            assert_eq!(with, "bob");
            assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), [0x1234, 0x99, 0x9a, 0x9c]);
        }
        other => panic!("{other:?}"),
    }
    s.handle_timeout(NOW + DEFAULT_TTL_MS);
    s.history("bob").unwrap();
    assert!(matches!(dm_event(s.poll_event()), DmEvent::History { messages, .. } if messages.is_empty()));
    assert!(s.dirty_inbox().is_some_and(seen));
    again.head.seq.set(11);
    assert!(matches!(feed(&mut s, &rvu(&again)), Some(Event::Notice(_))), "never shown again");
}

#[test]
fn held_acknowledgements_can_be_dropped_when_nothing_was_saved() {
    let mut s = alice_session(with_bob());
    let m = BobClient::new().write(&s, 5, 1, "one");
    let _ = message(feed(&mut s, &rvu(&m)));
    s.discard_acks();
    assert!(acked(&mut s).is_empty());
}

#[test]
fn mailbox_requests_rejections_and_expiries_are_reported_and_acknowledged() {
    let mut s = alice_session(with_bob());
    let mut rq = DmRequested::new(Status::Ok, code::OK, 0, NOW);
    rq.seq.set(3);
    rq.from_uid.set(0xc);
    rq.set_from("carol").unwrap();
    assert_eq!(dm_event(feed(&mut s, rq.as_bytes())), DmEvent::Requested { from: "carol".into() });
    let mut rj = DmRejected::new(Status::Ok, code::OK, 0, NOW);
    rj.seq.set(4);
    rj.set_by("dave").unwrap();
    assert_eq!(dm_event(feed(&mut s, rj.as_bytes())), DmEvent::Rejected { by: "dave".into() });
    assert_eq!(dm_event(feed(&mut s, &dmst(0, 5, 0xfeed, 3))), DmEvent::Expired { id: 0xfeed });
    // A message answered "queued" earlier has reached bob's client since.
    assert_eq!(dm_event(feed(&mut s, &dmst(0, 6, 0xbeef, 2))), DmEvent::Delivered { id: 0xbeef, to: "bob".into() });
    assert_eq!(acked(&mut s), [3, 4, 5, 6]);
}

#[test]
fn a_lost_connection_keeps_messages_in_the_outbox_and_resends_them_after_login() {
    let mut s = alice_session(with_bob());
    let first = send(&mut s, &mut BobClient::new(), "typed online");
    s.connection_lost();
    let id1 = sent_dm(&first).0.msg_id.get();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Pending { id: id1, to: "bob".into() });
    assert!(!s.busy());
    // While disconnected: kept and reported pending; server commands are refused.
    s.send_dm("@bob", "typed offline", NOW).unwrap();
    let id2 = match dm_event(s.poll_event()) {
        DmEvent::Pending { id, to } if to == "bob" => id,
        other => panic!("{other:?}"),
    };
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![id1, id2]));
    assert_eq!(s.dm_request("@carol", NOW).unwrap_err().code, 0);
    s.history("@bob").unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Dm(DmEvent::History { .. }))), "local commands still work");

    // Back: the remembered credentials log in again, then the outbox goes out, in order, same bytes.
    assert!(s.relogin(NOW));
    let pt = s.poll_transmit().unwrap();
    let login = wire::decode::<sotto::opcodes::Login>(&pt).unwrap();
    assert_eq!(login.username().unwrap(), "alice");
    assert_eq!(login.auth_secret, *sotto::account::auth_secret("alice", "password123"));
    feed(&mut s, &status(login.hdr.msg_id.get(), Status::Pending, code::PENDING, ""));
    let id = sent_id(&mut s);
    let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
    c.uid = U64::new(ALICE);
    c.set_username("alice").unwrap();
    assert!(matches!(feed(&mut s, c.as_bytes()), Some(Event::Authenticated { again: true, .. })));
    let resent = s.poll_transmit().unwrap();
    assert_eq!(resent[..], first[..], "the same request again");
    assert_eq!(
        dm_event(feed(&mut s, &dmst(id1, 0, id1, 2))),
        DmEvent::Sent { id: id1, to: "bob".into(), delivered: true }
    );
    let second = sent_dm(&s.poll_transmit().unwrap()).0;
    assert_eq!(second.msg_id.get(), id2);
    assert_eq!(
        dm_event(feed(&mut s, &dmst(id2, 0, id2, 1))),
        DmEvent::Sent { id: id2, to: "bob".into(), delivered: false }
    );
    assert!(!s.busy() && s.poll_transmit().is_none());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![]));
}

#[test]
fn an_outbox_loaded_at_login_is_sent_again_in_order() {
    let mut outbox = Outbox::new();
    for id in [9, 3] {
        let mut head = SendDmHead::new_zeroed();
        head.peer_uid.set(BOB);
        let bytes = wire::encode_classed(SMPS, id, NOW - 1000, &head, &[0; 176]).unwrap();
        outbox.push("bob", Waiting::Sealed(Frame { id, bytes }));
    }
    let mut s = Session::new();
    s.login("alice", "password123", "red green blue", NOW).unwrap();
    let id = sent_id(&mut s);
    feed(&mut s, &status(id, Status::Pending, code::PENDING, ""));
    let id = sent_id(&mut s);
    let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
    c.uid = U64::new(ALICE);
    c.set_username("alice").unwrap();
    feed(&mut s, c.as_bytes());
    s.install(Local { dm: DmLocal { outbox, contacts: with_bob(), ..DmLocal::default() }, ..Local::default() });
    s.handle_timeout(NOW);
    let first = sent_id(&mut s);
    assert_eq!(first, 9);
    // No answer in time: it stays in the outbox, reported pending, and the next one goes.
    s.handle_timeout(NOW + REQUEST_TIMEOUT_MS);
    assert_eq!(dm_event(s.poll_event()), DmEvent::Pending { id: 9, to: "bob".into() });
    assert_eq!(sent_id(&mut s), 3);
    // A late answer for the first one still empties it from the outbox.
    assert_eq!(dm_event(feed(&mut s, &dmst(9, 0, 9, 1))), DmEvent::Sent { id: 9, to: "bob".into(), delivered: false });
    assert!(s.busy(), "the second still waits");
}

const IMPOSTOR: u64 = 0xbad;

#[test]
fn a_pushed_impostor_of_a_verified_contact_is_not_pinned_and_msg_still_seals_to_the_real_one() {
    let mut s = alice_session(with_bob());
    let fake = bob_new_key();
    // At login the server lists "bob" under a new UID with its own keys, and
    // pushes an accept from "bob" (the impostor) through the mailbox.
    let ev = dm_event(feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, IMPOSTOR, "bob", &fake)));
    assert_eq!(ev, DmEvent::KeyChanged { user: "bob".into() }, "loud: a key change");
    assert!(feed(&mut s, &contact_frame(0, Status::Ok, 9, 1, IMPOSTOR, "bob", &fake)).is_none(), "said once");
    let book = s.dirty_contacts().expect("the listing is noted");
    let c = book.get("bob").unwrap();
    assert_eq!((c.uid, c.keys, c.trusted), (BOB, bob().keys(), false), "the verified bob stays pinned");
    assert!(book.by_uid(IMPOSTOR).is_none());
    // /msg refuses until /trust: nothing is ever sealed to the impostor.
    let f = s.send_dm("@bob", "secret", NOW).unwrap_err();
    assert_eq!(f.code, 403, "{f:?}");
    assert!(s.poll_transmit().is_none());
    // A message from the impostor's UID is not taken for bob's.
    let mut m = BobClient::new().write(&s, 11, 0x77, "it is me");
    m.head.sender_uid.set(IMPOSTOR);
    match feed(&mut s, &rvu(&m)) {
        Some(Event::Warning(w)) => assert!(w.contains("not a contact"), "{w}"),
        _ => panic!("expected a warning"),
    }
    assert_eq!(acked(&mut s), [9], "only the dropped push is acknowledged");
}

#[test]
fn a_pushed_impostor_with_the_same_uid_leaves_msg_sealed_to_the_verified_keys_once_trusted_back() {
    let mut s = alice_session(with_bob());
    let fake = bob_new_key();
    let _ = feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, BOB, "bob", &fake));
    // Listed again with the verified keys: still refused until the user decides.
    let _ = feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, BOB, "bob", &bob()));
    assert!(s.send_dm("@bob", "hi", NOW).is_err());
    s.trust("@bob").unwrap();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Ok { cmd: "trust", user: "bob".into() });
    // Prekeys signed by the impostor's identity key are refused; bob's are used.
    let mut b = BobClient::new();
    s.send_dm("@bob", "hi", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    let refused = feed(&mut s, &b.bundle(&pkgt, &fake));
    assert!(matches!(refused, Some(Event::Failed(f)) if f.message.contains("not signed")));
    assert!(s.poll_transmit().is_none(), "nothing sealed to the impostor's prekey");
    let pt = send(&mut s, &mut b, "hi");
    assert_eq!(b.open(&pt).as_deref(), Some("hi"), "sealed to the verified bob");
}

#[test]
fn a_contact_pushed_without_a_request_is_dropped_and_the_user_told() {
    let mut s = alice_session(Contacts::new());
    // Listed at login, and "accepted" from the mailbox, with no /dm or /accept of ours.
    match feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, BOB, "bob", &bob())) {
        Some(Event::Warning(w)) => assert!(w.contains("not pinned") && w.contains("/dm @bob"), "{w}"),
        _ => panic!("expected a warning"),
    }
    assert!(feed(&mut s, &contact_frame(0, Status::Ok, 3, 1, BOB, "bob", &bob())).is_none(), "said once");
    assert!(s.dirty_contacts().is_none_or(|c| c.get("bob").is_none()), "nothing pinned");
    assert!(s.dirty_pins().is_none_or(|p| p.get("bob").is_none()));
    assert_eq!(acked(&mut s), [3], "dropped: it does not come back at every login");
    assert_eq!(s.send_dm("@bob", "hi", NOW).unwrap_err().code, 403);
}

#[test]
fn a_request_answered_already_contacts_pins_the_keys_that_came_with_it() {
    let mut s = alice_session(Contacts::new());
    s.dm_request("@bob", NOW).unwrap();
    let id = sent_id(&mut s);
    // Another machine of alice's had accepted bob: the server sends his keys, then 409.
    assert!(feed(&mut s, &contact_frame(id, Status::Pending, 0, 2, BOB, "bob", &bob())).is_none());
    let ev = dm_event(feed(&mut s, &status(id, Status::Error, code::CONFLICT, "already contacts")));
    assert_eq!(ev, DmEvent::Accepted { with: "bob".into(), fingerprint: bob().keys().fingerprint() });
    assert!(s.dirty_contacts().is_some_and(|c| c.get("bob").is_some_and(|c| c.trusted && c.uid == BOB)));
}

#[test]
fn a_dm_that_arrives_while_the_accept_completes_is_held_then_shown() {
    // bob's side, accepting alice: alice writes the moment she hears of the accept.
    let mut s = alice_session(Contacts::new());
    let mut b = BobClient::new();
    s.dm_accept("@bob", NOW).unwrap();
    let id = sent_id(&mut s);
    let (quick, quicker) = (b.write(&s, 4, 0x51, "quick"), b.write(&s, 5, 0x52, "quicker"));
    assert!(feed(&mut s, &rvu(&quick)).is_none(), "held, no warning");
    assert!(feed(&mut s, &contact_frame(id, Status::Pending, 0, 1, BOB, "bob", &bob())).is_none());
    assert!(feed(&mut s, &rvu(&quicker)).is_none(), "still held");
    assert!(acked(&mut s).is_empty(), "nothing acknowledged while held");
    let ev = dm_event(feed(&mut s, &status(id, Status::Ok, code::OK, "accepted")));
    assert!(matches!(ev, DmEvent::Accepted { .. }), "{ev:?}");
    let first = message(s.poll_event());
    let second = message(s.poll_event());
    assert_eq!((first.text.as_str(), first.verified), ("quick", true));
    assert_eq!((second.text.as_str(), second.verified), ("quicker", true));
    assert_eq!(acked(&mut s), [4, 5]);
}

#[test]
fn a_dm_held_for_an_accept_that_fails_stays_on_the_server() {
    let mut s = alice_session(Contacts::new());
    s.dm_accept("@bob", NOW).unwrap();
    let id = sent_id(&mut s);
    let quick = BobClient::new().write(&s, 4, 0x51, "quick");
    assert!(feed(&mut s, &rvu(&quick)).is_none());
    match feed(&mut s, &status(id, Status::Error, code::NOT_FOUND, "no pending request")) {
        Some(Event::Failed(f)) => assert_eq!(f.cmd, "accept"),
        _ => panic!("expected a failure"),
    }
    assert!(matches!(s.poll_event(), Some(Event::Warning(w)) if w.contains("not a contact")));
    assert!(acked(&mut s).is_empty(), "not acknowledged: it comes again at the next login");
}

#[test]
fn an_old_dm_delivered_again_much_later_is_never_shown_as_new() {
    let mut s = alice_session(with_bob());
    let mut once = BobClient::new().write(&s, 1, 0x4242, "once");
    let first = message(feed(&mut s, &rvu(&once)));
    assert!(first.verified);
    // Forty days on (longer than any server queue keeps a message), with the
    // text long erased, the server delivers it again, or restored it from a backup.
    let later = NOW + 40 * 24 * 3600 * 1000;
    s.handle_timeout(later);
    once.head.seq.set(2);
    s.handle_frame(&rvu(&once), later);
    match s.poll_event() {
        Some(Event::Notice(n)) => assert!(n.contains("not shown again"), "{n}"),
        _ => panic!("expected a notice, not the message again"),
    }
    assert_eq!(acked(&mut s), [1, 2], "acknowledged, so that it does not come back");
}

#[test]
fn a_dm_sent_before_what_is_remembered_of_its_sender_is_old() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    // Written first, delivered last (the server kept it back, or replays an old one).
    let long_ago = b.write(&s, 5000, 0xfeed, "from long ago");
    // More messages from bob than are remembered one by one: the floor rises.
    for i in 0..=crate::fresh::DM_IDS as u64 {
        let m = b.write_at(&s, 10 + i, 0x1000 + i, "many", NOW - 50 + i);
        assert!(message(feed(&mut s, &rvu(&m))).verified);
    }
    // An id never seen, but sent before the floor.
    match feed(&mut s, &rvu(&long_ago)) {
        Some(Event::Notice(n)) => assert!(n.contains("older than what this client remembers"), "{n}"),
        _ => panic!("expected a notice"),
    }
}

#[test]
fn a_full_mailbox_is_reported_with_the_recipients_name() {
    // A DM: 508 names bob; the message stays in the outbox for after the next login.
    let mut s = alice_session(with_bob());
    let id = sent_dm(&send(&mut s, &mut BobClient::new(), "hello")).0.msg_id.get();
    match feed(&mut s, &status(id, Status::Error, code::MAILBOX_FULL, "the recipient's mailbox is full")) {
        Some(Event::Failed(f)) => {
            assert_eq!((f.cmd.as_str(), f.code), ("msg", 508));
            assert!(f.message.starts_with("mailbox of bob is full"), "{f:?}");
            assert!(f.message.contains("kept"), "{f:?}");
        }
        _ => panic!("expected a failure"),
    }
    // A DM request the same way.
    let mut s = alice_session(Contacts::new());
    s.dm_request("@bob", NOW).unwrap();
    let id = sent_id(&mut s);
    match feed(&mut s, &status(id, Status::Error, code::MAILBOX_FULL, "the recipient's mailbox is full")) {
        Some(Event::Failed(f)) => {
            assert_eq!((f.cmd.as_str(), f.code, f.message.as_str()), ("dm", 508, "mailbox of bob is full"))
        }
        _ => panic!("expected a failure"),
    }
}

#[test]
fn contacts_lists_pending_requests_both_ways_until_answered() {
    let mut s = alice_session(with_bob());
    s.dm_request("@carol", NOW).unwrap();
    let id = sent_id(&mut s);
    let _ = feed(&mut s, &status(id, Status::Ok, code::OK, "requested"));
    let mut rq = DmRequested::new(Status::Ok, code::OK, 0, NOW);
    rq.seq.set(3);
    rq.set_from("dave").unwrap();
    let _ = feed(&mut s, rq.as_bytes());
    assert!(s.dirty_contacts().is_some_and(|c| c.received().any(|n| n == "dave")), "saved before the ack");
    s.list_contacts().unwrap();
    match dm_event(s.poll_event()) {
        DmEvent::Contacts { contacts, sent, received } => {
            assert_eq!(contacts.iter().map(|c| (c.name.as_str(), c.trusted)).collect::<Vec<_>>(), [("bob", true)]);
            assert_eq!((sent, received), (vec!["carol".to_string()], vec!["dave".to_string()]));
        }
        other => panic!("{other:?}"),
    }
    // Rejecting dave answers his request.
    s.dm_reject("@dave", NOW).unwrap();
    let id = sent_id(&mut s);
    let _ = feed(&mut s, &status(id, Status::Ok, code::OK, "rejected"));
    s.list_contacts().unwrap();
    assert!(matches!(dm_event(s.poll_event()), DmEvent::Contacts { received, .. } if received.is_empty()));
}

#[test]
fn forged_dms_that_do_not_verify_leave_no_mark_that_refuses_the_genuine_one() {
    // A server holds back bob's genuine message and first delivers copies
    // under his UID that it cannot seal: its (time, id), and many sent far
    // in the future to raise the floor. They show as unverified; they must
    // not make the genuine message "seen" or "old".
    let mut s = alice_session(with_bob());
    let genuine = BobClient::new().write(&s, 900, 0x4242, "the real one");
    let mut forged = genuine.clone();
    forged.head.seq.set(1);
    forged.head.tag = [0; 32];
    assert!(!message(feed(&mut s, &rvu(&forged))).verified);
    for i in 0..=crate::fresh::DM_IDS as u64 {
        let mut f = forged.clone();
        f.head.seq.set(2 + i);
        f.head.dm_id.set(0x9000 + i);
        f.head.sent_time.set(u64::MAX - 1000 + i);
        assert!(!message(feed(&mut s, &rvu(&f))).verified);
    }
    let m = message(feed(&mut s, &rvu(&genuine)));
    assert_eq!((m.text.as_str(), m.verified), ("the real one", true));
    // And the genuine one, once shown, is not shown again.
    assert!(matches!(feed(&mut s, &rvu(&genuine)), Some(Event::Notice(n)) if n.contains("not shown again")));
}

#[test]
fn a_dm_held_for_an_accept_that_times_out_is_said_and_one_held_when_the_connection_drops_is_not_kept() {
    // The accept gets no answer: the held message is not kept silently.
    let mut s = alice_session(Contacts::new());
    s.dm_accept("@bob", NOW).unwrap();
    let _ = sent_id(&mut s);
    let quick = BobClient::new().write(&s, 4, 0x51, "quick");
    assert!(feed(&mut s, &rvu(&quick)).is_none());
    s.handle_timeout(NOW + REQUEST_TIMEOUT_MS);
    let mut warned = false;
    while let Some(ev) = s.poll_event() {
        warned |= matches!(ev, Event::Warning(w) if w.contains("not a contact") && w.contains("stays on the server"));
    }
    assert!(warned, "the held message is said to stay on the server");
    assert!(acked(&mut s).is_empty());

    // The connection drops during the accept: the server delivers the message
    // again after the new login, so the held copy is not kept for a later
    // accept to report as "shown before".
    let mut s = alice_session(Contacts::new());
    s.dm_accept("@bob", NOW).unwrap();
    let _ = sent_id(&mut s);
    let quick = rvu(&BobClient::new().write(&s, 4, 0x51, "quick"));
    assert!(feed(&mut s, &quick).is_none());
    s.connection_lost();
    while s.poll_event().is_some() {}
    let mut contacts = with_bob();
    contacts.answered("bob");
    s.me.as_mut().unwrap().dm.contacts = contacts;
    s.offline = false;
    assert_eq!(message(feed(&mut s, &quick)).text, "quick");
    s.dm_accept("@carol", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(matches!(
        feed(&mut s, &status(id, Status::Error, code::NOT_FOUND, "no pending request")),
        Some(Event::Failed(_))
    ));
    assert!(s.poll_event().is_none(), "nothing held from before the connection was lost");
}

#[test]
fn a_request_that_was_rejected_no_longer_lets_a_pushed_contact_pin() {
    let mut s = alice_session(Contacts::new());
    s.dm_request("@bob", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(matches!(dm_event(feed(&mut s, &status(id, Status::Ok, code::OK, "requested"))), DmEvent::Ok { .. }));
    let mut rj = DmRejected::new(Status::Ok, code::OK, 0, NOW);
    rj.seq.set(4);
    rj.set_by("bob").unwrap();
    assert_eq!(dm_event(feed(&mut s, rj.as_bytes())), DmEvent::Rejected { by: "bob".into() });
    assert!(s.dirty_contacts().is_some_and(|c| !c.requested("bob")), "the rejection answers the request");
    // The server then presents bob (keys of its choosing) as a contact: no request of ours is open.
    match feed(&mut s, &contact_frame(0, Status::Ok, 5, 1, BOB, "bob", &bob_new_key())) {
        Some(Event::Warning(w)) => assert!(w.contains("not pinned"), "{w}"),
        _ => panic!("expected a warning"),
    }
    assert!(s.dirty_contacts().is_none_or(|c| c.get("bob").is_none()), "nothing pinned");
}

#[test]
fn msg_and_dm_to_an_unknown_user_say_the_same_thing() {
    let mut s = alice_session(with_bob());
    let by_msg = s.send_dm("@bobb", "hi", NOW).unwrap_err();
    s.dm_request("@bobb", NOW).unwrap();
    let id = sent_id(&mut s);
    let by_dm = match feed(&mut s, &status(id, Status::Error, code::NOT_FOUND, "no such user")) {
        Some(Event::Failed(f)) => f,
        _ => panic!("expected a failure"),
    };
    assert_eq!(by_dm.message, "no user named bobb");
    assert!(by_msg.message.starts_with("no user named bobb"), "{by_msg:?}");
}
