//! `cargo run --release -p model -- --hosts 3 --ballots 3`: the model
//! checked at larger bounds than `cargo test` uses (docs/MODEL.md).

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
    #[arg(long, default_value_t = 3)]
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
}

fn report<M>(what: &str, model: M) -> bool
where
    M: Explain + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let o = check(model, false);
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
    let runs = [
        report(&format!("resource, exclusive ({bounds})"), ResourceModel { cfg: base.clone() }),
        report(&format!("resource, exclusive + shared ({bounds})"), ResourceModel { cfg: resource::Config { shared: true, ..base.clone() } }),
        report(&format!("resource, hand-over ({bounds})"), ResourceModel { cfg: resource::Config { handover: true, ..base.clone() } }),
        report(&format!("resource, liveness ({} hosts, no faults)", a.hosts), ResourceModel { cfg: resource::Config { fair: true, faults: 0, lapses: 0, budgets: vec![(1, a.ballots); a.hosts as usize], ..base.clone() } }),
        report(&format!("host id, twin ({} faults, {} freezes, {} ms)", a.faults, a.lapses, a.horizon), timed(Second::Twin, false)),
        report(&format!("host id, restart ({} faults, {} freezes, {} ms)", a.faults, a.lapses, a.horizon), timed(Second::Restart, false)),
        report(&format!("host id, fast-path race ({} faults, {} freezes, {} ms)", a.faults, a.lapses, a.horizon), timed(Second::Twin, true)),
    ];
    if runs.iter().all(|ok| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
