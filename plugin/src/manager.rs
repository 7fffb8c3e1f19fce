//! One libvirt lock-manager object: the guest it is about, the disks libvirt
//! added, and the one call (acquire, release or inquire) it is built for.

use std::ffi::CStr;
use std::os::fd::{IntoRawFd, RawFd};

use lockd::daemon::protocol::{self, Action, Request, Resource};
use lockd::Mode;

use crate::config::Config;
use crate::ffi;
use crate::report::{Failure, Kind};

pub struct Manager {
    uuid: String,
    name: String,
    pid: u32,
    uri: String,
    resources: Vec<Resource>,
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

impl Manager {
    pub fn new(object_type: u32, params: &[(String, Param)]) -> Result<Manager, Failure> {
        if object_type != ffi::VIR_LOCK_MANAGER_OBJECT_TYPE_DOMAIN {
            return Err(invalid(format!("unsupported lock object type {object_type} (only domains can be locked)")));
        }
        let mut m = Manager { uuid: String::new(), name: String::new(), pid: 0, uri: String::new(), resources: Vec::new() };
        for (key, value) in params {
            match (key.as_str(), value) {
                ("uuid", Param::Uuid(u)) => m.uuid = lockd::direct::uuid_string(u),
                ("name", Param::Str(Some(s))) => m.name = s.clone(),
                ("id", Param::Uint(_)) => {}
                ("pid", Param::Uint(p)) => m.pid = u32::try_from(*p).map_err(|_| invalid(format!("domain pid {p} is out of range")))?,
                ("uri", Param::Str(s)) => m.uri = s.clone().unwrap_or_default(),
                (key, _) => return Err(invalid(format!("unknown or mistyped domain parameter `{key}` from libvirt; this highlander plugin knows uuid, name, id, pid, uri"))),
            }
        }
        if m.uuid.is_empty() || m.name.is_empty() || m.pid == 0 {
            return Err(invalid(format!("libvirt did not pass the domain's uuid, name and pid (got uuid {:?}, name {:?}, pid {})", m.uuid, m.name, m.pid)));
        }
        Ok(m)
    }

    pub fn add_resource(&mut self, config: &Config, kind: u32, name: &str, params: &[(String, Param)], flags: u32) -> Result<(), Failure> {
        if flags & ffi::VIR_LOCK_MANAGER_RESOURCE_READONLY != 0 {
            // Read-only disks take no lease: any number of readers is fine.
            return Ok(());
        }
        let mode = if flags & ffi::VIR_LOCK_MANAGER_RESOURCE_SHARED != 0 { Mode::Shared } else { Mode::Exclusive };
        let resource = match kind {
            ffi::VIR_LOCK_MANAGER_RESOURCE_TYPE_DISK => {
                if !params.is_empty() {
                    return Err(invalid(format!("disk {name}: unexpected parameters from libvirt")));
                }
                Resource { path: Some(name.to_owned()), identity: None, mode, lockspace: config.lockspace.clone() }
            }
            ffi::VIR_LOCK_MANAGER_RESOURCE_TYPE_LEASE => {
                let mut lockspace = config.lockspace.clone();
                for (key, value) in params {
                    match (key.as_str(), value) {
                        ("lockspace", Param::Str(Some(s))) => lockspace = Some(s.clone()),
                        ("path" | "offset", _) => {}
                        (key, _) => return Err(invalid(format!("<lease> {name}: unknown parameter `{key}` from libvirt"))),
                    }
                }
                Resource { path: None, identity: Some(format!("lease:{name}")), mode, lockspace }
            }
            other => return Err(invalid(format!("{name}: unsupported resource type {other}"))),
        };
        self.resources.push(resource);
        Ok(())
    }

    /// REGISTER_ONLY (libvirt's forked child, pid = us): register the guest
    /// and return the connection for QEMU to inherit. Otherwise acquire the
    /// leases on the guest's behalf.
    pub fn acquire(&self, config: &Config, state: Option<&CStr>, flags: u32, action: u32) -> Result<Option<RawFd>, Failure> {
        let state = state.map(|s| s.to_str().map(str::to_owned)).transpose().map_err(|_| invalid("lock state is not UTF-8".into()))?;
        let action = match action {
            ffi::VIR_DOMAIN_LOCK_FAILURE_POWEROFF => Action::Poweroff,
            ffi::VIR_DOMAIN_LOCK_FAILURE_RESTART => Action::Restart,
            ffi::VIR_DOMAIN_LOCK_FAILURE_PAUSE => Action::Pause,
            ffi::VIR_DOMAIN_LOCK_FAILURE_IGNORE => Action::Ignore,
            _ => Action::Default,
        };
        if flags & ffi::VIR_LOCK_MANAGER_ACQUIRE_REGISTER_ONLY != 0 {
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
        if self.resources.is_empty() {
            return Ok(None);
        }
        let req = Request::Acquire(protocol::Acquire { pid: self.pid, resources: self.resources.clone(), state, action: Some(action) });
        crate::client::call(config, &req).map_err(|f| match f.kind {
            Kind::Busy => Failure::new(Kind::Busy, format!("Failed to acquire lock: {}", f.message)),
            _ => f,
        })?;
        Ok(None)
    }

    /// Releases this object's disks (all of the guest's when it names none)
    /// and returns the lock state to hand to the next acquire.
    pub fn release(&self, config: &Config) -> Result<Option<String>, Failure> {
        let resources = (!self.resources.is_empty()).then(|| self.resources.clone());
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
