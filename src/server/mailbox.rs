//! Per-user mailbox (DESIGN §7): the durable queue of events waiting for a
//! user's client — direct messages, DM requests, accepts, rejects, expiry
//! notices — and its append-only file format.
//!
//! Invariant: a record leaves the mailbox only when the client acknowledges
//! its sequence number (an ack record is appended); every record carries a
//! checksum, so a torn or corrupt tail is detected, reported and cut off,
//! and everything before it is kept.

use std::collections::{BTreeMap, HashMap};

use crate::crypto;
use crate::opcodes::MAX_MESSAGE;
use crate::server::contacts::Contacts;
use crate::server::prekeys::Prekeys;
use crate::server::store::Store;

/// Record kinds in a queue file.
const EVENT: u8 = 1;
const ACK: u8 = 2;
/// kind, 3 zero bytes, payload length (u32), seq (u64), time (u64).
const HEAD: usize = 24;
/// Truncated SHA-256 over head and payload.
const SUM: usize = 8;
/// Byte offset of `seq` in every mailbox event (right after the 24-byte header).
pub(crate) const SEQ_OFFSET: usize = 24;

/// One event waiting in a mailbox.
#[derive(Clone)]
pub(crate) struct Record {
    /// When it was stored, Unix ms.
    pub time_ms: u64,
    /// The event message, its `seq` field set.
    pub event: Vec<u8>,
    /// For a DM: (sender UID, DM id).
    pub dm: Option<(u64, u64)>,
}

/// A user's mailbox in memory, with what is not yet on disk.
#[derive(Default)]
pub(crate) struct Mailbox {
    next_seq: u64,
    live: BTreeMap<u64, Record>,
    /// DMs stored since load, live or acknowledged: (sender, id) -> seq.
    dms: HashMap<(u64, u64), u64>,
    /// Encoded records to append at the next commit.
    pending: Vec<u8>,
    /// Records in the file (events and acks), for compaction.
    file_records: usize,
    /// A commit failed: the file must be rewritten from memory.
    rewrite: bool,
    /// Bytes of the waiting events (for the per-user cap).
    live_bytes: usize,
}

impl Mailbox {
    /// Stores an event; returns its sequence number. `event` must be a
    /// mailbox event (its seq field at `SEQ_OFFSET`).
    pub fn push(&mut self, mut event: Vec<u8>, dm: Option<(u64, u64)>, now_ms: u64) -> u64 {
        self.next_seq = self.next_seq.max(1);
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(field) = event.get_mut(SEQ_OFFSET..SEQ_OFFSET + 8) {
            field.copy_from_slice(&seq.to_be_bytes());
        }
        encode(&mut self.pending, EVENT, seq, now_ms, &event);
        self.file_records += 1;
        if let Some(key) = dm {
            self.dms.insert(key, seq);
        }
        self.live_bytes += event.len();
        self.live.insert(seq, Record { time_ms: now_ms, event, dm });
        seq
    }

    /// Whether an event of `len` bytes fits under the caps (`max_msgs`
    /// waiting events, `max_bytes` bytes of them).
    pub fn has_room(&self, len: usize, max_msgs: usize, max_bytes: usize) -> bool {
        self.live.len() < max_msgs && self.live_bytes.saturating_add(len) <= max_bytes
    }

    /// Removes `seq` if it is waiting; returns the record.
    pub fn ack(&mut self, seq: u64, now_ms: u64) -> Option<Record> {
        let rec = self.live.remove(&seq)?;
        self.live_bytes = self.live_bytes.saturating_sub(rec.event.len());
        encode(&mut self.pending, ACK, seq, now_ms, &[]);
        self.file_records += 1;
        Some(rec)
    }

    /// The sequence number of DM `key` if it was stored since load.
    pub fn dm_seq(&self, key: (u64, u64)) -> Option<u64> {
        self.dms.get(&key).copied()
    }

    /// Whether `seq` still waits for an acknowledgement.
    pub fn is_live(&self, seq: u64) -> bool {
        self.live.contains_key(&seq)
    }

    /// Waiting records in order.
    #[cfg(test)]
    pub fn live(&self) -> impl Iterator<Item = (&u64, &Record)> {
        self.live.iter()
    }

    /// Waiting records with a sequence number above `after`, in order.
    pub fn live_after(&self, after: u64) -> impl Iterator<Item = (&u64, &Record)> {
        self.live.range(after.saturating_add(1)..)
    }

    /// How many waiting records have a sequence number up to `upto` (sent, not yet acknowledged).
    pub fn waiting_upto(&self, upto: u64) -> usize {
        self.live.range(..=upto).count()
    }

    /// Whether the oldest waiting record was stored before `cutoff_ms` (cheap: records are in time order).
    pub fn has_expired(&self, cutoff_ms: u64) -> bool {
        self.live.values().next().is_some_and(|r| r.time_ms < cutoff_ms)
    }

    /// Sequence numbers of the records stored before `cutoff_ms` and still waiting.
    pub fn expired(&self, cutoff_ms: u64) -> Vec<u64> {
        self.live.iter().take_while(|(_, r)| r.time_ms < cutoff_ms).map(|(s, _)| *s).collect()
    }

    /// After a failed commit: what was taken for it is lost, so rewrite the file.
    pub fn force_rewrite(&mut self) {
        self.rewrite = true;
    }

    /// What the next commit must do with this mailbox's file.
    pub fn take_write(&mut self) -> Option<QueueWrite> {
        if self.pending.is_empty() && !self.rewrite {
            return None;
        }
        if self.live.is_empty() {
            // Fully acknowledged: the file is compacted away.
            self.rewrite = false;
            self.pending.clear();
            self.file_records = 0;
            self.dms.clear();
            return Some(QueueWrite::Remove);
        }
        if self.rewrite || (self.file_records > 1024 && self.live.len() * 2 < self.file_records) {
            self.rewrite = false;
            self.pending.clear();
            let mut all = Vec::new();
            for (seq, r) in &self.live {
                encode(&mut all, EVENT, *seq, r.time_ms, &r.event);
            }
            self.file_records = self.live.len();
            return Some(QueueWrite::Replace(all));
        }
        Some(QueueWrite::Append(std::mem::take(&mut self.pending)))
    }
}

/// Every mailbox, the contacts and the published prekeys: what direct
/// messages need, as the core holds it.
#[derive(Default)]
pub struct Mail {
    /// Mailboxes by owner UID (created on first use).
    pub(crate) boxes: HashMap<u64, Mailbox>,
    /// Requests and accepted pairs.
    pub(crate) contacts: Contacts,
    /// Each user's published prekeys (call `Core::mark_prekeys_dirty` after a change).
    pub(crate) prekeys: Prekeys,
}

impl Mail {
    /// Events waiting in all mailboxes, and their bytes.
    pub(crate) fn sizes(&self) -> (u64, u64) {
        self.boxes.values().fold((0, 0), |(n, b), m| (n + m.live.len() as u64, b + m.live_bytes as u64))
    }

    /// Mailboxes, contacts and prekeys from `store`; a torn or corrupt queue
    /// tail is reported and cut off, and the records before it kept; a
    /// corrupt contacts or prekey file stops the start.
    pub fn load(store: &dyn Store) -> Result<Mail, String> {
        let mut mail = Mail::default();
        if let Some(bytes) = store.load_contacts().map_err(|e| e.to_string())? {
            mail.contacts = Contacts::decode(&bytes)
                .map_err(|why| format!("contacts.db: corrupt ({why}); move it aside to start without it"))?;
        }
        for q in store.load_queues().map_err(|e| e.to_string())? {
            let loaded = load(&q.bytes, dm_key);
            if loaded.good_len < q.bytes.len() {
                crate::log!(
                    Warn,
                    "queue {:016x}: skipped {} bytes of torn or corrupt records at offset {}; the records before are kept",
                    q.uid,
                    q.bytes.len() - loaded.good_len,
                    loaded.good_len
                );
                store.truncate_queue(q.uid, loaded.good_len as u64).map_err(|e| e.to_string())?;
            }
            mail.boxes.insert(q.uid, loaded.mailbox);
        }
        for (uid, published) in store.load_prekeys().map_err(|e| e.to_string())? {
            mail.prekeys.insert(uid, published);
        }
        Ok(mail)
    }
}

/// (sender, DM id) of a stored `rvu*` of any class, for de-duplication.
fn dm_key(event: &[u8]) -> Option<(u64, u64)> {
    use crate::opcodes::{Class, ReceiveDmHead, RVUS};
    use zerocopy::FromBytes;
    let opcode = crate::wire::header(event).ok()?.opcode.get();
    let class = Class::ALL.into_iter().find(|c| RVUS + c.opcode_offset() == opcode)?;
    let head = event.get(core::mem::size_of::<crate::opcodes::Header>()..)?;
    let (m, body) = ReceiveDmHead::ref_from_prefix(head).ok()?;
    (body.len() >= class.body()).then(|| (m.sender_uid.get(), m.dm_id.get()))
}

/// A change to a queue file.
pub enum QueueWrite {
    /// Append these records (then fsync).
    Append(Vec<u8>),
    /// Replace the file with these records (atomically).
    Replace(Vec<u8>),
    /// Delete the file.
    Remove,
}

fn checksum(head: &[u8], payload: &[u8]) -> [u8; SUM] {
    let h = crypto::sha256(&[head, payload]);
    let mut out = [0u8; SUM];
    out.copy_from_slice(&h[..SUM]);
    out
}

fn encode(out: &mut Vec<u8>, kind: u8, seq: u64, time_ms: u64, payload: &[u8]) {
    let at = out.len();
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(payload);
    let sum = checksum(&out[at..at + HEAD], payload);
    out.extend_from_slice(&sum);
}

/// A queue file read back: the mailbox, and how many bytes were good.
pub(crate) struct Loaded {
    /// The rebuilt mailbox.
    pub mailbox: Mailbox,
    /// Length of the valid prefix; anything after it is a torn or corrupt tail.
    pub good_len: usize,
}

/// Rebuilds a mailbox from its file; `dm_of` extracts (sender, id) from a DM event.
pub(crate) fn load(bytes: &[u8], dm_of: impl Fn(&[u8]) -> Option<(u64, u64)>) -> Loaded {
    let mut mb = Mailbox::default();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + HEAD) {
        let kind = head[0];
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len > MAX_MESSAGE || head[1..4] != [0, 0, 0] || !(kind == EVENT || kind == ACK) {
            break;
        }
        let Some(payload) = bytes.get(at + HEAD..at + HEAD + len) else { break };
        let Some(sum) = bytes.get(at + HEAD + len..at + HEAD + len + SUM) else { break };
        if checksum(head, payload) != sum {
            break;
        }
        let seq = u64::from_be_bytes(head[8..16].try_into().unwrap_or_default());
        let time_ms = u64::from_be_bytes(head[16..24].try_into().unwrap_or_default());
        if kind == EVENT {
            let dm = dm_of(payload);
            if let Some(key) = dm {
                mb.dms.insert(key, seq);
            }
            mb.live_bytes += payload.len();
            if let Some(old) = mb.live.insert(seq, Record { time_ms, event: payload.to_vec(), dm }) {
                mb.live_bytes = mb.live_bytes.saturating_sub(old.event.len());
            }
        } else if let Some(old) = mb.live.remove(&seq) {
            mb.live_bytes = mb.live_bytes.saturating_sub(old.event.len());
        }
        mb.next_seq = mb.next_seq.max(seq + 1);
        mb.file_records += 1;
        at += HEAD + len + SUM;
    }
    Loaded { mailbox: mb, good_len: at }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tag: u8) -> Vec<u8> {
        vec![tag; 48]
    }

    fn file_of(mb: &mut Mailbox) -> Vec<u8> {
        match mb.take_write() {
            Some(QueueWrite::Append(b) | QueueWrite::Replace(b)) => b,
            _ => Vec::new(),
        }
    }

    #[test]
    fn replays_events_minus_acks_in_order() {
        let mut mb = Mailbox::default();
        let a = mb.push(event(1), Some((7, 100)), 10);
        let b = mb.push(event(2), None, 11);
        let c = mb.push(event(3), Some((7, 101)), 12);
        assert!(mb.ack(b, 13).is_some());
        assert!(mb.ack(b, 13).is_none(), "acknowledged once");
        let bytes = file_of(&mut mb);
        let loaded = load(&bytes, |e| (e[0] != 2).then_some((7, 100 + u64::from(e[0] == 3))));
        assert_eq!(loaded.good_len, bytes.len());
        let seqs: Vec<u64> = loaded.mailbox.live().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [a, c]);
        let (_, first) = loaded.mailbox.live().next().unwrap();
        assert_eq!(&first.event[SEQ_OFFSET..SEQ_OFFSET + 8], &a.to_be_bytes(), "seq written into the event");
        assert_eq!(loaded.mailbox.dm_seq((7, 101)), Some(c));
    }

    #[test]
    fn torn_or_corrupt_tail_is_cut_and_the_rest_kept() {
        let mut mb = Mailbox::default();
        for i in 0..5 {
            mb.push(event(i), None, 1);
        }
        let bytes = file_of(&mut mb);
        let record = bytes.len() / 5;
        for cut in [1, 10, record - 1] {
            let loaded = load(&bytes[..bytes.len() - cut], |_| None);
            assert_eq!(loaded.mailbox.live().count(), 4, "cut {cut}");
            assert_eq!(loaded.good_len, 4 * record);
        }
        let mut flipped = bytes.clone();
        flipped[3 * record + 30] ^= 1;
        let loaded = load(&flipped, |_| None);
        assert_eq!(loaded.mailbox.live().count(), 3);
        let mut huge = bytes;
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(load(&huge, |_| None).good_len, 0, "length bounded before use");
    }

    #[test]
    fn fully_acknowledged_mailbox_is_compacted_away() {
        let mut mb = Mailbox::default();
        let s = mb.push(event(1), None, 1);
        assert!(matches!(mb.take_write(), Some(QueueWrite::Append(_))));
        mb.ack(s, 2);
        assert!(matches!(mb.take_write(), Some(QueueWrite::Remove)));
        assert!(mb.take_write().is_none());
    }
}
