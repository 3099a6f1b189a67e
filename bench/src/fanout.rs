//! Open-loop room fan-out: W4 (the saturation search, its steps, the data
//! directory on tmpfs for comparison), W5 (a slow consumer) and W6 (burst
//! fairness).

use std::cell::{Cell, RefCell};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use sotto::opcodes::{Heartbeat, ReceiveRoomMessageS, RVRS};
use zerocopy::{FromBytes, FromZeros};

use crate::engine::{self, Event, Mode, Peer};
use crate::report::{rate, Report};
use crate::server::{Sottod, EDGE_FLAGS};
use crate::stats::{median, us, Samples};
use crate::sys;

use crate::work::{
    drain, err, login_all, login_spread, make_room, names, pong, register_all, room_message, seq_of, Ctx, CHEAP_KDF,
};

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
    /// Cluster mode: an edge node too (DESIGN §8 "Edges"), with every
    /// second member logged in through it.
    pub spread: bool,
}

/// Sets up a room of `m` members on a sottod placed as `at`: (server, peers).
fn fanout_setup(ctx: &Ctx, m: usize, room: &str, at: Placement<'_>) -> io::Result<(Sottod, Vec<Peer>)> {
    let mut srv = Sottod::start_in(at.cpu, &[CHEAP_KDF, at.flags].concat(), at.data_in)?;
    let users = names("w4u", m);
    register_all(ctx, srv.addr, &users)?;
    let mut addrs = vec![srv.addr];
    if at.spread {
        addrs.push(srv.start_edge(ctx.generator_cpu(), &[CHEAP_KDF, EDGE_FLAGS].concat())?);
    }
    // Spread: members alternately on the writer and the edge, the owner
    // (member 0) on the writer, W4's publisher (member 1) on the edge.
    let mut sessions = login_spread(ctx, &addrs, &users, m)?;
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
    /// CPU time of the edges (every thread) during the best step (spread).
    pub edge_cpu: Duration,
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
        let edges0: Duration = srv.edges.iter().map(|e| sys::cpu_time(e.pid())).sum();
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
            let edges: Duration = srv.edges.iter().map(|e| sys::cpu_time(e.pid())).sum();
            StepVerdict::Kept(st.deliveries_per_s, (st, by_thread, edges.saturating_sub(edges0)))
        }
    });
    let Some((best_msgs, (best_rate, (mut st, cpu_by_thread, edge_cpu)))) = best else { return Ok(None) };
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
    let debug = std::env::var_os("SOTTO_BENCH_DEBUG").is_some();
    for _ in 0..HALF_REPEATS {
        let before = if debug { sys::thread_sched(srv.pid()) } else { Vec::new() };
        let mut half = fanout_step(&mut peers, p, "w4", best_msgs / 2.0, secs, srv.pid(), None)?;
        p99s.push(half.lat.percentile(99.0).as_secs_f64());
        if debug {
            eprintln!("W4 {m}x{p} half load {:.0} msgs/s: p99 {:?}", best_msgs / 2.0, half.lat.percentile(99.0));
            sys::print_sched_since(srv.pid(), &before);
        }
    }
    let half99 = Duration::from_secs_f64(median(p99s));
    Ok(Some(FanoutBest {
        rate: best_rate,
        p50: st.lat.percentile(50.0),
        p99: st.lat.percentile(99.0),
        half99,
        cpu_by_thread,
        delivered: best_rate * secs,
        edge_cpu,
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
