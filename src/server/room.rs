//! Rooms in memory and their file format (DESIGN §6): salt, verifier, owner,
//! members, banned users, and a ring of the last 20 end-to-end encrypted
//! messages, some of them tombstones of removed ones.
//!
//! Invariant: the server holds only the salt, SHA-256 of the auth key and
//! ciphertexts; a decoded file has been bounded (members, history) before
//! any allocation and its checksum verified.

use std::collections::{BTreeMap, VecDeque};

use crate::crypto;
use crate::opcodes::{Class, RoomEntry, RoomRecord};
use crate::room::HISTORY;
use crate::server::store::RoomWrite;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Magic of a room file.
pub(crate) const ROOM_MAGIC: [u8; 4] = *b"SOTR";
/// Version of the room file format: 3 has tombstones and the banned users;
/// 2 (size classes) and 1 (every body 1,040 bytes, which is class `m`) are still read.
pub(crate) const ROOM_VERSION: u16 = 3;
/// `RoomEntry.class` of a tombstone: no body; the IV's first 8 bytes hold the remover's UID.
pub(crate) const TOMBSTONE: u8 = b'd';
/// Most members a room may have.
pub(crate) const MAX_MEMBERS: usize = 65_536;

const HEAD: usize = core::mem::size_of::<RoomRecord>();
const ENTRY: usize = core::mem::size_of::<RoomEntry>();
/// A version-1 entry: four u64, IV, 1,040-byte body, tag, signature.
const ENTRY_V1: usize = 32 + 16 + 1040 + 32 + 256;

/// One kept message: its head (sender, times, class, IV, tag, signature) and
/// its class-sized body.
#[derive(Clone)]
pub struct Kept {
    /// As stored.
    pub(crate) head: RoomEntry,
    /// The body's class (`head.class` parsed).
    pub(crate) class: Class,
    /// The encrypted body, `class.body()` bytes.
    pub(crate) body: Box<[u8]>,
}

impl Kept {
    /// Whether this entry is a tombstone (the message was removed).
    pub(crate) fn is_tombstone(&self) -> bool {
        self.head.class == TOMBSTONE
    }

    /// Who removed the message (a tombstone's), else 0.
    pub(crate) fn removed_by(&self) -> u64 {
        if !self.is_tombstone() {
            return 0;
        }
        let iv = &self.head.iv;
        u64::from_be_bytes([iv[0], iv[1], iv[2], iv[3], iv[4], iv[5], iv[6], iv[7]])
    }

    /// The tombstone of this message, removed by `by`: who sent it and when
    /// stay (they name it); the ciphertext, tag and signature go.
    pub(crate) fn tombstone(&self, by: u64) -> Kept {
        let mut head = self.head;
        head.class = TOMBSTONE;
        head.iv = [0; 16];
        head.iv[..8].copy_from_slice(&by.to_be_bytes());
        head.tag = [0; 32];
        head.signature = [0; 256];
        Kept { head, class: self.class, body: Box::default() }
    }

    /// Reads one entry of a version-2 or -3 file from the front of `bytes`
    /// (tombstones only in version 3).
    fn read(bytes: &[u8], version: u16) -> Result<(Kept, &[u8]), &'static str> {
        let (head, rest) = RoomEntry::read_from_prefix(bytes).map_err(|_| "truncated entry")?;
        if head.class == TOMBSTONE && version >= 3 {
            return Ok((Kept { head, class: Class::S, body: Box::default() }, rest));
        }
        let class = Class::from_letter(head.class).ok_or("bad size class")?;
        let (body, rest) = rest.split_at_checked(class.body()).ok_or("truncated entry")?;
        Ok((Kept { head, class, body: body.into() }, rest))
    }

    /// Reads one version-1 entry (a class `m` body).
    fn read_v1(c: &[u8]) -> Result<Kept, &'static str> {
        let mut head = RoomEntry::new_zeroed();
        let (times, rest) = c.split_at_checked(32).ok_or("truncated entry")?;
        let (iv, rest) = rest.split_at_checked(16).ok_or("truncated entry")?;
        let (body, rest) = rest.split_at_checked(1040).ok_or("truncated entry")?;
        let (tag, sig) = rest.split_at_checked(32).ok_or("truncated entry")?;
        head.as_mut_bytes()[..32].copy_from_slice(times);
        head.class = b'm';
        head.iv.copy_from_slice(iv);
        head.tag.copy_from_slice(tag);
        head.signature.copy_from_slice(sig.get(..256).ok_or("truncated entry")?);
        Ok(Kept { head, class: Class::M, body: body.into() })
    }
}

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
    /// Member UIDs in joining order (the first is the longest-standing).
    pub(crate) members: Vec<u64>,
    /// Users the owner banned: their joins are refused.
    pub(crate) banned: Vec<u64>,
    /// The last `HISTORY` messages, oldest first.
    pub(crate) history: VecDeque<Kept>,
    /// Messages pushed since the room was loaded or created (the newest
    /// entry's number), and how many of those a finished commit made durable:
    /// a join's history shows only durable entries, so that what a reader saw
    /// survives a crash.
    pub(crate) pushed: u64,
    pub(crate) durable: u64,
    /// `pushed` when the room's last write was made ([`Room::write`]).
    pub(crate) emitted: u64,
    /// The history changed since the last write other than by pushes, or
    /// the room is new: its next write carries the whole history.
    pub(crate) rewritten: bool,
}

impl Room {
    /// Whether `uid` is a member.
    pub(crate) fn is_member(&self, uid: u64) -> bool {
        self.members.contains(&uid)
    }

    /// Whether `uid` is banned.
    pub(crate) fn is_banned(&self, uid: u64) -> bool {
        self.banned.contains(&uid)
    }

    /// The id of a kept message (PROTOCOL.md §6, message ids).
    pub(crate) fn message_id(&self, e: &Kept) -> u64 {
        crate::room::message_id(&crate::room::Context {
            room: &self.name,
            sender_uid: e.head.sender_uid.get(),
            msg_id: e.head.sent_msg_id.get(),
            sent_time: e.head.sent_time.get(),
        })
    }

    /// Whether the kept history holds the message `sender` sent as `sent_msg_id`
    /// at `sent_time` (or its tombstone): the same message id, PROTOCOL.md §6.
    /// A client sends a room message again, unchanged, when its connection was
    /// lost before the answer came; the copy is not kept twice.
    pub(crate) fn holds(&self, sender: u64, sent_msg_id: u64, sent_time: u64) -> bool {
        self.history.iter().any(|e| {
            e.head.sender_uid.get() == sender
                && e.head.sent_msg_id.get() == sent_msg_id
                && e.head.sent_time.get() == sent_time
        })
    }

    /// Appends a message, dropping the oldest beyond `HISTORY`.
    pub(crate) fn push(&mut self, entry: Kept) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(entry);
        self.pushed += 1;
    }

    /// Replaces kept message `at` (by its tombstone); false if there is none.
    pub(crate) fn replace_entry(&mut self, at: usize, entry: Kept) -> bool {
        let Some(e) = self.history.get_mut(at) else { return false };
        *e = entry;
        self.rewritten = true;
        true
    }

    /// Forgets every kept message.
    pub(crate) fn clear_history(&mut self) {
        self.history.clear();
        self.rewritten = true;
    }

    /// The room's next write: its file, with where the history and the
    /// entries pushed since the last write lie in it.
    pub(crate) fn write(&mut self) -> RoomWrite {
        let (file, starts) = self.encode_with_starts();
        let end = starts.last().copied().unwrap_or(0);
        let fresh = usize::try_from(self.pushed.saturating_sub(self.emitted)).unwrap_or(usize::MAX);
        let kept = self.history.len();
        let newest = if fresh >= kept { starts[0] } else { starts[kept - fresh] };
        self.emitted = self.pushed;
        let rewritten = std::mem::take(&mut self.rewritten);
        RoomWrite { file, entries: starts[0]..end, newest, rewritten }
    }

    /// The kept messages a commit has made durable, oldest first.
    pub(crate) fn durable_history(&self) -> impl Iterator<Item = &Kept> {
        let undurable = usize::try_from(self.pushed.saturating_sub(self.durable)).unwrap_or(usize::MAX);
        self.history.iter().take(self.history.len().saturating_sub(undurable))
    }

    /// The file bytes: head, member UIDs, entries, SHA-256 of all that.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_with_starts().0
    }

    /// The file bytes, and where each entry starts in them followed by
    /// where the last one ends (one offset when there is none).
    fn encode_with_starts(&self) -> (Vec<u8>, Vec<usize>) {
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
        let bodies: usize = self.history.iter().map(|e| ENTRY + e.body.len()).sum();
        let mut out = Vec::with_capacity(HEAD + 8 * self.members.len() + bodies + 4 + 8 * self.banned.len() + 32);
        out.extend_from_slice(head.as_bytes());
        for uid in &self.members {
            out.extend_from_slice(&uid.to_be_bytes());
        }
        let mut starts = Vec::with_capacity(self.history.len() + 1);
        for e in &self.history {
            starts.push(out.len());
            out.extend_from_slice(e.head.as_bytes());
            out.extend_from_slice(&e.body);
        }
        starts.push(out.len());
        out.extend_from_slice(&(self.banned.len() as u32).to_be_bytes());
        for uid in &self.banned {
            out.extend_from_slice(&uid.to_be_bytes());
        }
        let sum = crypto::sha256(&[&out]);
        out.extend_from_slice(&sum);
        (out, starts)
    }

    /// Parses and checks a room file.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Room, &'static str> {
        let (head, rest) = RoomRecord::read_from_prefix(bytes).map_err(|_| "truncated head")?;
        let version = head.version.get();
        if head.magic != ROOM_MAGIC || !(1..=ROOM_VERSION).contains(&version) {
            return Err("bad magic or version");
        }
        let members = head.member_count.get() as usize;
        let history = head.history_count.get() as usize;
        if members > MAX_MEMBERS || history > HISTORY {
            return Err("counts out of range");
        }
        if bytes.len() < HEAD + members * 8 + 32 {
            return Err("wrong size");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
            return Err("checksum mismatch");
        }
        let name = head.name().map_err(|_| "bad name")?;
        let name = crate::room::normalize_name(name).map_err(|_| "bad name")?;
        let (uids, mut entries) = rest[..rest.len() - 32].split_at(members * 8);
        let members = uids.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())).collect();
        let mut history = VecDeque::with_capacity(history);
        let mut banned = Vec::new();
        if version == 1 {
            if entries.len() != history.capacity() * ENTRY_V1 {
                return Err("wrong size");
            }
            for c in entries.chunks_exact(ENTRY_V1) {
                history.push_back(Kept::read_v1(c)?);
            }
        } else {
            for _ in 0..history.capacity() {
                let (e, rest) = Kept::read(entries, version)?;
                history.push_back(e);
                entries = rest;
            }
            if version >= 3 {
                let (count, rest) = entries.split_at_checked(4).ok_or("truncated ban list")?;
                let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
                if count > MAX_MEMBERS || rest.len() != count * 8 {
                    return Err("wrong size");
                }
                banned = rest.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())).collect();
                entries = &[];
            }
            if !entries.is_empty() {
                return Err("wrong size");
            }
        }
        Ok(Room {
            name,
            salt: head.salt,
            verifier: head.verifier,
            owner: head.owner.get(),
            created: head.created.get(),
            members,
            banned,
            pushed: history.len() as u64,
            durable: history.len() as u64,
            emitted: history.len() as u64,
            rewritten: false,
            history,
        })
    }
}

/// The room file of `w` without its history: its head (no entries counted),
/// members and banned users, checksummed again. The cluster store keeps a
/// room's history on a subject of its own (DESIGN §8, "Cluster").
pub(crate) fn without_history(w: &RoomWrite) -> Vec<u8> {
    let file = &w.file;
    let mut out = Vec::with_capacity(file.len() - w.entries.len());
    out.extend_from_slice(&file[..w.entries.start]);
    if let Ok((head, _)) = RoomRecord::mut_from_prefix(&mut out[..]) {
        head.history_count.set(0);
    }
    out.extend_from_slice(&file[w.entries.end..file.len() - 32]);
    let sum = crypto::sha256(&[&out]);
    out.extend_from_slice(&sum);
    out
}

/// Kept entries as a room file of the current version holds them, one after
/// another (a history subject's content): the last `HISTORY` of them.
pub(crate) fn read_entries(mut bytes: &[u8]) -> Result<VecDeque<Kept>, &'static str> {
    let mut out = VecDeque::with_capacity(HISTORY);
    while !bytes.is_empty() {
        let (e, rest) = Kept::read(bytes, ROOM_VERSION)?;
        if out.len() == HISTORY {
            out.pop_front();
        }
        out.push_back(e);
        bytes = rest;
    }
    Ok(out)
}

/// A new room for tests: owner 9, members 9 and 10, 11 banned, no history.
#[cfg(test)]
pub(crate) fn test_room(name: &str) -> Room {
    Room {
        name: name.into(),
        salt: [1; 16],
        verifier: [2; 32],
        owner: 9,
        created: 5,
        members: vec![9, 10],
        banned: vec![11],
        history: VecDeque::new(),
        pushed: 0,
        durable: 0,
        emitted: 0,
        rewritten: true,
    }
}

/// A kept message from 9 for tests: its id `id`, a size class by it, a body of its byte.
#[cfg(test)]
pub(crate) fn test_entry(id: u64) -> Kept {
    let class = Class::ALL[id as usize % Class::ALL.len()];
    let mut head = RoomEntry::new_zeroed();
    head.sender_uid.set(9);
    head.sent_msg_id.set(id);
    head.class = class.letter() as u8;
    Kept { head, class, body: vec![id as u8; class.body()].into() }
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
        let mut r = test_room("lobby");
        for i in 0..25u64 {
            r.push(test_entry(i));
        }
        r
    }

    #[test]
    fn durable_history_leaves_out_what_no_commit_finished() {
        let mut r = room();
        assert_eq!(r.history.len(), 20);
        assert_eq!(r.durable_history().count(), 0);
        r.durable = 23;
        let ids: Vec<u64> = r.durable_history().map(|e| e.head.sent_msg_id.get()).collect();
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
        assert_eq!(r.history.front().unwrap().head.sent_msg_id.get(), 5);
        let back = Room::decode(&r.encode()).unwrap();
        assert_eq!((back.name.as_str(), back.owner, back.members.clone()), ("lobby", 9, vec![9, 10]));
        let ids: Vec<u64> = back.history.iter().map(|e| e.head.sent_msg_id.get()).collect();
        assert_eq!(ids, (5..25).collect::<Vec<_>>());
        for (e, i) in back.history.iter().zip(5u64..) {
            assert_eq!(e.class, Class::ALL[i as usize % Class::ALL.len()]);
            assert_eq!(&e.body[..], &vec![i as u8; e.class.body()][..]);
        }
    }

    #[test]
    fn tombstones_and_bans_roundtrip() {
        let mut r = room();
        let gone = r.history[3].tombstone(9);
        let id = r.message_id(&r.history[3]);
        r.history[3] = gone;
        let back = Room::decode(&r.encode()).unwrap();
        assert_eq!(back.banned, vec![11]);
        let t = &back.history[3];
        assert!(t.is_tombstone() && t.body.is_empty());
        assert_eq!((t.removed_by(), back.message_id(t)), (9, id), "the tombstone names the message");
        assert!(!back.history[4].is_tombstone());
        assert_eq!(back.history[4].removed_by(), 0);
    }

    #[test]
    fn reads_a_version_2_file_without_bans() {
        let mut r = room();
        r.banned.clear();
        let v3 = r.encode();
        // A version-2 file is the same without the ban count before the checksum.
        let mut v2 = v3[..v3.len() - 32 - 4].to_vec();
        v2[4..6].copy_from_slice(&2u16.to_be_bytes());
        let sum = crypto::sha256(&[&v2]);
        v2.extend_from_slice(&sum);
        let back = Room::decode(&v2).unwrap();
        assert_eq!((back.history.len(), back.banned.len(), back.members.clone()), (20, 0, vec![9, 10]));
        assert_eq!(Room::decode(&back.encode()).unwrap().history.len(), 20, "written back as version 3");
        // A tombstone letter in a version-2 file is no size class.
        let mut t = r.clone();
        t.history[0] = t.history[0].tombstone(9);
        let mut bad = t.encode()[..].to_vec();
        bad.truncate(bad.len() - 32 - 4);
        bad[4..6].copy_from_slice(&2u16.to_be_bytes());
        let sum = crypto::sha256(&[&bad]);
        bad.extend_from_slice(&sum);
        assert_eq!(Room::decode(&bad).err(), Some("bad size class"));
    }

    #[test]
    fn reads_a_version_1_file_as_class_m() {
        let mut head = RoomRecord::new_zeroed();
        head.magic = ROOM_MAGIC;
        head.version.set(1);
        head.set_name("old").unwrap();
        head.member_count.set(1);
        head.history_count.set(2);
        let mut file = head.as_bytes().to_vec();
        file.extend_from_slice(&7u64.to_be_bytes());
        for i in 0..2u8 {
            file.extend_from_slice(&[i; 32]);
            file.extend_from_slice(&[0x10 + i; 16]);
            file.extend_from_slice(&[0x20 + i; 1040]);
            file.extend_from_slice(&[0x30 + i; 32]);
            file.extend_from_slice(&[0x40 + i; 256]);
        }
        let sum = crypto::sha256(&[&file]);
        file.extend_from_slice(&sum);
        let r = Room::decode(&file).unwrap();
        assert_eq!((r.name.as_str(), r.members.clone(), r.history.len()), ("old", vec![7], 2));
        let e = &r.history[1];
        assert_eq!((e.class, e.head.class, e.head.sent_time.get()), (Class::M, b'm', u64::from_be_bytes([1; 8])));
        assert_eq!((e.head.iv, e.head.tag[0], e.head.signature[255]), ([0x11; 16], 0x31, 0x41));
        assert_eq!(&e.body[..], &[0x21; 1040][..]);
        // Written back, it is a version-2 file that reads the same.
        let again = Room::decode(&r.encode()).unwrap();
        assert_eq!(&again.history[1].body[..], &e.body[..]);
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

    fn ids(entries: &VecDeque<Kept>) -> Vec<u64> {
        entries.iter().map(|e| e.head.sent_msg_id.get()).collect()
    }

    #[test]
    fn a_write_says_where_the_history_and_its_new_entries_lie() {
        let mut r = room();
        let w = r.write();
        assert!(w.rewritten, "a new room's first write carries its whole history");
        assert_eq!(w.newest, w.entries.start, "25 pushed, 20 kept: all of them new");
        assert_eq!(ids(&read_entries(&w.file[w.entries.clone()]).unwrap()), (5..25).collect::<Vec<_>>());
        let back = Room::decode(&w.file).unwrap();
        assert_eq!(ids(&back.history), (5..25).collect::<Vec<_>>());

        let nothing = r.write();
        assert!(!nothing.rewritten);
        assert_eq!(nothing.newest, nothing.entries.end, "nothing pushed since");

        let e = r.history[0].clone();
        r.push(Kept {
            head: {
                let mut h = e.head;
                h.sent_msg_id.set(25);
                h
            },
            ..e.clone()
        });
        r.push(Kept {
            head: {
                let mut h = e.head;
                h.sent_msg_id.set(26);
                h
            },
            ..e
        });
        let two = r.write();
        assert!(!two.rewritten);
        assert_eq!(ids(&read_entries(&two.file[two.newest..two.entries.end]).unwrap()), vec![25, 26]);

        let gone = r.history[3].tombstone(9);
        assert!(r.replace_entry(3, gone));
        assert!(!r.replace_entry(20, r.history[0].clone()), "no entry 20");
        assert!(r.write().rewritten, "a removal rewrites the history");
        r.clear_history();
        let cleared = r.write();
        assert!(cleared.rewritten && cleared.entries.is_empty());
    }

    #[test]
    fn a_room_without_its_history_is_a_valid_room_file() {
        let mut r = room();
        let w = r.write();
        let bare = Room::decode(&without_history(&w)).unwrap();
        assert_eq!((bare.name.as_str(), bare.members.clone(), bare.banned.clone()), ("lobby", vec![9, 10], vec![11]));
        assert_eq!((bare.salt, bare.verifier, bare.owner, bare.created), (r.salt, r.verifier, 9, 5));
        assert!(bare.history.is_empty());
    }

    #[test]
    fn read_entries_keeps_the_last_twenty_and_refuses_a_torn_one() {
        let mut r = room();
        let w = r.write();
        let e = &w.file[w.entries.clone()];
        assert_eq!(ids(&read_entries(e).unwrap()), (5..25).collect::<Vec<_>>());
        let mut torn = e.to_vec();
        torn.extend_from_slice(&e[..e.len() - 1]);
        assert!(read_entries(&torn).is_err(), "a torn last entry");
        // A rollup and appends after it, as a history subject holds them.
        let mut subject = e.to_vec();
        let x = r.history[0].clone();
        r.push(Kept {
            head: {
                let mut h = x.head;
                h.sent_msg_id.set(25);
                h
            },
            ..x
        });
        let more = r.write();
        subject.extend_from_slice(&more.file[more.newest..more.entries.end]);
        assert_eq!(ids(&read_entries(&subject).unwrap()), (6..26).collect::<Vec<_>>());
        assert!(read_entries(&[]).unwrap().is_empty());
    }
}
