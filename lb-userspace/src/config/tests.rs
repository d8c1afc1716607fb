//! The configuration as operators meet it: the example, the defaults, and
//! each kind of mistake with the exact `file:line:column: message` it gets.

use std::{net::IpAddr, time::Duration};

use super::*;

fn parse(text: &str) -> Config {
    match Config::from_str(text, "lb.toml") {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn error(text: &str) -> String {
    match Config::from_str(text, "lb.toml") {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Lines 1-4: one VIP on 10.0.0.1:80/tcp; tests append from line 5.
const VIP: &str = "[[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"eth0\"\n";

fn with_vip(rest: &str) -> String {
    format!("{VIP}{rest}")
}

#[test]
fn example_parses() {
    let config = Config::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/example.toml")).unwrap();
    assert_eq!(EXAMPLE, include_str!("example.toml"));
    assert!(config.warnings.is_empty(), "{:?}", config.warning_lines());
    assert_eq!(config.vips.len(), 2);

    let web = &config.vips[0];
    assert_eq!((web.address, web.port, web.protocol), (ip("192.168.1.120"), 80, Protocol::Tcp));
    assert_eq!(web.hash, HashMode::SourceIp);
    assert_eq!(web.sorry_server, Some(ip("192.168.1.200")));
    let weights: Vec<u32> = web.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [1, 5, 5]);
    assert!(web.backends[1].inhibit_on_failure);
    let tcp = web.backends[0].check.as_ref().unwrap();
    assert_eq!(tcp.kind, CheckKind::Tcp { port: 80 });
    assert_eq!((tcp.interval, tcp.timeout, tcp.fall), (Duration::from_secs(6), Duration::from_secs(10), 4));
    let CheckKind::Http(http) = &web.backends[2].check.as_ref().unwrap().kind else { panic!("http check") };
    assert_eq!(http.path, "/healthz");
    assert!(http.status.contains(200) && http.status.contains(302) && !http.status.contains(404));
    assert_eq!(http.body, BodyMatch::Contains("ok".into()));
    // Timing from [vip.check] still applies to the http override.
    assert_eq!(web.backends[2].check.as_ref().unwrap().interval, Duration::from_secs(6));

    let dns = &config.vips[1];
    assert_eq!((dns.address, dns.protocol, dns.fragments), (ip("2001:db8:10::53"), Protocol::Udp, true));
    assert_eq!(
        dns.backends[0].check.as_ref().unwrap().kind,
        CheckKind::Dns(DnsCheck { port: 53, query_type: DnsType::Ns, query_name: String::new() })
    );
    let script = dns.backends[1].check.as_ref().unwrap();
    let CheckKind::Script(s) = &script.kind else { panic!("script check") };
    assert_eq!(s.command, ScriptCommand::Argv(vec!["/usr/local/bin/check-dns".into(), "2001:db8:10::12".into()]));
    assert_eq!((s.user.as_str(), s.dynamic_weight), ("lbcheck", true));
    assert_eq!((script.interval, script.fall), (Duration::from_secs(2), 1));

    config.check_interfaces(|name| name == "eth0").unwrap();
    assert_eq!(config.max_ring_size(), 65537);
}

#[test]
fn defaults() {
    let config = parse(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\n"));
    assert_eq!(config.source, std::path::Path::new("lb.toml"));
    let g = &config.global;
    assert_eq!(g.flows_per_cpu, lb_common::DEFAULT_FLOWS_PER_CPU);
    assert_eq!(g.max_new_flows_per_sec, lb_common::DEFAULT_FLOOD_NEW_FLOWS_PER_SEC);
    assert_eq!(g.script_user, "nobody");
    assert_eq!(g.control_socket, std::path::Path::new("/run/lb/lb.sock"));
    assert_eq!(g.max_vips, 16);
    let vip = &config.vips[0];
    assert_eq!(vip.protocol, Protocol::Tcp);
    assert_eq!(vip.ring_size, lb_common::DEFAULT_RING_SIZE);
    assert_eq!(vip.hash, HashMode::FiveTuple);
    assert!(!vip.fragments);
    assert_eq!((vip.quorum, vip.hysteresis, vip.sorry_server), (1, 0, None));
    assert_eq!(vip.interface_at, Position { line: 4, column: 13 });
    let b = &vip.backends[0];
    assert_eq!((b.weight, b.check.is_none(), b.inhibit_on_failure), (1, true, false));
}

#[test]
fn empty_file_is_a_director_without_vips() {
    let config = parse("");
    assert!(config.vips.is_empty());
    assert_eq!(config.max_ring_size(), lb_common::DEFAULT_RING_SIZE);
}

#[test]
fn check_defaults_follow_keepalived() {
    let config = parse(&with_vip(
        "[[vip.backend]]\naddress = \"10.0.1.1\"\ncheck = { type = \"tcp\" }\n\
         [[vip.backend]]\naddress = \"10.0.1.2\"\ncheck = { type = \"http\" }\n\
         [[vip.backend]]\naddress = \"10.0.1.3\"\ncheck = { type = \"script\", command = [\"/bin/true\"] }\n\
         [[vip.backend]]\naddress = \"10.0.1.4\"\ncheck = { type = \"tcp\", interval = \"1s\", warmup = \"0s\" }\n",
    ));
    let checks: Vec<&Check> = config.vips[0].backends.iter().map(|b| b.check.as_ref().unwrap()).collect();
    let tcp = checks[0];
    assert_eq!(tcp.kind, CheckKind::Tcp { port: 80 });
    assert_eq!((tcp.interval, tcp.timeout), (Duration::from_secs(5), Duration::from_secs(5)));
    assert_eq!((tcp.fall, tcp.rise), (2, 1));
    assert_eq!((tcp.delay_before_retry, tcp.warmup), (Duration::from_secs(1), Duration::from_secs(5)));
    let http = checks[1];
    assert_eq!(http.delay_before_retry, Duration::from_secs(3));
    let CheckKind::Http(h) = &http.kind else { panic!() };
    assert_eq!((h.port, h.path.as_str(), &h.status, &h.body), (80, "/", &StatusCodes::default(), &BodyMatch::Any));
    assert!(h.status.contains(204) && !h.status.contains(301));
    let script = checks[2];
    assert_eq!(script.fall, 1);
    let CheckKind::Script(s) = &script.kind else { panic!() };
    assert_eq!((s.user.as_str(), s.dynamic_weight), ("nobody", false));
    assert_eq!((checks[3].interval, checks[3].warmup), (Duration::from_secs(1), Duration::ZERO));
}

#[test]
fn backends_inherit_vip_check_defaults_key_by_key() {
    let config = parse(&with_vip(
        "[global]\nscript_user = \"lbcheck\"\n\
         [vip.check]\ntype = \"http\"\npath = \"/health\"\ninterval = \"2s\"\nfall = 3\nstatus = 200\n\
         [[vip.backend]]\naddress = \"10.0.1.1\"\n\
         [[vip.backend]]\naddress = \"10.0.1.2\"\ncheck = { path = \"/other\", timeout = \"1s\" }\n\
         [[vip.backend]]\naddress = \"10.0.1.3\"\ncheck = { type = \"tcp\", port = 8080 }\n\
         [[vip.backend]]\naddress = \"10.0.1.4\"\ncheck = { type = \"none\" }\n\
         [[vip.backend]]\naddress = \"10.0.1.5\"\ncheck = { type = \"https\", sni = \"www.example.com\", verify = true }\n\
         [[vip.backend]]\naddress = \"10.0.1.6\"\ncheck = { type = \"script\", command = \"pgrep -x app\", shell = true }\n",
    ));
    let b = &config.vips[0].backends;
    let inherited = b[0].check.as_ref().unwrap();
    let CheckKind::Http(h) = &inherited.kind else { panic!() };
    assert_eq!((h.path.as_str(), h.status.ranges.clone()), ("/health", vec![200..=200]));
    assert_eq!(
        (inherited.interval, inherited.fall, inherited.warmup),
        (Duration::from_secs(2), 3, Duration::from_secs(2))
    );

    let overridden = b[1].check.as_ref().unwrap();
    let CheckKind::Http(h) = &overridden.kind else { panic!() };
    assert_eq!((h.path.as_str(), h.status.ranges.clone()), ("/other", vec![200..=200]));
    assert_eq!((overridden.timeout, overridden.interval), (Duration::from_secs(1), Duration::from_secs(2)));

    // Another type keeps the timing but none of the http keys.
    let tcp = b[2].check.as_ref().unwrap();
    assert_eq!((tcp.kind.clone(), tcp.interval, tcp.fall), (CheckKind::Tcp { port: 8080 }, Duration::from_secs(2), 3));
    assert_eq!(tcp.delay_before_retry, Duration::from_secs(1));

    assert_eq!(b[3].check, None);

    let CheckKind::Https { http, tls } = &b[4].check.as_ref().unwrap().kind else { panic!() };
    assert_eq!(http.path, "/");
    assert_eq!(tls, &Tls { sni: Some("www.example.com".into()), verify: true });

    let CheckKind::Script(s) = &b[5].check.as_ref().unwrap().kind else { panic!() };
    assert_eq!((&s.command, s.user.as_str()), (&ScriptCommand::Shell("pgrep -x app".into()), "lbcheck"));
}

#[test]
fn durations_status_digest_and_payloads() {
    let config = parse(&with_vip(
        "[[vip.backend]]\naddress = \"10.0.1.1\"\n[vip.backend.check]\ntype = \"http\"\n\
         interval = \"1m30s\"\ntimeout = \"500ms\"\ndelay_before_retry = \"0s\"\nwarmup = \"1h\"\n\
         status = [\"200-204\", 301, \"404\"]\ndigest = \"9E107D9D372BB6826BD81D3542A419D6\"\n\
         [[vip.backend]]\naddress = \"10.0.1.2\"\n[vip.backend.check]\ntype = \"udp\"\nport = 5353\n\
         payload = \"ping\"\nexpect = \"pong\"\n",
    ));
    let c = config.vips[0].backends[0].check.as_ref().unwrap();
    assert_eq!((c.interval, c.timeout), (Duration::from_secs(90), Duration::from_millis(500)));
    assert_eq!((c.delay_before_retry, c.warmup), (Duration::ZERO, Duration::from_secs(3600)));
    let CheckKind::Http(h) = &c.kind else { panic!() };
    assert_eq!(h.status.ranges, vec![200..=204, 301..=301, 404..=404]);
    let mut md5 = [0u8; 16];
    for (i, byte) in md5.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&"9e107d9d372bb6826bd81d3542a419d6"[2 * i..2 * i + 2], 16).unwrap();
    }
    assert_eq!(h.body, BodyMatch::Md5(md5));
    let CheckKind::Udp(u) = &config.vips[0].backends[1].check.as_ref().unwrap().kind else { panic!() };
    assert_eq!((u.port, u.payload.as_slice(), u.expect.as_deref()), (5353, &b"ping"[..], Some(&b"pong"[..])));
}

#[test]
fn ipv6_vip() {
    let config = parse(
        "[[vip]]\naddress = \"2001:db8::80\"\nport = 443\ninterface = \"eth1\"\nsorry_server = \"2001:db8::99\"\n\
         [[vip.backend]]\naddress = \"2001:db8::1\"\nweight = 1000000\n\
         [[vip.backend]]\naddress = \"2001:db8::2\"\nweight = 0\n",
    );
    let vip = &config.vips[0];
    assert_eq!((vip.address, vip.port, vip.sorry_server), (ip("2001:db8::80"), 443, Some(ip("2001:db8::99"))));
    assert_eq!(vip.backends.iter().map(|b| b.weight).collect::<Vec<_>>(), [MAX_WEIGHT, 0]);
}

#[test]
fn global_table() {
    let config = parse(
        "[global]\nflows_per_cpu = 1024\nmax_new_flows_per_sec = 0\nscript_user = \"lbcheck\"\n\
         control_socket = \"/run/lb2.sock\"\nmax_vips = 512\n",
    );
    let g = config.global;
    assert_eq!((g.flows_per_cpu, g.max_new_flows_per_sec, g.max_vips), (1024, 0, 512));
    assert_eq!((g.script_user.as_str(), g.control_socket.to_str()), ("lbcheck", Some("/run/lb2.sock")));
}

// ---- Errors: each names file:line:column and what was expected. ----

#[test]
fn syntax_error() {
    assert_eq!(error("[[vip]\naddress = 1\n"), "lb.toml:1:7: unclosed array table, expected `]`");
    assert_eq!(error(&with_vip("port = 81\n")), "lb.toml:5:1: duplicate key `port`");
}

#[test]
fn unknown_keys() {
    assert_eq!(
        error(&with_vip("wieght = 3\n")),
        "lb.toml:5:1: unknown field `wieght`, expected one of `address`, `port`, `protocol`, `interface`, \
         `ring_size`, `hash`, `fragments`, `quorum`, `hysteresis`, `sorry_server`, `check`, `announce`, `backend`"
    );
    assert!(
        error("[globl]\n").starts_with("lb.toml:1:2: unknown field `globl`, expected one of `global`, `vip`, `vrrp`")
    );
    assert!(
        error(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\nport = 8080\n"))
            .starts_with("lb.toml:7:1: unknown field `port`, expected one of `address`, `weight`")
    );
    assert!(
        error(&with_vip("[vip.check]\ntype = \"tcp\"\nretry = 3\n")).starts_with("lb.toml:7:1: unknown field `retry`")
    );
}

#[test]
fn wrong_types_and_variants() {
    assert_eq!(
        error(&with_vip("protocol = \"sctp\"\n")),
        "lb.toml:5:12: unknown variant `sctp`, expected `tcp` or `udp`"
    );
    assert_eq!(
        error(&with_vip("hash = \"sh\"\n")),
        "lb.toml:5:8: unknown variant `sh`, expected `5tuple` or `source-ip`"
    );
    assert_eq!(
        error(&with_vip("fragments = \"yes\"\n")),
        "lb.toml:5:13: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(error("[[vip]]\naddress = \"10.0.0.1\"\nport = 80\n"), "lb.toml:1:1: missing field `interface`");
}

#[test]
fn bad_addresses() {
    let text = "[[vip]]\naddress = \"10.0.0.300\"\nport = 80\ninterface = \"eth0\"\n\
                [[vip.backend]]\naddress = \"10.0.1.1/24\"\n\
                [[vip.backend]]\naddress = \"10.0.1.2:80\"\n\
                [[vip.backend]]\naddress = \"127.0.0.1\"\n";
    assert_eq!(
        error(text),
        "lb.toml:2:11: bad VIP address \"10.0.0.300\": expected an IPv4 or IPv6 address\n\
         lb.toml:6:11: bad backend address \"10.0.1.1/24\": write the address without a prefix length\n\
         lb.toml:8:11: bad backend address \"10.0.1.2:80\": write the address without brackets or a port\n\
         lb.toml:10:11: backend address 127.0.0.1 is a loopback address"
    );
}

#[test]
fn duplicate_vip() {
    let text =
        format!("{VIP}{VIP}[[vip]]\naddress = \"10.0.0.1\"\nport = 80\nprotocol = \"udp\"\ninterface = \"eth0\"\n");
    assert_eq!(error(&text), "lb.toml:6:11: duplicate VIP 10.0.0.1:80/tcp: already defined at line 2");
}

#[test]
fn weight_out_of_range() {
    assert_eq!(
        error(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\nweight = 2000000\n")),
        "lb.toml:7:10: weight 2000000 out of range 0..=1000000"
    );
    assert_eq!(
        error(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\nweight = -1\n")),
        "lb.toml:7:10: weight -1 out of range 0..=1000000"
    );
}

#[test]
fn ring_size() {
    assert_eq!(
        error(&with_vip("ring_size = 65536\n")),
        "lb.toml:5:13: ring_size 65536 is not prime (the next prime is 65537)"
    );
    assert_eq!(error(&with_vip("ring_size = 1\n")), "lb.toml:5:13: ring_size 1 out of range 2..=16777216");
    assert_eq!(
        error(&with_vip("ring_size = 16777217\n")),
        "lb.toml:5:13: ring_size 16777217 out of range 2..=16777216"
    );
    assert_eq!(parse(&with_vip("ring_size = 251\n")).vips[0].ring_size, 251);
    // 16777213 is the largest prime below 2^24; 512 VIPs of that overflow the ring array.
    assert_eq!(
        error(&with_vip("ring_size = 16777213\n[global]\nmax_vips = 512\n")),
        "lb.toml:5:13: ring_size 16777213 with global.max_vips = 512 needs 17179866112 ring slots, \
         more than the ring array can hold (4294967295): lower one of them"
    );
}

#[test]
fn port_out_of_range() {
    let text = "[[vip]]\naddress = \"10.0.0.1\"\nport = 70000\ninterface = \"eth0\"\n";
    assert_eq!(error(text), "lb.toml:3:8: port 70000 out of range 0..=65535");
    assert_eq!(parse(&text.replace("70000", "0")).vips[0].port, 0);
}

#[test]
fn backend_family_must_match_vip() {
    assert_eq!(
        error(&with_vip("[[vip.backend]]\naddress = \"2001:db8::1\"\n")),
        "lb.toml:6:11: backend 2001:db8::1 is IPv6 but the VIP 10.0.0.1 is IPv4"
    );
}

#[test]
fn duplicate_backend() {
    assert_eq!(
        error(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\n[[vip.backend]]\naddress = \"10.0.1.1\"\n")),
        "lb.toml:8:11: duplicate backend 10.0.1.1: already in this VIP at line 6"
    );
}

#[test]
fn check_timing() {
    let text = with_vip(
        "[vip.check]\ntype = \"tcp\"\ninterval = \"0s\"\ntimeout = \"-1s\"\nfall = 0\nwarmup = 5\n\
         delay_before_retry = \"3 s\"\n",
    );
    assert_eq!(
        error(&text),
        "lb.toml:7:12: interval must be greater than zero\n\
         lb.toml:8:11: negative duration \"-1s\"\n\
         lb.toml:9:8: fall 0 out of range 1..=1000\n\
         lb.toml:10:10: warmup = 5 has no unit: write a string such as \"5s\"\n\
         lb.toml:11:22: duration \"3 s\" has no unit: expected a number and a unit (ms, s, m, h), e.g. \"5s\""
    );
    // keepalived allows a timeout longer than the interval, and so do we.
    parse(&with_vip("[vip.check]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"10s\"\n"));
}

#[test]
fn check_keys_must_fit_the_type() {
    assert_eq!(
        error(&with_vip("[vip.check]\ntype = \"tcp\"\npath = \"/\"\n")),
        "lb.toml:7:8: `path` does not apply to a tcp check (only to http, https)"
    );
    // Reported once, though both backends inherit it.
    let text = with_vip(
        "[vip.check]\ntype = \"tcp\"\nexpect = \"x\"\n\
         [[vip.backend]]\naddress = \"10.0.1.1\"\n[[vip.backend]]\naddress = \"10.0.1.2\"\n",
    );
    assert_eq!(error(&text), "lb.toml:7:10: `expect` does not apply to a tcp check (only to udp)");
    assert_eq!(
        error(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\ncheck = { interval = \"1s\" }\n")),
        "lb.toml:7:9: check has no `type`: expected tcp, tcp-half-open, http, https, udp, dns, script or none"
    );
}

#[test]
fn all_port_vip_needs_check_port() {
    let text = "[[vip]]\naddress = \"10.0.0.1\"\nport = 0\ninterface = \"eth0\"\n[vip.check]\ntype = \"tcp\"\n\
                [[vip.backend]]\naddress = \"10.0.1.1\"\n\
                [[vip.backend]]\naddress = \"10.0.1.2\"\ncheck = { port = 22 }\n";
    assert_eq!(error(text), "lb.toml:6:8: a tcp check needs a `port`: the VIP takes every port (port = 0)");
}

#[test]
fn http_check_values() {
    let text = with_vip(
        "[vip.check]\ntype = \"https\"\npath = \"health\"\nstatus = [\"2xx\", 700, \"299-200\"]\n\
         digest = \"abc\"\nhost = \"a b\"\n",
    );
    assert_eq!(
        error(&text),
        "lb.toml:7:8: path \"health\" must start with \"/\"\n\
         lb.toml:8:11: bad status \"2xx\": expected a code such as 200 or a range such as \"200-299\"\n\
         lb.toml:8:18: status 700 out of range 100..=599\n\
         lb.toml:8:23: status range \"299-200\" is backwards: write \"200-299\"\n\
         lb.toml:9:10: digest \"abc\" is not an MD5 sum: expected 32 hex digits\n\
         lb.toml:10:8: host \"a b\" is empty or contains spaces or control characters"
    );
}

#[test]
fn udp_check_values() {
    let text = with_vip("[vip.check]\ntype = \"udp\"\npayload = \"a\"\npayload_hex = \"61\"\nexpect_hex = \"zz\"\n");
    assert_eq!(
        error(&text),
        "lb.toml:8:15: set `payload` or `payload_hex`, not both\n\
         lb.toml:9:14: expect_hex: \"zz\" is not pairs of hex digits"
    );
}

#[test]
fn script_commands_never_go_through_a_shell_by_accident() {
    let check = |command: &str| error(&with_vip(&format!("[vip.check]\ntype = \"script\"\ncommand = {command}\n")));
    assert_eq!(
        check("\"/usr/bin/check --x\""),
        "lb.toml:7:11: command is an argv list such as [\"/usr/local/bin/check\", \"--quick\"]; \
         a string runs through /bin/sh only with shell = true"
    );
    assert_eq!(
        check("[\"check.sh\"]"),
        "lb.toml:7:11: command[0] \"check.sh\" must be an absolute path: checks run without a shell or $PATH"
    );
    assert_eq!(check("[]"), "lb.toml:7:11: command is empty");
    assert_eq!(
        error(&with_vip("[vip.check]\ntype = \"script\"\nshell = true\ncommand = [\"/bin/true\"]\n")),
        "lb.toml:8:11: with shell = true, command is one string for /bin/sh -c"
    );
    assert_eq!(
        error(&with_vip("[[vip.backend]]\naddress = \"10.0.1.1\"\ncheck = { type = \"script\" }\n")),
        "lb.toml:7:18: a script check needs a `command`"
    );
}

#[test]
fn fragments_once_per_address_and_protocol() {
    let frag = |port: u16, proto: &str| {
        format!(
            "[[vip]]\naddress = \"10.0.0.1\"\nport = {port}\nprotocol = \"{proto}\"\ninterface = \"eth0\"\nfragments = true\n"
        )
    };
    // Other protocol: fine. Same protocol, other port: refused at the second `fragments`.
    parse(&format!("{}{}", frag(53, "udp"), frag(53, "tcp")));
    assert_eq!(
        error(&format!("{}{}", frag(53, "udp"), frag(5353, "udp"))),
        "lb.toml:12:13: fragments for 10.0.0.1 udp already go to the VIP at line 6: \
         only one VIP per address and protocol can receive them"
    );
}

#[test]
fn sorry_server_family() {
    assert_eq!(
        error(&with_vip("sorry_server = \"2001:db8::9\"\n")),
        "lb.toml:5:16: sorry_server 2001:db8::9 is IPv6 but the VIP 10.0.0.1 is IPv4"
    );
}

#[test]
fn quorum_and_hysteresis() {
    assert_eq!(error(&with_vip("quorum = 0\n")), "lb.toml:5:10: quorum 0 must be at least 1");
    assert_eq!(
        error(&with_vip("quorum = 2\nhysteresis = 2\n")),
        "lb.toml:6:14: hysteresis 2 must be less than quorum 2: quorum is lost only below quorum - hysteresis"
    );
    let vip = &parse(&with_vip("quorum = 10\nhysteresis = 3\n")).vips[0];
    assert_eq!((vip.quorum, vip.hysteresis), (10, 3));
}

#[test]
fn more_vips_than_max_vips() {
    let vip = |n: u8| format!("[[vip]]\naddress = \"10.0.0.{n}\"\nport = 80\ninterface = \"eth0\"\n");
    let text = format!("[global]\nmax_vips = 2\n{}{}{}{}", vip(1), vip(2), vip(3), vip(4));
    // Reported once, at the first VIP over the limit.
    assert_eq!(
        error(&text),
        "lb.toml:11:1: more VIPs than global.max_vips = 2 (each VIP takes two ring regions; at most 512)"
    );
    assert_eq!(error("[global]\nmax_vips = 513\n"), "lb.toml:2:12: max_vips 513 out of range 1..=512");
}

#[test]
fn global_values() {
    let text =
        "[global]\nflows_per_cpu = 0\nmax_new_flows_per_sec = -5\nscript_user = \"\"\ncontrol_socket = \"lb.sock\"\n";
    assert_eq!(
        error(text),
        "lb.toml:2:17: flows_per_cpu 0 out of range 1..=16777216\n\
         lb.toml:3:25: max_new_flows_per_sec -5 out of range 0..=4294967295\n\
         lb.toml:4:15: script_user is empty\n\
         lb.toml:5:18: control_socket \"lb.sock\" must be an absolute path: the agent's working directory is not yours"
    );
}

#[test]
fn interface_names() {
    assert_eq!(
        error("[[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"a-very-long-interface\"\n"),
        "lb.toml:4:13: bad interface name \"a-very-long-interface\": expected 1 to 15 bytes, not \".\" or \"..\", \
         without '/', ':', '%' or spaces"
    );
    let text = format!("{VIP}[[vip]]\naddress = \"10.0.0.2\"\nport = 80\ninterface = \"bond0\"\n");
    let config = parse(&text);
    config.check_interfaces(|_| true).unwrap();
    let e = config.check_interfaces(|name| name == "eth0").unwrap_err();
    assert_eq!(e.to_string(), "lb.toml:8:13: unknown interface \"bond0\"");
    assert_eq!(e.diagnostics(), [Diagnostic { line: 8, column: 13, message: "unknown interface \"bond0\"".into() }]);
}

#[test]
fn one_interface_name_rule_wherever_an_interface_is_named() {
    // Lines 1-4: a VIP on eth0:1; 5-12: a VRRP instance naming eth0:1 in
    // each of its other places. The label "eth2:vip" is a label, not an
    // interface, and stays legal.
    let text = "[[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"eth0:1\"\n\
                [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0:1\"\nvirtual_router_id = 51\n\
                track_interface = [\"eth0:1\"]\n\
                virtual_ipaddress = [{ address = \"10.0.0.9/24\", dev = \"eth0:1\" }, \
                { address = \"10.0.0.8/24\", dev = \"eth2\", label = \"eth2:vip\" }]\n\
                virtual_routes = [\"192.0.2.0/24 dev eth0:1\"]\n";
    let bad = "bad interface name \"eth0:1\": expected 1 to 15 bytes, not \".\" or \"..\", without '/', ':', '%' or \
               spaces (\"eth0:1\" looks like an address label: labels go in virtual_ipaddress `label`)";
    let want: Vec<String> =
        ["4:13", "7:13", "9:20", "10:22", "11:37"].iter().map(|at| format!("lb.toml:{at}: {bad}")).collect();
    assert_eq!(error(text), want.join("\n"));
    let fixed = text.replace("eth0:1", "eth0");
    assert_eq!(parse(&fixed).vrrp[0].virtual_addresses[1].label.as_deref(), Some("eth2:vip"));
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = with_vip(
        "ring_size = 100\n\
         [[vip.backend]]\naddress = \"10.0.1.1\"\nweight = 2000000\n\
         [[vip.backend]]\naddress = \"10.0.1.1\"\n",
    );
    let e = Config::from_str(&text, "conf/lb.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "conf/lb.toml:5:13: ring_size 100 is not prime (the next prime is 101)\n\
         conf/lb.toml:8:10: weight 2000000 out of range 0..=1000000\n\
         conf/lb.toml:10:11: duplicate backend 10.0.1.1: already in this VIP at line 7"
    );
    assert_eq!(e.diagnostics().len(), 3);
}

#[test]
fn columns_count_characters() {
    // "é" is two bytes; the column of the bad value still counts it once.
    let text = "# café\n[[vip]]\naddress = \"10.0.0.1\"\nport = 80\ninterface = \"eth0\"\nsorry_server = \"é\"\n";
    assert_eq!(error(text), "lb.toml:6:16: bad sorry_server \"é\": expected an IPv4 or IPv6 address");
}

#[test]
fn unreadable_file() {
    let e = Config::from_file("/nonexistent/lb.toml").unwrap_err();
    assert!(matches!(&e, ConfigError::Read { file, .. } if file.to_str() == Some("/nonexistent/lb.toml")));
    assert_eq!(e.to_string(), "cannot read /nonexistent/lb.toml");
}

#[test]
fn backend_table_limit() {
    let mut text = String::from(VIP);
    for i in 0..lb_common::MAX_BACKENDS {
        text += &format!("[[vip.backend]]\naddress = \"10.1.{}.{}\"\n", i / 256, i % 256);
    }
    // Id 0 is reserved, so backend number 16384 (index 16383) is one too many.
    assert_eq!(
        error(&text),
        "lb.toml:32771:1: more than 16383 backends and sorry servers in all: the backend table is full"
    );
}

#[test]
fn every_configured_program_is_checked_where_it_is_written() {
    let text = with_vip(
        "[[vip.backend]]\naddress = \"10.0.0.11\"\n[vip.backend.check]\ntype = \"script\"\n\
         command = [\"/opt/chk\", \"-q\"]\n\
         [[vip.backend]]\naddress = \"10.0.0.12\"\n[vip.backend.check]\ntype = \"script\"\n\
         shell = true\ncommand = \"exit 0\"\nuser = \"lbshell\"\n\
         [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
         virtual_ipaddress = [\"10.0.0.100/24\"]\nnotify_master = \"/opt/n master\"\nnotify = [\"/opt/n\"]\n\
         [[vrrp.track_script]]\nname = \"chk\"\ncommand = [\"/opt/t\"]\n",
    );
    let config = parse(&text);
    let seen = std::cell::RefCell::new(Vec::new());
    let e = config
        .check_scripts(|program, user| {
            seen.borrow_mut().push(format!("{program} as {user}"));
            if program == "/bin/sh" { Ok(()) } else { Err(format!("{program} refused")) }
        })
        .unwrap_err();
    assert_eq!(
        seen.into_inner(),
        ["/opt/chk as nobody", "/bin/sh as lbshell", "/opt/t as nobody", "/opt/n as nobody", "/opt/n as nobody"]
    );
    assert_eq!(
        e.to_string(),
        // One line per program and place: `notify` runs the same /opt/n.
        "lb.toml:9:11: script check of 10.0.0.11: /opt/chk refused\n\
         lb.toml:17:1: [[vrrp]] VI_1 track_script chk: /opt/t refused\n\
         lb.toml:17:1: [[vrrp]] VI_1 notify_master: /opt/n refused"
    );
    config.check_scripts(|_, _| Ok(())).unwrap();
}

#[test]
fn vrrp_interfaces_are_checked_too() {
    let text = with_vip(
        "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth1\"\nvirtual_router_id = 51\ntrack_interface = [\"eth2\", \"eth1\"]\n\
         virtual_ipaddress = [\"10.0.0.100/24\", { address = \"10.0.1.100/24\", dev = \"eth3\" }]\n\
         virtual_routes = [\"192.0.2.0/24 via 10.0.0.254 dev eth4\"]\n",
    );
    let config = parse(&text);
    config.check_interfaces(|_| true).unwrap();
    let e = config.check_interfaces(|name| name == "eth0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "lb.toml:5:1: [[vrrp]] VI_1: interface: unknown interface \"eth1\"\n\
         lb.toml:5:1: [[vrrp]] VI_1: track_interface: unknown interface \"eth2\"\n\
         lb.toml:5:1: [[vrrp]] VI_1: virtual_ipaddress dev: unknown interface \"eth3\"\n\
         lb.toml:5:1: [[vrrp]] VI_1: virtual_routes dev: unknown interface \"eth4\""
    );
}

#[test]
fn half_open_check_takes_a_port_and_nothing_of_other_kinds() {
    let config = parse(&with_vip(
        "[vip.check]\ntype = \"tcp-half-open\"\ninterval = \"1s\"\n\
         [[vip.backend]]\naddress = \"10.0.1.1\"\n\
         [[vip.backend]]\naddress = \"10.0.1.2\"\ncheck = { port = 8080 }\n",
    ));
    let b = &config.vips[0].backends;
    let kinds: Vec<CheckKind> = b.iter().map(|b| b.check.as_ref().unwrap().kind.clone()).collect();
    assert_eq!(kinds, [CheckKind::TcpHalfOpen { port: 80 }, CheckKind::TcpHalfOpen { port: 8080 }]);
    assert_eq!(kinds[0].name(), "tcp-half-open");
    assert_eq!(
        error(&with_vip("[vip.check]\ntype = \"tcp-half-open\"\npath = \"/\"\n")),
        "lb.toml:7:8: `path` does not apply to a tcp-half-open check (only to http, https)"
    );
}

#[test]
fn dns_checks_default_to_the_roots_soa_and_name_bad_keys() {
    let config = parse(
        "[[vip]]\naddress = \"10.0.0.100\"\nport = 53\nprotocol = \"udp\"\ninterface = \"eth0\"\n\
         check = { type = \"dns\" }\n[[vip.backend]]\naddress = \"10.0.0.11\"\n\
         [[vip.backend]]\naddress = \"10.0.0.12\"\ncheck = { query_type = \"aaaa\", query_name = \"example.org.\" }\n",
    );
    let kind = |i: usize| config.vips[0].backends[i].check.as_ref().unwrap().kind.clone();
    assert_eq!(kind(0), CheckKind::Dns(DnsCheck { port: 53, query_type: DnsType::Soa, query_name: String::new() }));
    assert_eq!(
        kind(1),
        CheckKind::Dns(DnsCheck { port: 53, query_type: DnsType::Aaaa, query_name: "example.org".into() })
    );
    assert_eq!(config.vips[0].backends[0].check.as_ref().unwrap().fall, 4);

    let err = error(
        "[[vip]]\naddress = \"10.0.0.100\"\nport = 53\nprotocol = \"udp\"\ninterface = \"eth0\"\n\
         check = { type = \"dns\", query_type = \"WKS\", query_name = \"a..b\", path = \"/\" }\n\
         [[vip.backend]]\naddress = \"10.0.0.11\"\n",
    );
    assert!(err.contains("6:38: unknown query_type \"WKS\": expected A, NS, CNAME, SOA, MX, TXT, AAAA"), "{err}");
    assert!(err.contains("query_name \"a..b\": empty label"), "{err}");
    assert!(err.contains("`path` does not apply to a dns check (only to http, https)"), "{err}");
}
