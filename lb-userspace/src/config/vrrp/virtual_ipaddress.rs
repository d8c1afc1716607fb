//! `virtual_ipaddress` entries: the addresses a master holds.

use std::net::{IpAddr, Ipv4Addr};

use toml::Spanned;

use super::types::VirtualAddress;
use crate::config::{
    fields::{MAX_INTERFACE_NAME, interface_name},
    model::RawVipAddr,
    span::Problems,
};

pub(crate) fn vip_addr(item: &Spanned<RawVipAddr>, interface: &str, problems: &mut Problems) -> Option<VirtualAddress> {
    let raw = item.get_ref();
    let (addr, prefix) = match raw.address.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (raw.address.as_str(), None),
    };
    let Ok(address) = addr.parse::<IpAddr>() else {
        problems.push(
            item.span(),
            format!(
                "bad virtual address \"{}\": expected an address with a prefix such as \"10.0.0.100/24\"",
                raw.address.escape_debug()
            ),
        );
        return None;
    };
    let max = if address.is_ipv6() { 128 } else { 32 };
    let prefix_len = match prefix.map(str::parse::<u8>) {
        None => max,
        Some(Ok(p)) if p <= max => p,
        Some(_) => {
            problems.push(item.span(), format!("bad prefix length in \"{}\": expected 0..={max}", raw.address));
            return None;
        }
    };
    let unusable = match address {
        _ if address.is_unspecified() => Some("unspecified"),
        _ if address.is_loopback() => Some("a loopback address"),
        _ if address.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Some("the broadcast address"),
        _ => None,
    };
    if let Some(why) = unusable {
        problems.push(item.span(), format!("virtual address {address} is {why}"));
        return None;
    }
    if let Some(dev) = &raw.dev {
        let s = Spanned::new(item.span(), dev.clone());
        if !interface_name(&s, problems) {
            return None;
        }
    }
    let dev_name = raw.dev.as_deref().unwrap_or(interface);
    if let Some(label) = &raw.label {
        if address.is_ipv6() {
            problems.push(item.span(), "labels are IPv4 only (the kernel keeps none for IPv6 addresses)");
            return None;
        }
        if !label.starts_with(dev_name) || label.len() > MAX_INTERFACE_NAME {
            problems.push(
                item.span(),
                format!(
                    "label \"{}\" must start with the interface name \"{dev_name}\" and be at most {MAX_INTERFACE_NAME} bytes, e.g. \"{dev_name}:vip\"",
                    label.escape_debug()
                ),
            );
            return None;
        }
    }
    Some(VirtualAddress { address, prefix_len, dev: raw.dev.clone(), label: raw.label.clone() })
}
