//! Names and UIDs of deleted accounts, kept from registration until
//! `--name-reserve` has passed (DESIGN §5), so that nobody takes a name or a
//! UID and is mistaken for the contact who held it (clients choose their
//! UIDs); stored in `<data>/retired.db`.
//!
//! Invariant: the file is bounded and checksummed and replaced atomically as
//! a whole; a name or UID is refused while its time has not passed, and an
//! entry whose time passed is dropped at the next write.

use std::collections::BTreeMap;

use crate::crypto;

const MAGIC: &[u8; 4] = b"SOTN";
/// Version 1 held names only; version 2 adds the UIDs (read both, write 2).
const VERSION: u8 = 2;
/// Most names (and most UIDs) the file may hold (a deletion adds one of
/// each; the file stays under 70 MiB).
pub(crate) const MAX_NAMES: usize = 1 << 20;
/// The file's size at most: a head, the names (length, at most 32 bytes,
/// until), the UIDs' count and entries (uid, until), the checksum.
pub(crate) const MAX_FILE: u64 = 9 + (1 + 32 + 8) * MAX_NAMES as u64 + 4 + 16 * MAX_NAMES as u64 + 32;

/// Retired names and UIDs and until when each is held, Unix ms.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
pub struct Retired {
    map: BTreeMap<String, u64>,
    uids: BTreeMap<u64, u64>,
}

impl Retired {
    /// Holds `name` and `uid` until `until_ms` (a later time wins).
    pub(crate) fn retire(&mut self, name: &str, uid: u64, until_ms: u64) {
        let at = self.map.entry(name.to_owned()).or_default();
        *at = (*at).max(until_ms);
        let at = self.uids.entry(uid).or_default();
        *at = (*at).max(until_ms);
    }

    /// Until when `name` is held, if it still is at `now_ms`.
    pub(crate) fn held_until(&self, name: &str, now_ms: u64) -> Option<u64> {
        self.map.get(name).copied().filter(|until| *until > now_ms)
    }

    /// Whether `uid` is held at `now_ms`.
    pub(crate) fn uid_held(&self, uid: u64, now_ms: u64) -> bool {
        self.uids.get(&uid).is_some_and(|until| *until > now_ms)
    }

    /// Forgets the names and UIDs whose time passed; whether any was.
    pub(crate) fn prune(&mut self, now_ms: u64) -> bool {
        let before = (self.map.len(), self.uids.len());
        self.map.retain(|_, until| *until > now_ms);
        self.uids.retain(|_, until| *until > now_ms);
        (self.map.len(), self.uids.len()) != before
    }

    /// How many names are held (expired ones too, until pruned).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The file bytes: magic, version, count, (u8 length, name, u64 until)
    /// per name, count, (u64 uid, u64 until) per UID, SHA-256 of all that.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.map.len() * 41 + 4 + self.uids.len() * 16 + 32);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.map.len() as u32).to_be_bytes());
        for (name, until) in &self.map {
            // NOTE: names are canonical user names, 3 to 32 bytes.
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&until.to_be_bytes());
        }
        out.extend_from_slice(&(self.uids.len() as u32).to_be_bytes());
        for (uid, until) in &self.uids {
            out.extend_from_slice(&uid.to_be_bytes());
            out.extend_from_slice(&until.to_be_bytes());
        }
        let sum = crypto::sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checks the file.
    pub fn decode(bytes: &[u8]) -> Result<Retired, &'static str> {
        if bytes.len() < 9 + 32 || &bytes[..4] != MAGIC || !(1..=VERSION).contains(&bytes[4]) {
            return Err("bad magic, version or size");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
            return Err("checksum mismatch");
        }
        let count = u32::from_be_bytes([body[5], body[6], body[7], body[8]]) as usize;
        if count > MAX_NAMES {
            return Err("count out of range");
        }
        let mut map = BTreeMap::new();
        let mut rest = &body[9..];
        for _ in 0..count {
            let (&len, after) = rest.split_first().ok_or("truncated")?;
            let (name, after) = after.split_at_checked(usize::from(len)).ok_or("truncated")?;
            let (until, after) = after.split_at_checked(8).ok_or("truncated")?;
            let name = std::str::from_utf8(name).map_err(|_| "bad name")?;
            if crate::account::normalize_username(name).ok().as_deref() != Some(name) {
                return Err("bad name");
            }
            map.insert(name.to_owned(), u64::from_be_bytes(until.try_into().map_err(|_| "truncated")?));
            rest = after;
        }
        let mut uids = BTreeMap::new();
        if body[4] >= 2 {
            let (count, after) = rest.split_at_checked(4).ok_or("truncated")?;
            let count = u32::from_be_bytes(count.try_into().map_err(|_| "truncated")?) as usize;
            if count > MAX_NAMES || after.len() != count * 16 {
                return Err("UID count out of range or trailing bytes");
            }
            for entry in after.chunks_exact(16) {
                let (uid, until) = entry.split_at(8);
                let (Ok(uid), Ok(until)) = (uid.try_into(), until.try_into()) else { return Err("truncated") };
                uids.insert(u64::from_be_bytes(uid), u64::from_be_bytes(until));
            }
            rest = &[];
        }
        if !rest.is_empty() {
            return Err("trailing bytes");
        }
        Ok(Retired { map, uids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_names_until_their_time_and_roundtrips() {
        let mut r = Retired::default();
        r.retire("alice", 7, 100);
        r.retire("bob", 8, 50);
        r.retire("alice", 7, 90);
        assert_eq!((r.held_until("alice", 99), r.held_until("alice", 100)), (Some(100), None));
        assert_eq!(r.held_until("carol", 0), None);
        assert_eq!(
            (r.uid_held(7, 99), r.uid_held(7, 100), r.uid_held(8, 49), r.uid_held(9, 0)),
            (true, false, true, false)
        );
        let back = Retired::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert!(r.prune(60) && !r.prune(60));
        assert_eq!((r.len(), r.held_until("bob", 0)), (1, None));
        let bytes = back.encode();
        for i in [0, 4, 8, 12, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(Retired::decode(&b).is_err(), "flip at {i}");
        }
        assert!(Retired::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn reads_a_version_1_file_of_names_only() {
        let mut v1 = MAGIC.to_vec();
        v1.push(1);
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.push(5);
        v1.extend_from_slice(b"alice");
        v1.extend_from_slice(&100u64.to_be_bytes());
        let sum = crypto::sha256(&[&v1]);
        v1.extend_from_slice(&sum);
        let r = Retired::decode(&v1).unwrap();
        assert_eq!((r.held_until("alice", 0), r.uids.len()), (Some(100), 0));
        assert_eq!(r.encode()[4], 2);
    }
}
