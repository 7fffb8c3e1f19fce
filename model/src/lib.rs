//! An exhaustive model check of highlander's lease protocol with
//! stateright: `resource` (Disk Paxos ballots, acquire, release, shared
//! leases, hand-over) and `host` (delta leases in time: join, renewal,
//! expiry, observers, fencing). docs/MODEL.md says what is modelled, what
//! is abstracted and why that is sound.

pub mod host;
pub mod resource;

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model};

/// A known bug, re-introduced in the model only: each one the checker must
/// find (model/tests/check.rs), each one fixed in lockd (docs/SAFETY.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Bug {
    /// Join: a slot whose owner fields (host name, machine id) match ours
    /// is taken on the fast path ("Who may take the fast path").
    JoinTrustsOwnerFields,
    /// Renewal writes without first checking that our slot still holds our
    /// own write ("Renewal checks ownership").
    NoRenewalOwnershipCheck,
    /// Acquire trusts a read taken while its own release was in flight
    /// ("A release still in flight").
    InFlightReleaseTrusted,
    /// Ballot for leader.lver + 1 even when a dblock is beyond it
    /// ("Late-landing leader writes").
    LeaderRollback,
    /// "Already mine" without `effectively_held`: a RELEASED dblock ignored.
    ReleasedDblockTakenAsMine,
    /// A shared registration trusted at any version ("Late-landing leader
    /// writes", shared registrations).
    LateSharedRegistrationTrusted,
    /// No slot lock: two threads of one host ballot on one dblock
    /// ("One ballot per slot per host").
    TwoBallotsPerDblock,
    /// Release frees only the leader (the dblock is marked only if that
    /// write fails): another host's late commit of our value resurrects
    /// the lease ("A commit landing after the release").
    ReleaseOnlyInLeader,
}

/// What one exhaustive run found.
pub struct Outcome {
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// (property, counterexample's actions, one per line).
    pub violations: Vec<(&'static str, String)>,
}

/// How a counterexample step reads: the action and, for a step of an
/// operation, which step of the code it was.
pub trait Explain: Model {
    fn explain(&self, before: &Self::State, action: &Self::Action) -> String;
}

/// Checks every reachable state of `model` breadth first (so
/// counterexamples are shortest); `first`: stop at the first violation.
pub fn check<M>(model: M, first: bool) -> Outcome
where
    M: Explain + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static,
{
    let start = Instant::now();
    let builder = model.checker();
    let builder = if first { builder.finish_when(HasDiscoveries::AnyFailures) } else { builder };
    let checker = builder.spawn_bfs().join();
    let mut violations: Vec<(&'static str, String)> = checker
        .discoveries()
        .into_iter()
        .map(|(name, path)| {
            let steps = path.into_vec();
            let lines: Vec<String> = steps.iter().filter_map(|(state, action)| action.as_ref().map(|a| format!("  {}", checker.model().explain(state, a)))).collect();
            (name, lines.join("\n"))
        })
        .collect();
    violations.sort();
    Outcome { states: checker.unique_state_count(), max_depth: checker.max_depth(), elapsed: start.elapsed(), violations }
}
