//! File transfer (PROTOCOL.md §10): being built; every request is refused.

use crate::wire::{code, header};

use crate::server::core::{ConnId, Core};
use crate::server::session::Authenticated;

fn refuse(core: &mut Core, id: ConnId, frame: &[u8], now_ms: u64) {
    let Ok(h) = header(frame) else { return };
    core.reply(id, h.msg_id.get(), h.opcode.get(), code::NOT_IMPLEMENTED, "file transfer is not available", now_ms);
}

/// flof.
pub fn offer(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    refuse(core, id, frame, now_ms)
}
/// flch.
pub fn chunk(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    refuse(core, id, frame, now_ms)
}
/// flgt.
pub fn get(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    refuse(core, id, frame, now_ms)
}
/// fldn.
pub fn done(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    refuse(core, id, frame, now_ms)
}
