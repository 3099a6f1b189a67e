//! Property tests of the Double Ratchet (sotto::ratchet) over sessions set
//! up by X3DH (sotto::x3dh): any interleaving of sends both ways, any
//! delivery order, loss, replays, tampering and save/restore of either side.
//!
//! Each delivered message opens exactly once with its text; a replay or a
//! tampered message is refused and leaves the state unchanged; a state saved
//! after opening messages neither opens them again nor holds any key they used;
//! a changed saved state is refused or decodes to what re-encodes to it.

use proptest::prelude::*;
use sotto::ratchet::{Ratchet, Sealed, Trace};
use sotto::x3dh::{self, Bundle};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// Protocol-2 body: u16 length || text || zeros, 176 bytes.
fn body(text: &str) -> Vec<u8> {
    let mut b = vec![0u8; 176];
    b[..2].copy_from_slice(&(text.len() as u16).to_be_bytes());
    b[2..2 + text.len()].copy_from_slice(text.as_bytes());
    b
}

/// A fresh session: A initiates X3DH with B's bundle (with a one-time
/// prekey), both derive SK, A is the ratchet initiator. Returns [A, B] and the AD.
fn session() -> ([Ratchet; 2], Vec<u8>) {
    let (ik_a, ik_b, spk_b, opk_b) = ([1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]);
    let ad = x3dh::session_ad(&[0x5a; 16], 1, &x3dh::public_key(&ik_a), 2, &x3dh::public_key(&ik_b));
    let bundle = Bundle {
        ik: x3dh::public_key(&ik_b),
        spk_id: 1,
        spk: x3dh::public_key(&spk_b),
        opk: Some((2, x3dh::public_key(&opk_b))),
    };
    let init = x3dh::initiate(&ik_a, &bundle, &ad).unwrap();
    let sk_b = x3dh::respond(&ik_b, &spk_b, Some(&opk_b), &x3dh::public_key(&ik_a), &init.ek_pub, &ad).unwrap();
    assert_eq!(*init.sk, *sk_b);
    let a = Ratchet::initiator(&init.sk, &bundle.spk).unwrap();
    let b = Ratchet::responder(&sk_b, &spk_b);
    ([a, b], ad)
}

/// A message on its way, with what the sender knows about it.
#[derive(Clone)]
struct Msg {
    sealed: Sealed,
    text: String,
    trace: Trace,
}

fn open(r: &mut Ratchet, m: &Msg, ad: &[u8]) -> Result<Vec<u8>, sotto::crypto::Invalid> {
    r.open(&m.sealed.header, &m.sealed.ciphertext, &m.sealed.tag, ad).map(|p| p.to_vec())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// No key a message used is in `saved`, and a state restored from it does not open the message.
fn forgotten(saved: &[u8], used: &[Msg], ad: &[u8]) -> Result<(), TestCaseError> {
    for (i, m) in used.iter().enumerate() {
        let t = &m.trace;
        for (name, key) in [("ck", &t.ck[..]), ("mk", &t.mk[..]), ("aes", &t.aes[..]), ("mac", &t.mac[..])] {
            prop_assert!(!contains(saved, key), "message {} ({}): its {name} is in the saved state", i, m.text);
        }
        let mut restored = Ratchet::from_bytes(saved).unwrap();
        prop_assert!(open(&mut restored, m, ad).is_err(), "message {} opened again after a restore", m.text);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    /// Side `0` (A) or `1` (B) seals a message to the other.
    Send(usize),
    /// One of the messages in flight to a side arrives.
    Deliver(usize, usize),
    /// One of them is lost.
    Lose(usize, usize),
    /// A message the side already opened arrives again.
    Replay(usize, usize),
    /// A message in flight arrives with one bit flipped (header, ciphertext or tag); the original stays in flight.
    Tamper(usize, usize, usize),
    /// The side saves its state and restores it.
    Restore(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let side = 0..2usize;
    prop_oneof![
        5 => side.clone().prop_map(Op::Send),
        5 => (side.clone(), any::<usize>()).prop_map(|(s, i)| Op::Deliver(s, i)),
        1 => (side.clone(), any::<usize>()).prop_map(|(s, i)| Op::Lose(s, i)),
        1 => (side.clone(), any::<usize>()).prop_map(|(s, i)| Op::Replay(s, i)),
        1 => (side.clone(), any::<usize>(), 0..(40 + 176 + 32) * 8usize).prop_map(|(s, i, b)| Op::Tamper(s, i, b)),
        1 => side.prop_map(Op::Restore),
    ]
}

fn tampered(m: &Msg, bit: usize) -> Sealed {
    let mut s = m.sealed.clone();
    let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
    match byte {
        0..=31 => s.header.dh[byte] ^= mask,
        32..=35 => s.header.pn ^= u32::from(mask) << (8 * (35 - byte)),
        36..=39 => s.header.n ^= u32::from(mask) << (8 * (39 - byte)),
        40..=215 => s.ciphertext[byte - 40] ^= mask,
        _ => s.tag[byte - 216] ^= mask,
    }
    s
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_schedule_delivers_each_message_once(ops in prop::collection::vec(op(), 1..150)) {
        let (mut r, ad) = session();
        // Per side: messages in flight to it, messages it opened, messages it sent.
        let mut inbox: [Vec<Msg>; 2] = [Vec::new(), Vec::new()];
        let mut opened: [Vec<Msg>; 2] = [Vec::new(), Vec::new()];
        let mut sent: [Vec<Msg>; 2] = [Vec::new(), Vec::new()];
        let mut count = 0usize;
        for op in ops {
            match op {
                Op::Send(s) => {
                    let text = format!("{count} from {} {}", ["A", "B"][s], "x".repeat(count % 37));
                    count += 1;
                    let can = s == 0 || r[s].received_any();
                    match r[s].seal_traced(&body(&text), &ad) {
                        Ok((sealed, trace)) => {
                            prop_assert!(can, "B sealed before it opened anything");
                            let m = Msg { sealed, text, trace };
                            sent[s].push(m.clone());
                            inbox[1 - s].push(m);
                        }
                        Err(_) => prop_assert!(!can, "{} could not seal", ["A", "B"][s]),
                    }
                }
                Op::Deliver(s, i) if !inbox[s].is_empty() => {
                    let m = inbox[s].remove(i % inbox[s].len());
                    let pt = open(&mut r[s], &m, &ad);
                    prop_assert_eq!(pt, Ok(body(&m.text)), "{} did not open", m.text);
                    prop_assert!(r[s].received_any());
                    opened[s].push(m);
                }
                Op::Lose(s, i) if !inbox[s].is_empty() => {
                    let n = inbox[s].len();
                    inbox[s].remove(i % n);
                }
                Op::Replay(s, i) if !opened[s].is_empty() => {
                    let m = &opened[s][i % opened[s].len()];
                    let before = r[s].to_bytes();
                    prop_assert!(open(&mut r[s], m, &ad).is_err(), "{} replayed", m.text);
                    prop_assert_eq!(&*r[s].to_bytes(), &*before, "a refused replay changed the state");
                }
                Op::Tamper(s, i, bit) if !inbox[s].is_empty() => {
                    let t = tampered(&inbox[s][i % inbox[s].len()], bit);
                    let before = r[s].to_bytes();
                    prop_assert!(r[s].open(&t.header, &t.ciphertext, &t.tag, &ad).is_err(), "bit {bit} flipped opened");
                    prop_assert_eq!(&*r[s].to_bytes(), &*before, "a refused message changed the state");
                }
                Op::Restore(s) => {
                    let saved = r[s].to_bytes();
                    r[s] = Ratchet::from_bytes(&saved).unwrap();
                    prop_assert_eq!(&*r[s].to_bytes(), &*saved);
                }
                _ => {}
            }
        }
        for s in 0..2 {
            let saved = r[s].to_bytes();
            // What a side opened or sent is gone from its saved state.
            forgotten(&saved, &opened[s], &ad)?;
            for m in &sent[s] {
                prop_assert!(!contains(&saved, &m.trace.ck) && !contains(&saved, &m.trace.mk), "sender kept a key");
            }
            // Whatever is still in flight opens, once, after a restore too.
            let mut restored = Ratchet::from_bytes(&saved).unwrap();
            for m in &inbox[s] {
                prop_assert_eq!(open(&mut restored, m, &ad), Ok(body(&m.text)), "{} late", m.text);
                prop_assert!(open(&mut restored, m, &ad).is_err());
            }
        }
    }

    #[test]
    fn a_saved_receiver_forgets_what_it_opened(
        n in 1..40usize,
        k in any::<prop::sample::Index>(),
        order in prop::collection::vec(any::<u64>(), 40),
        reply in any::<bool>(),
    ) {
        let ([mut a, mut b], ad) = session();
        let mut msgs = Vec::new();
        for i in 0..n {
            let text = format!("m{i}");
            let (sealed, trace) = a.seal_traced(&body(&text), &ad).unwrap();
            msgs.push(Msg { sealed, text, trace });
        }
        // B opens 0..=k in a random order.
        let k = k.index(n);
        let mut first: Vec<usize> = (0..=k).collect();
        first.sort_by_key(|&i| order[i]);
        for &i in &first {
            prop_assert_eq!(open(&mut b, &msgs[i], &ad), Ok(body(&msgs[i].text)));
        }
        if reply {
            // A second chain each way: the keys of the first must stay gone.
            let (sealed, trace) = b.seal_traced(&body("reply"), &ad).unwrap();
            let r = Msg { sealed, text: "reply".into(), trace };
            prop_assert_eq!(open(&mut a, &r, &ad), Ok(body("reply")));
            prop_assert!(!contains(&a.to_bytes(), &r.trace.mk));
        }
        let saved = b.to_bytes();
        forgotten(&saved, &msgs[..=k], &ad)?;
        // The rest still open from the saved state, in order.
        let mut restored = Ratchet::from_bytes(&saved).unwrap();
        for m in &msgs[k + 1..] {
            prop_assert_eq!(open(&mut restored, m, &ad), Ok(body(&m.text)));
        }
    }
}

/// A saved state with every optional part present and two skipped keys.
fn saved_state() -> Vec<u8> {
    let ([mut a, mut b], ad) = session();
    let m: Vec<Sealed> = (0..3).map(|i| a.seal(&body(&format!("m{i}")), &ad).unwrap()).collect();
    b.open(&m[2].header, &m[2].ciphertext, &m[2].tag, &ad).unwrap();
    b.to_bytes().to_vec()
}

proptest! {
    #![proptest_config(config())]

    /// Saved state with bytes changed, cut or added: refused or decoded, never
    /// a panic; what decodes re-encodes to the same bytes.
    #[test]
    fn a_changed_saved_state_decodes_or_is_refused(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 0..3),
        mode in 0..3u8,
    ) {
        let mut v = saved_state();
        for (at, byte) in &edits {
            let i = at.index(v.len());
            v[i] = *byte;
        }
        match mode {
            0 => {}
            1 => v.truncate(cut.index(v.len())),
            _ => v.extend_from_slice(&extra),
        }
        if let Ok(r) = Ratchet::from_bytes(&v) {
            prop_assert_eq!(&*r.to_bytes(), &v[..]);
        }
    }
}
