//! The relay's NATS side (DESIGN §8 "Edges"), a part of the JetStream
//! store: this node's subscription to `sotto.relay.<EPOCH>` and its
//! publishing to other nodes', on the store's runtime, behind two bounded
//! queues and a wake-up socket that an event loop polls.
//!
//! Invariant: the event loop never waits here: it takes what arrived
//! ([`RelayLink::try_recv`]) and hands over what to send
//! ([`RelayLink::try_send`], which gives the message back when the queue is
//! full). A subscription the loop does not keep up with fills its queue and
//! then NATS's own buffer; NATS drops messages then, which the next message
//! of that link shows (it does not open) and the link starts over.

use std::io::Write;
use std::os::unix::net::UnixStream;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::JetStreamStore;
use crate::server::relay;

/// Relay messages held between the NATS thread and the event loop, each way.
const QUEUE: usize = 4096;
/// How often an edge asks whether the writer's process lives.
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// This node's relay over NATS core subjects.
pub struct RelayLink {
    inbound: mpsc::Receiver<bytes::Bytes>,
    outbound: mpsc::Sender<(u64, Vec<u8>)>,
    wake: UnixStream,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Since when the lease's holder has not answered on its liveness
    /// subject because nobody listens there (its NATS connection closed).
    gone_since: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl JetStreamStore {
    /// Subscribes to this node's relay subject; the link carries what arrives
    /// there and publishes to other nodes' subjects.
    pub fn relay(&self) -> Result<RelayLink, String> {
        let subject = relay::subject(self.epoch);
        let sub = self
            .rt
            .block_on(self.client.subscribe(subject.clone()))
            .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
        let (wake, waker) = UnixStream::pair().map_err(|e| format!("relay wake-up socket: {e}"))?;
        wake.set_nonblocking(true).map_err(|e| format!("relay wake-up socket: {e}"))?;
        waker.set_nonblocking(true).map_err(|e| format!("relay wake-up socket: {e}"))?;
        let (in_tx, inbound) = mpsc::channel(QUEUE);
        let (outbound, out_rx) = mpsc::channel(QUEUE);
        let receiving = self.rt.spawn(receive(sub, in_tx, waker));
        let sending = self.rt.spawn(send(self.client.clone(), out_rx));
        let gone_since = std::sync::Arc::new(std::sync::Mutex::new(None));
        let watching = self.rt.spawn(watch_writer(self.client.clone(), self.holder_value(), gone_since.clone()));
        Ok(RelayLink { inbound, outbound, wake, tasks: vec![receiving, sending, watching], gone_since })
    }
}

/// Asks the lease's holder every [`ALIVE_EVERY`] whether it lives, as a
/// standby does before a takeover (lease.rs): the NATS servers answer "no
/// responders" at once when its connection has closed. A timeout or another
/// failure says nothing.
async fn watch_writer(
    client: async_nats::Client,
    holder: impl Fn() -> Option<String>,
    gone_since: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
) {
    loop {
        tokio::time::sleep(ALIVE_EVERY).await;
        let Some(value) = holder() else { continue };
        let subject = super::lease::alive_subject(&value);
        let asked = tokio::time::timeout(super::lease::ALIVE_WAIT, client.request(subject, bytes::Bytes::new())).await;
        let mut since = gone_since.lock().unwrap_or_else(|e| e.into_inner());
        match asked {
            Ok(Ok(_)) => *since = None,
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                since.get_or_insert_with(std::time::Instant::now);
            }
            _ => {}
        }
    }
}

/// Hands every message on the subscription to the loop, waking it.
async fn receive(mut sub: async_nats::Subscriber, to_loop: mpsc::Sender<bytes::Bytes>, mut waker: UnixStream) {
    while let Some(m) = sub.next().await {
        if to_loop.send(m.payload).await.is_err() {
            return;
        }
        // Full: the loop has a wake-up to read already.
        let _ = waker.write(&[1]);
    }
}

/// Publishes what the loop hands over, in its order; a failure is logged
/// once until a publish succeeds again (the links notice what was lost).
async fn send(client: async_nats::Client, mut from_loop: mpsc::Receiver<(u64, Vec<u8>)>) {
    let mut failing = false;
    while let Some((to, payload)) = from_loop.recv().await {
        match client.publish(relay::subject(to), payload.into()).await {
            Err(e) if !failing => {
                failing = true;
                crate::log!(Warn, "relay: cannot publish to node {to:016x}: {e} (said once until it works again)");
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
}

impl RelayLink {
    /// How long the lease's holder has been gone (its NATS connection
    /// closed: nobody answers for it), if it is.
    pub fn writer_gone_for(&self) -> Option<std::time::Duration> {
        self.gone_since.lock().unwrap_or_else(|e| e.into_inner()).map(|t| t.elapsed())
    }

    /// The socket that is readable when something arrived.
    pub fn wake_fd(&self) -> &UnixStream {
        &self.wake
    }

    /// Empties the wake-up socket (before taking what arrived).
    pub fn drain_wake(&self) {
        let mut sink = [0u8; 256];
        while matches!(std::io::Read::read(&mut &self.wake, &mut sink), Ok(n) if n > 0) {}
    }

    /// The next message that arrived, if any.
    pub fn try_recv(&mut self) -> Option<bytes::Bytes> {
        self.inbound.try_recv().ok()
    }

    /// Queues `payload` for node `to`; gives it back when the queue is full.
    pub fn try_send(&self, to: u64, payload: Vec<u8>) -> Result<(), Vec<u8>> {
        self.outbound.try_send((to, payload)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((_, p)) | mpsc::error::TrySendError::Closed((_, p)) => p,
        })
    }
}

impl Drop for RelayLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
