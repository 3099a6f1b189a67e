//! Published prekeys (PROTOCOL.md §7): each user's current signed prekey and
//! the one-time prekeys the server may still hand out, and their file format
//! (`prekeys/<uid>.prekeys`).
//!
//! Invariant: a one-time prekey leaves this store when it is handed out, and
//! the answer that carries it is sent only after the file without it is
//! durable (`Deferred::Bundle`), so no crash can hand one out twice. Every
//! bound is a named constant here; a decoded file was bounded before any
//! allocation and its checksum verified.

use std::collections::{HashMap, VecDeque};

use crate::crypto;
use crate::server::checked::{self, Reader, SUM};

/// Magic of a prekey file.
pub(crate) const MAGIC: [u8; 4] = *b"SOTK";
/// Version of the prekey file format.
pub(crate) const VERSION: u16 = 1;
/// One-time prekeys the server keeps per user at most (pkup beyond: 413).
pub(crate) const OPK_MAX: usize = 200;
/// One-time prekeys one pkup carries at most (its `opks` field: 3,600 / 36).
pub(crate) const OPK_UPLOAD_MAX: usize = 100;
/// A fetch that leaves fewer one-time prekeys than this asks the owner to refill (pkst).
pub(crate) const REFILL_BELOW: usize = 20;
/// One one-time prekey on the wire and in the file: id (u32) || X25519 key (32).
pub(crate) const OPK_ENTRY: usize = 4 + 32;
/// magic, version, flags, uid, spk_id, spk_time, spk_pub, spk_sig, opk_count.
const HEAD: usize = 4 + 2 + 2 + 8 + 4 + 8 + 32 + 256 + 2;
/// Largest prekey file: a full store of one-time prekeys.
pub(crate) const MAX_FILE: usize = HEAD + OPK_MAX * OPK_ENTRY + SUM;

/// X25519 public keys of low order (libsodium's list), the top bit ignored as
/// X25519 ignores it: a prekey equal to one would make its DH output known.
const LOW_ORDER: [[u8; 32]; 7] = {
    let mut l = [[0u8; 32]; 7];
    // 0 and 1.
    l[1][0] = 1;
    // The two points of order 8.
    l[2] = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09,
        0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
    ];
    l[3] = [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44,
        0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57,
    ];
    // p - 1, p and p + 1 (p = 2^255 - 19): -1, and 0 and 1 not reduced.
    let mut i = 4;
    while i < 7 {
        let mut k = [0xffu8; 32];
        k[0] = 0xec + (i as u8 - 4);
        k[31] = 0x7f;
        l[i] = k;
        i += 1;
    }
    l
};

/// Whether `key` may serve as a prekey: not one of the low-order points
/// (zero included). Constant time in the key.
pub(crate) fn usable_key(key: &[u8; 32]) -> bool {
    let mut masked = *key;
    masked[31] &= 0x7f;
    LOW_ORDER.iter().fold(true, |ok, bad| ok & !crypto::ct_eq(&masked, bad))
}

/// A one-time prekey: its id (non-zero) and its X25519 public key.
pub(crate) type Opk = (u32, [u8; 32]);

/// One user's published prekeys.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Published {
    /// The current signed prekey's id; 0 when none was published.
    pub(crate) spk_id: u32,
    /// When it was published, Unix ms.
    pub(crate) spk_time: u64,
    /// The signed prekey.
    pub(crate) spk_pub: [u8; 32],
    /// The owner's identity signature over its binding.
    pub(crate) spk_sig: Box<[u8; 256]>,
    /// One-time prekeys (id, key), oldest first; at most `OPK_MAX`.
    pub(crate) opks: VecDeque<Opk>,
}

impl Default for Published {
    fn default() -> Published {
        Published { spk_id: 0, spk_time: 0, spk_pub: [0; 32], spk_sig: Box::new([0; 256]), opks: VecDeque::new() }
    }
}

impl Published {
    /// Whether a one-time prekey with `id` is kept.
    pub fn has_opk(&self, id: u32) -> bool {
        self.opks.iter().any(|(i, _)| *i == id)
    }

    /// The file bytes: head, one-time prekeys, SHA-256 of all that.
    pub fn encode(&self, uid: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + self.opks.len() * OPK_ENTRY + SUM);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&uid.to_be_bytes());
        out.extend_from_slice(&self.spk_id.to_be_bytes());
        out.extend_from_slice(&self.spk_time.to_be_bytes());
        out.extend_from_slice(&self.spk_pub);
        out.extend_from_slice(&self.spk_sig[..]);
        // NOTE: at most OPK_MAX (200) by the upload check.
        out.extend_from_slice(&(self.opks.len() as u16).to_be_bytes());
        for (id, key) in &self.opks {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(key);
        }
        checked::seal(&mut out);
        out
    }

    /// Parses and checks a prekey file; returns its owner and its prekeys.
    pub fn decode(bytes: &[u8]) -> Result<(u64, Published), &'static str> {
        let (mut r, entries) = checked::open(bytes, HEAD, MAX_FILE, MAGIC, VERSION)?;
        let uid = u64::from_be_bytes(r.take()?);
        let spk_id = u32::from_be_bytes(r.take()?);
        let spk_time = u64::from_be_bytes(r.take()?);
        let spk_pub = r.take::<32>()?;
        let spk_sig = Box::new(r.take::<256>()?);
        let count = usize::from(u16::from_be_bytes(r.take()?));
        if count > OPK_MAX || entries.len() != count * OPK_ENTRY {
            return Err("one-time prekey count out of range");
        }
        let mut opks = VecDeque::with_capacity(count);
        for c in entries.chunks_exact(OPK_ENTRY) {
            let mut e = Reader(c);
            let id = u32::from_be_bytes(e.take()?);
            let key = e.take::<32>()?;
            if id == 0 || opks.iter().any(|(i, _)| *i == id) {
                return Err("bad one-time prekey id");
            }
            opks.push_back((id, key));
        }
        Ok((uid, Published { spk_id, spk_time, spk_pub, spk_sig, opks }))
    }
}

/// Every user's published prekeys, as the core holds them.
#[derive(Default)]
pub struct Prekeys {
    users: HashMap<u64, Published>,
}

impl Prekeys {
    /// Adds a user's prekeys as loaded.
    pub(crate) fn insert(&mut self, uid: u64, p: Published) {
        self.users.insert(uid, p);
    }

    /// `uid`'s prekeys, if any were published.
    pub(crate) fn get(&self, uid: u64) -> Option<&Published> {
        self.users.get(&uid)
    }

    /// Forgets `uid`'s prekeys (an account deletion); whether it had any.
    pub(crate) fn remove(&mut self, uid: u64) -> bool {
        self.users.remove(&uid).is_some()
    }

    /// `uid`'s prekeys, created empty on first use.
    pub(crate) fn entry(&mut self, uid: u64) -> &mut Published {
        self.users.entry(uid).or_default()
    }

    /// Hands out `uid`'s signed prekey and its oldest one-time prekey (which
    /// leaves the store); None when no signed prekey was published.
    pub(crate) fn take_bundle(&mut self, uid: u64) -> Option<(Published, Option<Opk>)> {
        let p = self.users.get_mut(&uid).filter(|p| p.spk_id != 0)?;
        let opk = p.opks.pop_front();
        let spk = Published {
            spk_id: p.spk_id,
            spk_time: p.spk_time,
            spk_pub: p.spk_pub,
            spk_sig: p.spk_sig.clone(),
            opks: VecDeque::new(),
        };
        Some((spk, opk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Published {
        let mut p = Published { spk_id: 7, spk_time: 1234, spk_pub: [9; 32], ..Default::default() };
        p.spk_sig[0] = 0xaa;
        for id in 1..=OPK_MAX as u32 {
            p.opks.push_back((id, [id as u8; 32]));
        }
        p
    }

    #[test]
    fn roundtrips_and_rejects_corruption() {
        let p = sample();
        let bytes = p.encode(42);
        assert_eq!(bytes.len(), MAX_FILE);
        assert_eq!(Published::decode(&bytes).unwrap(), (42, p.clone()));
        let empty = Published::default().encode(5);
        assert_eq!(Published::decode(&empty).unwrap(), (5, Published::default()));
        for at in [0, 5, 20, HEAD - 1, HEAD + 3, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Published::decode(&bad).is_err(), "flipped byte {at}");
        }
        assert!(Published::decode(&bytes[..bytes.len() - OPK_ENTRY]).is_err(), "count and length disagree");
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; OPK_ENTRY]);
        assert_eq!(Published::decode(&long), Err("wrong size"), "bounded before anything is read");
    }

    #[test]
    fn rejects_an_over_count_even_with_a_good_checksum() {
        let mut bytes = Published::default().encode(1);
        bytes.truncate(bytes.len() - SUM);
        bytes[HEAD - 2..HEAD].copy_from_slice(&u16::MAX.to_be_bytes());
        let sum = crypto::sha256(&[&bytes]);
        bytes.extend_from_slice(&sum);
        assert_eq!(Published::decode(&bytes), Err("one-time prekey count out of range"));
    }

    #[test]
    fn low_order_keys_are_refused_and_the_list_is_right() {
        use x25519_dalek::{PublicKey, StaticSecret};
        let secret = StaticSecret::from([0x42; 32]);
        for (i, bad) in LOW_ORDER.iter().enumerate() {
            for top in [0, 0x80] {
                let mut k = *bad;
                k[31] |= top;
                assert!(!usable_key(&k), "entry {i} top {top:#x}");
                let shared = secret.diffie_hellman(&PublicKey::from(k));
                assert!(!shared.was_contributory(), "entry {i} is of low order");
            }
        }
        let good = PublicKey::from(&StaticSecret::from([7; 32]));
        assert!(usable_key(good.as_bytes()));
    }

    #[test]
    fn take_bundle_hands_out_the_oldest_one_time_prekey_once() {
        let mut all = Prekeys::default();
        assert!(all.take_bundle(1).is_none(), "nothing published");
        *all.entry(1) = Published { spk_id: 3, spk_pub: [5; 32], ..Default::default() };
        all.entry(1).opks.extend([(10, [1; 32]), (11, [2; 32])]);
        assert_eq!(all.take_bundle(1).unwrap().1, Some((10, [1; 32])));
        assert_eq!(all.take_bundle(1).unwrap().1, Some((11, [2; 32])));
        let (spk, none) = all.take_bundle(1).unwrap();
        assert_eq!((spk.spk_id, spk.spk_pub, none), (3, [5; 32], None));
    }
}
