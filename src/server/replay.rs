//! A subject's operations replayed into its content (`Sotto-Op`: `R<n>`
//! and `P` parts of a replace, `A` appends, `D` tombstones), as loading and
//! following read them; every size bounded before it grows.

use std::collections::BTreeMap;

use super::{corrupt, StoreError, MAX_SUBJECT, OP, PART};

/// A subject's content as loaded, and its last sequence.
#[derive(Clone)]
pub(super) struct Loaded {
    pub(super) content: Vec<u8>,
    /// An unfinished replace: its bytes so far and the parts still to come.
    pub(super) partial: Option<(Vec<u8>, u32)>,
    /// The parts of the replace in `partial`, in all.
    parts: u64,
    /// The last whole operation was a removal (a tombstone).
    pub(super) removed: bool,
    /// The sequence of its last message.
    pub(super) last: u64,
    /// The subject's messages in the stream, as its operations leave them:
    /// a rollup (`R1`, `D`) leaves itself, a finished replace of parts its
    /// parts (the older ones are deleted after it), every other adds one.
    pub(super) count: u64,
}

impl Loaded {
    fn apply(&mut self, subject: &str, op: &str, payload: &[u8], seq: u64) -> Result<(), StoreError> {
        self.last = seq;
        if self.content.len() + payload.len() > MAX_SUBJECT
            || self.partial.as_ref().is_some_and(|(b, _)| b.len() + payload.len() > MAX_SUBJECT)
        {
            return Err(corrupt(subject, "larger than any record sottod writes"));
        }
        self.count += 1;
        match op.as_bytes() {
            [b'A'] => {
                // An append after an unfinished replace: that replace failed.
                self.partial = None;
                self.removed = false;
                self.content.extend_from_slice(payload);
            }
            [b'D'] => {
                self.partial = None;
                self.removed = true;
                self.content.clear();
                self.count = 1;
            }
            [b'R', n @ ..] => {
                let n: u32 = std::str::from_utf8(n).ok().and_then(|n| n.parse().ok()).unwrap_or(0);
                if n == 0 || n as usize > MAX_SUBJECT / PART + 1 {
                    return Err(corrupt(subject, "bad replace header"));
                }
                if n == 1 {
                    // A rollup.
                    self.count = 1;
                }
                self.parts = u64::from(n);
                self.partial = Some((payload.to_vec(), n - 1));
            }
            [b'P'] => {
                if let Some((buf, left)) = self.partial.as_mut() {
                    if *left == 0 {
                        return Err(corrupt(subject, "more parts than its replace said"));
                    }
                    buf.extend_from_slice(payload);
                    *left -= 1;
                }
            }
            _ => return Err(corrupt(subject, "unknown operation header")),
        }
        if let Some((buf, 0)) = self.partial.as_mut() {
            self.content = std::mem::take(buf);
            self.partial = None;
            self.removed = false;
            self.count = self.parts;
        }
        Ok(())
    }
}

/// Applies one loaded message of `subject` to what `out` holds of it.
pub(super) fn apply_loaded(
    out: &mut BTreeMap<String, Loaded>,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    seq: u64,
) -> Result<(), StoreError> {
    let op = headers.and_then(|h| h.get(OP)).map(|v| v.as_str().to_owned());
    let op = op.ok_or_else(|| corrupt(subject, "no operation header"))?;
    let entry = out.entry(subject.to_owned()).or_insert_with(|| Loaded {
        content: Vec::new(),
        partial: None,
        parts: 0,
        removed: false,
        last: 0,
        count: 0,
    });
    entry.apply(subject, &op, payload, seq)
}
