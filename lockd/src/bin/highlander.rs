//! `highlander`: inspect and set up highlander lockspaces.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Exit codes (also listed in --help).
const EXIT_FAILURE: u8 = 1;

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
        /// Number of resource lease slots (disks) the lockspace can hold.
        #[arg(long, default_value_t = 256)]
        resources: u32,
        /// Overwrite whatever PATH holds, even an existing lockspace.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("highlander: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
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
    }
}
