//! A standby follows the deployment's records (DESIGN §8, "Cluster"): from
//! the moment it connects, it reads the records stream message by message
//! from the stream's leader and keeps reading every write the writer makes,
//! replaying each subject's operations as loading does. When it takes the
//! writer lease it waits until it has applied the stream's last sequence,
//! checks each subject's count of messages against the stream's, and
//! start-up then loads from that state in memory instead of reading
//! JetStream again: a takeover costs the lease's TTL and the parsing, not a
//! read of the whole state, and does not depend on a consumer coming up
//! while a NATS server is down.
//!
//! Invariant: what is served from the followed state is what a load after
//! the takeover would read, because it is the stream's messages up to its
//! last sequence once this node holds the lease, replayed in order; any
//! write of this node's makes it stale, and it is dropped at the first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use futures_util::StreamExt;

use super::{apply_loaded, JetStreamStore, Loaded};
use crate::server::store::StoreError;

/// How often a follower that has read every message asks for the next.
const FOLLOW_POLL: Duration = Duration::from_millis(20);
/// How long a new writer waits for its follower to reach the stream's last
/// sequence before it loads the state from JetStream instead.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(20);

/// The records as followed so far.
#[derive(Default)]
pub(super) struct Followed {
    subjects: BTreeMap<String, Loaded>,
    /// The last stream sequence applied (0: none).
    applied: u64,
    /// Following stopped on a record that does not replay: loading reports it.
    broken: Option<String>,
    /// It has read to the stream's end once: from then on it follows writes.
    live: bool,
}

/// The followed records and the task following them.
pub(super) type Follower = (Arc<Mutex<Followed>>, tokio::task::JoinHandle<()>);

impl JetStreamStore {
    /// Starts following the records stream on the NATS thread.
    pub(super) fn start_following(&self) {
        let state = Arc::new(Mutex::new(Followed::default()));
        let task = self.rt.spawn(follow(self.records.clone(), state.clone()));
        *self.follower.lock().unwrap_or_else(|e| e.into_inner()) = Some((state, task));
    }

    /// This node holds the lease: once the follower has applied the stream's
    /// last sequence, its state is what start-up loads (`served`); otherwise
    /// start-up reads JetStream as without it. The follower stops either way.
    pub(super) fn settle_followed(&self) {
        let Some((state, task)) = self.follower.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let reached = self.rt.block_on(self.caught_up(&state));
        task.abort();
        // It may be applying a message now: the state is whole once it ended.
        let _ = self.rt.block_on(task);
        let Some(target) = reached else { return };
        let mut subjects = std::mem::take(&mut state.lock().unwrap_or_else(|e| e.into_inner()).subjects);
        match self.rt.block_on(self.check_followed(&mut subjects)) {
            Ok(reread) => {
                crate::log!(
                    Info,
                    "records followed through sequence {target} ({} subjects, {reread} read again): \
                     loading them from memory",
                    subjects.len()
                );
                *self.served.lock().unwrap_or_else(|e| e.into_inner()) = Some(subjects);
            }
            Err(e) => crate::log!(Warn, "checking the followed records: {e}; loading them from JetStream"),
        }
    }

    /// Waits ([`CATCH_UP_PATIENCE`] at most) until the follower has applied
    /// the stream's last sequence as read now; returns it, or None (said why)
    /// when start-up must load from JetStream instead.
    async fn caught_up(&self, state: &Mutex<Followed>) -> Option<u64> {
        let deadline = Instant::now() + CATCH_UP_PATIENCE;
        let mut target = None;
        loop {
            if target.is_none() {
                match tokio::time::timeout(super::REQUEST_TIMEOUT, self.records.get_info()).await {
                    Ok(Ok(info)) => target = Some(info.state.last_sequence),
                    Ok(Err(e)) => crate::log!(Warn, "records stream: {e}; retrying"),
                    Err(_) => crate::log!(Warn, "records stream: no answer; retrying"),
                }
                if target.is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            {
                let s = state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(why) = &s.broken {
                    crate::log!(Warn, "following the records stopped ({why}); loading them from JetStream");
                    return None;
                }
                if !s.live {
                    // Still reading what was there when it started: a load
                    // through a consumer is faster.
                    crate::log!(
                        Info,
                        "this standby had read the records to sequence {} only; loading them from JetStream",
                        s.applied
                    );
                    return None;
                }
                if let Some(target) = target.filter(|t| s.applied >= *t) {
                    return Some(target);
                }
                if Instant::now() >= deadline {
                    crate::log!(
                        Warn,
                        "followed the records to sequence {} of {} in {} s; loading them from JetStream",
                        s.applied,
                        target.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                        CATCH_UP_PATIENCE.as_secs()
                    );
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Compares each followed subject's count of messages with the
    /// stream's, and reads the subjects that differ again, message by
    /// message: a replace of parts may not have deleted its older messages
    /// yet, and a message missed however it was would show here unless it
    /// was a rollup over a single message (the reason the follower reads by
    /// gets, which cannot skip one, and not through a consumer). Returns
    /// how many subjects were read again.
    async fn check_followed(&self, subjects: &mut BTreeMap<String, Loaded>) -> Result<usize, StoreError> {
        let mut stream: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut info = self.records.info_with_subjects("sotto.r.>").await.map_err(super::unavailable)?;
        while let Some(entry) = info.next().await {
            let (subject, n) = entry.map_err(super::unavailable)?;
            stream.insert(subject, n as u64);
        }
        let mut differ: Vec<String> = subjects
            .iter()
            .filter(|(s, l)| stream.get(*s).copied().unwrap_or(0) != l.count)
            .map(|(s, _)| s.clone())
            .collect();
        differ.extend(stream.keys().filter(|s| !subjects.contains_key(*s)).cloned());
        for subject in &differ {
            match self.read_by_get(subject).await?.remove(subject) {
                Some(loaded) => subjects.insert(subject.clone(), loaded),
                None => subjects.remove(subject),
            };
        }
        Ok(differ.len())
    }

    /// The followed subjects `filter` names, when start-up is served from
    /// the followed state.
    pub(super) fn followed(&self, filter: &str) -> Option<BTreeMap<String, Loaded>> {
        self.served.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|subjects| select(subjects, filter))
    }

    /// This node wrote: the followed state is stale from now on.
    pub(super) fn drop_followed(&self) {
        self.served.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The subjects `filter` names: `sotto.r.KIND.*` (one token after the
/// prefix, as NATS matches it) or one subject.
pub(super) fn select(subjects: &BTreeMap<String, Loaded>, filter: &str) -> BTreeMap<String, Loaded> {
    let Some(prefix) = filter.strip_suffix('*') else {
        return subjects.get_key_value(filter).map(|(s, l)| (s.clone(), l.clone())).into_iter().collect();
    };
    subjects
        .range(prefix.to_owned()..)
        .take_while(|(s, _)| s.starts_with(prefix))
        .filter(|(s, _)| !s[prefix.len()..].contains('.'))
        .map(|(s, l)| (s.clone(), l.clone()))
        .collect()
}

impl JetStreamStore {
    /// The content of record `subject` as this standby followed it so far
    /// (None: not followed, not seen, removed, or a replace unfinished).
    /// Never waits (an event loop asks): None too while the follower holds
    /// the state, applying a message; the caller asks again later.
    pub(super) fn followed_content(&self, subject: &str) -> Option<Vec<u8>> {
        let follower = self.follower.try_lock().ok()?;
        let (state, _) = follower.as_ref()?;
        let s = state.try_lock().ok()?;
        let l = s.subjects.get(subject).filter(|l| !l.removed && l.partial.is_none())?;
        Some(l.content.clone())
    }
}

/// Reads the records stream from its start, then every new message, into
/// `state`, for as long as the task runs: one get each, from the stream's
/// leader (the first message of `sotto.r.>` after the last applied), which
/// stores messages in the order of their sequences. Not a consumer: an
/// ordered consumer reading the clustered stream while it was written
/// skipped messages for good (nats-server 2.9.10, several records published
/// at once).
async fn follow(records: stream::Stream, state: Arc<Mutex<Followed>>) {
    crate::log!(Info, "following the deployment's records (loaded from memory once this node holds the writer lease)");
    // Whether the last attempt succeeded (the first failure of a run is logged).
    let mut told = true;
    loop {
        let next = state.lock().unwrap_or_else(|e| e.into_inner()).applied.saturating_add(1);
        match super::next_in(&records, "sotto.r.>", next).await {
            Ok(Some(m)) => {
                told = true;
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = apply_loaded(&mut s.subjects, &m.subject, Some(&m.headers), &m.payload, m.sequence) {
                    s.broken = Some(e.to_string());
                    return;
                }
                s.applied = m.sequence;
            }
            Ok(None) => {
                if !state.lock().unwrap_or_else(|e| e.into_inner()).live {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    s.live = true;
                    crate::log!(
                        Info,
                        "records read through sequence {} ({} subjects); following every write",
                        s.applied,
                        s.subjects.len()
                    );
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            Err(e) => retry(&mut told, e.to_string()).await,
        }
    }
}

/// Logs a failed attempt to follow (the first of a run of them) and waits a second.
async fn retry(told: &mut bool, why: String) {
    if *told {
        crate::log!(Info, "standby: cannot follow the records now ({why}); retrying every second");
        *told = false;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}
