//! A recording man in the middle with the server's key, standing for a
//! malicious or compromised server: it terminates the client's handshake
//! (signing with the build key, as sottod does), opens its own session to the
//! real sottod, relays every message both ways, records what the server sends,
//! and can send the client any recorded message again.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sotto::frame::Deframer;
use sotto::handshake::{self, ClientConfig, ServerConfig, CLIENT_HELLO_LEN, SERVER_HELLO_LEN};
use sotto::identity::Signer;
use sotto::record::{Sealer, MAX_BODY};
use sotto::wire;

/// What the client side of a connection needs to be sent a message.
type ToClient = Arc<Mutex<Option<(Sealer, TcpStream)>>>;
/// The latest connection's.
type Latest = Arc<Mutex<ToClient>>;
/// Changes a server message on its way to the client.
pub type Rewrite = fn(&mut [u8]);

/// A running proxy; its threads end with the test process.
pub struct Proxy {
    /// Where clients connect (`127.0.0.1:port`).
    pub addr: String,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    latest: Latest,
}

impl Proxy {
    /// Listens on a free loopback port and relays each connection to `upstream`.
    pub fn start(upstream: &str) -> Proxy {
        Proxy::start_rewriting(upstream, |_| {})
    }

    /// As [`Proxy::start`], and passes every server message through `rewrite` first.
    pub fn start_rewriting(upstream: &str, rewrite: Rewrite) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let latest: Latest = Arc::new(Mutex::new(Arc::new(Mutex::new(None))));
        let pem = std::fs::read_to_string(super::build_key()).unwrap();
        let signer = Arc::new(Signer::from_pkcs8_pem(&pem).unwrap());
        let (upstream, rec, sink) = (upstream.to_owned(), recorded.clone(), latest.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (up, rec, sink, signer) = (upstream.clone(), rec.clone(), sink.clone(), signer.clone());
                std::thread::spawn(move || relay(client, &up, &signer, rec, sink, rewrite));
            }
        });
        Proxy { addr, recorded, latest }
    }

    /// Every recorded server message of opcode `op`, oldest first.
    pub fn recorded(&self, op: u32) -> Vec<Vec<u8>> {
        let all = self.recorded.lock().unwrap();
        all.iter().filter(|m| wire::header(m).is_ok_and(|h| h.opcode.get() == op)).cloned().collect()
    }

    /// Sends `message` to the client of the latest connection, in that session's record layer.
    pub fn inject(&self, message: &[u8]) {
        let current = self.latest.lock().unwrap().clone();
        let mut sink = current.lock().unwrap();
        let (sealer, stream) = sink.as_mut().expect("a client is connected");
        let mut out = Vec::new();
        sealer.seal(message, &mut out).unwrap();
        stream.write_all(&out).unwrap();
    }
}

fn read_frame(s: &mut TcpStream, d: &mut Deframer) -> Option<Vec<u8>> {
    let mut buf = [0u8; 16384];
    loop {
        if let Some(f) = d.pop().ok()? {
            return Some(f);
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => d.push(&buf[..n]),
        }
    }
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    signer: &Signer,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    latest: Latest,
    rewrite: Rewrite,
) {
    // The client's handshake, answered as the server.
    let mut from_client = Deframer::new(CLIENT_HELLO_LEN);
    let Some(hello) = read_frame(&mut client, &mut from_client) else { return };
    let Ok((answer, keys)) = handshake::server_hello(&ServerConfig::built_in(), signer, &hello) else { return };
    if client.write_all(&answer).is_err() {
        return;
    }
    from_client.set_max_body(MAX_BODY);
    // Our own session to the real server.
    let mut server = TcpStream::connect(upstream).unwrap();
    let cfg = ClientConfig::built_in().unwrap();
    let (state, hello) = handshake::client_hello(&cfg);
    server.write_all(&hello).unwrap();
    let mut from_server = Deframer::new(SERVER_HELLO_LEN);
    let body = read_frame(&mut server, &mut from_server).expect("a ServerHello");
    let up = state.handle_server_hello(&cfg, &body).expect("the real server verifies");
    from_server.set_max_body(MAX_BODY);
    let sink: ToClient = Arc::new(Mutex::new(Some((keys.sealer, client.try_clone().unwrap()))));
    *latest.lock().unwrap() = sink.clone();

    // Server to client: open, record, seal again for the client.
    let (mut server_r, mut up_opener) = (server.try_clone().unwrap(), up.opener);
    std::thread::spawn(move || {
        while let Some(body) = read_frame(&mut server_r, &mut from_server) {
            let Ok(mut message) = up_opener.open(&body) else { return };
            rewrite(&mut message);
            recorded.lock().unwrap().push(message.clone());
            let mut guard = sink.lock().unwrap();
            let Some((sealer, stream)) = guard.as_mut() else { return };
            let mut out = Vec::new();
            if sealer.seal(&message, &mut out).is_err() || stream.write_all(&out).is_err() {
                return;
            }
        }
    });
    // Client to server.
    let (mut opener, mut up_sealer) = (keys.opener, up.sealer);
    while let Some(body) = read_frame(&mut client, &mut from_client) {
        let Ok(message) = opener.open(&body) else { return };
        let mut out = Vec::new();
        if up_sealer.seal(&message, &mut out).is_err() || server.write_all(&out).is_err() {
            return;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}
