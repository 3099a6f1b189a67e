//! Protocol layer of the client (DESIGN §5, §6, §7): builds requests, matches
//! replies by message id and turns server messages into events. Sans-I/O: it
//! takes plaintexts and `now`, and hands back plaintexts to send and events
//! to show; the rooms part is in `session/room.rs`, direct messages in
//! `session/direct.rs`.
//!
//! Invariant: at most one request is in flight; a reply completes it only when
//! its msg_id matches (the parts of a multi-part answer are collected until
//! its final `stat`); unsolicited events (msg_id 0) are handled at any time;
//! anything else the server sends becomes a notice, never a panic. Outgoing
//! plaintexts (they hold secrets) are zeroized on drop. Mailbox
//! acknowledgements are held until the driver has saved what they confirm
//! (`release_acks`). After a lost connection the session keeps its local
//! state and logs in again with the credentials it remembers (in memory
//! only), or, on a connection the driver resumed with a ticket, takes the
//! server's unsolicited `cnnt` (msg_id 0) as that login's completion
//! (PROTOCOL.md §3, resumption); what follows either is the same.

mod direct;
mod moderation;
mod operator;
mod prekeys;
mod room;

pub use operator::AccountEvent;

use std::collections::VecDeque;

use sotto::account;
use sotto::crypto;
use sotto::identity::{self, KeyError, Signer, RSA_BYTES};
use sotto::opcodes::{self, ChangeSecrets, Connected, Login, LogoutEverywhere, MailboxAck, Passphrase, Register};
use sotto::opcodes::{ResumptionTicket, StatusReply};
use sotto::wire::{self, Message, Status, WireError};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::keystore::LocalKeys;

pub use direct::{ContactInfo, DmEvent, DmLocal, DmMessage};
pub use moderation::ModEvent;
pub use room::{Local, Member, OnlineInfo, RoomEvent, RoomInfo, RoomMessage};

/// How long a request may wait for its reply.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// A command that did not succeed: local validation (code 400), a server
/// error reply (its code and reason), or no answer (code 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Command name without the slash.
    pub cmd: String,
    /// Three-digit code, or 0 when the server gave none.
    pub code: u16,
    /// Human-readable reason; never contains a secret.
    pub message: String,
    /// With 429: milliseconds to wait before trying again.
    pub retry_after_ms: u32,
}

impl Failure {
    /// A failure without a retry hint.
    pub fn new(cmd: &str, code: u16, message: impl Into<String>) -> Failure {
        Failure { cmd: cmd.to_string(), code, message: message.into(), retry_after_ms: 0 }
    }
}

/// Key pairs made for a registration, before the server has accepted them.
pub struct NewKeys {
    /// The private halves, to be saved once the server accepts.
    pub local: LocalKeys,
    /// RSA-2048 identity public modulus.
    pub id_pub: [u8; RSA_BYTES],
    /// X25519 encryption public key.
    pub enc_pub: [u8; 32],
}

impl NewKeys {
    /// Generates an RSA-2048 identity key and an X25519 encryption key (slow: RSA).
    pub fn generate() -> Result<NewKeys, KeyError> {
        let (identity_der, id_pub) = identity::generate()?;
        let enc_secret = Zeroizing::new(crypto::random::<32>());
        let enc_pub = PublicKey::from(&StaticSecret::from(*enc_secret)).to_bytes();
        Ok(NewKeys { local: LocalKeys { identity_der, enc_secret }, id_pub, enc_pub })
    }
}

/// An account the server has just accepted, with what the client must keep.
pub struct NewAccount {
    /// Normalised user name.
    pub username: String,
    /// The password (it encrypts the key file).
    pub password: Zeroizing<String>,
    /// The private keys to save.
    pub keys: LocalKeys,
    /// SHA-256 of the identity public modulus.
    pub fingerprint: [u8; 32],
}

/// What the server's messages mean to the user.
pub enum Event {
    /// `register` succeeded.
    Registered(NewAccount),
    /// `login` succeeded: password and passphrase accepted.
    Authenticated {
        /// Normalised user name (the one the client sent).
        user: String,
        /// The UID the server gave.
        uid: u64,
        /// The password (it opens the key file).
        password: Zeroizing<String>,
        /// A login again after a lost connection (local state is already loaded).
        again: bool,
        /// The connection resumed with a ticket: no password or passphrase was sent.
        resumed: bool,
    },
    /// A resumption ticket arrived (`tick`): the driver derives its secret on
    /// the connection it came from and keeps it (never shown).
    Ticket {
        /// Its id.
        ticket_id: [u8; 16],
        /// When the server stops accepting it, Unix ms.
        expires_ms: u64,
        /// The ticket.
        ticket: [u8; sotto::ticket::TICKET_LEN],
    },
    /// `/password` succeeded: the server holds the new secrets, and logging in
    /// again uses them.
    PasswordChanged,
    /// The login again after a lost connection failed.
    ReloginFailed(Failure),
    /// A room command succeeded (`create`, `say`, `leave`, `delete`, the `room-*` commands).
    Done {
        /// Command name without the slash.
        cmd: &'static str,
        /// Canonical room name.
        room: String,
        /// For `say`: the message's id (PROTOCOL.md §6, message ids).
        id: Option<u64>,
    },
    /// The account was deleted (`/delete-account`); the server ends the session.
    AccountDeleted {
        /// Its name.
        user: String,
    },
    /// Something happened in a room (PROTOCOL.md §6).
    Room(RoomEvent),
    /// Something about direct messages (PROTOCOL.md §7).
    Dm(DmEvent),
    /// A command failed.
    Failed(Failure),
    /// The user should know, but nothing failed (keys that do not verify).
    Warning(String),
    /// Something worth a line on the side (ignored message, unsolicited status).
    Notice(String),
    /// Something about the account: login record, kick, announcement (PROTOCOL.md §11).
    Account(AccountEvent),
}

/// Validated, normalised credentials, and the secrets derived from them
/// (PROTOCOL.md §5): only `auth` and `pass` are ever sent.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    /// The password, until the login completes (it opens the local key store);
    /// empty in the credentials remembered for logging in again.
    password: Zeroizing<String>,
    /// argon2id auth secret of the password (`auth`, `crea`).
    auth: Zeroizing<[u8; account::SECRET_LEN]>,
    /// argon2id secret of the normalised passphrase (`pass`, `crea`).
    pass: Zeroizing<[u8; account::SECRET_LEN]>,
}

impl Credentials {
    /// The normalised user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The verifier of these login secrets (see [`login_verifier`]).
    pub fn verifier(&self) -> Zeroizing<[u8; 32]> {
        login_verifier(&self.auth, &self.pass)
    }
}

/// What a stored resumption ticket keeps of the login secrets it was issued
/// to (docs/CLIENT.md "Reconnection"): `SHA-256("sotto/v3 login verifier\0"
/// || auth_secret || pass_secret)`, so that `/login` resumes only when the
/// typed password and passphrase derive the same secrets. Neither the
/// password nor a secret is kept with the ticket.
pub fn login_verifier(auth: &[u8; account::SECRET_LEN], pass: &[u8; account::SECRET_LEN]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(crypto::sha256(&[b"sotto/v3 login verifier\0", auth, pass]))
}

/// The request waiting for its reply, by protocol step.
enum Pending {
    /// With the credentials to log in with once registered, if asked.
    Register(NewAccount, Option<Box<Credentials>>),
    /// `again`: a login after a lost connection, with the remembered credentials.
    Login {
        creds: Credentials,
        again: bool,
    },
    Passphrase {
        creds: Credentials,
        again: bool,
    },
    /// On a resumed connection: the server's `cnnt` (msg_id 0) completes it.
    Resume {
        creds: Credentials,
        again: bool,
    },
    /// `chpw`, with the new credentials to remember once it succeeds.
    Password(Box<Credentials>),
    Room(room::Pending),
    Dm(direct::Pending),
    /// A request answered by a plain stat (`kick`, `announce`).
    Simple(&'static str),
    Mod(moderation::Pending),
}

impl Pending {
    fn cmd(&self) -> &'static str {
        match self {
            Pending::Register(..) => "register",
            Pending::Login { .. } | Pending::Passphrase { .. } | Pending::Resume { .. } => "login",
            Pending::Password(_) => "password",
            Pending::Room(p) => p.cmd(),
            Pending::Dm(p) => p.cmd(),
            Pending::Simple(cmd) => cmd,
            Pending::Mod(p) => p.cmd(),
        }
    }
}

struct InFlight {
    id: u64,
    deadline_ms: u64,
    what: Pending,
}

/// The client's side of one server session.
pub struct Session {
    next_id: u64,
    in_flight: Option<InFlight>,
    outbox: VecDeque<Zeroizing<Vec<u8>>>,
    events: VecDeque<Event>,
    /// The logged-in user and its local state (from `cnnt` on).
    me: Option<room::Me>,
    /// The connection was lost after a login; it is not back yet.
    offline: bool,
    /// The credentials of the last successful login, to log in again after a lost connection.
    remembered: Option<Credentials>,
    /// Mailbox sequence numbers to acknowledge once their effect is saved.
    acks: Vec<u64>,
    /// The latest time the driver gave (Unix ms): no freshness floor rises past it.
    clock_ms: u64,
    /// Why the login in flight is refused, from `lgrf`: said with its 403.
    refusal: Option<String>,
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    /// A session in the not-logged-in state; message ids start at 1.
    pub fn new() -> Session {
        Session {
            next_id: 1,
            in_flight: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            me: None,
            offline: false,
            remembered: None,
            acks: Vec::new(),
            clock_ms: 0,
            refusal: None,
        }
    }

    /// True while a request waits for its reply.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// True once logged in (from `cnnt` on; also while the connection is being restored).
    pub fn logged_in(&self) -> bool {
        self.me.is_some()
    }

    /// Validates locally, generates both key pairs and queues a `Register` (crea).
    pub fn register(&mut self, name: &str, password: &str, passphrase: &str, now_ms: u64) -> Result<(), Failure> {
        self.register_as(name, password, passphrase, false, now_ms)
    }

    /// As [`Session::register`], then logs in with the same credentials once
    /// the server accepts the account (the interactive front ends: nothing
    /// to type twice).
    pub fn register_then_login(
        &mut self,
        name: &str,
        password: &str,
        passphrase: &str,
        now_ms: u64,
    ) -> Result<(), Failure> {
        self.register_as(name, password, passphrase, true, now_ms)
    }

    fn register_as(&mut self, name: &str, pw: &str, phrase: &str, login: bool, now_ms: u64) -> Result<(), Failure> {
        let creds = validate("register", name, pw, phrase, true)?;
        let keys =
            NewKeys::generate().map_err(|e| Failure::new("register", 500, format!("cannot generate keys: {e}")))?;
        let login = login.then(|| Box::new(creds.clone()));
        self.register_with(creds, keys, login, now_ms)
    }

    fn register_with(
        &mut self,
        creds: Credentials,
        keys: NewKeys,
        login: Option<Box<Credentials>>,
        now_ms: u64,
    ) -> Result<(), Failure> {
        self.check_idle("register")?;
        let local = |e: KeyError| Failure::new("register", 500, format!("cannot sign the encryption key: {e}"));
        let signer = Signer::from_pkcs8_der(&keys.local.identity_der).map_err(local)?;
        // The UID is ours to choose, so that the binding can sign it (PROTOCOL.md §5).
        let uid = u64::from_be_bytes(crypto::random()).max(1);
        let binding = account::enc_key_binding(&account::deployment_id(), uid, &creds.username, &keys.enc_pub);
        let enc_sig = signer.sign(&binding).map_err(local)?;
        let id = self.take_id();
        let mut m = Register::request(id, now_ms);
        m.uid.set(uid);
        if let Err(e) = m.set_username(&creds.username) {
            return Err(too_long("register", e));
        }
        m.auth_secret = *creds.auth;
        m.pass_secret = *creds.pass;
        m.id_pub = keys.id_pub;
        m.enc_pub = keys.enc_pub;
        m.enc_sig = enc_sig;
        self.queue(&mut m);
        let account = NewAccount {
            username: creds.username,
            password: creds.password,
            keys: keys.local,
            fingerprint: identity::fingerprint(&keys.id_pub),
        };
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: Pending::Register(account, login) });
        Ok(())
    }

    /// Validates locally and queues a `Login` (auth); the passphrase follows on 202.
    #[cfg(test)]
    pub fn login(&mut self, name: &str, password: &str, passphrase: &str, now_ms: u64) -> Result<(), Failure> {
        let creds = Session::credentials(name, password, passphrase)?;
        self.login_with(creds, now_ms)
    }

    /// Whether a command that needs the server can start now: connected, nothing in flight.
    pub fn ready(&self, cmd: &str) -> Result<(), Failure> {
        self.check_idle(cmd)
    }

    /// Validates a login's input and derives its secrets (argon2id), sending nothing.
    pub fn credentials(name: &str, password: &str, passphrase: &str) -> Result<Credentials, Failure> {
        validate("login", name, password, passphrase, false)
    }

    /// Queues the `Login` (auth) of [`Session::credentials`]; the passphrase follows on 202.
    pub fn login_with(&mut self, creds: Credentials, now_ms: u64) -> Result<(), Failure> {
        self.check_idle("login")?;
        self.send_login(creds, false, now_ms)
    }

    /// The connection was resumed with a ticket for `creds`' account (at
    /// `/login`): nothing is sent; the server's `cnnt` completes the login,
    /// and `creds` are remembered to log in again without a ticket.
    pub fn login_resumed(&mut self, creds: Credentials, now_ms: u64) -> Result<(), Failure> {
        self.check_idle("login")?;
        self.await_resumed(creds, false, now_ms);
        Ok(())
    }

    /// The verifier of the remembered login secrets (those of the logged-in
    /// session, the new ones after a `/password`): kept with a ticket.
    pub fn login_verifier(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.remembered.as_ref().map(Credentials::verifier)
    }

    /// After [`Session::connection_lost`], on a connection the driver resumed
    /// with a ticket: waits for the server's `cnnt`; false without remembered credentials.
    pub fn resume_again(&mut self, now_ms: u64) -> bool {
        let Some(creds) = self.remembered.clone() else { return false };
        self.offline = false;
        self.await_resumed(creds, true, now_ms);
        true
    }

    fn await_resumed(&mut self, creds: Credentials, again: bool, now_ms: u64) {
        // Id 0: the `cnnt` that completes it is unsolicited (PROTOCOL.md §3, resumption).
        let what = Pending::Resume { creds, again };
        self.in_flight = Some(InFlight { id: 0, deadline_ms: deadline(now_ms), what });
    }

    /// `/logout-everywhere`: `lgoe` (every ticket of the account revoked, its
    /// other sessions closed); answered `ok`.
    pub fn logout_everywhere(&mut self, now_ms: u64) -> Result<(), Failure> {
        let cmd = "logout-everywhere";
        if !self.logged_in() {
            return Err(Failure::new(cmd, 401, "log in first"));
        }
        self.check_idle(cmd)?;
        let id = self.take_id();
        let mut m = LogoutEverywhere::request(id, now_ms);
        self.queue(&mut m);
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: Pending::Simple(cmd) });
        Ok(())
    }

    /// Validates a `/password` change and derives the current and the new
    /// login secrets (argon2id, four times), sending nothing: the new password
    /// must pass the registration rule.
    pub fn password_change(&self, old: (&str, &str), new: (&str, &str)) -> Result<(Credentials, Credentials), Failure> {
        let cmd = "password";
        let user = self.me.as_ref().map(|me| me.user.clone()).ok_or_else(|| Failure::new(cmd, 401, "log in first"))?;
        self.check_idle(cmd)?;
        let current = validate(cmd, &user, old.0, old.1, false)?;
        let next = validate(cmd, &user, new.0, new.1, true)?;
        Ok((current, next))
    }

    /// Queues `chpw` for [`Session::password_change`]'s secrets; on 200 the
    /// new ones are remembered and [`Event::PasswordChanged`] follows.
    pub fn change_password(&mut self, old: Credentials, new: Credentials, now_ms: u64) -> Result<(), Failure> {
        self.check_idle("password")?;
        let id = self.take_id();
        let mut m = ChangeSecrets::request(id, now_ms);
        m.old_auth_secret = *old.auth;
        m.old_pass_secret = *old.pass;
        m.new_auth_secret = *new.auth;
        m.new_pass_secret = *new.pass;
        self.queue(&mut m);
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: Pending::Password(Box::new(new)) });
        Ok(())
    }

    fn send_login(&mut self, creds: Credentials, again: bool, now_ms: u64) -> Result<(), Failure> {
        let id = self.take_id();
        let mut m = Login::request(id, now_ms);
        if let Err(e) = m.set_username(&creds.username) {
            return Err(too_long("login", e));
        }
        m.auth_secret = *creds.auth;
        self.queue(&mut m);
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: Pending::Login { creds, again } });
        Ok(())
    }

    /// The connection was lost after a login: the request in flight ends (a
    /// direct message stays in the outbox), nothing queued is sent, and
    /// commands that need the server are refused until [`Session::relogin`].
    pub fn connection_lost(&mut self) {
        self.offline = true;
        self.outbox.clear();
        self.acks.clear();
        if let Some(me) = self.me.as_mut() {
            me.dm.resend.clear();
            me.refresh = None;
            // Its answer cannot come now: the pkst after the next login says what to upload.
            me.dm.prekey_upload = None;
        }
        self.forget_held_dms();
        let Some(f) = self.in_flight.take() else { return };
        match f.what {
            // A first message waiting for its bundle stays in the outbox as typed.
            Pending::Dm(direct::Pending::Send { id, peer } | direct::Pending::Bundle { dm_id: id, peer, .. }) => {
                self.events.push_back(Event::Dm(DmEvent::Pending { id, to: peer }));
            }
            // Sent again, unchanged, once logged in again.
            Pending::Room(room::Pending::Say { room, frame }) => self.requeue_say(room, frame, 0),
            Pending::Login { again: true, .. }
            | Pending::Passphrase { again: true, .. }
            | Pending::Resume { again: true, .. } => {}
            Pending::Room(room::Pending::Settle { .. }) => {}
            Pending::Room(room::Pending::Refresh { .. }) => self.release_held(),
            what => self.events.push_back(Event::Failed(Failure::new(
                what.cmd(),
                0,
                "the connection to the server was lost; reconnecting",
            ))),
        }
    }

    /// A new connection after [`Session::connection_lost`]: logs in again with
    /// the remembered credentials; false when there are none.
    pub fn relogin(&mut self, now_ms: u64) -> bool {
        let Some(creds) = self.remembered.clone() else { return false };
        self.offline = false;
        self.in_flight = None;
        self.send_login(creds, true, now_ms).is_ok()
    }

    /// Sends the held mailbox acknowledgements (their effect is saved).
    pub fn release_acks(&mut self, now_ms: u64) {
        for seq in std::mem::take(&mut self.acks) {
            let id = self.take_id();
            let mut m = MailboxAck::request(id, now_ms);
            m.seq.set(seq);
            self.queue(&mut m);
        }
    }

    /// Drops the held acknowledgements (their effect could not be saved): the
    /// server delivers those events again at the next login.
    pub fn discard_acks(&mut self) {
        self.acks.clear();
    }

    /// The next plaintext to send.
    pub fn poll_transmit(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        self.outbox.pop_front()
    }

    /// Whether events wait to be shown.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event to show, in the order they happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must next be called (Unix ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.deadline_ms)
    }

    /// Fails the request in flight if its reply is overdue, erases the direct
    /// messages shown longer ago than their time to live, and sends what waits
    /// for an idle session (outbox messages again, a members lookup).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.erase_expired(now_ms);
        self.expire_request(now_ms);
        self.poll_refresh(now_ms);
        self.poll_resend(now_ms);
        self.poll_says(now_ms);
    }

    fn expire_request(&mut self, now_ms: u64) {
        let Some(f) = self.in_flight.take_if(|f| f.deadline_ms <= now_ms) else { return };
        let secs = REQUEST_TIMEOUT_MS / 1000;
        let accept = matches!(f.what, Pending::Dm(direct::Pending::Accept { .. }));
        match f.what {
            // Still in the outbox: sent again after the next login.
            Pending::Dm(direct::Pending::Send { id, peer } | direct::Pending::Bundle { dm_id: id, peer, .. }) => {
                self.events.push_back(Event::Dm(DmEvent::Pending { id, to: peer }));
            }
            Pending::Login { again: true, .. }
            | Pending::Passphrase { again: true, .. }
            | Pending::Resume { again: true, .. } => {
                let why = format!("no reply from the server within {secs} s");
                self.events.push_back(Event::ReloginFailed(Failure::new("login", 0, why)));
            }
            // The join itself succeeded; only its end marker is missing.
            Pending::Room(room::Pending::Settle { room }) => {
                self.events.push_back(Event::Notice(format!("no end of the history of {room} within {secs} s")));
            }
            // Nobody asked for it: the held messages go out as they are.
            Pending::Room(room::Pending::Refresh { .. }) => self.release_held(),
            what => self.events.push_back(Event::Failed(Failure::new(
                what.cmd(),
                0,
                format!("no reply from the server within {secs} s"),
            ))),
        }
        if accept {
            // Held for that accept: checked again (not a contact yet, they stay on the server).
            self.release_held_dms(now_ms);
        }
    }

    /// Handles one message from the server: completes the request it answers,
    /// or turns it into events; see [`Session::poll_event`].
    pub fn handle_frame(&mut self, pt: &[u8], now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        if let Some(ev) = self.dispatch(pt, now_ms) {
            self.events.push_back(ev);
        }
        self.poll_refresh(now_ms);
        self.poll_resend(now_ms);
        self.poll_says(now_ms);
    }

    fn dispatch(&mut self, pt: &[u8], now_ms: u64) -> Option<Event> {
        let Ok(hdr) = wire::header(pt) else {
            return Some(Event::Notice("ignoring a server message shorter than a header".into()));
        };
        let (opcode, id) = (hdr.opcode.get(), hdr.msg_id.get());
        let ours = id != 0 && self.in_flight.as_ref().is_some_and(|f| f.id == id);
        if let Some(ev) = self.dispatch_account(opcode, pt, ours) {
            return ev;
        }
        match opcode {
            // The answer to a heartbeat: hearing it is all that matters.
            opcodes::PONG => None,
            opcodes::TICK => match wire::decode::<ResumptionTicket>(pt) {
                Ok(t) if self.me.is_some() => {
                    Some(Event::Ticket { ticket_id: t.ticket_id, expires_ms: t.expires.get(), ticket: t.ticket })
                }
                Ok(_) => Some(Event::Notice("ignoring a tick (resumption ticket) before any login".into())),
                Err(e) => self.malformed(false, "tick", e),
            },
            opcodes::STAT => match wire::decode::<StatusReply>(pt) {
                Ok(r) if ours => self.complete_status(r, now_ms),
                Ok(r) if self.is_prekey_upload(id) => self.complete_prekey_upload(r),
                Ok(r) => Some(Event::Notice(format!(
                    "server status {} for no pending request: {}",
                    r.hdr.code.get(),
                    reason(r)
                ))),
                Err(e) => self.malformed(ours, "stat", e),
            },
            opcodes::CNNT => match wire::decode::<Connected>(pt) {
                Ok(c) if ours => self.complete_connected(c),
                Ok(c) if id == 0 && self.resuming() => self.complete_connected(c),
                Ok(_) => Some(Event::Notice("ignoring a cnnt (connected) message for no pending login".into())),
                Err(e) => self.malformed(ours, "cnnt", e),
            },
            opcodes::RSLT => match wire::decode(pt) {
                Ok(m) => self.handle_salt(m, ours, now_ms),
                Err(e) => self.malformed(ours, "rslt", e),
            },
            opcodes::MBRS => match wire::decode(pt) {
                Ok(m) => self.handle_member(m, ours),
                Err(e) => self.malformed(ours, "mbrs", e),
            },
            opcodes::ONLN => match wire::decode(pt) {
                Ok(m) => self.handle_online(m, ours),
                Err(e) => self.malformed(ours, "onln", e),
            },
            opcodes::RMLS => match wire::decode(pt) {
                Ok(m) => self.handle_list_entry(m, ours),
                Err(e) => self.malformed(ours, "rmls", e),
            },
            op if wire::class_of(opcodes::RVRS, op).is_some() => {
                match wire::decode_classed::<opcodes::ReceiveRoomMessageHead>(pt, opcodes::RVRS) {
                    Ok(v) => self.handle_room_message(room::RoomMsg { head: *v.head, body: v.body.to_vec() }, now_ms),
                    Err(e) => self.malformed(false, "rvr*", e),
                }
            }
            opcodes::RDEL => match wire::decode(pt) {
                Ok(m) => self.handle_deleted(m),
                Err(e) => self.malformed(false, "rdel", e),
            },
            opcodes::DMRQ => match wire::decode(pt) {
                Ok(m) => self.handle_dm_requested(m),
                Err(e) => self.malformed(false, "dmrq", e),
            },
            opcodes::CTCT => match wire::decode(pt) {
                Ok(m) => self.handle_contact(m, ours),
                Err(e) => self.malformed(ours, "ctct", e),
            },
            opcodes::DMRJ => match wire::decode(pt) {
                Ok(m) => self.handle_dm_rejected(m),
                Err(e) => self.malformed(false, "dmrj", e),
            },
            op if wire::class_of(opcodes::RVUS, op).is_some() => {
                match wire::decode_classed::<opcodes::ReceiveDmHead>(pt, opcodes::RVUS) {
                    Ok(v) => self.handle_receive_dm(&prekeys::DmMsg { head: *v.head, body: v.body.to_vec() }, now_ms),
                    Err(e) => self.malformed(false, "rvu*", e),
                }
            }
            opcodes::PKBD => match wire::decode(pt) {
                Ok(m) => self.handle_bundle(m, ours, now_ms),
                Err(e) => self.malformed(ours, "pkbd", e),
            },
            opcodes::PKST => match wire::decode(pt) {
                Ok(m) => self.handle_prekey_state(m, now_ms),
                Err(e) => self.malformed(false, "pkst", e),
            },
            opcodes::DMST => match wire::decode(pt) {
                Ok(m) => self.handle_dm_status(m, ours),
                Err(e) => self.malformed(ours, "dmst", e),
            },
            opcodes::RKCK => match wire::decode(pt) {
                Ok(m) => self.handle_kicked(m),
                Err(e) => self.malformed(false, "rkck", e),
            },
            opcodes::RKEY => match wire::decode(pt) {
                Ok(m) => self.handle_rekeyed(m),
                Err(e) => self.malformed(false, "rkey", e),
            },
            opcodes::ROWN => match wire::decode(pt) {
                Ok(m) => self.handle_owner_changed(m),
                Err(e) => self.malformed(false, "rown", e),
            },
            opcodes::RTMB => match wire::decode(pt) {
                Ok(m) => self.handle_tombstone(m),
                Err(e) => self.malformed(false, "rtmb", e),
            },
            opcodes::USRS => match wire::decode(pt) {
                Ok(m) => self.handle_user_entry(m, ours),
                Err(e) => self.malformed(ours, "usrs", e),
            },
            other => Some(Event::Notice(match opcodes::info(other) {
                Some(i) => format!(
                    "ignoring {} ({}) from the server: this client does not handle it",
                    i.mnemonic, i.struct_name
                ),
                None => format!("ignoring unknown opcode {other} from the server"),
            })),
        }
    }

    fn complete_status(&mut self, r: &StatusReply, now_ms: u64) -> Option<Event> {
        let f = self.in_flight.take()?;
        let status = Status::from_u8(r.hdr.status);
        match (f.what, status) {
            (Pending::Register(account, login), Some(Status::Ok)) => {
                // The driver saves the keys on `Registered`, before the login's answer can come.
                if let Some(creds) = login {
                    if let Err(f) = self.send_login(*creds, false, now_ms) {
                        self.events.push_back(Event::Failed(f));
                    }
                }
                Some(Event::Registered(account))
            }
            (Pending::Login { creds, again }, Some(Status::Pending)) => self.send_passphrase(creds, again, now_ms),
            (Pending::Login { again: true, .. } | Pending::Passphrase { again: true, .. }, _) => {
                let f = self.login_failure(refused("login", r));
                Some(Event::ReloginFailed(f))
            }
            (Pending::Room(p), _) => self.complete_room(p, r, now_ms),
            (Pending::Dm(p), _) => self.complete_dm(p, r, now_ms),
            (Pending::Simple(cmd), Some(Status::Ok)) => Some(Event::Done { cmd, room: String::new(), id: None }),
            (Pending::Password(creds), Some(Status::Ok)) => {
                // Logging in again (no ticket: every one was revoked) takes the new secrets.
                self.remembered = Some(*creds);
                Some(Event::PasswordChanged)
            }
            // An error is the server's word that the secrets did not change
            // (400, 401, 429, 500, 507: the old password stays); any other
            // status does not say: code 0, as a lost answer (the change stays staged).
            (Pending::Password(_), status) if status != Some(Status::Error) => {
                let why = format!("unexpected reply from the server (status {}): {}", r.hdr.status, reason(r));
                Some(Event::Failed(Failure::new("password", 0, why)))
            }
            (what @ (Pending::Login { .. } | Pending::Passphrase { .. }), _) => {
                let f = self.login_failure(refused(what.cmd(), r));
                Some(Event::Failed(f))
            }
            (Pending::Mod(p), _) => self.complete_mod(p, r),
            (what, _) => Some(Event::Failed(refused(what.cmd(), r))),
        }
    }

    /// Second login step (opcodes.toml `pass`), sent as soon as the password is accepted.
    fn send_passphrase(&mut self, creds: Credentials, again: bool, now_ms: u64) -> Option<Event> {
        let id = self.take_id();
        let mut m = Passphrase::request(id, now_ms);
        m.pass_secret = *creds.pass;
        self.queue(&mut m);
        let what = Pending::Passphrase { creds, again };
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what });
        None
    }

    /// True while a resumed connection waits for the server's `cnnt`.
    fn resuming(&self) -> bool {
        matches!(self.in_flight, Some(InFlight { what: Pending::Resume { .. }, .. }))
    }

    fn complete_connected(&mut self, c: &Connected) -> Option<Event> {
        let f = self.in_flight.take()?;
        let resumed = matches!(f.what, Pending::Resume { .. });
        match f.what {
            Pending::Passphrase { mut creds, again } | Pending::Resume { mut creds, again } => {
                if resumed && !c.username().is_ok_and(|u| u == creds.username) {
                    // The ticket's account is the server's word; a ticket of another account is not this login.
                    let what = "the resumed session is not this account's";
                    return Some(if again {
                        Event::ReloginFailed(Failure::new("login", 0, what))
                    } else {
                        Event::Failed(Failure::new("login", 0, what))
                    });
                }
                let user = creds.username.clone();
                // The password leaves the session here; only the derived secrets stay, to log in again.
                let password = std::mem::take(&mut creds.password);
                let again = again && self.me.is_some();
                if again {
                    // Local state stays loaded; what the outbox holds goes out again.
                    self.start_resend();
                } else {
                    self.me = Some(room::Me::new(c.uid.get(), &user));
                }
                self.remembered = Some(creds);
                Some(Event::Authenticated { user, uid: c.uid.get(), password, again, resumed })
            }
            other => {
                Some(Event::Failed(Failure::new(other.cmd(), 0, "unexpected cnnt (connected) reply from the server")))
            }
        }
    }

    fn malformed(&mut self, ours: bool, mnemonic: &str, e: WireError) -> Option<Event> {
        let what = format!("malformed {mnemonic} message from the server: {e}");
        match self.in_flight.take_if(|_| ours) {
            Some(f) => Some(Event::Failed(Failure::new(f.what.cmd(), 0, what))),
            None => Some(Event::Notice(format!("ignoring {what}"))),
        }
    }

    fn check_idle(&self, cmd: &str) -> Result<(), Failure> {
        if self.offline {
            return Err(Failure::new(cmd, 0, "not connected to the server; reconnecting"));
        }
        match self.in_flight {
            Some(_) => Err(Failure::new(cmd, 400, "another request is still waiting for its reply")),
            None => Ok(()),
        }
    }

    /// Queues a heartbeat (not a request in flight: its `pong` needs no matching).
    pub fn heartbeat(&mut self, now_ms: u64) {
        let id = self.take_id();
        let mut m = opcodes::Heartbeat::request(id, now_ms);
        self.queue(&mut m);
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Copies a message into the outbox and wipes the original (it may hold a password).
    fn queue<M: Message>(&mut self, m: &mut M) {
        self.outbox.push_back(Zeroizing::new(m.as_bytes().to_vec()));
        m.as_mut_bytes().zeroize();
    }
}

/// A sealed request kept to be sent (again) unchanged: a room line or a DM of
/// any size class. It holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Its msg_id.
    pub(crate) id: u64,
    /// The whole message.
    pub(crate) bytes: Vec<u8>,
}

/// Names whose key change or refusal is remembered as said, per session;
/// beyond (a server listing ever new names), it is said again rather than
/// remembered: memory stays bounded.
const ANNOUNCED_MAX: usize = 4096;

/// True the first time `name` is announced in `said` (and when `said` is full).
fn first_time(said: &mut std::collections::BTreeSet<String>, name: &str) -> bool {
    if said.contains(name) {
        return false;
    }
    if said.len() < ANNOUNCED_MAX {
        said.insert(name.to_owned());
    }
    true
}

fn deadline(now_ms: u64) -> u64 {
    now_ms.saturating_add(REQUEST_TIMEOUT_MS)
}

/// The failure a `stat` reports: the server's code and reason for an error,
/// "unexpected reply" for a status the request does not expect.
fn refused(cmd: &str, r: &StatusReply) -> Failure {
    match Status::from_u8(r.hdr.status) {
        Some(Status::Error) => Failure {
            cmd: cmd.to_string(),
            code: r.hdr.code.get(),
            message: reason(r),
            retry_after_ms: r.retry_after_ms.get(),
        },
        _ => Failure::new(
            cmd,
            r.hdr.code.get(),
            format!("unexpected reply from the server (status {}): {}", r.hdr.status, reason(r)),
        ),
    }
}

/// The reason text of a status reply, or a stand-in when it is empty or unreadable.
fn reason(r: &StatusReply) -> String {
    match r.reason() {
        Ok(s) if !s.is_empty() => s.to_string(),
        _ => format!("request refused (code {})", r.hdr.code.get()),
    }
}

fn too_long(cmd: &str, e: WireError) -> Failure {
    Failure::new(cmd, 400, format!("a value does not fit its protocol field: {e}"))
}

/// Normalises a user name and passphrase and checks the password (DESIGN §5;
/// the server sees only the secrets, so these rules are the client's), then
/// derives the auth and passphrase secrets (argon2id, twice 19 MiB).
/// Registration applies the password rule; login only the length limit,
/// so a wrong password is the server's 401, not a local verdict.
fn validate(cmd: &str, name: &str, password: &str, passphrase: &str, new: bool) -> Result<Credentials, Failure> {
    let bad = |e: account::AccountError| Failure::new(cmd, 400, e.to_string());
    let username = account::normalize_username(name).map_err(bad)?;
    if new {
        account::check_password(password).map_err(bad)?;
    } else if password.is_empty() || password.len() > account::PASSWORD_MAX {
        return Err(bad(account::AccountError::BadPassword));
    }
    let passphrase = Zeroizing::new(account::normalize_passphrase(passphrase).map_err(bad)?);
    let auth = account::auth_secret(&username, password);
    let pass = account::pass_secret(&username, &passphrase);
    Ok(Credentials { username, password: Zeroizing::new(password.to_string()), auth, pass })
}

#[cfg(test)]
#[path = "session/resume_tests.rs"]
mod resume_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use sotto::wire::code;
    use std::sync::OnceLock;
    use zerocopy::IntoBytes;

    pub(super) const NOW: u64 = 1_700_000_000_000;

    pub(super) fn status(id: u64, st: Status, code: u16, why: &str) -> Vec<u8> {
        let mut r = StatusReply::new(st, code, id, NOW);
        r.set_reason(why).unwrap();
        r.retry_after_ms = zerocopy::byteorder::big_endian::U32::new(if code == 429 { 1500 } else { 0 });
        r.as_bytes().to_vec()
    }

    fn connected(id: u64, user: &str) -> Vec<u8> {
        let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
        c.uid = zerocopy::byteorder::big_endian::U64::new(42);
        c.set_username(user).unwrap();
        c.as_bytes().to_vec()
    }

    /// Hands one frame to the session; its first event.
    pub(super) fn feed(s: &mut Session, frame: &[u8]) -> Option<Event> {
        s.handle_frame(frame, NOW);
        s.poll_event()
    }

    pub(super) fn sent_id(s: &mut Session) -> u64 {
        let pt = s.poll_transmit().expect("a request was queued");
        wire::header(&pt).unwrap().msg_id.get()
    }

    /// RSA generation is slow; one key serves every test.
    fn test_keys() -> NewKeys {
        static KEYS: OnceLock<(Zeroizing<Vec<u8>>, [u8; RSA_BYTES])> = OnceLock::new();
        let (der, n) = KEYS.get_or_init(|| identity::generate().unwrap());
        let secret = [5u8; 32];
        let enc_pub = PublicKey::from(&StaticSecret::from(secret)).to_bytes();
        NewKeys {
            local: LocalKeys { identity_der: der.clone(), enc_secret: Zeroizing::new(secret) },
            id_pub: *n,
            enc_pub,
        }
    }

    #[test]
    fn login_sends_passphrase_on_202_and_authenticates_on_cnnt() {
        let mut s = Session::new();
        s.login("Alice", "password123", "Red  green blue", NOW).unwrap();
        let pt = s.poll_transmit().unwrap();
        let m = wire::decode::<Login>(&pt).unwrap();
        assert_eq!(m.username().unwrap(), "alice");
        assert_eq!(m.auth_secret, *account::auth_secret("alice", "password123"));
        assert_eq!(m.hdr.msg_id.get(), 1);
        assert!(feed(&mut s, &status(1, Status::Pending, code::PENDING, "passphrase required")).is_none());
        let pt = s.poll_transmit().unwrap();
        let p = wire::decode::<Passphrase>(&pt).unwrap();
        assert_eq!(p.hdr.msg_id.get(), 2);
        assert_eq!(p.pass_secret, *account::pass_secret("alice", "red green blue"), "of the normalised phrase");
        match feed(&mut s, &connected(2, "alice")) {
            Some(Event::Authenticated { user, uid, password, again: false, resumed: false }) => {
                assert_eq!((user.as_str(), uid, password.as_str()), ("alice", 42, "password123"));
            }
            _ => panic!("expected authenticated"),
        }
        assert!(!s.busy());
    }

    #[test]
    fn login_error_at_either_step_is_reported_with_code_and_reason() {
        let mut s = Session::new();
        s.login("alice", "wrong", "red green blue", NOW).unwrap();
        let id = sent_id(&mut s);
        match feed(&mut s, &status(id, Status::Error, 401, "wrong user name or password")) {
            Some(Event::Failed(f)) => assert_eq!(f, Failure::new("login", 401, "wrong user name or password")),
            _ => panic!("expected failure"),
        }
        s.login("alice", "password123", "red green blue", NOW).unwrap();
        let id = sent_id(&mut s);
        feed(&mut s, &status(id, Status::Pending, 202, ""));
        let id = sent_id(&mut s);
        match feed(&mut s, &status(id, Status::Error, 429, "slow down")) {
            Some(Event::Failed(f)) => assert_eq!((f.cmd.as_str(), f.code, f.retry_after_ms), ("login", 429, 1500)),
            _ => panic!("expected failure"),
        }
    }

    #[test]
    fn rejects_bad_input_locally_without_sending() {
        let mut s = Session::new();
        for (name, pw, phrase) in
            [("a", "password123", "a b c"), ("alice", "short", "a b c"), ("alice", "password123", "a b")]
        {
            let f = s.register(name, pw, phrase, NOW).unwrap_err();
            assert_eq!((f.cmd.as_str(), f.code), ("register", 400));
        }
        assert_eq!(s.login("alice", "pw", "one two", NOW).unwrap_err().code, 400);
        assert!(s.poll_transmit().is_none() && !s.busy());
    }

    #[test]
    fn register_sends_signed_keys_and_hands_them_back_on_success() {
        let mut s = Session::new();
        let creds = validate("register", "Bob", "password123", "one two three", true).unwrap();
        s.register_with(creds, test_keys(), None, NOW).unwrap();
        let pt = s.poll_transmit().unwrap();
        let m = wire::decode::<Register>(&pt).unwrap();
        assert_eq!(m.username().unwrap(), "bob");
        assert_eq!(m.auth_secret, *account::auth_secret("bob", "password123"));
        assert_eq!(m.pass_secret, *account::pass_secret("bob", "one two three"));
        let public = identity::from_modulus(&m.id_pub).unwrap();
        let binding = account::enc_key_binding(&account::deployment_id(), m.uid.get(), "bob", &m.enc_pub);
        assert!(m.uid.get() != 0);
        assert!(identity::verify(&public, &binding, &m.enc_sig));
        let id = m.hdr.msg_id.get();
        match feed(&mut s, &status(id, Status::Ok, code::OK, "registered")) {
            Some(Event::Registered(a)) => {
                assert_eq!(a.username, "bob");
                assert_eq!(a.fingerprint, identity::fingerprint(&m.id_pub));
            }
            _ => panic!("expected registered"),
        }
        assert!(s.poll_transmit().is_none(), "register alone logs nothing in");
    }

    #[test]
    fn register_then_login_logs_in_with_the_same_secrets_once_registered() {
        let mut s = Session::new();
        let creds = validate("register", "bob", "password123", "one two three", true).unwrap();
        let again = Some(Box::new(creds.clone()));
        s.register_with(creds, test_keys(), again, NOW).unwrap();
        let id = sent_id(&mut s);
        assert!(s.poll_transmit().is_none(), "no login before the account exists");
        assert!(matches!(feed(&mut s, &status(id, Status::Ok, code::OK, "registered")), Some(Event::Registered(_))));
        let pt = s.poll_transmit().expect("a login");
        let login = wire::decode::<Login>(&pt).unwrap();
        assert_eq!((login.username(), login.auth_secret), (Ok("bob"), *account::auth_secret("bob", "password123")));
        let id = login.hdr.msg_id.get();
        assert!(feed(&mut s, &status(id, Status::Pending, code::PENDING, "")).is_none());
        let pt = s.poll_transmit().expect("the passphrase");
        let pass = wire::decode::<Passphrase>(&pt).unwrap();
        assert_eq!(pass.pass_secret, *account::pass_secret("bob", "one two three"));
        // A refused registration logs nothing in.
        let mut s = Session::new();
        let creds = validate("register", "bob", "password123", "one two three", true).unwrap();
        s.register_with(creds.clone(), test_keys(), Some(Box::new(creds)), NOW).unwrap();
        let id = sent_id(&mut s);
        assert!(matches!(feed(&mut s, &status(id, Status::Error, code::CONFLICT, "taken")), Some(Event::Failed(_))));
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn what_was_said_is_remembered_within_a_bound() {
        let mut said = std::collections::BTreeSet::new();
        assert!(first_time(&mut said, "bob") && !first_time(&mut said, "bob"));
        for i in 0..2 * ANNOUNCED_MAX {
            first_time(&mut said, &format!("u{i}"));
        }
        assert_eq!(said.len(), ANNOUNCED_MAX, "a server sending ever new names cannot grow it");
        assert!(first_time(&mut said, "new-name"), "still said");
        assert!(!first_time(&mut said, "bob"), "and what was remembered stays");
    }

    #[test]
    fn ignores_other_ids_unknown_opcodes_and_garbage() {
        let mut s = Session::new();
        s.login("alice", "password123", "red green blue", NOW).unwrap();
        let id = sent_id(&mut s);
        assert!(matches!(feed(&mut s, &status(id + 7, Status::Error, 400, "x")), Some(Event::Notice(_))));
        let mut unknown = status(id, Status::Ok, 200, "");
        unknown[..4].copy_from_slice(&999_999u32.to_be_bytes());
        assert!(matches!(feed(&mut s, &unknown), Some(Event::Notice(_))));
        assert!(matches!(feed(&mut s, &[1, 2, 3]), Some(Event::Notice(_))));
        assert!(s.busy(), "the login is still pending");
        let short = &status(id, Status::Error, 401, "x")[..40];
        assert!(matches!(feed(&mut s, short), Some(Event::Failed(f)) if f.code == 0));
    }

    #[test]
    fn times_out_a_request_without_reply() {
        let mut s = Session::new();
        s.login("alice", "password123", "red green blue", NOW).unwrap();
        assert_eq!(s.poll_timeout(), Some(NOW + REQUEST_TIMEOUT_MS));
        s.handle_timeout(NOW + 1);
        assert!(s.poll_event().is_none());
        s.handle_timeout(NOW + REQUEST_TIMEOUT_MS);
        assert!(matches!(s.poll_event(), Some(Event::Failed(f)) if f.code == 0));
        assert!(!s.busy());
    }

    /// Issue 11: the bytes the server receives at registration, login and
    /// passphrase hold neither the password nor the passphrase, nor anything
    /// that opens the key store those credentials sealed.
    #[test]
    fn the_server_never_receives_the_password_nor_what_opens_the_key_store() {
        const PW: &str = "correct horse 4242";
        const WORDS: &str = "Alpha  bravo charlie";
        let mut sent: Vec<Vec<u8>> = Vec::new();

        let mut s = Session::new();
        s.register_with(validate("register", "alice", PW, WORDS, true).unwrap(), test_keys(), None, NOW).unwrap();
        let reg = s.poll_transmit().unwrap().to_vec();
        let r = wire::decode::<Register>(&reg).unwrap();
        let (auth, pass) = (r.auth_secret, r.pass_secret);
        let account = match feed(&mut s, &status(r.hdr.msg_id.get(), Status::Ok, code::OK, "registered")) {
            Some(Event::Registered(a)) => a,
            _ => panic!("expected registered"),
        };
        sent.push(reg);

        let mut s = Session::new();
        s.login("Alice", PW, WORDS, NOW).unwrap();
        let login = s.poll_transmit().unwrap().to_vec();
        assert_eq!(wire::decode::<Login>(&login).unwrap().auth_secret, auth, "the same secret at login");
        feed(&mut s, &status(1, Status::Pending, code::PENDING, ""));
        let phrase = s.poll_transmit().unwrap().to_vec();
        assert_eq!(wire::decode::<Passphrase>(&phrase).unwrap().pass_secret, pass);
        assert!(matches!(feed(&mut s, &connected(2, "alice")), Some(Event::Authenticated { again: false, .. })));
        sent.extend([login, phrase]);
        // Logging in again after a lost connection: the remembered secrets, not the password.
        s.connection_lost();
        assert!(s.relogin(NOW));
        let again = s.poll_transmit().unwrap().to_vec();
        assert_eq!(wire::decode::<Login>(&again).unwrap().auth_secret, auth);
        sent.push(again);

        for bytes in &sent {
            for secret in [PW, "correct horse", "4242", "alpha bravo charlie", "Alpha", "alpha", "bravo", "charlie"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w.eq_ignore_ascii_case(secret.as_bytes())),
                    "{secret:?} sent"
                );
            }
        }
        assert_ne!(auth, pass);

        // The key store sealed with that password at registration.
        let home = std::env::temp_dir().join(format!("sotto-session-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        crate::keystore::save(&home, "alice", &account.password, &account.keys).unwrap();
        let path = crate::keystore::key_path(&home, "alice");
        let key_file = std::fs::read(&path).unwrap();
        for secret in [auth, pass] {
            // Neither as a password (hex or raw) ...
            for guess in [crypto::hex(&secret), String::from_utf8_lossy(&secret).into_owned()] {
                assert!(matches!(
                    crate::store::Store::open(&home, "alice", &guess),
                    Err(crate::keystore::KeyFileError::WrongPassword)
                ));
            }
            // ... nor as the key-encryption key itself.
            let kind = crate::keystore::KIND;
            assert!(crate::vault::unseal(kind, "alice", &crate::vault::subkey(&secret, kind), &key_file).is_err());
            assert!(!key_file.windows(32).any(|w| w == secret), "not in the file either");
        }
        let mut store = crate::store::Store::open(&home, "alice", PW).unwrap();
        assert!(crate::keystore::load(&mut store, &home, "alice").is_ok(), "the password opens it");
        std::fs::remove_dir_all(&home).unwrap();
    }
}
