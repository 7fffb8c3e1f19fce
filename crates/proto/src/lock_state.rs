//! libvirt's lock state string: which leases a guest held, at which lease
//! version, so the next acquire (migration destination, resume, restore)
//! fails if anyone else held a lease in between.
//!
//! `hl1:` then entries separated by `;`, each `LOCKSPACE|IDENTITY|LVER`
//! (`sh` instead of LVER for a shared lease, which carries no version
//! check). Names are percent-encoded outside `[A-Za-z0-9._~/:@+=,-]`, so the
//! string is ASCII, has no whitespace, and none of `< > & ' "`: libvirt puts
//! it raw into XML.

pub const PREFIX: &str = "hl1:";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub lockspace: String,
    pub identity: String,
    /// None for a shared lease.
    pub lver: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("lock state {0:?} was not written by highlander (another lock manager's state?); the guest's leases cannot be checked against it")]
    Foreign(String),
    #[error("lock state {0:?} was written by a newer highlander (format {1}); upgrade this host's highlanderd")]
    Newer(String, String),
    #[error("lock state {state:?} is garbled: {why}")]
    Garbled { state: String, why: String },
}

fn safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._~/:@+=,-".contains(&b)
}

fn escape(s: &str) -> String {
    s.bytes().map(|b| if safe(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c if safe(c) => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// None when there is nothing to record (libvirt's NULL state).
pub fn encode(entries: &[Entry]) -> Option<String> {
    if entries.is_empty() {
        return None;
    }
    let parts: Vec<String> = entries
        .iter()
        .map(|e| format!("{}|{}|{}", escape(&e.lockspace), escape(&e.identity), e.lver.map_or("sh".to_owned(), |v| v.to_string())))
        .collect();
    Some(format!("{PREFIX}{}", parts.join(";")))
}

pub fn decode(state: &str) -> Result<Vec<Entry>, StateError> {
    let garbled = |why: &str| StateError::Garbled { state: state.to_owned(), why: why.to_owned() };
    let Some(body) = state.strip_prefix(PREFIX) else {
        return Err(match state.split_once(':') {
            Some((v, _)) if v.len() > 2 && v.starts_with("hl") && v[2..].bytes().all(|b| b.is_ascii_digit()) => StateError::Newer(state.to_owned(), v.to_owned()),
            _ => StateError::Foreign(state.to_owned()),
        });
    };
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(';')
        .map(|part| {
            let fields: Vec<&str> = part.split('|').collect();
            let [ls, id, lver] = fields[..] else { return Err(garbled("each entry must be LOCKSPACE|IDENTITY|LVER")) };
            let lockspace = unescape(ls).filter(|s| !s.is_empty()).ok_or_else(|| garbled("bad lockspace name"))?;
            let identity = unescape(id).filter(|s| !s.is_empty()).ok_or_else(|| garbled("bad disk identity"))?;
            let lver = match lver {
                "sh" => None,
                n => Some(n.parse::<u64>().map_err(|_| garbled("lease version must be a number or `sh`"))?),
            };
            Ok(Entry { lockspace, identity, lver })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_xml_safe() {
        let entries = vec![
            Entry { lockspace: "default".into(), identity: "file:/srv/vm <1>&'\"|;%.img".into(), lver: Some(7) },
            Entry { lockspace: "ls two".into(), identity: "wwid:naa.6001405abc".into(), lver: None },
            Entry { lockspace: "d".into(), identity: "file:/srv/é.img".into(), lver: Some(0) },
        ];
        let s = encode(&entries).unwrap();
        assert!(s.starts_with("hl1:"));
        assert!(s.is_ascii() && !s.contains(char::is_whitespace), "{s}");
        assert!(!s.contains(['<', '>', '&', '\'', '"']), "{s}");
        assert_eq!(decode(&s).unwrap(), entries);
        assert_eq!(encode(&[]), None);
    }

    #[test]
    fn foreign_newer_and_garbled_are_refused() {
        assert!(matches!(decode("__LIBVIRT__DISKS__:abc:/var/lib/libvirt/sanlock/abc:0:3"), Err(StateError::Foreign(_))));
        assert!(matches!(decode("hl2:x|y|1"), Err(StateError::Newer(..))));
        assert!(matches!(decode("hl1:x|y"), Err(StateError::Garbled { .. })));
        assert!(matches!(decode("hl1:x|y|z"), Err(StateError::Garbled { .. })));
        assert!(matches!(decode("hl1:x|%ZZ|1"), Err(StateError::Garbled { .. })));
        assert!(matches!(decode("hl1:x|a b|1"), Err(StateError::Garbled { .. })));
    }
}
