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
//! - `/login` resumes with the stored ticket only when the typed password and
//!   passphrase derive the login secrets it was issued to: the file keeps their
//!   verifier (`session::login_verifier`), never the password or a secret, and
//!   a wrong passphrase goes to the server as a full login (its 401, its
//!   failed-login record, its back-off).
//!
//! Plaintext: empty (no ticket), or `ticket_id (16) || expires (u64, Unix ms)
//! || ticket (136) || secret (32) || verifier (32)`. A file of the layout
//! without the verifier reads as no ticket (it cannot be checked at `/login`).

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
const HELD_LEN: usize = 16 + 8 + TICKET_LEN + 32 + 32;
/// The same, of the layout without the verifier (read as no ticket).
const UNVERIFIED_LEN: usize = 16 + 8 + TICKET_LEN + 32;

/// The held ticket, with the verifier of the login secrets it was issued to.
pub struct Kept {
    /// The ticket and its secret.
    pub held: HeldTicket,
    /// `session::login_verifier` of the session's secrets when it arrived.
    pub verifier: Zeroizing<[u8; 32]>,
}

impl Kept {
    /// The ticket to resume with at `/login`, when it is unexpired at `now_ms`
    /// and `typed` (the verifier of the secrets derived from what was typed)
    /// is its verifier (constant-time); `None` means a full login.
    pub fn for_login(self, typed: &[u8; 32], now_ms: u64) -> Option<HeldTicket> {
        let matches = sotto::crypto::ct_eq(&self.verifier[..], &typed[..]);
        (matches && self.held.expires_ms > now_ms).then_some(self.held)
    }
}

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

/// The wait before the next reconnection round after one that failed, from
/// the random `r`, and the failures counted from then on: a round where
/// every node refused the connection (nothing listening: a node restarting,
/// a cluster standby) waits as the first attempt does and is not counted, so
/// the clients find a node as soon as it listens; any other failed round
/// waits [`jitter_ms`] of the failures so far and counts one more.
pub fn round_wait_ms(failures: u32, refused_everywhere: bool, r: u64) -> (u64, u32) {
    if refused_everywhere {
        (jitter_ms(0, r), failures)
    } else {
        (jitter_ms(failures, r), failures.saturating_add(1))
    }
}

/// The plaintext of the ticket file: empty for none.
pub fn encode(kept: Option<&Kept>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(HELD_LEN));
    if let Some(Kept { held: t, verifier }) = kept {
        out.extend_from_slice(&t.ticket_id);
        out.extend_from_slice(&t.expires_ms.to_be_bytes());
        out.extend_from_slice(&t.ticket);
        out.extend_from_slice(&t.secret[..]);
        out.extend_from_slice(&verifier[..]);
    }
    out
}

/// Reads the plaintext of the ticket file.
pub fn decode(plain: &[u8]) -> Result<Option<Kept>, KeyFileError> {
    if plain.is_empty() || plain.len() == UNVERIFIED_LEN {
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
    let verifier = Zeroizing::new(r.array::<32>()?);
    r.end()?;
    Ok(Some(Kept { held: HeldTicket { ticket, ticket_id, expires_ms, secret }, verifier }))
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

    fn kept() -> Kept {
        Kept { held: held(), verifier: Zeroizing::new([9; 32]) }
    }

    /// The verifier of alice's secrets from this password and passphrase.
    fn typed(password: &str, passphrase: &str) -> Zeroizing<[u8; 32]> {
        crate::session::Session::credentials("alice", password, passphrase).unwrap().verifier()
    }

    #[test]
    fn login_resumes_only_with_the_secrets_the_ticket_was_issued_to() {
        let now = 1_600_000_000_000;
        let right = typed("password123", "red green blue");
        let issued = |expires_ms| Kept {
            held: HeldTicket { expires_ms, ..held() },
            verifier: typed("password123", "red green blue"),
        };
        let back = issued(now + 1).for_login(&right, now).expect("the same secrets resume");
        assert_eq!((back.ticket_id, back.ticket), ([1; 16], [7; TICKET_LEN]));
        // Normalised the same way as the login: the same secrets.
        assert!(issued(now + 1).for_login(&typed("password123", "Red  green BLUE"), now).is_some());
        // The password opens the key store, but the passphrase is wrong: a full login.
        assert!(issued(now + 1).for_login(&typed("password123", "red green purple"), now).is_none());
        assert!(issued(now + 1).for_login(&typed("password124", "red green blue"), now).is_none());
        assert!(issued(now).for_login(&right, now).is_none(), "expired");
        // The verifier binds the name, and both secrets in their order.
        let bob = crate::session::Session::credentials("bob", "password123", "red green blue").unwrap();
        assert_ne!(*bob.verifier(), *right);
        let (a, b) = ([1; 32], [2; 32]);
        assert_ne!(*crate::session::login_verifier(&a, &b), *crate::session::login_verifier(&b, &a));
        let mut expected = b"sotto/v3 login verifier\0".to_vec();
        expected.extend_from_slice(&a);
        expected.extend_from_slice(&b);
        assert_eq!(*crate::session::login_verifier(&a, &b), crypto::sha256(&[&expected]));
    }

    #[test]
    fn refusals_everywhere_keep_the_first_wait_and_other_failures_grow_it() {
        let r = u64::MAX - 7;
        assert_eq!(round_wait_ms(3, true, r), (jitter_ms(0, r), 3), "refused: the first wait, not counted");
        assert!(round_wait_ms(3, true, r).0 <= JITTER_BASE_MS);
        assert_eq!(round_wait_ms(3, false, r), (jitter_ms(3, r), 4), "failed: the grown wait, counted");
        assert_eq!(round_wait_ms(u32::MAX, false, r).1, u32::MAX);
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
            let draws: Vec<u64> =
                (0..2000).map(|_| jitter_ms(failures, u64::from_be_bytes(sotto::crypto::random()))).collect();
            assert!(draws.iter().all(|&d| d <= cap), "{failures}: within [0, {cap}]");
            // Spread, not all at one end: a tenth of the draws in each half at least.
            let low = draws.iter().filter(|&&d| d <= cap / 2).count();
            assert!((200..=1800).contains(&low), "{failures}: {low} of 2000 in the lower half");
        }
    }

    #[test]
    fn a_ticket_round_trips_and_none_is_empty() {
        let k = kept();
        let t = &k.held;
        let plain = encode(Some(&k));
        assert_eq!(plain.len(), HELD_LEN);
        let back = decode(&plain).unwrap().unwrap();
        let b = &back.held;
        assert_eq!((b.ticket_id, b.expires_ms, b.ticket), (t.ticket_id, t.expires_ms, t.ticket));
        assert_eq!(*b.secret, *t.secret);
        assert_eq!(*back.verifier, [9; 32]);
        assert!(encode(None).is_empty());
        assert!(decode(&[]).unwrap().is_none());
        // The layout without a verifier: no ticket (never resumed at /login).
        assert!(decode(&plain[..UNVERIFIED_LEN]).unwrap().is_none());
        for cut in [1, 16, UNVERIFIED_LEN - 1, UNVERIFIED_LEN + 1, HELD_LEN - 1] {
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
        store.save(KIND, &encode(Some(&kept()))).unwrap();
        let path = crate::vault::path(&home, "alice", KIND);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..5], b"SOTT\x02");
        assert!(!bytes.windows(32).any(|w| w == *held().secret), "the secret is not in the clear");
        assert!(!bytes.windows(TICKET_LEN).any(|w| w == [7; TICKET_LEN]), "nor the ticket");
        let mut again = Store::open(&home, "alice", "password123").unwrap();
        let back = decode(&again.load(KIND).unwrap().unwrap()).unwrap().unwrap();
        assert_eq!((back.held.ticket_id, *back.verifier), ([1; 16], [9; 32]));
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
