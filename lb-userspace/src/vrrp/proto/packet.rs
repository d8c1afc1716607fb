//! VRRP advertisements on the wire: version 2 (RFC 3768, IPv4 only) and
//! version 3 (RFC 5798, IPv4 and IPv6), as keepalived 2.2.7 sends them.
//!
//! Only the VRRP message is handled here, never the IP header: the receive
//! checks ([`super::receive`]) check TTL / hop limit 255 (RFC 5798 section
//! 5.1, RFC 3768 section 5.2) and hand over the IP source and destination
//! as a [`PseudoHeader`], because v3 checksums cover them and because the
//! address family decides the address width.
//!
//! Intervals are [`Centiseconds`] in both versions so the state machine has a
//! single unit; a v2 packet can only carry whole seconds, which
//! [`Advertisement::encode`] enforces.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

/// IP protocol number of VRRP (RFC 5798 section 5.1).
pub const IP_PROTO_VRRP: u8 = 112;
/// TTL / hop limit of every advertisement; multicast receivers drop anything else
/// (RFC 5798 section 5.1).
pub const TTL: u8 = 255;
/// Where advertisements go unless unicast peers are configured (RFC 5798 section 5.1).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 counterpart of [`MULTICAST_V4`] (RFC 5798 section 5.1).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The fixed part of every advertisement: version/type, VRID, priority,
/// count, two version-specific bytes, checksum.
pub const HEADER_LEN: usize = 8;
/// v2 only: the authentication data trailing the addresses (RFC 3768 section 5.3.10).
pub const AUTH_LEN: usize = 8;
/// Width of one address in the list, IPv4.
pub const IPV4_ADDR_LEN: usize = 4;
/// Width of one address in the list, IPv6.
pub const IPV6_ADDR_LEN: usize = 16;
/// The count field is one byte (RFC 5798 section 5.2.5).
pub const MAX_ADDRESSES: usize = u8::MAX as usize;
/// Byte offset of the checksum in the header (RFC 5798 section 5.2.8).
pub const CHECKSUM_OFFSET: usize = 6;
/// Source, destination, zero, protocol, length.
pub const IPV4_PSEUDO_HEADER_LEN: usize = 12;
/// Source, destination, 32-bit length, three zero bytes, next header (RFC 8200 section 8.1).
pub const IPV6_PSEUDO_HEADER_LEN: usize = 40;

/// The only packet type either version defines (RFC 5798 section 5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// v2 authentication type: none (RFC 3768 section 5.3.6).
pub const AUTH_TYPE_NONE: u8 = 0;
/// v2 authentication type 1, reserved by RFC 3768 but still keepalived's `auth_type PASS`.
pub const AUTH_TYPE_PASS: u8 = 1;

/// The address owner's priority; it starts as master at once (RFC 5798 section 5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// A master that stops sends this so that backups take over after only the skew time.
pub const PRIORITY_STOP: u8 = 0;
/// keepalived's and the RFC's default priority for backups.
pub const PRIORITY_DEFAULT: u8 = 100;

/// v3 carries the interval in 12 bits (RFC 5798 section 5.2.7).
pub const V3_INTERVAL_MASK: u16 = 0x0fff;
/// Largest interval a v3 packet can carry: 40.95 s.
pub const MAX_V3_INTERVAL: Centiseconds = Centiseconds(V3_INTERVAL_MASK);
/// Largest interval a v2 packet can carry: the field is one byte of seconds.
pub const MAX_V2_INTERVAL: Centiseconds = Centiseconds(u8::MAX as u16 * Centiseconds::PER_SECOND);

/// VRRP protocol version (RFC 5798 section 5.2.1, RFC 3768 section 5.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in whole seconds, optional `PASS` authentication.
    V2 = 2,
    /// RFC 5798: IPv4 and IPv6, interval in centiseconds, no authentication.
    V3 = 3,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", *self as u8)
    }
}

/// An advertisement interval. One unit for both versions because v3 counts
/// in centiseconds and every v2 interval (whole seconds up to 255) fits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Centiseconds(pub u16);

impl Centiseconds {
    /// Centiseconds in a second.
    pub const PER_SECOND: u16 = 100;
    /// keepalived's and the RFCs' default `advert_int`: 1 s.
    pub const DEFAULT_INTERVAL: Self = Self(Self::PER_SECOND);

    /// `secs` whole seconds, the v2 unit.
    pub const fn from_secs(secs: u8) -> Self {
        Self(secs as u16 * Self::PER_SECOND)
    }

    /// The interval in whole seconds, if it is a whole number of them (v2 needs that).
    pub const fn whole_secs(self) -> Option<u8> {
        let secs = self.0 / Self::PER_SECOND;
        if self.0.is_multiple_of(Self::PER_SECOND) && secs <= u8::MAX as u16 { Some(secs as u8) } else { None }
    }

    /// The interval as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }
}

impl From<Centiseconds> for Duration {
    fn from(cs: Centiseconds) -> Self {
        cs.as_duration()
    }
}

impl fmt::Display for Centiseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}s", self.0 / Self::PER_SECOND, self.0 % Self::PER_SECOND)
    }
}

/// v2 authentication (RFC 3768 sections 5.3.6 and 5.3.10).
///
/// RFC 3768 reserved both authentication types, but keepalived still sends
/// `PASS` when configured, and the operators we replace use it (see
/// `auth_type PASS` in their configurations), so it is kept for interop. It
/// protects nothing: the password travels in clear. keepalived's `AH` type
/// (IP protocol 51, HMAC-MD5-96) is not supported. v3 has no authentication.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Auth type 0; the authentication data is sent as zeros and ignored on receipt.
    #[default]
    None,
    /// Auth type 1: the password, zero-padded or truncated to [`AUTH_LEN`] bytes.
    Pass([u8; AUTH_LEN]),
}

impl Auth {
    /// keepalived's `auth_pass`: only the first 8 bytes count, shorter ones are zero-padded.
    pub fn pass(password: impl AsRef<[u8]>) -> Self {
        let password = password.as_ref();
        let mut data = [0; AUTH_LEN];
        let n = password.len().min(AUTH_LEN);
        data[..n].copy_from_slice(&password[..n]);
        Self::Pass(data)
    }

    /// The wire value of the auth type field.
    pub const fn auth_type(&self) -> u8 {
        match self {
            Self::None => AUTH_TYPE_NONE,
            Self::Pass(_) => AUTH_TYPE_PASS,
        }
    }
}

/// The password is in clear on the wire, but it need not be in every log line too.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Pass(_) => f.write_str("Pass(<redacted>)"),
        }
    }
}

/// The virtual addresses listed in an advertisement; one family per packet
/// because the count field says nothing about the width (RFC 5798 section 5.2.9).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// Over IPv4, v2 or v3.
    V4(Vec<Ipv4Addr>),
    /// Over IPv6, v3 only. keepalived and RFC 5798 put the link-local VIP first.
    V6(Vec<Ipv6Addr>),
}

impl Addresses {
    /// How many addresses are listed.
    pub fn len(&self) -> usize {
        match self {
            Self::V4(a) => a.len(),
            Self::V6(a) => a.len(),
        }
    }

    /// Whether none are (keepalived allows instances without VIPs).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The addresses in wire order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (v4, v6) = match self {
            Self::V4(a) => (&a[..], &[][..]),
            Self::V6(a) => (&[][..], &a[..]),
        };
        v4.iter().copied().map(IpAddr::V4).chain(v6.iter().copied().map(IpAddr::V6))
    }

    const fn addr_len(&self) -> usize {
        match self {
            Self::V4(_) => IPV4_ADDR_LEN,
            Self::V6(_) => IPV6_ADDR_LEN,
        }
    }

    const fn is_ipv6(&self) -> bool {
        matches!(self, Self::V6(_))
    }
}

/// The IP header's source and destination: what the v3 checksum covers besides
/// the message, and which address family the message's list is in.
///
/// One family for both by construction, as in any real IP header. The v3
/// checksum (RFC 5798 section 5.2.8) prepends, over IPv4 (keepalived 2.2.7's
/// form; RFC 9568 drops it):
///
/// ```text
///  0      7 8     15 16    23 24    31
/// +--------+--------+--------+--------+
/// |          source address           |
/// +--------+--------+--------+--------+
/// |        destination address        |
/// +--------+--------+--------+--------+
/// |  zero  |  112   |   VRRP length   |
/// +--------+--------+--------+--------+
/// ```
///
/// and over IPv6 (RFC 8200 section 8.1):
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                         Source Address                        +
/// |                           (16 bytes)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                      Destination Address                      +
/// |                           (16 bytes)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Upper-Layer Packet Length                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      zero                     |  Next Header  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    /// An IPv4 header's addresses.
    V4 {
        /// Source: the sender's primary interface address.
        src: Ipv4Addr,
        /// Destination: [`MULTICAST_V4`] or a unicast peer.
        dst: Ipv4Addr,
    },
    /// An IPv6 header's addresses.
    V6 {
        /// Source: the sender's link-local address.
        src: Ipv6Addr,
        /// Destination: [`MULTICAST_V6`] or a unicast peer.
        dst: Ipv6Addr,
    },
}

impl PseudoHeader {
    /// `None` when the two addresses are of different families.
    pub const fn new(src: IpAddr, dst: IpAddr) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(Self::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(Self::V6 { src, dst }),
            _ => None,
        }
    }

    /// The IP source address, which is also the sender's primary address for tie-breaks.
    pub const fn src(&self) -> IpAddr {
        match *self {
            Self::V4 { src, .. } => IpAddr::V4(src),
            Self::V6 { src, .. } => IpAddr::V6(src),
        }
    }

    const fn is_ipv6(&self) -> bool {
        matches!(self, Self::V6 { .. })
    }
}

/// How an advertisement's checksum is computed (RFC 5798 section 5.2.8).
///
/// Only v3 over IPv4 has a choice, and it is an interop trap: RFC 5798 is
/// ambiguous, RFC 9568 says no pseudo-header, keepalived 2.2.7 always uses
/// one. Receivers accept every form; senders pick one. v2 always covers the
/// message alone and v3 over IPv6 always has the IPv6 pseudo-header, whatever
/// is asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChecksumKind {
    /// The VRRP message alone: v2 (RFC 3768 section 5.3.8), and v3 over IPv4 per
    /// RFC 9568 (keepalived 2.2.8's `v3_checksum_as_v2`).
    MessageOnly,
    /// With the IP pseudo-header: always for v3 over IPv6, and what keepalived
    /// 2.2.7 sends for v3 over IPv4 (source, destination, zero, 112, length).
    #[default]
    PseudoHeader,
    /// v3 over IPv4 with [`MULTICAST_V4`] as the pseudo-header destination even
    /// when sent unicast, as old keepalived did (its `old_unicast_checksum`).
    PseudoHeaderMulticastDst,
}

/// Why bytes are not an acceptable advertisement (RFC 5798 section 7.1, RFC 3768 section 7.1).
///
/// [`Advertisement::decode`] checks what the packet alone can tell;
/// [`Advertisement::check_auth`] and [`Advertisement::check_addresses`] check
/// it against the local instance. Every one of these means: discard and count.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {len} bytes is shorter than the {min}-byte VRRP header")]
    TooShort { len: usize, min: usize },
    #[error("unsupported VRRP version {version}")]
    BadVersion { version: u8 },
    #[error("VRRPv2 is IPv4 only, but this came over IPv6")]
    V2OverIpv6,
    #[error("{count} addresses make a {expected}-byte message, but the packet has {actual} bytes")]
    LengthMismatch { count: u8, expected: usize, actual: usize },
    #[error("bad checksum {actual:#06x}, expected {expected:#06x}")]
    BadChecksum { expected: u16, actual: u16 },
    #[error("unknown VRRP packet type {kind}")]
    BadType { kind: u8 },
    #[error("virtual router ID 0 is invalid")]
    ZeroVrid,
    #[error("advertisement interval 0 is invalid")]
    ZeroInterval,
    #[error("unsupported authentication type {auth_type}")]
    UnknownAuthType { auth_type: u8 },
    #[error("authentication type {actual} does not match the configured {expected}")]
    AuthTypeMismatch { expected: u8, actual: u8 },
    #[error("authentication password does not match")]
    BadPassword,
    /// keepalived: "ip address associated with VRID not present in MASTER advert".
    /// Both lists are named because a mismatch between peers is a common
    /// misconfiguration that is otherwise hard to spot.
    #[error("advertised addresses [{}] differ from ours [{}]", list(.theirs), list(.ours))]
    AddressMismatch { ours: Vec<IpAddr>, theirs: Vec<IpAddr> },
}

/// Why an [`Advertisement`] cannot be put on the wire: the caller built it wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("virtual router ID 0 is invalid")]
    ZeroVrid,
    #[error("{count} addresses do not fit the one-byte count (max {MAX_ADDRESSES})")]
    TooManyAddresses { count: usize },
    #[error("VRRPv2 is IPv4 only")]
    V2OverIpv6,
    #[error("the address list and the IP header are of different families")]
    FamilyMismatch,
    #[error("{version} has no authentication")]
    AuthInV3 { version: Version },
    #[error("{version} cannot carry interval {interval} (range {min}..={max})")]
    IntervalOutOfRange { version: Version, interval: Centiseconds, min: Centiseconds, max: Centiseconds },
    #[error("VRRPv2 carries whole seconds only, not {interval}")]
    IntervalNotWholeSeconds { interval: Centiseconds },
}

fn list(addrs: &[IpAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// A VRRP advertisement, either version.
///
/// RFC 3768 section 5.1 (v2; field descriptions in 5.3):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Auth Type   |   Adver Int   |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (1)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            .                                  |
/// |                            .                                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (n)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (1)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (2)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 5798 section 5.1 (v3; field descriptions in 5.2.1 to 5.2.9):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    IPv4 Fields or IPv6 Fields                 |
/// ...                                                           ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                       IPvX Address(es)                        |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// What is not here is derived or ignored: the type is always
/// [`TYPE_ADVERTISEMENT`], the count is `addresses.len()`, the checksum is
/// computed, and the v3 reserved bits and the v2 authentication data under
/// auth type 0 are sent as zeros and ignored on receipt (RFC 5798 section
/// 5.2.6, RFC 3768 section 5.3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Advertisement {
    /// RFC 5798 section 5.2.1.
    pub version: Version,
    /// Virtual router ID, 1..=255 (RFC 5798 section 5.2.3).
    pub vrid: u8,
    /// 255 = address owner, 1..=254 backups, 0 = master resigning (RFC 5798 section 5.2.4).
    pub priority: u8,
    /// v2: the Advertisement Interval, whole seconds 1..=255 on the wire (RFC
    /// 3768 section 5.3.7); v3: the Max Adver Int, 1..=4095 centiseconds (RFC
    /// 5798 section 5.2.7).
    pub interval: Centiseconds,
    /// v2 only; must be [`Auth::None`] in v3.
    pub auth: Auth,
    /// The virtual addresses (RFC 5798 section 5.2.9). Their family must be the IP header's.
    pub addresses: Addresses,
}

impl Advertisement {
    /// Size of the message on the wire.
    pub fn wire_len(&self) -> usize {
        let auth = if self.version == Version::V2 { AUTH_LEN } else { 0 };
        HEADER_LEN + self.addresses.len() * self.addresses.addr_len() + auth
    }

    /// Serializes for sending with the IP header `ph`. `checksum` matters for
    /// v3 over IPv4 only (see [`ChecksumKind`]); pass the default to match
    /// keepalived 2.2.7.
    pub fn encode(&self, ph: &PseudoHeader, checksum: ChecksumKind) -> Result<Vec<u8>, EncodeError> {
        self.validate(ph)?;
        let mut buf = Vec::with_capacity(self.wire_len());
        buf.push((self.version as u8) << 4 | TYPE_ADVERTISEMENT);
        buf.push(self.vrid);
        buf.push(self.priority);
        buf.push(self.addresses.len() as u8);
        match self.version {
            Version::V2 => {
                buf.push(self.auth.auth_type());
                buf.push(self.interval.whole_secs().expect("validated"));
            }
            Version::V3 => buf.extend_from_slice(&self.interval.0.to_be_bytes()),
        }
        buf.extend_from_slice(&[0, 0]);
        match &self.addresses {
            Addresses::V4(addrs) => addrs.iter().for_each(|a| buf.extend_from_slice(&a.octets())),
            Addresses::V6(addrs) => addrs.iter().for_each(|a| buf.extend_from_slice(&a.octets())),
        }
        if self.version == Version::V2 {
            match self.auth {
                Auth::None => buf.extend_from_slice(&[0; AUTH_LEN]),
                Auth::Pass(data) => buf.extend_from_slice(&data),
            }
        }
        let sum = checksum_for(self.version, &buf, ph, checksum);
        buf[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2].copy_from_slice(&sum.to_be_bytes());
        debug_assert_eq!(buf.len(), self.wire_len());
        Ok(buf)
    }

    fn validate(&self, ph: &PseudoHeader) -> Result<(), EncodeError> {
        if self.vrid == 0 {
            return Err(EncodeError::ZeroVrid);
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(EncodeError::TooManyAddresses { count: self.addresses.len() });
        }
        if self.addresses.is_ipv6() != ph.is_ipv6() {
            return Err(EncodeError::FamilyMismatch);
        }
        let max = match self.version {
            Version::V2 if ph.is_ipv6() => return Err(EncodeError::V2OverIpv6),
            Version::V2 => MAX_V2_INTERVAL,
            Version::V3 if self.auth != Auth::None => return Err(EncodeError::AuthInV3 { version: self.version }),
            Version::V3 => MAX_V3_INTERVAL,
        };
        let min = if self.version == Version::V2 { Centiseconds::from_secs(1) } else { Centiseconds(1) };
        if !(min..=max).contains(&self.interval) {
            return Err(EncodeError::IntervalOutOfRange { version: self.version, interval: self.interval, min, max });
        }
        if self.version == Version::V2 && self.interval.whole_secs().is_none() {
            return Err(EncodeError::IntervalNotWholeSeconds { interval: self.interval });
        }
        Ok(())
    }

    /// Parses a received VRRP message (the IP payload, exactly) that came
    /// with the IP header `ph`, doing the checks of RFC 5798 section 7.1 and
    /// RFC 3768 section 7.1 that need no local configuration.
    ///
    /// Also returns which checksum form matched, so a v3/IPv4 peer's flavour
    /// can be logged. The length must match the count exactly: the IP layer
    /// already trimmed any link-layer padding, so extra bytes mean a broken
    /// sender.
    pub fn decode(buf: &[u8], ph: &PseudoHeader) -> Result<(Self, ChecksumKind), DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::TooShort { len: buf.len(), min: HEADER_LEN });
        }
        let version = match buf[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            version => return Err(DecodeError::BadVersion { version }),
        };
        if version == Version::V2 && ph.is_ipv6() {
            return Err(DecodeError::V2OverIpv6);
        }
        let count = buf[3];
        let addr_len = if ph.is_ipv6() { IPV6_ADDR_LEN } else { IPV4_ADDR_LEN };
        let auth_len = if version == Version::V2 { AUTH_LEN } else { 0 };
        let expected = HEADER_LEN + usize::from(count) * addr_len + auth_len;
        if buf.len() != expected {
            return Err(DecodeError::LengthMismatch { count, expected, actual: buf.len() });
        }
        let kind = verify_checksum(version, buf, ph)?;

        let kind_nibble = buf[0] & 0x0f;
        if kind_nibble != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType { kind: kind_nibble });
        }
        let vrid = buf[1];
        if vrid == 0 {
            return Err(DecodeError::ZeroVrid);
        }
        let interval = match version {
            Version::V2 => Centiseconds::from_secs(buf[5]),
            Version::V3 => Centiseconds(u16::from_be_bytes([buf[4], buf[5]]) & V3_INTERVAL_MASK),
        };
        // RFC 5798 section 5.2.7 gives no meaning to 0; adopting it would make
        // the master-down interval 0 and a backup take over at once.
        if interval.0 == 0 {
            return Err(DecodeError::ZeroInterval);
        }
        let list = &buf[HEADER_LEN..expected - auth_len];
        let auth = match version {
            Version::V3 => Auth::None,
            Version::V2 => match buf[4] {
                AUTH_TYPE_NONE => Auth::None,
                AUTH_TYPE_PASS => Auth::Pass(buf[expected - AUTH_LEN..].try_into().expect("AUTH_LEN bytes")),
                auth_type => return Err(DecodeError::UnknownAuthType { auth_type }),
            },
        };
        let addresses = if ph.is_ipv6() {
            Addresses::V6(
                list.chunks_exact(IPV6_ADDR_LEN)
                    .map(|c| Ipv6Addr::from(<[u8; IPV6_ADDR_LEN]>::try_from(c).expect("exact chunk")))
                    .collect(),
            )
        } else {
            Addresses::V4(
                list.chunks_exact(IPV4_ADDR_LEN)
                    .map(|c| Ipv4Addr::from(<[u8; IPV4_ADDR_LEN]>::try_from(c).expect("exact chunk")))
                    .collect(),
            )
        };
        let advert = Self { version, vrid, priority: buf[2], interval, auth, addresses };
        Ok((advert, kind))
    }

    /// RFC 3768 section 7.1: "If the Auth Type does not match the locally
    /// configured authentication method, the receiver MUST discard the
    /// packet." With `PASS` the 8 bytes must match too (keepalived). v3 has
    /// no authentication; keepalived ignores a configured one, so do we.
    pub fn check_auth(&self, configured: &Auth) -> Result<(), DecodeError> {
        if self.version == Version::V3 {
            return Ok(());
        }
        match (configured, &self.auth) {
            (Auth::None, Auth::None) => Ok(()),
            (Auth::Pass(ours), Auth::Pass(theirs)) if ours == theirs => Ok(()),
            (Auth::Pass(_), Auth::Pass(_)) => Err(DecodeError::BadPassword),
            (ours, theirs) => {
                Err(DecodeError::AuthTypeMismatch { expected: ours.auth_type(), actual: theirs.auth_type() })
            }
        }
    }

    /// RFC 5798 section 7.1 says a receiver MAY check the address list and
    /// should then log, not drop; keepalived drops, and since a peer with
    /// another VIP list is a configuration error that must be fixed, we
    /// follow keepalived. Order does not matter, the count does.
    pub fn check_addresses(&self, configured: &Addresses) -> Result<(), DecodeError> {
        let mut ours: Vec<IpAddr> = configured.iter().collect();
        let mut theirs: Vec<IpAddr> = self.addresses.iter().collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        if ours == theirs {
            Ok(())
        } else {
            Err(DecodeError::AddressMismatch {
                ours: configured.iter().collect(),
                theirs: self.addresses.iter().collect(),
            })
        }
    }
}

/// Checks the received checksum against every form the version allows,
/// keepalived 2.2.7's first because that is what peers send today.
fn verify_checksum(version: Version, buf: &[u8], ph: &PseudoHeader) -> Result<ChecksumKind, DecodeError> {
    let actual = u16::from_be_bytes([buf[CHECKSUM_OFFSET], buf[CHECKSUM_OFFSET + 1]]);
    let candidates: &[ChecksumKind] = match (version, ph) {
        (Version::V2, _) => &[ChecksumKind::MessageOnly],
        (Version::V3, PseudoHeader::V6 { .. }) => &[ChecksumKind::PseudoHeader],
        (Version::V3, PseudoHeader::V4 { .. }) => {
            &[ChecksumKind::PseudoHeader, ChecksumKind::MessageOnly, ChecksumKind::PseudoHeaderMulticastDst]
        }
    };
    let mut expected = None;
    for &kind in candidates {
        let sum = checksum_for(version, buf, ph, kind);
        if sum == actual {
            return Ok(kind);
        }
        expected.get_or_insert(sum);
    }
    Err(DecodeError::BadChecksum { expected: expected.expect("at least one form"), actual })
}

/// The checksum `buf` should carry; the checksum field itself is skipped, as if zero.
fn checksum_for(version: Version, buf: &[u8], ph: &PseudoHeader, kind: ChecksumKind) -> u16 {
    let mut sum = Checksum::default();
    let len = buf.len() as u32;
    match (version, ph, kind) {
        (Version::V2, ..) | (Version::V3, PseudoHeader::V4 { .. }, ChecksumKind::MessageOnly) => {}
        (Version::V3, &PseudoHeader::V4 { src, dst }, _) => {
            let dst = if kind == ChecksumKind::PseudoHeaderMulticastDst { MULTICAST_V4 } else { dst };
            sum.add(&src.octets());
            sum.add(&dst.octets());
            // The length is 16 bits in the IPv4 pseudo-header.
            sum.add(&[0, IP_PROTO_VRRP]);
            sum.add(&(len as u16).to_be_bytes());
        }
        (Version::V3, &PseudoHeader::V6 { src, dst }, _) => {
            sum.add(&src.octets());
            sum.add(&dst.octets());
            sum.add(&len.to_be_bytes());
            sum.add(&[0, 0, 0, IP_PROTO_VRRP]);
        }
    }
    sum.add(&buf[..CHECKSUM_OFFSET]);
    sum.add(&buf[CHECKSUM_OFFSET + 2..]);
    sum.finish()
}

/// The Internet checksum (RFC 1071) fed in pieces. Every piece VRRP feeds has
/// even length, but an odd one is carried over so the result never depends on
/// how the input was split.
#[derive(Default)]
struct Checksum {
    sum: u64,
    odd: Option<u8>,
}

impl Checksum {
    fn add(&mut self, mut bytes: &[u8]) {
        if let (Some(hi), Some((&lo, rest))) = (self.odd, bytes.split_first()) {
            self.sum += u64::from(u16::from_be_bytes([hi, lo]));
            self.odd = None;
            bytes = rest;
        }
        let mut words = bytes.chunks_exact(2);
        for w in &mut words {
            self.sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            self.odd = Some(*last);
        }
    }

    fn finish(mut self) -> u16 {
        if let Some(hi) = self.odd {
            self.sum += u64::from(u16::from_be_bytes([hi, 0]));
        }
        while self.sum > 0xffff {
            self.sum = (self.sum & 0xffff) + (self.sum >> 16);
        }
        !(self.sum as u16)
    }
}

#[cfg(test)]
mod tests;
