//! File transfer (PROTOCOL.md §10): offers (flof), chunks in order (flch),
//! downloads streamed as chunks become durable (flgt → flin, flcd…, stat
//! done), recipients done (fldn), and expiry.
//!
//! Invariants: an upload hears 200 for a chunk only after the commit that
//! wrote it is durable, and flin for an offer only after its record is; a
//! download reads only durable chunks, on the reader thread, at most
//! `READ_AHEAD` ahead per connection (`READ_AHEAD_TOTAL` in all) and
//! `DOWNLOAD_WINDOW` ahead of what its client has taken (flak), and its
//! frames wait in the connection's bulk queue behind every chat frame; a
//! deleted or expired file ends its downloads with 404.

use crate::opcodes::{FileAck, FileChunk, FileChunkData, FileDone, FileGet, FileInfo, FileOffer, StatusReply};
use crate::opcodes::{FLCH, FLDN, FLGT, FLOF};
use crate::wire::{code, decode, Message, Status};
use zerocopy::IntoBytes;

use crate::server::core::{ConnId, Core, Deferred};
use crate::server::files::{
    chunk_record, chunks_for, open_chunk, BulkFrame, ConnFiles, Download, FileMeta, Target, CHUNK_DATA, CHUNK_RECORD,
    DONE_MAX, DOWNLOAD_WINDOW, MAX_DOWNLOADS, MAX_FILES_PER_USER, READ_AHEAD, READ_AHEAD_TOTAL, READ_BATCH, SWEEP_MS,
};
use crate::server::session::Authenticated;
use crate::server::worker::Job;

/// flof: reserve a file (or resume its upload); flin once its record is durable.
pub fn offer(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<FileOffer>(frame) else { return };
    let (msg_id, me) = (m.hdr.msg_id.get(), auth.uid());
    let (file_id, size, count) = (m.file_id.get(), m.size.get(), m.chunk_count.get());
    let bad = |core: &mut Core, why: &str| core.reply(id, msg_id, FLOF, code::BAD_REQUEST, why, now_ms);
    if file_id == 0 {
        return bad(core, "file id 0");
    }
    if chunks_for(size) != u64::from(count) {
        return bad(core, "chunk_count is not ceil(size / 16384)");
    }
    let target = match m.target {
        1 if m.peer_uid.get() != 0 && m.room_len == 0 => Target::Peer(m.peer_uid.get()),
        2 if m.peer_uid.get() == 0 => {
            let name = super::name_or_400(
                core,
                (id, msg_id, FLOF),
                m.room(),
                crate::room::normalize_name,
                "invalid room name: 1-32 of a-z 0-9 _ -",
                now_ms,
            );
            let Some(name) = name else { return };
            Target::Room(name)
        }
        1 | 2 => return bad(core, "target 1 takes a peer_uid and no room, target 2 a room and no peer_uid"),
        _ => return bad(core, "target must be 1 (a contact) or 2 (a room)"),
    };
    let limits = core.limits();
    if size > limits.max_file_size {
        let why = format!("larger than this server takes ({} bytes)", limits.max_file_size);
        return core.reply(id, msg_id, FLOF, code::TOO_LARGE, &why, now_ms);
    }
    if !may_send(core, me, &target) {
        let why = match target {
            Target::Peer(_) => "not an accepted contact",
            Target::Room(_) => "not a member of this room",
        };
        return core.reply(id, msg_id, FLOF, code::FORBIDDEN, why, now_ms);
    }
    if core.files.is_deleting(file_id) {
        return core.reply(id, msg_id, FLOF, code::CONFLICT, "file id taken", now_ms);
    }
    if let Some(f) = core.files.map.get(&file_id) {
        let m = &f.meta;
        if m.owner != me || m.size != size || m.chunk_count != count || m.target != target {
            return core.reply(id, msg_id, FLOF, code::CONFLICT, "file id taken with other parameters", now_ms);
        }
        // A resume: flin once the chunks taken so far are durable, so that
        // `stored` is where the upload goes on.
        return core.defer(Deferred::Offer { conn: id, msg_id, file_id });
    }
    let (used, files) = core.files.usage(me);
    if files >= MAX_FILES_PER_USER {
        const WHY: &str = "too many files on the server (1000): wait for some to be fetched or expire";
        return core.reply_counted(id, (msg_id, FLOF), code::INSUFFICIENT_STORAGE, WHY, "file quota (507)", now_ms);
    }
    if used.saturating_add(u64::from(count) * CHUNK_DATA as u64) > limits.file_quota {
        let why = format!("over your file quota ({} bytes)", limits.file_quota);
        return core.reply_counted(id, (msg_id, FLOF), code::INSUFFICIENT_STORAGE, &why, "file quota (507)", now_ms);
    }
    let expires = now_ms.saturating_add(limits.file_ttl_ms);
    let meta =
        FileMeta { id: file_id, owner: me, size, chunk_count: count, target, created: now_ms, expires, done: vec![] };
    core.files.create(meta);
    core.defer(Deferred::Offer { conn: id, msg_id, file_id });
}

/// Whether `uid` may offer a file to `target`: an accepted contact, or a member of the room.
fn may_send(core: &Core, uid: u64, target: &Target) -> bool {
    match target {
        Target::Peer(peer) => core.mail.contacts.accepted(uid, *peer),
        Target::Room(name) => core.rooms.get(name).is_some_and(|r| r.is_member(uid)),
    }
}

/// Whether `uid` is a recipient of `meta`: the DM's peer, or a current member of the room.
fn is_recipient(core: &Core, uid: u64, meta: &FileMeta) -> bool {
    match &meta.target {
        Target::Peer(peer) => *peer == uid,
        Target::Room(name) => core.rooms.get(name).is_some_and(|r| r.is_member(uid)),
    }
}

/// flin for `file_id` as the server holds it.
fn info(core: &Core, file_id: u64, status: Status, code: u16, msg_id: u64, now_ms: u64) -> Option<FileInfo> {
    let f = core.files.map.get(&file_id)?;
    let mut m = FileInfo::new(status, code, msg_id, now_ms);
    m.file_id.set(file_id);
    m.size.set(f.meta.size);
    m.chunk_count.set(f.meta.chunk_count);
    m.stored.set(f.stored);
    m.owner_uid.set(f.meta.owner);
    m.expires.set(f.meta.expires);
    Some(m)
}

/// An offer (or a resume) is durable: flin with what is stored.
pub fn offered(core: &mut Core, id: ConnId, msg_id: u64, file_id: u64, now_ms: u64) {
    match info(core, file_id, Status::Ok, code::OK, msg_id, now_ms) {
        Some(m) => core.send(id, &m),
        None => core.reply(id, msg_id, FLOF, code::NOT_FOUND, "the file was deleted or expired", now_ms),
    }
}

/// flch: the next chunk of an upload; 200 once it is durable.
pub fn chunk(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<FileChunk>(frame) else { return };
    let (msg_id, file_id, index) = (m.hdr.msg_id.get(), m.file_id.get(), m.index.get());
    let Some(f) = core.files.map.get(&file_id) else {
        return core.reply(id, msg_id, FLCH, code::NOT_FOUND, "no such file (unknown, expired or deleted)", now_ms);
    };
    if f.meta.owner != auth.uid() {
        return core.reply(id, msg_id, FLCH, code::FORBIDDEN, "not your file", now_ms);
    }
    if index >= f.meta.chunk_count {
        return core.reply(id, msg_id, FLCH, code::BAD_REQUEST, "index past the chunk count", now_ms);
    }
    if index != f.received {
        // The client parses this reason (PROTOCOL §10): keep its form.
        let why = format!("expected chunk {}", f.received);
        return core.reply(id, msg_id, FLCH, code::CONFLICT, &why, now_ms);
    }
    let epoch = f.epoch;
    core.files.accept_chunk(file_id, &chunk_record(index, &m.iv, &m.tag, &m.data));
    if let Some(cf) = core.conn_files(id) {
        cf.uploading += CHUNK_RECORD;
    }
    core.defer(Deferred::Chunk { conn: id, msg_id, file_id, index, epoch });
}

/// A commit that carried a chunk finished (either way): the uploader's
/// budget is freed, and it hears 200 if the chunk counts, 507 if it does
/// not (send it again), 404 if the file went meanwhile.
pub fn chunk_settled(core: &mut Core, id: ConnId, (msg_id, file_id, index, epoch): (u64, u64, u32, u32), now_ms: u64) {
    core.files.uploading = core.files.uploading.saturating_sub(CHUNK_RECORD);
    if let Some(cf) = core.conn_files(id) {
        cf.uploading = cf.uploading.saturating_sub(CHUNK_RECORD);
    }
    let Some(f) = core.files.map.get(&file_id) else {
        return core.reply(id, msg_id, FLCH, code::NOT_FOUND, "the file was deleted or expired", now_ms);
    };
    if f.epoch == epoch && index < f.stored {
        return core.reply(id, msg_id, FLCH, code::OK, "chunk stored", now_ms);
    }
    let why = format!("storage failed (disk full?): not stored; send again from chunk {}", f.received);
    core.reply(id, msg_id, FLCH, code::INSUFFICIENT_STORAGE, &why, now_ms);
}

/// flgt: flin (pending), then the chunks from `from` as they are durable, then stat done.
pub fn get(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<FileGet>(frame) else { return };
    let (msg_id, file_id, from) = (m.hdr.msg_id.get(), m.file_id.get(), m.from.get());
    let Some(f) = core.files.map.get(&file_id) else {
        return core.reply(id, msg_id, FLGT, code::NOT_FOUND, "no such file (unknown, expired or deleted)", now_ms);
    };
    if !is_recipient(core, auth.uid(), &f.meta) {
        return core.reply(id, msg_id, FLGT, code::FORBIDDEN, "not a recipient of this file", now_ms);
    }
    if from > f.meta.chunk_count {
        return core.reply(id, msg_id, FLGT, code::BAD_REQUEST, "from past the chunk count", now_ms);
    }
    let Some(cf) = core.conn_files_ref(id) else { return };
    let same = cf.downloads.iter().any(|d| d.file_id == file_id);
    if !same && cf.downloads.len() >= MAX_DOWNLOADS {
        const WHY: &str = "at most 4 downloads at once on a connection";
        return core.reply_retry(id, msg_id, FLGT, code::RATE_LIMITED, WHY, 1_000, now_ms);
    }
    // A second flgt for the same file replaces the first (PROTOCOL §10).
    end_downloads(core, id, file_id);
    let Some(flin) = info(core, file_id, Status::Pending, code::PENDING, msg_id, now_ms) else { return };
    core.send(id, &flin);
    core.files.serial += 1;
    let serial = core.files.serial;
    if let Some(f) = core.files.map.get_mut(&file_id) {
        if !f.readers.contains(&id) {
            f.readers.push(id);
        }
    }
    if let Some(cf) = core.conn_files(id) {
        cf.downloads.push(Download { file_id, msg_id, serial, next: from, taken: from, reading: 0 });
    }
    pump(core, id);
}

/// `flak`: the client has taken every chunk below `through` of its download
/// of `file_id`; the window moves on. No answer: an ack for a download that
/// ended or was replaced is simply late, and `through` cannot pass what was
/// read for it.
pub fn ack(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], _now_ms: u64) {
    let Ok(m) = decode::<FileAck>(frame) else { return };
    let (file_id, through) = (m.file_id.get(), m.through.get());
    let Some(cf) = core.conn_files(id) else { return };
    let Some(d) = cf.downloads.iter_mut().find(|d| d.file_id == file_id) else { return };
    d.taken = d.taken.max(through.min(d.next));
    pump(core, id);
}

/// Ends `id`'s downloads of `file_id` without an answer: their queued
/// frames are dropped and their read-ahead released; returns their msg_ids.
fn end_downloads(core: &mut Core, id: ConnId, file_id: u64) -> Vec<u64> {
    let Some(cf) = core.conn_files(id) else { return Vec::new() };
    let mut released = 0usize;
    let mut ended = Vec::new();
    cf.downloads.retain(|d| {
        if d.file_id != file_id {
            return true;
        }
        released += d.reading as usize;
        ended.push(d.msg_id);
        false
    });
    cf.bulk.retain(|f| {
        let drop = f.file_id == file_id;
        released += usize::from(drop && f.chunk);
        !drop
    });
    core.files.ahead = core.files.ahead.saturating_sub(released);
    if let Some(f) = core.files.map.get_mut(&file_id) {
        f.readers.retain(|r| *r != id);
    }
    ended
}

/// Starts chunk reads for `id`'s downloads as far as the read-ahead allows,
/// and queues the final stat of those that have every chunk queued.
pub(crate) fn pump(core: &mut Core, id: ConnId) {
    let Some(cf) = core.conn_files_ref(id) else { return };
    let mut ahead = cf.ahead();
    let mut starts = Vec::new();
    let mut finished = Vec::new();
    let mut starved = false;
    for (i, d) in cf.downloads.iter().enumerate() {
        if d.reading > 0 {
            continue;
        }
        // A deleted file's downloads were ended with it.
        let Some(f) = core.files.map.get(&d.file_id) else { continue };
        if d.next >= f.meta.chunk_count {
            finished.push(i);
            continue;
        }
        // Zero: parked behind the upload until more chunks are durable
        // (`grown`), or behind the client until it takes some (`ack`).
        let window = d.taken.saturating_add(DOWNLOAD_WINDOW).saturating_sub(d.next);
        let available = f.stored.saturating_sub(d.next).min(window);
        if available == 0 {
            continue;
        }
        let room = READ_AHEAD.saturating_sub(ahead);
        let global =
            READ_AHEAD_TOTAL.saturating_sub(core.files.ahead + starts.iter().map(|(_, n)| *n as usize).sum::<usize>());
        if room == 0 {
            break;
        }
        if global == 0 {
            starved = true;
            break;
        }
        // NOTE: both at most READ_AHEAD_TOTAL, well within u32.
        let count = available.min(READ_BATCH).min(room as u32).min(global as u32);
        ahead += count as usize;
        starts.push((i, count));
    }
    for (i, count) in starts {
        let Some(d) = core.conn_files(id).and_then(|cf| cf.downloads.get_mut(i)) else { continue };
        d.reading = count;
        let job = Job::ReadChunks { conn: id, file_id: d.file_id, serial: d.serial, from: d.next, count };
        core.files.ahead += count as usize;
        core.push_job(job);
    }
    for i in finished.into_iter().rev() {
        let Some(cf) = core.conn_files(id) else { return };
        if i >= cf.downloads.len() {
            continue;
        }
        let d = cf.downloads.remove(i);
        // The final stat waits behind the chunks, in the bulk queue.
        let bytes = status_frame(d.msg_id, FLGT, "file sent");
        cf.bulk.push_back(BulkFrame { file_id: d.file_id, bytes, chunk: false });
        if let Some(f) = core.files.map.get_mut(&d.file_id) {
            f.readers.retain(|r| *r != id);
        }
        core.wake(id);
    }
    if starved && !core.files.starved.contains(&id) {
        core.files.starved.push_back(id);
    }
}

/// Pumps connections that waited for the global read-ahead, in turn, while some is free.
pub(crate) fn pump_starved(core: &mut Core) {
    for _ in 0..core.files.starved.len() {
        if core.files.ahead >= READ_AHEAD_TOTAL {
            return;
        }
        let Some(id) = core.files.starved.pop_front() else { return };
        pump(core, id);
    }
}

/// A stat with status done (200) for request `msg_id`, as plaintext.
fn status_frame(msg_id: u64, request: u32, reason: &str) -> Vec<u8> {
    // The time is that of the sealing's turn, not ours: a done stat carries none.
    let mut m = StatusReply::new(Status::Done, code::OK, msg_id, 0);
    m.request_opcode.set(request);
    let _ = m.set_reason(reason);
    m.as_bytes().to_vec()
}

/// One read job's identity: which download, which chunks.
pub struct Read {
    /// The file.
    pub file_id: u64,
    /// The download it was for.
    pub serial: u64,
    /// The first chunk read.
    pub from: u32,
    /// How many.
    pub count: u32,
}

/// A read job finished: its chunks go to the bulk queue, checked; a chunk
/// that does not check (the disk corrupted it) ends the download with 500.
pub(crate) fn read_done(core: &mut Core, id: ConnId, read: Read, records: Option<Vec<u8>>, now_ms: u64) {
    let Read { file_id, serial, from, count } = read;
    let Some(cf) = core.conn_files(id) else { return };
    // Replaced or ended since: its read-ahead was released then.
    let Some(d) = cf.downloads.iter_mut().find(|d| d.serial == serial) else { return };
    let msg_id = d.msg_id;
    let mut frames = Vec::with_capacity(count as usize);
    if let Some(records) = &records {
        for (i, rec) in records.chunks(CHUNK_RECORD).take(count as usize).enumerate() {
            // NOTE: i < count ≤ READ_BATCH.
            let index = from + i as u32;
            let Some((iv, tag, data)) = open_chunk(rec, index) else { break };
            let mut m = FileChunkData::new(Status::Pending, code::PENDING, msg_id, now_ms);
            m.file_id.set(file_id);
            m.index.set(index);
            m.iv = *iv;
            m.tag = *tag;
            m.data = *data;
            frames.push(BulkFrame { file_id, bytes: m.as_bytes().to_vec(), chunk: true });
        }
    }
    if frames.len() != count as usize {
        crate::log!(Error, "file {file_id:016x}: chunks {from}.. on disk cannot be read or do not check");
        end_downloads(core, id, file_id);
        core.reply(id, msg_id, FLGT, code::INTERNAL, "the server cannot read this file", now_ms);
        return;
    }
    d.reading = 0;
    d.next = from + count;
    cf.bulk.extend(frames);
    core.top_up(id);
    pump(core, id);
    core.wake(id);
}

/// More chunks of `file_id` are durable: its parked downloads read on.
pub(crate) fn grown(core: &mut Core, file_id: u64) {
    let readers = core.files.map.get(&file_id).map(|f| f.readers.clone()).unwrap_or_default();
    for id in readers {
        pump(core, id);
    }
}

/// A connection is gone: its downloads' read-ahead is released.
pub(crate) fn forget(core: &mut Core, id: ConnId, cf: ConnFiles) {
    let released = cf.ahead();
    core.files.ahead = core.files.ahead.saturating_sub(released);
    for d in &cf.downloads {
        if let Some(f) = core.files.map.get_mut(&d.file_id) {
            f.readers.retain(|r| *r != id);
        }
    }
    core.files.starved.retain(|c| *c != id);
    if released > 0 {
        pump_starved(core);
    }
}

/// Deletes `file_id` (durably with the next commit); its downloads end with 404.
fn delete(core: &mut Core, file_id: u64, now_ms: u64) {
    let Some(f) = core.files.remove(file_id) else { return };
    for id in f.readers {
        for msg_id in end_downloads(core, id, file_id) {
            core.reply(id, msg_id, FLGT, code::NOT_FOUND, "the file was deleted or expired", now_ms);
        }
    }
    pump_starved(core);
}

/// Deletes the files `uid` offered, and those offered to it as a DM (an
/// account deletion); their downloads end with a 404.
pub(crate) fn delete_user_files(core: &mut Core, uid: u64, now_ms: u64) {
    let ids: Vec<u64> = core
        .files
        .map
        .values()
        .filter(|f| f.meta.owner == uid || f.meta.target == Target::Peer(uid))
        .map(|f| f.meta.id)
        .collect();
    for file_id in ids {
        delete(core, file_id, now_ms);
    }
}

/// fldn: a recipient has the file or declines it; a DM file is deleted then.
pub fn done(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<FileDone>(frame) else { return };
    let (msg_id, file_id, me) = (m.hdr.msg_id.get(), m.file_id.get(), auth.uid());
    if !matches!(m.state, 1 | 2) {
        return core.reply(id, msg_id, FLDN, code::BAD_REQUEST, "state must be 1 (received) or 2 (declined)", now_ms);
    }
    let Some(f) = core.files.map.get_mut(&file_id) else {
        return core.reply(id, msg_id, FLDN, code::NOT_FOUND, "no such file (unknown, expired or deleted)", now_ms);
    };
    let room = match &f.meta.target {
        Target::Peer(peer) if *peer == me => None,
        Target::Room(name) if core.rooms.get(name).is_some_and(|r| r.is_member(me)) => Some(()),
        _ => return core.reply(id, msg_id, FLDN, code::FORBIDDEN, "not a recipient of this file", now_ms),
    };
    match room {
        // Its one recipient is done with it: nothing more to keep.
        None => delete(core, file_id, now_ms),
        // A room file stays until it expires; the record lists who is done.
        Some(()) => {
            if !f.meta.done.contains(&me) && f.meta.done.len() < DONE_MAX {
                f.meta.done.push(me);
                core.files.mark_dirty(file_id);
            }
        }
    }
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: FLDN, reason: "noted" });
}

/// Deletes expired files, about once a second.
pub fn handle_timeout(core: &mut Core, now_ms: u64) {
    if now_ms < core.files.next_sweep_ms {
        return;
    }
    core.files.next_sweep_ms = now_ms.saturating_add(SWEEP_MS);
    let expired = core.files.expired(now_ms);
    if !expired.is_empty() {
        crate::log!(Debug, "{} files expired", expired.len());
    }
    for file_id in expired {
        delete(core, file_id, now_ms);
    }
}
