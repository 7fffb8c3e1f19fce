//! Sector I/O on one lockspace device (a member of the lockspace's
//! storage, storage.rs): O_DIRECT, durable, deadline-bounded.
//!
//! Every read and write goes through here. Each I/O runs on a pool thread
//! (io_pool.rs) so the caller can stop waiting at the deadline: a hung I/O
//! counts as failed. The thread keeps the buffer until the kernel gives it back (a
//! timed-out I/O may still complete later), and while a timed-out *write*
//! is outstanding, further writes to the same sectors are refused, so a late
//! write can never land on top of a newer one (see docs/SAFETY.md, "What we
//! assume of storage").

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, IoOp, Result};
use crate::clock::Mono;
use crate::format::RECORD_LEN;
use crate::storage::{Fault, FaultHook};

#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

struct Inner {
    /// Index in the lockspace's members, for the fault hook.
    member: usize,
    path: PathBuf,
    file: File,
    sector_size: u32,
    size_bytes: u64,
    deadline: Duration,
    fault: Option<Arc<dyn FaultHook>>,
    /// Whose writes must stay in order: (device, inode, writer). Shared by
    /// every handle of this process with the same key, so a rejoin (a new
    /// handle) still waits for the previous incarnation's late writes.
    writer: WriterKey,
    reads: AtomicU64,
    writes: AtomicU64,
    /// I/Os on pool threads now: (id, start). One older than the deadline
    /// means the device is hung (`stuck`).
    running: Mutex<Vec<(u64, Mono)>>,
    next_io: AtomicU64,
    /// The last I/O error, while no I/O has succeeded since.
    failing: Mutex<Option<String>>,
}

/// A heap buffer aligned for O_DIRECT (4096 covers both sector sizes).
pub(crate) struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

const ALIGN: usize = 4096;

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN).expect("buffer layout");
        // SAFETY: the layout has non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len }
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to at least `len` initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(ALIGN), ALIGN).expect("buffer layout");
        // SAFETY: allocated in `zeroed` with this same layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

impl Device {
    /// Opens a lockspace file or block device for sector I/O.
    ///
    /// The sector size is the device's logical sector size for block devices
    /// (`wanted`, if given, must not be smaller); for files it is `wanted`
    /// or 512.
    pub fn open(path: &Path, writable: bool, wanted: Option<u32>) -> Result<Device> {
        // Before the open, which would fail with a bare EINVAL (O_DIRECT on a
        // directory or /dev/null) or block (a FIFO); again after it, on what
        // was opened.
        check_kind(path, &std::fs::metadata(path).map_err(|source| Error::Open { path: path.to_owned(), source })?)?;
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_DIRECT | if writable { libc::O_DSYNC } else { 0 })
            .open(path)
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        let meta = file.metadata().map_err(|source| Error::Open { path: path.to_owned(), source })?;
        check_kind(path, &meta)?;
        let (device_sector, size_bytes) = if meta.file_type().is_block_device() {
            block_device_geometry(&file).map_err(|source| Error::Open { path: path.to_owned(), source })?
        } else {
            (512, meta.len())
        };
        let sector_size = match wanted {
            Some(s) if s != 512 && s != 4096 => return Err(Error::UnsupportedSectorSize { path: path.to_owned(), size: s }),
            Some(s) if s < device_sector => return Err(Error::SectorSizeTooSmall { path: path.to_owned(), wanted: s, device: device_sector }),
            Some(s) => s,
            None => device_sector,
        };
        Ok(Device {
            inner: Arc::new(Inner {
                member: 0,
                path: path.to_owned(),
                file,
                sector_size,
                size_bytes,
                deadline: crate::timing::DEFAULT_IO_TIMEOUT,
                fault: None,
                writer: WriterKey { dev: meta.dev(), ino: meta.ino(), writer: 0 },
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                running: Mutex::new(Vec::new()),
                next_io: AtomicU64::new(0),
                failing: Mutex::new(None),
            }),
        })
    }

    /// The same storage with another per-I/O deadline and fault hook, writing
    /// as `writer` (a host id: one host's writes to a sector stay in order).
    /// The hook is told `member`, this device's index in its lockspace.
    pub fn configured(&self, member: usize, deadline: Duration, fault: Option<Arc<dyn FaultHook>>, writer: u32) -> Device {
        let file = self.inner.file.try_clone().expect("dup of an open lockspace fd");
        Device {
            inner: Arc::new(Inner {
                member,
                path: self.inner.path.clone(),
                file,
                sector_size: self.inner.sector_size,
                size_bytes: self.inner.size_bytes,
                deadline,
                fault,
                writer: WriterKey { writer, ..self.inner.writer },
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                running: Mutex::new(Vec::new()),
                next_io: AtomicU64::new(0),
                failing: Mutex::new(None),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
    pub fn sector_size(&self) -> u32 {
        self.inner.sector_size
    }
    pub fn size_bytes(&self) -> u64 {
        self.inner.size_bytes
    }
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Since when an I/O of this handle has been running past its deadline
    /// (the device hangs), if one is.
    pub fn stuck_since(&self) -> Option<Mono> {
        let oldest = self.inner.running.lock().iter().map(|&(_, start)| start).min()?;
        (Mono::now().since(oldest) >= self.inner.deadline).then_some(oldest)
    }

    /// The last I/O error of this handle, while none has succeeded since.
    pub fn failing(&self) -> Option<String> {
        self.inner.failing.lock().clone()
    }

    fn note(&self, result: &Result<Vec<u8>>) {
        *self.inner.failing.lock() = result.as_ref().err().map(ToString::to_string);
    }

    /// I/Os of this handle running now, and how long the oldest has run.
    pub fn in_flight(&self) -> (usize, Duration) {
        let running = self.inner.running.lock();
        let oldest = running.iter().map(|&(_, start)| start).min().map_or(Duration::ZERO, |s| Mono::now().since(s));
        (running.len(), oldest)
    }

    /// (reads, writes) issued through this handle.
    pub fn io_counts(&self) -> (u64, u64) {
        (self.inner.reads.load(Ordering::Relaxed), self.inner.writes.load(Ordering::Relaxed))
    }

    /// Reads `count` whole sectors starting at `sector`.
    pub fn read(&self, sector: u64, count: u64) -> Result<Vec<u8>> {
        self.start_read(sector, count).and_then(Started::wait)
    }

    /// Writes whole sectors; `data.len()` must be a multiple of the sector size.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<()> {
        self.start_write(sector, data).and_then(Started::wait).map(drop)
    }

    /// Starts a read on a pool thread; the caller waits with `Started`.
    pub(crate) fn start_read(&self, sector: u64, count: u64) -> Result<Started> {
        let len = (count * self.inner.sector_size as u64) as usize;
        let inner = self.inner.clone();
        self.start(IoOp::Read, sector, count, None, AlignedBuf::zeroed(len), move |buf, off| {
            let mut done = 0;
            while done < buf.len {
                let n = inner.file.read_at(&mut buf.as_mut_slice()[done..], off + done as u64)?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "end of lockspace device"));
                }
                done += n;
            }
            Ok(())
        })
    }

    /// Starts a write, refused while an earlier write of ours to any of its
    /// sectors is outstanding.
    pub(crate) fn start_write(&self, sector: u64, data: &[u8]) -> Result<Started> {
        let ss = self.inner.sector_size as usize;
        assert!(data.len().is_multiple_of(ss) && !data.is_empty(), "unaligned write of {} bytes", data.len());
        let count = (data.len() / ss) as u64;
        let mut buf = AlignedBuf::zeroed(data.len());
        buf.as_mut_slice().copy_from_slice(data);
        let range = (sector, sector + count);
        {
            let mut all = OUTSTANDING.lock();
            let outstanding = all.entry(self.inner.writer).or_default();
            if outstanding.iter().any(|&(a, b)| a < range.1 && range.0 < b) {
                return Err(Error::IoOutstanding { path: self.inner.path.clone(), op: IoOp::Write, sector });
            }
            outstanding.push(range);
        }
        let inner = self.inner.clone();
        self.start(IoOp::Write, sector, count, Some(range), buf, move |buf, off| inner.file.write_all_at(buf.as_slice(), off)).inspect_err(|_| self.inner.forget_outstanding(range))
    }

    /// True while a write of ours (this writer, any handle) to `sector` has
    /// outlived its deadline and may still land.
    pub fn write_in_flight(&self, sector: u64) -> bool {
        OUTSTANDING.lock().get(&self.inner.writer).is_some_and(|o| o.iter().any(|&(a, b)| a <= sector && sector < b))
    }

    /// Reads the 512-byte record at the start of one sector.
    pub fn read_record(&self, sector: u64) -> Result<[u8; RECORD_LEN]> {
        let buf = self.read(sector, 1)?;
        Ok(buf[..RECORD_LEN].try_into().unwrap())
    }

    /// Writes one record into one sector (the rest of the sector is zero).
    pub fn write_record(&self, sector: u64, record: &[u8; RECORD_LEN]) -> Result<()> {
        let mut data = vec![0u8; self.inner.sector_size as usize];
        data[..RECORD_LEN].copy_from_slice(record);
        self.write(sector, &data)
    }

    /// Runs `io` on a pool thread; `Started` waits at most the deadline.
    fn start(
        &self,
        op: IoOp,
        sector: u64,
        count: u64,
        range: Option<(u64, u64)>,
        mut buf: AlignedBuf,
        io: impl FnOnce(&mut AlignedBuf, u64) -> std::io::Result<()> + Send + 'static,
    ) -> Result<Started> {
        match op {
            IoOp::Read => self.inner.reads.fetch_add(1, Ordering::Relaxed),
            IoOp::Write => self.inner.writes.fetch_add(1, Ordering::Relaxed),
        };
        let fault = self.inner.fault.as_ref().map_or(Fault::Proceed, |h| h.on_io(self.inner.member, op, sector, count));
        if fault == Fault::Fail {
            let e = Error::IoInjected { path: self.inner.path.clone(), op, sector };
            *self.inner.failing.lock() = Some(e.to_string());
            return Err(e);
        }
        let offset = sector * self.inner.sector_size as u64;
        // Rendezvous: once the caller stops waiting, `send` fails, so the thread
        // alone knows the I/O outlived its deadline.
        let (tx, rx) = crossbeam_channel::bounded(0);
        let inner = self.inner.clone();
        let id = self.inner.next_io.fetch_add(1, Ordering::Relaxed);
        let started = Mono::now();
        self.inner.running.lock().push((id, started));
        crate::io_pool::run(move || {
            if let Fault::Delay(d) = fault {
                std::thread::sleep(d);
            }
            let result = io(&mut buf, offset).map(|()| buf);
            inner.running.lock().retain(|&(i, _)| i != id);
            if let (Err(_), Some(range)) = (tx.send(result), range) {
                // The caller stopped waiting; the write has now landed or failed.
                inner.forget_outstanding(range);
            }
        })
        .map_err(|source| {
            self.inner.running.lock().retain(|&(i, _)| i != id);
            Error::Io { path: self.inner.path.clone(), op, sector, count, source }
        })?;
        Ok(Started { rx, due: started.add(self.inner.deadline), op, sector, count, range, device: self.clone() })
    }
}

/// An I/O running on a pool thread. Dropped without a result (the caller
/// no longer waits), a write stays outstanding until it lands or fails.
pub(crate) struct Started {
    rx: crossbeam_channel::Receiver<std::io::Result<AlignedBuf>>,
    due: Mono,
    op: IoOp,
    sector: u64,
    count: u64,
    range: Option<(u64, u64)>,
    device: Device,
}

impl Started {
    pub(crate) fn receiver(&self) -> &crossbeam_channel::Receiver<std::io::Result<AlignedBuf>> {
        &self.rx
    }

    /// When the I/O has failed if it has not completed.
    pub(crate) fn due(&self) -> Mono {
        self.due
    }

    /// Waits until the I/O completes or is due.
    pub(crate) fn wait(self) -> Result<Vec<u8>> {
        let got = self.rx.recv_timeout(self.due.remaining()).ok();
        self.complete(got)
    }

    /// The I/O's result from what its thread sent (None: it was due first).
    pub(crate) fn complete(self, got: Option<std::io::Result<AlignedBuf>>) -> Result<Vec<u8>> {
        let result = self.result(got);
        self.device.note(&result);
        result
    }

    fn result(&self, got: Option<std::io::Result<AlignedBuf>>) -> Result<Vec<u8>> {
        let inner = &self.device.inner;
        let Some(got) = got else {
            return Err(Error::IoTimeout { path: inner.path.clone(), op: self.op, sector: self.sector, deadline: inner.deadline });
        };
        if let Some(range) = self.range {
            inner.forget_outstanding(range);
        }
        match got {
            Ok(buf) if self.op == IoOp::Read => Ok(buf.as_slice().to_vec()),
            Ok(_) => Ok(Vec::new()),
            Err(source) => Err(Error::Io { path: inner.path.clone(), op: self.op, sector: self.sector, count: self.count, source }),
        }
    }
}

impl Inner {
    fn forget_outstanding(&self, range: (u64, u64)) {
        let mut all = OUTSTANDING.lock();
        if let Some(outstanding) = all.get_mut(&self.writer) {
            if let Some(i) = outstanding.iter().position(|&r| r == range) {
                outstanding.swap_remove(i);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct WriterKey {
    dev: u64,
    ino: u64,
    writer: u32,
}

/// Sector ranges [start, end) of writes whose caller gave up waiting, per writer.
static OUTSTANDING: Mutex<std::collections::BTreeMap<WriterKey, Vec<(u64, u64)>>> = Mutex::new(std::collections::BTreeMap::new());

/// What a path that is neither a regular file nor a block device is, for
/// messages; None for the two that can hold a lockspace.
pub fn unusable_kind(t: &std::fs::FileType) -> Option<&'static str> {
    if t.is_file() || t.is_block_device() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("neither a file nor a block device")
    }
}

/// Refuses what cannot hold a lockspace: only block devices and regular files can.
fn check_kind(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    match unusable_kind(&meta.file_type()) {
        Some(what) => Err(Error::NotStorage { path: path.to_owned(), what }),
        None => Ok(()),
    }
}

fn block_device_geometry(file: &File) -> std::io::Result<(u32, u64)> {
    use std::os::fd::AsRawFd;
    let mut sector: libc::c_int = 0;
    let mut size: u64 = 0;
    // SAFETY: BLKSSZGET writes one int and BLKGETSIZE64 one u64 into the
    // pointed-to locals, which outlive the calls; the fd is open.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut sector) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((sector as u32, size))
}
