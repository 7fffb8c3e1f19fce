//! highlanderd end to end: real daemons as hosts on one lockspace file, real
//! processes as guests, the real socket protocol and CLI.
//! Binaries come from `cargo build --workspace --all-targets`.

use testkit::daemon_harness as harness;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use engine::clock::Mono;
use proto::client::ClientError;
use engine::timing::Timeouts;
use proto::protocol::{Acquire, Action, Code, Health, Inquire, LeasesResult, Register, Release, Request, Resource, Status, WhoResult};
use engine::Mode;

fn refused(r: Result<LeasesResult, ClientError>) -> proto::protocol::WireError {
    match r {
        Err(ClientError::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn disk(dir: &std::path::Path, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, b"disk").unwrap();
    p.display().to_string()
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(bin("highlander")).args(args).output().unwrap()
}

/// Two daemons (hosts 1 and 2) on one lockspace, with guest "vm-a"
/// registered on host 1 and "vm-b" on host 2.
struct TwoHosts {
    dir: std::path::PathBuf,
    a: Host,
    b: Host,
    ga: GuestProc,
    gb: GuestProc,
    /// The registering connections, kept open as libvirt leaves them.
    _handles: (proto::client::Client, proto::client::Client),
}

/// A fresh directory holding a fresh lockspace file `ls`.
fn fresh_lockspace(name: &str, io_ms: u64, resources: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(name);
    let ls = dir.join("ls");
    init_lockspace(&ls, io_ms, resources);
    (dir, ls)
}

/// Daemons for hosts 1 and 2 on a fresh lockspace in a fresh directory.
fn two_daemons(name: &str, io_ms: u64) -> (std::path::PathBuf, Host, Host) {
    let (dir, ls) = fresh_lockspace(name, io_ms, 64);
    let a = Host::start(&dir, &ls, 1, "");
    let b = Host::start(&dir, &ls, 2, "");
    (dir, a, b)
}

fn two_hosts(name: &str, io_ms: u64) -> TwoHosts {
    let (dir, a, b) = two_daemons(name, io_ms);
    let (ga, gb) = (GuestProc::spawn(), GuestProc::spawn());
    let _handles = (a.register(ga.pid(), "vm-a", Action::Default), b.register(gb.pid(), "vm-b", Action::Default));
    TwoHosts { dir, a, b, ga, gb, _handles }
}

#[test]
fn register_acquire_inquire_release_status_who() {
    let (dir, ls) = fresh_lockspace("basic", 300, 64);
    let a = Host::start(&dir, &ls, 1, "");
    let (g1, g2) = (GuestProc::spawn(), GuestProc::spawn());
    let d1 = disk(&dir, "vm1.img");
    let d2 = disk(&dir, "shared.img");
    let _h1 = a.register(g1.pid(), "vm1", Action::Default);
    let _h2 = a.register(g2.pid(), "vm2", Action::Pause);

    let r = a.acquire(g1.pid(), &[(&d1, Mode::Exclusive), (&d2, Mode::Shared)], None).unwrap();
    assert_eq!(r.leases.len(), 2);
    let state = r.state.clone().unwrap();
    assert!(state.starts_with("hl1:"), "{state}");
    // Idempotent per (pid, disk).
    assert_eq!(a.acquire(g1.pid(), &[(&d1, Mode::Exclusive)], None).unwrap().leases[0].lver, r.leases[0].lver);
    // Another guest on the same host: refused locally, naming the holder.
    let e = refused(a.acquire(g2.pid(), &[(&d1, Mode::Exclusive)], None));
    assert_eq!(e.code, Code::Busy);
    for want in ["vm1", "host-1", &identity::of_path(d1.as_ref()).unwrap(), &uuid_for("vm1"), "since"] {
        assert!(e.message.contains(want), "{want:?} missing from {}", e.message);
    }
    // All-or-nothing: the shared disk in the same request is not taken.
    let e = refused(a.acquire(g2.pid(), &[(&d2, Mode::Shared), (&d1, Mode::Shared)], None));
    assert_eq!(e.code, Code::Busy);
    assert!(a.status().leases.iter().all(|l| l.holders.iter().all(|h| h.pid != g2.pid())));
    // Shared with a shared holder is fine.
    a.acquire(g2.pid(), &[(&d2, Mode::Shared)], None).unwrap();

    let inq: LeasesResult = a.try_call(&Request::Inquire(Inquire { pid: g1.pid() })).unwrap();
    assert_eq!(inq.state.as_deref(), Some(state.as_str()));

    let st = a.status();
    assert_eq!((st.host_id, st.host_name.as_str()), (1, "host-1"));
    assert_eq!(st.lockspaces[0].health, Health::Healthy);
    assert_eq!(st.guests.len(), 2);
    let shared = st.leases.iter().find(|l| l.lease.mode == Mode::Shared).unwrap();
    assert_eq!(shared.holders.len(), 2);

    let out = cli(&["status", "--socket", a.socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("\"vm1\"") && text.contains(&d1) && text.contains("host-1"), "{text}");
    let out = cli(&["status", "--json", "--socket", a.socket.to_str().unwrap()]);
    let parsed: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed.guests.len(), 2);

    let out = cli(&["who", &d1, "--json", "--socket", a.socket.to_str().unwrap()]);
    let who: WhoResult = serde_json::from_slice(&out.stdout).unwrap();
    assert!(who.held && who.owner_id == 1 && who.guest == "vm1" && who.local_holders[0].pid == g1.pid(), "{who:?}");
    let out = cli(&["who", &d1, "--lockspace", ls.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("held exclusively by guest \"vm1\"") && text.contains("host 1 \"host-1\""), "{text}");

    // Release one disk, then everything; the state names what was held.
    let r: LeasesResult = a.try_call(&Request::Release(Release { pid: g1.pid(), resources: Some(vec![Resource::path(&*d2, Mode::Shared)]) })).unwrap();
    assert_eq!(r.leases.len(), 1);
    // The other shared holder keeps it.
    assert_eq!(a.status().leases.iter().find(|l| l.lease.mode == Mode::Shared).unwrap().holders.len(), 1);
    let r = a.release_all(g1.pid());
    assert_eq!(r.leases.len(), 1);
    assert!(r.state.unwrap().starts_with("hl1:"));
    // Twice, never-acquired, unknown pid, vanished path: quiet successes.
    assert!(a.release_all(g1.pid()).leases.is_empty());
    assert!(a.release_all(999_999).state.is_none());
    let gone: LeasesResult = a.try_call(&Request::Release(Release { pid: g2.pid(), resources: Some(vec![Resource::path("/nonexistent/x.img", Mode::Exclusive)]) })).unwrap();
    assert!(gone.leases.is_empty());
    // Now vm2 can take d1.
    a.acquire(g2.pid(), &[(&d1, Mode::Exclusive)], None).unwrap();
    // Unregistered pid, missing disk: typed errors.
    assert_eq!(refused(a.acquire(999_999, &[(&d1, Mode::Exclusive)], None)).code, Code::NotRegistered);
    assert_eq!(refused(a.acquire(g1.pid(), &[("/nonexistent/disk.img", Mode::Exclusive)], None)).code, Code::BadDisk);
    assert!(a.log_text().contains("lease acquired: guest \"vm1\""));
    assert!(a.log_text().contains("lease refused: guest \"vm2\""));
}

#[test]
fn registering_connection_is_restricted_and_register_can_acquire() {
    let (dir, ls) = fresh_lockspace("restrict", 300, 64);
    let a = Host::start(&dir, &ls, 1, "");
    let g = GuestProc::spawn();
    let d = disk(&dir, "vm.img");
    let mut c = a.client();
    let mut req = register(g.pid(), "vm", Action::Poweroff);
    req.resources = vec![Resource::path(&*d, Mode::Exclusive)];
    let r: LeasesResult = c.call(&Request::Register(req)).unwrap();
    assert_eq!(r.leases.len(), 1);
    // Any command on the guest's handle is refused, and nothing happens.
    for req in [Request::Status, Request::Release(Release { pid: g.pid(), resources: None })] {
        let resp = c.call_raw(req.encode().as_bytes()).unwrap();
        assert_eq!(resp.error.map(|e| e.code), Some(Code::Restricted));
    }
    assert_eq!(a.status().leases.len(), 1);
    // Garbage too.
    assert_eq!(c.call_raw(b"garbage").unwrap().error.unwrap().code, Code::Restricted);
    // Closing the handle while the guest runs keeps its leases.
    drop(c);
    wait_for("the daemon to notice the closed handle", Duration::from_secs(2), || a.log_text().contains("closed its highlanderd connection but still runs").then_some(()));
    assert_eq!(a.status().leases.len(), 1);
}

#[test]
fn peers_outside_root_and_group_are_refused() {
    let (dir, ls) = fresh_lockspace("peercred", 300, 16);
    let a = Host::start(&dir, &ls, 1, "");
    // Let everyone reach the socket: the SO_PEERCRED check must still refuse.
    std::fs::set_permissions(&a.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(bin("highlander")).args(["status", "--socket", a.socket.to_str().unwrap()]).uid(65534).gid(65534).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied") && err.contains("uid 65534"), "{err}");
    // The refusal is logged around the answer; wait for the line, not the order.
    wait_for("the refusal in the daemon log", Duration::from_secs(2), || a.log_text().contains("refused connection from uid 65534").then_some(()));
    // Root still gets through, and the daemon is down → exit code 3.
    assert!(cli(&["status", "--socket", a.socket.to_str().unwrap()]).status.success());
    let out = cli(&["status", "--socket", dir.join("nope.sock").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn guest_exit_releases_and_another_host_takes_over() {
    let TwoHosts { dir, a, b, mut ga, gb, _handles } = two_hosts("exit", 300);
    let d = disk(&dir, "vm.img");
    a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let e = refused(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None));
    assert_eq!(e.code, Code::Busy);
    assert!(e.message.contains("vm-a") && e.message.contains("host 1 \"host-1\""), "{}", e.message);

    ga.0.kill().unwrap();
    let died = Instant::now();
    ga.0.wait().unwrap();
    wait_for("host 1 to release after the guest exit", Duration::from_secs(2), || a.status().leases.is_empty().then_some(()));
    let latency = died.elapsed();
    assert!(latency < Duration::from_millis(500), "release took {latency:?}");
    assert!(a.status().guests.is_empty());
    wait_for("host 2 to acquire", Duration::from_secs(5), || b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None).ok());
}

#[test]
fn state_hands_over_and_detects_a_third_party() {
    let (dir, a, b) = two_daemons("handover", 300);
    let d = disk(&dir, "vm.img");
    let (src, dst, other) = (GuestProc::spawn(), GuestProc::spawn(), GuestProc::spawn());
    let _h = a.register(src.pid(), "vm", Action::Default);
    let _h = b.register(dst.pid(), "vm", Action::Default);
    let _h = a.register(other.pid(), "intruder", Action::Default);
    a.acquire(src.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    // Migration: source pauses (release → state), destination resumes with it.
    let state = a.release_all(src.pid()).state.unwrap();
    b.acquire(dst.pid(), &[(&d, Mode::Exclusive)], Some(state.clone())).unwrap();
    // And back, but a third party holds the lease in between: refused.
    let back = b.release_all(dst.pid()).state.unwrap();
    a.acquire(other.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    a.release_all(other.pid());
    let e = refused(a.acquire(src.pid(), &[(&d, Mode::Exclusive)], Some(back)));
    assert_eq!(e.code, Code::VersionMismatch, "{}", e.message);
    assert!(e.message.contains("changed hands since this guest released it") && e.message.contains("last taken by guest \"intruder\" (uuid ") && e.message.contains(") on host 1 \"host-1\""), "{}", e.message);
    // A stale state from before is refused the same way; foreign/garbled states are typed errors.
    assert_eq!(refused(a.acquire(src.pid(), &[(&d, Mode::Exclusive)], Some(state))).code, Code::VersionMismatch);
    let e = refused(a.acquire(src.pid(), &[(&d, Mode::Exclusive)], Some("__LIBVIRT__DISKS__:abc:/x:0:3".into())));
    assert_eq!(e.code, Code::BadState);
    assert!(e.message.contains("not written by highlander"), "{}", e.message);
    assert_eq!(refused(a.acquire(src.pid(), &[(&d, Mode::Exclusive)], Some("hl1:junk".into()))).code, Code::BadState);
}

#[test]
fn restart_with_guests_running_keeps_every_lease() {
    let TwoHosts { dir, mut a, b, ga, gb, _handles } = two_hosts("restart", 500);
    let d = disk(&dir, "vm.img");
    let before = a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let generation = a.status().lockspaces[0].generation;

    a.terminate();
    a.spawn();
    let st = a.status();
    assert!(st.lockspaces[0].resumed, "{st:?}");
    assert_eq!(st.lockspaces[0].generation, generation);
    assert_eq!(st.guests.len(), 1);
    assert_eq!(st.leases.len(), 1);
    assert_eq!(st.leases[0].lease.lver, before.leases[0].lver);
    assert_eq!(st.leases[0].holders[0].pid, ga.pid());
    assert_eq!(refused(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None)).code, Code::Busy);
    // Still tracked by pidfd after the restart: its exit releases.
    drop(ga);
    wait_for("host 2 to acquire after the re-adopted guest exits", Duration::from_secs(3), || b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None).ok());
    // With no leases held, SIGTERM leaves cleanly.
    drop(_handles);
    a.terminate();
    assert!(a.log_text().contains("left cleanly"));
}

#[test]
fn renewal_failure_fences_the_guest_before_its_lease_expires() {
    let io = Duration::from_millis(300);
    let (dir, a, b) = two_daemons("fence", io.as_millis() as u64);
    let d = disk(&dir, "vm.img");
    let mut ga = GuestProc::spawn();
    let gb = GuestProc::spawn();
    let _ha = a.register(ga.pid(), "victim", Action::Poweroff);
    let _hb = b.register(gb.pid(), "taker", Action::Default);
    a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();

    std::fs::write(&a.fault, "fail").unwrap();
    // A's last successful renewal started before now: its leases are void
    // by `lease_expiry` from now at the latest.
    let failed = Mono::now();
    let valid_until_bound = failed.add(Timeouts::new(io).unwrap().lease_expiry);
    let mut died: Option<Mono> = None;
    let taken = wait_for("host 2 to take the disk over", Duration::from_secs(10), || {
        if died.is_none() {
            if let Some(status) = ga.0.try_wait().unwrap() {
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
                died = Some(Mono::now());
            }
        }
        match b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None) {
            Ok(_) => Some(Mono::now()),
            Err(ClientError::Refused(e)) if e.code == Code::Busy => None,
            Err(e) => panic!("unexpected: {e}"),
        }
    });
    let died = died.expect("the guest was killed before host 2 could take its disk");
    assert!(died < valid_until_bound, "guest killed {:?} after its lease expired", died.since(valid_until_bound));
    assert!(taken > died);
    assert!(a.log_text().contains("fenced: guest \"victim\""), "{}", a.log_text());
    let st = a.status();
    assert_ne!(st.lockspaces[0].health, Health::Healthy);
    // Storage comes back: A rejoins with a new generation.
    std::fs::remove_file(&a.fault).unwrap();
    let generation = st.lockspaces[0].generation;
    wait_for("host 1 to rejoin", Duration::from_secs(10), || {
        let s = a.status();
        (s.lockspaces[0].health == Health::Healthy && s.lockspaces[0].generation > generation).then_some(())
    });
}

#[test]
fn malformed_oversized_and_unknown_requests_get_typed_errors() {
    let (dir, ls) = fresh_lockspace("malformed", 300, 16);
    let a = Host::start(&dir, &ls, 1, "");
    let mut c = a.client();
    let code = |c: &mut proto::client::Client, line: &[u8]| c.call_raw(line).unwrap().error.unwrap().code;
    assert_eq!(code(&mut c, b"{not json"), Code::BadRequest);
    assert_eq!(code(&mut c, br#"{"v":1,"op":"frobnicate"}"#), Code::UnknownOp);
    assert_eq!(code(&mut c, br#"{"v":9,"op":"status"}"#), Code::UnsupportedVersion);
    assert_eq!(code(&mut c, br#"{"v":1,"op":"acquire","pid":1}"#), Code::BadRequest);
    assert_eq!(code(&mut c, br#"{"v":1,"op":"register","uuid":"x","name":"n"}"#), Code::BadRequest);
    assert_eq!(code(&mut c, br#"{"v":1,"op":"acquire","pid":1,"resources":[],"bogus":true}"#), Code::BadRequest);
    // The same connection still serves.
    let st: Status = c.call(&Request::Status).unwrap();
    assert_eq!(st.host_id, 1);
    // Oversized: a typed error, then the connection is closed.
    let mut raw = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    let big = vec![b'x'; 100 * 1024];
    let _ = raw.write_all(&big);
    let mut line = String::new();
    BufReader::new(&raw).read_line(&mut line).unwrap();
    let resp: proto::protocol::Response = serde_json::from_str(&line).unwrap();
    assert_eq!(resp.error.unwrap().code, Code::TooLarge);
    let mut rest = String::new();
    assert_eq!(BufReader::new(&raw).read_line(&mut rest).unwrap_or(0), 0, "connection should be closed");
    // And the daemon keeps serving others.
    let _: Status = a.try_call(&Request::Status).unwrap();
    // Bad registrations.
    let g = GuestProc::spawn();
    let mut r = register(g.pid(), "vm", Action::Default);
    r.uuid = "not-a-uuid".into();
    assert_eq!(refused(a.try_call(&Request::Register(r))).code, Code::BadRequest);
    let r = Register { pid: Some(u32::MAX - 1), ..register(g.pid(), "vm", Action::Default) };
    assert_eq!(refused(a.try_call(&Request::Register(r))).code, Code::BadRequest);
    let acq = Acquire { pid: g.pid(), resources: vec![], state: None, action: None };
    assert_eq!(refused(a.try_call(&Request::Acquire(acq))).code, Code::NotRegistered);
}

/// `highlanderd --config CONF --check`: (exit code, stdout, stderr).
fn check(conf: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin("highlanderd")).arg("--config").arg(conf).arg("--check").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_configuration_stops_start_up_naming_key_and_line() {
    let (dir, ls) = fresh_lockspace("config", 300, 8);
    let conf = dir.join("bad.conf");
    std::fs::write(&conf, format!("host_id = 1\nlockspace = {}\nio_timeut = 3\n", ls.display())).unwrap();
    let (code, _, err) = check(&conf);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.conf:3: unknown key `io_timeut`"), "{err}");
    // A lockspace that does not exist cannot start, so it does not pass.
    std::fs::write(&conf, "host_id = 1\nlockspace = /x\n").unwrap();
    let (code, _, err) = check(&conf);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.conf:2: lockspace /x does not exist") && err.contains("highlander lockspace init /x"), "{err}");
    std::fs::write(&conf, format!("host_id = 1\nlockspace = {}\n", ls.display())).unwrap();
    let (code, out, err) = check(&conf);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration is valid") && out.contains("lockspace \"default\""), "{out}");
    // With auto_create, a missing file passes (a start creates it), but not
    // one whose directory is missing; --check creates nothing.
    let new = dir.join("new.lockspace");
    std::fs::write(&conf, format!("host_id = 1\nauto_create = yes\nlockspace = {}\n", new.display())).unwrap();
    let (code, out, err) = check(&conf);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("does not exist yet; auto_create creates it") && !new.exists(), "{out}");
    std::fs::write(&conf, format!("host_id = 1\nauto_create = yes\nlockspace = {}\n", dir.join("nodir/new.lockspace").display())).unwrap();
    let (code, _, err) = check(&conf);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.conf:3:") && err.contains("its directory does not exist"), "{err}");
    // examples/highlanderd.conf is valid once its lockspace exists.
    let example = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/highlanderd.conf")).unwrap();
    let example = example.replace("lockspace = /var/lib/highlander/default.lockspace", &format!("lockspace = {}", ls.display()));
    std::fs::write(&conf, example).unwrap();
    let (code, _, err) = check(&conf);
    assert_eq!(code, Some(0), "{err}");
}

/// The outside test's list: configurations that passed `--check` but could
/// not start. Each is refused by `--check` and by a start alike, naming
/// the file and line, and printing the path once.
#[test]
fn check_refuses_every_lockspace_that_cannot_start() {
    let (dir, ls) = fresh_lockspace("check", 300, 8);
    let conf = dir.join("hl.conf");
    let other = dir.join("other");
    init_lockspace(&other, 300, 8); // also named "default"
    let copy = dir.join("copy");
    std::fs::copy(&ls, &copy).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&ls, &link).unwrap();
    let zeros = dir.join("zeros");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let first = format!("lockspace = {}\n", ls.display());
    let cases: Vec<(String, &str, Vec<String>)> = vec![
        (format!("host_id = 1\nlockspace = {}\n", dir.join("nope").display()), "hl.conf:2:", vec![format!("lockspace {} does not exist", dir.join("nope").display())]),
        (format!("host_id = 1\nlockspace = {}\n", dir.display()), "hl.conf:2:", vec!["is a directory, not a lockspace".into()]),
        ("host_id = 1\nlockspace = /dev/null\n".into(), "hl.conf:2:", vec!["lockspace /dev/null is a character device, not a lockspace".into()]),
        (format!("host_id = 1\nlockspace = {}\n", zeros.display()), "hl.conf:2:", vec![format!("{}: is not a highlander lockspace", zeros.display())]),
        (format!("host_id = 1\n{first}{first}"), "hl.conf:3:", vec!["listed already on line 2".into(), "the same file".into()]),
        (format!("host_id = 1\n{first}lockspace = {}\n", link.display()), "hl.conf:3:", vec!["listed already on line 2".into(), "the same file".into()]),
        (format!("host_id = 1\n{first}lockspace = {}\n", copy.display()), "hl.conf:3:", vec!["both hold lockspace \"default\" (uuid".into()]),
        (format!("host_id = 1\n{first}lockspace = {}\n", other.display()), "hl.conf:3:", vec!["both are named \"default\"".into(), "--name".into()]),
        (format!("host_id = 9\n{first}"), "hl.conf:1:", vec!["`host_id` = 9 is above the host ids of lockspace \"default\"".into(), "line 2".into(), "1..=8".into()]),
    ];
    for (text, at, wants) in cases {
        let text = format!("{text}socket = {}\nstate_dir = {}\n", dir.join("hl.sock").display(), dir.join("state").display());
        std::fs::write(&conf, &text).unwrap();
        let (code, _, err) = check(&conf);
        assert_eq!(code, Some(1), "--check passed:\n{text}");
        // A start refuses it with the same message, before joining anything.
        let start = Command::new(bin("highlanderd")).arg("--config").arg(&conf).output().unwrap();
        let start_err = String::from_utf8_lossy(&start.stderr);
        assert_eq!(start.status.code(), Some(1), "started:\n{text}\n{start_err}");
        for msg in [&err, start_err.as_ref()] {
            assert!(msg.contains(&format!("{}:", conf.display())) && msg.contains(at), "{at} missing:\n{text}\n{msg}");
            for want in &wants {
                assert!(msg.contains(want.as_str()), "{want:?} missing:\n{text}\n{msg}");
            }
            for path in [&ls, &zeros, &dir.join("nope")] {
                let p = path.display();
                assert!(!msg.contains(&format!("{p}: {p}")) && !msg.contains(&format!("lockspace {p}: {p}")), "path printed twice:\n{msg}");
            }
        }
    }
    for path in [&ls, &other] {
        assert!(engine::direct::dump(path).unwrap().hosts.is_empty(), "a refused start joined {}", path.display());
    }
}

/// A start that fails after it joined a lockspace (here: a later lockspace
/// whose slot for our host id is corrupt; then a socket already served)
/// leaves what it joined, so peers see the slot free at once, not a host
/// that goes failing and then dead.
#[test]
fn a_start_that_fails_after_joining_leaves_every_lockspace_it_joined() {
    use std::os::unix::fs::FileExt;
    let (dir, ls) = fresh_lockspace("failed-start", 300, 8);
    let second = dir.join("second");
    let mut o = engine::InitOptions::new("second");
    o.max_hosts = 8;
    o.resource_slots = 8;
    o.io_timeout = Duration::from_millis(300);
    engine::init::init(&second, &o).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&second).unwrap();
    file.write_all_at(&[0x5a; 512], 512).unwrap(); // host id 1's slot
    file.sync_data().unwrap();
    let conf = dir.join("hl.conf");
    std::fs::write(
        &conf,
        format!("host_id = 1\nlockspace = {}\nlockspace = {}\nsocket = {}\nstate_dir = {}\n", ls.display(), second.display(), dir.join("hl.sock").display(), dir.join("state").display()),
    )
    .unwrap();
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hl.conf:3:") && err.contains("slot of host id 1 (sector 1) is corrupt"), "{err}");
    let slot = |path: &std::path::Path, id: u32| engine::direct::dump(path).unwrap().hosts.into_iter().find(|h| h.host_id == id).map(|h| h.status);
    assert_eq!(slot(&ls, 1).as_deref(), Some("free"), "the joined lockspace was not left:\n{err}");
    assert!(err.contains("lockspace \"default\": left cleanly"), "{err}");

    // Failing later still, at the socket another daemon serves.
    let a = Host::start(&dir, &ls, 1, "");
    let b = dir.join("b");
    std::fs::create_dir_all(&b).unwrap();
    let conf = b.join("hl.conf");
    std::fs::write(&conf, format!("host_id = 2\nlockspace = {}\nsocket = {}\nstate_dir = {}\n", ls.display(), a.socket.display(), b.join("state").display())).unwrap();
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another highlanderd is already serving it"), "{err}");
    assert_eq!(slot(&ls, 2).as_deref(), Some("free"), "the joined lockspace was not left:\n{err}");
    // The daemon serving that socket is untouched.
    assert_eq!(a.status().host_id, 1);
}

/// At most `max_connections` connections are served at once; one more gets
/// one error line naming the cap and the key, and is closed.
#[test]
fn a_connection_over_max_connections_gets_one_clear_error_and_is_closed() {
    let (dir, ls) = fresh_lockspace("max-conn", 300, 8);
    let a = Host::start(&dir, &ls, 1, "max_connections = 4");
    // Answered: each is being served, so each holds its place. (Retried:
    // the start-up's status polls may still hold places a moment.)
    let mut held: Vec<_> = (0..4)
        .map(|_| {
            wait_for("a connection to be served", Duration::from_secs(5), || {
                let mut c = a.client();
                c.call::<Status>(&Request::Status).ok().map(|_| c)
            })
        })
        .collect();
    match a.try_call::<Status>(&Request::Status) {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.code, Code::TooManyConnections);
            assert!(e.message.contains("at most 4 connections") && e.message.contains("`max_connections` in") && e.message.contains("highlanderd.conf"), "{}", e.message);
        }
        other => panic!("a fifth connection was not refused: {other:?}"),
    }
    // One line, then EOF, even for a client that sends nothing.
    let raw = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    let mut reader = BufReader::new(&raw);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let resp: proto::protocol::Response = serde_json::from_str(&line).unwrap();
    assert_eq!(resp.error.unwrap().code, Code::TooManyConnections);
    line.clear();
    assert_eq!(reader.read_line(&mut line).unwrap(), 0, "the connection stayed open: {line}");
    assert!(a.log_text().contains("all 4 connections (`max_connections`) are in use"), "{}", a.log_text());
    // A place freed is a place taken.
    held.pop();
    wait_for("a connection to be served again", Duration::from_secs(5), || a.try_call::<Status>(&Request::Status).ok());
}

/// Lines of `text` containing `needle`.
fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// The `N` of every "suppressed N similar message(s) (KIND)" line, summed.
fn suppressed(text: &str, kind: &str) -> u64 {
    let tag = format!("similar message(s) ({kind})");
    text.lines().filter(|l| l.contains(&tag)).filter_map(|l| l.split("suppressed ").nth(1)?.split(' ').next()?.parse::<u64>().ok()).sum()
}

#[test]
fn ten_thousand_malformed_lines_do_not_give_ten_thousand_log_lines() {
    let (dir, ls) = fresh_lockspace("log-flood", 300, 8);
    let a = Host::start(&dir, &ls, 1, "");
    let mut c = a.client();
    for _ in 0..10_000 {
        assert_eq!(c.call_raw(b"{not json").unwrap().error.unwrap().code, Code::BadRequest);
    }
    // Every one is accounted for: logged, or counted in a "suppressed" line.
    let log = wait_for("the suppressed count", Duration::from_secs(20), || {
        let log = a.log_text();
        (count(&log, "bad request: not a JSON object") as u64 + suppressed(&log, "bad request") == 10_000).then_some(log)
    });
    let logged = count(&log, "bad request: not a JSON object");
    assert!(logged <= 40, "{logged} lines for 10,000 malformed requests");
}

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system setting.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Sets process `pid`'s soft RLIMIT_NOFILE (the hard limit stays, so it
/// can be raised again without CAP_SYS_RESOURCE); returns the old soft one.
fn set_nofile(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit writes one rlimit into `old` and reads none (null).
    assert_eq!(unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) }, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: prlimit reads one rlimit from a live struct and writes none (null).
    assert_eq!(unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) }, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// The issue measured 2,144 identical accept warnings in 7 ms once file
/// descriptors ran out. Now the accept loop backs off, the warnings are
/// rate-limited, and the daemon answers again once descriptors are back.
#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let (dir, ls) = fresh_lockspace("emfile", 300, 8);
    let a = Host::start(&dir, &ls, 1, "");
    // No descriptor above stdin, stdout and stderr may be opened any more
    // (set from outside, after start-up: the daemon's own fds stay open).
    let old = set_nofile(a.pid(), 3);
    let waiting: Vec<_> = (0..5).map(|_| std::os::unix::net::UnixStream::connect(&a.socket).unwrap()).collect();
    wait_for("the accept loop to run out of descriptors", Duration::from_secs(10), || a.log_text().contains("Too many open files").then_some(()));
    // The shortage lasts a second (the condition under test, not a wait
    // for an event): a spinning loop logs many thousands of lines in it,
    // and burns a core.
    let cpu0 = cpu_time(a.pid());
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(a.pid()) - cpu0;
    let log = a.log_text();
    let accepts = count(&log, "accept on");
    assert!((1..=daemon::log_limit::BURST as usize).contains(&accepts), "{accepts} accept warnings:\n{log}");
    assert!(log.contains("(this process's open-file limit: raise LimitNOFILE, or lower `max_connections`)"), "{log}");
    assert!(cpu < Duration::from_millis(100), "the daemon used {cpu:?} of CPU in 1 s without descriptors: the accept loop spins");
    // Descriptors are back: each waiting connection gets its answer (one
    // the daemon took just as the limit fell is told to retry), and new
    // ones are served.
    set_nofile(a.pid(), old);
    for mut c in waiting {
        // A connection answered already is closed: the write may fail.
        let _ = writeln!(c, "{}", Request::Status.encode());
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        assert!(line.contains("\"ok\":true") || line.contains("cannot serve this connection now"), "{line}");
    }
    wait_for("the daemon to answer again", Duration::from_secs(10), || a.try_call::<Status>(&Request::Status).ok());
}

/// Runs as a child of `as_user` only: sends each line of its stdin on a
/// connection of its own to HL_RAW_CLIENT_SOCKET and prints each answer.
#[test]
fn raw_client_child() {
    let Some(socket) = std::env::var_os("HL_RAW_CLIENT_SOCKET") else { return };
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let answer = proto::client::Client::connect(socket.as_ref()).and_then(|mut c| c.call_raw(line.as_bytes()));
        match answer {
            Ok(r) => println!("answer: {}", serde_json::to_string(&r).unwrap()),
            Err(e) => println!("client error: {e}"),
        }
    }
}

/// Sends each request, on a connection of its own, as `uid`:`gid` (this test
/// binary again, running `raw_client_child`), and returns the answers.
fn as_user(uid: u32, gid: u32, socket: &std::path::Path, requests: &[Request]) -> Vec<proto::protocol::Response> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "raw_client_child", "--nocapture", "--test-threads=1"])
        .env("HL_RAW_CLIENT_SOCKET", socket)
        .uid(uid)
        .gid(gid)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for r in requests {
        writeln!(stdin, "{}", r.encode()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("client error"), "{text}");
    // libtest's own "test raw_client_child ... " may precede the first.
    let answers: Vec<_> = text.lines().filter_map(|l| l.split_once("answer: ")).map(|(_, l)| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), requests.len(), "{text}");
    answers
}

/// Members of `group` may read (status, who, inquire) but never change a
/// lease: every mutating op is refused, naming the op and the rule.
#[test]
fn group_members_may_read_but_only_root_changes_leases() {
    const GID: u32 = 4242;
    const UID: u32 = 4243;
    let (dir, ls) = fresh_lockspace("authz", 300, 8);
    let a = Host::start(&dir, &ls, 1, &format!("group = {GID}"));
    std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = disk(&dir, "x.img");
    let d2 = disk(&dir, "y.img");
    let g = GuestProc::spawn();
    let _h = a.register(g.pid(), "web1", Action::Poweroff);
    a.acquire(g.pid(), &[(&d, Mode::Exclusive)], None).unwrap();

    let resources = vec![Resource::path(d2.clone(), Mode::Exclusive)];
    let mutating = [
        Request::Register(Register { pid: None, ..register(g.pid(), "mine", Action::Default) }),
        Request::Register(Register { resources: resources.clone(), ..register(g.pid(), "web1", Action::Default) }),
        Request::Acquire(Acquire { pid: g.pid(), resources, state: None, action: None }),
        Request::Release(Release { pid: g.pid(), resources: None }),
        Request::Release(Release { pid: g.pid(), resources: Some(vec![Resource::path(d.clone(), Mode::Exclusive)]) }),
        Request::Declare(proto::protocol::Declare { uuid: uuid_for("web1"), name: "web1".into(), disks: Vec::new(), lockspace: None }),
        Request::Undeclare(proto::protocol::Undeclare { uuid: uuid_for("web1") }),
    ];
    let reads = [Request::Status, Request::Inquire(Inquire { pid: g.pid() }), Request::Who(proto::protocol::WhoResource { path: Some(d.clone()), identity: None, lockspace: None }), Request::Metrics];
    // Every op the protocol has is tried.
    let mut ops: Vec<&str> = mutating.iter().chain(&reads).map(Request::op).collect();
    ops.sort();
    ops.dedup();
    let mut all = proto::protocol::OPS.to_vec();
    all.sort();
    assert_eq!(ops, all);

    for (req, r) in mutating.iter().zip(as_user(UID, GID, &a.socket, &mutating)) {
        let e = r.error.unwrap_or_else(|| panic!("group member's `{}` was carried out", req.op()));
        assert_eq!(e.code, Code::PermissionDenied, "{}", e.message);
        assert!(e.message.contains(&format!("`{}` changes leases", req.op())) && e.message.contains("only root"), "{}", e.message);
        assert!(e.message.contains(&format!("uid {UID}")) && e.message.contains("status, who"), "{}", e.message);
    }
    for (req, r) in reads.iter().zip(as_user(UID, GID, &a.socket, &reads)) {
        assert!(r.ok, "group member's `{}` refused: {:?}", req.op(), r.error);
    }
    // The CLI reads as a group member too (so do the monitoring commands, for NRPE or an agent).
    for cmd in ["status", "check", "metrics"] {
        let out = Command::new(bin("highlander")).args([cmd, "--socket", a.socket.to_str().unwrap()]).uid(UID).gid(GID).output().unwrap();
        assert!(out.status.success(), "{cmd}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    // Nothing changed: the guest still holds its disk, and nothing else.
    let st = a.status();
    assert_eq!(st.leases.len(), 1, "{st:?}");
    assert_eq!(st.leases[0].holders[0].pid, g.pid());
    assert_eq!(st.guests.len(), 1, "{st:?}");
    assert!(a.log_text().contains(&format!("refused `acquire` from uid {UID}")), "{}", a.log_text());
}

/// Fails host `h`'s lockspace I/O, lets guest `g` exit, and waits until the
/// release of its lease has failed; then storage answers again. The host
/// lease is never in danger: the fault lasts milliseconds, fencing starts at 3.5T.
/// Kills the guest while storage fails, runs `meanwhile`, then heals storage.
fn fail_the_release_of(h: &Host, g: &mut GuestProc, meanwhile: impl FnOnce()) {
    std::fs::write(&h.fault, "fail").unwrap();
    g.0.kill().unwrap();
    g.0.wait().unwrap();
    wait_for("the failed release in the log", Duration::from_secs(2), || h.log_text().contains("on storage failed").then_some(()));
    meanwhile();
    std::fs::remove_file(&h.fault).unwrap();
}

#[test]
fn a_failed_release_is_retried_until_another_host_can_take_the_disk() {
    let TwoHosts { dir, a, b, mut ga, gb, _handles } = two_hosts("retry", 300);
    let d = disk(&dir, "vm.img");
    a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let generation = a.status().lockspaces[0].generation;

    fail_the_release_of(&a, &mut ga, || {
        // While storage fails, the admin sees why the disk is still taken.
        let pending = a.status().pending_releases;
        let identity = identity::of_path(std::path::Path::new(&d)).unwrap();
        assert!(pending.len() == 1 && pending[0].identity == identity, "{pending:?}");
        let text = String::from_utf8(cli(&["status", "--socket", a.socket.to_str().unwrap()]).stdout).unwrap();
        assert!(text.contains("being retried") && text.contains(&identity), "{text}");
    });
    wait_for("host 2 to acquire once host 1's release is retried", Duration::from_secs(5), || b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None).ok());
    assert!(a.log_text().contains("retry succeeded, the disk is free on storage"), "{}", a.log_text());
    // Released by the retry, not voided by a new generation of host 1.
    let st = a.status();
    assert_eq!(st.lockspaces[0].generation, generation);
    assert!(st.leases.is_empty() && st.pending_releases.is_empty(), "{st:?}");
}

#[test]
fn a_local_acquire_completes_a_pending_release_first() {
    let (dir, a, b) = two_daemons("pending", 300);
    let d = disk(&dir, "vm.img");
    let (mut g1, g2, gb) = (GuestProc::spawn(), GuestProc::spawn(), GuestProc::spawn());
    let _h1 = a.register(g1.pid(), "vm1", Action::Default);
    let _h2 = a.register(g2.pid(), "vm2", Action::Default);
    let _hb = b.register(gb.pid(), "vm-b", Action::Default);
    let first = a.acquire(g1.pid(), &[(&d, Mode::Exclusive)], None).unwrap().leases[0].lver;

    fail_the_release_of(&a, &mut g1, || {});
    // At once, while vm1's release may still be pending: the engine alone
    // would call the old lease ours, and the pending release would free it
    // under vm2.
    let r = wait_for("host 1 to lock the disk for vm2", Duration::from_secs(5), || match a.acquire(g2.pid(), &[(&d, Mode::Exclusive)], None) {
        Ok(r) => Some(r),
        Err(ClientError::Refused(e)) if e.code == Code::Unavailable => None,
        Err(e) => panic!("unexpected: {e}"),
    });
    assert!(r.leases[0].lver > first, "vm2 got the old lease version {} back", r.leases[0].lver);
    wait_for("the pending release to be settled", Duration::from_secs(5), || a.log_text().contains("retry succeeded").then_some(()));
    let who: WhoResult = a.try_call(&Request::Who(proto::protocol::WhoResource { path: Some(d.clone()), identity: None, lockspace: None })).unwrap();
    assert!(who.held && who.owner_id == 1 && who.guest == "vm2" && who.lver == r.leases[0].lver, "{who:?}");
    assert_eq!(refused(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None)).code, Code::Busy);
}

#[test]
fn a_lease_won_but_never_saved_is_released_when_the_daemon_resumes() {
    let io = Duration::from_millis(500);
    let TwoHosts { dir, mut a, b, ga, gb, _handles } = two_hosts("orphan", io.as_millis() as u64);
    let (kept, orphan) = (disk(&dir, "kept.img"), disk(&dir, "orphan.img"));
    a.acquire(ga.pid(), &[(&kept, Mode::Exclusive)], None).unwrap();
    let generation = a.status().lockspaces[0].generation;

    // A crash between winning a lease on storage and saving the table: with
    // host 1's daemon dead, carry on its host lease (same generation) in this
    // process, win a lease, and stop without telling the daemon.
    a.kill();
    let mut join = engine::JoinOptions::new(dir.join("ls"), 1, "host-1");
    join.state_dir = Some(a.state_dir());
    join.require_resume = true;
    let crashed = engine::Lockspace::join(join).unwrap();
    assert_eq!(crashed.generation(), generation);
    let identity = identity::of_path(orphan.as_ref()).unwrap();
    let holder = engine::Holder { uuid: [7; 16], name: "vm-lost".into() };
    crashed.acquire(&engine::AcquireRequest { identity: identity.clone(), mode: Mode::Exclusive, holder, expect_lver: None }).unwrap();
    crashed.stop();
    assert_eq!(refused(b.acquire(gb.pid(), &[(&orphan, Mode::Exclusive)], None)).code, Code::Busy);

    a.spawn();
    let st = a.status();
    assert!(st.lockspaces[0].resumed && st.lockspaces[0].generation == generation, "{st:?}");
    assert_eq!(st.leases.len(), 1, "{st:?}");
    let log = a.log_text();
    assert!(log.contains(&format!("orphaned lease: disk {identity} exclusive")), "{log}");
    assert_eq!(log.matches("orphaned lease").count(), 1, "the saved guest's lease is no orphan: {log}");
    // Released before the daemon served: host 2 gets it at once; the saved guest's disk stays held.
    b.acquire(gb.pid(), &[(&orphan, Mode::Exclusive)], None).unwrap();
    assert_eq!(refused(b.acquire(gb.pid(), &[(&kept, Mode::Exclusive)], None)).code, Code::Busy);
}

/// Host `h`'s saved resume state: when its last successful renewal started.
fn last_renewal(h: &Host) -> Mono {
    engine::lockspace::saved_renewal(&engine::lockspace::resume_file(&h.state_dir(), "default")).expect("resume state").2
}

#[test]
fn a_daemon_back_after_the_grace_window_fences_before_joining_afresh() {
    let io = Duration::from_millis(400);
    let (dir, ls) = fresh_lockspace("late", io.as_millis() as u64, 64);
    // Pause counts as a fence only if the helper succeeds; it fails for "stuck".
    let helper = fence_helper(&dir, "[ \"$2\" != stuck ]");
    let mut a = Host::start(&dir, &ls, 1, &format!("fence_helper = {} {{action}} {{name}}", helper.display()));
    let b = Host::start(&dir, &ls, 2, "");
    let d = disk(&dir, "vm.img");
    let mut ga = GuestProc::spawn();
    let gb = GuestProc::spawn();
    let _ha = a.register(ga.pid(), "victim", Action::Poweroff);
    let _hb = b.register(gb.pid(), "taker", Action::Default);
    a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let (d_paused, d_stuck) = (disk(&dir, "paused.img"), disk(&dir, "stuck.img"));
    let (mut g_paused, mut g_stuck) = (GuestProc::spawn(), GuestProc::spawn());
    let _hp = a.register(g_paused.pid(), "paused", Action::Pause);
    let _hs = a.register(g_stuck.pid(), "stuck", Action::Pause);
    a.acquire(g_paused.pid(), &[(&d_paused, Mode::Exclusive)], None).unwrap();
    a.acquire(g_stuck.pid(), &[(&d_stuck, Mode::Exclusive)], None).unwrap();
    let generation = a.status().lockspaces[0].generation;

    a.kill();
    // Its fence sentinel dies with it (`systemctl kill --signal=KILL`, or
    // both OOM-killed): nothing fences the guests while no daemon runs.
    a.kill_sentinel();
    // Back only once its guests must be fenced (fence_begin after the last
    // renewal), but before host 2 may call it dead (host_dead).
    let fence_at = last_renewal(&a).add(Timeouts::new(io).unwrap().fence_begin);
    wait_for("host 1's resume window to pass", Duration::from_secs(5), || (Mono::now() >= fence_at).then_some(()));
    assert_eq!(refused(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None)).code, Code::Busy);
    assert!(ga.0.try_wait().unwrap().is_none(), "the guest runs on while its daemon is down");
    let before = a.log_text().len();
    a.spawn();
    let status = ga.0.try_wait().unwrap().expect("the guest was killed before the daemon served");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let died = Mono::now();
    let status = g_stuck.0.try_wait().unwrap().expect("a guest whose pause helper failed was killed");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(g_paused.0.try_wait().unwrap().is_none(), "a guest whose pause helper succeeded was killed");
    let st = a.status();
    assert!(!st.lockspaces[0].resumed && st.lockspaces[0].generation > generation, "{st:?}");
    assert!(st.leases.is_empty(), "leases re-adopted: {st:?}");
    let log = a.log_text()[before..].to_owned();
    let fenced = log.find("fenced: guest \"victim\"").unwrap_or_else(|| panic!("{log}"));
    let serving = log.find("serving").unwrap_or_else(|| panic!("{log}"));
    assert!(fenced < serving, "{log}");
    let taken = wait_for("host 2 to take the disk", Duration::from_secs(5), || b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None).ok().map(|_| Mono::now()));
    assert!(taken > died);
}

#[test]
fn pause_and_restart_run_the_fence_helper_and_a_guest_still_holding_leases_is_killed() {
    let io = Duration::from_millis(400);
    let (dir, ls) = fresh_lockspace("helper", io.as_millis() as u64, 64);
    // The helper records its argv and its scheduling policy (field 41 of
    // its stat; the daemon runs SCHED_RR, the helper must not).
    let calls = dir.join("helper.calls");
    let policies = dir.join("helper.policies");
    let helper = fence_helper(&dir, &format!("echo \"$*\" >> {}; cut -d' ' -f41 /proc/$$/stat >> {}", calls.display(), policies.display()));
    let a = Host::start(&dir, &ls, 1, &format!("fence_helper = {} {{action}} {{uri}} {{uuid}} {{name}} {{pid}}", helper.display()));
    let (dp, dr) = (disk(&dir, "p.img"), disk(&dir, "r.img"));
    let (mut gp, mut gr) = (GuestProc::spawn(), GuestProc::spawn());
    let mut hp = a.client();
    let _: LeasesResult = hp.call(&Request::Register(Register { uri: "qemu:///session".into(), ..register(gp.pid(), "vm-p", Action::Pause) })).unwrap();
    let _hr = a.register(gr.pid(), "vm-r", Action::Restart);
    a.acquire(gp.pid(), &[(&dp, Mode::Exclusive)], None).unwrap();
    a.acquire(gr.pid(), &[(&dr, Mode::Exclusive)], None).unwrap();

    std::fs::write(&a.fault, "fail").unwrap();
    let valid_until_bound = Mono::now().add(Timeouts::new(io).unwrap().lease_expiry);
    let pause_call = format!("pause qemu:///session {} vm-p {}", uuid_for("vm-p"), gp.pid());
    let restart_call = format!("restart qemu:///system {} vm-r {}", uuid_for("vm-r"), gr.pid());
    let (mut paused, mut restarted, mut died) = (None, None, None);
    wait_for("host 1 to lose its lease after fencing", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&calls).unwrap_or_default();
        if paused.is_none() && text.lines().any(|l| l == pause_call) {
            paused = Some(Mono::now());
            // What libvirt does once the guest is paused: release its leases.
            a.release_all(gp.pid());
        }
        if restarted.is_none() && text.lines().any(|l| l == restart_call) {
            restarted = Some(Mono::now());
        }
        if died.is_none() {
            if let Some(status) = gr.0.try_wait().unwrap() {
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
                died = Some(Mono::now());
            }
        }
        (died.is_some() && a.status().lockspaces[0].health == Health::Lost).then_some(())
    });
    let (paused, restarted, died) = (paused.expect("pause helper call"), restarted.expect("restart helper call"), died.unwrap());
    assert!(paused < valid_until_bound && restarted < valid_until_bound, "the helper ran after the leases expired");
    assert!(restarted < died && died < valid_until_bound, "vm-r killed {:?} after its lease expired", died.since(valid_until_bound));
    // The paused guest released its leases in time and is left alone.
    assert!(gp.0.try_wait().unwrap().is_none());
    let policies = std::fs::read_to_string(&policies).unwrap();
    assert!(policies.lines().count() >= 2 && policies.lines().all(|p| p == "0"), "the fence helper runs SCHED_OTHER: {policies}");
    let log = a.log_text();
    assert!(log.contains("fenced: guest \"vm-r\"") && log.contains("after the fence helper ran; killed it"), "{log}");
    assert!(!log.contains(&format!("guest \"vm-p\" (uuid {}, pid {}) still held leases", uuid_for("vm-p"), gp.pid())), "{log}");
    drop(hp);
}

/// Host 1's daemon is stopped by `stop` while a poweroff guest and a pause
/// guest hold leases, and stays down: its fence sentinel applies their
/// actions at fence_begin after the last renewal, before the leases expire,
/// and host 2 takes the disk only after the guest is dead. A daemon started
/// after that joins afresh. With `replace_sentinel`, the first sentinel is
/// killed while the daemon runs: the daemon starts another, which does the job.
fn guests_of_a_daemon_that_stays_down_are_fenced_by_its_sentinel(name: &str, replace_sentinel: bool, stop: impl FnOnce(&mut Host)) {
    let io = Duration::from_millis(400);
    let t = Timeouts::new(io).unwrap();
    let (dir, ls) = fresh_lockspace(name, io.as_millis() as u64, 64);
    let calls = dir.join("helper.calls");
    let helper = fence_helper(&dir, &format!("echo \"$*\" >> {}", calls.display()));
    let mut a = Host::start(&dir, &ls, 1, &format!("fence_helper = {} {{action}} {{name}}", helper.display()));
    let b = Host::start(&dir, &ls, 2, "");
    let (d, dp) = (disk(&dir, "vm.img"), disk(&dir, "paused.img"));
    let (mut ga, mut gp, gb) = (GuestProc::spawn(), GuestProc::spawn(), GuestProc::spawn());
    let _ha = a.register(ga.pid(), "victim", Action::Poweroff);
    let _hp = a.register(gp.pid(), "paused", Action::Pause);
    let _hb = b.register(gb.pid(), "taker", Action::Default);
    a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    a.acquire(gp.pid(), &[(&dp, Mode::Exclusive)], None).unwrap();
    let generation = a.status().lockspaces[0].generation;
    if replace_sentinel {
        let first = a.sentinel_pid();
        a.kill_sentinel();
        wait_for("highlanderd to start a new sentinel", Duration::from_secs(5), || (a.sentinel_pid() != first).then_some(()));
        // The new sentinel's pid is in fence-owner.json before the daemon logs it.
        wait_for("highlanderd to log the new sentinel", Duration::from_secs(5), || a.log_text().contains("fence sentinel armed again").then_some(()));
    }
    let sentinel = a.sentinel();

    stop(&mut a);
    let renewed = last_renewal(&a);
    let (fence_at, expiry) = (renewed.add(t.fence_begin), renewed.add(t.lease_expiry));
    // When the guest was last seen alive, when seen dead, when the helper ran.
    let (mut alive, mut died, mut paused) = (Mono(0), None, None);
    wait_for("the sentinel to fence both guests", Duration::from_secs(5), || {
        let now = Mono::now();
        match ga.0.try_wait().unwrap() {
            None => alive = now,
            Some(status) => {
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
                died.get_or_insert(now);
            }
        }
        if paused.is_none() && std::fs::read_to_string(&calls).unwrap_or_default().lines().any(|l| l == "pause paused") {
            paused = Some(now);
        }
        (died.is_some() && paused.is_some()).then_some(())
    });
    let (died, paused) = (died.unwrap(), paused.unwrap());
    // Polled every few ms: alive until (about) fence_at, dead before expiry.
    let slack = io / 4;
    assert!(alive.add(slack) >= fence_at, "the guest was killed {:?} before fence_begin", fence_at.since(alive));
    assert!(died >= fence_at && died < expiry, "the guest died {:?} after fence_begin, leases expire at {:?}", died.since(fence_at), t.lease_expiry - t.fence_begin);
    assert!(paused.add(slack) >= fence_at && paused < expiry, "the pause helper ran {:?} after fence_begin", paused.since(fence_at));
    assert!(gp.0.try_wait().unwrap().is_none(), "a guest whose pause helper succeeded was killed");
    // Nothing left to guard: the sentinel is done.
    assert!(sentinel.wait_exit(Duration::from_secs(2)), "the sentinel lingers after fencing");
    assert_eq!(refused(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None)).code, Code::Busy);
    let taken = wait_for("host 2 to take the disk over", Duration::from_secs(5), || b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None).ok().map(|_| Mono::now()));
    assert!(taken > died);
    let log = a.log_text();
    for want in ["fence-sentinel] fenced: guest \"victim\"", "killed: lockspace \"default\": highlanderd (pid", "fenced: guest \"paused\""] {
        assert!(log.contains(want), "{want:?} missing from {log}");
    }
    // Back late: no resume, nothing re-adopted; the paused guest is left paused.
    a.spawn();
    let st = a.status();
    assert!(!st.lockspaces[0].resumed && st.lockspaces[0].generation > generation && st.leases.is_empty(), "{st:?}");
    assert!(gp.0.try_wait().unwrap().is_none(), "the paused guest was killed by the late daemon");
}

#[test]
fn a_stopped_daemon_that_stays_down_cannot_leave_its_guests_running() {
    guests_of_a_daemon_that_stays_down_are_fenced_by_its_sentinel("sentinel-stop", false, Host::terminate);
}

#[test]
fn a_crashed_daemon_that_stays_down_cannot_leave_its_guests_running() {
    guests_of_a_daemon_that_stays_down_are_fenced_by_its_sentinel("sentinel-crash", true, Host::kill);
}

#[test]
fn a_daemon_restarted_in_time_keeps_its_guests_and_the_old_sentinel_stands_down() {
    let io = Duration::from_millis(400);
    let t = Timeouts::new(io).unwrap();
    let TwoHosts { dir, mut a, b, mut ga, gb, _handles } = two_hosts("sentinel-resume", io.as_millis() as u64);
    let d = disk(&dir, "vm.img");
    let before = a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let generation = a.status().lockspaces[0].generation;
    let old = a.sentinel();
    // A second daemon on the same state dir is refused before it touches anything.
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&a.conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("another highlanderd (pid"), "{err}");

    a.terminate();
    let renewed = last_renewal(&a);
    a.spawn();
    assert!(old.wait_exit(Duration::from_secs(2)), "the old sentinel did not stand down");
    assert!(!a.sentinel().exited(), "the restarted daemon has a sentinel of its own");
    // Past the old fence deadline and even the old lease expiry: the guest
    // runs on, its lease carried on by the resumed host lease.
    wait_for("the old lease expiry to pass", Duration::from_secs(5), || (Mono::now() >= renewed.add(t.lease_expiry)).then_some(()));
    assert!(ga.0.try_wait().unwrap().is_none(), "the guest was fenced although its daemon came back in time");
    let st = a.status();
    assert!(st.lockspaces[0].resumed && st.lockspaces[0].generation == generation, "{st:?}");
    assert!(st.leases.len() == 1 && st.leases[0].lease.lver == before.leases[0].lver && st.leases[0].holders[0].pid == ga.pid(), "{st:?}");
    assert_eq!(refused(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None)).code, Code::Busy);
    let log = a.log_text();
    assert!(log.contains("took over its guests; standing down") && !log.contains("fenced:"), "{log}");
}

/// The outside test's split brain: a second highlanderd on this machine
/// with host id 1, its own socket and state dir, on the same lockspace.
#[test]
fn a_second_daemon_with_a_host_id_in_use_is_refused_and_the_first_keeps_its_lease() {
    let (dir, ls) = fresh_lockspace("dup-id", 300, 8);
    let a = Host::start(&dir, &ls, 1, "");
    let d = disk(&dir, "x.img");
    let mut g = GuestProc::spawn();
    let _h = a.register(g.pid(), "web1", Action::Poweroff);
    a.acquire(g.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let second = dir.join("second");
    std::fs::create_dir_all(&second).unwrap();
    let conf = second.join("highlanderd.conf");
    std::fs::write(&conf, format!("host_id = 1\nhost_name = host-1\nlockspace = {}\nsocket = {}\nstate_dir = {}\n", ls.display(), second.join("hl.sock").display(), second.join("state").display())).unwrap();
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the second daemon started:\n{err}");
    assert!(err.contains("host id 1") && err.contains("in use by host \"host-1\"") && err.contains("unique host_id"), "{err}");
    assert!(err.contains("another highlanderd on this machine"), "{err}");
    let st = a.status();
    assert_eq!(st.lockspaces[0].health, Health::Healthy);
    assert_eq!(st.leases.len(), 1);
    assert!(g.0.try_wait().unwrap().is_none(), "the first daemon's guest was fenced");
}

/// Another writer overwrites host 1's slot anyway: host 1 finds it at its
/// next renewal, fences its guests at once rather than at fence_begin, and
/// says why.
#[test]
fn a_daemon_whose_slot_is_overwritten_fences_at_once_and_says_why() {
    use std::os::unix::fs::FileExt;
    let io = Duration::from_millis(1000);
    let (dir, ls) = fresh_lockspace("overwritten", io.as_millis() as u64, 8);
    let a = Host::start(&dir, &ls, 1, "");
    let d = disk(&dir, "x.img");
    let mut g = GuestProc::spawn();
    let _h = a.register(g.pid(), "web1", Action::Poweroff);
    a.acquire(g.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&ls).unwrap();
    let mut raw = [0u8; 512];
    file.read_exact_at(&mut raw, 512).unwrap();
    let mine = engine::format::HostSlot::decode(&raw).unwrap().unwrap();
    let intruder = engine::format::HostSlot { generation: mine.generation + 1, nonce: [7; 16], machine_id: [9; 16], host_name: "intruder".into(), ..mine };
    file.write_all_at(&intruder.encode(), 512).unwrap();
    file.sync_data().unwrap();
    let written = Mono::now();
    let status = wait_for("the guest to be fenced", Duration::from_secs(10), || g.0.try_wait().unwrap());
    let fenced = Mono::now();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let t = Timeouts::new(io).unwrap();
    assert!(fenced.since(written) < t.fence_begin, "fenced {:?} after the overwrite: it waited for the fencing time", fenced.since(written));
    let log = a.log_text();
    assert!(log.contains("another writer uses host id 1") && log.contains("\"intruder\""), "{log}");
    assert!(log.contains("fenced: guest \"web1\""), "{log}");
}

/// Scheduling policies of every thread of a process (field 41 of
/// /proc/PID/task/TID/stat: 0 SCHED_OTHER, 2 SCHED_RR).
fn thread_policies(pid: u32) -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else { continue };
        // Fields after the parenthesised command name start at field 3.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        policies.push(after.split(' ').nth(41 - 3).unwrap().parse().unwrap());
    }
    policies
}

/// `realtime = yes` (the default) runs every daemon thread at SCHED_RR, the
/// sentinel too (it finishes the fencing if the daemon dies); `realtime =
/// no` leaves the daemon alone. (The fence helper runs at normal priority:
/// pause_and_restart_run_the_fence_helper… checks it.)
#[test]
fn realtime_scheduling_covers_every_daemon_thread_and_the_sentinel() {
    let (dir, ls) = fresh_lockspace("realtime", 100, 8);
    let mut rt = Host::start(&dir, &ls, 1, "");
    let policies = thread_policies(rt.pid());
    assert!(policies.len() > 1, "the daemon runs several threads: {policies:?}");
    assert!(policies.iter().all(|&p| p == 2), "every thread SCHED_RR: {policies:?}");
    assert!(thread_policies(rt.sentinel_pid()).iter().all(|&p| p == 2), "the sentinel runs SCHED_RR");
    rt.terminate();
    let mut normal = Host::start(&dir, &ls, 2, "realtime = no\n");
    let policies = thread_policies(normal.pid());
    assert!(policies.iter().all(|&p| p == 0), "realtime = no: every thread SCHED_OTHER: {policies:?}");
    normal.terminate();
}

/// A guest's disks are acquired on storage at once, all or nothing: with
/// one of eight held by another host, the request is refused naming that
/// holder, this host keeps none of the eight, and the other host can take
/// the seven at once; with none held, all eight are taken together.
#[test]
fn many_disks_are_acquired_together_all_or_nothing() {
    let TwoHosts { dir, a, b, ga, gb, _handles } = two_hosts("many-disks", 300);
    let disks: Vec<String> = (0..8).map(|i| disk(&dir, &format!("d{i}.img"))).collect();
    let all: Vec<(&str, Mode)> = disks.iter().map(|d| (d.as_str(), Mode::Exclusive)).collect();
    b.acquire(gb.pid(), &all[5..6], None).unwrap();
    let e = refused(a.acquire(ga.pid(), &all, None));
    assert_eq!(e.code, Code::Busy);
    // Host 1 joined first and may not have read host 2's slot since: the
    // holder is named, its host never called gone.
    assert!(e.message.contains(&disks[5]) && e.message.contains("vm-b") && e.message.contains("on host 2") && !e.message.contains("left the lockspace"), "{}", e.message);
    assert!(a.status().leases.is_empty(), "host 1 kept leases of a refused request: {:?}", a.status().leases);
    let others: Vec<(&str, Mode)> = all.iter().enumerate().filter(|(i, _)| *i != 5).map(|(_, d)| *d).collect();
    assert_eq!(b.acquire(gb.pid(), &others, None).unwrap().leases.len(), 7, "the seven host 1 let go are free at once");
    b.release_all(gb.pid());
    let held = wait_for("host 1 to take all eight", Duration::from_secs(5), || a.acquire(ga.pid(), &all, None).ok());
    assert_eq!(held.leases.len(), 8);
    assert_eq!(a.status().leases.len(), 8);
    // Once host 2 has watched host 1 renew, its refusals name host and state.
    wait_for("host 2 to see host 1 live", Duration::from_secs(5), || refused(b.acquire(gb.pid(), &all[..1], None)).message.contains("(host is live)").then_some(()));
    assert!(refused(b.acquire(gb.pid(), &all[..1], None)).message.contains("on host 1 \"host-1\""));
}
