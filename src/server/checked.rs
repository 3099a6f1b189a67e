//! The framing shared by the server's variable-length record files (a file's
//! record, a user's prekeys): `magic (4) || version (u16) || flags (u16, 0)
//! || fields || entries || SHA-256 of all of it`, bounded in length before
//! anything is read.

use crate::crypto;

/// Length of the trailing SHA-256.
pub(crate) const SUM: usize = 32;

/// Checks a record file's length (`head + SUM` to `max`), its checksum, magic,
/// version and zero flags; returns a reader over the rest of its `head`
/// bytes and the entries that follow them.
pub(crate) fn open(
    bytes: &[u8],
    head: usize,
    max: usize,
    magic: [u8; 4],
    version: u16,
) -> Result<(Reader<'_>, &[u8]), &'static str> {
    if bytes.len() < head + SUM || bytes.len() > max {
        return Err("wrong size");
    }
    let (body, sum) = bytes.split_at(bytes.len() - SUM);
    if !crypto::ct_eq(&crypto::sha256(&[body]), sum) {
        return Err("checksum mismatch");
    }
    let (head, entries) = body.split_at(head);
    let mut r = Reader(head);
    if r.take::<4>()? != magic || u16::from_be_bytes(r.take()?) != version || r.take::<2>()? != [0, 0] {
        return Err("bad magic, version or flags");
    }
    Ok((r, entries))
}

/// Appends the SHA-256 of everything in `out` (the record's last field).
pub(crate) fn seal(out: &mut Vec<u8>) {
    let sum = crypto::sha256(&[out]);
    out.extend_from_slice(&sum);
}

/// Reads fixed-size fields off the front of a slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    /// The next `N` bytes.
    pub(crate) fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let (field, rest) = self.0.split_at_checked(N).ok_or("truncated")?;
        self.0 = rest;
        field.try_into().map_err(|_| "truncated")
    }
}
