//! From what serde read to the validated sections of a whole file:
//! defaults, ranges, and the rules that span several values (duplicates,
//! address families, limits).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use lb_common::{DEFAULT_FLOOD_NEW_FLOWS_PER_SEC, DEFAULT_FLOWS_PER_CPU, DEFAULT_RING_SIZE, MAX_BACKENDS, MAX_VIPS};
use toml::Spanned;

use super::{
    announce,
    check::{self, Context},
    fields::{int_in, interface_name},
    model::{RawConfig, RawGlobal, RawVip},
    span::{Problems, Span, position},
    types::{Announce, Backend, Global, MAX_WEIGHT, Protocol, Vip},
    vrrp::{self, VrrpInstance, VrrpSyncGroup},
};
use crate::maglev::{MAX_RING_SIZE, is_prime};

const DEFAULT_MAX_VIPS: u32 = 16;
/// A flow table this large per CPU is already tens of GiB on a big machine;
/// a larger number is a typo.
const MAX_FLOWS_PER_CPU: i64 = 1 << 24;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// The HTTP listener's address when the file names none: loopback, on the
/// port the keepalived exporters use.
/// The default `[global] pin_dir`: under bpffs's usual mount point.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";
pub(crate) const DEFAULT_METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9650);

/// Every table of the file, validated: the configuration without where it
/// came from and its warnings.
#[derive(Debug)]
pub(crate) struct Sections {
    pub global: Global,
    pub vips: Vec<Vip>,
    pub vrrp: Vec<VrrpInstance>,
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    pub announce: Option<Announce>,
}

/// Builds the sections, recording every problem in `problems`; the result
/// is only meaningful when `problems` stays empty.
pub(crate) fn validate(raw: &RawConfig, text: &str, problems: &mut Problems) -> Sections {
    let global = global(&raw.global, problems);
    let mut vips = Vec::new();
    let mut services: HashMap<(IpAddr, u16, Protocol), Span> = HashMap::new();
    let mut fragments: HashMap<(IpAddr, Protocol), Span> = HashMap::new();
    let mut backend_ids = 0usize;
    // Where each accepted VIP's ring size was written, for `ring_memory`.
    let mut ring_spans = Vec::new();
    for (index, raw_vip) in raw.vips.iter().enumerate() {
        if index == global.max_vips as usize {
            problems.push(
                raw_vip.span(),
                format!(
                    "more VIPs than global.max_vips = {} (each VIP takes two ring regions; at most {MAX_VIPS})",
                    global.max_vips
                ),
            );
        }
        let has_announce = raw.announce.is_some();
        let Some(vip) = vip(raw_vip.get_ref(), &global, has_announce, text, problems) else { continue };
        let v = raw_vip.get_ref();
        let key = (vip.address, vip.port, vip.protocol);
        if let Some(first) = services.get(&key) {
            let at = position(text, first.start);
            problems.push(
                v.address.span(),
                format!(
                    "duplicate VIP {}/{}: already defined at line {}",
                    SocketAddr::new(vip.address, vip.port),
                    vip.protocol.name(),
                    at.line
                ),
            );
        } else {
            services.insert(key, v.address.span());
        }
        if let Some(f) = &v.fragments
            && *f.get_ref()
        {
            let key = (vip.address, vip.protocol);
            if let Some(first) = fragments.get(&key) {
                let at = position(text, first.start);
                problems.push(
                    f.span(),
                    format!(
                        "fragments for {} {} already go to the VIP at line {}: only one VIP per address and protocol can receive them",
                        vip.address,
                        vip.protocol.name(),
                        at.line
                    ),
                );
            } else {
                fragments.insert(key, f.span());
            }
        }
        // Backend ids are global and id 0 means "none"; the sorry server needs one too.
        let before = backend_ids;
        backend_ids += vip.backends.len() + usize::from(vip.sorry_server.is_some());
        let limit = MAX_BACKENDS as usize - 1;
        if before <= limit && backend_ids > limit {
            let at = v.backends.get(limit - before).map_or(raw_vip.span(), Spanned::span);
            problems
                .push(at, format!("more than {limit} backends and sorry servers in all: the backend table is full"));
        }
        ring_spans.push(v.ring_size.as_ref().map_or(raw_vip.span(), Spanned::span));
        vips.push(vip);
    }
    ring_memory(&vips, &ring_spans, &global, problems);
    let vrrp = vrrp::validate(&raw.vrrp, &global.script_user, text, problems);
    let vrrp_sync_groups = vrrp::validate_sync_groups(&raw.vrrp_sync_group, &vrrp, &global.script_user, text, problems);
    let announce = announce::announce(raw.announce.as_ref(), &vrrp, problems);
    Sections { global, vips, vrrp, vrrp_sync_groups, announce }
}

fn global(raw: &RawGlobal, problems: &mut Problems) -> Global {
    let flows_per_cpu = raw
        .flows_per_cpu
        .as_ref()
        .map_or(Some(DEFAULT_FLOWS_PER_CPU), |v| int_in(v, "flows_per_cpu", 1..=MAX_FLOWS_PER_CPU, problems));
    let max_new_flows_per_sec = raw.max_new_flows_per_sec.as_ref().map_or(Some(DEFAULT_FLOOD_NEW_FLOWS_PER_SEC), |v| {
        int_in(v, "max_new_flows_per_sec", 0..=i64::from(u32::MAX), problems)
    });
    let script_user = match &raw.script_user {
        Some(u) if u.get_ref().trim().is_empty() => {
            problems.push(u.span(), "script_user is empty");
            None
        }
        Some(u) => Some(u.get_ref().clone()),
        None => Some(String::from("nobody")),
    };
    let control_socket = match &raw.control_socket {
        Some(p) if !p.get_ref().starts_with('/') => {
            problems.push(
                p.span(),
                format!(
                    "control_socket \"{}\" must be an absolute path: the agent's working directory is not yours",
                    p.get_ref()
                ),
            );
            None
        }
        Some(p) if p.get_ref().len() > MAX_SOCKET_PATH => {
            problems.push(
                p.span(),
                format!("control_socket is longer than a socket path may be ({MAX_SOCKET_PATH} bytes)"),
            );
            None
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
        None => Some(PathBuf::from("/run/lb/lb.sock")),
    };
    let max_vips = raw
        .max_vips
        .as_ref()
        .map_or(Some(DEFAULT_MAX_VIPS), |v| int_in(v, "max_vips", 1..=i64::from(MAX_VIPS), problems));
    let pin_dir = match &raw.pin_dir {
        Some(p) if !p.get_ref().starts_with('/') => {
            problems.push(p.span(), format!("pin_dir \"{}\" must be an absolute path", p.get_ref()));
            None
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
        None => None,
    };
    let metrics = match &raw.metrics {
        None => Some(Some(DEFAULT_METRICS)),
        Some(m) if m.get_ref().is_empty() => Some(None),
        Some(m) => match m.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(Some(addr)),
            Err(_) => {
                problems.push(
                    m.span(),
                    format!(
                        "metrics \"{}\" is not ADDRESS:PORT (\"127.0.0.1:9650\", \"[::1]:9650\"; \"\" turns the listener off)",
                        m.get_ref()
                    ),
                );
                None
            }
        },
    };
    Global {
        pin_dir: pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
        flows_per_cpu: flows_per_cpu.unwrap_or(DEFAULT_FLOWS_PER_CPU),
        max_new_flows_per_sec: max_new_flows_per_sec.unwrap_or(DEFAULT_FLOOD_NEW_FLOWS_PER_SEC),
        script_user: script_user.unwrap_or_default(),
        control_socket: control_socket.unwrap_or_default(),
        // An invalid max_vips is already reported; the largest keeps it from
        // also producing "more VIPs than max_vips".
        max_vips: max_vips.unwrap_or(MAX_VIPS),
        metrics: metrics.flatten(),
    }
}

/// One VIP, or `None` when its address is unusable (nothing else about it
/// can be compared then), after checking all of it anyway.
/// `has_announce`: the file has an `[announce]` table (valid or not, so a
/// bad table number is not also reported at every VIP).
fn vip(v: &RawVip, global: &Global, has_announce: bool, text: &str, problems: &mut Problems) -> Option<Vip> {
    let vip_ip = address(&v.address, "VIP address", problems);
    let port = int_in(&v.port, "port", 0..=65535, problems).unwrap_or(0);
    let protocol = v.protocol.unwrap_or(Protocol::Tcp);
    let interface = v.interface.get_ref();
    interface_name(&v.interface, problems);
    let ring_size = v.ring_size.as_ref().map_or(DEFAULT_RING_SIZE, |r| ring_size(r, problems));
    let quorum = v.quorum.as_ref().map_or(1, |q| match u64::try_from(*q.get_ref()) {
        Ok(n) if n >= 1 => n,
        _ => {
            problems.push(q.span(), format!("quorum {} must be at least 1", q.get_ref()));
            1
        }
    });
    let hysteresis = v.hysteresis.as_ref().map_or(0, |h| match u64::try_from(*h.get_ref()) {
        Ok(n) if n < quorum => n,
        Ok(n) => {
            problems.push(
                h.span(),
                format!(
                    "hysteresis {n} must be less than quorum {quorum}: quorum is lost only below quorum - hysteresis"
                ),
            );
            0
        }
        Err(_) => {
            problems.push(h.span(), format!("hysteresis {} must not be negative", h.get_ref()));
            0
        }
    });
    let sorry_server = v.sorry_server.as_ref().and_then(|s| {
        let ip = address(s, "sorry_server", problems)?;
        same_family(ip, vip_ip, s.span(), "sorry_server", problems).then_some(ip)
    });

    let cx = Context { vip_port: port, script_user: &global.script_user, text };
    check::vip_defaults(v.check.as_ref(), cx, problems);
    let mut seen: HashMap<IpAddr, Span> = HashMap::new();
    let mut backends = Vec::with_capacity(v.backends.len());
    for b in &v.backends {
        let b = b.get_ref();
        let ip = address(&b.address, "backend address", problems);
        let weight =
            b.weight.as_ref().map_or(1, |w| int_in(w, "weight", 0..=i64::from(MAX_WEIGHT), problems).unwrap_or(1));
        let check = check::resolve(v.check.as_ref(), b.check.as_ref(), cx, problems);
        let Some(ip) = ip else { continue };
        if !same_family(ip, vip_ip, b.address.span(), "backend", problems) {
            continue;
        }
        if let Some(first) = seen.get(&ip) {
            let line = position(text, first.start).line;
            problems.push(b.address.span(), format!("duplicate backend {ip}: already in this VIP at line {line}"));
            continue;
        }
        seen.insert(ip, b.address.span());
        backends.push(Backend {
            address: ip,
            weight,
            check,
            inhibit_on_failure: b.inhibit_on_failure.unwrap_or(false),
        });
    }
    Some(Vip {
        address: vip_ip?,
        port,
        protocol,
        interface: interface.clone(),
        interface_at: position(text, v.interface.span().start),
        ring_size,
        hash: v.hash.unwrap_or_default(),
        fragments: v.fragments.as_ref().is_some_and(|f| *f.get_ref()),
        quorum,
        hysteresis,
        sorry_server,
        backends,
        announce: announce::vip_announce(v.announce.as_ref(), has_announce, problems),
    })
}

fn ring_size(r: &Spanned<i64>, problems: &mut Problems) -> u32 {
    let Some(size) = int_in::<u32>(r, "ring_size", 2..=i64::from(MAX_RING_SIZE), problems) else {
        return DEFAULT_RING_SIZE;
    };
    if !is_prime(size) {
        let next = (size..=MAX_RING_SIZE).find(|&n| is_prime(n));
        let hint = next.map(|n| format!(" (the next prime is {n})")).unwrap_or_default();
        problems.push(r.span(), format!("ring_size {size} is not prime{hint}"));
        return DEFAULT_RING_SIZE;
    }
    size
}

/// The loader sizes one ring array for `max_vips` VIPs of two regions each,
/// every region as large as the largest ring: that count must fit a `u32`.
fn ring_memory(vips: &[Vip], ring_spans: &[Span], global: &Global, problems: &mut Problems) {
    let Some((largest, at)) = vips.iter().zip(ring_spans).max_by_key(|(v, _)| v.ring_size) else { return };
    let slots = u64::from(global.max_vips) * 2 * u64::from(largest.ring_size);
    if slots > u64::from(u32::MAX) {
        problems.push(
            at.clone(),
            format!(
                "ring_size {} with global.max_vips = {} needs {slots} ring slots, more than the ring array can hold ({}): lower one of them",
                largest.ring_size,
                global.max_vips,
                u32::MAX
            ),
        );
    }
}

fn address(v: &Spanned<String>, what: &str, problems: &mut Problems) -> Option<IpAddr> {
    let text = v.get_ref();
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            let hint = if text.contains('/') {
                "write the address without a prefix length"
            } else if text.starts_with('[') || text.matches(':').count() == 1 {
                "write the address without brackets or a port"
            } else {
                "expected an IPv4 or IPv6 address"
            };
            problems.push(v.span(), format!("bad {what} \"{}\": {hint}", text.escape_debug()));
            return None;
        }
    };
    let unusable = match ip {
        _ if ip.is_unspecified() => Some("unspecified"),
        _ if ip.is_loopback() => Some("a loopback address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    };
    if let Some(why) = unusable {
        problems.push(v.span(), format!("{what} {ip} is {why}"));
        return None;
    }
    Some(ip)
}

/// Direct routing forwards the packet unchanged apart from the MAC: a
/// backend of the other family could never accept it.
fn same_family(ip: IpAddr, vip: Option<IpAddr>, at: Span, what: &str, problems: &mut Problems) -> bool {
    let Some(vip) = vip else { return true };
    if ip.is_ipv4() == vip.is_ipv4() {
        return true;
    }
    let family = |ip: IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    problems.push(at, format!("{what} {ip} is {} but the VIP {vip} is {}", family(ip), family(vip)));
    false
}

#[cfg(test)]
mod metrics_key {
    use std::net::SocketAddr;

    use super::DEFAULT_METRICS;
    use crate::config::Config;

    fn metrics(text: &str) -> Result<Option<SocketAddr>, String> {
        Config::from_str(text, "lb.toml").map(|c| c.global.metrics).map_err(|e| e.to_string())
    }

    #[test]
    fn default_is_loopback_9650() {
        assert_eq!(metrics(""), Ok(Some(DEFAULT_METRICS)));
        assert_eq!(DEFAULT_METRICS.to_string(), "127.0.0.1:9650");
    }

    #[test]
    fn empty_turns_it_off_and_any_address_is_taken() {
        assert_eq!(metrics("[global]\nmetrics = \"\"\n"), Ok(None));
        assert_eq!(metrics("[global]\nmetrics = \"0.0.0.0:9100\"\n"), Ok(Some("0.0.0.0:9100".parse().unwrap())));
        assert_eq!(metrics("[global]\nmetrics = \"[::1]:9650\"\n"), Ok(Some("[::1]:9650".parse().unwrap())));
    }

    #[test]
    fn a_bad_address_names_its_place() {
        assert_eq!(
            metrics("[global]\nmetrics = \"localhost:80\"\n"),
            Err("lb.toml:2:11: metrics \"localhost:80\" is not ADDRESS:PORT (\"127.0.0.1:9650\", \"[::1]:9650\"; \
                 \"\" turns the listener off)"
                .to_owned())
        );
        assert!(metrics("[global]\nmetrics = 9650\n").unwrap_err().starts_with("lb.toml:2:"));
    }
}
