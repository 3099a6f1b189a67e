//! Direct messages, the client's side of PROTOCOL.md §7 (DESIGN §7): request,
//! accept, reject, the contact book, sealing and sending, the checks on every
//! message that arrives, and the mailbox acknowledgements.
//!
//! Invariant: a contact is pinned only when it answers the user's own `/dm`
//! or `/accept`; one the server pushes otherwise is dropped, and the user is
//! told. A message is sent only to a trusted contact, sealed with a Double
//! Ratchet session started from its pinned keys (`prekeys`), and first kept
//! in the outbox; a message received is shown only from a trusted contact,
//! once (the seen set), and `verified` when its session's MAC verifies (a
//! session is made only with the contact's pinned keys: deniable, as in
//! Signal, with no signature). A message from the peer of an accept still completing is held
//! until the contact is stored, never dropped. A mailbox event is acknowledged only after what it brought
//! is recorded (the driver saves, then releases the acknowledgements); events
//! from a contact that is refused are neither shown nor acknowledged.

use std::collections::{BTreeSet, VecDeque};

use sotto::account;
use sotto::crypto;
use sotto::dm::{self, TEXT_MAX};
use sotto::identity;
use sotto::opcodes::{
    Contact as ContactMsg, DmAccept, DmReject, DmRejected, DmRequest, DmRequested, DmStatus, StatusReply,
};
use sotto::wire::{code, Message, Status};
use zeroize::Zeroizing;

use super::prekeys::{self, DmMsg};
use super::room::{canonical_user, keys_verify, UNDECRYPTABLE};
use super::{deadline, refused, too_long, Event, Failure, InFlight, Session};
use crate::contacts::{Contacts, Keys, Listed, TrustError};
use crate::fresh::Verdict;
use crate::inbox::{Inbox, Stored};
use crate::outbox::{Outbox, Waiting};
use crate::pins::Binding;
use crate::ratchets::Sessions;

/// `Contact.kind` (opcodes.toml `ctct`).
const ACCEPTED: u8 = 1;
const LISTED: u8 = 2;
/// `DmStatus.state` (opcodes.toml `dmst`).
const QUEUED: u8 = 1;
const DELIVERED: u8 = 2;
const EXPIRED: u8 = 3;
const RETURNED: u8 = 4;
/// Why a DM came back (`dmst` state 4).
pub const RETURNED_REASON: &str = "not delivered: account deleted";
/// How long a received message is kept after it was shown, unless `--dm-ttl` says otherwise.
pub const DEFAULT_TTL_MS: u64 = 3600 * 1000;
/// Messages held while an accept completes; beyond, they stay on the server until the next login.
const HELD_MAX: usize = 256;

/// What the client loads at login for direct messages (see `App`).
pub struct DmLocal {
    /// The X25519 secret that opens messages; `None` when the key file is not on this machine.
    pub enc_secret: Option<Zeroizing<[u8; 32]>>,
    /// The contact book.
    pub contacts: Contacts,
    /// The messages kept and the ids seen.
    pub inbox: Inbox,
    /// Messages not yet answered by the server.
    pub outbox: Outbox,
    /// The Double Ratchet sessions and this user's prekeys.
    pub sessions: Sessions,
    /// The DM files can be saved (else no DM is sent: a key could be used twice after a crash).
    pub writable: bool,
    /// How long a message is kept after it was shown.
    pub ttl_ms: u64,
}

impl Default for DmLocal {
    fn default() -> DmLocal {
        DmLocal {
            enc_secret: None,
            contacts: Contacts::new(),
            inbox: Inbox::new(),
            outbox: Outbox::new(),
            sessions: Sessions::new(),
            writable: true,
            ttl_ms: DEFAULT_TTL_MS,
        }
    }
}

/// The direct-message state of the logged-in user.
#[derive(Default)]
pub(super) struct Dm {
    pub(super) enc_secret: Option<Zeroizing<[u8; 32]>>,
    pub(super) contacts: Contacts,
    /// Kept messages, and the marks of what was shown (room messages too).
    pub(super) inbox: Inbox,
    pub(super) outbox: Outbox,
    /// The Double Ratchet sessions and this user's prekeys (session/prekeys.rs).
    pub(super) sessions: Sessions,
    /// No DM is sent: the DM files cannot be saved.
    pub(super) readonly: bool,
    /// The msg_id of the prekey upload waiting for its answer.
    pub(super) prekey_upload: Option<u64>,
    ttl_ms: u64,
    /// Contacts whose key change (or refused push) was reported this run.
    announced: BTreeSet<String>,
    /// Messages from the peer of an accept still completing, in arrival order.
    held: VecDeque<DmMsg>,
    /// Outbox ids still to send again after a login, in order.
    pub(super) resend: VecDeque<u64>,
    /// After a 429: no resend before this time.
    resend_after_ms: u64,
    /// Outbox ids sealed since the sessions were last handed out to be saved.
    sealed: Vec<u64>,
    /// Outbox ids sealed before the save in progress (see `withhold_dms`).
    saving: Vec<u64>,
    /// Messages arrived that cannot be opened here (no key file): said once.
    warned_no_keys: bool,
    /// DM ids sent since the start, with the recipient's UID (`/unsend ID`).
    pub(super) sent_to: VecDeque<(u64, u64)>,
}

impl From<DmLocal> for Dm {
    fn from(l: DmLocal) -> Dm {
        Dm {
            enc_secret: l.enc_secret,
            contacts: l.contacts,
            inbox: l.inbox,
            outbox: l.outbox,
            sessions: l.sessions,
            readonly: !l.writable,
            ttl_ms: l.ttl_ms,
            ..Dm::default()
        }
    }
}

/// A direct message as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmMessage {
    /// The sender's name.
    pub from: String,
    /// The message id.
    pub id: u64,
    /// The text; empty when it could not be decrypted.
    pub text: String,
    /// The sender's timestamp (signed), Unix ms.
    pub ts: u64,
    /// Opened by a session made with the contact's pinned keys (its MAC verified).
    pub verified: bool,
    /// Why there is no text ([`UNDECRYPTABLE`]).
    pub error: Option<&'static str>,
}

/// A contact as listed by `/contacts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInfo {
    /// User name.
    pub name: String,
    /// Hex fingerprint of the pinned identity key.
    pub fingerprint: String,
    /// Messages may be exchanged (no key change pending).
    pub trusted: bool,
}

/// What happens with direct messages, as the front ends show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmEvent {
    /// Someone asks for a DM channel.
    Requested {
        /// The requester.
        from: String,
    },
    /// A DM channel is open: the contact's keys are pinned.
    Accepted {
        /// The contact.
        with: String,
        /// Hex fingerprint of the pinned identity key.
        fingerprint: String,
    },
    /// Your request was rejected.
    Rejected {
        /// Who rejected it.
        by: String,
    },
    /// A direct message.
    Message(DmMessage),
    /// The server holds a message you sent.
    Sent {
        /// Message id.
        id: u64,
        /// Recipient.
        to: String,
        /// The recipient's client has it (else it is queued on the server).
        delivered: bool,
    },
    /// A message waits in the outbox (not connected, or no answer yet).
    Pending {
        /// Message id.
        id: u64,
        /// Recipient.
        to: String,
    },
    /// The server lists other keys for a contact: refused until `/trust`.
    KeyChanged {
        /// The contact.
        user: String,
    },
    /// A message the server had answered "queued" reached the recipient's client since.
    Delivered {
        /// Message id.
        id: u64,
        /// Recipient.
        to: String,
    },
    /// A message you sent expired undelivered on the server.
    Expired {
        /// Message id.
        id: u64,
    },
    /// A message you sent came back undelivered: its recipient deleted the account.
    Returned {
        /// Message id.
        id: u64,
        /// Recipient.
        to: String,
        /// Why ([`RETURNED_REASON`]).
        reason: &'static str,
    },
    /// Answer to `/contacts`.
    Contacts {
        /// Every contact, by name.
        contacts: Vec<ContactInfo>,
        /// Our requests not answered yet.
        sent: Vec<String>,
        /// Requests to us not answered yet.
        received: Vec<String>,
    },
    /// Answer to `/fingerprint`.
    Fingerprint {
        /// The contact.
        user: String,
        /// Hex fingerprint of the contact's pinned identity key.
        fingerprint: String,
        /// Hex fingerprint of your identity key.
        mine: String,
        /// Safety number of both.
        safety_number: String,
        /// Hex fingerprint of the other key the server lists, when it changed.
        listed: Option<String>,
    },
    /// Answer to `/history`: the messages still kept.
    History {
        /// The contact.
        with: String,
        /// Oldest first.
        messages: Vec<DmMessage>,
    },
    /// `/dm`, `/reject` or `/trust` succeeded.
    Ok {
        /// Command name without the slash.
        cmd: &'static str,
        /// The user concerned.
        user: String,
    },
}

/// A DM request waiting for its answer.
pub(super) enum Pending {
    /// Answered 200, or 409 with the peer's keys first (ctct) when the server
    /// already has the two as contacts (another machine of this user accepted).
    Request {
        peer: String,
        keys: Option<Box<(u64, Keys, bool)>>,
    },
    /// The accepted peer's keys arrive (ctct) before the final `stat`.
    Accept {
        peer: String,
        keys: Option<Box<(u64, Keys, bool)>>,
    },
    Reject {
        peer: String,
    },
    /// An `smp*` (typed now, or sent again from the outbox): answered by `dmst`.
    Send {
        id: u64,
        peer: String,
    },
    /// A `pkgt` for the first message `dm_id` (in the outbox) to `peer`: answered by `pkbd`.
    Bundle {
        peer: String,
        uid: u64,
        dm_id: u64,
    },
}

impl Pending {
    /// The user the request is about.
    fn peer(&self) -> &str {
        match self {
            Pending::Request { peer, .. } | Pending::Accept { peer, .. } | Pending::Reject { peer } => peer,
            Pending::Send { peer, .. } | Pending::Bundle { peer, .. } => peer,
        }
    }

    pub(super) fn cmd(&self) -> &'static str {
        match self {
            Pending::Request { .. } => "dm",
            Pending::Accept { .. } => "accept",
            Pending::Reject { .. } => "reject",
            Pending::Send { .. } | Pending::Bundle { .. } => "msg",
        }
    }
}

/// `@name` or `name`, normalised.
fn peer_name(cmd: &str, user: &str) -> Result<String, Failure> {
    let raw = user.strip_prefix('@').unwrap_or(user);
    account::normalize_username(raw).map_err(|e| Failure::new(cmd, 400, e.to_string()))
}

pub(super) fn log_in_first(cmd: &str) -> Failure {
    Failure::new(cmd, 401, "log in first")
}

/// A random non-zero message id (unique across restarts, unlike the request counter).
fn fresh_id() -> u64 {
    loop {
        let id = u64::from_be_bytes(crypto::random());
        if id != 0 {
            return id;
        }
    }
}

impl Session {
    /// The contact book, once after each change (to be saved).
    pub fn dirty_contacts(&mut self) -> Option<&Contacts> {
        let me = self.me.as_mut()?;
        me.dm.contacts.take_dirty().then_some(&me.dm.contacts)
    }

    /// The kept messages, once after each change (to be saved).
    pub fn dirty_inbox(&mut self) -> Option<&Inbox> {
        let me = self.me.as_mut()?;
        me.dm.inbox.take_dirty().then_some(&me.dm.inbox)
    }

    /// The sessions and prekeys, once after each change (saved after the inbox, before the outbox).
    pub fn dirty_sessions(&mut self) -> Option<&Sessions> {
        let me = self.me.as_mut()?;
        if !me.dm.sessions.take_dirty() {
            return None;
        }
        // The messages sealed so far are safe once this save succeeds.
        me.dm.saving = std::mem::take(&mut me.dm.sealed);
        Some(&me.dm.sessions)
    }

    /// The sessions could not be saved: no DM sealed since leaves (after a
    /// crash the old state would seal another text with the same key), and
    /// none is sent again this session. Those sealed with the state that was
    /// not saved also leave the outbox: kept, they would be sent after a
    /// restart beside new texts sealed with the same keys by the saved state.
    pub fn withhold_dms(&mut self) -> Vec<Failure> {
        let Some(me) = self.me.as_mut() else { return Vec::new() };
        me.dm.readonly = true;
        let unsaved = std::mem::take(&mut me.dm.saving).into_iter().chain(std::mem::take(&mut me.dm.sealed));
        let dropped = unsaved.filter(|id| me.dm.outbox.remove(*id).is_some()).count();
        let is_dm = |b: &[u8]| {
            sotto::wire::header(b).is_ok_and(|h| sotto::wire::class_of(sotto::opcodes::SMPS, h.opcode.get()).is_some())
        };
        let before = self.outbox.len();
        self.outbox.retain(|b| !is_dm(b));
        me.dm.resend.clear();
        let mut out = Vec::new();
        if self.outbox.len() != before || dropped > 0 {
            out.push(prekeys::readonly());
        }
        if dropped > 0 {
            out.push(Failure::new(
                "msg",
                503,
                format!("{dropped} direct message(s) sealed since the DM sessions were last saved were dropped, not sent: type them again in a later session"),
            ));
        }
        if matches!(self.in_flight.as_ref().map(|f| &f.what), Some(super::Pending::Dm(Pending::Send { .. }))) {
            self.in_flight = None;
        }
        out
    }

    /// The outbox, once after each change (to be saved before anything is sent).
    pub fn dirty_outbox(&mut self) -> Option<&Outbox> {
        let me = self.me.as_mut()?;
        me.dm.outbox.take_dirty().then_some(&me.dm.outbox)
    }

    /// Erases the kept messages whose time is up.
    pub(super) fn erase_expired(&mut self, now_ms: u64) {
        if let Some(me) = self.me.as_mut() {
            let ttl = me.dm.ttl_ms;
            me.dm.inbox.erase_expired(now_ms, ttl);
        }
    }

    /// Queues the whole outbox to be sent again, in order (after a login).
    pub(super) fn start_resend(&mut self) {
        if let Some(me) = self.me.as_mut() {
            me.dm.resend = me.dm.outbox.ids().into();
        }
    }

    /// Sends the next outbox message again once nothing else is in flight.
    pub(super) fn poll_resend(&mut self, now_ms: u64) {
        if self.in_flight.is_some() || self.offline {
            return;
        }
        let Some(me) = self.me.as_mut() else { return };
        if now_ms < me.dm.resend_after_ms {
            return;
        }
        while let Some(id) = me.dm.resend.pop_front() {
            let Some(e) = me.dm.outbox.get(id).cloned() else { continue };
            let text = match e.body {
                Waiting::Sealed(frame) => {
                    self.outbox.push_back(Zeroizing::new(frame.bytes));
                    let what = super::Pending::Dm(Pending::Send { id, peer: e.peer });
                    self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what });
                    return;
                }
                Waiting::Text { text, ts, .. } => (text, ts),
            };
            let (text, ts) = text;
            // A first message typed while the connection was lost: sealed now.
            let Some(uid) = me.dm.contacts.get(&e.peer).filter(|c| c.trusted).map(|c| c.uid) else {
                me.dm.outbox.remove(id);
                let why = format!("message {id:016x} to {} dropped: no longer a trusted contact", e.peer);
                self.events.push_back(Event::Failed(Failure::new("msg", 403, why)));
                continue;
            };
            if me.dm.sessions.with(uid).is_empty() {
                self.fetch_bundle(e.peer, uid, id, now_ms);
            } else if let Err(f) = self.send_sealed(&e.peer, uid, &text, (id, ts), now_ms) {
                self.events.push_back(Event::Failed(f));
            }
            return;
        }
    }

    /// Logged in, nothing in flight, connected, and a valid user name (canonical form returned).
    fn dm_request_check(&self, cmd: &str, user: &str) -> Result<String, Failure> {
        let me = self.me.as_ref().ok_or_else(|| log_in_first(cmd))?;
        let peer = peer_name(cmd, user)?;
        if peer == me.user {
            return Err(Failure::new(cmd, 400, "you cannot message yourself"));
        }
        self.check_idle(cmd)?;
        Ok(peer)
    }

    fn start_dm(&mut self, id: u64, now_ms: u64, what: Pending) {
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what: super::Pending::Dm(what) });
    }

    /// `/dm @user` (jmpu): ask for a DM channel.
    pub fn dm_request(&mut self, user: &str, now_ms: u64) -> Result<(), Failure> {
        let peer = self.dm_request_check("dm", user)?;
        let id = self.take_id();
        let mut m = DmRequest::request(id, now_ms);
        m.set_peer(&peer).map_err(|e| too_long("dm", e))?;
        self.queue(&mut m);
        // Its answer, and only it, may pin the peer: recorded before it can come.
        if let Some(me) = self.me.as_mut() {
            me.dm.contacts.request(&peer);
        }
        self.start_dm(id, now_ms, Pending::Request { peer, keys: None });
        Ok(())
    }

    /// `/accept @user` (ampu): accept a pending request; the peer's keys are pinned.
    pub fn dm_accept(&mut self, user: &str, now_ms: u64) -> Result<(), Failure> {
        let peer = self.dm_request_check("accept", user)?;
        let id = self.take_id();
        let mut m = DmAccept::request(id, now_ms);
        m.set_peer(&peer).map_err(|e| too_long("accept", e))?;
        self.queue(&mut m);
        self.start_dm(id, now_ms, Pending::Accept { peer, keys: None });
        Ok(())
    }

    /// `/reject @user` (rjmu): drop a pending request.
    pub fn dm_reject(&mut self, user: &str, now_ms: u64) -> Result<(), Failure> {
        let peer = self.dm_request_check("reject", user)?;
        let id = self.take_id();
        let mut m = DmReject::request(id, now_ms);
        m.set_peer(&peer).map_err(|e| too_long("reject", e))?;
        self.queue(&mut m);
        self.start_dm(id, now_ms, Pending::Reject { peer });
        Ok(())
    }

    /// `/msg @user TEXT` (smp*): sealed with the contact's session (the first
    /// message fetches their prekeys and starts one), kept in the outbox, then
    /// sent; while the connection is lost only kept (`pending`).
    pub fn send_dm(&mut self, user: &str, text: &str, now_ms: u64) -> Result<u64, Failure> {
        let cmd = "msg";
        let name = peer_name(cmd, user)?;
        let me = self.me.as_ref().ok_or_else(|| log_in_first(cmd))?;
        if !self.offline {
            self.check_idle(cmd)?;
        }
        let Some(contact) = me.dm.contacts.get(&name) else {
            return Err(Failure::new(
                cmd,
                403,
                // Worded like /dm's answer for a name the server does not know.
                format!("no user named {name} among your contacts: /dm @{name} asks {name} first, or /accept @{name}'s request"),
            ));
        };
        if !contact.trusted {
            return Err(Failure::new(
                cmd,
                403,
                format!(
                    "the server lists another key for {name}: messages to and from {name} are refused until you compare /fingerprint @{name} and run /trust @{name}"
                ),
            ));
        }
        if text.len() > TEXT_MAX {
            return Err(Failure::new(cmd, 413, format!("message too long ({} bytes, at most {TEXT_MAX})", text.len())));
        }
        if me.dm.enc_secret.is_none() {
            return Err(Failure::new(
                cmd,
                403,
                "no encryption key on this machine: direct messages can only be sent where the account's keys are",
            ));
        }
        if me.dm.readonly {
            return Err(prekeys::readonly());
        }
        let uid = contact.uid;
        let dm_id = fresh_id();
        if me.dm.sessions.with(uid).is_empty() || !me.dm.resend.is_empty() {
            // No session yet (a first message), or earlier ones still to go
            // first: kept as typed, sealed when its turn comes.
            let me = self.me.as_mut().ok_or_else(|| log_in_first(cmd))?;
            super::moderation::note_sent(&mut me.dm.sent_to, dm_id, uid);
            let typed = Waiting::Text { id: dm_id, ts: now_ms, text: Zeroizing::new(text.to_owned()) };
            me.dm.outbox.push(&name, typed);
            if self.offline || !me.dm.resend.is_empty() {
                me.dm.resend.push_back(dm_id);
                self.events.push_back(Event::Dm(DmEvent::Pending { id: dm_id, to: name }));
            } else {
                self.fetch_bundle(name, uid, dm_id, now_ms);
            }
            return Ok(dm_id);
        }
        self.send_sealed(&name, uid, text, (dm_id, now_ms), now_ms)?;
        if let Some(me) = self.me.as_mut() {
            super::moderation::note_sent(&mut me.dm.sent_to, dm_id, uid);
        }
        Ok(dm_id)
    }

    /// Seals `text` as message `(dm_id, ts)` with the session with `uid`,
    /// keeps it in the outbox, and sends it (or reports it pending while the
    /// connection is lost).
    pub(super) fn send_sealed(
        &mut self,
        name: &str,
        uid: u64,
        text: &str,
        (dm_id, ts): (u64, u64),
        now_ms: u64,
    ) -> Result<(), Failure> {
        let me = self.me.as_mut().ok_or_else(|| log_in_first("msg"))?;
        let frame = prekeys::seal(&mut me.dm.sessions, me.uid, uid, text, dm_id, ts)
            .map_err(|why| Failure::new("msg", 500, why))?;
        // The driver saves the sessions, then the outbox, before it sends anything (App::flush).
        if me.dm.outbox.get(dm_id).is_some() {
            me.dm.outbox.sealed(frame.clone());
        } else {
            me.dm.outbox.push(name, Waiting::Sealed(frame.clone()));
        }
        me.dm.sealed.push(dm_id);
        if self.offline {
            self.events.push_back(Event::Dm(DmEvent::Pending { id: dm_id, to: name.to_owned() }));
            return Ok(());
        }
        self.outbox.push_back(Zeroizing::new(frame.bytes));
        self.start_dm(dm_id, now_ms, Pending::Send { id: dm_id, peer: name.to_owned() });
        Ok(())
    }

    /// The UID of `name` when it is a trusted contact (a file may go to it).
    pub fn contact_uid(&self, name: &str) -> Option<u64> {
        self.me.as_ref()?.dm.contacts.get(name).filter(|c| c.trusted).map(|c| c.uid)
    }

    /// The contact book as it is (read only): each contact's fingerprint and trust.
    pub fn contacts(&self) -> Vec<ContactInfo> {
        let Some(me) = self.me.as_ref() else { return Vec::new() };
        me.dm
            .contacts
            .all()
            .into_iter()
            .map(|c| ContactInfo { name: c.name.clone(), fingerprint: c.keys.fingerprint(), trusted: c.trusted })
            .collect()
    }

    /// `/contacts`: the local contact book.
    pub fn list_contacts(&mut self) -> Result<(), Failure> {
        let list = self.contacts();
        let me = self.me.as_ref().ok_or_else(|| log_in_first("contacts"))?;
        let sent = me.dm.contacts.requests().map(str::to_owned).collect();
        let received = me.dm.contacts.received().map(str::to_owned).collect();
        self.events.push_back(Event::Dm(DmEvent::Contacts { contacts: list, sent, received }));
        Ok(())
    }

    /// `/fingerprint @user`: both fingerprints and the safety number.
    pub fn fingerprint(&mut self, user: &str) -> Result<(), Failure> {
        let cmd = "fingerprint";
        let me = self.me.as_ref().ok_or_else(|| log_in_first(cmd))?;
        let name = peer_name(cmd, user)?;
        let contact =
            me.dm.contacts.get(&name).ok_or_else(|| Failure::new(cmd, 404, format!("{name} is not a contact")))?;
        let mine = me
            .signer
            .as_ref()
            .and_then(|s| identity::modulus(s.public()).ok())
            .map(|n| identity::fingerprint(&n))
            .ok_or_else(|| Failure::new(cmd, 403, "no identity key on this machine"))?;
        let theirs = identity::fingerprint(&contact.keys.id_pub);
        let ev = DmEvent::Fingerprint {
            user: name,
            fingerprint: crypto::hex(&theirs),
            mine: crypto::hex(&mine),
            safety_number: dm::safety_number(&mine, &theirs),
            listed: contact.listed.map(|l| l.keys.fingerprint()),
        };
        self.events.push_back(Event::Dm(ev));
        Ok(())
    }

    /// `/trust @user`: pin the UID and keys the server lists now for a contact
    /// or a pinned name, and talk again.
    pub fn trust(&mut self, user: &str) -> Result<(), Failure> {
        let cmd = "trust";
        let name = peer_name(cmd, user)?;
        let me = self.me.as_mut().ok_or_else(|| log_in_first(cmd))?;
        let unbound = || {
            Failure::new(
                cmd,
                403,
                format!("the keys the server lists for {name} do not verify (their identity key did not sign their UID and encryption key): they cannot be trusted"),
            )
        };
        // The DM sessions were made with the contact's pinned keys (a contact
        // need not be among the pins: they are bounded, and saved apart).
        let before =
            me.dm.contacts.get(&name).map(|c| Binding { uid: c.uid, id_pub: c.keys.id_pub, enc_pub: c.keys.enc_pub });
        let binding = match me.dm.contacts.trust(&name) {
            Ok(c) => Binding { uid: c.uid, id_pub: c.keys.id_pub, enc_pub: c.keys.enc_pub },
            Err(TrustError::Unbound) => return Err(unbound()),
            // Not a contact: a room member whose key changed.
            Err(TrustError::Unknown) => match me.pins.get(&name).map(|p| p.listed) {
                Some(Some(l)) if l.binds => l.binding,
                Some(Some(_)) => return Err(unbound()),
                Some(None) => {
                    self.events.push_back(Event::Dm(DmEvent::Ok { cmd, user: name }));
                    return Ok(());
                }
                None => return Err(Failure::new(cmd, 404, format!("{name} is not a contact"))),
            },
        };
        // Room messages from this user verify with the trusted key too; the
        // DM sessions made with the old keys end (the next message starts anew).
        let pinned = me.pins.get(&name).map(|p| p.binding);
        for old in [before, pinned].into_iter().flatten().filter(|old| *old != binding) {
            me.dm.sessions.forget(old.uid);
            me.dm.sessions.forget(binding.uid);
        }
        me.pins.replace(&name, binding);
        me.dm.announced.remove(&name);
        self.events.push_back(Event::Dm(DmEvent::Ok { cmd, user: name }));
        Ok(())
    }

    /// `/forget @user`: erases the messages from `user` kept here (the marks
    /// of what was shown stay, so none of them shows as new again).
    pub fn forget(&mut self, user: &str) -> Result<(), Failure> {
        let cmd = "forget";
        let name = peer_name(cmd, user)?;
        let me = self.me.as_mut().ok_or_else(|| log_in_first(cmd))?;
        let Some(uid) = me.dm.contacts.get(&name).map(|c| c.uid) else {
            return Err(Failure::new(cmd, 404, format!("{name} is not among your contacts")));
        };
        me.dm.inbox.forget(uid);
        self.events.push_back(Event::Dm(DmEvent::Ok { cmd, user: name }));
        Ok(())
    }

    /// `/history @user`: the messages from `user` still kept.
    pub fn history(&mut self, user: &str) -> Result<(), Failure> {
        let cmd = "history";
        let me = self.me.as_ref().ok_or_else(|| log_in_first(cmd))?;
        let name = peer_name(cmd, user)?;
        let messages = match me.dm.contacts.get(&name) {
            Some(c) => me
                .dm
                .inbox
                .from(c.uid)
                .map(|m| DmMessage {
                    from: m.from.clone(),
                    id: m.id,
                    text: m.text.to_string(),
                    ts: m.ts,
                    verified: m.verified,
                    error: None,
                })
                .collect(),
            None => Vec::new(),
        };
        self.events.push_back(Event::Dm(DmEvent::History { with: name, messages }));
        Ok(())
    }

    /// The final `stat` of a DM request.
    pub(super) fn complete_dm(&mut self, p: Pending, r: &StatusReply, now_ms: u64) -> Option<Event> {
        let ok = r.hdr.code.get() == code::OK && matches!(Status::from_u8(r.hdr.status), Some(Status::Ok));
        // The server's reason names no one; the user is told whose mailbox (PROTOCOL §5, 508).
        let whose = p.peer().to_owned();
        let refused = |cmd: &str, r: &StatusReply| {
            let mut f = refused(cmd, r);
            if f.code == code::MAILBOX_FULL {
                f.message = format!("mailbox of {whose} is full");
            }
            f
        };
        match p {
            Pending::Request { peer, .. } if ok => Some(Event::Dm(DmEvent::Ok { cmd: "dm", user: peer })),
            Pending::Request { peer, keys: Some(k) }
                if r.hdr.code.get() == code::CONFLICT
                    && self.me.as_ref().is_some_and(|me| me.dm.contacts.get(&peer).is_none()) =>
            {
                // Already contacts on the server, not in this book (another
                // machine accepted): the keys answer this /dm.
                let (uid, keys, binds) = *k;
                match self.accepted(uid, &peer, keys, binds) {
                    Ok(()) => None,
                    Err(why) => Some(Event::Failed(Failure::new("dm", 0, why))),
                }
            }
            Pending::Request { peer, keys } => {
                let mut f = refused("dm", r);
                if f.code == code::NOT_FOUND {
                    // Said like /msg to a name that is no contact.
                    f.message = format!("no user named {peer}");
                }
                // Refused (no such user, already contacts): nothing more can
                // answer it. "Already requested" (409 without keys) stays.
                let me = self.me.as_mut()?;
                if f.code != code::CONFLICT || keys.is_some() {
                    me.dm.contacts.answered(&peer);
                }
                if let Some((uid, keys, binds)) = keys.map(|k| *k) {
                    if me.dm.contacts.observe(&peer, Listed { uid, keys, binds })
                        && super::first_time(&mut me.dm.announced, &peer)
                    {
                        self.events.push_back(Event::Dm(DmEvent::KeyChanged { user: peer }));
                    }
                }
                Some(Event::Failed(f))
            }
            Pending::Reject { peer } if ok => {
                if let Some(me) = self.me.as_mut() {
                    me.dm.contacts.handled(&peer);
                }
                Some(Event::Dm(DmEvent::Ok { cmd: "reject", user: peer }))
            }
            Pending::Accept { peer, keys } if ok => {
                let done = match keys.map(|k| *k) {
                    Some((uid, keys, binds)) => match self.accepted(uid, &peer, keys, binds) {
                        Ok(()) => None,
                        Err(why) => Some(Event::Failed(Failure::new("accept", 0, why))),
                    },
                    None => Some(Event::Failed(Failure::new(
                        "accept",
                        0,
                        format!("the server accepted but sent no keys for {peer}"),
                    ))),
                };
                if let Some(ev) = done {
                    self.events.push_back(ev);
                }
                self.release_held_dms(now_ms);
                None
            }
            Pending::Accept { peer, .. } => {
                let f = refused("accept", r);
                if f.code == code::NOT_FOUND {
                    // The server holds no request from `peer`: nothing to answer any more.
                    if let Some(me) = self.me.as_mut() {
                        me.dm.contacts.handled(&peer);
                    }
                }
                self.events.push_back(Event::Failed(f));
                self.release_held_dms(now_ms);
                None
            }
            Pending::Send { id, peer } => {
                let mut f = refused("msg", r);
                let me = self.me.as_mut()?;
                // Refused for good (not a contact, no such user): it leaves the outbox.
                // Otherwise (rate limit, server trouble) it is sent again after the next login.
                if f.code == code::RATE_LIMITED {
                    // Sending too fast: the server says when to try again; no new login needed.
                    me.dm.resend.push_front(id);
                    me.dm.resend_after_ms = now_ms + u64::from(f.retry_after_ms.max(1));
                    f.message.push_str(&format!(" (message {id:016x} to {peer} kept; sent again when allowed)"));
                } else if (400..500).contains(&f.code) {
                    me.dm.outbox.remove(id);
                    f.message.push_str(&format!(" (message {id:016x} to {peer} dropped)"));
                } else {
                    f.message
                        .push_str(&format!(" (message {id:016x} to {peer} kept; sent again after the next login)"));
                }
                Some(Event::Failed(f))
            }
            Pending::Bundle { peer, dm_id, .. } => {
                let mut f = refused("msg", r);
                let me = self.me.as_mut()?;
                let fate = if f.code == code::RATE_LIMITED {
                    me.dm.resend.push_front(dm_id);
                    me.dm.resend_after_ms = now_ms + u64::from(f.retry_after_ms.max(1));
                    "kept; sent again when allowed"
                } else if (400..500).contains(&f.code) {
                    me.dm.outbox.remove(dm_id);
                    "dropped"
                } else {
                    "kept; sent again after the next login"
                };
                f.message = format!("cannot start a session with {peer}: {} (message {dm_id:016x} {fate})", f.message);
                Some(Event::Failed(f))
            }
            p => Some(Event::Failed(refused(p.cmd(), r))),
        }
    }

    /// Pins a contact whose channel was accepted (answering our `/dm` or
    /// `/accept`), and reports `dm_accepted` (and `key_changed` when it is
    /// refused); the reason when its keys do not bind.
    fn accepted(&mut self, uid: u64, name: &str, keys: Keys, binds: bool) -> Result<(), String> {
        let Some(me) = self.me.as_mut() else { return Err("not logged in".into()) };
        if !binds {
            me.dm.contacts.answered(name);
            return Err(format!(
                "the keys the server sent for {name} do not verify; they are not pinned, and direct messages with {name} are not possible"
            ));
        }
        let listed = Listed { uid, keys, binds };
        if me.dm.contacts.get(name).is_none() {
            // First sight wins: a name pinned earlier (a shared room) keeps its UID and keys.
            let (first_uid, first) = me.pins.get(name).map_or((uid, keys), |p| {
                (p.binding.uid, Keys { id_pub: p.binding.id_pub, enc_pub: p.binding.enc_pub })
            });
            me.dm.contacts.pin(first_uid, name, first);
            if me.pins.get(name).is_none() {
                me.pins.observe(name, Binding { uid, id_pub: keys.id_pub, enc_pub: keys.enc_pub }, true);
            }
        }
        let changed = me.dm.contacts.observe(name, listed);
        let Some(c) = me.dm.contacts.get(name) else { return Err("not pinned".into()) };
        let accepted = DmEvent::Accepted { with: c.name.clone(), fingerprint: c.keys.fingerprint() };
        self.events.push_back(Event::Dm(accepted));
        if changed && super::first_time(&mut me.dm.announced, name) {
            self.events.push_back(Event::Dm(DmEvent::KeyChanged { user: name.to_string() }));
        }
        Ok(())
    }

    /// Hands the messages held during an accept to the checks again, in order
    /// (the accept answered, or timed out).
    pub(super) fn release_held_dms(&mut self, now_ms: u64) {
        let held = match self.me.as_mut() {
            Some(me) => std::mem::take(&mut me.dm.held),
            None => return,
        };
        for m in held {
            if let Some(ev) = self.handle_receive_dm(&m, now_ms) {
                self.events.push_back(ev);
            }
        }
    }

    /// Forgets the messages held during an accept: the connection was lost
    /// before they were acknowledged, so the server delivers them again.
    pub(super) fn forget_held_dms(&mut self) {
        if let Some(me) = self.me.as_mut() {
            me.dm.held.clear();
        }
    }

    /// `dmrq`: someone asks for a channel.
    pub(super) fn handle_dm_requested(&mut self, m: &DmRequested) -> Option<Event> {
        self.me.as_ref()?;
        let Some(from) = canonical_user(m.from()) else {
            return Some(Event::Notice("ignoring a dmrq (DM request) with a malformed name".into()));
        };
        if let Some(me) = self.me.as_mut() {
            // Saved before the acknowledgement is released (App::persist).
            me.dm.contacts.receive(&from);
        }
        self.ack(m.seq.get());
        Some(Event::Dm(DmEvent::Requested { from }))
    }

    /// `dmrj`: your request was rejected; it is answered, so no contact the
    /// server pushes for that name later pins it.
    pub(super) fn handle_dm_rejected(&mut self, m: &DmRejected) -> Option<Event> {
        let me = self.me.as_mut()?;
        let Some(by) = canonical_user(m.by()) else {
            return Some(Event::Notice("ignoring a dmrj (DM rejected) with a malformed name".into()));
        };
        me.dm.contacts.answered(&by);
        self.ack(m.seq.get());
        Some(Event::Dm(DmEvent::Rejected { by }))
    }

    /// `ctct`: part of an accept answer or of a 409 to a request (ours), an
    /// accept from the mailbox (kind 1), or a contact listed at login (kind 2).
    /// Only an answer to this client's own `/dm` or `/accept` pins a contact.
    pub(super) fn handle_contact(&mut self, m: &ContactMsg, ours: bool) -> Option<Event> {
        self.me.as_ref()?;
        let Some(name) = canonical_user(m.name()) else {
            return Some(Event::Notice("ignoring a ctct (contact) with a malformed name".into()));
        };
        let uid = m.uid.get();
        let keys = Keys { id_pub: m.id_pub, enc_pub: m.enc_pub };
        let binds = keys_verify(uid, &name, &m.id_pub, &m.enc_pub, &m.enc_sig);
        if ours {
            return match self.in_flight.as_mut().map(|f| &mut f.what) {
                Some(super::Pending::Dm(
                    Pending::Accept { peer, keys: slot } | Pending::Request { peer, keys: slot },
                )) if *peer == name => {
                    *slot = Some(Box::new((uid, keys, binds)));
                    None
                }
                _ => Some(Event::Notice(format!("ignoring a ctct (contact) of {name} for another request"))),
            };
        }
        let me = self.me.as_mut()?;
        let known = me.dm.contacts.get(&name).is_some();
        let asked = me.dm.contacts.requested(&name);
        match m.kind {
            ACCEPTED | LISTED if known => {
                self.ack(m.seq.get());
                let me = self.me.as_mut()?;
                let changed = me.dm.contacts.observe(&name, Listed { uid, keys, binds });
                (changed && super::first_time(&mut me.dm.announced, &name))
                    .then(|| Event::Dm(DmEvent::KeyChanged { user: name }))
            }
            ACCEPTED | LISTED if asked => {
                self.ack(m.seq.get());
                self.accepted(uid, &name, keys, binds).err().map(Event::Warning)
            }
            ACCEPTED | LISTED => {
                // Pushed without our request: dropped (acknowledged), and said once.
                let first = super::first_time(&mut me.dm.announced, &name);
                self.ack(m.seq.get());
                first.then(|| {
                    Event::Warning(format!(
                        "the server presents {name} as a contact, but this client neither asked {name} (/dm) nor accepted {name} (/accept): not pinned. If you did on another machine, run /dm @{name} here"
                    ))
                })
            }
            kind => Some(Event::Notice(format!("ignoring a ctct (contact) of kind {kind}"))),
        }
    }

    /// `rvu*`: a direct message, checked, opened by its session, shown once,
    /// kept, then acknowledged.
    pub(super) fn handle_receive_dm(&mut self, m: &DmMsg, now_ms: u64) -> Option<Event> {
        let me = self.me.as_mut()?;
        let h = &m.head;
        let (seq, sender, dm_id, ts) = (h.seq.get(), h.sender_uid.get(), h.dm_id.get(), h.sent_time.get());
        let Some(contact) = me.dm.contacts.by_uid(sender) else {
            let name = canonical_user(h.sender()).unwrap_or_else(|| format!("uid:{sender:016x}"));
            // The peer of our accept may write before the accept's answer is here.
            let accepting = matches!(
                self.in_flight.as_ref().map(|f| &f.what),
                Some(super::Pending::Dm(Pending::Accept { peer, .. })) if *peer == name
            );
            if accepting && me.dm.held.len() < HELD_MAX {
                me.dm.held.push_back(m.clone());
                return None;
            }
            return Some(Event::Warning(format!(
                "a direct message from {name}, who is not a contact here, was not shown; it stays on the server"
            )));
        };
        let (from, peer_ik) = (contact.name.clone(), contact.keys.enc_pub);
        if !contact.trusted {
            return Some(Event::Warning(format!(
                "a direct message from {from} was not shown: the server lists another key for {from}; compare /fingerprint @{from}, then /trust @{from}; it stays on the server and comes again at the next login"
            )));
        }
        let Some(secret) = me.dm.enc_secret.clone() else {
            return (!std::mem::replace(&mut me.dm.warned_no_keys, true)).then(|| {
                Event::Warning(
                    "direct messages arrived that cannot be read here: the account's keys are not on this machine; they stay on the server".into(),
                )
            });
        };
        let verdict = me.dm.inbox.check(sender, ts, dm_id);
        if verdict != Verdict::New {
            // Delivered again (not acknowledged in time, stored twice, replayed,
            // or restored from old server data): never shown as new. If a crash
            // left its message key in the saved sessions, it is spent now.
            let _ = prekeys::open(&mut me.dm.sessions, (me.uid, &secret), (sender, &peer_ik), m, true);
            self.ack(seq);
            let why = if verdict == Verdict::Seen {
                "was shown before"
            } else {
                "is older than what this client remembers of the sender"
            };
            return Some(Event::Notice(format!(
                "a direct message from {from} (id {dm_id:016x}) came again and {why}: not shown again"
            )));
        }
        let (text, verified, error) =
            match prekeys::open(&mut me.dm.sessions, (me.uid, &secret), (sender, &peer_ik), m, false) {
                Ok(Some(text)) => (text, true, None),
                _ => (String::new(), false, Some(UNDECRYPTABLE)),
            };
        // Recorded (and saved, before the sessions: App::persist) even when it
        // could not be opened, so that it is shown once; then acknowledged.
        me.dm.inbox.record(Stored {
            id: dm_id,
            from_uid: sender,
            from: from.clone(),
            text: Zeroizing::new(text.clone()),
            ts,
            verified,
            shown_at: now_ms,
        });
        self.ack(seq);
        Some(Event::Dm(DmEvent::Message(DmMessage { from, id: dm_id, text, ts, verified, error })))
    }

    /// `dmst`: the answer to an `smp*` (its msg_id), or, from the mailbox, an expiry.
    pub(super) fn handle_dm_status(&mut self, m: &DmStatus, ours: bool) -> Option<Event> {
        let me = self.me.as_mut()?;
        let (msg_id, state) = (m.hdr.msg_id.get(), m.state);
        if msg_id == 0 {
            self.ack(m.seq.get());
            return Some(match state {
                EXPIRED => Event::Dm(DmEvent::Expired { id: m.dm_id.get() }),
                RETURNED => match canonical_user(m.peer()) {
                    Some(to) => Event::Dm(DmEvent::Returned { id: m.dm_id.get(), to, reason: RETURNED_REASON }),
                    None => Event::Notice("ignoring a dmst (DM status) with a malformed name".into()),
                },
                // A message answered "queued" has now reached the recipient's client.
                DELIVERED => match canonical_user(m.peer()) {
                    Some(to) => Event::Dm(DmEvent::Delivered { id: m.dm_id.get(), to }),
                    None => Event::Notice("ignoring a dmst (DM status) with a malformed name".into()),
                },
                s => Event::Notice(format!("ignoring a dmst (DM status) of state {s} for no message")),
            });
        }
        // Ours, or an answer that came after its request timed out (still in the outbox).
        let entry = me.dm.outbox.remove(msg_id);
        let mine =
            ours && matches!(self.in_flight.as_ref().map(|f| &f.what), Some(super::Pending::Dm(Pending::Send { .. })));
        let pending = if mine { self.in_flight.take() } else { None };
        let to = match (entry, pending.map(|f| f.what)) {
            (Some(e), _) => e.peer,
            (None, Some(super::Pending::Dm(Pending::Send { peer, .. }))) => peer,
            _ => {
                return Some(Event::Notice(format!(
                    "ignoring a dmst (DM status) for message {msg_id:016x}, not waiting"
                )))
            }
        };
        Some(match state {
            QUEUED | DELIVERED => Event::Dm(DmEvent::Sent { id: msg_id, to, delivered: state == DELIVERED }),
            EXPIRED => Event::Dm(DmEvent::Expired { id: msg_id }),
            RETURNED => Event::Dm(DmEvent::Returned { id: msg_id, to, reason: RETURNED_REASON }),
            s => Event::Notice(format!("dmst (DM status) of unknown state {s} for message {msg_id:016x}")),
        })
    }

    /// Holds the acknowledgement of mailbox event `seq` (0: not from the mailbox).
    pub(super) fn ack(&mut self, seq: u64) {
        if seq != 0 {
            self.acks.push(seq);
        }
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
pub(super) mod tests;
