//! Relayed connections between cluster nodes (DESIGN §8 "Edges"), sans I/O:
//! what an edge and the writer say to each other over NATS, and how it is
//! sealed.
//!
//! An edge is a cluster node that does not hold the writer lease. It
//! accepts clients, runs their handshakes and their record layer, and relays
//! each opened message to the writer ([`Item::Frame`]); the writer's core
//! handles it as it handles a message of its own connections and hands back
//! what the connection gets ([`Item::Send`], [`Item::Many`] for a room's
//! fan-out: one item per edge, sealed there for each of its sessions). The
//! session keys stay on the edge; what crosses NATS is the protocol's
//! messages, end-to-end ciphertext and metadata, sealed again between the
//! two nodes.
//!
//! Wire form of one NATS message on `sotto.relay.<EPOCH>` (the receiving
//! node's epoch, 16 hex digits): `"SRL1" || link (u64 BE) || sender's epoch
//! (u64 BE) || records`. A link is one edge's relay to one writer, numbered
//! at random by the edge when it starts relaying to that writer. Each record
//! is sealed as the record layer seals (`record::Sealer`, DESIGN §4) under
//! keys per link and direction, HKDF-SHA256 of a secret derived from the
//! server's private key, which every node has and nobody else
//! ([`LinkSecret`]). A record's plaintext is `used (u16 BE) || used bytes of
//! the item stream || zeros` to whole blocks; a message holds whole items.
//! The sequence numbers are the record layer's: a message lost (a slow NATS
//! subscriber), replayed or reordered fails to open ([`Link::open`]); the
//! link is then over, with every connection it relays, and the edge starts
//! another (the writer says [`Item::Reset`] when it is the one that noticed).
//!
//! Items: `kind (u8) || conn (u64 BE) || ...`, the connection as the edge
//! numbers it:
//! - edge to writer: `OPEN` family (4 or 6) and 16 address bytes (the
//!   client's); `FRAME` len (u32) and an opened message; `WROTE` bytes
//!   (u32) written to the client of what the writer sent; `CLOSED`;
//!   `RESUME` the address as `OPEN`'s, then a ticket the edge opened and
//!   whose binder verified (its [`Ticket`], without the secret).
//! - writer to edge: `SEND` len (u32) and a message; `MANY` count (u16), the
//!   connections after the first (u64 each), len (u32) and a message;
//!   `CLOSE`; `PAUSE` and `RESUME` (the connection's input); `RESET`
//!   (connection 0: the link is over); `RESUMED` ok (u8: 1 the resumption
//!   is accepted and its ticket struck, 0 refused); `TICKET` a [`Ticket`]
//!   to seal for the connection, whose resumption secret the edge has.
//!
//! A [`Ticket`] on the wire: uid, issued (Unix ms), expires (Unix ms),
//! generation (u64 each) and the ticket id (16 bytes).
//!
//! Invariant: every length is checked against its bound before anything is
//! allocated for it; a malformed message is an error, never a panic.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::{self, AeadKeys};
use crate::opcodes::MAX_MESSAGE;
use crate::record::{self, Opener, Sealer};

/// The subjects the nodes relay on: `sotto.relay.<EPOCH>`.
pub const SUBJECT_PREFIX: &str = "sotto.relay.";
/// First bytes of every relay message.
const MAGIC: &[u8; 4] = b"SRL1";
/// Largest item stream in one NATS message (under NATS's 1 MiB payload).
pub const BATCH_MAX: usize = 256 * 1024;
/// Largest connection list of one `MANY` item.
pub const MANY_MAX: usize = u16::MAX as usize;

const OPEN: u8 = 1;
const FRAME: u8 = 2;
const WROTE: u8 = 3;
const CLOSED: u8 = 4;
const SEND: u8 = 16;
const MANY: u8 = 17;
const CLOSE: u8 = 18;
const PAUSE: u8 = 19;
const RESUME: u8 = 20;
const RESET: u8 = 21;
const RESUME_TICKET: u8 = 5;
const RESUMED: u8 = 22;
const TICKET: u8 = 23;

/// A resumption ticket's contents but its secret: what the writer decides
/// on (its policy and strike) and what an edge seals a new ticket from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub uid: u64,
    pub issued_ms: u64,
    pub expires_ms: u64,
    pub generation: u64,
    pub ticket_id: [u8; 16],
}

impl Ticket {
    const LEN: usize = 48;

    fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.uid, self.issued_ms, self.expires_ms, self.generation] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.ticket_id);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Ticket, &'static str> {
        let (uid, issued_ms, expires_ms, generation) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let mut ticket_id = [0u8; 16];
        ticket_id.copy_from_slice(r.take(16)?);
        Ok(Ticket { uid, issued_ms, expires_ms, generation, ticket_id })
    }
}

/// The subject node `epoch` receives on.
pub fn subject(epoch: u64) -> String {
    format!("{SUBJECT_PREFIX}{epoch:016x}")
}

/// One item of a relay message; `conn` is the edge's connection id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Edge: a client's first message follows; its address.
    Open { conn: u64, addr: IpAddr },
    /// Edge: a message the client sent, opened.
    Frame { conn: u64, body: Vec<u8> },
    /// Edge: bytes of what the writer sent that reached the client's socket.
    Wrote { conn: u64, bytes: u32 },
    /// Edge: the client is gone.
    Closed { conn: u64 },
    /// Edge: a client resumes with `ticket` (opened, its binder verified).
    Resuming { conn: u64, addr: IpAddr, ticket: Ticket },
    /// Writer: a message for one connection.
    Send { conn: u64, msg: Vec<u8> },
    /// Writer: a message for several connections of the edge (a fan-out).
    Many { conns: Vec<u64>, msg: Arc<[u8]> },
    /// Writer: close the connection once what was sent is written.
    Close { conn: u64 },
    /// Writer: read no more of the connection's input for now.
    Pause { conn: u64 },
    /// Writer: read its input again.
    Resume { conn: u64 },
    /// Writer: this link is over (a message did not open); start another.
    Reset,
    /// Writer: the resumption is accepted (its ticket struck) or refused.
    Resumed { conn: u64, ok: bool },
    /// Writer: seal this ticket for the connection and send it.
    Ticket { conn: u64, ticket: Ticket },
}

impl Item {
    /// Whether an edge sends it (else the writer does).
    pub fn from_edge(&self) -> bool {
        matches!(
            self,
            Item::Open { .. } | Item::Frame { .. } | Item::Wrote { .. } | Item::Closed { .. } | Item::Resuming { .. }
        )
    }

    /// The item for connection `conn` instead (the writer's items name its
    /// own connection until they are routed to the edge's); a `MANY` and a
    /// `RESET` are returned as they are.
    pub fn for_conn(self, conn: u64) -> Item {
        match self {
            Item::Open { addr, .. } => Item::Open { conn, addr },
            Item::Frame { body, .. } => Item::Frame { conn, body },
            Item::Wrote { bytes, .. } => Item::Wrote { conn, bytes },
            Item::Closed { .. } => Item::Closed { conn },
            Item::Resuming { addr, ticket, .. } => Item::Resuming { conn, addr, ticket },
            Item::Send { msg, .. } => Item::Send { conn, msg },
            Item::Close { .. } => Item::Close { conn },
            Item::Pause { .. } => Item::Pause { conn },
            Item::Resume { .. } => Item::Resume { conn },
            Item::Resumed { ok, .. } => Item::Resumed { conn, ok },
            Item::Ticket { ticket, .. } => Item::Ticket { conn, ticket },
            other @ (Item::Many { .. } | Item::Reset) => other,
        }
    }

    /// Appends the item's wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Item::Open { conn, addr } => {
                head(out, OPEN, *conn);
                encode_addr(*addr, out);
            }
            Item::Frame { conn, body } => {
                head(out, FRAME, *conn);
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(body);
            }
            Item::Wrote { conn, bytes } => {
                head(out, WROTE, *conn);
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            Item::Closed { conn } => head(out, CLOSED, *conn),
            Item::Send { conn, msg } => {
                head(out, SEND, *conn);
                out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                out.extend_from_slice(msg);
            }
            Item::Many { conns, msg } => {
                let (first, rest) = conns.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
                head(out, MANY, first);
                out.extend_from_slice(&(rest.len() as u16).to_be_bytes());
                for c in rest {
                    out.extend_from_slice(&c.to_be_bytes());
                }
                out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                out.extend_from_slice(msg);
            }
            Item::Close { conn } => head(out, CLOSE, *conn),
            Item::Pause { conn } => head(out, PAUSE, *conn),
            Item::Resume { conn } => head(out, RESUME, *conn),
            Item::Reset => head(out, RESET, 0),
            Item::Resuming { conn, addr, ticket } => {
                head(out, RESUME_TICKET, *conn);
                encode_addr(*addr, out);
                ticket.encode(out);
            }
            Item::Resumed { conn, ok } => {
                head(out, RESUMED, *conn);
                out.push(u8::from(*ok));
            }
            Item::Ticket { conn, ticket } => {
                head(out, TICKET, *conn);
                ticket.encode(out);
            }
        }
    }

    /// Wire bytes of the item (what [`Item::encode`] appends).
    pub fn wire_len(&self) -> usize {
        9 + match self {
            Item::Open { .. } => 17,
            Item::Frame { body, .. } => 4 + body.len(),
            Item::Wrote { .. } => 4,
            Item::Send { msg, .. } => 4 + msg.len(),
            Item::Many { conns, msg } => 2 + 8 * conns.len().saturating_sub(1) + 4 + msg.len(),
            Item::Closed { .. } | Item::Close { .. } | Item::Pause { .. } | Item::Resume { .. } | Item::Reset => 0,
            Item::Resuming { .. } => 17 + Ticket::LEN,
            Item::Resumed { .. } => 1,
            Item::Ticket { .. } => Ticket::LEN,
        }
    }
}

/// `family (4 or 6) || 16 bytes` (IPv4 mapped).
fn encode_addr(addr: IpAddr, out: &mut Vec<u8>) {
    let (family, bytes) = match addr {
        IpAddr::V4(a) => (4u8, a.to_ipv6_mapped().octets()),
        IpAddr::V6(a) => (6u8, a.octets()),
    };
    out.push(family);
    out.extend_from_slice(&bytes);
}

fn head(out: &mut Vec<u8>, kind: u8, conn: u64) {
    out.push(kind);
    out.extend_from_slice(&conn.to_be_bytes());
}

/// Reads items off a byte stream, each bounded before it is copied.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.buf.len() < n {
            return Err("truncated relay item");
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// An address: `family || 16 bytes`.
    fn addr(&mut self) -> Result<IpAddr, &'static str> {
        let family = self.u8()?;
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        let v6 = Ipv6Addr::from(a);
        match family {
            4 => Ok(IpAddr::V4(v6.to_ipv4_mapped().ok_or("relayed IPv4 address not mapped")?)),
            6 => Ok(IpAddr::V6(v6)),
            _ => Err("relayed address of no family"),
        }
    }

    /// A message: `len (u32) || bytes`, at most [`MAX_MESSAGE`].
    fn message(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.u32()? as usize;
        if len > MAX_MESSAGE {
            return Err("relayed message over the largest message");
        }
        self.take(len)
    }
}

/// The items of an item stream, or why it is malformed.
pub fn decode(stream: &[u8]) -> Result<Vec<Item>, &'static str> {
    let mut r = Reader { buf: stream };
    let mut items = Vec::new();
    while !r.buf.is_empty() {
        let kind = r.u8()?;
        let conn = r.u64()?;
        let item = match kind {
            OPEN => Item::Open { conn, addr: r.addr()? },
            RESUME_TICKET => Item::Resuming { conn, addr: r.addr()?, ticket: Ticket::decode(&mut r)? },
            RESUMED => Item::Resumed { conn, ok: r.u8()? == 1 },
            TICKET => Item::Ticket { conn, ticket: Ticket::decode(&mut r)? },
            FRAME => {
                let body = r.message()?;
                // What a record opens to: whole blocks, at least one.
                if body.is_empty() || body.len() % 16 != 0 {
                    return Err("relayed frame not in whole blocks");
                }
                Item::Frame { conn, body: body.to_vec() }
            }
            WROTE => Item::Wrote { conn, bytes: r.u32()? },
            CLOSED => Item::Closed { conn },
            SEND => {
                let msg = r.message()?;
                if !record::sealable(msg) {
                    return Err("relayed message cannot be sealed");
                }
                Item::Send { conn, msg: msg.to_vec() }
            }
            MANY => {
                let rest = usize::from(r.u16()?);
                // Bounded by the u16 and by what the stream holds.
                if r.buf.len() < rest * 8 {
                    return Err("truncated relay item");
                }
                let mut conns = Vec::with_capacity(rest + 1);
                conns.push(conn);
                for _ in 0..rest {
                    conns.push(r.u64()?);
                }
                let msg = r.message()?;
                if !record::sealable(msg) {
                    return Err("relayed message cannot be sealed");
                }
                Item::Many { conns, msg: msg.into() }
            }
            CLOSE => Item::Close { conn },
            PAUSE => Item::Pause { conn },
            RESUME => Item::Resume { conn },
            RESET => Item::Reset,
            _ => return Err("unknown relay item"),
        };
        items.push(item);
    }
    Ok(items)
}

/// The secret the relay's keys come from: the server key's digest
/// ([`crate::identity::Signer::key_digest`]), which every node of a
/// deployment derives and nobody else.
pub struct LinkSecret(Zeroizing<[u8; 32]>);

impl LinkSecret {
    /// The server key's digest.
    pub fn from_key_digest(digest: &[u8; 32]) -> LinkSecret {
        LinkSecret(Zeroizing::new(*digest))
    }

    /// The keys sealing what link `link` carries one way (`up`: edge to writer).
    fn keys(&self, link: u64, up: bool) -> AeadKeys {
        let mut okm = Zeroizing::new([0u8; 48]);
        let way: &[u8] = if up { b"up" } else { b"down" };
        crypto::hkdf(b"sotto relay v1", &self.0[..], &[&link.to_be_bytes(), way], &mut okm[..]);
        let (mut enc, mut mac) = (Zeroizing::new([0u8; 16]), Zeroizing::new([0u8; 32]));
        enc.copy_from_slice(&okm[..16]);
        mac.copy_from_slice(&okm[16..]);
        AeadKeys { enc, mac }
    }
}

/// One link's sealing, both ways, as one of its ends holds it.
pub struct Link {
    id: u64,
    /// This node's epoch, in every message it sends.
    me: u64,
    sealer: Sealer,
    opener: Opener,
}

/// Largest item bytes in one record: a message's plaintext, less its `used`.
const RECORD_ITEMS: usize = MAX_MESSAGE - 2;

impl Link {
    /// Link `id` as node `me` holds it, the edge's end (`edge`) or the writer's.
    pub fn new(secret: &LinkSecret, id: u64, me: u64, edge: bool) -> Link {
        Link { id, me, sealer: Sealer::new(secret.keys(id, edge)), opener: Opener::new(secret.keys(id, !edge)) }
    }

    /// The link's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The NATS payload carrying `stream` (whole items; empty: a heartbeat).
    pub fn seal(&mut self, stream: &[u8]) -> Result<Vec<u8>, crypto::Invalid> {
        let mut out = Vec::with_capacity(HEADER + stream.len() + stream.len() / RECORD_ITEMS * 64 + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.me.to_be_bytes());
        let mut chunks = stream.chunks(RECORD_ITEMS).peekable();
        if chunks.peek().is_none() {
            self.seal_record(&[], &mut out)?;
        }
        for chunk in chunks {
            self.seal_record(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn seal_record(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), crypto::Invalid> {
        let padded = (2 + chunk.len()).div_ceil(16) * 16;
        let mut plain = Zeroizing::new(Vec::with_capacity(padded));
        plain.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        plain.extend_from_slice(chunk);
        plain.resize(padded, 0);
        self.sealer.seal(&plain, out)
    }

    /// The item stream of a NATS payload on this link (see [`header`]), or
    /// `Err` when it does not open: lost, replayed, reordered or forged.
    /// After an `Err` the link is out of step for good.
    pub fn open(&mut self, payload: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
        let mut rest = payload.get(HEADER..).ok_or("relay message too short")?;
        let mut stream = Zeroizing::new(Vec::new());
        while !rest.is_empty() {
            let len = rest.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let len = len.filter(|l| (record::MIN_BODY..=record::MAX_BODY).contains(l)).ok_or("bad relay record")?;
            let body = rest.get(4..4 + len).ok_or("truncated relay record")?;
            rest = &rest[4 + len..];
            let plain = Zeroizing::new(self.opener.open(body).map_err(|_| "relay record does not open")?);
            let used = plain.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            let items = used.and_then(|u| plain.get(2..2 + u)).ok_or("bad relay record")?;
            stream.extend_from_slice(items);
        }
        Ok(stream)
    }
}

/// Bytes before a relay message's records.
const HEADER: usize = 20;

/// A relay message's link and its sender's epoch, before it is opened.
pub fn header(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.get(..4)? != MAGIC {
        return None;
    }
    let (mut link, mut from) = ([0u8; 8], [0u8; 8]);
    link.copy_from_slice(payload.get(4..12)?);
    from.copy_from_slice(payload.get(12..20)?);
    Some((u64::from_be_bytes(link), u64::from_be_bytes(from)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const TICKET_SAMPLE: Ticket =
        Ticket { uid: 7, issued_ms: 1_000, expires_ms: 2_000, generation: 3, ticket_id: [9; 16] };

    fn every_kind() -> Vec<Item> {
        vec![
            Item::Open { conn: 1, addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)) },
            Item::Open { conn: 2, addr: "2001:db8::1".parse().unwrap() },
            Item::Frame { conn: 1, body: vec![7; 32] },
            Item::Wrote { conn: 1, bytes: 628 },
            Item::Closed { conn: 2 },
            Item::Send { conn: 1, msg: vec![1; 48] },
            Item::Many { conns: vec![1, 3, 5], msg: vec![2u8; 176].into() },
            Item::Close { conn: 3 },
            Item::Pause { conn: 4 },
            Item::Resume { conn: 4 },
            Item::Reset,
            Item::Resuming { conn: 5, addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), ticket: TICKET_SAMPLE },
            Item::Resumed { conn: 5, ok: true },
            Item::Resumed { conn: 6, ok: false },
            Item::Ticket { conn: 5, ticket: TICKET_SAMPLE },
        ]
    }

    #[test]
    fn items_decode_as_encoded_and_their_length_is_known() {
        let items = every_kind();
        let mut stream = Vec::new();
        for item in &items {
            let at = stream.len();
            item.encode(&mut stream);
            assert_eq!(stream.len() - at, item.wire_len(), "{item:?}");
        }
        assert_eq!(decode(&stream).unwrap(), items);
        // Routed to the edge's number for the connection: the rest unchanged.
        for item in items {
            let moved = item.clone().for_conn(42);
            let mut wire = Vec::new();
            moved.encode(&mut wire);
            let mut was = Vec::new();
            item.encode(&mut was);
            match item {
                Item::Many { .. } | Item::Reset => assert_eq!(wire, was),
                _ => {
                    assert_eq!(wire[1..9], 42u64.to_be_bytes(), "{item:?}");
                    assert_eq!((wire[0], &wire[9..]), (was[0], &was[9..]), "{item:?}");
                }
            }
        }
    }

    #[test]
    fn malformed_streams_are_errors() {
        let mut stream = Vec::new();
        Item::Frame { conn: 1, body: vec![7; 32] }.encode(&mut stream);
        for cut in 1..stream.len() {
            assert!(decode(&stream[..cut]).is_err(), "cut at {cut}");
        }
        // A frame that no record opens to.
        let mut odd = Vec::new();
        Item::Frame { conn: 1, body: vec![7; 17] }.encode(&mut odd);
        assert!(decode(&odd).is_err());
        // A length over the largest message, not allocated.
        let mut huge = vec![FRAME];
        huge.extend_from_slice(&1u64.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&huge), Err("relayed message over the largest message"));
        // A connection list longer than the stream.
        let mut many = vec![MANY];
        many.extend_from_slice(&1u64.to_be_bytes());
        many.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(decode(&many).is_err());
        assert_eq!(decode(&[99, 0, 0, 0, 0, 0, 0, 0, 1]), Err("unknown relay item"));
    }

    #[test]
    fn a_link_opens_what_its_peer_sealed_in_order_and_nothing_else() {
        let secret = LinkSecret::from_key_digest(&[1; 32]);
        let (mut edge, mut writer) = (Link::new(&secret, 9, 1, true), Link::new(&secret, 9, 2, false));
        let big: Vec<u8> = (0..3 * MAX_MESSAGE).map(|i| i as u8).collect();
        let first = edge.seal(&big).unwrap();
        let beat = edge.seal(&[]).unwrap();
        let third = edge.seal(b"third").unwrap();
        assert_eq!(header(&first), Some((9, 1)));
        assert_eq!(*writer.open(&first).unwrap(), big);
        assert_eq!(*writer.open(&beat).unwrap(), b"");
        // Replayed: out of step, refused.
        let mut again = Link::new(&secret, 9, 2, false);
        assert!(again.open(&beat).is_err(), "a message opens only at its place");
        assert_eq!(*writer.open(&third).unwrap(), b"third");
        // The other direction has keys of its own: a message does not open as its own.
        let back = writer.seal(b"down").unwrap();
        assert!(Link::new(&secret, 9, 2, false).open(&back).is_err());
        assert_eq!(*edge.open(&back).unwrap(), b"down");
        // Another link's keys, or another deployment's, open nothing.
        assert!(Link::new(&secret, 10, 2, false).open(&Link::new(&secret, 9, 1, true).seal(b"x").unwrap()).is_err());
        let other = LinkSecret::from_key_digest(&[2; 32]);
        let mut stranger = Link::new(&other, 9, 2, false);
        assert!(stranger.open(&Link::new(&secret, 9, 1, true).seal(b"x").unwrap()).is_err());
        assert!(writer.open(b"SRL1").is_err());
    }
}
