//! The writer lease of a cluster deployment (DESIGN §8, "Cluster"): the one
//! message of `sotto.lease.writer` in stream `SOTTO_LEASE`, naming its holder
//! (`NODE EPOCH`). Every write of it names the sequence it replaces, so two
//! nodes never both take it. The holder renews it every second; a standby
//! takes it when its sequence has not changed for [`LEASE_TTL`] by the
//! standby's clock, and the holder writes nothing once its last renewal is
//! older than [`LEASE_GUARD`]: one writer at a time, without trusting wall
//! clocks.
//!
//! A holder whose process died is noticed sooner: it answers requests on
//! `sotto.alive.<epoch>` (core NATS), and when its connection closes
//! the NATS servers answer "no responders" at once. A standby takes the lease
//! when it has not changed for [`GONE_STILL`] and nobody answered for
//! [`GONE_FOR`]. That is safe because a holder whose connection dropped
//! writes nothing more until a renewal succeeds after it reconnects, which
//! the standby's write of the lease makes fail (the holder then exits). A
//! holder that is paused or whose host vanished keeps its connection open
//! in the servers' view for a while: requests time out, and the lease lapses
//! as before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

use super::{unavailable, JetStreamStore};
use crate::server::store::StoreError;

/// The stream holding the writer lease: one subject, one message.
pub const LEASE: &str = "SOTTO_LEASE";
const LEASE_SUBJECT: &str = "sotto.lease.writer";
/// A standby takes over when the lease has not changed for this long.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// The writer renews its lease this often.
const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long a clean stop may spend giving up the lease (its writes on
/// their way included, each at most a request's timeout); a lease not
/// released lapses.
const RELEASE_PATIENCE: Duration = Duration::from_secs(6);
/// A standby reads the lease this often (a released one is taken at once).
const LEASE_WATCH: Duration = Duration::from_millis(250);
/// The writer writes only while its last renewal is younger than this: it
/// stops a second before any standby may take over.
const LEASE_GUARD: Duration = Duration::from_secs(4);
/// A standby takes the lease early when it has not changed for this long (a
/// renewal missed) ...
const GONE_STILL: Duration = Duration::from_millis(2_500);
/// ... and its holder has not answered (no responders) for this long.
const GONE_FOR: Duration = Duration::from_secs(1);
/// How long a standby waits for the holder's answer (a timeout is not "gone").
pub(super) const ALIVE_WAIT: Duration = Duration::from_millis(200);
/// How a lease given up at a clean stop begins (`released: NODE EPOCH`; a
/// node name has no colon).
const RELEASED: &str = "released:";
/// Exit status of a writer that found its lease taken, or a record written by
/// another node (a supervisor restarts it as a standby).
pub const EXIT_LEASE_LOST: i32 = 3;

/// The lease this node holds: its value, the task renewing it, and the one
/// answering that this node lives.
pub(super) struct Held {
    value: String,
    keeper: tokio::task::JoinHandle<()>,
    answerer: tokio::task::JoinHandle<()>,
}

impl JetStreamStore {
    /// Blocks until this node holds the deployment's writer lease, then keeps
    /// it renewed on the NATS thread.
    ///
    /// The lease is the one message of `sotto.lease.writer` in `SOTTO_LEASE`,
    /// naming its holder (`NODE EPOCH`); every write of it names the sequence
    /// it replaces, so two nodes never both take it. The holder renews it every
    /// second. A standby takes it when its sequence has not changed for
    /// [`LEASE_TTL`] by the standby's clock, and the holder writes nothing once
    /// its last renewal is older than [`LEASE_GUARD`]: one writer at a time,
    /// without trusting wall clocks. A holder that finds the lease taken (it
    /// was paused, or cut off from NATS, longer than the TTL) exits with
    /// [`EXIT_LEASE_LOST`]; its supervisor restarts it as a standby.
    pub fn take_lease(&self, node: &str) -> Result<(), String> {
        let value = format!("{node} {:016x}", self.epoch);
        self.start_following();
        // Answering before the lease names this node: a standby never finds it silent.
        let answering = self.rt.block_on(self.client.subscribe(alive_subject(&value)));
        let answering = answering.map_err(|e| format!("cannot answer on {}: {e}", alive_subject(&value)))?;
        let answerer = self.rt.spawn(answer_alive(self.client.clone(), answering));
        let seq = self.rt.block_on(self.acquire(&value));
        self.cut_off.store(false, std::sync::atomic::Ordering::SeqCst);
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        crate::log!(Info, "writer lease taken (node {node}); this node writes the deployment's state");
        let (js, lease, renewed, cut_off) =
            (self.js.clone(), self.lease.clone(), self.renewed.clone(), self.cut_off.clone());
        let keeper = self.rt.spawn(keep_lease(js, lease, value.clone(), seq, renewed, cut_off));
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(Held { value, keeper, answerer });
        self.settle_followed();
        Ok(())
    }

    /// Waits until the lease is free or lapsed and takes it; returns its sequence.
    async fn acquire(&self, value: &str) -> u64 {
        // The sequence seen and since when (this node's monotonic clock).
        let mut watched: Option<(u64, Instant)> = None;
        // Since when the holder has not answered (no responders), this sequence.
        let mut silent: Option<Instant> = None;
        let mut told = false;
        // The last reading failed (said once per run of failures).
        let mut unreadable = false;
        loop {
            let expected = match self.lease.get_last_raw_message_by_subject(LEASE_SUBJECT).await {
                Ok(m) if m.payload.starts_with(RELEASED.as_bytes()) => {
                    self.holder.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let holder = holder_of(&m.payload);
                    crate::log!(Info, "writer lease released by node {holder} at its stop: taking it");
                    Some(m.sequence)
                }
                Ok(m) => {
                    let holder = holder_of(&m.payload);
                    *self.holder.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(String::from_utf8_lossy(&m.payload).into_owned());
                    if !told {
                        crate::log!(
                            Info,
                            "standby: node {holder} writes; this node takes over when it is gone or its writer lease \
                             lapses ({} s)",
                            LEASE_TTL.as_secs()
                        );
                        told = true;
                    }
                    match watched {
                        Some((seq, since)) if seq == m.sequence && since.elapsed() >= LEASE_TTL => Some(seq),
                        // Asked from a renewal missed on (1.5 s), so that the silence
                        // may have lasted its second when the lease is 2.5 s old.
                        Some((seq, since)) if seq == m.sequence && since.elapsed() >= GONE_STILL - GONE_FOR => {
                            if self.holder_answers(&m.payload).await {
                                silent = None;
                                None
                            } else if silent.get_or_insert_with(Instant::now).elapsed() >= GONE_FOR
                                && since.elapsed() >= GONE_STILL
                            {
                                crate::log!(
                                    Info,
                                    "writer lease: node {holder} is gone (its NATS connection closed: nobody answered \
                                     for {} s) and has not renewed it for {} s: taking it",
                                    GONE_FOR.as_secs_f32(),
                                    GONE_STILL.as_secs_f32()
                                );
                                Some(seq)
                            } else {
                                None
                            }
                        }
                        Some((seq, _)) if seq == m.sequence => None,
                        _ => {
                            watched = Some((m.sequence, Instant::now()));
                            silent = None;
                            None
                        }
                    }
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    self.holder.lock().unwrap_or_else(|e| e.into_inner()).take();
                    Some(0)
                }
                Err(e) => {
                    // Not seen is not lapsed: watch again from the next reading.
                    watched = None;
                    if !unreadable {
                        crate::log!(Warn, "writer lease: cannot read it ({e}); retrying");
                    }
                    unreadable = true;
                    None
                }
            };
            if watched.is_some() {
                unreadable = false;
            }
            if let Some(expected) = expected {
                match publish_lease(&self.js, value, expected).await {
                    Ok(seq) => return seq,
                    Err(e) => {
                        (watched, silent) = (None, None);
                        crate::log!(Info, "writer lease: not taken ({e}); watching it again");
                    }
                }
            }
            tokio::time::sleep(LEASE_WATCH).await;
        }
    }

    /// The node holding the writer lease as this standby last read it (None
    /// before the first reading, or when the lease was free or released).
    pub fn lease_holder(&self) -> Option<String> {
        self.holder.lock().unwrap_or_else(|e| e.into_inner()).as_deref().map(|v| holder_of(v.as_bytes()))
    }

    /// A reader of the lease's value as this standby last read it (for a
    /// task on the NATS thread).
    pub(super) fn holder_value(&self) -> impl Fn() -> Option<String> + Send + 'static {
        let holder = self.holder.clone();
        move || holder.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The epoch of the node holding the writer lease, as this standby last
    /// read it: where an edge relays (DESIGN §8 "Edges").
    pub fn writer_epoch(&self) -> Option<u64> {
        let value = self.holder.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let epoch = value.split_whitespace().nth(1)?;
        u64::from_str_radix(epoch, 16).ok()
    }

    /// This process's epoch, random: in its lease, and its relay subject.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the holder that lease message `payload` names answers on its
    /// subject; false only when the NATS servers say nobody listens there (a
    /// timeout or any other failure is not taken for its death).
    async fn holder_answers(&self, payload: &[u8]) -> bool {
        let subject = alive_subject(&String::from_utf8_lossy(payload));
        match tokio::time::timeout(ALIVE_WAIT, self.client.request(subject, bytes::Bytes::new())).await {
            Ok(Err(e)) => e.kind() != async_nats::RequestErrorKind::NoResponders,
            _ => true,
        }
    }

    /// Whether this node holds the writer lease (it may still be loading).
    pub fn holds_lease(&self) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Gives up the lease at a clean stop (its last commit done): it stops
    /// renewing it, writes nothing more, and marks it released
    /// ([`RELEASED`]), which a standby takes at its next look, within a
    /// second, instead of waiting [`LEASE_TTL`] for it to lapse.
    pub(super) fn release_lease(&self) {
        let Some(Held { value, keeper, answerer }) = self.held.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        keeper.abort();
        answerer.abort();
        // A renewal being polled when it was aborted could still mark the
        // lease renewed: it has ended once this returns.
        let _ = self.rt.block_on(keeper);
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let released = format!("{RELEASED} {value}");
        // The timer is made inside the runtime (it needs its reactor).
        let given_up = self.rt.block_on(async {
            tokio::time::timeout(RELEASE_PATIENCE, async {
                // No write starts now (not writable); one already on its way
                // lands before the lease says released, or times out.
                while self.publishing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let unknown = |l: &super::Last| matches!(l, super::Last::Unknown);
                if self.last.lock().unwrap_or_else(|e| e.into_inner()).values().any(unknown) {
                    // A write timed out and may still land: a standby reading
                    // the records now could miss it; the lease lapses instead.
                    return Err("a write's outcome is unknown");
                }
                // A renewal already on its way when the keeper stopped may land
                // first: then the lease's sequence moved, and it is read again.
                loop {
                    match self.lease.get_last_raw_message_by_subject(LEASE_SUBJECT).await {
                        Ok(m) if m.payload.as_ref() == value.as_bytes() => {
                            match publish_lease(&self.js, &released, m.sequence).await {
                                Ok(_) => return Ok("writer lease released: a standby takes over at once"),
                                Err(e) => crate::log!(Warn, "writer lease: not released ({e}); reading it again"),
                            }
                        }
                        Ok(_) => return Ok("writer lease already another node's: nothing to give up"),
                        Err(e) => crate::log!(Warn, "writer lease: cannot read it to release it ({e})"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await
        });
        let why = match given_up {
            Ok(Ok(said)) => {
                crate::log!(Info, "{said}");
                return;
            }
            Ok(Err(why)) => why,
            Err(_) => "not released in time",
        };
        crate::log!(
            Warn,
            "writer lease not released ({why}, after {} s at most): a standby takes over once it lapses ({} s)",
            RELEASE_PATIENCE.as_secs(),
            LEASE_TTL.as_secs()
        );
    }

    /// Whether this node may write now: it holds a lease renewed recently.
    pub(super) fn writable(&self) -> Result<(), StoreError> {
        if self.cut_off.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(unavailable("this node's NATS connection dropped: writes wait for its lease to be renewed"));
        }
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        match renewed {
            Some(t) if t.elapsed() < LEASE_GUARD => Ok(()),
            Some(_) => Err(unavailable("this node's writer lease is not renewed (NATS is slow or unreachable)")),
            None => Err(unavailable("this node does not hold the writer lease")),
        }
    }
}

/// Writes the lease naming `expected` as the sequence it replaces; returns its sequence.
async fn publish_lease(js: &jetstream::Context, value: &str, expected: u64) -> Result<u64, String> {
    let msg = jetstream::message::PublishMessage::build()
        .payload(bytes::Bytes::copy_from_slice(value.as_bytes()))
        .expected_last_subject_sequence(expected);
    let ack = js.send_publish(LEASE_SUBJECT, msg).await.map_err(|e| e.to_string())?;
    match ack.await {
        Ok(ack) => Ok(ack.sequence),
        Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
            Err("another node wrote it first".to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Where the holder of lease `value` (`NODE EPOCH`) answers that it lives.
pub(super) fn alive_subject(value: &str) -> String {
    let epoch = value.split_whitespace().nth(1).filter(|e| e.bytes().all(|b| b.is_ascii_hexdigit()));
    // Outside every stream's subjects (`sotto.lease.>` is SOTTO_LEASE's): a
    // request there must reach the holder or nobody, never be stored.
    format!("sotto.alive.{}", epoch.unwrap_or("none"))
}

/// Answers every request on the holder's subject while this node holds the
/// lease (the task is aborted when it gives the lease up).
async fn answer_alive(client: async_nats::Client, mut requests: async_nats::Subscriber) {
    use futures_util::StreamExt;
    while let Some(m) = requests.next().await {
        if let Some(reply) = m.reply {
            let _ = client.publish(reply, bytes::Bytes::from_static(b"alive")).await;
        }
    }
}

/// The node a lease message names (`NODE EPOCH`, or `released: NODE EPOCH`).
fn holder_of(payload: &[u8]) -> String {
    let payload = payload.strip_prefix(RELEASED.as_bytes()).unwrap_or(payload);
    String::from_utf8_lossy(payload).split_whitespace().next().unwrap_or("?").to_owned()
}

/// Logs `why` and ends the process with [`EXIT_LEASE_LOST`]: another node
/// writes the deployment's state.
pub(super) fn leave(why: std::fmt::Arguments<'_>) -> ! {
    crate::log!(Error, "{why}");
    // At once, from this thread, while the loops run: exit(3)'s atexit
    // handlers racing other threads can crash the process instead. Nothing
    // is buffered: stderr is unbuffered, stdout flushed per line, and every
    // store write is synchronous (what was acknowledged is stored).
    // SAFETY: _exit ends the process; it touches no Rust state.
    unsafe { libc::_exit(EXIT_LEASE_LOST) }
}

/// Renews the lease every second while this node holds it; exits the process
/// with [`EXIT_LEASE_LOST`] when another node holds it.
async fn keep_lease(
    js: jetstream::Context,
    lease: stream::Stream,
    value: String,
    mut seq: u64,
    renewed: Arc<Mutex<Option<Instant>>>,
    cut_off: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        let started = Instant::now();
        match publish_lease(&js, &value, seq).await {
            Ok(next) => {
                seq = next;
                // Counted from before the write: never longer than the standby waits.
                *renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
                // Still this node's after any drop of the connection: it writes again.
                cut_off.store(false, std::sync::atomic::Ordering::SeqCst);
                continue;
            }
            Err(e) => crate::log!(Warn, "writer lease: renewal failed ({e}); writes get 503 until it is renewed"),
        }
        // A refusal or an unknown outcome: the lease's last message tells which.
        match lease.get_last_raw_message_by_subject(LEASE_SUBJECT).await {
            Ok(m) if m.payload.as_ref() == value.as_bytes() => seq = m.sequence,
            Ok(m) => {
                let holder = holder_of(&m.payload);
                leave(format_args!(
                    "writer lease lost: node {holder} took it (this node was paused or cut off from NATS longer than {} s); \
                     exiting so that one node writes (status {EXIT_LEASE_LOST}; restart it as a standby)",
                    LEASE_TTL.as_secs()
                ))
            }
            Err(e) => crate::log!(Warn, "writer lease: cannot read it ({e}); retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_answers_on_its_epoch_outside_every_stream() {
        assert_eq!(alive_subject("a 00ff12"), "sotto.alive.00ff12");
        assert_eq!(alive_subject("node-7 0123456789abcdef"), "sotto.alive.0123456789abcdef");
        // Never a subject a stream stores, whatever the lease holds.
        for odd in ["a", "", "a b.c", "a >", "a *"] {
            assert_eq!(alive_subject(odd), "sotto.alive.none", "{odd}");
        }
        for s in [alive_subject("a 1"), alive_subject("x")] {
            assert!(!s.starts_with("sotto.lease.") && !s.starts_with("sotto.r.") && !s.starts_with("sotto.c."));
        }
        assert_eq!(holder_of(b"released: a 00ff"), "a");
    }
}
