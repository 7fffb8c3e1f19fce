//! highlander.so: libvirt's lock-driver plugin.
//!
//! Thin by design: it parses its config, translates libvirt's calls into
//! highlanderd protocol requests, and turns answers into libvirt errors. No
//! lease logic lives here. `driver` holds the exported table and the C-ABI
//! shells; `manager` the per-object logic; `client` the socket round trip;
//! `report` the bridge to libvirt's error API.

// `client` and `config` are public for highlander-hook (crates/hook), which
// reads this plugin's configuration to reach the same daemon and lockspace.
pub mod client;
pub mod config;
mod driver;
mod manager;
mod report;

#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/lock_driver.rs"));
}

pub use driver::virLockDriverImpl;

/// What the fuzz targets in fuzz/ drive; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::config::Config;
    pub use crate::report::{Failure, Kind};
}
