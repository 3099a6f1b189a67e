//! IRC lines from a server, as this client sees them: split (RFC 2812 §2.3.1) and classified.
//! Pure: bytes in, meaning out; nothing here panics on any input.

use std::io::{self, ErrorKind};

/// Parameters in one message, RFC 2812 §2.3.1.
const MAX_PARAMS: usize = 15;
/// `PING` tokens the client uses to learn how far the server has read (`Irc::sync`).
pub(super) const ACK_PREFIX: &str = "sotto-ack-";

/// What one server line means to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Incoming {
    /// `PING`: answer with `PONG` and this token.
    Ping(Vec<u8>),
    /// `PONG` to one of this client's acknowledgment `PING`s.
    Ack(u64),
    /// `PONG` to the caller's `PING`.
    Pong(String),
    /// `PRIVMSG` to a channel from another client: its text.
    Message(String),
    /// `001`: registered.
    Welcome,
    /// `366`: end of `NAMES`, for this channel.
    NamesEnd(String),
    /// An error numeric (400–599 but 422, "no MOTD") or `ERROR`: what it is about (the
    /// numeric's second parameter: a nickname, a channel, a command) and the whole line.
    Refusal { about: String, line: String },
    /// Anything else (notices, `JOIN`s, the MOTD, ...).
    Other,
}

/// One line split as RFC 2812 §2.3.1 says; borrowed, no allocation.
#[derive(Debug)]
struct Parsed<'a> {
    prefix: &'a [u8],
    command: &'a [u8],
    params: [&'a [u8]; MAX_PARAMS],
    count: usize,
}

impl<'a> Parsed<'a> {
    fn param(&self, i: usize) -> &'a [u8] {
        if i < self.count {
            self.params.get(i).copied().unwrap_or_default()
        } else {
            b""
        }
    }

    fn last(&self) -> &'a [u8] {
        self.param(self.count.saturating_sub(1))
    }
}

/// Splits a line (without its `\n`; a trailing `\r` is dropped); `None` if it has no command.
fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
    if rest.first() == Some(&b'@') {
        // IRCv3 message tags (never requested, tolerated).
        rest = split_word(rest).1;
    }
    rest = skip_spaces(rest);
    let mut prefix: &[u8] = b"";
    if let Some(r) = rest.strip_prefix(b":") {
        (prefix, rest) = split_word(r);
        rest = skip_spaces(rest);
    }
    let (command, mut rest) = split_word(rest);
    if command.is_empty() {
        return None;
    }
    let mut params: [&[u8]; MAX_PARAMS] = [b""; MAX_PARAMS];
    let mut count = 0;
    loop {
        rest = skip_spaces(rest);
        if rest.is_empty() || count == MAX_PARAMS {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(b":") {
            params[count] = trailing;
            count += 1;
            break;
        }
        if count == MAX_PARAMS - 1 {
            // The 15th parameter takes the rest of the line, spaces and all.
            params[count] = rest;
            count += 1;
            break;
        }
        let (p, r) = split_word(rest);
        params[count] = p;
        count += 1;
        rest = r;
    }
    Some(Parsed { prefix, command, params, count })
}

/// What `line` means to the client registered as `own_nick`.
pub(super) fn classify(line: &[u8], own_nick: &str) -> Incoming {
    let Some(m) = parse(line) else { return Incoming::Other };
    match m.command {
        b"PING" => Incoming::Ping(m.last().to_vec()),
        b"PONG" => {
            let token = m.last();
            match token.strip_prefix(ACK_PREFIX.as_bytes()).and_then(parse_u64) {
                Some(seq) => Incoming::Ack(seq),
                None => Incoming::Pong(lossy(token)),
            }
        }
        b"PRIVMSG" if m.count >= 2 => {
            let from = m.prefix.split(|&b| b == b'!').next().unwrap_or_default();
            let to_channel = matches!(m.param(0).first(), Some(b'#' | b'&'));
            if to_channel && !from.eq_ignore_ascii_case(own_nick.as_bytes()) {
                Incoming::Message(lossy(m.param(1)))
            } else {
                Incoming::Other
            }
        }
        b"001" => Incoming::Welcome,
        b"366" => Incoming::NamesEnd(lossy(m.param(1))),
        b"ERROR" => Incoming::Refusal { about: String::new(), line: lossy(line) },
        // 422: the server has no MOTD, which ends registration as 376 does (RFC 2812 §5.2).
        b"422" => Incoming::Other,
        [b'4' | b'5', b'0'..=b'9', b'0'..=b'9'] => Incoming::Refusal { about: lossy(m.param(1)), line: lossy(line) },
        _ => Incoming::Other,
    }
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, b""),
    }
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// `#chan` for `chan`, unchanged if it already starts with `#` or `&`.
pub(super) fn channel_name(chan: &str) -> String {
    if chan.starts_with(['#', '&']) {
        chan.to_owned()
    } else {
        format!("#{chan}")
    }
}

/// Nicknames, channels and tokens are single non-empty words.
pub(super) fn check_word(s: &str) -> io::Result<()> {
    if s.is_empty() || s.bytes().any(|b| matches!(b, b' ' | b'\r' | b'\n' | 0)) {
        return Err(io::Error::new(ErrorKind::InvalidInput, format!("not an IRC word: {s:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefix_command_and_trailing() {
        let m = parse(b":bench.ngircd 001 abc :Welcome to the Internet Relay Network\r").unwrap();
        assert_eq!(m.prefix, b"bench.ngircd");
        assert_eq!(m.command, b"001");
        assert_eq!(m.count, 2);
        assert_eq!(m.param(0), b"abc");
        assert_eq!(m.param(1), b"Welcome to the Internet Relay Network");
        assert_eq!(m.param(7), b"");
    }

    #[test]
    fn parses_tags_and_fifteenth_parameter() {
        let m = parse(b"@time=x :p CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16").unwrap();
        assert_eq!(m.command, b"CMD");
        assert_eq!(m.count, 15);
        assert_eq!(m.param(14), b"15 16");
    }

    #[test]
    fn rejects_lines_without_command() {
        for line in [&b""[..], b"\r", b":prefix", b":prefix   ", b"@tags", b"   "] {
            assert!(parse(line).is_none(), "{line:?}");
            assert_eq!(classify(line, "me"), Incoming::Other);
        }
    }

    #[test]
    fn classifies_server_lines() {
        let cases: &[(&[u8], Incoming)] = &[
            (b"PING :bench.ngircd", Incoming::Ping(b"bench.ngircd".to_vec())),
            (b":s PONG s :w2-17", Incoming::Pong("w2-17".into())),
            (b":s PONG s :sotto-ack-42", Incoming::Ack(42)),
            (b":s PONG s :sotto-ack-x", Incoming::Pong("sotto-ack-x".into())),
            (b":bob!~b@127.0.0.1 PRIVMSG #bench :hello there", Incoming::Message("hello there".into())),
            (b":me!~m@h PRIVMSG #bench :echo", Incoming::Other),
            (b":ME!~m@h PRIVMSG #bench :echo", Incoming::Other),
            (b":bob!~b@h PRIVMSG me :direct", Incoming::Other),
            (b":bob!~b@h PRIVMSG #bench", Incoming::Other),
            (b":s 001 me :Welcome", Incoming::Welcome),
            (b":s 366 me #bench :End of NAMES list", Incoming::NamesEnd("#bench".into())),
            (
                b":s 433 * me :Nickname already in use",
                Incoming::Refusal { about: "me".into(), line: ":s 433 * me :Nickname already in use".into() },
            ),
            (
                b":s 471 me #bench :Cannot join channel (+l)",
                Incoming::Refusal { about: "#bench".into(), line: ":s 471 me #bench :Cannot join channel (+l)".into() },
            ),
            (
                b"ERROR :Closing connection",
                Incoming::Refusal { about: String::new(), line: "ERROR :Closing connection".into() },
            ),
            (b":s 422 me :Message of the day file is missing.", Incoming::Other),
            (b":s 372 me :- motd", Incoming::Other),
            (b":s 4x3 me :odd", Incoming::Other),
            (b":s NOTICE * :*** hi", Incoming::Other),
        ];
        for (i, (line, want)) in cases.iter().enumerate() {
            assert_eq!(&classify(line, "me"), want, "case {i}: {}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn survives_arbitrary_bytes() {
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    b" :!#@PRIVMSGPONG0123\r\xff"[(x >> 16) as usize % 22]
                })
                .collect();
            let _ = classify(&line, "me");
        }
    }

    #[test]
    fn channel_names_get_a_hash() {
        assert_eq!(channel_name("bench"), "#bench");
        assert_eq!(channel_name("#bench"), "#bench");
        assert_eq!(channel_name("&local"), "&local");
        assert!(check_word("a b").is_err());
        assert!(check_word("").is_err());
        assert!(check_word("ok").is_ok());
    }
}
