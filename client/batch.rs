//! Front end for scripts and tests (docs/CLIENT.md "Batch mode"): commands on
//! stdin, one JSON event per line on stdout.
//!
//! Invariant: stdout carries only whole JSON objects, one per line, each
//! flushed as it is written; diagnostics go to stderr; no password or
//! passphrase is ever written anywhere.

use std::io::{self, Write};
use std::path::PathBuf;

use crate::app::{App, Flow, Frontend, Report};
use crate::command::{self, Command, ParseError};
use crate::conn::Conn;
use crate::event::Event;
use crate::input::Input;
use crate::servers::Servers;
use crate::session::{DmEvent, Failure, RoomEvent};

const REGISTER_USAGE: &str = "usage: /register NAME PASSWORD WORD1 WORD2 WORD3";
const LOGIN_USAGE: &str = "usage: /login NAME PASSWORD WORD1 WORD2 WORD3";
const CREATE_USAGE: &str = "usage: /create ROOM [PASSWORD] (without one, four generated words, printed once)";
const JOIN_USAGE: &str = "usage: /join ROOM [PASSWORD] (without it, with the stored room key)";
const SAY_USAGE: &str = "usage: /say ROOM TEXT";
const MSG_USAGE: &str = "usage: /msg @USER TEXT";
const HELP: &str = "commands: /register NAME PASSWORD WORD1 WORD2 WORD3; /login NAME PASSWORD WORD1 WORD2 WORD3; \
/create ROOM PASSWORD; /join ROOM [PASSWORD]; /say ROOM TEXT; /leave ROOM; /rooms; /who ROOM; /delete ROOM; \
/dm @USER; /accept @USER; /reject @USER; /msg @USER TEXT; /contacts; /fingerprint @USER; /trust @USER; \
/history @USER; /forget @USER; /send @USER PATH; /send ROOM PATH; /files; /get ID [DIR]; /decline ID; \
/room-kick ROOM USER [REASON]; /room-ban ROOM USER [REASON]; /room-unban ROOM USER; /room-owner ROOM USER; \
/room-password ROOM [PASSWORD]; /unsend [@USER] ID; /unsend ROOM ID; /users; \
/delete-account PASSWORD WORD1 WORD2 WORD3; /password PASSWORD WORD1 WORD2 WORD3 NEWPASSWORD NEW1 NEW2 NEW3; \
/logout-everywhere; /kick USER [REASON] and /announce TEXT (admins); /help; /quit. \
A room message or direct message is at most 16384 bytes (UTF-8).";
const DELETE_USAGE: &str = "usage: /delete-account PASSWORD WORD1 WORD2 WORD3";
const PASSWORD_USAGE: &str =
    "usage: /password PASSWORD WORD1 WORD2 WORD3 NEWPASSWORD NEW1 NEW2 NEW3 (the current password and passphrase, then the new ones)";

/// The usage line batch mode gives for a command with the wrong arguments.
fn usage(cmd: &str) -> String {
    match cmd {
        "register" => REGISTER_USAGE.to_string(),
        "login" => LOGIN_USAGE.to_string(),
        "create" => CREATE_USAGE.to_string(),
        "join" => JOIN_USAGE.to_string(),
        "say" => SAY_USAGE.to_string(),
        "msg" => MSG_USAGE.to_string(),
        "leave" | "who" | "delete" => format!("usage: /{cmd} ROOM"),
        "dm" | "accept" | "reject" | "fingerprint" | "trust" | "history" => format!("usage: /{cmd} @USER"),
        "send" => "usage: /send @USER PATH or /send ROOM PATH".to_string(),
        "get" => "usage: /get ID [DIR]".to_string(),
        "decline" => "usage: /decline ID".to_string(),
        "kick" => "usage: /kick USER [REASON]".to_string(),
        "announce" => "usage: /announce TEXT".to_string(),
        "forget" => "usage: /forget @USER".to_string(),
        "room-kick" | "room-ban" => format!("usage: /{cmd} ROOM USER [REASON]"),
        "room-unban" | "room-owner" => format!("usage: /{cmd} ROOM USER"),
        "room-password" => {
            "usage: /room-password ROOM [PASSWORD] (without one, four generated words, printed once)".to_string()
        }
        "unsend" => "usage: /unsend ID, /unsend @USER ID or /unsend ROOM ID".to_string(),
        "delete-account" => DELETE_USAGE.to_string(),
        "password" => PASSWORD_USAGE.to_string(),
        _ => format!("usage: /{cmd}"),
    }
}

/// Parses a line with the shared grammar (`command`), keeping what batch
/// mode requires: secrets on the line, a room for `/who` and `/leave`; no
/// `/room` or `/query` (there is no window). Errors carry code 400.
fn parse(line: &str) -> Result<Option<Command>, Failure> {
    let unknown = |cmd: &str| Failure::new(cmd, 400, format!("unknown command /{cmd}; see /help"));
    match command::parse(line) {
        // Not echoed back: a stray line could be a secret.
        Ok(Some(Command::Text(_))) => Err(Failure::new("", 400, "not a command: commands start with '/'; see /help")),
        Ok(Some(Command::Register { creds: None, .. })) => Err(Failure::new("register", 400, REGISTER_USAGE)),
        Ok(Some(Command::Login { creds: None, .. })) => Err(Failure::new("login", 400, LOGIN_USAGE)),
        Ok(Some(Command::DeleteAccount(None))) => Err(Failure::new("delete-account", 400, DELETE_USAGE)),
        Ok(Some(Command::Password(None))) => Err(Failure::new("password", 400, PASSWORD_USAGE)),
        Ok(Some(Command::Leave(None))) => Err(Failure::new("leave", 400, usage("leave"))),
        Ok(Some(Command::Room(_))) => Err(unknown("room")),
        Ok(Some(Command::Query(_))) => Err(unknown("query")),
        Ok(other) => Ok(other),
        Err(ParseError::Usage(cmd)) if cmd == "room" || cmd == "query" => Err(unknown(&cmd)),
        Err(ParseError::Usage(cmd)) => Err(Failure::new(&cmd, 400, usage(&cmd))),
        Err(ParseError::Unknown(cmd)) => Err(unknown(&cmd)),
    }
}

/// Runs batch mode on an established connection to `server`, one of
/// `servers`; returns the exit status.
pub fn run(conn: Conn, home: PathBuf, servers: &Servers, server: &str, timing: crate::app::Timing) -> u8 {
    if emit(&Event::Connected { server }.line()).is_err() {
        return 1;
    }
    App::new(conn, servers, server, home, Input::stdin(), timing).run(&mut Batch)
}

/// Reports a failure before any session exists (`connect`, `home`) and returns exit status 1.
pub fn fatal(cmd: &str, message: &str) -> u8 {
    eprintln!("sotto: {}", crate::text::neutralise(message));
    let _ = emit(&error_line(&Failure::new(cmd, 0, message)));
    1
}

struct Batch;

impl Frontend for Batch {
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow> {
        let started = match parse(line) {
            Ok(None) => Ok(()),
            Ok(Some(Command::Quit)) => return Ok(Flow::Quit),
            Ok(Some(Command::Help)) => return emit(&Event::Help { message: HELP }.line()).map(|()| Flow::Continue),
            Ok(Some(Command::Register { name, creds: Some(c) })) => app.register(&name, &c.password, &c.passphrase),
            Ok(Some(Command::Login { name, creds: Some(c) })) => app.login(&name, &c.password, &c.passphrase),
            Ok(Some(Command::Create { room, password: Some(password) })) => app.create_room(&room, &password),
            Ok(Some(Command::Create { room, password: None })) => {
                let password = crate::words::secret(crate::words::ROOM_WORDS);
                emit(&Event::Generated { room: &room, password: &password }.line())?;
                app.create_room(&room, &password)
            }
            Ok(Some(Command::Join { room, password })) => app.join_room(&room, password.as_deref().map(String::as_str)),
            Ok(Some(Command::Say { room, text })) => app.say(&room, &text),
            Ok(Some(Command::Leave(Some(room)))) => app.leave_room(&room),
            Ok(Some(Command::Rooms)) => app.list_rooms(),
            Ok(Some(Command::Who(Some(room)))) => app.who_room(&room),
            Ok(Some(Command::Who(None))) => app.who_online(),
            Ok(Some(Command::Delete(room))) => app.delete_room(&room),
            Ok(Some(Command::Dm(user))) => app.dm_request(&user),
            Ok(Some(Command::Accept(user))) => app.dm_accept(&user),
            Ok(Some(Command::Reject(user))) => app.dm_reject(&user),
            Ok(Some(Command::Msg { user, text })) => app.send_dm(&user, &text),
            Ok(Some(Command::Contacts)) => app.contacts(),
            Ok(Some(Command::Fingerprint(user))) => app.fingerprint(&user),
            Ok(Some(Command::Trust(user))) => app.trust(&user),
            Ok(Some(Command::History(user))) => app.history(&user),
            Ok(Some(Command::Send { to, path })) => app.send_file(&to, &path).map(|_| ()),
            Ok(Some(Command::Get { id, dir })) => app.get_file(&id, dir.as_deref()),
            Ok(Some(Command::Decline(id))) => app.decline_file(&id),
            Ok(Some(Command::Kick { user, reason })) => app.kick(&user, &reason),
            Ok(Some(Command::Announce(text))) => app.announce(&text),
            Ok(Some(Command::RoomKick { room, user, reason, ban })) => app.room_kick(&room, &user, &reason, ban),
            Ok(Some(Command::RoomUnban { room, user })) => app.room_unban(&room, &user),
            Ok(Some(Command::RoomOwner { room, user })) => app.room_owner(&room, &user),
            Ok(Some(Command::RoomPassword { room, password: Some(password) })) => app.room_password(&room, &password),
            Ok(Some(Command::RoomPassword { room, password: None })) => {
                let password = crate::words::secret(crate::words::ROOM_WORDS);
                emit(&Event::Generated { room: &room, password: &password }.line())?;
                app.room_password(&room, &password)
            }
            Ok(Some(Command::Unsend { target, id })) => app.unsend(target.as_deref(), &id),
            Ok(Some(Command::Forget(user))) => app.forget(&user),
            Ok(Some(Command::Users)) => app.list_users(),
            Ok(Some(Command::DeleteAccount(Some(c)))) => app.delete_account(&c.password, &c.passphrase),
            Ok(Some(Command::Password(Some((old, new))))) => {
                app.change_password((&old.password, &old.passphrase), (&new.password, &new.passphrase))
            }
            Ok(Some(Command::LogoutEverywhere)) => app.logout_everywhere(),
            Ok(Some(Command::Files)) => {
                let list = app.list_files();
                return emit(&Event::file(&list).line()).map(|()| Flow::Continue);
            }
            // Refused by `parse` above.
            Ok(Some(
                Command::Register { creds: None, .. }
                | Command::Login { creds: None, .. }
                | Command::DeleteAccount(None)
                | Command::Password(None)
                | Command::Leave(None)
                | Command::Room(_)
                | Command::Query(_)
                | Command::Text(_),
            )) => Ok(()),
            Err(f) => Err(f),
        };
        match started {
            Ok(()) => Ok(Flow::Continue),
            Err(f) => emit(&error_line(&f)).map(|()| Flow::Continue),
        }
    }

    fn report(&mut self, report: Report) -> io::Result<()> {
        let line = match report {
            Report::Registered { .. } => Event::Ok { cmd: "register", id: None }.line(),
            Report::Authenticated { user, uid, resumed, .. } => {
                Event::Authenticated { user: &user, uid: format!("{uid:016x}"), resumed }.line()
            }
            Report::Done { cmd, id, .. } => Event::Ok { cmd, id: id.map(crate::command::dm_id) }.line(),
            Report::AccountDeleted { .. } => Event::AccountDeleted.line(),
            Report::Room(ev) => room_line(ev),
            Report::Dm(ev) => dm_line(ev),
            Report::Disconnected(why) => Event::Disconnected { message: &why }.line(),
            Report::Reconnected { server } => Event::Reconnected { server: &server }.line(),
            Report::Failed(f) => error_line(&f),
            Report::File(r) => Event::file(&r).line(),
            Report::Warning(w) => Event::Warning { message: &w }.line(),
            Report::Account(a) => Event::account(&a).line(),
            Report::Notice(n) => {
                eprintln!("sotto: {}", crate::text::neutralise(&n));
                return Ok(());
            }
            Report::Lost(why) => {
                eprintln!("sotto: {}", crate::text::neutralise(&why));
                error_line(&Failure::new("connection", 0, why))
            }
            Report::Bye => Event::Bye.line(),
        };
        emit(&line)
    }

    fn idle(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The batch line of a room event (docs/CLIENT.md "Events").
fn room_line(ev: RoomEvent) -> String {
    Event::room(&ev).line()
}

/// The batch line of a direct-message event (docs/CLIENT.md "Events").
fn dm_line(ev: DmEvent) -> String {
    Event::dm(&ev).line()
}

fn error_line(f: &Failure) -> String {
    Event::error(f).line()
}

/// Writes one line to stdout and flushes it.
fn emit(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ContactInfo;
    use crate::session::{DmMessage, Member, ModEvent, RoomInfo};

    fn err(line: &str) -> Failure {
        match parse(line) {
            Err(f) => f,
            Ok(_) => panic!("{line:?} should fail"),
        }
    }

    #[test]
    fn help_names_the_size_limit() {
        assert!(HELP.contains("at most 16384 bytes"), "{HELP}");
    }

    /// The grammar itself is tested in `command`; here, what batch lets through
    /// of it (the rest it refuses below).
    #[test]
    fn takes_the_shared_grammar_with_secrets_on_the_line() {
        assert!(matches!(
            parse("/login alice password123 red green blue"),
            Ok(Some(Command::Login { creds: Some(_), .. }))
        ));
        assert!(matches!(parse("/register a b c d e"), Ok(Some(Command::Register { creds: Some(_), .. }))));
        assert!(matches!(parse("/create lobby"), Ok(Some(Command::Create { password: None, .. }))));
        assert!(matches!(parse("/who"), Ok(Some(Command::Who(None)))), "who is online");
        assert!(matches!(parse("/quit"), Ok(Some(Command::Quit))));
        assert!(matches!(parse("   "), Ok(None)));
    }

    #[test]
    fn reports_usage_and_unknown_commands_as_400() {
        let f = err("/login alice password123 red green");
        assert_eq!((f.cmd.as_str(), f.code, f.message.as_str()), ("login", 400, LOGIN_USAGE));
        assert_eq!(err("/register alice").message, REGISTER_USAGE);
        let f = err("/Frob x");
        assert_eq!((f.cmd.as_str(), f.code), ("Frob", 400));
        assert_eq!(err("/quit now").cmd, "quit");
        for (line, cmd) in [
            ("/create lobby two words", "create"),
            ("/join", "join"),
            ("/join lobby a b", "join"),
            ("/say lobby", "say"),
            ("/say", "say"),
            ("/leave", "leave"),
            ("/who a b", "who"),
            ("/delete", "delete"),
            ("/rooms x", "rooms"),
            ("/leave", "leave"),
            ("/login alice", "login"),
        ] {
            let f = err(line);
            assert_eq!((f.cmd.as_str(), f.code), (cmd, 400), "{line}");
            assert!(f.message.starts_with("usage: /"), "{line}: {}", f.message);
        }
        let f = err("/room lobby");
        assert_eq!((f.cmd.as_str(), f.message.as_str()), ("room", "unknown command /room; see /help"));
        let f = err("hunter2hunter2");
        assert!(f.cmd.is_empty() && !f.message.contains("hunter2"));
    }

    #[test]
    fn room_events_have_the_documented_shapes() {
        use crate::session::RoomMessage;
        let member = |name: &str, online| Member { name: name.into(), online };
        let cases = [
            (
                RoomEvent::Joined { room: "lobby".into(), members: vec![member("alice", true), member("bob", false)] },
                r#"{"type":"joined","room":"lobby","members":[{"name":"alice","online":true},{"name":"bob","online":false}]}"#,
            ),
            (
                RoomEvent::Message(RoomMessage {
                    room: "lobby".into(),
                    id: 0xab,
                    from: "alice".into(),
                    text: "hi \"there\"".into(),
                    ts: 1_700_000_000_000,
                    verified: true,
                    history: false,
                    replayed: false,
                    error: None,
                }),
                r#"{"type":"room_message","room":"lobby","id":"00000000000000ab","from":"alice","text":"hi \"there\"","ts":1700000000000,"verified":true,"history":false,"replayed":false}"#,
            ),
            (
                RoomEvent::Message(RoomMessage {
                    room: "lobby".into(),
                    id: 0xab,
                    from: "uid:00000000000000ff".into(),
                    text: String::new(),
                    ts: 5,
                    verified: false,
                    history: true,
                    replayed: true,
                    error: Some("could not decrypt"),
                }),
                r#"{"type":"room_message","room":"lobby","id":"00000000000000ab","from":"uid:00000000000000ff","text":"","ts":5,"verified":false,"history":true,"replayed":true,"error":"could not decrypt"}"#,
            ),
            (
                RoomEvent::MemberJoined { room: "lobby".into(), name: "bob".into() },
                r#"{"type":"member_joined","room":"lobby","name":"bob"}"#,
            ),
            (
                RoomEvent::MemberLeft { room: "lobby".into(), name: "bob".into() },
                r#"{"type":"member_left","room":"lobby","name":"bob"}"#,
            ),
            (
                RoomEvent::Rooms(vec![RoomInfo { name: "lobby".into(), members: 3 }]),
                r#"{"type":"rooms","rooms":[{"name":"lobby","members":3}]}"#,
            ),
            (
                RoomEvent::Who { room: "lobby".into(), members: vec![member("alice", true)] },
                r#"{"type":"who","room":"lobby","members":[{"name":"alice","online":true}]}"#,
            ),
            (RoomEvent::Deleted { room: "lobby".into() }, r#"{"type":"room_deleted","room":"lobby"}"#),
            (RoomEvent::KeyChanged { user: "bob".into() }, r#"{"type":"key_changed","user":"bob"}"#),
            (
                RoomEvent::Moderation(ModEvent::Kicked {
                    room: "lobby".into(),
                    by: "alice".into(),
                    reason: "spam".into(),
                    banned: true,
                }),
                r#"{"type":"room_kicked","room":"lobby","by":"alice","reason":"spam","banned":true}"#,
            ),
            (
                RoomEvent::Moderation(ModEvent::PasswordChanged { room: "lobby".into(), by: "alice".into() }),
                r#"{"type":"room_password_changed","room":"lobby","by":"alice"}"#,
            ),
            (
                RoomEvent::Moderation(ModEvent::OwnerChanged { room: "lobby".into(), owner: "bob".into() }),
                r#"{"type":"room_owner","room":"lobby","owner":"bob"}"#,
            ),
            (
                RoomEvent::Moderation(ModEvent::MessageDeleted {
                    room: "lobby".into(),
                    id: 0xab,
                    from: "bob".into(),
                    by: "alice".into(),
                    history: true,
                }),
                r#"{"type":"room_message_deleted","room":"lobby","id":"00000000000000ab","from":"bob","by":"alice","history":true}"#,
            ),
            (
                RoomEvent::Moderation(ModEvent::Unsent { id: 0xab, room: Some("lobby".into()) }),
                r#"{"type":"unsent","id":"00000000000000ab","room":"lobby"}"#,
            ),
            (
                RoomEvent::Moderation(ModEvent::Unsent { id: 0xab, room: None }),
                r#"{"type":"unsent","id":"00000000000000ab"}"#,
            ),
            (RoomEvent::Users(vec![member("bob", true)]), r#"{"type":"users","list":[{"name":"bob","online":true}]}"#),
        ];
        for (ev, line) in cases {
            assert_eq!(room_line(ev), line);
        }
    }

    #[test]
    fn dm_events_have_the_documented_shapes() {
        let message = |error: Option<&'static str>| DmMessage {
            from: "bob".into(),
            id: 0x1f,
            text: "hi \u{202e}".into(),
            ts: 7,
            verified: error.is_none(),
            error,
        };
        let cases = [
            (DmEvent::Requested { from: "bob".into() }, r#"{"type":"dm_request","from":"bob"}"#),
            (
                DmEvent::Accepted { with: "bob".into(), fingerprint: "ab12".into() },
                r#"{"type":"dm_accepted","with":"bob","fingerprint":"ab12"}"#,
            ),
            (DmEvent::Rejected { by: "bob".into() }, r#"{"type":"dm_rejected","by":"bob"}"#),
            (
                DmEvent::Message(message(None)),
                r#"{"type":"dm","from":"bob","id":"000000000000001f","text":"hi \u202e","ts":7,"verified":true}"#,
            ),
            (
                DmEvent::Message(message(Some("could not decrypt"))),
                r#"{"type":"dm","from":"bob","id":"000000000000001f","text":"hi \u202e","ts":7,"verified":false,"error":"could not decrypt"}"#,
            ),
            (
                DmEvent::Sent { id: 2, to: "bob".into(), delivered: true },
                r#"{"type":"sent","id":"0000000000000002","to":"bob","status":"delivered"}"#,
            ),
            (
                DmEvent::Sent { id: 2, to: "bob".into(), delivered: false },
                r#"{"type":"sent","id":"0000000000000002","to":"bob","status":"queued"}"#,
            ),
            (DmEvent::Pending { id: 3, to: "bob".into() }, r#"{"type":"pending","id":"0000000000000003","to":"bob"}"#),
            (DmEvent::KeyChanged { user: "bob".into() }, r#"{"type":"key_changed","user":"bob"}"#),
            (DmEvent::Expired { id: 4 }, r#"{"type":"expired","id":"0000000000000004"}"#),
            (
                DmEvent::Returned { id: 4, to: "bob".into(), reason: "not delivered: account deleted" },
                r#"{"type":"sent","id":"0000000000000004","to":"bob","status":"returned","reason":"not delivered: account deleted"}"#,
            ),
            (
                DmEvent::Contacts {
                    contacts: vec![ContactInfo { name: "bob".into(), fingerprint: "ab".into(), trusted: false }],
                    sent: vec!["carol".into()],
                    received: vec![],
                },
                r#"{"type":"contacts","contacts":[{"name":"bob","fingerprint":"ab","trusted":false}],"requests_sent":[{"name":"carol"}],"requests_received":[]}"#,
            ),
            (
                DmEvent::Delivered { id: 5, to: "bob".into() },
                r#"{"type":"delivered","id":"0000000000000005","to":"bob"}"#,
            ),
            (
                DmEvent::Fingerprint {
                    user: "bob".into(),
                    fingerprint: "ab".into(),
                    mine: "cd".into(),
                    safety_number: "12345".into(),
                    listed: None,
                },
                r#"{"type":"fingerprint","user":"bob","fingerprint":"ab","mine":"cd","safety_number":"12345"}"#,
            ),
            (
                DmEvent::Fingerprint {
                    user: "bob".into(),
                    fingerprint: "ab".into(),
                    mine: "cd".into(),
                    safety_number: "12345".into(),
                    listed: Some("ef".into()),
                },
                r#"{"type":"fingerprint","user":"bob","fingerprint":"ab","mine":"cd","safety_number":"12345","listed":"ef"}"#,
            ),
            (
                DmEvent::History { with: "bob".into(), messages: vec![message(None)] },
                r#"{"type":"history","with":"bob","messages":[{"id":"000000000000001f","from":"bob","text":"hi \u202e","ts":7,"verified":true}]}"#,
            ),
            (DmEvent::Ok { cmd: "trust", user: "bob".into() }, r#"{"type":"ok","cmd":"trust"}"#),
        ];
        for (ev, line) in cases {
            assert_eq!(dm_line(ev), line);
        }
    }

    #[test]
    fn error_lines_have_the_documented_fields() {
        let line = error_line(&Failure::new("login", 401, "wrong user name or password"));
        assert_eq!(line, r#"{"type":"error","cmd":"login","code":401,"message":"wrong user name or password"}"#);
        let line = error_line(&Failure::new("msg", 508, "mailbox of bob is full"));
        assert_eq!(line, r#"{"type":"error","cmd":"msg","code":508,"message":"mailbox of bob is full"}"#);
    }
}
