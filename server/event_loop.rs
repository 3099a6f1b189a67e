//! The event loop: one thread, poll(2) over the listener, every connection,
//! the workers' wake-up socket and the signal pipe. It only moves bytes
//! between sockets and the core, and jobs to the workers.
//!
//! Invariant: sockets are non-blocking and the loop never waits on anything
//! but poll; output is written once per turn per connection (coalesced).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use sotto::server::core::{ConnId, Core};
use sotto::server::worker::Pool;

/// Longest wait in poll, so that timers are checked at least this often.
const TICK_MS: u16 = 250;
/// How often deadlines (handshake, login, idle, DM delivery waits) are checked, in ms.
const TIMERS_MS: u64 = 50;
/// How long shutdown waits for jobs in flight and unsent output.
const DRAIN: Duration = Duration::from_secs(3);
/// How often the refusal counts are logged.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// Bytes read per connection per turn at most (fairness).
const READ_CHUNK: usize = 16 * 1024;

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

/// Installs SIGINT/SIGTERM handlers that make `signals` readable.
fn install_signals() -> io::Result<UnixStream> {
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

/// Serves until SIGINT or SIGTERM, then drains and returns.
pub fn run(listener: TcpListener, mut core: Core, pool: Pool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let signals = install_signals()?;
    let mut socks: HashMap<ConnId, TcpStream> = HashMap::new();
    let mut next_id: ConnId = 1;
    let mut accept_paused_until = 0u64;
    let mut stopping: Option<Instant> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_summary = Instant::now() + SUMMARY_EVERY;
    let mut next_timers = 0u64;

    loop {
        let now = now_ms();
        let ids: Vec<ConnId> = socks.keys().copied().collect();
        let (ready, listener_ready, wake_ready, signal_ready) = {
            let mut fds: Vec<PollFd> = Vec::with_capacity(ids.len() + 3);
            let accepting = stopping.is_none() && now >= accept_paused_until;
            fds.push(PollFd::new(listener.as_fd(), if accepting { PollFlags::POLLIN } else { PollFlags::empty() }));
            fds.push(PollFd::new(pool.wake_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
            for id in &ids {
                let mut ev = PollFlags::empty();
                if stopping.is_none() && core.wants_read(*id, now) {
                    ev |= PollFlags::POLLIN;
                }
                if core.has_output(*id) {
                    ev |= PollFlags::POLLOUT;
                }
                // NOTE(unwrap-free): ids were just taken from socks' keys.
                let fd: BorrowedFd = socks.get(id).map_or(signals.as_fd(), |s| s.as_fd());
                fds.push(PollFd::new(fd, ev));
            }
            match poll(&mut fds, PollTimeout::from(TICK_MS)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let flags = |i: usize| fds.get(i).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
            let ready: Vec<(ConnId, PollFlags)> = ids.iter().enumerate().map(|(i, id)| (*id, flags(i + 3))).collect();
            (ready, flags(0).contains(PollFlags::POLLIN), flags(1).contains(PollFlags::POLLIN), flags(2))
        };
        let now = now_ms();

        if !signal_ready.is_empty() && stopping.is_none() {
            sotto::log!(Info, "signal received; finishing pending work and exiting");
            stopping = Some(Instant::now());
        }
        if listener_ready {
            accept_all(&listener, &mut core, &mut socks, &mut next_id, &mut accept_paused_until, now);
        }
        if wake_ready {
            for done in pool.drain() {
                core.handle_completion(done, now);
            }
        }
        for (id, ev) in &ready {
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) && stopping.is_none() {
                read_from(*id, &mut socks, &mut core, &mut buf, now);
            }
        }
        // Timeouts walk every connection: at most every TIMERS_MS, not every turn.
        if now >= next_timers {
            core.handle_timeout(now);
            next_timers = now + TIMERS_MS;
        }
        for job in core.poll_jobs() {
            pool.submit(job);
        }
        // Group commit: this turn's room changes in one job, acknowledged when durable.
        if let Some(job) = core.poll_commit(now) {
            pool.submit(job);
        }
        let writable: Vec<ConnId> =
            ready.iter().filter(|(_, ev)| ev.contains(PollFlags::POLLOUT)).map(|(id, _)| *id).collect();
        flush_all(&mut socks, &mut core, &writable);
        if Instant::now() >= next_summary {
            next_summary += SUMMARY_EVERY;
            if let Some(line) = core.take_summary() {
                sotto::log!(Info, "{line}");
            }
        }

        if let Some(since) = stopping {
            let settled = !core.busy() && socks.keys().all(|id| !core.has_output(*id));
            if settled || since.elapsed() > DRAIN {
                sotto::log!(Info, "{}", core.total_summary());
                sotto::log!(Info, "stopped ({} connections closed)", socks.len());
                return Ok(());
            }
        }
    }
}

/// SO_SNDBUF of every connection (the kernel doubles it for its bookkeeping).
const KERNEL_SNDBUF: usize = 256 * 1024;

fn accept_all(
    listener: &TcpListener,
    core: &mut Core,
    socks: &mut HashMap<ConnId, TcpStream>,
    next_id: &mut ConnId,
    paused_until: &mut u64,
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
                match core.accept(id, addr.ip(), now) {
                    Ok(()) => {
                        socks.insert(id, stream);
                    }
                    // Dropping the stream closes it: no buffers, no handshake work.
                    Err(why) => sotto::log!(Debug, "refused a connection from {}: {why}", addr.ip()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE/ENFILE and friends: pause accepting instead of spinning,
                // and retry every 100 ms; logged once per episode, counted always.
                if now > paused_until.saturating_add(1_000) {
                    sotto::log!(Warn, "accept failed: {e}; pausing accepts, retrying every 100 ms");
                }
                core.count("accept failed (out of descriptors?)");
                *paused_until = now + 100;
                return;
            }
        }
    }
}

fn read_from(id: ConnId, socks: &mut HashMap<ConnId, TcpStream>, core: &mut Core, buf: &mut [u8], now: u64) {
    let Some(sock) = socks.get_mut(&id) else { return };
    let allowed = core.read_allowance(id, now).min(buf.len());
    let Some(buf) = buf.get_mut(..allowed).filter(|b| !b.is_empty()) else { return };
    match sock.read(buf) {
        Ok(0) => core.close(id, "peer closed"),
        Ok(n) => core.handle_input(id, buf.get(..n).unwrap_or_default(), now),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
        Err(_) => core.close(id, "read error"),
    }
}

/// Writes what the active connections have queued (those that gained output
/// or started closing this turn, and those the kernel just found writable),
/// and removes the finished ones.
fn flush_all(socks: &mut HashMap<ConnId, TcpStream>, core: &mut Core, writable: &[ConnId]) {
    let mut gone = Vec::new();
    let mut ids = core.take_active();
    ids.extend_from_slice(writable);
    // Both lists may name a connection: each is written, and removed, once.
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let Some(sock) = socks.get_mut(&id) else { continue };
        if let Some(out) = core.transmit(id) {
            while !out.is_empty() {
                match sock.write(out) {
                    Ok(0) => break,
                    Ok(n) => {
                        out.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        out.clear();
                        core.close(id, "write error");
                        break;
                    }
                }
            }
        }
        if core.is_done(id) {
            gone.push(id);
        }
    }
    for id in gone {
        socks.remove(&id);
        if let Some(reason) = core.remove(id) {
            if reason.starts_with("slow consumer") {
                sotto::log!(Warn, "conn {id} closed: {reason}");
            } else {
                sotto::log!(Debug, "conn {id} closed: {reason}");
            }
        }
    }
}
