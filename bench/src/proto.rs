//! A sotto session over a blocking socket, built on the library: the same
//! handshake, record layer and messages as the real client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sotto::frame::Deframer;
use sotto::handshake::{self, ClientConfig, SessionKeys, SERVER_HELLO_LEN};
use sotto::identity::Signer;
use sotto::opcodes::{Login, Passphrase, Register, ResumptionTicket, StatusReply, CNNT, STAT, TICK};
use sotto::record::{Opener, Sealer, MAX_BODY};
use sotto::ticket::{self, HeldTicket, ResumeError, ResumptionMaster, SERVER_RESUME_LEN, TICKET_LEN};
use sotto::wire::{self, code, Message};
use zerocopy::{FromBytes, FromZeros};

/// Every bench account's password and passphrase.
pub const PASSWORD: &str = "bench-password-1";
pub const WORDS: &str = "alpha bravo charlie";

fn err(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

/// Unix time in nanoseconds (what payloads carry).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One established session.
pub struct Session {
    pub stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
    deframer: Deframer,
    out: Vec<u8>,
    buf: Vec<u8>,
    next_id: u64,
    /// The UID after a login.
    pub uid: u64,
    /// Gives the secrets of the tickets this session receives.
    resumption: ResumptionMaster,
}

impl Session {
    /// TCP connect and the handshake (the server signs).
    pub fn connect(addr: SocketAddr, cfg: &ClientConfig) -> io::Result<Session> {
        let mut stream = open(addr)?;
        let (state, hello) = handshake::client_hello(cfg);
        stream.write_all(&hello)?;
        let (body, deframer, buf) = hello_answer(&mut stream, SERVER_HELLO_LEN)?;
        let keys = state.handle_server_hello(cfg, &body).map_err(|e| err(e.to_string()))?;
        Ok(Session::established(stream, keys, deframer, buf))
    }

    /// TCP connect and a resumption with `held` (no signature, no login):
    /// the session once the server's `cnnt` arrived, or why the server did
    /// not resume it.
    pub fn resume(addr: SocketAddr, cfg: &ClientConfig, held: &HeldTicket) -> io::Result<Result<Session, ResumeError>> {
        let mut stream = open(addr)?;
        let (state, hello) = ticket::resume_hello(cfg, held);
        stream.write_all(&hello)?;
        let (body, deframer, buf) = match hello_answer(&mut stream, SERVER_RESUME_LEN) {
            Ok(answer) => answer,
            // A refusal may close before the answer is read.
            Err(_) => return Ok(Err(ResumeError::Refused)),
        };
        let keys = match state.handle_answer(cfg, &body) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(e)),
        };
        let mut s = Session::established(stream, keys, deframer, buf);
        loop {
            let m = s.recv(Some(Duration::from_secs(60)))?.ok_or_else(|| err("no cnnt within 60 s of resuming"))?;
            if wire::header(&m).map(|h| h.opcode.get()) == Ok(CNNT) {
                s.uid = sotto::opcodes::Connected::read_from_bytes(&m).map(|c| c.uid.get()).unwrap_or(0);
                return Ok(Ok(s));
            }
        }
    }

    fn established(stream: TcpStream, keys: SessionKeys, mut deframer: Deframer, buf: Vec<u8>) -> Session {
        deframer.set_max_body(MAX_BODY);
        Session {
            stream,
            sealer: keys.sealer,
            opener: keys.opener,
            deframer,
            out: Vec::new(),
            buf,
            next_id: 1,
            uid: 0,
            resumption: keys.resumption,
        }
    }

    /// Waits for the next `tick` (after a login or a resumption) and keeps its ticket.
    pub fn take_ticket(&mut self, timeout: Duration) -> io::Result<HeldTicket> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv(Some(left))?.ok_or_else(|| err("no resumption ticket (tick) from the server"))?;
            if wire::header(&m).map(|h| h.opcode.get()) == Ok(TICK) {
                let t = ResumptionTicket::read_from_bytes(&m).map_err(|_| err("bad tick"))?;
                let ticket: [u8; TICKET_LEN] = t.ticket;
                return Ok(HeldTicket::received(&self.resumption, t.ticket_id, t.expires.get(), ticket));
            }
        }
    }

    /// Seals `m` (with a fresh msg_id, returned) into the output buffer.
    pub fn queue<M: Message>(&mut self, mut m: M) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let ts = m.header().timestamp;
        *m.header_mut() = *M::request(id, 0).header();
        m.header_mut().timestamp = ts;
        // NOTE: messages are whole blocks by construction; sealing cannot fail.
        let _ = self.sealer.seal(m.as_bytes(), &mut self.out);
        id
    }

    /// Seals `m` with a chosen msg_id (DM ids).
    pub fn queue_with_id<M: Message>(&mut self, mut m: M, id: u64) {
        m.header_mut().msg_id.set(id);
        m.header_mut().status = 0;
        m.header_mut().opcode.set(M::OPCODE);
        let _ = self.sealer.seal(m.as_bytes(), &mut self.out);
    }

    /// Bytes waiting in the output buffer.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Writes the output buffer out.
    pub fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// Makes the socket non-blocking, for [`crate::engine`].
    pub fn set_nonblocking(&mut self) -> io::Result<()> {
        self.stream.set_nonblocking(true)
    }

    /// Non-blocking: reads what is there into the deframer; Ok(false) when
    /// nothing was, an error when the server closed.
    pub fn fill(&mut self) -> io::Result<bool> {
        match self.stream.read(&mut self.buf) {
            Ok(0) => Err(err("the server closed the connection")),
            Ok(n) => {
                self.deframer.push(&self.buf[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Non-blocking: reads what is there without keeping it (frames are only
    /// counted by the caller); returns the bytes.
    pub fn read_raw(&mut self) -> io::Result<&[u8]> {
        match self.stream.read(&mut self.buf) {
            Ok(0) => Err(err("the server closed the connection")),
            Ok(n) => Ok(&self.buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(&[]),
            Err(e) => Err(e),
        }
    }

    /// The next buffered message, decrypted, without reading the socket.
    pub fn pop(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.deframer.pop().map_err(|e| err(format!("{e:?}")))? {
            Some(body) => self.opener.open(&body).map(Some).map_err(|_| err("bad record from the server")),
            None => Ok(None),
        }
    }

    /// Non-blocking: writes what the socket takes of the output buffer.
    pub fn flush_some(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(err("write returned 0")),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next message, waiting at most `timeout` (None: forever); Ok(None) on timeout.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<Vec<u8>>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(body) = self.deframer.pop().map_err(|e| err(format!("{e:?}")))? {
                return self.opener.open(&body).map(Some).map_err(|_| err("bad record from the server"));
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                self.stream.set_read_timeout(Some(left))?;
            } else {
                self.stream.set_read_timeout(None)?;
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(err("the server closed the connection")),
                Ok(n) => self.deframer.push(&self.buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `m` and waits for its `stat`, skipping everything else; errors on a non-2xx code.
    pub fn call<M: Message>(&mut self, m: M) -> io::Result<StatusReply> {
        let id = self.queue(m);
        self.flush()?;
        self.wait_stat(id)
    }

    /// The stat answering `id`.
    pub fn wait_stat(&mut self, id: u64) -> io::Result<StatusReply> {
        loop {
            let m = self.recv(Some(Duration::from_secs(60)))?.ok_or_else(|| err("no answer within 60 s"))?;
            let h = wire::header(&m).map_err(|_| err("short message"))?;
            if h.opcode.get() == STAT && h.msg_id.get() == id {
                let st = StatusReply::read_from_bytes(&m).map_err(|_| err("bad stat"))?;
                if st.hdr.code.get() / 100 != 2 {
                    return Err(err(format!("{} {}", st.hdr.code.get(), st.reason().unwrap_or("?"))));
                }
                return Ok(st);
            }
        }
    }

    /// Logs in (password, then passphrase).
    pub fn login(&mut self, user: &str) -> io::Result<()> {
        let mut l = Login::new_zeroed();
        l.set_username(user).map_err(|_| err("name"))?;
        l.auth_secret = bench_secret(PASSWORD);
        self.call(l)?;
        let mut p = Passphrase::new_zeroed();
        p.pass_secret = bench_secret(WORDS);
        self.queue(p);
        self.flush()?;
        loop {
            let m = self.recv(Some(Duration::from_secs(60)))?.ok_or_else(|| err("no cnnt within 60 s"))?;
            let h = wire::header(&m).map_err(|_| err("short message"))?;
            if h.opcode.get() == CNNT {
                self.uid = sotto::opcodes::Connected::read_from_bytes(&m).map(|c| c.uid.get()).unwrap_or(0);
                return Ok(());
            }
            if h.opcode.get() == STAT && h.code.get() != code::OK {
                return Err(err(format!("login refused: {}", h.code.get())));
            }
        }
    }
}

/// A TCP connection to `addr` for a handshake.
fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    // A server out of descriptors stops accepting: the handshake times out, no hang.
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// The server's hello (at most `max` bytes): its body, the deframer and the read buffer.
fn hello_answer(stream: &mut TcpStream, max: usize) -> io::Result<(Vec<u8>, Deframer, Vec<u8>)> {
    let mut deframer = Deframer::new(max);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(f) = deframer.pop().map_err(|e| err(format!("{e:?}")))? {
            return Ok((f, deframer, buf));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(err("closed during the handshake"));
        }
        deframer.push(&buf[..n]);
    }
}

/// The 32-byte secret a bench account sends for `auth` and `pass`. A real
/// client derives it with argon2id on its side (PROTOCOL.md §5); the bench is
/// its own client and measures the server, so a cheap stand-in serves.
fn bench_secret(s: &str) -> [u8; 32] {
    sotto::crypto::sha256(&[b"sotto bench secret\0", s.as_bytes()])
}

/// One identity key for every bench account (the server only checks its form and the binding signature).
pub struct BenchIdentity {
    signer: Signer,
    id_pub: [u8; 256],
}

impl BenchIdentity {
    pub fn new() -> BenchIdentity {
        let (der, id_pub) = sotto::identity::generate().expect("RSA key generation");
        BenchIdentity { signer: Signer::from_pkcs8_der(&der).expect("fresh key"), id_pub }
    }

    /// Registers `user` over a fresh connection.
    pub fn register(&self, addr: SocketAddr, cfg: &ClientConfig, user: &str) -> io::Result<()> {
        let mut s = Session::connect(addr, cfg)?;
        let mut r = Register::new_zeroed();
        r.set_username(user).map_err(|_| err("name"))?;
        r.auth_secret = bench_secret(PASSWORD);
        r.pass_secret = bench_secret(WORDS);
        r.id_pub = self.id_pub;
        r.enc_pub = x25519_public(user);
        r.uid.set(u64::from_be_bytes(sotto::crypto::random()).max(1));
        let binding = sotto::account::enc_key_binding(&sotto::account::deployment_id(), r.uid.get(), user, &r.enc_pub);
        r.enc_sig = self.signer.sign(&binding).map_err(|e| err(format!("sign: {e}")))?;
        s.call(r).map(drop)
    }
}

impl Default for BenchIdentity {
    fn default() -> Self {
        BenchIdentity::new()
    }
}

/// A deterministic stand-in X25519 public key per user (the server stores it, never uses it).
fn x25519_public(user: &str) -> [u8; 32] {
    sotto::crypto::sha256(&[b"bench enc key", user.as_bytes()])
}
