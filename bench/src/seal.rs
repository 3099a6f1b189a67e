//! `--only seal`: the sealing part of one room delivery's CPU budget
//! (docs/BENCHMARKS.md, "CPU budget of one delivery"), part by part, for the
//! `rvr*` of size classes s and m, one record at a time and multi-buffer
//! (`record::seal_many`), against OpenSSL's stitched AES-128-CBC-HMAC-SHA256.
//!
//! Every figure is the median of several timed runs on the generator's core.

use crate::work::openssl_ns;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use sotto::crypto::{AeadKeys, Cbc, MacKey};
use sotto::opcodes::{ReceiveRoomMessageM, ReceiveRoomMessageS};
use sotto::record::{self, Sealer};

use crate::report::Report;

/// The plaintexts measured: the delivered room message of classes s and m.
pub const SIZES: [(&str, usize); 2] =
    [("s", core::mem::size_of::<ReceiveRoomMessageS>()), ("m", core::mem::size_of::<ReceiveRoomMessageM>())];

/// Records per message in the multi-buffer rows: W4's first row, a room of
/// 10 and one publisher (every member but the sender).
pub const ROOM: usize = 9;

/// ns per call of `f`: the median of `runs` runs of about `secs` each.
fn median_ns(runs: usize, secs: f64, mut f: impl FnMut()) -> f64 {
    let mut per = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (mut calls, t) = (0u64, Instant::now());
        while t.elapsed().as_secs_f64() < secs {
            for _ in 0..32 {
                f();
            }
            calls += 32;
        }
        per.push(t.elapsed().as_nanos() as f64 / calls as f64);
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

fn keys(i: usize) -> AeadKeys {
    let mut m = [0u8; 48];
    for (j, b) in m.iter_mut().enumerate() {
        *b = (i * 131 + j * 7 + 1) as u8;
    }
    AeadKeys::from_material(&m)
}

/// One record's parts, measured apart. Returns (name, label, ns) rows.
fn parts(n: usize, runs: usize, secs: f64) -> Vec<(&'static str, String, f64)> {
    let k = keys(0);
    let cbc = Cbc::new(&k.enc);
    let mac = MacKey::new(&k.mac[..]);
    let pt = vec![0x5au8; n];
    let mut rows = Vec::new();
    let mut sealer = Sealer::new(k.clone());
    let mut out = Vec::with_capacity(n + 64);
    rows.push((
        "seal",
        "`Sealer::seal`, one record (today's path)".into(),
        median_ns(runs, secs, || {
            out.clear();
            let _ = black_box(sealer.seal(black_box(&pt), &mut out));
        }),
    ));
    let mut iv = [7u8; 16];
    rows.push((
        "aes_iv",
        "AES: the IV, E(K, \"sotto iv\" || seq), with its key schedule (encrypt and decrypt)".into(),
        median_ns(runs, secs, || cbc.encrypt_block(black_box(&mut iv))),
    ));
    let mut buf = pt.clone();
    rows.push((
        "aes_cbc",
        format!("AES: CBC over {n} B with its key schedule (encrypt and decrypt), through the `cbc` crate"),
        median_ns(runs, secs, || {
            let _ = cbc.encrypt(&[1u8; 16], black_box(&mut buf));
        }),
    ));
    rows.push((
        "aes_schedule",
        "AES: one encrypt-only key schedule (`Aes128Enc::new`)".into(),
        median_ns(runs, secs, || {
            black_box(cbc.block_encryptor());
        }),
    ));
    let enc = cbc.block_encryptor();
    rows.push((
        "aes_chain",
        format!("AES: the CBC chain alone over {n} B, key already expanded (block by block)"),
        median_ns(runs, secs, || {
            let mut prev = [1u8; 16];
            for c in black_box(&mut buf).chunks_exact_mut(16) {
                for (x, p) in c.iter_mut().zip(prev.iter()) {
                    *x ^= p;
                }
                if let Ok(b) = <&mut [u8; 16]>::try_from(c) {
                    enc.encrypt(b);
                    prev = *b;
                }
            }
        }),
    ));
    let rec = vec![0x33u8; 4 + 16 + n];
    rows.push((
        "hmac",
        format!("HMAC-SHA256 over seq, length, IV, ciphertext ({} B), from the keyed state", 8 + rec.len()),
        median_ns(runs, secs, || {
            black_box(mac.tag(&[&7u64.to_be_bytes(), black_box(&rec)]));
        }),
    ));
    rows.push((
        "sha256",
        format!("SHA-256 alone over the same {} B (no HMAC outer hash, no state copy)", 8 + rec.len()),
        median_ns(runs, secs, || {
            black_box(sotto::crypto::sha256(&[&7u64.to_be_bytes(), black_box(&rec)]));
        }),
    ));
    let tag = [9u8; 32];
    rows.push((
        "copy",
        format!("copy into the output: length, IV, {n} B of plaintext, tag (`Vec::extend_from_slice`)"),
        median_ns(runs, secs, || {
            out.clear();
            out.extend_from_slice(&[0, 0, 2, 0]);
            out.extend_from_slice(&iv);
            out.extend_from_slice(black_box(&pt));
            out.extend_from_slice(&tag);
            black_box(&out);
        }),
    ));
    rows
}

/// Per record: `ROOM` members' CBC chains (key expanded) run `lanes` at a time, no MAC.
fn interleaved_aes(n: usize, lanes: usize, runs: usize, secs: f64) -> f64 {
    let encs: Vec<_> = (0..ROOM).map(|i| Cbc::new(&keys(i).enc).block_encryptor()).collect();
    let mut bufs: Vec<Vec<u8>> = (0..ROOM).map(|_| vec![0x5au8; 16 + n]).collect();
    let width = ROOM.div_ceil(ROOM.div_ceil(lanes)); // even widths, as `seal_many`
    median_ns(runs, secs, || {
        for (es, bs) in encs.chunks(width).zip(bufs.chunks_mut(width)) {
            for b in 0..n / 16 {
                for (e, buf) in es.iter().zip(bs.iter_mut()) {
                    let (prev, cur) = buf[b * 16..b * 16 + 32].split_at_mut(16);
                    for (c, p) in cur.iter_mut().zip(prev.iter()) {
                        *c ^= p;
                    }
                    if let Ok(c) = <&mut [u8; 16]>::try_from(cur) {
                        e.encrypt(c);
                    }
                }
            }
        }
        black_box(&bufs);
    }) / ROOM as f64
}

/// Per record: `members` records sealed one by one, or by `seal_many` `lanes` at a time.
fn fan_out(n: usize, members: usize, lanes: Option<usize>, runs: usize, secs: f64) -> f64 {
    let mut sealers: Vec<Sealer> = (0..members).map(|i| Sealer::new(keys(i))).collect();
    let mut outs: Vec<Vec<u8>> = (0..members).map(|_| Vec::with_capacity(n + 64)).collect();
    let pt = vec![0x5au8; n];
    let ns = median_ns(runs, secs, || {
        for o in outs.iter_mut() {
            o.clear();
        }
        match lanes {
            None => {
                for (s, o) in sealers.iter_mut().zip(outs.iter_mut()) {
                    let _ = s.seal(&pt, o);
                }
            }
            Some(l) => {
                let mut ss: Vec<&mut Sealer> = sealers.iter_mut().collect();
                let mut os: Vec<&mut Vec<u8>> = outs.iter_mut().collect();
                let _ = match l {
                    1 => record::seal_many_lanes::<1>(&mut ss, &pt, &mut os),
                    2 => record::seal_many_lanes::<2>(&mut ss, &pt, &mut os),
                    4 => record::seal_many_lanes::<4>(&mut ss, &pt, &mut os),
                    _ => record::seal_many_lanes::<8>(&mut ss, &pt, &mut os),
                };
            }
        }
        black_box(&outs);
    });
    ns / members as f64
}

/// Runs the sealing breakdown and adds its table.
pub fn seal(quick: bool, r: &mut Report) {
    let (runs, secs) = if quick { (5, 0.05) } else { (9, 0.1) };
    let heads: Vec<String> = SIZES.iter().map(|(c, n)| format!("{c} ({n} B)")).collect();
    let s = r.section(
        "CPU budget of one delivery: sealing",
        "ns per record on one core, the median of several runs. Parts are measured apart, so they need not add \
         up exactly to the whole. Multi-buffer rows seal one plaintext for 9 members (a room of 10 but the \
         sender; each its own keys and sequence number) and divide by 9.",
        &["part", &heads[0], &heads[1]],
    );
    let mut cols: Vec<Vec<(&'static str, String, f64)>> = Vec::new();
    for (class, n) in SIZES {
        let mut rows = parts(n, runs, secs);
        for lanes in [1usize, 2, 4, 8] {
            rows.push((
                ["aes_lanes1", "aes_lanes2", "aes_lanes4", "aes_lanes8"][lanes.trailing_zeros() as usize],
                format!("AES: CBC chains of {ROOM} members, at most {lanes} side by side, key expanded (per record)"),
                interleaved_aes(n, lanes, runs, secs),
            ));
        }
        rows.push((
            "fan_single",
            format!("{ROOM} members: `Sealer::seal` for each (per record)"),
            fan_out(n, ROOM, None, runs, secs),
        ));
        for lanes in [1usize, 4, 8] {
            rows.push((
                ["many_lanes1", "", "many_lanes4", "many_lanes8"][lanes.trailing_zeros() as usize],
                format!("{ROOM} members: `seal_many`, at most {lanes} side by side (per record)"),
                fan_out(n, ROOM, Some(lanes), runs, secs),
            ));
        }
        rows.push((
            "many100",
            "100 members: `seal_many`, at most 8 side by side (per record)".into(),
            fan_out(n, 100, Some(8), runs, secs),
        ));
        if let Some(v) = openssl_ns(&["-evp", "aes-128-cbc-hmac-sha256"], n, quick) {
            rows.push(("openssl_stitched", "openssl speed -evp aes-128-cbc-hmac-sha256 (stitched)".into(), v));
        }
        if let Some(v) = openssl_ns(&["-evp", "aes-128-cbc"], n, quick) {
            rows.push(("openssl_cbc", "openssl speed -evp aes-128-cbc".into(), v));
        }
        if let Some(v) = openssl_ns(&["-hmac", "sha256"], n + 28, quick) {
            rows.push(("openssl_hmac", format!("openssl speed -hmac sha256 over {} B", n + 28), v));
        }
        for (name, _, v) in &rows {
            r.fig(&format!("seal.{class}.{name}_ns"), *v);
        }
        cols.push(rows);
    }
    let (a, b) = (&cols[0], &cols[1]);
    for (name, label, v) in a {
        let w = b.iter().find(|(m, _, _)| m == name).map_or("n/a".into(), |(_, _, w)| format!("{w:.0} ns"));
        r.row(s, vec![label.clone(), format!("{v:.0} ns"), w]);
    }
}

/// Bytes the room message's signature would shed with Ed25519 (256 -> 64).
pub const SIGNATURE_SAVING: usize = 256 - 64;

/// ns per write(2) of one `n`-byte record to a loopback TCP connection whose
/// other end a thread drains: the system-call part of a delivery, by size.
fn loopback_write_ns(n: usize, runs: usize, secs: f64) -> Option<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    let mut w = TcpStream::connect(listener.local_addr().ok()?).ok()?;
    let (mut r, _) = listener.accept().ok()?;
    w.set_nodelay(true).ok()?;
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(r.read(&mut buf), Ok(k) if k > 0) {}
    });
    let rec = vec![0x5au8; n];
    let ns = median_ns(runs, secs, || {
        let _ = black_box(w.write_all(black_box(&rec)));
    });
    drop(w);
    let _ = reader.join();
    Some(ns)
}

/// The room signature lever (issue: RSA-2048's 256 bytes on every delivery
/// against Ed25519's 64): the parts of a delivery that depend on the
/// record's size, measured for today's `rvrs` and for the same record 192
/// bytes shorter.
pub fn signature_lever(quick: bool, r: &mut Report) {
    let (runs, secs) = if quick { (5, 0.05) } else { (9, 0.1) };
    let n = SIZES[0].1;
    let short = n - SIGNATURE_SAVING;
    let s = r.section(
        "The room signature lever",
        "ns per delivery on one core, the median of several runs: the parts of one delivery of a short room \
         message that depend on the record's size, for today's `rvrs` (RSA-2048 signature, 256 bytes) and \
         for the same record with a 64-byte Ed25519 signature. Sealing is `seal_many` for the 9 other \
         members of a room of 10; the write is one record per write(2) to a loopback TCP connection (the \
         record layer adds 52 bytes).",
        &["part", &format!("RSA-2048 ({n} B)"), &format!("Ed25519 ({short} B)"), "saved"],
    );
    let rows = [
        ("seal_many", "sealing, `seal_many`, per record".to_owned(), fan_out(n, ROOM, Some(8), runs, secs), {
            fan_out(short, ROOM, Some(8), runs, secs)
        }),
        (
            "write",
            "one write(2) to loopback TCP".to_owned(),
            loopback_write_ns(n + 52, runs, secs).unwrap_or(f64::NAN),
            loopback_write_ns(short + 52, runs, secs).unwrap_or(f64::NAN),
        ),
    ];
    for (name, label, rsa, ed) in rows {
        r.fig(&format!("lever.signature.{name}.rsa_ns"), rsa);
        r.fig(&format!("lever.signature.{name}.ed25519_ns"), ed);
        r.row(s, vec![label, format!("{rsa:.0} ns"), format!("{ed:.0} ns"), format!("{:.0} ns", rsa - ed)]);
    }
}
