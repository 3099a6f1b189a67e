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

/// A pair's state as one byte (the cluster store keeps one record per
/// pair): the lower UID asked the higher, the higher asked the lower, they
/// accepted each other. 0: nothing between them.
pub(crate) const ASKED_UP: u8 = 1;
pub(crate) const ASKED_DOWN: u8 = 2;
pub(crate) const ACCEPTED: u8 = 4;

/// Requests and accepted pairs.
#[derive(Default, Clone, Debug)]
pub struct Contacts {
    /// (requester, target).
    requests: BTreeSet<(u64, u64)>,
    /// (lower UID, higher UID).
    accepted: BTreeSet<(u64, u64)>,
    /// Pairs (lower UID, higher UID) changed since [`Contacts::take_changed`].
    changed: BTreeSet<(u64, u64)>,
}

impl PartialEq for Contacts {
    fn eq(&self, other: &Contacts) -> bool {
        (&self.requests, &self.accepted) == (&other.requests, &other.accepted)
    }
}

impl Eq for Contacts {}

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
        self.changed.insert(pair(from, to));
    }

    /// `to` accepts `from`'s request; false if there was none.
    pub fn accept(&mut self, from: u64, to: u64) -> bool {
        if !self.requests.remove(&(from, to)) {
            return false;
        }
        self.requests.remove(&(to, from));
        self.accepted.insert(pair(from, to));
        self.changed.insert(pair(from, to));
        true
    }

    /// `to` rejects `from`'s request; false if there was none.
    pub fn reject(&mut self, from: u64, to: u64) -> bool {
        let had = self.requests.remove(&(from, to));
        if had {
            self.changed.insert(pair(from, to));
        }
        had
    }

    /// Forgets every request and pair `uid` is part of (an account
    /// deletion); whether there was any.
    pub fn forget(&mut self, uid: u64) -> bool {
        let before = self.requests.len() + self.accepted.len();
        let involves = |(a, b): &(u64, u64)| *a == uid || *b == uid;
        let gone: Vec<(u64, u64)> =
            self.requests.iter().chain(&self.accepted).filter(|p| involves(p)).copied().collect();
        self.changed.extend(gone.into_iter().map(|(a, b)| pair(a, b)));
        self.requests.retain(|p| !involves(p));
        self.accepted.retain(|p| !involves(p));
        before != self.requests.len() + self.accepted.len()
    }

    /// The state of the pair `lo`, `hi` (`lo` < `hi`): [`ASKED_UP`],
    /// [`ASKED_DOWN`] and [`ACCEPTED`] or'ed, 0 for nothing.
    pub(crate) fn state(&self, (lo, hi): (u64, u64)) -> u8 {
        let mut s = 0;
        if self.requests.contains(&(lo, hi)) {
            s |= ASKED_UP;
        }
        if self.requests.contains(&(hi, lo)) {
            s |= ASKED_DOWN;
        }
        if self.accepted.contains(&(lo, hi)) {
            s |= ACCEPTED;
        }
        s
    }

    /// Sets the pair `lo`, `hi` to `state` (as [`Contacts::state`] says it),
    /// as loaded: not a change.
    pub(crate) fn set_state(&mut self, (lo, hi): (u64, u64), state: u8) {
        for (bit, p) in [(ASKED_UP, (lo, hi)), (ASKED_DOWN, (hi, lo))] {
            if state & bit != 0 {
                self.requests.insert(p);
            } else {
                self.requests.remove(&p);
            }
        }
        if state & ACCEPTED != 0 {
            self.accepted.insert((lo, hi));
        } else {
            self.accepted.remove(&(lo, hi));
        }
    }

    /// Every pair with something between them (lower UID, higher UID).
    pub(crate) fn pairs(&self) -> BTreeSet<(u64, u64)> {
        self.requests.iter().map(|&(a, b)| pair(a, b)).chain(self.accepted.iter().copied()).collect()
    }

    /// The pairs changed since the last call (they are to be written).
    pub(crate) fn take_changed(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Pairs whose write failed: they are written again with the next commit.
    pub(crate) fn changed_again(&mut self, pairs: impl IntoIterator<Item = (u64, u64)>) {
        self.changed.extend(pairs);
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
        Ok(Contacts { requests, accepted, changed: BTreeSet::new() })
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

    #[test]
    fn every_change_names_its_pair_and_states_rebuild_the_same_contacts() {
        let mut c = Contacts::default();
        c.request(5, 2);
        c.request(2, 5);
        c.request(7, 1);
        assert_eq!(c.take_changed(), [(1, 7), (2, 5)]);
        assert_eq!((c.state((2, 5)), c.state((1, 7))), (ASKED_UP | ASKED_DOWN, ASKED_DOWN));
        assert!(c.accept(5, 2));
        assert!(!c.reject(9, 1), "no request: no change");
        assert_eq!(c.take_changed(), [(2, 5)]);
        assert_eq!(c.state((2, 5)), ACCEPTED, "an accept clears both requests");
        c.request(2, 9);
        c.take_changed();
        assert!(c.forget(2));
        assert_eq!(c.take_changed(), [(2, 5), (2, 9)]);
        assert_eq!((c.state((2, 5)), c.state((2, 9))), (0, 0));

        let mut rebuilt = Contacts::default();
        for p in c.pairs() {
            rebuilt.set_state(p, c.state(p));
        }
        assert_eq!(rebuilt, c);
        assert!(rebuilt.take_changed().is_empty(), "a load is not a change");
        rebuilt.set_state((1, 7), 0);
        assert!(rebuilt.pairs().is_empty());
    }
}
