//! The handshake against the real server, driven through the library: a
//! client with another server key, another deployment key or another opcode
//! table is refused; and the real client binary refuses a server it cannot verify.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{Client, Server, TempDir};
use sotto::frame::Deframer;
use sotto::handshake::{self, ClientConfig, HandshakeError, ServerConfig, SERVER_HELLO_LEN};
use sotto::identity::Signer;

fn read_frame(s: &mut TcpStream, max: usize) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut d = Deframer::new(max);
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = d.pop() {
            return Some(f);
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => d.push(&buf[..n]),
        }
    }
}

fn try_handshake(addr: &str, cfg: &ClientConfig) -> Result<handshake::SessionKeys, Option<HandshakeError>> {
    let mut s = TcpStream::connect(addr).unwrap();
    let (state, hello) = handshake::client_hello(cfg);
    s.write_all(&hello).unwrap();
    let body = read_frame(&mut s, SERVER_HELLO_LEN).ok_or(None)?;
    state.handle_server_hello(cfg, &body).map_err(Some)
}

fn other_key() -> Signer {
    Signer::from_pkcs8_der(&sotto::identity::generate().unwrap().0).unwrap()
}

#[test]
fn built_in_config_completes_the_handshake() {
    let dir = TempDir::new("hs-ok");
    let server = Server::start(&dir.join("data"));
    assert!(try_handshake(&server.addr, &ClientConfig::built_in().unwrap()).is_ok());
}

#[test]
fn client_trusting_another_server_key_is_refused() {
    let dir = TempDir::new("hs-key");
    let server = Server::start(&dir.join("data"));
    let mut cfg = ClientConfig::built_in().unwrap();
    cfg.server_keys = vec![other_key().public().clone()];
    match try_handshake(&server.addr, &cfg) {
        Err(Some(e @ HandshakeError::Unverified)) => assert_eq!(e.to_string(), "server identity could not be verified"),
        other => panic!("expected Unverified, got {:?}", other.err()),
    }
}

#[test]
fn client_with_another_deployment_key_gets_silence() {
    let dir = TempDir::new("hs-deploy");
    let server = Server::start(&dir.join("data"));
    let mut cfg = ClientConfig::built_in().unwrap();
    cfg.deployment_key = [0x42; 32];
    assert!(matches!(try_handshake(&server.addr, &cfg), Err(None)), "closed without an answer");
}

#[test]
fn client_with_another_opcode_table_gets_protocol_mismatch() {
    let dir = TempDir::new("hs-table");
    let server = Server::start(&dir.join("data"));
    let mut cfg = ClientConfig::built_in().unwrap();
    cfg.build.table_hash[0] ^= 1;
    cfg.build.build_time -= 1;
    match try_handshake(&server.addr, &cfg) {
        Err(Some(e @ HandshakeError::Mismatch { older: handshake::Older::Client, .. })) => {
            assert!(e.to_string().contains("protocol mismatch: this client is older"), "{e}")
        }
        other => panic!("expected Mismatch, got {:?}", other.err()),
    }
}

/// A fake server with the right deployment key but another RSA key: the real
/// client must print an error line, send nothing after its hello, and exit non-zero.
#[test]
fn batch_client_refuses_an_unverifiable_server() {
    let dir = TempDir::new("hs-fake");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let hello = read_frame(&mut s, handshake::CLIENT_HELLO_LEN).unwrap();
        let (frame, _) = handshake::server_hello(&ServerConfig::built_in(), &other_key(), &hello).unwrap();
        s.write_all(&frame).unwrap();
        // Anything the client sends after this would be a leak.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let mut c = Client::start(&addr, &dir.join("home"));
    c.send("/login alice password123 red green blue");
    let v = c.next().expect("an error line");
    assert_eq!((v["type"].as_str(), v["cmd"].as_str()), (Some("error"), Some("connect")), "{v}");
    assert_eq!(v["message"], "server identity could not be verified");
    assert!(!c.finish().success(), "non-zero exit");
    assert!(fake.join().unwrap().is_empty(), "client sent nothing after the failed verification");
}

/// A man in the middle answers with an unsigned "protocol mismatch" that
/// claims a newer server: the real client says only that it could not verify
/// the answer (not "get a current client"), sends nothing more and exits non-zero.
#[test]
fn batch_client_does_not_believe_an_unsigned_mismatch() {
    use sotto::opcodes::{ServerHello, MAGIC};
    use zerocopy::{FromZeros, IntoBytes};
    let dir = TempDir::new("hs-forged-mismatch");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_frame(&mut s, handshake::CLIENT_HELLO_LEN).unwrap();
        let mut sh = ServerHello::new_zeroed();
        sh.magic = MAGIC;
        sh.version.set(sotto::opcodes::PROTOCOL_VERSION + 1);
        sh.status.set(handshake::STATUS_MISMATCH);
        sh.build_time.set(u64::MAX / 2);
        let mut frame = Vec::new();
        sotto::frame::encode(sh.as_bytes(), &mut frame);
        s.write_all(&frame).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let mut c = Client::start(&addr, &dir.join("home"));
    c.send("/login alice password123 red green blue");
    let v = c.next().expect("an error line");
    assert_eq!((v["type"].as_str(), v["cmd"].as_str()), (Some("error"), Some("connect")), "{v}");
    assert_eq!(v["message"], "the server's answer could not be verified");
    assert!(!c.finish().success(), "non-zero exit");
    assert!(fake.join().unwrap().is_empty(), "client sent nothing after the unverified answer");
}
