//! The mapping, driven through [`import`] with files held in memory: what
//! each keyword becomes in lb.toml, and what is said where it cannot be
//! carried over. Every result is also read back by [`Config::from_str`].

use std::path::Path;

use super::*;
use crate::config::{CheckKind, Config, DnsType, HashMode};

struct Out {
    toml: String,
    said: Vec<String>,
    failed: bool,
}

impl Out {
    fn config(&self) -> Config {
        Config::from_str(&self.toml, "lb.toml").unwrap_or_else(|e| panic!("{e}\n{}", self.toml))
    }

    /// The one diagnostic that contains `part`.
    fn said(&self, part: &str) -> &str {
        let found: Vec<&String> = self.said.iter().filter(|s| s.contains(part)).collect();
        assert_eq!(found.len(), 1, "{part:?} in {:#?}", self.said);
        found[0]
    }
}

fn run(text: &str, interface: Option<&str>) -> Out {
    let host = host::Memory::with(&[("/etc/keepalived/keepalived.conf", text)]);
    let options =
        Options { config_id: "lb1".to_owned(), settings: Settings { interface: interface.map(str::to_owned) } };
    let imported = import(Path::new("/etc/keepalived/keepalived.conf"), &options, &host).unwrap();
    assert!(imported.rejected.is_empty(), "{:?}\n{}", imported.rejected, imported.toml);
    Out {
        failed: imported.failed(),
        said: imported
            .diagnostics
            .iter()
            .map(|d| d.to_string().replace("/etc/keepalived/keepalived.conf:", ""))
            .collect(),
        toml: imported.toml,
    }
}

fn imported(text: &str) -> Out {
    run(text, None)
}

const INSTANCE: &str =
    "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.100/24\n }\n}\n";

fn vs(body: &str) -> String {
    format!("{INSTANCE}virtual_server 10.0.0.100 80 {{\n lb_kind DR\n{body}\n}}\n")
}

#[test]
fn an_lvs_dr_director_is_carried_over() {
    let out = imported(&vs(
        " delay_loop 6\n lb_algo wrr\n persistence_timeout 50\n protocol TCP\n quorum 2\n hysteresis 1\n sorry_server 10.0.0.9 80\n\
          real_server 10.0.0.11 80 {\n  weight 3\n  inhibit_on_failure\n  TCP_CHECK {\n   connect_timeout 4\n   retry 2\n   delay_before_retry 2\n  }\n }\n\
          real_server 10.0.0.12 80 {\n  weight 0\n  TCP_CHECK {\n   connect_timeout 4\n   retry 2\n   delay_before_retry 2\n  }\n }",
    ));
    assert!(!out.failed, "{:#?}", out.said);
    let config = out.config();
    let vip = &config.vips[0];
    assert_eq!((vip.address.to_string(), vip.port, vip.interface.as_str()), ("10.0.0.100".to_owned(), 80, "eth0"));
    assert_eq!((vip.hash, vip.quorum, vip.hysteresis), (HashMode::SourceIp, 2, 1));
    assert_eq!(vip.sorry_server.map(|s| s.to_string()), Some("10.0.0.9".to_owned()));
    let weights: Vec<(u32, bool)> = vip.backends.iter().map(|b| (b.weight, b.inhibit_on_failure)).collect();
    assert_eq!(weights, [(3, true), (0, false)]);
    let check = vip.backends[0].check.as_ref().unwrap();
    assert_eq!(check.kind, CheckKind::Tcp { port: 80 });
    assert_eq!((check.interval.as_secs(), check.timeout.as_secs(), check.fall), (6, 4, 3));
    assert_eq!(check.delay_before_retry.as_secs(), 2);
    assert!(out.toml.contains("[vip.check]"), "one shared check: {}", out.toml);
    out.said("persistence_timeout: imported as source-IP hashing");
    let vrrp = &config.vrrp[0];
    assert_eq!((vrrp.name.as_str(), vrrp.vrid, vrrp.priority), ("VI_1", 51, 100));
    assert_eq!(vrrp.version, crate::vrrp::packet::Version::V2, "keepalived's default version");
}

#[test]
fn keepalived_defaults_are_written_out_where_lbs_differ() {
    let out = imported(&vs(" real_server 10.0.0.11 80 {\n  TCP_CHECK {\n  }\n }"));
    let check = out.config().vips[0].backends[0].check.clone().unwrap();
    assert_eq!(check.interval.as_secs(), 60, "keepalived's delay_loop");
    assert_eq!((check.timeout.as_secs(), check.fall, check.delay_before_retry.as_secs()), (5, 2, 1));
    assert!(out.toml.contains("interval = \"60s\"   # keepalived's default delay_loop"), "{}", out.toml);
}

#[test]
fn checker_timing_is_inherited_from_the_virtual_and_real_server() {
    let out = imported(&vs(
        " delay_loop 10\n connect_timeout 7\n retry 4\n real_server 10.0.0.11 8080 {\n  delay_loop 3\n  TCP_CHECK {\n   retry 1\n  }\n }",
    ));
    let check = out.config().vips[0].backends[0].check.clone().unwrap();
    assert_eq!((check.interval.as_secs(), check.timeout.as_secs(), check.fall), (3, 7, 2));
    assert_eq!(check.kind, CheckKind::Tcp { port: 8080 }, "keepalived checks the real server's port");
}

#[test]
fn http_and_ssl_checks() {
    let out = imported(&vs(" virtualhost www.example.com\n\
          real_server 10.0.0.11 80 {\n  HTTP_GET {\n   url {\n    path /health\n    digest 9B3A0C85A887A256D6939DA88AABD8CD\n    status_code 200 300-302\n   }\n   url {\n    path /other\n   }\n   nb_get_retry 2\n   connect_port 8080\n  }\n }\n\
          real_server 10.0.0.12 80 {\n  SSL_GET {\n   url {\n    path /\n    virtualhost api.example.com\n   }\n   enable_sni\n  }\n }"));
    let config = out.config();
    let (a, b) = (&config.vips[0].backends[0], &config.vips[0].backends[1]);
    let CheckKind::Http(http) = &a.check.as_ref().unwrap().kind else { panic!("{}", out.toml) };
    assert_eq!((http.port, http.path.as_str(), http.host.as_deref()), (8080, "/health", Some("www.example.com")));
    assert!(http.status.contains(301) && http.status.contains(200) && !http.status.contains(204));
    assert_eq!(a.check.as_ref().unwrap().fall, 3, "nb_get_retry is HTTP_GET's old spelling of retry");
    assert!(matches!(http.body, crate::config::BodyMatch::Md5(_)));
    out.said("only the first url block is imported");
    let CheckKind::Https { http, tls } = &b.check.as_ref().unwrap().kind else { panic!("{}", out.toml) };
    assert_eq!(
        (http.host.as_deref(), tls.sni.as_deref(), tls.verify),
        (Some("api.example.com"), Some("api.example.com"), false)
    );
}

#[test]
fn misc_checks_run_their_script_directly_or_through_a_shell() {
    let out = imported(&vs(
        " real_server 10.0.0.11 80 {\n  MISC_CHECK {\n   misc_path \"/usr/local/bin/check 'a b'\"\n   misc_timeout 3\n   misc_dynamic\n   user lbcheck\n  }\n }\n\
          real_server 10.0.0.12 80 {\n  MISC_CHECK {\n   misc_path \"pgrep nginx > /dev/null\"\n  }\n }\n\
          real_server 10.0.0.13 80 {\n  MISC_CHECK {\n   misc_path \"[[ -f /run/up ]]\"\n  }\n }",
    ));
    let config = out.config();
    let script = |i: usize| match &config.vips[0].backends[i].check.as_ref().unwrap().kind {
        CheckKind::Script(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    let a = script(0);
    assert_eq!(a.command, crate::config::ScriptCommand::Argv(vec!["/usr/local/bin/check".into(), "a b".into()]));
    assert_eq!((a.user.as_str(), a.dynamic_weight), ("lbcheck", true));
    assert_eq!(config.vips[0].backends[0].check.as_ref().unwrap().timeout.as_secs(), 3);
    assert_eq!(config.vips[0].backends[1].check.as_ref().unwrap().timeout.as_secs(), 60, "misc_timeout: delay_loop");
    let argv = |s: crate::config::ScriptCheck| match s.command {
        crate::config::ScriptCommand::Argv(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(argv(script(1)), ["/bin/sh", "-c", "pgrep nginx > /dev/null"]);
    assert_eq!(argv(script(2)), ["/bin/bash", "-c", "[[ -f /run/up ]]"]);
    assert_eq!(out.said.iter().filter(|s| s.contains("shell syntax")).count(), 2, "{:#?}", out.said);
    assert!(out.toml.contains("script_user = \"root\""), "{}", out.toml);
}

#[test]
fn scripts_are_found_on_path_or_refused() {
    let out = imported(&vs(" real_server 10.0.0.11 80 {\n  MISC_CHECK {\n   misc_path \"true --x\"\n  }\n }\n\
          real_server 10.0.0.12 80 {\n  MISC_CHECK {\n   misc_path \"nosuch\"\n  }\n }\n\
          real_server 10.0.0.13 80 {\n  MISC_CHECK {\n   misc_path \"bin/x\"\n  }\n }"));
    assert!(out.failed);
    assert!(out.toml.contains("command = [\"/bin/true\", \"--x\"]"), "{}", out.toml);
    assert_eq!(
        out.said("nosuch"),
        "17:15: error: script \"nosuch\" is not on this machine's PATH: give its absolute path: not imported"
    );
    out.said("script \"bin/x\" is a relative path");
}

#[test]
fn udp_checks() {
    let out = imported(&vs(
        " protocol UDP\n real_server 10.0.0.11 80 {\n  UDP_CHECK {\n   payload 0x0102ab\n   require_reply 03\n  }\n }\n\
          real_server 10.0.0.12 80 {\n  UDP_CHECK {\n  }\n }",
    ));
    let config = out.config();
    let CheckKind::Udp(a) = &config.vips[0].backends[0].check.as_ref().unwrap().kind else { panic!() };
    assert_eq!((a.payload.clone(), a.expect.clone()), (vec![1, 2, 0xab], Some(vec![3])));
    out.said("UDP_CHECK without require_reply");
}

#[test]
fn dns_checks() {
    let out = imported(&vs(
        " protocol UDP\n real_server 10.0.0.11 80 {\n  DNS_CHECK {\n   type a\n   name www.example.org.\n   connect_port 53\n  }\n }\n\
          real_server 10.0.0.12 80 {\n  DNS_CHECK {\n   type WKS\n  }\n }",
    ));
    assert!(!out.failed, "{:#?}", out.said);
    let config = out.config();
    let check = |i: usize| config.vips[0].backends[i].check.clone().unwrap();
    let CheckKind::Dns(a) = &check(0).kind else { panic!("{:?}", check(0)) };
    assert_eq!((a.port, a.query_type, a.query_name.as_str()), (53, DnsType::A, "www.example.org"));
    // keepalived's DNS_CHECK retries 3 times by default.
    assert_eq!(check(0).fall, 4);
    let CheckKind::Dns(b) = &check(1).kind else { panic!() };
    assert_eq!((b.port, b.query_type, b.query_name.as_str()), (80, DnsType::Soa, ""));
    out.said("DNS check type WKS: keepalived does not know it and queries SOA");
}

#[test]
fn a_virtual_server_group_becomes_one_vip_per_address_and_port() {
    let text = format!(
        "{INSTANCE}virtual_server_group WEB {{\n 10.0.0.100-102 80\n 10.0.0.100 443\n 10.0.0.101 80\n fwmark 7\n}}\n\
         virtual_server group WEB {{\n lb_kind DR\n real_server 10.0.0.11 80 {{\n  weight 2\n  TCP_CHECK {{\n  }}\n }}\n}}\n\
         virtual_server group NONE {{\n lb_kind DR\n}}\n"
    );
    // .101 and .102 are in no vrrp_instance: their interface is given.
    let out = run(&text, Some("eth0"));
    let config = out.config();
    let vips: Vec<(String, u16)> = config.vips.iter().map(|v| (v.address.to_string(), v.port)).collect();
    let want = [("10.0.0.100", 80), ("10.0.0.101", 80), ("10.0.0.102", 80), ("10.0.0.100", 443)];
    assert_eq!(vips, want.map(|(a, p)| (a.to_owned(), p)));
    for v in &config.vips {
        assert_eq!((v.backends.len(), v.backends[0].weight), (1, 2));
        // Members on different ports: each check names the port it probes.
        let CheckKind::Tcp { port } = v.backends[0].check.as_ref().unwrap().kind else { panic!() };
        assert_eq!(port, 80);
    }
    out.said("error: fwmark: lb matches");
    out.said("no virtual_server_group NONE");
    assert!(
        out.toml.contains("# virtual_server group WEB: 10.0.0.102 80 (/etc/keepalived/keepalived.conf:"),
        "{}",
        out.toml
    );
}

#[test]
fn schedulers() {
    let rr = imported(&vs(
        " lb_algo rr\n real_server 10.0.0.11 80 {\n  weight 5\n }\n real_server 10.0.0.12 80 {\n  weight 0\n }",
    ));
    let weights: Vec<u32> = rr.config().vips[0].backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [1, 0]);
    rr.said("lb_algo rr ignores weights");
    let sh = imported(&vs(" lb_algo sh\n real_server 10.0.0.11 80 {\n }"));
    assert_eq!(sh.config().vips[0].hash, HashMode::SourceIp);
    assert!(sh.said.is_empty(), "{:#?}", sh.said);
    let wlc = imported(&vs(" lvs_sched wlc\n real_server 10.0.0.11 80 {\n }"));
    assert_eq!(wlc.config().vips[0].hash, HashMode::FiveTuple);
    wlc.said("lb_algo wlc: lb spreads new connections by weighted Maglev hashing");
}

#[test]
fn what_lb_cannot_forward_is_refused_and_listed() {
    let text = format!(
        "{INSTANCE}virtual_server 10.0.0.100 80 {{\n lb_kind NAT\n real_server 10.0.0.11 80 {{\n }}\n}}\n\
         virtual_server 10.0.0.100 81 {{\n real_server 10.0.0.11 81 {{\n }}\n}}\n\
         virtual_server fwmark 1 {{\n}}\n\
         virtual_server_group G {{\n fwmark 3\n}}\n\
         virtual_server 10.0.0.100 82 {{\n lvs_method TUN\n}}\n\
         virtual_server 10.0.0.100 83 {{\n lb_kind DR\n protocol SCTP\n}}\n"
    );
    let out = imported(&text);
    assert!(out.failed);
    assert!(out.config().vips.is_empty());
    assert!(out.said("lb_kind NAT").starts_with("8:1: error: lb_kind NAT: lb forwards by direct routing only"));
    assert!(out.said("no lb_kind").starts_with("13:1: error: no lb_kind: keepalived's default is NAT"));
    assert!(out.said("virtual_server fwmark").starts_with("17:1: error: virtual_server fwmark: lb matches"));
    assert!(out.said("20:2:").starts_with("20:2: error: fwmark: lb matches a virtual server by address"));
    out.said("lb_kind TUN");
    out.said("protocol SCTP");
    assert!(out.toml.contains("# Not imported"), "{}", out.toml);
    assert!(
        out.toml.contains("#   virtual_server 10.0.0.100 80 (/etc/keepalived/keepalived.conf:8): lb_kind NAT"),
        "{}",
        out.toml
    );
}

#[test]
fn a_refused_checker_leaves_out_its_real_server_and_an_empty_virtual_server_fails() {
    let out = imported(&vs(
        " real_server 10.0.0.11 80 {\n  PING_CHECK {\n  }\n }\n real_server 10.0.0.12 80 {\n  SMTP_CHECK {\n  }\n }",
    ));
    assert!(out.failed);
    out.said("PING_CHECK is not supported");
    out.said("SMTP_CHECK is not supported");
    out.said("every real server of this virtual_server was left out");
    assert!(out.config().vips.is_empty());
}

#[test]
fn only_the_first_checker_is_imported() {
    let out = imported(&vs(" real_server 10.0.0.11 80 {\n  TCP_CHECK {\n  }\n  HTTP_GET {\n  }\n }"));
    assert!(!out.failed);
    assert_eq!(out.config().vips[0].backends[0].check.as_ref().unwrap().kind.name(), "tcp");
    out.said("lb runs one check per real server");
}

#[test]
fn nb_get_retry_in_tcp_check_is_ignored_as_keepalived_2_2_7_does() {
    let out = imported(&vs(" real_server 10.0.0.11 80 {\n  TCP_CHECK {\n   nb_get_retry 3\n  }\n }"));
    assert_eq!(out.config().vips[0].backends[0].check.as_ref().unwrap().fall, 2);
    assert!(out.said("nb_get_retry").starts_with("12:4: warning: nb_get_retry: keepalived 2.2.7 does not know it"));
}

#[test]
fn the_vip_interface_comes_from_the_vrrp_instance_or_the_option() {
    let text = "vrrp_instance V {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.100/24 dev eth1\n }\n}\n\
                virtual_server 10.0.0.100 80 {\n lb_kind DR\n}\nvirtual_server 10.9.9.9 80 {\n lb_kind DR\n}\n";
    let out = imported(text);
    assert!(out.failed);
    assert_eq!(out.config().vips[0].interface, "eth1");
    out.said("no vrrp_instance holds 10.9.9.9");
    let out = run(text, Some("bond0"));
    assert!(!out.failed, "{:#?}", out.said);
    assert_eq!(out.config().vips[1].interface, "bond0");
}

#[test]
fn a_vrrp_instance_is_carried_over() {
    let out = imported(
        "global_defs {\n vrrp_garp_master_delay 2\n vrrp_garp_master_repeat 3\n script_user lbcheck\n}\n\
         vrrp_script chk {\n script \"/usr/local/bin/chk --fast\"\n interval 2\n timeout 1\n rise 2\n fall 3\n weight -30\n user nobody\n}\n\
         vrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 2\n nopreempt\n preempt_delay 10\n\
          authentication {\n  auth_type PASS\n  auth_pass secret\n }\n\
          virtual_ipaddress {\n  10.0.0.100/24 dev eth0 label eth0:vip brd 10.0.0.255\n  10.0.0.101\n }\n\
          virtual_ipaddress_excluded {\n  10.0.0.102\n }\n\
          virtual_routes {\n  src 10.0.0.100 192.0.2.0/24 via 10.0.0.1 dev eth0 metric 10\n  blackhole 203.0.113.0/24\n }\n\
          unicast_src_ip 10.0.0.2\n unicast_peer {\n  10.0.0.3\n }\n\
          track_interface {\n  eth1 weight 10\n }\n track_script {\n  chk weight -40\n }\n\
          notify_master \"/etc/keepalived/notify.sh master\" keepalived_script\n notify /etc/keepalived/notify.sh\n garp_master_refresh 60\n}\n",
    );
    assert!(!out.failed, "{:#?}", out.said);
    let v = out.config().vrrp[0].clone();
    assert_eq!((v.priority, v.preempt, v.preempt_delay.as_secs(), v.advert_interval.0), (150, false, 10, 200));
    assert_eq!(v.auth, crate::vrrp::packet::Auth::pass("secret"));
    let vips: Vec<String> = v.virtual_addresses.iter().map(ToString::to_string).collect();
    assert_eq!(vips.len(), 3, "{vips:?}");
    assert_eq!(v.virtual_addresses[0].label.as_deref(), Some("eth0:vip"));
    assert_eq!(v.virtual_routes.len(), 2);
    assert_eq!(v.unicast_src.map(|s| s.to_string()), Some("10.0.0.2".to_owned()));
    assert_eq!(v.unicast_peers.len(), 1);
    assert_eq!(v.track_interfaces, ["eth1"]);
    let t = &v.track_scripts[0];
    assert_eq!((t.weight, t.rise, t.fall, t.interval.as_secs(), t.timeout.as_secs()), (-40, 2, 3, 2, 1));
    assert_eq!(
        (t.command.clone(), t.user.as_str()),
        (vec!["/usr/local/bin/chk".to_owned(), "--fast".to_owned()], "nobody")
    );
    assert_eq!(v.notify.master, Some(vec!["/etc/keepalived/notify.sh".to_owned(), "master".to_owned()]));
    assert_eq!(v.notify.user, "keepalived_script");
    assert_eq!((v.garp.master_delay.as_secs(), v.garp.master_repeat, v.garp.master_refresh.as_secs()), (2, 3, 60));
    out.said("virtual_ipaddress_excluded: lb has no excluded addresses");
    out.said("`brd` is not imported");
    out.said("track_interface eth1 weight");
}

#[test]
fn a_block_written_on_one_line_is_read_as_keepalived_reads_it() {
    let out = imported(
        "global_defs { router_id a vrrp_mcast_group4 224.0.67.67 }\n\
         vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n authentication { auth_type PASS auth_pass 1111 }\n\
          virtual_ipaddress {\n  10.0.0.100\n }\n}\n",
    );
    assert!(!out.failed, "{:#?}", out.said);
    let v = out.config().vrrp[0].clone();
    assert_eq!(v.auth, crate::vrrp::packet::Auth::None);
    assert_eq!(v.mcast_group.to_string(), "224.0.0.18");
    assert_eq!(
        out.said("`vrrp_mcast_group4` is read"),
        "1:27: warning: `vrrp_mcast_group4` is read as an argument of `router_id`, not as a keyword: keepalived 2.2.7 \
         ends lines only at `{` and `}`, so several keywords on one line (a block written on one line) are one keyword \
         with many arguments; `vrrp_mcast_group4 224.0.67.67` ignored, as keepalived does: write each keyword on its own line"
    );
    out.said("`auth_pass` is read as an argument of `auth_type`");
    out.said("authentication without auth_pass");
}

#[test]
fn keepalived_2_2_7s_own_overrides_are_followed() {
    let text = |state: &str| {
        format!(
            "vrrp_instance VI_1 {{\n state {state}\n interface eth0\n virtual_router_id 51\n nopreempt\n preempt_delay 5\n virtual_ipaddress {{\n  10.0.0.100\n }}\n}}\n"
        )
    };
    let master = imported(&text("MASTER"));
    let v = master.config().vrrp[0].clone();
    assert!(v.preempt && v.preempt_delay.is_zero());
    master.said("nopreempt with state MASTER");
    master.said("preempt_delay with state MASTER");
    let backup = imported(&text("BACKUP"));
    let v = backup.config().vrrp[0].clone();
    assert!(!v.preempt && v.preempt_delay.as_secs() == 5);
    assert!(backup.said.is_empty());
}

#[test]
fn vrrp_strict_drops_what_keepalived_drops() {
    let out = imported(
        "global_defs {\n vrrp_strict\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n preempt_delay 5\n\
          authentication {\n  auth_type PASS\n  auth_pass x\n }\n virtual_ipaddress {\n  10.0.0.100\n }\n}\n",
    );
    let v = out.config().vrrp[0].clone();
    assert_eq!((v.auth, v.preempt_delay.as_secs()), (crate::vrrp::packet::Auth::None, 0));
    out.said("vrrp_strict: imported as keepalived applies it");
    out.said("authentication with vrrp_strict (line 2)");
    out.said("preempt_delay with vrrp_strict (line 2)");
}

#[test]
fn versions_and_advert_intervals() {
    let out = imported(
        "global_defs {\n vrrp_version 3\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 1\n advert_int 0.25\n authentication {\n  auth_type PASS\n  auth_pass x\n }\n virtual_ipaddress {\n  10.0.0.100\n }\n}\n\
         vrrp_instance B {\n interface eth0\n version 2\n virtual_router_id 2\n advert_int 1.5\n virtual_ipaddress {\n  10.0.0.101\n }\n}\n\
         vrrp_instance C {\n interface eth0\n version 2\n virtual_router_id 3\n virtual_ipaddress {\n  2001:db8::1/64\n }\n}\n",
    );
    let c = out.config();
    assert_eq!((c.vrrp[0].advert_interval.0, c.vrrp[0].auth), (25, crate::vrrp::packet::Auth::None));
    assert_eq!(c.vrrp[1].advert_interval.0, 200);
    assert!(c.vrrp[2].is_ipv6());
    out.said("authentication with VRRP version 3");
    out.said("advert_int 1500ms");
    out.said("IPv6 needs VRRP version 3");
}

#[test]
fn vrrp_refusals() {
    let out = imported(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n authentication {\n  auth_type AH\n  auth_pass x\n }\n virtual_ipaddress {\n  10.0.0.100\n }\n}\n\
         vrrp_instance B {\n interface eth0\n virtual_ipaddress {\n  10.0.0.101\n }\n}\n\
         vrrp_instance C {\n interface eth0\n virtual_router_id 3\n virtual_ipaddress {\n  10.0.0.102\n }\n virtual_routes {\n  192.0.2.0/24 via 10.0.0.1 mtu 1400\n }\n}\n\
         vrrp_instance D {\n interface eth0\n virtual_router_id 3\n virtual_ipaddress {\n  10.0.0.103\n }\n}\n",
    );
    assert!(out.failed);
    assert!(out.said("auth_type AH").starts_with("4:2: error: auth_type AH (IPsec AH, HMAC-MD5-96) is not supported"));
    assert!(out.said("has no virtual_router_id").starts_with("12:1: error:"));
    assert!(out.said("mtu").starts_with("25:3: error: virtual route \"192.0.2.0/24 via 10.0.0.1 mtu 1400\": virtual route: keepalived's \"mtu\" is not supported"));
    assert!(out.said("already used on eth0").starts_with("28:1: error:"));
    let names: Vec<String> = out.config().vrrp.iter().map(|v| v.name.clone()).collect();
    assert_eq!(names, ["C"]);
}

#[test]
fn track_scripts() {
    let out = imported(
        "vrrp_script up {\n script \"/bin/true\"\n weight 10 reverse\n}\n\
         vrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.100\n }\n track_script {\n  nosuch\n  up\n }\n}\n",
    );
    assert!(out.failed);
    out.said("track_script nosuch: no vrrp_script nosuch");
    out.said("`reverse` weights are not supported");
    assert!(out.config().vrrp[0].track_scripts.is_empty());
}

#[test]
fn sync_groups() {
    let inst = |n: &str, id: u8| {
        format!(
            "vrrp_instance {n} {{\n interface eth0\n virtual_router_id {id}\n virtual_ipaddress {{\n  10.0.0.{id}\n }}\n}}\n"
        )
    };
    let text = format!(
        "{}{}{}vrrp_sync_group G1 {{\n group {{\n  A B\n  X\n }}\n notify \"/etc/keepalived/g.sh\"\n}}\nvrrp_sync_group G2 {{\n group {{\n  B C\n }}\n}}\n",
        inst("A", 1),
        inst("B", 2),
        inst("C", 3)
    );
    let out = imported(&text);
    let c = out.config();
    assert_eq!(c.vrrp_sync_groups.len(), 1);
    assert_eq!(c.vrrp_sync_groups[0].members, ["A", "B"]);
    assert_eq!(c.vrrp_sync_groups[0].notify.any, Some(vec!["/etc/keepalived/g.sh".to_owned()]));
    out.said("no imported vrrp_instance X");
    out.said("B is already in sync group G1");
    out.said("sync group G2 has fewer than two instances");
}

#[test]
fn hysteresis_stays_below_quorum() {
    let out = imported(&vs(" quorum 2\n hysteresis 5\n real_server 10.0.0.11 80 {\n }"));
    assert_eq!(out.config().vips[0].hysteresis, 1);
    out.said("hysteresis 5 is not below quorum 2");
}

#[test]
fn unknown_and_ignored_keywords_are_named_where_they_are() {
    let out = imported(&format!(
        "{INSTANCE}bogus_top 1\nglobal_defs {{\n notification_email {{\n  a@b\n }}\n smtp_server 1.2.3.4\n lvs_flush\n frobnicate\n \
         max_auto_priority 1\n}}\nreal_server 10.0.0.1 80 {{\n}}\n"
    ));
    // keepalived's config test refuses a keyword it does not know: so does the import.
    assert!(out.failed);
    assert_eq!(
        out.said("bogus_top"),
        "8:1: error: keepalived 2.2.7 does not know `bogus_top` in the top level: its config test refuses the file; not imported"
    );
    assert_eq!(
        out.said("`real_server`"),
        "18:1: error: keepalived 2.2.7 does not know `real_server` at the top level, only inside a block: its config test \
         refuses the file; not imported"
    );
    assert_eq!(
        out.said("e-mail"),
        "10:2: warning: e-mail settings are not imported: lb sends no e-mail (its notify scripts can, as keepalived's do)"
    );
    out.said("`lvs_flush` is not imported: lb does not use IPVS");
    assert!(
        out.said("`frobnicate`").starts_with("15:2: error: keepalived 2.2.7 does not know `frobnicate` in global_defs")
    );
    // Known to keepalived, nothing in lb: a warning.
    assert_eq!(
        out.said("max_auto_priority"),
        "16:2: warning: `max_auto_priority` in global_defs is not imported: lb has no equivalent"
    );
}

#[test]
fn a_keyword_with_a_block_it_does_not_take_is_an_error() {
    let out = imported(&vs(" real_server 10.0.0.11 80 { weight 1 TCP_CHECK { connect_timeout 3 } }"));
    assert!(out.failed);
    out.said("`TCP_CHECK` is read as an argument of `weight`");
    out.said("`weight` takes no block");
}

#[test]
fn the_generated_text_carries_the_imported_items_positions() {
    let out = imported(&vs(" real_server 10.0.0.11 80 {\n }"));
    assert!(out.toml.contains("# virtual_server 10.0.0.100 80 (/etc/keepalived/keepalived.conf:8)"), "{}", out.toml);
    assert!(out.toml.contains("# vrrp_instance VI_1 (/etc/keepalived/keepalived.conf:1)"), "{}", out.toml);
}

#[test]
fn config_ids() {
    assert_eq!(default_config_id("lb1.example.com\n"), "lb1");
    assert_eq!(default_config_id("director"), "director");
}

#[test]
fn one_virtual_address_per_line() {
    let out = imported(
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.100 10.0.0.101/24\n }\n}\n",
    );
    assert_eq!(out.config().vrrp[0].virtual_addresses.len(), 1);
    assert_eq!(
        out.said("10.0.0.101"),
        "5:14: warning: 10.0.0.101/24 is read as an option of 10.0.0.100, not as an address: keepalived takes one \
         address per line: not imported (write it on a line of its own)"
    );
}
