//! Room moderation, message removal, DM withdrawal, account deletion and the
//! user list in the core, through the fuzzing seam's world (`fuzz::World`:
//! alice owns the lobby, where bob is too and alice said three things;
//! carol owns the club; alice and bob are contacts).

use std::sync::Arc;

use crate::opcodes::{
    DeleteAccount, DmStatus, DmUnsend, JoinRoom, ListUsers, ReceiveDmS, RoomKick, RoomKicked, RoomOwner, RoomRekey,
    RoomRekeyed, RoomRemoveMessage, RoomUnban, StatusReply, UserEntry, DMST, RKCK, RKEY, STAT, USRS,
};
use crate::wire::{self, code, Message, Status};
use zerocopy::IntoBytes;

use crate::server::core::{Limits, ListUsers as Mode};
use crate::server::fuzz::{limits, room_auth_key, uid, World};
use crate::server::store::MemStore;

fn frame<M: Message>(msg_id: u64, set: impl FnOnce(&mut M)) -> Vec<u8> {
    let mut m = M::request(msg_id, 0);
    set(&mut m);
    m.as_bytes().to_vec()
}

/// The code of the status reply to `msg_id` among `got`.
fn status_of(got: &[Vec<u8>], msg_id: u64) -> Option<u16> {
    got.iter()
        .filter(|f| wire::header(f).is_ok_and(|h| h.opcode.get() == STAT && h.msg_id.get() == msg_id))
        .find_map(|f| wire::decode::<StatusReply>(f).ok().map(|r| r.hdr.code.get()))
}

/// Sends `frame` as `user`, settles, and returns what that session received.
fn request(w: &mut World, user: usize, frame: &[u8]) -> Vec<Vec<u8>> {
    let (id, mut opener) = w.open(user).unwrap();
    w.received(id, &mut opener);
    assert!(w.dispatch(id, frame));
    w.settle();
    let got = w.received(id, &mut opener);
    w.core().close(id, "test");
    w.core().remove(id);
    got
}

fn join(room: &str) -> Vec<u8> {
    frame::<JoinRoom>(40, |m| {
        m.auth_key = room_auth_key(room);
        let _ = m.set_room(room);
    })
}

fn kick(user: &str, ban: u8) -> Vec<u8> {
    frame::<RoomKick>(30, |m| {
        let _ = m.set_room("lobby");
        let _ = m.set_user(user);
        let _ = m.set_reason("spam");
        m.ban = ban;
    })
}

/// The opcodes waiting in `user`'s mailbox, oldest first.
fn mailbox(w: &mut World, user: usize) -> Vec<Vec<u8>> {
    w.core()
        .mail
        .boxes
        .get(&uid(user))
        .map(|b| b.live_after(0).map(|(_, r)| r.event.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn only_the_owner_kicks_and_a_ban_refuses_the_join_until_lifted() {
    let mut w = World::new();
    assert_eq!(status_of(&request(&mut w, 1, &kick("alice", 0)), 30), Some(code::FORBIDDEN));
    assert_eq!(status_of(&request(&mut w, 0, &kick("alice", 0)), 30), Some(code::BAD_REQUEST), "not itself");
    assert_eq!(status_of(&request(&mut w, 0, &kick("carol", 0)), 30), Some(code::NOT_FOUND), "not a member");
    assert_eq!(status_of(&request(&mut w, 0, &kick("bob", 1)), 30), Some(code::OK));
    let lobby = w.core().rooms.get("lobby").unwrap();
    assert_eq!((lobby.members.clone(), lobby.banned.clone()), (vec![uid(0)], vec![uid(1)]));
    let told = mailbox(&mut w, 1);
    let kicked = told.iter().find(|e| wire::header(e).unwrap().opcode.get() == RKCK).expect("rkck in the mailbox");
    let k = wire::decode::<RoomKicked>(kicked).unwrap();
    assert_eq!((k.room(), k.by(), k.ban, k.reason()), (Ok("lobby"), Ok("alice"), 1, Ok("spam")));
    assert_eq!(status_of(&request(&mut w, 1, &join("lobby")), 40), Some(code::FORBIDDEN), "banned");
    let unban = frame::<RoomUnban>(31, |m| {
        let _ = m.set_room("lobby");
        let _ = m.set_user("bob");
    });
    assert_eq!(status_of(&request(&mut w, 0, &unban), 31), Some(code::OK));
    assert_eq!(status_of(&request(&mut w, 0, &unban), 31), Some(code::NOT_FOUND), "not banned any more");
    assert_eq!(status_of(&request(&mut w, 1, &join("lobby")), 40), Some(code::OK));
    // Bans survive a restart (room file version 3).
    assert_eq!(status_of(&request(&mut w, 0, &kick("bob", 1)), 30), Some(code::OK));
    w.restart();
    assert!(w.core().rooms.get("lobby").unwrap().is_banned(uid(1)));
}

#[test]
fn a_new_password_drops_the_history_and_the_other_members() {
    let mut w = World::new();
    let rekey = frame::<RoomRekey>(32, |m| {
        let _ = m.set_room("lobby");
        m.salt = [7; 16];
        m.verifier = crate::room::verifier(&[9; 32]);
    });
    assert_eq!(status_of(&request(&mut w, 1, &rekey), 32), Some(code::FORBIDDEN), "bob does not own it");
    assert_eq!(status_of(&request(&mut w, 0, &rekey), 32), Some(code::OK));
    let lobby = w.core().rooms.get("lobby").unwrap();
    assert_eq!((lobby.members.clone(), lobby.history.len(), lobby.salt), (vec![uid(0)], 0, [7; 16]));
    let told = mailbox(&mut w, 1);
    let ev = told.iter().find(|e| wire::header(e).unwrap().opcode.get() == RKEY).expect("rkey in the mailbox");
    assert_eq!(wire::decode::<RoomRekeyed>(ev).unwrap().by(), Ok("alice"));
    assert_eq!(status_of(&request(&mut w, 1, &join("lobby")), 40), Some(code::FORBIDDEN), "the old key is refused");
    let new_key = frame::<JoinRoom>(41, |m| {
        m.auth_key = [9; 32];
        let _ = m.set_room("lobby");
    });
    assert_eq!(status_of(&request(&mut w, 1, &new_key), 41), Some(code::OK));
}

#[test]
fn the_author_or_the_owner_removes_a_message_and_a_tombstone_stays() {
    let mut w = World::new();
    let ids: Vec<u64> = {
        let lobby = w.core().rooms.get("lobby").unwrap();
        lobby.history.iter().map(|e| lobby.message_id(e)).collect()
    };
    let remove = |msg_id, id| {
        frame::<RoomRemoveMessage>(msg_id, |m| {
            let _ = m.set_room("lobby");
            m.message_id.set(id);
        })
    };
    assert_eq!(status_of(&request(&mut w, 1, &remove(33, ids[0])), 33), Some(code::FORBIDDEN), "bob wrote none");
    assert_eq!(status_of(&request(&mut w, 2, &remove(33, ids[0])), 33), Some(code::FORBIDDEN), "not a member");
    assert_eq!(status_of(&request(&mut w, 0, &remove(33, ids[1])), 33), Some(code::OK));
    assert_eq!(status_of(&request(&mut w, 0, &remove(34, ids[1])), 34), Some(code::NOT_FOUND), "removed once");
    let lobby = w.core().rooms.get("lobby").unwrap();
    let t = &lobby.history[1];
    assert!(t.is_tombstone() && t.body.is_empty() && !lobby.history[0].is_tombstone());
    assert_eq!((t.removed_by(), lobby.message_id(t)), (uid(0), ids[1]));
    // A joiner gets the tombstone in its place, between the two messages.
    let got = request(&mut w, 2, &join("lobby"));
    let ops: Vec<u32> = got.iter().map(|f| wire::header(f).unwrap().opcode.get()).collect();
    let at = ops.iter().position(|o| *o == crate::opcodes::RTMB).expect("a tombstone in the history");
    assert!(ops[..at].contains(&crate::opcodes::RVRS) && ops[at + 1..].contains(&crate::opcodes::RVRS));
}

#[test]
fn owner_hands_the_room_on_to_a_member_only() {
    let mut w = World::new();
    let to = |user: &str| {
        let user = user.to_owned();
        frame::<RoomOwner>(35, move |m| {
            let _ = m.set_room("lobby");
            let _ = m.set_user(&user);
        })
    };
    assert_eq!(status_of(&request(&mut w, 0, &to("carol")), 35), Some(code::NOT_FOUND));
    assert_eq!(status_of(&request(&mut w, 0, &to("bob")), 35), Some(code::OK));
    assert_eq!(w.core().rooms.get("lobby").unwrap().owner, uid(1));
    assert_eq!(status_of(&request(&mut w, 0, &kick("bob", 0)), 30), Some(code::FORBIDDEN), "alice owns it no more");
}

#[test]
fn a_dm_waiting_in_the_mailbox_is_withdrawn_and_one_handed_out_is_not() {
    let mut w = World::new();
    let mut dm = ReceiveDmS::new(Status::Ok, code::OK, 0, 0);
    dm.head.sender_uid.set(uid(0));
    dm.head.dm_id.set(77);
    let now = w.now_ms();
    crate::server::handler::direct::post(w.core(), uid(1), dm.as_bytes(), Some((uid(0), 77)), now);
    let unsend = |dm_id| {
        frame::<DmUnsend>(36, |m| {
            m.peer_uid.set(uid(1));
            m.dm_id.set(dm_id);
        })
    };
    assert_eq!(status_of(&request(&mut w, 0, &unsend(78)), 36), Some(code::NOT_FOUND));
    // Handed to a session of bob's (not yet acknowledged): too late.
    let (bob, mut opener) = w.open(1).unwrap();
    w.received(bob, &mut opener);
    assert_eq!(status_of(&request(&mut w, 0, &unsend(77)), 36), Some(code::CONFLICT));
    w.core().close(bob, "test");
    w.core().remove(bob);
    crate::server::handler::direct::post(w.core(), uid(1), dm.as_bytes(), Some((uid(0), 79)), now);
    assert_eq!(status_of(&request(&mut w, 0, &unsend(79)), 36), Some(code::OK));
    let dms: Vec<u64> = w.core().mail.boxes[&uid(1)].live_after(0).filter_map(|(_, r)| r.dm.map(|d| d.1)).collect();
    assert_eq!(dms, [77], "only the one handed out is left");
}

#[test]
fn deleting_an_account_returns_its_mail_hands_its_rooms_on_and_holds_its_name() {
    let store = Arc::new(MemStore::default());
    let mut w = World::new_on(limits(), store.clone());
    let mut dm = ReceiveDmS::new(Status::Ok, code::OK, 0, 0);
    dm.head.sender_uid.set(uid(1));
    dm.head.dm_id.set(88);
    let now = w.now_ms();
    crate::server::handler::direct::post(w.core(), uid(0), dm.as_bytes(), Some((uid(1), 88)), now);
    // A wrong passphrase deletes nothing.
    let wrong = frame::<DeleteAccount>(37, |m| m.auth_secret = *crate::account::auth_secret("alice", "x"));
    assert_eq!(status_of(&request(&mut w, 0, &wrong), 37), Some(code::UNAUTHORIZED));
    assert!(w.core().accounts.by_uid(uid(0)).is_some());
    assert_eq!(w.core().delete_account(uid(0), now, "test").as_deref(), Some("alice"));
    w.settle();
    let lobby = w.core().rooms.get("lobby").unwrap();
    assert_eq!((lobby.owner, lobby.members.clone()), (uid(1), vec![uid(1)]), "passed to the member left");
    assert!(w.core().accounts.by_uid(uid(0)).is_none() && w.core().accounts.by_name("alice").is_none());
    assert!(w.core().mail.contacts.of(uid(1)).is_empty() && w.core().mail.prekeys.get(uid(0)).is_none());
    let back = mailbox(&mut w, 1);
    let ret = back.iter().rev().find(|e| wire::header(e).unwrap().opcode.get() == DMST).expect("a dmst");
    let st = wire::decode::<DmStatus>(ret).unwrap();
    assert_eq!((st.dm_id.get(), st.state, st.peer()), (88, 4, Ok("alice")), "returned to bob");
    assert!(w.core().accounts.retired.held_until("alice", now).is_some());
    w.restart();
    assert!(w.core().accounts.retired.held_until("alice", now + 89 * 24 * 3600 * 1000).is_some(), "durable");
    assert!(w.core().accounts.retired.held_until("alice", now + 91 * 24 * 3600 * 1000).is_none(), "for 90 days");
    // carol's club, with no one else in it, goes with her.
    assert!(w.core().delete_account(uid(2), now, "test").is_some());
    assert!(w.core().rooms.get("club").is_none());
}

#[test]
fn users_are_listed_as_the_operator_allows() {
    let names = |mode: Mode| {
        let mut w = World::new_on(Limits { list_users: mode, ..limits() }, Arc::new(MemStore::default()));
        let got = request(&mut w, 1, &frame::<ListUsers>(38, |_| {}));
        let listed: Vec<String> = got
            .iter()
            .filter(|f| wire::header(f).unwrap().opcode.get() == USRS)
            .map(|f| wire::decode::<UserEntry>(f).unwrap().name().unwrap().to_owned())
            .collect();
        (listed, status_of(&got, 38))
    };
    assert_eq!(names(Mode::Shared), (vec!["alice".to_owned()], Some(code::OK)), "bob shares the lobby with alice");
    assert_eq!(names(Mode::All), (vec!["alice".into(), "bob".into(), "carol".into()], Some(code::OK)));
    assert_eq!(names(Mode::Off), (vec![], Some(code::FORBIDDEN)));
}

/// A `crea` for `name` with UID `uid`, with a real identity key (bob's).
fn register(w: &mut World, name: &str, uid: u64) -> Option<u16> {
    let id_pub = w.core().accounts.by_uid(crate::server::fuzz::uid(1)).unwrap().id_pub;
    let crea = frame::<crate::opcodes::Register>(42, |m| {
        let _ = m.set_username(name);
        m.id_pub = id_pub;
        m.uid.set(uid);
    });
    let (id, mut opener) = w.open(1).unwrap();
    w.core().set_session(id, crate::server::session::Session::AwaitLogin);
    w.received(id, &mut opener);
    assert!(w.dispatch(id, &crea));
    // Only what the handler answers at once: the worker would check the binding.
    let got = w.received(id, &mut opener);
    w.core().close(id, "test");
    w.core().remove(id);
    status_of(&got, 42)
}

#[test]
fn a_deleted_accounts_uid_is_held_like_its_name_even_before_its_files_are_gone() {
    let mut w = World::new_on(Limits { name_reserve_ms: 0, ..limits() }, Arc::new(MemStore::default()));
    let now = w.now_ms();
    assert!(w.core().delete_account(uid(0), now, "test").is_some());
    // Not yet committed: the UID is not free, whatever --name-reserve says.
    assert_eq!(register(&mut w, "zed", uid(0)), Some(code::CONFLICT));
    w.settle();
    assert_eq!(register(&mut w, "zed", uid(0)), None, "no reserve: free once the files are gone");
    let mut w = World::new();
    let now = w.now_ms();
    assert!(w.core().delete_account(uid(0), now, "test").is_some());
    w.settle();
    w.restart();
    assert_eq!(register(&mut w, "zed", uid(0)), Some(code::CONFLICT), "held across a restart");
    assert_eq!(register(&mut w, "alice", 99), Some(code::CONFLICT), "the name too");
    assert_eq!(register(&mut w, "zed", 99), None, "a fresh name and UID go on to the worker");
}

#[test]
fn a_join_answered_after_a_kick_in_its_commit_window_is_refused() {
    let mut w = World::new();
    let (carol, mut opener) = w.open(2).unwrap();
    w.received(carol, &mut opener);
    assert!(w.dispatch(carol, &join("lobby")));
    w.run_jobs();
    // alice kicks carol before the join's commit.
    let (alice, _) = w.open(0).unwrap();
    assert!(w.dispatch(alice, &kick("carol", 0)));
    w.settle();
    assert_eq!(status_of(&w.received(carol, &mut opener), 40), Some(code::FORBIDDEN));
}

#[test]
fn a_dm_is_not_withdrawn_before_its_sender_heard_it_was_stored() {
    use crate::opcodes::{SendDmS, DMST as STATE};
    let mut w = World::new();
    let (alice, mut opener) = w.open(0).unwrap();
    w.received(alice, &mut opener);
    let mut m = SendDmS::request(91, 0);
    m.head.peer_uid.set(uid(1));
    assert!(w.dispatch(alice, m.as_bytes()));
    let unsend = frame::<DmUnsend>(36, |m| {
        m.peer_uid.set(uid(1));
        m.dm_id.set(91);
    });
    assert!(w.dispatch(alice, &unsend));
    w.settle();
    let got = w.received(alice, &mut opener);
    assert_eq!(status_of(&got, 36), Some(code::CONFLICT), "not yet stored");
    let told = got.iter().find(|f| wire::header(f).unwrap().opcode.get() == STATE).expect("the DM's own answer");
    assert_eq!(wire::decode::<DmStatus>(told).unwrap().state, crate::server::handler::direct::QUEUED);
    assert!(w.dispatch(alice, &unsend));
    w.settle();
    assert_eq!(status_of(&w.received(alice, &mut opener), 36), Some(code::OK), "withdrawn now");
}

#[test]
fn a_sender_waiting_on_a_deleted_recipient_hears_returned_only_once_the_deletion_is_durable() {
    let mut w = World::new();
    let (bob, mut bo) = w.open(1).unwrap();
    let (alice, mut opener) = w.open(0).unwrap();
    w.received(alice, &mut opener);
    w.received(bob, &mut bo);
    let mut m = crate::opcodes::SendDmS::request(92, 0);
    m.head.peer_uid.set(uid(1));
    assert!(w.dispatch(alice, m.as_bytes()));
    w.settle();
    // Delivered live to bob, not acknowledged: alice waits for the answer.
    assert!(w.received(alice, &mut opener).iter().all(|f| wire::header(f).unwrap().opcode.get() != DMST));
    let now = w.now_ms();
    assert!(w.core().delete_account(uid(1), now, "test").is_some());
    assert!(w.received(alice, &mut opener).iter().all(|f| wire::header(f).unwrap().opcode.get() != DMST), "too early");
    w.settle();
    let got = w.received(alice, &mut opener);
    let told = got.iter().find(|f| wire::header(f).unwrap().opcode.get() == DMST).expect("returned");
    let st = wire::decode::<DmStatus>(told).unwrap();
    assert_eq!((st.dm_id.get(), st.state, st.peer()), (92, crate::server::handler::direct::RETURNED, Ok("bob")));
}

#[test]
fn only_the_owner_learns_whether_a_user_named_in_a_moderation_request_exists() {
    let mut w = World::new();
    let ghost = kick("nobody-here", 0);
    assert_eq!(status_of(&request(&mut w, 1, &ghost), 30), Some(code::FORBIDDEN), "bob is not the owner");
    assert_eq!(status_of(&request(&mut w, 0, &ghost), 30), Some(code::NOT_FOUND));
}

#[test]
fn a_deletion_the_disk_refuses_is_answered_when_a_retry_makes_it_durable_however_long_that_takes() {
    let store = Arc::new(MemStore::default());
    let mut w = World::new_on(limits(), store.clone());
    let (alice, mut opener) = w.open(0).unwrap();
    w.received(alice, &mut opener);
    let now = w.now_ms();
    store.fail_next_commits(7);
    assert!(w.core().delete_account_answering(uid(0), now, "test", Some((alice, 43))).is_some());
    // Seven failed commits, a second apart: longer than a closing connection's grace.
    for _ in 0..7 {
        w.settle();
        assert_eq!(status_of(&w.received(alice, &mut opener), 43), None, "not durable yet");
        w.advance(1_100);
    }
    w.settle();
    assert_eq!(status_of(&w.received(alice, &mut opener), 43), Some(code::OK));
    assert!(w.core().is_done(alice), "then the connection closes");
}
