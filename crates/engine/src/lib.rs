//! highlander's lease engine: disk-paced leases on shared storage.
//!
//! One file per concept, as in sanlock:
//! - `device`       O_DIRECT sector I/O on one device, with deadlines
//! - `storage`      one device or a majority set of them; the fault hook
//! - `format`       on-disk records (docs/FORMAT.md)
//! - `crc32c`       record checksums
//! - `timing`       every timeout derived from io_timeout, and the inequalities
//! - `clock`        the monotonic clock all decisions use; wall-clock display
//! - `sys`          random bytes
//! - `lease_info`   what a reader learns of a lease and its holder; refusals
//! - `delta_lease`  host leases: join, renew, leave, judging peers live or dead
//! - `host_claim`   which host ids are free for `host_id = auto`
//! - `paxos_lease`  Disk Paxos ballots that pick a resource's next owner
//! - `resource`     resource leases: naming, exclusive/shared acquire, release
//! - `init`         formatting a new lockspace, refusing to destroy what is there
//! - `probe`        what a device already holds (libblkid, sanlock records)
//! - `lockspace`    a joined lockspace: renewal thread, health, the public API
//! - `direct`       reading a lockspace straight from storage (`dump`, `who`)
//!
//! Disk identities are the `identity` crate's, the wire protocol the `proto`
//! crate's, highlanderd the `daemon` crate's.

pub mod clock;
pub mod crc32c;
pub mod delta_lease;
pub mod device;
pub mod direct;
pub mod error;
pub mod format;
pub mod host_claim;
pub mod init;
mod io_pool;
pub mod lease_info;
pub mod lockspace;
pub mod paxos_lease;
pub mod probe;
pub mod resource;
pub mod storage;
pub mod sys;
pub mod timing;

pub use error::{Error, Result};
pub use format::Holder;
pub use init::InitOptions;
pub use lockspace::{Health, JoinOptions, Lockspace};
pub use resource::{AcquireRequest, Lease, LeaseInfo, Mode};
