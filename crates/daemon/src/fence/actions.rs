//! A guest's lock-failure action: SIGKILL through its pidfd (poweroff),
//! the fence helper (pause, restart), or a log line (ignore); at once for
//! the monitor (`apply`), or applied and waited for (`fence_now`).

use std::process::Command;
use std::time::Duration;

use crate::config::{Config, SelfFence};
use crate::guest::{Guest, Pidfd};
use engine::clock::Mono;
use proto::protocol::Action;

/// What fencing needs of the configuration; the fence sentinel gets it from
/// the daemon that started it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FenceConfig {
    pub host_id: u32,
    pub host_name: String,
    /// `fence_helper`: argv template for pause/restart; None = virsh.
    pub fence_helper: Option<Vec<String>>,
    /// What to do when a killed guest does not exit in time.
    pub self_fence: SelfFence,
}

impl From<&Config> for FenceConfig {
    fn from(cfg: &Config) -> FenceConfig {
        FenceConfig { host_id: cfg.host_id, host_name: cfg.host_name.clone(), fence_helper: cfg.fence_helper.clone(), self_fence: cfg.self_fence.clone() }
    }
}

impl FenceConfig {
    /// `host ID "NAME"`, as every fence message names this host.
    pub fn host(&self) -> String {
        format!("host {} \"{}\"", self.host_id, self.host_name)
    }
}

/// Applies `g`'s lock-failure action and marks it fenced.
pub fn apply(cfg: &Config, g: &mut Guest, pidfd: Option<&Pidfd>, lockspace: &str, why: &str) -> bool {
    g.fenced = true;
    let cfg = FenceConfig::from(cfg);
    let host = cfg.host();
    match g.action {
        Action::Poweroff | Action::Default => match pidfd.map(Pidfd::kill) {
            Some(Ok(())) => {
                log::error!("fenced: {g} on {host} killed (on_lockfailure poweroff): lockspace \"{lockspace}\": {why}");
                true
            }
            Some(Err(e)) => {
                log::error!("fence FAILED: cannot kill {g} on {host}: {e}; lockspace \"{lockspace}\": {why}");
                false
            }
            None => true,
        },
        Action::Pause | Action::Restart => {
            log::error!("fenced: {g} on {host}: running the fence helper ({}): lockspace \"{lockspace}\": {why}", g.action);
            let commands = helper_commands(&cfg, g);
            let who = g.to_string();
            match std::thread::Builder::new().name("hl-fence-helper".into()).spawn(move || run_helpers(&commands, &who, None)) {
                Ok(_) => true,
                Err(e) => {
                    log::error!("fence FAILED: cannot start a thread to run the fence helper for {g} on {host}: {e}");
                    false
                }
            }
        }
        Action::Ignore => {
            log::error!("NOT fenced (on_lockfailure ignore): {g} on {host} keeps running although its leases will lapse: lockspace \"{lockspace}\": {why}");
            true
        }
    }
}

/// Runs the helper commands in order; true when every one succeeded, each
/// within `limit` if given (a helper past it is left running).
pub fn run_helpers(commands: &[Vec<String>], who: &str, limit: Option<Duration>) -> bool {
    commands.iter().all(|argv| {
        let run = crate::priority::normal_priority(Command::new(&argv[0]).args(&argv[1..]).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped())).spawn();
        let outcome = run.map_err(|e| format!("cannot run it: {e}")).and_then(|child| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            std::thread::Builder::new().spawn(move || tx.send(child.wait_with_output())).map_err(|e| format!("cannot start a thread to wait for it: {e}"))?;
            let waited = match limit {
                Some(limit) => rx.recv_timeout(limit).map_err(|_| format!("no answer within {limit:?}")),
                None => rx.recv().map_err(|_| "lost track of it".to_owned()),
            };
            match waited? {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
                Err(e) => Err(e.to_string()),
            }
        });
        match &outcome {
            Ok(()) => log::info!("fence helper for {who}: `{}` succeeded", argv.join(" ")),
            Err(why) => log::error!("fence helper for {who}: `{}` failed: {why}", argv.join(" ")),
        }
        outcome.is_ok()
    })
}

/// How `fence_now` ended for one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fenced {
    /// Killed and gone, or paused / restarted by a helper that succeeded in time.
    Done,
    /// `on_lockfailure ignore`: logged only, the guest runs on.
    Ignored,
    /// SIGKILL could not be sent (logged as `fence FAILED`).
    KillFailed,
    /// Killed, but still not gone at the deadline (stuck in I/O?).
    NotGone,
}

impl Fenced {
    /// The guest still runs although it had to die: the host must fence itself.
    pub fn stuck(self) -> bool {
        matches!(self, Fenced::NotGone | Fenced::KillFailed)
    }
}

/// Applies `g`'s lock-failure action *now* and waits for it to take effect,
/// for callers with no monitor behind them (a daemon about to join afresh,
/// the fence sentinel): a pause or restart counts only if its helper
/// succeeds within half the time left until `deadline`; otherwise (and for
/// poweroff) the guest is SIGKILLed and waited for until `deadline`.
pub fn fence_now(cfg: &FenceConfig, g: &mut Guest, pidfd: &Pidfd, lockspace: &str, why: &str, deadline: Mono) -> Fenced {
    g.fenced = true;
    let host = cfg.host();
    if g.action == Action::Ignore {
        log::error!("NOT fenced (on_lockfailure ignore): {g} on {host} keeps running without leases: lockspace \"{lockspace}\": {why}");
        return Fenced::Ignored;
    }
    if matches!(g.action, Action::Pause | Action::Restart) {
        log::error!("fenced: {g} on {host}: running the fence helper ({}): lockspace \"{lockspace}\": {why}", g.action);
        if run_helpers(&helper_commands(cfg, g), &g.to_string(), Some(deadline.remaining() / 2)) {
            return Fenced::Done;
        }
    }
    if let Err(e) = pidfd.kill() {
        log::error!("fence FAILED: cannot kill {g} on {host}: {e}; lockspace \"{lockspace}\": {why}");
        return Fenced::KillFailed;
    }
    log::error!("fenced: {g} on {host} killed: lockspace \"{lockspace}\": {why}");
    if pidfd.wait_exit(deadline.remaining()) {
        Fenced::Done
    } else {
        Fenced::NotGone
    }
}

/// The helper invocation(s) for a pause or restart.
fn helper_commands(cfg: &FenceConfig, g: &Guest) -> Vec<Vec<String>> {
    let uri = if g.uri.is_empty() { "qemu:///system".to_owned() } else { g.uri.clone() };
    let uuid = g.uuid_string();
    match &cfg.fence_helper {
        Some(template) => {
            let fill = |arg: &String| {
                arg.replace("{action}", &g.action.to_string()).replace("{uri}", &uri).replace("{uuid}", &uuid).replace("{name}", &g.name).replace("{pid}", &g.pid.to_string())
            };
            vec![template.iter().map(fill).collect()]
        }
        None => {
            let virsh = |verb: &str| ["virsh", "--connect", &uri, verb, &uuid].map(str::to_owned).to_vec();
            match g.action {
                Action::Restart => vec![virsh("destroy"), virsh("start")],
                _ => vec![virsh("suspend")],
            }
        }
    }
}

