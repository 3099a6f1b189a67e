//! Golden bytes, both ways, for every generated struct (smoltcp's
//! `test_construct` / `test_deconstruct`), the decoder's errors, and the
//! audit table's invariants.
//!
//! The expected bytes are built by hand, field by field in big-endian, and
//! the offsets the builder used are checked against the layout tables of
//! docs/OPCODES.md, so neither side is derived from the generated code.

use sotto::crypto::hex;
use sotto::opcodes::{self, *};
use sotto::wire::{self, Direction, Message, Status, WireError};
use zerocopy::byteorder::big_endian::{U16, U64};
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
    m.set_password("correct horse battery staple").unwrap();
    m.set_passphrase("alpha bravo charlie").unwrap();
    m.id_pub = pat(0x10);
    m.enc_pub = pat(0x80);
    m.enc_sig = pat(0xc0);
    let expected = Bytes::header(CREA, 0, 0x5a, 0, ID, TS)
        .str("username", "alice", 32)
        .str("password", "correct horse battery staple", 128)
        .str("passphrase", "alpha bravo charlie", 96)
        .put("id_pub", &pat::<256>(0x10))
        .put("enc_pub", &pat::<32>(0x80))
        .put("enc_sig", &pat::<256>(0xc0))
        .reserved()
        .finish("Register");
    assert_eq!(expected.len(), 832);
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, ID, TS);
        assert_eq!(d.username(), Ok("alice"));
        assert_eq!(d.password(), Ok("correct horse battery staple"));
        assert_eq!(d.passphrase(), Ok("alpha bravo charlie"));
        assert_eq!((d.id_pub, d.enc_pub, d.enc_sig), (pat(0x10), pat(0x80), pat(0xc0)));
    });
}

#[test]
fn login_golden_bytes() {
    let mut m: Login = msg(Status::Request, 0, ID, TS);
    m.set_username("bob_2").unwrap();
    m.set_password("hunter2hunter2").unwrap();
    let expected = Bytes::header(AUTH, 0, 0x5a, 0, ID, TS)
        .str("username", "bob_2", 32)
        .str("password", "hunter2hunter2", 128)
        .reserved()
        .finish("Login");
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, ID, TS);
        assert_eq!((d.username(), d.password()), (Ok("bob_2"), Ok("hunter2hunter2")));
    });
}

#[test]
fn passphrase_golden_bytes() {
    let mut m: Passphrase = msg(Status::Request, 0, ID + 1, TS);
    m.set_passphrase("one two three").unwrap();
    let expected = Bytes::header(PASS, 0, 0x5a, 0, ID + 1, TS)
        .str("passphrase", "one two three", 96)
        .reserved()
        .finish("Passphrase");
    golden(&m, &expected, |d| {
        hdr(d, Status::Request, 0, ID + 1, TS);
        assert_eq!(d.passphrase(), Ok("one two three"));
    });
}

#[test]
fn room_requests_golden_bytes() {
    // Three messages with the same shape; a multi-byte UTF-8 name in one.
    let mut c: CreateRoom = msg(Status::Request, 0, 11, TS);
    c.set_room("lobby").unwrap();
    let expected = Bytes::header(CRMS, 0, 0x5a, 0, 11, TS).str("room", "lobby", 32).reserved().finish("CreateRoom");
    golden(&c, &expected, |d| {
        hdr(d, Status::Request, 0, 11, TS);
        assert_eq!(d.room(), Ok("lobby"));
    });

    let mut j: JoinRoom = msg(Status::Request, 0, 12, TS);
    j.set_room("café").unwrap();
    let expected = Bytes::header(JRMS, 0, 0x5a, 0, 12, TS).str("room", "café", 32).reserved().finish("JoinRoom");
    assert_eq!(expected[24], 5, "length counts bytes, not characters");
    golden(&j, &expected, |d| {
        hdr(d, Status::Request, 0, 12, TS);
        assert_eq!(d.room(), Ok("café"));
    });

    let mut s: SendRoomMessage = msg(Status::Request, 0, 13, TS);
    s.set_room("ops-room").unwrap();
    let expected =
        Bytes::header(SRMS, 0, 0x5a, 0, 13, TS).str("room", "ops-room", 32).reserved().finish("SendRoomMessage");
    golden(&s, &expected, |d| {
        hdr(d, Status::Request, 0, 13, TS);
        assert_eq!(d.room(), Ok("ops-room"));
    });
}

#[test]
fn direct_message_requests_golden_bytes() {
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
    let mut s: SendDm = msg(Status::Request, 0, 23, TS);
    s.set_peer(&full).unwrap();
    let expected = Bytes::header(SMPU, 0, 0x5a, 0, 23, TS).str("peer", &full, 32).reserved().finish("SendDm");
    golden(&s, &expected, |d| {
        hdr(d, Status::Request, 0, 23, TS);
        assert_eq!(d.peer(), Ok(full.as_str()));
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
fn receive_dm_golden_bytes() {
    let mut m: ReceiveDm = msg(Status::Ok, 200, 0, TS);
    m.from_uid.set(0xdead_beef_cafe_f00d);
    // 24 + 8 bytes is already two blocks: no reserved tail.
    let expected =
        Bytes::header(RVUM, 1, 0x5a, 200, 0, TS).u64("from_uid", 0xdead_beef_cafe_f00d).reserved().finish("ReceiveDm");
    assert_eq!(expected.len(), 32);
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!(d.from_uid.get(), 0xdead_beef_cafe_f00d);
    });
}

#[test]
fn receive_room_message_golden_bytes() {
    let mut m: ReceiveRoomMessage = msg(Status::Ok, 200, 0, TS);
    m.from_uid.set(0x0f0e_0d0c_0b0a_0908);
    m.set_room("lobby").unwrap();
    let expected = Bytes::header(RVRM, 1, 0x5a, 200, 0, TS)
        .u64("from_uid", 0x0f0e_0d0c_0b0a_0908)
        .str("room", "lobby", 32)
        .reserved()
        .finish("ReceiveRoomMessage");
    golden(&m, &expected, |d| {
        hdr(d, Status::Ok, 200, 0, TS);
        assert_eq!((d.from_uid.get(), d.room()), (0x0f0e_0d0c_0b0a_0908, Ok("lobby")));
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
            $f::<SendRoomMessage>(),
            $f::<DmRequest>(),
            $f::<DmAccept>(),
            $f::<SendDm>(),
            $f::<StatusReply>(),
            $f::<Connected>(),
            $f::<ReceiveDm>(),
            $f::<ReceiveRoomMessage>(),
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
        assert_eq!(d.password(), Ok(""), "the other field is unaffected");
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
    assert_eq!(m.set_password(&"p".repeat(129)), Err(WireError::TooLong));
    assert_eq!(m.set_passphrase(&"é".repeat(49)), Err(WireError::TooLong), "98 bytes in a 96-byte field");
    assert!(m == before);
    assert_eq!(m.set_passphrase(&"é".repeat(48)), Ok(()), "exactly 96 bytes");
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
            Direction::Response | Direction::Event => {
                assert!(i.state.is_none() && i.handler.is_none(), "{}: only requests have state/handler", i.mnemonic)
            }
        }
        assert_eq!(opcodes::info(i.opcode).map(|r| r.mnemonic), Some(i.mnemonic));
    }
    assert!(opcodes::info(0).is_none() && opcodes::info(100_000).is_none());
}

#[test]
fn original_mnemonics_and_opcodes_are_kept() {
    let original = [
        ("crea", 100_001, CREA, Direction::Request),
        ("auth", 100_002, AUTH, Direction::Request),
        ("pass", 100_003, PASS, Direction::Request),
        ("crms", 100_004, CRMS, Direction::Request),
        ("jrms", 100_005, JRMS, Direction::Request),
        ("srms", 100_006, SRMS, Direction::Request),
        ("jmpu", 100_007, JMPU, Direction::Request),
        ("ampu", 100_008, AMPU, Direction::Request),
        ("smpu", 100_009, SMPU, Direction::Request),
        ("cnnt", 10_001, CNNT, Direction::Event),
        ("rvum", 10_002, RVUM, Direction::Event),
        ("rvrm", 10_003, RVRM, Direction::Event),
    ];
    for (mnemonic, opcode, constant, direction) in original {
        assert_eq!(constant, opcode, "{mnemonic} constant");
        let row = opcodes::info(opcode).unwrap_or_else(|| panic!("{mnemonic} {opcode} missing"));
        assert_eq!((row.mnemonic, row.direction), (mnemonic, direction), "{opcode}");
    }
}
