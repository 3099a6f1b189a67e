//! Connections as the event loop sees them, a part of the core: accepted
//! (under the caps), fed input (under the input bound and the byte rate),
//! drained of output (topped up from their bulk queues), closed, timed out
//! and removed.
//!
//! Invariant: a connection reads nothing while its output and the answers
//! it waits for would pass three quarters of the output bound, and a closing
//! connection gets a grace period to flush, never forever.

use std::net::IpAddr;

use super::commit::ANSWER_WIRE;
use super::{Conn, ConnId, Core, Phase, CLOSE_GRACE_MS};
use crate::frame::Deframer;
use crate::handshake;
use crate::server::files::{ConnFiles, BULK_OUT_LOW, UPLOAD_PENDING_MAX, UPLOAD_PENDING_TOTAL};
use crate::server::remote::{self, Out};
use crate::server::session::Session;
use crate::server::throttle::bucket;
use crate::server::worker::Job;

impl Core {
    /// A new connection from `addr`; `Err(reason)` when a cap refuses it (close it at once).
    pub fn accept(&mut self, id: ConnId, addr: IpAddr, now_ms: u64) -> Result<(), &'static str> {
        if self.conns.len() >= self.limits.max_conns {
            self.count("connection cap reached");
            return Err("connection cap reached");
        }
        let from_addr = self.per_addr.entry(bucket(addr)).or_default();
        if *from_addr >= self.limits.max_conns_per_addr {
            self.count("too many connections from one address");
            return Err("too many connections from this address");
        }
        *from_addr += 1;
        let conn = Conn {
            addr,
            opened_ms: now_ms,
            // A ClientHello or a ResumeHello, the larger (PROTOCOL §3).
            deframer: Deframer::new(handshake::CLIENT_HELLO_LEN.max(crate::ticket::RESUME_HELLO_LEN)),
            out: Vec::new(),
            queued: 0,
            phase: Phase::AwaitHello,
            busy: false,
            close: None,
            closing_since_ms: 0,
            out_dropped: false,
            heard_ms: now_ms,
            window_bytes: 0,
            window_start_ms: now_ms,
            listed: false,
            mail_cursor: 0,
            login_name: None,
            files: ConnFiles::default(),
            holding: false,
            answers: 0,
            resumption: None,
            relayed: false,
            relay_paused: false,
            relay_out: 0,
        };
        self.conns.insert(id, conn);
        Ok(())
    }

    /// Counts a handshake to sign for `addr`; false when it is over its rate.
    pub(super) fn handshake_allowed(&mut self, addr: IpAddr, now_ms: u64) -> bool {
        let (start, count) = self.handshakes.entry(bucket(addr)).or_insert((now_ms, 0));
        if now_ms.saturating_sub(*start) >= 1_000 {
            *start = now_ms;
            *count = 0;
        }
        *count += 1;
        *count <= self.limits.handshakes_per_sec
    }

    /// Bytes received on `id`.
    pub fn handle_input(&mut self, id: ConnId, data: &[u8], now_ms: u64) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.heard_ms = now_ms;
            if now_ms.saturating_sub(conn.window_start_ms) >= 1_000 {
                conn.window_start_ms = now_ms;
                conn.window_bytes = 0;
            }
            conn.window_bytes += data.len() as u64;
            conn.deframer.push(data);
            self.pump(id, now_ms);
            self.touch(id);
        }
    }

    /// How many bytes `id` may take now (0: none): what fits in its input
    /// bound (back-pressure), and what is left of `max_bps` in this second.
    pub fn read_allowance(&self, id: ConnId, now_ms: u64) -> usize {
        let Some(c) = self.conns.get(&id) else { return 0 };
        if c.close.is_some() || c.relay_paused {
            return 0;
        }
        // Uploads wait for the disk, not in memory (PROTOCOL §10, "Flow").
        let uploading = c.files.uploading;
        if uploading >= UPLOAD_PENDING_MAX || (uploading > 0 && self.files.uploading >= UPLOAD_PENDING_TOTAL) {
            return 0;
        }
        // A client that pipelines faster than it takes its answers, or than
        // the disk or JetStream makes them durable, is slowed, not dropped as
        // a slow consumer of its own answers: no input while its output and
        // the answers waiting for a commit (all sealed at once when it lands)
        // would fill three quarters of the bound.
        let max = self.limits.max_output;
        if c.out.len() + c.queued + c.answers as usize * ANSWER_WIRE > max / 4 * 3 {
            return 0;
        }
        let room = self.limits.max_input.saturating_sub(c.deframer.buffered());
        let max_bps = self.limits.max_bps;
        if max_bps == 0 {
            return room;
        }
        let used = if now_ms.saturating_sub(c.window_start_ms) >= 1_000 { 0 } else { c.window_bytes };
        room.min(usize::try_from(max_bps.saturating_sub(used)).unwrap_or(usize::MAX))
    }

    /// Whether `id` may take any input now (see [`Core::read_allowance`]).
    pub fn wants_read(&self, id: ConnId, now_ms: u64) -> bool {
        self.read_allowance(id, now_ms) > 0
    }

    /// Counts a chat message of `uid` (from any of its sessions) against the
    /// rate limit: Err(ms to wait) when over it.
    pub(crate) fn chat_allowed(&mut self, uid: u64, now_ms: u64) -> Result<(), u64> {
        let Some((n, window)) = self.limits.rate else { return Ok(()) };
        crate::server::throttle::admit(self.chat.entry(uid).or_default(), n, window, now_ms)
    }

    /// Lists `id` for the event loop's next pass (it has output to write).
    pub(crate) fn wake(&mut self, id: ConnId) {
        self.touch(id);
    }

    /// Lists `id` for the event loop's next pass over active connections.
    pub(super) fn touch(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.listed {
                c.listed = true;
                self.active.push(id);
            }
        }
    }

    /// The connections that gained output or started closing since the last
    /// call (each once); the event loop writes to them and removes the finished.
    pub fn take_active(&mut self) -> Vec<ConnId> {
        let ids = std::mem::take(&mut self.active);
        for id in &ids {
            if let Some(c) = self.conns.get_mut(id) {
                c.listed = false;
            }
        }
        ids
    }

    /// Output waiting for `id`, topped up from its bulk queue; the caller
    /// drains what it wrote (and calls again to top up once it is all written).
    pub fn transmit(&mut self, id: ConnId) -> Option<&mut Vec<u8>> {
        self.top_up(id);
        self.conns.get_mut(&id).map(|c| &mut c.out)
    }

    /// Whether `id` has output waiting (sealed, or in its bulk queue).
    pub fn has_output(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| {
            !c.out.is_empty() || c.queued > 0 || (!c.files.bulk.is_empty() && c.close.is_none() && !c.out_dropped)
        })
    }

    /// Seals frames of `id`'s bulk queue (file chunks) into its output while
    /// that holds less than `BULK_OUT_LOW`: chat frames, sealed at once,
    /// wait behind at most that much file data (PROTOCOL §10). The read-ahead
    /// freed lets its downloads read on.
    pub(crate) fn top_up(&mut self, id: ConnId) {
        // Under a small output bound (the fuzz world's), half of it: a chat
        // frame after the bulk must never make the connection a slow consumer.
        let low = BULK_OUT_LOW.min(self.limits.max_output / 2);
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let Phase::Open { sealer, .. } = &mut conn.phase else { return };
        let mut freed = 0;
        while conn.out.len() + conn.queued < low && conn.close.is_none() && !conn.out_dropped {
            let Some(frame) = conn.files.bulk.pop_front() else { break };
            freed += usize::from(frame.chunk);
            if !remote::seal_or_queue(
                sealer.as_mut(),
                self.outbox.as_mut(),
                id,
                &mut conn.out,
                &mut conn.queued,
                frame.bytes,
            ) {
                conn.close.get_or_insert("sequence number exhausted");
            }
        }
        if freed > 0 {
            self.files.ahead = self.files.ahead.saturating_sub(freed);
            crate::server::handler::file::pump(self, id);
            crate::server::handler::file::pump_starved(self);
        }
    }

    /// `id`'s part in file transfer.
    pub(crate) fn conn_files(&mut self, id: ConnId) -> Option<&mut ConnFiles> {
        self.conns.get_mut(&id).map(|c| &mut c.files)
    }

    /// `id`'s part in file transfer, to read.
    pub(crate) fn conn_files_ref(&self, id: ConnId) -> Option<&ConnFiles> {
        self.conns.get(&id).map(|c| &c.files)
    }

    /// Hands `job` to the workers without holding up `id`'s next frames (a
    /// download's chunk read).
    pub(crate) fn push_job(&mut self, job: Job) {
        self.jobs.push(job);
    }

    /// Whether `id` is marked for closing (it reads nothing more).
    pub fn is_closing(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.close.is_some())
    }

    /// Whether `id` is finished: marked for closing and nothing left to send.
    pub fn is_done(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .is_none_or(|c| c.close.is_some() && c.out.is_empty() && (c.queued == 0 || c.out_dropped) && !c.holding)
    }

    /// Forgets `id` (the socket is gone); returns why it closed.
    pub fn remove(&mut self, id: ConnId) -> Option<&'static str> {
        let conn = self.conns.remove(&id)?;
        if let (Some(edge), true) = (&mut self.edge, conn.relayed) {
            edge.closed(id);
        }
        if let Some(outbox) = &mut self.outbox {
            outbox.push(Out::Forget { conn: id });
        }
        let key = bucket(conn.addr);
        if let Some(n) = self.per_addr.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&key);
            }
        }
        if let Phase::Open { session: Session::Authenticated(auth), .. } = &conn.phase {
            if let Some(ids) = self.online.get_mut(&auth.uid()) {
                ids.retain(|c| *c != id);
                if ids.is_empty() {
                    self.online.remove(&auth.uid());
                    if self.announce_unsaved.contains(&auth.uid()) {
                        self.mark_acct_dirty(auth.uid());
                    }
                }
            }
        }
        crate::server::handler::file::forget(self, id, conn.files);
        let reason = conn.close.unwrap_or("peer closed");
        if !matches!(reason, "peer closed" | "test") {
            self.count(reason);
        }
        Some(reason)
    }

    /// Closes connections past their handshake or login deadline.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let limits = self.limits;
        let edge = self.edge.is_some();
        let mut closing = Vec::new();
        for (id, conn) in self.conns.iter_mut() {
            if conn.close.is_some() {
                // A peer that does not read its last bytes gets a grace period, not forever;
                // it starts when the answer the connection is held for was sent.
                if conn.holding {
                    conn.closing_since_ms = 0;
                } else if conn.closing_since_ms == 0 {
                    conn.closing_since_ms = now_ms.max(1);
                } else if now_ms.saturating_sub(conn.closing_since_ms) > CLOSE_GRACE_MS {
                    conn.out.clear();
                    conn.out_dropped = true;
                }
                closing.push(*id);
                continue;
            }
            let age = now_ms.saturating_sub(conn.opened_ms);
            let reason = match &conn.phase {
                // An edge's relayed client: the writer keeps its login and idle time.
                Phase::Open { .. } if edge && conn.relayed => continue,
                Phase::AwaitHello | Phase::Handshaking | Phase::Resuming(_) if age > limits.handshake_ms => {
                    "handshake timeout"
                }
                Phase::Open { session: Session::AwaitLogin | Session::AwaitPassphrase(_), .. }
                    if age > limits.login_ms =>
                {
                    "login timeout"
                }
                Phase::Open { session: Session::Authenticated(_), .. }
                    if now_ms.saturating_sub(conn.heard_ms) > limits.idle_ms =>
                {
                    "idle timeout"
                }
                _ => continue,
            };
            conn.close = Some(reason);
            closing.push(*id);
        }
        for id in closing {
            self.touch(id);
        }
        self.backoff.prune(now_ms);
        self.room_backoff.prune(now_ms);
        self.registrations.prune(now_ms);
        self.room_creations.prune(now_ms);
        if let Some((_, window)) = self.limits.rate {
            self.chat.retain(|_, t| t.back().is_some_and(|last| now_ms.saturating_sub(*last) < window));
        }
        self.handshakes.retain(|_, (start, _)| now_ms.saturating_sub(*start) < 1_000);
        self.tickets.tick(self.limits.ticket_ttl_ms, now_ms);
        crate::server::handler::direct::handle_timeout(self, now_ms);
        crate::server::handler::file::handle_timeout(self, now_ms);
    }

    /// Marks `id` for closing once its output is flushed.
    pub fn close(&mut self, id: ConnId, reason: &'static str) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.close.get_or_insert(reason);
        }
        self.touch(id);
    }
}
