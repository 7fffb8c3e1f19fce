//! `init`: formatting a new lockspace (docs/FORMAT.md, "Header").

use std::path::Path;
use std::time::Duration;

use crate::clock::unix_now;
use crate::delta_lease;
use crate::error::{Error, FormatError, Result};
use crate::format::{Header, Layout, MAX_HOSTS_LIMIT, NAME_LEN};
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
    if !path.exists() {
        let ss = opts.sector_size.unwrap_or(512) as u64;
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|source| Error::Open { path: path.to_owned(), source })?;
        file.set_len(layout.total_sectors() * ss).map_err(|source| Error::Open { path: path.to_owned(), source })?;
    }
    let storage = Storage::open(path, true, opts.sector_size)?.configured(INIT_DEADLINE, None, 0);
    let ss = storage.sector_size() as u64;
    let need = layout.total_sectors() * ss;
    if storage.size_bytes() < need {
        let meta = std::fs::metadata(path).map_err(|source| Error::Open { path: path.to_owned(), source })?;
        if !meta.is_file() {
            return Err(Error::Truncated { path: path.to_owned(), size: storage.size_bytes(), need });
        }
    }
    if !opts.force {
        let first = storage.read(0, 1)?;
        match Header::decode(&first) {
            Ok(h) => return Err(Error::AlreadyFormatted { path: path.to_owned(), name: h.name }),
            Err(FormatError::NotFormatted) | Err(FormatError::IncompleteInit) => {}
            Err(_) => return Err(invalid("holds data that is not a highlander lockspace; refusing to overwrite it (pass --force if you are sure)".into())),
        }
    }
    let header = Header {
        name: opts.name.clone(),
        uuid: delta_lease::random_bytes(),
        sector_size: ss as u32,
        max_hosts: opts.max_hosts,
        resource_slots: opts.resource_slots,
        io_timeout_ms: opts.io_timeout.as_millis() as u32,
        created_unix: unix_now(),
    };
    // Torn-init safety: an unusable header first, zeros, then the real header.
    write_sector(&storage, 0, &header.encode_incomplete())?;
    let chunk = (1 << 20) / ss;
    let mut sector = 1;
    while sector < layout.total_sectors() {
        let n = chunk.min(layout.total_sectors() - sector);
        storage.write(sector, &vec![0u8; (n * ss) as usize])?;
        sector += n;
    }
    write_sector(&storage, 0, &header.encode())?;
    Ok(header)
}

fn write_sector(storage: &Storage, sector: u64, record: &[u8; crate::format::RECORD_LEN]) -> Result<()> {
    storage.write_record(sector, record)
}

