//! Request handlers, one file per area; named by opcodes.toml `handler`.
//!
//! Each handler receives a frame whose opcode, exact size and session state
//! the dispatch table already checked.

pub mod account;
pub mod admin;
pub mod direct;
pub mod file;
pub mod heartbeat;
pub mod moderation;
pub mod operator;
pub mod prekey;
pub mod room;
pub mod user;

use crate::server::core::{ConnId, Core};
use crate::wire::{code, WireError};

/// A name field of a request, normalised by `normalize`; otherwise the
/// request is answered 400 with `reason` and the result is None.
fn name_or_400<E>(
    core: &mut Core,
    (id, msg_id, opcode): (ConnId, u64, u32),
    raw: Result<&str, WireError>,
    normalize: fn(&str) -> Result<String, E>,
    reason: &str,
    now_ms: u64,
) -> Option<String> {
    let name = raw.ok().and_then(|n| normalize(n).ok());
    if name.is_none() {
        core.reply(id, msg_id, opcode, code::BAD_REQUEST, reason, now_ms);
    }
    name
}
