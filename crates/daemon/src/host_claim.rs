//! `host_id = auto`: the host id this host claimed, kept in `host_id_file`
//! (on persistent storage, so a host keeps its id across restarts and
//! reboots), and the choice of a new one. One id serves every configured
//! lockspace, as a fixed `host_id` does. Picking an id only proposes it: the
//! join (with `JoinOptions::claim`) decides, and a slot another host took
//! first is refused there, so the daemon picks again (docs/SAFETY.md,
//! "Automatic host ids").

use std::io::Write;
use std::path::{Path, PathBuf};

use engine::host_claim::{slot_uses, SlotUse};

use crate::check::Checked;

/// How many ids a start tries before giving up: each refused id was taken
/// by another host during our attempt, so this bounds a storm of starts.
pub const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{path}: cannot read the claimed host id: {why}; fix or remove the file (with highlanderd stopped) to claim a new id")]
    Unreadable { path: PathBuf, why: String },
    #[error("{path}: cannot record the claimed host id: {source}; highlanderd keeps the id there across restarts (`host_id_file`)")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("lockspace \"{name}\" ({path}): cannot read its host slots to claim a host id: {source}")]
    Read { name: String, path: PathBuf, source: Box<engine::Error> },
    #[error("no host id is free in every lockspace ({detail}); free a retired host's id with `highlander lockspace clear-host PATH --host-id N`, give this host a fixed host_id, or re-initialise the lockspace with a larger --max-hosts")]
    Full { detail: String },
}

/// An id to join with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub id: u32,
    /// Newly picked (unused in every lockspace when looked at), as opposed
    /// to remembered from an earlier start.
    pub fresh: bool,
}

pub struct HostIdFile {
    path: PathBuf,
}

impl HostIdFile {
    pub fn new(path: &Path) -> HostIdFile {
        HostIdFile { path: path.to_owned() }
    }

    /// The id an earlier start claimed, if any.
    pub fn remembered(&self) -> Result<Option<u32>, ClaimError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClaimError::Unreadable { path: self.path.clone(), why: e.to_string() }),
        };
        let value = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
        let id = value.and_then(|l| l.strip_prefix("host_id")).and_then(|l| l.trim_start().strip_prefix('=')).and_then(|v| v.trim().parse::<u32>().ok());
        match id {
            Some(id) if (1..=engine::format::MAX_HOSTS_LIMIT).contains(&id) => Ok(Some(id)),
            _ => Err(ClaimError::Unreadable { path: self.path.clone(), why: format!("expected a line `host_id = N` with N in 1..={}", engine::format::MAX_HOSTS_LIMIT) }),
        }
    }

    /// Records `id`, durably (it must survive a power loss) and atomically.
    pub fn record(&self, id: u32) -> Result<(), ClaimError> {
        let write = || -> std::io::Result<()> {
            let dir = self.path.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)?;
            let tmp = self.path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "# highlanderd: this host's id, claimed automatically (host_id = auto).")?;
            writeln!(f, "# Kept across restarts and reboots. To give it up: stop highlanderd, remove")?;
            writeln!(f, "# this file; the slot frees itself at the daemon's clean leave.")?;
            writeln!(f, "host_id = {id}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| ClaimError::Write { path: self.path.clone(), source })
    }

    /// The id to try next: the remembered one unless it was `refused`, else
    /// a fresh one (recorded before the join, so a crash during the join
    /// cannot leave a slot of ours that a restart does not know about).
    pub fn pick(&self, lockspaces: &[Checked], refused: &[u32]) -> Result<Pick, ClaimError> {
        if let Some(id) = self.remembered()?.filter(|id| !refused.contains(id)) {
            return Ok(Pick { id, fresh: false });
        }
        let mut uses = Vec::new();
        for c in lockspaces {
            let slots = slot_uses(&c.entry.members).map_err(|e| ClaimError::Read { name: c.header.name.clone(), path: c.entry.path.clone(), source: Box::new(e) })?;
            uses.push((c, slots));
        }
        let id = choose(&uses.iter().map(|(_, s)| s.as_slice()).collect::<Vec<_>>(), refused, u64::from_le_bytes(engine::sys::random_bytes()[..8].try_into().unwrap()))
            .ok_or_else(|| ClaimError::Full { detail: uses.iter().map(|(c, s)| describe(&c.header.name, s)).collect::<Vec<_>>().join("; ") })?;
        self.record(id)?;
        Ok(Pick { id, fresh: true })
    }
}

/// The best id free in every lockspace (`per_lockspace[i][id - 1]`) and not
/// `refused`: the best kind of slot (`SlotUse` order) by its worst
/// lockspace, ties broken by `random`, so hosts starting at once mostly pick
/// different ids.
fn choose(per_lockspace: &[&[SlotUse]], refused: &[u32], random: u64) -> Option<u32> {
    let ids = per_lockspace.iter().map(|s| s.len()).min()? as u32;
    let candidates: Vec<(SlotUse, u32)> = (1..=ids)
        .filter(|id| !refused.contains(id))
        .map(|id| (per_lockspace.iter().map(|s| s[id as usize - 1]).max().unwrap_or(SlotUse::InUse), id))
        .filter(|(u, _)| *u != SlotUse::InUse)
        .collect();
    let best = candidates.iter().map(|(u, _)| *u).min()?;
    let best: Vec<u32> = candidates.iter().filter(|(u, _)| *u == best).map(|(_, id)| *id).collect();
    Some(best[(random % best.len() as u64) as usize])
}

fn describe(name: &str, slots: &[SlotUse]) -> String {
    let in_use = slots.iter().filter(|u| **u == SlotUse::InUse).count();
    format!("lockspace \"{name}\": {in_use} of {} host slots in use or not left cleanly", slots.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlotUse::*;

    #[test]
    fn prefers_our_own_then_unused_then_others_and_never_a_held_slot() {
        assert_eq!(choose(&[&[InUse, Unused, LeftByUs]], &[], 0), Some(3));
        assert_eq!(choose(&[&[LeftByOther, InUse, Unused]], &[], 7), Some(3));
        assert_eq!(choose(&[&[LeftByOther, InUse]], &[], 7), Some(1));
        assert_eq!(choose(&[&[InUse, InUse]], &[], 0), None);
        assert_eq!(choose(&[&[Unused, Unused]], &[1, 2], 0), None);
    }

    #[test]
    fn an_id_must_be_free_in_every_lockspace_and_within_the_smallest() {
        assert_eq!(choose(&[&[Unused, InUse, Unused], &[InUse, Unused, Unused, Unused]], &[], 0), Some(3));
        assert_eq!(choose(&[&[Unused, Unused, Unused, Unused], &[InUse, InUse]], &[], 0), None);
        // Our own left slot in one lockspace, unused in the other: an
        // unused-grade choice, ranked by its worst lockspace.
        assert_eq!(choose(&[&[LeftByOther, LeftByUs], &[Unused, Unused]], &[], 0), Some(2));
    }

    #[test]
    fn ties_are_spread_by_the_random_draw() {
        let slots = [Unused; 8];
        let picks: std::collections::BTreeSet<u32> = (0..8).filter_map(|r| choose(&[&slots], &[], r)).collect();
        assert_eq!(picks.len(), 8);
    }

    #[test]
    fn the_file_round_trips_and_a_garbled_one_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("hl-host-id-test-{}", std::process::id()));
        let f = HostIdFile::new(&dir.join("sub/host-id"));
        assert_eq!(f.remembered().unwrap(), None);
        f.record(17).unwrap();
        assert_eq!(f.remembered().unwrap(), Some(17));
        std::fs::write(dir.join("sub/host-id"), "host_id = lots\n").unwrap();
        let e = f.remembered().unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("sub/host-id") && e.contains("host_id = N"), "{e}");
    }
}
