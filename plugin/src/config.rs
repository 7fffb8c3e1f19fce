//! The plugin's configuration, `/etc/libvirt/qemu-highlander.conf`, in
//! libvirt's `key = value` syntax. A missing file means defaults; anything
//! malformed is refused with the file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report::{Failure, Kind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// highlanderd's socket.
    pub socket: PathBuf,
    /// Lockspace for disk leases; None = the daemon's first lockspace.
    pub lockspace: Option<String>,
    /// How long to wait for the daemon's answer.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config { socket: PathBuf::from("/run/highlander/highlanderd.sock"), lockspace: None, timeout: Duration::from_secs(60) }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, Failure> {
        let Some(file) = file else { return Ok(Config::default()) };
        match std::fs::read_to_string(file) {
            Ok(text) => Config::parse(file, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Failure::new(Kind::ConfigUnsupported, format!("{}: cannot read: {e}", file.display()))),
        }
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, Failure> {
        let mut config = Config::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| Failure::new(Kind::ConfigUnsupported, format!("{}:{}: {why}", file.display(), i + 1));
            let (key, value) = line.split_once('=').ok_or_else(|| bad(format!("expected `key = value`, found {line:?}")))?;
            let (key, value) = (key.trim(), value.trim());
            let string = || {
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("`{key}` must be a non-empty quoted string, e.g. {key} = \"...\"")))
            };
            match key {
                "socket" => config.socket = PathBuf::from(string()?),
                "lockspace" => config.lockspace = Some(string()?),
                "timeout" => {
                    let secs: u64 = value.parse().ok().filter(|s| (1..=3600).contains(s)).ok_or_else(|| bad(format!("`timeout` = {value}: must be a whole number of seconds, 1..3600")))?;
                    config.timeout = Duration::from_secs(secs);
                }
                _ => return Err(bad(format!("unknown key `{key}` (known: socket, lockspace, timeout)"))),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_line_of_a_mistake() {
        let f = Path::new("/etc/libvirt/qemu-highlander.conf");
        let c = Config::parse(f, "# comment\nsocket = \"/tmp/s.sock\"\n\ntimeout = 5\nlockspace = \"ls1\"\n").unwrap();
        assert_eq!(c, Config { socket: "/tmp/s.sock".into(), lockspace: Some("ls1".into()), timeout: Duration::from_secs(5) });
        let e = Config::parse(f, "socket = \"/x\"\nauto_disk_leases = 1\n").unwrap_err();
        assert_eq!(e.message, "/etc/libvirt/qemu-highlander.conf:2: unknown key `auto_disk_leases` (known: socket, lockspace, timeout)");
        assert!(Config::parse(f, "timeout = soon").unwrap_err().message.contains(":1: `timeout` = soon"));
        assert!(Config::parse(f, "socket = /unquoted").unwrap_err().message.contains("quoted string"));
        assert!(Config::parse(f, "garbage").unwrap_err().message.contains("expected `key = value`"));
        assert_eq!(Config::load(Some(Path::new("/nonexistent/qemu-highlander.conf"))).unwrap(), Config::default());
    }
}
