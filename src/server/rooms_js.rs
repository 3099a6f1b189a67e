//! A room on JetStream: its record without its history
//! (`sotto.r.room.<name>`, replaced when its members, bans or password
//! change) and its kept history on a subject of its own
//! (`sotto.r.hist.<name>`), to which a commit appends the entries pushed
//! since the room's last write: a room message costs an append of its entry,
//! not a rewrite of the room with its 20 kept messages.
//!
//! A history subject's content is entries one after another, and the room's
//! history is the last 20 of them. A rollup of the whole history replaces it
//! when the history changed otherwise (a message removed, the history
//! cleared), when this node does not know what the subject holds (never
//! written or loaded by it, or a write's outcome unknown), and after
//! [`ROLLUP_EVERY`] messages, which bounds the subject.
//!
//! Invariant: a room's history is written before its record, and removed
//! after it, so a crash between leaves a history without a record (ignored
//! when loading) or an entry more than was acknowledged (a client's resend
//! of it is recognised by its id), never a record whose history is gone. A
//! room record written by an earlier version holds its history itself: it
//! is loaded from there, and the room's first write rolls it up onto its
//! subject before the record loses it.

use std::collections::HashMap;

use super::{corrupt, history_subject, room_subject, JetStreamStore};
use crate::server::room::{self, Room};
use crate::server::store::{RoomWrite, StoreError};

/// A history subject is rolled up when it has this many messages since its
/// last rollup (the rollup included).
pub(super) const ROLLUP_EVERY: u64 = 20;

/// What this node knows it wrote, or loaded, of each room.
#[derive(Default)]
pub(super) struct Written {
    /// Each room record's checksum (its last 32 bytes).
    records: HashMap<String, [u8; 32]>,
    /// Messages on each history subject since its last rollup, the rollup included.
    since_rollup: HashMap<String, u64>,
}

/// A room record's checksum: its last 32 bytes.
fn checksum_of(bytes: &[u8]) -> [u8; 32] {
    bytes.get(bytes.len().saturating_sub(32)..).and_then(|s| s.try_into().ok()).unwrap_or_default()
}

impl JetStreamStore {
    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a room: its history's new entries (or the whole history), then
    /// its record if that changed.
    pub(super) async fn write_room(&self, name: &str, w: &RoomWrite) -> Result<(), StoreError> {
        let (record, history) = (room_subject(name), history_subject(name));
        let result = self.write_room_subjects(&record, &history, w).await;
        if result.is_err() {
            // What the subjects hold now is not known: the next write replaces both.
            let mut known = self.written();
            known.records.remove(&record);
            known.since_rollup.remove(&history);
        }
        result
    }

    async fn write_room_subjects(&self, record: &str, history: &str, w: &RoomWrite) -> Result<(), StoreError> {
        let since = self.written().since_rollup.get(history).copied();
        match since {
            Some(n) if !w.rewritten && n < ROLLUP_EVERY => {
                if w.newest < w.entries.end {
                    self.append(history, &w.file[w.newest..w.entries.end]).await?;
                    self.written().since_rollup.insert(history.to_owned(), n + 1);
                }
            }
            _ => {
                self.replace(history, &w.file[w.entries.clone()]).await?;
                self.written().since_rollup.insert(history.to_owned(), 1);
            }
        }
        let bytes = room::without_history(w);
        let sum = checksum_of(&bytes);
        if self.written().records.get(record) != Some(&sum) {
            self.replace(record, &bytes).await?;
            self.written().records.insert(record.to_owned(), sum);
        }
        Ok(())
    }

    /// Removes a room: its record, then its history (a tombstone each).
    pub(super) async fn remove_room(&self, name: &str) -> Result<(), StoreError> {
        let (record, history) = (room_subject(name), history_subject(name));
        {
            let mut known = self.written();
            known.records.remove(&record);
            known.since_rollup.remove(&history);
        }
        self.remove(&record).await?;
        self.remove(&history).await
    }

    /// Every room: its record, with the history its subject holds.
    pub(super) fn load_split_rooms(&self) -> Result<Vec<Room>, StoreError> {
        let mut histories = self.load_counted("sotto.r.hist.*")?;
        let records = self.load("sotto.r.room.*")?;
        let mut known = Written::default();
        let mut out = Vec::with_capacity(records.len());
        for (subject, bytes) in records {
            let mut room = Room::decode(&bytes).map_err(|why| corrupt(&subject, why))?;
            let history = history_subject(&room.name);
            // None: a record of an earlier version, its history in it.
            if let Some((content, count)) = histories.remove(&history) {
                room.history = room::read_entries(&content).map_err(|why| corrupt(&history, why))?;
                let n = room.history.len() as u64;
                (room.pushed, room.durable, room.emitted) = (n, n, n);
                known.since_rollup.insert(history, count);
            }
            known.records.insert(subject, checksum_of(&bytes));
            out.push(room);
        }
        *self.written() = known;
        Ok(out)
    }
}
