//! Front-end layer: the one command grammar every front end (batch, plain
//! line mode, full screen) parses input lines with (docs/CLIENT.md "Commands").
//!
//! Invariant: parsing is pure and never fails on any input (no panic, no
//! indexing); arguments are only split on whitespace, except a message text,
//! which is the rest of the line with its inner spacing kept; a line that does
//! not start with `/` is handed back whole as [`Command::Text`], never echoed
//! in an error (it could be a secret). Which arguments a front end requires
//! (batch takes secrets on the line, people are asked for them) is the front
//! end's choice: the grammar accepts both shapes and each front end words its
//! own usage lines.

use zeroize::Zeroizing;

/// A password and a three-word passphrase typed on the command line (batch).
pub struct Creds {
    /// Account password.
    pub password: Zeroizing<String>,
    /// The three words joined by single spaces.
    pub passphrase: Zeroizing<String>,
}

/// One parsed input line.
pub enum Command {
    /// `/register NAME [PASSWORD W1 W2 W3]`.
    Register {
        /// User name as typed.
        name: String,
        /// The secrets, when typed on the line.
        creds: Option<Creds>,
    },
    /// `/login NAME [PASSWORD W1 W2 W3]`.
    Login {
        /// User name as typed.
        name: String,
        /// The secrets, when typed on the line.
        creds: Option<Creds>,
    },
    /// `/create ROOM [PASSWORD]`.
    Create {
        /// Room name as typed.
        room: String,
        /// Room password, when typed on the line.
        password: Option<Zeroizing<String>>,
    },
    /// `/join ROOM [PASSWORD]`.
    Join {
        /// Room name as typed.
        room: String,
        /// Room password, when typed on the line.
        password: Option<Zeroizing<String>>,
    },
    /// `/room [ROOM]`: switch to a room (people only).
    Room(Option<String>),
    /// `/query @USER`: open a direct-message window (people only).
    Query(String),
    /// `/say ROOM TEXT`.
    Say {
        /// Room name as typed.
        room: String,
        /// The rest of the line.
        text: String,
    },
    /// A line that does not start with `/`, whole.
    Text(String),
    /// `/leave [ROOM]`.
    Leave(Option<String>),
    /// `/who [ROOM]`.
    Who(Option<String>),
    /// `/delete ROOM`.
    Delete(String),
    /// `/rooms`.
    Rooms,
    /// `/dm @USER`.
    Dm(String),
    /// `/accept @USER`.
    Accept(String),
    /// `/reject @USER`.
    Reject(String),
    /// `/msg @USER TEXT`.
    Msg {
        /// User name as typed (with or without `@`).
        user: String,
        /// The rest of the line.
        text: String,
    },
    /// `/contacts`.
    Contacts,
    /// `/fingerprint @USER`.
    Fingerprint(String),
    /// `/trust @USER`.
    Trust(String),
    /// `/history @USER`.
    History(String),
    /// `/send @USER PATH` or `/send ROOM PATH`.
    Send {
        /// `@user` or a room, as typed.
        to: String,
        /// The rest of the line: the file's path.
        path: String,
    },
    /// `/get ID [DIR]`.
    Get {
        /// The file id (or a unique prefix of at least 4 hex digits).
        id: String,
        /// The rest of the line, if any: the directory to save in.
        dir: Option<String>,
    },
    /// `/decline ID`.
    Decline(String),
    /// `/files`.
    Files,
    /// `/kick USER [REASON]` (admins).
    Kick {
        /// User name as typed (with or without `@`).
        user: String,
        /// The rest of the line, possibly empty.
        reason: String,
    },
    /// `/announce TEXT` (admins).
    Announce(String),
    /// `/room-kick ROOM USER [REASON]`, or `/room-ban` (`ban`).
    RoomKick {
        /// Room name as typed.
        room: String,
        /// The member, with or without `@`.
        user: String,
        /// The rest of the line (may be empty).
        reason: String,
        /// `/room-ban`: refused on rejoin too.
        ban: bool,
    },
    /// `/room-unban ROOM USER`.
    RoomUnban {
        /// Room name as typed.
        room: String,
        /// The banned user.
        user: String,
    },
    /// `/room-owner ROOM USER`.
    RoomOwner {
        /// Room name as typed.
        room: String,
        /// The new owner.
        user: String,
    },
    /// `/room-password ROOM [PASSWORD]`.
    RoomPassword {
        /// Room name as typed.
        room: String,
        /// The new password, when typed on the line.
        password: Option<Zeroizing<String>>,
    },
    /// `/unsend ID`, `/unsend @USER ID` or `/unsend ROOM ID`.
    Unsend {
        /// `@user` or a room, as typed, if given.
        target: Option<String>,
        /// The message id.
        id: String,
    },
    /// `/forget @USER`.
    Forget(String),
    /// `/users`.
    Users,
    /// `/delete-account [PASSWORD W1 W2 W3]`.
    DeleteAccount(Option<Creds>),
    /// `/password [PASSWORD W1 W2 W3 NEWPASSWORD N1 N2 N3]`: the current
    /// secrets, then the new ones.
    Password(Option<(Creds, Creds)>),
    /// `/logout-everywhere`.
    LogoutEverywhere,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// Why a line is not a command.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A known command with the wrong arguments; the command name without the slash.
    Usage(String),
    /// No such command; its name without the slash.
    Unknown(String),
}

/// Every command name, with its slash, for completion and help.
pub const NAMES: &[&str] = &[
    "/accept",
    "/announce",
    "/contacts",
    "/create",
    "/decline",
    "/delete",
    "/delete-account",
    "/dm",
    "/files",
    "/fingerprint",
    "/forget",
    "/get",
    "/help",
    "/history",
    "/join",
    "/kick",
    "/leave",
    "/login",
    "/logout-everywhere",
    "/msg",
    "/password",
    "/query",
    "/quit",
    "/register",
    "/reject",
    "/room",
    "/room-ban",
    "/room-kick",
    "/room-owner",
    "/room-password",
    "/room-unban",
    "/rooms",
    "/say",
    "/send",
    "/trust",
    "/unsend",
    "/users",
    "/who",
];

/// The first whitespace-separated word of `s` and the rest after the whitespace that follows it.
pub fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => {
            let (word, rest) = s.split_at(i);
            (word, rest.trim_start())
        }
        None => (s, ""),
    }
}

/// A message id as shown and typed: 16 lowercase hex digits.
pub fn dm_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A failure in words, for people (the interactive front ends): what
/// happened, never the code; the server's reason is kept where it is the
/// explanation. Batch keeps the codes.
pub fn describe(f: &crate::session::Failure) -> String {
    let reason = f.message.trim();
    let with = |what: &str| if reason.is_empty() { what.to_string() } else { format!("{what}: {reason}") };
    let plain = |what: &str| if reason.is_empty() { what.to_string() } else { reason.to_string() };
    match f.code {
        403 => with("not allowed"),
        404 => plain("not found"),
        409 => plain("already exists"),
        413 => plain("too long"),
        429 => match f.retry_after_ms {
            0 => "too fast: try again in a moment".to_string(),
            ms => format!("too fast: try again in {} s", ms.div_ceil(1000)),
        },
        500 | 501 => with("the server failed"),
        503 => with("the server's storage is unreachable; try again later"),
        507 => with("the server could not store it"),
        508 => with("their mailbox is full"),
        _ => plain("failed"),
    }
}

/// The line that lists the rooms you are in, after a login or a reconnect.
pub fn rooms_line(rooms: &[String]) -> String {
    if rooms.is_empty() {
        "you are in no room yet: /join ROOM or /create ROOM".to_string()
    } else {
        format!("your rooms: {}", rooms.join(", "))
    }
}

/// The largest room message or direct message, in bytes of UTF-8.
pub const TEXT_MAX: usize = sotto::room::TEXT_MAX;

/// Splits a text over `max` bytes into messages that fit, each marked
/// `(part I/N) `: at line breaks where it can (a line break that ends a
/// part is dropped), inside a line over the limit at a character
/// boundary. A text that fits is one part, unmarked.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    if text.len() <= max {
        return vec![text.to_string()];
    }
    // Room for the mark, up to "(part 99999/99999) ".
    let budget = max.saturating_sub(20).max(4);
    let mut chunks: Vec<String> = Vec::new();
    let mut chunk = String::new();
    for line in text.split_inclusive('\n') {
        if chunk.len() + line.len() > budget && !chunk.is_empty() {
            chunks.push(std::mem::take(&mut chunk));
        }
        if line.len() <= budget {
            chunk.push_str(line);
            continue;
        }
        for c in line.chars() {
            if chunk.len() + c.len_utf8() > budget {
                chunks.push(std::mem::take(&mut chunk));
            }
            chunk.push(c);
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| format!("(part {}/{n}) {}", i + 1, c.strip_suffix('\n').unwrap_or(&c)))
        .collect()
}

/// What the interactive front ends ask before `/delete ROOM`.
pub fn delete_question(room: &str) -> String {
    format!("delete room {room} and its history for everyone? type yes")
}

/// True when the answer to a question is `yes` (anything else keeps things as they are).
pub fn confirmed(answer: &str) -> bool {
    answer.trim().eq_ignore_ascii_case("yes")
}

/// Parses a line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&first, args)) = words.split_first() else { return Ok(None) };
    let Some(cmd) = first.strip_prefix('/') else { return Ok(Some(Command::Text(line.to_string()))) };
    let usage = || ParseError::Usage(cmd.to_string());
    // TEXT is the rest of the line after two words, its inner spacing kept.
    let rest2 = || split_word(split_word(line).1);
    let creds = |name: &str, secrets: &[&str]| match secrets {
        [] => Ok((name.to_string(), None)),
        [password, w1, w2, w3] => Ok((
            name.to_string(),
            Some(Creds {
                password: Zeroizing::new(password.to_string()),
                passphrase: Zeroizing::new(format!("{w1} {w2} {w3}")),
            }),
        )),
        _ => Err(usage()),
    };
    let word = |s: &&str| s.to_string();
    let secret = |s: &&str| Zeroizing::new(s.to_string());
    let command = match (cmd, args) {
        ("register", [name, secrets @ ..]) => {
            creds(name, secrets).map(|(name, creds)| Command::Register { name, creds })
        }
        ("login", [name, secrets @ ..]) => creds(name, secrets).map(|(name, creds)| Command::Login { name, creds }),
        ("create", [room, password @ ..]) if password.len() <= 1 => {
            Ok(Command::Create { room: room.to_string(), password: password.first().map(secret) })
        }
        ("join", [room, password @ ..]) if password.len() <= 1 => {
            Ok(Command::Join { room: room.to_string(), password: password.first().map(secret) })
        }
        ("room", room) if room.len() <= 1 => Ok(Command::Room(room.first().map(word))),
        ("who", room) if room.len() <= 1 => Ok(Command::Who(room.first().map(word))),
        ("leave", room) if room.len() <= 1 => Ok(Command::Leave(room.first().map(word))),
        ("say", [_, _, ..]) => {
            let (room, text) = rest2();
            Ok(Command::Say { room: room.to_string(), text: text.to_string() })
        }
        ("msg", [_, _, ..]) => {
            let (user, text) = rest2();
            Ok(Command::Msg { user: user.to_string(), text: text.to_string() })
        }
        ("send", [_, _, ..]) => {
            let (to, path) = rest2();
            Ok(Command::Send { to: to.to_string(), path: path.to_string() })
        }
        ("get", [id, ..]) => {
            let (_, dir) = rest2();
            Ok(Command::Get { id: id.to_string(), dir: (!dir.is_empty()).then(|| dir.to_string()) })
        }
        ("decline", [id]) => Ok(Command::Decline(id.to_string())),
        ("kick", [_, ..]) => {
            let (user, reason) = split_word(split_word(line).1);
            Ok(Command::Kick { user: user.to_string(), reason: reason.trim_end().to_string() })
        }
        ("announce", [_, ..]) => Ok(Command::Announce(split_word(line).1.trim_end().to_string())),
        ("files", []) => Ok(Command::Files),
        ("room-kick" | "room-ban", [room, user, ..]) => {
            let (_, reason) = split_word(rest2().1);
            let (room, user) = (room.to_string(), user.to_string());
            Ok(Command::RoomKick { room, user, reason: reason.trim_end().to_string(), ban: cmd == "room-ban" })
        }
        ("room-unban", [room, user]) => Ok(Command::RoomUnban { room: word(room), user: word(user) }),
        ("room-owner", [room, user]) => Ok(Command::RoomOwner { room: word(room), user: word(user) }),
        ("room-password", [room, password @ ..]) if password.len() <= 1 => {
            Ok(Command::RoomPassword { room: word(room), password: password.first().map(secret) })
        }
        ("unsend", [id]) => Ok(Command::Unsend { target: None, id: word(id) }),
        ("unsend", [target, id]) => Ok(Command::Unsend { target: Some(word(target)), id: word(id) }),
        ("forget", [user]) => Ok(Command::Forget(word(user))),
        ("users", []) => Ok(Command::Users),
        ("delete-account", secrets) => creds("", secrets).map(|(_, c)| Command::DeleteAccount(c)),
        ("password", []) => Ok(Command::Password(None)),
        ("password", [_, _, _, _, _, _, _, _]) => {
            let (old, new) = args.split_at(4);
            match (creds("", old), creds("", new)) {
                (Ok((_, Some(old))), Ok((_, Some(new)))) => Ok(Command::Password(Some((old, new)))),
                _ => Err(usage()),
            }
        }
        ("logout-everywhere", []) => Ok(Command::LogoutEverywhere),
        ("delete", [room]) => Ok(Command::Delete(room.to_string())),
        ("query", [user]) => Ok(Command::Query(user.to_string())),
        ("dm", [user]) => Ok(Command::Dm(user.to_string())),
        ("accept", [user]) => Ok(Command::Accept(user.to_string())),
        ("reject", [user]) => Ok(Command::Reject(user.to_string())),
        ("fingerprint", [user]) => Ok(Command::Fingerprint(user.to_string())),
        ("trust", [user]) => Ok(Command::Trust(user.to_string())),
        ("history", [user]) => Ok(Command::History(user.to_string())),
        ("contacts", []) => Ok(Command::Contacts),
        ("rooms", []) => Ok(Command::Rooms),
        ("help", []) => Ok(Command::Help),
        ("quit", []) => Ok(Command::Quit),
        (name, _) if NAMES.iter().any(|n| n.get(1..) == Some(name)) => Err(usage()),
        _ => Err(ParseError::Unknown(cmd.to_string())),
    };
    command.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(line: &str) -> String {
        match parse(line) {
            Err(ParseError::Usage(cmd)) => cmd,
            Err(e) => panic!("{line:?}: {e:?}"),
            Ok(_) => panic!("{line:?} should fail"),
        }
    }

    #[test]
    fn parses_commands_with_their_arguments() {
        match parse("  /login alice password123 red green  blue ") {
            Ok(Some(Command::Login { name, creds: Some(c) })) => {
                assert_eq!(
                    (name.as_str(), c.password.as_str(), c.passphrase.as_str()),
                    ("alice", "password123", "red green blue")
                );
            }
            _ => panic!("expected login"),
        }
        assert!(matches!(parse("/login alice"), Ok(Some(Command::Login { creds: None, .. }))));
        assert!(matches!(parse("/register a b c d e"), Ok(Some(Command::Register { creds: Some(_), .. }))));
        assert!(matches!(parse("/quit"), Ok(Some(Command::Quit))));
        match parse("/say  Lobby   two  spaces, kept ") {
            Ok(Some(Command::Say { room, text })) => {
                assert_eq!((room.as_str(), text.as_str()), ("Lobby", "two  spaces, kept "))
            }
            _ => panic!("expected say"),
        }
        match parse("/msg @bob  hi  there") {
            Ok(Some(Command::Msg { user, text })) => assert_eq!((user.as_str(), text.as_str()), ("@bob", "hi  there")),
            _ => panic!("expected msg"),
        }
        assert!(matches!(parse("/create lobby pw"), Ok(Some(Command::Create { password: Some(_), .. }))));
        assert!(matches!(parse("/create lobby"), Ok(Some(Command::Create { password: None, .. }))));
        assert!(matches!(parse("/join lobby"), Ok(Some(Command::Join { password: None, .. }))));
        assert!(matches!(parse("/join lobby pw"), Ok(Some(Command::Join { password: Some(_), .. }))));
        assert!(matches!(parse("/leave lobby"), Ok(Some(Command::Leave(Some(r)))) if r == "lobby"));
        assert!(matches!(parse("/leave"), Ok(Some(Command::Leave(None)))));
        assert!(matches!(parse("/who"), Ok(Some(Command::Who(None)))));
        assert!(matches!(parse("/room lobby"), Ok(Some(Command::Room(Some(_))))));
        assert!(matches!(parse("/query @bob"), Ok(Some(Command::Query(u))) if u == "@bob"));
        assert!(matches!(parse("/delete lobby"), Ok(Some(Command::Delete(_)))));
        assert!(matches!(parse("/rooms"), Ok(Some(Command::Rooms))));
        match parse("/kick @bob  spamming  the lobby ") {
            Ok(Some(Command::Kick { user, reason })) => {
                assert_eq!((user.as_str(), reason.as_str()), ("@bob", "spamming  the lobby"))
            }
            _ => panic!("expected kick"),
        }
        assert!(matches!(parse("/kick bob"), Ok(Some(Command::Kick { reason, .. })) if reason.is_empty()));
        assert!(matches!(parse("/announce  back in  5 "), Ok(Some(Command::Announce(t))) if t == "back in  5"));
        assert!(matches!(parse("/help"), Ok(Some(Command::Help))));
        match parse("/room-ban  lobby @bob  spam,  again ") {
            Ok(Some(Command::RoomKick { room, user, reason, ban: true })) => {
                assert_eq!((room.as_str(), user.as_str(), reason.as_str()), ("lobby", "@bob", "spam,  again"))
            }
            _ => panic!("expected room-ban"),
        }
        assert!(
            matches!(parse("/room-kick lobby bob"), Ok(Some(Command::RoomKick { ban: false, reason, .. })) if reason.is_empty())
        );
        assert!(matches!(parse("/room-password lobby"), Ok(Some(Command::RoomPassword { password: None, .. }))));
        assert!(matches!(parse("/unsend 00ff"), Ok(Some(Command::Unsend { target: None, .. }))));
        assert!(matches!(parse("/unsend lobby 00ff"), Ok(Some(Command::Unsend { target: Some(_), .. }))));
        assert!(matches!(parse("/delete-account"), Ok(Some(Command::DeleteAccount(None)))));
        assert!(matches!(parse("/delete-account pw a b c"), Ok(Some(Command::DeleteAccount(Some(_))))));
        assert!(matches!(parse("/users"), Ok(Some(Command::Users))));
        assert!(matches!(parse("/logout-everywhere"), Ok(Some(Command::LogoutEverywhere))));
        assert!(matches!(parse("/password"), Ok(Some(Command::Password(None)))));
        match parse("/password old1 a b c new2  d e  f") {
            Ok(Some(Command::Password(Some((old, new))))) => assert_eq!(
                (old.password.as_str(), old.passphrase.as_str(), new.password.as_str(), new.passphrase.as_str()),
                ("old1", "a b c", "new2", "d e f")
            ),
            _ => panic!("expected password"),
        }
        assert!(matches!(parse("/forget @bob"), Ok(Some(Command::Forget(_)))));
        assert!(matches!(parse("   "), Ok(None)));
        assert!(matches!(parse(" hello  you"), Ok(Some(Command::Text(t))) if t == " hello  you"));
    }

    #[test]
    fn reports_usage_and_unknown_commands() {
        for (line, cmd) in [
            ("/login alice password123 red green", "login"),
            ("/register", "register"),
            ("/create lobby two words", "create"),
            ("/join", "join"),
            ("/join lobby a b", "join"),
            ("/say lobby", "say"),
            ("/say", "say"),
            ("/who a b", "who"),
            ("/delete", "delete"),
            ("/rooms x", "rooms"),
            ("/quit now", "quit"),
            ("/query", "query"),
            ("/msg @bob", "msg"),
            ("/kick", "kick"),
            ("/announce", "announce"),
            ("/room-kick lobby", "room-kick"),
            ("/room-owner lobby", "room-owner"),
            ("/unsend", "unsend"),
            ("/delete-account pw a b", "delete-account"),
            ("/users all", "users"),
            ("/password old a b c new d e", "password"),
            ("/password old a b c", "password"),
            ("/logout-everywhere now", "logout-everywhere"),
        ] {
            assert_eq!(usage(line), cmd, "{line}");
        }
        assert!(matches!(parse("/Frob x"), Err(ParseError::Unknown(c)) if c == "Frob"));
        assert!(matches!(parse("/"), Err(ParseError::Unknown(c)) if c.is_empty()));
    }

    #[test]
    fn splits_words_and_formats_ids() {
        assert_eq!(split_word("  a  b c "), ("a", "b c "));
        assert_eq!(split_word("one"), ("one", ""));
        assert_eq!(split_word(""), ("", ""));
        assert_eq!(dm_id(255), "00000000000000ff");
    }

    #[test]
    fn splits_a_long_text_at_line_breaks_with_visible_marks() {
        assert_eq!(split_text("a\nb", 1024), ["a\nb"], "fits: one message, line breaks kept");
        let line = "x".repeat(300);
        let text = [line.as_str(); 7].join("\n");
        let parts = split_text(&text, 1024);
        assert_eq!(parts.len(), 3, "{parts:?}");
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= 1024 && p.starts_with(&format!("(part {}/3) x", i + 1)), "{p}");
            assert!(p.split('\n').all(|l| l.ends_with(&line)), "cut only at line breaks: {p}");
        }
        let lines: usize = parts.iter().map(|p| p.split('\n').count()).sum();
        assert_eq!(lines, 7);
        // One line over the limit is cut at a character boundary.
        let long = "é".repeat(1500);
        let parts = split_text(&long, 1024);
        assert!(parts.len() == 3 && parts.iter().all(|p| p.len() <= 1024), "{parts:?}");
        let joined: String = parts.iter().map(|p| p.split_once(") ").unwrap().1).collect();
        assert_eq!(joined, long);
    }

    #[test]
    fn describes_failures_in_words_without_codes() {
        use crate::session::Failure;
        let f = |code, msg: &str| describe(&Failure::new("x", code, msg));
        assert_eq!(f(404, "no such user"), "no such user");
        assert_eq!(f(403, "only the owner can delete a room"), "not allowed: only the owner can delete a room");
        assert_eq!(f(401, "wrong user name or password"), "wrong user name or password");
        let mut limited = Failure::new("say", 429, "rate limited");
        limited.retry_after_ms = 2500;
        assert_eq!(describe(&limited), "too fast: try again in 3 s");
        assert_eq!(f(500, ""), "the server failed");
        for code in [0, 400, 401, 403, 404, 409, 413, 429, 500, 501, 503, 507, 508, 599] {
            assert!(!f(code, "why").contains(&code.to_string()), "{code}");
        }
    }
}
