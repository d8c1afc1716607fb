//! A second opinion on our VRRP wire format: Wireshark's dissector (`tshark`,
//! Debian package, installed by `cargo xtask test`) decodes the adverts our
//! runtime really sends on a link (v2 with `PASS` authentication, v3 over
//! IPv4 with keepalived's pseudo-header checksum and with RFC 9568's, v3 over
//! IPv6, and the priority-0 adverts of a clean stop) with every checksum
//! good and no expert warning. Needs root (namespaces, raw sockets).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use lb_tests::privileges;
use lb_userspace::vrrp::State;

use crate::support::{
    self,
    vrrp_lab::{Director, Lab},
};

const PREFIX: &str = "lbvrtsh";

/// One instance per wire form; priority 255 makes each master at once, so
/// adverts start without waiting out a master-down interval.
fn instances() -> String {
    let one = |name: &str, vrid: u8, version: u8, int: &str, vip: &str, extra: &str| {
        format!(
            "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nversion = {version}\nvirtual_router_id = {vrid}\n\
             priority = 255\nadvert_int = \"{int}\"\nvirtual_ipaddress = [\"{vip}\"]\ngarp_master_repeat = 1\n\
             garp_master_delay = \"0s\"\n{extra}\n"
        )
    };
    [
        one("V2_PASS", 51, 2, "1s", "10.214.0.151/24", "auth_pass = \"571f97b2\""),
        one("V3_KA", 52, 3, "100ms", "10.214.0.152/24", ""),
        one("V3_RFC", 53, 3, "100ms", "10.214.0.153/24", "checksum = \"rfc9568\""),
        one("V3_V6", 61, 3, "100ms", "fd00:214::161/64", ""),
    ]
    .concat()
}

fn tshark_missing() -> Option<String> {
    match Command::new("tshark").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        other => {
            Some(format!("tshark is needed ({other:?}): `cargo xtask test` installs it, or `apt-get install tshark`"))
        }
    }
}

/// `tshark -r pcap` with `fields`, one line per VRRP packet, after `prefs`.
fn fields(pcap: &Path, prefs: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args(["-Y", "vrrp", "-T", "fields", "-E", "separator=|"]);
    for p in prefs {
        cmd.args(["-o", p]);
    }
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("running tshark");
    assert!(out.status.success(), "tshark -r failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('|').map(str::to_owned).collect()).collect()
}

/// The capture file, removed on drop.
struct Capture(PathBuf);

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tshark_decodes_our_adverts_with_good_checksums() {
    let Some(_turn) = support::start(module_path!(), privileges::VRRP) else { return };
    if let Some(why) = tshark_missing() {
        panic!("{why}");
    }
    let lab = Lab::new(PREFIX, &["a", "cap"]);
    let (a_ns, cap_ns) = (&lab.hosts[0], &lab.hosts[1]);
    let dir = std::env::temp_dir().join(format!("lbvrtsh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("capture dir");
    let capture = Capture(dir.clone());
    let pcap = dir.join("vrrp.pcapng");

    // tshark stops itself after its duration: nothing outlives the test.
    let mut tshark = cap_ns
        .command("tshark")
        .args(["-q", "-i", "eth0", "-f", "ip proto 112 or ip6 proto 112", "-a", "duration:6", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tshark");
    // It reports on stderr once it captures; give it a moment either way.
    thread::sleep(Duration::from_millis(1500));

    let mut a = Director::start("A", a_ns, &instances());
    for vi in ["V2_PASS", "V3_KA", "V3_RFC", "V3_V6"] {
        a.expect_instance(vi, State::Master, Duration::from_secs(3));
    }
    // Two v2 adverts at least (1 s), many v3 ones.
    thread::sleep(Duration::from_millis(2200));
    a.shutdown();

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = tshark.try_wait().expect("waiting for tshark") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = tshark.kill();
            panic!("tshark did not stop after its 6 s capture");
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stderr = tshark.stderr.take().map(std::io::read_to_string).and_then(Result::ok).unwrap_or_default();
    assert!(status.success(), "tshark capture failed ({status}): {stderr}");

    // Wireshark's default checks v3 over IPv4 with the pseudo-header (what
    // keepalived 2.2.7 sends and we send by default); its preference
    // vrrp.v3_checksum_as_in_v2 checks RFC 9568's form (no pseudo-header).
    let wanted = ["vrrp.version", "vrrp.virt_rtr_id", "vrrp.prio", "vrrp.checksum.status", "vrrp.auth_type"];
    let default = fields(&pcap, &[], &wanted);
    let as_v2 = fields(&pcap, &["vrrp.v3_checksum_as_in_v2:TRUE"], &wanted);
    eprintln!("{} VRRP packets captured", default.len());
    assert_eq!(default.len(), as_v2.len());
    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    for (d, v) in default.iter().zip(&as_v2) {
        let (version, vrid, prio) = (&d[0], &d[1], &d[2]);
        let status = if vrid == "53" {
            // The same packet checked the other way is bad: the two forms
            // differ, and tshark does check.
            assert_eq!(d[3], "0", "VRID 53 (RFC 9568 form) passed the pseudo-header check: {d:?}");
            &v[3]
        } else {
            &d[3]
        };
        // 1 = good (PROTO_CHECKSUM_E_GOOD).
        assert_eq!(status, "1", "VRID {vrid} v{version} priority {prio}: checksum status {status}, packet {d:?}");
        if vrid == "51" {
            assert_eq!(d[4], "1", "v2 PASS authentication decoded as auth type {}", d[4]);
        }
        *seen.entry((vrid.clone(), if prio == "0" { "stop" } else { "advert" }.to_owned())).or_default() += 1;
    }
    eprintln!("per VRID: {seen:?}");
    for vrid in ["51", "52", "53", "61"] {
        for kind in ["advert", "stop"] {
            assert!(seen.contains_key(&(vrid.to_owned(), kind.to_owned())), "no {kind} of VRID {vrid}: {seen:?}");
        }
    }

    // Nothing Wireshark's experts find wrong (malformed, bad checksum, ...),
    // each form checked the way it is meant.
    for (prefs, filter) in [
        ("vrrp.v3_checksum_as_in_v2:FALSE", "vrrp.virt_rtr_id != 53"),
        ("vrrp.v3_checksum_as_in_v2:TRUE", "vrrp.virt_rtr_id == 53"),
    ] {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-q", "-o", prefs, "-z", &format!("expert,warn,{filter}")])
            .output()
            .expect("tshark expert");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "tshark expert: {}", String::from_utf8_lossy(&out.stderr));
        // The report has a "Warns (N)" or "Errors (N)" section only when there is something in it.
        assert!(!text.contains("Warns (") && !text.contains("Errors ("), "tshark's experts ({filter}):\n{text}");
    }
    drop(capture);
}
