//! Fuzzing seam: a core with three accounts, two rooms, a DM channel and
//! published prekeys;
//! authenticated sessions opened without a handshake or a login; decrypted
//! frames dispatched into them by the core's own `dispatch`, as after a
//! record opened; worker jobs and group commits run inline.
//!
//! Invariant: built only under `cfg(fuzzing)` (cargo-fuzz) and `cfg(test)`,
//! never into sottod. Every session it opens is for an account in
//! `Accounts`, every frame passes the dispatch table's opcode, size and state
//! checks, and the rooms, contacts, mailboxes and prekeys were made by the
//! handlers.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use zerocopy::{FromZeros, IntoBytes};

use crate::crypto::{self, AeadKeys};
use crate::handshake::{ServerConfig, SessionKeys};
use crate::identity::{self, Signer};
use crate::opcodes::{CreateRoom, DmAccept, DmRequest, JoinRoom, PrekeyUpload, SendRoomMessageS, UserRecord};
use crate::record::{Opener, Sealer};
use crate::server::core::{Accounts, ConnId, Core, Limits};
use crate::server::mailbox::Mail;
use crate::server::room::Rooms;
use crate::server::store::{MemStore, Store};
use crate::server::worker::{self, WorkerCtx};
use crate::wire::Message;

/// The accounts, by index: alice, bob, carol.
pub const USERS: [&str; 3] = ["alice", "bob", "carol"];
/// The rooms: `lobby` (alice's; alice and bob are members; three messages
/// kept) and `club` (carol's; only carol).
pub const ROOMS: [&str; 2] = ["lobby", "club"];
/// Where every connection comes from.
pub const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The clock when a world is made, Unix ms.
pub const START_MS: u64 = 1_700_000_000_000;

/// The limits of a world: the defaults, but 48 KiB of unsent output (a join
/// answer with a full history fits) and mailbox records that expire after a
/// minute, so that both bounds are within a fuzz input's reach.
pub fn limits() -> Limits {
    Limits { max_output: 48 * 1024, queue_ttl_ms: 60_000, room_creations: None, ..Limits::default() }
}

/// The UID of `USERS[user]`.
pub fn uid(user: usize) -> u64 {
    0x5077_0000_0000_0001 + user as u64
}

/// The auth key that joins `room` (the room keeps SHA-256 of it).
pub fn room_auth_key(room: &str) -> [u8; 32] {
    crypto::sha256(&[b"sotto fuzz room\0", room.as_bytes()])
}

/// One server signing key for every world: only handshakes use it, and a
/// world has none, but `WorkerCtx` needs one.
fn signer() -> Arc<Signer> {
    static SIGNER: OnceLock<Arc<Signer>> = OnceLock::new();
    SIGNER
        .get_or_init(|| {
            // NOTE(unwrap): key generation fails only without an OS RNG; the fuzzer cannot run then.
            let (der, _) = identity::generate().unwrap();
            Arc::new(Signer::from_pkcs8_der(&der).unwrap())
        })
        .clone()
}

/// The users' identity key, one for all three (pkup checks signed prekeys
/// with it; the binding names the user): the fuzz targets' fixture key, so
/// that a committed seed's signature verifies in every run.
fn identity_key() -> &'static (Signer, [u8; 256]) {
    static KEY: OnceLock<(Signer, [u8; 256])> = OnceLock::new();
    KEY.get_or_init(|| {
        // NOTE(unwrap): a committed fixture; a broken one must stop the fuzzer at once.
        let signer = Signer::from_pkcs8_pem(include_str!("../../fuzz/fixtures/server_rsa.pem")).unwrap();
        let n = identity::modulus(signer.public()).unwrap();
        (signer, n)
    })
}

/// One-time prekeys alice and bob publish in a new world: a few fetches
/// bring them under the refill mark.
pub const OPKS_PUBLISHED: u32 = 24;

/// A prekey upload by `USERS[user]`: signed prekey `spk_id` and one-time
/// prekeys `opk_ids`, keys made from the ids (any bytes off the low-order
/// list serve: the server cannot tell).
pub fn prekey_upload(msg_id: u64, user: usize, spk_id: u32, opk_ids: std::ops::Range<u32>) -> Vec<u8> {
    let key = |tag: &[u8], id: u32| crypto::sha256(&[b"sotto fuzz prekey\0", &[user as u8], tag, &id.to_be_bytes()]);
    let mut m = PrekeyUpload::request(msg_id, START_MS);
    m.spk_id.set(spk_id);
    if spk_id != 0 {
        m.spk_pub = key(b"spk", spk_id);
        let binding = crate::x3dh::spk_binding(&crate::account::deployment_id(), uid(user), spk_id, &m.spk_pub);
        // NOTE: signing fails only without an RNG; the upload is then refused, as the world test would show.
        m.spk_sig = identity_key().0.sign(&binding).unwrap_or([0; 256]);
    }
    let mut n = 0;
    for (i, id) in opk_ids.enumerate().take(crate::server::prekeys::OPK_UPLOAD_MAX) {
        let at = i * crate::server::prekeys::OPK_ENTRY;
        m.opks[at..at + 4].copy_from_slice(&id.to_be_bytes());
        m.opks[at + 4..at + 36].copy_from_slice(&key(b"opk", id));
        n += 1;
    }
    m.opk_count = n;
    m.as_bytes().to_vec()
}

/// A stored account: name, UID and the identity key; fixed bytes for the
/// encryption key, which no authenticated handler checks, and no password
/// (no one logs in).
fn account(user: usize) -> UserRecord {
    let mut rec = UserRecord::new_zeroed();
    rec.uid.set(uid(user));
    rec.created.set(START_MS);
    // NOTE: the names are short lower-case ASCII; this cannot fail.
    let _ = rec.set_username(USERS[user]);
    rec.id_pub = identity_key().1;
    rec.enc_pub = [0xe0 | user as u8; 32];
    rec.enc_sig = [0x50 | user as u8; 256];
    rec
}

/// A request with `msg_id`, the world's clock as its time, and `set` applied.
pub(crate) fn request<M: Message>(
    msg_id: u64,
    set: impl FnOnce(&mut M) -> Result<(), crate::wire::WireError>,
) -> Vec<u8> {
    let mut m = M::request(msg_id, START_MS);
    // NOTE: the setup's names fit their fields; a failure would show in the world test.
    let _ = set(&mut m);
    m.as_bytes().to_vec()
}

/// A core and its workers, a clock, and the connection ids handed out.
pub struct World {
    core: Core,
    ctx: WorkerCtx,
    /// For `restart`, a unit-test helper.
    #[cfg_attr(not(test), allow(dead_code))]
    limits: Limits,
    now_ms: u64,
    next_id: ConnId,
}

impl World {
    /// A world under [`limits`], made by real requests: alice creates the
    /// lobby, bob joins it, alice says three things there; carol creates the
    /// club; alice asks bob for DMs and bob accepts; carol asks alice; alice
    /// and bob publish a signed prekey (id 1) and `OPKS_PUBLISHED` one-time
    /// prekeys (ids 1..). Then those sessions close: no one is online.
    pub fn new() -> World {
        World::new_on(limits(), Arc::new(MemStore::default()))
    }

    /// As [`World::new`], under `limits`, storing into `store`.
    pub fn new_on(limits: Limits, store: Arc<dyn Store>) -> World {
        let mut accounts = Accounts::default();
        (0..USERS.len()).for_each(|u| accounts.insert(account(u)));
        let ctx = WorkerCtx { server: ServerConfig::built_in(), signer: signer(), store };
        let core = Core::new(ServerConfig::built_in(), limits, accounts, Rooms::default(), Mail::default());
        let mut world = World { core, ctx, limits, now_ms: START_MS, next_id: 1 };
        let ids: Vec<ConnId> = (0..USERS.len()).filter_map(|u| world.open(u).map(|(id, _)| id)).collect();
        let create = |room: &str| {
            request::<CreateRoom>(1, |m| {
                m.salt = [0x5a; 16];
                m.verifier = crate::room::verifier(&room_auth_key(room));
                m.set_room(room)
            })
        };
        let say = |n: u8| {
            request::<SendRoomMessageS>(10 + u64::from(n), |m| {
                m.head.iv = [n; 16];
                m.ciphertext.fill(n);
                m.head.set_room("lobby")
            })
        };
        let setup = [
            (0, create("lobby")),
            (
                1,
                request::<JoinRoom>(2, |m| {
                    m.auth_key = room_auth_key("lobby");
                    m.set_room("lobby")
                }),
            ),
            (0, say(1)),
            (0, say(2)),
            (0, say(3)),
            (2, create("club")),
            (0, request::<DmRequest>(3, |m| m.set_peer("bob"))),
            (1, request::<DmAccept>(4, |m| m.set_peer("alice"))),
            (2, request::<DmRequest>(5, |m| m.set_peer("alice"))),
            (0, prekey_upload(6, 0, 1, 1..OPKS_PUBLISHED + 1)),
            (1, prekey_upload(7, 1, 1, 1..OPKS_PUBLISHED + 1)),
        ];
        for (user, frame) in setup {
            if let Some(&id) = ids.get(user) {
                world.dispatch(id, &frame);
                world.settle();
            }
        }
        for id in ids {
            world.core.close(id, "peer closed");
            world.core.remove(id);
        }
        world
    }

    /// A new connection logged in as `USERS[user]`, as after its handshake
    /// and login: the login's prekey state, contacts and mailbox are sent to it. Returns
    /// its id and the client's opener for what the server seals to it; None
    /// for an unknown user or when the core's caps refuse the connection.
    pub fn open(&mut self, user: usize) -> Option<(ConnId, Opener)> {
        self.open_with(user, |_| {})
    }

    /// As [`World::open`], telling `accepted` the new connection's id first
    /// (as the event loop hands a new socket to its output loop).
    pub fn open_with(&mut self, user: usize, accepted: impl FnOnce(ConnId)) -> Option<(ConnId, Opener)> {
        let id = self.next_id;
        self.next_id += 1;
        accepted(id);
        let material = |direction: u8| {
            let mut m = [direction; 48];
            m[..8].copy_from_slice(&id.to_be_bytes());
            AeadKeys::from_material(&m)
        };
        let keys = SessionKeys {
            sealer: Sealer::new(material(0x5c)),
            opener: Opener::new(material(0xc5)),
            resumption: crate::ticket::ResumptionMaster::from_bytes([0x5d; 32]),
        };
        let uid = uid(user);
        self.core.open_authenticated(id, ADDR, keys, uid, self.now_ms).ok()?;
        crate::server::handler::prekey::on_login(&mut self.core, id, uid, self.now_ms);
        crate::server::handler::direct::on_login(&mut self.core, id, uid, self.now_ms);
        Some((id, Opener::new(material(0x5c))))
    }

    /// `frame` as the plaintext of a record that just opened on `id`, through
    /// the core's dispatch; false when not taken (see `Core::handle_opened`).
    pub fn dispatch(&mut self, id: ConnId, frame: &[u8]) -> bool {
        self.core.handle_opened(id, frame, self.now_ms)
    }

    /// Runs the jobs the handlers started, inline, until none is left (no
    /// group commit); returns how many ran.
    pub fn run_jobs(&mut self) -> usize {
        let mut ran = 0;
        loop {
            let jobs = self.core.poll_jobs();
            if jobs.is_empty() {
                return ran;
            }
            for job in jobs {
                ran += 1;
                let done = worker::run(job, &self.ctx);
                self.core.handle_completion(done, self.now_ms);
            }
        }
    }

    /// Makes this turn's group commit durable, as the disk thread would;
    /// false when there was nothing to commit.
    pub fn commit(&mut self) -> bool {
        let Some(job) = self.core.poll_commit(self.now_ms) else { return false };
        let done = worker::run(job, &self.ctx);
        self.core.handle_completion(done, self.now_ms);
        true
    }

    /// Jobs and commits until neither is left, as the end of an event-loop
    /// turn and the completions after it; returns the jobs run (commits not counted).
    pub fn settle(&mut self) -> usize {
        let mut ran = self.run_jobs();
        while self.commit() {
            ran += self.run_jobs();
        }
        ran
    }

    /// Moves the clock `ms` forward and runs the core's timers.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms = self.now_ms.saturating_add(ms);
        self.core.handle_timeout(self.now_ms);
    }

    /// The clock, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The core, for what the event loop does with it: `transmit`,
    /// `is_done`, `close`, `remove`, `busy`.
    pub fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    /// The user `id` is logged in as, if its session is `Authenticated`.
    pub fn session_uid(&self, id: ConnId) -> Option<u64> {
        self.core.session_uid(id)
    }

    /// Why `id` is closing, if it is.
    pub fn closing(&self, id: ConnId) -> Option<&'static str> {
        self.core.closing(id)
    }

    /// Whether the core counts `uid` as online.
    pub fn is_online(&self, uid: u64) -> bool {
        self.core.is_online(uid)
    }

    /// For unit tests: a crash and a restart. Every connection is gone, and
    /// what was not committed; the core is made again from the store (the
    /// accounts as at the start), as sottod makes it at start.
    #[cfg(test)]
    pub(crate) fn restart(&mut self) {
        let mut accounts = Accounts::default();
        (0..USERS.len()).for_each(|u| accounts.insert(account(u)));
        accounts.load_retired(&*self.ctx.store).unwrap();
        let mut rooms = Rooms::default();
        for room in self.ctx.store.load_rooms().unwrap() {
            rooms.insert(room);
        }
        let mail = Mail::load(&*self.ctx.store).unwrap();
        let files = crate::server::files::Files::load(&*self.ctx.store).unwrap();
        let ticketed = self.core.tickets.is_loaded();
        let mut core = Core::new(ServerConfig::built_in(), self.limits, accounts, rooms, mail).with_files(files);
        if ticketed {
            let store = &*self.ctx.store;
            core = core.with_tickets(
                crate::server::tickets::Tickets::open(store, self.limits.ticket_ttl_ms, self.now_ms).unwrap(),
            );
        }
        self.core = core;
    }

    /// For unit tests: this world with its ticket state opened from its
    /// store, as sottod opens it at start (resumption tickets are issued).
    #[cfg(test)]
    pub(crate) fn with_tickets(mut self) -> World {
        let tickets =
            crate::server::tickets::Tickets::open(&*self.ctx.store, self.limits.ticket_ttl_ms, self.now_ms).unwrap();
        self.core = self.core.with_tickets(tickets);
        self
    }

    /// For unit tests: the store.
    #[cfg(test)]
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.ctx.store.clone()
    }

    /// For unit tests: a connection accepted from `ADDR` with id `id`, not
    /// yet past its handshake.
    #[cfg(test)]
    pub(crate) fn accept(&mut self, id: ConnId) {
        self.core.accept(id, ADDR, self.now_ms).unwrap();
    }

    /// For unit tests: this world with output loops (`--threads` over 1):
    /// connections opened from now on have their records sealed by them
    /// (`Core::take_output`).
    #[cfg(test)]
    pub(crate) fn with_output_loops(self) -> World {
        World { core: self.core.with_output_loops(), ..self }
    }

    /// For unit tests: runs `job` (a commit taken with `poll_commit`, say) and hands its completion to the core.
    #[cfg(test)]
    pub(crate) fn run_job(&mut self, job: worker::Job) {
        let done = worker::run(job, &self.ctx);
        self.core.handle_completion(done, self.now_ms);
    }

    /// For unit tests: everything sealed to `id` so far, opened with `opener`.
    #[cfg(test)]
    pub(crate) fn received(&mut self, id: ConnId, opener: &mut Opener) -> Vec<Vec<u8>> {
        let out = self.core.transmit(id).map(std::mem::take).unwrap_or_default();
        let mut d = crate::frame::Deframer::new(crate::record::MAX_BODY);
        d.push(&out);
        let mut got = Vec::new();
        while let Ok(Some(body)) = d.pop() {
            got.push(opener.open(&body).unwrap());
        }
        got
    }
}

impl Default for World {
    fn default() -> World {
        World::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcodes::{DmRequested, Heartbeat, HeartbeatReply, StatusReply, CTCT, DMRQ, PKST, STAT};
    use crate::wire::{self, code};
    use zerocopy::IntoBytes;

    #[test]
    fn world_is_made_by_the_handlers() {
        let w = World::new();
        let lobby = w.core.rooms.get("lobby").unwrap();
        assert_eq!((lobby.owner, lobby.members.clone(), lobby.history.len()), (uid(0), vec![uid(0), uid(1)], 3));
        assert_eq!(w.core.rooms.get("club").unwrap().members, [uid(2)]);
        assert!(w.core.mail.contacts.accepted(uid(0), uid(1)));
        assert!(w.core.mail.contacts.requested(uid(2), uid(0)));
        for user in [0, 1] {
            let p = w.core.mail.prekeys.get(uid(user)).expect("published");
            assert_eq!((p.spk_id, p.opks.len()), (1, OPKS_PUBLISHED as usize));
        }
        assert!(w.core.mail.prekeys.get(uid(2)).is_none());
        assert!(!w.is_online(uid(0)) && !w.is_online(uid(1)) && !w.is_online(uid(2)));
    }

    #[test]
    fn opened_session_is_authenticated_and_gets_its_mailbox() {
        let mut w = World::new();
        let (id, mut opener) = w.open(0).unwrap();
        assert_eq!(w.session_uid(id), Some(uid(0)));
        assert!(w.is_online(uid(0)));
        let got = w.received(id, &mut opener);
        let ops: Vec<u32> = got.iter().map(|m| wire::header(m).unwrap().opcode.get()).collect();
        assert_eq!(
            ops,
            [PKST, CTCT, CTCT, DMRQ],
            "prekey state, contacts, then the mailbox: bob's accept and carol's request"
        );
        assert_eq!(wire::decode::<DmRequested>(got.last().unwrap()).unwrap().from().unwrap(), "carol");
        assert!(w.open(USERS.len()).is_none(), "no session without an account");
    }

    #[test]
    fn dispatches_through_the_table_and_takes_only_what_a_record_opens_to() {
        let mut w = World::new();
        let (id, mut opener) = w.open(1).unwrap();
        w.received(id, &mut opener);
        assert!(w.dispatch(id, Heartbeat::request(7, 0).as_bytes()));
        let mut login = crate::opcodes::Login::request(8, 0);
        let _ = login.set_username("bob");
        assert!(w.dispatch(id, login.as_bytes()));
        assert!(!w.dispatch(id, &[0; 15]), "not whole blocks");
        assert_eq!(w.settle(), 0, "no worker job from an authenticated session");
        let got = w.received(id, &mut opener);
        assert_eq!(wire::decode::<HeartbeatReply>(&got[0]).unwrap().hdr.msg_id.get(), 7);
        let r = wire::decode::<StatusReply>(&got[1]).unwrap();
        assert_eq!((r.hdr.opcode.get(), r.hdr.code.get()), (STAT, code::FORBIDDEN), "no second login");
        w.core().close(id, "test");
        assert!(!w.dispatch(id, Heartbeat::request(9, 0).as_bytes()), "a closing connection takes no frame");
    }
}
