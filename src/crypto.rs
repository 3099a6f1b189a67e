//! Crypto primitives: AES-128-CBC, HMAC-SHA256, HKDF-SHA256, argon2id, randomness.
//!
//! Invariant: every MAC comparison here is constant-time, and every
//! authenticated decryption checks the tag before touching the ciphertext.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;
type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// AES block size.
pub const BLOCK: usize = 16;
/// HMAC-SHA256 tag size.
pub const TAG: usize = 32;

/// Any failure of authenticated decryption: bad tag, bad length or bad padding alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("authentication failed")
    }
}

impl std::error::Error for Invalid {}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Parses lowercase or uppercase hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // NOTE(expect): getrandom fails only when the kernel has no entropy source;
    // continuing without randomness would be worse than stopping.
    getrandom::getrandom(buf).expect("operating system randomness unavailable");
}

/// `N` random bytes.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fill_random(&mut b);
    b
}

/// Constant-time equality (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // NOTE(expect): HMAC accepts keys of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Checks an HMAC-SHA256 tag in constant time.
pub fn hmac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut expected = hmac(key, parts);
    let ok = ct_eq(&expected, tag);
    zeroize::Zeroize::zeroize(&mut expected);
    ok
}

/// HKDF-SHA256 extract-and-expand into `out` (at most 255 * 32 bytes).
pub fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm);
    // NOTE(expect): every caller asks for far less than 255 * 32 bytes.
    hk.expand_multi_info(info, out).expect("HKDF output length within bounds");
}

/// AES-128-CBC encryption in place; `buf` must be whole blocks.
pub fn cbc_encrypt(key: &[u8; 16], iv: &[u8; 16], buf: &mut [u8]) -> Result<(), Invalid> {
    if buf.len() % BLOCK != 0 {
        return Err(Invalid);
    }
    let len = buf.len();
    Aes128CbcEnc::new(key.into(), iv.into()).encrypt_padded_mut::<NoPadding>(buf, len).map_err(|_| Invalid)?;
    Ok(())
}

/// AES-128-CBC decryption in place; `buf` must be whole blocks.
pub fn cbc_decrypt(key: &[u8; 16], iv: &[u8; 16], buf: &mut [u8]) -> Result<(), Invalid> {
    if buf.len() % BLOCK != 0 {
        return Err(Invalid);
    }
    Aes128CbcDec::new(key.into(), iv.into()).decrypt_padded_mut::<NoPadding>(buf).map_err(|_| Invalid)?;
    Ok(())
}

/// An AES-128 key for many CBC operations under one key (the record layer).
/// The key schedule is redone per call: with AES-NI it costs a few dozen
/// nanoseconds, far less than keeping both schedules per connection would
/// cost in memory. Zeroized on drop.
#[derive(Clone)]
pub struct Cbc(Zeroizing<[u8; 16]>);

impl Cbc {
    pub fn new(key: &[u8; 16]) -> Cbc {
        Cbc(Zeroizing::new(*key))
    }

    /// CBC encryption in place; `buf` must be whole blocks.
    pub fn encrypt(&self, iv: &[u8; 16], buf: &mut [u8]) -> Result<(), Invalid> {
        cbc_encrypt(&self.0, iv, buf)
    }

    /// CBC decryption in place; `buf` must be whole blocks.
    pub fn decrypt(&self, iv: &[u8; 16], buf: &mut [u8]) -> Result<(), Invalid> {
        cbc_decrypt(&self.0, iv, buf)
    }

    /// The raw block cipher on one block: `E_K(block)`.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        aes::Aes128::new((&*self.0).into()).encrypt_block(block.into());
    }

    /// The encryption key schedule, expanded once for a run of blocks (the
    /// multi-buffer seal, `record::seal_many`).
    pub fn block_encryptor(&self) -> BlockEnc {
        BlockEnc(aes::Aes128Enc::new((&*self.0).into()))
    }
}

/// An expanded AES-128 encryption key (encrypt only: no decryption
/// schedule is computed). Zeroized on drop (the `aes` crate's `zeroize`).
pub struct BlockEnc(aes::Aes128Enc);

impl BlockEnc {
    /// `E_K(block)` in place.
    #[inline]
    pub fn encrypt(&self, block: &mut [u8; 16]) {
        self.0.encrypt_block(block.into());
    }
}

/// A keyed HMAC-SHA256 state: the key schedule (the inner and outer pads'
/// compressions) runs once, each tag starts from a copy. Boxed, so that a
/// session's keys stay small where they are moved around. Zeroized on drop.
#[derive(Clone)]
pub struct MacKey(Box<HmacSha256>);

impl MacKey {
    pub fn new(key: &[u8]) -> MacKey {
        // NOTE(expect): HMAC accepts keys of any length.
        MacKey(Box::new(<HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length")))
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = (*self.0).clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Checks a tag in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut expected = self.tag(parts);
        let ok = ct_eq(&expected, tag);
        zeroize::Zeroize::zeroize(&mut expected);
        ok
    }
}

// hmac 0.12 offers no zeroize (its 0.13 does; the RustCrypto family stays on
// the digest 0.10 generation here), so MacKey wipes the keyed state itself.
// The SAFETY argument below needs that the state has no drop glue: checked.
const _: () = assert!(!core::mem::needs_drop::<HmacSha256>());

impl Drop for MacKey {
    fn drop(&mut self) {
        // SAFETY: `p` comes from the exclusive `&mut` of the boxed state, so it
        // is valid, aligned and unaliased for `size_of::<HmacSha256>()` bytes.
        // In the versions Cargo.lock pins (hmac 0.12.1, digest 0.10.7,
        // sha2 0.10, block-buffer 0.10.4) `HmacSha256` is
        // `CoreWrapper<HmacCore<Sha256>>`: two `[u32; 8]` chaining states with
        // `u64` block counts, a `[u8; 64]` buffer and a `u8` position; no
        // pointer, reference, enum or `NonZero` field, so all-zero bytes are a
        // valid value of it (writing padding bytes is allowed too). After this,
        // the value is only dropped, which reads nothing: it has no drop glue
        // (the `needs_drop` assertion above). Volatile writes keep the compiler
        // from eliding the wipe of memory about to be freed.
        unsafe {
            let p = (&mut *self.0 as *mut HmacSha256).cast::<u8>();
            for i in 0..core::mem::size_of::<HmacSha256>() {
                core::ptr::write_volatile(p.add(i), 0);
            }
        }
    }
}

/// A pair of keys for AES-128-CBC + HMAC-SHA256, zeroized on drop.
#[derive(Clone)]
pub struct AeadKeys {
    /// AES-128 key.
    pub enc: Zeroizing<[u8; 16]>,
    /// HMAC-SHA256 key.
    pub mac: Zeroizing<[u8; 32]>,
}

impl AeadKeys {
    /// Splits 48 bytes of key material: 16 for AES, 32 for HMAC.
    pub fn from_material(okm: &[u8; 48]) -> AeadKeys {
        let mut enc = Zeroizing::new([0u8; 16]);
        let mut mac = Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&okm[..16]);
        mac.copy_from_slice(&okm[16..]);
        AeadKeys { enc, mac }
    }

    /// Encrypt-then-MAC of any length with PKCS#7 padding:
    /// `iv || ct || HMAC(mac, aad || iv || ct)`. Used for data at rest.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let iv: [u8; 16] = random();
        let pad = BLOCK - plaintext.len() % BLOCK;
        let mut out = Vec::with_capacity(BLOCK + plaintext.len() + pad + TAG);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        out.resize(BLOCK + plaintext.len() + pad, pad as u8);
        // NOTE(expect): the body was just padded to whole blocks.
        cbc_encrypt(&self.enc, &iv, &mut out[BLOCK..]).expect("whole blocks");
        let tag = hmac(&self.mac[..], &[aad, &out]);
        out.extend_from_slice(&tag);
        out
    }

    /// Reverses [`AeadKeys::seal`]; one error for every failure.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Invalid> {
        if sealed.len() < BLOCK + BLOCK + TAG || (sealed.len() - TAG) % BLOCK != 0 {
            return Err(Invalid);
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG);
        if !hmac_verify(&self.mac[..], &[aad, body], tag) {
            return Err(Invalid);
        }
        let (iv, ct) = body.split_at(BLOCK);
        let iv: [u8; 16] = iv.try_into().map_err(|_| Invalid)?;
        let mut pt = Zeroizing::new(ct.to_vec());
        cbc_decrypt(&self.enc, &iv, &mut pt)?;
        let pad = usize::from(*pt.last().ok_or(Invalid)?);
        if pad == 0 || pad > BLOCK || pad > pt.len() {
            return Err(Invalid);
        }
        let keep = pt.len() - pad;
        pt.truncate(keep);
        Ok(pt)
    }
}

/// argon2id parameters for stored password and passphrase hashes (OWASP: 19 MiB, t=2, p=1).
fn argon2_hasher() -> argon2::Argon2<'static> {
    // NOTE(expect): constant parameters, valid by construction.
    let params = argon2::Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Memory cost, KiB, of the stored hashes made from now on in this process
/// (the default is [`STORED_HASH_KIB`]; see [`set_stored_hash_kib`]).
static STORED_KIB: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(STORED_HASH_KIB);

/// The memory cost of stored hashes: 19 MiB (OWASP).
pub const STORED_HASH_KIB: u32 = 19 * 1024;

/// Lowers or raises the memory cost of stored hashes made from now on (at
/// least 8 KiB). Existing hashes keep their parameters, which their PHC
/// strings carry. sottod's `--kdf-memory`, for benchmark set-ups only.
pub fn set_stored_hash_kib(kib: u32) {
    STORED_KIB.store(kib.max(8), std::sync::atomic::Ordering::Relaxed);
}

/// The memory cost, KiB, of stored hashes made from now on (see [`set_stored_hash_kib`]).
pub fn stored_hash_kib() -> u32 {
    STORED_KIB.load(std::sync::atomic::Ordering::Relaxed)
}

/// The memory cost, KiB, an argon2 PHC string carries (its `m=` parameter).
pub fn phc_kib(phc: &str) -> Option<u32> {
    let hash = argon2::password_hash::PasswordHash::new(phc).ok()?;
    argon2::Params::try_from(&hash).ok().map(|p| p.m_cost())
}

/// Hashes a secret into an argon2id PHC string with a fresh salt, at the
/// memory cost of [`stored_hash_kib`].
pub fn hash_secret(secret: &[u8]) -> Result<String, argon2::password_hash::Error> {
    hash_secret_kib(secret, stored_hash_kib())
}

/// Hashes a secret into an argon2id PHC string with a fresh salt, at `kib` KiB (t = 2, p = 1).
pub fn hash_secret_kib(secret: &[u8], kib: u32) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&random::<16>())?;
    if kib == STORED_HASH_KIB {
        return Ok(argon2_hasher().hash_password(secret, &salt)?.to_string());
    }
    let params = argon2::Params::new(kib, 2, 1, None).map_err(argon2::password_hash::Error::from)?;
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    Ok(hasher.hash_password(secret, &salt)?.to_string())
}

/// Verifies a secret against a PHC string (constant-time inside argon2).
pub fn verify_secret(phc: &str, secret: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(h) => argon2_hasher().verify_password(secret, &h).is_ok(),
        Err(_) => false,
    }
}

/// Derives `out.len()` key bytes from `secret` and `salt` with argon2id at
/// explicit parameters (memory KiB, passes, lanes); out-of-range parameters are an error.
pub fn derive_key_with(
    secret: &[u8],
    salt: &[u8],
    m_kib: u32,
    t: u32,
    p: u32,
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let params = argon2::Params::new(m_kib, t, p, Some(out.len()))?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(secret, salt, out)
}

/// Derives `out.len()` key bytes from a password and salt with argon2id
/// (the stored-hash parameters), for room keys.
pub fn derive_key(password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    argon2_hasher().hash_password_into(password, salt, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cheaper_stored_hash_carries_its_parameters_and_verifies() {
        let phc = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let params = argon2::Params::new(8, 2, 1, None).unwrap();
            let salt = SaltString::encode_b64(&[1u8; 16]).unwrap();
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        assert!(phc.contains("m=8,"), "{phc}");
        assert!(verify_secret(&phc, b"pw"));
        assert!(!verify_secret(&phc, b"other"));
    }

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let keys = AeadKeys::from_material(&[7u8; 48]);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let pt = vec![0xa5u8; len];
            let mut sealed = keys.seal(b"aad", &pt);
            assert_eq!(&keys.open(b"aad", &sealed).unwrap()[..], &pt[..], "len {len}");
            assert_eq!(keys.open(b"other", &sealed), Err(Invalid));
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
            assert_eq!(keys.open(b"aad", &sealed), Err(Invalid));
        }
    }

    #[test]
    fn argon2_hash_verifies_only_the_secret() {
        let phc = hash_secret(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_secret(&phc, b"correct horse"));
        assert!(!verify_secret(&phc, b"correct horsf"));
        assert!(!verify_secret("not a phc", b"x"));
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(hex(&[0, 0xff, 0x1a]), "00ff1a");
        assert_eq!(unhex("00ff1A"), Some(vec![0, 0xff, 0x1a]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
