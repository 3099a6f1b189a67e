//! Prekeys and size classes in the core, through the fuzzing seam's world
//! (alice and bob are contacts and have published prekeys; carol asked
//! alice): upload checks, one-time prekeys handed out once, refill
//! requests, restarts; room messages and DMs of every class.

use zerocopy::{FromBytes, IntoBytes};

use crate::opcodes::{
    Class, JoinRoom, PrekeyBundle, PrekeyFetch, PrekeyState, PrekeyUpload, ReceiveDmHead, ReceiveRoomMessageHead,
    SendDmHead, SendRoomMessageHead, StatusReply, PKBD, PKST,
};
use crate::record::Opener;
use crate::server::core::ConnId;
use crate::server::fuzz::{prekey_upload, room_auth_key, uid, World, OPKS_PUBLISHED};
use crate::server::prekeys::{OPK_MAX, REFILL_BELOW};
use crate::wire::{self, code, Classed, Message};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

fn opcodes(frames: &[Vec<u8>]) -> Vec<u32> {
    frames.iter().map(|f| wire::header(f).unwrap().opcode.get()).collect()
}

/// Dispatches `frame` on `id`, settles, returns what `id` received.
fn ask(w: &mut World, (id, opener): (ConnId, &mut Opener), frame: &[u8]) -> Vec<Vec<u8>> {
    assert!(w.dispatch(id, frame), "taken");
    w.settle();
    w.received(id, opener)
}

/// The (code, reason) of the one status reply in `got`.
fn status(got: &[Vec<u8>]) -> (u16, String) {
    let stat: Vec<&StatusReply> = got.iter().filter_map(|f| wire::decode::<StatusReply>(f).ok()).collect();
    assert_eq!(stat.len(), 1, "one status reply in {:?}", opcodes(got));
    (stat[0].hdr.code.get(), stat[0].reason().unwrap().to_owned())
}

fn fetch(peer: usize, msg_id: u64) -> Vec<u8> {
    let mut m = PrekeyFetch::request(msg_id, 0);
    m.peer_uid.set(uid(peer));
    m.as_bytes().to_vec()
}

/// A new world, its clock past the chat-rate window of its setup (alice's
/// three room messages), so each test has the whole rate to itself.
fn world() -> World {
    let mut w = World::new();
    w.advance(5_001);
    w
}

/// A session of `user` with what its login sent already read.
fn online(w: &mut World, user: usize) -> (ConnId, Opener) {
    let (id, mut opener) = w.open(user).unwrap();
    w.received(id, &mut opener);
    (id, opener)
}

#[test]
fn login_tells_the_prekey_state() {
    let mut w = world();
    let (id, mut opener) = w.open(BOB).unwrap();
    let got = w.received(id, &mut opener);
    let st = wire::decode::<PrekeyState>(&got[0]).expect("pkst first");
    assert_eq!(st.hdr.msg_id.get(), 0);
    assert_eq!((st.spk_id.get(), st.opk_left.get(), st.opk_max.get()), (1, OPKS_PUBLISHED as u16, OPK_MAX as u16));
    assert_ne!(st.spk_time.get(), 0);
    let (id, mut opener) = w.open(CAROL).unwrap();
    let st = *wire::decode::<PrekeyState>(&w.received(id, &mut opener)[0]).unwrap();
    assert_eq!((st.spk_id.get(), st.spk_time.get(), st.opk_left.get()), (0, 0, 0), "carol published nothing");
}

#[test]
fn upload_is_acknowledged_after_the_commit_and_refuses_bad_signatures_ids_and_keys() {
    let mut w = world();
    let (id, mut o) = online(&mut w, ALICE);
    // A new signed prekey and ten more one-time prekeys: no answer before the commit.
    assert!(w.dispatch(id, &prekey_upload(1, ALICE, 2, 100..110)));
    assert!(w.received(id, &mut o).is_empty(), "no answer before the commit");
    w.settle();
    assert_eq!(status(&w.received(id, &mut o)), (code::OK, "prekeys stored".into()));
    assert_eq!(w.core().mail.prekeys.get(uid(ALICE)).unwrap().opks.len(), OPKS_PUBLISHED as usize + 10);

    let refused = |w: &mut World, o: &mut Opener, frame: Vec<u8>, want: u16, why: &str| {
        let before = w.core().mail.prekeys.get(uid(ALICE)).cloned();
        let (c, reason) = status(&ask(w, (id, o), &frame));
        assert_eq!(c, want, "{why}: {reason}");
        assert!(reason.contains(why), "{reason:?} says {why:?}");
        assert!(w.core().mail.prekeys.get(uid(ALICE)).cloned() == before, "{why}: nothing changed");
    };
    let mut bad_sig = prekey_upload(2, ALICE, 3, 0..0);
    let at = 24 + 4 + 32;
    bad_sig[at] ^= 1;
    refused(&mut w, &mut o, bad_sig, code::BAD_REQUEST, "signature does not verify");
    // A signature over bob's binding (his uid): not alice's.
    refused(&mut w, &mut o, prekey_upload(3, BOB, 3, 0..0), code::BAD_REQUEST, "signature does not verify");
    refused(&mut w, &mut o, prekey_upload(4, ALICE, 2, 0..0), code::BAD_REQUEST, "must be higher");
    refused(&mut w, &mut o, prekey_upload(5, ALICE, 1, 0..0), code::BAD_REQUEST, "must be higher");
    let mut low = PrekeyUpload::read_from_bytes(&prekey_upload(6, ALICE, 3, 0..0)[..]).unwrap();
    low.spk_pub = [0; 32];
    low.spk_pub[0] = 1;
    refused(&mut w, &mut o, low.as_bytes().to_vec(), code::BAD_REQUEST, "low order");
    refused(&mut w, &mut o, prekey_upload(7, ALICE, 0, 0..0), code::BAD_REQUEST, "nothing to publish");
    refused(&mut w, &mut o, prekey_upload(8, ALICE, 0, 0..2), code::BAD_REQUEST, "id 0");
    refused(&mut w, &mut o, prekey_upload(9, ALICE, 0, 5..6), code::BAD_REQUEST, "duplicate");
    let mut twice = PrekeyUpload::read_from_bytes(&prekey_upload(10, ALICE, 0, 500..502)[..]).unwrap();
    let (a, b) = twice.opks.split_at_mut(36);
    b[..4].copy_from_slice(&a[..4]);
    refused(&mut w, &mut o, twice.as_bytes().to_vec(), code::BAD_REQUEST, "duplicate");
    let mut zero_opk = PrekeyUpload::read_from_bytes(&prekey_upload(11, ALICE, 0, 600..601)[..]).unwrap();
    zero_opk.opks[4..36].fill(0);
    refused(&mut w, &mut o, zero_opk.as_bytes().to_vec(), code::BAD_REQUEST, "low order");
    let mut over = PrekeyUpload::read_from_bytes(&prekey_upload(12, ALICE, 0, 700..701)[..]).unwrap();
    over.opk_count = 101;
    refused(&mut w, &mut o, over.as_bytes().to_vec(), code::BAD_REQUEST, "at most 100");
    // Up to the cap of 200 kept; one more is 413.
    let kept = OPKS_PUBLISHED + 10;
    let fill = 1_000..1_000 + (OPK_MAX as u32 - kept);
    let (mut from, mut n) = (fill.start, 20);
    while from < fill.end {
        let to = (from + 100).min(fill.end);
        assert_eq!(status(&ask(&mut w, (id, &mut o), &prekey_upload(n, ALICE, 0, from..to))).0, code::OK);
        (from, n) = (to, n + 1);
    }
    refused(&mut w, &mut o, prekey_upload(40, ALICE, 0, 5_000..5_001), code::TOO_LARGE, "too many one-time prekeys");
    assert_eq!(w.core().mail.prekeys.get(uid(ALICE)).unwrap().opks.len(), OPK_MAX);
}

#[test]
fn each_one_time_prekey_is_handed_out_once_then_none() {
    let mut w = world();
    let (id, mut o) = online(&mut w, ALICE);
    let mut seen = Vec::new();
    for i in 0..=u64::from(OPKS_PUBLISHED) {
        // One fetch a second and a bit: under the chat rate.
        w.advance(1_001);
        let got = ask(&mut w, (id, &mut o), &fetch(BOB, 100 + i));
        assert_eq!(opcodes(&got), [PKBD], "fetch {i}");
        let b = wire::decode::<PrekeyBundle>(&got[0]).unwrap();
        assert_eq!((b.hdr.msg_id.get(), b.peer_uid.get(), b.spk_id.get()), (100 + i, uid(BOB), 1));
        let spk_binding = crate::x3dh::spk_binding(&crate::account::deployment_id(), uid(BOB), 1, &b.spk_pub);
        let bob_key = w.core().accounts.by_uid(uid(BOB)).unwrap().id_pub;
        let key = crate::identity::from_modulus(&bob_key).unwrap();
        assert!(crate::identity::verify(&key, &spk_binding, &b.spk_sig), "the owner's signature, as uploaded");
        seen.push((b.opk_id.get(), b.opk_pub));
    }
    let (last_id, last_key) = seen.pop().unwrap();
    assert_eq!((last_id, last_key), (0, [0; 32]), "none left: opk_id 0, zero key");
    let ids: Vec<u32> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, (1..=OPKS_PUBLISHED).collect::<Vec<_>>(), "oldest first, each once");
    assert!(w.core().mail.prekeys.get(uid(BOB)).unwrap().opks.is_empty());
}

#[test]
fn a_fetch_leaving_fewer_than_20_asks_each_owner_session_to_refill() {
    let mut w = world();
    let (id, mut o) = online(&mut w, ALICE);
    let mut bob: Vec<(ConnId, Opener)> = (0..2).map(|_| online(&mut w, BOB)).collect();
    let mut left = OPKS_PUBLISHED as usize;
    while left > REFILL_BELOW - 2 {
        w.advance(1_001);
        assert_eq!(opcodes(&ask(&mut w, (id, &mut o), &fetch(BOB, 1))), [PKBD]);
        left -= 1;
        for (bid, bo) in bob.iter_mut() {
            let got = w.received(*bid, bo);
            if left >= REFILL_BELOW {
                assert!(got.is_empty(), "{left} left: no refill request yet");
            } else {
                assert_eq!(opcodes(&got), [PKST], "{left} left");
                let st = wire::decode::<PrekeyState>(&got[0]).unwrap();
                assert_eq!((st.hdr.msg_id.get(), st.opk_left.get(), st.spk_id.get()), (0, left as u16, 1));
            }
        }
    }
    // A refill: the count goes up and the requests stop.
    let (bid, bo) = &mut bob[0];
    let got = ask(&mut w, (*bid, bo), &prekey_upload(2, BOB, 0, 100..150));
    assert_eq!(status(&got).0, code::OK);
    w.advance(1_001);
    assert_eq!(opcodes(&ask(&mut w, (id, &mut o), &fetch(BOB, 1))), [PKBD]);
    assert!(w.received(*bid, bo).is_empty(), "enough left again");
}

#[test]
fn fetch_needs_an_existing_contact_with_published_prekeys() {
    let mut w = world();
    let (id, mut o) = online(&mut w, CAROL);
    let (c, why) = status(&ask(&mut w, (id, &mut o), &fetch(ALICE, 1)));
    assert_eq!((c, why.as_str()), (code::FORBIDDEN, "no accepted DM channel with this user"), "carol only asked");
    let mut nobody = PrekeyFetch::request(2, 0);
    nobody.peer_uid.set(12345);
    assert_eq!(status(&ask(&mut w, (id, &mut o), nobody.as_bytes())).0, code::NOT_FOUND);
    assert_eq!(w.core().mail.prekeys.get(uid(ALICE)).unwrap().opks.len(), OPKS_PUBLISHED as usize, "none taken");
    // Alice accepts carol; carol has published nothing.
    let (a, mut ao) = online(&mut w, ALICE);
    let mut accept = crate::opcodes::DmAccept::request(3, 0);
    accept.set_peer("carol").unwrap();
    ask(&mut w, (a, &mut ao), accept.as_bytes());
    let (c, why) = status(&ask(&mut w, (a, &mut ao), &fetch(CAROL, 4)));
    assert_eq!(c, code::NOT_FOUND);
    assert!(why.starts_with("this user has not published prekeys yet"), "{why}");
    let got = ask(&mut w, (id, &mut o), &fetch(ALICE, 5));
    assert_eq!(opcodes(&got), [crate::opcodes::CTCT, PKBD], "alice's keys, then her bundle: now a contact");
}

#[test]
fn prekeys_survive_a_restart_and_a_fetch_lost_in_a_crash_hands_nothing_out() {
    let mut w = world();
    let (id, mut o) = online(&mut w, ALICE);
    let got = ask(&mut w, (id, &mut o), &fetch(BOB, 1));
    assert_eq!(wire::decode::<PrekeyBundle>(&got[0]).unwrap().opk_id.get(), 1);
    // A second fetch whose commit never reaches the disk: no answer, and after the crash the key is still there.
    w.advance(1_001);
    assert!(w.dispatch(id, &fetch(BOB, 2)));
    let now = w.now_ms();
    assert!(w.core().poll_commit(now).is_some(), "taken, never finished");
    assert!(w.received(id, &mut o).is_empty(), "nothing handed out before the commit");
    w.restart();
    let p = w.core().mail.prekeys.get(uid(BOB)).cloned().expect("reloaded");
    assert_eq!((p.spk_id, p.opks.len(), p.opks.front().map(|k| k.0)), (1, OPKS_PUBLISHED as usize - 1, Some(2)));
    let (id, mut o) = online(&mut w, ALICE);
    let got = ask(&mut w, (id, &mut o), &fetch(BOB, 3));
    assert_eq!(wire::decode::<PrekeyBundle>(&got[0]).unwrap().opk_id.get(), 2, "1 is gone for good, 2 is next");
    w.restart();
    let (bid, mut bo) = w.open(BOB).unwrap();
    let st = *wire::decode::<PrekeyState>(&w.received(bid, &mut bo)[0]).unwrap();
    assert_eq!(st.opk_left.get(), OPKS_PUBLISHED as u16 - 2);
}

#[test]
fn a_room_message_of_each_class_fans_out_and_is_kept_as_that_class() {
    let mut w = world();
    let (alice, mut ao) = online(&mut w, ALICE);
    let (bob, mut bo) = online(&mut w, BOB);
    fn say<M: Classed<Head = SendRoomMessageHead>>(w: &mut World, id: ConnId, fill: u8) {
        let mut m = M::request(u64::from(fill), 0);
        m.head_mut().set_room("lobby").unwrap();
        m.head_mut().iv = [fill; 16];
        m.body_mut().fill(fill);
        assert!(w.dispatch(id, m.as_bytes()));
        w.settle();
    }
    fn check<E: Classed<Head = ReceiveRoomMessageHead>>(frame: &[u8], fill: u8, history: u8) {
        let m = wire::decode::<E>(frame).unwrap_or_else(|e| panic!("{}: {e}", E::MNEMONIC));
        assert_eq!((m.head().history, m.head().sent_msg_id.get(), m.head().iv), (history, u64::from(fill), [fill; 16]));
        assert!(m.body().iter().all(|b| *b == fill) && m.body().len() == E::CLASS.body());
    }
    use crate::opcodes::{
        ReceiveRoomMessageL, ReceiveRoomMessageM, ReceiveRoomMessageS, ReceiveRoomMessageX, SendRoomMessageL,
        SendRoomMessageM, SendRoomMessageS, SendRoomMessageX,
    };
    say::<SendRoomMessageS>(&mut w, alice, 0x51);
    say::<SendRoomMessageM>(&mut w, alice, 0x52);
    say::<SendRoomMessageL>(&mut w, alice, 0x53);
    say::<SendRoomMessageX>(&mut w, alice, 0x54);
    assert!(w.received(alice, &mut ao).iter().all(|f| status(std::slice::from_ref(f)).0 == code::OK));
    let live = w.received(bob, &mut bo);
    assert_eq!(live.len(), 4);
    check::<ReceiveRoomMessageS>(&live[0], 0x51, 0);
    check::<ReceiveRoomMessageM>(&live[1], 0x52, 0);
    check::<ReceiveRoomMessageL>(&live[2], 0x53, 0);
    check::<ReceiveRoomMessageX>(&live[3], 0x54, 0);
    let kept: Vec<Class> = w.core().rooms.get("lobby").unwrap().history.iter().map(|k| k.class).collect();
    assert_eq!(kept, [Class::S, Class::S, Class::S, Class::S, Class::M, Class::L, Class::X]);
    // Kept as its class through the room file, and replayed as its class at a join.
    w.restart();
    let (bob, mut bo) = online(&mut w, BOB);
    let mut join = JoinRoom::request(9, 0);
    join.set_room("lobby").unwrap();
    join.auth_key = room_auth_key("lobby");
    let got = ask(&mut w, (bob, &mut bo), join.as_bytes());
    let history: Vec<&Vec<u8>> = got.iter().filter(|f| wire::decode::<StatusReply>(f).is_err()).collect();
    let n = history.len();
    check::<ReceiveRoomMessageS>(history[n - 4], 0x51, 1);
    check::<ReceiveRoomMessageM>(history[n - 3], 0x52, 1);
    check::<ReceiveRoomMessageL>(history[n - 2], 0x53, 1);
    check::<ReceiveRoomMessageX>(history[n - 1], 0x54, 1);
}

#[test]
fn a_dm_of_each_class_arrives_as_a_receive_of_that_class() {
    use crate::opcodes::{ReceiveDmL, ReceiveDmM, ReceiveDmS, ReceiveDmX, SendDmL, SendDmM, SendDmS, SendDmX};
    let mut w = world();
    let (alice, _) = online(&mut w, ALICE);
    let (bob, mut bo) = online(&mut w, BOB);
    fn send<M: Classed<Head = SendDmHead>>(w: &mut World, id: ConnId, fill: u8) {
        let mut m = M::request(u64::from(fill), 0);
        let h = m.head_mut();
        h.peer_uid.set(uid(BOB));
        h.prekey = 1;
        h.spk_id.set(1);
        h.opk_id.set(u32::from(fill));
        h.ek = [fill; 32];
        h.n.set(u32::from(fill));
        m.body_mut().fill(fill);
        assert!(w.dispatch(id, m.as_bytes()));
        w.settle();
    }
    fn check<E: Classed<Head = ReceiveDmHead>>(frame: &[u8], fill: u8) {
        let m = wire::decode::<E>(frame).unwrap_or_else(|e| panic!("{}: {e}", E::MNEMONIC));
        let h = m.head();
        assert_eq!((h.sender_uid.get(), h.dm_id.get(), h.prekey, h.spk_id.get()), (uid(ALICE), u64::from(fill), 1, 1));
        assert_eq!((h.opk_id.get(), h.ek, h.n.get()), (u32::from(fill), [fill; 32], u32::from(fill)));
        assert!(m.body().iter().all(|b| *b == fill) && m.body().len() == E::CLASS.body());
    }
    send::<SendDmS>(&mut w, alice, 0x61);
    send::<SendDmM>(&mut w, alice, 0x62);
    send::<SendDmL>(&mut w, alice, 0x63);
    send::<SendDmX>(&mut w, alice, 0x64);
    let got = w.received(bob, &mut bo);
    assert_eq!(got.len(), 4, "{:?}", opcodes(&got));
    check::<ReceiveDmS>(&got[0], 0x61);
    check::<ReceiveDmM>(&got[1], 0x62);
    check::<ReceiveDmL>(&got[2], 0x63);
    check::<ReceiveDmX>(&got[3], 0x64);
}

#[test]
fn a_failed_commit_answers_507_and_the_prekey_file_is_written_again() {
    use crate::server::store::Change;
    use crate::server::worker::{Completion, Job};
    let bob_file =
        |writes: &[Change]| writes.iter().any(|c| matches!(c, Change::Prekeys(u, Some(_)) if *u == uid(BOB)));
    let mut w = world();
    let (id, mut o) = online(&mut w, ALICE);
    assert!(w.dispatch(id, &fetch(BOB, 1)));
    let now = w.now_ms();
    let Some(Job::Commit { token, writes }) = w.core().poll_commit(now) else { panic!("a commit") };
    assert!(bob_file(&writes), "the fetch rewrites bob's prekey file");
    w.core().handle_completion(Completion::Committed { token, ok: false, unavailable: false }, now);
    let got = w.received(id, &mut o);
    assert_eq!(opcodes(&got), [crate::opcodes::STAT], "no bundle");
    assert_eq!(status(&got).0, code::INSUFFICIENT_STORAGE);
    // The key taken stays taken (it was never handed out); the file is written again a second later.
    assert!(w.core().poll_commit(now).is_none(), "not at once");
    w.advance(1_001);
    let now = w.now_ms();
    let Some(Job::Commit { writes, .. }) = w.core().poll_commit(now) else { panic!("retried") };
    assert!(bob_file(&writes));
    assert_eq!(w.core().mail.prekeys.get(uid(BOB)).unwrap().opks.front().map(|k| k.0), Some(2));
}
