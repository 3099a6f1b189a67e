//! sottod: parse arguments, load the key and the accounts, bind, hand over to the loop.

mod event_loop;
mod privilege;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sotto::build_info;
use sotto::handshake::ServerConfig;
use sotto::identity::{self, Signer};

use sotto::server::core::{Accounts, Core, Limits};
use sotto::server::log;
use sotto::server::mailbox::Mail;
use sotto::server::room::Rooms;
use sotto::server::store::{FileStore, Store};
use sotto::server::worker::{Pool, WorkerCtx};

const USAGE: &str = "usage: sottod [--listen ADDR] [--data DIR] [--key PATH] [--workers N]
              [--handshake-timeout SECS] [--login-timeout SECS] [--idle-timeout SECS]
              [--queue-ttl SECS] [--rate N/SECS|off] [--max-bps BYTES] [--user NAME]
              [--max-conns N] [--max-conns-per-addr N] [--handshakes-per-sec N] [--log-level LEVEL]
              [--kdf-memory KIB] [--registrations N/SECS|off] [--room-creations N/SECS|off]
              [--mailbox-max-msgs N] [--mailbox-max-bytes BYTES]
       sottod --opcodes | --opcodes-markdown | --opcodes-canonical | --version | --help

  --listen ADDR             address to listen on (default 127.0.0.1:7777; port 0 picks one)
  --data DIR                data directory, mode 0700, created if missing (default ./data)
  --key PATH                server private key, PKCS#8 PEM, mode 0600
                            (default keys/server_rsa.pem; the throwaway key in development builds)
  --workers N               threads for RSA signing, and as many for argon2id (default 2);
                            signing runs at a lower priority than the event loop
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
  --max-bps BYTES           input bytes per second per connection before reading pauses (default 1048576; 0: off)
  --max-conns N             open connections at most (default 16384)
  --max-conns-per-addr N    open connections at most from one address (default 64)
  --handshakes-per-sec N    handshakes signed per second for one address (default 50)
  --log-level LEVEL         error, warn, info (default) or debug (every connection closed, with why)
  --kdf-memory KIB          argon2id memory for password and passphrase hashes made from now on
                            (default 19456 = 19 MiB); lower only for benchmark set-ups
  --opcodes                 print the opcode audit table and exit
  --opcodes-markdown        print docs/OPCODES.md and exit
  --opcodes-canonical       print the canonical opcode table text (its SHA-256 is the table hash) and exit

The first line on stdout is `listening HOST:PORT`. SIGINT/SIGTERM finish pending work and exit 0.";

struct Args {
    listen: String,
    data: PathBuf,
    key: PathBuf,
    workers: usize,
    user: String,
    limits: Limits,
    kdf_kib: u32,
}

fn parse_args() -> Result<Option<Args>, String> {
    let default_key = if build_info::DEV_KEYS { build_info::BUILD_KEY_PATH } else { "keys/server_rsa.pem" };
    let mut args = Args {
        listen: "127.0.0.1:7777".into(),
        data: PathBuf::from("data"),
        key: PathBuf::from(default_key),
        workers: 2,
        user: privilege::DEFAULT_USER.into(),
        limits: Limits::default(),
        kdf_kib: sotto::crypto::STORED_HASH_KIB,
    };
    let mut it = std::env::args().skip(1);
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
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(args))
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

/// Loads the server key: private to its owner, and the one this build trusts.
fn load_key(path: &PathBuf) -> Result<Signer, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e} (run `make keys`, or pass --key PATH)"))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown}: mode {mode:04o} lets group or others read the private key; run `chmod 600 {shown}`"
        ));
    }
    let pem = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?);
    let signer = Signer::from_pkcs8_pem(&pem)
        .map_err(|e| format!("{shown}: {e} (expected an RSA-2048 PKCS#8 PEM key from `make keys`)"))?;
    let der = identity::to_spki_der(signer.public()).map_err(|e| format!("{shown}: {e}"))?;
    let trusted = der == build_info::SERVER_PUBLIC_DER || build_info::NEXT_SERVER_PUBLIC_DER == Some(der.as_slice());
    if !trusted {
        return Err(format!(
            "{shown}: this key does not match the public key sottod was built with; rebuild with `make` after `make keys`, or pass the matching --key"
        ));
    }
    Ok(signer)
}

/// Binds with SO_REUSEADDR and the largest listen backlog the kernel allows,
/// so a burst of honest connects is queued rather than dropped.
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the address resolves to nothing");
    for sa in addr.to_socket_addrs()? {
        let family = if sa.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        let attempt = (|| -> nix::Result<TcpListener> {
            let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrStorage::from(sa))?;
            socket::listen(&fd, Backlog::MAXCONN)?;
            Ok(TcpListener::from(fd))
        })();
        match attempt {
            Ok(l) => return Ok(l),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

fn serve(args: Args) -> Result<(), String> {
    if build_info::DEV_KEYS {
        sotto::log!(Warn, "built with throwaway development keys; run `make keys && make` for a deployment");
    }
    let signer = load_key(&args.key)?;
    let listener = listen(&args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // The key is read and the socket bound; now give up root for good (DESIGN §8).
    // As root nothing in the data directory is read or written: the service
    // user owns what is in it and could swap a link in between a check and a
    // use (a torn mailbox file is cut back at load). The store is opened and
    // loaded after the drop, inside the chroot.
    let store = if privilege::is_root() {
        sotto::server::store::ensure_private_dir(&args.data).map_err(|e| e.to_string())?;
        privilege::drop_root(&args.user, &args.data)?;
        sotto::log!(Info, "chrooted into {} and running as {}", args.data.display(), args.user);
        FileStore::open(std::path::Path::new("/"))
            .map_err(|e| format!("{e} (inside the data directory {})", args.data.display()))?
    } else {
        FileStore::open(&args.data).map_err(|e| e.to_string())?
    };
    let mut accounts = Accounts::default();
    for rec in store.load_users().map_err(|e| e.to_string())? {
        accounts.insert(rec);
    }
    let mut rooms = Rooms::default();
    for room in store.load_rooms().map_err(|e| e.to_string())? {
        rooms.insert(room);
    }
    let mail = Mail::load(&store)?;
    let server = ServerConfig::built_in();
    let ctx = Arc::new(WorkerCtx {
        server: server.clone(),
        signer: Arc::new(signer),
        store: Arc::new(store) as Arc<dyn Store>,
    });
    let pool = Pool::new(args.workers, ctx).map_err(|e| format!("cannot start workers: {e}"))?;
    let (n_accounts, n_rooms) = (accounts.len(), rooms.len());
    let core = Core::new(server, args.limits, accounts, rooms, mail);
    println!("listening {local}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    sotto::log!(
        Info,
        "sottod {} serving {} accounts and {} rooms from {}",
        build_info::describe(),
        n_accounts,
        n_rooms,
        args.data.display()
    );
    if args.kdf_kib < sotto::crypto::STORED_HASH_KIB {
        sotto::log!(
            Warn,
            "--kdf-memory {} KiB: new password hashes are cheaper to crack than the default {} KiB; for benchmarks only",
            args.kdf_kib,
            sotto::crypto::STORED_HASH_KIB
        );
    }
    event_loop::run(listener, core, pool).map_err(|e| format!("event loop: {e}"))
}

fn main() -> ExitCode {
    // argon2id takes 19 MiB per hash. With glibc's dynamic mmap threshold,
    // freed buffers that size raise the threshold, later ones come from the
    // heap of whichever worker ran them, and the resident set keeps them. A
    // fixed threshold keeps large buffers in their own mappings, returned at free.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
    let result = parse_args().and_then(|a| a.map_or(Ok(()), serve));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sottod: {e}");
            if e.starts_with("unknown option") || e.contains("needs a value") {
                eprintln!("{USAGE}");
            }
            ExitCode::FAILURE
        }
    }
}
