//! Output loops (`sottod --threads N`, N over 1), as the core sees them.
//!
//! The core loop keeps every piece of state and decides everything: what is
//! sent to whom, in what order, under which bound. What costs per recipient,
//! sealing each record and writing it, moves to N - 1 output loops, each
//! owning a share of the connections' sealers and write sides. The core
//! hands them [`Out`] items in its own order; they answer with what they
//! wrote ([`Written`]).
//!
//! Invariants: a connection's items reach its one output loop in the order
//! the core made them, so records are sealed in sequence and frames arrive in
//! the order the core sent them; `Conn::queued` counts the sealed bytes handed
//! over and not yet reported written, and stands for the output a
//! single-loop server would hold: the same bound, the same slow-consumer
//! close, the same flush before a close.

use std::sync::Arc;

use super::core::ConnId;
use crate::record::{self, Sealer};

/// What the core hands an output loop.
pub enum Out {
    /// Bytes as they are (the handshake's answer, before any record).
    Raw { conn: ConnId, bytes: Vec<u8> },
    /// The connection's sealer: every later message is sealed there.
    Keys { conn: ConnId, sealer: Box<Sealer> },
    /// One message (wire form) to seal for one connection.
    Seal { conn: ConnId, msg: Vec<u8> },
    /// One message to seal for several connections (a room's fan-out), side by side.
    Many { conns: Vec<ConnId>, msg: Arc<[u8]> },
    /// The connection is gone: drop what is left of it.
    Forget { conn: ConnId },
    /// For a relayed connection's edge (DESIGN §8 "Edges"): an item of the
    /// relay, naming `conn` as this core numbers it. Never for an output loop.
    Relay { conn: ConnId, item: crate::server::relay::Item },
}

impl Out {
    /// The connection the item is for (`Many`: the first; see [`Out::conns`]).
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Out::Raw { conn, .. }
            | Out::Keys { conn, .. }
            | Out::Seal { conn, .. }
            | Out::Forget { conn }
            | Out::Relay { conn, .. } => Some(*conn),
            Out::Many { conns, .. } => conns.first().copied(),
        }
    }

    /// Sealed bytes the item puts on the wire in all.
    pub fn wire_bytes(&self) -> usize {
        match self {
            Out::Raw { bytes, .. } => bytes.len(),
            Out::Seal { msg, .. } => record::sealed_len(msg.len()),
            Out::Many { conns, msg } => record::sealed_len(msg.len()) * conns.len(),
            Out::Keys { .. } | Out::Forget { .. } | Out::Relay { .. } => 0,
        }
    }
}

/// What an output loop reports of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub conn: ConnId,
    /// Bytes written to the socket since the last report.
    pub bytes: usize,
    /// Writing failed (or a record could not be sealed): what is left is lost.
    pub failed: Option<&'static str>,
}

/// Seals `msg` for `conn` into `out` when this loop holds its `sealer`, or
/// hands it to its output loop and counts its sealed length in `queued`;
/// false when no record can seal it.
pub(crate) fn seal_or_queue(
    sealer: Option<&mut Sealer>,
    outbox: Option<&mut Vec<Out>>,
    conn: ConnId,
    out: &mut Vec<u8>,
    queued: &mut usize,
    msg: impl AsRef<[u8]> + Into<Vec<u8>>,
) -> bool {
    match (sealer, outbox) {
        (Some(sealer), _) => sealer.seal(msg.as_ref(), out).is_ok(),
        (None, Some(outbox)) if record::sealable(msg.as_ref()) => {
            *queued += record::sealed_len(msg.as_ref().len());
            // A borrowed message is copied only here, for the other thread.
            outbox.push(Out::Seal { conn, msg: msg.into() });
            true
        }
        _ => false,
    }
}

/// Bytes sent as they are (the handshake's answers): into `out`, or to
/// `conn`'s output loop, counted in `queued`.
pub(crate) fn raw(outbox: Option<&mut Vec<Out>>, conn: ConnId, out: &mut Vec<u8>, queued: &mut usize, bytes: Vec<u8>) {
    match outbox {
        Some(outbox) => {
            *queued += bytes.len();
            outbox.push(Out::Raw { conn, bytes });
        }
        None => out.extend_from_slice(&bytes),
    }
}

/// A connection's part in an output loop: its sealer and what waits to be written.
pub struct Lane {
    sealer: Option<Box<Sealer>>,
    /// Sealed bytes not yet written (the writer drains it).
    pub out: Vec<u8>,
    /// Sealing or writing failed: what the lane held is dropped and nothing more is sealed.
    pub failed: Option<&'static str>,
}

impl Lane {
    /// What `c` holds is lost; the core hears of it and closes the connection.
    pub fn fail(&mut self, why: &'static str) {
        self.out = Vec::new();
        self.failed.get_or_insert(why);
    }

    fn seal(&mut self, msg: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let sealed = self.sealer.as_deref_mut().is_some_and(|s| s.seal(msg, &mut self.out).is_ok());
        if !sealed {
            self.fail("sequence number exhausted");
        }
    }
}

/// An output loop's sealing, sans I/O: it applies the core's items to its
/// connections' lanes, in order, as the single loop would have sealed them
/// (a fan-out side by side, `record::seal_many`).
#[derive(Default)]
pub struct Sealing {
    lanes: std::collections::HashMap<ConnId, Lane>,
    /// Wire bytes of the items applied since the last [`Sealing::take_applied`].
    applied: usize,
}

impl Sealing {
    /// A new connection, with nothing to write yet.
    pub fn attach(&mut self, conn: ConnId) {
        self.lanes.insert(conn, Lane { sealer: None, out: Vec::new(), failed: None });
    }

    /// `conn`'s lane.
    pub fn lane(&mut self, conn: ConnId) -> Option<&mut Lane> {
        self.lanes.get_mut(&conn)
    }

    /// Wire bytes of the items applied since the last call.
    pub fn take_applied(&mut self) -> usize {
        std::mem::take(&mut self.applied)
    }

    /// Applies `item`; `touched` hears of each connection that gained output
    /// (or failed). Returns the connection `Forget` removed, if any.
    pub fn apply(&mut self, item: Out, mut touched: impl FnMut(ConnId)) -> Option<ConnId> {
        self.applied += item.wire_bytes();
        match item {
            Out::Raw { conn, bytes } => {
                if let Some(l) = self.lanes.get_mut(&conn).filter(|l| l.failed.is_none()) {
                    l.out.extend_from_slice(&bytes);
                }
                touched(conn);
            }
            Out::Keys { conn, sealer } => {
                if let Some(l) = self.lanes.get_mut(&conn) {
                    l.sealer = Some(sealer);
                }
            }
            Out::Seal { conn, msg } => {
                if let Some(l) = self.lanes.get_mut(&conn) {
                    l.seal(&msg);
                }
                touched(conn);
            }
            Out::Many { conns, msg } => {
                self.seal_many(&conns, &msg);
                conns.iter().for_each(|c| touched(*c));
            }
            Out::Forget { conn } => return self.lanes.remove(&conn).map(|_| conn),
            Out::Relay { .. } => {}
        }
        None
    }

    /// Seals `msg` for `ids` side by side, each straight into its lane.
    fn seal_many(&mut self, ids: &[ConnId], msg: &[u8]) {
        let mut lent: Vec<(ConnId, Lane)> = Vec::with_capacity(ids.len());
        for id in ids {
            match self.lanes.remove(id) {
                Some(l) if l.failed.is_none() && l.sealer.as_ref().is_some_and(|s| !s.exhausted()) => {
                    lent.push((*id, l))
                }
                Some(mut l) => {
                    l.seal(msg); // fails it, as one by one
                    self.lanes.insert(*id, l);
                }
                None => {}
            }
        }
        let sealed = {
            let (mut sealers, mut outs) = (Vec::with_capacity(lent.len()), Vec::with_capacity(lent.len()));
            for (_, l) in lent.iter_mut() {
                if let Some(s) = l.sealer.as_deref_mut() {
                    sealers.push(s);
                    outs.push(&mut l.out);
                }
            }
            record::seal_many(&mut sealers, msg, &mut outs)
        };
        for (id, mut l) in lent {
            if sealed.is_err() {
                l.fail("sequence number exhausted");
            }
            self.lanes.insert(id, l);
        }
    }
}
