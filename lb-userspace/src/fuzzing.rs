//! The checks the fuzz targets (`fuzz/fuzz_targets/`) run on every input,
//! one function per parser of untrusted or operator input. Each panics when
//! something that must hold does not, and returns quietly otherwise: bad
//! input may be refused, never crash the agent or come out garbled.
//!
//! They live here, not in the fuzz crate, so that a plain `cargo test`
//! replays every saved crash (`fuzz/regressions/TARGET/`) on stable Rust,
//! without libFuzzer.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::RouteNetlinkMessage;

use crate::{
    agent::control::Request,
    config::{BodyMatch, Config, HttpCheck, StatusCodes},
    health::{
        dns::{self, Reply as DnsReply},
        half_open::packet::{Reply, parse_reply},
        http::judge_response,
    },
    import::{self, Host, Options, Severity},
    neigh::{
        netlink::{Incoming, received},
        state::{Resolution, classify},
    },
    vrrp::{
        packet::{Addresses, Advertisement, Auth, ChecksumKind, IP_PROTO_VRRP, MULTICAST_V4, PseudoHeader, TTL},
        receive::{Filter, IpHeader, accept},
        socket::parse_ipv4,
    },
};

/// A target's checks: they panic on what must not happen.
pub type Check = fn(&[u8]);

/// Every target, by the name of its fuzz target and its directories under `fuzz/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("vrrp_advert", vrrp_advert),
    ("half_open_reply", half_open_reply),
    ("control_request", control_request),
    ("config", config),
    ("keepalived_import", keepalived_import),
    ("neigh_netlink", neigh_netlink),
    ("http_response", http_response),
    ("dns_reply", dns_reply),
];

/// A VRRP packet as a raw socket hands it over, through the IPv4 header
/// parser (when the first byte is even) or with an IPv6 header's addresses
/// and hop limit taken from the input (when odd), then the decoder and the
/// receive checks.
///
/// Bit 1 of the first byte rewrites the checksum to a valid one first, so
/// that the fuzzer reaches what lies behind it; bit 2 checks the advert
/// against a filter made from its own fields, which must let it through.
///
/// What must hold: the IPv4 parser's payload lies inside the packet; a
/// decoded advert encodes to a message that decodes back to it; and the
/// receive checks agree with the decoder.
pub fn vrrp_advert(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (header, payload) = if mode & 1 == 0 {
        let Some(info) = parse_ipv4(rest) else { return };
        let end = info.offset.checked_add(info.len).expect("payload end overflows");
        assert!(end <= rest.len(), "payload {}..{end} outside a {}-byte packet", info.offset, rest.len());
        (info.header, &rest[info.offset..end])
    } else {
        let Some((addrs, payload)) = rest.split_first_chunk::<33>() else { return };
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[..16]).expect("16 bytes"));
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[16..32]).expect("16 bytes"));
        (IpHeader { src: IpAddr::V6(src), dst: IpAddr::V6(dst), ttl: addrs[32] }, payload)
    };
    let ph = PseudoHeader::new(header.src, header.dst).expect("one family per header");
    let mut payload = payload.to_vec();
    if mode & 2 != 0 {
        let kind = [ChecksumKind::PseudoHeader, ChecksumKind::MessageOnly, ChecksumKind::PseudoHeaderMulticastDst]
            [usize::from(mode >> 4) % 3];
        fix_vrrp_checksum(&mut payload, &ph, kind);
    }

    let decoded = Advertisement::decode(&payload, &ph);
    if let Ok((advert, kind)) = &decoded {
        let wire = advert.encode(&ph, *kind).unwrap_or_else(|e| panic!("decoded {advert:?} does not encode: {e}"));
        assert_eq!(wire.len(), payload.len(), "{advert:?} encodes to another length");
        let again = Advertisement::decode(&wire, &ph).unwrap_or_else(|e| panic!("{advert:?} re-encoded: {e}"));
        assert_eq!(&again.0, advert, "decode(encode(x)) != x");
    }

    let own = mode & 4 != 0;
    let filter = match (&decoded, own) {
        (Ok((advert, _)), true) => Filter {
            version: advert.version,
            vrid: advert.vrid,
            auth: advert.auth,
            addresses: advert.addresses.clone(),
            unicast_peers: if mode & 8 != 0 { vec![header.src] } else { Vec::new() },
        },
        _ => Filter {
            version: if mode & 8 != 0 { crate::vrrp::Version::V3 } else { crate::vrrp::Version::V2 },
            vrid: payload.get(1).copied().unwrap_or(1),
            auth: if mode & 16 != 0 { Auth::pass(b"secret") } else { Auth::None },
            addresses: if header.src.is_ipv6() {
                Addresses::V6(vec![Ipv6Addr::LOCALHOST])
            } else {
                Addresses::V4(vec![Ipv4Addr::LOCALHOST])
            },
            unicast_peers: Vec::new(),
        },
    };
    let accepted = accept(&filter, &header, &payload);
    match (&decoded, &accepted) {
        (Err(_), Ok(advert)) => panic!("the receive checks took {advert:?}, which does not decode"),
        (Ok((advert, _)), Ok(taken)) => assert_eq!(advert, taken, "the receive checks changed the advert"),
        _ => {}
    }
    let multicast_ok = header.ttl == TTL || !filter.unicast_peers.is_empty();
    if own
        && multicast_ok
        && let Ok((advert, _)) = &decoded
    {
        assert_eq!(accepted.as_ref().ok(), Some(advert), "an advert matching its own filter was refused");
    }
}

/// Writes the checksum `kind` asks for into a VRRP message of 8 bytes or more.
/// Written out here because the decoder's own is private, and a second
/// implementation is a check on it.
fn fix_vrrp_checksum(payload: &mut [u8], ph: &PseudoHeader, kind: ChecksumKind) {
    if payload.len() < 8 {
        return;
    }
    payload[6..8].fill(0);
    let v3 = payload[0] >> 4 == 3;
    let mut bytes = Vec::new();
    match *ph {
        PseudoHeader::V4 { src, dst } if v3 && kind != ChecksumKind::MessageOnly => {
            let dst = if kind == ChecksumKind::PseudoHeaderMulticastDst { MULTICAST_V4 } else { dst };
            bytes.extend_from_slice(&src.octets());
            bytes.extend_from_slice(&dst.octets());
            bytes.extend_from_slice(&[0, IP_PROTO_VRRP]);
            bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        PseudoHeader::V6 { src, dst } => {
            bytes.extend_from_slice(&src.octets());
            bytes.extend_from_slice(&dst.octets());
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, IP_PROTO_VRRP]);
        }
        PseudoHeader::V4 { .. } => {}
    }
    bytes.extend_from_slice(payload);
    let sum = internet_checksum(&bytes);
    payload[6..8].copy_from_slice(&sum.to_be_bytes());
}

/// RFC 1071.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes.chunks(2).map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A segment from the half-open checker's raw socket: IPv4 with its IP
/// header when the first byte is even, else IPv6 from the TCP header on.
/// A reply is only ever a segment with ACK set whose fields are read from
/// where the TCP header says.
pub fn half_open_reply(data: &[u8]) {
    let Some((&mode, packet)) = data.split_first() else { return };
    let ipv6 = mode & 1 != 0;
    let Some(reply) = parse_reply(ipv6, packet) else { return };
    let tcp = if ipv6 { packet } else { &packet[usize::from(packet[0] & 0x0f) * 4..] };
    assert!(tcp.len() >= 20, "a reply from a {}-byte TCP header", tcp.len());
    assert_ne!(tcp[13] & 0x10, 0, "a reply without ACK");
    assert_eq!(reply.kind == Reply::Reset, tcp[13] & 0x04 != 0, "RST flag and reply kind disagree");
    assert_eq!(reply.source_port, u16::from_be_bytes([tcp[0], tcp[1]]));
    assert_eq!(reply.dest_port, u16::from_be_bytes([tcp[2], tcp[3]]));
    assert_eq!(reply.ack, u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]));
}

/// A datagram answering the DNS check's query, whose id is the input's
/// first two bytes. What must hold: only a reply with that id and the QR
/// bit counts as an answer, and its RCODE is the header's low four bits.
pub fn dns_reply(data: &[u8]) {
    let Some(id) = data.get(..2) else { return };
    let id = u16::from_be_bytes([id[0], id[1]]);
    let reply = &data[2..];
    match dns::read_reply(id, reply) {
        DnsReply::Unrelated => {}
        DnsReply::Answered { rcode } => {
            assert!(reply.len() >= 12, "an answer from {} bytes", reply.len());
            assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), id, "an answer to another id");
            assert_ne!(reply[2] & 0x80, 0, "a query taken for an answer");
            assert_eq!(rcode, reply[3] & 0x0f);
        }
    }
}

/// One line on the control socket. A request that parses serializes back to
/// JSON that parses to the same request.
pub fn control_request(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Ok(request) = serde_json::from_str::<Request>(line) else { return };
    let json = serde_json::to_string(&request).expect("a request serializes");
    let again: Request = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
    assert_eq!(again, request, "a request does not round trip through {json}");
}

/// An lb.toml through parsing and validation. A refusal lists at least one
/// problem, each at a line and column inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let config = match Config::from_str(text, "fuzz.toml") {
        Ok(config) => config,
        Err(err) => {
            let errors = err.diagnostics();
            assert!(!errors.is_empty(), "a refusal without a problem: {err}");
            for d in errors {
                check_position(text, d.line, d.column, &d.message);
            }
            return;
        }
    };
    for d in &config.warnings {
        check_position(text, d.line, d.column, &d.message);
    }
    // Interfaces are checked apart from parsing; either answer keeps positions.
    for exists in [true, false] {
        if let Err(err) = config.check_interfaces(|_| exists) {
            assert!(!exists, "every interface exists, yet: {err}");
            for d in err.diagnostics() {
                check_position(text, d.line, d.column, &d.message);
            }
        }
    }
}

/// 1-based, at most one past the last line and one past the last character
/// (where "missing" and "unexpected end" point).
fn check_position(text: &str, line: usize, column: usize, message: &str) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!((1..=lines.len()).contains(&line), "line {line} of {} for {message:?}", lines.len());
    let width = lines[line - 1].chars().count();
    assert!((1..=width + 1).contains(&column), "column {column} of {width} on line {line} for {message:?}");
}

/// Where the main file is; includes are resolved against its directory.
const KEEPALIVED_CONF: &str = "/etc/keepalived/keepalived.conf";

/// A keepalived.conf through the whole import: the preprocessor, the
/// grammar, the mapping and lb's validation of the result. A `\x01` byte
/// starts another file, `/etc/keepalived/N.conf` for the N-th, so that
/// includes find something.
///
/// What must hold: every diagnostic points into a file that was read, at a
/// line and column inside it, and lb accepts every TOML text the import
/// produces (each item was checked on its own, so a refusal is a bug).
pub fn keepalived_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\x01');
    let main = parts.next().unwrap_or_default();
    let mut files = vec![(PathBuf::from(KEEPALIVED_CONF), main.to_owned())];
    files.extend(parts.enumerate().map(|(i, t)| (PathBuf::from(format!("/etc/keepalived/{i}.conf")), t.to_owned())));
    let host = MemoryHost { files };
    let options = Options { config_id: "lb1".to_owned(), ..Options::default() };
    let imported = import::import(Path::new(KEEPALIVED_CONF), &options, &host).expect("the main file is there");
    for d in &imported.diagnostics {
        let (_, text) = host
            .files
            .iter()
            .find(|(p, _)| **p == *d.file)
            .unwrap_or_else(|| panic!("{d}: a file that was never read"));
        check_position(text, d.line as usize, d.column as usize, &d.message);
    }
    assert!(
        imported.rejected.is_empty(),
        "lb refuses the imported text:\n{}\n--- because:\n{}",
        imported.toml,
        imported.rejected.join("\n")
    );
    let failed = imported.diagnostics.iter().any(|d| d.severity == Severity::Error);
    assert_eq!(imported.failed(), failed);
}

/// The files of one import input, for [`keepalived_import`].
struct MemoryHost {
    files: Vec<(PathBuf, String)>,
}

impl Host for MemoryHost {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = glob::Pattern::new(pattern).map_err(|e| e.to_string())?;
        Ok(self.files.iter().map(|(p, _)| p).filter(|p| pattern.matches_path(p)).cloned().collect())
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        ["killall", "true", "pgrep"].contains(&name).then(|| Path::new("/usr/bin").join(name))
    }
}

/// A route netlink message as the neighbour watcher reads it. An error's
/// errno is positive, and a neighbour entry classifies as resolved only with
/// a six-byte address.
pub fn neigh_netlink(data: &[u8]) {
    let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) else { return };
    let got = received(msg);
    // Checked here too, not only by the overflow check, which release builds leave out.
    if let Incoming::Error { errno } = got.what {
        assert!(errno >= 0, "a negative errno {errno}");
    }
    if let Incoming::Neigh { state, lladdr, .. } = got.what
        && let Resolution::Resolved(mac) = classify(state, lladdr.as_deref())
    {
        assert_eq!(lladdr.as_deref(), Some(&mac[..]), "resolved to an address the entry does not hold");
    }
}

/// A backend's answer to an `HTTP_GET` check; the first byte picks what
/// the check looks for in the body (nothing, a text, an MD5). Whatever the
/// bytes, the check ends with a verdict, and passes only a response with a
/// status line.
pub fn http_response(data: &[u8]) {
    let Some((&mode, response)) = data.split_first() else { return };
    let body = match mode % 3 {
        0 => BodyMatch::Any,
        1 => BodyMatch::Contains("ok".to_owned()),
        _ => BodyMatch::Md5([0; 16]),
    };
    let check = HttpCheck {
        port: 80,
        path: "/health".to_owned(),
        host: None,
        status: StatusCodes { ranges: vec![200..=299] },
        body,
    };
    if let Ok(reason) = judge_response(&check, response) {
        assert!(response.starts_with(b"HTTP/"), "up ({reason}) without a status line");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::TARGETS;

    /// Every saved input of every target, replayed through its checks: the
    /// crashes fuzzing found (`fuzz/regressions/`) and the seeds (`fuzz/corpus/`).
    #[test]
    fn saved_inputs_pass_their_checks() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for (name, check) in TARGETS {
            for kind in ["regressions", "corpus"] {
                let dir = fuzz.join(kind).join(name);
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                let mut paths: Vec<_> = entries.map(|e| e.expect("a directory entry").path()).collect();
                paths.sort();
                for path in paths {
                    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    eprintln!("replaying {}", path.display());
                    check(&data);
                    replayed += 1;
                }
            }
        }
        assert!(replayed > 0, "no saved inputs under {}", fuzz.display());
    }
}
