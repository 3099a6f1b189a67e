//! The cluster store's pure parts: the replay of operations, commit chains, subject names.

use super::*;
use zerocopy::FromZeros;

/// Replays `ops` (operation, payload) as one subject's messages 1, 2, ….
fn replay(ops: &[(&str, &[u8])]) -> Result<Loaded, StoreError> {
    let mut out = BTreeMap::new();
    for (i, (op, payload)) in ops.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(OP, *op);
        apply_loaded(&mut out, "sotto.r.q.0000000000000001", Some(&headers), payload, i as u64 + 1)?;
    }
    Ok(out.remove("sotto.r.q.0000000000000001").expect("the subject"))
}

#[test]
fn a_subject_is_its_last_whole_replace_and_the_appends_after_it() {
    let l = replay(&[("R1", b"old"), ("A", b"+1"), ("R1", b"new"), ("A", b"+2"), ("A", b"+3")]).unwrap();
    assert_eq!((l.content.as_slice(), l.removed, l.last), (&b"new+2+3"[..], false, 5));
    let l = replay(&[("R3", b"a"), ("P", b"b"), ("P", b"c"), ("A", b"d")]).unwrap();
    assert_eq!(l.content, b"abcd");
    assert!(l.partial.is_none());
}

#[test]
fn an_unfinished_replace_leaves_the_previous_content() {
    // Cut short by a crash: still partial at the end.
    let l = replay(&[("R1", b"kept"), ("R3", b"x"), ("P", b"y")]).unwrap();
    assert_eq!(l.content, b"kept");
    assert!(l.partial.is_some());
    // An append after it: that replace failed, the append goes on the previous content.
    let l = replay(&[("R1", b"kept"), ("R2", b"x"), ("A", b"+")]).unwrap();
    assert_eq!(l.content, b"kept+");
    assert!(l.partial.is_none());
}

#[test]
fn a_tombstone_removes_and_a_later_write_restores() {
    let l = replay(&[("R1", b"gone"), ("D", b"")]).unwrap();
    assert!(l.removed && l.content.is_empty());
    let l = replay(&[("R1", b"gone"), ("D", b""), ("R1", b"back")]).unwrap();
    assert_eq!((l.content.as_slice(), l.removed), (&b"back"[..], false));
    let l = replay(&[("D", b""), ("A", b"q")]).unwrap();
    assert_eq!((l.content.as_slice(), l.removed), (&b"q"[..], false));
}

#[test]
fn malformed_operations_are_corrupt_records() {
    for ops in [vec![("X", &b""[..])], vec![("R0", &b""[..])], vec![("Rx", &b""[..])], vec![("R99999", &b""[..])]] {
        assert!(matches!(replay(&ops), Err(StoreError::Corrupt { .. })), "{ops:?}");
    }
    // No operation header at all.
    let mut out = BTreeMap::new();
    let e = apply_loaded(&mut out, "sotto.r.q.1", None, b"", 1).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { why: "no operation header", .. }), "{e}");
}

#[test]
fn a_commit_runs_as_chains_that_share_no_record() {
    let q = |uid: u64| Change::Queue(uid, QueueWrite::Append(vec![uid as u8]));
    let shape = |writes: &[Change]| -> Vec<Vec<String>> {
        chains(writes).iter().map(|c| c.iter().map(|w| touches(w).join("+")).collect()).collect()
    };
    // Different records: one chain each, in order of first appearance.
    let writes = [q(1), q(2), Change::Contacts(crate::server::store::ContactsWrite { file: vec![], pairs: vec![] })];
    assert_eq!(chains(&writes).len(), 3);
    // The same record twice: one chain, in the commit's order.
    let writes = [q(1), q(2), q(1)];
    let c = chains(&writes);
    assert_eq!(c.len(), 2);
    assert!(matches!(c[0].as_slice(), [Change::Queue(1, _), Change::Queue(1, _)]));
    assert!(std::ptr::eq(c[0][0], &writes[0]) && std::ptr::eq(c[0][1], &writes[2]));
    // A deletion of an account joins the chain of its operator state.
    let writes = [Change::Acct(7, vec![]), q(7), Change::UserDelete(7)];
    assert_eq!(shape(&writes).len(), 2);
    assert_eq!(
        shape(&writes)[0],
        [uid_subject("acct", 7), format!("{}+{}", uid_subject("user", 7), uid_subject("acct", 7))]
    );
    // A write bridging two chains: everything in one, as given.
    let writes = [Change::User(Box::new(user(9))), Change::Acct(9, vec![]), q(3), Change::UserDelete(9)];
    let c = chains(&writes);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].len(), 4);
    // A file's chunks and its deletion: one chain.
    let writes =
        [Change::FileChunks { id: 5, first: 0, bytes: vec![] }, Change::FileDelete(5), Change::FileRecord(6, vec![])];
    assert_eq!(chains(&writes).iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
}

fn user(uid: u64) -> UserRecord {
    let mut rec = UserRecord::new_zeroed();
    rec.uid.set(uid);
    rec
}

#[test]
fn subjects_name_their_ids_in_hex() {
    assert_eq!(uid_subject("user", 0xab), "sotto.r.user.00000000000000ab");
    assert_eq!(JetStreamStore::id_of("sotto.r.user.00000000000000ab").unwrap(), 0xab);
    assert!(JetStreamStore::id_of("sotto.r.user.zz").is_err());
    assert_eq!(chunk_subject(1, 7), "sotto.c.0000000000000001.7");
    assert_eq!(room_subject("lobby"), "sotto.r.room.lobby");
}

#[test]
fn the_followed_state_is_selected_as_nats_filters_match() {
    let mut subjects = BTreeMap::new();
    for s in ["sotto.r.q.01", "sotto.r.q.02", "sotto.r.qx.03", "sotto.r.room.lobby", "sotto.r.data.contacts"] {
        subjects.insert(s.to_owned(), replay(&[("R1", s.as_bytes())]).unwrap());
    }
    let names = |filter: &str| follow::select(&subjects, filter).into_keys().collect::<Vec<_>>();
    assert_eq!(names("sotto.r.q.*"), ["sotto.r.q.01", "sotto.r.q.02"], "not the prefix of another kind");
    assert_eq!(names("sotto.r.room.*"), ["sotto.r.room.lobby"]);
    assert_eq!(names("sotto.r.data.contacts"), ["sotto.r.data.contacts"]);
    assert!(names("sotto.r.data.retired").is_empty());
    assert_eq!(follow::select(&subjects, "sotto.r.q.01")["sotto.r.q.01"].content, b"sotto.r.q.01");
}

#[test]
fn a_subject_counts_the_messages_its_operations_leave_in_the_stream() {
    let count = |ops: &[(&str, &[u8])]| replay(ops).unwrap().count;
    assert_eq!(count(&[("A", b"1"), ("A", b"2")]), 2, "appends add up");
    assert_eq!(count(&[("A", b"1"), ("R1", b"x"), ("A", b"2")]), 2, "a rollup leaves itself");
    assert_eq!(count(&[("R1", b"x"), ("D", b"")]), 1, "a tombstone is a rollup");
    assert_eq!(count(&[("A", b"1"), ("R2", b"x"), ("P", b"y")]), 2, "a finished replace of parts leaves its parts");
    assert_eq!(count(&[("A", b"1"), ("R2", b"x")]), 2, "an unfinished one leaves what came before");
}
