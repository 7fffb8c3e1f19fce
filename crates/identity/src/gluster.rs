//! GlusterFS FUSE mounts: the identity of a file on a volume, and whether
//! the volume's client options let an O_DIRECT read see every write another
//! client has completed. Both are read from the mount itself, so they hold
//! whatever server, path or subdirectory each host mounted: the file's GFID
//! from the `glusterfs.gfid.string` virtual xattr; the volume id and the
//! translators from the client graph the mount runs now
//! (`<mount point>/.meta/graphs/active/volfile`). That volfile is the graph
//! as built: turning a cache on or off builds a new graph, so translators
//! there are current, but options changed in place (strict-o-direct,
//! remote-dio, quorum) are not. So quorum is read from the replicate
//! translator's live state dump, and whether O_DIRECT reaches the bricks is
//! probed: an O_DIRECT write of an unaligned length fails with EINVAL at
//! once only when neither write-behind nor remote-dio intercepts it.
//! Rules and measurements: docs/IDENTITY.md, README "Storage".

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The mountinfo type of a GlusterFS FUSE mount.
pub const FSTYPE: &str = "fuse.glusterfs";

/// The client graph of a mount (its volfile): translators with options.
#[derive(Debug, Default)]
pub struct ClientGraph {
    translators: Vec<Translator>,
}

#[derive(Debug)]
struct Translator {
    name: String,
    kind: String,
    options: Vec<(String, String)>,
}

/// One volume option that breaks cross-client freshness or durability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeOption {
    /// The option as `gluster volume set` names it.
    pub option: &'static str,
    /// None when only its effect was seen (options changed in place do not
    /// show in the graph, so a failed O_DIRECT probe blames both options).
    pub now: Option<String>,
    pub wanted: &'static str,
}

impl std::fmt::Display for UnsafeOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.now {
            Some(now) => write!(f, "{} is {now} (must be {})", self.option, self.wanted),
            None => write!(f, "{} must be {}", self.option, self.wanted),
        }
    }
}

/// Where a mount's current client graph is.
pub fn volfile_path(mount_point: &Path) -> std::path::PathBuf {
    mount_point.join(".meta/graphs/active/volfile")
}

/// Reads the client graph the mount at `mount_point` runs now.
pub fn active_graph(mount_point: &Path) -> std::io::Result<ClientGraph> {
    Ok(ClientGraph::parse(&read_meta(&volfile_path(mount_point))?))
}

/// Reads a file of the mount's `.meta` tree. While the client switches to a
/// new graph (an option changed, a brick reconnected) the tree's files are
/// briefly absent (ENOENT, seen under load): such a read is tried again,
/// for at most half a second.
fn read_meta(path: &Path) -> std::io::Result<String> {
    let mut tries = 0;
    loop {
        match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 25 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl ClientGraph {
    /// Parses volfile text: `volume NAME` / `type T` / `option K V` /
    /// `subvolumes …` / `end-volume` blocks. Lines it does not know are skipped.
    pub fn parse(text: &str) -> ClientGraph {
        let mut graph = ClientGraph::default();
        let mut current: Option<Translator> = None;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("volume"), Some(name)) => current = Some(Translator { name: name.to_owned(), kind: String::new(), options: Vec::new() }),
                (Some("type"), Some(kind)) => {
                    if let Some(t) = current.as_mut() {
                        t.kind = kind.to_owned();
                    }
                }
                (Some("option"), Some(key)) => {
                    if let Some(t) = current.as_mut() {
                        t.options.push((key.to_owned(), words.collect::<Vec<_>>().join(" ")));
                    }
                }
                (Some("end-volume"), _) => graph.translators.extend(current.take()),
                _ => {}
            }
        }
        graph
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Translator> + 'a {
        self.translators.iter().filter(move |t| t.kind == kind)
    }

    /// The volume's id (a UUID), when every translator naming one agrees.
    pub fn volume_id(&self) -> Option<&str> {
        let mut ids = self.translators.iter().filter_map(|t| t.option("volume-id"));
        let first = ids.next()?;
        ids.all(|id| id == first).then_some(first)
    }

    /// The volume's name: the top translator (debug/io-stats) is named after it.
    pub fn volume_name(&self) -> Option<&str> {
        self.of_kind("debug/io-stats").next().map(|t| t.name.as_str())
    }

    /// The caches in this graph that serve reads without asking the bricks
    /// (a client with quick-read on read 114–128 of 200 writes stale).
    fn read_caches(&self) -> Vec<UnsafeOption> {
        [("performance/quick-read", "performance.quick-read"), ("performance/io-cache", "performance.io-cache"), ("performance/read-ahead", "performance.read-ahead")]
            .into_iter()
            .filter(|(kind, _)| self.of_kind(kind).next().is_some())
            .map(|(_, option)| UnsafeOption { option, now: Some("on".into()), wanted: "off" })
            .collect()
    }

    fn sharded(&self) -> bool {
        self.of_kind("features/shard").next().is_some()
    }

    fn replicates(&self) -> impl Iterator<Item = &str> {
        self.of_kind("cluster/replicate").map(|t| t.name.as_str())
    }
}

/// `server:/volume/dir` rather than `server:/volume` (or `server:volume`).
fn is_subdirectory_mount(source: &str) -> bool {
    source.split_once(':').is_some_and(|(_, volume)| volume.trim_matches('/').contains('/'))
}

/// A replicate translator's live client quorum, from its state dump
/// (`quorum-type = …`, `quorum-count = …`, `child_count = …`): without a
/// majority quorum a write may land on bricks a partitioned client never reads.
fn quorum_problem(dump: &str) -> Option<UnsafeOption> {
    let field = |key: &str| dump.lines().find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_owned()));
    let bricks: usize = field("child_count")?.parse().ok()?;
    match field("quorum-type")?.as_str() {
        "none" if bricks > 1 => Some(UnsafeOption { option: "cluster.quorum-type", now: Some("none".into()), wanted: "auto" }),
        "fixed" => {
            let count: usize = field("quorum-count").and_then(|c| c.parse().ok()).unwrap_or(0);
            (count * 2 <= bricks).then(|| UnsafeOption { option: "cluster.quorum-type", now: Some(format!("fixed with quorum-count {count} of {bricks} bricks")), wanted: "auto" })
        }
        _ => None,
    }
}

/// Whether O_DIRECT writes reach the bricks: creates the file `probe`,
/// writes it with an unaligned length and removes it.
pub fn direct_io_honoured(probe: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).custom_flags(libc::O_DIRECT).open(probe)?;
    let result = file.write_at(&[0u8; 100], 0);
    drop(file);
    let _ = std::fs::remove_file(probe);
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(true),
        Err(e) => Err(e),
        Ok(_) => Ok(false),
    }
}

impl Translator {
    fn option(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Why a lockspace is not joined on a GlusterFS mount.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{path}: on GlusterFS volume {volume}, whose options let a read on one host miss a write another host completed (O_DIRECT writes held in a client cache, or reads served from one), and Disk Paxos on stale reads can grant a disk twice: {}. On a gluster server run {}, or `gluster volume set {volume} group virt` (sets them all), then start again", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "), problems.iter().map(|p| format!("`gluster volume set {volume} {} {}`", p.option, p.wanted)).collect::<Vec<_>>().join(", "))]
    Options { path: PathBuf, volume: String, problems: Vec<UnsafeOption> },
    #[error("{path}: on the GlusterFS mount {mount}, but {what}; a lockspace is joined only where the volume's options can be checked")]
    Unchecked { path: PathBuf, mount: PathBuf, what: String },
    #[error("{path}: on {mount}, a mount of the subdirectory {subdirectory} of a sharded GlusterFS volume (features.shard on, as `group virt` sets it); through such a mount GlusterFS 10.3 reads files as zeros, and a lease area of zeros reads as free. Mount the volume itself (server:/VOLUME) and use the directory below it")]
    ShardedSubdirectory { path: PathBuf, mount: PathBuf, subdirectory: String },
}

/// Refuses a lockspace on a GlusterFS mount whose volume options are unsafe
/// for it; other filesystems pass (they are not checked here).
pub fn check_lockspace(path: &Path) -> Result<(), Refusal> {
    // A path that cannot be resolved fails at open, with its own message.
    let Ok(Some(fs)) = crate::filesystem_of(path) else { return Ok(()) };
    if fs.fstype != FSTYPE {
        return Ok(());
    }
    let mount = fs.mount_point;
    let unchecked = |what: String| Refusal::Unchecked { path: path.to_owned(), mount: mount.clone(), what };
    let graph = active_graph(&mount).map_err(|e| unchecked(format!("its client graph {} cannot be read ({e}); is the mount's .meta tree disabled?", volfile_path(&mount).display())))?;
    // Measured on GlusterFS 10.3: through a mount of a subdirectory
    // (`server:/volume/dir`) of a sharded volume, reads return zeros, and a
    // lease area of zeros reads as free.
    if graph.sharded() && is_subdirectory_mount(&fs.source) {
        return Err(Refusal::ShardedSubdirectory { path: path.to_owned(), mount, subdirectory: fs.source });
    }
    let mut problems = graph.read_caches();
    for replicate in graph.replicates() {
        let dump = mount.join(".meta/graphs/active").join(replicate).join("private");
        let text = read_meta(&dump).map_err(|e| unchecked(format!("{} cannot be read ({e})", dump.display())))?;
        problems.extend(quorum_problem(&text));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let probe = dir.join(format!(".highlander-probe.{}", std::process::id()));
    match direct_io_honoured(&probe) {
        Ok(true) => {}
        Ok(false) => problems.extend([
            UnsafeOption { option: "performance.strict-o-direct", now: None, wanted: "on" },
            UnsafeOption { option: "network.remote-dio", now: None, wanted: "disable" },
        ]),
        Err(e) => return Err(unchecked(format!("an O_DIRECT probe file {} cannot be written ({e}), so whether writes reach the bricks is unknown", probe.display()))),
    }
    if problems.is_empty() {
        return Ok(());
    }
    let volume = graph.volume_name().unwrap_or("VOLUME").to_owned();
    Err(Refusal::Options { path: path.to_owned(), volume, problems })
}

/// The GFID of a file on a GlusterFS mount: the volume's own name for it,
/// the same from every client and kept across renames.
pub fn gfid(path: &Path) -> std::io::Result<String> {
    const NAME: &[u8] = b"glusterfs.gfid.string\0";
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut buf = [0u8; 64];
    // SAFETY: `cpath` and NAME are NUL-terminated; the kernel writes at most
    // `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getxattr(cpath.as_ptr(), NAME.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let text = String::from_utf8_lossy(&buf[..n as usize]).trim_end_matches('\0').trim().to_ascii_lowercase();
    if text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        Ok(text)
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("glusterfs.gfid.string is {text:?}, not a GFID")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_GRAPH: &str = "volume v-client-0\n    type protocol/client\n    option volume-id d9504055-0edb-4a33-9b90-682279193728\n    option password secret\nend-volume\n\
        volume v-replicate-0\n    type cluster/replicate\n    option afr-pending-xattr v-client-0,v-client-1,v-client-2\n    option volume-id d9504055-0edb-4a33-9b90-682279193728\n    subvolumes v-client-0 v-client-1 v-client-2\nend-volume\n\
        volume v-write-behind\n    type performance/write-behind\n    subvolumes v-replicate-0\nend-volume\n\
        volume v-quick-read\n    type performance/quick-read\nend-volume\n\
        volume v-md-cache\n    type performance/md-cache\nend-volume\n\
        volume v\n    type debug/io-stats\n    option log-level INFO\nend-volume\n";

    const VIRT_GRAPH: &str = "volume v-client-0\n    type protocol/client\n    option volume-id d9504055-0edb-4a33-9b90-682279193728\n    option filter-O_DIRECT disable\nend-volume\n\
        volume v-write-behind\n    type performance/write-behind\n    option strict-O_DIRECT on\nend-volume\n\
        volume v-md-cache\n    type performance/md-cache\nend-volume\n\
        volume v\n    type debug/io-stats\nend-volume\n";

    #[test]
    fn caches_make_a_graph_unsafe_and_group_virt_has_none() {
        let graph = ClientGraph::parse(DEFAULT_GRAPH);
        assert_eq!(graph.volume_id(), Some("d9504055-0edb-4a33-9b90-682279193728"));
        assert_eq!(graph.volume_name(), Some("v"));
        assert_eq!(graph.read_caches().iter().map(|o| o.option).collect::<Vec<_>>(), ["performance.quick-read"]);
        assert_eq!(graph.replicates().collect::<Vec<_>>(), ["v-replicate-0"]);
        assert_eq!(ClientGraph::parse(VIRT_GRAPH).read_caches(), []);
    }

    #[test]
    fn client_quorum_must_be_a_majority() {
        let dump = |kind: &str, count: &str| format!("[cluster/replicate.v-replicate-0]\nchild_count = 3\nquorum-type = {kind}\n{count}up = 1\n");
        assert_eq!(quorum_problem(&dump("auto", "")), None);
        assert_eq!(quorum_problem(&dump("fixed", "quorum-count = 2\n")), None);
        assert_eq!(quorum_problem(&dump("none", "")).unwrap().to_string(), "cluster.quorum-type is none (must be auto)");
        assert_eq!(quorum_problem(&dump("fixed", "quorum-count = 1\n")).unwrap().to_string(), "cluster.quorum-type is fixed with quorum-count 1 of 3 bricks (must be auto)");
    }

    #[test]
    fn subdirectory_mounts_are_told_from_volume_mounts() {
        assert!(is_subdirectory_mount("127.0.0.2:/vol/vms"));
        assert!(is_subdirectory_mount("server:/vol/a/b/"));
        assert!(!is_subdirectory_mount("server:/vol"));
        assert!(!is_subdirectory_mount("server:vol"));
        assert!(!is_subdirectory_mount("server:/vol/"));
    }

    #[test]
    fn disagreeing_volume_ids_give_none() {
        let text = VIRT_GRAPH.to_owned() + "volume w\n type cluster/replicate\n option volume-id 00000000-0000-0000-0000-000000000001\nend-volume\n";
        assert_eq!(ClientGraph::parse(&text).volume_id(), None);
    }
}
