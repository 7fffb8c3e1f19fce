//! highlanderd's configuration file (/etc/highlander/highlanderd.conf).
//!
//! `key = value` lines; blank lines and lines starting with `#` are ignored;
//! a value may be wrapped in double quotes. Every key is documented in
//! examples/highlanderd.conf. Unknown keys, repeated keys (except
//! `lockspace`) and bad values stop start-up with the key and line number.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use proto::protocol::Action;

pub const DEFAULT_PATH: &str = "/etc/highlander/highlanderd.conf";
/// Where `host_id = auto` remembers its claim: persistent, unlike state_dir.
pub const DEFAULT_HOST_ID_FILE: &str = "/var/lib/highlander/host-id";

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the configuration was read from (for messages).
    pub source: PathBuf,
    /// This host's id in every lockspace; with `host_id = auto`, 0 until
    /// the daemon has claimed one (`host_claim`).
    pub host_id: u32,
    /// The line of `host_id` (for messages).
    pub host_id_line: usize,
    /// `host_id = auto`: claim a free id, remembered in `host_id_file`.
    pub host_id_auto: bool,
    pub host_id_file: PathBuf,
    pub host_name: String,
    /// The configured lockspaces; the first is the default for requests
    /// that name none.
    pub lockspaces: Vec<LockspaceEntry>,
    /// For auto-created lockspaces, and to warn when a header differs.
    pub io_timeout: Option<Duration>,
    /// Create a missing lockspace file (named after the file stem).
    pub auto_create: bool,
    /// Run the daemon's threads at the lowest real-time priority (priority.rs).
    pub realtime: bool,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// Group (besides root) allowed to connect: (name, gid).
    pub group: Option<(String, u32)>,
    pub watchdog: Option<PathBuf>,
    pub on_lockfailure: Action,
    /// argv template for pause/restart; None = the built-in virsh calls.
    pub fence_helper: Option<Vec<String>>,
    pub log_level: log::LevelFilter,
    /// Connections served at once; one more is refused (guests' registered
    /// connections do not count).
    pub max_connections: usize,
    /// What the host does when a guest it killed does not exit in time.
    pub self_fence: SelfFence,
    /// Serve Prometheus metrics over HTTP here (`metrics_listen`); off by default.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// One `lockspace = PATH` line, or `lockspace = PATH1 PATH2 PATH3` for a
/// lockspace on a set of devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockspaceEntry {
    /// The (first) device: what messages name.
    pub path: PathBuf,
    /// Every device, `path` first.
    pub members: Vec<PathBuf>,
    pub line: usize,
}

impl LockspaceEntry {
    pub fn new(path: impl Into<PathBuf>, line: usize) -> LockspaceEntry {
        let path = path.into();
        LockspaceEntry { members: vec![path.clone()], path, line }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{file}: cannot read: {why}")]
    Read { file: PathBuf, why: String },
    #[error("{file}:{line}: expected `key = value`, found {text:?}")]
    Syntax { file: PathBuf, line: usize, text: String },
    #[error("{file}:{line}: unknown key `{key}` (known keys: {}; see `man highlanderd` or /usr/share/doc/highlander/examples/highlanderd.conf)", KEYS.join(", "))]
    UnknownKey { file: PathBuf, line: usize, key: String },
    #[error("{file}:{line}: `{key}` is already set on line {first}; set it once")]
    Repeated { file: PathBuf, line: usize, key: String, first: usize },
    #[error("{file}:{line}: `{key}` = {value:?}: {why}")]
    BadValue { file: PathBuf, line: usize, key: String, value: String, why: String },
    #[error("{file}: `{key}` is required: {why}")]
    Missing { file: PathBuf, key: &'static str, why: &'static str },
}

const KEYS: &[&str] = &[
    "host_id",
    "host_name",
    "lockspace",
    "io_timeout",
    "auto_create",
    "realtime",
    "socket",
    "state_dir",
    "host_id_file",
    "group",
    "watchdog",
    "on_lockfailure",
    "fence_helper",
    "log_level",
    "max_connections",
    "self_fence",
    "metrics_listen",
];

pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Each connection costs a thread and two file descriptors.
const MAX_CONNECTIONS_LIMIT: usize = 65536;

/// Placeholders a `fence_helper` argument may contain.
pub const HELPER_PLACEHOLDERS: &[&str] = &["{action}", "{uri}", "{uuid}", "{name}", "{pid}"];

impl Config {
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Read { file: file.to_owned(), why: e.to_string() })?;
        Config::parse(file, &text, &lookup_group)
    }

    /// Parses `text`; `group_id` resolves a group name to its gid.
    pub fn parse(file: &Path, text: &str, group_id: &dyn Fn(&str) -> Option<u32>) -> Result<Config, ConfigError> {
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut host_id = None;
        let mut cfg = Config {
            source: file.to_owned(),
            host_id: 0,
            host_id_line: 0,
            host_id_auto: false,
            host_id_file: PathBuf::from(DEFAULT_HOST_ID_FILE),
            host_name: String::new(),
            lockspaces: Vec::new(),
            io_timeout: None,
            auto_create: false,
            realtime: true,
            socket: PathBuf::from("/run/highlander/highlanderd.sock"),
            state_dir: PathBuf::from("/run/highlander"),
            group: None,
            watchdog: None,
            on_lockfailure: Action::Poweroff,
            fence_helper: None,
            log_level: log::LevelFilter::Info,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            self_fence: SelfFence::Reboot,
            metrics_listen: None,
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let syntax = || ConfigError::Syntax { file: file.to_owned(), line, text: trimmed.to_owned() };
            let (key, value) = trimmed.split_once('=').ok_or_else(syntax)?;
            let key = key.trim();
            let mut value = value.trim();
            if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                value = &value[1..value.len() - 1];
            }
            let Some(&key) = KEYS.iter().find(|k| **k == key) else {
                return Err(if key.is_empty() { syntax() } else { ConfigError::UnknownKey { file: file.to_owned(), line, key: key.to_owned() } });
            };
            if key != "lockspace" {
                if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == key) {
                    return Err(ConfigError::Repeated { file: file.to_owned(), line, key: key.to_owned(), first });
                }
            }
            seen.push((key, line));
            let bad = |why: String| ConfigError::BadValue { file: file.to_owned(), line, key: key.to_owned(), value: value.to_owned(), why };
            match key {
                "host_id" if value == "auto" => {
                    cfg.host_id_auto = true;
                    host_id = Some(0);
                    cfg.host_id_line = line;
                }
                "host_id" => {
                    let id: u32 = value.parse().map_err(|_| bad("must be a whole number, or `auto`".into()))?;
                    if !(1..=engine::format::MAX_HOSTS_LIMIT).contains(&id) {
                        return Err(bad(format!("must be between 1 and {}, unique per host", engine::format::MAX_HOSTS_LIMIT)));
                    }
                    host_id = Some(id);
                    cfg.host_id_line = line;
                }
                "host_name" => {
                    if value.is_empty() || value.len() > engine::format::NAME_LEN || !value.chars().all(|c| c.is_ascii_graphic()) {
                        return Err(bad(format!("must be 1..={} printable ASCII characters without spaces", engine::format::NAME_LEN)));
                    }
                    cfg.host_name = value.to_owned();
                }
                "lockspace" => {
                    let members = value.split_ascii_whitespace().map(absolute).collect::<Result<Vec<_>, _>>().map_err(bad)?;
                    if !engine::format::MEMBER_COUNTS.contains(&(members.len() as u32)) {
                        return Err(bad(format!("names {} devices; a lockspace is on 1, 3 or 5 (a majority of them must answer)", members.len())));
                    }
                    if let Some((i, twice)) = members.iter().enumerate().find(|(i, p)| members[..*i].contains(p)) {
                        let first = members.iter().position(|p| p == twice).unwrap_or(0);
                        return Err(bad(format!("names {} twice (devices {} and {}); name each device of the set once, all {} of them", twice.display(), first + 1, i + 1, members.len())));
                    }
                    cfg.lockspaces.push(LockspaceEntry { path: members[0].clone(), members, line });
                }
                "io_timeout" => {
                    let secs: f64 = value.parse().map_err(|_| bad("must be a number of seconds, e.g. 10 or 0.5".into()))?;
                    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad("must be a positive number of seconds".into()))?;
                    engine::timing::Timeouts::new(d).map_err(|e| bad(e.to_string()))?;
                    cfg.io_timeout = Some(d);
                }
                "auto_create" => cfg.auto_create = boolean(value).map_err(bad)?,
                "realtime" => cfg.realtime = boolean(value).map_err(bad)?,
                "socket" => cfg.socket = absolute(value).map_err(bad)?,
                "state_dir" => cfg.state_dir = absolute(value).map_err(bad)?,
                "host_id_file" => cfg.host_id_file = absolute(value).map_err(bad)?,
                "group" => {
                    let gid = value.parse::<u32>().ok().or_else(|| group_id(value)).ok_or_else(|| bad("no such group (give a group name or a numeric gid)".into()))?;
                    cfg.group = Some((value.to_owned(), gid));
                }
                "watchdog" => cfg.watchdog = Some(absolute(value).map_err(bad)?),
                "on_lockfailure" => {
                    cfg.on_lockfailure = value.parse::<Action>().map_err(bad)?;
                }
                "fence_helper" => {
                    let argv: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
                    if !argv.first().is_some_and(|prog| prog.starts_with('/')) {
                        return Err(bad("must start with an absolute program path (it runs without a shell)".into()));
                    }
                    let unknown = |arg: &&String| HELPER_PLACEHOLDERS.iter().fold(arg.to_string(), |a, p| a.replace(p, "")).contains('{');
                    if let Some(arg) = argv.iter().find(unknown) {
                        return Err(bad(format!("argument {arg:?} has an unknown placeholder; known: {}", HELPER_PLACEHOLDERS.join(" "))));
                    }
                    cfg.fence_helper = Some(argv);
                }
                "log_level" => {
                    cfg.log_level = value.parse().map_err(|_| bad("must be one of off, error, warn, info, debug, trace".into()))?;
                }
                "max_connections" => {
                    cfg.max_connections =
                        value.parse().ok().filter(|n| (1..=MAX_CONNECTIONS_LIMIT).contains(n)).ok_or_else(|| bad(format!("must be a whole number from 1 to {MAX_CONNECTIONS_LIMIT}")))?;
                }
                "self_fence" => cfg.self_fence = value.parse().map_err(bad)?,
                "metrics_listen" => {
                    let addr = value.parse().map_err(|_| bad("must be IP:PORT, e.g. 127.0.0.1:9739 or [::1]:9739 (port 0: any free port)".into()))?;
                    cfg.metrics_listen = Some(addr);
                }
                _ => unreachable!("every key in KEYS is handled"),
            }
        }
        cfg.host_id = host_id.ok_or(ConfigError::Missing { file: file.to_owned(), key: "host_id", why: "give this host an id unique among the hosts sharing the lockspaces, or `auto`" })?;
        if cfg.lockspaces.is_empty() {
            return Err(ConfigError::Missing { file: file.to_owned(), key: "lockspace", why: "name at least one lockspace file or device (`lockspace = /path`)" });
        }
        if cfg.host_name.is_empty() {
            cfg.host_name = hostname();
        }
        Ok(cfg)
    }
}

fn absolute(value: &str) -> Result<PathBuf, String> {
    if value.starts_with('/') {
        Ok(PathBuf::from(value))
    } else {
        Err("must be an absolute path".into())
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err("must be yes or no".into()),
    }
}

/// The kernel's host name, cut to what a host slot can store.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(engine::format::NAME_LEN).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// `self_fence` in highlanderd.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelfFence {
    #[default]
    Reboot,
    Command(PathBuf),
    LogOnly,
}

impl std::str::FromStr for SelfFence {
    type Err = String;
    fn from_str(s: &str) -> Result<SelfFence, String> {
        match s.split_once(char::is_whitespace).map(|(verb, path)| (verb, path.trim())) {
            None if s == "reboot" => Ok(SelfFence::Reboot),
            None if s == "log-only" => Ok(SelfFence::LogOnly),
            Some(("command", path)) if path.starts_with('/') => Ok(SelfFence::Command(PathBuf::from(path))),
            Some(("command", _)) => Err("`command` needs an absolute program path (it runs without a shell)".into()),
            _ => Err("must be `reboot`, `command /absolute/path` or `log-only` (unsafe)".into()),
        }
    }
}

impl std::fmt::Display for SelfFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelfFence::Reboot => f.write_str("reboot"),
            SelfFence::Command(p) => write!(f, "command {}", p.display()),
            SelfFence::LogOnly => f.write_str("log-only"),
        }
    }
}

fn lookup_group(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/t.conf"), text, &|g| (g == "libvirt").then_some(115))
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse("host_id = 3\nlockspace = /srv/hl/default.lockspace\n").unwrap();
        assert_eq!(c.host_id, 3);
        assert_eq!(c.lockspaces, vec![LockspaceEntry::new("/srv/hl/default.lockspace", 2)]);
        assert_eq!(c.host_id_line, 1);
        assert!(!c.host_id_auto);
        assert_eq!(c.host_id_file, PathBuf::from(DEFAULT_HOST_ID_FILE));
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.socket, PathBuf::from("/run/highlander/highlanderd.sock"));
        assert_eq!(c.state_dir, PathBuf::from("/run/highlander"));
        assert_eq!(c.on_lockfailure, Action::Poweroff);
        assert!(!c.host_name.is_empty());
        assert_eq!(c.group, None);
        assert_eq!(c.io_timeout, None);
        assert!(!c.auto_create);
        assert!(c.realtime);
        assert_eq!(c.self_fence, SelfFence::Reboot);
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn every_key() {
        let c = parse(
            "# comment\n\n host_id=7 \nhost_name = \"node7\"\nlockspace = /a\nlockspace = /b\nio_timeout = 0.5\nauto_create = yes\nrealtime = no\n\
             socket = /tmp/s.sock\nstate_dir = /tmp/st\ngroup = libvirt\nwatchdog = /dev/watchdog\non_lockfailure = pause\n\
             fence_helper = /usr/local/bin/fence {action} {uri} {uuid}\nlog_level = debug\nmax_connections = 16\n",
        )
        .unwrap();
        assert_eq!(c.host_name, "node7");
        assert_eq!(c.lockspaces.len(), 2);
        assert_eq!(c.io_timeout, Some(Duration::from_millis(500)));
        assert!(c.auto_create);
        assert!(!c.realtime);
        assert_eq!(c.group, Some(("libvirt".into(), 115)));
        assert_eq!(c.watchdog, Some(PathBuf::from("/dev/watchdog")));
        assert_eq!(c.on_lockfailure, Action::Pause);
        assert_eq!(c.fence_helper.unwrap(), vec!["/usr/local/bin/fence", "{action}", "{uri}", "{uuid}"]);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.max_connections, 16);
        assert_eq!(parse("host_id=1\nlockspace=/a\nself_fence = command /usr/sbin/fence-me\n").unwrap().self_fence, SelfFence::Command("/usr/sbin/fence-me".into()));
        assert_eq!(parse("host_id=1\nlockspace=/a\ngroup=42\n").unwrap().group, Some(("42".into(), 42)));
        assert_eq!(parse("host_id=1\nlockspace=/a\nmetrics_listen = 127.0.0.1:9739\n").unwrap().metrics_listen, Some("127.0.0.1:9739".parse().unwrap()));
        assert_eq!(parse("host_id=1\nlockspace=/a\nmetrics_listen = [::1]:0\n").unwrap().metrics_listen, Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = parse("host_id = 1\nlockspace = /a\nfrobnicate = 1\n").unwrap_err();
        assert_eq!(e, ConfigError::UnknownKey { file: "/t.conf".into(), line: 3, key: "frobnicate".into() });
        assert!(e.to_string().starts_with("/t.conf:3: unknown key `frobnicate`"), "{e}");
        let auto = parse("host_id = auto\nlockspace = /a\nhost_id_file = /var/lib/hl/id\n").unwrap();
        assert!(auto.host_id_auto && auto.host_id == 0 && auto.host_id_file == Path::new("/var/lib/hl/id"));
        let e = parse("host_id = automatic\n").unwrap_err();
        assert!(e.to_string().contains("or `auto`"), "{e}");
        let e = parse("host_id = 0\n").unwrap_err();
        assert!(matches!(e, ConfigError::BadValue { line: 1, ref key, .. } if key == "host_id"), "{e}");
        let e = parse("host_id = 1\nhost_id = 2\n").unwrap_err();
        assert!(matches!(e, ConfigError::Repeated { line: 2, first: 1, .. }), "{e}");
        let e = parse("host_id = 1\nlockspace = relative/path\n").unwrap_err();
        assert!(e.to_string().contains(":2: `lockspace`") && e.to_string().contains("absolute"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a\nio_timeout = 0.001\n").unwrap_err();
        assert!(e.to_string().contains(":3: `io_timeout`"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a\non_lockfailure = explode\n").unwrap_err();
        assert!(e.to_string().contains("poweroff"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a\ngroup = nosuchgroup\n").unwrap_err();
        assert!(e.to_string().contains(":3: `group`"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a\nfence_helper = virsh {uri}\n").unwrap_err();
        assert!(e.to_string().contains("absolute program"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a\nfence_helper = /bin/f {domain}\n").unwrap_err();
        assert!(e.to_string().contains("unknown placeholder"), "{e}");
        let e = parse("host_id = 1\njust some words\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        let e = parse("host_id = 1\n= 3\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
        let e = parse("host_id = 1\nlockspace = /a\nmax_connections = 0\n").unwrap_err();
        assert!(e.to_string().contains(":3: `max_connections`") && e.to_string().contains("from 1 to"), "{e}");
        let e = parse("host_id = 1\nself_fence = halt\n").unwrap_err();
        assert!(matches!(e, ConfigError::BadValue { line: 2, .. }) && e.to_string().contains("log-only"), "{e}");
        for bad in ["localhost:9739", "127.0.0.1", "127.0.0.1:99999", ":9739"] {
            let e = parse(&format!("host_id = 1\nlockspace = /a\nmetrics_listen = {bad}\n")).unwrap_err();
            assert!(matches!(e, ConfigError::BadValue { line: 3, ref key, .. } if key == "metrics_listen") && e.to_string().contains("IP:PORT"), "{bad}: {e}");
        }
        let e = parse("host_id = 1\nauto_create = maybe\n").unwrap_err();
        assert!(e.to_string().contains("yes or no"), "{e}");
    }

    #[test]
    fn lockspace_sets() {
        let c = parse("host_id = 1\nlockspace = /a /b  /c\n").unwrap();
        assert_eq!(c.lockspaces, vec![LockspaceEntry { path: "/a".into(), members: vec!["/a".into(), "/b".into(), "/c".into()], line: 2 }]);
        let e = parse("host_id = 1\nlockspace = /a /b\n").unwrap_err();
        assert!(e.to_string().starts_with("/t.conf:2: `lockspace`") && e.to_string().contains("names 2 devices; a lockspace is on 1, 3 or 5"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a /b /a\n").unwrap_err();
        assert!(e.to_string().contains(":2: `lockspace`") && e.to_string().contains("names /a twice (devices 1 and 3); name each device of the set once"), "{e}");
        let e = parse("host_id = 1\nlockspace = /a b /c\n").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn required_keys() {
        let e = parse("lockspace = /a\n").unwrap_err();
        assert!(matches!(e, ConfigError::Missing { key: "host_id", .. }), "{e}");
        let e = parse("host_id = 1\n").unwrap_err();
        assert!(matches!(e, ConfigError::Missing { key: "lockspace", .. }), "{e}");
    }
}
