//! Relayed connections, a part of the core (DESIGN §8 "Edges"; the wire
//! form is [`crate::server::relay`]).
//!
//! On an edge, the core runs the handshakes and the record layer as for any
//! connection, and hands every opened message to the writer instead of a
//! handler; what the writer sends back is sealed here, under the same output
//! bound. On the writer, a relayed connection is a connection like another
//! whose frames arrive opened and whose output goes to its edge, as output
//! loops take theirs (`Conn::queued`, falling by what the edge reports
//! written to the client).
//!
//! Invariants: an edge dispatches nothing and answers nothing itself once a
//! client's first message was relayed; the writer decides its login and idle
//! time. A relayed connection's input on the writer is bounded as a socket's
//! is (the edge pauses its reading when the writer says so).

use std::collections::HashMap;
use std::net::IpAddr;

use super::resume::Resuming;
use super::{ConnId, Core, Phase};
use crate::opcodes::ResumptionTicket;
use crate::record;
use crate::server::accounts::Accounts;
use crate::server::mailbox::Mail;
use crate::server::relay::{self, Item};
use crate::server::remote::{Out, Written};
use crate::server::room::Rooms;
use crate::server::session::Session;
use crate::wire::{code, Message, Status};

/// Bytes written to a client that an edge reports at once; less waits for
/// the loop's timer. Far under what paces a download (64 KiB) and the
/// output bound (1 MiB by default).
const WROTE_BATCH: usize = 8 * 1024;

/// An edge's side: the items for the writer since the last turn.
#[derive(Default)]
pub(crate) struct Edge {
    up: Vec<Item>,
    /// Bytes of the writer's output written to each client since the last turn.
    wrote: HashMap<ConnId, usize>,
}

impl Edge {
    /// Client `id` is gone.
    pub(super) fn closed(&mut self, id: ConnId) {
        self.wrote.remove(&id);
        self.up.push(Item::Closed { conn: id });
    }

    /// `n` bytes were written to client `id`; `pending` is what it holds of
    /// the writer's output, of which only that much counts.
    pub(super) fn wrote(&mut self, id: ConnId, n: usize, pending: &mut usize) {
        let n = n.min(*pending);
        if n > 0 {
            *pending -= n;
            *self.wrote.entry(id).or_default() += n;
        }
    }
}

impl Core {
    /// The core of an edge: no state of its own; every client's messages go
    /// to the writer ([`Core::take_relayed`]).
    pub fn edge(cfg: crate::handshake::ServerConfig, limits: super::Limits) -> Core {
        let mut core = Core::new(cfg, limits, Accounts::default(), Rooms::default(), Mail::default());
        core.edge = Some(Edge::default());
        core
    }

    /// The core of a writer that takes relayed connections as well as its own.
    pub fn with_relay(mut self) -> Core {
        self.outbox.get_or_insert_with(Vec::new);
        self
    }

    /// Whether `id` is relayed (on the writer: an edge's client).
    pub fn is_relayed(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.relayed)
    }

    // ---- the edge's side ----

    /// An opened message of client `id`, for the writer: `Open` first.
    pub(super) fn relay_up(&mut self, id: ConnId, plaintext: Vec<u8>) {
        let (Some(edge), Some(conn)) = (self.edge.as_mut(), self.conns.get_mut(&id)) else { return };
        if !conn.relayed {
            conn.relayed = true;
            edge.up.push(Item::Open { conn: id, addr: conn.addr });
        }
        edge.up.push(Item::Frame { conn: id, body: plaintext });
    }

    /// What to send the writer since the last call (an edge's). What was
    /// written to a client is reported once it reaches [`WROTE_BATCH`], or
    /// with `all` (the loop's timer, every 50 ms): one report per message
    /// would cost the writer as much as the sealing it hands over.
    pub fn take_relayed(&mut self, all: bool) -> Vec<Item> {
        let Some(edge) = self.edge.as_mut() else { return Vec::new() };
        let mut items = std::mem::take(&mut edge.up);
        edge.wrote.retain(|&conn, n| {
            if !all && *n < WROTE_BATCH {
                return true;
            }
            // Reported in u32 steps; far less is ever pending.
            items.push(Item::Wrote { conn, bytes: u32::try_from(*n).unwrap_or(u32::MAX) });
            false
        });
        items
    }

    /// The event loop wrote `n` bytes of `id`'s output (an edge's single
    /// loop; with output loops, [`Core::written`] hears of it).
    pub fn wrote(&mut self, id: ConnId, n: usize) {
        if let (Some(edge), Some(conn)) = (self.edge.as_mut(), self.conns.get_mut(&id)) {
            edge.wrote(id, n, &mut conn.relay_out);
        }
    }

    /// Applies what the writer sent (an edge's core); items meant for the
    /// writer are ignored.
    pub fn relay_apply(&mut self, item: Item, now_ms: u64) {
        match item {
            Item::Resumed { conn, ok } => self.edge_resumed(conn, ok, now_ms),
            Item::Ticket { conn, ticket } => self.edge_ticket(conn, &ticket, now_ms),
            Item::Send { conn, msg } => {
                self.count_relayed(conn, msg.len());
                self.send_bytes(conn, &msg);
            }
            Item::Many { mut conns, msg } => {
                conns.sort_unstable();
                conns.dedup();
                conns.retain(|c| self.conns.get(c).is_some_and(|c| c.relayed));
                for &c in &conns {
                    self.count_relayed(c, msg.len());
                }
                self.send_bytes_many(&conns, &msg);
            }
            Item::Close { conn } => self.close(conn, "closed by the writing node"),
            Item::Pause { conn } | Item::Resume { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.relay_paused = matches!(item, Item::Pause { .. });
                }
                self.touch(conn);
            }
            Item::Open { .. }
            | Item::Frame { .. }
            | Item::Wrote { .. }
            | Item::Closed { .. }
            | Item::Resuming { .. }
            | Item::Reset => {}
        }
    }

    /// The deployment's resumption ticket keys as this edge's node follows
    /// them: tickets open here, and new ones are sealed under the newest.
    pub fn set_ticket_keys(&mut self, keys: Vec<crate::ticket::TicketKey>) {
        self.tickets = crate::server::tickets::Tickets::relayed(keys);
    }

    /// A ResumeHello on an edge: its ticket opened and its binder verified
    /// here (the keys are the deployment's), the answer and the session's
    /// keys made, and the rest (the account's state, revocation, replay,
    /// the session limit, the strike) asked of the writer; the answer waits
    /// for its `RESUMED`.
    pub(super) fn edge_resume_hello(&mut self, id: ConnId, body: &[u8]) {
        let t = match self.open_hello_ticket(body) {
            Ok(t) => t,
            Err((why, uid)) => return self.refuse_resumption(id, why, uid),
        };
        let (frame, keys) = match crate::ticket::server_resume(&self.cfg, body, &t.secret) {
            Ok(answer) => answer,
            Err(_) => return self.refuse_resumption(id, crate::server::tickets::Refusal::BadKey, Some(t.uid)),
        };
        let ticket = relay::Ticket {
            uid: t.uid,
            issued_ms: t.issued_ms,
            expires_ms: t.expires_ms,
            generation: t.generation,
            ticket_id: t.ticket_id,
        };
        let (Some(edge), Some(conn)) = (self.edge.as_mut(), self.conns.get_mut(&id)) else { return };
        conn.relayed = true;
        let resuming = Resuming { answer: Some((frame, keys)), uid: t.uid, generation: t.generation };
        conn.phase = Phase::Resuming(Box::new(resuming));
        // No frame is processed until the answer went out.
        conn.busy = true;
        edge.up.push(Item::Resuming { conn: id, addr: conn.addr, ticket });
    }

    /// The writer's verdict on `id`'s resumption (an edge's core): the
    /// answer and the session's keys, or the refusal.
    fn edge_resumed(&mut self, id: ConnId, ok: bool, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if !matches!(conn.phase, Phase::Resuming(_)) {
            return;
        }
        conn.busy = false;
        if conn.close.is_some() {
            return;
        }
        let Phase::Resuming(r) = std::mem::replace(&mut conn.phase, Phase::Handshaking) else { return };
        let Some((frame, keys)) = r.answer else { return };
        if !ok {
            self.send_raw(id, crate::ticket::refusal(&self.cfg, crate::ticket::REFUSED));
            return self.close(id, "resumption refused");
        }
        self.open_resumed(id, frame, keys);
        self.pump(id, now_ms);
        self.touch(id);
    }

    /// A ticket the writer issued to `id` (an edge's core): sealed here,
    /// where the session's resumption secret is, under the newest followed
    /// key. Not counted as the writer's output (the writer did not count it).
    fn edge_ticket(&mut self, id: ConnId, t: &relay::Ticket, now_ms: u64) {
        let Some(master) = self.conns.get(&id).filter(|c| c.relayed).and_then(|c| c.resumption.as_ref()) else {
            return;
        };
        let Some(key) = self.tickets.sealing_key() else { return };
        let contents = crate::ticket::TicketContents {
            uid: t.uid,
            issued_ms: t.issued_ms,
            expires_ms: t.expires_ms,
            generation: t.generation,
            ticket_id: t.ticket_id,
            secret: master.ticket_secret(&t.ticket_id),
        };
        let mut m = ResumptionTicket::new(Status::Ok, code::OK, 0, now_ms);
        m.ticket_id = t.ticket_id;
        m.expires.set(t.expires_ms);
        m.ticket = key.seal(&contents);
        self.send(id, &m);
    }

    /// Counts a message of `len` the writer sent `id` in what `id` owes a report of.
    fn count_relayed(&mut self, id: ConnId, len: usize) {
        if let Some(c) = self.conns.get_mut(&id).filter(|c| c.relayed) {
            c.relay_out += record::sealed_len(len);
        }
    }

    /// Closes every relayed client (an edge whose writer is gone or changed):
    /// they reconnect, to the new writer.
    pub fn close_relayed(&mut self, why: &'static str) -> usize {
        let ids: Vec<ConnId> = self.conns.iter().filter(|(_, c)| c.relayed).map(|(id, _)| *id).collect();
        for &id in &ids {
            self.close(id, why);
        }
        ids.len()
    }

    // ---- the writer's side ----

    /// An edge's client, its handshake done there: `id` is this core's
    /// number for it. Refused as [`Core::accept`] refuses a connection.
    pub fn relay_open(&mut self, id: ConnId, addr: IpAddr, now_ms: u64) -> Result<(), &'static str> {
        if self.conns.contains_key(&id) {
            return Err("connection already open");
        }
        self.accept(id, addr, now_ms)?;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.relayed = true;
            // Frames arrive opened: at most a message each.
            conn.deframer.set_max_body(crate::opcodes::MAX_MESSAGE);
            conn.phase = Phase::Open { opener: None, sealer: None, session: Session::AwaitLogin };
        }
        Ok(())
    }

    /// An opened message of relayed connection `id`, handled as a socket's
    /// record is once opened.
    pub fn relay_frame(&mut self, id: ConnId, body: &[u8], now_ms: u64) {
        let max_input = self.limits.max_input;
        let Some(conn) = self.conns.get_mut(&id).filter(|c| c.relayed) else { return };
        if conn.close.is_some() {
            return;
        }
        // The edge stops reading once paused; what was on its way when the
        // pause left is less than another bound's worth.
        if conn.deframer.buffered() + body.len() > 2 * max_input.max(crate::opcodes::MAX_MESSAGE) {
            conn.close = Some("relayed input over its bound");
            self.touch(id);
            return;
        }
        let mut framed = Vec::with_capacity(4 + body.len());
        crate::frame::encode(body, &mut framed);
        self.handle_input(id, &framed, now_ms);
        zeroize::Zeroize::zeroize(&mut framed);
    }

    /// An edge's client resumes with `ticket`, which the edge opened: the
    /// writer's checks and strike as for a ticket of its own; its answer
    /// goes back as `RESUMED` once the strike is durable (`id` is this
    /// core's number for the connection). Refused as [`Core::accept`]
    /// refuses a connection.
    pub fn relay_resume(
        &mut self,
        id: ConnId,
        addr: IpAddr,
        ticket: &relay::Ticket,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        self.relay_open(id, addr, now_ms)?;
        let uid = Some(ticket.uid);
        if !self.limits.resume || !self.tickets.is_loaded() {
            self.refuse_resumption(id, crate::server::tickets::Refusal::Off, uid);
            return Ok(());
        }
        if let Err(why) = self.ticket_policy(ticket, now_ms) {
            self.refuse_resumption(id, why, uid);
            return Ok(());
        }
        if !self.tickets.strike(ticket.ticket_id, ticket.uid, ticket.expires_ms, now_ms) {
            self.refuse_resumption(id, crate::server::tickets::Refusal::Full, uid);
            return Ok(());
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            let resuming = Resuming { answer: None, uid: ticket.uid, generation: ticket.generation };
            conn.phase = Phase::Resuming(Box::new(resuming));
            conn.busy = true;
        }
        self.defer(super::Deferred::Resumed { conn: id });
        Ok(())
    }

    /// Queues `item` for relayed connection `id`'s edge (the writer's core).
    pub(super) fn relay_item(&mut self, id: ConnId, item: Item) {
        if let Some(outbox) = self.outbox.as_mut() {
            outbox.push(Out::Relay { conn: id, item });
        }
        self.touch(id);
    }

    /// The edge wrote `bytes` of relayed connection `id`'s output.
    pub fn relay_wrote(&mut self, id: ConnId, bytes: usize) {
        if self.is_relayed(id) {
            self.written(Written { conn: id, bytes, failed: None });
        }
    }

    /// Relayed connection `id` is gone at its edge (or its edge is): what
    /// was on its way is lost, and it closes.
    pub fn relay_gone(&mut self, id: ConnId, why: &'static str) {
        if self.is_relayed(id) {
            self.written(Written { conn: id, bytes: 0, failed: Some(why) });
        }
    }
}
