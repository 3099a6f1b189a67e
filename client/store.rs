//! Local-state layer: a user's key store (DESIGN §5, §9): the key-encryption
//! key (KEK) that seals every local file, and the sealed `manifest` that
//! records each file's latest generation.
//!
//! Invariants:
//! - The KEK is `argon2id(password, salt)` at the parameters the manifest
//!   header records (by default m = 64 MiB, t = 3, p = 1; never weaker than
//!   [`FLOOR`] nor costlier than [`CEILING`], checked before any allocation),
//!   with a random per-user salt. It is derived once per login or registration
//!   and never leaves the machine; each kind of file has its own HKDF subkey
//!   (`vault::subkey`). Nothing the server receives (the auth and passphrase
//!   secrets, PROTOCOL.md §5) is derived from this salt or these parameters.
//! - A file is written first (a new generation, one more than the last), the
//!   manifest second; a file older than the manifest's generation for its kind
//!   is refused as rolled back, a file the manifest records as present but that
//!   is missing or does not open is refused as removed or altered: such a file
//!   is left alone and not written that session. A crash between the two
//!   writes leaves the file newer than the manifest, which is accepted.
//! - Undetectable: rolling back the manifest together with the files it
//!   covers (the whole directory, or a consistent part of an old copy).
//! - The salt is only in the manifest: files of this format found without
//!   one are named ([`Store::orphans`]) and a new key store is not made over them.
//! - A password change is staged beside the files and committed by one
//!   rename of the manifest (`reseal`): a crash leaves a store that opens
//!   with the old password or the new one, never neither.
//!
//! Manifest: `"SOTS" || version (1) = 2 || m (u32 KiB) || t (u32) || p (u32) ||
//! salt (16) || generation (u64) || sealed` as in `vault` (the 28 header bytes
//! in its associated data), plaintext `u8 count || count × (kind id (1) ||
//! generation (u64) || present (1))`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use sotto::crypto;
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::vault::{self, Kind, Reader};

mod reseal;

/// argon2id parameters of a key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// What new key stores use: 64 MiB, 3 passes, 1 lane (stronger than the
/// server's 19 MiB: the files may be copied and attacked offline).
pub const DEFAULT_PARAMS: Params = Params { m_kib: 64 * 1024, t: 3, p: 1 };
/// The weakest parameters a manifest may record: a manifest asking for less is
/// refused (it would let someone who can write the directory weaken the KEK).
#[cfg(not(test))]
pub const FLOOR: Params = DEFAULT_PARAMS;
/// Unit tests seal with cheap parameters.
#[cfg(test)]
pub const FLOOR: Params = Params { m_kib: 8, t: 1, p: 1 };
/// The costliest parameters a manifest may ask for (1 GiB, bounded before allocation).
pub const CEILING: Params = Params { m_kib: 1024 * 1024, t: 64, p: 16 };
/// Length of the KEK salt.
pub const SALT_LEN: usize = 16;
const HEADER_LEN: usize = 12 + SALT_LEN;
/// At most this many entries in a manifest (one per kind of file).
const MAX_ENTRIES: u8 = 32;
/// The largest sealed file read (checked before reading it): far above what
/// the stores hold (the inbox is bounded by `inbox::MSGS_MAX` and the marks'
/// limits; the outbox holds what the user typed and the server did not answer).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// The largest manifest: header, generation, 32 entries, IV, padding and tag.
const MAX_MANIFEST_BYTES: u64 = 1024;

/// Reads a file of at most `max` bytes; `Ok(None)` when there is none.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, KeyFileError> {
    use std::io::Read;
    let io_err = |source| KeyFileError::Io { path: path.to_path_buf(), source };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let len = file.metadata().map_err(io_err)?.len();
    if len > max {
        return Err(KeyFileError::Damaged);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // `take` bounds it also if the file grew since.
    file.take(max + 1).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > max {
        return Err(KeyFileError::Damaged);
    }
    Ok(Some(bytes))
}

/// The manifest file.
pub const MANIFEST: Kind = Kind { file: "manifest", magic: *b"SOTS", name: "manifest", id: 0, what: "manifest" };

/// Every kind of file the manifest covers.
pub fn kinds() -> [Kind; 9] {
    [
        crate::keystore::KIND,
        crate::keyring::KIND,
        crate::pins::KIND,
        crate::contacts::KIND,
        crate::inbox::KIND,
        crate::outbox::KIND,
        crate::ratchets::KIND,
        crate::transfer::KIND,
        crate::resume::KIND,
    ]
}

/// What the manifest knows of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The latest generation written.
    generation: u64,
    /// False once the file was set aside (then no file is fine).
    present: bool,
}

/// An open key store: its KEK and the generations of its files.
pub struct Store {
    home: PathBuf,
    user: String,
    params: Params,
    salt: [u8; SALT_LEN],
    kek: Zeroizing<[u8; 32]>,
    entries: BTreeMap<u8, Entry>,
    generation: u64,
    /// A password change staged beside the files, until committed or aborted (`reseal`).
    staged: Option<Box<reseal::Staged>>,
}

fn derive(password: &str, salt: &[u8; SALT_LEN], params: Params) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    crypto::derive_key_with(password.as_bytes(), salt, params.m_kib, params.t, params.p, &mut kek[..])
        .map_err(|_| KeyFileError::Damaged)?;
    Ok(kek)
}

fn within(params: Params) -> bool {
    (FLOOR.m_kib..=CEILING.m_kib).contains(&params.m_kib)
        && (FLOOR.t..=CEILING.t).contains(&params.t)
        && (FLOOR.p..=CEILING.p).contains(&params.p)
}

/// A manifest opened with a password: what a [`Store`] is made of.
struct Opened {
    params: Params,
    salt: [u8; SALT_LEN],
    kek: Zeroizing<[u8; 32]>,
    entries: BTreeMap<u8, Entry>,
    generation: u64,
}

/// Checks a manifest's parameters (before any allocation), derives the KEK
/// (argon2id) and opens it.
fn open_manifest(bytes: &[u8], username: &str, password: &str) -> Result<Opened, KeyFileError> {
    let f = vault::unframe(MANIFEST, HEADER_LEN, bytes)?;
    let mut r = Reader::new(f.header);
    let params = Params { m_kib: r.u32()?, t: r.u32()?, p: r.u32()? };
    let salt: [u8; SALT_LEN] = r.array()?;
    r.end()?;
    if !within(params) {
        return Err(KeyFileError::Parameters(params));
    }
    let kek = derive(password, &salt, params)?;
    let key = vault::subkey(&kek, MANIFEST);
    let plain = key
        .open(&vault::aad(MANIFEST, username, f.generation, f.header), f.sealed)
        .map_err(|_| KeyFileError::WrongPassword)?;
    let entries = decode_entries(&plain)?;
    Ok(Opened { params, salt, kek, entries, generation: f.generation })
}

/// A sealed manifest: the header (parameters, salt), then the entries.
fn manifest_bytes(
    user: &str,
    params: Params,
    salt: &[u8; SALT_LEN],
    kek: &[u8; 32],
    entries: &BTreeMap<u8, Entry>,
    generation: u64,
) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    for v in [params.m_kib, params.t, params.p] {
        header.extend_from_slice(&v.to_be_bytes());
    }
    header.extend_from_slice(salt);
    let mut plain = Vec::with_capacity(1 + entries.len() * 10);
    plain.push(entries.len().min(usize::from(MAX_ENTRIES)) as u8);
    for (id, e) in entries.iter().take(usize::from(MAX_ENTRIES)) {
        plain.push(*id);
        plain.extend_from_slice(&e.generation.to_be_bytes());
        plain.push(u8::from(e.present));
    }
    let key = vault::subkey(kek, MANIFEST);
    vault::seal(MANIFEST, user, &key, generation, &header, &plain)
}

impl Store {
    /// A new, empty key store for `username` with a fresh salt (slow: argon2id); writes its manifest.
    pub fn create(home: &Path, username: &str, password: &str) -> Result<Store, KeyFileError> {
        Store::create_with(home, username, password, DEFAULT_PARAMS)
    }

    /// [`Store::create`] with explicit parameters.
    pub fn create_with(home: &Path, username: &str, password: &str, params: Params) -> Result<Store, KeyFileError> {
        let dir = vault::path(home, username, MANIFEST).parent().map(Path::to_path_buf).unwrap_or_default();
        crate::home::create_private_dir(&dir).map_err(|source| KeyFileError::Io { path: dir.clone(), source })?;
        crate::home::check_private(&dir).map_err(|e| KeyFileError::Unsafe(e.to_string()))?;
        // A password change staged under an earlier key store of the name never applies to this one.
        reseal::remove_staged_files(home, username)?;
        let salt = crypto::random();
        let kek = derive(password, &salt, params)?;
        let opened = Opened { params, salt, kek, entries: BTreeMap::new(), generation: 0 };
        let mut store = Store::from_opened(home, username, opened);
        store.write_manifest()?;
        Ok(store)
    }

    fn from_opened(home: &Path, username: &str, o: Opened) -> Store {
        Store {
            home: home.to_path_buf(),
            user: username.to_string(),
            params: o.params,
            salt: o.salt,
            kek: o.kek,
            entries: o.entries,
            generation: o.generation,
            staged: None,
        }
    }

    /// Opens the key store of `username` (slow: argon2id once, twice after a
    /// crash during a password change). `NotFound` without a manifest;
    /// `WrongPassword` when it does not open.
    ///
    /// Call it with a password the server has just accepted: a password change
    /// that a crash left staged (`reseal`) is completed when `password` is the
    /// staged one, and dropped when it is the current one.
    pub fn open(home: &Path, username: &str, password: &str) -> Result<Store, KeyFileError> {
        Store::open_as(home, username, password, true)
    }

    /// As [`Store::open`] before the server accepted `password` (a login that
    /// resumes with a stored ticket): `NotFound` when a password change is
    /// staged, which only the server's answer to a full login can settle.
    pub fn open_settled(home: &Path, username: &str, password: &str) -> Result<Store, KeyFileError> {
        Store::open_as(home, username, password, false)
    }

    fn open_as(home: &Path, username: &str, password: &str, settle: bool) -> Result<Store, KeyFileError> {
        let path = vault::path(home, username, MANIFEST);
        let Some(bytes) = read_bounded(&path, MAX_MANIFEST_BYTES)? else {
            return Err(KeyFileError::NotFound(path));
        };
        let next_path = reseal::next_path(home, username, MANIFEST);
        if let Some(next) = read_bounded(&next_path, MAX_MANIFEST_BYTES)? {
            if !settle {
                return Err(KeyFileError::NotFound(next_path));
            }
            if let Ok(o) = open_manifest(&next, username, password) {
                // The staged password: the server took the change, which completes here.
                reseal::rename_durable(&next_path, &path)?;
                let mut store = Store::from_opened(home, username, o);
                store.settle_leftovers()?;
                return Ok(store);
            }
            let o = open_manifest(&bytes, username, password)?;
            // The current password: the change did not take; it is dropped (the manifest first).
            reseal::remove_durable(&next_path)?;
            let mut store = Store::from_opened(home, username, o);
            store.settle_leftovers()?;
            return Ok(store);
        }
        let mut store = Store::from_opened(home, username, open_manifest(&bytes, username, password)?);
        store.settle_leftovers()?;
        Ok(store)
    }

    /// What the files of `username` sealed in this format hold, when there is
    /// no manifest: they were sealed under a key store whose salt only the
    /// lost manifest had, so a new one would never open them.
    pub fn orphans(home: &Path, username: &str) -> Vec<&'static str> {
        kinds()
            .into_iter()
            .filter(|&kind| {
                use std::io::Read;
                let mut head = [0u8; 5];
                let read =
                    std::fs::File::open(vault::path(home, username, kind)).and_then(|mut f| f.read_exact(&mut head));
                read.is_ok() && head[..4] == kind.magic && head[4] == vault::VERSION
            })
            .map(|kind| kind.what)
            .collect()
    }

    /// The argon2id parameters of the KEK.
    #[cfg(test)]
    pub fn params(&self) -> Params {
        self.params
    }

    /// Reads and opens the file of `kind`; `None` when there is none (and none is expected).
    pub fn load(&mut self, kind: Kind) -> Result<Option<Zeroizing<Vec<u8>>>, KeyFileError> {
        let path = vault::path(&self.home, &self.user, kind);
        let entry = self.entries.get(&kind.id).copied();
        let recorded = entry.filter(|e| e.present);
        let bytes = match (read_bounded(&path, MAX_FILE_BYTES), recorded) {
            (Ok(Some(bytes)), _) => bytes,
            (Ok(None), None) => return Ok(None),
            (Ok(None), Some(e)) => return Err(KeyFileError::Missing { what: kind.what, generation: e.generation }),
            (Err(KeyFileError::Damaged), Some(e)) => {
                return Err(KeyFileError::Altered { what: kind.what, generation: e.generation })
            }
            (Err(e), _) => return Err(e),
        };
        match vault::unseal(kind, &self.user, &vault::subkey(&self.kek, kind), &bytes) {
            Ok((generation, plain)) => {
                if let Some(e) = entry {
                    if generation < e.generation {
                        return Err(KeyFileError::RolledBack {
                            what: kind.what,
                            found: generation,
                            expected: e.generation,
                        });
                    }
                }
                // Newer than the manifest: a crash came between the file and the manifest.
                self.entries.insert(kind.id, Entry { generation, present: true });
                Ok(Some(plain))
            }
            Err(e) => match entry {
                Some(en) if en.present => Err(KeyFileError::Altered { what: kind.what, generation: en.generation }),
                _ => Err(e),
            },
        }
    }

    /// Seals `plain` as the next generation of `kind`, writes it, then the manifest.
    pub fn save(&mut self, kind: Kind, plain: &[u8]) -> Result<(), KeyFileError> {
        // A staged password change gets the same content first: it is never older than the files.
        self.save_staged(kind, plain)?;
        let generation = self.entries.get(&kind.id).map_or(0, |e| e.generation).saturating_add(1);
        let sealed = vault::seal(kind, &self.user, &vault::subkey(&self.kek, kind), generation, &[], plain);
        let path = vault::path(&self.home, &self.user, kind);
        crate::home::write_atomic(&path, &sealed).map_err(|source| KeyFileError::Io { path, source })?;
        self.entries.insert(kind.id, Entry { generation, present: true });
        self.write_manifest()
    }

    /// Moves the file of `kind` aside (`<file>.replaced-*`), recording first
    /// that none is expected; the generation counter goes on from where it was.
    pub fn set_aside(&mut self, kind: Kind) -> Result<Option<PathBuf>, KeyFileError> {
        self.set_aside_staged(kind)?;
        if let Some(e) = self.entries.get_mut(&kind.id).filter(|e| e.present) {
            e.present = false;
            self.write_manifest()?;
        }
        let path = vault::path(&self.home, &self.user, kind);
        vault::set_aside(&self.home, &self.user, kind).map_err(|source| KeyFileError::Io { path, source })
    }

    fn write_manifest(&mut self) -> Result<(), KeyFileError> {
        self.generation = self.generation.saturating_add(1);
        let sealed = manifest_bytes(&self.user, self.params, &self.salt, &self.kek, &self.entries, self.generation);
        let path = vault::path(&self.home, &self.user, MANIFEST);
        crate::home::write_atomic(&path, &sealed).map_err(|source| KeyFileError::Io { path, source })
    }

    /// The KEK, for tests that seal files by hand.
    #[cfg(test)]
    pub fn kek_for_tests(&self) -> Zeroizing<[u8; 32]> {
        self.kek.clone()
    }
}

fn decode_entries(plain: &[u8]) -> Result<BTreeMap<u8, Entry>, KeyFileError> {
    let mut r = Reader::new(plain);
    let count = r.u8()?;
    if count > MAX_ENTRIES {
        return Err(KeyFileError::Damaged);
    }
    let mut entries = BTreeMap::new();
    for _ in 0..count {
        let id = r.u8()?;
        let generation = r.u64()?;
        let present = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(KeyFileError::Damaged),
        };
        if id == MANIFEST.id || entries.insert(id, Entry { generation, present }).is_some() {
            return Err(KeyFileError::Damaged);
        }
    }
    r.end()?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Params = Params { m_kib: 8, t: 1, p: 1 };

    fn temp_home() -> PathBuf {
        let home = std::env::temp_dir().join(format!("sotto-store-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        home
    }

    #[test]
    fn records_its_parameters_and_salt_in_the_manifest_header() {
        let home = temp_home();
        let store = Store::create(&home, "alice", "password123").unwrap();
        assert_eq!(store.params(), Params { m_kib: 65536, t: 3, p: 1 });
        let bytes = std::fs::read(vault::path(&home, "alice", MANIFEST)).unwrap();
        assert_eq!(&bytes[..5], b"SOTS\x02");
        assert_eq!(&bytes[5..17], &[0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1], "m = 65536 KiB, t = 3, p = 1");
        assert_eq!(&bytes[17..33], &store.salt[..]);
        let again = Store::open(&home, "alice", "password123").unwrap();
        assert_eq!((again.params(), again.salt), (store.params(), store.salt));
        assert!(matches!(Store::open(&home, "alice", "password124"), Err(KeyFileError::WrongPassword)));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn refuses_parameters_out_of_bounds_before_deriving() {
        let home = temp_home();
        Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        let path = vault::path(&home, "alice", MANIFEST);
        let good = std::fs::read(&path).unwrap();
        for (at, value) in [(5, 0u32), (5, CEILING.m_kib + 1), (9, 0), (9, 65), (13, 0), (13, 17)] {
            let mut bad = good.clone();
            bad[at..at + 4].copy_from_slice(&value.to_be_bytes());
            std::fs::write(&path, &bad).unwrap();
            assert!(matches!(Store::open(&home, "alice", "password123"), Err(KeyFileError::Parameters(_))), "{at}");
        }
        // Parameters within bounds but not those sealed: the MAC fails.
        let mut other = good.clone();
        other[8] ^= 1;
        std::fs::write(&path, &other).unwrap();
        assert!(matches!(Store::open(&home, "alice", "password123"), Err(KeyFileError::WrongPassword)));
        std::fs::write(&path, &good[..30]).unwrap();
        assert!(Store::open(&home, "alice", "password123").is_err());
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn refuses_a_rolled_back_file() {
        let home = temp_home();
        let mut store = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        let kind = crate::contacts::KIND;
        store.save(kind, b"first").unwrap();
        let old = std::fs::read(vault::path(&home, "alice", kind)).unwrap();
        store.save(kind, b"second").unwrap();
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        assert_eq!(&again.load(kind).unwrap().unwrap()[..], b"second");

        std::fs::write(vault::path(&home, "alice", kind), &old).unwrap();
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        let err = again.load(kind).unwrap_err();
        assert!(matches!(err, KeyFileError::RolledBack { found: 1, expected: 2, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the contacts file is older than the last one this client wrote (generation 1, expected 2): \
             it was rolled back or restored from a backup"
        );
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn refuses_a_file_of_another_kind_copied_over() {
        let home = temp_home();
        let mut store = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        let (contacts, inbox) = (crate::contacts::KIND, crate::inbox::KIND);
        store.save(contacts, b"contacts").unwrap();
        store.save(inbox, b"inbox").unwrap();
        let copied = std::fs::read(vault::path(&home, "alice", contacts)).unwrap();
        std::fs::write(vault::path(&home, "alice", inbox), &copied).unwrap();
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        assert!(matches!(again.load(inbox), Err(KeyFileError::Altered { what: "received messages", .. })));
        // Even with the magic rewritten, the subkey and the MAC are those of the kind.
        let mut disguised = copied.clone();
        disguised[..4].copy_from_slice(&inbox.magic);
        std::fs::write(vault::path(&home, "alice", inbox), &disguised).unwrap();
        assert!(matches!(again.load(inbox), Err(KeyFileError::Altered { .. })));
        let key = vault::subkey(&again.kek, inbox);
        assert!(matches!(vault::unseal(inbox, "alice", &key, &disguised), Err(KeyFileError::WrongPassword)));
        assert_eq!(&again.load(contacts).unwrap().unwrap()[..], b"contacts");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn a_crash_between_file_and_manifest_is_accepted_and_a_removed_file_is_not() {
        let home = temp_home();
        let mut store = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        let kind = crate::outbox::KIND;
        store.save(kind, b"one").unwrap();
        let manifest = vault::path(&home, "alice", MANIFEST);
        let before = std::fs::read(&manifest).unwrap();
        store.save(kind, b"two").unwrap();
        // As if the process died after the file and before the manifest.
        std::fs::write(&manifest, &before).unwrap();
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        assert_eq!(&again.load(kind).unwrap().unwrap()[..], b"two");
        again.save(kind, b"three").unwrap();
        assert_eq!(&Store::open(&home, "alice", "password123").unwrap().load(kind).unwrap().unwrap()[..], b"three");

        // A file the manifest records, removed: refused (it would reset what it holds).
        std::fs::remove_file(vault::path(&home, "alice", kind)).unwrap();
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        assert!(matches!(again.load(kind), Err(KeyFileError::Missing { generation: 3, .. })));
        // Set aside by the client itself: none is expected, and an older one coming back is refused.
        let mut store = Store::open(&home, "alice", "password123").unwrap();
        store.save(kind, b"four").unwrap();
        let four = std::fs::read(vault::path(&home, "alice", kind)).unwrap();
        store.save(kind, b"five").unwrap();
        assert!(store.set_aside(kind).unwrap().is_some());
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        assert!(again.load(kind).unwrap().is_none());
        std::fs::write(vault::path(&home, "alice", kind), &four).unwrap();
        assert!(matches!(again.load(kind), Err(KeyFileError::RolledBack { .. })));
        std::fs::remove_dir_all(&home).unwrap();
    }

    /// tests/vectors/keystore.txt, computed independently of this code.
    #[test]
    fn opens_the_vector_key_store() {
        let text = include_str!("../tests/vectors/keystore.txt");
        let field = |name: &str| {
            let line = text.lines().find(|l| l.split_once(" = ").is_some_and(|(k, _)| k == name));
            line.and_then(|l| l.split_once(" = ")).map(|(_, v)| v.to_owned()).unwrap_or_else(|| panic!("no {name}"))
        };
        let bytes = |name: &str| crypto::unhex(&field(name)).unwrap_or_else(|| panic!("{name} is not hex"));
        let (password, user) = (field("password"), field("username"));
        let salt: [u8; SALT_LEN] = bytes("salt").try_into().unwrap();
        let params = Params {
            m_kib: field("m_kib").parse().unwrap(),
            t: field("t").parse().unwrap(),
            p: field("p").parse().unwrap(),
        };
        assert_eq!(params, DEFAULT_PARAMS);
        let kek = derive(&password, &salt, params).unwrap();
        assert_eq!(crypto::hex(&kek[..]), field("kek"));
        for (kind, name) in [(MANIFEST, "manifest_subkey"), (crate::contacts::KIND, "contacts_subkey")] {
            let k = vault::subkey(&kek, kind);
            assert_eq!(crypto::hex(&[&k.enc[..], &k.mac[..]].concat()), field(name), "{name}");
        }
        let home = temp_home();
        crate::home::create_private_dir(vault::path(&home, &user, MANIFEST).parent().unwrap()).unwrap();
        std::fs::write(vault::path(&home, &user, MANIFEST), bytes("manifest")).unwrap();
        std::fs::write(vault::path(&home, &user, crate::contacts::KIND), bytes("contacts")).unwrap();
        let mut store = Store::open(&home, &user, &password).unwrap();
        assert_eq!((store.params(), store.salt, store.generation), (params, salt, 3));
        assert_eq!(store.entries.get(&4), Some(&Entry { generation: 7, present: true }));
        assert_eq!(store.load(crate::contacts::KIND).unwrap().unwrap().to_vec(), bytes("contacts_plaintext"));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn names_sealed_files_left_without_their_manifest() {
        let home = temp_home();
        let mut store = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        assert!(Store::orphans(&home, "alice").is_empty());
        store.save(crate::contacts::KIND, b"c").unwrap();
        std::fs::write(vault::path(&home, "alice", crate::inbox::KIND), b"SOTI\x01 protocol 1").unwrap();
        std::fs::remove_file(vault::path(&home, "alice", MANIFEST)).unwrap();
        assert!(matches!(Store::open(&home, "alice", "password123"), Err(KeyFileError::NotFound(_))));
        assert_eq!(Store::orphans(&home, "alice"), ["contacts"], "protocol-1 files are not orphans");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn files_of_another_key_store_do_not_open() {
        let home = temp_home();
        let mut first = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        first.save(crate::pins::KIND, b"pins").unwrap();
        // A new store (same password, new salt): the old file is not recorded and does not open.
        let mut second = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        assert!(matches!(second.load(crate::pins::KIND), Err(KeyFileError::WrongPassword)));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
