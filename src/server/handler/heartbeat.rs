//! Heartbeat (ping -> pong): keeps a quiet session from the idle timeout and
//! shows the client that the server is alive.

use crate::opcodes::{Heartbeat, HeartbeatReply};
use crate::wire::{code, decode, Message, Status};

use crate::server::core::{ConnId, Core};
use crate::server::session::Authenticated;

/// ping: answer pong with the server's clock.
pub fn ping(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<Heartbeat>(frame) else { return };
    let mut reply = HeartbeatReply::new(Status::Ok, code::OK, m.hdr.msg_id.get(), now_ms);
    reply.server_time.set(now_ms);
    core.send(id, &reply);
}
