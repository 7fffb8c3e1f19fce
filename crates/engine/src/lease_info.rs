//! What a reader learns about a resource lease and its holder's host, and
//! how a refusal says it: shared by the engine's API, its errors and
//! `direct` (no lease logic here).

use crate::format::Holder;

/// How an observer judges another host's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Never used, or left cleanly.
    Free,
    /// Seen renewing recently.
    Live,
    /// Held, but not yet watched long enough to tell; counts as alive.
    Unknown,
    /// Not seen renewing for a while; still counts as alive.
    Failing,
    /// Not seen renewing for `host_dead`: its leases may be taken.
    Dead,
    /// The slot does not decode (torn or overwritten); counts as alive.
    Corrupt,
}

/// A host that holds a resource shared.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SharedHolder {
    pub host_id: u32,
    pub host_name: String,
    pub generation: u64,
    pub holder: Holder,
    pub host_state: HostState,
}

/// What storage says about one resource.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    pub identity: String,
    pub lockspace: String,
    pub slot: u32,
    pub lver: u64,
    /// Held exclusively by `owner_id` (false: free, or only shared holders).
    pub held: bool,
    pub owner_id: u32,
    pub owner_name: String,
    pub owner_generation: u64,
    pub owner_state: HostState,
    pub holder: Holder,
    pub since_unix: u64,
    pub shared: Vec<SharedHolder>,
}

/// A refusal: who holds what, on which host, since when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Busy {
    pub info: LeaseInfo,
    /// When the holder's host could be declared dead at the earliest.
    pub takeover_in_ms: Option<u64>,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.info;
        if i.held {
            write!(f, "disk {} is held exclusively by {} on {} since {} (host {}",
                i.identity, describe_holder(&i.holder), host(i.owner_id, &i.owner_name), crate::clock::format_unix(i.since_unix), i.owner_state_word())?;
            if let Some(ms) = self.takeover_in_ms.filter(|_| i.owner_state != HostState::Live) {
                write!(f, "; its lease can be taken over in {:.0} s if it stays silent", ms as f64 / 1000.0)?;
            }
            write!(f, ")")
        } else {
            let holders: Vec<String> = i
                .shared
                .iter()
                .map(|s| format!("{} on {}", describe_holder(&s.holder), host(s.host_id, &s.host_name)))
                .collect();
            write!(f, "disk {} is held shared by {}", i.identity, holders.join(", "))
        }
    }
}

impl LeaseInfo {
    fn owner_state_word(&self) -> &'static str {
        match self.owner_state {
            HostState::Free => "left the lockspace",
            HostState::Live => "is live",
            HostState::Unknown => "not yet observed; counted as live",
            HostState::Failing => "is failing to renew",
            HostState::Dead => "is dead",
            HostState::Corrupt => "has a corrupt slot; counted as live",
        }
    }
}

/// `host 2 "node-b"`, or `host 2` while its name is not known yet.
fn host(id: u32, name: &str) -> String {
    if name.is_empty() {
        format!("host {id}")
    } else {
        format!("host {id} \"{name}\"")
    }
}

pub fn describe_holder(h: &Holder) -> String {
    if h.uuid == [0; 16] {
        format!("\"{}\"", h.name)
    } else {
        format!("guest \"{}\" (uuid {})", h.name, proto::uuid::format(&h.uuid))
    }
}
