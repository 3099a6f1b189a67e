//! The event loop: one thread, level-triggered epoll(7) over the listener,
//! every connection, the workers' wake-up socket and the signal pipe. It
//! only moves bytes between sockets and the core, and jobs to the workers.
//!
//! Invariants: sockets are non-blocking and the loop never waits on anything
//! but `epoll_wait`; output is written once per turn per connection
//! (coalesced); the work of a turn is proportional to the descriptors that
//! are ready or gained output, never to the number of connections (only the
//! 50 ms deadline check walks them all). A connection's interest set is
//! changed only when what it wants changes: EPOLLIN while the core takes
//! input, EPOLLOUT while output is left over after a write.
//!
//! The admin socket (`<data>/admin.sock`, sottoctl) is served from the same
//! loop: its listener and connections sit in the same epoll set; a peer that
//! is neither root nor the service user (SO_PEERCRED) is refused at accept.
//!
//! The plan named poll(2); DESIGN §8 records why this is epoll instead.
//! With 10,000 idle sessions every wake-up of a
//! poll(2) loop scanned all of them, in the kernel and here, and the loop
//! used most of a core doing nothing (docs/BENCHMARKS.md, W2); epoll keeps
//! the same single-threaded readiness model at a cost per ready descriptor.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use sotto::server::core::{ConnId, Core};
use sotto::server::worker::Pool;

use crate::output_loop::Outputs;
use crate::relay_io::Relay;

/// Longest wait in epoll, so that timers are checked at least this often.
const TICK_MS: u16 = 250;
/// How often deadlines (handshake, login, idle, DM delivery waits) are checked, in ms.
const TIMERS_MS: u64 = 50;
/// How long shutdown waits for jobs in flight and unsent output.
const DRAIN: Duration = Duration::from_secs(3);
/// How often the refusal counts are logged.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// Bytes read per connection per turn at most (fairness).
const READ_CHUNK: usize = 16 * 1024;
/// Events taken per `epoll_wait`; more stay ready for the next turn.
const EVENTS: usize = 1024;

/// epoll data of the descriptors that are not connections (connection ids
/// count up from 1 and never reach these).
const LISTENER: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;
const SIGNALS: u64 = u64::MAX - 2;
const ADMIN_LISTENER: u64 = u64::MAX - 3;
const OUTPUTS: u64 = u64::MAX - 4;
const RELAY: u64 = u64::MAX - 5;
const TAKEOVER: u64 = u64::MAX - 6;

static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid static byte.
        unsafe {
            libc::write(fd, [1u8].as_ptr().cast(), 1);
        }
    }
}

/// Installs SIGINT/SIGTERM handlers that make the returned socket readable;
/// called before `listening` is printed, so that a signal sent the moment
/// sottod says it listens is already a clean stop, never the default death.
pub fn install_signals() -> io::Result<UnixStream> {
    let (rx, tx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    tx.set_nonblocking(true)?;
    let tx: OwnedFd = tx.into();
    // The write end lives for the whole process.
    SIGNAL_FD.store(tx.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(tx);
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only calls write(2) on a descriptor that is never closed.
        unsafe { sigaction(sig, &action) }.map_err(io::Error::from)?;
    }
    Ok(rx)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A connection's socket and what epoll watches it for.
struct Sock {
    stream: TcpStream,
    interest: EpollFlags,
    /// Listed in `Conns::throttled`: it takes no input now and may again later.
    throttled: bool,
}

/// The open sockets, their epoll registrations, and the connections whose
/// read interest waits on time (the `--max-bps` second, a full input bound).
struct Conns {
    epoll: Epoll,
    socks: HashMap<ConnId, Sock>,
    throttled: Vec<ConnId>,
    /// Output loops write (`--threads` over 1): this loop never watches for EPOLLOUT.
    remote: bool,
}

impl Conns {
    /// Registers a new connection for input.
    fn add(&mut self, id: ConnId, stream: TcpStream) -> io::Result<()> {
        self.epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, id))?;
        self.socks.insert(id, Sock { stream, interest: EpollFlags::EPOLLIN, throttled: false });
        Ok(())
    }

    /// Brings `id`'s interest set in line with what the core wants of it:
    /// input while it takes input (and the server is not stopping), output
    /// while output is waiting.
    fn sync(&mut self, id: ConnId, core: &mut Core, now: u64, stopping: bool) {
        let Some(s) = self.socks.get_mut(&id) else { return };
        let mut want = EpollFlags::empty();
        let reads = !stopping && core.wants_read(id, now);
        if reads {
            want |= EpollFlags::EPOLLIN;
        }
        if core.has_output(id) && !self.remote {
            want |= EpollFlags::EPOLLOUT;
        }
        if want != s.interest {
            if self.epoll.modify(&s.stream, &mut EpollEvent::new(want, id)).is_ok() {
                s.interest = want;
            } else {
                // The kernel kept the old set, which could report the socket
                // ready every turn: take it out of the set, and close. The
                // deadline walk flushes what it can until the close grace ends.
                let _ = self.epoll.delete(&s.stream);
                s.interest = EpollFlags::empty();
                core.close(id, "epoll_ctl failed");
                return;
            }
        }
        // Throttled: open, not reading, and time may change that. A closing
        // connection or a stopping server never reads again.
        if !reads && !stopping && !core.is_closing(id) && !s.throttled {
            s.throttled = true;
            self.throttled.push(id);
        }
    }

    /// Rechecks the throttled connections (every TIMERS_MS).
    fn sync_throttled(&mut self, core: &mut Core, now: u64, stopping: bool) {
        for id in std::mem::take(&mut self.throttled) {
            if let Some(s) = self.socks.get_mut(&id) {
                s.throttled = false;
                self.sync(id, core, now, stopping);
            }
        }
    }
}

/// The admin socket's connections (few; each visited after every turn).
struct Admin {
    listener: UnixListener,
    socks: HashMap<ConnId, (UnixStream, EpollFlags)>,
}

impl Admin {
    /// Accepts admin connections: only root and the user sottod runs as (SO_PEERCRED).
    fn accept_all(&mut self, epoll: &Epoll, core: &mut Core, next_id: &mut ConnId) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let Some(peer) = sotto::server::admin::peer_of(&stream) else {
                core.count("admin socket: not root or the service user");
                continue;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = *next_id;
            *next_id += 1;
            if epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, id)).is_err() {
                continue;
            }
            sotto::log!(Debug, "admin socket: connection {id} from uid {} pid {}", peer.uid, peer.pid);
            core.admin_accept(id, peer);
            self.socks.insert(id, (stream, EpollFlags::EPOLLIN));
        }
    }

    /// Reads what admin connection `id` sent.
    fn read(&mut self, id: ConnId, core: &mut Core, buf: &mut [u8], now: u64) {
        let Some((stream, _)) = self.socks.get_mut(&id) else { return };
        if !core.admin_wants_read(id) {
            return;
        }
        match stream.read(buf) {
            Ok(0) => core.admin_close(id),
            Ok(n) => core.admin_input(id, buf.get(..n).unwrap_or_default(), now),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(_) => core.admin_close(id),
        }
    }

    /// Writes every admin connection's output; removes the finished; keeps interest sets true.
    fn flush(&mut self, epoll: &Epoll, core: &mut Core) {
        for id in core.admin_ids() {
            let Some((stream, interest)) = self.socks.get_mut(&id) else {
                core.admin_remove(id);
                continue;
            };
            if let Some(out) = core.admin_output(id) {
                while !out.is_empty() {
                    match stream.write(out) {
                        Ok(0) => break,
                        Ok(n) => {
                            out.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            out.clear();
                            core.admin_close(id);
                            break;
                        }
                    }
                }
            }
            if core.admin_done(id) {
                let _ = epoll.delete(&*stream);
                self.socks.remove(&id);
                core.admin_remove(id);
                continue;
            }
            let mut want = EpollFlags::empty();
            if core.admin_wants_read(id) {
                want |= EpollFlags::EPOLLIN;
            }
            if core.admin_output(id).is_some_and(|o| !o.is_empty()) {
                want |= EpollFlags::EPOLLOUT;
            }
            if want != *interest && epoll.modify(&*stream, &mut EpollEvent::new(want, id)).is_ok() {
                *interest = want;
            }
        }
    }
}

/// What a loop serves besides its core's connections.
pub struct Node<'a> {
    pub listener: &'a TcpListener,
    /// The admin socket (`None` on an edge: its standby thread answers there).
    pub admin: Option<UnixListener>,
    pub pool: &'a Pool,
    pub signals: &'a UnixStream,
    /// Cluster mode: the relay between edges and the writer (DESIGN §8 "Edges").
    pub relay: Option<&'a mut Relay>,
    /// An edge's: readable once this node holds the writer lease.
    pub takeover: Option<&'a UnixStream>,
}

/// Why [`run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// SIGINT or SIGTERM: drained and stopped.
    Stopped,
    /// An edge whose node took the writer lease: its clients are closed
    /// (they reconnect, and log in to this node as the writer).
    TakingOver,
}

/// Serves until SIGINT or SIGTERM (as `signals` reports them), then drains
/// and returns; an edge returns as soon as its node holds the writer lease.
pub fn run(node: Node<'_>, mut core: Core, mut outputs: Option<Outputs>) -> io::Result<Ended> {
    let Node { listener, admin, pool, signals, mut relay, takeover } = node;
    let mut signals = signals;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    epoll.add(pool.wake_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
    epoll.add(signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
    if let Some(admin) = &admin {
        admin.set_nonblocking(true)?;
        epoll.add(admin, EpollEvent::new(EpollFlags::EPOLLIN, ADMIN_LISTENER))?;
    }
    if let Some(o) = &outputs {
        epoll.add(o.wake_fd(), EpollEvent::new(EpollFlags::EPOLLIN, OUTPUTS))?;
    }
    if let Some(r) = &relay {
        epoll.add(r.wake_fd(), EpollEvent::new(EpollFlags::EPOLLIN, RELAY))?;
    }
    if let Some(t) = takeover {
        epoll.add(t, EpollEvent::new(EpollFlags::EPOLLIN, TAKEOVER))?;
    }
    let mut admin = admin.map(|listener| Admin { listener, socks: HashMap::new() });
    let mut conns = Conns { epoll, socks: HashMap::new(), throttled: Vec::new(), remote: outputs.is_some() };
    // Items the output loops could not take yet (their channel was full).
    let mut outputs_left = false;
    let mut listening = true;
    let mut events = vec![EpollEvent::empty(); EVENTS];
    let mut next_id: ConnId = 1;
    // The loop's own deadlines are monotonic: a step of the wall clock must
    // not freeze them (the core keeps wall-clock time for what it stamps).
    let mut accept_paused_until: Option<Instant> = None;
    let mut stopping: Option<Instant> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_summary = Instant::now() + SUMMARY_EVERY;
    let mut next_timers = Instant::now();

    loop {
        // An edge takes no client while it has no live writer (relay_io.rs):
        // they wait in the listen queue for whoever serves next.
        let accepting = stopping.is_none()
            && accept_paused_until.is_none_or(|t| Instant::now() >= t)
            && relay.as_deref().is_none_or(Relay::accepting);
        if accepting != listening {
            let flags = if accepting { EpollFlags::EPOLLIN } else { EpollFlags::empty() };
            conns.epoll.modify(listener, &mut EpollEvent::new(flags, LISTENER))?;
            listening = accepting;
        }
        // The output loops are behind: no input until they catch up (a short
        // wait on their reports), so that no connection looks like a slow
        // consumer because this machine's CPUs are.
        if let Some(o) = outputs.as_mut().filter(|o| o.lagging()) {
            let deadline = Instant::now() + Duration::from_millis(10);
            while o.lagging() && Instant::now() < deadline {
                let mut fds = [nix::poll::PollFd::new(o.wake_fd().as_fd(), nix::poll::PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2u8));
                for w in o.drain() {
                    core.written(w);
                }
            }
        }
        // Throttled readers, paused accepts and items the output loops could
        // not take yet wait on time alone: wake for them.
        let timed = !conns.throttled.is_empty()
            || (!listening && stopping.is_none())
            || outputs_left
            || relay.as_deref().is_some_and(Relay::behind);
        let wait = if timed { TIMERS_MS as u16 } else { TICK_MS };
        let n = match conns.epoll.wait(&mut events, EpollTimeout::from(wait)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let now = now_ms();
        let (mut listener_ready, mut wake_ready, mut signal_ready) = (false, false, false);
        let (mut outputs_ready, mut relay_ready) = (false, false);
        let mut ready: Vec<(ConnId, EpollFlags)> = Vec::with_capacity(n);
        let mut admin_ready = Vec::new();
        for ev in events.get(..n).unwrap_or_default() {
            match ev.data() {
                LISTENER => listener_ready = true,
                WAKE => wake_ready = true,
                SIGNALS => signal_ready = true,
                OUTPUTS => outputs_ready = true,
                RELAY => relay_ready = true,
                TAKEOVER => {
                    let n = conns.socks.len();
                    sotto::log!(
                        Info,
                        "edge: this node holds the writer lease; closing its {n} clients to serve as the writer"
                    );
                    return Ok(Ended::TakingOver);
                }
                ADMIN_LISTENER => {
                    if let Some(admin) = admin.as_mut().filter(|_| stopping.is_none()) {
                        admin.accept_all(&conns.epoll, &mut core, &mut next_id);
                    }
                }
                id if admin.as_ref().is_some_and(|a| a.socks.contains_key(&id)) => admin_ready.push(id),
                id => ready.push((id, ev.events())),
            }
        }
        if let Some(admin) = admin.as_mut() {
            for id in admin_ready {
                admin.read(id, &mut core, &mut buf, now);
            }
        }

        if signal_ready {
            // Drain the pipe so that it does not stay ready.
            let mut sink = [0u8; 64];
            while matches!(signals.read(&mut sink), Ok(n) if n > 0) {}
            if stopping.is_none() {
                sotto::log!(Info, "signal received; finishing pending work and exiting");
                stopping = Some(Instant::now());
                // No new admin connection either (its readiness would otherwise stay reported).
                if let Some(admin) = &admin {
                    let _ =
                        conns.epoll.modify(&admin.listener, &mut EpollEvent::new(EpollFlags::empty(), ADMIN_LISTENER));
                }
                // Nor any relayed client's message (a writer's).
                if relay.is_some() {
                    core.close_relayed("server stopping");
                }
                // No connection reads again: one pass over all of them, once.
                let ids: Vec<ConnId> = conns.socks.keys().copied().collect();
                for id in ids {
                    conns.sync(id, &mut core, now, true);
                }
            }
        }
        // Not after a signal in this same turn: a new connection would be
        // registered for input that a stopping server never reads.
        if listener_ready && listening && stopping.is_none() {
            accept_all(listener, &mut core, &mut conns, outputs.as_mut(), &mut next_id, &mut accept_paused_until, now);
        }
        if wake_ready {
            for done in pool.drain() {
                core.handle_completion(done, now);
            }
        }
        if let Some(o) = outputs.as_mut().filter(|_| outputs_ready) {
            for w in o.drain() {
                core.written(w);
            }
        }
        if let Some(r) = relay.as_mut().filter(|_| relay_ready) {
            r.receive(&mut core, &mut next_id, now);
        }
        let reading = !outputs.as_ref().is_some_and(|o| o.lagging());
        for (id, ev) in ready.iter().filter(|_| reading) {
            if ev.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                read_from(
                    *id,
                    ev.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR),
                    &mut conns,
                    &mut core,
                    &mut buf,
                    now,
                    stopping.is_some(),
                );
            }
        }
        // Timeouts walk every connection: at most every TIMERS_MS, not every turn.
        if Instant::now() >= next_timers {
            core.handle_timeout(now);
            conns.sync_throttled(&mut core, now, stopping.is_some());
            if let Some(r) = relay.as_mut() {
                r.tick(&mut core, now);
            }
            next_timers = Instant::now() + Duration::from_millis(TIMERS_MS);
        }
        for job in core.poll_jobs() {
            pool.submit(job);
        }
        // Group commit: this turn's room changes in one job, acknowledged when durable.
        if let Some(job) = core.poll_commit(now) {
            pool.submit(job);
        }
        let writable: Vec<ConnId> =
            ready.iter().filter(|(_, ev)| ev.contains(EpollFlags::EPOLLOUT)).map(|(id, _)| *id).collect();
        let relayed = flush_all(&mut conns, &mut core, &writable, now, stopping.is_some());
        if let Some(admin) = admin.as_mut() {
            admin.flush(&conns.epoll, &mut core);
        }
        if let Some(r) = relay.as_mut() {
            r.after_turn(&mut core, &relayed, now);
        }
        // Topping up output from the bulk queues frees read-ahead: downloads read on.
        for job in core.poll_jobs() {
            pool.submit(job);
        }
        let items = core.take_output();
        let items = match relay.as_mut() {
            Some(r) => r.route(items),
            None => items,
        };
        if let Some(o) = outputs.as_mut() {
            o.route(items);
            outputs_left = o.send();
        }
        if let Some(r) = relay.as_mut() {
            r.flush(&mut core);
        }
        if Instant::now() >= next_summary {
            next_summary += SUMMARY_EVERY;
            if let Some(line) = core.take_summary() {
                sotto::log!(Info, "{line}");
            }
        }

        if let Some(since) = stopping {
            let settled = !core.busy() && conns.socks.keys().all(|id| !core.has_output(*id));
            if settled || since.elapsed() > DRAIN {
                sotto::log!(Info, "{}", core.total_summary());
                sotto::log!(Info, "stopped ({} connections closed)", conns.socks.len());
                return Ok(Ended::Stopped);
            }
        }
    }
}

/// SO_SNDBUF of every connection (the kernel doubles it for its bookkeeping).
const KERNEL_SNDBUF: usize = 256 * 1024;

fn accept_all(
    listener: &TcpListener,
    core: &mut Core,
    conns: &mut Conns,
    mut outputs: Option<&mut Outputs>,
    next_id: &mut ConnId,
    paused_until: &mut Option<Instant>,
    now: u64,
) {
    loop {
        match listener.accept() {
            Ok((stream, addr)) => {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                // A fixed kernel send buffer: with autotuning, a peer that does
                // not read could park megabytes in the kernel on top of the
                // core's own output bound.
                let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &KERNEL_SNDBUF);
                let id = *next_id;
                *next_id += 1;
                // With output loops, its loop writes through a descriptor of its own.
                // Out of descriptors for it: this connection is closed, and
                // accepting pauses as when accept(2) itself fails.
                let writer = match outputs.as_ref().map(|_| stream.try_clone()) {
                    Some(Ok(w)) => Some(w),
                    Some(Err(e)) => {
                        pause_accepting(core, paused_until, &e);
                        return;
                    }
                    None => None,
                };
                match core.accept(id, addr.ip(), now) {
                    Ok(()) => {
                        if let Err(e) = conns.add(id, stream) {
                            sotto::log!(Warn, "cannot watch a new connection: {e}");
                            core.remove(id);
                        } else if let (Some(o), Some(w)) = (outputs.as_deref_mut(), writer) {
                            o.attach(id, w);
                        }
                    }
                    // Dropping the stream closes it: no buffers, no handshake work.
                    Err(why) => sotto::log!(Debug, "refused a connection from {}: {why}", addr.ip()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                pause_accepting(core, paused_until, &e);
                return;
            }
        }
    }
}

/// EMFILE/ENFILE and friends: accepting pauses instead of spinning, and is
/// retried every 100 ms; logged once per episode, counted always.
fn pause_accepting(core: &mut Core, paused_until: &mut Option<Instant>, e: &io::Error) {
    if paused_until.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
        sotto::log!(Warn, "accept failed: {e}; pausing accepts, retrying every 100 ms");
    }
    core.count("accept failed (out of descriptors?)");
    *paused_until = Some(Instant::now() + Duration::from_millis(100));
}

/// Reads what `id` may take now. `hangup`: epoll reported a hang-up or an
/// error, which stays reported until the socket goes; a connection that
/// cannot take input then (or a stopping server) closes it instead.
fn read_from(id: ConnId, hangup: bool, conns: &mut Conns, core: &mut Core, buf: &mut [u8], now: u64, stopping: bool) {
    let Some(sock) = conns.socks.get_mut(&id) else { return };
    let allowed = if stopping { 0 } else { core.read_allowance(id, now).min(buf.len()) };
    let Some(buf) = buf.get_mut(..allowed).filter(|b| !b.is_empty()) else {
        if hangup {
            core.close(id, "peer closed");
        } else {
            // It takes no input now (its answers wait, or its second's budget
            // is spent): stop watching for input, or epoll reports it every turn.
            conns.sync(id, core, now, stopping);
        }
        return;
    };
    match sock.stream.read(buf) {
        Ok(0) => core.close(id, "peer closed"),
        Ok(n) => core.handle_input(id, buf.get(..n).unwrap_or_default(), now),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
        Err(_) => core.close(id, "read error"),
    }
}

/// Writes what the active connections have queued (those that gained output
/// or started closing this turn, and those the kernel just found writable),
/// removes the finished ones, and updates the others' interest sets. Returns
/// the active connections without a socket here (a writer's relayed ones).
fn flush_all(conns: &mut Conns, core: &mut Core, writable: &[ConnId], now: u64, stopping: bool) -> Vec<ConnId> {
    let mut relayed = Vec::new();
    let mut gone = Vec::new();
    let mut ids = core.take_active();
    ids.extend_from_slice(writable);
    // Both lists may name a connection: each is written, and removed, once.
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let Some(sock) = conns.socks.get_mut(&id) else {
            relayed.push(id);
            continue;
        };
        let mut wrote = 0;
        // Each `transmit` tops the output up from the bulk queue (file
        // chunks, at most 64 KiB at a time): write until the socket is full
        // or nothing is left.
        'write: while let Some(out) = core.transmit(id).filter(|o| !o.is_empty()) {
            while !out.is_empty() {
                match sock.stream.write(out) {
                    Ok(0) => break 'write,
                    Ok(n) => {
                        out.drain(..n);
                        wrote += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'write,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        out.clear();
                        core.close(id, "write error");
                        break 'write;
                    }
                }
            }
        }
        // An edge reports to the writer what reached its clients.
        core.wrote(id, wrote);
        if core.is_done(id) {
            gone.push(id);
        } else {
            conns.sync(id, core, now, stopping);
        }
    }
    for id in gone {
        // Closing the descriptor takes it out of the epoll set, unless an
        // output loop still holds one for the same socket: then explicitly.
        if let Some(sock) = conns.socks.remove(&id) {
            if conns.remote {
                let _ = conns.epoll.delete(&sock.stream);
            }
        }
        if let Some(reason) = core.remove(id) {
            if reason.starts_with("slow consumer") {
                sotto::log!(Warn, "conn {id} closed: {reason}");
            } else {
                sotto::log!(Debug, "conn {id} closed: {reason}");
            }
        }
    }
    relayed
}
