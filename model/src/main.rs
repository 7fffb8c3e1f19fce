use model::host::{Config as HC, HostModel, Second};
use model::resource::{Config, ResourceModel};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let first = std::env::var("FIRST").is_ok();
    if a.get(1).map(String::as_str) == Some("host") {
        let bug = match a.get(2).map(String::as_str) { Some("join") => Some(model::Bug::JoinTrustsOwnerFields), Some("renew") => Some(model::Bug::NoRenewalOwnershipCheck), _ => None };
        let second = if std::env::var("RESTART").is_ok() { Second::Restart } else { Second::Twin };
        let cfg = HC { second, race: std::env::var("RACE").is_ok(), faults: std::env::var("FAULTS").map_or(1, |v| v.parse().unwrap()), freezes: std::env::var("FREEZES").map_or(1, |v| v.parse().unwrap()), rejoins: 1, horizon: std::env::var("H").map_or(3000, |v| v.parse().unwrap()), bug };
        let m = HostModel::new(cfg);
        println!("{:?}", m.d);
        let o = model::check(m, first);
        println!("states {} depth {} in {:?}", o.states, o.max_depth, o.elapsed);
        for (n, p) in o.violations { println!("{n}:\n{p}"); }
        return;
    }
    let hosts: u8 = a.get(1).map_or(2, |x| x.parse().unwrap());
    let ballots: u8 = a.get(2).map_or(2, |x| x.parse().unwrap());
    let mut cfg = Config::small(hosts, ballots);
    if a.get(3).is_some_and(|x| x != "-") { cfg.bug = Some(match a[3].as_str() {
        "rb" => model::Bug::LeaderRollback, "rel" => model::Bug::ReleasedDblockTakenAsMine, "inf" => model::Bug::InFlightReleaseTrusted,
        "sh" => { cfg.shared = true; model::Bug::LateSharedRegistrationTrusted }, "two" => model::Bug::TwoBallotsPerDblock, _ => panic!() }); }
    if a.get(4).is_some() { cfg.shared = a[4].contains('s'); cfg.handover = a[4].contains('h'); cfg.fair = a[4].contains('f'); }
    if let Ok(v) = std::env::var("ACQ") { for b in cfg.budgets.iter_mut() { b.0 = v.parse().unwrap(); } }
    if let Ok(v) = std::env::var("B") { cfg.budgets = v.split(',').map(|x| { let (a, b) = x.split_once(':').unwrap(); (a.parse().unwrap(), b.parse().unwrap()) }).collect(); }
    if let Ok(v) = std::env::var("FAULTS") { cfg.faults = v.parse().unwrap(); }
    if let Ok(v) = std::env::var("LAPSES") { cfg.lapses = v.parse().unwrap(); }
    let o = model::check(ResourceModel { cfg }, first);
    println!("states {} depth {} in {:?}", o.states, o.max_depth, o.elapsed);
    for (n, p) in o.violations { println!("{n}:\n{p}"); }
}
