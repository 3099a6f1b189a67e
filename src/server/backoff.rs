//! Failed-attempt back-off (DESIGN §5): per (key, address) pair, per key
//! and per address, each with its own policy. The key is an account name for
//! logins, a (room, user) pair for room passwords.
//!
//! Invariant: after a table's free failures each further failure doubles its
//! wait (capped); a record is forgotten after a quiet period, so memory is
//! bounded by the failures of the last `FORGET_MS`. Addresses count by their
//! bucket (an IPv6 /64, see `throttle::bucket`). The per-key table is much
//! more generous than the pair table, so that failures from one address
//! cannot lock a key's owner out from another address for long.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use crate::server::throttle::bucket;

/// A record with no failure for this long is dropped.
pub const FORGET_MS: u64 = 15 * 60_000;

/// How one table waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures allowed before any wait.
    pub free: u32,
    /// First wait after the free failures; doubles with each further failure.
    pub base_ms: u64,
    /// Longest wait.
    pub max_ms: u64,
}

/// Logins, per (account name, address): 3 free, then 1 s doubling up to 5 min.
pub const LOGIN_PAIR: Policy = Policy { free: 3, base_ms: 1_000, max_ms: 5 * 60_000 };
/// Logins, per account name from any address: the wait starts only after 30
/// failures and is at most 1 min, so a victim can still log in from its own
/// address while another address guesses.
pub const LOGIN_ACCOUNT: Policy = Policy { free: 30, base_ms: 1_000, max_ms: 60_000 };
/// Logins, per address over every account name: 10 free, then 1 s doubling up to 5 min.
pub const LOGIN_ADDR: Policy = Policy { free: 10, base_ms: 1_000, max_ms: 5 * 60_000 };
/// Room passwords, per (room, user) and per address: 3 free, then 1 s doubling up to 5 min.
pub const ROOM: Policy = Policy { free: 3, base_ms: 1_000, max_ms: 5 * 60_000 };

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last_ms: u64,
}

/// Failure counters of one kind of key under one policy.
#[derive(Debug)]
struct Table<K> {
    policy: Policy,
    strikes: HashMap<K, Strikes>,
}

impl<K: Hash + Eq> Table<K> {
    fn new(policy: Policy) -> Table<K> {
        Table { policy, strikes: HashMap::new() }
    }

    /// Until when `key` must wait (0: it need not).
    fn wait_until(&self, key: &K) -> u64 {
        let Some(s) = self.strikes.get(key) else { return 0 };
        let p = self.policy;
        if s.count < p.free {
            return 0;
        }
        let shift = (s.count - p.free).min(20);
        s.last_ms.saturating_add((p.base_ms << shift).min(p.max_ms))
    }

    fn fail(&mut self, key: K, now_ms: u64) {
        let s = self.strikes.entry(key).or_insert(Strikes { count: 0, last_ms: now_ms });
        s.count = s.count.saturating_add(1);
        s.last_ms = now_ms;
    }

    fn prune(&mut self, now_ms: u64) {
        self.strikes.retain(|_, s| now_ms.saturating_sub(s.last_ms) < FORGET_MS);
    }
}

/// Failure counters per (key, address), per key and per address.
#[derive(Debug)]
pub struct Backoff<K> {
    pairs: Table<(K, IpAddr)>,
    keys: Table<K>,
    addrs: Table<IpAddr>,
}

impl Backoff<String> {
    /// Login back-off, keyed by the case-folded account name (known or not:
    /// an unknown name collects the same strikes as a known one).
    pub fn login() -> Backoff<String> {
        Backoff::new(LOGIN_PAIR, LOGIN_ACCOUNT, LOGIN_ADDR)
    }
}

impl Backoff<u64> {
    /// Room-password back-off, keyed by (room, user).
    pub fn room() -> Backoff<u64> {
        Backoff::new(ROOM, ROOM, ROOM)
    }
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    /// Counters with these policies for pairs, keys and addresses.
    pub fn new(pair: Policy, key: Policy, addr: Policy) -> Backoff<K> {
        Backoff { pairs: Table::new(pair), keys: Table::new(key), addrs: Table::new(addr) }
    }

    /// Milliseconds to wait before `key` may be tried from `addr`, if any.
    pub fn check(&self, key: &K, addr: IpAddr, now_ms: u64) -> Option<u64> {
        let addr = bucket(addr);
        let until = self
            .pairs
            .wait_until(&(key.clone(), addr))
            .max(self.keys.wait_until(key))
            .max(self.addrs.wait_until(&addr));
        (until > now_ms).then(|| until - now_ms)
    }

    /// Counts a failed attempt at `key` from `addr`.
    pub fn fail(&mut self, key: &K, addr: IpAddr, now_ms: u64) {
        let addr = bucket(addr);
        self.pairs.fail((key.clone(), addr), now_ms);
        self.keys.fail(key.clone(), now_ms);
        self.addrs.fail(addr, now_ms);
    }

    /// A full login at `key` from `addr` succeeded: the key's counters
    /// restart. The address counter does not, so one good account cannot
    /// launder guesses at others.
    pub fn succeed(&mut self, key: &K, addr: IpAddr) {
        self.pairs.strikes.remove(&(key.clone(), bucket(addr)));
        self.keys.strikes.remove(key);
    }

    /// Drops records quiet for `FORGET_MS`.
    pub fn prune(&mut self, now_ms: u64) {
        self.pairs.prune(now_ms);
        self.keys.prune(now_ms);
        self.addrs.prune(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    fn name(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn waits_double_after_free_failures_and_success_resets_the_key() {
        let mut b = Backoff::room();
        for _ in 0..ROOM.free {
            assert_eq!(b.check(&1, ADDR, 0), None);
            b.fail(&1, ADDR, 0);
        }
        assert_eq!(b.check(&1, ADDR, 0), Some(ROOM.base_ms));
        b.fail(&1, ADDR, 0);
        assert_eq!(b.check(&1, ADDR, 0), Some(2 * ROOM.base_ms));
        assert_eq!(b.check(&1, ADDR, 2 * ROOM.base_ms), None);
        b.succeed(&1, ADDR);
        assert_eq!(b.check(&1, OTHER, 0), None);
        assert_eq!(b.check(&2, ADDR, 0), Some(2 * ROOM.base_ms), "the address stays counted");
        b.prune(FORGET_MS + 1);
        assert_eq!(b.check(&2, ADDR, FORGET_MS + 1), None);
    }

    #[test]
    fn an_attacker_at_one_address_does_not_lock_the_victim_out_from_another() {
        let mut b = Backoff::login();
        let victim = name("victim");
        // The attacker guesses until its own address is far into its back-off.
        let mut now = 0;
        for _ in 0..LOGIN_ACCOUNT.free - 1 {
            b.fail(&victim, OTHER, now);
            now += 1;
        }
        assert!(b.check(&victim, OTHER, now).is_some_and(|w| w >= 60_000), "the attacker waits");
        // The victim, from its own address, is not kept waiting at all.
        assert_eq!(b.check(&victim, ADDR, now), None);
        // Past many more failures the account itself slows down, but never past LOGIN_ACCOUNT.max_ms.
        for _ in 0..100 {
            b.fail(&victim, OTHER, now);
        }
        let wait = b.check(&victim, ADDR, now).expect("the per-account cap applies");
        assert!(wait <= LOGIN_ACCOUNT.max_ms, "{wait}");
        assert_eq!(b.check(&victim, ADDR, now + LOGIN_ACCOUNT.max_ms), None);
        assert!(b.check(&victim, OTHER, now + LOGIN_ACCOUNT.max_ms).is_some(), "the attacker still waits");
    }

    #[test]
    fn the_pair_backs_off_after_three_and_an_ipv6_host_counts_by_its_64() {
        let mut b = Backoff::login();
        let alice = name("alice");
        let host = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, i, 0, 0, i));
        for i in 0..LOGIN_PAIR.free {
            b.fail(&alice, host(i as u16), 0);
        }
        // Another address of the same /64 is the same pair.
        assert_eq!(b.check(&alice, host(99), 0), Some(LOGIN_PAIR.base_ms));
        assert_eq!(b.check(&alice, IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1)), 0), None);
        assert_eq!(b.check(&name("bob"), host(1), 0), None, "other accounts: only the per-address table");
    }
}
