//! Resumption (PROTOCOL.md §3, resumption) between two sides joined by byte
//! buffers, no sockets: a full handshake, a ticket, a resumed session whose
//! keys interoperate, the next ticket from the resumed session, and every
//! refusal: a tampered ticket, a wrong secret, a forged or refused answer.

use std::sync::OnceLock;

use proptest::prelude::*;
use sotto::frame::Deframer;
use sotto::handshake::{self, BuildIdentity, ClientConfig, ServerConfig, SessionKeys};
use sotto::identity::Signer;
use sotto::record::MAX_BODY;
use sotto::ticket::{
    self, HeldTicket, ResumeError, ResumeVerdict, TicketContents, TicketKey, REFUSED, RESUME_HELLO_LEN,
    SERVER_RESUME_LEN, TICKET_LEN,
};
use zeroize::Zeroizing;

const DEPLOYMENT: [u8; 32] = [7; 32];

fn signer() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| {
        let (der, _) = sotto::identity::generate().expect("RSA key generation");
        Signer::from_pkcs8_der(&der).expect("fresh key loads")
    })
}

fn client_cfg() -> ClientConfig {
    ClientConfig {
        build: BuildIdentity::this_build(),
        deployment_key: DEPLOYMENT,
        server_keys: vec![signer().public().clone()],
    }
}

fn server_cfg() -> ServerConfig {
    ServerConfig { build: BuildIdentity::this_build(), deployment_key: DEPLOYMENT }
}

fn body(frame: &[u8]) -> Vec<u8> {
    let mut d = Deframer::new(MAX_BODY);
    d.push(frame);
    let b = d.pop().expect("well-framed").expect("one whole frame");
    assert_eq!(d.buffered(), 0, "exactly one frame");
    b
}

/// A full handshake: (client keys, server keys).
fn connect() -> (SessionKeys, SessionKeys) {
    let (ccfg, scfg) = (client_cfg(), server_cfg());
    let (state, ch_frame) = handshake::client_hello(&ccfg);
    let ch = body(&ch_frame);
    let (sh_frame, server) = handshake::server_hello(&scfg, signer(), &ch).expect("server signs");
    let client = state.handle_server_hello(&ccfg, &body(&sh_frame)).expect("client accepts");
    (client, server)
}

fn key() -> TicketKey {
    TicketKey::from_material(0x0102_0304_0506_0708, 1_000, &[0x33; 48])
}

/// The server issues a ticket on `server`'s session; the client takes it on `client`'s.
fn issue(server: &SessionKeys, client: &SessionKeys, k: &TicketKey) -> HeldTicket {
    let ticket_id: [u8; 16] = sotto::crypto::random();
    let contents = TicketContents {
        uid: 42,
        issued_ms: 5_000,
        expires_ms: 9_000,
        generation: 3,
        ticket_id,
        secret: server.resumption.ticket_secret(&ticket_id),
    };
    let sealed = k.seal(&contents);
    HeldTicket::received(&client.resumption, ticket_id, contents.expires_ms, sealed)
}

/// The server side of a resumption, as sottod runs it: checks, opens, binds, answers.
fn server_side(keys: &[TicketKey], rh: &[u8]) -> Result<(Vec<u8>, SessionKeys, TicketContents), &'static str> {
    let scfg = server_cfg();
    if !ticket::is_resume_hello(rh) {
        return Err("not a resume hello");
    }
    match ticket::check_resume_hello(&scfg, rh) {
        ResumeVerdict::Check => {}
        ResumeVerdict::Mismatch => return Err("mismatch"),
        ResumeVerdict::Drop => return Err("drop"),
    }
    let t = ticket::hello_ticket(rh).ok_or("no ticket")?;
    let c = ticket::open_ticket(keys, t).ok_or("ticket does not open")?;
    if !ticket::binder_verifies(rh, &c.secret) {
        return Err("binder");
    }
    let (frame, s) = ticket::server_resume(&scfg, rh, &c.secret).map_err(|_| "answer")?;
    Ok((frame, s, c))
}

fn seal(keys: &mut SessionKeys, byte: u8) -> Vec<u8> {
    let mut frame = Vec::new();
    keys.sealer.seal(&[byte; 32], &mut frame).expect("seal");
    body(&frame)
}

fn interoperate(client: &mut SessionKeys, server: &mut SessionKeys) {
    for i in 0..3u8 {
        let up = seal(client, i);
        assert_eq!(server.opener.open(&up).expect("client to server"), [i; 32]);
        let down = seal(server, 0x80 | i);
        assert_eq!(client.opener.open(&down).expect("server to client"), [0x80 | i; 32]);
    }
}

#[test]
fn both_sides_derive_the_same_ticket_secret_from_a_full_handshake() {
    let (client, server) = connect();
    let id = [9u8; 16];
    assert_eq!(*client.resumption.ticket_secret(&id), *server.resumption.ticket_secret(&id));
    assert_ne!(*client.resumption.ticket_secret(&id), *client.resumption.ticket_secret(&[8u8; 16]));
    // Another session, another master.
    let (other, _) = connect();
    assert_ne!(*client.resumption.ticket_secret(&id), *other.resumption.ticket_secret(&id));
}

#[test]
fn a_ticket_resumes_a_session_whose_keys_interoperate_and_which_issues_the_next_ticket() {
    let (client0, server0) = connect();
    let k = key();
    let held = issue(&server0, &client0, &k);
    let (state, rh_frame) = ticket::resume_hello(&client_cfg(), &held);
    let rh = body(&rh_frame);
    assert_eq!(rh.len(), RESUME_HELLO_LEN);
    let (sr_frame, mut server, contents) = server_side(std::slice::from_ref(&k), &rh).expect("server resumes");
    assert_eq!((contents.uid, contents.generation, contents.expires_ms), (42, 3, 9_000));
    assert_eq!(contents.ticket_id, held.ticket_id);
    let sr = body(&sr_frame);
    assert_eq!(sr.len(), SERVER_RESUME_LEN);
    let mut client = state.handle_answer(&client_cfg(), &sr).expect("client accepts");
    interoperate(&mut client, &mut server);
    // The resumed session has a master of its own, the same on both sides.
    let next = issue(&server, &client, &k);
    assert_ne!(*next.secret, *held.secret);
    let (state, rh_frame) = ticket::resume_hello(&client_cfg(), &next);
    let (sr_frame, mut server2, _) = server_side(std::slice::from_ref(&k), &body(&rh_frame)).expect("resumes again");
    let mut client2 = state.handle_answer(&client_cfg(), &body(&sr_frame)).expect("client accepts again");
    interoperate(&mut client2, &mut server2);
}

#[test]
fn resumed_keys_are_fresh_each_time_the_same_ticket_is_offered() {
    // Single use is the server's policy; the keys of two resumptions with the
    // same ticket differ anyway (fresh X25519 on both sides).
    let (c0, s0) = connect();
    let k = key();
    let held = issue(&s0, &c0, &k);
    let mut ups = Vec::new();
    for _ in 0..2 {
        let (state, rh) = ticket::resume_hello(&client_cfg(), &held);
        let (sr, _, _) = server_side(std::slice::from_ref(&k), &body(&rh)).expect("resumes");
        let mut c = state.handle_answer(&client_cfg(), &body(&sr)).expect("accepts");
        ups.push(seal(&mut c, 1));
    }
    assert_ne!(ups[0], ups[1]);
}

#[test]
fn a_ticket_under_an_unknown_or_other_key_does_not_open() {
    let (c0, s0) = connect();
    let held = issue(&s0, &c0, &key());
    let (_, rh) = ticket::resume_hello(&client_cfg(), &held);
    let rh = body(&rh);
    // The same id, other material: the tag fails.
    let forged = TicketKey::from_material(key().id, 1_000, &[0x34; 48]);
    assert_eq!(server_side(&[forged], &rh).err(), Some("ticket does not open"));
    // Another id: no key to try.
    let other = TicketKey::from_material(99, 1_000, &[0x33; 48]);
    assert_eq!(server_side(&[other], &rh).err(), Some("ticket does not open"));
    // The previous key is still accepted next to a new one.
    let newer = TicketKey::generate(7, 2_000);
    assert!(server_side(&[newer, key()], &rh).is_ok());
}

#[test]
fn a_client_without_the_secret_cannot_bind_the_ticket() {
    let (c0, s0) = connect();
    let mut held = issue(&s0, &c0, &key());
    held.secret = Zeroizing::new([0u8; 32]);
    let (_, rh) = ticket::resume_hello(&client_cfg(), &held);
    assert_eq!(server_side(&[key()], &body(&rh)).err(), Some("binder"));
}

#[test]
fn a_server_without_the_secret_cannot_answer() {
    let (c0, s0) = connect();
    let held = issue(&s0, &c0, &key());
    let (state, rh) = ticket::resume_hello(&client_cfg(), &held);
    let (sr, _) = ticket::server_resume(&server_cfg(), &body(&rh), &[5u8; 32]).expect("answers");
    assert_eq!(state.handle_answer(&client_cfg(), &body(&sr)).err(), Some(ResumeError::Unverified));
}

#[test]
fn refusals_and_mismatches_are_reported_and_never_give_keys() {
    let (c0, s0) = connect();
    let held = issue(&s0, &c0, &key());
    let (state, _) = ticket::resume_hello(&client_cfg(), &held);
    let refused = body(&ticket::refusal(&server_cfg(), REFUSED));
    assert_eq!(state.handle_answer(&client_cfg(), &refused).err(), Some(ResumeError::Refused));
    let (state, _) = ticket::resume_hello(&client_cfg(), &held);
    let mismatch = body(&ticket::refusal(&server_cfg(), ticket::MISMATCH));
    assert_eq!(state.handle_answer(&client_cfg(), &mismatch).err(), Some(ResumeError::Mismatch));
    let (state, _) = ticket::resume_hello(&client_cfg(), &held);
    assert_eq!(state.handle_answer(&client_cfg(), &[0u8; 10]).err(), Some(ResumeError::Malformed));
}

#[test]
fn the_server_drops_hellos_of_another_deployment_and_reports_other_versions() {
    let (c0, s0) = connect();
    let held = issue(&s0, &c0, &key());
    let mut other = client_cfg();
    other.deployment_key = [8; 32];
    let (_, rh) = ticket::resume_hello(&other, &held);
    assert_eq!(ticket::check_resume_hello(&server_cfg(), &body(&rh)), ResumeVerdict::Drop);
    let mut older = client_cfg();
    older.build.version -= 1;
    let (_, rh) = ticket::resume_hello(&older, &held);
    assert_eq!(ticket::check_resume_hello(&server_cfg(), &body(&rh)), ResumeVerdict::Mismatch);
    // A ClientHello is not a ResumeHello, nor the other way round.
    let (_, ch) = handshake::client_hello(&client_cfg());
    assert!(!ticket::is_resume_hello(&body(&ch)));
    let (_, rh) = ticket::resume_hello(&client_cfg(), &held);
    assert_eq!(handshake::check_client_hello(&server_cfg(), &body(&rh)), handshake::HelloVerdict::Drop);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any change to a ticket, a ResumeHello or a ServerResume is refused.
    #[test]
    fn any_flipped_bit_is_refused(at in 0usize..1000, bit in 0u8..8) {
        let (c0, s0) = connect_cached();
        let k = key();
        let held = issue(s0, c0, &k);
        // The ticket.
        let mut t = held.ticket;
        let i = at % TICKET_LEN;
        t[i] ^= 1 << bit;
        prop_assert!(ticket::open_ticket(std::slice::from_ref(&k), &t).is_none());
        // The ResumeHello (magic, MAC, binder or anything they cover).
        let (state, rh) = ticket::resume_hello(&client_cfg(), &held);
        let mut rh = body(&rh);
        let i = at % RESUME_HELLO_LEN;
        rh[i] ^= 1 << bit;
        prop_assert!(server_side(std::slice::from_ref(&k), &rh).is_err());
        rh[i] ^= 1 << bit;
        // The ServerResume.
        let (sr, _, _) = server_side(std::slice::from_ref(&k), &rh).expect("resumes");
        let mut sr = body(&sr);
        let i = at % SERVER_RESUME_LEN;
        sr[i] ^= 1 << bit;
        prop_assert!(state.handle_answer(&client_cfg(), &sr).is_err());
    }
}

/// One full handshake for all the property's cases (RSA is slow).
fn connect_cached() -> (&'static SessionKeys, &'static SessionKeys) {
    static PAIR: OnceLock<(SessionKeys, SessionKeys)> = OnceLock::new();
    let (c, s) = PAIR.get_or_init(connect);
    (c, s)
}
