use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::vrrp::packet::{CHECKSUM_OFFSET, Centiseconds, ChecksumKind, MULTICAST_V4, MULTICAST_V6};

const VRID: u8 = 51;
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const STRANGER4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const OURS4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
const OURS6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);

fn filter(version: Version, addresses: Addresses) -> Filter {
    Filter { version, vrid: VRID, auth: Auth::None, addresses, unicast_peers: Vec::new() }
}

fn v2() -> Filter {
    filter(Version::V2, Addresses::V4(vec![VIP4]))
}

fn v2_pass() -> Filter {
    Filter { auth: Auth::pass("secret"), ..v2() }
}

fn v3_v4() -> Filter {
    filter(Version::V3, Addresses::V4(vec![VIP4]))
}

fn v3_v6() -> Filter {
    filter(Version::V3, Addresses::V6(vec![VIP6]))
}

fn unicast(f: Filter, peer: IpAddr) -> Filter {
    Filter { unicast_peers: vec![peer], ..f }
}

fn multicast4(src: Ipv4Addr) -> IpHeader {
    IpHeader { src: src.into(), dst: MULTICAST_V4.into(), ttl: TTL }
}

fn multicast6(src: Ipv6Addr) -> IpHeader {
    IpHeader { src: src.into(), dst: MULTICAST_V6.into(), ttl: TTL }
}

/// Routed unicast: the TTL is no longer 255.
fn unicast4(src: Ipv4Addr) -> IpHeader {
    IpHeader { src: src.into(), dst: OURS4.into(), ttl: 62 }
}

fn unicast6(src: Ipv6Addr) -> IpHeader {
    IpHeader { src: src.into(), dst: OURS6.into(), ttl: 62 }
}

/// What a peer sends: priority 150, 1 s, the filter's addresses.
fn advert(f: &Filter) -> Advertisement {
    Advertisement {
        version: f.version,
        vrid: VRID,
        priority: 150,
        interval: Centiseconds::DEFAULT_INTERVAL,
        auth: if f.version == Version::V2 { f.auth } else { Auth::None },
        addresses: f.addresses.clone(),
    }
}

fn wire(a: &Advertisement, ip: IpHeader) -> Vec<u8> {
    let ph = PseudoHeader::new(ip.src, ip.dst).expect("one family");
    a.encode(&ph, ChecksumKind::default()).expect("valid advert")
}

/// A v2 message with byte `at` set to `value` and the checksum made right
/// again, so that a later check is the one that fails.
fn v2_patched(a: &Advertisement, at: usize, value: u8) -> Vec<u8> {
    let mut bytes = wire(a, multicast4(PEER4));
    bytes[at] = value;
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].fill(0);
    let mut sum: u32 = bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    bytes
}

/// One received packet: `filter` must answer `want`, counted under `counter`.
struct Case {
    name: &'static str,
    filter: Filter,
    ip: IpHeader,
    payload: Vec<u8>,
    want: Result<Advertisement, Reject>,
    counter: Option<Reason>,
}

fn accepted(name: &'static str, filter: Filter, ip: IpHeader, a: Advertisement) -> Case {
    Case { name, payload: wire(&a, ip), filter, ip, want: Ok(a), counter: None }
}

fn cases() -> Vec<Case> {
    let src4 = IpAddr::V4(PEER4);
    let stranger4 = IpAddr::V4(STRANGER4);
    let ip4 = multicast4(PEER4);
    let decode = |error| Err(Reject::Decode { src: src4, error });
    let check = |error| Err(Reject::Check { src: src4, vrid: VRID, error });
    let v2_advert = advert(&v2());
    let v2_bytes = wire(&v2_advert, ip4);
    vec![
        // Accepted, both versions, both families, multicast and unicast.
        accepted("v2 multicast", v2(), ip4, advert(&v2())),
        accepted("v2 with the configured password", v2_pass(), ip4, advert(&v2_pass())),
        accepted("v2 priority 0: a master resigning", v2(), ip4, Advertisement { priority: 0, ..advert(&v2()) }),
        accepted("v3 IPv4 multicast", v3_v4(), ip4, advert(&v3_v4())),
        accepted("v3 IPv6 multicast", v3_v6(), multicast6(PEER6), advert(&v3_v6())),
        accepted("v3 IPv4 unicast from a peer, any TTL", unicast(v3_v4(), src4), unicast4(PEER4), advert(&v3_v4())),
        accepted(
            "v3 IPv6 unicast from a peer, any hop limit",
            unicast(v3_v6(), PEER6.into()),
            unicast6(PEER6),
            advert(&v3_v6()),
        ),
        accepted(
            "v3 ignores a configured password, as keepalived",
            Filter { auth: Auth::pass("secret"), ..v3_v4() },
            ip4,
            advert(&v3_v4()),
        ),
        accepted(
            "the address list in another order",
            filter(Version::V2, Addresses::V4(vec![VIP4, Ipv4Addr::new(10, 0, 0, 101)])),
            ip4,
            Advertisement { addresses: Addresses::V4(vec![Ipv4Addr::new(10, 0, 0, 101), VIP4]), ..advert(&v2()) },
        ),
        Case {
            name: "another VRID: counted apart, before any other check",
            filter: unicast(v2(), src4),
            ip: unicast4(STRANGER4),
            payload: wire(&Advertisement { vrid: 52, ..advert(&v2()) }, unicast4(STRANGER4)),
            want: Err(Reject::OtherVrid { vrid: 52 }),
            counter: None,
        },
        Case {
            name: "unicast from a stranger",
            filter: unicast(v3_v4(), src4),
            ip: unicast4(STRANGER4),
            payload: wire(&advert(&v3_v4()), unicast4(STRANGER4)),
            want: Err(Reject::UnknownPeer { src: stranger4 }),
            counter: Some(Reason::UnknownPeer),
        },
        Case {
            name: "multicast IPv4 with TTL 254: routed, or forged",
            filter: v2(),
            ip: IpHeader { ttl: 254, ..ip4 },
            payload: v2_bytes.clone(),
            want: Err(Reject::BadTtl { src: src4, ttl: 254 }),
            counter: Some(Reason::BadTtl),
        },
        Case {
            name: "multicast IPv6 with hop limit 1",
            filter: v3_v6(),
            ip: IpHeader { ttl: 1, ..multicast6(PEER6) },
            payload: wire(&advert(&v3_v6()), multicast6(PEER6)),
            want: Err(Reject::BadTtl { src: PEER6.into(), ttl: 1 }),
            counter: Some(Reason::BadTtl),
        },
        Case {
            name: "source and destination of different families",
            filter: v2(),
            ip: IpHeader { dst: MULTICAST_V6.into(), ..ip4 },
            payload: v2_bytes.clone(),
            want: Err(Reject::MixedFamilies { src: src4, dst: MULTICAST_V6.into() }),
            counter: None,
        },
        Case {
            name: "one byte: too short to carry a VRID",
            filter: v2(),
            ip: ip4,
            payload: vec![0x21],
            want: decode(DecodeError::TooShort { len: 1, min: 8 }),
            counter: Some(Reason::BadLength),
        },
        Case {
            name: "longer than its address count says",
            filter: v2(),
            ip: ip4,
            payload: [&v2_bytes[..], &[0; 4]].concat(),
            want: decode(DecodeError::LengthMismatch { count: 1, expected: 20, actual: 24 }),
            counter: Some(Reason::BadLength),
        },
        Case {
            name: "version 4 on the wire",
            filter: v2(),
            ip: ip4,
            payload: [&[0x41][..], &v2_bytes[1..]].concat(),
            want: decode(DecodeError::BadVersion { version: 4 }),
            counter: Some(Reason::BadVersion),
        },
        Case {
            name: "v2 over IPv6",
            filter: v3_v6(),
            ip: multicast6(PEER6),
            payload: v2_bytes.clone(),
            want: Err(Reject::Decode { src: PEER6.into(), error: DecodeError::V2OverIpv6 }),
            counter: Some(Reason::BadVersion),
        },
        Case {
            name: "bad checksum",
            filter: v2(),
            ip: ip4,
            payload: {
                let mut b = v2_bytes.clone();
                b[CHECKSUM_OFFSET] ^= 0xff;
                b
            },
            want: decode(DecodeError::BadChecksum {
                expected: u16::from_be_bytes([v2_bytes[CHECKSUM_OFFSET], v2_bytes[CHECKSUM_OFFSET + 1]]),
                actual: u16::from_be_bytes([v2_bytes[CHECKSUM_OFFSET] ^ 0xff, v2_bytes[CHECKSUM_OFFSET + 1]]),
            }),
            counter: Some(Reason::BadChecksum),
        },
        Case {
            name: "not an advertisement (type 2)",
            filter: v2(),
            ip: ip4,
            payload: v2_patched(&v2_advert, 0, 0x22),
            want: decode(DecodeError::BadType { kind: 2 }),
            counter: Some(Reason::Malformed),
        },
        Case {
            name: "interval 0",
            filter: v2(),
            ip: ip4,
            payload: v2_patched(&v2_advert, 5, 0),
            want: decode(DecodeError::ZeroInterval),
            counter: Some(Reason::Malformed),
        },
        Case {
            name: "a v3 advert to a v2 instance",
            filter: v2(),
            ip: ip4,
            payload: wire(&advert(&v3_v4()), ip4),
            want: Err(Reject::OtherVersion { src: src4, theirs: Version::V3, ours: Version::V2 }),
            counter: Some(Reason::BadVersion),
        },
        Case {
            name: "a v2 advert to a v3 instance",
            filter: v3_v4(),
            ip: ip4,
            payload: v2_bytes.clone(),
            want: Err(Reject::OtherVersion { src: src4, theirs: Version::V2, ours: Version::V3 }),
            counter: Some(Reason::BadVersion),
        },
        Case {
            name: "unknown authentication type",
            filter: v2(),
            ip: ip4,
            payload: v2_patched(&v2_advert, 4, 2),
            want: decode(DecodeError::UnknownAuthType { auth_type: 2 }),
            counter: Some(Reason::BadAuth),
        },
        Case {
            name: "no password where one is configured",
            filter: v2_pass(),
            ip: ip4,
            payload: v2_bytes.clone(),
            want: check(DecodeError::AuthTypeMismatch { expected: 1, actual: 0 }),
            counter: Some(Reason::BadAuth),
        },
        Case {
            name: "another password",
            filter: v2_pass(),
            ip: ip4,
            payload: wire(&Advertisement { auth: Auth::pass("guess"), ..advert(&v2()) }, ip4),
            want: check(DecodeError::BadPassword),
            counter: Some(Reason::BadAuth),
        },
        Case {
            name: "another address list",
            filter: v2(),
            ip: ip4,
            payload: wire(&Advertisement { addresses: Addresses::V4(vec![OURS4]), ..advert(&v2()) }, ip4),
            want: check(DecodeError::AddressMismatch { ours: vec![VIP4.into()], theirs: vec![OURS4.into()] }),
            counter: Some(Reason::AddressMismatch),
        },
        Case {
            name: "a list one address short",
            filter: v3_v6(),
            ip: multicast6(PEER6),
            payload: wire(&Advertisement { addresses: Addresses::V6(vec![]), ..advert(&v3_v6()) }, multicast6(PEER6)),
            want: Err(Reject::Check {
                src: PEER6.into(),
                vrid: VRID,
                error: DecodeError::AddressMismatch { ours: vec![VIP6.into()], theirs: vec![] },
            }),
            counter: Some(Reason::AddressMismatch),
        },
    ]
}

#[test]
fn accept_table() {
    for c in cases() {
        let got = accept(&c.filter, &c.ip, &c.payload);
        assert_eq!(got, c.want, "{}", c.name);
        assert_eq!(got.err().and_then(|r| r.reason()), c.counter, "{}: counter", c.name);
    }
}

#[test]
fn every_reason_has_a_case() {
    let cases = cases();
    for reason in Reason::ALL {
        assert!(cases.iter().any(|c| c.counter == Some(reason)), "no case for {reason:?}");
    }
}

#[test]
fn log_messages() {
    let src: IpAddr = PEER4.into();
    let messages = [
        (Reject::UnknownPeer { src }, "advert from 10.0.0.2, which is not a unicast peer"),
        (Reject::BadTtl { src, ttl: 64 }, "advert from 10.0.0.2 with TTL 64 (must be 255)"),
        (
            Reject::OtherVersion { src, theirs: Version::V3, ours: Version::V2 },
            "VRRPv3 advert from 10.0.0.2, but this instance runs VRRPv2",
        ),
        (
            Reject::Check { src, vrid: VRID, error: DecodeError::BadPassword },
            "advert from 10.0.0.2 (VRID 51): authentication password does not match",
        ),
        (
            Reject::Decode { src, error: DecodeError::ZeroInterval },
            "advert from 10.0.0.2: advertisement interval 0 is invalid",
        ),
    ];
    for (reject, message) in messages {
        assert_eq!(reject.to_string(), message);
    }
}

#[test]
fn counted_by_reason() {
    let mut r = Rejected::default();
    for (i, reason) in Reason::ALL.into_iter().enumerate() {
        for _ in 0..=i {
            r.add(reason);
        }
    }
    assert_eq!(
        r.by_reason(),
        [
            ("bad_ttl", 1),
            ("bad_version", 2),
            ("bad_length", 3),
            ("bad_checksum", 4),
            ("malformed", 5),
            ("bad_auth", 6),
            ("address_mismatch", 7),
            ("unknown_peer", 8),
        ]
    );
    assert_eq!((r.bad_ttl, r.unknown_peer), (1, 8));
    assert_eq!(r.total(), 36);
}

#[test]
fn authentication_refusals_counted_as_keepalived_splits_them() {
    let src = "10.0.0.2".parse().unwrap();
    let mut r = Rejected::default();
    let check = |error| Reject::Check { src, vrid: 51, error };
    assert_eq!(r.count(&check(DecodeError::AuthTypeMismatch { expected: 1, actual: 0 })), Some(Reason::BadAuth));
    r.count(&check(DecodeError::BadPassword));
    r.count(&check(DecodeError::BadPassword));
    r.count(&Reject::Decode { src, error: DecodeError::UnknownAuthType { auth_type: 9 } });
    assert_eq!(r.count(&Reject::OtherVrid { vrid: 7 }), None, "not a refusal of ours");
    r.count(&Reject::BadTtl { src, ttl: 1 });
    assert_eq!((r.bad_auth, r.auth_mismatch, r.auth_invalid, r.bad_ttl), (4, 1, 1, 1));
}
