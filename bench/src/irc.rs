//! IRC client for the peer servers, plain and TLS (RFC 2812 lines over TCP, TLS 1.3 by rustls).
//! Invariant: the socket is always non-blocking; a blocking call waits in `poll(2)` and never
//! past its deadline, and reads whatever arrives meanwhile (answering `PING`s) so that neither
//! side can stall the other. Line parsing (`line`) is pure and touches no I/O.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

mod line;
use line::{channel_name, check_word, classify, Incoming, ACK_PREFIX};

/// Longest line accepted from a server: RFC 2812's 512 bytes plus IRCv3 tags (8191), with room.
pub const MAX_LINE: usize = 8192 + 512;
/// Plaintext per TLS record this client sends (see `TlsTarget::from_der`).
pub const MAX_RECORD_PLAINTEXT: usize = 2048;
/// How long connecting, registering, joining or flushing may take before `TimedOut`.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffered commands past this size are written out at once, without waiting for `flush`.
const AUTO_FLUSH: usize = 64 * 1024;

/// A TLS server to connect to: a shared client configuration that trusts exactly one certificate.
#[derive(Clone)]
pub struct TlsTarget {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsTarget {
    /// Trusts only the (self-signed, `localhost`) certificate in the PEM file `cert`; TLS 1.3
    /// with TLS13_AES_128_GCM_SHA256 only, no session resumption (every handshake is a full
    /// one with the server's signature), records of at most 2 KiB of plaintext.
    pub fn from_cert_file(cert: &Path) -> io::Result<TlsTarget> {
        let der = CertificateDer::from_pem_file(cert)
            .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("{}: {e}", cert.display())))?;
        TlsTarget::from_der(der)
    }

    /// As [`TlsTarget::from_cert_file`], from the certificate's DER bytes.
    pub fn from_der(cert: CertificateDer<'static>) -> io::Result<TlsTarget> {
        let mut roots = RootCertStore::empty();
        roots.add(cert).map_err(invalid_data)?;
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(invalid_data)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        // ngircd reads 2048 bytes of plaintext per readable event and leaves the rest of a
        // larger record inside GnuTLS until the client sends again: records no larger than that.
        config.max_fragment_size = Some(MAX_RECORD_PLAINTEXT + 5);
        Ok(TlsTarget { config: Arc::new(config), name: ServerName::try_from("localhost").map_err(invalid_data)? })
    }

    /// The shared rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

/// What [`Irc::poll_event`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The text of a `PRIVMSG` to a channel, from another client.
    Message(String),
    /// The token of a `PONG` answering [`Irc::ping`].
    Pong(String),
    /// `001` after [`Irc::start_register`]: registered.
    Registered,
    /// An error numeric (4xx, 5xx) or `ERROR`: the whole line.
    Refusal(String),
}

/// One registered (or registering) IRC connection.
pub struct Irc {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
    nick: String,
    /// Received bytes; `rbuf[rpos..]` is not parsed yet.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Commands not yet written; `wbuf[wpos..]` is pending.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Received and not yet handed out; unbounded, so a member that never reads keeps them all.
    msgs: VecDeque<String>,
    pongs: VecDeque<String>,
    acks: Acks,
    refusals: u64,
    last_refusal: Option<String>,
    quick_ack: bool,
}

/// Opens a connection, does the TLS handshake if `tls` is given and registers as `nick`.
pub fn connect(addr: SocketAddr, tls: Option<&TlsTarget>, nick: &str) -> io::Result<Irc> {
    let mut irc = Irc::open(addr, tls)?;
    irc.register(nick)?;
    Ok(irc)
}

/// Opens and registers `n` connections named `{prefix}{i}` (in that order), keeping at most
/// `in_flight` opened but not yet registered (see `peers::Kind::connect_in_flight`).
pub fn connect_many(
    addr: SocketAddr,
    tls: Option<&TlsTarget>,
    prefix: &str,
    n: usize,
    in_flight: usize,
) -> io::Result<Vec<Irc>> {
    let mut done: Vec<Option<Irc>> = (0..n).map(|_| None).collect();
    let mut pending: Vec<(usize, Irc)> = Vec::new();
    let mut next = 0;
    let mut deadline = Instant::now() + STEP_TIMEOUT;
    while next < n || !pending.is_empty() {
        while next < n && pending.len() < in_flight.max(1) {
            let mut irc = Irc::open(addr, tls)?;
            irc.start_register(&format!("{prefix}{next}"))?;
            pending.push((next, irc));
            next += 1;
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = pending.iter().map(|(_, c)| PollFd::new(c.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect()
        };
        let mut progress = false;
        let mut still = Vec::with_capacity(pending.len());
        for ((i, mut irc), is_ready) in pending.drain(..).zip(ready) {
            if is_ready && irc.poll_registered()? {
                if let Some(slot) = done.get_mut(i) {
                    *slot = Some(irc);
                }
                progress = true;
            } else {
                still.push((i, irc));
            }
        }
        pending = still;
        if progress {
            deadline = Instant::now() + STEP_TIMEOUT;
        } else if Instant::now() > deadline {
            return Err(timed_out("registrations (connect_many)"));
        }
    }
    Ok(done.into_iter().flatten().collect())
}

impl Irc {
    /// TCP connect (TCP_NODELAY) and, with `tls`, the whole TLS handshake; no IRC yet.
    pub fn open(addr: SocketAddr, tls: Option<&TlsTarget>) -> io::Result<Irc> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let tcp = TcpStream::connect_timeout(&addr, STEP_TIMEOUT)?;
        tcp.set_nodelay(true)?;
        tcp.set_nonblocking(true)?;
        let tls = match tls {
            None => None,
            Some(t) => {
                let mut conn = ClientConnection::new(t.config.clone(), t.name.clone()).map_err(invalid_data)?;
                // Pipelined bursts (W6) are queued whole; `wbuf` bounds nothing either.
                conn.set_buffer_limit(None);
                Some(Box::new(conn))
            }
        };
        let mut irc = Irc {
            tcp,
            tls,
            nick: String::new(),
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            msgs: VecDeque::new(),
            pongs: VecDeque::new(),
            acks: Acks::default(),
            refusals: 0,
            last_refusal: None,
            quick_ack: true,
        };
        irc.arm_quick_ack()?;
        irc.handshake(deadline)?;
        Ok(irc)
    }

    /// Sends `NICK` and `USER` and returns once the server's `001` arrives.
    pub fn register(&mut self, nick: &str) -> io::Result<()> {
        self.start_register(nick)?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match self.next_incoming(deadline)? {
                Some(Noted::Welcome) => return Ok(()),
                Some(Noted::Refusal { line, .. }) => {
                    return Err(io::Error::other(format!("registration refused: {line}")))
                }
                Some(_) => {}
                None => return Err(timed_out("registration (001)")),
            }
        }
    }

    /// Sends `NICK` and `USER` without waiting: [`Irc::poll_event`] reports `Registered`.
    /// InspIRCd registers clients once a second, so thousands register at once this way.
    pub fn start_register(&mut self, nick: &str) -> io::Result<()> {
        check_word(nick)?;
        self.nick = nick.to_owned();
        self.queue(format!("NICK {nick}\r\nUSER bench 0 * :sotto-bench\r\n").as_bytes());
        self.write_pending()?;
        Ok(())
    }

    /// Without blocking: whether `001` has arrived; an error if registration was refused.
    fn poll_registered(&mut self) -> io::Result<bool> {
        loop {
            match self.poll_event()? {
                Some(Event::Registered) => return Ok(true),
                Some(Event::Refusal(line)) => return Err(io::Error::other(format!("registration refused: {line}"))),
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }

    /// `JOIN`s `chan` (a leading `#` is added if missing) and returns after the end of `NAMES`.
    pub fn join(&mut self, chan: &str) -> io::Result<()> {
        check_word(chan)?;
        let chan = channel_name(chan);
        self.queue(format!("JOIN {chan}\r\n").as_bytes());
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match self.next_incoming(deadline)? {
                Some(Noted::NamesEnd(c)) if c.eq_ignore_ascii_case(&chan) => return Ok(()),
                Some(Noted::Refusal { about, line }) if about.eq_ignore_ascii_case(&chan) => {
                    return Err(io::Error::other(format!("JOIN {chan} refused: {line}")))
                }
                Some(_) => {}
                None => return Err(timed_out("JOIN (366)")),
            }
        }
    }

    /// Queues `PRIVMSG #chan :text` (a leading `#` is added if missing); [`Irc::flush`] sends.
    /// With a send window (see [`Irc::set_send_window`]) this may wait for the server to read.
    pub fn privmsg(&mut self, chan: &str, text: &str) -> io::Result<()> {
        check_word(chan)?;
        if text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(io::Error::new(ErrorKind::InvalidInput, "text with CR, LF or NUL"));
        }
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(b"PRIVMSG ");
        if !chan.starts_with(['#', '&']) {
            self.wbuf.push(b'#');
        }
        self.wbuf.extend_from_slice(chan.as_bytes());
        self.wbuf.extend_from_slice(b" :");
        self.wbuf.extend_from_slice(text.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
        self.acks.sent += (self.wbuf.len() - start) as u64;
        self.after_queue()
    }

    /// Writes everything queued, reading (and answering `PING`s) meanwhile.
    pub fn flush(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !self.write_pending()? {
            self.wait_and_read(deadline, "flush")?;
        }
        Ok(())
    }

    /// Sends `PING :token` at once (flushing what was queued before it).
    pub fn ping(&mut self, token: &str) -> io::Result<()> {
        check_word(token)?;
        self.queue(format!("PING :{token}\r\n").as_bytes());
        self.flush()
    }

    /// The next channel `PRIVMSG` text from someone else; `None` once `timeout` passes.
    pub fn next_message(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.msgs.pop_front() {
                return Ok(Some(m));
            }
            if self.next_incoming(deadline)?.is_none() {
                return Ok(None);
            }
        }
    }

    /// The token of the next `PONG` answering [`Irc::ping`]; `None` once `timeout` passes.
    pub fn next_pong(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.pongs.pop_front() {
                return Ok(Some(p));
            }
            if self.next_incoming(deadline)?.is_none() {
                return Ok(None);
            }
        }
    }

    /// Returns `true` once the server has read and handled everything sent before (a `PING`
    /// round trip; servers handle a client's lines in order), `false` after `timeout`.
    pub fn sync(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        let target = self.mark();
        while self.acks.acked < target {
            if self.next_incoming(deadline)?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Keeps at most `window` bytes sent but not yet read by the server (`None`: no limit).
    /// InspIRCd needs one (see `peers::Kind::send_window`).
    pub fn set_send_window(&mut self, window: Option<usize>) {
        self.acks.window = window;
    }

    /// Without blocking: the next event already received, or `None` if the socket has nothing.
    /// Also writes out what is queued, as far as the socket takes it.
    pub fn poll_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            if let Some(p) = self.pongs.pop_front() {
                return Ok(Some(Event::Pong(p)));
            }
            if let Some(m) = self.msgs.pop_front() {
                return Ok(Some(Event::Message(m)));
            }
            match self.parse_buffered()? {
                Some(Noted::Welcome) => return Ok(Some(Event::Registered)),
                Some(Noted::Refusal { line, .. }) => return Ok(Some(Event::Refusal(line))),
                Some(_) => continue,
                None => {}
            }
            match self.read_some() {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.write_pending()?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Acknowledge every segment at once (TCP_QUICKACK, set again after each read: Linux
    /// clears it); on by default. Neither peer sets TCP_NODELAY (sottod does), so without it
    /// Nagle's algorithm there and delayed ACKs here hold the end of a burst back 40 ms.
    pub fn set_quick_ack(&mut self, on: bool) -> io::Result<()> {
        self.quick_ack = on;
        self.arm_quick_ack()
    }

    fn arm_quick_ack(&self) -> io::Result<()> {
        if !self.quick_ack {
            return Ok(());
        }
        let one: libc::c_int = 1;
        // SAFETY: a valid socket, and a pointer to an int with its size, as tcp(7) asks.
        let r = unsafe {
            libc::setsockopt(
                self.tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Whether queued bytes are waiting for the socket to take them.
    pub fn wants_write(&self) -> bool {
        self.wpos < self.wbuf.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Sends `QUIT` and writes it out as far as the socket takes it at once.
    pub fn quit(&mut self) {
        self.queue(b"QUIT :bye\r\n");
        let _ = self.write_pending();
    }

    /// The nickname given to [`Irc::register`].
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Whether this connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Error numerics (4xx, 5xx) and `ERROR`s received outside `register` and `join`.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// The last such line, for diagnostics.
    pub fn last_refusal(&self) -> Option<&str> {
        self.last_refusal.as_deref()
    }

    // ---- internals ----

    fn handshake(&mut self, deadline: Instant) -> io::Result<()> {
        let Irc { tcp, tls, .. } = self;
        let Some(tls) = tls.as_mut() else { return Ok(()) };
        loop {
            while tls.wants_write() {
                match tls.write_tls(tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        wait_fd(tcp.as_fd(), PollFlags::POLLOUT, deadline, "TLS handshake")?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !tls.is_handshaking() {
                return Ok(());
            }
            match tls.read_tls(tcp) {
                Ok(0) => return Err(eof("during the TLS handshake")),
                Ok(_) => {
                    tls.process_new_packets().map_err(invalid_data)?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    wait_fd(tcp.as_fd(), PollFlags::POLLIN, deadline, "TLS handshake")?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends a command, counted for `sync` and the send window.
    fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
        self.acks.sent += bytes.len() as u64;
    }

    fn after_queue(&mut self) -> io::Result<()> {
        let Some(window) = self.acks.window else {
            if self.wbuf.len() - self.wpos >= AUTO_FLUSH {
                self.write_pending()?;
            }
            return Ok(());
        };
        if self.acks.sent - self.acks.last_mark >= (window / 2) as u64 {
            self.mark();
        }
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.acks.sent - self.acks.acked > window as u64 {
            if self.next_incoming(deadline)?.is_none() {
                return Err(timed_out("the server to read (send window)"));
            }
        }
        Ok(())
    }

    /// Queues an acknowledgment `PING`; returns the byte count it acknowledges when answered.
    fn mark(&mut self) -> u64 {
        self.acks.seq += 1;
        let token = format!("PING :{ACK_PREFIX}{}\r\n", self.acks.seq);
        self.queue(token.as_bytes());
        self.acks.last_mark = self.acks.sent;
        self.acks.marks.push_back((self.acks.seq, self.acks.sent));
        self.acks.sent
    }

    /// Reads until something worth noting arrives (messages and pongs go to their queues);
    /// `None` at the deadline.
    fn next_incoming(&mut self, deadline: Instant) -> io::Result<Option<Noted>> {
        loop {
            if let Some(inc) = self.parse_buffered()? {
                return Ok(Some(inc));
            }
            match self.read_some() {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !self.wait(deadline)? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One wait for the socket (readable, or writable while bytes are queued) and the read.
    fn wait_and_read(&mut self, deadline: Instant, what: &str) -> io::Result<()> {
        if !self.wait(deadline)? {
            return Err(timed_out(what));
        }
        loop {
            match self.read_some() {
                Ok(()) => while self.parse_buffered()?.is_some() {},
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls until readable, or writable while something is queued (then writes); `false` at
    /// the deadline.
    fn wait(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut flags = PollFlags::POLLIN;
        if self.wants_write() {
            flags |= PollFlags::POLLOUT;
        }
        match wait_fd(self.tcp.as_fd(), flags, deadline, "") {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => return Ok(false),
            Err(e) => return Err(e),
        }
        if flags.contains(PollFlags::POLLOUT) {
            self.write_pending()?;
        }
        Ok(true)
    }

    /// Handles lines from `rbuf` up to the first worth noting: `PING`s are answered,
    /// acknowledgments counted, messages and pongs queued.
    fn parse_buffered(&mut self) -> io::Result<Option<Noted>> {
        loop {
            let pending = self.rbuf.get(self.rpos..).unwrap_or_default();
            let Some(eol) = pending.iter().position(|&b| b == b'\n') else {
                if pending.len() > MAX_LINE {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("server line longer than {MAX_LINE} bytes"),
                    ));
                }
                return Ok(None);
            };
            let inc = classify(&pending[..eol], &self.nick);
            self.rpos += eol + 1;
            match inc {
                Incoming::Other => {}
                Incoming::Ping(token) => {
                    self.queue(b"PONG :");
                    self.queue(&token);
                    self.queue(b"\r\n");
                    self.write_pending()?;
                }
                Incoming::Ack(seq) => {
                    self.acks.acknowledge(seq);
                    return Ok(Some(Noted::Acked));
                }
                Incoming::Message(m) => {
                    self.msgs.push_back(m);
                    return Ok(Some(Noted::Queued));
                }
                Incoming::Pong(p) => {
                    self.pongs.push_back(p);
                    return Ok(Some(Noted::Queued));
                }
                Incoming::Refusal { about, line } => {
                    self.refusals += 1;
                    self.last_refusal = Some(line.clone());
                    return Ok(Some(Noted::Refusal { about, line }));
                }
                Incoming::Welcome => return Ok(Some(Noted::Welcome)),
                Incoming::NamesEnd(c) => return Ok(Some(Noted::NamesEnd(c))),
            }
        }
    }

    /// Appends what the socket has to `rbuf`; `WouldBlock` if nothing, `UnexpectedEof` at the end.
    fn read_some(&mut self) -> io::Result<()> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
            if self.rbuf.is_empty() && self.rbuf.capacity() > 64 * 1024 {
                self.rbuf = Vec::new();
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = match self.tls.as_mut() {
            None => self.tcp.read(&mut chunk),
            Some(tls) => read_plaintext(tls, &mut self.tcp, &mut chunk),
        };
        match read {
            Ok(0) => Err(self.closed()),
            Ok(n) => {
                self.rbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                self.arm_quick_ack()
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(self.closed()),
            Err(e) => Err(e),
        }
    }

    /// Writes queued bytes as far as the socket takes them; `true` once nothing is left.
    fn write_pending(&mut self) -> io::Result<bool> {
        let Irc { tcp, tls, wbuf, wpos, .. } = self;
        match tls.as_mut() {
            None => {
                while *wpos < wbuf.len() {
                    match tcp.write(&wbuf[*wpos..]) {
                        Ok(0) => return Err(ErrorKind::WriteZero.into()),
                        Ok(n) => *wpos += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            }
            Some(tls) => {
                if *wpos < wbuf.len() {
                    // With no buffer limit rustls takes it all, sealed into records at once.
                    *wpos += tls.writer().write(&wbuf[*wpos..])?;
                }
                while tls.wants_write() {
                    match tls.write_tls(tcp) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                if *wpos < wbuf.len() {
                    return Ok(false);
                }
            }
        }
        wbuf.clear();
        *wpos = 0;
        if wbuf.capacity() > 4 * AUTO_FLUSH {
            *wbuf = Vec::new();
        }
        Ok(true)
    }

    fn closed(&self) -> io::Error {
        match &self.last_refusal {
            Some(line) => eof(&format!("(last refusal: {line})")),
            None => eof(""),
        }
    }
}

/// Plaintext from a TLS connection into `buf`: 0 at the end of the stream, `WouldBlock` when
/// the socket has no complete record.
fn read_plaintext(tls: &mut ClientConnection, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            r => return r,
        }
        if tls.read_tls(tcp)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets().map_err(invalid_data)?;
    }
}

impl AsRawFd for Irc {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl AsFd for Irc {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

/// Bytes sent and acknowledged by `PING`/`PONG` round trips, for `sync` and the send window.
#[derive(Default)]
struct Acks {
    window: Option<usize>,
    /// All command bytes queued so far.
    sent: u64,
    /// Bytes the server is known to have handled.
    acked: u64,
    /// `sent` when the last acknowledgment `PING` was queued.
    last_mark: u64,
    /// Outstanding acknowledgment `PING`s: (sequence number, `sent` after it).
    marks: VecDeque<(u64, u64)>,
    seq: u64,
}

impl Acks {
    fn acknowledge(&mut self, seq: u64) {
        while let Some(&(s, at)) = self.marks.front() {
            if s > seq {
                break;
            }
            self.acked = self.acked.max(at);
            self.marks.pop_front();
        }
    }
}

/// What `parse_buffered` reports to the waiting call.
enum Noted {
    /// A message or pong went to its queue.
    Queued,
    /// An acknowledgment arrived (`Acks::acked` moved).
    Acked,
    Welcome,
    NamesEnd(String),
    Refusal {
        about: String,
        line: String,
    },
}

/// Polls one descriptor until `flags` or an error/hang-up is reported; `TimedOut` at the deadline.
fn wait_fd(fd: BorrowedFd<'_>, flags: PollFlags, deadline: Instant, what: &str) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a wait never ends just before its deadline and spins.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, flags)];
        match poll(&mut fds, timeout) {
            Ok(0) if ms == 0 => return Err(timed_out(what)),
            Ok(0) => {}
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(ErrorKind::TimedOut, format!("timed out waiting for {what}"))
}

fn eof(context: &str) -> io::Error {
    io::Error::new(ErrorKind::UnexpectedEof, format!("server closed the connection {context}"))
}

fn invalid_data(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_move_between_threads() {
        fn send<T: Send>() {}
        send::<Irc>();
        send::<TlsTarget>();
    }

    #[test]
    fn acknowledges_marks_in_order() {
        let mut a = Acks { marks: [(1, 100), (2, 250), (3, 400)].into(), sent: 400, ..Acks::default() };
        a.acknowledge(2);
        assert_eq!(a.acked, 250);
        assert_eq!(a.marks.len(), 1);
        a.acknowledge(1);
        assert_eq!(a.acked, 250);
        a.acknowledge(9);
        assert_eq!((a.acked, a.marks.len()), (400, 0));
    }
}
