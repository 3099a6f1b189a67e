//! (temporary stub)
use crate::report::Report;
use crate::work::Ctx;
pub struct Peers {
    pub names: Vec<String>,
}
impl Peers {
    pub fn prepare(_ctx: &Ctx, _r: &mut Report) -> Option<Peers> {
        None
    }
    pub fn run(&self, _name: &str, _ctx: &Ctx, _r: &mut Report) {}
}
/// Small writes over loopback TCP, one write(2) per message to 100
/// connections in turn, from the server's core to a reader on the other:
/// the physical limit of a fan-out that makes one system call per delivery.
/// Messages of the size of a sotto room delivery (1476 bytes on the wire)
/// and of a short IRC line (100 bytes).
pub fn loopback_limit(ctx: &Ctx, r: &mut Report) {
    let s = r.section(
        "Loopback small-write limit",
        "One thread on the server's core writes one message per write(2) to 100 loopback TCP connections in \
         turn; a reader on the other core drains them. Messages per second: the ceiling for deliveries/s \
         when every delivery is its own system call.",
        &["message size", "writes/s", "MB/s"],
    );
    for size in [1476usize, 100] {
        match small_writes(size, if ctx.quick { 1.0 } else { 2.0 }, ctx.server_cpu) {
            Ok(rate_) => {
                if size == 1476 {
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
    let iperf = crate::sys::version_of("iperf3", &["--version"]);
    if iperf != "not found" {
        r.row(
            s,
            vec![
                "(iperf3 present, not used: it measures bulk transfer, not small writes)".into(),
                "-".into(),
                "-".into(),
            ],
        );
    }
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
