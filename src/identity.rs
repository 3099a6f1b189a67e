//! RSA-2048 identity keys: generation, encoding, RSA-PSS-SHA256 signing and verification.
//!
//! Invariant: private-key operations go through `ring` (constant-time); the
//! `rsa` crate only generates, encodes, parses and verifies (RUSTSEC-2023-0071
//! concerns its private-key operations). Nothing here decrypts with RSA.

use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

/// Modulus and signature size of an RSA-2048 key.
pub const RSA_BYTES: usize = 256;
/// The only public exponent accepted.
pub const EXPONENT: u32 = 65537;

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a parseable key of the expected encoding.
    Malformed(String),
    /// Not RSA-2048 with exponent 65537.
    WrongShape,
    /// The signing library refused the operation.
    SignFailed,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Malformed(why) => write!(f, "malformed key: {why}"),
            KeyError::WrongShape => f.write_str("not an RSA-2048 key with exponent 65537"),
            KeyError::SignFailed => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for KeyError {}

/// An RSA-2048 private key used only to sign (RSA-PSS-SHA256), through `ring`.
pub struct Signer {
    pair: ring::signature::RsaKeyPair,
    public: RsaPublicKey,
    rng: ring::rand::SystemRandom,
    /// HKDF-SHA256 of the private key's PKCS#8 DER: a secret only the
    /// key's holders derive (the cluster's relay keys, DESIGN §8 "Edges").
    digest: zeroize::Zeroizing<[u8; 32]>,
}

impl Signer {
    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Signer, KeyError> {
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der).map_err(|e| KeyError::Malformed(e.to_string()))?;
        // Parsing (not a private-key operation) to learn the public half.
        // RsaPrivateKey zeroizes itself on drop.
        let private = RsaPrivateKey::from_pkcs8_der(der).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let public = private.to_public_key();
        modulus(&public)?;
        let mut digest = zeroize::Zeroizing::new([0u8; 32]);
        crate::crypto::hkdf(b"sotto server key digest v1", der, &[], &mut digest[..]);
        Ok(Signer { pair, public, rng: ring::rand::SystemRandom::new(), digest })
    }

    /// Loads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Signer, KeyError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let der = key.to_pkcs8_der().map_err(|e| KeyError::Malformed(e.to_string()))?;
        Signer::from_pkcs8_der(der.as_bytes())
    }

    /// A secret derived from the private key (HKDF-SHA256 of its DER), the
    /// same for every holder of the key, no help in recovering it.
    pub fn key_digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// RSA-PSS-SHA256 (salt length 32) over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; RSA_BYTES], KeyError> {
        let mut sig = [0u8; RSA_BYTES];
        self.pair.sign(&ring::signature::RSA_PSS_SHA256, &self.rng, msg, &mut sig).map_err(|_| KeyError::SignFailed)?;
        Ok(sig)
    }

    /// The public half.
    pub fn public(&self) -> &RsaPublicKey {
        &self.public
    }
}

/// Generates an RSA-2048 key; returns its PKCS#8 DER and public modulus.
pub fn generate() -> Result<(Zeroizing<Vec<u8>>, [u8; RSA_BYTES]), KeyError> {
    let key = RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| KeyError::Malformed(e.to_string()))?;
    let der = key.to_pkcs8_der().map_err(|e| KeyError::Malformed(e.to_string()))?;
    let n = modulus(&key.to_public_key())?;
    Ok((Zeroizing::new(der.as_bytes().to_vec()), n))
}

/// The big-endian modulus of an RSA-2048 key with exponent 65537.
pub fn modulus(key: &RsaPublicKey) -> Result<[u8; RSA_BYTES], KeyError> {
    if key.e() != &BigUint::from(EXPONENT) {
        return Err(KeyError::WrongShape);
    }
    key.n().to_bytes_be().try_into().map_err(|_| KeyError::WrongShape)
}

/// The public key with modulus `n` and exponent 65537; `n` must be a full 2048 bits.
pub fn from_modulus(n: &[u8; RSA_BYTES]) -> Result<RsaPublicKey, KeyError> {
    if n[0] & 0x80 == 0 || n[RSA_BYTES - 1] & 1 == 0 {
        return Err(KeyError::WrongShape);
    }
    RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from(EXPONENT))
        .map_err(|e| KeyError::Malformed(e.to_string()))
}

/// Parses a SubjectPublicKeyInfo DER public key (RSA-2048, e = 65537).
pub fn from_spki_der(der: &[u8]) -> Result<RsaPublicKey, KeyError> {
    let key = RsaPublicKey::from_public_key_der(der).map_err(|e| KeyError::Malformed(e.to_string()))?;
    modulus(&key)?;
    Ok(key)
}

/// SubjectPublicKeyInfo DER of a public key.
pub fn to_spki_der(key: &RsaPublicKey) -> Result<Vec<u8>, KeyError> {
    Ok(key.to_public_key_der().map_err(|e| KeyError::Malformed(e.to_string()))?.as_bytes().to_vec())
}

/// Verifies an RSA-PSS-SHA256 signature (salt length 32).
pub fn verify(key: &RsaPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::signature::Verifier;
    let Ok(sig) = rsa::pss::Signature::try_from(sig) else { return false };
    rsa::pss::VerifyingKey::<sha2::Sha256>::new(key.clone()).verify(msg, &sig).is_ok()
}

/// A user's fingerprint: SHA-256 of the identity modulus (DESIGN §5).
pub fn fingerprint(n: &[u8; RSA_BYTES]) -> [u8; 32] {
    crate::crypto::sha256(&[n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_signature_verifies_with_rsa_crate_and_binds_the_message() {
        let (der, n) = generate().unwrap();
        let signer = Signer::from_pkcs8_der(&der).unwrap();
        assert_eq!(modulus(signer.public()).unwrap(), n);
        let sig = signer.sign(b"message").unwrap();
        let public = from_modulus(&n).unwrap();
        assert!(verify(&public, b"message", &sig));
        assert!(!verify(&public, b"messagf", &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!verify(&public, b"message", &bad));
        assert!(!verify(&public, b"message", &sig[..255]));
    }

    #[test]
    fn rejects_short_or_even_modulus() {
        let mut n = [0xffu8; RSA_BYTES];
        n[0] = 0x7f;
        assert_eq!(from_modulus(&n), Err(KeyError::WrongShape));
        let mut n = [0xffu8; RSA_BYTES];
        n[RSA_BYTES - 1] = 0xfe;
        assert_eq!(from_modulus(&n), Err(KeyError::WrongShape));
    }
}
