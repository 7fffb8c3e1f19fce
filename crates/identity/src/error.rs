//! Why a disk has no identity, naming the disk and what to do.

use std::path::{Path, PathBuf};

/// The longest identity a lease record holds (the engine's on-disk field).
pub const IDENTITY_LEN: usize = 192;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("disk {path}: does not exist or cannot be resolved ({source}); check the path in the domain XML")]
    Resolve { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: cannot {what} ({source}); highlanderd must run as root with /proc and /sys mounted")]
    Inspect { path: PathBuf, what: String, source: std::io::Error },
    #[error("disk {path}: a loop device over {backing:?}, which is no longer that file here (deleted, replaced, or in another mount namespace); attach the loop device to a file this host can reach, or give the identity explicitly")]
    LoopBacking { path: PathBuf, backing: String },
    #[error("disk {path}: identity {identity:?} is longer than {IDENTITY_LEN} bytes; use a shorter path or give the identity explicitly (docs/IDENTITY.md)")]
    TooLong { path: PathBuf, identity: String },
    #[error("disk {path}: on the GlusterFS mount {mount}, {what}; highlander names such files by volume and GFID only (docs/IDENTITY.md): check that the mount is a FUSE mount of a GlusterFS ≥ 3.x volume with its .meta tree")]
    Gluster { path: PathBuf, mount: PathBuf, what: String },
    #[error("disk {path}: multipath map {map} (dm uuid {uuid}) has paths to different LUNs ({}), so it has no one identity; fix the multipath configuration (`multipath -ll {map}`, blacklist or wwids) so that the map holds paths to one LUN", paths_text(.paths))]
    MultipathPaths { path: PathBuf, map: String, uuid: String, paths: Vec<(String, String)> },
}

pub(crate) fn paths_text(paths: &[(String, String)]) -> String {
    paths.iter().map(|(name, identity)| format!("{name}: {identity}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn inspect(path: &Path, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    let what = what.into();
    move |source| IdentityError::Inspect { path: path.to_owned(), what, source }
}
