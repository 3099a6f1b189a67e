//! Resumption tickets, the server's state (PROTOCOL.md §3, resumption;
//! DESIGN §4): the ticket keys (`<data>/ticket-keys`) and the journal
//! (`<data>/tickets`) of the accounts' ticket generations and of the ticket
//! ids already used (the strike register). Sans I/O: the core hands what
//! changed to the disk thread with its group commit.
//!
//! Invariants:
//! - New tickets are sealed only under a key that is durable: a key made by a
//!   rotation seals once its file write committed, so no crash can lose the
//!   key of a ticket handed out.
//! - A key stays as long as a ticket sealed under it can be valid: until its
//!   successor was made plus the ticket TTL (and an hour for the commit).
//! - A ticket id enters the register before its resumption is answered, and
//!   the answer waits until the register's record is durable: a ticket
//!   resumes at most once, across `kill -9` too.
//! - Generations only grow; a record read back never lowers one. A
//!   generation is kept for every account that ever had one (deleted ones
//!   too, so that no account registered later under the same UID could take
//!   an old ticket).
//! - The journal belongs to one key set: both files carry the same random
//!   epoch. A key file whose journal is missing or of another epoch is
//!   discarded and new keys made, so no ticket opens without its account's
//!   generation and the used ids (a journal moved aside, or restored apart
//!   from its key file, cannot reopen a revoked or used ticket).
//! - The journal is bounded: at most [`MAX_USED`] live used ids, each record
//!   and batch length is checked before allocation, a torn last batch is cut,
//!   anything else malformed stops the start. A failed append makes the next
//!   write a whole atomic rewrite, so a torn batch never ends up in the middle.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::crypto;
use crate::server::store::{Change, Store};
use crate::ticket::{TicketKey, TICKET_LEN};

/// The key file's name in the data directory.
pub const KEYS_FILE: &str = "ticket-keys";
/// The journal's name in the data directory.
pub const JOURNAL_FILE: &str = "tickets";
/// A new ticket key is made when the newest is this old.
pub const ROTATE_MS: u64 = 24 * 3600 * 1000;
/// Margin for the commit of a rotation: a key is kept this much longer.
const ROTATE_SLACK_MS: u64 = 3600 * 1000;
/// `--ticket-ttl` default: 7 days.
pub const TTL_DEFAULT_MS: u64 = 7 * 24 * 3600 * 1000;
/// `--ticket-ttl` at least: 1 minute.
pub const TTL_MIN_MS: u64 = 60 * 1000;
/// `--ticket-ttl` at most: 90 days.
pub const TTL_MAX_MS: u64 = 90 * 24 * 3600 * 1000;
/// Used ticket ids remembered at most; when full (and none expired),
/// resumption is refused until some expire (full logins still work).
pub const MAX_USED: usize = 1 << 20;
/// Keys in the key file at most (a rotation a day over the longest TTL is 92).
pub const MAX_KEYS: usize = 256;
/// Size of the key file at most.
pub const MAX_KEYS_FILE: u64 = (KEYS_HEAD + KEY_ENTRY * MAX_KEYS + 32) as u64;
/// Size of the journal at most: twice the live records (compaction), with
/// up to 4 Mi generations, and batch overhead.
pub const MAX_JOURNAL_FILE: u64 = 512 << 20;
/// Records in one journal batch at most.
pub const MAX_BATCH: usize = 1 << 16;
/// A used id is forgotten this long after its ticket's expiry, not at it: a
/// clock stepped back (by less than this) cannot make a forgotten used
/// ticket valid again.
pub const PRUNE_MARGIN_MS: u64 = 24 * 3600 * 1000;
/// How often the loop drops expired used ids.
const PRUNE_EVERY_MS: u64 = 3600 * 1000;
/// The journal is rewritten when it holds more records than twice the live
/// ones plus this.
const COMPACT_SLACK: usize = 4096;

const KEYS_MAGIC: &[u8; 4] = b"SOTT";
/// Version 2 adds the epoch; a version 1 key file (no epoch) is replaced.
const KEYS_VERSION: u16 = 2;
/// Magic, version, count, epoch.
const KEYS_HEAD: usize = 8 + EPOCH_LEN;
/// The random epoch binding the journal to the key file.
const EPOCH_LEN: usize = 16;
const KEY_ENTRY: usize = 8 + 8 + 48;
const JOURNAL_MAGIC: &[u8; 4] = b"SOTK";
/// Version 2 adds the epoch; a version 1 journal reads as of no epoch.
const JOURNAL_VERSION: u16 = 2;
/// Journal header: magic, version, reserved, epoch.
pub const JOURNAL_HEAD: usize = 16 + EPOCH_LEN;
const JOURNAL_HEAD_V1: usize = 16;
/// One journal record: kind, 7 reserved, uid, value (generation or expiry), ticket id.
pub const RECORD: usize = 1 + 7 + 8 + 8 + 16;
const KIND_GENERATION: u8 = 1;
const KIND_USED: u8 = 2;
const BATCH_HEAD: usize = 8;

const _: () = assert!(TICKET_LEN == 136 && RECORD == 40);

/// A write to the journal (`Change::Tickets`).
pub enum JournalWrite {
    /// Batches to append (fsync'd).
    Append(Vec<u8>),
    /// The whole journal, replaced atomically.
    Replace(Vec<u8>),
}

/// Why a ticket was not accepted (logged at info; a replay at warn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--no-resume`.
    Off,
    /// Unknown key, bad tag, or a binder that does not verify.
    Unopened,
    /// Expired.
    Expired,
    /// No such account, or issued before it was made.
    NoAccount,
    /// Revoked (the generation moved on).
    Revoked,
    /// Already used.
    Replayed,
    /// The register is full.
    Full,
    /// The account is not active (banned, on hold, blocked).
    NotActive,
    /// The account has all its sessions.
    SessionLimit,
    /// The strike could not be made durable.
    Storage,
    /// The client's ephemeral key is of low order.
    BadKey,
}

impl Refusal {
    /// For the log and the summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Off => "resumption refused: turned off",
            Refusal::Unopened => "resumption refused: ticket does not open",
            Refusal::Expired => "resumption refused: expired",
            Refusal::NoAccount => "resumption refused: no such account",
            Refusal::Revoked => "resumption refused: revoked",
            Refusal::Replayed => "resumption refused: replayed ticket",
            Refusal::Full => "resumption refused: strike register full",
            Refusal::NotActive => "resumption refused: account not active",
            Refusal::SessionLimit => "resumption refused: session limit",
            Refusal::Storage => "resumption refused: storage failed",
            Refusal::BadKey => "resumption refused: bad ephemeral key",
        }
    }
}

/// The ticket keys, generations and strike register.
#[derive(Default)]
pub struct Tickets {
    /// Whether this state was loaded (or made) for serving: a core without
    /// it issues no ticket and refuses every resumption.
    loaded: bool,
    /// Oldest first.
    keys: Vec<TicketKey>,
    /// Written in both files' headers: the journal belongs to this key set.
    epoch: [u8; EPOCH_LEN],
    /// The key new tickets are sealed under (durable).
    sealing: Option<u64>,
    keys_dirty: bool,
    generations: HashMap<u64, u64>,
    used: HashMap<[u8; 16], u64>,
    /// Records not yet handed to a commit.
    pending: Vec<[u8; RECORD]>,
    /// Records in the file (after the writes handed out so far).
    file_records: usize,
    /// The next write replaces the whole journal.
    rewrite: bool,
    /// When the full register was last warned about.
    full_warned_ms: u64,
    /// When expired ids were last dropped.
    pruned_ms: u64,
}

/// What [`Tickets::load`] did that the start must write before serving.
pub struct Loaded {
    /// The state.
    pub tickets: Tickets,
    /// The key file's new bytes, when it was made or rotated.
    pub keys_file: Option<Zeroizing<Vec<u8>>>,
    /// The journal's new bytes (compacted, or a torn tail cut).
    pub journal: Vec<u8>,
    /// Bytes of a torn tail cut off, if any.
    pub torn: usize,
}

impl Tickets {
    /// The state from the stored key file and journal (either may be
    /// missing) at `now_ms`: keys made or rotated and old ones dropped as
    /// needed, used ids past their expiry dropped; the caller writes the
    /// key file (when changed) and the compacted journal before serving.
    pub fn load(keys_file: Option<&[u8]>, journal: Option<&[u8]>, ttl_ms: u64, now_ms: u64) -> Result<Loaded, String> {
        let mut t = Tickets { loaded: true, ..Tickets::default() };
        let mut keys_changed = false;
        let mut keys_epoch = None;
        if let Some(bytes) = keys_file {
            (keys_epoch, t.keys) = decode_keys(bytes).map_err(|why| {
                format!("{KEYS_FILE}: corrupt ({why}); move it aside to start with a new key (tickets issued under the old one are then refused)")
            })?;
        }
        let mut torn = 0;
        let mut journal_epoch = None;
        if let Some(bytes) = journal {
            let (epoch, cut) = decode_journal(bytes, &mut t.generations, &mut t.used).map_err(|why| {
                format!("{JOURNAL_FILE}: corrupt ({why}); move it aside to start without it (the ticket keys are then replaced: every ticket issued so far is refused)")
            })?;
            journal_epoch = epoch;
            torn = bytes.len() - cut;
            if torn > 0 {
                crate::log!(Warn, "{JOURNAL_FILE}: cut a torn last batch of {torn} bytes (a crash during its write)");
            }
        }
        // Keys without their journal would open tickets whose revocation or
        // use the journal held: they go, and new ones are made.
        match keys_epoch {
            Some(epoch) if journal_epoch == Some(epoch) => t.epoch = epoch,
            _ => {
                if !t.keys.is_empty() {
                    let why = if journal.is_none() { "is missing" } else { "belongs to another key set" };
                    crate::log!(
                        Warn,
                        "{JOURNAL_FILE} {why}: the ticket keys are replaced; every resumption ticket issued so far is refused (clients log in with their secrets)"
                    );
                    t.keys.clear();
                }
                t.epoch = crypto::random();
                keys_changed = true;
            }
        }
        if t.rotate(ttl_ms, now_ms) {
            keys_changed = true;
        }
        t.sealing = t.keys.last().map(|k| k.id);
        // Compaction at start: used ids past their expiry (and the margin) are refused anyway.
        t.prune(now_ms);
        if t.used.len() > MAX_USED {
            return Err(format!("{JOURNAL_FILE}: more than {MAX_USED} live used ticket ids; move it aside"));
        }
        let journal = t.encode_all();
        t.file_records = t.generations.len() + t.used.len();
        let keys_file = keys_changed.then(|| encode_keys(t.epoch, &t.keys));
        Ok(Loaded { tickets: t, keys_file, journal, torn })
    }

    /// The state of `store` at `now_ms` ([`Tickets::load`]), with what the
    /// load changed (a new or rotated key file, the compacted journal)
    /// durable before it returns: for the start.
    pub fn open(store: &dyn Store, ttl_ms: u64, now_ms: u64) -> Result<Tickets, String> {
        let keys = store.load_ticket_keys().map_err(|e| e.to_string())?;
        let journal = store.load_tickets().map_err(|e| e.to_string())?;
        let loaded = Tickets::load(keys.as_deref().map(|k| k.as_slice()), journal.as_deref(), ttl_ms, now_ms)?;
        let mut writes = vec![Change::Tickets(JournalWrite::Replace(loaded.journal))];
        if let Some(k) = loaded.keys_file {
            writes.push(Change::TicketKeys(k));
        }
        store.commit(&writes).map_err(|e| format!("writing the ticket state: {e}"))?;
        Ok(loaded.tickets)
    }

    /// An edge's state (DESIGN §8 "Edges"): the deployment's `keys` as
    /// followed, to open tickets and to seal new ones under the newest; no
    /// generations and no strikes, which the writer keeps. Serves only with
    /// a key.
    pub fn relayed(keys: Vec<TicketKey>) -> Tickets {
        Tickets { loaded: !keys.is_empty(), sealing: keys.last().map(|k| k.id), keys, ..Tickets::default() }
    }

    /// A fresh state with one new key, durable as far as the caller is
    /// concerned (unit tests, the fuzzing seam).
    pub fn fresh(now_ms: u64) -> Tickets {
        let mut t = Tickets { loaded: true, epoch: crypto::random(), ..Tickets::default() };
        let key = TicketKey::generate(u64::from_be_bytes(crypto::random()), now_ms);
        t.sealing = Some(key.id);
        t.keys.push(key);
        t
    }

    /// Whether the state serves (loaded at start).
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Every key (to open tickets).
    pub fn keys(&self) -> &[TicketKey] {
        &self.keys
    }

    /// The key new tickets are sealed under, if any is durable.
    pub fn sealing_key(&self) -> Option<&TicketKey> {
        let id = self.sealing?;
        self.keys.iter().find(|k| k.id == id)
    }

    /// Makes a new key when the newest is [`ROTATE_MS`] old (or there is
    /// none), and drops the keys no valid ticket can name; true when the set
    /// changed (then it must be written).
    pub fn rotate(&mut self, ttl_ms: u64, now_ms: u64) -> bool {
        let mut changed = false;
        if self.keys.last().is_none_or(|k| now_ms >= k.created_ms.saturating_add(ROTATE_MS)) {
            let mut id = u64::from_be_bytes(crypto::random());
            while id == 0 || self.keys.iter().any(|k| k.id == id) {
                id = u64::from_be_bytes(crypto::random());
            }
            self.keys.push(TicketKey::generate(id, now_ms));
            changed = true;
        }
        // Key i sealed tickets until key i + 1 was made (and committed).
        let keep_from = (0..self.keys.len().saturating_sub(1))
            .take_while(|&i| {
                let retired = self.keys[i + 1].created_ms;
                let sealing = Some(self.keys[i].id) == self.sealing;
                !sealing && now_ms >= retired.saturating_add(ttl_ms).saturating_add(ROTATE_SLACK_MS)
            })
            .count();
        let keep_from = keep_from.max(self.keys.len().saturating_sub(MAX_KEYS));
        if keep_from > 0 {
            self.keys.drain(..keep_from);
            changed = true;
        }
        changed
    }

    /// On the loop's timer: rotates (a changed key set is written with the
    /// next commit, and seals once that is durable), and once an hour drops
    /// the used ids past their expiry (the journal shrinks at its next
    /// compaction).
    pub fn tick(&mut self, ttl_ms: u64, now_ms: u64) {
        if !self.loaded {
            return;
        }
        if self.rotate(ttl_ms, now_ms) {
            self.keys_dirty = true;
        }
        if now_ms.saturating_sub(self.pruned_ms) >= PRUNE_EVERY_MS {
            self.pruned_ms = now_ms;
            self.prune(now_ms);
        }
    }

    /// Drops the used ids past their expiry plus [`PRUNE_MARGIN_MS`] (an
    /// expired ticket is refused before the register is asked; the margin
    /// covers a clock stepped back).
    pub fn prune(&mut self, now_ms: u64) {
        self.used.retain(|_, e| e.saturating_add(PRUNE_MARGIN_MS) > now_ms);
    }

    /// The key file to write with this commit, and the newest key's id in it.
    pub fn take_keys(&mut self) -> Option<(Zeroizing<Vec<u8>>, u64)> {
        if !std::mem::take(&mut self.keys_dirty) {
            return None;
        }
        let newest = self.keys.last()?.id;
        Some((encode_keys(self.epoch, &self.keys), newest))
    }

    /// The key file write carrying key `newest` finished.
    pub fn keys_committed(&mut self, newest: u64, ok: bool) {
        if ok {
            if self.keys.iter().any(|k| k.id == newest) {
                self.sealing = Some(newest);
            }
        } else {
            self.keys_dirty = true;
        }
    }

    /// The ticket generation of `uid` now.
    pub fn generation(&self, uid: u64) -> u64 {
        self.generations.get(&uid).copied().unwrap_or(0)
    }

    /// Revokes every ticket of `uid`: its generation goes up by one, journaled.
    pub fn revoke(&mut self, uid: u64) -> u64 {
        let g = self.generation(uid).saturating_add(1);
        self.generations.insert(uid, g);
        self.pending.push(record(KIND_GENERATION, uid, g, &[0; 16]));
        g
    }

    /// Whether `ticket_id` was used.
    pub fn is_used(&self, ticket_id: &[u8; 16]) -> bool {
        self.used.contains_key(ticket_id)
    }

    /// Records the use of `ticket_id` (of `uid`, valid until `expires_ms`),
    /// journaled; false when the register is full (expired ids are dropped
    /// first), and then a warning is logged at most once a minute.
    pub fn strike(&mut self, ticket_id: [u8; 16], uid: u64, expires_ms: u64, now_ms: u64) -> bool {
        if self.used.len() >= MAX_USED {
            let before = self.used.len();
            self.prune(now_ms);
            if self.used.len() < before {
                self.rewrite = true;
            }
        }
        if self.used.len() >= MAX_USED {
            if now_ms.saturating_sub(self.full_warned_ms) >= 60_000 {
                self.full_warned_ms = now_ms;
                crate::log!(
                    Warn,
                    "the resumption strike register is full ({MAX_USED} unexpired used tickets): resumptions are refused until some expire; full logins work"
                );
            }
            return false;
        }
        self.used.insert(ticket_id, expires_ms);
        self.pending.push(record(KIND_USED, uid, expires_ms, &ticket_id));
        true
    }

    /// Whether anything waits to be written.
    pub fn has_changes(&self) -> bool {
        self.keys_dirty || !self.pending.is_empty() || self.rewrite
    }

    /// The journal write for this commit: the pending records appended, or
    /// the whole journal when it grew past twice its live records (expired
    /// ids dropped) or a write failed.
    pub fn take_journal(&mut self, now_ms: u64) -> Option<JournalWrite> {
        if self.pending.is_empty() && !self.rewrite {
            return None;
        }
        let live = self.generations.len() + self.used.len();
        if self.rewrite || self.file_records + self.pending.len() > 2 * live + COMPACT_SLACK {
            self.prune(now_ms);
            self.pending.clear();
            self.rewrite = false;
            self.file_records = self.generations.len() + self.used.len();
            return Some(JournalWrite::Replace(self.encode_all()));
        }
        let records = std::mem::take(&mut self.pending);
        self.file_records += records.len();
        let mut out = Vec::with_capacity(records.len() * RECORD + records.len().div_ceil(MAX_BATCH) * 40);
        for batch in records.chunks(MAX_BATCH) {
            put_batch(&mut out, batch);
        }
        Some(JournalWrite::Append(out))
    }

    /// A journal write failed: the next one rewrites the whole journal from
    /// memory (a torn append must not stay in the middle of the file).
    pub fn journal_failed(&mut self) {
        self.rewrite = true;
    }

    /// The whole journal: header, then every generation and live used id.
    fn encode_all(&self) -> Vec<u8> {
        let mut records: Vec<[u8; RECORD]> = Vec::with_capacity(self.generations.len() + self.used.len());
        let mut gens: Vec<(&u64, &u64)> = self.generations.iter().collect();
        gens.sort_unstable();
        records.extend(gens.into_iter().map(|(uid, g)| record(KIND_GENERATION, *uid, *g, &[0; 16])));
        let mut used: Vec<(&[u8; 16], &u64)> = self.used.iter().collect();
        used.sort_unstable();
        records.extend(used.into_iter().map(|(id, e)| record(KIND_USED, 0, *e, id)));
        let mut out = Vec::with_capacity(JOURNAL_HEAD + records.len() * RECORD + 64);
        out.extend_from_slice(JOURNAL_MAGIC);
        out.extend_from_slice(&JOURNAL_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&self.epoch);
        for batch in records.chunks(MAX_BATCH) {
            put_batch(&mut out, batch);
        }
        out
    }

    /// Live used ids and generations (tests, the log).
    pub fn sizes(&self) -> (usize, usize) {
        (self.used.len(), self.generations.len())
    }
}

#[path = "tickets_file.rs"]
mod file;
pub use file::{decode_journal, decode_keys, encode_keys};
use file::{put_batch, record};

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    /// The valid length of a journal ([`decode_journal`] without its epoch).
    fn decode_at(
        bytes: &[u8],
        gens: &mut HashMap<u64, u64>,
        used: &mut HashMap<[u8; 16], u64>,
    ) -> Result<usize, &'static str> {
        decode_journal(bytes, gens, used).map(|(_, at)| at)
    }

    #[test]
    fn journal_round_trips_and_keeps_the_highest_generation() {
        let mut t = Tickets::fresh(0);
        t.revoke(7);
        t.revoke(7);
        assert!(t.strike([1; 16], 7, 5_000, 0));
        t.revoke(9);
        let mut file = t.encode_all();
        let Some(JournalWrite::Append(more)) = t.take_journal(0) else { panic!("an append") };
        file.extend_from_slice(&more);
        let (mut gens, mut used) = (HashMap::new(), HashMap::new());
        assert_eq!(decode_at(&file, &mut gens, &mut used), Ok(file.len()));
        assert_eq!((gens.get(&7), gens.get(&9), used.get(&[1; 16])), (Some(&2), Some(&1), Some(&5_000)));
    }

    #[test]
    fn a_torn_last_batch_is_cut_and_damage_before_the_end_is_refused() {
        let mut t = Tickets::fresh(0);
        let mut file = t.encode_all();
        t.revoke(1);
        let Some(JournalWrite::Append(first)) = t.take_journal(0) else { panic!() };
        file.extend_from_slice(&first);
        let good = file.len();
        assert!(t.strike([2; 16], 1, 9, 0));
        let Some(JournalWrite::Append(second)) = t.take_journal(0) else { panic!() };
        // Every prefix of the last batch is a torn append: cut at its start.
        for keep in 0..second.len() {
            let mut f = file.clone();
            f.extend_from_slice(&second[..keep]);
            let (mut g, mut u) = (HashMap::new(), HashMap::new());
            assert_eq!(decode_at(&f, &mut g, &mut u), Ok(good), "prefix {keep}");
            assert!(u.is_empty() && g.get(&1) == Some(&1));
        }
        // So is a zero-filled tail.
        let mut f = file.clone();
        f.extend_from_slice(&[0; 100]);
        assert_eq!(decode_at(&f, &mut HashMap::new(), &mut HashMap::new()), Ok(good));
        // A damaged batch that a whole one follows is not a torn tail.
        let mut f = file.clone();
        f[JOURNAL_HEAD + 12] ^= 1;
        f.extend_from_slice(&second);
        assert_eq!(decode_at(&f, &mut HashMap::new(), &mut HashMap::new()), Err("checksum mismatch"));
        // A batch count damaged to point past the end of the file, with a
        // whole batch after it: not a torn tail either.
        let mut f = file.clone();
        f[JOURNAL_HEAD..JOURNAL_HEAD + 4].copy_from_slice(&1000u32.to_be_bytes());
        f.extend_from_slice(&second);
        assert_eq!(
            decode_at(&f, &mut HashMap::new(), &mut HashMap::new()),
            Err("damaged batch count (a whole batch follows)")
        );
        let mut f = file.clone();
        f[0] = b'X';
        assert_eq!(decode_at(&f, &mut HashMap::new(), &mut HashMap::new()), Err("bad magic or version"));
        assert!(decode_at(&file[..10], &mut HashMap::new(), &mut HashMap::new()).is_err());
    }

    #[test]
    fn compaction_drops_expired_ids_and_keeps_generations() {
        let mut t = Tickets::fresh(0);
        t.revoke(3);
        for i in 0..(COMPACT_SLACK as u32 + 10) {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            assert!(t.strike(id, 3, 100, 0));
        }
        assert!(matches!(t.take_journal(0), Some(JournalWrite::Append(_))), "live: appended");
        // Every id expired by now: the next write is a whole, small journal.
        t.prune(99 + PRUNE_MARGIN_MS);
        assert_eq!(t.sizes().0, COMPACT_SLACK + 10, "kept a day past their expiry");
        t.prune(101 + PRUNE_MARGIN_MS);
        assert_eq!(t.sizes().0, 0, "dropped after it");
        t.revoke(3);
        let Some(JournalWrite::Replace(file)) = t.take_journal(101 + PRUNE_MARGIN_MS) else { panic!("a rewrite") };
        let (mut g, mut u) = (HashMap::new(), HashMap::new());
        assert_eq!(decode_at(&file, &mut g, &mut u), Ok(file.len()));
        assert_eq!((g.get(&3), u.len()), (Some(&2), 0));
        assert_eq!(file.len(), JOURNAL_HEAD + BATCH_HEAD + RECORD + 32);
    }

    #[test]
    fn a_failed_write_makes_the_next_a_rewrite() {
        let mut t = Tickets::fresh(0);
        t.revoke(1);
        assert!(matches!(t.take_journal(0), Some(JournalWrite::Append(_))));
        t.journal_failed();
        assert!(t.has_changes());
        assert!(matches!(t.take_journal(0), Some(JournalWrite::Replace(_))));
        assert!(t.take_journal(0).is_none());
    }

    #[test]
    fn keys_round_trip_and_a_flipped_byte_is_refused() {
        let mut t = Tickets::fresh(5);
        t.rotate(7 * DAY, 5 + DAY);
        let bytes = encode_keys(t.epoch, t.keys());
        let (epoch, keys) = decode_keys(&bytes).unwrap();
        assert_eq!(epoch, Some(t.epoch));
        assert_eq!(keys.len(), 2);
        for (a, b) in keys.iter().zip(t.keys()) {
            assert_eq!((a.id, a.created_ms, &a.material()[..]), (b.id, b.created_ms, &b.material()[..]));
        }
        for at in [0, 7, 20, bytes.len() - 1] {
            let mut bad = bytes.to_vec();
            bad[at] ^= 1;
            assert!(decode_keys(&bad).is_err(), "byte {at}");
        }
        assert!(decode_keys(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn rotation_is_daily_and_old_keys_stay_for_the_ttl_after_their_successor() {
        let ttl = 7 * DAY;
        let mut t = Tickets::fresh(0);
        assert!(!t.rotate(ttl, DAY - 1), "not yet a day old");
        assert!(t.rotate(ttl, DAY), "a day old: a new key");
        assert_eq!(t.keys().len(), 2);
        // The new key is not durable yet: tickets are still sealed under the first.
        let first = t.keys()[0].id;
        assert_eq!(t.sealing_key().map(|k| k.id), Some(first));
        t.keys_dirty = true;
        let (_, newest) = t.take_keys().unwrap();
        t.keys_committed(newest, true);
        assert_eq!(t.sealing_key().map(|k| k.id), Some(newest));
        // Daily rotations for ten days: the first key, succeeded at day 1,
        // stays until day 1 + 7 + the slack, then goes.
        for day in 2..=8 {
            t.rotate(ttl, day * DAY);
            t.sealing = t.keys().last().map(|k| k.id);
        }
        assert!(t.keys().iter().any(|k| k.id == first), "kept while its tickets may be valid");
        t.rotate(ttl, 8 * DAY + ROTATE_SLACK_MS);
        assert!(!t.keys().iter().any(|k| k.id == first), "dropped once none can be");
        assert_eq!(t.keys().len(), 8);
    }

    #[test]
    fn the_files_survive_a_reopen_and_a_torn_append_is_cut_at_start() {
        use crate::server::store::FileStore;
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sotto-tickets-{}", crypto::hex(&crypto::random::<6>())));
        let store = FileStore::open(&dir).unwrap();
        let mut t = Tickets::open(&store, 7 * DAY, 1_000).unwrap();
        let keys = std::fs::read(dir.join(KEYS_FILE)).unwrap();
        for name in [KEYS_FILE, JOURNAL_FILE] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        t.revoke(5);
        assert!(t.strike([7; 16], 5, 10 * DAY, 1_000));
        let Some(w) = t.take_journal(1_000) else { panic!("a write") };
        store.commit(&[Change::Tickets(w)]).unwrap();
        // A crash in the middle of the next append.
        t.revoke(6);
        let Some(JournalWrite::Append(torn)) = t.take_journal(1_000) else { panic!("an append") };
        store.commit(&[Change::Tickets(JournalWrite::Append(torn[..torn.len() / 2].to_vec()))]).unwrap();
        let before = std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len();
        let again = Tickets::open(&store, 7 * DAY, 2_000).unwrap();
        assert_eq!((again.generation(5), again.generation(6), again.is_used(&[7; 16])), (1, 0, true));
        assert_eq!(std::fs::read(dir.join(KEYS_FILE)).unwrap(), keys, "the key file is kept as it was");
        assert_eq!(again.sealing_key().map(|k| k.id), t.sealing_key().map(|k| k.id));
        let after = std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len();
        assert!(after < before, "rewritten without the torn tail");
        // Damage before the end stops the start, naming the file.
        let mut bytes = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
        bytes[JOURNAL_HEAD + 10] ^= 1;
        bytes.extend_from_slice(&torn);
        std::fs::write(dir.join(JOURNAL_FILE), &bytes).unwrap();
        let err = Tickets::open(&store, 7 * DAY, 3_000).err().unwrap();
        assert!(err.starts_with("tickets: corrupt (checksum mismatch)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_register_refuses_until_ids_expire() {
        let mut t = Tickets::fresh(0);
        for i in 0..MAX_USED as u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            t.used.insert(id, if i == 0 { 10 } else { 1_000 });
        }
        assert!(!t.strike([0xff; 16], 1, 2_000, 10), "full: one expired, not yet a day ago");
        assert!(t.strike([0xff; 16], 1, 2_000, 11 + PRUNE_MARGIN_MS), "one expired a day ago: room for one");
        assert!(!t.strike([0xfe; 16], 1, 2_000, 11 + PRUNE_MARGIN_MS), "full again");
    }
}
