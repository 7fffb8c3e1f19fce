//! `highlander check`: this host's highlanderd judged as a monitoring
//! plugin (Nagios, Icinga, Naemon, Sensu): one line, `STATUS - summary |
//! perfdata`, and the exit code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
//! (<https://www.monitoring-plugins.org/doc/guidelines.html>).

use std::fmt;
use std::time::Duration;

use proto::client::ClientError;
use proto::protocol::{Health, HostState, MemberHealth, Status};
use serde::Serialize;

use crate::threshold::{format_number, Range};

/// A plugin's states, in the order of their exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    pub fn exit_code(self) -> u8 {
        self as u8
    }

    /// Severity: CRITICAL over WARNING over UNKNOWN over OK (as the
    /// monitoring plugins combine states).
    fn rank(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Unknown => 1,
            State::Warning => 2,
            State::Critical => 3,
        }
    }

    /// Which of two states a check made of both reports.
    fn worse(self, other: State) -> State {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// One perfdata item: `label=value[uom];warn;crit;min;`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    pub uom: &'static str,
    pub warn: Option<String>,
    pub crit: Option<String>,
}

impl Perf {
    fn count(label: &str, n: usize) -> Perf {
        Perf { label: label.to_owned(), value: n as f64, uom: "", warn: None, crit: None }
    }
}

impl fmt::Display for Perf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        write!(f, "{}={}{};{};{};0;", self.label, format_number(self.value), self.uom, opt(&self.warn), opt(&self.crit))
    }
}

/// What the check found.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub state: State,
    /// What is wrong, worst first (empty when OK).
    pub problems: Vec<String>,
    /// The counts after the problems: lockspaces, leases, guests.
    pub summary: String,
    pub perfdata: Vec<Perf>,
}

impl Verdict {
    /// A check that could not judge, or found no daemon: one line, no perfdata.
    fn only(state: State, problem: String) -> Verdict {
        Verdict { state, problems: vec![problem], summary: String::new(), perfdata: Vec::new() }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<&str> = self.problems.iter().map(String::as_str).chain((!self.summary.is_empty()).then_some(self.summary.as_str())).collect();
        write!(f, "HIGHLANDER {} - {}", self.state.word(), text.join("; "))?;
        if !self.perfdata.is_empty() {
            let perf: Vec<String> = self.perfdata.iter().map(Perf::to_string).collect();
            write!(f, " | {}", perf.join(" "))?;
        }
        Ok(())
    }
}

/// The verdict when the daemon could not be asked.
pub fn unanswered(e: &ClientError, timeout: Duration) -> Verdict {
    match e {
        ClientError::Unreachable { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => Verdict::only(State::Unknown, e.to_string()),
        ClientError::Unreachable { .. } => Verdict::only(State::Critical, e.to_string()),
        ClientError::Io { socket, source } if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Verdict::only(
            State::Critical,
            format!("highlanderd at {} did not answer within {timeout:?} (hung? `highlander status` and its log say more)", socket.display()),
        ),
        _ => Verdict::only(State::Unknown, e.to_string()),
    }
}

/// A bad command line: UNKNOWN, as the monitoring plugins report it.
pub fn bad_usage(message: &str) -> Verdict {
    let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
    Verdict::only(State::Unknown, format!("bad command line: {first} (see `highlander check --help`)"))
}

/// Perfdata labels may hold anything but `=` and `'`.
fn label(prefix: &str, lockspace: &str) -> String {
    format!("{prefix}_{}", lockspace.replace(['=', '\''], "_"))
}

fn secs(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

/// Judges `status`: a lost lockspace is CRITICAL, a failing one WARNING;
/// the renewal age (ms) against `crit` and `warn`, by default per
/// lockspace 3 and 1 io_timeout (fencing begins at 3.5: docs/SAFETY.md,
/// "Timing"; renewals are due every half); pending releases are a WARNING.
pub fn evaluate(status: &Status, warn: Option<&Range>, crit: Option<&Range>) -> Verdict {
    let mut state = State::Ok;
    let mut problems: Vec<(State, String)> = Vec::new();
    let mut report = |s: State, what: String| {
        state = state.worse(s);
        problems.push((s, what));
    };
    let mut perfdata = Vec::new();
    let mut fence_in = Vec::new();
    let mut members_ok = Vec::new();
    for ls in &status.lockspaces {
        let name = &ls.name;
        let why = ls.error.as_deref().unwrap_or("no reason given");
        match ls.health {
            Health::Healthy => {}
            Health::Failing => {
                let fencing = ls.fence_in_ms.map(|ms| format!("; guests are fenced in {}", secs(ms as f64))).unwrap_or_default();
                report(State::Warning, format!("lockspace \"{name}\" FAILING: renewals fail ({why}){fencing}"));
            }
            Health::Lost => report(State::Critical, format!("lockspace \"{name}\" LOST: {why}")),
        }
        if ls.degraded() {
            let n = ls.members.len();
            let ok = ls.members.iter().filter(|m| m.state == MemberHealth::Ok).count();
            let down: Vec<String> = ls
                .members
                .iter()
                .filter(|m| m.state != MemberHealth::Ok)
                .map(|m| match (m.state, m.hung_for_ms) {
                    (MemberHealth::Hung, Some(ms)) => format!("device {} of {n} {} hung for {}", m.member, m.path, secs(ms as f64)),
                    _ => format!("device {} of {n} {} {}", m.member, m.path, m.state),
                })
                .collect();
            report(State::Warning, format!("lockspace \"{name}\" DEGRADED: {} ({ok} of {n} devices answer)", down.join(", ")));
        }
        if !ls.members.is_empty() {
            members_ok.push(Perf::count(&label("members_ok", name), ls.members.iter().filter(|m| m.state == MemberHealth::Ok).count()));
        }
        let timeouts = match engine::timing::Timeouts::new(Duration::from_millis(ls.io_timeout_ms)) {
            Ok(t) => t,
            Err(e) => {
                report(State::Unknown, format!("lockspace \"{name}\": io_timeout {} ms: {e}", ls.io_timeout_ms));
                continue;
            }
        };
        let Some(age) = ls.renewal_age_ms else {
            report(State::Unknown, format!("lockspace \"{name}\": highlanderd {} does not report the renewal age; upgrade it", status.daemon_version));
            continue;
        };
        let age = age as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let warn = warn.cloned().unwrap_or_else(|| Range::up_to(ms(2 * timeouts.renew_interval)));
        let crit = crit.cloned().unwrap_or_else(|| Range::up_to(ms(timeouts.fence_begin - timeouts.renew_interval)));
        let fencing = ms(timeouts.fence_begin);
        if crit.alerts(age) {
            report(State::Critical, format!("lockspace \"{name}\": last renewal {} ago (critical range {crit} ms; fencing begins at {})", secs(age), secs(fencing)));
        } else if warn.alerts(age) {
            report(State::Warning, format!("lockspace \"{name}\": last renewal {} ago (warning range {warn} ms; fencing begins at {})", secs(age), secs(fencing)));
        }
        perfdata.push(Perf { label: label("renewal_age", name), value: age, uom: "ms", warn: Some(warn.to_string()), crit: Some(crit.to_string()) });
        let left = if ls.health == Health::Lost { 0.0 } else { (fencing - age).max(0.0) / 1000.0 };
        fence_in.push(Perf { label: label("fence_in", name), value: left, uom: "s", warn: None, crit: None });
    }
    if !status.pending_releases.is_empty() {
        report(State::Warning, format!("{} release(s) failing on storage, being retried (other hosts still see those disks held)", status.pending_releases.len()));
    }
    let hosts = |states: &[HostState]| status.lockspaces.iter().flat_map(|l| &l.hosts).filter(|h| states.contains(&h.state)).count();
    perfdata.push(Perf::count("leases", status.leases.len()));
    perfdata.push(Perf::count("guests", status.guests.len()));
    // Unknown and corrupt slots count as live, as the engine counts them.
    perfdata.push(Perf::count("hosts_live", hosts(&[HostState::Live, HostState::Unknown, HostState::Corrupt])));
    perfdata.push(Perf::count("hosts_failing", hosts(&[HostState::Failing])));
    perfdata.push(Perf::count("hosts_dead", hosts(&[HostState::Dead])));
    perfdata.push(Perf::count("pending_releases", status.pending_releases.len()));
    perfdata.extend(fence_in);
    perfdata.extend(members_ok);

    let total = status.lockspaces.len();
    let healthy = status.lockspaces.iter().filter(|l| l.health == Health::Healthy).count();
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let lockspaces = if healthy == total { plural(total, "lockspace healthy", "lockspaces healthy") } else { format!("{healthy} of {} healthy", plural(total, "lockspace", "lockspaces")) };
    let summary = format!("{lockspaces}, {}, {}", plural(status.leases.len(), "lease", "leases"), plural(status.guests.len(), "guest", "guests"));
    // Worst first: the line may be cut by the monitoring system.
    problems.sort_by_key(|(s, _)| std::cmp::Reverse(s.rank()));
    Verdict { state, problems: problems.into_iter().map(|(_, p)| p).collect(), summary, perfdata }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::protocol::{HostStatus, LockspaceStatus, PendingRelease};

    fn status(health: Health, age: Option<u64>) -> Status {
        let host = |id, state| HostStatus { host_id: id, host_name: format!("h{id}"), generation: 1, state, renewed_unix: 0, last_change_ago_ms: None };
        Status {
            daemon_version: "0.1.0".into(),
            daemon_pid: 1,
            host_id: 1,
            host_id_auto: false,
            host_name: "h1".into(),
            lockspaces: vec![LockspaceStatus {
                name: "ls=1".into(),
                path: "/ls".into(),
                generation: 1,
                resumed: false,
                io_timeout_ms: 10_000,
                health,
                renewal_age_ms: age,
                valid_for_ms: Some(40_000),
                fence_in_ms: None,
                error: (health != Health::Healthy).then(|| "EIO".into()),
                hosts: vec![host(1, HostState::Live), host(2, HostState::Dead), host(3, HostState::Unknown)],
                members: vec![],
            }],
            leases: vec![],
            guests: vec![],
            pending_releases: vec![],
            escalations: vec![],
            metrics_listen: None,
            declared: vec![],
        }
    }

    #[test]
    fn healthy_is_ok_with_perfdata_and_default_thresholds() {
        let v = evaluate(&status(Health::Healthy, Some(812)), None, None);
        assert_eq!(v.state, State::Ok);
        assert_eq!(
            v.to_string(),
            "HIGHLANDER OK - 1 lockspace healthy, 0 leases, 0 guests | renewal_age_ls_1=812ms;10000;30000;0; leases=0;;;0; guests=0;;;0; hosts_live=2;;;0; hosts_failing=0;;;0; hosts_dead=1;;;0; pending_releases=0;;;0; fence_in_ls_1=34.188s;;;0;"
        );
    }

    #[test]
    fn renewal_age_against_thresholds() {
        let w: Range = "500".parse().unwrap();
        let c: Range = "1000".parse().unwrap();
        assert_eq!(evaluate(&status(Health::Healthy, Some(812)), Some(&w), Some(&c)).state, State::Warning);
        let v = evaluate(&status(Health::Healthy, Some(1812)), Some(&w), Some(&c));
        assert_eq!(v.state, State::Critical);
        assert!(v.problems[0].contains("last renewal 1.8 s ago (critical range 1000 ms"), "{v}");
        // The default critical threshold sits before fencing begins (35 s).
        assert_eq!(evaluate(&status(Health::Healthy, Some(31_000)), None, None).state, State::Critical);
        assert_eq!(evaluate(&status(Health::Healthy, Some(11_000)), None, None).state, State::Warning);
    }

    #[test]
    fn health_maps_to_states_and_the_worst_comes_first() {
        let v = evaluate(&status(Health::Failing, Some(2000)), None, None);
        assert_eq!(v.state, State::Warning);
        assert!(v.to_string().starts_with("HIGHLANDER WARNING - lockspace \"ls=1\" FAILING: renewals fail (EIO); 0 of 1 lockspace healthy"), "{v}");
        let mut s = status(Health::Lost, Some(50_000));
        s.pending_releases.push(PendingRelease { lockspace: "ls=1".into(), identity: "file:/d".into(), lver: 3 });
        let v = evaluate(&s, None, None);
        assert_eq!(v.state, State::Critical);
        assert!(v.problems[0].contains("LOST: EIO"), "{v}");
        assert!(v.problems.last().unwrap().contains("1 release(s) failing"), "{v}");
        assert!(v.to_string().contains("fence_in_ls_1=0s;"), "{v}");
        assert_eq!(evaluate(&status(Health::Healthy, None), None, None).state, State::Unknown);
    }

    #[test]
    fn a_degraded_set_is_a_warning_naming_the_device() {
        use proto::protocol::MemberStatus;
        let member = |k: u32, state, hung_for_ms| MemberStatus { member: k, path: format!("/hl{k}"), state, hung_for_ms, error: None };
        let mut s = status(Health::Healthy, Some(812));
        s.lockspaces[0].members = vec![member(1, MemberHealth::Ok, None), member(2, MemberHealth::Ok, None), member(3, MemberHealth::Ok, None)];
        let v = evaluate(&s, None, None);
        assert_eq!(v.state, State::Ok, "{v}");
        assert!(v.to_string().ends_with(" members_ok_ls_1=3;;;0;"), "{v}");
        s.lockspaces[0].members[1] = member(2, MemberHealth::Hung, Some(12_345));
        let v = evaluate(&s, None, None);
        assert_eq!(v.state, State::Warning);
        assert!(v.to_string().starts_with("HIGHLANDER WARNING - lockspace \"ls=1\" DEGRADED: device 2 of 3 /hl2 hung for 12.3 s (2 of 3 devices answer)"), "{v}");
        assert!(v.to_string().contains(" members_ok_ls_1=2;;;0;"), "{v}");
    }

    #[test]
    fn states_combine_as_plugins_do() {
        assert_eq!(State::Ok.worse(State::Unknown), State::Unknown);
        assert_eq!(State::Unknown.worse(State::Warning), State::Warning);
        assert_eq!(State::Critical.worse(State::Warning), State::Critical);
        assert_eq!([State::Ok, State::Warning, State::Critical, State::Unknown].map(State::exit_code), [0, 1, 2, 3]);
        assert_eq!(bad_usage("error: unexpected argument '-x' found\n\nUsage: ...").to_string(), "HIGHLANDER UNKNOWN - bad command line: unexpected argument '-x' found (see `highlander check --help`)");
    }
}
