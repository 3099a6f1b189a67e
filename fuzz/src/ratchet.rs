//! The `ratchet` target: the protocol-2 Double Ratchet (`sotto::ratchet`).
//!
//! First byte even: the rest is a saved state for `Ratchet::from_bytes` (a
//! local file the client reads back). It never panics; what parses saves to
//! the same bytes; a seal from it succeeds exactly when it has a sending chain
//! whose counter can grow, and a forged message (header from the mode byte
//! and the state's own keys) never opens and changes nothing.
//!
//! First byte odd: the rest is a sequence of at most [`MAX_OPS`] operations on a
//! real session, A (initiator) and B (responder) made from fixed secrets
//! ([`pair`]), every new ratchet key chosen by a counter (`open_with`), so a
//! run is deterministic. An operation is a byte `op` (`op % 8` picks it), then
//! its operands:
//!
//! | op | operands | what it does |
//! |---|---|---|
//! | [`SEAL_AB`], [`SEAL_BA`] | `len` | seal `16 * (1 + len % 65)` bytes A→B / B→A |
//! | [`DELIVER`] | `k` | deliver sent message `k % sent` to its receiver |
//! | [`MUTATE`] | `k, m, m × (pos u16, x)` | deliver it with `x` xored at `pos % len` of header ‖ ciphertext ‖ tag (`m % 4 + 1` times) |
//! | [`REPLAY`] | `k` | deliver delivered message `k % delivered` again |
//! | [`SAVE`] | `side` | replace a side (`side % 2`: A, B) by `from_bytes(to_bytes())` |
//! | [`RESIZE`] | `k, how` | deliver it with a block cut or added, a byte cut or added, or no ciphertext |
//! | [`MISDIRECT`] | `k, how` | deliver it back to its sender, or to its receiver under another AD |
//!
//! What must hold: every seal succeeds exactly when the model says (A always;
//! B once it has opened a message); every genuine message opens exactly once,
//! in any order, with its body; a mutated, replayed, resized or misdirected
//! one fails; a failed open or seal leaves `to_bytes()` unchanged; saved
//! state round-trips; `sent_any`/`received_any` follow the model.
//!
//! Invariant: with at most [`MAX_OPS`] messages no chain skips more than
//! `MAX_SKIP` keys and no skipped key is evicted, so "every genuine message
//! opens once" is exactly the design's promise, not a model's approximation.
//! So the `MAX_SKIP` refusal and the eviction of skipped keys are not reached
//! here; `sotto::ratchet`'s unit tests cover them.

use sotto::crypto::BLOCK;
use sotto::ratchet::{Header, Ratchet, Sealed, HEADER_LEN};
use sotto::x3dh::{public_key, session_ad};

/// The shared secret both ratchets start from (as if from X3DH).
pub const SK: [u8; 32] = *b"sotto fuzz ratchet shared secret";
/// B's signed prekey secret: its first ratchet key pair.
pub const SPK_SECRET: [u8; 32] = [0x55; 32];
/// A's first ratchet secret.
pub const A_SECRET: [u8; 32] = [0x66; 32];
/// The most operations one input runs.
pub const MAX_OPS: usize = 64;
/// The most blocks of one body: 1040 bytes.
pub const MAX_BLOCKS: usize = 65;

/// Operation codes (`op % 8`).
pub const SEAL_AB: u8 = 0;
/// Seal B→A.
pub const SEAL_BA: u8 = 1;
/// Deliver a sent message.
pub const DELIVER: u8 = 2;
/// Deliver a mutated copy.
pub const MUTATE: u8 = 3;
/// Deliver a delivered message again.
pub const REPLAY: u8 = 4;
/// Save and restore a side.
pub const SAVE: u8 = 5;
/// Deliver a copy with another ciphertext length.
pub const RESIZE: u8 = 6;
/// Deliver to the sender, or under another AD.
pub const MISDIRECT: u8 = 7;

/// The session's associated data.
pub fn ad() -> Vec<u8> {
    session_ad(&[0xd1; 16], 1, &[0x1a; 32], 2, &[0x2b; 32])
}

/// The fixed pair: A the initiator, B the responder.
pub fn pair() -> (Ratchet, Ratchet) {
    // NOTE(unwrap): fixed valid keys; a failure must stop the fuzzer at once.
    let a = Ratchet::initiator_with(&SK, &public_key(&SPK_SECRET), &A_SECRET).unwrap();
    (a, Ratchet::responder(&SK, &SPK_SECRET))
}

/// The body of message `id`: `16 * blocks` bytes, its id first.
pub fn body(id: usize, blocks: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..blocks * BLOCK).map(|i| (i as u8).wrapping_mul(31) ^ (id as u8)).collect();
    b[..4].copy_from_slice(&(id as u32).to_be_bytes());
    b
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        state(mode >> 1, rest);
    } else {
        session(rest);
    }
}

/// Offset of DHr in a saved state (version, flags, DHs secret, RK).
const DHR_AT: usize = 2 + 64;

/// A saved state from the input.
fn state(sel: u8, bytes: &[u8]) {
    let Ok(mut r) = Ratchet::from_bytes(bytes) else { return };
    let saved = r.to_bytes();
    assert_eq!(*saved, bytes, "to_bytes(from_bytes(x)) != x");
    let again = Ratchet::from_bytes(&saved).expect("a saved state does not parse");
    assert_eq!(*again.to_bytes(), *saved);
    let flags = bytes[1];
    let counters = DHR_AT + 32 * (flags & 7).count_ones() as usize;
    let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    let (ns, nr) = (u32_at(counters), u32_at(counters + 4));
    // A forged message: under the state's own receiving key (or A's, a new one),
    // a few numbers past its receiving counter; it never opens and changes nothing.
    let dh = if flags & 1 != 0 && sel & 1 == 0 {
        bytes[DHR_AT..DHR_AT + 32].try_into().unwrap()
    } else {
        public_key(&A_SECRET)
    };
    let step = u32::from(sel >> 1) * 17;
    let header = Header { dh, pn: nr.wrapping_add(step), n: nr.wrapping_add(step) };
    assert!(r.open_with(&header, &[0x5a; 32], &[0; 32], &ad(), &[0x77; 32]).is_err(), "a forged message opened");
    assert_eq!(*r.to_bytes(), *saved, "a failed open changed the state");
    let sealed = r.seal(&body(0, 1), &ad());
    assert_eq!(sealed.is_ok(), flags & 2 != 0 && ns != u32::MAX, "seal from a state, flags {flags:#x} ns {ns}");
    match sealed {
        Ok(s) => {
            assert_eq!(s.header.n, ns);
            assert!(r.sent_any());
            let after = r.to_bytes();
            assert_eq!(*Ratchet::from_bytes(&after).expect("state after a seal").to_bytes(), *after);
        }
        Err(_) => assert_eq!(*r.to_bytes(), *saved, "a failed seal changed the state"),
    }
}

/// One message of the session.
struct Msg {
    /// Sent by A (to B), or by B (to A).
    from_a: bool,
    sealed: Sealed,
    body: Vec<u8>,
    delivered: bool,
}

/// The two sides and the model.
struct Session {
    a: Ratchet,
    b: Ratchet,
    ad: Vec<u8>,
    sent: Vec<Msg>,
    /// Model: has each side opened a message? Has it sealed one?
    a_opened: bool,
    b_opened: bool,
    a_sealed: bool,
    b_sealed: bool,
    /// Counter of the ratchet secrets handed to `open_with`.
    secrets: u32,
}

/// Reads operands; a missing one reads as zero (the input ends the run after it).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
}

fn session(data: &[u8]) {
    let (a, b) = pair();
    let mut s = Session {
        a,
        b,
        ad: ad(),
        sent: Vec::new(),
        a_opened: false,
        b_opened: false,
        a_sealed: false,
        b_sealed: false,
        secrets: 0,
    };
    let mut input = Input(data);
    for _ in 0..MAX_OPS {
        if input.0.is_empty() {
            break;
        }
        let op = input.u8();
        match op % 8 {
            SEAL_AB | SEAL_BA => s.seal(op % 8 == SEAL_AB, usize::from(input.u8()) % MAX_BLOCKS + 1),
            DELIVER => {
                let k = input.u8();
                if let Some(i) = s.pick(k, |_| true) {
                    let m = &s.sent[i];
                    let (from_a, sealed) = (m.from_a, m.sealed.clone());
                    s.deliver(i, from_a, &sealed, None);
                }
            }
            MUTATE => {
                let k = input.u8();
                let count = input.u8() % 4 + 1;
                let edits: Vec<(u16, u8)> = (0..count).map(|_| (input.u16(), input.u8())).collect();
                if let Some(i) = s.pick(k, |_| true) {
                    let m = &s.sent[i];
                    let mut raw = [&m.sealed.header.to_bytes()[..], &m.sealed.ciphertext, &m.sealed.tag].concat();
                    let len = raw.len();
                    for (pos, x) in edits {
                        raw[usize::from(pos) % len] ^= x;
                    }
                    let ct_end = len - 32;
                    let t = Sealed {
                        header: Header::from_bytes(&raw[..HEADER_LEN]).unwrap(),
                        ciphertext: raw[HEADER_LEN..ct_end].to_vec(),
                        tag: raw[ct_end..].try_into().unwrap(),
                    };
                    let from_a = m.from_a;
                    // Edits that cancel out deliver the genuine message.
                    let genuine = t == m.sealed;
                    s.deliver(i, from_a, &t, if genuine { None } else { Some("mutated") });
                }
            }
            REPLAY => {
                let k = input.u8();
                if let Some(i) = s.pick(k, |m| m.delivered) {
                    let m = &s.sent[i];
                    let (from_a, sealed) = (m.from_a, m.sealed.clone());
                    s.deliver(i, from_a, &sealed, Some("replayed"));
                }
            }
            SAVE => {
                let side = if input.u8() % 2 == 0 { &mut s.a } else { &mut s.b };
                let saved = side.to_bytes();
                *side = Ratchet::from_bytes(&saved).expect("a saved state does not parse");
                assert_eq!(*side.to_bytes(), *saved, "save and restore changed the state");
            }
            RESIZE => {
                let (k, how) = (input.u8(), input.u8());
                if let Some(i) = s.pick(k, |_| true) {
                    let m = &s.sent[i];
                    let mut t = m.sealed.clone();
                    match how % 5 {
                        0 => t.ciphertext.truncate(t.ciphertext.len() - BLOCK),
                        1 => t.ciphertext.extend_from_slice(&[how; BLOCK]),
                        2 => t.ciphertext.truncate(t.ciphertext.len() - 1),
                        3 => t.ciphertext.push(how),
                        _ => t.ciphertext.clear(),
                    }
                    let from_a = m.from_a;
                    s.deliver(i, from_a, &t, Some("resized"));
                }
            }
            _ => {
                let (k, how) = (input.u8(), input.u8());
                if let Some(i) = s.pick(k, |_| true) {
                    let m = &s.sent[i];
                    let (from_a, sealed) = (m.from_a, m.sealed.clone());
                    if how % 2 == 0 {
                        s.deliver(i, !from_a, &sealed, Some("sent back to its sender"));
                    } else {
                        let mut other = s.ad.clone();
                        let at = usize::from(how) % other.len();
                        other[at] ^= 1;
                        s.open_expect_fail(from_a, &sealed, &other, "under another AD");
                    }
                }
            }
        }
        assert_eq!((s.a.sent_any(), s.a.received_any()), (s.a_sealed, s.a_opened), "A's flags");
        assert_eq!((s.b.sent_any(), s.b.received_any()), (s.b_sealed, s.b_opened), "B's flags");
    }
    // Whatever is still undelivered opens now, in order of sending.
    for i in 0..s.sent.len() {
        if !s.sent[i].delivered {
            let (from_a, sealed) = (s.sent[i].from_a, s.sent[i].sealed.clone());
            s.deliver(i, from_a, &sealed, None);
        }
    }
}

impl Session {
    /// The sent message `k` picks among those that `keep`.
    fn pick(&self, k: u8, keep: impl Fn(&Msg) -> bool) -> Option<usize> {
        let idx: Vec<usize> = (0..self.sent.len()).filter(|&i| keep(&self.sent[i])).collect();
        (!idx.is_empty()).then(|| idx[usize::from(k) % idx.len()])
    }

    fn seal(&mut self, by_a: bool, blocks: usize) {
        let id = self.sent.len();
        let body = body(id, blocks);
        let (r, can) = if by_a { (&mut self.a, true) } else { (&mut self.b, self.b_opened) };
        let before = r.to_bytes();
        match r.seal(&body, &self.ad) {
            Ok(sealed) => {
                assert!(can, "B sealed before it opened anything");
                assert_eq!(sealed.ciphertext.len(), body.len());
                assert_ne!(sealed.ciphertext, body);
                if by_a {
                    self.a_sealed = true;
                } else {
                    self.b_sealed = true;
                }
                self.sent.push(Msg { from_a: by_a, sealed, body, delivered: false });
            }
            Err(_) => {
                assert!(!can, "a seal by {} failed", if by_a { "A" } else { "B" });
                assert_eq!(*r.to_bytes(), *before, "a failed seal changed the state");
            }
        }
    }

    /// Delivers `t` (message `i` or a copy of it) to A (`to_b` false) or B:
    /// it opens, with message `i`'s body, exactly when `bad` is `None` and
    /// message `i` was not delivered yet.
    fn deliver(&mut self, i: usize, to_b: bool, t: &Sealed, bad: Option<&str>) {
        self.secrets += 1;
        let mut secret = [if to_b { 0xb0 } else { 0xa0 }; 32];
        secret[..4].copy_from_slice(&self.secrets.to_be_bytes());
        let r = if to_b { &mut self.b } else { &mut self.a };
        let before = r.to_bytes();
        let opened = r.open_with(&t.header, &t.ciphertext, &t.tag, &self.ad, &secret);
        let m = &mut self.sent[i];
        match (bad, m.delivered, opened) {
            (None, false, Ok(pt)) => {
                assert_eq!(*pt, m.body, "message {i} opened to another body");
                m.delivered = true;
                if to_b {
                    self.b_opened = true;
                } else {
                    self.a_opened = true;
                }
            }
            (None, false, Err(_)) => panic!("genuine message {i} did not open"),
            (None, true, Ok(_)) => panic!("message {i} opened twice"),
            (Some(why), _, Ok(_)) => panic!("message {i} opened {why}"),
            (_, _, Err(_)) => assert_eq!(*r.to_bytes(), *before, "a failed open changed the state"),
        }
    }

    /// Opens `t` at A (`to_b` false) or B under `ad`: it must fail and change nothing.
    fn open_expect_fail(&mut self, to_b: bool, t: &Sealed, ad: &[u8], why: &str) {
        let r = if to_b { &mut self.b } else { &mut self.a };
        let before = r.to_bytes();
        assert!(r.open_with(&t.header, &t.ciphertext, &t.tag, ad, &[0xcc; 32]).is_err(), "a message opened {why}");
        assert_eq!(*r.to_bytes(), *before, "a failed open changed the state");
    }
}

/// Encodes operations for the seeds: each `(op, operands)`.
pub fn ops(steps: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![1];
    for (op, operands) in steps {
        v.push(*op);
        v.extend_from_slice(operands);
    }
    v
}
