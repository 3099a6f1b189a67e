//! The relay between edges and the writer as the event loop runs it
//! (DESIGN §8 "Edges"): links, their heartbeats and their ends, and the
//! mapping of an edge's connections to the writer's. What is said is
//! `sotto::server::relay`; what the cores do with it, their `relayed.rs`.
//!
//! Invariants: nothing here waits (the NATS side is behind bounded queues);
//! a link whose message does not open, or that is silent for
//! [`LINK_SILENCE`], ends with every connection it carried, on both sides,
//! and the edge starts another; an edge relays only to the node that holds
//! the writer lease as it last read it, and closes its relayed clients when
//! that changes (they reconnect, and resume with the new writer).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use sotto::server::core::{ConnId, Core};
use sotto::server::jetstream::{JetStreamStore, RelayLink};
use sotto::server::relay::{self, Item, Link, LinkSecret};
use sotto::server::remote::Out;

/// A link that has heard nothing for this long is over.
const LINK_SILENCE: Duration = Duration::from_secs(5);
/// An edge takes no new client while its link has heard nothing for this
/// long (the writer sends at least every [`HEARTBEAT`]).
const ACCEPT_SILENCE: Duration = Duration::from_secs(2);
/// An edge closes its relayed clients once the writer has been gone (its
/// NATS connection closed) this long.
const GONE_CLOSE: Duration = Duration::from_secs(1);
/// Each end of a link sends at least this often (an empty message when idle).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Links a writer keeps at most (one per edge, and a new one per restart).
const LINKS_MAX: usize = 1024;
/// Sealed messages waiting for the NATS thread's queue, per link, at most.
const WAITING_MAX: usize = 1024;
/// Connections of one `MANY` item at most (32 KiB of ids).
const MANY_CHUNK: usize = 4096;

/// One end of a link.
struct Peer {
    link: Link,
    /// The other node's epoch (its subject).
    node: u64,
    heard: Instant,
    beat: Instant,
    /// Items to seal at the next flush.
    stream: Zeroizing<Vec<u8>>,
    /// Sealed messages the NATS thread's queue had no room for yet.
    waiting: VecDeque<Vec<u8>>,
    /// The writer's: the edge's connection ids, to the writer's.
    conns: HashMap<u64, ConnId>,
}

impl Peer {
    fn new(link: Link, node: u64) -> Peer {
        let now = Instant::now();
        Peer {
            link,
            node,
            heard: now,
            // The first flush sends a heartbeat: the other end learns of the link.
            beat: now.checked_sub(HEARTBEAT).unwrap_or(now),
            stream: Zeroizing::new(Vec::new()),
            waiting: VecDeque::new(),
            conns: HashMap::new(),
        }
    }

    fn push(&mut self, item: &Item) {
        item.encode(&mut self.stream);
        if self.stream.len() >= relay::BATCH_MAX {
            self.seal();
        }
    }

    /// Seals what waits in the stream (or a heartbeat, when due and idle).
    fn seal(&mut self) {
        if self.stream.is_empty() && self.beat.elapsed() < HEARTBEAT {
            return;
        }
        match self.link.seal(&self.stream) {
            Ok(sealed) => self.waiting.push_back(sealed),
            // 2^64 records: never, but no panic either; the link ends by silence.
            Err(_) => sotto::log!(Warn, "relay: link {:016x} cannot seal any more", self.link.id()),
        }
        self.stream.clear();
        self.beat = Instant::now();
    }

    /// Hands what is sealed to the NATS thread; false when it stays too far behind.
    fn send(&mut self, out: &RelayLink) -> bool {
        self.seal();
        while let Some(p) = self.waiting.pop_front() {
            if let Err(p) = out.try_send(self.node, p) {
                self.waiting.push_front(p);
                break;
            }
        }
        self.waiting.len() <= WAITING_MAX
    }
}

/// The writer's links, one per edge (and per edge restart).
struct Writer {
    links: HashMap<u64, Peer>,
    /// A relayed connection here: its link and the edge's id for it.
    back: HashMap<ConnId, (u64, u64)>,
    /// Relayed connections told to pause their input.
    paused: HashSet<ConnId>,
    /// Links ended here, with what they still send (their reset).
    resets: Vec<Peer>,
}

/// An edge's link to the writer.
struct Edge {
    store: Arc<JetStreamStore>,
    peer: Option<Peer>,
    /// When the ticket keys were last taken from the followed records.
    keys_read: Option<Instant>,
}

enum Role {
    Writer(Writer),
    Edge(Edge),
}

/// This node's relay.
pub struct Relay {
    link: RelayLink,
    secret: LinkSecret,
    me: u64,
    role: Role,
}

impl Relay {
    /// The relay of the writer (this node holds the lease).
    pub fn writer(link: RelayLink, secret: LinkSecret, me: u64) -> Relay {
        let w = Writer { links: HashMap::new(), back: HashMap::new(), paused: HashSet::new(), resets: Vec::new() };
        Relay { link, secret, me, role: Role::Writer(w) }
    }

    /// The relay of an edge, to whichever node `store` says writes.
    pub fn edge(link: RelayLink, secret: LinkSecret, me: u64, store: Arc<JetStreamStore>) -> Relay {
        Relay { link, secret, me, role: Role::Edge(Edge { store, peer: None, keys_read: None }) }
    }

    /// The writer's relay, on the same subscription (this edge's node took
    /// the writer lease): what edges sent meanwhile waits in it.
    pub fn into_writer(self, secret: LinkSecret) -> Relay {
        Relay::writer(self.link, secret, self.me)
    }

    /// Readable when a message arrived.
    pub fn wake_fd(&self) -> &UnixStream {
        self.link.wake_fd()
    }

    /// Whether this node takes new clients now: a writer always; an edge
    /// while it has a live link to a writer, so that a client reaching it
    /// while the writer is gone waits in the listen queue (or is refused
    /// when that is full) instead of offering its ticket to nobody. Whoever
    /// takes over, this node as the writer or its new link, accepts it then.
    pub fn accepting(&self) -> bool {
        match &self.role {
            Role::Writer(_) => true,
            Role::Edge(e) => {
                e.peer.as_ref().is_some_and(|p| p.heard.elapsed() < ACCEPT_SILENCE)
                    && self.link.writer_gone_for().is_none()
            }
        }
    }

    /// Whether sealed messages wait for room in the NATS thread's queue.
    pub fn behind(&self) -> bool {
        match &self.role {
            Role::Writer(w) => w.links.values().any(|p| !p.waiting.is_empty()),
            Role::Edge(e) => e.peer.as_ref().is_some_and(|p| !p.waiting.is_empty()),
        }
    }

    /// Takes every message that arrived.
    pub fn receive(&mut self, core: &mut Core, next_id: &mut ConnId, now: u64) {
        self.link.drain_wake();
        while let Some(payload) = self.link.try_recv() {
            let Some((link, from)) = relay::header(&payload) else {
                core.count("relay: malformed message");
                continue;
            };
            match &mut self.role {
                Role::Writer(w) => w.take(&self.secret, self.me, (link, from), &payload, core, next_id, now),
                Role::Edge(e) => e.take((&self.secret, self.me), (link, from), &payload, core, now),
            }
        }
    }

    /// The writer: takes the relayed connections' items out of `items`
    /// (for their edges) and returns the others (for the output loops).
    pub fn route(&mut self, items: Vec<Out>) -> Vec<Out> {
        match &mut self.role {
            Role::Writer(w) => w.route(items),
            Role::Edge(_) => items,
        }
    }

    /// After the loop's turn: the writer removes the relayed connections
    /// that are done and tells their edges to pause or resume their input;
    /// an edge queues its clients' messages for the writer.
    pub fn after_turn(&mut self, core: &mut Core, active: &[ConnId], now: u64) {
        match &mut self.role {
            Role::Writer(w) => {
                for &id in active {
                    // Tops the output up from its bulk queue (downloads).
                    let _ = core.transmit(id);
                    if core.is_done(id) {
                        if let Some(why) = core.remove(id) {
                            sotto::log!(Debug, "conn {id} (relayed) closed: {why}");
                        }
                        w.paused.remove(&id);
                    } else {
                        w.sync(id, core, now);
                    }
                }
            }
            Role::Edge(e) => {
                let items = core.take_relayed(false);
                match e.peer.as_mut() {
                    Some(p) => items.iter().for_each(|i| p.push(i)),
                    None if items.iter().any(|i| matches!(i, Item::Frame { .. })) => {
                        let n = core.close_relayed("no writing node known");
                        sotto::log!(Info, "relay: no writing node known; {n} clients closed");
                    }
                    None => {}
                }
            }
        }
    }

    /// Every TIMERS_MS: heartbeats, silent links, the writer's pauses
    /// (a second's input budget renews), an edge's writer changing.
    pub fn tick(&mut self, core: &mut Core, now: u64) {
        match &mut self.role {
            Role::Writer(w) => {
                let silent: Vec<u64> =
                    w.links.iter().filter(|(_, p)| p.heard.elapsed() > LINK_SILENCE).map(|(l, _)| *l).collect();
                for l in silent {
                    w.end(l, core, "silent", false);
                }
                let paused: Vec<ConnId> = w.paused.iter().copied().collect();
                for id in paused {
                    w.sync(id, core, now);
                }
            }
            Role::Edge(e) => {
                // What was written to clients and not yet reported (under a batch).
                if let Some(p) = e.peer.as_mut() {
                    core.take_relayed(true).iter().for_each(|i| p.push(i));
                }
                // The ticket keys rotate at the writer: read again every second.
                if e.keys_read.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
                    e.keys_read = Some(Instant::now());
                    if let Some(keys) = e.store.followed_ticket_keys() {
                        core.set_ticket_keys(keys);
                    }
                }
                let writer = e.store.writer_epoch().filter(|w| *w != self.me);
                // A writer gone (its NATS connection closed) is no writer: no link until another holds the lease.
                let gone = self.link.writer_gone_for().is_some_and(|d| d >= GONE_CLOSE);
                let target = writer.filter(|_| !gone);
                let current = e.peer.as_ref().map(|p| p.node);
                let silent = e.peer.as_ref().is_some_and(|p| p.heard.elapsed() > LINK_SILENCE);
                if target != current || silent {
                    let why = match (current, writer) {
                        (Some(_), _) if gone => "the writing node is gone",
                        (Some(_), _) if silent => "the writing node is silent",
                        (Some(_), Some(_)) => "the writing node changed",
                        (Some(_), None) => "no writing node known",
                        (None, _) => "",
                    };
                    if current.is_some() {
                        let n = core.close_relayed(why);
                        sotto::log!(Info, "relay: {why}; {n} relayed clients closed (they reconnect)");
                    }
                    e.peer = target.map(|w| e.start(&self.secret, self.me, w));
                }
            }
        }
    }

    /// Hands what was sealed to the NATS thread; a link too far behind ends.
    pub fn flush(&mut self, core: &mut Core) {
        match &mut self.role {
            Role::Writer(w) => {
                for mut p in std::mem::take(&mut w.resets) {
                    // Once: a reset the queue had no room for is not kept.
                    while let Some(m) = p.waiting.pop_front() {
                        let _ = self.link.try_send(p.node, m);
                    }
                }
                let behind: Vec<u64> =
                    w.links.iter_mut().filter_map(|(l, p)| (!p.send(&self.link)).then_some(*l)).collect();
                for l in behind {
                    w.end(l, core, "too far behind (NATS does not take its messages)", false);
                }
            }
            Role::Edge(e) => {
                if e.peer.as_mut().is_some_and(|p| !p.send(&self.link)) {
                    let n = core.close_relayed("relay too far behind");
                    sotto::log!(Warn, "relay: NATS does not take the messages for the writer; {n} clients closed");
                    e.peer = e.peer.take().map(|p| e.start(&self.secret, self.me, p.node));
                }
            }
        }
    }
}

impl Edge {
    /// A new link to writer `node`, numbered at random.
    fn start(&self, secret: &LinkSecret, me: u64, node: u64) -> Peer {
        let mut id = [0u8; 8];
        // No randomness: a clock-derived number still differs per start.
        if getrandom::getrandom(&mut id).is_err() {
            id = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
                as u64)
                .to_be_bytes();
        }
        let id = u64::from_be_bytes(id);
        sotto::log!(Info, "relay: link {id:016x} to the writing node {node:016x}");
        Peer::new(Link::new(secret, id, me, true), node)
    }

    /// A message from `from` on `link`: applied if it is the current link's.
    fn take(&mut self, ends: (&LinkSecret, u64), (link, from): (u64, u64), payload: &[u8], core: &mut Core, now: u64) {
        let Some(p) = self.peer.as_mut().filter(|p| p.link.id() == link && p.node == from) else { return };
        let items = match p.link.open(payload).and_then(|s| relay::decode(&s)) {
            Ok(items) => items,
            Err(why) => return self.restart(ends, core, why),
        };
        p.heard = Instant::now();
        for item in items {
            if item == Item::Reset {
                return self.restart(ends, core, "the writing node ended the link");
            }
            if !item.from_edge() {
                core.relay_apply(item, now);
            }
        }
    }

    /// Ends the link (every relayed client closes) and starts another to the same writer.
    fn restart(&mut self, (secret, me): (&LinkSecret, u64), core: &mut Core, why: &str) {
        let n = core.close_relayed("relay link lost");
        sotto::log!(Warn, "relay: link to the writing node lost ({why}); {n} relayed clients closed");
        if let Some(node) = self.peer.take().map(|p| p.node) {
            self.peer = Some(self.start(secret, me, node));
        }
    }
}

impl Writer {
    /// A message from edge `from` on `link`.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        secret: &LinkSecret,
        me: u64,
        (link, from): (u64, u64),
        payload: &[u8],
        core: &mut Core,
        next_id: &mut ConnId,
        now: u64,
    ) {
        let full = self.links.len() >= LINKS_MAX;
        let items = match self.links.get_mut(&link) {
            Some(p) if p.node != from => return,
            Some(p) => match p.link.open(payload).and_then(|s| relay::decode(&s)) {
                Ok(items) => {
                    p.heard = Instant::now();
                    items
                }
                Err(why) => return self.end(link, core, why, true),
            },
            // A link is known once its first message opened. One that does
            // not (a link this writer ended, another deployment's, a forgery)
            // is counted, and gets no entry, no log line and no answer.
            None if full => return core.count("relay: too many links"),
            None => {
                let mut p = Peer::new(Link::new(secret, link, me, false), from);
                match p.link.open(payload).and_then(|s| relay::decode(&s)) {
                    Ok(items) => {
                        sotto::log!(Info, "relay: link {link:016x} from edge node {from:016x}");
                        self.links.insert(link, p);
                        items
                    }
                    Err(_) => return core.count("relay: a message of an unknown link did not open"),
                }
            }
        };
        for item in items {
            let Some(p) = self.links.get_mut(&link) else { return };
            match item {
                Item::Open { conn, addr } => {
                    if p.conns.contains_key(&conn) {
                        continue;
                    }
                    let id = *next_id;
                    *next_id += 1;
                    match core.relay_open(id, addr, now) {
                        Ok(()) => {
                            p.conns.insert(conn, id);
                            self.back.insert(id, (link, conn));
                        }
                        Err(why) => {
                            sotto::log!(Debug, "refused a relayed connection from {addr}: {why}");
                            p.push(&Item::Close { conn });
                        }
                    }
                }
                Item::Frame { conn, mut body } => {
                    if let Some(&id) = p.conns.get(&conn) {
                        core.relay_frame(id, &body, now);
                    }
                    zeroize::Zeroize::zeroize(&mut body);
                }
                Item::Wrote { conn, bytes } => {
                    if let Some(&id) = p.conns.get(&conn) {
                        core.relay_wrote(id, bytes as usize);
                    }
                }
                Item::Closed { conn } => {
                    if let Some(&id) = p.conns.get(&conn) {
                        core.relay_gone(id, "peer closed");
                    }
                }
                Item::Resuming { conn, addr, ticket } => {
                    if p.conns.contains_key(&conn) {
                        continue;
                    }
                    let id = *next_id;
                    *next_id += 1;
                    match core.relay_resume(id, addr, &ticket, now) {
                        Ok(()) => {
                            p.conns.insert(conn, id);
                            self.back.insert(id, (link, conn));
                        }
                        Err(why) => {
                            sotto::log!(Debug, "refused a relayed resumption from {addr}: {why}");
                            p.push(&Item::Resumed { conn, ok: false });
                            p.push(&Item::Close { conn });
                        }
                    }
                }
                // Only a writer sends these.
                _ => {}
            }
        }
    }

    /// Ends `link`: its connections close here, and the edge hears of it
    /// (`reset`) when this end noticed first.
    fn end(&mut self, link: u64, core: &mut Core, why: &str, reset: bool) {
        let Some(mut p) = self.links.remove(&link) else { return };
        for &id in p.conns.values() {
            core.relay_gone(id, "relay link lost");
        }
        sotto::log!(
            Warn,
            "relay: link {link:016x} from edge node {:016x} ended ({why}); {} relayed connections closed",
            p.node,
            p.conns.len()
        );
        if reset {
            // Sealed after what was queued (the edge opens in order), sent
            // with the next flush; a reset lost is an edge's silence check.
            let mut stream = Vec::new();
            Item::Reset.encode(&mut stream);
            p.seal();
            if let Ok(sealed) = p.link.seal(&stream) {
                p.waiting.push_back(sealed);
            }
            self.resets.push(p);
        }
    }

    fn route(&mut self, items: Vec<Out>) -> Vec<Out> {
        let mut rest = Vec::new();
        for item in items {
            match item {
                Out::Seal { conn, msg } => match self.back.get(&conn) {
                    Some(&(l, c)) => {
                        if let Some(p) = self.links.get_mut(&l) {
                            p.push(&Item::Send { conn: c, msg });
                        }
                    }
                    None => rest.push(Out::Seal { conn, msg }),
                },
                Out::Many { conns, msg } => {
                    let mut local = Vec::new();
                    let mut per: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
                    for id in conns {
                        match self.back.get(&id) {
                            Some(&(l, c)) => per.entry(l).or_default().push(c),
                            None => local.push(id),
                        }
                    }
                    for (l, ids) in per {
                        let Some(p) = self.links.get_mut(&l) else { continue };
                        for chunk in ids.chunks(MANY_CHUNK) {
                            p.push(&Item::Many { conns: chunk.to_vec(), msg: msg.clone() });
                        }
                    }
                    if !local.is_empty() {
                        rest.push(Out::Many { conns: local, msg });
                    }
                }
                Out::Forget { conn } => match self.back.remove(&conn) {
                    Some((l, c)) => {
                        self.paused.remove(&conn);
                        if let Some(p) = self.links.get_mut(&l) {
                            p.conns.remove(&c);
                            p.push(&Item::Close { conn: c });
                        }
                    }
                    None => rest.push(Out::Forget { conn }),
                },
                Out::Relay { conn, item } => {
                    if let Some(&(l, c)) = self.back.get(&conn) {
                        if let Some(p) = self.links.get_mut(&l) {
                            p.push(&item.for_conn(c));
                        }
                    }
                }
                other => {
                    if other.conn().is_none_or(|c| !self.back.contains_key(&c)) {
                        rest.push(other);
                    }
                }
            }
        }
        rest
    }

    /// Tells `id`'s edge to pause or resume its input, when that changed.
    fn sync(&mut self, id: ConnId, core: &Core, now: u64) {
        let Some(&(l, c)) = self.back.get(&id) else { return };
        let Some(p) = self.links.get_mut(&l) else { return };
        let wants = core.wants_read(id, now);
        let paused = self.paused.contains(&id);
        if wants && paused {
            self.paused.remove(&id);
            p.push(&Item::Resume { conn: c });
        } else if !wants && !paused && !core.is_closing(id) {
            self.paused.insert(id);
            p.push(&Item::Pause { conn: c });
        }
    }
}
