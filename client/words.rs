//! Front-end helper: generated room passwords, four words drawn uniformly from
//! the EFF large wordlist (7,776 words, 12.9 bits each: 51.7 bits in all).
//!
//! Invariant: each word is drawn with rejection sampling from the operating
//! system's random source, so no word is likelier than another.
//!
//! The wordlist is the Electronic Frontier Foundation's, published under
//! CC BY 3.0 US (https://www.eff.org/dice), unchanged.

use zeroize::Zeroizing;

const LIST: &str = include_str!("words/eff_large.txt");
/// Words in a generated room password.
pub const ROOM_WORDS: usize = 4;

fn words() -> impl Iterator<Item = &'static str> {
    LIST.lines().filter(|l| !l.is_empty())
}

/// A fresh secret of `n` words joined by `.` (one token: it can be typed as one
/// argument of `/join`; a dot, since a few words of the list hold a hyphen).
pub fn secret(n: usize) -> Zeroizing<String> {
    let count = words().count();
    // The largest multiple of `count` below 2^16: draws at or above it are redrawn.
    let limit = (usize::from(u16::MAX) + 1) / count * count;
    let mut out = Zeroizing::new(String::new());
    for i in 0..n {
        let pick = loop {
            let r = usize::from(u16::from_be_bytes(sotto::crypto::random()));
            if r < limit {
                break r % count;
            }
        };
        if i > 0 {
            out.push('.');
        }
        out.push_str(words().nth(pick).unwrap_or("word"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_eff_large_list_and_secrets_are_four_words_from_it() {
        assert_eq!(words().count(), 7776);
        assert_eq!(words().next(), Some("abacus"));
        let s = secret(ROOM_WORDS);
        let picked: Vec<&str> = s.split('.').collect();
        assert_eq!(picked.len(), 4);
        assert!(picked.iter().all(|w| words().any(|l| l == *w)), "{picked:?}");
        assert!(sotto::room::check_password(&s).is_ok(), "long enough for a room");
        assert_ne!(secret(ROOM_WORDS), secret(ROOM_WORDS), "fresh each time (2^-51 to fail)");
    }
}
