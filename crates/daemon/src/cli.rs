//! highlanderd's command line; `highlander generate man highlanderd` renders
//! its man page from this same definition.

use std::path::PathBuf;

use clap::Parser;

use crate::config::DEFAULT_PATH;

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
                  SIGHUP is ignored: restart to apply a new configuration.\n\
                  A lockspace on a set of 3 or 5 devices (`lockspace = PATH1 PATH2 PATH3`, formatted together with\n\
                  `highlander lockspace init PATH1 PATH2 PATH3`) runs while a majority of its devices answers; a\n\
                  device that hangs or is missing at start leaves it running, degraded: logged, and shown by\n\
                  `highlander status` and `highlander check`.\n\n\
                  Examples:\n  \
                  highlanderd --check                          # validate /etc/highlander/highlanderd.conf\n  \
                  highlanderd --config /etc/highlander/highlanderd.conf\n  \
                  systemctl restart highlanderd                # apply a new configuration; guests and leases are kept\n\n\
                  Exit codes:\n  0  stopped on request (or --check: the configuration is valid)\n  \
                  1  could not start, or --check found a mistake (the message names the key, file or lockspace)\n  2  bad command line"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Check the configuration file and the lockspaces it names, then exit:
    /// each must exist (or be one auto_create will create), hold a
    /// lockspace whose host ids include host_id, and be listed once; a set
    /// of devices must name every member of one lockspace, each once, and a
    /// majority of them must open. Reads their headers; writes nothing.
    #[arg(long)]
    pub check: bool,
    /// Internal: the fence sentinel every highlanderd starts for itself
    /// (instructions on stdin; see crates/daemon/src/sentinel.rs).
    #[arg(long, hide = true)]
    pub fence_sentinel: bool,
}

