//! The server's protocol core, sans I/O: connections as state machines fed
//! with bytes and a clock, producing bytes to send, jobs for the workers and
//! connections to close.
//!
//! Invariant: nothing here blocks or touches a socket, a file or the clock;
//! every frame is bounded before it is buffered, opcode, size and state are
//! checked before any handler runs, and a peer's error closes only that peer.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::frame::Deframer;
use crate::handshake::{self, HelloVerdict, ServerConfig, SessionKeys};
use crate::opcodes::StatusReply;
use crate::record::{self, Opener, Sealer};
use crate::wire::{self, code, Message, Status};
use zeroize::Zeroize;

pub use crate::server::accounts::Accounts;
use crate::server::admin::AdminConn;
use crate::server::announce::Announcements;
use crate::server::backoff::Backoff;
use crate::server::dispatch::{self, Handler};
use crate::server::files::{ConnFiles, Files};
use crate::server::mailbox::Mail;
use crate::server::remote::{self, Out};
use crate::server::room::Rooms;
use crate::server::session::{PasswordAccepted, Session};
use crate::server::throttle::Throttle;
use crate::server::worker::{Completion, Job};

#[path = "commit.rs"]
mod commit;
pub(crate) use commit::Deferred;
use commit::Inflight;

/// A DM delivered live, waiting for the recipient's acknowledgement.
pub(crate) struct Awaiting {
    /// The sender's connections waiting for the answer: the first request's,
    /// then those of resends from other sessions (PROTOCOL, "Sending").
    pub(crate) conns: Vec<ConnId>,
    /// The smp* msg_id (the DM id).
    pub(crate) msg_id: u64,
    /// Reply "queued" after this.
    pub(crate) deadline_ms: u64,
    /// Whether the record is on disk yet (no answer before that).
    pub(crate) durable: bool,
}

/// "a 3, b 1" for non-empty counts.
fn summary(counts: &std::collections::BTreeMap<&'static str, u64>) -> Option<String> {
    if counts.is_empty() {
        return None;
    }
    Some(counts.iter().map(|(why, n)| format!("{why} {n}")).collect::<Vec<_>>().join(", "))
}

/// The status and cause of a change that could not be made durable: 503
/// when the cluster's storage was unreachable, else 507 (a failing disk).
pub(crate) fn not_durable(unavailable: bool) -> (u16, &'static str) {
    if unavailable {
        (code::SERVICE_UNAVAILABLE, "cluster storage unreachable")
    } else {
        (code::INSUFFICIENT_STORAGE, "storage failed (disk full?)")
    }
}

#[path = "conns.rs"]
mod conns;
#[path = "deletion.rs"]
mod deletion;
#[path = "fanout.rs"]
mod fanout;
#[path = "output.rs"]
mod output;
#[path = "relayed.rs"]
mod relayed;
#[path = "resume.rs"]
pub(crate) mod resume;

/// The output loops' queue, when output loops seal for this loop's own
/// connections (a relayed connection's output goes to `outbox` whatever this is).
fn loop_box(outbox: &mut Option<Vec<Out>>, loops: bool) -> Option<&mut Vec<Out>> {
    outbox.as_mut().filter(|_| loops)
}

/// How long a closing connection may take to flush its last output.
const CLOSE_GRACE_MS: u64 = 5_000;

/// A connection's identity: never reused, so a late completion cannot reach a newer connection.
pub type ConnId = u64;

/// Timeouts and buffer bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The handshake must finish this long after connecting.
    pub handshake_ms: u64,
    /// Login (password and passphrase) must finish this long after connecting.
    pub login_ms: u64,
    /// Most unprocessed input held per connection.
    pub max_input: usize,
    /// Most unsent output held per connection before it is dropped as a slow
    /// consumer (then nothing more is buffered for it).
    pub max_output: usize,
    /// Undelivered mailbox records expire after this long.
    pub queue_ttl_ms: u64,
    /// How long a sender waits for "delivered" before it is told "queued".
    pub deliver_wait_ms: u64,
    /// A logged-in session with no input for this long is closed (heartbeats count).
    pub idle_ms: u64,
    /// Chat messages (room and direct) allowed per window, per user over all
    /// of its sessions; None: no limit.
    pub rate: Option<(u32, u64)>,
    /// Registrations allowed per window from one address (bucket), checked
    /// before any argon2id work; None: no limit.
    pub registrations: Option<(u32, u64)>,
    /// Room creations allowed per window from one address (bucket); None: no limit.
    pub room_creations: Option<(u32, u64)>,
    /// Events waiting at most in one user's mailbox.
    pub mailbox_max_msgs: usize,
    /// Bytes of waiting events at most in one user's mailbox.
    pub mailbox_max_bytes: usize,
    /// Input bytes per second per connection before reading pauses; 0: no cap.
    pub max_bps: u64,
    /// Open connections at most, in all.
    pub max_conns: usize,
    /// Open connections at most from one address.
    pub max_conns_per_addr: usize,
    /// Handshakes the server signs per second for one address.
    pub handshakes_per_sec: u32,
    /// Largest file a user may offer, bytes of plaintext (flof beyond: 413).
    pub max_file_size: u64,
    /// Chunk bytes of all of one user's files on the server (flof beyond: 507).
    pub file_quota: u64,
    /// A file is deleted this long after its offer.
    pub file_ttl_ms: u64,
    /// Who may register (`--registration`).
    pub registration: Registration,
    /// Sessions one user may have at once; the next login is refused (403).
    pub sessions_per_user: usize,
    /// Logins, and failed logins, kept per account (`--login-records`, at most 32).
    pub login_records: usize,
    /// A deleted account's name is refused to registrations this long.
    pub name_reserve_ms: u64,
    /// Whom `/users` (lsus) lists.
    pub list_users: ListUsers,
    /// Whether sessions get resumption tickets and resume with them (`--no-resume` off).
    pub resume: bool,
    /// A ticket is accepted this long after it was issued (`--ticket-ttl`).
    pub ticket_ttl_ms: u64,
    /// Full handshakes waiting for a signature, at most, over all addresses
    /// (`--handshake-backlog`); a ClientHello beyond is closed unanswered.
    pub handshake_backlog: usize,
}

/// Who may register (`--registration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone; the account is active at once.
    Open,
    /// Anyone; the account is on hold until an operator approves it.
    Approval,
    /// Nobody: registration is refused (403).
    Closed,
}

impl Registration {
    /// The option's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Open => "open",
            Registration::Approval => "approval",
            Registration::Closed => "closed",
        }
    }
}

/// Whom `/users` (lsus) lists (`--list-users`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListUsers {
    /// Every account.
    All,
    /// The users the caller shares a room or an accepted DM channel with.
    Shared,
    /// Nobody: the request is refused.
    Off,
}

impl ListUsers {
    /// `all`, `shared` or `off`.
    pub fn parse(s: &str) -> Option<ListUsers> {
        match s {
            "all" => Some(ListUsers::All),
            "shared" => Some(ListUsers::Shared),
            "off" => Some(ListUsers::Off),
            _ => None,
        }
    }

    /// The option's value as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            ListUsers::All => "all",
            ListUsers::Shared => "shared",
            ListUsers::Off => "off",
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_ms: 10_000,
            login_ms: 60_000,
            max_input: 64 * 1024,
            max_output: 1024 * 1024,
            queue_ttl_ms: 30 * 24 * 3600 * 1000,
            deliver_wait_ms: 5_000,
            idle_ms: 30_000,
            rate: Some((5, 5_000)),
            registrations: Some((3, 60_000)),
            room_creations: Some((10, 60_000)),
            mailbox_max_msgs: 10_000,
            mailbox_max_bytes: 16 << 20,
            max_bps: 8 << 20,
            max_conns: 16_384,
            max_conns_per_addr: 64,
            handshakes_per_sec: 50,
            max_file_size: 256 << 20,
            file_quota: 1 << 30,
            file_ttl_ms: 7 * 24 * 3600 * 1000,
            registration: Registration::Open,
            sessions_per_user: 4,
            login_records: 10,
            name_reserve_ms: 90 * 24 * 3600 * 1000,
            list_users: ListUsers::Shared,
            resume: true,
            ticket_ttl_ms: crate::server::tickets::TTL_DEFAULT_MS,
            handshake_backlog: 1024,
        }
    }
}

enum Phase {
    AwaitHello,
    Handshaking,
    /// A ticket was accepted and its id struck; the answer waits until the
    /// strike is durable (`Deferred::Resumed`), and no frame is processed.
    Resuming(Box<resume::Resuming>),
    /// `sealer` is `None` when an output loop or an edge seals for the
    /// connection (`--threads` over 1, [`crate::server::remote`]; a relayed
    /// connection, DESIGN §8 "Edges"); `opener` is `None` when an edge opened
    /// its records (its frames arrive opened).
    Open {
        opener: Option<Opener>,
        sealer: Option<Sealer>,
        session: Session,
    },
}

struct Conn {
    addr: IpAddr,
    opened_ms: u64,
    deframer: Deframer,
    /// Sealed output this loop writes (`--threads 1`).
    out: Vec<u8>,
    /// Sealed bytes handed to an output loop and not yet written by it.
    queued: usize,
    phase: Phase,
    /// A job is in flight: later frames wait in the deframer, in order.
    busy: bool,
    close: Option<&'static str>,
    /// When the close was first noticed by `handle_timeout` (0: not yet).
    closing_since_ms: u64,
    /// The close grace ran out and the unsent output was dropped: nothing is
    /// sealed for it any more (no later record could open at the client).
    out_dropped: bool,
    /// Last time any input arrived.
    heard_ms: u64,
    /// Input bytes in the current one-second window, and when it started.
    window_bytes: u64,
    window_start_ms: u64,
    /// Listed in `Core::active` since the last `take_active`.
    listed: bool,
    /// The highest mailbox sequence number sent to this session.
    mail_cursor: u64,
    /// The (case-folded) name of the last login attempt, which its failure counts against.
    login_name: Option<String>,
    /// Downloads, the bulk output queue, chunks waiting for the disk.
    files: ConnFiles,
    /// Closing, but an answer waits for a commit (an account deletion's):
    /// the connection stays until it is sent.
    holding: bool,
    /// The session's resumption master, which gives the secrets of the
    /// tickets issued to it (wiped on drop, with the connection); None
    /// before the handshake and under `--no-resume`.
    resumption: Option<crate::ticket::ResumptionMaster>,
    /// Answers to this connection waiting for a commit (see [`Core::read_allowance`]).
    answers: u32,
    /// Relayed (DESIGN §8 "Edges"): on the writer, a client of an edge (no
    /// socket here); on an edge, a client whose messages go to the writer.
    relayed: bool,
    /// On an edge: the writer paused this client's input.
    relay_paused: bool,
    /// On an edge: sealed bytes of what the writer sent, not yet reported written.
    relay_out: usize,
}

/// The whole server state.
pub struct Core {
    cfg: ServerConfig,
    limits: Limits,
    conns: HashMap<ConnId, Conn>,
    /// Connections that may have output to write or be finished closing: the
    /// event loop visits these, not every connection, after each turn.
    active: Vec<ConnId>,
    jobs: Vec<Job>,
    /// Accounts (handlers read and update it).
    pub(crate) accounts: Accounts,
    /// Failed-login counters, keyed by the case-folded account name.
    pub(crate) backoff: Backoff<String>,
    /// Rooms (handlers read and update it; call `mark_dirty` after a change).
    pub(crate) rooms: Rooms,
    /// Failed room-password counters, keyed by room and user.
    pub(crate) room_backoff: Backoff<u64>,
    /// Registrations per address, before any argon2id work.
    pub(crate) registrations: Throttle,
    /// Room creations per address.
    pub(crate) room_creations: Throttle,
    /// Times of each user's recent chat messages (all its sessions), for the rate limit.
    chat: HashMap<u64, std::collections::VecDeque<u64>>,
    /// Mailboxes and contacts (handlers read and update it; call `mark_mail_dirty`).
    pub(crate) mail: Mail,
    /// Files, their uploads and the downloads' bookkeeping.
    pub(crate) files: Files,
    /// DMs delivered live and not yet acknowledged: (recipient, seq) -> sender.
    pub(crate) awaiting: HashMap<(u64, u64), Awaiting>,
    mail_dirty: BTreeSet<u64>,
    contacts_dirty: bool,
    /// Users whose prekey files must be rewritten.
    prekeys_dirty: BTreeSet<u64>,
    /// Deleted accounts whose records go with the next commit.
    users_deleted: BTreeSet<u64>,
    /// The retired names changed.
    retired_dirty: bool,
    /// Sessions of each logged-in user.
    online: HashMap<u64, Vec<ConnId>>,
    /// Open connections per address bucket.
    per_addr: HashMap<IpAddr, usize>,
    /// Handshakes signed per address bucket in the current second: (window start, count).
    handshakes: HashMap<IpAddr, (u64, u32)>,
    /// Rooms changed this turn, and rooms deleted this turn.
    dirty: BTreeSet<String>,
    deleted: BTreeSet<String>,
    /// Answers waiting for this turn's commit.
    deferred: Vec<Deferred>,
    /// Commits submitted and not yet durable: their rooms and answers.
    inflight: HashMap<u64, Inflight>,
    next_token: u64,
    /// After a failed commit, no new one before this time.
    commit_retry_at: u64,
    /// What was refused and why since the last summary, and since start.
    refused: std::collections::BTreeMap<&'static str, u64>,
    refused_total: std::collections::BTreeMap<&'static str, u64>,
    /// Accounts whose operator state must be rewritten.
    acct_dirty: BTreeSet<u64>,
    /// Accounts whose record (new secrets) must be rewritten.
    users_dirty: BTreeSet<u64>,
    /// Online accounts sent an announcement live whose `announce_seen` is
    /// not yet on disk: written when their last session ends.
    announce_unsaved: BTreeSet<u64>,
    /// Announcements (call `mark_announcements_dirty` after a change).
    pub(crate) announcements: Announcements,
    announcements_dirty: bool,
    /// Connections on the admin socket (sottoctl).
    pub(crate) admin: HashMap<ConnId, AdminConn>,
    /// With output loops (`--threads` over 1): what to hand them, in order.
    outbox: Option<Vec<Out>>,
    /// Ticket keys, generations and the strike register.
    pub(crate) tickets: crate::server::tickets::Tickets,
    /// Full handshakes handed to the signing workers and not yet back.
    signing: usize,
    /// Output loops seal for this loop's own connections (`--threads` over
    /// 1); without them, `outbox` carries only relayed connections' output.
    loops: bool,
    /// This core is an edge's (DESIGN §8 "Edges"): what it relays to the writer.
    edge: Option<relayed::Edge>,
}

impl Core {
    /// A core serving `accounts`.
    pub fn new(cfg: ServerConfig, limits: Limits, accounts: Accounts, rooms: Rooms, mail: Mail) -> Core {
        Core {
            cfg,
            limits,
            conns: HashMap::new(),
            active: Vec::new(),
            jobs: Vec::new(),
            accounts,
            backoff: Backoff::login(),
            rooms,
            room_backoff: Backoff::room(),
            registrations: Throttle::new(limits.registrations),
            room_creations: Throttle::new(limits.room_creations),
            chat: HashMap::new(),
            mail,
            files: Files::default(),
            awaiting: HashMap::new(),
            mail_dirty: BTreeSet::new(),
            contacts_dirty: false,
            prekeys_dirty: BTreeSet::new(),
            users_deleted: BTreeSet::new(),
            retired_dirty: false,
            online: HashMap::new(),
            per_addr: HashMap::new(),
            handshakes: HashMap::new(),
            dirty: BTreeSet::new(),
            deleted: BTreeSet::new(),
            deferred: Vec::new(),
            inflight: HashMap::new(),
            next_token: 1,
            commit_retry_at: 0,
            refused: Default::default(),
            refused_total: Default::default(),
            acct_dirty: BTreeSet::new(),
            users_dirty: BTreeSet::new(),
            announce_unsaved: BTreeSet::new(),
            announcements: Announcements::default(),
            announcements_dirty: false,
            admin: HashMap::new(),
            outbox: None,
            tickets: Default::default(),
            signing: 0,
            loops: false,
            edge: None,
        }
    }

    /// The core with the ticket state loaded at start (without it, no
    /// ticket is issued and every resumption is refused).
    pub fn with_tickets(mut self, tickets: crate::server::tickets::Tickets) -> Core {
        self.tickets = tickets;
        self
    }

    /// The core with the stored announcements (as loaded at start).
    pub fn with_announcements(mut self, announcements: Announcements) -> Core {
        self.announcements = announcements;
        self
    }

    /// Open network connections.
    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Users online and their sessions.
    pub(crate) fn online_counts(&self) -> (usize, usize) {
        (self.online.len(), self.online.values().map(Vec::len).sum())
    }

    /// Refusals since start, by reason.
    pub(crate) fn refusals(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.refused_total
    }

    /// Notes that `uid`'s operator state changed and must be written with the next commit.
    pub(crate) fn mark_acct_dirty(&mut self, uid: u64) {
        // A deleted account's state file is gone with it, and stays gone.
        self.announce_unsaved.remove(&uid);
        if self.accounts.by_uid(uid).is_some() {
            self.acct_dirty.insert(uid);
        }
    }

    /// Notes that `uid`'s account record changed (its secrets) and must be
    /// written with the next commit.
    pub(crate) fn mark_user_dirty(&mut self, uid: u64) {
        if self.accounts.by_uid(uid).is_some() {
            self.users_dirty.insert(uid);
        }
    }

    /// Notes that online `uid`'s state changed in a way that may wait (an
    /// announcement sent live, a resumption recorded): its state is written
    /// when its last session ends (or sooner, with any other change), not at
    /// once for every online user.
    pub(crate) fn mark_acct_unsaved(&mut self, uid: u64) {
        self.announce_unsaved.insert(uid);
    }

    /// Notes that the announcements changed.
    pub(crate) fn mark_announcements_dirty(&mut self) {
        self.announcements_dirty = true;
    }

    /// The core with `files` (as loaded at start).
    pub fn with_files(mut self, files: Files) -> Core {
        self.files = files;
        self
    }

    /// Counts one refusal for the summaries.
    pub fn count(&mut self, why: &'static str) {
        *self.refused.entry(why).or_default() += 1;
        *self.refused_total.entry(why).or_default() += 1;
    }

    /// "refused in the last minute: ..." if anything was refused since the last call.
    pub fn take_summary(&mut self) -> Option<String> {
        let line = summary(&std::mem::take(&mut self.refused))?;
        Some(format!("refused in the last minute: {line}"))
    }

    /// "refused since start: ..." (or that nothing was).
    pub fn total_summary(&self) -> String {
        format!("refused since start: {}", summary(&self.refused_total).unwrap_or_else(|| "nothing".into()))
    }

    /// Jobs to hand to the workers.
    pub fn poll_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// Whether any job or commit is still in flight or pending.
    pub fn busy(&self) -> bool {
        self.conns.values().any(|c| c.busy)
            || !self.inflight.is_empty()
            || !self.deferred.is_empty()
            || !self.dirty.is_empty()
            || !self.mail_dirty.is_empty()
            || self.contacts_dirty
            || !self.prekeys_dirty.is_empty()
            || !self.users_deleted.is_empty()
            || self.retired_dirty
            || self.files.has_changes()
            || !self.acct_dirty.is_empty()
            || !self.users_dirty.is_empty()
            || self.announcements_dirty
            || self.tickets.has_changes()
    }

    /// The users with a session now.
    pub(crate) fn online_users(&self) -> Vec<u64> {
        self.online.keys().copied().collect()
    }

    /// Whether `uid` has a session now.
    pub(crate) fn is_online(&self, uid: u64) -> bool {
        self.online.contains_key(&uid)
    }

    /// The user `id` is logged in as, if its session is `Authenticated`.
    pub(crate) fn session_uid(&self, id: ConnId) -> Option<u64> {
        match self.conns.get(&id)?.phase {
            Phase::Open { session: Session::Authenticated(ref auth), .. } => Some(auth.uid()),
            _ => None,
        }
    }

    /// The password step of `id`, if its session awaits the passphrase.
    pub(crate) fn password_step(&self, id: ConnId) -> Option<&PasswordAccepted> {
        match self.conns.get(&id)?.phase {
            Phase::Open { session: Session::AwaitPassphrase(ref step), .. } => Some(step),
            _ => None,
        }
    }

    /// The sessions of `uid`.
    pub(crate) fn sessions_of(&self, uid: u64) -> Vec<ConnId> {
        self.online.get(&uid).cloned().unwrap_or_default()
    }

    /// The highest mailbox sequence number sent to `id`.
    pub(crate) fn mail_cursor(&self, id: ConnId) -> u64 {
        self.conns.get(&id).map_or(0, |c| c.mail_cursor)
    }

    /// Records that `id` was sent mailbox records up to `seq`.
    pub(crate) fn set_mail_cursor(&mut self, id: ConnId, seq: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.mail_cursor = c.mail_cursor.max(seq);
        }
    }

    /// Sends `msg` to every session of `uid` except `except`.
    pub(crate) fn send_to_user<M: Message>(&mut self, uid: u64, msg: &M, except: Option<ConnId>) {
        let ids = self.online.get(&uid).cloned().unwrap_or_default();
        for id in ids.into_iter().filter(|id| Some(*id) != except) {
            self.send(id, msg);
        }
    }

    /// Notes that `name` changed and must be written in this turn's commit.
    pub(crate) fn mark_dirty(&mut self, name: &str) {
        self.deleted.remove(name);
        self.dirty.insert(name.to_owned());
    }

    /// Notes that `name` was deleted (its file goes in this turn's commit).
    pub(crate) fn mark_deleted(&mut self, name: &str) {
        self.dirty.remove(name);
        self.deleted.insert(name.to_owned());
        // A commit in flight counted the deleted room's messages: when it
        // finishes it must not credit a new room of the same name with them.
        for inflight in self.inflight.values_mut() {
            inflight.rooms.retain(|(n, _)| n != name);
        }
    }

    /// Notes that `uid`'s mailbox changed.
    pub(crate) fn mark_mail_dirty(&mut self, uid: u64) {
        self.mail_dirty.insert(uid);
    }

    /// Notes that the contacts changed.
    pub(crate) fn mark_contacts_dirty(&mut self) {
        self.contacts_dirty = true;
    }

    /// Notes that `uid`'s published prekeys changed.
    pub(crate) fn mark_prekeys_dirty(&mut self, uid: u64) {
        self.prekeys_dirty.insert(uid);
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Records the name `id` is trying to log in as (for the back-off).
    pub(crate) fn set_login_name(&mut self, id: ConnId, name: String) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.login_name = Some(name);
        }
    }

    /// The name `id` last tried to log in as.
    pub(crate) fn login_name(&self, id: ConnId) -> Option<String> {
        self.conns.get(&id).and_then(|c| c.login_name.clone())
    }

    /// The peer address of `id`.
    pub(crate) fn addr(&self, id: ConnId) -> Option<IpAddr> {
        self.conns.get(&id).map(|c| c.addr)
    }

    /// Hands `job` to the workers; `id` processes no further frame until it completes.
    pub(crate) fn start_job(&mut self, id: ConnId, job: Job) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.busy = true;
            self.jobs.push(job);
        }
    }

    /// Sets the session state of `id`, keeping the index of who is online.
    pub(crate) fn set_session(&mut self, id: ConnId, next: Session) {
        if let Some(Conn { phase: Phase::Open { session, .. }, .. }) = self.conns.get_mut(&id) {
            if let Session::Authenticated(auth) = &next {
                self.online.entry(auth.uid()).or_default().push(id);
            }
            *session = next;
        }
    }

    /// Seals `msg` into `id`'s output.
    pub(crate) fn send<M: Message>(&mut self, id: ConnId, msg: &M) {
        self.send_bytes(id, msg.as_bytes());
    }

    /// Seals a message already in wire form (a stored mailbox event).
    pub(crate) fn send_bytes(&mut self, id: ConnId, msg: &[u8]) {
        let max = self.limits.max_output;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let Phase::Open { sealer, .. } = &mut conn.phase else { return };
        // Over its bound the connection is being dropped as a slow consumer:
        // nothing more is buffered for it, so it holds at most one record more.
        // Once its output was dropped, a new record could not open: none is sealed.
        if conn.out.len() + conn.queued > max || conn.out_dropped {
            return;
        }
        if !remote::seal_or_queue(sealer.as_mut(), self.outbox.as_mut(), id, &mut conn.out, &mut conn.queued, msg) {
            conn.close.get_or_insert("sequence number exhausted");
        } else if conn.out.len() + conn.queued > max {
            conn.close.get_or_insert("slow consumer: output bound exceeded");
        }
        self.touch(id);
    }

    /// Answers request `msg_id` with a status reply.
    pub(crate) fn reply(&mut self, id: ConnId, msg_id: u64, request: u32, code: u16, reason: &str, now_ms: u64) {
        self.reply_retry(id, msg_id, request, code, reason, 0, now_ms);
    }

    /// As [`Core::reply`] with a retry-after for 429.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reply_retry(
        &mut self,
        id: ConnId,
        msg_id: u64,
        request: u32,
        code: u16,
        reason: &str,
        retry_ms: u64,
        now_ms: u64,
    ) {
        let status = match code {
            code::OK => Status::Ok,
            code::PENDING => Status::Pending,
            _ => Status::Error,
        };
        match code {
            code::RATE_LIMITED => self.count("rate limited (429)"),
            code::INSUFFICIENT_STORAGE => self.count("storage failed (507)"),
            code::SERVICE_UNAVAILABLE => self.count("cluster storage unreachable (503)"),
            code::MAILBOX_FULL => self.count("mailbox full (508)"),
            code::UNAUTHORIZED => self.count("unauthorized (401)"),
            _ => {}
        }
        self.reply_status(id, msg_id, request, status, code, reason, retry_ms, now_ms);
    }

    /// As [`Core::reply`], counted in the summaries as `why` (not by its code).
    pub(crate) fn reply_counted(
        &mut self,
        id: ConnId,
        (msg_id, request): (u64, u32),
        code: u16,
        reason: &str,
        why: &'static str,
        now_ms: u64,
    ) {
        self.count(why);
        let status = if code == code::OK { Status::Ok } else { Status::Error };
        self.reply_status(id, msg_id, request, status, code, reason, 0, now_ms);
    }

    /// Ends a multi-part answer (a listing) with status `done`.
    pub(crate) fn reply_done(&mut self, id: ConnId, msg_id: u64, request: u32, reason: &str, now_ms: u64) {
        self.reply_status(id, msg_id, request, Status::Done, code::OK, reason, 0, now_ms);
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_status(
        &mut self,
        id: ConnId,
        msg_id: u64,
        request: u32,
        status: Status,
        code: u16,
        reason: &str,
        retry_ms: u64,
        now_ms: u64,
    ) {
        let mut m = StatusReply::new(status, code, msg_id, now_ms);
        m.request_opcode.set(request);
        m.retry_after_ms.set(u32::try_from(retry_ms).unwrap_or(u32::MAX));
        // NOTE: reasons are short constants of ours; truncate rather than fail.
        let mut end = reason.len().min(m.reason.len());
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let _ = m.set_reason(&reason[..end]);
        self.send(id, &m);
    }

    /// Processes buffered frames of `id` until it is busy, closing, or out of frames.
    fn pump(&mut self, id: ConnId, now_ms: u64) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else { return };
            if conn.busy || conn.close.is_some() {
                return;
            }
            match conn.deframer.pop() {
                Ok(Some(body)) => self.handle_frame(id, body, now_ms),
                Ok(None) => return,
                Err(_) => {
                    conn.close = Some("framing error");
                    return;
                }
            }
        }
    }

    fn handle_frame(&mut self, id: ConnId, body: Vec<u8>, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        match &mut conn.phase {
            Phase::AwaitHello if crate::ticket::is_resume_hello(&body) => self.handle_resume_hello(id, body, now_ms),
            Phase::AwaitHello => match handshake::check_client_hello(&self.cfg, &body) {
                verdict @ (HelloVerdict::Accept | HelloVerdict::Mismatch) => {
                    let addr = conn.addr;
                    // Storm admission (OPERATIONS.md): no more full handshakes
                    // queue for a signature than the workers get through
                    // before the handshake timeout; the client retries later
                    // with jitter, and resumptions, served in this loop, go on.
                    if self.signing >= self.limits.handshake_backlog {
                        self.close(id, "handshake backlog full");
                        return;
                    }
                    // A mismatch answer is signed too: the same rate and the same signing pool.
                    if !self.handshake_allowed(addr, now_ms) {
                        // One address cannot keep the server signing (DESIGN §8, quotas): no answer.
                        self.close(id, "handshake rate exceeded for this address");
                        return;
                    }
                    let Some(conn) = self.conns.get_mut(&id) else { return };
                    conn.phase = Phase::Handshaking;
                    let job = if verdict == HelloVerdict::Accept {
                        Job::Handshake { conn: id, client_hello: body }
                    } else {
                        Job::Mismatch { conn: id, client_hello: body }
                    };
                    self.signing += 1;
                    self.start_job(id, job);
                }
                // Not one of our binaries: no answer, no RSA work (DESIGN §4).
                HelloVerdict::Drop => conn.close = Some("bad client hello"),
            },
            Phase::Handshaking | Phase::Resuming(_) => conn.close = Some("data during handshake"),
            Phase::Open { opener: Some(opener), .. } => match opener.open(&body) {
                Ok(plaintext) => self.handle_plaintext(id, plaintext, now_ms),
                // One failure for every bad record: no oracle, no answer.
                Err(_) => conn.close = Some("bad record"),
            },
            // A relayed client's message, opened by its edge (DESIGN §8 "Edges").
            Phase::Open { opener: None, .. } => self.handle_plaintext(id, body, now_ms),
        }
    }

    /// A record opened on `id`: its plaintext is dispatched, then wiped.
    fn handle_plaintext(&mut self, id: ConnId, mut plaintext: Vec<u8>, now_ms: u64) {
        if self.edge.is_some() {
            // An edge handles nothing itself: the writer does (DESIGN §8 "Edges").
            return self.relay_up(id, plaintext);
        }
        self.dispatch(id, &plaintext, now_ms);
        plaintext.zeroize();
    }

    /// Checks opcode, size and state against the generated table, then runs the handler.
    fn dispatch(&mut self, id: ConnId, frame: &[u8], now_ms: u64) {
        let Ok(hdr) = wire::header(frame) else {
            return self.reply(id, 0, 0, code::BAD_REQUEST, "frame shorter than a header", now_ms);
        };
        let (opcode, msg_id) = (hdr.opcode.get(), hdr.msg_id.get());
        let Some(entry) = dispatch::lookup(opcode) else {
            return self.reply(id, msg_id, opcode, code::BAD_REQUEST, "unknown opcode", now_ms);
        };
        if frame.len() != entry.size {
            return self.reply(id, msg_id, opcode, code::BAD_REQUEST, "wrong size for opcode", now_ms);
        }
        if hdr.status != Status::Request as u8 || hdr.code.get() != 0 {
            return self.reply(id, msg_id, opcode, code::BAD_REQUEST, "request header has a status", now_ms);
        }
        let Some(Conn { phase: Phase::Open { session, .. }, .. }) = self.conns.get(&id) else { return };
        match (&entry.handler, session.clone()) {
            (Handler::PreAuth(f), Session::AwaitLogin) => f(self, id, frame, now_ms),
            (Handler::Passphrase(f), Session::AwaitPassphrase(step)) => f(self, id, &step, frame, now_ms),
            (Handler::Authed(f), Session::Authenticated(auth)) => {
                // Roles and the operator's denials, with size and state, before any handler (PROTOCOL §11).
                let (role_ok, not_denied) = self.accounts.allows(auth.uid(), entry.roles, entry.mnemonic);
                if !role_ok {
                    let why = format!("{} needs the role {}", entry.mnemonic, crate::opcodes::role_names(entry.roles));
                    return self.reply_counted(
                        id,
                        (msg_id, opcode),
                        code::FORBIDDEN,
                        &why,
                        "role refused (403)",
                        now_ms,
                    );
                }
                if !not_denied {
                    let why = format!("{} is denied to this account by the operator", entry.mnemonic);
                    return self.reply_counted(
                        id,
                        (msg_id, opcode),
                        code::FORBIDDEN,
                        &why,
                        "denied by the operator (403)",
                        now_ms,
                    );
                }
                f(self, id, &auth, frame, now_ms)
            }
            (Handler::Authed(_), _) => self.reply(id, msg_id, opcode, code::UNAUTHORIZED, "log in first", now_ms),
            (Handler::Passphrase(_), Session::AwaitLogin) => {
                self.reply(id, msg_id, opcode, code::UNAUTHORIZED, "send user name and password first", now_ms)
            }
            _ => {
                let why = format!("{} is not allowed now (needs {})", entry.mnemonic, entry.state.as_str());
                self.reply(id, msg_id, opcode, code::FORBIDDEN, &why, now_ms)
            }
        }
    }

    /// A worker finished a job.
    pub fn handle_completion(&mut self, done: Completion, now_ms: u64) {
        let id = match done {
            Completion::Handshake { conn, result } => {
                self.signing = self.signing.saturating_sub(1);
                let resume = self.limits.resume;
                if let Some(c) = self.conns.get_mut(&conn) {
                    match result {
                        Ok((frame, SessionKeys { sealer, opener, resumption })) => {
                            // Kept for the tickets of this session only (PROTOCOL §3, resumption).
                            c.resumption = resume.then_some(resumption);
                            // With an output loop, it seals from now on: the answer and the keys go to it.
                            remote::raw(loop_box(&mut self.outbox, self.loops), conn, &mut c.out, &mut c.queued, frame);
                            let sealer = match loop_box(&mut self.outbox, self.loops) {
                                Some(outbox) => {
                                    outbox.push(Out::Keys { conn, sealer: Box::new(sealer) });
                                    None
                                }
                                None => Some(sealer),
                            };
                            c.deframer.set_max_body(record::MAX_BODY);
                            c.phase = Phase::Open { opener: Some(opener), sealer, session: Session::AwaitLogin };
                        }
                        Err(e) => {
                            crate::log!(Warn, "conn {conn}: handshake failed: {e}");
                            c.close = Some("handshake failed");
                        }
                    }
                }
                conn
            }
            Completion::Mismatch { conn, result } => {
                self.signing = self.signing.saturating_sub(1);
                if let Some(c) = self.conns.get_mut(&conn) {
                    match result {
                        Ok(frame) => {
                            remote::raw(loop_box(&mut self.outbox, self.loops), conn, &mut c.out, &mut c.queued, frame);
                            c.close = Some("protocol mismatch");
                        }
                        Err(e) => {
                            crate::log!(Warn, "conn {conn}: signing the mismatch answer failed: {e}");
                            c.close = Some("handshake failed");
                        }
                    }
                }
                conn
            }
            Completion::Registered { conn, msg_id, username, result } => {
                crate::server::handler::account::registered(self, conn, msg_id, &username, result, now_ms);
                conn
            }
            Completion::Password { conn, msg_id, uid, ok } => {
                crate::server::handler::account::password_checked(self, conn, msg_id, uid, ok, now_ms);
                conn
            }
            Completion::Passphrase { conn, msg_id, uid, ok } => {
                crate::server::handler::account::passphrase_checked(self, conn, msg_id, uid, ok, now_ms);
                conn
            }
            Completion::Rechecked { conn, msg_id, uid, ok } => {
                crate::server::handler::user::rechecked(self, conn, msg_id, uid, ok, now_ms);
                conn
            }
            Completion::SecretsChecked { conn, msg_id, uid, result } => {
                crate::server::handler::account::secrets_checked(self, conn, msg_id, uid, result, now_ms);
                conn
            }
            Completion::Committed { token, ok, unavailable } => {
                self.committed(token, ok, unavailable, now_ms);
                return;
            }
            Completion::Chunks { conn, file_id, serial, from, count, records } => {
                // Not a job that holds up the connection's frames: no pump.
                let read = crate::server::handler::file::Read { file_id, serial, from, count };
                crate::server::handler::file::read_done(self, conn, read, records, now_ms);
                return;
            }
            Completion::Prekey { conn, uid, upload, ok } => {
                crate::server::handler::prekey::verified(self, conn, uid, &upload, ok, now_ms);
                conn
            }
        };
        if let Some(c) = self.conns.get_mut(&id) {
            c.busy = false;
        }
        self.pump(id, now_ms);
        self.touch(id);
    }
}

/// What the fuzzing seam (`server::fuzz`) needs of the core; not built into sottod.
#[cfg(any(test, fuzzing))]
impl Core {
    /// Connection `id` as after a handshake that agreed on `keys` and a login
    /// as `uid`, without either: its session is `Authenticated`.
    pub(crate) fn open_authenticated(
        &mut self,
        id: ConnId,
        addr: IpAddr,
        keys: SessionKeys,
        uid: u64,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        let name = self.accounts.by_uid(uid).and_then(|r| r.username().ok()).ok_or("no such account")?.to_owned();
        self.accept(id, addr, now_ms)?;
        let Some(conn) = self.conns.get_mut(&id) else { return Err("not accepted") };
        conn.deframer.set_max_body(record::MAX_BODY);
        let sealer = match loop_box(&mut self.outbox, self.loops) {
            Some(outbox) => {
                outbox.push(Out::Keys { conn: id, sealer: Box::new(keys.sealer) });
                None
            }
            None => Some(keys.sealer),
        };
        conn.phase = Phase::Open { opener: Some(keys.opener), sealer, session: Session::AwaitLogin };
        conn.resumption = self.limits.resume.then_some(keys.resumption);
        let auth = crate::server::session::Authenticated::without_login(uid, name);
        self.set_session(id, Session::Authenticated(auth));
        Ok(())
    }

    /// `plaintext` on `id` as if a record had just opened to it: the input is
    /// heard, and the frame taken as `pump` takes one and dispatched as
    /// `handle_frame` dispatches it. False when `id` takes no frame now (gone,
    /// busy, closing, handshake not done) or no record opens to `plaintext`
    /// (empty, not whole blocks, longer than a message).
    pub(crate) fn handle_opened(&mut self, id: ConnId, plaintext: &[u8], now_ms: u64) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else { return false };
        conn.heard_ms = now_ms;
        let opens =
            !plaintext.is_empty() && plaintext.len() % 16 == 0 && plaintext.len() <= crate::opcodes::MAX_MESSAGE;
        if !opens || conn.busy || conn.close.is_some() || !matches!(conn.phase, Phase::Open { .. }) {
            return false;
        }
        self.handle_plaintext(id, plaintext.to_vec(), now_ms);
        true
    }

    /// Why `id` is closing, if it is.
    pub(crate) fn closing(&self, id: ConnId) -> Option<&'static str> {
        self.conns.get(&id)?.close
    }
}
