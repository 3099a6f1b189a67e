//! Terminal safety (issue 11), through a real pseudo-terminal: what the
//! network sends (a room message from another user, and an error reason a
//! malicious server writes) reaches the interactive client's screen as
//! harmless text, never as escape sequences, OSC 52 clipboard writes or bidi
//! overrides.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{ok, user, Server, TempDir, PW, WORDS};
use sotto::opcodes::{StatusReply, STAT};
use sotto::wire::{self, code};
use zerocopy::FromBytes;

const ROOM_PW: &str = "correct-horse-battery";
/// Clears the screen, writes "evil" to the clipboard (OSC 52), rings, and reverses what follows.
const NASTY: &str = "\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}\u{202e}gnp.exe\u{2066}";

/// The interactive client on a pseudo-terminal, and everything it wrote to the screen.
struct Screen {
    child: Child,
    master: File,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    fn start(server: &str, home: &std::path::Path) -> Screen {
        let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
        let slave = File::from(pty.slave);
        let child = Command::new(env!("CARGO_BIN_EXE_sotto"))
            .args(["--plain", "--server", server, "--home"])
            .arg(home)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn sotto");
        let master = File::from(pty.master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Screen { child, master, seen }
    }

    /// `/login NAME`, the password and the passphrase at their prompts; where the screen ends.
    fn log_in(&mut self, name: &str, from: usize) -> usize {
        self.type_line(&format!("/login {name}"));
        let at = self.wait_for("Password: ", from);
        self.type_line(PW);
        let at = self.wait_for("Passphrase: ", at);
        self.type_line(WORDS);
        self.wait_for(&format!("logged in as {name}"), at)
    }

    fn type_line(&mut self, line: &str) {
        self.master.write_all(format!("{line}\r").as_bytes()).unwrap();
    }

    /// Waits until the screen shows `text` after what was shown before `from`; where it ends.
    fn wait_for(&self, text: &str, from: usize) -> usize {
        let deadline = Instant::now() + common::WAIT;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let tail = &seen[from.min(seen.len())..];
                if let Some(at) = tail.windows(text.len()).position(|w| w == text.as_bytes()) {
                    return from + at + text.len();
                }
            }
            assert!(Instant::now() < deadline, "no {text:?} on screen: {:?}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The malicious server's touch: every 404 carries the nasty reason.
fn nasty_reasons(message: &mut [u8]) {
    if wire::header(message).is_ok_and(|h| h.opcode.get() == STAT && h.code.get() == code::NOT_FOUND) {
        if let Ok(reply) = StatusReply::mut_from_bytes(message) {
            reply.set_reason(NASTY).unwrap();
        }
    }
}

#[test]
fn network_text_with_escapes_osc52_and_bidi_reaches_the_screen_as_harmless_text() {
    let dir = TempDir::new("terminal");
    let server = Server::start(&dir.join("data"));
    let proxy = Proxy::start_rewriting(&server.addr, nasty_reasons);
    let mut alice = user(&server, &dir, "alice", &[]);
    user(&server, &dir, "bob", &[]).finish();
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");

    let mut bob = Screen::start(&proxy.addr, &dir.join("bob"));
    let at = bob.wait_for("type /help", 0);
    let at = bob.log_in("bob", at);
    bob.type_line("/join lobby");
    let at = bob.wait_for("Room password: ", at);
    bob.type_line(ROOM_PW);
    let at = bob.wait_for("joined lobby", at);

    ok(&alice.run(&format!("/say lobby look {NASTY} here"), "say"), "say");
    let at = bob.wait_for("here", at);
    // A room that does not exist: the server's 404 reason (rewritten) is shown.
    bob.type_line("/join nowhere");
    let at = bob.wait_for("Room password: ", at);
    bob.type_line("any-password-at-all");
    bob.wait_for("gnp.exe", at);

    let screen = bob.seen.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&screen);
    assert!(!screen.contains(&0x1b), "no escape byte reached the terminal: {text:?}");
    assert!(!screen.contains(&0x07), "no bell: {text:?}");
    assert!(!text.contains('\u{202e}') && !text.contains('\u{2066}'), "no bidi control: {text:?}");
    assert!(!text.contains('\u{9b}'), "no C1 CSI: {text:?}");
    let shown = "\\u{001b}[2J\\u{001b}]52;c;ZXZpbA==\\u{0007}\\u{202e}gnp.exe\\u{2066}";
    assert!(text.contains(&format!("[lobby] alice: look {shown} here")), "the room message, as text: {text:?}");
    assert!(text.contains(&format!("error: {shown}")) && !text.contains("error 404"), "the reason, in words: {text:?}");
}

#[test]
fn registering_interactively_logs_in_without_asking_again() {
    let dir = TempDir::new("terminal-register");
    let server = Server::start(&dir.join("data"));
    let mut carol = Screen::start(&server.addr, &dir.join("carol"));
    let at = carol.wait_for("type /help", 0);
    carol.type_line("/register carol");
    let at = carol.wait_for("Password: ", at);
    carol.type_line(PW);
    let at = carol.wait_for("Repeat password: ", at);
    carol.type_line(PW);
    let at = carol.wait_for("Passphrase (three words): ", at);
    carol.type_line(WORDS);
    carol.wait_for("logged in as carol", at);
    assert_eq!(carol.text().matches("Password: ").count(), 1, "asked once: {:?}", carol.text());
}

#[test]
fn an_outage_is_said_once_when_it_starts_and_once_when_it_ends() {
    let dir = TempDir::new("terminal-outage");
    let data = dir.join("data");
    let server = Server::start(&data);
    let addr = server.addr.clone();
    let mut batch = user(&server, &dir, "dave", &[]);
    ok(&batch.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    batch.finish();
    let mut dave = Screen::start(&addr, &dir.join("dave"));
    let at = dave.wait_for("type /help", 0);
    let at = dave.log_in("dave", at);
    // The rooms you are in are listed after a login.
    let at = dave.wait_for("your rooms: lobby", at);
    dave.type_line("/room lobby");
    let at = dave.wait_for("current room: lobby", at);
    server.kill9();
    let at = dave.wait_for("reconnecting", at);
    // Several attempts fail meanwhile (0.5 s, 1 s, 2 s apart).
    std::thread::sleep(Duration::from_millis(4000));
    let _server = Server::start_on(&data, &addr, &[]);
    let at = dave.wait_for("logged in again as dave", at);
    // And after a reconnect, with the current room kept.
    let at = dave.wait_for("your rooms: lobby", at);
    dave.wait_for("current: lobby", at);
    let text = dave.text();
    let after = &text[text.find("logged in as dave").unwrap()..];
    assert_eq!(after.matches("reconnecting").count(), 1, "one notice for the outage: {after:?}");
    assert_eq!(after.matches("reconnected").count(), 1, "one for its end: {after:?}");
}

/// Writes keys, each escape sequence in a read of its own.
fn keys(screen: &mut Screen, keys: &str) {
    screen.master.write_all(keys.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn plain_mode_edits_lines_with_arrow_keys_and_keeps_the_line_when_a_message_arrives() {
    let dir = TempDir::new("terminal-edit");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    user(&server, &dir, "bob", &[]).finish();
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");

    let mut bob = Screen::start(&server.addr, &dir.join("bob"));
    let at = bob.wait_for("type /help", 0);
    let at = bob.log_in("bob", at);
    bob.type_line("/join lobby");
    let at = bob.wait_for("Room password: ", at);
    bob.type_line(ROOM_PW);
    let at = bob.wait_for("[lobby]> ", at);

    // The arrows move the cursor: they are keys, not text.
    for k in ["abc", "\u{1b}[D", "\u{1b}[D", "X", "\r"] {
        keys(&mut bob, k);
    }
    let said = alice.room_messages("lobby", 1);
    assert_eq!(said[0]["text"], "aXbc", "{said:?}");

    // A message arriving mid-line is printed above it, and the line is kept.
    keys(&mut bob, "hal");
    ok(&alice.run("/say lobby ping", "say"), "say");
    let at = bob.wait_for("[lobby] alice: ping", at);
    bob.wait_for("[lobby]> hal", at);
    bob.type_line("lo");
    let said = alice.room_messages("lobby", 1);
    assert_eq!(said[0]["text"], "hallo", "{said:?}");

    // Up brings the last line back; Ctrl-D on an empty line leaves.
    keys(&mut bob, "\u{1b}[A");
    keys(&mut bob, "\r");
    assert_eq!(alice.room_messages("lobby", 1)[0]["text"], "hallo");
    keys(&mut bob, "\u{4}");
    let status = common::wait_child(&mut bob.child);
    assert!(status.success(), "{status:?}");
    let mode = nix::sys::termios::tcgetattr(&bob.master).unwrap();
    let cooked = nix::sys::termios::LocalFlags::ICANON | nix::sys::termios::LocalFlags::ECHO;
    assert!(mode.local_flags.contains(cooked), "the terminal mode is restored: {:?}", mode.local_flags);
    assert!(!bob.seen.lock().unwrap().contains(&0x1b), "plain mode writes no escape sequence");
}

#[test]
fn plain_mode_asks_before_deleting_a_room() {
    let dir = TempDir::new("terminal-delete");
    let server = Server::start(&dir.join("data"));
    let mut batch = user(&server, &dir, "alice", &[]);
    ok(&batch.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    batch.finish();
    let mut alice = Screen::start(&server.addr, &dir.join("alice"));
    let at = alice.wait_for("type /help", 0);
    let at = alice.log_in("alice", at);
    alice.type_line("/delete lobby");
    let at = alice.wait_for("delete room lobby and its history for everyone? type yes", at);
    alice.type_line("no");
    let at = alice.wait_for("not deleted: lobby is kept", at);
    alice.type_line("/rooms");
    let at = alice.wait_for("rooms: lobby", at);
    alice.type_line("/delete lobby");
    alice.type_line("yes");
    alice.wait_for("deleted room lobby", at);
}

#[test]
fn plain_mode_asks_for_a_new_room_password_and_for_the_secrets_before_deleting_the_account() {
    let dir = TempDir::new("terminal-moderation");
    let server = Server::start(&dir.join("data"));
    let mut batch = user(&server, &dir, "alice", &[]);
    ok(&batch.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    batch.finish();
    let mut alice = Screen::start(&server.addr, &dir.join("alice"));
    let at = alice.wait_for("type /help", 0);
    let at = alice.log_in("alice", at);
    alice.type_line("/room-password lobby");
    let at = alice.wait_for("New room password", at);
    alice.type_line("");
    let at = alice.wait_for("the new password of lobby is: ", at);
    let at = alice.wait_for("room-password lobby: ok", at);
    alice.type_line("/delete-account");
    let at = alice.wait_for("Password: ", at);
    alice.type_line(PW);
    let at = alice.wait_for("Passphrase: ", at);
    alice.type_line(WORDS);
    alice.wait_for("account alice deleted", at);
    let text = alice.text();
    assert!(!text.contains(PW) && !text.contains(WORDS), "no secret echoed: {text:?}");
}
