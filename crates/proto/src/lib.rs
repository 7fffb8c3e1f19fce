//! What crosses the boundary between libvirt's plugin, the CLI and
//! highlanderd: the JSON-lines wire protocol (docs/PROTOCOL.md), libvirt's
//! lock state string, a blocking client, and the small vocabulary both
//! sides and the engine share (lease mode, UUID text). No lease logic, so
//! the plugin loaded into libvirtd depends on this crate alone.
//! - `protocol`    requests, responses, typed errors
//! - `client`      a blocking, fork-safe client (plugin, CLI, tests)
//! - `lock_state`  libvirt's lock state string: leases + versions, XML-safe
//! - `uuid`        UUID text

pub mod client;
pub mod lock_state;
pub mod protocol;
pub mod uuid;

/// How a lease is held: by one holder, or by many `<shareable/>` ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Exclusive,
    Shared,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        })
    }
}
