//! What `highlanderd --check` and a start both check of the configured
//! lockspaces before any is joined (one path, so `--check` passes exactly
//! what can start): each exists (or `auto_create` will create it), is a
//! file or block device holding a lockspace whose host ids include ours,
//! and none is listed twice. Only headers are read.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Config, LockspaceEntry};
use engine::error::Error;
use engine::format::Header;
use engine::lockspace;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{file}:{line}: lockspace {path} does not exist; format it with `highlander lockspace init {path} --name NAME`, or fix the path (for a file used by this host only, `auto_create = yes` creates it)")]
    Missing { file: PathBuf, line: usize, path: PathBuf },
    #[error("{file}:{line}: lockspace {path} does not exist, and auto_create cannot create it: its directory does not exist; create the directory or fix the path")]
    NoDirectory { file: PathBuf, line: usize, path: PathBuf },
    #[error("{file}:{line}: lockspace {path}: cannot look it up: {source}")]
    Unreadable { file: PathBuf, line: usize, path: PathBuf, source: std::io::Error },
    #[error("{file}:{line}: lockspace {path} is {what}, not a lockspace; name the lockspace file or block device formatted with `highlander lockspace init`")]
    NotFileOrDevice { file: PathBuf, line: usize, path: PathBuf, what: &'static str },
    #[error("{file}:{line}: {}", name_path_once(.path, .source))]
    Lockspace { file: PathBuf, line: usize, path: PathBuf, source: Box<Error> },
    #[error("{file}:{line}: lockspace {path} is listed already on line {first_line} ({first_path}): {how}")]
    Duplicate { file: PathBuf, line: usize, path: PathBuf, first_line: usize, first_path: PathBuf, how: String },
    #[error("{file}:{line}: `host_id` = {host_id} is above the host ids of lockspace \"{name}\" ({path}, line {lockspace_line}), which has host ids 1..={max_hosts}; give this host an id in that range, or re-initialise the lockspace with a larger --max-hosts")]
    HostIdAboveMax { file: PathBuf, line: usize, host_id: u32, name: String, path: PathBuf, lockspace_line: usize, max_hosts: u32 },
}

/// An engine error names its path itself most of the time; prefix the path
/// only when it does not.
fn name_path_once(path: &Path, source: &Error) -> String {
    let text = source.to_string();
    if text.contains(&path.display().to_string()) {
        text
    } else {
        format!("lockspace {}: {text}", path.display())
    }
}

/// A lockspace that passed the checks.
pub struct Checked {
    pub entry: LockspaceEntry,
    pub header: Header,
    /// A set's members that could not be opened (path, why): it starts
    /// degraded, on the others.
    pub unopened: Vec<(PathBuf, String)>,
}

/// What makes two entries the same lockspace on storage. A path listed
/// twice, or through a symlink, is the same inode: canonical paths need no
/// comparison of their own.
#[derive(PartialEq, Eq)]
enum Id {
    File { dev: u64, ino: u64 },
    Device { rdev: u64 },
    /// Not created yet (auto_create, `--check` only).
    Missing(PathBuf),
}

/// Checks every configured lockspace. With `create` (a start), a missing
/// file is created first when `auto_create` is set; without (`--check`),
/// nothing is written and such a file is left out of the result.
pub fn lockspaces(cfg: &Config, create: bool) -> Result<Vec<Checked>, CheckError> {
    let file = || cfg.source.clone();
    let mut ids: Vec<Id> = Vec::new();
    let mut headers: Vec<Option<Header>> = Vec::new();
    let mut unopened: Vec<Vec<(PathBuf, String)>> = Vec::new();
    for entry in &cfg.lockspaces {
        let (line, path) = (entry.line, &entry.path);
        let on_engine = |source| CheckError::Lockspace { file: file(), line, path: path.clone(), source: Box::new(source) };
        let mut meta = std::fs::metadata(path);
        if cfg.auto_create && entry.members.len() == 1 && meta.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            if !path.parent().is_some_and(Path::is_dir) {
                return Err(CheckError::NoDirectory { file: file(), line, path: path.clone() });
            }
            if !create {
                ids.push(Id::Missing(path.clone()));
                headers.push(None);
                unopened.push(Vec::new());
                continue;
            }
            auto_create(cfg, path).map_err(on_engine)?;
            meta = std::fs::metadata(path);
        }
        // A set runs with a member missing while a majority opens
        // (open_members judges that): look up the first member that is there.
        if entry.members.len() > 1 && meta.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            if let Some(m) = entry.members[1..].iter().find_map(|p| std::fs::metadata(p).ok()) {
                meta = Ok(m);
            }
        }
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CheckError::Missing { file: file(), line, path: path.clone() }),
            Err(source) => return Err(CheckError::Unreadable { file: file(), line, path: path.clone(), source }),
        };
        let t = meta.file_type();
        let id = if t.is_file() {
            Id::File { dev: meta.dev(), ino: meta.ino() }
        } else if t.is_block_device() {
            Id::Device { rdev: meta.rdev() }
        } else {
            return Err(CheckError::NotFileOrDevice { file: file(), line, path: path.clone(), what: engine::storage::unusable_kind(&t).unwrap_or("neither a file nor a block device") });
        };
        let (header, missing) = read_header(cfg, &entry.members).map_err(on_engine)?;
        if cfg.host_id > header.max_hosts {
            return Err(CheckError::HostIdAboveMax {
                file: file(),
                line: cfg.host_id_line,
                host_id: cfg.host_id,
                name: header.name.clone(),
                path: path.clone(),
                lockspace_line: line,
                max_hosts: header.max_hosts,
            });
        }
        ids.push(id);
        headers.push(Some(header));
        unopened.push(missing);
    }
    for (i, entry) in cfg.lockspaces.iter().enumerate() {
        for (j, first) in cfg.lockspaces[..i].iter().enumerate() {
            let set = entry.members.len() > 1 || first.members.len() > 1;
            if let Some(how) = same(&ids[j], &ids[i], headers[j].as_ref(), headers[i].as_ref(), set) {
                return Err(CheckError::Duplicate { file: file(), line: entry.line, path: entry.path.clone(), first_line: first.line, first_path: first.path.clone(), how });
            }
        }
    }
    Ok(cfg.lockspaces.iter().zip(headers).zip(unopened).filter_map(|((entry, header), unopened)| Some(Checked { entry: entry.clone(), header: header?, unopened })).collect())
}

/// Why two entries are the same lockspace (or share a name), if they are.
fn same(a: &Id, b: &Id, ha: Option<&Header>, hb: Option<&Header>, set: bool) -> Option<String> {
    if a == b {
        return Some(match a {
            Id::File { dev, ino } => format!("both are the same file (device {dev:#x}, inode {ino}); list each lockspace once"),
            Id::Device { rdev } => format!("both are the same block device ({}:{}); list each lockspace once", libc::major(*rdev), libc::minor(*rdev)),
            Id::Missing(_) => "the same path; list each lockspace once".into(),
        });
    }
    let (ha, hb) = (ha?, hb?);
    if ha.uuid == hb.uuid && set {
        return Some(format!(
            "both name lockspace \"{}\" (uuid {}) on its {} devices; list each lockspace once, on one `lockspace =` line naming each of its devices once",
            hb.name,
            proto::uuid::format(&hb.uuid),
            hb.members
        ));
    }
    if ha.uuid == hb.uuid {
        return Some(format!("both hold lockspace \"{}\" (uuid {}): two paths to one device, or a copy; list each lockspace once, by one path", hb.name, proto::uuid::format(&hb.uuid)));
    }
    (ha.name == hb.name).then(|| format!("both are named \"{}\"; lockspace names must be unique per host: re-initialise one with another --name", hb.name))
}


/// Creates a missing lockspace file named after its stem (auto_create).
fn auto_create(cfg: &Config, path: &Path) -> engine::Result<()> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut opts = engine::InitOptions::new(&stem);
    if let Some(t) = cfg.io_timeout {
        opts.io_timeout = t;
    }
    match engine::init::init(path, &opts) {
        Ok(_) => log::info!("created lockspace \"{stem}\" at {}", path.display()),
        // Another host created it at the same moment: use theirs.
        Err(Error::Open { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Reads a lockspace's header (read-only). With auto_create, a concurrent
/// creator may still be writing it: give it a moment.
fn read_header(cfg: &Config, members: &[PathBuf]) -> engine::Result<(Header, Vec<(PathBuf, String)>)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match lockspace::open_members(members, false) {
            Err(Error::NotALockspace { .. }) if cfg.auto_create && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => {
                return other.map(|(storage, header)| {
                    let unopened = storage.member_states().into_iter().filter_map(|m| Some((PathBuf::from(m.path), m.error?))).collect();
                    (header, unopened)
                })
            }
        }
    }
}
