//! Local-state layer: the contact book of direct messages (DESIGN §7, §9),
//! sealed in `<home>/<server_tag>/<user>/contacts` (see `vault`).
//!
//! Invariant: a contact's keys are pinned when the DM channel is accepted and
//! replaced only by `/trust`; other keys the server lists later are kept
//! aside as `listed`, and the contact is not trusted until the user trusts
//! them. Nothing is sent to, or shown from, a contact that is not trusted.
//!
//! Plaintext: `u32 count || count × (uid (8) || u8 len || name || id_pub (256)
//! || enc_pub (32) || flags (1: bit 0 trusted, bit 1 listed keys follow, bit 2
//! they bind) || [listed id_pub (256) || listed enc_pub (32)])`.

use std::collections::BTreeMap;

use sotto::identity::{self, RSA_BYTES};
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::vault::{self, Kind, Reader};

/// The contacts file.
pub const KIND: Kind = Kind { file: "contacts", magic: *b"SOTC", name: "contacts", id: 4, what: "contacts" };

const TRUSTED: u8 = 1;
const LISTED: u8 = 2;
const BINDS: u8 = 4;

/// Public keys as the server lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// RSA-2048 identity modulus.
    pub id_pub: [u8; RSA_BYTES],
    /// X25519 encryption key.
    pub enc_pub: [u8; 32],
}

impl Keys {
    /// Hex of SHA-256 of the identity modulus.
    pub fn fingerprint(&self) -> String {
        sotto::crypto::hex(&identity::fingerprint(&self.id_pub))
    }
}

/// Keys the server listed that differ from the pinned ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The keys.
    pub keys: Keys,
    /// Their identity key signed the name and encryption key.
    pub binds: bool,
}

/// One accepted DM contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact's UID.
    pub uid: u64,
    /// User name.
    pub name: String,
    /// The pinned keys.
    pub keys: Keys,
    /// False after the server listed other keys, until `/trust`.
    pub trusted: bool,
    /// The other keys the server listed, if any.
    pub listed: Option<Listed>,
}

/// Why `/trust` cannot trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustError {
    /// No such contact.
    Unknown,
    /// The listed keys do not bind (their identity key did not sign the encryption key).
    Unbound,
}

/// Every contact, by UID, and whether they changed since the last save.
#[derive(Debug, Default)]
pub struct Contacts {
    map: BTreeMap<u64, Contact>,
    dirty: bool,
}

impl Contacts {
    /// No contacts.
    pub fn new() -> Contacts {
        Contacts::default()
    }

    /// The contact `uid`.
    pub fn get(&self, uid: u64) -> Option<&Contact> {
        self.map.get(&uid)
    }

    /// The contact named `name` (canonical).
    pub fn by_name(&self, name: &str) -> Option<&Contact> {
        self.map.values().find(|c| c.name == name)
    }

    /// Every contact, by name.
    pub fn all(&self) -> Vec<&Contact> {
        let mut all: Vec<&Contact> = self.map.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Pins a new contact (replacing nothing: callers check `get` first).
    pub fn pin(&mut self, uid: u64, name: &str, keys: Keys) {
        let c = Contact { uid, name: name.to_string(), keys, trusted: true, listed: None };
        self.map.insert(uid, c);
        self.dirty = true;
    }

    /// Notes keys the server lists for `uid`: true when they differ from the pinned ones
    /// (then the contact is not trusted any more).
    pub fn observe(&mut self, uid: u64, listed: Listed) -> bool {
        let Some(c) = self.map.get_mut(&uid) else { return false };
        if c.keys == listed.keys {
            return false;
        }
        if c.trusted || c.listed != Some(listed) {
            c.trusted = false;
            c.listed = Some(listed);
            self.dirty = true;
        }
        true
    }

    /// `/trust`: the listed keys (if any) become the pinned ones, and the contact is trusted.
    pub fn trust(&mut self, uid: u64) -> Result<&Contact, TrustError> {
        let c = self.map.get_mut(&uid).ok_or(TrustError::Unknown)?;
        match c.listed {
            Some(l) if !l.binds => return Err(TrustError::Unbound),
            Some(l) => c.keys = l.keys,
            None => {}
        }
        if !c.trusted || c.listed.is_some() {
            c.trusted = true;
            c.listed = None;
            self.dirty = true;
        }
        Ok(c)
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The plaintext of the file.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(4 + self.map.len() * (8 + 33 + 2 * (RSA_BYTES + 32) + 1)));
        vault::put_count(&mut out, self.map.len());
        for c in self.map.values() {
            out.extend_from_slice(&c.uid.to_be_bytes());
            vault::put_user(&mut out, &c.name);
            out.extend_from_slice(&c.keys.id_pub);
            out.extend_from_slice(&c.keys.enc_pub);
            let mut flags = if c.trusted { TRUSTED } else { 0 };
            if let Some(l) = &c.listed {
                flags |= LISTED | if l.binds { BINDS } else { 0 };
            }
            out.push(flags);
            if let Some(l) = &c.listed {
                out.extend_from_slice(&l.keys.id_pub);
                out.extend_from_slice(&l.keys.enc_pub);
            }
        }
        out
    }

    /// Parses the plaintext; anything malformed refuses the whole file.
    pub fn decode(plain: &[u8]) -> Result<Contacts, KeyFileError> {
        let mut r = Reader::new(plain);
        let mut map = BTreeMap::new();
        for _ in 0..r.u32()? {
            let uid = r.u64()?;
            let name = r.user()?;
            let keys = Keys { id_pub: r.array()?, enc_pub: r.array()? };
            let flags = r.u8()?;
            if flags & !(TRUSTED | LISTED | BINDS) != 0 {
                return Err(KeyFileError::Damaged);
            }
            let listed = if flags & LISTED != 0 {
                Some(Listed { keys: Keys { id_pub: r.array()?, enc_pub: r.array()? }, binds: flags & BINDS != 0 })
            } else {
                None
            };
            map.insert(uid, Contact { uid, name, keys, trusted: flags & TRUSTED != 0, listed });
        }
        r.end()?;
        Ok(Contacts { map, dirty: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys { id_pub: [b; RSA_BYTES], enc_pub: [b + 1; 32] }
    }

    #[test]
    fn refuses_a_changed_key_until_trusted() {
        let mut c = Contacts::new();
        c.pin(7, "bob", keys(1));
        assert!(c.take_dirty() && c.get(7).unwrap().trusted);
        assert!(!c.observe(7, Listed { keys: keys(1), binds: true }), "the same keys");
        assert!(!c.take_dirty());
        assert!(c.observe(7, Listed { keys: keys(5), binds: true }));
        assert!(c.take_dirty());
        let bob = c.by_name("bob").unwrap();
        assert_eq!((bob.trusted, bob.keys), (false, keys(1)), "the pinned keys stay");
        assert!(c.observe(7, Listed { keys: keys(5), binds: true }));
        assert!(!c.take_dirty(), "already noted");
        assert_eq!(c.trust(7).unwrap().keys, keys(5));
        assert!(c.take_dirty());
        let bob = c.get(7).unwrap();
        assert!(bob.trusted && bob.listed.is_none());
        assert_eq!(c.trust(8).unwrap_err(), TrustError::Unknown);
        c.observe(7, Listed { keys: keys(9), binds: false });
        assert_eq!(c.trust(7).unwrap_err(), TrustError::Unbound);
        assert!(!c.get(7).unwrap().trusted);
    }

    #[test]
    fn roundtrips_sealed_and_refuses_wrong_password_and_damage() {
        let mut c = Contacts::new();
        c.pin(7, "bob", keys(1));
        c.pin(9, "carol.x", keys(3));
        c.observe(9, Listed { keys: keys(4), binds: true });
        let key = vault::subkey(&[3; 32], KIND);
        let sealed = vault::seal(KIND, "alice", &key, 1, &[], &c.encode());
        let plain = vault::unseal(KIND, "alice", &key, &sealed).unwrap().1;
        let back = Contacts::decode(&plain).unwrap();
        assert_eq!(back.get(7), c.get(7));
        assert_eq!(back.get(9), c.get(9));
        assert_eq!(back.all().iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["bob", "carol.x"]);
        let wrong = vault::subkey(&[0x77; 32], KIND);
        assert!(matches!(vault::unseal(KIND, "alice", &wrong, &sealed), Err(KeyFileError::WrongPassword)));
        let plain = c.encode();
        for cut in [0, 3, 10, plain.len() - 1] {
            assert!(Contacts::decode(&plain[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = plain.to_vec();
        bad.push(0);
        assert!(Contacts::decode(&bad).is_err(), "trailing bytes");
    }
}
