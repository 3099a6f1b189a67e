//! Front end for people: a banner, a `> ` prompt, commands, and secrets asked for without echo.
//!
//! Invariant: passwords and passphrases are only read through the no-echo
//! prompt, never taken from the command line and never printed.

use std::io::{self, Write};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::app::{App, Flow, Frontend, Report};
use crate::conn::Conn;
use crate::input::Input;
use crate::session::Failure;

const HELP: &str = "\
commands:
  /register NAME   create account NAME (asks for a password and a three-word passphrase)
  /login NAME      log in as NAME (asks for the password and the passphrase)
  /help            show this list
  /quit            leave (end of input does the same)";

/// Runs interactive mode on an established connection; returns the exit status.
pub fn run(conn: Conn, home: PathBuf, server: &str) -> u8 {
    println!("sotto {}", sotto::build_info::describe());
    println!("connected to {server}; server key verified (fingerprint {})", crate::conn::server_fingerprint());
    println!("type /help for the list of commands");
    App::new(conn, home, Input::stdin()).run(&mut Interactive { prompted: false })
}

struct Interactive {
    /// A `> ` prompt is on screen and nothing has been printed after it.
    prompted: bool,
}

impl Interactive {
    fn register(&mut self, app: &mut App, name: &str) -> io::Result<()> {
        let Some(password) = ask(app, "Password: ")? else { return Ok(()) };
        let Some(repeat) = ask(app, "Repeat password: ")? else { return Ok(()) };
        if !sotto::crypto::ct_eq(password.as_bytes(), repeat.as_bytes()) {
            println!("error: the passwords do not match");
            return Ok(());
        }
        let Some(passphrase) = ask(app, "Passphrase (three words): ")? else { return Ok(()) };
        println!("generating keys…");
        if let Err(f) = app.register(name, &password, &passphrase) {
            print_failure(&f);
        }
        Ok(())
    }

    fn login(&mut self, app: &mut App, name: &str) -> io::Result<()> {
        let Some(password) = ask(app, "Password: ")? else { return Ok(()) };
        let Some(passphrase) = ask(app, "Passphrase: ")? else { return Ok(()) };
        if let Err(f) = app.login(name, &password, &passphrase) {
            print_failure(&f);
        }
        Ok(())
    }
}

/// Asks for a secret; prints "cancelled" when input ended or a signal interrupted the prompt.
fn ask(app: &mut App, prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
    let answer = app.input.read_secret(prompt)?;
    if answer.is_none() {
        println!("\ncancelled");
    }
    Ok(answer)
}

impl Frontend for Interactive {
    fn command(&mut self, app: &mut App, line: &str) -> io::Result<Flow> {
        self.prompted = false;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["/help", ..] => println!("{HELP}"),
            ["/quit", ..] => return Ok(Flow::Quit),
            ["/register", name] => self.register(app, name)?,
            ["/login", name] => self.login(app, name)?,
            [cmd @ ("/register" | "/login"), ..] => {
                println!("usage: {cmd} NAME (the password and passphrase are asked for, without echo)");
            }
            [cmd, ..] if cmd.starts_with('/') => println!("unknown command {cmd}; type /help for the list"),
            _ => println!("not a command; type /help for the list of commands"),
        }
        Ok(Flow::Continue)
    }

    fn report(&mut self, report: Report) -> io::Result<()> {
        if std::mem::take(&mut self.prompted) {
            println!();
        }
        match report {
            Report::Registered { user, key_path, fingerprint } => {
                println!("registered {user}; private keys saved in {}", key_path.display());
                println!("identity fingerprint: {}", group(&fingerprint));
                println!("log in with /login {user}");
            }
            Report::Authenticated { user, uid, fingerprint } => {
                println!("logged in as {user} (uid {uid})");
                if let Some(fp) = fingerprint {
                    println!("identity fingerprint: {}", group(&fp));
                }
            }
            Report::Failed(f) => print_failure(&f),
            Report::Warning(w) => println!("warning: {w}"),
            Report::Notice(n) => println!("notice: {n}"),
            Report::Lost(why) => println!("error: {why}"),
            Report::Bye => println!("bye"),
        }
        io::stdout().flush()
    }

    fn idle(&mut self) -> io::Result<()> {
        if !self.prompted {
            self.prompted = true;
            print!("> ");
            io::stdout().flush()?;
        }
        Ok(())
    }
}

/// `error 401: wrong user name or password`, with the wait for 429.
fn print_failure(f: &Failure) {
    let retry = match f.retry_after_ms {
        0 => String::new(),
        ms => format!(" (try again in {} s)", ms.div_ceil(1000)),
    };
    match f.code {
        0 => println!("error: {}{retry}", f.message),
        code => println!("error {code}: {}{retry}", f.message),
    }
}

/// Hex in groups of four, for reading aloud.
fn group(hex: &str) -> String {
    let chars: Vec<char> = hex.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}
