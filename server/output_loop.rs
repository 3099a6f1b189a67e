//! Output loops (`--threads N`, N over 1): each a thread with its own
//! epoll(7), owning the write side and the sealer of a share of the
//! connections (connection id modulo the number of loops). The core loop
//! hands them items ([`Out`]) in batches over a bounded channel and pokes a
//! wake-up socket; they seal (a room's fan-out side by side, as the single
//! loop does), write, and report what they wrote over another bounded
//! channel and wake-up socket.
//!
//! Invariants: no lock on the delivery path: the channels are
//! `std::sync::mpsc::sync_channel`s (crossbeam's array channel since Rust
//! 1.67), used only with `try_send` and `try_recv`, which take no lock while
//! no thread blocks on the channel, and none does; a connection's items
//! are applied in the order they came; a socket is written once per turn
//! per connection, in the epoll set (for EPOLLOUT) only while output is
//! left over; what a loop holds for a connection is bounded by the core's
//! accounting (`Conn::queued`, under `--max-output`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use sotto::record;
use sotto::server::core::ConnId;
use sotto::server::remote::{Out, Sealing, Written};

/// Batches in flight to one output loop, and reports back to the core.
const CHANNEL: usize = 1024;
/// epoll data of a loop's wake-up socket.
const WAKE: u64 = u64::MAX;
/// Longest wait in epoll (reports left over are retried this often).
const TICK_MS: u16 = 100;

/// What the core loop hands an output loop.
pub enum ToOutput {
    /// A new connection: the output loop's own descriptor for its socket.
    Attach(ConnId, TcpStream),
    /// An item of the core's.
    Item(Out),
}

/// What an output loop hands back.
pub struct Report {
    /// What it wrote, per connection.
    pub written: Vec<Written>,
    /// Sealed bytes of the items it took in since its last report (the core
    /// loop reads no input while too many wait, see [`Outputs::lagging`]).
    pub taken: usize,
}

/// The core loop's handle on its output loops.
pub struct Outputs {
    loops: Vec<Handle>,
    reports: Receiver<Report>,
    wake: UnixStream,
    /// Sealed bytes handed over and not yet taken in by the loops.
    in_transit: usize,
}

struct Handle {
    tx: SyncSender<Vec<ToOutput>>,
    wake: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Items not yet handed over (the channel was full), in order.
    pending: Vec<ToOutput>,
    pending_bytes: usize,
}

/// Sealed bytes waiting for the output loops past which the core loop reads
/// no input: they are behind (CPU), and a connection must not look like a
/// slow consumer because of it. Under the smallest `--max-output`.
pub const LAG_MAX: usize = 512 * 1024;

impl Outputs {
    /// Starts `n` output loops.
    pub fn start(n: usize) -> io::Result<Outputs> {
        let (report_tx, reports) = std::sync::mpsc::sync_channel(CHANNEL);
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let wake_tx = Arc::new(wake_tx);
        let mut loops = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
            let (their_wake, my_wake) = UnixStream::pair()?;
            their_wake.set_nonblocking(true)?;
            my_wake.set_nonblocking(true)?;
            let mut out = OutputLoop::new(rx, their_wake, report_tx.clone(), wake_tx.clone())?;
            let thread = std::thread::Builder::new().name(format!("sottod-out{i}")).spawn(move || {
                // An output loop that stops while the core loop runs would
                // leave its connections unwritten and the core loop waiting
                // on it: the process stops instead, loudly (what was
                // acknowledged is on disk).
                let guard = AbortIfGone;
                out.run();
                std::mem::forget(guard);
            })?;
            loops.push(Handle { tx, wake: my_wake, thread: Some(thread), pending: Vec::new(), pending_bytes: 0 });
        }
        Ok(Outputs { loops, reports, wake, in_transit: 0 })
    }

    /// The socket that becomes readable when a report waits.
    pub fn wake_fd(&self) -> &UnixStream {
        &self.wake
    }

    fn of(&mut self, conn: ConnId) -> &mut Handle {
        let n = self.loops.len() as u64;
        // NOTE: `start` made at least one loop.
        &mut self.loops[(conn % n) as usize]
    }

    /// Hands a new connection's socket to its output loop.
    pub fn attach(&mut self, conn: ConnId, stream: TcpStream) {
        self.of(conn).pending.push(ToOutput::Attach(conn, stream));
    }

    /// Queues the core's items, each to its connection's loop; a fan-out is
    /// split by loop.
    pub fn route(&mut self, items: Vec<Out>) {
        let n = self.loops.len() as u64;
        for item in items {
            let bytes = item.wire_bytes();
            self.in_transit += bytes;
            match item {
                Out::Many { conns, msg } if n > 1 => {
                    let mut split: Vec<Vec<ConnId>> = vec![Vec::new(); self.loops.len()];
                    for c in conns {
                        split[(c % n) as usize].push(c);
                    }
                    let len = record::sealed_len(msg.len());
                    for (h, conns) in self.loops.iter_mut().zip(split) {
                        if !conns.is_empty() {
                            h.pending_bytes += len * conns.len();
                            h.pending.push(ToOutput::Item(Out::Many { conns, msg: msg.clone() }));
                        }
                    }
                }
                item => {
                    let Some(conn) = item.conn() else { continue };
                    let h = self.of(conn);
                    h.pending_bytes += bytes;
                    h.pending.push(ToOutput::Item(item));
                }
            }
        }
    }

    /// Hands every loop what waits for it; what does not fit stays for the
    /// next turn. True when something still waits.
    pub fn send(&mut self) -> bool {
        let mut left = false;
        for h in &mut self.loops {
            if h.pending.is_empty() {
                continue;
            }
            match h.tx.try_send(std::mem::take(&mut h.pending)) {
                Ok(()) => {
                    h.pending_bytes = 0;
                    // A full wake-up buffer already guarantees a wake-up.
                    let _ = (&h.wake).write(&[1]);
                }
                Err(TrySendError::Full(batch)) => {
                    h.pending = batch;
                    left = true;
                }
                // The loop is gone (it panicked): nothing it held can be written,
                // and it will take nothing in.
                Err(TrySendError::Disconnected(_)) => {
                    h.pending.clear();
                    self.in_transit = self.in_transit.saturating_sub(std::mem::take(&mut h.pending_bytes));
                }
            }
        }
        left
    }

    /// The reports waiting; `in_transit` falls by what the loops took in.
    pub fn drain(&mut self) -> Vec<Written> {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        let mut out = Vec::new();
        while let Ok(r) = self.reports.try_recv() {
            self.in_transit = self.in_transit.saturating_sub(r.taken);
            out.extend(r.written);
        }
        out
    }

    /// Whether the loops are behind by more than [`LAG_MAX`].
    pub fn lagging(&self) -> bool {
        self.in_transit > LAG_MAX
    }
}

/// Dropped only when an output loop's thread ends other than by the core
/// loop letting it go (a panic unwinding): the process aborts.
struct AbortIfGone;

impl Drop for AbortIfGone {
    fn drop(&mut self) {
        sotto::log!(Error, "an output loop stopped unexpectedly; aborting");
        std::process::abort();
    }
}

impl Drop for Outputs {
    /// Lets every output loop go and waits for it, so that its connections'
    /// sealers are dropped (and wiped) before the process ends.
    fn drop(&mut self) {
        for h in self.loops.drain(..) {
            let Handle { tx, wake, thread, .. } = h;
            drop(tx);
            let _ = (&wake).write(&[1]);
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

/// One connection's socket in an output loop (its sealer and output are in `Sealing`).
struct Sock {
    stream: TcpStream,
    /// EPOLLOUT is watched (output was left over).
    watching: bool,
    /// Bytes written since the last report.
    written: usize,
    /// Listed in `touched` this turn.
    touched: bool,
}

struct OutputLoop {
    epoll: Epoll,
    rx: Receiver<Vec<ToOutput>>,
    wake: UnixStream,
    report: SyncSender<Report>,
    report_wake: Arc<UnixStream>,
    socks: HashMap<ConnId, Sock>,
    sealing: Sealing,
    touched: Vec<ConnId>,
    /// Reports not yet taken by the core loop (its channel was full).
    unsent: HashMap<ConnId, Written>,
    taken: usize,
}

impl OutputLoop {
    fn new(
        rx: Receiver<Vec<ToOutput>>,
        wake: UnixStream,
        report: SyncSender<Report>,
        report_wake: Arc<UnixStream>,
    ) -> io::Result<OutputLoop> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(OutputLoop {
            epoll,
            rx,
            wake,
            report,
            report_wake,
            socks: HashMap::new(),
            sealing: Sealing::default(),
            touched: Vec::new(),
            unsent: HashMap::new(),
            taken: 0,
        })
    }

    /// Serves until the core loop drops its end of the channel.
    fn run(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(TICK_MS)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    sotto::log!(Error, "output loop: epoll_wait failed: {e}");
                    std::process::abort();
                }
            };
            for ev in events.get(..n).unwrap_or_default() {
                match ev.data() {
                    WAKE => {
                        let mut sink = [0u8; 64];
                        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
                    }
                    id => touch(&mut self.socks, &mut self.touched, id),
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(batch) => {
                        for item in batch {
                            self.apply(item);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            self.taken += self.sealing.take_applied();
            for id in std::mem::take(&mut self.touched) {
                self.flush(id);
            }
            self.report();
        }
    }

    fn apply(&mut self, item: ToOutput) {
        match item {
            ToOutput::Attach(id, stream) => {
                self.sealing.attach(id);
                self.socks.insert(id, Sock { stream, watching: false, written: 0, touched: false });
            }
            ToOutput::Item(item) => {
                let (socks, touched) = (&mut self.socks, &mut self.touched);
                if let Some(gone) = self.sealing.apply(item, |id| touch(socks, touched, id)) {
                    // Out of the epoll set first: the registration would outlive
                    // this descriptor while the core loop's is open. The socket
                    // closes once both descriptors are gone.
                    if let Some(s) = self.socks.remove(&gone) {
                        if s.watching {
                            let _ = self.epoll.delete(&s.stream);
                        }
                    }
                    self.unsent.remove(&gone);
                }
            }
        }
    }

    /// Writes what `id` holds until the socket is full.
    fn flush(&mut self, id: ConnId) {
        let (Some(s), Some(lane)) = (self.socks.get_mut(&id), self.sealing.lane(id)) else { return };
        s.touched = false;
        while lane.failed.is_none() && !lane.out.is_empty() {
            match s.stream.write(&lane.out) {
                Ok(0) => break,
                Ok(n) => {
                    lane.out.drain(..n);
                    s.written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => lane.fail("write error"),
            }
        }
        let want = lane.failed.is_none() && !lane.out.is_empty();
        if want != s.watching {
            // In the set only while output is left over: epoll reports a
            // hang-up even for an empty interest set, every turn.
            let done = if want {
                self.epoll.add(&s.stream, EpollEvent::new(EpollFlags::EPOLLOUT, id))
            } else {
                self.epoll.delete(&s.stream)
            };
            match done {
                Ok(()) => s.watching = want,
                Err(_) => lane.fail("epoll_ctl failed"),
            }
        }
        if s.written > 0 || lane.failed.is_some() {
            let w = self.unsent.entry(id).or_insert(Written { conn: id, bytes: 0, failed: None });
            w.bytes += std::mem::take(&mut s.written);
            w.failed = w.failed.or(lane.failed);
        }
    }

    /// Hands the core loop what was written; kept for the next turn when its channel is full.
    fn report(&mut self) {
        if self.unsent.is_empty() && self.taken == 0 {
            return;
        }
        let written: Vec<Written> = self.unsent.values().copied().collect();
        match self.report.try_send(Report { written, taken: self.taken }) {
            Ok(()) => {
                self.unsent.clear();
                self.taken = 0;
                let _ = (&*self.report_wake).write(&[1]);
            }
            // Kept, and retried within TICK_MS.
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Lists `id` for this turn's writes.
fn touch(socks: &mut HashMap<ConnId, Sock>, touched: &mut Vec<ConnId>, id: ConnId) {
    if let Some(s) = socks.get_mut(&id) {
        if !s.touched {
            s.touched = true;
            touched.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    //! An output loop with real sockets: a connection whose socket fills,
    //! drains and fills again gets every byte, in order.

    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    const SIZE: usize = 2 * 1024 * 1024;

    /// Reports for `conn` until `want` bytes in all are written (or 10 s).
    fn written(o: &mut Outputs, conn: ConnId, want: usize, so_far: &mut usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while *so_far < want && Instant::now() < deadline {
            for w in o.drain() {
                assert_eq!(w.conn, conn);
                assert_eq!(w.failed, None, "the output loop failed the connection");
                *so_far += w.bytes;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_socket_that_fills_twice_gets_every_byte_in_order() {
        use nix::sys::socket::{setsockopt, sockopt};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Small buffers, so that 2 MiB fills them many times over.
        setsockopt(&client, sockopt::RcvBuf, &(64 * 1024)).unwrap();
        setsockopt(&server, sockopt::SndBuf, &(64 * 1024)).unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut o = Outputs::start(1).unwrap();
        o.attach(1, server);
        let mut total = 0;
        for round in 1..=2u8 {
            o.route(vec![Out::Raw { conn: 1, bytes: vec![round; SIZE] }]);
            assert!(!o.send(), "the channel takes one batch");
            // Nobody reads: the socket fills and the loop waits for EPOLLOUT.
            std::thread::sleep(Duration::from_millis(200));
            let before = total;
            written(&mut o, 1, 0, &mut total);
            for w in o.drain() {
                total += w.bytes;
            }
            assert!(total - before < SIZE, "round {round}: the socket never filled");
            let mut got = vec![0u8; SIZE];
            client.read_exact(&mut got).unwrap();
            assert!(got.iter().all(|b| *b == round), "round {round}: bytes out of order or lost");
            written(&mut o, 1, usize::from(round) * SIZE, &mut total);
            assert_eq!(total, usize::from(round) * SIZE, "round {round}: all reported written");
        }
        // Forgotten: the loop lets its descriptor go, and the socket closes.
        o.route(vec![Out::Forget { conn: 1 }]);
        o.send();
        let mut rest = [0u8; 1];
        assert_eq!(client.read(&mut rest).unwrap(), 0, "closed");
    }
}
