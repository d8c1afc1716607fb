//! Random and mutated Ethernet frames for fuzzing the XDP program: valid
//! headers in every combination the parser walks (VLAN stacks, IPv4 options
//! and fragments, IPv6 extension chains, ICMP errors quoting another
//! packet), addressed to a VIP or not, then often broken (truncated, bits
//! flipped, bytes overwritten), and some plain noise.
//!
//! Everything comes from one seed, so a failure is replayed by its seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{self as pkt, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Ipv4};

/// 802.1ad service tag (the outer tag of a QinQ stack).
pub const ETH_P_8021AD: u16 = 0x88A8;
/// The shortest frame BPF_PROG_TEST_RUN takes for XDP: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Frames stay within a standard MTU, and so within one page for XDP.
pub const MAX_FRAME: usize = 1514;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers: hop-by-hop, routing, fragment, destination
/// options, authentication, and "no next header".
const EXT_HOP: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_DSTOPTS: u8 = 60;
const EXT_AH: u8 = 51;
const EXT_NONE: u8 = 59;

/// SplitMix64: a PRNG whose sequence for a seed is fixed by these few lines,
/// so a printed seed replays the same frames whatever crate versions are
/// in the lock file; a statistical-quality crate would add nothing here.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// `0..max` random bytes (`max > 0`).
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What the generated frames aim at: the director's MAC, the VIPs and
/// their ports, and a client on each family.
#[derive(Clone, Debug)]
pub struct Targets {
    pub director_mac: [u8; 6],
    pub vips4: Vec<Ipv4Addr>,
    pub vips6: Vec<Ipv6Addr>,
    /// Ports the VIPs listen on (0 stands for "any port" services).
    pub ports: Vec<u16>,
    pub client4: Ipv4Addr,
    pub client6: Ipv6Addr,
}

impl Targets {
    /// Whether `frame`'s destination is a VIP address. One that is not
    /// (or cannot be read) is not for a VIP, whatever else its headers
    /// say: the fast path must pass it untouched.
    pub fn to_vip(&self, frame: &[u8]) -> bool {
        match destination(frame) {
            Some(IpAddr::V4(a)) => self.vips4.contains(&a),
            Some(IpAddr::V6(a)) => self.vips6.contains(&a),
            None => false,
        }
    }
}

/// The destination address as the fast path reads it: after the Ethernet
/// header and at most one VLAN tag, from an IP header whose fixed part is
/// all there (whatever its version field says). None when it is not IP or
/// the frame ends first.
pub fn destination(frame: &[u8]) -> Option<IpAddr> {
    let ty = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let mut off = 14;
    let mut ethertype = ty(12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = ty(16)?;
        off += 4;
    }
    match ethertype {
        ETH_P_IP => {
            frame.get(off..off + 20)?;
            let a: [u8; 4] = frame[off + 16..off + 20].try_into().ok()?;
            Some(Ipv4Addr::from(a).into())
        }
        ETH_P_IPV6 => {
            frame.get(off..off + 40)?;
            let a: [u8; 16] = frame[off + 24..off + 40].try_into().ok()?;
            Some(Ipv6Addr::from(a).into())
        }
        _ => None,
    }
}

/// A generated frame, and whether its headers are as built: neither
/// mutated nor noise.
#[derive(Clone, Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub intact: bool,
}

/// One frame: well-formed about half the time, else mutated or noise;
/// always `MIN_FRAME..=MAX_FRAME` bytes.
pub fn frame(rng: &mut Rng, t: &Targets) -> Frame {
    let noise = rng.percent(5);
    let mut f = if noise {
        // Noise, sometimes with a plausible Ethernet type to get further.
        let len = MIN_FRAME + rng.below(200);
        let mut f = rng.bytes(len);
        if rng.percent(50) {
            let ty = rng.pick(&[ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD]);
            f[12..14].copy_from_slice(&ty.to_be_bytes());
        }
        f
    } else {
        well_formed(rng, t)
    };
    let mut intact = !noise && f.len() <= MAX_FRAME;
    match rng.below(10) {
        0..=4 => {}
        5 | 6 => intact &= !truncate(rng, &mut f),
        7 | 8 => {
            flip_bits(rng, &mut f);
            intact = false;
        }
        _ => {
            overwrite(rng, &mut f);
            intact = false;
        }
    }
    if rng.percent(5) {
        flip_bits(rng, &mut f);
        intact = false;
    }
    f.truncate(MAX_FRAME);
    f.resize(f.len().max(MIN_FRAME), 0);
    Frame { bytes: f, intact }
}

/// Whether it cut anything off.
fn truncate(rng: &mut Rng, f: &mut Vec<u8>) -> bool {
    let len = MIN_FRAME + rng.below(f.len().saturating_sub(MIN_FRAME) + 1);
    let cut = len < f.len();
    f.truncate(len);
    cut
}

fn flip_bits(rng: &mut Rng, f: &mut [u8]) {
    // Mostly in the headers, where the parser looks.
    let span = f.len().min(if rng.percent(80) { 100 } else { usize::MAX });
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(span);
        f[at] ^= 1 << rng.below(8);
    }
}

fn overwrite(rng: &mut Rng, f: &mut [u8]) {
    let at = rng.below(f.len());
    let n = (1 + rng.below(8)).min(f.len() - at);
    for b in &mut f[at..at + n] {
        *b = rng.byte();
    }
}

/// A frame whose every header is right, of some kind chosen at random.
fn well_formed(rng: &mut Rng, t: &Targets) -> Vec<u8> {
    let (ethertype, payload) = match rng.below(20) {
        0 => (ETH_P_ARP, rng.bytes(28)),
        1 => {
            // Any type but those the parser reads: with random bytes behind
            // them these would be broken headers, not intact frames.
            let ty = rng.u16();
            let ty = if [ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD].contains(&ty) { 0x88B5 } else { ty };
            (ty, rng.some_bytes(64))
        }
        2..=10 => (ETH_P_IP, ipv4_packet(rng, t, 0)),
        _ => (ETH_P_IPV6, ipv6_packet(rng, t, 0)),
    };
    let dst = if rng.percent(90) { t.director_mac } else { rng.bytes(6).try_into().expect("6 bytes") };
    let src = [0x02, 0, 0, 0, 0, rng.byte()];
    let mut f = Vec::with_capacity(14 + 12 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    // 0 to 3 tags, 802.1Q or 802.1ad in any order (QinQ is ad then Q).
    let tags = [0, 0, 0, 1, 1, 2, 3][rng.below(7)];
    for _ in 0..tags {
        f.extend_from_slice(&rng.pick(&[ETH_P_8021Q, ETH_P_8021AD]).to_be_bytes());
        f.extend_from_slice(&(rng.u16() & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&payload);
    if rng.percent(10) {
        // Link-layer padding after the IP packet.
        f.extend(rng.some_bytes(32));
    }
    f
}

fn dst4(rng: &mut Rng, t: &Targets) -> Ipv4Addr {
    if rng.percent(60) { rng.pick(&t.vips4) } else { Ipv4Addr::from(rng.next_u64() as u32) }
}

fn dst6(rng: &mut Rng, t: &Targets) -> Ipv6Addr {
    if rng.percent(60) {
        rng.pick(&t.vips6)
    } else {
        Ipv6Addr::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
    }
}

fn port(rng: &mut Rng, t: &Targets) -> u16 {
    if rng.percent(60) { rng.pick(&t.ports) } else { rng.u16() }
}

/// A TCP, UDP or ICMP message, or some other protocol's bytes; `depth` > 0
/// inside an ICMP error, which never quotes another error here.
fn transport(rng: &mut Rng, t: &Targets, v6: bool, depth: u8) -> (u8, Vec<u8>) {
    let len = [0, 0, 4, 32, 200][rng.below(5)];
    let body = rng.bytes(len);
    match rng.below(10) {
        0..=3 => {
            let mut seg = pkt::tcp(rng.u16(), port(rng, t), rng.byte(), &body);
            if rng.percent(20) {
                // Options: a longer data offset and random option bytes.
                let words = 1 + rng.below(10);
                seg[12] = ((5 + words) as u8) << 4;
                let opts = rng.bytes(words * 4);
                seg.splice(20..20, opts);
            }
            (PROTO_TCP, seg)
        }
        4..=6 => (PROTO_UDP, pkt::udp(rng.u16(), port(rng, t), &body)),
        7 | 8 if depth == 0 => icmp(rng, t, v6),
        _ => (other_protocol(rng), body),
    }
}

/// A protocol number the parser does not read past: one it reads would
/// make the random bytes behind it a broken header.
fn other_protocol(rng: &mut Rng) -> u8 {
    const READ: [u8; 13] = [
        EXT_HOP,
        PROTO_ICMP,
        PROTO_TCP,
        PROTO_UDP,
        EXT_ROUTING,
        EXT_FRAGMENT,
        50,
        EXT_AH,
        PROTO_ICMPV6,
        EXT_DSTOPTS,
        135,
        139,
        140,
    ];
    let p = rng.byte();
    if READ.contains(&p) { 253 } else { p }
}

/// An ICMP or ICMPv6 message: an error quoting a packet (often one from a
/// VIP, as a router sends about a backend's reply) or an echo.
fn icmp(rng: &mut Rng, t: &Targets, v6: bool) -> (u8, Vec<u8>) {
    let error = rng.percent(80);
    let (ty, code) = match (v6, error) {
        (false, true) => (rng.pick(&[3, 11, 12, 5]), rng.byte() % 16),
        (false, false) => (rng.pick(&[0, 8, 13]), 0),
        (true, true) => (rng.pick(&[1, 2, 3, 4]), rng.byte() % 8),
        (true, false) => (rng.pick(&[128, 129, 135, 136]), 0),
    };
    let mut quoted = if !error {
        rng.some_bytes(64)
    } else if v6 {
        ipv6_packet(rng, t, 1)
    } else {
        ipv4_packet(rng, t, 1)
    };
    if error && rng.percent(50) {
        // Routers quote only the start: IPv4 header + 8 bytes is the minimum.
        let keep = rng.below(quoted.len() + 1);
        quoted.truncate(keep.max(28).min(quoted.len()));
    }
    let rest = [0, 0, rng.byte(), rng.byte()];
    (if v6 { PROTO_ICMPV6 } else { PROTO_ICMP }, pkt::icmp(ty, code, rest, &quoted))
}

/// An IPv4 packet; inside an ICMP error (`depth` 1) it is the packet the
/// error is about, so it goes from a VIP to a client.
fn ipv4_packet(rng: &mut Rng, t: &Targets, depth: u8) -> Vec<u8> {
    let (proto, l4) = transport(rng, t, false, depth);
    let (src, dst) = if depth == 0 {
        let src = if rng.percent(70) { t.client4 } else { Ipv4Addr::from(rng.next_u64() as u32) };
        (src, dst4(rng, t))
    } else {
        (dst4(rng, t), t.client4)
    };
    let mut ip = Ipv4::new(src, dst, proto);
    ip.ttl = rng.byte();
    ip.id = rng.u16();
    if rng.percent(15) {
        let words = 1 + rng.below(10);
        ip.options = rng.bytes(4 * words);
    }
    if rng.percent(15) {
        // A fragment: first (MF), middle or last, in 8-byte units.
        let offset = if rng.percent(40) { 0 } else { 1 + rng.below(0x1fff) as u16 };
        let more = if offset == 0 || rng.percent(50) { 0x2000 } else { 0 };
        ip.frag = more | offset;
        if offset != 0 {
            // A later fragment has no transport header of its own.
            let units = rng.below(8);
            return ip.build(&rng.bytes(8 * units));
        }
    }
    let mut p = ip.build(&l4);
    if depth == 1 {
        // Swap the ports: the quoted packet goes from the VIP's port.
        let hl = usize::from(p[0] & 0x0f) * 4;
        if p.len() >= hl + 4 && (proto == PROTO_TCP || proto == PROTO_UDP) {
            let (a, b) = (p[hl..hl + 2].to_vec(), p[hl + 2..hl + 4].to_vec());
            p[hl..hl + 2].copy_from_slice(&b);
            p[hl + 2..hl + 4].copy_from_slice(&a);
        }
    }
    p
}

/// An IPv6 packet with 0 to 4 extension headers before its transport.
fn ipv6_packet(rng: &mut Rng, t: &Targets, depth: u8) -> Vec<u8> {
    let (proto, l4) = transport(rng, t, true, depth);
    let (src, dst) = if depth == 0 {
        let src = if rng.percent(70) { t.client6 } else { Ipv6Addr::from(u128::from(rng.next_u64())) };
        (src, dst6(rng, t))
    } else {
        (dst6(rng, t), t.client6)
    };
    let n = [0, 0, 0, 1, 1, 2, 3, 4][rng.below(8)];
    let kinds: Vec<u8> =
        (0..n).map(|_| rng.pick(&[EXT_HOP, EXT_ROUTING, EXT_FRAGMENT, EXT_DSTOPTS, EXT_AH, EXT_NONE])).collect();
    // Built inside out: each header names the one after it.
    let mut next = proto;
    let mut payload = l4;
    for &kind in kinds.iter().rev() {
        let mut h = match kind {
            EXT_FRAGMENT => {
                let offset = if rng.percent(50) { 0 } else { rng.u16() & 0xfff8 };
                let more = u16::from(rng.percent(50));
                let mut h = vec![next, 0];
                h.extend_from_slice(&(offset | more).to_be_bytes());
                h.extend(rng.bytes(4));
                h
            }
            EXT_AH => {
                // AH counts its length in 4-byte units, minus 2.
                let words = 3 + rng.below(4);
                let mut h = vec![next, (words - 2) as u8];
                h.extend(rng.bytes(words * 4 - 2));
                h
            }
            _ => {
                let units = rng.below(3);
                let mut h = vec![next, units as u8];
                h.extend(rng.bytes(6 + 8 * units));
                h
            }
        };
        if kind == EXT_NONE {
            // "No next header": what follows is not parsed.
            h = rng.bytes(8);
        }
        h.extend_from_slice(&payload);
        payload = h;
        next = kind;
    }
    pkt::ipv6(src, dst, next, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        Targets {
            director_mac: [2, 0, 0, 0, 0, 0xd1],
            vips4: vec![Ipv4Addr::new(10, 0, 0, 100)],
            vips6: vec!["fd00::100".parse().expect("an address")],
            ports: vec![80, 443],
            client4: Ipv4Addr::new(10, 1, 0, 7),
            client6: "fd00:1::7".parse().expect("an address"),
        }
    }

    #[test]
    fn a_seed_gives_the_same_frames_and_sizes_stay_in_range() {
        let t = targets();
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..2000 {
            let f = frame(&mut a, &t).bytes;
            assert_eq!(f, frame(&mut b, &t).bytes);
            assert!((MIN_FRAME..=MAX_FRAME).contains(&f.len()), "{} bytes", f.len());
        }
    }

    #[test]
    fn many_frames_are_to_a_vip_and_many_are_not() {
        let t = targets();
        let mut rng = Rng::new(1);
        let to_vip = (0..1000).filter(|_| t.to_vip(&frame(&mut rng, &t).bytes)).count();
        assert!((200..800).contains(&to_vip), "{to_vip} of 1000 are to a VIP address");
    }

    #[test]
    fn the_destination_is_read_past_one_vlan_tag_and_not_past_the_end() {
        let ip = Ipv4::new(Ipv4Addr::new(10, 1, 0, 7), Ipv4Addr::new(10, 0, 0, 100), PROTO_TCP).build(&[0; 20]);
        let tagged = pkt::ethernet([2; 6], [4; 6], Some(7), ETH_P_IP, &ip);
        assert_eq!(destination(&tagged), Some(Ipv4Addr::new(10, 0, 0, 100).into()));
        assert_eq!(destination(&tagged[..14 + 4 + 19]), None);
        let v6 = pkt::ethernet([2; 6], [4; 6], None, ETH_P_IPV6, &[0x60; 40]);
        assert_eq!(destination(&v6), Some(Ipv6Addr::from([0x60; 16]).into()));
        assert_eq!(destination(&pkt::ethernet([2; 6], [4; 6], None, ETH_P_ARP, &[0; 28])), None);
    }
}
