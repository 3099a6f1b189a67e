//! Property tests on every decoder (DESIGN §10): any bytes in, an error or a
//! value out, never a panic; what decodes re-encodes to the same bytes.
//!
//! Inputs mix fully random bytes with near-valid ones (the exact size, the
//! right opcode or magic), so that the checks past the first one run too.

use proptest::collection::vec;
use proptest::prelude::*;
use sotto::crypto::AeadKeys;
use sotto::frame::{self, Deframer, FrameError};
use sotto::handshake::{self, BuildIdentity, ClientConfig, HelloVerdict, ServerConfig};
use sotto::opcodes::*;
use sotto::record::Opener;
use sotto::wire::{self, Message, WireError};
use zerocopy::{FromBytes, IntoBytes};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// Random bytes, or `size` bytes (give or take one), mostly starting with `prefix`.
fn near(size: usize, prefix: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..5000),
        (vec(any::<u8>(), size + 1), 0..3usize, prop::bool::weighted(0.9)).prop_map(move |(mut v, trim, fix)| {
            v.truncate(size + 1 - trim);
            if fix {
                let n = prefix.len().min(v.len());
                v[..n].copy_from_slice(&prefix[..n]);
            }
            v
        }),
    ]
}

/// Decodes `bytes` as `T`; checks the error is the right one or the value
/// re-encodes to the input, and calls every string accessor.
fn decodes<T: Message>(bytes: &[u8], strs: impl Fn(&T) -> Vec<Result<usize, WireError>>) -> Result<(), TestCaseError> {
    let size = core::mem::size_of::<T>();
    match wire::decode::<T>(bytes) {
        Ok(m) => {
            prop_assert_eq!(m.as_bytes(), bytes, "encode(decode(x)) == x");
            prop_assert_eq!(m.header().opcode.get(), T::OPCODE);
            for len in strs(m).into_iter().flatten() {
                prop_assert!(len <= size);
            }
        }
        Err(e) => {
            let expected = match bytes.len() {
                n if n < size => WireError::Truncated,
                n if n > size => WireError::WrongSize,
                _ => WireError::WrongOpcode,
            };
            prop_assert_eq!(e, expected);
        }
    }
    Ok(())
}

/// One property test per message struct, listing its string fields.
macro_rules! decoder_props {
    ($($name:ident: $t:ty => |$m:ident| [$($s:expr),*];)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name(bytes in near(core::mem::size_of::<$t>(), <$t>::OPCODE.to_be_bytes().to_vec())) {
                    decodes::<$t>(&bytes, |$m: &$t| vec![$($s.map(str::len)),*])?;
                }
            )*
        }
    };
}

decoder_props! {
    decode_register: Register => |m| [m.username()];
    decode_login: Login => |m| [m.username()];
    decode_passphrase: Passphrase => |_m| [];
    decode_create_room: CreateRoom => |m| [m.room()];
    decode_join_room: JoinRoom => |m| [m.room()];
    decode_send_room_message_s: SendRoomMessageS => |m| [m.head.room()];
    decode_send_room_message_m: SendRoomMessageM => |m| [m.head.room()];
    decode_send_room_message_l: SendRoomMessageL => |m| [m.head.room()];
    decode_send_room_message_x: SendRoomMessageX => |m| [m.head.room()];
    decode_dm_request: DmRequest => |m| [m.peer()];
    decode_dm_accept: DmAccept => |m| [m.peer()];
    decode_send_dm_s: SendDmS => |_m| [];
    decode_send_dm_m: SendDmM => |_m| [];
    decode_send_dm_l: SendDmL => |_m| [];
    decode_send_dm_x: SendDmX => |_m| [];
    decode_room_salt_request: RoomSaltRequest => |m| [m.room()];
    decode_leave_room: LeaveRoom => |m| [m.room()];
    decode_list_rooms: ListRooms => |m| [m.filter()];
    decode_who_room: WhoRoom => |m| [m.room()];
    decode_who_online: WhoOnline => |m| [m.filter()];
    decode_online_user: OnlineUser => |m| [m.name()];
    decode_delete_room: DeleteRoom => |m| [m.room()];
    decode_dm_reject: DmReject => |m| [m.peer()];
    decode_mailbox_ack: MailboxAck => |_m| [];
    decode_heartbeat: Heartbeat => |_m| [];
    decode_heartbeat_reply: HeartbeatReply => |_m| [];
    decode_status_reply: StatusReply => |m| [m.reason()];
    decode_room_salt: RoomSalt => |m| [m.room()];
    decode_connected: Connected => |m| [m.username()];
    decode_receive_dm_s: ReceiveDmS => |m| [m.head.sender()];
    decode_receive_dm_m: ReceiveDmM => |m| [m.head.sender()];
    decode_receive_dm_l: ReceiveDmL => |m| [m.head.sender()];
    decode_receive_dm_x: ReceiveDmX => |m| [m.head.sender()];
    decode_receive_room_message_s: ReceiveRoomMessageS => |m| [m.head.room()];
    decode_receive_room_message_m: ReceiveRoomMessageM => |m| [m.head.room()];
    decode_receive_room_message_l: ReceiveRoomMessageL => |m| [m.head.room()];
    decode_receive_room_message_x: ReceiveRoomMessageX => |m| [m.head.room()];
    decode_room_member: RoomMember => |m| [m.room(), m.name()];
    decode_room_list_entry: RoomListEntry => |m| [m.room()];
    decode_room_deleted: RoomDeleted => |m| [m.room()];
    decode_dm_requested: DmRequested => |m| [m.from()];
    decode_contact: Contact => |m| [m.name()];
    decode_dm_rejected: DmRejected => |m| [m.by()];
    decode_dm_status: DmStatus => |m| [m.peer()];
    decode_prekey_upload: PrekeyUpload => |_m| [];
    decode_prekey_fetch: PrekeyFetch => |_m| [];
    decode_prekey_state: PrekeyState => |_m| [];
    decode_prekey_bundle: PrekeyBundle => |_m| [];
}

/// Reference deframing of a whole stream: bodies, the error, bytes left over.
fn deframe_reference(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
    let (mut at, mut bodies) = (0, Vec::new());
    while let Some(h) = stream.get(at..at + 4) {
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if len == 0 {
            return (bodies, Some(FrameError::Empty), 0);
        }
        if len as usize > max {
            return (bodies, Some(FrameError::TooLarge(len)), 0);
        }
        let Some(b) = stream.get(at + 4..at + 4 + len as usize) else { break };
        bodies.push(b.to_vec());
        at += 4 + len as usize;
    }
    (bodies, None, stream.len() - at)
}

/// A stream of mostly well-formed frames with some junk between them.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        4 => vec(any::<u8>(), 1..300).prop_map(|b| {
            let mut f = Vec::new();
            frame::encode(&b, &mut f);
            f
        }),
        1 => vec(any::<u8>(), 0..8),
    ];
    prop_oneof![vec(any::<u8>(), 0..5000), vec(segment, 0..20).prop_map(|s| s.concat())]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decode_user_record_and_hellos(bytes in near(core::mem::size_of::<UserRecord>(), b"SOTU".to_vec())) {
        if let Ok(r) = UserRecord::ref_from_bytes(&bytes) {
            prop_assert_eq!(r.as_bytes(), &bytes[..]);
            let _ = (r.username(), r.password_hash(), r.passphrase_hash());
        }
        prop_assert_eq!(ClientHello::ref_from_bytes(&bytes).is_ok(), bytes.len() == handshake::CLIENT_HELLO_LEN);
        prop_assert_eq!(ServerHello::ref_from_bytes(&bytes).is_ok(), bytes.len() == handshake::SERVER_HELLO_LEN);
    }

    #[test]
    fn decode_room_record(bytes in near(core::mem::size_of::<RoomRecord>(), b"SOTR".to_vec())) {
        match RoomRecord::ref_from_bytes(&bytes) {
            Ok(r) => {
                prop_assert_eq!(r.as_bytes(), &bytes[..]);
                if let Ok(name) = r.name() {
                    prop_assert!(name.len() <= 32);
                }
            }
            Err(_) => prop_assert_ne!(bytes.len(), core::mem::size_of::<RoomRecord>()),
        }
    }

    #[test]
    fn decode_room_entry(bytes in near(core::mem::size_of::<RoomEntry>(), Vec::new())) {
        match RoomEntry::ref_from_bytes(&bytes) {
            Ok(e) => prop_assert_eq!(e.as_bytes(), &bytes[..]),
            Err(_) => prop_assert_ne!(bytes.len(), core::mem::size_of::<RoomEntry>()),
        }
    }

    #[test]
    fn header_reads_any_prefix(bytes in vec(any::<u8>(), 0..5000)) {
        match wire::header(&bytes) {
            Ok(h) => {
                prop_assert!(bytes.len() >= 24);
                prop_assert_eq!(h.opcode.get(), u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                prop_assert_eq!(h.as_bytes(), &bytes[..24]);
            }
            Err(e) => {
                prop_assert!(bytes.len() < 24);
                prop_assert_eq!(e, WireError::Truncated);
            }
        }
    }

    #[test]
    fn deframer_in_any_chunks_matches_reference(
        stream in stream(),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
        max in 1usize..5000,
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        let mut d = Deframer::new(max);
        let (mut bodies, mut error) = (Vec::new(), None);
        'feed: for w in at.windows(2) {
            d.push(&stream[w[0]..w[1]]);
            loop {
                match d.pop() {
                    Ok(Some(b)) => {
                        prop_assert!(!b.is_empty() && b.len() <= max, "body of {} bytes, max {}", b.len(), max);
                        bodies.push(b);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break 'feed;
                    }
                }
            }
        }
        let (want, want_err, left) = deframe_reference(&stream, max);
        prop_assert_eq!(bodies, want);
        prop_assert_eq!(error, want_err);
        if error.is_none() {
            prop_assert_eq!(d.buffered(), left);
        }
    }

    #[test]
    fn opener_refuses_random_records(
        material in vec(any::<u8>(), 48),
        body in prop_oneof![
            vec(any::<u8>(), 0..5000),
            (1usize..64).prop_flat_map(|blocks| vec(any::<u8>(), 16 + 16 * blocks + 32)),
        ],
    ) {
        let material: [u8; 48] = material.try_into().map_err(|_| TestCaseError::fail("48 bytes"))?;
        let mut opener = Opener::new(AeadKeys::from_material(&material));
        prop_assert!(opener.open(&body).is_err());
    }

    #[test]
    fn aead_open_refuses_random_bytes(
        material in vec(any::<u8>(), 48),
        aad in vec(any::<u8>(), 0..64),
        sealed in prop_oneof![
            vec(any::<u8>(), 0..5000),
            (2usize..64).prop_flat_map(|blocks| vec(any::<u8>(), 16 * blocks + 32)),
        ],
    ) {
        let material: [u8; 48] = material.try_into().map_err(|_| TestCaseError::fail("48 bytes"))?;
        prop_assert!(AeadKeys::from_material(&material).open(&aad, &sealed).is_err());
    }

    #[test]
    fn server_never_accepts_random_client_hello(
        deployment_key in any::<[u8; 32]>(),
        bytes in near(handshake::CLIENT_HELLO_LEN, [&MAGIC[..], &PROTOCOL_VERSION.to_be_bytes(), &[0, 0], &TABLE_HASH].concat()),
    ) {
        let cfg = ServerConfig { build: BuildIdentity::this_build(), deployment_key };
        prop_assert_eq!(handshake::check_client_hello(&cfg, &bytes), HelloVerdict::Drop);
    }

    #[test]
    fn client_refuses_random_server_hello(
        bytes in near(handshake::SERVER_HELLO_LEN, [&MAGIC[..], &PROTOCOL_VERSION.to_be_bytes(), &[0, 0], &TABLE_HASH].concat()),
    ) {
        // NOTE(unwrap): the embedded key is generated by build.rs and always parses.
        let cfg = ClientConfig::built_in().unwrap();
        let (state, _) = handshake::client_hello(&cfg);
        let result = state.handle_server_hello(&cfg, &bytes).map(|_| ());
        prop_assert!(result.is_err());
        if bytes.len() == handshake::SERVER_HELLO_LEN && bytes[..40] == [&MAGIC[..], &PROTOCOL_VERSION.to_be_bytes(), &[0, 0], &TABLE_HASH].concat()[..] {
            prop_assert_eq!(result, Err(handshake::HandshakeError::Unverified));
        }
    }
}
