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
}

impl Out {
    /// The connection the item is for (`Many`: the first; see [`Out::conns`]).
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Out::Raw { conn, .. } | Out::Keys { conn, .. } | Out::Seal { conn, .. } | Out::Forget { conn } => {
                Some(*conn)
            }
            Out::Many { conns, .. } => conns.first().copied(),
        }
    }

    /// Sealed bytes the item puts on the wire in all.
    pub fn wire_bytes(&self) -> usize {
        match self {
            Out::Raw { bytes, .. } => bytes.len(),
            Out::Seal { msg, .. } => record::sealed_len(msg.len()),
            Out::Many { conns, msg } => record::sealed_len(msg.len()) * conns.len(),
            Out::Keys { .. } | Out::Forget { .. } => 0,
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

/// Queues `msg` to be sealed for `conn` by its output loop and counts its
/// sealed length in `queued`; false when no record can seal it.
pub(crate) fn queue(outbox: &mut Vec<Out>, conn: ConnId, queued: &mut usize, msg: Vec<u8>) -> bool {
    if !record::sealable(&msg) {
        return false;
    }
    *queued += record::sealed_len(msg.len());
    outbox.push(Out::Seal { conn, msg });
    true
}
