//! Prekeys (PROTOCOL.md §7): publish and hand out the X3DH inputs.
//!
//! Placeholder while the prekey store is built: both requests answer 501.

use crate::server::core::{ConnId, Core};
use crate::server::session::Authenticated;
use crate::wire::{code, header};

/// pkup: publish a signed prekey and/or one-time prekeys.
pub fn upload(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let msg_id = header(frame).map(|h| h.msg_id.get()).unwrap_or(0);
    core.reply(id, msg_id, crate::opcodes::PKUP, code::NOT_IMPLEMENTED, "prekeys are not stored yet", now_ms);
}

/// pkgt: hand out a contact's bundle.
pub fn fetch(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let msg_id = header(frame).map(|h| h.msg_id.get()).unwrap_or(0);
    core.reply(id, msg_id, crate::opcodes::PKGT, code::NOT_IMPLEMENTED, "prekeys are not stored yet", now_ms);
}
