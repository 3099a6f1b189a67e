//! Local-state layer: the public keys of other users, pinned on first sight
//! by canonical user name (DESIGN §6, §7, §9), in `<home>/<server_tag>/<user>/pins`.
//!
//! Invariant: a pin maps a name to one UID and one pair of keys, and, once
//! made, is never replaced by what the server lists later. The same name
//! under another UID, or with other keys, is a key change: the pin is kept,
//! marked `changed` with what was listed, and messages from that name are
//! never shown as verified until the user's `/trust`, the only way a pin is
//! replaced. A UID that two pins claim is ambiguous and resolves to no one.
//! The file is sealed in the user's key store (`store`, format in `vault`)
//! and only ever written whole (`home::write_atomic`, 0600).
//!
//! Plaintext (text, one pin per line after the header line `sotto pins v2`):
//! `<name> <uid, 16 hex> <id_pub, 512 hex> <enc_pub, 64 hex>`, followed, for
//! a changed pin, by ` <listed uid> <listed id_pub> <listed enc_pub> <binds: 0|1>`.

use std::collections::BTreeMap;

use sotto::crypto;
use sotto::identity::RSA_BYTES;

use crate::keystore::KeyFileError;
use crate::store::Store;
use crate::vault::Kind;

/// The pins file.
pub const KIND: Kind = Kind { file: "pins", magic: *b"SOTP", name: "pins", id: 3, what: "pins" };
const HEADER: &str = "sotto pins v2";
/// How the protocol-1 pins file began (it was plain text, keyed by UID).
pub const TEXT_HEADER: &str = "sotto pins v1";

/// Names pinned at most; past it a name the server lists is not pinned (its
/// messages show unverified). A full file (1,260 bytes a changed pin) stays
/// far below what the key store reads back (`store::MAX_FILE_BYTES`): one
/// written larger would be refused at the next login and every name, an
/// impostor's too, pinned afresh. Names are not forgotten to make room, for
/// the same reason.
pub const PINS_MAX: usize = 16_384;

/// A UID with its keys, as pinned or as the server listed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The account's UID.
    pub uid: u64,
    /// RSA-2048 identity modulus.
    pub id_pub: [u8; RSA_BYTES],
    /// X25519 encryption key (for direct messages).
    pub enc_pub: [u8; 32],
}

/// What the server listed for a pinned name that differs from the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// UID and keys as listed.
    pub binding: Binding,
    /// Their identity key signed the deployment, UID, name and encryption key.
    pub binds: bool,
}

/// What the client trusts about one user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// UID and keys as first listed, or as trusted last.
    pub binding: Binding,
    /// The server later listed another UID or other keys for this name.
    pub listed: Option<Listed>,
}

impl Pin {
    /// A key change is pending: nothing from this name verifies until `/trust`.
    pub fn changed(&self) -> bool {
        self.listed.is_some()
    }
}

/// How listed keys compare with the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First sight: pinned now.
    New,
    /// The pinned UID and keys.
    Same,
    /// Another UID or other keys than the pinned ones: the pin is kept and marked changed.
    Changed,
    /// Not pinned: [`PINS_MAX`] names are pinned already.
    Full,
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

/// Every pin, by canonical user name, and whether they changed since the last save.
#[derive(Debug, Default)]
pub struct Pins {
    map: BTreeMap<String, Pin>,
    dirty: bool,
}

impl Pins {
    /// No pins.
    pub fn new() -> Pins {
        Pins::default()
    }

    /// The pin of `name` (canonical).
    pub fn get(&self, name: &str) -> Option<&Pin> {
        self.map.get(name)
    }

    /// The one name pinned to `uid`, with its pin; `None` when no pin, or more
    /// than one, claims it (an ambiguous UID is never resolved to the first).
    pub fn by_uid(&self, uid: u64) -> Option<(&str, &Pin)> {
        let mut found = self.map.iter().filter(|(_, p)| p.binding.uid == uid);
        let first = found.next()?;
        found.next().is_none().then_some((first.0.as_str(), first.1))
    }

    /// Compares what the server lists for `name` with its pin, pinning it on
    /// first sight; `binds` says whether the listed identity key signed the rest.
    pub fn observe(&mut self, name: &str, listed: Binding, binds: bool) -> Seen {
        let full = self.map.len() >= PINS_MAX;
        match self.map.get_mut(name) {
            None if full => Seen::Full,
            None => {
                self.map.insert(name.to_string(), Pin { binding: listed, listed: None });
                self.dirty = true;
                Seen::New
            }
            Some(p) if p.binding == listed => Seen::Same,
            Some(p) => {
                let l = Some(Listed { binding: listed, binds });
                if p.listed != l {
                    p.listed = l;
                    self.dirty = true;
                }
                Seen::Changed
            }
        }
    }

    /// Pins `binding` for `name` whatever was pinned before: the user trusted
    /// it (`/trust`, DESIGN §7); the only way a pin is replaced.
    pub fn replace(&mut self, name: &str, binding: Binding) {
        let pin = Pin { binding, listed: None };
        if self.map.get(name) != Some(&pin) {
            self.map.insert(name.to_string(), pin);
            self.dirty = true;
        }
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The file text.
    pub fn encode(&self) -> String {
        let line = 34 + 17 + 513 + 65;
        let mut out = String::with_capacity(HEADER.len() + 1 + self.map.len() * 2 * line);
        out.push_str(HEADER);
        out.push('\n');
        for (name, p) in &self.map {
            out.push_str(name);
            push_binding(&mut out, &p.binding);
            if let Some(l) = &p.listed {
                push_binding(&mut out, &l.binding);
                out.push_str(if l.binds { " 1" } else { " 0" });
            }
            out.push('\n');
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
            let (name, pin) = parse_line(line).ok_or(PinsError::Damaged(i + 2))?;
            if map.insert(name, pin).is_some() {
                return Err(PinsError::Damaged(i + 2));
            }
        }
        Ok(Pins { map, dirty: false })
    }
}

fn push_binding(out: &mut String, b: &Binding) {
    out.push_str(&format!(" {:016x} {} {}", b.uid, crypto::hex(&b.id_pub), crypto::hex(&b.enc_pub)));
}

fn parse_binding(uid: &str, id_pub: &str, enc_pub: &str) -> Option<Binding> {
    let uid = u64::from_str_radix(uid, 16).ok().filter(|_| uid.len() == 16)?;
    let id_pub = crypto::unhex(id_pub)?.try_into().ok()?;
    let enc_pub = crypto::unhex(enc_pub)?.try_into().ok()?;
    Some(Binding { uid, id_pub, enc_pub })
}

fn parse_line(line: &str) -> Option<(String, Pin)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (name, binding, listed) = match fields[..] {
        [name, uid, id_pub, enc_pub] => (name, parse_binding(uid, id_pub, enc_pub)?, None),
        [name, uid, id_pub, enc_pub, luid, lid, lenc, binds] => {
            let binds = match binds {
                "1" => true,
                "0" => false,
                _ => return None,
            };
            let listed = Listed { binding: parse_binding(luid, lid, lenc)?, binds };
            (name, parse_binding(uid, id_pub, enc_pub)?, Some(listed))
        }
        _ => return None,
    };
    let name = sotto::account::normalize_username(name).ok().filter(|n| n == name)?;
    Some((name, Pin { binding, listed }))
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

    fn binding(uid: u64, b: u8) -> Binding {
        Binding { uid, id_pub: [b; RSA_BYTES], enc_pub: [b.wrapping_add(1); 32] }
    }

    #[test]
    fn a_flood_of_names_listed_by_the_server_stays_within_what_is_read_back() {
        // A server lists ever more members (joins, who answers): past the cap
        // nothing more is pinned, so the file still opens at the next login
        // (refused, it would leave every name to be pinned afresh, impostors too).
        let mut pins = Pins::new();
        let n = crate::store::MAX_FILE_BYTES as usize / (2 * RSA_BYTES) + 1;
        let mut full = 0;
        for i in 0..n as u64 {
            if pins.observe(&format!("u{i}"), binding(i, 1), true) == Seen::Full {
                full += 1;
            }
        }
        assert_eq!(pins.map.len(), PINS_MAX);
        assert_eq!(full, n - PINS_MAX);
        // Changed pins (twice the line) of every name still fit.
        for i in 0..PINS_MAX as u64 {
            assert_eq!(pins.observe(&format!("u{i}"), binding(i, 2), true), Seen::Changed);
        }
        let len = pins.encode().len() as u64;
        assert!(len < crate::store::MAX_FILE_BYTES / 2, "{len} bytes");
        assert_eq!(pins.observe("u0", binding(0, 1), true), Seen::Same, "pinned names are still compared");
    }

    #[test]
    fn pins_a_name_on_first_sight_and_keeps_it_when_the_uid_or_key_changes() {
        let mut pins = Pins::new();
        assert_eq!(pins.observe("alice", binding(7, 1), true), Seen::New);
        assert!(pins.take_dirty() && !pins.take_dirty());
        assert_eq!(pins.observe("alice", binding(7, 1), true), Seen::Same);
        assert!(!pins.take_dirty());
        assert_eq!(pins.observe("alice", binding(8, 1), true), Seen::Changed, "the same keys under another UID");
        assert!(pins.take_dirty());
        assert_eq!(pins.observe("alice", binding(7, 9), true), Seen::Changed, "other keys under the same UID");
        assert!(pins.take_dirty(), "what was listed is noted");
        assert_eq!(pins.observe("alice", binding(7, 9), true), Seen::Changed);
        assert!(!pins.take_dirty(), "already noted");
        let p = pins.get("alice").unwrap();
        assert_eq!((p.binding, p.changed()), (binding(7, 1), true), "the first binding stays pinned");
        assert_eq!(pins.by_uid(7).map(|(n, _)| n), Some("alice"));
        assert!(pins.by_uid(8).is_none(), "the impostor's UID resolves to no one");
        pins.replace("alice", binding(7, 9));
        assert_eq!((pins.get("alice").unwrap().binding, pins.get("alice").unwrap().changed()), (binding(7, 9), false));
    }

    #[test]
    fn an_ambiguous_uid_resolves_to_no_one() {
        let mut pins = Pins::new();
        pins.observe("alice", binding(7, 1), true);
        assert!(pins.by_uid(7).is_some());
        pins.observe("mallory", binding(7, 2), true);
        assert!(pins.by_uid(7).is_none(), "two names claim UID 7: neither is taken");
    }

    #[test]
    fn roundtrips_through_the_file_text() {
        let mut pins = Pins::new();
        pins.observe("bob", binding(0xdead_beef, 0xab), true);
        pins.observe("carol.x", binding(1, 1), true);
        pins.observe("carol.x", binding(2, 1), false);
        let text = pins.encode();
        assert!(text.starts_with("sotto pins v2\nbob 00000000deadbeef abab"), "{text}");
        let back = Pins::decode(&text).unwrap();
        assert_eq!(back.get("bob"), pins.get("bob"));
        assert_eq!(back.get("carol.x"), pins.get("carol.x"));
        assert!(back.get("carol.x").unwrap().changed());
        assert_eq!(back.encode(), text);
    }

    #[test]
    fn refuses_damaged_files() {
        let mut pins = Pins::new();
        pins.observe("dave", binding(5, 3), true);
        pins.observe("erin", binding(6, 3), true);
        pins.observe("erin", binding(6, 4), true);
        let text = pins.encode();
        for bad in [
            String::new(),
            text.replace("v2", "v1"),
            text.replace("dave", "Dave"),
            text.replace(" 1\n", " 2\n"),
            text.replace("0303", "030"),
            format!("{text}garbage\n"),
            format!("{text}{}", text.lines().nth(1).unwrap()),
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
        assert!(load(&mut store).unwrap().get("dave").is_none());
        let mut pins = Pins::new();
        pins.observe("dave", binding(5, 3), true);
        save(&mut store, &pins).unwrap();
        let file = crate::vault::path(&home, "alice", KIND);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(b"SOTP\x02"), "sealed, not text");
        assert!(!bytes.windows(4).any(|w| w == b"dave"), "the names are not in clear");
        let mut store = Store::open(&home, "alice", "password123").unwrap();
        assert_eq!(load(&mut store).unwrap().get("dave"), pins.get("dave"));
        // A protocol-1 text file is named as such.
        let mut fresh = Store::create_with(&home, "alice", "password123", cheap).unwrap();
        std::fs::write(&file, format!("{TEXT_HEADER}\n")).unwrap();
        assert!(matches!(load(&mut fresh), Err(PinsError::Store(KeyFileError::UnsupportedVersion(1)))));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
