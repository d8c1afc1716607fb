//! Which VIP addresses this director offers to the routers now: a pure
//! function of what the agent knows, so every condition is tested on
//! plain data.

use std::{collections::BTreeMap, fmt, net::IpAddr};

/// What the agent is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Just started: backends' MACs and checks, and VRRP, have not settled.
    /// A route the agent before this one left in the table is kept while
    /// the rest of its conditions hold, so a restart does not withdraw
    /// VIPs the fast path kept serving; no new route is added until
    /// settled.
    Starting,
    /// The loop runs: every condition is trusted.
    Serving,
    /// `lb drain-director`: everything withdrawn while flows move away.
    Draining,
    /// A clean stop: everything withdrawn before the fast path goes.
    Stopping,
}

/// The VRRP side of a VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vrrp {
    /// The address belongs to no VRRP instance: BGP alone decides.
    None,
    Master,
    /// Another state: the instance's name and the state's.
    NotMaster {
        instance: String,
        state: String,
    },
}

/// One configured service (`[[vip]]`), as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub address: IpAddr,
    /// Its `announce` key (false without `[announce]`).
    pub announce: bool,
    pub interface: String,
    /// The fast path is attached on `interface`.
    pub attached: bool,
    /// Its live weight meets its quorum (with hysteresis).
    pub quorum_up: bool,
    pub vrrp: Vrrp,
}

/// Why an address is not announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withdrawn {
    /// Every service on it says `announce = false`.
    NotConfigured,
    Detached {
        interface: String,
    },
    QuorumLost,
    VrrpNotMaster {
        instance: String,
        state: String,
    },
    /// Started a moment ago: waiting for the checks before announcing.
    Starting,
    Draining,
    Stopping,
}

impl fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withdrawn::NotConfigured => f.write_str("announce = false"),
            Withdrawn::Detached { interface } => write!(f, "fast path not attached on {interface}"),
            Withdrawn::QuorumLost => f.write_str("quorum lost"),
            Withdrawn::VrrpNotMaster { instance, state } => write!(f, "VRRP {instance} is {state}, not MASTER"),
            Withdrawn::Starting => f.write_str("agent starting"),
            Withdrawn::Draining => f.write_str("director draining"),
            Withdrawn::Stopping => f.write_str("agent stopping"),
        }
    }
}

/// Per address: announced (`Ok`) or why not.
pub type Decision = BTreeMap<IpAddr, Result<(), Withdrawn>>;

/// What to announce. An address carries every service on it (ports,
/// protocols), so it is announced while at least one of its services with
/// `announce` can be served: withdrawing it for one empty pool would take
/// the others' traffic away too. `present`: the addresses whose route is
/// in the table now, which [`Mode::Starting`] keeps.
pub fn decide(mode: Mode, services: &[Service], present: impl Fn(IpAddr) -> bool) -> Decision {
    let mut decision = Decision::new();
    for s in services {
        let verdict = verdict(mode, s, present(s.address));
        let slot = decision.entry(s.address).or_insert_with(|| verdict.clone());
        if slot.is_err() && (verdict.is_ok() || *slot == Err(Withdrawn::NotConfigured)) {
            *slot = verdict;
        }
    }
    decision
}

fn verdict(mode: Mode, s: &Service, present: bool) -> Result<(), Withdrawn> {
    if !s.announce {
        return Err(Withdrawn::NotConfigured);
    }
    match mode {
        Mode::Draining => return Err(Withdrawn::Draining),
        Mode::Stopping => return Err(Withdrawn::Stopping),
        Mode::Starting | Mode::Serving => {}
    }
    if !s.attached {
        return Err(Withdrawn::Detached { interface: s.interface.clone() });
    }
    // Until settled, quorum and VRRP state are not known yet: a route the
    // agent before left stays, none is added.
    if mode == Mode::Starting {
        return if present { Ok(()) } else { Err(Withdrawn::Starting) };
    }
    if let Vrrp::NotMaster { instance, state } = &s.vrrp {
        return Err(Withdrawn::VrrpNotMaster { instance: instance.clone(), state: state.clone() });
    }
    if !s.quorum_up {
        return Err(Withdrawn::QuorumLost);
    }
    Ok(())
}

/// The addresses to announce.
pub fn wanted(decision: &Decision) -> impl Iterator<Item = IpAddr> + '_ {
    decision.iter().filter(|(_, v)| v.is_ok()).map(|(a, _)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(address: &str) -> Service {
        Service {
            address: address.parse().unwrap(),
            announce: true,
            interface: "eth0".to_owned(),
            attached: true,
            quorum_up: true,
            vrrp: Vrrp::None,
        }
    }

    fn one(mode: Mode, s: Service) -> Result<(), Withdrawn> {
        decide(mode, &[s], |_| false).into_values().next().unwrap()
    }

    fn not_master() -> Vrrp {
        Vrrp::NotMaster { instance: "VI_1".to_owned(), state: "BACKUP".to_owned() }
    }

    #[test]
    fn announced_while_every_condition_holds() {
        assert_eq!(one(Mode::Serving, service("10.0.0.1")), Ok(()));
        assert_eq!(one(Mode::Serving, Service { vrrp: Vrrp::Master, ..service("10.0.0.1") }), Ok(()));
        assert_eq!(one(Mode::Serving, service("2001:db8::1")), Ok(()));
    }

    #[test]
    fn each_condition_withdraws() {
        let s = service("10.0.0.1");
        assert_eq!(one(Mode::Serving, Service { announce: false, ..s.clone() }), Err(Withdrawn::NotConfigured));
        assert_eq!(
            one(Mode::Serving, Service { attached: false, ..s.clone() }),
            Err(Withdrawn::Detached { interface: "eth0".to_owned() })
        );
        assert_eq!(one(Mode::Serving, Service { quorum_up: false, ..s.clone() }), Err(Withdrawn::QuorumLost));
        assert_eq!(
            one(Mode::Serving, Service { vrrp: not_master(), ..s.clone() }),
            Err(Withdrawn::VrrpNotMaster { instance: "VI_1".to_owned(), state: "BACKUP".to_owned() })
        );
        assert_eq!(one(Mode::Draining, s.clone()), Err(Withdrawn::Draining));
        assert_eq!(one(Mode::Stopping, s), Err(Withdrawn::Stopping));
    }

    #[test]
    fn stopping_and_draining_withdraw_even_the_routes_present() {
        let services = [service("10.0.0.1"), service("10.0.0.2")];
        for mode in [Mode::Draining, Mode::Stopping] {
            assert_eq!(wanted(&decide(mode, &services, |_| true)).count(), 0, "{mode:?}");
        }
    }

    #[test]
    fn starting_keeps_what_is_present_and_adds_nothing() {
        // The agent before left 10.0.0.1; quorum is not known yet (MACs
        // resolving), and VRRP has not resumed.
        let services = [
            Service { quorum_up: false, vrrp: not_master(), ..service("10.0.0.1") },
            service("10.0.0.2"),
            Service { attached: false, ..service("10.0.0.3") },
            Service { announce: false, ..service("10.0.0.4") },
        ];
        let left: IpAddr = "10.0.0.1".parse().unwrap();
        let present = |a: IpAddr| a == left || a != "10.0.0.2".parse::<IpAddr>().unwrap();
        let d = decide(Mode::Starting, &services, present);
        assert_eq!(wanted(&d).collect::<Vec<_>>(), [left]);
        assert_eq!(d[&"10.0.0.2".parse().unwrap()], Err(Withdrawn::Starting));
        assert!(matches!(d[&"10.0.0.3".parse().unwrap()], Err(Withdrawn::Detached { .. })));
        assert_eq!(d[&"10.0.0.4".parse().unwrap()], Err(Withdrawn::NotConfigured));
        // Once serving, the kept route goes if its conditions do not hold.
        let d = decide(Mode::Serving, &services, present);
        assert_eq!(wanted(&d).collect::<Vec<_>>(), ["10.0.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn vrrp_and_bgp_together_and_apart() {
        let bgp_only = service("10.0.0.1");
        let with_vrrp_master = Service { vrrp: Vrrp::Master, ..service("10.0.0.2") };
        let with_vrrp_backup = Service { vrrp: not_master(), ..service("10.0.0.3") };
        let vrrp_only = Service { announce: false, vrrp: Vrrp::Master, ..service("10.0.0.4") };
        let d = decide(Mode::Serving, &[bgp_only, with_vrrp_master, with_vrrp_backup, vrrp_only], |_| false);
        let ips: Vec<IpAddr> = wanted(&d).collect();
        assert_eq!(ips, ["10.0.0.1".parse::<IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
    }

    #[test]
    fn an_address_stays_while_one_of_its_services_can_serve() {
        let http = service("10.0.0.1");
        let https = Service { quorum_up: false, ..service("10.0.0.1") };
        assert_eq!(wanted(&decide(Mode::Serving, &[https.clone(), http], |_| false)).count(), 1);
        // Both empty: the reason is the first service's.
        let d = decide(Mode::Serving, &[https.clone(), https.clone()], |_| false);
        assert_eq!(d.into_values().collect::<Vec<_>>(), [Err(Withdrawn::QuorumLost)]);
        // A service kept out of BGP does not hide why the other is withdrawn.
        let quiet = Service { announce: false, ..service("10.0.0.1") };
        let d = decide(Mode::Serving, &[quiet, https], |_| false);
        assert_eq!(d.into_values().collect::<Vec<_>>(), [Err(Withdrawn::QuorumLost)]);
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            Withdrawn::VrrpNotMaster { instance: "VI_1".to_owned(), state: "FAULT".to_owned() }.to_string(),
            "VRRP VI_1 is FAULT, not MASTER"
        );
        assert_eq!(Withdrawn::Detached { interface: "eth1".to_owned() }.to_string(), "fast path not attached on eth1");
    }
}
