//! keepalived's checkers to lb's `check` tables. keepalived's defaults
//! (`delay_loop` 60 s, `connect_timeout` 5 s, `retry` 1 or 0 for
//! MISC_CHECK, `delay_before_retry` 1 s or 3 s for HTTP) match lb's except
//! the interval, which is written out.

use std::{net::IpAddr, time::Duration};

use super::{
    Cx,
    command::{self, Command, User},
};
use crate::{
    config::DnsType,
    import::{
        emit::{Table, Value},
        tree::Node,
    },
};

/// Every checker keepalived 2.2.7 has.
pub(super) const KINDS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "UDP_CHECK",
    "DNS_CHECK",
    "SMTP_CHECK",
    "BFD_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
];

pub(super) const KEYWORDS: &[&str] = &[
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "UDP_CHECK",
    "DNS_CHECK",
    "connect_ip",
    "connect_port",
    "bindto",
    "connect_timeout",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "warmup",
    "url",
    "path",
    "digest",
    "status_code",
    "misc_path",
    "misc_timeout",
    "misc_dynamic",
];

/// keepalived's `delay_loop` default.
const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);

/// Timing a virtual server or real server gives the checkers below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Defaults {
    pub delay_loop: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub retry: Option<i64>,
    pub delay_before_retry: Option<Duration>,
    pub warmup: Option<Duration>,
    pub virtualhost: Option<String>,
}

/// The check of one checker block; `Err` says why the kind is refused,
/// `Ok(None)` that it could not be imported (the errors are reported).
pub(super) fn check(
    cx: &mut Cx<'_>,
    node: &Node,
    defaults: &Defaults,
    address: IpAddr,
    rs_port: i64,
    vip_port: i64,
) -> Result<Option<Table>, String> {
    let kind = node.name();
    let ty = match kind {
        "TCP_CHECK" => "tcp",
        "HTTP_GET" => "http",
        "SSL_GET" => "https",
        "MISC_CHECK" => "script",
        "UDP_CHECK" => "udp",
        "DNS_CHECK" => "dns",
        other => {
            return Err(format!("{other} is not supported: lb checks with TCP, HTTP, HTTPS, UDP, DNS and scripts"));
        }
    };
    cx.extra_args(node, 0);
    let mut d = defaults.clone();
    let mut port = rs_port;
    let mut t = Table::new("vip.backend.check", false);
    t.set("type", Value::str(ty));
    let mut urls: Vec<&Node> = Vec::new();
    let mut sni = false;
    let mut command: Option<Command> = None;
    let mut misc_timeout: Option<Duration> = None;
    let mut payload: Option<String> = None;
    let mut reply: Option<Option<String>> = None;
    let mut dynamic = false;
    let mut user: Option<String> = None;
    let mut query_type: Option<DnsType> = None;
    let mut query_name: Option<String> = None;
    let block = cx.block(node);
    for n in block {
        if n.block.is_none() {
            d.read(cx, n);
        }
    }
    for n in block {
        let key = n.name();
        if key != "url" {
            cx.no_block(n);
        }
        match (key, ty) {
            ("delay_loop" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup" | "virtualhost", _) => {}
            ("nb_get_retry", "http" | "https") => d.retry = cx.number_arg(n, 0..=999).or(d.retry),
            ("nb_get_retry", _) => cx.report.warn(
                n.at(),
                format!(
                    "nb_get_retry: keepalived 2.2.7 does not know it in {kind} (\"Unknown keyword\") and checks with its \
                     default retry; imported as keepalived ran it: for more retries write `retry N` (fall = N + 1)"
                ),
            ),
            ("connect_port", "tcp" | "http" | "https" | "udp" | "dns") => port = cx.number_arg(n, 1..=65535).unwrap_or(port),
            ("connect_ip", "tcp" | "http" | "https" | "udp" | "dns") => {
                if let Some(w) = cx.arg(n, 0, "an address")
                    && let Some(ip) = cx.address(w, "connect_ip")
                    && ip != address
                {
                    cx.report.warn(
                        w.at,
                        format!("connect_ip {ip}: lb checks a real server at its own address, {address}: imported so"),
                    );
                }
                cx.extra_args(n, 1);
            }
            ("bindto" | "bind_port" | "bind_if" | "fwmark", _) => {
                cx.ignored(n, "lb's checks leave from the address and port the kernel picks")
            }
            ("url", "http" | "https") => urls.push(n),
            ("enable_sni", "https") => sni = cx.flag(n),
            ("http_protocol" | "fast_recovery" | "tls_compliant", "http" | "https") => {
                cx.ignored(n, "lb's HTTP checks send an HTTP/1.1 GET with Connection: close")
            }
            ("misc_path", "script") => command = command::script(cx, n, User::NotTaken).map(|s| s.command),
            ("misc_timeout", "script") => misc_timeout = cx.timer_arg(n),
            ("misc_dynamic", "script") => dynamic = cx.flag(n),
            ("user", "script") => {
                if let Some(u) = cx.arg(n, 0, "a user name") {
                    user = Some(u.text.clone());
                }
                if let Some(g) = n.args.get(1) {
                    cx.report.warn(g.at, format!("group {}: lb runs scripts with the user's own group: not imported", g.text));
                }
                cx.extra_args(n, 2);
            }
            ("payload", "udp") => {
                payload = cx.arg(n, 0, "hex bytes").and_then(|w| hex(cx, w, "payload"));
                cx.extra_args(n, 1);
            }
            ("require_reply", "udp") => {
                reply = Some(n.args.first().and_then(|w| hex(cx, w, "require_reply")));
                cx.extra_args(n, 1);
            }
            ("type", "dns") => {
                if let Some(w) = cx.arg(n, 0, "a query type") {
                    query_type = DnsType::from_name(&w.text);
                    if query_type.is_none() {
                        cx.report.warn(
                            w.at,
                            format!("DNS check type {}: keepalived does not know it and queries SOA: imported so", w.text),
                        );
                    }
                }
                cx.extra_args(n, 1);
            }
            ("name", "dns") => {
                if let Some(w) = cx.arg(n, 0, "a name") {
                    query_name = Some(w.text.clone());
                }
                cx.extra_args(n, 1);
            }
            ("min_reply_length" | "max_reply_length", "udp") => {
                cx.ignored(n, "lb's udp check matches the reply's content only")
            }
            _ => cx.unknown(n, kind),
        }
    }
    let interval = d.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    if d.delay_loop.is_some() {
        t.set("interval", Value::duration(interval));
    } else {
        t.set_noted("interval", Value::duration(interval), "keepalived's default delay_loop");
    }
    match (ty, misc_timeout.or(d.connect_timeout)) {
        ("script", None) => {
            t.set_noted("timeout", Value::duration(interval), "keepalived's default misc_timeout: delay_loop")
        }
        (_, Some(timeout)) if timeout.is_zero() => {
            cx.report.warn(node.at(), "a timeout of 0: lb needs one: imported as 1ms");
            t.set("timeout", Value::duration(Duration::from_millis(1)));
        }
        (_, Some(timeout)) => t.set("timeout", Value::duration(timeout)),
        (_, None) => {}
    }
    if let Some(retry) = d.retry {
        t.set_noted("fall", Value::Int(retry + 1), format!("retry {retry}: down after {} failures", retry + 1));
    }
    if let Some(delay) = d.delay_before_retry {
        t.set("delay_before_retry", Value::duration(delay));
    }
    if let Some(w) = d.warmup {
        t.set("warmup", Value::duration(w));
    }
    if ty != "script" && (port != vip_port || vip_port == 0) {
        t.set("port", Value::Int(port));
    }
    match ty {
        "http" | "https" => http(cx, node, &mut t, &urls, &d, sni),
        "script" => {
            let Some(c) = command else {
                cx.report.error(
                    node.at(),
                    "MISC_CHECK without a usable misc_path: the real server is imported without a check",
                );
                return Ok(None);
            };
            t.set("command", c.value());
            if let Some(u) = user {
                t.set("user", Value::str(u));
            }
            if dynamic {
                t.set("dynamic_weight", Value::Bool(true));
            }
        }
        "udp" => {
            if let Some(p) = payload {
                t.set("payload_hex", Value::str(p));
            }
            match reply {
                Some(Some(r)) => t.set("expect_hex", Value::str(r)),
                Some(None) => {}
                None => cx.report.warn(
                    node.at(),
                    "UDP_CHECK without require_reply: keepalived counted \"no ICMP error\" as up; lb's udp check \
                     waits for a reply, so a service that does not answer the payload is marked down",
                ),
            }
        }
        "dns" => {
            // keepalived's defaults (SOA of the root) are lb's: written out
            // only where the file says something else.
            if let Some(q) = query_type {
                t.set("query_type", Value::str(q.name()));
            }
            if let Some(name) = query_name {
                t.set("query_name", Value::str(name));
            }
        }
        _ => {}
    }
    Ok(Some(t))
}

fn http(cx: &mut Cx<'_>, node: &Node, t: &mut Table, urls: &[&Node], d: &Defaults, sni: bool) {
    let mut host = d.virtualhost.clone();
    if let Some(extra) = urls.get(1) {
        cx.report.warn(
            extra.at(),
            "lb's HTTP check fetches one URL: only the first url block is imported, so the real server stays up \
             when only this one would fail",
        );
    }
    match urls.first() {
        None => cx.report.warn(node.at(), format!("{} without a url block: imported as a GET of /", node.name())),
        Some(url) => {
            cx.extra_args(url, 0);
            for n in cx.block(url) {
                cx.no_block(n);
                match n.name() {
                    "path" => {
                        if let Some(p) = cx.arg(n, 0, "a path") {
                            t.set("path", Value::str(&p.text));
                        }
                        cx.extra_args(n, 1);
                    }
                    "digest" => {
                        if let Some(w) = cx.arg(n, 0, "an MD5 sum") {
                            if w.text.len() == 32 && w.text.chars().all(|c| c.is_ascii_hexdigit()) {
                                t.set("digest", Value::str(w.text.to_ascii_lowercase()));
                            } else {
                                cx.report.error(
                                    w.at,
                                    format!("digest \"{}\": expected 32 hex digits: not imported", w.text),
                                );
                            }
                        }
                        cx.extra_args(n, 1);
                    }
                    "status_code" => {
                        let codes: Vec<Value> = n.args.iter().filter_map(|w| status(cx, &w.text, w.at)).collect();
                        if !codes.is_empty() {
                            t.set("status", Value::Array(codes));
                        }
                    }
                    "virtualhost" => {
                        host = cx.arg(n, 0, "a host name").map(|w| w.text.clone());
                        cx.extra_args(n, 1);
                    }
                    "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
                    | "regex_max_offset" => cx.ignored(
                        n,
                        "lb matches an HTTP body by digest or by a plain substring (body_contains in lb.toml)",
                    ),
                    _ => cx.unknown(n, "url"),
                }
            }
        }
    }
    if let Some(h) = host {
        if sni {
            t.set("sni", Value::str(&h));
        }
        t.set("host", Value::str(h));
    }
}

fn status(cx: &mut Cx<'_>, text: &str, at: crate::import::diag::Pos) -> Option<Value> {
    let code = |s: &str| s.parse::<i64>().ok().filter(|c| (100..=599).contains(c));
    match text.split_once('-') {
        None => match code(text) {
            Some(c) => Some(Value::Int(c)),
            None => {
                cx.report.error(at, format!("status_code {text}: expected 100..=599: not imported"));
                None
            }
        },
        Some((lo, hi)) => match (code(lo), code(hi)) {
            (Some(l), Some(h)) if l <= h => Some(Value::str(format!("{l}-{h}"))),
            _ => {
                cx.report.error(at, format!("status_code {text}: expected a range such as 200-299: not imported"));
                None
            }
        },
    }
}

fn hex(cx: &mut Cx<'_>, w: &crate::import::words::Word, what: &str) -> Option<String> {
    let text = w.text.trim_start_matches("0x");
    if !text.is_empty() && text.len().is_multiple_of(2) && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Some(text.to_ascii_lowercase())
    } else {
        cx.report.error(w.at, format!("{what} \"{}\": expected pairs of hex digits: not imported", w.text));
        None
    }
}
