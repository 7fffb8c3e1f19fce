//! The qemu hook's parser of the domain XML libvirt writes to its stdin, on
//! fuzzed text: an XML error, or network disks that cross the wire to the
//! daemon unchanged and each get an identity or an error naming the disk
//! (gluster's volume is not asked).
#![no_main]

use identity::netdisk::{from_domain_xml, Identify, NetDiskError, NetworkDisk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match from_domain_xml(text) {
        Ok((_, disks)) => {
            for d in &disks {
                let json = serde_json::to_string(d).expect("disks serialise");
                assert_eq!(&serde_json::from_str::<NetworkDisk>(&json).expect("and parse back"), d);
                match d.identity_with(|_, _, _, _| Err("not asked".into())) {
                    Ok(id) => assert!(!id.is_empty()),
                    Err(NetDiskError::Unnamed { target, .. }) => assert_eq!(target, d.target),
                    Err(e) => panic!("naming a disk gave {e}"),
                }
            }
        }
        Err(NetDiskError::Xml(why)) => assert!(!why.is_empty()),
        Err(e) => panic!("parsing gave {e}"),
    }
});
