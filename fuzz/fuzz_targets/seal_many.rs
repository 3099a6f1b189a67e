//! The multi-buffer seal against the single-record path. Input: the member
//! count (first byte, 1 to 17), a queued-output length (second byte, 0 to
//! 63), then per member 8 bytes of key tweak and 8 of sequence number, then
//! the plaintext (any length: both paths must refuse the same ones).
//! `record::seal_many` must write, byte for byte, what `Sealer::seal` writes
//! for each member, or refuse exactly when one of those seals would fail,
//! writing nothing; the sequence numbers must end alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto::crypto::AeadKeys;
use sotto::record::{seal_many, Sealer};
use sotto_fuzz::RECORD_MATERIAL;

fuzz_target!(|data: &[u8]| {
    let Some((&[count, queued], rest)) = data.split_first_chunk::<2>() else { return };
    let count = usize::from(count) % 17 + 1;
    let queued = vec![0xa5u8; usize::from(queued) % 64];
    let Some((heads, pt)) = rest.split_at_checked(count * 16) else { return };
    let sealer = |head: &[u8]| {
        let mut material = RECORD_MATERIAL;
        for (i, b) in head[..8].iter().enumerate() {
            material[i] ^= b;
            material[16 + i] ^= b.rotate_left(3);
        }
        let seq = u64::from_be_bytes(head[8..16].try_into().unwrap());
        Sealer::starting_at(AeadKeys::from_material(&material), seq)
    };
    let mut one: Vec<Sealer> = heads.chunks_exact(16).map(sealer).collect();
    let mut many: Vec<Sealer> = heads.chunks_exact(16).map(sealer).collect();
    let singles: Vec<Option<Vec<u8>>> = one
        .iter_mut()
        .map(|s| {
            let mut out = queued.clone();
            s.seal(pt, &mut out).ok().map(|()| out)
        })
        .collect();
    let mut outs: Vec<Vec<u8>> = (0..count).map(|_| queued.clone()).collect();
    let result = {
        let mut ss: Vec<&mut Sealer> = many.iter_mut().collect();
        let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().collect();
        seal_many(&mut ss, pt, &mut os)
    };
    if singles.iter().all(Option::is_some) {
        assert!(result.is_ok(), "seal_many refused what every single seal took");
        for (single, out) in singles.iter().zip(&outs) {
            assert_eq!(single.as_deref(), Some(&out[..]), "multi-buffer record differs");
        }
        // Sequence numbers moved alike: the next records match.
        for (a, b) in one.iter_mut().zip(many.iter_mut()) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            assert_eq!(a.seal(&[3; 16], &mut x).is_ok(), b.seal(&[3; 16], &mut y).is_ok());
            assert_eq!(x, y);
        }
    } else {
        assert!(result.is_err(), "seal_many took what a single seal refused");
        assert!(outs.iter().all(|o| *o == queued), "a refused seal_many wrote");
        // Nothing moved: each sealer still seals exactly what a fresh one at its sequence number would.
        for (head, b) in heads.chunks_exact(16).zip(many.iter_mut()) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            assert_eq!(sealer(head).seal(&[3; 16], &mut x).is_ok(), b.seal(&[3; 16], &mut y).is_ok());
            assert_eq!(x, y);
        }
    }
});
