//! The admin socket's connections, sans I/O (PROTOCOL.md §12): sottoctl's
//! frames in, answers out, on the same core and in the same loop turn as the
//! network, without the record layer (a local socket that only root and the
//! service user may open; the event loop checked SO_PEERCRED at accept).
//!
//! Invariant: a frame is `u32 length || message`, its length bounded before
//! it is buffered; opcode, exact size and request header are checked against
//! `ADMIN_DISPATCH`, a table that holds no network request (and the network's
//! holds no admin one), before any handler runs; a malformed frame closes
//! that admin connection only.

use crate::frame::Deframer;
use crate::opcodes::{AdminReply, MAX_MESSAGE};
use crate::wire::{self, code, Message, Status};

use crate::server::core::{ConnId, Core};
use crate::server::dispatch;

/// Output held for one admin connection at most before it stops being read
/// (a listing of every account is the largest answer).
const MAX_OUT: usize = 64 << 20;

/// Who is on the other end of an admin connection (SO_PEERCRED at accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminPeer {
    /// The peer's user id: root or the service user.
    pub uid: u32,
    /// The peer's process id, for the log.
    pub pid: i32,
}

/// The peer of a new admin connection when it may use the socket: root or
/// the user sottod runs as (SO_PEERCRED); anyone else is logged and None.
pub fn peer_of(stream: &std::os::unix::net::UnixStream) -> Option<AdminPeer> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(stream, PeerCredentials).ok()?;
    let (uid, pid) = (cred.uid(), cred.pid());
    let me = nix::unistd::geteuid().as_raw();
    if uid != 0 && uid != me {
        crate::log!(
            Warn,
            "admin socket: refused uid {uid} pid {pid}: only root and the service user (uid {me}) may use it"
        );
        return None;
    }
    Some(AdminPeer { uid, pid })
}

/// One admin connection.
pub struct AdminConn {
    peer: AdminPeer,
    deframer: Deframer,
    out: Vec<u8>,
    close: bool,
}

impl Core {
    /// A new admin connection whose credentials the event loop checked.
    pub fn admin_accept(&mut self, id: ConnId, peer: AdminPeer) {
        let conn = AdminConn { peer, deframer: Deframer::new(MAX_MESSAGE), out: Vec::new(), close: false };
        self.admin.insert(id, conn);
    }

    /// Bytes received on admin connection `id`: each whole frame is dispatched.
    pub fn admin_input(&mut self, id: ConnId, data: &[u8], now_ms: u64) {
        let Some(c) = self.admin.get_mut(&id) else { return };
        c.deframer.push(data);
        loop {
            let Some(c) = self.admin.get_mut(&id) else { return };
            if c.close {
                return;
            }
            match c.deframer.pop() {
                Ok(Some(frame)) => {
                    let peer = c.peer;
                    dispatch_admin(self, id, peer, &frame, now_ms);
                }
                Ok(None) => return,
                Err(e) => {
                    crate::log!(Warn, "admin connection {id} (uid {}, pid {}): {e}; closed", c.peer.uid, c.peer.pid);
                    c.close = true;
                    return;
                }
            }
        }
    }

    /// Whether admin connection `id` takes input now (its output is bounded).
    pub fn admin_wants_read(&self, id: ConnId) -> bool {
        self.admin.get(&id).is_some_and(|c| !c.close && c.out.len() < MAX_OUT)
    }

    /// Output waiting for admin connection `id`; the caller drains what it wrote.
    pub fn admin_output(&mut self, id: ConnId) -> Option<&mut Vec<u8>> {
        self.admin.get_mut(&id).map(|c| &mut c.out)
    }

    /// Marks admin connection `id` for closing (the peer went).
    pub fn admin_close(&mut self, id: ConnId) {
        if let Some(c) = self.admin.get_mut(&id) {
            c.close = true;
        }
    }

    /// Whether admin connection `id` is finished: closing with nothing left to send.
    pub fn admin_done(&self, id: ConnId) -> bool {
        self.admin.get(&id).is_none_or(|c| c.close && c.out.is_empty())
    }

    /// Forgets admin connection `id`.
    pub fn admin_remove(&mut self, id: ConnId) {
        self.admin.remove(&id);
    }

    /// The admin connections, to visit after each turn (they are few).
    pub fn admin_ids(&self) -> Vec<ConnId> {
        self.admin.keys().copied().collect()
    }
}

/// Checks opcode, size and header against the admin table, then runs the handler.
fn dispatch_admin(core: &mut Core, id: ConnId, peer: AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(hdr) = wire::header(frame) else {
        return reply(core, id, 0, 0, code::BAD_REQUEST, "frame shorter than a header");
    };
    let (opcode, msg_id) = (hdr.opcode.get(), hdr.msg_id.get());
    let Some(entry) = dispatch::lookup_admin(opcode) else {
        return reply(core, id, msg_id, opcode, code::BAD_REQUEST, "not an admin request opcode");
    };
    if frame.len() != entry.size {
        return reply(core, id, msg_id, opcode, code::BAD_REQUEST, "wrong size for opcode");
    }
    if hdr.status != Status::Request as u8 || hdr.code.get() != 0 {
        return reply(core, id, msg_id, opcode, code::BAD_REQUEST, "request header has a status");
    }
    crate::log!(Debug, "admin connection {id} (uid {}, pid {}): {}", peer.uid, peer.pid, entry.mnemonic);
    (entry.handler)(core, id, &peer, frame, now_ms);
}

/// Frames `msg` into admin connection `id`'s output.
pub(crate) fn send<M: Message>(core: &mut Core, id: ConnId, msg: &M) {
    let Some(c) = core.admin.get_mut(&id) else { return };
    frame_into(&mut c.out, msg);
}

/// Appends `msg` to `out` as an admin frame (`u32 length || message`).
pub fn frame_into<M: Message>(out: &mut Vec<u8>, msg: &M) {
    let bytes = msg.as_bytes();
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An `arep` for request `msg_id` with `code` and `reason` (cut to its field).
pub fn answer(msg_id: u64, request: u32, code: u16, reason: &str, now_ms: u64) -> AdminReply {
    let status = match code {
        code::OK => Status::Ok,
        _ => Status::Error,
    };
    let mut m = AdminReply::new(status, code, msg_id, now_ms);
    m.request_opcode.set(request);
    // NOTE: cut to the field's size above; cannot fail.
    let _ = m.set_reason(crate::server::acct::cut(reason, 255));
    m
}

/// Answers request `msg_id` of admin connection `id` now.
pub(crate) fn reply(core: &mut Core, id: ConnId, msg_id: u64, request: u32, code: u16, reason: &str) {
    let m = answer(msg_id, request, code, reason, 0);
    send(core, id, &m);
}

/// Ends a multi-part admin answer with status `done`.
pub(crate) fn reply_done(core: &mut Core, id: ConnId, msg_id: u64, request: u32, reason: &str, now_ms: u64) {
    let mut m = answer(msg_id, request, code::OK, reason, now_ms);
    m.hdr.status = Status::Done as u8;
    send(core, id, &m);
}
