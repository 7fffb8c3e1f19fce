//! The text highlanderd reads from /proc and /sys to identify disks and
//! guests: mountinfo, /proc/fs/nfsfs/volumes, CephFS mount sources and
//! options, device-mapper UUIDs, /proc/PID/stat. Each is fed the same
//! fuzzed text (the corpus holds real examples of each).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use daemon::guest;
use identity::{ceph_filesystem, find_mount, multipath_kind, nfs_filesystem, parse_mountinfo, Multipath};

fuzz_target!(|data: &[u8]| {
    let mounts = parse_mountinfo(data);
    // Lines are independent: each mount is what its line alone gives.
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    assert!(mounts.len() <= lines.len());
    let one_by_one: Vec<_> = lines.iter().flat_map(|l| parse_mountinfo(l)).collect();
    assert_eq!(mounts, one_by_one);
    for m in &mounts {
        let by_id = find_mount(&mounts, Some(m.id), m.dev, &m.mount_point).expect("a parsed mount is found by its id");
        assert_eq!(by_id.id, m.id);
        let path = m.mount_point.join("disk.img");
        let by_dev = find_mount(&mounts, None, m.dev, &path).expect("a parsed mount is found by device and path");
        // The deepest mount of that device holding the path.
        assert!(by_dev.dev == m.dev && path.starts_with(&by_dev.mount_point));
        assert!(by_dev.mount_point.as_os_str().len() >= m.mount_point.as_os_str().len());
        if let Some(name) = ceph_filesystem(&m.source, &m.options, || None) {
            assert!(name.starts_with("ceph:"), "{name}");
        }
    }

    let text = String::from_utf8_lossy(data);
    // A few devices: each lookup scans the whole text.
    for dev in mounts.iter().take(3).map(|m| m.dev).chain([(0, 53)]) {
        if let Some(name) = nfs_filesystem(&text, dev) {
            assert!(name.starts_with("nfs"), "{name}");
        }
    }
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [source, options, ..] = fields[..] {
            let _ = ceph_filesystem(source, options, || Some(line.to_owned()));
        }
        match multipath_kind(line) {
            Some(Multipath::Map) => assert!(line.starts_with("mpath-")),
            Some(Multipath::Partition(n)) => assert!(line.starts_with(&format!("part{n}-mpath-"))),
            None => {}
        }
    }
    let _ = guest::parse_start_time(&text);
    let _ = find_mount(&mounts, None, (0, 0), Path::new("/"));
});
