//! One request, one answer, over highlanderd's socket, with the plugin's
//! timeout, and daemon errors mapped to libvirt's error kinds.

use std::os::unix::net::UnixStream;

use lockd::daemon::client::{Client, ClientError};
use lockd::daemon::protocol::{Code, Request};

use crate::config::Config;
use crate::report::{Failure, Kind};

/// Sends `req` and reads its answer; also returns the still-open connection
/// (a registration leaves it open for QEMU to inherit).
pub fn call(config: &Config, req: &Request) -> Result<(UnixStream, serde_json::Value), Failure> {
    let failed = |e: ClientError| match e {
        ClientError::Refused(w) => Failure::new(kind_of(w.code), w.message),
        ClientError::Io { source, .. } if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Failure::new(
            Kind::Timeout,
            format!("highlanderd at {} did not answer {} within {:?} (timeout in qemu-highlander.conf)", config.socket.display(), req.op(), config.timeout),
        ),
        other => Failure::new(Kind::OperationFailed, other.to_string()),
    };
    let mut client = Client::connect(&config.socket).map_err(failed)?;
    client.set_timeout(config.timeout).map_err(failed)?;
    let result = client.call(req).map_err(failed)?;
    Ok((client.into_stream(), result))
}

fn kind_of(code: Code) -> Kind {
    match code {
        Code::Busy | Code::VersionMismatch => Kind::Busy,
        Code::BadState | Code::BadDisk | Code::NoSuchLockspace => Kind::ConfigUnsupported,
        Code::BadRequest | Code::UnsupportedVersion | Code::UnknownOp | Code::TooLarge => Kind::Internal,
        _ => Kind::OperationFailed,
    }
}
