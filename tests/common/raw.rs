//! A protocol client built on the library alone, for tests that must send
//! what the real client never would: chosen source addresses, bare frames,
//! replayed records, requests in the wrong state or of the wrong size.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use sotto::frame::Deframer;
use sotto::handshake::{self, ClientConfig, SERVER_HELLO_LEN};
use sotto::opcodes::{Heartbeat, Login, Passphrase, StatusReply, CNNT, PONG, STAT};
use sotto::record::{Opener, Sealer, MAX_BODY};
use sotto::wire::{self, Message};
use zerocopy::{FromBytes, FromZeros};

/// How long a raw client waits for one frame.
pub const RAW_WAIT: Duration = Duration::from_secs(10);

/// A TCP connection to `addr` from the loopback address `src` (any of
/// 127.0.0.0/8), so that an attacker is not counted against the per-address
/// limits of the legitimate clients on 127.0.0.1. `rcvbuf`, when given, is set
/// before connecting (a small receive window makes a non-reading client fill
/// the server's buffers quickly).
pub fn connect_from(src: Ipv4Addr, addr: &str, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    let dest: SocketAddrV4 = addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    if let Some(n) = rcvbuf {
        socket::setsockopt(&fd, sockopt::RcvBuf, &n)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))?;
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(dest))?;
    Ok(TcpStream::from(fd))
}

/// True when the peer closes `s` (EOF or reset) within `within`; what it sends
/// before that is read and dropped.
pub fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// An established session: the record keys of both directions and a deframer.
pub struct Raw {
    pub stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
    deframer: Deframer,
    next_id: u64,
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Reads one length-prefixed frame from `s`, within [`RAW_WAIT`].
pub fn read_frame(s: &mut TcpStream, d: &mut Deframer) -> Option<Vec<u8>> {
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + RAW_WAIT;
    loop {
        match d.pop() {
            Ok(Some(f)) => return Some(f),
            Ok(None) => {}
            Err(_) => return None,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => d.push(&buf[..n]),
        }
    }
}

impl Raw {
    /// Runs the handshake on `stream` with the client's built-in configuration.
    pub fn handshake(mut stream: TcpStream) -> io::Result<Raw> {
        let cfg = ClientConfig::built_in().unwrap();
        let (state, hello) = handshake::client_hello(&cfg);
        stream.write_all(&hello)?;
        let mut deframer = Deframer::new(SERVER_HELLO_LEN);
        let body = read_frame(&mut stream, &mut deframer)
            .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "no ServerHello"))?;
        let keys = state
            .handle_server_hello(&cfg, &body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        deframer.set_max_body(MAX_BODY);
        Ok(Raw { stream, sealer: keys.sealer, opener: keys.opener, deframer, next_id: 1 })
    }

    /// Connects from 127.0.0.1 and runs the handshake.
    pub fn connect(addr: &str) -> Raw {
        Raw::handshake(TcpStream::connect(addr).unwrap()).expect("handshake")
    }

    /// The framed record for `plaintext` (whole AES blocks), advancing the send sequence.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.sealer.seal(plaintext, &mut out).expect("whole blocks");
        out
    }

    /// Seals and sends `plaintext`.
    pub fn send_plain(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let rec = self.seal(plaintext);
        self.stream.write_all(&rec)
    }

    /// Sends `m` as a request with a fresh message id, which it returns.
    pub fn request<M: Message>(&mut self, mut m: M) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        *m.header_mut() = *M::request(id, now_ms()).header();
        self.send_plain(m.as_bytes()).expect("send");
        id
    }

    /// The next message from the server, or None at EOF, on a bad record, or after [`RAW_WAIT`].
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let body = read_frame(&mut self.stream, &mut self.deframer)?;
        self.opener.open(&body).ok()
    }

    /// The `stat` answering `msg_id`, skipping events and other answers.
    pub fn stat_for(&mut self, msg_id: u64) -> Option<StatusReply> {
        loop {
            let m = self.recv()?;
            let h = wire::header(&m).ok()?;
            if h.opcode.get() == STAT && h.msg_id.get() == msg_id {
                return StatusReply::read_from_bytes(&m).ok();
            }
        }
    }

    /// The first message with opcode `op`, skipping others.
    pub fn wait_opcode(&mut self, op: u32) -> Option<Vec<u8>> {
        loop {
            let m = self.recv()?;
            if wire::header(&m).ok()?.opcode.get() == op {
                return Some(m);
            }
        }
    }

    /// A heartbeat answered by a pong: the session is alive.
    pub fn alive(&mut self) -> bool {
        self.request(Heartbeat::new_zeroed());
        self.wait_opcode(PONG).is_some()
    }

    /// Before a login: a heartbeat is answered (with a 401), so the session is alive.
    pub fn alive_pre_auth(&mut self) -> bool {
        let id = self.request(Heartbeat::new_zeroed());
        self.stat_for(id).is_some()
    }

    /// Logs in an existing account (password, then passphrase).
    pub fn login(&mut self, user: &str, password: &str, words: &str) {
        let mut l = Login::new_zeroed();
        l.set_username(user).unwrap();
        l.auth_secret = *sotto::account::auth_secret(user, password);
        let id = self.request(l);
        let st = self.stat_for(id).expect("answer to auth");
        assert_eq!(st.hdr.code.get(), sotto::wire::code::PENDING, "auth: {:?}", st.reason());
        let mut p = Passphrase::new_zeroed();
        let words = sotto::account::normalize_passphrase(words).unwrap();
        p.pass_secret = *sotto::account::pass_secret(user, &words);
        self.request(p);
        assert!(self.wait_opcode(CNNT).is_some(), "no cnnt after the passphrase");
        // The prekey state follows every login (PROTOCOL.md §7); taken here so
        // that a test's next read is the answer to its own request.
        assert!(self.wait_opcode(sotto::opcodes::PKST).is_some(), "no pkst after cnnt");
    }
}
