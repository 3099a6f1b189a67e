//! Decrypted frames dispatched into authenticated sessions of a server core
//! (`sotto::server::fuzz::World`): alice, bob, a second session of alice's and
//! carol, with rooms, a DM channel and published prekeys to act on; jobs and
//! commits run inline.
//! What must hold after every step is checked in `sotto_fuzz::dispatch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sotto_fuzz::dispatch::run(data));
