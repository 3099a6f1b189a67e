//! Announcements (issue 15): texts an admin or the operator sends to every
//! user; online users get them at once, the others at their next login until
//! the announcement's time runs out. Stored as `<data>/announcements.db`.
//!
//! Invariant: at most `MAX_KEPT` are kept (the oldest go first), ids only
//! grow (a user's `announce_seen` stays meaningful across restarts), and the
//! file is checked whole (magic, version, bounds, SHA-256) before use.

use crate::crypto;

/// Magic of the announcements file.
const MAGIC: [u8; 4] = *b"SOTN";
/// Version of its format.
const VERSION: u16 = 1;
/// Announcements kept at most.
pub const MAX_KEPT: usize = 64;
/// How long an announcement waits for users not online by default: 7 days.
pub const DEFAULT_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Largest announcements file the loader takes.
const MAX_FILE: usize = 64 * 1024;

/// One announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Its id (growing).
    pub id: u64,
    /// When it was made, Unix ms.
    pub ts: u64,
    /// After this it is no longer delivered, Unix ms.
    pub expires: u64,
    /// Who made it: an admin's name or `operator`.
    pub from: String,
    /// The text (at most 255 bytes).
    pub text: String,
}

/// The kept announcements, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Announcements {
    /// Oldest first.
    pub list: Vec<Announcement>,
    /// The last id given.
    pub last_id: u64,
}

impl Announcements {
    /// Adds one; returns it. The oldest goes when `MAX_KEPT` are kept.
    pub fn add(&mut self, from: &str, text: &str, now_ms: u64, ttl_ms: u64) -> Announcement {
        self.last_id += 1;
        let a = Announcement {
            id: self.last_id,
            ts: now_ms,
            expires: now_ms.saturating_add(if ttl_ms == 0 { DEFAULT_TTL_MS } else { ttl_ms }),
            from: crate::server::acct::cut(from, 32).to_owned(),
            text: crate::server::acct::cut(text, 255).to_owned(),
        };
        self.list.push(a.clone());
        if self.list.len() > MAX_KEPT {
            self.list.remove(0);
        }
        a
    }

    /// Drops those whose time ran out; true when any went.
    pub fn prune(&mut self, now_ms: u64) -> bool {
        let before = self.list.len();
        self.list.retain(|a| a.expires > now_ms);
        self.list.len() != before
    }

    /// Those a user who has seen up to `seen` has still to get, oldest first.
    pub fn due(&self, seen: u64, now_ms: u64) -> impl Iterator<Item = &Announcement> {
        self.list.iter().filter(move |a| a.id > seen && a.expires > now_ms)
    }

    /// The file's bytes: magic, version, last id, count, then per
    /// announcement id, ts, expires, from and text (one-byte lengths), then a SHA-256.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.last_id.to_be_bytes());
        out.extend_from_slice(&(self.list.len() as u16).to_be_bytes());
        for a in &self.list {
            for n in [a.id, a.ts, a.expires] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            for s in [&a.from, &a.text] {
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
        }
        let sum = crypto::sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// The file, checked.
    pub fn decode(bytes: &[u8]) -> Result<Announcements, &'static str> {
        if bytes.len() > MAX_FILE {
            return Err("too large");
        }
        let body_len = bytes.len().checked_sub(32).ok_or("truncated")?;
        let (body, sum) = bytes.split_at(body_len);
        if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
            return Err("checksum mismatch");
        }
        let mut r = Reader(body);
        if r.take(4)? != MAGIC || r.u16()? != VERSION {
            return Err("bad magic or version");
        }
        let last_id = r.u64()?;
        let count = usize::from(r.u16()?);
        if count > MAX_KEPT {
            return Err("too many announcements");
        }
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            let (id, ts, expires) = (r.u64()?, r.u64()?, r.u64()?);
            let from = r.text()?;
            let text = r.text()?;
            if id > last_id {
                return Err("id beyond the last one given");
            }
            list.push(Announcement { id, ts, expires, from, text });
        }
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok(Announcements { list, last_id })
    }
}

/// A cursor over the file's bytes; every read is bounded.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn text(&mut self) -> Result<String, &'static str> {
        let n = usize::from(*self.take(1)?.first().ok_or("truncated")?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "bad text")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_keeps_the_newest_and_refuses_damage() {
        let mut a = Announcements::default();
        for i in 0..70 {
            a.add("operator", &format!("maintenance {i}"), 1_000, 0);
        }
        assert_eq!((a.list.len(), a.list[0].id, a.last_id), (MAX_KEPT, 7, 70));
        let bytes = a.encode();
        assert_eq!(Announcements::decode(&bytes), Ok(a.clone()));
        for at in [0, 5, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Announcements::decode(&bad).is_err(), "byte {at}");
        }
        assert!(Announcements::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn due_skips_the_seen_and_the_expired() {
        let mut a = Announcements::default();
        a.add("admin", "one", 0, 10);
        a.add("admin", "two", 0, 100);
        a.add("admin", "three", 0, 100);
        let due: Vec<&str> = a.due(2, 50).map(|x| x.text.as_str()).collect();
        assert_eq!(due, ["three"]);
        let due: Vec<&str> = a.due(0, 50).map(|x| x.text.as_str()).collect();
        assert_eq!(due, ["two", "three"], "one expired at 10");
        assert!(a.prune(50) && a.list.len() == 2);
    }
}
