//! Rooms (DESIGN §6): create, salt, join, send, leave, list, who, delete.
//!
//! Invariant: the server checks the auth key against SHA-256 of it in
//! constant time and otherwise only moves ciphertext: a message is stamped
//! with the sender's UID and the server time, fanned out to the online
//! members from one plaintext, and kept in the room's ring of 20. Every
//! state change is acknowledged only after this turn's commit is durable.

use crate::crypto;
use crate::opcodes::{
    Class, CreateRoom, DeleteRoom, JoinRoom, LeaveRoom, ListRooms, OnlineUser, ReceiveRoomMessageHead,
    ReceiveRoomMessageL, ReceiveRoomMessageM, ReceiveRoomMessageS, ReceiveRoomMessageX, RoomDeleted, RoomEntry,
    RoomListEntry, RoomMember, RoomSalt, RoomSaltRequest, SendRoomMessageHead, WhoOnline, WhoRoom, CRMS, DLRM, GSLT,
    JRMS, LSRM, LVRM, WHOA, WHOR,
};
use crate::room::normalize_name;
use crate::wire::{code, decode, Classed, Message, Status};
use zerocopy::FromZeros;

use crate::server::core::{ConnId, Core, Deferred};
use crate::server::room::{Kept, Room, MAX_MEMBERS};
use crate::server::session::Authenticated;

/// `RoomMember.kind` values.
const LISTED: u8 = 0;
const JOINED: u8 = 1;
pub(crate) const LEFT: u8 = 2;
const FORMER: u8 = 3;
/// Most rooms one list answer carries (the output bound must hold it).
const LIST_MAX: usize = 1000;

/// Reads and normalises the room name, or answers 400 and returns None.
pub(super) fn room_name(
    core: &mut Core,
    id: ConnId,
    msg_id: u64,
    opcode: u32,
    raw: Result<&str, crate::wire::WireError>,
    now_ms: u64,
) -> Option<String> {
    super::name_or_400(
        core,
        (id, msg_id, opcode),
        raw,
        normalize_name,
        "invalid room name: 1-32 of a-z 0-9 _ -",
        now_ms,
    )
}

/// Room back-off is keyed by (room, user), like logins by account, plus the
/// address: one user's wrong guesses cannot lock everyone else out of a room.
fn room_key(name: &str, uid: u64) -> u64 {
    let h = crypto::sha256(&[b"room\0", name.as_bytes(), &uid.to_be_bytes()]);
    u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

/// An `mbrs` event for `uid`, with its keys unless it `LEFT`.
pub(crate) fn member(
    core: &Core,
    room: &str,
    kind: u8,
    uid: u64,
    status: Status,
    msg_id: u64,
    now_ms: u64,
) -> Option<RoomMember> {
    let rec = core.accounts.by_uid(uid)?;
    let mut m = RoomMember::new(status, code::OK, msg_id, now_ms);
    let _ = m.set_room(room);
    m.kind = kind;
    m.online = u8::from(core.is_online(uid));
    m.uid.set(uid);
    let _ = m.set_name(rec.username().unwrap_or_default());
    if kind != LEFT {
        m.id_pub = rec.id_pub;
        m.enc_pub = rec.enc_pub;
        m.enc_sig = rec.enc_sig;
    }
    Some(m)
}

/// Sends `msg` to every online member of `room` but `except`.
pub(crate) fn tell_members<M: Message>(core: &mut Core, room: &str, msg: &M, except: Option<ConnId>) {
    core.send_to_room(room, msg.as_bytes(), except);
}

/// crms: a new room with the caller as owner and only member.
pub fn create(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<CreateRoom>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, CRMS, m.room(), now_ms) else { return };
    if core.rooms.get(&name).is_some() {
        return core.reply(id, msg_id, CRMS, code::CONFLICT, "room already exists", now_ms);
    }
    let Some(addr) = core.addr(id) else { return };
    if let Err(wait) = core.room_creations.allow(addr, now_ms) {
        return core.reply_retry(id, msg_id, CRMS, code::RATE_LIMITED, "creating rooms too fast; wait", wait, now_ms);
    }
    let room = Room {
        name: name.clone(),
        salt: m.salt,
        verifier: m.verifier,
        owner: auth.uid(),
        created: now_ms,
        members: vec![auth.uid()],
        banned: Vec::new(),
        history: Default::default(),
        pushed: 0,
        durable: 0,
        emitted: 0,
        rewritten: true,
    };
    core.rooms.insert(room);
    core.mark_dirty(&name);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: CRMS, reason: "room created" });
}

/// gslt: the salt a joiner needs to derive the room keys.
pub fn salt(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<RoomSaltRequest>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, GSLT, m.room(), now_ms) else { return };
    let Some(salt) = core.rooms.get(&name).map(|r| r.salt) else {
        return core.reply(id, msg_id, GSLT, code::NOT_FOUND, "no such room", now_ms);
    };
    let mut reply = RoomSalt::new(Status::Ok, code::OK, msg_id, now_ms);
    let _ = reply.set_room(&name);
    reply.salt = salt;
    core.send(id, &reply);
}

/// jrms: check the auth key, add the member, answer after the commit.
pub fn join(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<JoinRoom>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, JRMS, m.room(), now_ms) else { return };
    let Some(addr) = core.addr(id) else { return };
    let Some((verifier, banned)) = core.rooms.get(&name).map(|r| (r.verifier, r.is_banned(auth.uid()))) else {
        return core.reply(id, msg_id, JRMS, code::NOT_FOUND, "no such room", now_ms);
    };
    if banned {
        // Before the password check: a banned user learns nothing from guessing.
        return core.reply(id, msg_id, JRMS, code::FORBIDDEN, "you are banned from this room by its owner", now_ms);
    }
    let key = room_key(&name, auth.uid());
    if let Some(wait) = core.room_backoff.check(&key, addr, now_ms) {
        return core.reply_retry(
            id,
            msg_id,
            JRMS,
            code::RATE_LIMITED,
            "too many wrong room passwords; wait",
            wait,
            now_ms,
        );
    }
    if !crypto::ct_eq(&crate::room::verifier(&m.auth_key), &verifier) {
        core.room_backoff.fail(&key, addr, now_ms);
        return core.reply(id, msg_id, JRMS, code::FORBIDDEN, "wrong room password", now_ms);
    }
    let uid = auth.uid();
    let Some(room) = core.rooms.get_mut(&name) else { return };
    if !room.is_member(uid) {
        if room.members.len() >= MAX_MEMBERS {
            return core.reply(id, msg_id, JRMS, code::FORBIDDEN, "room is full", now_ms);
        }
        room.members.push(uid);
        core.mark_dirty(&name);
        if let Some(ev) = member(core, &name, JOINED, uid, Status::Ok, 0, now_ms) {
            tell_members(core, &name, &ev, Some(id));
        }
    }
    core.defer(Deferred::Joined { conn: id, msg_id, room: name });
}

/// The answer to a durable join: the members (and former members whose
/// messages are kept), a 200, the history oldest first, then a `stat` done.
pub fn join_answer(core: &mut Core, id: ConnId, msg_id: u64, name: &str, now_ms: u64) {
    let Some(room) = core.rooms.get(name) else {
        return core.reply(id, msg_id, JRMS, code::NOT_FOUND, "room was deleted", now_ms);
    };
    // Kicked, banned or dropped by a new password while the join went to disk.
    if !core.session_uid(id).is_some_and(|uid| room.is_member(uid)) {
        return core.reply(id, msg_id, JRMS, code::FORBIDDEN, "removed from the room by its owner", now_ms);
    }
    let members = room.members.clone();
    let mut former: Vec<u64> =
        room.durable_history().map(|e| e.head.sender_uid.get()).filter(|u| !members.contains(u)).collect();
    former.sort_unstable();
    former.dedup();
    // Only what a finished commit made durable: a message still on its way to
    // disk could vanish in a crash after the reader saw it.
    let history: Vec<Kept> = room.durable_history().cloned().collect();
    let listed = members.iter().map(|u| (LISTED, *u)).chain(former.iter().map(|u| (FORMER, *u)));
    for (kind, uid) in listed {
        if let Some(ev) = member(core, name, kind, uid, Status::Pending, msg_id, now_ms) {
            core.send(id, &ev);
        }
    }
    core.reply(id, msg_id, JRMS, code::OK, "joined", now_ms);
    for e in &history {
        if e.is_tombstone() {
            super::moderation::tombstone(core, name, e, To::History(id, msg_id), now_ms);
        } else {
            deliver(core, name, e, To::History(id, msg_id), now_ms);
        }
    }
    core.reply_done(id, msg_id, JRMS, "end of history", now_ms);
}

/// An `rvr*` carrying a kept or live entry, of the entry's class.
fn receive<E: Classed<Head = ReceiveRoomMessageHead>>(
    room: &str,
    e: &Kept,
    history: bool,
    msg_id: u64,
    now_ms: u64,
) -> E {
    let mut m = E::new(Status::Ok, code::OK, msg_id, now_ms);
    let h = m.head_mut();
    let _ = h.set_room(room);
    h.history = u8::from(history);
    h.sender_uid = e.head.sender_uid;
    h.server_time = e.head.server_time;
    h.sent_msg_id = e.head.sent_msg_id;
    h.sent_time = e.head.sent_time;
    h.iv = e.head.iv;
    h.tag = e.head.tag;
    h.signature = e.head.signature;
    // NOTE: a Kept body has its class's size (checked when it was made or loaded).
    m.body_mut().copy_from_slice(&e.body);
    m
}

/// Where a kept entry goes.
#[derive(Clone, Copy)]
pub(super) enum To {
    /// As history, to the joining connection, answering its msg_id.
    History(ConnId, u64),
    /// Live, to every online member of the room but the sender's connection.
    Members(ConnId),
}

/// Sends a kept entry as an `rvr*` of its class.
fn deliver(core: &mut Core, room: &str, e: &Kept, to: To, now_ms: u64) {
    fn go<E: Classed<Head = ReceiveRoomMessageHead>>(core: &mut Core, room: &str, e: &Kept, to: To, now_ms: u64) {
        match to {
            To::History(id, msg_id) => core.send(id, &receive::<E>(room, e, true, msg_id, now_ms)),
            // One plaintext, sealed once per member session.
            To::Members(from) => tell_members(core, room, &receive::<E>(room, e, false, 0, now_ms), Some(from)),
        }
    }
    match e.class {
        Class::S => go::<ReceiveRoomMessageS>(core, room, e, to, now_ms),
        Class::M => go::<ReceiveRoomMessageM>(core, room, e, to, now_ms),
        Class::L => go::<ReceiveRoomMessageL>(core, room, e, to, now_ms),
        Class::X => go::<ReceiveRoomMessageX>(core, room, e, to, now_ms),
    }
}

/// srm*: stamp, fan out, keep; acknowledge after the commit.
pub fn send<M: Classed<Head = SendRoomMessageHead>>(
    core: &mut Core,
    id: ConnId,
    auth: &Authenticated,
    frame: &[u8],
    now_ms: u64,
) {
    let Ok(m) = decode::<M>(frame) else { return };
    let op = M::OPCODE;
    let msg_id = m.header().msg_id.get();
    let Some(name) = room_name(core, id, msg_id, op, m.head().room(), now_ms) else { return };
    let Some(room) = core.rooms.get_mut(&name) else {
        return core.reply(id, msg_id, op, code::NOT_FOUND, "no such room", now_ms);
    };
    if !room.is_member(auth.uid()) {
        return core.reply(id, msg_id, op, code::FORBIDDEN, "not a member of this room", now_ms);
    }
    if room.holds(auth.uid(), msg_id, m.header().timestamp.get()) {
        // Sent again after a lost connection: kept once, answered once it is durable.
        return core.defer(Deferred::Reply { conn: id, msg_id, opcode: op, reason: "stored" });
    }
    if let Err(wait) = core.chat_allowed(auth.uid(), now_ms) {
        return core.reply_retry(id, msg_id, op, code::RATE_LIMITED, "sending too fast; wait", wait, now_ms);
    }
    let Some(room) = core.rooms.get_mut(&name) else { return };
    let mut head = RoomEntry::new_zeroed();
    head.sender_uid.set(auth.uid());
    head.server_time.set(now_ms);
    head.sent_msg_id = m.header().msg_id;
    head.sent_time = m.header().timestamp;
    head.class = M::CLASS.letter() as u8;
    head.iv = m.head().iv;
    head.tag = m.head().tag;
    head.signature = m.head().signature;
    let entry = Kept { head, class: M::CLASS, body: m.body().into() };
    room.push(entry.clone());
    core.mark_dirty(&name);
    deliver(core, &name, &entry, To::Members(id), now_ms);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: op, reason: "stored" });
}

/// lvrm: stop being a member; the others are told.
pub fn leave(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<LeaveRoom>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, LVRM, m.room(), now_ms) else { return };
    let Some(room) = core.rooms.get_mut(&name) else {
        return core.reply(id, msg_id, LVRM, code::NOT_FOUND, "no such room", now_ms);
    };
    if !room.is_member(auth.uid()) {
        return core.reply(id, msg_id, LVRM, code::FORBIDDEN, "not a member of this room", now_ms);
    }
    room.members.retain(|u| *u != auth.uid());
    core.mark_dirty(&name);
    if let Some(ev) = member(core, &name, LEFT, auth.uid(), Status::Ok, 0, now_ms) {
        tell_members(core, &name, &ev, None);
    }
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: LVRM, reason: "left" });
}

/// lsrm: every room's name and member count, nothing else.
pub fn list(core: &mut Core, id: ConnId, _auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<ListRooms>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let entries: Vec<RoomListEntry> = core
        .rooms
        .iter()
        .take(LIST_MAX)
        .map(|r| {
            let mut e = RoomListEntry::new(Status::Pending, code::OK, msg_id, now_ms);
            let _ = e.set_room(&r.name);
            e.members.set(r.members.len() as u32);
            e
        })
        .collect();
    for e in &entries {
        core.send(id, e);
    }
    let reason = if core.rooms.len() > LIST_MAX { "list truncated to the first 1000 rooms" } else { "end of list" };
    core.reply_done(id, msg_id, LSRM, reason, now_ms);
}

/// whor: the members of a room the caller is in, with online state.
pub fn who(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<WhoRoom>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, WHOR, m.room(), now_ms) else { return };
    let Some(room) = core.rooms.get(&name) else {
        return core.reply(id, msg_id, WHOR, code::NOT_FOUND, "no such room", now_ms);
    };
    if !room.is_member(auth.uid()) {
        return core.reply(id, msg_id, WHOR, code::FORBIDDEN, "not a member of this room", now_ms);
    }
    for uid in room.members.clone() {
        if let Some(ev) = member(core, &name, LISTED, uid, Status::Pending, msg_id, now_ms) {
            core.send(id, &ev);
        }
    }
    core.reply_done(id, msg_id, WHOR, "end of list", now_ms);
}

/// Users listed at most by one `whoa` answer.
const ONLINE_MAX: usize = 1000;

/// whoa: the users online now that share a room or a DM channel with the
/// caller, by name (each once, with how many rooms and whether a contact),
/// then a done. Only what the caller could learn anyway (room members'
/// presence through `whor`, contacts through their answers).
pub fn online(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<WhoOnline>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let me = auth.uid();
    // uid -> (rooms shared, contact)
    let mut peers: std::collections::BTreeMap<u64, (u16, bool)> = std::collections::BTreeMap::new();
    for room in core.rooms.iter().filter(|r| r.is_member(me)) {
        for &uid in room.members.iter().filter(|&&u| u != me) {
            let e = peers.entry(uid).or_default();
            e.0 = e.0.saturating_add(1);
        }
    }
    for uid in core.mail.contacts.of(me) {
        peers.entry(uid).or_default().1 = true;
    }
    let mut listed: Vec<(String, u64, u16, bool)> = peers
        .into_iter()
        .filter(|(uid, _)| !core.sessions_of(*uid).is_empty())
        .filter_map(|(uid, (rooms, contact))| {
            let name = core.accounts.by_uid(uid)?.username().ok()?.to_owned();
            Some((name, uid, rooms, contact))
        })
        .collect();
    listed.sort();
    for (name, uid, rooms, contact) in listed.into_iter().take(ONLINE_MAX) {
        let mut ev = OnlineUser::new(Status::Pending, code::OK, msg_id, now_ms);
        ev.uid.set(uid);
        let _ = ev.set_name(&name);
        ev.rooms.set(rooms);
        ev.contact = u8::from(contact);
        core.send(id, &ev);
    }
    core.reply_done(id, msg_id, WHOA, "end of list", now_ms);
}

/// dlrm: the owner removes the room, its file and its history.
pub fn delete(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<DeleteRoom>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(name) = room_name(core, id, msg_id, DLRM, m.room(), now_ms) else { return };
    let Some(owner) = core.rooms.get(&name).map(|r| r.owner) else {
        return core.reply(id, msg_id, DLRM, code::NOT_FOUND, "no such room", now_ms);
    };
    if owner != auth.uid() {
        return core.reply(id, msg_id, DLRM, code::FORBIDDEN, "only the owner can delete a room", now_ms);
    }
    let mut ev = RoomDeleted::new(Status::Ok, code::OK, 0, now_ms);
    let _ = ev.set_room(&name);
    tell_members(core, &name, &ev, Some(id));
    core.rooms.remove(&name);
    core.mark_deleted(&name);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: DLRM, reason: "room deleted" });
}
