//! X3DH key agreement for protocol-2 direct messages (docs/PROTOCOL.md §7):
//! the byte strings a signed prekey and a session are bound to, and the
//! shared secret both sides derive. Pure: no I/O, no signing.
//!
//! Invariant: every X25519 output that enters the shared secret is checked to
//! be contributory (a low-order peer key is refused, never mixed in), the
//! secret is bound to both identities through the session AD, and every
//! secret this module holds is zeroized when dropped.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::crypto::{self, Invalid};

/// What the owner's RSA identity key signs for a signed prekey.
const SPK_LABEL: &[u8] = b"sotto/v2 signed prekey\0";
/// HKDF info label of the X3DH shared secret.
const X3DH_LABEL: &[u8] = b"sotto/v2 x3dh\0";
/// Length of [`session_ad`]'s output.
pub const AD_LEN: usize = 16 + 8 + 32 + 8 + 32;

/// The bytes a user's identity key signs for its signed prekey:
/// `"sotto/v2 signed prekey\0" || deployment_id || uid || spk_id || spk_pub`.
pub fn spk_binding(deployment_id: &[u8; 16], uid: u64, spk_id: u32, spk_pub: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SPK_LABEL.len() + 16 + 8 + 4 + 32);
    m.extend_from_slice(SPK_LABEL);
    m.extend_from_slice(deployment_id);
    m.extend_from_slice(&uid.to_be_bytes());
    m.extend_from_slice(&spk_id.to_be_bytes());
    m.extend_from_slice(spk_pub);
    m
}

/// The associated data of a session (96 bytes):
/// `deployment_id || initiator_uid || initiator_ik || responder_uid || responder_ik`.
pub fn session_ad(
    deployment_id: &[u8; 16],
    initiator_uid: u64,
    initiator_ik: &[u8; 32],
    responder_uid: u64,
    responder_ik: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(AD_LEN);
    m.extend_from_slice(deployment_id);
    m.extend_from_slice(&initiator_uid.to_be_bytes());
    m.extend_from_slice(initiator_ik);
    m.extend_from_slice(&responder_uid.to_be_bytes());
    m.extend_from_slice(responder_ik);
    m
}

/// The responder's published keys, as the initiator fetched them (the SPK's
/// signature already verified by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Long-term X25519 identity key.
    pub ik: [u8; 32],
    /// Id of the signed prekey.
    pub spk_id: u32,
    /// Signed prekey.
    pub spk: [u8; 32],
    /// A one-time prekey and its id, when the server had one left.
    pub opk: Option<(u32, [u8; 32])>,
}

/// The initiator's result: the shared secret and the ephemeral public key to send.
pub struct Initiated {
    /// The shared secret SK.
    pub sk: Zeroizing<[u8; 32]>,
    /// The ephemeral public key EK_A the responder needs.
    pub ek_pub: [u8; 32],
}

/// The X25519 public key of a secret.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// `X25519(secret, public)`, refused unless contributory.
pub(crate) fn dh(secret: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Invalid> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(Invalid);
    }
    Ok(Zeroizing::new(*shared.as_bytes()))
}

/// `SK = HKDF-SHA256(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4], info = label || ad)`.
fn kdf(dhs: &[&[u8; 32]], ad: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 5));
    ikm.extend_from_slice(&[0xff; 32]);
    for d in dhs {
        ikm.extend_from_slice(&d[..]);
    }
    let mut sk = Zeroizing::new([0u8; 32]);
    crypto::hkdf(&[0u8; 32], &ikm, &[X3DH_LABEL, ad], &mut sk[..]);
    sk
}

/// The initiator's side with a fresh ephemeral key.
pub fn initiate(ik_secret: &[u8; 32], bundle: &Bundle, ad: &[u8]) -> Result<Initiated, Invalid> {
    let ek: Zeroizing<[u8; 32]> = Zeroizing::new(crypto::random());
    initiate_from(ik_secret, bundle, ad, &ek)
}

/// As [`initiate`] with a chosen ephemeral secret: for test vectors only
/// (feature `vectors`).
#[cfg(any(test, feature = "vectors"))]
pub fn initiate_with(
    ik_secret: &[u8; 32],
    bundle: &Bundle,
    ad: &[u8],
    ek_secret: &[u8; 32],
) -> Result<Initiated, Invalid> {
    initiate_from(ik_secret, bundle, ad, ek_secret)
}

fn initiate_from(ik_secret: &[u8; 32], bundle: &Bundle, ad: &[u8], ek: &[u8; 32]) -> Result<Initiated, Invalid> {
    let dh1 = dh(ik_secret, &bundle.spk)?;
    let dh2 = dh(ek, &bundle.ik)?;
    let dh3 = dh(ek, &bundle.spk)?;
    let sk = match &bundle.opk {
        Some((_, opk)) => kdf(&[&dh1, &dh2, &dh3, &*dh(ek, opk)?], ad),
        None => kdf(&[&dh1, &dh2, &dh3], ad),
    };
    Ok(Initiated { sk, ek_pub: public_key(ek) })
}

/// The responder's side: the same SK from its identity, signed-prekey and
/// (when the initiator used one) one-time-prekey secrets.
pub fn respond(
    ik_secret: &[u8; 32],
    spk_secret: &[u8; 32],
    opk_secret: Option<&[u8; 32]>,
    initiator_ik: &[u8; 32],
    ek_pub: &[u8; 32],
    ad: &[u8],
) -> Result<Zeroizing<[u8; 32]>, Invalid> {
    let dh1 = dh(spk_secret, initiator_ik)?;
    let dh2 = dh(ik_secret, ek_pub)?;
    let dh3 = dh(spk_secret, ek_pub)?;
    Ok(match opk_secret {
        Some(opk) => kdf(&[&dh1, &dh2, &dh3, &*dh(opk, ek_pub)?], ad),
        None => kdf(&[&dh1, &dh2, &dh3], ad),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keys {
        ik_a: [u8; 32],
        ik_b: [u8; 32],
        spk_b: [u8; 32],
        opk_b: [u8; 32],
    }

    fn keys() -> Keys {
        Keys { ik_a: [1; 32], ik_b: [2; 32], spk_b: [3; 32], opk_b: [4; 32] }
    }

    fn bundle(k: &Keys, opk: bool) -> Bundle {
        Bundle {
            ik: public_key(&k.ik_b),
            spk_id: 7,
            spk: public_key(&k.spk_b),
            opk: opk.then(|| (9, public_key(&k.opk_b))),
        }
    }

    fn ad(k: &Keys) -> Vec<u8> {
        session_ad(&[0x5a; 16], 1, &public_key(&k.ik_a), 2, &public_key(&k.ik_b))
    }

    #[test]
    fn both_sides_agree_with_and_without_a_one_time_prekey() {
        let k = keys();
        for opk in [false, true] {
            let a = initiate(&k.ik_a, &bundle(&k, opk), &ad(&k)).unwrap();
            let b =
                respond(&k.ik_b, &k.spk_b, opk.then_some(&k.opk_b), &public_key(&k.ik_a), &a.ek_pub, &ad(&k)).unwrap();
            assert_eq!(*a.sk, *b, "opk {opk}");
            // Another AD, a missing OPK or another EK gives another secret.
            let other = respond(&k.ik_b, &k.spk_b, opk.then_some(&k.opk_b), &public_key(&k.ik_a), &a.ek_pub, b"x");
            assert_ne!(*a.sk, *other.unwrap());
            let flipped =
                respond(&k.ik_b, &k.spk_b, (!opk).then_some(&k.opk_b), &public_key(&k.ik_a), &a.ek_pub, &ad(&k));
            assert_ne!(*a.sk, *flipped.unwrap());
        }
        let a1 = initiate(&k.ik_a, &bundle(&k, true), &ad(&k)).unwrap();
        let a2 = initiate(&k.ik_a, &bundle(&k, true), &ad(&k)).unwrap();
        assert_ne!(a1.ek_pub, a2.ek_pub);
        assert_ne!(*a1.sk, *a2.sk);
    }

    #[test]
    fn low_order_keys_are_refused() {
        let k = keys();
        let low: [[u8; 32]; 2] = [[0; 32], {
            let mut one = [0; 32];
            one[0] = 1;
            one
        }];
        for bad in low {
            for i in 0..3 {
                let mut b = bundle(&k, true);
                match i {
                    0 => b.ik = bad,
                    1 => b.spk = bad,
                    _ => b.opk = Some((1, bad)),
                }
                assert!(initiate(&k.ik_a, &b, &ad(&k)).is_err(), "bundle key {i}");
            }
            let ik_a = public_key(&k.ik_a);
            assert!(respond(&k.ik_b, &k.spk_b, None, &bad, &public_key(&[5; 32]), b"").is_err());
            assert!(respond(&k.ik_b, &k.spk_b, Some(&k.opk_b), &ik_a, &bad, b"").is_err());
        }
    }

    #[test]
    fn bindings_have_their_layout() {
        let b = spk_binding(&[0xaa; 16], 0x0102030405060708, 0x0a0b0c0d, &[0xbb; 32]);
        assert_eq!(b.len(), SPK_LABEL.len() + 60);
        assert!(b.starts_with(b"sotto/v2 signed prekey\0"));
        assert_eq!(&b[23..39], &[0xaa; 16]);
        assert_eq!(&b[39..51], &[1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d]);
        let ad = session_ad(&[0xaa; 16], 1, &[0xbb; 32], 2, &[0xcc; 32]);
        assert_eq!(ad.len(), AD_LEN);
        assert_eq!(&ad[16..24], &1u64.to_be_bytes());
        assert_eq!(&ad[56..64], &2u64.to_be_bytes());
        assert_eq!(&ad[64..], &[0xcc; 32]);
    }
}
