//! keepalived's `virtual_routes` as configured: what a route is, free of
//! netlink, so the configuration imports no I/O module.

use std::{fmt, net::IpAddr};

/// The main routing table, where a route without `table` goes.
pub const TABLE_MAIN: u32 = 254;

/// What a route does with matching packets (`ip route add TYPE PREFIX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RouteKind {
    /// Forwarded: via a gateway or out of a device.
    #[default]
    Unicast,
    /// Dropped silently.
    Blackhole,
    /// Dropped with ICMP host unreachable.
    Unreachable,
    /// Dropped with ICMP administratively prohibited.
    Prohibit,
}

impl RouteKind {
    /// The keyword in `ip route` and keepalived syntax.
    pub fn keyword(self) -> &'static str {
        match self {
            RouteKind::Unicast => "unicast",
            RouteKind::Blackhole => "blackhole",
            RouteKind::Unreachable => "unreachable",
            RouteKind::Prohibit => "prohibit",
        }
    }
}

/// `scope` as `ip route` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Site,
    Link,
    Host,
    Nowhere,
}

impl Scope {
    pub fn keyword(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Site => "site",
            Scope::Link => "link",
            Scope::Host => "host",
            Scope::Nowhere => "nowhere",
        }
    }

    /// `global` (or `universe`), `site`, `link`, `host`, `nowhere`.
    pub fn from_keyword(word: &str) -> Option<Scope> {
        Some(match word {
            "global" | "universe" => Scope::Global,
            "site" => Scope::Site,
            "link" => Scope::Link,
            "host" => Scope::Host,
            "nowhere" => Scope::Nowhere,
            _ => return None,
        })
    }
}

/// One entry of `virtual_routes`, validated: `to`, `via` and `src` are of
/// one family, and a unicast route has a `via` or a `dev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualRoute {
    pub kind: RouteKind,
    /// The destination, host bits clear.
    pub to: IpAddr,
    pub prefix_len: u8,
    /// The gateway (`via` / keepalived's `gw`); unicast routes only.
    pub via: Option<IpAddr>,
    /// The preferred source address (`src`), often a VIP.
    pub src: Option<IpAddr>,
    /// The output interface; unicast routes only.
    pub dev: Option<String>,
    /// `metric` (keepalived also says `priority` / `preference`); the
    /// kernel's default when `None` (0 for IPv4, 1024 for IPv6).
    pub metric: Option<u32>,
    /// 1..=2^32-1; [`TABLE_MAIN`] unless configured.
    pub table: u32,
    /// `ip route`'s default when `None`: link for a unicast route without a
    /// gateway, global otherwise.
    pub scope: Option<Scope>,
    /// `onlink`: the gateway is on the link even if no prefix says so.
    pub onlink: bool,
}

impl VirtualRoute {
    pub fn is_ipv6(&self) -> bool {
        self.to.is_ipv6()
    }

    /// The scope the route is added with, as `ip route add` picks it.
    pub fn effective_scope(&self) -> Scope {
        match (self.scope, self.kind, self.via) {
            (Some(s), _, _) => s,
            (None, RouteKind::Unicast, None) if !self.is_ipv6() => Scope::Link,
            _ => Scope::Global,
        }
    }
}

impl fmt::Display for VirtualRoute {
    /// As `ip route` would print it, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RouteKind::Unicast {
            write!(f, "{} ", self.kind.keyword())?;
        }
        write!(f, "{}/{}", self.to, self.prefix_len)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        if let Some(scope) = self.scope {
            write!(f, " scope {}", scope.keyword())?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}
