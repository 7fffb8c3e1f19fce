//! The optional watchdog: petted while no fencing has failed or stuck; it
//! resets the host if the daemon dies together with its sentinel, or the
//! whole host freezes, with leases held.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;

use std::sync::Arc;

use crate::Daemon;

static WATCHDOG: Mutex<Option<File>> = Mutex::new(None);
/// The armed watchdog's device, if it resets the host in time when no
/// longer petted from the fence deadline on (`Timeouts::watchdog_in_time`).
static WATCHDOG_IN_TIME: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;
const WDIOC_GETTIMEOUT: libc::c_ulong = 0x8004_5707;

/// Arms the configured watchdog, if any, and starts petting it.
pub(super) fn spawn(daemon: Arc<Daemon>) -> Result<(), crate::StartError> {
    if let Some(dev) = daemon.cfg.watchdog.clone() {
        match open_watchdog(&daemon, &dev) {
            Ok(interval) => crate::thread("hl-watchdog".into(), move || pet(&daemon, interval))?,
            Err(e) => log::warn!("watchdog {}: {e}; running without it", dev.display()),
        }
    }
    Ok(())
}

/// The watchdog device that escalation stops petting, if it fires in time.
pub fn watchdog_in_time() -> Option<std::path::PathBuf> {
    WATCHDOG_IN_TIME.lock().clone()
}

/// Opens and arms the watchdog; returns the pet interval.
fn open_watchdog(daemon: &Daemon, dev: &std::path::Path) -> std::io::Result<Duration> {
    let file = std::fs::OpenOptions::new().write(true).open(dev)?;
    // Fire within one io_timeout of the last pet: pets stop at the latest at
    // fence_deadline (4.25T) when a fence failed or is stuck, peers take
    // over at host_dead (5.5T); `Timeouts::check` proves it in time.
    let t = daemon.spaces.iter().map(|s| s.ls().timeouts().io_timeout).min().expect("at least one lockspace");
    let mut secs: libc::c_int = (t.as_secs() as libc::c_int).max(1);
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one c_int through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT, &mut secs) } < 0 {
        log::warn!("watchdog {}: cannot set its timeout to {} s: {}; using the device's own", dev.display(), t.as_secs().max(1), std::io::Error::last_os_error());
    }
    // SAFETY: WDIOC_GETTIMEOUT writes one c_int through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_GETTIMEOUT, &mut secs) } < 0 {
        log::warn!("watchdog {}: cannot read its timeout: {}", dev.display(), std::io::Error::last_os_error());
    }
    log::info!("watchdog {} armed: timeout {secs} s", dev.display());
    let fire = Duration::from_secs(secs.max(0) as u64);
    if daemon.spaces.iter().all(|s| s.ls().timeouts().watchdog_in_time(fire)) {
        *WATCHDOG_IN_TIME.lock() = Some(dev.to_owned());
    } else {
        log::warn!(
            "watchdog {}: its timeout of {secs} s is too long to reset this host before other hosts may take over once a fence is stuck (io_timeout {t:?}); a stuck fence runs self_fence = {} instead",
            dev.display(),
            daemon.cfg.self_fence
        );
    }
    *WATCHDOG.lock() = Some(file);
    Ok((Duration::from_secs(secs as u64) / 4).min(t / 2))
}

fn pet(daemon: &Daemon, interval: Duration) {
    let mut warned = false;
    while !daemon.stopping() {
        if daemon.fence_failed.load(Ordering::SeqCst) {
            if !warned {
                log::error!("fencing failed: no longer petting the watchdog; the host will reset");
                warned = true;
            }
        } else if let Some(f) = WATCHDOG.lock().as_mut() {
            if let Err(e) = f.write_all(b"\0") {
                log::error!("watchdog: pet failed: {e}");
            }
        }
        std::thread::sleep(interval);
    }
}

/// At exit: disarm the watchdog (magic close) unless leases stay held, in
/// which case it stays armed and resets the host unless highlanderd is back
/// in time.
pub fn close_watchdog(leases_held: bool) {
    let Some(mut f) = WATCHDOG.lock().take() else { return };
    if leases_held {
        log::warn!("watchdog stays armed: leases are held; start highlanderd again before it fires");
    } else if let Err(e) = f.write_all(b"V") {
        log::warn!("watchdog: magic close failed: {e}; it may reset the host");
    }
}
