//! The admin socket of a standby (cluster mode, DESIGN §8 "Cluster"): a node
//! waiting for the writer lease, an edge meanwhile, has no state to ask
//! about, but sottoctl run there gets a clear refusal (503) naming the node
//! that writes, not "no server running". The socket is the one the event loop takes over once this node
//! holds the lease.
//!
//! Invariant: only root and the service user are answered (SO_PEERCRED, as
//! the event loop checks); one bounded request per connection, read with a
//! timeout on this thread, never the loop's.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sotto::opcodes::MAX_MESSAGE;
use sotto::server::admin;
use sotto::server::jetstream::JetStreamStore;
use sotto::wire::{self, code};

/// The thread answering the admin socket while this node is a standby.
pub struct Answering {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Answers every admin request on `listener` with 503 until [`Answering::stop`].
pub fn answer(listener: &UnixListener, store: Arc<JetStreamStore>) -> Result<Answering, String> {
    let listener = listener.try_clone().map_err(|e| format!("admin socket: {e}"))?;
    // Shared with the event loop's listener, which is non-blocking too.
    listener.set_nonblocking(true).map_err(|e| format!("admin socket: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("sottod-standby-admin".into())
        .spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => refuse(stream, &store),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(|e| format!("cannot start the standby's admin thread: {e}"))?;
    Ok(Answering { stop, thread })
}

impl Answering {
    /// This node holds the lease: the event loop answers from now on.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Reads one request from `stream` and answers it 503, naming the writer.
fn refuse(mut stream: UnixStream, store: &JetStreamStore) {
    if sotto::server::admin::peer_of(&stream).is_none() {
        return;
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_err() {
        return;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE {
        return;
    }
    let mut frame = vec![0u8; len];
    if stream.read_exact(&mut frame).is_err() {
        return;
    }
    let (msg_id, opcode) = wire::header(&frame).map_or((0, 0), |h| (h.msg_id.get(), h.opcode.get()));
    let why = match store.lease_holder() {
        _ if store.holds_lease() => {
            "this node is taking over as the writer (loading the state); try again in a moment".to_owned()
        }
        Some(node) => format!(
            "this node is an edge (a standby that relays its clients to the writer): node {node} writes (holds the \
             writer lease); run sottoctl there"
        ),
        None => "this node is a standby, waiting for the writer lease; run sottoctl on the node that writes".to_owned(),
    };
    let mut out = Vec::new();
    admin::frame_into(&mut out, &admin::answer(msg_id, opcode, code::SERVICE_UNAVAILABLE, &why, 0));
    let _ = stream.write_all(&out);
}
