//! Names of deleted accounts, kept from registration until `--name-reserve`
//! has passed (DESIGN §5), so that nobody takes a name and is mistaken for
//! the contact who held it; stored in `<data>/retired.db`.
//!
//! Invariant: the file is bounded and checksummed and replaced atomically as
//! a whole; a name is refused while its time has not passed, and an entry
//! whose time passed is dropped at the next write.

use std::collections::BTreeMap;

use crate::crypto;

const MAGIC: &[u8; 4] = b"SOTN";
const VERSION: u8 = 1;
/// Most names the file may hold (a deletion adds one; the file stays under 50 MiB).
pub(crate) const MAX_NAMES: usize = 1 << 20;
/// The file's size at most: a head, the names (length, at most 32 bytes, until), the checksum.
pub(crate) const MAX_FILE: u64 = 9 + (1 + 32 + 8) * MAX_NAMES as u64 + 32;

/// Retired names and until when each is held, Unix ms.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
pub struct Retired {
    map: BTreeMap<String, u64>,
}

impl Retired {
    /// Holds `name` until `until_ms` (a later time wins).
    pub(crate) fn retire(&mut self, name: &str, until_ms: u64) {
        let at = self.map.entry(name.to_owned()).or_default();
        *at = (*at).max(until_ms);
    }

    /// Until when `name` is held, if it still is at `now_ms`.
    pub(crate) fn held_until(&self, name: &str, now_ms: u64) -> Option<u64> {
        self.map.get(name).copied().filter(|until| *until > now_ms)
    }

    /// Forgets the names whose time passed; whether any was.
    pub(crate) fn prune(&mut self, now_ms: u64) -> bool {
        let before = self.map.len();
        self.map.retain(|_, until| *until > now_ms);
        self.map.len() != before
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
    /// per name, SHA-256 of all that.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.map.len() * 41 + 32);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.map.len() as u32).to_be_bytes());
        for (name, until) in &self.map {
            // NOTE: names are canonical user names, 3 to 32 bytes.
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&until.to_be_bytes());
        }
        let sum = crypto::sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checks the file.
    pub fn decode(bytes: &[u8]) -> Result<Retired, &'static str> {
        if bytes.len() < 9 + 32 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
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
        if !rest.is_empty() {
            return Err("trailing bytes");
        }
        Ok(Retired { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_names_until_their_time_and_roundtrips() {
        let mut r = Retired::default();
        r.retire("alice", 100);
        r.retire("bob", 50);
        r.retire("alice", 90);
        assert_eq!((r.held_until("alice", 99), r.held_until("alice", 100)), (Some(100), None));
        assert_eq!(r.held_until("carol", 0), None);
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
}
