//! The daemon's side: starts its sentinel at start-up (before it answers
//! for any guest) and starts another should it die while the daemon runs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::handover::{Handover, Owner};
use super::spec::{SentinelError, SpaceTimes, Spec, FLAG};
use crate::config::Config;
use crate::guest;
use crate::Daemon;
use engine::timing::Timeouts;

/// A starting daemon waits this long for its sentinel to report `ready`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running sentinel, as its daemon sees it.
pub struct Sentinel {
    spec: Spec,
    child: Child,
}

impl Sentinel {
    /// Starts the sentinel of this daemon for `lockspaces` (name, timeouts)
    /// and returns once it watches the daemon.
    pub fn start(cfg: &Config, lockspaces: impl IntoIterator<Item = (String, Timeouts)>) -> Result<Sentinel, SentinelError> {
        let daemon_pid = std::process::id();
        let daemon_start = guest::start_time(daemon_pid).map_err(|e| SentinelError::Start(format!("cannot read this process's start time: {e}")))?;
        let ms = |d: Duration| d.as_millis() as u64;
        let spec = Spec {
            daemon_pid,
            daemon_start,
            state_dir: cfg.state_dir.clone(),
            fence: cfg.into(),
            log_level: cfg.log_level.to_string(),
            lockspaces: lockspaces
                .into_iter()
                .map(|(name, t)| {
                    let times = SpaceTimes { io_timeout_ms: ms(t.io_timeout), fence_begin_ms: ms(t.fence_begin), fence_deadline_ms: ms(t.fence_deadline), lease_expiry_ms: ms(t.lease_expiry) };
                    (name, times)
                })
                .collect(),
        };
        let child = spawn(&spec)?;
        log::info!("fence sentinel armed: pid {}", child.id());
        Ok(Sentinel { spec, child })
    }

    /// Records, under `handover`, that this sentinel's daemon answers for
    /// its lockspaces now.
    pub fn take_over(&self, handover: &Handover) -> Result<(), SentinelError> {
        handover.take_over(self.owner(), self.spec.lockspaces.iter().map(|(name, _)| name.as_str()))
    }

    pub fn owner(&self) -> Owner {
        Owner { daemon_pid: self.spec.daemon_pid, daemon_start: self.spec.daemon_start, sentinel_pid: self.child.id() }
    }
}

/// Runs `highlanderd --fence-sentinel` in a session of its own (no signal
/// for the daemon's process group reaches it) and hands it `spec`.
fn spawn(spec: &Spec) -> Result<Child, SentinelError> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("highlanderd").arg(FLAG).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    // SAFETY: between fork and exec the closure calls only setsid(2), which
    // is async-signal-safe, allocates nothing and touches no shared state.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn().map_err(|e| SentinelError::Start(format!("cannot run {FLAG}: {e}")))?;
    let ready = (|| {
        let mut stdin = child.stdin.take().expect("piped");
        let mut json = serde_json::to_vec(spec).expect("the spec serialises");
        json.push(b'\n');
        stdin.write_all(&json).map_err(|e| format!("cannot hand it its instructions: {e}"))?;
        drop(stdin);
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .spawn(move || {
                let mut line = String::new();
                let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
            })
            .map_err(|e| format!("cannot start a thread to read its answer: {e}"))?;
        match rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(line)) if line.trim() == "ready" => Ok(()),
            Ok(Ok(line)) => Err(format!("it answered {:?} instead of \"ready\"", line.trim())),
            Ok(Err(e)) => Err(format!("cannot read its answer: {e}")),
            Err(_) => Err(format!("it did not report ready within {READY_WITHIN:?}")),
        }
    })();
    if let Err(why) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SentinelError::Start(why));
    }
    Ok(child)
}

/// Reaps the sentinel; should it ever die while the daemon runs (it ignores
/// SIGTERM, SIGINT and SIGHUP, so a SIGKILL or a crash), starts another.
pub fn supervise(daemon: Arc<Daemon>, mut sentinel: Sentinel) -> Result<(), crate::StartError> {
    daemon.sentinel_pid.store(sentinel.child.id(), Ordering::SeqCst);
    let run = move || loop {
        let status = sentinel.child.wait();
        if daemon.stopping() {
            return;
        }
        log::error!(
            "fence sentinel (pid {}) ended ({}) while highlanderd runs: if highlanderd stopped now its guests would not be fenced; starting a new one",
            sentinel.child.id(),
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
        loop {
            let restarted = spawn(&sentinel.spec).and_then(|child| {
                sentinel.child = child;
                sentinel.take_over(&Handover::lock(&daemon.cfg.state_dir)?)
            });
            match restarted {
                Ok(()) => {
                    log::warn!("fence sentinel armed again: pid {}", sentinel.child.id());
                    daemon.sentinel_pid.store(sentinel.child.id(), Ordering::SeqCst);
                    break;
                }
                Err(e) => {
                    log::error!("{e}; retrying in 1 s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    };
    crate::thread("hl-sentinel".into(), run)
}
