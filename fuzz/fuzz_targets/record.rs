//! The record layer with fixed keys. Even first byte: the rest is a record body to
//! open, refused unless it is the genuine seal of its plaintext (and then only once).
//! Odd: the rest is IV || plaintext; seal, deframe, open gives the plaintext back,
//! and the record with one bit flipped (position from the first byte) is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto::crypto::BLOCK;
use sotto::frame::Deframer;
use sotto::opcodes::MAX_MESSAGE;
use sotto::record::{Opener, Sealer, MAX_BODY};
use sotto_fuzz::record_keys;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let mut opener = Opener::new(record_keys());
        if let Ok(pt) = opener.open(rest) {
            let (mut sealed, iv) = (Vec::new(), rest[..BLOCK].try_into().unwrap());
            Sealer::new(record_keys()).seal_with_iv(&pt, iv, &mut sealed).unwrap();
            assert_eq!(&sealed[4..], rest, "opened a record that is not the seal of its plaintext");
            assert!(opener.open(rest).is_err(), "a replayed record opened");
        }
        return;
    }
    let Some((iv, pt)) = rest.split_at_checked(BLOCK) else { return };
    let mut wire = Vec::new();
    let sealed = Sealer::new(record_keys()).seal_with_iv(pt, iv.try_into().unwrap(), &mut wire);
    assert_eq!(sealed.is_ok(), !pt.is_empty() && pt.len() % BLOCK == 0 && pt.len() <= MAX_MESSAGE);
    if sealed.is_err() {
        return;
    }
    let mut d = Deframer::new(MAX_BODY);
    d.push(&wire);
    let body = d.pop().unwrap().unwrap();
    assert_eq!(d.buffered(), 0);
    assert_eq!(Opener::new(record_keys()).open(&body).unwrap(), pt);
    let mut bad = body.clone();
    bad[usize::from(mode >> 1) * 37 % body.len()] ^= 1 << (mode >> 5);
    assert!(Opener::new(record_keys()).open(&bad).is_err(), "a record with a flipped bit opened");
});
