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
//! per connection, EPOLLOUT watched only while output is left over; what a
//! loop holds for a connection is bounded by the core's accounting
//! (`Conn::queued`, under `--max-output`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use sotto::record::{self, Sealer};
use sotto::server::core::ConnId;
use sotto::server::remote::{Out, Written};

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
            std::thread::Builder::new().name(format!("sottod-out{i}")).spawn(move || out.run())?;
            loops.push(Handle { tx, wake: my_wake, pending: Vec::new(), pending_bytes: 0 });
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
                // The loop is gone (it panicked): nothing it held can be written.
                Err(TrySendError::Disconnected(_)) => h.pending.clear(),
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

/// One connection in an output loop.
struct Conn {
    stream: TcpStream,
    sealer: Option<Box<Sealer>>,
    out: Vec<u8>,
    /// EPOLLOUT is watched (output was left over).
    watching: bool,
    /// Bytes written since the last report.
    written: usize,
    failed: Option<&'static str>,
    /// Listed in `touched` this turn.
    touched: bool,
}

struct OutputLoop {
    epoll: Epoll,
    rx: Receiver<Vec<ToOutput>>,
    wake: UnixStream,
    report: SyncSender<Report>,
    report_wake: Arc<UnixStream>,
    conns: HashMap<ConnId, Conn>,
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
            conns: HashMap::new(),
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
                    sotto::log!(Warn, "output loop: epoll_wait failed: {e}; stopping");
                    return;
                }
            };
            for ev in events.get(..n).unwrap_or_default() {
                match ev.data() {
                    WAKE => {
                        let mut sink = [0u8; 64];
                        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
                    }
                    id => self.touch(id),
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
            for id in std::mem::take(&mut self.touched) {
                self.flush(id);
            }
            self.report();
        }
    }

    fn touch(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.touched {
                c.touched = true;
                self.touched.push(id);
            }
        }
    }

    fn apply(&mut self, item: ToOutput) {
        let item = match item {
            ToOutput::Attach(id, stream) => {
                let conn =
                    Conn { stream, sealer: None, out: Vec::new(), watching: false, written: 0, failed: None, touched: false };
                self.conns.insert(id, conn);
                return;
            }
            ToOutput::Item(item) => item,
        };
        self.taken += item.wire_bytes();
        match item {
            Out::Raw { conn, bytes } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.out.extend_from_slice(&bytes);
                }
                self.touch(conn);
            }
            Out::Keys { conn, sealer } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.sealer = Some(sealer);
                }
            }
            Out::Seal { conn, msg } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    seal_one(c, &msg);
                }
                self.touch(conn);
            }
            Out::Many { conns, msg } => {
                self.seal_many(&conns, &msg);
                for id in conns {
                    self.touch(id);
                }
            }
            Out::Forget { conn } => {
                // Out of the epoll set first: the registration would outlive
                // this descriptor while the core loop's is open. The socket
                // closes once both descriptors are gone.
                if let Some(c) = self.conns.remove(&conn) {
                    if c.watching {
                        let _ = self.epoll.delete(&c.stream);
                    }
                }
                self.unsent.remove(&conn);
            }
        }
    }

    /// Seals `msg` for `ids`, side by side (`record::seal_many`), as the single loop does.
    fn seal_many(&mut self, ids: &[ConnId], msg: &[u8]) {
        let mut lent: Vec<(ConnId, Conn)> = Vec::with_capacity(ids.len());
        for id in ids {
            match self.conns.remove(id) {
                Some(c) if c.failed.is_none() && c.sealer.as_ref().is_some_and(|s| !s.exhausted()) => {
                    lent.push((*id, c))
                }
                Some(mut c) => {
                    seal_one(&mut c, msg); // fails it, as one by one
                    self.conns.insert(*id, c);
                }
                None => {}
            }
        }
        let sealed = {
            let (mut sealers, mut outs) = (Vec::with_capacity(lent.len()), Vec::with_capacity(lent.len()));
            for (_, c) in lent.iter_mut() {
                if let Some(s) = c.sealer.as_deref_mut() {
                    sealers.push(s);
                    outs.push(&mut c.out);
                }
            }
            record::seal_many(&mut sealers, msg, &mut outs)
        };
        for (id, mut c) in lent {
            if sealed.is_err() {
                fail(&mut c, "sequence number exhausted");
            }
            self.conns.insert(id, c);
        }
    }

    /// Writes what `id` holds until the socket is full.
    fn flush(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        c.touched = false;
        while c.failed.is_none() && !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                    c.written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => fail(c, "write error"),
            }
        }
        let want = c.failed.is_none() && !c.out.is_empty();
        if want != c.watching {
            let flags = if want { EpollFlags::EPOLLOUT } else { EpollFlags::empty() };
            let done = if c.watching {
                self.epoll.modify(&c.stream, &mut EpollEvent::new(flags, id))
            } else {
                self.epoll.add(&c.stream, EpollEvent::new(flags, id))
            };
            match done {
                Ok(()) => c.watching = want,
                Err(_) => fail(c, "epoll_ctl failed"),
            }
        }
        if c.written > 0 || c.failed.is_some() {
            let w = self.unsent.entry(id).or_insert(Written { conn: id, bytes: 0, failed: None });
            w.bytes += std::mem::take(&mut c.written);
            w.failed = w.failed.or(c.failed);
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

/// Seals `msg` into `c`'s output, or fails `c`.
fn seal_one(c: &mut Conn, msg: &[u8]) {
    if c.failed.is_some() {
        return;
    }
    let sealed = c.sealer.as_deref_mut().is_some_and(|s| s.seal(msg, &mut c.out).is_ok());
    if !sealed {
        fail(c, "sequence number exhausted");
    }
}

/// What `c` holds is lost; the core loop hears of it and closes the connection.
fn fail(c: &mut Conn, why: &'static str) {
    c.out = Vec::new();
    c.failed.get_or_insert(why);
}
