//! The segments of a half-open check: the SYN we send, the replies we take
//! (SYN-ACK or RST acknowledging it), and the socket filter that keeps every
//! other TCP segment of the host away from us.

use std::net::Ipv4Addr;

/// The SYN we send: a 20-byte TCP header and one option, the MSS, as any
/// stack puts in a SYN (a bare SYN looks like a scan to some firewalls).
pub(super) const SYN_LEN: usize = 24;
const MSS: u16 = 1460;
const WINDOW: u16 = 64240;
/// Where the checksum is in a TCP header (for `IPV6_CHECKSUM`).
pub(super) const CHECKSUM_OFFSET: usize = 16;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// What the backend answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    SynAck,
    Reset,
}

/// The parts of a segment that make it an answer to a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ParsedReply {
    /// The backend's port.
    pub source_port: u16,
    /// Ours.
    pub dest_port: u16,
    pub ack: u32,
    pub kind: Reply,
}

/// A SYN-ACK or an RST that acknowledges something; `None` for anything
/// else. An IPv4 raw socket delivers the IP header, an IPv6 one starts at
/// the TCP header.
pub(crate) fn parse_reply(ipv6: bool, packet: &[u8]) -> Option<ParsedReply> {
    let tcp = if ipv6 {
        packet
    } else {
        let first = *packet.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || packet.get(9) != Some(&(libc::IPPROTO_TCP as u8)) {
            return None;
        }
        packet.get(ihl..)?
    };
    let header = tcp.get(..20)?;
    let flags = header[13];
    // Only a segment that acknowledges our SYN answers it (an RST with no
    // ACK bit acknowledges nothing).
    if flags & TCP_ACK == 0 {
        return None;
    }
    let kind = if flags & TCP_RST != 0 {
        Reply::Reset
    } else if flags & (TCP_SYN | TCP_FIN) == TCP_SYN {
        Reply::SynAck
    } else {
        return None;
    };
    Some(ParsedReply {
        source_port: u16::from_be_bytes([header[0], header[1]]),
        dest_port: u16::from_be_bytes([header[2], header[3]]),
        ack: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
        kind,
    })
}

/// A SYN with the MSS option; the checksum is left 0.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Source Port          |       Destination Port        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Sequence Number                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Acknowledgment Number (0)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Off=6 |  Rsrvd  |    SYN    |            Window               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Checksum            |        Urgent Pointer (0)     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Kind=2 (MSS) |   Length=4    |          MSS (1460)           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
pub(super) fn syn(source_port: u16, dest_port: u16, seq: u32) -> [u8; SYN_LEN] {
    let mut s = [0u8; SYN_LEN];
    s[0..2].copy_from_slice(&source_port.to_be_bytes());
    s[2..4].copy_from_slice(&dest_port.to_be_bytes());
    s[4..8].copy_from_slice(&seq.to_be_bytes());
    s[12] = ((SYN_LEN / 4) as u8) << 4;
    s[13] = TCP_SYN;
    s[14..16].copy_from_slice(&WINDOW.to_be_bytes());
    s[20] = 2;
    s[21] = 4;
    s[22..24].copy_from_slice(&MSS.to_be_bytes());
    s
}

/// Fills in the checksum over the IPv4 pseudo-header (RFC 793 section 3.1).
pub(super) fn fill_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, segment: &mut [u8; SYN_LEN]) {
    segment[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].fill(0);
    let sum = checksum_v4(src, dst, segment);
    segment[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&sum.to_be_bytes());
}

fn checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, libc::IPPROTO_TCP as u8]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A classic BPF program that lets through only TCP segments to one of
/// `ports`: a raw TCP socket is otherwise handed a copy of every TCP segment
/// the host receives.
pub(super) fn filter_program(ipv6: bool, ports: &[u16]) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
    const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (P[k] & 0xf)
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut p = Vec::with_capacity(ports.len() + 4);
    if ipv6 {
        p.push(op(LD_H_ABS, 0, 0, 2));
    } else {
        p.push(op(LDX_B_MSH, 0, 0, 0));
        p.push(op(LD_H_IND, 0, 0, 2));
    }
    // The i-th compare jumps over the rest and the drop to the accept.
    for (i, port) in ports.iter().enumerate() {
        let to_accept = (ports.len() - i) as u8;
        p.push(op(JEQ_K, to_accept, 0, u32::from(*port)));
    }
    p.push(op(RET_K, 0, 0, 0));
    p.push(op(RET_K, 0, 0, u32::MAX));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN-ACK from 10.0.0.2:80 to port 40000 acknowledging 0x01020304,
    /// with its IPv4 header (5 words) as a raw socket hands it over.
    const SYN_ACK_V4: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 2, 10, 0, 0, 1, //
        0x00, 0x50, 0x9c, 0x40, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0x03, 0x04, 0x50, 0x12, 0xfa, 0xf0, 0, 0, 0, 0,
    ];

    #[test]
    fn syn_bytes_and_checksum() {
        let mut s = syn(40000, 80, 0x0102_0304);
        assert_eq!(
            s,
            [
                0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, 2, 4,
                0x05, 0xb4
            ]
        );
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        fill_checksum_v4(src, dst, &mut s);
        // A segment with its checksum in place sums to zero.
        assert_eq!(checksum_v4(src, dst, &s), 0);
        assert_ne!(&s[16..18], &[0, 0]);
    }

    #[test]
    fn replies_are_parsed_and_everything_else_ignored() {
        let reply = parse_reply(false, &SYN_ACK_V4).unwrap();
        assert_eq!(reply, ParsedReply { source_port: 80, dest_port: 40000, ack: 0x0102_0304, kind: Reply::SynAck });
        let mut rst = SYN_ACK_V4;
        rst[33] = TCP_RST | TCP_ACK;
        assert_eq!(parse_reply(false, &rst).unwrap().kind, Reply::Reset);
        assert_eq!(parse_reply(true, &SYN_ACK_V4[20..]).unwrap().kind, Reply::SynAck);
        let mut bare_rst = SYN_ACK_V4;
        bare_rst[33] = TCP_RST;
        let mut syn_only = SYN_ACK_V4;
        syn_only[33] = TCP_SYN;
        let mut ack_only = SYN_ACK_V4;
        ack_only[33] = TCP_ACK;
        let mut fin = SYN_ACK_V4;
        fin[33] = TCP_SYN | TCP_ACK | TCP_FIN;
        let mut udp = SYN_ACK_V4;
        udp[9] = 17;
        let mut options = SYN_ACK_V4;
        options[0] = 0x46;
        for bad in [&bare_rst[..], &syn_only, &ack_only, &fin, &udp, &options, &SYN_ACK_V4[..39], &[], &[0x45]] {
            assert_eq!(parse_reply(false, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_filter_jumps_from_every_compare_to_the_accept() {
        let ports: Vec<u16> = (40000..40016).collect();
        for ipv6 in [false, true] {
            let prog = filter_program(ipv6, &ports);
            let n = prog.len();
            let compares: Vec<usize> = (0..n).filter(|&i| prog[i].code == 0x15).collect();
            assert_eq!(compares.len(), ports.len());
            for i in compares {
                assert_eq!(i + 1 + usize::from(prog[i].jt), n - 1, "compare {i} must jump to the accept");
                assert_eq!(prog[i].jf, 0);
            }
            assert_eq!((prog[n - 2].k, prog[n - 1].k), (0, u32::MAX));
        }
    }
}
