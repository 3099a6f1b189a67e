//! Prekeys (PROTOCOL.md §7): publish (pkup) and hand out (pkgt) the X3DH
//! inputs of a DM session; tell the owner their state (pkst) at login and
//! when a fetch leaves few one-time prekeys.
//!
//! Invariant: a signed prekey is kept only after its signature verified with
//! the uploader's identity key; a one-time prekey is handed out once: it
//! leaves the store at the fetch and the bundle is sent only after the file
//! without it is durable (`Deferred::Bundle`). The uploader hears 200 only
//! after its prekeys are durable.

use crate::opcodes::{PrekeyBundle, PrekeyFetch, PrekeyState, PrekeyUpload, PKGT, PKUP};
use crate::wire::{code, decode, Message, Status};

use crate::server::core::{ConnId, Core, Deferred};
use crate::server::prekeys::{usable_key, Opk, OPK_ENTRY, OPK_MAX, OPK_UPLOAD_MAX, REFILL_BELOW};
use crate::server::session::Authenticated;
use crate::server::worker::Job;

/// Why an upload is refused, checked before anything changes, the signature
/// last (a refused upload costs no RSA work): (code, reason).
fn check_upload(core: &Core, uid: u64, m: &PrekeyUpload) -> Result<Vec<Opk>, (u16, &'static str)> {
    let bad = |why| Err((code::BAD_REQUEST, why));
    let count = usize::from(m.opk_count);
    if count > OPK_UPLOAD_MAX {
        return bad("at most 100 one-time prekeys per upload");
    }
    let current = core.mail.prekeys.get(uid);
    let spk_id = m.spk_id.get();
    if spk_id == 0 {
        if count == 0 {
            return bad("nothing to publish: no signed prekey and no one-time prekeys");
        }
        if m.spk_pub != [0; 32] {
            return bad("a signed prekey needs a non-zero id");
        }
    } else {
        if current.is_some_and(|p| spk_id <= p.spk_id) {
            return bad("signed prekey id must be higher than the last one published");
        }
        if !usable_key(&m.spk_pub) {
            return bad("signed prekey is zero or of low order");
        }
    }
    let entries = m.opks.get(..count * OPK_ENTRY).ok_or((code::BAD_REQUEST, "one-time prekeys truncated"))?;
    let mut opks: Vec<Opk> = Vec::with_capacity(count);
    for e in entries.chunks_exact(OPK_ENTRY) {
        let (id, key) = e.split_at(4);
        let id = u32::from_be_bytes(id.try_into().map_err(|_| (code::BAD_REQUEST, "one-time prekeys truncated"))?);
        let key: [u8; 32] = key.try_into().map_err(|_| (code::BAD_REQUEST, "one-time prekeys truncated"))?;
        if id == 0 {
            return bad("one-time prekey id 0");
        }
        if opks.iter().any(|(i, _)| *i == id) || current.is_some_and(|p| p.has_opk(id)) {
            return bad("duplicate one-time prekey id");
        }
        if !usable_key(&key) {
            return bad("one-time prekey is zero or of low order");
        }
        opks.push((id, key));
    }
    if current.map_or(0, |p| p.opks.len()) + opks.len() > OPK_MAX {
        return Err((code::TOO_LARGE, "too many one-time prekeys: the server keeps 200"));
    }
    Ok(opks)
}

/// pkup: publish a signed prekey and/or one-time prekeys; 200 once durable.
pub fn upload(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<PrekeyUpload>(frame) else { return };
    let (msg_id, uid) = (m.hdr.msg_id.get(), auth.uid());
    if let Err((c, why)) = check_upload(core, uid, m) {
        return core.reply(id, msg_id, PKUP, c, why, now_ms);
    }
    let spk_id = m.spk_id.get();
    if spk_id == 0 {
        return store(core, id, auth.uid(), m, now_ms);
    }
    // The signature is checked last (a refused upload costs no RSA work), on a worker.
    let Some(rec) = core.accounts.by_uid(uid) else { return };
    let id_pub = Box::new(rec.id_pub);
    let binding = crate::x3dh::spk_binding(&crate::account::deployment_id(), uid, spk_id, &m.spk_pub);
    core.start_job(id, Job::Prekey { conn: id, uid, id_pub, binding, upload: Box::new(*m) });
}

/// The worker checked an upload's signed prekey: stored if it verified and the
/// upload still fits (another session of the user may have published meanwhile).
pub fn verified(core: &mut Core, id: ConnId, uid: u64, m: &PrekeyUpload, ok: bool, now_ms: u64) {
    let msg_id = m.hdr.msg_id.get();
    if core.accounts.by_uid(uid).is_none() {
        // The account was deleted while the signature was checked: nothing to publish for.
        return;
    }
    if !ok {
        const WHY: &str = "signed prekey signature does not verify with your identity key";
        return core.reply(id, msg_id, PKUP, code::BAD_REQUEST, WHY, now_ms);
    }
    store(core, id, uid, m, now_ms);
}

/// Applies a checked upload; 200 once durable.
fn store(core: &mut Core, id: ConnId, uid: u64, m: &PrekeyUpload, now_ms: u64) {
    let msg_id = m.hdr.msg_id.get();
    let opks = match check_upload(core, uid, m) {
        Ok(opks) => opks,
        Err((c, why)) => return core.reply(id, msg_id, PKUP, c, why, now_ms),
    };
    let p = core.mail.prekeys.entry(uid);
    if m.spk_id.get() != 0 {
        // Only the current signed prekey is handed out; the client keeps the
        // older secrets for sessions already started with them.
        p.spk_id = m.spk_id.get();
        p.spk_time = now_ms;
        p.spk_pub = m.spk_pub;
        *p.spk_sig = m.spk_sig;
    }
    p.opks.extend(opks);
    core.mark_prekeys_dirty(uid);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: PKUP, reason: "prekeys stored" });
}

/// pkgt: hand out a contact's signed prekey and one one-time prekey, which
/// leaves the store now; the bundle goes once that is durable.
pub fn fetch(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<PrekeyFetch>(frame) else { return };
    let (msg_id, peer, me) = (m.hdr.msg_id.get(), m.peer_uid.get(), auth.uid());
    if core.accounts.by_uid(peer).is_none() {
        return core.reply(id, msg_id, PKGT, code::NOT_FOUND, "no such user", now_ms);
    }
    if !core.mail.contacts.accepted(me, peer) {
        return core.reply(id, msg_id, PKGT, code::FORBIDDEN, "no accepted DM channel with this user", now_ms);
    }
    if core.mail.prekeys.get(peer).is_none_or(|p| p.spk_id == 0) {
        const WHY: &str = "this user has not published prekeys yet (their client must log in once with protocol 2)";
        return core.reply(id, msg_id, PKGT, code::NOT_FOUND, WHY, now_ms);
    }
    // Not counted as chat: a first message costs one request, as any other.
    // Only a contact can fetch, and a contact who drains the one-time prekeys
    // makes new sessions start without one (X3DH with the signed prekey
    // alone), not fail; the owner refills at the next pkst.
    let Some((spk, opk)) = core.mail.prekeys.take_bundle(peer) else { return };
    let mut b = Box::new(PrekeyBundle::new(Status::Ok, code::OK, msg_id, now_ms));
    b.peer_uid.set(peer);
    b.spk_id.set(spk.spk_id);
    b.spk_pub = spk.spk_pub;
    b.spk_sig = *spk.spk_sig;
    if let Some((opk_id, opk_pub)) = opk {
        b.opk_id.set(opk_id);
        b.opk_pub = opk_pub;
        core.mark_prekeys_dirty(peer);
    }
    core.defer(Deferred::Bundle { conn: id, owner: peer, bundle: b });
}

/// A fetch is durable: the requester gets the bundle; an owner left with
/// few one-time prekeys is asked (each of its sessions) to refill.
pub fn handed_out(core: &mut Core, id: ConnId, owner: u64, bundle: &PrekeyBundle, now_ms: u64) {
    core.send(id, bundle);
    let left = core.mail.prekeys.get(owner).map_or(0, |p| p.opks.len());
    if left < REFILL_BELOW {
        let ev = state(core, owner, now_ms);
        core.send_to_user(owner, &ev, None);
    }
}

/// `uid`'s prekey state as the server holds it (an event, msg_id 0).
fn state(core: &Core, uid: u64, now_ms: u64) -> PrekeyState {
    let mut ev = PrekeyState::new(Status::Ok, code::OK, 0, now_ms);
    if let Some(p) = core.mail.prekeys.get(uid) {
        ev.spk_id.set(p.spk_id);
        ev.spk_time.set(p.spk_time);
        // NOTE: at most OPK_MAX (200).
        ev.opk_left.set(u16::try_from(p.opks.len()).unwrap_or(u16::MAX));
    }
    ev.opk_max.set(OPK_MAX as u16);
    ev
}

/// After a login: the session hears its prekey state, to publish what is missing.
pub fn on_login(core: &mut Core, id: ConnId, uid: u64, now_ms: u64) {
    let ev = state(core, uid, now_ms);
    core.send(id, &ev);
}
