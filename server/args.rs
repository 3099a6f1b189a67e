//! sottod's options: the command line, an optional TOML configuration file
//! whose keys mirror the options, and the defaults, which depend on whether
//! sottod runs from a build tree or is installed (docs/OPERATIONS.md).
//!
//! Invariant: a configuration file can set exactly what the command line can,
//! no more, and the command line wins over it; an unknown key is an error
//! naming it, never ignored.

use std::path::{Path, PathBuf};

use sotto::build_info;
use sotto::server::core::{Limits, Registration};
use sotto::server::log;

pub const USAGE: &str = "usage: sottod [--config FILE] [--listen ADDR] [--data DIR] [--key PATH] [--workers N]
              [--threads N]
              [--handshake-timeout SECS] [--login-timeout SECS] [--idle-timeout SECS]
              [--queue-ttl SECS] [--rate N/SECS|off] [--max-bps BYTES] [--user NAME]
              [--max-conns N] [--max-conns-per-addr N] [--handshakes-per-sec N] [--log-level LEVEL]
              [--kdf-memory KIB] [--registrations N/SECS|off] [--room-creations N/SECS|off]
              [--mailbox-max-msgs N] [--mailbox-max-bytes BYTES]
              [--max-file-size BYTES] [--file-quota BYTES] [--file-ttl SECS]
              [--registration open|approval|closed] [--sessions-per-user N] [--login-records N]
              [--name-reserve SECS] [--list-users all|shared|off]
              [--ticket-ttl SECS] [--no-resume] [--handshake-backlog N]
              [--cluster URL[,URL...] [--node NAME] [--cluster-replicas N]
               [--cluster-creds FILE] [--cluster-ca FILE]]
       sottod [options] --check
       sottod --opcodes | --opcodes-markdown | --opcodes-canonical | --man | --version | --help

  --config FILE             read options from FILE (TOML: each key an option without its --,
                            e.g. listen = \"0.0.0.0:7777\", workers = 4, rate = \"off\",
                            no-resume = true for a flag); options on
                            the command line win (default /etc/sotto/sottod.toml when it
                            exists and sottod is installed, none when it runs from a build tree)

  --listen ADDR             address to listen on (default 127.0.0.1:7777; port 0 picks one)
  --data DIR                data directory, mode 0700, created if missing (default
                            /var/lib/sotto when installed, ./data in a build tree)
  --key PATH                server private key, PKCS#8 PEM, mode 0600 (default
                            /etc/sotto/server_rsa.pem when installed, keys/server_rsa.pem in a
                            build tree; the throwaway key in development builds)
  --workers N               threads for RSA signing, and as many for argon2id (default 2);
                            signing runs at a lower priority than the event loop
  --threads N               event loops: with N over 1, one core loop keeps all state and
                            N - 1 output loops seal and write records (default: the
                            number of cores, at most 16; 1 runs everything in one loop)
  --user NAME               started as root: give the data directory to NAME, chroot into it
                            and become NAME before serving (default sotto, a dedicated account:
                            useradd --system --home-dir /var/lib/sotto --shell /usr/sbin/nologin sotto)
  --handshake-timeout SECS  close connections that have not finished the handshake (default 10)
  --login-timeout SECS      close connections that have not logged in (default 60)
  --idle-timeout SECS       close logged-in sessions silent this long; clients ping every 10 s (default 30)
  --queue-ttl SECS          undelivered direct messages expire after this (default 2592000 = 30 days)
  --rate N/SECS | off       chat messages (rooms and DMs) per user, all its sessions together
                            (default 5/5); excess gets 429
  --registrations N/SECS | off
                            registrations per address (an IPv6 /64) (default 3/60); excess gets 429
                            before any password hashing
  --room-creations N/SECS | off
                            room creations per address (an IPv6 /64) (default 10/60); excess gets 429
  --mailbox-max-msgs N      events waiting at most in one user's mailbox (default 10000); more get 508
  --mailbox-max-bytes BYTES bytes waiting at most in one user's mailbox (default 16777216); more get 508
  --max-file-size BYTES     largest file a user may offer, in plaintext bytes (default 268435456
                            = 256 MiB); larger offers get 413
  --file-quota BYTES        bytes of files one user may have on the server at once, counted as
                            16 KiB per chunk (default 1073741824 = 1 GiB); more gets 507
  --file-ttl SECS           files are deleted this long after they were offered (default
                            604800 = 7 days), and DM files once their recipient is done
  --registration MODE       open (default): new accounts are active at once; approval: they wait
                            on hold until `sottoctl approve USER`; closed: registration is refused (403)
  --sessions-per-user N     sessions one user may have at once (default 4); the next login gets 403
  --login-records N         logins and failed logins kept per account, shown to the user after
                            login and by `sottoctl show` (default 10, at most 32)
  --name-reserve SECS       a deleted account's name is refused to registrations this long
                            (default 7776000 = 90 days)
  --list-users all|shared|off
                            whom /users lists: every account, the users one shares a room or
                            an accepted DM channel with (default shared), or nobody (refused)
  --ticket-ttl SECS         a resumption ticket is accepted this long after it was issued (default
                            604800 = 7 days; 60 to 7776000 = 90 days); a shorter value applies to
                            the tickets already out too
  --no-resume               issue no resumption tickets and refuse every resumption: each
                            reconnect is a full handshake and login (the ticket keys and the
                            journal are kept, so tickets issued before work again once resumed)
  --handshake-backlog N     full handshakes waiting for a signature at most, from all addresses
                            together (default 1024); a ClientHello beyond it is closed unanswered
                            and its client retries later: in a reconnect storm the signing queue
                            stays shorter than what the workers sign before the handshake timeout
  --cluster URL[,URL...]    keep the state in NATS JetStream at these servers (nats://HOST:PORT,
                            or tls://HOST:PORT) instead of files under --data, which then holds
                            only the admin socket; without it the file store (default). One
                            node writes and serves at a time (its writer lease); the others
                            print `standby ADDR`, refuse connections, and take over when the
                            lease lapses (5 s). A writer that finds its lease taken exits
                            with status 3: run nodes under a supervisor that restarts them
  --node NAME               this node's name in logs and on the NATS connection (default: the host name)
  --cluster-replicas N      replicas of the JetStream streams sottod creates (default 3; 1 for a
                            single NATS server)
  --cluster-creds FILE      NATS credentials file (JWT and nkey seed), read at start
  --cluster-ca FILE         CA certificates (PEM) the NATS servers' TLS certificates chain to;
                            TLS is then required, read at start
  --max-bps BYTES           input bytes per second per connection before reading pauses (default 8388608; 0: off)
  --max-conns N             open connections at most (default 16384)
  --max-conns-per-addr N    open connections at most from one address (default 64)
  --handshakes-per-sec N    handshakes signed per second for one address (default 50)
  --log-level LEVEL         error, warn, info (default) or debug (every connection closed, with why)
  --kdf-memory KIB          argon2id memory for password and passphrase hashes made from now on
                            (default 19456 = 19 MiB); lower only for benchmark set-ups
  --opcodes                 print the opcode audit table and exit
  --opcodes-markdown        print docs/OPCODES.md and exit
  --opcodes-canonical       print the canonical opcode table text (its SHA-256 is the table hash) and exit
  --check                   print the settings in effect (configuration file, options and
                            defaults together) and exit, without starting
  --man                     print this text as a manual page, sottod(8), and exit

\"Installed\" means the binary does not sit in a cargo target directory. Log lines go to
stderr with an RFC 3339 time, or without one under systemd, whose journal stamps them.
The first line on stdout is `listening HOST:PORT`. The admin socket for sottoctl(8) is
DATA/admin.sock, mode 0600, for root and the service user only. The resumption ticket keys
are DATA/ticket-keys and the journal of revocations and used tickets DATA/tickets, both 0600.
SIGINT/SIGTERM finish pending work and exit 0.";

/// Where an installed sottod looks for its configuration, key and data.
pub const ETC_CONFIG: &str = "/etc/sotto/sottod.toml";
const ETC_KEY: &str = "/etc/sotto/server_rsa.pem";
const VAR_DATA: &str = "/var/lib/sotto";
/// A configuration file larger than this is refused unread.
const CONFIG_MAX: u64 = 64 * 1024;

/// What sottod was asked to do.
pub struct Args {
    pub listen: String,
    pub data: PathBuf,
    pub key: PathBuf,
    pub workers: usize,
    pub threads: usize,
    pub user: String,
    pub limits: Limits,
    pub kdf_kib: u32,
    /// `--cluster`: the NATS URLs; empty for the file store.
    pub cluster: Vec<String>,
    pub node: String,
    pub cluster_replicas: usize,
    pub cluster_creds: Option<PathBuf>,
    pub cluster_ca: Option<PathBuf>,
}

/// True when this binary runs from a cargo target directory (a build tree):
/// cargo marks that directory's root with `CACHEDIR.TAG`.
fn in_build_tree() -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    exe.ancestors().skip(1).take(4).any(|dir| dir.join("CACHEDIR.TAG").is_file())
}

/// The command line, after the options of the configuration file (so that the command line wins).
pub fn parse() -> Result<Option<Args>, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let installed = !in_build_tree();
    let config = match argv.iter().position(|a| a == "--config") {
        Some(i) => Some(PathBuf::from(argv.get(i + 1).ok_or("--config needs a value")?)),
        None if installed && Path::new(ETC_CONFIG).exists() => Some(PathBuf::from(ETC_CONFIG)),
        None => None,
    };
    let mut all = match &config {
        Some(path) => config_options(path)?,
        None => Vec::new(),
    };
    let mut rest = argv.into_iter();
    while let Some(a) = rest.next() {
        if a == "--config" {
            rest.next();
        } else {
            all.push(a);
        }
    }
    parse_from(all, installed)
}

/// The options a TOML configuration file gives, as command-line words: each
/// key is an option without its `--`, each value a string, a whole number or
/// a boolean `true` for a flag without a value.
pub fn config_options(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > CONFIG_MAX {
        return Err(format!("{shown}: larger than {CONFIG_MAX} bytes; not a sottod configuration"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{shown}: {e}"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        if matches!(
            key.as_str(),
            "config" | "check" | "help" | "version" | "man" | "opcodes" | "opcodes-markdown" | "opcodes-canonical"
        ) {
            return Err(format!("{shown}: `{key}` is not an option a configuration file can set"));
        }
        // A flag: set by `true`, left out by `false`.
        if FLAGS.contains(&key.as_str()) {
            match value {
                toml::Value::Boolean(true) => out.push(format!("--{key}")),
                toml::Value::Boolean(false) => {}
                other => return Err(format!("{shown}: `{key}` = {other}: a flag takes true or false")),
            }
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            other => return Err(format!("{shown}: `{key}` = {other}: a string or a whole number")),
        };
        out.push(format!("--{key}"));
        out.push(value);
    }
    Ok(out)
}

/// The options that take no value (a configuration file sets them with `true`).
const FLAGS: &[&str] = &["no-resume"];

/// Most event loops `--threads` takes, and its default's cap.
const MAX_THREADS: usize = 64;
/// The default `--threads` is the number of cores up to this.
const DEFAULT_THREADS_CAP: usize = 16;

/// The number of cores sottod may run on, at most [`DEFAULT_THREADS_CAP`].
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(DEFAULT_THREADS_CAP)
}

fn parse_from(words: Vec<String>, installed: bool) -> Result<Option<Args>, String> {
    let default_key = match () {
        _ if build_info::DEV_KEYS => build_info::BUILD_KEY_PATH,
        _ if installed => ETC_KEY,
        _ => "keys/server_rsa.pem",
    };
    let mut args = Args {
        listen: "127.0.0.1:7777".into(),
        data: PathBuf::from(if installed { VAR_DATA } else { "data" }),
        key: PathBuf::from(default_key),
        workers: 2,
        threads: default_threads(),
        user: crate::privilege::DEFAULT_USER.into(),
        limits: Limits::default(),
        kdf_kib: sotto::crypto::STORED_HASH_KIB,
        cluster: Vec::new(),
        node: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "sottod".into(), |h| h.trim().to_owned()),
        cluster_replicas: 3,
        cluster_creds: None,
        cluster_ca: None,
    };
    let mut check = false;
    let mut it = words.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--data" => args.data = value()?.into(),
            "--key" => args.key = value()?.into(),
            "--user" => args.user = value()?,
            "--log-level" => {
                let v = value()?;
                log::set_level(
                    log::Level::parse(&v).ok_or(format!("--log-level: `{v}` is not error, warn, info or debug"))?,
                )
            }
            "--kdf-memory" => {
                let kib = number(&flag, &value()?)?;
                let kib = u32::try_from(kib).ok().filter(|k| (8..=4 * 1024 * 1024).contains(k));
                let kib = kib.ok_or("--kdf-memory: KiB between 8 and 4194304")?;
                sotto::crypto::set_stored_hash_kib(kib);
                args.kdf_kib = kib;
            }
            "--workers" => args.workers = number(&flag, &value()?)?.clamp(1, 64) as usize,
            "--threads" => {
                let n = number(&flag, &value()?)?;
                args.threads = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_THREADS).contains(n))
                    .ok_or(format!("--threads: between 1 and {MAX_THREADS}"))?;
            }
            "--handshake-timeout" => args.limits.handshake_ms = number(&flag, &value()?)?.saturating_mul(1000),
            "--login-timeout" => args.limits.login_ms = number(&flag, &value()?)?.saturating_mul(1000),
            "--queue-ttl" => args.limits.queue_ttl_ms = number(&flag, &value()?)?.saturating_mul(1000),
            "--idle-timeout" => args.limits.idle_ms = number(&flag, &value()?)?.saturating_mul(1000),
            "--rate" => args.limits.rate = rate(&flag, &value()?)?,
            "--registrations" => args.limits.registrations = rate(&flag, &value()?)?,
            "--room-creations" => args.limits.room_creations = rate(&flag, &value()?)?,
            "--mailbox-max-msgs" => {
                args.limits.mailbox_max_msgs = usize::try_from(number(&flag, &value()?)?.max(1)).unwrap_or(usize::MAX)
            }
            "--mailbox-max-bytes" => {
                args.limits.mailbox_max_bytes = usize::try_from(number(&flag, &value()?)?.max(1)).unwrap_or(usize::MAX)
            }
            "--max-bps" => args.limits.max_bps = number(&flag, &value()?)?,
            "--max-file-size" => args.limits.max_file_size = number(&flag, &value()?)?,
            "--file-quota" => args.limits.file_quota = number(&flag, &value()?)?,
            "--file-ttl" => args.limits.file_ttl_ms = number(&flag, &value()?)?.max(1).saturating_mul(1000),
            "--registration" => {
                args.limits.registration = match value()?.as_str() {
                    "open" => Registration::Open,
                    "approval" => Registration::Approval,
                    "closed" => Registration::Closed,
                    v => return Err(format!("--registration: `{v}` is not open, approval or closed")),
                }
            }
            "--sessions-per-user" => {
                args.limits.sessions_per_user = usize::try_from(number(&flag, &value()?)?.max(1)).unwrap_or(usize::MAX)
            }
            "--login-records" => {
                let n = number(&flag, &value()?)?;
                args.limits.login_records = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=sotto::server::acct::MAX_LOGIN_RECORDS).contains(n))
                    .ok_or("--login-records: between 1 and 32")?;
            }
            "--name-reserve" => args.limits.name_reserve_ms = number(&flag, &value()?)?.saturating_mul(1000),
            "--list-users" => {
                let v = value()?;
                args.limits.list_users = sotto::server::core::ListUsers::parse(&v)
                    .ok_or_else(|| format!("{flag}: `{v}` is not all, shared or off"))?;
            }
            "--ticket-ttl" => {
                let secs = number(&flag, &value()?)?;
                let ms = secs.saturating_mul(1000);
                use sotto::server::tickets::{TTL_MAX_MS, TTL_MIN_MS};
                if !(TTL_MIN_MS..=TTL_MAX_MS).contains(&ms) {
                    return Err(format!(
                        "--ticket-ttl: between {} and {} seconds (1 minute to 90 days)",
                        TTL_MIN_MS / 1000,
                        TTL_MAX_MS / 1000
                    ));
                }
                args.limits.ticket_ttl_ms = ms;
            }
            "--no-resume" => args.limits.resume = false,
            "--cluster" => args.cluster = cluster_urls(&value()?)?,
            "--node" => {
                let v = value()?;
                if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                    return Err("--node: 1-64 characters of letters, digits, '-', '_' and '.'".into());
                }
                args.node = v;
            }
            "--cluster-replicas" => {
                let n = number(&flag, &value()?)?;
                args.cluster_replicas = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or("--cluster-replicas: between 1 and 5")?;
            }
            "--cluster-creds" => args.cluster_creds = Some(value()?.into()),
            "--cluster-ca" => args.cluster_ca = Some(value()?.into()),
            "--handshake-backlog" => {
                args.limits.handshake_backlog = usize::try_from(number(&flag, &value()?)?.max(1)).unwrap_or(usize::MAX)
            }
            "--max-conns" => args.limits.max_conns = number(&flag, &value()?)?.max(1) as usize,
            "--max-conns-per-addr" => args.limits.max_conns_per_addr = number(&flag, &value()?)?.max(1) as usize,
            "--handshakes-per-sec" => {
                args.limits.handshakes_per_sec = u32::try_from(number(&flag, &value()?)?.max(1)).unwrap_or(u32::MAX)
            }
            "--opcodes" => {
                print!("{}", sotto::opcodes::audit_table());
                return Ok(None);
            }
            "--opcodes-markdown" => {
                print!("{}", sotto::opcodes::OPCODES_MD);
                return Ok(None);
            }
            "--opcodes-canonical" => {
                print!("{}", sotto::opcodes::CANONICAL_TABLE);
                return Ok(None);
            }
            "--version" => {
                println!("sottod {}", build_info::describe());
                return Ok(None);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--check" => check = true,
            "--man" => {
                print!(
                    "{}",
                    sotto::manpage::render("sottod", 8, "the sotto chat server", USAGE, "sotto(1), sotto-keygen(1)")
                );
                return Ok(None);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if check {
        print!("{}", effective(&args));
        return Ok(None);
    }
    Ok(Some(args))
}

/// The settings in effect, one `option value` per line (`--check`).
fn effective(a: &Args) -> String {
    let l = &a.limits;
    let rate = |r: Option<(u32, u64)>| r.map_or("off".to_owned(), |(n, ms)| format!("{n}/{}", ms / 1000));
    let lines = [
        ("listen", a.listen.clone()),
        ("data", a.data.display().to_string()),
        ("key", a.key.display().to_string()),
        ("workers", a.workers.to_string()),
        ("threads", a.threads.to_string()),
        ("user", a.user.clone()),
        ("log-level", log::level_name().to_lowercase()),
        ("handshake-timeout", (l.handshake_ms / 1000).to_string()),
        ("login-timeout", (l.login_ms / 1000).to_string()),
        ("idle-timeout", (l.idle_ms / 1000).to_string()),
        ("queue-ttl", (l.queue_ttl_ms / 1000).to_string()),
        ("rate", rate(l.rate)),
        ("registrations", rate(l.registrations)),
        ("room-creations", rate(l.room_creations)),
        ("mailbox-max-msgs", l.mailbox_max_msgs.to_string()),
        ("mailbox-max-bytes", l.mailbox_max_bytes.to_string()),
        ("max-bps", l.max_bps.to_string()),
        ("max-file-size", l.max_file_size.to_string()),
        ("file-quota", l.file_quota.to_string()),
        ("file-ttl", (l.file_ttl_ms / 1000).to_string()),
        ("name-reserve", (l.name_reserve_ms / 1000).to_string()),
        ("list-users", l.list_users.as_str().to_string()),
        ("max-conns", l.max_conns.to_string()),
        ("max-conns-per-addr", l.max_conns_per_addr.to_string()),
        ("handshakes-per-sec", l.handshakes_per_sec.to_string()),
        ("kdf-memory", a.kdf_kib.to_string()),
        ("registration", l.registration.as_str().to_owned()),
        ("sessions-per-user", l.sessions_per_user.to_string()),
        ("login-records", l.login_records.to_string()),
        ("ticket-ttl", (l.ticket_ttl_ms / 1000).to_string()),
        ("no-resume", (!l.resume).to_string()),
        ("handshake-backlog", l.handshake_backlog.to_string()),
        ("cluster", if a.cluster.is_empty() { "off".to_owned() } else { a.cluster.join(",") }),
        ("node", a.node.clone()),
        ("cluster-replicas", a.cluster_replicas.to_string()),
    ];
    lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

/// `--cluster`'s list: 1 to 16 `nats://` or `tls://` URLs, no duplicates.
fn cluster_urls(v: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = v.split(',').map(|u| u.trim().to_owned()).collect();
    if urls.len() > 16 {
        return Err("--cluster: at most 16 NATS URLs".into());
    }
    for (i, u) in urls.iter().enumerate() {
        let rest = u.strip_prefix("nats://").or_else(|| u.strip_prefix("tls://"));
        let ok = rest
            .and_then(|r| r.rsplit_once(':'))
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(format!("--cluster: `{u}` is not nats://HOST:PORT or tls://HOST:PORT"));
        }
        if urls[..i].contains(u) {
            return Err(format!("--cluster: `{u}` is given twice"));
        }
    }
    Ok(urls)
}

/// `N/SECS` (N events per SECS seconds, both at least 1) or `off`.
fn rate(flag: &str, v: &str) -> Result<Option<(u32, u64)>, String> {
    if v == "off" {
        return Ok(None);
    }
    let parsed = v.split_once('/').and_then(|(n, s)| Some((n.parse::<u32>().ok()?, s.parse::<u64>().ok()?)));
    match parsed {
        Some((n, secs)) if n > 0 && secs > 0 => Ok(Some((n, secs.saturating_mul(1000)))),
        _ => Err(format!("{flag}: `{v}` is not N/SECS (e.g. 5/5) or off")),
    }
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    v.parse().map_err(|_| format!("{flag}: `{v}` is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::cluster_urls;

    #[test]
    fn cluster_urls_accepts_nats_and_tls_lists() {
        assert_eq!(cluster_urls("nats://127.0.0.1:4222").unwrap(), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            cluster_urls("nats://a:4222, tls://b.example:4223").unwrap(),
            ["nats://a:4222", "tls://b.example:4223"]
        );
        let sixteen: Vec<String> = (1..=16).map(|p| format!("nats://h:{p}")).collect();
        assert_eq!(cluster_urls(&sixteen.join(",")).unwrap(), sixteen);
    }

    #[test]
    fn cluster_urls_rejects_what_is_not_a_nats_address() {
        for bad in [
            "",
            "127.0.0.1:4222",
            "http://h:80",
            "nats://h",
            "nats://:4222",
            "nats://h:0",
            "nats://h:x",
            "nats://h:70000",
            "nats://a:1,",
        ] {
            let e = cluster_urls(bad).unwrap_err();
            assert!(e.contains("is not nats://HOST:PORT"), "{bad:?}: {e}");
        }
        let e = cluster_urls("nats://a:1,nats://a:1").unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let seventeen: Vec<String> = (1..=17).map(|p| format!("nats://h:{p}")).collect();
        assert!(cluster_urls(&seventeen.join(",")).unwrap_err().contains("at most 16"));
    }
}
