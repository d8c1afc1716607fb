//! Fast-path backend ids. A flow table entry names its backend by id, so an
//! id freed by a reload is handed out again as late as possible: the oldest
//! freed id first, and only once the never-used ones run out.
//!
//! For the same reason an agent that adopts a running fast path must give
//! every backend the id it had: each id's VIP and address are recorded
//! ([`BackendRecord`]) in a map of the agent's own, pinned beside the
//! program's maps, so the record lives exactly as long as the flows that
//! name the id. (A file would outlive a reboot that cleared the maps, and
//! could disagree with them after a crash between the two writes.)

use std::{collections::VecDeque, net::IpAddr};

use lb_common::BackendRecord;

use crate::config::Vip;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    next: u32,
    max: u32,
    freed: VecDeque<u32>,
}

impl Ids {
    /// Ids `1..max` (0 marks an empty ring slot).
    pub fn new(max: u32) -> Self {
        Self { next: 1, max, freed: VecDeque::new() }
    }

    /// Ids `1..max` of which `taken` are in use: the never-used ones are
    /// those above the highest taken, and the gaps below it are handed out
    /// last, as freed ids are (flows may still name them).
    pub fn with_taken(max: u32, taken: impl IntoIterator<Item = u32>) -> Self {
        let mut taken: Vec<u32> = taken.into_iter().filter(|&id| id > 0 && id < max).collect();
        taken.sort_unstable();
        let next = taken.last().map_or(1, |&id| id + 1);
        let freed = (1..next).filter(|id| taken.binary_search(id).is_err()).collect();
        Self { next, max, freed }
    }

    pub fn take(&mut self) -> Option<u32> {
        if self.next < self.max {
            self.next += 1;
            return Some(self.next - 1);
        }
        self.freed.pop_front()
    }

    pub fn give_back(&mut self, id: u32) {
        self.freed.push_back(id);
    }
}

/// 16 bytes for either family, IPv4 mapped (as `VipKey` stores it).
fn octets(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The record of `backend` (or the sorry server) of `vip`, at VIP index
/// `vip_index`.
pub fn record(vip: &Vip, vip_index: u32, backend: IpAddr) -> BackendRecord {
    BackendRecord {
        vip_addr: octets(vip.address),
        backend_addr: octets(backend),
        vip_port: vip.port,
        vip_proto: vip.protocol.number(),
        in_use: 1,
        vip_index,
    }
}

/// Whether `record` names a backend of `vip` (any address).
pub fn is_of(record: &BackendRecord, vip: &Vip) -> bool {
    record.vip_addr == octets(vip.address) && record.vip_port == vip.port && record.vip_proto == vip.protocol.number()
}

/// Whether `record` names `backend` of `vip`.
pub fn names(record: &BackendRecord, vip: &Vip, backend: IpAddr) -> bool {
    is_of(record, vip) && record.backend_addr == octets(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_ids_stay_taken_and_gaps_come_last() {
        let mut ids = Ids::with_taken(8, [5, 2]);
        assert_eq!((ids.take(), ids.take()), (Some(6), Some(7)), "never-used ids first");
        assert_eq!((ids.take(), ids.take(), ids.take(), ids.take()), (Some(1), Some(3), Some(4), None));
        assert_eq!(Ids::with_taken(4, []), Ids::new(4));
    }

    #[test]
    fn a_record_names_its_vip_and_backend() {
        let config = crate::config::Config::from_str(
            "[[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"lo\"\n[[vip.backend]]\naddress = \"10.1.0.1\"\n",
            "t.toml",
        )
        .unwrap();
        let vip = &config.vips[0];
        let backend: IpAddr = "10.1.0.1".parse().unwrap();
        let r = record(vip, 3, backend);
        assert_eq!((r.in_use, r.vip_index, r.vip_port, r.vip_proto), (1, 3, 80, 6));
        assert!(names(&r, vip, backend));
        assert!(!names(&r, vip, "10.1.0.2".parse().unwrap()));
        let mut other = vip.clone();
        other.port = 81;
        assert!(!is_of(&r, &other), "another port is another VIP");
    }

    #[test]
    fn reuses_late_and_oldest_first() {
        let mut ids = Ids::new(4);
        assert_eq!((ids.take(), ids.take()), (Some(1), Some(2)));
        ids.give_back(2);
        ids.give_back(1);
        assert_eq!(ids.take(), Some(3), "never-used ids first");
        assert_eq!((ids.take(), ids.take(), ids.take()), (Some(2), Some(1), None));
    }
}
