//! Front end for people on a terminal, full screen (docs/CLIENT.md "Front
//! ends"): windows for rooms and contacts with unread counts, a conversation
//! with times and loud marks, an input line, a status bar. `state` holds the
//! screen's state and applies actions (`keys`) to it and its input line
//! (`editor`), `draw` draws it, `show` turns reports into lines; this file
//! joins them to the shared driver (`app`): lines become commands
//! (`command`).
//!
//! Invariant: the terminal is restored however the front end ends: a normal
//! end, an error, or a panic (a hook restores it before the message is
//! printed); secrets are asked inside the screen and never shown; keys are
//! read as events by crossterm from the same descriptor the driver polls, and
//! all events ready are taken at once, so no input waits in a buffer poll(2)
//! cannot see.

mod draw;
mod show;
mod state;

use std::collections::VecDeque;
use std::io::{self, Stdout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen, SetTitle};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use zeroize::Zeroizing;

use crate::app::{now_ms, App, Flow, Frontend, Report};
use crate::command::{self, Command, ParseError};
use crate::conn::Conn;
use crate::input::Input;
use crate::servers::Servers;
use crate::session::Failure;
use show::group;
use state::{Delivery, Entry, Kind, Link, Output, Tone, Ui};

const HELP: &str = "commands: /register NAME, /login NAME (secrets are asked for, hidden), \
/create ROOM, /join ROOM, /room ROOM, /query @USER, /who [ROOM], /rooms, /leave [ROOM], /delete ROOM, \
/dm @USER, /accept @USER, /reject @USER, /msg @USER TEXT, /contacts, /fingerprint @USER, /trust @USER, \
/history @USER, /forget @USER, /unsend [@USER|ROOM] ID, /users, /room-kick ROOM USER [REASON], \
/room-ban ROOM USER [REASON], /room-unban ROOM USER, /room-owner ROOM USER, /room-password ROOM, \
/password, /logout-everywhere, /delete-account, /quit. A line without / goes to the current window. Keys: Alt-1..9, Ctrl-N, Ctrl-P switch \
windows; PageUp/PageDown and the mouse wheel scroll; Up/Down history; Tab completes commands, rooms and @users; \
Ctrl-C or Ctrl-D on an empty line quits. A room message or direct message is at most 16384 bytes (UTF-8).";

/// Runs the full-screen front end on an established connection to `server`,
/// one of `servers`; returns the exit status.
pub fn run(conn: Conn, home: PathBuf, servers: &Servers, server: &str, timing: crate::app::Timing) -> u8 {
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut ui = Ui::new(server, color, utc_offset_s());
    ui.info(0, format!("sotto {}", sotto::build_info::describe()));
    ui.info(
        0,
        format!("connected to {server}; server key verified (fingerprint {})", crate::conn::server_fingerprint()),
    );
    ui.info(0, "type /help for the commands and keys; /register NAME or /login NAME to start");
    let terminal = match setup() {
        Ok(t) => t,
        Err(e) => {
            restore();
            eprintln!("sotto: the terminal cannot be used full screen ({e}); try --plain");
            return 1;
        }
    };
    let mut tui = Tui {
        ui,
        terminal,
        lines: VecDeque::new(),
        quitting: false,
        ask: None,
        title: None,
        last_error: None,
        confirm: None,
    };
    let code = App::new(conn, servers, server, home, Input::stdin(), timing).run(&mut tui);
    drop(tui);
    restore();
    code
}

/// Raw mode, the alternate screen, bracketed paste, mouse capture (for the
/// wheel), and a panic hook that undoes them.
fn setup() -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
    crate::term::restore_on_panic(restore);
    crate::term::catch_terminate()?;
    TAKEN.store(true, Ordering::SeqCst);
    terminal::enable_raw_mode()?;
    execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste, EnableMouseCapture)?;
    // Starts crossterm's event source now, with its SIGWINCH handler, so a
    // resize interrupts the driver's poll(2) and the next draw fits the new size.
    crossterm::event::poll(Duration::ZERO)?;
    Terminal::new(CrosstermBackend::new(io::stdout()))
}

/// Whether the terminal is taken over (raw mode, alternate screen).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back as it was (once, however many paths call it).
fn restore() {
    if !TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = execute!(io::stdout(), DisableMouseCapture, DisableBracketedPaste, LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

/// The local time's offset from UTC now, in seconds.
fn utc_offset_s() -> i64 {
    let now = libc::time_t::try_from(now_ms() / 1000).unwrap_or(0);
    // SAFETY: localtime_r writes only into `tm`, which we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// A request that waits for secrets typed at hidden prompts.
enum Purpose {
    Register(String),
    Login(String),
    Create(String),
    Join(String),
    /// `/room-password ROOM`: asked as for `/create`.
    Rekey(String),
    /// `/delete-account`: asked as for `/login`.
    DeleteAccount,
    /// `/password`: the current secrets, then the new ones as at registration.
    Password,
}

/// What is being asked, and the answers so far.
struct Ask {
    purpose: Purpose,
    answers: Vec<Zeroizing<String>>,
}

impl Ask {
    /// The next prompt, or `None` when every answer is in.
    fn prompt(&self) -> Option<&'static str> {
        let prompts: &[&str] = match &self.purpose {
            Purpose::Register(_) => &["Password: ", "Repeat password: ", "Passphrase (three words): "],
            Purpose::Login(_) | Purpose::DeleteAccount => &["Password: ", "Passphrase: "],
            Purpose::Rekey(_) if self.answers.first().is_some_and(|a| a.is_empty()) => &[],
            Purpose::Rekey(_) => &["New room password (Enter alone: four generated words): ", "Repeat room password: "],
            // Enter alone at the first: generated words, and no repeat.
            Purpose::Create(_) if self.answers.first().is_some_and(|a| a.is_empty()) => &[],
            Purpose::Create(_) => &["Room password (Enter alone: four generated words): ", "Repeat room password: "],
            Purpose::Join(_) => &["Room password: "],
            Purpose::Password => &[
                "Current password: ",
                "Current passphrase: ",
                "New password: ",
                "Repeat new password: ",
                "New passphrase (three words): ",
            ],
        };
        prompts.get(self.answers.len()).copied()
    }

    /// Checks the last answer; when it is refused, drops it (both, for a
    /// repeat that does not match) and says why.
    fn check(&mut self) -> Option<String> {
        let same = |a: &[Zeroizing<String>]| match a {
            [first, repeat] => sotto::crypto::ct_eq(first.as_bytes(), repeat.as_bytes()),
            _ => true,
        };
        let answers = self.answers.as_slice();
        let refused = |e: String| Some((e, false));
        let mismatch = Some(("the passwords do not match".to_string(), true));
        let (why, both) = match (&self.purpose, answers) {
            (Purpose::Register(_), [password]) => refused(sotto::account::check_password(password).err()?.to_string()),
            (Purpose::Register(_), [_, _]) if !same(answers) => mismatch,
            (Purpose::Register(_), [_, _, phrase]) => {
                refused(sotto::account::normalize_passphrase(phrase).err()?.to_string())
            }
            (Purpose::Create(_) | Purpose::Rekey(_), [password]) if !password.is_empty() => {
                refused(sotto::room::check_password(password).err()?.to_string())
            }
            (Purpose::Create(_) | Purpose::Rekey(_), [_, _]) if !same(answers) => mismatch,
            (Purpose::Password, [_, _, password]) => {
                refused(sotto::account::check_password(password).err()?.to_string())
            }
            (Purpose::Password, [_, _, new @ ..]) if new.len() == 2 && !same(new) => mismatch,
            (Purpose::Password, [_, _, _, _, phrase]) => {
                refused(sotto::account::normalize_passphrase(phrase).err()?.to_string())
            }
            _ => None,
        }?;
        if both {
            // The password and its repeat.
            let keep = self.answers.len().saturating_sub(2);
            self.answers.truncate(keep);
        } else {
            self.answers.pop();
        }
        Some(why)
    }
}

struct Tui {
    ui: Ui,
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// Lines entered and not yet taken by the driver.
    lines: VecDeque<Zeroizing<String>>,
    /// Ctrl-C (or Ctrl-D on an empty line): quit now, even while a request waits.
    quitting: bool,
    /// Secrets being asked for.
    ask: Option<Ask>,
    /// The terminal title last set (the unread count).
    title: Option<u32>,
    /// Why the connection ended, printed after the screen is restored.
    last_error: Option<String>,
    /// A `/delete` waiting for `yes`: the room.
    confirm: Option<String>,
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
        if let Some(e) = self.last_error.take() {
            eprintln!("sotto: {}", crate::text::neutralise(&e));
        }
    }
}

impl Tui {
    /// A file report: progress goes to the status bar, the rest to the status window.
    fn file_report(&mut self, r: crate::transfer::FileReport) {
        use crate::transfer::FileReport as F;
        match &r {
            F::Offered { id, name, size, .. } => {
                self.ui.transfers.insert(*id, (name.clone(), 0, *size));
            }
            F::Progress { id, done, total } => {
                if let Some(t) = self.ui.transfers.get_mut(id) {
                    (t.1, t.2) = (*done, *total);
                } else {
                    self.ui.transfers.insert(*id, (format!("{id:016x}"), *done, *total));
                }
                return;
            }
            F::Uploaded { id, .. } | F::Received { id, .. } | F::Declined { id } => {
                self.ui.transfers.remove(id);
            }
            _ => {}
        }
        let text = crate::transfer::describe(&r);
        for line in text.lines() {
            self.ui.info(0, line.to_string());
        }
    }

    fn redraw(&mut self) -> io::Result<()> {
        crate::term::check_signal(&mut self.last_error)?;
        let ui = &mut self.ui;
        ui.today = draw::day(now_ms(), ui.utc_offset_s);
        let size = self.terminal.size()?;
        ui.page = usize::from(size.height.saturating_sub(2)).max(1);
        self.terminal.draw(|f| draw::draw(ui, f))?;
        let unread = ui.unread();
        if self.title != Some(unread) {
            self.title = Some(unread);
            let title = if unread > 0 { format!("sotto ({unread})") } else { "sotto".to_string() };
            execute!(io::stdout(), SetTitle(title))?;
        }
        Ok(())
    }

    /// Completion candidates for `word`: commands first on the line, else @users or rooms.
    fn candidates(rooms: &[String], users: &[String], word: &str, first: bool) -> Vec<String> {
        let starts = |s: &String| s.starts_with(word) && s.as_str() != word;
        if first && word.starts_with('/') {
            return command::NAMES.iter().map(|s| s.to_string()).filter(starts).collect();
        }
        if word.starts_with('@') {
            return users.iter().map(|u| format!("@{u}")).filter(starts).collect();
        }
        rooms.iter().filter(|r| starts(r)).cloned().collect()
    }

    /// Starts asking for secrets (the first prompt).
    fn ask(&mut self, purpose: Purpose) {
        let ask = Ask { purpose, answers: Vec::new() };
        self.ui.prompt = ask.prompt().map(str::to_string);
        self.ask = Some(ask);
    }

    /// Takes one answer; acts when all are in.
    fn answer(&mut self, app: &mut App, secret: &str) {
        let Some(mut ask) = self.ask.take() else { return };
        ask.answers.push(Zeroizing::new(secret.to_string()));
        // What can be checked is checked at once, and only that answer asked again.
        if let Some(why) = ask.check() {
            self.ui.warn(format!("{why}; again"));
        }
        if let Some(next) = ask.prompt() {
            self.ui.prompt = Some(next.to_string());
            self.ask = Some(ask);
            return;
        }
        let a = |i: usize| ask.answers.get(i).map_or("", |s| s.as_str());
        let started = match &ask.purpose {
            Purpose::Register(name) => {
                self.ui.say("generating keys…");
                app.register_then_login(name, a(0), a(2))
            }
            Purpose::Login(name) => app.login(name, a(0), a(1)),
            Purpose::Create(room) if a(0).is_empty() => {
                let generated = crate::words::secret(crate::words::ROOM_WORDS);
                self.ui.say(format!("the password of {room} is: {}", generated.as_str()));
                self.ui.say("give it to its members out of band; it is not shown again");
                app.create_room(room, &generated)
            }
            Purpose::Create(room) => app.create_room(room, a(0)),
            Purpose::Join(room) => app.join_room(room, Some(a(0))),
            Purpose::Rekey(room) if a(0).is_empty() => {
                let generated = crate::words::secret(crate::words::ROOM_WORDS);
                self.ui.say(format!("the new password of {room} is: {}", generated.as_str()));
                self.ui.say("give it to the members who stay, out of band; it is not shown again");
                app.room_password(room, &generated)
            }
            Purpose::Rekey(room) => app.room_password(room, a(0)),
            Purpose::DeleteAccount => app.delete_account(a(0), a(1)),
            Purpose::Password => {
                self.ui.say("changing the password and passphrase…");
                app.change_password((a(0), a(1)), (a(2), a(4)))
            }
        };
        self.show(started);
    }

    fn show(&mut self, started: Result<(), Failure>) {
        if let Err(f) = started {
            self.failed(&f);
        }
    }

    fn failed(&mut self, f: &Failure) {
        self.ui.warn(format!("error: {}", command::describe(f)));
    }

    /// Checks what can be checked before asking for a room password.
    fn ready(&mut self, app: &App, room: &str) -> bool {
        if !app.logged_in() {
            self.ui.warn("log in first");
            return false;
        }
        if let Err(e) = sotto::room::normalize_name(room) {
            self.ui.warn(format!("error: {e}"));
            return false;
        }
        true
    }

    /// A line typed into the current window.
    fn text(&mut self, app: &mut App, text: &str) {
        let kind = self.ui.current().kind.clone();
        match &kind {
            Kind::Room(room) => self.say(app, room, text),
            Kind::Dm(user) => self.msg(app, user, text),
            Kind::Status => self.ui.warn("this is the status window: /join a room, /query @USER, or see /help"),
        }
    }

    /// A text over the limit: split into marked parts, said first, each
    /// queued as a line of its own (they go one after the other).
    fn split(&mut self, command: &str, text: &str) -> bool {
        if text.len() <= command::TEXT_MAX {
            return false;
        }
        let parts = command::split_text(text, command::TEXT_MAX);
        self.ui.say(format!(
            "{} bytes is over the limit of {} bytes a message: it goes as {} messages, marked (part 1/{}) and on",
            text.len(),
            command::TEXT_MAX,
            parts.len(),
            parts.len()
        ));
        for p in parts {
            self.lines.push_back(Zeroizing::new(format!("{command} {p}")));
        }
        true
    }

    /// Says `text` in `room`, shown at once as sending.
    fn say(&mut self, app: &mut App, room: &str, text: &str) {
        if self.split(&format!("/say {room}"), text) {
            return;
        }
        match app.say(room, text) {
            Ok(()) => {
                let room = sotto::room::normalize_name(room).unwrap_or_else(|_| room.to_string());
                let i = self.ui.window(Kind::Room(room));
                let me = self.ui.user.clone();
                self.ui.push(i, own(me, text, None));
            }
            Err(f) => self.failed(&f),
        }
    }

    /// Sends `text` to `user`, shown at once as sending, with its id for the marks that follow.
    fn msg(&mut self, app: &mut App, user: &str, text: &str) {
        let at = if user.starts_with('@') { "" } else { "@" };
        if self.split(&format!("/msg {at}{user}"), text) {
            return;
        }
        match app.send_dm_id(user, text) {
            Ok(id) => {
                let user = user.strip_prefix('@').unwrap_or(user);
                let user = sotto::account::normalize_username(user).unwrap_or_else(|_| user.to_string());
                let i = self.ui.window(Kind::Dm(user));
                let me = self.ui.user.clone();
                self.ui.push(i, own(me, text, Some(id)));
            }
            Err(f) => self.failed(&f),
        }
    }

    fn switch_room(&mut self, app: &App, room: &str) {
        match sotto::room::normalize_name(room) {
            Ok(room) if app.has_room(&room) => {
                let i = self.ui.window(Kind::Room(room));
                self.ui.switch(i);
            }
            Ok(room) => self.ui.warn(format!("not in room {room}; /join it first")),
            Err(e) => self.ui.warn(format!("error: {e}")),
        }
    }

    fn query(&mut self, user: &str) {
        let user = user.strip_prefix('@').unwrap_or(user);
        match sotto::account::normalize_username(user) {
            Ok(user) => {
                let i = self.ui.window(Kind::Dm(user));
                self.ui.switch(i);
            }
            Err(e) => self.ui.warn(format!("error: {e}")),
        }
    }

    /// The room named, or the current window's room.
    fn room_or_current(&mut self, room: Option<String>) -> Option<String> {
        match (room, &self.ui.current().kind) {
            (Some(room), _) => Some(room),
            (None, Kind::Room(r)) => Some(r.clone()),
            (None, _) => {
                self.ui.warn("name a room: this window is not one");
                None
            }
        }
    }
}

/// A line of our own, as sent now (a direct message with its id).
fn own(me: Option<String>, text: &str, id: Option<u64>) -> Entry {
    Entry {
        ts: Some(now_ms()),
        from: me,
        text: text.to_string(),
        marks: vec![],
        tone: Tone::Own,
        history: false,
        delivery: Some(Delivery::Sending),
        id,
    }
}

impl Frontend for Tui {
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow> {
        if self.ask.is_some() {
            self.answer(app, line);
            return self.redraw().map(|()| Flow::Continue);
        }
        // A command instead of the answer (Ctrl-C's /quit too) is a no, and is carried out.
        if let Some(room) = self.confirm.take_if(|_| line.trim_start().starts_with('/')) {
            self.ui.say(format!("not deleted: {room} is kept"));
        }
        if let Some(room) = self.confirm.take() {
            if command::confirmed(line) {
                let started = app.delete_room(&room);
                self.show(started);
            } else {
                self.ui.say(format!("not deleted: {room} is kept"));
            }
            return self.redraw().map(|()| Flow::Continue);
        }
        let command = match command::parse(line) {
            Ok(None) => return Ok(Flow::Continue),
            Ok(Some(c)) => c,
            Err(ParseError::Usage(cmd)) => {
                self.ui.warn(format!("wrong arguments for /{cmd}; see /help"));
                return self.redraw().map(|()| Flow::Continue);
            }
            Err(ParseError::Unknown(cmd)) => {
                self.ui.warn(format!("unknown command /{cmd}; see /help"));
                return self.redraw().map(|()| Flow::Continue);
            }
        };
        match command {
            Command::Quit => return Ok(Flow::Quit),
            Command::Text(text) => self.text(app, &text),
            Command::Help => self.ui.say(HELP),
            // Secrets typed on the line would stay on the screen.
            Command::Register { creds: Some(_), .. } | Command::Login { creds: Some(_), .. } => {
                self.ui.warn("type only the name: the password and passphrase are asked for, hidden")
            }
            Command::Create { password: Some(_), .. } | Command::Join { password: Some(_), .. } => {
                self.ui.warn("type only the room: its password is asked for, hidden")
            }
            // The name's format is checked before any prompt.
            Command::Register { name, creds: None } | Command::Login { name, creds: None }
                if sotto::account::normalize_username(&name).is_err() =>
            {
                if let Err(e) = sotto::account::normalize_username(&name) {
                    self.ui.warn(format!("error: {e}"));
                }
            }
            Command::Register { name, creds: None } => self.ask(Purpose::Register(name)),
            Command::Login { name, creds: None } => self.ask(Purpose::Login(name)),
            Command::Create { room, password: None } => {
                if self.ready(app, &room) {
                    self.ask(Purpose::Create(room));
                }
            }
            Command::Join { room, password: None } => {
                if self.ready(app, &room) {
                    if app.has_room(&room) {
                        let started = app.join_room(&room, None);
                        self.show(started);
                    } else {
                        self.ask(Purpose::Join(room));
                    }
                }
            }
            Command::Room(Some(room)) => self.switch_room(app, &room),
            Command::Room(None) => self.ui.say(format!("current window: {}", self.ui.current().label())),
            Command::Query(user) => self.query(&user),
            Command::Say { room, text } => self.say(app, &room, &text),
            Command::Who(Some(room)) => {
                let started = app.who_room(&room);
                self.show(started);
            }
            Command::Who(None) => {
                let started = app.who_online();
                self.show(started);
            }
            Command::Leave(room) => {
                if let Some(room) = self.room_or_current(room) {
                    let started = app.leave_room(&room);
                    self.show(started);
                }
            }
            Command::Rooms => {
                let started = app.list_rooms();
                self.show(started);
            }
            Command::Delete(room) => {
                if self.ready(app, &room) {
                    self.ui.warn(command::delete_question(&room));
                    self.confirm = Some(room);
                }
            }
            Command::Dm(user) => {
                let started = app.dm_request(&user);
                self.show(started);
            }
            Command::Accept(user) => {
                let started = app.dm_accept(&user);
                self.show(started);
            }
            Command::Reject(user) => {
                let started = app.dm_reject(&user);
                self.show(started);
            }
            Command::Msg { user, text } => self.msg(app, &user, &text),
            Command::Contacts => {
                let started = app.contacts();
                self.show(started);
            }
            Command::Fingerprint(user) => {
                let started = app.fingerprint(&user);
                self.show(started);
            }
            Command::Trust(user) => {
                let started = app.trust(&user);
                self.show(started);
            }
            Command::Send { to, path } => {
                let started = app.send_file(&to, &path).map(|_| ());
                self.show(started);
            }
            Command::Get { id, dir } => {
                let started = app.get_file(&id, dir.as_deref());
                self.show(started);
            }
            Command::Decline(id) => {
                let started = app.decline_file(&id);
                self.show(started);
            }
            Command::Kick { user, reason } => {
                let started = app.kick(&user, &reason);
                self.show(started);
            }
            Command::Announce(text) => {
                let started = app.announce(&text);
                self.show(started);
            }
            Command::Files => {
                let list = crate::transfer::describe(&app.list_files());
                for line in list.lines() {
                    self.ui.say(line.to_string());
                }
            }
            Command::History(user) => {
                let started = app.history(&user);
                self.show(started);
            }
            Command::RoomKick { room, user, reason, ban } => {
                let started = app.room_kick(&room, &user, &reason, ban);
                self.show(started);
            }
            Command::RoomUnban { room, user } => {
                let started = app.room_unban(&room, &user);
                self.show(started);
            }
            Command::RoomOwner { room, user } => {
                let started = app.room_owner(&room, &user);
                self.show(started);
            }
            Command::RoomPassword { password: Some(_), .. }
            | Command::DeleteAccount(Some(_))
            | Command::Password(Some(_)) => self.ui.warn("type only the command: the secrets are asked for, hidden"),
            Command::RoomPassword { room, password: None } => {
                if self.ready(app, &room) {
                    self.ask(Purpose::Rekey(room));
                }
            }
            Command::Password(None) => {
                if app.logged_in() {
                    self.ask(Purpose::Password);
                } else {
                    self.ui.warn("error: log in first");
                }
            }
            Command::LogoutEverywhere => {
                let started = app.logout_everywhere();
                self.show(started);
            }
            Command::DeleteAccount(None) => {
                if app.logged_in() {
                    self.ui.say("deleting your account removes it from the server for good");
                    self.ask(Purpose::DeleteAccount);
                } else {
                    self.ui.warn("error: log in first");
                }
            }
            Command::Unsend { target, id } => {
                let started = app.unsend(target.as_deref(), &id);
                self.show(started);
            }
            Command::Forget(user) => {
                let started = app.forget(&user);
                self.show(started);
            }
            Command::Users => {
                let started = app.list_users();
                self.show(started);
            }
        }
        self.redraw()?;
        Ok(Flow::Continue)
    }

    fn report(&mut self, report: Report) -> io::Result<()> {
        match report {
            Report::Registered { user, key_path, fingerprint } => {
                self.ui.say(format!("registered {user}; private keys saved in {}", key_path.display()));
                self.ui.say(format!("identity fingerprint: {}", group(&fingerprint)));
                self.ui.say(format!("log in with /login {user}"));
            }
            Report::Authenticated { user, uid, fingerprint, rooms, contacts, .. } => {
                for c in contacts {
                    if !c.trusted {
                        self.ui.key_changed.insert(c.name.clone());
                    }
                    self.ui.contacts.insert(c.name, c.fingerprint);
                }
                self.ui.info(0, format!("logged in as {user} (uid {uid:016x})"));
                if let Some(fp) = fingerprint {
                    self.ui.info(0, format!("identity fingerprint: {}", group(&fp)));
                }
                // Each room you are in has its window; the current window is kept.
                for room in &rooms {
                    self.ui.window(Kind::Room(room.clone()));
                }
                self.ui.info(0, command::rooms_line(&rooms));
                if self.ui.current != 0 {
                    let here = self.ui.current().label();
                    self.ui.say(format!("logged in as {user}; still in {here}"));
                }
                self.ui.user = Some(user);
            }
            Report::AccountDeleted { user } => self.ui.info(0, format!("account {user} deleted")),
            Report::Done { cmd: "create", room, .. } => {
                let i = self.ui.window(Kind::Room(room.clone()));
                self.ui.switch(i);
                self.ui.info(i, format!("created room {room}; you own it"));
            }
            Report::Done { cmd: "say", room, id } => self.ui.mark_said(&room, id),
            Report::Done { cmd: "password", .. } => self.ui.say(
                "password and passphrase changed; your other sessions were logged out and the files here re-sealed",
            ),
            Report::Done { cmd: "logout-everywhere", .. } => {
                self.ui.say("logged out everywhere else: your other sessions were closed and every saved login revoked")
            }
            Report::Done { cmd, room, .. } if room.is_empty() => self.ui.say(format!("{cmd}: done")),
            Report::Done { cmd, room, .. } => self.ui.say(format!("{cmd} {room}: done")),
            Report::Room(ev) => self.room_event(ev),
            Report::Dm(ev) => self.dm_event(ev),
            Report::Disconnected(why) => {
                self.ui.link = Link::Reconnecting;
                self.ui.alert(0, format!("{why}; reconnecting"));
            }
            Report::Reconnected { server } => {
                self.ui.link = Link::Up;
                self.ui.info(0, format!("reconnected to {server}"));
                // The status bar names the node of the connection.
                self.ui.server = server;
            }
            Report::File(r) => self.file_report(r),
            Report::Failed(f) => {
                match f.cmd.as_str() {
                    "say" => self.ui.mark_failed(true),
                    "msg" => self.ui.mark_failed(false),
                    // The bars come back with the next progress of what still runs.
                    "send" | "get" => self.ui.transfers.clear(),
                    _ => {}
                }
                self.failed(&f);
            }
            Report::Warning(w) => self.ui.warn(format!("warning: {w}")),
            Report::Account(a) => self.ui.warn(a.describe()),
            Report::Notice(n) => self.ui.info(0, n),
            Report::Lost(why) => {
                self.ui.alert(0, format!("error: {why}"));
                self.last_error = Some(why);
            }
            Report::Bye => return Ok(()),
        }
        self.redraw()
    }

    fn idle(&mut self) -> io::Result<()> {
        self.redraw()
    }

    fn keys_while_busy(&self) -> bool {
        true
    }

    fn quit_requested(&mut self) -> bool {
        self.quitting
    }

    fn next_line(&mut self, _input: &mut Input) -> Option<Zeroizing<String>> {
        self.lines.pop_front()
    }

    fn readable(&mut self, _input: &mut Input) -> io::Result<()> {
        // Every event ready now: crossterm then holds nothing poll(2) cannot see.
        while crossterm::event::poll(Duration::ZERO)? {
            let Some(action) = crate::keys::action(crossterm::event::read()?) else { continue };
            let users: Vec<String> = self.ui.users.iter().cloned().collect();
            let rooms: Vec<String> = self
                .ui
                .windows
                .iter()
                .filter_map(|w| match &w.kind {
                    Kind::Room(r) => Some(r.clone()),
                    _ => None,
                })
                .collect();
            let out = self.ui.update(action, |word, first| Tui::candidates(&rooms, &users, word, first));
            match out {
                None => {}
                Some(Output::Line(line)) => self.lines.push_back(Zeroizing::new(line)),
                Some(Output::Secret(s)) => self.lines.push_back(s),
                Some(Output::Cancelled) => {
                    self.ask = None;
                    self.ui.say("cancelled");
                }
                Some(Output::Quit) => {
                    self.ask = None;
                    self.ui.prompt = None;
                    self.quitting = true;
                    self.lines.push_back(Zeroizing::new("/quit".to_string()));
                }
            }
        }
        self.redraw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_the_secrets_each_request_needs() {
        let mut ask = Ask { purpose: Purpose::Register("a".into()), answers: Vec::new() };
        assert_eq!(ask.prompt(), Some("Password: "));
        ask.answers.push(Zeroizing::new("x".into()));
        ask.answers.push(Zeroizing::new("x".into()));
        assert_eq!(ask.prompt(), Some("Passphrase (three words): "));
        ask.answers.push(Zeroizing::new("x".into()));
        assert_eq!(ask.prompt(), None);
        let mut ask = Ask { purpose: Purpose::Create("r".into()), answers: Vec::new() };
        assert!(ask.prompt().is_some_and(|p| p.starts_with("Room password")));
        ask.answers.push(Zeroizing::new(String::new()));
        assert_eq!(ask.prompt(), None, "Enter alone: generated, no repeat");
    }

    #[test]
    fn asks_a_refused_answer_again_at_once() {
        let answer = |ask: &mut Ask, s: &str| {
            ask.answers.push(Zeroizing::new(s.into()));
            ask.check()
        };
        let mut ask = Ask { purpose: Purpose::Register("a".into()), answers: Vec::new() };
        assert!(answer(&mut ask, "short").is_some());
        assert_eq!(ask.prompt(), Some("Password: "));
        assert!(answer(&mut ask, "password123").is_none());
        assert!(answer(&mut ask, "password124").is_some_and(|w| w.contains("do not match")));
        assert_eq!(ask.prompt(), Some("Password: "), "a mismatch asks for both again");
        assert!(answer(&mut ask, "password123").is_none() && answer(&mut ask, "password123").is_none());
        assert!(answer(&mut ask, "two words").is_some());
        assert_eq!(ask.prompt(), Some("Passphrase (three words): "));
        assert!(answer(&mut ask, "red green blue").is_none());
        assert_eq!(ask.prompt(), None);
        let mut ask = Ask { purpose: Purpose::Create("r".into()), answers: Vec::new() };
        assert!(answer(&mut ask, "short").is_some());
        assert!(answer(&mut ask, "").is_none(), "Enter alone: generated");
        assert_eq!(ask.prompt(), None);
    }

    #[test]
    fn help_names_the_size_limit() {
        assert!(HELP.contains("at most 16384 bytes"), "{HELP}");
    }

    #[test]
    fn completes_commands_rooms_and_users() {
        let windows = vec!["lobby".to_string()];
        let users = vec!["bob".to_string(), "bea".to_string()];
        assert_eq!(Tui::candidates(&windows, &users, "/que", true), ["/query"]);
        assert_eq!(
            Tui::candidates(&windows, &users, "/room", true),
            ["/room-ban", "/room-kick", "/room-owner", "/room-password", "/room-unban", "/rooms"]
        );
        assert_eq!(Tui::candidates(&windows, &users, "/rooms", true), Vec::<String>::new());
        assert_eq!(Tui::candidates(&windows, &users, "@b", false), ["@bob", "@bea"]);
        assert_eq!(Tui::candidates(&windows, &users, "lo", false), ["lobby"]);
        assert!(Tui::candidates(&windows, &users, "/que", false).is_empty());
    }
}
