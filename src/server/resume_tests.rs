//! Resumption in the core (PROTOCOL.md §3, resumption), through the fuzzing
//! seam's world with its ticket state opened as sottod opens it: tickets
//! issued to sessions, ResumeHellos built by the library's client side, the
//! policy and its refusals, single use across a restart, key rotation, and
//! revocation by lgoe, chpw and the operator's state changes.

use std::sync::Arc;

use zerocopy::IntoBytes;

use crate::crypto;
use crate::frame::Deframer;
use crate::handshake::{BuildIdentity, ClientConfig, ServerConfig, SessionKeys};
use crate::opcodes::{
    ChangeSecrets, Connected, Heartbeat, LogoutEverywhere, ResumptionTicket, StatusReply, CHPW, CNNT, KCKD, LGOE, PONG,
    STAT, TICK,
};
use crate::record::{Opener, MAX_BODY};
use crate::server::acct::State;
use crate::server::core::{ConnId, Limits};
use crate::server::fuzz::{limits, uid, World};
use crate::server::store::{MemStore, Store};
use crate::ticket::{self, AwaitResume, HeldTicket, ResumeError, ResumptionMaster, TicketContents, TicketKey};
use crate::wire::{self, code, Message};

/// The resumption master of every session `World::open` makes.
const MASTER: [u8; 32] = [0x5d; 32];
const DAY: u64 = 24 * 3600 * 1000;

fn ccfg() -> ClientConfig {
    ClientConfig {
        build: BuildIdentity::this_build(),
        deployment_key: ServerConfig::built_in().deployment_key,
        server_keys: Vec::new(),
    }
}

fn world_on(limits: Limits) -> World {
    World::new_on(limits, Arc::new(MemStore::default())).with_tickets()
}

fn op(m: &[u8]) -> u32 {
    wire::header(m).map_or(0, |h| h.opcode.get())
}

/// The ticket in the last `tick` of `got`, held as a client holds it.
fn held_from(master: &ResumptionMaster, got: &[Vec<u8>]) -> Option<HeldTicket> {
    let t = got.iter().rev().find(|m| op(m) == TICK)?;
    let t = wire::decode::<ResumptionTicket>(t).ok()?;
    assert_eq!(t.hdr.msg_id.get(), 0, "an event");
    Some(HeldTicket::received(master, t.ticket_id, t.expires.get(), t.ticket))
}

/// A session of `user` that was issued a ticket: its id, opener and the ticket.
fn ticketed(w: &mut World, user: usize) -> (ConnId, Opener, HeldTicket) {
    let (id, mut opener) = w.open(user).unwrap();
    w.received(id, &mut opener);
    let now = w.now_ms();
    w.core().issue_ticket(id, uid(user), now);
    let got = w.received(id, &mut opener);
    let held = held_from(&ResumptionMaster::from_bytes(MASTER), &got).expect("a tick");
    (id, opener, held)
}

/// The status code answering `msg_id` among `got`.
fn status_of(got: &[Vec<u8>], msg_id: u64) -> Option<u16> {
    got.iter()
        .filter(|f| op(f) == STAT && wire::header(f).is_ok_and(|h| h.msg_id.get() == msg_id))
        .find_map(|f| wire::decode::<StatusReply>(f).ok().map(|r| r.hdr.code.get()))
}

/// What the server sent `id` in clear and sealed, split: the first frame's
/// body, then the rest (still sealed).
fn frames(w: &mut World, id: ConnId) -> Vec<Vec<u8>> {
    let out = w.core().transmit(id).map(std::mem::take).unwrap_or_default();
    let mut d = Deframer::new(MAX_BODY);
    d.push(&out);
    let mut got = Vec::new();
    while let Ok(Some(b)) = d.pop() {
        got.push(b);
    }
    got
}

/// Sends a framed ResumeHello on a new connection `id`, settles, and takes
/// the answer: the session's keys and what followed it, opened.
fn resume_with(
    w: &mut World,
    id: ConnId,
    state: AwaitResume,
    hello: &[u8],
) -> Result<(SessionKeys, Vec<Vec<u8>>), ResumeError> {
    w.accept(id);
    let now = w.now_ms();
    w.core().handle_input(id, hello, now);
    w.settle();
    let got = frames(w, id);
    let first = got.first().expect("an answer");
    let mut keys = state.handle_answer(&ccfg(), first)?;
    let opened = got[1..].iter().map(|b| keys.opener.open(b).unwrap()).collect();
    Ok((keys, opened))
}

fn resume(w: &mut World, id: ConnId, held: &HeldTicket) -> Result<(SessionKeys, Vec<Vec<u8>>), ResumeError> {
    let (state, hello) = ticket::resume_hello(&ccfg(), held);
    resume_with(w, id, state, &hello)
}

/// Sends `m` on a resumed session (`keys`), sealed as a client seals it; what came back.
fn send_on(w: &mut World, id: ConnId, keys: &mut SessionKeys, m: &[u8]) -> Vec<Vec<u8>> {
    let mut rec = Vec::new();
    keys.sealer.seal(m, &mut rec).unwrap();
    let now = w.now_ms();
    w.core().handle_input(id, &rec, now);
    w.settle();
    frames(w, id).iter().map(|b| keys.opener.open(b).unwrap()).collect()
}

fn refused_for(w: &mut World, why: &str) -> u64 {
    w.core().refusals().get(why).copied().unwrap_or(0)
}

#[test]
fn a_ticket_resumes_an_authenticated_session_once_its_strike_is_durable() {
    let mut w = world_on(limits());
    let (old, _, held) = ticketed(&mut w, 0);
    w.core().close(old, "test");
    w.core().remove(old);
    let (state, hello) = ticket::resume_hello_with(&ccfg(), &held, &[3; 32], &[4; 32]);
    // Nothing is answered before the strike is on disk, and no frame is taken meanwhile.
    w.accept(100);
    let now = w.now_ms();
    w.core().handle_input(100, &hello, now);
    w.run_jobs();
    assert!(frames(&mut w, 100).is_empty(), "no answer before the commit");
    assert_eq!(w.session_uid(100), None);
    assert!(w.commit(), "the strike is committed");
    let got = frames(&mut w, 100);
    let mut keys = state.handle_answer(&ccfg(), &got[0]).expect("resumed");
    let opened: Vec<Vec<u8>> = got[1..].iter().map(|b| keys.opener.open(b).unwrap()).collect();
    assert_eq!(w.session_uid(100), Some(uid(0)));
    let c = opened.iter().find(|m| op(m) == CNNT).expect("cnnt");
    let c = wire::decode::<Connected>(c).unwrap();
    assert_eq!((c.hdr.msg_id.get(), c.uid.get(), c.username().unwrap()), (0, uid(0), "alice"));
    let ops: Vec<u32> = opened.iter().map(|m| op(m)).collect();
    assert_eq!(ops[..3], [CNNT, crate::opcodes::LGRC, TICK], "cnnt, the login record, a fresh ticket: {ops:?}");
    // The session works, and the fresh ticket (under the resumed session's master) resumes again.
    let pong = send_on(&mut w, 100, &mut keys, Heartbeat::request(5, now).as_bytes());
    assert!(pong.iter().any(|m| op(m) == PONG));
    let next = held_from(&keys.resumption, &opened).unwrap();
    assert!(resume(&mut w, 101, &next).is_ok(), "the resumed session's ticket resumes");
    // The same ResumeHello again: refused, and counted as a replay.
    let (state, hello) = ticket::resume_hello_with(&ccfg(), &held, &[3; 32], &[4; 32]);
    assert_eq!(resume_with(&mut w, 102, state, &hello).err(), Some(ResumeError::Refused));
    assert_eq!(refused_for(&mut w, "resumption refused: replayed ticket"), 1);
    assert!(w.core().is_done(102), "closed after the refusal");
    // The same ticket in a new hello is the same replay.
    assert_eq!(resume(&mut w, 103, &held).err(), Some(ResumeError::Refused));
}

#[test]
fn expired_revoked_unknown_and_inactive_tickets_are_refused() {
    let mut w = world_on(limits());
    let (_, _, held) = ticketed(&mut w, 0);
    let now = w.now_ms();
    w.advance(limits().ticket_ttl_ms);
    assert_eq!(resume(&mut w, 100, &held).err(), Some(ResumeError::Refused));
    assert_eq!(refused_for(&mut w, "resumption refused: expired"), 1);

    let (_, _, held) = ticketed(&mut w, 1);
    w.core().revoke_tickets(uid(1), "test");
    assert_eq!(resume(&mut w, 101, &held).err(), Some(ResumeError::Refused));
    assert_eq!(refused_for(&mut w, "resumption refused: revoked"), 1);

    // A ticket under a key this server never had.
    let secret = crypto::random::<32>();
    let contents = TicketContents {
        uid: uid(2),
        issued_ms: now,
        expires_ms: now + DAY * 30,
        generation: 0,
        ticket_id: [9; 16],
        secret: zeroize::Zeroizing::new(secret),
    };
    let forged = TicketKey::generate(42, now).seal(&contents);
    let forged = HeldTicket {
        ticket: forged,
        ticket_id: [9; 16],
        expires_ms: now + DAY,
        secret: zeroize::Zeroizing::new(secret),
    };
    assert_eq!(resume(&mut w, 102, &forged).err(), Some(ResumeError::Refused));
    assert_eq!(refused_for(&mut w, "resumption refused: ticket does not open"), 1);

    let (_, _, held) = ticketed(&mut w, 2);
    let now = w.now_ms();
    w.core().accounts.acct_mut(uid(2)).set_state(State::Banned, now + DAY, "spam");
    assert_eq!(resume(&mut w, 103, &held).err(), Some(ResumeError::Refused));
    assert_eq!(refused_for(&mut w, "resumption refused: account not active"), 1);
    // The ban was not by the operator's tool (which revokes): once it ends, the ticket is good.
    w.core().accounts.acct_mut(uid(2)).set_state(State::Active, 0, "");
    assert!(resume(&mut w, 104, &held).is_ok());
}

#[test]
fn the_session_limit_and_no_resume_refuse() {
    let mut w = world_on(Limits { sessions_per_user: 1, ..limits() });
    let (_, _, held) = ticketed(&mut w, 0);
    assert_eq!(resume(&mut w, 100, &held).err(), Some(ResumeError::Refused), "alice's one session is open");
    assert_eq!(refused_for(&mut w, "resumption refused: session limit"), 1);

    let mut w = world_on(Limits { resume: false, ..limits() });
    let (id, mut opener) = w.open(0).unwrap();
    w.received(id, &mut opener);
    let now = w.now_ms();
    w.core().issue_ticket(id, uid(0), now);
    assert!(w.received(id, &mut opener).iter().all(|m| op(m) != TICK), "no ticket under --no-resume");
    // A ticket as the server would have sealed it is refused all the same.
    let secret = crypto::random::<32>();
    let contents = TicketContents {
        uid: uid(0),
        issued_ms: now,
        expires_ms: now + DAY,
        generation: 0,
        ticket_id: [1; 16],
        secret: zeroize::Zeroizing::new(secret),
    };
    let sealed = w.core().tickets.sealing_key().unwrap().seal(&contents);
    let held = HeldTicket {
        ticket: sealed,
        ticket_id: [1; 16],
        expires_ms: now + DAY,
        secret: zeroize::Zeroizing::new(secret),
    };
    assert_eq!(resume(&mut w, 100, &held).err(), Some(ResumeError::Refused));
    assert_eq!(refused_for(&mut w, "resumption refused: turned off"), 1);
}

#[test]
fn a_restart_keeps_the_keys_the_used_ids_and_the_generations() {
    let mut w = world_on(limits());
    let (_, _, alice) = ticketed(&mut w, 0);
    let (_, _, bob) = ticketed(&mut w, 1);
    let (_, _, carol) = ticketed(&mut w, 2);
    let (s1, hello) = ticket::resume_hello_with(&ccfg(), &alice, &[3; 32], &[4; 32]);
    assert!(resume_with(&mut w, 100, s1, &hello).is_ok());
    w.core().revoke_tickets(uid(1), "test");
    w.settle();
    w.restart();
    let (s2, again) = ticket::resume_hello_with(&ccfg(), &alice, &[3; 32], &[4; 32]);
    assert_eq!(again, hello);
    assert_eq!(resume_with(&mut w, 101, s2, &again).err(), Some(ResumeError::Refused), "used before the restart");
    assert_eq!(refused_for(&mut w, "resumption refused: replayed ticket"), 1);
    assert_eq!(resume(&mut w, 102, &bob).err(), Some(ResumeError::Refused), "revoked before the restart");
    assert!(resume(&mut w, 103, &carol).is_ok(), "the ticket key survived the restart");
}

#[test]
fn keys_rotate_daily_and_tickets_under_the_previous_key_still_resume() {
    let mut w = world_on(limits());
    let (_, _, before) = ticketed(&mut w, 0);
    w.advance(DAY);
    w.settle();
    let (_, _, after) = ticketed(&mut w, 1);
    assert_ne!(ticket::ticket_key_id(&before.ticket), ticket::ticket_key_id(&after.ticket), "a new key seals");
    assert_eq!(w.core().tickets.keys().len(), 2);
    w.restart();
    assert!(resume(&mut w, 100, &before).is_ok(), "the previous key opens its tickets");
    assert!(resume(&mut w, 101, &after).is_ok());
}

#[test]
fn logout_everywhere_closes_the_other_sessions_and_revokes_every_ticket() {
    let mut w = world_on(limits());
    let (here, mut opener, old) = ticketed(&mut w, 0);
    let (there, mut there_opener) = w.open(0).unwrap();
    w.received(there, &mut there_opener);
    assert!(w.dispatch(here, LogoutEverywhere::request(7, 0).as_bytes()));
    let kicked = w.received(there, &mut there_opener);
    assert!(kicked.iter().any(|m| op(m) == KCKD), "the other session is told");
    assert!(w.closing(there).is_some());
    assert!(w.closing(here).is_none(), "not this one");
    assert_eq!(status_of(&w.received(here, &mut opener), 7), None, "no answer before the revocation is durable");
    w.settle();
    let got = w.received(here, &mut opener);
    assert_eq!(status_of(&got, 7), Some(code::OK));
    let fresh = held_from(&ResumptionMaster::from_bytes(MASTER), &got).expect("a fresh ticket after the 200");
    assert_eq!(resume(&mut w, 100, &old).err(), Some(ResumeError::Refused), "the old ticket is revoked");
    assert!(resume(&mut w, 101, &fresh).is_ok(), "the fresh one resumes");
    let _ = LGOE;
}

/// Gives alice hashes of these secrets (cheap ones: 8 KiB).
fn set_secrets(w: &mut World, auth: &[u8; 32], pass: &[u8; 32]) {
    let mut rec = *w.core().accounts.by_uid(uid(0)).unwrap();
    rec.set_password_hash(&crypto::hash_secret_kib(auth, 8).unwrap()).unwrap();
    rec.set_passphrase_hash(&crypto::hash_secret_kib(pass, 8).unwrap()).unwrap();
    crate::server::store::seal_user(&mut rec);
    w.core().accounts.replace(rec);
}

fn chpw(msg_id: u64, old: ([u8; 32], [u8; 32]), new: ([u8; 32], [u8; 32])) -> Vec<u8> {
    let mut m = ChangeSecrets::request(msg_id, 0);
    (m.old_auth_secret, m.old_pass_secret) = old;
    (m.new_auth_secret, m.new_pass_secret) = new;
    m.as_bytes().to_vec()
}

#[test]
fn a_wrong_current_secret_is_a_failed_login_with_its_back_off() {
    let mut w = world_on(limits());
    set_secrets(&mut w, &[1; 32], &[2; 32]);
    let (id, mut opener) = w.open(0).unwrap();
    w.received(id, &mut opener);
    for (i, old) in [([1; 32], [9; 32]), ([9; 32], [2; 32]), ([9; 32], [9; 32])].into_iter().enumerate() {
        let msg_id = 10 + i as u64;
        assert!(w.dispatch(id, &chpw(msg_id, old, ([5; 32], [6; 32]))));
        w.settle();
        assert_eq!(status_of(&w.received(id, &mut opener), msg_id), Some(code::UNAUTHORIZED), "attempt {i}");
    }
    // Past the free failures: the back-off answers before any argon2id work.
    assert!(w.dispatch(id, &chpw(20, ([1; 32], [2; 32]), ([5; 32], [6; 32]))));
    assert_eq!(w.run_jobs(), 0, "no job");
    assert_eq!(status_of(&w.received(id, &mut opener), 20), Some(code::RATE_LIMITED));
    let rec = *w.core().accounts.by_uid(uid(0)).unwrap();
    assert!(crypto::verify_secret(rec.password_hash().unwrap(), &[1; 32]), "unchanged");
}

#[test]
fn a_password_change_stores_the_new_secrets_revokes_and_closes_the_other_sessions() {
    let mut w = world_on(limits());
    set_secrets(&mut w, &[1; 32], &[2; 32]);
    let (here, mut opener, old) = ticketed(&mut w, 0);
    let (there, mut there_opener) = w.open(0).unwrap();
    w.received(there, &mut there_opener);
    assert!(w.dispatch(here, &chpw(7, ([1; 32], [2; 32]), ([5; 32], [6; 32]))));
    w.settle();
    let got = w.received(here, &mut opener);
    assert_eq!(status_of(&got, 7), Some(code::OK));
    assert!(held_from(&ResumptionMaster::from_bytes(MASTER), &got).is_some(), "a fresh ticket");
    assert!(w.received(there, &mut there_opener).iter().any(|m| op(m) == KCKD));
    assert!(w.closing(there).is_some());
    assert_eq!(resume(&mut w, 100, &old).err(), Some(ResumeError::Refused), "the old ticket is revoked");
    // The new secrets, in memory and durable.
    let rec = *w.core().accounts.by_uid(uid(0)).unwrap();
    assert!(crypto::verify_secret(rec.password_hash().unwrap(), &[5; 32]));
    assert!(crypto::verify_secret(rec.passphrase_hash().unwrap(), &[6; 32]));
    let stored = w.store().load_users().unwrap().into_iter().find(|r| r.uid.get() == uid(0)).expect("stored");
    assert!(crypto::verify_secret(stored.password_hash().unwrap(), &[5; 32]));
    assert!(crate::server::store::parse_user(stored.as_bytes()).is_ok(), "sealed");
    let _ = CHPW;
}

#[test]
fn the_operators_ban_kick_and_deletion_revoke() {
    use crate::opcodes::{AdminDelete, AdminKick, AdminSetState};
    let mut w = world_on(limits());
    let (_, _, alice) = ticketed(&mut w, 0);
    let (_, _, bob) = ticketed(&mut w, 1);
    let (_, _, carol) = ticketed(&mut w, 2);
    let peer = crate::server::admin::AdminPeer { uid: 0, pid: 1 };
    let now = w.now_ms();
    let mut ban = AdminSetState::request(1, 0);
    ban.set_user("alice").unwrap();
    ban.state = State::Banned as u8;
    ban.for_ms.set(1);
    crate::server::handler::admin::set_state(w.core(), 500, &peer, ban.as_bytes(), now);
    let mut kick = AdminKick::request(2, 0);
    kick.set_user("bob").unwrap();
    crate::server::handler::admin::kick(w.core(), 500, &peer, kick.as_bytes(), now);
    let mut del = AdminDelete::request(3, 0);
    del.set_user("carol").unwrap();
    crate::server::handler::admin::delete(w.core(), 500, &peer, del.as_bytes(), now);
    w.settle();
    // The ban lasted 1 ms: over now, and alice's ticket was revoked all the same.
    w.advance(10);
    for (id, held) in [(100, &alice), (101, &bob), (102, &carol)] {
        assert_eq!(resume(&mut w, id, held).err(), Some(ResumeError::Refused), "conn {id}");
    }
    assert_eq!(refused_for(&mut w, "resumption refused: revoked"), 2);
    assert_eq!(refused_for(&mut w, "resumption refused: no such account"), 1);
}

#[test]
fn full_handshakes_beyond_the_backlog_are_closed_unanswered_and_resumptions_go_on() {
    let mut w = world_on(Limits { handshake_backlog: 2, ..limits() });
    let (_, _, held) = ticketed(&mut w, 0);
    let mut cfg = ccfg();
    cfg.server_keys.clear();
    let now = w.now_ms();
    for id in [200, 201, 202] {
        w.accept(id);
        let (_, hello) = crate::handshake::client_hello(&cfg);
        w.core().handle_input(id, &hello, now);
    }
    // Two wait for a signature (their jobs not yet run); the third is closed.
    assert!(w.closing(200).is_none() && w.closing(201).is_none());
    assert_eq!(w.closing(202), Some("handshake backlog full"));
    assert!(frames(&mut w, 202).is_empty(), "no answer");
    // A resumption is served meanwhile, in the loop: its strike's commit, no worker job.
    w.accept(300);
    let (state, hello) = ticket::resume_hello(&ccfg(), &held);
    w.core().handle_input(300, &hello, now);
    assert!(w.commit());
    let got = frames(&mut w, 300);
    assert!(state.handle_answer(&ccfg(), &got[0]).is_ok(), "resumed while the signatures wait");
    // Once the signatures are made, handshakes are admitted again.
    assert_eq!(w.run_jobs(), 2);
    w.accept(203);
    let (_, hello) = crate::handshake::client_hello(&cfg);
    w.core().handle_input(203, &hello, now);
    assert!(w.closing(203).is_none());
}

/// A full login of alice on `id` past its password step (secrets 1 and 2).
fn password_step(w: &mut World, id: ConnId, opener: &mut Opener) {
    use crate::opcodes::Login;
    w.core().set_session(id, crate::server::session::Session::AwaitLogin);
    w.received(id, opener);
    let mut login = Login::request(30, 0);
    login.set_username("alice").unwrap();
    login.auth_secret = [1; 32];
    assert!(w.dispatch(id, login.as_bytes()));
    w.settle();
    assert_eq!(status_of(&w.received(id, opener), 30), Some(code::PENDING), "password accepted");
}

fn passphrase_step(w: &mut World, id: ConnId, opener: &mut Opener) -> Option<u16> {
    let mut pass = crate::opcodes::Passphrase::request(31, 0);
    pass.pass_secret = [2; 32];
    assert!(w.dispatch(id, pass.as_bytes()));
    w.settle();
    let got = w.received(id, opener);
    if got.iter().any(|m| op(m) == CNNT) {
        return Some(code::OK);
    }
    status_of(&got, 31)
}

#[test]
fn a_login_past_its_password_step_is_refused_after_a_logout_everywhere() {
    let mut w = world_on(limits());
    set_secrets(&mut w, &[1; 32], &[2; 32]);
    // The control: nothing in between, the login completes.
    let (id, mut opener) = w.open(1).unwrap();
    password_step(&mut w, id, &mut opener);
    assert_eq!(passphrase_step(&mut w, id, &mut opener), Some(code::OK));
    assert_eq!(w.session_uid(id), Some(uid(0)));
    // lgoe from another session between the password and passphrase steps.
    let (late, mut late_opener) = w.open(1).unwrap();
    password_step(&mut w, late, &mut late_opener);
    assert!(w.dispatch(id, LogoutEverywhere::request(8, 0).as_bytes()));
    w.settle();
    assert_eq!(passphrase_step(&mut w, late, &mut late_opener), Some(code::UNAUTHORIZED));
    assert_eq!(w.session_uid(late), None, "not logged in");
    // A password change in between: the same.
    let (late, mut late_opener) = w.open(1).unwrap();
    password_step(&mut w, late, &mut late_opener);
    w.core().revoke_tickets(uid(0), "test");
    assert_eq!(passphrase_step(&mut w, late, &mut late_opener), Some(code::UNAUTHORIZED));
    assert_eq!(w.session_uid(late), None, "not logged in");
}

#[test]
fn a_journal_moved_aside_takes_the_ticket_keys_with_it() {
    use crate::server::store::FileStore;
    use crate::server::tickets::{JOURNAL_FILE, KEYS_FILE};
    let dir = std::env::temp_dir().join(format!("sotto-resume-{}", crypto::hex(&crypto::random::<6>())));
    let mut w = World::new_on(limits(), Arc::new(FileStore::open(&dir).unwrap())).with_tickets();
    let (_, _, used) = ticketed(&mut w, 0);
    let (_, _, revoked) = ticketed(&mut w, 1);
    assert!(resume(&mut w, 100, &used).is_ok());
    w.core().revoke_tickets(uid(1), "test");
    w.settle();
    let keys = std::fs::read(dir.join(KEYS_FILE)).unwrap();
    // The journal is moved aside: its used ids and generations are gone.
    std::fs::rename(dir.join(JOURNAL_FILE), dir.join("tickets.aside")).unwrap();
    w.restart();
    assert_ne!(std::fs::read(dir.join(KEYS_FILE)).unwrap(), keys, "new keys");
    assert_eq!(resume(&mut w, 101, &used).err(), Some(ResumeError::Refused), "a used ticket stays used");
    assert_eq!(resume(&mut w, 102, &revoked).err(), Some(ResumeError::Refused), "a revoked one stays revoked");
    assert_eq!(refused_for(&mut w, "resumption refused: ticket does not open"), 2);
    // The new pair serves, and survives a restart.
    let (_, _, fresh) = ticketed(&mut w, 2);
    w.restart();
    assert!(resume(&mut w, 103, &fresh).is_ok());
    // A journal of another key set (restored apart from its key file) is the same.
    let (_, _, other) = ticketed(&mut w, 2);
    std::fs::copy(dir.join("tickets.aside"), dir.join(JOURNAL_FILE)).unwrap();
    w.restart();
    assert_eq!(resume(&mut w, 104, &other).err(), Some(ResumeError::Refused));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_password_change_whose_new_secrets_fail_to_commit_leaves_the_old_ones() {
    let store = Arc::new(MemStore::default());
    let mut w = World::new_on(limits(), store.clone()).with_tickets();
    set_secrets(&mut w, &[1; 32], &[2; 32]);
    let (here, mut opener, _) = ticketed(&mut w, 0);
    assert!(w.dispatch(here, &chpw(7, ([1; 32], [2; 32]), ([5; 32], [6; 32]))));
    assert_eq!(w.run_jobs(), 1, "the secrets checked and hashed");
    assert!(w.commit(), "the revocation is durable");
    assert_eq!(status_of(&w.received(here, &mut opener), 7), None, "not yet answered");
    // The commit of the new secrets fails: 507, and nothing changed.
    store.fail_next_commits(1);
    assert!(w.commit());
    let got = w.received(here, &mut opener);
    assert_eq!(status_of(&got, 7), Some(code::INSUFFICIENT_STORAGE));
    assert!(held_from(&ResumptionMaster::from_bytes(MASTER), &got).is_none(), "no ticket with a 507");
    let rec = *w.core().accounts.by_uid(uid(0)).unwrap();
    assert!(crypto::verify_secret(rec.password_hash().unwrap(), &[1; 32]), "the old password in memory");
    assert!(crypto::verify_secret(rec.passphrase_hash().unwrap(), &[2; 32]), "the old passphrase in memory");
    // And on disk once the retry commits.
    w.advance(1_001);
    w.settle();
    let stored = store.load_users().unwrap().into_iter().find(|r| r.uid.get() == uid(0)).expect("stored");
    assert!(crypto::verify_secret(stored.password_hash().unwrap(), &[1; 32]), "the old password stored");
    // The same change again succeeds.
    assert!(w.dispatch(here, &chpw(8, ([1; 32], [2; 32]), ([5; 32], [6; 32]))));
    w.settle();
    assert_eq!(status_of(&w.received(here, &mut opener), 8), Some(code::OK));
    let rec = *w.core().accounts.by_uid(uid(0)).unwrap();
    assert!(crypto::verify_secret(rec.password_hash().unwrap(), &[5; 32]));
}

#[test]
fn a_password_change_from_a_session_kicked_meanwhile_is_not_applied() {
    let mut w = world_on(limits());
    set_secrets(&mut w, &[1; 32], &[2; 32]);
    let (here, mut opener) = w.open(0).unwrap();
    let (there, mut there_opener) = w.open(0).unwrap();
    w.received(here, &mut opener);
    w.received(there, &mut there_opener);
    // Both sessions change the secrets at once; `here`'s check finishes first.
    assert!(w.dispatch(here, &chpw(7, ([1; 32], [2; 32]), ([5; 32], [6; 32]))));
    assert!(w.dispatch(there, &chpw(8, ([1; 32], [2; 32]), ([3; 32], [4; 32]))));
    w.settle();
    assert_eq!(status_of(&w.received(here, &mut opener), 7), Some(code::OK));
    assert_eq!(status_of(&w.received(there, &mut there_opener), 8), Some(code::UNAUTHORIZED));
    assert!(w.closing(there).is_some());
    assert!(w.closing(here).is_none(), "not kicked by the session it kicked");
    let rec = *w.core().accounts.by_uid(uid(0)).unwrap();
    assert!(crypto::verify_secret(rec.password_hash().unwrap(), &[5; 32]), "the first change stands");
    assert!(crypto::verify_secret(rec.passphrase_hash().unwrap(), &[6; 32]));
}
