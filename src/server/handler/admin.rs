//! Admin socket handlers (sottoctl; opcodes.toml `admin_request` rows,
//! PROTOCOL.md §12): users, show, state changes, kick, announce, roles,
//! denials, deletion, stats.
//!
//! Invariant: every handler runs only from `ADMIN_DISPATCH` for a peer whose
//! credentials the event loop checked (root or the service user); every
//! change is logged with the peer's uid and pid (never a secret: there is
//! none here) and acknowledged only once durable (`Deferred::Admin`).

use crate::account;
use crate::opcodes::{
    AdminAnnounce, AdminDelete, AdminDeny, AdminKick, AdminRefusals, AdminRole, AdminSetState, AdminShow,
    AdminStatsReply, AdminUserEntry, AdminUserInfo, AdminUsers, AANN, ADEL, ADNY, AKCK, AROL, ASET, ASHW, AUSR,
};
use crate::wire::{code, decode, Message, Status};

use crate::server::acct::{self, put_entries, State, MAX_DENIED, ROLE_ADMIN, ROLE_MODERATOR, ROLE_USER};
use crate::server::admin::{answer, reply, reply_done, send, AdminPeer};
use crate::server::core::{ConnId, Core, Deferred};
use crate::server::handler::operator;

/// `until 2026-12-05T10:00:00Z` for a Unix time in ms, `indefinitely` for 0.
pub fn until_text(ms: u64) -> String {
    if ms == 0 {
        return "indefinitely".into();
    }
    let t = crate::server::log::rfc3339(ms);
    // Whole seconds are enough for an end date.
    match t.split_once('.') {
        Some((secs, _)) => format!("until {secs}Z"),
        None => format!("until {t}"),
    }
}

/// The UID and canonical name of the account `raw` names, or a 404 answer.
fn account_of(
    core: &mut Core,
    id: ConnId,
    (msg_id, op): (u64, u32),
    raw: Result<&str, crate::wire::WireError>,
) -> Option<(u64, String)> {
    let name = raw.ok().and_then(|n| account::normalize_username(n).ok());
    let found = name.as_deref().and_then(|n| operator::uid_of(core, n)).zip(name.clone());
    if found.is_none() {
        let shown = raw.unwrap_or("?");
        reply(core, id, msg_id, op, code::NOT_FOUND, &format!("no such user: {}", acct::cut(shown, 32)));
    }
    found
}

/// Answers once what was changed is durable.
fn durable(core: &mut Core, id: ConnId, (msg_id, op): (u64, u32), text: &str, now_ms: u64) {
    let reply = Box::new(answer(msg_id, op, code::OK, text, now_ms));
    core.defer(Deferred::Admin { conn: id, reply });
}

/// ausr: every account (or those online), by name.
pub fn users(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminUsers>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let mut list: Vec<(String, u64, u64)> = core
        .accounts
        .records()
        .filter_map(|r| Some((r.username().ok()?.to_owned(), r.uid.get(), r.created.get())))
        .collect();
    list.sort();
    let mut shown = 0;
    for (name, uid, created) in list {
        let sessions = core.sessions_of(uid).len();
        if m.online == 1 && sessions == 0 {
            continue;
        }
        let a = core.accounts.acct(uid);
        let (state, until) = a.effective(now_ms);
        let mut e = AdminUserEntry::new(Status::Pending, code::OK, msg_id, now_ms);
        e.uid.set(uid);
        let _ = e.set_name(&name);
        e.state = state as u8;
        e.roles = a.roles;
        e.sessions.set(u16::try_from(sessions).unwrap_or(u16::MAX));
        e.created.set(created);
        e.until.set(until);
        send(core, id, &e);
        shown += 1;
    }
    crate::log!(Debug, "admin uid {} pid {}: users", peer.uid, peer.pid);
    reply_done(core, id, msg_id, AUSR, &format!("{shown} users"), now_ms);
}

/// ashw: one account in full.
pub fn show(core: &mut Core, id: ConnId, _peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminShow>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some((uid, name)) = account_of(core, id, (msg_id, ASHW), m.user()) else { return };
    let created = core.accounts.by_uid(uid).map_or(0, |r| r.created.get());
    let a = core.accounts.acct(uid);
    let (state, until) = a.effective(now_ms);
    let mut r = AdminUserInfo::new(Status::Ok, code::OK, msg_id, now_ms);
    r.uid.set(uid);
    let _ = r.set_name(&name);
    r.created.set(created);
    r.state = state as u8;
    r.roles = a.roles;
    r.until.set(until);
    let _ = r.set_reason(if state == State::Active { "" } else { acct::cut(&a.reason, 128) });
    r.sessions.set(u16::try_from(core.sessions_of(uid).len()).unwrap_or(u16::MAX));
    for (slot, d) in r.denied.chunks_exact_mut(4).zip(&a.denied) {
        slot[..d.len()].copy_from_slice(d.as_bytes());
        r.denied_count += 1;
    }
    r.login_count = put_entries(a.logins.iter(), &mut r.logins);
    r.failed_count = put_entries(a.failed.iter(), &mut r.failed);
    send(core, id, &r);
}

/// aset: ban, unban, block, hold, approve. A user no longer active has its sessions closed.
pub fn set_state(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminSetState>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(state) = State::from_u8(m.state) else {
        return reply(core, id, msg_id, ASET, code::BAD_REQUEST, "unknown state");
    };
    let Some((uid, name)) = account_of(core, id, (msg_id, ASET), m.user()) else { return };
    let reason = m.reason().unwrap_or_default().to_owned();
    let for_ms = m.for_ms.get();
    let until = if for_ms == 0 { 0 } else { now_ms.saturating_add(for_ms) };
    core.accounts.acct_mut(uid).set_state(state, until, &reason);
    core.mark_acct_dirty(uid);
    if state != State::Active {
        core.revoke_tickets(uid, state.name());
    }
    let closed = match state {
        State::Active => 0,
        // Without a notice: the sessions end as a lost connection would, and
        // the logins that follow read as a wrong password.
        State::Blocked => operator::drop_sessions(core, uid),
        State::Banned if reason.is_empty() => operator::kick_sessions(core, uid, "operator", "banned", now_ms),
        State::Banned => operator::kick_sessions(core, uid, "operator", &format!("banned: {reason}"), now_ms),
        State::OnHold => operator::kick_sessions(core, uid, "operator", "account on hold", now_ms),
    };
    let until_shown = if state == State::Active { String::new() } else { format!(" {}", until_text(until)) };
    crate::log!(
        Info,
        "admin uid {} pid {}: {name} (uid {uid:016x}) set {}{until_shown}; {closed} sessions closed",
        peer.uid,
        peer.pid,
        state.name()
    );
    let text = format!("{name} is {}{until_shown}", state.name());
    durable(core, id, (msg_id, ASET), &text, now_ms);
}

/// akck: close every session of a user.
pub fn kick(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminKick>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some((uid, name)) = account_of(core, id, (msg_id, AKCK), m.user()) else { return };
    let reason = m.reason().unwrap_or_default().to_owned();
    let n = operator::kick_sessions(core, uid, "operator", &reason, now_ms);
    core.revoke_tickets(uid, "kicked");
    crate::log!(Info, "admin uid {} pid {}: kicked {name} (uid {uid:016x}), {n} sessions", peer.uid, peer.pid);
    durable(core, id, (msg_id, AKCK), &format!("{name}: {n} sessions closed"), now_ms);
}

/// aann: announce to every user.
pub fn announce(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminAnnounce>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let text = match m.text() {
        Ok(t) if !t.trim().is_empty() => t.to_owned(),
        _ => return reply(core, id, msg_id, AANN, code::BAD_REQUEST, "an announcement needs a text"),
    };
    let online = operator::announce_all(core, "operator", &text, m.ttl_ms.get(), now_ms);
    crate::log!(
        Info,
        "admin uid {} pid {}: announced {} bytes to {online} online users",
        peer.uid,
        peer.pid,
        text.len()
    );
    durable(
        core,
        id,
        (msg_id, AANN),
        &format!("announced to {online} online users; the others at their next login"),
        now_ms,
    );
}

/// adel: delete an account, as its owner's /delete-account does.
pub fn delete(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminDelete>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some((uid, name)) = account_of(core, id, (msg_id, ADEL), m.user()) else { return };
    if core.delete_account(uid, now_ms, "deleted by the operator").is_none() {
        return reply(core, id, msg_id, ADEL, code::NOT_FOUND, &format!("no such user: {name}"));
    }
    crate::log!(Info, "admin uid {} pid {}: deleted {name} (uid {uid:016x})", peer.uid, peer.pid);
    durable(core, id, (msg_id, ADEL), &format!("{name} deleted; the name is reserved"), now_ms);
}

/// arol: grant or revoke moderator or admin.
pub fn role(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminRole>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    if m.role != ROLE_MODERATOR && m.role != ROLE_ADMIN {
        let why = if m.role == ROLE_USER { "every account has the role user" } else { "unknown role" };
        return reply(core, id, msg_id, AROL, code::BAD_REQUEST, why);
    }
    let Some((uid, name)) = account_of(core, id, (msg_id, AROL), m.user()) else { return };
    let a = core.accounts.acct_mut(uid);
    if m.grant == 1 {
        a.roles |= m.role;
    } else {
        a.roles &= !m.role;
    }
    let roles = crate::opcodes::role_names(a.roles);
    core.mark_acct_dirty(uid);
    let verb = if m.grant == 1 { "granted" } else { "revoked" };
    let role = crate::opcodes::role_names(m.role);
    crate::log!(Info, "admin uid {} pid {}: {verb} {role} to {name} (uid {uid:016x})", peer.uid, peer.pid);
    durable(core, id, (msg_id, AROL), &format!("{name}: roles {roles}"), now_ms);
}

/// adny: deny or allow requests by mnemonic.
pub fn deny(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<AdminDeny>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let count = usize::from(m.count);
    if count == 0 || count > MAX_DENIED {
        return reply(core, id, msg_id, ADNY, code::BAD_REQUEST, "name 1 to 32 mnemonics");
    }
    let mut names = Vec::with_capacity(count);
    for raw in m.mnemonics.chunks_exact(4).take(count) {
        let name = std::str::from_utf8(raw).unwrap_or("").trim_end_matches('\0').to_owned();
        if acct::resolve(&name).is_empty() {
            let why = format!(
                "unknown mnemonic `{}`: name a request sent after login (e.g. smps) or a classed family (srm covers srms, srmm, srml, srmx); see sottod --opcodes",
                acct::cut(&name.escape_default().to_string(), 16)
            );
            return reply(core, id, msg_id, ADNY, code::BAD_REQUEST, &why);
        }
        names.push(name);
    }
    let Some((uid, name)) = account_of(core, id, (msg_id, ADNY), m.user()) else { return };
    // The whole new list first: a refusal changes nothing.
    let mut denied = core.accounts.acct(uid).denied;
    for n in &names {
        if m.allow == 1 {
            denied.retain(|d| d != n);
        } else if !denied.contains(n) {
            denied.push(n.clone());
        }
    }
    if denied.len() > MAX_DENIED {
        return reply(core, id, msg_id, ADNY, code::BAD_REQUEST, "at most 32 denied mnemonics per account");
    }
    let a = core.accounts.acct_mut(uid);
    a.denied = denied;
    let now_denied = if a.denied.is_empty() { "nothing".to_owned() } else { a.denied.join(" ") };
    core.mark_acct_dirty(uid);
    let verb = if m.allow == 1 { "allowed" } else { "denied" };
    crate::log!(Info, "admin uid {} pid {}: {verb} {} to {name} (uid {uid:016x})", peer.uid, peer.pid, names.join(" "));
    durable(core, id, (msg_id, ADNY), &format!("{name}: denied {now_denied}"), now_ms);
}

/// asts: counts and sizes now, refusals since start.
pub fn stats(core: &mut Core, id: ConnId, peer: &AdminPeer, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<crate::opcodes::AdminStats>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let refusals: Vec<(&'static str, u64)> = core.refusals().iter().map(|(k, v)| (*k, *v)).collect();
    for (why, n) in refusals {
        let mut r = AdminRefusals::new(Status::Pending, code::OK, msg_id, now_ms);
        r.count.set(n);
        let _ = r.set_reason(acct::cut(why, 64));
        send(core, id, &r);
    }
    let (users, sessions) = core.online_counts();
    let (queued, queued_bytes) = core.mail.sizes();
    let (files, file_bytes) = core.files.totals();
    let mut s = AdminStatsReply::new(Status::Ok, code::OK, msg_id, now_ms);
    s.connections.set(core.connection_count() as u64);
    s.sessions.set(sessions as u64);
    s.users_online.set(users as u64);
    s.accounts.set(core.accounts.len() as u64);
    s.rooms.set(core.rooms.len() as u64);
    s.queued.set(queued);
    s.queued_bytes.set(queued_bytes);
    s.files.set(files);
    s.file_bytes.set(file_bytes);
    s.announcements.set(core.announcements.due(0, now_ms).count() as u64);
    s.admin_conns.set(core.admin.len() as u64);
    crate::log!(Debug, "admin uid {} pid {}: stats", peer.uid, peer.pid);
    send(core, id, &s);
}
