//! Room moderation, message removal, account deletion and `/users` through
//! the real binaries: an owner's kick, ban and password change, after which
//! the removed member reads nothing new; ownership handed on; a DM withdrawn
//! before delivery and not after; a tombstone a joiner sees; a deleted
//! account whose waiting DMs go back to their senders, online and offline,
//! whose rooms pass on and whose name stays reserved across a restart; and
//! `/users` under each `--list-users`.

mod common;

use std::time::Duration;

use common::{contacts, error, files_under, ok, relogin, user, Client, Server, TempDir, PW, WORDS};
use serde_json::Value;

const ROOM_PW: &str = "correct-horse-battery";
const NEW_PW: &str = "a-new-room-password";

fn kinds(c: &mut Client) -> Vec<Value> {
    c.settle(Duration::from_millis(300));
    c.take_backlog()
}

#[test]
fn kicked_member_reads_nothing_after_the_owner_changes_the_password() {
    let dir = TempDir::new("kick");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    let mut carol = user(&server, &dir, "carol", &[]);
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    bob.run(&format!("/join lobby {ROOM_PW}"), "joined");
    carol.run(&format!("/join lobby {ROOM_PW}"), "joined");
    error(&bob.run("/room-kick lobby carol", "room-kick"), "room-kick", 403);
    ok(&alice.run("/say lobby said under the old key", "say"), "say");
    carol.room_messages("lobby", 1);
    bob.room_messages("lobby", 1);

    ok(&alice.run("/room-kick lobby @bob too much spam", "room-kick"), "room-kick");
    let v = bob.wait_for("room_kicked", |v| v["type"] == "room_kicked");
    assert_eq!(
        (v["room"].as_str(), v["by"].as_str(), v["reason"].as_str(), v["banned"].as_bool()),
        (Some("lobby"), Some("alice"), Some("too much spam"), Some(false)),
        "{v}"
    );
    let v = carol.wait_for("bob left", |v| v["type"] == "member_left");
    assert_eq!(v["name"], "bob");
    // Kicked, not banned: the old password still lets bob in.
    bob.run(&format!("/join lobby {ROOM_PW}"), "joined");
    ok(&alice.run("/room-kick lobby bob", "room-kick"), "room-kick");
    bob.wait_for("room_kicked", |v| v["type"] == "room_kicked");
    // What bob had before the change (the history of his rejoin) is his; what follows is not.
    kinds(&mut bob);

    ok(&alice.run(&format!("/room-password lobby {NEW_PW}"), "room-password"), "room-password");
    let v = carol.wait_for("password changed", |v| v["type"] == "room_password_changed");
    assert_eq!((v["room"].as_str(), v["by"].as_str()), (Some("lobby"), Some("alice")));
    error(&carol.run("/say lobby still here?", "say"), "say", 403);
    let joined = carol.run(&format!("/join lobby {NEW_PW}"), "joined");
    let mut names: Vec<&str> =
        joined["members"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["alice", "carol"], "{joined}");
    let history = kinds(&mut carol);
    assert!(history.iter().all(|v| v["type"] != "room_message"), "the old key's history is gone: {history:?}");

    ok(&alice.run("/say lobby after the change", "say"), "say");
    let got = carol.room_messages("lobby", 1);
    assert_eq!((got[0]["text"].as_str(), got[0]["verified"].as_bool()), (Some("after the change"), Some(true)));
    // bob: no delivery, and neither the old password nor the stored key opens the room.
    assert!(kinds(&mut bob).iter().all(|v| v["type"] != "room_message"), "bob got a room message");
    error(&bob.run(&format!("/join lobby {ROOM_PW}"), "join"), "join", 403);
    error(&bob.run("/join lobby", "join"), "join", 400);
    error(&bob.run("/say lobby hello?", "say"), "say", 403);
    assert!(kinds(&mut bob).iter().all(|v| v["type"] != "room_message"));
}

#[test]
fn a_ban_refuses_the_rejoin_until_it_is_lifted_and_ownership_passes_on() {
    let dir = TempDir::new("ban");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    let mut carol = user(&server, &dir, "carol", &[]);
    ok(&alice.run(&format!("/create club {ROOM_PW}"), "create"), "create");
    bob.run(&format!("/join club {ROOM_PW}"), "joined");
    carol.run(&format!("/join club {ROOM_PW}"), "joined");
    ok(&alice.run("/room-ban club bob", "room-ban"), "room-ban");
    let v = bob.wait_for("room_kicked", |v| v["type"] == "room_kicked");
    assert_eq!(v["banned"], true, "{v}");
    let v = bob.run(&format!("/join club {ROOM_PW}"), "join");
    error(&v, "join", 403);
    assert!(v["message"].as_str().unwrap().contains("banned"), "{v}");
    ok(&alice.run("/room-unban club bob", "room-unban"), "room-unban");
    error(&alice.run("/room-unban club bob", "room-unban"), "room-unban", 404);
    bob.run(&format!("/join club {ROOM_PW}"), "joined");

    ok(&alice.run("/room-owner club carol", "room-owner"), "room-owner");
    for c in [&mut bob, &mut carol] {
        let v = c.wait_for("room_owner", |v| v["type"] == "room_owner");
        assert_eq!((v["room"].as_str(), v["owner"].as_str()), (Some("club"), Some("carol")), "{v}");
    }
    error(&alice.run("/room-kick club bob", "room-kick"), "room-kick", 403);
    ok(&carol.run("/room-kick club alice", "room-kick"), "room-kick");
    alice.wait_for("room_kicked", |v| v["type"] == "room_kicked" && v["by"] == "carol");

    // An offline member hears of its kick at its next login, and its key is gone.
    assert!(bob.finish().success());
    ok(&carol.run("/room-kick club bob see you", "room-kick"), "room-kick");
    let mut bob = relogin(&server, &dir, "bob", &[]);
    let v = bob.wait_for("room_kicked at login", |v| v["type"] == "room_kicked");
    assert_eq!((v["by"].as_str(), v["reason"].as_str()), (Some("carol"), Some("see you")), "{v}");
    error(&bob.run("/join club", "join"), "join", 400);
}

#[test]
fn unsend_withdraws_a_waiting_dm_but_not_a_delivered_one() {
    let dir = TempDir::new("unsend");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    assert!(bob.finish().success());
    let hidden = alice.run("/msg @bob never to be read", "sent");
    assert_eq!(hidden["status"], "queued", "{hidden}");
    let id = hidden["id"].as_str().unwrap().to_owned();
    let v = alice.run(&format!("/unsend {id}"), "unsent");
    assert_eq!((v["type"].as_str(), v["id"].as_str()), (Some("unsent"), Some(id.as_str())), "{v}");
    assert!(v.get("room").is_none(), "{v}");
    error(&alice.run(&format!("/unsend {id}"), "unsend"), "unsend", 404);
    let shown = alice.run("/msg @bob this one stays", "sent");
    let shown_id = shown["id"].as_str().unwrap().to_owned();

    let mut bob = relogin(&server, &dir, "bob", &[]);
    let dm = bob.wait_for("a dm", |v| v["type"] == "dm");
    assert_eq!((dm["text"].as_str(), dm["verified"].as_bool()), (Some("this one stays"), Some(true)), "{dm}");
    assert!(kinds(&mut bob).iter().all(|v| v["type"] != "dm"), "the withdrawn message never arrives");
    alice.wait_for("delivered", |v| v["type"] == "delivered" && v["id"] == shown_id.as_str());
    error(&alice.run(&format!("/unsend {shown_id}"), "unsend"), "unsend", 404);
    error(&alice.run(&format!("/unsend @bob {shown_id}"), "unsend"), "unsend", 404);

    // /forget erases what bob keeps from alice, on his machine only.
    let kept = bob.run("/history @alice", "history");
    assert_eq!(kept["messages"].as_array().map(Vec::len), Some(1), "{kept}");
    ok(&bob.run("/forget @alice", "forget"), "forget");
    let kept = bob.run("/history @alice", "history");
    assert_eq!(kept["messages"], serde_json::json!([]), "{kept}");
    error(&bob.run("/forget @nobody", "forget"), "forget", 404);
}

#[test]
fn a_removed_room_message_is_a_tombstone_for_members_and_joiners() {
    let dir = TempDir::new("tomb");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    ok(&alice.run(&format!("/create hall {ROOM_PW}"), "create"), "create");
    bob.run(&format!("/join hall {ROOM_PW}"), "joined");
    let first = alice.run("/say hall first words", "say");
    let first_id = first["id"].as_str().expect("say's ok names the message id").to_owned();
    ok(&alice.run("/say hall second words", "say"), "say");
    let seen = bob.room_messages("hall", 2);
    assert_eq!(seen[0]["id"], first_id.as_str(), "the id bob sees is the one alice got");
    let second_id = seen[1]["id"].as_str().unwrap().to_owned();
    error(&bob.run(&format!("/unsend hall {first_id}"), "unsend"), "unsend", 403);

    let v = alice.run(&format!("/unsend hall {first_id}"), "unsent");
    assert_eq!((v["id"].as_str(), v["room"].as_str()), (Some(first_id.as_str()), Some("hall")), "{v}");
    let v = bob.wait_for("tombstone", |v| v["type"] == "room_message_deleted");
    assert_eq!(
        (v["room"].as_str(), v["id"].as_str(), v["from"].as_str(), v["by"].as_str(), v["history"].as_bool()),
        (Some("hall"), Some(first_id.as_str()), Some("alice"), Some("alice"), Some(false)),
        "{v}"
    );
    // bob removes his own.
    let own = bob.run("/say hall mine", "say");
    let own_id = own["id"].as_str().unwrap().to_owned();
    bob.run(&format!("/unsend hall {own_id}"), "unsent");

    let mut carol = user(&server, &dir, "carol", &[]);
    carol.run(&format!("/join hall {ROOM_PW}"), "joined");
    let history = kinds(&mut carol);
    let order: Vec<(String, String)> = history
        .iter()
        .filter(|v| v["type"] == "room_message" || v["type"] == "room_message_deleted")
        .map(|v| (v["type"].as_str().unwrap().to_owned(), v["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        order,
        [
            ("room_message_deleted".to_owned(), first_id.clone()),
            ("room_message".to_owned(), second_id),
            ("room_message_deleted".to_owned(), own_id),
        ],
        "{history:?}"
    );
    assert!(history.iter().all(|v| v["text"] != "first words" && v["text"] != "mine"), "no removed text is sent");
    let tomb = history.iter().find(|v| v["type"] == "room_message_deleted").unwrap();
    assert_eq!(tomb["history"], true);
}

#[test]
fn deleting_an_account_returns_waiting_dms_hands_rooms_on_and_reserves_the_name() {
    let dir = TempDir::new("delacct");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    let mut carol = user(&server, &dir, "carol", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    contacts(&mut carol, "carol", &mut bob, "bob");
    ok(&bob.run(&format!("/create bobs {ROOM_PW}"), "create"), "create");
    alice.run(&format!("/join bobs {ROOM_PW}"), "joined");
    carol.run(&format!("/join bobs {ROOM_PW}"), "joined");
    ok(&bob.run(&format!("/create alone {ROOM_PW}"), "create"), "create");
    assert!(bob.finish().success());

    let to_bob = alice.run("/msg @bob are you there?", "sent");
    assert_eq!(to_bob["status"], "queued");
    let from_carol = carol.run("/msg @bob carol writes", "sent");
    assert_eq!(from_carol["status"], "queued");
    assert!(carol.finish().success());

    // bob logs in where his keys are not: the DMs reach that session, but it
    // cannot read them and does not acknowledge them: they still wait.
    let mut gone = common::client_for(&server, &dir, "bob-elsewhere", &[]);
    assert_eq!(gone.login("bob", PW, WORDS)["type"], "authenticated");
    error(&gone.run("/delete-account wrongpassword red green blue", "delete-account"), "delete-account", 401);
    gone.send(&format!("/delete-account {PW} {WORDS}"));
    gone.wait_for("account_deleted", |v| v["type"] == "account_deleted");
    gone.wait_for("bye", |v| v["type"] == "bye");
    assert!(gone.finish().success(), "the run ends cleanly");

    let back = alice.wait_for("returned", |v| v["type"] == "sent" && v["status"] == "returned");
    assert_eq!(
        (back["id"].as_str(), back["to"].as_str(), back["reason"].as_str()),
        (to_bob["id"].as_str(), Some("bob"), Some("not delivered: account deleted")),
        "{back}"
    );
    let v = alice.wait_for("room_owner", |v| v["type"] == "room_owner");
    assert_eq!((v["room"].as_str(), v["owner"].as_str()), (Some("bobs"), Some("alice")), "the longest-standing member");
    let mut carol = relogin(&server, &dir, "carol", &[]);
    let back = carol.wait_for("returned at login", |v| v["type"] == "sent" && v["status"] == "returned");
    assert_eq!(back["id"], from_carol["id"], "{back}");
    ok(&alice.run("/room-kick bobs carol", "room-kick"), "room-kick");
    let rooms = alice.run("/rooms", "rooms");
    assert_eq!(rooms["rooms"], serde_json::json!([{"name": "bobs", "members": 1}]), "alone went with bob");

    let mut again = common::client_for(&server, &dir, "bob-new", &[]);
    error(&again.login("bob", PW, WORDS), "login", 401);
    let v = again.register("bob", PW, WORDS);
    error(&v, "register", 409);
    assert!(v["message"].as_str().unwrap().contains("reserved"), "{v}");
    drop(again);
    let users: Vec<_> = files_under(&data).into_iter().filter(|p| p.extension().is_some_and(|e| e == "user")).collect();
    assert_eq!(users.len(), 2, "bob's account file is gone: {users:?}");

    drop((alice, carol));
    assert!(server.stop().success());
    let server = Server::start(&data);
    let mut again = common::client_for(&server, &dir, "bob-later", &[]);
    error(&again.register("bob", PW, WORDS), "register", 409);
    let mut dave = common::client_for(&server, &dir, "dave", &[]);
    assert_eq!(dave.register("dave", PW, WORDS)["type"], "ok", "other names are free");
}

fn users_of(server: &Server, dir: &TempDir) -> (Value, Value) {
    let mut alice = user(server, dir, "alice", &[]);
    let mut bob = user(server, dir, "bob", &[]);
    let _carol = user(server, dir, "carol", &[]);
    ok(&alice.run(&format!("/create pair {ROOM_PW}"), "create"), "create");
    bob.run(&format!("/join pair {ROOM_PW}"), "joined");
    (alice.run("/users", "users"), bob.run("/users", "users"))
}

#[test]
fn users_lists_what_list_users_allows() {
    let dir = TempDir::new("users-shared");
    let server = Server::start(&dir.join("data"));
    let (alice, _) = users_of(&server, &dir);
    assert_eq!(alice["list"], serde_json::json!([{"name": "bob", "online": true}]), "shared: only bob");

    let dir = TempDir::new("users-all");
    let server = Server::start_with(&dir.join("data"), &["--list-users", "all"]);
    let (alice, _) = users_of(&server, &dir);
    let names: Vec<&str> = alice["list"].as_array().unwrap().iter().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"], "{alice}");

    let dir = TempDir::new("users-off");
    let server = Server::start_with(&dir.join("data"), &["--list-users", "off"]);
    let (alice, _) = users_of(&server, &dir);
    error(&alice, "users", 403);
}
