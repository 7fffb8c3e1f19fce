//! What the tests and benchmarks share, so no test file includes another's
//! source by path:
//! - `cpu_load`        the benchmarks' loaded mode: a busy process per core
//! - `daemon_harness`  real highlanderd processes as hosts on one lockspace
//! - `gluster`         a real GlusterFS replica 3 arbiter 1 test bed
//! - `rng`             the torture test's seeded random numbers
//! - `samples`         the benchmarks' percentiles
//! - `witness`         the torture test's record of every lease use

pub mod cpu_load;
pub mod daemon_harness;
pub mod gluster;
pub mod rng;
pub mod samples;
pub mod witness;
