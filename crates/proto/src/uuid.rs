//! UUIDs as text (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`), the one formatter
//! every crate uses for guest, lockspace and volume ids.

pub fn format(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (dashes optional).
pub fn parse(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || (text.len() != 32 && text.len() != 36) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_round_trip_with_or_without_dashes() {
        let text = "9e0beccb-857a-4154-8251-5df7cefef52a";
        let bytes = super::parse(text).unwrap();
        assert_eq!(super::format(&bytes), text);
        assert_eq!(super::parse(&text.replace('-', "")), Some(bytes));
        assert_eq!(super::parse("9e0beccb-857a"), None);
        assert_eq!(super::parse("zz0beccb-857a-4154-8251-5df7cefef52a"), None);
    }
}
