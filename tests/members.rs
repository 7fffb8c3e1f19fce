//! A lockspace on a set of 3 devices, as users see it: real highlanderd
//! processes on three lockspace files, the fault file standing in for a
//! hung or failing device, and the CLI's status, check, metrics, init and
//! dump. Binaries come from `cargo build --workspace --all-targets`.

use testkit::daemon_harness as harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engine::Mode;
use harness::*;
use proto::protocol::{Action, Health, MemberHealth, Status};

const IO_MS: u64 = 300;

/// Three fresh member files m1 m2 m3 of one lockspace "default" in a fresh dir.
fn fresh_set(name: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = scratch(&format!("members-{name}"));
    let members: Vec<PathBuf> = (1..=3).map(|k| dir.join(format!("m{k}"))).collect();
    init_set(&members, "default");
    (dir, members)
}

fn init_set(members: &[PathBuf], name: &str) {
    let mut o = engine::InitOptions::new(name);
    o.max_hosts = 8;
    o.resource_slots = 32;
    o.io_timeout = Duration::from_millis(IO_MS);
    engine::init::init_members(members, &o).expect("init a set");
}

/// What `lockspace = ` names for the set: every member, space-separated.
/// (The harness writes `lockspace = {path}`, so a path holding spaces names a set.)
fn set_line(members: &[PathBuf]) -> PathBuf {
    PathBuf::from(members.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" "))
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(bin("highlander")).args(args).output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn socket(h: &Host) -> &str {
    h.socket.to_str().unwrap()
}

/// `highlander status --json`, parsed as the protocol's Status.
fn status_json(h: &Host) -> Status {
    let out = cli(&["status", "--json", "--socket", socket(h)]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json does not parse: {e}\n{}", text(&out)))
}

fn disk(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, b"disk").unwrap();
    p.display().to_string()
}

fn member_states(s: &Status) -> Vec<MemberHealth> {
    s.lockspaces[0].members.iter().map(|m| m.state).collect()
}

#[test]
fn a_hung_member_leaves_the_lockspace_running_degraded_and_check_warns() {
    let (dir, members) = fresh_set("hung");
    let a = Host::start(&dir, &set_line(&members), 1, "");
    let g = GuestProc::spawn();
    let _h = a.register(g.pid(), "vm1", Action::Default);
    let d1 = disk(&dir, "d1.img");
    a.acquire(g.pid(), &[(&d1, Mode::Exclusive)], None).expect("acquire on a healthy set");

    let s = status_json(&a);
    let ls = &s.lockspaces[0];
    assert_eq!(ls.health, Health::Healthy);
    assert_eq!(ls.members.len(), 3, "{ls:?}");
    for (k, m) in ls.members.iter().enumerate() {
        assert_eq!((m.member, m.path.as_str(), m.state), (k as u32 + 1, members[k].to_str().unwrap(), MemberHealth::Ok), "{ls:?}");
    }
    assert!(!ls.degraded());
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("members_ok_default=3;"), "{}", text(&out));

    // Member 2 stops answering: its I/Os are held (for an hour).
    std::fs::write(&a.fault, "hang member 2\n").unwrap();
    let s = wait_for("member 2 to show hung", Duration::from_secs(10), || {
        let s = a.status();
        assert_eq!(s.lockspaces[0].health, Health::Healthy, "the lockspace failed while member 2 hung: {:?}", s.lockspaces[0]);
        (member_states(&s) == [MemberHealth::Ok, MemberHealth::Hung, MemberHealth::Ok]).then_some(s)
    });
    assert!(s.lockspaces[0].degraded());
    // The host lease keeps being renewed on the other two: healthy for
    // well over 5 io_timeouts (fencing would begin at 3.5), renewals landing.
    let hung_at = Instant::now();
    let mut renewals_seen = 0;
    let mut last_age = u64::MAX;
    while hung_at.elapsed() < Duration::from_millis(6 * IO_MS) {
        let ls = a.status().lockspaces.remove(0);
        assert_eq!(ls.health, Health::Healthy, "health changed with one member of three hung: {ls:?}");
        assert_eq!(ls.members[1].state, MemberHealth::Hung, "{ls:?}");
        let age = ls.renewal_age_ms.unwrap();
        assert!(age < 3 * IO_MS, "no renewal landed for {age} ms with one member of three hung (fencing begins at 3.5 io_timeouts): {ls:?}");
        if age < last_age {
            renewals_seen += 1;
        }
        last_age = age;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(renewals_seen >= 5, "only {renewals_seen} renewals seen in {:?}", hung_at.elapsed());

    // Leases are still won and released.
    let d2 = disk(&dir, "d2.img");
    a.acquire(g.pid(), &[(&d2, Mode::Exclusive)], None).expect("acquire with member 2 hung");
    let released = a.release_all(g.pid());
    assert_eq!(released.leases.len(), 2, "{released:?}");
    assert!(a.status().leases.is_empty(), "leases left after the release");
    a.acquire(g.pid(), &[(&d1, Mode::Exclusive)], None).expect("acquire again with member 2 hung");

    // What users read: status, check, metrics.
    let s = status_json(&a);
    let m2 = &s.lockspaces[0].members[1];
    assert_eq!(m2.state, MemberHealth::Hung);
    assert!(m2.hung_for_ms.is_some_and(|ms| ms >= IO_MS), "{m2:?}");
    let out = cli(&["status", "--socket", socket(&a)]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("lockspace \"default\" on 3 devices (DEGRADED: 2 answer)"), "{t}");
    assert!(t.contains(&format!("device 1 of 3 {}: ok", members[0].display())), "{t}");
    assert!(t.contains(&format!("device 2 of 3 {}: HUNG for ", members[1].display())) && t.contains("the lockspace runs on the other two"), "{t}");
    assert!(t.contains("DEGRADED: 2 of 3 devices answer") && t.contains("one more device lost stops the lockspace"), "{t}");

    let out = cli(&["check", "--socket", socket(&a)]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "check must WARN on a degraded set: {t}");
    assert!(t.starts_with("HIGHLANDER WARNING - lockspace \"default\" DEGRADED: device 2 of 3"), "{t}");
    assert!(t.contains(&members[1].display().to_string()) && t.contains("members_ok_default=2;"), "{t}");

    let log = wait_for("the hang in the log", Duration::from_secs(10), || Some(a.log_text()).filter(|l| l.contains("is hung")));
    assert!(log.contains(&format!("lockspace \"default\": device 2 of 3 ({}) is hung", members[1].display())) && log.contains("the lockspace runs on 2 of 3 devices (DEGRADED)"), "{log}");

    let out = cli(&["metrics", "--socket", socket(&a)]);
    let t = text(&out);
    let up = |k: usize| format!("highlander_lockspace_member_up{{lockspace=\"default\",member=\"{k}\",path=\"{}\"}}", members[k - 1].display());
    assert!(t.contains(&format!("{} 1", up(1))) && t.contains(&format!("{} 0", up(2))) && t.contains(&format!("{} 1", up(3))), "{t}");
}

#[test]
fn two_failing_members_of_three_fail_the_host_lease() {
    let (dir, members) = fresh_set("nomajority");
    let a = Host::start(&dir, &set_line(&members), 1, "");
    let g = GuestProc::spawn();
    let _h = a.register(g.pid(), "vm1", Action::Ignore);
    a.acquire(g.pid(), &[(&disk(&dir, "d1.img"), Mode::Exclusive)], None).expect("acquire");

    // One failing member is carried by the other two...
    std::fs::write(&a.fault, "fail member 2\n").unwrap();
    let until = Instant::now() + Duration::from_millis(6 * IO_MS);
    let mut renewed_since = false;
    let start_age = a.status().lockspaces[0].renewal_age_ms.unwrap();
    while Instant::now() < until {
        let ls = a.status().lockspaces.remove(0);
        assert_eq!(ls.health, Health::Healthy, "health changed with one member of three failing: {ls:?}");
        renewed_since |= ls.renewal_age_ms.unwrap() < start_age;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(renewed_since, "no renewal landed with member 2 failing");
    let ls = a.status().lockspaces.remove(0);
    let m2 = ls.members.iter().find(|m| m.member == 2).expect("member 2 in status");
    assert_eq!(m2.state, MemberHealth::Failing, "{ls:?}");
    assert!(m2.error.as_deref().is_some_and(|e| e.contains("injected fault")), "{m2:?}");
    assert!(ls.degraded(), "{ls:?}");

    // ...two are not: no majority, the host lease fails.
    std::fs::write(&a.fault, "fail member 2 3\n").unwrap();
    let ls = wait_for("the lockspace to fail", Duration::from_secs(10), || {
        let ls = a.status().lockspaces.remove(0);
        (ls.health != Health::Healthy).then_some(ls)
    });
    assert_eq!(ls.health, Health::Failing, "{ls:?}");
    let why = ls.error.clone().unwrap_or_default();
    assert!(why.contains("a majority is 2") && why.contains("member 2") && why.contains("member 3"), "{why}");
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("FAILING"), "{}", text(&out));

    // Back to a majority: healthy again.
    std::fs::write(&a.fault, "fail member 3\n").unwrap();
    wait_for("the lockspace to recover", Duration::from_secs(10), || (a.status().lockspaces[0].health == Health::Healthy).then_some(()));
}

#[test]
fn a_missing_member_starts_degraded_and_two_missing_stop_start_up() {
    // The first member gone: the set starts on the other two.
    let (dir, members) = fresh_set("missing");
    let away = dir.join("m1-away");
    std::fs::rename(&members[0], &away).unwrap();
    let mut a = Host::start(&dir, &set_line(&members), 1, "");
    let s = status_json(&a);
    let ls = &s.lockspaces[0];
    assert_eq!(ls.health, Health::Healthy, "{ls:?}");
    assert_eq!(member_states(&s), [MemberHealth::Missing, MemberHealth::Ok, MemberHealth::Ok], "{ls:?}");
    assert_eq!(ls.members[0].path, members[0].display().to_string());
    assert!(ls.members[0].error.as_deref().is_some_and(|e| e.contains("No such file")), "{ls:?}");
    let g = GuestProc::spawn();
    let _h = a.register(g.pid(), "vm1", Action::Default);
    a.acquire(g.pid(), &[(&disk(&dir, "d1.img"), Mode::Exclusive)], None).expect("acquire on two of three");
    let t = text(&cli(&["status", "--socket", socket(&a)]));
    assert!(t.contains(&format!("device 1 of 3 {}: MISSING", members[0].display())) && t.contains("DEGRADED"), "{t}");
    assert!(t.contains("a device missing at start is used again once highlanderd restarts"), "{t}");
    let log = wait_for("the missing device in the log", Duration::from_secs(10), || Some(a.log_text()).filter(|l| l.contains("is missing")));
    assert!(log.contains(&format!("lockspace \"default\": device 1 of 3 ({}) is missing", members[0].display())), "{log}");
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("DEGRADED: device 1 of 3") && text(&out).contains("missing"), "{}", text(&out));
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&a.conf).arg("--check").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "--check passes a set that can start degraded: {t}");
    assert!(t.contains("lockspace \"default\" on 3 devices (") && t.contains(&format!("DEGRADED: {} cannot be opened (", members[0].display())) && t.contains("it starts on the other 2 devices"), "{t}");
    // The device back, and a restart: the set is whole again, the lease kept.
    std::fs::rename(&away, &members[0]).unwrap();
    a.terminate();
    a.spawn();
    let s = status_json(&a);
    assert_eq!(member_states(&s), [MemberHealth::Ok; 3], "{:?}", s.lockspaces[0]);
    assert_eq!(s.leases.len(), 1, "{:?}", s.leases);
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    drop(a);

    // A member unreadable (not just absent) counts as missing too.
    let (dir, members) = fresh_set("unreadable");
    std::fs::write(&members[2], b"").unwrap();
    let a = Host::start(&dir, &set_line(&members), 1, "");
    let s = status_json(&a);
    assert_eq!(member_states(&s), [MemberHealth::Ok, MemberHealth::Ok, MemberHealth::Missing], "{:?}", s.lockspaces[0]);
    drop(a);

    // Two of three gone: no majority to start on; the error names the set.
    let (dir, members) = fresh_set("twomissing");
    std::fs::remove_file(&members[1]).unwrap();
    std::fs::remove_file(&members[2]).unwrap();
    let conf = dir.join("hl.conf");
    std::fs::write(&conf, format!("host_id = 1\nhost_name = h1\nlockspace = {}\nsocket = {}\nstate_dir = {}\n", set_line(&members).display(), dir.join("hl.sock").display(), dir.join("state").display())).unwrap();
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hl.conf:3:"), "{err}");
    assert!(err.contains("only 1 of the 3 devices of lockspace \"default\" could be opened, and a majority is 2"), "{err}");
    assert!(err.contains(&members[1].display().to_string()) && err.contains(&members[2].display().to_string()), "{err}");
}

/// `highlanderd --config CONF --check`: (exit code, stderr).
fn check_conf(dir: &Path, lockspace_line: &str) -> (Option<i32>, String) {
    let conf = dir.join("check.conf");
    std::fs::write(&conf, format!("host_id = 1\nlockspace = {lockspace_line}\nsocket = {}\nstate_dir = {}\n", dir.join("c.sock").display(), dir.join("c-state").display())).unwrap();
    let out = Command::new(bin("highlanderd")).arg("--config").arg(&conf).arg("--check").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sets_named_wrongly_in_the_configuration_are_refused_saying_what_to_do() {
    let (dir, m) = fresh_set("config");
    let p = |v: &[&PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");

    let (code, err) = check_conf(&dir, &p(&[&m[0], &m[1], &m[2]]));
    assert_eq!(code, Some(0), "the right set is accepted: {err}");
    // Any order will do.
    let (code, err) = check_conf(&dir, &p(&[&m[2], &m[0], &m[1]]));
    assert_eq!(code, Some(0), "a set in another order is accepted: {err}");

    let (code, err) = check_conf(&dir, &p(&[&m[0], &m[1]]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check.conf:2: `lockspace`") && err.contains("names 2 devices; a lockspace is on 1, 3 or 5"), "{err}");

    let (code, err) = check_conf(&dir, &p(&[&m[0], &m[1], &m[0]]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check.conf:2:") && err.contains(&format!("names {} twice (devices 1 and 3); name each device of the set once", m[0].display())), "{err}");

    // The same device twice under two names.
    let link = dir.join("m2-again");
    std::os::unix::fs::symlink(&m[1], &link).unwrap();
    let (code, err) = check_conf(&dir, &p(&[&m[0], &m[1], &link]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check.conf:2:") && err.contains("are both member 2") && err.contains("named twice"), "{err}");

    // A member of another lockspace's set.
    let other: Vec<PathBuf> = (1..=3).map(|k| dir.join(format!("other{k}"))).collect();
    init_set(&other, "other");
    let (code, err) = check_conf(&dir, &p(&[&m[0], &m[1], &other[2]]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check.conf:2:") && err.contains(&format!("{} is not a member of lockspace \"default\"", other[2].display())), "{err}");

    // The set listed twice, in another order.
    let (code, err) = check_conf(&dir, &format!("{}\nlockspace = {}", p(&[&m[0], &m[1], &m[2]]), p(&[&m[2], &m[1], &m[0]])));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check.conf:3:") && err.contains("is listed already on line 2") && err.contains("both name lockspace \"default\"") && err.contains("on its 3 devices; list each lockspace once, on one `lockspace =` line"), "{err}");

    // One member named alone.
    let (code, err) = check_conf(&dir, &p(&[&m[1]]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("check.conf:2:") && err.contains("is member 2 of the 3 devices of lockspace \"default\"; name all of them (`lockspace = PATH1 PATH2 PATH3`"), "{err}");
}

#[test]
fn cli_initialises_a_set_and_dump_names_each_member() {
    let dir = scratch("members-cli");
    let m: Vec<String> = (1..=3).map(|k| dir.join(format!("m{k}")).display().to_string()).collect();
    let out = cli(&["lockspace", "init", &m[0], &m[1], &m[2], "--name", "trio", "--max-hosts", "4", "--resources", "8", "--io-timeout", "1"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.starts_with(&format!("initialised lockspace \"trio\" on 3 devices: {}, {}, {}", m[0], m[1], m[2])), "{t}");
    assert!(t.contains(&format!("lockspace = {} {} {}", m[0], m[1], m[2])), "{t}");
    for (k, path) in m.iter().enumerate() {
        let out = cli(&["dump", path, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((v["name"].as_str(), v["member"].as_u64(), v["members"].as_u64()), (Some("trio"), Some(k as u64 + 1), Some(3)), "{v}");
        let t = text(&cli(&["dump", path]));
        assert!(t.contains(&format!("device {} of the lockspace's 3", k + 1)), "{t}");
    }

    let out = cli(&["lockspace", "init", &m[0], &m[1], "--name", "duo", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("2 paths given; a lockspace is on 1 device, or on a set of 3 or 5"), "{}", text(&out));

    let out = cli(&["lockspace", "init", "--json", &m[0], &m[1], &m[2], "--name", "trio2", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["members"].as_u64(), Some(3), "{v}");
    assert_eq!(v["paths"].as_array().map(Vec::len), Some(3), "{v}");

    let help = text(&cli(&["lockspace", "init", "--help"]));
    assert!(help.contains("3 or 5") && help.contains("lockspace = /dev/mapper/array1-hl /dev/mapper/array2-hl /dev/mapper/array3-hl"), "{help}");
    let man = text(&cli(&["generate", "man"]));
    assert!(man.contains("array1\\-hl") || man.contains("array1-hl"), "the man page shows a set: {}", &man[..man.len().min(2000)]);
}

#[test]
fn who_and_clear_host_take_every_device_of_a_set() {
    let (_dir, m) = fresh_set("who");
    let m: Vec<&str> = m.iter().map(|p| p.to_str().unwrap()).collect();
    let out = cli(&["who", "--identity", "file:/nowhere.img", "--lockspace", m[0], "--lockspace", m[1], "--lockspace", m[2]]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("in lockspace \"default\": never locked"), "{}", text(&out));
    let out = cli(&["who", "--identity", "file:/nowhere.img", "--lockspace", m[1]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is member 2 of the 3 devices of lockspace \"default\""), "{}", text(&out));

    let out = cli(&["lockspace", "clear-host", m[0], m[1], m[2], "--host-id", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the slot of host id 3 in lockspace \"default\" was never used"), "{}", text(&out));
    let out = cli(&["lockspace", "clear-host", m[2], "--host-id", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is member 3 of the 3 devices of lockspace \"default\"; name all of them"), "{}", text(&out));
}

#[test]
fn a_hung_member_that_answers_again_is_ok_again() {
    let (dir, members) = fresh_set("recover");
    let a = Host::start(&dir, &set_line(&members), 1, "");
    // Each I/O of member 3 held 2 s: past its deadline, then it lands.
    std::fs::write(&a.fault, "hang member 3 2\n").unwrap();
    wait_for("member 3 to show hung", Duration::from_secs(10), || (member_states(&a.status()) == [MemberHealth::Ok, MemberHealth::Ok, MemberHealth::Hung]).then_some(()));
    std::fs::write(&a.fault, "").unwrap();
    wait_for("member 3 to answer again", Duration::from_secs(10), || {
        let s = a.status();
        assert_eq!(s.lockspaces[0].health, Health::Healthy, "{:?}", s.lockspaces[0]);
        (member_states(&s) == [MemberHealth::Ok; 3]).then_some(())
    });
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = wait_for("the recovery in the log", Duration::from_secs(10), || Some(a.log_text()).filter(|l| l.contains("answers again")));
    assert!(log.contains(&format!("device 3 of 3 ({}) answers again; 3 of 3 devices answer", members[2].display())), "{log}");
}

#[test]
fn five_devices_run_with_two_hung() {
    let dir = scratch("members-five");
    let members: Vec<PathBuf> = (1..=5).map(|k| dir.join(format!("m{k}"))).collect();
    init_set(&members, "five");
    let a = Host::start(&dir, &set_line(&members), 1, "");
    assert_eq!(member_states(&status_json(&a)), [MemberHealth::Ok; 5]);
    std::fs::write(&a.fault, "hang member 2\nhang member 5\n").unwrap();
    let want = [MemberHealth::Ok, MemberHealth::Hung, MemberHealth::Ok, MemberHealth::Ok, MemberHealth::Hung];
    wait_for("members 2 and 5 to show hung", Duration::from_secs(10), || (member_states(&a.status()) == want).then_some(()));
    let until = Instant::now() + Duration::from_millis(6 * IO_MS);
    while Instant::now() < until {
        let ls = a.status().lockspaces.remove(0);
        assert_eq!(ls.health, Health::Healthy, "health changed with two members of five hung: {ls:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let g = GuestProc::spawn();
    let _h = a.register(g.pid(), "vm1", Action::Default);
    a.acquire(g.pid(), &[(&disk(&dir, "d1.img"), Mode::Exclusive)], None).expect("acquire on three of five");
    let t = text(&cli(&["status", "--socket", socket(&a)]));
    assert!(t.contains("lockspace \"five\" on 5 devices (DEGRADED: 3 answer)"), "{t}");
    assert!(t.contains(&format!("device 5 of 5 {}: HUNG for ", members[4].display())) && t.contains("the lockspace runs on devices 1, 3, 4"), "{t}");
    assert!(t.contains("DEGRADED: 3 of 5 devices answer") && t.contains("one more device lost stops the lockspace"), "{t}");
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("DEGRADED: device 2 of 5") && text(&out).contains("device 5 of 5") && text(&out).contains("(3 of 5 devices answer)"), "{}", text(&out));
}

#[test]
fn a_one_device_lockspace_lists_no_members() {
    let dir = scratch("members-single");
    let ls = dir.join("ls");
    init_lockspace(&ls, IO_MS, 8);
    let a = Host::start(&dir, &ls, 1, "");
    let out = cli(&["status", "--json", "--socket", socket(&a)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["lockspaces"][0].get("members").is_none(), "{v}");
    let t = text(&cli(&["status", "--socket", socket(&a)]));
    assert!(t.contains(&format!("lockspace \"default\" at {}:", ls.display())) && !t.contains("device 1 of") && !t.contains("DEGRADED"), "{t}");
    let out = cli(&["check", "--socket", socket(&a)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("members_ok"), "{}", text(&out));
    let m = text(&cli(&["metrics", "--socket", socket(&a)]));
    assert!(!m.contains("highlander_lockspace_member_up{"), "{m}");
}
