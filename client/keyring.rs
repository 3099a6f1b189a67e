//! Local-state layer: the keys of the rooms the user is in, at rest in
//! `<home>/<server_tag>/<user>/rooms` (DESIGN §6, §9), so that the room
//! password is asked only once.
//!
//! Invariant: the file is sealed in the user's key store (`store`, format in
//! `vault`) and only ever written whole (`home::write_atomic`, 0600).
//!
//! Plaintext: `u16 BE count || count × (u8 len(name) || name || auth (32) || enc (16) || mac (32))`.

use std::collections::BTreeMap;

use sotto::crypto::{self, AeadKeys};
use sotto::room::{self, RoomKeys};
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::store::Store;
use crate::vault::Kind;

/// The room keys file.
pub const KIND: Kind = Kind { file: "rooms", magic: *b"SOTM", name: "rooms", id: 2, what: "room keys" };
const ENTRY_KEYS: usize = 32 + 16 + 32;

/// The keys of every room the user is in, by canonical room name.
#[derive(Default)]
pub struct Keyring {
    rooms: BTreeMap<String, RoomKeys>,
    dirty: bool,
}

impl Keyring {
    /// No rooms.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// The rooms whose keys are kept, in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// The keys of `room` (canonical name).
    pub fn get(&self, room: &str) -> Option<&RoomKeys> {
        self.rooms.get(room)
    }

    /// Keeps the keys of `room`, replacing older ones.
    pub fn insert(&mut self, room: &str, keys: RoomKeys) {
        let same = self.rooms.get(room).is_some_and(|k| {
            crypto::ct_eq(&k.auth[..], &keys.auth[..])
                && crypto::ct_eq(&k.content.enc[..], &keys.content.enc[..])
                && crypto::ct_eq(&k.content.mac[..], &keys.content.mac[..])
        });
        if !same {
            self.rooms.insert(room.to_string(), keys);
            self.dirty = true;
        }
    }

    /// Forgets the keys of `room`; true if there were any.
    pub fn remove(&mut self, room: &str) -> bool {
        let had = self.rooms.remove(room).is_some();
        self.dirty |= had;
        had
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(2 + self.rooms.len() * (1 + room::NAME_MAX + ENTRY_KEYS)));
        // At most one entry per valid room name, far below u16::MAX in practice; the count saturates.
        out.extend_from_slice(&u16::try_from(self.rooms.len()).unwrap_or(u16::MAX).to_be_bytes());
        for (name, keys) in self.rooms.iter().take(usize::from(u16::MAX)) {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&keys.auth[..]);
            out.extend_from_slice(&keys.content.enc[..]);
            out.extend_from_slice(&keys.content.mac[..]);
        }
        out
    }

    fn decode(mut plain: &[u8]) -> Result<Keyring, KeyFileError> {
        let count = take::<2>(&mut plain)?;
        let mut rooms = BTreeMap::new();
        for _ in 0..u16::from_be_bytes(*count) {
            let [len] = *take::<1>(&mut plain)?;
            let (name, rest) = plain.split_at_checked(usize::from(len)).ok_or(KeyFileError::Damaged)?;
            plain = rest;
            let name = std::str::from_utf8(name).map_err(|_| KeyFileError::Damaged)?;
            let name = room::normalize_name(name).ok().filter(|n| n == name).ok_or(KeyFileError::Damaged)?;
            let keys = take::<ENTRY_KEYS>(&mut plain)?;
            let mut material = Zeroizing::new([0u8; 48]);
            material.copy_from_slice(&keys[32..]);
            let mut auth = Zeroizing::new([0u8; 32]);
            auth.copy_from_slice(&keys[..32]);
            rooms.insert(name, RoomKeys { auth, content: AeadKeys::from_material(&material) });
        }
        if !plain.is_empty() {
            return Err(KeyFileError::Damaged);
        }
        Ok(Keyring { rooms, dirty: false })
    }
}

fn take<'a, const N: usize>(buf: &mut &'a [u8]) -> Result<&'a [u8; N], KeyFileError> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or(KeyFileError::Damaged)?;
    *buf = rest;
    Ok(head)
}

/// Opens the room keys in `store`; without a file, an empty keyring.
pub fn load(store: &mut Store) -> Result<Keyring, KeyFileError> {
    match store.load(KIND)? {
        Some(plain) => Keyring::decode(&plain),
        None => Ok(Keyring::new()),
    }
}

/// Writes the room keys whole, as the next generation.
pub fn save(store: &mut Store, ring: &Keyring) -> Result<(), KeyFileError> {
    store.save(KIND, &ring.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> RoomKeys {
        room::from_master("x", &[b; 32], &[b; 16])
    }

    fn ring() -> Keyring {
        let mut r = Keyring::new();
        r.insert("lobby", keys(1));
        r.insert("a-b_c", keys(2));
        r
    }

    #[test]
    fn roundtrips_and_refuses_damage() {
        let back = Keyring::decode(&ring().encode()).unwrap();
        for name in ["lobby", "a-b_c"] {
            let (a, b) = (ring(), back.get(name).unwrap());
            assert_eq!(*a.get(name).unwrap().auth, *b.auth);
            assert_eq!(*a.get(name).unwrap().content.mac, *b.content.mac);
        }
        assert!(back.get("other").is_none());
        let plain = ring().encode();
        for cut in [0, 1, 2, 3, 20, plain.len() - 1] {
            assert!(Keyring::decode(&plain[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn tracks_changes_and_saves_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let mut r = ring();
        assert!(r.take_dirty());
        r.insert("lobby", keys(1));
        assert!(!r.take_dirty(), "the same keys again change nothing");
        assert!(r.remove("lobby") && r.take_dirty());
        assert!(!r.remove("lobby") && !r.take_dirty());

        let home = std::env::temp_dir().join(format!("sotto-keyring-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        let cheap = crate::store::Params { m_kib: 8, t: 1, p: 1 };
        let mut store = Store::create_with(&home, "alice", "password123", cheap).unwrap();
        let empty = load(&mut store).unwrap();
        assert!(empty.get("a-b_c").is_none());
        save(&mut store, &r).unwrap();
        let path = crate::vault::path(&home, "alice", KIND);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut store = Store::open(&home, "alice", "password123").unwrap();
        let back = load(&mut store).unwrap();
        assert!(back.get("a-b_c").is_some() && back.get("lobby").is_none());
        std::fs::remove_dir_all(&home).unwrap();
    }
}
