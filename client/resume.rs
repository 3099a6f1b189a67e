//! Local-state and timing layer of resumption (PROTOCOL.md §3, resumption;
//! docs/CLIENT.md "Reconnection"): the sealed `ticket` file that keeps the
//! latest resumption ticket, and the jitter before a reconnection.
//!
//! Invariants:
//! - At most one ticket is held, the latest received; it is offered at most
//!   once: it is removed (an empty `ticket` file, the next generation) before
//!   its ResumeHello is sent, so neither a refusal nor a crash lets it be
//!   offered again.
//! - The ticket and its secret are only in memory and in the sealed file, never
//!   in a log, a report, batch output or stderr.
//! - Reconnections wait a uniformly random delay in [0, min(2 s · 2^failures,
//!   30 s)], the first attempt included, so that clients dropped together by a
//!   restart do not come back together.
//!
//! Plaintext: empty (no ticket), or `ticket_id (16) || expires (u64, Unix ms)
//! || ticket (136) || secret (32)`.

use sotto::ticket::{HeldTicket, TICKET_LEN};
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::vault::{Kind, Reader};

/// The ticket file.
pub const KIND: Kind = Kind { file: "ticket", magic: *b"SOTT", name: "ticket", id: 9, what: "resumption ticket" };

/// The first wait's upper bound, doubled after each failed attempt.
pub const JITTER_BASE_MS: u64 = 2_000;
/// The longest wait before an attempt.
pub const JITTER_MAX_MS: u64 = 30_000;

/// The size of a ticket file's plaintext when it holds one.
const HELD_LEN: usize = 16 + 8 + TICKET_LEN + 32;

/// The upper bound of the wait before the attempt that follows `failures`
/// failed ones: `min(2 s · 2^failures, 30 s)`.
pub fn jitter_cap_ms(failures: u32) -> u64 {
    // 2 s · 2^4 already passes 30 s: no shift can overflow.
    JITTER_BASE_MS.saturating_mul(1 << failures.min(5)).min(JITTER_MAX_MS)
}

/// The wait before the attempt that follows `failures` failed ones, uniform in
/// `[0, jitter_cap_ms(failures)]` from the random `r`.
pub fn jitter_ms(failures: u32, r: u64) -> u64 {
    r % (jitter_cap_ms(failures) + 1)
}

/// A fresh random wait (see [`jitter_ms`]).
pub fn random_jitter_ms(failures: u32) -> u64 {
    jitter_ms(failures, u64::from_be_bytes(sotto::crypto::random()))
}

/// The plaintext of the ticket file: empty for none.
pub fn encode(held: Option<&HeldTicket>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(HELD_LEN));
    if let Some(t) = held {
        out.extend_from_slice(&t.ticket_id);
        out.extend_from_slice(&t.expires_ms.to_be_bytes());
        out.extend_from_slice(&t.ticket);
        out.extend_from_slice(&t.secret[..]);
    }
    out
}

/// Reads the plaintext of the ticket file.
pub fn decode(plain: &[u8]) -> Result<Option<HeldTicket>, KeyFileError> {
    if plain.is_empty() {
        return Ok(None);
    }
    if plain.len() != HELD_LEN {
        return Err(KeyFileError::Damaged);
    }
    let mut r = Reader::new(plain);
    let ticket_id = r.array::<16>()?;
    let expires_ms = r.u64()?;
    let ticket = r.array::<TICKET_LEN>()?;
    let secret = Zeroizing::new(r.array::<32>()?);
    r.end()?;
    Ok(Some(HeldTicket { ticket, ticket_id, expires_ms, secret }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Params, Store};
    use sotto::crypto;

    fn held() -> HeldTicket {
        let master = sotto::ticket::ResumptionMaster::from_bytes([3; 32]);
        HeldTicket::received(&master, [1; 16], 1_700_000_000_000, [7; TICKET_LEN])
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_grows_with_failures() {
        assert_eq!(
            (0..8).map(jitter_cap_ms).collect::<Vec<_>>(),
            [2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(jitter_cap_ms(u32::MAX), 30_000);
        for failures in [0, 1, 3, 4, 40] {
            let cap = jitter_cap_ms(failures);
            assert_eq!(jitter_ms(failures, 0), 0, "the bound below is reached");
            assert_eq!(jitter_ms(failures, cap), cap, "and the bound above");
            assert_eq!(jitter_ms(failures, u64::MAX), u64::MAX % (cap + 1));
            let draws: Vec<u64> = (0..2000).map(|_| random_jitter_ms(failures)).collect();
            assert!(draws.iter().all(|&d| d <= cap), "{failures}: within [0, {cap}]");
            // Spread, not all at one end: a tenth of the draws in each half at least.
            let low = draws.iter().filter(|&&d| d <= cap / 2).count();
            assert!((200..=1800).contains(&low), "{failures}: {low} of 2000 in the lower half");
        }
    }

    #[test]
    fn a_ticket_round_trips_and_none_is_empty() {
        let t = held();
        let plain = encode(Some(&t));
        assert_eq!(plain.len(), HELD_LEN);
        let back = decode(&plain).unwrap().unwrap();
        assert_eq!((back.ticket_id, back.expires_ms, back.ticket), (t.ticket_id, t.expires_ms, t.ticket));
        assert_eq!(*back.secret, *t.secret);
        assert!(encode(None).is_empty());
        assert!(decode(&[]).unwrap().is_none());
        for cut in [1, 16, HELD_LEN - 1] {
            assert!(matches!(decode(&plain[..cut]), Err(KeyFileError::Damaged)), "{cut}");
        }
        let mut long = plain.to_vec();
        long.push(0);
        assert!(matches!(decode(&long), Err(KeyFileError::Damaged)));
    }

    #[test]
    fn the_ticket_file_is_sealed_for_its_kind_and_user() {
        let home = std::env::temp_dir().join(format!("sotto-ticket-test-{}", crypto::hex(&crypto::random::<6>())));
        crate::home::prepare(&home).unwrap();
        let cheap = Params { m_kib: 8, t: 1, p: 1 };
        let mut store = Store::create_with(&home, "alice", "password123", cheap).unwrap();
        store.save(KIND, &encode(Some(&held()))).unwrap();
        let path = crate::vault::path(&home, "alice", KIND);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..5], b"SOTT\x02");
        assert!(!bytes.windows(32).any(|w| w == *held().secret), "the secret is not in the clear");
        assert!(!bytes.windows(TICKET_LEN).any(|w| w == [7; TICKET_LEN]), "nor the ticket");
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        let back = decode(&again.load(KIND).unwrap().unwrap()).unwrap().unwrap();
        assert_eq!(back.ticket_id, [1; 16]);
        // Spent: the next generation is empty.
        again.save(KIND, &encode(None)).unwrap();
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        assert!(decode(&again.load(KIND).unwrap().unwrap()).unwrap().is_none());
        // Another kind's file passed off as the ticket, or the ticket as another kind: refused.
        let kek_of = |s: &Store| s.kek_for_tests();
        let contacts = crate::contacts::KIND;
        let sealed =
            crate::vault::seal(contacts, "alice", &crate::vault::subkey(&kek_of(&again), contacts), 9, &[], b"x");
        assert!(crate::vault::unseal(KIND, "alice", &crate::vault::subkey(&kek_of(&again), KIND), &sealed).is_err());
        let ticket_file = std::fs::read(&path).unwrap();
        let key = crate::vault::subkey(&kek_of(&again), KIND);
        assert!(crate::vault::unseal(KIND, "alice", &key, &ticket_file).is_ok());
        assert!(matches!(crate::vault::unseal(KIND, "bob", &key, &ticket_file), Err(KeyFileError::WrongPassword)));
        let mut disguised = ticket_file.clone();
        disguised[..4].copy_from_slice(&contacts.magic);
        assert!(crate::vault::unseal(contacts, "alice", &crate::vault::subkey(&kek_of(&again), contacts), &disguised)
            .is_err());
        // Copied into bob's directory: it does not open there.
        let mut bob = Store::create_with(&home, "bob", "password123", cheap).unwrap();
        std::fs::write(crate::vault::path(&home, "bob", KIND), &ticket_file).unwrap();
        assert!(bob.load(KIND).is_err());
        std::fs::remove_dir_all(&home).unwrap();
    }
}
