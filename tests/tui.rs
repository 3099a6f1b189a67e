//! The full-screen client end to end, through real pseudo-terminals read by a
//! vt100 parser (no tmux): two users chatting against a real server, line
//! editing with the arrow keys, a message arriving while one types, times and
//! unread counts on screen, a resize, and network text that reaches the
//! screen as harmless text.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{ok, user, Server, TempDir, PW, WORDS};
use nix::pty::Winsize;
use nix::sys::termios::LocalFlags;
use sotto::opcodes::{StatusReply, STAT};
use sotto::wire::{self, code};
use zerocopy::FromBytes;

const ROOM_PW: &str = "correct-horse-battery";
/// Clears the screen, writes "evil" to the clipboard (OSC 52), rings, and reverses what follows.
const NASTY: &str = "\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}\u{202e}gnp.exe\u{2066}";

const LEFT: &str = "\u{1b}[D";
const ALT_1: &str = "\u{1b}1";

/// The full-screen client on its own pseudo-terminal (its controlling
/// terminal), with a vt100 parser fed everything it writes.
struct Tui {
    child: Child,
    master: File,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

impl Tui {
    fn start(server: &str, home: &std::path::Path, rows: u16, cols: u16) -> Tui {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("a pseudo-terminal");
        let slave = File::from(pty.slave);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sotto"));
        cmd.args(["--server", server, "--home"])
            .arg(home)
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec. A new
        // session whose controlling terminal is this pty: /dev/tty is ours, and
        // a resize of the pty signals the client as it would on a real terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn sotto");
        let master = File::from(pty.master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, parser, sink) = (master.try_clone().unwrap(), screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                parser.lock().unwrap().process(&buf[..n]);
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tui { child, master, screen, raw }
    }

    fn keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
        // Separate reads, so each escape sequence arrives as a key of its own.
        std::thread::sleep(Duration::from_millis(30));
    }

    fn line(&mut self, line: &str) {
        self.keys(line);
        self.keys("\r");
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn rows(&self) -> Vec<String> {
        let parser = self.screen.lock().unwrap();
        let (_, cols) = parser.screen().size();
        parser.screen().rows(0, cols).collect()
    }

    /// Waits until a row of the screen satisfies `pred`; that row.
    fn wait_row(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + common::WAIT;
        loop {
            if let Some(row) = self.rows().into_iter().find(|r| pred(r)) {
                return row;
            }
            assert!(Instant::now() < deadline, "no {what} on screen:\n{}", self.rows().join("\n"));
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_row(text, |r| r.contains(text))
    }

    /// The input line (the last row).
    fn input(&self) -> String {
        self.rows().last().cloned().unwrap_or_default().trim_end().to_string()
    }

    /// Waits until the input line reads `expected`.
    fn wait_input(&self, expected: &str) {
        let deadline = Instant::now() + common::WAIT;
        while self.input() != expected {
            assert!(Instant::now() < deadline, "input line {:?}, not {expected:?}", self.input());
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn login(&mut self, name: &str) {
        self.wait_for("type /help");
        self.line(&format!("/login {name}"));
        self.wait_for("Password: ");
        self.line(PW);
        self.wait_for("Passphrase: ");
        self.line(WORDS);
        self.wait_for(&format!("logged in as {name}"));
    }

    /// The client left the alternate screen and the terminal is back in cooked mode with echo.
    fn assert_restored(&self) {
        // The reader thread may still be draining the client's last writes.
        let deadline = Instant::now() + Duration::from_secs(5);
        let tail = loop {
            let raw = self.raw.lock().unwrap().clone();
            let tail = String::from_utf8_lossy(&raw[raw.len().saturating_sub(300)..]).into_owned();
            if tail.contains("\u{1b}[?1049l") || Instant::now() > deadline {
                break tail;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(tail.contains("\u{1b}[?1049l"), "left the alternate screen: {tail:?}");
        let mode = nix::sys::termios::tcgetattr(&self.master).expect("the pty's mode");
        let cooked = LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
        assert!(mode.local_flags.contains(cooked), "raw mode undone: {:?}", mode.local_flags);
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        self.screen.lock().unwrap().set_size(rows, cols);
        // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which lives across the call.
        let size = winsize(rows, cols);
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) }, 0, "TIOCSWINSZ");
        // The kernel signals the foreground process group; once more, in case the client is not it yet.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HH:MM name: text` somewhere in the row.
fn timed(row: &str, said: &str) -> bool {
    row.find(said).is_some_and(|at| {
        let before: Vec<char> = row[..at].chars().collect();
        let n = before.len();
        n >= 6 && {
            let t: String = before[n - 6..].iter().collect();
            t.as_bytes()[2] == b':' && t.chars().filter(char::is_ascii_digit).count() == 4 && t.ends_with(' ')
        }
    })
}

#[test]
fn two_people_chat_edit_lines_see_times_and_unread_counts_and_resize() {
    let dir = TempDir::new("tui");
    let server = Server::start(&dir.join("data"));
    user(&server, &dir, "alice", &[]).finish();
    user(&server, &dir, "bob", &[]).finish();

    let mut alice = Tui::start(&server.addr, &dir.join("alice"), 24, 80);
    alice.login("alice");
    alice.line("/create lobby");
    alice.wait_for("Room password");
    alice.line(ROOM_PW);
    alice.wait_for("Repeat room password");
    alice.line(ROOM_PW);
    alice.wait_for("created room lobby");
    assert!(!alice.contents().contains(ROOM_PW), "a secret is never shown");

    let mut bob = Tui::start(&server.addr, &dir.join("bob"), 24, 80);
    bob.login("bob");
    bob.line("/join lobby");
    bob.wait_for("Room password: ");
    bob.line(ROOM_PW);
    bob.wait_for("joined lobby");
    bob.wait_row("the status bar", |r| r.contains("| bob | connected | #lobby"));
    // Presence: the room's members in the side list, those online marked.
    bob.wait_row("alice online in the side list", |r| r.starts_with("*alice"));

    // Editing with the arrow keys: the escape sequences are keys, not text.
    bob.keys("abc");
    bob.keys(LEFT);
    bob.keys(LEFT);
    bob.keys("X");
    bob.wait_input("> aXbc");
    bob.keys("\r");
    bob.wait_for("bob: aXbc (sent)");
    let row = alice.wait_for("bob: aXbc");
    assert!(timed(&row, "bob: aXbc"), "HH:MM before the sender: {row:?}");
    assert!(!alice.contents().contains("[D"), "no escape sequence reached alice");

    // A message arriving while alice types leaves her input alone.
    alice.keys("hal");
    bob.line("ping");
    alice.wait_for("bob: ping");
    alice.wait_input("> hal");
    alice.keys("lo\r");
    bob.wait_for("alice: hallo");

    // Away from the room, its unread count rises in the side list.
    alice.keys(ALT_1);
    alice.wait_row("the status window current", |r| r.contains("| alice | connected | status"));
    bob.line("one");
    bob.line("two");
    alice.wait_row("two unread in #lobby", |r| r.starts_with("2 #lobby 2"));
    alice.keys(ALT_1.replace('1', "2").as_str());
    alice.wait_row("no unread count once read", |r| r.starts_with("2 #lobby ") && !r.starts_with("2 #lobby 2"));
    alice.wait_for("bob: two");

    // A resize: the screen is drawn again at the new size.
    bob.resize(30, 100);
    let deadline = Instant::now() + common::WAIT;
    loop {
        let rows = bob.rows();
        if rows.len() == 30 && rows[28].contains("| bob | connected | #lobby") && rows[29].starts_with('>') {
            break;
        }
        assert!(Instant::now() < deadline, "not redrawn at 30x100:\n{}", rows.join("\n"));
        std::thread::sleep(Duration::from_millis(30));
    }
    bob.line("after resize");
    alice.wait_for("bob: after resize");

    // Ctrl-D on an empty line leaves, and the terminal is given back.
    bob.keys("\u{4}");
    let status = common::wait_child(&mut bob.child);
    assert!(status.success(), "{status:?}");
    bob.assert_restored();
}

#[test]
fn direct_messages_open_a_window_of_their_own() {
    let dir = TempDir::new("tui-dm");
    let server = Server::start(&dir.join("data"));
    user(&server, &dir, "alice", &[]).finish();
    user(&server, &dir, "bob", &[]).finish();
    let mut alice = Tui::start(&server.addr, &dir.join("alice"), 24, 80);
    alice.login("alice");
    assert!(!alice.contents().contains(PW) && !alice.contents().contains(WORDS), "secrets are never shown");
    let mut bob = Tui::start(&server.addr, &dir.join("bob"), 24, 80);
    bob.login("bob");

    alice.line("/dm @bob");
    bob.wait_row("the request, in alice's window", |r| r.starts_with("2 @alice 1"));
    bob.line("/accept @alice");
    alice.wait_row("the channel opened, in bob's window", |r| r.starts_with("2 @bob 2"));

    alice.line("/query @bob");
    alice.wait_row("the DM window current", |r| r.contains("| alice | connected | @bob"));
    alice.wait_for("direct messages with bob are open");
    alice.line("hello bob");
    // Our own line, then its mark changed in place.
    alice.wait_for("alice: hello bob (delivered)");
    bob.wait_row("the request, the channel and the message unread", |r| r.starts_with("2 @alice 4"));
    bob.keys("\u{e}");
    bob.wait_row("@alice current", |r| r.contains("| bob | connected | @alice"));
    let row = bob.wait_for("alice: hello bob");
    assert!(timed(&row, "alice: hello bob"), "{row:?}");
    // Tab completes the contact's name.
    bob.keys("/msg @al\t");
    bob.wait_input("> /msg @alice");
    bob.line("back to you");
    alice.wait_for("bob: back to you");
}

#[test]
fn registers_and_logs_in_with_hidden_prompts() {
    let dir = TempDir::new("tui-register");
    let server = Server::start(&dir.join("data"));
    let mut carol = Tui::start(&server.addr, &dir.join("carol"), 24, 80);
    carol.wait_for("type /help");
    carol.line("/register no way");
    carol.wait_for("wrong arguments for /register");
    carol.line("/register x");
    carol.wait_row("the name refused before any prompt", |r| r.contains("!! error:"));
    assert!(!carol.contents().contains("Password:"));
    carol.line("/register carol");
    carol.wait_for("Password: ");
    carol.line(PW);
    carol.wait_for("Repeat password: ");
    carol.line("not the same");
    // A mismatch, or a password too short, is asked again at once.
    carol.wait_for("the passwords do not match; again");
    carol.wait_for("Password: ");
    carol.line("short");
    carol.wait_row("the length refused", |r| r.contains("!! ") && r.contains("; again") && !r.contains("match"));
    carol.wait_for("Password: ");
    carol.line(PW);
    carol.wait_for("Repeat password: ");
    carol.line(PW);
    carol.wait_for("Passphrase (three words): ");
    carol.line(WORDS);
    carol.wait_for("registered carol");
    // Registered, then logged in with the same secrets: nothing asked twice.
    carol.wait_for("logged in as carol");
    carol.wait_row("the status bar", |r| r.contains("| carol | connected | status"));
    let seen = carol.contents();
    assert!(!seen.contains(PW) && !seen.contains(WORDS) && !seen.contains("not the same"), "{seen}");
    // Up walks the history, which holds no secret.
    carol.keys("\u{1b}[A");
    carol.wait_input("> /register carol");
    carol.keys("\u{1b}[A");
    carol.wait_input("> /register x");
}

#[test]
fn a_connection_lost_before_login_ends_it_with_the_terminal_restored_and_the_reason_shown() {
    let dir = TempDir::new("tui-lost");
    let server = Server::start(&dir.join("data"));
    let mut tui = Tui::start(&server.addr, &dir.join("x"), 24, 80);
    tui.wait_for("type /help");
    server.kill9();
    let status = common::wait_child(&mut tui.child);
    assert_eq!(status.code(), Some(1), "{status:?}");
    tui.assert_restored();
    let raw = tui.raw.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&raw);
    let after = text.rsplit("\u{1b}[?1049l").next().unwrap_or_default();
    assert!(after.contains("sotto: "), "the reason, after the screen was restored: {after:?}");
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
fn network_text_with_escapes_osc52_and_bidi_reaches_the_full_screen_as_harmless_text() {
    let dir = TempDir::new("tui-nasty");
    let server = Server::start(&dir.join("data"));
    let proxy = Proxy::start_rewriting(&server.addr, nasty_reasons);
    let mut alice = user(&server, &dir, "alice", &[]);
    user(&server, &dir, "bob", &[]).finish();
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");

    let mut bob = Tui::start(&proxy.addr, &dir.join("bob"), 24, 200);
    bob.login("bob");
    bob.line("/join lobby");
    bob.wait_for("Room password: ");
    bob.line(ROOM_PW);
    bob.wait_for("joined lobby");

    ok(&alice.run(&format!("/say lobby look {NASTY} here"), "say"), "say");
    let shown = "\\u{001b}[2J\\u{001b}]52;c;ZXZpbA==\\u{0007}\\u{202e}gnp.exe\\u{2066}";
    bob.wait_for(&format!("alice: look {shown} here"));
    // A room that does not exist: the server's 404 reason (rewritten) is shown.
    bob.line("/join nowhere");
    bob.wait_for("Room password: ");
    bob.line("any-password-at-all");
    bob.wait_for(&format!("error: {shown}"));

    let raw = bob.raw.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("\u{1b}]52"), "no clipboard write reached the terminal");
    assert!(!text.contains("ZXZpbA==\u{7}"), "no bell from the network");
    assert!(!text.contains('\u{202e}') && !text.contains('\u{2066}'), "no bidi control");
    assert!(!text.contains('\u{9b}'), "no C1 CSI");
    assert!(bob.contents().contains("look \\u{001b}[2J"), "the screen was not cleared by the message");

    // A terminating signal ends the client with the terminal restored.
    let pid = nix::unistd::Pid::from_raw(bob.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = common::wait_child(&mut bob.child);
    assert_eq!(status.code(), Some(1), "{status:?}");
    bob.assert_restored();
}

#[test]
fn deleting_a_room_asks_first() {
    let dir = TempDir::new("tui-delete");
    let server = Server::start(&dir.join("data"));
    let mut batch = user(&server, &dir, "alice", &[]);
    ok(&batch.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    batch.finish();
    let mut alice = Tui::start(&server.addr, &dir.join("alice"), 24, 120);
    alice.login("alice");
    alice.line("/delete lobby");
    alice.wait_for("delete room lobby and its history for everyone? type yes");
    alice.line("no");
    alice.wait_for("not deleted: lobby is kept");
    alice.line("/rooms");
    alice.wait_for("rooms: lobby");
    alice.line("/delete lobby");
    alice.line("yes");
    alice.wait_for("delete lobby: done");
    // A command instead of the answer is a no, and is carried out.
    alice.line("/delete lobby");
    alice.line("/room");
    alice.wait_for("current window: status");
}

#[test]
fn the_rooms_are_listed_after_a_login_and_a_reconnect_keeps_the_current_window() {
    let dir = TempDir::new("tui-rooms");
    let data = dir.join("data");
    let server = Server::start(&data);
    let addr = server.addr.clone();
    let mut batch = user(&server, &dir, "alice", &[]);
    ok(&batch.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    ok(&batch.run(&format!("/create dev {ROOM_PW}"), "create"), "create");
    batch.finish();
    let mut alice = Tui::start(&addr, &dir.join("alice"), 24, 80);
    alice.login("alice");
    alice.wait_for("your rooms: dev, lobby");
    alice.wait_row("a window for each room", |r| r.starts_with("3 #lobby"));
    alice.line("/room lobby");
    alice.wait_row("#lobby current", |r| r.contains("| alice | connected | #lobby"));
    server.kill9();
    alice.wait_row("the outage", |r| r.contains("| alice | RECONNECTING | #lobby"));
    let _server = Server::start_on(&data, &addr, &[]);
    alice.wait_for("logged in as alice; still in #lobby");
    alice.wait_row("#lobby still current", |r| r.contains("| alice | connected | #lobby"));
}

#[test]
fn a_multi_line_paste_goes_as_one_message_or_in_marked_parts() {
    let dir = TempDir::new("tui-paste");
    let server = Server::start(&dir.join("data"));
    let mut alice = user(&server, &dir, "alice", &[]);
    user(&server, &dir, "bob", &[]).finish();
    ok(&alice.run(&format!("/create lobby {ROOM_PW}"), "create"), "create");
    let mut bob = Tui::start(&server.addr, &dir.join("bob"), 24, 80);
    bob.login("bob");
    bob.line("/join lobby");
    bob.wait_for("Room password: ");
    bob.line(ROOM_PW);
    bob.wait_for("joined lobby");

    // A bracketed paste with line breaks (a terminal sends them as CR): one message.
    bob.keys("\u{1b}[200~line one\rline two\u{1b}[201~");
    bob.wait_input("> line one⏎line two");
    bob.keys("\r");
    assert_eq!(alice.room_messages("lobby", 1)[0]["text"], "line one\nline two");
    let rows = bob.rows();
    let at = rows.iter().position(|r| r.contains("bob: line one")).expect("the first line");
    assert!(rows[at + 1].contains("line two"), "the second line on a row of its own:\n{}", rows.join("\n"));

    // Over 16,384 bytes: split at line breaks, each part marked.
    let line = "y".repeat(2400);
    let paste = [line.as_str(); 17].join("\r");
    bob.keys(&format!("\u{1b}[200~{paste}\u{1b}[201~"));
    bob.keys("\r");
    let said = alice.room_messages("lobby", 3);
    // The parts are long (thousands of rows): what alice got is checked, not the screen.
    let raw = String::from_utf8_lossy(&bob.raw.lock().unwrap()).into_owned();
    assert!(raw.contains("it goes as 3 messages"), "the split is said");
    for (i, m) in said.iter().enumerate() {
        let text = m["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("(part {}/3) yyy", i + 1)) && text.len() <= 16 * 1024, "{said:?}");
    }
}

#[test]
fn the_mouse_wheel_scrolls_and_mouse_capture_ends_with_the_client() {
    let dir = TempDir::new("tui-wheel");
    let server = Server::start(&dir.join("data"));
    user(&server, &dir, "alice", &[]).finish();
    let mut alice = Tui::start(&server.addr, &dir.join("alice"), 24, 80);
    alice.login("alice");
    let raw = String::from_utf8_lossy(&alice.raw.lock().unwrap()).into_owned();
    assert!(raw.contains("\u{1b}[?1000h"), "mouse capture on");
    // The wheel, as an xterm reports it (SGR): up, then down.
    alice.keys("\u{1b}[<64;30;5M");
    alice.wait_row("scrolled back", |r| r.contains("| status | scrolled back"));
    alice.keys("\u{1b}[<65;30;5M");
    alice.wait_row("following again", |r| r.contains("| alice | connected | status") && !r.contains("scrolled"));
    assert_eq!(alice.input(), ">", "no mouse report reached the input line");
    alice.keys("\u{4}");
    let status = common::wait_child(&mut alice.child);
    assert!(status.success(), "{status:?}");
    alice.assert_restored();
    let raw = alice.raw.lock().unwrap().clone();
    let tail = String::from_utf8_lossy(&raw[raw.len().saturating_sub(300)..]).into_owned();
    assert!(tail.contains("\u{1b}[?1000l"), "mouse capture off at the end: {tail:?}");
}

#[test]
fn ctrl_c_quits_at_once_even_while_a_request_waits() {
    let dir = TempDir::new("tui-ctrl-c");
    let server = Server::start(&dir.join("data"));
    user(&server, &dir, "alice", &[]).finish();
    let mut alice = Tui::start(&server.addr, &dir.join("alice"), 24, 120);
    alice.login("alice");
    // The server stops answering: /rooms waits for its reply (up to 30 s).
    let sottod = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(sottod, nix::sys::signal::Signal::SIGSTOP).unwrap();
    alice.line("/rooms");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let asked = std::time::Instant::now();
    alice.master.write_all(b"\x03").unwrap();
    let status = common::wait_child(&mut alice.child);
    nix::sys::signal::kill(sottod, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(5), "quit at once, not after the request's 30 s");
}

#[test]
fn a_file_upload_shows_its_progress_in_the_status_bar_and_the_offer_reaches_the_other_screen() {
    let dir = TempDir::new("tui-file");
    // 2 MB/s of input per connection: the upload takes a few seconds.
    let server = Server::start_with(&dir.join("data"), &["--rate", "off", "--max-bps", "2000000"]);
    let mut a = user(&server, &dir, "alice", &[]);
    let mut b = user(&server, &dir, "bob", &[]);
    common::contacts(&mut a, "alice", &mut b, "bob");
    a.finish();
    b.finish();
    let src = dir.join("report.bin");
    std::fs::write(&src, vec![0x5au8; 8 << 20]).unwrap();
    let mut alice = Tui::start(&server.addr, &dir.join("alice"), 24, 100);
    alice.login("alice");
    let mut bob = Tui::start(&server.addr, &dir.join("bob"), 24, 100);
    bob.login("bob");

    alice.line(&format!("/send @bob {}", src.display()));
    alice.wait_for("offered report.bin (8.0 MiB) to @bob");
    let bar = alice.wait_row("a progress bar in the status bar", |r| {
        r.contains("| alice | connected |") && r.contains("report.bin [#") && r.contains("of 8.0 MiB")
    });
    assert!(!bar.contains("100%"), "seen while under way: {bar:?}");
    alice.wait_for("is on the server");
    alice
        .wait_row("the bar gone once uploaded", |r| r.contains("| alice | connected |") && !r.contains("report.bin ["));

    let offer = bob.wait_for("from alice: report.bin (8.0 MiB");
    assert!(!offer.contains("NOT VERIFIED"), "{offer:?}");
    let dl = dir.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let id: String = offer.split("file ").nth(1).unwrap().chars().take(8).collect();
    bob.line(&format!("/get {id} {}", dl.display()));
    bob.wait_for("received:");
    assert_eq!(std::fs::read(dl.join("report.bin")).unwrap(), vec![0x5au8; 8 << 20]);
}
