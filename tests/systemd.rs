//! highlanderd under systemd's `Type=notify` (sd_notify): the readiness
//! message reaches a real notification socket only once the daemon serves,
//! after a STATUS line naming the lockspace being joined; STOPPING=1 at a
//! stop. Both address forms systemd uses: a path and an abstract name.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use proto::protocol::{Request, Status};
use testkit::daemon_harness::{init_lockspace, scratch, Host};

fn messages_until_ready(sock: &UnixDatagram, host: &Host) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("no READY=1 from highlanderd ({e}); got {seen:?}; log:\n{}", host.log_text()));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let ready = msg.lines().any(|l| l == "READY=1");
        if ready {
            // Ready means serving: the socket answers at once.
            let s: Status = host.try_call(&Request::Status).expect("the daemon must answer once it said READY=1");
            assert!(msg.contains(&format!("STATUS=serving as host {} in 1 lockspace(s)", s.host_id)), "{msg}");
        }
        seen.push(msg);
        if ready {
            return seen;
        }
    }
}

fn check(dir: &std::path::Path, sock: UnixDatagram, notify_socket: String) {
    let ls = dir.join("ls");
    init_lockspace(&ls, 200, 8);
    let mut host = Host::auto(dir, "host", &ls, "");
    host.env.push(("NOTIFY_SOCKET".into(), notify_socket));
    host.launch();
    let seen = messages_until_ready(&sock, &host);
    host.wait_serving();
    assert!(seen[0].starts_with(&format!("STATUS=joining lockspace \"default\" ({}) as host ", ls.display())), "{seen:?}");
    host.terminate();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("STOPPING=1 at a stop");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn ready_is_sent_once_serving_to_a_path_socket() {
    let dir = scratch("notify-path");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    check(&dir, sock, path.display().to_string());
}

#[test]
fn ready_is_sent_once_serving_to_an_abstract_socket() {
    let dir = scratch("notify-abstract");
    let name = format!("highlander-test-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    check(&dir, sock, format!("@{name}"));
}
