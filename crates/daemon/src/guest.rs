//! A registered guest: its record, and the process it stands for, held by
//! pidfd (so a recycled pid can never be mistaken for the guest) and
//! recognised across daemon restarts by pid + start time.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use serde::{Deserialize, Serialize};

use proto::protocol::Action;

/// One registered guest, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: tells a restarted daemon whether the pid
    /// still belongs to the same process.
    pub start_time: u64,
    pub uuid: [u8; 16],
    pub name: String,
    pub uri: String,
    /// Resolved: never `Action::Default`.
    pub action: Action,
    pub registered_unix: u64,
    pub fenced: bool,
}

impl Guest {
    pub fn holder(&self) -> engine::Holder {
        engine::Holder { uuid: self.uuid, name: self.name.clone() }
    }
    pub fn uuid_string(&self) -> String {
        proto::uuid::format(&self.uuid)
    }
}

impl std::fmt::Display for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "guest \"{}\" (uuid {}, pid {})", self.name, self.uuid_string(), self.pid)
    }
}

/// A process handle that outlives pid reuse.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    pub fn open(pid: u32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// True once the process has exited (the pidfd polls readable).
    pub fn exited(&self) -> bool {
        let mut p = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0) && fired(&p[0])
    }

    /// Waits up to `timeout` for the process to exit; true once it has.
    pub fn wait_exit(&self, timeout: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let mut p = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut p, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
                Ok(n) if n > 0 && fired(&p[0]) => return true,
                // Timed out.
                Ok(0) => return false,
                // EINTR: again, unless no time is left.
                _ if left.is_zero() => return false,
                _ => {}
            }
        }
    }

    pub fn kill(&self) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo (NULL) and no flags.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Already gone: the kill's purpose is achieved.
            return if e.raw_os_error() == Some(libc::ESRCH) { Ok(()) } else { Err(e) };
        }
        Ok(())
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether poll reported any event on `p` (as `revents != 0`: flags nix
/// does not know count too).
pub(crate) fn fired(p: &PollFd) -> bool {
    p.revents() != Some(PollFlags::empty())
}

/// The start time (clock ticks after boot) of process `pid`.
pub fn start_time(pid: u32) -> io::Result<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// The start time from the text of a /proc/PID/stat (public for fuzz/).
#[doc(hidden)]
pub fn parse_start_time(stat: &str) -> io::Result<u64> {
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/PID/stat"))?;
    // `rest` starts at field 3; starttime is field 22.
    rest.split_whitespace().nth(19).and_then(|f| f.parse().ok()).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no start time in /proc/PID/stat"))
}

/// Opens a pidfd on `pid` and reads its start time; with `expect`, only if
/// the process is the one that started then. None: no such process (any more).
pub fn track(pid: u32, expect: Option<u64>) -> Option<(Pidfd, u64)> {
    let pidfd = Pidfd::open(pid).ok()?;
    let start = start_time(pid).ok()?;
    // The pidfd was opened first: if the process is still alive now, the
    // start time read in between is that process's.
    if pidfd.exited() || expect.is_some_and(|e| e != start) {
        return None;
    }
    Some((pidfd, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfd_sees_exit_and_start_time_tells_processes_apart() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (pidfd, start) = track(child.id(), None).unwrap();
        assert!(track(child.id(), Some(start + 1)).is_none());
        assert!(!pidfd.exited());
        pidfd.kill().unwrap();
        child.wait().unwrap();
        assert!(pidfd.exited());
        assert!(track(child.id(), Some(start)).is_none());
    }
}
