//! Local-state layer: the public keys of other users, pinned on first sight
//! (DESIGN §6, §9), in `<home>/<server_tag>/<user>/pins`.
//!
//! Invariant: a pin, once made, is never replaced by what the server lists
//! later; a different key for a pinned UID only marks the pin `changed`, and
//! messages from a changed pin are never shown as verified. Only the user's
//! `/trust` replaces a pin. The file is sealed in the user's key store
//! (`store`, format in `vault`) and only ever written whole
//! (`home::write_atomic`, 0600).
//!
//! Plaintext (text, one pin per line after the header line `sotto pins v1`):
//! `<uid, 16 hex> <name> <pinned|changed> <id_pub, 512 hex> <enc_pub, 64 hex>`.

use std::collections::BTreeMap;

use sotto::crypto;
use sotto::identity::RSA_BYTES;

use crate::keystore::KeyFileError;
use crate::store::Store;
use crate::vault::Kind;

/// The pins file.
pub const KIND: Kind = Kind { file: "pins", magic: *b"SOTP", name: "pins", id: 3, what: "pins" };
const HEADER: &str = "sotto pins v1";
/// How the protocol-1 pins file began (it was plain text); also the sealed plaintext's first line.
pub const TEXT_HEADER: &str = HEADER;

/// What the client trusts about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// User name as first listed.
    pub name: String,
    /// RSA-2048 identity modulus as first listed.
    pub id_pub: [u8; RSA_BYTES],
    /// X25519 encryption key as first listed (for direct messages).
    pub enc_pub: [u8; 32],
    /// The server later listed other keys for this UID.
    pub changed: bool,
}

/// How listed keys compare with the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First sight: pinned now.
    New,
    /// The pinned keys.
    Same,
    /// Other keys than the pinned ones: the pin is kept and marked changed.
    Changed,
}

/// Why the pins file could not be read or written.
#[derive(Debug)]
pub enum PinsError {
    /// The sealed file could not be read or opened.
    Store(KeyFileError),
    /// A line does not parse (1-based line number).
    Damaged(usize),
}

impl std::fmt::Display for PinsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinsError::Store(e) => write!(f, "{e}"),
            PinsError::Damaged(line) => write!(f, "the pins file is damaged (line {line})"),
        }
    }
}

impl std::error::Error for PinsError {}

/// Every pin, by UID, and whether they changed since the last save.
#[derive(Debug, Default)]
pub struct Pins {
    map: BTreeMap<u64, Pin>,
    dirty: bool,
}

impl Pins {
    /// No pins.
    pub fn new() -> Pins {
        Pins::default()
    }

    /// The pin of `uid`.
    pub fn get(&self, uid: u64) -> Option<&Pin> {
        self.map.get(&uid)
    }

    /// Compares listed keys with the pin of `uid`, pinning them on first sight.
    pub fn observe(&mut self, uid: u64, name: &str, id_pub: &[u8; RSA_BYTES], enc_pub: &[u8; 32]) -> Seen {
        match self.map.get_mut(&uid) {
            None => {
                let pin = Pin { name: name.to_string(), id_pub: *id_pub, enc_pub: *enc_pub, changed: false };
                self.map.insert(uid, pin);
                self.dirty = true;
                Seen::New
            }
            Some(p) if p.id_pub == *id_pub && p.enc_pub == *enc_pub => Seen::Same,
            Some(p) => {
                if !p.changed {
                    p.changed = true;
                    self.dirty = true;
                }
                Seen::Changed
            }
        }
    }

    /// Pins these keys for `uid` whatever was pinned before: the user trusted
    /// them (`/trust`, DESIGN §7); the only way a pin is replaced.
    pub fn replace(&mut self, uid: u64, name: &str, id_pub: &[u8; RSA_BYTES], enc_pub: &[u8; 32]) {
        let pin = Pin { name: name.to_string(), id_pub: *id_pub, enc_pub: *enc_pub, changed: false };
        if self.map.get(&uid) != Some(&pin) {
            self.map.insert(uid, pin);
            self.dirty = true;
        }
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The file text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(HEADER.len() + 1 + self.map.len() * (16 + 34 + 9 + 512 + 64 + 5));
        out.push_str(HEADER);
        out.push('\n');
        for (uid, p) in &self.map {
            let state = if p.changed { "changed" } else { "pinned" };
            out.push_str(&format!(
                "{uid:016x} {} {state} {} {}\n",
                p.name,
                crypto::hex(&p.id_pub),
                crypto::hex(&p.enc_pub)
            ));
        }
        out
    }

    /// Parses the file text; any malformed line refuses the whole file.
    pub fn decode(text: &str) -> Result<Pins, PinsError> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(PinsError::Damaged(1));
        }
        let mut map = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            let (uid, pin) = parse_line(line).ok_or(PinsError::Damaged(i + 2))?;
            map.insert(uid, pin);
        }
        Ok(Pins { map, dirty: false })
    }
}

fn parse_line(line: &str) -> Option<(u64, Pin)> {
    let [uid, name, state, id_pub, enc_pub] = line.split(' ').collect::<Vec<_>>().try_into().ok()?;
    let uid = u64::from_str_radix(uid, 16).ok().filter(|_| uid.len() == 16)?;
    let name = sotto::account::normalize_username(name).ok().filter(|n| n == name)?;
    let changed = match state {
        "pinned" => false,
        "changed" => true,
        _ => return None,
    };
    let id_pub = crypto::unhex(id_pub)?.try_into().ok()?;
    let enc_pub = crypto::unhex(enc_pub)?.try_into().ok()?;
    Some((uid, Pin { name, id_pub, enc_pub, changed }))
}

/// Opens the pins in `store`; none yet is an empty set.
pub fn load(store: &mut Store) -> Result<Pins, PinsError> {
    match store.load(KIND).map_err(PinsError::Store)? {
        Some(plain) => Pins::decode(std::str::from_utf8(&plain).map_err(|_| PinsError::Damaged(1))?),
        None => Ok(Pins::new()),
    }
}

/// Writes the pins whole, as the next generation.
pub fn save(store: &mut Store, pins: &Pins) -> Result<(), PinsError> {
    store.save(KIND, pins.encode().as_bytes()).map_err(PinsError::Store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; RSA_BYTES] {
        [b; RSA_BYTES]
    }

    #[test]
    fn pins_on_first_sight_and_keeps_the_pin_when_the_key_changes() {
        let mut pins = Pins::new();
        assert_eq!(pins.observe(7, "alice", &key(1), &[2; 32]), Seen::New);
        assert!(pins.take_dirty() && !pins.take_dirty());
        assert_eq!(pins.observe(7, "alice", &key(1), &[2; 32]), Seen::Same);
        assert!(!pins.take_dirty());
        assert_eq!(pins.observe(7, "alice", &key(9), &[2; 32]), Seen::Changed);
        assert!(pins.take_dirty());
        assert_eq!(pins.observe(7, "alice", &key(1), &[3; 32]), Seen::Changed, "enc_pub counts too");
        assert!(!pins.take_dirty(), "already marked");
        let p = pins.get(7).unwrap();
        assert_eq!((p.id_pub, p.changed), (key(1), true), "the first key stays pinned");
    }

    #[test]
    fn roundtrips_through_the_file_text() {
        let mut pins = Pins::new();
        pins.observe(0xdead_beef, "bob", &key(0xab), &[0xcd; 32]);
        pins.observe(1, "carol.x", &key(1), &[0; 32]);
        pins.observe(1, "carol.x", &key(2), &[0; 32]);
        let text = pins.encode();
        assert!(text.starts_with("sotto pins v1\n0000000000000001 carol.x changed 0101"));
        let back = Pins::decode(&text).unwrap();
        assert_eq!(back.get(0xdead_beef), pins.get(0xdead_beef));
        assert_eq!(back.get(1), pins.get(1));
        assert_eq!(back.encode(), text);
    }

    #[test]
    fn refuses_damaged_files() {
        let mut pins = Pins::new();
        pins.observe(5, "dave", &key(3), &[4; 32]);
        let text = pins.encode();
        for bad in [
            String::new(),
            text.replace("v1", "v2"),
            text.replace("dave", "Dave"),
            text.replace("pinned", "trusted"),
            text.replace("0303", "030"),
            format!("{text}garbage\n"),
        ] {
            assert!(matches!(Pins::decode(&bad), Err(PinsError::Damaged(_))), "{bad:?}");
        }
    }

    #[test]
    fn saves_and_loads_a_sealed_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let home = std::env::temp_dir().join(format!("sotto-pins-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        let cheap = crate::store::Params { m_kib: 8, t: 1, p: 1 };
        let mut store = Store::create_with(&home, "alice", "password123", cheap).unwrap();
        assert!(load(&mut store).unwrap().get(5).is_none());
        let mut pins = Pins::new();
        pins.observe(5, "dave", &key(3), &[4; 32]);
        save(&mut store, &pins).unwrap();
        let file = crate::vault::path(&home, "alice", KIND);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(b"SOTP\x02"), "sealed, not text");
        assert!(!bytes.windows(4).any(|w| w == b"dave"), "the names are not in clear");
        let mut store = Store::open(&home, "alice", "password123").unwrap();
        assert_eq!(load(&mut store).unwrap().get(5), pins.get(5));
        // A protocol-1 text file is named as such.
        let mut fresh = Store::create_with(&home, "alice", "password123", cheap).unwrap();
        std::fs::write(&file, pins.encode()).unwrap();
        assert!(matches!(load(&mut fresh), Err(PinsError::Store(KeyFileError::UnsupportedVersion(1)))));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
