//! Room moderation, message removal, the list of users and account
//! deletion: the client's side of PROTOCOL.md §6 ("Moderation") and §5
//! ("Deleting an account").
//!
//! Invariant: a room password change is sent only as a fresh salt and the
//! verifier of the new auth key (the password and the content key never
//! leave), and the new keys replace the stored ones only once the server
//! agreed; a removal from a room (kick, ban, password change) drops the
//! stored key at once, so nothing later is shown as that room's; an
//! account deletion sends only the two derived secrets, like a login, and
//! forgets the remembered ones once the server agreed.

use std::collections::VecDeque;

use sotto::crypto;
use sotto::opcodes::{
    DeleteAccount, DmUnsend, ListUsers, RoomKick, RoomKicked, RoomOwner, RoomOwnerChanged, RoomRekey, RoomRekeyed,
    RoomRemoveMessage, RoomTombstone, RoomUnban, StatusReply, UserEntry,
};
use sotto::room::{self as rooms, RoomKeys};
use sotto::wire::{self, code, Message, Status};

use super::room::{canonical_room, canonical_user, Member, RoomEvent, PARTS_MAX};
use super::{deadline, refused, too_long, validate, Event, Failure, InFlight, Session};

/// DM ids this run sent, and to whom (UID), for `/unsend ID`; the oldest go first beyond.
pub(super) const SENT_MAX: usize = 4096;

/// What moderation and deletion bring, as the front ends show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModEvent {
    /// The owner removed you from a room (its key is forgotten).
    Kicked {
        /// Room name.
        room: String,
        /// The owner.
        by: String,
        /// The owner's reason (may be empty).
        reason: String,
        /// Your joins are refused too.
        banned: bool,
    },
    /// The owner changed the room password: you are out until you join with the new one (the old key is forgotten).
    PasswordChanged {
        /// Room name.
        room: String,
        /// The owner.
        by: String,
    },
    /// A room you are in has a new owner.
    OwnerChanged {
        /// Room name.
        room: String,
        /// The new owner.
        owner: String,
    },
    /// A kept room message was removed: mark it deleted where it is shown.
    MessageDeleted {
        /// Room name.
        room: String,
        /// The message's id (PROTOCOL.md §6, message ids).
        id: u64,
        /// Its sender's pinned name, or `uid:<16 hex>`.
        from: String,
        /// Who removed it, likewise.
        by: String,
        /// In the history after a join (else live).
        history: bool,
    },
    /// Your message was withdrawn (`/unsend`): a DM (room None) or a room message.
    Unsent {
        /// Its id.
        id: u64,
        /// The room, for a room message.
        room: Option<String>,
    },
}

impl ModEvent {
    /// The room this event takes you out of (its key is gone), if any.
    pub fn removed_from(&self) -> Option<&str> {
        match self {
            ModEvent::Kicked { room, .. } | ModEvent::PasswordChanged { room, .. } => Some(room),
            _ => None,
        }
    }

    /// The event in words, for people (names neutralised by the front end).
    pub fn line(&self) -> String {
        let id = crate::command::dm_id;
        match self {
            ModEvent::Kicked { room, by, reason, banned } => {
                let how = if *banned { "banned you from" } else { "removed you from" };
                let why = if reason.is_empty() { String::new() } else { format!(": {reason}") };
                format!("{by} {how} room {room}{why}")
            }
            ModEvent::PasswordChanged { room, by } => {
                format!("{by} changed the password of room {room}: /join {room} with the new password to read on")
            }
            ModEvent::OwnerChanged { room, owner } => format!("{owner} now owns room {room}"),
            ModEvent::MessageDeleted { room, id: m, from, by, .. } => {
                format!("[{room}] message {} from {from} was deleted by {by}", id(*m))
            }
            ModEvent::Unsent { id: m, room: None } => format!("message {} withdrawn: it will not be delivered", id(*m)),
            ModEvent::Unsent { id: m, room: Some(room) } => format!("[{room}] message {} deleted", id(*m)),
        }
    }
}

/// A moderation or account request waiting for its answer.
pub(super) enum Pending {
    Kick { room: String, ban: bool },
    Unban { room: String },
    Owner { room: String },
    Rekey { room: String, keys: RoomKeys },
    Remove { room: String, id: u64 },
    Unsend { id: u64 },
    Users { list: Vec<Member> },
    DeleteAccount,
}

impl Pending {
    pub(super) fn cmd(&self) -> &'static str {
        match self {
            Pending::Kick { ban: false, .. } => "room-kick",
            Pending::Kick { ban: true, .. } => "room-ban",
            Pending::Unban { .. } => "room-unban",
            Pending::Owner { .. } => "room-owner",
            Pending::Rekey { .. } => "room-password",
            Pending::Remove { .. } | Pending::Unsend { .. } => "unsend",
            Pending::Users { .. } => "users",
            Pending::DeleteAccount => "delete-account",
        }
    }
}

/// A message id as typed: 1 to 16 hex digits.
fn parse_id(cmd: &str, id: &str) -> Result<u64, Failure> {
    let ok = !id.is_empty() && id.len() <= 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
        .ok_or_else(|| Failure::new(cmd, 400, "a message id is 16 hex digits, as its events show it"))
}

/// A user name as typed (`@bob` or `bob`), normalised.
fn user_name(cmd: &str, user: &str) -> Result<String, Failure> {
    let raw = user.strip_prefix('@').unwrap_or(user);
    sotto::account::normalize_username(raw).map_err(|e| Failure::new(cmd, 400, e.to_string()))
}

impl Session {
    fn start_mod(&mut self, id: u64, now_ms: u64, what: Pending) {
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: super::Pending::Mod(what) });
    }

    /// `/room-kick ROOM USER [REASON]` and `/room-ban ROOM USER [REASON]` (rmkk).
    pub fn room_kick(&mut self, room: &str, user: &str, reason: &str, ban: bool, now_ms: u64) -> Result<(), Failure> {
        let cmd = if ban { "room-ban" } else { "room-kick" };
        let room = self.room_request(cmd, room)?;
        let user = user_name(cmd, user)?;
        let id = self.take_id();
        let mut m = RoomKick::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long(cmd, e))?;
        m.set_user(&user).map_err(|e| too_long(cmd, e))?;
        m.set_reason(reason).map_err(|_| Failure::new(cmd, 400, "the reason is at most 64 bytes"))?;
        m.ban = u8::from(ban);
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Kick { room, ban });
        Ok(())
    }

    /// `/room-unban ROOM USER` (rmub).
    pub fn room_unban(&mut self, room: &str, user: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "room-unban";
        let room = self.room_request(cmd, room)?;
        let user = user_name(cmd, user)?;
        let id = self.take_id();
        let mut m = RoomUnban::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long(cmd, e))?;
        m.set_user(&user).map_err(|e| too_long(cmd, e))?;
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Unban { room });
        Ok(())
    }

    /// `/room-owner ROOM USER` (rmow).
    pub fn room_owner(&mut self, room: &str, user: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "room-owner";
        let room = self.room_request(cmd, room)?;
        let user = user_name(cmd, user)?;
        let id = self.take_id();
        let mut m = RoomOwner::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long(cmd, e))?;
        m.set_user(&user).map_err(|e| too_long(cmd, e))?;
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Owner { room });
        Ok(())
    }

    /// `/room-password ROOM PASSWORD` (rmpw): a fresh salt and the verifier of
    /// the new auth key; the new keys are stored once the server agreed.
    pub fn room_password(&mut self, room: &str, password: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "room-password";
        let room = self.room_request(cmd, room)?;
        rooms::check_password(password).map_err(|e| Failure::new(cmd, 400, e.to_string()))?;
        let salt: [u8; 16] = crypto::random();
        let keys = rooms::derive(&room, password, &salt).map_err(|e| Failure::new(cmd, 500, e.to_string()))?;
        let id = self.take_id();
        let mut m = RoomRekey::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long(cmd, e))?;
        m.salt = salt;
        m.verifier = rooms::verifier(&keys.auth);
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Rekey { room, keys });
        Ok(())
    }

    /// `/unsend ROOM ID` (rmrm): remove a kept room message (yours, or any as the owner).
    pub fn unsend_room(&mut self, room: &str, id: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "unsend";
        let room = self.room_request(cmd, room)?;
        let message = parse_id(cmd, id)?;
        let id = self.take_id();
        let mut m = RoomRemoveMessage::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long(cmd, e))?;
        m.message_id.set(message);
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Remove { room, id: message });
        Ok(())
    }

    /// `/unsend [@USER] ID` (unsd): withdraw a DM still waiting on the server.
    /// Without USER, the message must be one this client sent since it started.
    pub fn unsend_dm(&mut self, user: Option<&str>, id: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "unsend";
        let me = self.me.as_ref().ok_or_else(|| Failure::new(cmd, 401, "log in first"))?;
        self.check_idle(cmd)?;
        let dm_id = parse_id(cmd, id)?;
        let peer = match user {
            Some(user) => {
                let name = user_name(cmd, user)?;
                me.dm
                    .contacts
                    .get(&name)
                    .map(|c| c.uid)
                    .ok_or_else(|| Failure::new(cmd, 404, format!("{name} is not among your contacts")))?
            }
            None => me.dm.sent_to.iter().find(|(i, _)| *i == dm_id).map(|(_, uid)| *uid).ok_or_else(|| {
                Failure::new(cmd, 404, "no message with that id was sent from here since the start: /unsend @USER ID")
            })?,
        };
        let id = self.take_id();
        let mut m = DmUnsend::request(id, now_ms);
        m.peer_uid.set(peer);
        m.dm_id.set(dm_id);
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Unsend { id: dm_id });
        Ok(())
    }

    /// `/users` (lsus): the users the server lets you see, with their online state.
    pub fn list_users(&mut self, now_ms: u64) -> Result<(), Failure> {
        if self.me.is_none() {
            return Err(Failure::new("users", 401, "log in first"));
        }
        self.check_idle("users")?;
        let id = self.take_id();
        let mut m = ListUsers::request(id, now_ms);
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::Users { list: Vec::new() });
        Ok(())
    }

    /// `/delete-account PASSWORD W1 W2 W3` (dlac): both secrets derived again, as at login.
    pub fn delete_account(&mut self, password: &str, passphrase: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "delete-account";
        let user = self.me.as_ref().map(|me| me.user.clone()).ok_or_else(|| Failure::new(cmd, 401, "log in first"))?;
        self.check_idle(cmd)?;
        let creds = validate(cmd, &user, password, passphrase, false)?;
        let id = self.take_id();
        let mut m = DeleteAccount::request(id, now_ms);
        m.auth_secret = *creds.auth;
        m.pass_secret = *creds.pass;
        self.queue(&mut m);
        self.start_mod(id, now_ms, Pending::DeleteAccount);
        Ok(())
    }

    /// The final `stat` of a moderation or account request.
    pub(super) fn complete_mod(&mut self, p: Pending, r: &StatusReply) -> Option<Event> {
        let ok =
            r.hdr.code.get() == code::OK && matches!(Status::from_u8(r.hdr.status), Some(Status::Ok | Status::Done));
        let cmd = p.cmd();
        let done = |room| Some(Event::Done { cmd, room, id: None });
        match p {
            Pending::Kick { room, .. } | Pending::Unban { room } | Pending::Owner { room } if ok => done(room),
            Pending::Rekey { room, keys } if ok => {
                self.me.as_mut()?.keyring.insert(&room, keys);
                done(room)
            }
            Pending::Remove { room, id } if ok => {
                Some(Event::Room(RoomEvent::Moderation(ModEvent::Unsent { id, room: Some(room) })))
            }
            Pending::Unsend { id } if ok => {
                Some(Event::Room(RoomEvent::Moderation(ModEvent::Unsent { id, room: None })))
            }
            Pending::Users { list } if ok => Some(Event::Room(RoomEvent::Users(list))),
            Pending::DeleteAccount if ok => {
                // Nothing to log in with any more.
                self.remembered = None;
                let user = self.me.as_ref().map(|me| me.user.clone()).unwrap_or_default();
                Some(Event::AccountDeleted { user })
            }
            p => Some(Event::Failed(refused(p.cmd(), r))),
        }
    }

    /// `rkck`: the owner removed you from a room; its key goes.
    pub(super) fn handle_kicked(&mut self, m: &RoomKicked) -> Option<Event> {
        self.me.as_ref()?;
        let (room, by) = (canonical_room(m.room()), canonical_user(m.by()));
        self.ack(m.seq.get());
        let (Some(room), Some(by)) = (room, by) else {
            return Some(Event::Notice("ignoring an rkck (room kicked) with a malformed name".into()));
        };
        self.me.as_mut()?.keyring.remove(&room);
        let reason = m.reason().unwrap_or_default().to_owned();
        Some(Event::Room(RoomEvent::Moderation(ModEvent::Kicked { room, by, reason, banned: m.ban != 0 })))
    }

    /// `rkey`: the room's password changed; the old key is of no use any more.
    pub(super) fn handle_rekeyed(&mut self, m: &RoomRekeyed) -> Option<Event> {
        self.me.as_ref()?;
        let (room, by) = (canonical_room(m.room()), canonical_user(m.by()));
        self.ack(m.seq.get());
        let (Some(room), Some(by)) = (room, by) else {
            return Some(Event::Notice("ignoring an rkey (room rekeyed) with a malformed name".into()));
        };
        self.me.as_mut()?.keyring.remove(&room);
        Some(Event::Room(RoomEvent::Moderation(ModEvent::PasswordChanged { room, by })))
    }

    /// `rown`: a room has a new owner.
    pub(super) fn handle_owner_changed(&mut self, m: &RoomOwnerChanged) -> Option<Event> {
        self.me.as_ref()?;
        let (Some(room), Some(owner)) = (canonical_room(m.room()), canonical_user(m.owner())) else {
            return Some(Event::Notice("ignoring an rown (room owner) with a malformed name".into()));
        };
        Some(Event::Room(RoomEvent::Moderation(ModEvent::OwnerChanged { room, owner })))
    }

    /// `rtmb`: a kept room message was removed (live, or in a join's history).
    pub(super) fn handle_tombstone(&mut self, m: &RoomTombstone) -> Option<Event> {
        let me = self.me.as_ref()?;
        let Some(room) = canonical_room(m.room()) else {
            return Some(Event::Notice("ignoring an rtmb (room tombstone) with a malformed room name".into()));
        };
        let name = |uid: u64| me.pins.by_uid(uid).map_or_else(|| format!("uid:{uid:016x}"), |(n, _)| n.to_string());
        let (from, by) = (name(m.sender_uid.get()), name(m.by_uid.get()));
        let ev = ModEvent::MessageDeleted { room, id: m.message_id.get(), from, by, history: m.history != 0 };
        Some(Event::Room(RoomEvent::Moderation(ev)))
    }

    /// `usrs`: one user of a `/users` answer.
    pub(super) fn handle_user_entry(&mut self, m: &UserEntry, ours: bool) -> Option<Event> {
        let Some(name) = canonical_user(m.name()) else {
            return Some(Event::Notice("ignoring a usrs (user entry) with a malformed name".into()));
        };
        match self.in_flight.as_mut().map(|f| &mut f.what) {
            Some(super::Pending::Mod(Pending::Users { list })) if ours && list.len() < PARTS_MAX => {
                list.push(Member { name, online: m.online != 0 });
                None
            }
            _ => Some(Event::Notice("ignoring a usrs (user entry) for no pending /users".into())),
        }
    }
}

/// Remembers that DM `id` went to `uid` (for `/unsend ID`), within [`SENT_MAX`].
pub(super) fn note_sent(sent: &mut VecDeque<(u64, u64)>, id: u64, uid: u64) {
    if sent.len() >= SENT_MAX {
        sent.pop_front();
    }
    sent.push_back((id, uid));
}

/// The id of a room message this client sealed (`frame` as sent), as others see it.
pub(super) fn said_id(room: &str, sender_uid: u64, frame: &super::Frame) -> Option<u64> {
    let ts = wire::header(&frame.bytes).ok()?.timestamp.get();
    Some(rooms::message_id(&rooms::Context { room, sender_uid, msg_id: frame.id, sent_time: ts }))
}
