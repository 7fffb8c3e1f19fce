//! `init`: formatting a new lockspace (docs/FORMAT.md, "Header"). Without
//! `force` it destroys nothing: it refuses a target that holds anything but
//! zeros, and names what it found.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};

use crate::clock::unix_now;
use crate::error::{Error, FormatError, Result};
use crate::format::{Header, Layout, MAX_HOSTS_LIMIT, NAME_LEN, RECORD_LEN};
use crate::probe;
use crate::storage::Storage;
use crate::timing::Timeouts;

#[derive(Clone, Debug)]
pub struct InitOptions {
    pub name: String,
    pub max_hosts: u32,
    /// None: the device's logical sector size (512 for files).
    pub sector_size: Option<u32>,
    pub io_timeout: Duration,
    pub resource_slots: u32,
    /// Overwrite whatever the target holds.
    pub force: bool,
}

impl InitOptions {
    pub fn new(name: &str) -> InitOptions {
        InitOptions {
            name: name.to_owned(),
            max_hosts: 64,
            sector_size: None,
            io_timeout: crate::timing::DEFAULT_IO_TIMEOUT,
            resource_slots: 1024,
            force: false,
        }
    }
}

/// I/O deadline for formatting (large writes, done once).
const INIT_DEADLINE: Duration = Duration::from_secs(60);

/// Formats `path` (a file, created if missing, or a block device).
pub fn init(path: &Path, opts: &InitOptions) -> Result<Header> {
    init_members(&[path.to_owned()], opts)
}

/// Formats a lockspace on one device or on a set of 3 or 5 (docs/FORMAT.md,
/// "Several devices"). Every device is checked before any is written, so a
/// refusal leaves all of them as they were.
pub fn init_members(paths: &[PathBuf], opts: &InitOptions) -> Result<Header> {
    let first = paths.first().cloned().unwrap_or_default();
    if !crate::format::MEMBER_COUNTS.contains(&(paths.len() as u32)) {
        return Err(Error::InvalidInit { path: first, what: format!("{} devices given; a lockspace has 1, 3 or 5 (a majority of them must answer)", paths.len()) });
    }
    for (i, p) in paths.iter().enumerate() {
        if let Some(twice) = paths[..i].iter().find(|q| same_file(q, p)) {
            return Err(Error::InvalidInit { path: p.clone(), what: format!("is the same file or device as {}; every member must be its own device", twice.display()) });
        }
    }
    let storages = paths.iter().map(|p| prepare(p, opts)).collect::<Result<Vec<_>>>()?;
    let header = Header {
        name: opts.name.clone(),
        uuid: crate::sys::random_bytes(),
        sector_size: storages.iter().map(|s| s.sector_size()).max().unwrap_or(512),
        max_hosts: opts.max_hosts,
        resource_slots: opts.resource_slots,
        io_timeout_ms: opts.io_timeout.as_millis() as u32,
        created_unix: unix_now(),
        member_index: 0,
        members: paths.len() as u32,
    };
    if let Some(s) = storages.iter().find(|s| s.sector_size() != header.sector_size) {
        return Err(Error::InvalidInit { path: s.path().to_owned(), what: format!("has {}-byte sectors and another member {}-byte ones; pass --sector-size {} for all", s.sector_size(), header.sector_size, header.sector_size) });
    }
    for (i, storage) in storages.iter().enumerate() {
        format_device(storage, &Header { member_index: i as u32, ..header.clone() })?;
    }
    Ok(header)
}

/// Two paths naming one file or device.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino(), a.rdev()) == (b.dev(), b.ino(), b.rdev()),
        _ => a == b,
    }
}

/// Checks one device (creating a missing file) and opens it for formatting.
fn prepare(path: &Path, opts: &InitOptions) -> Result<Storage> {
    let invalid = |what: String| Error::InvalidInit { path: path.to_owned(), what };
    if opts.name.is_empty() || opts.name.len() > NAME_LEN || !opts.name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(format!("lockspace name {:?} must be 1..={NAME_LEN} printable ASCII characters without spaces", opts.name)));
    }
    if opts.max_hosts == 0 || opts.max_hosts > MAX_HOSTS_LIMIT {
        return Err(invalid(format!("--max-hosts {} is out of range 1..={MAX_HOSTS_LIMIT}", opts.max_hosts)));
    }
    if opts.resource_slots == 0 {
        return Err(invalid("--resources must be at least 1".into()));
    }
    if let Some(size) = opts.sector_size.filter(|s| *s != 512 && *s != 4096) {
        return Err(Error::UnsupportedSectorSize { path: path.to_owned(), size });
    }
    Timeouts::new(opts.io_timeout)?;
    let layout = Layout { max_hosts: opts.max_hosts as u64, resource_slots: opts.resource_slots as u64 };
    let open_err = |source| Error::Open { path: path.to_owned(), source };
    if !path.exists() {
        let ss = opts.sector_size.unwrap_or(512) as u64;
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(open_err)?;
        file.set_len(layout.total_sectors() * ss).map_err(open_err)?;
    } else {
        // Read-only first: nothing is changed until the checks pass.
        let existing = Storage::open(path, false, opts.sector_size)?;
        let ss = existing.sector_size();
        let need = layout.total_sectors() * ss as u64;
        let is_file = std::fs::metadata(path).map_err(open_err)?.is_file();
        // What is there first: it matters more than whether a lockspace would fit.
        if !opts.force {
            refuse_to_destroy(path, existing.size_bytes().min(need))?;
        }
        if !is_file && existing.size_bytes() < need {
            return Err(Error::TooSmallForInit {
                path: path.to_owned(),
                size: existing.size_bytes(),
                need,
                max_hosts: opts.max_hosts,
                resource_slots: opts.resource_slots,
                sector_size: ss,
            });
        }
        if is_file && existing.size_bytes() < need {
            std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(need)).map_err(open_err)?;
        }
    }
    Ok(Storage::open(path, true, opts.sector_size)?.configured(INIT_DEADLINE, None, 0))
}

fn format_device(storage: &Storage, header: &Header) -> Result<()> {
    let ss = storage.sector_size() as u64;
    let layout = header.layout();
    // Torn-init safety: an unusable header first, zeros, then the real header.
    write_sector(storage, 0, &header.encode_incomplete())?;
    let chunk = (1 << 20) / ss;
    let mut sector = 1;
    while sector < layout.total_sectors() {
        let n = chunk.min(layout.total_sectors() - sector);
        storage.write(sector, &vec![0u8; (n * ss) as usize])?;
        sector += n;
    }
    write_sector(storage, 0, &header.encode())?;
    Ok(())
}

fn write_sector(storage: &Storage, sector: u64, record: &[u8; RECORD_LEN]) -> Result<()> {
    storage.write_record(sector, record)
}

/// Refuses unless the first `extent` bytes of `path` (what init would
/// overwrite) hold nothing: only zeros, or an init of ours that was
/// interrupted (redoing it destroys nothing more). Anything else is named:
/// a lockspace of ours, what libblkid or the sanlock check recognises, or
/// else the first non-zero byte.
fn refuse_to_destroy(path: &Path, extent: u64) -> Result<()> {
    let unchecked = |source| Error::Unchecked { path: path.to_owned(), source };
    let holds = |what: String| Err(Error::HoldsData { path: path.to_owned(), what });
    let file = std::fs::File::open(path).map_err(unchecked)?;
    // Another host may have just written a shared device: read (and let
    // libblkid read) what is on storage, not stale cached pages. Advice
    // only: where it fails, nothing is cached to mislead us either.
    let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    let mut first = [0u8; RECORD_LEN];
    read_up_to(&file, 0, &mut first).map_err(unchecked)?;
    match Header::decode(&first) {
        Ok(h) => return Err(Error::AlreadyFormatted { path: path.to_owned(), name: h.name }),
        Err(FormatError::IncompleteInit) => return Ok(()),
        Err(FormatError::NotFormatted | FormatError::BadMagic { .. }) => {}
        Err(e) => return holds(format!("a highlander lockspace whose header is damaged ({e})")),
    }
    if let Some(what) = probe::signature(path).map_err(unchecked)?.or_else(|| probe::sanlock(&first)) {
        return holds(what);
    }
    let mut chunk = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < extent {
        let len = chunk.len().min((extent - offset) as usize);
        let n = read_up_to(&file, offset, &mut chunk[..len]).map_err(unchecked)?;
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0) {
            return holds(format!("data that no signature probe recognises (a non-zero byte at offset {})", offset + i as u64));
        }
        if n < len {
            break;
        }
        offset += n as u64;
    }
    Ok(())
}

/// Fills `buf` from `offset` as far as the file goes; returns the bytes read.
fn read_up_to(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

