//! Local-state layer: a user's private keys at rest, `<home>/<server_tag>/<user>/identity.key`
//! (DESIGN §5).
//!
//! Invariant: a key file is only ever written whole (temp file 0600, fsync,
//! rename, fsync of the directory), never replaces an existing key file, and
//! opens only with the password it was sealed with.
//!
//! Format: `"SOTK" || version (1) || salt (16) || AeadKeys::seal(aad, plaintext)`,
//! keys = argon2id(password, salt) -> 48 bytes, aad = `"sotto/v1 key file\0" || username`,
//! plaintext = `u16 BE len(der) || PKCS#8 DER || X25519 secret (32)`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sotto::crypto::{self, AeadKeys};
use zeroize::Zeroizing;

/// First bytes of every key file.
pub const MAGIC: [u8; 4] = *b"SOTK";
/// The format version this client writes and reads.
pub const VERSION: u8 = 1;
/// Name of the key file inside the user's directory.
pub const FILE_NAME: &str = "identity.key";
/// Length of a key file's salt.
pub const SALT_LEN: usize = 16;
const AAD_LABEL: &[u8] = b"sotto/v1 key file\0";

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
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFileError::NotFound(p) => write!(f, "no key file at {}", p.display()),
            KeyFileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            KeyFileError::Unsafe(why) => f.write_str(why),
            KeyFileError::NotKeyFile => f.write_str("not a sotto key file"),
            KeyFileError::UnsupportedVersion(v) => write!(f, "key file version {v} is not supported by this client"),
            KeyFileError::WrongPassword => {
                f.write_str("the key file does not open with this password (or it was altered)")
            }
            KeyFileError::Damaged => f.write_str("the key file is damaged"),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Where a save put the keys, and where an older key file it found was moved.
#[derive(Debug)]
pub struct Saved {
    /// The new key file.
    pub path: PathBuf,
    /// An earlier key file of the same name, kept under a new name.
    pub moved_aside: Option<PathBuf>,
}

/// Names this server's directory: the first 8 bytes of SHA-256 of its public key, in hex.
pub fn server_tag() -> String {
    crate::conn::server_fingerprint()
}

/// `<home>/<server_tag>/<username>/identity.key`; `username` must be normalised (no `/`).
pub fn key_path(home: &Path, username: &str) -> PathBuf {
    home.join(server_tag()).join(username).join(FILE_NAME)
}

/// Encrypts `keys` for `username` under `password` with a fresh salt.
pub fn seal(username: &str, password: &str, keys: &LocalKeys) -> Result<Vec<u8>, KeyFileError> {
    seal_with_salt(username, password, keys, &crypto::random())
}

fn seal_with_salt(
    username: &str,
    password: &str,
    keys: &LocalKeys,
    salt: &[u8; SALT_LEN],
) -> Result<Vec<u8>, KeyFileError> {
    let der_len = u16::try_from(keys.identity_der.len()).map_err(|_| KeyFileError::Damaged)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + keys.identity_der.len() + 32));
    plain.extend_from_slice(&der_len.to_be_bytes());
    plain.extend_from_slice(&keys.identity_der);
    plain.extend_from_slice(&keys.enc_secret[..]);
    let aead = file_keys(password, salt)?;
    Ok(framed(MAGIC, VERSION, salt, &aead.seal(&aad(username), &plain)))
}

/// A sealed file: magic, version, salt, then the sealed body (this file and
/// the room keys file share the layout).
pub fn framed(magic: [u8; 4], version: u8, salt: &[u8; SALT_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 1 + SALT_LEN + sealed.len());
    out.extend_from_slice(&magic);
    out.push(version);
    out.extend_from_slice(salt);
    out.extend_from_slice(sealed);
    out
}

/// Splits a file made by [`framed`] into its salt and sealed body, checking magic and version.
pub fn unframe(magic: [u8; 4], version: u8, bytes: &[u8]) -> Result<(&[u8; SALT_LEN], &[u8]), KeyFileError> {
    let (found, rest) = bytes.split_first_chunk::<4>().ok_or(KeyFileError::NotKeyFile)?;
    if *found != magic {
        return Err(KeyFileError::NotKeyFile);
    }
    let (&found, rest) = rest.split_first().ok_or(KeyFileError::NotKeyFile)?;
    if found != version {
        return Err(KeyFileError::UnsupportedVersion(found));
    }
    rest.split_first_chunk::<SALT_LEN>().ok_or(KeyFileError::Damaged)
}

/// Decrypts a key file's bytes; any damage is an error, never a panic.
pub fn unseal(username: &str, password: &str, bytes: &[u8]) -> Result<LocalKeys, KeyFileError> {
    let (salt, sealed) = unframe(MAGIC, VERSION, bytes)?;
    let plain = file_keys(password, salt)?.open(&aad(username), sealed).map_err(|_| KeyFileError::WrongPassword)?;
    let (len, rest) = plain.split_first_chunk::<2>().ok_or(KeyFileError::Damaged)?;
    let (der, secret) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len))).ok_or(KeyFileError::Damaged)?;
    let secret: [u8; 32] = secret.try_into().map_err(|_| KeyFileError::Damaged)?;
    Ok(LocalKeys { identity_der: Zeroizing::new(der.to_vec()), enc_secret: Zeroizing::new(secret) })
}

/// Writes the key file for `username` atomically; an existing one is moved aside, never overwritten.
pub fn save(home: &Path, username: &str, password: &str, keys: &LocalKeys) -> Result<Saved, KeyFileError> {
    let path = key_path(home, username);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| home.to_path_buf());
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Io { path, source }
    };
    crate::home::create_private_dir(&dir).map_err(io_err(&dir))?;
    crate::home::check_private(&dir).map_err(|e| KeyFileError::Unsafe(e.to_string()))?;
    let sealed = seal(username, password, keys)?;

    let tmp = dir.join(format!(".{FILE_NAME}.tmp-{}-{}", std::process::id(), crypto::hex(&crypto::random::<4>())));
    let written = write_synced(&tmp, &sealed);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Another account's keys (an earlier registration of this name, e.g. before
    // the server's data was reset) are kept, not replaced.
    let moved_aside = if fs::symlink_metadata(&path).is_ok() {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let aside = dir.join(format!("{FILE_NAME}.replaced-{stamp}-{}", crypto::hex(&crypto::random::<2>())));
        if let Err(e) = fs::rename(&path, &aside) {
            let _ = fs::remove_file(&tmp);
            return Err(KeyFileError::Io { path, source: e });
        }
        Some(aside)
    } else {
        None
    };
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(KeyFileError::Io { path, source: e });
    }
    File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
    Ok(Saved { path, moved_aside })
}

/// Reads and decrypts the key file of `username`.
pub fn load(home: &Path, username: &str, password: &str) -> Result<LocalKeys, KeyFileError> {
    let path = key_path(home, username);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyFileError::NotFound(path)),
        Err(source) => return Err(KeyFileError::Io { path, source }),
    };
    unseal(username, password, &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| KeyFileError::Io { path: path.to_path_buf(), source })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| KeyFileError::Io { path: path.to_path_buf(), source })
}

/// The 48 key bytes of a file sealed under `password`: argon2id(password, salt).
pub fn file_keys(password: &str, salt: &[u8; SALT_LEN]) -> Result<AeadKeys, KeyFileError> {
    let mut okm = Zeroizing::new([0u8; 48]);
    crypto::derive_key(password.as_bytes(), salt, &mut okm[..]).map_err(|_| KeyFileError::Damaged)?;
    Ok(AeadKeys::from_material(&okm))
}

fn aad(username: &str) -> Vec<u8> {
    [AAD_LABEL, username.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> LocalKeys {
        LocalKeys {
            identity_der: Zeroizing::new((0..=255u8).cycle().take(1217).collect()),
            enc_secret: Zeroizing::new([9; 32]),
        }
    }

    fn temp_home() -> PathBuf {
        let home = std::env::temp_dir().join(format!("sotto-keystore-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        home
    }

    #[test]
    fn roundtrips() {
        let sealed = seal("alice", "password123", &sample()).unwrap();
        let keys = unseal("alice", "password123", &sealed).unwrap();
        assert_eq!(keys.identity_der, sample().identity_der);
        assert_eq!(keys.enc_secret, sample().enc_secret);
    }

    #[test]
    fn refuses_wrong_password_and_other_user() {
        let sealed = seal("alice", "password123", &sample()).unwrap();
        assert!(matches!(unseal("alice", "password124", &sealed), Err(KeyFileError::WrongPassword)));
        assert!(matches!(unseal("bob", "password123", &sealed), Err(KeyFileError::WrongPassword)));
    }

    #[test]
    fn refuses_truncated_or_corrupt_files_without_panic() {
        let sealed = seal_with_salt("alice", "password123", &sample(), &[1; SALT_LEN]).unwrap();
        for cut in [0, 3, 4, 5, 20, 21, 22, 60, sealed.len() - 1] {
            assert!(unseal("alice", "password123", &sealed[..cut]).is_err(), "cut at {cut}");
        }
        for at in [0, 4, 5, 30, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x40;
            assert!(unseal("alice", "password123", &bad).is_err(), "flipped byte {at}");
        }
        let mut v2 = sealed.clone();
        v2[4] = 2;
        assert!(matches!(unseal("alice", "password123", &v2), Err(KeyFileError::UnsupportedVersion(2))));
        // The room keys file shares the layout under its own magic: not taken for a key file.
        let mut rooms = sealed.clone();
        rooms[..4].copy_from_slice(&crate::keyring::MAGIC);
        assert!(matches!(unseal("alice", "password123", &rooms), Err(KeyFileError::NotKeyFile)));
    }

    #[test]
    fn saves_private_files_and_never_overwrites() {
        let home = temp_home();
        assert!(matches!(load(&home, "alice", "password123"), Err(KeyFileError::NotFound(_))));
        let first = save(&home, "alice", "password123", &sample()).unwrap();
        assert!(first.moved_aside.is_none());
        assert_eq!(fs::metadata(&first.path).unwrap().permissions().mode() & 0o777, 0o600);
        let dir = first.path.parent().unwrap();
        assert_eq!(fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load(&home, "alice", "password123").unwrap().enc_secret, sample().enc_secret);

        let second = save(&home, "alice", "otherpassword", &sample()).unwrap();
        let aside = second.moved_aside.expect("the first file is kept");
        assert!(unseal("alice", "password123", &fs::read(aside).unwrap()).is_ok());
        assert!(load(&home, "alice", "otherpassword").is_ok());
        assert_eq!(fs::read_dir(dir).unwrap().count(), 2, "no temporary file left behind");
        fs::remove_dir_all(&home).unwrap();
    }
}
