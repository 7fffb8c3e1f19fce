//! Network disks through a real highlanderd and the real qemu hook
//! (highlander-hook, fed domain XML as libvirt feeds it): declared at
//! `prepare`, leased with the guest's acquire, refused to a second guest
//! naming the holder, shared when read-only or shareable, kept across a
//! pause and a daemon restart, dropped at `release` only when nothing is
//! held. rbd, nbd and iscsi disks need no server: their identities come
//! from the XML. gluster:// runs end to end in tests/libvirt/netdisk.sh.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use testkit::daemon_harness::*;
use proto::client::ClientError;
use proto::protocol::{Action, Code, LeasesResult, Status, WireError};
use engine::Mode;

const RBD: &str = "<disk type='network' device='disk'><source protocol='rbd' name='pool/web'><host name='mon2' port='6789'/><host name='mon1'/></source><target dev='vda'/>{FLAGS}</disk>";
const RBD_ID: &str = "rbd:mon1:6789,mon2:6789/pool/web";
const NBD: &str = "<disk type='network' device='disk'><source protocol='nbd' name='exp'><host name='nbd.example' port='10809'/></source><target dev='vdb'/></disk>";
const ISCSI: &str = "<disk type='network' device='disk'><source protocol='iscsi' name='iqn.2013-06.com.example:store/1'><host name='10.0.0.9'/></source><target dev='vdc'/></disk>";

fn domain(name: &str, disks: &str) -> String {
    format!("<domain type='kvm'><name>{name}</name><uuid>{}</uuid><devices>{disks}</devices></domain>", uuid_for(name))
}

fn rbd(flags: &str) -> String {
    RBD.replace("{FLAGS}", flags)
}

/// The hook as libvirt installs it for the daemon `h`: in a hooks/qemu.d/
/// beside a qemu-highlander.conf naming `h`'s socket.
fn hook_for(h: &Host) -> PathBuf {
    let confdir = h.dir.join("libvirt");
    let dir = confdir.join("hooks/qemu.d");
    let hook = dir.join("highlander");
    if !hook.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(bin("highlander-hook"), &hook).unwrap();
        std::fs::write(confdir.join("qemu-highlander.conf"), format!("socket = \"{}\"\n", h.socket.display())).unwrap();
        std::fs::write(confdir.join("qemu.conf"), "lock_manager = \"highlander\"\n").unwrap();
    }
    hook
}

/// Runs the hook as libvirt does: `NAME OP SUBOP -`, the XML on stdin.
fn run_hook(hook: &Path, name: &str, op: &str, subop: &str, xml: &str) -> Output {
    let mut child = Command::new(hook).args([name, op, subop, "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `prepare begin`, which must succeed.
fn prepare(h: &Host, name: &str, disks: &str) {
    let o = run_hook(&hook_for(h), name, "prepare", "begin", &domain(name, disks));
    assert!(o.status.success(), "prepare {name}: {}", stderr(&o));
}

fn refused(r: Result<LeasesResult, ClientError>) -> WireError {
    match r {
        Err(ClientError::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn identities(r: &LeasesResult) -> Vec<(String, Mode)> {
    let mut v: Vec<(String, Mode)> = r.leases.iter().map(|l| (l.identity.clone(), l.mode)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn two_daemons(name: &str) -> (PathBuf, Host, Host) {
    let dir = scratch(&format!("netdisk-{name}"));
    let ls = dir.join("ls");
    init_lockspace(&ls, 300, 64);
    let a = Host::start(&dir, &ls, 1, "");
    let b = Host::start(&dir, &ls, 2, "");
    (dir, a, b)
}

#[test]
fn declared_disks_are_leased_with_the_acquire_and_refused_to_a_second_guest_naming_the_holder() {
    let (_dir, a, b) = two_daemons("refused");
    prepare(&a, "vm1", &format!("{}{NBD}{ISCSI}", rbd("")));
    let g1 = GuestProc::spawn();
    let _h1 = a.register(g1.pid(), "vm1", Action::Default);
    // libvirt's resume of a domain without file disks: no resources.
    let r = a.acquire(g1.pid(), &[], None).unwrap();
    assert_eq!(
        identities(&r),
        [("iscsi:iqn.2013-06.com.example:store/1".to_owned(), Mode::Exclusive), ("nbd:nbd.example:10809/exp".to_owned(), Mode::Exclusive), (RBD_ID.to_owned(), Mode::Exclusive)]
    );
    assert!(r.state.as_deref().is_some_and(|s| s.contains(RBD_ID) && s.contains("nbd:nbd.example")), "{:?}", r.state);
    let s: Status = a.status();
    let declared = s.declared.iter().find(|d| d.name == "vm1").expect("vm1 is declared");
    assert!(declared.disks.iter().all(|d| d.leased), "{declared:?}");

    // The same rbd image (monitors listed the other way) on the other host.
    prepare(&b, "vm2", "<disk type='network' device='disk'><source protocol='rbd' name='pool/web'><host name='mon1' port='6789'/><host name='mon2'/></source><target dev='vdz'/></disk>");
    let g2 = GuestProc::spawn();
    let _h2 = b.register(g2.pid(), "vm2", Action::Default);
    let e = refused(b.acquire(g2.pid(), &[], None));
    assert_eq!(e.code, Code::Busy, "{e:?}");
    assert!(e.message.contains("vm1") && e.message.contains("host-1") && e.message.contains("rbd://mon1:6789/pool/web (vdz)"), "{}", e.message);
    // The same nbd export for another guest on the same host, with a file disk: all or nothing.
    let file = a.dir.join("vm3.img");
    std::fs::write(&file, b"disk").unwrap();
    prepare(&a, "vm3", NBD);
    let g3 = GuestProc::spawn();
    let _h3 = a.register(g3.pid(), "vm3", Action::Default);
    let e = refused(a.acquire(g3.pid(), &[(file.to_str().unwrap(), Mode::Exclusive)], None));
    assert!(e.code == Code::Busy && e.message.contains("vm1"), "{e:?}");
    assert!(a.status().guests.iter().find(|g| g.name == "vm3").unwrap().leases.is_empty(), "a refused acquire holds nothing");
}

#[test]
fn read_only_and_shareable_network_disks_are_shared() {
    let (_dir, a, b) = two_daemons("shared");
    prepare(&a, "vm1", &rbd("<shareable/>"));
    prepare(&b, "vm2", &rbd("<readonly/>"));
    prepare(&b, "vm3", &rbd(""));
    let (g1, g2, g3) = (GuestProc::spawn(), GuestProc::spawn(), GuestProc::spawn());
    let _h = (a.register(g1.pid(), "vm1", Action::Default), b.register(g2.pid(), "vm2", Action::Default), b.register(g3.pid(), "vm3", Action::Default));
    assert_eq!(identities(&a.acquire(g1.pid(), &[], None).unwrap()), [(RBD_ID.to_owned(), Mode::Shared)]);
    assert_eq!(identities(&b.acquire(g2.pid(), &[], None).unwrap()), [(RBD_ID.to_owned(), Mode::Shared)]);
    let e = refused(b.acquire(g3.pid(), &[], None));
    assert_eq!(e.code, Code::Busy, "a writer is refused while readers share it: {e:?}");
}

#[test]
fn a_pause_hands_the_versions_to_the_resume_and_a_restarted_daemon_keeps_the_declaration() {
    let (_dir, mut a, b) = two_daemons("state");
    prepare(&a, "vm1", &rbd(""));
    let g1 = GuestProc::spawn();
    let _h1 = a.register(g1.pid(), "vm1", Action::Default);
    a.acquire(g1.pid(), &[], None).unwrap();
    let paused = a.release_all(g1.pid());
    let state = paused.state.expect("a pause returns the lock state");
    assert!(state.contains(RBD_ID), "{state}");
    assert!(a.status().leases.is_empty(), "paused: nothing held");
    assert_eq!(identities(&a.acquire(g1.pid(), &[], Some(state.clone())).unwrap()), [(RBD_ID.to_owned(), Mode::Exclusive)]);
    // While paused, another host takes and drops the image: the resume sees it.
    a.release_all(g1.pid());
    prepare(&b, "vm2", &rbd(""));
    let g2 = GuestProc::spawn();
    let _h2 = b.register(g2.pid(), "vm2", Action::Default);
    b.acquire(g2.pid(), &[], None).unwrap();
    b.release_all(g2.pid());
    assert_eq!(refused(a.acquire(g1.pid(), &[], Some(state))).code, Code::VersionMismatch);

    a.terminate();
    a.spawn();
    assert!(a.status().declared.iter().any(|d| d.name == "vm1" && d.disks[0].identity.as_deref() == Some(RBD_ID)), "declaration survives a restart");
    assert_eq!(identities(&a.acquire(g1.pid(), &[], None).unwrap()), [(RBD_ID.to_owned(), Mode::Exclusive)]);
}

#[test]
fn release_undeclares_only_what_this_host_holds_nothing_for() {
    let (_dir, a, _b) = two_daemons("undeclare");
    let hook = hook_for(&a);
    let xml = domain("vm1", &rbd(""));
    prepare(&a, "vm1", &rbd(""));
    let g1 = GuestProc::spawn();
    let _h1 = a.register(g1.pid(), "vm1", Action::Default);
    a.acquire(g1.pid(), &[], None).unwrap();
    let o = run_hook(&hook, "vm1", "release", "end", &xml);
    assert!(o.status.success(), "release never fails: {}", stderr(&o));
    assert!(stderr(&o).contains("declaration kept") && stderr(&o).contains("vm1"), "{}", stderr(&o));
    assert!(a.status().declared.iter().any(|d| d.name == "vm1"));
    a.release_all(g1.pid());
    let o = run_hook(&hook, "vm1", "release", "end", &xml);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    assert!(a.status().declared.is_empty());
    assert!(a.acquire(g1.pid(), &[], None).unwrap().leases.is_empty(), "undeclared: nothing more to lease");
    // libvirt's `release` right after the guest's process died: dropped,
    // whether or not the daemon has noticed the exit yet.
    prepare(&a, "vm2", NBD);
    let g2 = GuestProc::spawn();
    let _h2 = a.register(g2.pid(), "vm2", Action::Default);
    assert_eq!(a.acquire(g2.pid(), &[], None).unwrap().leases.len(), 1);
    drop(g2);
    let o = run_hook(&hook, "vm2", "release", "end", &domain("vm2", NBD));
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    assert!(a.status().declared.is_empty() && a.status().leases.is_empty());
    // A libvirt that does not use highlander: the hook stays out of the way.
    std::fs::write(a.dir.join("libvirt/qemu.conf"), "lock_manager = \"sanlock\"\n").unwrap();
    let o = run_hook(&hook, "vm1", "prepare", "begin", "<not-xml");
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    std::fs::write(a.dir.join("libvirt/qemu.conf"), "lock_manager = \"highlander\"\n").unwrap();
    // Ops that are not ours: nothing done, success.
    for (op, sub) in [("start", "begin"), ("started", "begin"), ("stopped", "end"), ("release", "begin")] {
        assert!(run_hook(&hook, "vm1", op, sub, "not even XML").status.success(), "{op} {sub}");
    }
}

#[test]
fn bad_input_and_a_daemon_that_is_down() {
    let (_dir, mut a, _b) = two_daemons("bad");
    let hook = hook_for(&a);
    // A protocol without an identity rule: kept, reported, no lease, no failure.
    let http = "<disk type='network' device='cdrom'><source protocol='http' name='/iso/boot.iso'><host name='mirror'/></source><target dev='sda'/><readonly/></disk>";
    let o = run_hook(&hook, "vm1", "prepare", "begin", &domain("vm1", &format!("{http}{NBD}")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("network disk sda (http://mirror//iso/boot.iso) gets no lease: protocol \"http\" has no identity rule"), "{}", stderr(&o));
    let s = a.status();
    let d = &s.declared.iter().find(|d| d.name == "vm1").unwrap().disks;
    assert_eq!(d.iter().map(|d| (d.target.as_str(), d.identity.is_some())).collect::<Vec<_>>(), [("sda", false), ("vdb", true)]);
    // An unnameable disk of a known protocol fails the start, naming the disk.
    let o = run_hook(&hook, "vm2", "prepare", "begin", &domain("vm2", "<disk type='network'><source protocol='rbd' name='pool/img'/><target dev='vdq'/></disk>"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("highlander: domain vm2: prepare begin: domain \"vm2\": network disk vdq (rbd): no <host> monitors"), "{}", stderr(&o));
    // Malformed XML: a clear error at start, never at reconnect.
    let o = run_hook(&hook, "vm3", "prepare", "begin", "<domain><devices>");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the domain XML on stdin: the domain XML is not well-formed"), "{}", stderr(&o));
    let o = run_hook(&hook, "vm3", "reconnect", "begin", "<domain><devices>");
    assert!(o.status.success() && stderr(&o).contains("not well-formed"), "{}", stderr(&o));
    let o = run_hook(&hook, "vm3", "prepare", "begin", "<domain><devices/></domain>");
    assert!(!o.status.success() && stderr(&o).contains("has no <uuid>"), "{}", stderr(&o));

    // The daemon down: a start fails saying so, a reconnect succeeds.
    a.terminate();
    let xml = domain("vm1", NBD);
    let o = run_hook(&hook, "vm1", "prepare", "begin", &xml);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("highlanderd is not running or not reachable at") && e.contains("the guest was not started (its network disks would have run without leases)"), "{e}");
    for (op, sub) in [("migrate", "begin"), ("restore", "begin")] {
        assert_eq!(run_hook(&hook, "vm1", op, sub, &xml).status.code(), Some(1), "{op}");
    }
    let o = run_hook(&hook, "vm1", "reconnect", "begin", &xml);
    assert!(o.status.success(), "reconnect must never fail");
    assert!(stderr(&o).contains("highlanderd is not running") && stderr(&o).contains("the guest keeps running"), "{}", stderr(&o));
    assert!(run_hook(&hook, "vm1", "release", "end", &xml).status.success());
}

#[test]
fn status_shows_which_running_guests_network_disks_are_leased() {
    let (dir, a, _b) = two_daemons("status");
    prepare(&a, "vm1", &format!("{}{NBD}", rbd("")));
    let g1 = GuestProc::spawn();
    let _h1 = a.register(g1.pid(), "vm1", Action::Default);
    a.acquire(g1.pid(), &[], None).unwrap();
    // libvirt's live files: vm1 as declared, plus a hot-plugged iscsi disk;
    // vm9 started before the hook was installed.
    let run = dir.join("run-libvirt-qemu");
    std::fs::create_dir_all(&run).unwrap();
    let live = |name: &str, disks: &str| format!("<domstatus state='running' pid='1'>{}</domstatus>", domain(name, disks));
    std::fs::write(run.join("vm1.xml"), live("vm1", &format!("{}{NBD}{ISCSI}", rbd("")))).unwrap();
    std::fs::write(run.join("vm9.xml"), live("vm9", NBD)).unwrap();
    let out = Command::new(bin("highlander")).args(["status", "--socket"]).arg(&a.socket).arg("--libvirt-run-dir").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |what: &str| text.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no line with {what:?} in:\n{text}")).to_owned();
    assert!(line("vda rbd://mon2:6789/pool/web").contains(&format!("leased exclusive ({RBD_ID})")), "{text}");
    assert!(line("vdb nbd://nbd.example:10809/exp").contains("leased exclusive"), "{text}");
    assert!(line("vdc iscsi://10.0.0.9/").contains("NOT LEASED: not declared (hot-plugged"), "{text}");
    assert!(line("guest \"vm9\"").contains("NOT LEASED: not declared"), "{text}");
    // Paused: declared, not held.
    a.release_all(g1.pid());
    let out = Command::new(bin("highlander")).args(["status", "--socket"]).arg(&a.socket).arg("--libvirt-run-dir").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains("vda rbd://") && l.contains("declared, NOT HELD now")), "{text}");
}
