//! `highlanderd`: the per-host lease daemon (see daemon).

use std::process::ExitCode;

use clap::Parser;
use daemon::cli::Cli;
use daemon::config::Config;
use daemon::Daemon;
use nix::sys::signal::{SigSet, Signal};

/// Blocks the stop signals in every thread (they inherit the mask), so
/// the main thread can wait for them with sigwait.
fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(sig);
    }
    // Fails only for an invalid `how`: SIG_BLOCK is valid.
    let _ = set.thread_block();
    set
}

fn main() -> ExitCode {
    // One malloc arena: sector I/O runs on a pool of threads that grows with
    // the I/O in flight, and glibc would give each core's worth of them an
    // arena of its own (19 MB RSS holding 1000 leases, against 8 MB with
    // one). The daemon allocates little; contention is not a concern.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = Cli::parse();
    if cli.fence_sentinel {
        return daemon::sentinel::run();
    }
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("highlanderd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        return match daemon::check::lockspaces(&cfg, false) {
            Ok(found) => {
                let host_id = if cfg.host_id_auto {
                    match daemon::host_claim::HostIdFile::new(&cfg.host_id_file).remembered() {
                        Ok(Some(id)) => format!("{id} (auto, claimed earlier, in {})", cfg.host_id_file.display()),
                        Ok(None) => format!("auto (none claimed yet: one is claimed at start and kept in {})", cfg.host_id_file.display()),
                        Err(e) => {
                            eprintln!("highlanderd: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    cfg.host_id.to_string()
                };
                println!("{}: configuration is valid", cli.config.display());
                for entry in &cfg.lockspaces {
                    match found.iter().find(|c| c.entry == *entry) {
                        Some(c) if entry.members.len() > 1 => {
                            let paths: Vec<String> = entry.members.iter().map(|p| p.display().to_string()).collect();
                            println!("  lockspace \"{}\" on {} devices ({}): host id {host_id} of 1..={}", c.header.name, paths.len(), paths.join(", "), c.header.max_hosts);
                            for (path, why) in &c.unopened {
                                println!("    DEGRADED: {} cannot be opened ({why}); it starts on the other {} devices", path.display(), paths.len() - c.unopened.len());
                            }
                        }
                        Some(c) => println!("  lockspace \"{}\" at {}: host id {host_id} of 1..={}", c.header.name, entry.path.display(), c.header.max_hosts),
                        None => println!("  lockspace at {}: does not exist yet; auto_create creates it at start-up", entry.path.display()),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("highlanderd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    env_logger::Builder::new().filter_level(cfg.log_level).parse_env("RUST_LOG").format_timestamp_millis().init();
    if cfg.realtime {
        if let Err(e) = daemon::priority::raise() {
            log::warn!("realtime = yes: cannot switch to SCHED_RR ({e}); running at normal priority, so lease operations slow down when the host's CPUs are busy. Grant CAP_SYS_NICE, or set realtime = no in {} to silence this", cfg.source.display());
        }
    }
    let signals = block_signals();
    let daemon = match Daemon::start(cfg) {
        Ok(d) => {
            daemon::notify::send(&format!("READY=1\nSTATUS=serving as host {} in {} lockspace(s)", d.cfg.host_id, d.spaces.len()));
            d
        }
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        // sigwait fails only for a set holding an invalid signal (0: stop).
        let sig = signals.wait().map_or(0, |s| s as libc::c_int);
        if sig == libc::SIGHUP {
            log::info!("SIGHUP ignored: restart highlanderd to apply a new configuration (leases are kept across a restart)");
            continue;
        }
        log::info!("signal {sig}: stopping");
        break;
    }
    daemon::notify::send("STOPPING=1");
    daemon.shutdown();
    ExitCode::SUCCESS
}
