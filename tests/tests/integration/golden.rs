//! Golden packets through BPF_PROG_TEST_RUN, as Katran tests its data path:
//! a table of (input frame, expected verdict, expected output frame), run
//! against the real program with its maps filled the way the agent fills them.

use lb_tests::privileges;

use crate::support;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    maps::MapInfo,
    programs::{TestRun as _, TestRunOptions},
};
use lb_common::{
    BACKEND_F_ALIVE, Backend, FlowKey, RING_RETRIES, Settings, Stat, VIP_F_L3_HASH, VIP_F_SRC_HASH, VIP_KIND_FRAGMENTS,
    VIP_KIND_SERVICE, VipKey, hash, proto, trace::Lookup,
};
use lb_tests::packet::{self as pkt, Ipv4, TCP_ACK, TCP_PSH, TCP_SYN, addr16};
use lb_userspace::{
    fast_path::{EBPF_OBJECT, FastPath, FastPathOptions},
    trace::{self, Record},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// The director's interface MAC (test runs arrive on loopback, ifindex 1).
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xD1];
/// What a router or client would put as destination: the director's MAC.
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xC1];
const LO_IFINDEX: u32 = 1;
/// A small prime ring so expected backends are easy to follow.
const RING: [u32; 7] = [1, 2, 3, 1, 2, 3, 1];

fn backend_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0xB0, id as u8]
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);
const VIP_TCP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100); // :80 tcp, backends 1-3, and :0 udp (all ports), backends 4-5
const VIP_FRAG: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101); // :53 udp, fragments, L3 hash, backends 6-7
const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102); // :80 tcp, no backend
const VIP_SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103); // :80 tcp, source-IP persistence, backends 1-3 ids 11-13
const NOT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 7);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100); // :443 tcp, backends 8-9

struct Fixture {
    dp: FastPath,
}

fn key(addr: IpAddr, port: u16, proto: u8, kind: u8) -> VipKey {
    VipKey { addr: addr16(addr), port: port.to_be(), proto, kind }
}

/// The flow table is per CPU (as a NIC's RSS keeps a flow on one CPU), so a
/// test that sends a flow twice must stay on one CPU between the runs.
fn pin_to_first_cpu() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // read and write only it, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set), 0, "pinning the test thread");
    }
}

impl Fixture {
    fn new() -> Self {
        Self::traced(None)
    }

    /// The fixture, its program loaded with the packet trace when `trace` is given.
    fn traced(trace: Option<&trace::Filter>) -> Self {
        pin_to_first_cpu();
        let opts = FastPathOptions { max_vips: 8, max_ring_size: 257, flows_per_cpu: 1024 };
        let mut dp = FastPath::load_object(EBPF_OBJECT, opts, trace).expect("load the XDP program");
        dp.set_iface(LO_IFINDEX, DIRECTOR_MAC).unwrap();
        dp.set_settings(Settings::new(0, 0)).unwrap();
        let mut f = Self { dp };
        f.backends(0, &[1, 2, 3]);
        f.dp.install_vip(&[key(VIP_TCP.into(), 80, proto::TCP, VIP_KIND_SERVICE)], 0, 0, &RING).unwrap();
        f.backends(1, &[4, 5]);
        f.dp.install_vip(&[key(VIP_TCP.into(), 0, proto::UDP, VIP_KIND_SERVICE)], 1, 0, &[4, 5, 4, 5, 4]).unwrap();
        f.backends(2, &[6, 7]);
        f.dp.install_vip(
            &[
                key(VIP_FRAG.into(), 53, proto::UDP, VIP_KIND_SERVICE),
                key(VIP_FRAG.into(), 0, proto::UDP, VIP_KIND_FRAGMENTS),
            ],
            2,
            VIP_F_L3_HASH,
            &[6, 7, 6, 7, 6, 7, 6],
        )
        .unwrap();
        f.dp.install_vip(&[key(VIP_EMPTY.into(), 80, proto::TCP, VIP_KIND_SERVICE)], 3, 0, &[0; 7]).unwrap();
        f.backends(4, &[11, 12, 13]);
        f.dp.install_vip(
            &[key(VIP_SRC.into(), 80, proto::TCP, VIP_KIND_SERVICE)],
            4,
            VIP_F_SRC_HASH,
            &[11, 12, 13, 11, 12, 13, 11],
        )
        .unwrap();
        f.backends(5, &[8, 9]);
        f.dp.install_vip(&[key(VIP6.into(), 443, proto::TCP, VIP_KIND_SERVICE)], 5, 0, &[8, 9, 8, 9, 8]).unwrap();
        f
    }

    fn backends(&mut self, vip_index: u32, ids: &[u32]) {
        for &id in ids {
            self.dp.set_backend(id, Backend { mac: backend_mac(id), flags: BACKEND_F_ALIVE, vip_index }).unwrap();
        }
    }

    fn run(&self, input: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; input.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        let res = self.dp.program().test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        (res.return_value, out)
    }

    fn stat(&self, which: Stat) -> u64 {
        self.dp.stats().unwrap().into_iter().find(|(s, _)| *s == which).map(|(_, c)| c.packets).unwrap()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// The frame a backend must receive: the input with only the MACs changed.
fn forwarded(input: &[u8], backend: u32) -> Vec<u8> {
    let mut out = input.to_vec();
    out[0..6].copy_from_slice(&backend_mac(backend));
    out[6..12].copy_from_slice(&DIRECTOR_MAC);
    out
}

fn eth4(payload: &[u8]) -> Vec<u8> {
    pkt::ethernet(DIRECTOR_MAC, CLIENT_MAC, None, pkt::ETH_P_IP, payload)
}

fn eth6(payload: &[u8]) -> Vec<u8> {
    pkt::ethernet(DIRECTOR_MAC, CLIENT_MAC, None, pkt::ETH_P_IPV6, payload)
}

fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    eth4(&Ipv4::new(src, dst, proto::TCP).build(&pkt::tcp(sport, dport, flags, b"hello")))
}

fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    eth4(&Ipv4::new(src, dst, proto::UDP).build(&pkt::udp(sport, dport, b"query")))
}

fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    eth6(&pkt::ipv6(src, dst, proto::TCP, &pkt::tcp(sport, dport, flags, b"hello")))
}

/// The backend the ring gives a 5-tuple: what every director computes.
fn ring_pick(ring: &[u32], src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> u32 {
    let digest = hash::digest_5tuple(&addr16(src), &addr16(dst), sport.to_be(), dport.to_be(), proto);
    ring[hash::ring_slot(digest, ring.len() as u32) as usize]
}

/// The backend a new 5-tuple gets while the backends in `dead` are marked
/// dead but the ring still names them: its slot, else the retry slots in
/// order (`hash::ring_retry_slot`); None: dropped until the new ring.
fn ring_pick_live(
    ring: &[u32],
    dead: &[u32],
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
) -> Option<u32> {
    let digest = hash::digest_5tuple(&addr16(src), &addr16(dst), sport.to_be(), dport.to_be(), proto);
    let n = ring.len() as u32;
    std::iter::once(hash::ring_slot(digest, n))
        .chain((1..=RING_RETRIES).map(|attempt| hash::ring_retry_slot(digest, attempt, n)))
        .map(|slot| ring[slot as usize])
        .find(|id| !dead.contains(id))
}

fn ring_pick_l3(ring: &[u32], src: IpAddr, dst: IpAddr, proto: u8) -> u32 {
    ring[hash::ring_slot(hash::digest_l3(&addr16(src), &addr16(dst), proto), ring.len() as u32) as usize]
}

/// One row of the table.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    verdict: u32,
    /// None: the output must equal the input byte for byte.
    output: Option<Vec<u8>>,
}

fn pass(name: &'static str, input: Vec<u8>) -> Case {
    Case { name, input, verdict: XDP_PASS, output: None }
}

fn drop(name: &'static str, input: Vec<u8>) -> Case {
    Case { name, input, verdict: XDP_DROP, output: None }
}

fn tx(name: &'static str, input: Vec<u8>, backend: u32) -> Case {
    let output = Some(forwarded(&input, backend));
    Case { name, input, verdict: XDP_TX, output }
}

fn run_table(f: &Fixture, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let (verdict, out) = f.run(&c.input);
        let want = c.output.as_ref().unwrap_or(&c.input);
        if verdict != c.verdict || &out != want {
            failures.push(format!(
                "{}: verdict {verdict} (want {}), output {}",
                c.name,
                c.verdict,
                if &out == want { "ok".to_owned() } else { format!("{out:02x?}\n   want {want:02x?}") }
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn fixture_table() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    fixture_table_on(Fixture::new());
}

/// The traced program is the balancer plus the trace: the same verdicts
/// and frames.
#[test]
fn the_traced_program_forwards_as_lb_xdp() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    fixture_table_on(Fixture::traced(Some(&trace::Filter::default())));
}

fn fixture_table_on(f: Fixture) {
    let c4: IpAddr = CLIENT.into();
    let v4: IpAddr = VIP_TCP.into();
    let b_tcp = |sport| ring_pick(&RING, c4, v4, sport, 80, proto::TCP);
    let udp_ring = [4, 5, 4, 5, 4];
    let six_ring = [8, 9, 8, 9, 8];
    let frag_ring = [6, 7, 6, 7, 6, 7, 6];

    // A VLAN-tagged frame, forwarded with its tag untouched.
    let vlan = pkt::ethernet(
        DIRECTOR_MAC,
        CLIENT_MAC,
        Some(0x0064),
        pkt::ETH_P_IP,
        &Ipv4::new(CLIENT, VIP_TCP, proto::TCP).build(&pkt::tcp(40001, 80, TCP_ACK, b"x")),
    );
    // IPv4 with 4 bytes of options (NOP NOP NOP EOL): ports come after them.
    let mut with_opts = Ipv4::new(CLIENT, VIP_TCP, proto::TCP);
    with_opts.options = vec![1, 1, 1, 0];
    let with_opts = eth4(&with_opts.build(&pkt::tcp(40002, 80, TCP_ACK, b"opt")));
    // First and second fragment of one UDP datagram to the fragment VIP.
    let mut first = Ipv4::new(CLIENT, VIP_FRAG, proto::UDP);
    first.frag = 0x2000;
    let first = eth4(&first.build(&pkt::udp(5353, 53, &[0xAB; 32])));
    let mut second = Ipv4::new(CLIENT, VIP_FRAG, proto::UDP);
    second.frag = 5; // offset 40 bytes, no MF
    let second = eth4(&second.build(&[0xCD; 24]));
    let frag_backend = ring_pick_l3(&frag_ring, c4, VIP_FRAG.into(), proto::UDP);
    // A fragment for a VIP that takes no fragments goes to the kernel.
    let mut stray = Ipv4::new(CLIENT, VIP_TCP, proto::TCP);
    stray.frag = 7;
    let stray = eth4(&stray.build(&[0; 16]));
    // ICMP "fragmentation needed" from a router about a packet the backend
    // sent from VIP:80 to CLIENT:40003; it belongs to CLIENT:40003 -> VIP:80.
    let router = Ipv4Addr::new(10, 9, 9, 9);
    let quoted = Ipv4::new(VIP_TCP, CLIENT, proto::TCP).build(&pkt::tcp(80, 40003, TCP_ACK, &[]))[..28].to_vec();
    let too_big = eth4(&Ipv4::new(router, VIP_TCP, proto::ICMP).build(&pkt::icmp(3, 4, [0, 0, 0x05, 0xDC], &quoted)));
    // The same for IPv6: packet too big about VIP6:443 -> CLIENT6:40004.
    let quoted6 = pkt::ipv6(VIP6, CLIENT6, proto::TCP, &pkt::tcp(443, 40004, TCP_ACK, &[]));
    let router6 = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);
    let too_big6 = eth6(&pkt::ipv6(router6, VIP6, proto::ICMPV6, &pkt::icmp(2, 0, [0, 0, 0x05, 0x00], &quoted6[..48])));
    let echo = eth4(&Ipv4::new(CLIENT, VIP_TCP, proto::ICMP).build(&pkt::icmp(8, 0, [0, 1, 0, 1], b"ping")));
    let arp = pkt::ethernet([0xFF; 6], CLIENT_MAC, None, pkt::ETH_P_ARP, &[0u8; 28]);
    let gre = eth4(&Ipv4::new(CLIENT, VIP_TCP, 47).build(&[0u8; 8]));
    // Persistence: the source port plays no part.
    let src_hash = |_sport: u16| {
        let ring = [11u32, 12, 13, 11, 12, 13, 11];
        ring[hash::ring_slot(hash::digest_src(&addr16(c4)), 7) as usize]
    };

    let good = tcp4(CLIENT, VIP_TCP, 40000, 80, TCP_ACK | TCP_PSH);
    let mut cases = vec![
        tx("ipv4 tcp to vip", good.clone(), b_tcp(40000)),
        tx("ipv4 tcp syn to vip", tcp4(CLIENT, VIP_TCP, 40010, 80, TCP_SYN), b_tcp(40010)),
        tx(
            "ipv4 udp to port-0 vip",
            udp4(CLIENT, VIP_TCP, 1111, 9999),
            ring_pick(&udp_ring, c4, v4, 1111, 9999, proto::UDP),
        ),
        tx(
            "ipv4 udp to port-0 vip, other port",
            udp4(CLIENT, VIP_TCP, 1111, 53),
            ring_pick(&udp_ring, c4, v4, 1111, 53, proto::UDP),
        ),
        tx(
            "ipv6 tcp to vip",
            tcp6(CLIENT6, VIP6, 40000, 443, TCP_ACK),
            ring_pick(&six_ring, CLIENT6.into(), VIP6.into(), 40000, 443, proto::TCP),
        ),
        tx("802.1q tagged", vlan, b_tcp(40001)),
        tx("ipv4 options", with_opts, b_tcp(40002)),
        tx("first fragment", first, frag_backend),
        tx("second fragment", second, frag_backend),
        tx("icmp frag needed follows the flow", too_big, b_tcp(40003)),
        tx(
            "icmpv6 packet too big follows the flow",
            too_big6,
            ring_pick(&six_ring, CLIENT6.into(), VIP6.into(), 40004, 443, proto::TCP),
        ),
        tx("source-ip persistence", tcp4(CLIENT, VIP_SRC, 1, 80, TCP_ACK), src_hash(1)),
        tx("source-ip persistence, other port", tcp4(CLIENT, VIP_SRC, 2, 80, TCP_ACK), src_hash(2)),
        pass("tcp to a non-vip address", tcp4(CLIENT, NOT_VIP, 40000, 80, TCP_ACK)),
        pass("tcp to the vip, other port", tcp4(CLIENT, VIP_TCP, 40000, 81, TCP_ACK)),
        pass(
            "ipv6 to a non-vip address",
            tcp6(CLIENT6, Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x200), 1, 443, TCP_ACK),
        ),
        pass("arp", arp),
        pass("icmp echo to the vip", echo),
        pass("gre to the vip", gre),
        pass("fragment for a vip without fragments", stray),
        drop("vip without backends", tcp4(CLIENT, VIP_EMPTY, 40000, 80, TCP_ACK)),
    ];

    // Broken frames: dropped (and counted) only when they are a VIP's,
    // passed unchanged for the kernel to judge otherwise. A frame is a VIP's
    // when its destination, protocol and port (as far as they can be read)
    // name a VIP, or its destination and protocol an all-ports VIP or one
    // that takes fragments.
    let mut malformed_drops = 0;
    let mut malformed_passes = 0;
    let mut broken = |cases: &mut Vec<Case>, c: Case| {
        if c.verdict == XDP_DROP {
            malformed_drops += 1;
        } else {
            malformed_passes += 1;
        }
        cases.push(c);
    };
    // Cut before the destination address: nothing says whose they are. The
    // kernel refuses frames under 14 bytes, so those are not
    // BPF_PROG_TEST_RUN inputs at all.
    for cut in [15, 16, 17] {
        let mut v = pkt::ethernet(DIRECTOR_MAC, CLIENT_MAC, Some(1), pkt::ETH_P_IP, &[]);
        v.truncate(cut);
        broken(&mut cases, pass("truncated vlan tag", v));
    }
    for cut in [14, 20, 33] {
        broken(&mut cases, pass("truncated ipv4 header", good[..cut].to_vec()));
    }
    let six = tcp6(CLIENT6, VIP6, 40000, 443, TCP_ACK);
    for cut in [14, 40, 53] {
        broken(&mut cases, pass("truncated ipv6 header", six[..cut].to_vec()));
    }
    // A VIP's address, its TCP header cut: once the port is there it names
    // the VIP; before that only an all-ports or fragments VIP would claim it.
    for cut in [34, 36] {
        broken(&mut cases, pass("tcp header cut before the port, to a vip address", good[..cut].to_vec()));
    }
    for cut in [38, 53] {
        broken(&mut cases, drop("truncated tcp header to a vip", good[..cut].to_vec()));
    }
    broken(&mut cases, drop("truncated tcp over ipv6 to a vip", six[..60].to_vec()));
    let mut bad_doff = good.clone();
    bad_doff[34 + 12] = 0x40;
    broken(&mut cases, drop("tcp data offset 4 to a vip", bad_doff));
    let udp = udp4(CLIENT, VIP_TCP, 1111, 9999);
    broken(&mut cases, drop("truncated udp header to an all-ports vip", udp[..40].to_vec()));
    let frag_udp = udp4(CLIENT, VIP_FRAG, 1111, 9999);
    broken(&mut cases, drop("udp header cut before the port, to a fragments vip", frag_udp[..36].to_vec()));
    // The same frames to an address that is no VIP's.
    let other = tcp4(CLIENT, NOT_VIP, 40000, 80, TCP_ACK);
    for cut in [30, 38, 53] {
        broken(&mut cases, pass("truncated to a non-vip address", other[..cut].to_vec()));
    }
    let mut other_doff = other.clone();
    other_doff[34 + 12] = 0x40;
    broken(&mut cases, pass("tcp data offset 4 to a non-vip address", other_doff));
    // Bad IPv4 headers to a VIP's address: IHL below 5, version 5, options
    // longer than the frame. No port can be read, so no VIP claims them.
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    broken(&mut cases, pass("ipv4 ihl 4", ihl4));
    let mut v5 = good.clone();
    v5[14] = 0x55;
    broken(&mut cases, pass("ip version 5 in an ipv4 frame", v5));
    let mut long_opts = good[..40].to_vec();
    long_opts[14] = 0x4F;
    broken(&mut cases, pass("ipv4 options past the end", long_opts));
    // Found by the fuzz test: an 802.1ad tag, then an IPv4 header cut short;
    // IPv6 to a non-VIP address whose hop-by-hop header is longer than the
    // frame.
    broken(&mut cases, pass("802.1ad tag, ipv4 header cut", unhex("0200000000d10200000000dd88a8064108004500001c1472")));
    broken(
        &mut cases,
        pass(
            "ipv6 hop-by-hop header past the end, to a non-vip address",
            unhex(concat!(
                "0200000000d102000000001886dd600000000008001b000000000000000068cee82d815ec160",
                "25dea29339e4bfcde191880459834f963cbd003500080000"
            )),
        ),
    );
    // A hop-by-hop header past the end to a VIP's address: the TCP header
    // it announces lies beyond the frame, no port names the VIP, and the
    // kernel judges it.
    let mut hop6 = six[..60].to_vec();
    hop6[14 + 6] = 0; // next header: hop-by-hop
    hop6[54] = proto::TCP;
    hop6[54 + 1] = 200; // 1608 bytes of options
    broken(&mut cases, pass("ipv6 hop-by-hop header past the end, to a vip", hop6));
    // ICMP errors whose quote cannot be read are the kernel's business.
    let short_quote = eth4(&Ipv4::new(router, VIP_TCP, proto::ICMP).build(&pkt::icmp(3, 4, [0; 4], &quoted[..20])));
    cases.push(pass("icmp error with a truncated quote", short_quote));

    run_table(&f, &cases);
    assert_eq!(f.stat(Stat::DropMalformed), malformed_drops, "broken frames for a VIP are counted as dropped");
    assert_eq!(f.stat(Stat::PassMalformed), malformed_passes, "other broken frames are counted as passed");
    assert_eq!(f.stat(Stat::DropNoBackend), 1);
    assert!(f.stat(Stat::Tx) >= 13);
}

#[test]
fn flow_table_keeps_flows_across_ring_changes() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut f = Fixture::new();
    let c4: IpAddr = CLIENT.into();
    let v4: IpAddr = VIP_TCP.into();
    let vip = key(v4, 80, proto::TCP, VIP_KIND_SERVICE);
    // Find a flow whose ring backend is 1, so that a ring without 1 moves it.
    let sport = (20000..).find(|&p| ring_pick(&RING, c4, v4, p, 80, proto::TCP) == 1).unwrap();
    let established = tcp4(CLIENT, VIP_TCP, sport, 80, TCP_ACK);
    run_table(&f, &[tx("first packet", established.clone(), 1)]);
    let flow =
        FlowKey { src: addr16(c4), dst: addr16(v4), sport: sport.to_be(), dport: 80u16.to_be(), proto: proto::TCP };
    assert_eq!(f.dp.flow(&flow).unwrap(), Some(1), "the flow is recorded");

    // Backend 1 is drained: the new ring has no slot for it.
    let drained = [2, 3, 2, 3, 2, 3, 2];
    f.dp.install_vip(&[vip], 0, 0, &drained).unwrap();
    let new_flow = (30000..).find(|&p| ring_pick(&RING, c4, v4, p, 80, proto::TCP) == 1).unwrap();
    run_table(
        &f,
        &[
            tx("established flow stays on its backend", established.clone(), 1),
            tx(
                "a new flow follows the new ring",
                tcp4(CLIENT, VIP_TCP, new_flow, 80, TCP_ACK),
                ring_pick(&drained, c4, v4, new_flow, 80, proto::TCP),
            ),
            tx(
                "a SYN re-hashes",
                tcp4(CLIENT, VIP_TCP, sport, 80, TCP_SYN),
                ring_pick(&drained, c4, v4, sport, 80, proto::TCP),
            ),
        ],
    );

    // Back to the old ring, then backend 1 is removed outright: its flows
    // must be re-hashed, not black-holed.
    f.dp.install_vip(&[vip], 0, 0, &RING).unwrap();
    let other = (40000..).find(|&p| ring_pick(&RING, c4, v4, p, 80, proto::TCP) == 1).unwrap();
    let pkt_other = tcp4(CLIENT, VIP_TCP, other, 80, TCP_ACK);
    run_table(&f, &[tx("recorded on 1", pkt_other.clone(), 1)]);
    f.dp.set_backend(1, Backend { mac: backend_mac(1), flags: 0, vip_index: 0 }).unwrap();
    f.dp.install_vip(&[vip], 0, 0, &drained).unwrap();
    run_table(
        &f,
        &[tx("removed backend's flow is re-hashed", pkt_other, ring_pick(&drained, c4, v4, other, 80, proto::TCP))],
    );
    assert!(f.stat(Stat::FlowStale) >= 1);
}

/// A ring staged with a tag the VIP's spare region already holds (the ring
/// it had before the last flip, as when a backend fails and returns) is not
/// copied again: the flip alone brings it back.
#[test]
fn a_vip_going_back_to_its_previous_ring_flips_without_copying_it() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut f = Fixture::new();
    let (c4, v4): (IpAddr, IpAddr) = (CLIENT.into(), VIP_TCP.into());
    let vip = key(v4, 80, proto::TCP, VIP_KIND_SERVICE);
    let drained = [2, 3, 2, 3, 2, 3, 2];
    // A SYN re-hashes, so each one shows the ring published at the time.
    let sport = (20000..).find(|&p| ring_pick(&RING, c4, v4, p, 80, proto::TCP) == 1).unwrap();
    let syn = tcp4(CLIENT, VIP_TCP, sport, 80, TCP_SYN);
    let flip = |f: &mut Fixture, ring: &[u32], tag: u64| {
        f.dp.stage_vip(&[vip], 0, 0, ring, Some(tag)).unwrap();
        f.dp.publish().unwrap();
    };
    flip(&mut f, &RING, 1);
    flip(&mut f, &drained, 2);
    flip(&mut f, &RING, 1);
    run_table(&f, &[tx("back on the first ring", syn.clone(), 1)]);
    // Tag 2 promises the drained ring, which the spare region still holds:
    // what is passed is not written.
    flip(&mut f, &[1; 7], 2);
    run_table(&f, &[tx("the region kept its ring", syn.clone(), ring_pick(&drained, c4, v4, sport, 80, proto::TCP))]);
    // A new tag is written.
    flip(&mut f, &[1; 7], 3);
    run_table(&f, &[tx("a new ring is copied", syn, 1)]);
}

/// A ring preloaded into the spare region (on a health check's heads-up) is
/// what the stage naming its tag publishes: nothing is copied then.
#[test]
fn a_preloaded_ring_is_published_by_the_stage_that_names_it() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut f = Fixture::new();
    let (c4, v4): (IpAddr, IpAddr) = (CLIENT.into(), VIP_TCP.into());
    let vip = key(v4, 80, proto::TCP, VIP_KIND_SERVICE);
    let sport = (20000..).find(|&p| ring_pick(&RING, c4, v4, p, 80, proto::TCP) == 1).unwrap();
    let syn = tcp4(CLIENT, VIP_TCP, sport, 80, TCP_SYN);
    let drained = [2, 3, 2, 3, 2, 3, 2];
    // Refused while the last flip's grace period runs: it is not worth a wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !f.dp.preload_vip(0, &drained, 7).unwrap() {
        assert!(std::time::Instant::now() < deadline, "the grace period never ended");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    run_table(&f, &[tx("nothing a packet sees changed", syn.clone(), 1)]);
    f.dp.stage_vip(&[vip], 0, 0, &[1; 7], Some(7)).unwrap();
    f.dp.publish().unwrap();
    run_table(&f, &[tx("the preloaded ring", syn, ring_pick(&drained, c4, v4, sport, 80, proto::TCP))]);
}

/// Established flows are found before the VIP table is read: once a VIP is
/// removed (the agent marks its backends dead), or a recorded backend id
/// belongs to another VIP, the recorded flow must not forward.
#[test]
fn recorded_flows_of_a_removed_vip_are_not_forwarded() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut f = Fixture::new();
    let (c4, v4): (IpAddr, IpAddr) = (CLIENT.into(), VIP_TCP.into());
    let established = tcp4(CLIENT, VIP_TCP, 45000, 80, TCP_ACK);
    let picked = ring_pick(&RING, c4, v4, 45000, 80, proto::TCP);
    run_table(&f, &[tx("recorded", established.clone(), picked)]);

    // The backend id now serves VIP 1 (ids are reused): the flow recorded
    // for VIP 0 re-hashes on VIP 0's ring instead of following the id.
    f.dp.set_backend(picked, Backend { mac: backend_mac(picked), flags: BACKEND_F_ALIVE, vip_index: 1 }).unwrap();
    let stale = f.stat(Stat::FlowStale);
    // Its ring slot names the same id, which is no live backend of VIP 0:
    // the retry slots find one of VIP 0's others (or none: dropped).
    let retry = ring_pick_live(&RING, &[picked], c4, v4, 45000, 80, proto::TCP);
    let rehashed = match retry {
        Some(b) => tx("the re-hash finds another backend of VIP 0", established.clone(), b),
        None => drop("the re-hash finds no backend of VIP 0", established.clone()),
    };
    run_table(&f, &[rehashed]);
    assert!(f.stat(Stat::FlowStale) > stale, "the recorded flow was seen as stale");
    f.dp.set_backend(picked, Backend { mac: backend_mac(picked), flags: BACKEND_F_ALIVE, vip_index: 0 }).unwrap();
    // Re-recorded where the retry sent it, it stays there.
    run_table(&f, &[tx("recorded again", established.clone(), retry.unwrap_or(picked))]);

    // The VIP goes, as the agent removes one: table first, then its backends dead.
    f.dp.remove_vip(0).unwrap();
    for id in [1, 2, 3] {
        f.dp.set_backend(id, Backend { mac: backend_mac(id), flags: 0, vip_index: 0 }).unwrap();
    }
    run_table(&f, &[pass("a removed VIP's established flow is passed", established)]);
}

/// The agent marks a failed backend dead at once and publishes the ring
/// without it milliseconds later. In between, the dead backend's slots send
/// new flows to the retry slots, its recorded flows are re-hashed the same
/// way, and nothing reaches it.
#[test]
fn a_backend_marked_dead_before_its_new_ring_gets_nothing() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut f = Fixture::new();
    let (c4, v4): (IpAddr, IpAddr) = (CLIENT.into(), VIP_TCP.into());
    let ports: Vec<u16> = (46000..).filter(|&p| ring_pick(&RING, c4, v4, p, 80, proto::TCP) == 1).take(40).collect();
    let recorded = tcp4(CLIENT, VIP_TCP, ports[0], 80, TCP_ACK);
    run_table(&f, &[tx("recorded on 1", recorded.clone(), 1)]);

    f.dp.set_backend(1, Backend { mac: backend_mac(1), flags: 0, vip_index: 0 }).unwrap();
    let retries = f.stat(Stat::RingRetry);
    // 3 of 7 slots are the dead backend's: each of a flow's 4 retry slots
    // is too with chance 3/7, so about 1 flow in 30 finds no live one and is
    // dropped until the new ring; none is sent to the dead backend.
    let picks: Vec<Option<u32>> =
        ports.iter().map(|&p| ring_pick_live(&RING, &[1], c4, v4, p, 80, proto::TCP)).collect();
    let cases: Vec<Case> = ports
        .iter()
        .zip(&picks)
        .map(|(&p, pick)| {
            let syn = tcp4(CLIENT, VIP_TCP, p, 80, TCP_SYN);
            match *pick {
                Some(b) => {
                    assert_ne!(b, 1);
                    tx("a new flow of the dead backend's slot goes to a retry slot", syn, b)
                }
                None => drop("every retry slot is the dead backend's", syn),
            }
        })
        .collect();
    run_table(&f, &cases);
    let retried = picks.iter().filter(|p| p.is_some()).count() as u64;
    assert!(retried >= 30, "most flows find a live backend: {retried} of {}", ports.len());
    assert_eq!(f.stat(Stat::RingRetry) - retries, retried, "each counted as a ring retry");
    let (p, b) = ports.iter().zip(&picks).find_map(|(&p, b)| b.map(|b| (p, b))).unwrap();
    let established = tcp4(CLIENT, VIP_TCP, p, 80, TCP_ACK);
    run_table(&f, &[tx("the new flow stays where the retry sent it", established, b)]);
    let first = ring_pick_live(&RING, &[1], c4, v4, ports[0], 80, proto::TCP);
    let rehashed = match first {
        Some(b) => tx("the dead backend's recorded flow is re-hashed the same way", recorded.clone(), b),
        None => drop("the dead backend's recorded flow finds no live slot", recorded.clone()),
    };
    run_table(&f, &[rehashed]);

    // Every backend dead, the ring not yet rebuilt: dropped, never sent to a dead one.
    for id in [2, 3] {
        f.dp.set_backend(id, Backend { mac: backend_mac(id), flags: 0, vip_index: 0 }).unwrap();
    }
    run_table(&f, &[drop("no live backend in any retry slot", tcp4(CLIENT, VIP_TCP, ports[1], 80, TCP_SYN))]);
}

#[test]
fn flood_guard_stops_inserts_but_not_forwarding() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let mut f = Fixture::new();
    f.dp.set_settings(Settings::new(3, 0)).unwrap();
    let c4: IpAddr = CLIENT.into();
    let v4: IpAddr = VIP_TCP.into();
    let cases: Vec<Case> = (50000..50010)
        .map(|p| {
            tx(
                "new flow under flood",
                tcp4(CLIENT, VIP_TCP, p, 80, TCP_ACK),
                ring_pick(&RING, c4, v4, p, 80, proto::TCP),
            )
        })
        .collect();
    run_table(&f, &cases);
    // Only 3 inserts in this one-second window (test runs may land on either CPU).
    let recorded = (50000..50010u16)
        .filter(|&p| {
            let k =
                FlowKey { src: addr16(c4), dst: addr16(v4), sport: p.to_be(), dport: 80u16.to_be(), proto: proto::TCP };
            f.dp.flow(&k).unwrap().is_some()
        })
        .count();
    assert!(recorded <= 3 * 2, "at most the limit per CPU was inserted, got {recorded}");
    assert!(f.stat(Stat::FloodSkip) >= 4);
}

#[test]
fn swapping_rings_flips_between_regions() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    // Many swaps in a row: each one writes the spare region and flips, and
    // the result is always exactly the last ring installed.
    let mut f = Fixture::new();
    let vip = key(VIP_TCP.into(), 80, proto::TCP, VIP_KIND_SERVICE);
    let c4: IpAddr = CLIENT.into();
    let v4: IpAddr = VIP_TCP.into();
    for round in 0..6u32 {
        let b = 1 + round % 3;
        f.dp.install_vip(&[vip], 0, 0, &[b; 7]).unwrap();
        let sport = 60000 + round as u16;
        let _ = ring_pick(&RING, c4, v4, sport, 80, proto::TCP);
        run_table(&f, &[tx("after swap", tcp4(CLIENT, VIP_TCP, sport, 80, TCP_SYN), b)]);
    }
}

/// The packet trace: each packet the filter takes yields one record saying
/// what the fast path decided, and nothing else does.
#[test]
fn a_traced_packet_yields_its_record() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let filter: trace::Filter = "10.0.0.100/udp".parse().unwrap();
    let mut f = Fixture::traced(Some(&filter));
    let mut reader = trace::Reader::new(f.dp.ebpf_mut()).unwrap();
    let (c4, v4): (IpAddr, IpAddr) = (CLIENT.into(), VIP_TCP.into());
    let udp_ring = [4, 5, 4, 5, 4];
    let b = ring_pick(&udp_ring, c4, v4, 40000, 53, proto::UDP);
    let query = udp4(CLIENT, VIP_TCP, 40000, 53);
    run_table(
        &f,
        &[
            tx("new flow", query.clone(), b),
            tx("same flow", query, b),
            tx(
                "another protocol of the VIP",
                tcp4(CLIENT, VIP_TCP, 40000, 80, TCP_ACK),
                ring_pick(&RING, c4, v4, 40000, 80, proto::TCP),
            ),
            pass("another address", udp4(CLIENT, NOT_VIP, 40000, 53)),
        ],
    );
    let packet = |lookup| trace::Packet {
        src: "10.1.0.7:40000".parse().unwrap(),
        dst: "10.0.0.100:53".parse().unwrap(),
        proto: proto::UDP,
        lookup,
        vip_index: Some(1),
        backend: Some((b, backend_mac(b))),
    };
    let records: Vec<Record> = reader.read().into_iter().map(Result::unwrap).collect();
    assert_eq!(
        records,
        [
            Record { packet: Some(packet(Lookup::Miss)), reason: Stat::Tx },
            Record { packet: Some(packet(Lookup::Hit)), reason: Stat::Tx },
        ]
    );

    // Without a filter, every packet, parsed or not.
    let mut f = Fixture::traced(Some(&trace::Filter::default()));
    let mut reader = trace::Reader::new(f.dp.ebpf_mut()).unwrap();
    let truncated = udp4(CLIENT, VIP_TCP, 1111, 9999)[..40].to_vec();
    run_table(
        &f,
        &[
            drop("truncated", truncated),
            pass("cut before the destination", udp4(CLIENT, VIP_TCP, 1111, 9999)[..30].to_vec()),
            drop("no backend", tcp4(CLIENT, VIP_EMPTY, 40000, 80, TCP_SYN)),
            pass("not for a VIP", udp4(CLIENT, NOT_VIP, 40000, 53)),
        ],
    );
    let shown: Vec<String> = reader.read().into_iter().map(|r| r.unwrap().to_string()).collect();
    assert_eq!(
        shown,
        [
            "drop_malformed: 10.1.0.7:1111 -> 10.0.0.100:9999/udp flow=skipped vip_index=1",
            "pass_malformed: headers did not parse",
            "drop_no_backend: 10.1.0.7:40000 -> 10.0.0.102:80/tcp flow=miss vip_index=3",
            "pass_not_vip: 10.1.0.7:40000 -> 10.0.0.200:53/udp flow=skipped",
        ]
    );
}

/// The program loaded without the trace has no trace code: it uses none
/// of the trace's maps (its ring and the global holding its filter).
#[test]
fn the_untraced_program_has_no_trace_code() {
    let Some(_turn) = support::start(module_path!(), privileges::BPF) else { return };
    let maps = |f: &Fixture| -> Vec<String> {
        let info = f.dp.program().info().unwrap();
        let ids = info.map_ids().unwrap().unwrap();
        ids.iter().map(|id| MapInfo::from_id(*id).unwrap().name_as_str().unwrap_or_default().to_owned()).collect()
    };
    let off = maps(&Fixture::new());
    let on = maps(&Fixture::traced(Some(&trace::Filter::default())));
    assert!(!off.iter().any(|m| m == "AYA_LOGS" || m == ".rodata"), "{off:?}");
    assert!(on.iter().any(|m| m == "AYA_LOGS") && on.iter().any(|m| m == ".rodata"), "{on:?}");
}
