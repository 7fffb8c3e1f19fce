//! A blocking client of highlanderd's socket, for the CLI, tests, the
//! benchmark and the libvirt plugin. Fork-safe: no threads, no locks, so
//! the plugin can use it in libvirt's child between fork and exec.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::protocol::{Request, Response, WireError, MAX_MESSAGE};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed: no daemon, or (`source` PermissionDenied) this
    /// process may not use the socket.
    #[error("{}", unreachable(.socket, .source))]
    Unreachable { socket: PathBuf, source: std::io::Error },
    #[error("highlanderd at {socket}: {source}")]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("highlanderd at {socket}: unexpected answer: {why}")]
    Protocol { socket: PathBuf, why: String },
    #[error("{0}")]
    Refused(WireError),
}

fn unreachable(socket: &Path, source: &std::io::Error) -> String {
    if source.kind() != std::io::ErrorKind::PermissionDenied {
        return format!("highlanderd is not running or not reachable at {} ({source}); start it with `systemctl start highlanderd`", socket.display());
    }
    // highlanderd makes its socket root's, mode 0660, with the group set by
    // `group` in its configuration, and admits only root and that group.
    // Which configuration file it read, this process cannot know.
    const CONF: &str = "the daemon's configuration (`group`)";
    let gid = std::fs::metadata(socket).map(|m| std::os::unix::fs::MetadataExt::gid(&m));
    let socket = socket.display();
    match gid {
        Ok(0) => format!(
            "permission denied on {socket} ({source}): highlanderd admits only root (no group is set in {CONF}); run as root (e.g. with sudo), or set `group` there, restart highlanderd and join that group"
        ),
        Ok(gid) => {
            let group = group_name(gid);
            format!(
                "permission denied on {socket} ({source}): highlanderd admits only root and group {group} (the socket's group, set in {CONF}); run as root (e.g. with sudo) or as a member of {group} (log in again after joining it)"
            )
        }
        Err(_) => format!("permission denied on {socket} ({source}): highlanderd admits only root and the group set in {CONF}; run as root (e.g. with sudo) or as a member of that group"),
    }
}

/// A group's name from /etc/group, else its number.
fn group_name(gid: u32) -> String {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse() == Ok(gid)).then(|| format!("\"{name}\""))
        })
        .unwrap_or_else(|| format!("gid {gid}"))
}

pub struct Client {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable { socket: socket.to_owned(), source })?;
        let writer = stream.try_clone().map_err(|source| ClientError::Io { socket: socket.to_owned(), source })?;
        Ok(Client { socket: socket.to_owned(), reader: BufReader::new(stream), writer })
    }

    /// Bounds every later read and write of this connection.
    pub fn set_timeout(&self, timeout: std::time::Duration) -> Result<(), ClientError> {
        let io = |source| ClientError::Io { socket: self.socket.clone(), source };
        self.writer.set_read_timeout(Some(timeout)).map_err(io)?;
        self.writer.set_write_timeout(Some(timeout)).map_err(io)
    }

    /// The connection itself (a registration's handle, kept open for the guest).
    pub fn into_stream(self) -> UnixStream {
        self.writer
    }

    /// Sends one raw line (tests send malformed ones) and reads the answer.
    pub fn call_raw(&mut self, line: &[u8]) -> Result<Response, ClientError> {
        let mut msg = line.to_vec();
        msg.push(b'\n');
        if let Err(e) = self.writer.write_all(&msg) {
            // A daemon that refuses a connection (over `max_connections`)
            // answers and closes without reading: its answer is still there.
            if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
                if let Ok(answer) = self.read_response() {
                    return Ok(answer);
                }
            }
            return Err(ClientError::Io { socket: self.socket.clone(), source: e });
        }
        self.read_response()
    }

    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut answer = Vec::new();
        let n = (&mut self.reader).take(MAX_MESSAGE as u64 * 16).read_until(b'\n', &mut answer).map_err(|source| ClientError::Io { socket: self.socket.clone(), source })?;
        if n == 0 {
            return Err(ClientError::Protocol { socket: self.socket.clone(), why: "connection closed without an answer".into() });
        }
        Response::decode(&answer).map_err(|e| ClientError::Protocol { socket: self.socket.clone(), why: e.to_string() })
    }

    /// Sends a request; a typed error becomes `ClientError::Refused`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let response = self.call_raw(request.encode().as_bytes())?;
        match response {
            Response { ok: true, result: Some(v), .. } => serde_json::from_value(v).map_err(|e| ClientError::Protocol { socket: self.socket.clone(), why: e.to_string() }),
            Response { error: Some(e), .. } => Err(ClientError::Refused(e)),
            other => Err(ClientError::Protocol { socket: self.socket.clone(), why: format!("{other:?}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_is_not_a_missing_daemon_and_says_who_may_connect() {
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let dir = std::env::temp_dir().join(format!("hl-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        std::fs::write(&socket, b"").unwrap();
        let msg = |source| ClientError::Unreachable { socket: socket.clone(), source }.to_string();

        let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&socket).unwrap());
        let m = msg(std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(m.starts_with(&format!("permission denied on {} (", socket.display())) && m.contains("run as root"), "{m}");
        // The daemon may run with any configuration file: name none.
        assert!(m.contains("the daemon's configuration (`group`)") && !m.contains("/etc/highlander"), "{m}");
        if gid == 0 {
            assert!(m.contains("admits only root (no group is set"), "{m}");
        } else {
            assert!(m.contains(&format!("and group {}", group_name(gid))), "{m}");
        }
        // A socket given a group (as root: `group = ...`) names it.
        if std::os::unix::fs::chown(&socket, None, Some(100)).is_ok() {
            let m = msg(std::io::Error::from_raw_os_error(libc::EACCES));
            assert!(m.contains(&format!("admits only root and group {} (the socket's group", group_name(100))), "{m}");
        }
        // The socket's group cannot be read: the rule, without a name.
        std::fs::remove_file(&socket).unwrap();
        let m = msg(denied);
        assert!(m.contains("admits only root and the group set in the daemon's configuration (`group`)"), "{m}");
        // Anything else: no daemon.
        let m = msg(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(m.starts_with("highlanderd is not running or not reachable at"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(group_name(u32::MAX - 7), format!("gid {}", u32::MAX - 7));
    }
}
