//! Opcodes that are in the table but whose feature is not built yet: direct
//! messages (jmpu, ampu, smpu). They are never silently accepted: each gets
//! 501 "not implemented".

use sotto::wire::{self, code};

use crate::core::{ConnId, Core};
use crate::session::Authenticated;

fn not_implemented(core: &mut Core, id: ConnId, frame: &[u8], now_ms: u64, what: &str) {
    let (opcode, msg_id) = wire::header(frame).map_or((0, 0), |h| (h.opcode.get(), h.msg_id.get()));
    core.reply(id, msg_id, opcode, code::NOT_IMPLEMENTED, what, now_ms);
}

/// jmpu, ampu, smpu.
pub fn direct(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    not_implemented(core, id, frame, now_ms, "direct messages are not implemented by this server yet");
}
