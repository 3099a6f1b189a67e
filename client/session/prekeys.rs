//! Forward-secret DMs, the client's side of PROTOCOL.md §7: this user's
//! prekeys (published when the server's state says so), a contact's bundle
//! and the X3DH start, and sealing and opening with the Double Ratchet.
//!
//! Invariant: a bundle is used only when its signed prekey verifies with the
//! contact's pinned identity key; a session is made only with the contact's
//! pinned encryption key as its identity key; every message's MAC covers the
//! session's associated data, the wire context and the X3DH fields
//! (`dm::ad`). A one-time prekey secret is deleted when a session was made
//! with it. The sessions file is saved before a sealed message leaves and
//! after an opened one is recorded (see `ratchets`).

use sotto::account;
use sotto::crypto::Invalid;
use sotto::dm::{self, Context, Prekey};
use sotto::identity;
use sotto::opcodes::{
    PrekeyBundle, PrekeyFetch, PrekeyState, PrekeyUpload, ReceiveDmHead, SendDmHead, StatusReply, SMPS,
};
use sotto::ratchet::{Header, Ratchet};
use sotto::wire::{self, code, Message, Status};
use sotto::x3dh::{self, Bundle};
use zerocopy::FromZeros;

use super::direct::Pending;
use super::{deadline, refused, Event, Failure, Frame, InFlight, Session};
use crate::outbox::Waiting;
use crate::ratchets::{PeerSession, Sessions, OPK_BATCH, OPK_LOW, SPK_ROTATE_MS};

/// A direct message as received (`rvu*` of any class): the family's fields and the body.
#[derive(Clone)]
pub(super) struct DmMsg {
    pub(super) head: ReceiveDmHead,
    pub(super) body: Vec<u8>,
}

/// The X3DH fields of a received message, when it starts a session.
fn prekey_of(h: &ReceiveDmHead) -> Option<Prekey> {
    (h.prekey == 1).then(|| Prekey { spk_id: h.spk_id.get(), opk_id: h.opk_id.get(), ek: h.ek })
}

/// Opens `m` from `uid` with a session of `sessions`, or makes the session
/// its X3DH fields start. `Ok(None)`: no session opens it (nothing changed).
pub(super) fn open(
    sessions: &mut Sessions,
    me: (u64, &[u8; 32]),
    peer: (u64, &[u8; 32]),
    m: &DmMsg,
    burn_only: bool,
) -> Result<Option<String>, Invalid> {
    let (my_uid, my_secret) = me;
    let (uid, peer_ik) = peer;
    let h = &m.head;
    let ctx = Context { sender_uid: uid, recipient_uid: my_uid, dm_id: h.dm_id.get(), sent_time: h.sent_time.get() };
    let header = Header { dh: h.dh, pn: h.pn.get(), n: h.n.get() };
    let prekey = prekey_of(h);
    // A session this side has: any for a plain message; for a prekey
    // message, the one its X3DH fields made (the initiator resends them
    // until it hears back).
    let mut opened = None;
    if let Some(list) = sessions.with_mut(uid) {
        for (i, s) in list.iter_mut().enumerate() {
            if prekey.is_some_and(|p| s.initiator || s.prekey != p) {
                continue;
            }
            let ad = dm::ad(&s.ad, &ctx, prekey.as_ref());
            if let Ok(b) = s.ratchet.open(&header, &m.body, &h.tag, &ad) {
                opened = Some((i, b));
                break;
            }
        }
    }
    if let Some((i, b)) = opened {
        sessions.promote(uid, i);
        return crate::transfer::payload_text(&b).map(Some);
    }
    let Some(p) = prekey else { return Ok(None) };
    if burn_only || sessions.with(uid).iter().any(|s| !s.initiator && s.prekey == p) {
        return Ok(None);
    }
    // A new session: the responder's half of X3DH.
    let spk = sessions.spk_secret(p.spk_id).ok_or(Invalid)?.clone();
    let opk = match p.opk_id {
        0 => None,
        id => Some(sessions.opk_secret(id).ok_or(Invalid)?.clone()),
    };
    let my_ik = x3dh::public_key(my_secret);
    let sad = x3dh::session_ad(&account::deployment_id(), uid, peer_ik, my_uid, &my_ik);
    let sk = x3dh::respond(my_secret, &spk, opk.as_deref(), peer_ik, &p.ek, &sad)?;
    let mut ratchet = Ratchet::responder(&sk, &spk);
    let b = ratchet.open(&header, &m.body, &h.tag, &dm::ad(&sad, &ctx, Some(&p)))?;
    let text = crate::transfer::payload_text(&b)?;
    if p.opk_id != 0 {
        sessions.spend_opk(p.opk_id);
    }
    sessions.add(uid, PeerSession { ratchet, ad: sad, initiator: false, prekey: p });
    Ok(Some(text))
}

/// Seals `text` as message `dm_id` of time `now_ms` to `uid` with the most
/// recently used session (there is one).
pub(super) fn seal(
    sessions: &mut Sessions,
    my_uid: u64,
    uid: u64,
    text: &str,
    dm_id: u64,
    now_ms: u64,
) -> Result<Frame, String> {
    let (_, body) = crate::transfer::payload_body(text).map_err(|e| e.to_string())?;
    let s = sessions.with_mut(uid).and_then(|l| l.first_mut()).ok_or("no session")?;
    let ctx = Context { sender_uid: my_uid, recipient_uid: uid, dm_id, sent_time: now_ms };
    // The initiator repeats the X3DH fields until the peer has answered.
    let prekey = (s.initiator && !s.ratchet.received_any()).then_some(s.prekey);
    let ad = dm::ad(&s.ad, &ctx, prekey.as_ref());
    let sealed = s.ratchet.seal(&body, &ad).map_err(|e| e.to_string())?;
    sessions.touch();
    let mut head = SendDmHead::new_zeroed();
    head.peer_uid.set(uid);
    if let Some(p) = prekey {
        head.prekey = 1;
        head.spk_id.set(p.spk_id);
        head.opk_id.set(p.opk_id);
        head.ek = p.ek;
    }
    head.dh = sealed.header.dh;
    head.pn.set(sealed.header.pn);
    head.n.set(sealed.header.n);
    head.tag = sealed.tag;
    let bytes = wire::encode_classed(SMPS, dm_id, now_ms, &head, &sealed.ciphertext).map_err(|e| e.to_string())?;
    Ok(Frame { id: dm_id, bytes })
}

impl Session {
    /// Asks for `peer`'s bundle (pkgt) to start a session; message `dm_id`
    /// (kept in the outbox as typed) is sealed and sent once it is here.
    pub(super) fn fetch_bundle(&mut self, peer: String, uid: u64, dm_id: u64, now_ms: u64) {
        let id = self.take_id();
        let mut m = PrekeyFetch::request(id, now_ms);
        m.peer_uid.set(uid);
        self.queue(&mut m);
        let what = super::Pending::Dm(Pending::Bundle { peer, uid, dm_id });
        self.in_flight = Some(InFlight { id, deadline_ms: deadline(now_ms), what });
    }

    /// `pkbd`: the bundle asked for; verified with the pinned identity key,
    /// then X3DH, a new session, and the waiting message sealed and sent.
    pub(super) fn handle_bundle(&mut self, m: &PrekeyBundle, ours: bool, now_ms: u64) -> Option<Event> {
        if !ours {
            return Some(Event::Notice("ignoring a pkbd (prekey bundle) for no pending message".into()));
        }
        let f = self.in_flight.take()?;
        let super::Pending::Dm(Pending::Bundle { peer, uid, dm_id }) = f.what else {
            return Some(Event::Failed(Failure::new(
                f.what.cmd(),
                0,
                "unexpected pkbd (prekey bundle) from the server",
            )));
        };
        let me = self.me.as_mut()?;
        let Some(contact) = me.dm.contacts.get(&peer).filter(|c| c.uid == uid && c.trusted) else {
            return self.drop_first(dm_id, format!("{peer} is no longer a trusted contact: message not sent"));
        };
        let Some(secret) = me.dm.enc_secret.clone() else {
            return self.drop_first(dm_id, "no encryption key on this machine".into());
        };
        let (ik, spk_id, spk_pub) = (contact.keys.enc_pub, m.spk_id.get(), m.spk_pub);
        let binding = x3dh::spk_binding(&account::deployment_id(), uid, spk_id, &spk_pub);
        let signed =
            identity::from_modulus(&contact.keys.id_pub).is_ok_and(|k| identity::verify(&k, &binding, &m.spk_sig));
        if m.peer_uid.get() != uid || !signed {
            return self.drop_first(dm_id, format!(
                "the prekey the server sent for {peer} is not signed by {peer}'s pinned identity key: not used, message not sent"
            ));
        }
        let opk = (m.opk_id.get() != 0).then_some((m.opk_id.get(), m.opk_pub));
        let bundle = Bundle { ik, spk_id, spk: spk_pub, opk };
        let my_ik = x3dh::public_key(&secret);
        let sad = x3dh::session_ad(&account::deployment_id(), me.uid, &my_ik, uid, &ik);
        let started = x3dh::initiate(&secret, &bundle, &sad)
            .and_then(|i| Ratchet::initiator(&i.sk, &spk_pub).map(|r| (r, i.ek_pub)));
        let Ok((ratchet, ek)) = started else {
            return self
                .drop_first(dm_id, format!("the prekeys the server sent for {peer} are invalid: message not sent"));
        };
        let prekey = Prekey { spk_id, opk_id: m.opk_id.get(), ek };
        me.dm.sessions.add(uid, PeerSession { ratchet, ad: sad, initiator: true, prekey });
        let (text, ts) = match me.dm.outbox.get(dm_id).map(|e| &e.body) {
            Some(Waiting::Text { text, ts, .. }) => (text.clone(), *ts),
            _ => return None,
        };
        match self.send_sealed(&peer, uid, &text, (dm_id, ts), now_ms) {
            Ok(()) => None,
            Err(f) => Some(Event::Failed(f)),
        }
    }

    /// A first message whose bundle cannot be used: it leaves the outbox (not
    /// sent, as the failure says; kept, it would go after the next login,
    /// behind what was typed since).
    fn drop_first(&mut self, dm_id: u64, why: String) -> Option<Event> {
        if let Some(me) = self.me.as_mut() {
            me.dm.outbox.remove(dm_id);
        }
        Some(Event::Failed(Failure::new("msg", 0, why)))
    }

    /// `pkst`: the server's prekey state (after login, or a refill request):
    /// a new signed prekey once a week or when the server has another, and
    /// one-time prekeys up to [`OPK_BATCH`] when fewer than [`OPK_LOW`] are left.
    pub(super) fn handle_prekey_state(&mut self, m: &PrekeyState, now_ms: u64) -> Option<Event> {
        let me = self.me.as_mut()?;
        if me.dm.enc_secret.is_none() || me.dm.readonly || me.dm.prekey_upload.is_some() {
            return None;
        }
        me.signer.as_ref()?;
        let sessions = &mut me.dm.sessions;
        sessions.expire(now_ms);
        let server_spk = m.spk_id.get();
        let current = sessions.current_spk().map(|s| (s.id, s.created_ms));
        let spk = match current {
            Some((id, made)) if id == server_spk && now_ms.saturating_sub(made) < SPK_ROTATE_MS => None,
            // Published before the server stored it (an upload lost in a crash): again.
            Some((id, made)) if id > server_spk && now_ms.saturating_sub(made) < SPK_ROTATE_MS => {
                sessions.spk_secret(id).map(|s| (id, x3dh::public_key(s)))
            }
            _ => Some(sessions.rotate_spk(now_ms)),
        };
        let left = m.opk_left.get();
        let want = if spk.is_some() || left < OPK_LOW { OPK_BATCH.saturating_sub(usize::from(left)) } else { 0 };
        let want = want.min(usize::from(m.opk_max.get()).saturating_sub(usize::from(left)));
        if spk.is_none() && want == 0 {
            return None;
        }
        let opks = sessions.new_opks(want);
        let id = self.take_id();
        let mut up = PrekeyUpload::request(id, now_ms);
        let me = self.me.as_mut()?;
        if let Some((spk_id, spk_pub)) = spk {
            let binding = x3dh::spk_binding(&account::deployment_id(), me.uid, spk_id, &spk_pub);
            let Some(Ok(sig)) = me.signer.as_ref().map(|s| s.sign(&binding)) else {
                return Some(Event::Warning("the new signed prekey could not be signed; not published".into()));
            };
            up.spk_id.set(spk_id);
            up.spk_pub = spk_pub;
            up.spk_sig = sig;
        }
        up.opk_count = opks.len() as u8;
        for (slot, (opk_id, public)) in up.opks.chunks_exact_mut(36).zip(&opks) {
            slot[..4].copy_from_slice(&opk_id.to_be_bytes());
            slot[4..].copy_from_slice(public);
        }
        me.dm.prekey_upload = Some(id);
        // The secrets are saved before this leaves (App::flush persists first).
        self.queue(&mut up);
        None
    }

    /// Whether `id` is the prekey upload in flight (it is answered beside any request).
    pub(super) fn is_prekey_upload(&self, id: u64) -> bool {
        self.me.as_ref().is_some_and(|me| id != 0 && me.dm.prekey_upload == Some(id))
    }

    /// The answer to the prekey upload.
    pub(super) fn complete_prekey_upload(&mut self, r: &StatusReply) -> Option<Event> {
        let me = self.me.as_mut()?;
        me.dm.prekey_upload = None;
        let ok = r.hdr.code.get() == code::OK && matches!(Status::from_u8(r.hdr.status), Some(Status::Ok));
        (!ok).then(|| {
            let f = refused("prekeys", r);
            Event::Warning(format!(
                "the server refused this client's prekeys ({} {}): contacts cannot start new DM sessions with you until the next login",
                f.code, f.message
            ))
        })
    }
}

/// Refuses DMs when the sessions cannot be saved (no key reused after a crash).
pub(super) fn readonly() -> Failure {
    Failure::new(
        "msg",
        503,
        "direct messages cannot be sent this session: the DM files could not be opened or saved (see the warnings)",
    )
}

#[cfg(test)]
#[path = "prekeys_tests.rs"]
mod tests;
