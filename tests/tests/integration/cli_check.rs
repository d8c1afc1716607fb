//! `lb check`: every kind of bad configuration is refused with a non-zero
//! exit and a `file:line:column: message` line an editor can jump to; a good
//! one passes. Runs the real program (`lb-under-test`).

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use lb_tests::privileges::{Privilege, privileged};

const GOOD: &str = r#"
[[vip]]
address = "10.0.0.100"
port = 80
interface = "lo"

[[vip.backend]]
address = "10.0.0.11"
weight = 1
"#;

fn check(name: &str, text: &str) -> (bool, String) {
    // A directory per call: the tests run in parallel threads, and each
    // removes its own when done.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lb-cli-check-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lb-under-test"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("running lb check");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn good_configuration_passes() {
    let (ok, text) = check("good", GOOD);
    assert!(ok, "{text}");
    assert!(text.contains("OK (1 VIPs, 1 backends)"), "{text}");
}

#[test]
fn bad_configurations_fail_with_their_position() {
    let cases = [
        ("syntax", GOOD.replace("port = 80", "port = = 80"), "syntax.toml:4:"),
        ("unknown_key", GOOD.replace("port = 80", "port = 80\ncolour = \"blue\""), "unknown_key.toml:5:1: unknown"),
        ("bad_address", GOOD.replace("10.0.0.11", "10.0.0.300"), "bad_address.toml:8:"),
        (
            "duplicate_vip",
            format!(
                "{GOOD}{}",
                GOOD.replace("[[vip.backend]]\naddress = \"10.0.0.11\"", "[[vip.backend]]\naddress = \"10.0.0.12\"")
            ),
            "duplicate_vip.toml:",
        ),
        ("weight", GOOD.replace("weight = 1", "weight = 2000000"), "weight.toml:9:10: weight 2000000 out of range"),
        (
            "interface",
            GOOD.replace("interface = \"lo\"", "interface = \"nosuchif0\""),
            "interface.toml:5:13: unknown interface \"nosuchif0\"",
        ),
    ];
    for (name, text, want) in cases {
        let (ok, out) = check(name, &text);
        assert!(!ok, "{name}: must fail:\n{out}");
        assert!(out.contains(want), "{name}: want {want:?} in:\n{out}");
    }
}

#[test]
fn warnings_are_printed_and_still_pass() {
    let vrrp = "\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 150\n\
                peer_priority = 100\nvirtual_ipaddress = [\"10.0.0.100/24\"]\n\
                [[vrrp.track_script]]\nname = \"chk\"\ncommand = [\"/bin/true\"]\nweight = -20\n";
    let (ok, out) = check("weight", &format!("{GOOD}{vrrp}"));
    assert!(ok, "a warning is not an error:\n{out}");
    assert!(
        out.contains("weight.toml:21:10: warning: track_script chk: weight -20 can never cause a failover"),
        "{out}"
    );
    assert!(out.contains("OK (1 VIPs, 1 backends)"), "{out}");
}

/// keepalived's script security, always on, with the reason and the place:
/// a script that cannot run, an unknown script user, and a script run as
/// root that someone else could rewrite.
#[test]
fn scripts_that_cannot_or_must_not_run_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;

    // The script must be root's for the check to get as far as its directory.
    if !privileged(&[Privilege::Root]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("lb-cli-check-scripts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = open.join("chk.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let with_check = |command: &str, user: &str| {
        format!("{GOOD}[vip.backend.check]\ntype = \"script\"\ncommand = [\"{command}\"]\nuser = \"{user}\"\n")
    };
    let cases = [
        (
            "missing",
            with_check("/nonexistent/chk", "nobody"),
            "missing.toml:12:11: script check of 10.0.0.11: /nonexistent/chk: no such file".to_owned(),
        ),
        (
            "user",
            with_check("/bin/true", "no-such-user-lb"),
            "user.toml:12:11: script check of 10.0.0.11: script user \"no-such-user-lb\" does not exist".to_owned(),
        ),
        (
            "root",
            with_check(script.to_str().unwrap(), "root"),
            format!(
                "root.toml:12:11: script check of 10.0.0.11: {} runs as root, but {} is writable by everyone",
                script.display(),
                open.display()
            ),
        ),
    ];
    for (name, text, want) in cases {
        let (ok, out) = check(name, &text);
        assert!(!ok, "{name}: must fail:\n{out}");
        assert!(out.contains(&want), "{name}: want {want:?} in:\n{out}");
    }
    // The same script run as nobody is nobody's business.
    let (ok, out) = check("nobody", &with_check(script.to_str().unwrap(), "nobody"));
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
