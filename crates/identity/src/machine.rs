//! This machine's own id, for what only this host reaches.

/// /etc/machine-id as bytes; zeros when it is missing.
pub fn machine_id() -> [u8; 16] {
    let text = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let mut id = [0u8; 16];
    for (i, chunk) in text.trim().as_bytes().chunks(2).take(16).enumerate() {
        id[i] = std::str::from_utf8(chunk).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
    }
    id
}

/// This machine's id as a UUID: names what only this host reaches.
pub fn machine_uuid() -> String {
    proto::uuid::format(&machine_id())
}
