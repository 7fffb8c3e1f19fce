//! Helpers shared by the lockd integration tests that meet real files,
//! loop devices and the CLI.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh path in the test's scratch directory (removed if left over).
pub fn scratch(test: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let p = dir.join(format!("{test}-{name}-{}.lockspace", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Runs the `highlander` CLI: (exit code, stdout + stderr).
pub fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_highlander")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Runs a system tool that must succeed (installed by scripts/setup.sh).
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); run scripts/setup.sh"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device over a file, detached on drop.
pub struct LoopDevice(pub PathBuf);

impl LoopDevice {
    pub fn attach(backing: &Path, sector_size: Option<u32>) -> LoopDevice {
        let mut args = vec!["--find".to_owned(), "--show".to_owned()];
        if let Some(s) = sector_size {
            args.extend(["--sector-size".to_owned(), s.to_string()]);
        }
        args.push(backing.to_str().unwrap().to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        LoopDevice(PathBuf::from(run("losetup", &args).trim()))
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}
