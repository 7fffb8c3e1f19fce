//! The daemon's wire protocol (docs/PROTOCOL.md): one JSON object per line
//! each way, every message carries the protocol version `v`, every request
//! gets exactly one response, a result or a typed error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Mode;

pub const VERSION: u32 = 1;
/// Longest request or response line, newline included.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Every op this daemon knows.
pub const OPS: &[&str] = &["register", "acquire", "release", "inquire", "status", "who", "metrics", "declare", "undeclare"];
/// The ops that change no lease: the configured `group` may send these
/// only; any op not listed here is root's (docs/PROTOCOL.md).
pub const READ_ONLY_OPS: &[&str] = &["inquire", "status", "who", "metrics"];

/// What to do with a guest whose leases can no longer be kept
/// (libvirt's `<on_lockfailure>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The daemon's configured `on_lockfailure`.
    Default,
    /// SIGKILL the guest process.
    Poweroff,
    /// Run the fence helper to pause the guest (libvirt then releases).
    Pause,
    /// Run the fence helper to destroy and start the guest again.
    Restart,
    /// Log only; the guest keeps running without valid leases.
    Ignore,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Default => "default",
            Action::Poweroff => "poweroff",
            Action::Pause => "pause",
            Action::Restart => "restart",
            Action::Ignore => "ignore",
        })
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "poweroff" => Ok(Action::Poweroff),
            "pause" => Ok(Action::Pause),
            "restart" => Ok(Action::Restart),
            "ignore" => Ok(Action::Ignore),
            _ => Err("must be one of poweroff, pause, restart, ignore".into()),
        }
    }
}

/// One disk in a request: by path (the daemon computes the identity) or by
/// explicit identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default = "exclusive")]
    pub mode: Mode,
    /// Lockspace name; absent = the first configured lockspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockspace: Option<String>,
}

impl Resource {
    /// A disk by path in the default lockspace.
    pub fn path(path: impl Into<String>, mode: Mode) -> Resource {
        Resource { path: Some(path.into()), identity: None, mode, lockspace: None }
    }
}

fn exclusive() -> Mode {
    Mode::Exclusive
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The guest's pid; absent = the connecting process. Only root may name
    /// another process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub uuid: String,
    pub name: String,
    #[serde(default)]
    pub uri: String,
    #[serde(default = "default_action")]
    pub action: Action,
    /// Acquired atomically with the registration (libvirt's child path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

fn default_action() -> Action {
    Action::Default
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acquire {
    pub pid: u32,
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Replaces the guest's lock-failure action when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub pid: u32,
    /// Absent = every lease of the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<Resource>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inquire {
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhoResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockspace: Option<String>,
}

/// A domain's network disks (`<disk type='network'>`), which libvirt never
/// hands to a lock manager: declared by the qemu hook before the guest
/// starts, leased with the guest's next acquire (docs/PROTOCOL.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declare {
    pub uuid: String,
    /// The domain's name, for messages.
    pub name: String,
    pub disks: Vec<NetworkDisk>,
    /// Lockspace of the leases; absent = the first configured lockspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockspace: Option<String>,
}

/// One `<disk type='network'>` as the domain XML describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDisk {
    /// The `<source protocol=…>`: rbd, gluster, iscsi, nbd, or one we do not name.
    pub protocol: String,
    /// The `<source name=…>`: `pool/image`, `volume/path`, `iqn/lun`, the export.
    pub name: String,
    /// `<host name= port=>` (or `socket=` for a unix transport), in XML order.
    #[serde(default)]
    pub hosts: Vec<NetworkHost>,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub shareable: bool,
    /// The guest's device name (`<target dev=…>`), for messages.
    pub target: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkHost {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The socket path of a `transport='unix'` host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

impl NetworkDisk {
    /// `protocol://host/name`, as people write the disk.
    pub fn source(&self) -> String {
        let host = self.hosts.first().map(|h| match (&h.socket, h.port) {
            (Some(s), _) => format!("unix:{s}"),
            (None, Some(p)) => format!("{}:{p}", h.name),
            (None, None) => h.name.clone(),
        });
        format!("{}://{}/{}", self.protocol, host.unwrap_or_default(), self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Undeclare {
    pub uuid: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Register(Register),
    Acquire(Acquire),
    Release(Release),
    Inquire(Inquire),
    Status,
    Who(WhoResource),
    /// Prometheus metrics: the answer is their OpenMetrics text, one JSON string.
    Metrics,
    Declare(Declare),
    Undeclare(Undeclare),
}

impl Request {
    pub fn op(&self) -> &'static str {
        match self {
            Request::Register(_) => "register",
            Request::Acquire(_) => "acquire",
            Request::Release(_) => "release",
            Request::Inquire(_) => "inquire",
            Request::Status => "status",
            Request::Who(_) => "who",
            Request::Metrics => "metrics",
            Request::Declare(_) => "declare",
            Request::Undeclare(_) => "undeclare",
        }
    }

    /// Does it change leases or guests? Then only root may send it.
    pub fn mutates(&self) -> bool {
        !READ_ONLY_OPS.contains(&self.op())
    }

    /// The request as one JSON line (without the newline).
    pub fn encode(&self) -> String {
        let body = match self {
            Request::Register(r) => serde_json::to_value(r),
            Request::Acquire(r) => serde_json::to_value(r),
            Request::Release(r) => serde_json::to_value(r),
            Request::Inquire(r) => serde_json::to_value(r),
            Request::Status | Request::Metrics => Ok(Value::Object(Default::default())),
            Request::Who(r) => serde_json::to_value(r),
            Request::Declare(r) => serde_json::to_value(r),
            Request::Undeclare(r) => serde_json::to_value(r),
        };
        let mut body = body.expect("requests serialise");
        let obj = body.as_object_mut().expect("requests are objects");
        obj.insert("v".into(), VERSION.into());
        obj.insert("op".into(), self.op().into());
        body.to_string()
    }

    /// Parses one request line.
    pub fn decode(line: &[u8]) -> Result<Request, WireError> {
        let bad = |m: String| WireError::new(Code::BadRequest, m);
        let value: Value = serde_json::from_slice(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let Value::Object(mut obj) = value else { return Err(bad("a request must be a JSON object".into())) };
        match obj.remove("v") {
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION as u64) => {}
            Some(v) => return Err(WireError::new(Code::UnsupportedVersion, format!("protocol version {v} is not supported; this daemon speaks version {VERSION}"))),
            None => return Err(bad(format!("missing \"v\" (protocol version; this daemon speaks {VERSION})"))),
        }
        let op = match obj.remove("op") {
            Some(Value::String(op)) => op,
            _ => return Err(bad(format!("missing \"op\" (one of {})", OPS.join(", ")))),
        };
        fn body<T: serde::de::DeserializeOwned>(op: &str, obj: serde_json::Map<String, Value>) -> Result<T, WireError> {
            serde_json::from_value(Value::Object(obj)).map_err(|e| WireError::new(Code::BadRequest, format!("{op}: {e}")))
        }
        Ok(match op.as_str() {
            "register" => Request::Register(body(&op, obj)?),
            "acquire" => Request::Acquire(body(&op, obj)?),
            "release" => Request::Release(body(&op, obj)?),
            "inquire" => Request::Inquire(body(&op, obj)?),
            "status" if obj.is_empty() => Request::Status,
            "status" => return Err(bad("status: takes no arguments".into())),
            "who" => Request::Who(body(&op, obj)?),
            "metrics" if obj.is_empty() => Request::Metrics,
            "metrics" => return Err(bad("metrics: takes no arguments".into())),
            "declare" => Request::Declare(body(&op, obj)?),
            "undeclare" => Request::Undeclare(body(&op, obj)?),
            _ => return Err(WireError::new(Code::UnknownOp, format!("unknown op {op:?}; this daemon knows {}", OPS.join(", ")))),
        })
    }
}

/// Error codes: stable, for programs; the message is for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    BadRequest,
    UnsupportedVersion,
    UnknownOp,
    TooLarge,
    PermissionDenied,
    Restricted,
    NotRegistered,
    Busy,
    VersionMismatch,
    BadState,
    NoSuchLockspace,
    BadDisk,
    /// The lockspace cannot serve now (host lease failing or lost, storage
    /// errors, contention): retry later.
    Unavailable,
    Full,
    /// `max_connections` connections are being served already.
    TooManyConnections,
    ShuttingDown,
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub code: Code,
    pub message: String,
}

impl WireError {
    pub fn new(code: Code, message: impl Into<String>) -> WireError {
        WireError { code, message: message.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl Response {
    pub fn ok(result: Value) -> Response {
        Response { v: VERSION, ok: true, result: Some(result), error: None }
    }
    pub fn err(error: WireError) -> Response {
        Response { v: VERSION, ok: false, result: None, error: Some(error) }
    }
    /// One line, newline included.
    pub fn encode(&self) -> String {
        let mut s = serde_json::to_string(self).expect("responses serialise");
        s.push('\n');
        s
    }
    /// Parses one response line (what clients read; trailing newline optional).
    pub fn decode(line: &[u8]) -> Result<Response, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

// ------------------------------------------------------------ results ---

/// A lease a guest holds, as results and `status` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub identity: String,
    pub path: String,
    pub lockspace: String,
    pub mode: Mode,
    pub lver: u64,
    pub since_unix: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasesResult {
    pub pid: u32,
    pub leases: Vec<LeaseView>,
    /// libvirt's lock state for the leases concerned (None when there are none).
    pub state: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRef {
    pub pid: u32,
    pub name: String,
    pub uuid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestView {
    pub pid: u32,
    pub name: String,
    pub uuid: String,
    pub uri: String,
    pub action: Action,
    pub registered_unix: u64,
    /// Set once a lock-failure action was applied.
    pub fenced: bool,
    pub leases: Vec<LeaseView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldView {
    #[serde(flatten)]
    pub lease: LeaseView,
    pub holders: Vec<GuestRef>,
}

/// A host as this host judges it from its slot (the words on the wire:
/// live, unknown, failing, dead, free, corrupt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Renewing.
    Live,
    /// Not watched long enough yet; counted as live.
    Unknown,
    /// Its renewals have stopped, not yet for the dead-host time.
    Failing,
    /// Its leases may be taken over.
    Dead,
    /// Left cleanly, or never used.
    Free,
    /// The slot does not decode; counted as live.
    Corrupt,
}

impl HostState {
    pub const ALL: [HostState; 6] = [HostState::Live, HostState::Unknown, HostState::Failing, HostState::Dead, HostState::Free, HostState::Corrupt];

    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Live => "live",
            HostState::Unknown => "unknown",
            HostState::Failing => "failing",
            HostState::Dead => "dead",
            HostState::Free => "free",
            HostState::Corrupt => "corrupt",
        }
    }
}

impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This host's lease in a lockspace (the words on the wire: healthy,
/// failing, lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Renewals land.
    Healthy,
    /// Renewals fail; guests are fenced at `fence_in_ms`.
    Failing,
    /// The host lease is void; the daemon rejoins.
    Lost,
}

impl Health {
    pub const ALL: [Health; 3] = [Health::Healthy, Health::Failing, Health::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Failing => "failing",
            Health::Lost => "lost",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub host_id: u32,
    pub host_name: String,
    pub generation: u64,
    pub state: HostState,
    pub renewed_unix: u64,
    pub last_change_ago_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockspaceStatus {
    pub name: String,
    pub path: String,
    pub generation: u64,
    pub resumed: bool,
    pub io_timeout_ms: u64,
    pub health: Health,
    /// Time since the start of the last renewal that landed (absent from
    /// daemons older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_age_ms: Option<u64>,
    /// Time left before this host's leases are void (None once lost).
    pub valid_for_ms: Option<u64>,
    /// Time left before lock-failure actions start (only while failing).
    pub fence_in_ms: Option<u64>,
    pub error: Option<String>,
    pub hosts: Vec<HostStatus>,
    /// A lockspace on a set of devices: each device, in member order
    /// (empty for a lockspace on one device). The lockspace runs while a
    /// majority is ok; with any member not ok it is degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
}

impl LockspaceStatus {
    /// A set with a member that is not ok (the lockspace runs on the others).
    pub fn degraded(&self) -> bool {
        self.members.iter().any(|m| m.state != MemberHealth::Ok)
    }
}

/// How a member device of a lockspace's set is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberHealth {
    /// Answering.
    Ok,
    /// An I/O has been outstanding past its deadline; the member is not
    /// asked again until it completes.
    Hung,
    /// Could not be opened at the join; the set runs without it.
    Missing,
    /// Its last I/O failed, and none has succeeded since.
    Failing,
}

impl MemberHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberHealth::Ok => "ok",
            MemberHealth::Hung => "hung",
            MemberHealth::Missing => "missing",
            MemberHealth::Failing => "failing",
        }
    }
}

impl std::fmt::Display for MemberHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// 1-based place in the set.
    pub member: u32,
    pub path: String,
    pub state: MemberHealth,
    /// While hung: how long its oldest I/O has been outstanding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hung_for_ms: Option<u64>,
    /// While missing: why it could not be opened; while failing: its last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub daemon_version: String,
    pub daemon_pid: u32,
    pub host_id: u32,
    /// `host_id = auto`: the id was claimed by the daemon, not configured.
    #[serde(default)]
    pub host_id_auto: bool,
    pub host_name: String,
    pub lockspaces: Vec<LockspaceStatus>,
    pub leases: Vec<HeldView>,
    pub guests: Vec<GuestView>,
    /// Releases on storage that failed and are being retried: other hosts
    /// still see these disks held by this host.
    #[serde(default)]
    pub pending_releases: Vec<PendingRelease>,
    /// Guests still alive after SIGKILL at the fence deadline, and what this
    /// host did about it (latest last; kept in the state dir).
    #[serde(default)]
    pub escalations: Vec<Escalation>,
    /// Where `metrics_listen` serves /metrics (absent when not configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Domains whose network disks the qemu hook declared (`declare`).
    #[serde(default)]
    pub declared: Vec<DeclaredView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRelease {
    pub lockspace: String,
    pub identity: String,
    pub lver: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedView {
    pub host_id: u32,
    pub host_name: String,
    pub guest: String,
    pub uuid: String,
    pub host_state: HostState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoResult {
    pub identity: String,
    pub path: Option<String>,
    pub lockspace: String,
    /// Has the lockspace ever held a lease for this disk?
    pub known: bool,
    pub lver: u64,
    pub held: bool,
    pub owner_id: u32,
    pub owner_name: String,
    pub owner_state: HostState,
    pub guest: String,
    pub uuid: String,
    pub since_unix: u64,
    pub shared: Vec<SharedView>,
    /// Guests on the answering host that hold it.
    pub local_holders: Vec<GuestRef>,
}

/// A declared network disk, as `declare` answers and `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredDiskView {
    pub target: String,
    pub protocol: String,
    /// `protocol://host/name`.
    pub source: String,
    /// None: a protocol without an identity rule; the disk has no lease.
    pub identity: Option<String>,
    pub mode: Mode,
    /// Why the disk has no identity (with `identity` None).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unleased_why: Option<String>,
    /// Held now by a guest with the domain's UUID on this host.
    #[serde(default)]
    pub leased: bool,
}

/// A domain's declared network disks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredView {
    pub uuid: String,
    pub name: String,
    pub lockspace: String,
    pub disks: Vec<DeclaredDiskView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeclareResult {
    pub uuid: String,
    /// False: nothing was declared, or (with `kept_why`) a guest on this
    /// host still holds leases for the domain.
    pub dropped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_why: Option<String>,
}

/// One escalation, as recorded and shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub unix: u64,
    /// CLOCK_BOOTTIME (ns), to compare with the lease timeline.
    pub mono_ns: u64,
    /// `highlanderd (pid N)` or `fence sentinel (pid N)`.
    pub by: String,
    pub lockspace: String,
    /// The guests still alive at the deadline.
    pub guests: Vec<String>,
    /// What was done, and how it went.
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Request::Acquire(Acquire {
            pid: 42,
            resources: vec![Resource::path("/a", Mode::Shared)],
            state: Some("hl1:x".into()),
            action: Some(Action::Pause),
        });
        let line = r.encode();
        assert!(line.contains("\"v\":1") && line.contains("\"op\":\"acquire\""), "{line}");
        assert_eq!(Request::decode(line.as_bytes()).unwrap(), r);
        assert_eq!(Request::decode(Request::Status.encode().as_bytes()).unwrap(), Request::Status);
        let who = Request::Who(WhoResource { path: Some("/d".into()), identity: None, lockspace: None });
        assert_eq!(Request::decode(who.encode().as_bytes()).unwrap(), who);
        assert_eq!(Request::decode(Request::Metrics.encode().as_bytes()).unwrap(), Request::Metrics);
        assert_eq!(Request::decode(br#"{"v":1,"op":"metrics","x":1}"#).unwrap_err().code, Code::BadRequest);
    }

    #[test]
    fn typed_errors() {
        let code = |s: &str| Request::decode(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{nope"), Code::BadRequest);
        assert_eq!(code("[1]"), Code::BadRequest);
        assert_eq!(code(r#"{"op":"status"}"#), Code::BadRequest);
        assert_eq!(code(r#"{"v":2,"op":"status"}"#), Code::UnsupportedVersion);
        assert_eq!(code(r#"{"v":1,"op":"explode"}"#), Code::UnknownOp);
        assert_eq!(code(r#"{"v":1,"op":"inquire"}"#), Code::BadRequest);
        assert_eq!(code(r#"{"v":1,"op":"inquire","pid":1,"extra":2}"#), Code::BadRequest);
        assert_eq!(code(r#"{"v":1,"op":"acquire","pid":1,"resources":[{"path":"/a","mode":"sideways"}]}"#), Code::BadRequest);
    }

    #[test]
    fn every_op_is_known_and_only_reads_are_read_only() {
        let samples = [
            Request::Register(Register { pid: None, uuid: String::new(), name: String::new(), uri: String::new(), action: Action::Default, resources: vec![], state: None }),
            Request::Acquire(Acquire { pid: 1, resources: vec![], state: None, action: None }),
            Request::Release(Release { pid: 1, resources: None }),
            Request::Inquire(Inquire { pid: 1 }),
            Request::Status,
            Request::Who(WhoResource { path: Some("/d".into()), identity: None, lockspace: None }),
            Request::Metrics,
            Request::Declare(Declare { uuid: String::new(), name: String::new(), disks: vec![], lockspace: None }),
            Request::Undeclare(Undeclare { uuid: String::new() }),
        ];
        assert_eq!(samples.iter().map(Request::op).collect::<Vec<_>>(), OPS);
        let mutating: Vec<&str> = samples.iter().filter(|r| r.mutates()).map(Request::op).collect();
        assert_eq!(mutating, ["register", "acquire", "release", "declare", "undeclare"]);
        for r in &samples {
            assert_eq!(&Request::decode(r.encode().as_bytes()).unwrap(), r);
        }
    }
}
