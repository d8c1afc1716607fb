//! The agent's `Director` on a loaded fast path (not attached): rings built
//! ahead on a health check's heads-up, so that the verdict only flips.

use lb_common::DEFAULT_RING_SIZE;
use lb_userspace::{
    agent::director::Director,
    config::Config,
    dataplane::{Dataplane, DataplaneOptions},
};

fn director(backends: u32) -> Director {
    let mut toml = String::from(
        "[[vip]]\naddress = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\ninterface = \"lo\"\n\n[vip.check]\ntype = \"tcp\"\n",
    );
    for i in 0..backends {
        toml.push_str(&format!("\n[[vip.backend]]\naddress = \"10.1.0.{}\"\n", 1 + i));
    }
    let config = Config::from_str(&toml, "test.toml").unwrap();
    let dp = Dataplane::load(DataplaneOptions { max_vips: 1, max_ring_size: DEFAULT_RING_SIZE, flows_per_cpu: 1024 })
        .unwrap();
    let mut director = Director::new(config, dp).unwrap();
    let addresses: Vec<_> = director.services()[0].backends.iter().map(|b| b.address).collect();
    for (i, address) in addresses.into_iter().enumerate() {
        director.on_mac("lo", address, Some([2, 0, 0, 0, 0, i as u8 + 1]), "test").unwrap();
    }
    director.flush().unwrap();
    director
}

fn slots(director: &Director) -> Vec<u32> {
    director.status(false).unwrap().vips[0].backends.iter().map(|b| b.slots).collect()
}

#[test]
fn a_heads_up_builds_the_ring_ahead_and_the_verdict_only_flips() {
    let mut d = director(3);
    let ids: Vec<u32> = d.services()[0].backends.iter().map(|b| b.id).collect();
    assert!(slots(&d).iter().all(|&n| n > 0), "{:?}", slots(&d));
    let builds = d.ring_builds();

    // One failure from down: the ring without it is built now...
    assert!(d.prepare(ids[1], false, None).unwrap());
    assert_eq!(d.ring_builds(), builds + 1);
    // ...once (a second heads-up finds it kept)...
    assert!(!d.prepare(ids[1], false, None).unwrap());
    // ...and nothing a packet sees changed.
    assert!(slots(&d).iter().all(|&n| n > 0));

    // The verdict installs it without a build.
    d.on_health(ids[1], false, None, "test: refused").unwrap();
    d.flush().unwrap().expect("the verdict changes the fast path");
    assert_eq!(d.ring_builds(), builds + 1);
    let after = slots(&d);
    assert_eq!(after[1], 0, "{after:?}");
    assert_eq!(after.iter().sum::<u32>(), DEFAULT_RING_SIZE);

    // The way back is the ring it had before, kept.
    d.on_health(ids[1], true, None, "test").unwrap();
    d.flush().unwrap().expect("the verdict changes the fast path");
    assert_eq!(d.ring_builds(), builds + 1);
    assert!(slots(&d).iter().all(|&n| n > 0));
}

#[test]
fn a_heads_up_that_comes_to_nothing_changes_nothing() {
    let mut d = director(3);
    let ids: Vec<u32> = d.services()[0].backends.iter().map(|b| b.id).collect();
    let before = slots(&d);
    assert!(d.prepare(ids[0], false, None).unwrap());
    // The next check passes: no verdict, nothing to install.
    d.on_health(ids[0], true, None, "test").unwrap();
    assert!(d.flush().unwrap().is_none());
    assert_eq!(slots(&d), before);
    // A later change of another backend installs its own ring, not the one
    // built ahead (which sat in the spare region it now overwrites).
    d.on_health(ids[2], false, None, "test: refused").unwrap();
    d.flush().unwrap().expect("the verdict changes the fast path");
    let after = slots(&d);
    assert!(after[0] > 0 && after[1] > 0 && after[2] == 0, "{after:?}");
}

#[test]
fn heads_ups_build_a_few_rings_a_second_at_most() {
    let mut d = director(12);
    let ids: Vec<u32> = d.services()[0].backends.iter().map(|b| b.id).collect();
    let built = ids.iter().filter(|&&id| d.prepare(id, false, None).unwrap()).count();
    // A burst (a switch failing under every backend) is left to the installs.
    assert!((1..12).contains(&built), "{built} of 12 built at once");
}
