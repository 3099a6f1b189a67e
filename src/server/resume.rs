//! Session resumption, the server's side (PROTOCOL.md §3, resumption), a
//! part of the core: a ResumeHello checked, its ticket opened and its
//! policy applied in the loop (no RSA, no argon2id: it is served before the
//! full handshakes and logins queued on the workers), the ticket's id struck
//! and the answer sent once that is durable; tickets issued; revocations.
//!
//! Invariants: every refusal is the same unauthenticated `REFUSED` answer
//! (its reason goes to the log at info, a replay at warn; never the ticket
//! or a secret); a ticket is answered only after its id is durable in the
//! strike register, and the policy is checked again then (a ban, a
//! revocation or the session limit reached meanwhile refuses it); a resumed
//! session is `Authenticated` as a full login makes it, through the same
//! function.

use super::{ConnId, Core, Deferred, Phase};
use crate::handshake::SessionKeys;
use crate::opcodes::ResumptionTicket;
use crate::record;
use crate::server::acct::State;
use crate::server::relay;
use crate::server::remote::{self, Out};
use crate::server::session::Session;
use crate::server::tickets::Refusal;
use crate::ticket::{self, ResumeVerdict, TicketContents};
use crate::wire::{code, Message, Status};

/// An accepted resumption waiting for its strike to be durable (on an
/// edge: for the writer's answer, DESIGN §8 "Edges").
pub(crate) struct Resuming {
    /// The framed ServerResume and the resumed session's keys; None on the
    /// writer for a relayed connection, whose edge holds them.
    pub(super) answer: Option<(Vec<u8>, SessionKeys)>,
    /// The account, and its ticket generation when the ticket was checked.
    pub(super) uid: u64,
    pub(super) generation: u64,
}

impl Core {
    /// A ResumeHello as the first frame of `id`.
    pub(super) fn handle_resume_hello(&mut self, id: ConnId, body: Vec<u8>, now_ms: u64) {
        match ticket::check_resume_hello(&self.cfg, &body) {
            ResumeVerdict::Check => {}
            // Not one of our binaries: no answer (DESIGN §4).
            ResumeVerdict::Drop => return self.close(id, "bad resume hello"),
            ResumeVerdict::Mismatch => {
                self.send_raw(id, ticket::refusal(&self.cfg, ticket::MISMATCH));
                return self.close(id, "protocol mismatch");
            }
        }
        if self.edge.is_some() {
            return self.edge_resume_hello(id, &body);
        }
        let contents = match self.resume_policy(&body, now_ms) {
            Ok(c) => c,
            Err((why, uid)) => return self.refuse_resumption(id, why, uid),
        };
        let (frame, keys) = match ticket::server_resume(&self.cfg, &body, &contents.secret) {
            Ok(answer) => answer,
            Err(_) => return self.refuse_resumption(id, Refusal::BadKey, Some(contents.uid)),
        };
        let uid = contents.uid;
        if !self.tickets.strike(contents.ticket_id, uid, contents.expires_ms, now_ms) {
            return self.refuse_resumption(id, Refusal::Full, Some(uid));
        }
        let generation = contents.generation;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.phase = Phase::Resuming(Box::new(Resuming { answer: Some((frame, keys)), uid, generation }));
        // No frame is processed until the answer went out.
        conn.busy = true;
        self.defer(Deferred::Resumed { conn: id });
    }

    /// The checks of PROTOCOL §3 ("Resumption"), in its order; the opened
    /// ticket, or why not (with the account when the ticket opened).
    fn resume_policy(&mut self, body: &[u8], now_ms: u64) -> Result<TicketContents, (Refusal, Option<u64>)> {
        let t = self.open_hello_ticket(body)?;
        let held = relay::Ticket {
            uid: t.uid,
            issued_ms: t.issued_ms,
            expires_ms: t.expires_ms,
            generation: t.generation,
            ticket_id: t.ticket_id,
        };
        self.ticket_policy(&held, now_ms).map_err(|why| (why, Some(t.uid)))?;
        Ok(t)
    }

    /// The ticket of ResumeHello `body`, opened, its binder verified (the
    /// part of the checks that needs the ticket keys: an edge's too).
    pub(super) fn open_hello_ticket(&self, body: &[u8]) -> Result<TicketContents, (Refusal, Option<u64>)> {
        if !self.limits.resume || !self.tickets.is_loaded() {
            return Err((Refusal::Off, None));
        }
        ticket::hello_ticket(body)
            .and_then(|t| ticket::open_ticket(self.tickets.keys(), t))
            .filter(|t| ticket::binder_verifies(body, &t.secret))
            .ok_or((Refusal::Unopened, None))
    }

    /// The rest of the checks, on an opened ticket (the writer's, for its
    /// own connections and for an edge's).
    pub(super) fn ticket_policy(&mut self, t: &relay::Ticket, now_ms: u64) -> Result<(), Refusal> {
        // A shorter TTL set since the ticket was issued applies to it too.
        let expires = t.expires_ms.min(t.issued_ms.saturating_add(self.limits.ticket_ttl_ms));
        if expires <= now_ms {
            return Err(Refusal::Expired);
        }
        self.resumable(t.uid, t.generation, Some(t.issued_ms))?;
        if self.tickets.is_used(&t.ticket_id) {
            return Err(Refusal::Replayed);
        }
        self.may_log_in(t.uid, now_ms)
    }

    /// The account exists (and was made before the ticket, when its issue is
    /// given) and its ticket generation is still `generation`.
    fn resumable(&self, uid: u64, generation: u64, issued_ms: Option<u64>) -> Result<(), Refusal> {
        let rec = self.accounts.by_uid(uid).ok_or(Refusal::NoAccount)?;
        if issued_ms.is_some_and(|issued| issued < rec.created.get()) {
            return Err(Refusal::NoAccount);
        }
        if self.tickets.generation(uid) != generation {
            return Err(Refusal::Revoked);
        }
        Ok(())
    }

    /// The account is active and below its session limit.
    fn may_log_in(&mut self, uid: u64, now_ms: u64) -> Result<(), Refusal> {
        // A state whose end passed lifts here, for good (as at a login).
        if self.accounts.acct_mut(uid).expire(now_ms) {
            self.mark_acct_dirty(uid);
        }
        if self.accounts.acct(uid).state != State::Active {
            return Err(Refusal::NotActive);
        }
        if self.sessions_of(uid).len() >= self.limits.sessions_per_user {
            return Err(Refusal::SessionLimit);
        }
        Ok(())
    }

    /// Answers `REFUSED` and closes: the client falls back to a full
    /// handshake and login.
    pub(super) fn refuse_resumption(&mut self, id: ConnId, why: Refusal, uid: Option<u64>) {
        let whose = uid.map(|u| format!(" for uid {u:016x}")).unwrap_or_default();
        if why == Refusal::Replayed {
            crate::log!(Warn, "conn {id}: replayed resumption ticket{whose}: refused");
        } else {
            crate::log!(Info, "conn {id}: {}{whose}", why.as_str());
        }
        self.count(why.as_str());
        if self.edge.is_none() && self.is_relayed(id) {
            // Its edge answers the client (DESIGN §8 "Edges").
            self.relay_item(id, relay::Item::Resumed { conn: id, ok: false });
        } else {
            self.send_raw(id, ticket::refusal(&self.cfg, ticket::REFUSED));
        }
        self.close(id, "resumption refused");
    }

    /// Bytes as they are, before any record (the resumption's answers).
    pub(super) fn send_raw(&mut self, id: ConnId, bytes: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&id) {
            remote::raw(super::loop_box(&mut self.outbox, self.loops), id, &mut c.out, &mut c.queued, bytes);
        }
        self.touch(id);
    }

    /// The strike of `id`'s ticket is durable (`ok`), or could not be made so.
    pub(super) fn resumed(&mut self, id: ConnId, ok: bool, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let Phase::Resuming(_) = conn.phase else { return };
        if conn.close.is_some() {
            // Timed out or gone meanwhile: nothing to answer.
            conn.busy = false;
            return;
        }
        let Phase::Resuming(r) = std::mem::replace(&mut conn.phase, Phase::Handshaking) else { return };
        let Resuming { answer, uid, generation } = *r;
        // Again: what changed while the strike went to disk counts.
        let checked = if ok {
            self.resumable(uid, generation, None).and_then(|()| self.may_log_in(uid, now_ms))
        } else {
            Err(Refusal::Storage)
        };
        if let Err(why) = checked {
            if let Some(c) = self.conns.get_mut(&id) {
                c.busy = false;
            }
            return self.refuse_resumption(id, why, Some(uid));
        }
        let Some(c) = self.conns.get_mut(&id) else { return };
        let Some((frame, keys)) = answer else {
            // A relayed connection: its edge answers and holds the keys.
            c.phase = Phase::Open { opener: None, sealer: None, session: Session::AwaitLogin };
            c.busy = false;
            self.relay_item(id, relay::Item::Resumed { conn: id, ok: true });
            crate::server::handler::account::resumed_login(self, id, uid, now_ms);
            self.pump(id, now_ms);
            self.touch(id);
            return;
        };
        c.busy = false;
        self.open_resumed(id, frame, keys);
        crate::server::handler::account::resumed_login(self, id, uid, now_ms);
        self.pump(id, now_ms);
        self.touch(id);
    }

    /// Sends `id` the ServerResume `frame` and opens its record layer with
    /// the resumed session's `keys` (with output loops, its sealer goes to
    /// its loop); its session waits for the login that follows.
    pub(super) fn open_resumed(&mut self, id: ConnId, frame: Vec<u8>, keys: SessionKeys) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let SessionKeys { sealer, opener, resumption } = keys;
        remote::raw(super::loop_box(&mut self.outbox, self.loops), id, &mut c.out, &mut c.queued, frame);
        let sealer = match super::loop_box(&mut self.outbox, self.loops) {
            Some(outbox) => {
                outbox.push(Out::Keys { conn: id, sealer: Box::new(sealer) });
                None
            }
            None => Some(sealer),
        };
        c.resumption = Some(resumption);
        c.deframer.set_max_body(record::MAX_BODY);
        c.phase = Phase::Open { opener: Some(opener), sealer, session: Session::AwaitLogin };
    }

    /// Sends `id` (logged in as `uid`) a fresh ticket (`tick`, msg_id 0),
    /// unless resumption is off or no key is durable yet.
    pub(crate) fn issue_ticket(&mut self, id: ConnId, uid: u64, now_ms: u64) {
        if !self.limits.resume || !self.tickets.is_loaded() {
            return;
        }
        let Some(key) = self.tickets.sealing_key() else { return };
        let ticket_id: [u8; 16] = crate::crypto::random();
        let expires_ms = now_ms.saturating_add(self.limits.ticket_ttl_ms);
        if self.edge.is_none() && self.is_relayed(id) {
            // Its edge holds the session's resumption secret and seals the
            // ticket under the same keys (DESIGN §8 "Edges").
            let generation = self.tickets.generation(uid);
            let ticket = relay::Ticket { uid, issued_ms: now_ms, expires_ms, generation, ticket_id };
            return self.relay_item(id, relay::Item::Ticket { conn: id, ticket });
        }
        let Some(master) = self.conns.get(&id).and_then(|c| c.resumption.as_ref()) else { return };
        let contents = TicketContents {
            uid,
            issued_ms: now_ms,
            expires_ms,
            generation: self.tickets.generation(uid),
            ticket_id,
            secret: master.ticket_secret(&ticket_id),
        };
        let mut m = ResumptionTicket::new(Status::Ok, code::OK, 0, now_ms);
        m.ticket_id = ticket_id;
        m.expires.set(expires_ms);
        m.ticket = key.seal(&contents);
        self.send(id, &m);
    }

    /// Revokes every ticket of `uid` (its generation goes up, journaled
    /// with the next commit: acknowledge what caused it with a deferred answer).
    pub(crate) fn revoke_tickets(&mut self, uid: u64, why: &str) {
        if !self.tickets.is_loaded() {
            return;
        }
        let g = self.tickets.revoke(uid);
        crate::log!(Info, "uid {uid:016x}: resumption tickets revoked ({why}); generation {g}");
    }
}
