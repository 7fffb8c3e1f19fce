use model::resource::{Config, ResourceModel};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let hosts: u8 = a.get(1).map_or(2, |x| x.parse().unwrap());
    let ballots: u8 = a.get(2).map_or(2, |x| x.parse().unwrap());
    let mut cfg = Config::small(hosts, ballots);
    if a.get(3).is_some_and(|x| x != "-") { cfg.bug = Some(match a[3].as_str() {
        "rb" => model::Bug::LeaderRollback, "rel" => model::Bug::ReleasedDblockTakenAsMine, "inf" => model::Bug::InFlightReleaseTrusted,
        "sh" => { cfg.shared = true; model::Bug::LateSharedRegistrationTrusted }, "two" => model::Bug::TwoBallotsPerDblock, _ => panic!() }); }
    if a.get(4).is_some() { cfg.shared = a[4].contains('s'); }
    if let Ok(v) = std::env::var("ACQ") { for b in cfg.budgets.iter_mut() { b.0 = v.parse().unwrap(); } }
    if let Ok(v) = std::env::var("B") { cfg.budgets = v.split(',').map(|x| { let (a, b) = x.split_once(':').unwrap(); (a.parse().unwrap(), b.parse().unwrap()) }).collect(); }
    if let Ok(v) = std::env::var("FAULTS") { cfg.faults = v.parse().unwrap(); }
    if let Ok(v) = std::env::var("LAPSES") { cfg.lapses = v.parse().unwrap(); }
    let o = model::check(ResourceModel { cfg }, std::env::var("FIRST").is_ok());
    println!("states {} depth {} in {:?}", o.states, o.max_depth, o.elapsed);
    for (n, p) in o.violations { println!("{n}:\n{p}"); }
}
