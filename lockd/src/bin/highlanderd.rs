//! `highlanderd`: the per-host lease daemon (see lockd::daemon).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lockd::daemon::config::{Config, DEFAULT_PATH};
use lockd::daemon::Daemon;

// This file is also compiled as a module of `highlander` (lockd/src/bin/highlander.rs),
// which renders highlanderd's man page from `Cli`: use no `crate::` paths and
// declare no `mod` items here.
#[derive(Parser)]
#[command(
    name = "highlanderd",
    version,
    about = "highlander's per-host lease daemon: keeps libvirt guests' disk leases on shared storage.",
    long_about = "highlander's per-host lease daemon: keeps libvirt guests' disk leases on shared storage.\n\n\
                  One highlanderd runs on every host. It joins the lockspaces named in its configuration \
                  (renewing this host's lease in each), and serves the libvirt lock-driver plugin \
                  (lock_manager = \"highlander\" in qemu.conf) and the highlander CLI on a Unix socket: \
                  it acquires, releases and hands over the guests' disk leases, and fences (kills or \
                  pauses) a guest whose leases can no longer be kept before any other host may take them.",
    after_help = "Notes:\n\
                  Runs in the foreground (systemd Type=simple); logs to stderr (journald). RUST_LOG overrides log_level.\n\
                  SIGTERM/SIGINT: stop. With no leases held it leaves each lockspace cleanly; with leases held it\n\
                  stops renewing but keeps them, and a restart within the resume window (before fencing would\n\
                  begin) carries on without touching the guests; left stopped (or if it dies), its fence sentinel,\n\
                  a process it starts for itself (`highlanderd --fence-sentinel`, in the same cgroup: needs\n\
                  KillMode=process), applies those guests' lock-failure actions when the window closes; it also\n\
                  SIGKILLs a daemon that hangs (SIGSTOP, a deadlock) past that time, then fences its guests.\n\
                  A guest still alive after SIGKILL at the fence deadline (stuck in I/O) makes the host fence\n\
                  itself: an armed watchdog is no longer petted, else `self_fence` runs (default: reboot).\n\
                  SIGHUP is ignored: restart to apply a new configuration.\n\n\
                  Examples:\n  \
                  highlanderd --check                          # validate /etc/highlander/highlanderd.conf\n  \
                  highlanderd --config /etc/highlander/highlanderd.conf\n  \
                  systemctl restart highlanderd                # apply a new configuration; guests and leases are kept\n\n\
                  Exit codes:\n  0  stopped on request (or --check: the configuration is valid)\n  \
                  1  could not start, or --check found a mistake (the message names the key, file or lockspace)\n  2  bad command line"
)]
pub(crate) struct Cli {
    /// Configuration file.
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Check the configuration file and exit (it does not touch the lockspaces).
    #[arg(long)]
    check: bool,
    /// Internal: the fence sentinel every highlanderd starts for itself
    /// (instructions on stdin; see lockd/src/daemon/sentinel.rs).
    #[arg(long, hide = true)]
    fence_sentinel: bool,
}

/// Blocks the stop signals in every thread (they inherit the mask), so
/// the main thread can wait for them with sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it,
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn main() -> ExitCode {
    // One malloc arena: every sector I/O runs on a short-lived thread, and
    // glibc would give each core's worth of them an arena of its own (19 MB
    // RSS holding 1000 leases, against 8 MB with one). The daemon allocates
    // little; contention is not a concern.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = Cli::parse();
    if cli.fence_sentinel {
        return lockd::daemon::sentinel::run();
    }
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("highlanderd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::new().filter_level(cfg.log_level).parse_env("RUST_LOG").format_timestamp_millis().init();
    let signals = block_signals();
    let daemon = match Daemon::start(cfg) {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `signals` is an initialised set; sigwait writes one int.
        unsafe { libc::sigwait(&signals, &mut sig) };
        if sig == libc::SIGHUP {
            log::info!("SIGHUP ignored: restart highlanderd to apply a new configuration (leases are kept across a restart)");
            continue;
        }
        log::info!("signal {sig}: stopping");
        break;
    }
    daemon.shutdown();
    ExitCode::SUCCESS
}
