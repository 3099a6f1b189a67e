//! Worker pool: the slow work (RSA signing, argon2id, fsync of account files)
//! off the event loop. Completions come back through a queue and a wake-up
//! socket the loop watches with the connections.
//!
//! Invariant: a job never touches connection state; it returns a
//! `Completion` naming its connection, which the loop may have closed since.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;

use crate::account;
use crate::crypto;
use crate::handshake::{self, HandshakeError, ServerConfig, SessionKeys};
use crate::identity::{self, Signer};
use crate::opcodes::UserRecord;
use zeroize::Zeroizing;

use crate::server::core::ConnId;
use crate::server::store::{self, Change, Store};

/// Work for a worker thread.
pub enum Job {
    /// Sign a ServerHello for this ClientHello.
    Handshake { conn: ConnId, client_hello: Vec<u8> },
    /// Sign a protocol-mismatch ServerHello for this (authentic) ClientHello.
    Mismatch { conn: ConnId, client_hello: Vec<u8> },
    /// Verify the key binding, hash the secrets, write the account.
    Register {
        conn: ConnId,
        msg_id: u64,
        record: Box<UserRecord>,
        auth_secret: Zeroizing<[u8; account::SECRET_LEN]>,
        pass_secret: Zeroizing<[u8; account::SECRET_LEN]>,
        /// `--registration approval`: the account starts on hold (its state
        /// file is written before the account, so no crash leaves it active).
        hold: bool,
    },
    /// Check an auth secret against a stored hash (`uid` None: unknown user,
    /// checked against a dummy hash of `dummy_kib` KiB instead of `phc`).
    Password {
        conn: ConnId,
        msg_id: u64,
        uid: Option<u64>,
        phc: String,
        dummy_kib: u32,
        auth_secret: Zeroizing<[u8; account::SECRET_LEN]>,
    },
    /// Check a passphrase secret against a stored hash.
    Passphrase { conn: ConnId, msg_id: u64, uid: u64, phc: String, pass_secret: Zeroizing<[u8; account::SECRET_LEN]> },
    /// Check both login secrets again (an account deletion): both hashes are
    /// always checked, so the time says nothing of which one failed.
    Recheck {
        conn: ConnId,
        msg_id: u64,
        uid: u64,
        password_phc: String,
        passphrase_phc: String,
        auth_secret: Zeroizing<[u8; account::SECRET_LEN]>,
        pass_secret: Zeroizing<[u8; account::SECRET_LEN]>,
    },
    /// Check both current login secrets (always both: the time says nothing
    /// of which one failed), then hash the new ones into a copy of the
    /// account's record (stored later, by a commit).
    ChangeSecrets {
        conn: ConnId,
        msg_id: u64,
        record: Box<UserRecord>,
        old_auth: Zeroizing<[u8; account::SECRET_LEN]>,
        old_pass: Zeroizing<[u8; account::SECRET_LEN]>,
        new_auth: Zeroizing<[u8; account::SECRET_LEN]>,
        new_pass: Zeroizing<[u8; account::SECRET_LEN]>,
    },
    /// Make one loop turn's room changes durable (runs on the disk thread, in order).
    Commit { token: u64, writes: Vec<Change> },
    /// Verify a signed prekey's signature with the uploader's identity key
    /// (RSA: never on the event loop); the upload comes back with the answer.
    Prekey {
        conn: ConnId,
        uid: u64,
        id_pub: Box<[u8; 256]>,
        binding: Vec<u8>,
        upload: Box<crate::opcodes::PrekeyUpload>,
    },
    /// Read chunk records of a file for a download (on the reader thread:
    /// not the event loop, not the disk thread, not the argon2id workers).
    ReadChunks { conn: ConnId, file_id: u64, serial: u64, from: u32, count: u32 },
}

/// Why a registration failed on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterFailure {
    /// The identity signature over the encryption key did not verify.
    BadBinding,
    /// Hashing failed.
    Internal,
    /// The account could not be written durably; `unavailable`: because the
    /// cluster's storage was unreachable (503, not 507).
    Storage { unavailable: bool },
}

/// Why a change of the login secrets failed on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsFailure {
    /// A current secret did not verify.
    Wrong,
    /// Hashing failed.
    Internal,
}

/// The result of a job.
pub enum Completion {
    /// The ServerHello frame and the server's keys, or why not.
    Handshake { conn: ConnId, result: Result<(Vec<u8>, SessionKeys), HandshakeError> },
    /// The signed mismatch ServerHello frame, or why not.
    Mismatch { conn: ConnId, result: Result<Vec<u8>, HandshakeError> },
    /// The account as stored, or why not.
    Registered { conn: ConnId, msg_id: u64, username: String, result: Result<Box<UserRecord>, RegisterFailure> },
    /// Whether the password verified.
    Password { conn: ConnId, msg_id: u64, uid: Option<u64>, ok: bool },
    /// Whether the passphrase verified.
    Passphrase { conn: ConnId, msg_id: u64, uid: u64, ok: bool },
    /// Whether both secrets verified again.
    Rechecked { conn: ConnId, msg_id: u64, uid: u64, ok: bool },
    /// The account's record with the new secrets' hashes, or why not.
    SecretsChecked { conn: ConnId, msg_id: u64, uid: u64, result: Result<Box<UserRecord>, SecretsFailure> },
    /// Whether batch `token` is durable.
    /// `unavailable`: the failure was the cluster's storage being unreachable (503, not 507).
    Committed { token: u64, ok: bool, unavailable: bool },
    /// Whether the upload's signed prekey verified.
    Prekey { conn: ConnId, uid: u64, upload: Box<crate::opcodes::PrekeyUpload>, ok: bool },
    /// The chunk records read for download `serial` (unchecked), or None when the read failed.
    Chunks { conn: ConnId, file_id: u64, serial: u64, from: u32, count: u32, records: Option<Vec<u8>> },
}

/// What jobs need.
pub struct WorkerCtx {
    /// Server handshake parameters.
    pub server: ServerConfig,
    /// The server's signing key (shared: the fuzzing seam's worlds all use one).
    pub signer: Arc<Signer>,
    /// Account storage.
    pub store: Arc<dyn Store>,
}

/// A PHC string of `kib` KiB to verify against when the user does not
/// exist, so that an unknown name costs the same argon2id work as a wrong
/// password (the core picks `kib` from the stored hashes: `Accounts::dummy_kib`).
/// One is made per memory cost asked for (a handful: those of the stored hashes).
pub(crate) fn dummy_phc(kib: u32) -> String {
    static DUMMIES: OnceLock<Mutex<Vec<(u32, String)>>> = OnceLock::new();
    let dummies = DUMMIES.get_or_init(Default::default);
    if let Some(phc) = dummies.lock().ok().and_then(|d| d.iter().find(|(k, _)| *k == kib).map(|(_, p)| p.clone())) {
        return phc;
    }
    let phc = crypto::hash_secret_kib(b"sotto dummy password", kib).unwrap_or_default();
    if let Ok(mut d) = dummies.lock() {
        // Bounded: a dummy per memory cost of a stored hash, and stored costs are few.
        if d.len() < 16 {
            d.push((kib, phc.clone()));
        }
    }
    phc
}

/// Runs one job to completion (on a worker, or inline in tests).
pub(crate) fn run(job: Job, ctx: &WorkerCtx) -> Completion {
    match job {
        Job::Handshake { conn, client_hello } => {
            Completion::Handshake { conn, result: handshake::server_hello(&ctx.server, &ctx.signer, &client_hello) }
        }
        Job::Mismatch { conn, client_hello } => {
            Completion::Mismatch { conn, result: handshake::mismatch_hello(&ctx.server, &ctx.signer, &client_hello) }
        }
        Job::Register { conn, msg_id, mut record, auth_secret, pass_secret, hold } => {
            let username = record.username().unwrap_or_default().to_owned();
            let result = register(&mut record, &auth_secret[..], &pass_secret[..], hold, ctx).map(|()| record);
            Completion::Registered { conn, msg_id, username, result }
        }
        Job::Password { conn, msg_id, uid, phc, dummy_kib, auth_secret } => {
            let ok = match uid {
                Some(_) => crypto::verify_secret(&phc, &auth_secret[..]),
                None => {
                    // Same work as a real check, result ignored: no user-name oracle by timing.
                    let _ = crypto::verify_secret(&dummy_phc(dummy_kib), &auth_secret[..]);
                    false
                }
            };
            Completion::Password { conn, msg_id, uid, ok }
        }
        Job::Passphrase { conn, msg_id, uid, phc, pass_secret } => {
            Completion::Passphrase { conn, msg_id, uid, ok: crypto::verify_secret(&phc, &pass_secret[..]) }
        }
        Job::Recheck { conn, msg_id, uid, password_phc, passphrase_phc, auth_secret, pass_secret } => {
            let password = crypto::verify_secret(&password_phc, &auth_secret[..]);
            let passphrase = crypto::verify_secret(&passphrase_phc, &pass_secret[..]);
            Completion::Rechecked { conn, msg_id, uid, ok: password && passphrase }
        }
        Job::ChangeSecrets { conn, msg_id, mut record, old_auth, old_pass, new_auth, new_pass } => {
            let uid = record.uid.get();
            let password = crypto::verify_secret(record.password_hash().unwrap_or_default(), &old_auth[..]);
            let passphrase = crypto::verify_secret(record.passphrase_hash().unwrap_or_default(), &old_pass[..]);
            let result = if password && passphrase {
                change_secrets(&mut record, &new_auth[..], &new_pass[..]).map(|()| record)
            } else {
                Err(SecretsFailure::Wrong)
            };
            Completion::SecretsChecked { conn, msg_id, uid, result }
        }
        Job::Prekey { conn, uid, id_pub, binding, upload } => {
            let ok = identity::from_modulus(&id_pub).is_ok_and(|key| identity::verify(&key, &binding, &upload.spk_sig));
            Completion::Prekey { conn, uid, upload, ok }
        }
        Job::ReadChunks { conn, file_id, serial, from, count } => {
            let records = match ctx.store.read_chunks(file_id, from, count) {
                Ok(r) => Some(r),
                Err(e) => {
                    crate::log!(Error, "reading file {file_id:016x} for a download failed: {e}");
                    None
                }
            };
            Completion::Chunks { conn, file_id, serial, from, count, records }
        }
        Job::Commit { token, writes } => {
            let result = ctx.store.commit(&writes);
            if let Err(e) = &result {
                crate::log!(Error, "commit failed: {e}");
            }
            let unavailable = matches!(result, Err(store::StoreError::Unavailable { .. }));
            Completion::Committed { token, ok: result.is_ok(), unavailable }
        }
    }
}

/// Hashes the new secrets into `rec` and seals it.
fn change_secrets(rec: &mut UserRecord, auth_secret: &[u8], pass_secret: &[u8]) -> Result<(), SecretsFailure> {
    let pw = crypto::hash_secret(auth_secret).map_err(|_| SecretsFailure::Internal)?;
    let pp = crypto::hash_secret(pass_secret).map_err(|_| SecretsFailure::Internal)?;
    rec.set_password_hash(&pw).map_err(|_| SecretsFailure::Internal)?;
    rec.set_passphrase_hash(&pp).map_err(|_| SecretsFailure::Internal)?;
    store::seal_user(rec);
    Ok(())
}

fn register(
    rec: &mut UserRecord,
    auth_secret: &[u8],
    pass_secret: &[u8],
    hold: bool,
    ctx: &WorkerCtx,
) -> Result<(), RegisterFailure> {
    let username = rec.username().map_err(|_| RegisterFailure::BadBinding)?;
    let key = identity::from_modulus(&rec.id_pub).map_err(|_| RegisterFailure::BadBinding)?;
    if !identity::verify(
        &key,
        &account::enc_key_binding(&account::deployment_id(), rec.uid.get(), username, &rec.enc_pub),
        &rec.enc_sig,
    ) {
        return Err(RegisterFailure::BadBinding);
    }
    let pw = crypto::hash_secret(auth_secret).map_err(|_| RegisterFailure::Internal)?;
    let pp = crypto::hash_secret(pass_secret).map_err(|_| RegisterFailure::Internal)?;
    rec.set_password_hash(&pw).map_err(|_| RegisterFailure::Internal)?;
    rec.set_passphrase_hash(&pp).map_err(|_| RegisterFailure::Internal)?;
    store::seal_user(rec);
    if hold {
        let mut acct = crate::server::acct::Acct::default();
        acct.set_state(crate::server::acct::State::OnHold, 0, "awaiting approval");
        ctx.store
            .put_acct(rec.uid.get(), &acct.encode(rec.uid.get()))
            .map_err(|e| storage_failure("account state", e))?;
    }
    ctx.store.put_user(rec).map_err(|e| storage_failure("account", e))
}

/// Logs a registration's failed write; 503 when the cluster was unreachable, else 507.
fn storage_failure(what: &str, e: store::StoreError) -> RegisterFailure {
    crate::log!(Error, "storing {what} failed: {e}");
    RegisterFailure::Storage { unavailable: matches!(e, store::StoreError::Unavailable { .. }) }
}

/// A fixed set of worker threads, plus one disk thread that applies
/// commits in the order they were submitted, and one reader thread that
/// reads file chunks for downloads.
pub struct Pool {
    /// Handshake signatures: `n` threads at a lower priority than the loop.
    sign: Option<mpsc::Sender<Job>>,
    /// argon2id (registrations and logins): `n` threads at normal priority.
    kdf: Option<mpsc::Sender<Job>>,
    /// Commits: one thread, in order.
    disk: Option<mpsc::Sender<Job>>,
    /// Chunk reads for downloads: one thread, so that reads never delay a commit.
    read: Option<mpsc::Sender<Job>>,
    done: Arc<Mutex<Vec<Completion>>>,
    wake: UnixStream,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `n` signing workers, `n` argon2id workers and the disk thread, sharing `ctx`.
    pub fn new(n: usize, ctx: Arc<WorkerCtx>) -> std::io::Result<Pool> {
        let queue = || {
            let (tx, rx) = mpsc::channel::<Job>();
            (tx, Arc::new(Mutex::new(rx)))
        };
        let (sign_tx, sign_rx) = queue();
        let (kdf_tx, kdf_rx) = queue();
        let (disk_tx, disk_rx) = queue();
        let (read_tx, read_rx) = queue();
        let done = Arc::new(Mutex::new(Vec::new()));
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let wake_tx = Arc::new(wake_tx);
        let mut threads = Vec::new();
        // (name, queue, priority): a flood of handshakes or a slow disk must
        // not stall the loop, whose own work is short; so signing and commits yield to it.
        let queues = (0..n.max(1))
            .map(|i| (format!("sottod-sign-{i}"), sign_rx.clone(), Priority::Idle))
            .chain((0..n.max(1)).map(|i| (format!("sottod-kdf-{i}"), kdf_rx.clone(), Priority::Normal)))
            .chain([("sottod-disk".to_owned(), disk_rx, Priority::Nice)])
            .chain([("sottod-read".to_owned(), read_rx, Priority::Nice)]);
        for (name, rx, priority) in queues {
            let (done, wake_tx, ctx) = (done.clone(), wake_tx.clone(), ctx.clone());
            threads.push(thread::Builder::new().name(name).spawn(move || {
                priority.apply();
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let completion = run(job, &ctx);
                    if let Ok(mut d) = done.lock() {
                        d.push(completion);
                    }
                    // A full wake-up buffer already guarantees a wake-up.
                    let _ = (&*wake_tx).write(&[1]);
                }
            })?);
        }
        Ok(Pool {
            sign: Some(sign_tx),
            kdf: Some(kdf_tx),
            disk: Some(disk_tx),
            read: Some(read_tx),
            done,
            wake,
            threads,
        })
    }

    /// Queues a job: commits to the disk thread (in order), chunk reads to the
    /// reader thread, handshakes to the signing workers, the rest (argon2id,
    /// RSA verification) to the KDF workers.
    pub fn submit(&self, job: Job) {
        let queue = match job {
            Job::Commit { .. } => &self.disk,
            Job::ReadChunks { .. } => &self.read,
            Job::Handshake { .. } | Job::Mismatch { .. } => &self.sign,
            _ => &self.kdf,
        };
        if let Some(tx) = queue {
            let _ = tx.send(job);
        }
    }

    /// The descriptor that becomes readable when completions are waiting.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Takes every completion that is ready.
    pub fn drain(&self) -> Vec<Completion> {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.done.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.sign = None;
        self.kdf = None;
        self.disk = None;
        self.read = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How a worker thread yields to the event loop when they share a core
/// (Linux: scheduling policy and nice value are per thread).
#[derive(Clone, Copy)]
enum Priority {
    /// argon2id: a login waits for it, and it is rate-limited per account.
    Normal,
    /// The disk thread and the file reader: SCHED_BATCH at nice +10 with a
    /// 0.1 ms time slice. It still gets a share of a saturated core, since
    /// every acknowledgement waits for a commit, but it does not take the
    /// loop's turn. Nice alone did not do that: since Linux 6.6 (EEVDF) nice
    /// changes how often a thread runs, not for how long, and a waking
    /// thread preempts the running one. In W4 (room of 10, the server on
    /// one core), a `sched_switch` trace showed 62% of the loop's switches
    /// to be the disk thread preempting it. A SCHED_BATCH thread never
    /// preempts on waking, and the slice (a `sched_attr.sched_runtime`,
    /// Linux 6.12 and later; ignored before) bounds its turn when a tick
    /// hands it the core.
    Nice,
    /// Signing, SCHED_IDLE: it runs only on CPU time that no ordinary thread
    /// wants, and a waking loop preempts it at once. Under nice +10 the loop
    /// waited for the signer's time slice (W1's probe p99 in three quick runs:
    /// 4.1 to 7.8 ms; under SCHED_IDLE 0.6 to 1.7 ms, and one 6.6 ms in six
    /// figures). The price: on a host whose every
    /// core is saturated, new handshakes wait (up to the handshake timeout)
    /// while established sessions are served.
    Idle,
}

/// The time slice of a `Priority::Nice` thread, the smallest Linux allows.
const NICE_SLICE_NS: u64 = 100_000;

/// `struct sched_attr` of sched_setattr(2), its first version (48 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}
static_assertions::const_assert_eq!(std::mem::size_of::<SchedAttr>(), 48);

impl Priority {
    fn apply(self) {
        // SAFETY: gettid, setpriority, sched_setattr (this thread, a valid
        // sched_attr of the size it declares) and sched_setscheduler (this
        // thread, a valid sched_param) have no memory-safety preconditions.
        unsafe {
            match self {
                Priority::Normal => {}
                Priority::Nice => {
                    // Ten steps below the loop, relative to the nice value sottod
                    // was started with (a new thread inherits it), at most 19.
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    let nice = (libc::getpriority(libc::PRIO_PROCESS, tid) + 10).min(19);
                    let batch = SchedAttr {
                        size: std::mem::size_of::<SchedAttr>() as u32,
                        policy: libc::SCHED_BATCH as u32,
                        flags: 0,
                        nice,
                        priority: 0,
                        runtime: NICE_SLICE_NS,
                        deadline: 0,
                        period: 0,
                    };
                    if libc::syscall(libc::SYS_sched_setattr, 0, &batch as *const SchedAttr, 0) != 0 {
                        // An older kernel or a seccomp profile: nice alone.
                        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
                    }
                }
                Priority::Idle => {
                    let param = libc::sched_param { sched_priority: 0 };
                    if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                        // Not allowed here (a seccomp profile, say): nice +10 instead.
                        Priority::Nice.apply();
                    }
                }
            }
        }
    }
}
