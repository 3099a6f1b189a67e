//! Forward secrecy of direct messages through the real binaries (issue 13):
//! alice writes while bob is offline, bob restarts his client between
//! messages and answers once; every message arrives once, in order. Then an
//! attacker holding everything that is left — bob's saved key store (opened
//! with his password), the server's data directory, and a recording of what
//! the server sent bob — tries every key that is left on every earlier
//! message, and opens none. As a check that the attack works, a message still
//! waiting on the server does open with bob's saved state.
//!
//! The key store is opened here independently of the client's code, from the
//! formats its modules document (client/store.rs, client/vault.rs,
//! client/keystore.rs, client/ratchets.rs).

mod common;

use std::path::{Path, PathBuf};

use common::proxy::Proxy;
use common::{contacts, files_under, relogin_at, user, Client, Server, TempDir, PW};
use serde_json::Value;
use sotto::crypto::{self, AeadKeys};
use sotto::dm::{self, Context, Prekey};
use sotto::opcodes::{ReceiveDmHead, RVUS};
use sotto::ratchet::{Header, Ratchet};
use sotto::{body, wire, x3dh};

fn send(c: &mut Client, to: &str, text: &str, status: &str) -> String {
    let v = c.run(&format!("/msg @{to} {text}"), "sent");
    assert_eq!((v["type"].as_str(), v["status"].as_str()), (Some("sent"), Some(status)), "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn next_dm(c: &mut Client) -> Value {
    c.wait_for("a dm", |v| v["type"] == "dm")
}

/// Bob reads `n` messages in one client session, then quits.
fn bob_reads(proxy: &Proxy, dir: &TempDir, n: usize) -> Vec<(String, String)> {
    let mut bob = relogin_at(&proxy.addr, dir, "bob", &[]);
    let got = (0..n)
        .map(|_| {
            let m = next_dm(&mut bob);
            assert_eq!((m["from"].as_str(), m["verified"].as_bool()), (Some("alice"), Some(true)), "{m}");
            (m["id"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned())
        })
        .collect();
    bob.settle(std::time::Duration::from_millis(300));
    assert!(!bob.take_backlog().iter().any(|v| v["type"] == "dm"), "each message once");
    bob.send("/quit");
    assert!(bob.finish().success());
    got
}

// ------------------------------------------------------------ bob's key store, opened from its formats

fn one_file(home: &Path, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = files_under(home).into_iter().filter(|p| p.file_name().unwrap() == name).collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found.into_iter().next().unwrap()
}

fn lp(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

/// `magic || version 2 || header || generation || IV || AES-128-CBC || HMAC`, the
/// subkey `HKDF(kek, "sotto/v2 file key\0" || kind)`, the AAD length-prefixed
/// label, user, kind, generation and header.
fn unseal(kek: &[u8; 32], bytes: &[u8], kind: &str, header_len: usize) -> Vec<u8> {
    let header = &bytes[5..5 + header_len];
    let generation = &bytes[5 + header_len..13 + header_len];
    let mut okm = [0u8; 48];
    crypto::hkdf(&[], kek, &[b"sotto/v2 file key\0", kind.as_bytes()], &mut okm);
    let mut aad = Vec::new();
    lp(&mut aad, b"sotto/v2 sealed file");
    lp(&mut aad, b"bob");
    lp(&mut aad, kind.as_bytes());
    lp(&mut aad, generation);
    lp(&mut aad, header);
    AeadKeys::from_material(&okm).open(&aad, &bytes[13 + header_len..]).expect("opens with the password").to_vec()
}

/// Everything bob's saved state holds that could open a DM.
struct Left {
    ik: [u8; 32],
    spks: Vec<[u8; 32]>,
    opks: Vec<[u8; 32]>,
    /// Saved ratchet states with their session AD.
    sessions: Vec<(Vec<u8>, Vec<u8>)>,
}

fn keys_left(home: &Path) -> Left {
    let manifest = std::fs::read(one_file(home, "manifest")).unwrap();
    let word = |i: usize| u32::from_be_bytes(manifest[5 + i..9 + i].try_into().unwrap());
    let (m, t, p) = (word(0), word(4), word(8));
    let salt: [u8; 16] = manifest[17..33].try_into().unwrap();
    let mut kek = [0u8; 32];
    crypto::derive_key_with(PW.as_bytes(), &salt, m, t, p, &mut kek).unwrap();

    // identity.key: u16 len || RSA PKCS#8 DER || X25519 secret.
    let id = unseal(&kek, &std::fs::read(one_file(home, "identity.key")).unwrap(), "identity", 0);
    let der = usize::from(u16::from_be_bytes([id[0], id[1]]));
    let ik: [u8; 32] = id[2 + der..].try_into().unwrap();

    // sessions (client/ratchets.rs).
    let s = unseal(&kek, &std::fs::read(one_file(home, "sessions")).unwrap(), "sessions", 0);
    let mut r = Reader(&s);
    r.take(4);
    let spks = (0..r.u8()).map(|_| {
        r.take(4);
        let k = r.key();
        r.take(16);
        k
    });
    let spks: Vec<[u8; 32]> = spks.collect();
    let opks: Vec<[u8; 32]> = (0..r.u32())
        .map(|_| {
            r.take(4);
            r.key()
        })
        .collect();
    let mut sessions = Vec::new();
    for _ in 0..r.u32() {
        r.take(8);
        for _ in 0..r.u8() {
            r.take(2 + 4 + 4 + 32);
            let ad = r.take(x3dh::AD_LEN).to_vec();
            let len = r.u32() as usize;
            sessions.push((r.take(len).to_vec(), ad));
        }
    }
    assert!(r.0.is_empty(), "the whole sessions file was read");
    Left { ik, spks, opks, sessions }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn key(&mut self) -> [u8; 32] {
        self.take(32).try_into().unwrap()
    }
}

// ------------------------------------------------------------ the attack

/// Tries every key that is left on one recorded `rvu*`: the saved ratchets
/// (their chains and skipped keys), and X3DH anew with the identity key and
/// every signed and one-time prekey left (or none). The text, if any opens it.
fn try_open(left: &Left, frame: &[u8], bob_uid: u64) -> Option<String> {
    let v = wire::decode_classed::<ReceiveDmHead>(frame, RVUS).unwrap();
    let h = v.head;
    let sender = h.sender_uid.get();
    let ctx =
        Context { sender_uid: sender, recipient_uid: bob_uid, dm_id: h.dm_id.get(), sent_time: h.sent_time.get() };
    let prekey = (h.prekey == 1).then(|| Prekey { spk_id: h.spk_id.get(), opk_id: h.opk_id.get(), ek: h.ek });
    let header = Header { dh: h.dh, pn: h.pn.get(), n: h.n.get() };
    for (state, ad) in &left.sessions {
        let mut r = Ratchet::from_bytes(state).unwrap();
        if let Ok(b) = r.open(&header, v.body, &h.tag, &dm::ad(ad, &ctx, prekey.as_ref())) {
            return body::unpack(&b).ok();
        }
    }
    let p = prekey?;
    // alice's identity key: the session AD of any saved session starts with it.
    let alice_ik: [u8; 32] = left.sessions.first()?.1[24..56].try_into().ok()?;
    let my_ik = x3dh::public_key(&left.ik);
    let sad = x3dh::session_ad(&sotto::account::deployment_id(), sender, &alice_ik, bob_uid, &my_ik);
    let opks: Vec<Option<&[u8; 32]>> = std::iter::once(None).chain(left.opks.iter().map(Some)).collect();
    for spk in &left.spks {
        for opk in &opks {
            let Ok(sk) = x3dh::respond(&left.ik, spk, *opk, &alice_ik, &p.ek, &sad) else { continue };
            let mut r = Ratchet::responder(&sk, spk);
            if let Ok(b) = r.open(&header, v.body, &h.tag, &dm::ad(&sad, &ctx, Some(&p))) {
                return body::unpack(&b).ok();
            }
        }
    }
    None
}

/// Every class-s `rvus` whose bytes appear in the files below `data`.
fn rvus_in(data: &Path) -> Vec<Vec<u8>> {
    let size = core::mem::size_of::<sotto::opcodes::ReceiveDmS>();
    let mut out = Vec::new();
    for f in files_under(data) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for at in 0..bytes.len().saturating_sub(size) {
            if bytes[at..at + 4] == RVUS.to_be_bytes()
                && wire::decode_classed::<ReceiveDmHead>(&bytes[at..at + size], RVUS).is_ok()
            {
                out.push(bytes[at..at + size].to_vec());
            }
        }
    }
    out
}

#[test]
fn dms_survive_offline_periods_and_restarts_and_the_keys_left_open_no_earlier_one() {
    let dir = TempDir::new("dm-forward");
    let data = dir.join("data");
    let server = Server::start(&data);
    let proxy = Proxy::start(&server.addr);
    let mut alice = user(&server, &dir, "alice", &[]);
    let mut bob = user(&server, &dir, "bob", &[]);
    contacts(&mut alice, "alice", &mut bob, "bob");
    let auth = bob.seen.iter().find(|v| v["type"] == "authenticated").expect("bob logged in").clone();
    let bob_uid = u64::from_str_radix(auth["uid"].as_str().unwrap(), 16).unwrap();
    bob.send("/quit");
    assert!(bob.finish().success());

    // Bob offline: two messages wait (the first starts the session, with X3DH).
    let mut ids = vec![send(&mut alice, "bob", "one: while you were out", "queued")];
    ids.push(send(&mut alice, "bob", "two: still out", "queued"));
    let mut got = bob_reads(&proxy, &dir, 2);
    // Bob restarted; one more while he is away, then he answers (a DH ratchet step).
    ids.push(send(&mut alice, "bob", "three: after your restart", "queued"));
    let mut bob = relogin_at(&proxy.addr, &dir, "bob", &[]);
    let m = next_dm(&mut bob);
    got.push((m["id"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned()));
    send(&mut bob, "alice", "back now", "delivered");
    assert_eq!(next_dm(&mut alice)["text"], "back now");
    bob.send("/quit");
    assert!(bob.finish().success());
    ids.push(send(&mut alice, "bob", "four: on the new chain", "queued"));
    ids.push(send(&mut alice, "bob", "five: and the last", "queued"));
    got.extend(bob_reads(&proxy, &dir, 2));
    let texts = [
        "one: while you were out",
        "two: still out",
        "three: after your restart",
        "four: on the new chain",
        "five: and the last",
    ];
    let want: Vec<(String, String)> = ids.iter().cloned().zip(texts.iter().map(|t| t.to_string())).collect();
    assert_eq!(got, want, "every message once, in order");

    // One more waits on the server: the check that the attack can open what the keys left allow.
    let waiting = send(&mut alice, "bob", "six: not read yet", "queued");
    drop(alice);
    let recorded = proxy.recorded(RVUS);
    assert_eq!(recorded.len(), 5, "the recording holds the five messages bob read");
    let head = |f: &[u8]| *wire::decode_classed::<ReceiveDmHead>(f, RVUS).unwrap().head;
    let (first, second) = (head(&recorded[0]), head(&recorded[1]));
    assert_eq!(
        (first.prekey, first.opk_id.get() != 0),
        (1, true),
        "the first starts the session with a one-time prekey"
    );
    assert_eq!(second.prekey, 1, "the X3DH fields come again until bob answers");
    assert_eq!(head(&recorded[3]).prekey, 0, "after bob's answer, no more");
    assert!(server.stop().success());

    let left = keys_left(&dir.join("bob"));
    assert!(!left.sessions.is_empty() && !left.spks.is_empty(), "bob's state has a session and a signed prekey");
    let stored = rvus_in(&data);
    for frame in recorded.iter().chain(stored.iter()) {
        let v = wire::decode_classed::<ReceiveDmHead>(frame, RVUS).unwrap();
        let id = format!("{:016x}", v.head.dm_id.get());
        let opened = try_open(&left, frame, bob_uid);
        if id == waiting {
            assert_eq!(opened.as_deref(), Some("six: not read yet"), "the attack opens what is still to be read");
        } else {
            assert_eq!(opened, None, "message {id} opened with the keys left");
        }
    }
    let found = stored.iter().any(|f| format!("{:016x}", head(f).dm_id.get()) == waiting);
    assert!(found, "the waiting message was found in the server's data directory");
}
