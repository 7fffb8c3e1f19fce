//! highlander-hook: libvirt's qemu hook, installed as
//! /etc/libvirt/hooks/qemu.d/highlander. libvirt hands no network disk
//! (`<disk type='network'>`: rbd, gluster, iscsi, nbd) to a lock manager,
//! so this hook declares them to highlanderd before the guest starts; the
//! daemon then leases them with the guest's disks (docs/ARCHITECTURE.md).
//!
//! libvirt runs it as `highlander NAME OP SUBOP EXTRA`, the domain XML on
//! stdin. It never calls libvirt back (that would deadlock libvirtd).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plugin::config::{Config, DEFAULT_PATH};
use proto::protocol::{Declare, DeclaredView, Request, Undeclare, UndeclareResult};

const HELP: &str = "\
highlander-hook: libvirt's qemu hook for highlander (installed as /etc/libvirt/hooks/qemu.d/highlander)

Usage (by libvirtd): highlander NAME OP SUBOP EXTRA, with the domain XML on stdin

  prepare begin, migrate begin, restore begin
      declare the domain's network disks (rbd, gluster, iscsi, nbd) to
      highlanderd, which leases them with the guest's other disks when its
      vCPUs start. Fails (and so stops the start) when highlanderd cannot be
      reached or a disk cannot be named.
  reconnect begin
      the same for a guest that runs while libvirtd restarts; never fails
      (a failing reconnect hook would kill the guest): problems are logged.
  release end
      forget the declaration, unless this host still holds leases for it.

It does nothing unless qemu.conf beside the hooks directory
(/etc/libvirt/qemu.conf) sets lock_manager = \"highlander\", and reads the
plugin's configuration (socket, lockspace) from qemu-highlander.conf there.
Disks of other protocols get no lease and are reported.

Hole: a network disk hot-plugged with `virsh attach-device` runs no hook
and reaches no lock manager: it is not leased. Attach a <lease> to the
domain first; `highlander status` lists running guests' unleased network
disks.";

#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Declare; failing aborts the operation.
    Declare,
    /// Declare, but never fail (`reconnect`).
    DeclareNeverFail,
    Undeclare,
    Nothing,
}

fn action(op: &str, subop: &str) -> Action {
    match (op, subop) {
        ("prepare" | "migrate" | "restore", "begin") => Action::Declare,
        ("reconnect", "begin") => Action::DeclareNeverFail,
        ("release", "end") => Action::Undeclare,
        _ => Action::Nothing,
    }
}

/// The plugin's configuration beside the hooks directory this hook runs
/// from (`<libvirt config dir>/hooks/qemu.d/highlander` →
/// `<libvirt config dir>/qemu-highlander.conf`), else the system one.
fn config_file(argv0: &Path) -> PathBuf {
    let dir = argv0.parent().filter(|d| d.ends_with("hooks/qemu.d"));
    match dir.and_then(|d| d.parent()?.parent()) {
        Some(confdir) => confdir.join("qemu-highlander.conf"),
        None => PathBuf::from(DEFAULT_PATH),
    }
}

/// Whether libvirt's qemu.conf beside `plugin_conf` enables highlander
/// (`lock_manager = "highlander"`): an installed package must not stop
/// guests from starting on a host that does not use it.
fn enabled(plugin_conf: &Path) -> bool {
    let qemu_conf = plugin_conf.with_file_name("qemu.conf");
    let text = std::fs::read_to_string(qemu_conf).unwrap_or_default();
    text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or_default();
        l.split_once('=').is_some_and(|(k, v)| k.trim() == "lock_manager" && matches!(v.trim(), "\"highlander\"" | "'highlander'"))
    })
}

fn declare(config: &Config, domain: &str, xml: &str) -> Result<DeclaredView, String> {
    let (uuid, disks) = identity::netdisk::from_domain_xml(xml).map_err(|e| format!("the domain XML on stdin: {e}"))?;
    if uuid.is_empty() {
        return Err("the domain XML on stdin has no <uuid>".into());
    }
    let req = Request::Declare(Declare { uuid, name: domain.to_owned(), disks, lockspace: config.lockspace.clone() });
    let (_, result) = plugin::client::call(config, &req).map_err(|f| f.message)?;
    serde_json::from_value(result).map_err(|e| format!("highlanderd gave an unexpected answer to `declare` ({e})"))
}

fn undeclare(config: &Config, xml: &str) -> Result<UndeclareResult, String> {
    let (uuid, _) = identity::netdisk::from_domain_xml(xml).map_err(|e| format!("the domain XML on stdin: {e}"))?;
    let (_, result) = plugin::client::call(config, &Request::Undeclare(Undeclare { uuid })).map_err(|f| f.message)?;
    serde_json::from_value(result).map_err(|e| format!("highlanderd gave an unexpected answer to `undeclare` ({e})"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let reconnect = args.get(2).is_some_and(|op| op == "reconnect");
    // A failing reconnect hook kills the running guest: not even a bug may.
    std::panic::catch_unwind(|| run(&args)).unwrap_or(if reconnect { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn run(args: &[String]) -> ExitCode {
    if args.len() < 2 || matches!(args[1].as_str(), "-h" | "--help") {
        println!("{HELP}");
        return if args.len() < 2 { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    if args[1] == "--version" {
        println!("highlander-hook {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let (domain, op, subop) = (args[1].as_str(), args.get(2).map_or("", String::as_str), args.get(3).map_or("", String::as_str));
    let action = action(op, subop);
    // Read it all whatever the op: libvirt writes it to every hook.
    let mut xml = String::new();
    let read = std::io::stdin().read_to_string(&mut xml);
    if action == Action::Nothing {
        return ExitCode::SUCCESS;
    }
    let fail = |why: String| {
        eprintln!("highlander: domain {domain}: {op} {subop}: {why}");
        if action == Action::Declare {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    };
    if let Err(e) = read {
        return fail(format!("cannot read the domain XML on stdin: {e}"));
    }
    let file = config_file(Path::new(&args[0]));
    if !enabled(&file) {
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(Some(&file)) {
        Ok(c) => c,
        Err(f) => return fail(f.message),
    };
    match action {
        Action::Declare | Action::DeclareNeverFail => match declare(&config, domain, &xml) {
            Ok(view) => {
                for d in view.disks.iter().filter(|d| d.identity.is_none()) {
                    eprintln!("highlander: domain {domain}: network disk {} ({}) gets no lease: {}", d.target, d.source, d.unleased_why.as_deref().unwrap_or("no identity"));
                }
                ExitCode::SUCCESS
            }
            Err(why) if action == Action::DeclareNeverFail => fail(format!("{why} (the guest keeps running; its network disks stay as they were declared)")),
            Err(why) => fail(why),
        },
        Action::Undeclare => match undeclare(&config, &xml) {
            Ok(UndeclareResult { kept_why: Some(why), .. }) => fail(format!("declaration kept: {why}")),
            Ok(_) => ExitCode::SUCCESS,
            Err(why) => fail(why),
        },
        Action::Nothing => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_start_paths_may_fail_and_release_undeclares() {
        for op in ["prepare", "migrate", "restore"] {
            assert_eq!(action(op, "begin"), Action::Declare);
        }
        assert_eq!(action("reconnect", "begin"), Action::DeclareNeverFail);
        assert_eq!(action("release", "end"), Action::Undeclare);
        for (op, sub) in [("start", "begin"), ("started", "begin"), ("stopped", "end"), ("prepare", "end"), ("attach", "begin"), ("", "")] {
            assert_eq!(action(op, sub), Action::Nothing, "{op} {sub}");
        }
    }

    #[test]
    fn the_configuration_is_the_one_beside_the_hooks_directory() {
        assert_eq!(config_file(Path::new("/etc/libvirt/hooks/qemu.d/highlander")), Path::new("/etc/libvirt/qemu-highlander.conf"));
        assert_eq!(config_file(Path::new("/home/u/.config/libvirt/hooks/qemu.d/hl")), Path::new("/home/u/.config/libvirt/qemu-highlander.conf"));
        assert_eq!(config_file(Path::new("/usr/bin/highlander-hook")), Path::new(DEFAULT_PATH));
        assert_eq!(config_file(Path::new("highlander-hook")), Path::new(DEFAULT_PATH));
    }

    #[test]
    fn only_a_libvirt_that_uses_highlander_is_served() {
        let dir = std::env::temp_dir().join(format!("hl-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("qemu-highlander.conf");
        assert!(!enabled(&conf), "no qemu.conf");
        for (text, on) in [
            ("lock_manager = \"highlander\"\n", true),
            ("user = \"root\"\n  lock_manager='highlander'  # ours\n", true),
            ("#lock_manager = \"highlander\"\n", false),
            ("lock_manager = \"sanlock\"\n", false),
        ] {
            std::fs::write(dir.join("qemu.conf"), text).unwrap();
            assert_eq!(enabled(&conf), on, "{text:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
