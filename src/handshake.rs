//! Handshake (DESIGN §4): ClientHello -> ServerHello -> per-direction record keys.
//!
//! Sans-I/O: functions take the received frame body and return the bytes to
//! send. Invariant: a client only obtains keys after the server's RSA-PSS
//! signature over both hellos verified against a key compiled into it, and
//! the server spends no RSA work on a ClientHello whose deployment MAC fails.

use rsa::RsaPublicKey;
use x25519_dalek::{PublicKey, StaticSecret};
use zerocopy::byteorder::big_endian::{U16, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroizing;

use crate::build_info;
use crate::crypto::{self, AeadKeys};
use crate::identity::{self, KeyError, Signer, RSA_BYTES};
use crate::opcodes::{ClientHello, ServerHello, MAGIC, PROTOCOL_VERSION, TABLE_HASH};
use crate::record::{Opener, Sealer};
use crate::ticket::ResumptionMaster;

/// Size of a ClientHello body.
pub const CLIENT_HELLO_LEN: usize = core::mem::size_of::<ClientHello>();
/// Size of a ServerHello body.
pub const SERVER_HELLO_LEN: usize = core::mem::size_of::<ServerHello>();
/// Domain label of the server's handshake signature.
pub const SIGN_LABEL: &[u8] = b"sotto/v1 server hello\0";
/// Domain label of the session key derivation.
pub const KEY_LABEL: &[u8] = b"sotto/v1 session keys\0";
/// ServerHello status: keys follow.
pub const STATUS_OK: u16 = 0;
/// ServerHello status: version or opcode table differ.
pub const STATUS_MISMATCH: u16 = 1;

/// What a build says about itself in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildIdentity {
    /// Protocol version.
    pub version: u16,
    /// Opcode table hash.
    pub table_hash: [u8; 32],
    /// Build id.
    pub build_id: [u8; 16],
    /// Build time, Unix seconds.
    pub build_time: u64,
}

impl BuildIdentity {
    /// This binary's identity.
    pub fn this_build() -> BuildIdentity {
        BuildIdentity {
            version: PROTOCOL_VERSION,
            table_hash: TABLE_HASH,
            build_id: build_info::BUILD_ID,
            build_time: build_info::BUILD_TIME,
        }
    }
}

/// Which side of a mismatch is older.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Older {
    /// This client.
    Client,
    /// The server.
    Server,
    /// Same version and build time: cannot tell.
    Unknown,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Wrong size or magic.
    Malformed,
    /// The other side runs another protocol version or opcode table.
    Mismatch {
        /// Which side is older.
        older: Older,
        /// The server's protocol version.
        server_version: u16,
        /// The server's build time.
        server_build_time: u64,
    },
    /// The server's signature did not verify against any trusted key.
    Unverified,
    /// A ServerHello claiming a protocol mismatch whose signature did not
    /// verify: nothing in it is believed (a man in the middle could forge one).
    UnverifiedMismatch,
    /// The peer's ephemeral key is of low order.
    BadKey,
    /// The server could not sign.
    Sign(KeyError),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Malformed => f.write_str("malformed handshake message"),
            HandshakeError::Mismatch { older, server_version, server_build_time } => {
                let who = match older {
                    Older::Client => "this client is older than the server: get a current client",
                    Older::Server => "the server is older than this client: the operator must upgrade sottod",
                    Older::Unknown => "client and server were built from different opcode tables",
                };
                write!(f, "protocol mismatch: {who} (server protocol {server_version}, built at {server_build_time})")
            }
            HandshakeError::Unverified => f.write_str("server identity could not be verified"),
            HandshakeError::UnverifiedMismatch => f.write_str("the server's answer could not be verified"),
            HandshakeError::BadKey => f.write_str("peer sent an invalid ephemeral key"),
            HandshakeError::Sign(e) => write!(f, "server signing failed: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Record keys of one side of an established session.
pub struct SessionKeys {
    /// Seals what this side sends.
    pub sealer: Sealer,
    /// Opens what this side receives.
    pub opener: Opener,
    /// Gives the secrets of the tickets issued on this session
    /// ([`crate::ticket`]).
    pub resumption: ResumptionMaster,
}

/// What a client trusts and presents.
#[derive(Clone)]
pub struct ClientConfig {
    /// Its build identity.
    pub build: BuildIdentity,
    /// Deployment key (MACs the ClientHello, salts the key schedule).
    pub deployment_key: [u8; 32],
    /// Server public keys accepted (current, and the next one for rotation).
    pub server_keys: Vec<RsaPublicKey>,
}

impl ClientConfig {
    /// The configuration compiled into this binary.
    pub fn built_in() -> Result<ClientConfig, KeyError> {
        let mut server_keys = vec![identity::from_spki_der(build_info::SERVER_PUBLIC_DER)?];
        if let Some(next) = build_info::NEXT_SERVER_PUBLIC_DER {
            server_keys.push(identity::from_spki_der(next)?);
        }
        Ok(ClientConfig { build: BuildIdentity::this_build(), deployment_key: build_info::DEPLOYMENT_KEY, server_keys })
    }
}

/// What a server presents.
#[derive(Clone)]
pub struct ServerConfig {
    /// Its build identity.
    pub build: BuildIdentity,
    /// Deployment key.
    pub deployment_key: [u8; 32],
}

impl ServerConfig {
    /// The configuration compiled into this binary.
    pub fn built_in() -> ServerConfig {
        ServerConfig { build: BuildIdentity::this_build(), deployment_key: build_info::DEPLOYMENT_KEY }
    }
}

/// Client state after sending its hello.
pub struct AwaitServerHello {
    secret: StaticSecret,
    hello: ClientHello,
}

/// Builds the ClientHello with fresh randomness; returns the state and the framed hello.
pub fn client_hello(cfg: &ClientConfig) -> (AwaitServerHello, Vec<u8>) {
    let secret: Zeroizing<[u8; 32]> = Zeroizing::new(crypto::random());
    client_hello_from(cfg, &secret, &crypto::random())
}

/// As [`client_hello`] with a given ephemeral secret and nonce: for test
/// vectors and fuzzing only (feature `vectors`).
#[cfg(any(test, feature = "vectors"))]
pub fn client_hello_with(cfg: &ClientConfig, secret: &[u8; 32], nonce: &[u8; 32]) -> (AwaitServerHello, Vec<u8>) {
    client_hello_from(cfg, secret, nonce)
}

fn client_hello_from(cfg: &ClientConfig, secret: &[u8; 32], nonce: &[u8; 32]) -> (AwaitServerHello, Vec<u8>) {
    let secret = StaticSecret::from(*secret);
    let mut hello = ClientHello::new_zeroed();
    hello.magic = MAGIC;
    hello.version = U16::new(cfg.build.version);
    hello.table_hash = cfg.build.table_hash;
    hello.build_id = cfg.build.build_id;
    hello.build_time = U64::new(cfg.build.build_time);
    hello.eph_pub = PublicKey::from(&secret).to_bytes();
    hello.nonce = *nonce;
    let mac_at = CLIENT_HELLO_LEN - 32;
    hello.mac = crypto::hmac(&cfg.deployment_key, &[&hello.as_bytes()[..mac_at]]);
    let mut frame = Vec::with_capacity(4 + CLIENT_HELLO_LEN);
    crate::frame::encode(hello.as_bytes(), &mut frame);
    (AwaitServerHello { secret, hello }, frame)
}

impl AwaitServerHello {
    /// Verifies the ServerHello body and derives the client's session keys.
    pub fn handle_server_hello(self, cfg: &ClientConfig, body: &[u8]) -> Result<SessionKeys, HandshakeError> {
        let sh = ServerHello::ref_from_bytes(body).map_err(|_| HandshakeError::Malformed)?;
        if sh.magic != MAGIC {
            return Err(HandshakeError::Malformed);
        }
        let claims_mismatch = sh.status.get() == STATUS_MISMATCH
            || sh.version.get() != cfg.build.version
            || sh.table_hash != cfg.build.table_hash;
        // Every ServerHello is signed, a mismatch answer too: nothing unsigned
        // is believed or shown (PROTOCOL §3).
        let signed = signed_bytes(self.hello.as_bytes(), body);
        if !cfg.server_keys.iter().any(|k| identity::verify(k, &signed, &sh.signature)) {
            return Err(if claims_mismatch { HandshakeError::UnverifiedMismatch } else { HandshakeError::Unverified });
        }
        if claims_mismatch {
            let (sv, st) = (sh.version.get(), sh.build_time.get());
            let older = match (cfg.build.version.cmp(&sv), cfg.build.build_time.cmp(&st)) {
                (std::cmp::Ordering::Less, _) => Older::Client,
                (std::cmp::Ordering::Greater, _) => Older::Server,
                (_, std::cmp::Ordering::Less) => Older::Client,
                (_, std::cmp::Ordering::Greater) => Older::Server,
                _ => Older::Unknown,
            };
            return Err(HandshakeError::Mismatch { older, server_version: sv, server_build_time: st });
        }
        if sh.status.get() != STATUS_OK {
            return Err(HandshakeError::Malformed);
        }
        let shared = self.secret.diffie_hellman(&PublicKey::from(sh.eph_pub));
        if !shared.was_contributory() {
            return Err(HandshakeError::BadKey);
        }
        let (c2s, s2c) = key_schedule(&cfg.deployment_key, shared.as_bytes(), self.hello.as_bytes(), body);
        let resumption =
            ResumptionMaster::of_handshake(&cfg.deployment_key, shared.as_bytes(), self.hello.as_bytes(), body);
        Ok(SessionKeys { sealer: Sealer::new(c2s), opener: Opener::new(s2c), resumption })
    }
}

/// The server's verdict on a ClientHello, reached without any RSA work.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloVerdict {
    /// Well-formed, authentic, same protocol: sign a ServerHello (on a worker).
    Accept,
    /// Authentic but another version or table: sign a mismatch answer
    /// ([`mismatch_hello`], on a worker), send it and close.
    Mismatch,
    /// Not from a binary of this deployment: close without a word.
    Drop,
}

/// Checks size, magic and MAC (constant time), then version and table hash.
pub fn check_client_hello(cfg: &ServerConfig, body: &[u8]) -> HelloVerdict {
    let Ok(ch) = ClientHello::ref_from_bytes(body) else { return HelloVerdict::Drop };
    let mac_at = CLIENT_HELLO_LEN - 32;
    if ch.magic != MAGIC || !crypto::hmac_verify(&cfg.deployment_key, &[&body[..mac_at]], &ch.mac) {
        return HelloVerdict::Drop;
    }
    if ch.version.get() != cfg.build.version || ch.table_hash != cfg.build.table_hash {
        return HelloVerdict::Mismatch;
    }
    HelloVerdict::Accept
}

/// Answers an authentic ClientHello of another version or table: the framed
/// ServerHello with status 1 (mismatch), the server's version, table hash,
/// build id and build time, zero key and nonce, signed like any ServerHello
/// (over the label, the ClientHello and its first 128 bytes), so that a man
/// in the middle cannot make a client believe it is out of date. Costs one
/// RSA signature: run it on a worker thread.
pub fn mismatch_hello(cfg: &ServerConfig, signer: &Signer, client_hello: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if client_hello.len() != CLIENT_HELLO_LEN {
        return Err(HandshakeError::Malformed);
    }
    let mut sh = server_hello_fields(cfg);
    sh.status = U16::new(STATUS_MISMATCH);
    let signed = signed_bytes(client_hello, sh.as_bytes());
    sh.signature = signer.sign(&signed).map_err(HandshakeError::Sign)?;
    let mut frame = Vec::with_capacity(4 + SERVER_HELLO_LEN);
    crate::frame::encode(sh.as_bytes(), &mut frame);
    Ok(frame)
}

/// Answers an accepted ClientHello: the framed ServerHello and the server's keys.
/// Costs one RSA signature: run it on a worker thread.
pub fn server_hello(
    cfg: &ServerConfig,
    signer: &Signer,
    client_hello: &[u8],
) -> Result<(Vec<u8>, SessionKeys), HandshakeError> {
    let secret: Zeroizing<[u8; 32]> = Zeroizing::new(crypto::random());
    server_hello_from(cfg, signer, client_hello, &secret, &crypto::random())
}

/// As [`server_hello`] with a given ephemeral secret and nonce: for test
/// vectors and fuzzing only (feature `vectors`).
#[cfg(any(test, feature = "vectors"))]
pub fn server_hello_with(
    cfg: &ServerConfig,
    signer: &Signer,
    client_hello: &[u8],
    secret: &[u8; 32],
    nonce: &[u8; 32],
) -> Result<(Vec<u8>, SessionKeys), HandshakeError> {
    server_hello_from(cfg, signer, client_hello, secret, nonce)
}

fn server_hello_from(
    cfg: &ServerConfig,
    signer: &Signer,
    client_hello: &[u8],
    secret: &[u8; 32],
    nonce: &[u8; 32],
) -> Result<(Vec<u8>, SessionKeys), HandshakeError> {
    let ch = ClientHello::ref_from_bytes(client_hello).map_err(|_| HandshakeError::Malformed)?;
    let secret = StaticSecret::from(*secret);
    let mut sh = server_hello_fields(cfg);
    sh.eph_pub = PublicKey::from(&secret).to_bytes();
    sh.nonce = *nonce;
    // Check the peer's key before spending an RSA signature on it.
    let shared = secret.diffie_hellman(&PublicKey::from(ch.eph_pub));
    if !shared.was_contributory() {
        return Err(HandshakeError::BadKey);
    }
    let signed = signed_bytes(client_hello, sh.as_bytes());
    sh.signature = signer.sign(&signed).map_err(HandshakeError::Sign)?;
    let (c2s, s2c) = key_schedule(&cfg.deployment_key, shared.as_bytes(), client_hello, sh.as_bytes());
    let resumption =
        ResumptionMaster::of_handshake(&cfg.deployment_key, shared.as_bytes(), client_hello, sh.as_bytes());
    let mut frame = Vec::with_capacity(4 + SERVER_HELLO_LEN);
    crate::frame::encode(sh.as_bytes(), &mut frame);
    Ok((frame, SessionKeys { sealer: Sealer::new(s2c), opener: Opener::new(c2s), resumption }))
}

fn server_hello_fields(cfg: &ServerConfig) -> ServerHello {
    let mut sh = ServerHello::new_zeroed();
    sh.magic = MAGIC;
    sh.version = U16::new(cfg.build.version);
    sh.table_hash = cfg.build.table_hash;
    sh.build_id = cfg.build.build_id;
    sh.build_time = U64::new(cfg.build.build_time);
    sh
}

/// What the server signs: label, the whole ClientHello, the ServerHello before its signature.
fn signed_bytes(client_hello: &[u8], server_hello: &[u8]) -> Vec<u8> {
    let unsigned = server_hello.get(..SERVER_HELLO_LEN - RSA_BYTES).unwrap_or(server_hello);
    [SIGN_LABEL, client_hello, unsigned].concat()
}

/// `HKDF-SHA256(salt = deployment key, ikm = X25519 shared, info = label || SHA-256(CH || SH))`
/// -> 96 bytes: client-to-server AES+HMAC keys, then server-to-client.
pub fn key_schedule(
    deployment_key: &[u8; 32],
    shared: &[u8; 32],
    client_hello: &[u8],
    server_hello: &[u8],
) -> (AeadKeys, AeadKeys) {
    let th = crypto::sha256(&[client_hello, server_hello]);
    let mut okm = Zeroizing::new([0u8; 96]);
    crypto::hkdf(deployment_key, shared, &[KEY_LABEL, &th], &mut okm[..]);
    let mut half = Zeroizing::new([0u8; 48]);
    half.copy_from_slice(&okm[..48]);
    let c2s = AeadKeys::from_material(&half);
    half.copy_from_slice(&okm[48..]);
    (c2s, AeadKeys::from_material(&half))
}
