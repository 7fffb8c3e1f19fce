//! systemd's readiness protocol (sd_notify(3)): with `Type=notify`, the unit
//! becomes active (and libvirtd, ordered after it, may start) when the
//! daemon sends `READY=1`, once every lockspace is joined and the socket
//! serves; `STATUS=` lines show in `systemctl status` during a long join.
//! Outside systemd (`NOTIFY_SOCKET` unset) this does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=value` lines) to systemd.
/// Failures are logged, never fatal: a missed notification only delays
/// the unit's start until its timeout, which systemd reports.
pub fn send(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let target = target.to_string_lossy().into_owned();
    let sent = (|| {
        let addr = match target.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&target)?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at NOTIFY_SOCKET={target} ({state:?}): {e}");
    }
}
