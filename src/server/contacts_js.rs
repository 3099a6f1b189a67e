//! The contacts on JetStream: one record per pair of users with something
//! between them, `sotto.r.pair.<lo>-<hi>` (their UIDs, lower first, 16 hex
//! digits each), whose content is one byte, the pair's state
//! (`contacts::ASKED_UP`, `ASKED_DOWN`, `ACCEPTED`); a pair with nothing
//! left is removed (a tombstone). A request or an accept writes its pair,
//! not every pair of the deployment, as the file store's `contacts.db` is
//! rewritten.
//!
//! Contacts written by an earlier version are one record,
//! `sotto.r.data.contacts`: they are loaded with the pairs over them, and
//! the first write of the contacts after that writes every pair and then
//! removes that record (a crash between leaves both, loaded the same way).

use super::{corrupt, data_subject, JetStreamStore, Last};
use crate::server::contacts::{Contacts, ACCEPTED, ASKED_DOWN, ASKED_UP};
use crate::server::store::{ContactsWrite, StoreError};

/// Pairs written at once (their acknowledgements awaited together).
const PAIRS_AT_ONCE: usize = 256;

/// The subject of the pair `lo`, `hi`.
pub(super) fn pair_subject((lo, hi): (u64, u64)) -> String {
    format!("sotto.r.pair.{lo:016x}-{hi:016x}")
}

/// The pair a subject names, lower UID first.
fn pair_of(subject: &str) -> Result<(u64, u64), StoreError> {
    let named = subject.strip_prefix("sotto.r.pair.").and_then(|p| p.split_once('-'));
    let parsed =
        named.and_then(|(lo, hi)| Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?)));
    match parsed {
        Some((lo, hi)) if lo < hi => Ok((lo, hi)),
        _ => Err(corrupt(subject, "not a pair of UIDs, the lower first")),
    }
}

impl JetStreamStore {
    /// The contacts file's bytes, rebuilt from the pairs (over the single
    /// record of an earlier version, if there is one); `None` when there is
    /// nothing.
    pub(super) fn load_pairs(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let single = data_subject("contacts");
        let old = self.load_one(&single)?;
        let pairs = self.load("sotto.r.pair.*")?;
        *self.contacts_single.lock().unwrap_or_else(|e| e.into_inner()) = old.is_some();
        if old.is_none() && pairs.is_empty() {
            return Ok(None);
        }
        let mut contacts = match &old {
            Some(bytes) => Contacts::decode(bytes).map_err(|why| corrupt(&single, why))?,
            None => Contacts::default(),
        };
        for (subject, content) in pairs {
            let pair = pair_of(&subject)?;
            match content[..] {
                [state] if state != 0 && state & !(ASKED_UP | ASKED_DOWN | ACCEPTED) == 0 => {
                    contacts.set_state(pair, state)
                }
                _ => return Err(corrupt(&subject, "not a pair's state")),
            }
        }
        Ok(Some(contacts.encode()))
    }

    /// Writes the changed pairs (every pair, the first time after loading
    /// contacts of an earlier version, and then removes their record).
    pub(super) async fn write_pairs(&self, w: &ContactsWrite) -> Result<(), StoreError> {
        let single = *self.contacts_single.lock().unwrap_or_else(|e| e.into_inner());
        let states: Vec<((u64, u64), u8)> = if single {
            let all = Contacts::decode(&w.file).map_err(|why| corrupt("contacts", why))?;
            all.pairs().into_iter().map(|p| (p, all.state(p))).collect()
        } else {
            w.pairs.clone()
        };
        for batch in states.chunks(PAIRS_AT_ONCE) {
            let writes = batch.iter().map(|&(pair, state)| self.write_pair(pair, state));
            futures_util::future::join_all(writes).await.into_iter().collect::<Result<(), StoreError>>()?;
        }
        if single {
            self.remove(&data_subject("contacts")).await?;
            *self.contacts_single.lock().unwrap_or_else(|e| e.into_inner()) = false;
        }
        Ok(())
    }

    async fn write_pair(&self, pair: (u64, u64), state: u8) -> Result<(), StoreError> {
        let subject = pair_subject(pair);
        if state != 0 {
            return self.replace(&subject, &[state]).await;
        }
        // A pair never stored (asked and rejected between two commits) needs no tombstone.
        let stored = self.last.lock().unwrap_or_else(|e| e.into_inner()).get(&subject).copied();
        match stored {
            None | Some(Last::Known(0)) => Ok(()),
            Some(_) => self.remove(&subject).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_subject_names_both_uids_lower_first() {
        let s = pair_subject((0x1f, 0xabc));
        assert_eq!(s, "sotto.r.pair.000000000000001f-0000000000000abc");
        assert_eq!(pair_of(&s).unwrap(), (0x1f, 0xabc));
        for bad in ["sotto.r.pair.2-1", "sotto.r.pair.1-1", "sotto.r.pair.1", "sotto.r.pair.x-2", "sotto.r.pair.1-2-3"]
        {
            assert!(pair_of(bad).is_err(), "{bad}");
        }
    }
}
