//! sotto, the terminal client (DESIGN §9): parses the command line, prepares
//! the home directory, connects, and hands over to a front end.
//!
//! Invariant: nothing here speaks the protocol; exit status 2 is a usage
//! error, 1 any other failure, 0 a normal end.

mod app;
mod batch;
mod command;
mod conn;
mod contacts;
mod editor;
mod event;
mod fresh;
mod home;
mod inbox;
mod input;
mod interactive;
mod keyring;
mod keys;
mod keystore;
mod lineedit;
mod outbox;
mod pins;
mod ratchets;
mod resume;
mod servers;
mod session;
mod store;
mod term;
mod text;
mod transfer;
mod tui;
mod vault;
mod words;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use servers::Servers;

const DEFAULT_SERVER: &str = "127.0.0.1:7777";
/// Seconds a shown direct message is kept (DESIGN §7: one hour).
const DEFAULT_DM_TTL: u64 = 3600;
/// Longest `--dm-ttl` accepted: a year.
const MAX_DM_TTL: u64 = 365 * 24 * 3600;

/// Seconds between heartbeats of a quiet session (the server closes one silent for 30 s).
const DEFAULT_HEARTBEAT: u64 = 10;

const USAGE: &str =
    "usage: sotto [--server HOST:PORT[,HOST:PORT...]] [--home DIR] [--batch | --plain] [--dm-ttl SECONDS] [--heartbeat SECONDS]
       sotto --help | --version | --man";

const HELP: &str = "sotto: secure chat client (full screen on a terminal, else line by line)

options:
  --server HOST:PORT[,HOST:PORT...]
                      server to connect to (default 127.0.0.1:7777); or several
                      nodes of one deployment, comma-separated (at most 16):
                      tried in order at start and at every reconnection, the
                      first that completes the handshake is used (5 s connect
                      limit per address)
  --home DIR          local state: private keys per server and user
                      (default $XDG_DATA_HOME/sotto, else $HOME/.local/share/sotto;
                      created 0700, refused if group or others can access it)
  --batch             commands on stdin, one JSON event per line on stdout
  --plain             line by line with a prompt, also on a terminal (the
                      default when stdin or stdout is not a terminal)
  --dm-ttl SECONDS    erase a received direct message this long after it was
                      shown (default 3600)
  --heartbeat SECONDS ping a quiet server this often (default 10, 1 to 25); a server
                      silent for three intervals is treated as gone and reconnected
  --help              this text
  --version           version, build id and protocol version
  --man               this text as a manual page, sotto(1)

See docs/CLIENT.md for the commands and the batch events.";

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    /// The nodes to try, in order.
    servers: Servers,
    home: Option<PathBuf>,
    batch: bool,
    /// Line mode even on a terminal.
    plain: bool,
    /// How long a shown direct message is kept, in seconds.
    dm_ttl: u64,
    /// Seconds between heartbeats.
    heartbeat: u64,
}

#[derive(Debug)]
enum Parsed {
    Run(Options),
    Help,
    Version,
    Man,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut opts = Options {
        servers: Servers::parse(DEFAULT_SERVER)?,
        home: None,
        batch: false,
        plain: false,
        dm_ttl: DEFAULT_DM_TTL,
        heartbeat: DEFAULT_HEARTBEAT,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str().map(str::to_string) else {
            return Err(format!("argument {arg:?} is not valid UTF-8"));
        };
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(OsString::from(v))),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| inline.clone().or_else(|| args.next()).ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--server" => {
                let v = value("--server")?;
                let v = v.into_string().map_err(|_| "--server must be valid UTF-8".to_string())?;
                opts.servers = Servers::parse(&v)?;
            }
            "--home" => opts.home = Some(PathBuf::from(value("--home")?)),
            "--dm-ttl" => {
                let v = value("--dm-ttl")?;
                opts.dm_ttl = v
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|s| *s <= MAX_DM_TTL)
                    .ok_or_else(|| format!("--dm-ttl needs a number of seconds (at most {MAX_DM_TTL})"))?;
            }
            "--heartbeat" => {
                let v = value("--heartbeat")?;
                opts.heartbeat = v
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|s| (1..=25).contains(s))
                    .ok_or_else(|| "--heartbeat needs a number of seconds from 1 to 25".to_string())?;
            }
            "--batch" if inline.is_none() => opts.batch = true,
            "--plain" if inline.is_none() => opts.plain = true,
            "--help" | "-h" if inline.is_none() => return Ok(Parsed::Help),
            "--version" | "-V" if inline.is_none() => return Ok(Parsed::Version),
            "--man" if inline.is_none() => return Ok(Parsed::Man),
            _ if arg.starts_with('-') => return Err(format!("unknown option '{arg}'")),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    Ok(Parsed::Run(opts))
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            println!("{HELP}\n\n{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("sotto {}", sotto::build_info::describe());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Man) => {
            let text = format!("{HELP}\n\n{USAGE}");
            print!("{}", sotto::manpage::render("sotto", 1, "the sotto secure chat client", &text, "sottod(8)"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sotto: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(run(opts))
}

fn run(opts: Options) -> u8 {
    let fail = |cmd: &str, message: String| {
        if opts.batch {
            batch::fatal(cmd, &message)
        } else {
            eprintln!("sotto: {}", text::neutralise(&message));
            1
        }
    };
    let home = match opts.home.clone().map_or_else(home::default_home, Ok) {
        Ok(h) => h,
        Err(e) => return fail("home", e.to_string()),
    };
    if let Err(e) = home::prepare(&home) {
        return fail("home", e.to_string());
    }
    let (conn, reached) = match conn::connect_first(&opts.servers) {
        Ok(c) => c,
        Err(e) => return fail("connect", e.to_string()),
    };
    let timing = app::Timing { dm_ttl_ms: opts.dm_ttl * 1000, heartbeat_ms: opts.heartbeat * 1000 };
    if opts.batch {
        batch::run(conn, home, &opts.servers, &reached, timing)
    } else if opts.plain || !terminals() {
        interactive::run(conn, home, &opts.servers, &reached, timing)
    } else {
        tui::run(conn, home, &opts.servers, &reached, timing)
    }
}

/// True when standard input and output are both terminals (then the full screen is the default).
fn terminals() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_options_in_both_spellings() {
        let Ok(Parsed::Run(o)) = parse_strs(&["--server=h:1", "--home", "/x", "--batch"]) else { panic!() };
        assert_eq!(
            (o.servers.iter().collect::<Vec<_>>(), o.home, o.batch),
            (vec!["h:1"], Some(PathBuf::from("/x")), true)
        );
        let Ok(Parsed::Run(o)) = parse_strs(&[]) else { panic!() };
        assert_eq!(
            (o.servers.iter().collect::<Vec<_>>(), o.home, o.batch, o.dm_ttl, o.heartbeat),
            (vec![DEFAULT_SERVER], None, false, 3600, 10)
        );
        let Ok(Parsed::Run(o)) = parse_strs(&["--server", "a:1,b:2,c:3"]) else { panic!() };
        assert_eq!(o.servers.iter().collect::<Vec<_>>(), ["a:1", "b:2", "c:3"]);
        let Ok(Parsed::Run(o)) = parse_strs(&["--dm-ttl", "2"]) else { panic!() };
        assert_eq!(o.dm_ttl, 2);
        let Ok(Parsed::Run(o)) = parse_strs(&["--dm-ttl=0"]) else { panic!() };
        assert_eq!(o.dm_ttl, 0);
    }

    #[test]
    fn rejects_unknown_flags_and_missing_values() {
        assert!(parse_strs(&["--frob"]).unwrap_err().contains("unknown option '--frob'"));
        assert!(parse_strs(&["--server"]).unwrap_err().contains("needs a value"));
        // A bad list is a usage error at start, not a failed connection later.
        assert!(parse_strs(&["--server", "a:1,,b:2"]).unwrap_err().contains("is empty"));
        assert!(parse_strs(&["--server=a:1,a:1"]).unwrap_err().contains("listed twice"));
        assert!(parse_strs(&["--server", "a"]).unwrap_err().contains("is not HOST:PORT"));
        assert!(parse_strs(&["--batch=1"]).is_err());
        for bad in ["-1", "x", "1.5", "99999999999999"] {
            assert!(parse_strs(&["--dm-ttl", bad]).unwrap_err().contains("--dm-ttl"), "{bad}");
        }
        assert!(parse_strs(&["extra"]).is_err());
    }
}
