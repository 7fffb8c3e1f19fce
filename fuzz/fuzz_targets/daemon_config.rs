//! highlanderd.conf's parser on fuzzed text: an accepted file gives a
//! configuration the daemon can use as it stands; a refused one names this
//! file and a line that exists.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use daemon::config::{Config, ConfigError};
use engine::format::{MAX_HOSTS_LIMIT, NAME_LEN};

const FILE: &str = "/etc/highlander/highlanderd.conf";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(Path::new(FILE), text, &|group| (group == "libvirt").then_some(115)) {
        Ok(c) => {
            assert!((1..=MAX_HOSTS_LIMIT).contains(&c.host_id), "host_id {}", c.host_id);
            assert!(!c.lockspaces.is_empty());
            for p in c.lockspaces.iter().map(|l| &l.path).chain([&c.socket, &c.state_dir]).chain(c.watchdog.as_ref()) {
                assert!(p.is_absolute(), "{}", p.display());
            }
            assert!(!c.host_name.is_empty() && c.host_name.len() <= NAME_LEN && c.host_name.bytes().all(|b| b.is_ascii_graphic()), "{:?}", c.host_name);
            if let Some(argv) = &c.fence_helper {
                assert!(argv[0].starts_with('/'), "{argv:?}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with(FILE), "{message}");
            let line = match e {
                ConfigError::Syntax { line, .. } | ConfigError::UnknownKey { line, .. } | ConfigError::BadValue { line, .. } => Some(line),
                ConfigError::Repeated { line, first, .. } => {
                    assert!(first < line);
                    Some(line)
                }
                _ => None,
            };
            if let Some(line) = line {
                assert!((1..=text.lines().count()).contains(&line), "line {line} of {} in {message}", text.lines().count());
                assert!(message.starts_with(&format!("{FILE}:{line}: ")), "{message}");
            }
        }
    }
});
