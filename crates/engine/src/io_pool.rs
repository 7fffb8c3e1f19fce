//! The threads that run sector I/O for storage.rs.
//!
//! Every I/O runs off the caller's thread so the caller can stop waiting at
//! its deadline. Spawning a thread per I/O put a clone, a first schedule and
//! an exit on every sector read and write, which on a busy host made the
//! acquire tails (docs/ARCHITECTURE.md, "Where the time goes"). Here idle
//! workers wait for the next job instead. A hung I/O keeps its worker for as
//! long as the kernel holds it, so the pool never waits for a free worker:
//! a job that finds none idle gets a new thread, and workers idle for
//! `IDLE_EXIT` end, so a burst or a hang leaves no threads behind.
//!
//! Bookkeeping: `idle` counts workers parked on the queue that no job has
//! claimed. A submitter claims one (decrements `idle`) before queueing, so
//! every queued job has a parked worker to run it; a parked worker that times
//! out leaves only by giving back an unclaimed place, and when every place
//! is claimed it waits on: a job is on its way to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// How long a worker with nothing to do stays for the next job (longer than
/// the renewal interval at the default timing, so a quiet host's renewals
/// reuse their workers).
const IDLE_EXIT: Duration = Duration::from_secs(30);

struct Pool {
    queue: Sender<Job>,
    jobs: Receiver<Job>,
    idle: AtomicUsize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (queue, jobs) = crossbeam_channel::unbounded();
    Pool { queue, jobs, idle: AtomicUsize::new(0) }
});

/// Runs `job` on a pool thread; Err only when no thread could be started.
pub fn run(job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let pool = &*POOL;
    let claimed = pool.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
    if claimed {
        pool.queue.send(Box::new(job)).expect("the pool's receiver lives in a static");
        return Ok(());
    }
    std::thread::Builder::new().name("hl-io".into()).spawn(move || worker(Box::new(job))).map(drop)
}

fn worker(first: Job) {
    let pool = &*POOL;
    let mut job = first;
    loop {
        job();
        pool.idle.fetch_add(1, Ordering::AcqRel);
        job = match pool.jobs.recv_timeout(IDLE_EXIT) {
            Ok(next) => next,
            Err(_) => {
                if pool.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                    return;
                }
                // Every parked place is claimed, ours among them: its job is
                // being queued.
                pool.jobs.recv().expect("the pool's sender lives in a static")
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job blocked forever (a hung device) does not hold up the next one,
    /// and many jobs at once all run.
    #[test]
    fn a_stuck_job_does_not_block_the_others() {
        let (stuck_tx, stuck_rx) = crossbeam_channel::bounded::<()>(0);
        run(move || {
            let _ = stuck_rx.recv();
        })
        .unwrap();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for i in 0..64 {
            let done_tx = done_tx.clone();
            run(move || done_tx.send(i).unwrap()).unwrap();
        }
        let mut seen: Vec<i32> = (0..64).map(|_| done_rx.recv_timeout(Duration::from_secs(10)).expect("every job runs")).collect();
        seen.sort();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        drop(stuck_tx);
    }
}
