//! Account rules shared by client and server: user names, passwords,
//! passphrases, and the signed binding of a user's encryption key.
//!
//! Invariant: both sides normalise the same way, so what the client checks
//! is exactly what the server enforces. The client turns password and
//! passphrase into secrets (argon2id) before anything is sent: the server
//! never receives either.

use zeroize::Zeroizing;

/// Why a credential is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountError {
    /// User name length or characters.
    BadUsername,
    /// Password too short or too long.
    BadPassword,
    /// Passphrase is not three words.
    BadPassphrase,
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccountError::BadUsername => "user names are 3-32 characters of a-z, 0-9, '_', '.' and '-'",
            AccountError::BadPassword => "passwords are 10 to 128 bytes long",
            AccountError::BadPassphrase => "the passphrase is exactly three words (letters, at most 30 each)",
        })
    }
}

impl std::error::Error for AccountError {}

/// Shortest user name.
pub const USERNAME_MIN: usize = 3;
/// Longest user name.
pub const USERNAME_MAX: usize = 32;
/// Shortest password, in characters.
pub const PASSWORD_MIN: usize = 10;
/// Longest password, in bytes (its wire field).
pub const PASSWORD_MAX: usize = 128;
/// Longest passphrase word, in characters.
pub const WORD_MAX: usize = 30;
/// Longest normalised passphrase, in bytes (its wire field).
pub const PASSPHRASE_MAX: usize = 96;

/// Case-folds and checks a user name.
pub fn normalize_username(name: &str) -> Result<String, AccountError> {
    let name = name.to_ascii_lowercase();
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !ok_chars || !(USERNAME_MIN..=USERNAME_MAX).contains(&name.len()) {
        return Err(AccountError::BadUsername);
    }
    Ok(name)
}

/// Checks a password's length (characters at least, bytes at most).
pub fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < PASSWORD_MIN || password.len() > PASSWORD_MAX {
        return Err(AccountError::BadPassword);
    }
    Ok(())
}

/// Normalises a passphrase: three alphabetic words, lowercased, single spaces.
pub fn normalize_passphrase(phrase: &str) -> Result<String, AccountError> {
    let words: Vec<String> = phrase.split_whitespace().map(str::to_lowercase).collect();
    let good =
        words.len() == 3 && words.iter().all(|w| w.chars().all(char::is_alphabetic) && w.chars().count() <= WORD_MAX);
    let joined = words.join(" ");
    if !good || joined.len() > PASSPHRASE_MAX {
        return Err(AccountError::BadPassphrase);
    }
    Ok(joined)
}

/// Identifies the deployment in signed bindings: the first 16 bytes of
/// SHA-256 of a label and the deployment key (PROTOCOL.md §5). Not a secret:
/// it only keeps a binding made for one deployment from being shown in another.
pub fn deployment_id() -> [u8; 16] {
    deployment_id_for(&crate::build_info::DEPLOYMENT_KEY)
}

/// [`deployment_id`] of any deployment key (test vectors, other deployments).
pub fn deployment_id_for(deployment_key: &[u8; 32]) -> [u8; 16] {
    let h = crate::crypto::sha256(&[b"sotto/v1 deployment id\0", deployment_key]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    id
}

/// Length of the secrets the client derives from the password and the passphrase.
pub const SECRET_LEN: usize = 32;
/// argon2id memory (KiB) of the auth and passphrase secrets: the stored-hash cost.
pub const SECRET_KDF_KIB: u32 = crate::crypto::STORED_HASH_KIB;
/// argon2id passes of the auth and passphrase secrets.
pub const SECRET_KDF_T: u32 = 2;
const AUTH_SALT_LABEL: &[u8] = b"sotto/v1 auth salt\0";
const PASS_SALT_LABEL: &[u8] = b"sotto/v1 passphrase salt\0";

/// The salt of a user's auth or passphrase secret (PROTOCOL.md §5): the first
/// 16 bytes of `SHA-256(label || deployment_key || u8 len(username) || username)`.
pub fn secret_salt(label: &[u8], deployment_key: &[u8; 32], username: &str) -> [u8; 16] {
    let name = username.as_bytes();
    let len = [u8::try_from(name.len()).unwrap_or(u8::MAX)];
    let digest = crate::crypto::sha256(&[label, deployment_key, &len, name]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&digest[..16]);
    salt
}

fn derive_secret(
    label: &[u8],
    deployment_key: &[u8; 32],
    username: &str,
    secret: &[u8],
) -> Zeroizing<[u8; SECRET_LEN]> {
    let salt = secret_salt(label, deployment_key, username);
    let mut out = Zeroizing::new([0u8; SECRET_LEN]);
    // NOTE: constant, valid parameters and a 16-byte salt: argon2 cannot refuse them;
    // were it to, the all-zero secret simply fails at the server.
    let _ = crate::crypto::derive_key_with(secret, &salt, SECRET_KDF_KIB, SECRET_KDF_T, 1, &mut out[..]);
    out
}

/// The auth secret of `username` (normalised) and `password`, under a
/// deployment key: `argon2id(password, secret_salt("sotto/v1 auth salt\0", ..))`,
/// 19 MiB, t = 2, p = 1, 32 bytes. The only form of the password the server receives.
pub fn auth_secret_for(deployment_key: &[u8; 32], username: &str, password: &str) -> Zeroizing<[u8; SECRET_LEN]> {
    derive_secret(AUTH_SALT_LABEL, deployment_key, username, password.as_bytes())
}

/// The passphrase secret of `username` and its normalised passphrase, like
/// [`auth_secret_for`] under the label `"sotto/v1 passphrase salt\0"`.
pub fn pass_secret_for(deployment_key: &[u8; 32], username: &str, passphrase: &str) -> Zeroizing<[u8; SECRET_LEN]> {
    derive_secret(PASS_SALT_LABEL, deployment_key, username, passphrase.as_bytes())
}

/// [`auth_secret_for`] under this build's deployment key.
pub fn auth_secret(username: &str, password: &str) -> Zeroizing<[u8; SECRET_LEN]> {
    auth_secret_for(&crate::build_info::DEPLOYMENT_KEY, username, password)
}

/// [`pass_secret_for`] under this build's deployment key.
pub fn pass_secret(username: &str, passphrase: &str) -> Zeroizing<[u8; SECRET_LEN]> {
    pass_secret_for(&crate::build_info::DEPLOYMENT_KEY, username, passphrase)
}

/// The bytes a user's identity key signs to bind its X25519 encryption key
/// (PROTOCOL.md §5): label, deployment id, UID, length-prefixed user name,
/// encryption key. The server can present these keys under no other name,
/// UID or deployment: the signature would not verify.
pub fn enc_key_binding(deployment: &[u8; 16], uid: u64, username: &str, enc_pub: &[u8; 32]) -> Vec<u8> {
    let label = b"sotto/v1 encryption key\0";
    let mut m = Vec::with_capacity(label.len() + 16 + 8 + 1 + username.len() + 32);
    m.extend_from_slice(label);
    m.extend_from_slice(deployment);
    m.extend_from_slice(&uid.to_be_bytes());
    // User names are at most USERNAME_MAX (32) bytes: the length fits a byte.
    m.push(username.len().min(usize::from(u8::MAX)) as u8);
    m.extend_from_slice(username.as_bytes());
    m.extend_from_slice(enc_pub);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_folded_and_whitelisted() {
        assert_eq!(normalize_username("Alice_1.x-y").unwrap(), "alice_1.x-y");
        for bad in ["ab", "a b", "al/ce", "ålice", &"a".repeat(33), ""] {
            assert_eq!(normalize_username(bad), Err(AccountError::BadUsername), "{bad:?}");
        }
    }

    #[test]
    fn passphrases_are_three_words() {
        assert_eq!(normalize_passphrase("  Apple  banana cherry ").unwrap(), "apple banana cherry");
        for bad in ["one two", "one two three four", "one tw0 three", ""] {
            assert_eq!(normalize_passphrase(bad), Err(AccountError::BadPassphrase), "{bad:?}");
        }
    }

    #[test]
    fn passwords_need_ten_characters() {
        assert!(check_password("0123456789").is_ok());
        assert_eq!(check_password("012345678"), Err(AccountError::BadPassword));
        assert_eq!(check_password(&"x".repeat(129)), Err(AccountError::BadPassword));
    }
}
