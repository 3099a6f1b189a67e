//! The protocol-2 Double Ratchet (`sotto::ratchet`). Even first byte: the rest
//! is a saved state, which round-trips when it parses and never opens a forged
//! message. Odd: the rest is up to 64 operations on a session of two ratchets
//! from fixed secrets (seal either way, deliver, mutate, replay, resize,
//! misdirect, save and restore); every genuine message opens exactly once.
//! The model and its checks are `sotto_fuzz::ratchet`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sotto_fuzz::ratchet::run(data));
