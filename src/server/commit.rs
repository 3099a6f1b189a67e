//! The core's commits (DESIGN §8, group commit): what changed in a loop turn
//! goes to the disk thread as one job, and the answers that wait for it are
//! sent once it is durable, or 503 or 507 when it failed.
//!
//! Invariant: nothing is acknowledged before the commit that made it durable
//! finished; while one commit is on its way the next accumulates, and a
//! failed one leaves its changes to be written again from memory.

use super::{not_durable, ConnId, Core};
use crate::opcodes::StatusReply;
use crate::record;
use crate::server::files::FilesInflight;
use crate::server::store::{Change, ContactsWrite};
use crate::server::worker::Job;
use crate::wire::code;

/// A status reply as sealed on the wire: what most answers waiting for a
/// commit cost when it lands (they all come out at once).
pub(super) const ANSWER_WIRE: usize = record::sealed_len(core::mem::size_of::<StatusReply>());

/// What to send once a commit is durable (DESIGN §8: nothing is acknowledged
/// before it is on disk).
pub(crate) enum Deferred {
    /// A status reply.
    Reply { conn: ConnId, msg_id: u64, opcode: u32, reason: &'static str },
    /// The answer to a join: members, status, history.
    Joined { conn: ConnId, msg_id: u64, room: String },
    /// A DM is durable: tell the sender delivered, queued, or wait for the recipient's ack.
    DmStored { conn: ConnId, msg_id: u64, opcode: u32, peer: u64, seq: u64 },
    /// An accept is durable: the accepter gets the requester's keys.
    Accepted { conn: ConnId, msg_id: u64, peer: u64 },
    /// A fetch's one-time prekey left the owner's file: the bundle may go.
    Bundle { conn: ConnId, owner: u64, bundle: Box<crate::opcodes::PrekeyBundle> },
    /// An offer's record is durable: flin with what is stored.
    Offer { conn: ConnId, msg_id: u64, file_id: u64 },
    /// A chunk was written: 200 if it counts (same epoch, now durable).
    Chunk { conn: ConnId, msg_id: u64, file_id: u64, index: u32, epoch: u32 },
    /// An admin request's change is durable: its answer (`arep`) goes to the admin connection.
    Admin { conn: ConnId, reply: Box<crate::opcodes::AdminReply> },
    /// An account deletion is durable: answer, then let the connection close.
    AccountDeleted { conn: ConnId, msg_id: u64 },
    /// An account deletion is durable: a sender waiting for the answer to
    /// its DM (`msg_id`) to the deleted account hears that it was returned.
    Returned { conn: ConnId, msg_id: u64, peer: u64, name: String },
    /// A resumption's strike is durable: answer it.
    Resumed { conn: ConnId },
    /// A revocation is durable: the status reply, then a fresh ticket.
    Revoked { conn: ConnId, msg_id: u64, opcode: u32, reason: &'static str },
    /// A password change's revocation is durable: store the new secrets.
    SecretsRevoked { conn: ConnId, msg_id: u64, record: Box<crate::opcodes::UserRecord> },
    /// A password change's new secrets are durable: 200, then a fresh
    /// ticket; when that commit fails, the `old` record comes back in memory
    /// (in place of `new`, if still there), so that 507 means unchanged.
    SecretsStored {
        conn: ConnId,
        msg_id: u64,
        old: Box<crate::opcodes::UserRecord>,
        new: Box<crate::opcodes::UserRecord>,
    },
}

impl Deferred {
    /// The connection the answer goes to.
    fn conn(&self) -> ConnId {
        match self {
            Deferred::Reply { conn, .. }
            | Deferred::Joined { conn, .. }
            | Deferred::DmStored { conn, .. }
            | Deferred::Accepted { conn, .. }
            | Deferred::Bundle { conn, .. }
            | Deferred::Offer { conn, .. }
            | Deferred::Chunk { conn, .. }
            | Deferred::Admin { conn, .. }
            | Deferred::AccountDeleted { conn, .. }
            | Deferred::Returned { conn, .. }
            | Deferred::Resumed { conn }
            | Deferred::Revoked { conn, .. }
            | Deferred::SecretsRevoked { conn, .. }
            | Deferred::SecretsStored { conn, .. } => *conn,
        }
    }
}

/// A commit on its way to disk.
pub(super) struct Inflight {
    /// The rooms it writes, with how many messages each had then.
    pub(super) rooms: Vec<(String, u64)>,
    /// The users whose prekey files it writes.
    pub(super) prekeys: Vec<u64>,
    /// The contact pairs it writes (lower UID, higher UID).
    pub(super) contacts: Vec<(u64, u64)>,
    /// The answers waiting for it.
    pub(super) answers: Vec<Deferred>,
    /// What it writes of the files.
    pub(super) files: FilesInflight,
    /// The accounts whose operator state it writes.
    pub(super) accts: Vec<u64>,
    /// Whether it writes the announcements.
    pub(super) announcements: bool,
    /// The accounts whose records it deletes, and whether it writes the retired names.
    pub(super) users: Vec<u64>,
    pub(super) retired: bool,
    /// The accounts whose records (new secrets) it writes.
    pub(super) records: Vec<u64>,
    /// The newest ticket key in the key file it writes, and whether it writes the journal.
    pub(super) ticket_keys: Option<u64>,
    pub(super) tickets: bool,
}

impl Core {
    /// A revocation (and what went with it) is durable: 200, then a fresh
    /// ticket for the session.
    fn defer_revoked_answer(&mut self, conn: ConnId, msg_id: u64, opcode: u32, reason: &str, now_ms: u64) {
        self.reply(conn, msg_id, opcode, code::OK, reason, now_ms);
        if let Some(uid) = self.session_uid(conn) {
            self.issue_ticket(conn, uid, now_ms);
        }
    }

    /// Queues an answer for after this turn's commit is durable.
    pub(crate) fn defer(&mut self, d: Deferred) {
        if let Some(c) = self.conns.get_mut(&d.conn()) {
            c.answers = c.answers.saturating_add(1);
        }
        self.deferred.push(d);
    }

    /// Whether the sender of mailbox record `seq` of `peer` (a DM) has not
    /// yet heard that it is stored: its commit is pending or on its way.
    pub(crate) fn dm_unanswered(&self, peer: u64, seq: u64) -> bool {
        let waits = |d: &Deferred| matches!(d, Deferred::DmStored { peer: p, seq: s, .. } if (*p, *s) == (peer, seq));
        self.deferred.iter().any(waits) || self.inflight.values().any(|f| f.answers.iter().any(waits))
    }

    /// The next commit, if anything changed: one job for the disk thread.
    /// Group commit: while one is on its way to disk, changes accumulate and
    /// the next carries all of them, so a busy server makes fewer, larger
    /// commits instead of a queue of rewrites of the same files.
    pub fn poll_commit(&mut self, now_ms: u64) -> Option<Job> {
        if now_ms < self.commit_retry_at || !self.inflight.is_empty() {
            return None;
        }
        let idle = self.dirty.is_empty() && self.deleted.is_empty() && self.mail_dirty.is_empty();
        if idle
            && !self.contacts_dirty
            && self.prekeys_dirty.is_empty()
            && self.users_deleted.is_empty()
            && !self.retired_dirty
            && self.deferred.is_empty()
            && !self.files.has_changes()
            && self.acct_dirty.is_empty()
            && self.users_dirty.is_empty()
            && !self.announcements_dirty
            && !self.tickets.has_changes()
        {
            return None;
        }
        let mut writes = Vec::with_capacity(self.dirty.len() + self.deleted.len() + self.mail_dirty.len() + 1);
        let mut names = Vec::new();
        for name in std::mem::take(&mut self.dirty) {
            if let Some(room) = self.rooms.get_mut(&name) {
                writes.push(Change::Room(name.clone(), Some(room.write())));
                names.push((name, room.pushed));
            }
        }
        for name in std::mem::take(&mut self.deleted) {
            writes.push(Change::Room(name, None));
        }
        for uid in std::mem::take(&mut self.mail_dirty) {
            if let Some(w) = self.mail.boxes.get_mut(&uid).and_then(|b| b.take_write()) {
                writes.push(Change::Queue(uid, w));
            }
        }
        let contacts = if std::mem::take(&mut self.contacts_dirty) {
            let changed = self.mail.contacts.take_changed();
            let pairs = changed.iter().map(|&p| (p, self.mail.contacts.state(p))).collect();
            writes.push(Change::Contacts(ContactsWrite { file: self.mail.contacts.encode(), pairs }));
            changed
        } else {
            Vec::new()
        };
        let prekeys: Vec<u64> = std::mem::take(&mut self.prekeys_dirty).into_iter().collect();
        for &uid in &prekeys {
            let bytes = self.mail.prekeys.get(uid).map(|p| p.encode(uid));
            writes.push(Change::Prekeys(uid, bytes));
        }
        let files = self.files.take_changes(&mut writes);
        let accts: Vec<u64> = std::mem::take(&mut self.acct_dirty).into_iter().collect();
        for &uid in &accts {
            writes.push(Change::Acct(uid, self.accounts.acct(uid).encode(uid)));
        }
        let announcements = std::mem::take(&mut self.announcements_dirty);
        if announcements {
            writes.push(Change::Announcements(self.announcements.encode()));
        }
        let users: Vec<u64> = std::mem::take(&mut self.users_deleted).into_iter().collect();
        writes.extend(users.iter().map(|uid| Change::UserDelete(*uid)));
        let retired = std::mem::take(&mut self.retired_dirty);
        if retired {
            self.accounts.retired.prune(now_ms);
            writes.push(Change::Retired(self.accounts.retired.encode()));
        }
        let records: Vec<u64> = std::mem::take(&mut self.users_dirty).into_iter().collect();
        for &uid in &records {
            if let Some(rec) = self.accounts.by_uid(uid) {
                writes.push(Change::User(Box::new(*rec)));
            }
        }
        let ticket_keys = self.tickets.take_keys().map(|(bytes, newest)| {
            writes.push(Change::TicketKeys(bytes));
            newest
        });
        let tickets = match self.tickets.take_journal(now_ms) {
            Some(w) => {
                writes.push(Change::Tickets(w));
                true
            }
            None => false,
        };
        let token = self.next_token;
        self.next_token += 1;
        let answers = std::mem::take(&mut self.deferred);
        self.inflight.insert(
            token,
            Inflight {
                rooms: names,
                prekeys,
                contacts,
                answers,
                files,
                accts,
                announcements,
                users,
                retired,
                records,
                ticket_keys,
                tickets,
            },
        );
        Some(Job::Commit { token, writes })
    }

    /// A commit finished: send its answers, or report the failure and retry the rooms.
    pub(super) fn committed(&mut self, token: u64, ok: bool, unavailable: bool, now_ms: u64) {
        let Some(Inflight {
            rooms: names,
            prekeys,
            contacts,
            answers,
            files,
            accts,
            announcements,
            users,
            retired,
            records,
            ticket_keys,
            tickets,
        }) = self.inflight.remove(&token)
        else {
            return;
        };
        if let Some(newest) = ticket_keys {
            self.tickets.keys_committed(newest, ok);
        }
        if tickets && !ok {
            self.tickets.journal_failed();
        }
        // The files first: a chunk's answer depends on what is durable now.
        let grown = self.files.committed(files, ok);
        if ok {
            for (name, pushed) in &names {
                if let Some(room) = self.rooms.get_mut(name) {
                    room.durable = room.durable.max(*pushed);
                }
            }
        } else {
            for (name, _) in &names {
                if let Some(room) = self.rooms.get_mut(name) {
                    // Its new entries may not have been written: the next write carries the whole history.
                    room.rewritten = true;
                    self.dirty.insert(name.clone());
                }
            }
            // The files are rewritten from memory, where a handed-out
            // one-time prekey is already gone (its answer fails below).
            self.prekeys_dirty.extend(prekeys);
            self.mail.contacts.changed_again(contacts);
            for uid in accts {
                self.mark_acct_dirty(uid);
            }
            self.announcements_dirty |= announcements;
            self.users_deleted.extend(users);
            self.retired_dirty |= retired;
            for uid in records {
                self.mark_user_dirty(uid);
            }
        }
        let (fail_code, cause) = not_durable(unavailable);
        let failed = &format!("{cause}: not yet durable; retried")[..];
        for d in answers {
            if let Some(c) = self.conns.get_mut(&d.conn()) {
                c.answers = c.answers.saturating_sub(1);
            }
            match d {
                Deferred::Reply { conn, msg_id, opcode, reason } if ok => {
                    self.reply(conn, msg_id, opcode, code::OK, reason, now_ms)
                }
                Deferred::Joined { conn, msg_id, room } if ok => {
                    crate::server::handler::room::join_answer(self, conn, msg_id, &room, now_ms)
                }
                Deferred::DmStored { conn, msg_id, peer, seq, .. } if ok => {
                    crate::server::handler::direct::stored(self, conn, msg_id, peer, seq, now_ms)
                }
                Deferred::Accepted { conn, msg_id, peer } if ok => {
                    crate::server::handler::direct::accepted(self, conn, msg_id, peer, now_ms)
                }
                Deferred::Bundle { conn, owner, bundle } if ok => {
                    crate::server::handler::prekey::handed_out(self, conn, owner, &bundle, now_ms)
                }
                Deferred::Offer { conn, msg_id, file_id } if ok => {
                    crate::server::handler::file::offered(self, conn, msg_id, file_id, now_ms)
                }
                Deferred::Admin { conn, reply } if ok => crate::server::admin::send(self, conn, reply.as_ref()),
                Deferred::Admin { conn, reply } => {
                    let op = reply.request_opcode.get();
                    crate::server::admin::reply(self, conn, reply.hdr.msg_id.get(), op, fail_code, failed)
                }
                Deferred::Chunk { conn, msg_id, file_id, index, epoch } => {
                    crate::server::handler::file::chunk_settled(self, conn, (msg_id, file_id, index, epoch), now_ms)
                }
                Deferred::Reply { conn, msg_id, opcode, .. } => {
                    self.reply(conn, msg_id, opcode, fail_code, failed, now_ms)
                }
                Deferred::Joined { conn, msg_id, .. } => {
                    self.reply(conn, msg_id, crate::opcodes::JRMS, fail_code, failed, now_ms)
                }
                Deferred::DmStored { conn, msg_id, opcode, peer, seq } => {
                    // This request waits no longer; a resend's failure leaves the others waiting.
                    if let Some(w) = self.awaiting.get_mut(&(peer, seq)) {
                        w.conns.retain(|c| *c != conn);
                        if w.conns.is_empty() {
                            self.awaiting.remove(&(peer, seq));
                        }
                    }
                    self.reply(conn, msg_id, opcode, fail_code, failed, now_ms)
                }
                Deferred::Accepted { conn, msg_id, .. } => {
                    self.reply(conn, msg_id, crate::opcodes::AMPU, fail_code, failed, now_ms)
                }
                Deferred::Bundle { conn, bundle, .. } => {
                    let msg_id = bundle.hdr.msg_id.get();
                    self.reply(conn, msg_id, crate::opcodes::PKGT, fail_code, failed, now_ms)
                }
                Deferred::Offer { conn, msg_id, .. } => {
                    self.reply(conn, msg_id, crate::opcodes::FLOF, fail_code, failed, now_ms)
                }
                Deferred::AccountDeleted { conn, msg_id } if ok => {
                    self.reply(conn, msg_id, crate::opcodes::DLAC, code::OK, "account deleted", now_ms);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.holding = false;
                    }
                }
                // Gone from memory, not yet from the disk: the removal is
                // retried with the next commit, and the answer waits for it
                // (a restart before then would bring the account back).
                d @ Deferred::AccountDeleted { .. } => self.defer(d),
                Deferred::Returned { conn, msg_id, peer, name } if ok => {
                    let returned = crate::server::handler::direct::RETURNED;
                    crate::server::handler::direct::status_named(self, conn, msg_id, (peer, &name), returned, now_ms)
                }
                d @ Deferred::Returned { .. } => self.defer(d),
                Deferred::Resumed { conn } => self.resumed(conn, ok, now_ms),
                Deferred::Revoked { conn, msg_id, opcode, reason } if ok => {
                    self.defer_revoked_answer(conn, msg_id, opcode, reason, now_ms)
                }
                Deferred::Revoked { conn, msg_id, opcode, .. } => {
                    self.reply(conn, msg_id, opcode, fail_code, failed, now_ms)
                }
                Deferred::SecretsRevoked { conn, msg_id, record } if ok => {
                    crate::server::handler::account::secrets_revoked(self, conn, msg_id, record, now_ms)
                }
                Deferred::SecretsRevoked { conn, msg_id, .. } => {
                    self.reply(conn, msg_id, crate::opcodes::CHPW, fail_code, failed, now_ms)
                }
                Deferred::SecretsStored { conn, msg_id, .. } if ok => {
                    let reason = "password and passphrase changed";
                    self.defer_revoked_answer(conn, msg_id, crate::opcodes::CHPW, reason, now_ms)
                }
                Deferred::SecretsStored { conn, msg_id, old, new } => {
                    crate::server::handler::account::secrets_not_stored(
                        self,
                        conn,
                        msg_id,
                        old,
                        &new,
                        unavailable,
                        now_ms,
                    )
                }
            }
        }
        // Downloads waiting for these chunks read on.
        for file_id in grown {
            crate::server::handler::file::grown(self, file_id);
        }
        if !ok {
            // Do not spin on a full disk: the next attempt waits a second.
            self.commit_retry_at = now_ms + 1_000;
            // The records stay in memory; rewrite the files from them with the next commit.
            for (uid, b) in self.mail.boxes.iter_mut() {
                b.force_rewrite();
                self.mail_dirty.insert(*uid);
            }
            self.contacts_dirty = true;
        }
    }
}
