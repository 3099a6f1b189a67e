//! Record layer (DESIGN §4): `len || iv || AES-128-CBC(plaintext) || tag`,
//! `tag = HMAC-SHA256(mac_key, seq || len || iv || ciphertext)`.
//!
//! Invariant: the tag is checked in constant time before any decryption, and
//! every failure is the same `Invalid`, so there is no oracle. Sequence
//! numbers are implicit, so a replayed, reordered or dropped record fails.
//! A caller cannot choose the IV in a normal build: `seal_with_iv` exists
//! only with the `vectors` feature (test vectors, fuzzing).

use crate::crypto::{AeadKeys, BlockEnc, Cbc, Invalid, MacKey, BLOCK, TAG};
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

    /// A sealer whose next record has sequence number `seq`: for tests and
    /// fuzzing only (feature `vectors`).
    #[cfg(any(test, feature = "vectors"))]
    pub fn starting_at(keys: AeadKeys, seq: u64) -> Sealer {
        Sealer { seq, ..Sealer::new(keys) }
    }

    /// As [`Sealer::seal`] with a chosen IV: for test vectors and fuzzing
    /// only (feature `vectors`), never in a build that talks to anyone.
    #[cfg(any(test, feature = "vectors"))]
    pub fn seal_with_iv(&mut self, plaintext: &[u8], iv: &[u8; 16], out: &mut Vec<u8>) -> Result<(), Invalid> {
        self.seal_iv(plaintext, iv, out)
    }

    /// No record can be sealed any more: the sequence number is at its last value.
    pub fn exhausted(&self) -> bool {
        self.seq == u64::MAX
    }

    fn seal_iv(&mut self, plaintext: &[u8], iv: &[u8; 16], out: &mut Vec<u8>) -> Result<(), Invalid> {
        if !valid_plaintext(plaintext) {
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

/// Members whose records [`seal_many`] runs side by side in one pass.
pub const LANES: usize = 8;

/// Seals one `plaintext` for many receivers: appends to `outs[i]` exactly the
/// record `sealers[i].seal(plaintext, outs[i])` would, for every `i`.
///
/// Multi-buffer: a CBC chain is sequential within a record, but the records
/// of different members are independent, so up to [`LANES`] members' chains
/// advance together, block by block, and the CPU overlaps their AES rounds. Each
/// record is written straight into its member's output (length, IV, then
/// the plaintext encrypted in place, then the tag).
///
/// All or nothing: if the plaintext is not whole blocks of a valid size, if
/// the slices differ in length, or if any sealer's sequence number is
/// exhausted, nothing is written and no sequence number moves.
pub fn seal_many(sealers: &mut [&mut Sealer], plaintext: &[u8], outs: &mut [&mut Vec<u8>]) -> Result<(), Invalid> {
    seal_many_lanes::<LANES>(sealers, plaintext, outs)
}

/// [`seal_many`] with `L` members side by side (the benchmark compares widths).
pub fn seal_many_lanes<const L: usize>(
    sealers: &mut [&mut Sealer],
    plaintext: &[u8],
    outs: &mut [&mut Vec<u8>],
) -> Result<(), Invalid> {
    if L == 0 || !valid_plaintext(plaintext) || sealers.len() != outs.len() || sealers.iter().any(|s| s.exhausted()) {
        return Err(Invalid);
    }
    // As few passes as L allows, of even widths (9 members: 5 and 4, not 8
    // and a lone 1 whose chain would run without overlap).
    let n = sealers.len();
    if n == 0 {
        return Ok(());
    }
    let width = n.div_ceil(n.div_ceil(L));
    for (s, o) in sealers.chunks_mut(width).zip(outs.chunks_mut(width)) {
        seal_lanes::<L>(s, plaintext, o);
    }
    Ok(())
}

/// Bytes on the wire of the record that seals a plaintext of `len` bytes:
/// length, IV, ciphertext (as long as the plaintext), tag.
pub const fn sealed_len(len: usize) -> usize {
    4 + BLOCK + len + TAG
}

/// Whether a record can seal `plaintext` (whole blocks, not empty, at most a message).
pub fn sealable(plaintext: &[u8]) -> bool {
    valid_plaintext(plaintext)
}

fn valid_plaintext(plaintext: &[u8]) -> bool {
    !plaintext.is_empty() && plaintext.len() % BLOCK == 0 && plaintext.len() <= MAX_MESSAGE
}

/// Up to `L` records at once; the caller checked the plaintext and that no
/// sequence number is exhausted.
fn seal_lanes<const L: usize>(sealers: &mut [&mut Sealer], plaintext: &[u8], outs: &mut [&mut Vec<u8>]) {
    let n = sealers.len().min(outs.len()).min(L);
    let len = (BLOCK + plaintext.len() + TAG) as u32;
    // Per member: its key schedule (expanded once for the whole record), its
    // sequence number and where its record starts in its output.
    let mut encs: [Option<BlockEnc>; L] = [const { None }; L];
    let mut seqs = [0u64; L];
    let mut starts = [0usize; L];
    for i in 0..n {
        let (s, out) = (&mut *sealers[i], &mut *outs[i]);
        let enc = encs[i].insert(s.cbc.block_encryptor());
        seqs[i] = s.seq;
        s.seq += 1; // not exhausted: checked by the caller
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(b"sotto iv");
        iv[8..].copy_from_slice(&seqs[i].to_be_bytes());
        enc.encrypt(&mut iv);
        starts[i] = out.len();
        out.reserve(4 + len as usize);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
    }
    // CBC, interleaved: block b of every member, then block b + 1. In each
    // record the IV sits just before the first ciphertext block, so the
    // previous block is always the 16 bytes before.
    for b in 0..plaintext.len() / BLOCK {
        for i in 0..n {
            let Some(enc) = &encs[i] else { continue };
            let from = starts[i] + 4 + b * BLOCK;
            let Some((prev, cur)) = outs[i].get_mut(from..from + 2 * BLOCK).map(|w| w.split_at_mut(BLOCK)) else {
                continue;
            };
            let Ok(cur) = <&mut [u8; 16]>::try_from(cur) else { continue };
            for (c, p) in cur.iter_mut().zip(prev.iter()) {
                *c ^= p;
            }
            enc.encrypt(cur);
        }
    }
    for i in 0..n {
        let out = &mut *outs[i];
        let tag = sealers[i].mac.tag(&[&seqs[i].to_be_bytes(), &out[starts[i]..]]);
        out.extend_from_slice(&tag);
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

    fn members(count: usize, first_seq: u64) -> Vec<Sealer> {
        (0..count)
            .map(|i| {
                let mut m = [0u8; 48];
                m.iter_mut().enumerate().for_each(|(j, b)| *b = (i * 37 + j) as u8);
                Sealer::starting_at(AeadKeys::from_material(&m), first_seq + i as u64 * 1000)
            })
            .collect()
    }

    /// Seals `pt` for every member one by one and with `seal_many`, each
    /// output starting with `prefix`; returns both sets of outputs.
    fn both_ways(count: usize, first_seq: u64, pt: &[u8], prefix: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut one = members(count, first_seq);
        let mut many = members(count, first_seq);
        let singles: Vec<Vec<u8>> = one
            .iter_mut()
            .map(|s| {
                let mut out = prefix.to_vec();
                s.seal(pt, &mut out).unwrap();
                out
            })
            .collect();
        let mut outs: Vec<Vec<u8>> = (0..count).map(|_| prefix.to_vec()).collect();
        let mut ss: Vec<&mut Sealer> = many.iter_mut().collect();
        let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().collect();
        seal_many(&mut ss, pt, &mut os).unwrap();
        // The sequence numbers moved alike: the next records match too.
        for (a, b) in one.iter_mut().zip(many.iter_mut()) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            assert_eq!(a.seal(&[1; 16], &mut x).is_ok(), b.seal(&[1; 16], &mut y).is_ok());
            assert_eq!(x, y);
        }
        (singles, outs)
    }

    #[test]
    fn seal_many_matches_sealing_one_by_one() {
        for count in [1, 2, 7, 8, 9, 17] {
            for len in [16, 576, 1440] {
                let pt: Vec<u8> = (0..len).map(|i| (i * 7 + count) as u8).collect();
                let (singles, many) = both_ways(count, 5, &pt, b"queued");
                assert_eq!(singles, many, "{count} members, {len} B");
                // And each opens at its member's opener.
                let mut m = [0u8; 48];
                m.iter_mut().enumerate().for_each(|(j, b)| *b = j as u8);
                let mut o = Opener { seq: 5, ..Opener::new(AeadKeys::from_material(&m)) };
                assert_eq!(o.open(&body(&many[0][6..])).unwrap(), pt);
            }
        }
    }

    #[test]
    fn seal_many_is_all_or_nothing() {
        let pt = [4u8; 32];
        // One member at the last sequence number: nobody is sealed, nothing moves.
        let mut a = members(3, 1);
        a[1] = Sealer::starting_at(AeadKeys::from_material(&[1; 48]), u64::MAX);
        let mut outs = vec![Vec::new(); 3];
        let mut ss: Vec<&mut Sealer> = a.iter_mut().collect();
        let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().collect();
        assert_eq!(seal_many(&mut ss, &pt, &mut os), Err(Invalid));
        assert!(outs.iter().all(Vec::is_empty));
        assert_eq!(a[0].seq, 1);
        // The one before the last still seals, as with `seal`.
        let (singles, many) = both_ways(1, u64::MAX - 1, &pt, b"");
        assert_eq!(singles, many);
        assert_eq!(many[0].len(), 4 + 16 + 32 + 32);
        // Bad plaintexts and mismatched slices are refused.
        let mut b = members(2, 0);
        let mut outs = vec![Vec::new(); 2];
        for bad in [&[][..], &[0u8; 15][..], &[0u8; 17][..], &vec![0u8; MAX_MESSAGE + 16][..]] {
            let mut ss: Vec<&mut Sealer> = b.iter_mut().collect();
            let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().collect();
            assert_eq!(seal_many(&mut ss, bad, &mut os), Err(Invalid));
        }
        let mut ss: Vec<&mut Sealer> = b.iter_mut().collect();
        let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().take(1).collect();
        assert_eq!(seal_many(&mut ss, &pt, &mut os), Err(Invalid));
        assert!(outs.iter().all(Vec::is_empty));
        assert_eq!(b[0].seq, 0);
    }

    impl Opener {
        fn clone_for_test(&self) -> Opener {
            Opener { cbc: self.cbc.clone(), mac: self.mac.clone(), seq: self.seq }
        }
    }
}
