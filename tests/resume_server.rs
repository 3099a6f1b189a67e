//! Resumption through the real sottod (PROTOCOL.md §3, resumption), with a
//! raw client built from the library (`sotto::handshake`, `sotto::ticket`,
//! the wire types): a full login hands out a ticket; after `kill -9` and a
//! restart on the same port and data directory the ticket resumes a session
//! without the password, which works; the same ResumeHello bytes again are
//! refused, also by a server restarted after `kill -9` that used it; a
//! password change revokes the tickets out; an expired ticket is
//! refused; `--no-resume` issues none and refuses all; the ticket key file
//! survives restarts, private.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::raw::{now_ms, read_frame};
use common::{user, Server, TempDir, PW, WORDS};
use sotto::frame::Deframer;
use sotto::handshake::{self, ClientConfig, SessionKeys};
use sotto::opcodes::{
    ChangeSecrets, Connected, Heartbeat, ListUsers, Login, Passphrase, ResumptionTicket, StatusReply, CNNT, PONG, STAT,
    TICK,
};
use sotto::record::MAX_BODY;
use sotto::ticket::{self, HeldTicket, ResumeError, SERVER_RESUME_LEN};
use sotto::wire::{self, code, Message};
use zerocopy::FromZeros;

const WAIT: Duration = Duration::from_secs(10);

/// A session of the raw client: its keys (with the resumption master) and the stream.
struct Session {
    stream: TcpStream,
    keys: SessionKeys,
    deframer: Deframer,
    next_id: u64,
}

impl Session {
    /// A full handshake to `addr`.
    fn full(addr: &str) -> Session {
        let cfg = ClientConfig::built_in().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        let (state, hello) = handshake::client_hello(&cfg);
        stream.write_all(&hello).unwrap();
        let mut deframer = Deframer::new(handshake::SERVER_HELLO_LEN);
        let body = read_frame(&mut stream, &mut deframer).expect("a ServerHello");
        let keys = state.handle_server_hello(&cfg, &body).expect("handshake");
        deframer.set_max_body(MAX_BODY);
        Session { stream, keys, deframer, next_id: 1 }
    }

    /// Sends the framed ResumeHello `hello` to `addr` and reads the answer.
    fn resume_with(addr: &str, state: ticket::AwaitResume, hello: &[u8]) -> Result<Session, ResumeError> {
        let cfg = ClientConfig::built_in().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(hello).unwrap();
        let mut deframer = Deframer::new(SERVER_RESUME_LEN);
        let body = read_frame(&mut stream, &mut deframer).ok_or(ResumeError::Malformed)?;
        let keys = state.handle_answer(&cfg, &body)?;
        deframer.set_max_body(MAX_BODY);
        Ok(Session { stream, keys, deframer, next_id: 1 })
    }

    fn resume(addr: &str, held: &HeldTicket) -> Result<Session, ResumeError> {
        let (state, hello) = ticket::resume_hello(&ClientConfig::built_in().unwrap(), held);
        Session::resume_with(addr, state, &hello)
    }

    fn request<M: Message>(&mut self, mut m: M) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        *m.header_mut() = *M::request(id, now_ms()).header();
        let mut rec = Vec::new();
        self.keys.sealer.seal(m.as_bytes(), &mut rec).unwrap();
        self.stream.write_all(&rec).unwrap();
        id
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        let body = read_frame(&mut self.stream, &mut self.deframer)?;
        self.keys.opener.open(&body).ok()
    }

    /// Messages until one satisfies `pred` (returned); None at EOF or after WAIT.
    fn until(&mut self, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        loop {
            let m = self.recv()?;
            if pred(&m) {
                return Some(m);
            }
        }
    }

    fn stat_for(&mut self, msg_id: u64) -> Option<StatusReply> {
        let m = self.until(|m| wire::header(m).is_ok_and(|h| h.opcode.get() == STAT && h.msg_id.get() == msg_id))?;
        Some(*wire::decode::<StatusReply>(&m).unwrap())
    }

    /// The next ticket, held.
    fn ticket(&mut self) -> HeldTicket {
        let m = self.until(|m| op(m) == TICK).expect("a tick");
        let t = wire::decode::<ResumptionTicket>(&m).unwrap();
        HeldTicket::received(&self.keys.resumption, t.ticket_id, t.expires.get(), t.ticket)
    }

    /// Logs in with the name and secrets; the `cnnt`.
    fn login(&mut self, name: &str, password: &str, words: &str) -> Connected {
        let mut l = Login::new_zeroed();
        l.set_username(name).unwrap();
        l.auth_secret = *sotto::account::auth_secret(name, password);
        let id = self.request(l);
        assert_eq!(self.stat_for(id).expect("auth answered").hdr.code.get(), code::PENDING);
        let mut p = Passphrase::new_zeroed();
        p.pass_secret = *sotto::account::pass_secret(name, &sotto::account::normalize_passphrase(words).unwrap());
        self.request(p);
        let c = self.until(|m| op(m) == CNNT).expect("cnnt");
        *wire::decode::<Connected>(&c).unwrap()
    }

    /// A heartbeat is answered: the session is alive.
    fn alive(&mut self) -> bool {
        self.request(Heartbeat::new_zeroed());
        self.until(|m| op(m) == PONG).is_some()
    }
}

fn op(m: &[u8]) -> u32 {
    wire::header(m).map_or(0, |h| h.opcode.get())
}

fn chpw(name: &str, old: (&str, &str), new: (&str, &str)) -> ChangeSecrets {
    let secrets = |pw: &str, words: &str| {
        let words = sotto::account::normalize_passphrase(words).unwrap();
        (*sotto::account::auth_secret(name, pw), *sotto::account::pass_secret(name, &words))
    };
    let mut m = ChangeSecrets::new_zeroed();
    (m.old_auth_secret, m.old_pass_secret) = secrets(old.0, old.1);
    (m.new_auth_secret, m.new_pass_secret) = secrets(new.0, new.1);
    m
}

fn registered(server: &Server, dir: &TempDir, name: &str) {
    let c = user(server, dir, name, &[]);
    drop(c);
}

#[test]
fn a_ticket_resumes_after_kill_9_once_and_a_password_change_revokes() {
    let dir = TempDir::new("resume-srv");
    let data = dir.join("data");
    let server = Server::start_with(&data, &[]);
    registered(&server, &dir, "alice");
    let keys_file = data.join("ticket-keys");
    let mode = std::fs::metadata(&keys_file).expect("ticket-keys made at start").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_bytes = std::fs::read(&keys_file).unwrap();
    let mut s = Session::full(&server.addr);
    let c = s.login("alice", PW, WORDS);
    let uid = c.uid.get();
    let held = s.ticket();
    drop(s);

    let addr = server.addr.clone();
    server.kill9();
    let server = Server::start_on(&data, &addr, &[]);
    assert_eq!(std::fs::read(&keys_file).unwrap(), key_bytes, "the key file survives the restart, unchanged");

    // Resumed: no password, an authenticated session that works.
    let (state, hello) = ticket::resume_hello(&ClientConfig::built_in().unwrap(), &held);
    let mut r = Session::resume_with(&addr, state, &hello).expect("resumed after kill -9");
    let c = r.until(|m| op(m) == CNNT).expect("cnnt after the resumption");
    let c = wire::decode::<Connected>(&c).unwrap();
    assert_eq!((c.hdr.msg_id.get(), c.uid.get(), c.username().unwrap()), (0, uid, "alice"));
    let next = r.ticket();
    assert!(r.alive());
    let id = r.request(ListUsers::new_zeroed());
    let done = r.stat_for(id).expect("lsus answered");
    assert_eq!(done.hdr.code.get(), code::OK, "{:?}", done.reason());

    // The same bytes again: refused (the ticket was used), and a replay is logged at warn.
    let (state, _) = ticket::resume_hello(&ClientConfig::built_in().unwrap(), &held);
    assert_eq!(Session::resume_with(&addr, state, &hello).err(), Some(ResumeError::Refused));
    let deadline = Instant::now() + WAIT;
    while !server.stderr.lock().unwrap().iter().any(|l| l.contains("replayed resumption ticket")) {
        assert!(Instant::now() < deadline, "no warning: {:?}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.stderr.lock().unwrap().iter().all(|l| !l.contains(&sotto::crypto::hex(&held.ticket[..16]))),
        "the ticket is not logged"
    );

    // A password change: 200, a fresh ticket; the ticket out before it is refused.
    let id = r.request(chpw("alice", (PW, WORDS), ("password456", "blue green red")));
    assert_eq!(r.stat_for(id).expect("chpw answered").hdr.code.get(), code::OK);
    let fresh = r.ticket();
    assert_eq!(Session::resume(&addr, &next).err(), Some(ResumeError::Refused), "revoked by the change");
    let mut again = Session::resume(&addr, &fresh).expect("the ticket after the change resumes");
    assert!(again.alive());
    drop(again);
    // And the new secrets log in, after a restart too.
    let server = {
        drop(r);
        server.kill9();
        Server::start_on(&data, &addr, &[])
    };
    let mut s = Session::full(&server.addr);
    assert_eq!(s.login("alice", "password456", "blue green red").uid.get(), uid);
}

#[test]
fn an_expired_ticket_is_refused() {
    let dir = TempDir::new("resume-ttl");
    let data = dir.join("data");
    let server = Server::start_with(&data, &["--ticket-ttl", "60"]);
    registered(&server, &dir, "bob");
    let mut s = Session::full(&server.addr);
    s.login("bob", PW, WORDS);
    let first = s.ticket();
    assert!(first.expires_ms <= now_ms() + 60_000, "issued for the TTL");
    drop(s);
    // Resumed within the TTL; its fresh ticket is then left to expire.
    let mut r = Session::resume(&server.addr, &first).expect("resumed within the TTL");
    let held = r.ticket();
    drop(r);
    std::thread::sleep(Duration::from_millis(61_000));
    assert_eq!(Session::resume(&server.addr, &held).err(), Some(ResumeError::Refused), "expired");
    // The client then logs in in full, as it falls back to.
    let mut s = Session::full(&server.addr);
    s.login("bob", PW, WORDS);
    assert!(s.alive());
}

#[test]
fn no_resume_issues_no_ticket_and_refuses_them() {
    let dir = TempDir::new("resume-off");
    let data = dir.join("data");
    let server = Server::start_with(&data, &[]);
    registered(&server, &dir, "carol");
    let mut s = Session::full(&server.addr);
    s.login("carol", PW, WORDS);
    let held = s.ticket();
    drop(s);
    let addr = server.addr.clone();
    drop(server);
    let server = Server::start_on(&data, &addr, &["--no-resume"]);
    assert_eq!(Session::resume(&addr, &held).err(), Some(ResumeError::Refused));
    let mut s = Session::full(&server.addr);
    s.login("carol", PW, WORDS);
    // No tick: the heartbeat's pong comes with nothing before it but the login's own events.
    s.request(Heartbeat::new_zeroed());
    let mut seen = Vec::new();
    let pong = s.until(|m| {
        let o = op(m);
        o == PONG || o == TICK
    });
    seen.extend(pong.iter().map(|m| op(m)));
    assert_eq!(seen, [PONG], "no ticket under --no-resume");
    // The ticket is kept, not spent: with resumption back on it resumes.
    drop(s);
    drop(server);
    let _server = Server::start_on(&data, &addr, &[]);
    assert!(Session::resume(&addr, &held).is_ok(), "refusing under --no-resume did not use it");
}

#[test]
fn a_used_ticket_stays_used_across_kill_9() {
    let dir = TempDir::new("resume-once");
    let data = dir.join("data");
    let server = Server::start_with(&data, &[]);
    registered(&server, &dir, "dave");
    let mut s = Session::full(&server.addr);
    s.login("dave", PW, WORDS);
    let held = s.ticket();
    drop(s);
    // Resumed: the answer came only once the strike was durable.
    let (state, hello) = ticket::resume_hello(&ClientConfig::built_in().unwrap(), &held);
    let mut r = Session::resume_with(&server.addr, state, &hello).expect("resumed");
    assert!(r.alive());
    let addr = server.addr.clone();
    server.kill9();
    drop(r);
    let server = Server::start_on(&data, &addr, &[]);
    // The same ResumeHello bytes to the restarted server: refused.
    let (state, _) = ticket::resume_hello(&ClientConfig::built_in().unwrap(), &held);
    assert_eq!(Session::resume_with(&addr, state, &hello).err(), Some(ResumeError::Refused), "used before the kill");
    let deadline = Instant::now() + WAIT;
    while !server.stderr.lock().unwrap().iter().any(|l| l.contains("replayed resumption ticket")) {
        assert!(Instant::now() < deadline, "no warning: {:?}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}
