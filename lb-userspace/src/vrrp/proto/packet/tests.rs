use super::*;

fn v4(src: [u8; 4], dst: Ipv4Addr) -> PseudoHeader {
    PseudoHeader::V4 { src: Ipv4Addr::from(src), dst }
}

/// An independent checksum for cross-checking: sum the concatenation as
/// 16-bit words, fold, complement. Deliberately naive.
fn reference_checksum(parts: &[&[u8]]) -> u16 {
    let mut all: Vec<u8> = parts.concat();
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut sum: u32 = all.chunks(2).map(|w| u32::from(w[0]) << 8 | u32::from(w[1])).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn zero_checksum(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[CHECKSUM_OFFSET] = 0;
    b[CHECKSUM_OFFSET + 1] = 0;
    b
}

fn ipv4_pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    [&src.octets()[..], &dst.octets(), &[0, IP_PROTO_VRRP], &(len as u16).to_be_bytes()].concat()
}

fn ipv6_pseudo(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    [&src.octets()[..], &dst.octets(), &(len as u32).to_be_bytes(), &[0, 0, 0, IP_PROTO_VRRP]].concat()
}

/// Captured from keepalived 2.2.7: priority 100, VRID 51, VIP 10.203.0.100, no auth, 1 s.
const KEEPALIVED_V2: [u8; 20] = [
    0x21, 0x33, 0x64, 0x01, 0x00, 0x01, 0x6f, 0x9b, 0x0a, 0xcb, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00,
];

/// The operators' `auth_type PASS` / `auth_pass 571f97b2`, VRID 167, VIP
/// 172.18.67.33. Checksum from the reference implementation below.
const V2_PASS: [u8; 20] = [
    0x21, 0xa7, 0x64, 0x01, 0x01, 0x01, 0x88, 0x1b, 0xac, 0x12, 0x43, 0x21, b'5', b'7', b'1', b'f', b'9', b'7', b'b',
    b'2',
];

/// v3 over IPv4 as keepalived 2.2.7 would send the captured instance at
/// 1 s, from 10.203.0.1 to 224.0.0.18. The checksum by hand, 16-bit words:
///
/// ```text
/// pseudo-header: 0acb + 0001 (src) + e000 + 0012 (dst) + 0070 (0, 112) + 000c (len 12) = eb5a
/// message:       3133 + 6401 + 0064 + (checksum skipped) + 0acb + 0064             = a0c7
/// eb5a + a0c7 = 1_8c21 -> fold 8c21 + 1 = 8c22 -> complement 73dd
/// without the pseudo-header (RFC 9568): !a0c7 = 5f38
/// ```
const V3_IPV4: [u8; 12] = [0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x73, 0xdd, 0x0a, 0xcb, 0x00, 0x64];
const V3_IPV4_SRC: [u8; 4] = [10, 203, 0, 1];

/// v3 over IPv6, VRID 1, priority 200, 1 s, VIPs fe80::1 (link-local first)
/// and 2001:db8::100, from fe80::a8bb:ccff:fedd:eeff to ff02::12.
const V3_IPV6: [u8; 40] = [
    0x31, 0x01, 0xc8, 0x02, 0x00, 0x64, 0x77, 0x95, //
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
];
const V3_IPV6_SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xa8bb, 0xccff, 0xfedd, 0xeeff);

fn v6_ph() -> PseudoHeader {
    PseudoHeader::V6 { src: V3_IPV6_SRC, dst: MULTICAST_V6 }
}

fn golden() -> Vec<(&'static str, &'static [u8], PseudoHeader)> {
    vec![
        ("keepalived v2", &KEEPALIVED_V2[..], v4([10, 203, 0, 2], MULTICAST_V4)),
        ("v2 PASS", &V2_PASS[..], v4([172, 18, 67, 13], MULTICAST_V4)),
        ("v3 IPv4", &V3_IPV4[..], v4(V3_IPV4_SRC, MULTICAST_V4)),
        ("v3 IPv6", &V3_IPV6[..], v6_ph()),
    ]
}

#[test]
fn keepalived_v2_capture_round_trips() {
    let ph = v4([10, 203, 0, 2], MULTICAST_V4);
    let (adv, kind) = Advertisement::decode(&KEEPALIVED_V2, &ph).unwrap();
    assert_eq!(
        adv,
        Advertisement {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval: Centiseconds::from_secs(1),
            auth: Auth::None,
            addresses: Addresses::V4(vec![Ipv4Addr::new(10, 203, 0, 100)]),
        }
    );
    assert_eq!(kind, ChecksumKind::MessageOnly);
    assert_eq!(adv.encode(&ph, kind).unwrap(), KEEPALIVED_V2);
    // v2 ignores the pseudo-header: the source must not matter.
    assert!(Advertisement::decode(&KEEPALIVED_V2, &v4([192, 0, 2, 9], Ipv4Addr::new(192, 0, 2, 1))).is_ok());
    assert_eq!(reference_checksum(&[&zero_checksum(&KEEPALIVED_V2)]), 0x6f9b);
}

#[test]
fn v2_pass_auth() {
    let ph = v4([172, 18, 67, 13], MULTICAST_V4);
    assert_eq!(reference_checksum(&[&zero_checksum(&V2_PASS)]), 0x881b);
    let adv = Advertisement {
        version: Version::V2,
        vrid: 167,
        priority: 100,
        interval: Centiseconds::DEFAULT_INTERVAL,
        auth: Auth::pass("571f97b2"),
        addresses: Addresses::V4(vec![Ipv4Addr::new(172, 18, 67, 33)]),
    };
    assert_eq!(adv.encode(&ph, ChecksumKind::default()).unwrap(), V2_PASS);
    let (decoded, _) = Advertisement::decode(&V2_PASS, &ph).unwrap();
    assert_eq!(decoded, adv);
    assert_eq!(decoded.check_auth(&Auth::pass("571f97b2")), Ok(()));
    // keepalived only compares the first 8 characters.
    assert_eq!(decoded.check_auth(&Auth::pass("571f97b2-and-more")), Ok(()));
    assert_eq!(decoded.check_auth(&Auth::pass("1111")), Err(DecodeError::BadPassword));
    assert_eq!(decoded.check_auth(&Auth::None), Err(DecodeError::AuthTypeMismatch { expected: 0, actual: 1 }));
    let (plain, _) = Advertisement::decode(&KEEPALIVED_V2, &ph).unwrap();
    assert_eq!(plain.check_auth(&Auth::pass("x")), Err(DecodeError::AuthTypeMismatch { expected: 1, actual: 0 }));
    assert_eq!(format!("{:?}", Auth::pass("secret")), "Pass(<redacted>)");
}

#[test]
fn pass_is_padded_and_truncated_to_eight_bytes() {
    assert_eq!(Auth::pass("1111"), Auth::Pass(*b"1111\0\0\0\0"));
    assert_eq!(Auth::pass("secretpassword"), Auth::Pass(*b"secretpa"));
    assert_eq!(Auth::pass(""), Auth::Pass([0; AUTH_LEN]));

    let ph = v4([10, 0, 0, 1], MULTICAST_V4);
    let adv = Advertisement {
        version: Version::V2,
        vrid: 1,
        priority: 150,
        interval: Centiseconds::from_secs(3),
        auth: Auth::pass("1111"),
        addresses: Addresses::V4(vec![Ipv4Addr::new(192, 0, 0, 1)]),
    };
    let bytes = adv.encode(&ph, ChecksumKind::default()).unwrap();
    assert_eq!(&bytes[..6], &[0x21, 1, 150, 1, AUTH_TYPE_PASS, 3]);
    assert_eq!(&bytes[12..], b"1111\0\0\0\0");
    assert_eq!(
        u16::from_be_bytes([bytes[6], bytes[7]]),
        reference_checksum(&[&zero_checksum(&bytes)]),
        "v2 sums the message alone"
    );
}

#[test]
fn v3_ipv4_uses_keepalived_pseudo_header_by_default() {
    let ph = v4(V3_IPV4_SRC, MULTICAST_V4);
    let adv = Advertisement {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval: Centiseconds(100),
        auth: Auth::None,
        addresses: Addresses::V4(vec![Ipv4Addr::new(10, 203, 0, 100)]),
    };
    let pseudo = ipv4_pseudo(Ipv4Addr::from(V3_IPV4_SRC), MULTICAST_V4, V3_IPV4.len());
    assert_eq!(reference_checksum(&[&pseudo, &zero_checksum(&V3_IPV4)]), 0x73dd);
    assert_eq!(reference_checksum(&[&zero_checksum(&V3_IPV4)]), 0x5f38);

    assert_eq!(adv.encode(&ph, ChecksumKind::default()).unwrap(), V3_IPV4);
    assert_eq!(Advertisement::decode(&V3_IPV4, &ph).unwrap(), (adv.clone(), ChecksumKind::PseudoHeader));

    // RFC 9568 form: accepted on receive, sendable on request.
    let rfc9568 = adv.encode(&ph, ChecksumKind::MessageOnly).unwrap();
    assert_eq!(&rfc9568[6..8], &[0x5f, 0x38]);
    assert_eq!(Advertisement::decode(&rfc9568, &ph).unwrap(), (adv.clone(), ChecksumKind::MessageOnly));

    // Old keepalived unicast: 224.0.0.18 in the pseudo-header although sent to a peer.
    let unicast = v4(V3_IPV4_SRC, Ipv4Addr::new(10, 203, 0, 2));
    let legacy = adv.encode(&unicast, ChecksumKind::PseudoHeaderMulticastDst).unwrap();
    assert_eq!(legacy, V3_IPV4, "same sum as the multicast packet");
    assert_eq!(
        Advertisement::decode(&legacy, &unicast).unwrap(),
        (adv.clone(), ChecksumKind::PseudoHeaderMulticastDst)
    );
    let proper = adv.encode(&unicast, ChecksumKind::PseudoHeader).unwrap();
    let pseudo = ipv4_pseudo(Ipv4Addr::from(V3_IPV4_SRC), Ipv4Addr::new(10, 203, 0, 2), proper.len());
    assert_eq!(u16::from_be_bytes([proper[6], proper[7]]), reference_checksum(&[&pseudo, &zero_checksum(&proper)]));
    assert_eq!(Advertisement::decode(&proper, &unicast).unwrap().1, ChecksumKind::PseudoHeader);

    // The pseudo-header binds the source: the same bytes from elsewhere fail.
    let elsewhere = v4([10, 203, 0, 9], MULTICAST_V4);
    assert!(matches!(Advertisement::decode(&V3_IPV4, &elsewhere), Err(DecodeError::BadChecksum { .. })));
}

#[test]
fn v3_ipv6() {
    let ph = v6_ph();
    let pseudo = ipv6_pseudo(V3_IPV6_SRC, MULTICAST_V6, V3_IPV6.len());
    assert_eq!(reference_checksum(&[&pseudo, &zero_checksum(&V3_IPV6)]), 0x7795);
    let adv = Advertisement {
        version: Version::V3,
        vrid: 1,
        priority: 200,
        interval: Centiseconds(100),
        auth: Auth::None,
        addresses: Addresses::V6(vec![
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100),
        ]),
    };
    assert_eq!(adv.encode(&ph, ChecksumKind::default()).unwrap(), V3_IPV6);
    // IPv6 has one form only; the requested one is irrelevant.
    assert_eq!(adv.encode(&ph, ChecksumKind::MessageOnly).unwrap(), V3_IPV6);
    assert_eq!(Advertisement::decode(&V3_IPV6, &ph).unwrap(), (adv, ChecksumKind::PseudoHeader));
    let mut no_pseudo = V3_IPV6;
    no_pseudo[6..8].copy_from_slice(&reference_checksum(&[&zero_checksum(&V3_IPV6)]).to_be_bytes());
    assert!(matches!(Advertisement::decode(&no_pseudo, &ph), Err(DecodeError::BadChecksum { expected: 0x7795, .. })));
}

#[test]
fn truncated_at_every_length() {
    for (name, bytes, ph) in golden() {
        for len in 0..bytes.len() {
            let err = Advertisement::decode(&bytes[..len], &ph).unwrap_err();
            let want = if len < HEADER_LEN {
                DecodeError::TooShort { len, min: HEADER_LEN }
            } else {
                DecodeError::LengthMismatch { count: bytes[3], expected: bytes.len(), actual: len }
            };
            assert_eq!(err, want, "{name} cut to {len}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(Advertisement::decode(&long, &ph), Err(DecodeError::LengthMismatch { .. })), "{name}");
    }
}

/// Recomputes the checksum (keepalived's form for v3), so a test can change
/// a field and reach the check behind the checksum.
fn fix_checksum(bytes: &mut [u8], ph: &PseudoHeader) {
    let pseudo = match (bytes[0] >> 4, ph) {
        (3, &PseudoHeader::V4 { src, dst }) => ipv4_pseudo(src, dst, bytes.len()),
        (3, &PseudoHeader::V6 { src, dst }) => ipv6_pseudo(src, dst, bytes.len()),
        _ => vec![],
    };
    let sum = reference_checksum(&[&pseudo, &zero_checksum(bytes)]);
    bytes[6..8].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn rejects_malformed() {
    let ph = v4([10, 203, 0, 2], MULTICAST_V4);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = KEEPALIVED_V2.to_vec();
        f(&mut b);
        fix_checksum(&mut b, &ph);
        Advertisement::decode(&b, &ph)
    };
    assert_eq!(with(&|b| b[0] = 0x11), Err(DecodeError::BadVersion { version: 1 }));
    assert_eq!(with(&|b| b[0] = 0x41), Err(DecodeError::BadVersion { version: 4 }));
    assert_eq!(with(&|b| b[0] = 0x22), Err(DecodeError::BadType { kind: 2 }));
    assert_eq!(with(&|b| b[1] = 0), Err(DecodeError::ZeroVrid));
    assert_eq!(with(&|b| b[5] = 0), Err(DecodeError::ZeroInterval));
    assert_eq!(with(&|b| b[4] = 2), Err(DecodeError::UnknownAuthType { auth_type: 2 }));
    assert_eq!(with(&|b| b[3] = 2), Err(DecodeError::LengthMismatch { count: 2, expected: 24, actual: 20 }));
    assert_eq!(with(&|b| b[3] = 0), Err(DecodeError::LengthMismatch { count: 0, expected: 16, actual: 20 }));
    // A v3 interval of 0 hides in the low 12 bits.
    let mut b = V3_IPV4.to_vec();
    b[4..6].copy_from_slice(&[0xf0, 0x00]);
    fix_checksum(&mut b, &v4(V3_IPV4_SRC, MULTICAST_V4));
    assert_eq!(Advertisement::decode(&b, &v4(V3_IPV4_SRC, MULTICAST_V4)), Err(DecodeError::ZeroInterval));

    let mut bad = KEEPALIVED_V2;
    bad[7] ^= 1;
    assert_eq!(Advertisement::decode(&bad, &ph), Err(DecodeError::BadChecksum { expected: 0x6f9b, actual: 0x6f9a }));
    let mut bad = KEEPALIVED_V2;
    bad[2] = 101; // the priority changed in flight: its word grows by 0x100, the sum shrinks by it
    assert_eq!(Advertisement::decode(&bad, &ph), Err(DecodeError::BadChecksum { expected: 0x6e9b, actual: 0x6f9b }));
    let mut bad = V3_IPV4;
    bad[6] = 0;
    assert_eq!(
        Advertisement::decode(&bad, &v4(V3_IPV4_SRC, MULTICAST_V4)),
        Err(DecodeError::BadChecksum { expected: 0x73dd, actual: 0x00dd }),
        "the expected value is keepalived's form"
    );
    assert_eq!(Advertisement::decode(&KEEPALIVED_V2, &v6_ph()), Err(DecodeError::V2OverIpv6));
}

#[test]
fn ignores_reserved_fields() {
    // RFC 5798 section 5.2.6: reserved bits are ignored on receipt, and sent as zero.
    let ph = v4(V3_IPV4_SRC, MULTICAST_V4);
    let mut b = V3_IPV4.to_vec();
    b[4] |= 0xa0;
    fix_checksum(&mut b, &ph);
    let (adv, kind) = Advertisement::decode(&b, &ph).unwrap();
    assert_eq!(adv.interval, Centiseconds(100));
    assert_eq!(adv.encode(&ph, kind).unwrap(), V3_IPV4);
    // RFC 3768 section 5.3.10: no-auth data is ignored too.
    let ph = v4([10, 203, 0, 2], MULTICAST_V4);
    let mut b = KEEPALIVED_V2.to_vec();
    b[19] = 0x55;
    fix_checksum(&mut b, &ph);
    let (adv, kind) = Advertisement::decode(&b, &ph).unwrap();
    assert_eq!(adv.auth, Auth::None);
    assert_eq!(adv.encode(&ph, kind).unwrap(), KEEPALIVED_V2);
}

#[test]
fn address_list_check() {
    let ph = v4([10, 203, 0, 2], MULTICAST_V4);
    let (adv, _) = Advertisement::decode(&KEEPALIVED_V2, &ph).unwrap();
    let vip = Ipv4Addr::new(10, 203, 0, 100);
    let other = Ipv4Addr::new(10, 203, 0, 101);
    assert_eq!(adv.check_addresses(&Addresses::V4(vec![vip])), Ok(()));
    let err = adv.check_addresses(&Addresses::V4(vec![vip, other])).unwrap_err();
    assert_eq!(err.to_string(), "advertised addresses [10.203.0.100] differ from ours [10.203.0.100, 10.203.0.101]");
    assert!(adv.check_addresses(&Addresses::V4(vec![other])).is_err());
    let two = Advertisement { addresses: Addresses::V4(vec![other, vip]), ..adv };
    assert_eq!(two.check_addresses(&Addresses::V4(vec![vip, other])), Ok(()), "order does not matter");
}

#[test]
fn encode_rejects_what_the_wire_cannot_carry() {
    let ph = v4([10, 0, 0, 1], MULTICAST_V4);
    let base = Advertisement {
        version: Version::V2,
        vrid: 1,
        priority: 100,
        interval: Centiseconds::DEFAULT_INTERVAL,
        auth: Auth::None,
        addresses: Addresses::V4(vec![Ipv4Addr::new(10, 0, 0, 100)]),
    };
    let enc = |a: Advertisement, ph: &PseudoHeader| a.encode(ph, ChecksumKind::default());
    assert_eq!(enc(Advertisement { vrid: 0, ..base.clone() }, &ph), Err(EncodeError::ZeroVrid));
    assert_eq!(
        enc(Advertisement { interval: Centiseconds(150), ..base.clone() }, &ph),
        Err(EncodeError::IntervalNotWholeSeconds { interval: Centiseconds(150) })
    );
    assert!(matches!(
        enc(Advertisement { interval: Centiseconds(50), ..base.clone() }, &ph),
        Err(EncodeError::IntervalOutOfRange { .. })
    ));
    assert!(matches!(
        enc(Advertisement { interval: Centiseconds(4096), version: Version::V3, ..base.clone() }, &ph),
        Err(EncodeError::IntervalOutOfRange { .. })
    ));
    assert_eq!(
        enc(Advertisement { version: Version::V3, auth: Auth::pass("x"), ..base.clone() }, &ph),
        Err(EncodeError::AuthInV3 { version: Version::V3 })
    );
    assert_eq!(
        enc(Advertisement { addresses: Addresses::V4(vec![Ipv4Addr::LOCALHOST; 256]), ..base.clone() }, &ph),
        Err(EncodeError::TooManyAddresses { count: 256 })
    );
    assert_eq!(enc(base.clone(), &v6_ph()), Err(EncodeError::FamilyMismatch));
    let v6 = Addresses::V6(vec![Ipv6Addr::LOCALHOST]);
    assert_eq!(enc(Advertisement { addresses: v6, ..base.clone() }, &v6_ph()), Err(EncodeError::V2OverIpv6));
    assert!(enc(Advertisement { interval: MAX_V2_INTERVAL, ..base.clone() }, &ph).is_ok());
    let max_v3 = Advertisement { version: Version::V3, interval: MAX_V3_INTERVAL, ..base };
    let bytes = enc(max_v3, &ph).unwrap();
    assert_eq!(&bytes[4..6], &[0x0f, 0xff]);
}

#[test]
fn centiseconds() {
    assert_eq!(Centiseconds::from_secs(1), Centiseconds(100));
    assert_eq!(Centiseconds(100).whole_secs(), Some(1));
    assert_eq!(Centiseconds(150).whole_secs(), None);
    assert_eq!(Centiseconds(10).as_duration(), Duration::from_millis(100));
    assert_eq!(Centiseconds(4095).to_string(), "40.95s");
    assert_eq!(MAX_V2_INTERVAL.whole_secs(), Some(255));
}

/// A fixed-seed LCG (Knuth's MMIX constants): reproducible, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Random bytes mostly shaped like advertisements (right length, valid
/// checksum in some form), so decoding gets past the early checks often
/// enough to exercise everything behind them.
fn arbitrary(rng: &mut Lcg, ph: &PseudoHeader) -> Vec<u8> {
    if rng.below(4) == 0 {
        let len = rng.below(64) as usize;
        return (0..len).map(|_| rng.byte()).collect();
    }
    let version = [2, 3, 3, rng.byte() >> 4][rng.below(4) as usize];
    let kind = if rng.below(8) == 0 { rng.byte() & 0x0f } else { TYPE_ADVERTISEMENT };
    let count = if rng.below(16) == 0 { rng.byte() } else { rng.below(4) as u8 };
    let addr_len = if ph.is_ipv6() { IPV6_ADDR_LEN } else { IPV4_ADDR_LEN };
    let auth_len = if version == 2 { AUTH_LEN } else { 0 };
    let mut len = HEADER_LEN + usize::from(count) * addr_len + auth_len;
    if rng.below(8) == 0 {
        len = (len + rng.below(5) as usize).saturating_sub(2);
    }
    let mut b: Vec<u8> = (0..len.max(HEADER_LEN)).map(|_| rng.byte()).collect();
    b[0] = version << 4 | kind;
    b[3] = count;
    if version == 2 && rng.below(2) == 0 {
        b[4] = rng.below(3) as u8; // auth types 0, 1 and the unsupported 2
    }
    if version == 2 && rng.below(2) == 0 {
        // Mostly zero auth data under type 0, as real senders do.
        let n = b.len();
        b[n.saturating_sub(AUTH_LEN)..].fill(0);
    }
    if version == 3 && rng.below(2) == 0 {
        b[4] &= 0x0f;
    }
    let pseudo = match (version, ph, rng.below(3)) {
        (3, &PseudoHeader::V4 { src, dst }, 0) => ipv4_pseudo(src, dst, b.len()),
        (3, &PseudoHeader::V4 { src, .. }, 1) => ipv4_pseudo(src, MULTICAST_V4, b.len()),
        (3, &PseudoHeader::V6 { src, dst }, _) => ipv6_pseudo(src, dst, b.len()),
        _ => vec![],
    };
    let sum = reference_checksum(&[&pseudo, &zero_checksum(&b)]);
    b[6..8].copy_from_slice(&sum.to_be_bytes());
    if rng.below(8) == 0 {
        let i = rng.below(b.len() as u32) as usize;
        b[i] ^= 1 << rng.below(8);
    }
    b
}

/// Decoding never panics on anything, and whatever decodes re-encodes to
/// the same bytes: exactly, unless it had bits set in fields that are
/// ignored on receipt, in which case it matches with those (and so the
/// checksum) aside.
#[test]
fn fuzz_decode_never_panics_and_round_trips() {
    let headers = [
        v4([10, 0, 0, 1], MULTICAST_V4),
        v4([10, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 2)),
        PseudoHeader::V6 { src: V3_IPV6_SRC, dst: MULTICAST_V6 },
    ];
    let mut rng = Lcg(0x5eed_0112);
    let mut decoded = 0;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    const ITERATIONS: usize = 100_000;
    for _ in 0..ITERATIONS {
        let ph = headers[rng.below(headers.len() as u32) as usize];
        let bytes = arbitrary(&mut rng, &ph);
        let (adv, kind) = match Advertisement::decode(&bytes, &ph) {
            Ok(ok) => ok,
            Err(e) => {
                let name = format!("{e:?}");
                *errors.entry(name.split([' ', '{']).next().unwrap().to_owned()).or_default() += 1;
                continue;
            }
        };
        decoded += 1;
        let encoded = adv.encode(&ph, kind).unwrap_or_else(|e| panic!("{adv:?} decoded but won't encode: {e}"));
        assert_eq!(encoded.len(), bytes.len());
        let mut ignored = vec![];
        match adv.version {
            Version::V3 => ignored.push((4, 0xf0)),
            Version::V2 if adv.auth == Auth::None => {
                ignored.extend((bytes.len() - AUTH_LEN..bytes.len()).map(|i| (i, 0xff)))
            }
            Version::V2 => {}
        }
        if ignored.iter().all(|&(i, mask)| bytes[i] & mask == 0) {
            assert_eq!(encoded, bytes, "{adv:?}");
        } else {
            let mask = |b: &[u8]| {
                let mut b = zero_checksum(b);
                ignored.iter().for_each(|&(i, m)| b[i] &= !m);
                b
            };
            assert_eq!(mask(&encoded), mask(&bytes), "{adv:?}");
            assert_eq!(Advertisement::decode(&encoded, &ph).unwrap().0, adv);
        }
    }
    // Guard against a generator that never gets past the first checks.
    assert!(decoded > ITERATIONS / 5, "only {decoded} decoded; errors {errors:?}");
    for variant in [
        "TooShort",
        "BadVersion",
        "LengthMismatch",
        "BadChecksum",
        "BadType",
        "ZeroVrid",
        "UnknownAuthType",
        "V2OverIpv6",
    ] {
        assert!(errors.contains_key(variant), "fuzzing never hit {variant}: {errors:?}");
    }
}
