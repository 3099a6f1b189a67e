//! A single-threaded epoll(7) driver for many sotto sessions at once: the
//! load generator's side of W2-W7, on its own core. Like sottod's loop, its
//! work per wake-up follows the ready sessions, so that at 10,000 sessions
//! the generator does not add its own scan to the latencies it measures.
//!
//! A session either opens every record (`Mode::Open`), or only counts the
//! frames it receives (`Mode::Count`): every member of a room receives the
//! same sequence of messages, so one member that opens them tells which
//! message the k-th frame of every other member is, and the generator does
//! not spend its core on decrypting thousands of copies. `Mode::Stalled`
//! sessions are never read (slow consumers).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::proto::Session;

/// How a session's input is handled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Open,
    Count,
    Stalled,
}

/// Counts length-prefixed frames in a byte stream without keeping them.
#[derive(Default)]
pub struct FrameCounter {
    len: [u8; 4],
    have: usize,
    skip: usize,
}

impl FrameCounter {
    /// Feeds bytes; returns how many frames ended in them.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 {
                    done += 1;
                }
                continue;
            }
            let n = (4 - self.have).min(data.len());
            self.len[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 4 {
                self.have = 0;
                self.skip = u32::from_be_bytes(self.len) as usize;
                if self.skip == 0 {
                    done += 1;
                }
            }
        }
        done
    }
}

/// One driven session.
pub struct Peer {
    pub s: Session,
    pub mode: Mode,
    pub counter: FrameCounter,
    /// Frames received (counted or opened).
    pub frames: u64,
}

impl Peer {
    pub fn new(mut s: Session, mode: Mode) -> io::Result<Peer> {
        s.set_nonblocking()?;
        Ok(Peer { s, mode, counter: FrameCounter::default(), frames: 0 })
    }
}

/// What the driver tells the workload.
pub enum Event<'a> {
    /// Peer `i` received and opened a message.
    Message(usize, &'a [u8]),
    /// Peer `i` received frames `first..first + n` (counted, not opened).
    Counted(usize, u64, u64),
}

/// Runs until `until`: `tick` queues sends (called at least every `tick_every`
/// and after every poll; `Duration::ZERO` spins) and returns false to stop
/// early; `event` sees input.
pub fn drive(
    peers: &mut [Peer],
    until: Instant,
    tick_every: Duration,
    mut tick: impl FnMut(Instant, &mut [Peer]) -> bool,
    mut event: impl FnMut(Instant, Event<'_>, &mut Vec<(usize, u64)>),
) -> io::Result<()> {
    let mut acks: Vec<(usize, u64)> = Vec::new();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // What each session is registered for; stalled sessions are never read.
    let mut interest: Vec<EpollFlags> = Vec::with_capacity(peers.len());
    for (i, p) in peers.iter().enumerate() {
        let ev = if p.mode == Mode::Stalled { EpollFlags::empty() } else { EpollFlags::EPOLLIN };
        epoll.add(p.s.stream.as_fd(), EpollEvent::new(ev, i as u64))?;
        interest.push(ev);
    }
    let mut events = vec![EpollEvent::empty(); 1024];
    loop {
        let now = Instant::now();
        if now >= until || !tick(now, peers) {
            return Ok(());
        }
        // Output queued by `tick` or by acknowledgements: write what the
        // kernel takes, and watch for writability only while some is left.
        for (i, p) in peers.iter_mut().enumerate() {
            if p.s.pending() > 0 {
                p.s.flush_some()?;
            }
            let mut want = if p.mode == Mode::Stalled { EpollFlags::empty() } else { EpollFlags::EPOLLIN };
            if p.s.pending() > 0 {
                want |= EpollFlags::EPOLLOUT;
            }
            if want != interest[i] {
                epoll.modify(p.s.stream.as_fd(), &mut EpollEvent::new(want, i as u64))?;
                interest[i] = want;
            }
        }
        // Zero: spin (the generator has a core of its own), so that no send waits
        // for a timeout; latency is measured from the scheduled send time.
        let wait = EpollTimeout::try_from(tick_every.as_millis().min(100) as u32).unwrap_or(EpollTimeout::ZERO);
        let n = match epoll.wait(&mut events, wait) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let ready: Vec<usize> = events[..n].iter().map(|e| e.data() as usize).filter(|i| *i < peers.len()).collect();
        let now = Instant::now();
        for i in ready {
            let p = &mut peers[i];
            match p.mode {
                Mode::Stalled => {}
                Mode::Count => loop {
                    let data = p.s.read_raw()?;
                    if data.is_empty() {
                        break;
                    }
                    let n = p.counter.feed(data);
                    if n > 0 {
                        let first = p.frames;
                        p.frames += n;
                        event(now, Event::Counted(i, first, n), &mut acks);
                    }
                },
                Mode::Open => {
                    while p.s.fill()? {}
                    while let Some(m) = p.s.pop()? {
                        p.frames += 1;
                        event(now, Event::Message(i, &m), &mut acks);
                    }
                }
            }
            if p.s.pending() > 0 {
                p.s.flush_some()?;
            }
        }
        for (i, seq) in acks.drain(..) {
            let mut a = <sotto::opcodes::MailboxAck as zerocopy::FromZeros>::new_zeroed();
            a.seq.set(seq);
            peers[i].s.queue(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_split_anywhere() {
        let mut wire = Vec::new();
        for n in [0usize, 5, 1500, 3] {
            wire.extend_from_slice(&(n as u32).to_be_bytes());
            wire.extend(std::iter::repeat_n(7u8, n));
        }
        for chunk in [1, 2, 3, 7, 1000, wire.len()] {
            let mut c = FrameCounter::default();
            let total: u64 = wire.chunks(chunk).map(|d| c.feed(d)).sum();
            assert_eq!(total, 4, "chunk {chunk}");
        }
    }
}
