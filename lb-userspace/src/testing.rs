//! Privileges for tests: whether this process holds the capabilities a test
//! needs, and one rule for when it does not. A plain `cargo test` skips such a
//! test with one line on stderr saying why; `cargo xtask test` sets
//! [`REQUIRE_ENV`], and there a missing capability fails the test instead of
//! hiding it. Used by this crate's unit tests and by `lb-tests`.

use std::{fmt, io::Write as _};

/// Set to `1` (`cargo xtask test` does) to fail, not skip, a test whose
/// capabilities are missing.
pub const REQUIRE_ENV: &str = "LB_TEST_REQUIRE_PRIVILEGES";

/// The capabilities tests need; the values are their bit numbers in
/// `linux/capability.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Interfaces, addresses, routes, neighbour entries, attaching XDP.
    NetAdmin = 12,
    /// Raw sockets: VRRP adverts, half-open checks, gratuitous ARP.
    NetRaw = 13,
    /// `ip netns add` (it mounts) and entering a namespace with setns.
    SysAdmin = 21,
    /// Loading BPF programs and maps.
    Bpf = 39,
}

impl Capability {
    fn bit(self) -> u64 {
        1 << self as u32
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::NetRaw => "CAP_NET_RAW",
            Self::SysAdmin => "CAP_SYS_ADMIN",
            Self::Bpf => "CAP_BPF",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("reading /proc/self/status: {0}")]
    Read(#[from] std::io::Error),
    #[error("no CapEff line in /proc/self/status")]
    NoCapEff,
    #[error("unparsable CapEff {0:?} in /proc/self/status")]
    BadCapEff(String),
}

/// The effective capability set in the text of `/proc/PID/status`. The
/// effective set, not the uid, is what the kernel checks: root with
/// capabilities dropped may do no more than any user.
pub fn effective(status: &str) -> Result<u64, PrivilegeError> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).ok_or(PrivilegeError::NoCapEff)?.trim();
    u64::from_str_radix(hex, 16).map_err(|_| PrivilegeError::BadCapEff(hex.to_owned()))
}

/// Those of `needed` that are not in the effective set `effective`.
pub fn missing(effective: u64, needed: &[Capability]) -> Vec<Capability> {
    needed.iter().copied().filter(|c| effective & c.bit() == 0).collect()
}

/// What a test does about its privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Return at once, after printing this line.
    Skip(String),
    /// Fail with this message.
    Fail(String),
}

/// The rule: run with everything `needed`, else skip, unless the privileges
/// are `required` (see [`REQUIRE_ENV`]).
pub fn verdict(missing: &[Capability], required: bool) -> Verdict {
    if missing.is_empty() {
        return Verdict::Run;
    }
    let names: Vec<String> = missing.iter().map(Capability::to_string).collect();
    let needs = match names.as_slice() {
        [one] => one.clone(),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
        [] => unreachable!("missing is not empty"),
    };
    if required {
        Verdict::Fail(format!("needs {needs}, and {REQUIRE_ENV}=1 says not to skip"))
    } else {
        Verdict::Skip(format!("skipped: needs {needs} (run `cargo xtask test`)"))
    }
}

/// Whether a test that needs `needed` may go on. On `false` the test should
/// return at once: this has said why on stderr. Panics, failing the test,
/// where [`REQUIRE_ENV`] is `1` and something is missing, or where the
/// capabilities cannot be read.
pub fn privileged(needed: &[Capability]) -> bool {
    let effective = std::fs::read_to_string("/proc/self/status")
        .map_err(PrivilegeError::from)
        .and_then(|status| effective(&status))
        .unwrap_or_else(|e| panic!("{e}"));
    let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1");
    match verdict(&missing(effective, needed), required) {
        Verdict::Run => true,
        Verdict::Skip(line) => {
            // libtest names each test's thread after the test.
            let test = std::thread::current().name().unwrap_or("test").to_owned();
            // Straight to the stream: eprintln! is captured by libtest and
            // shown only for failures, and a skip must be seen. One write, so
            // the line is not split by libtest's own output.
            let _ = std::io::stderr().write_all(format!("{test}: {line}\n").as_bytes());
            false
        }
        Verdict::Fail(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Capability, Verdict, effective, missing, verdict};

    const ROOT: &str = "Name:\tcargo\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                        CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
    /// Root after `capsh --drop=cap_bpf,cap_net_admin,cap_net_raw,cap_sys_admin`.
    const DROPPED: &str = "Uid:\t0\t0\t0\t0\nCapEff:\t0000017ffedfcfff\n";

    #[test]
    fn reads_the_effective_set() {
        assert_eq!(effective(ROOT).unwrap(), 0x1ff_ffff_ffff);
        assert!(effective("Uid:\t0\n").is_err());
        assert!(effective("CapEff:\tzz\n").is_err());
    }

    #[test]
    fn root_without_capabilities_misses_them() {
        let all = [Capability::Bpf, Capability::NetAdmin, Capability::NetRaw, Capability::SysAdmin];
        assert_eq!(missing(effective(ROOT).unwrap(), &all), []);
        assert_eq!(missing(effective(DROPPED).unwrap(), &all), all);
        assert_eq!(missing(0, &[Capability::NetRaw]), [Capability::NetRaw]);
    }

    #[test]
    fn skips_by_default_and_fails_when_required() {
        assert_eq!(verdict(&[], true), Verdict::Run);
        assert_eq!(
            verdict(&[Capability::Bpf, Capability::NetAdmin], false),
            Verdict::Skip("skipped: needs CAP_BPF and CAP_NET_ADMIN (run `cargo xtask test`)".into())
        );
        assert_eq!(
            verdict(&[Capability::NetRaw], true),
            Verdict::Fail("needs CAP_NET_RAW, and LB_TEST_REQUIRE_PRIVILEGES=1 says not to skip".into())
        );
    }
}
