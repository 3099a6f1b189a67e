//! Account deletion (PROTOCOL.md §5, "Deleting an account"), a part of the
//! core: what `/delete-account` (dlac) and an operator's tool call.
//!
//! Invariant: the account leaves memory at once, with its rooms, mailbox,
//! contact pairs, prekeys and files, and its sessions end; the DMs that
//! waited for it go back to their senders through their durable mailboxes;
//! its name and UID are held from registration for `--name-reserve`. The files go
//! with the next commit, and the answer to the user who asked waits for it.

use super::{ConnId, Core, Deferred, Phase};
use crate::opcodes::RoomMember;
use crate::server::handler::{direct, file, moderation, room};
use crate::server::mailbox::Mailbox;
use crate::server::session::Session;
use crate::wire::Status;

impl Core {
    /// Deletes account `uid` at `now_ms` for `why` (logged): see the module
    /// comment. Returns the account's name, or None when there is no such account.
    pub fn delete_account(&mut self, uid: u64, now_ms: u64, why: &str) -> Option<String> {
        self.delete_account_answering(uid, now_ms, why, None)
    }

    /// As [`Core::delete_account`]; `answer` (a connection and the request's
    /// msg_id) hears 200 once the deletion is durable, then closes.
    pub(crate) fn delete_account_answering(
        &mut self,
        uid: u64,
        now_ms: u64,
        why: &str,
        answer: Option<(ConnId, u64)>,
    ) -> Option<String> {
        let name = self.accounts.by_uid(uid)?.username().ok()?.to_owned();
        // The rooms first: the members are told who left by name.
        self.leave_rooms(uid, now_ms);
        self.return_mail(uid, &name, now_ms);
        if self.mail.contacts.forget(uid) {
            self.mark_contacts_dirty();
        }
        if self.mail.prekeys.remove(uid) {
            self.mark_prekeys_dirty(uid);
        }
        file::delete_user_files(self, uid, now_ms);
        for id in self.sessions_of(uid) {
            // No handler runs for this account any more.
            if let Some(super::Conn { phase: Phase::Open { session, .. }, .. }) = self.conns.get_mut(&id) {
                *session = Session::AwaitLogin;
            }
            self.close(id, "account deleted");
        }
        self.online.remove(&uid);
        self.chat.remove(&uid);
        // The generation stays, raised: no account registered later under
        // this UID could take one of these tickets.
        self.revoke_tickets(uid, "account deleted");
        self.accounts.remove(uid);
        self.acct_dirty.remove(&uid);
        self.announce_unsaved.remove(&uid);
        self.accounts.retired.retire(&name, uid, now_ms.saturating_add(self.limits.name_reserve_ms));
        self.retired_dirty = true;
        self.users_deleted.insert(uid);
        if let Some((conn, msg_id)) = answer {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.holding = true;
            }
            self.defer(Deferred::AccountDeleted { conn, msg_id });
        }
        crate::log!(Info, "account {name} (uid {uid:016x}) deleted: {why}");
        Some(name)
    }

    /// Whether account `uid` was deleted and its files are not yet gone:
    /// its UID is not free even when `--name-reserve` is 0.
    pub(crate) fn deletion_pending(&self, uid: u64) -> bool {
        self.users_deleted.contains(&uid) || self.inflight.values().any(|f| f.users.contains(&uid))
    }

    /// `uid` leaves every room; a room it owns passes to its longest-standing
    /// member, or is deleted when none is left; it leaves the ban lists too.
    fn leave_rooms(&mut self, uid: u64, now_ms: u64) {
        let names: Vec<String> = self
            .rooms
            .iter()
            .filter(|r| r.is_member(uid) || r.owner == uid || r.is_banned(uid))
            .map(|r| r.name.clone())
            .collect();
        for name in names {
            let left: Option<RoomMember> = room::member(self, &name, room::LEFT, uid, Status::Ok, 0, now_ms);
            let Some(r) = self.rooms.get_mut(&name) else { continue };
            let was_member = r.is_member(uid);
            r.members.retain(|u| *u != uid);
            r.banned.retain(|u| *u != uid);
            // Members are kept in joining order: the first has stood longest.
            let next = if r.owner == uid { Some(r.members.first().copied()) } else { None };
            if let Some(Some(owner)) = next {
                r.owner = owner;
            }
            match next {
                Some(None) => {
                    self.rooms.remove(&name);
                    self.mark_deleted(&name);
                    continue;
                }
                Some(Some(owner)) => {
                    self.mark_dirty(&name);
                    moderation::tell_owner(self, &name, owner, now_ms);
                }
                None => self.mark_dirty(&name),
            }
            if let (true, Some(ev)) = (was_member, left) {
                room::tell_members(self, &name, &ev, None);
            }
        }
    }

    /// Empties `uid`'s mailbox (its file goes with the next commit); each DM
    /// that waited in it goes back to its sender: a sender waiting for the
    /// answer to its request hears "returned" there, the others through their mailboxes.
    fn return_mail(&mut self, uid: u64, name: &str, now_ms: u64) {
        let dms: Vec<(u64, u64, u64)> = self
            .mail
            .boxes
            .get(&uid)
            .map(|b| b.live_after(0).filter_map(|(seq, r)| r.dm.map(|(s, id)| (*seq, s, id))).collect())
            .unwrap_or_default();
        let mut emptied = Mailbox::default();
        emptied.force_rewrite();
        self.mail.boxes.insert(uid, emptied);
        self.mark_mail_dirty(uid);
        let waiting: Vec<(u64, u64)> = self.awaiting.keys().filter(|(to, _)| *to == uid).copied().collect();
        let mut answered = Vec::new();
        for key in waiting {
            let Some(w) = self.awaiting.remove(&key) else { continue };
            answered.push(key.1);
            // Not durable yet: `direct::stored` answers "returned" when it is;
            // otherwise the answer waits for the deletion's commit.
            if w.durable {
                for conn in w.conns {
                    self.defer(Deferred::Returned { conn, msg_id: w.msg_id, peer: uid, name: name.to_owned() });
                }
            }
        }
        for (seq, sender, dm_id) in dms {
            if sender != uid && !answered.contains(&seq) && self.accounts.by_uid(sender).is_some() {
                direct::returned(self, sender, (uid, name), dm_id, now_ms);
            }
        }
    }
}
