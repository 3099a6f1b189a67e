//! Roles, denials, kicks and announcements through the core's dispatch
//! (sans I/O, the fuzzing seam's world): refusals happen before any handler.

use crate::opcodes::{Announcement, DmRequest, KickUser, Kicked, StatusReply, ANNO, KCKD, STAT};
use crate::server::acct::ROLE_ADMIN;
use crate::server::fuzz::{uid, World};
use crate::wire::{self, code, Message};
use zerocopy::IntoBytes;

fn status(frame: &[u8]) -> (u16, String) {
    let r = wire::decode::<StatusReply>(frame).unwrap();
    (r.hdr.code.get(), r.reason().unwrap().to_owned())
}

#[test]
fn a_role_or_a_denial_is_refused_at_the_dispatch_and_the_handler_never_runs() {
    let mut w = World::new();
    let (id, mut opener) = w.open(0).unwrap();
    w.received(id, &mut opener);
    let mut kick = KickUser::request(5, 0);
    kick.set_user("bob").unwrap();
    assert!(w.dispatch(id, kick.as_bytes()));
    w.core().accounts.acct_mut(uid(0)).denied.push("jmpu".into());
    let mut ask = DmRequest::request(6, 0);
    ask.set_peer("carol").unwrap();
    assert!(w.dispatch(id, ask.as_bytes()));
    w.settle();
    let got = w.received(id, &mut opener);
    assert_eq!(status(&got[0]), (code::FORBIDDEN, "kick needs the role admin".into()));
    assert_eq!(status(&got[1]), (code::FORBIDDEN, "jmpu is denied to this account by the operator".into()));
    assert!(!w.core().mail.contacts.requested(uid(0), uid(2)), "the request handler did not run");
    assert!(w.closing(id).is_none(), "the connection stays open");
}

#[test]
fn an_admin_kicks_every_session_and_announces_to_those_online() {
    let mut w = World::new();
    let (alice, mut a_open) = w.open(0).unwrap();
    let (bob1, mut b1_open) = w.open(1).unwrap();
    let (bob2, mut b2_open) = w.open(1).unwrap();
    for (id, o) in [(alice, &mut a_open), (bob1, &mut b1_open), (bob2, &mut b2_open)] {
        w.received(id, o);
    }
    w.core().accounts.acct_mut(uid(0)).roles |= ROLE_ADMIN;
    let mut ann = crate::opcodes::Announce::request(4, 0);
    ann.set_text("maintenance at noon").unwrap();
    assert!(w.dispatch(alice, ann.as_bytes()));
    let mut kick = KickUser::request(5, 0);
    kick.set_user("bob").unwrap();
    kick.set_reason("enough").unwrap();
    assert!(w.dispatch(alice, kick.as_bytes()));
    w.settle();
    for (id, o) in [(bob1, &mut b1_open), (bob2, &mut b2_open)] {
        let got = w.received(id, o);
        let ops: Vec<u32> = got.iter().map(|m| wire::header(m).unwrap().opcode.get()).collect();
        assert_eq!(ops, [ANNO, KCKD]);
        assert_eq!(wire::decode::<Announcement>(&got[0]).unwrap().text().unwrap(), "maintenance at noon");
        let k = wire::decode::<Kicked>(&got[1]).unwrap();
        assert_eq!((k.by().unwrap(), k.reason().unwrap()), ("alice", "enough"));
        assert_eq!(w.closing(id), Some("kicked"));
    }
    let got = w.received(alice, &mut a_open);
    let replies: Vec<u16> =
        got.iter().filter(|m| wire::header(m).unwrap().opcode.get() == STAT).map(|m| status(m).0).collect();
    assert_eq!(replies, [code::OK, code::OK], "announced once durable, and kicked");
    assert_eq!(w.core().accounts.acct(uid(1)).announce_seen, 1, "bob had it: not again at his next login");
}

#[test]
fn an_announcement_rewrites_an_online_users_state_when_its_last_session_ends_not_at_once() {
    use crate::server::store::{MemStore, Store};
    let store = std::sync::Arc::new(MemStore::default());
    let mut w = World::new_on(crate::server::fuzz::limits(), store.clone());
    let seen = |store: &MemStore| {
        let accts = store.load_accts().unwrap();
        accts.iter().find(|(u, _)| *u == uid(1)).map(|(_, a)| a.announce_seen)
    };
    let (alice, _) = w.open(0).unwrap();
    let (bob1, _) = w.open(1).unwrap();
    let (bob2, _) = w.open(1).unwrap();
    w.core().accounts.acct_mut(uid(0)).roles |= ROLE_ADMIN;
    let mut ann = crate::opcodes::Announce::request(4, 0);
    ann.set_text("maintenance at noon").unwrap();
    assert!(w.dispatch(alice, ann.as_bytes()));
    w.settle();
    assert_eq!(w.core().accounts.acct(uid(1)).announce_seen, 1);
    assert_ne!(seen(&store), Some(1), "not written for every online user at once");
    w.core().close(bob1, "test");
    w.core().remove(bob1);
    w.settle();
    assert_ne!(seen(&store), Some(1), "bob is still online");
    w.core().close(bob2, "test");
    w.core().remove(bob2);
    w.settle();
    assert_eq!(seen(&store), Some(1), "written when bob's last session ended");
}

#[test]
fn a_login_checked_after_its_account_was_deleted_leaves_no_state_file_behind() {
    use crate::server::store::{MemStore, Store};
    let store = std::sync::Arc::new(MemStore::default());
    let mut w = World::new_on(crate::server::fuzz::limits(), store.clone());
    let (id, mut opener) = w.open(1).unwrap();
    w.core().set_session(id, crate::server::session::Session::AwaitLogin);
    w.received(id, &mut opener);
    let mut login = crate::opcodes::Login::request(8, 0);
    login.set_username("alice").unwrap();
    assert!(w.dispatch(id, login.as_bytes()));
    // The password is checked on a worker; the account goes meanwhile.
    let now = w.now_ms();
    assert!(w.core().delete_account(uid(0), now, "test").is_some());
    w.settle();
    let got = w.received(id, &mut opener);
    let answer = got.iter().find(|m| wire::header(m).unwrap().opcode.get() == STAT).expect("an answer");
    assert_eq!(status(answer).0, code::UNAUTHORIZED);
    assert!(store.load_accts().unwrap().iter().all(|(u, _)| *u != uid(0)), "no orphan alice.acct");
}
