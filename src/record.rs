//! Record layer (DESIGN §4): `len || iv || AES-128-CBC(plaintext) || tag`,
//! `tag = HMAC-SHA256(mac_key, seq || len || iv || ciphertext)`.
//!
//! Invariant: the tag is checked in constant time before any decryption, and
//! every failure is the same `Invalid`, so there is no oracle. Sequence
//! numbers are implicit, so a replayed, reordered or dropped record fails.
//! A caller cannot choose the IV in a normal build: `seal_with_iv` exists
//! only with the `vectors` feature (test vectors, fuzzing).

use crate::crypto::{AeadKeys, Cbc, Invalid, MacKey, BLOCK, TAG};
use crate::opcodes::MAX_MESSAGE;

/// Largest record body (after the length): IV, largest message, tag.
pub const MAX_BODY: usize = BLOCK + MAX_MESSAGE + TAG;
/// Smallest record body: IV, one block, tag.
pub const MIN_BODY: usize = BLOCK + BLOCK + TAG;

/// Seals outgoing records for one direction.
pub struct Sealer {
    cbc: Cbc,
    mac: MacKey,
    seq: u64,
}

/// Opens incoming records for one direction.
pub struct Opener {
    cbc: Cbc,
    mac: MacKey,
    seq: u64,
}

impl Sealer {
    /// A sealer starting at sequence 0.
    pub fn new(keys: AeadKeys) -> Sealer {
        Sealer { cbc: Cbc::new(&keys.enc), mac: MacKey::new(&keys.mac[..]), seq: 0 }
    }

    /// Appends the framed record for `plaintext` (whole blocks) to `out`.
    ///
    /// The IV is `AES-128(enc_key, "sotto iv" || seq)`: unpredictable without
    /// the key and never repeated under it (NIST SP 800-38A, appendix C),
    /// with no system call per record. Receivers take any IV.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(b"sotto iv");
        iv[8..].copy_from_slice(&self.seq.to_be_bytes());
        self.cbc.encrypt_block(&mut iv);
        self.seal_iv(plaintext, &iv, out)
    }

    /// As [`Sealer::seal`] with a chosen IV: for test vectors and fuzzing
    /// only (feature `vectors`), never in a build that talks to anyone.
    #[cfg(any(test, feature = "vectors"))]
    pub fn seal_with_iv(&mut self, plaintext: &[u8], iv: &[u8; 16], out: &mut Vec<u8>) -> Result<(), Invalid> {
        self.seal_iv(plaintext, iv, out)
    }

    fn seal_iv(&mut self, plaintext: &[u8], iv: &[u8; 16], out: &mut Vec<u8>) -> Result<(), Invalid> {
        if plaintext.is_empty() || plaintext.len() % BLOCK != 0 || plaintext.len() > MAX_MESSAGE {
            return Err(Invalid);
        }
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Invalid)?;
        let len = (BLOCK + plaintext.len() + TAG) as u32;
        let at = out.len();
        out.reserve(4 + len as usize);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(iv);
        out.extend_from_slice(plaintext);
        let ct_at = at + 4 + BLOCK;
        self.cbc.encrypt(iv, &mut out[ct_at..])?;
        let tag = self.mac.tag(&[&seq.to_be_bytes(), &out[at..]]);
        out.extend_from_slice(&tag);
        Ok(())
    }
}

impl Opener {
    /// An opener expecting sequence 0 next.
    pub fn new(keys: AeadKeys) -> Opener {
        Opener { cbc: Cbc::new(&keys.enc), mac: MacKey::new(&keys.mac[..]), seq: 0 }
    }

    /// Opens one record body (what follows the length) into its plaintext.
    pub fn open(&mut self, body: &[u8]) -> Result<Vec<u8>, Invalid> {
        if body.len() < MIN_BODY || body.len() > MAX_BODY || (body.len() - TAG) % BLOCK != 0 {
            return Err(Invalid);
        }
        let len = (body.len() as u32).to_be_bytes();
        let (signed, tag) = body.split_at(body.len() - TAG);
        if !self.mac.verify(&[&self.seq.to_be_bytes(), &len, signed], tag) {
            return Err(Invalid);
        }
        self.seq = self.seq.checked_add(1).ok_or(Invalid)?;
        let (iv, ct) = signed.split_at(BLOCK);
        let iv: [u8; 16] = iv.try_into().map_err(|_| Invalid)?;
        let mut pt = ct.to_vec();
        self.cbc.decrypt(&iv, &mut pt)?;
        Ok(pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Deframer;

    fn pair() -> (Sealer, Opener) {
        let k = AeadKeys::from_material(&[3u8; 48]);
        (Sealer::new(k.clone()), Opener::new(k))
    }

    fn body(frame: &[u8]) -> Vec<u8> {
        let mut d = Deframer::new(MAX_BODY);
        d.push(frame);
        d.pop().unwrap().unwrap()
    }

    #[test]
    fn iv_is_the_block_cipher_of_the_sequence_number() {
        let keys = AeadKeys::from_material(&[3u8; 48]);
        let (mut s, mut o) = pair();
        let cbc = Cbc::new(&keys.enc);
        for seq in 0u64..3 {
            let mut out = Vec::new();
            s.seal(&[9u8; 32], &mut out).unwrap();
            let mut want = [0u8; 16];
            want[..8].copy_from_slice(b"sotto iv");
            want[8..].copy_from_slice(&seq.to_be_bytes());
            cbc.encrypt_block(&mut want);
            assert_eq!(&out[4..20], &want, "seq {seq}");
            assert_eq!(o.open(&body(&out)).unwrap(), vec![9u8; 32]);
        }
    }

    #[test]
    fn roundtrip_in_order() {
        let (mut s, mut o) = pair();
        for i in 0..3u8 {
            let pt = [i; 32];
            let mut out = Vec::new();
            s.seal(&pt, &mut out).unwrap();
            assert_eq!(o.open(&body(&out)).unwrap(), pt);
        }
    }

    #[test]
    fn rejects_replay_reorder_truncation_and_bad_tag() {
        let (mut s, mut o) = pair();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        s.seal(&[1; 16], &mut a).unwrap();
        s.seal(&[2; 16], &mut b).unwrap();
        assert_eq!(o.clone_for_test().open(&body(&b)), Err(Invalid), "reordered");
        assert!(o.open(&body(&a)).is_ok());
        assert_eq!(o.clone_for_test().open(&body(&a)), Err(Invalid), "replayed");
        let bb = body(&b);
        assert_eq!(o.clone_for_test().open(&bb[..bb.len() - 1]), Err(Invalid), "truncated");
        let mut bad = bb.clone();
        bad[20] ^= 0x80;
        assert_eq!(o.clone_for_test().open(&bad), Err(Invalid), "bad tag");
        assert!(o.open(&bb).is_ok());
    }

    impl Opener {
        fn clone_for_test(&self) -> Opener {
            Opener { cbc: self.cbc.clone(), mac: self.mac.clone(), seq: self.seq }
        }
    }
}
