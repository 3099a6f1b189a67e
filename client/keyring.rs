//! Local-state layer: the keys of the rooms the user is in, at rest in
//! `<home>/<server_tag>/<user>/rooms` (DESIGN §6, §9), so that the room
//! password is asked only once.
//!
//! Invariant: the file is encrypted and authenticated like the key file, with
//! its own salt; it opens only with the user's password, and it is only ever
//! written whole (`home::write_atomic`, 0600). The storage key is derived once
//! per login and kept in memory (zeroized on drop), never the password.
//!
//! Format: `"SOTM" || version (1) || salt (16) || AeadKeys::seal(aad, plaintext)`,
//! keys = argon2id(password, salt) -> 48 bytes, aad = `"sotto/v1 room keys\0" || username`,
//! plaintext = `u16 BE count || count × (u8 len(name) || name || auth (32) || enc (16) || mac (32))`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use sotto::crypto::{self, AeadKeys};
use sotto::room::{self, RoomKeys};
use zeroize::Zeroizing;

use crate::keystore::{self, KeyFileError, SALT_LEN};

/// First bytes of a room keys file.
pub const MAGIC: [u8; 4] = *b"SOTM";
/// The format version this client writes and reads.
pub const VERSION: u8 = 1;
/// Name of the file inside the user's directory.
pub const FILE_NAME: &str = "rooms";
const AAD_LABEL: &[u8] = b"sotto/v1 room keys\0";
const ENTRY_KEYS: usize = 32 + 16 + 32;

/// The keys of every room the user is in, by canonical room name.
#[derive(Default)]
pub struct Keyring {
    rooms: BTreeMap<String, RoomKeys>,
    dirty: bool,
}

impl Keyring {
    /// No rooms.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// The keys of `room` (canonical name).
    pub fn get(&self, room: &str) -> Option<&RoomKeys> {
        self.rooms.get(room)
    }

    /// Keeps the keys of `room`, replacing older ones.
    pub fn insert(&mut self, room: &str, keys: RoomKeys) {
        let same = self.rooms.get(room).is_some_and(|k| {
            crypto::ct_eq(&k.auth[..], &keys.auth[..])
                && crypto::ct_eq(&k.content.enc[..], &keys.content.enc[..])
                && crypto::ct_eq(&k.content.mac[..], &keys.content.mac[..])
        });
        if !same {
            self.rooms.insert(room.to_string(), keys);
            self.dirty = true;
        }
    }

    /// Forgets the keys of `room`; true if there were any.
    pub fn remove(&mut self, room: &str) -> bool {
        let had = self.rooms.remove(room).is_some();
        self.dirty |= had;
        had
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(2 + self.rooms.len() * (1 + room::NAME_MAX + ENTRY_KEYS)));
        // At most one entry per valid room name, far below u16::MAX in practice; the count saturates.
        out.extend_from_slice(&u16::try_from(self.rooms.len()).unwrap_or(u16::MAX).to_be_bytes());
        for (name, keys) in self.rooms.iter().take(usize::from(u16::MAX)) {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&keys.auth[..]);
            out.extend_from_slice(&keys.content.enc[..]);
            out.extend_from_slice(&keys.content.mac[..]);
        }
        out
    }

    fn decode(mut plain: &[u8]) -> Result<Keyring, KeyFileError> {
        let count = take::<2>(&mut plain)?;
        let mut rooms = BTreeMap::new();
        for _ in 0..u16::from_be_bytes(*count) {
            let [len] = *take::<1>(&mut plain)?;
            let (name, rest) = plain.split_at_checked(usize::from(len)).ok_or(KeyFileError::Damaged)?;
            plain = rest;
            let name = std::str::from_utf8(name).map_err(|_| KeyFileError::Damaged)?;
            let name = room::normalize_name(name).ok().filter(|n| n == name).ok_or(KeyFileError::Damaged)?;
            let keys = take::<ENTRY_KEYS>(&mut plain)?;
            let mut material = Zeroizing::new([0u8; 48]);
            material.copy_from_slice(&keys[32..]);
            let mut auth = Zeroizing::new([0u8; 32]);
            auth.copy_from_slice(&keys[..32]);
            rooms.insert(name, RoomKeys { auth, content: AeadKeys::from_material(&material) });
        }
        if !plain.is_empty() {
            return Err(KeyFileError::Damaged);
        }
        Ok(Keyring { rooms, dirty: false })
    }
}

fn take<'a, const N: usize>(buf: &mut &'a [u8]) -> Result<&'a [u8; N], KeyFileError> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or(KeyFileError::Damaged)?;
    *buf = rest;
    Ok(head)
}

/// The key that seals the room keys file: argon2id of the password with the file's salt.
pub struct StorageKey {
    salt: [u8; SALT_LEN],
    keys: AeadKeys,
}

impl StorageKey {
    /// Derives the storage key for `salt` (slow: argon2id).
    pub fn derive(password: &str, salt: &[u8; SALT_LEN]) -> Result<StorageKey, KeyFileError> {
        Ok(StorageKey { salt: *salt, keys: keystore::file_keys(password, salt)? })
    }

    /// A storage key with a fresh salt, for a user without a room keys file yet.
    pub fn fresh(password: &str) -> Result<StorageKey, KeyFileError> {
        StorageKey::derive(password, &crypto::random())
    }

    /// The salt it was derived with (the other sealed files record it too).
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The AES and HMAC keys.
    pub fn aead(&self) -> &AeadKeys {
        &self.keys
    }
}

/// Encrypts the keyring of `username`.
pub fn seal(username: &str, key: &StorageKey, ring: &Keyring) -> Vec<u8> {
    keystore::framed(MAGIC, VERSION, &key.salt, &key.keys.seal(&aad(username), &ring.encode()))
}

/// Decrypts a room keys file; returns the storage key (for later saves) and the keyring.
pub fn unseal(username: &str, password: &str, bytes: &[u8]) -> Result<(StorageKey, Keyring), KeyFileError> {
    let (salt, sealed) = keystore::unframe(MAGIC, VERSION, bytes)?;
    let key = StorageKey::derive(password, salt)?;
    let plain = key.keys.open(&aad(username), sealed).map_err(|_| KeyFileError::WrongPassword)?;
    Ok((key, Keyring::decode(&plain)?))
}

/// `<home>/<server_tag>/<username>/rooms`.
pub fn path(home: &Path, username: &str) -> PathBuf {
    home.join(keystore::server_tag()).join(username).join(FILE_NAME)
}

/// Opens the room keys of `username`; without a file, an empty keyring and a fresh storage key.
pub fn load(home: &Path, username: &str, password: &str) -> Result<(StorageKey, Keyring), KeyFileError> {
    let path = path(home, username);
    match std::fs::read(&path) {
        Ok(bytes) => unseal(username, password, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((StorageKey::fresh(password)?, Keyring::new())),
        Err(source) => Err(KeyFileError::Io { path, source }),
    }
}

/// Writes the room keys of `username` whole.
pub fn save(home: &Path, username: &str, key: &StorageKey, ring: &Keyring) -> Result<(), KeyFileError> {
    let path = path(home, username);
    crate::home::write_atomic(&path, &seal(username, key, ring)).map_err(|source| KeyFileError::Io { path, source })
}

/// Renames the room keys file of `username`, if any, to `rooms.replaced-<unix s>-<random>`
/// (it belongs to an earlier account of that name, or does not open); the new name.
pub fn set_aside(home: &Path, username: &str) -> io::Result<Option<PathBuf>> {
    let path = path(home, username);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let aside = path.with_file_name(format!("{FILE_NAME}.replaced-{stamp}-{}", crypto::hex(&crypto::random::<2>())));
    std::fs::rename(&path, &aside)?;
    Ok(Some(aside))
}

fn aad(username: &str) -> Vec<u8> {
    [AAD_LABEL, username.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> RoomKeys {
        room::from_master("x", &[b; 32], &[b; 16])
    }

    fn ring() -> Keyring {
        let mut r = Keyring::new();
        r.insert("lobby", keys(1));
        r.insert("a-b_c", keys(2));
        r
    }

    #[test]
    fn roundtrips_and_keeps_the_salt() {
        let key = StorageKey::derive("password123", &[7; SALT_LEN]).unwrap();
        let sealed = seal("alice", &key, &ring());
        let (key2, back) = unseal("alice", "password123", &sealed).unwrap();
        assert_eq!(key2.salt, [7; SALT_LEN]);
        for name in ["lobby", "a-b_c"] {
            let (a, b) = (ring(), back.get(name).unwrap());
            assert_eq!(*a.get(name).unwrap().auth, *b.auth);
            assert_eq!(*a.get(name).unwrap().content.mac, *b.content.mac);
        }
        assert!(back.get("other").is_none());
        // Sealed again with the kept key: opens with the same password.
        assert!(unseal("alice", "password123", &seal("alice", &key2, &back)).is_ok());
    }

    #[test]
    fn refuses_wrong_password_other_user_and_damage() {
        let key = StorageKey::derive("password123", &[7; SALT_LEN]).unwrap();
        let sealed = seal("alice", &key, &ring());
        assert!(matches!(unseal("alice", "password124", &sealed), Err(KeyFileError::WrongPassword)));
        assert!(matches!(unseal("bob", "password123", &sealed), Err(KeyFileError::WrongPassword)));
        for at in [0, 4, 30, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            assert!(unseal("alice", "password123", &bad).is_err(), "flipped byte {at}");
        }
        assert!(unseal("alice", "password123", &sealed[..20]).is_err());
    }

    #[test]
    fn tracks_changes_and_saves_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let mut r = ring();
        assert!(r.take_dirty());
        r.insert("lobby", keys(1));
        assert!(!r.take_dirty(), "the same keys again change nothing");
        assert!(r.remove("lobby") && r.take_dirty());
        assert!(!r.remove("lobby") && !r.take_dirty());

        let home = std::env::temp_dir().join(format!("sotto-keyring-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        let (key, empty) = load(&home, "alice", "password123").unwrap();
        assert!(empty.get("a-b_c").is_none());
        save(&home, "alice", &key, &r).unwrap();
        assert_eq!(std::fs::metadata(path(&home, "alice")).unwrap().permissions().mode() & 0o777, 0o600);
        let (_, back) = load(&home, "alice", "password123").unwrap();
        assert!(back.get("a-b_c").is_some() && back.get("lobby").is_none());
        assert!(matches!(load(&home, "alice", "wrong-password"), Err(KeyFileError::WrongPassword)));
        let aside = set_aside(&home, "alice").unwrap().expect("a file to move");
        assert!(unseal("alice", "password123", &std::fs::read(aside).unwrap()).is_ok());
        assert!(set_aside(&home, "alice").unwrap().is_none());
        std::fs::remove_dir_all(&home).unwrap();
    }
}
