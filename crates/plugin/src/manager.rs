//! One libvirt lock-manager object: the guest it is about, the resources
//! libvirt added, and the one call (acquire, release or inquire) it is built
//! for.
//!
//! What is leased:
//! - `auto_disk_leases = 1` (default): every disk libvirt adds, by path
//!   (the daemon turns the path into the disk's identity), exclusive, or
//!   shared for `<shareable/>`; read-only disks take no lease.
//! - `auto_disk_leases = 0`: disks are not leased. A writable, non-shared
//!   disk with no `<lease>` in the object is refused when
//!   `require_lease_for_disks = 1` (see [`Manager::acquire`]).
//! - `<lease>` elements, always: see [`Manager::add_resource`].
//! - network disks, which libvirt never adds: the qemu hook declares them
//!   to the daemon (crates/hook), which adds them to the guest's acquire.
//!   So a domain-wide acquire goes to the daemon even with no resource, and
//!   a domain-wide release (a pause) releases everything the guest holds.

use std::ffi::CStr;
use std::os::fd::{IntoRawFd, RawFd};

use proto::protocol::{self, Action, Request, Resource};
use proto::Mode;

use crate::config::Config;
use crate::ffi;
use crate::report::{Failure, Kind};

pub struct Manager {
    uuid: String,
    name: String,
    pid: u32,
    uri: String,
    /// What to ask the daemon for.
    resources: Vec<Resource>,
    /// How many resources libvirt added, leased or not.
    added: usize,
    /// A writable, non-shared disk that is not leased (auto_disk_leases = 0).
    unleased_disk: Option<String>,
    /// A `<lease>` was added.
    has_lease: bool,
}

/// A copied libvirt parameter (libvirt's pointers die with the call).
pub enum Param {
    Str(Option<String>),
    Uint(u64),
    Uuid([u8; 16]),
}

fn invalid(message: String) -> Failure {
    Failure::new(Kind::InvalidArg, message)
}

/// Identity of the lease for a `<lease>` with this `<key>`.
pub fn lease_identity(key: &str) -> String {
    format!("lease:{key}")
}

impl Manager {
    pub fn new(object_type: u32, params: &[(String, Param)]) -> Result<Manager, Failure> {
        if object_type != ffi::VIR_LOCK_MANAGER_OBJECT_TYPE_DOMAIN {
            return Err(invalid(format!("unsupported lock object type {object_type} (only domains can be locked)")));
        }
        let mut m = Manager { uuid: String::new(), name: String::new(), pid: 0, uri: String::new(), resources: Vec::new(), added: 0, unleased_disk: None, has_lease: false };
        for (key, value) in params {
            match (key.as_str(), value) {
                ("uuid", Param::Uuid(u)) => m.uuid = proto::uuid::format(u),
                ("name", Param::Str(Some(s))) => m.name = s.clone(),
                ("id", Param::Uint(_)) => {}
                ("pid", Param::Uint(p)) => m.pid = u32::try_from(*p).map_err(|_| invalid(format!("domain pid {p} is out of range")))?,
                ("uri", Param::Str(s)) => m.uri = s.clone().unwrap_or_default(),
                (known @ ("uuid" | "name" | "id" | "pid" | "uri"), _) => return Err(invalid(format!("domain parameter `{known}` from libvirt has an unexpected type or no value"))),
                (key, _) => return Err(invalid(format!("unknown domain parameter `{key}` from libvirt; this highlander plugin knows uuid, name, id, pid, uri"))),
            }
        }
        if m.uuid.is_empty() || m.name.is_empty() || m.pid == 0 {
            return Err(invalid(format!("libvirt did not pass the domain's uuid, name and pid (got uuid {:?}, name {:?}, pid {})", m.uuid, m.name, m.pid)));
        }
        Ok(m)
    }

    /// Adds a disk or a `<lease>`.
    ///
    /// A `<lease>` (type LEASE, `name` = its `<key>`, params `lockspace`,
    /// `path`, `offset`) becomes the lease with identity `lease:<key>` in the
    /// highlander lockspace named by `<lockspace>`, which is required: a
    /// lease is identified by lockspace name and key, and a default lockspace
    /// could differ between hosts, giving two hosts "the same" lease in two
    /// places. `<target path offset>` are where sanlock keeps such a lease
    /// (libvirt's XML requires `path`); highlander's leases live inside the
    /// lockspace, so they are accepted and not used. They are deliberately
    /// not checked against the lockspace's file: the domain XML moves between
    /// hosts with migration, and one shared device may have a different path
    /// on each host, while the lockspace name (in its header on shared
    /// storage) is the same everywhere. Writing the lockspace's path and
    /// offset 0 there is a good convention.
    pub fn add_resource(&mut self, config: &Config, kind: u32, name: &str, params: &[(String, Param)], flags: u32) -> Result<(), Failure> {
        self.added += 1;
        let shared = flags & ffi::VIR_LOCK_MANAGER_RESOURCE_SHARED != 0;
        let mode = if shared { Mode::Shared } else { Mode::Exclusive };
        let resource = match kind {
            ffi::VIR_LOCK_MANAGER_RESOURCE_TYPE_DISK => {
                if !params.is_empty() {
                    return Err(invalid(format!("disk {name}: unexpected parameters from libvirt")));
                }
                if flags & ffi::VIR_LOCK_MANAGER_RESOURCE_READONLY != 0 {
                    // Read-only disks take no lease: any number of readers is fine.
                    return Ok(());
                }
                if !config.auto_disk_leases {
                    // Only <lease>s are leased. As in sanlock, a shared disk
                    // needs no <lease>; a writable exclusive one may.
                    if !shared && self.unleased_disk.is_none() {
                        self.unleased_disk = Some(name.to_owned());
                    }
                    return Ok(());
                }
                Resource { path: Some(name.to_owned()), identity: None, mode, lockspace: config.lockspace.clone() }
            }
            ffi::VIR_LOCK_MANAGER_RESOURCE_TYPE_LEASE => {
                if flags & ffi::VIR_LOCK_MANAGER_RESOURCE_READONLY != 0 {
                    return Err(invalid(format!("<lease> '{name}': a read-only lease is not supported")));
                }
                if name.is_empty() {
                    return Err(Failure::new(Kind::ConfigUnsupported, "a <lease> has an empty <key>"));
                }
                let mut lockspace = None;
                for (key, value) in params {
                    match (key.as_str(), value) {
                        ("lockspace", Param::Str(Some(s))) if !s.is_empty() => lockspace = Some(s.clone()),
                        // sanlock's lease location: not used (see above).
                        ("path", Param::Str(_)) | ("offset", Param::Uint(_)) => {}
                        (known @ ("lockspace" | "path" | "offset"), _) => {
                            return Err(invalid(format!("<lease> '{name}': parameter `{known}` from libvirt is empty or has an unexpected type")))
                        }
                        (key, _) => return Err(invalid(format!("<lease> '{name}': unknown parameter `{key}` from libvirt (known: lockspace, path, offset)"))),
                    }
                }
                let lockspace = lockspace.ok_or_else(|| {
                    Failure::new(
                        Kind::ConfigUnsupported,
                        format!(
                            "<lease> with key '{name}' has no <lockspace>: highlander needs the name of the lockspace that holds it, e.g. <lockspace>{}</lockspace> (the lockspace's name, as `highlander status` shows it)",
                            config.lockspace.as_deref().unwrap_or("default")
                        ),
                    )
                })?;
                self.has_lease = true;
                Resource { path: None, identity: Some(lease_identity(name)), mode, lockspace: Some(lockspace) }
            }
            other => return Err(invalid(format!("{name}: unsupported resource type {other}"))),
        };
        self.resources.push(resource);
        Ok(())
    }

    /// REGISTER_ONLY (libvirt's forked child, pid = us): register the guest
    /// and return the connection for QEMU to inherit. Otherwise acquire the
    /// leases on the guest's behalf.
    ///
    /// `require_lease_for_disks` (with `auto_disk_leases = 0`) refuses an
    /// object with a writable, non-shared disk and no `<lease>`, like
    /// sanlock: at start (the child's call carries the whole domain) this is
    /// what keeps a domain without `<lease>` from starting. A call in the
    /// daemon with such an object is a resume of such a domain, or a disk
    /// hotplug (libvirt then passes that one disk and none of the domain's
    /// `<lease>`s); it goes ahead only if the guest holds a `<lease>` now.
    /// sanlock refuses every such hotplug; a paused guest holds no lease, so
    /// here too a writable disk is hot-plugged only into a running guest.
    pub fn acquire(&self, config: &Config, state: Option<&CStr>, flags: u32, action: u32) -> Result<Option<RawFd>, Failure> {
        let state = state.map(|s| s.to_str().map(str::to_owned)).transpose().map_err(|_| invalid("lock state is not UTF-8".into()))?;
        let action = match action {
            ffi::VIR_DOMAIN_LOCK_FAILURE_POWEROFF => Action::Poweroff,
            ffi::VIR_DOMAIN_LOCK_FAILURE_RESTART => Action::Restart,
            ffi::VIR_DOMAIN_LOCK_FAILURE_PAUSE => Action::Pause,
            ffi::VIR_DOMAIN_LOCK_FAILURE_IGNORE => Action::Ignore,
            _ => Action::Default,
        };
        let register_only = flags & ffi::VIR_LOCK_MANAGER_ACQUIRE_REGISTER_ONLY != 0;
        if let Some(disk) = self.unleased_disk.as_deref().filter(|_| config.require_lease_for_disks && !self.has_lease) {
            if register_only {
                return Err(Failure::new(
                    Kind::ConfigUnsupported,
                    format!(
                        "domain '{}' has a writable disk ({disk}) but no <lease>, and {} sets auto_disk_leases = 0 with require_lease_for_disks = 1: the guest was not started. \
                         Add a <lease> to the domain, or set auto_disk_leases = 1 to lease every writable disk",
                        self.name,
                        config.file.display()
                    ),
                ));
            }
            if !self.holds_a_lease(config)? {
                return Err(Failure::new(
                    Kind::ConfigUnsupported,
                    format!(
                        "domain '{}' holds no <lease> (a paused domain holds none), and {} sets auto_disk_leases = 0 with require_lease_for_disks = 1: writable disk {disk} was refused. \
                         Add a <lease> to the domain (or resume it first), or set auto_disk_leases = 1 to lease every writable disk",
                        self.name,
                        config.file.display()
                    ),
                ));
            }
        }
        if register_only {
            let req = Request::Register(protocol::Register {
                pid: Some(self.pid),
                uuid: self.uuid.clone(),
                name: self.name.clone(),
                uri: self.uri.clone(),
                action,
                resources: Vec::new(),
                state,
            });
            let (stream, _) = crate::client::call(config, &req)?;
            // The daemon restricts this connection; it lives on in QEMU.
            return Ok(Some(stream.into_raw_fd()));
        }
        // Even with no resource: the daemon adds the declared network disks.
        let req = Request::Acquire(protocol::Acquire { pid: self.pid, resources: self.resources.clone(), state, action: Some(action) });
        crate::client::call(config, &req).map_err(|f| match f.kind {
            Kind::Busy => Failure::new(Kind::Busy, format!("Failed to acquire lock: {}", f.message)),
            _ => f,
        })?;
        Ok(None)
    }

    /// Whether the guest holds a `<lease>` now.
    fn holds_a_lease(&self, config: &Config) -> Result<bool, Failure> {
        let (_, result) = crate::client::call(config, &Request::Inquire(protocol::Inquire { pid: self.pid }))?;
        let leases = result.get("leases").and_then(|l| l.as_array()).map(Vec::as_slice).unwrap_or_default();
        Ok(leases.iter().any(|l| l.get("identity").and_then(|i| i.as_str()).is_some_and(|i| i.starts_with("lease:"))))
    }

    /// Releases this object's leases and returns the lock state to hand to
    /// the next acquire. `whole_domain` (libvirt wants the state back: a
    /// pause, whose object lists the domain's disks) or an object with no
    /// resource at all releases every lease of the guest, the declared
    /// network disks' too. Otherwise (a detach, which passes no state) only
    /// the object's; one whose resources all went unleased (a read-only
    /// disk, or a disk with auto_disk_leases = 0) releases nothing: "all"
    /// would drop the guest's other leases.
    pub fn release(&self, config: &Config, whole_domain: bool) -> Result<Option<String>, Failure> {
        if !whole_domain && self.added > 0 && self.resources.is_empty() {
            return Ok(None);
        }
        let resources = (!whole_domain && !self.resources.is_empty()).then(|| self.resources.clone());
        self.state_of(config, Request::Release(protocol::Release { pid: self.pid, resources }))
    }

    pub fn inquire(&self, config: &Config) -> Result<Option<String>, Failure> {
        self.state_of(config, Request::Inquire(protocol::Inquire { pid: self.pid }))
    }

    fn state_of(&self, config: &Config, req: Request) -> Result<Option<String>, Failure> {
        let (_, result) = crate::client::call(config, &req)?;
        Ok(result.get("state").and_then(|s| s.as_str()).map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn domain() -> Manager {
        let params = vec![
            ("uuid".to_owned(), Param::Uuid([7; 16])),
            ("name".to_owned(), Param::Str(Some("web1".into()))),
            ("id".to_owned(), Param::Uint(3)),
            ("pid".to_owned(), Param::Uint(4242)),
            ("uri".to_owned(), Param::Str(Some("qemu:///system".into()))),
        ];
        Manager::new(ffi::VIR_LOCK_MANAGER_OBJECT_TYPE_DOMAIN, &params).unwrap()
    }

    fn config(text: &str) -> Config {
        let mut c = Config::parse(Path::new("/etc/libvirt/qemu-highlander.conf"), text).unwrap();
        c.socket = "/nonexistent/highlanderd.sock".into();
        c
    }

    fn lease(lockspace: Option<&str>) -> Vec<(String, Param)> {
        let mut p = vec![("path".to_owned(), Param::Str(Some("/var/lib/sanlock/x".into()))), ("offset".to_owned(), Param::Uint(1 << 20))];
        if let Some(l) = lockspace {
            p.push(("lockspace".to_owned(), Param::Str(Some(l.into()))));
        }
        p
    }

    const DISK: u32 = ffi::VIR_LOCK_MANAGER_RESOURCE_TYPE_DISK;
    const LEASE: u32 = ffi::VIR_LOCK_MANAGER_RESOURCE_TYPE_LEASE;
    const RO: u32 = ffi::VIR_LOCK_MANAGER_RESOURCE_READONLY;
    const SHARED: u32 = ffi::VIR_LOCK_MANAGER_RESOURCE_SHARED;
    const REGISTER: u32 = ffi::VIR_LOCK_MANAGER_ACQUIRE_REGISTER_ONLY | ffi::VIR_LOCK_MANAGER_ACQUIRE_RESTRICT;

    #[test]
    fn auto_mode_leases_writable_disks_and_leases_map_to_their_lockspace() {
        let c = config("lockspace = \"ls1\"");
        let mut m = domain();
        m.add_resource(&c, LEASE, "vm-web1", &lease(Some("cluster")), 0).unwrap();
        m.add_resource(&c, DISK, "/dev/a", &[], 0).unwrap();
        m.add_resource(&c, DISK, "/dev/b", &[], SHARED).unwrap();
        m.add_resource(&c, DISK, "/iso/c", &[], RO).unwrap();
        assert_eq!(
            m.resources,
            vec![
                Resource { path: None, identity: Some("lease:vm-web1".into()), mode: Mode::Exclusive, lockspace: Some("cluster".into()) },
                Resource { path: Some("/dev/a".into()), identity: None, mode: Mode::Exclusive, lockspace: Some("ls1".into()) },
                Resource { path: Some("/dev/b".into()), identity: None, mode: Mode::Shared, lockspace: Some("ls1".into()) },
            ]
        );
    }

    #[test]
    fn a_lease_needs_its_lockspace_and_known_params() {
        let c = config("");
        let e = domain().add_resource(&c, LEASE, "vm-web1", &lease(None), 0).unwrap_err();
        assert_eq!(e.kind, Kind::ConfigUnsupported);
        assert!(e.message.starts_with("<lease> with key 'vm-web1' has no <lockspace>: highlander needs the name of the lockspace"), "{}", e.message);
        let mut p = lease(Some("x"));
        p.push(("owner".into(), Param::Uint(1)));
        assert!(domain().add_resource(&c, LEASE, "k", &p, 0).unwrap_err().message.contains("unknown parameter `owner`"));
        let p = vec![("lockspace".to_owned(), Param::Uint(1))];
        assert!(domain().add_resource(&c, LEASE, "k", &p, 0).unwrap_err().message.contains("`lockspace` from libvirt is empty or has an unexpected type"));
    }

    #[test]
    fn manual_mode_refuses_to_start_writable_disks_without_a_lease() {
        let c = config("auto_disk_leases = 0");
        let mut m = domain();
        m.add_resource(&c, DISK, "/dev/a", &[], 0).unwrap();
        assert!(m.resources.is_empty());
        let e = m.acquire(&c, None, REGISTER, 0).unwrap_err();
        assert_eq!(e.kind, Kind::ConfigUnsupported);
        assert_eq!(
            e.message,
            "domain 'web1' has a writable disk (/dev/a) but no <lease>, and /etc/libvirt/qemu-highlander.conf sets auto_disk_leases = 0 with require_lease_for_disks = 1: \
             the guest was not started. Add a <lease> to the domain, or set auto_disk_leases = 1 to lease every writable disk"
        );
        // Shared and read-only disks need no lease; the daemon is asked (and is down).
        let mut m = domain();
        m.add_resource(&c, DISK, "/dev/s", &[], SHARED).unwrap();
        m.add_resource(&c, DISK, "/dev/r", &[], RO).unwrap();
        assert!(m.acquire(&c, None, REGISTER, 0).unwrap_err().message.starts_with("highlanderd is not running"));
        // With a <lease>, or with the requirement off, the start goes to the daemon.
        let mut m = domain();
        m.add_resource(&c, LEASE, "k", &lease(Some("default")), 0).unwrap();
        m.add_resource(&c, DISK, "/dev/a", &[], 0).unwrap();
        assert!(m.acquire(&c, None, REGISTER, 0).unwrap_err().message.starts_with("highlanderd is not running"));
        let c = config("auto_disk_leases = 0\nrequire_lease_for_disks = 0");
        let mut m = domain();
        m.add_resource(&c, DISK, "/dev/a", &[], 0).unwrap();
        assert!(m.acquire(&c, None, REGISTER, 0).unwrap_err().message.starts_with("highlanderd is not running"));
    }

    #[test]
    fn detaching_an_unleased_disk_releases_nothing() {
        let c = config("auto_disk_leases = 0");
        let mut m = domain();
        m.add_resource(&c, DISK, "/dev/a", &[], 0).unwrap();
        // No daemon call at all (the daemon is "down" here): nothing to release.
        assert_eq!(m.release(&c, false).unwrap(), None);
        let mut m = domain();
        m.add_resource(&config(""), DISK, "/iso/c", &[], RO).unwrap();
        assert_eq!(m.release(&c, false).unwrap(), None);
        // A pause releases everything the guest holds (its declared network
        // disks too), and so does a domain with no resources at all.
        assert!(m.release(&c, true).unwrap_err().message.contains("the guest's leases were not released"));
        assert!(domain().release(&c, false).unwrap_err().message.contains("the guest's leases were not released"));
    }

    #[test]
    fn a_domain_without_leasable_disks_still_acquires_for_its_network_disks() {
        let c = config("");
        let mut m = domain();
        m.add_resource(&c, DISK, "/iso/c", &[], RO).unwrap();
        assert!(m.acquire(&c, None, 0, 0).unwrap_err().message.starts_with("highlanderd is not running"));
        assert!(domain().acquire(&c, None, 0, 0).unwrap_err().message.starts_with("highlanderd is not running"));
    }
}
