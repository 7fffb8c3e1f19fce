//! Every on-disk record kind decoded from one sector of fuzzed bytes, as
//! read (almost always refused by the checksum) and sealed with a valid
//! checksum for each kind in turn, so the fields behind it are decoded too.
#![no_main]

use highlander_fuzz::{check_sector, seal, sector, KINDS};
use libfuzzer_sys::fuzz_target;
use engine::format::FormatError;
use engine::format::{Header, RecordKind};

fuzz_target!(|data: &[u8]| {
    let raw = sector(data);
    check_sector(&raw);
    for kind in KINDS {
        let sealed = seal(kind, raw);
        let accepted = check_sector(&sealed);
        // A sealed record verifies; only a header also checks its fields' values.
        match kind {
            RecordKind::Header => assert!(accepted == 1 || matches!(Header::decode(&sealed), Err(FormatError::BadField { .. }))),
            _ => assert_eq!(accepted, 1, "sealed {kind} refused"),
        }
    }
});
