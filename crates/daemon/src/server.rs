//! The Unix socket: who may connect (SO_PEERCRED: root and the configured
//! group) and what they may do (only root changes leases), at most
//! `max_connections` served at once, bounded request lines, one response
//! per request. What a client can repeat (bad input, refusals) is logged
//! through the rate limiter.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::log_limit::limited;
use crate::leases::Peer;
use proto::protocol::*;
use crate::{Daemon, StartError};

/// An idle connection that is not a guest's handle is closed after this.
const IDLE: Duration = Duration::from_secs(300);
/// How long a refused peer gets to send the request it will be refused.
const REFUSAL_READ: Duration = Duration::from_secs(1);

pub fn bind(cfg: &Config) -> Result<UnixListener, StartError> {
    let path = &cfg.socket;
    let io = |what| {
        let path = path.clone();
        move |source| StartError::Io { what, path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create the directory of socket"))?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(StartError::AlreadyRunning(path.clone()));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(io("cannot bind socket"))?;
    // The peer check below is the real gate; the mode keeps others from
    // even connecting.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io("cannot set the mode of socket"))?;
    if let Some((_, gid)) = &cfg.group {
        std::os::unix::fs::chown(path, Some(0), Some(*gid)).map_err(io("cannot give the configured group socket"))?;
    }
    Ok(listener)
}

pub fn spawn(daemon: Arc<Daemon>, listener: UnixListener) -> Result<(), StartError> {
    super::thread("hl-accept".into(), move || accept(&daemon, listener))
}

/// The first and the longest wait after an accept that failed.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

fn accept(daemon: &Arc<Daemon>, listener: UnixListener) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = listener.accept();
        if daemon.stopping() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = BACKOFF_MIN;
                stream
            }
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => continue,
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE) or memory, the
                // next accept fails alike until something is freed: wait
                // instead of spinning. Connections wait in the backlog.
                let hint = match e.raw_os_error() {
                    Some(libc::EMFILE) => " (this process's open-file limit: raise LimitNOFILE, or lower `max_connections`)",
                    Some(libc::ENFILE) => " (the system's open-file limit, fs.file-max)",
                    _ => "",
                };
                limited!(daemon, "accept failed", Warn, "accept on {}: {e}{hint}; retrying in {backoff:?}", daemon.cfg.socket.display());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let Some(slot) = Slot::take(daemon) else {
            refuse_over_cap(daemon, stream);
            continue;
        };
        let d = daemon.clone();
        let spawned = std::thread::Builder::new().name("hl-conn".into()).spawn(move || {
            let _slot = slot;
            if let Err(e) = serve(&d, stream) {
                log::debug!("connection closed: {e}");
            }
        });
        if let Err(e) = spawned {
            limited!(daemon, "no connection thread", Error, "cannot start a connection thread: {e}; connection closed");
        }
    }
}

/// One of the `max_connections` served at once, held while served.
struct Slot(Arc<Daemon>);

impl Slot {
    fn take(daemon: &Arc<Daemon>) -> Option<Slot> {
        let max = daemon.cfg.max_connections;
        daemon.serving.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(daemon.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection over the cap with one error line and closes it,
/// from the accept thread (no thread of its own: that is what is short).
/// The request is not read; the client reads the answer even if its write
/// fails on the closed connection.
fn refuse_over_cap(daemon: &Daemon, mut stream: UnixStream) {
    let max = daemon.cfg.max_connections;
    let who = peer_of(&stream).map_or_else(|_| "a client".to_owned(), |p| format!("uid {} pid {}", p.uid, p.pid));
    limited!(daemon, "too many connections", Warn, "refused connection from {who}: all {max} connections (`max_connections`) are in use");
    let msg = format!(
        "highlanderd serves at most {max} connections at once (`max_connections` in {}) and all are in use; retry later, or raise `max_connections`",
        daemon.cfg.source.display()
    );
    // A fresh socket's buffer takes one line; never block the accept loop.
    let _ = stream.set_nonblocking(true);
    let _ = send(&mut stream, Response::err(WireError::new(Code::TooManyConnections, msg)));
}

fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes one ucred into `cred`; `len` holds its size.
    let rc = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer { pid: cred.pid as u32, uid: cred.uid, gid: cred.gid })
}

/// Root, or a member (primary or supplementary) of the configured group.
fn allowed(cfg: &Config, peer: &Peer) -> bool {
    if peer.uid == 0 {
        return true;
    }
    let Some((_, gid)) = &cfg.group else { return false };
    if peer.gid == *gid {
        return true;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", peer.pid)).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Groups:")).is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(*gid)))
}

fn send(stream: &mut UnixStream, response: Response) -> std::io::Result<()> {
    stream.write_all(response.encode().as_bytes())
}

/// Reads one line of at most MAX_MESSAGE bytes. Ok(None) at EOF; Err(None)
/// when the line is too long.
fn read_line(reader: &mut BufReader<UnixStream>, line: &mut Vec<u8>) -> Result<Option<()>, Option<std::io::Error>> {
    line.clear();
    loop {
        let buf = reader.fill_buf().map_err(Some)?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(()));
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take >= MAX_MESSAGE {
            return Err(None);
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take + usize::from(end));
        if end {
            return Ok(Some(()));
        }
    }
}

fn serve(daemon: &Arc<Daemon>, mut stream: UnixStream) -> std::io::Result<()> {
    let peer = peer_of(&stream)?;
    let mut reader = match stream.try_clone() {
        Ok(clone) => BufReader::with_capacity(8192, clone),
        Err(e) => {
            limited!(daemon, "connection not served", Warn, "pid {} uid {}: cannot serve its connection: {e}", peer.pid, peer.uid);
            return send(&mut stream, Response::err(WireError::new(Code::Unavailable, format!("highlanderd cannot serve this connection now ({e}); retry later"))));
        }
    };
    let mut line = Vec::new();
    if !allowed(&daemon.cfg, &peer) {
        let who = format!("uid {} gid {} pid {}", peer.uid, peer.gid, peer.pid);
        let rule = daemon.cfg.group.as_ref().map(|(g, _)| format!(" and group {g}")).unwrap_or_default();
        limited!(daemon, "refused connection", Warn, "refused connection from {who}: only root{rule} may use highlanderd");
        // Take (and ignore) the request first: closing on an unread request
        // would hand the client EPIPE instead of this answer.
        stream.set_read_timeout(Some(REFUSAL_READ))?;
        let _ = read_line(&mut reader, &mut line);
        let msg = format!("permission denied: {who} is neither root nor in the group allowed by {} (`group`)", daemon.cfg.source.display());
        return send(&mut stream, Response::err(WireError::new(Code::PermissionDenied, msg)));
    }
    stream.set_read_timeout(Some(IDLE))?;
    loop {
        match read_line(&mut reader, &mut line) {
            Ok(None) => return Ok(()),
            Err(Some(e)) => return Err(e),
            Err(None) => {
                let e = WireError::new(Code::TooLarge, format!("request exceeds {MAX_MESSAGE} bytes; closing the connection"));
                limited!(daemon, "oversized request", Warn, "pid {} uid {}: oversized request refused", peer.pid, peer.uid);
                return send(&mut stream, Response::err(e));
            }
            Ok(Some(())) => {}
        }
        let request = match Request::decode(&line) {
            Ok(r) => r,
            Err(e) => {
                limited!(daemon, "bad request", Warn, "pid {} uid {}: bad request: {}", peer.pid, peer.uid, e.message);
                send(&mut stream, Response::err(e))?;
                continue;
            }
        };
        let registering = matches!(request, Request::Register(_));
        let op = request.op();
        let response = handle(daemon, peer, request);
        if let Some(e) = &response.error {
            daemon.metrics.refused(op, e.code);
        }
        let registered = registering && response.ok;
        let pid = response.result.as_ref().and_then(|r| r.get("pid")).and_then(Value::as_u64);
        send(&mut stream, response)?;
        if let (true, Some(pid)) = (registered, pid) {
            // Whatever else the client sent is left for the watcher to refuse.
            if !reader.buffer().is_empty() {
                let e = WireError::new(Code::Restricted, "this connection registered a guest and is restricted: it accepts no commands; open a new connection");
                send(&mut stream, Response::err(e))?;
            }
            daemon.watcher.restrict(pid as u32, stream);
            return Ok(());
        }
    }
}

fn handle(daemon: &Daemon, peer: Peer, request: Request) -> Response {
    let _op = daemon.ops.read();
    if daemon.stopping() {
        return Response::err(WireError::new(Code::ShuttingDown, "highlanderd is shutting down; retry when it is back"));
    }
    if request.mutates() && peer.uid != 0 {
        let op = request.op();
        let group = daemon.cfg.group.as_ref().map_or_else(String::new, |(g, _)| format!(", a member of group {g}"));
        limited!(daemon, "refused operation", Warn, "refused `{op}` from uid {} pid {}: only root may change leases", peer.uid, peer.pid);
        return Response::err(WireError::new(
            Code::PermissionDenied,
            format!("permission denied: `{op}` changes leases, which only root may do (libvirtd runs as root); uid {}{group} may use only the read-only operations ({})", peer.uid, READ_ONLY_OPS.join(", ")),
        ));
    }
    let result = match request {
        Request::Register(r) => daemon.register(peer, r).map(to_value),
        Request::Acquire(r) => daemon.acquire(r).map(to_value),
        Request::Release(r) => daemon.release(r).map(to_value),
        Request::Inquire(r) => Ok(to_value(daemon.inquire(r))),
        Request::Status => Ok(to_value(daemon.status())),
        Request::Who(r) => daemon.who(r).map(to_value),
        Request::Metrics => Ok(Value::String(daemon.metrics_text())),
        Request::Declare(r) => daemon.declare(r).map(to_value),
        Request::Undeclare(r) => daemon.undeclare(r).map(to_value),
    };
    match result {
        Ok(v) => Response::ok(v),
        Err(e) => Response::err(e),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("results serialise")
}
