//! Transport layer of the client: one TCP connection, its handshake and its records (DESIGN §4).
//!
//! Invariant: nothing follows the ClientHello unless the server's signature
//! verified against a key compiled into this binary, nor the ResumeHello
//! unless the server's MAC, keyed by the ticket's secret, verified
//! (`sotto::ticket`); records are opened in order, and any failure to
//! deframe or open one ends the connection. The session's resumption master
//! stays here, wiped on drop, and only gives the secret of a ticket received
//! on this connection.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use sotto::frame::{Deframer, FrameError};
use sotto::handshake::{self, ClientConfig, HandshakeError, SessionKeys};
use sotto::identity::KeyError;
use sotto::record::{Opener, Sealer, MAX_BODY};
use sotto::ticket::{self, HeldTicket, ResumeError, ResumptionMaster, TICKET_LEN};

use crate::servers::Servers;

/// How long the TCP connect to one address may take (each address a name
/// resolves to), so that a black-holed node does not stall a round.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the handshake may take once connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may block once the session runs.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no session could be established.
#[derive(Debug)]
pub enum ConnectError {
    /// The server key compiled into this binary does not parse.
    Config(KeyError),
    /// No TCP connection.
    Connect {
        /// The address asked for.
        server: String,
        /// What the system said.
        source: io::Error,
    },
    /// The server closed before answering the ClientHello.
    ClosedEarly,
    /// No ServerHello in time.
    Timeout,
    /// Another socket error during the handshake.
    Io(io::Error),
    /// The ServerHello frame is malformed.
    Frame(FrameError),
    /// The ServerHello was refused (mismatch, unverified server, ...).
    Handshake(HandshakeError),
}

impl ConnectError {
    /// Nothing listens at the address: the connection was refused (a node
    /// restarting, or a cluster standby). Such a refusal costs the server
    /// nothing (its kernel answers), unlike a handshake.
    pub fn refused(&self) -> bool {
        matches!(self, ConnectError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused)
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Config(e) => write!(f, "the server key built into this client is unusable: {e}"),
            ConnectError::Connect { server, source } => write!(f, "cannot connect to {server}: {source}"),
            ConnectError::ClosedEarly => f.write_str(
                "server closed the connection during the handshake (a client built for another deployment is refused silently)",
            ),
            ConnectError::Timeout => {
                write!(f, "no handshake answer from the server within {} s", HANDSHAKE_TIMEOUT.as_secs())
            }
            ConnectError::Io(e) => write!(f, "connection failed during the handshake: {e}"),
            ConnectError::Frame(e) => write!(f, "malformed handshake answer: {e}"),
            ConnectError::Handshake(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// The reason, without the address (which a round's report says first).
    fn brief(&self) -> String {
        match self {
            ConnectError::Connect { source, .. } => format!("cannot connect: {source}"),
            other => other.to_string(),
        }
    }
}

/// Why a round gave no session: each address tried, in order, and why it failed.
#[derive(Debug, Default)]
pub struct Unreachable(Vec<(String, ConnectError)>);

impl Unreachable {
    /// Notes that `server` gave no session.
    pub fn push(&mut self, server: &str, e: ConnectError) {
        self.0.push((server.to_string(), e));
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            // One address: said as it always was.
            [(_, e)] => write!(f, "{e}"),
            tried => {
                write!(f, "no server could be reached (tried {}):", tried.len())?;
                for (i, (server, e)) in tried.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}{server}: {}", e.brief())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Unreachable {}

/// Why an established connection ended.
#[derive(Debug)]
pub enum ConnError {
    /// The server closed it.
    Closed,
    /// A record failed to deframe or authenticate (no detail, on purpose: DESIGN §4).
    Corrupted,
    /// The socket failed.
    Io(io::Error),
    /// The server sent nothing, not even an answer to a heartbeat, for too long.
    Silent,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Closed => f.write_str("the server closed the connection"),
            ConnError::Silent => f.write_str("the server stopped answering (no heartbeat reply)"),
            ConnError::Corrupted => f.write_str("connection corrupted"),
            ConnError::Io(e) => write!(f, "connection lost: {e}"),
        }
    }
}

impl std::error::Error for ConnError {}

/// An established, verified session with the server.
pub struct Conn {
    /// When this client last sent and last received anything, Unix ms.
    sent_ms: u64,
    heard_ms: u64,
    stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
    deframer: Deframer,
    /// Gives the secret of a ticket received on this connection (wiped on drop).
    resumption: ResumptionMaster,
}

/// First 8 bytes of SHA-256 of the server key this binary verifies, in hex.
pub fn server_fingerprint() -> String {
    let digest = sotto::crypto::sha256(&[sotto::build_info::SERVER_PUBLIC_DER]);
    sotto::crypto::hex(&digest[..8])
}

/// Connects to the first of `servers` that completes the handshake, trying
/// them in order (docs/CLIENT.md "Several servers"): the session and the
/// address reached, or why each failed.
pub fn connect_first(servers: &Servers) -> Result<(Conn, String), Unreachable> {
    let mut failed = Unreachable::default();
    for server in servers.iter() {
        match connect(server) {
            Ok(c) => return Ok((c, server.to_string())),
            Err(e) => failed.push(server, e),
        }
    }
    Err(failed)
}

/// Connects to `server` (HOST:PORT) and runs the handshake.
pub fn connect(server: &str) -> Result<Conn, ConnectError> {
    let cfg = ClientConfig::built_in().map_err(ConnectError::Config)?;
    let stream = dial(server)?.0;
    let (state, hello) = handshake::client_hello(&cfg);
    if let Err(e) = (&stream).write_all(&hello) {
        return Err(if closed_by_peer(&e) { ConnectError::ClosedEarly } else { ConnectError::Io(e) });
    }
    let mut deframer = Deframer::new(handshake::SERVER_HELLO_LEN);
    let body = read_answer(&stream, &mut deframer)?;
    let keys = state.handle_server_hello(&cfg, &body).map_err(ConnectError::Handshake)?;
    established(stream, deframer, keys)
}

/// A TCP connection to the server, before any hello.
pub struct Dialed(TcpStream);

/// Opens the TCP connection (5 s limit per address), for [`connect`] or [`resume`].
pub fn dial(server: &str) -> Result<Dialed, ConnectError> {
    let stream = open_tcp(server)?;
    stream.set_nodelay(true).map_err(ConnectError::Io)?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(ConnectError::Io)?;
    Ok(Dialed(stream))
}

/// Why a resumption gave no session; in every case the ticket is spent
/// (the server may have seen it) and a full handshake follows.
#[derive(Debug)]
pub enum ResumeFailed {
    /// The server answered without resuming (refused, mismatch, malformed,
    /// unverified): [`ResumeError`].
    Answer(ResumeError),
    /// The server closed, timed out or the socket failed before an answer.
    Connect(ConnectError),
}

impl std::fmt::Display for ResumeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResumeFailed::Answer(e) => write!(f, "{e}"),
            ResumeFailed::Connect(e) => write!(f, "{e}"),
        }
    }
}

/// Offers `held` on a fresh TCP connection (a ResumeHello instead of a
/// ClientHello, PROTOCOL.md §3, resumption): the session, authenticated as the
/// ticket's account, once the server's MAC verified.
pub fn resume(dialed: Dialed, held: &HeldTicket) -> Result<Conn, ResumeFailed> {
    let cfg = ClientConfig::built_in().map_err(|e| ResumeFailed::Connect(ConnectError::Config(e)))?;
    let stream = dialed.0;
    let (state, hello) = ticket::resume_hello(&cfg, held);
    if let Err(e) = (&stream).write_all(&hello) {
        let e = if closed_by_peer(&e) { ConnectError::ClosedEarly } else { ConnectError::Io(e) };
        return Err(ResumeFailed::Connect(e));
    }
    let mut deframer = Deframer::new(ticket::SERVER_RESUME_LEN);
    let body = read_answer(&stream, &mut deframer).map_err(ResumeFailed::Connect)?;
    let keys = state.handle_answer(&cfg, &body).map_err(ResumeFailed::Answer)?;
    established(stream, deframer, keys).map_err(ResumeFailed::Connect)
}

fn established(stream: TcpStream, mut deframer: Deframer, keys: SessionKeys) -> Result<Conn, ConnectError> {
    let SessionKeys { sealer, opener, resumption } = keys;
    stream.set_read_timeout(None).map_err(ConnectError::Io)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(ConnectError::Io)?;
    // Anything after the hello's answer is already a record.
    deframer.set_max_body(MAX_BODY);
    let now = unix_ms();
    Ok(Conn { sent_ms: now, heard_ms: now, stream, sealer, opener, deframer, resumption })
}

fn open_tcp(server: &str) -> Result<TcpStream, ConnectError> {
    let fail = |source| ConnectError::Connect { server: server.to_string(), source };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for addr in server.to_socket_addrs().map_err(fail)? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(fail(last))
}

fn read_answer(stream: &TcpStream, deframer: &mut Deframer) -> Result<Vec<u8>, ConnectError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut buf = [0u8; 1024];
    loop {
        if let Some(body) = deframer.pop().map_err(ConnectError::Frame)? {
            return Ok(body);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(ConnectError::Io)?;
        match (&*stream).read(&mut buf) {
            Ok(0) => return Err(ConnectError::ClosedEarly),
            Ok(n) => deframer.push(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ConnectError::Timeout)
            }
            Err(e) if closed_by_peer(&e) => return Err(ConnectError::ClosedEarly),
            Err(e) => return Err(ConnectError::Io(e)),
        }
    }
}

fn closed_by_peer(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted)
}

impl Conn {
    /// Seals one message plaintext and writes its record.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(4 + plaintext.len() + 64);
        self.sealer.seal(plaintext, &mut out).map_err(|_| ConnError::Corrupted)?;
        self.sent_ms = unix_ms();
        self.stream.write_all(&out).map_err(|e| if closed_by_peer(&e) { ConnError::Closed } else { ConnError::Io(e) })
    }

    /// Reads what the socket has (call when poll(2) says it is readable); EOF is `Closed`.
    pub fn fill(&mut self) -> Result<(), ConnError> {
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(ConnError::Closed),
            Ok(n) => {
                self.heard_ms = unix_ms();
                self.deframer.push(buf.get(..n).unwrap_or_default());
                Ok(())
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => Ok(()),
            Err(e) if closed_by_peer(&e) => Err(ConnError::Closed),
            Err(e) => Err(ConnError::Io(e)),
        }
    }

    /// The next message plaintext received, if a whole record has arrived.
    pub fn poll_frame(&mut self) -> Result<Option<Vec<u8>>, ConnError> {
        match self.deframer.pop() {
            Ok(None) => Ok(None),
            Ok(Some(body)) => self.opener.open(&body).map(Some).map_err(|_| ConnError::Corrupted),
            Err(_) => Err(ConnError::Corrupted),
        }
    }
}

impl Conn {
    /// When this client last sent a record.
    pub fn sent_ms(&self) -> u64 {
        self.sent_ms
    }

    /// When the server was last heard from.
    pub fn heard_ms(&self) -> u64 {
        self.heard_ms
    }

    /// A `tick` received on this connection, with its secret (PROTOCOL.md §3, resumption).
    pub fn ticket(&self, ticket_id: [u8; 16], expires_ms: u64, ticket: [u8; TICKET_LEN]) -> HeldTicket {
        HeldTicket::received(&self.resumption, ticket_id, expires_ms, ticket)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

#[cfg(test)]
mod tests {
    //! The client's side of a full handshake and of resumption against a
    //! server side built from the library (`sotto::handshake`, `sotto::ticket`)
    //! on a local socket: the ticket a `tick` brings resumes, its secret is
    //! the server's, and a refusal or a close is reported, never a session.

    use std::net::TcpListener;

    use sotto::handshake::ServerConfig;
    use sotto::identity::Signer;
    use sotto::opcodes::ResumptionTicket;
    use sotto::ticket::{TicketContents, TicketKey, REFUSED};
    use sotto::wire::{code, Message, Status};
    use zerocopy::IntoBytes;

    use super::*;

    fn read_frame(stream: &TcpStream) -> Option<Vec<u8>> {
        let mut d = Deframer::new(MAX_BODY);
        let mut buf = [0u8; 4096];
        loop {
            if let Some(body) = d.pop().ok()? {
                return Some(body);
            }
            let n = (&*stream).read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            d.push(&buf[..n]);
        }
    }

    /// A well-formed message to carry over the record layer.
    fn heartbeat(id: u64) -> sotto::opcodes::Heartbeat {
        sotto::opcodes::Heartbeat::request(id, 1)
    }

    fn next_record(conn: &mut Conn) -> Vec<u8> {
        loop {
            if let Some(pt) = conn.poll_frame().expect("a record that opens") {
                return pt;
            }
            conn.fill().expect("the server still talks");
        }
    }

    #[test]
    fn an_unreachable_round_says_each_address_and_why_and_one_address_as_before() {
        let refused = || ConnectError::Connect {
            server: "127.0.0.1:1".into(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
        };
        let mut one = Unreachable::default();
        one.push("127.0.0.1:1", refused());
        assert_eq!(one.to_string(), "cannot connect to 127.0.0.1:1: refused");
        let mut one = Unreachable::default();
        one.push("h:2", ConnectError::ClosedEarly);
        assert_eq!(one.to_string(), ConnectError::ClosedEarly.to_string());
        let mut three = Unreachable::default();
        three.push("127.0.0.1:1", refused());
        three.push("h:2", ConnectError::Timeout);
        three.push("[::1]:3", ConnectError::Handshake(HandshakeError::Unverified));
        assert_eq!(
            three.to_string(),
            "no server could be reached (tried 3): 127.0.0.1:1: cannot connect: refused; \
             h:2: no handshake answer from the server within 10 s; [::1]:3: server identity could not be verified"
        );
    }

    #[test]
    fn the_first_node_that_answers_is_used_after_those_that_do_not() {
        // Nothing listens on a port just released; then a listener that closes at once.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let closing = TcpListener::bind("127.0.0.1:0").unwrap();
        let closing_addr = closing.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (s, _) = closing.accept().unwrap();
            let _ = read_frame(&s);
        });
        let servers = Servers::parse(&format!("{dead},{closing_addr}")).unwrap();
        let Err(e) = connect_first(&servers) else { panic!("no node completes a handshake") };
        let said = e.to_string();
        assert!(said.starts_with("no server could be reached (tried 2): "), "{said}");
        assert!(said.contains(&format!("{dead}: cannot connect: ")), "{said}");
        assert!(said.contains(&format!("{closing_addr}: server closed the connection during the handshake")), "{said}");
        t.join().unwrap();
    }

    #[test]
    fn a_ticket_from_a_full_handshake_resumes_once_and_a_refusal_or_a_close_gives_no_session() {
        let Ok(pem) = std::fs::read_to_string(sotto::build_info::BUILD_KEY_PATH) else {
            // A release build's private key is not on this machine: nothing to play the server with.
            let dev = sotto::build_info::DEV_KEYS;
            assert!(!dev, "development builds keep their key beside the build");
            return;
        };
        let signer = Signer::from_pkcs8_pem(&pem).unwrap();
        let scfg = ServerConfig::built_in();
        let key = TicketKey::generate(7, 1_000);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            // 1: a full handshake, then a tick.
            let (s, _) = listener.accept().unwrap();
            let ch = read_frame(&s).unwrap();
            let (sh, mut keys) = handshake::server_hello(&scfg, &signer, &ch).unwrap();
            (&s).write_all(&sh).unwrap();
            let ticket_id = [9u8; 16];
            let contents = TicketContents {
                uid: 42,
                issued_ms: 1,
                expires_ms: 2,
                generation: 0,
                ticket_id,
                secret: keys.resumption.ticket_secret(&ticket_id),
            };
            let mut t = ResumptionTicket::new(Status::Ok, code::OK, 0, 1);
            t.ticket_id = ticket_id;
            t.expires.set(2);
            t.ticket = key.seal(&contents);
            let mut out = Vec::new();
            keys.sealer.seal(t.as_bytes(), &mut out).unwrap();
            (&s).write_all(&out).unwrap();
            // 2: the ticket resumes; a record goes both ways.
            let (s2, _) = listener.accept().unwrap();
            let rh = read_frame(&s2).unwrap();
            let first = rh.clone();
            assert!(ticket::is_resume_hello(&rh));
            assert_eq!(ticket::check_resume_hello(&scfg, &rh), ticket::ResumeVerdict::Check);
            let opened = ticket::open_ticket(std::slice::from_ref(&key), ticket::hello_ticket(&rh).unwrap()).unwrap();
            assert!(ticket::binder_verifies(&rh, &opened.secret), "the client derived the server's secret");
            let (sr, mut rkeys) = ticket::server_resume(&scfg, &rh, &opened.secret).unwrap();
            (&s2).write_all(&sr).unwrap();
            let mut out = Vec::new();
            rkeys.sealer.seal(heartbeat(7).as_bytes(), &mut out).unwrap();
            (&s2).write_all(&out).unwrap();
            let up = read_frame(&s2).unwrap();
            assert_eq!(rkeys.opener.open(&up).unwrap(), heartbeat(8).as_bytes());
            // 3: the same ticket again: refused (the server's single-use policy).
            let (s3, _) = listener.accept().unwrap();
            let again = read_frame(&s3).unwrap();
            assert_eq!(ticket::hello_ticket(&again), ticket::hello_ticket(&first));
            (&s3).write_all(&ticket::refusal(&scfg, REFUSED)).unwrap();
            // 4: closed without an answer.
            let (s4, _) = listener.accept().unwrap();
            assert!(read_frame(&s4).is_some());
            drop(s4);
        });

        let mut conn = connect(&addr).unwrap();
        let pt = next_record(&mut conn);
        let t = sotto::wire::decode::<ResumptionTicket>(&pt).unwrap();
        let held = conn.ticket(t.ticket_id, t.expires.get(), t.ticket);
        assert_eq!(held.expires_ms, 2);

        let mut resumed = resume(dial(&addr).unwrap(), &held).unwrap();
        assert_eq!(next_record(&mut resumed), heartbeat(7).as_bytes());
        resumed.send(heartbeat(8).as_bytes()).unwrap();

        match resume(dial(&addr).unwrap(), &held) {
            Err(ResumeFailed::Answer(ResumeError::Refused)) => {}
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
        match resume(dial(&addr).unwrap(), &held) {
            Err(ResumeFailed::Connect(ConnectError::ClosedEarly)) => {}
            other => panic!("expected a close, got {:?}", other.err()),
        }
        server.join().unwrap();
    }

    #[test]
    fn a_port_nothing_listens_on_is_a_refusal_and_other_failures_are_not() {
        // Bound and released: nothing listens there, the kernel answers with a reset.
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let e = dial(&addr.to_string()).err().expect("nothing listens");
        assert!(e.refused(), "{e}");
        let listening = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(dial(&listening.local_addr().unwrap().to_string()).is_ok());
        for other in [
            ConnectError::Timeout,
            ConnectError::ClosedEarly,
            ConnectError::Io(io::ErrorKind::ConnectionRefused.into()),
        ] {
            assert!(!other.refused(), "{other}: not a refused TCP connection");
        }
    }
}
