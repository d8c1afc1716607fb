//! Privileges for tests: whether this process holds what a test needs, and
//! one rule for when it does not. A plain `cargo test` skips such a test with
//! one line on stderr saying why; `cargo xtask test` sets [`REQUIRE_ENV`],
//! and there a missing privilege fails the test instead of hiding it. Used by
//! this crate's unit tests and by `lb-tests`.

use std::{fmt, io::Write as _};

/// Set to `1` (`cargo xtask test` does) to fail, not skip, a test whose
/// privileges are missing.
pub const REQUIRE_ENV: &str = "LB_TEST_REQUIRE_PRIVILEGES";

/// What tests need beyond an ordinary user: capabilities, which the kernel
/// checks in the effective set whatever the uid (root with capabilities
/// dropped may do no more than anyone), and being root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Giving files away to another user.
    Chown,
    /// Running a script as its user (with SetUid).
    SetGid,
    /// Running a script as its user (with SetGid).
    SetUid,
    /// Interfaces, addresses, routes, neighbour entries, attaching XDP.
    NetAdmin,
    /// Raw sockets: VRRP adverts, half-open checks, gratuitous ARP.
    NetRaw,
    /// `ip netns add` (it mounts) and entering a namespace with setns.
    SysAdmin,
    /// Loading BPF programs and maps.
    Bpf,
    /// Effective uid 0: the files the test creates belong to root, as the
    /// agent's scripts and configuration do.
    Root,
}

impl Privilege {
    /// The capability's bit number in `linux/capability.h`.
    fn capability(self) -> Option<u32> {
        match self {
            Self::Chown => Some(0),
            Self::SetGid => Some(6),
            Self::SetUid => Some(7),
            Self::NetAdmin => Some(12),
            Self::NetRaw => Some(13),
            Self::SysAdmin => Some(21),
            Self::Bpf => Some(39),
            Self::Root => None,
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Chown => "CAP_CHOWN",
            Self::SetGid => "CAP_SETGID",
            Self::SetUid => "CAP_SETUID",
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::NetRaw => "CAP_NET_RAW",
            Self::SysAdmin => "CAP_SYS_ADMIN",
            Self::Bpf => "CAP_BPF",
            Self::Root => "uid 0",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("reading /proc/self/status: {0}")]
    Read(#[from] std::io::Error),
    #[error("no {0} line in /proc/self/status")]
    Missing(&'static str),
    #[error("unparsable {field} {text:?} in /proc/self/status")]
    Unparsable { field: &'static str, text: String },
}

/// What a process holds: its effective capability set and effective uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub capabilities: u64,
    pub uid: u32,
}

impl Held {
    /// Reads the text of `/proc/PID/status`.
    pub fn from_status(status: &str) -> Result<Self, PrivilegeError> {
        let field = |name: &'static str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .ok_or(PrivilegeError::Missing(name))
        };
        let unparsable = |field: &'static str, text: &str| PrivilegeError::Unparsable { field, text: text.to_owned() };
        let cap_eff = field("CapEff")?;
        let capabilities = u64::from_str_radix(cap_eff, 16).map_err(|_| unparsable("CapEff", cap_eff))?;
        // "Uid: real effective saved filesystem".
        let uids = field("Uid")?;
        let uid = uids.split_whitespace().nth(1).and_then(|u| u.parse().ok()).ok_or_else(|| unparsable("Uid", uids))?;
        Ok(Self { capabilities, uid })
    }

    /// Those of `needed` this does not hold.
    pub fn missing(&self, needed: &[Privilege]) -> Vec<Privilege> {
        let holds = |p: &Privilege| match p.capability() {
            Some(bit) => self.capabilities & (1 << bit) != 0,
            None => self.uid == 0,
        };
        needed.iter().copied().filter(|p| !holds(p)).collect()
    }
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

/// The rule: run with nothing `missing`, else skip, unless the privileges
/// are `required` (see [`REQUIRE_ENV`]).
pub fn verdict(missing: &[Privilege], required: bool) -> Verdict {
    let needs = match missing {
        [] => return Verdict::Run,
        [one] => one.to_string(),
        [first @ .., last] => {
            let first: Vec<String> = first.iter().map(Privilege::to_string).collect();
            format!("{} and {last}", first.join(", "))
        }
    };
    if required {
        Verdict::Fail(format!("needs {needs}, and {REQUIRE_ENV}=1 says not to skip"))
    } else {
        Verdict::Skip(format!("skipped: needs {needs} (run `cargo xtask test`)"))
    }
}

/// Whether a test that needs `needed` may go on. On `false` the test should
/// return at once: this has said why on stderr. Panics, failing the test,
/// where [`REQUIRE_ENV`] is `1` and something is missing, or where this
/// process's privileges cannot be read.
pub fn privileged(needed: &[Privilege]) -> bool {
    let held = std::fs::read_to_string("/proc/self/status")
        .map_err(PrivilegeError::from)
        .and_then(|status| Held::from_status(&status))
        .unwrap_or_else(|e| panic!("{e}"));
    let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1");
    match verdict(&held.missing(needed), required) {
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
    use super::{Held, Privilege, Verdict, verdict};

    const ROOT: &str = "Name:\tcargo\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                        CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
    /// Root after `capsh --drop=cap_bpf,cap_net_admin,cap_net_raw,cap_sys_admin`.
    const DROPPED: &str = "Uid:\t0\t0\t0\t0\nCapEff:\t0000017ffedfcfff\n";
    const USER: &str = "Uid:\t1001\t1001\t1001\t1001\nCapEff:\t0000000000000000\n";

    #[test]
    fn reads_the_effective_set_and_uid() {
        assert_eq!(Held::from_status(ROOT).unwrap(), Held { capabilities: 0x1ff_ffff_ffff, uid: 0 });
        assert_eq!(Held::from_status(USER).unwrap(), Held { capabilities: 0, uid: 1001 });
        assert!(Held::from_status("Uid:\t0\t0\t0\t0\n").is_err());
        assert!(Held::from_status("Uid:\t0\nCapEff:\t0\n").is_err());
        assert!(Held::from_status("Uid:\t0\t0\t0\t0\nCapEff:\tzz\n").is_err());
    }

    #[test]
    fn root_without_capabilities_misses_them() {
        use Privilege::*;
        let all = [Chown, SetGid, SetUid, NetAdmin, NetRaw, SysAdmin, Bpf, Root];
        assert_eq!(Held::from_status(ROOT).unwrap().missing(&all), []);
        assert_eq!(Held::from_status(DROPPED).unwrap().missing(&all), [NetAdmin, NetRaw, SysAdmin, Bpf]);
        assert_eq!(Held::from_status(USER).unwrap().missing(&all), all);
    }

    #[test]
    fn skips_by_default_and_fails_when_required() {
        assert_eq!(verdict(&[], true), Verdict::Run);
        assert_eq!(
            verdict(&[Privilege::SetUid, Privilege::SetGid, Privilege::Root], false),
            Verdict::Skip("skipped: needs CAP_SETUID, CAP_SETGID and uid 0 (run `cargo xtask test`)".into())
        );
        assert_eq!(
            verdict(&[Privilege::NetRaw], true),
            Verdict::Fail("needs CAP_NET_RAW, and LB_TEST_REQUIRE_PRIVILEGES=1 says not to skip".into())
        );
    }
}
