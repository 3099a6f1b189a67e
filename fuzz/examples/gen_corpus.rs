//! Writes the committed seed corpus, `corpus/<target>/seed-*`, from real
//! structures, hellos and records made with the fixtures of `sotto_fuzz`.
//!
//! Run from fuzz/: `cargo run --example gen_corpus`; run it again after a change to
//! opcodes.toml (the `decode` seeds start with their index in `sotto_fuzz::MESSAGES`).

use std::fs;
use std::path::Path;

use sotto::frame;
use sotto::handshake::{self, HelloVerdict};
use sotto::opcodes::{ServerHello, TABLE_HASH};
use sotto::record::Sealer;
use sotto_fuzz::*;
use zerocopy::{FromBytes, IntoBytes};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    let mut seed = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        n += 1;
        fs::write(dir.join(format!("seed-{name}")), bytes)
    };

    // decode: selector byte, then a valid encoding of that struct.
    for (i, d) in MESSAGES.iter().chain(STRUCTS.iter()).enumerate() {
        let bytes = (d.sample)();
        (d.check)(&bytes);
        seed("decode", &d.name.to_lowercase(), &[&[i as u8][..], &bytes].concat())?;
    }

    // deframer: bound, cuts, stream of frames.
    let mut stream = Vec::new();
    for body in [&b"hello"[..], &[0x5a; 300], &(MESSAGES[11].sample)()] {
        frame::encode(body, &mut stream);
    }
    seed("deframer", "three-frames", &[&[0x10, 0x00, 3, 0, 1, 0, 9, 1, 0x40][..], &stream].concat())?;
    seed("deframer", "one-push", &[&[0x10, 0x00, 0][..], &stream[..stream.len() - 7]].concat())?;
    seed("deframer", "too-large", &[&[0x00, 0x20, 1, 0, 2][..], &stream].concat())?;

    // record: genuine records to open (mode 0) and IV || plaintext to round-trip (mode 1).
    for (name, pt) in [("block", vec![0x42; 16]), ("message", (MESSAGES[11].sample)())] {
        let mut out = Vec::new();
        Sealer::new(record_keys()).seal_with_iv(&pt, &[0x17; 16], &mut out).map_err(|_| invalid("seal"))?;
        seed("record", &format!("open-{name}"), &[&[0][..], &out[4..]].concat())?;
        seed("record", &format!("seal-{name}"), &[&[0x63][..], &[0x17; 16], &pt].concat())?;
    }

    // handshake: the fixed ClientHello (as is, and another version: a mismatch) and its signed answer.
    let hello = client().1;
    assert_eq!(handshake::check_client_hello(&SERVER, &hello), HelloVerdict::Accept);
    seed("handshake", "client-hello", &[&[0][..], &hello].concat())?;
    let mut old = hello.clone();
    old[4..6].copy_from_slice(&0u16.to_be_bytes());
    seed("handshake", "client-hello-old-version", &[&[1][..], &old].concat())?;
    let mut other = hello.clone();
    other[8..40].copy_from_slice(&[!TABLE_HASH[0]; 32]);
    seed("handshake", "client-hello-other-table", &[&[1][..], &other].concat())?;
    let signed = SIGNED_SERVER_HELLO.clone();
    client().0.handle_server_hello(&CLIENT, &signed).map_err(|e| invalid(&e.to_string()))?;
    seed("handshake", "server-hello", &[&[2][..], &signed].concat())?;
    let mut sh = ServerHello::read_from_bytes(&signed).map_err(|_| invalid("server hello"))?;
    sh.status.set(handshake::STATUS_MISMATCH);
    sh.version.set(sh.version.get() + 1);
    seed("handshake", "server-hello-mismatch", &[&[2][..], sh.as_bytes()].concat())?;

    println!("wrote {n} seeds under {}", root.display());
    Ok(())
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::other(format!("fixture does not work: {what}"))
}
