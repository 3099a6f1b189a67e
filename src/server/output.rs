//! The core's side of the output loops (`--threads` over 1), a part of the
//! core: what it hands them ([`crate::server::remote::Out`]) and what they
//! report back.
//!
//! Invariant: `Conn::queued` is what the output loop holds for a
//! connection, in sealed bytes; it only falls by what the loop reports
//! written, and a failure drops the rest at once (the connection closes).

use super::{ConnId, Core};
use crate::server::remote::{Out, Written};

impl Core {
    /// The core for a server with output loops: every connection's records
    /// are sealed and written there ([`Core::take_output`]), none here.
    pub fn with_output_loops(mut self) -> Core {
        self.outbox = Some(Vec::new());
        self.loops = true;
        self
    }

    /// What to hand the output loops since the last call, in order.
    pub fn take_output(&mut self) -> Vec<Out> {
        self.outbox.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// An output loop reports what it wrote for a connection, or that it
    /// failed: then what it held is gone, and the connection closes.
    pub fn written(&mut self, w: Written) {
        let id: ConnId = w.conn;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.queued = conn.queued.saturating_sub(w.bytes);
        if let Some(edge) = &mut self.edge {
            edge.wrote(id, w.bytes, &mut conn.relay_out);
        }
        if let Some(why) = w.failed {
            conn.queued = 0;
            conn.out_dropped = true;
            conn.close.get_or_insert(why);
        }
        // Listed: the next pass tops its bulk queue up, or removes it once flushed.
        self.touch(id);
    }
}
