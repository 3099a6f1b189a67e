//! Direct messages: W3 (sender and receiver pairs, open loop) and W7 (the
//! offline queue).

use std::cell::{Cell, RefCell};
use std::io;
use std::time::{Duration, Instant};

use sotto::opcodes::{Class, DmAccept, DmRequest, ReceiveDmHead, SendDmHead, SendDmM, SendDmS, DMST, RVUS};
use sotto::wire::{self, Classed};
use zerocopy::FromZeros;

use crate::engine::{self, Event, Mode, Peer};
use crate::proto::Session;
use crate::report::{rate, Report};
use crate::server::{Sottod, EDGE_FLAGS};
use crate::stats::{us, Samples};
use crate::sys;

use crate::work::{drain, login_all, names, register_all, seq_of, stamp, Ctx, CHEAP_KDF};

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
        for (text, best) in dm_search(ctx, pairs, texts, secs, ctx.server_cpu, &[], false)? {
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
    spread: bool,
) -> io::Result<Vec<(usize, Option<DmBest>)>> {
    let mut srv = Sottod::start(cpu, &[CHEAP_KDF, flags].concat())?;
    let sn = names("w3s", pairs);
    let rn = names("w3r", pairs);
    register_all(ctx, srv.addr, &sn)?;
    register_all(ctx, srv.addr, &rn)?;
    let mut senders = login_all(ctx, srv.addr, &sn, pairs)?;
    // Spread (cluster mode): every receiver on an edge (DESIGN §8 "Edges"),
    // so that each DM crosses the relay.
    let at = if spread { srv.start_edge(ctx.generator_cpu(), &[CHEAP_KDF, EDGE_FLAGS].concat())? } else { srv.addr };
    let mut receivers = login_all(ctx, at, &rn, pairs)?;
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
            let sched_before = crate::sys::thread_sched(srv.pid());
            let edges_before: Vec<_> = srv.edges.iter().map(|e| crate::sys::thread_sched(e.pid())).collect();
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
                    "W3 {pairs} pairs at {rate_}/s: {} of {total}, p50 {:?} p99 {:?}",
                    got.get(),
                    lat.clone().percentile(50.0),
                    lat.clone().percentile(99.0)
                );
                // Each server thread's time running and waiting for a core during the step.
                crate::sys::print_sched_since(srv.pid(), &sched_before);
                for (e, before) in srv.edges.iter().zip(&edges_before) {
                    eprintln!("  edge:");
                    crate::sys::print_sched_since(e.pid(), before);
                }
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
