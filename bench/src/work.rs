//! The workloads against sottod (W1-W7) and the record-layer microbenchmark.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sotto::handshake::ClientConfig;
use sotto::opcodes::{CreateRoom, Heartbeat, JoinRoom, SendRoomMessageS, PONG};
use sotto::wire;
use zerocopy::FromZeros;

use crate::engine::{self, Event, Mode, Peer};
use crate::proto::{BenchIdentity, Session};
use crate::report::{rate, Report};
use crate::server::Sottod;
use crate::stats::{us, Samples};
use crate::sys;

/// What every workload needs.
pub struct Ctx {
    pub quick: bool,
    pub cfg: ClientConfig,
    pub id: BenchIdentity,
    /// Core for the server under test (the generator runs on the other).
    pub server_cpu: Option<usize>,
}

impl Ctx {
    /// The generator's core (cpu 1 when the server has cpu 0), where a
    /// second node goes: woken, it takes the core from the generator, which
    /// runs at nice +10 in the sections with several server processes.
    pub fn generator_cpu(&self) -> Option<usize> {
        self.server_cpu.map(|_| 1)
    }
}

/// Bench accounts' stored hashes: cheap, so that thousands of logins do not
/// dominate a set-up (W1 measures logins at the default cost separately).
pub const CHEAP_KDF: &[&str] = &["--kdf-memory", "8"];

pub(crate) fn err(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

/// Runs `f(i)` for i in 0..n on `threads` threads; the first error wins.
fn parallel<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> io::Result<T> + Sync) -> io::Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(n));
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n || failed.lock().unwrap().is_some() {
                    return;
                }
                match f(i) {
                    Ok(v) => out.lock().unwrap().push((i, v)),
                    Err(e) => *failed.lock().unwrap() = Some(e),
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    let mut v = out.into_inner().unwrap();
    v.sort_by_key(|(i, _)| *i);
    Ok(v.into_iter().map(|(_, t)| t).collect())
}

/// Registers `names` (8 at a time).
pub(crate) fn register_all(ctx: &Ctx, addr: SocketAddr, names: &[String]) -> io::Result<()> {
    parallel(names.len(), 8, |i| ctx.id.register(addr, &ctx.cfg, &names[i])).map(drop)
}

/// A logged-in session of `names[i % names.len()]` for i in 0..n.
pub(crate) fn login_all(ctx: &Ctx, addr: SocketAddr, names: &[String], n: usize) -> io::Result<Vec<Session>> {
    parallel(n, 8, |i| {
        let mut s = Session::connect(addr, &ctx.cfg)?;
        s.login(&names[i % names.len()])?;
        Ok(s)
    })
}

/// As [`login_all`], session `i` through `addrs[i % addrs.len()]` (users
/// spread over a writer and its edges).
pub(crate) fn login_spread(ctx: &Ctx, addrs: &[SocketAddr], names: &[String], n: usize) -> io::Result<Vec<Session>> {
    parallel(n, 8, |i| {
        let mut s = Session::connect(addrs[i % addrs.len()], &ctx.cfg)?;
        s.login(&names[i % names.len()])?;
        Ok(s)
    })
}

pub(crate) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Payload: sequence number and send time at the start of the ciphertext.
pub(crate) fn stamp(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_be_bytes());
}

pub(crate) fn seq_of(buf: &[u8]) -> u64 {
    u64::from_be_bytes(buf[..8].try_into().unwrap_or_default())
}

/// A short room message: protocol 2's smallest size class, as a line of chat.
pub(crate) fn room_message(room: &str, seq: u64) -> SendRoomMessageS {
    let mut m = SendRoomMessageS::new_zeroed();
    let _ = m.head.set_room(room);
    stamp(&mut m.ciphertext, seq);
    m
}

/// Creates `room` from `owner` and joins every session in `members`.
pub(crate) fn make_room(owner: &mut Session, members: &mut [Session], room: &str) -> io::Result<()> {
    let auth = sotto::crypto::random::<32>();
    let mut c = CreateRoom::new_zeroed();
    let _ = c.set_room(room);
    c.salt = sotto::crypto::random();
    c.verifier = sotto::room::verifier(&auth);
    owner.call(c)?;
    for chunk in members.chunks_mut(64) {
        // Pipelined: each join's answer is awaited after all of the chunk were sent.
        let ids: Vec<u64> = chunk
            .iter_mut()
            .map(|s| {
                let mut j = JoinRoom::new_zeroed();
                let _ = j.set_room(room);
                j.auth_key = auth;
                let id = s.queue(j);
                let _ = s.flush();
                id
            })
            .collect();
        for (s, id) in chunk.iter_mut().zip(ids) {
            s.wait_stat(id)?;
        }
    }
    Ok(())
}

/// Reads and drops whatever sessions have buffered (member events after joins).
pub(crate) fn drain(sessions: &mut [Session], quiet: Duration) {
    for s in sessions.iter_mut() {
        while let Ok(Some(_)) = s.recv(Some(quiet)) {}
    }
}

// ---------------------------------------------------------------- microbenchmark

/// Record-layer seal and open next to `openssl speed` for the same primitives.
pub fn micro(ctx: &Ctx, r: &mut Report) {
    let s = r.section(
        "Record layer: seal and open vs openssl speed",
        "ns per record on one core. The physical limit is `openssl speed` (AES-128-CBC and HMAC-SHA256, \
         OpenSSL's assembly) for the same bytes: seal = CBC-encrypt(n) + HMAC(n + 28), open = HMAC(n + 28) + \
         CBC-decrypt(n). Target: within 1.5× of it.",
        &["plaintext", "seal", "open", "openssl seal", "openssl open", "seal / openssl", "open / openssl"],
    );
    let secs = if ctx.quick { 0.3 } else { 1.0 };
    for n in [64usize, 256, 1024] {
        let keys = sotto::crypto::AeadKeys::from_material(&[7u8; 48]);
        let mut sealer = sotto::record::Sealer::new(keys.clone());
        let pt = vec![0x5au8; n];
        let mut out = Vec::with_capacity(n + 64);
        let (mut iters, t) = (0u64, Instant::now());
        let mut records = Vec::new();
        while t.elapsed().as_secs_f64() < secs {
            for _ in 0..256 {
                out.clear();
                let _ = sealer.seal(&pt, &mut out);
                if records.len() < 4096 {
                    records.push(out[4..].to_vec());
                }
            }
            iters += 256;
        }
        let seal_ns = t.elapsed().as_nanos() as f64 / iters as f64;
        // Open the records in order (sequence numbers are implicit), reopening from 0 as needed.
        let (mut opened, t) = (0u64, Instant::now());
        while t.elapsed().as_secs_f64() < secs {
            let mut opener = sotto::record::Opener::new(keys.clone());
            for rec in &records {
                let _ = std::hint::black_box(opener.open(rec));
            }
            opened += records.len() as u64;
        }
        let open_ns = t.elapsed().as_nanos() as f64 / opened as f64;
        let aes_enc = openssl_ns(&["-evp", "aes-128-cbc"], n, ctx.quick);
        let aes_dec = openssl_ns(&["-decrypt", "-evp", "aes-128-cbc"], n, ctx.quick);
        let mac = openssl_ns(&["-hmac", "sha256"], n + 28, ctx.quick);
        let (ossl_seal, ossl_open) = match (aes_enc, aes_dec, mac) {
            (Some(e), Some(d), Some(m)) => (Some(e + m), Some(d + m)),
            _ => (None, None),
        };
        r.fig(&format!("micro.{n}.seal_ns"), seal_ns);
        r.fig(&format!("micro.{n}.open_ns"), open_ns);
        if let (Some(a), Some(b)) = (ossl_seal, ossl_open) {
            r.fig(&format!("micro.{n}.seal_ratio"), seal_ns / a);
            r.fig(&format!("micro.{n}.open_ratio"), open_ns / b);
        }
        let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.0} ns"));
        r.row(
            s,
            vec![
                format!("{n} B"),
                format!("{seal_ns:.0} ns"),
                format!("{open_ns:.0} ns"),
                f(ossl_seal),
                f(ossl_open),
                crate::report::ratio(Some(seal_ns), ossl_seal),
                crate::report::ratio(Some(open_ns), ossl_open),
            ],
        );
    }
}

/// ns per operation of `openssl speed` on `bytes`-byte buffers.
pub(crate) fn openssl_ns(alg: &[&str], bytes: usize, quick: bool) -> Option<f64> {
    let secs = if quick { "1" } else { "2" };
    let out = std::process::Command::new("openssl")
        .args(["speed", "-mr", "-seconds", secs, "-bytes", &bytes.to_string()])
        .args(alg)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("+F:"))?;
    let bps: f64 = line.rsplit(':').next()?.trim().parse().ok()?;
    (bps > 0.0).then(|| bytes as f64 / bps * 1e9)
}

// ---------------------------------------------------------------- W1

/// Handshakes at `inflight` concurrency: (handshakes/s, latency samples).
/// The load threads run at nice +10: W1's probe thread shares their core
/// and measures the server, not its wait behind hundreds of them.
pub fn handshakes(n: usize, inflight: usize, one: impl Fn() -> io::Result<()> + Sync) -> io::Result<(f64, Samples)> {
    let samples = Mutex::new(Samples::default());
    let started = Instant::now();
    parallel(n, inflight, |_| {
        sys::nice_thread();
        let t = Instant::now();
        one()?;
        samples.lock().unwrap().push(t.elapsed());
        Ok(())
    })?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    Ok((rate, samples.into_inner().unwrap()))
}

/// Heartbeat round trips of an established session every `every` until
/// `stop`; an error when a pong takes longer than `patience`.
pub(crate) fn probe(s: &mut Session, stop: &AtomicBool, every: Duration, patience: Duration) -> io::Result<Samples> {
    let mut lat = Samples::default();
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        s.queue(Heartbeat::new_zeroed());
        s.flush()?;
        loop {
            let m = s.recv(Some(patience))?.ok_or_else(|| err(format!("no pong within {patience:?}")))?;
            if wire::header(&m).map(|h| h.opcode.get()) == Ok(PONG) {
                break;
            }
        }
        lat.push(t.elapsed());
        std::thread::sleep(every);
    }
    Ok(lat)
}

pub fn w1(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W1 handshakes (sotto)",
        "New connections through the sotto handshake (X25519, the server's RSA-2048 PSS signature, HKDF), \
         closed at once. `probe p99` is the heartbeat round trip of an established session during the run: \
         signing must not stall the loop (target below 5 ms). The connecting threads run at nice +10 so that \
         the probe, on the same core, does not wait behind them.",
        &["server", "connects", "in flight", "handshakes/s", "p50", "p99", "p99.9", "probe p99"],
    );
    let n = if ctx.quick { 1000 } else { 5000 };
    let srv = Sottod::start(ctx.server_cpu, CHEAP_KDF)?;
    register_all(ctx, srv.addr, &names("probe", 1))?;
    for inflight in [64, 256] {
        let mut p = Session::connect(srv.addr, &ctx.cfg)?;
        p.login("probe0")?;
        let stop = AtomicBool::new(false);
        let ((rate_, mut lat), mut probe_lat) = std::thread::scope(|sc| {
            let h = sc.spawn(|| probe(&mut p, &stop, Duration::from_millis(5), Duration::from_secs(10)));
            let res = handshakes(n, inflight, || Session::connect(srv.addr, &ctx.cfg).map(drop));
            stop.store(true, Ordering::SeqCst);
            let pl = h.join().map_err(|_| err("probe panicked"))?;
            Ok::<_, io::Error>((res?, pl?))
        })?;
        let l = lat.summary();
        let probe99 = probe_lat.percentile(99.0);
        r.fig(&format!("w1.sotto.{inflight}.rate"), rate_);
        r.fig(&format!("w1.sotto.{inflight}.probe_p99_us"), probe99.as_secs_f64() * 1e6);
        r.row(
            s,
            vec![
                "sottod".into(),
                n.to_string(),
                inflight.to_string(),
                rate(rate_),
                us(l.p50),
                us(l.p99),
                us(l.p999),
                us(probe99),
            ],
        );
    }
    drop(srv);

    // Through login and passphrase, at the default argon2id cost (19 MiB, two hashes per login).
    let srv = Sottod::start(ctx.server_cpu, &[])?;
    let users = names("w1u", 16);
    register_all(ctx, srv.addr, &users)?;
    let n = if ctx.quick { 48 } else { 200 };
    let i = AtomicUsize::new(0);
    let (rate_, mut lat) = handshakes(n, 16, || {
        let k = i.fetch_add(1, Ordering::SeqCst);
        let mut s = Session::connect(srv.addr, &ctx.cfg)?;
        s.login(&users[k % users.len()])
    })?;
    let l = lat.summary();
    r.fig("w1.sotto.login.rate", rate_);
    r.row(
        s,
        vec![
            "sottod, through login (argon2id 19 MiB × 2)".into(),
            n.to_string(),
            "16".into(),
            rate(rate_),
            us(l.p50),
            us(l.p99),
            us(l.p999),
            "-".into(),
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------- W2

pub fn w2(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W2 idle authenticated connections (sotto)",
        "Logged-in sessions that only send a heartbeat every 10 s. RSS per connection is the server's \
         resident set growth divided by the connections (kernel socket buffers are not in it). Target: \
         at most 4 KiB per connection at 10,000; 15,000 held.",
        &["server", "connections", "RSS/conn", "idle CPU", "heartbeat p50", "heartbeat p99", "held at most"],
    );
    let sizes: &[usize] = if ctx.quick { &[1000] } else { &[1000, 10_000] };
    for &n in sizes {
        let srv = Sottod::start(ctx.server_cpu, CHEAP_KDF)?;
        let users = names("w2u", 100);
        register_all(ctx, srv.addr, &users)?;
        std::thread::sleep(Duration::from_millis(300));
        let base = srv.rss_kib();
        let sessions = login_all(ctx, srv.addr, &users, n)?;
        std::thread::sleep(Duration::from_millis(500));
        let per = (srv.rss_kib().saturating_sub(base)) as f64 * 1024.0 / n as f64;
        let mut peers: Vec<Peer> = sessions.into_iter().map(|s| Peer::new(s, Mode::Open)).collect::<io::Result<_>>()?;
        // Heartbeats every 10 s, spread evenly; measure their round trips.
        let secs = if ctx.quick { 3 } else { 10 };
        let start = Instant::now();
        let cpu0 = sys::cpu_time(srv.pid());
        let period = Duration::from_secs(10);
        let mut next = 0usize;
        let sent_at: RefCell<Vec<Option<Instant>>> = RefCell::new(vec![None; n]);
        let mut lat = Samples::default();
        engine::drive(
            &mut peers,
            start + Duration::from_secs(secs),
            Duration::from_millis(5),
            |now, peers| {
                // Connection i pings at start + i/n * period (+ k * period).
                while next < n * (secs as usize / 10 + 1)
                    && now >= start + period.mul_f64((next % n) as f64 / n as f64) + period * (next / n) as u32
                {
                    let i = next % n;
                    peers[i].s.queue(Heartbeat::new_zeroed());
                    sent_at.borrow_mut()[i] = Some(now);
                    next += 1;
                }
                true
            },
            |now, ev, _| pong(now, &ev, &sent_at, &mut lat),
        )?;
        let cpu = (sys::cpu_time(srv.pid()) - cpu0).as_secs_f64() / start.elapsed().as_secs_f64();
        let held = if n == *sizes.last().unwrap_or(&0) && !ctx.quick {
            let mut extra = Vec::new();
            let mut total = n;
            // As many as the machine allows: a thousand more at a time until a connect
            // fails or the descriptor limit (the generator's; sottod has the same) is near.
            let limit = usize::try_from(sys::raise_nofile()).unwrap_or(0).saturating_sub(200);
            while total + 1000 <= limit.min(60_000) {
                match login_all(ctx, srv.addr, &users, 1000) {
                    Ok(v) => {
                        extra.extend(v);
                        total += 1000;
                    }
                    Err(_) => break,
                }
            }
            r.fig("w2.sotto.max_held", total as f64);
            rate(total as f64)
        } else {
            "-".into()
        };
        let l = lat.summary();
        r.fig(&format!("w2.sotto.{n}.rss_per_conn"), per);
        r.fig(&format!("w2.sotto.{n}.hb_p99_us"), l.p99.as_secs_f64() * 1e6);
        r.row(
            s,
            vec![
                "sottod".into(),
                rate(n as f64),
                format!("{:.2} KiB", per / 1024.0),
                format!("{:.1}%", cpu * 100.0),
                us(l.p50),
                us(l.p99),
                held,
            ],
        );
    }
    Ok(())
}

/// A heartbeat answer to session `i`: its round trip since `sent_at[i]`.
pub(crate) fn pong(now: Instant, ev: &Event<'_>, sent_at: &RefCell<Vec<Option<Instant>>>, lat: &mut Samples) {
    if let Event::Message(i, m) = ev {
        if wire::header(m).map(|h| h.opcode.get()) == Ok(PONG) {
            if let Some(t) = sent_at.borrow_mut()[*i].take() {
                lat.push(now - t);
            }
        }
    }
}
