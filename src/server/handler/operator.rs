//! Kicks and announcements: admins in-band (kick, annc, roles =
//! ["admin"] in opcodes.toml, checked by the dispatch) and the operator
//! through the admin socket share these.
//!
//! Invariant: a kicked session gets `kckd` before its connection is marked
//! for closing, so the client learns why; an announcement is stored (and
//! durable before it is acknowledged) before it is sent, and each account's
//! `announce_seen` makes every announcement reach a user once (once more
//! after a server restart, for a user online when it was made).

use crate::account;
use crate::opcodes::{Announce, Announcement, KickUser, Kicked, ANNC, KICK};
use crate::wire::{code, decode, Message, Status};

use crate::server::acct::cut;
use crate::server::core::{ConnId, Core, Deferred};
use crate::server::session::Authenticated;

/// kick: an admin closes every session of a user.
pub fn kick(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<KickUser>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(uid) = m.user().ok().and_then(|n| account::normalize_username(n).ok()).and_then(|n| uid_of(core, &n))
    else {
        return core.reply(id, msg_id, KICK, code::NOT_FOUND, "no such user", now_ms);
    };
    let reason = m.reason().unwrap_or_default().to_owned();
    let n = kick_sessions(core, uid, auth.name(), &reason, now_ms);
    core.revoke_tickets(uid, "kicked");
    crate::log!(Info, "conn {id}: admin {} kicked uid {uid:016x} ({n} sessions)", auth.name());
    // Acknowledged once the revocation is durable (PROTOCOL §3, revocation).
    let reason = if n == 0 { "not online; tickets revoked" } else { "kicked" };
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: KICK, reason });
}

/// annc: an admin announces a text to every user.
pub fn announce(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<Announce>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let text = match m.text() {
        Ok(t) if !t.trim().is_empty() => t.to_owned(),
        _ => return core.reply(id, msg_id, ANNC, code::BAD_REQUEST, "an announcement needs a text", now_ms),
    };
    let ttl_ms = u64::from(m.ttl_secs.get()).saturating_mul(1000);
    let online = announce_all(core, auth.name(), &text, ttl_ms, now_ms);
    crate::log!(Info, "conn {id}: admin {} announced {} bytes to {online} online users", auth.name(), text.len());
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: ANNC, reason: "announced" });
}

/// The UID of the account named `name` (normalised).
pub(crate) fn uid_of(core: &Core, name: &str) -> Option<u64> {
    core.accounts.by_name(name).map(|r| r.uid.get())
}

/// Sends `kckd` to every session of `uid`, then closes them; returns how many.
pub(crate) fn kick_sessions(core: &mut Core, uid: u64, by: &str, reason: &str, now_ms: u64) -> usize {
    kick_sessions_except(core, uid, None, by, reason, now_ms)
}

/// As [`kick_sessions`], sparing session `except`.
pub(crate) fn kick_sessions_except(
    core: &mut Core,
    uid: u64,
    except: Option<ConnId>,
    by: &str,
    reason: &str,
    now_ms: u64,
) -> usize {
    let mut m = Kicked::new(Status::Ok, code::OK, 0, now_ms);
    // NOTE: both cut to their fields; cannot fail.
    let _ = m.set_by(cut(by, 32));
    let _ = m.set_reason(cut(reason, 128));
    let mut sessions = core.sessions_of(uid);
    sessions.retain(|c| Some(*c) != except);
    for &conn in &sessions {
        core.send(conn, &m);
        core.close(conn, "kicked");
    }
    sessions.len()
}

/// Closes every session of `uid` without a word (a block); returns how many.
pub(crate) fn drop_sessions(core: &mut Core, uid: u64) -> usize {
    let sessions = core.sessions_of(uid);
    for &conn in &sessions {
        core.close(conn, "blocked");
    }
    sessions.len()
}

/// Stores an announcement and sends it to every online user now (their
/// accounts remember it as seen, on disk when their last session ends: one
/// announcement does not rewrite every online user's state file at once; a
/// restart before then shows it to them once more); returns how many users
/// were online.
pub(crate) fn announce_all(core: &mut Core, from: &str, text: &str, ttl_ms: u64, now_ms: u64) -> usize {
    core.announcements.prune(now_ms);
    let a = core.announcements.add(from, text, now_ms, ttl_ms);
    core.mark_announcements_dirty();
    let m = event(&a, now_ms);
    let users = core.online_users();
    for &uid in &users {
        core.send_to_user(uid, &m, None);
        core.accounts.acct_mut(uid).announce_seen = a.id;
        core.mark_acct_unsaved(uid);
    }
    users.len()
}

/// After a login: the announcements this account has not had yet.
pub(crate) fn on_login(core: &mut Core, id: ConnId, uid: u64, now_ms: u64) {
    let seen = core.accounts.acct(uid).announce_seen;
    let due: Vec<Announcement> = core.announcements.due(seen, now_ms).map(|a| event(a, now_ms)).collect();
    let Some(last) = core.announcements.due(seen, now_ms).map(|a| a.id).max() else { return };
    for m in &due {
        core.send(id, m);
    }
    core.accounts.acct_mut(uid).announce_seen = last;
    core.mark_acct_dirty(uid);
}

fn event(a: &crate::server::announce::Announcement, now_ms: u64) -> Announcement {
    let mut m = Announcement::new(Status::Ok, code::OK, 0, now_ms);
    // NOTE: both were cut to their fields when stored; cannot fail.
    let _ = m.set_from(cut(&a.from, 32));
    let _ = m.set_text(cut(&a.text, 255));
    m.ts.set(a.ts);
    m
}
