//! W9: a reconnect storm. Logged-in sessions, sottod killed with SIGKILL and
//! started again on the same address and data directory, and every session
//! coming back at once, each after a random delay as the real client waits
//! (jitter up to 2 s before its first attempt): with resumption tickets, and
//! with `--no-resume` at the default argon2id cost for comparison.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sotto::ticket::HeldTicket;

use crate::proto::Session;
use crate::report::{rate, Report};
use crate::server::{Sottod, FRESH_CLUSTER};
use crate::stats::{us, Samples};
use crate::work::{self, err, login_all, names, register_all, Ctx, CHEAP_KDF};
use nix::sys::signal::Signal;

/// The client's first reconnection delay is uniform in [0, JITTER].
const JITTER: Duration = Duration::from_secs(2);
/// Connections the generator opens side by side during the storm.
const THREADS: usize = 64;
/// The target: 99% of 10,000 sessions back within this time of the restart.
pub const TARGET: Duration = Duration::from_secs(5);

/// How one storm went.
pub struct Storm {
    /// Sessions.
    pub n: usize,
    /// Time from the SIGKILL until each session was logged in again, sorted.
    pub back: Vec<Duration>,
    /// Sessions that resumed (the rest logged in in full).
    pub resumed: usize,
    /// Heartbeat round trips of a session reconnected before the storm.
    pub probe: Samples,
}

impl Storm {
    /// Time until `pct` percent of the sessions were back.
    pub fn at(&self, pct: f64) -> Duration {
        let i = ((pct / 100.0) * self.n as f64).ceil() as usize;
        self.back.get(i.clamp(1, self.back.len().max(1)) - 1).copied().unwrap_or_default()
    }
}

pub fn w9(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "W9 reconnect storm (sotto)",
        "Logged-in sessions (100 sessions per account); sottod killed with SIGKILL and started again on \
         the same address and data directory; each session reconnects after a random delay uniform in \
         0-2 s, as the client's first reconnection does, on 64 connections side by side, and is back \
         once the server's `cnnt` arrived; a failed attempt waits as the client does (0-2 s after a refused \
         connection, growing after other failures). Times are from the SIGKILL. With resumption a session offers \
         the ticket of its last login (no RSA signature, no argon2id); one refused falls back to a full \
         handshake and login. `--no-resume` is measured at the default argon2id cost (cheap benchmark \
         hashes would hide the storm) with fewer sessions, and scaled to 10,000 in proportion: its storm \
         is bound by the argon2id workers, whose rate does not depend on how many wait. `probe p99` is \
         the heartbeat round trip of a session that reconnected first, during the storm. Target: 99% of \
         10,000 sessions back within 5 s.",
        &["server", "sessions", "resumed", "50% back", "99% back", "100% back", "probe p99"],
    );
    let n = if ctx.quick { 1_000 } else { 10_000 };
    let with = storm(ctx, n, true)?;
    row(r, s, "sottod, resumption", &with, None);
    r.fig("w9.resume.n", n as f64);
    r.fig("w9.resume.p50_ms", ms(with.at(50.0)));
    r.fig("w9.resume.p99_ms", ms(with.at(99.0)));
    r.fig("w9.resume.p100_ms", ms(with.at(100.0)));
    r.fig("w9.resume.resumed", with.resumed as f64);
    r.fig("w9.resume.probe_p99_us", with.probe.clone().percentile(99.0).as_secs_f64() * 1e6);
    let m = if ctx.quick { 60 } else { 300 };
    let without = storm(ctx, m, false)?;
    row(r, s, "sottod --no-resume (default argon2id)", &without, None);
    let scale = 10_000.0 / m as f64;
    row(r, s, &format!("sottod --no-resume, scaled ×{scale:.1} to 10,000"), &without, Some(scale));
    r.fig("w9.full.n", m as f64);
    r.fig("w9.full.p99_ms", ms(without.at(99.0)));
    r.fig("w9.full.scaled_p99_s", ms(without.at(99.0)) * scale / 1e3);
    r.fig("w9.full.rate", m as f64 / without.at(100.0).as_secs_f64().max(1e-3));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(r: &mut Report, s: usize, label: &str, st: &Storm, scale: Option<f64>) {
    let t = |d: Duration| match scale {
        Some(k) => format!("{:.0} s", d.as_secs_f64() * k),
        None => format!("{:.0} ms", ms(d)),
    };
    let n = scale.map_or(st.n as f64, |k| st.n as f64 * k);
    let probe = if scale.is_some() { "-".into() } else { us(st.probe.clone().percentile(99.0)) };
    r.row(
        s,
        vec![
            label.into(),
            rate(n),
            if scale.is_some() { "-".into() } else { rate(st.resumed as f64) },
            t(st.at(50.0)),
            t(st.at(99.0)),
            t(st.at(100.0)),
            probe,
        ],
    );
}

/// One storm of `n` sessions, with resumption or without.
fn storm(ctx: &Ctx, n: usize, resume: bool) -> io::Result<Storm> {
    let flags: &[&str] = if resume { CHEAP_KDF } else { &["--no-resume"] };
    let mut srv = Sottod::start(ctx.server_cpu, flags)?;
    let addr = srv.addr;
    run_storm(ctx, n, resume, addr, || {
        srv.kill_and_restart()?;
        Ok(srv.addr)
    })
}

/// `n` sessions (and a probe) logged in at `addr`; `disrupt` ends the
/// server there and says where they come back; then every session comes back.
fn run_storm(
    ctx: &Ctx,
    n: usize,
    resume: bool,
    addr: SocketAddr,
    disrupt: impl FnOnce() -> io::Result<SocketAddr>,
) -> io::Result<Storm> {
    let users = names("w9u", n.div_ceil(100));
    register_all(ctx, addr, &users)?;
    // One more session than the storm: the probe.
    let mut sessions = login_all(ctx, addr, &users, n + 1)?;
    let tickets: Vec<Option<HeldTicket>> = if resume {
        sessions.iter_mut().map(|s| s.take_ticket(Duration::from_secs(10)).map(Some)).collect::<io::Result<_>>()?
    } else {
        vec![None; n + 1]
    };
    let killed = Instant::now();
    let addr = disrupt()?;
    drop(sessions);
    // The probe comes back first, then pings through the storm.
    let (mut probe, _) = back(ctx, addr, &users[0], tickets[n].as_ref())?;
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let delays: Vec<Duration> = (0..n).map(|_| JITTER.mul_f64(unit())).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| delays[i]);
    let done: Mutex<Vec<(Duration, bool)>> = Mutex::new(Vec::with_capacity(n));
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    let start = Instant::now();
    let probe_lat = std::thread::scope(|sc| {
        let pinger = sc.spawn(|| work::probe(&mut probe, &stop, Duration::from_millis(10), Duration::from_secs(30)));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                sc.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = order.get(k) else { return };
                    std::thread::sleep((start + delays[i]).saturating_duration_since(Instant::now()));
                    match back(ctx, addr, &users[i % users.len()], tickets[i].as_ref()) {
                        // Dropped at once: the storm is the logins, not what follows.
                        Ok((_, resumed)) => done.lock().unwrap().push((killed.elapsed(), resumed)),
                        Err(e) => *failed.lock().unwrap() = Some(e),
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        stop.store(true, Ordering::SeqCst);
        pinger.join().unwrap_or_else(|_| Err(err("the probe thread panicked")))
    })?;
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    let done = done.into_inner().unwrap();
    let mut back: Vec<Duration> = done.iter().map(|(t, _)| *t).collect();
    back.sort();
    Ok(Storm { n, resumed: done.iter().filter(|(_, r)| *r).count(), back, probe: probe_lat })
}

/// A uniform random number in [0, 1).
fn unit() -> f64 {
    (u64::from_be_bytes(sotto::crypto::random()) >> 11) as f64 / (1u64 << 53) as f64
}

/// One session back after the restart: resumed with `ticket` when there is
/// one and the server takes it, else a full handshake and login (as the
/// client falls back); retried while the server does not accept connections
/// yet or closes them, after the real client's waits (client/resume.rs,
/// `round_wait_ms`): uniform in [0, 2 s] after a refused connection (nothing
/// listening yet), else uniform in [0, min(2 s · 2^failures, 30 s)], the
/// failures counted from the first attempt's. Returns the session and
/// whether it resumed.
fn back(ctx: &Ctx, addr: SocketAddr, user: &str, ticket: Option<&HeldTicket>) -> io::Result<(Session, bool)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut ticket = ticket;
    let mut failures: u32 = 1;
    loop {
        let attempt = match ticket {
            Some(t) => match Session::resume(addr, &ctx.cfg, t) {
                Ok(Ok(s)) => return Ok((s, true)),
                // Refused: a full login now, as the client does.
                Ok(Err(_)) => {
                    ticket = None;
                    continue;
                }
                Err(e) => Err(e),
            },
            None => Session::connect(addr, &ctx.cfg).and_then(|mut s| s.login(user).map(|()| s)),
        };
        match attempt {
            Ok(s) => return Ok((s, false)),
            Err(e) if Instant::now() < deadline => {
                let cap = if e.kind() == io::ErrorKind::ConnectionRefused {
                    JITTER
                } else {
                    failures = failures.saturating_add(1);
                    (JITTER * (1 << (failures - 1).min(5))).min(Duration::from_secs(30))
                };
                let wait = cap.mul_f64(unit());
                if std::env::var_os("SOTTO_BENCH_DEBUG").is_some() {
                    eprintln!("W9: {user}: {e}; again in {wait:?}");
                }
                std::thread::sleep(wait);
            }
            Err(e) => return Err(e),
        }
    }
}

/// W9 in cluster mode: the sessions on the writer of two nodes, which is
/// killed (SIGKILL: the standby finds it gone) or stopped (SIGTERM: it releases its
/// lease), and every session back on the standby that takes over.
pub fn cluster_failover(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "Failover storm on JetStream (--cluster, indicative)",
        "W9's storm across a takeover: two sottod nodes on three NATS servers (loopback, R3), the sessions \
         (100 per account, with resumption) on the writer; the writer is killed with SIGKILL (its NATS \
         connection closes, and the standby takes the lease once the writer has missed a renewal and nobody \
         answered for it for a second: 2.5 s at least) or stopped with SIGTERM (it releases the lease and \
         the standby takes it at its next look, within 250 ms). The standby has followed the records \
         meanwhile and loads them from memory. Each session then comes back to the standby's address, \
         after W9's random delay, and resumes with its ticket there (the ticket keys and journal are in \
         JetStream), counted once the standby serves, as W9 counts them once sottod restarted. Times are \
         from the signal; `standby serves` is when the standby said `listening`. \
         Both nodes run on the server's core, the NATS servers are not pinned.",
        &["writer", "sessions", "resumed", "standby serves", "50% back", "99% back", "100% back", "probe p99"],
    );
    let n = if ctx.quick { 1_000 } else { 10_000 };
    for (label, sig) in [("killed (SIGKILL)", Signal::SIGKILL), ("stopped (SIGTERM)", Signal::SIGTERM)] {
        let node = |name| [CHEAP_KDF, &["--cluster-replicas", "3", "--node", name]].concat();
        let writer = Sottod::start(ctx.server_cpu, &[node("a").as_slice(), &["--cluster", FRESH_CLUSTER]].concat())?;
        let (standby, listening) = Sottod::start_standby(&writer, ctx.server_cpu, &node("b"))?;
        let mut serves = 0.0;
        let st = run_storm(ctx, n, true, writer.addr, || {
            let at = Instant::now();
            writer.signal(sig);
            // The sessions come back once it serves, as in W9 once sottod restarted.
            let up = listening
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| err("the standby never said `listening`"))?;
            serves = ms(up.saturating_duration_since(at));
            Ok(standby.addr)
        })?;
        let key = if sig == Signal::SIGKILL { "kill" } else { "stop" };
        r.fig(&format!("failover.{key}.n"), st.n as f64);
        r.fig(&format!("failover.{key}.serves_ms"), serves);
        r.fig(&format!("failover.{key}.p99_ms"), ms(st.at(99.0)));
        r.row(
            s,
            vec![
                label.into(),
                rate(st.n as f64),
                rate(st.resumed as f64),
                format!("{serves:.0} ms"),
                format!("{:.0} ms", ms(st.at(50.0))),
                format!("{:.0} ms", ms(st.at(99.0))),
                format!("{:.0} ms", ms(st.at(100.0))),
                us(st.probe.clone().percentile(99.0)),
            ],
        );
        // The standby first: the writer holds the NATS servers.
        drop(standby);
        drop(writer);
    }
    Ok(())
}
