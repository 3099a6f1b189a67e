//! Writes the committed seed corpus, `corpus/<target>/seed-*`, from real
//! structures, hellos and records made with the fixtures of `sotto_fuzz`.
//!
//! Run from fuzz/: `cargo run --example gen_corpus`; run it again after a change to
//! opcodes.toml (the `decode` seeds start with their index in `sotto_fuzz::MESSAGES`).

use std::fs;
use std::path::Path;

use sotto::frame;
use sotto::handshake::{self, HelloVerdict};
use sotto::opcodes::*;
use sotto::record::Sealer;
use sotto::server::fuzz::{prekey_upload, room_auth_key, uid, OPKS_PUBLISHED};
use sotto::wire::{Classed, Message, WireError};
use sotto_fuzz::dispatch::{secs, RECONNECT, RESEND, SWITCH_READING};
use sotto_fuzz::ratchet::{self, MISDIRECT, MUTATE, REPLAY, RESIZE, SAVE, SEAL_AB, SEAL_BA};
use sotto_fuzz::*;
use zerocopy::{FromBytes, IntoBytes};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    let mut seed = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        n += 1;
        fs::write(dir.join(format!("seed-{name}")), bytes)
    };

    // decode: selector byte, then a valid encoding of that struct.
    for (i, d) in MESSAGES.iter().chain(STRUCTS.iter()).enumerate() {
        let bytes = (d.sample)();
        (d.check)(&bytes);
        seed("decode", &d.name.to_lowercase(), &[&[i as u8][..], &bytes].concat())?;
    }

    // deframer: bound, cuts, stream of frames.
    let login = named("Login").map(|d| (d.sample)()).ok_or_else(|| invalid("no Login decoder"))?;
    let mut stream = Vec::new();
    for body in [&b"hello"[..], &[0x5a; 300], &login] {
        frame::encode(body, &mut stream);
    }
    seed("deframer", "three-frames", &[&[0x10, 0x00, 3, 0, 1, 0, 9, 1, 0x40][..], &stream].concat())?;
    seed("deframer", "one-push", &[&[0x10, 0x00, 0][..], &stream[..stream.len() - 7]].concat())?;
    seed("deframer", "too-large", &[&[0x00, 0x20, 1, 0, 2][..], &stream].concat())?;

    // record: genuine records to open (mode 0) and IV || plaintext to round-trip (mode 1).
    for (name, pt) in [("block", vec![0x42; 16]), ("message", login.clone())] {
        let mut out = Vec::new();
        Sealer::new(record_keys()).seal_with_iv(&pt, &[0x17; 16], &mut out).map_err(|_| invalid("seal"))?;
        seed("record", &format!("open-{name}"), &[&[0][..], &out[4..]].concat())?;
        seed("record", &format!("seal-{name}"), &[&[0x63][..], &[0x17; 16], &pt].concat())?;
    }

    // seal_many: member count - 1, queued length, 16 bytes per member (key
    // tweak, sequence number), plaintext: a room of 10 and an rvrs, the
    // largest batch and one block, a sequence number at its end, a bad length.
    let heads = |count: usize, last: u64| -> Vec<u8> {
        (0..count as u64).flat_map(|i| [i.to_be_bytes(), (last - i * 3).to_be_bytes()]).flatten().collect()
    };
    let rvrs = vec![0x5a; core::mem::size_of::<ReceiveRoomMessageS>()];
    seed("seal_many", "room-of-10-rvrs", &[&[9, 5][..], &heads(10, 1 << 20), &rvrs].concat())?;
    seed("seal_many", "17-one-block", &[&[16, 0][..], &heads(17, 1 << 40), &[7; 16]].concat())?;
    seed("seal_many", "exhausted", &[&[2, 1][..], &heads(3, u64::MAX), &[7; 32]].concat())?;
    seed("seal_many", "bad-length", &[&[3, 0][..], &heads(4, 9), &[7; 33]].concat())?;

    // handshake: the fixed ClientHello (as is, and another version: a mismatch) and its signed answer.
    let hello = client().1;
    assert_eq!(handshake::check_client_hello(&SERVER, &hello), HelloVerdict::Accept);
    seed("handshake", "client-hello", &[&[0][..], &hello].concat())?;
    let mut old = hello.clone();
    old[4..6].copy_from_slice(&0u16.to_be_bytes());
    seed("handshake", "client-hello-old-version", &[&[1][..], &old].concat())?;
    let mut other = hello.clone();
    other[8..40].copy_from_slice(&[!TABLE_HASH[0]; 32]);
    seed("handshake", "client-hello-other-table", &[&[1][..], &other].concat())?;
    let signed = SIGNED_SERVER_HELLO.clone();
    client().0.handle_server_hello(&CLIENT, &signed).map_err(|e| invalid(&e.to_string()))?;
    seed("handshake", "server-hello", &[&[2][..], &signed].concat())?;
    let mut sh = ServerHello::read_from_bytes(&signed).map_err(|_| invalid("server hello"))?;
    sh.status.set(handshake::STATUS_MISMATCH);
    sh.version.set(sh.version.get() + 1);
    seed("handshake", "server-hello-mismatch", &[&[2][..], sh.as_bytes()].concat())?;

    // dispatch: one valid request of every opcode from alice, then sequences (sotto_fuzz::dispatch).
    for (name, frame) in requests() {
        seed("dispatch", name, &dispatch::step(0, &frame))?;
    }
    for (name, steps) in sequences() {
        seed(
            "dispatch",
            name,
            &steps.iter().flat_map(|(ctl, frame)| dispatch::step(*ctl, frame)).collect::<Vec<u8>>(),
        )?;
    }

    // ratchet: saved states (mode 0) and sessions (mode 1); each one runs clean first.
    for (name, bytes) in ratchet_seeds() {
        ratchet::run(&bytes);
        seed("ratchet", name, &bytes)?;
    }

    println!("wrote {n} seeds under {}", root.display());
    Ok(())
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::other(format!("fixture does not work: {what}"))
}

/// A request with `msg_id` and `set` applied.
fn request<M: Message>(msg_id: u64, set: impl FnOnce(&mut M) -> Result<(), WireError>) -> Vec<u8> {
    let mut m = M::request(msg_id, 1_700_000_000_000);
    // NOTE(unwrap): the sample names fit their fields.
    set(&mut m).unwrap();
    m.as_bytes().to_vec()
}

fn create(msg_id: u64, room: &str) -> Vec<u8> {
    request::<CreateRoom>(msg_id, |m| {
        m.salt = [0x33; 16];
        m.verifier = sotto::room::verifier(&room_auth_key(room));
        m.set_room(room)
    })
}

fn join(msg_id: u64, room: &str) -> Vec<u8> {
    request::<JoinRoom>(msg_id, |m| {
        m.auth_key = room_auth_key(room);
        m.set_room(room)
    })
}

/// A room message of class `s`.
fn say(msg_id: u64, room: &str) -> Vec<u8> {
    say_in::<SendRoomMessageS>(msg_id, room)
}

/// A room message of `M`'s class.
fn say_in<M: Classed<Head = SendRoomMessageHead>>(msg_id: u64, room: &str) -> Vec<u8> {
    request::<M>(msg_id, |m| {
        m.head_mut().iv = [0x17; 16];
        m.body_mut().fill(0x42);
        m.head_mut().set_room(room)
    })
}

/// A DM of class `s`.
fn dm(msg_id: u64, to: usize) -> Vec<u8> {
    dm_in::<SendDmS>(msg_id, to)
}

/// A DM of `M`'s class: a ratchet message of an existing session (no prekey).
fn dm_in<M: Classed<Head = SendDmHead>>(msg_id: u64, to: usize) -> Vec<u8> {
    request::<M>(msg_id, |m| {
        let h = m.head_mut();
        h.peer_uid.set(uid(to));
        h.dh = [0x31; 32];
        h.n.set(1);
        m.body_mut().fill(0x24);
        Ok(())
    })
}

fn fetch(msg_id: u64, peer: usize) -> Vec<u8> {
    request::<PrekeyFetch>(msg_id, |m| {
        m.peer_uid.set(uid(peer));
        Ok(())
    })
}

fn ack(msg_id: u64, seq: u64) -> Vec<u8> {
    request::<MailboxAck>(msg_id, |m| {
        m.seq.set(seq);
        Ok(())
    })
}

fn ping(msg_id: u64) -> Vec<u8> {
    request::<Heartbeat>(msg_id, |_| Ok(()))
}

/// One valid request of every opcode, as alice would send it in the world of
/// `sotto::server::fuzz` (the first three are refused: she is logged in).
fn requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("crea", request::<Register>(1, |m| m.set_username("dave"))),
        ("auth", request::<Login>(2, |m| m.set_username("alice"))),
        (
            "pass",
            request::<Passphrase>(3, |m| {
                m.pass_secret = [7; 32];
                Ok(())
            }),
        ),
        ("crms", create(4, "garden")),
        ("jrms", join(5, "club")),
        ("srms", say(6, "lobby")),
        ("srmm", say_in::<SendRoomMessageM>(6, "lobby")),
        ("srml", say_in::<SendRoomMessageL>(6, "lobby")),
        ("srmx", say_in::<SendRoomMessageX>(6, "lobby")),
        ("jmpu", request::<DmRequest>(7, |m| m.set_peer("carol"))),
        ("ampu", request::<DmAccept>(8, |m| m.set_peer("carol"))),
        ("smps", dm(9, 1)),
        ("smpm", dm_in::<SendDmM>(9, 1)),
        ("smpl", dm_in::<SendDmL>(9, 1)),
        ("smpx", dm_in::<SendDmX>(9, 1)),
        ("gslt", request::<RoomSaltRequest>(10, |m| m.set_room("club"))),
        ("lvrm", request::<LeaveRoom>(11, |m| m.set_room("lobby"))),
        ("lsrm", request::<ListRooms>(12, |_| Ok(()))),
        ("whor", request::<WhoRoom>(13, |m| m.set_room("lobby"))),
        ("dlrm", request::<DeleteRoom>(14, |m| m.set_room("lobby"))),
        ("rjmu", request::<DmReject>(15, |m| m.set_peer("carol"))),
        ("dack", ack(16, 2)),
        ("ping", ping(17)),
        ("whoa", request::<WhoOnline>(18, |_| Ok(()))),
        ("pkup", prekey_upload(19, 0, 2, 100..110)),
        ("pkgt", fetch(20, 1)),
    ]
}

/// Steps of the `dispatch` target: control byte and frame.
type Steps = Vec<(u8, Vec<u8>)>;

/// Session slots of a step's control byte (ORed with `dispatch::{RECONNECT, SWITCH_READING, RESEND, secs}`).
const ALICE: u8 = 0;
const BOB: u8 = 1;
const ALICE2: u8 = 2;
const CAROL: u8 = 3;

/// Sequences over several sessions: a room's life, a DM channel's, two
/// sessions of one user, a client that stops reading, a resent DM, a mailbox
/// that expires, prekeys fetched down to a refill and refilled.
fn sequences() -> Vec<(&'static str, Steps)> {
    vec![
        (
            "seq-room",
            vec![
                (ALICE, create(20, "garden")),
                (BOB, request::<RoomSaltRequest>(21, |m| m.set_room("garden"))),
                (BOB, join(22, "garden")),
                (BOB, say(23, "garden")),
                (ALICE, request::<WhoRoom>(24, |m| m.set_room("garden"))),
                (BOB, request::<LeaveRoom>(25, |m| m.set_room("garden"))),
                (ALICE, request::<DeleteRoom>(26, |m| m.set_room("garden"))),
            ],
        ),
        (
            "seq-dm",
            vec![
                (CAROL, request::<DmRequest>(30, |m| m.set_peer("bob"))),
                (BOB, request::<DmAccept>(31, |m| m.set_peer("carol"))),
                (CAROL, dm(32, 1)),
                (BOB, ack(33, 3)),
                (ALICE, request::<DmAccept>(34, |m| m.set_peer("carol"))),
                (CAROL | secs(6), ping(35)),
            ],
        ),
        (
            "seq-sessions",
            vec![
                (ALICE2, say(40, "lobby")),
                (BOB | RECONNECT, ping(41)),
                (ALICE, dm(42, 1)),
                (BOB, ack(43, 2)),
                (ALICE2, request::<ListRooms>(44, |_| Ok(()))),
                (ALICE2 | RECONNECT | secs(3), ping(45)),
            ],
        ),
        (
            "seq-slow-reader",
            vec![
                (ALICE | SWITCH_READING, join(50, "lobby")),
                (ALICE | RESEND, vec![]),
                (ALICE, join(51, "lobby")),
                (BOB, say(52, "lobby")),
                (BOB, say(53, "lobby")),
                (ALICE | SWITCH_READING, ping(54)),
            ],
        ),
        (
            "seq-resend",
            vec![
                (ALICE, dm(70, 1)),
                (ALICE | RESEND, vec![]),
                (BOB | secs(2), ping(71)),
                (BOB | RESEND | secs(4), vec![]),
            ],
        ),
        (
            "seq-prekeys",
            (0..OPKS_PUBLISHED as u64 - 3)
                .map(|i| (ALICE | secs(2), fetch(80 + i, 1)))
                .chain([
                    (BOB, prekey_upload(100, 1, 2, 100..150)),
                    (CAROL, fetch(101, 0)),
                    (ALICE, dm_in::<SendDmM>(102, 1)),
                    (BOB, prekey_upload(103, 1, 2, 200..201)),
                ])
                .collect(),
        ),
        (
            "seq-expiry",
            vec![
                (ALICE | secs(15), ping(60)),
                (ALICE | secs(15), ping(61)),
                (ALICE | secs(15), dm(62, 1)),
                (ALICE | secs(15), ping(63)),
                (ALICE | secs(15), ping(64)),
                (ALICE | secs(15), ping(65)),
                (ALICE | secs(15), ping(66)),
                (ALICE | secs(15), ping(67)),
            ],
        ),
    ]
}

/// Operations of a `ratchet` session seed: code and operands.
type RatchetOps = Vec<(u8, &'static [u8])>;

/// Seeds of the `ratchet` target: saved states of a session at a few points
/// (fresh, with skipped keys, after both have spoken), then sessions of
/// operations (`sotto_fuzz::ratchet`).
fn ratchet_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use sotto_fuzz::ratchet::DELIVER;
    let ad = ratchet::ad();
    let (mut a, mut b) = ratchet::pair();
    let mut out = vec![("state-initiator", [&[0][..], &a.to_bytes()].concat())];
    out.push(("state-responder", [&[0][..], &b.to_bytes()].concat()));
    // NOTE(unwrap): a fresh pair seals and opens; the seeds are checked by running them.
    let m0 = a.seal(&ratchet::body(0, 1), &ad).unwrap();
    let _skipped = a.seal(&ratchet::body(1, 1), &ad).unwrap();
    let m2 = a.seal(&ratchet::body(2, 1), &ad).unwrap();
    b.open(&m2.header, &m2.ciphertext, &m2.tag, &ad).unwrap();
    out.push(("state-skipped", [&[0][..], &b.to_bytes()].concat()));
    let r = b.seal(&ratchet::body(3, 2), &ad).unwrap();
    a.open(&r.header, &r.ciphertext, &r.tag, &ad).unwrap();
    b.open(&m0.header, &m0.ciphertext, &m0.tag, &ad).unwrap();
    out.push(("state-both", [&[2][..], &a.to_bytes()].concat()));
    out.push(("state-both-skipped", [&[4][..], &b.to_bytes()].concat()));
    let seqs: [(&str, RatchetOps); 8] = [
        (
            "ping-pong",
            vec![(SEAL_AB, &[0]), (DELIVER, &[0]), (SEAL_BA, &[1]), (DELIVER, &[1]), (SEAL_AB, &[64]), (DELIVER, &[2])],
        ),
        (
            "out-of-order",
            vec![
                (SEAL_AB, &[0]),
                (SEAL_AB, &[3]),
                (SEAL_AB, &[7]),
                (DELIVER, &[2]),
                (SEAL_BA, &[0]),
                (DELIVER, &[3]),
                (SEAL_AB, &[1]),
                (DELIVER, &[4]),
                (DELIVER, &[0]),
                (DELIVER, &[1]),
            ],
        ),
        (
            "responder-first",
            vec![(SEAL_BA, &[0]), (SEAL_AB, &[0]), (SEAL_BA, &[0]), (DELIVER, &[0]), (SEAL_BA, &[2]), (DELIVER, &[1])],
        ),
        (
            "mutate",
            vec![
                (SEAL_AB, &[1]),
                (SEAL_AB, &[1]),
                (MUTATE, &[1, 0, 0, 0, 1]),
                (MUTATE, &[1, 1, 0, 40, 0x80, 0, 100, 4]),
                (MUTATE, &[0, 0, 0, 39, 2]),
                (DELIVER, &[1]),
                (MUTATE, &[0, 0, 0, 90, 1]),
                (DELIVER, &[0]),
            ],
        ),
        (
            "replay",
            vec![
                (SEAL_AB, &[0]),
                (DELIVER, &[0]),
                (REPLAY, &[0]),
                (SEAL_BA, &[0]),
                (DELIVER, &[1]),
                (REPLAY, &[1]),
                (REPLAY, &[0]),
            ],
        ),
        (
            "save-restore",
            vec![
                (SEAL_AB, &[0]),
                (SEAL_AB, &[0]),
                (DELIVER, &[1]),
                (SAVE, &[1]),
                (REPLAY, &[0]),
                (DELIVER, &[0]),
                (SAVE, &[0]),
                (SEAL_BA, &[5]),
                (DELIVER, &[2]),
                (SAVE, &[0]),
            ],
        ),
        (
            "resize",
            vec![
                (SEAL_AB, &[1]),
                (RESIZE, &[0, 0]),
                (RESIZE, &[0, 1]),
                (RESIZE, &[0, 2]),
                (RESIZE, &[0, 3]),
                (RESIZE, &[0, 4]),
                (DELIVER, &[0]),
            ],
        ),
        (
            "misdirect",
            vec![
                (SEAL_AB, &[0]),
                (MISDIRECT, &[0, 0]),
                (MISDIRECT, &[0, 1]),
                (DELIVER, &[0]),
                (SEAL_BA, &[0]),
                (MISDIRECT, &[1, 2]),
                (MISDIRECT, &[1, 3]),
            ],
        ),
    ];
    for (name, steps) in seqs {
        out.push((name, ratchet::ops(&steps)));
    }
    out
}
