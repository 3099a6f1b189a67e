//! Local-state layer: direct messages sealed but not yet answered by the
//! server (DESIGN §9), sealed in `<home>/<server_tag>/<user>/outbox` (see `vault`).
//!
//! Invariant: a sealed entry is the exact `smp*` request that was (or will
//! be) sent, so a resend after a reconnect or a restart carries the same id
//! and the same bytes (the same ratchet message: no message key is used for a
//! second text), and the server stores it once. An entry typed before there
//! was a session with its peer (a first message, while the connection was
//! lost) holds its id and text until a session is made, then is sealed in
//! place. Entries keep the order they were typed in, and leave only when the
//! server answered for them.
//!
//! Plaintext: `u32 count || count × (u8 len || peer name || u8 kind || body)`,
//! kind 1: `u32 len || smp* request of any class`; kind 2 (not sealed yet):
//! `u64 id || u64 typed_ms || u32 len || UTF-8 text`.

use sotto::opcodes::{SendDmHead, SMPS};
use sotto::wire;
use zeroize::Zeroizing;

use crate::session::Frame;

use crate::keystore::KeyFileError;
use crate::vault::{self, Kind, Reader};

/// The outbox file.
pub const KIND: Kind = Kind { file: "outbox", magic: *b"SOTQ", name: "outbox", id: 6, what: "outbox" };
/// The largest request an entry may hold (an `smpx`), checked before reading it.
const FRAME_MAX: usize = sotto::opcodes::MAX_MESSAGE;
/// Entry kinds.
const SEALED: u8 = 1;
const TEXT: u8 = 2;

/// One message waiting for the server's answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The recipient's name.
    pub peer: String,
    /// The request, as sent, or the text still to seal.
    pub body: Waiting,
}

/// What an entry holds.
#[derive(Clone, PartialEq, Eq)]
pub enum Waiting {
    /// The request, as sent.
    Sealed(Frame),
    /// A first message typed before a session with the peer existed.
    Text {
        /// Its id.
        id: u64,
        /// When it was typed, Unix ms: its timestamp once sealed.
        ts: u64,
        /// Its text.
        text: Zeroizing<String>,
    },
}

impl Entry {
    /// The message id (the request's msg_id).
    pub fn id(&self) -> u64 {
        match &self.body {
            Waiting::Sealed(f) => f.id,
            Waiting::Text { id, .. } => *id,
        }
    }
}

/// The waiting messages, oldest first.
#[derive(Default)]
pub struct Outbox {
    entries: Vec<Entry>,
    dirty: bool,
}

impl Outbox {
    /// Empty.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Adds a message at the end.
    pub fn push(&mut self, peer: &str, body: Waiting) {
        self.entries.push(Entry { peer: peer.to_string(), body });
        self.dirty = true;
    }

    /// Replaces the text of entry `frame.id` with its sealed request, in place.
    pub fn sealed(&mut self, frame: Frame) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id() == frame.id) {
            e.body = Waiting::Sealed(frame);
            self.dirty = true;
        }
    }

    /// The message `id`.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id() == id)
    }

    /// Removes the message `id` (answered).
    pub fn remove(&mut self, id: u64) -> Option<Entry> {
        let at = self.entries.iter().position(|e| e.id() == id)?;
        self.dirty = true;
        Some(self.entries.remove(at))
    }

    /// The ids, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.entries.iter().map(Entry::id).collect()
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The plaintext of the file.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let size: usize = self
            .entries
            .iter()
            .map(|e| {
                54 + match &e.body {
                    Waiting::Sealed(f) => f.bytes.len(),
                    Waiting::Text { text, .. } => text.len(),
                }
            })
            .sum();
        let mut out = Zeroizing::new(Vec::with_capacity(4 + size));
        vault::put_count(&mut out, self.entries.len());
        for e in &self.entries {
            vault::put_user(&mut out, &e.peer);
            match &e.body {
                Waiting::Sealed(f) => {
                    out.push(SEALED);
                    vault::put_count(&mut out, f.bytes.len());
                    out.extend_from_slice(&f.bytes);
                }
                Waiting::Text { id, ts, text } => {
                    out.push(TEXT);
                    out.extend_from_slice(&id.to_be_bytes());
                    out.extend_from_slice(&ts.to_be_bytes());
                    vault::put_count(&mut out, text.len());
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
        out
    }

    /// Parses the plaintext; anything malformed refuses the whole file.
    pub fn decode(plain: &[u8]) -> Result<Outbox, KeyFileError> {
        let mut r = Reader::new(plain);
        let mut entries = Vec::new();
        for _ in 0..r.u32()? {
            let peer = r.user()?;
            let body = match r.u8()? {
                SEALED => {
                    let len = r.u32()? as usize;
                    if len > FRAME_MAX {
                        return Err(KeyFileError::Damaged);
                    }
                    let bytes = r.slice(len)?;
                    let m = wire::decode_classed::<SendDmHead>(bytes, SMPS).map_err(|_| KeyFileError::Damaged)?;
                    Waiting::Sealed(Frame { id: m.hdr.msg_id.get(), bytes: bytes.to_vec() })
                }
                TEXT => {
                    let (id, ts) = (r.u64()?, r.u64()?);
                    let len = r.u32()? as usize;
                    if len > sotto::dm::TEXT_MAX {
                        return Err(KeyFileError::Damaged);
                    }
                    let text = std::str::from_utf8(r.slice(len)?).map_err(|_| KeyFileError::Damaged)?;
                    Waiting::Text { id, ts, text: Zeroizing::new(text.to_owned()) }
                }
                _ => return Err(KeyFileError::Damaged),
            };
            let entry = Entry { peer, body };
            if entry.id() == 0 {
                return Err(KeyFileError::Damaged);
            }
            entries.push(entry);
        }
        r.end()?;
        Ok(Outbox { entries, dirty: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn frame(id: u64) -> Frame {
        let mut head = SendDmHead::new_zeroed();
        head.peer_uid.set(77);
        let class = sotto::opcodes::Class::ALL[id as usize % 4];
        let bytes = wire::encode_classed(SMPS, id, 1_700_000_000_000 + id, &head, &vec![id as u8; class.body()]);
        Frame { id, bytes: bytes.unwrap() }
    }

    #[test]
    fn keeps_order_and_removes_answered_ones() {
        let mut o = Outbox::new();
        for id in [5, 3, 9] {
            o.push("bob", Waiting::Sealed(frame(id)));
        }
        assert!(o.take_dirty());
        assert_eq!(o.ids(), [5, 3, 9]);
        assert_eq!(o.remove(3).map(|e| e.id()), Some(3));
        assert!(o.take_dirty());
        assert!(o.remove(3).is_none() && !o.take_dirty());
        assert_eq!(o.ids(), [5, 9]);
        assert!(o.get(9).unwrap().body == Waiting::Sealed(frame(9)));
    }

    #[test]
    fn roundtrips_sealed_with_the_same_bytes_and_refuses_damage() {
        let mut o = Outbox::new();
        o.push("bob", Waiting::Sealed(frame(5)));
        o.push("carol", Waiting::Sealed(frame(6)));
        o.push("dave", Waiting::Text { id: 7, ts: 8, text: Zeroizing::new("first words".into()) });
        let key = vault::subkey(&[5; 32], KIND);
        let sealed = vault::seal(KIND, "alice", &key, 1, &[], &o.encode());
        let back = Outbox::decode(&vault::unseal(KIND, "alice", &key, &sealed).unwrap().1).unwrap();
        assert_eq!(back.ids(), [5, 6, 7]);
        assert!(back.get(6).unwrap().body == Waiting::Sealed(frame(6)), "the same bytes are resent");
        assert!(
            matches!(&back.get(7).unwrap().body, Waiting::Text { id: 7, ts: 8, text } if text.as_str() == "first words")
        );
        assert_eq!(back.get(6).unwrap().peer, "carol");
        let mut again = back;
        again.sealed(frame(7));
        assert!(again.get(7).unwrap().body == Waiting::Sealed(frame(7)) && again.take_dirty());
        let wrong = vault::subkey(&[0x77; 32], KIND);
        assert!(matches!(vault::unseal(KIND, "alice", &wrong, &sealed), Err(KeyFileError::WrongPassword)));
        let plain = o.encode();
        assert!(Outbox::decode(&plain[..plain.len() - 1]).is_err());
        let mut other = plain.to_vec();
        other[14] ^= 1; // the opcode of the first frame
        assert!(Outbox::decode(&other).is_err());
    }
}
