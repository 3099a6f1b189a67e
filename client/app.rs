//! Client driver: one poll(2) loop over standard input and the server socket,
//! shared by the batch and interactive front ends. The only place that joins
//! the session, the connection, the clock and the key store.
//!
//! Invariant: every server record reaches the session in order, at any time
//! (unsolicited events included); input lines are taken only while no request
//! is in flight, so each command's outcome is reported before the next starts.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use sotto::identity::{self, Signer};
use zeroize::Zeroizing;

use crate::conn::{Conn, ConnError};
use crate::input::Input;
use crate::keystore::{self, KeyFileError};
use crate::session::{Event, Failure, Session};

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
    /// Standard input; front ends read secrets through it.
    pub input: Input,
}

/// Unix milliseconds now (the only clock the client reads).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl App {
    /// Wraps an established connection.
    pub fn new(conn: Conn, home: PathBuf, input: Input) -> App {
        App { conn, session: Session::new(), home, input }
    }

    /// Starts a registration (validates, generates keys, queues the request).
    pub fn register(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.register(name, password, passphrase, now_ms())
    }

    /// Starts a login.
    pub fn login(&mut self, name: &str, password: &str, passphrase: &str) -> Result<(), Failure> {
        self.session.login(name, password, passphrase, now_ms())
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
            if let Some(ev) = self.session.handle_timeout(now_ms()) {
                self.process(ev, fe)?;
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
                    if let Some(ev) = self.session.handle_frame(&pt, now_ms()) {
                        self.process(ev, fe)?;
                    }
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
                let opened = self.open_keys(&user, &password);
                let (fingerprint, warning) = match opened {
                    Ok(fp) => (Some(fp), None),
                    Err(w) => (None, Some(w)),
                };
                fe.report(Report::Authenticated { user, uid, fingerprint })?;
                match warning {
                    Some(w) => fe.report(Report::Warning(w)),
                    None => Ok(()),
                }
            }
            Event::Failed(f) => fe.report(Report::Failed(f)),
            Event::Notice(n) => fe.report(Report::Notice(n)),
        }
    }

    /// Opens the user's key file and checks the identity key in it; the fingerprint or a warning.
    fn open_keys(&self, user: &str, password: &str) -> Result<String, String> {
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
        let n = Signer::from_pkcs8_der(&keys.identity_der)
            .and_then(|s| identity::modulus(s.public()))
            .map_err(|e| format!("the local identity key of {user} is unusable: {e}"))?;
        Ok(sotto::crypto::hex(&identity::fingerprint(&n)))
    }
}
