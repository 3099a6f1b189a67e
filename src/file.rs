//! Files end to end (PROTOCOL.md §10): the per-file keys, the sealing and
//! opening of chunks, and the manifest that travels as a message body.
//!
//! Invariant: a chunk opens only under its own file's keys, at its own index,
//! in a file of its own chunk count; the plaintext handed back is exactly the
//! bytes of the file that chunk holds (the zero fill of the last is cut).
//! A manifest body is told from a text by the top bit of its length word,
//! which no text length has.

use zeroize::Zeroizing;

use crate::crypto::{self, AeadKeys, Invalid};
use crate::opcodes::{Class, FileManifest};
use zerocopy::{FromBytes, IntoBytes};

/// Plaintext bytes per chunk (and ciphertext bytes of every chunk frame).
pub const CHUNK: usize = 16_384;
/// The top bit of a body's length word: the body is a manifest.
pub const MANIFEST_FLAG: u16 = 0x8000;

const KEY_INFO: &[u8] = b"sotto/v2 file keys";
const CHUNK_LABEL: &[u8] = b"sotto/v2 file chunk\0";

/// Chunks of a file of `size` bytes; None when that is more than a u32 holds.
pub fn chunk_count(size: u64) -> Option<u32> {
    u32::try_from(size.div_ceil(CHUNK as u64)).ok()
}

/// Plaintext bytes in chunk `index` of a file of `size` bytes (0 past the end).
pub fn chunk_len(size: u64, index: u32) -> usize {
    let start = u64::from(index) * CHUNK as u64;
    // NOTE: at most CHUNK, so the cast cannot truncate.
    size.saturating_sub(start).min(CHUNK as u64) as usize
}

/// The AES and HMAC keys of one file.
pub struct FileKeys {
    keys: AeadKeys,
    cbc: crypto::Cbc,
    file_id: u64,
    chunk_count: u32,
}

impl FileKeys {
    /// Expands the manifest's `key` for `file_id` (PROTOCOL.md §10).
    pub fn derive(file_id: u64, chunk_count: u32, key: &[u8; 32]) -> FileKeys {
        let mut okm = Zeroizing::new([0u8; 48]);
        crypto::hkdf(&file_id.to_be_bytes(), key, &[KEY_INFO], &mut okm[..]);
        let keys = AeadKeys::from_material(&okm);
        let cbc = crypto::Cbc::new(&keys.enc);
        FileKeys { keys, cbc, file_id, chunk_count }
    }

    fn tag(&self, index: u32, iv: &[u8; 16], data: &[u8]) -> [u8; 32] {
        let head = self.context(index);
        crypto::hmac(&self.keys.mac[..], &[CHUNK_LABEL, &head, iv, data])
    }

    fn context(&self, index: u32) -> [u8; 16] {
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(&self.file_id.to_be_bytes());
        head[8..12].copy_from_slice(&index.to_be_bytes());
        head[12..].copy_from_slice(&self.chunk_count.to_be_bytes());
        head
    }

    /// Seals `plain` (at most [`CHUNK`] bytes) as chunk `index` into `data`
    /// (zero-filled, then encrypted in place); returns IV and tag.
    pub fn seal_into(&self, index: u32, plain: &[u8], data: &mut [u8; CHUNK]) -> Result<([u8; 16], [u8; 32]), Invalid> {
        self.seal_iv(index, plain, data, crypto::random())
    }

    /// As [`FileKeys::seal_into`] with a chosen IV: for test vectors only (feature `vectors`).
    #[cfg(any(test, feature = "vectors"))]
    pub fn seal_with_iv(
        &self,
        index: u32,
        plain: &[u8],
        data: &mut [u8; CHUNK],
        iv: [u8; 16],
    ) -> Result<[u8; 32], Invalid> {
        self.seal_iv(index, plain, data, iv).map(|(_, tag)| tag)
    }

    fn seal_iv(
        &self,
        index: u32,
        plain: &[u8],
        data: &mut [u8; CHUNK],
        iv: [u8; 16],
    ) -> Result<([u8; 16], [u8; 32]), Invalid> {
        if plain.len() > CHUNK || index >= self.chunk_count {
            return Err(Invalid);
        }
        data[..plain.len()].copy_from_slice(plain);
        data[plain.len()..].fill(0);
        self.cbc.encrypt(&iv, &mut data[..])?;
        Ok((iv, self.tag(index, &iv, &data[..])))
    }

    /// The AES and HMAC keys, for test vectors only (feature `vectors`).
    #[cfg(any(test, feature = "vectors"))]
    pub fn keys(&self) -> &AeadKeys {
        &self.keys
    }

    /// Checks chunk `index`'s tag, then decrypts it; the `len` bytes of the
    /// file it holds (see [`chunk_len`]). One error for every failure.
    pub fn open(
        &self,
        index: u32,
        iv: &[u8; 16],
        tag: &[u8],
        data: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Invalid> {
        if index >= self.chunk_count || data.len() != CHUNK || len > CHUNK {
            return Err(Invalid);
        }
        let head = self.context(index);
        if !crypto::hmac_verify(&self.keys.mac[..], &[CHUNK_LABEL, &head, iv, data], tag) {
            return Err(Invalid);
        }
        let mut plain = Zeroizing::new(data.to_vec());
        self.cbc.decrypt(iv, &mut plain[..])?;
        plain.truncate(len);
        Ok(plain)
    }
}

/// What a decrypted message body holds.
pub enum Content {
    /// A text.
    Text(String),
    /// A file offer.
    File(Box<FileManifest>),
}

/// The body for a manifest: its class and `0x8000 | 344 || manifest || zeros`.
pub fn pack_manifest(m: &FileManifest) -> (Class, Zeroizing<Vec<u8>>) {
    let bytes = m.as_bytes();
    // NOTE(expect): a manifest is 344 bytes, which the class `m` holds.
    let class = Class::fitting(bytes.len() + 2).expect("a manifest fits a class");
    let mut body = Zeroizing::new(vec![0u8; class.body()]);
    body[..2].copy_from_slice(&(MANIFEST_FLAG | bytes.len() as u16).to_be_bytes());
    body[2..2 + bytes.len()].copy_from_slice(bytes);
    (class, body)
}

/// The content of a decrypted body: a text or a manifest (checked: chunk
/// count and chunk size agree with the size, the name is UTF-8).
pub fn unpack(body: &[u8]) -> Result<Content, Invalid> {
    let head = body.get(..2).ok_or(Invalid)?;
    let word = u16::from_be_bytes([head[0], head[1]]);
    if word & MANIFEST_FLAG == 0 {
        return crate::body::unpack(body).map(Content::Text);
    }
    let len = usize::from(word & !MANIFEST_FLAG);
    if len != std::mem::size_of::<FileManifest>() {
        return Err(Invalid);
    }
    let bytes = body.get(2..2 + len).ok_or(Invalid)?;
    let m = FileManifest::read_from_bytes(bytes).map_err(|_| Invalid)?;
    let consistent = m.chunk_size.get() as usize == CHUNK
        && chunk_count(m.size.get()) == Some(m.chunk_count.get())
        && m.file_id.get() != 0
        && m.name().is_ok_and(|n| !n.is_empty());
    if !consistent {
        return Err(Invalid);
    }
    Ok(Content::File(Box::new(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn manifest(size: u64) -> FileManifest {
        let mut m = FileManifest::new_zeroed();
        m.file_id.set(9);
        m.size.set(size);
        m.chunk_count.set(chunk_count(size).unwrap());
        m.chunk_size.set(CHUNK as u32);
        m.sha256 = [7; 32];
        m.key = [5; 32];
        m.set_name("photo.jpg").unwrap();
        m
    }

    #[test]
    fn counts_and_lengths_at_the_edges() {
        assert_eq!(chunk_count(0), Some(0));
        assert_eq!(chunk_count(1), Some(1));
        assert_eq!(chunk_count(CHUNK as u64), Some(1));
        assert_eq!(chunk_count(CHUNK as u64 + 1), Some(2));
        assert_eq!(chunk_count(u64::MAX), None);
        assert_eq!(chunk_len(CHUNK as u64 + 5, 0), CHUNK);
        assert_eq!(chunk_len(CHUNK as u64 + 5, 1), 5);
        assert_eq!(chunk_len(CHUNK as u64 + 5, 2), 0);
    }

    #[test]
    fn a_chunk_opens_only_in_its_place_in_its_file() {
        let keys = FileKeys::derive(9, 3, &[5; 32]);
        let mut data = [0u8; CHUNK];
        let plain = b"last chunk bytes";
        let (iv, tag) = keys.seal_into(2, plain, &mut data).unwrap();
        assert_eq!(&keys.open(2, &iv, &tag, &data, plain.len()).unwrap()[..], plain);
        // Another index, another file id, another count, another key: refused.
        assert!(keys.open(1, &iv, &tag, &data, plain.len()).is_err());
        assert!(FileKeys::derive(10, 3, &[5; 32]).open(2, &iv, &tag, &data, plain.len()).is_err());
        assert!(FileKeys::derive(9, 4, &[5; 32]).open(2, &iv, &tag, &data, plain.len()).is_err());
        assert!(FileKeys::derive(9, 3, &[6; 32]).open(2, &iv, &tag, &data, plain.len()).is_err());
        // Any flipped bit of IV, data (including the zero fill) or tag: refused.
        for at in [0usize, plain.len(), CHUNK - 1] {
            let mut d = data;
            d[at] ^= 1;
            assert!(keys.open(2, &iv, &tag, &d, plain.len()).is_err(), "{at}");
        }
        let mut bad_iv = iv;
        bad_iv[3] ^= 1;
        assert!(keys.open(2, &bad_iv, &tag, &data, plain.len()).is_err());
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert!(keys.open(2, &iv, &bad_tag, &data, plain.len()).is_err());
        // Past the count: neither sealed nor opened.
        assert!(keys.seal_into(3, plain, &mut data).is_err());
        assert!(keys.open(3, &iv, &tag, &data, 1).is_err());
        assert!(keys.seal_into(0, &[0u8; CHUNK + 1], &mut data).is_err());
    }

    #[test]
    fn manifest_and_text_bodies_are_told_apart() {
        let m = manifest(40_000);
        let (class, body) = pack_manifest(&m);
        assert_eq!((class, body.len()), (Class::M, 1040));
        match unpack(&body).unwrap() {
            Content::File(got) => assert_eq!(got.as_bytes(), m.as_bytes()),
            Content::Text(_) => panic!("a manifest came back as text"),
        }
        let (_, text) = crate::body::pack("hello").unwrap();
        assert!(matches!(unpack(&text).unwrap(), Content::Text(t) if t == "hello"));
        // The text reader refuses a manifest, and a manifest of the wrong length is refused.
        assert!(crate::body::unpack(&body).is_err());
        let mut short = body.clone();
        short[..2].copy_from_slice(&(MANIFEST_FLAG | 343).to_be_bytes());
        assert!(unpack(&short).is_err());
        // Inconsistent sizes or an empty name: refused.
        for broken in [
            {
                let mut b = manifest(40_000);
                b.chunk_count.set(2);
                b
            },
            {
                let mut b = manifest(40_000);
                b.chunk_size.set(4096);
                b
            },
            {
                let mut b = manifest(40_000);
                b.file_id.set(0);
                b
            },
            {
                let mut b = manifest(40_000);
                b.set_name("").unwrap();
                b
            },
        ] {
            assert!(unpack(&pack_manifest(&broken).1).is_err());
        }
    }
}
