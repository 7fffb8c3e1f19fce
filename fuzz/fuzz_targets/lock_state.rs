//! libvirt's lock state string (the daemon parses what libvirt hands back
//! on migration, resume and restore): a string that parses encodes again
//! into an XML-safe string that parses to the same entries; entries made
//! of fuzzed names and versions survive the other way round.
#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use proto::lock_state::{decode, encode, Entry};

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = std::str::from_utf8(data) {
        if let Ok(entries) = decode(state) {
            round_trip(&entries);
        }
    }
    let mut u = Unstructured::new(data);
    if let Ok(fields) = Vec::<(String, String, Option<u64>)>::arbitrary(&mut u) {
        // Names are never empty: the daemon makes entries from its leases.
        let entries: Vec<Entry> = fields
            .into_iter()
            .filter(|(ls, id, _)| !ls.is_empty() && !id.is_empty())
            .map(|(lockspace, identity, lver)| Entry { lockspace, identity, lver })
            .collect();
        round_trip(&entries);
    }
});

fn round_trip(entries: &[Entry]) {
    let Some(state) = encode(entries) else {
        assert!(entries.is_empty());
        return;
    };
    // libvirt puts the string raw into domain XML.
    assert!(state.is_ascii() && !state.contains(char::is_whitespace) && !state.contains(['<', '>', '&', '\'', '"']), "{state}");
    assert_eq!(decode(&state).as_deref(), Ok(entries), "{state}");
}
