//! The caller's own account (dlac: delete it, DESIGN §5) and the list of
//! users (lsus, as `--list-users` allows).
//!
//! Invariant: a deletion is proven again by both login secrets, checked on a
//! worker like a login and counted like a failed login when wrong; a list
//! shows only what `--list-users` allows: everyone, the users the caller
//! shares a room or an accepted DM channel with, or nobody.

use std::collections::BTreeSet;

use crate::opcodes::{DeleteAccount, ListUsers, UserEntry, DLAC, LSUS};
use crate::wire::{code, decode, Message, Status};
use zeroize::Zeroizing;

use crate::server::core::{ConnId, Core, ListUsers as Mode};
use crate::server::session::Authenticated;
use crate::server::worker::Job;

/// Users one list answer carries at most (the output bound must hold it).
const LIST_MAX: usize = 1000;

/// The answer to wrong secrets: a failed login's.
const BAD_SECRETS: &str = "wrong password or passphrase";

/// dlac: check both secrets again on a worker.
pub fn delete(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<DeleteAccount>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(addr) = core.addr(id) else { return };
    let name = auth.name().to_owned();
    if let Some(wait) = core.backoff.check(&name, addr, now_ms) {
        return core.reply_retry(id, msg_id, DLAC, code::RATE_LIMITED, "too many failed attempts; wait", wait, now_ms);
    }
    let Some(rec) = core.accounts.by_uid(auth.uid()) else {
        return core.reply(id, msg_id, DLAC, code::UNAUTHORIZED, BAD_SECRETS, now_ms);
    };
    let job = Job::Recheck {
        conn: id,
        msg_id,
        uid: auth.uid(),
        password_phc: rec.password_hash().unwrap_or_default().to_owned(),
        passphrase_phc: rec.passphrase_hash().unwrap_or_default().to_owned(),
        auth_secret: Zeroizing::new(m.auth_secret),
        pass_secret: Zeroizing::new(m.pass_secret),
    };
    core.start_job(id, job);
}

/// The secrets of a deletion were checked: delete, or count a failure.
pub fn rechecked(core: &mut Core, id: ConnId, msg_id: u64, uid: u64, ok: bool, now_ms: u64) {
    let Some(addr) = core.addr(id) else { return };
    let Some(name) = core.accounts.by_uid(uid).and_then(|r| r.username().ok()).map(str::to_owned) else { return };
    if !ok {
        core.backoff.fail(&name, addr, now_ms);
        return core.reply(id, msg_id, DLAC, code::UNAUTHORIZED, BAD_SECRETS, now_ms);
    }
    core.backoff.succeed(&name, addr);
    core.delete_account_answering(uid, now_ms, "deleted by its owner", Some((id, msg_id)));
}

/// lsus: the users `--list-users` lets the caller see, by name, with
/// whether each is online, then a done.
pub fn list(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<ListUsers>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let me = auth.uid();
    let uids: BTreeSet<u64> = match core.limits().list_users {
        Mode::Off => {
            let why = "listing users is turned off on this server";
            return core.reply(id, msg_id, LSUS, code::FORBIDDEN, why, now_ms);
        }
        Mode::All => core.accounts.records().map(|r| r.uid.get()).collect(),
        Mode::Shared => {
            let mut shared: BTreeSet<u64> =
                core.rooms.iter().filter(|r| r.is_member(me)).flat_map(|r| r.members.iter().copied()).collect();
            shared.extend(core.mail.contacts.of(me));
            shared.remove(&me);
            shared
        }
    };
    let mut listed: Vec<(String, bool)> = uids
        .into_iter()
        .filter_map(|uid| {
            let name = core.accounts.by_uid(uid)?.username().ok()?.to_owned();
            Some((name, core.is_online(uid)))
        })
        .collect();
    listed.sort();
    let total = listed.len();
    for (name, online) in listed.into_iter().take(LIST_MAX) {
        let mut ev = UserEntry::new(Status::Pending, code::OK, msg_id, now_ms);
        let _ = ev.set_name(&name);
        ev.online = u8::from(online);
        core.send(id, &ev);
    }
    let reason = if total > LIST_MAX { "list truncated to the first 1000 users" } else { "end of list" };
    core.reply_done(id, msg_id, LSUS, reason, now_ms);
}
