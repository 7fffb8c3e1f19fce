//! `host_id = auto` with real daemons on one lockspace file: daemons
//! started at once claim distinct ids, keep them across restarts, never take
//! a slot that is held (live or dead), and a full lockspace is refused.

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::daemon_harness::{init_lockspace, scratch, wait_for, Host};

const IO_MS: u64 = 200;

fn claimed(h: &Host) -> String {
    std::fs::read_to_string(h.dir.join("host-id")).unwrap()
}

#[test]
fn eight_daemons_started_at_once_claim_distinct_ids_and_keep_them() {
    let dir = scratch("auto-ids");
    let ls = dir.join("ls");
    init_lockspace(&ls, IO_MS, 8); // 8 host slots
    let mut hosts: Vec<Host> = (1..=8).map(|n| Host::auto(&dir, &format!("auto{n}"), &ls, "")).collect();
    for h in &mut hosts {
        h.launch();
    }
    for h in &mut hosts {
        h.wait_serving();
    }
    let ids: BTreeSet<u32> = hosts.iter().map(|h| h.id).collect();
    assert_eq!(ids, (1..=8).collect(), "eight daemons claimed {:?}", hosts.iter().map(|h| h.id).collect::<Vec<_>>());
    for h in &hosts {
        let s = h.status();
        assert!(s.host_id_auto, "status must say the id was claimed");
        let live = |h: &Host| h.status().lockspaces[0].hosts.iter().filter(|p| p.state == proto::protocol::HostState::Live).count();
        wait_for("every claimant to see all eight live", Duration::from_secs(20), || (live(h) == 8).then_some(()));
        assert!(claimed(h).contains(&format!("host_id = {}\n", h.id)), "{}: {}", h.dir.display(), claimed(h));
    }

    // A ninth finds every slot held: refused, naming the way out.
    let mut ninth = Host::auto(&dir, "auto9", &ls, "");
    ninth.launch();
    assert!(!ninth.wait().success());
    let log = ninth.log_text();
    assert!(log.contains("no host id is free") && log.contains("8 of 8 host slots in use") && log.contains("clear-host"), "{log}");
    assert!(!ninth.dir.join("host-id").exists(), "a refused start must not record a claim");

    // Every one keeps its id across a restart (all restarting at once).
    let before: Vec<u32> = hosts.iter().map(|h| h.id).collect();
    for h in &mut hosts {
        h.terminate();
    }
    for h in &mut hosts {
        h.launch();
    }
    for h in &mut hosts {
        h.wait_serving();
    }
    assert_eq!(hosts.iter().map(|h| h.id).collect::<Vec<_>>(), before);

    // A crashed host's slot is not free for the taking: the ninth is still
    // refused while host auto1 is down, and auto1 comes back with its id.
    hosts[0].kill();
    let mut ninth = Host::auto(&dir, "auto9", &ls, "");
    ninth.launch();
    assert!(!ninth.wait().success());
    assert!(ninth.log_text().contains("no host id is free"), "{}", ninth.log_text());
    hosts[0].spawn();
    assert_eq!(hosts[0].id, before[0]);
}

#[test]
fn a_remembered_id_someone_else_now_holds_is_given_up_for_a_free_one() {
    let dir = scratch("auto-taken");
    let ls = dir.join("ls");
    init_lockspace(&ls, IO_MS, 8);
    let mut auto = Host::auto(&dir, "auto", &ls, "");
    auto.spawn();
    let first = auto.id;
    auto.terminate(); // leaves its slot cleanly
    // The administrator gives that id to a host with a fixed id meanwhile.
    let _fixed = Host::start(&dir, &ls, first, "");
    auto.spawn();
    assert_ne!(auto.id, first);
    let log = auto.log_text();
    assert!(log.contains(&format!("host id {first} (claimed automatically at an earlier start) is in use by host \"host-{first}\"")), "{log}");
    assert!(claimed(&auto).contains(&format!("host_id = {}\n", auto.id)));
}

#[test]
fn a_garbled_claim_file_stops_the_start_naming_it() {
    let dir = scratch("auto-garbled");
    let ls = dir.join("ls");
    init_lockspace(&ls, IO_MS, 8);
    let mut h = Host::auto(&dir, "auto", &ls, "");
    std::fs::write(h.dir.join("host-id"), "host_id = many\n").unwrap();
    h.launch();
    assert!(!h.wait().success());
    let log = h.log_text();
    assert!(log.contains(&format!("{}: cannot read the claimed host id", h.dir.join("host-id").display())), "{log}");
}
