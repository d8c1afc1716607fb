//! `lb import` and keepalived 2.2.7 agree on which keepalived.conf files
//! are fine: every file of tests/data/keepalived/good and .../broken goes
//! through `keepalived -t` (its config test) and `lb import`, and both must
//! accept it or both refuse it, but for the few files listed below with the
//! reason and what `lb import` must say.
//!
//! keepalived's config test refuses a file by a non-zero exit (5 for a
//! keyword or value it rejects, 6 for a missing script); it exits 0 after
//! warnings that it runs past, such as an include that matches no file.
//! It also checks that the interfaces named exist, so it runs in a namespace
//! of its own (`unshare -n`, gone when it exits, also on failure) that has
//! eth0 and eth1 and nothing of the host's. Skips without keepalived or
//! without the privileges to make a namespace.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use lb_tests::privileges;

use crate::support;

/// keepalived accepts these and lb refuses them: lb cannot do what they
/// ask, and says so.
const LB_REFUSES: &[(&str, &str)] = &[
    // lb forwards by direct routing only.
    ("lb_kind_nat.conf", "lb_kind_nat.conf:1:1: error: lb_kind NAT: lb forwards by direct routing only"),
    // lb speaks VRRP with PASS or no authentication.
    ("auth_type_ah.conf", "auth_type_ah.conf:5:5: error: auth_type AH (IPsec AH, HMAC-MD5-96) is not supported"),
];

/// Broken in intent, yet both run them: keepalived prints "Config files
/// missing" for an include that matches nothing and goes on without it, as
/// lb does with a warning.
const BOTH_ACCEPT_WITH_A_WARNING: &[(&str, &str)] =
    &[("include_missing.conf", "include_missing.conf:1:9: warning: include: no file matches")];

/// Seconds a config test may take before it counts as hung.
const KEEPALIVED_TIMEOUT: &str = "30";

/// Makes eth0 and eth1 in the new namespace, then runs the config test on
/// the file given as `$0`; exit 100 means the namespace could not be set up.
const IN_NAMESPACE: &str = "ip link add eth0 type veth peer name eth1 && ip link set eth0 up && ip link set eth1 up \
                            || exit 100; exec keepalived -t -f \"$0\"";

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/keepalived").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

fn name(file: &Path) -> &str {
    file.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name")
}

fn keepalived_check(file: &Path) -> Output {
    Command::new("timeout")
        .args([KEEPALIVED_TIMEOUT, "unshare", "-n", "sh", "-c", IN_NAMESPACE])
        .arg(file)
        .output()
        .expect("running keepalived -t")
}

fn lb_import(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb-under-test"))
        .arg("import")
        .arg(file)
        .args(["--interface", "eth0"])
        .output()
        .expect("running lb import")
}

/// Why keepalived's config test cannot run here, if it cannot.
fn cannot_run_keepalived() -> Option<String> {
    match Command::new("keepalived").arg("--version").output() {
        Err(e) => return Some(format!("keepalived is not installed ({e})")),
        Ok(out) if !String::from_utf8_lossy(&out.stderr).starts_with("Keepalived") => {
            return Some("`keepalived --version` does not name keepalived".to_owned());
        }
        Ok(_) => {}
    }
    let probe = Command::new("unshare")
        .args(["-n", "sh", "-c", IN_NAMESPACE.split(" || ").next().expect("the set-up")])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("no namespace with eth0 and eth1: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Some(format!("unshare: {e}")),
    }
}

#[test]
fn lb_import_accepts_and_refuses_what_keepalived_does() {
    let Some(_turn) = support::start(module_path!(), privileges::NETNS) else { return };
    if let Some(why) = cannot_run_keepalived() {
        eprintln!("skipped: keepalived's config test cannot run here: {why}");
        return;
    }
    let good = corpus("good");
    let broken = corpus("broken");
    assert!(good.len() >= 10 && broken.len() >= 10, "{good:?} {broken:?}");
    let listed = |table: &[(&'static str, &'static str)], file: &Path| {
        table.iter().find(|(f, _)| *f == name(file)).map(|(_, said)| *said)
    };
    let mut disagreements = Vec::new();
    for file in good.iter().chain(&broken) {
        let ka = keepalived_check(file);
        let lb = lb_import(file);
        let ka_stderr = String::from_utf8_lossy(&ka.stderr);
        let lb_stderr = String::from_utf8_lossy(&lb.stderr);
        assert_ne!(ka.status.code(), Some(100), "{}: no namespace: {ka_stderr}", name(file));
        assert_ne!(ka.status.code(), Some(124), "{}: keepalived -t timed out", name(file));
        let (ka_ok, lb_ok) = (ka.status.success(), lb.status.success());
        let expected = if let Some(said) = listed(LB_REFUSES, file) {
            Some((true, false, said))
        } else {
            listed(BOTH_ACCEPT_WITH_A_WARNING, file).map(|said| (true, true, said))
        };
        match expected {
            Some((ka_want, lb_want, said)) if (ka_ok, lb_ok) != (ka_want, lb_want) || !lb_stderr.contains(said) => {
                disagreements.push(format!(
                    "{}: listed as keepalived {ka_want} / lb {lb_want} saying {said:?}, but keepalived {ka_ok} \
                     ({ka_stderr}) / lb {lb_ok} ({lb_stderr})",
                    name(file)
                ));
            }
            Some(_) => {}
            None if ka_ok != lb_ok => disagreements.push(format!(
                "{}: keepalived accepts: {ka_ok} ({ka_stderr}); lb accepts: {lb_ok} ({lb_stderr})",
                name(file)
            )),
            None => {}
        }
        // keepalived exits 0 without an include's file: a good file must not
        // pass only because a part of it was never read.
        if good.contains(file) && (!(ka_ok && lb_ok) || ka_stderr.contains("Config files missing")) {
            disagreements.push(format!("{}: a good file refused: {ka_stderr} {lb_stderr}", name(file)));
        }
        if broken.contains(file) && ka_ok && lb_ok && listed(BOTH_ACCEPT_WITH_A_WARNING, file).is_none() {
            disagreements.push(format!("{}: a broken file accepted by both", name(file)));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
