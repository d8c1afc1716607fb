//! A reload against fakes of every part: each step fails in turn, and
//! whatever had switched switches back.

use std::net::IpAddr;

use super::*;
use crate::{
    agent::{
        memory_maps::{MemoryMaps, Seen},
        service::Service,
    },
    fast_path::FastPathOptions,
};

const RING: u32 = 251;
const OPTS: FastPathOptions = FastPathOptions { max_vips: 4, max_ring_size: RING, flows_per_cpu: 1024 };

/// A part that fails on its `fail_on`-th call (counting from 1).
#[derive(Debug, Default)]
struct Fake<T> {
    running: T,
    calls: usize,
    fail_on: Option<usize>,
}

impl<T> Fake<T> {
    fn call(&mut self) -> bool {
        self.calls += 1;
        self.fail_on != Some(self.calls)
    }
}

impl HealthTargets for Fake<Vec<Target>> {
    fn set(&mut self, targets: Vec<Target>) -> Result<(), HealthError> {
        if !self.call() {
            return Err(HealthError::EmptyCommand {});
        }
        self.running = targets;
        Ok(())
    }
}

impl NeighbourTargets for Fake<Vec<(u32, IpAddr)>> {
    fn set(&mut self, targets: Vec<(u32, IpAddr)>) -> Result<(), NeighError> {
        if !self.call() {
            return Err(NeighError::Stopped);
        }
        self.running = targets;
        Ok(())
    }
}

impl VrrpInstances for Fake<Vec<VrrpInstance>> {
    async fn set(&mut self, config: &Config) -> Result<(), VrrpError> {
        if !self.call() {
            return Err(VrrpError::Setup { instance: "VI_2".to_owned(), message: "no such interface".to_owned() });
        }
        self.running = config.vrrp.clone();
        Ok(())
    }
}

fn lo_only(name: &str) -> Option<u32> {
    (name == "lo").then_some(1)
}

fn vip(vip: u8, backends: std::ops::RangeInclusive<u8>) -> String {
    let mut toml = format!(
        "[[vip]]\naddress = \"10.0.0.{vip}\"\nport = 80\ninterface = \"lo\"\nring_size = {RING}\n\n\
         [vip.check]\ntype = \"tcp\"\n"
    );
    for i in backends {
        toml.push_str(&format!("\n[[vip.backend]]\naddress = \"10.{vip}.0.{i}\"\n"));
    }
    toml
}

fn vrrp(name: &str, vrid: u8, priority: u8) -> String {
    format!(
        "[[vrrp]]\nname = \"{name}\"\ninterface = \"lo\"\nvirtual_router_id = {vrid}\npriority = {priority}\n\
         virtual_ipaddress = [\"10.0.0.{vrid}/24\"]\n\n"
    )
}

const RUNNING: fn() -> String = || vrrp("VI_1", 100, 150) + &vip(100, 1..=3);
/// Changes every part: a backend goes and one comes, a VIP comes, a VRRP
/// instance changes and one comes.
const NEXT: fn() -> String = || vrrp("VI_1", 100, 200) + &vrrp("VI_2", 101, 100) + &vip(100, 2..=4) + &vip(101, 1..=2);

fn config(text: &str) -> Config {
    Config::from_str(text, "lb.toml").expect("a valid test configuration")
}

/// A running agent: its director at rest with one backend down, and every
/// part running what the director says.
struct Agent {
    director: Director<MemoryMaps>,
    health: Fake<Vec<Target>>,
    neighbours: Fake<Vec<(u32, IpAddr)>>,
    vrrp: Fake<Vec<VrrpInstance>>,
}

/// What a test compares before and after a reload.
#[derive(Debug, PartialEq)]
struct Running {
    setup: Setup,
    seen: Vec<Seen>,
    health: Vec<Target>,
    neighbours: Vec<(u32, IpAddr)>,
    vrrp: Vec<VrrpInstance>,
}

impl Agent {
    fn new() -> Self {
        let config = config(&RUNNING());
        let vrrp = config.vrrp.clone();
        let mut director = Director::new(config, MemoryMaps::new(OPTS)).unwrap();
        let backends: Vec<(IpAddr, u32)> =
            director.services().iter().flat_map(|s| s.backends.iter()).map(|b| (b.address, b.id)).collect();
        for &(address, id) in &backends {
            director.on_mac("lo", address, Some([2, 0, 0, 0, 0, id as u8]), "test").unwrap();
        }
        director.on_health(backends[0].1, false, None, "test: refused").unwrap();
        director.flush().unwrap();
        let health = Fake { running: health_targets(director.services()), ..Fake::default() };
        let neighbours = Fake { running: neighbour_targets(director.services(), lo_only), ..Fake::default() };
        Self { director, health, neighbours, vrrp: Fake { running: vrrp, ..Fake::default() } }
    }

    fn running(&self) -> Running {
        Running {
            setup: self.director.snapshot(),
            seen: self.director.fast_path().seen(),
            health: self.health.running.clone(),
            neighbours: self.neighbours.running.clone(),
            vrrp: self.vrrp.running.clone(),
        }
    }

    async fn reload(&mut self, text: &str) -> Response {
        let parts = Parts {
            director: &mut self.director,
            health: &mut self.health,
            neighbours: &mut self.neighbours,
            vrrp: &mut self.vrrp,
        };
        let text = text.to_owned();
        reload(parts, Path::new("lb.toml"), move |path| Config::from_str(&text, path), lo_only).await
    }
}

#[tokio::test]
async fn a_good_file_switches_every_part() {
    let mut agent = Agent::new();
    let down = agent.director.services()[0].backends[0].id;
    let r = agent.reload(&NEXT()).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.message.as_deref(), Some("reloaded lb.toml"));
    let services = agent.director.services();
    assert_eq!(services.len(), 2);
    assert_eq!(agent.health.running, health_targets(services));
    assert_eq!(agent.health.running.len(), 5);
    assert_eq!(agent.neighbours.running, neighbour_targets(services, lo_only));
    assert_eq!(agent.vrrp.running, agent.director.config().vrrp);
    // The backend held down is gone: every check starts up.
    assert!(services.iter().all(|s| s.backends.iter().all(|b| b.id != down)));
    assert!(agent.health.running.iter().all(|t| t.initially_up));
}

#[tokio::test]
async fn vrrp_is_left_alone_when_its_part_of_the_file_is_unchanged() {
    let mut agent = Agent::new();
    let text = RUNNING() + &vip(101, 1..=1);
    let r = agent.reload(&text).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(agent.vrrp.calls, 0);
    assert_eq!(agent.health.running.len(), 4);
}

/// Where a reload fails.
#[derive(Clone, Copy, Debug)]
enum Step {
    Load,
    Plan,
    Health,
    Director,
    Neighbours,
    Vrrp,
}

#[tokio::test]
async fn a_failure_at_any_step_leaves_everything_as_it_was() {
    for step in [Step::Load, Step::Plan, Step::Health, Step::Director, Step::Neighbours, Step::Vrrp] {
        let mut agent = Agent::new();
        let before = agent.running();
        let text = match step {
            Step::Load => "[[vip]]\naddress = \"10.0.0.100\"\n".to_owned(),
            // Larger rings than the maps were loaded with.
            Step::Plan => NEXT().replace(&format!("ring_size = {RING}"), "ring_size = 257"),
            _ => NEXT(),
        };
        match step {
            Step::Health => agent.health.fail_on = Some(1),
            Step::Director => agent.director.fast_path_mut().fail_next_publish(),
            Step::Neighbours => agent.neighbours.fail_on = Some(1),
            Step::Vrrp => agent.vrrp.fail_on = Some(1),
            Step::Load | Step::Plan => {}
        }
        let r = agent.reload(&text).await;
        assert!(!r.ok, "{step:?}: {r:?}");
        let error = r.error.unwrap_or_default();
        assert!(error.ends_with("\nthe running configuration stays in force"), "{step:?}: {error}");
        let expected = match step {
            Step::Load => "lb.toml:",
            Step::Plan => "cannot change without a restart",
            Step::Health => "health checks: ",
            Step::Director => "no layout of the VIP table fits",
            Step::Neighbours => "neighbour table: ",
            Step::Vrrp => "VRRP: VRRP instance VI_2: no such interface",
        };
        assert!(error.contains(expected), "{step:?}: {error}");
        assert_eq!(agent.running(), before, "{step:?}");
        // Each part that switched was switched back: two calls; the part
        // that failed, one; the parts after it, none.
        let calls = match step {
            Step::Load | Step::Plan => (0, 0, 0),
            Step::Health => (1, 0, 0),
            Step::Director => (2, 0, 0),
            Step::Neighbours => (2, 1, 0),
            Step::Vrrp => (2, 2, 1),
        };
        assert_eq!((agent.health.calls, agent.neighbours.calls, agent.vrrp.calls), calls, "{step:?}");
    }
}

#[tokio::test]
async fn a_part_that_cannot_switch_back_is_reported() {
    let mut agent = Agent::new();
    agent.neighbours.fail_on = Some(1);
    agent.health.fail_on = Some(2);
    let r = agent.reload(&NEXT()).await;
    let error = r.error.unwrap_or_default();
    assert!(
        error.starts_with(
            "neighbour table: the neighbour watcher has stopped\nswitching back to the running \
                           configuration failed too: health checks: "
        ),
        "{error}"
    );
    // The director went back; the checks run the new file's targets.
    assert_eq!(agent.director.services().len(), 1);
    assert_eq!(agent.health.running.len(), 5);
}

#[tokio::test]
async fn a_reload_keeps_what_the_director_knows_of_backends_that_stay() {
    let mut agent = Agent::new();
    let kept: Vec<(IpAddr, u32)> =
        agent.director.services()[0].backends[1..].iter().map(|b| (b.address, b.id)).collect();
    let r = agent.reload(&NEXT()).await;
    assert!(r.ok, "{r:?}");
    let now: Vec<(IpAddr, u32)> =
        agent.director.services()[0].backends[..2].iter().map(|b| (b.address, b.id)).collect();
    assert_eq!(now, kept);
    assert!(agent.director.services()[0].backends[..2].iter().all(|b| b.mac.is_some()));
    let ids: Vec<u32> = agent.director.services().iter().flat_map(Service::ids).collect();
    assert_eq!(agent.health.running.iter().map(|t| t.id.backend).collect::<Vec<_>>(), ids);
}
