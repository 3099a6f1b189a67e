//! Session resumption (PROTOCOL.md §3, resumption): tickets, the resumption
//! hellos and their key schedule.
//!
//! Sans-I/O, like [`crate::handshake`]. After a full login the server hands
//! the client a ticket (`tick`): its own record of the account, sealed under a
//! server ticket key with the project's construction (AES-128-CBC, then
//! HMAC-SHA256), holding a resumption secret that both sides derive from the
//! session's resumption master. On reconnect the client sends a
//! [`ResumeHello`] with the ticket instead of a ClientHello; the server opens
//! the ticket, checks the client's binder (made with the secret), and answers
//! a [`ServerResume`] with a fresh X25519 key and a MAC by a key only a holder
//! of the secret can derive: no RSA signature, no argon2id.
//!
//! Invariants:
//! - Resumed session keys mix the resumption secret and a fresh X25519
//!   shared secret: a later theft of a ticket key, or of the ticket and its
//!   secret, does not open a session that was resumed before it.
//! - A client believes a resumption only after the server's MAC verified
//!   (constant time); every other answer (refused, mismatch, malformed) sends
//!   it back to a full, RSA-signed handshake, which is never weaker.
//! - A ticket opens only under the key its id names, after its tag verified;
//!   the policy (expiry, generation, single use, the account's state) is the
//!   server's, not this module's.

use x25519_dalek::{PublicKey, StaticSecret};
use zerocopy::byteorder::big_endian::{U16, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroizing;

use crate::crypto::{self, AeadKeys};
use crate::handshake::{BuildIdentity, ClientConfig, ServerConfig, SessionKeys};
use crate::opcodes::{ResumeHello, ServerResume, TicketPlaintext};
use crate::record::{Opener, Sealer};

/// First bytes of both resumption hellos.
pub const RESUME_MAGIC: [u8; 4] = *b"SOTR";
/// Size of a ResumeHello body.
pub const RESUME_HELLO_LEN: usize = core::mem::size_of::<ResumeHello>();
/// Size of a ServerResume body.
pub const SERVER_RESUME_LEN: usize = core::mem::size_of::<ServerResume>();
/// Size of a ticket: key id (8), IV (16), ciphertext (80), tag (32).
pub const TICKET_LEN: usize = 8 + 16 + PLAINTEXT_LEN + 32;
const PLAINTEXT_LEN: usize = core::mem::size_of::<TicketPlaintext>();

/// ServerResume status: resumed, keys follow.
pub const RESUMED: u16 = 0;
/// ServerResume status: another protocol version or opcode table.
pub const MISMATCH: u16 = 1;
/// ServerResume status: the ticket was not accepted.
pub const REFUSED: u16 = 2;

/// Domain label of the resumption master of a session.
pub const MASTER_LABEL: &[u8] = b"sotto/v3 resumption master\0";
/// Domain label of a ticket's secret.
pub const SECRET_LABEL: &[u8] = b"sotto/v3 ticket secret\0";
/// Domain label of the binder key.
pub const BINDER_KEY_LABEL: &[u8] = b"sotto/v3 binder key\0";
/// Domain label of the binder.
pub const BINDER_LABEL: &[u8] = b"sotto/v3 resume binder\0";
/// Domain label of the resumed session's key schedule.
pub const RESUME_KEY_LABEL: &[u8] = b"sotto/v3 resumed session keys\0";
/// Domain label of the server's MAC in a ServerResume.
pub const FINISHED_LABEL: &[u8] = b"sotto/v3 server resume\0";
/// Domain label of a ticket's tag.
pub const TICKET_LABEL: &[u8] = b"sotto/v3 ticket\0";

const _: () = assert!(PLAINTEXT_LEN == 80 && PLAINTEXT_LEN % 16 == 0);
const _: () = assert!(TICKET_LEN == 136);

/// A session's resumption master: with a ticket's id it gives that ticket's
/// secret. Both sides hold it from the handshake on; wiped on drop.
pub struct ResumptionMaster(Zeroizing<[u8; 32]>);

impl ResumptionMaster {
    /// From 32 bytes of key material.
    pub fn from_bytes(bytes: [u8; 32]) -> ResumptionMaster {
        ResumptionMaster(Zeroizing::new(bytes))
    }

    /// The master of a full handshake:
    /// `HKDF-SHA256(salt = deployment key, ikm = shared, info = label || SHA-256(CH || SH), L = 32)`.
    pub fn of_handshake(
        deployment_key: &[u8; 32],
        shared: &[u8; 32],
        client_hello: &[u8],
        server_hello: &[u8],
    ) -> ResumptionMaster {
        let th = crypto::sha256(&[client_hello, server_hello]);
        let mut okm = Zeroizing::new([0u8; 32]);
        crypto::hkdf(deployment_key, shared, &[MASTER_LABEL, &th], &mut okm[..]);
        ResumptionMaster(okm)
    }

    /// The secret of the ticket `ticket_id`: `HMAC-SHA256(master, label || ticket_id)`.
    pub fn ticket_secret(&self, ticket_id: &[u8; 16]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(crypto::hmac(&self.0[..], &[SECRET_LABEL, ticket_id]))
    }
}

/// What a ticket says, once opened. The secret is wiped on drop.
pub struct TicketContents {
    /// The account.
    pub uid: u64,
    /// Issued, Unix ms.
    pub issued_ms: u64,
    /// Expires, Unix ms.
    pub expires_ms: u64,
    /// The account's ticket generation at issue.
    pub generation: u64,
    /// Random; single use.
    pub ticket_id: [u8; 16],
    /// The resumption secret.
    pub secret: Zeroizing<[u8; 32]>,
}

/// One server ticket key: an id that tickets name, when it was made, and the
/// AES-128 and HMAC-SHA256 keys (wiped on drop).
#[derive(Clone)]
pub struct TicketKey {
    /// Named in the first 8 bytes of every ticket sealed under it.
    pub id: u64,
    /// When it was made, Unix ms (rotation is the server's).
    pub created_ms: u64,
    keys: AeadKeys,
}

impl TicketKey {
    /// A new random key.
    pub fn generate(id: u64, created_ms: u64) -> TicketKey {
        let material: Zeroizing<[u8; 48]> = Zeroizing::new(crypto::random());
        TicketKey::from_material(id, created_ms, &material)
    }

    /// From its 48 bytes of key material: 16 for AES, then 32 for HMAC.
    pub fn from_material(id: u64, created_ms: u64, material: &[u8; 48]) -> TicketKey {
        TicketKey { id, created_ms, keys: AeadKeys::from_material(material) }
    }

    /// Its 48 bytes of key material, for the server's key file.
    pub fn material(&self) -> Zeroizing<[u8; 48]> {
        let mut m = Zeroizing::new([0u8; 48]);
        m[..16].copy_from_slice(&self.keys.enc[..]);
        m[16..].copy_from_slice(&self.keys.mac[..]);
        m
    }

    /// Seals `c` with a fresh random IV.
    pub fn seal(&self, c: &TicketContents) -> [u8; TICKET_LEN] {
        self.seal_with_iv(c, &crypto::random())
    }

    /// As [`TicketKey::seal`] with a given IV: for test vectors.
    pub fn seal_with_iv(&self, c: &TicketContents, iv: &[u8; 16]) -> [u8; TICKET_LEN] {
        let mut p = TicketPlaintext::new_zeroed();
        p.uid.set(c.uid);
        p.issued.set(c.issued_ms);
        p.expires.set(c.expires_ms);
        p.generation.set(c.generation);
        p.ticket_id = c.ticket_id;
        p.secret = *c.secret;
        let mut t = [0u8; TICKET_LEN];
        t[..8].copy_from_slice(&self.id.to_be_bytes());
        t[8..24].copy_from_slice(iv);
        t[24..24 + PLAINTEXT_LEN].copy_from_slice(p.as_bytes());
        p.secret.fill(0);
        // NOTE(expect): 80 bytes, a whole number of blocks (asserted above).
        crypto::cbc_encrypt(&self.keys.enc, iv, &mut t[24..24 + PLAINTEXT_LEN]).expect("whole blocks");
        let tag = crypto::hmac(&self.keys.mac[..], &[TICKET_LABEL, &t[..24 + PLAINTEXT_LEN]]);
        t[24 + PLAINTEXT_LEN..].copy_from_slice(&tag);
        t
    }
}

/// The id of the key a ticket names (its first 8 bytes).
pub fn ticket_key_id(ticket: &[u8; TICKET_LEN]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&ticket[..8]);
    u64::from_be_bytes(id)
}

/// Opens a ticket with whichever of `keys` it names; None for an unknown key
/// or a tag that does not verify (one answer for both).
pub fn open_ticket(keys: &[TicketKey], ticket: &[u8; TICKET_LEN]) -> Option<TicketContents> {
    let id = ticket_key_id(ticket);
    let key = keys.iter().find(|k| k.id == id)?;
    let (body, tag) = ticket.split_at(24 + PLAINTEXT_LEN);
    if !crypto::hmac_verify(&key.keys.mac[..], &[TICKET_LABEL, body], tag) {
        return None;
    }
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&ticket[8..24]);
    let mut pt = Zeroizing::new([0u8; PLAINTEXT_LEN]);
    pt.copy_from_slice(&ticket[24..24 + PLAINTEXT_LEN]);
    crypto::cbc_decrypt(&key.keys.enc, &iv, &mut pt[..]).ok()?;
    let p = TicketPlaintext::ref_from_bytes(&pt[..]).ok()?;
    Some(TicketContents {
        uid: p.uid.get(),
        issued_ms: p.issued.get(),
        expires_ms: p.expires.get(),
        generation: p.generation.get(),
        ticket_id: p.ticket_id,
        secret: Zeroizing::new(p.secret),
    })
}

/// What a client keeps of a ticket: the ticket and its secret (wiped on drop).
#[derive(Clone)]
pub struct HeldTicket {
    /// The ticket, as issued.
    pub ticket: [u8; TICKET_LEN],
    /// Its id.
    pub ticket_id: [u8; 16],
    /// When the server stops accepting it, Unix ms.
    pub expires_ms: u64,
    /// Its resumption secret.
    pub secret: Zeroizing<[u8; 32]>,
}

impl HeldTicket {
    /// A `tick` received on a session whose resumption master is `master`.
    pub fn received(master: &ResumptionMaster, ticket_id: [u8; 16], expires_ms: u64, ticket: [u8; TICKET_LEN]) -> Self {
        HeldTicket { ticket, ticket_id, expires_ms, secret: master.ticket_secret(&ticket_id) }
    }
}

/// Why a resumption did not give a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeError {
    /// Wrong size or magic.
    Malformed,
    /// The server did not accept the ticket (expired, revoked, used, unknown
    /// key, resumption off); unauthenticated: a full handshake follows.
    Refused,
    /// The server claims another protocol; unauthenticated: a full
    /// handshake follows, whose signed answer says who is older.
    Mismatch,
    /// The server's MAC did not verify: not the server that issued the
    /// ticket, or a man in the middle.
    Unverified,
    /// The peer's ephemeral key is of low order.
    BadKey,
}

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResumeError::Malformed => "malformed resumption answer",
            ResumeError::Refused => "the server did not accept the resumption ticket",
            ResumeError::Mismatch => "the server runs another protocol",
            ResumeError::Unverified => "the resumption answer could not be verified",
            ResumeError::BadKey => "peer sent an invalid ephemeral key",
        })
    }
}

impl std::error::Error for ResumeError {}

/// The key schedule of a resumption: `th = SHA-256(ResumeHello ||
/// ServerResume[0..128])`, then `HKDF-SHA256(salt = deployment key, ikm =
/// secret || shared, info = label || th, L = 160)`: client-to-server AES and
/// HMAC keys (48), server-to-client (48), the finished key (32) and the new
/// session's resumption master (32).
pub fn resume_schedule(
    deployment_key: &[u8; 32],
    secret: &[u8; 32],
    shared: &[u8; 32],
    resume_hello: &[u8],
    server_resume: &[u8],
) -> (AeadKeys, AeadKeys, Zeroizing<[u8; 32]>, ResumptionMaster) {
    let unsigned = server_resume.get(..SERVER_RESUME_LEN - 32).unwrap_or(server_resume);
    let th = crypto::sha256(&[resume_hello, unsigned]);
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(secret);
    ikm[32..].copy_from_slice(shared);
    let mut okm = Zeroizing::new([0u8; 160]);
    crypto::hkdf(deployment_key, &ikm[..], &[RESUME_KEY_LABEL, &th], &mut okm[..]);
    let mut half = Zeroizing::new([0u8; 48]);
    half.copy_from_slice(&okm[..48]);
    let c2s = AeadKeys::from_material(&half);
    half.copy_from_slice(&okm[48..96]);
    let s2c = AeadKeys::from_material(&half);
    let mut finished = Zeroizing::new([0u8; 32]);
    finished.copy_from_slice(&okm[96..128]);
    let mut master = ResumptionMaster::from_bytes([0u8; 32]);
    master.0.copy_from_slice(&okm[128..160]);
    (c2s, s2c, finished, master)
}

/// The server's MAC: `HMAC-SHA256(finished key, label || th)`, where `th`
/// is as in [`resume_schedule`].
pub fn finished_mac(finished: &[u8; 32], resume_hello: &[u8], server_resume: &[u8]) -> [u8; 32] {
    let unsigned = server_resume.get(..SERVER_RESUME_LEN - 32).unwrap_or(server_resume);
    let th = crypto::sha256(&[resume_hello, unsigned]);
    crypto::hmac(finished, &[FINISHED_LABEL, &th])
}

/// The binder: `HMAC-SHA256(HMAC-SHA256(secret, binder key label), label ||
/// ResumeHello up to the binder)`.
pub fn binder(secret: &[u8; 32], hello_prefix: &[u8]) -> [u8; 32] {
    let key = Zeroizing::new(crypto::hmac(secret, &[BINDER_KEY_LABEL]));
    crypto::hmac(&key[..], &[BINDER_LABEL, hello_prefix])
}

const BINDER_AT: usize = RESUME_HELLO_LEN - 64;
const MAC_AT: usize = RESUME_HELLO_LEN - 32;

/// Client state after sending a ResumeHello.
pub struct AwaitResume {
    secret: StaticSecret,
    hello: ResumeHello,
    ticket_secret: Zeroizing<[u8; 32]>,
}

/// Builds the framed ResumeHello for `held`, with fresh randomness.
pub fn resume_hello(cfg: &ClientConfig, held: &HeldTicket) -> (AwaitResume, Vec<u8>) {
    let secret: Zeroizing<[u8; 32]> = Zeroizing::new(crypto::random());
    resume_hello_with(cfg, held, &secret, &crypto::random())
}

/// As [`resume_hello`] with a given ephemeral secret and nonce (vectors, tests).
pub fn resume_hello_with(
    cfg: &ClientConfig,
    held: &HeldTicket,
    secret: &[u8; 32],
    nonce: &[u8; 32],
) -> (AwaitResume, Vec<u8>) {
    let secret = StaticSecret::from(*secret);
    let mut hello = ResumeHello::new_zeroed();
    hello.magic = RESUME_MAGIC;
    hello.version = U16::new(cfg.build.version);
    hello.table_hash = cfg.build.table_hash;
    hello.build_id = cfg.build.build_id;
    hello.build_time = U64::new(cfg.build.build_time);
    hello.eph_pub = PublicKey::from(&secret).to_bytes();
    hello.nonce = *nonce;
    hello.ticket = held.ticket;
    hello.binder = binder(&held.secret, &hello.as_bytes()[..BINDER_AT]);
    hello.mac = crypto::hmac(&cfg.deployment_key, &[&hello.as_bytes()[..MAC_AT]]);
    let mut frame = Vec::with_capacity(4 + RESUME_HELLO_LEN);
    crate::frame::encode(hello.as_bytes(), &mut frame);
    (AwaitResume { secret, hello, ticket_secret: held.secret.clone() }, frame)
}

impl AwaitResume {
    /// Checks the ServerResume and derives the session keys (with the
    /// resumed session's own resumption master, for its next ticket).
    pub fn handle_answer(self, cfg: &ClientConfig, body: &[u8]) -> Result<SessionKeys, ResumeError> {
        let sr = ServerResume::ref_from_bytes(body).map_err(|_| ResumeError::Malformed)?;
        if sr.magic != RESUME_MAGIC {
            return Err(ResumeError::Malformed);
        }
        match sr.status.get() {
            RESUMED => {}
            MISMATCH => return Err(ResumeError::Mismatch),
            REFUSED => return Err(ResumeError::Refused),
            _ => return Err(ResumeError::Malformed),
        }
        if sr.version.get() != cfg.build.version || sr.table_hash != cfg.build.table_hash {
            return Err(ResumeError::Mismatch);
        }
        let shared = self.secret.diffie_hellman(&PublicKey::from(sr.eph_pub));
        if !shared.was_contributory() {
            return Err(ResumeError::BadKey);
        }
        let hello = self.hello.as_bytes();
        let (c2s, s2c, finished, master) =
            resume_schedule(&cfg.deployment_key, &self.ticket_secret, shared.as_bytes(), hello, body);
        let want = finished_mac(&finished, hello, body);
        if !crypto::ct_eq(&want, &sr.mac) {
            return Err(ResumeError::Unverified);
        }
        Ok(SessionKeys { sealer: Sealer::new(c2s), opener: Opener::new(s2c), resumption: master })
    }
}

/// The server's first look at a ResumeHello, without opening the ticket.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeVerdict {
    /// Authentic and of this protocol: open the ticket, check the binder.
    Check,
    /// Authentic but another version or table: answer [`refusal`] with
    /// [`MISMATCH`] and close.
    Mismatch,
    /// Not a ResumeHello of this deployment: close without a word.
    Drop,
}

/// Whether `body` is a ResumeHello (by size and magic), before any check.
pub fn is_resume_hello(body: &[u8]) -> bool {
    body.len() == RESUME_HELLO_LEN && body[..4] == RESUME_MAGIC
}

/// Checks size, magic and the deployment MAC (constant time), then version
/// and table hash.
pub fn check_resume_hello(cfg: &ServerConfig, body: &[u8]) -> ResumeVerdict {
    let Ok(h) = ResumeHello::ref_from_bytes(body) else { return ResumeVerdict::Drop };
    if h.magic != RESUME_MAGIC || !crypto::hmac_verify(&cfg.deployment_key, &[&body[..MAC_AT]], &h.mac) {
        return ResumeVerdict::Drop;
    }
    if h.version.get() != cfg.build.version || h.table_hash != cfg.build.table_hash {
        return ResumeVerdict::Mismatch;
    }
    ResumeVerdict::Check
}

/// The ticket a ResumeHello carries (None unless `body` is one by size).
pub fn hello_ticket(body: &[u8]) -> Option<&[u8; TICKET_LEN]> {
    ResumeHello::ref_from_bytes(body).ok().map(|h| &h.ticket)
}

/// Whether the ResumeHello's binder was made with `secret` (constant time).
pub fn binder_verifies(body: &[u8], secret: &[u8; 32]) -> bool {
    let Ok(h) = ResumeHello::ref_from_bytes(body) else { return false };
    crypto::ct_eq(&binder(secret, &body[..BINDER_AT]), &h.binder)
}

/// Answers an accepted resumption: the framed ServerResume and the server's
/// session keys (with the new session's resumption master). No RSA: cheap
/// enough for the event loop.
pub fn server_resume(
    cfg: &ServerConfig,
    resume_hello: &[u8],
    secret: &[u8; 32],
) -> Result<(Vec<u8>, SessionKeys), ResumeError> {
    let eph: Zeroizing<[u8; 32]> = Zeroizing::new(crypto::random());
    server_resume_with(cfg, resume_hello, secret, &eph, &crypto::random())
}

/// As [`server_resume`] with a given ephemeral secret and nonce (vectors, tests).
pub fn server_resume_with(
    cfg: &ServerConfig,
    resume_hello: &[u8],
    secret: &[u8; 32],
    eph: &[u8; 32],
    nonce: &[u8; 32],
) -> Result<(Vec<u8>, SessionKeys), ResumeError> {
    let h = ResumeHello::ref_from_bytes(resume_hello).map_err(|_| ResumeError::Malformed)?;
    let eph = StaticSecret::from(*eph);
    let shared = eph.diffie_hellman(&PublicKey::from(h.eph_pub));
    if !shared.was_contributory() {
        return Err(ResumeError::BadKey);
    }
    let mut sr = answer_fields(&cfg.build, RESUMED);
    sr.eph_pub = PublicKey::from(&eph).to_bytes();
    sr.nonce = *nonce;
    let (c2s, s2c, finished, master) =
        resume_schedule(&cfg.deployment_key, secret, shared.as_bytes(), resume_hello, sr.as_bytes());
    sr.mac = finished_mac(&finished, resume_hello, sr.as_bytes());
    let mut frame = Vec::with_capacity(4 + SERVER_RESUME_LEN);
    crate::frame::encode(sr.as_bytes(), &mut frame);
    Ok((frame, SessionKeys { sealer: Sealer::new(s2c), opener: Opener::new(c2s), resumption: master }))
}

/// The framed, unauthenticated ServerResume that refuses (`REFUSED`) or
/// reports a mismatch (`MISMATCH`): zero key, nonce and MAC.
pub fn refusal(cfg: &ServerConfig, status: u16) -> Vec<u8> {
    let sr = answer_fields(&cfg.build, status);
    let mut frame = Vec::with_capacity(4 + SERVER_RESUME_LEN);
    crate::frame::encode(sr.as_bytes(), &mut frame);
    frame
}

fn answer_fields(build: &BuildIdentity, status: u16) -> ServerResume {
    let mut sr = ServerResume::new_zeroed();
    sr.magic = RESUME_MAGIC;
    sr.version = U16::new(build.version);
    sr.status = U16::new(status);
    sr.table_hash = build.table_hash;
    sr.build_id = build.build_id;
    sr.build_time = U64::new(build.build_time);
    sr
}
