//! Accounts: register (crea), login (auth), passphrase (pass), the start of
//! a resumed session, logout everywhere (lgoe) and the change of the login
//! secrets (chpw) — DESIGN §5, PROTOCOL.md §3 (resumption) and §5.
//!
//! Invariant: secrets are checked and hashed only on workers; the server
//! receives only the client's argon2id secrets, never a password or
//! passphrase (PROTOCOL.md §5), and a registration is throttled per address
//! before its job is queued; a failed password or passphrase counts against
//! the (name, address) pair, the name and the address (`backoff`), and an
//! unknown user is indistinguishable from a wrong password: same strikes,
//! same argon2id cost, same answer.
//!
//! Account states (PROTOCOL.md §11) are checked once the password verified,
//! so nobody learns an account's state without its password: on hold and
//! banned get 403 with `lgrf` saying why; blocked gets exactly the wrong
//! password's answer, strike and all, after the same argon2id work. Every
//! failure of a known account and every login is recorded in its state.

use crate::account;
use crate::identity;
use crate::opcodes::{
    ChangeSecrets, Connected, Login, LoginRecord, LoginRefused, LogoutEverywhere, Passphrase, Register, UserRecord,
    AUTH, CHPW, CREA, LGOE, PASS,
};
use crate::wire::{code, decode, Message, Status};
use zerocopy::{FromZeros, IntoBytes};
use zeroize::Zeroizing;

use crate::server::acct::{self, Outcome, State};
use crate::server::core::{ConnId, Core, Deferred, Registration};
use crate::server::handler::operator;
use crate::server::session::{Authenticated, PasswordAccepted, Session};
use crate::server::worker::{Job, RegisterFailure, SecretsFailure};

/// One answer for every failed login step: which secret was wrong is not said.
const BAD_LOGIN: &str = "wrong user name, password or passphrase";

/// crea: validate, reserve the name, hand hashing and storage to a worker.
pub fn register(core: &mut Core, id: ConnId, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<Register>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let fail = |core: &mut Core, c: u16, why: &str| core.reply(id, msg_id, CREA, c, why, now_ms);
    if core.limits().registration == Registration::Closed {
        return core.reply_counted(
            id,
            (msg_id, CREA),
            code::FORBIDDEN,
            "registration is closed on this server",
            "registration closed (403)",
            now_ms,
        );
    }
    let Ok(name) = m.username().map_err(drop).and_then(|n| account::normalize_username(n).map_err(drop)) else {
        return fail(core, code::BAD_REQUEST, "invalid user name: 3-32 of a-z 0-9 _ . -");
    };
    // The password and passphrase rules are the client's: only their argon2id
    // secrets arrive (PROTOCOL.md §5), which the server hashes again.
    if identity::from_modulus(&m.id_pub).is_err() {
        return fail(core, code::BAD_REQUEST, "identity key must be RSA-2048 with e=65537");
    }
    if core.accounts.is_taken(&name) {
        return fail(core, code::CONFLICT, "user name already taken");
    }
    // A deleted account's name: nobody may take it and pass for the old contact.
    if let Some(until) = core.accounts.retired.held_until(&name, now_ms) {
        let days = until.saturating_sub(now_ms).div_ceil(24 * 3600 * 1000);
        let why = format!("user name reserved after an account deletion; free in {days} days");
        return fail(core, code::CONFLICT, &why);
    }
    // Before any argon2id work: a flood from one address costs no CPU.
    let Some(addr) = core.addr(id) else { return };
    if let Err(wait) = core.registrations.allow(addr, now_ms) {
        return core.reply_retry(id, msg_id, CREA, code::RATE_LIMITED, "too many registrations; wait", wait, now_ms);
    }
    let uid = m.uid.get();
    // A deleted account's UID is held like its name (and its files may not be gone yet).
    if core.accounts.uid_taken(uid) || core.accounts.retired.uid_held(uid, now_ms) || core.deletion_pending(uid) {
        return fail(core, code::CONFLICT, "uid taken: choose another at random");
    }
    core.accounts.reserve(&name, uid);
    let mut record = Box::new(UserRecord::new_zeroed());
    record.uid.set(uid);
    record.created.set(now_ms);
    // NOTE: cannot fail, the name was checked to be at most 32 bytes.
    let _ = record.set_username(&name);
    record.id_pub = m.id_pub;
    record.enc_pub = m.enc_pub;
    record.enc_sig = m.enc_sig;
    let job = Job::Register {
        conn: id,
        msg_id,
        record,
        auth_secret: Zeroizing::new(m.auth_secret),
        pass_secret: Zeroizing::new(m.pass_secret),
        hold: core.limits().registration == Registration::Approval,
    };
    core.start_job(id, job);
}

/// A registration finished on a worker.
pub fn registered(
    core: &mut Core,
    id: ConnId,
    msg_id: u64,
    username: &str,
    result: Result<Box<UserRecord>, RegisterFailure>,
    now_ms: u64,
) {
    core.accounts.release(username);
    match result {
        Ok(rec) => {
            crate::log!(Info, "conn {id}: registered user {username} (uid {:016x})", rec.uid.get());
            let uid = rec.uid.get();
            core.accounts.insert(*rec);
            if core.limits().registration == Registration::Approval {
                // The worker wrote this state before the account.
                core.accounts.acct_mut(uid).set_state(State::OnHold, 0, "awaiting approval");
                core.reply(id, msg_id, CREA, code::OK, "registered; awaiting approval", now_ms);
            } else {
                core.reply(id, msg_id, CREA, code::OK, "registered", now_ms);
            }
        }
        Err(RegisterFailure::BadBinding) => {
            core.reply(id, msg_id, CREA, code::BAD_REQUEST, "encryption key signature does not verify", now_ms)
        }
        Err(RegisterFailure::Internal) => {
            core.reply(id, msg_id, CREA, code::INTERNAL, "could not hash the secrets", now_ms)
        }
        Err(RegisterFailure::Storage { unavailable }) => {
            let (status, cause) = crate::server::core::not_durable(unavailable);
            core.reply(id, msg_id, CREA, status, &format!("{cause}: not registered"), now_ms)
        }
    }
}

/// auth: back-off check, then the password check on a worker.
pub fn login(core: &mut Core, id: ConnId, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<Login>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(addr) = core.addr(id) else { return };
    // Strikes are keyed by the name as given (case-folded), known or not: an
    // unknown name backs off exactly like a known one.
    let raw = m.username().unwrap_or_default();
    let key = account::normalize_username(raw).unwrap_or_else(|_| raw.to_owned());
    let (uid, phc) = match core.accounts.by_name(&key) {
        Some(r) => (Some(r.uid.get()), r.password_hash().unwrap_or_default().to_owned()),
        None => (None, String::new()),
    };
    if let Some(wait) = core.backoff.check(&key, addr, now_ms) {
        return core.reply_retry(id, msg_id, AUTH, code::RATE_LIMITED, "too many failed logins; wait", wait, now_ms);
    }
    let auth_secret = Zeroizing::new(m.auth_secret);
    let dummy_kib = core.accounts.dummy_kib();
    core.start_job(id, Job::Password { conn: id, msg_id, uid, phc, dummy_kib, auth_secret });
    core.set_login_name(id, key);
}

/// Records a login attempt of `uid` from `id`'s address in its account state.
fn record(core: &mut Core, id: ConnId, uid: u64, outcome: Outcome, now_ms: u64) {
    let Some(addr) = core.addr(id) else { return };
    let keep = core.limits().login_records;
    core.accounts.acct_mut(uid).record(acct::Login { ts: now_ms, addr, outcome }, keep);
    core.mark_acct_dirty(uid);
}

/// The password check finished: then the account's state decides.
pub fn password_checked(core: &mut Core, id: ConnId, msg_id: u64, uid: Option<u64>, ok: bool, now_ms: u64) {
    // An account deleted while its password was checked is an unknown name now.
    let uid = uid.filter(|&uid| core.accounts.by_uid(uid).is_some());
    let state = uid.map(|uid| {
        // A state whose end passed lifts here, for good.
        if core.accounts.acct_mut(uid).expire(now_ms) {
            core.mark_acct_dirty(uid);
        }
        core.accounts.acct(uid)
    });
    match (uid, state) {
        (Some(uid), Some(a)) if ok && a.state == State::Active => {
            let step = PasswordAccepted::after_password_verified(uid, core.tickets.generation(uid));
            core.set_session(id, Session::AwaitPassphrase(step));
            core.reply(id, msg_id, AUTH, code::PENDING, "password accepted; send the passphrase", now_ms);
        }
        (Some(uid), Some(a)) if ok && matches!(a.state, State::OnHold | State::Banned) => {
            let (outcome, text) = match a.state {
                State::OnHold => (Outcome::OnHold, "awaiting approval".to_owned()),
                _ => (Outcome::Banned, format!("banned {}", crate::server::handler::admin::until_text(a.until))),
            };
            record(core, id, uid, outcome, now_ms);
            let mut why = LoginRefused::new(Status::Ok, code::OK, msg_id, now_ms);
            why.state = a.state as u8;
            why.until.set(a.until);
            // NOTE: cut to the field when it was set; cannot fail.
            let _ = why.set_reason(acct::cut(&a.reason, 128));
            core.send(id, &why);
            let count = if outcome == Outcome::OnHold { "login on hold (403)" } else { "login banned (403)" };
            core.reply_counted(id, (msg_id, AUTH), code::FORBIDDEN, &text, count, now_ms);
        }
        _ => {
            // Blocked: exactly a wrong password (the same work was done, the same strike follows).
            if let Some(uid) = uid {
                let outcome = if ok { Outcome::Blocked } else { Outcome::WrongPassword };
                record(core, id, uid, outcome, now_ms);
            }
            if let (Some(addr), Some(key)) = (core.addr(id), core.login_name(id)) {
                core.backoff.fail(&key, addr, now_ms);
            }
            core.reply(id, msg_id, AUTH, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
        }
    }
}

/// pass: the passphrase check on a worker.
pub fn passphrase(core: &mut Core, id: ConnId, step: &PasswordAccepted, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<Passphrase>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(rec) = core.accounts.by_uid(step.uid()) else {
        core.set_session(id, Session::AwaitLogin);
        return core.reply(id, msg_id, PASS, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
    };
    let phc = rec.passphrase_hash().unwrap_or_default().to_owned();
    let pass_secret = Zeroizing::new(m.pass_secret);
    let job = Job::Passphrase { conn: id, msg_id, uid: step.uid(), phc, pass_secret };
    core.start_job(id, job);
}

/// The passphrase check finished.
pub fn passphrase_checked(core: &mut Core, id: ConnId, msg_id: u64, uid: u64, ok: bool, now_ms: u64) {
    // The state again: a ban, block or hold set while this login waited for
    // its passphrase refuses it (as a failed login; the next password step
    // says why), and a deleted account is gone.
    if core.accounts.by_uid(uid).is_some() && core.accounts.acct_mut(uid).expire(now_ms) {
        core.mark_acct_dirty(uid);
    }
    let active = core.accounts.acct(uid).state == State::Active;
    // A password change or lgoe since the password step revoked this login
    // too: the same answer as a wrong passphrase.
    let step =
        core.password_step(id).filter(|s| s.uid() == uid && s.generation() == core.tickets.generation(uid)).cloned();
    let name = core.accounts.by_uid(uid).and_then(|r| r.username().ok()).map(str::to_owned).filter(|_| active);
    let login = name.zip(step);
    let limit = core.limits().sessions_per_user;
    match login {
        Some(_) if ok && core.sessions_of(uid).len() >= limit => {
            record(core, id, uid, Outcome::SessionLimit, now_ms);
            core.set_session(id, Session::AwaitLogin);
            let why = format!("too many sessions: at most {limit} per user; close one first");
            core.reply_counted(id, (msg_id, PASS), code::FORBIDDEN, &why, "session limit (403)", now_ms);
        }
        Some((name, step)) if ok => {
            if let Some(addr) = core.addr(id) {
                core.backoff.succeed(&name, addr);
            }
            let auth = Authenticated::after_passphrase_verified(step, name);
            start_session(core, id, auth, msg_id, now_ms);
        }
        _ => {
            let name = login.map(|(name, _)| name);
            if name.is_some() {
                record(core, id, uid, Outcome::WrongPassphrase, now_ms);
            }
            if let (Some(addr), Some(key)) = (core.addr(id), name) {
                core.backoff.fail(&key, addr, now_ms);
            }
            core.set_session(id, Session::AwaitLogin);
            core.reply(id, msg_id, PASS, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
        }
    }
}

/// A resumption of `uid` was accepted on `id` and its ticket's strike is
/// durable (`Core::resumed`): the session starts as after a full login.
pub fn resumed_login(core: &mut Core, id: ConnId, uid: u64, now_ms: u64) {
    let Some(name) = core.accounts.by_uid(uid).and_then(|r| r.username().ok()).map(str::to_owned) else { return };
    start_session(core, id, Authenticated::after_resumption(uid, name), 0, now_ms);
}

/// What every login gets, full or resumed: `cnnt` (answering `msg_id`; 0,
/// an event, for a resumption), `lgrc`, a fresh ticket, the login recorded,
/// the login hooks (announcements, prekey state, waiting DMs).
fn start_session(core: &mut Core, id: ConnId, auth: Authenticated, msg_id: u64, now_ms: u64) {
    let (uid, name) = (auth.uid(), auth.name().to_owned());
    let resumed = auth.resumed();
    let mut reply = Connected::new(Status::Ok, code::OK, msg_id, now_ms);
    reply.uid.set(uid);
    let _ = reply.set_username(&name);
    core.set_session(id, Session::Authenticated(auth));
    core.send(id, &reply);
    login_record(core, id, uid, now_ms);
    // The ticket right after the login's answer and record, before the
    // login's other events (announcements, prekey state, the mailbox).
    core.issue_ticket(id, uid, now_ms);
    if resumed {
        // Recorded, and written with the account's next change or when its
        // last session ends: a storm of resumptions is one journal append
        // per commit, not a state file per account (the strike is durable).
        if let Some(addr) = core.addr(id) {
            let keep = core.limits().login_records;
            core.accounts.acct_mut(uid).record(acct::Login { ts: now_ms, addr, outcome: Outcome::LoggedIn }, keep);
            core.mark_acct_unsaved(uid);
        }
    } else {
        record(core, id, uid, Outcome::LoggedIn, now_ms);
    }
    crate::server::handler::operator::on_login(core, id, uid, now_ms);
    crate::server::handler::prekey::on_login(core, id, uid, now_ms);
    crate::server::handler::direct::on_login(core, id, uid, now_ms);
    if let Some(addr) = core.addr(id) {
        let how = if resumed { "resumed a session" } else { "logged in" };
        crate::log!(Info, "conn {id}: {name} (uid {uid:016x}) {how} from {addr}");
    }
}

/// lgrc, right after cnnt: the previous login and the failed logins since.
/// A blocked attempt reads as the wrong password it looked like.
fn login_record(core: &mut Core, id: ConnId, uid: u64, now_ms: u64) {
    let (last, failed) = core.accounts.acct(uid).since_last_visit();
    let mut m = LoginRecord::new(Status::Ok, code::OK, 0, now_ms);
    if let Some(last) = last {
        m.last_ts.set(last.ts);
        m.last_addr = last.entry().addr;
    }
    let shown: Vec<acct::Login> = failed
        .into_iter()
        .map(|mut f| {
            if f.outcome == Outcome::Blocked {
                f.outcome = Outcome::WrongPassword;
            }
            f
        })
        .collect();
    m.failed_count = acct::put_entries(shown.iter(), &mut m.failed);
    core.send(id, &m);
}

/// lgoe: every ticket of the account revoked, its other sessions closed;
/// 200 once the revocation is durable, then a fresh ticket for this session.
pub fn logout_everywhere(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<LogoutEverywhere>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let uid = auth.uid();
    core.revoke_tickets(uid, "logged out everywhere");
    let n = operator::kick_sessions_except(core, uid, Some(id), auth.name(), "logged out everywhere", now_ms);
    crate::log!(Info, "conn {id}: {} (uid {uid:016x}) logged out everywhere; {n} other sessions closed", auth.name());
    core.defer(Deferred::Revoked { conn: id, msg_id, opcode: LGOE, reason: "logged out everywhere" });
}

/// chpw: the back-off first, then both current secrets checked and the new
/// ones hashed on a worker, as a login's.
pub fn change_secrets(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<ChangeSecrets>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(addr) = core.addr(id) else { return };
    let key = auth.name().to_owned();
    if let Some(wait) = core.backoff.check(&key, addr, now_ms) {
        return core.reply_retry(id, msg_id, CHPW, code::RATE_LIMITED, "too many failed logins; wait", wait, now_ms);
    }
    let Some(rec) = core.accounts.by_uid(auth.uid()) else {
        return core.reply(id, msg_id, CHPW, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
    };
    let job = Job::ChangeSecrets {
        conn: id,
        msg_id,
        record: Box::new(*rec),
        old_auth: Zeroizing::new(m.old_auth_secret),
        old_pass: Zeroizing::new(m.old_pass_secret),
        new_auth: Zeroizing::new(m.new_auth_secret),
        new_pass: Zeroizing::new(m.new_pass_secret),
    };
    core.set_login_name(id, key);
    core.start_job(id, job);
}

/// The current secrets were checked (and the new ones hashed) on a worker.
pub fn secrets_checked(
    core: &mut Core,
    id: ConnId,
    msg_id: u64,
    uid: u64,
    result: Result<Box<UserRecord>, SecretsFailure>,
    now_ms: u64,
) {
    // A session of an account deleted meanwhile is closed already, and one
    // kicked meanwhile by another password change or lgoe changes nothing.
    if core.accounts.by_uid(uid).is_none() || core.session_uid(id) != Some(uid) || core.is_closing(id) {
        return core.reply(id, msg_id, CHPW, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
    }
    match result {
        Ok(record) => {
            if let (Some(addr), Some(key)) = (core.addr(id), core.login_name(id)) {
                core.backoff.succeed(&key, addr);
            }
            // The revocation first, durable before the new secrets are
            // stored: no crash leaves new secrets and the old tickets valid.
            core.revoke_tickets(uid, "password and passphrase changed");
            let name = core.accounts.by_uid(uid).and_then(|r| r.username().ok()).unwrap_or_default().to_owned();
            let n = operator::kick_sessions_except(core, uid, Some(id), &name, "password changed", now_ms);
            crate::log!(Info, "conn {id}: {name} (uid {uid:016x}) changed its secrets; {n} other sessions closed");
            core.defer(Deferred::SecretsRevoked { conn: id, msg_id, record });
        }
        Err(SecretsFailure::Wrong) => {
            record(core, id, uid, Outcome::WrongPassword, now_ms);
            if let (Some(addr), Some(key)) = (core.addr(id), core.login_name(id)) {
                core.backoff.fail(&key, addr, now_ms);
            }
            core.reply(id, msg_id, CHPW, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
        }
        Err(SecretsFailure::Internal) => {
            core.reply(id, msg_id, CHPW, code::INTERNAL, "could not hash the secrets", now_ms)
        }
    }
}

/// A password change's revocation is durable: the new secrets take effect
/// and are stored; 200 (and a fresh ticket) once they are durable.
pub fn secrets_revoked(core: &mut Core, id: ConnId, msg_id: u64, record: Box<UserRecord>, now_ms: u64) {
    let uid = record.uid.get();
    if core.accounts.by_uid(uid).is_none() || core.is_closing(id) {
        return core.reply(id, msg_id, CHPW, code::UNAUTHORIZED, BAD_LOGIN, now_ms);
    }
    let Some(old) = core.accounts.by_uid(uid).map(|r| Box::new(*r)) else { return };
    core.accounts.replace(*record);
    core.mark_user_dirty(uid);
    core.defer(Deferred::SecretsStored { conn: id, msg_id, old, new: record });
}

/// The commit of a password change's new secrets failed: the old record
/// comes back in memory (and is written with the next commit), so that the
/// 507 (503 in a cluster) means the secrets did not change (PROTOCOL.md §5, chpw): the client
/// keeps its old ones. The tickets stay revoked, which is harmless.
pub fn secrets_not_stored(
    core: &mut Core,
    id: ConnId,
    msg_id: u64,
    old: Box<UserRecord>,
    new: &UserRecord,
    unavailable: bool,
    now_ms: u64,
) {
    let uid = old.uid.get();
    // Only over the record this change made: not over a later change, nor
    // an account deleted meanwhile.
    if core.accounts.by_uid(uid).is_some_and(|r| r.as_bytes() == new.as_bytes()) {
        core.accounts.replace(*old);
        core.mark_user_dirty(uid);
        crate::log!(Warn, "conn {id}: uid {uid:016x}: storing the changed secrets failed; the old ones stay");
    }
    let (status, cause) = crate::server::core::not_durable(unavailable);
    let why = format!("{cause}: password and passphrase unchanged; try again");
    core.reply(id, msg_id, CHPW, status, &why, now_ms);
}
