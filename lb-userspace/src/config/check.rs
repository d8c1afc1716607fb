//! Health checks: a VIP's `[vip.check]` gives defaults, a backend's `check`
//! overrides them key by key, and the result is validated for its kind with
//! keepalived's defaults filled in.

use std::time::Duration;

use toml::Spanned;

use super::{
    duration,
    fields::{fall_rise, int_in},
    model::{CheckType, RawCheck, RawCommand, RawStatus, StatusItem},
    span::{Problems, Span},
    types::{
        BodyMatch, Check, CheckKind, DnsCheck, DnsType, HttpCheck, ScriptCheck, ScriptCommand, StatusCodes, Tls,
        UdpCheck,
    },
};

/// keepalived's `delay_loop` is 60 s, too slow for a load balancer that is
/// expected to stop sending new flows to a dead backend within seconds.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// keepalived's `connect_timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's `retry` 1, plus the failure that is retried.
pub(crate) const DEFAULT_FALL: u32 = 2;
/// keepalived's MISC_CHECK does not retry (`retry` 0).
pub(crate) const DEFAULT_SCRIPT_FALL: u32 = 1;
pub(crate) const DEFAULT_RISE: u32 = 1;
pub(crate) const DEFAULT_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);
/// keepalived's HTTP_GET and SSL_GET wait longer before a retry.
pub(crate) const DEFAULT_HTTP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(3);
/// keepalived's DNS_CHECK defaults: the root's SOA.
pub(crate) const DEFAULT_DNS_TYPE: DnsType = DnsType::Soa;
/// keepalived's DNS_CHECK retries 3 times (`retry` 3), plus the failure
/// that is retried.
pub(crate) const DEFAULT_DNS_FALL: u32 = 4;
/// The longest name a query can carry (RFC 1035 2.3.4: 255 bytes on the
/// wire, which is 253 characters written without the trailing dot).
const MAX_DNS_NAME: usize = 253;
/// The largest UDP payload that fits one IPv4 datagram.
const MAX_UDP_PAYLOAD: usize = 65_507;

/// What a check needs to know about where it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context<'a> {
    /// The VIP's port, which checks probe unless they name a `port`; 0 = none.
    pub vip_port: u16,
    pub script_user: &'a str,
    /// The file's text, to turn spans into positions kept for later checks.
    pub text: &'a str,
}

/// Validates a VIP's check defaults once, on their own, so that a mistake in
/// them is reported even when every backend overrides it or there are none.
pub(crate) fn vip_defaults(vip: Option<&Spanned<RawCheck>>, cx: Context<'_>, problems: &mut Problems) {
    if let Some(vip) = vip {
        build(vip.get_ref(), vip.span(), Mode::Defaults, cx, problems);
    }
}

/// The check of one backend: its own keys over the VIP's defaults. `None`
/// when neither has a check, or the result is `type = "none"`.
pub(crate) fn resolve(
    vip: Option<&Spanned<RawCheck>>,
    own: Option<&Spanned<RawCheck>>,
    cx: Context<'_>,
    problems: &mut Problems,
) -> Option<Check> {
    let (merged, table) = match (vip, own) {
        (None, None) => return None,
        (Some(vip), None) => (vip.get_ref().clone(), vip.span()),
        (None, Some(own)) => (own.get_ref().clone(), own.span()),
        (Some(vip), Some(own)) => (overlay(vip.get_ref(), own.get_ref()), own.span()),
    };
    build(&merged, table, Mode::Backend, cx, problems)
}

/// VIP defaults may leave out what every backend then supplies (a `port`
/// when the VIP takes every port, a script's `command`); a backend's
/// resolved check must be complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Defaults,
    Backend,
}

/// Timing keys are always inherited. Kind-specific keys only when the
/// backend keeps the VIP's kind: an http `path` means nothing to a tcp check.
fn overlay(vip: &RawCheck, own: &RawCheck) -> RawCheck {
    let kind_of = |c: &RawCheck| c.kind.as_ref().map(|k| *k.get_ref());
    let same_kind = own.kind.is_none() || kind_of(own) == kind_of(vip);
    macro_rules! merge {
        (timing: $($t:ident),*; kind: $($k:ident),*) => {
            RawCheck {
                $($t: own.$t.clone().or_else(|| vip.$t.clone()),)*
                $($k: own.$k.clone().or_else(|| if same_kind { vip.$k.clone() } else { None }),)*
            }
        };
    }
    merge!(
        timing: kind, interval, timeout, fall, rise, delay_before_retry, warmup;
        kind: port, path, host, status, body_contains, digest, sni, verify,
            payload, payload_hex, expect, expect_hex, query_type, query_name, command, shell, user, dynamic_weight
    )
}

fn build(c: &RawCheck, table: Span, mode: Mode, cx: Context<'_>, problems: &mut Problems) -> Option<Check> {
    let kind = c.kind.as_ref().map(|k| (*k.get_ref(), k.span()));
    let ty = kind.as_ref().map(|k| k.0);
    not_applicable(c, ty, problems);
    let interval = duration::spanned(&c.interval, "interval", true, problems).unwrap_or(DEFAULT_INTERVAL);
    let timeout = duration::spanned(&c.timeout, "timeout", true, problems).unwrap_or(DEFAULT_TIMEOUT);
    let default_fall = match ty {
        Some(CheckType::Script) => DEFAULT_SCRIPT_FALL,
        Some(CheckType::Dns) => DEFAULT_DNS_FALL,
        _ => DEFAULT_FALL,
    };
    let fall = count(&c.fall, "fall", problems).unwrap_or(default_fall);
    let rise = count(&c.rise, "rise", problems).unwrap_or(DEFAULT_RISE);
    let default_delay = match ty {
        Some(CheckType::Http | CheckType::Https) => DEFAULT_HTTP_DELAY_BEFORE_RETRY,
        _ => DEFAULT_DELAY_BEFORE_RETRY,
    };
    let delay_before_retry =
        duration::spanned(&c.delay_before_retry, "delay_before_retry", false, problems).unwrap_or(default_delay);
    let warmup = duration::spanned(&c.warmup, "warmup", false, problems).unwrap_or(interval);

    let Some((ty, type_span)) = kind else {
        if mode == Mode::Backend {
            problems
                .push(table, "check has no `type`: expected tcp, tcp-half-open, http, https, udp, dns, script or none");
        }
        return None;
    };
    let kind = match ty {
        CheckType::None => return None,
        CheckType::Tcp => CheckKind::Tcp { port: port(c, ty, &type_span, mode, cx, problems) },
        CheckType::TcpHalfOpen => CheckKind::TcpHalfOpen { port: port(c, ty, &type_span, mode, cx, problems) },
        CheckType::Http => CheckKind::Http(http(c, ty, &type_span, mode, cx, problems)),
        CheckType::Https => {
            CheckKind::Https { http: http(c, ty, &type_span, mode, cx, problems), tls: tls(c, problems) }
        }
        CheckType::Udp => CheckKind::Udp(udp(c, &type_span, mode, cx, problems)),
        CheckType::Dns => CheckKind::Dns(dns(c, &type_span, mode, cx, problems)),
        CheckType::Script => CheckKind::Script(script(c, &type_span, mode, cx, problems)?),
    };
    Some(Check { kind, interval, timeout, fall, rise, delay_before_retry, warmup })
}

/// Refuses keys that belong to another kind of check, naming the kinds
/// they do belong to.
fn not_applicable(c: &RawCheck, ty: Option<CheckType>, problems: &mut Problems) {
    use CheckType::{Dns, Http, Https, Script, Tcp, TcpHalfOpen, Udp};
    let Some(ty) = ty else { return };
    let keys: [(&str, Option<Span>, &[CheckType]); 18] = [
        ("port", c.port.as_ref().map(Spanned::span), &[Tcp, TcpHalfOpen, Http, Https, Udp, Dns]),
        ("path", c.path.as_ref().map(Spanned::span), &[Http, Https]),
        ("host", c.host.as_ref().map(Spanned::span), &[Http, Https]),
        ("status", c.status.as_ref().map(Spanned::span), &[Http, Https]),
        ("body_contains", c.body_contains.as_ref().map(Spanned::span), &[Http, Https]),
        ("digest", c.digest.as_ref().map(Spanned::span), &[Http, Https]),
        ("sni", c.sni.as_ref().map(Spanned::span), &[Https]),
        ("verify", c.verify.as_ref().map(Spanned::span), &[Https]),
        ("payload", c.payload.as_ref().map(Spanned::span), &[Udp]),
        ("payload_hex", c.payload_hex.as_ref().map(Spanned::span), &[Udp]),
        ("expect", c.expect.as_ref().map(Spanned::span), &[Udp]),
        ("expect_hex", c.expect_hex.as_ref().map(Spanned::span), &[Udp]),
        ("query_type", c.query_type.as_ref().map(Spanned::span), &[Dns]),
        ("query_name", c.query_name.as_ref().map(Spanned::span), &[Dns]),
        ("command", c.command.as_ref().map(Spanned::span), &[Script]),
        ("shell", c.shell.as_ref().map(Spanned::span), &[Script]),
        ("user", c.user.as_ref().map(Spanned::span), &[Script]),
        ("dynamic_weight", c.dynamic_weight.as_ref().map(Spanned::span), &[Script]),
    ];
    for (key, at, kinds) in keys {
        if let Some(at) = at
            && !kinds.contains(&ty)
        {
            let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
            problems
                .push(at, format!("`{key}` does not apply to a {} check (only to {})", ty.name(), names.join(", ")));
        }
    }
}

fn count(v: &Option<Spanned<i64>>, key: &str, problems: &mut Problems) -> Option<u32> {
    fall_rise(v.as_ref()?, key, problems)
}

/// The port to probe: the check's own, else the VIP's.
fn port(c: &RawCheck, ty: CheckType, type_span: &Span, mode: Mode, cx: Context<'_>, problems: &mut Problems) -> u16 {
    match &c.port {
        Some(p) => int_in(p, "check port", 1..=65535, problems).unwrap_or(cx.vip_port),
        None if cx.vip_port == 0 && mode == Mode::Backend => {
            problems.push(
                type_span.clone(),
                format!("a {} check needs a `port`: the VIP takes every port (port = 0)", ty.name()),
            );
            0
        }
        None => cx.vip_port,
    }
}

fn http(
    c: &RawCheck,
    ty: CheckType,
    type_span: &Span,
    mode: Mode,
    cx: Context<'_>,
    problems: &mut Problems,
) -> HttpCheck {
    let port = port(c, ty, type_span, mode, cx, problems);
    let path = match &c.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            problems.push(p.span(), format!("path \"{}\" must start with \"/\"", p.get_ref()));
            String::from("/")
        }
        Some(p) => header_safe(p, "path", problems).unwrap_or_else(|| String::from("/")),
        None => String::from("/"),
    };
    let host = c.host.as_ref().and_then(|h| header_safe(h, "host", problems));
    let status = c.status.as_ref().map(|s| status(s, problems)).unwrap_or_default();
    let body = match (&c.body_contains, &c.digest) {
        (Some(_), Some(d)) => {
            problems.push(d.span(), "set `body_contains` or `digest`, not both");
            BodyMatch::Any
        }
        (Some(text), None) if text.get_ref().is_empty() => {
            problems.push(text.span(), "body_contains is empty: leave it out to accept any body");
            BodyMatch::Any
        }
        (Some(text), None) => BodyMatch::Contains(text.get_ref().clone()),
        (None, Some(d)) => match hex(d.get_ref()).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(md5) => BodyMatch::Md5(md5),
            None => {
                problems
                    .push(d.span(), format!("digest \"{}\" is not an MD5 sum: expected 32 hex digits", d.get_ref()));
                BodyMatch::Any
            }
        },
        (None, None) => BodyMatch::Any,
    };
    HttpCheck { port, path, host, status, body }
}

/// Text that goes into a request line or header: a space or control
/// character would let it end the line and change the request.
fn header_safe(v: &Spanned<String>, key: &str, problems: &mut Problems) -> Option<String> {
    let text = v.get_ref();
    if text.is_empty() || text.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        problems.push(
            v.span(),
            format!("{key} \"{}\" is empty or contains spaces or control characters", text.escape_debug()),
        );
        return None;
    }
    Some(text.clone())
}

fn status(v: &Spanned<RawStatus>, problems: &mut Problems) -> StatusCodes {
    let items: Vec<(&StatusItem, Span)> = match v.get_ref() {
        RawStatus::One(item) => vec![(item, v.span())],
        RawStatus::List(items) => items.iter().map(|i| (i.get_ref(), i.span())).collect(),
    };
    if items.is_empty() {
        problems.push(v.span(), "status lists no codes: leave it out for 200-299");
        return StatusCodes::default();
    }
    let mut ranges = Vec::new();
    for (item, at) in items {
        match status_range(item) {
            Ok(r) => ranges.push(r),
            Err(message) => problems.push(at, message),
        }
    }
    if ranges.is_empty() { StatusCodes::default() } else { StatusCodes { ranges } }
}

fn status_range(item: &StatusItem) -> Result<std::ops::RangeInclusive<u16>, String> {
    const RANGE: std::ops::RangeInclusive<i64> = 100..=599;
    let code = |n: i64| -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(c) if RANGE.contains(&n) => Ok(c),
            _ => Err(format!("status {n} out of range 100..=599")),
        }
    };
    match item {
        StatusItem::Code(n) => code(*n).map(|c| c..=c),
        StatusItem::Text(text) => {
            let bad = || format!("bad status \"{text}\": expected a code such as 200 or a range such as \"200-299\"");
            let number = |s: &str| s.trim().parse::<i64>().map_err(|_| bad());
            let (lo, hi) = match text.split_once('-') {
                Some((lo, hi)) => (code(number(lo)?)?, code(number(hi)?)?),
                None => {
                    let c = code(number(text)?)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("status range \"{text}\" is backwards: write \"{hi}-{lo}\""));
            }
            Ok(lo..=hi)
        }
    }
}

fn tls(c: &RawCheck, problems: &mut Problems) -> Tls {
    Tls {
        sni: c.sni.as_ref().and_then(|s| header_safe(s, "sni", problems)),
        verify: c.verify.as_ref().is_some_and(|v| *v.get_ref()),
    }
}

fn udp(c: &RawCheck, type_span: &Span, mode: Mode, cx: Context<'_>, problems: &mut Problems) -> UdpCheck {
    let port = port(c, CheckType::Udp, type_span, mode, cx, problems);
    let payload = bytes(&c.payload, &c.payload_hex, "payload", problems).unwrap_or_default();
    if payload.len() > MAX_UDP_PAYLOAD {
        let at = c.payload.as_ref().or(c.payload_hex.as_ref()).map_or(type_span.clone(), Spanned::span);
        problems.push(
            at,
            format!("payload of {} bytes does not fit one datagram (at most {MAX_UDP_PAYLOAD})", payload.len()),
        );
    }
    let expect = bytes(&c.expect, &c.expect_hex, "expect", problems);
    if let Some(e) = &expect
        && e.is_empty()
    {
        let at = c.expect.as_ref().or(c.expect_hex.as_ref()).map_or(type_span.clone(), Spanned::span);
        problems.push(at, "expect is empty: leave it out to accept any reply");
    }
    UdpCheck { port, payload, expect }
}

fn dns(c: &RawCheck, type_span: &Span, mode: Mode, cx: Context<'_>, problems: &mut Problems) -> DnsCheck {
    let port = port(c, CheckType::Dns, type_span, mode, cx, problems);
    let query_type = match &c.query_type {
        None => DEFAULT_DNS_TYPE,
        Some(t) => DnsType::from_name(t.get_ref()).unwrap_or_else(|| {
            let names: Vec<&str> = DnsType::ALL.iter().map(|t| t.name()).collect();
            problems.push(t.span(), format!("unknown query_type \"{}\": expected {}", t.get_ref(), names.join(", ")));
            DEFAULT_DNS_TYPE
        }),
    };
    let query_name = match &c.query_name {
        None => String::new(),
        Some(n) => match dns_name(n.get_ref()) {
            Ok(name) => name,
            Err(why) => {
                problems.push(n.span(), format!("query_name \"{}\": {why}", n.get_ref()));
                String::new()
            }
        },
    };
    DnsCheck { port, query_type, query_name }
}

/// A name a query can carry, without its trailing dot ("." is the root, "").
fn dns_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Ok(String::new());
    }
    if name.len() > MAX_DNS_NAME {
        return Err(format!("longer than {MAX_DNS_NAME} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("{bad:?} is not allowed in a name"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("label \"{label}\" is longer than 63 characters"));
        }
    }
    Ok(name.to_owned())
}

/// `key` as text or `key_hex` as hex digits; not both.
fn bytes(
    text: &Option<Spanned<String>>,
    hex_text: &Option<Spanned<String>>,
    key: &str,
    problems: &mut Problems,
) -> Option<Vec<u8>> {
    match (text, hex_text) {
        (Some(_), Some(h)) => {
            problems.push(h.span(), format!("set `{key}` or `{key}_hex`, not both"));
            None
        }
        (Some(t), None) => Some(t.get_ref().as_bytes().to_vec()),
        (None, Some(h)) => match hex(h.get_ref()) {
            Ok(b) => Some(b),
            Err(message) => {
                problems.push(h.span(), format!("{key}_hex: {message}"));
                None
            }
        },
        (None, None) => None,
    }
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("\"{text}\" is not pairs of hex digits"));
    }
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    Ok(text.as_bytes().chunks(2).map(|p| (digit(p[0]) << 4) | digit(p[1])).collect())
}

fn script(c: &RawCheck, type_span: &Span, mode: Mode, cx: Context<'_>, problems: &mut Problems) -> Option<ScriptCheck> {
    let shell = c.shell.as_ref().is_some_and(|s| *s.get_ref());
    let Some(raw) = &c.command else {
        if mode == Mode::Backend {
            problems.push(type_span.clone(), "a script check needs a `command`");
        }
        return None;
    };
    let command = match (raw.get_ref(), shell) {
        (RawCommand::Text(text), true) if !text.trim().is_empty() => ScriptCommand::Shell(text.clone()),
        (RawCommand::Argv(argv), false) if argv.first().is_some_and(|p| p.starts_with('/')) => {
            ScriptCommand::Argv(argv.clone())
        }
        (RawCommand::Argv(argv), false) if !argv.is_empty() => {
            problems.push(
                raw.span(),
                format!("command[0] \"{}\" must be an absolute path: checks run without a shell or $PATH", argv[0]),
            );
            return None;
        }
        (RawCommand::Text(_), false) => {
            problems.push(
                raw.span(),
                "command is an argv list such as [\"/usr/local/bin/check\", \"--quick\"]; \
                 a string runs through /bin/sh only with shell = true",
            );
            return None;
        }
        (RawCommand::Argv(_), true) => {
            problems.push(raw.span(), "with shell = true, command is one string for /bin/sh -c");
            return None;
        }
        _ => {
            problems.push(raw.span(), "command is empty");
            return None;
        }
    };
    let user = match &c.user {
        Some(u) if u.get_ref().trim().is_empty() => {
            problems.push(u.span(), "user is empty");
            return None;
        }
        Some(u) => u.get_ref().clone(),
        None => cx.script_user.to_owned(),
    };
    Some(ScriptCheck {
        command,
        user,
        dynamic_weight: c.dynamic_weight.as_ref().is_some_and(|d| *d.get_ref()),
        command_at: super::span::position(cx.text, raw.span().start),
    })
}
