//! Files on the server (PROTOCOL.md §10): each file's record and upload
//! progress, each connection's downloads and bulk output queue, and the
//! on-disk formats (`files/<id>.file`, `files/<id>.chunks`).
//!
//! Invariants: a chunk counts as stored (`stored`, what flin reports and what
//! downloads may read) only once the commit that wrote it is durable; an
//! upload's chunks are taken strictly in order; a failed commit rolls the
//! upload back to what is durable (`epoch` moves on, so no acknowledgement
//! of a dropped chunk can say 200). Every bound is a named constant here; a
//! decoded record was bounded before any allocation and its checksum verified.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::crypto;
use crate::server::checked::{self, Reader, SUM};
use crate::server::core::ConnId;
use crate::server::store::{Change, Store};

/// Plaintext (and ciphertext) bytes of one chunk.
pub const CHUNK_DATA: usize = 16_384;
/// One chunk record on disk: index u32 || iv 16 || tag 32 || data || SHA-256 of the preceding.
pub const CHUNK_RECORD: usize = 4 + 16 + 32 + CHUNK_DATA + 32;
/// Downloads one connection runs at once (flgt beyond: 429).
pub const MAX_DOWNLOADS: usize = 4;
/// Chunks one connection has read ahead at most (read jobs in flight plus
/// frames waiting in its bulk queue): about 264 KiB.
pub const READ_AHEAD: usize = 16;
/// Chunks read ahead at most over all connections (about 66 MiB): beyond,
/// downloads wait their turn (`Files::starved`).
pub const READ_AHEAD_TOTAL: usize = 4_096;
/// Chunks of one download sent and not yet taken (flak) at most: 256 KiB, so
/// a chat frame behind them waits for no more than that at the client, wherever
/// the bytes sit (sottod's output, either kernel's buffers).
pub const DOWNLOAD_WINDOW: u32 = 16;
/// Chunks one read job asks for at most.
pub const READ_BATCH: u32 = 4;
/// Bulk frames are sealed into a connection's output only while it holds less than this.
pub const BULK_OUT_LOW: usize = 64 * 1024;
/// A connection whose chunks waiting for the disk hold this much is not read (PROTOCOL §10).
pub const UPLOAD_PENDING_MAX: usize = 1 << 20;
/// Chunk bytes waiting for the disk over all connections before uploaders are not read.
pub const UPLOAD_PENDING_TOTAL: usize = 64 << 20;
/// Files one user has on the server at most (empty files cost no quota; this bounds them).
pub const MAX_FILES_PER_USER: usize = 1_000;
/// Recipients a room file's record lists as done at most (more are not recorded).
pub const DONE_MAX: usize = 4_096;
/// How often expired files are swept, ms.
pub const SWEEP_MS: u64 = 1_000;

/// Magic of a file record.
const MAGIC: [u8; 4] = *b"SOTF";
/// Version of the file record format.
const VERSION: u16 = 1;
/// magic, version, flags, file_id, owner, size, chunk_count, target,
/// room_len, peer, room, created, expires, done_count.
const HEAD: usize = 4 + 2 + 2 + 8 + 8 + 8 + 4 + 1 + 1 + 8 + 32 + 8 + 8 + 4;
/// Largest file record.
pub const MAX_RECORD: usize = HEAD + DONE_MAX * 8 + SUM;

/// Chunks a file of `size` bytes has.
pub fn chunks_for(size: u64) -> u64 {
    size.div_ceil(CHUNK_DATA as u64)
}

/// Who a file is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A DM contact (target 1).
    Peer(u64),
    /// A room, by canonical name (target 2).
    Room(String),
}

/// A file's record: what `<id>.file` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Non-zero id chosen by the sender.
    pub id: u64,
    /// The sender.
    pub owner: u64,
    /// Plaintext bytes.
    pub size: u64,
    /// ceil(size / 16384).
    pub chunk_count: u32,
    /// Who it is for.
    pub target: Target,
    /// When it was offered, Unix ms.
    pub created: u64,
    /// When it is deleted, Unix ms.
    pub expires: u64,
    /// Recipients who said they are done (room files; at most `DONE_MAX`).
    pub done: Vec<u64>,
}

impl FileMeta {
    /// The record bytes: head, done UIDs, SHA-256 of all that.
    pub fn encode(&self) -> Vec<u8> {
        let done = &self.done[..self.done.len().min(DONE_MAX)];
        let mut out = Vec::with_capacity(HEAD + done.len() * 8 + SUM);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.owner.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.chunk_count.to_be_bytes());
        let (kind, peer, room) = match &self.target {
            Target::Peer(uid) => (1u8, *uid, ""),
            Target::Room(name) => (2u8, 0, name.as_str()),
        };
        let mut room_field = [0u8; 32];
        let n = room.len().min(32);
        room_field[..n].copy_from_slice(&room.as_bytes()[..n]);
        out.push(kind);
        // NOTE: at most 32 by the line above.
        out.push(n as u8);
        out.extend_from_slice(&peer.to_be_bytes());
        out.extend_from_slice(&room_field);
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        // NOTE: at most DONE_MAX.
        out.extend_from_slice(&(done.len() as u32).to_be_bytes());
        for uid in done {
            out.extend_from_slice(&uid.to_be_bytes());
        }
        checked::seal(&mut out);
        out
    }

    /// Parses and checks a record.
    pub fn decode(bytes: &[u8]) -> Result<FileMeta, &'static str> {
        let (mut r, entries) = checked::open(bytes, HEAD, MAX_RECORD, MAGIC, VERSION)?;
        let id = u64::from_be_bytes(r.take()?);
        let owner = u64::from_be_bytes(r.take()?);
        let size = u64::from_be_bytes(r.take()?);
        let chunk_count = u32::from_be_bytes(r.take()?);
        let [kind] = r.take::<1>()?;
        let [room_len] = r.take::<1>()?;
        let peer = u64::from_be_bytes(r.take()?);
        let room = r.take::<32>()?;
        let created = u64::from_be_bytes(r.take()?);
        let expires = u64::from_be_bytes(r.take()?);
        let count = u32::from_be_bytes(r.take()?) as usize;
        if id == 0 || chunks_for(size) != u64::from(chunk_count) {
            return Err("bad id, size or chunk count");
        }
        let target = match kind {
            1 if peer != 0 && room_len == 0 => Target::Peer(peer),
            2 if peer == 0 => {
                let name = room.get(..usize::from(room_len)).ok_or("bad room name")?;
                let name = std::str::from_utf8(name).map_err(|_| "bad room name")?;
                let canonical = crate::room::normalize_name(name).map_err(|_| "bad room name")?;
                if canonical != name {
                    return Err("bad room name");
                }
                Target::Room(canonical)
            }
            _ => return Err("bad target"),
        };
        if count > DONE_MAX || entries.len() != count * 8 {
            return Err("done count out of range");
        }
        let mut done = Vec::with_capacity(count);
        for e in entries.chunks_exact(8) {
            done.push(u64::from_be_bytes(Reader(e).take()?));
        }
        Ok(FileMeta { id, owner, size, chunk_count, target, created, expires, done })
    }
}

/// One chunk record as stored: index, IV, tag, data, SHA-256 of those.
pub fn chunk_record(index: u32, iv: &[u8; 16], tag: &[u8; 32], data: &[u8; CHUNK_DATA]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(CHUNK_RECORD);
    rec.extend_from_slice(&index.to_be_bytes());
    rec.extend_from_slice(iv);
    rec.extend_from_slice(tag);
    rec.extend_from_slice(data);
    let sum = crypto::sha256(&[&rec]);
    rec.extend_from_slice(&sum);
    rec
}

/// The parts of chunk record `rec`, if it is whole, checks, and is chunk `index`.
pub fn open_chunk(rec: &[u8], index: u32) -> Option<(&[u8; 16], &[u8; 32], &[u8; CHUNK_DATA])> {
    if rec.len() != CHUNK_RECORD {
        return None;
    }
    let (body, sum) = rec.split_at(CHUNK_RECORD - 32);
    if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
        return None;
    }
    let (idx, rest) = body.split_at(4);
    if idx != index.to_be_bytes() {
        return None;
    }
    let (iv, rest) = rest.split_at(16);
    let (tag, data) = rest.split_at(32);
    Some((iv.try_into().ok()?, tag.try_into().ok()?, data.try_into().ok()?))
}

/// How many whole, valid chunk records `data` starts with (at most `chunk_count`).
pub fn valid_chunks(data: &[u8], chunk_count: u32) -> u32 {
    let mut n = 0;
    for rec in data.chunks(CHUNK_RECORD) {
        if n >= chunk_count || open_chunk(rec, n).is_none() {
            break;
        }
        n += 1;
    }
    n
}

/// A file as loaded: its record and how many chunks are whole on disk.
pub struct StoredFile {
    /// The record.
    pub meta: FileMeta,
    /// Whole valid chunk records from the start of `<id>.chunks`.
    pub stored: u32,
}

/// A file the server holds.
pub(crate) struct File {
    pub(crate) meta: FileMeta,
    /// Chunks durable on disk: what flin reports and downloads may read.
    pub(crate) stored: u32,
    /// Chunks accepted (durable or waiting for a commit): the next index expected.
    pub(crate) received: u32,
    /// Moves on at each rollback: an acknowledgement from an older epoch is 507.
    pub(crate) epoch: u32,
    /// Chunk records accepted and not yet handed to a commit, from index `pending_from`.
    pending: Vec<u8>,
    pending_from: u32,
    /// Connections with a download of this file.
    pub(crate) readers: Vec<ConnId>,
}

/// One download on a connection.
pub(crate) struct Download {
    pub(crate) file_id: u64,
    /// The flgt's msg_id: every flcd and the final stat carry it.
    pub(crate) msg_id: u64,
    /// Tells this download's read completions from a replaced one's.
    pub(crate) serial: u64,
    /// The next chunk to read (everything before is queued or sent).
    pub(crate) next: u32,
    /// Chunks below this the client has taken (flak); reads stop at
    /// `taken + DOWNLOAD_WINDOW`.
    pub(crate) taken: u32,
    /// Chunks in the read job in flight (0: none).
    pub(crate) reading: u32,
}

/// A frame waiting in a connection's bulk queue.
pub(crate) struct BulkFrame {
    pub(crate) file_id: u64,
    pub(crate) bytes: Vec<u8>,
    /// A chunk (counted in the read-ahead), not the final stat.
    pub(crate) chunk: bool,
}

/// A connection's part in file transfer.
#[derive(Default)]
pub(crate) struct ConnFiles {
    pub(crate) downloads: Vec<Download>,
    /// Frames sealed only while the output holds less than `BULK_OUT_LOW`.
    pub(crate) bulk: VecDeque<BulkFrame>,
    /// Bytes of this connection's chunks waiting for the disk.
    pub(crate) uploading: usize,
}

impl ConnFiles {
    /// Chunks read ahead: in read jobs and in the bulk queue.
    pub(crate) fn ahead(&self) -> usize {
        let reading: u32 = self.downloads.iter().map(|d| d.reading).sum();
        reading as usize + self.bulk.iter().filter(|f| f.chunk).count()
    }
}

/// What a commit carries of the files, to settle when it finishes.
#[derive(Default)]
pub(crate) struct FilesInflight {
    records: Vec<u64>,
    /// (file, chunks durable once the commit is).
    chunks: Vec<(u64, u32)>,
    deletes: Vec<u64>,
}

/// Every file on the server, as the core holds them.
#[derive(Default)]
pub struct Files {
    pub(crate) map: HashMap<u64, File>,
    /// Per owner: chunk bytes of its files (quota), and how many files.
    usage: HashMap<u64, (u64, usize)>,
    /// Records to write with the next commit.
    dirty: BTreeSet<u64>,
    /// Files to delete with the next commit.
    deleted: BTreeSet<u64>,
    /// Deleted and not yet durably: the id cannot be offered again before.
    deleting: HashSet<u64>,
    /// Files with chunks waiting for a commit.
    with_pending: BTreeSet<u64>,
    /// Chunk bytes waiting for the disk, over all connections.
    pub(crate) uploading: usize,
    /// Chunks read ahead over all connections.
    pub(crate) ahead: usize,
    /// Connections whose downloads wait for the global read-ahead, in turn.
    pub(crate) starved: VecDeque<ConnId>,
    /// Serial of the last download started.
    pub(crate) serial: u64,
    /// When the next expiry sweep runs, Unix ms.
    pub(crate) next_sweep_ms: u64,
}

impl Files {
    /// The files in `store`, with their durable chunk counts.
    pub fn load(store: &dyn Store) -> Result<Files, String> {
        let mut files = Files::default();
        for f in store.load_files().map_err(|e| e.to_string())? {
            files.insert(f.meta, f.stored);
        }
        Ok(files)
    }

    /// Files on the server and their chunk bytes (as the quota counts them).
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.usage.values().fold((0, 0), |(n, b), (bytes, files)| (n + *files as u64, b + bytes))
    }

    /// How many files are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no file is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds a file with `stored` durable chunks.
    pub(crate) fn insert(&mut self, meta: FileMeta, stored: u32) {
        let u = self.usage.entry(meta.owner).or_default();
        u.0 += u64::from(meta.chunk_count) * CHUNK_DATA as u64;
        u.1 += 1;
        let file = File {
            meta,
            stored,
            received: stored,
            epoch: 0,
            pending: Vec::new(),
            pending_from: stored,
            readers: Vec::new(),
        };
        self.map.insert(file.meta.id, file);
    }

    /// A new file, its record written with the next commit.
    pub(crate) fn create(&mut self, meta: FileMeta) {
        self.dirty.insert(meta.id);
        self.insert(meta, 0);
    }

    /// (chunk bytes, files) `owner` has on the server.
    pub(crate) fn usage(&self, owner: u64) -> (u64, usize) {
        self.usage.get(&owner).copied().unwrap_or_default()
    }

    /// Whether `id` is being deleted (not yet durably): it cannot be offered again yet.
    pub(crate) fn is_deleting(&self, id: u64) -> bool {
        self.deleting.contains(&id)
    }

    /// Notes that `id`'s record changed.
    pub(crate) fn mark_dirty(&mut self, id: u64) {
        self.dirty.insert(id);
    }

    /// Takes chunk `index` of `id` (the next expected), to be written with the next commit.
    pub(crate) fn accept_chunk(&mut self, id: u64, record: &[u8]) {
        let Some(f) = self.map.get_mut(&id) else { return };
        if f.pending.is_empty() {
            f.pending_from = f.received;
        }
        f.pending.extend_from_slice(record);
        f.received += 1;
        self.with_pending.insert(id);
        self.uploading += CHUNK_RECORD;
    }

    /// Forgets `id` (its files go with the next commit); returns it and its readers.
    pub(crate) fn remove(&mut self, id: u64) -> Option<File> {
        let f = self.map.remove(&id)?;
        if let Some(u) = self.usage.get_mut(&f.meta.owner) {
            u.0 = u.0.saturating_sub(u64::from(f.meta.chunk_count) * CHUNK_DATA as u64);
            u.1 = u.1.saturating_sub(1);
            if u.1 == 0 {
                self.usage.remove(&f.meta.owner);
            }
        }
        self.dirty.remove(&id);
        self.with_pending.remove(&id);
        self.deleted.insert(id);
        self.deleting.insert(id);
        Some(f)
    }

    /// The files whose `expires` is at or before `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.map.values().filter(|f| f.meta.expires <= now_ms).map(|f| f.meta.id).collect()
    }

    /// Whether the next commit has anything of the files to write.
    pub(crate) fn has_changes(&self) -> bool {
        !self.dirty.is_empty() || !self.deleted.is_empty() || !self.with_pending.is_empty()
    }

    /// This turn's changes for the commit, and what to settle when it finishes.
    pub(crate) fn take_changes(&mut self, writes: &mut Vec<Change>) -> FilesInflight {
        let mut inflight = FilesInflight::default();
        for id in std::mem::take(&mut self.dirty) {
            if let Some(f) = self.map.get(&id) {
                writes.push(Change::FileRecord(id, f.meta.encode()));
                inflight.records.push(id);
            }
        }
        for id in std::mem::take(&mut self.with_pending) {
            if let Some(f) = self.map.get_mut(&id) {
                let bytes = std::mem::take(&mut f.pending);
                if !bytes.is_empty() {
                    writes.push(Change::FileChunks { id, first: f.pending_from, bytes });
                    inflight.chunks.push((id, f.received));
                }
                f.pending_from = f.received;
            }
        }
        for id in std::mem::take(&mut self.deleted) {
            writes.push(Change::FileDelete(id));
            inflight.deletes.push(id);
        }
        inflight
    }

    /// A commit finished: the chunks it wrote count (ok), or the uploads roll
    /// back to what is durable and the records and deletions are retried.
    /// Returns the files that gained durable chunks.
    pub(crate) fn committed(&mut self, inflight: FilesInflight, ok: bool) -> Vec<u64> {
        let mut grown = Vec::new();
        if ok {
            for (id, upto) in inflight.chunks {
                if let Some(f) = self.map.get_mut(&id) {
                    if upto > f.stored {
                        f.stored = upto;
                        grown.push(id);
                    }
                }
            }
            for id in inflight.deletes {
                // Deleted again meanwhile (a failed commit's retry): still in flight.
                if !self.deleted.contains(&id) {
                    self.deleting.remove(&id);
                }
            }
        } else {
            for id in inflight.records.into_iter().filter(|id| self.map.contains_key(id)) {
                self.dirty.insert(id);
            }
            for (id, _) in inflight.chunks {
                if let Some(f) = self.map.get_mut(&id) {
                    // Later chunks waiting for the next commit go too: the
                    // upload resumes, in order, from the last durable chunk.
                    f.pending.clear();
                    f.received = f.stored;
                    f.pending_from = f.stored;
                    f.epoch = f.epoch.wrapping_add(1);
                    self.with_pending.remove(&id);
                }
            }
            self.deleted.extend(inflight.deletes);
        }
        grown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: Target) -> FileMeta {
        FileMeta {
            id: 0x1234,
            owner: 7,
            size: 40_000,
            chunk_count: 3,
            target,
            created: 1_000,
            expires: 2_000,
            done: vec![8, 9],
        }
    }

    #[test]
    fn record_roundtrips_and_rejects_corruption() {
        for target in [Target::Peer(42), Target::Room("lobby".into())] {
            let m = sample(target);
            let bytes = m.encode();
            assert_eq!(FileMeta::decode(&bytes).unwrap(), m);
            for at in [0, 5, 17, 40, HEAD - 1, HEAD + 3, bytes.len() - 1] {
                let mut bad = bytes.clone();
                bad[at] ^= 1;
                assert!(FileMeta::decode(&bad).is_err(), "flipped byte {at}");
            }
            assert_eq!(FileMeta::decode(&bytes[..bytes.len() - 8]), Err("checksum mismatch"));
        }
        let mut wrong_count = sample(Target::Peer(1));
        wrong_count.chunk_count = 4;
        assert_eq!(FileMeta::decode(&wrong_count.encode()), Err("bad id, size or chunk count"));
        let upper = sample(Target::Room("Lobby".into()));
        assert_eq!(FileMeta::decode(&upper.encode()), Err("bad room name"));
        assert_eq!(FileMeta::decode(&vec![0; MAX_RECORD + 1]), Err("wrong size"), "bounded before anything is read");
    }

    #[test]
    fn chunk_records_check_their_index_and_sum() {
        let rec = chunk_record(3, &[1; 16], &[2; 32], &[3; CHUNK_DATA]);
        assert_eq!(rec.len(), CHUNK_RECORD);
        let (iv, tag, data) = open_chunk(&rec, 3).unwrap();
        assert_eq!((iv, tag, data[0]), (&[1; 16], &[2; 32], 3));
        assert!(open_chunk(&rec, 4).is_none(), "wrong place");
        let mut bad = rec.clone();
        bad[100] ^= 1;
        assert!(open_chunk(&bad, 3).is_none(), "flipped data");
        assert!(open_chunk(&rec[..CHUNK_RECORD - 1], 3).is_none(), "torn");
    }

    #[test]
    fn valid_chunks_stops_at_a_torn_or_corrupt_record() {
        let mut data = Vec::new();
        for i in 0..3 {
            data.extend(chunk_record(i, &[0; 16], &[0; 32], &[i as u8; CHUNK_DATA]));
        }
        assert_eq!(valid_chunks(&data, 3), 3);
        assert_eq!(valid_chunks(&data, 2), 2, "never past the chunk count");
        assert_eq!(valid_chunks(&data[..data.len() - 1], 3), 2, "torn tail");
        data[CHUNK_RECORD + 10] ^= 1;
        assert_eq!(valid_chunks(&data, 3), 1, "corrupt second record");
    }
}
