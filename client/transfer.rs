//! File transfers (PROTOCOL.md §10, docs/CLIENT.md "Files"): uploads and
//! downloads beside the chat session, on the same connection, with message
//! ids of their own (bit 62 set), so that the one-request-at-a-time session
//! never waits for a chunk and a chunk never waits for it.
//!
//! Invariants: a received file name reaches the disk only through
//! [`safe_name`] (no separator, no `..`, no control or format character) and
//! never replaces an existing file (a hard link that fails when the name is
//! taken); a download writes only chunks whose tag verified, at their own
//! place, into a part file, and becomes the file only when the SHA-256 of the
//! bytes written equals the manifest's; an upload sends at most [`WINDOW`]
//! chunks the server has not acknowledged; after a lost connection or a
//! restart an upload resumes from what the server has (`flin.stored`) and a
//! download from what the part file holds, never from zero. The list is
//! sealed in the user's key store (`transfers`, vault kind 8): file keys never
//! touch the disk in clear.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sotto::crypto;
use sotto::file::{self, FileKeys, CHUNK};
use sotto::opcodes::{
    self, FileAck, FileChunk, FileChunkData, FileDone, FileGet, FileInfo, FileManifest, FileOffer, StatusReply,
};
use sotto::wire::{self, Message, Status};
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::session::Failure;
use crate::vault::{self, Kind, Reader};

/// The transfers file.
pub const KIND: Kind = Kind { file: "transfers", magic: *b"SOTF", name: "transfers", id: 8, what: "transfers" };
/// Chunks an upload keeps unacknowledged at most (PROTOCOL.md §10: 1 MiB).
pub const WINDOW: u32 = 64;
/// Message ids of transfer requests have this bit set (the session's count from 1).
const ID_BIT: u64 = 1 << 62;
/// A download tells the server what it has taken (flak) every this many
/// chunks: well inside the server's window of 16, so that it never idles.
const TAKE_EVERY: u32 = 4;
/// Progress reports per transfer at most this often.
const PROGRESS_MS: u64 = 250;
/// Transfers kept in the list at most (finished ones go first).
const KEEP_MAX: usize = 1000;
/// Longest name kept, in bytes (the manifest's field).
const NAME_MAX: usize = 255;
/// The text form of a manifest inside the session's DM and room paths:
/// this prefix, then the manifest in hex. A user's text never starts with
/// it (`is_manifest_text` is refused by `/msg` and `/say`).
const MARKER: &str = "\u{1}sotto-file\u{1}";

/// Where a file goes: a DM contact or a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A contact's name.
    User(String),
    /// A room's name.
    Room(String),
}

impl Target {
    /// `@name` or the room name, as `/files` shows it.
    pub fn label(&self) -> String {
        match self {
            Target::User(u) => format!("@{u}"),
            Target::Room(r) => r.clone(),
        }
    }
}

/// Where a transfer stands (the `state` of `/files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Upload: reserved on the server, the manifest not yet stored.
    Offering,
    /// Upload: the manifest is stored; chunks going up.
    Uploading,
    /// Upload: every chunk is on the server.
    Uploaded,
    /// Download: offered to us, not fetched.
    Offered,
    /// Download: being fetched.
    Downloading,
    /// Download: written and checked.
    Received,
    /// Download: declined.
    Declined,
    /// Stopped for good (the reason was reported).
    Failed,
}

impl State {
    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(c: u8) -> Option<State> {
        [
            State::Offering,
            State::Uploading,
            State::Uploaded,
            State::Offered,
            State::Downloading,
            State::Received,
            State::Declined,
            State::Failed,
        ]
        .into_iter()
        .find(|s| s.code() == c)
    }

    /// Its name in `/files`.
    pub fn name(self) -> &'static str {
        match self {
            State::Offering => "offering",
            State::Uploading => "uploading",
            State::Uploaded => "uploaded",
            State::Offered => "offered",
            State::Downloading => "downloading",
            State::Received => "received",
            State::Declined => "declined",
            State::Failed => "failed",
        }
    }
}

/// One transfer, as kept.
pub struct Transfer {
    /// The file id.
    pub id: u64,
    /// True for a file we send.
    pub up: bool,
    /// Upload: the recipient; download: where it was offered (`@sender` or the room).
    pub target: Target,
    /// Download: the sender's name (upload: empty).
    pub from: String,
    /// Upload to a contact: its UID (the flof names it).
    peer_uid: u64,
    /// The name as the sender gave it.
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, from the manifest.
    pub sha256: [u8; 32],
    key: Zeroizing<[u8; 32]>,
    /// Download: the offer came authenticated by pinned keys.
    pub verified: bool,
    /// Where it stands.
    pub state: State,
    /// Upload: the source file. Download: the directory it goes to (empty before `/get`).
    pub path: PathBuf,
    /// Download: the file it was saved as.
    pub saved: Option<PathBuf>,
    /// Not kept: what happens on this connection.
    live: Live,
}

/// What a transfer has in flight (not saved: rebuilt after a reconnect).
#[derive(Default)]
struct Live {
    /// Chunks the server acknowledged (upload) or that were written (download).
    done: u32,
    /// Upload: the next chunk to send.
    next: u32,
    /// Bytes of chunks this process sent.
    sent: u64,
    /// The server answered the flof or flgt on this connection.
    started: bool,
    /// The manifest's message went to the session (waiting for it to be stored).
    manifest_sent: bool,
    /// When progress was last reported.
    said_ms: u64,
    /// The source (upload) or part file (download), open.
    file: Option<File>,
    /// Every chunk is stored but the manifest's answer has not come: said after it.
    uploaded_unsaid: bool,
}

impl Transfer {
    fn chunks(&self) -> u32 {
        file::chunk_count(self.size).unwrap_or(0)
    }

    fn keys(&self) -> FileKeys {
        FileKeys::derive(self.id, self.chunks(), &self.key)
    }

    /// The manifest that announces it.
    fn manifest(&self) -> FileManifest {
        let mut m = FileManifest::new_zeroed();
        m.file_id.set(self.id);
        m.size.set(self.size);
        m.chunk_count.set(self.chunks());
        m.chunk_size.set(CHUNK as u32);
        m.sha256 = self.sha256;
        m.key = *self.key;
        // NOTE: the name was cut to NAME_MAX bytes when the transfer was made.
        let _ = m.set_name(&self.name);
        m
    }

    fn part_path(&self) -> PathBuf {
        self.path.join(format!(".sotto-{:016x}.part", self.id))
    }

    fn finished(&self) -> bool {
        matches!(self.state, State::Uploaded | State::Received | State::Declined | State::Failed)
    }
}

/// What the front ends show about files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileReport {
    /// `/send`: the manifest is stored; the upload goes on.
    Offered { id: u64, to: String, name: String, size: u64, sha256: [u8; 32] },
    /// Bytes done of a transfer (at most a few a second).
    Progress { id: u64, done: u64, total: u64 },
    /// Every chunk is on the server; `sent`: chunk bytes this process sent for it.
    Uploaded { id: u64, sent: u64 },
    /// A file offered to us.
    Offer { id: u64, from: String, room: Option<String>, name: String, size: u64, sha256: [u8; 32], verified: bool },
    /// A transfer continues after a reconnect or a restart from `offset` bytes.
    Resumed { id: u64, offset: u64 },
    /// A download is complete and checked.
    Received { id: u64, path: PathBuf, size: u64, sha256: [u8; 32], verified: bool },
    /// `/decline` done.
    Declined { id: u64 },
    /// `/files`.
    List(Vec<Listed>),
}

/// One line of `/files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// File id.
    pub id: u64,
    /// Sender (empty for ours).
    pub from: String,
    /// Recipient: `@user` or the room.
    pub to: String,
    /// Name.
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Bytes done.
    pub done: u64,
    /// State name.
    pub state: &'static str,
}

/// What a transfer request in flight was.
#[derive(Clone, Copy, Debug)]
enum Req {
    Offer,
    Chunk(u32),
    Get,
    Done(u8),
}

/// Every transfer of the logged-in user.
#[derive(Default)]
pub struct Transfers {
    list: BTreeMap<u64, Transfer>,
    dirty: bool,
    next_id: u64,
    waiting: HashMap<u64, (u64, Req)>,
    out: VecDeque<Zeroizing<Vec<u8>>>,
    reports: VecDeque<Result<FileReport, Failure>>,
    /// The `/send` or `/decline` whose answer the input waits for.
    command: Option<u64>,
    /// Connected and logged in: requests may go.
    online: bool,
}

/// True for a text that is a manifest in the session's text form.
pub fn is_manifest_text(text: &str) -> bool {
    text.starts_with(MARKER)
}

/// The manifest a text carries, if it is one.
pub fn manifest_of(text: &str) -> Option<FileManifest> {
    let bytes = crypto::unhex(text.strip_prefix(MARKER)?)?;
    FileManifest::read_from_bytes(&bytes).ok()
}

fn manifest_text(m: &FileManifest) -> String {
    format!("{MARKER}{}", crypto::hex(m.as_bytes()))
}

/// The body a session text is sent as: a manifest's (PROTOCOL.md §10) or the text's.
pub fn payload_body(text: &str) -> Result<(opcodes::Class, Zeroizing<Vec<u8>>), sotto::body::TooLong> {
    match manifest_of(text) {
        Some(m) => Ok(file::pack_manifest(&m)),
        None => sotto::body::pack(text),
    }
}

/// The text of a decrypted body: a text, or a manifest in its text form.
pub fn payload_text(body: &[u8]) -> Result<String, crypto::Invalid> {
    match file::unpack(body)? {
        file::Content::Text(t) => Ok(t),
        file::Content::File(m) => Ok(manifest_text(&m)),
    }
}

/// A name from the network made safe to create in a directory: its last path
/// component, unsafe characters replaced by `_`, no leading dot, at most 255 bytes.
pub fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = last.chars().map(|c| if crate::text::is_unsafe(c) || c == '\0' { '_' } else { c }).collect();
    let dots = out.len() - out.trim_start_matches('.').len();
    out.replace_range(..dots, &"_".repeat(dots));
    if out.trim().is_empty() {
        out = "file".to_string();
    }
    cut(&mut out, NAME_MAX);
    out
}

fn cut(s: &mut String, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// `dir/name`, or `dir/stem (n).ext` for the first n whose name is free, made
/// by linking `part` there (a link never replaces a file).
fn place(part: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    let (stem, ext) = match name.rfind('.') {
        Some(at) if at > 0 => (&name[..at], &name[at..]),
        _ => (name, ""),
    };
    for n in 0..1000u32 {
        let candidate = if n == 0 { name.to_string() } else { format!("{stem} ({n}){ext}") };
        let path = dir.join(&candidate);
        match fs::hard_link(part, &path) {
            Ok(()) => {
                fs::remove_file(part)?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} and 999 numbered variants exist")))
}

/// SHA-256 and length of a file's bytes.
fn hash_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((h.finalize().into(), n))
}

fn fail(cmd: &str, code: u16, message: impl Into<String>) -> Failure {
    Failure::new(cmd, code, message)
}

impl Transfers {
    /// No transfers.
    pub fn new() -> Transfers {
        Transfers::default()
    }

    /// True once after every change to what is kept (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// A `/send` or `/decline` waits for its answer: no input line is taken.
    pub fn busy(&self) -> bool {
        self.command.is_some()
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        self.out.pop_front()
    }

    /// The next thing to show.
    pub fn poll_report(&mut self) -> Option<Result<FileReport, Failure>> {
        self.reports.pop_front()
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        ID_BIT | self.next_id
    }

    fn queue<M: Message>(&mut self, file_id: u64, req: Req, make: impl FnOnce(u64) -> M) {
        let id = self.take_id();
        let m = make(id);
        self.out.push_back(Zeroizing::new(m.as_bytes().to_vec()));
        self.waiting.insert(id, (file_id, req));
    }

    /// The transfer `prefix` names (at least 4 hex digits of its id, unique).
    fn find(&self, cmd: &str, prefix: &str) -> Result<u64, Failure> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() < 4 || p.len() > 16 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(cmd, 400, format!("usage: /{cmd} ID (the file id of /files: 4 to 16 hex digits)")));
        }
        let hits: Vec<u64> = self.list.keys().copied().filter(|id| format!("{id:016x}").starts_with(&p)).collect();
        match hits[..] {
            [id] => Ok(id),
            [] => Err(fail(cmd, 404, format!("no file {p} in /files"))),
            _ => Err(fail(cmd, 400, format!("{p} names {} files: give more digits", hits.len()))),
        }
    }

    /// `/send`: hashes `path` and reserves the file on the server; the
    /// manifest goes once the server has the reservation ([`Transfers::manifest_due`]).
    pub fn send(&mut self, target: Target, peer_uid: u64, path: &Path, now_ms: u64) -> Result<u64, Failure> {
        let cmd = "send";
        if !self.online {
            return Err(fail(cmd, 0, "not connected to the server; try again once reconnected"));
        }
        let meta = fs::metadata(path).map_err(|e| fail(cmd, 404, format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(fail(cmd, 400, format!("{} is not a regular file", path.display())));
        }
        let (sha256, size) = hash_file(path).map_err(|e| fail(cmd, 404, format!("{}: {e}", path.display())))?;
        file::chunk_count(size).ok_or_else(|| fail(cmd, 413, "file too large"))?;
        let mut name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        cut(&mut name, NAME_MAX);
        if name.is_empty() {
            name = "file".into();
        }
        let id = loop {
            let id = u64::from_be_bytes(crypto::random());
            if id != 0 && !self.list.contains_key(&id) {
                break id;
            }
        };
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let t = Transfer {
            id,
            up: true,
            target,
            from: String::new(),
            peer_uid,
            name,
            size,
            sha256,
            key: Zeroizing::new(crypto::random()),
            verified: true,
            state: State::Offering,
            path,
            saved: None,
            live: Live::default(),
        };
        self.list.insert(id, t);
        self.prune();
        self.dirty = true;
        self.command = Some(id);
        self.offer(id, now_ms);
        Ok(id)
    }

    /// Sends (again) the flof of upload `id`.
    fn offer(&mut self, id: u64, now_ms: u64) {
        let Some(t) = self.list.get(&id) else { return };
        let (size, chunks, target, peer_uid) = (t.size, t.chunks(), t.target.clone(), t.peer_uid);
        self.queue(id, Req::Offer, |msg| {
            let mut m = FileOffer::request(msg, now_ms);
            m.file_id.set(id);
            m.size.set(size);
            m.chunk_count.set(chunks);
            match &target {
                Target::User(_) => m.target = 1,
                Target::Room(r) => {
                    m.target = 2;
                    let _ = m.set_room(r);
                }
            }
            m.peer_uid.set(peer_uid);
            m
        });
    }

    /// An upload whose manifest may go now: its id, where, and the text the
    /// session seals (`payload_body` turns it into the manifest's body).
    pub fn manifest_due(&mut self) -> Option<(u64, Target, String)> {
        let t = self
            .list
            .values_mut()
            .find(|t| t.up && t.state == State::Offering && t.live.started && !t.live.manifest_sent)?;
        t.live.manifest_sent = true;
        Some((t.id, t.target.clone(), manifest_text(&t.manifest())))
    }

    /// The manifest of `id` is stored (or kept to be sent): `file_offered`.
    pub fn manifest_stored(&mut self, id: u64) {
        let Some(t) = self.list.get_mut(&id) else { return };
        if t.state != State::Offering {
            return;
        }
        t.state = State::Uploading;
        self.dirty = true;
        let report =
            FileReport::Offered { id, to: t.target.label(), name: t.name.clone(), size: t.size, sha256: t.sha256 };
        let uploaded = std::mem::take(&mut t.live.uploaded_unsaid).then_some(t.live.sent);
        if self.command == Some(id) {
            self.command = None;
        }
        self.reports.push_back(Ok(report));
        if let Some(sent) = uploaded {
            self.finish_upload(id, sent);
        }
    }

    /// The manifest of `id` could not be sent: the `/send` fails.
    pub fn manifest_failed(&mut self, id: u64, why: Failure) {
        if let Some(t) = self.list.get_mut(&id) {
            t.state = State::Failed;
            t.live = Live::default();
            self.dirty = true;
        }
        if self.command == Some(id) {
            self.command = None;
        }
        self.reports.push_back(Err(Failure { cmd: "send".into(), ..why }));
    }

    /// A manifest arrived in a DM (`room` None) or a room message from
    /// `from`; reported once per file id.
    pub fn offered(&mut self, me: &str, from: &str, room: Option<&str>, m: &FileManifest, verified: bool) {
        let id = m.file_id.get();
        if self.list.contains_key(&id) {
            return;
        }
        let Ok(name) = m.name() else { return };
        let target = match room {
            Some(r) => Target::Room(r.to_string()),
            None => Target::User(me.to_string()),
        };
        let t = Transfer {
            id,
            up: false,
            target,
            from: from.to_string(),
            peer_uid: 0,
            name: name.to_string(),
            size: m.size.get(),
            sha256: m.sha256,
            key: Zeroizing::new(m.key),
            verified,
            state: State::Offered,
            path: PathBuf::new(),
            saved: None,
            live: Live::default(),
        };
        self.reports.push_back(Ok(FileReport::Offer {
            id,
            from: from.to_string(),
            room: room.map(str::to_string),
            name: t.name.clone(),
            size: t.size,
            sha256: t.sha256,
            verified,
        }));
        self.list.insert(id, t);
        self.prune();
        self.dirty = true;
    }

    /// `/get ID [DIR]`: fetches the file into `dir` (resuming a part file there).
    pub fn get(&mut self, prefix: &str, dir: &Path, now_ms: u64) -> Result<(), Failure> {
        let cmd = "get";
        let id = self.find(cmd, prefix)?;
        if !self.online {
            return Err(fail(cmd, 0, "not connected to the server; try again once reconnected"));
        }
        let t = self.list.get_mut(&id).ok_or_else(|| fail(cmd, 404, "no such file"))?;
        if t.up {
            return Err(fail(cmd, 400, format!("{id:016x} is a file you send")));
        }
        match t.state {
            State::Downloading => return Err(fail(cmd, 409, format!("{id:016x} is being downloaded"))),
            State::Received => return Err(fail(cmd, 409, format!("{id:016x} was received already"))),
            _ => {}
        }
        let meta = fs::metadata(dir).map_err(|e| fail(cmd, 404, format!("{}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(fail(cmd, 400, format!("{} is not a directory", dir.display())));
        }
        t.path = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        t.state = State::Downloading;
        t.saved = None;
        t.live = Live::default();
        self.dirty = true;
        self.fetch(id, true, now_ms).map_err(|e| fail(cmd, 500, e))
    }

    /// Opens the part file of download `id` and asks for what it lacks.
    fn fetch(&mut self, id: u64, fresh: bool, now_ms: u64) -> Result<(), String> {
        let Some(t) = self.list.get_mut(&id) else { return Ok(()) };
        let part = t.part_path();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(fresh)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&part)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let have = f.metadata().map_err(|e| e.to_string())?.len();
        // Whole chunks only: a torn last write is fetched again.
        let done = u32::try_from(have / CHUNK as u64).unwrap_or(u32::MAX).min(t.chunks());
        let done = if u64::from(done) * (CHUNK as u64) >= t.size { t.chunks() } else { done };
        f.set_len(u64::from(done) * CHUNK as u64).map_err(|e| e.to_string())?;
        t.live.done = done;
        t.live.file = Some(f);
        if done > 0 {
            self.reports.push_back(Ok(FileReport::Resumed { id, offset: u64::from(done) * CHUNK as u64 }));
        }
        self.queue(id, Req::Get, |msg| {
            let mut m = FileGet::request(msg, now_ms);
            m.file_id.set(id);
            m.from.set(done);
            m
        });
        Ok(())
    }

    /// `/decline ID`.
    pub fn decline(&mut self, prefix: &str, now_ms: u64) -> Result<(), Failure> {
        let cmd = "decline";
        let id = self.find(cmd, prefix)?;
        if !self.online {
            return Err(fail(cmd, 0, "not connected to the server; try again once reconnected"));
        }
        let t = self.list.get(&id).ok_or_else(|| fail(cmd, 404, "no such file"))?;
        if t.up || !matches!(t.state, State::Offered | State::Failed | State::Downloading) {
            return Err(fail(cmd, 409, format!("{id:016x} is {}: nothing to decline", t.state.name())));
        }
        self.command = Some(id);
        // A download under way ends here: its chunks are not wanted any more.
        self.waiting.retain(|_, (f, r)| !(*f == id && matches!(r, Req::Get)));
        self.queue(id, Req::Done(2), |msg| {
            let mut m = FileDone::request(msg, now_ms);
            m.file_id.set(id);
            m.state = 2;
            m
        });
        Ok(())
    }

    /// `/files`.
    pub fn listing(&self) -> FileReport {
        FileReport::List(
            self.list
                .values()
                .map(|t| Listed {
                    id: t.id,
                    from: t.from.clone(),
                    to: t.target.label(),
                    name: t.name.clone(),
                    size: t.size,
                    done: (u64::from(t.live.done) * CHUNK as u64).min(t.size),
                    state: t.state.name(),
                })
                .collect(),
        )
    }

    /// The connection is gone: what was in flight is forgotten (resumed later).
    pub fn connection_lost(&mut self) {
        self.online = false;
        self.waiting.clear();
        self.out.clear();
        for t in self.list.values_mut() {
            let manifest_sent = t.live.manifest_sent;
            let sent = t.live.sent;
            t.live = Live { sent, ..Live::default() };
            // A manifest handed to the session stays with it (its outbox or its resend).
            t.live.manifest_sent = manifest_sent;
        }
        // A /send goes on after the login (its answer comes then); a /decline ends.
        if let Some(id) = self.command.take_if(|id| !self.list.get(id).is_some_and(|t| t.state == State::Offering)) {
            let why = format!("{id:016x}: the connection to the server was lost; try again once reconnected");
            self.reports.push_back(Err(fail("decline", 0, why)));
        }
    }

    /// Logged in (again): every unfinished transfer goes on where it stopped.
    pub fn resume(&mut self, now_ms: u64) {
        self.online = true;
        let ids: Vec<(u64, State)> = self.list.values().map(|t| (t.id, t.state)).collect();
        for (id, state) in ids {
            match state {
                State::Offering | State::Uploading => self.offer(id, now_ms),
                State::Downloading => {
                    if let Err(e) = self.fetch(id, false, now_ms) {
                        self.stop(id, "get", 500, e);
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether a server message is a transfer's (then [`Transfers::handle_frame`] takes it).
    pub fn owns(&self, pt: &[u8]) -> bool {
        let Ok(h) = wire::header(pt) else { return false };
        matches!(h.opcode.get(), opcodes::FLIN | opcodes::FLCD) || self.waiting.contains_key(&h.msg_id.get())
    }

    /// A server message for a transfer.
    pub fn handle_frame(&mut self, pt: &[u8], now_ms: u64) {
        let Ok(h) = wire::header(pt) else { return };
        let msg = h.msg_id.get();
        let Some(&(id, req)) = self.waiting.get(&msg) else { return };
        match h.opcode.get() {
            opcodes::FLIN => match wire::decode::<FileInfo>(pt) {
                Ok(info) => self.info(id, req, info, now_ms),
                Err(e) => self.stop(id, req.cmd(), 0, format!("malformed flin from the server: {e}")),
            },
            opcodes::FLCD => match wire::decode::<FileChunkData>(pt) {
                Ok(c) => self.chunk_data(id, c, now_ms),
                Err(e) => self.stop(id, "get", 0, format!("malformed flcd from the server: {e}")),
            },
            opcodes::STAT => match wire::decode::<StatusReply>(pt) {
                Ok(r) => {
                    self.waiting.remove(&msg);
                    self.status(id, req, r, now_ms);
                }
                Err(e) => self.stop(id, req.cmd(), 0, format!("malformed stat from the server: {e}")),
            },
            _ => {}
        }
        self.pump(now_ms);
    }

    fn info(&mut self, id: u64, req: Req, info: &FileInfo, now_ms: u64) {
        let Some(t) = self.list.get_mut(&id) else { return };
        if info.size.get() != t.size || info.chunk_count.get() != t.chunks() {
            let why = format!("the server describes {} differently from its manifest", t.name);
            return self.stop(id, req.cmd(), 0, why);
        }
        match req {
            Req::Offer => {
                self.waiting.retain(|_, (f, r)| !(*f == id && matches!(r, Req::Offer)));
                let stored = info.stored.get().min(t.chunks());
                let resumed = t.live.sent > 0 || t.state == State::Uploading || stored > 0;
                if t.state == State::Uploading || t.state == State::Offering {
                    match File::open(&t.path) {
                        Ok(f) if f.metadata().is_ok_and(|m| m.len() == t.size) => t.live.file = Some(f),
                        _ => {
                            let why = format!("{} changed or is gone since it was offered", t.path.display());
                            return self.stop(id, "send", 409, why);
                        }
                    }
                }
                t.live.started = true;
                t.live.done = stored;
                t.live.next = stored;
                if resumed && stored < t.chunks() && (stored > 0 || t.live.sent > 0) {
                    self.reports.push_back(Ok(FileReport::Resumed { id, offset: u64::from(stored) * CHUNK as u64 }));
                }
                if stored == t.chunks() {
                    let sent = t.live.sent;
                    self.finish_upload(id, sent);
                }
            }
            Req::Get => t.live.started = true,
            _ => {}
        }
        let _ = now_ms;
    }

    fn chunk_data(&mut self, id: u64, c: &FileChunkData, now_ms: u64) {
        let Some(t) = self.list.get_mut(&id) else { return };
        if t.state != State::Downloading || c.file_id.get() != id {
            return;
        }
        let index = c.index.get();
        if index != t.live.done {
            let why = format!("the server sent chunk {index} of {} where {} was due", t.name, t.live.done);
            return self.stop(id, "get", 0, why);
        }
        let len = file::chunk_len(t.size, index);
        let plain = match t.keys().open(index, &c.iv, &c.tag, &c.data, len) {
            Ok(p) => p,
            Err(_) => {
                let why = format!(
                    "chunk {index} of {} failed its integrity check (altered on the server or in transit): download stopped, nothing kept",
                    t.name
                );
                let part = t.part_path();
                let _ = fs::remove_file(part);
                return self.stop(id, "get", 400, why);
            }
        };
        let at = u64::from(index) * CHUNK as u64;
        let written = t.live.file.as_ref().map(|f| f.write_all_at(&plain, at));
        if !matches!(written, Some(Ok(()))) {
            let why = format!("{} could not be written", t.part_path().display());
            return self.stop(id, "get", 507, why);
        }
        t.live.done += 1;
        let taken = t.live.done;
        if taken % TAKE_EVERY == 0 && taken < t.chunks() {
            // No answer: not a waiting request.
            let mut m = FileAck::request(self.take_id(), now_ms);
            m.file_id.set(id);
            m.through.set(taken);
            self.out.push_back(Zeroizing::new(m.as_bytes().to_vec()));
        }
    }

    fn status(&mut self, id: u64, req: Req, r: &StatusReply, now_ms: u64) {
        let code = r.hdr.code.get();
        let ok = matches!(Status::from_u8(r.hdr.status), Some(Status::Ok | Status::Done)) && code == 200;
        let reason = r.reason().unwrap_or("").to_string();
        match (req, ok) {
            (Req::Chunk(i), true) => {
                if let Some(t) = self.list.get_mut(&id) {
                    t.live.done = t.live.done.max(i + 1);
                    if t.live.done == t.chunks() {
                        let sent = t.live.sent;
                        self.finish_upload(id, sent);
                    }
                }
            }
            (Req::Chunk(_), false) if code == 409 => {
                // Out of step with the server (a lost ack): ask where it stands.
                self.waiting.retain(|_, (f, _)| *f != id);
                if let Some(t) = self.list.get_mut(&id) {
                    t.live.started = false;
                }
                self.offer(id, now_ms);
            }
            (Req::Get, true) => self.finish_download(id),
            (Req::Done(2), true) => {
                if let Some(t) = self.list.get_mut(&id) {
                    if let Some(f) = t.live.file.take() {
                        drop(f);
                        let _ = fs::remove_file(t.part_path());
                    }
                    t.state = State::Declined;
                    self.dirty = true;
                }
                if self.command == Some(id) {
                    self.command = None;
                }
                self.reports.push_back(Ok(FileReport::Declined { id }));
            }
            (Req::Done(_), true) => {}
            (Req::Done(s), false) => {
                if self.command == Some(id) {
                    self.command = None;
                }
                let cmd = if s == 2 { "decline" } else { "get" };
                self.reports.push_back(Err(fail(cmd, code, reason)));
            }
            (req, _) => {
                let what = self.list.get(&id).map(|t| t.name.clone()).unwrap_or_default();
                self.stop(id, req.cmd(), code, format!("{what}: {reason}"));
            }
        }
    }

    fn finish_upload(&mut self, id: u64, sent: u64) {
        let Some(t) = self.list.get_mut(&id) else { return };
        if t.state == State::Offering {
            // Said after file_offered.
            t.live.uploaded_unsaid = true;
            return;
        }
        if t.state != State::Uploading {
            return;
        }
        t.state = State::Uploaded;
        t.live.file = None;
        self.dirty = true;
        let total = t.size;
        self.reports.push_back(Ok(FileReport::Progress { id, done: total, total }));
        self.reports.push_back(Ok(FileReport::Uploaded { id, sent }));
    }

    fn finish_download(&mut self, id: u64) {
        let Some(t) = self.list.get_mut(&id) else { return };
        if t.state != State::Downloading {
            return;
        }
        if t.live.done != t.chunks() {
            let why = format!("the server ended {} after {} of {} chunks", t.name, t.live.done, t.chunks());
            return self.stop(id, "get", 0, why);
        }
        t.live.file = None;
        let part = t.part_path();
        let (sha, len) = match hash_file(&part) {
            Ok(h) => h,
            Err(e) => return self.stop(id, "get", 507, format!("{}: {e}", part.display())),
        };
        if len != t.size || !crypto::ct_eq(&sha, &t.sha256) {
            let _ = fs::remove_file(&part);
            let why = format!("{} does not match the hash its sender gave: nothing kept", t.name);
            return self.stop(id, "get", 400, why);
        }
        let dir = t.path.clone();
        let saved = match place(&part, &dir, &safe_name(&t.name)) {
            Ok(p) => p,
            Err(e) => return self.stop(id, "get", 507, format!("{}: {e}", dir.display())),
        };
        t.state = State::Received;
        t.saved = Some(saved.clone());
        self.dirty = true;
        let (size, verified) = (t.size, t.verified);
        self.reports.push_back(Ok(FileReport::Progress { id, done: size, total: size }));
        self.reports.push_back(Ok(FileReport::Received { id, path: saved, size, sha256: sha, verified }));
        // The server may delete a DM file now; no answer is awaited.
        self.queue(id, Req::Done(1), |msg| {
            let mut m = FileDone::request(msg, 0);
            m.file_id.set(id);
            m.state = 1;
            m
        });
    }

    /// Ends transfer `id` for good with an error report.
    fn stop(&mut self, id: u64, cmd: &str, code: u16, why: String) {
        self.waiting.retain(|_, (f, _)| *f != id);
        if let Some(t) = self.list.get_mut(&id) {
            // A download that stops keeps nothing: not even its part file.
            if !t.up && t.live.file.take().is_some() {
                let _ = fs::remove_file(t.part_path());
            }
            t.state = State::Failed;
            t.live.file = None;
            self.dirty = true;
        }
        if self.command == Some(id) {
            self.command = None;
        }
        self.reports.push_back(Err(fail(cmd, code, why)));
    }

    /// Sends the chunks the window allows, and progress reports.
    pub fn pump(&mut self, now_ms: u64) {
        if !self.online {
            return;
        }
        let ids: Vec<u64> = self.list.keys().copied().collect();
        for id in ids {
            self.fill(id, now_ms);
            let Some(t) = self.list.get_mut(&id) else { continue };
            let moving = matches!(t.state, State::Uploading | State::Downloading)
                || (t.state == State::Offering && t.live.started);
            if moving && now_ms.saturating_sub(t.live.said_ms) >= PROGRESS_MS && t.live.done < t.chunks() {
                t.live.said_ms = now_ms;
                let done = (u64::from(t.live.done) * CHUNK as u64).min(t.size);
                self.reports.push_back(Ok(FileReport::Progress { id, done, total: t.size }));
            }
        }
    }

    fn fill(&mut self, id: u64, now_ms: u64) {
        loop {
            let Some(t) = self.list.get_mut(&id) else { return };
            let uploading = t.up && t.live.started && matches!(t.state, State::Offering | State::Uploading);
            if !uploading || t.live.next >= t.chunks() || t.live.next - t.live.done >= WINDOW {
                return;
            }
            let index = t.live.next;
            let len = file::chunk_len(t.size, index);
            let mut plain = Zeroizing::new(vec![0u8; len]);
            let read = t.live.file.as_ref().map(|f| f.read_exact_at(&mut plain, u64::from(index) * CHUNK as u64));
            if !matches!(read, Some(Ok(()))) {
                let why = format!("{} could not be read at chunk {index}", t.path.display());
                return self.stop(id, "send", 500, why);
            }
            let mut m = FileChunk::new_zeroed();
            let sealed = t.keys().seal_into(index, &plain, &mut m.data);
            let Ok((iv, tag)) = sealed else {
                return self.stop(id, "send", 500, "a chunk could not be sealed".into());
            };
            t.live.next += 1;
            t.live.sent += len as u64;
            let msg = self.take_id();
            *m.header_mut() = *FileChunk::request(msg, now_ms).header();
            m.file_id.set(id);
            m.index.set(index);
            m.iv = iv;
            m.tag = tag;
            self.out.push_back(Zeroizing::new(m.as_bytes().to_vec()));
            self.waiting.insert(msg, (id, Req::Chunk(index)));
        }
    }

    /// Keeps the list bounded: the oldest finished transfers go first.
    fn prune(&mut self) {
        while self.list.len() > KEEP_MAX {
            let Some(old) = self.list.values().find(|t| t.finished()).map(|t| t.id) else { return };
            self.list.remove(&old);
        }
    }

    /// The plaintext of the file: `u32 count || count × entry`, an entry
    /// `u64 id || u8 up || u8 state || u8 verified || u8 target (1 user, 2 room)
    /// || name8 target || name8 from || u64 peer_uid || u16 len || name || u64 size || sha256 (32)
    /// || key (32) || u16 len || path || u16 len || saved path`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(4 + self.list.len() * 256));
        vault::put_count(&mut out, self.list.len());
        for t in self.list.values() {
            out.extend_from_slice(&t.id.to_be_bytes());
            out.extend_from_slice(&[u8::from(t.up), t.state.code(), u8::from(t.verified)]);
            match &t.target {
                Target::User(u) => {
                    out.push(1);
                    vault::put_user(&mut out, u);
                }
                Target::Room(r) => {
                    out.push(2);
                    vault::put_user(&mut out, r);
                }
            }
            vault::put_user(&mut out, &t.from);
            out.extend_from_slice(&t.peer_uid.to_be_bytes());
            put_bytes(&mut out, t.name.as_bytes());
            out.extend_from_slice(&t.size.to_be_bytes());
            out.extend_from_slice(&t.sha256);
            out.extend_from_slice(&t.key[..]);
            put_bytes(&mut out, t.path.as_os_str().as_encoded_bytes());
            let saved = t.saved.as_ref().map(|p| p.as_os_str().as_encoded_bytes()).unwrap_or_default();
            put_bytes(&mut out, saved);
        }
        out
    }

    /// Parses the plaintext; anything malformed refuses the whole file.
    pub fn decode(plain: &[u8]) -> Result<Transfers, KeyFileError> {
        use std::os::unix::ffi::OsStrExt;
        let mut r = Reader::new(plain);
        let mut list = BTreeMap::new();
        let count = r.u32()?;
        if count as usize > KEEP_MAX + 1 {
            return Err(KeyFileError::Damaged);
        }
        for _ in 0..count {
            let id = r.u64()?;
            let (up, state, verified) = (r.u8()?, r.u8()?, r.u8()?);
            let state = State::from_code(state).ok_or(KeyFileError::Damaged)?;
            let target = match r.u8()? {
                1 => Target::User(r.user()?),
                2 => Target::Room(r.user()?),
                _ => return Err(KeyFileError::Damaged),
            };
            let from = r.user()?;
            let peer_uid = r.u64()?;
            let name = std::str::from_utf8(get_bytes(&mut r)?).map_err(|_| KeyFileError::Damaged)?.to_string();
            let size = r.u64()?;
            let sha256: [u8; 32] = r.slice(32)?.try_into().map_err(|_| KeyFileError::Damaged)?;
            let key: [u8; 32] = r.slice(32)?.try_into().map_err(|_| KeyFileError::Damaged)?;
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(get_bytes(&mut r)?));
            let saved = get_bytes(&mut r)?;
            let saved = (!saved.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(saved)));
            if id == 0 || up > 1 || verified > 1 || name.len() > NAME_MAX || file::chunk_count(size).is_none() {
                return Err(KeyFileError::Damaged);
            }
            let t = Transfer {
                id,
                up: up == 1,
                target,
                from,
                peer_uid,
                name,
                size,
                sha256,
                key: Zeroizing::new(key),
                verified: verified == 1,
                state,
                path,
                saved,
                live: Live::default(),
            };
            list.insert(id, t);
        }
        r.end()?;
        Ok(Transfers { list, ..Transfers::default() })
    }
}

impl Req {
    fn cmd(self) -> &'static str {
        match self {
            Req::Offer | Req::Chunk(_) => "send",
            Req::Get | Req::Done(1) => "get",
            Req::Done(_) => "decline",
        }
    }
}

/// Paths and names are at most 4096 bytes.
const BYTES_MAX: usize = 4096;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(BYTES_MAX)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn get_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], KeyFileError> {
    let len = usize::from(r.u16()?);
    if len > BYTES_MAX {
        return Err(KeyFileError::Damaged);
    }
    r.slice(len)
}

/// `[#####.....] 50%  12.0 MiB of 24.0 MiB`: a progress bar for people.
pub fn bar(done: u64, total: u64) -> String {
    let pct = if total == 0 { 100 } else { (done.min(total) as u128 * 100 / total as u128) as usize };
    let filled = pct / 10;
    format!("[{}{}] {pct:>3}%  {} of {}", "#".repeat(filled), ".".repeat(10 - filled), size(done), size(total))
}

/// A size for people: bytes, KiB, MiB or GiB.
pub fn size(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

/// A file report in words, for the interactive front ends (progress: the bar).
pub fn describe(r: &FileReport) -> String {
    let short = |id: &u64| format!("{id:016x}");
    let name = |n: &str| crate::text::neutralise(n).into_owned();
    match r {
        FileReport::Offered { id, to, name: n, size: s, .. } => {
            format!("offered {} ({}) to {to} as file {}; uploading", name(n), size(*s), short(id))
        }
        FileReport::Progress { id, done, total } => format!("file {} {}", short(id), bar(*done, *total)),
        FileReport::Uploaded { id, .. } => format!("file {} is on the server; recipients can fetch it", short(id)),
        FileReport::Offer { id, from, room, name: n, size: s, sha256, verified } => format!(
            "file {} from {from}{}: {} ({}, sha256 {}){}; /get {} [DIR] or /decline {}",
            &short(id)[..8],
            room.as_ref().map(|r| format!(" in {r}")).unwrap_or_default(),
            name(n),
            size(*s),
            &crypto::hex(sha256)[..16],
            if *verified { "" } else { " [NOT VERIFIED]" },
            &short(id)[..8],
            &short(id)[..8],
        ),
        FileReport::Resumed { id, offset } => format!("file {} resumed at {}", short(id), size(*offset)),
        FileReport::Received { id, path, size: s, verified, .. } => format!(
            "file {} received: {} ({}, hash checked){}",
            short(id),
            name(&path.to_string_lossy()),
            size(*s),
            if *verified { "" } else { " [sender NOT VERIFIED]" }
        ),
        FileReport::Declined { id } => format!("declined file {}", short(id)),
        FileReport::List(list) if list.is_empty() => "no files".to_string(),
        FileReport::List(list) => list
            .iter()
            .map(|l| {
                let who =
                    if l.from.is_empty() { format!("to {}", l.to) } else { format!("from {} ({})", l.from, l.to) };
                format!(
                    "{}  {:<11} {} {who}  {}",
                    short(&l.id),
                    l.state,
                    name(&l.name),
                    if l.state == "downloading" || l.state == "uploading" { bar(l.done, l.size) } else { size(l.size) }
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sotto-transfer-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn names_from_the_network_are_made_safe() {
        for (raw, safe) in [
            ("photo.jpg", "photo.jpg"),
            ("../../etc/passwd", "passwd"),
            ("a/b/c.txt", "c.txt"),
            ("..\\..\\boot.ini", "boot.ini"),
            ("..", "__"),
            (".bashrc", "_bashrc"),
            ("", "file"),
            ("/", "file"),
            ("a\u{1b}[2Jb", "a_[2Jb"),
            ("x\u{202e}fdp.exe", "x_fdp.exe"),
            ("zero\u{200b}width", "zero_width"),
            ("nul\0byte", "nul_byte"),
        ] {
            assert_eq!(safe_name(raw), safe, "{raw:?}");
        }
        let long = "é".repeat(200);
        let s = safe_name(&long);
        assert!(s.len() <= NAME_MAX && s.chars().all(|c| c == 'é'), "cut at a character boundary");
    }

    #[test]
    fn a_taken_name_gets_a_number_and_the_old_file_is_untouched() {
        let d = tempdir("place");
        fs::write(d.join("a.txt"), b"old").unwrap();
        fs::write(d.join("a (1).txt"), b"older").unwrap();
        let part = d.join(".part");
        fs::write(&part, b"new").unwrap();
        let placed = place(&part, &d, "a.txt").unwrap();
        assert_eq!(placed, d.join("a (2).txt"));
        assert_eq!(fs::read(d.join("a.txt")).unwrap(), b"old");
        assert_eq!(fs::read(d.join("a (1).txt")).unwrap(), b"older");
        assert_eq!(fs::read(&placed).unwrap(), b"new");
        assert!(!part.exists(), "the part file became the file");
        fs::write(&part, b"x").unwrap();
        assert_eq!(place(&part, &d, "noext").unwrap(), d.join("noext"));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_manifest_survives_the_text_form_and_user_text_is_not_one() {
        let t = Transfer {
            id: 0x1234,
            up: true,
            target: Target::User("bob".into()),
            from: String::new(),
            peer_uid: 9,
            name: "f.txt".into(),
            size: 40_000,
            sha256: [3; 32],
            key: Zeroizing::new([4; 32]),
            verified: true,
            state: State::Offering,
            path: PathBuf::from("/tmp/f.txt"),
            saved: None,
            live: Live::default(),
        };
        let text = manifest_text(&t.manifest());
        assert!(is_manifest_text(&text));
        let (class, body) = payload_body(&text).unwrap();
        assert_eq!(class, opcodes::Class::M);
        assert_eq!(payload_text(&body).unwrap(), text, "body and text forms agree");
        let m = manifest_of(&text).unwrap();
        assert_eq!((m.file_id.get(), m.size.get(), m.chunk_count.get()), (0x1234, 40_000, 3));
        // An ordinary text stays a text both ways.
        let (_, body) = payload_body("hello").unwrap();
        assert_eq!(payload_text(&body).unwrap(), "hello");
        assert!(!is_manifest_text("hello") && manifest_of("hello").is_none());
        assert!(manifest_of(&format!("{MARKER}zz")).is_none());
    }

    #[test]
    fn the_list_roundtrips_through_its_file_and_damage_is_refused() {
        let mut tr = Transfers::new();
        tr.online = true;
        let mut m = FileManifest::new_zeroed();
        m.file_id.set(77);
        m.size.set(5);
        m.chunk_count.set(1);
        m.chunk_size.set(CHUNK as u32);
        m.key = [8; 32];
        m.set_name("x.bin").unwrap();
        tr.offered("bob", "alice", Some("lab"), &m, true);
        tr.offered("bob", "alice", Some("lab"), &m, true);
        let reports: Vec<_> = std::iter::from_fn(|| tr.poll_report()).collect();
        assert_eq!(reports.len(), 1, "an offer is reported once per file id");
        let bytes = tr.encode();
        let back = Transfers::decode(&bytes).unwrap();
        let t = &back.list[&77];
        assert_eq!((t.from.as_str(), t.name.as_str(), t.size, t.state), ("alice", "x.bin", 5, State::Offered));
        assert_eq!(t.target, Target::Room("lab".into()));
        assert_eq!(*t.key, [8; 32]);
        for cut in [1, 8, bytes.len() - 1] {
            assert!(Transfers::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.to_vec();
        bad[4 + 9] = 99; // the state byte
        assert!(Transfers::decode(&bad).is_err());
    }

    #[test]
    fn an_upload_keeps_at_most_the_window_unacknowledged() {
        let d = tempdir("window");
        let src = d.join("src");
        fs::write(&src, vec![5u8; 100 * CHUNK + 1]).unwrap();
        let mut tr = Transfers::new();
        tr.online = true;
        let id = tr.send(Target::User("bob".into()), 9, &src, 1).unwrap();
        let flof = tr.poll_transmit().unwrap();
        let offer = FileOffer::read_from_bytes(&flof[..]).unwrap();
        assert_eq!((offer.file_id.get(), offer.chunk_count.get(), offer.peer_uid.get()), (id, 101, 9));
        // The server has nothing yet: the answer starts the upload.
        let mut info = FileInfo::new(Status::Ok, 200, offer.hdr.msg_id.get(), 1);
        info.file_id.set(id);
        info.size.set(100 * CHUNK as u64 + 1);
        info.chunk_count.set(101);
        tr.handle_frame(info.as_bytes(), 2);
        let sent: Vec<_> = std::iter::from_fn(|| tr.poll_transmit()).collect();
        assert_eq!(sent.len(), WINDOW as usize, "a window of chunks, no more");
        let first = FileChunk::read_from_bytes(&sent[0][..]).unwrap();
        assert_eq!(first.index.get(), 0);
        // One acknowledgement opens the window by one chunk.
        let mut ack = StatusReply::new(Status::Ok, 200, first.hdr.msg_id.get(), 3);
        ack.request_opcode.set(opcodes::FLCH);
        tr.handle_frame(ack.as_bytes(), 3);
        let more: Vec<_> = std::iter::from_fn(|| tr.poll_transmit()).collect();
        assert_eq!(more.len(), 1);
        assert_eq!(FileChunk::read_from_bytes(&more[0][..]).unwrap().index.get(), WINDOW);
        // The chunk the receiver opens is the source's bytes.
        let keys = tr.list[&id].keys();
        let plain = keys.open(0, &first.iv, &first.tag, &first.data, CHUNK).unwrap();
        assert!(plain.iter().all(|&b| b == 5));
        let _ = fs::remove_dir_all(&d);
    }
}
