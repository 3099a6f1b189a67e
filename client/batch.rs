//! Front end for scripts and tests (docs/CLIENT.md "Batch mode"): commands on
//! stdin, one JSON event per line on stdout.
//!
//! Invariant: stdout carries only whole JSON objects, one per line, each
//! flushed as it is written; diagnostics go to stderr; no password or
//! passphrase is ever written anywhere.

use std::io::{self, Write};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::app::{App, Flow, Frontend, Report};
use crate::conn::Conn;
use crate::input::Input;
use crate::json::Object;
use crate::session::Failure;

const REGISTER_USAGE: &str = "usage: /register NAME PASSWORD WORD1 WORD2 WORD3";
const LOGIN_USAGE: &str = "usage: /login NAME PASSWORD WORD1 WORD2 WORD3";
const HELP: &str =
    "commands: /register NAME PASSWORD WORD1 WORD2 WORD3; /login NAME PASSWORD WORD1 WORD2 WORD3; /help; /quit";

/// One parsed batch command.
pub enum Command {
    /// `/register NAME PASSWORD W1 W2 W3`.
    Register {
        /// User name as typed.
        name: String,
        /// Password.
        password: Zeroizing<String>,
        /// The three words joined by spaces.
        passphrase: Zeroizing<String>,
    },
    /// `/login NAME PASSWORD W1 W2 W3`.
    Login {
        /// User name as typed.
        name: String,
        /// Password.
        password: Zeroizing<String>,
        /// The three words joined by spaces.
        passphrase: Zeroizing<String>,
    },
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// Parses a line; `Ok(None)` for a blank line. Errors carry code 400.
pub fn parse(line: &str) -> Result<Option<Command>, Failure> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&first, args)) = words.split_first() else { return Ok(None) };
    let Some(cmd) = first.strip_prefix('/') else {
        // Not echoed back: a stray line could be a secret.
        return Err(Failure::new("", 400, "not a command: commands start with '/'; see /help"));
    };
    let creds = |usage: &str| match args {
        [name, password, w1, w2, w3] => {
            Ok((name.to_string(), Zeroizing::new(password.to_string()), Zeroizing::new(format!("{w1} {w2} {w3}"))))
        }
        _ => Err(Failure::new(cmd, 400, usage)),
    };
    match (cmd, args) {
        ("register", _) => creds(REGISTER_USAGE)
            .map(|(name, password, passphrase)| Some(Command::Register { name, password, passphrase })),
        ("login", _) => {
            creds(LOGIN_USAGE).map(|(name, password, passphrase)| Some(Command::Login { name, password, passphrase }))
        }
        ("help", []) => Ok(Some(Command::Help)),
        ("quit", []) => Ok(Some(Command::Quit)),
        ("help" | "quit", _) => Err(Failure::new(cmd, 400, format!("usage: /{cmd}"))),
        _ => Err(Failure::new(cmd, 400, format!("unknown command /{cmd}; see /help"))),
    }
}

/// Runs batch mode on an established connection; returns the exit status.
pub fn run(conn: Conn, home: PathBuf, server: &str) -> u8 {
    if emit(&Object::new("connected").str("server", server).finish()).is_err() {
        return 1;
    }
    App::new(conn, home, Input::stdin()).run(&mut Batch)
}

/// Reports a failure before any session exists (`connect`, `home`) and returns exit status 1.
pub fn fatal(cmd: &str, message: &str) -> u8 {
    eprintln!("sotto: {message}");
    let _ = emit(&error_line(&Failure::new(cmd, 0, message)));
    1
}

struct Batch;

impl Frontend for Batch {
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow> {
        let started = match parse(line) {
            Ok(None) => Ok(()),
            Ok(Some(Command::Quit)) => return Ok(Flow::Quit),
            Ok(Some(Command::Help)) => {
                return emit(&Object::new("help").str("message", HELP).finish()).map(|()| Flow::Continue)
            }
            Ok(Some(Command::Register { name, password, passphrase })) => app.register(&name, &password, &passphrase),
            Ok(Some(Command::Login { name, password, passphrase })) => app.login(&name, &password, &passphrase),
            Err(f) => Err(f),
        };
        match started {
            Ok(()) => Ok(Flow::Continue),
            Err(f) => emit(&error_line(&f)).map(|()| Flow::Continue),
        }
    }

    fn report(&mut self, report: Report) -> io::Result<()> {
        let line = match report {
            Report::Registered { .. } => Object::new("ok").str("cmd", "register").finish(),
            Report::Authenticated { user, .. } => Object::new("authenticated").str("user", &user).finish(),
            Report::Failed(f) => error_line(&f),
            Report::Warning(w) => Object::new("warning").str("message", &w).finish(),
            Report::Notice(n) => {
                eprintln!("sotto: {n}");
                return Ok(());
            }
            Report::Lost(why) => {
                eprintln!("sotto: {why}");
                error_line(&Failure::new("connection", 0, why))
            }
            Report::Bye => Object::new("bye").finish(),
        };
        emit(&line)
    }

    fn idle(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn error_line(f: &Failure) -> String {
    let o = Object::new("error").str("cmd", &f.cmd).num("code", u64::from(f.code)).str("message", &f.message);
    match f.retry_after_ms {
        0 => o.finish(),
        ms => o.num("retry_after_ms", u64::from(ms)).finish(),
    }
}

/// Writes one line to stdout and flushes it.
fn emit(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> Failure {
        match parse(line) {
            Err(f) => f,
            Ok(_) => panic!("{line:?} should fail"),
        }
    }

    #[test]
    fn parses_commands_with_their_arguments() {
        match parse("  /login alice password123 red green  blue ") {
            Ok(Some(Command::Login { name, password, passphrase })) => {
                assert_eq!(
                    (name.as_str(), password.as_str(), passphrase.as_str()),
                    ("alice", "password123", "red green blue")
                );
            }
            _ => panic!("expected login"),
        }
        assert!(matches!(parse("/register a b c d e"), Ok(Some(Command::Register { .. }))));
        assert!(matches!(parse("/quit"), Ok(Some(Command::Quit))));
        assert!(matches!(parse("/help"), Ok(Some(Command::Help))));
        assert!(matches!(parse("   "), Ok(None)));
    }

    #[test]
    fn reports_usage_and_unknown_commands_as_400() {
        let f = err("/login alice password123 red green");
        assert_eq!((f.cmd.as_str(), f.code, f.message.as_str()), ("login", 400, LOGIN_USAGE));
        assert_eq!(err("/register alice").message, REGISTER_USAGE);
        let f = err("/Frob x");
        assert_eq!((f.cmd.as_str(), f.code), ("Frob", 400));
        assert_eq!(err("/quit now").cmd, "quit");
        let f = err("hunter2hunter2");
        assert!(f.cmd.is_empty() && !f.message.contains("hunter2"));
    }

    #[test]
    fn error_lines_have_the_documented_fields() {
        let line = error_line(&Failure::new("login", 401, "wrong user name or password"));
        assert_eq!(line, r#"{"type":"error","cmd":"login","code":401,"message":"wrong user name or password"}"#);
    }
}
