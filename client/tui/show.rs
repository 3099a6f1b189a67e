//! Full-screen front end: what each report of the driver (`app::Report`)
//! puts on the screen, and in which window.
//!
//! Invariant: a room message goes to its room's window, a direct message to
//! its sender's; a message that did not verify always carries the
//! `Unverified` mark, and one from a user whose key changed the `KeyChanged`
//! mark until `/trust`; text is kept as it came (`draw` neutralises it).

use super::state::{Delivery, Entry, Kind, Mark, Tone, Ui};
use super::Tui;
use crate::command::dm_id;
use crate::session::{DmEvent, DmMessage, Member, RoomEvent, RoomMessage};

impl Tui {
    fn entry(&self, from: &str, text: &str, ts: u64, verified: bool, error: Option<&str>) -> Entry {
        let mut marks = Vec::new();
        if !verified {
            marks.push(Mark::Unverified);
        }
        if self.ui.key_changed.contains(from) {
            marks.push(Mark::KeyChanged);
        }
        let text = error.map_or_else(|| text.to_string(), |why| format!("({why})"));
        Entry {
            ts: Some(ts),
            from: Some(from.to_string()),
            text,
            marks,
            tone: Tone::Message,
            history: false,
            delivery: None,
            id: None,
        }
    }

    fn room_message(&mut self, m: RoomMessage) {
        let mut e = self.entry(&m.from, &m.text, m.ts, m.verified, m.error);
        if m.replayed {
            e.marks.push(Mark::Replayed);
        }
        e.history = m.history;
        e.id = Some(m.id);
        let i = self.ui.window(Kind::Room(m.room));
        self.ui.push(i, e);
    }

    fn dm_message(&mut self, m: DmMessage) {
        let e = self.entry(&m.from, &m.text, m.ts, m.verified, m.error);
        let i = self.ui.window(Kind::Dm(m.from));
        self.ui.push(i, e);
    }

    pub(super) fn room_event(&mut self, ev: RoomEvent) {
        match ev {
            RoomEvent::Online(users) if users.is_empty() => {
                self.ui.say("nobody you share a room or direct messages with is online")
            }
            RoomEvent::Online(users) => self.ui.say(format!("online: {}", crate::interactive::online_list(&users))),
            RoomEvent::Waiting { room, queued } => {
                // Our line is marked waiting where it is; the count is said too.
                self.ui.mark_room(&room, &[Delivery::Sending], Delivery::Waiting);
                let i = self.ui.window(Kind::Room(room));
                self.ui
                    .info(i, format!("not sent yet: {queued} line(s) wait, and go out in order as soon as they can"));
            }
            RoomEvent::Joined { room, members } => {
                self.ui.users.extend(members.iter().map(|m| m.name.clone()));
                self.ui.members.insert(room.clone(), members.iter().map(|m| (m.name.clone(), m.online)).collect());
                let i = self.ui.window(Kind::Room(room.clone()));
                self.ui.switch(i);
                self.ui.info(i, format!("joined {room}; members: {}", member_list(&members)));
            }
            RoomEvent::Message(m) => self.room_message(m),
            RoomEvent::MemberJoined { room, name } => {
                let room_name = room.clone();
                let i = self.ui.window(Kind::Room(room));
                self.ui.info(i, format!("{name} joined"));
                self.ui.members.entry(room_name).or_default().insert(name.clone(), true);
                self.ui.users.insert(name);
            }
            RoomEvent::MemberLeft { room, name } => {
                if let Some(m) = self.ui.members.get_mut(&room) {
                    m.remove(&name);
                }
                let i = self.ui.window(Kind::Room(room));
                self.ui.info(i, format!("{name} left"));
            }
            RoomEvent::Rooms(rooms) if rooms.is_empty() => self.ui.say("no rooms"),
            RoomEvent::Rooms(rooms) => {
                let list: Vec<String> = rooms.iter().map(|r| format!("{} ({} members)", r.name, r.members)).collect();
                self.ui.say(format!("rooms: {}", list.join(", ")));
            }
            RoomEvent::Who { room, members } => {
                self.ui.users.extend(members.iter().map(|m| m.name.clone()));
                self.ui.members.insert(room.clone(), members.iter().map(|m| (m.name.clone(), m.online)).collect());
                self.ui.say(format!("{room}: {}", member_list(&members)));
            }
            RoomEvent::Deleted { room } => {
                let i = self.ui.window(Kind::Room(room.clone()));
                self.ui.alert(i, format!("room {room} was deleted by its owner"));
            }
            RoomEvent::Users(users) if users.is_empty() => self.ui.say("no users to list"),
            RoomEvent::Users(users) => self.ui.say(format!("users: {}", member_list(&users))),
            RoomEvent::Moderation(m) => {
                let i = match &m {
                    crate::session::ModEvent::Unsent { room: None, .. } => 0,
                    crate::session::ModEvent::Kicked { room, .. }
                    | crate::session::ModEvent::PasswordChanged { room, .. }
                    | crate::session::ModEvent::OwnerChanged { room, .. }
                    | crate::session::ModEvent::MessageDeleted { room, .. }
                    | crate::session::ModEvent::Unsent { room: Some(room), .. } => {
                        self.ui.window(Kind::Room(room.clone()))
                    }
                };
                if let crate::session::ModEvent::MessageDeleted { room, id, .. }
                | crate::session::ModEvent::Unsent { id, room: Some(room) } = &m
                {
                    self.ui.mark_deleted(room, *id);
                }
                if m.removed_from().is_some() {
                    self.ui.alert(i, m.line());
                } else {
                    self.ui.info(i, m.line());
                }
            }
            RoomEvent::KeyChanged { user } => {
                self.ui.warn(format!(
                    "the server now lists other keys for {user}; the first ones stay pinned, and {user}'s messages show [UNVERIFIED]"
                ));
                self.ui.key_changed.insert(user);
            }
        }
    }

    pub(super) fn dm_event(&mut self, ev: DmEvent) {
        let dm = |ui: &mut Ui, user: &str| ui.window(Kind::Dm(user.to_string()));
        match ev {
            DmEvent::Requested { from } => {
                let i = dm(&mut self.ui, &from);
                self.ui
                    .info(i, format!("{from} asks for a direct-message channel: /accept @{from} or /reject @{from}"));
                self.ui.users.insert(from);
            }
            DmEvent::Accepted { with, fingerprint } => {
                self.ui.contacts.insert(with.clone(), fingerprint.clone());
                let i = dm(&mut self.ui, &with);
                self.ui.info(i, format!("direct messages with {with} are open; fingerprint {}", group(&fingerprint)));
                self.ui.info(i, format!("compare it with {with} out of band (/fingerprint @{with})"));
                self.ui.users.insert(with);
            }
            DmEvent::Rejected { by } => {
                let i = dm(&mut self.ui, &by);
                self.ui.alert(i, format!("{by} rejected your direct-message request"));
            }
            DmEvent::Message(m) => self.dm_message(m),
            DmEvent::Sent { id, to, delivered } => {
                let mark = if delivered { Delivery::Delivered } else { Delivery::Queued };
                if self.ui.mark_dm(&to, id, mark) {
                    return;
                }
                let i = dm(&mut self.ui, &to);
                let how = if delivered { "delivered" } else { "queued on the server until they come online" };
                self.ui.info(i, format!("message {} {how}", dm_id(id)));
            }
            DmEvent::Pending { id, to } => {
                if self.ui.mark_dm(&to, id, Delivery::Outbox) {
                    return;
                }
                let i = dm(&mut self.ui, &to);
                self.ui.info(i, format!("message {} kept in the outbox until the connection is back", dm_id(id)));
            }
            DmEvent::KeyChanged { user } => {
                let i = dm(&mut self.ui, &user);
                self.ui.alert(i, format!("the server now lists ANOTHER KEY for {user}: this may be an attack"));
                self.ui.alert(
                    i,
                    format!("messages are refused; compare /fingerprint @{user} out of band, then /trust @{user}"),
                );
                self.ui.key_changed.insert(user);
            }
            DmEvent::Expired { id } => self.ui.info(0, format!("message {} expired undelivered", dm_id(id))),
            DmEvent::Returned { id, to, reason } => {
                self.ui.info(0, format!("message {} to {to} came back: {reason}", dm_id(id)))
            }
            DmEvent::Contacts { contacts, sent, received } => {
                if contacts.is_empty() {
                    self.ui.say("no contacts; /dm @USER asks for one");
                }
                for c in contacts {
                    self.ui.contacts.insert(c.name.clone(), c.fingerprint.clone());
                    if !c.trusted {
                        self.ui.key_changed.insert(c.name.clone());
                    }
                    let state = if c.trusted { "trusted" } else { "KEY CHANGED: /trust to accept" };
                    self.ui.say(format!("{}  {}  {state}", c.name, group(&c.fingerprint)));
                    self.ui.users.insert(c.name);
                }
                for name in sent {
                    self.ui.say(format!("{name}  (you asked; waiting for {name} to accept)"));
                }
                for name in received {
                    self.ui.say(format!("{name}  (asks you: /accept @{name} or /reject @{name})"));
                }
            }
            DmEvent::Delivered { id, to } => {
                if self.ui.mark_dm(&to, id, Delivery::Delivered) {
                    return;
                }
                let i = dm(&mut self.ui, &to);
                self.ui.info(i, format!("message {} delivered (it was queued)", dm_id(id)));
            }
            DmEvent::Fingerprint { user, fingerprint, mine, safety_number, listed } => {
                self.ui.say(format!("{user}: {}", group(&fingerprint)));
                self.ui.say(format!("you: {}", group(&mine)));
                self.ui.say(format!("safety number: {safety_number}"));
                if let Some(l) = listed {
                    self.ui.warn(format!("the server now lists another key for {user}: {}", group(&l)));
                }
            }
            DmEvent::History { with, messages } if messages.is_empty() => {
                self.ui.say(format!("no messages from {with} kept"))
            }
            DmEvent::History { messages, .. } => messages.into_iter().for_each(|m| self.dm_message(m)),
            DmEvent::Ok { cmd: "dm", user } => self.ui.say(format!("asked {user}; you will see when {user} accepts")),
            DmEvent::Ok { cmd: "reject", user } => self.ui.say(format!("rejected {user}'s request")),
            DmEvent::Ok { cmd: "trust", user } => {
                self.ui.say(format!("the key the server lists for {user} is now trusted"));
                self.ui.key_changed.remove(&user);
            }
            DmEvent::Ok { cmd, user } => self.ui.say(format!("{cmd} {user}: ok")),
        }
    }
}

fn member_list(members: &[Member]) -> String {
    let names: Vec<String> =
        members.iter().map(|m| if m.online { format!("{} (online)", m.name) } else { m.name.clone() }).collect();
    names.join(", ")
}

/// Hex in groups of four, for reading aloud.
pub(super) fn group(hex: &str) -> String {
    let chars: Vec<char> = hex.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}
