//! An edge's core and a writer's core, the relay's items between them in
//! their wire form (DESIGN §8 "Edges"): the client's handshake and records
//! end at the edge, which answers nothing itself; the writer answers, and its
//! answers are sealed at the edge; what reached the client is reported, and
//! the closes go both ways.

use std::net::{IpAddr, Ipv4Addr};

use crate::opcodes::{Heartbeat, Login, StatusReply};
use crate::server::core::{Accounts, ConnId, Core, Limits};
use crate::server::core_tests::{Pair, ID};
use crate::server::mailbox::Mail;
use crate::server::relay::{self, Item};
use crate::server::remote::Out;
use crate::server::room::Rooms;
use crate::server::worker;
use crate::wire::{self, code, Message};

/// The writer's number for the edge's connection.
const AT_WRITER: ConnId = 100;

/// `items` through their wire form, as the other node reads them.
fn across(items: Vec<Item>) -> Vec<Item> {
    let mut stream = Vec::new();
    items.iter().for_each(|i| i.encode(&mut stream));
    relay::decode(&stream).unwrap()
}

struct Nodes {
    edge: Pair,
    writer: Core,
}

impl Nodes {
    fn new(limits: Limits) -> Nodes {
        let edge = Pair::connect_to(|scfg| Core::edge(scfg, limits));
        let scfg = edge.ctx.server.clone();
        let writer = Core::new(scfg, limits, Accounts::default(), Rooms::default(), Mail::default()).with_relay();
        Nodes { edge, writer }
    }

    /// What the edge relays, applied at the writer as its relay does; then
    /// the writer's jobs, and what it sends back applied at the edge.
    fn relay(&mut self) -> Vec<Item> {
        let up = across(self.edge.core.take_relayed(true));
        let now = self.edge.now;
        for item in up.clone() {
            match item {
                Item::Open { conn, addr } => {
                    assert_eq!(conn, ID);
                    self.writer.relay_open(AT_WRITER, addr, now).unwrap();
                }
                Item::Frame { body, .. } => self.writer.relay_frame(AT_WRITER, &body, now),
                Item::Wrote { bytes, .. } => self.writer.relay_wrote(AT_WRITER, bytes as usize),
                Item::Closed { .. } => self.writer.relay_gone(AT_WRITER, "peer closed"),
                other => panic!("an edge sent {other:?}"),
            }
        }
        loop {
            let jobs = self.writer.poll_jobs();
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                let done = worker::run(job, &self.edge.ctx);
                self.writer.handle_completion(done, now);
            }
        }
        if self.writer.is_done(AT_WRITER) {
            self.writer.remove(AT_WRITER);
        }
        let mut down = Vec::new();
        for out in self.writer.take_output() {
            match out {
                Out::Seal { conn, msg } => {
                    assert_eq!(conn, AT_WRITER);
                    down.push(Item::Send { conn: ID, msg });
                }
                Out::Forget { conn } => {
                    assert_eq!(conn, AT_WRITER);
                    down.push(Item::Close { conn: ID });
                }
                other => panic!("the writer handed {:?}", other.conn()),
            }
        }
        for item in across(down) {
            self.edge.core.relay_apply(item, now);
        }
        up
    }

    /// The edge's client's answers, as the event loop writes them and
    /// reports them written.
    fn answers(&mut self) -> Vec<Vec<u8>> {
        let written = self.edge.core.transmit(ID).map_or(0, |o| o.len());
        let got = self.edge.responses();
        self.edge.core.wrote(ID, written);
        got
    }
}

fn status(frame: &[u8]) -> u16 {
    wire::decode::<StatusReply>(frame).unwrap().hdr.code.get()
}

#[test]
fn an_edge_relays_a_clients_messages_and_seals_the_writers_answers() {
    let mut n = Nodes::new(Limits::default());
    // Before any login, a ping: the edge answers nothing itself.
    let mut ping = Heartbeat::request(1, 0);
    ping.hdr.msg_id.set(7);
    assert!(n.edge.send(ping).is_empty(), "an edge dispatches nothing");
    let up = n.relay();
    assert_eq!(up[0], Item::Open { conn: ID, addr: IpAddr::V4(Ipv4Addr::LOCALHOST) }, "its address first");
    assert!(matches!(&up[1], Item::Frame { conn: ID, body } if body.len() == std::mem::size_of::<Heartbeat>()));
    // The writer's answer, sealed at the edge under the client's keys.
    let got = n.answers();
    assert_eq!(got.len(), 1);
    assert_eq!(status(&got[0]), code::UNAUTHORIZED, "the writer decides: log in first");
    // What reached the client is reported: the writer's count of it falls to nothing.
    let wrote = n.edge.core.take_relayed(true);
    assert_eq!(wrote, [Item::Wrote { conn: ID, bytes: crate::record::sealed_len(got[0].len()) as u32 }]);
    for item in across(wrote) {
        let Item::Wrote { bytes, .. } = item else { unreachable!() };
        n.writer.relay_wrote(AT_WRITER, bytes as usize);
    }

    // A login of an unknown name: the writer's argon2id job, then its 401.
    let mut login = Login::request(2, 0);
    login.set_username("nobody").unwrap();
    assert!(n.edge.send(login).is_empty());
    n.relay();
    let got = n.answers();
    assert_eq!(got.iter().map(|f| status(f)).collect::<Vec<_>>(), [code::UNAUTHORIZED]);

    // The writer closes it: once written, the edge hears, closes, and says so.
    n.relay();
    n.writer.close(AT_WRITER, "test");
    n.relay();
    assert!(n.edge.core.is_closing(ID), "closed by the writing node");
    assert!(n.edge.core.is_done(ID));
    n.edge.core.remove(ID);
    assert_eq!(n.edge.core.take_relayed(true), [Item::Closed { conn: ID }]);
}

#[test]
fn a_relayed_client_that_sends_past_its_bound_is_closed_at_the_writer() {
    let limits = Limits { max_input: 64 * 1024, ..Limits::default() };
    let mut n = Nodes::new(limits);
    let addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    n.writer.relay_open(AT_WRITER, addr, 1_000).unwrap();
    // A login holds the connection's next frames until its argon2id job is
    // back (not run here): they wait at the writer, up to twice the bound.
    let mut login = Login::request(2, 0);
    login.set_username("nobody").unwrap();
    n.writer.relay_frame(AT_WRITER, zerocopy::IntoBytes::as_bytes(&login), 1_000);
    let body = vec![0u8; 16_384];
    // Seven frames with their lengths: 114,716 bytes, under 128 KiB.
    for _ in 0..7 {
        n.writer.relay_frame(AT_WRITER, &body, 1_000);
        assert_eq!(n.writer.closing(AT_WRITER), None, "under its bound");
    }
    assert!(!n.writer.wants_read(AT_WRITER, 1_000), "paused: the edge is told to stop reading");
    n.writer.relay_frame(AT_WRITER, &body, 1_000);
    assert_eq!(n.writer.closing(AT_WRITER), Some("relayed input over its bound"));
}

#[test]
fn an_edge_whose_writer_is_gone_closes_its_relayed_clients_only() {
    let mut n = Nodes::new(Limits::default());
    assert_eq!(n.edge.core.close_relayed("no writing node known"), 0, "nothing relayed yet");
    let mut ping = Heartbeat::request(1, 0);
    ping.hdr.msg_id.set(1);
    n.edge.send(ping);
    assert_eq!(n.edge.core.close_relayed("the writing node changed"), 1);
    assert!(n.edge.core.is_closing(ID));
}

#[test]
fn the_writer_applies_its_ticket_policy_to_a_relayed_resumption_and_its_edge_answers() {
    let scfg = crate::handshake::ServerConfig::built_in();
    let tickets = crate::server::tickets::Tickets::fresh(1_000);
    let mut writer = Core::new(scfg, Limits::default(), Accounts::default(), Rooms::default(), Mail::default())
        .with_tickets(tickets)
        .with_relay();
    let addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // A ticket whose account does not exist (an edge opened it: its keys are the deployment's).
    let ticket = relay::Ticket { uid: 42, issued_ms: 1_000, expires_ms: 600_000, generation: 0, ticket_id: [1; 16] };
    writer.relay_resume(AT_WRITER, addr, &ticket, 2_000).unwrap();
    assert_eq!(writer.closing(AT_WRITER), Some("resumption refused"));
    let out = writer.take_output();
    assert!(
        matches!(&out[..], [Out::Relay { conn: AT_WRITER, item: Item::Resumed { ok: false, .. } }]),
        "the edge sends the refusal: {:?}",
        out.iter().map(Out::conn).collect::<Vec<_>>()
    );
    // Expired: refused before anything else, struck nowhere.
    let expired = relay::Ticket { expires_ms: 1_500, ..ticket };
    writer.relay_resume(AT_WRITER + 1, addr, &expired, 2_000).unwrap();
    assert_eq!(writer.closing(AT_WRITER + 1), Some("resumption refused"));
    assert!(!writer.tickets.is_used(&ticket.ticket_id), "a refused ticket is not struck");
}
