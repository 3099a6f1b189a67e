//! The ticket state's two files (or records), a part of `tickets`: the key
//! file (`KEYS_MAGIC`, version, epoch, then each key's id, creation time and
//! keys) and the journal (`JOURNAL_MAGIC`, version, epoch, then batches of
//! fixed-size records, each batch with its count and SHA-256, so that a
//! torn last batch is recognised and cut).
//!
//! Invariant: every length is checked before it is used; a file that does
//! not decode is an error naming why, never a panic.

use super::{
    crypto, HashMap, TicketKey, Zeroizing, BATCH_HEAD, EPOCH_LEN, JOURNAL_HEAD, JOURNAL_HEAD_V1, JOURNAL_MAGIC,
    JOURNAL_VERSION, KEYS_HEAD, KEYS_MAGIC, KEYS_VERSION, KEY_ENTRY, KIND_GENERATION, KIND_USED, MAX_BATCH,
    MAX_JOURNAL_FILE, MAX_KEYS, MAX_KEYS_FILE, MAX_USED, RECORD,
};

pub(super) fn record(kind: u8, uid: u64, value: u64, id: &[u8; 16]) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = kind;
    r[8..16].copy_from_slice(&uid.to_be_bytes());
    r[16..24].copy_from_slice(&value.to_be_bytes());
    r[24..40].copy_from_slice(id);
    r
}

/// One batch: count, reserved, the records, SHA-256 of all of them.
pub(super) fn put_batch(out: &mut Vec<u8>, records: &[[u8; RECORD]]) {
    let start = out.len();
    // NOTE: callers pass at most MAX_BATCH records.
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for r in records {
        out.extend_from_slice(r);
    }
    let sum = crypto::sha256(&[&out[start..]]);
    out.extend_from_slice(&sum);
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Reads the journal into `gens` and `used`; returns its epoch (None for a
/// version 1 journal) and the length of its valid part (shorter than `bytes`
/// when a torn last batch is to be cut).
pub fn decode_journal(
    bytes: &[u8],
    gens: &mut HashMap<u64, u64>,
    used: &mut HashMap<[u8; 16], u64>,
) -> Result<(Option<[u8; EPOCH_LEN]>, usize), &'static str> {
    if bytes.len() as u64 > MAX_JOURNAL_FILE {
        return Err("too large");
    }
    if bytes.len() < JOURNAL_HEAD_V1 || &bytes[..4] != JOURNAL_MAGIC {
        // A journal is made whole, atomically: a short one is not a torn append.
        return Err("bad magic or version");
    }
    let (epoch, head) = match u16::from_be_bytes([bytes[4], bytes[5]]) {
        1 => (None, JOURNAL_HEAD_V1),
        JOURNAL_VERSION if bytes.len() >= JOURNAL_HEAD => {
            let mut e = [0u8; EPOCH_LEN];
            e.copy_from_slice(&bytes[16..JOURNAL_HEAD]);
            (Some(e), JOURNAL_HEAD)
        }
        JOURNAL_VERSION => return Err("shorter than its header"),
        _ => return Err("bad magic or version"),
    };
    let at = decode_batches(bytes, head, gens, used)?;
    Ok((epoch, at))
}

/// The batches of a journal from `at`; the length of its valid part.
fn decode_batches(
    bytes: &[u8],
    mut at: usize,
    gens: &mut HashMap<u64, u64>,
    used: &mut HashMap<[u8; 16], u64>,
) -> Result<usize, &'static str> {
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = || rest.iter().all(|b| *b == 0);
        if rest.len() < BATCH_HEAD {
            return Ok(at);
        }
        let count = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if count == 0 || count > MAX_BATCH || rest[4..8] != [0; 4] {
            return if torn() { Ok(at) } else { Err("bad batch header") };
        }
        let len = BATCH_HEAD + count * RECORD + 32;
        if rest.len() < len {
            // Its declared end is past the end of the file: the last append,
            // torn; unless a whole batch follows, and then its count is damage.
            return if whole_batch_within(&rest[1..]) {
                Err("damaged batch count (a whole batch follows)")
            } else {
                Ok(at)
            };
        }
        let (body, sum) = rest[..len].split_at(len - 32);
        if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
            // Only the last batch can be torn: one that more bytes follow is damage.
            return if rest.len() == len || rest[len..].iter().all(|b| *b == 0) {
                Ok(at)
            } else {
                Err("checksum mismatch")
            };
        }
        for r in body[BATCH_HEAD..].chunks_exact(RECORD) {
            if r[1..8] != [0; 7] {
                return Err("bad record");
            }
            let (uid, value) = (be64(&r[8..16]), be64(&r[16..24]));
            match r[0] {
                KIND_GENERATION => {
                    let g = gens.entry(uid).or_default();
                    *g = (*g).max(value);
                }
                KIND_USED => {
                    let mut id = [0u8; 16];
                    id.copy_from_slice(&r[24..40]);
                    used.insert(id, value);
                    if used.len() > 2 * MAX_USED {
                        return Err("too many used ids");
                    }
                }
                _ => return Err("unknown record kind"),
            }
        }
        at += len;
    }
    Ok(at)
}

/// Whether a whole, checksummed batch starts anywhere in `bytes` (so that
/// what precedes it is damage, not a torn last append). A candidate must
/// look like a batch head and a first record before it is hashed.
fn whole_batch_within(bytes: &[u8]) -> bool {
    (0..bytes.len().saturating_sub(BATCH_HEAD + RECORD + 32 - 1)).any(|p| {
        let b = &bytes[p..];
        let count = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if count == 0 || count > MAX_BATCH || b[4..8] != [0; 4] {
            return false;
        }
        let first = &b[BATCH_HEAD..BATCH_HEAD + RECORD];
        if !matches!(first[0], KIND_GENERATION | KIND_USED) || first[1..8] != [0; 7] {
            return false;
        }
        let len = BATCH_HEAD + count * RECORD + 32;
        b.len() >= len && crypto::ct_eq(&crypto::sha256(&[&b[..len - 32]]), &b[len - 32..len])
    })
}

/// The key file: magic, version, count, the epoch, then per key its id, when
/// it was made and its 48 bytes of material, then SHA-256 of all of it.
pub fn encode_keys(epoch: [u8; EPOCH_LEN], keys: &[TicketKey]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(KEYS_HEAD + KEY_ENTRY * keys.len() + 32));
    out.extend_from_slice(KEYS_MAGIC);
    out.extend_from_slice(&KEYS_VERSION.to_be_bytes());
    // NOTE: at most MAX_KEYS keys (rotate keeps them under it).
    out.extend_from_slice(&(keys.len().min(MAX_KEYS) as u16).to_be_bytes());
    out.extend_from_slice(&epoch);
    for k in keys.iter().take(MAX_KEYS) {
        out.extend_from_slice(&k.id.to_be_bytes());
        out.extend_from_slice(&k.created_ms.to_be_bytes());
        out.extend_from_slice(&k.material()[..]);
    }
    let sum = crypto::sha256(&[&out[..]]);
    out.extend_from_slice(&sum);
    out
}

/// The epoch (None for a version 1 file) and the keys of a key file,
/// checked, oldest first.
pub fn decode_keys(bytes: &[u8]) -> Result<(Option<[u8; EPOCH_LEN]>, Vec<TicketKey>), &'static str> {
    if bytes.len() < 8 + 32 || bytes.len() as u64 > MAX_KEYS_FILE {
        return Err("wrong size");
    }
    let head = match (&bytes[..4] == KEYS_MAGIC, u16::from_be_bytes([bytes[4], bytes[5]])) {
        (true, 1) => 8,
        (true, KEYS_VERSION) => KEYS_HEAD,
        _ => return Err("bad magic or version"),
    };
    let count = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    if count > MAX_KEYS || bytes.len() != head + KEY_ENTRY * count + 32 {
        return Err("wrong size for its count");
    }
    let epoch = (head == KEYS_HEAD).then(|| {
        let mut e = [0u8; EPOCH_LEN];
        e.copy_from_slice(&bytes[8..KEYS_HEAD]);
        e
    });
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
        return Err("checksum mismatch");
    }
    let mut keys: Vec<TicketKey> = Vec::with_capacity(count);
    for e in body[head..].chunks_exact(KEY_ENTRY) {
        let (id, created) = (be64(&e[..8]), be64(&e[8..16]));
        if keys.iter().any(|k| k.id == id) {
            return Err("a key id twice");
        }
        if keys.last().is_some_and(|k| k.created_ms > created) {
            return Err("keys out of order");
        }
        let mut material = Zeroizing::new([0u8; 48]);
        material.copy_from_slice(&e[16..]);
        keys.push(TicketKey::from_material(id, created, &material));
    }
    Ok((epoch, keys))
}
