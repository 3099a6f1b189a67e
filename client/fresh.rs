//! Local-state layer: what was already shown, so that a message the server
//! delivers again, replays, or restores from old data is never shown as new
//! (DESIGN §7, §9). Kept in the inbox file (see `inbox`).
//!
//! Invariant: for each source (the direct messages of one sender, or the
//! messages of one sender in one room) the client remembers the signed time
//! and id of each message it showed, and a floor. A message whose time and id
//! were shown is `Seen`; one signed before the floor is `Old`. (A room
//! message's id is its sender's request counter, which starts again with each
//! run of the sender's client: only time and id together identify it.) Memory is bounded:
//! when a source holds more ids than its limit, the oldest is forgotten and
//! the floor rises past it; when there are more sources than `SOURCES_MAX`,
//! the least recent source of the more numerous kind (direct or room) is forgotten
//! and the global floor rises past its newest message. No floor rises past
//! the receiving client's clock, so times signed in the future cannot make
//! later messages refused. Nothing is forgotten by age alone, so an old message is
//! never taken for new however long ago it was shown.
//!
//! Encoding: `global floor (8) || u32 sources || sources × (u8 len || scope ||
//! sender (8) || floor (8) || u32 count || count × (ts (8) || id (8)))`.

use std::collections::{BTreeMap, BTreeSet};

use crate::keystore::KeyFileError;
use crate::vault::{self, Reader};

/// The scope of direct messages (room names never start with `@`).
pub const DM_SCOPE: &str = "@";
/// Ids kept per DM sender: more than a mailbox window (256) delivered again.
pub const DM_IDS: usize = 512;
/// Ids kept per sender in a room: more than a room's history (20).
pub const ROOM_IDS: usize = 64;
/// Sources kept; beyond, the least recent is forgotten (under the global floor).
pub const SOURCES_MAX: usize = 1024;

/// How a message compares with what was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never shown.
    New,
    /// Its id was shown before.
    Seen,
    /// Signed before what this client still remembers of its sender.
    Old,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mark {
    floor: u64,
    /// (signed time, id), oldest first.
    shown: BTreeSet<(u64, u64)>,
}

impl Mark {
    fn newest(&self) -> u64 {
        self.shown.last().map_or(self.floor, |&(ts, _)| ts)
    }
}

/// The marks of every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    floor: u64,
    map: BTreeMap<(String, u64), Mark>,
}

impl Marks {
    /// How message `id` from `sender` in `scope`, signed at `ts`, compares with what was shown.
    pub fn check(&self, scope: &str, sender: u64, ts: u64, id: u64) -> Verdict {
        match self.map.get(&(scope.to_string(), sender)) {
            Some(m) if m.shown.contains(&(ts, id)) => Verdict::Seen,
            Some(m) if ts < m.floor => Verdict::Old,
            _ if ts < self.floor => Verdict::Old,
            _ => Verdict::New,
        }
    }

    /// Remembers that message `id` (signed at `ts`) from `sender` in `scope`
    /// was shown at `now` (this client's clock). A floor never rises past
    /// `now`: a time signed in the future (a sender's choice) cannot make
    /// messages signed later refused. Past [`SOURCES_MAX`] the least recent
    /// source of the more numerous kind (direct or room) is forgotten: the
    /// members a server lists in rooms cannot push the marks of direct
    /// messages out.
    pub fn record(&mut self, scope: &str, sender: u64, ts: u64, id: u64, now: u64) {
        let dm = scope == DM_SCOPE;
        let limit = if dm { DM_IDS } else { ROOM_IDS };
        let floor = self.floor;
        let m = self.map.entry((scope.to_string(), sender)).or_insert_with(|| Mark { floor, shown: BTreeSet::new() });
        m.shown.insert((ts, id));
        while m.shown.len() > limit {
            let Some((at, _)) = m.shown.pop_first() else { break };
            m.floor = m.floor.max(at.min(now).saturating_add(1));
        }
        while self.map.len() > SOURCES_MAX {
            // From the more numerous kind: a flood of room senders pushes out
            // room senders, and a new DM sender is not the one forgotten.
            let dms = self.map.keys().filter(|(s, _)| s == DM_SCOPE).count();
            let of_dms = dms * 2 > self.map.len();
            let of_kind = self.map.iter().filter(|((s, _), _)| (s == DM_SCOPE) == of_dms);
            let Some(key) = of_kind.min_by_key(|(_, m)| m.newest()).map(|(k, _)| k.clone()) else { break };
            if let Some(gone) = self.map.remove(&key) {
                self.floor = self.floor.max(gone.newest().min(now).saturating_add(1));
            }
        }
    }

    /// Appends the encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.floor.to_be_bytes());
        vault::put_count(out, self.map.len());
        for ((scope, sender), m) in &self.map {
            // Scopes are "@" or a room name (at most 32 bytes).
            out.push(scope.len().min(usize::from(u8::MAX)) as u8);
            out.extend_from_slice(scope.as_bytes());
            out.extend_from_slice(&sender.to_be_bytes());
            out.extend_from_slice(&m.floor.to_be_bytes());
            vault::put_count(out, m.shown.len());
            for (ts, id) in &m.shown {
                out.extend_from_slice(&ts.to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }

    /// Reads the encoding; anything malformed or beyond the bounds is damage.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Marks, KeyFileError> {
        let floor = r.u64()?;
        let sources = r.u32()? as usize;
        if sources > SOURCES_MAX {
            return Err(KeyFileError::Damaged);
        }
        let mut map = BTreeMap::new();
        for _ in 0..sources {
            let len = r.u8()?;
            let scope = std::str::from_utf8(r.slice(usize::from(len))?).map_err(|_| KeyFileError::Damaged)?;
            let scope_ok = scope == DM_SCOPE || sotto::room::normalize_name(scope).is_ok_and(|n| n == scope);
            if !scope_ok {
                return Err(KeyFileError::Damaged);
            }
            let (sender, mark_floor, count) = (r.u64()?, r.u64()?, r.u32()? as usize);
            if count > if scope == DM_SCOPE { DM_IDS } else { ROOM_IDS } {
                return Err(KeyFileError::Damaged);
            }
            let mut shown = BTreeSet::new();
            for _ in 0..count {
                shown.insert((r.u64()?, r.u64()?));
            }
            if map.insert((scope.to_string(), sender), Mark { floor: mark_floor, shown }).is_some() {
                return Err(KeyFileError::Damaged);
            }
        }
        Ok(Marks { floor, map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_id_is_seen_and_anything_before_the_floor_is_old() {
        let mut m = Marks::default();
        assert_eq!(m.check(DM_SCOPE, 7, 100, 1), Verdict::New);
        m.record(DM_SCOPE, 7, 100, 1, u64::MAX / 2);
        assert_eq!(m.check(DM_SCOPE, 7, 100, 1), Verdict::Seen);
        assert_eq!(m.check(DM_SCOPE, 7, 101, 1), Verdict::New, "the same id at another time: a new run's counter");
        assert_eq!(m.check(DM_SCOPE, 7, 5, 2), Verdict::New, "older but within what is remembered");
        assert_eq!(m.check("lobby", 7, 100, 1), Verdict::New, "another scope");
        for i in 0..DM_IDS as u64 {
            m.record(DM_SCOPE, 7, 200 + i, 10 + i, u64::MAX / 2);
        }
        assert_eq!(m.check(DM_SCOPE, 7, 100, 1), Verdict::Old, "forgotten, and below the floor");
        assert_eq!(m.check(DM_SCOPE, 7, 100, 99_999), Verdict::Old, "an unseen id signed before the floor");
        assert_eq!(m.check(DM_SCOPE, 7, 10_000, 99_999), Verdict::New);
        assert_eq!(m.check(DM_SCOPE, 7, 200 + DM_IDS as u64 - 1, 10 + DM_IDS as u64 - 1), Verdict::Seen);
    }

    #[test]
    fn sources_are_bounded_under_a_global_floor() {
        let mut m = Marks::default();
        for s in 0..=SOURCES_MAX as u64 {
            m.record(DM_SCOPE, s, 1_000 + s, 1, u64::MAX / 2);
        }
        assert_eq!(m.map.len(), SOURCES_MAX);
        assert_eq!(m.check(DM_SCOPE, 0, 1_000, 1), Verdict::Old, "the least recent source is gone, under the floor");
        assert_eq!(m.check(DM_SCOPE, 99_999, 500, 1), Verdict::Old, "an unknown sender below the global floor");
        assert_eq!(m.check(DM_SCOPE, 5, 1_005, 1), Verdict::Seen);
    }

    #[test]
    fn times_signed_in_the_future_and_room_members_cannot_refuse_later_direct_messages() {
        // A sender (or a server that knows a room's key and lists members
        // of its own) signs times far ahead, in more sources than are kept.
        let now = 1_000_000;
        let mut m = Marks::default();
        m.record(DM_SCOPE, 7, now - 10, 1, now);
        for i in 0..=DM_IDS as u64 {
            m.record(DM_SCOPE, 8, u64::MAX - i, i, now);
        }
        for s in 0..=SOURCES_MAX as u64 {
            m.record("lobby", 100 + s, u64::MAX - s, 1, now);
        }
        assert_eq!(m.check(DM_SCOPE, 7, now - 10, 1), Verdict::Seen, "a DM source is not pushed out by room sources");
        assert_eq!(m.check(DM_SCOPE, 7, now + 5, 2), Verdict::New);
        assert_eq!(m.check(DM_SCOPE, 8, now + 5, 99_999), Verdict::New, "the sender's floor stops at now");
        assert_eq!(m.check(DM_SCOPE, 9, now + 5, 1), Verdict::New, "the global floor stops at now");
        assert_eq!(m.check("lobby", 100_000, now + 5, 1), Verdict::New);
        assert_eq!(m.check(DM_SCOPE, 9, now - 10, 1), Verdict::Old, "what came before an eviction stays old");
        // A new DM sender among as many room senders is kept.
        m.record(DM_SCOPE, 9, now + 1, 1, now);
        assert_eq!(m.check(DM_SCOPE, 9, now + 1, 1), Verdict::Seen);
        assert_eq!(m.check(DM_SCOPE, 7, now - 10, 1), Verdict::Seen);
    }

    #[test]
    fn roundtrips_and_refuses_damage() {
        let mut m = Marks::default();
        m.record(DM_SCOPE, 7, 100, 1, u64::MAX / 2);
        m.record("lobby", 9, 50, 2, u64::MAX / 2);
        for i in 0..=ROOM_IDS as u64 {
            m.record("lobby", 3, i, i, u64::MAX / 2);
        }
        let mut out = Vec::new();
        m.encode_into(&mut out);
        let mut r = Reader::new(&out);
        assert_eq!(Marks::decode_from(&mut r).unwrap(), m);
        r.end().unwrap();
        for cut in [0, 7, 12, out.len() - 1] {
            let mut r = Reader::new(&out[..cut]);
            assert!(Marks::decode_from(&mut r).and_then(|_| r.end()).is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[13] = b'L'; // the first scope byte: "@" becomes "L"
        assert!(Marks::decode_from(&mut Reader::new(&bad)).is_err());
    }
}
