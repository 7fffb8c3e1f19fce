//! Host ids picked automatically (`host_id = auto`): which slots of a
//! lockspace no host uses. Taking one is an ordinary join with
//! `JoinOptions::claim` set, so two hosts that pick the same slot at the
//! same time cannot both get it; docs/SAFETY.md ("Automatic host ids").

use std::path::PathBuf;

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

/// Every host slot of the lockspace on `paths` (its device, or all its
/// members), by host id (index 0 = id 1). A slot is judged by its newest
/// copy; a corrupt or foreign copy on any member makes it in use.
pub fn slot_uses(paths: &[PathBuf]) -> Result<Vec<SlotUse>> {
    let (storage, header) = lockspace::open_members(paths, false)?;
    let me = identity::machine_id();
    let reads = delta_lease::read_all(&storage, &header)?;
    Ok((0..header.max_hosts as usize)
        .map(|i| {
            let copies: Vec<&delta_lease::SlotRead> = reads.iter().map(|r| &r.slots[i]).collect();
            if copies.iter().any(|c| c.is_err()) {
                return SlotUse::InUse;
            }
            match delta_lease::newest(copies.iter().filter_map(|c| c.as_ref().ok().and_then(Option::as_ref))) {
                None => SlotUse::Unused,
                Some(s) if s.free && s.lockspace_uuid == header.uuid => {
                    if s.machine_id == me {
                        SlotUse::LeftByUs
                    } else {
                        SlotUse::LeftByOther
                    }
                }
                Some(_) => SlotUse::InUse,
            }
        })
        .collect())
}
