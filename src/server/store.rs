//! Storage: the accounts on disk, behind a small trait with an in-memory twin.
//!
//! Invariant: the data directory is 0700 and every file 0600 (looser modes
//! are refused); a record is replaced atomically (temp file, fsync, rename,
//! fsync of the directory), so a crash leaves the old or the new record.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::crypto;

use crate::opcodes::UserRecord;
use crate::server::acct::Acct;
use crate::server::files::{self, FileMeta, StoredFile, CHUNK_RECORD};
use crate::server::mailbox::QueueWrite;
use crate::server::prekeys::Published;
use crate::server::room::Room;
use crate::server::tickets::{self, JournalWrite};
use zerocopy::{FromBytes, IntoBytes};

/// Magic of a user record file.
pub(crate) const USER_MAGIC: [u8; 4] = *b"SOTU";
/// Version of the user record format.
pub(crate) const USER_VERSION: u16 = 1;
const CHECKSUM_AT: usize = core::mem::size_of::<UserRecord>() - 32;

/// A storage failure, with the path involved.
#[derive(Debug)]
pub enum StoreError {
    /// An I/O error on `path`.
    Io { path: PathBuf, source: io::Error },
    /// `path` is readable or writable by group or others.
    LooseMode { path: PathBuf, mode: u32 },
    /// `path` is not a valid record.
    Corrupt { path: PathBuf, why: &'static str },
    /// The cluster's storage (NATS JetStream) cannot be reached or refused
    /// the write; nothing of it is durable (clients get 503, not 507).
    Unavailable { why: String },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StoreError::LooseMode { path, mode } => write!(
                f,
                "{} has mode {mode:04o}; it must not be accessible by group or others (chmod {} {})",
                path.display(),
                if path.is_dir() { "700" } else { "600" },
                path.display()
            ),
            StoreError::Corrupt { path, why } => {
                write!(f, "{}: corrupt record ({why}); move it aside to start without it", path.display())
            }
            StoreError::Unavailable { why } => write!(f, "cluster storage unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// One change in a commit.
pub enum Change {
    /// A room's new bytes, or `None` to delete it.
    Room(String, Option<RoomWrite>),
    /// A change to a user's mailbox file.
    Queue(u64, QueueWrite),
    /// The contacts file's new bytes, and the pairs changed since the last write.
    Contacts(ContactsWrite),
    /// A user's prekey file's new bytes, or `None` to delete it.
    Prekeys(u64, Option<Vec<u8>>),
    /// A file's record (`files/<id>.file`), replaced atomically.
    FileRecord(u64, Vec<u8>),
    /// Consecutive chunk records of a file from index `first`, written at
    /// `first × CHUNK_RECORD` in `files/<id>.chunks` and fdatasync'd.
    FileChunks { id: u64, first: u32, bytes: Vec<u8> },
    /// Deletes a file: its chunks, then its record.
    FileDelete(u64),
    /// An account's operator state (`users/<uid>.acct`), replaced atomically.
    Acct(u64, Vec<u8>),
    /// The announcements file's new bytes.
    Announcements(Vec<u8>),
    /// Deletes an account's record (`users/<uid>.user`), then its operator state (`.acct`).
    UserDelete(u64),
    /// The retired names file's new bytes.
    Retired(Vec<u8>),
    /// The ticket key file's new bytes (`ticket-keys`), replaced atomically.
    TicketKeys(zeroize::Zeroizing<Vec<u8>>),
    /// A write to the ticket journal (`tickets`): appended batches, or the whole.
    Tickets(JournalWrite),
    /// An account's record (`users/<uid>.user`), replaced atomically (new secrets).
    User(Box<UserRecord>),
}

/// A room's new bytes, with where its kept history lies in them: the file
/// store writes the whole file; the cluster store writes the history on its
/// own subject, appending only the entries pushed since the room's last write.
pub struct RoomWrite {
    /// The room file (head, members, history, banned users, checksum).
    pub file: Vec<u8>,
    /// The history's entries in `file`, oldest first.
    pub entries: std::ops::Range<usize>,
    /// Where the entries pushed since the room's last write start in `file`
    /// (`entries.end` when none was).
    pub newest: usize,
    /// The history changed since the room's last write other than by pushes
    /// (a message removed, the history cleared), or the room is new.
    pub rewritten: bool,
}

/// The contacts: the file store writes the whole file; the cluster store one
/// record per pair, for the pairs changed since the last write.
pub struct ContactsWrite {
    /// The contacts file (`contacts.db`).
    pub file: Vec<u8>,
    /// Each changed pair (lower UID, higher UID) with its state
    /// (`contacts::ASKED_UP`, `ASKED_DOWN`, `ACCEPTED` or'ed; 0: nothing left).
    pub pairs: Vec<((u64, u64), u8)>,
}

/// A queue file as loaded: its bytes.
pub struct QueueFile {
    /// The owner's UID.
    pub uid: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Where accounts and rooms live.
pub trait Store: Send + Sync {
    /// Every stored account.
    fn load_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Creates or replaces one account, durably, before returning.
    fn put_user(&self, rec: &UserRecord) -> Result<(), StoreError>;
    /// Every account's operator state, checked: (UID, state).
    fn load_accts(&self) -> Result<Vec<(u64, Acct)>, StoreError>;
    /// Creates or replaces one account's operator state, durably, before returning.
    fn put_acct(&self, uid: u64, bytes: &[u8]) -> Result<(), StoreError>;
    /// The announcements file, if any.
    fn load_announcements(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every stored room file, checked.
    fn load_rooms(&self) -> Result<Vec<Room>, StoreError>;
    /// Every mailbox file, raw (the caller parses and may cut a torn tail).
    fn load_queues(&self) -> Result<Vec<QueueFile>, StoreError>;
    /// Cuts a mailbox file back to its valid prefix.
    fn truncate_queue(&self, uid: u64, len: u64) -> Result<(), StoreError>;
    /// The contacts file, if any.
    fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The retired names file, if any.
    fn load_retired(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// The ticket key file, if any.
    fn load_ticket_keys(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError>;
    /// The ticket journal, if any.
    fn load_tickets(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every user's published prekeys, checked: (owner UID, prekeys).
    fn load_prekeys(&self) -> Result<Vec<(u64, Published)>, StoreError>;
    /// Every file's record, checked, with the whole valid chunk records its
    /// chunk file starts with; a torn or corrupt tail is cut off (and said).
    fn load_files(&self) -> Result<Vec<StoredFile>, StoreError>;
    /// Chunk records `from..from + count` of file `id`, as stored (the
    /// caller checks them); called on the reader thread, never the loop.
    fn read_chunks(&self, id: u64, from: u32, count: u32) -> Result<Vec<u8>, StoreError>;
    /// Applies one loop turn's changes durably, in order: replaced files
    /// atomically, appends fsync'd, then one fsync per directory touched.
    fn commit(&self, writes: &[Change]) -> Result<(), StoreError>;
    /// The server stopped cleanly, its last commit done: a cluster node gives
    /// up its writer lease, so that a standby takes over at once.
    fn release(&self) {}
}

/// Seals a record: sets magic, version and checksum.
pub(crate) fn seal_user(rec: &mut UserRecord) {
    rec.magic = USER_MAGIC;
    rec.version.set(USER_VERSION);
    rec.checksum = crypto::sha256(&[&rec.as_bytes()[..CHECKSUM_AT]]);
}

/// Parses and checks a record read from disk.
pub(crate) fn parse_user(bytes: &[u8]) -> Result<UserRecord, &'static str> {
    let rec = UserRecord::read_from_bytes(bytes).map_err(|_| "wrong size")?;
    if rec.magic != USER_MAGIC || rec.version.get() != USER_VERSION {
        return Err("bad magic or version");
    }
    if !crypto::ct_eq(&crypto::sha256(&[&bytes[..CHECKSUM_AT]]), &rec.checksum) {
        return Err("checksum mismatch");
    }
    rec.username().map_err(|_| "bad user name")?;
    Ok(rec)
}

/// Accounts as files under `<data>/users/`, rooms under `<data>/rooms/`,
/// mailboxes under `<data>/queues/`, prekeys under `<data>/prekeys/`, files
/// under `<data>/files/`, and `<data>/contacts.db`.
pub struct FileStore {
    data: PathBuf,
    users: PathBuf,
    rooms: PathBuf,
    queues: PathBuf,
    prekeys: PathBuf,
    files: PathBuf,
}

impl FileStore {
    /// Opens (creating if missing, mode 0700) the data directory; refuses loose modes.
    pub fn open(data: &Path) -> Result<FileStore, StoreError> {
        ensure_private_dir(data)?;
        let users = data.join("users");
        ensure_private_dir(&users)?;
        let rooms = data.join("rooms");
        ensure_private_dir(&rooms)?;
        let queues = data.join("queues");
        ensure_private_dir(&queues)?;
        let prekeys = data.join("prekeys");
        ensure_private_dir(&prekeys)?;
        let files = data.join("files");
        ensure_private_dir(&files)?;
        Ok(FileStore { data: data.to_owned(), users, rooms, queues, prekeys, files })
    }

    fn file_path(&self, id: u64) -> PathBuf {
        self.files.join(format!("{id:016x}.file"))
    }

    fn chunks_path(&self, id: u64) -> PathBuf {
        self.files.join(format!("{id:016x}.chunks"))
    }

    /// How many whole valid chunk records `<id>.chunks` starts with (at most
    /// `chunk_count`); cuts off anything after them.
    fn load_chunks(&self, id: u64, chunk_count: u32) -> Result<u32, StoreError> {
        let path = self.chunks_path(id);
        let meta = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::Io { path, source: e }),
            Ok(meta) => meta,
        };
        check_mode(&path, meta.permissions().mode())?;
        if !meta.is_file() {
            return Err(StoreError::Corrupt { path, why: "not a regular file" });
        }
        let f = fs::OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
        let mut reader = io::BufReader::with_capacity(CHUNK_RECORD, &f);
        let mut rec = vec![0u8; CHUNK_RECORD];
        let mut n = 0u32;
        while n < chunk_count {
            match reader.read_exact(&mut rec) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(StoreError::Io { path, source: e }),
            }
            if files::open_chunk(&rec, n).is_none() {
                break;
            }
            n += 1;
        }
        let good = u64::from(n) * CHUNK_RECORD as u64;
        if meta.len() > good {
            crate::log!(
                Warn,
                "file {id:016x}: cut {} bytes of torn or corrupt chunk records at offset {good}; {n} whole chunks kept",
                meta.len() - good
            );
            f.set_len(good).and_then(|()| f.sync_all()).map_err(io_err(&path))?;
        }
        Ok(n)
    }

    fn prekey_path(&self, uid: u64) -> PathBuf {
        self.prekeys.join(format!("{uid:016x}.prekeys"))
    }

    fn queue_path(&self, uid: u64) -> PathBuf {
        self.queues.join(format!("{uid:016x}.q"))
    }

    fn room_path(&self, name: &str) -> PathBuf {
        self.rooms.join(format!("{name}.room"))
    }

    /// The checked regular files with extension `ext` in `dir`; stale temp files are removed.
    fn records(dir: &Path, ext: &str) -> Result<Vec<(PathBuf, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                // A temp file is what a crash mid-write leaves: the rename never happened.
                Some("tmp") => {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                Some(e) if e == ext => {}
                _ => continue,
            }
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            check_mode(&path, meta.permissions().mode())?;
            if meta.len() > MAX_RECORD_FILE {
                return Err(StoreError::Corrupt { path, why: "too large" });
            }
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            out.push((path, bytes));
        }
        Ok(out)
    }

    fn user_path(&self, uid: u64) -> PathBuf {
        self.users.join(format!("{uid:016x}.user"))
    }

    fn acct_path(&self, uid: u64) -> PathBuf {
        self.users.join(format!("{uid:016x}.acct"))
    }

    /// A file directly in the data directory, if present (checked mode, at
    /// most `max` bytes).
    fn data_file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.data.join(name);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
            Ok(meta) => {
                check_mode(&path, meta.permissions().mode())?;
                if meta.len() > max {
                    return Err(StoreError::Corrupt { path, why: "too large" });
                }
                fs::read(&path).map(Some).map_err(io_err(&path))
            }
        }
    }
}

/// Creates `dir` with mode 0700 if missing; refuses one accessible by group or others.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(StoreError::Io { path: dir.to_owned(), source: io::Error::other("not a directory") });
            }
            check_mode(dir, meta.permissions().mode())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o700).create(dir).map_err(io_err(dir))?;
            // The umask may have narrowed it further, never widened it; pin it.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
        }
        Err(e) => Err(StoreError::Io { path: dir.to_owned(), source: e }),
    }
}

fn check_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    if mode & 0o077 != 0 {
        return Err(StoreError::LooseMode { path: path.to_owned(), mode: mode & 0o7777 });
    }
    Ok(())
}

/// Largest record file the loader reads (a full room: 65,536 members, 20 entries).
const MAX_RECORD_FILE: u64 = 1 << 20;

/// Writes `bytes` to `path` atomically and durably, mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_file_synced(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes a temp file, fsyncs it and renames it over `path`; the caller fsyncs the directory.
fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl Store for FileStore {
    fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut out = Vec::new();
        for (path, bytes) in FileStore::records(&self.users, "user")? {
            out.push(parse_user(&bytes).map_err(|why| StoreError::Corrupt { path, why })?);
        }
        Ok(out)
    }

    fn put_user(&self, rec: &UserRecord) -> Result<(), StoreError> {
        write_atomic(&self.user_path(rec.uid.get()), rec.as_bytes())
    }

    fn load_accts(&self) -> Result<Vec<(u64, Acct)>, StoreError> {
        let mut out = Vec::new();
        for (path, bytes) in FileStore::records(&self.users, "acct")? {
            let named = path.file_stem().and_then(|s| s.to_str()).and_then(|s| u64::from_str_radix(s, 16).ok());
            let (uid, acct) = Acct::decode(&bytes).map_err(|why| StoreError::Corrupt { path: path.clone(), why })?;
            if named != Some(uid) {
                return Err(StoreError::Corrupt { path, why: "name is not its account's UID" });
            }
            out.push((uid, acct));
        }
        Ok(out)
    }

    fn put_acct(&self, uid: u64, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.acct_path(uid), bytes)
    }

    fn load_announcements(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.data_file("announcements.db", MAX_RECORD_FILE)
    }

    fn load_rooms(&self) -> Result<Vec<Room>, StoreError> {
        let mut out = Vec::new();
        for (path, bytes) in FileStore::records(&self.rooms, "room")? {
            out.push(Room::decode(&bytes).map_err(|why| StoreError::Corrupt { path, why })?);
        }
        Ok(out)
    }

    fn load_queues(&self) -> Result<Vec<QueueFile>, StoreError> {
        let mut out = Vec::new();
        for (path, bytes) in FileStore::records(&self.queues, "q")? {
            let uid = path.file_stem().and_then(|s| s.to_str()).and_then(|s| u64::from_str_radix(s, 16).ok());
            let Some(uid) = uid else { return Err(StoreError::Corrupt { path, why: "name is not a UID" }) };
            out.push(QueueFile { uid, bytes });
        }
        Ok(out)
    }

    fn truncate_queue(&self, uid: u64, len: u64) -> Result<(), StoreError> {
        let path = self.queue_path(uid);
        let f = fs::OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
        f.set_len(len).and_then(|()| f.sync_all()).map_err(io_err(&path))
    }

    fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.data_file("contacts.db", crate::server::contacts::MAX_FILE)
    }

    fn load_retired(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.data_file("retired.db", crate::server::retired::MAX_FILE)
    }

    fn load_ticket_keys(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError> {
        Ok(self.data_file(tickets::KEYS_FILE, tickets::MAX_KEYS_FILE)?.map(zeroize::Zeroizing::new))
    }

    fn load_tickets(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.data_file(tickets::JOURNAL_FILE, tickets::MAX_JOURNAL_FILE)
    }

    fn load_prekeys(&self) -> Result<Vec<(u64, Published)>, StoreError> {
        let mut out = Vec::new();
        for (path, bytes) in FileStore::records(&self.prekeys, "prekeys")? {
            let named = path.file_stem().and_then(|s| s.to_str()).and_then(|s| u64::from_str_radix(s, 16).ok());
            let (uid, p) = Published::decode(&bytes).map_err(|why| StoreError::Corrupt { path: path.clone(), why })?;
            if named != Some(uid) {
                return Err(StoreError::Corrupt { path, why: "name is not its owner's UID" });
            }
            out.push((uid, p));
        }
        Ok(out)
    }

    fn load_files(&self) -> Result<Vec<StoredFile>, StoreError> {
        let mut out = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (path, bytes) in FileStore::records(&self.files, "file")? {
            let named = path.file_stem().and_then(|s| s.to_str()).and_then(|s| u64::from_str_radix(s, 16).ok());
            let meta = FileMeta::decode(&bytes).map_err(|why| StoreError::Corrupt { path: path.clone(), why })?;
            if named != Some(meta.id) {
                return Err(StoreError::Corrupt { path, why: "name is not the file's id" });
            }
            let stored = self.load_chunks(meta.id, meta.chunk_count)?;
            ids.insert(meta.id);
            out.push(StoredFile { meta, stored });
        }
        // Chunks without a record: a deletion cut short between its two
        // removals, or a crash before the offer's record was durable.
        for entry in fs::read_dir(&self.files).map_err(io_err(&self.files))? {
            let path = entry.map_err(io_err(&self.files))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("chunks") {
                continue;
            }
            let id = path.file_stem().and_then(|s| s.to_str()).and_then(|s| u64::from_str_radix(s, 16).ok());
            if id.is_none_or(|id| !ids.contains(&id)) {
                crate::log!(Warn, "{}: chunks without a file record; removed", path.display());
                remove_if_present(&path)?;
            }
        }
        Ok(out)
    }

    fn read_chunks(&self, id: u64, from: u32, count: u32) -> Result<Vec<u8>, StoreError> {
        let path = self.chunks_path(id);
        if count > files::READ_BATCH {
            return Err(StoreError::Corrupt { path, why: "read of too many chunks at once" });
        }
        let f = fs::File::open(&path).map_err(io_err(&path))?;
        let mut buf = vec![0u8; count as usize * CHUNK_RECORD];
        f.read_exact_at(&mut buf, u64::from(from) * CHUNK_RECORD as u64).map_err(io_err(&path))?;
        Ok(buf)
    }

    fn commit(&self, writes: &[Change]) -> Result<(), StoreError> {
        // Every file of the batch is written and synced, several at a time:
        // the file system overlaps (and its journal batches) concurrent syncs,
        // where one after another each waits for the disk. Then the
        // directories whose entries changed are synced. Nothing is
        // acknowledged before all of it returned.
        let dirs = if writes.len() <= 1 {
            writes.iter().try_fold(0u8, |acc, w| self.apply(w).map(|d| acc | d))?
        } else {
            let threads = writes.len().min(COMMIT_THREADS);
            let per = writes.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = writes
                    .chunks(per)
                    .map(|chunk| {
                        scope.spawn(move || chunk.iter().try_fold(0u8, |acc, w| self.apply(w).map(|d| acc | d)))
                    })
                    .collect();
                handles.into_iter().try_fold(0u8, |acc, h| match h.join() {
                    Ok(r) => r.map(|d| acc | d),
                    Err(_) => Err(StoreError::Io {
                        path: self.data.clone(),
                        source: io::Error::other("a commit thread panicked"),
                    }),
                })
            })?
        };
        let dirs_of = [
            (DIR_ROOMS, &self.rooms),
            (DIR_QUEUES, &self.queues),
            (DIR_DATA, &self.data),
            (DIR_PREKEYS, &self.prekeys),
            (DIR_FILES, &self.files),
            (DIR_USERS, &self.users),
        ];
        for (bit, dir) in dirs_of {
            if dirs & bit != 0 {
                sync_dir(dir)?;
            }
        }
        Ok(())
    }
}

/// Files a commit writes at once, at most.
const COMMIT_THREADS: usize = 8;
/// Directories a change needs synced afterwards (bits).
const DIR_ROOMS: u8 = 1;
const DIR_QUEUES: u8 = 2;
const DIR_DATA: u8 = 4;
const DIR_PREKEYS: u8 = 8;
const DIR_FILES: u8 = 16;
const DIR_USERS: u8 = 32;

impl FileStore {
    /// Makes one change durable; returns the directories to sync after it.
    fn apply(&self, w: &Change) -> Result<u8, StoreError> {
        match w {
            Change::Room(name, Some(w)) => write_file_synced(&self.room_path(name), &w.file).map(|()| DIR_ROOMS),
            Change::Room(name, None) => remove_if_present(&self.room_path(name)).map(|()| DIR_ROOMS),
            Change::Queue(uid, QueueWrite::Append(b)) => {
                let path = self.queue_path(*uid);
                // Only a new file needs its directory entry made durable too.
                let created = !path.exists();
                let mut f =
                    fs::OpenOptions::new().append(true).create(true).mode(0o600).open(&path).map_err(io_err(&path))?;
                f.write_all(b).and_then(|()| f.sync_data()).map_err(io_err(&path))?;
                Ok(if created { DIR_QUEUES } else { 0 })
            }
            Change::Queue(uid, QueueWrite::Replace(b)) => {
                write_file_synced(&self.queue_path(*uid), b).map(|()| DIR_QUEUES)
            }
            Change::Queue(uid, QueueWrite::Remove) => remove_if_present(&self.queue_path(*uid)).map(|()| DIR_QUEUES),
            Change::Contacts(w) => write_file_synced(&self.data.join("contacts.db"), &w.file).map(|()| DIR_DATA),
            Change::Prekeys(uid, Some(b)) => write_file_synced(&self.prekey_path(*uid), b).map(|()| DIR_PREKEYS),
            Change::Prekeys(uid, None) => remove_if_present(&self.prekey_path(*uid)).map(|()| DIR_PREKEYS),
            Change::FileRecord(id, b) => write_file_synced(&self.file_path(*id), b).map(|()| DIR_FILES),
            Change::FileChunks { id, first, bytes } => {
                let path = self.chunks_path(*id);
                let created = !path.exists();
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let at = u64::from(*first) * CHUNK_RECORD as u64;
                f.write_all_at(bytes, at).and_then(|()| f.sync_data()).map_err(io_err(&path))?;
                Ok(if created { DIR_FILES } else { 0 })
            }
            Change::Acct(uid, b) => write_file_synced(&self.acct_path(*uid), b).map(|()| DIR_USERS),
            Change::Announcements(b) => write_file_synced(&self.data.join("announcements.db"), b).map(|()| DIR_DATA),
            Change::FileDelete(id) => {
                // Chunks first: a crash between leaves a record with fewer
                // chunks (still valid), never chunks without a record.
                remove_if_present(&self.chunks_path(*id))?;
                remove_if_present(&self.file_path(*id)).map(|()| DIR_FILES)
            }
            // The account first: an operator state left by a crash between
            // the two belongs to no account and has no effect.
            Change::UserDelete(uid) => remove_if_present(&self.user_path(*uid))
                .and_then(|()| remove_if_present(&self.acct_path(*uid)))
                .map(|()| DIR_USERS),
            Change::Retired(b) => write_file_synced(&self.data.join("retired.db"), b).map(|()| DIR_DATA),
            Change::TicketKeys(b) => write_file_synced(&self.data.join(tickets::KEYS_FILE), b).map(|()| DIR_DATA),
            Change::Tickets(JournalWrite::Replace(b)) => {
                write_file_synced(&self.data.join(tickets::JOURNAL_FILE), b).map(|()| DIR_DATA)
            }
            Change::Tickets(JournalWrite::Append(b)) => {
                let path = self.data.join(tickets::JOURNAL_FILE);
                let created = !path.exists();
                let mut f =
                    fs::OpenOptions::new().append(true).create(true).mode(0o600).open(&path).map_err(io_err(&path))?;
                f.write_all(b).and_then(|()| f.sync_data()).map_err(io_err(&path))?;
                Ok(if created { DIR_DATA } else { 0 })
            }
            Change::User(rec) => write_file_synced(&self.user_path(rec.uid.get()), rec.as_bytes()).map(|()| DIR_USERS),
        }
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

#[cfg(any(test, fuzzing))]
#[path = "mem_store.rs"]
mod mem_store;
#[cfg(any(test, fuzzing))]
pub use mem_store::MemStore;

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn tempdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("sotto-store-{tag}-{}", crypto::hex(&crypto::random::<8>())));
        p
    }

    #[test]
    fn user_roundtrips_through_files_and_survives_reopen() {
        let dir = tempdir("rt");
        let store = FileStore::open(&dir).unwrap();
        let mut rec = UserRecord::new_zeroed();
        rec.uid.set(42);
        rec.set_username("alice").unwrap();
        seal_user(&mut rec);
        store.put_user(&rec).unwrap();
        let again = FileStore::open(&dir).unwrap().load_users().unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0] == rec);
        let mode = fs::metadata(store.user_path(42)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prekeys_are_committed_as_private_files_and_reloaded_checked() {
        let dir = tempdir("pk");
        let store = FileStore::open(&dir).unwrap();
        let mut p = Published { spk_id: 4, spk_time: 99, spk_pub: [7; 32], ..Default::default() };
        p.opks.extend([(1, [1; 32]), (2, [2; 32])]);
        store.commit(&[Change::Prekeys(42, Some(p.encode(42))), Change::Prekeys(43, Some(p.encode(43)))]).unwrap();
        store.commit(&[Change::Prekeys(43, None)]).unwrap();
        let again = FileStore::open(&dir).unwrap().load_prekeys().unwrap();
        assert_eq!(again, [(42, p.clone())]);
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir.join("prekeys")), mode(&store.prekey_path(42))), (0o700, 0o600));
        // A file under another user's name, or a flipped byte: the start stops, naming the file.
        write_atomic(&store.prekey_path(44), &p.encode(42)).unwrap();
        let err = store.load_prekeys().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { why: "name is not its owner's UID", .. }), "{err}");
        let mut bytes = p.encode(44);
        bytes[30] ^= 1;
        write_atomic(&store.prekey_path(44), &bytes).unwrap();
        let err = store.load_prekeys().unwrap_err();
        assert!(err.to_string().contains("000000000000002c.prekeys: corrupt record (checksum mismatch)"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn account_state_is_committed_as_a_private_file_and_a_damaged_one_stops_the_start() {
        let dir = tempdir("acct");
        let store = FileStore::open(&dir).unwrap();
        let mut a = Acct::default();
        a.set_state(crate::server::acct::State::Banned, 5, "spam");
        store.commit(&[Change::Acct(42, a.encode(42)), Change::Announcements(vec![1, 2, 3])]).unwrap();
        assert_eq!(FileStore::open(&dir).unwrap().load_accts().unwrap(), [(42, a.clone())]);
        assert_eq!(store.load_announcements().unwrap(), Some(vec![1, 2, 3]));
        let mode = fs::metadata(store.acct_path(42)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut bytes = a.encode(43);
        bytes[12] ^= 1;
        write_atomic(&store.acct_path(43), &bytes).unwrap();
        let err = store.load_accts().unwrap_err();
        assert!(err.to_string().contains("000000000000002b.acct: corrupt record (checksum mismatch)"), "{err}");
        write_atomic(&store.acct_path(43), &a.encode(42)).unwrap();
        let err = store.load_accts().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { why: "name is not its account's UID", .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_loose_directory_and_corrupt_record() {
        let dir = tempdir("loose");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(FileStore::open(&dir), Err(StoreError::LooseMode { .. })));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let store = FileStore::open(&dir).unwrap();
        let mut rec = UserRecord::new_zeroed();
        rec.set_username("bob").unwrap();
        seal_user(&mut rec);
        let mut bytes = rec.as_bytes().to_vec();
        bytes[40] ^= 1;
        write_atomic(&store.user_path(1), &bytes).unwrap();
        assert!(matches!(store.load_users(), Err(StoreError::Corrupt { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
