//! sottod: parse arguments, load the key and the accounts, bind, hand over to the loop.

mod args;
mod event_loop;
mod output_loop;
mod privilege;
mod relay_io;
mod standby;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sotto::build_info;
use sotto::handshake::ServerConfig;
use sotto::identity::{self, Signer};

use args::{Args, USAGE};
use sotto::server::core::{Accounts, Core};
use sotto::server::files::Files;
use sotto::server::jetstream::{ClusterConfig, JetStreamStore};
use sotto::server::mailbox::Mail;
use sotto::server::room::Rooms;
use sotto::server::store::{FileStore, Store};
use sotto::server::tickets::Tickets;
use sotto::server::worker::{Pool, WorkerCtx};

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

/// Binds with SO_REUSEADDR; [`listen`] then accepts connections. A standby
/// node holds its address bound and refuses connections until it writes.
fn bind(addr: &str) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the address resolves to nothing");
    for sa in addr.to_socket_addrs()? {
        let family = if sa.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        let attempt = (|| -> nix::Result<TcpListener> {
            let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrStorage::from(sa))?;
            Ok(TcpListener::from(fd))
        })();
        match attempt {
            Ok(l) => return Ok(l),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

/// Listens with the largest backlog the kernel allows, so a burst of honest
/// connects is queued rather than dropped.
fn listen(listener: &TcpListener, addr: &str) -> Result<(), String> {
    use nix::sys::socket::{self, Backlog};
    socket::listen(listener, Backlog::MAXCONN).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Cluster mode: connects to NATS (`standby ADDR` on stdout once it is);
/// the admin socket answers sottoctl that this node is a standby until it
/// holds the writer lease ([`edge`] serves clients meanwhile).
fn open_cluster(
    c: &ClusterConfig,
    local: std::net::SocketAddr,
    admin_path: &std::path::Path,
) -> Result<(Arc<JetStreamStore>, UnixListener, standby::Answering), String> {
    // Before the NATS client's thread starts (the umask it narrows is the process's).
    let admin = admin_listen(admin_path)?;
    let store = Arc::new(JetStreamStore::connect(c)?);
    println!("standby {local}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let answering = standby::answer(&admin, store.clone())?;
    Ok((store, admin, answering))
}

/// Cluster mode, until this node holds the writer lease: an edge (DESIGN
/// §8 "Edges", `edge ADDR` on stdout). It listens, runs its clients'
/// handshakes and record layer, and relays their messages to the writer.
/// True once it holds the lease; false after SIGINT or SIGTERM.
fn edge(
    args: &Args,
    listener: &TcpListener,
    pool: &Pool,
    signals: &std::os::unix::net::UnixStream,
    store: &Arc<JetStreamStore>,
    relay: &mut Option<relay_io::Relay>,
) -> Result<bool, String> {
    let (told, takeover) = std::os::unix::net::UnixStream::pair().map_err(|e| format!("takeover socket: {e}"))?;
    let (result_tx, result) = std::sync::mpsc::channel();
    let (lease_store, node) = (store.clone(), args.node.clone());
    std::thread::Builder::new()
        .name("sottod-lease".into())
        .spawn(move || {
            let _ = result_tx.send(lease_store.take_lease(&node));
            // The edge's loop returns at the first readiness, this byte or the close.
            let _ = std::io::Write::write(&mut &told, &[1]);
        })
        .map_err(|e| format!("cannot start the lease thread: {e}"))?;
    // Clients are taken once this node knows which node writes (its first
    // reading of the lease), or it is about to write itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.writer_epoch().is_none_or(|w| w == store.epoch())
        && !store.holds_lease()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    listen(listener, &args.listen)?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("edge {local}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    sotto::log!(
        Info,
        "sottod {} edge (node {}): serving clients for the node that writes, until this node holds the writer lease",
        build_info::describe(),
        args.node
    );
    let core = Core::edge(ServerConfig::built_in(), args.limits);
    let node =
        event_loop::Node { listener, admin: None, pool, signals, relay: relay.as_mut(), takeover: Some(&takeover) };
    match event_loop::run(node, core, None).map_err(|e| format!("event loop: {e}"))? {
        event_loop::Ended::Stopped => Ok(false),
        event_loop::Ended::TakingOver => {
            result.recv().map_err(|_| "the lease thread ended".to_owned())??;
            Ok(true)
        }
    }
}

/// Binds the admin socket at `path`, mode 0600 from the start; a socket an
/// earlier run left there is replaced, anything else there is an error.
fn admin_listen(path: &std::path::Path) -> Result<std::os::unix::net::UnixListener, String> {
    use nix::sys::stat::{umask, Mode};
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(|e| format!("{shown}: {e}"))?,
        Ok(_) => return Err(format!("{shown} exists and is not a socket; move it away")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    // No thread runs yet: the narrowed umask covers only this bind.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| format!("cannot create the admin socket {shown}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{shown}: {e}"))?;
    Ok(listener)
}

/// The ticket keys and journal, checked; a new or rotated key file and the
/// compacted journal are durable before anything is served.
fn load_tickets(store: &dyn Store, args: &Args) -> Result<Tickets, String> {
    let tickets = Tickets::open(store, args.limits.ticket_ttl_ms, event_loop::now_ms())
        .map_err(|e| format!("{}/{e}", args.data.display()))?;
    let (used, generations) = tickets.sizes();
    sotto::log!(
        Info,
        "resumption tickets: {} keys, {used} used tickets remembered, {generations} accounts with revocations",
        tickets.keys().len()
    );
    Ok(tickets)
}

/// `--cluster` and its files, read before the chroot; `None` for the file store.
fn cluster_config(args: &Args) -> Result<Option<ClusterConfig>, String> {
    if args.cluster.is_empty() {
        if args.cluster_creds.is_some() || args.cluster_ca.is_some() {
            return Err("--cluster-creds and --cluster-ca need --cluster".into());
        }
        return Ok(None);
    }
    let creds = match &args.cluster_creds {
        Some(path) => Some(zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => None,
    };
    let tls = match &args.cluster_ca {
        Some(path) => Some(sotto::server::jetstream::tls_config(path)?),
        None => None,
    };
    Ok(Some(ClusterConfig {
        urls: args.cluster.clone(),
        node: args.node.clone(),
        replicas: args.cluster_replicas,
        creds,
        tls,
    }))
}

fn serve(args: Args) -> Result<(), String> {
    if build_info::DEV_KEYS {
        sotto::log!(Warn, "built with throwaway development keys; run `make keys && make` for a deployment");
    }
    let signer = load_key(&args.key)?;
    let listener = bind(&args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if args.cluster.is_empty() {
        listen(&listener, &args.listen)?;
    }
    // The key is read and the socket bound; now give up root for good (DESIGN §8).
    // As root nothing in the data directory is read or written: the service
    // user owns what is in it and could swap a link in between a check and a
    // use (a torn mailbox file is cut back at load). The store is opened and
    // loaded after the drop, inside the chroot.
    // The admin socket is made after the drop, by the service user, inside
    // the chroot: it works there, and root made nothing in the data directory.
    // Cluster mode: the credentials and CA files are read now, before the chroot.
    let cluster = cluster_config(&args)?;
    let mut cluster_store: Option<(Arc<JetStreamStore>, standby::Answering)> = None;
    let (store, admin, admin_path): (Arc<dyn Store>, UnixListener, PathBuf) = if privilege::is_root() {
        sotto::server::store::ensure_private_dir(&args.data).map_err(|e| e.to_string())?;
        privilege::drop_root(&args.user, &args.data)?;
        sotto::log!(Info, "chrooted into {} and running as {}", args.data.display(), args.user);
        let admin_path = PathBuf::from("/admin.sock");
        let (store, admin): (Arc<dyn Store>, UnixListener) = match &cluster {
            Some(c) => {
                let (store, admin, answering) = open_cluster(c, local, &admin_path)?;
                cluster_store = Some((store.clone(), answering));
                (store, admin)
            }
            None => (
                Arc::new(
                    FileStore::open(std::path::Path::new("/"))
                        .map_err(|e| format!("{e} (inside the data directory {})", args.data.display()))?,
                ),
                admin_listen(&admin_path)?,
            ),
        };
        (store, admin, admin_path)
    } else {
        let admin_path = args.data.join("admin.sock");
        let (store, admin): (Arc<dyn Store>, UnixListener) = match &cluster {
            Some(c) => {
                sotto::server::store::ensure_private_dir(&args.data).map_err(|e| e.to_string())?;
                let (store, admin, answering) = open_cluster(c, local, &admin_path)?;
                cluster_store = Some((store.clone(), answering));
                (store, admin)
            }
            None => {
                let store = Arc::new(FileStore::open(&args.data).map_err(|e| e.to_string())?);
                (store, admin_listen(&admin_path)?)
            }
        };
        (store, admin, admin_path)
    };
    let server = ServerConfig::built_in();
    let signer = Arc::new(signer);
    let ctx = Arc::new(WorkerCtx { server: server.clone(), signer: signer.clone(), store: store.clone() });
    let pool = Pool::new(args.workers, ctx).map_err(|e| format!("cannot start workers: {e}"))?;
    let signals = event_loop::install_signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Cluster mode: an edge until this node holds the writer lease, then the writer.
    let mut relay = None;
    if let Some((js, answering)) = cluster_store {
        let secret = || sotto::server::relay::LinkSecret::from_key_digest(signer.key_digest());
        relay = Some(relay_io::Relay::edge(js.relay()?, secret(), js.epoch(), js.clone()));
        if !edge(&args, &listener, &pool, &signals, &js, &mut relay)? {
            answering.stop();
            let _ = std::fs::remove_file(&admin_path);
            return Ok(());
        }
        answering.stop();
        relay = relay.map(|r| r.into_writer(secret()));
    }
    let store_arc = store;
    let store: &dyn Store = &*store_arc;
    let mut accounts = Accounts::default();
    for rec in store.load_users().map_err(|e| e.to_string())? {
        accounts.insert(rec);
    }
    for (uid, acct) in store.load_accts().map_err(|e| e.to_string())? {
        accounts.set_acct(uid, acct);
    }
    let announcements = match store.load_announcements().map_err(|e| e.to_string())? {
        Some(bytes) => sotto::server::announce::Announcements::decode(&bytes).map_err(|why| {
            format!(
                "{}: corrupt record ({why}); move it aside to start without it",
                args.data.join("announcements.db").display()
            )
        })?,
        None => Default::default(),
    };
    accounts.load_retired(store)?;
    let mut rooms = Rooms::default();
    for room in store.load_rooms().map_err(|e| e.to_string())? {
        rooms.insert(room);
    }
    let mail = Mail::load(store)?;
    let files = Files::load(store)?;
    let n_files = files.len();
    let tickets = load_tickets(store, &args)?;
    let (n_accounts, n_rooms) = (accounts.len(), rooms.len());
    let mut core = Core::new(server, args.limits, accounts, rooms, mail)
        .with_files(files)
        .with_announcements(announcements)
        .with_tickets(tickets);
    // --threads N: N - 1 output loops seal and write, the core loop keeps the rest.
    let outputs = match args.threads {
        0 | 1 => None,
        n => {
            core = core.with_output_loops();
            Some(output_loop::Outputs::start(n - 1).map_err(|e| format!("cannot start output loops: {e}"))?)
        }
    };
    if relay.is_some() {
        core = core.with_relay();
    }
    println!("listening {local}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let l = &args.limits;
    let resumption = if l.resume {
        format!("resumption on, tickets valid {} s", l.ticket_ttl_ms / 1000)
    } else {
        "resumption off".to_owned()
    };
    sotto::log!(
        Info,
        "sottod {} serving {} accounts, {} rooms and {} files from {} ({} event loop{}; {resumption}; handshake backlog {})",
        build_info::describe(),
        n_accounts,
        n_rooms,
        n_files,
        if args.cluster.is_empty() {
            args.data.display().to_string()
        } else {
            format!("NATS JetStream at {} (node {})", args.cluster.join(","), args.node)
        },
        args.threads,
        if args.threads == 1 { "" } else { "s" },
        l.handshake_backlog
    );
    if args.kdf_kib < sotto::crypto::STORED_HASH_KIB {
        sotto::log!(
            Warn,
            "--kdf-memory {} KiB: new password hashes are cheaper to crack than the default {} KiB; for benchmarks only",
            args.kdf_kib,
            sotto::crypto::STORED_HASH_KIB
        );
    }
    let node = event_loop::Node {
        listener: &listener,
        admin: Some(admin),
        pool: &pool,
        signals: &signals,
        relay: relay.as_mut(),
        takeover: None,
    };
    let served = event_loop::run(node, core, outputs).map(|_| ()).map_err(|e| format!("event loop: {e}"));
    if served.is_ok() {
        // A cluster node's standby takes over now, not once the lease lapses.
        store_arc.release();
    }
    // sottoctl then says no server is running, not that it refused.
    let _ = std::fs::remove_file(&admin_path);
    served
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
    let result = args::parse().and_then(|a| a.map_or(Ok(()), serve));
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
