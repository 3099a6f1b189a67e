//! The accept race (issue 11): a DM sent the moment its sender hears
//! `dm_accepted` is shown to the accepter, never dropped as "not a contact".
//! Its own test binary, because it loads every core on purpose.

mod common;

use common::{ok, user, Server, TempDir};

/// A DM sent the moment the sender hears `dm_accepted` can reach the accepter
/// before its own accept has completed (the sender's accept event is posted
/// before the accepter's answer is durable): it is held and shown, never
/// dropped as "not a contact". Racy by nature, so tried many times over.
#[test]
fn a_dm_sent_the_moment_the_accept_is_reported_is_shown_to_the_accepter() {
    let dir = TempDir::new("dmc-race");
    let server = Server::start(&dir.join("data"));
    // Busy threads at normal priority, four per core: sottod's disk thread (nice
    // +10) then commits the accept late, which opens the window wide.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..4 * std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for round in 0..6 {
        let (a_name, b_name) = (format!("alice{round}"), format!("bob{round}"));
        let mut alice = user(&server, &dir, &a_name, &[]);
        let mut bob = user(&server, &dir, &b_name, &[]);
        ok(&alice.run(&format!("/dm @{b_name}"), "dm"), "dm");
        bob.wait_for("dm_request", |v| v["type"] == "dm_request");
        bob.send(&format!("/accept @{a_name}"));
        alice.wait_for("dm_accepted", |v| v["type"] == "dm_accepted");
        alice.send(&format!("/msg @{b_name} right away {round}"));
        let m = bob.wait_for("a dm", |v| v["type"] == "dm");
        assert_eq!((m["from"].as_str(), m["verified"].as_bool()), (Some(a_name.as_str()), Some(true)), "{m}");
        assert_eq!(m["text"], format!("right away {round}"));
        let lost = bob.seen.iter().find(|v| v.to_string().contains("not a contact"));
        assert!(lost.is_none(), "round {round}: {lost:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
}
