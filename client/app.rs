//! Client driver: one poll(2) loop over standard input and the server socket,
//! shared by the batch and interactive front ends. The only place that joins
//! the session, the connection, the clock and the local files (key file, room
//! keys, pins).
//!
//! Invariant: every server record reaches the session in order, at any time
//! (unsolicited events included); input lines are taken only while no request
//! is in flight, so each command's outcome is reported before the next starts;
//! local state the session changed is saved before the event that follows
//! from it is reported.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use sotto::identity::{self, Signer};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::conn::{Conn, ConnError};
use crate::input::Input;
use crate::keyring::{self, Keyring, StorageKey};
use crate::keystore::{self, KeyFileError};
use crate::pins::{self, Pins};
use crate::session::{Event, Failure, Local, RoomEvent, Session};

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
    },
    /// A room command succeeded (`create`, `say`, `leave`, `delete`).
    Done {
        /// Command name without the slash.
        cmd: &'static str,
        /// Canonical room name.
        room: String,
    },
    /// Something happened in a room.
    Room(RoomEvent),
    /// A command failed.
    Failed(Failure),
    /// The user should know, but nothing failed.
    Warning(String),
    /// A diagnostic (ignored server message and the like).
    Notice(String),
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

/// A way of talking to the user.
pub trait Frontend {
    /// Handles one input line; may start a request through `app`.
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow>;
    /// Shows one report.
    fn report(&mut self, report: Report) -> io::Result<()>;
    /// Called before waiting while nothing is in flight (a prompt, for people).
    fn idle(&mut self) -> io::Result<()>;
}

/// The connection, the protocol session and local state of one run.
pub struct App {
    conn: Conn,
    session: Session,
    home: PathBuf,
    /// Where the logged-in user's room keys and pins are saved.
    files: Option<UserFiles>,
    /// Standard input; front ends read secrets through it.
    pub input: Input,
}

/// The logged-in user's local files, and whether each may be written.
struct UserFiles {
    user: String,
    /// Seals the room keys file; `None` when it could not be read (then it is left alone).
    storage: Option<StorageKey>,
    /// False when the pins file could not be read (then it is left alone).
    pins_writable: bool,
}

/// Unix milliseconds now (the only clock the client reads).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl App {
    /// Wraps an established connection.
    pub fn new(conn: Conn, home: PathBuf, input: Input) -> App {
        App { conn, session: Session::new(), home, files: None, input }
    }

    /// Starts a registration (validates, generates keys, queues the request).
    pub fn register(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.register(name, password, passphrase, now_ms())
    }

    /// Starts a login.
    pub fn login(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.login(name, password, passphrase, now_ms())
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

    /// Starts `delete ROOM`.
    pub fn delete_room(&mut self, room: &str) -> Result<(), Failure> {
        self.session.delete_room(room, now_ms())
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
                eprintln!("sotto: {e}");
                1
            }
        }
    }

    fn run_loop(&mut self, fe: &mut dyn Frontend) -> io::Result<u8> {
        loop {
            if let Some(code) = self.drain_frames(fe)? {
                return Ok(code);
            }
            while !self.session.busy() {
                let Some(line) = self.input.next_line() else { break };
                if let Flow::Quit = fe.command(self, &line)? {
                    fe.report(Report::Bye)?;
                    return Ok(0);
                }
                if let Some(code) = self.flush(fe)? {
                    return Ok(code);
                }
            }
            if !self.session.busy() {
                if self.input.exhausted() {
                    fe.report(Report::Bye)?;
                    return Ok(0);
                }
                fe.idle()?;
            }
            let (socket_ready, stdin_ready) = self.wait()?;
            if socket_ready {
                if let Err(e) = self.conn.fill() {
                    return self.lost(fe, e);
                }
            }
            if stdin_ready {
                self.input.fill()?;
            }
            self.session.handle_timeout(now_ms());
            self.pump(fe)?;
            if let Some(code) = self.flush(fe)? {
                return Ok(code);
            }
        }
    }

    /// poll(2) on the socket, and on stdin while idle, until one is ready or a request is overdue.
    fn wait(&self) -> io::Result<(bool, bool)> {
        let timeout = match self.session.poll_timeout() {
            Some(deadline) => PollTimeout::try_from(deadline.saturating_sub(now_ms())).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let want_stdin = !self.session.busy() && !self.input.eof_seen();
        let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let mut fds = vec![PollFd::new(self.conn.as_fd(), PollFlags::POLLIN)];
        if want_stdin {
            fds.push(PollFd::new(self.input.fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok((false, false)),
            Err(e) => return Err(io::Error::from(e)),
        }
        let is_ready = |fd: Option<&PollFd>| fd.and_then(|f| f.revents()).is_some_and(|r| r.intersects(ready));
        Ok((is_ready(fds.first()), is_ready(fds.get(1))))
    }

    /// Hands every whole record received to the session, and sends what it answers.
    fn drain_frames(&mut self, fe: &mut dyn Frontend) -> io::Result<Option<u8>> {
        loop {
            match self.conn.poll_frame() {
                Ok(None) => return Ok(None),
                Ok(Some(pt)) => {
                    let pt = Zeroizing::new(pt);
                    self.session.handle_frame(&pt, now_ms());
                    self.pump(fe)?;
                    if let Some(code) = self.flush(fe)? {
                        return Ok(Some(code));
                    }
                }
                Err(e) => return self.lost(fe, e).map(Some),
            }
        }
    }

    /// Sends every queued request.
    fn flush(&mut self, fe: &mut dyn Frontend) -> io::Result<Option<u8>> {
        while let Some(pt) = self.session.poll_transmit() {
            if let Err(e) = self.conn.send(&pt) {
                return self.lost(fe, e).map(Some);
            }
        }
        Ok(None)
    }

    fn lost(&mut self, fe: &mut dyn Frontend, e: ConnError) -> io::Result<u8> {
        fe.report(Report::Lost(e.to_string()))?;
        Ok(1)
    }

    /// Reports every event the session has, saving what it changed first.
    fn pump(&mut self, fe: &mut dyn Frontend) -> io::Result<()> {
        self.persist(fe)?;
        while let Some(ev) = self.session.poll_event() {
            self.process(ev, fe)?;
            self.persist(fe)?;
        }
        Ok(())
    }

    /// Saves the room keys and the pins if the session changed them.
    fn persist(&mut self, fe: &mut dyn Frontend) -> io::Result<()> {
        let Some(files) = &self.files else { return Ok(()) };
        let mut failed = Vec::new();
        if let Some(ring) = self.session.dirty_keyring() {
            if let Some(key) = &files.storage {
                if let Err(e) = keyring::save(&self.home, &files.user, key, ring) {
                    failed.push(format!("the room keys could not be saved: {e}"));
                }
            }
        }
        if let Some(pins) = self.session.dirty_pins() {
            if files.pins_writable {
                if let Err(e) = pins::save(&self.home, &files.user, pins) {
                    failed.push(format!("the pinned keys could not be saved: {e}"));
                }
            }
        }
        for w in failed {
            fe.report(Report::Warning(w))?;
        }
        Ok(())
    }

    /// Turns a session event into reports, saving or opening local keys on the way.
    fn process(&mut self, ev: Event, fe: &mut dyn Frontend) -> io::Result<()> {
        match ev {
            Event::Registered(account) => {
                match keystore::save(&self.home, &account.username, &account.password, &account.keys) {
                    Ok(saved) => {
                        if let Some(old) = saved.moved_aside {
                            fe.report(Report::Warning(format!(
                                "an older key file for {} was found and kept as {}",
                                account.username,
                                old.display()
                            )))?;
                        }
                        // Room keys of an earlier account of this name are sealed with its password.
                        match keyring::set_aside(&self.home, &account.username) {
                            Ok(Some(old)) => fe.report(Report::Warning(format!(
                                "older room keys for {} were found and kept as {}",
                                account.username,
                                old.display()
                            )))?,
                            Ok(None) => {}
                            Err(e) => fe.report(Report::Warning(format!("older room keys could not be moved: {e}")))?,
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
            Event::Authenticated { user, uid, password } => {
                let mut warnings = Vec::new();
                let (identity, fingerprint) = match self.open_keys(&user, &password) {
                    Ok((signer, enc_pub, fp)) => (Some((signer, enc_pub)), Some(fp)),
                    Err(w) => {
                        warnings.push(w);
                        (None, None)
                    }
                };
                let (storage, ring) = self.open_keyring(&user, &password, &mut warnings);
                let (pins, pins_writable) = match pins::load(&self.home, &user) {
                    Ok(p) => (p, true),
                    Err(e) => {
                        warnings.push(format!(
                            "the pinned keys of {user} cannot be read ({e}); that file is left alone, and keys seen now are not saved"
                        ));
                        (Pins::new(), false)
                    }
                };
                self.files = Some(UserFiles { user: user.clone(), storage, pins_writable });
                self.session.install(Local { identity, pins, keyring: ring });
                fe.report(Report::Authenticated { user, uid, fingerprint })?;
                for w in warnings {
                    fe.report(Report::Warning(w))?;
                }
                Ok(())
            }
            Event::Done { cmd, room } => fe.report(Report::Done { cmd, room }),
            Event::Room(r) => fe.report(Report::Room(r)),
            Event::Failed(f) => fe.report(Report::Failed(f)),
            Event::Warning(w) => fe.report(Report::Warning(w)),
            Event::Notice(n) => fe.report(Report::Notice(n)),
        }
    }

    /// Opens the room keys; a file that does not open with the login password
    /// is kept aside and a new one started, an unreadable one is left alone.
    fn open_keyring(&self, user: &str, password: &str, warnings: &mut Vec<String>) -> (Option<StorageKey>, Keyring) {
        match keyring::load(&self.home, user, password) {
            Ok((key, ring)) => (Some(key), ring),
            Err(e @ KeyFileError::Io { .. }) => {
                warnings.push(format!("the room keys of {user} cannot be read ({e}); they are not saved this session"));
                (None, Keyring::new())
            }
            Err(e) => {
                let kept = keyring::set_aside(&self.home, user);
                let fresh = StorageKey::fresh(password);
                match (kept, fresh) {
                    (Ok(old), Ok(key)) => {
                        let old = old.map_or_else(String::new, |p| format!(", kept as {}", p.display()));
                        warnings.push(format!("the room keys of {user} cannot be used ({e}){old}; starting afresh"));
                        (Some(key), Keyring::new())
                    }
                    (Err(io), _) => {
                        warnings.push(format!("the room keys of {user} cannot be used ({e}) nor moved ({io})"));
                        (None, Keyring::new())
                    }
                    (_, Err(k)) => {
                        warnings.push(format!("the room keys of {user} cannot be used ({e}): {k}"));
                        (None, Keyring::new())
                    }
                }
            }
        }
    }

    /// Opens the user's key file and checks the identity key in it: the signer,
    /// the X25519 public key and the fingerprint, or a warning.
    fn open_keys(&self, user: &str, password: &str) -> Result<(Signer, [u8; 32], String), String> {
        let keys = match keystore::load(&self.home, user, password) {
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
        Ok((signer, enc_pub, sotto::crypto::hex(&identity::fingerprint(&n))))
    }
}
