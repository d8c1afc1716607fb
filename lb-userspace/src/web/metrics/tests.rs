//! The exposition of a fixed state: a director on the in-memory maps, the
//! counters from a table, exact lines for a few metrics.

use std::{net::IpAddr, sync::Arc, time::Duration};

use lb_common::{Counters, Stat};

use super::Scrape;
use crate::vrrp::runtime::InstanceStatus;
use crate::{
    agent::{control::Request, director::Director, memory_maps::MemoryMaps},
    config::Config,
    fast_path::FastPathOptions,
    web::{
        Publisher,
        snapshot::{self, CheckInfo, Live, Snapshot},
        tests::Fixed,
    },
};

const OPTS: FastPathOptions = FastPathOptions { max_vips: 4, max_ring_size: 251, flows_per_cpu: 1024 };

const CONFIG: &str = r#"
[[vip]]
address = "10.0.0.1"
port = 80
interface = "lo"
ring_size = 251

[[vip.backend]]
address = "10.1.0.1"
weight = 3

[[vip.backend]]
address = "10.1.0.2"

[[vip]]
address = "10.0.0.2"
port = 53
protocol = "udp"
interface = "lo"
ring_size = 251

[[vip.backend]]
address = "10.1.0.1"
"#;

fn director() -> Director<MemoryMaps> {
    let config = Config::from_str(CONFIG, "lb.toml").unwrap();
    let mut d = Director::new(config, MemoryMaps::new(OPTS)).unwrap();
    for address in ["10.1.0.1", "10.1.0.2"] {
        d.on_mac("lo", address.parse().unwrap(), Some([2, 0, 0, 0, 0, 1]), "test").unwrap();
    }
    d.flush().unwrap();
    d
}

fn id(d: &Director<MemoryMaps>, vip: usize, address: &str) -> u32 {
    let address: IpAddr = address.parse().unwrap();
    d.services()[vip].backends.iter().find(|b| b.address == address).unwrap().id
}

/// The director after one drain, published, and its counters.
pub(crate) fn scrape() -> (Arc<Snapshot>, Fixed, Director<MemoryMaps>) {
    let mut d = director();
    let (mut publisher, rx) = Publisher::new();
    publisher.publish(&d, None);
    let drain = Request::Drain { vip: "10.0.0.1:80".to_owned(), backend: "10.1.0.2".parse().unwrap() };
    assert!(d.command(&drain).ok);
    publisher.publish(&d, None);
    publisher.reloaded(true);
    publisher.reloaded(false);
    publisher.publish(&d, None);
    let mut fixed = Fixed::default();
    fixed.stats.insert(Stat::PassNotVip as u32, 7);
    fixed.stats.insert(Stat::DropNoBackend as u32, 2);
    fixed.stats.insert(Stat::FlowMiss as u32, 5);
    fixed.vips.insert(0, Counters { packets: 2, bytes: 120 });
    fixed.backends.insert(id(&d, 0, "10.1.0.1"), Counters { packets: 10, bytes: 1000 });
    fixed.backends.insert(id(&d, 0, "10.1.0.2"), Counters { packets: 4, bytes: 400 });
    fixed.backends.insert(id(&d, 1, "10.1.0.1"), Counters { packets: 1, bytes: 60 });
    fixed.flows.insert(id(&d, 0, "10.1.0.1"), 3);
    let snapshot = Arc::clone(&rx.borrow());
    (snapshot, fixed, d)
}

fn text(snapshot: Arc<Snapshot>, mut live: Live, openmetrics: bool) -> String {
    live.checks.insert((0, 1), CheckInfo { took: Duration::from_millis(12), checks: 9 });
    live.vrrp.push(vrrp_instance());
    let publish_seconds = prometheus_client::metrics::histogram::Histogram::new([0.001, 0.01]);
    publish_seconds.observe(0.0005);
    Scrape { snapshot, live, publish_seconds }.encode(openmetrics).unwrap()
}

/// An instance in MASTER that was master twice and refused some adverts.
fn vrrp_instance() -> InstanceStatus {
    let counters = crate::vrrp::Counters { became_master: 2, released_master: 1, ..Default::default() };
    let rejected = crate::vrrp::receive::Rejected { bad_ttl: 3, bad_auth: 5, auth_mismatch: 2, ..Default::default() };
    InstanceStatus {
        name: "VI_1".to_owned(),
        interface: "eth1".to_owned(),
        vrid: 51,
        version: crate::vrrp::packet::Version::V3,
        state: crate::vrrp::State::Master,
        base_priority: 150,
        effective_priority: 150,
        primary_address: "10.0.0.5".parse().unwrap(),
        master: None,
        fault_reasons: Vec::new(),
        counters,
        rejected,
        other_vrid: 4,
        route_errors: 0,
        since: None,
    }
}

fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

#[test]
fn exposition_of_a_fixed_state() {
    let (snapshot, fixed, d) = scrape();
    let live = snapshot::read(&snapshot, &fixed, None, false).unwrap();
    let out = text(snapshot, live, false);
    let (a, b) = (id(&d, 0, "10.1.0.1"), id(&d, 0, "10.1.0.2"));
    assert_eq!((a, b), (1, 2), "ids as the checks' board below expects");
    assert_eq!(
        lines(&out, "lb_vip_packets"),
        [
            r#"lb_vip_packets_total{vip="10.0.0.1",port="80",proto="tcp"} 16"#,
            r#"lb_vip_packets_total{vip="10.0.0.2",port="53",proto="udp"} 1"#,
        ]
    );
    assert_eq!(
        lines(&out, "lb_backend_bytes"),
        [
            r#"lb_backend_bytes_total{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.1"} 1000"#,
            r#"lb_backend_bytes_total{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.2"} 400"#,
            r#"lb_backend_bytes_total{vip="10.0.0.2",port="53",proto="udp",backend="10.1.0.1"} 60"#,
        ]
    );
    assert!(out.contains("# TYPE lb_backend_bytes_total counter\n"), "{out}");
    assert!(out.contains("lb_packets_total{reason=\"tx\"} 15\n"), "{out}");
    assert!(out.contains("lb_packets_total{reason=\"pass_not_vip\"} 7\n"), "{out}");
    assert!(out.contains("lb_fast_path_events_total{event=\"flow_miss\"} 5\n"), "{out}");
    assert!(!out.contains("lb_packets_total{reason=\"flow_miss\"}"), "events are not verdicts");
    assert_eq!(
        lines(&out, "lb_backend_up{"),
        [
            r#"lb_backend_up{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.1"} 1"#,
            r#"lb_backend_up{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.2"} 0"#,
            r#"lb_backend_up{vip="10.0.0.2",port="53",proto="udp",backend="10.1.0.1"} 1"#,
        ]
    );
    assert!(out.contains(r#"lb_backend_drained{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.2"} 1"#));
    assert!(out.contains(r#"lb_backend_weight{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.1"} 3"#));
    assert!(out.contains(r#"lb_backend_effective_weight{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.2"} 0"#));
    assert!(
        out.contains(r#"lb_backend_state_changes_total{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.2"} 1"#)
    );
    assert!(
        out.contains(r#"lb_backend_state_changes_total{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.1"} 0"#)
    );
    assert_eq!(
        lines(&out, "lb_backend_check_duration_seconds{"),
        [r#"lb_backend_check_duration_seconds{vip="10.0.0.1",port="80",proto="tcp",backend="10.1.0.1"} 0.012"#]
    );
    assert!(out.contains("lb_reloads_total{result=\"ok\"} 1\nlb_reloads_total{result=\"failed\"} 1\n"), "{out}");
    assert!(out.contains(&format!("lb_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))));
    assert!(out.contains("lb_ring_publish_duration_seconds_count 1\n"), "{out}");
    assert!(out.contains("# TYPE lb_vrrp_state gauge\n"), "{out}");
    assert!(out.contains(r#"lb_vrrp_state{iname="VI_1",intf="eth1",vrid="51"} 2"#), "{out}");
    assert!(out.contains(r#"lb_vrrp_become_master_total{iname="VI_1",intf="eth1",vrid="51"} 2"#), "{out}");
    assert!(out.contains(r#"lb_vrrp_release_master_total{iname="VI_1",intf="eth1",vrid="51"} 1"#), "{out}");
    assert!(out.contains(r#"lb_vrrp_ip_ttl_errors_total{iname="VI_1",intf="eth1",vrid="51"} 3"#), "{out}");
    assert!(out.contains(r#"lb_vrrp_vrid_errors_total{iname="VI_1",intf="eth1",vrid="51"} 4"#), "{out}");
    assert!(out.contains(r#"lb_vrrp_authentication_mismatch_total{iname="VI_1",intf="eth1",vrid="51"} 2"#), "{out}");
    assert!(out.contains(r#"lb_vrrp_authentication_failure_total{iname="VI_1",intf="eth1",vrid="51"} 3"#), "{out}");
    assert!(!out.contains("# EOF"), "the Prometheus text format has no end marker");
}

#[test]
fn openmetrics_when_asked() {
    let (snapshot, fixed, _) = scrape();
    let live = snapshot::read(&snapshot, &fixed, None, false).unwrap();
    let out = text(snapshot, live, true);
    assert!(out.ends_with("# EOF\n"), "{out}");
    assert!(out.contains("# TYPE lb_vip_packets counter\n"), "{out}");
}

/// `/status.json` and `lb status --json` read the same counters the same
/// way: the snapshot read here equals the director's own report.
#[test]
fn status_json_agrees_with_the_director() {
    let (snapshot, fixed, d) = scrape();
    let live = snapshot::read(&snapshot, &fixed, None, true).unwrap();
    let mut ours = d.status(true).unwrap();
    // The in-memory maps count nothing: put in the table's counters.
    for (v, ids) in ours.vips.iter_mut().zip(&snapshot.vips) {
        let at_vip = fixed.vips.get(&ids.index).copied().unwrap_or_default();
        v.packets = at_vip.packets;
        v.bytes = at_vip.bytes;
        for (b, bid) in v.backends.iter_mut().zip(&ids.backends) {
            let c = fixed.backends.get(&bid.id).copied().unwrap_or_default();
            (b.packets, b.bytes, b.flows) = (c.packets, c.bytes, fixed.flows.get(&bid.id).copied().unwrap_or(0));
            v.packets += c.packets;
            v.bytes += c.bytes;
        }
    }
    ours.flows = 3;
    for (name, n) in &mut ours.counters {
        let stat = Stat::ALL.iter().find(|s| s.name() == name).unwrap();
        *n = match stat {
            Stat::Tx => 15,
            s => fixed.stats.get(&(*s as u32)).copied().unwrap_or(0),
        };
    }
    assert_eq!(live.report, ours);
}

#[test]
fn announced_vips_and_announce_changes() {
    use crate::agent::status::AnnounceStatus;
    let d = director();
    let (mut publisher, rx) = Publisher::new();
    publisher.publish(&d, None);
    let quiet = |rx: &tokio::sync::watch::Receiver<Arc<Snapshot>>| {
        let snapshot = Arc::clone(&rx.borrow());
        let live = snapshot::read(&snapshot, &crate::web::tests::Fixed::default(), None, false).unwrap();
        text(snapshot, live, false)
    };
    let out = quiet(&rx);
    assert!(lines(&out, "lb_vip_announced{").is_empty(), "nothing without [announce]");
    assert!(lines(&out, "lb_announce_changes_total").is_empty());
    let status = |address: &str, announced| AnnounceStatus {
        address: address.parse().unwrap(),
        announced,
        why: if announced { String::new() } else { "quorum lost".to_owned() },
    };
    publisher.set_announce((Some(200), vec![status("10.0.0.1", true), status("10.0.0.2", false)], 3));
    publisher.publish(&d, None);
    let out = quiet(&rx);
    assert_eq!(
        lines(&out, "lb_vip_announced{"),
        [r#"lb_vip_announced{vip="10.0.0.1"} 1"#, r#"lb_vip_announced{vip="10.0.0.2"} 0"#]
    );
    assert_eq!(lines(&out, "lb_announce_changes_total"), ["lb_announce_changes_total 3"]);
}
