//! Monitoring against a real highlanderd on a real lockspace file:
//! `highlander check` as Nagios and Icinga run it (status line, perfdata,
//! exit codes), on a healthy daemon, with thresholds, with failing storage
//! and with the daemon stopped; the Prometheus metrics scraped over HTTP
//! from `metrics_listen` and printed by `highlander metrics`.
//! Binaries come from `cargo build --workspace --all-targets`.

use testkit::daemon_harness as harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::Duration;

use engine::Mode;
use harness::*;
use proto::client::ClientError;
use proto::protocol::{Action, Code, Health};

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

/// A text exposition, parsed: its families (from `# TYPE`) and its samples
/// (`name{labels}` to value). Panics on what is not the format: OpenMetrics
/// (`# EOF` last, a counter family named without its `_total`), or with
/// `openmetrics` false the Prometheus text format 0.0.4 (counters named
/// with it, no `# EOF` or `# UNIT`), as node_exporter's textfile collector reads it.
struct Exposition {
    families: BTreeSet<(String, String)>,
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        Exposition::parse_as(text, true)
    }

    fn parse_as(text: &str, openmetrics: bool) -> Exposition {
        assert_eq!(text.ends_with("# EOF\n"), openmetrics, "only OpenMetrics ends with `# EOF`: {text}");
        assert!(openmetrics || !text.contains("# UNIT "), "{text}");
        let suffixes: &[&str] = if openmetrics { &["_total", "_bucket", "_count", "_sum", "_created"] } else { &["_bucket", "_count", "_sum"] };
        let mut families = BTreeSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| *l != "# EOF") {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                families.insert((name.to_owned(), kind.to_owned()));
            } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                assert!(line.split(' ').nth(2).is_some_and(|n| n.starts_with("highlander_")), "{line}");
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
                let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                let name = series.split('{').next().unwrap();
                assert!(series.find('{').is_none_or(|_| series.ends_with('}')), "{line}");
                let family = families.iter().find(|(f, _)| name == f || suffixes.iter().any(|sfx| name.strip_suffix(sfx) == Some(f)));
                assert!(family.is_some(), "sample {line} of no declared family");
                assert!(samples.insert(series.to_owned(), value).is_none(), "{series} twice");
            }
        }
        assert!(families.iter().all(|(f, _)| f.starts_with("highlander_")), "{families:?}");
        Exposition { families, samples }
    }

    fn get(&self, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| panic!("no {series} in {:#?}", self.samples))
    }

    fn or_zero(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

/// `highlander metrics --openmetrics` (or without, the Prometheus text format), parsed.
fn cli_metrics_as(h: &Host, openmetrics: bool) -> Exposition {
    let mut args = vec!["metrics", "--socket", h.socket.to_str().unwrap()];
    if openmetrics {
        args.push("--openmetrics");
    }
    let o = highlander(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Exposition::parse_as(&String::from_utf8(o.stdout).unwrap(), openmetrics)
}

fn cli_metrics(h: &Host) -> Exposition {
    cli_metrics_as(h, false)
}

/// One HTTP/1.0 request to `addr`: the status line, headers and body.
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {answer:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

#[test]
fn metrics_are_scraped_over_http_and_match_the_cli() {
    let dir = scratch("metrics");
    let ls = dir.join("ls");
    init_lockspace(&ls, 300, 16);
    // Port 0: the daemon picks a free port and status names it.
    let a = Host::start(&dir, &ls, 1, "metrics_listen = 127.0.0.1:0\n");
    let addr = a.status().metrics_listen.expect("status names where metrics are served");
    assert!(a.log_text().contains(&format!("serving metrics on http://{addr}/metrics")), "{}", a.log_text());
    let scrape = || {
        let (status, headers, body) = http_get(&addr, "/metrics");
        assert_eq!(status, "HTTP/1.0 200 OK");
        assert!(headers.contains("Content-Type: application/openmetrics-text; version=1.0.0"), "{headers}");
        assert!(headers.contains(&format!("Content-Length: {}", body.len())), "{headers}");
        Exposition::parse(&body)
    };
    let before = scrape();

    // One acquire and one release through the daemon, and one refusal.
    let (g1, g2) = (GuestProc::spawn(), GuestProc::spawn());
    let _h1 = a.register(g1.pid(), "vm1", Action::Poweroff);
    let _h2 = a.register(g2.pid(), "vm2", Action::Poweroff);
    let d = disk(&dir, "vm.img");
    a.acquire(g1.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    match a.acquire(g2.pid(), &[(&d, Mode::Exclusive)], None) {
        Err(ClientError::Refused(e)) if e.code == Code::Busy => {}
        other => panic!("expected busy, got {other:?}"),
    }
    let held = scrape();
    assert_eq!(held.get(r#"highlander_leases{lockspace="default"}"#), 1.0);
    assert_eq!(held.get("highlander_guests"), 2.0);
    a.release_all(g1.pid());
    let after = scrape();

    let l = r#"{lockspace="default"}"#;
    let moved = |series: &str| after.or_zero(series) - before.or_zero(series);
    assert_eq!(moved(&format!("highlander_acquire_seconds_count{l}")), 1.0, "one acquire reached the engine (the refusal was local)");
    assert_eq!(moved(&format!("highlander_release_seconds_count{l}")), 1.0);
    assert!(after.get(&format!("highlander_acquire_seconds_sum{l}")) > 0.0);
    assert_eq!(after.get(r#"highlander_acquire_seconds_bucket{le="+Inf",lockspace="default"}"#), after.get(&format!("highlander_acquire_seconds_count{l}")));
    assert_eq!(moved(r#"highlander_refusals_total{op="acquire",code="busy"}"#), 1.0);
    assert_eq!(after.get(&format!("highlander_leases{l}")), 0.0);
    assert_eq!(after.get(r#"highlander_lockspace_health{lockspace="default",state="healthy"}"#), 1.0);
    assert_eq!(after.get(r#"highlander_lockspace_health{lockspace="default",state="lost"}"#), 0.0);
    assert_eq!(after.get(r#"highlander_hosts{lockspace="default",state="live"}"#), 1.0);
    assert_eq!(after.get(&format!("highlander_renewal_failures_total{l}")), 0.0);
    assert_eq!(after.get(&format!("highlander_io_timeout_seconds{l}")), 0.3);
    let age = after.get(&format!("highlander_renewal_age_seconds{l}"));
    assert!((0.0..0.3).contains(&age), "renewals are due every 0.15 s: {age}");

    // `highlander metrics --openmetrics` prints the same families; without,
    // the same series in the textfile collector's format, counters named `_total`.
    let cli = cli_metrics_as(&a, true);
    assert_eq!(cli.families, after.families);
    let text = cli_metrics(&a);
    let renamed: BTreeSet<(String, String)> = after.families.iter().map(|(f, k)| (if k == "counter" { format!("{f}_total") } else { f.clone() }, k.clone())).collect();
    assert_eq!(text.families, renamed);
    assert_eq!(text.samples.keys().collect::<Vec<_>>(), cli.samples.keys().collect::<Vec<_>>());
    let types: BTreeMap<&str, &str> = after.families.iter().map(|(f, k)| (f.as_str(), k.as_str())).collect();
    for (family, kind) in [
        ("highlander_renewal_age_seconds", "gauge"),
        ("highlander_renewal_failures", "counter"),
        ("highlander_lockspace_health", "gauge"),
        ("highlander_leases", "gauge"),
        ("highlander_guests", "gauge"),
        ("highlander_hosts", "gauge"),
        ("highlander_pending_releases", "gauge"),
        ("highlander_acquire_seconds", "histogram"),
        ("highlander_release_seconds", "histogram"),
        ("highlander_refusals", "counter"),
        ("highlander_fencing_actions", "counter"),
    ] {
        assert_eq!(types.get(family), Some(&kind), "{family}");
    }

    // Anything but GET /metrics is 404.
    for path in ["/", "/metrics/x", "/favicon.ico"] {
        assert_eq!(http_get(&addr, path).0, "HTTP/1.0 404 Not Found", "{path}");
    }
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 404 "), "{answer}");
    // A scraper that connects and says nothing does not stop the next one.
    let _silent = std::net::TcpStream::connect(&addr).unwrap();
    assert_eq!(http_get(&addr, "/metrics").0, "HTTP/1.0 200 OK");
}

/// node_exporter's textfile collector, fed `highlander metrics` as the
/// README's recipe does (Debian: prometheus-node-exporter, which
/// scripts/setup.sh installs): it reads the file without error and keeps
/// every family's type.
#[test]
fn node_exporters_textfile_collector_reads_highlander_metrics() {
    let exporter = "prometheus-node-exporter";
    assert!(installed(exporter), "{exporter} is not installed: run `bash scripts/setup.sh` (as root)");
    let dir = scratch("textfile");
    let ls = dir.join("ls");
    init_lockspace(&ls, 300, 16);
    let a = Host::start(&dir, &ls, 1, "");
    let om = cli_metrics_as(&a, true);
    let textfiles = dir.join("textfile");
    std::fs::create_dir_all(&textfiles).unwrap();
    let o = highlander(&["metrics", "--socket", a.socket.to_str().unwrap()]);
    std::fs::write(textfiles.join("highlander.prom"), &o.stdout).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("node_exporter.log")).unwrap();
    /// Killed when dropped, also when an assertion fails.
    struct Exporter(std::process::Child);
    impl Drop for Exporter {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _exporter = Exporter(Command::new(exporter)
        .args(["--collector.disable-defaults", "--collector.textfile", &format!("--collector.textfile.directory={}", textfiles.display()), &format!("--web.listen-address={addr}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap());
    let body = wait_for("node_exporter to serve", Duration::from_secs(10), || std::net::TcpStream::connect(&addr).ok().map(|_| http_get(&addr, "/metrics").2));
    assert!(body.contains("node_textfile_scrape_error 0"), "{body}");
    for (family, kind) in &om.families {
        let name = if kind == "counter" { format!("{family}_total") } else { family.clone() };
        assert!(body.contains(&format!("# TYPE {name} {kind}\n")), "node_exporter lost the type of {name}:\n{body}");
    }
}

#[test]
fn a_metrics_listen_address_in_use_stops_start_up_saying_so() {
    let dir = scratch("metrics-busy");
    let ls = dir.join("ls");
    init_lockspace(&ls, 300, 16);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let conf = dir.join("highlanderd.conf");
    std::fs::write(&conf, format!("host_id = 1\nlockspace = {}\nsocket = {}\nstate_dir = {}\nmetrics_listen = {addr}\n", ls.display(), dir.join("s.sock").display(), dir.join("state").display())).unwrap();
    let o = Command::new(bin("highlanderd")).arg("--config").arg(&conf).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&format!("`metrics_listen` = {addr}: cannot listen")) && err.contains("choose a free port"), "{err}");
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
    let m = cli_metrics(&a);
    assert_eq!(m.get(r#"highlander_fencing_actions_total{action="poweroff"}"#), 1.0, "the guest was fenced by its action");
    assert!(m.get(r#"highlander_renewal_failures_total{lockspace="default"}"#) >= 1.0);
    assert_eq!(m.get(r#"highlander_lockspace_health{lockspace="default",state="lost"}"#), 1.0);
    std::fs::remove_file(&a.fault).unwrap();
    wait_for("the lockspace to rejoin", Duration::from_secs(20), || (check(&[]).status.code() == Some(0)).then_some(()));

    // Hung: no answer within -t is CRITICAL. (No guest holds a lease, so
    // the fence sentinel leaves a stopped daemon alone.)
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(a.pid() as i32, libc::SIGSTOP) };
    let o = check(&["-t", "1"]);
    // SAFETY: as above.
    unsafe { libc::kill(a.pid() as i32, libc::SIGCONT) };
    let (state, text, _) = parse_check(&o);
    assert_eq!((o.status.code(), state.as_str()), (Some(2), "CRITICAL"), "{text}");
    assert!(text.contains("did not answer within 1s (hung?"), "{text}");

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

/// The examples load in the real monitoring systems (Debian: icinga2-bin,
/// nagios4-core, which scripts/setup.sh installs): `icinga2 daemon -C` with the
/// master and agent zones the example expects, `nagios4 -v` with Debian's
/// sample configuration and a hostgroup kvm-hosts.
#[test]
fn the_icinga2_and_nagios_examples_validate() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = scratch("examples");
    let sample = std::path::Path::new("/etc/nagios4/nagios.cfg");
    for prog in ["icinga2", "nagios4"] {
        assert!(installed(prog), "{prog} is not installed: run `bash scripts/setup.sh` (as root)");
    }
    assert!(sample.exists(), "{} is missing: reinstall nagios4-core (scripts/setup.sh)", sample.display());
    {
        let conf = dir.join("icinga2.conf");
        std::fs::write(
            &conf,
            format!(
                "const NodeName = \"master\"\nconst ZoneName = \"master\"\nobject Endpoint \"master\" {{ }}\nobject Zone \"master\" {{ endpoints = [ \"master\" ] }}\n\
                 object Endpoint \"kvm1\" {{ }}\nobject Zone \"kvm1\" {{ endpoints = [ \"kvm1\" ]; parent = \"master\" }}\n\
                 object CheckCommand \"dummy\" {{ command = [ \"/bin/true\" ] }}\n\
                 object Host \"kvm1\" {{ check_command = \"dummy\"; zone = \"master\"; vars.highlander = true; vars.highlander_warning = \"8000\" }}\n\
                 include \"{}\"\n",
                examples.join("icinga2-highlander.conf").display()
            ),
        )
        .unwrap();
        let o = Command::new("icinga2").args(["daemon", "-C", "-c"]).arg(&conf).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains("Instantiated 1 Service"), "icinga2 daemon -C:\n{out}{}", String::from_utf8_lossy(&o.stderr));
    }
    {
        let extra = dir.join("extra.cfg");
        let example = std::fs::read_to_string(examples.join("nagios-highlander.cfg")).unwrap();
        std::fs::write(&extra, format!("define hostgroup {{\n    hostgroup_name kvm-hosts\n    members localhost\n}}\n{example}")).unwrap();
        let main = std::fs::read_to_string(sample).unwrap().replace("cfg_dir=/etc/nagios4/conf.d", &format!("cfg_file={}", extra.display()));
        let conf = dir.join("nagios.cfg");
        std::fs::write(&conf, main).unwrap();
        let o = Command::new("nagios4").arg("-v").arg(&conf).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains("Total Errors:   0") && out.contains("Total Warnings: 0"), "nagios4 -v:\n{out}");
    }
}

fn installed(prog: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {prog}")]).output().is_ok_and(|o| o.status.success())
}
