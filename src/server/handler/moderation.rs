//! Room moderation (PROTOCOL.md §6, "Moderation"): the owner kicks and bans
//! members, lifts bans, hands the room on and changes its password; the
//! author or the owner removes a kept message, leaving a tombstone.
//!
//! Invariant: only the room's owner moderates (its author, too, removes a
//! message); the server still holds only salts, verifiers and ciphertexts.
//! A removed member hears of it through its durable mailbox, whether online
//! or not; every change is acknowledged only once this turn's commit is
//! durable.

use crate::opcodes::{
    RoomKick, RoomKicked, RoomOwner, RoomOwnerChanged, RoomRekey, RoomRekeyed, RoomRemoveMessage, RoomTombstone,
    RoomUnban, RMKK, RMOW, RMPW, RMRM, RMUB,
};
use crate::wire::{code, decode, Message, Status, WireError};
use zerocopy::IntoBytes;

use super::room::{member, room_name, tell_members, To, LEFT};
use crate::server::core::{ConnId, Core, Deferred};
use crate::server::room::{Kept, MAX_MEMBERS};
use crate::server::session::Authenticated;

/// The UID of the user named in `raw`, or an answer 400/404 and None.
fn user_uid(core: &mut Core, request: (ConnId, u64, u32), raw: Result<&str, WireError>, now_ms: u64) -> Option<u64> {
    let name = super::name_or_400(core, request, raw, crate::account::normalize_username, "invalid user name", now_ms)?;
    let uid = core.accounts.by_name(&name).map(|r| r.uid.get());
    if uid.is_none() {
        let (id, msg_id, opcode) = request;
        core.reply(id, msg_id, opcode, code::NOT_FOUND, "no such user", now_ms);
    }
    uid
}

/// Whether `room` exists and `auth` owns it; otherwise answers 404 or 403.
fn owned(
    core: &mut Core,
    (id, msg_id, opcode): (ConnId, u64, u32),
    room: &str,
    auth: &Authenticated,
    now_ms: u64,
) -> bool {
    match core.rooms.get(room).map(|r| r.owner) {
        None => {
            core.reply(id, msg_id, opcode, code::NOT_FOUND, "no such room", now_ms);
            false
        }
        Some(owner) if owner != auth.uid() => {
            core.reply(id, msg_id, opcode, code::FORBIDDEN, "only the room's owner can do that", now_ms);
            false
        }
        Some(_) => true,
    }
}

/// rmkk: the owner removes a member (and, with ban, keeps it out).
pub fn kick(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<RoomKick>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let request = (id, msg_id, RMKK);
    let Some(name) = room_name(core, id, msg_id, RMKK, m.room(), now_ms) else { return };
    // The owner first: nobody else learns from the answer whether a user exists.
    if !owned(core, request, &name, auth, now_ms) {
        return;
    }
    let Some(target) = user_uid(core, request, m.user(), now_ms) else { return };
    let Ok(reason) = m.reason().map(str::to_owned) else {
        return core.reply(id, msg_id, RMKK, code::BAD_REQUEST, "the reason is not UTF-8", now_ms);
    };
    if m.ban > 1 {
        return core.reply(id, msg_id, RMKK, code::BAD_REQUEST, "ban must be 0 or 1", now_ms);
    }
    if target == auth.uid() {
        return core.reply(id, msg_id, RMKK, code::BAD_REQUEST, "the owner cannot remove itself", now_ms);
    }
    let ban = m.ban == 1;
    let Some(room) = core.rooms.get_mut(&name) else { return };
    let was_member = room.is_member(target);
    if !was_member && !ban {
        return core.reply(id, msg_id, RMKK, code::NOT_FOUND, "not a member of this room", now_ms);
    }
    if ban && !room.is_banned(target) {
        if room.banned.len() >= MAX_MEMBERS {
            return core.reply(id, msg_id, RMKK, code::FORBIDDEN, "the room's ban list is full", now_ms);
        }
        room.banned.push(target);
    }
    room.members.retain(|u| *u != target);
    core.mark_dirty(&name);
    if was_member {
        if let Some(ev) = member(core, &name, LEFT, target, Status::Ok, 0, now_ms) {
            tell_members(core, &name, &ev, None);
        }
        let mut ev = RoomKicked::new(Status::Ok, code::OK, 0, now_ms);
        let _ = ev.set_room(&name);
        ev.by_uid.set(auth.uid());
        let _ = ev.set_by(auth.name());
        ev.ban = u8::from(ban);
        // NOTE: read from a field of the same length.
        let _ = ev.set_reason(&reason);
        // Made by the server for a removal that happened: not refused when the mailbox is full.
        super::direct::post(core, target, ev.as_bytes(), None, now_ms);
    }
    let reason = if ban { "banned" } else { "kicked" };
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: RMKK, reason });
}

/// rmub: the owner lifts a ban.
pub fn unban(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<RoomUnban>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let request = (id, msg_id, RMUB);
    let Some(name) = room_name(core, id, msg_id, RMUB, m.room(), now_ms) else { return };
    // The owner first: nobody else learns from the answer whether a user exists.
    if !owned(core, request, &name, auth, now_ms) {
        return;
    }
    let Some(target) = user_uid(core, request, m.user(), now_ms) else { return };
    let Some(room) = core.rooms.get_mut(&name) else { return };
    if !room.is_banned(target) {
        return core.reply(id, msg_id, RMUB, code::NOT_FOUND, "that user is not banned from this room", now_ms);
    }
    room.banned.retain(|u| *u != target);
    core.mark_dirty(&name);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: RMUB, reason: "unbanned" });
}

/// rmow: the owner hands the room to another member.
pub fn owner(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<RoomOwner>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let request = (id, msg_id, RMOW);
    let Some(name) = room_name(core, id, msg_id, RMOW, m.room(), now_ms) else { return };
    // The owner first: nobody else learns from the answer whether a user exists.
    if !owned(core, request, &name, auth, now_ms) {
        return;
    }
    let Some(target) = user_uid(core, request, m.user(), now_ms) else { return };
    let Some(room) = core.rooms.get_mut(&name) else { return };
    if !room.is_member(target) {
        return core.reply(id, msg_id, RMOW, code::NOT_FOUND, "the new owner must be a member of the room", now_ms);
    }
    room.owner = target;
    core.mark_dirty(&name);
    tell_owner(core, &name, target, now_ms);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: RMOW, reason: "owner changed" });
}

/// Tells the online members of `room` that `owner` owns it now.
pub(crate) fn tell_owner(core: &mut Core, room: &str, owner: u64, now_ms: u64) {
    let Some(name) = core.accounts.by_uid(owner).and_then(|r| r.username().ok()).map(str::to_owned) else { return };
    let mut ev = RoomOwnerChanged::new(Status::Ok, code::OK, 0, now_ms);
    let _ = ev.set_room(room);
    ev.owner_uid.set(owner);
    let _ = ev.set_owner(&name);
    tell_members(core, room, &ev, None);
}

/// rmpw: the owner changes the room password. The history, sealed under the
/// old key, is dropped; every other member leaves the member list and is
/// told (durably): it joins again with the new password, or not at all.
pub fn rekey(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<RoomRekey>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, RMPW, m.room(), now_ms) else { return };
    if !owned(core, (id, msg_id, RMPW), &name, auth, now_ms) {
        return;
    }
    let me = auth.uid();
    let Some(room) = core.rooms.get_mut(&name) else { return };
    room.salt = m.salt;
    room.verifier = m.verifier;
    room.clear_history();
    let others: Vec<u64> = room.members.iter().copied().filter(|u| *u != me).collect();
    room.members.retain(|u| *u == me);
    core.mark_dirty(&name);
    let mut ev = RoomRekeyed::new(Status::Ok, code::OK, 0, now_ms);
    let _ = ev.set_room(&name);
    ev.by_uid.set(me);
    let _ = ev.set_by(auth.name());
    for uid in others {
        super::direct::post(core, uid, ev.as_bytes(), None, now_ms);
    }
    crate::log!(Info, "room {name}: password changed by its owner (uid {me:016x})");
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: RMPW, reason: "password changed" });
}

/// rmrm: the author or the owner replaces a kept message by its tombstone.
pub fn remove(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<RoomRemoveMessage>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, RMRM, m.room(), now_ms) else { return };
    let me = auth.uid();
    let Some(room) = core.rooms.get_mut(&name) else {
        return core.reply(id, msg_id, RMRM, code::NOT_FOUND, "no such room", now_ms);
    };
    if !room.is_member(me) && room.owner != me {
        return core.reply(id, msg_id, RMRM, code::FORBIDDEN, "not a member of this room", now_ms);
    }
    let wanted = m.message_id.get();
    let found = room.history.iter().position(|e| !e.is_tombstone() && room.message_id(e) == wanted);
    let Some(at) = found else {
        return core.reply(id, msg_id, RMRM, code::NOT_FOUND, "no such message in the room's kept history", now_ms);
    };
    let owner = room.owner;
    let Some(entry) = room.history.get(at) else { return };
    if entry.head.sender_uid.get() != me && owner != me {
        let why = "only its author or the room's owner can remove a message";
        return core.reply(id, msg_id, RMRM, code::FORBIDDEN, why, now_ms);
    }
    let gone = entry.tombstone(me);
    room.replace_entry(at, gone.clone());
    core.mark_dirty(&name);
    tombstone(core, &name, &gone, To::Members(id), now_ms);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: RMRM, reason: "removed" });
}

/// Sends a tombstone as an `rtmb`: live to the members, or in a join's history.
pub(super) fn tombstone(core: &mut Core, room: &str, e: &Kept, to: To, now_ms: u64) {
    let message_id = crate::room::message_id(&crate::room::Context {
        room,
        sender_uid: e.head.sender_uid.get(),
        msg_id: e.head.sent_msg_id.get(),
        sent_time: e.head.sent_time.get(),
    });
    let (msg_id, history) = match to {
        To::History(_, msg_id) => (msg_id, 1),
        To::Members(_) => (0, 0),
    };
    let mut ev = RoomTombstone::new(Status::Ok, code::OK, msg_id, now_ms);
    let _ = ev.set_room(room);
    ev.history = history;
    ev.sender_uid = e.head.sender_uid;
    ev.message_id.set(message_id);
    ev.sent_time = e.head.sent_time;
    ev.by_uid.set(e.removed_by());
    match to {
        To::History(conn, _) => core.send(conn, &ev),
        To::Members(from) => tell_members(core, room, &ev, Some(from)),
    }
}
