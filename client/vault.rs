//! Local-state layer: the sealed file format of the direct-message files
//! (`contacts`, `inbox`, `outbox`; DESIGN §9), and a bounds-checked reader for
//! their plaintexts.
//!
//! Invariant: these files are encrypted and authenticated with the storage key
//! of the room keys file (argon2id of the login password), each under its own
//! label, and only ever written whole (`home::write_atomic`, 0600). A file
//! sealed under another salt (the room keys file was replaced since) still
//! opens with the password; it is sealed again under the current key on the
//! next save. Malformed plaintext is an error, never a panic.
//!
//! Format: `magic (4) || version (1) || salt (16) || AeadKeys::seal(aad, plaintext)`,
//! aad = `label || username`.

use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keyring::StorageKey;
use crate::keystore::{KeyFileError, SALT_LEN};

/// The format version this client writes and reads.
pub const VERSION: u8 = 1;

/// One kind of sealed file.
#[derive(Clone, Copy)]
pub struct Kind {
    /// Name of the file inside the user's directory.
    pub file: &'static str,
    /// First bytes of the file.
    pub magic: [u8; 4],
    /// Binds the sealed part to this kind of file.
    pub label: &'static [u8],
}

/// `<home>/<server_tag>/<username>/<file>`.
pub fn path(home: &Path, username: &str, kind: Kind) -> PathBuf {
    home.join(crate::keystore::server_tag()).join(username).join(kind.file)
}

fn aad(kind: Kind, username: &str) -> Vec<u8> {
    [kind.label, username.as_bytes()].concat()
}

/// Encrypts `plain` for `username` under the storage key.
pub fn seal(kind: Kind, username: &str, key: &StorageKey, plain: &[u8]) -> Vec<u8> {
    let sealed = key.aead().seal(&aad(kind, username), plain);
    let mut out = Vec::with_capacity(4 + 1 + SALT_LEN + sealed.len());
    out.extend_from_slice(&kind.magic);
    out.push(VERSION);
    out.extend_from_slice(key.salt());
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts a sealed file; the storage key serves when the salt is its own,
/// otherwise the key is derived again from the password (slow: argon2id).
pub fn unseal(
    kind: Kind,
    username: &str,
    password: &str,
    key: &StorageKey,
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let (magic, rest) = bytes.split_first_chunk::<4>().ok_or(KeyFileError::NotKeyFile)?;
    if *magic != kind.magic {
        return Err(KeyFileError::NotKeyFile);
    }
    let (&version, rest) = rest.split_first().ok_or(KeyFileError::NotKeyFile)?;
    if version != VERSION {
        return Err(KeyFileError::UnsupportedVersion(version));
    }
    let (salt, sealed) = rest.split_first_chunk::<SALT_LEN>().ok_or(KeyFileError::Damaged)?;
    let other;
    let key = if salt == key.salt() {
        key
    } else {
        other = StorageKey::derive(password, salt)?;
        &other
    };
    key.aead().open(&aad(kind, username), sealed).map_err(|_| KeyFileError::WrongPassword)
}

/// Reads and opens the file; `None` when there is none yet.
pub fn load(
    home: &Path,
    username: &str,
    kind: Kind,
    password: &str,
    key: &StorageKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyFileError> {
    let path = path(home, username, kind);
    match std::fs::read(&path) {
        Ok(bytes) => unseal(kind, username, password, key, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyFileError::Io { path, source }),
    }
}

/// Seals `plain` and writes the file whole.
pub fn save(home: &Path, username: &str, kind: Kind, key: &StorageKey, plain: &[u8]) -> Result<(), KeyFileError> {
    let path = path(home, username, kind);
    crate::home::write_atomic(&path, &seal(kind, username, key, plain))
        .map_err(|source| KeyFileError::Io { path, source })
}

/// Renames the file, if any, to `<file>.replaced-<unix s>-<random>` (it belongs
/// to an earlier account of that name, or does not open); the new name.
pub fn set_aside(home: &Path, username: &str, kind: Kind) -> io::Result<Option<PathBuf>> {
    let path = path(home, username, kind);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rand = sotto::crypto::hex(&sotto::crypto::random::<2>());
    let aside = path.with_file_name(format!("{}.replaced-{stamp}-{rand}", kind.file));
    std::fs::rename(&path, &aside)?;
    Ok(Some(aside))
}

/// Reads a plaintext front to back; every shortfall is `Damaged`.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader(buf)
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], KeyFileError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(KeyFileError::Damaged)?;
        self.0 = rest;
        Ok(*head)
    }

    /// The next `n` bytes.
    pub fn slice(&mut self, n: usize) -> Result<&'a [u8], KeyFileError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(KeyFileError::Damaged)?;
        self.0 = rest;
        Ok(head)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, KeyFileError> {
        self.array::<1>().map(|[b]| b)
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, KeyFileError> {
        self.array().map(u16::from_be_bytes)
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, KeyFileError> {
        self.array().map(u32::from_be_bytes)
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, KeyFileError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A canonical user name: u8 length, then the name.
    pub fn user(&mut self) -> Result<String, KeyFileError> {
        let len = self.u8()?;
        let raw = std::str::from_utf8(self.slice(usize::from(len))?).map_err(|_| KeyFileError::Damaged)?;
        sotto::account::normalize_username(raw).ok().filter(|n| n == raw).ok_or(KeyFileError::Damaged)
    }

    /// Fails unless everything was read.
    pub fn end(self) -> Result<(), KeyFileError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(KeyFileError::Damaged)
        }
    }
}

/// Appends a user name as [`Reader::user`] reads it (names are at most 32 bytes).
pub fn put_user(out: &mut Vec<u8>, name: &str) {
    let name = name.get(..name.len().min(usize::from(u8::MAX))).unwrap_or_default();
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

/// A count as u32 (the stores are far smaller; the count saturates).
pub fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind { file: "test", magic: *b"SOTT", label: b"sotto/v1 test\0" };

    #[test]
    fn roundtrips_and_refuses_wrong_password_other_user_and_damage() {
        let key = StorageKey::derive("password123", &[7; SALT_LEN]).unwrap();
        let sealed = seal(KIND, "alice", &key, b"plaintext");
        assert_eq!(&unseal(KIND, "alice", "password123", &key, &sealed).unwrap()[..], b"plaintext");
        let other = StorageKey::derive("password124", &[7; SALT_LEN]).unwrap();
        assert!(matches!(unseal(KIND, "alice", "password124", &other, &sealed), Err(KeyFileError::WrongPassword)));
        assert!(matches!(unseal(KIND, "bob", "password123", &key, &sealed), Err(KeyFileError::WrongPassword)));
        let kind2 = Kind { label: b"sotto/v1 other\0", ..KIND };
        assert!(unseal(kind2, "alice", "password123", &key, &sealed).is_err(), "labels separate the files");
        for at in [0, 4, 10, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            assert!(unseal(KIND, "alice", "password123", &key, &bad).is_err(), "flipped byte {at}");
        }
        assert!(unseal(KIND, "alice", "password123", &key, &sealed[..12]).is_err());
    }

    #[test]
    fn opens_a_file_sealed_under_another_salt_with_the_password() {
        let old = StorageKey::derive("password123", &[1; SALT_LEN]).unwrap();
        let now = StorageKey::derive("password123", &[2; SALT_LEN]).unwrap();
        let sealed = seal(KIND, "alice", &old, b"kept");
        assert_eq!(&unseal(KIND, "alice", "password123", &now, &sealed).unwrap()[..], b"kept");
        assert!(unseal(KIND, "alice", "password999", &now, &sealed).is_err());
    }

    #[test]
    fn reader_reads_exactly_and_fails_short() {
        let mut buf = vec![1, 0, 2];
        put_user(&mut buf, "bob");
        put_count(&mut buf, 3);
        let mut r = Reader::new(&buf);
        assert_eq!((r.u8().unwrap(), r.u16().unwrap()), (1, 2));
        assert_eq!(r.user().unwrap(), "bob");
        assert_eq!(r.u32().unwrap(), 3);
        r.end().unwrap();
        let mut r = Reader::new(&[3, b'B', b'o', b'b']);
        assert!(r.user().is_err(), "not canonical");
        let mut r = Reader::new(&[1, 2]);
        assert!(r.u64().is_err());
        assert!(Reader::new(&[0]).end().is_err());
    }
}
