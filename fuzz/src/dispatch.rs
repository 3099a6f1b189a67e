//! The `dispatch` target's model: an input is a sequence of steps, each one
//! decrypted frame for one of four authenticated sessions of a
//! `sotto::server::fuzz::World`; what the server seals back is opened and
//! checked after every step.
//!
//! A step is `ctl, n, frame` with `n` a big-endian u16 and `frame` of
//! `16 * (n + 1)` bytes (whole blocks, at most `MAX_MESSAGE`: what a record
//! can open to), or `ctl` alone when it resends the previous step's frame. `ctl` bits 0-1 pick the session
//! (alice, bob, alice's second session, carol; the last two open when first
//! used); bit 2 reconnects it first (the old connection is gone); bit 3
//! switches whether its client reads; bit 4 resends; bits 5-7 move the clock
//! twice that many seconds first. A short last frame is cut to whole blocks.
//!
//! Invariant: every check below is a property of the design, so a failure
//! is a bug in the server core, not in the model.

use std::collections::{HashMap, HashSet};

use sotto::frame::Deframer;
use sotto::opcodes::{info, Class, StatusReply, DACK, MAX_MESSAGE, SMPS, SRMS, STAT};
use sotto::record::{Opener, MAX_BODY};
use sotto::server::core::ConnId;
use sotto::server::fuzz::{self, World, USERS};
use sotto::wire::{self, code, Direction, Status};

use crate::MESSAGES;

/// The user of each session slot: alice, bob, alice again, carol.
pub const SLOT_USERS: [usize; 4] = [0, 1, 0, 2];
/// Requests acknowledged only once this turn's commit is durable (DESIGN §8),
/// besides every class of srm* and smp* (`durable`).
const DURABLE: [u32; 9] = [
    sotto::opcodes::CRMS,
    sotto::opcodes::JRMS,
    sotto::opcodes::LVRM,
    sotto::opcodes::DLRM,
    sotto::opcodes::JMPU,
    sotto::opcodes::AMPU,
    sotto::opcodes::RJMU,
    sotto::opcodes::PKUP,
    sotto::opcodes::PKGT,
];

/// Requests whose check runs on a worker, as a login's does: a prekey
/// upload's signatures, and the two secrets that prove a deletion. A file
/// download (`flgt`) reads its chunks on workers from then on, whatever the
/// step.
const ON_WORKER: [u32; 2] = [sotto::opcodes::PKUP, sotto::opcodes::DLAC];

/// Whether `opcode` is a member of the classed family based at `base`.
fn of_family(base: u32, opcode: u32) -> bool {
    Class::ALL.iter().any(|c| base + c.opcode_offset() == opcode)
}

/// Whether a handled request of `opcode` is acknowledged only after the commit.
fn durable(opcode: u32) -> bool {
    DURABLE.contains(&opcode) || of_family(SRMS, opcode) || of_family(SMPS, opcode)
}
/// Largest record on the wire: length prefix and largest body.
const MAX_RECORD: usize = 4 + MAX_BODY;

/// `ctl` bits: the session slot, then what happens around the frame.
pub const RECONNECT: u8 = 4;
/// Switches whether the slot's client reads its output.
pub const SWITCH_READING: u8 = 8;
/// The frame is the previous step's again (as a client resends after a reconnect).
pub const RESEND: u8 = 16;

/// `ctl` bits moving the clock `s` seconds first (in steps of 2, at most 14).
pub const fn secs(s: u8) -> u8 {
    (s / 2) << 5
}

/// One step of an input, for the seeds: `frame` padded to whole blocks
/// (nothing when `ctl` resends).
pub fn step(ctl: u8, frame: &[u8]) -> Vec<u8> {
    if ctl & RESEND != 0 {
        return vec![ctl];
    }
    let blocks = frame.len().div_ceil(16).clamp(1, MAX_MESSAGE / 16);
    // NOTE: at most MAX_MESSAGE / 16 (1,050) blocks: n fits a u16.
    let mut out = vec![ctl];
    out.extend_from_slice(&((blocks - 1) as u16).to_be_bytes());
    out.extend_from_slice(frame);
    out.resize(3 + blocks * 16, 0);
    out
}

/// A session's client: its opener, whether it reads, and what it is owed.
struct Client {
    id: ConnId,
    user: usize,
    opener: Opener,
    deframer: Deframer,
    reading: bool,
    /// The msg_id of every request dispatched on this connection.
    sent: HashSet<u64>,
    /// Requests owed a final answer: msg_id -> the time by which it is due.
    owed: HashMap<u64, u64>,
}

/// The world and its four session slots.
struct Run {
    world: World,
    slots: [Option<Client>; 4],
    /// Whether a download was asked for: chunk reads may run on workers.
    downloads: bool,
}

/// Runs one input and checks every invariant; panics on a violation.
pub fn run(data: &[u8]) {
    let mut run = Run { world: World::new(), slots: Default::default(), downloads: false };
    run.open(0);
    run.open(1);
    run.turn();
    let mut rest = data;
    let mut last: &[u8] = &[];
    while let [ctl, tail @ ..] = rest {
        if ctl & RESEND != 0 {
            rest = tail;
        } else {
            let [hi, lo, tail @ ..] = tail else { break };
            let n = usize::from(u16::from_be_bytes([*hi, *lo]));
            let len = ((n + 1) * 16).min(MAX_MESSAGE).min(tail.len() / 16 * 16);
            if len == 0 {
                break;
            }
            (last, rest) = tail.split_at(len);
        }
        if !last.is_empty() {
            run.step(*ctl, last);
        }
    }
    // Past every delivery deadline, with every client reading: nothing is still owed.
    run.slots.iter_mut().flatten().for_each(|c| c.reading = true);
    let wait = fuzz::limits().deliver_wait_ms;
    run.world.advance(wait + 1);
    run.turn();
    for c in run.slots.iter().flatten() {
        if run.world.closing(c.id).is_none() {
            assert!(c.owed.is_empty(), "{} conn {}: requests never answered: {:?}", USERS[c.user], c.id, c.owed);
        }
    }
}

impl Run {
    fn open(&mut self, slot: usize) {
        let user = SLOT_USERS[slot];
        self.slots[slot] = self.world.open(user).map(|(id, opener)| Client {
            id,
            user,
            opener,
            deframer: Deframer::new(MAX_BODY),
            reading: true,
            sent: HashSet::new(),
            owed: HashMap::new(),
        });
    }

    fn step(&mut self, ctl: u8, frame: &[u8]) {
        let secs = 2 * u64::from(ctl >> 5);
        if secs > 0 {
            self.world.advance(secs * 1000);
            self.turn();
        }
        let slot = usize::from(ctl & 3);
        if ctl & RECONNECT != 0 {
            if let Some(old) = self.slots[slot].take() {
                self.world.core().close(old.id, "peer closed");
                self.world.core().remove(old.id);
            }
        }
        if self.slots[slot].is_none() {
            self.open(slot);
        }
        let now = self.world.now_ms();
        let Some(c) = self.slots[slot].as_mut() else { return };
        if ctl & SWITCH_READING != 0 {
            c.reading = !c.reading;
        }
        if c.reading {
            // What came before this frame, so that what follows is its doing alone.
            read(&mut self.world, c);
        }
        if self.world.dispatch(c.id, frame) {
            let hdr = wire::header(frame).ok();
            let msg_id = hdr.map_or(0, |h| h.msg_id.get());
            let opcode = hdr.map_or(0, |h| h.opcode.get());
            // What the dispatch table lets through to the handler.
            let handled = hdr.is_some_and(|h| h.status == 0 && h.code.get() == 0)
                && info(opcode).is_some_and(|i| i.state.is_some() && i.size == frame.len());
            c.sent.insert(msg_id);
            let due = match opcode {
                // An acknowledgement has no answer.
                DACK if handled => None,
                // A DM to an online recipient waits (bounded) for its acknowledgement.
                op if handled && of_family(SMPS, op) => Some(now + fuzz::limits().deliver_wait_ms),
                _ => Some(now),
            };
            if let Some(due) = due {
                let owed = c.owed.entry(msg_id).or_insert(due);
                *owed = (*owed).min(due);
            }
            self.downloads |= opcode == sotto::opcodes::FLGT;
            let jobs = self.world.run_jobs();
            assert!(
                jobs == 0 || ON_WORKER.contains(&opcode) || self.downloads,
                "an authenticated session started a worker job (opcode {opcode})"
            );
            if handled && msg_id != 0 && durable(opcode) && c.reading {
                let early = read(&mut self.world, c);
                assert!(
                    !early.iter().any(|(id, status)| *id == msg_id && matches!(status, Status::Ok | Status::Done)),
                    "request {msg_id} (opcode {opcode}) acknowledged before its commit"
                );
            }
        }
        self.turn();
    }

    /// The end of a turn: jobs and commits run; then every connection is
    /// checked, and read if its client reads.
    fn turn(&mut self) {
        let jobs = self.world.settle();
        assert!(jobs == 0 || self.downloads, "a worker job started outside a request that needs one");
        assert!(!self.world.core().busy(), "work left after the turn's jobs and commit");
        let now = self.world.now_ms();
        let max_output = fuzz::limits().max_output;
        for slot in 0..self.slots.len() {
            let Some(c) = self.slots[slot].as_mut() else { continue };
            if self.world.core().is_done(c.id) {
                // As the event loop does: flushed and closing, so gone.
                self.world.core().remove(c.id);
                self.slots[slot] = None;
                continue;
            }
            let held = self.world.core().transmit(c.id).map_or(0, |o| o.len());
            assert!(held <= max_output + MAX_RECORD, "conn {}: {held} bytes of output held", c.id);
            assert_eq!(
                self.world.session_uid(c.id),
                Some(fuzz::uid(c.user)),
                "conn {} left the session it logged in to",
                c.id
            );
            if c.reading {
                read(&mut self.world, c);
            }
            if self.world.closing(c.id).is_some() {
                c.owed.clear();
            } else if c.reading {
                let late: Vec<_> = c.owed.iter().filter(|(_, due)| **due <= now).collect();
                assert!(late.is_empty(), "{} conn {}: unanswered {late:?} at {now}", USERS[c.user], c.id);
            }
        }
        for (user, name) in USERS.iter().enumerate() {
            let open = self.slots.iter().flatten().any(|c| c.user == user);
            assert_eq!(self.world.is_online(fuzz::uid(user)), open, "{name} online index");
        }
    }
}

/// Opens and checks everything sealed to `c` so far; settles what it owed.
/// Returns each message's msg_id and status.
fn read(world: &mut World, c: &mut Client) -> Vec<(u64, Status)> {
    let now = world.now_ms();
    let Some(out) = world.core().transmit(c.id) else { return Vec::new() };
    c.deframer.push(&std::mem::take(out));
    let mut got = Vec::new();
    loop {
        let body = match c.deframer.pop() {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => panic!("conn {}: server output does not deframe: {e:?}", c.id),
        };
        let Ok(m) = c.opener.open(&body) else { panic!("conn {}: a server record does not open", c.id) };
        let (msg_id, status) = check_message(&m, now);
        assert!(msg_id == 0 || c.sent.contains(&msg_id), "conn {}: answer to msg_id {msg_id} it never sent", c.id);
        if status != Status::Pending {
            c.owed.remove(&msg_id);
        }
        got.push((msg_id, status));
    }
    got
}

/// Checks one message from the server: a response or event of the table,
/// of its exact size, whose strings read, whose status and code agree.
fn check_message(m: &[u8], now: u64) -> (u64, Status) {
    let Ok(h) = wire::header(m) else { panic!("a {}-byte message is shorter than a header", m.len()) };
    let opcode = h.opcode.get();
    let Some(row) = info(opcode) else { panic!("unknown opcode {opcode} from the server") };
    assert!(matches!(row.direction, Direction::Response | Direction::Event), "{} sent by the server", row.mnemonic);
    assert_eq!(m.len(), row.size, "{} of the wrong size", row.mnemonic);
    let reads = MESSAGES.iter().find(|d| d.opcode == Some(opcode)).is_some_and(|d| (d.reads)(m));
    assert!(reads, "{} does not decode, or a string in it does not read", row.mnemonic);
    assert_eq!(h.flags, 0, "{} has flags", row.mnemonic);
    assert!(h.timestamp.get() <= now, "{} from the future", row.mnemonic);
    let c = h.code.get();
    let status = match h.status {
        1 => Status::Ok,
        2 => Status::Pending,
        3 => Status::Error,
        4 => Status::Done,
        s => panic!("{} with status {s}", row.mnemonic),
    };
    // DESIGN §2: ok and done carry 200, pending 202 (a stat) or 200, errors are stats with 4xx/5xx.
    let code_ok = match status {
        Status::Ok | Status::Done => c == code::OK,
        Status::Pending => c == if opcode == STAT { code::PENDING } else { code::OK },
        Status::Error => opcode == STAT && (400..600).contains(&c),
        Status::Request => false,
    };
    assert!(code_ok, "{} with status {status:?} and code {c}", row.mnemonic);
    if opcode == STAT {
        let retry = wire::decode::<StatusReply>(m).map_or(0, |r| r.retry_after_ms.get());
        assert_eq!(retry != 0, c == code::RATE_LIMITED, "retry-after {retry} with code {c}");
    }
    (h.msg_id.get(), status)
}
