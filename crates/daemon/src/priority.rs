//! Real-time scheduling for highlanderd (`realtime = yes`, the default).
//!
//! Every lease operation is a chain of short sector I/Os, each a hand-off
//! between a request thread and an I/O thread; on a host whose cores are
//! busy (a boot storm, a build) each hand-off waited behind the busy
//! programs for a scheduler slice, and the tails grew tenfold
//! (docs/ARCHITECTURE.md, "Where the time goes"). The daemon's threads only
//! ever wait for I/O or requests, so the lowest SCHED_RR priority puts them
//! ahead of ordinary programs without starving anything: the kernel's RT
//! throttling (`kernel.sched_rt_runtime_us`) still bounds them. The
//! sentinel inherits the priority (it finishes the fencing if the daemon
//! dies); the fence helper, an administrator's program, runs at normal
//! priority (`normal_priority`).
//!
//! Not SCHED_RESET_ON_FORK: Linux applies it to new threads too, which
//! would leave every thread but the first at normal priority.

use std::os::unix::process::CommandExt;

/// Switches the calling thread, and so every thread it starts later, to
/// SCHED_RR at the lowest real-time priority. Call before any thread starts.
pub fn raise() -> std::io::Result<()> {
    // SAFETY: sched_get_priority_min only reads its argument.
    let lowest = unsafe { libc::sched_get_priority_min(libc::SCHED_RR) };
    if lowest < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let param = libc::sched_param { sched_priority: lowest };
    // SAFETY: `param` is an initialised sched_param that outlives the call;
    // pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd`'s process start at normal priority, whatever the daemon runs at.
pub fn normal_priority(cmd: &mut std::process::Command) -> &mut std::process::Command {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the closure runs in the child between fork and exec, and only
    // makes one async-signal-safe system call on a sched_param it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
