//! Golden bytes, both ways, for every generated struct (smoltcp's
//! `test_construct` / `test_deconstruct`), the decoder's errors, and the
//! audit table's invariants.
//!
//! The expected bytes are built by hand, field by field in big-endian, and
//! the offsets the builder used are checked against the layout tables of
//! docs/OPCODES.md, so neither side is derived from the generated code.

use sotto::crypto::hex;
use sotto::opcodes::{self, *};
use sotto::wire::{self, Classed, Direction, Message, Status, WireError};
use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

// ---------------------------------------------------------------- helpers

/// `N` distinctive bytes: `seed, seed + 1, ..` (wrapping).
fn pat<const N: usize>(seed: u8) -> [u8; N] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8))
}

/// Expected bytes, built field by field, remembering each field's offset.
struct Bytes {
    buf: Vec<u8>,
    layout: Vec<(usize, usize, &'static str)>,
}

impl Bytes {
    fn new() -> Bytes {
        Bytes { buf: Vec::new(), layout: Vec::new() }
    }

    /// The 24-byte common header, as one `hdr` field.
    fn header(opcode: u32, status: u8, flags: u8, code: u16, msg_id: u64, timestamp: u64) -> Bytes {
        let mut h = Vec::new();
        h.extend_from_slice(&opcode.to_be_bytes());
        h.push(status);
        h.push(flags);
        h.extend_from_slice(&code.to_be_bytes());
        h.extend_from_slice(&msg_id.to_be_bytes());
        h.extend_from_slice(&timestamp.to_be_bytes());
        Bytes::new().put("hdr", &h)
    }

    fn put(mut self, name: &'static str, data: &[u8]) -> Bytes {
        self.layout.push((self.buf.len(), data.len(), name));
        self.buf.extend_from_slice(data);
        self
    }

    fn u16(self, name: &'static str, v: u16) -> Bytes {
        self.put(name, &v.to_be_bytes())
    }

    fn u32(self, name: &'static str, v: u32) -> Bytes {
        self.put(name, &v.to_be_bytes())
    }

    fn u64(self, name: &'static str, v: u64) -> Bytes {
        self.put(name, &v.to_be_bytes())
    }

    /// `str[cap]`: length byte, UTF-8, zeros up to `cap`.
    fn str(self, name: &'static str, s: &str, cap: usize) -> Bytes {
        let mut d = vec![s.len() as u8];
        d.extend_from_slice(s.as_bytes());
        d.resize(1 + cap, 0);
        self.put(name, &d)
    }

    /// Zero `reserved` bytes up to a whole number of AES blocks.
    fn reserved(self) -> Bytes {
        let pad = (16 - self.buf.len() % 16) % 16;
        if pad == 0 {
            self
        } else {
            self.put("reserved", &vec![0; pad])
        }
    }

    /// The bytes, after checking the offsets against docs/OPCODES.md's table for `title`.
    fn finish(self, title: &str) -> Vec<u8> {
        let doc = doc_layout(title);
        let ours: Vec<(usize, usize, String)> = self.layout.iter().map(|&(o, s, n)| (o, s, n.to_owned())).collect();
        assert_eq!(ours, doc, "{title}: hand-built layout differs from docs/OPCODES.md");
        self.buf
    }
}

/// `(offset, size, field)` rows of the layout table under `### title` in OPCODES.md.
fn doc_layout(title: &str) -> Vec<(usize, usize, String)> {
    let mut lines = OPCODES_MD
        .lines()
        .skip_while(|l| !(l.strip_prefix("### ").is_some_and(|t| t == title || t.starts_with(&format!("{title} ")))));
    assert!(lines.next().is_some(), "no `### {title}` in OPCODES.md");
    let rows: Vec<_> = lines
        .take_while(|l| !l.starts_with("### "))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let off = cells.get(1)?.parse().ok()?;
            let size = cells.get(2)?.parse().ok()?;
            Some((off, size, cells.get(3)?.trim_matches('`').to_owned()))
        })
        .collect();
    assert!(!rows.is_empty(), "no layout rows under `### {title}`");
    rows
}

/// A message with the given header and a distinctive non-zero `flags`.
fn msg<T: Message>(status: Status, code: u16, msg_id: u64, ts: u64) -> T {
    let mut m = T::new(status, code, msg_id, ts);
    m.header_mut().flags = 0x5a;
    m
}

/// Checks `value` encodes to `expected` and `expected` decodes to `value`,
/// then runs `fields` on the decoded view.
fn golden<T: Message + PartialEq>(value: &T, expected: &[u8], fields: impl Fn(&T)) {
    assert_eq!(core::mem::size_of::<T>(), expected.len(), "{} size", T::MNEMONIC);
    assert_eq!(hex(value.as_bytes()), hex(expected), "{} encode", T::MNEMONIC);
    let decoded = wire::decode::<T>(expected).unwrap_or_else(|e| panic!("{} decode: {e}", T::MNEMONIC));
    assert!(decoded == value, "{} decode differs", T::MNEMONIC);
    assert_eq!(wire::header(expected).map(|h| h.opcode.get()), Ok(T::OPCODE));
    fields(decoded);
    let info = opcodes::info(T::OPCODE).unwrap_or_else(|| panic!("{} has no OPCODES row", T::MNEMONIC));
    assert_eq!((info.mnemonic, info.size), (T::MNEMONIC, expected.len()));
}

/// Checks the decoded header's fields one by one.
fn hdr<T: Message>(m: &T, status: Status, code: u16, msg_id: u64, ts: u64) {
    let h = m.header();
    assert_eq!(h.opcode.get(), T::OPCODE);
    assert_eq!(Status::from_u8(h.status), Some(status));
    assert_eq!(h.flags, 0x5a);
    assert_eq!((h.code.get(), h.msg_id.get(), h.timestamp.get()), (code, msg_id, ts));
}

const ID: u64 = 0x0102_0304_0506_0708;
const TS: u64 = 0x0000_0192_3456_789a;

// ---------------------------------------------------------------- header

#[test]
fn header_golden_bytes() {
    let expected = Bytes::new()
        .u32("opcode", 100_002)
        .put("status", &[3])
        .put("flags", &[0x5a])
        .u16("code", 429)
        .u64("msg_id", ID)
        .u64("timestamp", TS)
        .finish("Header");
    let h = wire::header(&expected).unwrap();
    assert_eq!(h.opcode.get(), AUTH);
    assert_eq!((h.status, h.flags, h.code.get(), h.msg_id.get(), h.timestamp.get()), (3, 0x5a, 429, ID, TS));
    let m: Login = msg(Status::Error, 429, ID, TS);
    assert_eq!(hex(m.header().as_bytes()), hex(&expected));
    assert_eq!(wire::header(&expected[..23]).map(|_| ()), Err(WireError::Truncated));
}

// ---------------------------------------------------------------- requests

#[test]
fn register_golden_bytes() {
    let mut m: Register = msg(Status::Request, 0, ID, TS);
    m.set_username("alice").unwrap();
    m.auth_secret = pat(0x20);
    m.pass_secret = pat(0x40);
    m.id_pub = pat(0x10);
    m.enc_pub = pat(0x80);
    m.enc_sig = pat(0xc0);
    m.uid.set(0x0123_4567_89ab_cdef);
    let expected = Bytes::header(CREA, 0, 0x5a, 0, ID, TS)
        .str("username", "alice", 32)
        .put("auth_secret", &pat::<32>(0x20))
        .put("pass_secret", &pat::<32>(0x40))
        .put("id_pub", &pat::<256>(0x10))
        .put("enc_pub", &pat::<32>(0x80))
        .put("enc_sig", &pat::<256>(0xc0))
        .u64("uid", 0x0123_4567_89ab_cdef)
        .reserved()
        .finish("Register");
    assert_eq!(expected.len(), 688);
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, ID, TS);
        assert_eq!(d.username(), Ok("alice"));
        assert_eq!((d.auth_secret, d.pass_secret), (pat(0x20), pat(0x40)));
        assert_eq!((d.id_pub, d.enc_pub, d.enc_sig), (pat(0x10), pat(0x80), pat(0xc0)));
        assert_eq!(d.uid.get(), 0x0123_4567_89ab_cdef);
    });
}

#[test]
fn login_golden_bytes() {
    let mut m: Login = msg(Status::Request, 0, ID, TS);
    m.set_username("bob_2").unwrap();
    m.auth_secret = pat(0x33);
    let expected = Bytes::header(AUTH, 0, 0x5a, 0, ID, TS)
        .str("username", "bob_2", 32)
        .put("auth_secret", &pat::<32>(0x33))
        .reserved()
        .finish("Login");
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, ID, TS);
        assert_eq!((d.username(), d.auth_secret), (Ok("bob_2"), pat(0x33)));
    });
}

#[test]
fn passphrase_golden_bytes() {
    let mut m: Passphrase = msg(Status::Request, 0, ID + 1, TS);
    m.pass_secret = pat(0x44);
    let expected = Bytes::header(PASS, 0, 0x5a, 0, ID + 1, TS)
        .put("pass_secret", &pat::<32>(0x44))
        .reserved()
        .finish("Passphrase");
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, ID + 1, TS);
        assert_eq!(d.pass_secret, pat(0x44));
    });
}

#[test]
fn room_requests_golden_bytes() {
    let mut c: CreateRoom = msg(Status::Request, 0, 11, TS);
    c.set_room("lobby").unwrap();
    c.salt = pat(0x10);
    c.verifier = pat(0x20);
    let expected = Bytes::header(CRMS, 0, 0x5a, 0, 11, TS)
        .str("room", "lobby", 32)
        .put("salt", &pat::<16>(0x10))
        .put("verifier", &pat::<32>(0x20))
        .reserved()
        .finish("CreateRoom");
    golden(&c, &expected, |d| {
        hdr(d, Status::Request, 0, 11, TS);
        assert_eq!((d.room(), d.salt, d.verifier), (Ok("lobby"), pat(0x10), pat(0x20)));
    });

    // A multi-byte UTF-8 name: the length byte counts bytes.
    let mut j: JoinRoom = msg(Status::Request, 0, 12, TS);
    j.set_room("café").unwrap();
    j.auth_key = pat(0x40);
    let expected = Bytes::header(JRMS, 0, 0x5a, 0, 12, TS)
        .str("room", "café", 32)
        .put("auth_key", &pat::<32>(0x40))
        .reserved()
        .finish("JoinRoom");
    assert_eq!(expected[24], 5, "length counts bytes, not characters");
    golden(&j, &expected, |d| {
        hdr(d, Status::Request, 0, 12, TS);
        assert_eq!((d.room(), d.auth_key), (Ok("café"), pat(0x40)));
    });
}

#[test]
fn room_name_requests_golden_bytes() {
    // Five messages with the same shape: a header and one `str[32]`.
    let mut g: RoomSaltRequest = msg(Status::Request, 0, 14, TS);
    g.set_room("lobby").unwrap();
    let expected =
        Bytes::header(GSLT, 0, 0x5a, 0, 14, TS).str("room", "lobby", 32).reserved().finish("RoomSaltRequest");
    golden(&g, &expected, |d| {
        hdr(d, Status::Request, 0, 14, TS);
        assert_eq!(d.room(), Ok("lobby"));
    });

    let mut l: LeaveRoom = msg(Status::Request, 0, 15, TS);
    l.set_room("ops_2").unwrap();
    let expected = Bytes::header(LVRM, 0, 0x5a, 0, 15, TS).str("room", "ops_2", 32).reserved().finish("LeaveRoom");
    golden(&l, &expected, |d| {
        hdr(d, Status::Request, 0, 15, TS);
        assert_eq!(d.room(), Ok("ops_2"));
    });

    // The filter is reserved and sent empty.
    let ls: ListRooms = msg(Status::Request, 0, 16, TS);
    let expected = Bytes::header(LSRM, 0, 0x5a, 0, 16, TS).str("filter", "", 32).reserved().finish("ListRooms");
    golden(&ls, &expected, |d| {
        hdr(d, Status::Request, 0, 16, TS);
        assert_eq!(d.filter(), Ok(""));
    });

    let mut w: WhoRoom = msg(Status::Request, 0, 17, TS);
    w.set_room("a").unwrap();
    let expected = Bytes::header(WHOR, 0, 0x5a, 0, 17, TS).str("room", "a", 32).reserved().finish("WhoRoom");
    golden(&w, &expected, |d| {
        hdr(d, Status::Request, 0, 17, TS);
        assert_eq!(d.room(), Ok("a"));
    });

    // A name of exactly the field's capacity.
    let full = "r".repeat(32);
    let mut del: DeleteRoom = msg(Status::Request, 0, 18, TS);
    del.set_room(&full).unwrap();
    let expected = Bytes::header(DLRM, 0, 0x5a, 0, 18, TS).str("room", &full, 32).reserved().finish("DeleteRoom");
    golden(&del, &expected, |d| {
        hdr(d, Status::Request, 0, 18, TS);
        assert_eq!(d.room(), Ok(full.as_str()));
    });
}

#[test]
fn direct_message_requests_golden_bytes() {
    // Three messages with the same shape: a header and the peer's name.
    let mut r: DmRequest = msg(Status::Request, 0, 21, TS);
    r.set_peer("carol").unwrap();
    let expected = Bytes::header(JMPU, 0, 0x5a, 0, 21, TS).str("peer", "carol", 32).reserved().finish("DmRequest");
    golden(&r, &expected, |d| {
        hdr(d, Status::Request, 0, 21, TS);
        assert_eq!(d.peer(), Ok("carol"));
    });

    let mut a: DmAccept = msg(Status::Request, 0, 22, TS);
    a.set_peer("dave.x").unwrap();
    let expected = Bytes::header(AMPU, 0, 0x5a, 0, 22, TS).str("peer", "dave.x", 32).reserved().finish("DmAccept");
    golden(&a, &expected, |d| {
        hdr(d, Status::Request, 0, 22, TS);
        assert_eq!(d.peer(), Ok("dave.x"));
    });

    // A name of exactly the field's capacity.
    let full = "e".repeat(32);
    let mut j: DmReject = msg(Status::Request, 0, 23, TS);
    j.set_peer(&full).unwrap();
    let expected = Bytes::header(RJMU, 0, 0x5a, 0, 23, TS).str("peer", &full, 32).reserved().finish("DmReject");
    golden(&j, &expected, |d| {
        hdr(d, Status::Request, 0, 23, TS);
        assert_eq!(d.peer(), Ok(full.as_str()));
    });
}

/// `n` distinctive bytes (a class's body): `seed, seed + 1, ..` (wrapping).
fn patv(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// The classes by hand: (struct suffix, body bytes, opcode offset).
const CLASSES: [(&str, usize, u32); 4] = [("S", 176, 0), ("M", 1040, 100), ("L", 4112, 200), ("X", 16400, 300)];

/// Checks `M` is the class of `suffix` and returns `(title, body, opcode)` for a family based at `base`.
fn class_of<M: Classed>(family: &str, base: u32, i: usize) -> (String, usize, u32) {
    let (suffix, body, offset) = CLASSES[i];
    assert_eq!(M::CLASS.body(), body, "{family}{suffix}");
    assert_eq!((M::OPCODE, M::MNEMONIC.chars().last()), (base + offset, suffix.to_lowercase().chars().next()));
    (format!("{family}{suffix}"), body, base + offset)
}

fn send_room_message_golden<M: Classed<Head = SendRoomMessageHead> + PartialEq>(i: usize) -> usize {
    let (title, body, opcode) = class_of::<M>("SendRoomMessage", 100_006, i);
    let mut s: M = msg(Status::Request, 0, 13, TS);
    let h = s.head_mut();
    h.set_room("ops-room").unwrap();
    h.iv = pat(0x60);
    h.tag = pat(0x80);
    h.signature = pat(0x90);
    s.body_mut().copy_from_slice(&patv(0x70, body));
    let expected = Bytes::header(opcode, 0, 0x5a, 0, 13, TS)
        .str("room", "ops-room", 32)
        .put("iv", &pat::<16>(0x60))
        .put("tag", &pat::<32>(0x80))
        .put("signature", &pat::<256>(0x90))
        .put("ciphertext", &patv(0x70, body))
        .reserved()
        .finish(&title);
    golden(&s, &expected, |d| {
        hdr(d, Status::Request, 0, 13, TS);
        let h = d.head();
        assert_eq!(h.room(), Ok("ops-room"));
        assert_eq!((h.iv, h.tag, h.signature), (pat(0x60), pat(0x80), pat::<256>(0x90)));
        assert_eq!(d.body(), &patv(0x70, body)[..]);
    });
    expected.len()
}

#[test]
fn send_room_message_golden_bytes_in_every_class() {
    let sizes = [
        send_room_message_golden::<SendRoomMessageS>(0),
        send_room_message_golden::<SendRoomMessageM>(1),
        send_room_message_golden::<SendRoomMessageL>(2),
        send_room_message_golden::<SendRoomMessageX>(3),
    ];
    assert_eq!(sizes, [544, 1408, 4480, 16768]);
}

fn send_dm_golden<M: Classed<Head = SendDmHead> + PartialEq>(i: usize) -> usize {
    let (title, body, opcode) = class_of::<M>("SendDm", 100_009, i);
    let mut m: M = msg(Status::Request, 0, 24, TS);
    let h = m.head_mut();
    h.peer_uid.set(0x1020_3040_5060_7080);
    h.prekey = 1;
    h.spk_id.set(0x0a0b_0c0d);
    h.opk_id.set(0x0e0f_1011);
    h.ek = pat(0x11);
    h.dh = pat(0x21);
    h.pn.set(0x0000_0102);
    h.n.set(0x0000_0304);
    h.tag = pat(0x51);
    m.body_mut().copy_from_slice(&patv(0x41, body));
    let expected = Bytes::header(opcode, 0, 0x5a, 0, 24, TS)
        .u64("peer_uid", 0x1020_3040_5060_7080)
        .put("prekey", &[1])
        .u32("spk_id", 0x0a0b_0c0d)
        .u32("opk_id", 0x0e0f_1011)
        .put("ek", &pat::<32>(0x11))
        .put("dh", &pat::<32>(0x21))
        .u32("pn", 0x102)
        .u32("n", 0x304)
        .put("tag", &pat::<32>(0x51))
        .put("ciphertext", &patv(0x41, body))
        .reserved()
        .finish(&title);
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, 24, TS);
        let h = d.head();
        assert_eq!(
            (h.peer_uid.get(), h.prekey, h.spk_id.get(), h.opk_id.get()),
            (0x1020_3040_5060_7080, 1, 0x0a0b_0c0d, 0x0e0f_1011)
        );
        assert_eq!((h.ek, h.dh, h.pn.get(), h.n.get(), h.tag), (pat(0x11), pat(0x21), 0x102, 0x304, pat(0x51)));
        assert_eq!(d.body(), &patv(0x41, body)[..]);
    });
    expected.len()
}

#[test]
fn send_dm_golden_bytes_in_every_class() {
    let sizes = [
        send_dm_golden::<SendDmS>(0),
        send_dm_golden::<SendDmM>(1),
        send_dm_golden::<SendDmL>(2),
        send_dm_golden::<SendDmX>(3),
    ];
    assert_eq!(sizes, [336, 1200, 4272, 16560]);
}

#[test]
fn prekey_requests_golden_bytes() {
    let mut u: PrekeyUpload = msg(Status::Request, 0, 27, TS);
    u.spk_id.set(0x0000_0007);
    u.spk_pub = pat(0x12);
    u.spk_sig = pat(0x22);
    u.opk_count = 2;
    let mut opks = vec![0u8; 3600];
    opks[..4].copy_from_slice(&1u32.to_be_bytes());
    opks[4..36].copy_from_slice(&pat::<32>(0x32));
    opks[36..40].copy_from_slice(&2u32.to_be_bytes());
    opks[40..72].copy_from_slice(&pat::<32>(0x42));
    u.opks.copy_from_slice(&opks);
    let expected = Bytes::header(100_019, 0, 0x5a, 0, 27, TS)
        .u32("spk_id", 7)
        .put("spk_pub", &pat::<32>(0x12))
        .put("spk_sig", &pat::<256>(0x22))
        .put("opk_count", &[2])
        .put("opks", &opks)
        .reserved()
        .finish("PrekeyUpload");
    assert_eq!(expected.len(), 3920);
    golden(&u, &expected, |d| {
        hdr(d, Status::Request, 0, 27, TS);
        assert_eq!((d.spk_id.get(), d.spk_pub, d.spk_sig, d.opk_count), (7, pat(0x12), pat::<256>(0x22), 2));
        assert_eq!(&d.opks[..], &opks[..]);
    });

    let mut f: PrekeyFetch = msg(Status::Request, 0, 28, TS);
    f.peer_uid.set(0x3132_3334_3536_3738);
    let expected = Bytes::header(100_020, 0, 0x5a, 0, 28, TS)
        .u64("peer_uid", 0x3132_3334_3536_3738)
        .reserved()
        .finish("PrekeyFetch");
    assert_eq!(expected.len(), 32);
    golden(&f, &expected, |d| {
        hdr(d, Status::Request, 0, 28, TS);
        assert_eq!(d.peer_uid.get(), 0x3132_3334_3536_3738);
    });
}

#[test]
fn mailbox_ack_golden_bytes() {
    let mut m: MailboxAck = msg(Status::Request, 0, 25, TS);
    m.seq.set(0x0000_0000_0001_0203);
    // 24 + 8 bytes is already two blocks: no reserved tail.
    let expected =
        Bytes::header(DACK, 0, 0x5a, 0, 25, TS).u64("seq", 0x0000_0000_0001_0203).reserved().finish("MailboxAck");
    assert_eq!(expected.len(), 32);
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, 25, TS);
        assert_eq!(d.seq.get(), 0x0001_0203);
    });
}

#[test]
fn heartbeat_golden_bytes() {
    let mut m: Heartbeat = msg(Status::Request, 0, 26, TS);
    m.reserved_id.set(0);
    // 24 + 8 bytes is already two blocks: no reserved tail.
    let expected = Bytes::header(PING, 0, 0x5a, 0, 26, TS).u64("reserved_id", 0).reserved().finish("Heartbeat");
    assert_eq!(expected.len(), 32);
    golden(&m, &expected, |d| hdr(d, Status::Request, 0, 26, TS));
    let mut r: HeartbeatReply = msg(Status::Ok, 200, 26, TS);
    r.server_time.set(0x0000_0191_0203_0405);
    let expected = Bytes::header(PONG, 1, 0x5a, 200, 26, TS)
        .u64("server_time", 0x0000_0191_0203_0405)
        .reserved()
        .finish("HeartbeatReply");
    golden(&r, &expected, |d| {
        hdr(d, Status::Ok, 200, 26, TS);
        assert_eq!(d.server_time.get(), 0x0000_0191_0203_0405);
    });
}

// ---------------------------------------------------------------- responses and events

#[test]
fn status_reply_golden_bytes() {
    let mut m: StatusReply = msg(Status::Error, 429, ID, TS);
    m.request_opcode.set(AUTH);
    m.retry_after_ms.set(0x0001_86a0);
    m.set_reason("too many attempts").unwrap();
    let expected = Bytes::header(200_000, 3, 0x5a, 429, ID, TS)
        .u32("request_opcode", 100_002)
        .u32("retry_after_ms", 100_000)
        .str("reason", "too many attempts", 64)
        .reserved()
        .finish("StatusReply");
    golden(&m, &expected, |d| {
        hdr(d, Status::Error, 429, ID, TS);
        assert_eq!((d.request_opcode.get(), d.retry_after_ms.get()), (AUTH, 100_000));
        assert_eq!(d.reason(), Ok("too many attempts"));
    });
}

#[test]
fn connected_golden_bytes() {
    let mut m: Connected = msg(Status::Ok, 200, ID, TS);
    m.uid.set(0x8877_6655_4433_2211);
    m.set_username("alice").unwrap();
    let expected = Bytes::header(CNNT, 1, 0x5a, 200, ID, TS)
        .u64("uid", 0x8877_6655_4433_2211)
        .str("username", "alice", 32)
        .reserved()
        .finish("Connected");
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, ID, TS);
        assert_eq!((d.uid.get(), d.username()), (0x8877_6655_4433_2211, Ok("alice")));
    });
}

#[test]
fn room_salt_golden_bytes() {
    let mut m: RoomSalt = msg(Status::Ok, 200, 14, TS);
    m.set_room("lobby").unwrap();
    m.salt = pat(0xe0);
    let expected = Bytes::header(RSLT, 1, 0x5a, 200, 14, TS)
        .str("room", "lobby", 32)
        .put("salt", &pat::<16>(0xe0))
        .reserved()
        .finish("RoomSalt");
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 14, TS);
        assert_eq!((d.room(), d.salt), (Ok("lobby"), pat(0xe0)));
    });
}

fn receive_room_message_golden<M: Classed<Head = ReceiveRoomMessageHead> + PartialEq>(i: usize) -> usize {
    let (title, body, opcode) = class_of::<M>("ReceiveRoomMessage", 10_003, i);
    // History after a join: the join's msg_id, history 1.
    let mut m: M = msg(Status::Ok, 200, 12, TS);
    let h = m.head_mut();
    h.set_room("lobby").unwrap();
    h.history = 1;
    h.sender_uid.set(0x0f0e_0d0c_0b0a_0908);
    h.server_time.set(TS + 1);
    h.sent_msg_id.set(0x0000_0000_0000_0d0d);
    h.sent_time.set(TS - 1);
    h.iv = pat(0x61);
    h.tag = pat(0x81);
    h.signature = pat(0x91);
    m.body_mut().copy_from_slice(&patv(0x71, body));
    let expected = Bytes::header(opcode, 1, 0x5a, 200, 12, TS)
        .str("room", "lobby", 32)
        .put("history", &[1])
        .u64("sender_uid", 0x0f0e_0d0c_0b0a_0908)
        .u64("server_time", TS + 1)
        .u64("sent_msg_id", 0xd0d)
        .u64("sent_time", TS - 1)
        .put("iv", &pat::<16>(0x61))
        .put("tag", &pat::<32>(0x81))
        .put("signature", &pat::<256>(0x91))
        .put("ciphertext", &patv(0x71, body))
        .reserved()
        .finish(&title);
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 12, TS);
        let h = d.head();
        assert_eq!((h.room(), h.history), (Ok("lobby"), 1));
        assert_eq!(
            (h.sender_uid.get(), h.server_time.get(), h.sent_msg_id.get(), h.sent_time.get()),
            (0x0f0e_0d0c_0b0a_0908, TS + 1, 0xd0d, TS - 1)
        );
        assert_eq!((h.iv, h.tag, h.signature), (pat(0x61), pat(0x81), pat::<256>(0x91)));
        assert_eq!(d.body(), &patv(0x71, body)[..]);
    });
    expected.len()
}

#[test]
fn receive_room_message_golden_bytes_in_every_class() {
    let sizes = [
        receive_room_message_golden::<ReceiveRoomMessageS>(0),
        receive_room_message_golden::<ReceiveRoomMessageM>(1),
        receive_room_message_golden::<ReceiveRoomMessageL>(2),
        receive_room_message_golden::<ReceiveRoomMessageX>(3),
    ];
    // The largest class is the largest message.
    assert_eq!(sizes, [576, 1440, 4512, MAX_MESSAGE]);
}

#[test]
fn room_member_golden_bytes() {
    // A joined event: unsolicited, msg_id 0.
    let mut m: RoomMember = msg(Status::Ok, 200, 0, TS);
    m.set_room("lobby").unwrap();
    m.kind = 1;
    m.online = 1;
    m.uid.set(0x1122_3344_5566_7788);
    m.set_name("bob_2").unwrap();
    m.id_pub = pat(0x12);
    m.enc_pub = pat(0x82);
    m.enc_sig = pat(0xc2);
    let expected = Bytes::header(MBRS, 1, 0x5a, 200, 0, TS)
        .str("room", "lobby", 32)
        .put("kind", &[1])
        .put("online", &[1])
        .u64("uid", 0x1122_3344_5566_7788)
        .str("name", "bob_2", 32)
        .put("id_pub", &pat::<256>(0x12))
        .put("enc_pub", &pat::<32>(0x82))
        .put("enc_sig", &pat::<256>(0xc2))
        .reserved()
        .finish("RoomMember");
    assert_eq!(expected.len(), 656);
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!((d.room(), d.name()), (Ok("lobby"), Ok("bob_2")));
        assert_eq!((d.kind, d.online, d.uid.get()), (1, 1, 0x1122_3344_5566_7788));
        assert_eq!((d.id_pub, d.enc_pub, d.enc_sig), (pat(0x12), pat(0x82), pat(0xc2)));
    });
}

#[test]
fn room_list_entry_golden_bytes() {
    let mut m: RoomListEntry = msg(Status::Ok, 200, 16, TS);
    m.set_room("ops-room").unwrap();
    m.members.set(0x0001_0203);
    let expected = Bytes::header(RMLS, 1, 0x5a, 200, 16, TS)
        .str("room", "ops-room", 32)
        .u32("members", 0x0001_0203)
        .reserved()
        .finish("RoomListEntry");
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 16, TS);
        assert_eq!((d.room(), d.members.get()), (Ok("ops-room"), 0x0001_0203));
    });
}

#[test]
fn room_deleted_golden_bytes() {
    let mut m: RoomDeleted = msg(Status::Ok, 200, 0, TS);
    m.set_room("lobby").unwrap();
    let expected = Bytes::header(RDEL, 1, 0x5a, 200, 0, TS).str("room", "lobby", 32).reserved().finish("RoomDeleted");
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!(d.room(), Ok("lobby"));
    });
}

fn receive_dm_golden<M: Classed<Head = ReceiveDmHead> + PartialEq>(i: usize) -> usize {
    let (title, body, opcode) = class_of::<M>("ReceiveDm", 10_002, i);
    let mut m: M = msg(Status::Ok, 200, 0, TS);
    let h = m.head_mut();
    h.seq.set(7);
    h.sender_uid.set(0xdead_beef_cafe_f00d);
    h.set_sender("carol").unwrap();
    h.server_time.set(TS + 2);
    h.dm_id.set(0x0102_0304_0506_0709);
    h.sent_time.set(TS - 2);
    h.prekey = 1;
    h.spk_id.set(0x0a0b_0c0d);
    h.opk_id.set(0);
    h.ek = pat(0x13);
    h.dh = pat(0x23);
    h.pn.set(5);
    h.n.set(6);
    h.tag = pat(0x53);
    m.body_mut().copy_from_slice(&patv(0x43, body));
    let expected = Bytes::header(opcode, 1, 0x5a, 200, 0, TS)
        .u64("seq", 7)
        .u64("sender_uid", 0xdead_beef_cafe_f00d)
        .str("sender", "carol", 32)
        .u64("server_time", TS + 2)
        .u64("dm_id", 0x0102_0304_0506_0709)
        .u64("sent_time", TS - 2)
        .put("prekey", &[1])
        .u32("spk_id", 0x0a0b_0c0d)
        .u32("opk_id", 0)
        .put("ek", &pat::<32>(0x13))
        .put("dh", &pat::<32>(0x23))
        .u32("pn", 5)
        .u32("n", 6)
        .put("tag", &pat::<32>(0x53))
        .put("ciphertext", &patv(0x43, body))
        .reserved()
        .finish(&title);
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        let h = d.head();
        assert_eq!((h.seq.get(), h.sender_uid.get(), h.sender()), (7, 0xdead_beef_cafe_f00d, Ok("carol")));
        assert_eq!((h.server_time.get(), h.dm_id.get(), h.sent_time.get()), (TS + 2, 0x0102_0304_0506_0709, TS - 2));
        assert_eq!((h.prekey, h.spk_id.get(), h.opk_id.get(), h.pn.get(), h.n.get()), (1, 0x0a0b_0c0d, 0, 5, 6));
        assert_eq!((h.ek, h.dh, h.tag), (pat(0x13), pat(0x23), pat(0x53)));
        assert_eq!(d.body(), &patv(0x43, body)[..]);
    });
    expected.len()
}

#[test]
fn receive_dm_golden_bytes_in_every_class() {
    let sizes = [
        receive_dm_golden::<ReceiveDmS>(0),
        receive_dm_golden::<ReceiveDmM>(1),
        receive_dm_golden::<ReceiveDmL>(2),
        receive_dm_golden::<ReceiveDmX>(3),
    ];
    assert_eq!(sizes, [400, 1264, 4336, 16624]);
}

#[test]
fn prekey_events_golden_bytes() {
    // The refill request: unsolicited, msg_id 0.
    let mut st: PrekeyState = msg(Status::Ok, 200, 0, TS);
    st.spk_id.set(3);
    st.spk_time.set(TS - 5);
    st.opk_left.set(19);
    st.opk_max.set(200);
    let expected = Bytes::header(10_012, 1, 0x5a, 200, 0, TS)
        .u32("spk_id", 3)
        .u64("spk_time", TS - 5)
        .u16("opk_left", 19)
        .u16("opk_max", 200)
        .reserved()
        .finish("PrekeyState");
    assert_eq!(expected.len(), 48);
    golden(&st, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!((d.spk_id.get(), d.spk_time.get(), d.opk_left.get(), d.opk_max.get()), (3, TS - 5, 19, 200));
    });

    let mut b: PrekeyBundle = msg(Status::Ok, 200, 28, TS);
    b.peer_uid.set(0x3132_3334_3536_3738);
    b.spk_id.set(3);
    b.spk_pub = pat(0x14);
    b.spk_sig = pat(0x24);
    b.opk_id.set(0x0000_0101);
    b.opk_pub = pat(0x34);
    let expected = Bytes::header(200_020, 1, 0x5a, 200, 28, TS)
        .u64("peer_uid", 0x3132_3334_3536_3738)
        .u32("spk_id", 3)
        .put("spk_pub", &pat::<32>(0x14))
        .put("spk_sig", &pat::<256>(0x24))
        .u32("opk_id", 0x101)
        .put("opk_pub", &pat::<32>(0x34))
        .reserved()
        .finish("PrekeyBundle");
    assert_eq!(expected.len(), 368);
    golden(&b, &expected, |d| {
        hdr(d, Status::Ok, 200, 28, TS);
        assert_eq!((d.peer_uid.get(), d.spk_id.get(), d.opk_id.get()), (0x3132_3334_3536_3738, 3, 0x101));
        assert_eq!((d.spk_pub, d.spk_sig, d.opk_pub), (pat(0x14), pat::<256>(0x24), pat(0x34)));
    });
}

#[test]
fn dm_requested_and_rejected_golden_bytes() {
    // Two mailbox events with the same shape: seq, a UID and its name.
    let mut q: DmRequested = msg(Status::Ok, 200, 0, TS);
    q.seq.set(8);
    q.from_uid.set(0x0a0b_0c0d_0e0f_1011);
    q.set_from("dave.x").unwrap();
    let expected = Bytes::header(DMRQ, 1, 0x5a, 200, 0, TS)
        .u64("seq", 8)
        .u64("from_uid", 0x0a0b_0c0d_0e0f_1011)
        .str("from", "dave.x", 32)
        .reserved()
        .finish("DmRequested");
    golden(&q, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!((d.seq.get(), d.from_uid.get(), d.from()), (8, 0x0a0b_0c0d_0e0f_1011, Ok("dave.x")));
    });

    let mut r: DmRejected = msg(Status::Ok, 200, 0, TS);
    r.seq.set(9);
    r.by_uid.set(0x1213_1415_1617_1819);
    r.set_by("erin").unwrap();
    let expected = Bytes::header(DMRJ, 1, 0x5a, 200, 0, TS)
        .u64("seq", 9)
        .u64("by_uid", 0x1213_1415_1617_1819)
        .str("by", "erin", 32)
        .reserved()
        .finish("DmRejected");
    golden(&r, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!((d.seq.get(), d.by_uid.get(), d.by()), (9, 0x1213_1415_1617_1819, Ok("erin")));
    });
}

#[test]
fn contact_golden_bytes() {
    // Listed at login: kind 2, seq 0.
    let mut m: Contact = msg(Status::Ok, 200, 0, TS);
    m.kind = 2;
    m.uid.set(0x2122_2324_2526_2728);
    m.set_name("frank").unwrap();
    m.id_pub = pat(0x14);
    m.enc_pub = pat(0x84);
    m.enc_sig = pat(0xc4);
    let expected = Bytes::header(CTCT, 1, 0x5a, 200, 0, TS)
        .u64("seq", 0)
        .put("kind", &[2])
        .u64("uid", 0x2122_2324_2526_2728)
        .str("name", "frank", 32)
        .put("id_pub", &pat::<256>(0x14))
        .put("enc_pub", &pat::<32>(0x84))
        .put("enc_sig", &pat::<256>(0xc4))
        .reserved()
        .finish("Contact");
    assert_eq!(expected.len(), 624);
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!((d.seq.get(), d.kind, d.uid.get(), d.name()), (0, 2, 0x2122_2324_2526_2728, Ok("frank")));
        assert_eq!((d.id_pub, d.enc_pub, d.enc_sig), (pat(0x14), pat(0x84), pat(0xc4)));
    });
}

#[test]
fn dm_status_golden_bytes() {
    // Delivered, answering the smpu (its msg_id).
    let mut m: DmStatus = msg(Status::Ok, 200, 24, TS);
    m.dm_id.set(24);
    m.peer_uid.set(0x1020_3040_5060_7080);
    m.set_peer("carol").unwrap();
    m.state = 2;
    let expected = Bytes::header(DMST, 1, 0x5a, 200, 24, TS)
        .u64("seq", 0)
        .u64("dm_id", 24)
        .u64("peer_uid", 0x1020_3040_5060_7080)
        .str("peer", "carol", 32)
        .put("state", &[2])
        .reserved()
        .finish("DmStatus");
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 24, TS);
        assert_eq!((d.seq.get(), d.dm_id.get(), d.peer_uid.get()), (0, 24, 0x1020_3040_5060_7080));
        assert_eq!((d.peer(), d.state), (Ok("carol"), 2));
    });
}

#[test]
fn file_requests_golden_bytes() {
    let mut o: FileOffer = msg(Status::Request, 0, 40, TS);
    o.file_id.set(ID);
    o.size.set(20 * 1024 * 1024 + 1);
    o.chunk_count.set(1281);
    o.target = 2;
    o.set_room("lobby").unwrap();
    let expected = Bytes::header(100_021, 0, 0x5a, 0, 40, TS)
        .u64("file_id", ID)
        .u64("size", 20 * 1024 * 1024 + 1)
        .u32("chunk_count", 1281)
        .put("target", &[2])
        .u64("peer_uid", 0)
        .str("room", "lobby", 32)
        .reserved()
        .finish("FileOffer");
    assert_eq!(expected.len(), 96);
    golden(&o, &expected, |d| {
        hdr(d, Status::Request, 0, 40, TS);
        assert_eq!((d.file_id.get(), d.size.get(), d.chunk_count.get()), (ID, 20 * 1024 * 1024 + 1, 1281));
        assert_eq!((d.target, d.peer_uid.get(), d.room()), (2, 0, Ok("lobby")));
    });

    let mut c: FileChunk = msg(Status::Request, 0, 41, TS);
    c.file_id.set(ID);
    c.index.set(0x0000_0500);
    c.iv = pat(0x16);
    c.tag = pat(0x32);
    c.data = pat(0x40);
    let expected = Bytes::header(100_022, 0, 0x5a, 0, 41, TS)
        .u64("file_id", ID)
        .u32("index", 0x500)
        .put("iv", &pat::<16>(0x16))
        .put("tag", &pat::<32>(0x32))
        .put("data", &pat::<16384>(0x40))
        .reserved()
        .finish("FileChunk");
    assert_eq!(expected.len(), 16_480, "the one frame past 16 KiB of payload");
    golden(&c, &expected, |d| {
        hdr(d, Status::Request, 0, 41, TS);
        assert_eq!((d.file_id.get(), d.index.get(), d.iv, d.tag), (ID, 0x500, pat(0x16), pat(0x32)));
        assert_eq!(d.data, pat::<16384>(0x40));
    });

    let mut g: FileGet = msg(Status::Request, 0, 42, TS);
    g.file_id.set(ID);
    g.from.set(17);
    let expected =
        Bytes::header(100_023, 0, 0x5a, 0, 42, TS).u64("file_id", ID).u32("from", 17).reserved().finish("FileGet");
    golden(&g, &expected, |d| assert_eq!((d.file_id.get(), d.from.get()), (ID, 17)));

    let mut n: FileDone = msg(Status::Request, 0, 43, TS);
    n.file_id.set(ID);
    n.state = 2;
    let expected =
        Bytes::header(100_024, 0, 0x5a, 0, 43, TS).u64("file_id", ID).put("state", &[2]).reserved().finish("FileDone");
    golden(&n, &expected, |d| assert_eq!((d.file_id.get(), d.state), (ID, 2)));

    let mut k: FileAck = msg(Status::Request, 0, 44, TS);
    k.file_id.set(ID);
    k.through.set(64);
    let expected =
        Bytes::header(100_025, 0, 0x5a, 0, 44, TS).u64("file_id", ID).u32("through", 64).reserved().finish("FileAck");
    golden(&k, &expected, |d| assert_eq!((d.file_id.get(), d.through.get()), (ID, 64)));
}

#[test]
fn file_responses_golden_bytes() {
    let mut i: FileInfo = msg(Status::Pending, 202, 42, TS);
    i.file_id.set(ID);
    i.size.set(40_000);
    i.chunk_count.set(3);
    i.stored.set(2);
    i.owner_uid.set(0x1020_3040_5060_7080);
    i.expires.set(TS + 1);
    let expected = Bytes::header(200_021, 2, 0x5a, 202, 42, TS)
        .u64("file_id", ID)
        .u64("size", 40_000)
        .u32("chunk_count", 3)
        .u32("stored", 2)
        .u64("owner_uid", 0x1020_3040_5060_7080)
        .u64("expires", TS + 1)
        .reserved()
        .finish("FileInfo");
    assert_eq!(expected.len(), 64);
    golden(&i, &expected, |d| {
        hdr(d, Status::Pending, 202, 42, TS);
        assert_eq!((d.size.get(), d.chunk_count.get(), d.stored.get()), (40_000, 3, 2));
        assert_eq!((d.owner_uid.get(), d.expires.get()), (0x1020_3040_5060_7080, TS + 1));
    });

    let mut c: FileChunkData = msg(Status::Pending, 202, 42, TS);
    c.file_id.set(ID);
    c.index.set(2);
    c.iv = pat(0x16);
    c.tag = pat(0x32);
    c.data = pat(0x40);
    let expected = Bytes::header(200_023, 2, 0x5a, 202, 42, TS)
        .u64("file_id", ID)
        .u32("index", 2)
        .put("iv", &pat::<16>(0x16))
        .put("tag", &pat::<32>(0x32))
        .put("data", &pat::<16384>(0x40))
        .reserved()
        .finish("FileChunkData");
    golden(&c, &expected, |d| {
        hdr(d, Status::Pending, 202, 42, TS);
        assert_eq!((d.index.get(), d.iv, d.tag, d.data), (2, pat(0x16), pat(0x32), pat::<16384>(0x40)));
    });
}

// ---------------------------------------------------------------- handshake and stored structs

#[test]
fn client_hello_golden_bytes() {
    let mut m = ClientHello::new_zeroed();
    m.magic = MAGIC;
    m.version = U16::new(0x0102);
    m.flags = U16::new(0x0304);
    m.table_hash = pat(0x20);
    m.build_id = pat(0x40);
    m.build_time = U64::new(0x0000_0000_6543_2100);
    m.eph_pub = pat(0x60);
    m.nonce = pat(0x80);
    m.mac = pat(0xa0);
    let expected = Bytes::new()
        .put("magic", b"SOTO")
        .u16("version", 0x0102)
        .u16("flags", 0x0304)
        .put("table_hash", &pat::<32>(0x20))
        .put("build_id", &pat::<16>(0x40))
        .u64("build_time", 0x6543_2100)
        .put("eph_pub", &pat::<32>(0x60))
        .put("nonce", &pat::<32>(0x80))
        .put("mac", &pat::<32>(0xa0))
        .finish("ClientHello");
    assert_eq!(expected.len(), sotto::handshake::CLIENT_HELLO_LEN);
    assert_eq!(hex(m.as_bytes()), hex(&expected));
    let d = ClientHello::ref_from_bytes(&expected).unwrap();
    assert!(*d == m);
    assert_eq!((&d.magic, d.version.get(), d.flags.get(), d.build_time.get()), (b"SOTO", 0x0102, 0x0304, 0x6543_2100));
    assert_eq!(
        (d.table_hash, d.build_id, d.eph_pub, d.nonce, d.mac),
        (pat(0x20), pat(0x40), pat(0x60), pat(0x80), pat(0xa0))
    );
    assert!(ClientHello::ref_from_bytes(&expected[1..]).is_err());
}

#[test]
fn resume_hellos_golden_bytes() {
    let mut m = ResumeHello::new_zeroed();
    m.magic = *b"SOTR";
    m.version = U16::new(3);
    m.table_hash = pat(0x21);
    m.build_id = pat(0x41);
    m.build_time = U64::new(0x0102_0304_0506_0708);
    m.eph_pub = pat(0x61);
    m.nonce = pat(0x81);
    m.ticket = pat(0x11);
    m.binder = pat(0xa1);
    m.mac = pat(0xc1);
    let expected = Bytes::new()
        .put("magic", b"SOTR")
        .u16("version", 3)
        .u16("flags", 0)
        .put("table_hash", &pat::<32>(0x21))
        .put("build_id", &pat::<16>(0x41))
        .u64("build_time", 0x0102_0304_0506_0708)
        .put("eph_pub", &pat::<32>(0x61))
        .put("nonce", &pat::<32>(0x81))
        .put("ticket", &pat::<136>(0x11))
        .put("binder", &pat::<32>(0xa1))
        .put("mac", &pat::<32>(0xc1))
        .finish("ResumeHello");
    assert_eq!(expected.len(), sotto::ticket::RESUME_HELLO_LEN);
    assert_eq!(hex(m.as_bytes()), hex(&expected));
    assert!(*ResumeHello::ref_from_bytes(&expected).unwrap() == m);

    let mut a = ServerResume::new_zeroed();
    a.magic = *b"SOTR";
    a.version = U16::new(3);
    a.status = U16::new(2);
    a.table_hash = pat(0x21);
    a.build_id = pat(0x41);
    a.build_time = U64::new(0x0102_0304_0506_0708);
    a.eph_pub = pat(0x61);
    a.nonce = pat(0x81);
    a.mac = pat(0xc1);
    let expected = Bytes::new()
        .put("magic", b"SOTR")
        .u16("version", 3)
        .u16("status", 2)
        .put("table_hash", &pat::<32>(0x21))
        .put("build_id", &pat::<16>(0x41))
        .u64("build_time", 0x0102_0304_0506_0708)
        .put("eph_pub", &pat::<32>(0x61))
        .put("nonce", &pat::<32>(0x81))
        .put("mac", &pat::<32>(0xc1))
        .finish("ServerResume");
    assert_eq!(expected.len(), sotto::ticket::SERVER_RESUME_LEN);
    assert_eq!(hex(a.as_bytes()), hex(&expected));
    assert!(*ServerResume::ref_from_bytes(&expected).unwrap() == a);

    let mut t = ResumptionTicket::new(Status::Ok, 200, 0, 0x1122_3344_5566_7788);
    t.ticket_id = pat(0x31);
    t.expires.set(0x0000_0190_0000_0001);
    t.ticket = pat(0x51);
    let expected = Bytes::header(10055, 1, 0, 200, 0, 0x1122_3344_5566_7788)
        .put("ticket_id", &pat::<16>(0x31))
        .u64("expires", 0x0000_0190_0000_0001)
        .put("ticket", &pat::<136>(0x51))
        .put("reserved", &[0u8; 8])
        .finish("ResumptionTicket");
    assert_eq!(hex(t.as_bytes()), hex(&expected));
}

#[test]
fn server_hello_golden_bytes() {
    let mut m = ServerHello::new_zeroed();
    m.magic = MAGIC;
    m.version = U16::new(0x0102);
    m.status = U16::new(1);
    m.table_hash = pat(0x21);
    m.build_id = pat(0x41);
    m.build_time = U64::new(0x0102_0304_0506_0708);
    m.eph_pub = pat(0x61);
    m.nonce = pat(0x81);
    m.signature = pat(0x01);
    let expected = Bytes::new()
        .put("magic", b"SOTO")
        .u16("version", 0x0102)
        .u16("status", 1)
        .put("table_hash", &pat::<32>(0x21))
        .put("build_id", &pat::<16>(0x41))
        .u64("build_time", 0x0102_0304_0506_0708)
        .put("eph_pub", &pat::<32>(0x61))
        .put("nonce", &pat::<32>(0x81))
        .put("signature", &pat::<256>(0x01))
        .finish("ServerHello");
    assert_eq!(expected.len(), sotto::handshake::SERVER_HELLO_LEN);
    assert_eq!(hex(m.as_bytes()), hex(&expected));
    let d = ServerHello::ref_from_bytes(&expected).unwrap();
    assert!(*d == m);
    assert_eq!(
        (&d.magic, d.version.get(), d.status.get(), d.build_time.get()),
        (b"SOTO", 0x0102, 1, 0x0102_0304_0506_0708)
    );
    assert_eq!((d.table_hash, d.build_id, d.eph_pub, d.nonce), (pat(0x21), pat(0x41), pat(0x61), pat(0x81)));
    assert_eq!(d.signature, pat::<256>(0x01));
}

#[test]
fn user_record_golden_bytes() {
    let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
    let mut m = UserRecord::new_zeroed();
    m.magic = *b"SOTU";
    m.version = U16::new(1);
    m.flags = U16::new(0x0a0b);
    m.uid = U64::new(0x1122_3344_5566_7788);
    m.created = U64::new(0x0000_0192_0000_0001);
    m.set_username("alice").unwrap();
    m.set_password_hash(phc).unwrap();
    m.set_passphrase_hash("$argon2id$other").unwrap();
    m.id_pub = pat(0x30);
    m.enc_pub = pat(0x50);
    m.enc_sig = pat(0x70);
    m.checksum = pat(0x90);
    let expected = Bytes::new()
        .put("magic", b"SOTU")
        .u16("version", 1)
        .u16("flags", 0x0a0b)
        .u64("uid", 0x1122_3344_5566_7788)
        .u64("created", 0x0000_0192_0000_0001)
        .str("username", "alice", 32)
        .str("password_hash", phc, 128)
        .str("passphrase_hash", "$argon2id$other", 128)
        .put("id_pub", &pat::<256>(0x30))
        .put("enc_pub", &pat::<32>(0x50))
        .put("enc_sig", &pat::<256>(0x70))
        .put("checksum", &pat::<32>(0x90))
        .finish("UserRecord");
    assert_eq!(hex(m.as_bytes()), hex(&expected));
    let d = UserRecord::read_from_bytes(&expected).unwrap();
    assert!(d == m);
    assert_eq!((d.uid.get(), d.created.get(), d.flags.get()), (0x1122_3344_5566_7788, 0x0000_0192_0000_0001, 0x0a0b));
    assert_eq!((d.username(), d.password_hash(), d.passphrase_hash()), (Ok("alice"), Ok(phc), Ok("$argon2id$other")));
    assert_eq!((d.id_pub, d.enc_pub, d.enc_sig, d.checksum), (pat(0x30), pat(0x50), pat(0x70), pat(0x90)));
}

#[test]
fn room_record_golden_bytes() {
    let mut m = RoomRecord::new_zeroed();
    m.magic = *b"SOTR";
    m.version = U16::new(1);
    m.flags = U16::new(0x0c0d);
    m.set_name("lobby").unwrap();
    m.salt = pat(0x15);
    m.verifier = pat(0x25);
    m.owner = U64::new(0x1122_3344_5566_7788);
    m.created = U64::new(0x0000_0192_0000_0002);
    m.member_count = U32::new(3);
    m.history_count = U32::new(20);
    let expected = Bytes::new()
        .put("magic", b"SOTR")
        .u16("version", 1)
        .u16("flags", 0x0c0d)
        .str("name", "lobby", 32)
        .put("salt", &pat::<16>(0x15))
        .put("verifier", &pat::<32>(0x25))
        .u64("owner", 0x1122_3344_5566_7788)
        .u64("created", 0x0000_0192_0000_0002)
        .u32("member_count", 3)
        .u32("history_count", 20)
        .finish("RoomRecord");
    // A file head, not a message: no padding to whole blocks.
    assert_eq!(expected.len(), 113);
    assert_eq!(hex(m.as_bytes()), hex(&expected));
    let d = RoomRecord::read_from_bytes(&expected).unwrap();
    assert!(d == m);
    assert_eq!((&d.magic, d.version.get(), d.flags.get(), d.name()), (b"SOTR", 1, 0x0c0d, Ok("lobby")));
    assert_eq!((d.salt, d.verifier), (pat(0x15), pat(0x25)));
    assert_eq!(
        (d.owner.get(), d.created.get(), d.member_count.get(), d.history_count.get()),
        (0x1122_3344_5566_7788, 0x0000_0192_0000_0002, 3, 20)
    );
    assert!(RoomRecord::ref_from_bytes(&expected[1..]).is_err());
}

#[test]
fn room_entry_golden_bytes() {
    let mut m = RoomEntry::new_zeroed();
    m.sender_uid = U64::new(0x0f0e_0d0c_0b0a_0908);
    m.server_time = U64::new(TS + 1);
    m.sent_msg_id = U64::new(0xd0d);
    m.sent_time = U64::new(TS - 1);
    m.class = b'l';
    m.iv = pat(0x61);
    m.tag = pat(0x81);
    m.signature = pat(0x91);
    let expected = Bytes::new()
        .u64("sender_uid", 0x0f0e_0d0c_0b0a_0908)
        .u64("server_time", TS + 1)
        .u64("sent_msg_id", 0xd0d)
        .u64("sent_time", TS - 1)
        .put("class", b"l")
        .put("iv", &pat::<16>(0x61))
        .put("tag", &pat::<32>(0x81))
        .put("signature", &pat::<256>(0x91))
        .finish("RoomEntry");
    // A file entry's head, not a message: its class's body follows it, unpadded.
    assert_eq!(expected.len(), 337);
    assert_eq!(hex(m.as_bytes()), hex(&expected));
    let d = RoomEntry::read_from_bytes(&expected).unwrap();
    assert!(d == m);
    assert_eq!(
        (d.sender_uid.get(), d.server_time.get(), d.sent_msg_id.get(), d.sent_time.get()),
        (0x0f0e_0d0c_0b0a_0908, TS + 1, 0xd0d, TS - 1)
    );
    assert_eq!((Class::from_letter(d.class), d.iv, d.tag), (Some(Class::L), pat(0x61), pat(0x81)));
    assert_eq!(d.signature, pat::<256>(0x91));
    // Kept as received: the rvrl replaying it carries the same bytes from
    // sender_uid on, but for the class (its opcode says it) and with the body after.
    let mut rvrl: ReceiveRoomMessageL = msg(Status::Ok, 200, 12, TS);
    let h = rvrl.head_mut();
    h.sender_uid = d.sender_uid;
    h.server_time = d.server_time;
    h.sent_msg_id = d.sent_msg_id;
    h.sent_time = d.sent_time;
    h.iv = d.iv;
    h.tag = d.tag;
    h.signature = d.signature;
    let b = rvrl.as_bytes();
    assert_eq!(hex(&b[58..90]), hex(&expected[..32]));
    assert_eq!(hex(&b[90..90 + 304]), hex(&expected[33..]));
}

// ---------------------------------------------------------------- decoder errors

/// Calls `$f::<T>()` for every generated message struct.
macro_rules! for_each_message {
    ($f:ident) => {{
        vec![
            $f::<Register>(),
            $f::<Login>(),
            $f::<Passphrase>(),
            $f::<CreateRoom>(),
            $f::<JoinRoom>(),
            $f::<SendRoomMessageS>(),
            $f::<SendRoomMessageM>(),
            $f::<SendRoomMessageL>(),
            $f::<SendRoomMessageX>(),
            $f::<DmRequest>(),
            $f::<DmAccept>(),
            $f::<SendDmS>(),
            $f::<SendDmM>(),
            $f::<SendDmL>(),
            $f::<SendDmX>(),
            $f::<RoomSaltRequest>(),
            $f::<LeaveRoom>(),
            $f::<ListRooms>(),
            $f::<WhoRoom>(),
            $f::<WhoOnline>(),
            $f::<OnlineUser>(),
            $f::<DeleteRoom>(),
            $f::<DmReject>(),
            $f::<MailboxAck>(),
            $f::<Heartbeat>(),
            $f::<PrekeyUpload>(),
            $f::<PrekeyFetch>(),
            $f::<PrekeyState>(),
            $f::<PrekeyBundle>(),
            $f::<StatusReply>(),
            $f::<HeartbeatReply>(),
            $f::<RoomSalt>(),
            $f::<Connected>(),
            $f::<ReceiveDmS>(),
            $f::<ReceiveDmM>(),
            $f::<ReceiveDmL>(),
            $f::<ReceiveDmX>(),
            $f::<ReceiveRoomMessageS>(),
            $f::<ReceiveRoomMessageM>(),
            $f::<ReceiveRoomMessageL>(),
            $f::<ReceiveRoomMessageX>(),
            $f::<RoomMember>(),
            $f::<RoomListEntry>(),
            $f::<RoomDeleted>(),
            $f::<DmRequested>(),
            $f::<Contact>(),
            $f::<DmRejected>(),
            $f::<DmStatus>(),
            $f::<FileOffer>(),
            $f::<FileChunk>(),
            $f::<FileGet>(),
            $f::<FileDone>(),
            $f::<FileAck>(),
            $f::<FileInfo>(),
            $f::<FileChunkData>(),
            $f::<KickUser>(),
            $f::<Announce>(),
            $f::<LoginRecord>(),
            $f::<LoginRefused>(),
            $f::<Kicked>(),
            $f::<Announcement>(),
            $f::<AdminUsers>(),
            $f::<AdminShow>(),
            $f::<AdminSetState>(),
            $f::<AdminKick>(),
            $f::<AdminAnnounce>(),
            $f::<AdminRole>(),
            $f::<AdminDeny>(),
            $f::<AdminStats>(),
            $f::<AdminDelete>(),
            $f::<AdminReply>(),
            $f::<AdminUserEntry>(),
            $f::<AdminUserInfo>(),
            $f::<AdminRefusals>(),
            $f::<AdminStatsReply>(),
            $f::<RoomKick>(),
            $f::<RoomUnban>(),
            $f::<RoomOwner>(),
            $f::<RoomRekey>(),
            $f::<RoomRemoveMessage>(),
            $f::<DmUnsend>(),
            $f::<DeleteAccount>(),
            $f::<ListUsers>(),
            $f::<RoomKicked>(),
            $f::<RoomRekeyed>(),
            $f::<RoomOwnerChanged>(),
            $f::<RoomTombstone>(),
            $f::<UserEntry>(),
            $f::<ResumptionTicket>(),
            $f::<LogoutEverywhere>(),
            $f::<ChangeSecrets>(),
        ]
    }};
}

/// Truncated, over-long, empty and wrong-opcode input; returns the opcode.
fn rejects_malformed<T: Message>() -> u32 {
    let good = T::request(7, 8);
    let b = good.as_bytes();
    let err = |bytes: &[u8]| wire::decode::<T>(bytes).map(|_| ()).err();
    assert_eq!(err(b), None, "{}", T::MNEMONIC);
    assert_eq!(err(&b[..b.len() - 1]), Some(WireError::Truncated), "{} one byte short", T::MNEMONIC);
    assert_eq!(err(&[]), Some(WireError::Truncated), "{} empty", T::MNEMONIC);
    let mut long = b.to_vec();
    long.push(0);
    assert_eq!(err(&long), Some(WireError::WrongSize), "{} one byte long", T::MNEMONIC);
    for other in [0, T::OPCODE ^ 1, T::OPCODE.swap_bytes(), if T::OPCODE == CREA { AUTH } else { CREA }] {
        let mut wrong = b.to_vec();
        wrong[..4].copy_from_slice(&other.to_be_bytes());
        assert_eq!(err(&wrong), Some(WireError::WrongOpcode), "{} as opcode {other}", T::MNEMONIC);
    }
    T::OPCODE
}

#[test]
fn decode_rejects_wrong_size_and_wrong_opcode_for_every_message() {
    let mut seen = for_each_message!(rejects_malformed);
    seen.sort_unstable();
    let table: Vec<u32> = OPCODES.iter().map(|i| i.opcode).collect();
    assert_eq!(seen, table, "every OPCODES row needs a struct in for_each_message!");
}

#[test]
fn rejects_string_length_beyond_its_array() {
    let mut m: Login = Login::request(1, 2);
    m.set_username("bob").unwrap();
    let mut bytes = m.as_bytes().to_vec();
    for len in [33u8, 34, 128, 255] {
        bytes[24] = len;
        let d = wire::decode::<Login>(&bytes).expect("sizes are checked at decode, strings on access");
        assert_eq!(d.username(), Err(WireError::BadString), "length {len}");
        assert_eq!(d.auth_secret, [0; 32], "the other field is unaffected");
    }
    bytes[24] = 32;
    assert!(wire::decode::<Login>(&bytes).unwrap().username().is_ok(), "a full-length string is fine");
}

#[test]
fn rejects_non_utf8_string() {
    let mut m: Connected = Connected::new(Status::Ok, 200, 1, 2);
    m.set_username("abc").unwrap();
    let mut bytes = m.as_bytes().to_vec();
    // username_len at 32, its bytes from 33.
    for bad in [&[0xff_u8][..], &[0xc3], &[0xe2, 0x82], &[0xed, 0xa0, 0x80]] {
        bytes[32] = bad.len() as u8;
        bytes[33..33 + bad.len()].copy_from_slice(bad);
        let d = wire::decode::<Connected>(&bytes).unwrap();
        assert_eq!(d.username(), Err(WireError::BadString), "{bad:02x?}");
    }
}

#[test]
fn set_rejects_too_long_value_and_leaves_the_field_alone() {
    let mut m: Register = Register::request(1, 2);
    m.set_username("alice").unwrap();
    let before = m;
    assert_eq!(m.set_username(&"a".repeat(33)), Err(WireError::TooLong));
    assert_eq!(m.set_username(&"é".repeat(17)), Err(WireError::TooLong), "34 bytes in a 32-byte field");
    assert!(m == before);
    assert_eq!(m.set_username(&"é".repeat(16)), Ok(()), "exactly 32 bytes");
    let mut s: StatusReply = StatusReply::new(Status::Error, 400, 1, 2);
    assert_eq!(s.set_reason(&"r".repeat(65)), Err(WireError::TooLong));
    // Shortening zero-fills what the longer value left behind.
    m.set_username("a-much-longer-name").unwrap();
    m.set_username("bo").unwrap();
    assert_eq!(m.username_len, 2);
    assert!(m.username[2..].iter().all(|&b| b == 0));
}

// ---------------------------------------------------------------- the audit table

#[test]
fn opcode_table_rows_are_sorted_block_sized_and_well_formed() {
    assert!(OPCODES.windows(2).all(|w| w[0].opcode < w[1].opcode), "sorted, no duplicates");
    for i in OPCODES.iter() {
        assert_eq!(i.size % 16, 0, "{}: {} bytes is not whole AES blocks", i.mnemonic, i.size);
        assert!(i.size <= MAX_MESSAGE, "{}", i.mnemonic);
        assert!(i.mnemonic.len() == 4 && i.mnemonic.bytes().all(|b| b.is_ascii_lowercase()), "{}", i.mnemonic);
        match i.direction {
            Direction::Request => {
                assert!(i.state.is_some() && i.handler.is_some(), "{}: a request needs state and handler", i.mnemonic)
            }
            Direction::Response | Direction::Event | Direction::AdminResponse => {
                assert!(i.state.is_none() && i.handler.is_none(), "{}: only requests have state/handler", i.mnemonic)
            }
            Direction::AdminRequest => {
                assert!(i.state.is_none() && i.handler.is_some_and(|h| h.starts_with("admin::")), "{}", i.mnemonic);
                assert!((300_000..=300_099).contains(&i.opcode), "{}: admin opcodes are 300000-300099", i.mnemonic)
            }
        }
        assert_eq!(opcodes::info(i.opcode).map(|r| r.mnemonic), Some(i.mnemonic));
    }
    assert!(opcodes::info(0).is_none() && opcodes::info(100_000).is_none());
}

#[test]
fn original_mnemonics_and_opcodes_are_kept() {
    // Protocol 2 kept every protocol 1 opcode; the classed families kept
    // theirs as their class-s members (smpu, rvum, rvrm became smps, rvus, rvrs).
    let original = [
        ("crea", 100_001, CREA, Direction::Request),
        ("auth", 100_002, AUTH, Direction::Request),
        ("pass", 100_003, PASS, Direction::Request),
        ("crms", 100_004, CRMS, Direction::Request),
        ("jrms", 100_005, JRMS, Direction::Request),
        ("srms", 100_006, SRMS, Direction::Request),
        ("jmpu", 100_007, JMPU, Direction::Request),
        ("ampu", 100_008, AMPU, Direction::Request),
        ("smps", 100_009, SMPS, Direction::Request),
        ("cnnt", 10_001, CNNT, Direction::Event),
        ("rvus", 10_002, RVUS, Direction::Event),
        ("rvrs", 10_003, RVRS, Direction::Event),
    ];
    for (mnemonic, opcode, constant, direction) in original {
        assert_eq!(constant, opcode, "{mnemonic} constant");
        let row = opcodes::info(opcode).unwrap_or_else(|| panic!("{mnemonic} {opcode} missing"));
        assert_eq!((row.mnemonic, row.direction), (mnemonic, direction), "{opcode}");
    }
}

#[test]
fn classed_families_have_one_member_per_class_at_their_offsets() {
    // (stem, base opcode, direction, head bytes after the header), by hand from opcodes.toml.
    let families = [
        ("srm", 100_006, Direction::Request, 337),
        ("smp", 100_009, Direction::Request, 121),
        ("rvu", 10_002, Direction::Event, 186),
        ("rvr", 10_003, Direction::Event, 370),
    ];
    for (stem, base, direction, head) in families {
        for (i, (suffix, body, offset)) in CLASSES.iter().enumerate() {
            let letter = suffix.to_lowercase();
            let row = opcodes::info(base + offset).unwrap_or_else(|| panic!("{stem}{letter} missing"));
            assert_eq!((row.mnemonic, row.direction), (format!("{stem}{letter}").as_str(), direction));
            assert_eq!(row.size, (24 + head + body).div_ceil(16) * 16, "{}", row.mnemonic);
            assert!(row.struct_name.ends_with(suffix), "{}", row.struct_name);
            assert_eq!(Class::ALL[i].opcode_offset(), *offset);
            assert_eq!(Class::from_letter(letter.as_bytes()[0]), Some(Class::ALL[i]));
            assert_eq!(Class::ALL[i].letter().to_string(), letter);
        }
    }
    assert_eq!(Class::fitting(0), Some(Class::S));
    assert_eq!(Class::fitting(177), Some(Class::M));
    assert_eq!(Class::fitting(16_400), Some(Class::X));
    assert_eq!(Class::fitting(16_401), None);
}
