//! Several loops (`sottod --threads N`): W4 (a room of 10, one publisher)
//! and W3 (100 pairs, 64-byte texts) with one event loop and with two (a
//! core loop and one output loop), in the same run.
//!
//! On this two-core machine the figures are indicative only: with two loops
//! sottod is not pinned and shares the generator's core, the generator
//! running at nice +10 so that the server's threads go first. The W1-W8
//! tables keep `--threads 1` on a core of its own, as the IRC servers run.
//!
//! The cluster section (`sottod --cluster`, one node on three NATS servers
//! with JetStream R3, next to the file store) is measured the same way, but
//! with sottod on the server's core, as in W3's and W4's own tables: left
//! unpinned, its loop waited on a run queue for most of W3's steps (about
//! 1.1 s of each 1.5 s, `SOTTO_BENCH_DEBUG=1`), and the section measured
//! that, not the store.

use std::io;

use crate::direct::dm_search;
use crate::fanout::{fanout_search, Placement};
use crate::proto::Session;
use crate::report::{rate, Report};
use crate::server::{Sottod, EDGE_FLAGS, FRESH_CLUSTER};
use crate::stats::{us, Samples};
use crate::sys;
use crate::work::{Ctx, CHEAP_KDF};

pub fn threads(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "Several loops (--threads, indicative)",
        "W4 (room of 10, one publisher, 60-byte texts) and W3 (100 pairs, 64-byte texts) searched as in \
         their own sections, with `--threads 1` and `--threads 2` (a core loop that keeps all state and \
         one output loop that seals and writes). sottod is not pinned here, and the generator runs at \
         nice +10 on the second core: on two cores the server's second loop and the generator share one, \
         so these figures show the direction, not what a larger machine gives (see \"Several loops\" in the \
         narrative for the model). The latencies include the niced generator's own waits for a CPU and \
         are not comparable with W4's table.",
        &["workload", "threads", "max", "p50 @ max", "p99 @ max", "p99 @ half"],
    );
    let variants =
        vec![("1".to_owned(), vec!["--threads", "1"], false), ("2".to_owned(), vec!["--threads", "2"], false)];
    compare(ctx, r, s, "threads", None, &variants);
    Ok(())
}

/// One sottod node with its state in JetStream (three NATS servers on
/// loopback, R3) next to the file store, and two nodes (the writer and an
/// edge, the users spread over both): what the NATS hop costs.
pub fn cluster(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "JetStream and edges (--cluster, indicative)",
        "W4 (room of 10, one publisher, 60-byte texts) and W3 (100 pairs, 64-byte texts) searched as in \
         their own sections, with the file store (`files`) and with the state in NATS JetStream \
         (`JetStream R3`: three nats-server processes on loopback started for each run, streams with three \
         replicas, one sottod node). Every acknowledgement waits for its commit, which in cluster mode is \
         JetStream's acknowledgement from a quorum of two replicas; deliveries do not wait. sottod is on \
         the server's core as in W3's and W4's tables, the generator (at nice +10) on the other, and the \
         NATS servers are not pinned: they share both cores with them, so the figures show what the hop \
         costs on one machine, not what separate machines give. `2 nodes`: the same cluster with an edge \
         node besides the writer (DESIGN §8 \"Edges\"), unpinned: W4's members alternately on the writer and \
         the edge (the publisher on the edge), W3's senders on the writer and receivers on the edge, so that \
         every message crosses the relay; five processes share the two cores.",
        &["workload", "store", "max", "p50 @ max", "p99 @ max", "p99 @ half"],
    );
    let js = vec!["--threads", "1", "--cluster", FRESH_CLUSTER, "--node", "bench", "--cluster-replicas", "3"];
    let variants = vec![
        ("files".to_owned(), vec!["--threads", "1"], false),
        ("JetStream R3".to_owned(), js.clone(), false),
        ("2 nodes JetStream R3".to_owned(), js, true),
    ];
    compare(ctx, r, s, "cluster", ctx.server_cpu, &variants);
    match relay_rtt(ctx) {
        Ok(rtts) => {
            for (label, key, mut lat) in rtts {
                let l = lat.summary();
                r.fig(&format!("cluster.rtt.{key}_p50_us"), l.p50.as_secs_f64() * 1e6);
                r.row(
                    s,
                    vec!["ping round trip, idle".into(), label.into(), "-".into(), us(l.p50), us(l.p99), "-".into()],
                );
            }
        }
        Err(e) => r.row(s, vec!["ping round trip, idle".into(), "2 nodes JetStream R3".into(), format!("failed: {e}")]),
    }
    Ok(())
}

/// Heartbeat round trips of one idle session on the writer and one on an
/// edge of the same cluster (no other load): what the relay adds to each
/// request, two NATS hops and the edge's loop.
fn relay_rtt(ctx: &Ctx) -> io::Result<Vec<(&'static str, &'static str, Samples)>> {
    use sotto::opcodes::{Heartbeat, PONG};
    use zerocopy::FromZeros;
    let flags = [CHEAP_KDF, &["--cluster", FRESH_CLUSTER, "--node", "bench", "--cluster-replicas", "3"]].concat();
    let mut srv = Sottod::start(ctx.server_cpu, &flags)?;
    let edge = srv.start_edge(ctx.generator_cpu(), &[CHEAP_KDF, EDGE_FLAGS].concat())?;
    ctx.id.register(srv.addr, &ctx.cfg, "rtt0")?;
    let n = if ctx.quick { 200 } else { 1000 };
    let mut out = Vec::new();
    for (label, key, addr) in
        [("JetStream R3, on the writer", "writer", srv.addr), ("2 nodes, through the edge", "edge", edge)]
    {
        let mut s = Session::connect(addr, &ctx.cfg)?;
        s.login("rtt0")?;
        let mut lat = Samples::default();
        for _ in 0..n {
            let t = std::time::Instant::now();
            s.queue(Heartbeat::new_zeroed());
            s.flush()?;
            loop {
                let m = s.recv(Some(std::time::Duration::from_secs(2)))?.ok_or_else(|| io::Error::other("no pong"))?;
                if sotto::wire::header(&m).map(|h| h.opcode.get()) == Ok(PONG) {
                    break;
                }
            }
            lat.push(t.elapsed());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        out.push((label, key, lat));
    }
    Ok(out)
}

/// W4 and W3 on each variant (a label and sottod's flags), sottod on `cpu`
/// (None: unpinned), rows in section `s`, figures named
/// `{key}.{label's first word, lowercased}.…`.
/// `{key}.two.…` for the variants whose users are spread over two nodes.
fn compare(ctx: &Ctx, r: &mut Report, s: usize, key: &str, cpu: Option<usize>, variants: &[(String, Vec<&str>, bool)]) {
    // The generator yields to the server's threads for this section only.
    let was = sys::thread_nice();
    sys::set_thread_nice(10);
    let secs = if ctx.quick { 0.6 } else { 1.0 };
    for (label, flags, spread) in variants {
        let flag = label.clone();
        let n = if *spread {
            "two".to_owned()
        } else {
            label.split_whitespace().next().unwrap_or_default().to_ascii_lowercase()
        };
        let n = format!("{key}.{n}");
        let flags = flags.as_slice();
        match fanout_search(ctx, 10, 1, secs, Placement { cpu, flags, spread: *spread, ..Placement::default() }) {
            Ok(Some(best)) => {
                r.fig(&format!("{n}.w4.deliveries"), best.rate);
                r.fig(&format!("{n}.w4.p99_half_us"), best.half99.as_secs_f64() * 1e6);
                // CPU per delivery at the best step: the core loop (the main
                // thread, named as the process) and the output loops together.
                let per = |pick: &dyn Fn(&str) -> bool| {
                    let t: f64 =
                        best.cpu_by_thread.iter().filter(|(name, _)| pick(name)).map(|(_, t)| t.as_secs_f64()).sum();
                    t * 1e9 / best.delivered.max(1.0)
                };
                r.fig(&format!("{n}.w4.core_ns"), per(&|name| name == "sottod"));
                // All of sottod's threads at that step, in cores: under one
                // (per loop) the server was not what set the maximum.
                let all: f64 = best.cpu_by_thread.iter().map(|(_, t)| t.as_secs_f64()).sum();
                r.fig(&format!("{n}.w4.server_cores"), all / secs);
                r.fig(&format!("{n}.w4.output_ns"), per(&|name| name.starts_with("sottod-out")));
                if *spread {
                    r.fig(&format!("{n}.w4.edge_ns"), best.edge_cpu.as_secs_f64() * 1e9 / best.delivered.max(1.0));
                }
                r.row(
                    s,
                    vec![
                        "W4 room of 10".into(),
                        flag.clone(),
                        format!("{} deliveries/s", rate(best.rate)),
                        us(best.p50),
                        us(best.p99),
                        us(best.half99),
                    ],
                );
            }
            Ok(None) => r.row(s, vec!["W4 room of 10".into(), flag.clone(), "did not keep up".into()]),
            Err(e) => r.row(s, vec!["W4 room of 10".into(), flag.clone(), format!("failed: {e}")]),
        }
        let secs = if ctx.quick { 0.6 } else { 1.5 };
        match dm_search(ctx, 100, &[64], secs, cpu, flags, *spread) {
            Ok(found) => {
                for (_, best) in found {
                    let row = match best {
                        Some((rate_, mut lat)) => {
                            let l = lat.summary();
                            r.fig(&format!("{n}.w3.rate"), rate_);
                            r.fig(&format!("{n}.w3.p50_us"), l.p50.as_secs_f64() * 1e6);
                            vec![
                                "W3 100 pairs".into(),
                                flag.clone(),
                                format!("{} msg/s", rate(rate_)),
                                us(l.p50),
                                us(l.p99),
                                "-".into(),
                            ]
                        }
                        None => vec!["W3 100 pairs".into(), flag.clone(), "below 1,000 msg/s".into()],
                    };
                    r.row(s, row);
                }
            }
            Err(e) => r.row(s, vec!["W3 100 pairs".into(), flag.clone(), format!("failed: {e}")]),
        }
    }
    sys::set_thread_nice(was);
}
