//! The IRC peers in the same run: W1, W2, W4 and W6 against ngircd and
//! InspIRCd, plain and TLS, and the loopback limits.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::fanout::{saturate, StepVerdict, HALF_REPEATS};
use crate::irc::{self, Event, Irc, TlsTarget};
use crate::peers::{self, Certs, Kind, Peer, PeerOpts};
use crate::report::{rate, Report};
use crate::stats::{median, us, Samples};
use crate::sys::TempDir;
use crate::work::Ctx;

/// The peers that could be started in this run.
pub struct Peers {
    /// "ngircd 26.1 ..." lines for the report.
    pub names: Vec<String>,
    kinds: Vec<Kind>,
    dir: TempDir,
    certs: Certs,
    ecdsa: TlsTarget,
    rsa: TlsTarget,
}

/// One way to reach a peer.
#[derive(Clone, Copy)]
enum Transport {
    Plain,
    Tls,
}

/// A started peer and how to reach it: label ("ngircd-tls"), address, TLS target.
struct Target<'a> {
    label: String,
    addr: SocketAddr,
    tls: Option<&'a TlsTarget>,
    kind: Kind,
}

impl Peers {
    /// Installs and checks the peers; None when none can run here.
    pub fn prepare(_ctx: &Ctx, r: &mut Report) -> Option<Peers> {
        let dir = TempDir::new("peers").ok()?;
        let certs = match peers::make_certs(&dir.0.join("certs")) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sotto-bench: no certificates for the peers ({e}); running sottod alone");
                return None;
            }
        };
        let ecdsa = TlsTarget::from_cert_file(&certs.ecdsa.cert).ok()?;
        let rsa = TlsTarget::from_cert_file(&certs.rsa.cert).ok()?;
        let mut kinds = Vec::new();
        let mut names = Vec::new();
        for kind in Kind::ALL {
            if let Err(e) = peers::ensure_installed(kind) {
                eprintln!("sotto-bench: {kind} not available: {e}");
                continue;
            }
            match Peer::start(kind, &dir.0.join(format!("probe-{kind}")), &certs.ecdsa, &PeerOpts::default()) {
                Ok(p) => {
                    names.push(format!("{kind}: {} (Debian package), TLS by {}", p.version(), peers::tls_library()));
                    r.text(&format!("{kind} configuration (TLS with the ECDSA P-256 certificate)"), p.config_text());
                    kinds.push(kind);
                }
                Err(e) => eprintln!("sotto-bench: {kind} does not start: {e}"),
            }
        }
        if kinds.is_empty() {
            return None;
        }
        Some(Peers { names, kinds, dir, certs, ecdsa, rsa })
    }

    /// Starts `kind` with the ECDSA (or RSA) certificate on the server core.
    fn start(&self, ctx: &Ctx, kind: Kind, rsa: bool, tag: &str) -> io::Result<Peer> {
        let opts = PeerOpts { cpu: ctx.server_cpu, ..PeerOpts::default() };
        let cert = if rsa { &self.certs.rsa } else { &self.certs.ecdsa };
        Peer::start(kind, &self.dir.0.join(format!("{kind}-{tag}")), cert, &opts)
    }

    fn target<'a>(&'a self, p: &Peer, t: Transport, rsa: bool) -> Target<'a> {
        let kind = p.kind();
        match t {
            Transport::Plain => Target { label: kind.name().to_string(), addr: p.plain_addr(), tls: None, kind },
            Transport::Tls => Target {
                label: format!("{kind}-tls{}", if rsa { "-rsa" } else { "" }),
                addr: p.tls_addr(),
                tls: Some(if rsa { &self.rsa } else { &self.ecdsa }),
                kind,
            },
        }
    }

    /// Runs workload `name` against every peer.
    pub fn run(&self, name: &str, ctx: &Ctx, r: &mut Report) {
        for &kind in &self.kinds {
            let res = match name {
                "W1" => self.w1(ctx, kind, r),
                "W2" => self.w2(ctx, kind, r),
                "W4" => self.w4(ctx, kind, r),
                "W6" => self.w6(ctx, kind, r),
                _ => Ok(()),
            };
            if let Err(e) = res {
                eprintln!("{name} against {kind} failed: {e}");
            }
        }
    }

    fn w1(&self, ctx: &Ctx, kind: Kind, r: &mut Report) -> io::Result<()> {
        let s = r.section_id("W1 handshakes (sotto)");
        let n = if ctx.quick { 1000 } else { 5000 };
        let certs: &[bool] = if ctx.quick { &[true] } else { &[true, false] };
        for &rsa in certs {
            let p = self.start(ctx, kind, rsa, if rsa { "w1rsa" } else { "w1" })?;
            let tg = self.target(&p, Transport::Tls, rsa);
            for inflight in [64, 256] {
                // ngircd listens with a backlog of 10 and accepts one connection per
                // loop pass: more in flight overflow it and the kernel drops SYNs.
                let cap = inflight.min(kind.connect_in_flight());
                let (rate_, mut lat) = crate::work::handshakes(n, cap, || Irc::open(tg.addr, tg.tls).map(drop))?;
                let l = lat.summary();
                r.fig(&format!("w1.{}.{inflight}.rate", tg.label), rate_);
                let shown = if cap < inflight { format!("{inflight} (capped at {cap})") } else { inflight.to_string() };
                r.row(
                    s,
                    vec![
                        format!("{} (TLS 1.3 handshake, {})", tg.label, if rsa { "RSA-2048" } else { "ECDSA P-256" }),
                        n.to_string(),
                        shown,
                        rate(rate_),
                        us(l.p50),
                        us(l.p99),
                        us(l.p999),
                        "-".into(),
                    ],
                );
            }
        }
        Ok(())
    }

    fn w2(&self, ctx: &Ctx, kind: Kind, r: &mut Report) -> io::Result<()> {
        let s = r.section_id("W2 idle authenticated connections (sotto)");
        let sizes: &[usize] = if ctx.quick { &[1000] } else { &[1000, 10_000] };
        // Plain IRC for reference at 1,000 only: the run must stay within 15 minutes.
        let transports = |n: usize| -> &'static [Transport] {
            if ctx.quick || n > 1000 {
                &[Transport::Tls]
            } else {
                &[Transport::Tls, Transport::Plain]
            }
        };
        for &n in sizes {
            for &t in transports(n) {
                let p = self.start(ctx, kind, false, "w2")?;
                let tg = self.target(&p, t, false);
                std::thread::sleep(Duration::from_millis(200));
                let base = p.rss_kib()?;
                let conns = connect_many(&tg, n)?;
                std::thread::sleep(Duration::from_millis(500));
                let per = p.rss_kib()?.saturating_sub(base) as f64 * 1024.0 / n as f64;
                let cpu0 = p.cpu_time()?;
                let secs = if ctx.quick { 3 } else { 10 };
                let start = Instant::now();
                let mut lat = heartbeats(conns, Duration::from_secs(secs))?;
                let cpu = (p.cpu_time()? - cpu0).as_secs_f64() / start.elapsed().as_secs_f64();
                let l = lat.summary();
                r.fig(&format!("w2.{}.{n}.rss_per_conn", tg.label), per);
                r.row(
                    s,
                    vec![
                        tg.label.clone(),
                        rate(n as f64),
                        format!("{:.2} KiB", per / 1024.0),
                        format!("{:.1}%", cpu * 100.0),
                        us(l.p50),
                        us(l.p99),
                        "-".into(),
                    ],
                );
            }
        }
        Ok(())
    }

    fn w4(&self, ctx: &Ctx, kind: Kind, r: &mut Report) -> io::Result<()> {
        let s = r.section_id("W4 room fan-out (sotto)");
        let sizes: &[usize] = if ctx.quick { &[10] } else { &[10, 100, 1000] };
        let publishers: &[usize] = if ctx.quick { &[1] } else { &[1, 5] };
        let secs = if ctx.quick { 0.6 } else { 1.0 };
        // Plain IRC is for reference only: in the full run, for the rooms of 10.
        let transports = |m: usize| -> &'static [Transport] {
            if ctx.quick || m > 10 {
                &[Transport::Tls]
            } else {
                &[Transport::Tls, Transport::Plain]
            }
        };
        for &m in sizes {
            for &pubs in publishers {
                for &t in transports(m) {
                    let p = self.start(ctx, kind, false, "w4")?;
                    let tg = self.target(&p, t, false);
                    let mut conns = connect_many(&tg, m)?;
                    for c in conns.iter_mut() {
                        c.join("w4")?;
                        c.set_send_window(kind.send_window());
                    }
                    for c in conns.iter_mut() {
                        c.sync(Duration::from_secs(30))?;
                        while c.poll_event()?.is_some() {}
                    }
                    let best = saturate(20_000.0 / (m - 1) as f64, ctx.quick, |msgs| {
                        // A peer that drops a member past saturation ends the search there.
                        match irc_fanout_step(&mut conns, pubs, msgs, secs) {
                            Ok((deliv, lat, true)) if lat.clone().percentile(99.0) < Duration::from_millis(50) => {
                                StepVerdict::Kept(deliv, lat)
                            }
                            Ok((_, _, true)) => StepVerdict::Slow,
                            _ => StepVerdict::Broken,
                        }
                    });
                    match best {
                        Some((best_msgs, (deliv, mut lat))) => {
                            // None when the peer dropped a member in the search: no half-load figure.
                            let mut p99s = Vec::new();
                            for _ in 0..HALF_REPEATS {
                                match irc_fanout_step(&mut conns, pubs, best_msgs / 2.0, secs) {
                                    Ok((_, mut half, _)) => p99s.push(half.percentile(99.0).as_secs_f64()),
                                    Err(_) => break,
                                }
                            }
                            let half99 = (!p99s.is_empty()).then(|| Duration::from_secs_f64(median(p99s)));
                            r.fig(&format!("w4.{}.{m}.{pubs}.deliveries", tg.label), deliv);
                            if let Some(h) = half99 {
                                r.fig(&format!("w4.{}.{m}.{pubs}.p99_half_us", tg.label), h.as_secs_f64() * 1e6);
                            }
                            r.row(
                                s,
                                vec![
                                    tg.label.clone(),
                                    m.to_string(),
                                    pubs.to_string(),
                                    rate(deliv),
                                    us(lat.percentile(50.0)),
                                    us(lat.percentile(99.0)),
                                    half99.map_or("-".into(), us),
                                ],
                            );
                        }
                        None => {
                            r.row(s, vec![tg.label.clone(), m.to_string(), pubs.to_string(), "did not keep up".into()])
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn w6(&self, ctx: &Ctx, kind: Kind, r: &mut Report) -> io::Result<()> {
        let s = r.section_id("W6 burst fairness (sotto)");
        let n = if ctx.quick { 20_000 } else { 100_000 };
        let transports: &[Transport] = if ctx.quick { &[Transport::Tls] } else { &[Transport::Tls, Transport::Plain] };
        for &t in transports {
            let p = self.start(ctx, kind, false, "w6")?;
            let tg = self.target(&p, t, false);
            let mut conns = connect_many(&tg, 12)?;
            for c in conns.iter_mut().take(2) {
                c.join("burst")?;
            }
            conns[0].set_send_window(kind.send_window());
            let quiet = probe_rtts(&mut conns[2..], Duration::from_secs(2))?;
            let (mut busy, burst_rate) = {
                let (burster, rest) = conns.split_at_mut(1);
                let (receiver, probes) = rest.split_at_mut(1);
                burst(&mut burster[0], &mut receiver[0], probes, n)?
            };
            let mut quiet = quiet;
            r.fig(&format!("w6.{}.others_p99_us", tg.label), busy.percentile(99.0).as_secs_f64() * 1e6);
            r.row(
                s,
                vec![
                    tg.label.clone(),
                    rate(n as f64),
                    rate(burst_rate),
                    us(busy.percentile(50.0)),
                    us(busy.percentile(99.0)),
                    us(quiet.percentile(99.0)),
                ],
            );
        }
        Ok(())
    }
}

static NICKS: AtomicUsize = AtomicUsize::new(0);

/// `n` registered connections (registrations in flight as the peer takes them).
fn connect_many(tg: &Target<'_>, n: usize) -> io::Result<Vec<Irc>> {
    let prefix = format!("c{}x", NICKS.fetch_add(1, Ordering::SeqCst));
    irc::connect_many(tg.addr, tg.tls, &prefix, n, tg.kind.connect_in_flight())
}

/// Readiness of many IRC connections through epoll, as sotto's sessions get
/// in engine.rs: the generator's cost per wait follows the ready connections,
/// not their number, so that it adds the same (small) delay to every server.
struct Watch {
    epoll: Epoll,
    interest: Vec<EpollFlags>,
    events: Vec<EpollEvent>,
}

impl Watch {
    fn new(conns: &[Irc]) -> io::Result<Watch> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        for (i, c) in conns.iter().enumerate() {
            epoll.add(c.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        }
        Ok(Watch { epoll, interest: vec![EpollFlags::EPOLLIN; conns.len()], events: vec![EpollEvent::empty(); 1024] })
    }

    /// Waits until one of `conns` (those given to `new`) is readable, or
    /// writable with output left, at most `wait`.
    fn ready(&mut self, conns: &[Irc], wait: Duration) -> io::Result<Vec<usize>> {
        for (i, c) in conns.iter().enumerate() {
            let mut want = EpollFlags::EPOLLIN;
            if c.wants_write() {
                want |= EpollFlags::EPOLLOUT;
            }
            if self.interest.get(i) != Some(&want) {
                self.epoll.modify(c.as_fd(), &mut EpollEvent::new(want, i as u64))?;
                self.interest[i] = want;
            }
        }
        let t = EpollTimeout::try_from(wait.as_millis().min(100) as u32).unwrap_or(EpollTimeout::ZERO);
        let n = match self.epoll.wait(&mut self.events, t) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(self.events[..n].iter().map(|e| e.data() as usize).filter(|i| *i < conns.len()).collect())
    }
}

/// Each connection pings every 10 s (spread evenly) for `secs`; the round trips.
fn heartbeats(mut conns: Vec<Irc>, secs: Duration) -> io::Result<Samples> {
    let n = conns.len();
    let period = Duration::from_secs(10);
    let start = Instant::now();
    let mut sent: Vec<Option<Instant>> = vec![None; n];
    let mut next = 0usize;
    let mut lat = Samples::default();
    let mut watch = Watch::new(&conns)?;
    while start.elapsed() < secs {
        let now = Instant::now();
        while now >= start + period.mul_f64((next % n) as f64 / n as f64) + period * (next / n) as u32 {
            let i = next % n;
            conns[i].ping("hb")?;
            sent[i] = Some(now);
            next += 1;
        }
        for i in watch.ready(&conns, Duration::from_millis(2))? {
            while let Some(ev) = conns[i].poll_event()? {
                if let Event::Pong(_) = ev {
                    if let Some(t) = sent[i].take() {
                        lat.push(t.elapsed());
                    }
                }
            }
        }
    }
    Ok(lat)
}

/// One open-loop step on an IRC channel: publishers `conns[..p]`.
fn irc_fanout_step(conns: &mut [Irc], p: usize, msgs_per_s: f64, secs: f64) -> io::Result<(f64, Samples, bool)> {
    let m = conns.len();
    let interval = Duration::from_secs_f64(1.0 / msgs_per_s);
    let total = (msgs_per_s * secs).round().max(1.0) as usize;
    let start = Instant::now() + Duration::from_millis(5);
    let mut sent: Vec<Instant> = Vec::with_capacity(total);
    let mut arrivals = vec![0u32; total];
    let mut last: Vec<Option<Instant>> = vec![None; total];
    let expected = (m - p) as u32;
    let mut delivered = 0usize;
    let deadline = start + Duration::from_secs_f64(secs) + Duration::from_secs(3);
    let tag = NICKS.fetch_add(1, Ordering::SeqCst);
    let mut watch = Watch::new(conns)?;
    while Instant::now() < deadline && !(sent.len() == total && delivered == total) {
        let now = Instant::now();
        while sent.len() < total && now >= start + interval * sent.len() as u32 {
            let k = sent.len();
            conns[k % p].privmsg("w4", &format!("{tag} {k}"))?;
            sent.push(start + interval * k as u32);
        }
        for i in watch.ready(conns, Duration::from_millis(1))? {
            while let Some(ev) = conns[i].poll_event()? {
                if i < p {
                    continue;
                }
                if let Event::Message(text) = ev {
                    let mut it = text.split(' ');
                    if it.next().and_then(|t| t.parse::<usize>().ok()) != Some(tag) {
                        continue;
                    }
                    if let Some(k) = it.next().and_then(|k| k.parse::<usize>().ok()).filter(|k| *k < total) {
                        arrivals[k] += 1;
                        last[k] = Some(last[k].map_or(now, |t: Instant| t.max(Instant::now())));
                        if arrivals[k] == expected {
                            delivered += 1;
                        }
                    }
                }
            }
        }
    }
    let mut lat = Samples::default();
    for k in 0..sent.len() {
        if arrivals[k] >= expected {
            if let Some(t) = last[k] {
                lat.push(t.saturating_duration_since(sent[k]));
            }
        }
    }
    let deliveries = delivered as f64 * (m - 1) as f64 / secs;
    Ok((deliveries, lat, delivered == total))
}

/// Heartbeat round trips of `probes` every 10 ms for `secs`.
fn probe_rtts(probes: &mut [Irc], secs: Duration) -> io::Result<Samples> {
    let mut lat = Samples::default();
    let start = Instant::now();
    while start.elapsed() < secs {
        let t = Instant::now();
        for p in probes.iter_mut() {
            p.ping("p")?;
        }
        for p in probes.iter_mut() {
            if p.next_pong(Duration::from_secs(10))?.is_some() {
                lat.push(t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(lat)
}

/// The burster pipelines `n` messages (as fast as the server reads them) to
/// the receiver while the probes measure; (probe round trips, burst msgs/s).
fn burst(b: &mut Irc, rcv: &mut Irc, probes: &mut [Irc], n: usize) -> io::Result<(Samples, f64)> {
    let stop = AtomicBool::new(false);
    let got = Cell::new(0usize);
    let lat = std::sync::Mutex::new(Samples::default());
    let start = Instant::now();
    std::thread::scope(|s| -> io::Result<()> {
        let h = s.spawn(|| -> io::Result<()> {
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                for p in probes.iter_mut() {
                    p.ping("p")?;
                }
                let mut l = Samples::default();
                for p in probes.iter_mut() {
                    if p.next_pong(Duration::from_secs(30))?.is_some() {
                        l.push(t.elapsed());
                    }
                }
                lat.lock().map_err(|_| io::Error::other("poisoned"))?.extend(l);
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        });
        let mut k = 0;
        let mut watch = Watch::new(std::slice::from_ref(&*rcv))?;
        while got.get() < n && start.elapsed() < Duration::from_secs(120) {
            for _ in 0..100 {
                if k < n {
                    b.privmsg("burst", &format!("burst {k}"))?;
                    k += 1;
                }
            }
            while let Some(ev) = rcv.poll_event()? {
                if let Event::Message(_) = ev {
                    got.set(got.get() + 1);
                }
            }
            while b.poll_event()?.is_some() {}
            let _ = watch.ready(std::slice::from_ref(&*rcv), Duration::from_millis(1));
        }
        stop.store(true, Ordering::SeqCst);
        h.join().map_err(|_| io::Error::other("probe thread panicked"))??;
        Ok(())
    })?;
    let took = start.elapsed().as_secs_f64();
    let lat = lat.into_inner().map_err(|_| io::Error::other("poisoned"))?;
    Ok((lat, got.get() as f64 / took))
}

/// Small writes over loopback TCP, one write(2) per message to 100
/// connections in turn, from the server's core to a reader on the other:
/// the physical limit of a fan-out that makes one system call per delivery.
/// Messages of the size of a short sotto room delivery ([`crate::doc::DELIVERY`] bytes on the wire)
/// and of a short IRC line (100 bytes).
pub fn loopback_limit(ctx: &Ctx, r: &mut Report, install: bool) {
    let s = r.section(
        "Loopback small-write limit",
        "One thread on the server's core writes one message per write(2) to 100 loopback TCP connections in \
         turn (TCP_NODELAY, as sottod's sockets); a reader on the other core drains them. Messages per \
         second: the ceiling for deliveries/s when every delivery is its own system call. Then the same \
         from standard tools when installed (with the peers): sockperf's throughput mode over one \
         connection, with TCP_NODELAY and with Nagle's coalescing (several messages per segment), and \
         iperf3's bulk rate.",
        &["message size", "writes/s", "MB/s"],
    );
    for size in [crate::doc::DELIVERY, 100] {
        match small_writes(size, if ctx.quick { 1.0 } else { 2.0 }, ctx.server_cpu) {
            Ok(rate_) => {
                if size == crate::doc::DELIVERY {
                    r.fig("loopback.small_writes", rate_);
                }
                r.row(
                    s,
                    vec![format!("{size} B"), crate::report::rate(rate_), format!("{:.0}", rate_ * size as f64 / 1e6)],
                );
            }
            Err(e) => r.row(s, vec![format!("{size} B"), format!("failed: {e}"), "-".into()]),
        }
    }
    // The same limits from standard tools, installed with the peers: sockperf
    // with TCP_NODELAY (as sottod writes) and with Nagle's coalescing, and
    // iperf3's bulk transfer; one connection each, the writer on the server's core.
    let secs = if ctx.quick { "1" } else { "2" };
    let have = |package: &str, binary: &str| {
        Path::new(binary).exists() || (install && crate::peers::ensure_package(package, binary).is_ok())
    };
    if have("sockperf", "/usr/bin/sockperf") {
        let v = crate::sys::version_of("sockperf", &["--version"]);
        let labels = [
            (format!("{v}: {} B, TCP_NODELAY, one connection", crate::doc::DELIVERY), true),
            (format!("{v}: {} B, Nagle, one connection", crate::doc::DELIVERY), false),
        ];
        for (label, nodelay) in labels {
            let row = match sockperf(ctx.server_cpu, secs, nodelay) {
                Ok(rate_) => {
                    r.fig(&format!("loopback.sockperf_{}", if nodelay { "nodelay" } else { "nagle" }), rate_);
                    vec![label, crate::report::rate(rate_), format!("{:.0}", rate_ * crate::doc::DELIVERY as f64 / 1e6)]
                }
                Err(e) => vec![label, format!("failed: {e}"), "-".into()],
            };
            r.row(s, row);
        }
    }
    if have("iperf3", "/usr/bin/iperf3") {
        let label = format!("{}: bulk TCP, one connection", crate::sys::version_of("iperf3", &["--version"]));
        let row = match iperf3(ctx.server_cpu, secs) {
            Ok(bps) => vec![label, "-".into(), format!("{:.0}", bps / 8.0 / 1e6)],
            Err(e) => vec![label, format!("failed: {e}"), "-".into()],
        };
        r.row(s, row);
    }
}

/// A free loopback port (bound and released; the tool binds it right after).
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a tool's `server` (reading on the generator's core, where this
/// process runs) and then its `client` pinned to `cpu`; the client's output.
fn tool_pair(
    server: &mut std::process::Command,
    client: &mut std::process::Command,
    cpu: Option<usize>,
) -> io::Result<String> {
    use std::process::Stdio;
    let mut server = crate::sys::spawn_pinned(server.stdout(Stdio::null()).stderr(Stdio::null()), None)?;
    std::thread::sleep(Duration::from_millis(500));
    let out = crate::sys::spawn_pinned(client.stdout(Stdio::piped()).stderr(Stdio::null()), cpu)
        .and_then(|c| c.wait_with_output());
    let _ = server.kill();
    let _ = server.wait();
    Ok(String::from_utf8_lossy(&out?.stdout).into_owned())
}

/// `sockperf throughput` over TCP with messages of a short room delivery: messages/s. The
/// server reads on the generator's core; the client writes on `cpu`.
fn sockperf(cpu: Option<usize>, secs: &str, nodelay: bool) -> io::Result<f64> {
    let port = free_port()?.to_string();
    let mut server = std::process::Command::new("sockperf");
    server.args(["server", "--tcp", "-i", "127.0.0.1", "-p", &port]);
    let mut client = std::process::Command::new("sockperf");
    client.args([
        "throughput",
        "--tcp",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        &crate::doc::DELIVERY.to_string(),
        "-t",
        secs,
    ]);
    // In throughput mode sockperf enables Nagle by default; this flag turns it off.
    if nodelay {
        client.arg("--tcp-avoid-nodelay");
    }
    let text = tool_pair(&mut server, &mut client, cpu)?;
    // "sockperf: Summary: Message Rate is 171543 [msg/sec], ..."
    text.split("Message Rate is ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| io::Error::other("no message rate in sockperf's output"))
}

/// `iperf3` bulk TCP: bits/s received. The server receives on the generator's
/// core; the client sends on `cpu`.
fn iperf3(cpu: Option<usize>, secs: &str) -> io::Result<f64> {
    let port = free_port()?.to_string();
    let mut server = std::process::Command::new("iperf3");
    server.args(["-s", "-1", "-B", "127.0.0.1", "-p", &port]);
    let mut client = std::process::Command::new("iperf3");
    client.args(["-c", "127.0.0.1", "-p", &port, "-t", secs, "-J"]);
    let text = tool_pair(&mut server, &mut client, cpu)?;
    // The JSON's "end": { ..., "sum_received": { ..., "bits_per_second": N, ... } }
    text.split("\"sum_received\"")
        .nth(1)
        .and_then(|t| t.split("\"bits_per_second\":").nth(1))
        .and_then(|t| t.trim_start().split([',', '\n', '}']).next())
        .and_then(|n| n.trim().parse::<f64>().ok())
        .ok_or_else(|| io::Error::other("no bits_per_second in iperf3's output"))
}

fn small_writes(size: usize, secs: f64, cpu: Option<usize>) -> std::io::Result<f64> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..100 {
        let w = TcpStream::connect(addr)?;
        w.set_nodelay(true)?;
        writers.push(w);
        let (rd, _) = l.accept()?;
        rd.set_nonblocking(true)?;
        readers.push(rd);
    }
    let stop = AtomicBool::new(false);
    let msg = vec![0x42u8; size];
    std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut buf = vec![0u8; 1 << 16];
            let mut fds: Vec<libc::pollfd> = readers
                .iter()
                .map(|r| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(r), events: libc::POLLIN, revents: 0 })
                .collect();
            while !stop.load(Ordering::SeqCst) {
                // SAFETY: fds is a valid array of pollfd for the duration of the call.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
                for (i, f) in fds.iter().enumerate() {
                    if f.revents != 0 {
                        while let Ok(n) = (&readers[i]).read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let writer = sc.spawn(|| {
            if let Some(c) = cpu {
                crate::sys::pin_self(c);
            }
            let start = std::time::Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                for w in writers.iter_mut() {
                    if w.write_all(&msg).is_err() {
                        return 0.0;
                    }
                    n += 1;
                }
            }
            n as f64 / start.elapsed().as_secs_f64()
        });
        let rate_ = writer.join().unwrap_or(0.0);
        stop.store(true, Ordering::SeqCst);
        let _ = reader.join();
        Ok(rate_)
    })
}
