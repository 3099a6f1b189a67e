//! File chunks as PROTOCOL.md §10 seals them (client side only): the file
//! key split by HKDF into an AES-128 key and an HMAC key, each chunk
//! AES-128-CBC under a random IV (zero-filled to 16,384 bytes, no padding)
//! and tagged over file id, index, chunk count, IV and data.
//!
//! Kept small and on its own so that it can give way to `sotto::file` once
//! that module exists: W8 only calls [`FileKeys::new`], [`FileKeys::seal`]
//! and [`FileKeys::open`].

use sotto::crypto::{self, Cbc, Invalid, MacKey};

/// Plaintext bytes per chunk (`chunk_size` of the manifest).
pub const CHUNK: usize = 16384;

/// HKDF info of the file keys.
const KEYS_INFO: &[u8] = b"sotto/v2 file keys";
/// Domain separation of a chunk's tag.
const TAG_LABEL: &[u8] = b"sotto/v2 file chunk\0";

/// ceil(size / 16384): the chunks of a file of `size` bytes (0 for an empty one).
pub fn chunk_count(size: u64) -> u32 {
    u32::try_from(size.div_ceil(CHUNK as u64)).unwrap_or(u32::MAX)
}

/// The plaintext of chunk `index` of `file` (the last one may be short).
pub fn plain_chunk(file: &[u8], index: u32) -> &[u8] {
    let start = (index as usize).saturating_mul(CHUNK).min(file.len());
    &file[start..(start + CHUNK).min(file.len())]
}

/// One file's chunk keys.
pub struct FileKeys {
    file_id: u64,
    chunk_count: u32,
    aes: Cbc,
    mac: MacKey,
}

impl FileKeys {
    /// okm = HKDF-SHA256(salt = file_id, ikm = key, info = "sotto/v2 file keys", 48):
    /// AES key okm[0..16], MAC key okm[16..48].
    pub fn new(key: &[u8; 32], file_id: u64, chunk_count: u32) -> FileKeys {
        let mut okm = [0u8; 48];
        crypto::hkdf(&file_id.to_be_bytes(), key, &[KEYS_INFO], &mut okm);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&okm[..16]);
        let keys = FileKeys { file_id, chunk_count, aes: Cbc::new(&aes), mac: MacKey::new(&okm[16..]) };
        okm.fill(0);
        aes.fill(0);
        keys
    }

    fn tag(&self, index: u32, iv: &[u8; 16], data: &[u8; CHUNK]) -> [u8; 32] {
        self.mac.tag(&[
            TAG_LABEL,
            &self.file_id.to_be_bytes(),
            &index.to_be_bytes(),
            &self.chunk_count.to_be_bytes(),
            iv,
            data,
        ])
    }

    /// Seals `plain` (at most 16,384 bytes) as chunk `index`: a fresh IV, the
    /// ciphertext of the zero-filled chunk in `data`, its tag.
    pub fn seal(&self, index: u32, plain: &[u8], iv: &mut [u8; 16], tag: &mut [u8; 32], data: &mut [u8; CHUNK]) {
        let n = plain.len().min(CHUNK);
        data[..n].copy_from_slice(&plain[..n]);
        data[n..].fill(0);
        *iv = crypto::random();
        // NOTE: 16,384 bytes are whole blocks; CBC cannot fail on them.
        let _ = self.aes.encrypt(iv, data);
        *tag = self.tag(index, iv, data);
    }

    /// Checks chunk `index`'s tag, then decrypts `data` in place (the zero
    /// fill of a last chunk included); nothing is decrypted when the tag fails.
    pub fn open(&self, index: u32, iv: &[u8; 16], tag: &[u8; 32], data: &mut [u8; CHUNK]) -> Result<(), Invalid> {
        if index >= self.chunk_count || !crypto::ct_eq(&self.tag(index, iv, data), tag) {
            return Err(Invalid);
        }
        self.aes.decrypt(iv, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_chunks() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(16384), 1);
        assert_eq!(chunk_count(16385), 2);
        assert_eq!(chunk_count(256 << 20), 16384);
        let file = vec![1u8; 16384 + 10];
        assert_eq!(plain_chunk(&file, 0).len(), 16384);
        assert_eq!(plain_chunk(&file, 1).len(), 10);
        assert!(plain_chunk(&file, 2).is_empty());
    }

    #[test]
    fn sealed_chunks_open_only_in_their_place() {
        let key = [9u8; 32];
        let file: Vec<u8> = (0..CHUNK + 100).map(|i| i as u8).collect();
        let keys = FileKeys::new(&key, 77, 2);
        let (mut iv, mut tag, mut data) = ([0u8; 16], [0u8; 32], [0u8; CHUNK]);
        keys.seal(1, plain_chunk(&file, 1), &mut iv, &mut tag, &mut data);
        assert_ne!(&data[..100], &file[CHUNK..]);
        // Its place, its file, its length, its bytes: all bound by the tag.
        let mut d = data;
        assert!(keys.open(0, &iv, &tag, &mut d).is_err(), "another index");
        assert!(FileKeys::new(&key, 78, 2).open(1, &iv, &tag, &mut d).is_err(), "another file");
        assert!(FileKeys::new(&key, 77, 3).open(1, &iv, &tag, &mut d).is_err(), "another length");
        assert!(FileKeys::new(&[8u8; 32], 77, 2).open(1, &iv, &tag, &mut d).is_err(), "another key");
        d[5] ^= 1;
        assert!(keys.open(1, &iv, &tag, &mut d).is_err(), "a flipped bit");
        assert!(keys.open(2, &iv, &tag, &mut data.clone()).is_err(), "past the count");
        // The right one opens to the plaintext and its zero fill.
        keys.open(1, &iv, &tag, &mut data).unwrap();
        assert_eq!(&data[..100], &file[CHUNK..]);
        assert!(data[100..].iter().all(|b| *b == 0));
    }

    #[test]
    fn keys_follow_the_hkdf_split() {
        // The split of §10 computed here by hand: AES key okm[0..16], MAC key okm[16..48].
        let key = [3u8; 32];
        let mut okm = [0u8; 48];
        crypto::hkdf(&5u64.to_be_bytes(), &key, &[b"sotto/v2 file keys"], &mut okm);
        let keys = FileKeys::new(&key, 5, 1);
        let (mut iv, mut tag, mut data) = ([0u8; 16], [0u8; 32], [0u8; CHUNK]);
        keys.seal(0, b"hello", &mut iv, &mut tag, &mut data);
        let mut expect = [0u8; CHUNK];
        expect[..5].copy_from_slice(b"hello");
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&okm[..16]);
        crypto::cbc_encrypt(&aes, &iv, &mut expect).unwrap();
        assert_eq!(data, expect);
        let mac = crypto::hmac(
            &okm[16..],
            &[b"sotto/v2 file chunk\0", &5u64.to_be_bytes(), &0u32.to_be_bytes(), &1u32.to_be_bytes(), &iv, &expect],
        );
        assert_eq!(tag, mac);
    }
}
