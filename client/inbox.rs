//! Local-state layer: the direct messages received and the ids already shown
//! (DESIGN §7, §9), sealed in `<home>/<server_tag>/<user>/inbox` (see `vault`).
//!
//! Invariant: a message is kept at most `ttl` after it was shown, and at most
//! [`MSGS_MAX`] messages of at most [`TEXT_BYTES_MAX`] bytes of text (the
//! oldest go first), then erased
//! (its text is gone from the file at the next save); what was shown and
//! verified, of direct messages and room messages alike, stays in the marks
//! (`fresh`), so a copy delivered again, replayed or restored is never shown
//! as new. A message that did not verify leaves no mark: its signed time and
//! id are not known to be its sender's.
//!
//! Plaintext: `u32 count || count × (id (8) || from_uid (8) || u8 len || from
//! || ts (8) || shown_at (8) || verified (1) || u16 len || text)`, then the
//! marks (`fresh::Marks`).

use zeroize::Zeroizing;

use crate::fresh::{self, Marks, Verdict};
use crate::keystore::KeyFileError;
use crate::vault::{self, Kind, Reader};

/// Messages kept; beyond, the oldest is erased before its time (its mark
/// stays). A full inbox (at most [`TEXT_BYTES_MAX`] of text and 68 bytes a
/// message besides) and the largest marks (`fresh`) stay far below what the
/// key store reads back (`store::MAX_FILE_BYTES`): a file written larger would
/// be refused at the next login, and the marks in it lost, which would let old
/// messages show as new.
pub const MSGS_MAX: usize = 4096;
/// Bytes of text kept; beyond, the oldest messages are erased as with
/// [`MSGS_MAX`]. Needed since a DM holds up to 16 KiB (`body::TEXT_MAX`):
/// [`MSGS_MAX`] of the longest would pass `store::MAX_FILE_BYTES`.
pub const TEXT_BYTES_MAX: usize = 16 << 20;

/// The inbox file.
pub const KIND: Kind = Kind { file: "inbox", magic: *b"SOTI", name: "inbox", id: 5, what: "received messages" };

/// One received direct message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The message id.
    pub id: u64,
    /// The sender's UID.
    pub from_uid: u64,
    /// The sender's name.
    pub from: String,
    /// The text (empty when it could not be decrypted).
    pub text: Zeroizing<String>,
    /// The sender's timestamp, Unix ms.
    pub ts: u64,
    /// Signature and tag verified.
    pub verified: bool,
    /// When it was shown, Unix ms.
    pub shown_at: u64,
}

/// The kept messages, in arrival order, and the marks of what was shown.
#[derive(Debug, Default)]
pub struct Inbox {
    msgs: Vec<Stored>,
    marks: Marks,
    dirty: bool,
}

impl Inbox {
    /// Empty.
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// How direct message `id` from `sender`, signed at `ts`, compares with what was shown.
    pub fn check(&self, sender: u64, ts: u64, id: u64) -> Verdict {
        self.marks.check(fresh::DM_SCOPE, sender, ts, id)
    }

    /// Keeps a direct message that was just shown, and marks it shown when it
    /// verified: the time and id of one that did not are the server's word
    /// (anyone can send them under a contact's UID), and would let it mark a
    /// genuine message as seen, or raise the floor above it, before it comes.
    pub fn record(&mut self, msg: Stored) {
        if msg.verified {
            self.marks.record(fresh::DM_SCOPE, msg.from_uid, msg.ts, msg.id, msg.shown_at);
        }
        let mut bytes = self.msgs.iter().map(|m| m.text.len()).sum::<usize>() + msg.text.len();
        let mut excess = 0;
        for m in &self.msgs {
            if self.msgs.len() - excess < MSGS_MAX && bytes <= TEXT_BYTES_MAX {
                break;
            }
            bytes -= m.text.len();
            excess += 1;
        }
        self.msgs.drain(..excess);
        self.msgs.push(msg);
        self.dirty = true;
    }

    /// How room message `id` from `sender` in `room`, signed at `ts`, compares with what was shown.
    pub fn check_room(&self, room: &str, sender: u64, ts: u64, id: u64) -> Verdict {
        self.marks.check(room, sender, ts, id)
    }

    /// Marks a room message shown at `now`.
    pub fn record_room(&mut self, room: &str, sender: u64, ts: u64, id: u64, now: u64) {
        self.marks.record(room, sender, ts, id, now);
        self.dirty = true;
    }

    /// The kept messages from `uid`, oldest first.
    pub fn from(&self, uid: u64) -> impl Iterator<Item = &Stored> {
        self.msgs.iter().filter(move |m| m.from_uid == uid)
    }

    /// Erases every message kept from `uid` (their marks stay); the number erased.
    pub fn forget(&mut self, uid: u64) -> usize {
        let before = self.msgs.len();
        self.msgs.retain(|m| m.from_uid != uid);
        let erased = before - self.msgs.len();
        if erased > 0 {
            self.dirty = true;
        }
        erased
    }

    /// Erases the messages shown `ttl_ms` or longer ago (their marks stay); the number erased.
    pub fn erase_expired(&mut self, now_ms: u64, ttl_ms: u64) -> usize {
        let before = self.msgs.len();
        self.msgs.retain(|m| m.shown_at.saturating_add(ttl_ms) > now_ms);
        let erased = before - self.msgs.len();
        if erased > 0 {
            self.dirty = true;
        }
        erased
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The plaintext of the file.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(16 + self.msgs.len() * 1100));
        vault::put_count(&mut out, self.msgs.len());
        for m in &self.msgs {
            out.extend_from_slice(&m.id.to_be_bytes());
            out.extend_from_slice(&m.from_uid.to_be_bytes());
            vault::put_user(&mut out, &m.from);
            out.extend_from_slice(&m.ts.to_be_bytes());
            out.extend_from_slice(&m.shown_at.to_be_bytes());
            out.push(u8::from(m.verified));
            // A DM text is at most 16,384 bytes (dm::TEXT_MAX).
            let text = m.text.get(..m.text.len().min(usize::from(u16::MAX))).unwrap_or_default();
            out.extend_from_slice(&(text.len() as u16).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        self.marks.encode_into(&mut out);
        out
    }

    /// Parses the plaintext; anything malformed refuses the whole file.
    pub fn decode(plain: &[u8]) -> Result<Inbox, KeyFileError> {
        let mut r = Reader::new(plain);
        let mut msgs = Vec::new();
        for _ in 0..r.u32()? {
            let (id, from_uid, from) = (r.u64()?, r.u64()?, r.user()?);
            let (ts, shown_at) = (r.u64()?, r.u64()?);
            let verified = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(KeyFileError::Damaged),
            };
            let len = r.u16()?;
            let text = std::str::from_utf8(r.slice(usize::from(len))?).map_err(|_| KeyFileError::Damaged)?;
            let text = Zeroizing::new(text.to_string());
            msgs.push(Stored { id, from_uid, from, text, ts, verified, shown_at });
        }
        // A file of an earlier client may hold more: the newest are kept.
        if msgs.len() > MSGS_MAX {
            msgs.drain(..msgs.len() - MSGS_MAX);
        }
        let marks = Marks::decode_from(&mut r)?;
        r.end()?;
        Ok(Inbox { msgs, marks, dirty: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn msg(id: u64, from_uid: u64, text: &str, shown_at: u64) -> Stored {
        Stored {
            id,
            from_uid,
            from: format!("user{from_uid}"),
            text: Zeroizing::new(text.to_string()),
            ts: shown_at - 10,
            verified: true,
            shown_at,
        }
    }

    #[test]
    fn erases_after_the_ttl_but_remembers_the_id() {
        let mut inbox = Inbox::new();
        inbox.record(msg(1, 5, "first", T0));
        inbox.record(msg(2, 5, "second", T0 + 1500));
        inbox.record(msg(1, 6, "same id, other sender", T0 + 100));
        assert!(inbox.take_dirty());
        assert_eq!(inbox.erase_expired(T0 + 1999, 2000), 0);
        assert!(!inbox.take_dirty());
        assert_eq!(inbox.erase_expired(T0 + 2100, 2000), 2);
        assert!(inbox.take_dirty());
        let left: Vec<&str> = inbox.from(5).map(|m| m.text.as_str()).collect();
        assert_eq!(left, ["second"]);
        assert_eq!(inbox.from(6).count(), 0);
        let seen = |i: &Inbox, s: u64, id: u64, ts: u64| i.check(s, ts, id) == Verdict::Seen;
        let all = |i: &Inbox| seen(i, 5, 1, T0 - 10) && seen(i, 6, 1, T0 + 90) && seen(i, 5, 2, T0 + 1490);
        assert!(all(&inbox), "erased ids are still seen");
        assert!(!seen(&inbox, 5, 3, T0) && !seen(&inbox, 7, 1, T0 - 10));
        assert!(!inbox.encode().windows(5).any(|w| w == b"first"), "the erased text is gone from the file");
        // Never forgotten by age: a year later they are still seen.
        inbox.erase_expired(T0 + 365 * 24 * 3600 * 1000, 2000);
        assert!(all(&inbox));
    }

    #[test]
    fn a_flood_of_messages_keeps_the_file_within_what_is_read_back() {
        // A server (or a contact within the rate) sends more DMs within the
        // hour than the file may hold; the file must still open next time,
        // else its marks are lost and old messages show as new.
        let mut inbox = Inbox::new();
        let text = "x".repeat(sotto::dm::TEXT_MAX);
        let n = crate::store::MAX_FILE_BYTES as usize / sotto::dm::TEXT_MAX + 1;
        for i in 0..n as u64 {
            inbox.record(msg(i, 5 + i % 2000, &text, T0 + i));
        }
        let plain = inbox.encode();
        assert!((plain.len() as u64) < crate::store::MAX_FILE_BYTES / 2, "{} bytes", plain.len());
        assert_eq!(inbox.msgs.len(), TEXT_BYTES_MAX / text.len(), "as many as the text budget holds");
        assert_eq!(inbox.msgs.last().map(|m| m.id), Some(n as u64 - 1), "the newest are kept");
        assert_eq!(inbox.check(5 + (n as u64 - 1) % 2000, T0 + n as u64 - 11, n as u64 - 1), Verdict::Seen);
        assert_eq!(Inbox::decode(&plain).unwrap().msgs.len(), TEXT_BYTES_MAX / text.len());
        // Short texts: the count bounds them.
        for i in 0..MSGS_MAX as u64 + 5 {
            inbox.record(msg(n as u64 + i, 5, "short", T0 + i));
        }
        assert_eq!(inbox.msgs.len(), MSGS_MAX);
    }

    #[test]
    fn roundtrips_sealed_and_refuses_wrong_password_and_damage() {
        let mut inbox = Inbox::new();
        inbox.record(msg(0xdead_beef, 5, "héllo \"there\"", T0));
        let mut bad = msg(9, 6, "", T0 + 1);
        bad.verified = false;
        inbox.record(bad);
        let key = vault::subkey(&[4; 32], KIND);
        let sealed = vault::seal(KIND, "alice", &key, 1, &[], &inbox.encode());
        assert!(!sealed.windows(5).any(|w| w == b"llo \""), "encrypted at rest");
        let back = Inbox::decode(&vault::unseal(KIND, "alice", &key, &sealed).unwrap().1).unwrap();
        assert_eq!(back.msgs, inbox.msgs);
        assert_eq!(back.marks, inbox.marks);
        let wrong = vault::subkey(&[0x77; 32], KIND);
        assert!(matches!(vault::unseal(KIND, "alice", &wrong, &sealed), Err(KeyFileError::WrongPassword)));
        let plain = inbox.encode();
        for cut in [0, 5, 30, plain.len() - 1] {
            assert!(Inbox::decode(&plain[..cut]).is_err(), "cut at {cut}");
        }
    }
}
