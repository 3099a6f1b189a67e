//! Smoke test of sotto-bench's IRC side: for ngircd and InspIRCd, plain and TLS (ECDSA P-256,
//! RSA-2048), two clients in #bench pass 1,000 messages in order, 200 connections register
//! (blocking, from threads), 200 more through `connect_many`, and all 400 answer a PING
//! polled through the non-blocking API.
//! Exits non-zero on any failure.
//!
//! `cargo run -p sotto-bench --release --example irc_smoke`

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use sotto_bench::irc::{Event, Irc, TlsTarget};
use sotto_bench::peers::{self, CertPair, Kind, Peer, PeerOpts};

const MESSAGES: usize = 1_000;
const CONNECTIONS: usize = 200;
const WAIT: Duration = Duration::from_secs(10);

/// A registered connection, with how long opening it and registering took.
type Timed = (Irc, Duration, Duration);

fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("sotto-bench-irc-smoke-{}", std::process::id()));
    let result = run(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => {
            println!("irc smoke: all passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("irc smoke FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    peers::raise_fd_limit(4096);
    let t = Instant::now();
    let certs = peers::make_certs(&dir.join("certs")).map_err(|e| format!("certificates: {e}"))?;
    println!("certificates (ECDSA P-256, RSA-2048) made in {:.0?}; peers use {}", t.elapsed(), peers::tls_library());
    let mut failures = Vec::new();
    for kind in Kind::ALL {
        peers::ensure_installed(kind)?;
        let runs: [(&CertPair, &[bool]); 2] = [(&certs.ecdsa, &[false, true]), (&certs.rsa, &[true])];
        for (cert, transports) in runs {
            let t = Instant::now();
            let workdir = dir.join(format!("{kind}-{}", cert.label));
            let peer =
                Peer::start(kind, &workdir, cert, &PeerOpts::default()).map_err(|e| format!("{kind} start: {e}"))?;
            println!(
                "\n{} with {}: ready in {:.0?} (pid {}, fd limit {}, RSS {} KiB)",
                peer.version(),
                cert.label,
                t.elapsed(),
                peer.pid(),
                peer.fd_limit(),
                peer.rss_kib().unwrap_or(0)
            );
            let target = TlsTarget::from_cert_file(&cert.cert).map_err(|e| e.to_string())?;
            for &tls in transports {
                let name = if tls { format!("{kind} TLS {}", cert.label) } else { format!("{kind} plain") };
                let (addr, tls) = if tls { (peer.tls_addr(), Some(&target)) } else { (peer.plain_addr(), None) };
                let tag = if tls.is_some() { &cert.label[..3] } else { "pln" };
                if let Err(e) = check(&peer, addr, tls, tag) {
                    println!("  FAILED: {e}\n{}", peer.log_tail(10));
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Two clients pass `MESSAGES` in order, then `CONNECTIONS` register and answer a PING.
fn check(peer: &Peer, addr: SocketAddr, tls: Option<&TlsTarget>, tag: &str) -> Result<(), String> {
    let e = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
    let t = Instant::now();
    let mut sender = Irc::open(addr, tls).map_err(e("open"))?;
    let opened = t.elapsed();
    sender.register(&format!("{tag}send")).map_err(e("register"))?;
    let registered = t.elapsed();
    let mut receiver = connect_as(addr, tls, &format!("{tag}recv"))?;
    let t = Instant::now();
    sender.join("bench").map_err(e("join"))?;
    receiver.join("#bench").map_err(e("join"))?;
    let joined = t.elapsed() / 2;
    println!(
        "  {}: open {opened:.1?}, open+register {registered:.1?}, join {joined:.1?}",
        if tls.is_some() { "TLS" } else { "plain" }
    );

    sender.set_send_window(peer.kind().send_window());
    let t = Instant::now();
    let (sent, received) = thread::scope(|s| {
        let rx = s.spawn(|| -> Result<Duration, String> {
            for i in 0..MESSAGES {
                let m = receiver.next_message(WAIT).map_err(e("receive"))?;
                let m = m.ok_or_else(|| format!("message {i} not received within {WAIT:?}"))?;
                let seq = m.split(' ').nth(1).and_then(|n| n.parse::<usize>().ok());
                if seq != Some(i) {
                    return Err(format!("message {i} out of order: {m:?}"));
                }
            }
            Ok(t.elapsed())
        });
        let tx = (|| -> Result<Duration, String> {
            for i in 0..MESSAGES {
                sender.privmsg("#bench", &format!("seq {i} {:x<48}", "")).map_err(e("privmsg"))?;
            }
            sender.flush().map_err(e("flush"))?;
            if !sender.sync(WAIT).map_err(e("sync"))? {
                return Err("sender's PING not answered".into());
            }
            Ok(t.elapsed())
        })();
        // NOTE(unwrap): the receiver thread does not panic; if it did, so should this.
        (tx, rx.join().unwrap())
    });
    let (sent, received) = (sent?, received?);
    println!(
        "  {MESSAGES} messages: sent and acknowledged in {sent:.1?}, all received in order in {received:.1?} ({:.0} msg/s)",
        MESSAGES as f64 / received.as_secs_f64()
    );
    if sender.refusals() + receiver.refusals() > 0 {
        return Err(format!("server refused: {:?} {:?}", sender.last_refusal(), receiver.last_refusal()));
    }
    drop((sender, receiver));

    let rss_before = peer.rss_kib().unwrap_or(0);
    let overflows = peers::listen_overflows().unwrap_or(0);
    // No more threads than connections the server can have waiting for accept(2).
    let threads = peer.kind().connect_in_flight().min(CONNECTIONS);
    let t = Instant::now();
    let results: Vec<Result<Vec<Timed>, String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                s.spawn(move || {
                    (th..CONNECTIONS)
                        .step_by(threads)
                        .map(|i| {
                            let t = Instant::now();
                            let mut irc = Irc::open(addr, tls).map_err(|err| format!("open {i}: {err}"))?;
                            let opened = t.elapsed();
                            irc.register(&format!("{tag}t{i}")).map_err(|err| format!("register {i}: {err}"))?;
                            Ok((irc, opened, t.elapsed() - opened))
                        })
                        .collect()
                })
            })
            .collect();
        // NOTE(unwrap): connecting threads do not panic.
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = t.elapsed();
    let mut conns = Vec::new();
    let (mut opens, mut regs) = (Vec::new(), Vec::new());
    for r in results {
        for (irc, open, reg) in r? {
            conns.push(irc);
            opens.push(open);
            regs.push(reg);
        }
    }
    println!(
        "  {CONNECTIONS} connections, {threads} threads: all registered in {all:.0?}; open p50 {} max {}, register p50 {} max {}",
        p50(&mut opens),
        max(&opens),
        p50(&mut regs),
        max(&regs)
    );

    let t = Instant::now();
    let in_flight = peer.kind().connect_in_flight();
    let mut more = sotto_bench::irc::connect_many(addr, tls, &format!("{tag}n"), CONNECTIONS, in_flight)
        .map_err(|err| format!("connect_many: {err}"))?;
    println!("  {CONNECTIONS} more by connect_many, {in_flight} in flight: all registered in {:.0?}", t.elapsed());
    conns.append(&mut more);
    let rss_after = peer.rss_kib().unwrap_or(0);

    let t = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(&format!("hb{i}")).map_err(|err| format!("ping {i}: {err}"))?;
    }
    poll_until(&mut conns, |i, ev| match ev {
        Event::Pong(token) if token == format!("hb{i}") => Ok(true),
        other => Err(format!("unexpected {other:?}")),
    })?;
    println!(
        "  PING on all {} answered in {:.1?}; server RSS +{:.1} KiB per connection; listen overflows {}",
        conns.len(),
        t.elapsed(),
        rss_after.saturating_sub(rss_before) as f64 / conns.len() as f64,
        peers::listen_overflows().unwrap_or(0).saturating_sub(overflows)
    );
    Ok(())
}

fn p50(v: &mut [Duration]) -> String {
    v.sort();
    v.get(v.len() / 2).map(|d| format!("{d:.1?}")).unwrap_or_default()
}

fn max(v: &[Duration]) -> String {
    v.iter().max().map(|d| format!("{d:.1?}")).unwrap_or_default()
}

fn connect_as(addr: SocketAddr, tls: Option<&TlsTarget>, nick: &str) -> Result<Irc, String> {
    sotto_bench::irc::connect(addr, tls, nick).map_err(|e| format!("connect {nick}: {e}"))
}

/// Polls every connection (poll(2), then `poll_event`) until `done` has said `true` for each.
fn poll_until(conns: &mut [Irc], mut done: impl FnMut(usize, Event) -> Result<bool, String>) -> Result<(), String> {
    let mut waiting: Vec<usize> = (0..conns.len()).collect();
    let deadline = Instant::now() + WAIT;
    while !waiting.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{} connections still waiting after {WAIT:?}", waiting.len()));
        }
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> =
                waiting.iter().map(|&i| PollFd::new(conns[i].as_fd(), PollFlags::POLLIN)).collect();
            poll(&mut fds, PollTimeout::from(100u16)).map_err(|e| format!("poll: {e}"))?;
            waiting
                .iter()
                .zip(&fds)
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(&i, _)| i)
                .collect()
        };
        let mut finished = Vec::new();
        for i in ready {
            while let Some(ev) = conns[i].poll_event().map_err(|e| format!("connection {i}: {e}"))? {
                if done(i, ev).map_err(|e| format!("connection {i}: {e}"))? {
                    finished.push(i);
                    break;
                }
            }
        }
        waiting.retain(|i| !finished.contains(i));
    }
    Ok(())
}
