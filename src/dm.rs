//! Direct messages (DESIGN §7, PROTOCOL.md §7), shared by the clients; the
//! server only routes them: the associated data a Double Ratchet message is
//! authenticated over, and the safety number.
//!
//! Invariant: a DM's MAC (`ratchet`) covers the session's associated data
//! (deployment, both UIDs and both identity keys, initiator first), the
//! message's wire context (sender, recipient, id, timestamp) and its X3DH
//! fields, all fixed-size, then the ratchet header and the ciphertext: the
//! server can change no field a client reads without the message failing.

use crate::body;
use crate::crypto;

/// Longest DM text, in bytes of UTF-8.
pub const TEXT_MAX: usize = body::TEXT_MAX;

const SAFETY_LABEL: &[u8] = b"sotto/v1 safety number\0";

/// The metadata a DM is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Sender's UID.
    pub sender_uid: u64,
    /// Recipient's UID.
    pub recipient_uid: u64,
    /// The message id (the sender's `smp*` msg_id).
    pub dm_id: u64,
    /// Sender's timestamp, Unix ms.
    pub sent_time: u64,
}

/// The X3DH inputs a message that starts a session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prekey {
    /// The recipient's signed prekey used.
    pub spk_id: u32,
    /// The recipient's one-time prekey used, 0 for none.
    pub opk_id: u32,
    /// The initiator's ephemeral public key.
    pub ek: [u8; 32],
}

/// A message's associated data: `session_ad || sender_uid || recipient_uid ||
/// dm_id || sent_time || prekey (u8, 1 or 0) || spk_id (u32) || opk_id (u32) ||
/// ek (32)`, the X3DH fields zero when `prekey` is 0.
pub fn ad(session_ad: &[u8], ctx: &Context, prekey: Option<&Prekey>) -> Vec<u8> {
    let mut m = Vec::with_capacity(session_ad.len() + 73);
    m.extend_from_slice(session_ad);
    m.extend_from_slice(&ctx.sender_uid.to_be_bytes());
    m.extend_from_slice(&ctx.recipient_uid.to_be_bytes());
    m.extend_from_slice(&ctx.dm_id.to_be_bytes());
    m.extend_from_slice(&ctx.sent_time.to_be_bytes());
    let p = prekey.copied().unwrap_or(Prekey { spk_id: 0, opk_id: 0, ek: [0; 32] });
    m.push(u8::from(prekey.is_some()));
    m.extend_from_slice(&p.spk_id.to_be_bytes());
    m.extend_from_slice(&p.opk_id.to_be_bytes());
    m.extend_from_slice(&p.ek);
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

    #[test]
    fn safety_number_is_symmetric() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(safety_number(&a, &b), safety_number(&b, &a));
        assert_ne!(safety_number(&a, &b), safety_number(&a, &a));
        assert_eq!(safety_number(&a, &b).split(' ').count(), 16);
    }

    #[test]
    fn every_context_field_and_the_prekey_fields_change_the_ad() {
        let ctx = Context { sender_uid: 1, recipient_uid: 2, dm_id: 3, sent_time: 4 };
        let p = Prekey { spk_id: 5, opk_id: 6, ek: [7; 32] };
        let base = ad(b"session", &ctx, Some(&p));
        assert_eq!(base.len(), 7 + 73);
        let others = [
            ad(b"sessioN", &ctx, Some(&p)),
            ad(b"session", &Context { sender_uid: 9, ..ctx }, Some(&p)),
            ad(b"session", &Context { recipient_uid: 9, ..ctx }, Some(&p)),
            ad(b"session", &Context { dm_id: 9, ..ctx }, Some(&p)),
            ad(b"session", &Context { sent_time: 9, ..ctx }, Some(&p)),
            ad(b"session", &ctx, Some(&Prekey { spk_id: 9, ..p })),
            ad(b"session", &ctx, Some(&Prekey { opk_id: 9, ..p })),
            ad(b"session", &ctx, Some(&Prekey { ek: [9; 32], ..p })),
            ad(b"session", &ctx, None),
        ];
        for o in others {
            assert_ne!(o, base);
        }
        assert_eq!(ad(b"session", &ctx, None)[7 + 32], 0);
    }
}
