//! VRRP advertisements on the wire: version 2 (RFC 3768, IPv4 only) and
//! version 3 (RFC 5798, IPv4 and IPv6), as keepalived 2.2.7 sends them.
//!
//! Only the VRRP message is handled here, never the IP header: the socket
//! layer checks TTL / hop limit 255 (RFC 5798 section 5.1, RFC 3768 section 5.2) and hands over
//! the IP source and destination as a [`PseudoHeader`], because v3 checksums
//! cover them and because the address family decides the address width.
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
mod tests {
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
        0x21, 0x33, 0x64, 0x01, 0x00, 0x01, 0x6f, 0x9b, 0x0a, 0xcb, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];

    /// The operators' `auth_type PASS` / `auth_pass 571f97b2`, VRID 167, VIP
    /// 172.18.67.33. Checksum from the reference implementation below.
    const V2_PASS: [u8; 20] = [
        0x21, 0xa7, 0x64, 0x01, 0x01, 0x01, 0x88, 0x1b, 0xac, 0x12, 0x43, 0x21, b'5', b'7', b'1', b'f', b'9', b'7',
        b'b', b'2',
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
        assert!(matches!(
            Advertisement::decode(&no_pseudo, &ph),
            Err(DecodeError::BadChecksum { expected: 0x7795, .. })
        ));
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
        assert_eq!(
            Advertisement::decode(&bad, &ph),
            Err(DecodeError::BadChecksum { expected: 0x6f9b, actual: 0x6f9a })
        );
        let mut bad = KEEPALIVED_V2;
        bad[2] = 101; // the priority changed in flight: its word grows by 0x100, the sum shrinks by it
        assert_eq!(
            Advertisement::decode(&bad, &ph),
            Err(DecodeError::BadChecksum { expected: 0x6e9b, actual: 0x6f9b })
        );
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
        assert_eq!(
            err.to_string(),
            "advertised addresses [10.203.0.100] differ from ours [10.203.0.100, 10.203.0.101]"
        );
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
}
