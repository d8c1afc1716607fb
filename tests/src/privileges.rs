//! What the integration tests need beyond an ordinary user, in the sets they
//! ask for. The rule (run, skip with a line on stderr, or fail under
//! `cargo xtask test`) is [`lb_userspace::testing`]'s, shared with the
//! agent's unit tests; a test starts with
//! `if !privileged(NETNS) { return; }`.

pub use lb_userspace::testing::{Privilege, REQUIRE_ENV, privileged};

/// Network namespaces and the links, addresses and routes in them.
pub const NETNS: &[Privilege] = &[Privilege::SysAdmin, Privilege::NetAdmin];
/// VRRP in namespaces: adverts and gratuitous ARP go out on raw sockets.
pub const VRRP: &[Privilege] = &[Privilege::SysAdmin, Privilege::NetAdmin, Privilege::NetRaw];
/// Loading the XDP program, attached or run with BPF_PROG_TEST_RUN.
pub const BPF: &[Privilege] = &[Privilege::Bpf, Privilege::NetAdmin];
/// The agent, or a fast path, in namespaces: all of the above (the agent's
/// half-open checks and VRRP use raw sockets).
pub const AGENT: &[Privilege] = &[Privilege::SysAdmin, Privilege::NetAdmin, Privilege::NetRaw, Privilege::Bpf];
