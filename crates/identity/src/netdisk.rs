//! Network disks (`<disk type='network'>`: rbd, gluster, iscsi, nbd), which
//! libvirt never hands to a lock manager: read from the domain XML (the
//! qemu hook gets it on stdin) and named by the storage's own names, never
//! by a host's view of them. The rules and their caveats: docs/IDENTITY.md.

// The disk as the hook sends it to highlanderd (the wire type).
pub use proto::protocol::{NetworkDisk, NetworkHost as Host};

/// The protocols with an identity rule. A disk of another protocol is kept
/// and reported as unleased, never refused: it may be a read-only ISO over
/// http that needs no lease.
pub const PROTOCOLS: &[&str] = &["rbd", "gluster", "iscsi", "nbd"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetDiskError {
    #[error("the domain XML is not well-formed: {0}")]
    Xml(String),
    #[error("network disk {target} ({protocol}): {why}")]
    Unnamed { target: String, protocol: String, why: String },
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

/// Every `<disk type='network'>` of the domain, with the domain's UUID.
/// Takes a `<domain>` (what hooks get) or libvirt's `<domstatus>` wrapping
/// one (its live state under /run/libvirt/qemu/).
pub fn from_domain_xml(xml: &str) -> Result<(String, Vec<NetworkDisk>), NetDiskError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| NetDiskError::Xml(e.to_string()))?;
    let root = doc.root_element();
    let domain = if root.has_tag_name("domstatus") { child(root, "domain").ok_or_else(|| NetDiskError::Xml("<domstatus> holds no <domain>".into()))? } else { root };
    if !domain.has_tag_name("domain") {
        return Err(NetDiskError::Xml(format!("the root element is <{}>, not <domain>", domain.tag_name().name())));
    }
    let uuid = child(domain, "uuid").and_then(|u| u.text()).map(str::trim).unwrap_or_default().to_owned();
    let Some(devices) = child(domain, "devices") else { return Ok((uuid, Vec::new())) };
    let disks = devices
        .children()
        .filter(|d| d.has_tag_name("disk") && d.attribute("type") == Some("network"))
        .filter_map(|d| {
            let source = child(d, "source")?;
            Some(NetworkDisk {
                protocol: source.attribute("protocol").unwrap_or_default().to_owned(),
                name: source.attribute("name").unwrap_or_default().to_owned(),
                hosts: source
                    .children()
                    .filter(|h| h.has_tag_name("host"))
                    .map(|h| Host {
                        name: h.attribute("name").unwrap_or_default().to_owned(),
                        port: h.attribute("port").and_then(|p| p.parse().ok()),
                        socket: h.attribute("socket").map(str::to_owned),
                    })
                    .collect(),
                readonly: child(d, "readonly").is_some(),
                shareable: child(d, "shareable").is_some(),
                target: child(d, "target").and_then(|t| t.attribute("dev")).unwrap_or("?").to_owned(),
            })
        })
        .collect();
    Ok((uuid, disks))
}

fn unnamed(disk: &NetworkDisk, why: impl Into<String>) -> NetDiskError {
    NetDiskError::Unnamed { target: disk.target.clone(), protocol: disk.protocol.clone(), why: why.into() }
}

/// The identity rules, on the wire type.
pub trait Identify {
    /// The disk's identity (see the module comment); a gluster disk's
    /// volume id and GFID are asked of the volume through libgfapi.
    fn identity(&self) -> Result<String, NetDiskError>;
    /// `identity`, with `gluster` resolving (server, port, volume, path) to
    /// (volume id, GFID).
    fn identity_with(&self, gluster: impl FnOnce(&str, u16, &str, &str) -> Result<(String, String), String>) -> Result<String, NetDiskError>;
}

impl Identify for NetworkDisk {
    fn identity(&self) -> Result<String, NetDiskError> {
        self.identity_with(|server, port, volume, path| crate::gfapi::volume_and_gfid(server, port, volume, path).map_err(|e| e.to_string()))
    }

    fn identity_with(&self, gluster: impl FnOnce(&str, u16, &str, &str) -> Result<(String, String), String>) -> Result<String, NetDiskError> {
        match self.protocol.as_str() {
            "rbd" => rbd_identity(self),
            "gluster" => {
                let (volume, path) = self.name.split_once('/').ok_or_else(|| unnamed(self, format!("source name {:?} is not VOLUME/PATH", self.name)))?;
                let host = self.hosts.iter().find(|h| h.socket.is_none()).ok_or_else(|| unnamed(self, "no TCP <host> to ask for the volume"))?;
                let (id, gfid) = gluster(&host.name, host.port.unwrap_or(24007), volume, path).map_err(|e| unnamed(self, e))?;
                Ok(format!("gluster:{id}:gfid:{gfid}"))
            }
            "iscsi" => {
                // `iqn.2013-06.com.example:target/LUN`; LUN 0 when absent.
                let (iqn, lun) = self.name.rsplit_once('/').unwrap_or((&self.name, "0"));
                if !iqn.starts_with("iqn.") && !iqn.starts_with("eui.") && !iqn.starts_with("naa.") {
                    return Err(unnamed(self, format!("source name {:?} does not start with a target name (iqn., eui. or naa.)", self.name)));
                }
                let lun: u32 = lun.parse().map_err(|_| unnamed(self, format!("LUN {lun:?} is not a number")))?;
                Ok(format!("iscsi:{iqn}/{lun}"))
            }
            "nbd" => {
                let export = &self.name;
                match self.hosts.first() {
                    // A unix socket is this host's: no other host can reach that server.
                    Some(Host { socket: Some(path), .. }) => Ok(format!("nbd:unix:{}:{path}/{export}", crate::machine_uuid())),
                    Some(h) => Ok(format!("nbd:{}:{}/{export}", h.name.to_ascii_lowercase(), h.port.unwrap_or(10809))),
                    None => Err(unnamed(self, "no <host>")),
                }
            }
            other => Err(unnamed(self, format!("protocol {other:?} has no identity rule (rbd, gluster, iscsi and nbd do); the disk gets no lease: give the guest a <lease> element"))),
        }
    }
}

/// `rbd:<sorted monitors>/<pool>[/<namespace>]/<image>`: the XML names
/// the cluster only by its monitors. A snapshot (`@snap`) is the image.
fn rbd_identity(disk: &NetworkDisk) -> Result<String, NetDiskError> {
    let image = disk.name.split('@').next().unwrap_or_default();
    let parts: Vec<&str> = image.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(unnamed(disk, format!("source name {:?} is not POOL/IMAGE or POOL/NAMESPACE/IMAGE", disk.name)));
    }
    let mut monitors: Vec<String> = disk.hosts.iter().map(|h| format!("{}:{}", h.name.to_ascii_lowercase(), h.port.unwrap_or(6789))).collect();
    if monitors.is_empty() {
        return Err(unnamed(disk, "no <host> monitors, so the cluster cannot be named (a host's ceph.conf is its own view)"));
    }
    monitors.sort();
    monitors.dedup();
    Ok(format!("rbd:{}/{}", monitors.join(","), parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = r#"<domain type='kvm'>
  <name>vm1</name>
  <uuid>9e0beccb-857a-4154-8251-5df7cefef52a</uuid>
  <devices>
    <disk type='file' device='disk'><source file='/srv/local.img'/><target dev='vda'/></disk>
    <disk type='network' device='disk'>
      <source protocol='gluster' name='vol/vms/web.qcow2'><host name='127.0.0.2' port='24007'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='rbd/db@snap1'>
        <host name='MON2.example' port='6789'/><host name='mon1.example'/>
      </source>
      <target dev='vdc'/><readonly/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='iscsi' name='iqn.2013-06.com.example:store/2'><host name='10.0.0.9' port='3260'/></source>
      <target dev='vdd'/><shareable/>
    </disk>
    <disk type='network' device='cdrom'>
      <source protocol='http' name='/iso/boot.iso'><host name='mirror'/></source>
      <target dev='sda'/>
    </disk>
  </devices>
</domain>"#;

    fn no_gluster(_: &str, _: u16, _: &str, _: &str) -> Result<(String, String), String> {
        Err("not reached".into())
    }

    #[test]
    fn network_disks_are_read_from_the_domain_xml() {
        let (uuid, disks) = from_domain_xml(DOMAIN).unwrap();
        assert_eq!(uuid, "9e0beccb-857a-4154-8251-5df7cefef52a");
        assert_eq!(disks.iter().map(|d| (d.protocol.as_str(), d.target.as_str())).collect::<Vec<_>>(), [("gluster", "vdb"), ("rbd", "vdc"), ("iscsi", "vdd"), ("http", "sda")]);
        assert!(disks[1].readonly && !disks[1].shareable && disks[2].shareable);
        assert_eq!(disks[0].hosts, [Host { name: "127.0.0.2".into(), port: Some(24007), socket: None }]);
    }

    #[test]
    fn each_protocol_is_named_by_the_storage_s_own_names() {
        let (_, disks) = from_domain_xml(DOMAIN).unwrap();
        let gluster = |server: &str, port: u16, volume: &str, path: &str| {
            assert_eq!((server, port, volume, path), ("127.0.0.2", 24007, "vol", "vms/web.qcow2"));
            Ok(("d9504055-0edb-4a33-9b90-682279193728".to_owned(), "8b3f109d-548b-48ea-a676-f2455ffd992d".to_owned()))
        };
        assert_eq!(disks[0].identity_with(gluster).unwrap(), "gluster:d9504055-0edb-4a33-9b90-682279193728:gfid:8b3f109d-548b-48ea-a676-f2455ffd992d");
        // Monitors sorted and lower-cased: hosts listing them differently agree.
        assert_eq!(disks[1].identity_with(no_gluster).unwrap(), "rbd:mon1.example:6789,mon2.example:6789/rbd/db");
        assert_eq!(disks[2].identity_with(no_gluster).unwrap(), "iscsi:iqn.2013-06.com.example:store/2");
        let err = disks[3].identity_with(no_gluster).unwrap_err().to_string();
        assert!(err.contains("protocol \"http\" has no identity rule") && err.contains("<lease>"), "{err}");
    }

    #[test]
    fn bad_input_is_an_error_not_a_crash() {
        assert!(matches!(from_domain_xml("<domain><devices>"), Err(NetDiskError::Xml(_))));
        assert_eq!(from_domain_xml("<domain/>").unwrap(), (String::new(), Vec::new()));
        let disk = |protocol: &str, name: &str| NetworkDisk { protocol: protocol.into(), name: name.into(), hosts: vec![], readonly: false, shareable: false, target: "vdz".into() };
        assert!(disk("rbd", "image-only").identity_with(no_gluster).unwrap_err().to_string().contains("POOL/IMAGE"));
        assert!(disk("rbd", "pool/img").identity_with(no_gluster).unwrap_err().to_string().contains("no <host> monitors"));
        assert!(disk("iscsi", "target/x").identity_with(no_gluster).unwrap_err().to_string().contains("target name"));
        assert!(disk("gluster", "novolume").identity_with(no_gluster).unwrap_err().to_string().contains("VOLUME/PATH"));
    }

    #[test]
    fn rbd_names_the_image_whatever_the_monitor_order_or_snapshot() {
        let rbd = |name: &str, hosts: &[(&str, Option<u16>)]| NetworkDisk {
            protocol: "rbd".into(),
            name: name.into(),
            hosts: hosts.iter().map(|(h, p)| Host { name: (*h).into(), port: *p, socket: None }).collect(),
            readonly: false,
            shareable: false,
            target: "vda".into(),
        };
        let a = rbd("pool/ns/img", &[("mon-b", None), ("MON-A", Some(6789)), ("mon-b", Some(6789))]).identity_with(no_gluster).unwrap();
        assert_eq!(a, "rbd:mon-a:6789,mon-b:6789/pool/ns/img");
        assert_eq!(rbd("pool/ns/img@snap", &[("mon-a", None), ("mon-b", None)]).identity_with(no_gluster).unwrap(), a);
        assert_ne!(rbd("pool/img", &[("mon-a", None)]).identity_with(no_gluster).unwrap(), rbd("pool/img", &[("mon-a", Some(3300))]).identity_with(no_gluster).unwrap());
        assert!(rbd("a/b/c/d", &[("m", None)]).identity_with(no_gluster).is_err());
    }

    #[test]
    fn nbd_by_server_and_export_and_a_unix_socket_is_this_host_s() {
        let nbd = |host: Host| NetworkDisk { protocol: "nbd".into(), name: "exp".into(), hosts: vec![host], readonly: false, shareable: false, target: "vda".into() };
        assert_eq!(nbd(Host { name: "NBD.example".into(), port: None, socket: None }).identity_with(no_gluster).unwrap(), "nbd:nbd.example:10809/exp");
        let unix = nbd(Host { name: String::new(), port: None, socket: Some("/run/nbd.sock".into()) }).identity_with(no_gluster).unwrap();
        assert_eq!(unix, format!("nbd:unix:{}:/run/nbd.sock/exp", crate::machine_uuid()));
    }

    #[test]
    fn a_live_domstatus_is_read_like_its_domain_and_other_roots_are_refused() {
        let status = format!("<domstatus state='running' pid='42'><monitor path='/x'/>{DOMAIN}</domstatus>");
        assert_eq!(from_domain_xml(&status).unwrap(), from_domain_xml(DOMAIN).unwrap());
        assert!(matches!(from_domain_xml("<network/>"), Err(NetDiskError::Xml(m)) if m.contains("<network>")));
    }
}
