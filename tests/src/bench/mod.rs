//! `lb-bench`: what the fast path costs per packet (BPF_PROG_TEST_RUN) and
//! how fast it forwards on a veth testbed, against floors measured in the
//! same run; what the agent costs; how long a VRRP failover takes as a
//! client sees it. The binary in `src/bin/lb-bench.rs` drives these modules.

pub mod agent;
pub mod ecmp;
pub mod failover;
pub mod flows;
pub mod metrics;
pub mod plot;
pub mod restart;
pub mod ring;
pub mod sys;
pub mod testrun;
pub mod veth;
pub mod vrrp_scale;

use std::net::Ipv4Addr;

use crate::packet::{self as pkt, Ipv4};

/// Median of `values` (mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// A 60-byte Ethernet/IPv4/UDP frame (the minimum Ethernet frame without
/// FCS), UDP checksum zero.
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let payload = [0u8; 60 - 14 - 20 - 8];
    let ip = Ipv4::new(src, dst, lb_common::proto::UDP).build(&pkt::udp(sport, dport, &payload));
    pkt::ethernet(dst_mac, src_mac, None, pkt::ETH_P_IP, &ip)
}

/// A 60-byte Ethernet/IPv4/TCP SYN frame.
pub fn syn_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let payload = [0u8; 60 - 14 - 20 - 20];
    let ip = Ipv4::new(src, dst, lb_common::proto::TCP).build(&pkt::tcp(sport, dport, pkt::TCP_SYN, &payload));
    pkt::ethernet(dst_mac, src_mac, None, pkt::ETH_P_IP, &ip)
}

/// A run is noisy when a CPU that should be idle was busier than this...
pub const NOISY_OTHER_CPU_BUSY: f64 = 0.20;
/// ...or when the measuring thread waited this much of the time for its own
/// CPU, taken by other tasks.
pub const NOISY_RUN_DELAY: f64 = 0.05;

/// What one part measured: its JSON keys, whether it met its targets, and
/// each measurement that failed, with why (the run then fails, after the
/// report).
#[derive(Debug, Default)]
pub struct Figures {
    pub keys: Vec<(String, serde_json::Value)>,
    pub all_pass: bool,
    pub failed: Vec<String>,
}

impl Figures {
    pub fn new() -> Self {
        Self { all_pass: true, ..Self::default() }
    }

    /// `x` rounded to `decimals`; a non-finite `x` is a failed measurement.
    pub fn put(&mut self, key: impl Into<String>, x: f64, decimals: i32) {
        let key = key.into();
        let p = 10f64.powi(decimals);
        match serde_json::Number::from_f64((x * p).round() / p) {
            Some(n) => self.keys.push((key, serde_json::Value::Number(n))),
            None => self.fail(&key, format!("measured {x}")),
        }
    }

    /// A measurement that failed: its key stays null and the run fails.
    pub fn fail(&mut self, key: &str, why: impl std::fmt::Display) {
        self.keys.push((key.to_owned(), serde_json::Value::Null));
        self.failed.push(format!("{key}: {why}"));
    }

    /// Every key of `keys` measured or failed: one forgotten fails too.
    pub fn require(&mut self, keys: &[&str]) {
        for key in keys {
            if !self.keys.iter().any(|(k, _)| k == key) {
                self.fail(key, "not measured");
            }
        }
    }

    /// A target's verdict, `PASS` or `FAIL`.
    pub fn judge(&mut self, ok: bool) -> &'static str {
        self.all_pass &= ok;
        if ok { "PASS" } else { "FAIL" }
    }
}
