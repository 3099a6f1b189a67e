//! Two sessions joined by byte buffers, no sockets (quinn's `Pair`): the
//! handshake of DESIGN §4 end to end, its refusals, and the record layer
//! between the keys it produces.

use std::sync::OnceLock;

use sotto::frame::Deframer;
use sotto::handshake::{
    self, AwaitServerHello, BuildIdentity, ClientConfig, HandshakeError, HelloVerdict, Older, ServerConfig,
    SessionKeys, CLIENT_HELLO_LEN, SERVER_HELLO_LEN, STATUS_MISMATCH,
};
use sotto::identity::Signer;
use sotto::opcodes::ServerHello;
use sotto::record::MAX_BODY;
use zerocopy::FromBytes;

const DEPLOYMENT: [u8; 32] = [7; 32];

/// The server's key, generated once per test binary (RSA generation is slow).
fn signer() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(new_signer)
}

/// A second server key, for "signed by someone else".
fn other_signer() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(new_signer)
}

fn new_signer() -> Signer {
    let (der, _) = sotto::identity::generate().expect("RSA key generation");
    Signer::from_pkcs8_der(&der).expect("fresh key loads")
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

/// The body of one framed message (strips and checks the length prefix).
fn body(frame: &[u8]) -> Vec<u8> {
    let mut d = Deframer::new(MAX_BODY);
    d.push(frame);
    let b = d.pop().expect("well-framed").expect("one whole frame");
    assert_eq!(d.buffered(), 0, "exactly one frame");
    b
}

/// A ClientHello that can be rebuilt byte for byte (same secret and nonce).
fn fixed_client_hello(cfg: &ClientConfig) -> (AwaitServerHello, Vec<u8>) {
    handshake::client_hello_with(cfg, &[0x11; 32], &[0x22; 32])
}

/// A full handshake through byte buffers: (client keys, server keys).
fn connect() -> (SessionKeys, SessionKeys) {
    let (ccfg, scfg) = (client_cfg(), server_cfg());
    let (state, ch_frame) = handshake::client_hello(&ccfg);
    let ch = body(&ch_frame);
    assert_eq!(ch.len(), CLIENT_HELLO_LEN);
    assert_eq!(handshake::check_client_hello(&scfg, &ch), HelloVerdict::Accept);
    let (sh_frame, server) = handshake::server_hello(&scfg, signer(), &ch).expect("server signs");
    let sh = body(&sh_frame);
    assert_eq!(sh.len(), SERVER_HELLO_LEN);
    let client = state.handle_server_hello(&ccfg, &sh).unwrap_or_else(|e| panic!("client refused: {e}"));
    (client, server)
}

/// Seals one 32-byte message and returns the record body the peer receives.
fn seal(keys: &mut SessionKeys, byte: u8) -> Vec<u8> {
    let mut frame = Vec::new();
    keys.sealer.seal(&[byte; 32], &mut frame).expect("seal");
    body(&frame)
}

// ---------------------------------------------------------------- success

#[test]
fn handshake_succeeds_and_keys_interoperate_both_ways() {
    let (mut client, mut server) = connect();
    for i in 0..5u8 {
        let up = seal(&mut client, i);
        assert_eq!(server.opener.open(&up).expect("client to server"), [i; 32]);
        let down = seal(&mut server, 0x80 | i);
        assert_eq!(client.opener.open(&down).expect("server to client"), [0x80 | i; 32]);
    }
    // Several in a row in one direction, then the other.
    let ups: Vec<_> = (10..14).map(|i| seal(&mut client, i)).collect();
    let downs: Vec<_> = (20..24).map(|i| seal(&mut server, i)).collect();
    for (i, r) in (10..14).zip(&ups) {
        assert_eq!(server.opener.open(r).unwrap(), [i; 32]);
    }
    for (i, r) in (20..24).zip(&downs) {
        assert_eq!(client.opener.open(r).unwrap(), [i; 32]);
    }
}

#[test]
fn directions_use_different_keys() {
    let (mut client, mut server) = connect();
    // A record the client sealed does not open as if the server had sent it.
    let up = seal(&mut client, 1);
    assert!(client.opener.open(&up).is_err(), "client opened its own record");
    let down = seal(&mut server, 2);
    assert!(server.opener.open(&down).is_err(), "server opened its own record");
}

// ---------------------------------------------------------------- the client refuses

/// The ServerHello a genuine server sends to `fixed_client_hello`.
fn genuine_server_hello(signer: &Signer) -> Vec<u8> {
    let (_, ch_frame) = fixed_client_hello(&client_cfg());
    let (sh_frame, _) = handshake::server_hello(&server_cfg(), signer, &body(&ch_frame)).unwrap();
    body(&sh_frame)
}

/// What the client makes of `sh` in answer to `fixed_client_hello`.
fn client_verdict(cfg: &ClientConfig, sh: &[u8]) -> Result<(), HandshakeError> {
    let (state, _) = fixed_client_hello(cfg);
    state.handle_server_hello(cfg, sh).map(|_| ())
}

#[test]
fn accepts_the_genuine_server_hello() {
    assert_eq!(client_verdict(&client_cfg(), &genuine_server_hello(signer())), Ok(()));
}

#[test]
fn rejects_tampered_server_signature() {
    let sh = genuine_server_hello(signer());
    for at in [128, 200, SERVER_HELLO_LEN - 1] {
        let mut bad = sh.clone();
        bad[at] ^= 0x01;
        assert_eq!(client_verdict(&client_cfg(), &bad), Err(HandshakeError::Unverified), "signature byte {at}");
    }
    let mut zero = sh.clone();
    zero[128..].fill(0);
    assert_eq!(client_verdict(&client_cfg(), &zero), Err(HandshakeError::Unverified), "zero signature");
}

#[test]
fn rejects_server_hello_signed_by_another_server_key() {
    let sh = genuine_server_hello(other_signer());
    let err = client_verdict(&client_cfg(), &sh).unwrap_err();
    assert_eq!(err, HandshakeError::Unverified);
    assert_eq!(err.to_string(), "server identity could not be verified");
    // Trusting the other key as well (rotation) accepts it.
    let mut cfg = client_cfg();
    cfg.server_keys.push(other_signer().public().clone());
    assert_eq!(client_verdict(&cfg, &sh), Ok(()));
}

#[test]
fn rejects_tampered_signed_fields_of_server_hello() {
    // build_id (40), build_time (56), eph_pub (64), nonce (96): all signed.
    let sh = genuine_server_hello(signer());
    for at in (40..128).step_by(3).chain([64, 95, 96, 127]) {
        let mut bad = sh.clone();
        bad[at] ^= 0x40;
        assert_eq!(client_verdict(&client_cfg(), &bad), Err(HandshakeError::Unverified), "byte {at}");
    }
}

#[test]
fn rejects_tampered_server_ephemeral_key() {
    let sh = genuine_server_hello(signer());
    let mut bad = sh.clone();
    bad[64..96].copy_from_slice(&x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9; 32])).to_bytes());
    assert_eq!(client_verdict(&client_cfg(), &bad), Err(HandshakeError::Unverified));
}

#[test]
fn rejects_server_hello_replayed_from_another_handshake() {
    // Signed for one ClientHello, presented to a client that sent another.
    let sh = genuine_server_hello(signer());
    let (state, _) = handshake::client_hello(&client_cfg());
    assert_eq!(state.handle_server_hello(&client_cfg(), &sh).err(), Some(HandshakeError::Unverified));
}

#[test]
fn rejects_malformed_server_hello() {
    let sh = genuine_server_hello(signer());
    assert_eq!(client_verdict(&client_cfg(), &sh[..sh.len() - 1]), Err(HandshakeError::Malformed));
    assert_eq!(client_verdict(&client_cfg(), &[sh.clone(), vec![0]].concat()), Err(HandshakeError::Malformed));
    assert_eq!(client_verdict(&client_cfg(), &[]), Err(HandshakeError::Malformed));
    let mut bad_magic = sh.clone();
    bad_magic[0] ^= 0x20;
    assert_eq!(client_verdict(&client_cfg(), &bad_magic), Err(HandshakeError::Malformed));
}

// ---------------------------------------------------------------- the server refuses

#[test]
fn drops_client_hello_with_any_byte_tampered() {
    let (_, frame) = fixed_client_hello(&client_cfg());
    let ch = body(&frame);
    assert_eq!(handshake::check_client_hello(&server_cfg(), &ch), HelloVerdict::Accept);
    for at in 0..ch.len() {
        let mut bad = ch.clone();
        bad[at] ^= 0x01;
        assert_eq!(handshake::check_client_hello(&server_cfg(), &bad), HelloVerdict::Drop, "byte {at}");
    }
}

#[test]
fn drops_client_hello_with_tampered_mac() {
    let (_, frame) = fixed_client_hello(&client_cfg());
    let mut ch = body(&frame);
    ch[CLIENT_HELLO_LEN - 32..].fill(0);
    assert_eq!(handshake::check_client_hello(&server_cfg(), &ch), HelloVerdict::Drop);
}

#[test]
fn drops_client_hello_from_another_deployment() {
    let mut cfg = client_cfg();
    cfg.deployment_key = [8; 32];
    let (_, frame) = fixed_client_hello(&cfg);
    assert_eq!(handshake::check_client_hello(&server_cfg(), &body(&frame)), HelloVerdict::Drop);
}

#[test]
fn drops_client_hello_of_wrong_size() {
    let (_, frame) = fixed_client_hello(&client_cfg());
    let ch = body(&frame);
    for bad in [&ch[..ch.len() - 1], &[ch.clone(), vec![0]].concat()[..], &[], &[0; 4096][..]] {
        assert_eq!(handshake::check_client_hello(&server_cfg(), bad), HelloVerdict::Drop, "{} bytes", bad.len());
    }
}

// ---------------------------------------------------------------- protocol mismatch

/// The server's framed mismatch answer to a client whose build differs as `change` says.
fn mismatch(change: impl Fn(&mut BuildIdentity)) -> (ClientConfig, Vec<u8>) {
    let mut cfg = client_cfg();
    change(&mut cfg.build);
    let (_, frame) = fixed_client_hello(&cfg);
    let ch = body(&frame);
    assert_eq!(handshake::check_client_hello(&server_cfg(), &ch), HelloVerdict::Mismatch);
    let answer = handshake::mismatch_hello(&server_cfg(), signer(), &ch).expect("server signs");
    (cfg, answer)
}

#[test]
fn answers_another_table_hash_with_protocol_mismatch() {
    let (cfg, answer) = mismatch(|b| b.table_hash[0] ^= 1);
    let sh_body = body(&answer);
    let sh = ServerHello::ref_from_bytes(&sh_body).expect("a whole ServerHello");
    assert_eq!(sh.status.get(), STATUS_MISMATCH);
    assert_eq!(sh.table_hash, BuildIdentity::this_build().table_hash);
    assert!(sh.eph_pub == [0; 32] && sh.nonce == [0; 32], "no key material");
    assert_ne!(sh.signature, [0; 256], "signed like any ServerHello");
    let err = client_verdict(&cfg, &sh_body).unwrap_err();
    assert!(matches!(err, HandshakeError::Mismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("protocol mismatch"), "{err}");
}

#[test]
fn mismatch_says_the_older_client_is_older() {
    let this = BuildIdentity::this_build();
    let (cfg, answer) = mismatch(|b| b.version = this.version - 1);
    match client_verdict(&cfg, &body(&answer)) {
        Err(HandshakeError::Mismatch { older, server_version, server_build_time }) => {
            assert_eq!(older, Older::Client);
            assert_eq!((server_version, server_build_time), (this.version, this.build_time));
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
    // Same version, another table, built earlier.
    let (cfg, answer) = mismatch(|b| {
        b.table_hash[31] ^= 1;
        b.build_time = this.build_time - 1;
    });
    assert!(matches!(client_verdict(&cfg, &body(&answer)), Err(HandshakeError::Mismatch { older: Older::Client, .. })));
}

#[test]
fn mismatch_says_the_older_server_is_older() {
    let this = BuildIdentity::this_build();
    let (cfg, answer) = mismatch(|b| b.version = this.version + 1);
    let err = client_verdict(&cfg, &body(&answer)).unwrap_err();
    assert!(matches!(err, HandshakeError::Mismatch { older: Older::Server, .. }), "{err:?}");
    assert!(err.to_string().contains("protocol mismatch"), "{err}");
    let (cfg, answer) = mismatch(|b| {
        b.table_hash[31] ^= 1;
        b.build_time = this.build_time + 1;
    });
    assert!(matches!(client_verdict(&cfg, &body(&answer)), Err(HandshakeError::Mismatch { older: Older::Server, .. })));
    // Same version and build time: cannot tell.
    let (cfg, answer) = mismatch(|b| b.table_hash[31] ^= 1);
    assert!(matches!(
        client_verdict(&cfg, &body(&answer)),
        Err(HandshakeError::Mismatch { older: Older::Unknown, .. })
    ));
}

// ---------------------------------------------------------------- records after the handshake

#[test]
fn rejects_replayed_record() {
    let (mut client, mut server) = connect();
    let a = seal(&mut client, 1);
    assert!(server.opener.open(&a).is_ok());
    assert!(server.opener.open(&a).is_err(), "replay accepted");
}

#[test]
fn rejects_reordered_record() {
    let (mut client, mut server) = connect();
    let (a, b) = (seal(&mut client, 1), seal(&mut client, 2));
    assert!(server.opener.open(&b).is_err(), "second record accepted first");
    assert_eq!(server.opener.open(&a).unwrap(), [1; 32]);
    assert_eq!(server.opener.open(&b).unwrap(), [2; 32]);
}

#[test]
fn rejects_dropped_record() {
    let (mut client, mut server) = connect();
    let _lost = seal(&mut client, 1);
    let b = seal(&mut client, 2);
    assert!(server.opener.open(&b).is_err(), "a gap went unnoticed");
}

#[test]
fn rejects_truncated_record() {
    let (mut client, mut server) = connect();
    let a = seal(&mut client, 1);
    for cut in [1, 16, 32, a.len() - 1, a.len()] {
        assert!(server.opener.open(&a[..a.len() - cut]).is_err(), "cut {cut}");
    }
    // Extended by a block: also refused.
    assert!(server.opener.open(&[a.clone(), vec![0; 16]].concat()).is_err());
    assert!(server.opener.open(&a).is_ok(), "the genuine record still opens");
}

#[test]
fn rejects_record_with_bad_tag_or_modified_ciphertext() {
    let (mut client, mut server) = connect();
    let a = seal(&mut client, 1);
    // IV (0..16), ciphertext (16..48), tag (48..80).
    for at in [0, 15, 16, 40, 47, 48, 70, a.len() - 1] {
        let mut bad = a.clone();
        bad[at] ^= 0x80;
        assert!(server.opener.open(&bad).is_err(), "byte {at} flipped");
    }
    assert!(server.opener.open(&a).is_ok());
}

#[test]
fn rejects_record_from_another_session() {
    let (mut client1, _server1) = connect();
    let (_client2, mut server2) = connect();
    let a = seal(&mut client1, 1);
    assert!(server2.opener.open(&a).is_err(), "session 2 opened a session 1 record");
}

#[test]
fn a_forged_unsigned_mismatch_is_not_believed() {
    // What a man in the middle (or the old server) sends: status 1, an older
    // version, no signature. The client says only that it could not verify it.
    let (cfg, answer) = mismatch(|b| b.table_hash[0] ^= 1);
    let mut forged = body(&answer);
    let sh = ServerHello::mut_from_bytes(&mut forged).unwrap();
    sh.signature = [0; 256];
    sh.version.set(0);
    let err = client_verdict(&cfg, &forged).unwrap_err();
    assert_eq!(err, HandshakeError::UnverifiedMismatch);
    let shown = err.to_string();
    assert_eq!(shown, "the server's answer could not be verified");
    assert!(!shown.contains("mismatch") && !shown.contains("older") && !shown.contains("current client"), "{shown}");
    // The same with a current client: a claimed mismatch it cannot verify.
    assert_eq!(client_verdict(&client_cfg(), &forged), Err(HandshakeError::UnverifiedMismatch));
}

#[test]
fn a_mismatch_signed_by_another_key_or_for_another_hello_is_not_believed() {
    let mut cfg = client_cfg();
    cfg.build.table_hash[0] ^= 1;
    let (_, frame) = fixed_client_hello(&cfg);
    let ch = body(&frame);
    let other = handshake::mismatch_hello(&server_cfg(), other_signer(), &ch).unwrap();
    assert_eq!(client_verdict(&cfg, &body(&other)), Err(HandshakeError::UnverifiedMismatch));
    // Signed by the right key, but for another ClientHello (a replay): refused too.
    let (_, fresh) = handshake::client_hello(&cfg);
    let replayed = handshake::mismatch_hello(&server_cfg(), signer(), &body(&fresh)).unwrap();
    assert_eq!(client_verdict(&cfg, &body(&replayed)), Err(HandshakeError::UnverifiedMismatch));
    // The genuine one is believed.
    let genuine = handshake::mismatch_hello(&server_cfg(), signer(), &ch).unwrap();
    assert!(matches!(client_verdict(&cfg, &body(&genuine)), Err(HandshakeError::Mismatch { .. })));
}
