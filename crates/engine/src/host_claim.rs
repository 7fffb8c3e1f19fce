//! Host ids picked automatically (`host_id = auto`): which slots of a
//! lockspace no host uses. Taking one is an ordinary join with
//! `JoinOptions::claim` set, so two hosts that pick the same slot at the
//! same time cannot both get it; docs/SAFETY.md ("Automatic host ids").

use std::path::Path;

use crate::delta_lease;
use crate::error::Result;
use crate::lockspace;

/// What a host slot holds, in the order an automatic claim prefers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SlotUse {
    /// Left cleanly by this machine: most likely our own earlier id.
    LeftByUs,
    /// Never written.
    Unused,
    /// Left cleanly by another machine. Taken only when nothing better is
    /// free: a host with a fixed id may come back for it.
    LeftByOther,
    /// Held (live, failing or dead), corrupt or foreign: never claimed. A
    /// dead host's id is its own until `clear-host` frees it.
    InUse,
}

/// Every host slot of the lockspace at `path`, by host id (index 0 = id 1).
pub fn slot_uses(path: &Path) -> Result<Vec<SlotUse>> {
    let (storage, header) = lockspace::open(path, false)?;
    let me = identity::machine_id();
    Ok(delta_lease::read_all(&storage, &header)?
        .into_iter()
        .map(|read| match read {
            Ok(None) => SlotUse::Unused,
            Ok(Some(s)) if s.free && s.lockspace_uuid == header.uuid => {
                if s.machine_id == me {
                    SlotUse::LeftByUs
                } else {
                    SlotUse::LeftByOther
                }
            }
            _ => SlotUse::InUse,
        })
        .collect())
}
