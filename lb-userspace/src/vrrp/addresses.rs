//! Virtual addresses on and off their interfaces (`RTM_NEWADDR` /
//! `RTM_DELADDR` through rtnetlink), as keepalived puts them there.
//!
//! The instance's [`Rtnl`](crate::rtnl::Rtnl) connection is opened at spawn
//! time, in the calling thread's network namespace, and keeps it: the
//! instance task may later run on any thread.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope};
use rtnetlink::AddressMessageBuilder;

use crate::rtnl;

impl rtnl::Rtnl {
    /// `ip addr add ADDR/PREFIX dev IFINDEX [label LABEL]` (IPv6: `nodad`).
    /// `Ok(false)` when it was already there.
    pub async fn add_address(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
        label: Option<&str>,
    ) -> io::Result<bool> {
        let mut request = self.handle().address().add(ifindex, addr, prefix_len);
        *request.message_mut() = vip_message(ifindex, addr, prefix_len, label);
        match rtnl::within(request.execute()).await {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip addr del ADDR/PREFIX dev IFINDEX`. `Ok(false)` when it was not there.
    pub async fn del_address(&self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<bool> {
        let request = self.handle().address().del(address_message(ifindex, addr, prefix_len));
        match rtnl::within(request.execute()).await {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENODEV | libc::ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `ADDR/PREFIX` is on `IFINDEX` (`ip addr show dev IFINDEX`).
    /// The kernel dumps every address and the filter is applied here; the
    /// dump is read to its end so the connection has no answer left over.
    pub async fn has_address(&self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<bool> {
        let request = (self.handle().address().get())
            .set_link_index_filter(ifindex)
            .set_address_filter(addr)
            .set_prefix_length_filter(prefix_len)
            .execute();
        let found: Vec<AddressMessage> = rtnl::within(request.try_collect()).await?;
        Ok(!found.is_empty())
    }
}

/// `ADDR/PREFIX dev IFINDEX`, without the broadcast address rtnetlink's
/// builder derives for IPv4: keepalived gives a VIP none unless configured
/// with one.
fn address_message(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new().index(ifindex).address(a, prefix_len).build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new().index(ifindex).address(a, prefix_len).build(),
    };
    msg.header.scope = AddressScope::Universe;
    msg.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
    msg
}

/// The `RTM_NEWADDR` body for a VIP: [`address_message`] with its label,
/// and `nodad` for IPv6.
fn vip_message(ifindex: u32, addr: IpAddr, prefix_len: u8, label: Option<&str>) -> AddressMessage {
    let mut msg = address_message(ifindex, addr, prefix_len);
    if let Some(label) = label {
        msg.attributes.push(AddressAttribute::Label(label.to_owned()));
    }
    if addr.is_ipv6() {
        // Adverts already settled who owns the address; duplicate address
        // detection would only keep it unusable for a second (keepalived
        // adds IPv6 VIPs with nodad too).
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::AddressFamily;

    use super::*;

    #[test]
    fn ipv4_vip_as_keepalived_adds_it() {
        let addr: IpAddr = "10.203.0.100".parse().unwrap();
        let msg = vip_message(3, addr, 24, Some("eth0:vip"));
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!((msg.header.index, msg.header.prefix_len), (3, 24));
        assert_eq!(msg.header.scope, AddressScope::Universe);
        assert_eq!(msg.header.flags, AddressHeaderFlags::empty());
        let mut attrs = msg.attributes.clone();
        attrs.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            attrs,
            vec![
                AddressAttribute::Address(addr),
                AddressAttribute::Label("eth0:vip".into()),
                AddressAttribute::Local(addr),
            ],
            "no broadcast address"
        );
        let del = address_message(3, addr, 24);
        assert!(!del.attributes.iter().any(|a| matches!(a, AddressAttribute::Label(_))), "{del:?}");
    }

    #[test]
    fn ipv6_vip_skips_dad() {
        let addr: IpAddr = "fd00:214::100".parse().unwrap();
        let msg = vip_message(4, addr, 64, None);
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.header.flags, AddressHeaderFlags::Nodad);
        assert!(msg.attributes.contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        assert!(msg.attributes.contains(&AddressAttribute::Local(addr)));
        assert!(msg.attributes.contains(&AddressAttribute::Address(addr)));
        assert_eq!(address_message(4, addr, 64).header.flags, AddressHeaderFlags::empty());
    }
}
