//! Records on a real JetStream (three nats-server processes on loopback,
//! R3): a room's record without history and its history appended and rolled
//! up; a record per contact pair; the single records of an earlier version
//! migrated at their first write; a replace larger than one message; a
//! file's chunks deleted.

use futures_util::StreamExt;

use super::rooms_js::ROLLUP_EVERY;
use super::{ClusterConfig, JetStreamStore, OP, PART};
use crate::nats_harness::NatsCluster;
use crate::server::contacts::Contacts;
use crate::server::files::CHUNK_RECORD;
use crate::server::room::{test_entry, test_room, Room};
use crate::server::store::{Change, ContactsWrite, Store};
use crate::server::tickets::JournalWrite;

fn connect(nats: &NatsCluster, node: &str) -> JetStreamStore {
    let cfg = ClusterConfig {
        urls: nats.urls().split(',').map(str::to_owned).collect(),
        node: node.to_owned(),
        replicas: 3,
        creds: None,
        tls: None,
    };
    JetStreamStore::connect(&cfg).expect("connect to the test's NATS servers")
}

fn commit(store: &JetStreamStore, room: &mut Room) {
    store.commit(&[Change::Room(room.name.clone(), Some(room.write()))]).expect("commit");
}

/// The rooms a fresh node loads: name, members, the ids of the kept messages.
fn loaded(nats: &NatsCluster) -> Vec<(String, Vec<u64>, Vec<u64>)> {
    let reader = connect(nats, "reader");
    let mut rooms: Vec<_> = reader
        .load_rooms()
        .expect("load rooms")
        .into_iter()
        .map(|r| (r.name.clone(), r.members.clone(), r.history.iter().map(|e| e.head.sent_msg_id.get()).collect()))
        .collect();
    rooms.sort();
    rooms
}

/// How many messages the subjects `subject` names have in the records stream.
fn counts(store: &JetStreamStore, subject: &str) -> u64 {
    store.rt.block_on(async {
        let mut info = store.records.info_with_subjects(subject).await.expect("stream info");
        let mut n = 0;
        while let Some(s) = info.next().await {
            n += s.expect("subject").1 as u64;
        }
        n
    })
}

fn last_op(store: &JetStreamStore, subject: &str) -> String {
    store.rt.block_on(async {
        let m = store.records.get_last_raw_message_by_subject(subject).await.expect("last message");
        m.headers.get(OP).expect("op").as_str().to_owned()
    })
}

#[test]
fn a_room_is_a_record_without_history_and_its_history_is_appended() {
    let nats = NatsCluster::start().expect("nats-server (installed by tools/need-nats-server)");
    let store = connect(&nats, "writer");
    store.take_lease("writer").expect("lease");
    let mut room = test_room("lobby");
    commit(&store, &mut room);
    assert_eq!(last_op(&store, "sotto.r.hist.lobby"), "R1", "a new room's history starts with a rollup");
    for id in 0..45 {
        room.push(test_entry(id));
        commit(&store, &mut room);
    }
    assert_eq!(counts(&store, "sotto.r.room.lobby"), 1, "the record is written once: it did not change");
    let hist = counts(&store, "sotto.r.hist.lobby");
    assert!((1..=ROLLUP_EVERY).contains(&hist), "the history subject is bounded: {hist} messages");
    assert_eq!(last_op(&store, "sotto.r.hist.lobby"), "A", "a message is an append");
    assert_eq!(loaded(&nats), vec![("lobby".into(), vec![9, 10], (25..45).collect())]);

    // A member joins: the record is replaced, the history untouched.
    room.members.push(12);
    commit(&store, &mut room);
    assert_eq!(counts(&store, "sotto.r.hist.lobby"), hist);
    assert_eq!(loaded(&nats), vec![("lobby".into(), vec![9, 10, 12], (25..45).collect())]);

    // A removal rolls the history up, its tombstone in place.
    let gone = room.history[3].tombstone(9);
    assert!(room.replace_entry(3, gone));
    commit(&store, &mut room);
    assert_eq!((counts(&store, "sotto.r.hist.lobby"), last_op(&store, "sotto.r.hist.lobby").as_str()), (1, "R1"));
    let reader = connect(&nats, "reader");
    let back = reader.load_rooms().expect("load");
    assert!(back[0].history[3].is_tombstone() && back[0].history[3].removed_by() == 9);
    assert_eq!(back[0].history.iter().filter(|e| e.is_tombstone()).count(), 1);

    // Removed and created again: nothing of the old history comes back.
    store.commit(&[Change::Room("lobby".into(), None)]).expect("remove");
    assert_eq!(loaded(&nats), vec![]);
    let mut again = test_room("lobby");
    commit(&store, &mut again);
    again.push(test_entry(100));
    commit(&store, &mut again);
    assert_eq!(loaded(&nats), vec![("lobby".into(), vec![9, 10], vec![100])]);
}

#[test]
fn a_room_record_with_its_history_in_it_is_migrated_at_its_first_write() {
    let nats = NatsCluster::start().expect("nats-server (installed by tools/need-nats-server)");
    let store = connect(&nats, "writer");
    store.take_lease("writer").expect("lease");
    // As an earlier version wrote it: the whole room, history included.
    let mut old = test_room("old");
    for id in 0..7 {
        old.push(test_entry(id));
    }
    let file = old.write().file;
    store.rt.block_on(store.replace("sotto.r.room.old", &file)).expect("write the old record");
    assert_eq!(loaded(&nats), vec![("old".into(), vec![9, 10], (0..7).collect())]);

    // The node that loads it writes it: the history moves to its subject first.
    store.release();
    let writer = connect(&nats, "writer2");
    writer.take_lease("writer2").expect("lease");
    let mut rooms = writer.load_rooms().expect("load");
    let mut room = rooms.pop().expect("the room");
    room.push(test_entry(7));
    commit(&writer, &mut room);
    assert_eq!(last_op(&writer, "sotto.r.hist.old"), "R1");
    let record = writer.rt.block_on(writer.records.get_last_raw_message_by_subject("sotto.r.room.old")).unwrap();
    assert!(Room::decode(&record.payload).unwrap().history.is_empty(), "the record no longer holds the history");
    assert_eq!(loaded(&nats), vec![("old".into(), vec![9, 10], (0..8).collect())]);
}

fn contacts_of(nats: &NatsCluster) -> Contacts {
    let reader = connect(nats, "reader");
    reader.load_contacts().expect("load contacts").map(|b| Contacts::decode(&b).expect("decode")).unwrap_or_default()
}

fn commit_contacts(store: &JetStreamStore, c: &mut Contacts) {
    let pairs = c.take_changed().into_iter().map(|p| (p, c.state(p))).collect();
    store.commit(&[Change::Contacts(ContactsWrite { file: c.encode(), pairs })]).expect("commit");
}

#[test]
fn contacts_are_a_record_per_pair_and_a_single_record_is_migrated() {
    let nats = NatsCluster::start().expect("nats-server (installed by tools/need-nats-server)");
    let store = connect(&nats, "writer");
    store.take_lease("writer").expect("lease");
    // As an earlier version wrote them: one record of every pair.
    let mut c = Contacts::default();
    c.request(1, 2);
    c.request(3, 1);
    c.request(4, 5);
    assert!(c.accept(4, 5));
    c.take_changed();
    store.rt.block_on(store.replace("sotto.r.data.contacts", &c.encode())).expect("the old record");
    assert_eq!(contacts_of(&nats), c);

    // The node that loads them writes every pair once, then removes the single record.
    store.release();
    let writer = connect(&nats, "writer2");
    writer.take_lease("writer2").expect("lease");
    let mut c = Contacts::decode(&writer.load_contacts().unwrap().unwrap()).unwrap();
    c.request(6, 7);
    commit_contacts(&writer, &mut c);
    assert_eq!(last_op(&writer, "sotto.r.data.contacts"), "D", "the single record is removed");
    assert_eq!(counts(&writer, "sotto.r.pair.*"), 4, "one record per pair");
    assert_eq!(contacts_of(&nats), c);

    // From then on a change writes its pair only.
    assert!(c.accept(1, 2));
    assert!(c.reject(3, 1));
    c.request(8, 9);
    assert!(c.reject(8, 9));
    commit_contacts(&writer, &mut c);
    assert_eq!(last_op(&writer, "sotto.r.pair.0000000000000001-0000000000000002"), "R1");
    assert_eq!(last_op(&writer, "sotto.r.pair.0000000000000001-0000000000000003"), "D", "nothing left: removed");
    assert_eq!(counts(&writer, "sotto.r.pair.0000000000000008-0000000000000009"), 0, "never stored: no tombstone");
    assert_eq!(counts(&writer, "sotto.r.pair.0000000000000004-0000000000000005"), 1, "untouched");
    let back = contacts_of(&nats);
    assert_eq!(back, c);
    assert!(back.accepted(1, 2) && !back.requested(3, 1) && back.requested(6, 7) && back.accepted(5, 4));
}

#[test]
fn a_replace_larger_than_a_message_is_whole_and_what_came_before_goes_in_the_background() {
    let nats = NatsCluster::start().expect("nats-server (installed by tools/need-nats-server)");
    let store = connect(&nats, "writer");
    store.take_lease("writer").expect("lease");
    let subject = "sotto.r.data.tickets";
    let mut old = Vec::new();
    for i in 0..40u8 {
        let batch = vec![i; 100];
        store.commit(&[Change::Tickets(JournalWrite::Append(batch.clone()))]).expect("append");
        old.extend_from_slice(&batch);
    }
    let reader = connect(&nats, "reader");
    assert_eq!(reader.load_tickets().unwrap(), Some(old));
    assert_eq!(counts(&store, subject), 40);

    // Three parts: the first names them (R3), the others follow (P).
    let big: Vec<u8> = (0..2 * PART + 1000).map(|i| (i % 251) as u8).collect();
    store.commit(&[Change::Tickets(JournalWrite::Replace(big.clone()))]).expect("replace");
    assert_eq!(connect(&nats, "reader").load_tickets().unwrap().as_deref(), Some(&big[..]), "whole at once");
    // The 40 appends before it are deleted after the commit returned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while counts(&store, subject) != 3 {
        assert!(std::time::Instant::now() < deadline, "{} messages left, not the 3 parts", counts(&store, subject));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    store.commit(&[Change::Tickets(JournalWrite::Append(b"tail".to_vec()))]).expect("append after");
    let mut whole = big;
    whole.extend_from_slice(b"tail");
    assert_eq!(connect(&nats, "reader").load_tickets().unwrap(), Some(whole));
}

fn chunk_count(store: &JetStreamStore, id: u64) -> u64 {
    store.rt.block_on(async {
        let mut info = store.chunks.info_with_subjects(format!("sotto.c.{id:016x}.>")).await.expect("stream info");
        let mut n = 0;
        while let Some(s) = info.next().await {
            n += s.expect("subject").1 as u64;
        }
        n
    })
}

#[test]
fn a_deleted_files_chunks_go_in_the_background_and_an_id_offered_again_starts_clean() {
    let nats = NatsCluster::start().expect("nats-server (installed by tools/need-nats-server)");
    let store = connect(&nats, "writer");
    store.take_lease("writer").expect("lease");
    let upload = |id: u64, chunks: usize| {
        store.commit(&[Change::FileRecord(id, vec![1; 64])]).expect("record");
        for first in (0..chunks).step_by(100) {
            let n = (chunks - first).min(100);
            let bytes = vec![id as u8; n * CHUNK_RECORD];
            store.commit(&[Change::FileChunks { id, first: first as u32, bytes }]).expect("chunks");
        }
    };
    upload(7, 300);
    upload(8, 3);
    upload(9, 200);
    assert_eq!((chunk_count(&store, 7), chunk_count(&store, 8)), (300, 3));
    store.commit(&[Change::FileDelete(7)]).expect("delete");
    assert_eq!(last_op(&store, "sotto.r.file.0000000000000007"), "D", "the record at once");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while chunk_count(&store, 7) != 0 {
        assert!(std::time::Instant::now() < deadline, "{} chunks of file 7 left", chunk_count(&store, 7));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(chunk_count(&store, 8), 3, "another file's chunks stay");
    assert_eq!(last_op(&store, "sotto.r.file.0000000000000008"), "R1");

    // Deleted, and offered again at once: the record's write finishes the deletion first.
    store.commit(&[Change::FileDelete(9)]).expect("delete");
    store.commit(&[Change::FileRecord(9, vec![2; 64])]).expect("offered again");
    assert_eq!(chunk_count(&store, 9), 0, "no chunk of the old file 9 is left to count for the new one");
    store.commit(&[Change::FileChunks { id: 9, first: 0, bytes: vec![9; 2 * CHUNK_RECORD] }]).expect("new chunks");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(chunk_count(&store, 9), 2, "the new upload's chunks stay");
}
