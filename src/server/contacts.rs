//! Who may send direct messages to whom (DESIGN §7): pending requests and
//! accepted pairs, stored in `<data>/contacts.db`.
//!
//! Invariant: a DM is routed only between an accepted pair; the file is
//! bounded and checksummed, and replaced atomically as a whole.

use std::collections::BTreeSet;

use crate::crypto;

const MAGIC: &[u8; 4] = b"SOTC";
const VERSION: u8 = 1;
/// Most pairs of each kind the file may hold.
const MAX_PAIRS: usize = 1 << 22;
/// The contacts file's size at most: both kinds of pairs (16 bytes each), a generous head, the checksum.
pub(crate) const MAX_FILE: u64 = 2 * 16 * MAX_PAIRS as u64 + 4096;

/// Requests and accepted pairs.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
pub struct Contacts {
    /// (requester, target).
    requests: BTreeSet<(u64, u64)>,
    /// (lower UID, higher UID).
    accepted: BTreeSet<(u64, u64)>,
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

impl Contacts {
    /// Whether `a` and `b` accepted each other.
    pub fn accepted(&self, a: u64, b: u64) -> bool {
        self.accepted.contains(&pair(a, b))
    }

    /// Whether `from` asked `to` and is waiting.
    pub fn requested(&self, from: u64, to: u64) -> bool {
        self.requests.contains(&(from, to))
    }

    /// Records a request.
    pub fn request(&mut self, from: u64, to: u64) {
        self.requests.insert((from, to));
    }

    /// `to` accepts `from`'s request; false if there was none.
    pub fn accept(&mut self, from: u64, to: u64) -> bool {
        if !self.requests.remove(&(from, to)) {
            return false;
        }
        self.requests.remove(&(to, from));
        self.accepted.insert(pair(from, to));
        true
    }

    /// `to` rejects `from`'s request; false if there was none.
    pub fn reject(&mut self, from: u64, to: u64) -> bool {
        self.requests.remove(&(from, to))
    }

    /// Forgets every request and pair `uid` is part of (an account
    /// deletion); whether there was any.
    pub fn forget(&mut self, uid: u64) -> bool {
        let before = self.requests.len() + self.accepted.len();
        self.requests.retain(|(a, b)| *a != uid && *b != uid);
        self.accepted.retain(|(a, b)| *a != uid && *b != uid);
        before != self.requests.len() + self.accepted.len()
    }

    /// Everyone `uid` accepted or was accepted by.
    pub fn of(&self, uid: u64) -> Vec<u64> {
        self.accepted.iter().filter_map(|&(a, b)| (a == uid).then_some(b).or((b == uid).then_some(a))).collect()
    }

    /// The file bytes: magic, version, counts, pairs, SHA-256.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 16 * (self.requests.len() + self.accepted.len()) + 32);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        for set in [&self.requests, &self.accepted] {
            out.extend_from_slice(&(set.len() as u32).to_be_bytes());
            for (a, b) in set {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
            }
        }
        let sum = crypto::sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checks the file.
    pub fn decode(bytes: &[u8]) -> Result<Contacts, &'static str> {
        if bytes.len() < 5 + 8 + 32 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err("bad magic, version or size");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
            return Err("checksum mismatch");
        }
        let mut at = 5;
        let mut sets = [BTreeSet::new(), BTreeSet::new()];
        for set in &mut sets {
            let n = body
                .get(at..at + 4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
                .ok_or("truncated")?;
            at += 4;
            if n > MAX_PAIRS || body.len() < at + 16 * n {
                return Err("count out of range");
            }
            for c in body[at..at + 16 * n].chunks_exact(16) {
                let a = u64::from_be_bytes(c[..8].try_into().map_err(|_| "truncated")?);
                let b = u64::from_be_bytes(c[8..].try_into().map_err(|_| "truncated")?);
                set.insert((a, b));
            }
            at += 16 * n;
        }
        if at != body.len() {
            return Err("trailing bytes");
        }
        let [requests, accepted] = sets;
        Ok(Contacts { requests, accepted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accept_reject_and_roundtrip() {
        let mut c = Contacts::default();
        c.request(1, 2);
        c.request(3, 2);
        assert!(c.requested(1, 2) && !c.accepted(1, 2));
        assert!(!c.accept(2, 1), "only the target accepts");
        assert!(c.accept(1, 2));
        assert!(c.accepted(2, 1) && !c.requested(1, 2));
        assert!(c.reject(3, 2) && !c.reject(3, 2));
        assert_eq!(c.of(2), [1]);
        let mut gone = c.clone();
        gone.request(2, 5);
        assert!(gone.forget(2) && !gone.forget(2));
        assert!(gone.of(1).is_empty() && !gone.requested(2, 5));
        let back = Contacts::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        let mut bad = c.encode();
        bad[6] ^= 1;
        assert!(Contacts::decode(&bad).is_err());
        assert!(Contacts::decode(&bad[..10]).is_err());
    }
}
