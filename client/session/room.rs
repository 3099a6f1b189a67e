//! Rooms, the client's side of PROTOCOL.md §6 (DESIGN §6): the room requests,
//! the collection of their multi-part answers, key pinning, and the checks on
//! every room message that arrives.
//!
//! Invariant: a room message is reported `verified` only when its signature
//! verifies with the sender's pinned, unchanged identity key and its tag
//! verifies with the room's content key; anything else is still reported, but
//! flagged, never as genuine. Keys the server lists are pinned on first sight
//! and never replaced. Room passwords and keys are never sent, only the auth key.

use std::collections::{BTreeSet, VecDeque};

use sotto::account;
use sotto::crypto;
use sotto::identity::{self, Signer, RSA_BYTES};
use sotto::opcodes::{
    CreateRoom, DeleteRoom, JoinRoom, LeaveRoom, ListRooms, OnlineUser, ReceiveRoomMessageHead, RoomDeleted,
    RoomListEntry, RoomMember, RoomSalt, RoomSaltRequest, SendRoomMessageHead, StatusReply, WhoOnline, WhoRoom, SRMS,
};
use sotto::room::{self as rooms, Context, RoomKeys, Sealed, TEXT_MAX};
use sotto::wire::{self, code, Message, Status};
use zerocopy::FromZeros;
use zeroize::Zeroizing;

use super::direct::{Dm, DmLocal};
use super::{deadline, refused, too_long, Event, Failure, Frame, InFlight, Session};
use crate::fresh::Verdict;
use crate::keyring::Keyring;
use crate::pins::{Binding, Pins, Seen};

/// `RoomMember.kind` (opcodes.toml `mbrs`).
const LISTED: u8 = 0;
const JOINED: u8 = 1;
const LEFT: u8 = 2;
const FORMER: u8 = 3;
/// Room messages held while the keys of an unknown sender are asked for; beyond, they go out unheld.
const HELD_MAX: usize = 1024;

/// A room message as received (`rvr*` of any class): the family's fields and the body.
#[derive(Clone)]
pub(super) struct RoomMsg {
    pub(super) head: ReceiveRoomMessageHead,
    pub(super) body: Vec<u8>,
}
/// Parts of one list answer kept (rooms of `/list`, members of a join or
/// `/who`): a room holds at most 65,536 members on sottod; past it the server
/// is not believed, and memory stays bounded.
pub const PARTS_MAX: usize = 65_536;
/// What an undecryptable message says instead of its text.
pub const UNDECRYPTABLE: &str = "could not decrypt";

/// What the client loads at login and hands to the session (see `App`).
#[derive(Default)]
pub struct Local {
    /// The identity key that signs room messages, with the user's X25519 public
    /// key; `None` when the key file is not on this machine.
    pub identity: Option<(Signer, [u8; 32])>,
    /// The pinned keys of other users.
    pub pins: Pins,
    /// The keys of the rooms the user is in.
    pub keyring: Keyring,
    /// Direct messages: the contacts, the messages kept, the outbox.
    pub dm: DmLocal,
}

/// The logged-in user and its local state.
pub(super) struct Me {
    pub(super) uid: u64,
    pub(super) user: String,
    pub(super) signer: Option<Signer>,
    pub(super) pins: Pins,
    pub(super) keyring: Keyring,
    /// Names whose key change (or unverifiable keys) was reported this session.
    announced: BTreeSet<String>,
    /// Rooms whose members were asked for because of an unknown sender.
    refreshed: BTreeSet<String>,
    /// Room messages waiting for that answer, in arrival order.
    held: VecDeque<RoomMsg>,
    /// The room to ask for next.
    pub(super) refresh: Option<String>,
    /// Room lines waiting to be sent (disconnected, or paced after a 429), in
    /// order, sealed when they were typed.
    pub(super) says: VecDeque<(String, Frame)>,
    /// After a 429: no room line before this time.
    say_after_ms: u64,
    /// Direct messages (session/direct.rs).
    pub(super) dm: Dm,
}

impl Me {
    pub(super) fn new(uid: u64, user: &str) -> Me {
        Me {
            uid,
            user: user.to_string(),
            signer: None,
            pins: Pins::new(),
            keyring: Keyring::new(),
            announced: BTreeSet::new(),
            refreshed: BTreeSet::new(),
            held: VecDeque::new(),
            refresh: None,
            says: VecDeque::new(),
            say_after_ms: 0,
            dm: Dm::default(),
        }
    }
}

/// A room member as shown: `{"name":N,"online":bool}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// User name.
    pub name: String,
    /// Has a session now.
    pub online: bool,
}

/// A user online, in the answer to `/who` without a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineInfo {
    /// User name.
    pub name: String,
    /// Rooms shared with you.
    pub rooms: u16,
    /// An accepted DM contact on the server.
    pub contact: bool,
}

/// A room in a list: `{"name":R,"members":N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Number of members.
    pub members: u32,
}

/// A room message after the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMessage {
    /// Room name.
    pub room: String,
    /// The message's id (PROTOCOL.md §6, message ids): what `/unsend ROOM ID` takes.
    pub id: u64,
    /// The sender's pinned name, or `uid:<16 hex>` when unknown.
    pub from: String,
    /// The text; empty when it could not be decrypted.
    pub text: String,
    /// The sender's timestamp (signed), Unix ms.
    pub ts: u64,
    /// Signature (pinned, unchanged key) and tag both verified.
    pub verified: bool,
    /// Replayed from the kept history after a join.
    pub history: bool,
    /// A live message that was shown before, or signed before what this client
    /// remembers of its sender: replayed, never new.
    pub replayed: bool,
    /// Why there is no text ([`UNDECRYPTABLE`]).
    pub error: Option<&'static str>,
}

/// What happens in rooms, as the front ends show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A line for `room` waits: the connection is lost, or the server's rate
    /// limit paces it; it is sent, in order, as soon as it can be.
    Waiting {
        /// Room name.
        room: String,
        /// Lines waiting in all.
        queued: usize,
    },
    /// A join succeeded; current members in the server's order (self included).
    Joined {
        /// Room name.
        room: String,
        /// Current members.
        members: Vec<Member>,
    },
    /// A room message, live or from the history.
    Message(RoomMessage),
    /// Someone joined a room the user is in.
    MemberJoined {
        /// Room name.
        room: String,
        /// The newcomer.
        name: String,
    },
    /// Someone left a room the user is in.
    MemberLeft {
        /// Room name.
        room: String,
        /// Who left.
        name: String,
    },
    /// Answer to `rooms`.
    Rooms(Vec<RoomInfo>),
    /// Answer to `/who` without a room: who is online of the users sharing a room or a DM channel.
    Online(Vec<OnlineInfo>),
    /// Answer to `who`.
    Who {
        /// Room name.
        room: String,
        /// Its members.
        members: Vec<Member>,
    },
    /// The owner deleted a room the user was in; its key is forgotten.
    Deleted {
        /// Room name.
        room: String,
    },
    /// The server listed other keys for a pinned user; the pin is kept.
    KeyChanged {
        /// The pinned user name.
        user: String,
    },
    /// Moderation: a kick, a ban, a password change, a new owner, a removed message.
    Moderation(super::ModEvent),
    /// Answer to `/users`: the users the server lets you see, by name.
    Users(Vec<Member>),
}

/// A room request waiting for its answer.
pub(super) enum Pending {
    Create {
        room: String,
        keys: RoomKeys,
    },
    /// Join step 1: the salt, to derive the keys from the password.
    Salt {
        room: String,
        password: Zeroizing<String>,
    },
    /// Join step 2: members, then the final `stat`.
    Join {
        room: String,
        keys: RoomKeys,
        stored: bool,
        members: Vec<Member>,
    },
    /// After a join's 200: the history arrives, then a `stat` done (same msg_id) ends it.
    Settle {
        room: String,
    },
    /// With the request as sealed, to send again unchanged after a 429 or a
    /// lost connection (a copy the server did store shows as a replay).
    Say {
        room: String,
        frame: Frame,
    },
    Leave {
        room: String,
    },
    List {
        rooms: Vec<RoomInfo>,
    },
    /// `/who` without a room (whoa): the users online sharing a room or a DM channel.
    Online {
        users: Vec<OnlineInfo>,
    },
    Who {
        room: String,
        members: Vec<Member>,
    },
    /// A `whor` the client sends itself to learn the keys of an unknown sender.
    Refresh {
        room: String,
    },
    Delete {
        room: String,
    },
}

impl Pending {
    pub(super) fn cmd(&self) -> &'static str {
        match self {
            Pending::Create { .. } => "create",
            Pending::Salt { .. } | Pending::Join { .. } | Pending::Settle { .. } => "join",
            Pending::Say { .. } => "say",
            Pending::Leave { .. } => "leave",
            Pending::List { .. } => "rooms",
            Pending::Online { .. } => "who",
            Pending::Who { .. } | Pending::Refresh { .. } => "who",
            Pending::Delete { .. } => "delete",
        }
    }

    fn room(&self) -> Option<&str> {
        match self {
            Pending::List { .. } | Pending::Online { .. } => None,
            Pending::Create { room, .. }
            | Pending::Salt { room, .. }
            | Pending::Join { room, .. }
            | Pending::Settle { room }
            | Pending::Say { room, .. }
            | Pending::Leave { room }
            | Pending::Who { room, .. }
            | Pending::Refresh { room }
            | Pending::Delete { room } => Some(room),
        }
    }
}

fn copy_keys(k: &RoomKeys) -> RoomKeys {
    RoomKeys { auth: k.auth.clone(), content: k.content.clone() }
}

/// The listed keys bind together: a well-formed identity key signed this
/// deployment, the UID, the name and enc_pub (PROTOCOL.md §5).
pub(super) fn keys_verify(uid: u64, name: &str, id_pub: &[u8; RSA_BYTES], enc_pub: &[u8; 32], enc_sig: &[u8]) -> bool {
    let binding = account::enc_key_binding(&account::deployment_id(), uid, name, enc_pub);
    identity::from_modulus(id_pub).is_ok_and(|k| identity::verify(&k, &binding, enc_sig))
}

/// A user name from the server, as it must be: already canonical.
pub(super) fn canonical_user(name: Result<&str, sotto::wire::WireError>) -> Option<String> {
    let name = name.ok()?;
    account::normalize_username(name).ok().filter(|n| n == name)
}

/// A room name from the server, case-folded and checked.
pub(super) fn canonical_room(name: Result<&str, sotto::wire::WireError>) -> Option<String> {
    rooms::normalize_name(name.ok()?).ok()
}

impl Session {
    /// Hands over what was loaded at login: the identity key, the pins, the room
    /// keys and the direct-message state; the outbox is then sent again.
    /// The user's own keys are pinned too, so a server that lists others for it is noticed.
    pub fn install(&mut self, local: Local) {
        let Some(me) = self.me.as_mut() else { return };
        me.pins = local.pins;
        me.keyring = local.keyring;
        me.dm = Dm::from(local.dm);
        self.start_resend();
        let Some(me) = self.me.as_mut() else { return };
        if let Some((signer, enc_pub)) = local.identity {
            if let Ok(id_pub) = identity::modulus(signer.public()) {
                let (uid, user) = (me.uid, me.user.clone());
                me.signer = Some(signer);
                self.pin(uid, &user, &id_pub, &enc_pub, None);
            }
        }
    }

    /// The pins, once after each change (to be saved).
    pub fn dirty_pins(&mut self) -> Option<&Pins> {
        let me = self.me.as_mut()?;
        me.pins.take_dirty().then_some(&me.pins)
    }

    /// The room keys, once after each change (to be saved).
    pub fn dirty_keyring(&mut self) -> Option<&Keyring> {
        let me = self.me.as_mut()?;
        me.keyring.take_dirty().then_some(&me.keyring)
    }

    /// True when the keys of `room` are stored (the user is in it, as far as this client knows).
    pub fn has_room(&self, room: &str) -> bool {
        let room = rooms::normalize_name(room).unwrap_or_default();
        self.me.as_ref().is_some_and(|me| me.keyring.get(&room).is_some())
    }

    /// The rooms whose keys are stored (read only; those this client knows it is in), in name order.
    pub fn rooms(&self) -> Vec<String> {
        self.me.as_ref().map(|me| me.keyring.names().map(str::to_string).collect()).unwrap_or_default()
    }

    /// `create ROOM PASSWORD` (crms): a fresh salt, the verifier of the derived auth key.
    pub fn create_room(&mut self, room: &str, password: &str, now_ms: u64) -> Result<(), Failure> {
        let room = self.room_request("create", room)?;
        rooms::check_password(password).map_err(|e| Failure::new("create", 400, e.to_string()))?;
        let salt: [u8; 16] = crypto::random();
        let keys = rooms::derive(&room, password, &salt).map_err(|e| Failure::new("create", 500, e.to_string()))?;
        let id = self.take_id();
        let mut m = CreateRoom::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long("create", e))?;
        m.salt = salt;
        m.verifier = rooms::verifier(&keys.auth);
        self.queue(&mut m);
        self.start(id, now_ms, Pending::Create { room, keys });
        Ok(())
    }

    /// `join ROOM PASSWORD` (gslt, then jrms), or `join ROOM` with the stored keys (jrms only).
    pub fn join_room(&mut self, room: &str, password: Option<&str>, now_ms: u64) -> Result<(), Failure> {
        let room = self.room_request("join", room)?;
        let Some(password) = password else {
            let stored = self.me.as_ref().and_then(|me| me.keyring.get(&room)).map(copy_keys);
            let Some(keys) = stored else {
                return Err(Failure::new(
                    "join",
                    400,
                    format!("no stored key for room {room}: join it with its password"),
                ));
            };
            self.send_join(room, keys, true, now_ms);
            return Ok(());
        };
        if password.is_empty() {
            return Err(Failure::new("join", 400, "the room password must not be empty"));
        }
        let id = self.take_id();
        let mut m = RoomSaltRequest::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long("join", e))?;
        self.queue(&mut m);
        self.start(id, now_ms, Pending::Salt { room, password: Zeroizing::new(password.to_string()) });
        Ok(())
    }

    /// `say ROOM TEXT` (srm*): sealed with the room's content key, signed with
    /// the identity key; while disconnected, busy or paced by a 429 it waits, in order.
    pub fn say(&mut self, room: &str, text: &str, now_ms: u64) -> Result<(), Failure> {
        // Not `room_request`: a line typed while disconnected or busy waits instead.
        if self.me.is_none() {
            return Err(Failure::new("say", 401, "log in first"));
        }
        let room = rooms::normalize_name(room).map_err(|e| Failure::new("say", 400, e.to_string()))?;
        let me = self.me.as_ref().ok_or_else(|| Failure::new("say", 401, "log in first"))?;
        if me.keyring.get(&room).is_none() {
            return Err(Failure::new("say", 403, format!("not in room {room}; /join it first")));
        }
        if text.len() > TEXT_MAX {
            return Err(Failure::new(
                "say",
                413,
                format!("message too long ({} bytes, at most {TEXT_MAX})", text.len()),
            ));
        }
        if me.signer.is_none() {
            return Err(Failure::new(
                "say",
                403,
                "no identity key on this machine to sign with: room messages can only be sent where the account's keys are",
            ));
        }
        let id = self.take_id();
        let frame = self.seal_message(&room, text, id, now_ms)?;
        let me = self.me.as_mut().ok_or_else(|| Failure::new("say", 401, "log in first"))?;
        if self.offline || !me.says.is_empty() || self.in_flight.is_some() || now_ms < me.say_after_ms {
            // Kept, in order, and sent by `poll_says` when it can be.
            me.says.push_back((room.clone(), frame));
            let queued = me.says.len();
            self.events.push_back(Event::Room(RoomEvent::Waiting { room, queued }));
            return Ok(());
        }
        self.send_say(room, frame, now_ms);
        Ok(())
    }

    fn send_say(&mut self, room: String, frame: Frame, now_ms: u64) {
        // The sealed request (no secret in it) stays here to be sent again unchanged.
        self.outbox.push_back(Zeroizing::new(frame.bytes.clone()));
        self.start(frame.id, now_ms, Pending::Say { room, frame });
    }

    /// Sends the next waiting room line once connected, idle, and allowed by the rate limit.
    pub(super) fn poll_says(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || self.offline {
            return;
        }
        let Some(me) = self.me.as_mut() else { return };
        if now_ms < me.say_after_ms {
            return;
        }
        let Some((room, frame)) = me.says.pop_front() else { return };
        self.send_say(room, frame, now_ms);
    }

    /// A line that was in flight waits again, first in line (lost connection, 429).
    pub(super) fn requeue_say(&mut self, room: String, frame: Frame, not_before_ms: u64) {
        let Some(me) = self.me.as_mut() else { return };
        me.says.push_front((room.clone(), frame));
        me.say_after_ms = me.say_after_ms.max(not_before_ms);
        let queued = me.says.len();
        self.events.push_back(Event::Room(RoomEvent::Waiting { room, queued }));
    }

    fn seal_message(&self, room: &str, text: &str, id: u64, now_ms: u64) -> Result<Frame, Failure> {
        let fail = |why: String| Failure::new("say", 500, why);
        let me = self.me.as_ref().ok_or_else(|| Failure::new("say", 401, "log in first"))?;
        let (Some(keys), Some(signer)) = (me.keyring.get(room), me.signer.as_ref()) else {
            return Err(fail("room key or identity key missing".into()));
        };
        let ctx = Context { room, sender_uid: me.uid, msg_id: id, sent_time: now_ms };
        let (_, body) = crate::transfer::payload_body(text).map_err(|e| fail(e.to_string()))?;
        let sealed = rooms::seal_body(&keys.content, &ctx, &body).map_err(|e| fail(e.to_string()))?;
        let signature = signer.sign(&rooms::signed_bytes(&ctx, &sealed)).map_err(|e| fail(e.to_string()))?;
        let mut head = SendRoomMessageHead::new_zeroed();
        head.set_room(room).map_err(|e| too_long("say", e))?;
        head.iv = sealed.iv;
        head.tag = sealed.tag;
        head.signature = signature;
        let bytes =
            wire::encode_classed(SRMS, id, now_ms, &head, &sealed.ciphertext).map_err(|e| too_long("say", e))?;
        Ok(Frame { id, bytes })
    }

    /// `leave ROOM` (lvrm); the stored keys are dropped once the server agrees.
    pub fn leave_room(&mut self, room: &str, now_ms: u64) -> Result<(), Failure> {
        let room = self.room_request("leave", room)?;
        let id = self.take_id();
        let mut m = LeaveRoom::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long("leave", e))?;
        self.queue(&mut m);
        self.start(id, now_ms, Pending::Leave { room });
        Ok(())
    }

    /// `rooms` (lsrm): every room's name and member count.
    pub fn list_rooms(&mut self, now_ms: u64) -> Result<(), Failure> {
        if self.me.is_none() {
            return Err(Failure::new("rooms", 401, "log in first"));
        }
        self.check_idle("rooms")?;
        let id = self.take_id();
        let mut m = ListRooms::request(id, now_ms);
        self.queue(&mut m);
        self.start(id, now_ms, Pending::List { rooms: Vec::new() });
        Ok(())
    }

    /// `who ROOM` (whor): the members of a room the user is in.
    pub fn who_room(&mut self, room: &str, now_ms: u64) -> Result<(), Failure> {
        let room = self.room_request("who", room)?;
        self.send_who(room, false, now_ms)
    }

    /// `/who` without a room (whoa): who is online of the users sharing a room or a DM channel.
    pub fn who_online(&mut self, now_ms: u64) -> Result<(), Failure> {
        if self.me.is_none() {
            return Err(Failure::new("who", 401, "log in first"));
        }
        self.check_idle("who")?;
        let id = self.take_id();
        let mut m = WhoOnline::request(id, now_ms);
        self.queue(&mut m);
        self.start(id, now_ms, Pending::Online { users: Vec::new() });
        Ok(())
    }

    /// `delete ROOM` (dlrm): owner only.
    pub fn delete_room(&mut self, room: &str, now_ms: u64) -> Result<(), Failure> {
        let room = self.room_request("delete", room)?;
        let id = self.take_id();
        let mut m = DeleteRoom::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long("delete", e))?;
        self.queue(&mut m);
        self.start(id, now_ms, Pending::Delete { room });
        Ok(())
    }

    /// Logged in, nothing in flight, and a valid room name (canonical form returned).
    pub(super) fn room_request(&self, cmd: &str, room: &str) -> Result<String, Failure> {
        if self.me.is_none() {
            return Err(Failure::new(cmd, 401, "log in first"));
        }
        self.check_idle(cmd)?;
        rooms::normalize_name(room).map_err(|e| Failure::new(cmd, 400, e.to_string()))
    }

    fn start(&mut self, id: u64, now_ms: u64, what: Pending) {
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: super::Pending::Room(what) });
    }

    fn send_join(&mut self, room: String, keys: RoomKeys, stored: bool, now_ms: u64) {
        let id = self.take_id();
        let mut m = JoinRoom::request(id, now_ms);
        // NOTE: a canonical room name always fits its 32-byte field.
        let _ = m.set_room(&room);
        m.auth_key = *keys.auth;
        self.queue(&mut m);
        self.start(id, now_ms, Pending::Join { room, keys, stored, members: Vec::new() });
    }

    fn send_who(&mut self, room: String, refresh: bool, now_ms: u64) -> Result<(), Failure> {
        let id = self.take_id();
        let mut m = WhoRoom::request(id, now_ms);
        m.set_room(&room).map_err(|e| too_long("who", e))?;
        self.queue(&mut m);
        let what = if refresh { Pending::Refresh { room } } else { Pending::Who { room, members: Vec::new() } };
        self.start(id, now_ms, what);
        Ok(())
    }

    /// The final `stat` of a room request.
    pub(super) fn complete_room(&mut self, p: Pending, r: &StatusReply, now_ms: u64) -> Option<Event> {
        let ok =
            r.hdr.code.get() == code::OK && matches!(Status::from_u8(r.hdr.status), Some(Status::Ok | Status::Done));
        let me = self.me.as_mut()?;
        let done = |cmd, room| Some(Event::Done { cmd, room, id: None });
        match p {
            Pending::Create { room, keys } if ok => {
                me.keyring.insert(&room, keys);
                done("create", room)
            }
            Pending::Join { room, keys, members, .. } if ok => {
                me.keyring.insert(&room, keys);
                self.events.push_back(Event::Room(RoomEvent::Joined { room: room.clone(), members }));
                // The history follows, then a `stat` done with the same msg_id ends the join.
                self.start(r.hdr.msg_id.get(), now_ms, Pending::Settle { room });
                None
            }
            // The end of the history, or whatever answers the refresh: the request is over.
            Pending::Settle { .. } => None,
            Pending::Refresh { .. } => {
                self.release_held();
                None
            }
            Pending::Say { room, frame } if ok => {
                let id = super::moderation::said_id(&room, me.uid, &frame);
                Some(Event::Done { cmd: "say", room, id })
            }
            // Sending faster than the server allows: paced, never dropped.
            Pending::Say { room, frame } if r.hdr.code.get() == code::RATE_LIMITED => {
                let wait = u64::from(r.retry_after_ms.get()).max(1);
                self.requeue_say(room, frame, now_ms.saturating_add(wait));
                None
            }
            Pending::Leave { room } if ok => {
                me.keyring.remove(&room);
                done("leave", room)
            }
            Pending::List { rooms } if ok => Some(Event::Room(RoomEvent::Rooms(rooms))),
            Pending::Who { room, members } if ok => Some(Event::Room(RoomEvent::Who { room, members })),
            Pending::Online { users } if ok => Some(Event::Room(RoomEvent::Online(users))),
            Pending::Delete { room } if ok => {
                me.keyring.remove(&room);
                done("delete", room)
            }
            p => {
                let mut f = refused(p.cmd(), r);
                let room = p.room().unwrap_or_default();
                // The server has no such room (deleted while away), the stored
                // keys no longer open it, or a leave finds the user already out:
                // the local keys are of no use any more.
                let stale = matches!(
                    (&p, f.code),
                    (_, code::NOT_FOUND)
                        | (Pending::Join { stored: true, .. } | Pending::Leave { .. }, code::FORBIDDEN)
                );
                if stale && me.keyring.remove(room) {
                    f.message.push_str(&format!("; the stored key of room {room} was dropped"));
                }
                Some(Event::Failed(f))
            }
        }
    }

    /// `rslt`: derive the keys from the password and the salt, then join.
    pub(super) fn handle_salt(&mut self, m: &RoomSalt, ours: bool, now_ms: u64) -> Option<Event> {
        if !ours {
            return Some(Event::Notice("ignoring an rslt (room salt) for no pending join".into()));
        }
        let f = self.in_flight.take()?;
        match f.what {
            super::Pending::Room(Pending::Salt { room, password }) => {
                if canonical_room(m.room()).as_deref() != Some(room.as_str()) {
                    return Some(Event::Failed(Failure::new("join", 0, "the server sent the salt of another room")));
                }
                match rooms::derive(&room, &password, &m.salt) {
                    Ok(keys) => {
                        self.send_join(room, keys, false, now_ms);
                        None
                    }
                    Err(e) => Some(Event::Failed(Failure::new("join", 500, e.to_string()))),
                }
            }
            super::Pending::Room(Pending::Settle { .. }) => None,
            other => {
                Some(Event::Failed(Failure::new(other.cmd(), 0, "unexpected rslt (room salt) reply from the server")))
            }
        }
    }

    /// `mbrs`: part of a join or who answer (ours), or a joined/left event (msg_id 0).
    pub(super) fn handle_member(&mut self, m: &RoomMember, ours: bool) -> Option<Event> {
        self.me.as_ref()?;
        let (Some(room), Some(name)) = (canonical_room(m.room()), canonical_user(m.name())) else {
            return Some(Event::Notice("ignoring an mbrs (room member) with a malformed name".into()));
        };
        let uid = m.uid.get();
        if m.hdr.msg_id.get() == 0 {
            return match m.kind {
                JOINED => {
                    self.pin(uid, &name, &m.id_pub, &m.enc_pub, Some(&m.enc_sig));
                    Some(Event::Room(RoomEvent::MemberJoined { room, name }))
                }
                LEFT => Some(Event::Room(RoomEvent::MemberLeft { room, name })),
                k => Some(Event::Notice(format!("ignoring an mbrs (room member) event of kind {k}"))),
            };
        }
        if !ours || !matches!(m.kind, LISTED | FORMER) {
            return Some(Event::Notice(format!(
                "ignoring an mbrs (room member) of kind {} for no pending list",
                m.kind
            )));
        }
        self.pin(uid, &name, &m.id_pub, &m.enc_pub, Some(&m.enc_sig));
        let member = Member { name, online: m.online != 0 };
        match self.in_flight.as_mut().map(|f| &mut f.what) {
            Some(super::Pending::Room(Pending::Join { room: r, members, .. } | Pending::Who { room: r, members }))
                if *r == room =>
            {
                if m.kind != LISTED {
                    None
                } else if members.len() < PARTS_MAX {
                    members.push(member);
                    None
                } else {
                    Some(Event::Notice(format!("ignoring an mbrs (room member) past {PARTS_MAX} in one answer")))
                }
            }
            Some(super::Pending::Room(Pending::Refresh { room: r })) if *r == room => None,
            _ => Some(Event::Notice(format!("ignoring an mbrs (room member) of room {room} for another request"))),
        }
    }

    /// `rmls`: one room of a list answer.
    /// `onln`: one user of a `/who` without a room.
    pub(super) fn handle_online(&mut self, m: &OnlineUser, ours: bool) -> Option<Event> {
        let Some(name) = canonical_user(m.name()) else {
            return Some(Event::Notice("ignoring an onln (online user) with a malformed name".into()));
        };
        match self.in_flight.as_mut().map(|f| &mut f.what) {
            Some(super::Pending::Room(Pending::Online { users })) if ours && users.len() < PARTS_MAX => {
                users.push(OnlineInfo { name, rooms: m.rooms.get(), contact: m.contact != 0 });
                None
            }
            Some(super::Pending::Room(Pending::Online { .. })) if ours => {
                Some(Event::Notice(format!("ignoring an onln (online user) past {PARTS_MAX} in one answer")))
            }
            _ => Some(Event::Notice("ignoring an onln (online user) for no pending /who".into())),
        }
    }

    pub(super) fn handle_list_entry(&mut self, m: &RoomListEntry, ours: bool) -> Option<Event> {
        let Some(name) = canonical_room(m.room()) else {
            return Some(Event::Notice("ignoring an rmls (room list entry) with a malformed name".into()));
        };
        match self.in_flight.as_mut().map(|f| &mut f.what) {
            Some(super::Pending::Room(Pending::List { rooms })) if ours && rooms.len() < PARTS_MAX => {
                rooms.push(RoomInfo { name, members: m.members.get() });
                None
            }
            Some(super::Pending::Room(Pending::List { .. })) if ours => {
                Some(Event::Notice(format!("ignoring an rmls (room list entry) past {PARTS_MAX} in one answer")))
            }
            _ => Some(Event::Notice("ignoring an rmls (room list entry) for no pending list".into())),
        }
    }

    /// `rdel`: a room the user was in is gone; so are its keys.
    pub(super) fn handle_deleted(&mut self, m: &RoomDeleted) -> Option<Event> {
        let me = self.me.as_mut()?;
        let Some(room) = canonical_room(m.room()) else {
            return Some(Event::Notice("ignoring an rdel (room deleted) with a malformed name".into()));
        };
        me.keyring.remove(&room);
        Some(Event::Room(RoomEvent::Deleted { room }))
    }

    /// `rvr*`: checked and reported; held back, in order, while the keys of an unknown sender are asked for.
    pub(super) fn handle_room_message(&mut self, m: RoomMsg, now_ms: u64) -> Option<Event> {
        let me = self.me.as_mut()?;
        if !me.held.is_empty() && me.held.len() < HELD_MAX {
            me.held.push_back(m);
            return None;
        }
        if self.wants_refresh(&m.head) {
            if let Some(me) = self.me.as_mut() {
                me.held.push_back(m);
            }
            self.poll_refresh(now_ms);
            return None;
        }
        self.check_message(&m)
    }

    /// True (and noted) when `m` comes from an unknown sender in a room whose members were not asked for yet.
    fn wants_refresh(&mut self, m: &ReceiveRoomMessageHead) -> bool {
        let Some(me) = self.me.as_mut() else { return false };
        let Some(room) = canonical_room(m.room()) else { return false };
        if me.pins.by_uid(m.sender_uid.get()).is_some()
            || me.keyring.get(&room).is_none()
            || me.refreshed.contains(&room)
        {
            return false;
        }
        me.refreshed.insert(room.clone());
        me.refresh = Some(room);
        true
    }

    /// Sends the wanted members request once nothing else is in flight.
    pub(super) fn poll_refresh(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || self.offline {
            return;
        }
        if let Some(room) = self.me.as_mut().and_then(|me| me.refresh.take()) {
            if self.send_who(room, true, now_ms).is_err() {
                self.release_held();
            }
        }
    }

    /// Reports the held messages in order, until one needs another room's members.
    pub(super) fn release_held(&mut self) {
        loop {
            let Some(m) = self.me.as_mut().and_then(|me| me.held.pop_front()) else { return };
            if self.wants_refresh(&m.head) {
                if let Some(me) = self.me.as_mut() {
                    me.held.push_front(m);
                }
                return;
            }
            if let Some(ev) = self.check_message(&m) {
                self.events.push_back(ev);
            }
        }
    }

    /// Verifies the signature with the pinned key, opens the message with the
    /// room key, and flags a live message that was shown before or is older
    /// than what is remembered of its sender (`fresh`); a verified message is
    /// marked shown.
    fn check_message(&mut self, msg: &RoomMsg) -> Option<Event> {
        let me = self.me.as_mut()?;
        let m = &msg.head;
        let Some(room) = canonical_room(m.room()) else {
            return Some(Event::Notice("ignoring an rvr* (room message) with a malformed room name".into()));
        };
        let sender = m.sender_uid.get();
        let ctx =
            Context { room: &room, sender_uid: sender, msg_id: m.sent_msg_id.get(), sent_time: m.sent_time.get() };
        let sealed = Sealed { iv: m.iv, ciphertext: msg.body.clone(), tag: m.tag };
        // The sender is the one name pinned to this UID; a name whose key
        // changed verifies nothing until /trust (DESIGN §7).
        let pin = me.pins.by_uid(sender);
        let from = pin.map_or_else(|| format!("uid:{sender:016x}"), |(name, _)| name.to_string());
        let signed = pin.filter(|(_, p)| !p.changed()).is_some_and(|(_, p)| {
            identity::from_modulus(&p.binding.id_pub)
                .is_ok_and(|k| identity::verify(&k, &rooms::signed_bytes(&ctx, &sealed), &m.signature))
        });
        let opened = me
            .keyring
            .get(&room)
            .map(|k| rooms::open_body(&k.content, &ctx, &sealed).and_then(|b| crate::transfer::payload_text(&b)));
        let (text, verified, error) = match opened {
            Some(Ok(text)) => (text, signed, None),
            _ => (String::new(), false, Some(UNDECRYPTABLE)),
        };
        let (ts, history) = (m.sent_time.get(), m.history != 0);
        let verdict = me.dm.inbox.check_room(&room, sender, ts, m.sent_msg_id.get());
        // History is shown as history whatever it holds; a live message must be new.
        let replayed = !history && verdict != Verdict::New;
        if verified && verdict == Verdict::New {
            me.dm.inbox.record_room(&room, sender, ts, m.sent_msg_id.get(), self.clock_ms);
        }
        let id = rooms::message_id(&ctx);
        let msg = RoomMessage { room, id, from, text, ts, verified, history, replayed, error };
        Some(Event::Room(RoomEvent::Message(msg)))
    }

    /// Pins what the server lists for `name` on first sight (when it binds:
    /// `enc_sig`, none for the user's own keys); another UID or other keys for
    /// a pinned name are a key change, reported once a session.
    fn pin(&mut self, uid: u64, name: &str, id_pub: &[u8; RSA_BYTES], enc_pub: &[u8; 32], enc_sig: Option<&[u8]>) {
        let Some(me) = self.me.as_mut() else { return };
        let listed = Binding { uid, id_pub: *id_pub, enc_pub: *enc_pub };
        let binds = || enc_sig.is_none_or(|sig| keys_verify(uid, name, id_pub, enc_pub, sig));
        let event = match me.pins.get(name) {
            Some(p) if p.binding == listed => return,
            Some(_) => (me.pins.observe(name, listed, binds()) == Seen::Changed)
                .then(|| Event::Room(RoomEvent::KeyChanged { user: name.to_string() })),
            None if binds() => (me.pins.observe(name, listed, true) == Seen::Full).then(|| {
                Event::Warning(format!(
                    "{} names are pinned already: {name} is not pinned, so {name}'s messages show as unverified",
                    crate::pins::PINS_MAX
                ))
            }),
            None => Some(Event::Warning(format!(
                "the keys the server lists for {name} do not verify; not pinned, so {name}'s messages show as unverified"
            ))),
        };
        if let Some(ev) = event {
            if super::first_time(&mut me.announced, name) {
                self.events.push_back(ev);
            }
        }
    }
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
