//! Local-state layer: the sealed file format shared by every file of a
//! user's key store (`identity.key`, `rooms`, `pins`, `contacts`, `inbox`,
//! `outbox`, `sessions`, `transfers`, `ticket`, and the `manifest`; DESIGN §5, §9; docs/CLIENT.md "Home
//! directory"), and a bounds-checked reader for their plaintexts.
//!
//! Invariant: a sealed file opens only under the subkey of its own kind, for
//! its own user, at the generation its header states: the MAC covers all of
//! them, as length-prefixed fields, so a file cannot be passed off as another
//! kind, another user's, or another generation. Every failure is an error,
//! never a panic; nothing is allocated from a length read in a file.
//!
//! Format: `magic (4) || version (1) = 2 || header (kind-specific; empty but
//! for the manifest) || generation (u64 BE) || iv (16) || AES-128-CBC(PKCS#7(plaintext)) || tag (32)`,
//! tag = HMAC-SHA256(mac key, aad || iv || ciphertext), aad = `lp("sotto/v2 sealed file")
//! || lp(username) || lp(kind name) || lp(generation, 8 bytes BE) || lp(header)`, `lp(x) = u32 BE len(x) || x`;
//! the 16 AES and 32 HMAC key bytes are `HKDF-SHA256(salt = "", ikm = KEK,
//! info = "sotto/v2 file key\0" || kind name)` (see `store` for the KEK).

use std::io;
use std::path::{Path, PathBuf};

use sotto::crypto::{self, AeadKeys};
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;

/// The format version this client writes and reads.
pub const VERSION: u8 = 2;
/// The first format (protocol 1: sealed under the login password itself).
pub const VERSION_1: u8 = 1;
const AAD_LABEL: &[u8] = b"sotto/v2 sealed file";
const SUBKEY_LABEL: &[u8] = b"sotto/v2 file key\0";

/// One kind of sealed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// Name of the file inside the user's directory.
    pub file: &'static str,
    /// First bytes of the file.
    pub magic: [u8; 4],
    /// Binds the file to its kind: in its subkey and its MAC.
    pub name: &'static str,
    /// Its number in the manifest (0: the manifest itself).
    pub id: u8,
    /// What it holds, for messages ("the contacts file ...").
    pub what: &'static str,
}

/// `<home>/<server_tag>/<username>/<file>`.
pub fn path(home: &Path, username: &str, kind: Kind) -> PathBuf {
    home.join(crate::keystore::server_tag()).join(username).join(kind.file)
}

/// The 48 key bytes of one kind of file, from the key-encryption key.
pub fn subkey(kek: &[u8; 32], kind: Kind) -> AeadKeys {
    let mut okm = Zeroizing::new([0u8; 48]);
    crypto::hkdf(&[], kek, &[SUBKEY_LABEL, kind.name.as_bytes()], &mut okm[..]);
    AeadKeys::from_material(&okm)
}

fn lp(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(field);
}

/// The associated data of a sealed file: length-prefixed label, user, kind, generation and header.
pub fn aad(kind: Kind, username: &str, generation: u64, header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_LABEL.len() + username.len() + kind.name.len() + 8 + header.len() + 20);
    lp(&mut out, AAD_LABEL);
    lp(&mut out, username.as_bytes());
    lp(&mut out, kind.name.as_bytes());
    lp(&mut out, &generation.to_be_bytes());
    lp(&mut out, header);
    out
}

/// Seals `plain` as generation `generation` of `kind` for `username`.
pub fn seal(kind: Kind, username: &str, key: &AeadKeys, generation: u64, header: &[u8], plain: &[u8]) -> Vec<u8> {
    let sealed = key.seal(&aad(kind, username, generation, header), plain);
    let mut out = Vec::with_capacity(4 + 1 + header.len() + 8 + sealed.len());
    out.extend_from_slice(&kind.magic);
    out.push(VERSION);
    out.extend_from_slice(header);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&sealed);
    out
}

/// A sealed file split into its parts, before the MAC is checked.
pub struct Framed<'a> {
    /// The kind-specific header.
    pub header: &'a [u8],
    /// The generation the file claims (authenticated once opened).
    pub generation: u64,
    /// IV, ciphertext and tag.
    pub sealed: &'a [u8],
}

/// Splits a file of `kind` with a header of `header_len` bytes, checking magic and version.
pub fn unframe(kind: Kind, header_len: usize, bytes: &[u8]) -> Result<Framed<'_>, KeyFileError> {
    if bytes.starts_with(crate::pins::TEXT_HEADER.as_bytes()) {
        // The protocol-1 pins file was text.
        return Err(KeyFileError::UnsupportedVersion(VERSION_1));
    }
    let (magic, rest) = bytes.split_first_chunk::<4>().ok_or(KeyFileError::NotKeyFile)?;
    if *magic != kind.magic {
        return Err(KeyFileError::NotKeyFile);
    }
    let (&version, rest) = rest.split_first().ok_or(KeyFileError::NotKeyFile)?;
    if version != VERSION {
        return Err(KeyFileError::UnsupportedVersion(version));
    }
    let (header, rest) = rest.split_at_checked(header_len).ok_or(KeyFileError::Damaged)?;
    let (generation, sealed) = rest.split_first_chunk::<8>().ok_or(KeyFileError::Damaged)?;
    Ok(Framed { header, generation: u64::from_be_bytes(*generation), sealed })
}

/// Opens a file of `kind` (without a header) for `username`; its generation and plaintext.
pub fn unseal(
    kind: Kind,
    username: &str,
    key: &AeadKeys,
    bytes: &[u8],
) -> Result<(u64, Zeroizing<Vec<u8>>), KeyFileError> {
    let f = unframe(kind, 0, bytes)?;
    let plain =
        key.open(&aad(kind, username, f.generation, f.header), f.sealed).map_err(|_| KeyFileError::WrongPassword)?;
    Ok((f.generation, plain))
}

/// Renames the file, if any, to `<file>.replaced-<unix s>-<random>` (it belongs
/// to an earlier account of that name, or does not open); the new name.
pub fn set_aside(home: &Path, username: &str, kind: Kind) -> io::Result<Option<PathBuf>> {
    let path = path(home, username, kind);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rand = crypto::hex(&crypto::random::<2>());
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

    const KIND: Kind = Kind { file: "test", magic: *b"SOTX", name: "test", id: 99, what: "test" };

    #[test]
    fn roundtrips_and_refuses_other_key_user_kind_generation_and_damage() {
        let key = subkey(&[7; 32], KIND);
        let sealed = seal(KIND, "alice", &key, 5, &[], b"plaintext");
        let (generation, plain) = unseal(KIND, "alice", &key, &sealed).unwrap();
        assert_eq!((generation, &plain[..]), (5, &b"plaintext"[..]));
        let other = subkey(&[8; 32], KIND);
        assert!(matches!(unseal(KIND, "alice", &other, &sealed), Err(KeyFileError::WrongPassword)));
        assert!(matches!(unseal(KIND, "bob", &key, &sealed), Err(KeyFileError::WrongPassword)));
        // Another kind under the same KEK: another subkey, another name in the MAC.
        let kind2 = Kind { name: "other", ..KIND };
        assert!(unseal(kind2, "alice", &subkey(&[7; 32], kind2), &sealed).is_err(), "kinds are separate");
        assert!(unseal(kind2, "alice", &key, &sealed).is_err(), "the kind name is in the MAC");
        // The generation is authenticated: rewriting it in the header breaks the MAC.
        let mut older = sealed.clone();
        older[5..13].copy_from_slice(&4u64.to_be_bytes());
        assert!(matches!(unseal(KIND, "alice", &key, &older), Err(KeyFileError::WrongPassword)));
        for at in [0, 4, 10, 20, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            assert!(unseal(KIND, "alice", &key, &bad).is_err(), "flipped byte {at}");
        }
        for cut in [0, 3, 4, 5, 12, 13, 40, sealed.len() - 1] {
            assert!(unseal(KIND, "alice", &key, &sealed[..cut]).is_err(), "cut at {cut}");
        }
        let mut v1 = sealed.clone();
        v1[4] = VERSION_1;
        assert!(matches!(unseal(KIND, "alice", &key, &v1), Err(KeyFileError::UnsupportedVersion(1))));
    }

    #[test]
    fn associated_data_is_length_prefixed() {
        // "ab" + "c" and "a" + "bc" must not give the same associated data.
        let k1 = Kind { name: "c", ..KIND };
        let k2 = Kind { name: "bc", ..KIND };
        assert_ne!(aad(k1, "ab", 1, &[]), aad(k2, "a", 1, &[]));
        let a = aad(KIND, "alice", 0x0102, b"h");
        let mut want = Vec::new();
        for field in [&b"sotto/v2 sealed file"[..], b"alice", b"test", &0x0102u64.to_be_bytes(), b"h"] {
            want.extend_from_slice(&(field.len() as u32).to_be_bytes());
            want.extend_from_slice(field);
        }
        assert_eq!(a, want);
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
