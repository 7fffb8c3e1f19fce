//! `cargo run --release -p model`: the model checked at larger bounds than
//! `cargo test` uses (docs/MODEL.md, "Results").

use std::process::ExitCode;

use clap::Parser;
use model::host::{self, HostModel, Second};
use model::resource::{self, ResourceModel};
use model::{check, Bug, Explain};

/// Checks every reachable state of the lease protocol model and prints
/// states explored, time, and any counterexample.
#[derive(Parser)]
struct Args {
    /// Hosts sharing the resource.
    #[arg(long, default_value_t = 2)]
    hosts: u8,
    /// Ballots each host may start.
    #[arg(long, default_value_t = 3)]
    ballots: u8,
    /// Acquires each host may start.
    #[arg(long, default_value_t = 2)]
    acquires: u8,
    /// I/Os that may fail or time out (and land late), in all.
    #[arg(long, default_value_t = 1)]
    faults: u8,
    /// Host leases that may lapse (crash, freeze, lost renewals), in all.
    #[arg(long, default_value_t = 1)]
    lapses: u8,
    /// Time explored by the host-lease model, in ms at io_timeout 320 ms.
    #[arg(long, default_value_t = 3200)]
    horizon: u32,
    /// Re-introduce a known bug (the run then fails with its counterexample).
    #[arg(long, value_enum)]
    bug: Option<Bug>,
    /// Which runs (each one's state space grows fast with the bounds:
    /// shared and hand-over want fewer acquires or ballots than the default).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "exclusive,liveness,hosts")]
    run: Vec<Run>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Run {
    Exclusive,
    Shared,
    HandOver,
    Liveness,
    /// The host-lease model: twin, restart, fast-path race.
    Hosts,
}

fn report<M>(what: &str, model: M, first: bool) -> bool
where
    M: Explain + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let o = check(model, first);
    println!("{what}: {} states explored, depth {}, {:.1?}{}", o.states, o.max_depth, o.elapsed, if o.violations.is_empty() { ", every property holds" } else { "" });
    for (property, trace) in &o.violations {
        println!("  counterexample to \"{property}\":\n{trace}");
    }
    o.violations.is_empty()
}

fn main() -> ExitCode {
    let a = Args::parse();
    let base = resource::Config { budgets: vec![(a.acquires, a.ballots); a.hosts as usize], faults: a.faults, lapses: a.lapses, bug: a.bug, ..resource::Config::small(a.hosts, a.ballots) };
    let bounds = format!("{} hosts, {} acquires and {} ballots each, {} faults, {} lapses", a.hosts, a.acquires, a.ballots, a.faults, a.lapses);
    let timed = |second, race| HostModel::new(host::Config { second, race, faults: a.faults, freezes: a.lapses, rejoins: 1, horizon: a.horizon, bug: a.bug });
    // With a bug, stop at its first counterexample.
    let first = a.bug.is_some();
    let host_bounds = format!("{} faults, {} freezes, {} ms", a.faults, a.lapses, a.horizon);
    let mut ok = true;
    for run in &a.run {
        ok &= match run {
            Run::Exclusive => report(&format!("resource, exclusive ({bounds})"), ResourceModel { cfg: base.clone() }, first),
            Run::Shared => report(&format!("resource, exclusive + shared ({bounds})"), ResourceModel { cfg: resource::Config { shared: true, ..base.clone() } }, first),
            Run::HandOver => report(&format!("resource, hand-over ({bounds})"), ResourceModel { cfg: resource::Config { handover: true, ..base.clone() } }, first),
            Run::Liveness => {
                let cfg = resource::Config { fair: true, faults: 0, lapses: 0, budgets: vec![(1, a.ballots); a.hosts as usize], ..base.clone() };
                report(&format!("resource, liveness ({} hosts, {} ballots, no faults)", a.hosts, a.ballots), ResourceModel { cfg }, first)
            }
            Run::Hosts => {
                report(&format!("host id, twin ({host_bounds})"), timed(Second::Twin, false), first)
                    & report(&format!("host id, restart ({host_bounds})"), timed(Second::Restart, false), first)
                    & report(&format!("host id, fast-path race ({host_bounds})"), timed(Second::Twin, true), first)
            }
        };
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
