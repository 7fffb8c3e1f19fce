//! The fence sentinel: guests never outlive their leases, even when no
//! highlanderd runs any more.
//!
//! highlanderd stops (SIGTERM, `systemctl stop`) or dies (SIGKILL, a crash)
//! without fencing its guests, on purpose: a daemon started again within the
//! resume window (fence_begin = 3.5T after the last renewal) carries on with
//! the same host lease and re-adopts them. If none comes back, their
//! lock-failure actions must still run before the leases expire (4.5T):
//! other hosts take the disks over at host_dead (5.5T). That is the
//! sentinel, `highlanderd --fence-sentinel`, a small process every daemon
//! starts for itself at start-up, before it takes responsibility for any
//! guest, and that outlives it:
//!
//! - while its daemon runs, it only waits on the daemon's pidfd;
//! - once the daemon has exited, it reads what the daemon left in the state
//!   dir (the table, `guests.json`, and each lockspace's resume state,
//!   `lockspace-NAME.json`), holds the guests that hold leases by pidfd
//!   (pid + start time), and at the deadline a restarted daemon uses to
//!   refuse a resume (valid_from + fence_begin) applies each guest's action
//!   with `fence::fence_now`: poweroff = SIGKILL, waited for; pause/restart =
//!   the fence helper within T/2, else SIGKILL; ignore = logged. All done by
//!   valid_from + lease_expiry;
//! - it stands down for a lockspace once a later daemon has joined it
//!   (resumed, or fenced and joined afresh), and exits when nothing is left.
//!
//! Hand-over without a race: a starting daemon decides "resume" and a
//! sentinel decides "fence" under one lock (`fence.lock` in the state dir),
//! both comparing CLOCK_BOOTTIME with the same deadline from the same file.
//! A starting daemon takes the lock before it reads the saved table and
//! keeps it until its own sentinel is armed and it has recorded in
//! `fence-owner.json` that it answers for the lockspaces it joined. A
//! sentinel fences a lockspace only while that file still names its daemon
//! for it. So either the new daemon resumed before the deadline and the old
//! sentinel stands down, or the sentinel fenced at or after it and the new
//! daemon finds the window closed and joins afresh (`fence_before_rejoin`).
//! `highlanderd.lock`, held by a daemon for its whole life, keeps a second
//! daemon away from a state dir in use (it would take the hand-over).
//!
//! Why at start-up rather than at stop: a daemon that is SIGKILLed, aborts
//! or is OOM-killed runs no code at exit, and one stopping cleanly may be
//! unable to fork or exec right then (memory pressure, a binary replaced by
//! an upgrade); started with the daemon, the sentinel is already armed when
//! it is needed, and a failure to start it stops the daemon from starting
//! rather than leaving guests unguarded later.

//!
//! - `spec`      what a daemon tells its sentinel; the errors
//! - `handover`  the lock files and the owners file both sides decide under
//! - `spawn`     the daemon's side: starting its sentinel, restarting it
//! - `process`   the sentinel process itself (`highlanderd --fence-sentinel`)

mod handover;
mod process;
mod spawn;
mod spec;

pub use handover::{Handover, Instance, Owner};
pub use process::run;
pub use spawn::{supervise, Sentinel};
pub use spec::{SentinelError, FLAG};
