//! The XDP program under a million random and mutated frames
//! (`lb_tests::frames`), run through BPF_PROG_TEST_RUN with its maps filled
//! as the agent fills them. What must hold for every frame:
//!
//! - the verdict is XDP_PASS, XDP_DROP or XDP_TX (no XDP_ABORTED, no error);
//! - a frame whose destination is not a VIP address (or cannot be read)
//!   comes out passed and unchanged, byte for byte, malformed or not: the
//!   kernel judges it, as it would without the balancer; only a frame to a
//!   VIP address may be dropped;
//! - XDP_PASS never changes a frame, and XDP_TX changes only its MACs: a
//!   live backend's as destination, of a VIP the frame names, and the
//!   director's as source;
//! - the verdict counters (STATS, and the backends' for XDP_TX) add up to
//!   the frames sent, verdict by verdict.
//!
//! One call costs microseconds here (it is the program's run, not a fixed
//! overhead), so a million frames take seconds and no veth pair is needed.
//! The seed is printed; `LB_FUZZ_SEED=N` replays a run, `LB_FUZZ_FRAMES=N`
//! changes its length.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{BACKEND_F_ALIVE, Backend, Settings, Stat, VIP_KIND_FRAGMENTS, VIP_KIND_SERVICE, VipKey, proto};
use lb_tests::{
    frames::{self, Frame, Rng, Targets},
    packet::addr16,
    privileges,
};
use lb_userspace::fast_path::{EBPF_OBJECT, FastPath, FastPathOptions};

use crate::support;

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xD1];
/// Test runs arrive on loopback.
const LO_IFINDEX: u32 = 1;
const FRAMES: u64 = 1_000_000;
/// Far more than a million frames need; a run that gets here is stuck.
const DEADLINE: Duration = Duration::from_secs(100);
/// Failures listed in full; the rest are only counted.
const SHOWN: usize = 12;

const VIP_TCP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100); // :80 tcp and :0 udp
const VIP_FRAG: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101); // :53 udp, fragments too
const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102); // :80 tcp, no backend
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100); // :443 tcp, :53 udp

fn backend_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0xB0, id as u8]
}

fn key(addr: std::net::IpAddr, port: u16, proto: u8, kind: u8) -> VipKey {
    VipKey { addr: addr16(addr), port: port.to_be(), proto, kind }
}

fn load() -> FastPath {
    let opts = FastPathOptions { max_vips: 8, max_ring_size: 257, flows_per_cpu: 1024 };
    let mut dp = FastPath::load_object(EBPF_OBJECT, opts, None).expect("load the XDP program");
    dp.set_iface(LO_IFINDEX, DIRECTOR_MAC).expect("set the interface");
    dp.set_settings(Settings::new(0, 0)).expect("set the settings");
    let mut backends = |vip_index: u32, ids: &[u32]| {
        for &id in ids {
            dp.set_backend(id, Backend { mac: backend_mac(id), flags: BACKEND_F_ALIVE, vip_index })
                .expect("set a backend");
        }
    };
    backends(0, &[1, 2, 3]);
    backends(1, &[4, 5]);
    backends(2, &[6, 7]);
    backends(4, &[8, 9]);
    // Backend 3 is marked dead: its ring slots take the retry path.
    dp.set_backend(3, Backend { mac: backend_mac(3), flags: 0, vip_index: 0 }).expect("set a dead backend");
    let vips: [(&[VipKey], u32, &[u32]); 5] = [
        (&[key(VIP_TCP.into(), 80, proto::TCP, VIP_KIND_SERVICE)], 0, &[1, 2, 3, 1, 2, 3, 1]),
        (&[key(VIP_TCP.into(), 0, proto::UDP, VIP_KIND_SERVICE)], 1, &[4, 5, 4, 5, 4]),
        (
            &[
                key(VIP_FRAG.into(), 53, proto::UDP, VIP_KIND_SERVICE),
                key(VIP_FRAG.into(), 0, proto::UDP, VIP_KIND_FRAGMENTS),
            ],
            2,
            &[6, 7, 6, 7, 6, 7, 6],
        ),
        (&[key(VIP_EMPTY.into(), 80, proto::TCP, VIP_KIND_SERVICE)], 3, &[0; 7]),
        (
            &[key(VIP6.into(), 443, proto::TCP, VIP_KIND_SERVICE), key(VIP6.into(), 53, proto::UDP, VIP_KIND_SERVICE)],
            4,
            &[8, 9, 8, 9, 8],
        ),
    ];
    for (keys, index, ring) in vips {
        dp.install_vip(keys, index, 0, ring).expect("install a VIP");
    }
    dp
}

/// The flow table and the counters are per CPU; one CPU keeps both in one place.
fn pin_to_first_cpu() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // read and write only it, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set), 0, "pinning the test thread");
    }
}

/// Packets counted per verdict (pass, drop, tx).
fn verdict_counts(dp: &FastPath) -> [u64; 3] {
    let mut counts = [0; 3];
    for (stat, c) in dp.stats().expect("read the counters") {
        let slot = match stat {
            Stat::PassNotIp | Stat::PassNotVip | Stat::PassNoIface | Stat::PassMalformed => 0,
            Stat::DropNoBackend | Stat::DropMalformed => 1,
            Stat::Tx => 2,
            // Events, counted besides a verdict.
            _ => continue,
        };
        counts[slot] += c.packets;
    }
    counts
}

/// What is wrong with the program's answer to `input`, if anything.
fn judge(t: &Targets, input: &Frame, verdict: u32, out: &[u8]) -> Option<String> {
    let (intact, input) = (input.intact, &input.bytes[..]);
    match verdict {
        XDP_PASS if out != input => Some("XDP_PASS changed the frame".to_owned()),
        XDP_PASS => None,
        _ if !t.to_vip(input) => {
            Some(format!("a{} frame not to a VIP address was not passed", if intact { "n intact" } else { " broken" }))
        }
        XDP_DROP => None,
        XDP_TX if out.len() != input.len() || out[12..] != input[12..] => {
            Some("XDP_TX changed more than the MACs".to_owned())
        }
        XDP_TX if out[6..12] != DIRECTOR_MAC => Some("XDP_TX with another source MAC".to_owned()),
        XDP_TX => match LIVE_BACKENDS.iter().find(|(id, _)| out[..6] == backend_mac(*id)) {
            None => Some("XDP_TX to no live backend's MAC".to_owned()),
            Some((id, vip)) if !contains(input, vip) => {
                Some(format!("XDP_TX to backend {id} of a VIP the frame never names"))
            }
            Some(_) => None,
        },
        XDP_ABORTED => Some("XDP_ABORTED".to_owned()),
        other => Some(format!("verdict {other}, not one the program may return")),
    }
}

/// The live backends and the address of the VIP each serves (backend 3 is dead).
const LIVE_BACKENDS: [(u32, &[u8]); 8] = [
    (1, &VIP_TCP.octets()),
    (2, &VIP_TCP.octets()),
    (4, &VIP_TCP.octets()),
    (5, &VIP_TCP.octets()),
    (6, &VIP_FRAG.octets()),
    (7, &VIP_FRAG.octets()),
    (8, &VIP6.octets()),
    (9, &VIP6.octets()),
];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_million_random_frames() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let seed = match std::env::var("LB_FUZZ_SEED") {
        Ok(s) => s.parse().expect("LB_FUZZ_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos() as u64
        }
    };
    let frames: u64 =
        std::env::var("LB_FUZZ_FRAMES").map_or(FRAMES, |s| s.parse().expect("LB_FUZZ_FRAMES is a number"));
    eprintln!("xdp_fuzz: seed {seed} (LB_FUZZ_SEED={seed} replays it), {frames} frames");

    pin_to_first_cpu();
    let dp = load();
    let targets = Targets {
        director_mac: DIRECTOR_MAC,
        vips4: vec![VIP_TCP, VIP_FRAG, VIP_EMPTY],
        vips6: vec![VIP6],
        ports: vec![0, 53, 80, 443],
        client4: Ipv4Addr::new(10, 1, 0, 7),
        client6: Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7),
    };
    let before = verdict_counts(&dp);
    let mut rng = Rng::new(seed);
    let mut sent = [0u64; 3];
    let mut failures = Vec::new();
    let mut failed = 0usize;
    let mut out = vec![0u8; frames::MAX_FRAME + 256];
    let started = Instant::now();
    for n in 0..frames {
        assert!(started.elapsed() < DEADLINE, "only {n} of {frames} frames in {DEADLINE:?}");
        let frame = frames::frame(&mut rng, &targets);
        let input = &frame.bytes;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        let res = dp
            .program()
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN failed on frame {n}: {e}\n  frame {}", hex(input)));
        let output = &out[..res.data_size_out as usize];
        match res.return_value {
            XDP_PASS => sent[0] += 1,
            XDP_DROP => sent[1] += 1,
            XDP_TX => sent[2] += 1,
            _ => {}
        }
        if let Some(what) = judge(&targets, &frame, res.return_value, output) {
            failed += 1;
            if failures.len() < SHOWN {
                failures.push(format!(
                    "frame {n}: {what} (verdict {})\n  in  {}\n  out {}",
                    res.return_value,
                    hex(input),
                    hex(output)
                ));
            }
        }
    }
    let after = verdict_counts(&dp);
    let counted: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    eprintln!(
        "xdp_fuzz: {frames} frames in {:.1?}: {} passed, {} dropped, {} transmitted",
        started.elapsed(),
        sent[0],
        sent[1],
        sent[2]
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {failed} of {frames} frames handled wrongly; the first:\n{}",
        failures.join("\n")
    );
    assert_eq!(counted, sent, "seed {seed}: counters (pass, drop, tx) against the verdicts seen");
    assert!(sent.iter().all(|&n| n > 0), "seed {seed}: some verdict never came: {sent:?}");
}
