//! Which received packets reach an instance's state machine: the checks of
//! RFC 5798 section 7.1 and RFC 3768 section 7.1, with the configuration
//! they need, in this order:
//!
//! 1. VRID: an advert for another virtual router on the same link is not an
//!    error, only counted apart ([`Reject::OtherVrid`]).
//! 2. Source, with `unicast_peers`: one of them.
//! 3. TTL / hop limit 255, in multicast mode (a unicast peer may be routed).
//! 4. What the packet alone tells ([`Advertisement::decode`]): version,
//!    length, checksum, type, interval.
//! 5. The configured version.
//! 6. Authentication ([`Advertisement::check_auth`]), then the address list
//!    ([`Advertisement::check_addresses`]).
//!
//! Each refusal names the counter of [`Rejected`] it adds to and says in
//! its message what was wrong; the caller counts and logs. The v2 interval
//! check is the state machine's ([`super::fsm::DiscardReason`]): keepalived
//! counts it among the adverts an instance received.

use std::net::IpAddr;

use super::packet::{Addresses, Advertisement, Auth, DecodeError, PseudoHeader, TTL, Version};

/// What the IP layer says about a received VRRP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader {
    /// The IP source: the sender's primary address.
    pub src: IpAddr,
    /// The IP destination: the group or one of our addresses.
    pub dst: IpAddr,
    /// TTL / hop limit as received.
    pub ttl: u8,
}

/// What an instance accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The configured version; adverts of the other one are refused.
    pub version: Version,
    pub vrid: u8,
    /// v2's authentication; ignored in v3, as keepalived does.
    pub auth: Auth,
    /// The VIP list as adverts carry it.
    pub addresses: Addresses,
    /// The only senders accepted; empty in multicast mode, where the TTL
    /// must be 255 instead.
    pub unicast_peers: Vec<IpAddr>,
}

/// The counters of [`Rejected`], one per kind of refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    BadTtl,
    BadVersion,
    BadLength,
    BadChecksum,
    Malformed,
    BadAuth,
    AddressMismatch,
    UnknownPeer,
}

impl Reason {
    /// Every reason, in the order `lb status` lists them.
    pub const ALL: [Self; 8] = [
        Self::BadTtl,
        Self::BadVersion,
        Self::BadLength,
        Self::BadChecksum,
        Self::Malformed,
        Self::BadAuth,
        Self::AddressMismatch,
        Self::UnknownPeer,
    ];

    /// Its name in `lb status`, and the key a repeated log line is limited by.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BadTtl => "bad_ttl",
            Self::BadVersion => "bad_version",
            Self::BadLength => "bad_length",
            Self::BadChecksum => "bad_checksum",
            Self::Malformed => "malformed",
            Self::BadAuth => "bad_auth",
            Self::AddressMismatch => "address_mismatch",
            Self::UnknownPeer => "unknown_peer",
        }
    }

    /// The counter a decode or check error adds to.
    pub const fn of(error: &DecodeError) -> Self {
        match error {
            DecodeError::TooShort { .. } | DecodeError::LengthMismatch { .. } => Self::BadLength,
            DecodeError::BadVersion { .. } | DecodeError::V2OverIpv6 => Self::BadVersion,
            DecodeError::BadChecksum { .. } => Self::BadChecksum,
            DecodeError::BadType { .. } | DecodeError::ZeroVrid | DecodeError::ZeroInterval => Self::Malformed,
            DecodeError::UnknownAuthType { .. } | DecodeError::AuthTypeMismatch { .. } | DecodeError::BadPassword => {
                Self::BadAuth
            }
            DecodeError::AddressMismatch { .. } => Self::AddressMismatch,
        }
    }
}

/// Why a received packet does not reach the state machine. The message is
/// the log line's, after "rejected ".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// For another virtual router on the link: counted apart, not an error.
    #[error("advert for VRID {vrid}")]
    OtherVrid { vrid: u8 },
    #[error("advert from {src}, which is not a unicast peer")]
    UnknownPeer { src: IpAddr },
    #[error("advert from {src} with TTL {ttl} (must be 255)")]
    BadTtl { src: IpAddr, ttl: u8 },
    /// One socket receives one family, so this cannot come from the kernel.
    #[error("advert from {src} to {dst}, addresses of different families")]
    MixedFamilies { src: IpAddr, dst: IpAddr },
    #[error("advert from {src}: {error}")]
    Decode { src: IpAddr, error: DecodeError },
    #[error("{theirs} advert from {src}, but this instance runs {ours}")]
    OtherVersion { src: IpAddr, theirs: Version, ours: Version },
    /// Authentication or the address list.
    #[error("advert from {src} (VRID {vrid}): {error}")]
    Check { src: IpAddr, vrid: u8, error: DecodeError },
}

impl Reject {
    /// The counter of [`Rejected`] it adds to; `None` for the two that are
    /// not refused adverts of ours: another VRID's, and a mixed header.
    pub const fn reason(&self) -> Option<Reason> {
        match self {
            Self::OtherVrid { .. } | Self::MixedFamilies { .. } => None,
            Self::UnknownPeer { .. } => Some(Reason::UnknownPeer),
            Self::BadTtl { .. } => Some(Reason::BadTtl),
            Self::Decode { error, .. } | Self::Check { error, .. } => Some(Reason::of(error)),
            Self::OtherVersion { .. } => Some(Reason::BadVersion),
        }
    }
}

/// The advert in `payload` (the IP payload, exactly), if `filter` lets it
/// through; see the [module documentation](self) for the order of checks.
pub fn accept(filter: &Filter, ip: &IpHeader, payload: &[u8]) -> Result<Advertisement, Reject> {
    let src = ip.src;
    // Before decoding: another router's advert is not ours to judge, even
    // one our decoder would refuse.
    if let Some(&vrid) = payload.get(1)
        && vrid != filter.vrid
    {
        return Err(Reject::OtherVrid { vrid });
    }
    let unicast = !filter.unicast_peers.is_empty();
    if unicast && !filter.unicast_peers.contains(&src) {
        return Err(Reject::UnknownPeer { src });
    }
    if !unicast && ip.ttl != TTL {
        return Err(Reject::BadTtl { src, ttl: ip.ttl });
    }
    let ph = PseudoHeader::new(src, ip.dst).ok_or(Reject::MixedFamilies { src, dst: ip.dst })?;
    let (advert, _) = Advertisement::decode(payload, &ph).map_err(|error| Reject::Decode { src, error })?;
    if advert.version != filter.version {
        return Err(Reject::OtherVersion { src, theirs: advert.version, ours: filter.version });
    }
    advert
        .check_auth(&filter.auth)
        .and_then(|()| advert.check_addresses(&filter.addresses))
        .map_err(|error| Reject::Check { src, vrid: filter.vrid, error })?;
    Ok(advert)
}

/// Adverts dropped before the state machine saw them, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    /// TTL / hop limit not 255 in multicast mode (keepalived's "invalid ttl").
    pub bad_ttl: u64,
    /// Not our configured VRRP version, or v2 over IPv6.
    pub bad_version: u64,
    /// Shorter than a header, or not the length its count says.
    pub bad_length: u64,
    /// Checksum wrong in every accepted form (IPv4; the kernel drops bad IPv6 ones).
    pub bad_checksum: u64,
    /// Not an advertisement, VRID or interval 0, or not a usable IP packet.
    pub malformed: u64,
    /// Authentication type or password does not match (v2).
    pub bad_auth: u64,
    /// The address list differs from ours (keepalived: "ip address
    /// associated with VRID not present in MASTER advert").
    pub address_mismatch: u64,
    /// From an address that is not one of `unicast_peers`.
    pub unknown_peer: u64,
    /// Of `bad_auth`: an authentication type no version knows
    /// (keepalived's "invalid authtype").
    pub auth_invalid: u64,
    /// Of `bad_auth`: another authentication type than ours (keepalived's
    /// "authtype mismatch"). The rest of `bad_auth` is a wrong password.
    pub auth_mismatch: u64,
}

impl Rejected {
    /// Counts one.
    pub fn add(&mut self, reason: Reason) {
        *self.counter(reason) += 1;
    }

    /// Counts `reject`, if it is a refusal ([`Reject::reason`]); returns
    /// its reason.
    pub fn count(&mut self, reject: &Reject) -> Option<Reason> {
        let reason = reject.reason()?;
        self.add(reason);
        if let Reject::Decode { error, .. } | Reject::Check { error, .. } = reject {
            match error {
                DecodeError::UnknownAuthType { .. } => self.auth_invalid += 1,
                DecodeError::AuthTypeMismatch { .. } => self.auth_mismatch += 1,
                _ => {}
            }
        }
        Some(reason)
    }

    /// `(reason, count)` for `lb status`, in the order of [`Reason::ALL`].
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        // Read through a copy, so that one match maps reasons to fields.
        let mut counts = *self;
        Reason::ALL.map(|r| (r.name(), *counts.counter(r)))
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }

    fn counter(&mut self, reason: Reason) -> &mut u64 {
        match reason {
            Reason::BadTtl => &mut self.bad_ttl,
            Reason::BadVersion => &mut self.bad_version,
            Reason::BadLength => &mut self.bad_length,
            Reason::BadChecksum => &mut self.bad_checksum,
            Reason::Malformed => &mut self.malformed,
            Reason::BadAuth => &mut self.bad_auth,
            Reason::AddressMismatch => &mut self.address_mismatch,
            Reason::UnknownPeer => &mut self.unknown_peer,
        }
    }
}

#[cfg(test)]
mod tests;
