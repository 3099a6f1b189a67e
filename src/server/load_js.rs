//! Loading the records at start-up: every subject of a filter read from
//! JetStream (through an ordered consumer, or message by message when none
//! comes up) or from what a standby followed, its operations replayed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use super::{
    apply_loaded, next_in, unavailable, JetStreamStore, Last, Loaded, StoreError, CONSUMER_TIMEOUT, LOAD_PATIENCE,
    REQUEST_TIMEOUT,
};

impl JetStreamStore {
    /// Every subject under `filter` of the records stream, with its content.
    /// Loading happens at start-up, often just after a NATS server was lost
    /// (streams electing new leaders): an unreachable stream is retried for
    /// [`LOAD_PATIENCE`] before start-up fails.
    pub(super) fn load(&self, filter: &str) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        Ok(self.load_counted(filter)?.into_iter().map(|(subject, (content, _))| (subject, content)).collect())
    }

    /// As [`JetStreamStore::load`], with each subject's count of messages
    /// (as its operations leave them: a rollup one, each append one more).
    pub(super) fn load_counted(&self, filter: &str) -> Result<BTreeMap<String, (Vec<u8>, u64)>, StoreError> {
        retrying(filter, || self.load_once(filter))
    }

    pub(super) fn load_once(&self, filter: &str) -> Result<BTreeMap<String, (Vec<u8>, u64)>, StoreError> {
        // A standby that took over has the records in memory already.
        let loaded = match self.followed(filter) {
            Some(followed) => followed,
            None => self.read(filter)?,
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for (subject, l) in loaded {
            if l.partial.is_some() {
                crate::log!(
                    Warn,
                    "{subject}: an unfinished replace (a crash mid-write) ignored; the previous content kept"
                );
            }
            last.insert(subject.clone(), Last::Known(l.last));
            if !l.removed {
                out.insert(subject, (l.content, l.count));
            }
        }
        Ok(out)
    }

    /// Reads `filter`'s messages from JetStream: through a consumer, or
    /// message by message once a consumer did not come up.
    pub(super) fn read(&self, filter: &str) -> Result<BTreeMap<String, Loaded>, StoreError> {
        self.rt.block_on(async {
            if self.by_get.load(Ordering::SeqCst) {
                return self.read_by_get(filter).await;
            }
            match self.read_by_consumer(filter).await {
                Err(StoreError::Unavailable { why }) => {
                    // nats-server 2.9 may place the ephemeral consumer on a
                    // replica that is down; the stream leader answers gets.
                    crate::log!(Info, "loading {filter}: {why}; reading message by message from now on");
                    self.by_get.store(true, Ordering::SeqCst);
                    self.read_by_get(filter).await
                }
                other => other,
            }
        })
    }

    /// Reads `filter`'s messages through an ordered consumer: one request for all.
    pub(super) async fn read_by_consumer(&self, filter: &str) -> Result<BTreeMap<String, Loaded>, StoreError> {
        let config = consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let mut consumer = tokio::time::timeout(CONSUMER_TIMEOUT, self.records.create_consumer(config))
            .await
            .map_err(|_| unavailable("no consumer within 2 s"))?
            .map_err(unavailable)?;
        let pending = consumer.info().await.map_err(unavailable)?.num_pending;
        let mut out: BTreeMap<String, Loaded> = BTreeMap::new();
        if pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        loop {
            let next = tokio::time::timeout(REQUEST_TIMEOUT, messages.next()).await;
            let msg = match next {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(unavailable(e)),
                Ok(None) => return Err(unavailable("the consumer ended early")),
                Err(_) => return Err(unavailable("timed out reading the records")),
            };
            let info = msg.info().map_err(unavailable)?;
            let (seq, left) = (info.stream_sequence, info.pending);
            let subject = msg.subject.to_string();
            apply_loaded(&mut out, &subject, msg.headers.as_ref(), &msg.payload, seq)?;
            if left == 0 {
                return Ok(out);
            }
        }
    }

    /// Reads `filter`'s messages one request each, from the stream leader.
    pub(super) async fn read_by_get(&self, filter: &str) -> Result<BTreeMap<String, Loaded>, StoreError> {
        let mut out: BTreeMap<String, Loaded> = BTreeMap::new();
        let mut seq = 1;
        while let Some(m) = self.next_record(filter, seq).await? {
            apply_loaded(&mut out, &m.subject, Some(&m.headers), &m.payload, m.sequence)?;
            seq = m.sequence.saturating_add(1);
        }
        Ok(out)
    }

    /// The first message of `filter` at sequence `seq` or after (`None`: no more).
    pub(super) async fn next_record(
        &self,
        filter: &str,
        seq: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
        next_in(&self.records, filter, seq).await
    }

    /// The content of one subject (`None` when it has none).
    pub(super) fn load_one(&self, subject: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.load(subject)?.remove(subject))
    }

    /// Every subject of a kind whose last token is a hex id, with its content.
    pub(super) fn load_kind(&self, kind: &str) -> Result<Vec<(String, u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for (subject, content) in self.load(&format!("sotto.r.{kind}.*"))? {
            let id = JetStreamStore::id_of(&subject)?;
            out.push((subject, id, content));
        }
        Ok(out)
    }
}

/// Runs the start-up read `f` until it succeeds, fails otherwise than
/// unreachable, or [`LOAD_PATIENCE`] has passed.
pub(super) fn retrying<T>(what: &str, f: impl Fn() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = Instant::now() + LOAD_PATIENCE;
    loop {
        match f() {
            Err(StoreError::Unavailable { why }) if Instant::now() < deadline => {
                crate::log!(Warn, "loading {what} from JetStream: {why}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}
