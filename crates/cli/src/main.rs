//! `highlander`: inspect and set up highlander lockspaces.

mod check;
mod threshold;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use proto::client::{Client, ClientError};
use proto::protocol::{Health, HostState, Request, Status, WhoResource, WhoResult};


/// Exit codes (also listed in --help and the man page).
const EXIT_FAILURE: u8 = 1;
const EXIT_NO_DAEMON: u8 = 3;
const DEFAULT_SOCKET: &str = "/run/highlander/highlanderd.sock";

/// The exit codes, for the help of a command that talks to the daemon
/// (`daemon`) or only to storage (`storage`) or to neither (`local`).
macro_rules! exit_codes {
    (daemon) => {
        "Exit codes:\n  0  success\n  1  failed, or not allowed to use highlanderd's socket; the message on stderr says what and where\n  2  bad command line (a usage message on stderr)\n  3  highlanderd is not running or its socket is not reachable"
    };
    (check) => {
        "Exit codes:\n  0  OK\n  1  WARNING: a lockspace is failing or degraded (a device of its set hung or missing), the renewal age is in the warning range, or releases are failing on storage\n  2  CRITICAL: highlanderd is not running or does not answer, a lockspace is lost, or the renewal age is in the critical range\n  3  UNKNOWN: bad command line, no permission to use the socket, or an answer the check cannot judge"
    };
    (storage) => {
        "Exit codes:\n  0  success\n  1  failed; the message on stderr says what and where\n  2  bad command line (a usage message on stderr)"
    };
}

#[derive(Parser)]
#[command(
    name = "highlander",
    version,
    about = "Inspect and set up highlander lockspaces (disk leases for libvirt guests).",
    long_about = "Inspect and set up highlander lockspaces (disk leases for libvirt guests).\n\n\
                  highlander keeps a lease per disk on shared storage, so that no two guests, on any \
                  host sharing the storage, ever write the same disk at once. This tool formats \
                  lockspaces, reads them straight from storage, and asks this host's highlanderd \
                  what it holds. Every command that reports something takes --json.",
    after_help = concat!(
        "Examples:\n",
        "  highlander lockspace init /dev/mapper/san-highlander --name cluster1\n",
        "  highlander lockspace init /dev/mapper/hl-a /dev/mapper/hl-b /dev/mapper/hl-c --name cluster1   # on 3 devices\n",
        "  highlander status                        # this host: lockspaces, hosts, leases, guests\n",
        "  highlander who /dev/vg_shared/web1       # which guest on which host holds this disk\n",
        "  highlander check                         # for Nagios / Icinga: OK, WARNING, CRITICAL\n",
        "  highlander dump /dev/mapper/san-highlander --json\n",
        "  highlander generate completions bash > /usr/share/bash-completion/completions/highlander\n",
        "\n",
        exit_codes!(daemon)
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and format lockspaces; free a host id.
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  highlander lockspace init /dev/mapper/san-highlander --name cluster1\n",
            "  highlander lockspace init /dev/mapper/hl-a /dev/mapper/hl-b /dev/mapper/hl-c --name cluster1\n",
            "  highlander lockspace clear-host /dev/mapper/san-highlander --host-id 7\n",
            "  highlander lockspace clear-host /dev/mapper/hl-a /dev/mapper/hl-b /dev/mapper/hl-c --host-id 7   # a set: name every device\n",
            "\n",
            exit_codes!(storage)
        )
    )]
    Lockspace(LockspaceCommand),
    /// Read a lockspace straight from storage (no daemon needed) and show
    /// every host slot and every resource lease.
    ///
    /// Works on any host that sees the storage, with highlanderd running or
    /// not; it only reads. A host slot shows "held" whether its host is
    /// renewing or dead: one read cannot tell (`highlander status` on a
    /// joined host can). Corrupt records are listed, never trusted.
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander dump /dev/mapper/san-highlander\n",
        "  highlander dump /srv/nfs/highlander/cluster1.lockspace --json | jq '.resources[] | select(.mode != \"free\")'\n",
        "\n",
        exit_codes!(storage)
    ))]
    Dump {
        /// Lockspace file or block device.
        path: PathBuf,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Ask this host's highlanderd for this host, each lockspace with its
    /// hosts, every lease held here and every registered guest.
    ///
    /// A lockspace is "healthy" while renewals land; "failing" when they do
    /// not (the line says when guests will be fenced and when the leases
    /// lapse); "lost" once its leases are void. Hosts are "live", "failing",
    /// "dead" (their leases may be taken over), "unknown" (not watched long
    /// enough yet; counted as live), "corrupt" (the slot does not decode;
    /// counted as live) or "free" (left cleanly).
    ///
    /// A lockspace on a set of 3 or 5 devices lists each device: "ok",
    /// "HUNG" (an I/O outstanding past its deadline; the device is not
    /// asked again until it answers) or "MISSING" (could not be opened at
    /// start). With any device not ok the lockspace is DEGRADED: it runs on
    /// the others while a majority of them answers.
    ///
    /// Network disks (rbd, gluster, iscsi, nbd), which libvirt hands to no
    /// lock manager, are leased when the qemu hook declared them at start.
    /// A network disk hot-plugged with `virsh attach-device` runs no hook: it
    /// is not leased. The running guests' network disks (from libvirt's live
    /// domain files) are listed with whether each is leased, so such a disk
    /// shows as NOT LEASED.
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander status\n",
        "  highlander status --json | jq -r '.lockspaces[] | \"\\(.name) \\(.health)\"'\n",
        "  highlander status --socket /run/highlander/highlanderd.sock\n",
        "\n",
        exit_codes!(daemon)
    ))]
    Status {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
        /// highlanderd's socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Where libvirt keeps the live XML of running domains (read for their network disks).
        #[arg(long, value_name = "DIR", default_value = "/run/libvirt/qemu")]
        libvirt_run_dir: PathBuf,
    },
    /// Which guest on which host holds a disk, as the lockspace on storage
    /// says (leases held by other hosts included).
    ///
    /// The disk is recognised by its identity (device-mapper UUID, SCSI/NVMe
    /// WWID, a loop device's backing file, else the canonical file path), so
    /// any path to it on this host will do.
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander who /dev/vg_shared/web1\n",
        "  highlander who /srv/nfs/images/web1.qcow2 --json\n",
        "  highlander who --identity wwid:naa.600a0980383030523424457a4a695266\n",
        "  highlander who /dev/sdb --lockspace /dev/mapper/san-highlander   # no daemon needed\n",
        "  highlander who /dev/sdb --lockspace /dev/mapper/hl-a --lockspace /dev/mapper/hl-b --lockspace /dev/mapper/hl-c\n",
        "  highlander who /dev/sdb --name cluster2                           # another configured lockspace\n",
        "\n",
        exit_codes!(daemon),
        " (not with --lockspace)"
    ))]
    Who {
        /// The disk: a file or block device path (or, with --identity, its identity).
        disk: String,
        /// DISK is an identity such as `file:/srv/vm.img` or `wwid:naa.6001...`, not a path.
        #[arg(long)]
        identity: bool,
        /// Read this lockspace file or device directly instead of asking the
        /// daemon (a lockspace on a set of devices: repeat it for every one).
        #[arg(long, value_name = "FILE")]
        lockspace: Vec<PathBuf>,
        /// Lockspace name to ask the daemon about (default: its first lockspace).
        #[arg(long, value_name = "NAME", conflicts_with = "lockspace")]
        name: Option<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
        /// highlanderd's socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Judge this host's highlanderd as a monitoring plugin (Nagios, Icinga,
    /// Naemon, Sensu): one status line with perfdata, and the exit code.
    ///
    /// A lost lockspace is CRITICAL and a failing one WARNING, as is a
    /// degraded one (a device of its set hung or missing). The renewal
    /// age (time since the start of the last renewal of this host's lease
    /// that landed, in milliseconds) is checked against -w and -c, by
    /// default per lockspace 1 and 3 io_timeouts: renewals are due every
    /// half io_timeout, and fencing begins at 3.5. Releases failing on
    /// storage are a WARNING. Perfdata: renewal_age_LOCKSPACE (ms),
    /// leases, guests, hosts_live, hosts_failing, hosts_dead (summed over
    /// the lockspaces), pending_releases, fence_in_LOCKSPACE (s until
    /// fencing would begin if no renewal landed from now on; 0 once lost),
    /// members_ok_LOCKSPACE (devices answering, for a lockspace on a set).
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander check\n",
        "  highlander check -w 8000 -c 25000          # renewal age in ms; ranges N, N:, ~:N, N:M, @N:M\n",
        "  highlander check --json\n",
        "  highlander check --socket /run/highlander/highlanderd.sock -t 5\n",
        "\n",
        exit_codes!(check)
    ))]
    Check {
        /// Warning range for the renewal age in milliseconds (monitoring-plugins
        /// range syntax; default: io_timeout).
        #[arg(short = 'w', long, value_name = "RANGE")]
        warning: Option<threshold::Range>,
        /// Critical range for the renewal age in milliseconds (default: 3 x io_timeout).
        #[arg(short = 'c', long, value_name = "RANGE")]
        critical: Option<threshold::Range>,
        /// Seconds to wait for highlanderd's answer; no answer is CRITICAL.
        #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Machine-readable output (JSON); the exit code stays the plugin's.
        #[arg(long)]
        json: bool,
        /// highlanderd's socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Print this host's highlanderd's Prometheus metrics, for
    /// node_exporter's textfile collector or a one-off look.
    ///
    /// In the Prometheus text format (0.0.4), which the textfile collector
    /// reads; with --openmetrics, the OpenMetrics text the daemon serves on
    /// `metrics_listen` (highlanderd.conf) at /metrics. The samples are the
    /// same. The metrics are listed in README.md, "Monitoring".
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander metrics\n",
        "  highlander metrics | grep '^highlander_renewal_age'\n",
        "  # node_exporter's textfile collector, every minute from cron (write, then rename):\n",
        "  highlander metrics > /var/lib/prometheus/node-exporter/highlander.prom.$$ && mv /var/lib/prometheus/node-exporter/highlander.prom.$$ /var/lib/prometheus/node-exporter/highlander.prom\n",
        "\n",
        exit_codes!(daemon)
    ))]
    Metrics {
        /// Print the OpenMetrics text format (as /metrics serves it) instead.
        #[arg(long)]
        openmetrics: bool,
        /// highlanderd's socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Print a man page or shell completions, generated from this program's
    /// own command-line definitions.
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  highlander generate man | man -l -\n",
            "  highlander generate completions bash > /usr/share/bash-completion/completions/highlander\n",
            "\n",
            exit_codes!(storage)
        )
    )]
    Generate(GenerateCommand),
}

#[derive(Subcommand)]
enum LockspaceCommand {
    /// Format a file (created if missing) or block device as a lockspace,
    /// or a set of 3 or 5 of them as one lockspace. Refuses to overwrite
    /// anything that is already there unless --force.
    ///
    /// A lockspace on 3 or 5 devices (on different storage arrays) keeps
    /// working while a majority of them answers: a write lands when a
    /// majority has it, a read takes the newest of a majority. A device
    /// that hangs or fails leaves the lockspace running, degraded, on the
    /// others (`highlander status` says so, `highlander check` warns).
    /// Name every device, in any order, in highlanderd.conf:
    /// `lockspace = /dev/mapper/hl-a /dev/mapper/hl-b /dev/mapper/hl-c`.
    /// Every device is checked before any is written.
    ///
    /// Without --force it destroys nothing: a filesystem, LVM physical
    /// volume, partition table, swap area, RAID member or LUKS volume (as
    /// libblkid recognises them), a sanlock lockspace or lease, another
    /// lockspace, or any other non-zero byte where the lockspace would go is
    /// refused and named. Zeros and a file of zeros of any size (grown to
    /// fit) are formatted.
    ///
    /// Run it once, on one host, on storage every host sees: a shared LUN,
    /// a logical volume on shared storage, or a file on NFS, GFS2, CephFS or
    /// GlusterFS. Its size is (1 + H + R x (H + 1)) sectors for H = --max-hosts
    /// and R = --resources: 32.5 MiB with the defaults and 512-byte sectors,
    /// 260 MiB with 4096-byte sectors. --max-hosts, --resources and
    /// --io-timeout cannot change later (re-initialise with --force while no
    /// host uses the lockspace).
    #[command(after_help = concat!(
        "Examples:\n",
        "  # a shared LUN seen through multipath, up to 16 hosts (8.5 MiB)\n",
        "  highlander lockspace init /dev/mapper/san-highlander --name cluster1 --max-hosts 16\n",
        "  # a logical volume on a shared volume group\n",
        "  lvcreate -L 40M -n highlander vg_shared\n",
        "  highlander lockspace init /dev/vg_shared/highlander --name cluster1\n",
        "  # a file on NFS, with a longer io_timeout for slow storage\n",
        "  highlander lockspace init /srv/nfs/highlander/cluster1.lockspace --name cluster1 --io-timeout 20\n",
        "  # one lockspace on three LUNs from three arrays: runs while two of them answer\n",
        "  highlander lockspace init /dev/mapper/array1-hl /dev/mapper/array2-hl /dev/mapper/array3-hl --name cluster1\n",
        "  #   highlanderd.conf: lockspace = /dev/mapper/array1-hl /dev/mapper/array2-hl /dev/mapper/array3-hl\n",
        "\n",
        exit_codes!(storage)
    ))]
    Init {
        /// Lockspace file or block device (shared by every host); or 3 or 5
        /// of them, on different storage, for one lockspace on a set of devices.
        #[arg(required = true, num_args = 1..=5, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Lockspace name (1..64 printable ASCII characters, no spaces).
        #[arg(long)]
        name: String,
        /// Highest host id that may join (each host needs a unique id).
        #[arg(long, value_name = "N", default_value_t = 64)]
        max_hosts: u32,
        /// Sector size in bytes: 512 or 4096 (default: the device's logical sector size; 512 for files).
        #[arg(long, value_name = "BYTES")]
        sector_size: Option<u32>,
        /// I/O timeout in seconds (fractions allowed); every other timeout derives from it.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        io_timeout: f64,
        /// Number of resource lease slots: the most disks the lockspace can ever
        /// hold (names are never freed). Size it at twice the disks you expect:
        /// a fuller table makes first acquires probe longer.
        #[arg(long, value_name = "N", default_value_t = 1024)]
        resources: u32,
        /// Overwrite whatever PATH holds (a filesystem, an existing lockspace, anything).
        #[arg(long)]
        force: bool,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Free one host id's slot: a corrupt slot that stops that host from
    /// joining, or an id to hand to another machine.
    ///
    /// Waits until the slot has not changed for the dead-host time
    /// (host_dead_ms in `highlander dump`), so it never takes the id from a
    /// running host; that host's old leases then count as released.
    #[command(after_help = concat!(
        "Examples:\n",
        "  # host 7 was retired; its slot may go to a new machine\n",
        "  highlander lockspace clear-host /dev/mapper/san-highlander --host-id 7\n",
        "\n",
        exit_codes!(storage)
    ))]
    ClearHost {
        /// Lockspace file or block device; for a lockspace on a set of
        /// devices, every one of them.
        #[arg(required = true, num_args = 1..=5, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The host id whose slot to free.
        #[arg(long, value_name = "N")]
        host_id: u32,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Print a man page (roff) for highlander or highlanderd, section 8.
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander generate man | man -l -\n",
        "  highlander generate man > /usr/share/man/man8/highlander.8\n",
        "  highlander generate man highlanderd > /usr/share/man/man8/highlanderd.8\n",
        "\n",
        exit_codes!(storage)
    ))]
    Man {
        /// Which program's page.
        #[arg(value_enum, default_value_t = Program::Highlander)]
        program: Program,
    },
    /// Print a shell completion script for highlander.
    #[command(after_help = concat!(
        "Examples:\n",
        "  highlander generate completions bash > /usr/share/bash-completion/completions/highlander\n",
        "  highlander generate completions zsh > /usr/share/zsh/vendor-completions/_highlander\n",
        "  highlander generate completions fish > /usr/share/fish/vendor_completions.d/highlander.fish\n",
        "  source <(highlander generate completions bash)   # this shell only\n",
        "\n",
        exit_codes!(storage)
    ))]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Program {
    Highlander,
    Highlanderd,
}

fn main() -> ExitCode {
    // Like any Unix filter: `highlander status | head` ends quietly when the
    // reader goes away, instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A monitoring system reads stdout and the exit code: a bad
        // `check` command line is UNKNOWN (3), not clap's 2.
        Err(e) if e.use_stderr() && std::env::args_os().nth(1).is_some_and(|a| a == "check") => {
            let _ = e.print();
            println!("{}", check::bad_usage(&e.to_string()));
            return ExitCode::from(check::State::Unknown.exit_code());
        }
        Err(e) => e.exit(),
    };
    if let Command::Check { warning, critical, timeout, json, socket } = &cli.command {
        return run_check(socket, warning.as_ref(), critical.as_ref(), Duration::from_secs(*timeout), *json);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("highlander: {e}");
            // Permission denied is a failure (1), not a missing daemon (3).
            let unreachable = matches!(e.downcast_ref::<ClientError>(), Some(ClientError::Unreachable { source, .. }) if source.kind() != std::io::ErrorKind::PermissionDenied);
            ExitCode::from(if unreachable { EXIT_NO_DAEMON } else { EXIT_FAILURE })
        }
    }
}

/// `highlander check`: never fails; what went wrong is in the verdict.
fn run_check(socket: &std::path::Path, warning: Option<&threshold::Range>, critical: Option<&threshold::Range>, timeout: Duration, json: bool) -> ExitCode {
    let asked = Client::connect(socket).and_then(|c| {
        c.set_timeout(timeout)?;
        Ok(c)
    });
    let verdict = match asked.and_then(|mut c| c.call::<Status>(&Request::Status)) {
        Ok(status) => check::evaluate(&status, warning, critical),
        Err(e) => check::unanswered(&e, timeout),
    };
    if json {
        let mut v = serde_json::to_value(&verdict).expect("a verdict serialises");
        v["exit_code"] = verdict.state.exit_code().into();
        v["line"] = verdict.to_string().into();
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON prints"));
    } else {
        println!("{verdict}");
    }
    ExitCode::from(verdict.state.exit_code())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Lockspace(LockspaceCommand::ClearHost { paths, host_id, json }) => {
            let (_, header) = engine::lockspace::open_members(&paths, false)?;
            let path = &paths[0];
            if host_id == 0 || host_id > header.max_hosts {
                return Err(engine::Error::HostIdOutOfRange { host_id, max_hosts: header.max_hosts, lockspace: header.name }.into());
            }
            let host_dead = engine::timing::Timeouts::new(Duration::from_millis(header.io_timeout_ms as u64))?.host_dead;
            eprintln!("watching the slot of host id {host_id} for {host_dead:?} to make sure no machine is using it...");
            let freed = engine::lockspace::clear_host(&paths, host_id)?;
            if json {
                print_json(&serde_json::json!({ "path": path, "paths": paths, "lockspace": header.name, "host_id": host_id, "freed": freed }))?;
            } else if freed {
                println!("freed the slot of host id {host_id} in lockspace \"{}\"; its old leases count as released", header.name);
            } else {
                println!("the slot of host id {host_id} in lockspace \"{}\" was never used; nothing to do", header.name);
            }
            Ok(())
        }
        Command::Lockspace(LockspaceCommand::Init { paths, name, max_hosts, sector_size, io_timeout, resources, force, json }) => {
            if !engine::format::MEMBER_COUNTS.contains(&(paths.len() as u32)) {
                return Err(format!("{} paths given; a lockspace is on 1 device, or on a set of 3 or 5 (a majority of them must answer)", paths.len()).into());
            }
            if !io_timeout.is_finite() || io_timeout <= 0.0 {
                return Err(format!("--io-timeout {io_timeout} must be a positive number of seconds").into());
            }
            let opts = engine::InitOptions {
                name,
                max_hosts,
                sector_size,
                io_timeout: Duration::from_secs_f64(io_timeout),
                resource_slots: resources,
                force,
            };
            let header = engine::init::init_members(&paths, &opts)?;
            let bytes = header.layout().total_sectors() * header.sector_size as u64;
            let path = &paths[0];
            if json {
                print_json(&serde_json::json!({
                    "path": path,
                    "paths": paths,
                    "members": paths.len(),
                    "name": header.name,
                    "uuid": proto::uuid::format(&header.uuid),
                    "max_hosts": header.max_hosts,
                    "resource_slots": header.resource_slots,
                    "sector_size": header.sector_size,
                    "io_timeout_ms": header.io_timeout_ms,
                    "bytes": bytes,
                    "created_unix": header.created_unix,
                }))?;
            } else if paths.len() > 1 {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                println!(
                    "initialised lockspace \"{}\" on {} devices: {} ({} host ids, {} resource slots, {}-byte sectors, {} bytes each); it runs while {} of them answer. In highlanderd.conf: lockspace = {}",
                    header.name,
                    paths.len(),
                    list.join(", "),
                    header.max_hosts,
                    header.resource_slots,
                    header.sector_size,
                    bytes,
                    paths.len() / 2 + 1,
                    list.join(" ")
                );
            } else {
                println!(
                    "initialised lockspace \"{}\" at {}: {} host ids, {} resource slots, {}-byte sectors, {} bytes",
                    header.name,
                    path.display(),
                    header.max_hosts,
                    header.resource_slots,
                    header.sector_size,
                    bytes
                );
            }
            Ok(())
        }
        Command::Dump { path, json } => {
            let dump = engine::direct::dump(&path)?;
            if json {
                print_json(&dump)?;
            } else {
                print!("{dump}");
            }
            Ok(())
        }
        Command::Status { json, socket, libvirt_run_dir } => {
            let status: Status = Client::connect(&socket)?.call(&Request::Status)?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
                print_network_disks(&status, &running_network_disks(&libvirt_run_dir));
            }
            Ok(())
        }
        Command::Who { disk, identity, lockspace, name, json, socket } => {
            let (path, id) = if identity { (None, Some(disk.clone())) } else { (Some(disk.clone()), None) };
            let who = match lockspace.first() {
                Some(_) => {
                    let id = match id {
                        Some(id) => id,
                        None => identity::of_path(std::path::Path::new(&disk))?,
                    };
                    let (_, header) = engine::lockspace::open_members(&lockspace, false)?;
                    let info = engine::direct::who(&lockspace, &id)?;
                    daemon::leases::who_result(&id, path, &header.name, info, Vec::new())
                }
                None => Client::connect(&socket)?.call(&Request::Who(WhoResource { path, identity: id, lockspace: name }))?,
            };
            if json {
                print_json(&who)?;
            } else {
                print_who(&who);
            }
            Ok(())
        }
        Command::Generate(GenerateCommand::Man { program }) => {
            let page = match program {
                Program::Highlander => man_page(Cli::command(), HIGHLANDER_MAN_EXTRA),
                Program::Highlanderd => man_page(<daemon::cli::Cli as CommandFactory>::command(), HIGHLANDERD_MAN_EXTRA),
            }?;
            std::io::stdout().write_all(page.as_bytes())?;
            Ok(())
        }
        Command::Check { .. } => unreachable!("main runs `check` itself"),
        Command::Metrics { openmetrics, socket } => {
            let text: String = Client::connect(&socket)?.call(&Request::Metrics)?;
            print!("{}", if openmetrics { text } else { daemon::metrics::prometheus_text(&text) });
            Ok(())
        }
        Command::Generate(GenerateCommand::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "highlander", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Sections of the man pages that are not in --help.
const HIGHLANDER_MAN_EXTRA: &[(&str, &str)] = &[
    (
        "FILES",
        "/run/highlander/highlanderd.sock\n  highlanderd's socket (root and highlanderd.conf's `group` may connect).\n\
         /etc/highlander/highlanderd.conf\n  the daemon's configuration: host id and lockspaces.\n\
         /etc/libvirt/qemu-highlander.conf\n  the libvirt plugin's configuration.",
    ),
    ("SEE ALSO", "highlanderd(8), virsh(1), libvirtd(8); README.md and docs/ in /usr/share/doc/highlander."),
];

const HIGHLANDERD_MAN_EXTRA: &[(&str, &str)] = &[
    (
        "FILES",
        "/etc/highlander/highlanderd.conf\n  the configuration; every key is documented in the installed template.\n\
         /run/highlander/highlanderd.sock\n  the socket the libvirt plugin and highlander(8) connect to.\n\
         /run/highlander/\n  state kept across a daemon restart (guests, leases, host lease resume state); must not survive a reboot.\n\
         /etc/libvirt/qemu.conf\n  lock_manager = \"highlander\" makes libvirt's QEMU driver use the plugin.\n\
         /etc/libvirt/qemu-highlander.conf\n  the plugin's configuration (socket, lockspace, timeout).",
    ),
    ("ENVIRONMENT", "RUST_LOG\n  overrides log_level, e.g. RUST_LOG=debug."),
    ("SEE ALSO", "highlander(8), virsh(1), libvirtd(8), systemctl(1); README.md and docs/ in /usr/share/doc/highlander."),
];

/// A man page (section 8) for `cmd` from its clap definitions: the usual
/// sections from clap_mangen, then one subsection per command (nested
/// commands flattened to `highlander lockspace init`), then `extra`.
fn man_page(cmd: clap::Command, extra: &[(&str, &str)]) -> std::io::Result<String> {
    use clap_mangen::roff::{bold, roman, Roff};
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let preamble = Roff::new().render();
    // Every clap_mangen render starts with the same preamble; keep the first.
    let mut page = String::new();
    let mut piece = |f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>, drop_heading: bool| -> std::io::Result<()> {
        let mut buf = Vec::new();
        f(&mut buf)?;
        let text = String::from_utf8(buf).expect("roff output is UTF-8");
        let mut text = if page.is_empty() { text } else { text.strip_prefix(&preamble).unwrap_or(&text).to_owned() };
        if drop_heading {
            // A section rendered as part of a subsection: no `.SH` of its own.
            text = text.lines().filter(|l| !l.starts_with(".SH ")).map(|l| format!("{l}\n")).collect();
        }
        page.push_str(&text);
        Ok(())
    };
    let man = clap_mangen::Man::new(cmd.clone()).section("8").manual("System Administration");
    piece(&|w| man.render_title(w), false)?;
    piece(&|w| man.render_name_section(w), false)?;
    piece(&|w| man.render_synopsis_section(w), false)?;
    piece(&|w| man.render_description_section(w), false)?;
    piece(&|w| man.render_options_section(w), false)?;

    let mut leaves = Vec::new();
    collect_leaves(&cmd, &mut leaves);
    if !leaves.is_empty() {
        let mut r = Roff::new();
        r.control("SH", ["COMMANDS"]);
        piece(&|w| r.to_writer(w), false)?;
    }
    for sub in leaves {
        let full = sub.get_bin_name().unwrap_or(sub.get_name()).to_owned();
        let mut r = Roff::new();
        r.control("SS", [full.as_str()]);
        piece(&|w| r.to_writer(w), false)?;
        let usage = sub.clone().render_usage().to_string();
        let mut r = Roff::new();
        r.text([bold(usage.trim_start_matches("Usage: ").trim())]).control("PP", []);
        piece(&|w| r.to_writer(w), false)?;
        // -h/--help is the same for every command: listed once, at the top.
        let sub_man = clap_mangen::Man::new(sub.clone().mut_arg("help", |a| a.hide(true)));
        piece(&|w| sub_man.render_description_section(w), true)?;
        if sub.get_arguments().any(|a| !a.is_hide_set() && a.get_id() != "help") {
            piece(&|w| sub_man.render_options_section(w), true)?;
        }
        if let Some(after) = sub.get_after_help() {
            let r = after_help_roff(&after.to_string(), false);
            piece(&|w| r.to_writer(w), false)?;
        }
    }
    if let Some(after) = cmd.get_after_help() {
        let r = after_help_roff(&after.to_string(), true);
        piece(&|w| r.to_writer(w), false)?;
    }
    let mut r = Roff::new();
    for (title, body) in extra {
        r.control("SH", [*title]);
        for line in body.lines() {
            match line.strip_prefix("  ") {
                Some(text) => r.control("RS", []).text([roman(text)]).control("RE", []),
                None if *title == "FILES" || *title == "ENVIRONMENT" => r.control("PP", []).text([bold(line)]),
                None => r.text([roman(line)]),
            };
        }
    }
    r.control("SH", ["VERSION"]).text([roman(format!("{} {}", cmd.get_name(), cmd.get_version().unwrap_or("")))]);
    piece(&|w| r.to_writer(w), false)?;
    Ok(page)
}

/// Commands without subcommands, depth first.
fn collect_leaves(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        if sub.has_subcommands() {
            collect_leaves(sub, out);
        } else {
            out.push(sub.clone());
        }
    }
}

/// An after_help text in roff. "Heading:" lines become sections (top
/// level) or bold paragraph headings (a command's); unindented lines are
/// prose, filled; indented lines (examples, exit codes) stay verbatim.
fn after_help_roff(text: &str, top: bool) -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{bold, roman, Roff};
    let mut r = Roff::new();
    let (mut in_block, mut in_prose) = (false, false);
    for line in text.lines() {
        let indented = line.starts_with(' ');
        if in_block && !indented {
            r.control("fi", []).control("RE", []);
            in_block = false;
        }
        if line.trim().is_empty() {
            in_prose = false;
        } else if !indented && line.ends_with(':') {
            let title = line.trim_end_matches(':');
            if top {
                r.control("SH", [if title == "Exit codes" { "EXIT STATUS".to_owned() } else { title.to_uppercase() }.as_str()]);
            } else {
                r.control("PP", []).text([bold(title)]);
            }
            in_prose = false;
        } else if !indented {
            if !in_prose {
                r.control("PP", []);
                in_prose = true;
            }
            r.text([roman(line)]);
        } else {
            if !in_block {
                r.control("RS", []).control("nf", []);
                in_block = true;
            }
            r.text([roman(line.trim_start())]);
        }
    }
    if in_block {
        r.control("fi", []).control("RE", []);
    }
    r
}

fn ago(ms: Option<u64>) -> String {
    ms.map_or("never seen changing".into(), |ms| format!("last change {:.1} s ago", ms as f64 / 1000.0))
}

fn print_status(s: &Status) {
    use engine::clock::format_unix;
    let claimed = if s.host_id_auto { ", host id claimed automatically" } else { "" };
    println!("host {} \"{}\"  (highlanderd {}, pid {}{claimed})", s.host_id, s.host_name, s.daemon_version, s.daemon_pid);
    for ls in &s.lockspaces {
        let health = match (ls.health, ls.valid_for_ms, ls.fence_in_ms) {
            (Health::Failing, Some(v), Some(f)) => format!("FAILING: fencing in {:.1} s, leases void in {:.1} s ({})", f as f64 / 1000.0, v as f64 / 1000.0, ls.error.as_deref().unwrap_or("")),
            (Health::Lost, _, _) => format!("LOST: {}", ls.error.as_deref().unwrap_or("")),
            (h, v, _) => format!("{h}, leases valid for {:.1} s", v.unwrap_or(0) as f64 / 1000.0),
        };
        let on = match ls.members.len() {
            0 => format!("at {}", ls.path),
            n if ls.degraded() => format!("on {n} devices (DEGRADED: {} answer)", ls.members.iter().filter(|m| m.state == proto::protocol::MemberHealth::Ok).count()),
            n => format!("on {n} devices"),
        };
        println!("lockspace \"{}\" {on}: generation {}{}, {health}, io_timeout {} ms", ls.name, ls.generation, if ls.resumed { " (resumed)" } else { "" }, ls.io_timeout_ms);
        print_members(ls);
        for h in &ls.hosts {
            let me = if h.host_id == s.host_id { "  (this host)".to_owned() } else { format!("  {}", ago(h.last_change_ago_ms)) };
            let name = if h.state == HostState::Corrupt { "<slot unreadable>".to_owned() } else { format!("\"{}\"", h.host_name) };
            println!("  host {:>4}  {:<24} gen {:<6} {:<8}{me}", h.host_id, name, h.generation, h.state);
        }
    }
    println!("leases held on this host:");
    if s.leases.is_empty() {
        println!("  (none)");
    }
    for l in &s.leases {
        let holders: Vec<String> = l.holders.iter().map(|g| format!("guest \"{}\" (uuid {}, pid {})", g.name, g.uuid, g.pid)).collect();
        println!(
            "  {}  path {}  {}  lver {}  lockspace \"{}\"  since {}  held by {}",
            l.lease.identity,
            l.lease.path,
            l.lease.mode,
            l.lease.lver,
            l.lease.lockspace,
            format_unix(l.lease.since_unix),
            holders.join(", ")
        );
    }
    if !s.pending_releases.is_empty() {
        println!("releases failing on storage, being retried (other hosts still see these held):");
        for p in &s.pending_releases {
            println!("  {}  lver {}  lockspace \"{}\"", p.identity, p.lver, p.lockspace);
        }
    }
    if !s.escalations.is_empty() {
        println!("ESCALATIONS (killed guests still alive at the fence deadline; this host fenced itself):");
        for e in &s.escalations {
            println!("  {}  {}  lockspace \"{}\"  {}: {}", format_unix(e.unix), e.by, e.lockspace, e.guests.join(", "), e.action);
        }
    }
    println!("guests:");
    if s.guests.is_empty() {
        println!("  (none registered)");
    }
    for g in &s.guests {
        println!(
            "  pid {:<8} \"{}\"  uuid {}  uri {}  on_lockfailure {}{}  registered {}  {} lease(s)",
            g.pid,
            g.name,
            g.uuid,
            if g.uri.is_empty() { "-" } else { &g.uri },
            g.action,
            if g.fenced { "  FENCED" } else { "" },
            format_unix(g.registered_unix),
            g.leases.len()
        );
    }
}

/// The devices of a lockspace on a set, one line each, and whether the
/// lockspace is degraded.
fn print_members(ls: &proto::protocol::LockspaceStatus) {
    use proto::protocol::MemberHealth;
    let n = ls.members.len();
    let up: Vec<String> = ls.members.iter().filter(|m| m.state == MemberHealth::Ok).map(|m| m.member.to_string()).collect();
    let majority = n / 2 + 1;
    let runs = match up.len() {
        k if k < majority => format!("no majority ({k} of {n} answer, {majority} needed): renewals fail"),
        2 if n == 3 => "the lockspace runs on the other two".to_owned(),
        _ => format!("the lockspace runs on devices {}", up.join(", ")),
    };
    for m in &ls.members {
        let state = match m.state {
            MemberHealth::Ok => "ok".to_owned(),
            MemberHealth::Hung => format!("HUNG for {:.1} s — {runs}", m.hung_for_ms.unwrap_or(0) as f64 / 1000.0),
            MemberHealth::Missing => format!("MISSING ({}) — {runs}", m.error.as_deref().unwrap_or("not opened")),
            MemberHealth::Failing => format!("FAILING ({}) — {runs}", m.error.as_deref().unwrap_or("its I/Os fail")),
        };
        println!("  device {} of {n} {}: {state}", m.member, m.path);
    }
    if ls.degraded() {
        let down: Vec<String> = ls.members.iter().filter(|m| m.state != MemberHealth::Ok).map(|m| format!("device {} {} {}", m.member, m.path, m.state)).collect();
        let spare = up.len().saturating_sub(majority);
        let margin = if up.len() < majority {
            "fewer than a majority answer: the host lease cannot be renewed".to_owned()
        } else if spare == 0 {
            "one more device lost stops the lockspace".to_owned()
        } else {
            format!("{spare} more may fail")
        };
        let missing = ls.members.iter().any(|m| m.state == MemberHealth::Missing);
        let again = if missing { "; a device missing at start is used again once highlanderd restarts (`systemctl restart highlanderd` keeps guests and leases)" } else { "" };
        println!("  DEGRADED: {} of {n} devices answer ({}; {margin}); bring the device back{again} (a blank replacement cannot join a running set: README, \"A lockspace on three devices\")", up.len(), down.join(", "));
    }
}

/// A running domain (libvirt's live `<domstatus>` file) with network disks.
struct Running {
    name: String,
    uuid: String,
    disks: Vec<proto::protocol::NetworkDisk>,
}

/// The running domains' network disks, from libvirt's live domain files;
/// those this process cannot read are left out.
fn running_network_disks(run_dir: &std::path::Path) -> Vec<Running> {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return Vec::new() };
    let mut running: Vec<Running> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .filter_map(|p| {
            let (uuid, disks) = identity::netdisk::from_domain_xml(&std::fs::read_to_string(&p).ok()?).ok()?;
            let name = p.file_stem()?.to_string_lossy().into_owned();
            (!disks.is_empty()).then_some(Running { name, uuid, disks })
        })
        .collect();
    running.sort_by(|a, b| a.name.cmp(&b.name));
    running
}

/// Every declared or running network disk, and whether it is leased.
fn print_network_disks(s: &Status, running: &[Running]) {
    let declared = |uuid: &str| s.declared.iter().find(|d| d.uuid == uuid);
    let shown = |d: &proto::protocol::DeclaredDiskView| match (&d.identity, d.leased) {
        (None, _) => format!("NOT LEASED: {}", d.unleased_why.as_deref().unwrap_or("no identity")),
        (Some(id), true) => format!("leased {} ({id})", d.mode),
        (Some(id), false) => format!("declared, NOT HELD now ({id}; a paused or stopped guest holds none)"),
    };
    let with_disks: Vec<_> = s.declared.iter().filter(|d| !d.disks.is_empty()).collect();
    if with_disks.is_empty() && running.is_empty() {
        return;
    }
    println!("network disks (declared by the qemu hook; hot-plugged ones are not leased):");
    for r in running {
        for disk in &r.disks {
            let state = declared(&r.uuid).and_then(|d| d.disks.iter().find(|x| x.target == disk.target)).map_or_else(
                || "NOT LEASED: not declared (hot-plugged, or started before the qemu hook was installed); attach a <lease> or restart the guest".to_owned(),
                shown,
            );
            println!("  guest \"{}\" (uuid {})  {} {}  {state}", r.name, r.uuid, disk.target, disk.source());
        }
    }
    for d in with_disks.iter().filter(|d| !running.iter().any(|r| r.uuid == d.uuid)) {
        for disk in &d.disks {
            println!("  guest \"{}\" (uuid {})  {} {}  {}", d.name, d.uuid, disk.target, disk.source, shown(disk));
        }
    }
}

fn print_who(w: &WhoResult) {
    let disk = match &w.path {
        Some(p) => format!("disk {} (path {p})", w.identity),
        None => format!("disk {}", w.identity),
    };
    let guest = |name: &str, uuid: &str| if uuid.is_empty() { format!("\"{name}\"") } else { format!("guest \"{name}\" (uuid {uuid})") };
    if !w.known {
        println!("{disk} in lockspace \"{}\": never locked", w.lockspace);
    } else if w.held {
        println!(
            "{disk} in lockspace \"{}\": held exclusively by {} on host {} \"{}\" ({}) since {}, lease version {}",
            w.lockspace,
            guest(&w.guest, &w.uuid),
            w.owner_id,
            w.owner_name,
            w.owner_state,
            engine::clock::format_unix(w.since_unix),
            w.lver
        );
    } else if !w.shared.is_empty() {
        let holders: Vec<String> = w.shared.iter().map(|s| format!("{} on host {} \"{}\" ({})", guest(&s.guest, &s.uuid), s.host_id, s.host_name, s.host_state)).collect();
        println!("{disk} in lockspace \"{}\": held shared by {}", w.lockspace, holders.join(", "));
    } else {
        println!("{disk} in lockspace \"{}\": free (lease version {}, last held by {} on host {} \"{}\")", w.lockspace, w.lver, guest(&w.guest, &w.uuid), w.owner_id, w.owner_name);
    }
    for g in &w.local_holders {
        println!("  on this host: guest \"{}\" (uuid {}, pid {})", g.name, g.uuid, g.pid);
    }
}
