//! Rooms in memory and their file format (DESIGN §6): salt, verifier, owner,
//! members, and a ring of the last 20 end-to-end encrypted messages.
//!
//! Invariant: the server holds only the salt, SHA-256 of the auth key and
//! ciphertexts; a decoded file has been bounded (members, history) before
//! any allocation and its checksum verified.

use std::collections::{BTreeMap, VecDeque};

use crate::crypto;
use crate::opcodes::{RoomEntry, RoomRecord};
use crate::room::HISTORY;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Magic of a room file.
pub(crate) const ROOM_MAGIC: [u8; 4] = *b"SOTR";
/// Version of the room file format.
pub(crate) const ROOM_VERSION: u16 = 1;
/// Most members a room may have.
pub(crate) const MAX_MEMBERS: usize = 65_536;

const HEAD: usize = core::mem::size_of::<RoomRecord>();
const ENTRY: usize = core::mem::size_of::<RoomEntry>();

/// One room.
#[derive(Clone)]
pub struct Room {
    /// Canonical name.
    pub(crate) name: String,
    /// Salt for the members' key derivation.
    pub(crate) salt: [u8; 16],
    /// SHA-256 of the auth key.
    pub(crate) verifier: [u8; 32],
    /// Owner's UID.
    pub(crate) owner: u64,
    /// Creation time, Unix ms.
    pub(crate) created: u64,
    /// Member UIDs in joining order.
    pub(crate) members: Vec<u64>,
    /// The last `HISTORY` messages, oldest first.
    pub(crate) history: VecDeque<RoomEntry>,
    /// Messages pushed since the room was loaded or created (the newest
    /// entry's number), and how many of those a finished commit made durable:
    /// a join's history shows only durable entries, so that what a reader saw
    /// survives a crash.
    pub(crate) pushed: u64,
    pub(crate) durable: u64,
}

impl Room {
    /// Whether `uid` is a member.
    pub(crate) fn is_member(&self, uid: u64) -> bool {
        self.members.contains(&uid)
    }

    /// Appends a message, dropping the oldest beyond `HISTORY`.
    pub(crate) fn push(&mut self, entry: RoomEntry) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(entry);
        self.pushed += 1;
    }

    /// The kept messages a commit has made durable, oldest first.
    pub(crate) fn durable_history(&self) -> impl Iterator<Item = &RoomEntry> {
        let undurable = usize::try_from(self.pushed.saturating_sub(self.durable)).unwrap_or(usize::MAX);
        self.history.iter().take(self.history.len().saturating_sub(undurable))
    }

    /// The file bytes: head, member UIDs, entries, SHA-256 of all that.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut head = RoomRecord::new_zeroed();
        head.magic = ROOM_MAGIC;
        head.version.set(ROOM_VERSION);
        // NOTE: names are validated to 32 bytes before a Room exists.
        let _ = head.set_name(&self.name);
        head.salt = self.salt;
        head.verifier = self.verifier;
        head.owner.set(self.owner);
        head.created.set(self.created);
        head.member_count.set(self.members.len() as u32);
        head.history_count.set(self.history.len() as u32);
        let mut out = Vec::with_capacity(HEAD + 8 * self.members.len() + ENTRY * self.history.len() + 32);
        out.extend_from_slice(head.as_bytes());
        for uid in &self.members {
            out.extend_from_slice(&uid.to_be_bytes());
        }
        for e in &self.history {
            out.extend_from_slice(e.as_bytes());
        }
        let sum = crypto::sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checks a room file.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Room, &'static str> {
        let (head, rest) = RoomRecord::read_from_prefix(bytes).map_err(|_| "truncated head")?;
        if head.magic != ROOM_MAGIC || head.version.get() != ROOM_VERSION {
            return Err("bad magic or version");
        }
        let members = head.member_count.get() as usize;
        let history = head.history_count.get() as usize;
        if members > MAX_MEMBERS || history > HISTORY {
            return Err("counts out of range");
        }
        if rest.len() != members * 8 + history * ENTRY + 32 {
            return Err("wrong size");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
            return Err("checksum mismatch");
        }
        let name = head.name().map_err(|_| "bad name")?;
        let name = crate::room::normalize_name(name).map_err(|_| "bad name")?;
        let (uids, entries) = rest.split_at(members * 8);
        let members = uids.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())).collect();
        let history =
            entries.chunks_exact(ENTRY).filter_map(|c| RoomEntry::read_from_bytes(c).ok()).collect::<VecDeque<_>>();
        Ok(Room {
            name,
            salt: head.salt,
            verifier: head.verifier,
            owner: head.owner.get(),
            created: head.created.get(),
            members,
            pushed: history.len() as u64,
            durable: history.len() as u64,
            history,
        })
    }
}

/// Every room, by name.
#[derive(Default)]
pub struct Rooms {
    map: BTreeMap<String, Room>,
}

impl Rooms {
    /// Adds or replaces a room.
    pub fn insert(&mut self, room: Room) {
        self.map.insert(room.name.clone(), room);
    }

    /// The room named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Room> {
        self.map.get(name)
    }

    /// The room named `name`, mutably.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.map.get_mut(name)
    }

    /// Removes a room.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Room> {
        self.map.remove(name)
    }

    /// Rooms in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Room> {
        self.map.values()
    }

    /// Number of rooms.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no room.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        let mut r = Room {
            name: "lobby".into(),
            salt: [1; 16],
            verifier: [2; 32],
            owner: 9,
            created: 5,
            members: vec![9, 10],
            history: VecDeque::new(),
            pushed: 0,
            durable: 0,
        };
        for i in 0..25u64 {
            let mut e = RoomEntry::new_zeroed();
            e.sent_msg_id.set(i);
            r.push(e);
        }
        r
    }

    #[test]
    fn durable_history_leaves_out_what_no_commit_finished() {
        let mut r = room();
        assert_eq!(r.history.len(), 20);
        assert_eq!(r.durable_history().count(), 0);
        r.durable = 23;
        let ids: Vec<u64> = r.durable_history().map(|e| e.sent_msg_id.get()).collect();
        assert_eq!(ids, (5..23).collect::<Vec<_>>());
        r.durable = 25;
        assert_eq!(r.durable_history().count(), 20);
        let back = Room::decode(&r.encode()).unwrap();
        assert_eq!((back.pushed, back.durable, back.durable_history().count()), (20, 20, 20));
    }

    #[test]
    fn keeps_the_last_twenty_and_roundtrips() {
        let r = room();
        assert_eq!(r.history.len(), HISTORY);
        assert_eq!(r.history.front().unwrap().sent_msg_id.get(), 5);
        let back = Room::decode(&r.encode()).unwrap();
        assert_eq!((back.name.as_str(), back.owner, back.members.clone()), ("lobby", 9, vec![9, 10]));
        let ids: Vec<u64> = back.history.iter().map(|e| e.sent_msg_id.get()).collect();
        assert_eq!(ids, (5..25).collect::<Vec<_>>());
    }

    #[test]
    fn rejects_flipped_truncated_or_oversized_files() {
        let bytes = room().encode();
        for i in [0, 10, HEAD + 3, bytes.len() - 100, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(Room::decode(&b).is_err(), "flip at {i}");
        }
        assert!(Room::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut huge = bytes.clone();
        huge[HEAD - 8..HEAD - 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Room::decode(&huge).err(), Some("counts out of range"));
    }
}
