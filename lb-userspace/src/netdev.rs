//! Network interfaces: name to index and back, an interface's MAC, link
//! state and addresses, and [`Mac`], a MAC address as people write it.
//!
//! Lookups are ioctls (`SIOCGIF*`) on a datagram socket, and a socket answers
//! for the network namespace it was opened in: an [`IfCtl`] keeps the
//! namespace of the thread that opened it, whichever thread later uses it,
//! and the free functions ask the calling thread's. Not sysfs: it shows the
//! namespace it was mounted in, which after `setns` is not the thread's.
//! Hand-written over `libc`: `nix`'s `if_nametoindex` and the like open a
//! socket per call in the calling thread's namespace, and no crate offers
//! `SIOCGIFHWADDR` at all.

use std::{
    ffi::{CStr, CString},
    fmt, io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    str::FromStr,
};

/// A MAC address; shown and parsed in the usual colon-separated form
/// (`02:ab:00:01:10:ff`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a MAC address (six hex bytes separated by colons, as in 02:00:00:00:00:0a)")]
pub struct MacError {
    pub text: String,
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacError { text: s.to_owned() };
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(err)?;
            // from_str_radix alone would take a sign ("+f").
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(mac))
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl From<Mac> for [u8; 6] {
    fn from(mac: Mac) -> Self {
        mac.0
    }
}

/// `struct ifreq`: a name and a 24-byte union, read and written as bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn named(name: &str) -> io::Result<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
        }
        let mut req = Self { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }

    fn indexed(index: u32) -> io::Result<Self> {
        let index = i32::try_from(index)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface index {index}")))?;
        let mut req = Self { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        req.data[..4].copy_from_slice(&index.to_ne_bytes());
        Ok(req)
    }
}

/// Interface queries on a datagram socket of the namespace it was opened in.
#[derive(Debug)]
pub struct IfCtl {
    fd: OwnedFd,
}

/// An interface's link state as tracking sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Administratively up and running (carrier, operstate up).
    Up,
    /// Down, no carrier, or gone.
    Down,
}

impl IfCtl {
    /// Opens the query socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ioctl(&self, request: libc::c_ulong, mut req: IfReq) -> io::Result<IfReq> {
        // SAFETY: the SIOCGIF* requests used here read the name or index and
        // write at most the name and the 24-byte union of a `struct ifreq`,
        // which `IfReq` mirrors.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, &raw mut req) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(req) }
    }

    /// The interface's index (`ENODEV` when there is no such interface).
    pub fn index(&self, name: &str) -> io::Result<u32> {
        let req = self.ioctl(libc::SIOCGIFINDEX, IfReq::named(name)?)?;
        Ok(i32::from_ne_bytes(req.data[..4].try_into().expect("4 bytes")) as u32)
    }

    /// The name of the interface with index `index`.
    pub fn name(&self, index: u32) -> io::Result<String> {
        let req = self.ioctl(libc::SIOCGIFNAME, IfReq::indexed(index)?)?;
        let name = CStr::from_bytes_until_nul(&req.name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "interface name without a NUL"))?;
        Ok(name.to_string_lossy().into_owned())
    }

    /// The interface's hardware address (`SIOCGIFHWADDR`).
    pub fn mac(&self, name: &str) -> io::Result<[u8; 6]> {
        let req = self.ioctl(libc::SIOCGIFHWADDR, IfReq::named(name)?)?;
        // struct sockaddr: family (2 bytes), then the address.
        Ok(req.data[2..8].try_into().expect("6 bytes"))
    }

    /// Up, running and present.
    pub fn link(&self, name: &str) -> Link {
        let flags = IfReq::named(name).and_then(|req| self.ioctl(libc::SIOCGIFFLAGS, req));
        match flags {
            Ok(req) => {
                let flags = libc::c_int::from(i16::from_ne_bytes([req.data[0], req.data[1]]));
                if flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0 { Link::Up } else { Link::Down }
            }
            Err(_) => Link::Down,
        }
    }

    /// The interface's primary IPv4 address (`SIOCGIFADDR`).
    pub fn ipv4(&self, name: &str) -> io::Result<Ipv4Addr> {
        let req = self.ioctl(libc::SIOCGIFADDR, IfReq::named(name)?)?;
        // struct sockaddr_in: family (2), port (2), address (4).
        Ok(Ipv4Addr::new(req.data[4], req.data[5], req.data[6], req.data[7]))
    }
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn index(name: &str) -> io::Result<u32> {
    IfCtl::open()?.index(name)
}

/// The name of the interface with index `index` in the calling thread's
/// network namespace.
pub fn name(index: u32) -> io::Result<String> {
    IfCtl::open()?.name(index)
}

/// The MAC of interface `name` in the calling thread's network namespace.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    IfCtl::open()?.mac(name)
}

/// The first IPv6 link-local address of `ifname`, from `getifaddrs` (which
/// asks the calling thread's namespace).
pub fn ipv6_link_local(ifname: &str) -> io::Result<Option<Ipv6Addr>> {
    let want = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = head;
    // SAFETY: walking the list getifaddrs returned, until its end; every
    // non-null `ifa_addr` of family AF_INET6 is a sockaddr_in6.
    unsafe {
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null()
                && libc::c_int::from((*ifa.ifa_addr).sa_family) == libc::AF_INET6
                && CStr::from_ptr(ifa.ifa_name) == want.as_c_str()
            {
                let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                if is_link_local(&ip) {
                    found = Some(ip);
                    break;
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Ok(found)
}

/// fe80::/10.
pub fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_round_trips() {
        let mac = Mac([0x02, 0xab, 0, 1, 0x10, 0xff]);
        assert_eq!(mac.to_string(), "02:ab:00:01:10:ff");
        assert_eq!("02:ab:00:01:10:ff".parse(), Ok(mac));
        assert_eq!("02:AB:0:1:10:FF".parse(), Ok(mac), "upper case and single digits, as ip link prints none");
        for bad in [
            "",
            "02:ab:00:01:10",
            "02:ab:00:01:10:ff:00",
            "02:ab:00:01:10:fg",
            "02:ab:00:01:10:+f",
            "02:ab::01:10:ff",
            "002:ab:00:01:10:ff",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(MacError { text: bad.to_owned() }), "{bad:?}");
        }
    }

    #[test]
    fn loopback_by_name_and_index() {
        // `lo` is index 1 in every network namespace.
        assert_eq!(index("lo").unwrap(), 1);
        assert_eq!(name(1).unwrap(), "lo");
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert_eq!(index("no-such-if").unwrap_err().raw_os_error(), Some(libc::ENODEV));
        assert_eq!(index("a-name-far-too-long").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(name(0).is_err());
    }

    #[test]
    fn link_local() {
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&"fec0::1".parse().unwrap()));
        assert!(!is_link_local(&"fd00::1".parse().unwrap()));
    }
}
