//! Fencing: when this host cannot renew its host lease, its guests must
//! stop using their disks before any other host may take the leases over.
//!
//! Per lockspace, a monitor watches `Lockspace::health()`. The engine's
//! timing (docs/SAFETY.md) gives, from the start of the last successful
//! renewal: lock-failure actions at `fence_begin` (3.5T), killed guests gone
//! by `fence_deadline` (4.25T), our leases void at `lease_expiry` (4.5T),
//! peers may call us dead at `host_dead` (5.5T). So:
//! - at fence_at (polled every T/10, so by fence_at + T/10 < valid_until):
//!   each affected guest's action: poweroff = SIGKILL through its pidfd;
//!   pause/restart = the fence helper (virsh, which needs no shared
//!   storage); ignore = log only;
//! - at fence_at + T/2, a pause/restart guest that still holds leases in
//!   that lockspace (the helper failed or hung) is SIGKILLed;
//! - at fence_deadline, a killed guest still alive (its pidfd has not
//!   polled readable: stuck in I/O) makes the host fence itself
//!   (`escalate.rs`);
//! - once the host lease is lost, the lockspace's leases are void: they are
//!   dropped from the table and, once every killed guest is gone (or the
//!   host escalated), the lockspace is rejoined with a new generation as
//!   soon as storage answers again.
//!
//! Every round of the monitor beats the heartbeat the fence sentinel
//! watches (`heartbeat.rs`).
//!
//! When no daemon runs (stopped or dead with leases held, not resumed in
//! time), the fence sentinel (`sentinel.rs`) applies the same actions with
//! `fence_now`, as does a daemon back too late (`fence_before_rejoin`).
//!
//! The optional watchdog is petted while no fencing has failed or stuck; it
//! is what resets the host if the daemon dies together with its sentinel,
//! or the whole host freezes, with leases held.

//!
//! - `monitor`   the per-lockspace monitor thread and its failure episodes
//! - `actions`   a guest's lock-failure action (kill, fence helper, ignore)
//! - `escalate`  a killed guest still alive at the deadline: the host fences itself
//! - `watchdog`  the optional hardware watchdog

mod actions;
pub mod escalate;
mod monitor;
mod watchdog;

pub use actions::{apply, fence_now, run_helpers, FenceConfig, Fenced};
pub use monitor::spawn;
pub use watchdog::{close_watchdog, watchdog_in_time};
