//! Output layer of batch mode: every event is a serde-serialisable value,
//! written by serde_json as one line (docs/CLIENT.md "Events").
//!
//! Invariant: the members of each event appear in the order docs/CLIENT.md
//! lists them, `"type"` first, and optional members are left out when absent;
//! every key and string value is escaped by [`Safe`]: quote and backslash as
//! JSON requires, and every character `text::is_unsafe` names (controls, DEL,
//! C1, and format characters such as U+202E, which serde_json would write as
//! they are) as `\uXXXX`, so one event is always exactly one valid JSON line,
//! harmless on a terminal.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

use crate::command::dm_id;
use crate::session::{AccountEvent, ContactInfo};
use crate::session::{DmEvent, DmMessage, Failure, Member, ModEvent, RoomEvent, RoomInfo, RoomMessage};

/// One batch event; the variant name, in snake case, is its `"type"`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The connection is up, to this node (HOST:PORT as given in `--server`).
    Connected { server: &'a str },
    /// The help text.
    Help { message: &'a str },
    /// A generated room password, shown once.
    Generated { room: &'a str, password: &'a str },
    /// A command succeeded; `say` names the message's id.
    Ok {
        cmd: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Logged in; the UID as 16 hex digits; whether with a resumption ticket.
    Authenticated { user: &'a str, uid: String, resumed: bool },
    /// Joined a room.
    Joined { room: &'a str, members: Vec<MemberOut<'a>> },
    /// A room message.
    RoomMessage {
        room: &'a str,
        id: String,
        from: &'a str,
        text: &'a str,
        ts: u64,
        verified: bool,
        history: bool,
        replayed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// Someone joined a room.
    MemberJoined { room: &'a str, name: &'a str },
    /// Someone left a room.
    MemberLeft { room: &'a str, name: &'a str },
    /// Every room.
    Rooms { rooms: Vec<RoomOut<'a>> },
    /// The members of a room.
    Who { room: &'a str, members: Vec<MemberOut<'a>> },
    /// Who is online of the users sharing a room or a DM channel (`/who`).
    Online { users: Vec<OnlineOut<'a>> },
    /// A room was deleted.
    RoomDeleted { room: &'a str },
    /// The server lists other keys for a user.
    KeyChanged { user: &'a str },
    /// A direct-message request.
    DmRequest { from: &'a str },
    /// A direct-message channel opened.
    DmAccepted { with: &'a str, fingerprint: &'a str },
    /// A request was rejected.
    DmRejected { by: &'a str },
    /// A direct message.
    Dm {
        from: &'a str,
        id: String,
        text: &'a str,
        ts: u64,
        verified: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// A direct message was sent (or came back: status `returned`, with the reason).
    Sent {
        id: String,
        to: &'a str,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
    /// The owner removed you from a room.
    RoomKicked { room: &'a str, by: &'a str, reason: &'a str, banned: bool },
    /// The owner changed a room's password: join again with the new one.
    RoomPasswordChanged { room: &'a str, by: &'a str },
    /// A room has a new owner.
    RoomOwner { room: &'a str, owner: &'a str },
    /// A kept room message was removed.
    RoomMessageDeleted { room: &'a str, id: String, from: &'a str, by: &'a str, history: bool },
    /// Your message was withdrawn: a DM, or a room message (`room`).
    Unsent {
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
    },
    /// `/users`.
    Users { list: Vec<MemberOut<'a>> },
    /// The account was deleted; the session ends.
    AccountDeleted,
    /// A direct message waits in the outbox (`id`, `to`), or room lines wait
    /// (`cmd` "say", `room`, `queued`).
    Pending {
        #[serde(skip_serializing_if = "Option::is_none")]
        cmd: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        queued: Option<usize>,
    },
    /// A message answered "queued" reached the recipient's client since.
    Delivered { id: String, to: &'a str },
    /// A direct message expired undelivered.
    Expired { id: String },
    /// The contacts, and the requests not answered yet both ways.
    Contacts { contacts: Vec<ContactOut<'a>>, requests_sent: Vec<NameOut<'a>>, requests_received: Vec<NameOut<'a>> },
    /// A fingerprint and the safety number.
    Fingerprint {
        user: &'a str,
        fingerprint: &'a str,
        mine: &'a str,
        safety_number: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        listed: Option<&'a str>,
    },
    /// Kept direct messages.
    History { with: &'a str, messages: Vec<HistoryOut<'a>> },
    /// The connection dropped; reconnecting.
    Disconnected { message: &'a str },
    /// The connection is back, to this node.
    Reconnected { server: &'a str },
    /// A failure.
    Error {
        cmd: &'a str,
        code: u16,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u32>,
    },
    /// Something the user should know.
    Warning { message: &'a str },
    /// `/send`: the manifest is stored; the upload goes on.
    FileOffered { id: String, to: &'a str, name: &'a str, size: u64, sha256: String },
    /// Bytes done of a transfer.
    FileProgress { id: String, done: u64, total: u64 },
    /// Every chunk of an upload is on the server; `sent`: chunk bytes this client sent for it.
    FileUploaded { id: String, sent: u64 },
    /// A file offered to us.
    FileOffer {
        id: String,
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        name: &'a str,
        size: u64,
        sha256: String,
        verified: bool,
    },
    /// A transfer goes on after a reconnect or a restart, from `offset` bytes.
    FileResumed { id: String, offset: u64 },
    /// A download is complete; `sha256` is over the bytes written.
    FileReceived { id: String, path: String, size: u64, sha256: String, verified: bool },
    /// `/files`.
    Files { list: Vec<FileOut<'a>> },
    /// After `authenticated`: the previous login (left out on a first login) and the failed logins since.
    LoginRecord {
        #[serde(skip_serializing_if = "Option::is_none")]
        last: Option<LoginOut<'a>>,
        failed: Vec<FailedOut<'a>>,
    },
    /// An operator or an admin closed the session; the client ends.
    Kicked { by: &'a str, reason: &'a str },
    /// An announcement to every user.
    Announcement { from: &'a str, text: &'a str, ts: u64 },
    /// Normal end.
    Bye,
}

/// A login in `login_record`.
#[derive(Serialize)]
pub struct LoginOut<'a> {
    ts: u64,
    addr: &'a str,
}

/// A failed login in `login_record`.
#[derive(Serialize)]
pub struct FailedOut<'a> {
    ts: u64,
    addr: &'a str,
    reason: &'a str,
}

/// One transfer in `/files`.
#[derive(Serialize)]
pub struct FileOut<'a> {
    id: String,
    from: &'a str,
    to: &'a str,
    name: &'a str,
    size: u64,
    done: u64,
    state: &'a str,
}

/// A room member.
#[derive(Serialize)]
pub struct MemberOut<'a> {
    name: &'a str,
    online: bool,
}

/// A user in `online`.
#[derive(Serialize)]
pub struct OnlineOut<'a> {
    name: &'a str,
    rooms: u16,
    contact: bool,
}

/// A room in `rooms`.
#[derive(Serialize)]
pub struct RoomOut<'a> {
    name: &'a str,
    members: u32,
}

/// A contact.
#[derive(Serialize)]
pub struct ContactOut<'a> {
    name: &'a str,
    fingerprint: &'a str,
    trusted: bool,
}

/// A user name in a list.
#[derive(Serialize)]
pub struct NameOut<'a> {
    name: &'a str,
}

/// A kept direct message in `history`.
#[derive(Serialize)]
pub struct HistoryOut<'a> {
    id: String,
    from: &'a str,
    text: &'a str,
    ts: u64,
    verified: bool,
}

fn members(m: &[Member]) -> Vec<MemberOut<'_>> {
    m.iter().map(|m| MemberOut { name: &m.name, online: m.online }).collect()
}

impl<'a> Event<'a> {
    /// The event of an account event.
    pub fn account(ev: &'a AccountEvent) -> Event<'a> {
        match ev {
            AccountEvent::LoginRecord { last, failed } => Event::LoginRecord {
                last: last.as_ref().map(|(ts, addr)| LoginOut { ts: *ts, addr }),
                failed: failed.iter().map(|(ts, addr, reason)| FailedOut { ts: *ts, addr, reason }).collect(),
            },
            AccountEvent::Kicked { by, reason } => Event::Kicked { by, reason },
            AccountEvent::Announcement { from, text, ts } => Event::Announcement { from, text, ts: *ts },
        }
    }

    /// The event of a room event.
    pub fn room(ev: &'a RoomEvent) -> Event<'a> {
        match ev {
            RoomEvent::Waiting { room, queued } => {
                Event::Pending { cmd: Some("say"), id: None, to: None, room: Some(room), queued: Some(*queued) }
            }
            RoomEvent::Joined { room, members: m } => Event::Joined { room, members: members(m) },
            RoomEvent::Message(m) => Event::room_message(m),
            RoomEvent::MemberJoined { room, name } => Event::MemberJoined { room, name },
            RoomEvent::MemberLeft { room, name } => Event::MemberLeft { room, name },
            RoomEvent::Rooms(rooms) => Event::Rooms {
                rooms: rooms.iter().map(|r: &RoomInfo| RoomOut { name: &r.name, members: r.members }).collect(),
            },
            RoomEvent::Who { room, members: m } => Event::Who { room, members: members(m) },
            RoomEvent::Online(users) => Event::Online {
                users: users.iter().map(|u| OnlineOut { name: &u.name, rooms: u.rooms, contact: u.contact }).collect(),
            },
            RoomEvent::Deleted { room } => Event::RoomDeleted { room },
            RoomEvent::KeyChanged { user } => Event::KeyChanged { user },
            RoomEvent::Users(list) => Event::Users { list: members(list) },
            RoomEvent::Moderation(m) => Event::moderation(m),
        }
    }

    fn moderation(m: &'a ModEvent) -> Event<'a> {
        match m {
            ModEvent::Kicked { room, by, reason, banned } => Event::RoomKicked { room, by, reason, banned: *banned },
            ModEvent::PasswordChanged { room, by } => Event::RoomPasswordChanged { room, by },
            ModEvent::OwnerChanged { room, owner } => Event::RoomOwner { room, owner },
            ModEvent::MessageDeleted { room, id, from, by, history } => {
                Event::RoomMessageDeleted { room, id: dm_id(*id), from, by, history: *history }
            }
            ModEvent::Unsent { id, room } => Event::Unsent { id: dm_id(*id), room: room.as_deref() },
        }
    }

    fn room_message(m: &'a RoomMessage) -> Event<'a> {
        Event::RoomMessage {
            room: &m.room,
            id: dm_id(m.id),
            from: &m.from,
            text: &m.text,
            ts: m.ts,
            verified: m.verified,
            history: m.history,
            replayed: m.replayed,
            error: m.error,
        }
    }

    /// The event of a direct-message event.
    pub fn dm(ev: &'a DmEvent) -> Event<'a> {
        match ev {
            DmEvent::Requested { from } => Event::DmRequest { from },
            DmEvent::Accepted { with, fingerprint } => Event::DmAccepted { with, fingerprint },
            DmEvent::Rejected { by } => Event::DmRejected { by },
            DmEvent::Message(m) => Event::Dm {
                from: &m.from,
                id: dm_id(m.id),
                text: &m.text,
                ts: m.ts,
                verified: m.verified,
                error: m.error,
            },
            DmEvent::Sent { id, to, delivered } => Event::Sent {
                id: dm_id(*id),
                to,
                status: if *delivered { "delivered" } else { "queued" },
                reason: None,
            },
            DmEvent::Returned { id, to, reason } => {
                Event::Sent { id: dm_id(*id), to, status: "returned", reason: Some(reason) }
            }
            DmEvent::Pending { id, to } => {
                Event::Pending { cmd: None, id: Some(dm_id(*id)), to: Some(to), room: None, queued: None }
            }
            DmEvent::Delivered { id, to } => Event::Delivered { id: dm_id(*id), to },
            DmEvent::KeyChanged { user } => Event::KeyChanged { user },
            DmEvent::Expired { id } => Event::Expired { id: dm_id(*id) },
            DmEvent::Contacts { contacts, sent, received } => Event::Contacts {
                contacts: contacts
                    .iter()
                    .map(|c: &ContactInfo| ContactOut {
                        name: &c.name,
                        fingerprint: &c.fingerprint,
                        trusted: c.trusted,
                    })
                    .collect(),
                requests_sent: sent.iter().map(|name| NameOut { name }).collect(),
                requests_received: received.iter().map(|name| NameOut { name }).collect(),
            },
            DmEvent::Fingerprint { user, fingerprint, mine, safety_number, listed } => {
                Event::Fingerprint { user, fingerprint, mine, safety_number, listed: listed.as_deref() }
            }
            DmEvent::History { with, messages } => Event::History {
                with,
                messages: messages
                    .iter()
                    .map(|m: &DmMessage| HistoryOut {
                        id: dm_id(m.id),
                        from: &m.from,
                        text: &m.text,
                        ts: m.ts,
                        verified: m.verified,
                    })
                    .collect(),
            },
            DmEvent::Ok { cmd, .. } => Event::Ok { cmd, id: None },
        }
    }

    /// The event of a file report.
    pub fn file(r: &'a crate::transfer::FileReport) -> Event<'a> {
        use crate::transfer::FileReport as F;
        let hex = sotto::crypto::hex;
        match r {
            F::Offered { id, to, name, size, sha256 } => {
                Event::FileOffered { id: dm_id(*id), to, name, size: *size, sha256: hex(sha256) }
            }
            F::Progress { id, done, total } => Event::FileProgress { id: dm_id(*id), done: *done, total: *total },
            F::Uploaded { id, sent } => Event::FileUploaded { id: dm_id(*id), sent: *sent },
            F::Offer { id, from, room, name, size, sha256, verified } => Event::FileOffer {
                id: dm_id(*id),
                from,
                room: room.as_deref(),
                name,
                size: *size,
                sha256: hex(sha256),
                verified: *verified,
            },
            F::Resumed { id, offset } => Event::FileResumed { id: dm_id(*id), offset: *offset },
            F::Received { id, path, size, sha256, verified } => Event::FileReceived {
                id: dm_id(*id),
                path: path.to_string_lossy().into_owned(),
                size: *size,
                sha256: hex(sha256),
                verified: *verified,
            },
            F::Declined { .. } => Event::Ok { cmd: "decline", id: None },
            F::List(list) => Event::Files {
                list: list
                    .iter()
                    .map(|l| FileOut {
                        id: dm_id(l.id),
                        from: &l.from,
                        to: &l.to,
                        name: &l.name,
                        size: l.size,
                        done: l.done,
                        state: l.state,
                    })
                    .collect(),
            },
        }
    }

    /// The event of a failure.
    pub fn error(f: &'a Failure) -> Event<'a> {
        Event::Error {
            cmd: &f.cmd,
            code: f.code,
            message: &f.message,
            retry_after_ms: (f.retry_after_ms != 0).then_some(f.retry_after_ms),
        }
    }

    /// The event as one JSON line, without the newline.
    pub fn line(&self) -> String {
        let mut out = Vec::with_capacity(128);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Safe);
        if self.serialize(&mut ser).is_err() {
            // Unreachable: these values are strings, numbers and booleans written to memory.
            return r#"{"type":"error","cmd":"","code":0,"message":"an event could not be written"}"#.to_string();
        }
        // serde_json writes UTF-8, and `Safe` only adds ASCII.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// serde_json's compact output, with every character `text::is_unsafe` names
/// written as `\uXXXX` (UTF-16 units, lowercase hex), as the hand-written
/// writer before it did.
struct Safe;

fn escape_unit(writer: &mut (impl ?Sized + io::Write), c: char) -> io::Result<()> {
    let mut units = [0u16; 2];
    for u in c.encode_utf16(&mut units) {
        write!(writer, "\\u{:04x}", u)?;
    }
    Ok(())
}

impl Formatter for Safe {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| crate::text::is_unsafe(c)) {
            let (clean, tail) = rest.split_at(at);
            writer.write_all(clean.as_bytes())?;
            escape_unit(writer, c)?;
            rest = tail.get(c.len_utf8()..).unwrap_or_default();
        }
        writer.write_all(rest.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        let c = match escape {
            CharEscape::Quote => return writer.write_all(b"\\\""),
            CharEscape::ReverseSolidus => return writer.write_all(b"\\\\"),
            CharEscape::Solidus => '/',
            CharEscape::Backspace => '\u{8}',
            CharEscape::FormFeed => '\u{c}',
            CharEscape::LineFeed => '\n',
            CharEscape::CarriageReturn => '\r',
            CharEscape::Tab => '\t',
            CharEscape::AsciiControl(b) => char::from(b),
        };
        if crate::text::is_unsafe(c) {
            escape_unit(writer, c)
        } else {
            writer.write_all(c.encode_utf8(&mut [0; 4]).as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_backslashes_control_and_format_characters() {
        let nasty = "a\"b\\c\nd\re\tf\u{0}g\u{1f}h\u{7f}\u{9b}ü€😀\u{202e}\u{e0041}\u{1b}]52;c;x\u{7}";
        let f = Failure::new("login", 401, nasty);
        let line = Event::error(&f).line();
        assert!(!line.contains('\n') && !line.contains('\r'));
        assert!(line.contains("\\u000a") && line.contains("\\u0000") && line.contains("\\u001f"));
        assert!(line.contains("\\u007f") && line.contains("\\u009b"));
        assert!(line.contains("\\u202e") && line.contains("\\udb40\\udc41") && !line.contains('\u{1b}'));
        assert!(line.contains("ü€😀") && line.contains(r#"a\"b\\c"#));
        assert!(!line.chars().any(crate::text::is_unsafe), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["message"], nasty);
        assert_eq!(v["code"], 401);
    }

    #[test]
    fn writes_the_documented_shapes() {
        assert_eq!(Event::Bye.line(), r#"{"type":"bye"}"#);
        assert_eq!(Event::Ok { cmd: "register", id: None }.line(), r#"{"type":"ok","cmd":"register"}"#);
        assert_eq!(
            Event::Ok { cmd: "say", id: Some("00000000000000ff".into()) }.line(),
            r#"{"type":"ok","cmd":"say","id":"00000000000000ff"}"#
        );
        assert_eq!(Event::AccountDeleted.line(), r#"{"type":"account_deleted"}"#);
        assert_eq!(Event::Connected { server: "a:1" }.line(), r#"{"type":"connected","server":"a:1"}"#);
        assert_eq!(Event::Reconnected { server: "[::1]:2" }.line(), r#"{"type":"reconnected","server":"[::1]:2"}"#);
        assert_eq!(Event::Rooms { rooms: vec![] }.line(), r#"{"type":"rooms","rooms":[]}"#);
        let mut f = Failure::new("say", 429, "slow down");
        f.retry_after_ms = 1500;
        assert_eq!(
            Event::error(&f).line(),
            r#"{"type":"error","cmd":"say","code":429,"message":"slow down","retry_after_ms":1500}"#
        );
    }
}
