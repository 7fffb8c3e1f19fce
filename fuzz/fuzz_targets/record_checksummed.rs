//! A whole small lockspace of fuzzed records, most of them sealed with a
//! valid checksum, so that what lies behind the checksum reaches the code
//! that trusts it: host ids, owners, generations and flags as any writer
//! (a buggy build, a host with a duplicate id, a hand-edited file) could
//! have left them. A record naming host id 0 once panicked here. The
//! records are judged in memory as the daemon judges them (peer watching,
//! lease descriptions, ownership checks) and read from storage as
//! `highlander dump` and `highlander who --lockspace` read them.
#![no_main]

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use highlander_fuzz::{check_sector, seal, sector};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use engine::clock::Mono;
use engine::delta_lease::{self, HostState, OwnSlot, Peers, SlotRead};
use engine::direct;
use engine::format::{Dblock, Header, HostSlot, Leader, RecordKind, RECORD_LEN};
use engine::paxos_lease::ResourceArea;
use engine::resource;
use engine::timing::Timeouts;

type Sector = [u8; RECORD_LEN];

/// A lockspace as it lies on storage: a valid header, then each host's
/// slot, then each resource's leader and one ballot block per host.
struct Image {
    header: Header,
    slots: Vec<Sector>,
    resources: Vec<(Sector, Vec<Sector>)>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(image) = image(&mut Unstructured::new(data)) else { return };
    for s in image.slots.iter().chain(image.resources.iter().flat_map(|(l, d)| std::iter::once(l).chain(d))) {
        check_sector(s);
    }
    judge_in_memory(&image);
    read_from_storage(&image);
});

fn image(u: &mut Unstructured) -> Result<Image> {
    let header = Header {
        name: u.arbitrary()?,
        uuid: u.arbitrary()?,
        sector_size: if u.arbitrary()? { 4096 } else { 512 },
        max_hosts: u.int_in_range(1..=8)?,
        resource_slots: u.int_in_range(1..=4)?,
        // Mostly valid; out of range (< 20 ms, > 300 s) is refused.
        io_timeout_ms: u.int_in_range(0..=400_000)?,
        created_unix: u.arbitrary()?,
        member_index: 0,
        members: 1,
    };
    let hosts = header.max_hosts as usize;
    let slots = (0..hosts).map(|_| record(u, RecordKind::HostSlot, &header)).collect::<Result<_>>()?;
    let resources = (0..header.resource_slots)
        .map(|_| Ok((record(u, RecordKind::Leader, &header)?, (0..hosts).map(|_| record(u, RecordKind::Dblock, &header)).collect::<Result<_>>()?)))
        .collect::<Result<_>>()?;
    Ok(Image { header, slots, resources })
}

fn record(u: &mut Unstructured, kind: RecordKind, header: &Header) -> Result<Sector> {
    let choice = u.int_in_range(0..=3)?;
    if choice == 0 {
        return Ok([0; RECORD_LEN]); // never written
    }
    let raw = sector(u.bytes(RECORD_LEN.min(u.len()))?);
    Ok(match choice {
        1 => raw,             // torn or foreign: fails verification
        2 => seal(kind, raw), // verifies, every byte behind the checksum fuzzed
        _ => ours(kind, seal(kind, raw), header),
    })
}

/// A sealed record made to belong to this lockspace (its uuid; a leader's
/// key naming its identity), so lookups and uuid checks pass and go on.
fn ours(kind: RecordKind, sealed: Sector, header: &Header) -> Sector {
    match kind {
        RecordKind::HostSlot => {
            let s = HostSlot::decode(&sealed).expect("sealed").expect("written");
            HostSlot { lockspace_uuid: header.uuid, ..s }.encode()
        }
        RecordKind::Leader => {
            let mut l = Leader::decode(&sealed).expect("sealed").expect("written");
            l.lockspace_uuid = header.uuid;
            l.value.key = resource::key_of(&l.value.identity);
            l.encode()
        }
        RecordKind::Dblock => Dblock { lockspace_uuid: header.uuid, ..Dblock::decode(&sealed).expect("sealed") }.encode(),
        RecordKind::Header => unreachable!("the header is built valid"),
    }
}

fn written(s: &Sector) -> bool {
    s.iter().any(|&b| b != 0)
}

fn judge_in_memory(image: &Image) {
    let Ok(timeouts) = Timeouts::new(Duration::from_millis(image.header.io_timeout_ms.into())) else { return };
    let max = image.header.max_hosts;
    let slots: Vec<SlotRead> = image.slots.iter().map(|s| HostSlot::decode(s)).collect();
    let mut peers = Peers::new(max, timeouts);
    let start = Mono::now();
    let corrupt = peers.observe(start, Mono::now(), &slots);
    assert_eq!(corrupt.len(), slots.iter().filter(|s| s.is_err()).count());
    assert!(corrupt.iter().all(|c| (1..=max).contains(&c.host_id)));
    assert!(peers.observe(Mono::now(), Mono::now(), &slots).is_empty(), "a slot that stays corrupt is reported once");
    assert_eq!(peers.views().len(), image.slots.iter().filter(|s| written(s)).count());

    // As read_area reads them: any corrupt record makes the area unreadable.
    let areas: Vec<ResourceArea> = image
        .resources
        .iter()
        .filter_map(|(leader, dblocks)| {
            let dblocks = dblocks.iter().map(|d| Dblock::decode(d)).collect::<std::result::Result<_, _>>().ok()?;
            Some(ResourceArea { leader: Leader::decode(leader).ok()?, dblocks, own_write_in_flight: false })
        })
        .collect();

    // Every host id and generation the records name, and ids naming no slot.
    let mut named: Vec<(u32, u64)> = vec![(0, 0), (max + 1, 1), (u32::MAX, u64::MAX)];
    named.extend(slots.iter().flatten().flatten().map(|s| (s.host_id, s.generation)));
    for a in &areas {
        if let Some(l) = &a.leader {
            named.extend([(l.value.owner_id, l.value.owner_generation), (l.writer_id, l.lver)]);
        }
        for d in &a.dblocks {
            named.extend([(d.host_id, d.shared_generation), (d.inp.owner_id, d.inp.owner_generation)]);
        }
    }
    for &(id, generation) in &named {
        let state = peers.state(id);
        let gone = peers.owner_gone(id, generation);
        let takeover = peers.takeover_in(id);
        if id == 0 || id > max {
            assert_eq!((state, gone, takeover, peers.record(id)), (HostState::Unknown, false, None, None), "host id {id}");
        }
    }

    // The daemon's judge (lockspace.rs `who`, resource.rs refusals).
    for (slot, area) in areas.iter().enumerate() {
        let info = resource::describe(&image.header, slot as u32, area, |id, generation| {
            let name = peers.record(id).map(|r| r.host_name.clone()).unwrap_or_default();
            (name, if peers.owner_gone(id, generation) { HostState::Dead } else { peers.state(id) })
        });
        let leader = area.leader.clone().unwrap_or_default();
        assert_eq!(info.held, resource::effectively_held(&leader, &area.dblocks));
        assert_eq!((info.lver, info.owner_id), (leader.lver, leader.value.owner_id));
        assert!(info.shared.iter().all(|s| s.host_state != HostState::Dead));
    }

    // A renewal's ownership check on each slot, as its own last write.
    for (i, read) in slots.iter().enumerate() {
        let host_id = i as u32 + 1;
        if let Ok(Some(s)) = read {
            assert_eq!(matches!(delta_lease::check_own(read, s, s.renewal), OwnSlot::Ours), !s.free);
            assert!(delta_lease::taken_why(host_id, Some(s)).contains(&format!("host id {host_id}")));
        }
    }
}

/// One memfd for the whole run, reopened by path as storage opens a file.
fn lockspace_file() -> &'static (File, PathBuf) {
    static FILE: OnceLock<(File, PathBuf)> = OnceLock::new();
    FILE.get_or_init(|| {
        // SAFETY: the name is NUL-terminated; memfd_create returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"hl-fuzz-lockspace".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        (file, PathBuf::from(format!("/proc/self/fd/{fd}")))
    })
}

fn read_from_storage(image: &Image) {
    let ss = image.header.sector_size as usize;
    let mut bytes = Vec::new();
    let mut put = |s: &[u8]| {
        bytes.extend_from_slice(s);
        bytes.resize(bytes.len().next_multiple_of(ss), 0);
    };
    put(&image.header.encode());
    image.slots.iter().for_each(|s| put(s));
    for (leader, dblocks) in &image.resources {
        put(leader);
        dblocks.iter().for_each(|d| put(d));
    }
    assert_eq!(bytes.len() as u64, image.header.layout().total_sectors() * ss as u64);
    let (file, path) = lockspace_file();
    file.set_len(0).and_then(|()| file.write_all_at(&bytes, 0)).expect("write the lockspace image");

    match direct::dump(path) {
        Ok(dump) => {
            assert_eq!(dump.hosts.len(), image.slots.iter().filter(|s| written(s)).count());
            let verified = image.resources.iter().filter(|(l, _)| matches!(Leader::decode(l), Ok(Some(_)))).count();
            assert_eq!(dump.resources.len(), verified);
            let _ = dump.to_string();
            serde_json::to_string(&dump).expect("a dump serialises");
        }
        // The header is valid and the file whole: only its io_timeout can be refused.
        Err(e) => assert!(Timeouts::new(Duration::from_millis(image.header.io_timeout_ms.into())).is_err(), "dump: {e}"),
    }
    for (leader, _) in &image.resources {
        if let Ok(Some(l)) = Leader::decode(leader) {
            if let Ok(Some(info)) = direct::who(std::slice::from_ref(path), &l.value.identity) {
                serde_json::to_string(&info).expect("lease info serialises");
            }
        }
    }
}
