//! Prometheus metrics (prometheus-client, OpenMetrics text): what the
//! daemon counts as it works (engine call latencies, refusals, fencing
//! actions) and, read at each scrape, what `status` shows (renewal age,
//! health, hosts, leases, guests). Served by the `metrics` op and, with
//! `metrics_listen`, over HTTP by a thread of its own (`spawn`): a tiny
//! HTTP/1.0 server that answers `GET /metrics` and 404 to anything else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use proto::protocol::{Action, Code, Health, HostState};

use crate::{Daemon, StartError};

/// What the HTTP listener answers `GET /metrics` with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LockspaceLabel {
    lockspace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    lockspace: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    lockspace: String,
    member: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    op: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

/// A fencing action, as `highlander_fencing_actions_total` labels it.
#[derive(Clone, Copy, Debug)]
pub enum Fencing {
    /// A guest's `on_lockfailure` action applied (poweroff, pause, restart, ignore).
    Guest(Action),
    /// A pause/restart guest still holding leases after its helper ran, killed.
    HoldoutKilled,
    /// A killed guest alive at the fence deadline: the host fenced itself.
    Escalation,
}

impl Fencing {
    /// Every label value, counted from zero so each series exists from the start.
    const ALL: [Fencing; 6] = [Fencing::Guest(Action::Poweroff), Fencing::Guest(Action::Pause), Fencing::Guest(Action::Restart), Fencing::Guest(Action::Ignore), Fencing::HoldoutKilled, Fencing::Escalation];

    fn label(self) -> ActionLabel {
        let action = match self {
            // Registration resolves `default`; `apply` would kill a guest still left with it.
            Fencing::Guest(Action::Default) => Action::Poweroff.to_string(),
            Fencing::Guest(a) => a.to_string(),
            Fencing::HoldoutKilled => "holdout_killed".into(),
            Fencing::Escalation => "escalation".into(),
        };
        ActionLabel { action }
    }
}

type Latency = Family<LockspaceLabel, Histogram, fn() -> Histogram>;

/// 0.5 ms to 16 s: a local file answers in well under a millisecond, a SAN
/// under contention in seconds; io_timeout is at most 300 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics the daemon updates as it works; the rest is read at each scrape.
pub struct Metrics {
    acquire: Latency,
    release: Latency,
    refusals: Family<RefusalLabels, Counter>,
    fencing: Family<ActionLabel, Counter>,
    /// Where `metrics_listen` is bound (its port 0 made concrete).
    listening: OnceLock<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let fencing = Family::default();
        for f in Fencing::ALL {
            let _ = fencing.get_or_create(&f.label());
        }
        Metrics { acquire: Family::new_with_constructor(latency), release: Family::new_with_constructor(latency), refusals: Family::default(), fencing, listening: OnceLock::new() }
    }
}

fn lockspace(name: &str) -> LockspaceLabel {
    LockspaceLabel { lockspace: name.to_owned() }
}

impl Metrics {
    /// An engine acquire in `space` took `took` (won or refused).
    pub fn acquired(&self, space: &str, took: Duration) {
        self.acquire.get_or_create(&lockspace(space)).observe(took.as_secs_f64());
    }

    /// An engine release in `space` took `took` (landed or failed).
    pub fn released(&self, space: &str, took: Duration) {
        self.release.get_or_create(&lockspace(space)).observe(took.as_secs_f64());
    }

    /// A request `op` was answered with the error `code`.
    pub fn refused(&self, op: &str, code: Code) {
        let code = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        self.refusals.get_or_create(&RefusalLabels { op: op.to_owned(), code }).inc();
    }

    pub fn fenced(&self, what: Fencing) {
        self.fencing.get_or_create(&what.label()).inc();
    }

    /// The address the HTTP listener serves, once bound.
    pub fn listening(&self) -> Option<SocketAddr> {
        self.listening.get().copied()
    }
}

impl Daemon {
    /// Every metric in the OpenMetrics text format (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let status = self.status();
        let mut reg = Registry::with_prefix("highlander");

        let renewal_age = Family::<LockspaceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let io_timeout = Family::<LockspaceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let failures = Family::<LockspaceLabel, Counter>::default();
        let health = Family::<StateLabels, Gauge>::default();
        let hosts = Family::<StateLabels, Gauge>::default();
        let leases = Family::<LockspaceLabel, Gauge>::default();
        let pending = Family::<LockspaceLabel, Gauge>::default();
        let member_up = Family::<MemberLabels, Gauge>::default();
        for (ls, space) in status.lockspaces.iter().zip(&self.spaces) {
            let l = lockspace(&ls.name);
            // Every lockspace's latency series exists from the first scrape on.
            let _ = (m.acquire.get_or_create(&l), m.release.get_or_create(&l));
            if let Some(ms) = ls.renewal_age_ms {
                renewal_age.get_or_create(&l).set(ms as f64 / 1000.0);
            }
            io_timeout.get_or_create(&l).set(ls.io_timeout_ms as f64 / 1000.0);
            failures.get_or_create(&l).inc_by(space.renewal_failures());
            for h in Health::ALL {
                health.get_or_create(&StateLabels { lockspace: ls.name.clone(), state: h.to_string() }).set(i64::from(ls.health == h));
            }
            for s in HostState::ALL {
                let n = ls.hosts.iter().filter(|h| h.state == s).count();
                hosts.get_or_create(&StateLabels { lockspace: ls.name.clone(), state: s.to_string() }).set(n as i64);
            }
            leases.get_or_create(&l).set(status.leases.iter().filter(|h| h.lease.lockspace == ls.name).count() as i64);
            pending.get_or_create(&l).set(status.pending_releases.iter().filter(|p| p.lockspace == ls.name).count() as i64);
            for mb in &ls.members {
                let labels = MemberLabels { lockspace: ls.name.clone(), member: mb.member.to_string(), path: mb.path.clone() };
                member_up.get_or_create(&labels).set(i64::from(mb.state == proto::protocol::MemberHealth::Ok));
            }
        }
        let guests = Gauge::<i64>::default();
        guests.set(status.guests.len() as i64);

        reg.register_with_unit("renewal_age", "Time since the start of the last renewal of this host's lease that landed", Unit::Seconds, renewal_age);
        reg.register("renewal_failures", "Renewals of this host's lease that failed (a read or write error)", failures);
        reg.register_with_unit("io_timeout", "The lockspace's io_timeout, from which every lease timeout derives (fencing begins at 3.5 times it)", Unit::Seconds, io_timeout);
        reg.register("lockspace_health", "1 for the lockspace's health (healthy, failing, lost), 0 for the others", health);
        reg.register("hosts", "Host slots of the lockspace by state, as this host judges them", hosts);
        reg.register("leases", "Disk leases held on this host", leases);
        reg.register("lockspace_member_up", "A lockspace on a set of devices: 1 while the member device answers, 0 while it is hung or missing (the lockspace runs while a majority is up)", member_up);
        reg.register("guests", "Guests registered with this host's highlanderd", guests);
        reg.register("pending_releases", "Releases that failed on storage and are being retried (other hosts still see the disks held)", pending);
        reg.register_with_unit("acquire", "Time of the engine's acquire of one disk lease, won or refused", Unit::Seconds, m.acquire.clone());
        reg.register_with_unit("release", "Time of the engine's release of one disk lease on storage, landed or failed", Unit::Seconds, m.release.clone());
        reg.register("refusals", "Requests that parsed and were answered with an error, by operation and error code (docs/PROTOCOL.md)", m.refusals.clone());
        reg.register("fencing_actions", "Lock-failure actions taken by this daemon: a guest's on_lockfailure action, a holdout killed, an escalation", m.fencing.clone());

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("writing to a String cannot fail");
        text
    }
}

/// The OpenMetrics text `metrics_text` makes, in the Prometheus text format
/// 0.0.4 that node_exporter's textfile collector reads: a counter family is
/// named with its `_total` there (else the collector files its samples as
/// untyped), and there is no `# UNIT` or `# EOF`. Samples are the same.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(name, text)| (p, name, text))) {
            Some((p, name, text)) if counters.contains(&name) => out.push_str(&format!("{p}{name}_total {text}")),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Listens on `metrics_listen`, if set; the thread starts with `spawn`.
pub fn bind(daemon: &Daemon) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = daemon.cfg.metrics_listen else { return Ok(None) };
    let fail = |source| StartError::MetricsListen { addr, file: daemon.cfg.source.clone(), source };
    let listener = TcpListener::bind(addr).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    let _ = daemon.metrics.listening.set(bound);
    log::info!("serving metrics on http://{bound}/metrics");
    Ok(Some(listener))
}

pub fn spawn(daemon: Arc<Daemon>, listener: TcpListener) -> Result<(), StartError> {
    crate::thread("hl-metrics".into(), move || serve(&daemon, listener))
}

/// How long a scraper may take to send its request and read the answer:
/// one at a time is served, so a stalled one must not hold up the others.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read; the request line is all that matters.
const MAX_HEAD: usize = 8192;

fn serve(daemon: &Daemon, listener: TcpListener) {
    for stream in listener.incoming() {
        if daemon.stopping() {
            return;
        }
        match stream {
            Ok(mut stream) => {
                if let Err(e) = answer(daemon, &mut stream) {
                    log::debug!("metrics: connection closed: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors, typically: the next accept fails alike.
                log::debug!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(daemon: &Daemon, stream: &mut TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = std::str::from_utf8(line).unwrap_or_default().split_whitespace();
    let (status, content_type, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", CONTENT_TYPE, daemon.metrics_text()),
        _ => ("404 Not Found", "text/plain; charset=utf-8", "highlanderd serves GET /metrics only\n".to_owned()),
    };
    let head = format!("HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_text_names_counters_with_total_and_drops_openmetrics_lines() {
        let om = "# HELP highlander_refusals Requests.\n# TYPE highlander_refusals counter\nhighlander_refusals_total{op=\"acquire\",code=\"busy\"} 1\n\
                  # HELP highlander_renewal_age_seconds Age.\n# TYPE highlander_renewal_age_seconds gauge\n# UNIT highlander_renewal_age_seconds seconds\n\
                  highlander_renewal_age_seconds{lockspace=\"a counter\"} 0.4\n# EOF\n";
        assert_eq!(
            super::prometheus_text(om),
            "# HELP highlander_refusals_total Requests.\n# TYPE highlander_refusals_total counter\nhighlander_refusals_total{op=\"acquire\",code=\"busy\"} 1\n\
             # HELP highlander_renewal_age_seconds Age.\n# TYPE highlander_renewal_age_seconds gauge\nhighlander_renewal_age_seconds{lockspace=\"a counter\"} 0.4\n"
        );
    }
}
