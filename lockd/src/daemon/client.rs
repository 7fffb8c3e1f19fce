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
    #[error("highlanderd is not running or not reachable at {socket} ({source}); start it with `systemctl start highlanderd`")]
    Unreachable { socket: PathBuf, source: std::io::Error },
    #[error("highlanderd at {socket}: {source}")]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("highlanderd at {socket}: unexpected answer: {why}")]
    Protocol { socket: PathBuf, why: String },
    #[error("{0}")]
    Refused(WireError),
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
        let io = |source| ClientError::Io { socket: self.socket.clone(), source };
        let mut msg = line.to_vec();
        msg.push(b'\n');
        self.writer.write_all(&msg).map_err(io)?;
        self.read_response()
    }

    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut answer = Vec::new();
        let n = (&mut self.reader).take(MAX_MESSAGE as u64 * 16).read_until(b'\n', &mut answer).map_err(|source| ClientError::Io { socket: self.socket.clone(), source })?;
        if n == 0 {
            return Err(ClientError::Protocol { socket: self.socket.clone(), why: "connection closed without an answer".into() });
        }
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol { socket: self.socket.clone(), why: e.to_string() })
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
