//! Account operator state (issue 15, PROTOCOL.md §11): the state (active, on
//! hold, banned, blocked) with its reason and end, the roles, the requests
//! denied to the account, and its last logins and failed logins; stored as
//! `users/<uid>.acct`, a fixed-layout `AcctRecord` (opcodes.toml).
//!
//! Invariant: a decoded record has every count within its array, every
//! denied mnemonic names an authenticated request or a classed family of
//! them, and the `user` role set; a state with an end date reads as active
//! once that date passed (`effective`), whether or not it was rewritten yet.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};

use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::crypto;
use crate::opcodes::{AcctRecord, LoginEntry};
use crate::server::dispatch;
use crate::wire::State as Phase;

/// Magic of an account state file.
const MAGIC: [u8; 4] = *b"SOTA";
/// Version of its format.
const VERSION: u16 = 1;
/// Offset of the checksum: the record's last 32 bytes.
const CHECKSUM_AT: usize = core::mem::size_of::<AcctRecord>() - 32;
/// Login records of each kind kept at most (the arrays of `AcctRecord`).
pub const MAX_LOGIN_RECORDS: usize = 32;
/// Denied mnemonics per account at most (the array of `AcctRecord`).
pub const MAX_DENIED: usize = 32;
/// Size of one `LoginEntry`.
const ENTRY: usize = core::mem::size_of::<LoginEntry>();

/// Role bit every account has.
pub const ROLE_USER: u8 = 1;
/// Role bit of moderators.
pub const ROLE_MODERATOR: u8 = 2;
/// Role bit of admins.
pub const ROLE_ADMIN: u8 = 4;

/// An account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// May log in.
    Active = 0,
    /// Awaiting approval: login refused with "awaiting approval".
    OnHold = 1,
    /// Refused with the reason and the end date.
    Banned = 2,
    /// Refused exactly as a wrong password is.
    Blocked = 3,
}

impl State {
    /// The state with wire value `v`.
    pub fn from_u8(v: u8) -> Option<State> {
        match v {
            0 => Some(State::Active),
            1 => Some(State::OnHold),
            2 => Some(State::Banned),
            3 => Some(State::Blocked),
            _ => None,
        }
    }

    /// Its name, as sottoctl prints it.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::OnHold => "on hold",
            State::Banned => "banned",
            State::Blocked => "blocked",
        }
    }
}

/// Why a login entry was recorded (`LoginEntry.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in.
    LoggedIn = 0,
    /// Wrong password.
    WrongPassword = 1,
    /// Wrong passphrase.
    WrongPassphrase = 2,
    /// Refused: on hold.
    OnHold = 3,
    /// Refused: banned.
    Banned = 4,
    /// Refused: blocked (the user was told "wrong password").
    Blocked = 5,
    /// Refused: too many sessions.
    SessionLimit = 6,
}

impl Outcome {
    /// The outcome with wire value `v`.
    pub fn from_u8(v: u8) -> Option<Outcome> {
        Some(match v {
            0 => Outcome::LoggedIn,
            1 => Outcome::WrongPassword,
            2 => Outcome::WrongPassphrase,
            3 => Outcome::OnHold,
            4 => Outcome::Banned,
            5 => Outcome::Blocked,
            6 => Outcome::SessionLimit,
            _ => return None,
        })
    }

    /// How the operator and the client name it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::LoggedIn => "logged in",
            Outcome::WrongPassword => "wrong password",
            Outcome::WrongPassphrase => "wrong passphrase",
            Outcome::OnHold => "on hold",
            Outcome::Banned => "banned",
            Outcome::Blocked => "blocked",
            Outcome::SessionLimit => "session limit",
        }
    }
}

/// One login or failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// When, Unix ms.
    pub ts: u64,
    /// From where.
    pub addr: IpAddr,
    /// What happened.
    pub outcome: Outcome,
}

impl Login {
    /// Its wire form.
    pub fn entry(&self) -> LoginEntry {
        let mut e = LoginEntry::new_zeroed();
        e.ts.set(self.ts);
        e.addr = match self.addr {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        e.reason = self.outcome as u8;
        e
    }

    /// From its wire form; None for an unknown reason.
    pub fn from_entry(e: &LoginEntry) -> Option<Login> {
        let v6 = Ipv6Addr::from(e.addr);
        let addr = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
        Some(Login { ts: e.ts.get(), addr, outcome: Outcome::from_u8(e.reason)? })
    }
}

/// Writes `list` into `out` as consecutive entries; returns the count.
pub fn put_entries<'a>(list: impl Iterator<Item = &'a Login>, out: &mut [u8]) -> u8 {
    let mut n = 0u8;
    for (slot, l) in out.chunks_exact_mut(ENTRY).zip(list) {
        slot.copy_from_slice(l.entry().as_bytes());
        n += 1;
    }
    n
}

/// The first `count` entries of `bytes`; Err when the count is over the array
/// or an entry is malformed.
pub fn entries(bytes: &[u8], count: u8) -> Result<VecDeque<Login>, &'static str> {
    let count = usize::from(count);
    if count > bytes.len() / ENTRY {
        return Err("login count over its array");
    }
    bytes
        .chunks_exact(ENTRY)
        .take(count)
        .map(|c| LoginEntry::read_from_bytes(c).ok().as_ref().and_then(Login::from_entry).ok_or("bad login entry"))
        .collect()
}

/// What the operator set on an account, and its login history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acct {
    /// The state as set (see [`Acct::effective`]).
    pub state: State,
    /// When the state ends, Unix ms; 0 indefinite.
    pub until: u64,
    /// Why (at most 128 bytes).
    pub reason: String,
    /// Role bits (`ROLE_*`); `ROLE_USER` always set.
    pub roles: u8,
    /// The last announcement delivered.
    pub announce_seen: u64,
    /// Denied request mnemonics (4 letters) and families (3 letters).
    pub denied: Vec<String>,
    /// Successful logins, newest first.
    pub logins: VecDeque<Login>,
    /// Failed logins, newest first.
    pub failed: VecDeque<Login>,
}

impl Default for Acct {
    fn default() -> Acct {
        Acct {
            state: State::Active,
            until: 0,
            reason: String::new(),
            roles: ROLE_USER,
            announce_seen: 0,
            denied: Vec::new(),
            logins: VecDeque::new(),
            failed: VecDeque::new(),
        }
    }
}

impl Acct {
    /// The state in force at `now_ms`, with its end: a state whose end passed is active.
    pub fn effective(&self, now_ms: u64) -> (State, u64) {
        if self.state != State::Active && self.until != 0 && self.until <= now_ms {
            return (State::Active, 0);
        }
        (self.state, self.until)
    }

    /// Makes a state whose end passed active; true when that changed the record.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        if self.effective(now_ms).0 == self.state {
            return false;
        }
        self.set_state(State::Active, 0, "");
        true
    }

    /// Sets the state, its end (0 indefinite) and reason (cut to 128 bytes).
    pub fn set_state(&mut self, state: State, until: u64, reason: &str) {
        self.state = state;
        self.until = if state == State::Active { 0 } else { until };
        self.reason = cut(reason, 128).to_owned();
    }

    /// Records a login attempt, keeping the newest `keep` of its kind.
    pub fn record(&mut self, login: Login, keep: usize) {
        let list = if login.outcome == Outcome::LoggedIn { &mut self.logins } else { &mut self.failed };
        list.push_front(login);
        list.truncate(keep.clamp(1, MAX_LOGIN_RECORDS));
    }

    /// The previous successful login and the failed logins since it, newest first.
    pub fn since_last_visit(&self) -> (Option<Login>, Vec<Login>) {
        let last = self.logins.front().copied();
        let after = last.map_or(0, |l| l.ts);
        (last, self.failed.iter().filter(|f| f.ts >= after).copied().collect())
    }

    /// Whether the request `mnemonic` is denied to this account: named
    /// itself, or its classed family (`srm` covers srms, srmm, srml, srmx).
    pub fn denies(&self, mnemonic: &str) -> bool {
        self.denied.iter().any(|d| d == mnemonic || (d.len() == 3 && family_of(mnemonic) == Some(d.as_str())))
    }

    /// The record as stored for `uid`, sealed.
    pub fn encode(&self, uid: u64) -> Vec<u8> {
        let mut r = AcctRecord::new_zeroed();
        r.magic = MAGIC;
        r.version.set(VERSION);
        r.uid.set(uid);
        r.state = self.state as u8;
        r.roles = self.roles | ROLE_USER;
        r.until.set(self.until);
        // NOTE: cut to the field above; cannot fail.
        let _ = r.set_reason(cut(&self.reason, 128));
        r.announce_seen.set(self.announce_seen);
        for (slot, d) in r.denied.chunks_exact_mut(4).zip(&self.denied) {
            slot[..d.len().min(4)].copy_from_slice(&d.as_bytes()[..d.len().min(4)]);
            r.denied_count += 1;
        }
        r.login_count = put_entries(self.logins.iter(), &mut r.logins);
        r.failed_count = put_entries(self.failed.iter(), &mut r.failed);
        r.checksum = crypto::sha256(&[&r.as_bytes()[..CHECKSUM_AT]]);
        r.as_bytes().to_vec()
    }

    /// A stored record, checked: (uid, state).
    pub fn decode(bytes: &[u8]) -> Result<(u64, Acct), &'static str> {
        let r = AcctRecord::read_from_bytes(bytes).map_err(|_| "wrong size")?;
        if r.magic != MAGIC || r.version.get() != VERSION {
            return Err("bad magic or version");
        }
        if !crypto::ct_eq(&crypto::sha256(&[&bytes[..CHECKSUM_AT]]), &r.checksum) {
            return Err("checksum mismatch");
        }
        let state = State::from_u8(r.state).ok_or("unknown state")?;
        let reason = r.reason().map_err(|_| "bad reason")?.to_owned();
        if usize::from(r.denied_count) > MAX_DENIED {
            return Err("denied count over its array");
        }
        let denied = r
            .denied
            .chunks_exact(4)
            .take(usize::from(r.denied_count))
            .map(|m| {
                let text = std::str::from_utf8(m).ok().map(|t| t.trim_end_matches('\0'));
                text.filter(|t| !resolve(t).is_empty()).map(str::to_owned).ok_or("unknown denied mnemonic")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let acct = Acct {
            state,
            until: r.until.get(),
            reason,
            roles: r.roles | ROLE_USER,
            announce_seen: r.announce_seen.get(),
            denied,
            logins: entries(&r.logins, r.login_count)?,
            failed: entries(&r.failed, r.failed_count)?,
        };
        Ok((r.uid.get(), acct))
    }
}

/// The classed family of a request mnemonic (`srms` -> `srm`), if it is one's
/// member: its class letter ends it, and the family's class-`s` member sits
/// at its opcode less the class offset.
fn family_of(mnemonic: &str) -> Option<&str> {
    let (stem, letter) = mnemonic.split_at_checked(3)?;
    let class = match letter.as_bytes() {
        [b] => crate::opcodes::Class::from_letter(*b)?,
        _ => return None,
    };
    let e = dispatch::DISPATCH.iter().find(|e| e.mnemonic == mnemonic)?;
    let base = e.opcode.checked_sub(class.opcode_offset())?;
    let first = dispatch::lookup(base)?;
    (first.mnemonic.strip_suffix('s') == Some(stem)).then_some(stem)
}

/// The authenticated request mnemonics that `name` covers: itself, or every
/// member of the classed family it names; empty when it names none (unknown,
/// or a login step, which no account state can deny).
pub fn resolve(name: &str) -> Vec<&'static str> {
    dispatch::DISPATCH
        .iter()
        .filter(|e| e.state == Phase::Authenticated)
        .filter(|e| e.mnemonic == name || (name.len() == 3 && family_of(e.mnemonic) == Some(name)))
        .map(|e| e.mnemonic)
        .collect()
}

/// The role bit named `name` (`moderator`, `admin`; `user` too, which cannot be revoked).
pub fn role_bit(name: &str) -> Option<u8> {
    crate::opcodes::ROLES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(ts: u64, outcome: Outcome) -> Login {
        Login { ts, addr: "203.0.113.5".parse().unwrap(), outcome }
    }

    #[test]
    fn record_roundtrips_and_a_flipped_byte_is_refused() {
        let mut a = Acct::default();
        a.set_state(State::Banned, 99, "spam in the lobby");
        a.roles |= ROLE_ADMIN;
        a.announce_seen = 7;
        a.denied = vec!["srm".into(), "smps".into()];
        a.record(login(1, Outcome::LoggedIn), 10);
        a.record(Login { ts: 2, addr: "2001:db8::1".parse().unwrap(), outcome: Outcome::WrongPassword }, 10);
        let bytes = a.encode(42);
        assert_eq!(bytes.len(), core::mem::size_of::<AcctRecord>());
        assert_eq!(Acct::decode(&bytes), Ok((42, a.clone())));
        for at in [0, 8, 17, 200, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Acct::decode(&bad).is_err(), "byte {at}");
        }
        assert_eq!(Acct::decode(&bytes[1..]), Err("wrong size"));
    }

    #[test]
    fn refuses_counts_over_their_arrays() {
        let bytes = Acct::default().encode(1);
        let mut r = AcctRecord::read_from_bytes(&bytes).unwrap();
        r.failed_count = 33;
        r.checksum = crypto::sha256(&[&r.as_bytes()[..CHECKSUM_AT]]);
        assert_eq!(Acct::decode(r.as_bytes()), Err("login count over its array"));
        r.failed_count = 0;
        r.denied_count = 1;
        r.denied[..4].copy_from_slice(b"zzzz");
        r.checksum = crypto::sha256(&[&r.as_bytes()[..CHECKSUM_AT]]);
        assert_eq!(Acct::decode(r.as_bytes()), Err("unknown denied mnemonic"));
    }

    #[test]
    fn a_timed_state_reads_active_once_its_end_passed() {
        let mut a = Acct::default();
        a.set_state(State::Banned, 1_000, "x");
        assert_eq!(a.effective(999), (State::Banned, 1_000));
        assert_eq!(a.effective(1_000), (State::Active, 0));
        assert!(!a.expire(999));
        assert!(a.expire(1_000));
        assert_eq!((a.state, a.until, a.reason.as_str()), (State::Active, 0, ""));
        a.set_state(State::Blocked, 0, "");
        assert_eq!(a.effective(u64::MAX), (State::Blocked, 0), "0 is indefinite");
    }

    #[test]
    fn a_family_covers_its_classes_and_unknown_or_login_mnemonics_resolve_to_nothing() {
        assert_eq!(resolve("srm"), ["srms", "srmm", "srml", "srmx"]);
        assert_eq!(resolve("smps"), ["smps"]);
        assert!(resolve("zzz").is_empty() && resolve("auth").is_empty() && resolve("sr").is_empty());
        let a = Acct { denied: vec!["srm".into(), "jmpu".into()], ..Acct::default() };
        assert!(a.denies("srms") && a.denies("srmx") && a.denies("jmpu"));
        assert!(!a.denies("smps") && !a.denies("crms"));
    }

    #[test]
    fn keeps_the_newest_records_and_counts_failures_since_the_last_visit() {
        let mut a = Acct::default();
        a.record(login(10, Outcome::WrongPassword), 3);
        a.record(login(20, Outcome::LoggedIn), 3);
        for ts in 21..26 {
            a.record(login(ts, Outcome::WrongPassphrase), 3);
        }
        assert_eq!(a.failed.iter().map(|l| l.ts).collect::<Vec<_>>(), [25, 24, 23]);
        let (last, failed) = a.since_last_visit();
        assert_eq!((last.map(|l| l.ts), failed.len()), (Some(20), 3));
    }
}
