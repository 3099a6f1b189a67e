//! Client driver: one poll(2) loop over standard input and the server socket,
//! shared by the batch and interactive front ends. The only place that joins
//! the session, the connection, the clock and the local files (key file, room
//! keys, pins, contacts, inbox, outbox).
//!
//! Invariant: every server record reaches the session in order, at any time
//! (unsolicited events included); input lines are taken only while no request
//! is in flight, so each command's outcome is reported before the next starts;
//! local state the session changed is saved before the event that follows
//! from it is reported, and before anything is sent (the outbox first);
//! mailbox acknowledgements go out only when those saves succeeded. A
//! connection lost after a login is restored after a random delay (jitter,
//! `resume`), by resuming with the latest ticket when there is one (spent, in
//! memory and in the store, before it is offered) and else, or when it is
//! refused, by a full handshake and a login with the remembered secrets;
//! before a login a lost connection ends the client. A password change is
//! staged in the key store before `chpw` is sent and committed on its 200
//! (`store::reseal`).

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use sotto::identity::{self, Signer};
use sotto::ticket::HeldTicket;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::conn::{self, Conn, ConnError};
use crate::contacts::{self, Contacts};
use crate::inbox::{self, Inbox};
use crate::input::Input;
use crate::keyring;
use crate::keystore::{self, KeyFileError};
use crate::outbox::{self, Outbox};
use crate::pins::{self, PinsError};
use crate::ratchets::{self, Sessions};
use crate::resume;
use crate::servers::Servers;
use crate::session::{AccountEvent, ContactInfo, DmEvent, DmLocal, Event, Failure, Local, RoomEvent, Session};
use crate::store::Store;
use crate::transfer::{self, FileReport, Target, Transfers};
use crate::vault::{self, Kind};

/// How often kept direct messages are checked for erasure.
const TICK_MS: u64 = 1000;
/// A server silent for this many heartbeat intervals is treated as gone.
const SILENT_INTERVALS: u64 = 3;

/// Client timers from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a shown DM is kept.
    pub dm_ttl_ms: u64,
    /// A quiet session sends a heartbeat this often.
    pub heartbeat_ms: u64,
}

/// What the front ends show, in the order it happened.
pub enum Report {
    /// Registration succeeded and the keys were saved.
    Registered {
        /// Normalised user name.
        user: String,
        /// Where the private keys are.
        key_path: PathBuf,
        /// Identity fingerprint, hex.
        fingerprint: String,
    },
    /// Login succeeded.
    Authenticated {
        /// Normalised user name.
        user: String,
        /// The server's UID for the user.
        uid: u64,
        /// Identity fingerprint from the local key file, hex, when it opened.
        fingerprint: Option<String>,
        /// The rooms whose keys are stored (the rooms you are in), in name order.
        rooms: Vec<String>,
        /// The contacts, with their fingerprints and trust (for the status bar).
        contacts: Vec<ContactInfo>,
        /// The connection was resumed with a ticket (no password or passphrase sent).
        resumed: bool,
    },
    /// A room command succeeded (`create`, `say`, `leave`, `delete`, the `room-*` commands).
    Done {
        /// Command name without the slash.
        cmd: &'static str,
        /// Canonical room name.
        room: String,
        /// For `say`: the message's id, as `/unsend ROOM ID` takes it.
        id: Option<u64>,
    },
    /// The account was deleted; the run ends (a `Bye` follows).
    AccountDeleted {
        /// Its name.
        user: String,
    },
    /// Something happened in a room.
    Room(RoomEvent),
    /// Something about direct messages.
    Dm(DmEvent),
    /// The connection was lost after a login; reconnecting.
    Disconnected(String),
    /// The connection is back, to this address (an `Authenticated` follows).
    Reconnected {
        /// The node reached (HOST:PORT, as given in `--server`).
        server: String,
    },
    /// A command failed.
    Failed(Failure),
    /// The user should know, but nothing failed.
    Warning(String),
    /// Something about files (docs/CLIENT.md "Files").
    File(FileReport),
    /// A diagnostic (ignored server message and the like).
    Notice(String),
    /// About the account: the login record, a kick (the client then ends:
    /// it does not reconnect into a ban), an announcement.
    Account(AccountEvent),
    /// The connection ended; the client exits with status 1.
    Lost(String),
    /// Normal end (`/quit` or end of input).
    Bye,
}

/// Whether the loop goes on after a command.
pub enum Flow {
    /// Keep going.
    Continue,
    /// Say bye and exit 0.
    Quit,
}

/// How one node of a reconnection round went.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// A connection is up.
    Up,
    /// The node refused the TCP connection: nothing listens there now.
    Refused,
    /// Anything else: unreachable, slow, closed, or the handshake failed.
    Failed,
}

impl Attempt {
    fn after(e: &conn::ConnectError) -> Attempt {
        if e.refused() {
            Attempt::Refused
        } else {
            Attempt::Failed
        }
    }
}

/// A way of talking to the user.
pub trait Frontend {
    /// Handles one input line; may start a request through `app`.
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow>;
    /// Shows one report.
    fn report(&mut self, report: Report) -> io::Result<()>;
    /// Called before waiting while nothing is in flight (a prompt, for people).
    fn idle(&mut self) -> io::Result<()>;
    /// The next input line, if one is complete (default: a line of standard input).
    fn next_line(&mut self, input: &mut Input) -> Option<Zeroizing<String>> {
        input.next_line()
    }
    /// Standard input is readable (default: read it into `input`; the
    /// full-screen front end reads key events instead).
    fn readable(&mut self, input: &mut Input) -> io::Result<()> {
        input.fill()
    }
    /// Reads keys while a request waits for its answer (the full-screen front
    /// end: typing goes on, and Ctrl-C quits at once); default no.
    fn keys_while_busy(&self) -> bool {
        false
    }
    /// The user asked to quit now, whatever is in flight (Ctrl-C in the full screen).
    fn quit_requested(&mut self) -> bool {
        false
    }
}

/// The connection, the protocol session and local state of one run.
pub struct App {
    /// `None` while the connection is lost (after a login).
    conn: Option<Conn>,
    /// The nodes to try, in order, at every reconnection (`--server`).
    servers: Servers,
    /// The node of the current (or last) connection.
    server: String,
    session: Session,
    home: PathBuf,
    /// Where the logged-in user's room keys, pins and DM files are saved.
    files: Option<UserFiles>,
    /// How long a shown direct message is kept (`--dm-ttl`).
    dm_ttl_ms: u64,
    /// Heartbeat interval; silence for `SILENT_INTERVALS` of it means the server is gone.
    heartbeat_ms: u64,
    /// When to try to connect again (while the connection is lost).
    next_attempt: Option<u64>,
    /// Failed reconnection attempts since the connection was lost (the jitter grows with them).
    failures: u32,
    /// The latest resumption ticket, with its secret and the verifier of the
    /// login secrets it was issued to (never shown; `resume`).
    ticket: Option<resume::Kept>,
    /// The key store opened at `/login` to look for a ticket, for that user:
    /// taken at `Authenticated` rather than derived again.
    early_store: Option<(String, Store)>,
    /// A password change got no answer: staged in the key store until a login
    /// again says whether it took effect.
    password_unsure: bool,
    /// Set when the run must end with this status.
    exit: Option<u8>,
    /// A save failed since the last flush: held acknowledgements are dropped.
    save_failed: bool,
    /// Standard input; front ends read secrets through it.
    pub input: Input,
    /// File uploads and downloads, beside the session.
    transfers: Transfers,
    /// The logged-in user's name.
    me: Option<String>,
    /// Manifests sent as DMs, by DM id: the file they announce.
    manifest_dms: std::collections::HashMap<u64, u64>,
    /// A manifest sent to a room, waiting for its `ok`: (room, file id).
    manifest_room: Option<(String, u64)>,
}

/// The logged-in user's local files, and whether each may be written.
struct UserFiles {
    /// The user's key store: seals every file; `None` when it could not be opened (then nothing is written).
    store: Option<Store>,
    /// False when the room keys file could not be used (then it is left alone).
    rooms_writable: bool,
    /// False when the pins file could not be used (then it is left alone).
    pins_writable: bool,
    /// False when a DM file could not be read (then they are left alone, and nothing is acknowledged).
    dm_writable: bool,
}

/// Unix milliseconds now (the only clock the client reads).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl App {
    /// Wraps an established connection to `server`, one of `servers`.
    pub fn new(conn: Conn, servers: &Servers, server: &str, home: PathBuf, input: Input, timing: Timing) -> App {
        App {
            heartbeat_ms: timing.heartbeat_ms,
            conn: Some(conn),
            servers: servers.clone(),
            server: server.to_string(),
            session: Session::new(),
            home,
            files: None,
            dm_ttl_ms: timing.dm_ttl_ms,
            next_attempt: None,
            failures: 0,
            ticket: None,
            early_store: None,
            password_unsure: false,
            exit: None,
            save_failed: false,
            input,
            transfers: Transfers::new(),
            me: None,
            manifest_dms: Default::default(),
            manifest_room: None,
        }
    }

    /// True while a command waits for its answer (no input line is taken).
    fn busy(&self) -> bool {
        self.session.busy() || self.transfers.busy()
    }

    /// `/send @USER PATH` or `/send ROOM PATH`: the file is hashed, reserved
    /// on the server, announced by a manifest in a DM or room message, then uploaded.
    pub fn send_file(&mut self, to: &str, path: &str) -> Result<u64, Failure> {
        let cmd = "send";
        if !self.session.logged_in() {
            return Err(Failure::new(cmd, 401, "log in first"));
        }
        let (target, peer_uid) = if let Some(user) = to.strip_prefix('@') {
            let user = user.to_ascii_lowercase();
            match self.session.contact_uid(&user) {
                Some(uid) => (Target::User(user), uid),
                None => {
                    return Err(Failure::new(
                        cmd,
                        403,
                        format!(
                        "{user} is not a trusted contact: /dm @{user} first (and /trust @{user} after a key change)"
                    ),
                    ))
                }
            }
        } else {
            let room = sotto::room::normalize_name(to).map_err(|e| Failure::new(cmd, 400, e.to_string()))?;
            if !self.session.has_room(&room) {
                return Err(Failure::new(cmd, 403, format!("you are not in {room}: /join {room} first")));
            }
            (Target::Room(room), 0)
        };
        self.transfers.send(target, peer_uid, std::path::Path::new(path), now_ms())
    }

    /// `/get ID [DIR]` (without DIR: the current directory).
    pub fn get_file(&mut self, id: &str, dir: Option<&str>) -> Result<(), Failure> {
        self.transfers.get(id, std::path::Path::new(dir.unwrap_or(".")), now_ms())
    }

    /// `/decline ID`.
    pub fn decline_file(&mut self, id: &str) -> Result<(), Failure> {
        self.transfers.decline(id, now_ms())
    }

    /// `/files` (local): the answer is reported at once.
    pub fn list_files(&mut self) -> FileReport {
        self.transfers.listing()
    }

    /// Starts a registration (validates, generates keys, queues the request).
    pub fn register(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.register(name, password, passphrase, now_ms())
    }

    /// Starts a registration that logs in once the account exists (interactive front ends).
    pub fn register_then_login(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.register_then_login(name, password, passphrase, now_ms())
    }

    /// Starts a login: by resuming with the ticket the key store holds for
    /// this account, when the password opens it, the password and passphrase
    /// derive the secrets the ticket was issued to (its verifier) and the
    /// server accepts the ticket; else (silently) with the password and
    /// passphrase, so that the server checks them (a 401, a failed-login
    /// record and the back-off, as without a ticket).
    pub fn login(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        let creds = Session::credentials(name, password, passphrase)?;
        self.session.ready("login")?;
        self.early_store = None;
        let stored = self.stored_ticket(creds.username(), password);
        if let Some(held) = stored.and_then(|kept| kept.for_login(&creds.verifier(), now_ms())) {
            let resumed = conn::dial(&self.server).ok().and_then(|dialed| self.offer(dialed, &held));
            if let Some(conn) = resumed {
                // The connection of the start-up handshake is closed: the resumed one replaces it.
                self.conn = Some(conn);
                return self.session.login_resumed(creds, now_ms());
            }
        }
        self.session.login_with(creds, now_ms())
    }

    /// The ticket in `user`'s key store, when `password` opens it (the store
    /// is kept for the login's `Authenticated`); not yet checked against the
    /// typed secrets ([`resume::Kept::for_login`]).
    fn stored_ticket(&mut self, user: &str, password: &str) -> Option<resume::Kept> {
        let mut store = Store::open_settled(&self.home, user, password).ok()?;
        let kept = store.load(resume::KIND).ok().flatten().and_then(|p| resume::decode(&p).ok().flatten());
        self.early_store = Some((user.to_string(), store));
        kept
    }

    /// Offers `held` on a dialed connection; the session's connection when
    /// the server resumed it. The ticket is spent (removed from the key store)
    /// before it is offered, never after: a refused ticket, or one a crash
    /// interrupted, is not offered again.
    fn offer(&mut self, dialed: conn::Dialed, held: &HeldTicket) -> Option<Conn> {
        let store = match (self.files.as_mut(), self.early_store.as_mut()) {
            (Some(files), _) => files.store.as_mut(),
            (None, Some((_, store))) => Some(store),
            (None, None) => None,
        };
        if let Some(store) = store {
            // Not durably spent: not offered (a full login instead).
            store.save(resume::KIND, &resume::encode(None)).ok()?;
        }
        conn::resume(dialed, held).ok()
    }

    /// Saves the held ticket (or none) in the key store, if one is open.
    fn save_ticket(&mut self) -> Result<(), String> {
        let Some(store) = self.files.as_mut().and_then(|f| f.store.as_mut()) else { return Ok(()) };
        store
            .save(resume::KIND, &resume::encode(self.ticket.as_ref()))
            .map_err(|e| format!("the resumption ticket could not be saved: {e}"))
    }

    /// Starts `/logout-everywhere`: the held ticket goes first (the server revokes every one).
    pub fn logout_everywhere(&mut self) -> Result<(), Failure> {
        self.session.ready("logout-everywhere")?;
        self.ticket = None;
        self.save_ticket().map_err(|e| Failure::new("logout-everywhere", 500, e))?;
        self.session.logout_everywhere(now_ms())
    }

    /// Starts `/password`: the new password and passphrase, proven by the
    /// current ones. The key store is re-sealed under the new password beside
    /// its files first (nothing is sent when that fails), and switched to it
    /// on the server's 200.
    pub fn change_password(&mut self, old: (&str, &str), new: (&str, &str)) -> Result<(), Failure> {
        let cmd = "password";
        let (current, next) = self.session.password_change(old, new)?;
        let Some(store) = self.files.as_mut().and_then(|f| f.store.as_mut()) else {
            return Err(Failure::new(
                cmd,
                409,
                "the local key store is not open in this session: it would stay sealed under the old password; \
                 nothing was changed",
            ));
        };
        store.stage_password(new.0).map_err(|e| {
            Failure::new(cmd, 409, format!("the local files cannot be re-sealed ({e}); nothing was changed"))
        })?;
        self.password_unsure = false;
        // The change revokes every ticket: the held one goes now, a fresh one follows the 200.
        self.ticket = None;
        let sent = self.save_ticket().map_err(|e| Failure::new(cmd, 500, e));
        let sent = sent.and_then(|()| self.session.change_password(current, next, now_ms()));
        if sent.is_err() {
            self.abort_password();
        }
        sent
    }

    /// Drops a staged password change; a warning when its files could not all be removed.
    fn abort_password(&mut self) -> Option<String> {
        let store = self.files.as_mut().and_then(|f| f.store.as_mut())?;
        let e = store.abort_password().err()?;
        Some(format!(
            "the files staged for the new password could not all be removed ({e}); the next login removes them"
        ))
    }

    /// Starts `create ROOM PASSWORD`.
    pub fn create_room(&mut self, room: &str, password: &str) -> Result<(), Failure> {
        self.session.create_room(room, password, now_ms())
    }

    /// Starts `join ROOM [PASSWORD]` (without one, with the stored keys).
    pub fn join_room(&mut self, room: &str, password: Option<&str>) -> Result<(), Failure> {
        self.session.join_room(room, password, now_ms())
    }

    /// Starts `say ROOM TEXT`.
    pub fn say(&mut self, room: &str, text: &str) -> Result<(), Failure> {
        refuse_marker("say", text)?;
        self.session.say(room, text, now_ms())
    }

    /// Starts `leave ROOM`.
    pub fn leave_room(&mut self, room: &str) -> Result<(), Failure> {
        self.session.leave_room(room, now_ms())
    }

    /// Starts `rooms`.
    pub fn list_rooms(&mut self) -> Result<(), Failure> {
        self.session.list_rooms(now_ms())
    }

    /// Starts `who ROOM`.
    pub fn who_room(&mut self, room: &str) -> Result<(), Failure> {
        self.session.who_room(room, now_ms())
    }

    /// Starts `who` without a room: who is online of the users sharing a room or a DM channel.
    pub fn who_online(&mut self) -> Result<(), Failure> {
        self.session.who_online(now_ms())
    }

    /// Starts `/kick USER [REASON]` (admins).
    pub fn kick(&mut self, user: &str, reason: &str) -> Result<(), Failure> {
        self.session.kick(user, reason, now_ms())
    }

    /// Starts `/announce TEXT` (admins).
    pub fn announce(&mut self, text: &str) -> Result<(), Failure> {
        self.session.announce(text, now_ms())
    }

    /// Starts `delete ROOM`.
    pub fn delete_room(&mut self, room: &str) -> Result<(), Failure> {
        self.session.delete_room(room, now_ms())
    }

    /// Starts `dm @USER`.
    pub fn dm_request(&mut self, user: &str) -> Result<(), Failure> {
        self.session.dm_request(user, now_ms())
    }

    /// Starts `accept @USER`.
    pub fn dm_accept(&mut self, user: &str) -> Result<(), Failure> {
        self.session.dm_accept(user, now_ms())
    }

    /// Starts `reject @USER`.
    pub fn dm_reject(&mut self, user: &str) -> Result<(), Failure> {
        self.session.dm_reject(user, now_ms())
    }

    /// Starts `msg @USER TEXT` (while disconnected: only kept in the outbox).
    pub fn send_dm(&mut self, user: &str, text: &str) -> Result<(), Failure> {
        refuse_marker("msg", text)?;
        self.session.send_dm(user, text, now_ms()).map(|_| ())
    }

    /// Starts `msg @USER TEXT`, and gives the id of the message (the one its
    /// `sent`, `pending` and `delivered` reports carry).
    pub fn send_dm_id(&mut self, user: &str, text: &str) -> Result<u64, Failure> {
        refuse_marker("msg", text)?;
        self.session.send_dm(user, text, now_ms())
    }

    /// Starts `/room-kick ROOM USER [REASON]` (or `/room-ban` with `ban`).
    pub fn room_kick(&mut self, room: &str, user: &str, reason: &str, ban: bool) -> Result<(), Failure> {
        self.session.room_kick(room, user, reason, ban, now_ms())
    }

    /// Starts `/room-unban ROOM USER`.
    pub fn room_unban(&mut self, room: &str, user: &str) -> Result<(), Failure> {
        self.session.room_unban(room, user, now_ms())
    }

    /// Starts `/room-owner ROOM USER`.
    pub fn room_owner(&mut self, room: &str, user: &str) -> Result<(), Failure> {
        self.session.room_owner(room, user, now_ms())
    }

    /// Starts `/room-password ROOM PASSWORD`.
    pub fn room_password(&mut self, room: &str, password: &str) -> Result<(), Failure> {
        self.session.room_password(room, password, now_ms())
    }

    /// Starts `/unsend ID`, `/unsend @USER ID` (a DM) or `/unsend ROOM ID` (a room message).
    pub fn unsend(&mut self, target: Option<&str>, id: &str) -> Result<(), Failure> {
        match target {
            Some(room) if !room.starts_with('@') => self.session.unsend_room(room, id, now_ms()),
            user => self.session.unsend_dm(user, id, now_ms()),
        }
    }

    /// `/forget @USER` (local).
    pub fn forget(&mut self, user: &str) -> Result<(), Failure> {
        self.session.forget(user)
    }

    /// Starts `/users`.
    pub fn list_users(&mut self) -> Result<(), Failure> {
        self.session.list_users(now_ms())
    }

    /// Starts `/delete-account` with the password and passphrase typed again.
    pub fn delete_account(&mut self, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.delete_account(password, passphrase, now_ms())
    }

    /// `contacts` (local).
    pub fn contacts(&mut self) -> Result<(), Failure> {
        self.session.list_contacts()
    }

    /// `fingerprint @USER` (local).
    pub fn fingerprint(&mut self, user: &str) -> Result<(), Failure> {
        self.session.fingerprint(user)
    }

    /// `trust @USER` (local).
    pub fn trust(&mut self, user: &str) -> Result<(), Failure> {
        self.session.trust(user)
    }

    /// `history @USER` (local).
    pub fn history(&mut self, user: &str) -> Result<(), Failure> {
        self.session.history(user)
    }

    /// True once logged in.
    pub fn logged_in(&self) -> bool {
        self.session.logged_in()
    }

    /// True when the keys of `room` are stored (a member, as far as this client knows).
    pub fn has_room(&self, room: &str) -> bool {
        self.session.has_room(room)
    }

    /// Runs until `/quit`, end of input or a lost connection; returns the exit status.
    pub fn run(&mut self, fe: &mut dyn Frontend) -> u8 {
        match self.run_loop(fe) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("sotto: {}", crate::text::neutralise(&e.to_string()));
                1
            }
        }
    }

    fn run_loop(&mut self, fe: &mut dyn Frontend) -> io::Result<u8> {
        loop {
            if let Some(code) = self.drain_frames(fe)? {
                return Ok(code);
            }
            while !self.busy() {
                let Some(line) = fe.next_line(&mut self.input) else { break };
                if let Flow::Quit = fe.command(self, &line)? {
                    fe.report(Report::Bye)?;
                    return Ok(0);
                }
                self.pump(fe)?;
                if let Some(code) = self.flush(fe)? {
                    return Ok(code);
                }
            }
            if !self.busy() {
                if self.input.exhausted() {
                    fe.report(Report::Bye)?;
                    return Ok(0);
                }
                fe.idle()?;
            }
            let (socket_ready, stdin_ready) = self.wait(fe.keys_while_busy())?;
            if socket_ready {
                if let Some(Err(e)) = self.conn.as_mut().map(Conn::fill) {
                    if let Some(code) = self.lost(fe, e)? {
                        return Ok(code);
                    }
                }
            }
            if stdin_ready {
                fe.readable(&mut self.input)?;
                if fe.quit_requested() {
                    // Saved state is already on disk (`pump` saves before it reports).
                    fe.report(Report::Bye)?;
                    return Ok(0);
                }
            }
            self.reconnect(fe)?;
            if let Some(code) = self.heartbeat(fe)? {
                return Ok(code);
            }
            self.session.handle_timeout(now_ms());
            self.pump(fe)?;
            if let Some(code) = self.flush(fe)? {
                return Ok(code);
            }
        }
    }

    /// poll(2) on the socket (if any), and on stdin while idle, until one is
    /// ready, a request is overdue, a reconnection is due, or the next tick.
    fn wait(&self, keys_while_busy: bool) -> io::Result<(bool, bool)> {
        let now = now_ms();
        let mut deadline = self.session.poll_timeout();
        if self.session.logged_in() {
            // Kept direct messages are checked for erasure every second.
            deadline = Some(deadline.map_or(now + TICK_MS, |d| d.min(now + TICK_MS)));
        }
        if let Some(at) = self.next_attempt {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        let timeout = match deadline {
            Some(d) => PollTimeout::try_from(d.saturating_sub(now)).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let want_stdin = (!self.busy() || keys_while_busy) && !self.input.eof_seen();
        let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let mut fds = Vec::with_capacity(2);
        if let Some(conn) = &self.conn {
            fds.push(PollFd::new(conn.as_fd(), PollFlags::POLLIN));
        }
        if want_stdin {
            fds.push(PollFd::new(self.input.fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok((false, false)),
            Err(e) => return Err(io::Error::from(e)),
        }
        let is_ready = |fd: Option<&PollFd>| fd.and_then(|f| f.revents()).is_some_and(|r| r.intersects(ready));
        let socket = if self.conn.is_some() { is_ready(fds.first()) } else { false };
        let stdin = want_stdin && is_ready(fds.last());
        Ok((socket, stdin))
    }

    /// Hands every whole record received to the session, and sends what it answers.
    fn drain_frames(&mut self, fe: &mut dyn Frontend) -> io::Result<Option<u8>> {
        loop {
            let Some(conn) = self.conn.as_mut() else { return Ok(None) };
            match conn.poll_frame() {
                Ok(None) => return Ok(None),
                Ok(Some(pt)) => {
                    let pt = Zeroizing::new(pt);
                    if self.transfers.owns(&pt) {
                        self.transfers.handle_frame(&pt, now_ms());
                    } else {
                        self.session.handle_frame(&pt, now_ms());
                    }
                    self.pump(fe)?;
                    if let Some(code) = self.flush(fe)? {
                        return Ok(Some(code));
                    }
                }
                Err(e) => {
                    if let Some(code) = self.lost(fe, e)? {
                        return Ok(Some(code));
                    }
                }
            }
        }
    }

    /// Saves what changed (the outbox before the message goes out), then
    /// sends every queued request, the acknowledgements included if the saves succeeded.
    fn flush(&mut self, fe: &mut dyn Frontend) -> io::Result<Option<u8>> {
        if let Some(code) = self.exit {
            return Ok(Some(code));
        }
        self.persist(fe)?;
        let durable = self.files.as_ref().is_some_and(|f| f.dm_writable && f.store.is_some());
        if std::mem::take(&mut self.save_failed) || !durable {
            self.session.discard_acks();
        } else {
            self.session.release_acks(now_ms());
        }
        while let Some(pt) = self.session.poll_transmit() {
            let Some(conn) = self.conn.as_mut() else { break };
            if let Err(e) = conn.send(&pt) {
                return self.lost(fe, e);
            }
        }
        // Chat first, then file requests and chunks.
        self.transfers.pump(now_ms());
        while let Some(pt) = self.transfers.poll_transmit() {
            let Some(conn) = self.conn.as_mut() else { break };
            if let Err(e) = conn.send(&pt) {
                return self.lost(fe, e);
            }
        }
        Ok(None)
    }

    /// A quiet logged-in session pings the server; a server silent for
    /// `SILENT_INTERVALS` heartbeats is treated as a lost connection.
    fn heartbeat(&mut self, fe: &mut dyn Frontend) -> io::Result<Option<u8>> {
        let Some(conn) = &self.conn else { return Ok(None) };
        if !self.session.logged_in() {
            return Ok(None);
        }
        let now = now_ms();
        if now.saturating_sub(conn.heard_ms()) > self.heartbeat_ms * SILENT_INTERVALS {
            return self.lost(fe, ConnError::Silent);
        }
        if now.saturating_sub(conn.sent_ms()) >= self.heartbeat_ms {
            self.session.heartbeat(now);
        }
        Ok(None)
    }

    /// The connection ended: before a login the client ends (status 1);
    /// after one, it reconnects with back-off.
    fn lost(&mut self, fe: &mut dyn Frontend, e: ConnError) -> io::Result<Option<u8>> {
        self.conn = None;
        if !self.session.logged_in() {
            fe.report(Report::Lost(e.to_string()))?;
            return Ok(Some(1));
        }
        self.session.connection_lost();
        self.transfers.connection_lost();
        self.schedule_retry(false);
        fe.report(Report::Disconnected(e.to_string()))?;
        self.pump(fe)?;
        Ok(None)
    }

    /// Plans the next connection attempt after a random delay, uniform in
    /// [0, min(2 s · 2^failures, 30 s)] (`resume::jitter_ms`), the first too;
    /// after a round where every node refused the connection, uniform in
    /// [0, 2 s] and not counted (`resume::round_wait_ms`): a refusal costs the
    /// servers nothing, and the clients find the node that serves as soon as
    /// it listens instead of waiting out a longer delay.
    fn schedule_retry(&mut self, refused_everywhere: bool) {
        let r = u64::from_be_bytes(sotto::crypto::random());
        let (wait, failures) = resume::round_wait_ms(self.failures, refused_everywhere, r);
        self.next_attempt = Some(now_ms().saturating_add(wait));
        self.failures = failures;
    }

    /// A password change whose answer was lost, settled by the login again:
    /// a resumption needs a ticket issued after the change's 200 (the held
    /// one was dropped when it was sent), so it took effect; a login with the
    /// remembered (current) secrets says it did not.
    fn settle_password(&mut self, resumed: bool, fe: &mut dyn Frontend) -> io::Result<()> {
        let Some(store) = self.files.as_mut().and_then(|f| f.store.as_mut()) else { return Ok(()) };
        if resumed {
            if let Err(e) = store.commit_password() {
                let w = format!("the local files could not all be switched to the new password ({e}); the next login with it completes it");
                return fe.report(Report::Warning(w));
            }
            return fe.report(Report::Done { cmd: "password", room: String::new(), id: None });
        }
        let w = self.abort_password();
        fe.report(Report::Warning("the password change did not take effect: the password is unchanged".into()))?;
        match w {
            Some(w) => fe.report(Report::Warning(w)),
            None => Ok(()),
        }
    }

    /// Tries to connect again when the jitter says so: one round over the
    /// nodes in order (docs/CLIENT.md "Several servers"), each with the held
    /// ticket while it is not spent, else (none, refused, closed) with a full
    /// handshake and a login again; the first to give a session ends the
    /// round. Only a round that failed everywhere waits for the jitter again.
    fn reconnect(&mut self, fe: &mut dyn Frontend) -> io::Result<()> {
        let Some(at) = self.next_attempt else { return Ok(()) };
        if self.conn.is_some() || now_ms() < at {
            return Ok(());
        }
        self.next_attempt = None;
        let servers = self.servers.clone();
        let mut refused_everywhere = true;
        for server in servers.iter() {
            match self.attempt(server, fe)? {
                Attempt::Up => {
                    self.server = server.to_string();
                    return Ok(());
                }
                Attempt::Refused => {}
                Attempt::Failed => refused_everywhere = false,
            }
        }
        // Said once: `Disconnected` when the connection dropped, then
        // `Reconnected` when it is back; not once per attempt.
        self.schedule_retry(refused_everywhere);
        Ok(())
    }

    /// One node of a reconnection round: resumes with the held ticket (no
    /// password is typed here: offered without a verifier check), or after a
    /// refusal, a close or without a ticket, logs in again after a full
    /// handshake. `Up` when a connection is up (the session's login follows).
    fn attempt(&mut self, server: &str, fe: &mut dyn Frontend) -> io::Result<Attempt> {
        if let Some(resume::Kept { held, verifier }) = self.ticket.take() {
            if held.expires_ms <= now_ms() {
                let _ = self.save_ticket();
            } else {
                let dialed = match conn::dial(server) {
                    Ok(dialed) => dialed,
                    Err(e) => {
                        // Not reachable: the ticket was not offered, and waits for the next node.
                        self.ticket = Some(resume::Kept { held, verifier });
                        return Ok(Attempt::after(&e));
                    }
                };
                if let Some(c) = self.offer(dialed, &held) {
                    self.conn = Some(c);
                    if !self.session.resume_again(now_ms()) {
                        fe.report(Report::Lost("cannot log in again: no credentials in memory".into()))?;
                        self.exit = Some(1);
                    }
                    return Ok(Attempt::Up);
                }
            }
            // Refused, closed or unverified: spent; a full handshake follows at once.
        }
        let c = match conn::connect(server) {
            Ok(c) => c,
            Err(e) => return Ok(Attempt::after(&e)),
        };
        self.conn = Some(c);
        if !self.session.relogin(now_ms()) {
            fe.report(Report::Lost("cannot log in again: no credentials in memory".into()))?;
            self.exit = Some(1);
        }
        Ok(Attempt::Up)
    }

    /// Reports every event the session has, saving what it changed first.
    fn pump(&mut self, fe: &mut dyn Frontend) -> io::Result<()> {
        self.persist(fe)?;
        loop {
            while let Some(ev) = self.session.poll_event() {
                self.process(ev, fe)?;
                self.persist(fe)?;
            }
            self.send_manifest();
            self.transfers.pump(now_ms());
            self.persist(fe)?;
            let mut any = false;
            while let Some(r) = self.transfers.poll_report() {
                any = true;
                match r {
                    Ok(r) => fe.report(Report::File(r))?,
                    Err(f) => fe.report(Report::Failed(f))?,
                }
            }
            if !any && !self.session.has_events() {
                return Ok(());
            }
        }
    }

    /// Hands the next due manifest to the session, as a DM or a room line.
    fn send_manifest(&mut self) {
        if self.session.busy() || self.manifest_room.is_some() {
            return;
        }
        let Some((id, target, text)) = self.transfers.manifest_due() else { return };
        let now = now_ms();
        let sent = match &target {
            Target::User(user) => self.session.send_dm(user, &text, now).map(|dm_id| {
                self.manifest_dms.insert(dm_id, id);
            }),
            Target::Room(room) => self.session.say(room, &text, now).map(|()| {
                self.manifest_room = Some((room.clone(), id));
            }),
        };
        if let Err(f) = sent {
            self.transfers.manifest_failed(id, f);
        }
    }

    /// Takes the session events that concern files: manifests sent and
    /// received. Returns the event when it is not one of those.
    fn file_event(&mut self, ev: Event) -> Option<Event> {
        match ev {
            Event::Dm(DmEvent::Sent { id, .. }) if self.manifest_dms.contains_key(&id) => {
                if let Some(file) = self.manifest_dms.remove(&id) {
                    self.transfers.manifest_stored(file);
                }
                None
            }
            Event::Dm(DmEvent::Pending { id, .. } | DmEvent::Delivered { id, .. } | DmEvent::Expired { id })
                if self.manifest_dms.contains_key(&id) =>
            {
                None
            }
            Event::Done { cmd: "say", room, .. } if self.manifest_room.as_ref().is_some_and(|(r, _)| *r == room) => {
                if let Some((_, file)) = self.manifest_room.take() {
                    self.transfers.manifest_stored(file);
                }
                None
            }
            Event::Failed(f) if f.cmd == "say" && self.manifest_room.is_some() => {
                if let Some((_, file)) = self.manifest_room.take() {
                    self.transfers.manifest_failed(file, f);
                }
                None
            }
            Event::Failed(f) if f.cmd == "msg" && !self.manifest_dms.is_empty() => {
                let latest = self.manifest_dms.iter().max_by_key(|(_, file)| **file).map(|(dm, file)| (*dm, *file));
                if let Some((dm, file)) = latest {
                    self.manifest_dms.remove(&dm);
                    self.transfers.manifest_failed(file, f);
                }
                None
            }
            Event::Dm(DmEvent::Message(m)) if transfer::is_manifest_text(&m.text) => {
                let me = self.me.clone().unwrap_or_default();
                if let Some(manifest) = transfer::manifest_of(&m.text) {
                    self.transfers.offered(&me, &m.from, None, &manifest, m.verified);
                }
                None
            }
            Event::Room(RoomEvent::Message(m)) if transfer::is_manifest_text(&m.text) => {
                let me = self.me.clone().unwrap_or_default();
                if let Some(manifest) = transfer::manifest_of(&m.text) {
                    if m.from != me {
                        self.transfers.offered(&me, &m.from, Some(&m.room), &manifest, m.verified);
                    }
                }
                None
            }
            Event::Dm(DmEvent::History { with, mut messages }) => {
                for m in messages.iter_mut().filter(|m| transfer::is_manifest_text(&m.text)) {
                    m.text = match transfer::manifest_of(&m.text) {
                        Some(f) => format!("[file {} ({} bytes)]", f.name().unwrap_or("?"), f.size.get()),
                        None => "[file]".to_string(),
                    };
                }
                Some(Event::Dm(DmEvent::History { with, messages }))
            }
            other => Some(other),
        }
    }

    /// Saves the room keys, the pins and the DM files the session changed.
    fn persist(&mut self, fe: &mut dyn Frontend) -> io::Result<()> {
        let Some(files) = &mut self.files else { return Ok(()) };
        let (rooms_writable, pins_writable, dm_writable) =
            (files.rooms_writable, files.pins_writable, files.dm_writable);
        let Some(store) = files.store.as_mut() else { return Ok(()) };
        let mut failed = Vec::new();
        if let Some(ring) = self.session.dirty_keyring() {
            if rooms_writable {
                if let Err(e) = keyring::save(store, ring) {
                    failed.push(format!("the room keys could not be saved: {e}"));
                }
            }
        }
        if let Some(pins) = self.session.dirty_pins() {
            if pins_writable {
                if let Err(e) = pins::save(store, pins) {
                    failed.push(format!("the pinned keys could not be saved: {e}"));
                }
            }
        }
        let save =
            |store: &mut Store, kind: Kind, plain: Option<Zeroizing<Vec<u8>>>, what: &str| match (plain, dm_writable) {
                (Some(plain), true) => {
                    store.save(kind, &plain).err().map(|e| format!("the {what} could not be saved: {e}"))
                }
                _ => None,
            };
        // In this order: a message opened is recorded before the session that
        // spent its key is saved, and that session before a message it sealed
        // is kept or sent (ratchets.rs).
        failed.extend(save(store, contacts::KIND, self.session.dirty_contacts().map(Contacts::encode), "contacts"));
        let inbox = self.session.dirty_inbox().map(Inbox::encode);
        failed.extend(save(store, inbox::KIND, inbox, "received direct messages"));
        let sessions = self.session.dirty_sessions().map(Sessions::encode);
        let dm_write = sessions.is_some();
        if let Some(e) = save(store, ratchets::KIND, sessions, "DM sessions") {
            failed.push(e);
            failed.extend(self.session.withhold_dms().into_iter().map(|f| f.message));
        } else if dm_write && !dm_writable {
            // Not saved (the DM files are left alone this session): nothing sealed leaves.
            failed.extend(self.session.withhold_dms().into_iter().map(|f| f.message));
        }
        failed.extend(save(store, outbox::KIND, self.session.dirty_outbox().map(Outbox::encode), "outbox"));
        if self.transfers.take_dirty() {
            if let Err(e) = store.save(transfer::KIND, &self.transfers.encode()) {
                failed.push(format!("the file transfers could not be saved: {e}"));
            }
        }
        if !failed.is_empty() {
            self.save_failed = true;
        }
        for w in failed {
            fe.report(Report::Warning(w))?;
        }
        Ok(())
    }

    /// Turns a session event into reports, saving or opening local keys on the way.
    fn process(&mut self, ev: Event, fe: &mut dyn Frontend) -> io::Result<()> {
        let Some(ev) = self.file_event(ev) else { return Ok(()) };
        match ev {
            Event::Registered(account) => {
                match keystore::save(&self.home, &account.username, &account.password, &account.keys) {
                    Ok(saved) => {
                        // Files of an earlier account of this name: sealed under its key store.
                        for (what, old) in saved.moved_aside {
                            fe.report(Report::Warning(format!(
                                "an older {what} file for {} was found and kept as {}",
                                account.username,
                                old.display()
                            )))?;
                        }
                        fe.report(Report::Registered {
                            user: account.username,
                            key_path: saved.path,
                            fingerprint: sotto::crypto::hex(&account.fingerprint),
                        })
                    }
                    Err(e) => fe.report(Report::Failed(Failure::new(
                        "register",
                        500,
                        format!("the account was created on the server, but its keys could not be saved: {e}"),
                    ))),
                }
            }
            Event::Authenticated { user, uid, again: true, resumed, .. } => {
                self.failures = 0;
                self.transfers.resume(now_ms());
                fe.report(Report::Reconnected { server: self.server.clone() })?;
                let (fingerprint, rooms, contacts) = (None, self.session.rooms(), self.session.contacts());
                fe.report(Report::Authenticated { user, uid, fingerprint, rooms, contacts, resumed })?;
                if std::mem::take(&mut self.password_unsure) {
                    self.settle_password(resumed, fe)?;
                }
                Ok(())
            }
            Event::Ticket { ticket_id, expires_ms, ticket } => {
                // Derived on the connection it came on, whose records arrive in order.
                let Some(conn) = &self.conn else { return Ok(()) };
                // Kept with the verifier of this session's login secrets (the
                // new ones after a `/password`): what `/login` must derive to resume.
                let Some(verifier) = self.session.login_verifier() else { return Ok(()) };
                self.ticket = Some(resume::Kept { held: conn.ticket(ticket_id, expires_ms, ticket), verifier });
                match self.save_ticket() {
                    Ok(()) => Ok(()),
                    Err(w) => fe.report(Report::Warning(w)),
                }
            }
            Event::PasswordChanged => {
                let committed = self.files.as_mut().and_then(|f| f.store.as_mut()).map(Store::commit_password);
                if let Some(Err(e)) = committed {
                    fe.report(Report::Warning(format!(
                        "the password was changed on the server, but the local files could not all be switched to \
                         it ({e}); the next login with the new password completes it"
                    )))?;
                }
                fe.report(Report::Done { cmd: "password", room: String::new(), id: None })
            }
            Event::Failed(f) if f.cmd == "password" && f.code == 0 => {
                // No answer (lost connection, no reply in time, a reply that does
                // not say): it may have taken effect. Staged until a login again tells.
                self.password_unsure = true;
                fe.report(Report::Failed(f))?;
                fe.report(Report::Warning(
                    "no clear answer to the password change: whether it took effect is known at the next login; \
                     if the current password is refused then, log in with the new one"
                        .into(),
                ))
            }
            Event::Failed(f) if f.cmd == "password" => {
                // The server's refusal (400, 401, 403, 429, 500, 507): the
                // secrets did not change, the old password stays.
                let w = self.abort_password();
                fe.report(Report::Failed(f))?;
                match w {
                    Some(w) => fe.report(Report::Warning(w)),
                    None => Ok(()),
                }
            }
            Event::ReloginFailed(f) if matches!(f.code, 401 | 403) => {
                fe.report(Report::Failed(f))?;
                fe.report(Report::Lost("the server no longer accepts this account's credentials".into()))?;
                self.conn = None;
                self.exit = Some(1);
                Ok(())
            }
            Event::ReloginFailed(_) => {
                // Not said: another attempt follows (see `reconnect`).
                self.conn = None;
                self.session.connection_lost();
                self.transfers.connection_lost();
                self.schedule_retry(false);
                Ok(())
            }
            Event::Authenticated { user, uid, password, again: false, resumed } => {
                let mut warnings = Vec::new();
                // The one argon2id derivation of the KEK for this login (at `/login` when it looked for a ticket).
                let mut store = match self.early_store.take() {
                    Some((u, store)) if u == user => Some(store),
                    _ => self.open_store(&user, &password, &mut warnings),
                };
                drop(password);
                let (identity, enc_secret, fingerprint) = match self.open_keys(store.as_mut(), &user) {
                    Ok((signer, enc_pub, secret, fp)) => (Some((signer, enc_pub)), Some(secret), Some(fp)),
                    Err(w) => {
                        warnings.push(w);
                        (None, None, None)
                    }
                };
                let (ring, rooms_writable) =
                    open_file(store.as_mut(), keyring::KIND, &user, &mut warnings, keyring::load);
                let (pins, pins_writable) = open_file(store.as_mut(), pins::KIND, &user, &mut warnings, |s| {
                    pins::load(s).map_err(|e| match e {
                        PinsError::Store(e) => e,
                        PinsError::Damaged(_) => KeyFileError::Damaged,
                    })
                });
                let (mut dm, dm_writable) = open_dm_files(store.as_mut(), &user, &mut warnings);
                dm.enc_secret = enc_secret;
                dm.ttl_ms = self.dm_ttl_ms;
                self.files = Some(UserFiles { store, rooms_writable, pins_writable, dm_writable });
                let local = Local { identity, pins: pins.unwrap_or_default(), keyring: ring.unwrap_or_default(), dm };
                self.session.install(local);
                self.transfers = open_transfers(self.files.as_mut().and_then(|f| f.store.as_mut()), &mut warnings);
                self.me = Some(user.clone());
                self.transfers.resume(now_ms());
                // Messages whose time ran out while the client was not running go now.
                self.session.handle_timeout(now_ms());
                let (rooms, contacts) = (self.session.rooms(), self.session.contacts());
                fe.report(Report::Authenticated { user, uid, fingerprint, rooms, contacts, resumed })?;
                for w in warnings {
                    fe.report(Report::Warning(w))?;
                }
                Ok(())
            }
            Event::Done { cmd, room, id } => fe.report(Report::Done { cmd, room, id }),
            Event::AccountDeleted { user } => {
                fe.report(Report::AccountDeleted { user })?;
                fe.report(Report::Bye)?;
                // The server closes the connection: this run is over, not lost.
                self.conn = None;
                self.exit = Some(0);
                Ok(())
            }
            Event::Room(r) => fe.report(Report::Room(r)),
            Event::Dm(d) => fe.report(Report::Dm(d)),
            Event::Failed(f) => fe.report(Report::Failed(f)),
            Event::Warning(w) => fe.report(Report::Warning(w)),
            Event::Notice(n) => fe.report(Report::Notice(n)),
            Event::Account(a @ AccountEvent::Kicked { .. }) => {
                // Not a lost connection: no reconnection (into a ban, often).
                fe.report(Report::Account(a))?;
                fe.report(Report::Lost("the server closed this session; not reconnecting".into()))?;
                self.conn = None;
                self.exit = Some(1);
                Ok(())
            }
            Event::Account(a) => fe.report(Report::Account(a)),
        }
    }

    /// Opens the user's key store (argon2id once); a new one when there is none.
    /// One that exists but does not open is left alone, and then nothing is written this session.
    fn open_store(&self, user: &str, password: &str, warnings: &mut Vec<String>) -> Option<Store> {
        match Store::open(&self.home, user, password) {
            Ok(store) => Some(store),
            Err(KeyFileError::NotFound(path)) if !Store::orphans(&self.home, user).is_empty() => {
                // A new key store would never open them (the salt was in the manifest), and
                // starting one would hide that they are there: they are left alone.
                warnings.push(format!(
                    "the key store of {user} has no manifest ({}), but files sealed under it are there ({}); \
                     they cannot be opened without it: restore it from a backup, or move the directory away \
                     to start afresh; nothing is written this session",
                    path.display(),
                    Store::orphans(&self.home, user).join(", ")
                ));
                None
            }
            Err(KeyFileError::NotFound(_)) => match Store::create(&self.home, user, password) {
                Ok(store) => Some(store),
                Err(e) => {
                    warnings.push(format!(
                        "a key store for {user} could not be made ({e}); local files are not written this session"
                    ));
                    None
                }
            },
            Err(e) => {
                let path = vault::path(&self.home, user, crate::store::MANIFEST);
                warnings.push(format!(
                    "the key store of {user} ({}) cannot be used: {e}; the local files are left alone and not written this session (to start afresh, move that directory away)",
                    path.display()
                ));
                None
            }
        }
    }

    /// Opens the user's key file and checks the identity key in it: the signer,
    /// the X25519 public key and secret, and the fingerprint, or a warning.
    #[allow(clippy::type_complexity)]
    fn open_keys(
        &self,
        store: Option<&mut Store>,
        user: &str,
    ) -> Result<(Signer, [u8; 32], Zeroizing<[u8; 32]>, String), String> {
        let Some(store) = store else { return Err(format!("the local keys of {user} cannot be used: no key store")) };
        let keys = match keystore::load(store, &self.home, user) {
            Ok(k) => k,
            Err(KeyFileError::NotFound(path)) => {
                return Err(format!(
                "no local keys for {user} on this machine; they stay where the account was registered (looked for {})",
                path.display()
            ))
            }
            Err(e) => return Err(format!("the local keys of {user} cannot be used: {e}")),
        };
        let unusable = |e| format!("the local identity key of {user} is unusable: {e}");
        let signer = Signer::from_pkcs8_der(&keys.identity_der).map_err(unusable)?;
        let n = identity::modulus(signer.public()).map_err(unusable)?;
        let enc_pub = PublicKey::from(&StaticSecret::from(*keys.enc_secret)).to_bytes();
        Ok((signer, enc_pub, keys.enc_secret.clone(), sotto::crypto::hex(&identity::fingerprint(&n))))
    }
}

/// Opens one sealed file. One that cannot be read, or that the manifest shows
/// rolled back, removed or altered, is left alone and not written this session;
/// one that does not open or parse otherwise (of an earlier key store, protocol 1,
/// damaged) is kept aside and started afresh. `None` then, and whether it may be written.
fn open_file<T>(
    store: Option<&mut Store>,
    kind: Kind,
    user: &str,
    warnings: &mut Vec<String>,
    load: impl FnOnce(&mut Store) -> Result<T, KeyFileError>,
) -> (Option<T>, bool) {
    let Some(store) = store else { return (None, false) };
    let what = kind.what;
    let e = match load(store) {
        Ok(v) => return (Some(v), true),
        Err(e) => e,
    };
    if e.leave_alone() {
        warnings.push(format!(
            "the {what} of {user} cannot be used: {e}; that file is left alone and not written this session"
        ));
        return (None, false);
    }
    match store.set_aside(kind) {
        Ok(old) => {
            let old = old.map_or_else(String::new, |p| format!(", kept as {}", p.display()));
            warnings.push(format!("the {what} of {user} cannot be used ({e}){old}; starting afresh"));
            (None, true)
        }
        Err(io) => {
            warnings.push(format!("the {what} of {user} cannot be used ({e}) nor moved ({io})"));
            (None, false)
        }
    }
}

/// Opens the contacts, the inbox and the outbox (see [`open_file`]); when one
/// is left alone, no DM file is written this session and nothing is
/// acknowledged (the server keeps it).
/// The user's transfers, from the key store (none when there is no file or no store).
fn open_transfers(store: Option<&mut Store>, warnings: &mut Vec<String>) -> Transfers {
    let Some(store) = store else { return Transfers::new() };
    match store.load(transfer::KIND).and_then(|p| p.map(|p| Transfers::decode(&p)).transpose()) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            warnings.push(format!("the file transfers could not be read ({e}); starting with none"));
            Transfers::new()
        }
    }
}

/// A user's text that looks like a manifest's text form is refused.
fn refuse_marker(cmd: &str, text: &str) -> Result<(), Failure> {
    if transfer::is_manifest_text(text) {
        return Err(Failure::new(cmd, 400, "a message may not start with the control character U+0001"));
    }
    Ok(())
}

fn open_dm_files(mut store: Option<&mut Store>, user: &str, warnings: &mut Vec<String>) -> (DmLocal, bool) {
    let mut dm = DmLocal::default();
    let (contacts, ok_c) = open_file(store.as_deref_mut(), contacts::KIND, user, warnings, |s| {
        s.load(contacts::KIND)?.map(|p| Contacts::decode(&p)).transpose()
    });
    let (inbox, ok_i) = open_file(store.as_deref_mut(), inbox::KIND, user, warnings, |s| {
        s.load(inbox::KIND)?.map(|p| Inbox::decode(&p)).transpose()
    });
    let (outbox, ok_o) = open_file(store.as_deref_mut(), outbox::KIND, user, warnings, |s| {
        s.load(outbox::KIND)?.map(|p| Outbox::decode(&p)).transpose()
    });
    let (sessions, ok_s) = open_file(store.as_deref_mut(), ratchets::KIND, user, warnings, |s| {
        s.load(ratchets::KIND)?.map(|p| Sessions::decode(&p)).transpose()
    });
    dm.contacts = contacts.flatten().unwrap_or_default();
    dm.inbox = inbox.flatten().unwrap_or_default();
    dm.outbox = outbox.flatten().unwrap_or_default();
    dm.sessions = sessions.flatten().unwrap_or_default();
    let writable = ok_c && ok_i && ok_o && ok_s;
    dm.writable = writable && store.is_some();
    if !writable && store.is_some() {
        warnings.push("direct messages are not acknowledged this session: the server keeps them".to_string());
    }
    (dm, writable)
}
