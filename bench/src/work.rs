//! The workloads against sottod (W1-W7) and the record-layer microbenchmark.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sotto::handshake::ClientConfig;
use sotto::opcodes::{
    Class, CreateRoom, DmAccept, DmRequest, Heartbeat, JoinRoom, ReceiveDmHead, ReceiveRoomMessageS, SendDmHead,
    SendDmM, SendDmS, SendRoomMessageS, DMST, PONG, RVRS, RVUS,
};
use sotto::wire::{self, Classed};
use zerocopy::{FromBytes, FromZeros};

use crate::engine::{self, Event, Mode, Peer};
use crate::proto::{BenchIdentity, Session};
use crate::report::{rate, Report};
use crate::server::Sottod;
use crate::stats::{median, us, Samples};
use crate::sys;

/// What every workload needs.
pub struct Ctx {
    pub quick: bool,
    pub cfg: ClientConfig,
    pub id: BenchIdentity,
    /// Core for the server under test (the generator runs on the other).
    pub server_cpu: Option<usize>,
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

pub(crate) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Payload: sequence number and send time at the start of the ciphertext.
fn stamp(buf: &mut [u8], seq: u64) {
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

/// Heartbeat round trips of an established session every 5 ms until `stop`.
fn probe(s: &mut Session, stop: &AtomicBool) -> io::Result<Samples> {
    let mut lat = Samples::default();
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        s.queue(Heartbeat::new_zeroed());
        s.flush()?;
        loop {
            let m = s.recv(Some(Duration::from_secs(10)))?.ok_or_else(|| err("no pong within 10 s"))?;
            if wire::header(&m).map(|h| h.opcode.get()) == Ok(PONG) {
                break;
            }
        }
        lat.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
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
            let h = sc.spawn(|| probe(&mut p, &stop));
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
fn pong(now: Instant, ev: &Event<'_>, sent_at: &RefCell<Vec<Option<Instant>>>, lat: &mut Samples) {
    if let Event::Message(i, m) = ev {
        if wire::header(m).map(|h| h.opcode.get()) == Ok(PONG) {
            if let Some(t) = sent_at.borrow_mut()[*i].take() {
                lat.push(now - t);
            }
        }
    }
}

// ---------------------------------------------------------------- open-loop fan-out (W4, W5)

/// W4's half-load step runs this many times, and its p99 is the median of
/// theirs: one step's p99 moves with a single scheduler stall of the VM.
pub const HALF_REPEATS: usize = 3;

/// How one step of a saturation search went.
pub enum StepVerdict<T> {
    /// The load was kept up with: its outcome (deliveries/s first).
    Kept(f64, T),
    /// Everything arrived, within the wait, but too late: over the saturation point.
    Slow,
    /// Not everything arrived, or the setup broke: later steps would be
    /// polluted by the backlog, so the search ends here.
    Broken,
}

/// The W4 saturation search, the same for sotto and the peers: the offered
/// load (messages/s) doubles from `start` until a step fails, then bisects
/// (geometrically) between the last kept and the first failed load, three
/// times in a full run (a factor of 1.09) and twice in a quick one, unless a
/// step breaks. Returns the highest kept load and its outcome.
pub fn saturate<T>(start: f64, quick: bool, mut step: impl FnMut(f64) -> StepVerdict<T>) -> Option<(f64, (f64, T))> {
    let mut best: Option<(f64, (f64, T))> = None;
    let mut load = start;
    let mut failed = None;
    for _ in 0..14 {
        match step(load) {
            StepVerdict::Kept(rate, t) => best = Some((load, (rate, t))),
            StepVerdict::Slow => {
                failed = Some(load);
                break;
            }
            StepVerdict::Broken => return best,
        }
        load *= 2.0;
    }
    let (Some(mut hi), Some(mut lo)) = (failed, best.as_ref().map(|b| b.0)) else { return best };
    for _ in 0..if quick { 2 } else { 3 } {
        let mid = (lo * hi).sqrt();
        match step(mid) {
            StepVerdict::Kept(rate, t) => {
                best = Some((mid, (rate, t)));
                lo = mid;
            }
            StepVerdict::Slow => hi = mid,
            StepVerdict::Broken => break,
        }
    }
    best
}

/// One open-loop step of room traffic: publishers `peers[..p]`, witness
/// `peers[p]`, counted members after it. Returns (deliveries/s achieved,
/// last-recipient latencies, all delivered).
struct Step {
    deliveries_per_s: f64,
    lat: Samples,
    complete: bool,
    peak_rss_kib: u64,
}

fn fanout_step(
    peers: &mut [Peer],
    p: usize,
    room: &str,
    msgs_per_s: f64,
    secs: f64,
    server_pid: u32,
    stalled: Option<usize>,
) -> io::Result<Step> {
    let m = peers.len();
    let base: Vec<u64> = peers.iter().map(|q| q.frames).collect();
    let interval = Duration::from_secs_f64(1.0 / msgs_per_s);
    let total = (msgs_per_s * secs).round().max(1.0) as usize;
    let start = Instant::now() + Duration::from_millis(5);
    let mut sent: Vec<Instant> = Vec::with_capacity(total);
    // Per frame index (same for every non-publisher member): witness order, arrivals, latest arrival.
    let mut order: Vec<u64> = Vec::with_capacity(total);
    let mut arrivals: Vec<u32> = vec![0; total];
    let mut last: Vec<Option<Instant>> = vec![None; total];
    let expected = (m - p - usize::from(stalled.is_some())) as u32; // witness + counted, minus a stalled one
    let delivered = Cell::new(0usize);
    let mut peak = 0u64;
    let mut next_rss = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs) + Duration::from_secs(3);
    engine::drive(
        peers,
        deadline,
        Duration::ZERO,
        |now, peers| {
            while sent.len() < total && now >= start + interval * sent.len() as u32 {
                let k = sent.len();
                peers[k % p].s.queue(room_message(room, k as u64));
                sent.push(start + interval * k as u32);
            }
            if now >= next_rss {
                peak = peak.max(sys::rss_kib(server_pid));
                next_rss = now + Duration::from_millis(100);
            }
            !(sent.len() == total && delivered.get() == total)
        },
        |now, ev, _| {
            let mut arrive = |f: usize| {
                if f < total {
                    arrivals[f] += 1;
                    last[f] = Some(last[f].map_or(now, |t: Instant| t.max(now)));
                    if arrivals[f] == expected {
                        delivered.set(delivered.get() + 1);
                    }
                }
            };
            match ev {
                Event::Message(i, msg) if i == p => {
                    if let Ok(rm) = ReceiveRoomMessageS::read_from_bytes(msg) {
                        if rm.hdr.opcode.get() == RVRS {
                            order.push(seq_of(&rm.ciphertext));
                            arrive(order.len() - 1);
                        }
                    }
                }
                Event::Counted(i, first, n) if i > p => {
                    for f in first..first + n {
                        arrive((f - base[i]) as usize);
                    }
                }
                _ => {}
            }
        },
    )?;
    let mut lat = Samples::default();
    for (f, seq) in order.iter().enumerate() {
        if let (Some(t), Some(s)) = (last.get(f).copied().flatten(), sent.get(*seq as usize)) {
            if arrivals[f] >= expected {
                lat.push(t.saturating_duration_since(*s));
            }
        }
    }
    let elapsed = secs.max(1e-3);
    let delivered = delivered.get();
    let complete = delivered == total;
    if !complete && std::env::var_os("SOTTO_BENCH_DEBUG").is_some() {
        let got: Vec<u64> = peers.iter().zip(&base).map(|(q, b)| q.frames - b).collect();
        eprintln!("fan-out step incomplete: {delivered} of {total} at every member; frames per member {got:?}; witness saw {}", order.len());
    }
    // Deliveries: every member but the sender gets each message.
    let deliveries_per_s = delivered as f64 * (m - 1) as f64 / elapsed;
    Ok(Step { deliveries_per_s, lat, complete, peak_rss_kib: peak })
}

/// Where and how W4's sottod runs: its core, flags besides the cheap KDF,
/// and the parent of its data directory (None: the system's temporary
/// directory, on this machine's disk).
#[derive(Clone, Copy, Default)]
pub struct Placement<'a> {
    pub cpu: Option<usize>,
    pub flags: &'a [&'a str],
    pub data_in: Option<&'a Path>,
}

/// Sets up a room of `m` members on a sottod placed as `at`: (server, peers).
fn fanout_setup(ctx: &Ctx, m: usize, room: &str, at: Placement<'_>) -> io::Result<(Sottod, Vec<Peer>)> {
    let srv = Sottod::start_in(at.cpu, &[CHEAP_KDF, at.flags].concat(), at.data_in)?;
    let users = names("w4u", m);
    register_all(ctx, srv.addr, &users)?;
    let mut sessions = login_all(ctx, srv.addr, &users, m)?;
    let (owner, rest) = sessions.split_first_mut().ok_or_else(|| err("empty room"))?;
    make_room(owner, rest, room)?;
    drain(&mut sessions, Duration::from_millis(50));
    Ok((srv, sessions.into_iter().map(|s| Peer::new(s, Mode::Count)).collect::<io::Result<_>>()?))
}

pub fn w4(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W4 room fan-out (sotto)",
        "Open loop: publishers send at a fixed rate, doubled from 20,000 deliveries/s until the room no \
         longer keeps up (p99 over 50 ms; a message not at every member within 3 s of the step's end, or a \
         member dropped, ends the search), then bisected three times between the last good and the first \
         failed rate (twice in a quick run): the same search for every server. Latency is to the last \
         recipient, from the scheduled send time. `max deliveries/s` is the best step that kept up; \
         `p99 @ half` is the last-recipient p99 at half of that load (target below 1 ms), the median of \
         three steps' p99s. sottod commits every room message to its data directory (the acknowledgement \
         waits for it; the delivery does not): the last sottod row is the room of 10 again with the data \
         directory on tmpfs, to show what the disk under it costs.",
        &["server", "members", "publishers", "max deliveries/s", "p50 @ max", "p99 @ max", "p99 @ half"],
    );
    let sizes: &[usize] = if ctx.quick { &[10] } else { &[10, 100, 1000] };
    let publishers: &[usize] = if ctx.quick { &[1] } else { &[1, 5] };
    let secs = if ctx.quick { 0.6 } else { 1.0 };
    for &m in sizes {
        for &p in publishers {
            let at = Placement { cpu: ctx.server_cpu, ..Placement::default() };
            let Some(best) = fanout_search(ctx, m, p, secs, at)? else {
                r.row(s, vec!["sottod".into(), m.to_string(), p.to_string(), "did not keep up".into()]);
                continue;
            };
            r.fig(&format!("w4.sotto.{m}.{p}.deliveries"), best.rate);
            r.fig(&format!("w4.sotto.{m}.{p}.p99_half_us"), best.half99.as_secs_f64() * 1e6);
            r.row(s, fanout_row("sottod", m, p, &best));
        }
    }
    // The same room of 10 with the data directory in memory: what the disk
    // under it costs the latency (every room message is committed).
    let shm = Path::new(TMPFS);
    let at = Placement { cpu: ctx.server_cpu, data_in: Some(shm), ..Placement::default() };
    let label = format!("sottod, data directory on tmpfs ({TMPFS})");
    if !shm.is_dir() {
        r.row(s, vec![label, "10".into(), "1".into(), format!("not measured: no {TMPFS} here")]);
    } else if let Some(best) = fanout_search(ctx, 10, 1, secs, at)? {
        r.fig("w4.sotto_tmpfs.10.1.deliveries", best.rate);
        r.fig("w4.sotto_tmpfs.10.1.p99_half_us", best.half99.as_secs_f64() * 1e6);
        r.row(s, fanout_row(&label, 10, 1, &best));
    } else {
        r.row(s, vec![label, "10".into(), "1".into(), "did not keep up".into()]);
    }
    Ok(())
}

/// Where W4 puts a data directory in memory, for comparison.
pub const TMPFS: &str = "/dev/shm";

fn fanout_row(server: &str, m: usize, p: usize, best: &FanoutBest) -> Vec<String> {
    vec![server.into(), m.to_string(), p.to_string(), rate(best.rate), us(best.p50), us(best.p99), us(best.half99)]
}

/// The outcome of W4's search for one room.
pub struct FanoutBest {
    /// Deliveries per second at the best step that kept up.
    pub rate: f64,
    /// Last-recipient latency at that step.
    pub p50: Duration,
    pub p99: Duration,
    /// The median of three steps' p99s at half that load.
    pub half99: Duration,
    /// CPU time of each sottod thread during the best step, by thread name.
    pub cpu_by_thread: Vec<(String, Duration)>,
    /// Deliveries made in the best step.
    pub delivered: f64,
}

/// W4's search for a room of `m` with `p` publishers on a sottod placed as
/// `at`; None when not even the first step kept up.
pub fn fanout_search(ctx: &Ctx, m: usize, p: usize, secs: f64, at: Placement<'_>) -> io::Result<Option<FanoutBest>> {
    let (srv, mut peers) = fanout_setup(ctx, m, "w4", at)?;
    for (i, q) in peers.iter_mut().enumerate() {
        q.mode = if i == p { Mode::Open } else { Mode::Count };
    }
    let mut overloaded = false;
    let best = saturate(20_000.0 / (m - 1) as f64, ctx.quick, |msgs| {
        let cpu0 = sys::cpu_time(srv.pid());
        let threads0 = sys::thread_cpu(srv.pid());
        let step = fanout_step(&mut peers, p, "w4", msgs, secs, srv.pid(), None);
        let by_thread: Vec<(String, Duration)> = sys::thread_cpu(srv.pid())
            .iter()
            .zip(&threads0)
            .filter(|((a, _), (b, _))| a == b)
            .map(|((a, t1), (_, t0))| (a.clone(), t1.saturating_sub(*t0)))
            .collect();
        if std::env::var_os("SOTTO_BENCH_DEBUG").is_some() {
            let cpu = sys::cpu_time(srv.pid()).saturating_sub(cpu0);
            let shown: Vec<String> = by_thread.iter().map(|(a, t)| format!("{a} {t:?}")).collect();
            eprintln!("W4 {m}x{p} step {msgs:.0} msgs/s: threads {}", shown.join(", "));
            match &step {
                Ok(st) => eprintln!(
                    "W4 {m}x{p} step {msgs:.0} msgs/s: complete {}, p99 {:?}, server cpu {cpu:?}",
                    st.complete,
                    st.lat.clone().percentile(99.0)
                ),
                Err(e) => eprintln!("W4 {m}x{p} step {msgs:.0} msgs/s: {e}, server cpu {cpu:?}"),
            }
        }
        // Past saturation sottod may drop a member as a slow consumer:
        // that step failed, and the room is no longer whole.
        let Ok(st) = step else {
            overloaded = true;
            return StepVerdict::Broken;
        };
        if !st.complete {
            // Its backlog would still be arriving: the half-load step gets a fresh room.
            overloaded = true;
            StepVerdict::Broken
        } else if st.lat.clone().percentile(99.0) >= Duration::from_millis(50) {
            StepVerdict::Slow
        } else {
            StepVerdict::Kept(st.deliveries_per_s, (st, by_thread))
        }
    });
    let Some((best_msgs, (best_rate, (mut st, cpu_by_thread)))) = best else { return Ok(None) };
    let (srv, mut peers) = if overloaded {
        // A fresh room: the overloaded one lost a member.
        drop((srv, peers));
        let (srv, mut peers) = fanout_setup(ctx, m, "w4", at)?;
        for (i, q) in peers.iter_mut().enumerate() {
            q.mode = if i == p { Mode::Open } else { Mode::Count };
        }
        (srv, peers)
    } else {
        (srv, peers)
    };
    let mut p99s = Vec::new();
    for _ in 0..HALF_REPEATS {
        let mut half = fanout_step(&mut peers, p, "w4", best_msgs / 2.0, secs, srv.pid(), None)?;
        p99s.push(half.lat.percentile(99.0).as_secs_f64());
    }
    let half99 = Duration::from_secs_f64(median(p99s));
    Ok(Some(FanoutBest {
        rate: best_rate,
        p50: st.lat.percentile(50.0),
        p99: st.lat.percentile(99.0),
        half99,
        cpu_by_thread,
        delivered: best_rate * secs,
    }))
}

pub fn w5(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W5 slow consumer (sotto)",
        "A room of 100, one publisher at 200 messages/s; then one member stops reading. The server's \
         memory stays bounded (it drops the member once its output passes 1 MiB) and the others' p99 does \
         not move.",
        &["server", "p99 all reading", "p99 one stalled", "peak RSS all reading", "peak RSS one stalled"],
    );
    let (srv, mut peers) = fanout_setup(ctx, 100, "w5", Placement { cpu: ctx.server_cpu, ..Placement::default() })?;
    peers[1].mode = Mode::Open;
    let secs = if ctx.quick { 2.0 } else { 5.0 };
    let mut before = fanout_step(&mut peers, 1, "w5", 200.0, secs, srv.pid(), None)?;
    let last = peers.len() - 1;
    peers[last].mode = Mode::Stalled;
    let mut during = fanout_step(&mut peers, 1, "w5", 200.0, secs * 2.0, srv.pid(), Some(last))?;
    r.fig("w5.sotto.p99_before_us", before.lat.percentile(99.0).as_secs_f64() * 1e6);
    r.fig("w5.sotto.p99_during_us", during.lat.percentile(99.0).as_secs_f64() * 1e6);
    r.row(
        s,
        vec![
            "sottod".into(),
            us(before.lat.percentile(99.0)),
            us(during.lat.percentile(99.0)),
            format!("{} MiB", before.peak_rss_kib / 1024),
            format!("{} MiB", during.peak_rss_kib / 1024),
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------- W6

pub fn w6(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W6 burst fairness (sotto)",
        "One client pipelines room messages to a second member as fast as that member takes them (at most \
         512 ahead of it, within the server's 1 MiB output bound), while ten other sessions measure \
         heartbeat round trips every 10 ms.",
        &["server", "burst messages", "burst msgs/s", "others p50", "others p99", "others p99 without burst"],
    );
    let n = if ctx.quick { 20_000 } else { 100_000 };
    let srv = Sottod::start(ctx.server_cpu, CHEAP_KDF)?;
    let users = names("w6u", 12);
    register_all(ctx, srv.addr, &users)?;
    let mut sessions = login_all(ctx, srv.addr, &users, 12)?;
    {
        let (a, rest) = sessions.split_first_mut().ok_or_else(|| err("no sessions"))?;
        make_room(a, &mut rest[..1], "burst")?;
    }
    drain(&mut sessions, Duration::from_millis(50));
    let mut peers: Vec<Peer> = sessions.into_iter().map(|s| Peer::new(s, Mode::Open)).collect::<io::Result<_>>()?;
    peers[0].mode = Mode::Count;
    peers[1].mode = Mode::Count;
    let run = |burst: usize, peers: &mut [Peer]| -> io::Result<(Samples, f64)> {
        let mut lat = Samples::default();
        let sent_at: RefCell<Vec<Option<Instant>>> = RefCell::new(vec![None; peers.len()]);
        let mut next_ping = Instant::now();
        let mut queued = 0usize;
        let base = peers[1].frames;
        let start = Instant::now();
        let mut done_at = None;
        let secs = if burst == 0 { 2.0 } else { 120.0 };
        engine::drive(
            peers,
            start + Duration::from_secs_f64(secs),
            Duration::from_millis(1),
            |now, peers| {
                // Pipelined as far as the receiving member keeps up: at most 512
                // messages ahead of it (about 750 KiB), else the server would rightly
                // drop that member as a slow consumer (its output bound is 1 MiB).
                let received = (peers[1].frames - base) as usize;
                while queued < burst && queued < received + 512 && peers[0].s.pending() < 1 << 20 {
                    peers[0].s.queue(room_message("burst", queued as u64));
                    queued += 1;
                }
                if now >= next_ping {
                    for (i, q) in peers.iter_mut().enumerate().skip(2) {
                        let mut sa = sent_at.borrow_mut();
                        if sa[i].is_none() {
                            q.s.queue(Heartbeat::new_zeroed());
                            sa[i] = Some(now);
                        }
                    }
                    next_ping = now + Duration::from_millis(10);
                }
                let received = peers[1].frames - base;
                if burst > 0 && received as usize >= burst && done_at.is_none() {
                    done_at = Some(now);
                }
                done_at.is_none()
            },
            |now, ev, _| pong(now, &ev, &sent_at, &mut lat),
        )?;
        let took = done_at.map_or(start.elapsed(), |t| t - start).as_secs_f64();
        Ok((lat, if burst > 0 { burst as f64 / took } else { 0.0 }))
    };
    let (mut quiet, _) = run(0, &mut peers)?;
    let (mut busy, burst_rate) = run(n, &mut peers)?;
    r.fig("w6.sotto.others_p99_us", busy.percentile(99.0).as_secs_f64() * 1e6);
    r.fig("w6.sotto.burst_rate", burst_rate);
    r.row(
        s,
        vec![
            "sottod".into(),
            rate(n as f64),
            rate(burst_rate),
            us(busy.percentile(50.0)),
            us(busy.percentile(99.0)),
            us(quiet.percentile(99.0)),
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------- W3 and W7 (direct messages)

/// Opens DM channels sender[i] -> receiver[i] (request, accept).
pub(crate) fn dm_channels(
    senders: &mut [Session],
    receivers: &mut [Session],
    snames: &[String],
    rnames: &[String],
) -> io::Result<()> {
    for (s, rname) in senders.iter_mut().zip(rnames) {
        let mut q = DmRequest::new_zeroed();
        let _ = q.set_peer(rname);
        s.call(q)?;
    }
    for (r, sname) in receivers.iter_mut().zip(snames) {
        let mut a = DmAccept::new_zeroed();
        let _ = a.set_peer(sname);
        r.call(a)?;
    }
    Ok(())
}

/// A direct message in the size class a text of `text` bytes takes (s or m).
fn queue_dm(s: &mut Session, peer_uid: u64, seq: u64, text: usize) {
    fn dm<M: Classed<Head = SendDmHead>>(peer_uid: u64, seq: u64) -> M {
        let mut m = M::new_zeroed();
        m.head_mut().peer_uid.set(peer_uid);
        stamp(m.body_mut(), seq);
        m
    }
    match sotto::body::class_for(text) {
        Ok(Class::S) => {
            s.queue(dm::<SendDmS>(peer_uid, seq));
        }
        _ => {
            s.queue(dm::<SendDmM>(peer_uid, seq));
        }
    }
}

/// The mailbox seq and the stamp of a DM of any class.
fn received_dm(m: &[u8]) -> Option<(u64, u64)> {
    let v = sotto::wire::decode_classed::<ReceiveDmHead>(m, RVUS).ok()?;
    Some((v.head.seq.get(), seq_of(v.body)))
}

/// Drives `peers` without sending until nothing has arrived for 300 ms (10 s
/// at most), acknowledging every DM, so that the mailboxes are empty.
fn settle_dms(peers: &mut [Peer]) -> io::Result<()> {
    let last = Cell::new(Instant::now());
    engine::drive(
        peers,
        Instant::now() + Duration::from_secs(10),
        Duration::from_millis(10),
        |now, _| now.saturating_duration_since(last.get()) < Duration::from_millis(300),
        |now, ev, acks| {
            last.set(now);
            if let Event::Message(i, m) = ev {
                if let Some((seq, _)) = received_dm(m) {
                    acks.push((i, seq));
                }
            }
        },
    )
}

pub fn w3(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W3 direct messages (sotto)",
        "Sender/receiver pairs, open loop at rising total rates; the receiver acknowledges each message \
         (dack). Latency from the scheduled send time to the receiver. `max msg/s` is the best rate with \
         p99 under 10 ms and nothing lost. sotto pads a DM to its size class: a 64-byte text goes in class s \
         (a 176-byte ciphertext), a 256-byte one in class m (1,040 bytes).",
        &["server", "pairs", "text", "max msg/s", "p50", "p99", "p99.9"],
    );
    let pairs_list: &[usize] = if ctx.quick { &[100] } else { &[100, 1000] };
    let texts: &[usize] = if ctx.quick { &[64] } else { &[64, 256] };
    let secs = if ctx.quick { 0.6 } else { 1.5 };
    for &pairs in pairs_list {
        for (text, best) in dm_search(ctx, pairs, texts, secs, ctx.server_cpu, &[])? {
            match best {
                Some((rate_, mut lat)) => {
                    let l = lat.summary();
                    r.fig(&format!("w3.sotto.{pairs}.{text}.rate"), rate_);
                    r.row(
                        s,
                        vec![
                            "sottod".into(),
                            pairs.to_string(),
                            format!("{text} B"),
                            rate(rate_),
                            us(l.p50),
                            us(l.p99),
                            us(l.p999),
                        ],
                    );
                }
                None => r.row(s, vec!["sottod".into(), pairs.to_string(), format!("{text} B"), "below 1,000".into()]),
            }
        }
    }
    Ok(())
}

/// W3's best step: messages per second and the latencies at it.
pub type DmBest = (f64, Samples);

/// W3's search for `pairs` sender/receiver pairs on a sottod started on
/// `cpu` with `flags`: for each text size, the best rate that kept up and
/// its latencies (None: not even 1,000 msg/s).
pub fn dm_search(
    ctx: &Ctx,
    pairs: usize,
    texts: &[usize],
    secs: f64,
    cpu: Option<usize>,
    flags: &[&str],
) -> io::Result<Vec<(usize, Option<DmBest>)>> {
    let srv = Sottod::start(cpu, &[CHEAP_KDF, flags].concat())?;
    let sn = names("w3s", pairs);
    let rn = names("w3r", pairs);
    register_all(ctx, srv.addr, &sn)?;
    register_all(ctx, srv.addr, &rn)?;
    let mut senders = login_all(ctx, srv.addr, &sn, pairs)?;
    let mut receivers = login_all(ctx, srv.addr, &rn, pairs)?;
    dm_channels(&mut senders, &mut receivers, &sn, &rn)?;
    let ruids: Vec<u64> = receivers.iter().map(|x| x.uid).collect();
    drain(&mut senders, Duration::from_millis(20));
    let mut peers: Vec<Peer> = senders
        .into_iter()
        .map(|x| Peer::new(x, Mode::Count))
        .chain(receivers.into_iter().map(|x| Peer::new(x, Mode::Open)))
        .collect::<io::Result<_>>()?;
    let mut found = Vec::with_capacity(texts.len());
    for &text in texts {
        let mut best: Option<(f64, Samples)> = None;
        for rate_ in [1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0, 40_000.0, 80_000.0] {
            let total = (rate_ * secs) as usize;
            let interval = Duration::from_secs_f64(1.0 / rate_);
            let start = Instant::now() + Duration::from_millis(5);
            let sent: RefCell<Vec<Instant>> = RefCell::new(Vec::with_capacity(total));
            let mut lat = Samples::default();
            let got = Cell::new(0usize);
            engine::drive(
                &mut peers,
                start + Duration::from_secs_f64(secs) + Duration::from_secs(2),
                Duration::ZERO,
                |now, peers| {
                    let mut sent = sent.borrow_mut();
                    while sent.len() < total && now >= start + interval * sent.len() as u32 {
                        let k = sent.len();
                        let i = k % pairs;
                        queue_dm(&mut peers[i].s, ruids[i], k as u64, text);
                        sent.push(start + interval * k as u32);
                    }
                    got.get() < total
                },
                |now, ev, acks| {
                    if let Event::Message(i, m) = ev {
                        if let Some((seq, stamp)) = received_dm(m) {
                            acks.push((i, seq));
                            if let Some(t) = sent.borrow().get(stamp as usize) {
                                lat.push(now.saturating_duration_since(*t));
                                got.set(got.get() + 1);
                            }
                        }
                    }
                },
            )?;
            let ok = got.get() == total && lat.clone().percentile(99.0) < Duration::from_millis(10);
            if std::env::var_os("SOTTO_BENCH_DEBUG").is_some() {
                eprintln!(
                    "W3 {pairs} pairs at {rate_}/s: {} of {total}, p99 {:?}",
                    got.get(),
                    lat.clone().percentile(99.0)
                );
            }
            if !ok {
                break;
            }
            best = Some((rate_, lat));
        }
        // A failed step can leave DMs in flight: they must not reach the next search.
        settle_dms(&mut peers)?;
        found.push((text, best));
    }
    drop(srv);
    Ok(found)
}

/// W7: unanswered DMs per sender at most (4,096 answers are about 0.5 MiB).
const W7_WINDOW: usize = 4096;

pub fn w7(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W7 offline queue (sotto)",
        "Direct messages to offline users, each acknowledged `queued` only after its mailbox record is \
         fsync'd (group commit); then the recipients log in and drain (acknowledging each). Target: at \
         least 50,000 durable queued messages/s.",
        &["server", "messages", "senders", "recipients", "queued/s (durable)", "drained/s", "filesystem"],
    );
    let n = if ctx.quick { 20_000 } else { 100_000 };
    let (ns, nr) = (10usize, 100usize);
    let srv = Sottod::start(ctx.server_cpu, CHEAP_KDF)?;
    let sn = names("w7s", ns);
    let rn = names("w7r", nr);
    register_all(ctx, srv.addr, &sn)?;
    register_all(ctx, srv.addr, &rn)?;
    let mut senders = login_all(ctx, srv.addr, &sn, ns)?;
    let mut receivers = login_all(ctx, srv.addr, &rn, nr)?;
    // Every sender to every recipient.
    for snd in senders.iter_mut() {
        for name in &rn {
            let mut q = DmRequest::new_zeroed();
            let _ = q.set_peer(name);
            snd.queue(q);
        }
        snd.flush()?;
    }
    for rcv in receivers.iter_mut() {
        for name in &sn {
            let mut a = DmAccept::new_zeroed();
            let _ = a.set_peer(name);
            rcv.call(a)?;
        }
    }
    let ruids: Vec<u64> = receivers.iter().map(|x| x.uid).collect();
    drop(receivers);
    drain(&mut senders, Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(300));
    let mut peers: Vec<Peer> = senders.into_iter().map(|x| Peer::new(x, Mode::Open)).collect::<io::Result<_>>()?;
    let queued = Cell::new(0usize);
    let mut next = 0usize;
    // Per sender: DMs sent, and answers received.
    let mut sent = vec![0usize; ns];
    let answered: Vec<Cell<usize>> = (0..ns).map(|_| Cell::new(0)).collect();
    let start = Instant::now();
    engine::drive(
        &mut peers,
        start + Duration::from_secs(300),
        Duration::from_millis(1),
        |_, peers| {
            // Keep each sender's pipe full (about 256 KiB queued), with at most
            // W7_WINDOW DMs unanswered, as a client with a send window: the
            // answers of a whole group commit arrive at once, and a sender that
            // let them pass the server's 1 MiB output bound would be dropped.
            for (i, p) in peers.iter_mut().enumerate() {
                while next < n && p.s.pending() < 256 * 1024 && sent[i] - answered[i].get() < W7_WINDOW {
                    queue_dm(&mut p.s, ruids[(next / ns + i) % nr], next as u64, 64);
                    next += 1;
                    sent[i] += 1;
                }
            }
            queued.get() < n
        },
        |_, ev, _| {
            if let Event::Message(i, m) = ev {
                if wire::header(m).map(|h| h.opcode.get()) == Ok(DMST) {
                    queued.set(queued.get() + 1);
                    if let Some(a) = answered.get(i) {
                        a.set(a.get() + 1);
                    }
                }
            }
        },
    )?;
    let queued = queued.get();
    let qrate = queued as f64 / start.elapsed().as_secs_f64();
    drop(peers);
    // Drain: the recipients log in and take everything.
    let receivers = login_all(ctx, srv.addr, &rn, nr)?;
    let start = Instant::now();
    let mut peers: Vec<Peer> = receivers.into_iter().map(|x| Peer::new(x, Mode::Open)).collect::<io::Result<_>>()?;
    let got = Cell::new(0usize);
    engine::drive(
        &mut peers,
        start + Duration::from_secs(300),
        Duration::from_millis(1),
        |_, _| got.get() < queued,
        |_, ev, acks| {
            if let Event::Message(i, m) = ev {
                if let Some((seq, _)) = received_dm(m) {
                    acks.push((i, seq));
                    got.set(got.get() + 1);
                }
            }
        },
    )?;
    let drate = got.get() as f64 / start.elapsed().as_secs_f64();
    r.fig("w7.sotto.queued_rate", qrate);
    r.fig("w7.sotto.drain_rate", drate);
    let fs = sys::version_of("findmnt", &["-n", "-o", "FSTYPE,SOURCE", "--target", &srv.data.0.to_string_lossy()]);
    r.row(s, vec!["sottod".into(), rate(queued as f64), ns.to_string(), nr.to_string(), rate(qrate), rate(drate), fs]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that keeps up with at most `cap` messages/s; the steps tried.
    fn search(cap: f64, quick: bool, broken: impl Fn(f64) -> bool) -> (Option<f64>, Vec<f64>) {
        let mut tried = Vec::new();
        let best = saturate(100.0, quick, |load| {
            tried.push(load);
            if broken(load) {
                StepVerdict::Broken
            } else if load <= cap {
                StepVerdict::Kept(load * 9.0, ())
            } else {
                StepVerdict::Slow
            }
        });
        (
            best.map(|(load, (rate, ()))| {
                assert_eq!(rate, load * 9.0, "the kept step's own outcome");
                load
            }),
            tried,
        )
    }

    #[test]
    fn saturation_search_doubles_then_bisects_below_the_cap() {
        // 100, 200, 400, 800 kept; 1600 slow; then 1131 (slow), 951 (kept), 1037 (slow).
        let (best, tried) = search(1000.0, false, |_| false);
        assert_eq!(tried.len(), 8, "{tried:?}");
        let best = best.unwrap();
        assert!(best > 1000.0 / 1.1 && best <= 1000.0, "{best} not within 10% below the cap");
        // Quick: two bisections, a coarser answer.
        let (quick, tried) = search(1000.0, true, |_| false);
        assert_eq!(tried.len(), 7, "{tried:?}");
        assert!(quick.unwrap() <= 1000.0);
    }

    #[test]
    fn a_broken_step_ends_the_search_with_the_last_kept_load() {
        // Broken at 1600 (a member dropped): no bisection after it.
        let (best, tried) = search(1e9, false, |load| load > 1000.0);
        assert_eq!(best, Some(800.0));
        assert_eq!(tried, vec![100.0, 200.0, 400.0, 800.0, 1600.0]);
        // Broken during the bisection (at 1131): the last kept load stands.
        let (best, tried) = search(1000.0, false, |load| load > 1100.0 && load < 1200.0);
        assert_eq!(best, Some(800.0));
        assert_eq!(tried.len(), 6, "{tried:?}");
        // Nothing kept at all.
        assert_eq!(search(50.0, false, |_| false).0, None);
    }
}
