//! A bounded CPU hog for the benchmarks' loaded mode: one busy process per
//! core (a shell loop, so it competes as another program on the host would),
//! ended by pid when dropped.

use std::process::{Child, Command, Stdio};

pub struct CpuLoad {
    hogs: Vec<Child>,
}

impl CpuLoad {
    /// One busy process per online CPU.
    pub fn start() -> std::io::Result<CpuLoad> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut load = CpuLoad { hogs: Vec::with_capacity(cores) };
        for _ in 0..cores {
            load.hogs.push(Command::new("sh").args(["-c", "while :; do :; done"]).stdin(Stdio::null()).spawn()?);
        }
        Ok(load)
    }

    pub fn processes(&self) -> usize {
        self.hogs.len()
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for hog in &mut self.hogs {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}
