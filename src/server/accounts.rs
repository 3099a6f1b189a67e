//! Accounts the server knows, indexed by name and UID, with the names whose
//! registration is in flight and the memory costs of the stored hashes.
//!
//! Invariant: a name is in `by_name` exactly when its account is in
//! `by_uid`; a reserved name is taken until its registration ends.

use std::collections::{BTreeMap, HashMap};

use crate::opcodes::UserRecord;
use crate::server::acct::Acct;
use crate::server::retired::Retired;
use crate::server::store::Store;

/// Accounts known to the server, indexed by name and UID.
#[derive(Default)]
pub struct Accounts {
    by_name: HashMap<String, u64>,
    by_uid: HashMap<u64, UserRecord>,
    /// Names with a registration in flight.
    reserved: HashMap<String, u64>,
    /// How many stored password hashes use each argon2id memory cost (KiB).
    hash_kib: BTreeMap<u32, usize>,
    /// Operator state of the accounts that have any (the others: active, `user`).
    acct: HashMap<u64, Acct>,
    /// Names of deleted accounts, refused to registrations for a while.
    pub(crate) retired: Retired,
}

impl Accounts {
    /// Indexes a stored account.
    pub fn insert(&mut self, rec: UserRecord) {
        if let Ok(name) = rec.username() {
            if let Some(kib) = rec.password_hash().ok().and_then(crate::crypto::phc_kib) {
                *self.hash_kib.entry(kib).or_default() += 1;
            }
            self.by_name.insert(name.to_owned(), rec.uid.get());
            self.by_uid.insert(rec.uid.get(), rec);
        }
    }

    /// Replaces a stored account's record (new secrets), keeping the counts
    /// of hash costs true.
    pub(crate) fn replace(&mut self, rec: UserRecord) {
        let uid = rec.uid.get();
        if let Some(old) = self.by_uid.get(&uid) {
            if let Some(kib) = old.password_hash().ok().and_then(crate::crypto::phc_kib) {
                if let Some(n) = self.hash_kib.get_mut(&kib) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.hash_kib.remove(&kib);
                    }
                }
            }
            self.insert(rec);
        }
    }

    /// The argon2id memory cost (KiB) of the dummy hash an unknown user name
    /// is checked against: that of most stored password hashes, so that an
    /// unknown name costs what a known one does; with no account yet, that
    /// of the hashes made from now on (`--kdf-memory`).
    pub(crate) fn dummy_kib(&self) -> u32 {
        let most = self.hash_kib.iter().max_by_key(|(kib, n)| (**n, **kib)).map(|(kib, _)| *kib);
        most.unwrap_or_else(crate::crypto::stored_hash_kib)
    }

    /// The account named `name`.
    pub(crate) fn by_name(&self, name: &str) -> Option<&UserRecord> {
        self.by_name.get(name).and_then(|uid| self.by_uid.get(uid))
    }

    /// The account with `uid`.
    pub(crate) fn by_uid(&self, uid: u64) -> Option<&UserRecord> {
        self.by_uid.get(&uid)
    }

    /// Whether `name` is taken or being registered.
    pub(crate) fn is_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.reserved.contains_key(name)
    }

    /// Whether `uid` is zero, taken or being registered.
    pub(crate) fn uid_taken(&self, uid: u64) -> bool {
        uid == 0 || self.by_uid.contains_key(&uid) || self.reserved.values().any(|&u| u == uid)
    }

    /// Marks `name` as being registered under `uid` (the client's choice: its
    /// key binding signs it, PROTOCOL.md §5); callers check both are free first.
    pub(crate) fn reserve(&mut self, name: &str, uid: u64) {
        self.reserved.insert(name.to_owned(), uid);
    }

    /// Ends a registration, successful or not.
    pub(crate) fn release(&mut self, name: &str) {
        self.reserved.remove(name);
    }

    /// Sets an account's operator state (as loaded at start).
    pub fn set_acct(&mut self, uid: u64, acct: Acct) {
        self.acct.insert(uid, acct);
    }

    /// The operator state of `uid` (active, `user`, when none was set).
    pub(crate) fn acct(&self, uid: u64) -> Acct {
        self.acct.get(&uid).cloned().unwrap_or_default()
    }

    /// The role bits of `uid` and whether it is denied `mnemonic`, without a copy.
    pub(crate) fn allows(&self, uid: u64, roles: u8, mnemonic: &str) -> (bool, bool) {
        match self.acct.get(&uid) {
            Some(a) => (a.roles & roles != 0, !a.denies(mnemonic)),
            None => (roles & crate::server::acct::ROLE_USER != 0, true),
        }
    }

    /// The operator state of `uid`, to change (call `Core::mark_acct_dirty` after).
    pub(crate) fn acct_mut(&mut self, uid: u64) -> &mut Acct {
        self.acct.entry(uid).or_default()
    }

    /// Every account, by UID.
    pub(crate) fn records(&self) -> impl Iterator<Item = &UserRecord> {
        self.by_uid.values()
    }

    /// Removes the account with `uid`; returns its record.
    pub(crate) fn remove(&mut self, uid: u64) -> Option<UserRecord> {
        let rec = self.by_uid.remove(&uid)?;
        self.acct.remove(&uid);
        if let Ok(name) = rec.username() {
            self.by_name.remove(name);
        }
        if let Some(kib) = rec.password_hash().ok().and_then(crate::crypto::phc_kib) {
            if let Some(n) = self.hash_kib.get_mut(&kib) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.hash_kib.remove(&kib);
                }
            }
        }
        Some(rec)
    }

    /// Loads the retired names of `store` (a corrupt file stops the start).
    pub fn load_retired(&mut self, store: &dyn Store) -> Result<(), String> {
        if let Some(bytes) = store.load_retired().map_err(|e| e.to_string())? {
            self.retired = Retired::decode(&bytes)
                .map_err(|why| format!("retired.db: corrupt ({why}); move it aside to start without it"))?;
        }
        Ok(())
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// Whether there is no account.
    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}
