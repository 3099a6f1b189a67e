//! Test vectors from files (tests/vectors/*.txt): published ones for the
//! primitives, and our own, frozen, for the key schedule, the record layer,
//! X3DH, the Double Ratchet and the messages of each size class.
//!
//! File format: `name = hex` lines, vectors separated by blank lines, `#`
//! comments. A failure names the file, the vector's index and its line.

use std::collections::BTreeMap;

use sotto::crypto::{self, hex, AeadKeys};
use sotto::record::{Opener, Sealer};

/// One vector: its index, first line and fields.
struct Vector {
    index: usize,
    line: usize,
    fields: BTreeMap<String, String>,
}

impl Vector {
    /// The raw text of a field.
    fn text(&self, key: &str) -> &str {
        self.fields.get(key).unwrap_or_else(|| panic!("{}: no `{key}`", self.at()))
    }

    /// A hex field as bytes (an empty value is zero bytes).
    fn bytes(&self, key: &str) -> Vec<u8> {
        crypto::unhex(self.text(key)).unwrap_or_else(|| panic!("{}: `{key}` is not hex", self.at()))
    }

    /// A hex field of exactly `N` bytes.
    fn array<const N: usize>(&self, key: &str) -> [u8; N] {
        self.bytes(key)
            .try_into()
            .unwrap_or_else(|v: Vec<u8>| panic!("{}: `{key}` is {} bytes, not {N}", self.at(), v.len()))
    }

    /// A hex field of exactly `N` bytes, if present.
    fn opt_array<const N: usize>(&self, key: &str) -> Option<[u8; N]> {
        self.fields.contains_key(key).then(|| self.array(key))
    }

    fn at(&self) -> String {
        format!("vector #{} (line {})", self.index, self.line)
    }
}

/// Parses a vector file; panics on a malformed line.
fn parse(name: &str, text: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut cur: Option<Vector> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            out.extend(cur.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{name}:{}: expected `name = value`", n + 1));
        let v_ = cur.get_or_insert_with(|| Vector { index: out.len(), line: n + 1, fields: BTreeMap::new() });
        let dup = v_.fields.insert(k.trim().to_owned(), v.trim().to_owned());
        assert!(dup.is_none(), "{name}:{}: `{}` given twice", n + 1, k.trim());
    }
    out.extend(cur);
    assert!(!out.is_empty(), "{name}: no vectors");
    out
}

/// Runs `check` on every vector of a file, printing which one failed.
fn each(name: &str, text: &str, check: impl Fn(&Vector)) -> usize {
    let vectors = parse(name, text);
    for v in &vectors {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(v)));
        if let Err(e) = r {
            eprintln!("{name}: {} failed", v.at());
            std::panic::resume_unwind(e);
        }
    }
    vectors.len()
}

#[test]
fn aes128_cbc_nist_sp800_38a() {
    let n = each("aes128cbc.txt", include_str!("vectors/aes128cbc.txt"), |v| {
        let (key, iv) = (v.array::<16>("key"), v.array::<16>("iv"));
        let (pt, ct) = (v.bytes("plaintext"), v.bytes("ciphertext"));
        let mut buf = pt.clone();
        crypto::cbc_encrypt(&key, &iv, &mut buf).unwrap();
        assert_eq!(hex(&buf), hex(&ct), "{} encrypt", v.at());
        crypto::cbc_decrypt(&key, &iv, &mut buf).unwrap();
        assert_eq!(hex(&buf), hex(&pt), "{} decrypt", v.at());
    });
    assert_eq!(n, 5);
}

#[test]
fn hmac_sha256_rfc4231() {
    let n = each("hmac_sha256.txt", include_str!("vectors/hmac_sha256.txt"), |v| {
        let (key, data, mac) = (v.bytes("key"), v.bytes("data"), v.bytes("mac"));
        assert_eq!(hex(&crypto::hmac(&key, &[&data])), hex(&mac), "{}", v.at());
        // The same MAC over the data split in two parts, and the verifier.
        let (a, b) = data.split_at(data.len() / 2);
        assert_eq!(crypto::hmac(&key, &[a, b])[..], mac[..], "{} split", v.at());
        assert!(crypto::hmac_verify(&key, &[&data], &mac), "{} verify", v.at());
        let mut bad = mac.clone();
        bad[0] ^= 1;
        assert!(!crypto::hmac_verify(&key, &[&data], &bad), "{} verify flipped", v.at());
    });
    assert_eq!(n, 6);
}

#[test]
fn hkdf_sha256_rfc5869() {
    let n = each("hkdf_sha256.txt", include_str!("vectors/hkdf_sha256.txt"), |v| {
        let (ikm, salt, info, okm) = (v.bytes("ikm"), v.bytes("salt"), v.bytes("info"), v.bytes("okm"));
        // `hkdf` always passes Some(salt); RFC 5869 §2.2 makes an empty salt
        // equal to HashLen zeros, which is also what an absent salt means (A.3).
        let mut out = vec![0u8; okm.len()];
        crypto::hkdf(&salt, &ikm, &[&info], &mut out);
        assert_eq!(hex(&out), hex(&okm), "{}", v.at());
    });
    assert_eq!(n, 3);
}

#[test]
fn x25519_rfc7748() {
    let n = each("x25519.txt", include_str!("vectors/x25519.txt"), |v| {
        let (scalar, u, shared) = (v.array::<32>("scalar"), v.array::<32>("u"), v.array::<32>("shared"));
        assert_eq!(hex(&x25519_dalek::x25519(scalar, u)), hex(&shared), "{}", v.at());
        let secret = x25519_dalek::StaticSecret::from(scalar);
        let dh = secret.diffie_hellman(&x25519_dalek::PublicKey::from(u));
        assert_eq!(dh.as_bytes(), &shared, "{} StaticSecret", v.at());
    });
    assert_eq!(n, 6);
}

#[test]
fn session_key_schedule() {
    let n = each("key_schedule.txt", include_str!("vectors/key_schedule.txt"), |v| {
        let (ch, sh) = (v.bytes("client_hello"), v.bytes("server_hello"));
        assert_eq!(ch.len(), sotto::handshake::CLIENT_HELLO_LEN, "{}", v.at());
        assert_eq!(sh.len(), sotto::handshake::SERVER_HELLO_LEN, "{}", v.at());
        assert_eq!(hex(&crypto::sha256(&[&ch, &sh])), v.text("transcript_hash"), "{}", v.at());
        let (c2s, s2c) = sotto::handshake::key_schedule(&v.array("deployment_key"), &v.array("shared"), &ch, &sh);
        assert_eq!(hex(&c2s.enc[..]), v.text("c2s_enc"), "{} c2s_enc", v.at());
        assert_eq!(hex(&c2s.mac[..]), v.text("c2s_mac"), "{} c2s_mac", v.at());
        assert_eq!(hex(&s2c.enc[..]), v.text("s2c_enc"), "{} s2c_enc", v.at());
        assert_eq!(hex(&s2c.mac[..]), v.text("s2c_mac"), "{} s2c_mac", v.at());
    });
    assert_eq!(n, 1);
}

#[test]
fn resumption() {
    use sotto::ticket::{self, ResumptionMaster, TicketContents, TicketKey};
    use zeroize::Zeroizing;
    let u64_of = |v: &Vector, k: &str| u64::from_be_bytes(v.array(k));
    let n = each("resumption.txt", include_str!("vectors/resumption.txt"), |v| match v.text("kind") {
        "master" => {
            let (ch, sh) = (v.bytes("client_hello"), v.bytes("server_hello"));
            assert_eq!(ch.len(), sotto::handshake::CLIENT_HELLO_LEN, "{}", v.at());
            assert_eq!(sh.len(), sotto::handshake::SERVER_HELLO_LEN, "{}", v.at());
            let m = ResumptionMaster::of_handshake(&v.array("deployment_key"), &v.array("shared"), &ch, &sh);
            let secret = m.ticket_secret(&v.array("ticket_id"));
            assert_eq!(hex(&secret[..]), v.text("ticket_secret"), "{} ticket_secret", v.at());
            // The master itself, through the only door it has: a ticket's secret is HMAC(master, label || id).
            let master: [u8; 32] = v.array("master");
            let want = crypto::hmac(&master, &[ticket::SECRET_LABEL, &v.array::<16>("ticket_id")]);
            assert_eq!(*secret, want, "{} master", v.at());
        }
        "ticket" => {
            let key = TicketKey::from_material(u64_of(v, "key_id"), 0, &v.array("key_material"));
            let c = TicketContents {
                uid: u64_of(v, "uid"),
                issued_ms: u64_of(v, "issued"),
                expires_ms: u64_of(v, "expires"),
                generation: u64_of(v, "generation"),
                ticket_id: v.array("ticket_id"),
                secret: Zeroizing::new(v.array("secret")),
            };
            let sealed = key.seal_with_iv(&c, &v.array("iv"));
            assert_eq!(hex(&sealed), v.text("ticket"), "{} ticket", v.at());
            let opened = ticket::open_ticket(&[key], &sealed).unwrap_or_else(|| panic!("{}: does not open", v.at()));
            assert_eq!(
                (opened.uid, opened.issued_ms, opened.expires_ms, opened.generation, opened.ticket_id, *opened.secret),
                (c.uid, c.issued_ms, c.expires_ms, c.generation, c.ticket_id, *c.secret),
                "{} opened",
                v.at()
            );
        }
        "schedule" => {
            let (rh, sr) = (v.bytes("resume_hello"), v.bytes("server_resume"));
            assert_eq!(rh.len(), ticket::RESUME_HELLO_LEN, "{}", v.at());
            assert_eq!(sr.len(), ticket::SERVER_RESUME_LEN, "{}", v.at());
            assert_eq!(hex(&crypto::sha256(&[&rh, &sr[..128]])), v.text("transcript_hash"), "{}", v.at());
            let secret: [u8; 32] = v.array("secret");
            let (c2s, s2c, finished, master) =
                ticket::resume_schedule(&v.array("deployment_key"), &secret, &v.array("shared"), &rh, &sr);
            assert_eq!(hex(&c2s.enc[..]), v.text("c2s_enc"), "{} c2s_enc", v.at());
            assert_eq!(hex(&c2s.mac[..]), v.text("c2s_mac"), "{} c2s_mac", v.at());
            assert_eq!(hex(&s2c.enc[..]), v.text("s2c_enc"), "{} s2c_enc", v.at());
            assert_eq!(hex(&s2c.mac[..]), v.text("s2c_mac"), "{} s2c_mac", v.at());
            assert_eq!(hex(&finished[..]), v.text("finished"), "{} finished", v.at());
            let id = [0u8; 16];
            let want = crypto::hmac(&v.array::<32>("master"), &[ticket::SECRET_LABEL, &id]);
            assert_eq!(*master.ticket_secret(&id), want, "{} master", v.at());
            assert_eq!(hex(&ticket::finished_mac(&finished, &rh, &sr)), v.text("server_mac"), "{} server_mac", v.at());
            assert_eq!(hex(&ticket::binder(&secret, &rh[..264])), v.text("binder"), "{} binder", v.at());
        }
        other => panic!("{}: unknown kind {other}", v.at()),
    });
    assert_eq!(n, 3);
}

#[test]
fn login_secrets() {
    let n = each("login_secrets.txt", include_str!("vectors/login_secrets.txt"), |v| {
        let dk = v.array::<32>("deployment_key");
        let (user, password, phrase) = (v.text("username"), v.text("password"), v.text("passphrase"));
        assert_eq!(
            hex(&sotto::account::secret_salt(b"sotto/v1 auth salt\0", &dk, user)),
            v.text("auth_salt"),
            "{}",
            v.at()
        );
        assert_eq!(
            hex(&sotto::account::secret_salt(b"sotto/v1 passphrase salt\0", &dk, user)),
            v.text("pass_salt"),
            "{}",
            v.at()
        );
        assert_eq!(hex(&sotto::account::auth_secret_for(&dk, user, password)[..]), v.text("auth_secret"), "{}", v.at());
        assert_eq!(hex(&sotto::account::pass_secret_for(&dk, user, phrase)[..]), v.text("pass_secret"), "{}", v.at());
    });
    assert_eq!(n, 2);
}

#[test]
fn key_binding() {
    let n = each("key_binding.txt", include_str!("vectors/key_binding.txt"), |v| {
        let id = sotto::account::deployment_id_for(&v.array::<32>("deployment_key"));
        assert_eq!(hex(&id), v.text("deployment_id"), "{}", v.at());
        let uid = u64::from_be_bytes(v.array::<8>("uid"));
        let binding = sotto::account::enc_key_binding(&id, uid, v.text("username"), &v.array::<32>("enc_pub"));
        assert_eq!(hex(&binding), v.text("binding"), "{}", v.at());
        // Signed and verified; another UID, name or deployment does not verify.
        let (der, n) = sotto::identity::generate().unwrap();
        let sig = sotto::identity::Signer::from_pkcs8_der(&der).unwrap().sign(&binding).unwrap();
        let key = sotto::identity::from_modulus(&n).unwrap();
        assert!(sotto::identity::verify(&key, &binding, &sig));
        let enc = v.array::<32>("enc_pub");
        for other in [
            sotto::account::enc_key_binding(&id, uid ^ 1, v.text("username"), &enc),
            sotto::account::enc_key_binding(&id, uid, "mallory", &enc),
            sotto::account::enc_key_binding(
                &sotto::account::deployment_id_for(&[9; 32]),
                uid,
                v.text("username"),
                &enc,
            ),
        ] {
            assert!(!sotto::identity::verify(&key, &other, &sig), "{}", v.at());
        }
    });
    assert_eq!(n, 1);
}

#[test]
fn record_layer() {
    let n = each("record.txt", include_str!("vectors/record.txt"), |v| {
        let keys = AeadKeys::from_material(&v.array("material"));
        let seq: u64 = v.text("seq").parse().unwrap_or_else(|_| panic!("{}: bad seq", v.at()));
        let (iv, pt, record) = (v.array::<16>("iv"), v.bytes("plaintext"), v.bytes("record"));
        let (mut sealer, mut opener) = (Sealer::new(keys.clone()), Opener::new(keys));
        // Advance both directions to `seq` with filler records.
        for _ in 0..seq {
            let mut filler = Vec::new();
            sealer.seal(&[0u8; 16], &mut filler).unwrap();
            assert_eq!(opener.open(&filler[4..]).unwrap(), [0u8; 16], "{} filler", v.at());
        }
        let mut out = Vec::new();
        sealer.seal_with_iv(&pt, &iv, &mut out).unwrap();
        assert_eq!(hex(&out), hex(&record), "{} seal", v.at());
        let len = u32::from_be_bytes(record[..4].try_into().unwrap()) as usize;
        assert_eq!(len, record.len() - 4, "{} length prefix", v.at());
        assert_eq!(opener.open(&record[4..]).unwrap(), pt, "{} open", v.at());
        // Bound to its sequence number: the same record does not open again.
        assert!(opener.open(&record[4..]).is_err(), "{} replay opened", v.at());
    });
    assert_eq!(n, 2);
}

#[test]
fn x3dh() {
    use sotto::x3dh::{self, Bundle};
    let n = each("x3dh.txt", include_str!("vectors/x3dh.txt"), |v| {
        let id = v.array::<16>("deployment_id");
        let (a_uid, b_uid) =
            (u64::from_be_bytes(v.array("initiator_uid")), u64::from_be_bytes(v.array("responder_uid")));
        let (ik_a, ik_b, spk, ek) = (
            v.array::<32>("ik_a_secret"),
            v.array::<32>("ik_b_secret"),
            v.array("spk_b_secret"),
            v.array("ek_a_secret"),
        );
        let opk = v.opt_array::<32>("opk_b_secret");
        for (secret, public) in [(ik_a, "ik_a_pub"), (ik_b, "ik_b_pub"), (spk, "spk_b_pub"), (ek, "ek_a_pub")]
            .into_iter()
            .chain(opk.map(|o| (o, "opk_b_pub")))
        {
            assert_eq!(hex(&x3dh::public_key(&secret)), v.text(public), "{} {public}", v.at());
        }
        let spk_id = u32::from_be_bytes(v.array("spk_id"));
        assert_eq!(
            hex(&x3dh::spk_binding(&id, b_uid, spk_id, &v.array("spk_b_pub"))),
            v.text("spk_binding"),
            "{}",
            v.at()
        );
        let ad = x3dh::session_ad(&id, a_uid, &v.array("ik_a_pub"), b_uid, &v.array("ik_b_pub"));
        assert_eq!(hex(&ad), v.text("ad"), "{} ad", v.at());
        // The DH outputs, from the primitive, on both sides.
        let x = |s: [u8; 32], p: &str| x25519_dalek::x25519(s, v.array(p));
        let mut dhs = vec![
            (x(ik_a, "spk_b_pub"), x(spk, "ik_a_pub")),
            (x(ek, "ik_b_pub"), x(ik_b, "ek_a_pub")),
            (x(ek, "spk_b_pub"), x(spk, "ek_a_pub")),
        ];
        if let Some(o) = opk {
            dhs.push((x(ek, "opk_b_pub"), x(o, "ek_a_pub")));
        }
        assert_eq!(v.fields.contains_key("dh4"), opk.is_some(), "{} dh4 iff an OPK", v.at());
        for (i, (a, b)) in dhs.iter().enumerate() {
            assert_eq!(hex(a), v.text(&format!("dh{}", i + 1)), "{} dh{}", v.at(), i + 1);
            assert_eq!(a, b, "{} dh{} both sides", v.at(), i + 1);
        }
        let bundle = Bundle {
            ik: v.array("ik_b_pub"),
            spk_id,
            spk: v.array("spk_b_pub"),
            opk: opk.map(|_| (u32::from_be_bytes(v.array("opk_id")), v.array("opk_b_pub"))),
        };
        let init = x3dh::initiate_with(&ik_a, &bundle, &ad, &ek).unwrap();
        assert_eq!(hex(&init.ek_pub), v.text("ek_a_pub"), "{}", v.at());
        assert_eq!(hex(&init.sk[..]), v.text("sk"), "{} initiator sk", v.at());
        let sk = x3dh::respond(&ik_b, &spk, opk.as_ref(), &v.array("ik_a_pub"), &v.array("ek_a_pub"), &ad).unwrap();
        assert_eq!(hex(&sk[..]), v.text("sk"), "{} responder sk", v.at());
    });
    assert_eq!(n, 2);
}

#[test]
fn ratchet() {
    use sotto::ratchet::{Header, Ratchet};
    let vectors = parse("ratchet.txt", include_str!("vectors/ratchet.txt"));
    assert_eq!(vectors.len(), 6);
    let x3 = parse("x3dh.txt", include_str!("vectors/x3dh.txt"));
    let s = &vectors[0];
    assert_eq!(s.text("sk"), x3[0].text("sk"), "the session starts from x3dh.txt vector 0");
    assert_eq!(s.text("ad"), x3[0].text("ad"));
    let (sk, ad) = (s.array::<32>("sk"), s.bytes("ad"));
    assert_eq!(hex(&sotto::x3dh::public_key(&s.array("a_ratchet_secret"))), s.text("a_ratchet_pub"));
    let mut a = Ratchet::initiator_with(&sk, &s.array("spk_b_pub"), &s.array("a_ratchet_secret")).unwrap();
    let mut b = Ratchet::responder(&sk, &s.array("spk_b_secret"));
    let m = &vectors[1..];
    for (i, v) in m.iter().enumerate() {
        assert_eq!(v.text("message"), i.to_string(), "{}", v.at());
    }

    let seal = |r: &mut Ratchet, i: usize, from: &str| {
        let v = &m[i];
        assert_eq!(v.text("from"), from, "{}", v.at());
        let text = v.text("text");
        let mut body = vec![0u8; 176];
        body[..2].copy_from_slice(&(text.len() as u16).to_be_bytes());
        body[2..2 + text.len()].copy_from_slice(text.as_bytes());
        assert_eq!(hex(&body), v.text("body"), "{} body", v.at());
        let (sealed, trace) = r.seal_traced(&body, &ad).unwrap();
        let h = sealed.header.to_bytes();
        assert_eq!(hex(&h), v.text("header"), "{} header", v.at());
        assert_eq!(hex(&sotto::x3dh::public_key(&v.array("sender_ratchet_secret"))), hex(&h[..32]), "{}", v.at());
        for (got, field) in [
            (&trace.ck[..], "chain_key"),
            (&trace.mk[..], "message_key"),
            (&trace.aes[..], "aes_key"),
            (&trace.mac[..], "mac_key"),
            (&trace.iv[..], "iv"),
            (&sealed.ciphertext[..], "ciphertext"),
            (&sealed.tag[..], "tag"),
        ] {
            assert_eq!(hex(got), v.text(field), "{} {field}", v.at());
        }
    };
    // Opens message `i` from the vector's bytes; a DH ratchet step takes the
    // vector's receiver_ratchet_secret, and happens exactly when it is given.
    let open = |r: &mut Ratchet, i: usize| {
        let v = &m[i];
        let header = Header::from_bytes(&v.bytes("header")).unwrap();
        let (ct, tag) = (v.bytes("ciphertext"), v.array::<32>("tag"));
        let step = v.opt_array::<32>("receiver_ratchet_secret");
        // Any other secret than the vector's changes the next sending chain.
        let pt = r.open_with(&header, &ct, &tag, &ad, &step.unwrap_or([0x77; 32])).unwrap();
        assert_eq!(hex(&pt), v.text("body"), "{} open", v.at());
        let before = r.to_bytes();
        assert!(r.open(&header, &ct, &tag, &ad).is_err(), "{} replay", v.at());
        assert_eq!(*r.to_bytes(), *before, "{} a refused replay changes nothing", v.at());
    };
    seal(&mut a, 0, "a");
    seal(&mut a, 1, "a");
    open(&mut b, 1);
    open(&mut b, 0);
    seal(&mut b, 2, "b");
    open(&mut a, 2);
    seal(&mut a, 3, "a");
    seal(&mut a, 4, "a");
    open(&mut b, 3);
    open(&mut b, 4);
    // The secrets generated on receipt are the next senders' ratchet keys.
    assert_eq!(m[1].text("receiver_ratchet_secret"), m[2].text("sender_ratchet_secret"));
    assert_eq!(m[2].text("receiver_ratchet_secret"), m[3].text("sender_ratchet_secret"));
    assert!(m[3].fields.contains_key("receiver_ratchet_secret"));
    for i in [0, 4] {
        assert!(!m[i].fields.contains_key("receiver_ratchet_secret"), "m{i} takes no DH ratchet step");
    }
}

/// The text of a classes.txt vector: `text_pattern` repeated, cut to `text_len` bytes.
fn pattern_text(v: &Vector) -> String {
    let pattern = v.text("text_pattern");
    let len: usize = v.text("text_len").parse().unwrap_or_else(|_| panic!("{}: bad text_len", v.at()));
    assert!(pattern.is_ascii() && !pattern.is_empty(), "{} text_pattern", v.at());
    pattern.repeat(len / pattern.len() + 1)[..len].to_owned()
}

/// The class a vector names, and the body `body::pack` makes of its text in
/// that class (checked against the vector's `body`).
fn class_and_body(v: &Vector) -> (sotto::opcodes::Class, String, Vec<u8>) {
    let class = match v.text("class").as_bytes() {
        [b] => sotto::opcodes::Class::from_letter(*b),
        _ => None,
    };
    let class = class.unwrap_or_else(|| panic!("{}: bad class", v.at()));
    let text = pattern_text(v);
    let (packed, body) = sotto::body::pack(&text).unwrap();
    assert_eq!(packed, class, "{} the text's class", v.at());
    assert_eq!(body.len(), class.body(), "{} body length", v.at());
    assert_eq!(hex(&body), v.text("body"), "{} body", v.at());
    (class, text, body.to_vec())
}

#[test]
fn size_classes() {
    use sotto::opcodes::Class;
    use sotto::ratchet::{Header, Ratchet};
    use sotto::{dm, room, x3dh};
    let text = include_str!("vectors/classes.txt");
    let vectors = parse("classes.txt", text);
    let kinds: Vec<(&str, &str)> = vectors.iter().map(|v| (v.text("kind"), v.text("class"))).collect();
    let letters = Class::ALL.map(|c| c.letter().to_string());
    let want: Vec<(&str, &str)> =
        ["room", "dm"].into_iter().flat_map(|k| letters.iter().map(move |l| (k, l.as_str()))).collect();
    assert_eq!(kinds, want, "a room message then a DM per class, in class order");
    let x3 = parse("x3dh.txt", include_str!("vectors/x3dh.txt"));
    let n = each("classes.txt", text, |v| {
        let (class, text, body) = class_and_body(v);
        let u64_of = |key: &str| u64::from_be_bytes(v.array(key));
        if v.text("kind") == "room" {
            let keys = AeadKeys::from_material(&v.array("content"));
            assert_eq!(hex(&keys.enc[..]), v.text("enc"), "{} enc", v.at());
            assert_eq!(hex(&keys.mac[..]), v.text("mac"), "{} mac", v.at());
            let name = v.text("room");
            assert_eq!(room::normalize_name(name).as_deref(), Ok(name), "{} room name", v.at());
            let ctx = room::Context {
                room: name,
                sender_uid: u64_of("sender_uid"),
                msg_id: u64_of("msg_id"),
                sent_time: u64_of("sent_time"),
            };
            let sealed = room::seal_with_iv(&keys, &ctx, &text, &v.array("iv")).unwrap();
            assert_eq!(sealed.class(), Some(class), "{} sealed class", v.at());
            assert_eq!(sealed.ciphertext.len(), class.body(), "{} ciphertext length", v.at());
            assert_eq!(hex(&sealed.iv), v.text("iv"), "{} iv", v.at());
            assert_eq!(hex(&sealed.ciphertext), v.text("ciphertext"), "{} ciphertext", v.at());
            assert_eq!(hex(&sealed.tag), v.text("tag"), "{} tag", v.at());
            assert_eq!(hex(&room::signed_bytes(&ctx, &sealed)), v.text("signed_bytes"), "{} signed_bytes", v.at());
            assert_eq!(room::open(&keys, &ctx, &sealed).unwrap(), text, "{} open", v.at());
        } else {
            assert_eq!(v.text("kind"), "dm", "{} kind", v.at());
            // The session is x3dh.txt vector 0's (with a one-time prekey).
            for (field, x3_field) in [
                ("deployment_id", "deployment_id"),
                ("initiator_uid", "initiator_uid"),
                ("ik_a_pub", "ik_a_pub"),
                ("responder_uid", "responder_uid"),
                ("ik_b_pub", "ik_b_pub"),
                ("session_ad", "ad"),
                ("sk", "sk"),
                ("spk_b_secret", "spk_b_secret"),
                ("spk_b_pub", "spk_b_pub"),
                ("spk_id", "spk_id"),
                ("opk_id", "opk_id"),
                ("ek", "ek_a_pub"),
            ] {
                assert_eq!(v.text(field), x3[0].text(x3_field), "{} {field} is x3dh.txt's {x3_field}", v.at());
            }
            let session_ad = x3dh::session_ad(
                &v.array("deployment_id"),
                u64_of("initiator_uid"),
                &v.array("ik_a_pub"),
                u64_of("responder_uid"),
                &v.array("ik_b_pub"),
            );
            assert_eq!(hex(&session_ad), v.text("session_ad"), "{} session_ad", v.at());
            let ctx = dm::Context {
                sender_uid: u64_of("sender_uid"),
                recipient_uid: u64_of("recipient_uid"),
                dm_id: u64_of("dm_id"),
                sent_time: u64_of("sent_time"),
            };
            assert_eq!(v.text("sender_uid"), v.text("initiator_uid"), "{} the initiator sends", v.at());
            assert_eq!(v.text("recipient_uid"), v.text("responder_uid"), "{}", v.at());
            assert_eq!(v.text("prekey"), "01", "{} a first message carries the prekey fields", v.at());
            let prekey = dm::Prekey {
                spk_id: u32::from_be_bytes(v.array("spk_id")),
                opk_id: u32::from_be_bytes(v.array("opk_id")),
                ek: v.array("ek"),
            };
            let msg_ad = dm::ad(&session_ad, &ctx, Some(&prekey));
            assert_eq!(msg_ad.len(), 169, "{} msg_ad length", v.at());
            assert_eq!(hex(&msg_ad), v.text("msg_ad"), "{} msg_ad", v.at());
            let sk = v.array::<32>("sk");
            let secret = v.array::<32>("a_ratchet_secret");
            let mut a = Ratchet::initiator_with(&sk, &v.array("spk_b_pub"), &secret).unwrap();
            let (sealed, trace) = a.seal_traced(&body, &msg_ad).unwrap();
            let header = sealed.header.to_bytes();
            assert_eq!(header.len(), 40, "{} header length", v.at());
            assert_eq!(hex(&header[..32]), hex(&x3dh::public_key(&secret)), "{} header dh", v.at());
            assert_eq!(sealed.ciphertext.len(), class.body(), "{} ciphertext length", v.at());
            for (got, field) in [
                (&header[..], "header"),
                (&trace.ck[..], "chain_key"),
                (&trace.mk[..], "mk"),
                (&trace.aes[..], "aes"),
                (&trace.mac[..], "mac"),
                (&trace.iv[..], "iv"),
                (&sealed.ciphertext[..], "ciphertext"),
                (&sealed.tag[..], "tag"),
            ] {
                assert_eq!(hex(got), v.text(field), "{} {field}", v.at());
            }
            // The responder opens the vector's bytes (with its signed prekey)
            // under the same msg_ad, and the text comes back.
            let mut b = Ratchet::responder(&sk, &v.array("spk_b_secret"));
            let h = Header::from_bytes(&v.bytes("header")).unwrap();
            let pt = b.open(&h, &v.bytes("ciphertext"), &v.array("tag"), &msg_ad).unwrap();
            assert_eq!(sotto::body::unpack(&pt).unwrap(), text, "{} open", v.at());
        }
    });
    assert_eq!(n, 8);
}

#[test]
fn file_chunks_and_manifest() {
    use sha2::{Digest, Sha256};
    use sotto::file::{self, Content, FileKeys, CHUNK};
    use sotto::opcodes::FileManifest;
    use zerocopy::FromZeros;
    let text = include_str!("vectors/files.txt");
    let n = each("files.txt", text, |v| {
        let file_id = u64::from_be_bytes(v.array("file_id"));
        let key: [u8; 32] = v.array("key");
        let size: u64 = v.text("size").parse().unwrap();
        let number = |k: &str| -> u32 { v.text(k).parse().unwrap() };
        if v.text("kind") == "chunk" {
            let (count, index) = (number("chunk_count"), number("index"));
            assert_eq!(file::chunk_count(size), Some(count), "{}", v.at());
            let len = file::chunk_len(size, index);
            assert_eq!(len, number("plain_len") as usize, "{}", v.at());
            let keys = FileKeys::derive(file_id, count, &key);
            assert_eq!(hex(&keys.keys().enc[..]), v.text("aes"), "{} aes", v.at());
            assert_eq!(hex(&keys.keys().mac[..]), v.text("mac"), "{} mac", v.at());
            let start = u64::from(index) * CHUNK as u64;
            let plain: Vec<u8> = (start..start + len as u64).map(|i| ((i * 7 + 3) % 256) as u8).collect();
            let mut data = [0u8; CHUNK];
            let tag = keys.seal_with_iv(index, &plain, &mut data, v.array("iv")).unwrap();
            assert_eq!(hex(&data[..32]), v.text("data_head"), "{} data", v.at());
            assert_eq!(hex(&Sha256::digest(data)), v.text("data_sha256"), "{} data", v.at());
            assert_eq!(hex(&tag), v.text("tag"), "{} tag", v.at());
            let opened = keys.open(index, &v.array("iv"), &tag, &data, len).unwrap();
            assert_eq!(&opened[..], &plain[..], "{} opens", v.at());
        } else {
            let mut m = FileManifest::new_zeroed();
            m.file_id.set(file_id);
            m.size.set(size);
            m.chunk_count.set(file::chunk_count(size).unwrap());
            m.chunk_size.set(CHUNK as u32);
            m.sha256 = v.array("sha256");
            m.key = key;
            m.set_name(v.text("name")).unwrap();
            let (_, body) = file::pack_manifest(&m);
            assert_eq!(hex(&body), v.text("body"), "{} body", v.at());
            assert!(matches!(file::unpack(&body), Ok(Content::File(back)) if *back == m), "{} reads back", v.at());
        }
    });
    assert_eq!(n, 3);
}
