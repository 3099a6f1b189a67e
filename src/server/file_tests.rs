//! File transfer in the core, through the fuzzing seam's world (alice and
//! bob are contacts and share the lobby; carol asked alice and has the
//! club): offers and their limits, chunks in order and only acknowledged
//! when durable, downloads streamed behind an upload, chat before bulk, the
//! input budget, fldn, expiry, and a restart from a FileStore with a torn tail.

use std::sync::Arc;

use zerocopy::IntoBytes;

use crate::opcodes::{
    FileAck, FileChunk, FileChunkData, FileDone, FileGet, FileInfo, FileOffer, SendRoomMessageS, StatusReply, FLCD,
    FLIN, RVRS, STAT,
};
use crate::record::Opener;
use crate::server::core::{ConnId, Limits};
use crate::server::files::{CHUNK_DATA, CHUNK_RECORD, DOWNLOAD_WINDOW};
use crate::server::fuzz::{self, uid, World};
use crate::server::store::{FileStore, MemStore, Store};
use crate::wire::{self, code, Classed, Message, Status};

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const CHUNK: u64 = CHUNK_DATA as u64;

/// The fuzz world's limits with a real output bound (the bulk threshold is 64 KiB).
fn limits() -> Limits {
    Limits { max_output: 1 << 20, rate: None, ..fuzz::limits() }
}

/// A world on `store` under `limits`, the clock past its setup's chat window.
fn world_on(limits: Limits, store: Arc<dyn Store>) -> World {
    let mut w = World::new_on(limits, store);
    w.advance(5_001);
    w
}

fn world() -> (World, Arc<MemStore>) {
    let store = Arc::new(MemStore::default());
    (world_on(limits(), store.clone()), store)
}

/// A session of `user` with what its login sent already read.
fn online(w: &mut World, user: usize) -> (ConnId, Opener) {
    let (id, mut opener) = w.open(user).unwrap();
    w.received(id, &mut opener);
    (id, opener)
}

fn offer(msg_id: u64, file_id: u64, size: u64, peer: Option<usize>, room: &str) -> Vec<u8> {
    let mut m = FileOffer::request(msg_id, 0);
    m.file_id.set(file_id);
    m.size.set(size);
    m.chunk_count.set(size.div_ceil(CHUNK) as u32);
    match peer {
        Some(p) => {
            m.target = 1;
            m.peer_uid.set(uid(p));
        }
        None => {
            m.target = 2;
            m.set_room(room).unwrap();
        }
    }
    m.as_bytes().to_vec()
}

/// Chunk `index` of `file_id`: its bytes tell the file and the index.
fn chunk(msg_id: u64, file_id: u64, index: u32) -> Vec<u8> {
    let mut m = FileChunk::request(msg_id, 0);
    m.file_id.set(file_id);
    m.index.set(index);
    m.iv = [index as u8; 16];
    m.tag = [0x7a; 32];
    m.data.fill(file_id as u8 ^ index as u8);
    m.as_bytes().to_vec()
}

fn get(msg_id: u64, file_id: u64, from: u32) -> Vec<u8> {
    let mut m = FileGet::request(msg_id, 0);
    m.file_id.set(file_id);
    m.from.set(from);
    m.as_bytes().to_vec()
}

fn take(msg_id: u64, file_id: u64, through: u32) -> Vec<u8> {
    let mut m = FileAck::request(msg_id, 0);
    m.file_id.set(file_id);
    m.through.set(through);
    m.as_bytes().to_vec()
}

fn done(msg_id: u64, file_id: u64, state: u8) -> Vec<u8> {
    let mut m = FileDone::request(msg_id, 0);
    m.file_id.set(file_id);
    m.state = state;
    m.as_bytes().to_vec()
}

/// Everything `id` has to send, the bulk queue included (as the event loop
/// drains it), opened.
fn drain(w: &mut World, id: ConnId, opener: &mut Opener) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        let ran = w.run_jobs();
        let more = w.received(id, opener);
        if more.is_empty() && ran == 0 {
            return got;
        }
        got.extend(more);
    }
}

/// Dispatches `frame` on `id`, settles, returns all `id` received.
fn ask(w: &mut World, (id, opener): (ConnId, &mut Opener), frame: &[u8]) -> Vec<Vec<u8>> {
    assert!(w.dispatch(id, frame), "taken");
    w.settle();
    drain(w, id, opener)
}

/// (code, reason) of the one status reply in `got`.
fn status(got: &[Vec<u8>]) -> (u16, String) {
    let stat: Vec<&StatusReply> = got.iter().filter_map(|f| wire::decode::<StatusReply>(f).ok()).collect();
    assert_eq!(stat.len(), 1, "one status reply in {:?}", opcodes(got));
    (stat[0].hdr.code.get(), stat[0].reason().unwrap().to_owned())
}

fn opcodes(frames: &[Vec<u8>]) -> Vec<u32> {
    frames.iter().map(|f| wire::header(f).unwrap().opcode.get()).collect()
}

fn flin(got: &[Vec<u8>]) -> FileInfo {
    assert_eq!(opcodes(got), [FLIN], "one flin");
    *wire::decode::<FileInfo>(&got[0]).unwrap()
}

/// The (index, first data byte) of each flcd in `got`.
fn chunks_in(got: &[Vec<u8>]) -> Vec<(u32, u8)> {
    got.iter().filter_map(|f| wire::decode::<FileChunkData>(f).ok()).map(|c| (c.index.get(), c.data[0])).collect()
}

/// Offers `file_id` from alice to bob (`chunks` chunks) and uploads `uploaded` of them.
fn uploaded(w: &mut World, alice: (ConnId, &mut Opener), file_id: u64, chunks: u64, uploaded: u32) {
    let (id, o) = alice;
    assert_eq!(flin(&ask(w, (id, o), &offer(1, file_id, chunks * CHUNK, Some(BOB), ""))).stored.get(), 0);
    for i in 0..uploaded {
        assert_eq!(status(&ask(w, (id, o), &chunk(100 + u64::from(i), file_id, i))).0, code::OK, "chunk {i}");
    }
}

#[test]
fn offer_answers_once_durable_and_refuses_what_it_must() {
    let mut lim = limits();
    lim.max_file_size = 10 * CHUNK;
    lim.file_quota = 12 * CHUNK;
    let store = Arc::new(MemStore::default());
    let mut w = world_on(lim, store.clone());
    let (a, mut ao) = online(&mut w, ALICE);
    assert!(w.dispatch(a, &offer(1, 0xf1, 3 * CHUNK - 5, Some(BOB), "")));
    assert!(w.received(a, &mut ao).is_empty(), "no answer before the commit");
    w.settle();
    let m = flin(&w.received(a, &mut ao));
    assert_eq!((m.hdr.status, m.hdr.msg_id.get(), m.file_id.get()), (Status::Ok as u8, 1, 0xf1));
    assert_eq!((m.size.get(), m.chunk_count.get(), m.stored.get()), (3 * CHUNK - 5, 3, 0));
    assert_eq!((m.owner_uid.get(), m.expires.get()), (uid(ALICE), w.now_ms() + lim.file_ttl_ms));
    assert_eq!(store.load_files().unwrap().len(), 1, "the record is stored");

    let refused = |w: &mut World, ao: &mut Opener, frame: Vec<u8>, want: u16, why: &str| {
        let (c, reason) = status(&ask(w, (a, ao), &frame));
        assert_eq!(c, want, "{why}: {reason}");
        assert!(reason.contains(why), "{reason:?} says {why:?}");
    };
    let mut wrong_count = FileOffer::request(2, 0);
    wrong_count.file_id.set(0xf2);
    wrong_count.size.set(CHUNK + 1);
    wrong_count.chunk_count.set(1);
    wrong_count.target = 1;
    wrong_count.peer_uid.set(uid(BOB));
    refused(&mut w, &mut ao, wrong_count.as_bytes().to_vec(), code::BAD_REQUEST, "ceil(size / 16384)");
    let mut no_target = wire::decode::<FileOffer>(&offer(3, 0xf2, 1, Some(BOB), "")).unwrap().to_owned();
    no_target.target = 3;
    refused(&mut w, &mut ao, no_target.as_bytes().to_vec(), code::BAD_REQUEST, "target must be");
    let mut both = wire::decode::<FileOffer>(&offer(4, 0xf2, 1, Some(BOB), "")).unwrap().to_owned();
    both.set_room("lobby").unwrap();
    refused(&mut w, &mut ao, both.as_bytes().to_vec(), code::BAD_REQUEST, "target 1 takes a peer_uid");
    refused(&mut w, &mut ao, offer(5, 0, 1, Some(BOB), ""), code::BAD_REQUEST, "file id 0");
    refused(&mut w, &mut ao, offer(6, 0xf2, 1, None, "No Such!"), code::BAD_REQUEST, "invalid room name");
    refused(
        &mut w,
        &mut ao,
        offer(7, 0xf2, 10 * CHUNK + 1, Some(BOB), ""),
        code::TOO_LARGE,
        "larger than this server takes",
    );
    refused(&mut w, &mut ao, offer(8, 0xf2, 1, Some(CAROL), ""), code::FORBIDDEN, "not an accepted contact");
    refused(&mut w, &mut ao, offer(9, 0xf2, 1, None, "club"), code::FORBIDDEN, "not a member");
    refused(&mut w, &mut ao, offer(10, 0xf1, 3 * CHUNK, Some(BOB), ""), code::CONFLICT, "other parameters");
    refused(&mut w, &mut ao, offer(11, 0xf1, 3 * CHUNK - 5, None, "lobby"), code::CONFLICT, "other parameters");
    // 3 chunks used of 12: 10 more do not fit, 9 do.
    refused(&mut w, &mut ao, offer(12, 0xf2, 10 * CHUNK, None, "lobby"), code::INSUFFICIENT_STORAGE, "quota");
    assert_eq!(flin(&ask(&mut w, (a, &mut ao), &offer(13, 0xf2, 9 * CHUNK, None, "lobby"))).chunk_count.get(), 9);
    refused(&mut w, &mut ao, offer(14, 0xf3, 1, Some(BOB), ""), code::INSUFFICIENT_STORAGE, "quota");
    // Someone else's id: taken, whatever the parameters.
    let (b, mut bo) = online(&mut w, BOB);
    let (c, reason) = status(&ask(&mut w, (b, &mut bo), &offer(1, 0xf1, 3 * CHUNK - 5, Some(ALICE), "")));
    assert_eq!(c, code::CONFLICT, "{reason}");
    // The same offer again is a resume: flin with what is stored.
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(20, 0xf1, 0))).0, code::OK);
    let again = flin(&ask(&mut w, (a, &mut ao), &offer(21, 0xf1, 3 * CHUNK - 5, Some(BOB), "")));
    assert_eq!((again.hdr.msg_id.get(), again.stored.get()), (21, 1));
}

#[test]
fn chunks_are_taken_in_order_and_acknowledged_only_once_durable() {
    let (mut w, store) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0xc0, 4, 0);
    assert!(w.dispatch(a, &chunk(30, 0xc0, 0)));
    w.run_jobs();
    assert!(w.received(a, &mut ao).is_empty(), "no 200 before the commit");
    assert!(w.commit());
    assert_eq!(status(&w.received(a, &mut ao)), (code::OK, "chunk stored".into()));
    assert_eq!(store.chunk_bytes(0xc0).unwrap().len(), CHUNK_RECORD, "on disk");

    let (c, why) = status(&ask(&mut w, (a, &mut ao), &chunk(31, 0xc0, 2)));
    assert_eq!((c, why.as_str()), (code::CONFLICT, "expected chunk 1"));
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(32, 0xc0, 4))).0, code::BAD_REQUEST, "past the count");
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(33, 0xdead, 0))).0, code::NOT_FOUND);
    let (b, mut bo) = online(&mut w, BOB);
    assert_eq!(status(&ask(&mut w, (b, &mut bo), &chunk(34, 0xc0, 1))).0, code::FORBIDDEN, "not the owner");

    // A full disk: both chunks of the turn are 507 and neither counts.
    store.fail_next_commits(1);
    assert!(w.dispatch(a, &chunk(35, 0xc0, 1)));
    assert!(w.dispatch(a, &chunk(36, 0xc0, 2)));
    w.settle();
    let got = drain(&mut w, a, &mut ao);
    let codes: Vec<u16> = got.iter().map(|f| wire::decode::<StatusReply>(f).unwrap().hdr.code.get()).collect();
    assert_eq!(codes, [code::INSUFFICIENT_STORAGE; 2], "{got:?}");
    // The next commit waits a second after a failed one.
    w.advance(1_001);
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(37, 0xc0, 2))).1, "expected chunk 1", "nothing counted");
    assert_eq!(flin(&ask(&mut w, (a, &mut ao), &offer(38, 0xc0, 4 * CHUNK, Some(BOB), ""))).stored.get(), 1);
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(39, 0xc0, 1))).0, code::OK, "sent again");
    assert_eq!(store.chunk_bytes(0xc0).unwrap().len(), 2 * CHUNK_RECORD);
}

#[test]
fn a_chunk_that_commits_after_a_failed_one_is_not_acknowledged() {
    // Chunk 1 fails in one commit while chunk 2 waits for the next: 2 is
    // dropped with 1 (it would leave a gap), and both hear 507.
    let (mut w, store) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0xc1, 4, 1);
    store.fail_next_commits(1);
    assert!(w.dispatch(a, &chunk(40, 0xc1, 1)));
    let now = w.now_ms();
    let first = w.core().poll_commit(now).unwrap();
    assert!(w.dispatch(a, &chunk(41, 0xc1, 2)));
    w.run_job(first);
    w.advance(1_001);
    w.settle();
    let got = drain(&mut w, a, &mut ao);
    let codes: Vec<(u64, u16)> = got
        .iter()
        .map(|f| wire::decode::<StatusReply>(f).unwrap())
        .map(|s| (s.hdr.msg_id.get(), s.hdr.code.get()))
        .collect();
    assert_eq!(codes, [(40, code::INSUFFICIENT_STORAGE), (41, code::INSUFFICIENT_STORAGE)]);
    assert_eq!(store.chunk_bytes(0xc1).unwrap().len(), CHUNK_RECORD, "only chunk 0 on disk");
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(42, 0xc1, 1))).0, code::OK);
}

#[test]
fn a_download_streams_durable_chunks_and_waits_for_the_upload() {
    let (mut w, _) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    let (b, mut bo) = online(&mut w, BOB);
    uploaded(&mut w, (a, &mut ao), 0xd0, 5, 2);
    // An accepted chunk that is not durable yet is not sent.
    assert!(w.dispatch(a, &chunk(50, 0xd0, 2)));
    assert!(w.dispatch(b, &get(7, 0xd0, 0)));
    w.run_jobs();
    let got = drain(&mut w, b, &mut bo);
    assert_eq!(opcodes(&got), [FLIN, FLCD, FLCD], "flin, then the two durable chunks");
    let info = wire::decode::<FileInfo>(&got[0]).unwrap();
    assert_eq!((info.hdr.status, info.hdr.code.get(), info.stored.get()), (Status::Pending as u8, code::PENDING, 2));
    assert_eq!(chunks_in(&got), [(0, 0xd0), (1, 0xd1)]);
    let c = wire::decode::<FileChunkData>(&got[2]).unwrap();
    assert_eq!((c.hdr.msg_id.get(), c.file_id.get(), c.iv, c.tag), (7, 0xd0, [1; 16], [0x7a; 32]));
    // Parked: the commit of chunk 2 sends it on; the rest follows the upload.
    w.settle();
    assert_eq!(chunks_in(&drain(&mut w, b, &mut bo)), [(2, 0xd2)]);
    drain(&mut w, a, &mut ao);
    for i in 3..5 {
        assert!(w.dispatch(a, &chunk(60 + u64::from(i), 0xd0, i)));
    }
    w.settle();
    let got = drain(&mut w, b, &mut bo);
    assert_eq!(opcodes(&got), [FLCD, FLCD, STAT]);
    assert_eq!(chunks_in(&got), [(3, 0xd3), (4, 0xd4)]);
    drain(&mut w, a, &mut ao);
    let end = wire::decode::<StatusReply>(&got[2]).unwrap();
    assert_eq!((end.hdr.status, end.hdr.code.get(), end.hdr.msg_id.get()), (Status::Done as u8, code::OK, 7));

    // A resumed download, and the refusals.
    let got = ask(&mut w, (b, &mut bo), &get(8, 0xd0, 3));
    assert_eq!(chunks_in(&got), [(3, 0xd3), (4, 0xd4)]);
    let got = ask(&mut w, (b, &mut bo), &get(9, 0xd0, 5));
    assert_eq!(opcodes(&got), [FLIN, STAT], "nothing left: flin, done");
    assert_eq!(status(&ask(&mut w, (b, &mut bo), &get(10, 0xd0, 6))).0, code::BAD_REQUEST);
    assert_eq!(status(&ask(&mut w, (b, &mut bo), &get(11, 0xbad, 0))).0, code::NOT_FOUND);
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &get(12, 0xd0, 0))).0, code::FORBIDDEN, "the sender");
    let (c, mut co) = online(&mut w, CAROL);
    assert_eq!(status(&ask(&mut w, (c, &mut co), &get(13, 0xd0, 0))).0, code::FORBIDDEN);
}

#[test]
fn a_room_file_goes_to_members_only() {
    let (mut w, _) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    assert_eq!(flin(&ask(&mut w, (a, &mut ao), &offer(1, 0xe0, CHUNK, None, "Lobby"))).chunk_count.get(), 1);
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(2, 0xe0, 0))).0, code::OK);
    let (b, mut bo) = online(&mut w, BOB);
    let got = ask(&mut w, (b, &mut bo), &get(3, 0xe0, 0));
    assert_eq!(opcodes(&got), [FLIN, FLCD, STAT]);
    let (c, mut co) = online(&mut w, CAROL);
    assert_eq!(status(&ask(&mut w, (c, &mut co), &get(4, 0xe0, 0))).0, code::FORBIDDEN);
    // fldn: noted, and a room file stays.
    assert_eq!(status(&ask(&mut w, (b, &mut bo), &done(5, 0xe0, 1))).0, code::OK);
    assert_eq!(w.core().files.map.get(&0xe0).unwrap().meta.done, [uid(BOB)]);
    assert_eq!(opcodes(&ask(&mut w, (b, &mut bo), &get(6, 0xe0, 0))), [FLIN, FLCD, STAT]);
    assert_eq!(status(&ask(&mut w, (c, &mut co), &done(7, 0xe0, 1))).0, code::FORBIDDEN);
    assert_eq!(status(&ask(&mut w, (b, &mut bo), &done(8, 0xe0, 3))).0, code::BAD_REQUEST);
}

#[test]
fn a_connection_runs_at_most_four_downloads_and_a_second_get_replaces_the_first() {
    let (mut w, _) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    for f in 0..5 {
        uploaded(&mut w, (a, &mut ao), 0x100 + f, 2, 0);
    }
    let (b, mut bo) = online(&mut w, BOB);
    for f in 0..4 {
        assert_eq!(opcodes(&ask(&mut w, (b, &mut bo), &get(f + 1, 0x100 + f, 0))), [FLIN], "parked");
    }
    let got = ask(&mut w, (b, &mut bo), &get(9, 0x104, 0));
    assert_eq!(status(&got).0, code::RATE_LIMITED);
    assert_eq!(opcodes(&ask(&mut w, (b, &mut bo), &get(10, 0x100, 0))), [FLIN], "the same file: replaced");
    assert_eq!(w.core().conn_files_ref(b).unwrap().downloads.len(), 4);
    // The replaced download says nothing more; the new one gets the chunks.
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(11, 0x100, 0))).0, code::OK);
    let got = drain(&mut w, b, &mut bo);
    assert_eq!(chunks_in(&got), [(0, 0x00)]);
    assert_eq!(wire::header(&got[0]).unwrap().msg_id.get(), 10);
}

#[test]
fn a_chat_frame_overtakes_queued_chunks_and_a_download_stays_inside_its_window() {
    let (mut w, _) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0x40, 40, 40);
    let (b, mut bo) = online(&mut w, BOB);
    assert!(w.dispatch(b, &get(1, 0x40, 0)));
    w.settle();
    // The reads stopped at the window: the output holds about 64 KiB and
    // the bulk queue the rest.
    let cf = w.core().conn_files_ref(b).unwrap();
    assert!(cf.ahead() > 0 && cf.ahead() <= DOWNLOAD_WINDOW as usize);
    assert!(w.core().transmit(b).unwrap().len() < 64 * 1024 + 2 * CHUNK_RECORD);
    // Alice says something in the lobby: bob's copy is sealed at once.
    let mut m = SendRoomMessageS::request(2, 0);
    m.head_mut().set_room("lobby").unwrap();
    m.body_mut().fill(0x33);
    assert!(w.dispatch(a, m.as_bytes()));
    w.settle();
    let got = drain(&mut w, b, &mut bo);
    let ops = opcodes(&got);
    let chat = ops.iter().position(|o| *o == RVRS).expect("the room message");
    let chunks_before = ops[..chat].iter().filter(|o| **o == FLCD).count();
    assert!(chunks_before <= 5, "the chat frame waited behind at most 64 KiB of chunks, not {chunks_before}");
    let first = chunks_in(&got);
    assert_eq!(first.len(), DOWNLOAD_WINDOW as usize, "the window, and no more, before anything is taken");
    // Nothing moves until bob takes some; a late or excessive flak is harmless.
    w.settle();
    assert!(drain(&mut w, b, &mut bo).is_empty());
    assert!(w.dispatch(b, &take(3, 0x40, 4)));
    w.settle();
    let next = chunks_in(&drain(&mut w, b, &mut bo));
    assert_eq!(next, (16..20).map(|i| (i, 0x40 + i as u8)).collect::<Vec<_>>(), "four more for four taken");
    assert!(w.dispatch(b, &take(4, 0x40, 1_000)), "past what was sent: taken as what was sent");
    assert!(w.dispatch(b, &take(5, 0x99, 30)), "no such download: ignored");
    w.settle();
    let mut all = first;
    all.extend(next);
    loop {
        let got = drain(&mut w, b, &mut bo);
        if got.is_empty() {
            break;
        }
        all.extend(chunks_in(&got));
        if opcodes(&got).last() == Some(&STAT) {
            break;
        }
        let through = all.last().map_or(0, |(i, _)| i + 1);
        assert!(w.dispatch(b, &take(6, 0x40, through)));
        w.settle();
    }
    assert_eq!(all.len(), 40, "every chunk, in order, once");
    assert!(all.iter().enumerate().all(|(i, (index, _))| *index == i as u32));
    assert_eq!(w.core().files.ahead, 0, "nothing left read ahead");
}

#[test]
fn an_uploader_is_not_read_while_a_mebibyte_of_its_chunks_waits_for_the_disk() {
    let (mut w, _) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0x50, 80, 0);
    let now = w.now_ms();
    assert!(w.core().read_allowance(a, now) > 0);
    let mut i = 0;
    while w.core().read_allowance(a, now) > 0 {
        assert!(w.dispatch(a, &chunk(100 + u64::from(i), 0x50, i)));
        i += 1;
        assert!(i <= 64, "still reading after {i} chunks");
    }
    assert_eq!(i, 64, "1 MiB of chunk records: 64 of them");
    w.settle();
    assert!(w.core().read_allowance(a, now) > 0, "reading again once they are durable");
    let got = drain(&mut w, a, &mut ao);
    assert_eq!(got.len(), 64);
    assert!(got.iter().all(|f| wire::decode::<StatusReply>(f).unwrap().hdr.code.get() == code::OK));
}

#[test]
fn a_dm_file_is_deleted_once_its_recipient_is_done_even_mid_download() {
    let (mut w, store) = world();
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0x60, 3, 1);
    let (b1, mut b1o) = online(&mut w, BOB);
    let (b2, mut b2o) = online(&mut w, BOB);
    assert_eq!(opcodes(&ask(&mut w, (b1, &mut b1o), &get(1, 0x60, 0))), [FLIN, FLCD], "parked after chunk 0");
    let (c, mut co) = online(&mut w, CAROL);
    assert_eq!(status(&ask(&mut w, (c, &mut co), &done(2, 0x60, 1))).0, code::FORBIDDEN);
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &done(3, 0x60, 2))).0, code::FORBIDDEN, "the sender is no recipient");
    assert_eq!(status(&ask(&mut w, (b2, &mut b2o), &done(4, 0x60, 2))).0, code::OK);
    let (code_, why) = status(&drain(&mut w, b1, &mut b1o));
    assert_eq!((code_, why.as_str()), (code::NOT_FOUND, "the file was deleted or expired"), "the download ends");
    assert!(w.core().files.map.is_empty());
    assert!(store.load_files().unwrap().is_empty() && store.chunk_bytes(0x60).is_none(), "gone from the store");
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(5, 0x60, 1))).0, code::NOT_FOUND);
    assert_eq!(status(&ask(&mut w, (b1, &mut b1o), &get(6, 0x60, 0))).0, code::NOT_FOUND);
    // The id is free again once the deletion is durable.
    assert_eq!(flin(&ask(&mut w, (a, &mut ao), &offer(7, 0x60, 1, Some(BOB), ""))).stored.get(), 0);
}

#[test]
fn files_expire_after_the_ttl() {
    let store = Arc::new(MemStore::default());
    let mut w = world_on(Limits { file_ttl_ms: 10_000, ..limits() }, store.clone());
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0x70, 2, 1);
    let (b, mut bo) = online(&mut w, BOB);
    assert_eq!(opcodes(&ask(&mut w, (b, &mut bo), &get(1, 0x70, 0))), [FLIN, FLCD]);
    w.advance(9_000);
    assert!(w.core().files.map.contains_key(&0x70));
    w.advance(1_001);
    assert!(!w.core().files.map.contains_key(&0x70), "swept");
    assert_eq!(status(&drain(&mut w, b, &mut bo)).0, code::NOT_FOUND, "the parked download ends");
    w.settle();
    assert!(store.load_files().unwrap().is_empty(), "deleted durably");
    assert_eq!(status(&ask(&mut w, (b, &mut bo), &get(2, 0x70, 0))).0, code::NOT_FOUND);
    let _ = ao;
}

#[test]
fn a_restart_keeps_whole_chunks_and_cuts_a_torn_tail() {
    let dir = std::env::temp_dir().join(format!("sotto-files-{}", crate::crypto::hex(&crate::crypto::random::<8>())));
    let store = Arc::new(FileStore::open(&dir).unwrap());
    let mut w = world_on(limits(), store.clone());
    let (a, mut ao) = online(&mut w, ALICE);
    uploaded(&mut w, (a, &mut ao), 0x80, 5, 3);
    let path = dir.join("files").join(format!("{:016x}.chunks", 0x80));
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
    };
    assert_eq!((mode(&dir.join("files")), mode(&path), mode(&path.with_extension("file"))), (0o700, 0o600, 0o600));
    // A crash mid-write: half a record after the three whole ones.
    let mut torn = crate::server::files::chunk_record(3, &[3; 16], &[0; 32], &[0; CHUNK_DATA]);
    torn.truncate(CHUNK_RECORD / 2);
    {
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn).unwrap();
    }
    w.restart();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * CHUNK_RECORD as u64, "the torn tail is cut");
    let (a, mut ao) = online(&mut w, ALICE);
    assert_eq!(flin(&ask(&mut w, (a, &mut ao), &offer(1, 0x80, 5 * CHUNK, Some(BOB), ""))).stored.get(), 3);
    assert_eq!(status(&ask(&mut w, (a, &mut ao), &chunk(2, 0x80, 3))).0, code::OK, "the upload resumes at 3");
    // A corrupt record in the middle: only the chunks before it count.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff], (CHUNK_RECORD + 100) as u64).unwrap();
    }
    w.restart();
    assert_eq!(w.core().files.map.get(&0x80).unwrap().stored, 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), CHUNK_RECORD as u64);
    let (b, mut bo) = online(&mut w, BOB);
    assert_eq!(chunks_in(&ask(&mut w, (b, &mut bo), &get(3, 0x80, 0))), [(0, 0x80)], "read back from disk");
    // A corrupt record file stops the start, naming it.
    let rec = path.with_extension("file");
    let mut bytes = std::fs::read(&rec).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&rec, &bytes).unwrap();
    let err = crate::server::files::Files::load(&*store).err().unwrap();
    assert!(err.contains("0000000000000080.file: corrupt record (checksum mismatch)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
