//! W8: file transfer (PROTOCOL.md §10) through sottod next to scp over a
//! loopback sshd, and the latency of room messages to a member while that
//! member's connection downloads a file.

use std::cell::{Cell, RefCell};
use std::io;
use std::time::{Duration, Instant};

use sotto::opcodes::{
    FileAck, FileChunk, FileChunkData, FileDone, FileGet, FileInfo, FileOffer, ReceiveRoomMessageS, StatusReply, FLCD,
    FLCH, FLIN, RVRS, STAT,
};
use sotto::wire::{self, Message};
use zerocopy::{FromBytes, FromZeros};

use crate::engine::{self, Event, Mode, Peer};
use crate::report::{ratio, Report};
use crate::scp::{self, mb_per_s, ScpFigures};
use crate::server::Sottod;
use crate::stats::{median, us, Samples};
use crate::sys::{self, TempDir};
use crate::work::{self, err, Ctx, CHEAP_KDF};
use sotto::file::{FileKeys, CHUNK};

/// Chunks an uploader keeps unacknowledged at most (§10: 64, 1 MiB).
pub const WINDOW: u32 = 64;
/// Room messages per second to the downloading member.
pub const CHAT_RATE: f64 = 200.0;
/// The room of the chat measurement.
const ROOM: &str = "w8";
/// No step of W8 may take longer (a stalled server fails the run, no hang).
const STEP_LIMIT: Duration = Duration::from_secs(600);

/// The file size of a run: 256 MiB, 64 MiB in a quick one.
pub fn file_size(quick: bool) -> usize {
    if quick {
        64 << 20
    } else {
        256 << 20
    }
}

/// ceil(size / 16384): the chunks of a file of `size` bytes.
fn chunk_count(size: u64) -> u32 {
    sotto::file::chunk_count(size).unwrap_or(u32::MAX)
}

/// The plaintext of chunk `index` of `file` (the last one may be short).
fn plain_chunk(file: &[u8], index: u32) -> &[u8] {
    let start = (index as usize).saturating_mul(CHUNK).min(file.len());
    &file[start..(start + CHUNK).min(file.len())]
}

/// The flags W8 adds to sottod's: a size limit of exactly the file and a
/// quota of four of them.
pub fn file_flags(size: usize) -> [String; 4] {
    ["--max-file-size".into(), size.to_string(), "--file-quota".into(), (4 * size).to_string()]
}

/// What the sotto half measured.
struct SottoFigures {
    up: Vec<f64>,
    down: Vec<f64>,
    /// sottod's CPU time per second of upload and of download.
    cpu_up: f64,
    cpu_down: f64,
    idle: Samples,
    busy: Samples,
    flags: Vec<String>,
}

/// Sends `m` from `peers[i]` and drives every peer until its answer (the
/// first message with its msg_id that is not a chunk): errors on a stat other than 2xx.
fn ask<M: Message>(peers: &mut [Peer], i: usize, m: M) -> io::Result<Vec<u8>> {
    let id = peers[i].s.queue(m);
    let answer: RefCell<Option<Vec<u8>>> = RefCell::new(None);
    engine::drive(
        peers,
        Instant::now() + Duration::from_secs(60),
        Duration::from_millis(1),
        |_, _| answer.borrow().is_none(),
        |_, ev, _| {
            if let Event::Message(j, m) = ev {
                if let Ok(h) = wire::header(m) {
                    if j == i && h.msg_id.get() == id && h.opcode.get() != FLCD {
                        *answer.borrow_mut() = Some(m.to_vec());
                    }
                }
            }
        },
    )?;
    let m = answer.into_inner().ok_or_else(|| err(format!("{}: no answer within 60 s", M::MNEMONIC)))?;
    check_stat(M::MNEMONIC, &m)?;
    Ok(m)
}

/// An error for a stat that is not 2xx (`what`: the request).
fn check_stat(what: &str, m: &[u8]) -> io::Result<()> {
    if let Ok(st) = StatusReply::read_from_bytes(m) {
        if st.hdr.opcode.get() == STAT && st.hdr.code.get() / 100 != 2 {
            return Err(err(format!("{what}: {} {}", st.hdr.code.get(), st.reason().unwrap_or("?"))));
        }
    }
    Ok(())
}

/// Uploads `file` from `peers[0]` to the DM contact `peer_uid`: flof, then the
/// chunks pipelined with at most [`WINDOW`] unacknowledged. The time from flof
/// to the last chunk's acknowledgement.
fn upload(peers: &mut [Peer], peer_uid: u64, file_id: u64, keys: &FileKeys, file: &[u8]) -> io::Result<Duration> {
    let count = chunk_count(file.len() as u64);
    let t = Instant::now();
    let mut o = FileOffer::new_zeroed();
    o.file_id.set(file_id);
    o.size.set(file.len() as u64);
    o.chunk_count.set(count);
    o.target = 1;
    o.peer_uid.set(peer_uid);
    let info = ask(peers, 0, o)?;
    let info = FileInfo::read_from_bytes(&info).map_err(|_| err("flof: no flin"))?;
    if info.hdr.opcode.get() != FLIN {
        return Err(err(format!("flof answered by opcode {}", info.hdr.opcode.get())));
    }
    // A fresh id: nothing stored yet (a resume would start at `stored`).
    let mut next = info.stored.get();
    let acked = Cell::new(next);
    let failed: RefCell<Option<String>> = RefCell::new(None);
    let mut c = FileChunk::new_zeroed();
    c.file_id.set(file_id);
    engine::drive(
        peers,
        t + STEP_LIMIT,
        Duration::from_millis(1),
        |_, peers| {
            let s = &mut peers[0].s;
            // The window, and no more than a few chunks waiting in our own buffer.
            while next < count && next - acked.get() < WINDOW && s.pending() < 256 * 1024 {
                c.index.set(next);
                match keys.seal_into(next, plain_chunk(file, next), &mut c.data) {
                    Ok((iv, tag)) => (c.iv, c.tag) = (iv, tag),
                    Err(_) => {
                        *failed.borrow_mut() = Some(format!("chunk {next} does not seal"));
                        return false;
                    }
                }
                s.queue(c);
                next += 1;
            }
            failed.borrow().is_none() && acked.get() < count
        },
        |_, ev, _| {
            if let Event::Message(0, m) = ev {
                if let Ok(st) = StatusReply::read_from_bytes(m) {
                    if st.hdr.opcode.get() == STAT && st.request_opcode.get() == FLCH {
                        if st.hdr.code.get() == 200 {
                            acked.set(acked.get() + 1);
                        } else {
                            *failed.borrow_mut() = Some(format!(
                                "flch after {} acknowledged: {} {}",
                                acked.get(),
                                st.hdr.code.get(),
                                st.reason().unwrap_or("?")
                            ));
                        }
                    }
                }
            }
        },
    )?;
    if let Some(e) = failed.into_inner() {
        return Err(err(e));
    }
    if acked.get() < count {
        return Err(err(format!("upload: {} of {count} chunks acknowledged in {STEP_LIMIT:?}", acked.get())));
    }
    Ok(t.elapsed())
}

/// Downloads the file from `peers[0]` (flgt, then flcd to the final stat),
/// checking each chunk's index and tag and its plaintext against `file`. With
/// `chat`, `peers[1]` sends room messages at [`CHAT_RATE`] meanwhile and
/// their latencies to `peers[0]` are returned. The time from flgt to the stat.
fn download(
    peers: &mut [Peer],
    file_id: u64,
    keys: &FileKeys,
    file: &[u8],
    chat: bool,
) -> io::Result<(Duration, Samples)> {
    let count = chunk_count(file.len() as u64);
    let mut g = FileGet::new_zeroed();
    g.file_id.set(file_id);
    let t = Instant::now();
    let gid = peers[0].s.queue(g);
    let got = Cell::new(0u32);
    let mut taken = 0u32;
    let done = Cell::new(false);
    let failed: RefCell<Option<String>> = RefCell::new(None);
    let chat_state = RefCell::new(Chat::new(t));
    engine::drive(
        peers,
        t + STEP_LIMIT,
        if chat { Duration::ZERO } else { Duration::from_millis(1) },
        |now, peers| {
            // Tell sottod what is taken, as the client does (every 4 chunks
            // of its 16-chunk window, PROTOCOL.md §10).
            if got.get() >= taken + 4 && got.get() < count {
                taken = got.get();
                let mut a = FileAck::new_zeroed();
                a.file_id.set(file_id);
                a.through.set(taken);
                peers[0].s.queue(a);
            }
            let mut c = chat_state.borrow_mut();
            if chat && !done.get() {
                c.send_due(now, &mut peers[1]);
            }
            failed.borrow().is_none() && !(done.get() && c.all_in())
        },
        |now, ev, _| {
            let Event::Message(0, m) = ev else { return };
            let Ok(h) = wire::header(m) else { return };
            match h.opcode.get() {
                FLCD => {
                    let Ok(c) = FileChunkData::read_from_bytes(m) else {
                        *failed.borrow_mut() = Some("flcd of the wrong size".into());
                        return;
                    };
                    let i = c.index.get();
                    let expect = plain_chunk(file, i);
                    let ok = c.file_id.get() == file_id
                        && i == got.get()
                        && keys.open(i, &c.iv, &c.tag, &c.data, expect.len()).is_ok_and(|p| p[..] == *expect);
                    if ok {
                        got.set(i + 1);
                    } else {
                        *failed.borrow_mut() = Some(format!("chunk {i} (expected {}) does not verify", got.get()));
                    }
                }
                STAT if h.msg_id.get() == gid => {
                    if let Err(e) = check_stat("flgt", m) {
                        *failed.borrow_mut() = Some(e.to_string());
                    } else if got.get() != count {
                        *failed.borrow_mut() = Some(format!("flgt done after {} of {count} chunks", got.get()));
                    } else {
                        done.set(true);
                        chat_state.borrow_mut().done_at = Some(now);
                    }
                }
                RVRS => chat_state.borrow_mut().arrived(now, m),
                _ => {}
            }
        },
    )?;
    if let Some(e) = failed.into_inner() {
        return Err(err(e));
    }
    let c = chat_state.into_inner();
    let took =
        c.done_at.ok_or_else(|| err(format!("download: {} of {count} chunks in {STEP_LIMIT:?}", got.get())))? - t;
    Ok((took, c.lat))
}

/// Room messages at a fixed rate from one member, their latency at another.
struct Chat {
    start: Instant,
    sent: Vec<Instant>,
    received: usize,
    lat: Samples,
    done_at: Option<Instant>,
}

impl Chat {
    fn new(start: Instant) -> Chat {
        Chat { start, sent: Vec::new(), received: 0, lat: Samples::default(), done_at: None }
    }

    /// Queues the messages due by `now` (timestamped with their scheduled time).
    fn send_due(&mut self, now: Instant, from: &mut Peer) {
        let interval = Duration::from_secs_f64(1.0 / CHAT_RATE);
        while now >= self.start + interval * self.sent.len() as u32 {
            let k = self.sent.len();
            from.s.queue(work::room_message(ROOM, k as u64));
            self.sent.push(self.start + interval * k as u32);
        }
    }

    fn arrived(&mut self, now: Instant, m: &[u8]) {
        if let Ok(rm) = ReceiveRoomMessageS::read_from_bytes(m) {
            if let Some(t) = self.sent.get(work::seq_of(&rm.ciphertext) as usize) {
                self.lat.push(now.saturating_duration_since(*t));
                self.received += 1;
            }
        }
    }

    fn all_in(&self) -> bool {
        self.received >= self.sent.len()
    }
}

/// Room messages to `peers[0]` from `peers[1]` for `secs`, nothing else going on.
fn chat_only(peers: &mut [Peer], secs: Duration) -> io::Result<Samples> {
    let t = Instant::now();
    let c = RefCell::new(Chat::new(t));
    engine::drive(
        peers,
        t + secs + Duration::from_secs(5),
        Duration::ZERO,
        |now, peers| {
            let mut c = c.borrow_mut();
            if now < t + secs {
                c.send_due(now, &mut peers[1]);
                true
            } else {
                !c.all_in()
            }
        },
        |now, ev, _| {
            if let Event::Message(0, m) = ev {
                if wire::header(m).map(|h| h.opcode.get()) == Ok(RVRS) {
                    c.borrow_mut().arrived(now, m);
                }
            }
        },
    )?;
    Ok(c.into_inner().lat)
}

fn fresh_file() -> (u64, [u8; 32]) {
    (u64::from_be_bytes(sotto::crypto::random()).max(1), sotto::crypto::random())
}

/// Tells the server the download is complete (a DM file is then deleted).
fn file_done(peers: &mut [Peer], file_id: u64) -> io::Result<()> {
    let mut d = FileDone::new_zeroed();
    d.file_id.set(file_id);
    d.state = 1;
    ask(peers, 0, d).map(drop)
}

fn sotto_half(ctx: &Ctx, file: &[u8], reps: usize) -> io::Result<SottoFigures> {
    let flags = file_flags(file.len());
    let mut extra: Vec<&str> = CHEAP_KDF.to_vec();
    extra.extend(flags.iter().map(String::as_str));
    let srv = Sottod::start(ctx.server_cpu, &extra)?;
    let names = ["w8up".to_string(), "w8down".to_string(), "w8chat".to_string()];
    work::register_all(ctx, srv.addr, &names)?;
    let mut s = work::login_all(ctx, srv.addr, &names, 3)?;
    {
        let (up, rest) = s.split_at_mut(1);
        crate::direct::dm_channels(up, &mut rest[..1], &names[..1], &names[1..2])?;
        // The chat member owns the room; the downloader joins it.
        let (down, chat) = rest.split_at_mut(1);
        work::make_room(&mut chat[0], down, ROOM)?;
    }
    work::drain(&mut s, Duration::from_millis(50));
    let down_uid = s[1].uid;
    let mut it = s.into_iter();
    let (Some(a), Some(b), Some(c)) = (it.next(), it.next(), it.next()) else { return Err(err("no sessions")) };
    let mut up = vec![Peer::new(a, Mode::Open)?];
    // The downloader, and the chat member (only sends; its echo is counted, not opened).
    let mut down = vec![Peer::new(b, Mode::Open)?, Peer::new(c, Mode::Count)?];
    let count = chunk_count(file.len() as u64);
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    let (mut cpu_up, mut cpu_down, mut t_up, mut t_down) = (Duration::ZERO, Duration::ZERO, 0.0, 0.0);
    for _ in 0..reps {
        let (id, key) = fresh_file();
        let keys = FileKeys::derive(id, count, &key);
        let c0 = sys::cpu_time(srv.pid());
        let d = upload(&mut up, down_uid, id, &keys, file)?;
        let c1 = sys::cpu_time(srv.pid());
        let (dd, _) = download(&mut down, id, &keys, file, false)?;
        cpu_up += c1 - c0;
        cpu_down += sys::cpu_time(srv.pid()).saturating_sub(c1);
        t_up += d.as_secs_f64();
        t_down += dd.as_secs_f64();
        ups.push(mb_per_s(file.len(), d));
        downs.push(mb_per_s(file.len(), dd));
        println!("  W8 sotto: up {:.0} MB/s, down {:.0} MB/s", ups[ups.len() - 1], downs[downs.len() - 1]);
        file_done(&mut down, id)?;
    }
    // Chat to the downloader's own connection: first alone, then during downloads.
    let (id, key) = fresh_file();
    let keys = FileKeys::derive(id, count, &key);
    upload(&mut up, down_uid, id, &keys, file)?;
    let mut busy = Samples::default();
    let mut busy_time = Duration::ZERO;
    for _ in 0..reps {
        let (d, lat) = download(&mut down, id, &keys, file, true)?;
        busy_time += d;
        busy.extend(lat);
    }
    file_done(&mut down, id)?;
    let idle = chat_only(&mut down, busy_time.max(Duration::from_secs(2)))?;
    Ok(SottoFigures {
        up: ups,
        down: downs,
        cpu_up: cpu_up.as_secs_f64() / t_up.max(1e-9),
        cpu_down: cpu_down.as_secs_f64() / t_down.max(1e-9),
        idle,
        busy,
        flags: srv.flags.iter().skip(crate::server::BENCH_FLAGS.len()).cloned().collect(),
    })
}

pub fn w8(ctx: &Ctx, r: &mut Report) -> io::Result<()> {
    let size = file_size(ctx.quick);
    let reps = if ctx.quick { 1 } else { 3 };
    // The scp target and sottod's data directory are both under the temporary directory: one disk.
    let dir = TempDir::new("w8")?;
    let mut file = vec![0u8; size];
    sotto::crypto::fill_random(&mut file);
    let src = dir.0.join("file");
    std::fs::write(&src, &file)?;
    let scp_res: Result<ScpFigures, String> = scp::measure(&dir.0, &src, size, reps, ctx.server_cpu);
    let _ = std::fs::remove_file(&src);
    if let Err(e) = &scp_res {
        eprintln!("W8: the scp baseline did not run: {e}");
        r.fig("w8.scp.failed", 1.0);
    }
    // Its error is printed by the caller, with the row below.
    let sotto_res = sotto_half(ctx, &file, reps);
    drop(file);

    let mib = size >> 20;
    let (cipher, ssh_version) = match &scp_res {
        Ok(f) => {
            r.text("sshd configuration (W8: the scp baseline; `<dir>` is a temporary directory)", &f.config);
            (f.cipher.clone(), f.version.clone())
        }
        Err(_) => ("-".into(), "-".into()),
    };
    let flags = match &sotto_res {
        Ok(f) => f.flags.join(" "),
        Err(_) => "-".into(),
    };
    let note = format!(
        "One {mib} MiB random file, {reps} time(s) each way, median MB/s (10^6 bytes/s). sotto: flof, then \
         flch pipelined with at most {WINDOW} chunks unacknowledged (each acknowledged once fsynced), then \
         flgt → flcd with every chunk's tag checked and its plaintext compared, taken (flak) every 4 chunks; timed from the first request \
         to the last answer, on logged-in sessions of two DM contacts; sottod with the bench flags (input cap \
         off: `--max-bps 0`) and {flags}. scp: OpenSSH's defaults ({cipher}; {ssh_version}) against an sshd of \
         the bench's own on 127.0.0.1, timed per scp process (its SSH set-up included); scp writes without \
         fsync. Both servers on the server core, write into the same temporary directory's disk. Chat p99: \
         room messages at {CHAT_RATE:.0}/s from another member to the downloader's own connection, without a \
         transfer and during {reps} download(s) at full speed (target: within 2 ms of the figure without)."
    );
    let s = r.section(
        "W8 file transfer (sotto vs scp)",
        &note,
        &[
            "file",
            "sotto up",
            "sotto down",
            "scp up",
            "scp down",
            "up / scp",
            "down / scp",
            "sottod CPU up / down",
            "chat p99 without",
            "chat p99 during download",
        ],
    );
    let mbs = |v: f64| format!("{v:.0} MB/s");
    let (scp_up, scp_down) = match &scp_res {
        Ok(f) => {
            let (u, d) = (median(f.up.clone()), median(f.down.clone()));
            r.fig("w8.scp.up_mbps", u);
            r.fig("w8.scp.down_mbps", d);
            (Some(u), Some(d))
        }
        Err(_) => (None, None),
    };
    let scp_cell = |v: Option<f64>| match (&scp_res, v) {
        (_, Some(v)) => mbs(v),
        (Err(e), _) => format!("not measured: {e}"),
        _ => "-".into(),
    };
    let mut row = vec![format!("{mib} MiB")];
    match &sotto_res {
        Ok(f) => {
            let (u, d) = (median(f.up.clone()), median(f.down.clone()));
            let (mut idle, mut busy) = (f.idle.clone(), f.busy.clone());
            let (p_idle, p_busy) = (idle.percentile(99.0), busy.percentile(99.0));
            r.fig("w8.sotto.up_mbps", u);
            r.fig("w8.sotto.down_mbps", d);
            r.fig("w8.sotto.chat_p99_idle_us", p_idle.as_secs_f64() * 1e6);
            r.fig("w8.sotto.chat_p99_busy_us", p_busy.as_secs_f64() * 1e6);
            row.extend([
                mbs(u),
                mbs(d),
                scp_cell(scp_up),
                scp_cell(scp_down),
                ratio(Some(u), scp_up),
                ratio(Some(d), scp_down),
                format!("{:.0}% / {:.0}%", f.cpu_up * 100.0, f.cpu_down * 100.0),
                format!("{} ({} msgs)", us(p_idle), idle.len()),
                format!("{} ({} msgs)", us(p_busy), busy.len()),
            ]);
        }
        Err(e) => {
            let failed = format!("failed: {e}");
            row.extend([failed.clone(), failed, scp_cell(scp_up), scp_cell(scp_down)]);
            row.extend(std::iter::repeat_n("-".to_string(), 5));
        }
    }
    r.row(s, row);
    match (scp_res, sotto_res) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(e), Ok(_)) => Err(err(format!("scp baseline: {e}"))),
        (_, Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_flags_fit_the_file() {
        assert_eq!(
            file_flags(256 << 20),
            ["--max-file-size", "268435456", "--file-quota", "1073741824"].map(String::from)
        );
    }

    #[test]
    fn file_sizes() {
        assert_eq!(file_size(false), 256 << 20);
        assert_eq!(chunk_count(file_size(false) as u64) as usize * CHUNK, 256 << 20);
        assert!(file_size(true) < file_size(false));
    }
}
