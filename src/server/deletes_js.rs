//! Deleting what a replace or a file's removal left, in the background, off
//! the commit's path: one message at a time (never a filtered purge: see
//! jetstream.rs), each a get and a delete, which a replicated stream takes
//! one after another (300 chunks held a commit 477 ms).

use async_nats::jetstream::stream;
use futures_util::StreamExt;

use super::{next_in, unavailable, JetStreamStore, StoreError};

impl JetStreamStore {
    /// Starts deleting file `id`'s chunks in the background: those stored up
    /// to now, not those of a later upload under the same id. Until that is
    /// done, the id is in `deleting`.
    pub(super) async fn delete_chunks_later(&self, id: u64) -> Result<(), StoreError> {
        let upto = self.chunks.get_info().await.map_err(unavailable)?.state.last_sequence;
        self.deleting.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        let (chunks, deleting) = (self.chunks.clone(), self.deleting.clone());
        self.rt.spawn(async move {
            match delete_chunks(&chunks, id, upto).await {
                Ok(()) => {
                    deleting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                }
                Err(e) => crate::log!(Info, "file {id:016x}: deleting its chunks: {e}; the rest goes when its id is offered again or at the next start"),
            }
        });
        Ok(())
    }

    /// A file's record is written: if its id's chunks are still being deleted
    /// (a client may offer an id again once its deletion committed), the rest
    /// goes now, so that no chunk of the old file counts for the new one.
    pub(super) async fn finish_deleting(&self, id: u64) -> Result<(), StoreError> {
        if !self.deleting.lock().unwrap_or_else(|e| e.into_inner()).contains(&id) {
            return Ok(());
        }
        self.writable()?;
        delete_chunks(&self.chunks, id, u64::MAX).await?;
        self.deleting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        Ok(())
    }
}

/// Deletes `subject`'s messages older than `first`, one at a time (never a
/// filtered purge: see the top of this file). A failure is logged and the
/// rest left: dead messages cost only space, loading skips them (the last
/// whole replace is the content), and the next replace of parts deletes from
/// the start again. Two of these may run over one subject at once.
pub(super) async fn delete_before(records: stream::Stream, subject: String, first: u64) {
    let mut seq = 1;
    loop {
        let m = match next_in(&records, &subject, seq).await {
            Ok(Some(m)) if m.sequence < first => m,
            Ok(_) => return,
            Err(e) => {
                crate::log!(
                    Info,
                    "{subject}: deleting the messages before its replace of parts: {e}; left for the next"
                );
                return;
            }
        };
        if let Err(e) = delete_one(&records, m.sequence).await {
            crate::log!(Info, "{subject}: deleting message {}: {e}; the rest left for the next replace", m.sequence);
            return;
        }
        seq = m.sequence + 1;
    }
}

/// Deletes file `id`'s chunks stored at sequence `upto` or before, one at a
/// time (a chunk stored after is a later upload's under the same id).
pub(super) async fn delete_chunks(chunks: &stream::Stream, id: u64, upto: u64) -> Result<(), StoreError> {
    let mut info = chunks.info_with_subjects(format!("sotto.c.{id:016x}.>")).await.map_err(unavailable)?;
    let mut subjects = Vec::new();
    while let Some(s) = info.next().await {
        subjects.push(s.map_err(unavailable)?.0);
    }
    for subject in subjects {
        match chunks.get_last_raw_message_by_subject(&subject).await {
            Ok(m) if m.sequence <= upto => delete_one(chunks, m.sequence).await?,
            Ok(_) => {}
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(())
}

/// Deletes message `seq` of `stream`; one already gone (another deletion of
/// the same messages took it first) counts as deleted.
async fn delete_one(stream: &stream::Stream, seq: u64) -> Result<(), StoreError> {
    let Err(e) = stream.delete_message(seq).await else { return Ok(()) };
    match stream.get_raw_message(seq).await {
        Err(gone) if gone.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(()),
        _ => Err(unavailable(e)),
    }
}
