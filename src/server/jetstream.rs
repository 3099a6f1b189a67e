//! Cluster storage: the store's records on NATS JetStream (`--cluster`).
//!
//! The file store's layout maps onto two replicated streams:
//!
//! - `SOTTO` (subjects `sotto.r.>`): one subject per file of the file store
//!   (`sotto.r.user.<uid>`, `sotto.r.room.<name>`, `sotto.r.q.<uid>`, …),
//!   except that a room's kept history has a subject of its own,
//!   `sotto.r.hist.<name>`, appended to message by message (`rooms_js.rs`),
//!   and the contacts file is one subject per pair, `sotto.r.pair.<lo>-<hi>`
//!   (`contacts_js.rs`). A subject's content is its last whole *replace* and
//!   the *appends* after it. A replace that fits one message is a *rollup*
//!   (`Nats-Rollup: sub`): the server drops the subject's older messages in
//!   the same step. A larger replace (a big ticket journal or mailbox) is
//!   several parts; it is whole only when all its parts are stored, so a
//!   crash mid-replace leaves the previous content; its older messages are
//!   then deleted one by one, in the background (they are dead content). A
//!   removal is a rollup *tombstone*.
//! - `SOTTO_CHUNKS` (subjects `sotto.c.<id>.<index>`, one message per
//!   subject): the chunk records of files, deleted message by message.
//!
//! Never a filtered purge: nats-server 2.9.10 (Debian 12's package) replays a
//! subject-filtered purge as a purge of the whole stream when a clustered
//! stream recovers after a restart (nats-io/nats-server#4196), which lost every
//! record in our full-restart test. Rollups and single-message deletes are
//! replayed as what they were.
//!
//! One node writes (`SOTTO_LEASE`, see [`JetStreamStore::take_lease`]): the
//! others are standbys that follow the records in memory (`follow.rs`) and
//! take over when its lease lapses.
//!
//! Invariant: a commit returns only after JetStream acknowledged every write
//! with the stream's replicas; every write to `sotto.r.>` names the last
//! sequence this node knows for the subject, so a write by another node in
//! between is refused, never overwritten. Such a refusal fences this node: it
//! writes nothing more and exits with [`EXIT_LEASE_LOST`], for its supervisor
//! to restart it as a standby that reads the state again (one writing node
//! per deployment; see docs/OPERATIONS.md, "Cluster").
//!
//! The NATS client needs an async runtime: it runs on this store's own thread
//! pool (one thread). The store's methods block their caller (the disk thread,
//! the file reader, a worker, or start-up), never an event loop.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use zerocopy::IntoBytes;

use crate::opcodes::UserRecord;
use crate::server::acct::Acct;
use crate::server::files::{self, FileMeta, StoredFile, CHUNK_RECORD};
use crate::server::mailbox::QueueWrite;
use crate::server::prekeys::Published;
use crate::server::room::Room;
use crate::server::store::{self, Change, QueueFile, Store, StoreError};
use crate::server::tickets::{self, JournalWrite};

/// The stream of records.
pub const RECORDS: &str = "SOTTO";
/// The stream of file chunks.
pub const CHUNKS: &str = "SOTTO_CHUNKS";
/// Bytes of content in one message at most: well under nats-server's default
/// `max_payload` (1 MiB), which also bounds a chunk record (about 16 KiB).
pub const PART: usize = 512 * 1024;
/// Content of one subject at most, as loaded (the largest file of the file
/// store is the ticket journal).
const MAX_SUBJECT: usize = tickets::MAX_JOURNAL_FILE as usize;
/// Header naming what a message of `sotto.r.>` is.
const OP: &str = "Sotto-Op";
#[path = "follow.rs"]
mod follow;
#[path = "replay.rs"]
mod replay;
use replay::{apply_loaded, Loaded};
#[path = "contacts_js.rs"]
mod contacts_js;
#[path = "deletes_js.rs"]
mod deletes_js;
#[path = "lease.rs"]
mod lease;
#[path = "load_js.rs"]
mod load_js;
#[path = "relay_js.rs"]
mod relay_js;
#[path = "rooms_js.rs"]
mod rooms_js;
use deletes_js::delete_before;
use lease::leave;
pub use lease::{EXIT_LEASE_LOST, LEASE, LEASE_TTL};
use load_js::retrying;
pub use relay_js::RelayLink;

/// How long one JetStream request or acknowledgement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long creating a consumer to read records may take before the records
/// are read message by message (milliseconds when its replica is up).
const CONSUMER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long start-up retries reading a stream that does not answer.
const LOAD_PATIENCE: Duration = Duration::from_secs(60);

/// How sottod reaches its cluster.
pub struct ClusterConfig {
    /// NATS server URLs (`nats://HOST:PORT` or `tls://HOST:PORT`).
    pub urls: Vec<String>,
    /// This node's name (logs, the NATS connection's name).
    pub node: String,
    /// Replicas of each stream (1 to 5; R3 in production).
    pub replicas: usize,
    /// A NATS credentials file's contents (JWT and nkey seed), read before the chroot.
    pub creds: Option<zeroize::Zeroizing<String>>,
    /// TLS to the NATS servers, trusting these CA certificates (PEM, read before the chroot).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Reads a PEM CA bundle into a TLS client configuration (ring, TLS 1.2 and 1.3).
pub fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let shown = ca.display();
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("{shown}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{shown}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown}: no certificate in it"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What this node knows of a subject's last sequence.
#[derive(Clone, Copy)]
enum Last {
    /// The subject's last message (0: none).
    Known(u64),
    /// A write's outcome is unknown (a timeout): read it again before the next write.
    Unknown,
}

/// The store on JetStream.
pub struct JetStreamStore {
    rt: tokio::runtime::Runtime,
    /// The NATS connection (core NATS: the writer's liveness, lease.rs).
    client: async_nats::Client,
    js: jetstream::Context,
    records: stream::Stream,
    chunks: stream::Stream,
    last: Mutex<HashMap<String, Last>>,
    /// Records are read message by message (a consumer did not come up).
    by_get: AtomicBool,
    /// The NATS connection is up (kept by the client's event callback).
    connected: Arc<AtomicBool>,
    /// This node's NATS connection dropped since its lease's last renewal:
    /// it writes nothing until the next renewal succeeds (lease.rs).
    cut_off: Arc<AtomicBool>,
    /// When this node last renewed its writer lease (`None`: it holds none).
    renewed: Arc<Mutex<Option<Instant>>>,
    /// Record writes on their way (a release waits for them).
    publishing: Arc<std::sync::atomic::AtomicUsize>,
    /// The writer lease's value (`NODE EPOCH`) as this standby last read it.
    holder: Arc<Mutex<Option<String>>>,
    /// This process's epoch (random): its lease names it, and it relays on it.
    epoch: u64,
    /// The lease this node holds (its value), the task renewing it and the
    /// one answering that this node lives.
    held: Mutex<Option<lease::Held>>,
    lease: stream::Stream,
    /// A standby's follower of the records, until this node writes.
    follower: Mutex<Option<follow::Follower>>,
    /// The followed records start-up loads from, until this node's first write.
    served: Mutex<Option<BTreeMap<String, Loaded>>>,
    /// Files whose chunks are being deleted in the background, or were left.
    deleting: Arc<Mutex<std::collections::HashSet<u64>>>,
    /// What this node knows it wrote of each room (`rooms_js.rs`).
    rooms: Mutex<rooms_js::Written>,
    /// The contacts are still the single record of an earlier version (`contacts_js.rs`).
    contacts_single: Mutex<bool>,
    shown: String,
}

/// Counts a record write on its way while it lives.
struct Publishing(Arc<std::sync::atomic::AtomicUsize>);

impl Publishing {
    fn start(count: &Arc<std::sync::atomic::AtomicUsize>) -> Publishing {
        count.fetch_add(1, Ordering::SeqCst);
        Publishing(count.clone())
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable { why: what.to_string() }
}

fn corrupt(subject: &str, why: &'static str) -> StoreError {
    StoreError::Corrupt { path: PathBuf::from(subject), why }
}

impl JetStreamStore {
    /// Connects (waiting for the first connection at most 10 s), and creates
    /// or checks the streams.
    pub fn connect(cfg: &ClusterConfig) -> Result<JetStreamStore, String> {
        let mut epoch = [0u8; 8];
        getrandom::getrandom(&mut epoch).map_err(|e| format!("random epoch: {e}"))?;
        let epoch = u64::from_le_bytes(epoch);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sottod-nats")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the NATS client's thread: {e}"))?;
        let shown = cfg.urls.join(",");
        let connected = Arc::new(AtomicBool::new(false));
        let cut_off = Arc::new(AtomicBool::new(false));
        let (client, js) = rt.block_on(async {
            let flag = connected.clone();
            let lost = cut_off.clone();
            let mut opts = async_nats::ConnectOptions::new()
                .name(format!("sottod {}", cfg.node))
                .connection_timeout(Duration::from_secs(5))
                .max_reconnects(None)
                .event_callback(move |event| {
                    let (flag, lost) = (flag.clone(), lost.clone());
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                flag.store(true, Ordering::SeqCst);
                                crate::log!(Info, "NATS: connected");
                            }
                            async_nats::Event::Disconnected => {
                                flag.store(false, Ordering::SeqCst);
                                // A writer cut off from NATS writes nothing more until a
                                // renewal of its lease succeeds again (lease.rs): a standby
                                // may take the lease early once this connection is gone.
                                lost.store(true, Ordering::SeqCst);
                                crate::log!(Warn, "NATS: disconnected; reconnecting (writes get 503 meanwhile)");
                            }
                            other => crate::log!(Info, "NATS: {other}"),
                        }
                    }
                });
            if let Some(creds) = &cfg.creds {
                opts = opts.credentials(creds).map_err(|e| format!("NATS credentials: {e}"))?;
            }
            if let Some(tls) = &cfg.tls {
                opts = opts.require_tls(true).tls_client_config((**tls).clone());
            }
            let addrs: Vec<async_nats::ServerAddr> = cfg
                .urls
                .iter()
                .map(|u| u.parse().map_err(|e| format!("--cluster: `{u}`: {e}")))
                .collect::<Result<_, String>>()?;
            let client = tokio::time::timeout(Duration::from_secs(10), opts.connect(addrs))
                .await
                .map_err(|_| format!("cannot reach NATS at {shown} within 10 s"))?
                .map_err(|e| format!("cannot connect to NATS at {shown}: {e}"))?;
            connected.store(true, Ordering::SeqCst);
            let mut js = jetstream::new(client.clone());
            js.set_timeout(REQUEST_TIMEOUT);
            Ok::<_, String>((client, js))
        })?;
        // Just after the NATS servers restarted, JetStream may still be
        // electing its leaders: a request that times out is tried again, for
        // as long as loading would be (any other refusal ends the start).
        let deadline = Instant::now() + LOAD_PATIENCE;
        let (records, chunks, lease) = loop {
            let streams = rt.block_on(async {
                let records = ensure_stream(&js, RECORDS, "sotto.r.>", cfg.replicas, -1).await?;
                let chunks = ensure_stream(&js, CHUNKS, "sotto.c.>", cfg.replicas, 1).await?;
                let lease = ensure_stream(&js, LEASE, "sotto.lease.>", cfg.replicas, 1).await?;
                Ok::<_, String>((records, chunks, lease))
            });
            match streams {
                Err(e) if e.contains("timed out") && Instant::now() < deadline => {
                    crate::log!(Warn, "{e}; retrying (JetStream may be electing its leaders)");
                    std::thread::sleep(Duration::from_secs(1));
                }
                other => break other?,
            }
        };
        Ok(JetStreamStore {
            rt,
            client,
            js,
            records,
            chunks,
            last: Mutex::new(HashMap::new()),
            by_get: AtomicBool::new(false),
            connected,
            renewed: Arc::new(Mutex::new(None)),
            cut_off,
            publishing: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            holder: Arc::new(Mutex::new(None)),
            epoch,
            held: Mutex::new(None),
            lease,
            follower: Mutex::new(None),
            served: Mutex::new(None),
            deleting: Arc::new(Mutex::new(std::collections::HashSet::new())),
            rooms: Mutex::new(rooms_js::Written::default()),
            contacts_single: Mutex::new(false),
            shown,
        })
    }

    /// The resumption ticket keys as this standby followed them (an edge
    /// opens tickets and seals new ones with them, DESIGN §8 "Edges"); None
    /// before they were read, when the record does not decode, or when the
    /// follower is busy with a message (this never waits).
    pub fn followed_ticket_keys(&self) -> Option<Vec<crate::ticket::TicketKey>> {
        let bytes = zeroize::Zeroizing::new(self.followed_content(&data_subject("ticket-keys"))?);
        tickets::decode_keys(&bytes).ok().map(|(_, keys)| keys)
    }

    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The UID or id a subject's last token names, in hex.
    fn id_of(subject: &str) -> Result<u64, StoreError> {
        subject
            .rsplit('.')
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| corrupt(subject, "subject does not end in a hex id"))
    }

    /// The last sequence to name in the next write of `subject`.
    async fn expected(&self, subject: &str) -> Result<u64, StoreError> {
        let known = self.last.lock().unwrap_or_else(|e| e.into_inner()).get(subject).copied();
        match known {
            Some(Last::Known(n)) => Ok(n),
            // Never loaded or written: no message yet (load saw every subject).
            None => Ok(0),
            Some(Last::Unknown) => match self.records.get_last_raw_message_by_subject(subject).await {
                Ok(m) => Ok(m.sequence),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
                Err(e) => Err(unavailable(e)),
            },
        }
    }

    fn set_last(&self, subject: &str, last: Last) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).insert(subject.to_owned(), last);
    }

    /// Publishes one message of `subject`, naming the last sequence; returns
    /// its sequence. A rollup drops the subject's earlier messages.
    async fn publish(&self, subject: &str, op: &str, payload: &[u8], rollup: bool) -> Result<u64, StoreError> {
        let _on_its_way = Publishing::start(&self.publishing);
        self.writable()?;
        self.drop_followed();
        let expected = self.expected(subject).await?;
        let mut msg = jetstream::message::PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(payload))
            .header(OP, op)
            .expected_last_subject_sequence(expected);
        if rollup {
            msg = msg.header(async_nats::header::NATS_ROLLUP, "sub");
        }
        let ack = match self.js.send_publish(subject.to_owned(), msg).await {
            Ok(ack) => ack.await,
            Err(e) => {
                self.set_last(subject, Last::Unknown);
                return Err(unavailable(e));
            }
        };
        match ack {
            Ok(ack) => {
                self.set_last(subject, Last::Known(ack.sequence));
                Ok(ack.sequence)
            }
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                // Fenced: this node exits at once, writing nothing more.
                leave(format_args!(
                    "{subject} was written by another node since this one read it: this node writes nothing more; \
                     exiting (status {EXIT_LEASE_LOST}) to come back as a standby that reads the state again"
                ))
            }
            Err(e) => {
                // Maybe stored, maybe not: read the subject's last sequence again before writing it.
                self.set_last(subject, Last::Unknown);
                Err(unavailable(e))
            }
        }
    }

    /// Replaces `subject`'s content with `bytes`: one rollup message when it
    /// fits, else its parts and then the deletion of what came before.
    async fn replace(&self, subject: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() <= PART {
            self.publish(subject, "R1", bytes, true).await?;
            return Ok(());
        }
        let parts: Vec<&[u8]> = bytes.chunks(PART).collect();
        let mut first = 0;
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 { format!("R{}", parts.len()) } else { "P".to_owned() };
            let seq = self.publish(subject, &op, part, false).await?;
            if i == 0 {
                first = seq;
            }
        }
        // The parts are the content now, and what came before is dead: it is
        // deleted in the background, not on the commit's path, where a large
        // ticket journal compacted after thousands of appends would hold every
        // commit for two requests per older message.
        self.rt.spawn(delete_before(self.records.clone(), subject.to_owned(), first));
        Ok(())
    }

    /// Appends `bytes` to `subject`'s content.
    async fn append(&self, subject: &str, bytes: &[u8]) -> Result<(), StoreError> {
        for part in bytes.chunks(PART) {
            self.publish(subject, "A", part, false).await?;
        }
        Ok(())
    }

    /// Removes `subject`'s content: a rollup tombstone.
    async fn remove(&self, subject: &str) -> Result<(), StoreError> {
        self.publish(subject, "D", &[], true).await?;
        Ok(())
    }

    async fn apply(&self, w: &Change) -> Result<(), StoreError> {
        match w {
            Change::Room(name, Some(w)) => self.write_room(name, w).await,
            Change::Room(name, None) => self.remove_room(name).await,
            Change::Queue(uid, QueueWrite::Append(b)) => self.append(&uid_subject("q", *uid), b).await,
            Change::Queue(uid, QueueWrite::Replace(b)) => self.replace(&uid_subject("q", *uid), b).await,
            Change::Queue(uid, QueueWrite::Remove) => self.remove(&uid_subject("q", *uid)).await,
            Change::Contacts(w) => self.write_pairs(w).await,
            Change::Prekeys(uid, Some(b)) => self.replace(&uid_subject("prekeys", *uid), b).await,
            Change::Prekeys(uid, None) => self.remove(&uid_subject("prekeys", *uid)).await,
            Change::FileRecord(id, b) => {
                self.finish_deleting(*id).await?;
                self.replace(&uid_subject("file", *id), b).await
            }
            Change::FileChunks { id, first, bytes } => {
                self.writable()?;
                let mut acks = Vec::new();
                for (i, record) in bytes.chunks(CHUNK_RECORD).enumerate() {
                    let subject = chunk_subject(*id, first.saturating_add(i as u32));
                    let ack =
                        self.js.publish(subject, bytes::Bytes::copy_from_slice(record)).await.map_err(unavailable)?;
                    acks.push(ack);
                }
                for ack in acks {
                    ack.await.map_err(unavailable)?;
                }
                Ok(())
            }
            Change::FileDelete(id) => {
                // The record, then the chunks in the background: up to 16,384
                // of them, a get and a delete each, would hold this commit and
                // every one after it for seconds. A crash between leaves
                // chunks without a record, which loading removes.
                self.remove(&uid_subject("file", *id)).await?;
                self.delete_chunks_later(*id).await
            }
            Change::Acct(uid, b) => self.replace(&uid_subject("acct", *uid), b).await,
            Change::Announcements(b) => self.replace(&data_subject("announcements"), b).await,
            Change::UserDelete(uid) => {
                self.remove(&uid_subject("user", *uid)).await?;
                self.remove(&uid_subject("acct", *uid)).await
            }
            Change::Retired(b) => self.replace(&data_subject("retired"), b).await,
            Change::TicketKeys(b) => self.replace(&data_subject("ticket-keys"), b).await,
            Change::Tickets(JournalWrite::Replace(b)) => self.replace(&data_subject("tickets"), b).await,
            Change::Tickets(JournalWrite::Append(b)) => self.append(&data_subject("tickets"), b).await,
            Change::User(rec) => self.replace(&uid_subject("user", rec.uid.get()), rec.as_bytes()).await,
        }
    }
}

/// The first message of `filter` in `stream` at sequence `seq` or after
/// (`None`: no more), from the stream's leader.
async fn next_in(
    stream: &stream::Stream,
    filter: &str,
    seq: u64,
) -> Result<Option<jetstream::message::StreamMessage>, StoreError> {
    match stream.get_first_raw_message_by_subject(filter, seq).await {
        // At u64::MAX the next would be the same message again.
        Ok(m) if m.sequence < seq || m.sequence == u64::MAX => Err(corrupt(filter, "a sequence out of order")),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: &str,
    replicas: usize,
    per_subject: i64,
) -> Result<stream::Stream, String> {
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_messages_per_subject: per_subject,
        discard: stream::DiscardPolicy::Old,
        allow_rollup: true,
        ..Default::default()
    };
    let mut stream = js.get_or_create_stream(config).await.map_err(|e| format!("JetStream stream {name}: {e}"))?;
    let info = stream.info().await.map_err(|e| format!("JetStream stream {name}: {e}"))?;
    if !info.config.allow_rollup {
        // Made by an earlier sottod: replaces are rollups now.
        let mut config = info.config.clone();
        config.allow_rollup = true;
        js.update_stream(config).await.map_err(|e| format!("JetStream stream {name}: allowing rollups: {e}"))?;
    }
    if info.config.num_replicas != replicas {
        crate::log!(
            Warn,
            "JetStream stream {name} has {} replicas, not the {replicas} asked for (it was created so; \
             `nats stream edit` changes it)",
            info.config.num_replicas
        );
    }
    Ok(stream)
}

fn uid_subject(kind: &str, id: u64) -> String {
    format!("sotto.r.{kind}.{id:016x}")
}

/// Room names are a-z, 0-9, `_` and `-`: valid subject tokens as they are.
fn room_subject(name: &str) -> String {
    format!("sotto.r.room.{name}")
}

/// A room's kept history (`rooms.rs`).
fn history_subject(name: &str) -> String {
    format!("sotto.r.hist.{name}")
}

fn data_subject(name: &str) -> String {
    format!("sotto.r.data.{name}")
}

fn chunk_subject(id: u64, index: u32) -> String {
    format!("sotto.c.{id:016x}.{index}")
}

impl Store for JetStreamStore {
    fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut out = Vec::new();
        for (subject, uid, bytes) in self.load_kind("user")? {
            let rec = store::parse_user(&bytes).map_err(|why| corrupt(&subject, why))?;
            if rec.uid.get() != uid {
                return Err(corrupt(&subject, "subject is not its account's UID"));
            }
            out.push(rec);
        }
        Ok(out)
    }

    fn put_user(&self, rec: &UserRecord) -> Result<(), StoreError> {
        self.rt.block_on(self.replace(&uid_subject("user", rec.uid.get()), rec.as_bytes()))
    }

    fn load_accts(&self) -> Result<Vec<(u64, Acct)>, StoreError> {
        let mut out = Vec::new();
        for (subject, named, bytes) in self.load_kind("acct")? {
            let (uid, acct) = Acct::decode(&bytes).map_err(|why| corrupt(&subject, why))?;
            if named != uid {
                return Err(corrupt(&subject, "subject is not its account's UID"));
            }
            out.push((uid, acct));
        }
        Ok(out)
    }

    fn put_acct(&self, uid: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.rt.block_on(self.replace(&uid_subject("acct", uid), bytes))
    }

    fn load_announcements(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_one(&data_subject("announcements"))
    }

    fn load_rooms(&self) -> Result<Vec<Room>, StoreError> {
        self.load_split_rooms()
    }

    fn load_queues(&self) -> Result<Vec<QueueFile>, StoreError> {
        Ok(self.load_kind("q")?.into_iter().map(|(_, uid, bytes)| QueueFile { uid, bytes }).collect())
    }

    fn truncate_queue(&self, uid: u64, len: u64) -> Result<(), StoreError> {
        let subject = uid_subject("q", uid);
        let content = self.load_one(&subject)?.unwrap_or_default();
        let keep = content.get(..usize::try_from(len).unwrap_or(usize::MAX)).unwrap_or(&content);
        self.rt.block_on(self.replace(&subject, keep))
    }

    fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_pairs()
    }

    fn load_retired(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_one(&data_subject("retired"))
    }

    fn load_ticket_keys(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError> {
        // (The followed copy is `JetStreamStore::followed_ticket_keys`, an edge's.)
        Ok(self.load_one(&data_subject("ticket-keys"))?.map(zeroize::Zeroizing::new))
    }

    fn load_tickets(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_one(&data_subject("tickets"))
    }

    fn load_prekeys(&self) -> Result<Vec<(u64, Published)>, StoreError> {
        let mut out = Vec::new();
        for (subject, named, bytes) in self.load_kind("prekeys")? {
            let (uid, p) = Published::decode(&bytes).map_err(|why| corrupt(&subject, why))?;
            if named != uid {
                return Err(corrupt(&subject, "subject is not its owner's UID"));
            }
            out.push((uid, p));
        }
        Ok(out)
    }

    fn load_files(&self) -> Result<Vec<StoredFile>, StoreError> {
        let mut out = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (subject, named, bytes) in self.load_kind("file")? {
            let meta = FileMeta::decode(&bytes).map_err(|why| corrupt(&subject, why))?;
            if named != meta.id {
                return Err(corrupt(&subject, "subject is not the file's id"));
            }
            ids.insert(meta.id);
            out.push((meta, 0u32));
        }
        // Which chunks are stored: one subject per chunk, counted (not read).
        let present: HashMap<u64, std::collections::BTreeSet<u32>> = retrying("sotto.c.>", || {
            self.rt.block_on(async {
                let mut present: HashMap<u64, std::collections::BTreeSet<u32>> = HashMap::new();
                let mut subjects = self.chunks.info_with_subjects("sotto.c.>").await.map_err(unavailable)?;
                while let Some(s) = subjects.next().await {
                    let (subject, _) = s.map_err(unavailable)?;
                    let mut parts = subject.split('.').skip(2);
                    let id = parts.next().and_then(|s| u64::from_str_radix(s, 16).ok());
                    let index = parts.next().and_then(|s| s.parse::<u32>().ok());
                    if let (Some(id), Some(index)) = (id, index) {
                        present.entry(id).or_default().insert(index);
                    }
                }
                Ok::<_, StoreError>(present)
            })
        })?;
        let mut stored_files = Vec::new();
        for (meta, _) in out {
            let have = present.get(&meta.id);
            let stored = (0..meta.chunk_count).take_while(|i| have.is_some_and(|h| h.contains(i))).count() as u32;
            stored_files.push(StoredFile { meta, stored });
        }
        // Chunks without a record: a deletion cut short, or a crash before the offer's record.
        for id in present.keys().filter(|id| !ids.contains(id)) {
            crate::log!(Warn, "file {id:016x}: chunks without a file record; removing them");
            self.rt.block_on(self.delete_chunks_later(*id))?;
        }
        Ok(stored_files)
    }

    fn read_chunks(&self, id: u64, from: u32, count: u32) -> Result<Vec<u8>, StoreError> {
        if count > files::READ_BATCH {
            return Err(corrupt(&chunk_subject(id, from), "read of too many chunks at once"));
        }
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(count as usize * CHUNK_RECORD);
            for index in from..from.saturating_add(count) {
                let subject = chunk_subject(id, index);
                let m = self.chunks.get_last_raw_message_by_subject(&subject).await.map_err(unavailable)?;
                if m.payload.len() != CHUNK_RECORD {
                    return Err(corrupt(&subject, "not one chunk record"));
                }
                out.extend_from_slice(&m.payload);
            }
            Ok(out)
        })
    }

    fn release(&self) {
        self.release_lease();
    }

    fn commit(&self, writes: &[Change]) -> Result<(), StoreError> {
        if !self.connected() {
            return Err(unavailable(format!("no connection to NATS at {}", self.shown)));
        }
        // Chains touching different records are written concurrently: their
        // acknowledgements are awaited together, not one round trip each. The
        // file store likewise writes a batch's files several at a time.
        self.rt.block_on(async {
            let runs = chains(writes).into_iter().map(|chain| async move {
                for w in chain {
                    self.apply(w).await?;
                }
                Ok::<(), StoreError>(())
            });
            futures_util::future::join_all(runs).await.into_iter().collect()
        })
    }
}

/// The records a change writes, as keys: its subjects in `sotto.r.>`, and
/// `sotto.c.<id>` for a file's chunks.
fn touches(w: &Change) -> Vec<String> {
    match w {
        Change::Room(name, _) => vec![room_subject(name), history_subject(name)],
        Change::Queue(uid, _) => vec![uid_subject("q", *uid)],
        Change::Contacts(_) => vec![data_subject("contacts")],
        Change::Prekeys(uid, _) => vec![uid_subject("prekeys", *uid)],
        // With its chunks: a record's write may first finish deleting its id's old chunks.
        Change::FileRecord(id, _) => vec![uid_subject("file", *id), format!("sotto.c.{id:016x}")],
        Change::FileChunks { id, .. } => vec![format!("sotto.c.{id:016x}")],
        Change::FileDelete(id) => vec![format!("sotto.c.{id:016x}"), uid_subject("file", *id)],
        Change::Acct(uid, _) => vec![uid_subject("acct", *uid)],
        Change::Announcements(_) => vec![data_subject("announcements")],
        Change::UserDelete(uid) => vec![uid_subject("user", *uid), uid_subject("acct", *uid)],
        Change::Retired(_) => vec![data_subject("retired")],
        Change::TicketKeys(_) => vec![data_subject("ticket-keys")],
        Change::Tickets(_) => vec![data_subject("tickets")],
        Change::User(rec) => vec![uid_subject("user", rec.uid.get())],
    }
}

/// A commit's writes as chains: the writes of a chain keep their order, and
/// no record is written by two chains (each names the last sequence it knows
/// of a subject, so two writes of one subject at once would fence this node).
/// A write touching records of two chains puts every write in one chain.
fn chains(writes: &[Change]) -> Vec<Vec<&Change>> {
    let mut chains: Vec<Vec<&Change>> = Vec::new();
    let mut owner: HashMap<String, usize> = HashMap::new();
    for w in writes {
        let keys = touches(w);
        let mut found: Vec<usize> = keys.iter().filter_map(|k| owner.get(k).copied()).collect();
        found.sort_unstable();
        found.dedup();
        let at = match found.as_slice() {
            [] => {
                chains.push(Vec::new());
                chains.len() - 1
            }
            [one] => *one,
            _ => return vec![writes.iter().collect()],
        };
        chains[at].push(w);
        for k in keys {
            owner.insert(k, at);
        }
    }
    chains
}

#[cfg(test)]
#[path = "jetstream_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "split_js_tests.rs"]
mod split_js_tests;
