//! Local-state layer: a user's private keys at rest, `<home>/<server_tag>/<user>/identity.key`
//! (DESIGN §5), sealed in the user's key store (`store`, format in `vault`).
//!
//! Invariant: a key file is written only at registration, in a new key store
//! (every older file of that name is moved aside first, never overwritten),
//! and opens only with the KEK of that store, derived from the password.
//!
//! Plaintext: `u16 BE len(der) || PKCS#8 DER || X25519 secret (32)`.

use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::store::{self, Params, Store};
use crate::vault::{self, Kind};

/// The key file.
pub const KIND: Kind = Kind { file: "identity.key", magic: *b"SOTK", name: "identity", id: 1, what: "key" };

/// A user's private keys: the RSA identity key (PKCS#8 DER) and the X25519 encryption secret.
pub struct LocalKeys {
    /// RSA-2048 identity private key, PKCS#8 DER.
    pub identity_der: Zeroizing<Vec<u8>>,
    /// X25519 encryption secret.
    pub enc_secret: Zeroizing<[u8; 32]>,
}

/// Why a key file could not be written or read.
#[derive(Debug)]
pub enum KeyFileError {
    /// There is no key file at this path.
    NotFound(PathBuf),
    /// The file system refused.
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The key directory is not private.
    Unsafe(String),
    /// The file does not start like a key file.
    NotKeyFile,
    /// A key file of a format version this client does not know.
    UnsupportedVersion(u8),
    /// Authentication failed: wrong password, or the sealed part was altered.
    WrongPassword,
    /// The contents opened but are not well-formed.
    Damaged,
    /// Older than the generation the manifest records: rolled back.
    RolledBack {
        /// What the file holds.
        what: &'static str,
        /// The file's generation.
        found: u64,
        /// The manifest's.
        expected: u64,
    },
    /// The manifest records the file, but it is gone.
    Missing {
        /// What the file holds.
        what: &'static str,
        /// The manifest's generation for it.
        generation: u64,
    },
    /// The manifest records the file, but it does not open.
    Altered {
        /// What the file holds.
        what: &'static str,
        /// The manifest's generation for it.
        generation: u64,
    },
    /// The manifest asks for argon2id parameters out of bounds.
    Parameters(Params),
}

impl KeyFileError {
    /// True when the file must be left alone (and not written this session)
    /// rather than moved aside and started afresh: it could not be read, or the
    /// manifest shows it was rolled back, removed or altered.
    pub fn leave_alone(&self) -> bool {
        matches!(
            self,
            KeyFileError::Io { .. }
                | KeyFileError::Unsafe(_)
                | KeyFileError::RolledBack { .. }
                | KeyFileError::Missing { .. }
                | KeyFileError::Altered { .. }
        )
    }
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFileError::NotFound(p) => write!(f, "no key file at {}", p.display()),
            KeyFileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            KeyFileError::Unsafe(why) => f.write_str(why),
            KeyFileError::NotKeyFile => f.write_str("not a sotto key file"),
            KeyFileError::UnsupportedVersion(vault::VERSION_1) => f.write_str(
                "it was written by a protocol-1 client, which sealed it under the login password, and this client \
                 cannot open it: register the account again (older files are then kept aside as *.replaced-*)",
            ),
            KeyFileError::UnsupportedVersion(v) => write!(f, "file format version {v} is not supported by this client"),
            KeyFileError::WrongPassword => {
                f.write_str("it does not open with this password's key store (or it was altered)")
            }
            KeyFileError::Damaged => f.write_str("the file is damaged"),
            KeyFileError::RolledBack { what, found, expected } => write!(
                f,
                "the {what} file is older than the last one this client wrote (generation {found}, expected {expected}): \
                 it was rolled back or restored from a backup"
            ),
            KeyFileError::Missing { what, generation } => write!(
                f,
                "the {what} file is missing, though this client wrote it (generation {generation}): \
                 it was removed, or restored from a backup"
            ),
            KeyFileError::Altered { what, generation } => write!(
                f,
                "the {what} file does not open, though this client wrote it (generation {generation}): \
                 it was altered, damaged or replaced by another file"
            ),
            KeyFileError::Parameters(p) => write!(
                f,
                "the key store asks for argon2id parameters out of bounds (m = {} KiB, t = {}, p = {})",
                p.m_kib, p.t, p.p
            ),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Where a save put the keys, and what older files it found and moved aside.
pub struct Saved {
    /// The new key file.
    pub path: PathBuf,
    /// Older files of the same name (what they held, where they are now).
    pub moved_aside: Vec<(&'static str, PathBuf)>,
}

/// Names this server's directory: the first 8 bytes of SHA-256 of its public key, in hex.
pub fn server_tag() -> String {
    crate::conn::server_fingerprint()
}

/// `<home>/<server_tag>/<username>/identity.key`; `username` must be normalised (no `/`).
pub fn key_path(home: &Path, username: &str) -> PathBuf {
    vault::path(home, username, KIND)
}

fn encode(keys: &LocalKeys) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let der_len = u16::try_from(keys.identity_der.len()).map_err(|_| KeyFileError::Damaged)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + keys.identity_der.len() + 32));
    plain.extend_from_slice(&der_len.to_be_bytes());
    plain.extend_from_slice(&keys.identity_der);
    plain.extend_from_slice(&keys.enc_secret[..]);
    Ok(plain)
}

fn decode(plain: &[u8]) -> Result<LocalKeys, KeyFileError> {
    let (len, rest) = plain.split_first_chunk::<2>().ok_or(KeyFileError::Damaged)?;
    let (der, secret) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len))).ok_or(KeyFileError::Damaged)?;
    let secret: [u8; 32] = secret.try_into().map_err(|_| KeyFileError::Damaged)?;
    Ok(LocalKeys { identity_der: Zeroizing::new(der.to_vec()), enc_secret: Zeroizing::new(secret) })
}

/// At registration: moves every older file of `username` aside (an earlier
/// account of that name), makes a new key store (argon2id once) and seals the keys in it.
pub fn save(home: &Path, username: &str, password: &str, keys: &LocalKeys) -> Result<Saved, KeyFileError> {
    save_with(home, username, password, keys, store::DEFAULT_PARAMS)
}

fn save_with(
    home: &Path,
    username: &str,
    password: &str,
    keys: &LocalKeys,
    params: Params,
) -> Result<Saved, KeyFileError> {
    let plain = encode(keys)?;
    let dir = key_path(home, username).parent().map(Path::to_path_buf).unwrap_or_else(|| home.to_path_buf());
    crate::home::create_private_dir(&dir).map_err(|source| KeyFileError::Io { path: dir.clone(), source })?;
    crate::home::check_private(&dir).map_err(|e| KeyFileError::Unsafe(e.to_string()))?;
    let mut moved_aside = Vec::new();
    for kind in store::kinds().into_iter().chain([store::MANIFEST]) {
        let path = vault::path(home, username, kind);
        match vault::set_aside(home, username, kind) {
            Ok(Some(old)) => moved_aside.push((kind.what, old)),
            Ok(None) => {}
            Err(source) => return Err(KeyFileError::Io { path, source }),
        }
    }
    let mut store = Store::create_with(home, username, password, params)?;
    store.save(KIND, &plain)?;
    Ok(Saved { path: key_path(home, username), moved_aside })
}

/// Opens the key file in `store`.
pub fn load(store: &mut Store, home: &Path, username: &str) -> Result<LocalKeys, KeyFileError> {
    match store.load(KIND)? {
        Some(plain) => decode(&plain),
        None => Err(KeyFileError::NotFound(key_path(home, username))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const CHEAP: Params = Params { m_kib: 8, t: 1, p: 1 };

    fn sample() -> LocalKeys {
        LocalKeys {
            identity_der: Zeroizing::new((0..=255u8).cycle().take(1217).collect()),
            enc_secret: Zeroizing::new([9; 32]),
        }
    }

    fn temp_home() -> PathBuf {
        let home = std::env::temp_dir()
            .join(format!("sotto-keystore-test-{}", sotto::crypto::hex(&sotto::crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        home
    }

    #[test]
    fn refuses_damaged_plaintext_without_panic() {
        let plain = encode(&sample()).unwrap();
        assert_eq!(decode(&plain).unwrap().enc_secret, sample().enc_secret);
        for cut in [0, 1, 2, 100, plain.len() - 1] {
            assert!(decode(&plain[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[plain.as_slice(), b"x"].concat()).is_err());
    }

    #[test]
    fn saves_private_files_in_a_new_store_and_never_overwrites() {
        let home = temp_home();
        let first = save_with(&home, "alice", "password123", &sample(), CHEAP).unwrap();
        assert!(first.moved_aside.is_empty());
        assert_eq!(fs::metadata(&first.path).unwrap().permissions().mode() & 0o777, 0o600);
        let dir = first.path.parent().unwrap();
        assert_eq!(fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        let mut store = Store::open(&home, "alice", "password123").unwrap();
        assert_eq!(load(&mut store, &home, "alice").unwrap().enc_secret, sample().enc_secret);
        assert!(matches!(Store::open(&home, "alice", "password124"), Err(KeyFileError::WrongPassword)));
        store.save(crate::contacts::KIND, b"c").unwrap();

        let second = save_with(&home, "alice", "otherpassword", &sample(), CHEAP).unwrap();
        let moved: Vec<_> = second.moved_aside.iter().map(|(what, _)| *what).collect();
        assert_eq!(moved, ["key", "contacts", "manifest"]);
        let mut store = Store::open(&home, "alice", "otherpassword").unwrap();
        assert!(load(&mut store, &home, "alice").is_ok());
        assert!(store.load(crate::contacts::KIND).unwrap().is_none());
        assert_eq!(
            fs::read_dir(dir).unwrap().count(),
            5,
            "two key files, two manifests, a contacts file; no temporary file"
        );
        fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn names_a_protocol_1_key_file() {
        let home = temp_home();
        let mut store = Store::create_with(&home, "alice", "password123", CHEAP).unwrap();
        let mut v1 = b"SOTK\x01".to_vec();
        v1.extend_from_slice(&[0; 100]);
        fs::write(key_path(&home, "alice"), &v1).unwrap();
        let err = load(&mut store, &home, "alice").err().unwrap();
        assert!(matches!(err, KeyFileError::UnsupportedVersion(1)));
        assert!(err.to_string().contains("protocol-1") && err.to_string().contains("register the account again"));
        fs::remove_dir_all(&home).unwrap();
    }
}
