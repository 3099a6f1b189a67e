//! Room fan-out, a part of the core: one message sealed for every online
//! session of a room's members, up to `record::LANES` records side by side
//! (`record::seal_many`), each straight into its connection's output.
//!
//! Invariant: each connection gets exactly what `Core::send_bytes` would
//! give it, under the same output bound and close reasons.

use super::{ConnId, Core, Phase};
use crate::record;
use crate::server::remote::Out;

impl Core {
    /// Sends `msg` (in wire form) to every session of every member of `room`
    /// except `except`, in member order, sealed side by side
    /// ([`Core::send_bytes_many`]).
    pub(crate) fn send_to_room(&mut self, room: &str, msg: &[u8], except: Option<ConnId>) {
        let Some(r) = self.rooms.get(room) else { return };
        let online = &self.online;
        let ids: Vec<ConnId> = r
            .members
            .iter()
            .filter_map(|uid| online.get(uid))
            .flatten()
            .copied()
            .filter(|id| Some(*id) != except)
            .collect();
        self.send_bytes_many(&ids, msg);
    }

    /// Seals one message for many connections (a room's fan-out): for each,
    /// what [`Core::send_bytes`] does, with the same output bound, but up to
    /// `record::LANES` records side by side (`record::seal_many`), each
    /// written straight into its connection's output. `ids` are distinct.
    pub(crate) fn send_bytes_many(&mut self, ids: &[ConnId], msg: &[u8]) {
        let max = self.limits.max_output;
        let mut batch: Vec<(ConnId, Phase, Vec<u8>)> = Vec::with_capacity(ids.len());
        // Sealed by the output loops (`--threads` over 1): counted here, sealed there.
        let mut remote: Vec<ConnId> = Vec::new();
        for &id in ids {
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            let Phase::Open { sealer, .. } = &conn.phase else { continue };
            if conn.out.len() + conn.queued > max || conn.out_dropped {
                continue;
            }
            let Some(sealer) = sealer else {
                remote.push(id);
                continue;
            };
            if sealer.exhausted() {
                self.send_bytes(id, msg); // closes it, as one by one
                continue;
            }
            // Lent for the batch (no other code runs before they are back):
            // the keys by moving the phase out, the output by value.
            let phase = std::mem::replace(&mut conn.phase, Phase::AwaitHello);
            batch.push((id, phase, std::mem::take(&mut conn.out)));
        }
        if !batch.is_empty() {
            self.seal_batch(&mut batch, msg, max);
        }
        if !remote.is_empty() {
            self.queue_many(remote, msg, max);
        }
    }

    /// Seals `msg` for the lent connections of `batch` and gives each its
    /// phase and output back, closing as [`Core::send_bytes`] would.
    fn seal_batch(&mut self, batch: &mut Vec<(ConnId, Phase, Vec<u8>)>, msg: &[u8], max: usize) {
        let sealed = {
            let (mut sealers, mut outs) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
            for (_, phase, out) in batch.iter_mut() {
                if let Phase::Open { sealer: Some(sealer), .. } = phase {
                    sealers.push(sealer);
                    outs.push(out);
                }
            }
            record::seal_many(&mut sealers, msg, &mut outs)
        };
        for (id, phase, out) in batch.drain(..) {
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            conn.phase = phase;
            conn.out = out;
            if sealed.is_err() {
                conn.close.get_or_insert("sequence number exhausted");
            } else if conn.out.len() > max {
                conn.close.get_or_insert("slow consumer: output bound exceeded");
            }
            self.touch(id);
        }
    }

    /// Hands `msg` to the output loops for `ids` (one item: they seal it side
    /// by side), counting it against each connection's bound as
    /// [`Core::send_bytes`] would.
    fn queue_many(&mut self, mut ids: Vec<ConnId>, msg: &[u8], max: usize) {
        // Each connection once, as the single loop seals it once (its
        // phase is lent the first time): the output loop seals it once.
        ids.sort_unstable();
        ids.dedup();
        let sealable = record::sealable(msg);
        let len = record::sealed_len(msg.len());
        for &id in &ids {
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            if !sealable {
                conn.close.get_or_insert("sequence number exhausted");
            } else {
                conn.queued += len;
                if conn.queued > max {
                    conn.close.get_or_insert("slow consumer: output bound exceeded");
                }
            }
            self.touch(id);
        }
        if let (true, Some(outbox)) = (sealable, self.outbox.as_mut()) {
            outbox.push(Out::Many { conns: ids, msg: msg.into() });
        }
    }
}
