//! Front end for people, line by line (`--plain`, or when stdin or stdout is
//! not a terminal): a banner, a `> ` prompt (with a line editor on a
//! terminal, `lineedit`), commands (`command`), a current room or contact
//! for plain lines, and secrets asked for without echo.
//!
//! Invariant: passwords, passphrases and room passwords are only read through
//! the no-echo prompt, never taken from the command line and never printed; a
//! room or direct message that did not verify is always shown `[UNVERIFIED]`,
//! and text from others reaches the terminal without control characters.

use std::io::{self, Write};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::app::{App, Flow, Frontend, Report};
use crate::command::{self, dm_id, Command, ParseError};
use crate::conn::Conn;
use crate::input::Input;
use crate::lineedit::LineEdit;
use crate::servers::Servers;
use crate::session::{DmEvent, DmMessage, Failure, Member, RoomEvent, RoomMessage};
use crate::text;

/// Prints one line (or several) of output. Every line is neutralised
/// (`text`): it may hold names, texts, reasons and room names from the network.
macro_rules! out {
    () => {
        println!()
    };
    ($($arg:tt)*) => {
        println!("{}", text::neutralise_lines(&format!($($arg)*)))
    };
}

const HELP: &str = "\
commands:
  /register NAME   create account NAME (asks for a password and a three-word passphrase)
  /login NAME      log in as NAME (asks for the password and the passphrase)
  /create ROOM     create a room (asks for its password); you own it, and it becomes the current room
  /join ROOM       join a room (asks for its password, unless its key is stored here); it becomes current
  /room ROOM       make ROOM, a room you are in, the current room
  /query @USER     plain lines go to USER as direct messages until the next /room
  TEXT             a line not starting with / is said in the current room
  /say ROOM TEXT   say TEXT in ROOM
  /who [ROOM]      the members of ROOM (default: the current room), and who is online
  /rooms           every room, with its number of members
  /leave [ROOM]    leave ROOM (default: the current room)
  /delete ROOM     delete ROOM and its history (owner only)
  /dm @USER        ask USER for a direct-message channel
  /accept @USER    accept USER's request (both keys are then pinned)
  /reject @USER    reject USER's request
  /msg @USER TEXT  send TEXT to USER, end-to-end encrypted (kept and sent later when offline)
  /contacts        your contacts, their fingerprints, and whether they are trusted
  /fingerprint @USER  USER's fingerprint, yours, and the safety number to compare out of band
  /trust @USER     accept the new key the server lists for USER
  /history @USER   the messages from USER still kept (each is erased an hour after it was shown)
  /forget @USER    erase the messages from USER kept here
  /unsend [@USER] ID  withdraw a direct message still waiting on the server (never delivered)
  /unsend ROOM ID  remove a room message from the kept history (yours, or any in a room you own)
  /users           the users you share a room or direct messages with (as the server allows)
  /room-kick ROOM USER [REASON]  remove a member from a room you own (they may join again)
  /room-ban ROOM USER [REASON]   remove a member and refuse their joins; /room-unban ROOM USER lifts it
  /room-owner ROOM USER          hand a room you own to another member
  /room-password ROOM            change the password of a room you own (asks for it); the others must join again
  /password        change your password and passphrase (asks for the current ones, then the new ones)
  /logout-everywhere  end your other sessions and revoke every saved login (resumption ticket)
  /delete-account  delete your account (asks for the password and passphrase again)
  /help            show this list
  /quit            leave (end of input does the same)
messages read [room] name: text and [dm] name: text; [UNVERIFIED] marks one
whose signature or integrity check failed, (history) one replayed from the
room's last 20. A room message or direct message is at most 16384 bytes (UTF-8).";

/// Runs interactive mode on an established connection to `server`, one of
/// `servers`; returns the exit status.
pub fn run(conn: Conn, home: PathBuf, servers: &Servers, server: &str, timing: crate::app::Timing) -> u8 {
    out!("sotto {}", sotto::build_info::describe());
    out!("connected to {server}; server key verified (fingerprint {})", crate::conn::server_fingerprint());
    out!("type /help for the list of commands");
    // A line editor when a person types at a terminal; else lines as they come.
    let line = if terminals() {
        match LineEdit::start() {
            Ok(l) => Some(l),
            Err(e) => {
                out!("(no line editing: {e})");
                None
            }
        }
    } else {
        None
    };
    let mut fe = Interactive {
        prompted: false,
        current: None,
        reconnected: false,
        line,
        confirm: None,
        quarters: Default::default(),
    };
    App::new(conn, servers, server, home, Input::stdin(), timing).run(&mut fe)
}

/// True when standard input and output are both terminals.
fn terminals() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

struct Interactive {
    /// A `> ` prompt is on screen and nothing has been printed after it.
    prompted: bool,
    /// Where a plain line is said.
    current: Option<Target>,
    /// The next `Authenticated` is a login again after a lost connection.
    reconnected: bool,
    /// The line editor, on a terminal.
    line: Option<LineEdit>,
    /// A `/delete` waiting for `yes`: the room.
    confirm: Option<String>,
    /// The last quarter of each transfer's progress that was printed.
    quarters: std::collections::HashMap<u64, u8>,
}

impl Interactive {
    /// Asks for a secret without showing it; prints "cancelled" when input
    /// ended, Ctrl-C or Ctrl-D was typed, or a signal interrupted the prompt.
    fn ask(&mut self, app: &mut App, prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
        let answer = match &mut self.line {
            Some(line) => line.read_secret(prompt)?,
            None => app.input.read_secret(prompt)?,
        };
        if answer.is_none() {
            out!("\ncancelled");
        }
        Ok(answer)
    }

    fn register(&mut self, app: &mut App, name: &str) -> io::Result<()> {
        let Some(password) = self.ask(app, "Password: ")? else { return Ok(()) };
        let Some(repeat) = self.ask(app, "Repeat password: ")? else { return Ok(()) };
        if !sotto::crypto::ct_eq(password.as_bytes(), repeat.as_bytes()) {
            out!("error: the passwords do not match");
            return Ok(());
        }
        let Some(passphrase) = self.ask(app, "Passphrase (three words): ")? else { return Ok(()) };
        out!("generating keys…");
        if let Err(f) = app.register_then_login(name, &password, &passphrase) {
            print_failure(&f);
        }
        Ok(())
    }

    fn login(&mut self, app: &mut App, name: &str) -> io::Result<()> {
        let Some(password) = self.ask(app, "Password: ")? else { return Ok(()) };
        let Some(passphrase) = self.ask(app, "Passphrase: ")? else { return Ok(()) };
        if let Err(f) = app.login(name, &password, &passphrase) {
            print_failure(&f);
        }
        Ok(())
    }

    fn create(&mut self, app: &mut App, room: &str) -> io::Result<()> {
        if !ready(app, room) {
            return Ok(());
        }
        let tell = "give it to its members out of band; it is not shown again (the keys are kept here)";
        if let Some(password) = self.new_room_password(app, room, false, tell)? {
            show(app.create_room(room, &password));
        }
        Ok(())
    }

    /// A room password for a new room (or, `new`, a room's new password),
    /// asked twice, or on Enter alone four generated words, shown once with
    /// `tell`; None when the user gave up or it was refused (and said why).
    fn new_room_password(
        &mut self,
        app: &mut App,
        room: &str,
        new: bool,
        tell: &str,
    ) -> io::Result<Option<Zeroizing<String>>> {
        let (label, what) = if new { ("New room password", "new password") } else { ("Room password", "password") };
        let prompt = format!("{label} (at least 10 characters; Enter alone for four generated words): ");
        let Some(password) = self.ask(app, &prompt)? else { return Ok(None) };
        if password.is_empty() {
            let generated = crate::words::secret(crate::words::ROOM_WORDS);
            out!("the {what} of {room} is: {}", generated.as_str());
            out!("{tell}");
            return Ok(Some(generated));
        }
        if let Err(e) = sotto::room::check_password(&password) {
            out!("error: {e}");
            return Ok(None);
        }
        let Some(repeat) = self.ask(app, "Repeat room password: ")? else { return Ok(None) };
        if !sotto::crypto::ct_eq(password.as_bytes(), repeat.as_bytes()) {
            out!("error: the passwords do not match");
            return Ok(None);
        }
        Ok(Some(password))
    }

    fn join(&mut self, app: &mut App, room: &str) -> io::Result<()> {
        if !ready(app, room) {
            return Ok(());
        }
        if app.has_room(room) {
            out!("joining with the stored key of {room}");
            show(app.join_room(room, None));
            return Ok(());
        }
        let Some(password) = self.ask(app, "Room password: ")? else { return Ok(()) };
        show(app.join_room(room, Some(&password)));
        Ok(())
    }

    /// `/room-password ROOM`: asks for the new password as `/create` does.
    fn room_password(&mut self, app: &mut App, room: &str) -> io::Result<()> {
        if !ready(app, room) {
            return Ok(());
        }
        let tell = "give it to the members who stay, out of band; it is not shown again";
        if let Some(password) = self.new_room_password(app, room, true, tell)? {
            show(app.room_password(room, &password));
        }
        Ok(())
    }

    /// `/delete-account`: the password and the passphrase again, as at login.
    fn delete_account(&mut self, app: &mut App) -> io::Result<()> {
        if !app.logged_in() {
            out!("error: log in first");
            return Ok(());
        }
        out!("deleting your account removes it from the server for good; its name stays reserved for a while");
        let Some(password) = self.ask(app, "Password: ")? else { return Ok(()) };
        let Some(passphrase) = self.ask(app, "Passphrase: ")? else { return Ok(()) };
        show(app.delete_account(&password, &passphrase));
        Ok(())
    }

    /// `/password`: the current password and passphrase, then the new ones, as at registration.
    fn password(&mut self, app: &mut App) -> io::Result<()> {
        if !app.logged_in() {
            out!("error: log in first");
            return Ok(());
        }
        let Some(password) = self.ask(app, "Current password: ")? else { return Ok(()) };
        let Some(passphrase) = self.ask(app, "Current passphrase: ")? else { return Ok(()) };
        let Some(new) = self.ask(app, "New password: ")? else { return Ok(()) };
        if let Err(e) = sotto::account::check_password(&new) {
            out!("error: {e}");
            return Ok(());
        }
        let Some(repeat) = self.ask(app, "Repeat new password: ")? else { return Ok(()) };
        if !sotto::crypto::ct_eq(new.as_bytes(), repeat.as_bytes()) {
            out!("error: the passwords do not match");
            return Ok(());
        }
        let Some(new_phrase) = self.ask(app, "New passphrase (three words): ")? else { return Ok(()) };
        out!("changing the password and passphrase…");
        show(app.change_password((&password, &passphrase), (&new, &new_phrase)));
        Ok(())
    }

    /// `/room ROOM`: switch the current room.
    fn switch(&mut self, app: &App, room: &str) {
        match sotto::room::normalize_name(room) {
            Ok(room) if app.has_room(&room) => {
                out!("current room: {room}");
                self.current = Some(Target::Room(room));
            }
            Ok(room) => out!("error: not in room {room}; /join it first"),
            Err(e) => out!("error: {e}"),
        }
    }

    /// The room named on the line, or the current one.
    fn room_or_current(&self, room: Option<String>, cmd: &str) -> Option<String> {
        match (room, &self.current) {
            (Some(room), _) => Some(room),
            (None, Some(Target::Room(current))) => Some(current.clone()),
            _ => {
                out!("usage: {cmd} [ROOM] (without ROOM, the current room; there is none yet)");
                None
            }
        }
    }

    fn room_event(&mut self, ev: RoomEvent) {
        match ev {
            RoomEvent::Waiting { room, queued } => {
                out!("[{room}] (not sent yet: {queued} line(s) wait, and go out in order as soon as they can)")
            }
            RoomEvent::Joined { room, members } => {
                out!("joined {room}; members: {}; it is now the current room", member_list(&members));
                self.current = Some(Target::Room(room));
            }
            RoomEvent::Message(m) => out!("{}", message_line(&m)),
            RoomEvent::MemberJoined { room, name } => out!("[{room}] {name} joined"),
            RoomEvent::MemberLeft { room, name } => out!("[{room}] {name} left"),
            RoomEvent::Rooms(rooms) if rooms.is_empty() => out!("no rooms"),
            RoomEvent::Rooms(rooms) => {
                let list: Vec<String> = rooms.iter().map(|r| format!("{} ({} members)", r.name, r.members)).collect();
                out!("rooms: {}", list.join(", "));
            }
            RoomEvent::Who { room, members } => out!("[{room}] members: {}", member_list(&members)),
            RoomEvent::Online(users) if users.is_empty() => {
                out!("nobody you share a room or direct messages with is online")
            }
            RoomEvent::Online(users) => out!("online: {}", online_list(&users)),
            RoomEvent::Deleted { room } => {
                out!("room {room} was deleted by its owner");
                self.forget(&room);
            }
            RoomEvent::Users(users) if users.is_empty() => out!("no users to list"),
            RoomEvent::Users(users) => out!("users: {}", member_list(&users)),
            RoomEvent::Moderation(m) => {
                out!("{}", m.line());
                if let Some(room) = m.removed_from() {
                    let room = room.to_owned();
                    self.forget(&room);
                }
            }
            RoomEvent::KeyChanged { user } => out!(
                "warning: the server now lists other keys for {user}; the first ones stay pinned, and {user}'s messages show [UNVERIFIED]"
            ),
        }
    }

    fn dm_event(&mut self, ev: DmEvent) {
        match ev {
            DmEvent::Requested { from } => {
                out!("{from} asks for a direct-message channel: /accept @{from} or /reject @{from}")
            }
            DmEvent::Accepted { with, fingerprint } => {
                out!("direct messages with {with} are open; {with}'s fingerprint: {}", group(&fingerprint));
                out!("compare it with {with} out of band (/fingerprint @{with} shows the safety number)");
            }
            DmEvent::Rejected { by } => out!("{by} rejected your direct-message request"),
            DmEvent::Message(m) => out!("{}", dm_message_line(&m)),
            DmEvent::Sent { id, to, delivered: true } => out!("(message {} delivered to {to})", dm_id(id)),
            DmEvent::Sent { id, to, delivered: false } => {
                out!("(message {} queued on the server until {to} comes online)", dm_id(id))
            }
            DmEvent::Pending { id, to } => {
                out!("(message {} to {to} kept in the outbox; it is sent when the connection is back)", dm_id(id))
            }
            DmEvent::KeyChanged { user } => {
                out!("WARNING: the server now lists ANOTHER KEY for {user}. This may be an attack.");
                out!("messages to and from {user} are refused; compare /fingerprint @{user} with {user} out of band, then /trust @{user}");
            }
            DmEvent::Delivered { id, to } => {
                out!("(message {} delivered to {to}, who was offline when it was sent)", dm_id(id))
            }
            DmEvent::Expired { id } => {
                out!("(message {} expired on the server without being delivered)", dm_id(id))
            }
            DmEvent::Returned { id, to, reason } => out!("(message {} to {to} came back: {reason})", dm_id(id)),
            DmEvent::Contacts { contacts, sent, received } => {
                if contacts.is_empty() {
                    out!("no contacts; /dm @USER asks for one");
                }
                for c in contacts {
                    let state = if c.trusted { "  trusted" } else { "  [KEY CHANGED: /trust to accept]" };
                    out!("{}  {}{state}", c.name, group(&c.fingerprint));
                }
                for name in sent {
                    out!("{name}  (you asked; waiting for {name} to accept)");
                }
                for name in received {
                    out!("{name}  (asks you: /accept @{name} or /reject @{name})");
                }
            }
            DmEvent::Fingerprint { user, fingerprint, mine, safety_number, listed } => {
                out!("{user}: {}", group(&fingerprint));
                out!("you: {}", group(&mine));
                out!("safety number: {safety_number}");
                if let Some(l) = listed {
                    out!("the server now lists another key for {user}: {}", group(&l));
                }
            }
            DmEvent::History { with, messages } if messages.is_empty() => out!("no messages from {with} kept"),
            DmEvent::History { messages, .. } => {
                for m in messages {
                    out!("{}", dm_message_line(&m));
                }
            }
            DmEvent::Ok { cmd: "dm", user } => out!("asked {user}; you will see when {user} accepts"),
            DmEvent::Ok { cmd: "reject", user } => out!("rejected {user}'s request"),
            DmEvent::Ok { cmd: "trust", user } => out!("the key the server lists for {user} is now trusted"),
            DmEvent::Ok { cmd, user } => out!("{cmd} {user}: ok"),
        }
    }

    fn forget(&mut self, room: &str) {
        if matches!(&self.current, Some(Target::Room(r)) if r == room) {
            self.current = None;
        }
    }
}

/// Where a plain line goes.
enum Target {
    /// Said in this room.
    Room(String),
    /// Sent to this user as a direct message (`/query`).
    Dm(String),
}

impl Target {
    /// `lobby` or `@bob`.
    fn label(&self) -> String {
        match self {
            Target::Room(room) => room.clone(),
            Target::Dm(user) => format!("@{user}"),
        }
    }
}

/// The usage line for a command given the wrong arguments (secrets are asked for, never typed).
fn usage(cmd: &str) -> String {
    match cmd {
        "register" | "login" => format!("usage: /{cmd} NAME (the password and passphrase are asked for, without echo)"),
        "create" | "join" => format!("usage: /{cmd} ROOM (the room password is asked for, without echo)"),
        "who" | "leave" | "room" => format!("usage: /{cmd} [ROOM]"),
        "say" => "usage: /say ROOM TEXT".to_string(),
        "msg" => "usage: /msg @USER TEXT".to_string(),
        "delete" => "usage: /delete ROOM".to_string(),
        "room-kick" | "room-ban" => format!("usage: /{cmd} ROOM USER [REASON]"),
        "room-unban" | "room-owner" => format!("usage: /{cmd} ROOM USER"),
        "room-password" => "usage: /room-password ROOM (the new password is asked for, without echo)".to_string(),
        "unsend" => "usage: /unsend ID, /unsend @USER ID or /unsend ROOM ID".to_string(),
        "forget" => "usage: /forget @USER".to_string(),
        "password" => {
            "usage: /password (the current and the new password and passphrase are asked for, without echo)".to_string()
        }
        "delete-account" => {
            "usage: /delete-account (the password and passphrase are asked for, without echo)".to_string()
        }
        "dm" | "accept" | "reject" | "fingerprint" | "trust" | "history" | "query" => format!("usage: /{cmd} @USER"),
        _ => format!("usage: /{cmd} (no arguments)"),
    }
}

/// Checks what can be checked before asking for a room password.
fn ready(app: &App, room: &str) -> bool {
    if !app.logged_in() {
        out!("error: log in first");
        return false;
    }
    if let Err(e) = sotto::room::normalize_name(room) {
        out!("error: {e}");
        return false;
    }
    true
}

fn show(started: Result<(), Failure>) {
    if let Err(f) = started {
        print_failure(&f);
    }
}

/// `[room] (history) [REPLAYED] [UNVERIFIED] name: text`.
fn message_line(m: &RoomMessage) -> String {
    let history = if m.history { " (history)" } else { "" };
    let replayed = if m.replayed { " [REPLAYED: shown before, not new]" } else { "" };
    let flag = if m.verified { "" } else { " [UNVERIFIED]" };
    let body = match m.error {
        Some(why) => format!("({why})"),
        None => text::neutralise(&m.text).into_owned(),
    };
    format!("[{}]{history}{replayed}{flag} {}: {body}", m.room, text::neutralise(&m.from))
}

/// `[dm] [UNVERIFIED] name: text`.
fn dm_message_line(m: &DmMessage) -> String {
    let flag = if m.verified { "" } else { " [UNVERIFIED]" };
    let body = match m.error {
        Some(why) => format!("({why})"),
        None => text::neutralise(&m.text).into_owned(),
    };
    format!("[dm]{flag} {}: {body}", text::neutralise(&m.from))
}

/// `bob (2 rooms, contact), carol (1 room)`.
pub(crate) fn online_list(users: &[crate::session::OnlineInfo]) -> String {
    let one = |u: &crate::session::OnlineInfo| {
        let rooms = match u.rooms {
            0 => String::new(),
            1 => "1 room".to_owned(),
            n => format!("{n} rooms"),
        };
        let how = match (rooms.is_empty(), u.contact) {
            (false, true) => format!("{rooms}, contact"),
            (true, true) => "contact".to_owned(),
            (_, false) => rooms,
        };
        format!("{} ({how})", u.name)
    };
    users.iter().map(one).collect::<Vec<_>>().join(", ")
}

fn member_list(members: &[Member]) -> String {
    let names: Vec<String> =
        members.iter().map(|m| if m.online { format!("{} (online)", m.name) } else { m.name.clone() }).collect();
    names.join(", ")
}

impl Frontend for Interactive {
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow> {
        self.prompted = false;
        // A command instead of the answer (Ctrl-C's /quit too) is a no, and is carried out.
        if let Some(room) = self.confirm.take_if(|_| line.trim_start().starts_with('/')) {
            out!("not deleted: {room} is kept");
        }
        if let Some(room) = self.confirm.take() {
            if command::confirmed(line) {
                show(app.delete_room(&room));
            } else {
                out!("not deleted: {room} is kept");
            }
            return Ok(Flow::Continue);
        }
        let command = match command::parse(line) {
            Ok(None) => return Ok(Flow::Continue),
            Ok(Some(c)) => c,
            Err(ParseError::Usage(cmd)) => {
                out!("{}", usage(&cmd));
                return Ok(Flow::Continue);
            }
            Err(ParseError::Unknown(cmd)) => {
                out!("unknown command /{cmd}; type /help for the list");
                return Ok(Flow::Continue);
            }
        };
        match command {
            Command::Text(text) => match (&self.current, app.logged_in()) {
                (Some(Target::Room(room)), _) => show(app.say(room, &text)),
                (Some(Target::Dm(user)), _) => show(app.send_dm(user, &text)),
                (None, true) => out!("no current room: /join one, or use /say ROOM TEXT"),
                (None, false) => out!("not a command; type /help for the list of commands"),
            },
            Command::Help => out!("{HELP}"),
            Command::Quit => return Ok(Flow::Quit),
            Command::Register { name, creds: None } => self.register(app, &name)?,
            Command::Login { name, creds: None } => self.login(app, &name)?,
            Command::Create { room, password: None } => self.create(app, &room)?,
            Command::Join { room, password: None } => self.join(app, &room)?,
            // Secrets typed on the line would stay in the terminal's scrollback.
            Command::Register { .. } => out!("{}", usage("register")),
            Command::Login { .. } => out!("{}", usage("login")),
            Command::Create { .. } => out!("{}", usage("create")),
            Command::Join { .. } => out!("{}", usage("join")),
            Command::Room(Some(room)) => self.switch(app, &room),
            Command::Room(None) => match &self.current {
                Some(target) => out!("current: {}", target.label()),
                None => out!("no current room"),
            },
            Command::Query(user) => {
                let user = user.strip_prefix('@').unwrap_or(&user).to_string();
                out!("plain lines now go to {user} as direct messages; /room ROOM switches back");
                self.current = Some(Target::Dm(user));
            }
            Command::Say { room, text } => show(app.say(&room, &text)),
            Command::Who(Some(room)) => show(app.who_room(&room)),
            Command::Who(None) => show(app.who_online()),
            Command::Leave(room) => {
                if let Some(room) = self.room_or_current(room, "/leave") {
                    show(app.leave_room(&room));
                }
            }
            Command::Rooms => show(app.list_rooms()),
            Command::Delete(room) => {
                if ready(app, &room) {
                    out!("{}", command::delete_question(&room));
                    self.confirm = Some(room);
                }
            }
            Command::Dm(user) => show(app.dm_request(&user)),
            Command::Accept(user) => show(app.dm_accept(&user)),
            Command::Reject(user) => show(app.dm_reject(&user)),
            Command::Msg { user, text } => show(app.send_dm(&user, &text)),
            Command::Contacts => show(app.contacts()),
            Command::Fingerprint(user) => show(app.fingerprint(&user)),
            Command::Trust(user) => show(app.trust(&user)),
            Command::History(user) => show(app.history(&user)),
            Command::Send { to, path } => show(app.send_file(&to, &path).map(|_| ())),
            Command::Get { id, dir } => show(app.get_file(&id, dir.as_deref())),
            Command::Decline(id) => show(app.decline_file(&id)),
            Command::Kick { user, reason } => show(app.kick(&user, &reason)),
            Command::Announce(text) => show(app.announce(&text)),
            Command::Files => out!("{}", crate::transfer::describe(&app.list_files())),
            Command::RoomKick { room, user, reason, ban } => show(app.room_kick(&room, &user, &reason, ban)),
            Command::RoomUnban { room, user } => show(app.room_unban(&room, &user)),
            Command::RoomOwner { room, user } => show(app.room_owner(&room, &user)),
            Command::RoomPassword { room, password: None } => self.room_password(app, &room)?,
            Command::RoomPassword { .. } => out!("{}", usage("room-password")),
            Command::Unsend { target, id } => show(app.unsend(target.as_deref(), &id)),
            Command::Forget(user) => show(app.forget(&user)),
            Command::Users => show(app.list_users()),
            Command::DeleteAccount(None) => self.delete_account(app)?,
            Command::DeleteAccount(Some(_)) => out!("{}", usage("delete-account")),
            Command::Password(None) => self.password(app)?,
            Command::Password(Some(_)) => out!("{}", usage("password")),
            Command::LogoutEverywhere => show(app.logout_everywhere()),
        }
        Ok(Flow::Continue)
    }

    fn report(&mut self, report: Report) -> io::Result<()> {
        if std::mem::take(&mut self.prompted) {
            match &mut self.line {
                Some(line) => line.erase()?,
                None => out!(),
            }
        }
        match report {
            Report::Registered { user, key_path, fingerprint } => {
                out!("registered {user}; private keys saved in {}", key_path.display());
                out!("identity fingerprint: {}", group(&fingerprint));
                out!("log in with /login {user}");
            }
            Report::Authenticated { user, uid, rooms, .. } if std::mem::take(&mut self.reconnected) => {
                out!("logged in again as {user} (uid {uid:016x})");
                out!("{}", command::rooms_line(&rooms));
                // The current room or contact is kept across a reconnect.
                if let Some(target) = &self.current {
                    out!("current: {}", target.label());
                }
            }
            Report::Authenticated { user, uid, fingerprint, rooms, .. } => {
                self.current = None;
                out!("logged in as {user} (uid {uid:016x})");
                if let Some(fp) = fingerprint {
                    out!("identity fingerprint: {}", group(&fp));
                }
                out!("{}", command::rooms_line(&rooms));
            }
            Report::AccountDeleted { user } => out!("account {user} deleted; its name stays reserved for a while"),
            Report::Done { cmd: "create", room, .. } => {
                out!("created room {room}; you own it, and it is now the current room");
                self.current = Some(Target::Room(room));
            }
            Report::Done { cmd: "say", .. } => {}
            Report::Done { cmd: "leave", room, .. } => {
                out!("left {room}");
                self.forget(&room);
            }
            Report::Done { cmd: "delete", room, .. } => {
                out!("deleted room {room}");
                self.forget(&room);
            }
            Report::Done { cmd: "password", .. } => {
                out!(
                    "password and passphrase changed; your other sessions were logged out and the files here re-sealed"
                )
            }
            Report::Done { cmd: "logout-everywhere", .. } => {
                out!("logged out everywhere else: your other sessions were closed and every saved login revoked")
            }
            Report::Done { cmd, room, .. } if room.is_empty() => out!("{cmd}: ok"),
            Report::Done { cmd, room, .. } => out!("{cmd} {room}: ok"),
            Report::Room(ev) => self.room_event(ev),
            Report::Dm(ev) => self.dm_event(ev),
            Report::Disconnected(why) => {
                out!("{why}; reconnecting (commands that need the server wait until then)")
            }
            Report::Reconnected { server } => {
                self.reconnected = true;
                out!("reconnected to {server}");
            }
            Report::Failed(f) => print_failure(&f),
            Report::Warning(w) => out!("warning: {w}"),
            Report::Account(a) => out!("{}", a.describe()),
            Report::Notice(n) => out!("notice: {n}"),
            // Progress: a line at each quarter, not a flood.
            Report::File(crate::transfer::FileReport::Progress { id, done, total }) => {
                let quarter = if total == 0 { 4 } else { (done.min(total) as u128 * 4 / total as u128) as u8 };
                let last = self.quarters.insert(id, quarter);
                if quarter > 0 && quarter < 4 && last != Some(quarter) {
                    out!("file {id:016x} {}", crate::transfer::bar(done, total));
                }
            }
            Report::File(r) => out!("{}", crate::transfer::describe(&r)),
            Report::Lost(why) => out!("error: {why}"),
            Report::Bye => out!("bye"),
        }
        io::stdout().flush()
    }

    fn idle(&mut self) -> io::Result<()> {
        crate::term::check_signal(&mut None)?;
        if !self.prompted {
            self.prompted = true;
            let prompt = match &self.current {
                Some(target) => format!("[{}]> ", text::neutralise(&target.label())),
                None => "> ".to_string(),
            };
            match &mut self.line {
                Some(line) => line.draw(&prompt)?,
                None => {
                    print!("{prompt}");
                    io::stdout().flush()?;
                }
            }
        }
        Ok(())
    }

    fn next_line(&mut self, input: &mut Input) -> Option<Zeroizing<String>> {
        match &mut self.line {
            Some(line) => line.next_line(),
            None => input.next_line(),
        }
    }

    fn readable(&mut self, input: &mut Input) -> io::Result<()> {
        match &mut self.line {
            Some(line) => {
                crate::term::check_signal(&mut None)?;
                line.read_keys()
            }
            None => input.fill(),
        }
    }
}

/// `error: wrong user name or password`, in words (`command::describe`).
fn print_failure(f: &Failure) {
    out!("{}", failure_line(f));
}

/// The line a failure is shown as: words, no code.
fn failure_line(f: &Failure) -> String {
    format!("error: {}", command::describe(f))
}

/// Hex in groups of four, for reading aloud.
fn group(hex: &str) -> String {
    let chars: Vec<char> = hex.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(verified: bool, history: bool, error: Option<&'static str>) -> RoomMessage {
        RoomMessage {
            room: "lobby".into(),
            id: 1,
            from: "alice".into(),
            text: "hi\u{1b}[2J there".into(),
            ts: 1,
            verified,
            history,
            replayed: false,
            error,
        }
    }

    #[test]
    fn shows_unverified_and_history_messages_flagged_and_without_escapes() {
        assert_eq!(message_line(&message(true, false, None)), "[lobby] alice: hi\\u{001b}[2J there");
        assert_eq!(message_line(&message(false, false, None)), "[lobby] [UNVERIFIED] alice: hi\\u{001b}[2J there");
        assert_eq!(message_line(&message(true, true, None)), "[lobby] (history) alice: hi\\u{001b}[2J there");
        assert_eq!(
            message_line(&message(false, true, Some("could not decrypt"))),
            "[lobby] (history) [UNVERIFIED] alice: (could not decrypt)"
        );
    }

    #[test]
    fn help_names_the_size_limit() {
        assert!(HELP.contains("at most 16384 bytes"), "{HELP}");
    }

    #[test]
    fn failures_are_shown_in_words() {
        assert_eq!(failure_line(&Failure::new("dm", 404, "no such user")), "error: no such user");
        let mut f = Failure::new("say", 429, "slow down");
        f.retry_after_ms = 3000;
        assert_eq!(failure_line(&f), "error: too fast: try again in 3 s");
    }
}
