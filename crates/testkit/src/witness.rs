//! The witness: what a torture host records about its resource leases, one
//! line per event, in its own append-only file. Independent of the engine:
//! each timestamp is a CLOCK_BOOTTIME reading that the host checked against
//! `Lockspace::valid_until()` just before recording it.

use engine::Mode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Acquire succeeded and the lease was valid at `t`.
    Start,
    /// The holder used the resource at `t`, having checked validity.
    Use,
    /// Last valid instant before the holder released.
    End,
}

/// One line: `kind resource host proc generation lver mode t_mono_ns`.
/// (host, generation, lver) names one lease: lver is the lease version the
/// Disk Paxos ballot chose, unique per resource. `proc` tells apart the
/// processes that ran as one host id (restarts, and twins that share it),
/// so two of them reporting one lease is caught, not merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub resource: u32,
    pub host: u32,
    pub proc: u64,
    pub generation: u64,
    pub lver: u64,
    pub mode: Mode,
    pub t: u64,
}

impl Event {
    pub fn to_line(&self) -> String {
        let kind = match self.kind {
            Kind::Start => "start",
            Kind::Use => "use",
            Kind::End => "end",
        };
        format!("{kind} {} {} {} {} {} {} {}\n", self.resource, self.host, self.proc, self.generation, self.lver, self.mode, self.t)
    }

    pub fn parse(line: &str) -> Result<Event, String> {
        let bad = || format!("malformed witness line {line:?}");
        let f: Vec<&str> = line.split(' ').collect();
        let [kind, resource, host, proc, generation, lver, mode, t] = f[..] else { return Err(bad()) };
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        Ok(Event {
            kind: match kind {
                "start" => Kind::Start,
                "use" => Kind::Use,
                "end" => Kind::End,
                _ => return Err(bad()),
            },
            resource: num(resource)? as u32,
            host: num(host)? as u32,
            proc: num(proc)?,
            generation: num(generation)?,
            lver: num(lver)?,
            mode: match mode {
                "exclusive" => Mode::Exclusive,
                "shared" => Mode::Shared,
                _ => return Err(bad()),
            },
            t: num(t)?,
        })
    }
}
