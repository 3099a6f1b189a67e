//! Accounts through the real binaries: register, login, passphrase, restart,
//! refusals at start-up, and a hostile neighbour that does not disturb a login.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{server_exit, Client, Server, TempDir};

const PW: &str = "password123";
const WORDS: &str = "red green blue";

#[test]
fn register_then_login_with_passphrase_authenticates() {
    let dir = TempDir::new("auth");
    let server = Server::start(&dir.join("data"));
    let mut c = Client::connect(&server, &dir.join("alice"));
    let v = c.register("alice", PW, WORDS);
    assert_eq!((v["type"].as_str(), v["cmd"].as_str()), (Some("ok"), Some("register")), "{v}");
    let v = c.login("Alice", PW, "Red Green Blue");
    assert_eq!((v["type"].as_str(), v["user"].as_str()), (Some("authenticated"), Some("alice")), "{v}");
    c.send("/quit");
    assert!(c.finish().success());
    // The private keys stayed on the client, 0600, under a 0700 home.
    let home_mode = std::fs::metadata(dir.join("alice")).unwrap().permissions().mode() & 0o777;
    assert_eq!(home_mode, 0o700);
    let key_files: Vec<_> =
        common::files_under(&dir.join("alice")).into_iter().filter(|p| p.ends_with("identity.key")).collect();
    assert_eq!(key_files.len(), 1, "one key file for alice");
    assert_eq!(std::fs::metadata(&key_files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    // Sealed in a key store whose manifest records the KEK's argon2id parameters
    // (m = 64 MiB, t = 3, p = 1) beside its salt (docs/CLIENT.md, "The key store").
    let manifest = key_files[0].with_file_name("manifest");
    let bytes = std::fs::read(&manifest).unwrap();
    assert_eq!(&bytes[..5], b"SOTS\x02");
    assert_eq!(&bytes[5..17], &[0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1]);
    assert!(std::fs::read(&key_files[0]).unwrap().starts_with(b"SOTK\x02"));
    // Nothing in it is the password, nor the secret the server checks.
    let auth = sotto::account::auth_secret("alice", PW);
    for file in common::files_under(&dir.join("alice")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(PW.len()).any(|w| w == PW.as_bytes()), "{file:?}");
        assert!(!bytes.windows(32).any(|w| w == &auth[..]), "{file:?}");
    }
}

fn assert_error(v: &serde_json::Value, cmd: &str, code: u64) {
    assert_eq!(
        (v["type"].as_str(), v["cmd"].as_str(), v["code"].as_u64()),
        (Some("error"), Some(cmd), Some(code)),
        "{v}"
    );
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[test]
fn wrong_password_and_wrong_passphrase_are_401() {
    let dir = TempDir::new("wrong");
    let server = Server::start(&dir.join("data"));
    let mut c = Client::connect(&server, &dir.join("home"));
    assert_eq!(c.register("bob", PW, WORDS)["type"], "ok");
    let (wrong_pw, wrong_words) = (c.login("bob", "password124", WORDS), c.login("bob", PW, "red green black"));
    assert_error(&wrong_pw, "login", 401);
    assert_error(&wrong_words, "login", 401);
    assert_eq!(wrong_pw["message"], wrong_words["message"], "one message: which secret was wrong is not said");
    // Two failures are free: the right credentials still work.
    let mut c2 = Client::connect(&server, &dir.join("home2"));
    let v = c2.login("bob", PW, WORDS);
    assert_eq!(v["type"], "authenticated");
    let uid = v["uid"].as_str().unwrap_or_default();
    assert!(uid.len() == 16 && uid.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{v}");
    // An unknown user is the same 401, and collects the same strikes: a
    // fourth try at that name from this address backs off.
    for _ in 0..3 {
        assert_error(&c.login("nobody", PW, WORDS), "login", 401);
    }
    let v = c.login("nobody", PW, WORDS);
    assert_error(&v, "login", 429);
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 1000), "{v}");
    // Those failures were at another name: bob still logs in from this address.
    let mut c3 = Client::connect(&server, &dir.join("home3"));
    assert_eq!(c3.login("bob", PW, WORDS)["type"], "authenticated");
    // Nothing secret reaches the server's log.
    drop(c);
    drop(c2);
    drop(c3);
    let log = server.stderr.lock().unwrap().join("\n");
    for secret in [PW, "password124", "green", "black"] {
        assert!(!log.contains(secret), "server log contains {secret:?}:\n{log}");
    }
}

#[test]
fn duplicate_username_is_409_and_invalid_is_400() {
    let dir = TempDir::new("dup");
    let server = Server::start(&dir.join("data"));
    let mut c = Client::connect(&server, &dir.join("home"));
    assert_eq!(c.register("carol", PW, WORDS)["type"], "ok");
    let mut other = Client::connect(&server, &dir.join("home2"));
    assert_error(&other.register("CAROL", "another-password", "one two three"), "register", 409);
    assert_error(&other.register("x", PW, WORDS), "register", 400);
    assert_error(&other.register("bad/name", PW, WORDS), "register", 400);
    assert_error(&other.register("dave", "short", WORDS), "register", 400);
    assert_error(&other.register("dave", PW, "two words"), "register", 400);
    // The first account is intact.
    assert_eq!(other.login("carol", PW, WORDS)["type"], "authenticated");
}

#[test]
fn account_survives_a_restart() {
    let dir = TempDir::new("restart");
    let data = dir.join("data");
    let server = Server::start(&data);
    let mut c = Client::connect(&server, &dir.join("home"));
    assert_eq!(c.register("erin", PW, WORDS)["type"], "ok");
    drop(c);
    let status = server.stop();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    let server = Server::start(&data);
    let mut c = Client::connect(&server, &dir.join("home"));
    assert_eq!(c.login("erin", PW, WORDS)["type"], "authenticated");
    let mut users = std::fs::read_dir(data.join("users")).unwrap().flatten();
    let f = users.next().expect("one account file");
    assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn refuses_data_dir_readable_by_others() {
    let dir = TempDir::new("mode");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, err) = server_exit(&data, &common::build_key(), &[]);
    assert!(!status.success());
    assert!(err.contains("mode 0755") && err.contains("chmod 700"), "{err}");
}

#[test]
fn refuses_loose_or_foreign_key() {
    let dir = TempDir::new("key");
    let data = dir.join("data");
    let loose = dir.join("loose.pem");
    std::fs::copy(common::build_key(), &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, err) = server_exit(&data, &loose, &[]);
    assert!(!status.success() && err.contains("chmod 600"), "{err}");

    use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
    let (der, _) = sotto::identity::generate().unwrap();
    let pem = rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap().to_pkcs8_pem(LineEnding::LF).unwrap();
    let foreign = dir.join("foreign.pem");
    std::fs::write(&foreign, pem.as_bytes()).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (status, err) = server_exit(&data, &foreign, &[]);
    assert!(!status.success() && err.contains("does not match the public key"), "{err}");

    let (status, err) = server_exit(&data, &dir.join("missing.pem"), &[]);
    assert!(!status.success() && err.contains("make keys"), "{err}");
}

#[test]
fn garbage_client_does_not_disturb_a_concurrent_login() {
    let dir = TempDir::new("garbage");
    let server = Server::start(&dir.join("data"));
    let addr = server.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let spewer = std::thread::spawn(move || {
        let mut connections = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(mut s) = TcpStream::connect(&addr) else { continue };
            connections += 1;
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            for _ in 0..50 {
                let junk: [u8; 64] = sotto::crypto::random();
                if s.write_all(&junk).is_err() {
                    break;
                }
            }
        }
        connections
    });
    let mut c = Client::connect(&server, &dir.join("home"));
    assert_eq!(c.register("frank", PW, WORDS)["type"], "ok");
    assert_eq!(c.login("frank", PW, WORDS)["type"], "authenticated");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(spewer.join().unwrap() > 0, "the garbage client did connect");
}

#[test]
fn opcodes_flag_prints_the_audit_table() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sottod")).arg("--opcodes").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for row in [
        "100001  crea",
        "100002  auth",
        "100003  pass",
        "100009  smps",
        "100309  smpx",
        "100020  pkgt",
        "10001  cnnt",
        "200000  stat",
    ] {
        assert!(text.contains(row), "missing {row:?} in\n{text}");
    }
    assert!(text.contains(&sotto::crypto::hex(&sotto::opcodes::TABLE_HASH)));
}

#[test]
fn batch_client_reports_an_unreachable_server() {
    let dir = TempDir::new("unreach");
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = Client::start(&format!("127.0.0.1:{port}"), &dir.join("home"));
    let v = c.next().expect("an error line");
    assert_error(&v, "connect", 0);
    assert!(!c.finish().success());
}

#[test]
fn a_fourth_registration_from_one_address_within_a_minute_is_429() {
    let dir = TempDir::new("regflood");
    let server = Server::start_with(&dir.join("data"), &["--registrations", "3/60"]);
    for (i, name) in ["reg1", "reg2", "reg3"].iter().enumerate() {
        let mut c = Client::connect(&server, &dir.join(&format!("home{i}")));
        assert_eq!(c.register(name, PW, WORDS)["type"], "ok", "{name}");
    }
    let mut c = Client::connect(&server, &dir.join("home4"));
    let v = c.register("reg4", PW, WORDS);
    assert_error(&v, "register", 429);
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 60_000), "{v}");
}

#[test]
fn guesses_from_another_address_do_not_lock_the_owner_out() {
    use common::raw::{connect_from, Raw};
    use sotto::opcodes::Login;
    use zerocopy::FromZeros;
    let dir = TempDir::new("lockout");
    let server = Server::start(&dir.join("data"));
    let mut owner = Client::connect(&server, &dir.join("owner"));
    assert_eq!(owner.register("victim", PW, WORDS)["type"], "ok");
    // An attacker at 127.0.0.2 guesses until it is made to wait.
    let mut attacker = Raw::handshake(connect_from([127, 0, 0, 2].into(), &server.addr, None).unwrap()).unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let mut l = Login::new_zeroed();
        l.set_username("victim").unwrap();
        l.auth_secret = *sotto::account::auth_secret("victim", "not-the-password");
        let id = attacker.request(l);
        codes.push(attacker.stat_for(id).expect("an answer").hdr.code.get());
    }
    assert_eq!(codes, [401, 401, 401, 429, 429], "the attacker's own address backs off");
    // The owner, from 127.0.0.1, is not kept waiting.
    let v = owner.login("victim", PW, WORDS);
    assert_eq!(v["type"], "authenticated", "{v}");
}
