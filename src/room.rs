//! Room cryptography (DESIGN §6), shared by client and server.
//!
//! Invariant: from the room password the client derives two independent keys:
//! an auth key, whose SHA-256 the server stores and checks, and a content
//! key, which never leaves the clients. Every message is encrypted and MACed
//! with the content key over a body of its size class (`body`: within a
//! class every frame has the same size) and signed by the sender's identity
//! key; the MAC and the signature bind the room, the sender's UID, the
//! message id and the timestamp, and cover the whole ciphertext (so its class).

use zeroize::Zeroizing;

use crate::body;
use crate::crypto::{self, AeadKeys, Invalid};
use crate::opcodes::Class;

/// Longest room name.
pub const NAME_MAX: usize = 32;
/// Longest message text, in bytes of UTF-8.
pub const TEXT_MAX: usize = body::TEXT_MAX;
/// Messages the server keeps per room.
pub const HISTORY: usize = 20;

const AUTH_LABEL: &[u8] = b"sotto/v1 room auth\0";
const CONTENT_LABEL: &[u8] = b"sotto/v1 room content\0";
const MAC_LABEL: &[u8] = b"sotto/v1 room message\0";
const SIGN_LABEL: &[u8] = b"sotto/v1 room signature\0";
const ID_LABEL: &[u8] = b"sotto/v1 room message id\0";

/// Why room input is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomError {
    /// Name length or characters.
    BadName,
    /// Text longer than `TEXT_MAX` bytes.
    TooLong,
    /// The key derivation failed.
    Derive,
    /// A new room's password is shorter than `PASSWORD_MIN` characters.
    WeakPassword,
}

/// Shortest password of a new room, in characters: the room's confidentiality
/// rests on it against an offline guess by the server (which holds the salt
/// and the verifier), so a client offers four generated words instead.
pub const PASSWORD_MIN: usize = 10;

/// Checks the password of a room being created (joining takes any password).
pub fn check_password(password: &str) -> Result<(), RoomError> {
    if password.chars().count() < PASSWORD_MIN {
        return Err(RoomError::WeakPassword);
    }
    Ok(())
}

impl std::fmt::Display for RoomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoomError::BadName => "room names are 1-32 characters of a-z, 0-9, '_' and '-'",
            RoomError::TooLong => "room messages are at most 16384 bytes",
            RoomError::Derive => "room key derivation failed",
            RoomError::WeakPassword => {
                "a room password is at least 10 characters (or let /create generate four words): the server could guess a shorter one offline"
            }
        })
    }
}

impl std::error::Error for RoomError {}

/// Case-folds and checks a room name.
pub fn normalize_name(name: &str) -> Result<String, RoomError> {
    let name = name.to_ascii_lowercase();
    let ok = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok || name.is_empty() || name.len() > NAME_MAX {
        return Err(RoomError::BadName);
    }
    Ok(name)
}

/// The keys a member derives from the room password.
pub struct RoomKeys {
    /// Proves knowledge of the password to the server.
    pub auth: Zeroizing<[u8; 32]>,
    /// Encrypts and authenticates messages; never sent.
    pub content: AeadKeys,
}

/// `master = argon2id(password, salt)`; `auth = HKDF(salt, master, "room auth" || name)`,
/// `content = HKDF(salt, master, "room content" || name)` (48 bytes: AES key, HMAC key).
pub fn derive(room: &str, password: &str, salt: &[u8; 16]) -> Result<RoomKeys, RoomError> {
    let mut master = Zeroizing::new([0u8; 32]);
    crypto::derive_key(password.as_bytes(), salt, &mut master[..]).map_err(|_| RoomError::Derive)?;
    Ok(from_master(room, &master, salt))
}

/// The HKDF half of [`derive`], for test vectors.
pub fn from_master(room: &str, master: &[u8; 32], salt: &[u8; 16]) -> RoomKeys {
    let mut auth = Zeroizing::new([0u8; 32]);
    crypto::hkdf(salt, master, &[AUTH_LABEL, room.as_bytes()], &mut auth[..]);
    let mut content = Zeroizing::new([0u8; 48]);
    crypto::hkdf(salt, master, &[CONTENT_LABEL, room.as_bytes()], &mut content[..]);
    RoomKeys { auth, content: AeadKeys::from_material(&content) }
}

/// What the server stores to check an auth key: SHA-256(auth).
pub fn verifier(auth: &[u8; 32]) -> [u8; 32] {
    crypto::sha256(&[auth])
}

/// Who sent a message and when: bound into both the MAC and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context<'a> {
    /// Room name.
    pub room: &'a str,
    /// Sender's UID.
    pub sender_uid: u64,
    /// Sender's msg_id.
    pub msg_id: u64,
    /// Sender's timestamp, Unix ms.
    pub sent_time: u64,
}

impl Context<'_> {
    fn bytes(&self, label: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(label.len() + 1 + self.room.len() + 24);
        m.extend_from_slice(label);
        m.push(self.room.len() as u8);
        m.extend_from_slice(self.room.as_bytes());
        m.extend_from_slice(&self.sender_uid.to_be_bytes());
        m.extend_from_slice(&self.msg_id.to_be_bytes());
        m.extend_from_slice(&self.sent_time.to_be_bytes());
        m
    }
}

/// A room message's id, as people see and type it (`/unsend ROOM ID`) and
/// rmrm names it: the first 8 bytes, big-endian, of SHA-256 over a label and
/// the context. Client and server compute it alike from what every copy
/// carries; a sender's msg_id alone starts again at 1 in each client run.
pub fn message_id(ctx: &Context<'_>) -> u64 {
    let h = crypto::sha256(&[&ctx.bytes(ID_LABEL)]);
    u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

/// An encrypted room message body.
#[derive(Clone)]
pub struct Sealed {
    /// AES-CBC IV.
    pub iv: [u8; 16],
    /// AES-128-CBC of the body: its length is its class's (`class()`).
    pub ciphertext: Vec<u8>,
    /// HMAC-SHA256 over context, IV and ciphertext.
    pub tag: [u8; 32],
}

impl Sealed {
    /// The size class of the body, if its length is one.
    pub fn class(&self) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.body() == self.ciphertext.len())
    }
}

/// Encrypts `text` for the room, in the smallest class that holds it.
pub fn seal(keys: &AeadKeys, ctx: &Context<'_>, text: &str) -> Result<Sealed, RoomError> {
    seal_iv(keys, ctx, text, &crypto::random())
}

/// As [`seal`] with a chosen IV: for test vectors only (feature `vectors`).
#[cfg(any(test, feature = "vectors"))]
pub fn seal_with_iv(keys: &AeadKeys, ctx: &Context<'_>, text: &str, iv: &[u8; 16]) -> Result<Sealed, RoomError> {
    seal_iv(keys, ctx, text, iv)
}

fn seal_iv(keys: &AeadKeys, ctx: &Context<'_>, text: &str, iv: &[u8; 16]) -> Result<Sealed, RoomError> {
    let (_, body) = body::pack(text).map_err(|_| RoomError::TooLong)?;
    seal_body_iv(keys, ctx, &body, iv)
}

/// Encrypts a body already packed in its class (a text's, or a file
/// manifest's: `file::pack_manifest`).
pub fn seal_body(keys: &AeadKeys, ctx: &Context<'_>, body: &[u8]) -> Result<Sealed, RoomError> {
    seal_body_iv(keys, ctx, body, &crypto::random())
}

fn seal_body_iv(keys: &AeadKeys, ctx: &Context<'_>, body: &[u8], iv: &[u8; 16]) -> Result<Sealed, RoomError> {
    if !Class::ALL.iter().any(|c| c.body() == body.len()) {
        return Err(RoomError::TooLong);
    }
    let mut ciphertext = body.to_vec();
    crypto::cbc_encrypt(&keys.enc, iv, &mut ciphertext).map_err(|_| RoomError::Derive)?;
    let tag = crypto::hmac(&keys.mac[..], &[&ctx.bytes(MAC_LABEL), iv, &ciphertext]);
    Ok(Sealed { iv: *iv, ciphertext, tag })
}

/// Checks the MAC, then decrypts a text; one error for every failure.
pub fn open(keys: &AeadKeys, ctx: &Context<'_>, sealed: &Sealed) -> Result<String, Invalid> {
    body::unpack(&open_body(keys, ctx, sealed)?)
}

/// Checks the MAC, then decrypts: the body, still in its class
/// (`file::unpack` reads a text or a manifest from it).
pub fn open_body(keys: &AeadKeys, ctx: &Context<'_>, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, Invalid> {
    if !crypto::hmac_verify(&keys.mac[..], &[&ctx.bytes(MAC_LABEL), &sealed.iv, &sealed.ciphertext], &sealed.tag) {
        return Err(Invalid);
    }
    sealed.class().ok_or(Invalid)?;
    let mut body = Zeroizing::new(sealed.ciphertext.clone());
    crypto::cbc_decrypt(&keys.enc, &sealed.iv, &mut body[..])?;
    Ok(body)
}

/// What the sender's identity key signs: context, IV, ciphertext and tag.
pub fn signed_bytes(ctx: &Context<'_>, sealed: &Sealed) -> Vec<u8> {
    let mut m = ctx.bytes(SIGN_LABEL);
    m.extend_from_slice(&sealed.iv);
    m.extend_from_slice(&sealed.ciphertext);
    m.extend_from_slice(&sealed.tag);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context { room: "lobby", sender_uid: 7, msg_id: 3, sent_time: 1_700_000_000_000 }
    }

    #[test]
    fn message_ids_bind_the_whole_context() {
        let id = message_id(&ctx());
        assert_eq!(id, message_id(&ctx()));
        for other in [
            Context { sender_uid: 8, ..ctx() },
            Context { msg_id: 4, ..ctx() },
            Context { sent_time: 1, ..ctx() },
            Context { room: "lobbz", ..ctx() },
        ] {
            assert_ne!(message_id(&other), id);
        }
    }

    #[test]
    fn names_are_whitelisted() {
        assert_eq!(normalize_name("Lobby-1_x").unwrap(), "lobby-1_x");
        for bad in ["", "a b", "a.b", &"a".repeat(33)] {
            assert_eq!(normalize_name(bad), Err(RoomError::BadName), "{bad:?}");
        }
    }

    #[test]
    fn auth_and_content_keys_are_independent_and_bound_to_the_room() {
        let salt = [1u8; 16];
        let a = from_master("lobby", &[2u8; 32], &salt);
        let b = from_master("other", &[2u8; 32], &salt);
        assert_ne!(*a.auth, *b.auth);
        assert_ne!(&a.auth[..], &a.content.mac[..]);
        assert_ne!(*a.content.enc, *b.content.enc);
    }

    #[test]
    fn seal_open_roundtrip_at_every_length_with_the_class_size() {
        let keys = from_master("lobby", &[2u8; 32], &[1u8; 16]).content;
        for (text, class) in [
            ("", Class::S),
            ("hi", Class::S),
            ("ünïcødé", Class::S),
            (&"x".repeat(174), Class::S),
            (&"x".repeat(175), Class::M),
            (&"x".repeat(12_000), Class::X),
            (&"x".repeat(TEXT_MAX), Class::X),
        ] {
            let s = seal(&keys, &ctx(), text).unwrap();
            assert_eq!((s.class(), s.ciphertext.len()), (Some(class), class.body()));
            assert_eq!(open(&keys, &ctx(), &s).unwrap(), text);
        }
        assert_eq!(seal(&keys, &ctx(), &"x".repeat(TEXT_MAX + 1)).err(), Some(RoomError::TooLong));
    }

    #[test]
    fn any_tampering_or_other_context_fails() {
        let keys = from_master("lobby", &[2u8; 32], &[1u8; 16]).content;
        let s = seal(&keys, &ctx(), "secret words").unwrap();
        for i in [0usize, 15] {
            let mut t = s.clone();
            t.iv[i] ^= 1;
            assert_eq!(open(&keys, &ctx(), &t), Err(Invalid));
        }
        for i in [0usize, 100, s.ciphertext.len() - 1] {
            let mut t = s.clone();
            t.ciphertext[i] ^= 0x80;
            assert_eq!(open(&keys, &ctx(), &t), Err(Invalid));
        }
        let mut t = s.clone();
        t.tag[31] ^= 1;
        assert_eq!(open(&keys, &ctx(), &t), Err(Invalid));
        for other in [
            Context { sender_uid: 8, ..ctx() },
            Context { msg_id: 4, ..ctx() },
            Context { sent_time: 1, ..ctx() },
            Context { room: "lobbz", ..ctx() },
        ] {
            assert_eq!(open(&keys, &other, &s), Err(Invalid));
            assert_ne!(signed_bytes(&other, &s), signed_bytes(&ctx(), &s));
        }
        let wrong = from_master("lobby", &[3u8; 32], &[1u8; 16]).content;
        assert_eq!(open(&wrong, &ctx(), &s), Err(Invalid));
        // A body cut to another length is no class (and fails the MAC anyway).
        let mut t = s.clone();
        t.ciphertext.truncate(160);
        assert_eq!(open(&keys, &ctx(), &t), Err(Invalid));
    }
}
