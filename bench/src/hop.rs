//! The NATS hop: what carrying a room message from one node to another over
//! NATS core subjects would cost, measured with the parts that would carry it
//! (DESIGN.md §11, "Cluster": several nodes serving at once is not built).
//! Three nats-server processes clustered on loopback; a publisher connected
//! to the first and a subscriber to the second, so that every message crosses
//! a route between servers as it would between two nodes on two machines;
//! messages of a short room message's size on the wire (628 bytes).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::report::{rate, Report};
use crate::stats::{us, Samples};
use crate::work::Ctx;

/// A short room message's frame on the wire (DESIGN §11, size classes).
pub const MESSAGE: usize = 628;
/// Messages of the throughput run.
const BURST: u64 = 200_000;
/// The latency run's rate and length.
const PACE: f64 = 10_000.0;

/// What the hop measured.
pub struct Hop {
    /// Messages per second the subscriber received in the burst.
    pub rate: f64,
    /// Messages of the burst that did not arrive (NATS core drops for a slow consumer).
    pub lost: u64,
    /// Latencies at `PACE` messages per second.
    pub lat: Samples,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Runs the hop: a burst for throughput, then a paced run for latency.
pub fn measure(quick: bool) -> io::Result<Hop> {
    let nats = sotto::nats_harness::NatsCluster::start().map_err(other)?;
    let urls: Vec<String> = nats.urls().split(',').map(str::to_owned).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let burst = if quick { BURST / 4 } else { BURST };
    let paced = if quick { 0.5 } else { 1.0 };
    rt.block_on(async {
        let publisher = async_nats::connect(urls[0].as_str()).await.map_err(other)?;
        let subscriber = async_nats::connect(urls[1].as_str()).await.map_err(other)?;
        let mut sub = subscriber.subscribe("sotto.bench.room.lobby").await.map_err(other)?;
        subscriber.flush().await.map_err(other)?;
        // The subscription must have reached the publisher's server over the route.
        let probe_until = Instant::now() + Duration::from_secs(10);
        loop {
            publisher.publish("sotto.bench.room.lobby", vec![0u8; 8].into()).await.map_err(other)?;
            publisher.flush().await.map_err(other)?;
            if tokio::time::timeout(Duration::from_millis(100), sub.next()).await.is_ok() {
                break;
            }
            if Instant::now() > probe_until {
                return Err(other("the subscription did not cross the NATS route within 10 s"));
            }
        }
        while tokio::time::timeout(Duration::from_millis(200), sub.next()).await.is_ok() {}

        // Throughput: as fast as the publisher goes.
        let got = Arc::new(AtomicU64::new(0));
        let last = Arc::new(Mutex::new(Instant::now()));
        let counting = {
            let (got, last) = (got.clone(), last.clone());
            tokio::spawn(async move {
                while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                    if m.payload.len() == MESSAGE {
                        got.fetch_add(1, Ordering::Relaxed);
                        *last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                        if got.load(Ordering::Relaxed) == burst {
                            break;
                        }
                    }
                }
                sub
            })
        };
        let start = Instant::now();
        let body = bytes::Bytes::from(vec![7u8; MESSAGE]);
        for _ in 0..burst {
            publisher.publish("sotto.bench.room.lobby", body.clone()).await.map_err(other)?;
        }
        publisher.flush().await.map_err(other)?;
        let mut sub = counting.await.map_err(other)?;
        let n = got.load(Ordering::Relaxed);
        let took = last.lock().unwrap_or_else(|e| e.into_inner()).duration_since(start);
        let rate_ = n as f64 / took.as_secs_f64().max(1e-9);

        // Latency: paced, each message carrying its send time.
        let origin = Instant::now();
        let total = (PACE * paced) as u64;
        let interval = Duration::from_secs_f64(1.0 / PACE);
        let sending = {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                for k in 0..total {
                    let due = origin + interval * k as u32;
                    tokio::time::sleep_until(due.into()).await;
                    let mut msg = vec![7u8; MESSAGE];
                    let at = origin.elapsed().as_nanos() as u64;
                    msg[..8].copy_from_slice(&at.to_be_bytes());
                    if publisher.publish("sotto.bench.room.lobby", msg.into()).await.is_err() {
                        break;
                    }
                }
                let _ = publisher.flush().await;
            })
        };
        let mut lat = Samples::default();
        let mut seen = 0;
        while seen < total {
            match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                Ok(Some(m)) if m.payload.len() == MESSAGE => {
                    let sent = u64::from_be_bytes(m.payload[..8].try_into().unwrap_or_default());
                    let now = origin.elapsed().as_nanos() as u64;
                    lat.push(Duration::from_nanos(now.saturating_sub(sent)));
                    seen += 1;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        sending.await.map_err(other)?;
        Ok(Hop { rate: rate_, lost: burst - n, lat })
    })
}

/// The hop's section: one row, and its figures for the scaling model.
pub fn section(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let s = r.section(
        "The NATS hop (indicative)",
        "What a message between two nodes over NATS core subjects costs: three nats-server processes \
         clustered on loopback, a publisher connected to one and a subscriber to another (every message \
         crosses a route between servers), messages of 628 bytes (a short room message on the wire). \
         `burst`: as fast as one publisher goes, received per second; `paced`: latency at 10,000 messages/s. \
         The servers and the generator share the two cores.",
        &["run", "messages/s", "p50", "p99", "lost"],
    );
    let hop = measure(ctx.quick)?;
    r.fig("hop.rate", hop.rate);
    r.row(s, vec!["burst".into(), rate(hop.rate), "-".into(), "-".into(), hop.lost.to_string()]);
    let mut lat = hop.lat;
    if lat.is_empty() {
        r.row(s, vec!["paced".into(), "nothing arrived".into()]);
        return Ok(());
    }
    let l = lat.summary();
    r.fig("hop.p50_us", l.p50.as_secs_f64() * 1e6);
    r.fig("hop.p99_us", l.p99.as_secs_f64() * 1e6);
    r.row(s, vec!["paced".into(), rate(PACE), us(l.p50), us(l.p99), "-".into()]);
    Ok(())
}
