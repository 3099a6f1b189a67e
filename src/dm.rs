//! Direct-message envelopes (DESIGN §7), shared by the clients; the server only routes them.
//!
//! Invariant: each message is sealed to the recipient's X25519 encryption key
//! with a fresh ephemeral key; the AES and HMAC keys come from HKDF bound to
//! both UIDs, the ephemeral key and the message id; the sender signs the
//! header fields and the ciphertext with its identity key. Bodies have a fixed
//! size, so every frame has the same length.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::crypto::{self, AeadKeys, Invalid};

/// Longest DM text, in bytes of UTF-8.
pub const TEXT_MAX: usize = 1024;
/// Size of the encrypted body (u16 length, text, zero fill).
pub const BODY: usize = 1040;

const KEY_LABEL: &[u8] = b"sotto/v1 dm keys\0";
const MAC_LABEL: &[u8] = b"sotto/v1 dm message\0";
const SIGN_LABEL: &[u8] = b"sotto/v1 dm signature\0";
const SAFETY_LABEL: &[u8] = b"sotto/v1 safety number\0";

/// The metadata a DM is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Sender's UID.
    pub sender_uid: u64,
    /// Recipient's UID.
    pub recipient_uid: u64,
    /// The message id (the sender's `smpu` msg_id).
    pub dm_id: u64,
    /// Sender's timestamp, Unix ms.
    pub sent_time: u64,
}

impl Context {
    fn bytes(&self, label: &[u8], eph_pub: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(label.len() + 64);
        m.extend_from_slice(label);
        m.extend_from_slice(&self.sender_uid.to_be_bytes());
        m.extend_from_slice(&self.recipient_uid.to_be_bytes());
        m.extend_from_slice(&self.dm_id.to_be_bytes());
        m.extend_from_slice(&self.sent_time.to_be_bytes());
        m.extend_from_slice(eph_pub);
        m
    }
}

/// A sealed DM body.
#[derive(Clone)]
pub struct Sealed {
    /// The sender's ephemeral X25519 public key.
    pub eph_pub: [u8; 32],
    /// AES-CBC IV.
    pub iv: [u8; 16],
    /// AES-128-CBC of the fixed-size body.
    pub ciphertext: [u8; BODY],
    /// HMAC-SHA256 over context, IV and ciphertext.
    pub tag: [u8; 32],
}

/// Why a DM could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmError {
    /// Text longer than `TEXT_MAX` bytes.
    TooLong,
    /// The recipient's key is of low order.
    BadKey,
}

impl std::fmt::Display for DmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DmError::TooLong => "direct messages are at most 1024 bytes",
            DmError::BadKey => "the recipient's encryption key is invalid",
        })
    }
}

impl std::error::Error for DmError {}

/// `HKDF-SHA256(salt = eph_pub, ikm = X25519 shared, info = label || sender || recipient || id || time || eph_pub)`.
fn keys(shared: &[u8; 32], ctx: &Context, eph_pub: &[u8; 32]) -> AeadKeys {
    let mut okm = Zeroizing::new([0u8; 48]);
    crypto::hkdf(eph_pub, shared, &[&ctx.bytes(KEY_LABEL, eph_pub)], &mut okm[..]);
    AeadKeys::from_material(&okm)
}

/// Seals `text` to the recipient's encryption key.
pub fn seal(recipient_enc_pub: &[u8; 32], ctx: &Context, text: &str) -> Result<Sealed, DmError> {
    let eph: Zeroizing<[u8; 32]> = Zeroizing::new(crypto::random());
    seal_from(recipient_enc_pub, ctx, text, &eph, &crypto::random())
}

/// As [`seal`] with a chosen ephemeral secret and IV: for test vectors only
/// (feature `vectors`).
#[cfg(any(test, feature = "vectors"))]
pub fn seal_with(
    recipient_enc_pub: &[u8; 32],
    ctx: &Context,
    text: &str,
    eph_secret: &[u8; 32],
    iv: &[u8; 16],
) -> Result<Sealed, DmError> {
    seal_from(recipient_enc_pub, ctx, text, eph_secret, iv)
}

fn seal_from(
    recipient_enc_pub: &[u8; 32],
    ctx: &Context,
    text: &str,
    eph: &[u8; 32],
    iv: &[u8; 16],
) -> Result<Sealed, DmError> {
    if text.len() > TEXT_MAX {
        return Err(DmError::TooLong);
    }
    let secret = StaticSecret::from(*eph);
    let eph_pub = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*recipient_enc_pub));
    if !shared.was_contributory() {
        return Err(DmError::BadKey);
    }
    let k = keys(shared.as_bytes(), ctx, &eph_pub);
    let mut body = Zeroizing::new([0u8; BODY]);
    body[..2].copy_from_slice(&(text.len() as u16).to_be_bytes());
    body[2..2 + text.len()].copy_from_slice(text.as_bytes());
    let mut ciphertext = *body;
    crypto::cbc_encrypt(&k.enc, iv, &mut ciphertext).map_err(|_| DmError::BadKey)?;
    let tag = crypto::hmac(&k.mac[..], &[&ctx.bytes(MAC_LABEL, &eph_pub), iv, &ciphertext]);
    Ok(Sealed { eph_pub, iv: *iv, ciphertext, tag })
}

/// Opens a DM with the recipient's encryption secret: MAC first, then decryption.
pub fn open(recipient_secret: &[u8; 32], ctx: &Context, sealed: &Sealed) -> Result<String, Invalid> {
    let secret = StaticSecret::from(*recipient_secret);
    let shared = secret.diffie_hellman(&PublicKey::from(sealed.eph_pub));
    if !shared.was_contributory() {
        return Err(Invalid);
    }
    let k = keys(shared.as_bytes(), ctx, &sealed.eph_pub);
    if !crypto::hmac_verify(
        &k.mac[..],
        &[&ctx.bytes(MAC_LABEL, &sealed.eph_pub), &sealed.iv, &sealed.ciphertext],
        &sealed.tag,
    ) {
        return Err(Invalid);
    }
    let mut body = Zeroizing::new(sealed.ciphertext);
    crypto::cbc_decrypt(&k.enc, &sealed.iv, &mut body[..])?;
    let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let text = body.get(2..2 + len).filter(|_| len <= TEXT_MAX).ok_or(Invalid)?;
    String::from_utf8(text.to_vec()).map_err(|_| Invalid)
}

/// What the sender's identity key signs: context, ephemeral key, IV, ciphertext, tag.
pub fn signed_bytes(ctx: &Context, sealed: &Sealed) -> Vec<u8> {
    let mut m = ctx.bytes(SIGN_LABEL, &sealed.eph_pub);
    m.extend_from_slice(&sealed.iv);
    m.extend_from_slice(&sealed.ciphertext);
    m.extend_from_slice(&sealed.tag);
    m
}

/// The safety number two users compare: SHA-256 over both fingerprints in
/// sorted order, shown as 16 groups of 4 hex digits. Same on both sides.
pub fn safety_number(fingerprint_a: &[u8; 32], fingerprint_b: &[u8; 32]) -> String {
    let (lo, hi) =
        if fingerprint_a <= fingerprint_b { (fingerprint_a, fingerprint_b) } else { (fingerprint_b, fingerprint_a) };
    let h = crypto::hex(&crypto::sha256(&[SAFETY_LABEL, lo, hi]));
    h.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context { sender_uid: 1, recipient_uid: 2, dm_id: 0xabcdef, sent_time: 1_700_000_000_000 }
    }

    fn recipient() -> ([u8; 32], [u8; 32]) {
        let secret = [7u8; 32];
        (secret, PublicKey::from(&StaticSecret::from(secret)).to_bytes())
    }

    #[test]
    fn only_the_recipient_opens_and_size_is_constant() {
        let (secret, public) = recipient();
        for text in ["", "hello", &"é".repeat(512)] {
            let s = seal(&public, &ctx(), text).unwrap();
            assert_eq!(s.ciphertext.len(), BODY);
            assert_eq!(open(&secret, &ctx(), &s).unwrap(), text);
            assert_eq!(open(&[8u8; 32], &ctx(), &s), Err(Invalid), "another key");
        }
        assert_eq!(seal(&public, &ctx(), &"x".repeat(TEXT_MAX + 1)).err(), Some(DmError::TooLong));
    }

    #[test]
    fn tampering_and_other_metadata_fail() {
        let (secret, public) = recipient();
        let s = seal(&public, &ctx(), "meet at noon").unwrap();
        let mut t = s.clone();
        t.ciphertext[7] ^= 1;
        assert_eq!(open(&secret, &ctx(), &t), Err(Invalid));
        let mut t = s.clone();
        t.eph_pub[0] ^= 1;
        assert_eq!(open(&secret, &ctx(), &t), Err(Invalid));
        for other in [
            Context { sender_uid: 9, ..ctx() },
            Context { recipient_uid: 9, ..ctx() },
            Context { dm_id: 9, ..ctx() },
            Context { sent_time: 9, ..ctx() },
        ] {
            assert_eq!(open(&secret, &other, &s), Err(Invalid));
            assert_ne!(signed_bytes(&other, &s), signed_bytes(&ctx(), &s));
        }
    }

    #[test]
    fn safety_number_is_symmetric() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(safety_number(&a, &b), safety_number(&b, &a));
        assert_ne!(safety_number(&a, &b), safety_number(&a, &a));
        assert_eq!(safety_number(&a, &b).split(' ').count(), 16);
    }
}
