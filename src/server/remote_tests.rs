//! Output loops (`--threads` over 1) against the single loop: the same
//! requests give every connection the same frames, in records that open in
//! sequence under its keys, under the same bounds and closes. The output
//! loop's side is the real `Sealing`; only the sockets are left out.
//!
//! Two cores given the same requests may order the answers of one instant
//! differently (timeouts walk hash maps, whose order differs between
//! instances), so each flush compares the frames as a multiset; the order
//! within a connection is checked by the records opening in sequence.

use proptest::prelude::*;
use zerocopy::IntoBytes;

use crate::opcodes::{SendDmHead, SendDmS, SendRoomMessageS};
use crate::server::core::ConnId;
use crate::server::fuzz::{self, World};
use crate::server::remote::{Sealing, Written};
use crate::wire::{Classed, Message};

/// A world and, with output loops, the output loops' sealing.
struct Side {
    world: World,
    sealing: Option<Sealing>,
    /// The client's opener of each connection.
    openers: std::collections::HashMap<ConnId, crate::record::Opener>,
}

impl Side {
    fn new(threaded: bool) -> Side {
        Side::under(threaded, fuzz::limits())
    }

    fn under(threaded: bool, limits: crate::server::core::Limits) -> Side {
        let world = World::new_on(limits, std::sync::Arc::new(crate::server::store::MemStore::default()));
        if threaded {
            Side { world: world.with_output_loops(), sealing: Some(Sealing::default()), openers: Default::default() }
        } else {
            Side { world, sealing: None, openers: Default::default() }
        }
    }

    fn open(&mut self, user: usize) -> Option<ConnId> {
        // The event loop attaches a connection to its output loop at accept, before any item.
        let (id, opener) = self.world.open_with(user, |id| {
            if let Some(s) = &mut self.sealing {
                s.attach(id);
            }
        })?;
        self.openers.insert(id, opener);
        Some(id)
    }

    /// As the event loop after a turn: the finished connections are removed
    /// (with output loops, their lanes go with the `Forget` item).
    fn reap(&mut self, conns: &[ConnId]) {
        for &id in conns {
            if self.world.core().is_done(id) {
                self.world.core().remove(id);
            }
        }
        if let Some(sealing) = &mut self.sealing {
            for item in self.world.core().take_output() {
                sealing.apply(item, |_| {});
            }
        }
    }

    /// The frames sent to `id` since the last call, opened by its client in
    /// sequence (a record out of order or sealed under another key fails),
    /// sorted.
    fn frames(&mut self, id: ConnId) -> Vec<Vec<u8>> {
        let bytes = self.wire(id);
        let mut d = crate::frame::Deframer::new(crate::record::MAX_BODY);
        d.push(&bytes);
        let opener = self.openers.get_mut(&id).expect("an opened connection");
        let mut got = Vec::new();
        while let Some(body) = d.pop().expect("whole records") {
            got.push(opener.open(&body).expect("the record opens, in sequence"));
        }
        got.sort();
        got
    }

    /// The bytes on the wire for `id` since the last call, as the event loop
    /// (single loop) or the output loop (threaded) would write them, all of
    /// them: the output loop reports them written.
    fn wire(&mut self, id: ConnId) -> Vec<u8> {
        match &mut self.sealing {
            None => self.world.core().transmit(id).map(std::mem::take).unwrap_or_default(),
            Some(sealing) => {
                for item in self.world.core().take_output() {
                    sealing.apply(item, |_| {});
                }
                let bytes = sealing.lane(id).map(|l| std::mem::take(&mut l.out)).unwrap_or_default();
                self.world.core().written(Written { conn: id, bytes: bytes.len(), failed: None });
                // As the event loop's pass over the listed connections (bulk top-up).
                let _ = self.world.core().transmit(id);
                bytes
            }
        }
    }
}

fn say(msg_id: u64, n: u8) -> Vec<u8> {
    fuzz::request::<SendRoomMessageS>(msg_id, |m| {
        m.head.iv = [n; 16];
        m.ciphertext.fill(n);
        m.head.set_room("lobby")
    })
}

fn dm(msg_id: u64, to: usize) -> Vec<u8> {
    let mut m = SendDmS::request(msg_id, fuzz::START_MS);
    let head: &mut SendDmHead = m.head_mut();
    head.peer_uid.set(fuzz::uid(to));
    m.as_bytes().to_vec()
}

#[derive(Debug, Clone)]
enum Step {
    Open(usize),
    Say(usize, u8),
    Dm(usize, usize),
    Close(usize),
    Settle,
    Flush(usize),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize).prop_map(Step::Open),
        (0..8usize, any::<u8>()).prop_map(|(c, n)| Step::Say(c, n)),
        (0..8usize, 0..3usize).prop_map(|(c, to)| Step::Dm(c, to)),
        (0..8usize).prop_map(Step::Close),
        Just(Step::Settle),
        (0..8usize).prop_map(Step::Flush),
        (0..20_000u64).prop_map(Step::Advance),
    ]
}

/// Runs `steps` on both sides; at each flush (and at the end, for every
/// connection) both must have put the same bytes on the wire, and agree on
/// which connections are finished.
fn same_on_the_wire(steps: &[Step]) {
    let (mut one, mut two) = (Side::new(false), Side::new(true));
    let mut conns: Vec<ConnId> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let msg_id = 100 + i as u64;
        match *s {
            Step::Open(user) => {
                let (a, b) = (one.open(user), two.open(user));
                assert_eq!(a, b, "the same connection ids");
                conns.extend(a);
            }
            Step::Say(c, n) => {
                if let Some(&id) = conns.get(c) {
                    assert_eq!(one.world.dispatch(id, &say(msg_id, n)), two.world.dispatch(id, &say(msg_id, n)));
                }
            }
            Step::Dm(c, to) => {
                if let Some(&id) = conns.get(c) {
                    assert_eq!(one.world.dispatch(id, &dm(msg_id, to)), two.world.dispatch(id, &dm(msg_id, to)));
                }
            }
            Step::Close(c) => {
                if let Some(&id) = conns.get(c) {
                    one.world.core().close(id, "peer closed");
                    two.world.core().close(id, "peer closed");
                }
            }
            Step::Settle => {
                one.world.settle();
                two.world.settle();
            }
            Step::Flush(c) => {
                if let Some(&id) = conns.get(c) {
                    assert_eq!(one.frames(id), two.frames(id), "connection {id}, step {i}");
                }
            }
            Step::Advance(ms) => {
                one.world.advance(ms);
                two.world.advance(ms);
            }
        }
        for &id in &conns {
            assert_eq!(one.world.closing(id), two.world.closing(id), "connection {id} closes alike, step {i}");
        }
        one.reap(&conns);
        two.reap(&conns);
    }
    one.world.settle();
    two.world.settle();
    for &id in &conns {
        assert_eq!(one.frames(id), two.frames(id), "connection {id} at the end");
        assert_eq!(one.world.core().is_done(id), two.world.core().is_done(id), "connection {id} done alike");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn output_loops_send_the_same_frames_in_sequence_as_the_single_loop(steps in proptest::collection::vec(step(), 1..60)) {
        same_on_the_wire(&steps);
    }
}

#[test]
fn a_room_fan_out_is_one_item_for_all_members_and_the_same_records() {
    // alice twice, bob once: alice's message goes to bob and alice's other session.
    let steps =
        [Step::Open(0), Step::Open(0), Step::Open(1), Step::Say(0, 7), Step::Settle, Step::Flush(1), Step::Flush(2)];
    same_on_the_wire(&steps);
    let mut two = Side::new(true);
    let ids: Vec<ConnId> = (0..3).filter_map(|u| two.open([0, 0, 1][u])).collect();
    for id in &ids {
        two.wire(*id);
    }
    two.world.dispatch(ids[0], &say(5, 9));
    let items = two.world.core().take_output();
    let many: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            crate::server::remote::Out::Many { conns, .. } => Some(conns.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(many, [vec![ids[1], ids[2]]], "one item, every other member session");
}

#[test]
fn queued_output_counts_until_written_and_a_close_waits_for_it() {
    let mut two = Side::new(true);
    let alice = two.open(0).unwrap();
    let bob = two.open(1).unwrap();
    two.wire(alice);
    two.wire(bob);
    assert!(!two.world.core().has_output(bob));
    two.world.dispatch(alice, &say(5, 1));
    assert!(two.world.core().has_output(bob), "bob's record is queued in his output loop");
    two.world.core().close(bob, "peer closed");
    assert!(!two.world.core().is_done(bob), "not finished before the output loop wrote it");
    let bytes = two.wire(bob);
    assert!(!bytes.is_empty());
    assert!(two.world.core().is_done(bob), "finished once written");
}

#[test]
fn a_slow_consumer_behind_an_output_loop_is_closed_at_the_same_bound() {
    // Bob reads nothing (nothing is reported written for him); alice's
    // messages fill his output until the bound closes him: after as many
    // messages with an output loop as with one loop.
    let closed_after = |threaded: bool| {
        let mut side = Side::under(threaded, crate::server::core::Limits { rate: None, ..fuzz::limits() });
        let alice = side.open(0).unwrap();
        let bob = side.open(1).unwrap();
        side.wire(alice);
        side.wire(bob);
        let mut sent = 0;
        while side.world.closing(bob).is_none() && sent < 10_000 {
            side.world.dispatch(alice, &say(1000 + sent, 3));
            side.world.settle();
            side.wire(alice);
            sent += 1;
        }
        assert_eq!(side.world.closing(bob), Some("slow consumer: output bound exceeded"));
        sent
    };
    let (one, two) = (closed_after(false), closed_after(true));
    assert!(one > 1, "the bound takes more than one message");
    assert_eq!(one, two, "the same bound");
}

#[test]
fn a_failed_write_drops_the_output_and_closes() {
    let mut two = Side::new(true);
    let alice = two.open(0).unwrap();
    let bob = two.open(1).unwrap();
    two.wire(alice);
    two.wire(bob);
    two.world.dispatch(alice, &say(5, 1));
    assert!(two.world.core().has_output(bob));
    two.world.core().written(Written { conn: bob, bytes: 0, failed: Some("write error") });
    assert_eq!(two.world.closing(bob), Some("write error"));
    assert!(two.world.core().is_done(bob), "nothing more to write: it is finished");
}
