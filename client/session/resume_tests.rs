//! Session-level tests of resumption (PROTOCOL.md §3, resumption) and of the
//! account requests of issue 17 (`lgoe`, `chpw`): hand-built server frames
//! in, events and requests out. The resumed connection itself (ResumeHello,
//! ServerResume, the ticket's secret) is `conn`'s, tested there against a
//! server side built from the library.

use sotto::opcodes::{ChangeSecrets, Connected, Login, LogoutEverywhere, ResumptionTicket, TICK};
use sotto::wire::{self, code};
use zerocopy::byteorder::big_endian::U64;
use zerocopy::IntoBytes;

use super::direct::tests::{alice_session, with_bob, ALICE};
use super::*;
use crate::session::tests::{feed, sent_id, status, NOW};

/// A `cnnt` for alice with `id`: 0 is the unsolicited one of a resumed connection.
fn cnnt(id: u64, user: &str) -> Vec<u8> {
    let mut c = Connected::new(Status::Ok, code::OK, id, NOW);
    c.uid = U64::new(ALICE);
    c.set_username(user).unwrap();
    c.as_bytes().to_vec()
}

fn tick(id: u8) -> Vec<u8> {
    let mut t = ResumptionTicket::new(Status::Ok, code::OK, 0, NOW);
    t.ticket_id = [id; 16];
    t.expires.set(NOW + 7 * 86_400_000);
    t.ticket = [id; sotto::ticket::TICKET_LEN];
    t.as_bytes().to_vec()
}

fn creds() -> Credentials {
    Session::credentials("Alice", "password123", "red green blue").unwrap()
}

/// Every plaintext queued, by opcode.
fn sent_opcodes(s: &mut Session) -> Vec<u32> {
    std::iter::from_fn(|| s.poll_transmit()).map(|pt| wire::header(&pt).unwrap().opcode.get()).collect()
}

#[test]
fn a_resumed_login_sends_no_secret_and_completes_on_the_unsolicited_cnnt() {
    let mut s = Session::new();
    s.login_resumed(creds(), NOW).unwrap();
    assert!(s.poll_transmit().is_none(), "neither auth nor pass: the ticket proved the account");
    assert!(s.busy(), "the login waits for the server's cnnt");
    // A cnnt for another account is not this login's.
    let mut other = Session::new();
    other.login_resumed(creds(), NOW).unwrap();
    assert!(matches!(feed(&mut other, &cnnt(0, "mallory")), Some(Event::Failed(f)) if f.cmd == "login"));
    assert!(!other.logged_in());
    match feed(&mut s, &cnnt(0, "alice")) {
        Some(Event::Authenticated { user, uid, again: false, resumed: true, password }) => {
            assert_eq!((user.as_str(), uid, password.as_str()), ("alice", ALICE, "password123"));
        }
        _ => panic!("expected a resumed authentication"),
    }
    assert!(s.logged_in() && !s.busy());
    // The ticket that follows is handed to the driver as it came.
    match feed(&mut s, &tick(5)) {
        Some(Event::Ticket { ticket_id, expires_ms, ticket }) => {
            assert_eq!((ticket_id, expires_ms), ([5; 16], NOW + 7 * 86_400_000));
            assert_eq!(ticket, [5; sotto::ticket::TICKET_LEN]);
        }
        _ => panic!("expected the ticket"),
    }
    // A later one replaces it the same way (the driver keeps the latest).
    assert!(matches!(feed(&mut s, &tick(6)), Some(Event::Ticket { ticket_id: [6, ..], .. })));
}

#[test]
fn a_cnnt_with_msg_id_0_completes_nothing_but_a_resumption() {
    let mut s = Session::new();
    assert!(matches!(feed(&mut s, &cnnt(0, "alice")), Some(Event::Notice(_))));
    assert!(!s.logged_in());
    // During a password login it is not the answer either.
    s.login("alice", "password123", "red green blue", NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(matches!(feed(&mut s, &cnnt(0, "alice")), Some(Event::Notice(_))));
    assert!(!s.logged_in() && s.busy());
    feed(&mut s, &status(id, Status::Pending, code::PENDING, ""));
    let id = sent_id(&mut s);
    assert!(matches!(
        feed(&mut s, &cnnt(id, "alice")),
        Some(Event::Authenticated { again: false, resumed: false, .. })
    ));
}

#[test]
fn a_tick_before_any_login_or_malformed_is_ignored() {
    let mut s = Session::new();
    assert!(matches!(feed(&mut s, &tick(1)), Some(Event::Notice(_))));
    let mut short = tick(1);
    short.truncate(short.len() - 1);
    let mut s = alice_session(with_bob());
    assert!(matches!(feed(&mut s, &short), Some(Event::Notice(_))));
    assert_eq!(wire::header(&tick(1)).unwrap().opcode.get(), TICK);
}

/// What a login again does after it completes (outbox resend, prekeys,
/// acknowledgements): the same after a resumption as after a password login.
#[test]
fn after_a_resumption_the_session_does_what_a_login_again_does() {
    let run = |resume: bool| {
        let mut s = alice_session(with_bob());
        s.connection_lost();
        while s.poll_event().is_some() {}
        s.send_dm("@bob", "typed offline", NOW).unwrap();
        while s.poll_event().is_some() {}
        assert!(s.poll_transmit().is_none(), "offline: nothing goes out");
        let ev = if resume {
            assert!(s.resume_again(NOW));
            assert!(s.poll_transmit().is_none(), "no login request on a resumed connection");
            feed(&mut s, &cnnt(0, "alice"))
        } else {
            assert!(s.relogin(NOW));
            let id = sent_id(&mut s);
            feed(&mut s, &status(id, Status::Pending, code::PENDING, ""));
            let id = sent_id(&mut s);
            feed(&mut s, &cnnt(id, "alice"))
        };
        match ev {
            Some(Event::Authenticated { again: true, resumed, .. }) => assert_eq!(resumed, resume),
            _ => panic!("expected a login again"),
        }
        sent_opcodes(&mut s)
    };
    let after_login = run(false);
    assert!(!after_login.is_empty(), "a login again sends what waited");
    assert_eq!(run(true), after_login);
}

#[test]
fn a_refused_or_lost_resumption_falls_back_to_the_remembered_secrets() {
    let mut s = alice_session(with_bob());
    let auth = *sotto::account::auth_secret("alice", "password123");
    // Resumed, then lost again before the cnnt: the next connection logs in with the secrets.
    s.connection_lost();
    assert!(s.resume_again(NOW));
    s.connection_lost();
    assert!(s.relogin(NOW));
    let login = s.poll_transmit().unwrap();
    assert_eq!(wire::decode::<Login>(&login).unwrap().auth_secret, auth);
    // A resumption the server never completes fails like a login again does: another attempt follows.
    let mut s = alice_session(with_bob());
    s.connection_lost();
    assert!(s.resume_again(NOW));
    s.handle_timeout(NOW + REQUEST_TIMEOUT_MS);
    assert!(matches!(s.poll_event(), Some(Event::ReloginFailed(f)) if f.code == 0));
    // And a session logged in by resumption at start-up remembers the secrets of its /login.
    let mut s = Session::new();
    s.login_resumed(creds(), NOW).unwrap();
    feed(&mut s, &cnnt(0, "alice"));
    s.connection_lost();
    assert!(s.relogin(NOW));
    assert_eq!(wire::decode::<Login>(&s.poll_transmit().unwrap()).unwrap().auth_secret, auth);
}

#[test]
fn logout_everywhere_sends_lgoe_and_reports_its_answer() {
    let mut s = Session::new();
    assert_eq!(s.logout_everywhere(NOW).unwrap_err().code, 401);
    let mut s = alice_session(with_bob());
    s.logout_everywhere(NOW).unwrap();
    let pt = s.poll_transmit().unwrap();
    let m = wire::decode::<LogoutEverywhere>(&pt).unwrap();
    assert_eq!(m.reserved_id.get(), 0);
    let id = m.hdr.msg_id.get();
    match feed(&mut s, &status(id, Status::Ok, code::OK, "")) {
        Some(Event::Done { cmd: "logout-everywhere", room, id: None }) => assert!(room.is_empty()),
        _ => panic!("expected done"),
    }
    s.logout_everywhere(NOW).unwrap();
    let id = sent_id(&mut s);
    assert!(matches!(
        feed(&mut s, &status(id, Status::Error, 501, "not implemented")),
        Some(Event::Failed(f)) if (f.cmd.as_str(), f.code) == ("logout-everywhere", 501)
    ));
}

#[test]
fn a_password_change_sends_both_pairs_of_secrets_and_logs_in_again_with_the_new_ones() {
    let mut s = alice_session(with_bob());
    // The new password must pass the registration rule; nothing is sent otherwise.
    let Err(f) = s.password_change(("password123", "red green blue"), ("short", "one two three")) else {
        panic!("a short new password is refused")
    };
    assert_eq!((f.cmd.as_str(), f.code), ("password", 400));
    assert!(s.password_change(("password123", "red green blue"), ("new password 42", "one two")).is_err());
    assert!(s.poll_transmit().is_none());
    let verifier = |pw, phrase| *Session::credentials("alice", pw, phrase).unwrap().verifier();
    let before = verifier("password123", "red green blue");
    assert_eq!(s.login_verifier().as_deref(), Some(&before), "a ticket is kept with the login's verifier");
    let (old, new) =
        s.password_change(("password123", "Red green  blue"), ("new password 42", "One two three")).unwrap();
    s.change_password(old, new, NOW).unwrap();
    assert_eq!(s.login_verifier().as_deref(), Some(&before), "unchanged while the change waits");
    let pt = s.poll_transmit().unwrap();
    let m = wire::decode::<ChangeSecrets>(&pt).unwrap();
    assert_eq!(m.old_auth_secret, *sotto::account::auth_secret("alice", "password123"));
    assert_eq!(m.old_pass_secret, *sotto::account::pass_secret("alice", "red green blue"));
    assert_eq!(m.new_auth_secret, *sotto::account::auth_secret("alice", "new password 42"));
    assert_eq!(m.new_pass_secret, *sotto::account::pass_secret("alice", "one two three"));
    for secret in ["password123", "new password 42", "one two three"] {
        assert!(!pt.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} sent");
    }
    let id = m.hdr.msg_id.get();
    assert!(matches!(feed(&mut s, &status(id, Status::Ok, code::OK, "")), Some(Event::PasswordChanged)));
    // The ticket that follows the 200 is kept with the new secrets' verifier.
    let after = verifier("new password 42", "one two three");
    assert_ne!(after, before);
    assert_eq!(s.login_verifier().as_deref(), Some(&after));
    s.connection_lost();
    assert!(s.relogin(NOW));
    let login = s.poll_transmit().unwrap();
    let login = wire::decode::<Login>(&login).unwrap();
    assert_eq!(login.auth_secret, *sotto::account::auth_secret("alice", "new password 42"));
    let id = login.hdr.msg_id.get();
    feed(&mut s, &status(id, Status::Pending, code::PENDING, ""));
    let pass = wire::decode::<sotto::opcodes::Passphrase>(&s.poll_transmit().unwrap()).unwrap().pass_secret;
    assert_eq!(pass, *sotto::account::pass_secret("alice", "one two three"));
}

#[test]
fn a_refused_or_unanswered_password_change_keeps_the_current_secrets() {
    let mut s = alice_session(with_bob());
    let (old, new) = s.password_change(("wrong one", "red green blue"), ("new password 42", "a b c")).unwrap();
    s.change_password(old, new, NOW).unwrap();
    let id = sent_id(&mut s);
    match feed(&mut s, &status(id, Status::Error, 401, "wrong user name or password")) {
        Some(Event::Failed(f)) => assert_eq!((f.cmd.as_str(), f.code), ("password", 401)),
        _ => panic!("expected failure"),
    }
    // The new secrets could not be stored (507): they did not change either.
    let current = s.login_verifier().unwrap();
    let (old, new) = s.password_change(("password123", "red green blue"), ("new password 42", "a b c")).unwrap();
    s.change_password(old, new, NOW).unwrap();
    let id = sent_id(&mut s);
    match feed(&mut s, &status(id, Status::Error, code::INSUFFICIENT_STORAGE, "storage failed")) {
        Some(Event::Failed(f)) => assert_eq!((f.cmd.as_str(), f.code), ("password", 507)),
        _ => panic!("expected failure"),
    }
    assert_eq!(s.login_verifier().as_deref(), Some(&*current), "the current secrets stay remembered");
    // A reply that is neither a success nor an error does not say: code 0, as no answer.
    let (old, new) = s.password_change(("password123", "red green blue"), ("new password 42", "a b c")).unwrap();
    s.change_password(old, new, NOW).unwrap();
    let id = sent_id(&mut s);
    match feed(&mut s, &status(id, Status::Pending, code::PENDING, "")) {
        Some(Event::Failed(f)) => assert_eq!((f.cmd.as_str(), f.code), ("password", 0)),
        _ => panic!("expected failure"),
    }
    assert_eq!(s.login_verifier().as_deref(), Some(&*current));
    // In flight when the connection drops: code 0 (the driver keeps the change staged).
    let (old, new) = s.password_change(("password123", "red green blue"), ("new password 42", "a b c")).unwrap();
    s.change_password(old, new, NOW).unwrap();
    sent_id(&mut s);
    s.connection_lost();
    assert!(matches!(s.poll_event(), Some(Event::Failed(f)) if (f.cmd.as_str(), f.code) == ("password", 0)));
    assert!(s.relogin(NOW));
    let login = wire::decode::<Login>(&s.poll_transmit().unwrap()).unwrap().auth_secret;
    assert_eq!(login, *sotto::account::auth_secret("alice", "password123"), "the current secrets");
}
