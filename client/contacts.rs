//! Local-state layer: the contact book of direct messages (DESIGN §7, §9),
//! sealed in `<home>/<server_tag>/<user>/contacts` (see `vault`).
//!
//! Invariant: contacts are keyed by canonical user name. A contact is pinned
//! only when it answers the user's own request (`/dm`, recorded here until
//! answered) or accept (`/accept`); its UID and keys are then replaced only
//! by `/trust`. Another UID or other keys the server lists later for that name
//! are kept aside as `listed`, and the contact is not trusted until the user
//! trusts them. Nothing is sent to, or shown from, a contact that is not
//! trusted, and a UID that two contacts claim resolves to neither.
//!
//! Plaintext: `u32 count || count × (uid (8) || u8 len || name || id_pub (256)
//! || enc_pub (32) || flags (1: bit 0 trusted, bit 1 listed keys follow, bit 2
//! they bind) || [listed uid (8) || listed id_pub (256) || listed enc_pub (32)])
//! || u32 requests || requests × (u8 len || name) || u32 received || received
//! × (u8 len || name)`: our requests not answered yet, then the requests we
//! received and did not answer yet.

use std::collections::{BTreeMap, BTreeSet};

use sotto::identity::{self, RSA_BYTES};
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::vault::{self, Kind, Reader};

/// The contacts file.
pub const KIND: Kind = Kind { file: "contacts", magic: *b"SOTC", name: "contacts", id: 4, what: "contacts" };

const TRUSTED: u8 = 1;
const LISTED: u8 = 2;
const BINDS: u8 = 4;
/// Requests of ours kept waiting for an answer; beyond, the oldest (by name) are forgotten.
pub const REQUESTS_MAX: usize = 1024;

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

/// A UID and keys the server listed that differ from the pinned ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The UID listed.
    pub uid: u64,
    /// The keys.
    pub keys: Keys,
    /// Their identity key signed the deployment, UID, name and encryption key.
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
    /// False after the server listed another UID or other keys, until `/trust`.
    pub trusted: bool,
    /// The other UID and keys the server listed, if any.
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

/// Every contact, by name, our requests not yet answered, and whether they
/// changed since the last save.
#[derive(Debug, Default)]
pub struct Contacts {
    map: BTreeMap<String, Contact>,
    requested: BTreeSet<String>,
    received: BTreeSet<String>,
    dirty: bool,
}

impl Contacts {
    /// No contacts.
    pub fn new() -> Contacts {
        Contacts::default()
    }

    /// The contact named `name` (canonical).
    pub fn get(&self, name: &str) -> Option<&Contact> {
        self.map.get(name)
    }

    /// The one contact with `uid`; `None` when none, or more than one, claims it.
    pub fn by_uid(&self, uid: u64) -> Option<&Contact> {
        let mut found = self.map.values().filter(|c| c.uid == uid);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// Every contact, by name.
    pub fn all(&self) -> Vec<&Contact> {
        self.map.values().collect()
    }

    /// Notes that we asked `name` for a channel: its accept may pin it.
    pub fn request(&mut self, name: &str) {
        if self.requested.len() >= REQUESTS_MAX && !self.requested.contains(name) {
            self.requested.pop_first();
        }
        self.dirty |= self.requested.insert(name.to_string());
    }

    /// Our requests (`/dm`) still waiting for an answer, by name.
    pub fn requests(&self) -> impl Iterator<Item = &str> {
        self.requested.iter().map(String::as_str)
    }

    /// Requests we received and did not answer yet, by name.
    pub fn received(&self) -> impl Iterator<Item = &str> {
        self.received.iter().map(String::as_str)
    }

    /// Notes a request from `name` (`dmrq`), until we accept or reject it.
    pub fn receive(&mut self, name: &str) {
        if self.received.len() >= REQUESTS_MAX && !self.received.contains(name) {
            self.received.pop_first();
        }
        self.dirty |= self.received.insert(name.to_string());
    }

    /// Forgets the request from `name` (accepted or rejected).
    pub fn handled(&mut self, name: &str) {
        self.dirty |= self.received.remove(name);
    }

    /// Whether we asked `name` for a channel and have no answer yet.
    pub fn requested(&self, name: &str) -> bool {
        self.requested.contains(name)
    }

    /// Forgets our request to `name` (answered: accepted or rejected).
    pub fn answered(&mut self, name: &str) {
        self.dirty |= self.requested.remove(name);
    }

    /// Pins a new contact (replacing nothing: callers check `get` first); its request is answered.
    pub fn pin(&mut self, uid: u64, name: &str, keys: Keys) {
        let c = Contact { uid, name: name.to_string(), keys, trusted: true, listed: None };
        self.map.insert(name.to_string(), c);
        self.requested.remove(name);
        self.received.remove(name);
        self.dirty = true;
    }

    /// Notes the UID and keys the server lists for `name`: true when they
    /// differ from the pinned ones (then the contact is not trusted any more).
    pub fn observe(&mut self, name: &str, listed: Listed) -> bool {
        let Some(c) = self.map.get_mut(name) else { return false };
        if c.uid == listed.uid && c.keys == listed.keys {
            // Listed with the pinned keys again: an earlier listing is no
            // longer what /trust would pin (still refused until /trust).
            self.dirty |= c.listed.take().is_some();
            return false;
        }
        if c.trusted || c.listed != Some(listed) {
            c.trusted = false;
            c.listed = Some(listed);
            self.dirty = true;
        }
        true
    }

    /// `/trust`: the listed UID and keys (if any) become the pinned ones, and the contact is trusted.
    pub fn trust(&mut self, name: &str) -> Result<&Contact, TrustError> {
        let c = self.map.get_mut(name).ok_or(TrustError::Unknown)?;
        match c.listed {
            Some(l) if !l.binds => return Err(TrustError::Unbound),
            Some(l) => (c.uid, c.keys) = (l.uid, l.keys),
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
        let each = 8 + 33 + 2 * (RSA_BYTES + 32) + 9;
        let mut out = Zeroizing::new(Vec::with_capacity(8 + self.map.len() * each + self.requested.len() * 33));
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
                out.extend_from_slice(&l.uid.to_be_bytes());
                out.extend_from_slice(&l.keys.id_pub);
                out.extend_from_slice(&l.keys.enc_pub);
            }
        }
        for set in [&self.requested, &self.received] {
            vault::put_count(&mut out, set.len());
            for name in set {
                vault::put_user(&mut out, name);
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
                let uid = r.u64()?;
                let keys = Keys { id_pub: r.array()?, enc_pub: r.array()? };
                Some(Listed { uid, keys, binds: flags & BINDS != 0 })
            } else {
                None
            };
            let c = Contact { uid, name: name.clone(), keys, trusted: flags & TRUSTED != 0, listed };
            if map.insert(name, c).is_some() {
                return Err(KeyFileError::Damaged);
            }
        }
        let mut sets = [BTreeSet::new(), BTreeSet::new()];
        for set in &mut sets {
            for _ in 0..r.u32()? {
                if !set.insert(r.user()?) || set.len() > REQUESTS_MAX {
                    return Err(KeyFileError::Damaged);
                }
            }
        }
        r.end()?;
        let [requested, received] = sets;
        Ok(Contacts { map, requested, received, dirty: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys { id_pub: [b; RSA_BYTES], enc_pub: [b + 1; 32] }
    }

    fn listed(uid: u64, b: u8, binds: bool) -> Listed {
        Listed { uid, keys: keys(b), binds }
    }

    #[test]
    fn refuses_a_changed_key_or_uid_until_trusted() {
        let mut c = Contacts::new();
        c.pin(7, "bob", keys(1));
        assert!(c.take_dirty() && c.get("bob").unwrap().trusted);
        assert!(!c.observe("bob", listed(7, 1, true)), "the same UID and keys");
        assert!(!c.take_dirty());
        assert!(c.observe("bob", listed(7, 5, true)));
        assert!(c.take_dirty());
        let bob = c.get("bob").unwrap();
        assert_eq!((bob.trusted, bob.keys), (false, keys(1)), "the pinned keys stay");
        assert!(c.observe("bob", listed(7, 5, true)));
        assert!(!c.take_dirty(), "already noted");
        assert_eq!(c.trust("bob").unwrap().keys, keys(5));
        assert!(c.take_dirty());
        let bob = c.get("bob").unwrap();
        assert!(bob.trusted && bob.listed.is_none());
        assert_eq!(c.trust("carol").unwrap_err(), TrustError::Unknown);
        c.observe("bob", listed(7, 9, false));
        assert_eq!(c.trust("bob").unwrap_err(), TrustError::Unbound);
        assert!(!c.get("bob").unwrap().trusted);
    }

    #[test]
    fn the_same_name_under_another_uid_is_a_key_change() {
        let mut c = Contacts::new();
        c.pin(7, "bob", keys(1));
        assert!(c.observe("bob", listed(8, 1, true)), "same keys, other UID");
        assert!(!c.get("bob").unwrap().trusted);
        assert_eq!(c.by_uid(7).map(|b| b.name.as_str()), Some("bob"));
        assert!(c.by_uid(8).is_none(), "the listed UID is not the contact");
        assert_eq!(c.trust("bob").unwrap().uid, 8, "until trusted");
    }

    #[test]
    fn an_ambiguous_uid_is_no_contact() {
        let mut c = Contacts::new();
        c.pin(7, "bob", keys(1));
        c.pin(7, "bobby", keys(2));
        assert!(c.by_uid(7).is_none());
    }

    #[test]
    fn a_request_is_kept_until_answered() {
        let mut c = Contacts::new();
        c.request("bob");
        assert!(c.take_dirty() && c.requested("bob") && !c.requested("carol"));
        c.request("bob");
        assert!(!c.take_dirty(), "already asked");
        c.pin(7, "bob", keys(1));
        assert!(!c.requested("bob"), "pinned: answered");
        c.request("carol");
        c.answered("carol");
        assert!(!c.requested("carol"));
    }

    #[test]
    fn roundtrips_sealed_and_refuses_wrong_password_and_damage() {
        let mut c = Contacts::new();
        c.pin(7, "bob", keys(1));
        c.pin(9, "carol.x", keys(3));
        c.observe("carol.x", listed(10, 4, true));
        c.request("dave");
        c.receive("erin");
        let key = vault::subkey(&[3; 32], KIND);
        let sealed = vault::seal(KIND, "alice", &key, 1, &[], &c.encode());
        let plain = vault::unseal(KIND, "alice", &key, &sealed).unwrap().1;
        let back = Contacts::decode(&plain).unwrap();
        assert_eq!(back.get("bob"), c.get("bob"));
        assert_eq!(back.get("carol.x"), c.get("carol.x"));
        assert!(back.requested("dave"));
        assert_eq!(back.received().collect::<Vec<_>>(), ["erin"]);
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
