//! Session-level room tests: hand-built server frames in, events and requests out.

use std::sync::OnceLock;

use sotto::crypto::AeadKeys;
use sotto::opcodes::{Class, Connected, Header, RVRS};
use sotto::wire::{self, code};
use zerocopy::byteorder::big_endian::{U32, U64};
use zerocopy::IntoBytes;

use super::*;
use crate::session::tests::{feed, sent_id, status, NOW};

const ALICE: u64 = 0xa11ce;
const BOB: u64 = 0xb0b;

/// A user's keys as the server lists them.
struct Ident {
    der: &'static [u8],
    id_pub: [u8; RSA_BYTES],
    enc_pub: [u8; 32],
}

impl Ident {
    fn signer(&self) -> Signer {
        Signer::from_pkcs8_der(self.der).unwrap()
    }

    fn enc_sig(&self, uid: u64, name: &str) -> [u8; RSA_BYTES] {
        let binding = account::enc_key_binding(&account::deployment_id(), uid, name, &self.enc_pub);
        self.signer().sign(&binding).unwrap()
    }
}

/// A PKCS#8 DER private key and its modulus.
type KeyPair = (Zeroizing<Vec<u8>>, [u8; RSA_BYTES]);

/// RSA generation is slow: two keys serve every test.
fn ident(which: usize) -> Ident {
    static KEYS: OnceLock<Vec<KeyPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| (0..2).map(|_| identity::generate().unwrap()).collect());
    let (der, n) = &keys[which];
    Ident { der, id_pub: *n, enc_pub: [which as u8 + 1; 32] }
}

fn alice() -> Ident {
    ident(0)
}

fn bob() -> Ident {
    ident(1)
}

fn lobby_keys() -> RoomKeys {
    rooms::from_master("lobby", &[3; 32], &[4; 16])
}

/// A session logged in as alice, with her identity key installed and `rooms` in her keyring.
fn alice_session(rooms_in: &[&str], pins: Pins) -> Session {
    let mut s = Session::new();
    s.login("alice", "password123", "red green blue", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(feed(&mut s, &status(id, Status::Pending, code::PENDING, "")).is_none());
    let id = sent_id(&mut s);
    let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
    c.uid = U64::new(ALICE);
    c.set_username("alice").unwrap();
    assert!(matches!(feed(&mut s, c.as_bytes()), Some(Event::Authenticated { .. })));
    let mut keyring = Keyring::new();
    for r in rooms_in {
        keyring.insert(r, lobby_keys());
    }
    let a = alice();
    s.install(Local { identity: Some((a.signer(), a.enc_pub)), pins, keyring, dm: DmLocal::default() });
    assert!(s.poll_event().is_none(), "installing reports nothing");
    assert!(s.dirty_pins().is_some(), "her own keys are pinned");
    let _ = s.dirty_keyring();
    s
}

fn pins_with_bob() -> Pins {
    let mut pins = Pins::new();
    let b = bob();
    pins.observe("bob", Binding { uid: BOB, id_pub: b.id_pub, enc_pub: b.enc_pub }, true);
    pins
}

fn member_frame(msg_id: u64, st: Status, kind: u8, online: bool, uid: u64, name: &str, who: &Ident) -> Vec<u8> {
    let mut m = RoomMember::new(st, code::OK, msg_id, NOW);
    m.set_room("lobby").unwrap();
    m.kind = kind;
    m.online = u8::from(online);
    m.uid = U64::new(uid);
    m.set_name(name).unwrap();
    if kind != LEFT {
        m.id_pub = who.id_pub;
        m.enc_pub = who.enc_pub;
        m.enc_sig = who.enc_sig(uid, name);
    }
    m.as_bytes().to_vec()
}

/// An rvr* as the server relays it (`msg_id` 0 live, else the join's): sealed with `keys`, signed by `signer`.
fn rvrm(msg_id: u64, history: bool, sender: u64, keys: &AeadKeys, signer: &Signer, text: &str) -> Vec<u8> {
    frame(msg_id, &room_msg(history, sender, keys, signer, text, NOW - 5))
}

/// The fields and body of a room message from `sender` signed at `sent_time`.
fn room_msg(history: bool, sender: u64, keys: &AeadKeys, signer: &Signer, text: &str, sent_time: u64) -> RoomMsg {
    let sent_msg_id = 77;
    let ctx = Context { room: "lobby", sender_uid: sender, msg_id: sent_msg_id, sent_time };
    let sealed = rooms::seal(keys, &ctx, text).unwrap();
    let mut head = ReceiveRoomMessageHead::new_zeroed();
    head.set_room("lobby").unwrap();
    head.history = u8::from(history);
    head.sender_uid = U64::new(sender);
    head.server_time = U64::new(NOW);
    head.sent_msg_id = U64::new(sent_msg_id);
    head.sent_time = U64::new(sent_time);
    head.iv = sealed.iv;
    head.tag = sealed.tag;
    head.signature = signer.sign(&rooms::signed_bytes(&ctx, &sealed)).unwrap();
    RoomMsg { head, body: sealed.ciphertext }
}

/// The bytes of `m` as the server sends them (in reply to `msg_id`, 0 when live).
fn frame(msg_id: u64, m: &RoomMsg) -> Vec<u8> {
    let mut bytes = wire::encode_classed(RVRS, msg_id, NOW, &m.head, &m.body).unwrap();
    bytes[4] = Status::Ok as u8;
    bytes[6..8].copy_from_slice(&code::OK.to_be_bytes());
    bytes
}

/// A room line the client sent (srm* of any class): its header, shared fields, body and class.
fn sent_line(pt: &[u8]) -> (Header, SendRoomMessageHead, Vec<u8>, Class) {
    let v = wire::decode_classed::<SendRoomMessageHead>(pt, SRMS).expect("an srm*");
    (*v.hdr, *v.head, v.body.to_vec(), v.class)
}

fn message(ev: Option<Event>) -> RoomMessage {
    match ev {
        Some(Event::Room(RoomEvent::Message(m))) => m,
        _ => panic!("expected a room message"),
    }
}

fn failure(ev: Option<Event>) -> Failure {
    match ev {
        Some(Event::Failed(f)) => f,
        _ => panic!("expected a failure"),
    }
}

fn done_stat(id: u64) -> Vec<u8> {
    status(id, Status::Done, code::OK, "end of list")
}

#[test]
fn join_derives_from_the_salt_collects_members_then_shows_the_history() {
    let mut s = alice_session(&[], Pins::new());
    s.join_room("Lobby", Some("room password"), NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    let req = wire::decode::<RoomSaltRequest>(&pt).unwrap();
    assert_eq!(req.room().unwrap(), "lobby");
    let mut salt = RoomSalt::new(Status::Ok, code::OK, req.hdr.msg_id.get(), NOW);
    salt.set_room("lobby").unwrap();
    salt.salt = [9; 16];
    assert!(feed(&mut s, salt.as_bytes()).is_none());

    let pt = s.poll_transmit().unwrap();
    let join = wire::decode::<JoinRoom>(&pt).unwrap();
    let expected = rooms::derive("lobby", "room password", &[9; 16]).unwrap();
    assert_eq!(join.auth_key, *expected.auth);
    let id = join.hdr.msg_id.get();
    let (a, b) = (alice(), bob());
    for frame in [
        member_frame(id, Status::Pending, LISTED, true, ALICE, "alice", &a),
        member_frame(id, Status::Pending, LISTED, false, BOB, "bob", &b),
        member_frame(id, Status::Pending, FORMER, false, 0xc, "carol", &b),
    ] {
        assert!(feed(&mut s, &frame).is_none());
    }
    match feed(&mut s, &status(id, Status::Ok, code::OK, "joined")) {
        Some(Event::Room(RoomEvent::Joined { room, members })) => {
            assert_eq!(room, "lobby");
            let alice_on = Member { name: "alice".into(), online: true };
            assert_eq!(
                members,
                [alice_on, Member { name: "bob".into(), online: false }],
                "former members are not listed"
            );
        }
        _ => panic!("expected joined"),
    }
    assert!(s.has_room("LOBBY") && s.dirty_keyring().is_some() && s.dirty_pins().is_some());

    // The history follows the 200; the session stays busy until the final `stat` done.
    assert!(s.busy());
    assert!(s.poll_transmit().is_none(), "nothing is sent to wait for the history");
    for (i, sender, signer) in [(0, BOB, b.signer()), (1, 0xc, b.signer()), (2, ALICE, a.signer())] {
        let m = message(feed(&mut s, &rvrm(id, true, sender, &expected.content, &signer, &format!("old {i}"))));
        assert_eq!((m.text, m.history, m.verified), (format!("old {i}"), true, true), "history #{i}");
    }
    assert!(s.busy());
    assert!(feed(&mut s, &done_stat(id)).is_none());
    assert!(!s.busy());
}

#[test]
fn live_messages_verify_only_when_the_pinned_signature_and_the_tag_agree() {
    let mut s = alice_session(&["lobby"], pins_with_bob());
    let (keys, signer) = (lobby_keys().content, bob().signer());
    let good = room_msg(false, BOB, &keys, &signer, "hello there", NOW - 5);
    let m = message(feed(&mut s, &frame(0, &good)));
    assert_eq!(
        m,
        RoomMessage {
            room: "lobby".into(),
            id: rooms::message_id(&Context { room: "lobby", sender_uid: BOB, msg_id: 77, sent_time: NOW - 5 }),
            from: "bob".into(),
            text: "hello there".into(),
            ts: NOW - 5,
            verified: true,
            history: false,
            replayed: false,
            error: None,
        }
    );

    let mut body = good.clone();
    body.body[100] ^= 1;
    let m = message(feed(&mut s, &frame(0, &body)));
    assert_eq!((m.text.as_str(), m.verified, m.error), ("", false, Some(UNDECRYPTABLE)));

    let mut sig = good;
    sig.head.signature[10] ^= 1;
    let m = message(feed(&mut s, &frame(0, &sig)));
    assert_eq!((m.text.as_str(), m.verified, m.error), ("hello there", false, None), "readable, but flagged");

    // Signed by alice's key while claiming to be bob.
    let forged = rvrm(0, false, BOB, &keys, &alice().signer(), "i am bob");
    assert!(!message(feed(&mut s, &forged)).verified);

    let other_room = rooms::from_master("lobby", &[8; 32], &[4; 16]).content;
    let m = message(feed(&mut s, &rvrm(0, false, BOB, &other_room, &signer, "x")));
    assert_eq!((m.verified, m.error), (false, Some(UNDECRYPTABLE)));
}

#[test]
fn an_unknown_sender_is_looked_up_once_then_shown_unverified() {
    let mut s = alice_session(&["lobby"], pins_with_bob());
    let (keys, signer) = (lobby_keys().content, bob().signer());
    // From a UID nobody listed: held, and the room's members are asked for.
    assert!(feed(&mut s, &rvrm(0, false, 0x99, &keys, &signer, "who am i")).is_none());
    let pt = s.poll_transmit().unwrap();
    let who = wire::decode::<WhoRoom>(&pt).unwrap();
    assert_eq!(who.room().unwrap(), "lobby");
    // Later messages wait behind it, to keep the order.
    assert!(feed(&mut s, &rvrm(0, false, BOB, &keys, &signer, "second")).is_none());
    s.handle_frame(&done_stat(who.hdr.msg_id.get()), NOW);
    let first = message(s.poll_event());
    assert_eq!((first.from.as_str(), first.text.as_str(), first.verified), ("uid:0000000000000099", "who am i", false));
    let second = message(s.poll_event());
    assert_eq!((second.text.as_str(), second.verified), ("second", true));
    // Not asked again this session.
    let m = message(feed(&mut s, &rvrm(0, false, 0x99, &keys, &signer, "again")));
    assert!(!m.verified && s.poll_transmit().is_none());
}

#[test]
fn a_member_listed_by_the_lookup_is_pinned_and_verified() {
    let mut s = alice_session(&["lobby"], Pins::new());
    let (keys, b) = (lobby_keys().content, bob());
    assert!(feed(&mut s, &rvrm(0, false, BOB, &keys, &b.signer(), "hi")).is_none());
    let id = sent_id(&mut s);
    assert!(feed(&mut s, &member_frame(id, Status::Pending, LISTED, true, BOB, "bob", &b)).is_none());
    let m = message(feed(&mut s, &done_stat(id)));
    assert_eq!((m.from.as_str(), m.verified), ("bob", true));
}

#[test]
fn a_changed_key_is_reported_once_and_unverifies_the_sender() {
    let mut s = alice_session(&["lobby"], pins_with_bob());
    let impostor = alice();
    let frame = member_frame(0, Status::Ok, JOINED, true, BOB, "bob", &impostor);
    s.handle_frame(&frame, NOW);
    assert!(matches!(s.poll_event(), Some(Event::Room(RoomEvent::KeyChanged { user })) if user == "bob"));
    let joined = RoomEvent::MemberJoined { room: "lobby".into(), name: "bob".into() };
    assert_eq!(s.poll_event().map(|e| matches!(e, Event::Room(r) if r == joined)), Some(true));
    assert!(s
        .dirty_pins()
        .is_some_and(|p| p.get("bob").is_some_and(|p| p.changed() && p.binding.id_pub == bob().id_pub)));
    s.handle_frame(&frame, NOW);
    assert!(matches!(s.poll_event(), Some(Event::Room(RoomEvent::MemberJoined { .. }))), "reported once");
    assert!(s.poll_event().is_none());
    // Even a message that verifies with the first key is no longer shown as genuine.
    let m = message(feed(&mut s, &rvrm(0, false, BOB, &lobby_keys().content, &bob().signer(), "hi")));
    assert_eq!((m.text.as_str(), m.verified), ("hi", false));
}

#[test]
fn a_member_listed_under_a_new_uid_is_a_key_change_and_verifies_nothing() {
    const IMPOSTOR: u64 = 0xbad;
    let mut s = alice_session(&["lobby"], pins_with_bob());
    // The server presents "bob" under a new UID with keys that bind (its own).
    let frame = member_frame(0, Status::Ok, JOINED, true, IMPOSTOR, "bob", &alice());
    s.handle_frame(&frame, NOW);
    assert!(matches!(s.poll_event(), Some(Event::Room(RoomEvent::KeyChanged { user })) if user == "bob"));
    let _ = s.poll_event();
    let pins = s.dirty_pins().expect("the change is noted");
    let bob_pin = pins.get("bob").unwrap();
    assert_eq!((bob_pin.binding.uid, bob_pin.changed()), (BOB, true), "the first UID stays pinned");
    // The impostor's messages are not bob's, and bob's no longer verify until /trust.
    let keys = lobby_keys().content;
    assert!(feed(&mut s, &rvrm(0, false, IMPOSTOR, &keys, &alice().signer(), "it is bob")).is_none());
    let id = sent_id(&mut s);
    assert!(feed(&mut s, &member_frame(id, Status::Pending, LISTED, true, IMPOSTOR, "bob", &alice())).is_none());
    let m = message(feed(&mut s, &done_stat(id)));
    assert_eq!((m.from.as_str(), m.verified), ("uid:0000000000000bad", false), "looked up, still not bob");
    let m = message(feed(&mut s, &rvrm(0, false, BOB, &keys, &bob().signer(), "really")));
    assert_eq!((m.from.as_str(), m.verified), ("bob", false));
    // /trust takes the listed binding: the new UID is bob from now on.
    s.trust("@bob").unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Dm(super::super::direct::DmEvent::Ok { cmd: "trust", .. }))));
    let m = message(feed(&mut s, &rvrm(0, false, IMPOSTOR, &keys, &alice().signer(), "trusted")));
    assert_eq!((m.from.as_str(), m.verified), ("bob", true));
}

#[test]
fn keys_that_do_not_bind_are_not_pinned() {
    let mut s = alice_session(&["lobby"], Pins::new());
    let mut frame = member_frame(0, Status::Ok, JOINED, true, BOB, "bob", &bob());
    let last = frame.len() - 20;
    frame[last] ^= 1; // inside enc_sig
    s.handle_frame(&frame, NOW);
    assert!(matches!(s.poll_event(), Some(Event::Warning(w)) if w.contains("bob")));
    assert!(matches!(s.poll_event(), Some(Event::Room(RoomEvent::MemberJoined { .. }))));
    assert!(s.dirty_pins().is_none());
}

#[test]
fn say_seals_and_signs_or_refuses_locally() {
    let mut s = Session::new();
    assert_eq!(failure(Some(Event::Failed(s.say("lobby", "hi", NOW).unwrap_err()))).code, 401);
    let mut s = alice_session(&["lobby"], Pins::new());
    for (room, text, code, part) in [
        ("no room", "hi", 400, "room names"),
        ("other", "hi", 403, "not in room other; /join it first"),
        ("lobby", &"é".repeat(TEXT_MAX / 2 + 1), 413, "message too long (16386 bytes, at most 16384)"),
    ] {
        let f = s.say(room, text, NOW).unwrap_err();
        assert_eq!((f.cmd.as_str(), f.code), ("say", code), "{room}");
        assert!(f.message.contains(part), "{}", f.message);
    }
    assert!(s.poll_transmit().is_none(), "nothing sent");

    let text = "x".repeat(TEXT_MAX);
    s.say("Lobby", &text, NOW).unwrap();
    let (hdr, head, body, class) = sent_line(&s.poll_transmit().unwrap());
    assert_eq!((head.room().unwrap(), class), ("lobby", Class::X), "the longest text in the largest class");
    let id = hdr.msg_id.get();
    let ctx = Context { room: "lobby", sender_uid: ALICE, msg_id: id, sent_time: NOW };
    let sealed = Sealed { iv: head.iv, ciphertext: body, tag: head.tag };
    assert_eq!(rooms::open(&lobby_keys().content, &ctx, &sealed).unwrap(), text);
    let public = identity::from_modulus(&alice().id_pub).unwrap();
    assert!(identity::verify(&public, &rooms::signed_bytes(&ctx, &sealed), &head.signature));
    assert!(matches!(
        feed(&mut s, &status(id, Status::Ok, code::OK, "stored")),
        Some(Event::Done { cmd: "say", room, id: Some(said) })
            if room == "lobby" && said == rooms::message_id(&ctx)
    ));
}

#[test]
fn a_line_goes_out_in_the_smallest_class_that_holds_it() {
    let mut s = alice_session(&["lobby"], Pins::new());
    for (len, class) in [(10, Class::S), (12_000, Class::X)] {
        let text = "q".repeat(len);
        s.say("lobby", &text, NOW).unwrap();
        let pt = s.poll_transmit().unwrap();
        let (hdr, head, body, c) = sent_line(&pt);
        assert_eq!((c, body.len(), hdr.opcode.get()), (class, class.body(), SRMS + class.opcode_offset()), "{len}");
        assert_eq!(pt.len(), sotto::opcodes::info(hdr.opcode.get()).unwrap().size);
        let ctx = Context { room: "lobby", sender_uid: ALICE, msg_id: hdr.msg_id.get(), sent_time: NOW };
        let sealed = Sealed { iv: head.iv, ciphertext: body, tag: head.tag };
        assert_eq!(rooms::open(&lobby_keys().content, &ctx, &sealed).unwrap(), text);
        let _ = feed(&mut s, &status(hdr.msg_id.get(), Status::Ok, code::OK, "stored"));
    }
    // And received in that class.
    let long = room_msg(false, ALICE, &lobby_keys().content, &alice().signer(), &"r".repeat(12_000), NOW - 5);
    let bytes = frame(0, &long);
    assert_eq!(wire::header(&bytes).unwrap().opcode.get(), RVRS + Class::X.opcode_offset());
    assert_eq!(message(feed(&mut s, &bytes)).text.len(), 12_000);
}

#[test]
fn create_keeps_the_keys_only_on_200() {
    let mut s = alice_session(&[], Pins::new());
    s.create_room("den", "den-password", NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    let m = wire::decode::<CreateRoom>(&pt).unwrap();
    let keys = rooms::derive("den", "den-password", &m.salt).unwrap();
    assert_eq!(m.verifier, rooms::verifier(&keys.auth));
    let f = failure(feed(&mut s, &status(m.hdr.msg_id.get(), Status::Error, code::CONFLICT, "room already exists")));
    assert_eq!((f.cmd.as_str(), f.code, f.message.as_str()), ("create", 409, "room already exists"));
    assert!(!s.has_room("den"));

    s.create_room("den", "den-password", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(matches!(
        feed(&mut s, &status(id, Status::Ok, code::OK, "room created")),
        Some(Event::Done { cmd: "create", .. })
    ));
    assert!(s.has_room("den") && s.dirty_keyring().is_some());
    assert_eq!(s.create_room("x", "", NOW).unwrap_err().code, 400, "an empty password");
    let f = s.create_room("x", "ninechars", NOW).unwrap_err();
    assert!(f.code == 400 && f.message.contains("at least 10 characters"), "{f:?}");
    assert!(s.poll_transmit().is_none(), "nothing sent");
    s.create_room("x", "tencharsok", NOW).unwrap();
}

#[test]
fn list_and_who_collect_their_parts_until_done() {
    let mut s = alice_session(&["lobby"], Pins::new());
    s.list_rooms(NOW).unwrap();
    let id = sent_id(&mut s);
    for (name, n) in [("lobby", 3), ("den", 1)] {
        let mut e = RoomListEntry::new(Status::Pending, code::OK, id, NOW);
        e.set_room(name).unwrap();
        e.members = U32::new(n);
        assert!(feed(&mut s, e.as_bytes()).is_none());
    }
    match feed(&mut s, &done_stat(id)) {
        Some(Event::Room(RoomEvent::Rooms(r))) => {
            assert_eq!(r, [RoomInfo { name: "lobby".into(), members: 3 }, RoomInfo { name: "den".into(), members: 1 }])
        }
        _ => panic!("expected rooms"),
    }
    s.who_room("lobby", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(feed(&mut s, &member_frame(id, Status::Pending, LISTED, false, BOB, "bob", &bob())).is_none());
    match feed(&mut s, &done_stat(id)) {
        Some(Event::Room(RoomEvent::Who { room, members })) => {
            assert_eq!((room.as_str(), members), ("lobby", vec![Member { name: "bob".into(), online: false }]));
        }
        _ => panic!("expected who"),
    }
    s.who_room("den", NOW).unwrap();
    let id = sent_id(&mut s);
    let f = failure(feed(&mut s, &status(id, Status::Error, code::FORBIDDEN, "not a member of this room")));
    assert_eq!((f.cmd.as_str(), f.code), ("who", 403));
}

#[test]
fn stale_keys_are_dropped_and_room_events_reported() {
    let mut s = alice_session(&["lobby", "den", "old"], Pins::new());
    let mut del = RoomDeleted::new(Status::Ok, code::OK, 0, NOW);
    del.set_room("lobby").unwrap();
    assert!(matches!(feed(&mut s, del.as_bytes()), Some(Event::Room(RoomEvent::Deleted { room })) if room == "lobby"));
    assert!(!s.has_room("lobby"));
    let left = member_frame(0, Status::Ok, LEFT, false, BOB, "bob", &bob());
    assert!(matches!(feed(&mut s, &left), Some(Event::Room(RoomEvent::MemberLeft { name, .. })) if name == "bob"));

    // A stored key the server no longer accepts is dropped, with a hint.
    s.join_room("den", None, NOW).unwrap();
    let id = sent_id(&mut s);
    let f = failure(feed(&mut s, &status(id, Status::Error, code::FORBIDDEN, "wrong room password")));
    assert_eq!((f.cmd.as_str(), f.code), ("join", 403));
    assert!(f.message.contains("dropped") && !s.has_room("den"));
    let f = s.join_room("den", None, NOW).unwrap_err();
    assert_eq!((f.code, f.message.as_str()), (400, "no stored key for room den: join it with its password"));

    s.leave_room("old", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(matches!(feed(&mut s, &status(id, Status::Ok, code::OK, "left")), Some(Event::Done { cmd: "leave", .. })));
    assert!(!s.has_room("old"));
}

#[test]
fn room_commands_need_a_login() {
    let mut s = Session::new();
    for f in [
        s.create_room("lobby", "pw", NOW).unwrap_err(),
        s.join_room("lobby", Some("pw"), NOW).unwrap_err(),
        s.leave_room("lobby", NOW).unwrap_err(),
        s.list_rooms(NOW).unwrap_err(),
        s.who_room("lobby", NOW).unwrap_err(),
        s.delete_room("lobby", NOW).unwrap_err(),
    ] {
        assert_eq!((f.code, f.message.as_str()), (401, "log in first"), "{}", f.cmd);
    }
    assert!(s.poll_transmit().is_none());
}

#[test]
fn a_live_room_message_shown_before_is_flagged_replayed_and_history_stays_history() {
    let mut s = alice_session(&["lobby"], pins_with_bob());
    let (keys, signer) = (lobby_keys().content, bob().signer());
    let live = rvrm(0, false, BOB, &keys, &signer, "once");
    let m = message(feed(&mut s, &live));
    assert!(m.verified && !m.replayed);
    assert!(s.dirty_inbox().is_some(), "what was shown is saved");
    // The server (or a recording of it) sends the same message again as live.
    let again = message(feed(&mut s, &live));
    assert_eq!((again.text.as_str(), again.replayed, again.history), ("once", true, false));
    // As history after a join it is history, as it should be, not a replay.
    let hist = message(feed(&mut s, &rvrm(0, true, BOB, &keys, &signer, "once")));
    assert!(hist.history && !hist.replayed);
    // The same request id from a new run of bob's client (another time) is new.
    let fresh = room_msg(false, BOB, &keys, &signer, "twice", NOW - 1);
    let m = message(feed(&mut s, &frame(0, &fresh)));
    assert!(m.verified && !m.replayed, "{m:?}");
}

#[test]
fn a_line_over_the_rate_limit_waits_and_goes_out_unchanged_when_allowed() {
    let mut s = alice_session(&["lobby"], Pins::new());
    s.say("lobby", "one", NOW).unwrap();
    let first = s.poll_transmit().unwrap().to_vec();
    let id = sent_line(&first).0.msg_id.get();
    let mut r =
        wire::decode::<StatusReply>(&status(id, Status::Error, code::RATE_LIMITED, "slow down")).unwrap().to_owned();
    r.retry_after_ms.set(2_000);
    assert!(
        matches!(feed(&mut s, r.as_bytes()), Some(Event::Room(RoomEvent::Waiting { room, queued: 1 })) if room == "lobby")
    );
    assert!(!s.busy() && s.poll_transmit().is_none(), "nothing before the wait");
    // Another line meanwhile waits behind it, in order.
    s.say("lobby", "two", NOW + 10).unwrap();
    assert!(matches!(s.poll_event(), Some(Event::Room(RoomEvent::Waiting { queued: 2, .. }))));
    s.handle_timeout(NOW + 1_999);
    assert!(s.poll_transmit().is_none());
    s.handle_timeout(NOW + 2_000);
    let again = s.poll_transmit().expect("sent when allowed").to_vec();
    assert_eq!(again, first, "the same request, unchanged");
    s.handle_frame(&status(id, Status::Ok, code::OK, "stored"), NOW + 2_001);
    assert!(matches!(s.poll_event(), Some(Event::Done { cmd: "say", .. })));
    let second = sent_line(&s.poll_transmit().expect("then the next")).0;
    assert_ne!(second.msg_id.get(), id);
}

#[test]
fn list_answers_are_bounded_however_many_parts_the_server_sends() {
    let mut s = alice_session(&["lobby"], Pins::new());
    s.list_rooms(NOW).unwrap();
    let id = sent_id(&mut s);
    let mut e = RoomListEntry::new(Status::Pending, code::OK, id, NOW);
    e.set_room("lobby").unwrap();
    for _ in 0..PARTS_MAX {
        assert!(feed(&mut s, e.as_bytes()).is_none());
    }
    assert!(matches!(feed(&mut s, e.as_bytes()), Some(Event::Notice(n)) if n.contains("past")));
    match feed(&mut s, &done_stat(id)) {
        Some(Event::Room(RoomEvent::Rooms(r))) => assert_eq!(r.len(), PARTS_MAX),
        _ => panic!("expected rooms"),
    }
}

#[test]
fn a_kick_or_a_new_password_drops_the_room_key_and_is_acknowledged() {
    use sotto::opcodes::{MailboxAck, RoomKicked, RoomRekeyed};
    let mut s = alice_session(&["lobby", "club"], pins_with_bob());
    let mut k = RoomKicked::new(Status::Ok, code::OK, 0, NOW);
    k.seq = U64::new(5);
    k.set_room("lobby").unwrap();
    k.set_by("bob").unwrap();
    k.ban = 1;
    k.set_reason("spam").unwrap();
    match feed(&mut s, k.as_bytes()) {
        Some(Event::Room(RoomEvent::Moderation(super::super::ModEvent::Kicked { room, by, reason, banned: true }))) => {
            assert_eq!((room.as_str(), by.as_str(), reason.as_str()), ("lobby", "bob", "spam"))
        }
        _ => panic!("expected room_kicked"),
    }
    assert!(!s.has_room("lobby") && s.has_room("club"), "only the lobby's key goes");
    let mut r = RoomRekeyed::new(Status::Ok, code::OK, 0, NOW);
    r.seq = U64::new(6);
    r.set_room("club").unwrap();
    r.set_by("bob").unwrap();
    assert!(matches!(
        feed(&mut s, r.as_bytes()),
        Some(Event::Room(RoomEvent::Moderation(super::super::ModEvent::PasswordChanged { .. })))
    ));
    assert!(!s.has_room("club"));
    s.release_acks(NOW);
    let acks: Vec<u64> =
        std::iter::from_fn(|| s.poll_transmit()).map(|pt| wire::decode::<MailboxAck>(&pt).unwrap().seq.get()).collect();
    assert_eq!(acks, [5, 6], "both mailbox events are acknowledged");
}

#[test]
fn a_new_room_password_goes_as_salt_and_verifier_and_is_stored_once_accepted() {
    use sotto::opcodes::RoomRekey;
    const NEW: &str = "a-new-room-password";
    let mut s = alice_session(&["lobby"], Pins::new());
    assert_eq!(s.room_password("lobby", "short", NOW).unwrap_err().code, 400);
    assert!(s.poll_transmit().is_none());
    s.room_password("lobby", NEW, NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    assert!(!pt.windows(NEW.len()).any(|w| w == NEW.as_bytes()), "the password is not sent");
    let m = wire::decode::<RoomRekey>(&pt).unwrap();
    let keys = rooms::derive("lobby", NEW, &m.salt).unwrap();
    assert_eq!(m.verifier, rooms::verifier(&keys.auth));
    let id = m.hdr.msg_id.get();
    assert!(matches!(
        feed(&mut s, &status(id, Status::Ok, code::OK, "password changed")),
        Some(Event::Done { cmd: "room-password", .. })
    ));
    s.join_room("lobby", None, NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    let join = wire::decode::<JoinRoom>(&pt).unwrap();
    assert_eq!(join.auth_key, *keys.auth, "the stored key is the new one");
}

#[test]
fn deleting_the_account_sends_the_login_secrets_and_forgets_them_once_done() {
    use sotto::opcodes::DeleteAccount;
    let mut s = alice_session(&[], Pins::new());
    assert_eq!(s.delete_account("password123", "red green", NOW).unwrap_err().code, 400);
    s.delete_account("password123", "Red green  blue", NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    let m = wire::decode::<DeleteAccount>(&pt).unwrap();
    assert_eq!(m.auth_secret, *account::auth_secret("alice", "password123"));
    assert_eq!(m.pass_secret, *account::pass_secret("alice", "red green blue"));
    let id = m.hdr.msg_id.get();
    assert!(matches!(
        feed(&mut s, &status(id, Status::Ok, code::OK, "account deleted")),
        Some(Event::AccountDeleted { user }) if user == "alice"
    ));
    s.connection_lost();
    assert!(!s.relogin(NOW), "nothing left to log in with");
}
