//! The agent's `Director` on a loaded program (not attached): what only the
//! kernel shows. The director's decisions (rings built ahead, kept rings,
//! withdraw before build, one publish per burst, reloads) are unit tests on
//! an in-memory model of the maps in `lb-userspace`; here the real maps take
//! the director's writes, and packets run through the program
//! (BPF_PROG_TEST_RUN) go where the director says, its counters read back
//! from the per-CPU maps. Needs root.

use lb_tests::privileges;

use crate::support;
use std::net::Ipv4Addr;

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::proto;
use lb_tests::packet::{self as pkt, Ipv4, TCP_SYN};
use lb_userspace::{
    agent::director::Director,
    config::Config,
    fast_path::{FastPath, FastPathOptions},
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const LO_IFINDEX: u32 = 1;
const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xD1];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 7);
const RING: u32 = 251;

fn vip(vip: u8, backends: u8) -> String {
    let mut toml = format!(
        "[[vip]]\naddress = \"10.0.0.{vip}\"\nport = 80\ninterface = \"lo\"\nring_size = {RING}\n\n\
         [vip.check]\ntype = \"tcp\"\n"
    );
    for i in 1..=backends {
        toml.push_str(&format!("\n[[vip.backend]]\naddress = \"10.{vip}.0.{i}\"\n"));
    }
    toml
}

fn backend_mac(id: u32) -> [u8; 6] {
    [2, 0, 0, 0, 0xB0, id as u8]
}

fn director(text: &str) -> Director {
    let config = Config::from_str(text, "test.toml").unwrap();
    let mut dp = FastPath::load(FastPathOptions { max_vips: 2, max_ring_size: RING, flows_per_cpu: 1024 })
        .expect("loading the XDP program (as root)");
    dp.set_iface(LO_IFINDEX, DIRECTOR_MAC).unwrap();
    let mut d = Director::new(config, dp).unwrap();
    resolve_all(&mut d);
    d.flush().unwrap();
    d
}

fn resolve_all(d: &mut Director) {
    let backends: Vec<_> = d.services().iter().flat_map(|s| s.backends.iter()).map(|b| (b.address, b.id)).collect();
    for (address, id) in backends {
        d.on_mac("lo", address, Some(backend_mac(id)), "test").unwrap();
    }
}

/// SYNs to `vip`:80 from source ports `ports`: per backend id, how many
/// went to it; and how many the program passed.
fn send(d: &Director, vip: Ipv4Addr, ports: std::ops::Range<u16>) -> (Vec<(u32, u32)>, u32) {
    let (mut to, mut passed) = (Vec::<(u32, u32)>::new(), 0);
    for sport in ports {
        let ip = Ipv4::new(CLIENT, vip, proto::TCP).build(&pkt::tcp(sport, 80, TCP_SYN, b"hello"));
        let input = pkt::ethernet(DIRECTOR_MAC, [2, 0, 0, 0, 0, 0xC1], None, pkt::ETH_P_IP, &ip);
        let mut out = vec![0u8; input.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(&input);
        opts.data_out = Some(&mut out);
        let res = d.fast_path().program().test_run(opts).expect("BPF_PROG_TEST_RUN");
        match res.return_value {
            XDP_TX => {
                let id = u32::from(out[5]);
                assert_eq!(out[..6], backend_mac(id), "to no backend's MAC");
                match to.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, n)) => *n += 1,
                    None => to.push((id, 1)),
                }
            }
            XDP_PASS => passed += 1,
            other => panic!("verdict {other} for a SYN from port {sport}"),
        }
    }
    to.sort_unstable();
    (to, passed)
}

#[test]
fn packets_go_where_the_director_says() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut d = director(&(vip(100, 3) + &vip(101, 2)));
    let vip100 = Ipv4Addr::new(10, 0, 0, 100);
    let ids: Vec<u32> = d.services()[0].backends.iter().map(|b| b.id).collect();

    let (to, passed) = send(&d, vip100, 20000..20300);
    assert_eq!(passed, 0);
    assert_eq!(to.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "{to:?}");
    // The counters are the program's, summed over CPUs.
    let status = d.status(true).unwrap();
    let counted: Vec<(u32, u32)> =
        ids.iter().zip(&status.vips[0].backends).map(|(&id, b)| (id, b.packets as u32)).collect();
    assert_eq!(counted, to);
    assert!(status.flows > 0 && status.flows <= 300, "{}", status.flows);

    // A verdict: the failed backend gets no new flow.
    d.on_health(ids[1], false, None, "test: refused").unwrap();
    d.flush().unwrap().expect("the verdict changes the fast path");
    let (to, _) = send(&d, vip100, 30000..30300);
    assert!(to.iter().all(|(id, _)| *id != ids[1]), "{to:?}");

    // A heads-up, then its verdict: the ring built ahead is the one used.
    let builds = d.ring_builds();
    assert!(d.prepare(ids[2], false, None, std::time::Instant::now()).unwrap());
    d.on_health(ids[2], false, None, "test: refused").unwrap();
    d.flush().unwrap().expect("the verdict changes the fast path");
    assert_eq!(d.ring_builds(), builds + 1);
    let (to, _) = send(&d, vip100, 40000..40100);
    assert_eq!(to, [(ids[0], 100)]);

    // A reload without VIP 100: it is gone from the table.
    let text = vip(101, 2);
    d.reload(Config::from_str(&text, "test.toml").unwrap()).unwrap();
    let (to, passed) = send(&d, vip100, 50000..50010);
    assert_eq!((to, passed), (Vec::new(), 10));
    let (to, passed) = send(&d, Ipv4Addr::new(10, 0, 0, 101), 50000..50100);
    assert_eq!(passed, 0);
    assert_eq!(to.iter().map(|(_, n)| n).sum::<u32>(), 100);
}
