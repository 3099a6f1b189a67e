//! Account states, roles, denials, kicks, announcements and login records
//! through the real binaries: sottod, `sotto --batch`, and sottoctl over the
//! admin socket (docs/OPERATIONS.md "sottoctl", PROTOCOL.md §11-12).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{client_for, error, ok, relogin, user, Client, Server, TempDir, PW, WORDS};
use serde_json::Value;

/// Runs sottoctl against the server of `data` (as this process's user).
fn ctl(data: &Path, args: &[&str]) -> Output {
    ctl_as(data, args, None)
}

fn ctl_as(data: &Path, args: &[&str], uid: Option<u32>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sottoctl"));
    cmd.arg("--data").arg(data).args(args);
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("run sottoctl")
}

/// sottoctl's JSON answer, which must be a success.
fn ctl_json(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(data, &all);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "sottoctl {args:?}: {text} {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v["ok"], true, "{v}");
    v
}

/// A client that registered `name` and quit: the account exists, offline.
fn registered(server: &Server, dir: &TempDir, name: &str) {
    let mut c = client_for(server, dir, name, &[]);
    assert_eq!(c.register(name, PW, WORDS)["type"], "ok");
    assert!(c.finish().success());
}

/// Sends a login on `c`: `authenticated`, or its error.
fn login(c: &mut Client, name: &str, password: &str) -> Value {
    c.send(&format!("/login {name} {password} {WORDS}"));
    c.wait_for("login answer", |v| v["type"] == "authenticated" || (v["type"] == "error" && v["cmd"] == "login"))
}

/// A login attempt on a fresh client: its answer.
fn try_login(server: &Server, dir: &TempDir, name: &str, password: &str) -> (Client, Value) {
    let mut c = client_for(server, dir, name, &[]);
    let v = login(&mut c, name, password);
    (c, v)
}

#[test]
fn each_state_refuses_login_with_its_message_and_survives_a_restart() {
    let dir = TempDir::new("states");
    let data = dir.join("data");
    let server = Server::start(&data);
    registered(&server, &dir, "bob");

    ctl_json(&data, &["hold", "bob"]);
    let (_c, v) = try_login(&server, &dir, "bob", PW);
    error(&v, "login", 403);
    assert_eq!(v["message"], "awaiting approval", "{v}");

    let v = ctl_json(&data, &["ban", "bob", "--reason", "spamming the lobby", "--for", "2h"]);
    assert!(v["message"].as_str().unwrap().starts_with("bob is banned until "), "{v}");
    let (_c, v) = try_login(&server, &dir, "bob", PW);
    error(&v, "login", 403);
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("banned until 20") && msg.ends_with(" UTC: spamming the lobby"), "{v}");

    // Blocked: exactly what a wrong password gets.
    ctl_json(&data, &["block", "bob"]);
    let (_c, blocked) = try_login(&server, &dir, "bob", PW);
    registered(&server, &dir, "dave");
    let (_c, wrong) = try_login(&server, &dir, "dave", "not-the-password");
    error(&wrong, "login", 401);
    assert_eq!(blocked, wrong, "a blocked account reads as a wrong password");

    // The state is on disk: a restart keeps bob blocked, until unblocked.
    drop(server);
    let server = Server::start(&data);
    let (_c, v) = try_login(&server, &dir, "bob", PW);
    assert_eq!(v, wrong);
    let shown = ctl_json(&data, &["show", "bob"]);
    assert_eq!(shown["state"], "blocked", "{shown}");
    let reasons: Vec<&str> =
        shown["failed"].as_array().unwrap().iter().map(|f| f["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["blocked", "blocked", "banned", "on hold"], "{shown}");
    ctl_json(&data, &["unban", "bob"]);
    let (_c, v) = try_login(&server, &dir, "bob", PW);
    assert_eq!(v["type"], "authenticated", "{v}");
}

#[test]
fn a_timed_ban_lifts_by_itself() {
    let dir = TempDir::new("timedban");
    let data = dir.join("data");
    let server = Server::start(&data);
    registered(&server, &dir, "bob");
    ctl_json(&data, &["ban", "bob", "--reason", "cool off", "--for", "2s"]);
    let mut c = client_for(&server, &dir, "bob", &[]);
    let v = login(&mut c, "bob", PW);
    error(&v, "login", 403);
    // Polled, not timed: the ban ends when the server's clock passes its end.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = login(&mut c, "bob", PW);
        if v["type"] == "authenticated" {
            break;
        }
        error(&v, "login", 403);
        assert!(Instant::now() < deadline, "the ban did not lift: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(ctl_json(&data, &["show", "bob"])["state"], "active");
}

#[test]
fn registration_approval_and_closed() {
    let dir = TempDir::new("approval");
    let data = dir.join("data");
    let server = Server::start_with(&data, &["--rate", "off", "--registration", "approval"]);
    let mut c = client_for(&server, &dir, "carol", &[]);
    assert_eq!(c.register("carol", PW, WORDS)["type"], "ok");
    let v = login(&mut c, "carol", PW);
    error(&v, "login", 403);
    assert_eq!(v["message"], "awaiting approval");
    let users = ctl_json(&data, &["users"]);
    assert_eq!(users["users"][0]["state"], "on hold", "{users}");
    ctl_json(&data, &["approve", "carol"]);
    let v = login(&mut c, "carol", PW);
    assert_eq!(v["type"], "authenticated", "{v}");
    drop(server);

    let server = Server::start_with(&data, &["--registration", "closed"]);
    let mut c = client_for(&server, &dir, "erin", &[]);
    let v = c.register("erin", PW, WORDS);
    error(&v, "register", 403);
    assert!(v["message"].as_str().unwrap().contains("registration is closed"), "{v}");
}

#[test]
fn a_kick_ends_the_client_and_a_banned_user_cannot_come_back() {
    let dir = TempDir::new("kick");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);

    let v = ctl_json(&data, &["kick", "alice", "--reason", "calm down"]);
    assert_eq!(v["message"], "alice: 1 sessions closed", "{v}");
    let k = alice.wait_for("kicked", |v| v["type"] == "kicked");
    assert_eq!((k["by"].as_str(), k["reason"].as_str()), (Some("operator"), Some("calm down")));
    assert_eq!(alice.finish().code(), Some(1), "a kicked client ends instead of reconnecting");

    // A ban closes the sessions too; the client does not reconnect into it, and a new login is refused.
    ctl_json(&data, &["ban", "bob", "--reason", "spam"]);
    let k = bob.wait_for("kicked", |v| v["type"] == "kicked");
    assert_eq!(k["reason"], "banned: spam");
    assert!(!bob.seen.iter().any(|v| v["type"] == "reconnected"));
    assert_eq!(bob.finish().code(), Some(1));
    let (_c, v) = try_login(&server, &dir, "bob", PW);
    error(&v, "login", 403);
    assert!(v["message"].as_str().unwrap().starts_with("banned indefinitely: spam"), "{v}");

    // In-band: only an admin may /kick.
    let mut carol = user(&server, &dir, "carol", &[]);
    let mut dave = user(&server, &dir, "dave", &[]);
    let v = dave.run("/kick carol", "kick");
    error(&v, "kick", 403);
    assert!(v["message"].as_str().unwrap().contains("needs the role admin"), "{v}");
    let v = ctl_json(&data, &["grant", "dave", "admin"]);
    assert_eq!(v["message"], "dave: roles user,admin");
    ok(&dave.run("/kick @carol enough", "kick"), "kick");
    let k = carol.wait_for("kicked", |v| v["type"] == "kicked");
    assert_eq!((k["by"].as_str(), k["reason"].as_str()), (Some("dave"), Some("enough")));
    ctl_json(&data, &["revoke", "dave", "admin"]);
    error(&dave.run("/kick carol", "kick"), "kick", 403);

    // A block says nothing: the session just ends, the client takes it for a
    // lost connection, and its logins read as a wrong password.
    let v = ctl_json(&data, &["block", "dave"]);
    assert!(v["message"].as_str().unwrap().starts_with("dave is blocked"), "{v}");
    let d = dave.wait_for("disconnected", |v| v["type"] == "disconnected");
    assert!(!dave.seen.iter().any(|v| v["type"] == "kicked"), "no notice: {d}");
}

#[test]
fn an_announcement_reaches_online_users_now_and_offline_ones_once_at_login() {
    let dir = TempDir::new("announce");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    registered(&server, &dir, "bob");
    let v = ctl_json(&data, &["announce", "maintenance", "at", "noon"]);
    assert!(v["message"].as_str().unwrap().starts_with("announced to 1 online users"), "{v}");
    let a = alice.wait_for("announcement", |v| v["type"] == "announcement");
    assert_eq!((a["from"].as_str(), a["text"].as_str()), (Some("operator"), Some("maintenance at noon")));

    let mut bob = relogin(&server, &dir, "bob", &[]);
    let a = bob.wait_for("announcement", |v| v["type"] == "announcement");
    assert_eq!(a["text"], "maintenance at noon");
    assert!(bob.finish().success());
    // Once: the next login brings nothing (it would come before the answer to /rooms).
    let mut bob = relogin(&server, &dir, "bob", &[]);
    bob.run("/rooms", "rooms");
    assert!(!bob.seen.iter().any(|v| v["type"] == "announcement"), "{:?}", bob.seen);

    // An admin in-band; alice sees it live, stored durably for the others.
    ctl_json(&data, &["grant", "alice", "admin"]);
    let mut alice = relogin(&server, &dir, "alice", &[]);
    ok(&alice.run("/announce back in five", "announce"), "announce");
    let a = bob.wait_for("announcement", |v| v["type"] == "announcement");
    assert_eq!((a["from"].as_str(), a["text"].as_str()), (Some("alice"), Some("back in five")));
    error(&bob.run("/announce me too", "announce"), "announce", 403);
}

#[test]
fn a_deny_list_mutes_one_user_only() {
    let dir = TempDir::new("deny");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    ok(&alice.run("/create lobby correct-horse-battery", "create"), "create");
    bob.run("/join lobby correct-horse-battery", "joined");

    let out = ctl(&data, &["deny", "bob", "srx"]);
    assert_eq!(out.status.code(), Some(2), "unknown mnemonic refused before sending");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mnemonic `srx`"));
    let v = ctl_json(&data, &["deny", "bob", "srm", "smp"]);
    assert_eq!(v["message"], "bob: denied srm smp", "{v}");
    let v = bob.run("/say lobby can anyone hear me", "say");
    error(&v, "say", 403);
    assert!(v["message"].as_str().unwrap().contains("denied to this account by the operator"), "{v}");
    ok(&alice.run("/say lobby alice still talks", "say"), "say");
    assert_eq!(bob.room_messages("lobby", 1)[0]["text"], "alice still talks");
    assert_eq!(ctl_json(&data, &["show", "bob"])["denied"], serde_json::json!(["srm", "smp"]));

    ctl_json(&data, &["allow", "bob", "srm"]);
    ok(&bob.run("/say lobby back again", "say"), "say");
    assert_eq!(alice.room_messages("lobby", 1)[0]["text"], "back again");
}

#[test]
fn the_session_limit_refuses_the_next_login() {
    let dir = TempDir::new("sessions");
    let data = dir.join("data");
    let server = Server::start_with(&data, &["--rate", "off", "--sessions-per-user", "2"]);
    let _a = user(&server, &dir, "alice", &[]);
    let _b = relogin(&server, &dir, "alice", &[]);
    let (_c, v) = try_login(&server, &dir, "alice", PW);
    error(&v, "login", 403);
    assert_eq!(v["message"], "too many sessions: at most 2 per user; close one first");
    let stats = ctl_json(&data, &["stats"]);
    assert_eq!((stats["users_online"].as_u64(), stats["sessions"].as_u64()), (Some(1), Some(2)), "{stats}");
    assert_eq!(stats["refusals"]["session limit (403)"], 1, "{stats}");
}

#[test]
fn the_login_record_tells_of_failed_logins_since_the_last_visit() {
    let dir = TempDir::new("records");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let first = alice.wait_for("login_record", |v| v["type"] == "login_record");
    assert_eq!(first, serde_json::json!({"type": "login_record", "failed": []}), "a first login");
    assert!(alice.finish().success());
    // Two failures: a third in a row would make the next login wait (back-off, 429).
    let (_c, v) = try_login(&server, &dir, "alice", "wrong-password");
    error(&v, "login", 401);
    let mut c = client_for(&server, &dir, "alice", &[]);
    c.send(&format!("/login alice {PW} red green purple"));
    let v = c.wait_for("login error", |v| v["type"] == "error");
    error(&v, "login", 401);
    let v = c.run(&format!("/login alice {PW} {WORDS}"), "authenticated");
    assert_eq!(v["type"], "authenticated");
    let next = c.next().unwrap();
    assert_eq!(next["type"], "login_record", "right after authenticated: {next}");
    assert_eq!(next["last"]["addr"], "127.0.0.1", "{next}");
    let failed = next["failed"].as_array().unwrap();
    let reasons: Vec<&str> = failed.iter().map(|f| f["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["wrong passphrase", "wrong password"], "{next}");
    assert!(failed.iter().all(|f| f["addr"] == "127.0.0.1" && f["ts"].as_u64() > next["last"]["ts"].as_u64()));
    let shown = ctl(&data, &["show", "alice"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("failed logins:") && text.contains("wrong passphrase"), "{text}");
    assert!(text.contains("sessions  1"), "{text}");
}

#[test]
fn sottoctl_says_when_no_server_runs_and_names_unknown_users() {
    let dir = TempDir::new("ctlerr");
    let data = dir.join("data");
    let out = ctl(&data, &["users"]);
    assert_eq!(out.status.code(), Some(3), "no server: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server running"));
    let server = Server::start(&data);
    let out = ctl(&data, &["--json", "show", "nobody-here"]);
    assert_eq!(out.status.code(), Some(5));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["ok"].as_bool(), v["code"].as_u64()), (Some(false), Some(404)), "{v}");
    drop(server);
}

#[test]
fn sottoctl_is_refused_for_an_unprivileged_caller() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (as CI runs): it runs sottod as `daemon` and sottoctl as `nobody`"
    );
    let dir = TempDir::new("ctlpriv");
    let data = dir.join("data");
    // The service user is someone else than the caller.
    let server = Server::start_with(&data, &["--rate", "off", "--user", "daemon"]);
    let nobody = 65534;
    // The socket is 0600 in a private directory: the kernel refuses first.
    let out = ctl_as(&data, &["users"], Some(nobody));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"), "{out:?}");
    // Opened up by mistake, sottod still refuses: SO_PEERCRED is neither root nor its user.
    use std::os::unix::fs::PermissionsExt;
    for (p, mode) in [(&dir.0, 0o711), (&data, 0o711), (&data.join("admin.sock"), 0o666)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = ctl_as(&data, &["users"], Some(nobody));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only root and its service user"), "{out:?}");
    let deadline = Instant::now() + common::WAIT;
    while !server.stderr.lock().unwrap().iter().any(|l| l.contains("admin socket: refused uid 65534")) {
        assert!(Instant::now() < deadline, "no log line: {:?}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Root still may.
    assert!(ctl(&data, &["users"]).status.success());
}

#[test]
fn a_corrupt_account_state_file_stops_the_start_naming_it() {
    let dir = TempDir::new("acctcorrupt");
    let data = dir.join("data");
    let server = Server::start(&data);
    registered(&server, &dir, "bob");
    ctl_json(&data, &["hold", "bob"]);
    assert!(server.stop().success());
    let file = common::files_under(&data.join("users"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "acct"))
        .expect("an .acct file");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let mut extra = common::test_defaults();
    extra.extend(["--rate", "off"]);
    let (status, err) = common::server_exit(&data, &common::build_key(), &extra);
    assert!(!status.success(), "{err}");
    assert!(err.contains(".acct: corrupt record (checksum mismatch)"), "{err}");
}

#[test]
fn the_audit_table_shows_who_may_send_each_request() {
    let out = Command::new(env!("CARGO_BIN_EXE_sottod")).arg("--opcodes").output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let row = |mnemonic: &str| {
        table.lines().find(|l| l.split_whitespace().nth(1) == Some(mnemonic)).unwrap_or_else(|| panic!("{mnemonic}"))
    };
    assert!(table.lines().nth(1).is_some_and(|header| header.contains("roles")), "{table}");
    assert_eq!(row("kick").split_whitespace().nth(6), Some("admin"), "{}", row("kick"));
    assert_eq!(row("srms").split_whitespace().nth(6), Some("user"), "{}", row("srms"));
    assert!(row("aset").contains("admin_request") && row("arep").contains("admin_response"));
}

#[test]
fn sottoctl_delete_returns_waiting_dms_removes_the_files_and_reserves_the_name() {
    let dir = TempDir::new("adm-delete");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    common::contacts(&mut alice, "alice", &mut bob, "bob");
    assert!(bob.finish().success());
    let to_bob = alice.run("/msg @bob still there?", "sent");
    assert_eq!(to_bob["status"], "queued");
    // Both have an operator state on disk (users/<uid>.acct: logins, and bob's ban).
    ctl_json(&data, &["ban", "bob", "--reason", "spam"]);
    let ends =
        |ext: &str| common::files_under(&data).into_iter().filter(|p| p.extension().is_some_and(|e| e == ext)).count();
    assert_eq!((ends("user"), ends("acct")), (2, 2));

    let v = ctl_json(&data, &["delete", "bob"]);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("bob deleted")), "{v}");
    let back = alice.wait_for("returned", |v| v["type"] == "sent" && v["status"] == "returned");
    assert_eq!(
        (back["id"].as_str(), back["reason"].as_str()),
        (to_bob["id"].as_str(), Some("not delivered: account deleted"))
    );
    assert_eq!((ends("user"), ends("acct")), (1, 1), "bob's account and its operator state are gone");
    let out = ctl(&data, &["delete", "bob"]);
    assert_eq!(out.status.code(), Some(5), "a second delete: no such user");

    let mut again = client_for(&server, &dir, "bob-new", &[]);
    error(&again.login("bob", PW, WORDS), "login", 401);
    let v = again.register("bob", PW, WORDS);
    error(&v, "register", 409);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("reserved")), "{v}");
}
