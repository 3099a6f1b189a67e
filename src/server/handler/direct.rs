//! Direct messages (DESIGN §7): request, accept, reject, send, acknowledge,
//! delivery at login, expiry.
//!
//! Invariant: the server routes sealed DMs by UID between accepted pairs
//! only, and cannot read them. Every event for a user goes through its
//! durable mailbox first; the sender hears "queued" or "delivered" only
//! after the record is on disk, and a record leaves the mailbox only when
//! the recipient's client acknowledges it.

use crate::opcodes::{
    Class, Contact, DmAccept, DmReject, DmRejected, DmRequest, DmRequested, DmStatus, DmUnsend, MailboxAck,
    ReceiveDmHead, ReceiveDmL, ReceiveDmM, ReceiveDmS, ReceiveDmX, SendDmHead, UserRecord, AMPU, JMPU, RJMU, UNSD,
};
use crate::wire::{code, decode, Classed, Message, Status};
use zerocopy::IntoBytes;

use crate::server::core::{Awaiting, ConnId, Core, Deferred};
use crate::server::session::Authenticated;

/// `Contact.kind`.
const ACCEPTED: u8 = 1;
const LISTED: u8 = 2;
/// `DmStatus.state`.
pub(crate) const QUEUED: u8 = 1;
const DELIVERED: u8 = 2;
const EXPIRED: u8 = 3;
/// Its recipient deleted the account before receiving it.
pub(crate) const RETURNED: u8 = 4;

/// The UID of the user named in `raw`, or an answer 400/404 and None.
fn peer_uid(
    core: &mut Core,
    id: ConnId,
    msg_id: u64,
    opcode: u32,
    raw: Result<&str, crate::wire::WireError>,
    now_ms: u64,
) -> Option<u64> {
    let request = (id, msg_id, opcode);
    let name = super::name_or_400(core, request, raw, crate::account::normalize_username, "invalid user name", now_ms)?;
    let uid = core.accounts.by_name(&name).map(|r| r.uid.get());
    if uid.is_none() {
        core.reply(id, msg_id, opcode, code::NOT_FOUND, "no such user", now_ms);
    }
    uid
}

/// Whether `uid`'s mailbox is at its cap for an event of `len` bytes; if so,
/// answers 508 to request `msg_id` of `id`. Checked before anything is
/// changed or acknowledged, so a refusal leaves no trace. (Expiry notices,
/// made by the server, are not refused: each stands for a DM that left a mailbox.)
fn refuse_if_full(core: &mut Core, id: ConnId, msg_id: u64, opcode: u32, uid: u64, len: usize, now_ms: u64) -> bool {
    let limits = core.limits();
    let fits =
        core.mail.boxes.get(&uid).is_none_or(|b| b.has_room(len, limits.mailbox_max_msgs, limits.mailbox_max_bytes));
    if !fits {
        core.reply(id, msg_id, opcode, code::MAILBOX_FULL, "the recipient's mailbox is full", now_ms);
    }
    !fits
}

/// Stores `event` in `uid`'s mailbox and hands it to `uid`'s sessions now.
pub(crate) fn post(core: &mut Core, uid: u64, event: &[u8], dm: Option<(u64, u64)>, now_ms: u64) -> u64 {
    let mb = core.mail.boxes.entry(uid).or_default();
    let seq = mb.push(event.to_vec(), dm, now_ms);
    core.mark_mail_dirty(uid);
    deliver(core, uid);
    seq
}

/// Mailbox records a session holds unacknowledged at most. A login with a
/// long mailbox gets the first ones; each acknowledgement lets the next one
/// go. Without this a mailbox larger than the output bound (1 MiB, about 700
/// DMs) would close every session of its owner as a slow consumer at login.
pub(crate) const MAIL_WINDOW: usize = 256;

/// Sends each session of `uid` the waiting records it has not had, in order,
/// as far as its window allows.
fn deliver(core: &mut Core, uid: u64) {
    for id in core.sessions_of(uid) {
        let cursor = core.mail_cursor(id);
        let Some(mb) = core.mail.boxes.get(&uid) else { return };
        // Nothing new for this session: no need to count its window (a walk
        // of up to MAIL_WINDOW records, on every acknowledgement).
        if mb.live_after(cursor).next().is_none() {
            continue;
        }
        let room = MAIL_WINDOW.saturating_sub(mb.waiting_upto(cursor));
        let next: Vec<(u64, Vec<u8>)> = mb.live_after(cursor).take(room).map(|(s, r)| (*s, r.event.clone())).collect();
        for (seq, event) in next {
            core.send_bytes(id, &event);
            core.set_mail_cursor(id, seq);
        }
    }
}

fn contact_event(rec: &UserRecord, kind: u8, status: Status, msg_id: u64, now_ms: u64) -> Contact {
    let mut c = Contact::new(status, code::OK, msg_id, now_ms);
    c.kind = kind;
    c.uid = rec.uid;
    let _ = c.set_name(rec.username().unwrap_or_default());
    c.id_pub = rec.id_pub;
    c.enc_pub = rec.enc_pub;
    c.enc_sig = rec.enc_sig;
    c
}

fn name_of(core: &Core, uid: u64) -> String {
    core.accounts.by_uid(uid).and_then(|r| r.username().ok()).unwrap_or_default().to_owned()
}

/// jmpu: record the request and tell the target (now or at its next login).
pub fn request(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<DmRequest>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(peer) = peer_uid(core, id, msg_id, JMPU, m.peer(), now_ms) else { return };
    let me = auth.uid();
    if peer == me {
        return core.reply(id, msg_id, JMPU, code::BAD_REQUEST, "you cannot message yourself", now_ms);
    }
    if core.mail.contacts.accepted(me, peer) {
        // The peer's keys first, so that a client that lost the contact (or
        // another machine of this user) pins it as the answer to its own request.
        if let Some(rec) = core.accounts.by_uid(peer).copied() {
            core.send(id, &contact_event(&rec, LISTED, Status::Pending, msg_id, now_ms));
        }
        return core.reply(id, msg_id, JMPU, code::CONFLICT, "already contacts", now_ms);
    }
    if core.mail.contacts.requested(me, peer) {
        return core.reply(id, msg_id, JMPU, code::CONFLICT, "already requested", now_ms);
    }
    if refuse_if_full(core, id, msg_id, JMPU, peer, size_of::<DmRequested>(), now_ms) {
        return;
    }
    core.mail.contacts.request(me, peer);
    core.mark_contacts_dirty();
    let mut ev = DmRequested::new(Status::Ok, code::OK, 0, now_ms);
    ev.from_uid.set(me);
    let _ = ev.set_from(auth.name());
    post(core, peer, ev.as_bytes(), None, now_ms);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: JMPU, reason: "requested" });
}

/// ampu: accept a pending request; both sides get the other's keys.
pub fn accept(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<DmAccept>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(peer) = peer_uid(core, id, msg_id, AMPU, m.peer(), now_ms) else { return };
    if core.mail.contacts.requested(peer, auth.uid())
        && refuse_if_full(core, id, msg_id, AMPU, peer, size_of::<Contact>(), now_ms)
    {
        return;
    }
    if !core.mail.contacts.accept(peer, auth.uid()) {
        return core.reply(id, msg_id, AMPU, code::NOT_FOUND, "no pending request from that user", now_ms);
    }
    core.mark_contacts_dirty();
    if let Some(me) = core.accounts.by_uid(auth.uid()).copied() {
        let ev = contact_event(&me, ACCEPTED, Status::Ok, 0, now_ms);
        post(core, peer, ev.as_bytes(), None, now_ms);
    }
    core.defer(Deferred::Accepted { conn: id, msg_id, peer });
}

/// An accept is durable: the accepter gets the requester's keys and a 200.
pub fn accepted(core: &mut Core, id: ConnId, msg_id: u64, peer: u64, now_ms: u64) {
    if let Some(rec) = core.accounts.by_uid(peer).copied() {
        core.send(id, &contact_event(&rec, ACCEPTED, Status::Pending, msg_id, now_ms));
    }
    core.reply(id, msg_id, AMPU, code::OK, "accepted", now_ms);
}

/// rjmu: drop a pending request; the requester is told.
pub fn reject(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<DmReject>(frame) else { return };
    let msg_id = m.hdr.msg_id.get();
    let Some(peer) = peer_uid(core, id, msg_id, RJMU, m.peer(), now_ms) else { return };
    if core.mail.contacts.requested(peer, auth.uid())
        && refuse_if_full(core, id, msg_id, RJMU, peer, size_of::<DmRejected>(), now_ms)
    {
        return;
    }
    if !core.mail.contacts.reject(peer, auth.uid()) {
        return core.reply(id, msg_id, RJMU, code::NOT_FOUND, "no pending request from that user", now_ms);
    }
    core.mark_contacts_dirty();
    let mut ev = DmRejected::new(Status::Ok, code::OK, 0, now_ms);
    ev.by_uid.set(auth.uid());
    let _ = ev.set_by(auth.name());
    post(core, peer, ev.as_bytes(), None, now_ms);
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: RJMU, reason: "rejected" });
}

/// smp*: store the DM, as an `rvu*` of the same class, in the recipient's
/// mailbox and deliver it if online.
pub fn send<M: Classed<Head = SendDmHead>>(
    core: &mut Core,
    id: ConnId,
    auth: &Authenticated,
    frame: &[u8],
    now_ms: u64,
) {
    let Ok(m) = decode::<M>(frame) else { return };
    let op = M::OPCODE;
    let (dm_id, peer, me) = (m.header().msg_id.get(), m.head().peer_uid.get(), auth.uid());
    if core.accounts.by_uid(peer).is_none() {
        return core.reply(id, dm_id, op, code::NOT_FOUND, "no such user", now_ms);
    }
    if !core.mail.contacts.accepted(me, peer) {
        return core.reply(id, dm_id, op, code::FORBIDDEN, "no accepted DM channel with this user", now_ms);
    }
    // A resent message (same sender, same id) is stored once; the sender
    // hears its state again. It stores nothing, so it is not counted as chat.
    if let Some(seq) = core.mail.boxes.get(&peer).and_then(|b| b.dm_seq((me, dm_id))) {
        return core.defer(Deferred::DmStored { conn: id, msg_id: dm_id, opcode: op, peer, seq });
    }
    let event = match M::CLASS {
        Class::S => receive::<ReceiveDmS, M>(m, auth, now_ms),
        Class::M => receive::<ReceiveDmM, M>(m, auth, now_ms),
        Class::L => receive::<ReceiveDmL, M>(m, auth, now_ms),
        Class::X => receive::<ReceiveDmX, M>(m, auth, now_ms),
    };
    if refuse_if_full(core, id, dm_id, op, peer, event.len(), now_ms) {
        return;
    }
    if let Err(wait) = core.chat_allowed(me, now_ms) {
        return core.reply_retry(id, dm_id, op, code::RATE_LIMITED, "sending too fast; wait", wait, now_ms);
    }
    let seq = post(core, peer, &event, Some((me, dm_id)), now_ms);
    if core.is_online(peer) {
        let deadline_ms = now_ms + core.limits().deliver_wait_ms;
        core.awaiting.insert((peer, seq), Awaiting { conns: vec![id], msg_id: dm_id, deadline_ms, durable: false });
    }
    core.defer(Deferred::DmStored { conn: id, msg_id: dm_id, opcode: op, peer, seq });
}

/// The `rvu*` (class of `E`, the same as `M`'s) the recipient gets for `m`: the
/// sender stamped by the server, the rest as sent.
fn receive<E: Classed<Head = ReceiveDmHead>, M: Classed<Head = SendDmHead>>(
    m: &M,
    auth: &Authenticated,
    now_ms: u64,
) -> Vec<u8> {
    let (s, mut ev) = (m.head(), E::new(Status::Ok, code::OK, 0, now_ms));
    let h = ev.head_mut();
    h.sender_uid.set(auth.uid());
    let _ = h.set_sender(auth.name());
    h.server_time.set(now_ms);
    h.dm_id = m.header().msg_id;
    h.sent_time = m.header().timestamp;
    h.prekey = s.prekey;
    h.spk_id = s.spk_id;
    h.opk_id = s.opk_id;
    h.ek = s.ek;
    h.dh = s.dh;
    h.pn = s.pn;
    h.n = s.n;
    h.tag = s.tag;
    // NOTE: E and M are of one class (the caller matches on M::CLASS), so the bodies have one size.
    ev.body_mut().copy_from_slice(m.body());
    ev.as_bytes().to_vec()
}

pub(crate) fn status(core: &mut Core, id: ConnId, msg_id: u64, peer: u64, state: u8, now_ms: u64) {
    let name = name_of(core, peer);
    status_named(core, id, msg_id, (peer, &name), state, now_ms);
}

/// As [`status`], for a peer named here (a deleted account's is gone from the accounts).
pub(crate) fn status_named(core: &mut Core, id: ConnId, msg_id: u64, peer: (u64, &str), state: u8, now_ms: u64) {
    let (peer, name) = peer;
    let mut ev = DmStatus::new(Status::Ok, code::OK, msg_id, now_ms);
    ev.dm_id.set(msg_id);
    ev.peer_uid.set(peer);
    let _ = ev.set_peer(name);
    ev.state = state;
    core.send(id, &ev);
}

/// The DM is on disk: delivered if already acknowledged, queued if the
/// recipient is away, otherwise wait (bounded) for the acknowledgement. A
/// resend (same sender and id) waits with the request it repeats, and is
/// answered with it, in its own session.
pub fn stored(core: &mut Core, id: ConnId, msg_id: u64, peer: u64, seq: u64, now_ms: u64) {
    if core.accounts.by_uid(peer).is_none() {
        // The recipient deleted its account meanwhile (`Core::delete_account`).
        return status(core, id, msg_id, peer, RETURNED, now_ms);
    }
    let live = core.mail.boxes.get(&peer).is_some_and(|b| b.is_live(seq));
    match core.awaiting.get_mut(&(peer, seq)) {
        Some(w) if live => {
            w.durable = true;
            if !w.conns.contains(&id) {
                w.conns.push(id);
            }
        }
        _ => {
            let mut conns = core.awaiting.remove(&(peer, seq)).map(|w| w.conns).unwrap_or_default();
            if !conns.contains(&id) {
                conns.push(id);
            }
            for conn in conns {
                status(core, conn, msg_id, peer, if live { QUEUED } else { DELIVERED }, now_ms);
            }
        }
    }
}

/// Tells `sender`, through its mailbox, that DM `dm_id` went back: its
/// recipient `peer` (named `name`) deleted the account before receiving it.
pub(crate) fn returned(core: &mut Core, sender: u64, (peer, name): (u64, &str), dm_id: u64, now_ms: u64) {
    let mut ev = DmStatus::new(Status::Ok, code::OK, 0, now_ms);
    ev.dm_id.set(dm_id);
    ev.peer_uid.set(peer);
    let _ = ev.set_peer(name);
    ev.state = RETURNED;
    post(core, sender, ev.as_bytes(), None, now_ms);
}

/// unsd: withdraw a DM that waits in the recipient's mailbox and was never
/// handed to one of its sessions; the recipient never sees it.
pub fn unsend(core: &mut Core, id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<DmUnsend>(frame) else { return };
    let (msg_id, peer, dm_id) = (m.hdr.msg_id.get(), m.peer_uid.get(), m.dm_id.get());
    const GONE: &str = "not waiting: delivered, expired, withdrawn or unknown";
    let seq = core.mail.boxes.get(&peer).and_then(|b| b.dm_seq((auth.uid(), dm_id)).filter(|s| b.is_live(*s)));
    let Some(seq) = seq else {
        return core.reply(id, msg_id, UNSD, code::NOT_FOUND, GONE, now_ms);
    };
    if core.sessions_of(peer).into_iter().any(|c| core.mail_cursor(c) >= seq) {
        return core.reply(id, msg_id, UNSD, code::CONFLICT, "already delivered to the recipient's client", now_ms);
    }
    // Its own answer (delivered, queued) is still to come: withdrawing now
    // would leave the sender told "delivered" for a DM nobody got.
    if core.dm_unanswered(peer, seq) {
        return core.reply(
            id,
            msg_id,
            UNSD,
            code::CONFLICT,
            "not yet stored: wait for its answer, then try again",
            now_ms,
        );
    }
    let Some(mb) = core.mail.boxes.get_mut(&peer) else { return };
    mb.ack(seq, now_ms);
    core.mark_mail_dirty(peer);
    core.awaiting.remove(&(peer, seq));
    core.defer(Deferred::Reply { conn: id, msg_id, opcode: UNSD, reason: "withdrawn" });
}

/// dack: the client has the event; it leaves the mailbox.
pub fn ack(core: &mut Core, _id: ConnId, auth: &Authenticated, frame: &[u8], now_ms: u64) {
    let Ok(m) = decode::<MailboxAck>(frame) else { return };
    let (uid, seq) = (auth.uid(), m.seq.get());
    let Some(mb) = core.mail.boxes.get_mut(&uid) else { return };
    let Some(rec) = mb.ack(seq, now_ms) else { return };
    core.mark_mail_dirty(uid);
    deliver(core, uid);
    match core.awaiting.remove(&(uid, seq)) {
        Some(w) if w.durable => {
            for conn in &w.conns {
                status(core, *conn, w.msg_id, uid, DELIVERED, now_ms);
            }
        }
        // Not on disk yet: `stored` answers "delivered" once it is.
        Some(w) => {
            core.awaiting.insert((uid, seq), w);
        }
        // The sender heard "queued": now it hears "delivered", through its mailbox.
        None => {
            if let Some((sender, dm_id)) = rec.dm {
                let mut ev = DmStatus::new(Status::Ok, code::OK, 0, now_ms);
                ev.dm_id.set(dm_id);
                ev.peer_uid.set(uid);
                let _ = ev.set_peer(&name_of(core, uid));
                ev.state = DELIVERED;
                post(core, sender, ev.as_bytes(), None, now_ms);
            }
        }
    }
}

/// After a login: the contacts with their current keys, then the mailbox in order.
pub fn on_login(core: &mut Core, id: ConnId, uid: u64, now_ms: u64) {
    for peer in core.mail.contacts.of(uid) {
        if let Some(rec) = core.accounts.by_uid(peer).copied() {
            core.send(id, &contact_event(&rec, LISTED, Status::Ok, 0, now_ms));
        }
    }
    // The mailbox in order, a window at a time (see MAIL_WINDOW); a new
    // session's cursor starts at the beginning.
    deliver(core, uid);
}

/// Answers senders whose recipient did not acknowledge in time, and expires old records.
pub fn handle_timeout(core: &mut Core, now_ms: u64) {
    let late: Vec<(u64, u64)> =
        core.awaiting.iter().filter(|(_, w)| w.durable && w.deadline_ms <= now_ms).map(|(k, _)| *k).collect();
    for key in late {
        if let Some(w) = core.awaiting.remove(&key) {
            for conn in &w.conns {
                status(core, *conn, w.msg_id, key.0, QUEUED, now_ms);
            }
        }
    }
    let cutoff = now_ms.saturating_sub(core.limits().queue_ttl_ms);
    let owners: Vec<u64> = core.mail.boxes.iter().filter(|(_, b)| b.has_expired(cutoff)).map(|(u, _)| *u).collect();
    for uid in owners {
        let Some(mb) = core.mail.boxes.get_mut(&uid) else { continue };
        let mut notices = Vec::new();
        for seq in mb.expired(cutoff) {
            if let Some(rec) = mb.ack(seq, now_ms) {
                notices.extend(rec.dm.map(|(sender, dm_id)| (sender, dm_id, seq)));
            }
        }
        core.mark_mail_dirty(uid);
        for (sender, dm_id, seq) in notices {
            core.awaiting.remove(&(uid, seq));
            let mut ev = DmStatus::new(Status::Ok, code::OK, 0, now_ms);
            ev.dm_id.set(dm_id);
            ev.peer_uid.set(uid);
            let _ = ev.set_peer(&name_of(core, uid));
            ev.state = EXPIRED;
            post(core, sender, ev.as_bytes(), None, now_ms);
        }
    }
}
