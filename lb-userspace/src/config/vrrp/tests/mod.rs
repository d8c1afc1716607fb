//! The VRRP sections as operators meet them, through whole files.

mod routes;
mod sync_groups;
mod warnings;

use std::{net::IpAddr, time::Duration};

use crate::config::{Config, Garp, Position, TrackFastPath, VirtualAddress, VrrpInstance};
use crate::vrrp::packet::{Auth, Centiseconds, ChecksumKind, MULTICAST_V4, Version};

fn parse(text: &str) -> Vec<VrrpInstance> {
    match Config::from_str(text, "lb.toml") {
        Ok(c) => c.vrrp,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn error(text: &str) -> String {
    match Config::from_str(text, "lb.toml") {
        Ok(c) => panic!("expected an error, got {:#?}", c.vrrp),
        Err(e) => e.to_string(),
    }
}

const MIN: &str = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"10.0.0.100/24\"]\n";

#[test]
fn defaults() {
    let v = &parse(MIN)[0];
    assert_eq!((v.version, v.vrid, v.priority), (Version::V3, 51, 100));
    assert_eq!(v.advert_interval, Centiseconds(100));
    assert!(v.preempt);
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert_eq!(v.auth, Auth::None);
    assert_eq!(v.mcast_group, IpAddr::V4(MULTICAST_V4));
    assert_eq!(v.garp, Garp::default());
    assert_eq!(v.notify.user, "nobody");
    assert_eq!(v.checksum, ChecksumKind::PseudoHeader);
    assert_eq!(
        v.virtual_addresses,
        vec![VirtualAddress { address: "10.0.0.100".parse().unwrap(), prefix_len: 24, dev: None, label: None }]
    );
    assert_eq!(v.at, Position { line: 1, column: 1 });
}

#[test]
fn everything() {
    let v = &parse(
        "[global]\nscript_user = \"lbscript\"\n\
         [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nversion = 2\nvirtual_router_id = 7\npriority = 255\n\
         advert_int = \"2s\"\nnopreempt = true\npreempt_delay = \"3s\"\nauth_pass = \"secret123\"\n\
         virtual_ipaddress = [\"10.0.0.100/24\", { address = \"10.0.1.1/32\", dev = \"eth1\", label = \"eth1:v\" }]\n\
         unicast_src = \"10.0.0.2\"\nunicast_peers = [\"10.0.0.3\", \"10.0.0.4\"]\n\
         garp_master_delay = \"0s\"\ngarp_master_repeat = 2\ngarp_master_refresh = \"30s\"\n\
         notify_master = \"/bin/n master\"\nnotify = [\"/bin/n\"]\nnotify_user = \"u\"\n\
         track_interface = [\"eth1\"]\nchecksum = \"rfc9568\"\n\
         [[vrrp.track_script]]\nname = \"chk\"\ncommand = [\"/bin/true\"]\ninterval = \"2s\"\nfall = 3\nrise = 2\nweight = -20\n",
    )[0];
    assert_eq!((v.version, v.vrid, v.priority, v.advert_interval), (Version::V2, 7, 255, Centiseconds(200)));
    assert!(!v.preempt);
    assert_eq!(v.auth, Auth::pass("secret12"));
    assert_eq!(v.virtual_addresses[1].dev.as_deref(), Some("eth1"));
    assert_eq!(v.virtual_addresses[1].label.as_deref(), Some("eth1:v"));
    assert_eq!(v.unicast_peers.len(), 2);
    assert_eq!(
        v.garp,
        Garp { master_delay: Duration::ZERO, master_repeat: 2, master_refresh: Duration::from_secs(30) }
    );
    assert_eq!(v.notify.master, Some(vec!["/bin/n".into(), "master".into()]));
    assert_eq!(v.notify.user, "u");
    assert_eq!(v.checksum, ChecksumKind::MessageOnly);
    let t = &v.track_scripts[0];
    assert_eq!(
        (t.interval, t.timeout, t.rise, t.fall, t.weight),
        (Duration::from_secs(2), Duration::from_secs(2), 2, 3, -20)
    );
    assert_eq!(t.user, "lbscript");
}

#[test]
fn errors_point_at_the_value() {
    let text = "[[vrrp]]\nname = \"A\"\ninterface = \"eth0\"\nversion = 2\nvirtual_router_id = 0\npriority = 256\n\
                advert_int = \"1500ms\"\nvirtual_ipaddress = []\n\
                [[vrrp]]\nname = \"B\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nauth_pass = \"x\"\nvirtual_ipaddress = [\"10.0.0.1/24\"]\n\
                [[vrrp]]\nname = \"C\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.2/24\"]\n";
    assert_eq!(
        error(text),
        "lb.toml:5:21: virtual_router_id 0 out of range 1..=255\n\
         lb.toml:6:12: priority 256 out of range 1..=255\n\
         lb.toml:7:14: advert_int 1500ms is not a whole number of seconds: VRRPv2 carries seconds only (use version = 3 for sub-second intervals)\n\
         lb.toml:8:21: virtual_ipaddress is empty: a VRRP instance needs at least one VIP\n\
         lb.toml:13:13: auth_pass is VRRPv2 only: version 3 has no authentication (set version = 2 or drop it)\n\
         lb.toml:18:21: duplicate virtual_router_id 9 on interface eth0 (IPv4): already used at line 12"
    );
    let dup = "[[vrrp]]\nname = \"B\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.1/24\"]\n\
               [[vrrp]]\nname = \"C\"\ninterface = \"eth0\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.2/24\"]\n";
    assert_eq!(
        error(dup),
        "lb.toml:9:21: duplicate virtual_router_id 9 on interface eth0 (IPv4): already used at line 4"
    );
    // Same VRID on another interface, or another family, is fine.
    let ok = dup.replacen("virtual_ipaddress = [\"10.0.0.2/24\"]", "virtual_ipaddress = [\"fd00::2/64\"]", 1);
    assert_eq!(parse(&ok).len(), 2);
    let missing = "[[vrrp]]\nname = \"B\"\ninterface = \"eth0\"\nvirtual_router_id = 9\n";
    assert_eq!(error(missing), "lb.toml:1:1: VRRP instance has no virtual_ipaddress");
}

#[test]
fn more_errors() {
    let e = error(&format!("{MIN}unicast_peers = [\"fd00::1\"]\nmcast_group = \"10.0.0.1\"\n"));
    assert!(e.contains("lb.toml:6:18: unicast peer fd00::1 is IPv6 but the virtual addresses are IPv4"), "{e}");
    assert!(e.contains("lb.toml:7:15: mcast_group \"10.0.0.1\" is not a multicast address"), "{e}");
    let e = error(&MIN.replace(
        "[\"10.0.0.100/24\"]",
        "[\"10.0.0.100/33\", \"fd00::1/64\", { address = \"10.0.0.5\", label = \"eth1:x\" }]",
    ));
    assert!(e.contains("bad prefix length in \"10.0.0.100/33\""), "{e}");
    assert!(e.contains("label \"eth1:x\" must start with the interface name \"eth0\""), "{e}");
    let e = error(&format!("{MIN}version = 2\nadvert_int = \"100ms\"\n"));
    assert!(e.contains("lb.toml:7:14: advert_int 100ms is not a whole number of seconds"), "{e}");
    let e = error(&format!("{MIN}advert_int = \"105ms\"\nchecksum = \"rfc\"\n"));
    assert!(e.contains("lb.toml:7:12: unknown variant `rfc`"), "{e}");
    let e = error(&format!("{MIN}notify_master = \"notify.sh master\"\n"));
    assert!(e.contains("notify_master: \"notify.sh\" must be an absolute path"), "{e}");
    let e = error(&format!("{MIN}[[vrrp.track_script]]\nname = \"x\"\ncommand = [\"/bin/true\"]\nweight = 254\n"));
    assert!(e.contains("lb.toml:9:10: weight 254 out of range -253..=253"), "{e}");
    let e = error(&format!("{MIN}preempt = true\nnopreempt = true\n"));
    assert!(e.contains("preempt and nopreempt contradict"), "{e}");
}

#[test]
fn track_fast_path() {
    assert_eq!(parse(MIN)[0].track_fast_path, None);
    let v = &parse(&format!("{MIN}[vrrp.track_fast_path]\n"))[0];
    assert_eq!(v.track_fast_path, Some(TrackFastPath { weight: 0, no_live_backend: false }), "weight 0 = FAULT");
    let v = &parse(&format!("{MIN}[vrrp.track_fast_path]\nweight = -60\nno_live_backend = true\n"))[0];
    assert_eq!(v.track_fast_path, Some(TrackFastPath { weight: -60, no_live_backend: true }));
    let e = error(&format!("{MIN}[vrrp.track_fast_path]\nweight = -300\n"));
    assert!(e.contains("lb.toml:7:10: weight -300 out of range -253..=253"), "{e}");
    let e = error(&format!("{MIN}[vrrp.track_fast_path]\nxdp = true\n"));
    assert!(e.contains("lb.toml:7:1: unknown field `xdp`"), "{e}");
}
