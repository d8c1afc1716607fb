//! `lb import` on the keepalived.conf files of tests/data/keepalived (the
//! operators' setups this project replaces, retyped): each is imported
//! without error by the real program (`lb-under-test`), and lb accepts
//! what it writes. No namespaces: importing reads files only.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use lb_userspace::config::{CheckKind, Config, HashMode};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/keepalived").join(name)
}

struct Run {
    ok: bool,
    toml: String,
    stderr: String,
}

/// Runs `lb import` with `args` after the file.
fn lb_import(file: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_lb-under-test"))
        .arg("import")
        .arg(file)
        .args(args)
        .output()
        .expect("running lb import");
    Run {
        ok: out.status.success(),
        toml: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Imports a file that must import cleanly, and reads the result as lb does.
fn import_ok(name: &str, args: &[&str]) -> (Config, Run) {
    let run = lb_import(&data(name), args);
    assert!(run.ok, "{name}: {}", run.stderr);
    for line in run.stderr.lines() {
        // file:line:column: warning: ...
        let mut parts = line.splitn(4, ':');
        let (file, l, c, rest) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or_default());
        assert!(file.is_some_and(|f| f.ends_with(".conf")), "{name}: {line}");
        assert!(l.is_some_and(|n| n.parse::<u32>().is_ok()) && c.is_some_and(|n| n.parse::<u32>().is_ok()), "{line}");
        assert!(rest.starts_with(" warning: "), "{name}: {line}");
    }
    let config =
        Config::from_str(&run.toml, format!("{name}.toml")).unwrap_or_else(|e| panic!("{name}: {e}\n{}", run.toml));
    (config, run)
}

#[test]
fn every_file_imports_and_lb_accepts_the_result() {
    let mut files: Vec<String> = std::fs::read_dir(data(""))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        import_ok(f, &[]);
    }
    for id in ["lb1", "lb2"] {
        import_ok("005_templated/keepalived.conf", &["--config-id", id]);
    }
}

#[test]
fn lvs_dr_with_wrr_persistence_and_tcp_checks() {
    let (c, run) = import_ok("000_lvs_dr_wrr.conf", &[]);
    let vip = &c.vips[0];
    assert_eq!((vip.address.to_string(), vip.port, vip.interface.as_str()), ("192.168.1.120".into(), 80, "eth0"));
    assert_eq!(vip.hash, HashMode::SourceIp, "persistence_timeout");
    assert_eq!(vip.backends.iter().map(|b| b.weight).collect::<Vec<_>>(), [1, 5]);
    let check = vip.backends[1].check.as_ref().unwrap();
    assert_eq!(
        (check.kind.clone(), check.interval.as_secs(), check.timeout.as_secs()),
        (CheckKind::Tcp { port: 80 }, 6, 10)
    );
    assert_eq!(check.fall, 2, "keepalived 2.2.7 ignores nb_get_retry in TCP_CHECK");
    assert!(run.stderr.contains("000_lvs_dr_wrr.conf:51:13: warning: nb_get_retry"), "{}", run.stderr);
    assert_eq!(c.vrrp[0].track_scripts[0].weight, -15);
}

#[test]
fn nginx_pair_with_its_own_multicast_group_and_shell_scripts() {
    for (name, priority) in [("001_nginx_pair_master.conf", 100), ("001_nginx_pair_backup.conf", 95)] {
        let (c, _) = import_ok(name, &[]);
        let v = &c.vrrp[0];
        assert_eq!((v.priority, v.vrid, v.mcast_group.to_string()), (priority, 167, "224.0.67.67".into()));
        assert_eq!(v.track_scripts[0].command[0], "/bin/bash", "[[ is bash's");
        assert_eq!(v.track_scripts[1].command[0], "/bin/sh");
        assert_eq!(v.notify.master, Some(vec!["/etc/keepalived/notify.sh".to_owned(), "master".to_owned()]));
        assert_eq!(c.global.script_user, "root");
    }
}

#[test]
fn two_nics_route_and_active_active() {
    let (c, _) = import_ok("002_two_nics.conf", &[]);
    let v = &c.vrrp[0];
    assert_eq!((v.interface.as_str(), v.virtual_addresses[0].dev.as_deref()), ("eth0", Some("eth1")));
    assert_eq!(v.virtual_routes.len(), 1);
    assert_eq!(v.notify.any, Some(vec!["/opt/scripts/keepalived/send_msg.sh".to_owned()]));
    let (c, _) = import_ok("002_active_active.conf", &[]);
    assert_eq!(c.vrrp.iter().map(|v| v.priority).collect::<Vec<_>>(), [100, 80]);
}

#[test]
fn unicast_peers_and_nopreempt_as_keepalived_runs_them() {
    let (c, run) = import_ok("003_unicast_master.conf", &[]);
    let v = &c.vrrp[0];
    assert!(v.preempt, "keepalived 2.2.7 clears nopreempt with state MASTER");
    assert!(run.stderr.contains("nopreempt with state MASTER"), "{}", run.stderr);
    assert_eq!(
        (v.unicast_src.unwrap().to_string(), v.unicast_peers[0].to_string()),
        ("192.0.0.2".into(), "192.0.0.3".into())
    );
    let (c, _) = import_ok("003_unicast_backup.conf", &[]);
    assert_eq!(c.vrrp[0].virtual_addresses[0].label.as_deref(), Some("eth0:2"));
}

#[test]
fn the_same_file_for_both_directors() {
    let (lb1, _) = import_ok("005_templated/keepalived.conf", &["-i", "lb1"]);
    let (lb2, _) = import_ok("005_templated/keepalived.conf", &["-i", "lb2"]);
    assert_eq!((lb1.vrrp[0].priority, lb2.vrrp[0].priority), (150, 100));
    assert_eq!(lb1.vrrp[0].unicast_peers, [lb2.vrrp[0].unicast_src.unwrap()]);
    assert_eq!(lb2.vrrp[0].unicast_peers, [lb1.vrrp[0].unicast_src.unwrap()]);
    assert_eq!(lb1.vips, lb2.vips);
    assert_eq!(lb1.vips[0].backends.iter().map(|b| b.weight).collect::<Vec<_>>(), [11, 12, 13], "~SEQ");
    assert_eq!(lb1.vips[1].hash, HashMode::SourceIp);
    assert!(matches!(lb1.vips[1].backends[0].check.as_ref().unwrap().kind, CheckKind::Script(_)));
}

/// A directory of this test's own, removed when dropped (also on failure).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lb-import-{}-{call}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_config_flattened_onto_one_line_is_read_as_keepalived_reads_it() {
    // As web pages show seed 001's file.
    let dir = TempDir::new("flat");
    let file = dir.0.join("keepalived.conf");
    std::fs::write(
        &file,
        "! Configuration File for keepalived global_defs { router_id node1 vrrp_mcast_group4 224.0.67.67 }\n\
         global_defs { router_id node1 vrrp_mcast_group4 224.0.67.67 } vrrp_instance myr { interface eth0 \
         virtual_router_id 167 priority 100 advert_int 1 authentication { auth_type PASS auth_pass 571f97b2 } \
         virtual_ipaddress { 172.18.67.33/16 dev eth0 } }\n",
    )
    .unwrap();
    let run = lb_import(&file, &[]);
    assert!(!run.ok, "the instance's keywords are one line: {}", run.stderr);
    assert!(
        run.stderr.contains("keepalived.conf:2:31: warning: `vrrp_mcast_group4` is read as an argument of `router_id`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("has no virtual_router_id"), "{}", run.stderr);
}

#[test]
fn what_cannot_be_carried_over_fails_and_is_listed_in_the_output_file() {
    let dir = TempDir::new("nat");
    let file = dir.0.join("keepalived.conf");
    let out = dir.0.join("lb.toml");
    std::fs::write(
        &file,
        "virtual_server 10.0.0.100 80 {\n  lb_kind NAT\n  real_server 10.0.0.11 80 {\n  }\n}\n\
         virtual_server 10.0.0.100 443 {\n  lb_kind DR\n  real_server 10.0.0.11 443 {\n  }\n}\n",
    )
    .unwrap();
    let run = lb_import(&file, &["--interface", "eth0", "-o", out.to_str().unwrap()]);
    assert!(!run.ok);
    assert!(run.toml.is_empty(), "-o writes the file, not stdout");
    assert!(
        run.stderr.contains("keepalived.conf:1:1: error: lb_kind NAT: lb forwards by direct routing only"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("1 errors: the lb.toml leaves out what they name"), "{}", run.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# Not imported"), "{text}");
    let c = Config::from_str(&text, &out).unwrap();
    assert_eq!(c.vips.iter().map(|v| v.port).collect::<Vec<_>>(), [443]);
}

#[test]
fn a_file_that_cannot_be_read_is_an_error() {
    let run = lb_import(Path::new("/nonexistent/keepalived.conf"), &[]);
    assert!(!run.ok);
    assert!(run.stderr.contains("cannot read /nonexistent/keepalived.conf"), "{}", run.stderr);
}
