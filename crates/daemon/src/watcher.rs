//! Guest liveness, in one poll loop: every registered guest's pidfd (it
//! polls readable the moment the process exits) and every registering
//! connection, which is *restricted*: libvirt leaks it into QEMU, so
//! whatever arrives on it is answered with a `restricted` error and never
//! executed. Its EOF is a second exit signal, checked against the pidfd.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use crate::guest::{fired, Pidfd};
use proto::protocol::{Code, Response, WireError, MAX_MESSAGE};
use crate::Daemon;

struct Tracked {
    start_time: u64,
    pidfd: Arc<Pidfd>,
}

struct Restricted {
    pid: u32,
    stream: UnixStream,
    /// Bytes of the current (unterminated) line seen so far.
    partial: usize,
}

pub struct Watcher {
    wake: EventFd,
    procs: Mutex<HashMap<u32, Tracked>>,
    incoming: Mutex<Vec<Restricted>>,
}

impl Watcher {
    pub fn new() -> std::io::Result<Watcher> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Watcher { wake, procs: Mutex::new(HashMap::new()), incoming: Mutex::new(Vec::new()) })
    }

    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    pub fn track(&self, pid: u32, start_time: u64, pidfd: Pidfd) {
        self.procs.lock().insert(pid, Tracked { start_time, pidfd: Arc::new(pidfd) });
        self.wake();
    }

    pub fn untrack(&self, pid: u32) {
        self.procs.lock().remove(&pid);
        self.wake();
    }

    /// The guest's pidfd, to signal it.
    pub fn pidfd(&self, pid: u32) -> Option<Arc<Pidfd>> {
        self.procs.lock().get(&pid).map(|t| t.pidfd.clone())
    }

    /// Takes over a connection that registered `pid`.
    pub fn restrict(&self, pid: u32, stream: UnixStream) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("guest pid {pid}: cannot make its connection non-blocking ({e}); closing it, the guest stays tracked by pidfd");
            return;
        }
        self.incoming.lock().push(Restricted { pid, stream, partial: 0 });
        self.wake();
    }
}

pub fn spawn(daemon: Arc<Daemon>) -> Result<(), super::StartError> {
    super::thread("hl-watcher".into(), move || run(&daemon))
}

fn run(daemon: &Arc<Daemon>) {
    let w = &daemon.watcher;
    let mut conns: Vec<Restricted> = Vec::new();
    loop {
        conns.append(&mut w.incoming.lock());
        let procs: Vec<(u32, u64, Arc<Pidfd>)> = w.procs.lock().iter().map(|(p, t)| (*p, t.start_time, t.pidfd.clone())).collect();
        let mut fds: Vec<PollFd> = Vec::with_capacity(1 + procs.len() + conns.len());
        let poll_in = |fd| PollFd::new(fd, PollFlags::POLLIN);
        fds.push(poll_in(w.wake.as_fd()));
        fds.extend(procs.iter().map(|(_, _, p)| poll_in(p.as_fd())));
        fds.extend(conns.iter().map(|c| poll_in(c.stream.as_fd())));
        let n = poll(&mut fds, PollTimeout::NONE);
        if daemon.stopping() {
            return;
        }
        if n.is_err() {
            continue; // EINTR
        }
        // What fired, so the borrows of the fds end before conns changes.
        let ready: Vec<bool> = fds.iter().map(fired).collect();
        drop(fds);
        if ready[0] {
            let _ = w.wake.read();
        }
        for (i, (pid, start, _)) in procs.iter().enumerate() {
            if ready[1 + i] {
                exited(daemon, *pid, *start);
            }
        }
        let base = 1 + procs.len();
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            if ready[base + i] && !serve_restricted(daemon, &mut conns[i]) {
                conns.swap_remove(i);
            }
        }
    }
}

/// Hands an exit to a worker so releases on storage do not hold up the loop.
fn exited(daemon: &Arc<Daemon>, pid: u32, start_time: u64) {
    let mut procs = daemon.watcher.procs.lock();
    if procs.get(&pid).is_some_and(|t| t.start_time == start_time) {
        procs.remove(&pid);
        drop(procs);
        let d = daemon.clone();
        if let Err(e) = std::thread::Builder::new().name("hl-exit".into()).spawn(move || d.guest_exited(pid, start_time)) {
            log::warn!("guest pid {pid} exited; cannot start a thread to release its leases ({e}): releasing them from the watcher");
            daemon.guest_exited(pid, start_time);
        }
    }
}

/// Answers whatever arrived with `restricted`; false once the connection is done.
fn serve_restricted(daemon: &Arc<Daemon>, c: &mut Restricted) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                let tracked = daemon.watcher.procs.lock().get(&c.pid).map(|t| (t.start_time, t.pidfd.exited()));
                match tracked {
                    Some((start, true)) => exited(daemon, c.pid, start),
                    Some((_, false)) => log::info!("guest pid {}: closed its highlanderd connection but still runs; tracking it by pidfd", c.pid),
                    None => {}
                }
                return false;
            }
            Ok(n) => {
                for &b in &buf[..n] {
                    c.partial += 1;
                    if b == b'\n' {
                        c.partial = 0;
                        let e = WireError::new(Code::Restricted, format!("this connection registered guest pid {} and is restricted: it accepts no commands; open a new connection", c.pid));
                        let _ = c.stream.write_all(Response::err(e).encode().as_bytes());
                    } else if c.partial > MAX_MESSAGE {
                        let e = WireError::new(Code::TooLarge, format!("request exceeds {MAX_MESSAGE} bytes; closing the connection"));
                        let _ = c.stream.write_all(Response::err(e).encode().as_bytes());
                        return false;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}
