//! The model checked at small bounds (docs/MODEL.md, "Results"): every
//! property holds; each known bug, re-introduced behind its `Bug` flag, is
//! found with a counterexample; and the model agrees with lockd wherever
//! it states a rule of its own.

use std::time::Duration;

use engine::clock::Mono;
use engine::delta_lease::Peers;
use engine::format::HostSlot;
use engine::timing::{Timeouts, MAX_DRIFT};
use model::host::{self, HostModel, Observer, Second};
use model::resource::{self, owner_gone, ResourceModel, View};
use model::{check, Bug, Explain, Outcome};

fn run<M>(what: &str, model: M, first: bool) -> Outcome
where
    M: Explain + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let o = check(model, first);
    println!("{what}: {} states, depth {}, {:.1?}", o.states, o.max_depth, o.elapsed);
    for (property, trace) in &o.violations {
        println!("counterexample to \"{property}\":\n{trace}");
    }
    o
}

fn holds<M>(what: &str, model: M)
where
    M: Explain + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let o = run(what, model, false);
    assert!(o.violations.is_empty(), "{what}: {:?}", o.violations.iter().map(|v| v.0).collect::<Vec<_>>());
}

/// The bug's config finds a counterexample to `property`, and the same
/// config without the bug finds none.
fn found<M: Explain + Send + Sync + 'static>(bug: Bug, property: &str, with: impl Fn(Option<Bug>) -> M)
where
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let o = run(&format!("{bug:?}"), with(Some(bug)), true);
    assert!(o.violations.iter().any(|(p, _)| *p == property), "{bug:?} not found: {:?}", o.violations);
    holds(&format!("{bug:?} fixed"), with(None));
}

fn resource(hosts: u8, budgets: (u8, u8), faults: u8, lapses: u8) -> resource::Config {
    resource::Config { budgets: vec![budgets; hosts as usize], faults, lapses, ..resource::Config::small(hosts, budgets.1) }
}

fn hosts(second: Second, race: bool, faults: u8, freezes: u8, horizon: u32, bug: Option<Bug>) -> HostModel {
    HostModel::new(host::Config { second, race, faults, freezes, rejoins: 1, horizon, bug })
}

// ---------------------------------------------------------- properties ---

#[test]
fn resource_leases_with_late_writes() {
    holds("2 hosts, 3 acquires, 2 ballots, 1 fault", ResourceModel { cfg: resource(2, (3, 2), 1, 0) });
}

#[test]
fn resource_leases_with_lapses_and_rejoins() {
    holds("2 hosts, 2 acquires, 2 ballots, 1 lapse", ResourceModel { cfg: resource(2, (2, 2), 0, 1) });
}

#[test]
fn resource_leases_three_hosts() {
    holds("3 hosts, 1 acquire, 1 ballot, 1 lapse", ResourceModel { cfg: resource(3, (1, 1), 0, 1) });
}

#[test]
fn shared_leases() {
    holds("2 hosts shared, 2 acquires, 2 ballots, 1 fault", ResourceModel { cfg: resource::Config { shared: true, ..resource(2, (2, 2), 1, 0) } });
}

#[test]
fn hand_over_by_expected_version() {
    holds("2 hosts hand-over, 2 acquires, 2 ballots, 1 fault", ResourceModel { cfg: resource::Config { handover: true, ..resource(2, (2, 2), 1, 0) } });
}

#[test]
fn a_free_resource_is_eventually_acquired() {
    for n in [2, 3] {
        holds(&format!("liveness, {n} hosts"), ResourceModel { cfg: resource::Config { fair: true, ..resource(n, (1, 2), 0, 0) } });
    }
    // Not vacuous: with no ballot allowed nobody acquires it, and the checker says so.
    let o = run("liveness without ballots", ResourceModel { cfg: resource::Config { fair: true, ..resource(2, (1, 0), 0, 0) } }, true);
    assert!(o.violations.iter().any(|(p, _)| *p == "a free resource is acquired"));
}

#[test]
fn host_id_twin_with_late_writes_and_freezes() {
    holds("twin, 1 fault, 1 freeze", hosts(Second::Twin, false, 1, 1, 2400, None));
}

#[test]
fn host_id_restart_with_resume_state() {
    holds("restart, 1 fault, 1 freeze", hosts(Second::Restart, false, 1, 1, 2400, None));
}

#[test]
fn host_id_fast_path_race() {
    holds("race, 1 fault", hosts(Second::Twin, true, 1, 0, 2000, None));
}

// ------------------------------------------------------ the known bugs ---

#[test]
fn bug_join_trusting_owner_fields() {
    found(Bug::JoinTrustsOwnerFields, "one holder per host id", |bug| hosts(Second::Twin, false, 1, 1, 2400, bug));
}

#[test]
fn bug_renewal_without_ownership_check() {
    found(Bug::NoRenewalOwnershipCheck, "a host that found another writer holds nothing", |bug| hosts(Second::Twin, false, 1, 1, 2400, bug));
}

#[test]
fn bug_read_trusted_while_own_release_in_flight() {
    found(Bug::InFlightReleaseTrusted, "one exclusive holder", |bug| ResourceModel { cfg: resource::Config { bug, ..resource(2, (2, 2), 2, 0) } });
}

#[test]
fn bug_late_leader_write_rolling_the_version_back() {
    found(Bug::LeaderRollback, "one owner per version", |bug| ResourceModel { cfg: resource::Config { budgets: vec![(2, 2), (4, 3)], bug, ..resource(2, (0, 0), 1, 0) } });
}

#[test]
fn bug_released_dblock_taken_as_already_mine() {
    found(Bug::ReleasedDblockTakenAsMine, "one exclusive holder", |bug| ResourceModel { cfg: resource::Config { bug, ..resource(2, (2, 2), 2, 0) } });
}

#[test]
fn bug_late_shared_registration_trusted() {
    found(Bug::LateSharedRegistrationTrusted, "one exclusive holder", |bug| ResourceModel { cfg: resource::Config { shared: true, bug, ..resource(2, (2, 2), 1, 0) } });
}

#[test]
fn bug_release_recorded_only_in_the_leader() {
    // A acquires twice; B's one ballot adopts A's value and its commit lands late; C contends.
    found(Bug::ReleaseOnlyInLeader, "one exclusive holder", |bug| ResourceModel { cfg: resource::Config { budgets: vec![(2, 2), (1, 1), (1, 1)], bug, ..resource(3, (0, 0), 1, 0) } });
}

#[test]
fn bug_two_ballots_of_one_host_on_one_dblock() {
    found(Bug::TwoBallotsPerDblock, "one owner per version", |bug| ResourceModel { cfg: resource::Config { bug, ..resource(2, (2, 2), 0, 0) } });
}

// ------------------------------------------- the timing it depends on ---

/// The inequalities the model's claims rest on hold for every valid
/// io_timeout, with drift the worst way round: a holder's expiry ends
/// before an observer may call it dead, and a fast joiner's longest span
/// ends before a rival's shortest confirming wait.
#[test]
fn timing_inequalities_hold_with_drift() {
    let r = 1.0 + MAX_DRIFT;
    for ms in [20u64, 100, 320, 1000, 10_000, 300_000] {
        let t = Timeouts::new(Duration::from_millis(ms)).unwrap();
        assert!(t.lease_expiry.mul_f64(r) < t.host_dead.div_f64(r), "expiry vs host_dead at {ms} ms");
        assert!(t.join_span.mul_f64(r) < t.join_delay.div_f64(r), "join_span vs join_delay at {ms} ms");
    }
    let d = host::Durations::standard();
    assert!(d.expiry_slow < d.dead_fast && d.span_slow < d.delay_fast && d.fence_slow < d.expiry_slow, "{d:?}");
}

/// The model's time is not decoration: with host_dead no longer than the
/// lease, or join_delay no longer than join_span, the checker finds the
/// two holders the inequalities exclude.
#[test]
fn the_checker_finds_broken_ratios() {
    let mut m = hosts(Second::Twin, false, 1, 1, 2400, None);
    m.d.dead_fast = m.d.expiry_slow - m.d.renew;
    let o = run("host_dead < lease_expiry", m, true);
    assert!(o.violations.iter().any(|(p, _)| *p == "dead means expired" || *p == "one holder per host id"), "{:?}", o.violations);

    let mut m = hosts(Second::Twin, true, 0, 0, 600, None);
    m.d.delay_fast = m.d.span_slow;
    let o = run("join_delay <= join_span", m, true);
    assert!(o.violations.iter().any(|(p, _)| *p == "one holder per host id"), "{:?}", o.violations);
}

// --------------------------------------------- model and code agree ---

fn record(gen: u64) -> HostSlot {
    HostSlot { free: false, host_id: 1, io_timeout_ms: 320, generation: gen, renewal: 1, renewed_unix: 0, lockspace_uuid: [0; 16], machine_id: [0; 16], nonce: [0; 16], host_name: String::new() }
}

/// `resource::owner_gone` is `Peers::owner_gone`, for every generation seen
/// and asked about, dead or not.
#[test]
fn owner_gone_agrees_with_peers() {
    let t = Timeouts::new(Duration::from_millis(320)).unwrap();
    let base = Mono(1_000_000_000_000);
    for seen in 1..=3u8 {
        for dead in [false, true] {
            let mut peers = Peers::new(1, t);
            peers.observe(base, base, &[Ok(Some(record(seen as u64)))]);
            if dead {
                let later = base.add(t.host_dead);
                peers.observe(later, later, &[Ok(Some(record(seen as u64)))]);
            }
            for asked in 1..=3u8 {
                assert_eq!(owner_gone(View { gen: seen, dead }, asked), peers.owner_gone(1, asked as u64), "seen {seen} dead {dead} asked {asked}");
            }
        }
    }
}

/// The observer's verdict (`host::Observer::dead`) is `Peers::state` ==
/// Dead, at the boundary and either side of it.
#[test]
fn observer_verdict_agrees_with_peers() {
    let t = Timeouts::new(Duration::from_millis(320)).unwrap();
    let d = t.host_dead.as_millis() as u32;
    let base = Mono(1_000_000_000_000);
    for quiet in [d - 1, d, d + 1] {
        let mut peers = Peers::new(1, t);
        peers.observe(base, base, &[Ok(Some(record(1)))]);
        let q = base.add(Duration::from_millis(quiet as u64));
        peers.observe(q, q, &[Ok(Some(record(1)))]);
        let o = Observer { wake: 0, record: Some(host::Rec { gen: 1, nonce: 0, renewal: 1 }), seen: true, last_change: 0, quiet_read_start: Some(quiet) };
        assert_eq!(o.dead(d), peers.state(1) == engine::delta_lease::HostState::Dead, "quiet read {quiet} ms after the change");
    }
}
