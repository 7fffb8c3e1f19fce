//! One request, one answer, over highlanderd's socket, with the plugin's
//! timeout, and daemon errors mapped to libvirt's error kinds.
//!
//! A daemon that cannot be reached is always an error, never "nothing to
//! do": registering a guest and acquiring its leases both need the daemon,
//! so with highlanderd down no guest starts or resumes unprotected. The
//! message says so, with the socket, the OS error and what to do.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;

use proto::client::{Client, ClientError};
use proto::protocol::{Code, Request};

use crate::config::Config;
use crate::report::{Failure, Kind};

/// Sends `req` and reads its answer; also returns the still-open connection
/// (a registration leaves it open for QEMU to inherit).
pub fn call(config: &Config, req: &Request) -> Result<(UnixStream, serde_json::Value), Failure> {
    let failed = |e: ClientError| failure(config, req.op(), e);
    let mut client = Client::connect(&config.socket).map_err(failed)?;
    client.set_timeout(config.timeout).map_err(failed)?;
    let result = client.call(req).map_err(failed)?;
    Ok((client.into_stream(), result))
}

/// What a request that did not go through means for the guest.
fn consequence(op: &str) -> &'static str {
    match op {
        "register" => "the guest was not started (it would have run without its disk leases)",
        "acquire" => "no lease was taken, so the guest was not started or resumed (nor the disk attached) without it",
        "release" => "the guest's leases were not released",
        "inquire" => "the guest's leases could not be read",
        "declare" => "the guest was not started (its network disks would have run without leases)",
        "undeclare" => "the guest's network disks stay declared on this host",
        _ => "the request was not carried out",
    }
}

fn failure(config: &Config, op: &str, e: ClientError) -> Failure {
    let socket = config.socket.display();
    let file = config.file.display();
    let then = consequence(op);
    match e {
        ClientError::Refused(w) => match w.code {
            Code::ShuttingDown => Failure::new(Kind::OperationFailed, format!("{}: {then}", w.message)),
            code => Failure::new(kind_of(code), w.message),
        },
        ClientError::Unreachable { source, .. } if source.kind() == ErrorKind::PermissionDenied => Failure::new(
            Kind::OperationFailed,
            format!(
                "highlanderd's socket {socket} cannot be used by this process ({source}): {then}. libvirtd must run as root (qemu:///system): only root may take leases"
            ),
        ),
        ClientError::Unreachable { source, .. } => Failure::new(
            Kind::OperationFailed,
            format!("highlanderd is not running or not reachable at {socket} ({source}): {then}. Start the daemon with `systemctl start highlanderd`, or check `socket` in {file}"),
        ),
        ClientError::Io { source, .. } if matches!(source.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Failure::new(
            Kind::Timeout,
            format!(
                "highlanderd at {socket} did not answer `{op}` within {} s (`timeout` in {file}): {then}. Check `systemctl status highlanderd` and its lockspaces' storage",
                config.timeout.as_secs()
            ),
        ),
        ClientError::Io { source, .. } => Failure::new(
            Kind::OperationFailed,
            format!("lost the connection to highlanderd at {socket} during `{op}` ({source}): {then}. Check `systemctl status highlanderd`"),
        ),
        ClientError::Protocol { why, .. } if why.contains("closed without an answer") => Failure::new(
            Kind::OperationFailed,
            format!("highlanderd at {socket} closed the connection without answering `{op}` (did it stop?): {then}. Check `systemctl status highlanderd`"),
        ),
        ClientError::Protocol { why, .. } => Failure::new(
            Kind::Internal,
            format!("highlanderd at {socket} gave an unexpected answer to `{op}` ({why}): {then}. Are highlanderd and this plugin from the same release?"),
        ),
    }
}

fn kind_of(code: Code) -> Kind {
    match code {
        Code::Busy | Code::VersionMismatch => Kind::Busy,
        Code::BadState | Code::BadDisk | Code::NoSuchLockspace => Kind::ConfigUnsupported,
        Code::BadRequest | Code::UnsupportedVersion | Code::UnknownOp | Code::TooLarge => Kind::Internal,
        _ => Kind::OperationFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_daemon_that_is_down_is_named_with_the_remedy() {
        let mut config = Config::defaults(Path::new("/etc/libvirt/qemu-highlander.conf"));
        config.socket = "/nonexistent/hl.sock".into();
        let req = Request::Inquire(proto::protocol::Inquire { pid: 1 });
        let f = call(&config, &req).unwrap_err();
        assert_eq!(f.kind, Kind::OperationFailed);
        assert_eq!(
            f.message,
            "highlanderd is not running or not reachable at /nonexistent/hl.sock (No such file or directory (os error 2)): the guest's leases could not be read. \
             Start the daemon with `systemctl start highlanderd`, or check `socket` in /etc/libvirt/qemu-highlander.conf"
        );
        let reg = failure(&config, "register", ClientError::Unreachable { socket: config.socket.clone(), source: std::io::Error::from_raw_os_error(libc::ECONNREFUSED) });
        assert!(reg.message.contains("(Connection refused (os error 111)): the guest was not started (it would have run without its disk leases)"), "{}", reg.message);
    }
}
