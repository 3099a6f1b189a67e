//! sotto-bench: runs the workloads of docs/BENCHMARKS.md against sottod and
//! the IRC peers, prints the tables, and rewrites the report.

use std::io;
use std::time::Instant;

use sotto_bench::report::Report;
use sotto_bench::work::{self, Ctx};
use sotto_bench::{direct, fanout};
use sotto_bench::{peers_run, sys};

const USAGE: &str = "usage: sotto-bench [--quick] [--only W1,W2,...] [--no-peers] [--report PATH]

Runs the benchmark workloads (micro, seal, W1-W9) against sottod (from the same
directory as this binary) and, for W1, W2, W4 and W6, against ngircd and
InspIRCd over IRC, plain and TLS, and for W8 (file transfer) against scp
over an sshd of its own on loopback (openssh-server is installed with
apt-get when missing); prints every figure and, with --report,
rewrites that file (docs/BENCHMARKS.md) with the machine, the versions, the
peer configurations and the results.

  --quick        a shorter run (under 3 minutes): fewer connections, shorter steps
  --only LIST    only these workloads (micro, seal, W1 ... W9, threads, cluster,
                 hop, failover), comma-separated; cluster, hop and failover
                 start three nats-server processes
  --no-peers     sottod only (no ngircd, no InspIRCd)
  --report PATH  write the Markdown report there";

struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    peers: bool,
    report: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { quick: false, only: None, peers: true, report: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--no-peers" => a.peers = false,
            "--only" => {
                let v = it.next().ok_or("--only needs a value")?;
                a.only = Some(v.split(',').map(|s| s.trim().to_ascii_lowercase()).collect());
            }
            "--report" => a.report = Some(it.next().ok_or("--report needs a value")?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sotto-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("sotto-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> io::Result<()> {
    let started = Instant::now();
    let nofile = sys::raise_nofile();
    // The server on core 0, the generator on core 1, when there are two.
    let (server_cpu, pinned) = if sys::cpus() >= 2 { (Some(0), sys::pin_self(1)) } else { (None, false) };
    println!(
        "sotto-bench: {}; descriptors {nofile}; server on cpu {:?}, generator pinned to cpu 1: {pinned}",
        sys::machine(),
        server_cpu
    );
    let ctx = Ctx {
        quick: args.quick,
        cfg: sotto::handshake::ClientConfig::built_in().map_err(|e| io::Error::other(format!("{e:?}")))?,
        id: sotto_bench::proto::BenchIdentity::new(),
        server_cpu,
    };
    let want = |w: &str| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == &w.to_ascii_lowercase()));
    let mut r = Report::default();
    let peers = if args.peers { peers_run::Peers::prepare(&ctx, &mut r) } else { None };
    type Step = fn(&Ctx, &mut Report) -> io::Result<()>;
    let steps: [(&str, Step); 9] = [
        ("W1", work::w1),
        ("W2", work::w2),
        ("W3", direct::w3),
        ("W4", fanout::w4),
        ("W5", fanout::w5),
        ("W6", fanout::w6),
        ("W7", direct::w7),
        ("W8", sotto_bench::w8::w8),
        ("W9", sotto_bench::w9::w9),
    ];
    if want("micro") {
        println!("micro");
        work::micro(&ctx, &mut r);
    }
    if want("seal") {
        println!("seal");
        sotto_bench::seal::seal(ctx.quick, &mut r);
        sotto_bench::seal::signature_lever(ctx.quick, &mut r);
    }
    for (name, f) in steps {
        if !want(name) {
            continue;
        }
        let t = Instant::now();
        println!("{name}");
        if let Err(e) = f(&ctx, &mut r) {
            eprintln!("{name} (sottod) failed: {e}");
            r.fig(&format!("{}.failed", name.to_ascii_lowercase()), 1.0);
        }
        if let Some(p) = &peers {
            p.run(name, &ctx, &mut r);
        }
        println!("{name} took {:.0} s", t.elapsed().as_secs_f64());
    }
    // Indicative sections: sottod unpinned, the generator niced.
    let sections: [(&str, Step); 4] = [
        ("threads", sotto_bench::threads::threads),
        ("cluster", sotto_bench::threads::cluster),
        ("hop", sotto_bench::hop::section),
        ("failover", sotto_bench::w9::cluster_failover),
    ];
    for (name, f) in sections {
        if !want(name) {
            continue;
        }
        let t = Instant::now();
        println!("{name}");
        if let Err(e) = f(&ctx, &mut r) {
            eprintln!("{name} failed: {e}");
        }
        println!("{name} took {:.0} s", t.elapsed().as_secs_f64());
    }
    if want("W4") || want("loopback") {
        peers_run::loopback_limit(&ctx, &mut r, args.peers);
    }
    let elapsed = started.elapsed();
    println!("done in {:.0} s", elapsed.as_secs_f64());
    if let Some(path) = &args.report {
        let md = sotto_bench::doc::render(&r, args.quick, elapsed, peers.as_ref(), server_cpu);
        std::fs::write(path, md)?;
        println!("wrote {path}");
    }
    Ok(())
}
