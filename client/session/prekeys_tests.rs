//! Session-level tests of protocol 2's DM sessions: the bundle fetched for a
//! first message, the X3DH fields a message carries, the responder's side,
//! order and replay, the prekeys published on `pkst`, size classes, and what
//! ends sessions or stops sending. Bob's client is played for real (see the
//! fixtures in `direct_tests.rs`).

use sotto::opcodes::{Class, Connected, Heartbeat};
use zerocopy::{FromBytes, IntoBytes};

use super::super::direct::tests::{
    acked, alice, alice_session, alice_session_with, bob, bob_new_key, contact_frame, dm_event, dmst, message, rvu,
    send, sent_dm, sessions_of, with_bob, BobClient, ALICE, BOB,
};
use super::super::direct::DmEvent;
use super::*;
use crate::session::tests::{feed, sent_id, status, NOW};

/// The server's prekey state for alice (its opk_max is sottod's 200).
fn pkst(spk_id: u32, spk_time: u64, opk_left: u16) -> Vec<u8> {
    let mut m = PrekeyState::new(Status::Ok, code::OK, 0, NOW);
    m.spk_id.set(spk_id);
    m.spk_time.set(spk_time);
    m.opk_left.set(opk_left);
    m.opk_max.set(200);
    m.as_bytes().to_vec()
}

/// The pkup alice's session queued.
fn upload(s: &mut Session) -> PrekeyUpload {
    *wire::decode::<PrekeyUpload>(&s.poll_transmit().expect("a pkup")).expect("a pkup")
}

/// The one-time prekeys of an upload: ids and public keys; the rest of the field is zero.
fn opks_of(up: &PrekeyUpload) -> Vec<(u32, [u8; 32])> {
    let n = usize::from(up.opk_count);
    assert!(up.opks[n * 36..].iter().all(|&b| b == 0), "zero after the entries");
    up.opks[..n * 36]
        .chunks_exact(36)
        .map(|e| (u32::from_be_bytes([e[0], e[1], e[2], e[3]]), e[4..].try_into().unwrap()))
        .collect()
}

/// True when `sig` is alice's identity signature over signed prekey `spk_id`.
fn signed_by_alice(spk_id: u32, spk_pub: &[u8; 32], sig: &[u8]) -> bool {
    let key = identity::from_modulus(&alice().id_pub).unwrap();
    identity::verify(&key, &x3dh::spk_binding(&account::deployment_id(), ALICE, spk_id, spk_pub), sig)
}

/// Logs in again after a lost connection (the remembered credentials), up to `cnnt`.
fn login_again(s: &mut Session) {
    assert!(s.relogin(NOW));
    let id = sent_id(s);
    assert!(feed(s, &status(id, Status::Pending, code::PENDING, "")).is_none());
    let id = sent_id(s);
    let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
    c.uid.set(ALICE);
    c.set_username("alice").unwrap();
    s.handle_frame(c.as_bytes(), NOW);
    assert!(matches!(s.poll_event(), Some(Event::Authenticated { again: true, .. })));
}

fn failure(ev: Option<Event>) -> Failure {
    match ev {
        Some(Event::Failed(f)) => f,
        _ => panic!("expected a failure"),
    }
}

#[test]
fn a_first_msg_fetches_the_bundle_and_refuses_one_not_signed_by_the_pinned_identity_key() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let id = s.send_dm("@bob", "first", NOW).unwrap();
    let pkgt = s.poll_transmit().expect("a request");
    let fetch = wire::decode::<PrekeyFetch>(&pkgt).expect("a pkgt: there is no session yet");
    assert_eq!(fetch.peer_uid.get(), BOB);
    assert!(s.busy() && s.poll_transmit().is_none());
    let kept = s.dirty_outbox().and_then(|o| o.get(id).map(|e| e.body.clone()));
    assert!(matches!(kept, Some(Waiting::Text { .. })), "kept as typed, not sealed before the bundle");

    // Signed by another identity key than bob's pinned one.
    let f = failure(feed(&mut s, &b.bundle(&pkgt, &bob_new_key())));
    assert_eq!((f.cmd.as_str(), f.code), ("msg", 0));
    assert!(f.message.contains("not signed by bob's pinned identity key") && f.message.contains("not sent"), "{f:?}");
    assert!(!s.busy() && s.poll_transmit().is_none());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![]), "not sent, and not kept to go later");
    assert!(s.dirty_sessions().is_none() && sessions_of(&s).with(BOB).is_empty());

    // Bob's signature, but over another signed prekey than the one handed out.
    s.send_dm("@bob", "first", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    let mut swapped = PrekeyBundle::read_from_bytes(&b.bundle(&pkgt, &bob())).unwrap();
    swapped.spk_pub = x3dh::public_key(&[9; 32]);
    assert!(failure(feed(&mut s, swapped.as_bytes())).message.contains("not signed"));
    // For another UID than the one asked for.
    s.send_dm("@bob", "first", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    let mut other = PrekeyBundle::read_from_bytes(&b.bundle(&pkgt, &bob())).unwrap();
    other.peer_uid.set(BOB + 1);
    assert!(failure(feed(&mut s, other.as_bytes())).message.contains("not signed"));
    assert!(s.poll_transmit().is_none() && sessions_of(&s).with(BOB).is_empty());
}

#[test]
fn a_good_bundle_starts_a_session_whose_messages_carry_the_prekey_fields_until_a_reply_opened() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    s.send_dm("@bob", "first", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    assert!(feed(&mut s, &b.bundle(&pkgt, &bob())).is_none());
    let first = s.poll_transmit().expect("the message, once the bundle verified").to_vec();
    let (hdr, head, _, class) = sent_dm(&first);
    assert_eq!((hdr.opcode.get(), class), (SMPS, Class::S));
    let spk_id = b.sessions.current_spk().unwrap().id;
    assert_eq!(
        (head.prekey, head.spk_id.get(), head.opk_id.get()),
        (1, spk_id, 1),
        "bob's signed and one-time prekeys"
    );
    let mine = &sessions_of(&s).with(BOB)[0];
    assert!(mine.initiator && head.ek != [0; 32]);
    assert_eq!((mine.prekey.ek, mine.prekey.opk_id), (head.ek, 1), "the ephemeral key of the session's X3DH");
    assert!(s.dirty_sessions().is_some(), "the session is saved (before the message leaves)");
    assert_eq!(b.open(&first).as_deref(), Some("first"));
    let id = hdr.msg_id.get();
    assert!(matches!(dm_event(feed(&mut s, &dmst(id, 0, id, 1))), DmEvent::Sent { .. }));

    // Until bob's answer opened, every message repeats them.
    let second = send(&mut s, &mut b, "second");
    let (hdr2, h2, _, _) = sent_dm(&second);
    assert_eq!((h2.prekey, h2.spk_id, h2.opk_id, h2.ek), (1, head.spk_id, head.opk_id, head.ek));
    assert_eq!(b.open(&second).as_deref(), Some("second"));
    let id = hdr2.msg_id.get();
    let _ = feed(&mut s, &dmst(id, 0, id, 2));

    let reply = b.write(&s, 3, 0x77, "hi alice");
    assert_eq!(reply.head.prekey, 0, "bob answers in the session alice started");
    let got = message(feed(&mut s, &rvu(&reply)));
    assert_eq!((got.text.as_str(), got.verified), ("hi alice", true));
    assert_eq!(sessions_of(&s).with(BOB).len(), 1, "no second session");

    // From then on: no X3DH fields.
    let third = send(&mut s, &mut b, "third");
    let h3 = sent_dm(&third).1;
    assert_eq!((h3.prekey, h3.spk_id.get(), h3.opk_id.get(), h3.ek), (0, 0, 0, [0; 32]));
    assert_eq!(b.open(&third).as_deref(), Some("third"));
}

#[test]
fn a_prekey_message_makes_a_responder_session_and_spends_its_one_time_prekey() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let first = b.write(&s, 1, 0x10, "one");
    assert_eq!((first.head.prekey, first.head.opk_id.get()), (1, 1), "with alice's one-time prekey 1");
    assert!(sessions_of(&s).opk_secret(1).is_some());
    let got = message(feed(&mut s, &rvu(&first)));
    assert_eq!((got.text.as_str(), got.verified), ("one", true));
    let list = sessions_of(&s).with(BOB);
    assert_eq!(list.len(), 1);
    assert!(!list[0].initiator);
    assert_eq!((list[0].prekey.opk_id, list[0].prekey.ek), (1, first.head.ek));
    assert!(sessions_of(&s).opk_secret(1).is_none(), "its secret is deleted");
    assert!(sessions_of(&s).opk_secret(2).is_some(), "the others stay");
    assert!(s.dirty_sessions().is_some());

    // Bob has not heard back: his next message carries the same fields, and opens with that session.
    let second = b.write(&s, 2, 0x11, "two");
    assert_eq!((second.head.prekey, second.head.ek), (1, first.head.ek));
    let got = message(feed(&mut s, &rvu(&second)));
    assert_eq!((got.text.as_str(), got.verified), ("two", true));
    assert_eq!(sessions_of(&s).with(BOB).len(), 1);

    // The same bytes again under new seqs: not shown again, acknowledged, no new session.
    for (m, seq) in [(&second, 3), (&first, 4)] {
        let mut replay = m.clone();
        replay.head.seq.set(seq);
        let ev = feed(&mut s, &rvu(&replay));
        assert!(matches!(ev, Some(Event::Notice(ref n)) if n.contains("not shown again")), "seq {seq}");
        assert!(s.poll_event().is_none());
    }
    assert_eq!(acked(&mut s), [1, 2, 3, 4]);
    assert_eq!(sessions_of(&s).with(BOB).len(), 1);
    // The session still works.
    let third = b.write(&s, 5, 0x12, "three");
    let got = message(feed(&mut s, &rvu(&third)));
    assert_eq!((got.text.as_str(), got.verified), ("three", true));
}

#[test]
fn messages_out_of_order_open_and_each_is_shown_once() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let m: Vec<_> = (1..=4).map(|i| b.write(&s, i, 0x100 + i, &format!("m{i}"))).collect();
    for i in [2, 0, 1] {
        let got = message(feed(&mut s, &rvu(&m[i])));
        assert_eq!((got.text, got.verified), (format!("m{}", i + 1), true));
    }
    // Alice answers; bob's next messages are on a new chain, and m4 of his
    // first chain is still on its way.
    let answer = send(&mut s, &mut b, "ok");
    assert_eq!(b.open(&answer).as_deref(), Some("ok"));
    let id = sent_dm(&answer).0.msg_id.get();
    let _ = feed(&mut s, &dmst(id, 0, id, 2));
    let later: Vec<_> = (5..=6).map(|i| b.write(&s, i, 0x100 + i, &format!("m{i}"))).collect();
    for (msg, text) in [(&later[1], "m6"), (&m[3], "m4"), (&later[0], "m5")] {
        let got = message(feed(&mut s, &rvu(msg)));
        assert_eq!((got.text.as_str(), got.verified), (text, true));
    }
    // Each once.
    for (i, msg) in [&m[1], &later[0], &m[3]].into_iter().enumerate() {
        let mut again = msg.clone();
        again.head.seq.set(10 + i as u64);
        assert!(matches!(feed(&mut s, &rvu(&again)), Some(Event::Notice(n)) if n.contains("not shown again")));
    }
    assert_eq!(acked(&mut s), [3, 1, 2, 6, 4, 5, 10, 11, 12]);
}

#[test]
fn pkst_without_a_signed_prekey_uploads_one_signed_with_the_identity_key_and_a_batch_of_one_time_prekeys() {
    let mut s = alice_session_with(with_bob(), Sessions::new());
    assert!(feed(&mut s, &pkst(0, 0, 0)).is_none());
    let up = upload(&mut s);
    assert_eq!(up.spk_id.get(), 1);
    let mine = sessions_of(&s);
    assert_eq!(mine.current_spk().map(|k| k.id), Some(1));
    assert_eq!(x3dh::public_key(mine.spk_secret(1).unwrap()), up.spk_pub);
    assert!(signed_by_alice(1, &up.spk_pub, &up.spk_sig), "signed over spk_binding with her identity key");
    assert!(!signed_by_alice(2, &up.spk_pub, &up.spk_sig));
    let opks = opks_of(&up);
    assert_eq!(opks.len(), OPK_BATCH);
    for (i, (id, public)) in opks.iter().enumerate() {
        assert_eq!(*id, i as u32 + 1);
        assert_eq!(x3dh::public_key(mine.opk_secret(*id).expect("its secret is kept")), *public, "opk {id}");
    }
    assert!(s.dirty_sessions().is_some(), "the secrets are saved (before the upload leaves)");
    // While it waits for its answer, nothing more is uploaded.
    assert!(feed(&mut s, &pkst(0, 0, 0)).is_none());
    assert!(s.poll_transmit().is_none());
    assert!(feed(&mut s, &status(up.hdr.msg_id.get(), Status::Ok, code::OK, "stored")).is_none());
    // The server has them now: nothing to do.
    assert!(feed(&mut s, &pkst(1, NOW, OPK_BATCH as u16)).is_none());
    assert!(s.poll_transmit().is_none());
}

#[test]
fn pkst_with_few_one_time_prekeys_left_uploads_a_refill_only() {
    // Alice published signed prekey 1 and one-time prekeys 1 to 3 before.
    let mut s = alice_session(with_bob());
    assert!(feed(&mut s, &pkst(1, NOW, 5)).is_none());
    let up = upload(&mut s);
    assert_eq!((up.spk_id.get(), up.spk_pub), (0, [0; 32]), "no signed prekey");
    assert!(up.spk_sig.iter().all(|&b| b == 0));
    let opks = opks_of(&up);
    assert_eq!(opks.len(), OPK_BATCH - 5, "back to a full batch");
    assert_eq!((opks[0].0, opks[opks.len() - 1].0), (4, 98), "new ids");
    assert!(opks.iter().all(|(id, p)| sessions_of(&s).opk_secret(*id).map(|k| x3dh::public_key(k)) == Some(*p)));
    // A refused upload is said.
    match feed(&mut s, &status(up.hdr.msg_id.get(), Status::Error, code::TOO_LARGE, "too many one-time prekeys")) {
        Some(Event::Warning(w)) => assert!(w.contains("refused this client's prekeys") && w.contains("413"), "{w}"),
        _ => panic!("expected a warning"),
    }
    // Enough left: nothing.
    assert!(feed(&mut s, &pkst(1, NOW, OPK_LOW)).is_none());
    assert!(s.poll_transmit().is_none());
}

#[test]
fn pkst_a_week_after_the_signed_prekey_uploads_a_new_one_and_keeps_the_old_secret() {
    let mut s = alice_session(with_bob());
    s.handle_frame(&pkst(1, NOW, 100), NOW + SPK_ROTATE_MS - 1);
    assert!(s.poll_event().is_none() && s.poll_transmit().is_none(), "not yet");
    s.handle_frame(&pkst(1, NOW, 100), NOW + SPK_ROTATE_MS);
    assert!(s.poll_event().is_none());
    let up = upload(&mut s);
    assert_eq!((up.spk_id.get(), up.opk_count), (2, 0), "a signed prekey, no one-time prekeys (100 are left)");
    assert!(signed_by_alice(2, &up.spk_pub, &up.spk_sig));
    let mine = sessions_of(&s);
    assert_eq!(mine.current_spk().map(|k| k.id), Some(2));
    assert_eq!(x3dh::public_key(mine.spk_secret(2).unwrap()), up.spk_pub);
    assert!(mine.spk_secret(1).is_some(), "kept for first messages sent to it before");
}

#[test]
fn a_long_dm_goes_out_in_class_x_and_a_short_one_in_class_s() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    for (len, class) in [(10, Class::S), (12_000, Class::X)] {
        let text = "z".repeat(len);
        let pt = send(&mut s, &mut b, &text);
        let (hdr, _, body, c) = sent_dm(&pt);
        assert_eq!((c, body.len(), hdr.opcode.get()), (class, class.body(), SMPS + class.opcode_offset()), "{len}");
        assert_eq!(pt.len(), sotto::opcodes::info(hdr.opcode.get()).unwrap().size);
        assert_eq!(b.open(&pt), Some(text));
        let id = hdr.msg_id.get();
        let _ = feed(&mut s, &dmst(id, 0, id, 2));
    }
    // And received in that class.
    let long = b.write(&s, 1, 0x42, &"w".repeat(12_000));
    assert_eq!(long.body.len(), Class::X.body());
    assert_eq!(message(feed(&mut s, &rvu(&long))).text.len(), 12_000);
}

#[test]
fn withhold_dms_drops_the_queued_dm_and_refuses_later_msgs() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let first = send(&mut s, &mut b, "first");
    let id = sent_dm(&first).0.msg_id.get();
    assert!(s.dirty_sessions().is_some(), "saved (App::persist)");
    let _ = feed(&mut s, &dmst(id, 0, id, 2));
    // The next is sealed and queued; then the sessions file cannot be saved.
    let queued = s.send_dm("@bob", "queued", NOW).unwrap();
    s.heartbeat(NOW);
    assert!(s.dirty_sessions().is_some());
    let failures = s.withhold_dms();
    assert_eq!(failures.iter().map(|f| (f.cmd.as_str(), f.code)).collect::<Vec<_>>(), [("msg", 503), ("msg", 503)]);
    assert!(failures[1].message.contains("1 direct message(s)") && failures[1].message.contains("dropped"));
    let pt = s.poll_transmit().expect("the heartbeat still goes");
    assert!(wire::decode::<Heartbeat>(&pt).is_ok());
    assert!(s.poll_transmit().is_none(), "the DM does not leave");
    assert!(!s.busy());
    assert!(s.dirty_outbox().is_some_and(|o| o.get(queued).is_none()), "nor is it kept to leave after a restart");
    let f = s.send_dm("@bob", "later", NOW).unwrap_err();
    assert_eq!((f.cmd.as_str(), f.code), ("msg", 503));
    assert!(s.poll_transmit().is_none());
    assert!(s.withhold_dms().is_empty(), "said once");

    // Offline: a message sealed with a saved state stays in the outbox, one sealed after it does not.
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let saved = sent_dm(&send(&mut s, &mut b, "saved")).0.msg_id.get();
    assert!(s.dirty_sessions().is_some());
    s.connection_lost();
    while s.poll_event().is_some() {}
    let unsaved = s.send_dm("@bob", "unsaved", NOW).unwrap();
    assert!(matches!(dm_event(s.poll_event()), DmEvent::Pending { .. }));
    assert!(s.dirty_sessions().is_some());
    assert_eq!(s.withhold_dms().len(), 2);
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![saved]), "not {unsaved:x}");
}

#[test]
fn trust_after_a_key_change_forgets_the_sessions_of_that_peer() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let first = send(&mut s, &mut b, "before");
    assert_eq!(b.open(&first).as_deref(), Some("before"));
    let id = sent_dm(&first).0.msg_id.get();
    let _ = feed(&mut s, &dmst(id, 0, id, 2));
    let answer = b.write(&s, 1, 0x31, "answer");
    assert!(message(feed(&mut s, &rvu(&answer))).verified);
    assert_eq!(sessions_of(&s).with(BOB).len(), 1);
    let _ = s.dirty_sessions();
    assert!(s.me.as_ref().unwrap().pins.get("bob").is_none(), "a contact need not be among the pins");

    let new = bob_new_key();
    let ev = dm_event(feed(&mut s, &contact_frame(0, Status::Ok, 0, 2, BOB, "bob", &new)));
    assert_eq!(ev, DmEvent::KeyChanged { user: "bob".into() });
    s.trust("@bob").unwrap();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Ok { cmd: "trust", user: "bob".into() });
    assert!(sessions_of(&s).with(BOB).is_empty(), "made with the old keys");
    assert!(s.dirty_sessions().is_some(), "saved without them");
    // The next message starts anew, from a bundle signed by the key trusted now.
    s.send_dm("@bob", "after", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    assert!(feed(&mut s, &b.bundle(&pkgt, &new)).is_none());
    assert_eq!(sent_dm(&s.poll_transmit().unwrap()).1.prekey, 1);
    // /trust with nothing changed keeps the sessions.
    s.trust("@bob").unwrap();
    let _ = s.poll_event();
    assert_eq!(sessions_of(&s).with(BOB).len(), 1);
}

#[test]
fn a_prekey_upload_lost_with_the_connection_is_made_again_after_the_next_login() {
    let mut s = alice_session_with(with_bob(), Sessions::new());
    assert!(feed(&mut s, &pkst(0, 0, 0)).is_none());
    let lost = upload(&mut s);
    s.connection_lost();
    while s.poll_event().is_some() {}
    login_again(&mut s);
    // The server never stored it: its state after the login says so.
    assert!(feed(&mut s, &pkst(0, 0, 0)).is_none());
    let again = upload(&mut s);
    assert_eq!((again.spk_id.get(), again.spk_pub), (lost.spk_id.get(), lost.spk_pub), "the same signed prekey");
    assert!(signed_by_alice(1, &again.spk_pub, &again.spk_sig));
    assert_eq!(usize::from(again.opk_count), OPK_BATCH);
}

#[test]
fn a_first_msg_to_a_peer_without_prekeys_fails_with_the_servers_reason() {
    let mut s = alice_session(with_bob());
    s.send_dm("@bob", "first", NOW).unwrap();
    let id = wire::decode::<PrekeyFetch>(&s.poll_transmit().unwrap()).unwrap().hdr.msg_id.get();
    let f = failure(feed(&mut s, &status(id, Status::Error, code::NOT_FOUND, "no prekeys published")));
    assert_eq!((f.cmd.as_str(), f.code), ("msg", 404));
    assert!(f.message.contains("cannot start a session with bob") && f.message.contains("dropped"), "{f:?}");
    assert!(!s.busy() && s.poll_transmit().is_none());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![]));
    assert!(sessions_of(&s).with(BOB).is_empty());
}

#[test]
fn first_messages_crossing_each_other_both_open_and_the_talk_goes_on() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    // Alice fetches bob's bundle while bob starts from hers.
    s.send_dm("@bob", "from alice", NOW).unwrap();
    let pkgt = s.poll_transmit().unwrap();
    let bobs = b.write(&s, 1, 0x1, "from bob");
    assert!(feed(&mut s, &b.bundle(&pkgt, &bob())).is_none());
    let alices = s.poll_transmit().unwrap().to_vec();
    assert_eq!(b.open(&alices).as_deref(), Some("from alice"));
    let got = message(feed(&mut s, &rvu(&bobs)));
    assert_eq!((got.text.as_str(), got.verified), ("from bob", true));
    let id = sent_dm(&alices).0.msg_id.get();
    let _ = feed(&mut s, &dmst(id, 0, id, 2));
    assert_eq!(sessions_of(&s).with(BOB).len(), 2, "one each way");
    for i in 0..3u64 {
        let a = send(&mut s, &mut b, &format!("a{i}"));
        assert_eq!(b.open(&a), Some(format!("a{i}")), "round {i}");
        let id = sent_dm(&a).0.msg_id.get();
        let _ = feed(&mut s, &dmst(id, 0, id, 2));
        let m = b.write(&s, 10 + i, 0x10 + i, &format!("b{i}"));
        let got = message(feed(&mut s, &rvu(&m)));
        assert_eq!((got.text, got.verified), (format!("b{i}"), true), "round {i}");
    }
}

#[test]
fn first_msgs_typed_offline_wait_as_text_and_are_sealed_in_order_with_their_typed_time_after_the_login() {
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    s.connection_lost();
    let first = s.send_dm("@bob", "typed offline", NOW + 1).unwrap();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Pending { id: first, to: "bob".into() });
    let second = s.send_dm("@bob", "and more", NOW + 2).unwrap();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Pending { id: second, to: "bob".into() });
    assert!(s.poll_transmit().is_none());
    let outbox = s.dirty_outbox().expect("kept");
    let waiting: Vec<Waiting> = outbox.ids().into_iter().map(|id| outbox.get(id).unwrap().body.clone()).collect();
    assert!(matches!(waiting[..], [Waiting::Text { .. }, Waiting::Text { .. }]), "kept as typed");
    assert!(sessions_of(&s).with(BOB).is_empty());

    login_again(&mut s);
    let pkgt = s.poll_transmit().expect("the bundle is fetched for the first");
    assert!(feed(&mut s, &b.bundle(&pkgt, &bob())).is_none());
    for (id, ts, text) in [(first, NOW + 1, "typed offline"), (second, NOW + 2, "and more")] {
        let pt = s.poll_transmit().expect("then the message");
        let (hdr, head, _, _) = sent_dm(&pt);
        assert_eq!((hdr.msg_id.get(), hdr.timestamp.get(), head.prekey), (id, ts, 1), "{text}");
        assert_eq!(b.open(&pt).as_deref(), Some(text), "bound to the typed time");
        assert_eq!(
            dm_event(feed(&mut s, &dmst(id, 0, id, 2))),
            DmEvent::Sent { id, to: "bob".into(), delivered: true }
        );
    }
    assert!(!s.busy() && s.poll_transmit().is_none());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![]));
}

#[test]
fn a_first_msg_whose_bundle_does_not_come_is_pending_and_goes_after_the_next_login() {
    // The connection drops while the bundle is asked for.
    let mut s = alice_session(with_bob());
    let mut b = BobClient::new();
    let id = s.send_dm("@bob", "first", NOW).unwrap();
    assert!(s.poll_transmit().is_some());
    s.connection_lost();
    assert_eq!(dm_event(s.poll_event()), DmEvent::Pending { id, to: "bob".into() });
    login_again(&mut s);
    let pkgt = s.poll_transmit().expect("the bundle is asked for again");
    assert!(feed(&mut s, &b.bundle(&pkgt, &bob())).is_none());
    let pt = s.poll_transmit().unwrap();
    assert_eq!((sent_dm(&pt).0.msg_id.get(), b.open(&pt)), (id, Some("first".into())));

    // No answer in time: kept for the next login too.
    let mut s = alice_session(with_bob());
    let id = s.send_dm("@bob", "first", NOW).unwrap();
    assert!(s.poll_transmit().is_some());
    s.handle_timeout(NOW + crate::session::REQUEST_TIMEOUT_MS);
    assert_eq!(dm_event(s.poll_event()), DmEvent::Pending { id, to: "bob".into() });
    assert!(!s.busy());
    assert_eq!(s.dirty_outbox().map(|o| o.ids()), Some(vec![id]));
}
