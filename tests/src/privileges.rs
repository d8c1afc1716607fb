//! What the integration tests need beyond an ordinary user, in the sets they
//! ask for. The rule (run, skip with a line on stderr, or fail under
//! `cargo xtask test`) is [`lb_userspace::testing`]'s, shared with the
//! agent's unit tests; a test starts with
//! `if !privileged(NETNS) { return; }`.

pub use lb_userspace::testing::{Capability, REQUIRE_ENV, privileged};

/// Network namespaces and the links, addresses and routes in them.
pub const NETNS: &[Capability] = &[Capability::SysAdmin, Capability::NetAdmin];
/// VRRP in namespaces: adverts and gratuitous ARP go out on raw sockets.
pub const VRRP: &[Capability] = &[Capability::SysAdmin, Capability::NetAdmin, Capability::NetRaw];
/// Loading the XDP program, attached or run with BPF_PROG_TEST_RUN.
pub const BPF: &[Capability] = &[Capability::Bpf, Capability::NetAdmin];
/// The agent, or a fast path, in namespaces: all of the above (the agent's
/// half-open checks and VRRP use raw sockets).
pub const AGENT: &[Capability] = &[Capability::SysAdmin, Capability::NetAdmin, Capability::NetRaw, Capability::Bpf];
