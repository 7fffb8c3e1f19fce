//! Monitoring against a real highlanderd on a real lockspace file:
//! `highlander check` as Nagios and Icinga run it (status line, perfdata,
//! exit codes), on a healthy daemon, with thresholds, with failing storage
//! and with the daemon stopped.
//! Binaries come from `cargo build --workspace --all-targets`.

use testkit::daemon_harness as harness;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use engine::Mode;
use harness::*;
use proto::protocol::{Action, Health};

fn highlander(args: &[&str]) -> Output {
    Command::new(bin("highlander")).args(args).output().unwrap()
}

fn disk(dir: &std::path::Path, name: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, b"disk").unwrap();
    p.display().to_string()
}

/// One perfdata item: value, unit, warn and crit fields.
#[derive(Debug)]
struct Perf {
    value: f64,
    uom: String,
    warn: String,
    crit: String,
}

/// A check's one line: its state word, and its perfdata by label, parsed
/// by the rules of the monitoring-plugins guidelines
/// (`'label'=value[UOM];[warn];[crit];[min];[max]`, space-separated).
fn parse_check(o: &Output) -> (String, String, BTreeMap<String, Perf>) {
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    let line = out.trim_end();
    let (text, perf) = line.split_once(" | ").unwrap_or((line, ""));
    let state = text.strip_prefix("HIGHLANDER ").and_then(|t| t.split(" - ").next()).unwrap_or_else(|| panic!("not a status line: {line}")).to_owned();
    let mut items = BTreeMap::new();
    for item in perf.split_whitespace() {
        let (label, rest) = item.split_once('=').unwrap_or_else(|| panic!("perfdata item {item:?} has no `=`"));
        let fields: Vec<&str> = rest.split(';').collect();
        let number_end = fields[0].find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(fields[0].len());
        let value: f64 = fields[0][..number_end].parse().unwrap_or_else(|e| panic!("perfdata {item:?}: value: {e}"));
        let uom = fields[0][number_end..].to_owned();
        assert!(["", "ms", "s"].contains(&uom.as_str()), "unit {uom:?} in {item:?}");
        for f in fields.iter().skip(1) {
            assert!(f.is_empty() || f.trim_start_matches('@').split(':').all(|n| n.is_empty() || n == "~" || n.parse::<f64>().is_ok()), "range {f:?} in {item:?}");
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_owned();
        assert!(items.insert(label.to_owned(), Perf { value, uom, warn: field(1), crit: field(2) }).is_none(), "label {label} twice");
    }
    (state, text.to_owned(), items)
}

#[test]
fn check_judges_a_real_daemon_as_a_monitoring_plugin() {
    let dir = scratch("check");
    let ls = dir.join("ls");
    let io_ms = 1000;
    init_lockspace(&ls, io_ms, 16);
    let mut a = Host::start(&dir, &ls, 1, "");
    let socket = a.socket.display().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--socket", &socket];
        args.extend_from_slice(extra);
        highlander(&args)
    };

    // Healthy, one guest holding one lease: OK, and every perfdata item.
    let g = GuestProc::spawn();
    let _handle = a.register(g.pid(), "vm1", Action::Poweroff);
    a.acquire(g.pid(), &[(&disk(&dir, "vm1.img"), Mode::Exclusive)], None).unwrap();
    let o = check(&[]);
    let (state, text, perf) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(0), "OK"), "{text}");
    assert_eq!(text, "HIGHLANDER OK - 1 lockspace healthy, 1 lease, 1 guest");
    let age = &perf["renewal_age_default"];
    assert_eq!(age.uom, "ms");
    // Renewals are due every io_timeout/2: the last one is younger than the warning default.
    assert!(age.value < io_ms as f64, "{age:?}");
    assert_eq!((age.warn.as_str(), age.crit.as_str()), ("1000", "3000"), "defaults from io_timeout");
    for (label, want) in [("leases", 1.0), ("guests", 1.0), ("hosts_live", 1.0), ("hosts_failing", 0.0), ("hosts_dead", 0.0), ("pending_releases", 0.0)] {
        assert_eq!(perf[label].value, want, "{label}");
    }
    let fence_in = &perf["fence_in_default"];
    assert!(fence_in.uom == "s" && fence_in.value > 2.0 && fence_in.value <= 3.5, "fencing would begin 3.5 io_timeouts after the last renewal: {fence_in:?}");

    // Thresholds force WARNING and CRITICAL (`@` alerts inside the range).
    let o = check(&["-w", "@0:1000000"]);
    let (state, text, perf) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(1), "WARNING"), "{text}");
    assert!(text.contains("lockspace \"default\": last renewal ") && text.contains("warning range @0:1000000 ms"), "{text}");
    assert_eq!(perf["renewal_age_default"].warn, "@0:1000000");
    let o = check(&["-w", "@0:1000000", "-c", "@0:1000000"]);
    let (state, text, _) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(2), "CRITICAL"), "{text}");
    let o = check(&["-c", "10000000:"]);
    assert_eq!(o.status.code(), Some(2), "an age below the start of `N:` is critical");
    let o = check(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("check --json is JSON");
    assert_eq!((v["state"].as_str(), v["exit_code"].as_u64()), (Some("OK"), Some(0)));
    assert!(v["line"].as_str().unwrap().starts_with("HIGHLANDER OK - "), "{v}");
    assert!(v["perfdata"].as_array().unwrap().iter().any(|p| p["label"] == "renewal_age_default"), "{v}");

    // Storage fails: failing is WARNING (with the fencing time), lost is CRITICAL.
    std::fs::write(&a.fault, "fail").unwrap();
    wait_for("the lockspace to fail", Duration::from_secs(10), || (a.status().lockspaces[0].health == Health::Failing).then_some(()));
    let o = check(&["-c", "100000"]);
    let (state, text, _) = parse_check(&o);
    // It may be lost already when the check asks: then it is CRITICAL, and says so.
    match state.as_str() {
        "WARNING" => assert!(o.status.code() == Some(1) && text.contains("lockspace \"default\" FAILING: renewals fail (") && text.contains("guests are fenced in"), "{text}"),
        _ => assert!(o.status.code() == Some(2) && text.contains("LOST"), "{text}"),
    }
    wait_for("the lockspace to be lost", Duration::from_secs(10), || (a.status().lockspaces[0].health == Health::Lost).then_some(()));
    let o = check(&[]);
    let (state, text, perf) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(2), "CRITICAL"), "{text}");
    assert!(text.starts_with("HIGHLANDER CRITICAL - lockspace \"default\" LOST: ") && text.ends_with("0 of 1 lockspace healthy, 0 leases, 0 guests"), "the guest was fenced: {text}");
    assert_eq!(perf["fence_in_default"].value, 0.0);
    std::fs::remove_file(&a.fault).unwrap();
    wait_for("the lockspace to rejoin", Duration::from_secs(20), || (check(&[]).status.code() == Some(0)).then_some(()));

    // The daemon stopped: CRITICAL, saying so, without perfdata.
    a.terminate();
    let o = check(&[]);
    let (state, text, perf) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(2), "CRITICAL"), "{text}");
    assert!(text.contains("highlanderd is not running") && text.contains(&socket), "{text}");
    assert!(perf.is_empty());

    // A bad command line is UNKNOWN, daemon or not.
    let o = check(&["-w", "ten"]);
    let (state, text, _) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(3), "UNKNOWN"), "{text}");
}
