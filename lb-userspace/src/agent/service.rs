//! One virtual service as the agent tracks it: what the configuration says,
//! what the health checks, the neighbour table and the operator say, and
//! from all of that the ring and backend entries the fast path needs.
//!
//! Pure: no I/O, so every rule (drain, inhibit_on_failure, quorum with
//! hysteresis, the sorry server) is unit-tested here.

use std::net::IpAddr;

use lb_common::{BACKEND_F_ALIVE, VIP_F_L3_HASH, VIP_F_SRC_HASH, VIP_KIND_FRAGMENTS, VIP_KIND_SERVICE, VipKey};

use crate::{
    config::{self, HashMode},
    maglev,
};

/// What a backend may receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// In the ring with its weight.
    Up,
    /// Out of the ring, but established flows keep going to it.
    Draining { why: String },
    /// Out of the ring, and flows recorded for it are re-hashed.
    Down { why: String },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Up => "up",
            State::Draining { .. } => "draining",
            State::Down { .. } => "down",
        }
    }

    pub fn why(&self) -> &str {
        match self {
            State::Up => "",
            State::Draining { why } | State::Down { why } => why,
        }
    }
}

/// A real server and everything that decides its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub address: IpAddr,
    /// Fast-path id (index into the backend array); never 0.
    pub id: u32,
    pub configured_weight: u32,
    pub inhibit_on_failure: bool,
    /// Set by `lb weight`; wins over the configured and dynamic weight.
    pub admin_weight: Option<u32>,
    /// Set by `lb drain`, cleared by `lb undrain`.
    pub admin_drained: bool,
    /// Health: `true` until a check says otherwise (keepalived starts real
    /// servers up), with the check's last reason.
    pub healthy: bool,
    pub health_reason: String,
    /// From a script check's exit status (keepalived's misc_dynamic).
    pub dynamic_weight: Option<u32>,
    /// The backend's MAC on the VIP's link; `None` until resolved.
    pub mac: Option<[u8; 6]>,
    pub mac_reason: String,
}

impl Backend {
    pub fn new(address: IpAddr, id: u32, configured_weight: u32, inhibit_on_failure: bool) -> Self {
        Self {
            address,
            id,
            configured_weight,
            inhibit_on_failure,
            admin_weight: None,
            admin_drained: false,
            healthy: true,
            health_reason: String::new(),
            dynamic_weight: None,
            mac: None,
            mac_reason: "resolving MAC address".to_owned(),
        }
    }

    /// The weight before state is considered.
    pub fn weight(&self) -> u32 {
        self.admin_weight.or(self.dynamic_weight).unwrap_or(self.configured_weight)
    }

    pub fn state(&self) -> State {
        if self.mac.is_none() {
            return State::Down { why: format!("no MAC address: {}", self.mac_reason) };
        }
        if !self.healthy {
            let why = format!("check failed: {}", self.health_reason);
            return if self.inhibit_on_failure {
                State::Draining { why: format!("{why} (inhibit_on_failure)") }
            } else {
                State::Down { why }
            };
        }
        if self.admin_drained {
            return State::Draining { why: "drained by operator".to_owned() };
        }
        if self.weight() == 0 {
            return State::Draining { why: "weight 0".to_owned() };
        }
        State::Up
    }

    /// [`state`](Self::state) is `Down`, without building its reason: the
    /// path from a failed check to the fast path asks this of every backend.
    pub fn is_down(&self) -> bool {
        self.mac.is_none() || (!self.healthy && !self.inhibit_on_failure)
    }

    /// [`state`](Self::state) is `Up`, without building a reason.
    pub fn is_up(&self) -> bool {
        self.mac.is_some() && self.healthy && !self.admin_drained && self.weight() != 0
    }

    /// Weight in the ring: 0 unless up.
    pub fn effective_weight(&self) -> u32 {
        if self.is_up() { self.weight() } else { 0 }
    }

    /// The fast path's entry for this backend.
    pub fn entry(&self, vip_index: u32) -> lb_common::Backend {
        let alive = !self.is_down();
        lb_common::Backend {
            mac: self.mac.unwrap_or_default(),
            flags: if alive { BACKEND_F_ALIVE } else { 0 },
            vip_index,
        }
    }

    fn key(&self) -> [u8; 16] {
        match self.address {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        }
    }
}

/// A VIP with its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub vip: config::Vip,
    pub vip_index: u32,
    pub backends: Vec<Backend>,
    /// Serves every new flow while quorum is lost.
    pub sorry: Option<Backend>,
    /// Whether the live weight meets the quorum (with hysteresis).
    pub quorum_up: bool,
}

impl Service {
    /// `next_id` hands out fast-path ids.
    pub fn new(vip: config::Vip, vip_index: u32, mut next_id: impl FnMut() -> u32) -> Self {
        let backends =
            vip.backends.iter().map(|b| Backend::new(b.address, next_id(), b.weight, b.inhibit_on_failure)).collect();
        let sorry = vip.sorry_server.map(|addr| Backend::new(addr, next_id(), 1, false));
        let mut s = Self { vip, vip_index, backends, sorry, quorum_up: true };
        s.update_quorum();
        s
    }

    /// Sum of the effective weights of the backends that are up.
    pub fn live_weight(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.effective_weight())).sum()
    }

    /// keepalived's quorum with hysteresis: lost below `quorum - hysteresis`,
    /// regained at `quorum + hysteresis`. Returns whether it changed.
    pub fn update_quorum(&mut self) -> bool {
        let live = self.live_weight();
        let before = self.quorum_up;
        let q = self.vip.quorum;
        let h = self.vip.hysteresis;
        if self.quorum_up && live < q.saturating_sub(h) {
            self.quorum_up = false;
        } else if !self.quorum_up && live >= q + h {
            self.quorum_up = true;
        }
        before != self.quorum_up
    }

    /// The sorry server is serving: quorum lost, and it can take packets.
    pub fn sorry_active(&self) -> bool {
        !self.quorum_up && self.sorry.as_ref().is_some_and(|s| s.state() == State::Up)
    }

    /// Maglev entries for the ring to install now.
    pub fn ring_entries(&self) -> Vec<maglev::Entry> {
        if self.sorry_active()
            && let Some(s) = &self.sorry
        {
            return vec![maglev::Entry { key: s.key(), weight: 1, id: s.id }];
        }
        self.backends.iter().map(|b| maglev::Entry { key: b.key(), weight: b.effective_weight(), id: b.id }).collect()
    }

    /// Every backend entry the fast path needs, sorry server included.
    pub fn entries(&self) -> impl Iterator<Item = (u32, lb_common::Backend)> + '_ {
        self.backends.iter().chain(&self.sorry).map(|b| (b.id, b.entry(self.vip_index)))
    }

    /// Fast-path ids of the backends and the sorry server.
    pub fn ids(&self) -> Vec<u32> {
        self.backends.iter().chain(&self.sorry).map(|b| b.id).collect()
    }

    /// The keys under which the fast path finds this VIP.
    pub fn keys(&self) -> Vec<VipKey> {
        let addr = match self.vip.address {
            IpAddr::V4(a) => lb_common::v4_mapped(u32::from_ne_bytes(a.octets())),
            IpAddr::V6(a) => {
                let o = a.octets();
                std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
            }
        };
        let proto = self.vip.protocol.number();
        let mut keys = vec![VipKey { addr, port: self.vip.port.to_be(), proto, kind: VIP_KIND_SERVICE }];
        if self.vip.fragments {
            keys.push(VipKey { addr, port: 0, proto, kind: VIP_KIND_FRAGMENTS });
        }
        keys
    }

    /// `VipMeta::flags` for this VIP.
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.vip.hash == HashMode::SourceIp {
            flags |= VIP_F_SRC_HASH;
        }
        if self.vip.fragments {
            flags |= VIP_F_L3_HASH;
        }
        flags
    }

    pub fn backend_mut(&mut self, address: IpAddr) -> Option<&mut Backend> {
        self.backends.iter_mut().chain(self.sorry.as_mut()).find(|b| b.address == address)
    }

    /// A readable name: `10.0.0.1:80/tcp`, `[fd00::1]:443/tcp`.
    pub fn name(&self) -> String {
        Self::name_of(&self.vip)
    }

    pub fn name_of(vip: &config::Vip) -> String {
        let addr = std::net::SocketAddr::new(vip.address, vip.port);
        format!("{addr}/{}", vip.protocol.name())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::Config;

    fn service(extra: &str) -> Service {
        let text = format!(
            r#"
[[vip]]
address = "10.0.0.100"
port = 80
interface = "eth0"
{extra}
[[vip.backend]]
address = "10.0.0.11"
weight = 1
[[vip.backend]]
address = "10.0.0.12"
weight = 2
inhibit_on_failure = true
[[vip.backend]]
address = "10.0.0.13"
weight = 3
"#
        );
        let cfg = Config::from_str(&text, "test.toml").expect("valid");
        let mut id = 0;
        let mut s = Service::new(cfg.vips[0].clone(), 0, || {
            id += 1;
            id
        });
        for b in s.backends.iter_mut().chain(s.sorry.as_mut()) {
            b.mac = Some([2, 0, 0, 0, 0, b.id as u8]);
        }
        s.update_quorum();
        s
    }

    fn addr(last: u8) -> IpAddr {
        Ipv4Addr::new(10, 0, 0, last).into()
    }

    fn weights(s: &Service) -> Vec<u32> {
        s.ring_entries().iter().map(|e| e.weight).collect()
    }

    #[test]
    fn weights_follow_state() {
        let mut s = service("");
        assert_eq!(weights(&s), [1, 2, 3]);
        s.backend_mut(addr(11)).unwrap().admin_drained = true;
        assert_eq!(weights(&s), [0, 2, 3]);
        assert_eq!(s.backends[0].state().name(), "draining");
        assert_eq!(s.backends[0].entry(0).flags, BACKEND_F_ALIVE, "a drained backend keeps its flows");
        s.backend_mut(addr(13)).unwrap().admin_weight = Some(7);
        assert_eq!(weights(&s), [0, 2, 7]);
        s.backend_mut(addr(13)).unwrap().dynamic_weight = Some(9);
        assert_eq!(weights(&s), [0, 2, 7], "the operator's weight wins over a script's");
    }

    #[test]
    fn failed_check_removes_or_inhibits() {
        let mut s = service("");
        let b = s.backend_mut(addr(11)).unwrap();
        b.healthy = false;
        b.health_reason = "connect to 10.0.0.11:80: connection refused".to_owned();
        assert_eq!(s.backends[0].state().name(), "down");
        assert_eq!(s.backends[0].entry(0).flags, 0, "a removed backend's flows are re-hashed");
        let b = s.backend_mut(addr(12)).unwrap();
        b.healthy = false;
        assert_eq!(s.backends[1].state().name(), "draining", "inhibit_on_failure keeps established flows");
        assert_eq!(weights(&s), [0, 0, 3]);
        assert!(s.backends[0].state().why().contains("connection refused"));
    }

    #[test]
    fn unresolved_mac_is_down_with_the_reason() {
        let mut s = service("");
        let b = s.backend_mut(addr(13)).unwrap();
        b.mac = None;
        b.mac_reason = "no ARP reply on eth0".to_owned();
        assert_eq!(s.backends[2].state(), State::Down { why: "no MAC address: no ARP reply on eth0".to_owned() });
    }

    #[test]
    fn quorum_with_hysteresis_and_sorry_server() {
        let mut s = service("quorum = 4\nhysteresis = 1\nsorry_server = \"10.0.0.50\"");
        assert!(s.quorum_up);
        // Live weight 1 + 2 + 3 = 6; losing 13 leaves 3 = quorum - hysteresis: still up.
        s.backend_mut(addr(13)).unwrap().healthy = false;
        assert!(!s.update_quorum());
        assert!(s.quorum_up);
        // Losing 12 too leaves 1 < 3: lost, the sorry server takes the ring.
        s.backend_mut(addr(12)).unwrap().healthy = false;
        assert!(s.update_quorum());
        assert!(!s.quorum_up);
        let ring = s.ring_entries();
        assert_eq!(ring.len(), 1);
        assert_eq!(ring[0].id, s.sorry.as_ref().unwrap().id);
        // 12 back: 3 < quorum + hysteresis = 5, still lost.
        s.backend_mut(addr(12)).unwrap().healthy = true;
        assert!(!s.update_quorum());
        // 13 back: 6 >= 5, regained; normal backends again.
        s.backend_mut(addr(13)).unwrap().healthy = true;
        assert!(s.update_quorum());
        assert_eq!(weights(&s), [1, 2, 3]);
    }

    #[test]
    fn quick_state_tests_agree_with_state() {
        let mut b = Backend::new("10.0.0.1".parse().unwrap(), 1, 2, false);
        for bits in 0..64u32 {
            b.mac = (bits & 1 != 0).then_some([2, 0, 0, 0, 0, 1]);
            b.healthy = bits & 2 != 0;
            b.inhibit_on_failure = bits & 4 != 0;
            b.admin_drained = bits & 8 != 0;
            b.admin_weight = (bits & 16 != 0).then_some(0);
            b.dynamic_weight = (bits & 32 != 0).then_some(3);
            let state = b.state();
            assert_eq!(b.is_down(), matches!(state, State::Down { .. }), "{bits:#b}: {state:?}");
            assert_eq!(b.is_up(), state == State::Up, "{bits:#b}: {state:?}");
        }
    }

    #[test]
    fn keys_and_flags() {
        let s = service("hash = \"source-ip\"\nfragments = true");
        let keys = s.keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].port, 80u16.to_be());
        assert_eq!(keys[1].kind, VIP_KIND_FRAGMENTS);
        assert_eq!(s.flags(), VIP_F_SRC_HASH | VIP_F_L3_HASH);
        assert_eq!(s.name(), "10.0.0.100:80/tcp");
    }
}
