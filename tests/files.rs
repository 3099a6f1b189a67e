//! File transfer through the real binaries (issue 14, PROTOCOL.md §10): a
//! 20 MiB file to a DM contact and to a room of three, hashes equal; an
//! upload interrupted by killing the server and resumed after the restart
//! without starting over; a recipient who was offline; the size limit; the
//! quota; a hostile file name and a name already taken; a chunk altered on
//! the server's disk; an expiry.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{contacts, error, ok, relogin, relogin_at, user, Client, Server, TempDir, PW, WORDS};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;
const CHUNK: usize = 16_384;
/// A chunk record on the server's disk: index, IV, tag, data, SHA-256 (PROTOCOL.md §10).
const RECORD: usize = 4 + 16 + 32 + CHUNK + 32;

/// `n` bytes that differ from file to file and position to position.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn hex_sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `/send`, answered by `file_offered`; returns it.
fn send(c: &mut Client, to: &str, path: &Path) -> Value {
    let v = c.run(&format!("/send {to} {}", path.display()), "file_offered");
    assert_eq!(v["type"], "file_offered", "{v}");
    assert_eq!(v["to"], to, "{v}");
    v
}

fn uploaded(c: &mut Client, id: &str) -> Value {
    c.wait_for("file_uploaded", |v| v["type"] == "file_uploaded" && v["id"] == id)
}

fn offer(c: &mut Client, id: &str) -> Value {
    c.wait_for("file_offer", |v| v["type"] == "file_offer" && v["id"] == id)
}

/// `/get ID DIR` and its `file_received` (or the error it ends with).
fn get(c: &mut Client, id: &str, dir: &Path) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    c.send(&format!("/get {id} {}", dir.display()));
    c.wait_for("the end of a download", |v| {
        (v["type"] == "file_received" && v["id"] == id) || (v["type"] == "error" && v["cmd"] == "get")
    })
}

/// Checks a `file_received` against the bytes sent: path inside `dir`, size, hash, content.
fn received_whole(v: &Value, dir: &Path, bytes: &[u8]) -> PathBuf {
    assert_eq!(v["type"], "file_received", "{v}");
    let path = PathBuf::from(v["path"].as_str().unwrap());
    assert_eq!(path.parent().map(std::fs::canonicalize).unwrap().unwrap(), std::fs::canonicalize(dir).unwrap());
    assert_eq!(v["size"].as_u64(), Some(bytes.len() as u64), "{v}");
    assert_eq!(v["sha256"].as_str(), Some(hex_sha(bytes).as_str()), "{v}");
    assert_eq!(v["verified"], true, "{v}");
    assert!(std::fs::read(&path).unwrap() == bytes, "the file written differs from the file sent");
    path
}

/// The server's files of `id` (record and chunks) under its data directory.
fn server_files(data: &Path, id: &str) -> Vec<PathBuf> {
    common::files_under(&data.join("files"))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(id))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A room `room` created by `owner` and joined by the others.
fn room_of(owner: &mut Client, room: &str, others: &mut [&mut Client]) {
    ok(&owner.run(&format!("/create {room} roompassword1"), "create"), "create");
    for c in others.iter_mut() {
        let v = c.run(&format!("/join {room} roompassword1"), "joined");
        assert_eq!(v["type"], "joined", "{v}");
    }
}

#[test]
fn a_20_mib_file_reaches_a_contact_and_a_room_of_three_whole() {
    let dir = TempDir::new("files-basic");
    let data = dir.join("data");
    let server = Server::start_with(&data, &["--rate", "off", "--max-bps", "0"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    let mut carol = user(&server, &dir, "carol", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let bytes = random_bytes(20 * MIB + 1234, 1);
    let src = write_file(&dir.join("src"), "report.bin", &bytes);

    // To a contact.
    let v = send(&mut alice, "@bob", &src);
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!((v["name"].as_str(), v["size"].as_u64()), (Some("report.bin"), Some(bytes.len() as u64)), "{v}");
    assert_eq!(v["sha256"].as_str(), Some(hex_sha(&bytes).as_str()));
    let up = uploaded(&mut alice, &id);
    assert_eq!(up["sent"].as_u64(), Some(bytes.len() as u64), "every byte sent once: {up}");
    let o = offer(&mut bob, &id);
    assert_eq!(
        (o["from"].as_str(), o["name"].as_str(), o["size"].as_u64(), o["verified"].as_bool()),
        (Some("alice"), Some("report.bin"), Some(bytes.len() as u64), Some(true)),
        "{o}"
    );
    assert_eq!(o["sha256"], v["sha256"]);
    assert!(o.get("room").is_none(), "{o}");
    let files = bob.run("/files", "files");
    let listed = &files["list"].as_array().unwrap()[0];
    assert_eq!((listed["id"].as_str(), listed["state"].as_str()), (Some(id.as_str()), Some("offered")), "{files}");
    let got = get(&mut bob, &id, &dir.join("bob-dl"));
    received_whole(&got, &dir.join("bob-dl"), &bytes);
    assert!(bob.seen.iter().any(|v| v["type"] == "file_progress" && v["id"] == id.as_str()), "progress was reported");
    // The recipient has it: the server deletes the DM file.
    wait_until("the server deleted the DM file", || server_files(&data, &id).is_empty());
    let files = alice.run("/files", "files");
    assert_eq!(files["list"][0]["state"], "uploaded", "{files}");

    // To a room of three.
    room_of(&mut alice, "lab", &mut [&mut bob, &mut carol]);
    let v = send(&mut alice, "lab", &src);
    let id = v["id"].as_str().unwrap().to_owned();
    uploaded(&mut alice, &id);
    for (c, name) in [(&mut bob, "bob"), (&mut carol, "carol")] {
        let o = offer(c, &id);
        assert_eq!((o["from"].as_str(), o["room"].as_str()), (Some("alice"), Some("lab")), "{o}");
        let to = dir.join(&format!("{name}-room"));
        received_whole(&get(c, &id, &to), &to, &bytes);
    }
    // A room file stays for members who come later, until it expires.
    assert!(!server_files(&data, &id).is_empty());
    // Declining is answered ok.
    let v = send(&mut alice, "lab", &src);
    let id = v["id"].as_str().unwrap().to_owned();
    offer(&mut carol, &id);
    ok(&carol.run(&format!("/decline {}", &id[..8]), "decline"), "decline");
    error(&carol.run("/decline 0000000000000000", "decline"), "decline", 404);
    error(&carol.run("/get ffff", "get"), "get", 404);
}

#[test]
fn an_upload_cut_by_a_server_kill_resumes_after_the_restart_without_starting_over() {
    let dir = TempDir::new("files-resume");
    let data = dir.join("data");
    // 4 MB/s of input per connection: the upload takes long enough to be cut.
    let slow = ["--rate", "off", "--max-bps", "4000000"];
    let server = Server::start_with(&data, &slow);
    let addr = server.addr.clone();
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let bytes = random_bytes(20 * MIB, 2);
    let src = write_file(&dir.join("src"), "big.iso", &bytes);

    let v = send(&mut alice, "@bob", &src);
    let id = v["id"].as_str().unwrap().to_owned();
    let p = alice.wait_for("a quarter uploaded", |v| {
        v["type"] == "file_progress" && v["id"] == id.as_str() && v["done"].as_u64().unwrap() >= 5 * MIB as u64
    });
    assert!(p["done"].as_u64().unwrap() < bytes.len() as u64, "{p}");
    server.kill9();
    let server = Server::start_on(&data, &addr, &slow);
    alice.wait_for("reconnected", |v| v["type"] == "reconnected");
    let r = alice.wait_for("file_resumed", |v| v["type"] == "file_resumed" && v["id"] == id.as_str());
    let offset = r["offset"].as_u64().unwrap();
    assert!(offset >= 4 * MIB as u64 && offset % CHUNK as u64 == 0, "resumed from what the server had: {r}");
    let up = uploaded(&mut alice, &id);
    let sent = up["sent"].as_u64().unwrap();
    // Never from zero: at most the unacknowledged window (1 MiB) went twice.
    assert!(sent >= bytes.len() as u64 && sent <= bytes.len() as u64 + MIB as u64, "sent {sent} for {}", bytes.len());
    let got = get(&mut bob, &id, &dir.join("dl"));
    received_whole(&got, &dir.join("dl"), &bytes);
    drop(server);
}

/// Slows every download chunk on its way to the client (the proxy's relay thread sleeps).
fn slow_chunks(message: &mut [u8]) {
    if sotto::wire::header(message).is_ok_and(|h| h.opcode.get() == sotto::opcodes::FLCD) {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_download_cut_by_a_killed_client_resumes_from_its_part_file() {
    let dir = TempDir::new("files-dl-resume");
    let server = Server::start_with(&dir.join("data"), &["--rate", "off", "--max-bps", "0"]);
    let proxy = Proxy::start_rewriting(&server.addr, slow_chunks);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = Client::start_with_args(&proxy.addr, &dir.join("bob"), &[]);
    assert_eq!(bob.next().unwrap()["type"], "connected");
    assert_eq!(bob.register("bob", PW, WORDS)["type"], "ok");
    assert_eq!(bob.login("bob", PW, WORDS)["type"], "authenticated");
    contacts(&mut alice, "alice", &mut bob, "bob");
    let bytes = random_bytes(20 * MIB, 9);
    let chunks = bytes.len() / CHUNK;
    let src = write_file(&dir.join("src"), "video.mkv", &bytes);
    let id = send(&mut alice, "@bob", &src)["id"].as_str().unwrap().to_owned();
    uploaded(&mut alice, &id);
    offer(&mut bob, &id);
    let dl = dir.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    bob.send(&format!("/get {id} {}", dl.display()));
    bob.wait_for("a quarter downloaded", |v| {
        v["type"] == "file_progress" && v["id"] == id.as_str() && v["done"].as_u64().unwrap() >= 5 * MIB as u64
    });
    drop(bob);
    let part = dl.join(format!(".sotto-{id}.part"));
    assert!(std::fs::metadata(&part).unwrap().len() >= 5 * MIB as u64, "the part file holds what was written");

    let mut bob = relogin_at(&proxy.addr, &dir, "bob", &[]);
    let r = bob.wait_for("file_resumed", |v| v["type"] == "file_resumed" && v["id"] == id.as_str());
    let offset = r["offset"].as_u64().unwrap();
    assert!(offset >= 5 * MIB as u64 && offset % CHUNK as u64 == 0, "{r}");
    let got = bob.wait_for("file_received", |v| {
        (v["type"] == "file_received" && v["id"] == id.as_str()) || v["type"] == "error"
    });
    received_whole(&got, &dl, &bytes);
    // Never from zero: the server sent each chunk about once over both connections.
    let relayed = proxy.recorded(sotto::opcodes::FLCD).len();
    assert!(relayed >= chunks && relayed <= chunks + 64, "{relayed} chunks relayed for {chunks}");
    assert!(!part.exists());
}

#[test]
fn an_offline_recipient_gets_the_offer_at_the_next_login_and_the_file() {
    let dir = TempDir::new("files-offline");
    let server = Server::start_with(&dir.join("data"), &["--rate", "off", "--max-bps", "0"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    assert!(bob.finish().success());
    let bytes = random_bytes(3 * MIB + 7, 3);
    let src = write_file(&dir.join("src"), "notes.txt", &bytes);
    let v = send(&mut alice, "@bob", &src);
    let id = v["id"].as_str().unwrap().to_owned();
    uploaded(&mut alice, &id);
    let mut bob = relogin(&server, &dir, "bob", &[]);
    let o = offer(&mut bob, &id);
    assert_eq!((o["from"].as_str(), o["verified"].as_bool()), (Some("alice"), Some(true)), "{o}");
    received_whole(&get(&mut bob, &id, &dir.join("dl")), &dir.join("dl"), &bytes);
}

#[test]
fn the_size_limit_and_the_quota_are_refused_clearly() {
    let dir = TempDir::new("files-limits");
    let limits = ["--rate", "off", "--max-bps", "0", "--max-file-size", "1048576", "--file-quota", "3000000"];
    let server = Server::start_with(&dir.join("data"), &limits);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let big = write_file(&dir.join("src"), "big", &random_bytes(MIB + 1, 4));
    let v = alice.run(&format!("/send @bob {}", big.display()), "send");
    error(&v, "send", 413);
    let one = write_file(&dir.join("src"), "one", &random_bytes(MIB, 5));
    for _ in 0..2 {
        let id = send(&mut alice, "@bob", &one)["id"].as_str().unwrap().to_owned();
        uploaded(&mut alice, &id);
    }
    // Two files of 1 MiB are kept for bob: a third is over the 3,000,000-byte quota.
    let v = alice.run(&format!("/send @bob {}", one.display()), "send");
    error(&v, "send", 507);
    assert!(v["message"].as_str().unwrap().contains("quota"), "{v}");
    // Not to a stranger, nor to a room one is not in.
    let mut carol = user(&server, &dir, "carol", &[]);
    error(&carol.run(&format!("/send @alice {}", one.display()), "send"), "send", 403);
    error(&carol.run(&format!("/send lab {}", one.display()), "send"), "send", 403);
    error(&alice.run("/send @bob /no/such/file", "send"), "send", 404);
}

#[test]
fn a_hostile_name_is_made_safe_and_an_existing_file_is_never_overwritten() {
    let dir = TempDir::new("files-names");
    let server = Server::start_with(&dir.join("data"), &["--rate", "off", "--max-bps", "0"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    // A name that is legal here but a path elsewhere, with an escape sequence and a bidi override.
    let hostile = "..\\..\\evil\u{1b}]0;pwn\u{7}\u{202e}txt.exe";
    let bytes = random_bytes(40_000, 6);
    let src = write_file(&dir.join("src"), hostile, &bytes);
    let id = send(&mut alice, "@bob", &src)["id"].as_str().unwrap().to_owned();
    let o = offer(&mut bob, &id);
    assert_eq!(o["name"].as_str(), Some(hostile), "the offer shows the name as sent (escaped in JSON)");
    let dl = dir.join("dl");
    let path = received_whole(&get(&mut bob, &id, &dl), &dl, &bytes);
    let saved = path.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(saved, "evil_]0;pwn__txt.exe", "last component, unsafe characters replaced");

    // The same name again: a numbered name, the first file untouched.
    let id = send(&mut alice, "@bob", &src)["id"].as_str().unwrap().to_owned();
    offer(&mut bob, &id);
    let path2 = received_whole(&get(&mut bob, &id, &dl), &dl, &bytes);
    assert_eq!(path2.file_name().unwrap().to_str(), Some("evil_]0;pwn__txt (1).exe"));
    // A name that is only dots becomes a plain name, inside the directory.
    let dots = write_file(&dir.join("src2"), "...", b"dots");
    let id = send(&mut alice, "@bob", &dots)["id"].as_str().unwrap().to_owned();
    offer(&mut bob, &id);
    let path3 = received_whole(&get(&mut bob, &id, &dl), &dl, b"dots");
    assert!(!path3.file_name().unwrap().to_str().unwrap().starts_with('.'), "{path3:?}");
    let mut names: Vec<String> =
        std::fs::read_dir(&dl).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 3, "nothing else written, no part file left: {names:?}");
}

#[test]
fn a_chunk_altered_on_the_servers_disk_is_refused_by_the_recipient() {
    let dir = TempDir::new("files-altered");
    let data = dir.join("data");
    let server = Server::start_with(&data, &["--rate", "off", "--max-bps", "0"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let bytes = random_bytes(5 * CHUNK + 100, 7);
    let src = write_file(&dir.join("src"), "ledger.csv", &bytes);
    let id = send(&mut alice, "@bob", &src)["id"].as_str().unwrap().to_owned();
    uploaded(&mut alice, &id);
    offer(&mut bob, &id);

    // A server that lies: one byte of chunk 2's data changed, and the record's
    // own checksum recomputed so that the server itself sees nothing wrong.
    let chunks = data.join("files").join(format!("{id}.chunks"));
    let mut disk = std::fs::read(&chunks).unwrap();
    assert_eq!(disk.len(), 6 * RECORD);
    let rec = &mut disk[2 * RECORD..3 * RECORD];
    rec[4 + 16 + 32 + 500] ^= 0x40;
    let sum = Sha256::digest(&rec[..RECORD - 32]);
    rec[RECORD - 32..].copy_from_slice(&sum);
    std::fs::write(&chunks, &disk).unwrap();

    let dl = dir.join("dl");
    let v = get(&mut bob, &id, &dl);
    error(&v, "get", 400);
    assert!(v["message"].as_str().unwrap().contains("integrity"), "{v}");
    assert!(std::fs::read_dir(&dl).unwrap().next().is_none(), "nothing kept, not even the part file");
    let files = bob.run("/files", "files");
    assert_eq!(files["list"][0]["state"], "failed", "{files}");
}

#[test]
fn an_expired_file_is_gone_from_the_server() {
    let dir = TempDir::new("files-expiry");
    let data = dir.join("data");
    let server = Server::start_with(&data, &["--rate", "off", "--max-bps", "0", "--file-ttl", "2"]);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let src = write_file(&dir.join("src"), "short-lived", &random_bytes(70_000, 8));
    let id = send(&mut alice, "@bob", &src)["id"].as_str().unwrap().to_owned();
    uploaded(&mut alice, &id);
    offer(&mut bob, &id);
    assert!(!server_files(&data, &id).is_empty());
    wait_until("the server deleted the expired file", || server_files(&data, &id).is_empty());
    let v = get(&mut bob, &id, &dir.join("dl"));
    error(&v, "get", 404);
    let _ = (PW, WORDS);
}
