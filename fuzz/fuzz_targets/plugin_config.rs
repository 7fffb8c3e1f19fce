//! qemu-highlander.conf's parser (libvirt's conf syntax, read by the plugin
//! inside libvirtd) on fuzzed text: an accepted file gives settings in
//! range; a refused one is a configuration error naming this file and a
//! line that exists.
#![no_main]

use std::path::Path;
use std::time::Duration;

use highlander::fuzzing::{Config, Kind};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/etc/libvirt/qemu-highlander.conf";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(Path::new(FILE), text) {
        Ok(c) => {
            assert!(c.socket.is_absolute(), "{}", c.socket.display());
            assert!((Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.timeout), "{:?}", c.timeout);
            if let Some(ls) = &c.lockspace {
                assert!(!ls.is_empty() && ls.len() <= 64 && ls.bytes().all(|b| b.is_ascii_graphic()), "{ls:?}");
            }
            // sanlock's rule: leases are required by default exactly when not automatic.
            if !text.contains("require_lease_for_disks") {
                assert_eq!(c.require_lease_for_disks, !c.auto_disk_leases);
            }
        }
        Err(f) => {
            assert_eq!(f.kind, Kind::ConfigUnsupported, "{}", f.message);
            let rest = f.message.strip_prefix(&format!("{FILE}:")).unwrap_or_else(|| panic!("{}", f.message));
            let line: usize = rest.split(':').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no line number in {}", f.message));
            // A value may end on a later line than its key, but the key's line exists.
            assert!((1..=text.lines().count().max(1)).contains(&line), "line {line} of {}: {}", text.lines().count(), f.message);
        }
    }
});
