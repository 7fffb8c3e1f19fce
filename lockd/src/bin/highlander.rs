//! `highlander`: inspect and set up highlander lockspaces.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use lockd::daemon::client::{Client, ClientError};
use lockd::daemon::protocol::{Request, Status, WhoResource, WhoResult};

/// Exit codes (also listed in --help).
const EXIT_FAILURE: u8 = 1;
const EXIT_NO_DAEMON: u8 = 3;
const DEFAULT_SOCKET: &str = "/run/highlander/highlanderd.sock";

#[derive(Parser)]
#[command(
    name = "highlander",
    version,
    about = "Inspect and set up highlander lockspaces (disk leases for libvirt guests).",
    after_help = "EXIT CODES:\n  0  success\n  1  the operation failed (the message says what and where)\n  2  bad command line\n  3  the highlanderd daemon is not running or not reachable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and format lockspaces.
    #[command(subcommand)]
    Lockspace(LockspaceCommand),
    /// Read a lockspace straight from storage (no daemon needed) and show
    /// every host slot and every resource lease.
    Dump {
        /// Lockspace file or block device.
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ask this host's highlanderd for this host, each lockspace with its
    /// hosts, every lease held here and every registered guest.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// highlanderd's socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Which guest on which host holds a disk, as the lockspace on storage
    /// says (leases held by other hosts included).
    Who {
        /// The disk: a file or block device path (or, with --identity, its identity).
        disk: String,
        /// DISK is an identity such as `file:/srv/vm.img` or `wwid:naa.6001…`, not a path.
        #[arg(long)]
        identity: bool,
        /// Read this lockspace file or device directly instead of asking the daemon.
        #[arg(long, value_name = "FILE")]
        lockspace: Option<PathBuf>,
        /// Lockspace name to ask the daemon about (default: its first lockspace).
        #[arg(long, value_name = "NAME", conflicts_with = "lockspace")]
        name: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// highlanderd's socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

#[derive(Subcommand)]
enum LockspaceCommand {
    /// Format a file (created if missing) or block device as a lockspace.
    /// Refuses to overwrite anything that is already there unless --force.
    Init {
        /// Lockspace file or block device (shared by every host).
        path: PathBuf,
        /// Lockspace name (1..64 printable ASCII characters, no spaces).
        #[arg(long)]
        name: String,
        /// Highest host id that may join (each host needs a unique id).
        #[arg(long, default_value_t = 64)]
        max_hosts: u32,
        /// Sector size in bytes: 512 or 4096 (default: the device's logical sector size; 512 for files).
        #[arg(long)]
        sector_size: Option<u32>,
        /// I/O timeout in seconds (fractions allowed); every other timeout derives from it.
        #[arg(long, default_value_t = 10.0)]
        io_timeout: f64,
        /// Number of resource lease slots: the most disks the lockspace can ever
        /// hold (names are never freed). Size it at twice the disks you expect:
        /// a fuller table makes first acquires probe longer.
        #[arg(long, default_value_t = 1024)]
        resources: u32,
        /// Overwrite whatever PATH holds, even an existing lockspace.
        #[arg(long)]
        force: bool,
    },
    /// Free one host id's slot: a corrupt slot that stops that host from
    /// joining, or an id to hand to another machine. Waits until the slot
    /// has not changed for the dead-host time (7 x io_timeout), so it never
    /// takes the id from a running host; that host's old leases then count
    /// as released.
    ClearHost {
        /// Lockspace file or block device.
        path: PathBuf,
        /// The host id whose slot to free.
        #[arg(long)]
        host_id: u32,
    },
}

fn main() -> ExitCode {
    // Like any Unix filter: `highlander status | head` ends quietly when the
    // reader goes away, instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("highlander: {e}");
            let unreachable = matches!(e.downcast_ref::<ClientError>(), Some(ClientError::Unreachable { .. }));
            ExitCode::from(if unreachable { EXIT_NO_DAEMON } else { EXIT_FAILURE })
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Lockspace(LockspaceCommand::ClearHost { path, host_id }) => {
            let (_, header) = lockd::lockspace::open(&path, false)?;
            let host_dead = lockd::timing::Timeouts::new(Duration::from_millis(header.io_timeout_ms as u64))?.host_dead;
            eprintln!("watching the slot of host id {host_id} for {host_dead:?} to make sure no machine is using it...");
            if lockd::lockspace::clear_host(&path, host_id)? {
                println!("freed the slot of host id {host_id} in lockspace \"{}\"; its old leases count as released", header.name);
            } else {
                println!("the slot of host id {host_id} in lockspace \"{}\" was never used; nothing to do", header.name);
            }
            Ok(())
        }
        Command::Lockspace(LockspaceCommand::Init { path, name, max_hosts, sector_size, io_timeout, resources, force }) => {
            if !io_timeout.is_finite() || io_timeout <= 0.0 {
                return Err(format!("--io-timeout {io_timeout} must be a positive number of seconds").into());
            }
            let opts = lockd::InitOptions {
                name,
                max_hosts,
                sector_size,
                io_timeout: Duration::from_secs_f64(io_timeout),
                resource_slots: resources,
                force,
            };
            let header = lockd::lockspace::init(&path, &opts)?;
            let bytes = header.layout().total_sectors() * header.sector_size as u64;
            println!(
                "initialised lockspace \"{}\" at {}: {} host ids, {} resource slots, {}-byte sectors, {} bytes",
                header.name,
                path.display(),
                header.max_hosts,
                header.resource_slots,
                header.sector_size,
                bytes
            );
            Ok(())
        }
        Command::Dump { path, json } => {
            let dump = lockd::direct::dump(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&dump)?);
            } else {
                print!("{dump}");
            }
            Ok(())
        }
        Command::Status { json, socket } => {
            let status: Status = Client::connect(&socket)?.call(&Request::Status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        Command::Who { disk, identity, lockspace, name, json, socket } => {
            let (path, id) = if identity { (None, Some(disk.clone())) } else { (Some(disk.clone()), None) };
            let who = match lockspace {
                Some(file) => {
                    let id = match id {
                        Some(id) => id,
                        None => lockd::identity::of_path(std::path::Path::new(&disk))?,
                    };
                    let (_, header) = lockd::lockspace::open(&file, false)?;
                    let info = lockd::direct::who(&file, &id)?;
                    lockd::daemon::leases::who_result(&id, path, &header.name, info, Vec::new())
                }
                None => Client::connect(&socket)?.call(&Request::Who(WhoResource { path, identity: id, lockspace: name }))?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&who)?);
            } else {
                print_who(&who);
            }
            Ok(())
        }
    }
}

fn ago(ms: Option<u64>) -> String {
    ms.map_or("never seen changing".into(), |ms| format!("last change {:.1} s ago", ms as f64 / 1000.0))
}

fn print_status(s: &Status) {
    use lockd::direct::format_unix;
    println!("host {} \"{}\"  (highlanderd {}, pid {})", s.host_id, s.host_name, s.daemon_version, s.daemon_pid);
    for ls in &s.lockspaces {
        let health = match (ls.health.as_str(), ls.valid_for_ms, ls.fence_in_ms) {
            ("failing", Some(v), Some(f)) => format!("FAILING: fencing in {:.1} s, leases void in {:.1} s ({})", f as f64 / 1000.0, v as f64 / 1000.0, ls.error.as_deref().unwrap_or("")),
            ("lost", _, _) => format!("LOST: {}", ls.error.as_deref().unwrap_or("")),
            (h, v, _) => format!("{h}, leases valid for {:.1} s", v.unwrap_or(0) as f64 / 1000.0),
        };
        println!("lockspace \"{}\" at {}: generation {}{}, {health}, io_timeout {} ms", ls.name, ls.path, ls.generation, if ls.resumed { " (resumed)" } else { "" }, ls.io_timeout_ms);
        for h in &ls.hosts {
            let me = if h.host_id == s.host_id { "  (this host)".to_owned() } else { format!("  {}", ago(h.last_change_ago_ms)) };
            println!("  host {:>4}  {:<24} gen {:<6} {:<8}{me}", h.host_id, format!("\"{}\"", h.host_name), h.generation, h.state);
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
            lockd::direct::format_unix(w.since_unix),
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
