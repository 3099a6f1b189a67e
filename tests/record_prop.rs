//! Property: the multi-buffer seal (`record::seal_many`) writes, byte for
//! byte, what sealing each member's record one by one writes, for random
//! keys, sequence numbers, member counts and plaintext sizes (every size
//! class's room delivery, and any whole number of blocks).

use proptest::prelude::*;
use sotto::crypto::AeadKeys;
use sotto::opcodes::{Class, MAX_MESSAGE};
use sotto::record::{seal_many, Sealer};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// A member: its key material, its next sequence number, and what its
/// output already holds.
#[derive(Debug, Clone)]
struct Member {
    material: [u8; 48],
    seq: u64,
    queued: Vec<u8>,
}

fn member() -> impl Strategy<Value = Member> {
    (
        prop::array::uniform32(any::<u8>()),
        prop::array::uniform16(any::<u8>()),
        prop_oneof![any::<u64>().prop_map(|s| s % (u64::MAX - 1)), Just(0u64), Just(u64::MAX - 1)],
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(a, b, seq, queued)| {
            let mut material = [0u8; 48];
            material[..32].copy_from_slice(&a);
            material[32..].copy_from_slice(&b);
            Member { material, seq, queued }
        })
}

/// A plaintext length: a size class's delivered room message, or any whole
/// number of blocks up to the largest message.
fn length() -> impl Strategy<Value = usize> {
    let classes: Vec<usize> = Class::ALL
        .iter()
        .map(|c| match c {
            Class::S => core::mem::size_of::<sotto::opcodes::ReceiveRoomMessageS>(),
            Class::M => core::mem::size_of::<sotto::opcodes::ReceiveRoomMessageM>(),
            Class::L => core::mem::size_of::<sotto::opcodes::ReceiveRoomMessageL>(),
            Class::X => core::mem::size_of::<sotto::opcodes::ReceiveRoomMessageX>(),
        })
        .collect();
    prop_oneof![prop::sample::select(classes), (1..=MAX_MESSAGE / 16).prop_map(|b| b * 16)]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn seal_many_equals_one_by_one(
        members in prop::collection::vec(member(), 1..=17),
        len in length(),
        fill in any::<u64>(),
    ) {
        let pt: Vec<u8> = (0..len).map(|i| (fill.wrapping_mul(i as u64 + 1) >> 7) as u8).collect();
        let make = |m: &Member| Sealer::starting_at(AeadKeys::from_material(&m.material), m.seq);
        let mut one: Vec<Sealer> = members.iter().map(make).collect();
        let mut many: Vec<Sealer> = members.iter().map(make).collect();
        let singles: Vec<Vec<u8>> = one
            .iter_mut()
            .zip(&members)
            .map(|(s, m)| {
                let mut out = m.queued.clone();
                s.seal(&pt, &mut out).map(|()| out)
            })
            .collect::<Result<_, _>>()
            .map_err(|_| TestCaseError::fail("single seal failed"))?;
        let mut outs: Vec<Vec<u8>> = members.iter().map(|m| m.queued.clone()).collect();
        {
            let mut ss: Vec<&mut Sealer> = many.iter_mut().collect();
            let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().collect();
            prop_assert!(seal_many(&mut ss, &pt, &mut os).is_ok());
        }
        prop_assert_eq!(&singles, &outs);
        // Both paths moved every sequence number alike.
        for (a, b) in one.iter_mut().zip(many.iter_mut()) {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            prop_assert_eq!(a.seal(&[7; 16], &mut x).is_ok(), b.seal(&[7; 16], &mut y).is_ok());
            prop_assert_eq!(x, y);
        }
    }
}
