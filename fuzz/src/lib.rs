//! Fuzzing fixtures: fixed keys and configurations, the decoder table and the
//! `dispatch` target's model, shared by the targets in `fuzz_targets/` and the
//! seed generator in `examples/`.
//!
//! Invariant: nothing here depends on the build's own keys, build id or build
//! time, so a committed seed means the same thing to every build.

pub mod dispatch;
pub mod ratchet;

use std::sync::LazyLock;

use sotto::crypto::AeadKeys;
use sotto::handshake::{self, AwaitServerHello, BuildIdentity, ClientConfig, ServerConfig};
use sotto::identity::Signer;
use sotto::opcodes::*;
use sotto::wire::{self, Message, Status, WireError};
use zerocopy::{FromBytes, FromZeros, IntoBytes, KnownLayout};

/// Record-layer key material of the `record` target.
pub const RECORD_MATERIAL: [u8; 48] = *b"sotto fuzz record keys: 16 AES + 32 HMAC bytes!!";
/// Deployment key of the `handshake` target.
pub const DEPLOYMENT_KEY: [u8; 32] = *b"sotto fuzz deployment key 32 by.";
/// The client's ephemeral secret and nonce, and the server's.
pub const CLIENT_SECRET: [u8; 32] = [0x11; 32];
/// The client's nonce.
pub const CLIENT_NONCE: [u8; 32] = [0x22; 32];
/// The server's ephemeral secret.
pub const SERVER_SECRET: [u8; 32] = [0x33; 32];
/// The server's nonce.
pub const SERVER_NONCE: [u8; 32] = [0x44; 32];
/// RSA-2048 server key of the fuzz targets only (PKCS#8 PEM): no binary trusts it.
pub const SERVER_KEY: &str = include_str!("../fixtures/server_rsa.pem");

/// Record keys of the `record` target.
pub fn record_keys() -> AeadKeys {
    AeadKeys::from_material(&RECORD_MATERIAL)
}

/// The build both ends of the `handshake` target present: this table, a fixed id and time.
pub fn build() -> BuildIdentity {
    BuildIdentity { version: PROTOCOL_VERSION, table_hash: TABLE_HASH, build_id: [0xb1; 16], build_time: 1_700_000_000 }
}

/// The server's configuration.
pub static SERVER: LazyLock<ServerConfig> =
    LazyLock::new(|| ServerConfig { build: build(), deployment_key: DEPLOYMENT_KEY });

/// The server's signer.
// NOTE(unwrap): a committed fixture; a broken one must stop the fuzzer at once.
pub static SIGNER: LazyLock<Signer> = LazyLock::new(|| Signer::from_pkcs8_pem(SERVER_KEY).unwrap());

/// The client's configuration: trusts only the fixture key.
pub static CLIENT: LazyLock<ClientConfig> = LazyLock::new(|| ClientConfig {
    build: build(),
    deployment_key: DEPLOYMENT_KEY,
    server_keys: vec![SIGNER.public().clone()],
});

/// A client that sent the fixed ClientHello; returns its state and the hello's body.
pub fn client() -> (AwaitServerHello, Vec<u8>) {
    let (state, frame) = handshake::client_hello_with(&CLIENT, &CLIENT_SECRET, &CLIENT_NONCE);
    (state, frame[4..].to_vec())
}

/// The one ServerHello body the fixture server signs: its answer to [`client`]'s hello.
// NOTE(unwrap): the fixed hello and the fixed key are valid; see the seed generator.
pub static SIGNED_SERVER_HELLO: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let (frame, _) =
        handshake::server_hello_with(&SERVER, &SIGNER, &client().1, &SERVER_SECRET, &SERVER_NONCE).unwrap();
    frame[4..].to_vec()
});

/// One entry of the decoder table: a name, a check, and a valid sample for the seeds.
pub struct Decoder {
    /// The struct's name.
    pub name: &'static str,
    /// Its opcode, for message structs.
    pub opcode: Option<u32>,
    /// Decodes the bytes and asserts what must hold of the result.
    pub check: fn(&[u8]),
    /// A valid encoding (strings set, other fields zero).
    pub sample: fn() -> Vec<u8>,
    /// Whether the bytes decode as this struct and every string in it reads.
    pub reads: fn(&[u8]) -> bool,
}

/// Decodes `bytes` as the message `T`: on success it re-encodes to `bytes`, carries
/// `T::OPCODE`, matches its audit row and its strings fit; on failure the error is the right one.
pub fn check_message<T: Message>(bytes: &[u8], strs: fn(&T) -> Vec<Result<&str, WireError>>) {
    let size = size_of::<T>();
    match wire::decode::<T>(bytes) {
        Ok(m) => {
            assert_eq!(m.as_bytes(), bytes, "encode(decode(x)) == x");
            assert_eq!(m.header().opcode.get(), T::OPCODE);
            assert_eq!(info(T::OPCODE).map(|i| i.size), Some(size), "audit row size");
            strs(m).into_iter().flatten().for_each(|s| assert!(s.len() < size));
        }
        Err(e) => {
            let want = match bytes.len() {
                n if n < size => WireError::Truncated,
                n if n > size => WireError::WrongSize,
                _ => WireError::WrongOpcode,
            };
            assert_eq!(e, want, "{} bytes as {}", bytes.len(), T::MNEMONIC);
        }
    }
}

/// Views `bytes` as the stored or handshake struct `T`: exactly its size, re-encoding to `bytes`.
pub fn check_struct<T: FromBytes + IntoBytes + KnownLayout + zerocopy::Immutable>(
    bytes: &[u8],
    strs: fn(&T) -> Vec<Result<&str, WireError>>,
) {
    match T::ref_from_bytes(bytes) {
        Ok(r) => {
            assert_eq!(r.as_bytes(), bytes, "encode(decode(x)) == x");
            strs(r).into_iter().flatten().for_each(|s| assert!(s.len() < bytes.len()));
        }
        Err(_) => assert_ne!(bytes.len(), size_of::<T>()),
    }
}

/// A message with a response header and the given strings set.
fn sample_message<T: Message>(set: fn(&mut T) -> Result<(), WireError>) -> Vec<u8> {
    let mut m = T::new(Status::Ok, wire::code::OK, 7, 1_700_000_000_000);
    // NOTE(unwrap): the sample strings are short ASCII and fit every field.
    set(&mut m).unwrap();
    m.as_bytes().to_vec()
}

/// A zeroed struct with `magic` and the given strings set.
fn sample_struct<T: FromZeros + IntoBytes + zerocopy::Immutable>(
    magic: &[u8],
    set: fn(&mut T) -> Result<(), WireError>,
) -> Vec<u8> {
    let mut r = T::new_zeroed();
    // NOTE(unwrap): as above.
    set(&mut r).unwrap();
    let mut bytes = r.as_bytes().to_vec();
    bytes[..magic.len()].copy_from_slice(magic);
    bytes
}

/// Table rows for message structs: `Type => [getter setter "sample", ...]`;
/// a classed message's strings are in its head (`head.room head.set_room ..`).
macro_rules! messages {
    ($($t:ident => [$($($get:ident).+ $($set:ident).+ $val:literal),*];)*) => {
        [$(Decoder {
            name: stringify!($t),
            opcode: Some(<$t as Message>::OPCODE),
            check: |b| check_message::<$t>(b, |_m| vec![$(_m.$($get).+()),*]),
            sample: || sample_message::<$t>(|_m| { $(_m.$($set).+($val)?;)* Ok(()) }),
            reads: |b| wire::decode::<$t>(b).is_ok_and(|_m| { let oks: &[bool] = &[$(_m.$($get).+().is_ok()),*]; oks.iter().all(|ok| *ok) }),
        }),*]
    };
}

/// Table rows for stored and handshake structs: `Type magic => [getter setter "sample", ...]`.
macro_rules! structs {
    ($($t:ident $magic:literal => [$($get:ident $set:ident $val:literal),*];)*) => {
        [$(Decoder {
            name: stringify!($t),
            opcode: None,
            check: |b| check_struct::<$t>(b, |_r| vec![$(_r.$get()),*]),
            sample: || sample_struct::<$t>($magic, |_r| { $(_r.$set($val)?;)* Ok(()) }),
            reads: |b| <$t>::ref_from_bytes(b).is_ok_and(|_r| { let oks: &[bool] = &[$(_r.$get().is_ok()),*]; oks.iter().all(|ok| *ok) }),
        }),*]
    };
}

/// Every message struct in opcode order (as `OPCODES`; the `decode` target checks it),
/// the admin socket's messages (300000-300099) included.
pub static MESSAGES: [Decoder; 88] = messages! {
    Connected => [username set_username "alice"];
    ReceiveDmS => [head.sender head.set_sender "bob"];
    ReceiveRoomMessageS => [head.room head.set_room "lobby"];
    RoomMember => [room set_room "lobby", name set_name "carol"];
    RoomListEntry => [room set_room "lobby"];
    RoomDeleted => [room set_room "lobby"];
    DmRequested => [from set_from "dave"];
    Contact => [name set_name "erin"];
    DmRejected => [by set_by "frank"];
    DmStatus => [peer set_peer "grace"];
    OnlineUser => [name set_name "bob"];
    PrekeyState => [];
    LoginRecord => [];
    LoginRefused => [reason set_reason "banned: spam"];
    Kicked => [by set_by "admin", reason set_reason "flooding"];
    Announcement => [from set_from "admin", text set_text "maintenance at 22:00 UTC"];
    RoomKicked => [room set_room "lobby", by set_by "alice", reason set_reason "off topic"];
    RoomRekeyed => [room set_room "lobby", by set_by "alice"];
    RoomOwnerChanged => [room set_room "lobby", owner set_owner "carol"];
    RoomTombstone => [room set_room "lobby"];
    UserEntry => [name set_name "dave"];
    ReceiveDmM => [head.sender head.set_sender "bob"];
    ReceiveRoomMessageM => [head.room head.set_room "lobby"];
    ReceiveDmL => [head.sender head.set_sender "bob"];
    ReceiveRoomMessageL => [head.room head.set_room "lobby"];
    ReceiveDmX => [head.sender head.set_sender "bob"];
    ReceiveRoomMessageX => [head.room head.set_room "lobby"];
    Register => [username set_username "alice"];
    Login => [username set_username "alice"];
    Passphrase => [];
    CreateRoom => [room set_room "lobby"];
    JoinRoom => [room set_room "lobby"];
    SendRoomMessageS => [head.room head.set_room "lobby"];
    DmRequest => [peer set_peer "bob"];
    DmAccept => [peer set_peer "bob"];
    SendDmS => [];
    RoomSaltRequest => [room set_room "lobby"];
    LeaveRoom => [room set_room "lobby"];
    ListRooms => [filter set_filter "lo"];
    WhoRoom => [room set_room "lobby"];
    DeleteRoom => [room set_room "lobby"];
    DmReject => [peer set_peer "bob"];
    MailboxAck => [];
    Heartbeat => [];
    WhoOnline => [filter set_filter ""];
    PrekeyUpload => [];
    PrekeyFetch => [];
    FileOffer => [room set_room "lobby"];
    FileChunk => [];
    FileGet => [];
    FileDone => [];
    FileAck => [];
    KickUser => [user set_user "mallory", reason set_reason "flooding"];
    Announce => [text set_text "maintenance at 22:00 UTC"];
    RoomKick => [room set_room "lobby", user set_user "mallory", reason set_reason "off topic"];
    RoomUnban => [room set_room "lobby", user set_user "mallory"];
    RoomOwner => [room set_room "lobby", user set_user "carol"];
    RoomRekey => [room set_room "lobby"];
    RoomRemoveMessage => [room set_room "lobby"];
    DmUnsend => [];
    DeleteAccount => [];
    ListUsers => [filter set_filter "a"];
    SendRoomMessageM => [head.room head.set_room "lobby"];
    SendDmM => [];
    SendRoomMessageL => [head.room head.set_room "lobby"];
    SendDmL => [];
    SendRoomMessageX => [head.room head.set_room "lobby"];
    SendDmX => [];
    StatusReply => [reason set_reason "forbidden: not a member"];
    RoomSalt => [room set_room "lobby"];
    HeartbeatReply => [];
    PrekeyBundle => [];
    FileInfo => [];
    FileChunkData => [];
    AdminUsers => [];
    AdminShow => [user set_user "alice"];
    AdminSetState => [user set_user "mallory", reason set_reason "spam"];
    AdminKick => [user set_user "mallory", reason set_reason "flooding"];
    AdminAnnounce => [text set_text "maintenance at 22:00 UTC"];
    AdminRole => [user set_user "carol"];
    AdminDeny => [user set_user "mallory"];
    AdminStats => [];
    AdminDelete => [user set_user "mallory"];
    AdminReply => [reason set_reason "no such user"];
    AdminUserEntry => [name set_name "alice"];
    AdminUserInfo => [name set_name "mallory", reason set_reason "spam"];
    AdminRefusals => [reason set_reason "wrong password"];
    AdminStatsReply => [];
};

/// The stored records, the structs carried inside other bytes (a login entry of
/// an account record, `lgrc` or `ainf`; a file manifest inside an end-to-end
/// message body) and the handshake messages.
pub static STRUCTS: [Decoder; 8] = structs! {
    UserRecord b"SOTU" => [username set_username "alice", password_hash set_password_hash "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", passphrase_hash set_passphrase_hash "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"];
    RoomRecord b"SOTR" => [name set_name "lobby"];
    RoomEntry b"" => [];
    AcctRecord b"SOTA" => [reason set_reason "spam"];
    LoginEntry b"" => [];
    FileManifest b"" => [name set_name "notes.txt"];
    ClientHello b"SOTO" => [];
    ServerHello b"SOTO" => [];
};

/// The decoder named `name`.
pub fn named(name: &str) -> Option<&'static Decoder> {
    MESSAGES.iter().chain(STRUCTS.iter()).find(|d| d.name == name)
}

/// The decoder the `decode` target's first byte selects: messages, then the other structs.
pub fn decoder(selector: u8) -> &'static Decoder {
    let i = usize::from(selector) % (MESSAGES.len() + STRUCTS.len());
    // The modulus keeps `i - MESSAGES.len()` inside STRUCTS.
    MESSAGES.get(i).unwrap_or_else(|| &STRUCTS[i - MESSAGES.len()])
}
