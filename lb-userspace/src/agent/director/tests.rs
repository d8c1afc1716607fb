//! The director on the in-memory maps: what each decision writes, in what
//! order, and what a packet meets afterwards.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::BACKEND_F_ALIVE;

use super::*;
use crate::{
    agent::memory_maps::{MemoryMaps, Write},
    fast_path::FastPathOptions,
};

/// Small rings: every decision is the same at 65537 slots, only slower.
const RING: u32 = 251;
const OPTS: FastPathOptions = FastPathOptions { max_vips: 4, max_ring_size: RING, flows_per_cpu: 1024 };

/// A VIP `10.0.0.{vip}:80` on `lo` with `backends` checked backends
/// `10.{vip}.0.1...`, and `extra` lines in its table.
fn vip(vip: u8, backends: u8, extra: &str) -> String {
    let mut toml = format!(
        "[[vip]]\naddress = \"10.0.0.{vip}\"\nport = 80\ninterface = \"lo\"\nring_size = {RING}\n{extra}\n\
         [vip.check]\ntype = \"tcp\"\n"
    );
    for i in 1..=backends {
        toml.push_str(&format!("\n[[vip.backend]]\naddress = \"10.{vip}.0.{i}\"\n"));
    }
    toml
}

fn config(text: &str) -> Config {
    Config::from_str(text, "test.toml").expect("a valid test configuration")
}

/// A director with every backend's MAC known and the last flip's grace
/// period over: a running agent at rest.
fn director(text: &str) -> Director<MemoryMaps> {
    let mut d = Director::new(config(text), MemoryMaps::new(OPTS)).unwrap();
    resolve_all(&mut d);
    d.flush().unwrap();
    d.fast_path_mut().end_grace();
    d.fast_path_mut().clear_writes();
    d
}

fn resolve_all(d: &mut Director<MemoryMaps>) {
    let backends: Vec<(IpAddr, u32)> =
        d.services().iter().flat_map(|s| s.backends.iter().chain(&s.sorry)).map(|b| (b.address, b.id)).collect();
    for (address, id) in backends {
        d.on_mac("lo", address, Some([2, 0, 0, 0, (id >> 8) as u8, id as u8]), "test").unwrap();
    }
}

fn ids(d: &Director<MemoryMaps>, vip: usize) -> Vec<u32> {
    d.services()[vip].backends.iter().map(|b| b.id).collect()
}

fn address(d: &Director<MemoryMaps>, vip: usize, backend: usize) -> IpAddr {
    d.services()[vip].backends[backend].address
}

/// Ring slots per backend of VIP `vip`, in configuration order, as a packet
/// meets them: read from the published table, not from the director.
fn slots(d: &Director<MemoryMaps>, vip: usize) -> Vec<u32> {
    let key = d.services()[vip].keys()[0];
    let (_, ring) = d.fast_path().lookup(&key).expect("the VIP is published");
    ids(d, vip).iter().map(|id| ring.iter().filter(|&&s| s == *id).count() as u32).collect()
}

fn ring_copies(d: &Director<MemoryMaps>) -> usize {
    d.fast_path().count(|w| matches!(w, Write::Ring { preload: false, .. }))
}

fn flips(d: &Director<MemoryMaps>) -> usize {
    d.fast_path().count(|w| *w == Write::Flip)
}

fn fail(d: &mut Director<MemoryMaps>, id: u32) {
    d.on_health(id, false, None, "test: refused").unwrap();
}

fn pass(d: &mut Director<MemoryMaps>, id: u32) {
    d.on_health(id, true, None, "test").unwrap();
}

#[test]
fn every_backend_gets_slots_once_its_mac_is_known() {
    let d = director(&vip(100, 3, ""));
    let s = slots(&d, 0);
    assert!(s.iter().all(|&n| n > 0), "{s:?}");
    assert_eq!(s.iter().sum::<u32>(), RING);
    for id in ids(&d, 0) {
        assert_eq!(d.fast_path().backend(id).flags, BACKEND_F_ALIVE);
    }
}

#[test]
fn a_heads_up_builds_the_ring_ahead_and_the_verdict_only_flips() {
    let mut d = director(&vip(100, 3, ""));
    let ids = ids(&d, 0);
    let (builds, now) = (d.ring_builds(), Instant::now());

    // One failure from down: the ring without it is built and placed now...
    assert!(d.prepare(ids[1], false, None, now).unwrap());
    assert_eq!(d.ring_builds(), builds + 1);
    assert!(matches!(d.fast_path().writes(), [Write::Ring { vip_index: 0, preload: true, .. }]));
    // ...once (a second heads-up finds it kept and in place)...
    assert!(!d.prepare(ids[1], false, None, now).unwrap());
    assert_eq!(d.fast_path().writes().len(), 1);
    // ...and nothing a packet meets changed.
    assert!(slots(&d, 0).iter().all(|&n| n > 0));

    // The verdict: the backend is marked dead, and the ring flips in with
    // neither a build nor a copy.
    d.fast_path_mut().clear_writes();
    fail(&mut d, ids[1]);
    d.flush().unwrap().expect("the verdict changes the fast path");
    assert_eq!(d.ring_builds(), builds + 1);
    assert_eq!(
        d.fast_path().writes(),
        [Write::Backend { id: ids[1], alive: false }, Write::Stage { vip_index: 0 }, Write::Flip]
    );
    let after = slots(&d, 0);
    assert_eq!(after[1], 0, "{after:?}");
    assert_eq!(after.iter().sum::<u32>(), RING);
}

#[test]
fn going_back_to_a_kept_ring_flips_without_a_build_or_a_copy() {
    let mut d = director(&vip(100, 3, ""));
    let ids = ids(&d, 0);
    let before = d.fast_path().seen();
    fail(&mut d, ids[2]);
    d.flush().unwrap();
    assert_eq!(ring_copies(&d), 1, "a new ring is copied: {:?}", d.fast_path().writes());
    let builds = d.ring_builds();

    // Right after the flip: the region it retired still holds the old ring,
    // so neither the copy nor its wait for the grace period is needed.
    d.fast_path_mut().clear_writes();
    pass(&mut d, ids[2]);
    d.flush().unwrap();
    assert_eq!(d.ring_builds(), builds);
    // The publish itself waits: the table generation it writes was retired
    // by the last flip.
    assert_eq!(
        d.fast_path().writes(),
        [Write::Backend { id: ids[2], alive: true }, Write::Stage { vip_index: 0 }, Write::GraceWait, Write::Flip]
    );
    assert_eq!(d.fast_path().seen(), before);

    // Failing again: the ring built for the first failure is kept, and
    // still in the other region. A flapping backend costs flips only.
    d.fast_path_mut().end_grace();
    d.fast_path_mut().clear_writes();
    fail(&mut d, ids[2]);
    d.flush().unwrap();
    assert_eq!(d.ring_builds(), builds);
    assert_eq!(ring_copies(&d), 0, "the spare region still held it: {:?}", d.fast_path().writes());
}

#[test]
fn a_copy_into_a_region_just_retired_waits_for_the_grace_period() {
    let mut d = director(&vip(100, 3, ""));
    let ids = ids(&d, 0);
    fail(&mut d, ids[0]);
    d.flush().unwrap();
    // The retired region may still be read by a program that started
    // before the flip: a new ring written there waits first.
    d.fast_path_mut().clear_writes();
    fail(&mut d, ids[1]);
    d.flush().unwrap();
    let writes = d.fast_path().writes();
    let wait = writes.iter().position(|w| *w == Write::GraceWait).expect("a wait");
    let copy = writes.iter().position(|w| matches!(w, Write::Ring { .. })).expect("a copy");
    assert!(wait < copy, "{writes:?}");
}

#[test]
fn a_heads_up_that_comes_to_nothing_changes_nothing() {
    let mut d = director(&vip(100, 3, ""));
    let ids = ids(&d, 0);
    let before = d.fast_path().seen();
    assert!(d.prepare(ids[0], false, None, Instant::now()).unwrap());
    // The next check passes: no verdict, nothing to install.
    pass(&mut d, ids[0]);
    assert!(d.flush().unwrap().is_none());
    assert_eq!(d.fast_path().seen(), before);
    // A later change of another backend installs its own ring, not the one
    // built ahead (which sat in the spare region it now overwrites).
    fail(&mut d, ids[2]);
    d.flush().unwrap().expect("the verdict changes the fast path");
    let after = slots(&d, 0);
    assert!(after[0] > 0 && after[1] > 0 && after[2] == 0, "{after:?}");
}

#[test]
fn a_heads_up_during_a_grace_period_builds_but_does_not_wait() {
    let mut d = director(&vip(100, 3, ""));
    let ids = ids(&d, 0);
    fail(&mut d, ids[0]);
    d.flush().unwrap();
    d.fast_path_mut().clear_writes();
    // Built (the verdict will find it kept), not placed: placing it would
    // wait for the grace period, on the agent's loop.
    assert!(d.prepare(ids[1], false, None, Instant::now()).unwrap());
    assert_eq!(d.fast_path().writes(), []);
}

#[test]
fn heads_ups_build_a_few_rings_a_second_at_most() {
    let mut d = director(&vip(100, 12, ""));
    let ids = ids(&d, 0);
    let t0 = Instant::now();
    let built = |d: &mut Director<MemoryMaps>, at: Instant, ids: &[u32]| {
        ids.iter().filter(|&&id| d.prepare(id, false, None, at).unwrap()).count()
    };
    // A burst (a switch failing under every backend) is left to the installs.
    assert_eq!(built(&mut d, t0, &ids), PREPARES_PER_SEC as usize);
    assert_eq!(built(&mut d, t0 + Duration::from_millis(999), &ids[8..]), 0, "the second is not over");
    // A new second allows more; rings already kept cost nothing.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(built(&mut d, t1, &ids), 4);
    // That second started with its first prepare: 4 more fit in it...
    let weighted = |d: &mut Director<MemoryMaps>, at: Instant, ids: &[u32]| {
        ids.iter().filter(|&&id| d.prepare(id, true, Some(2), at).unwrap()).count()
    };
    assert_eq!(weighted(&mut d, t1 + Duration::from_millis(999), &ids[..6]), 4);
    // ...and the next one has room again.
    assert_eq!(weighted(&mut d, t1 + Duration::from_secs(1), &ids[..6]), 2);
}

#[test]
fn every_failure_is_withdrawn_before_any_ring_is_built() {
    let mut d = director(&(vip(100, 3, "") + &vip(101, 3, "")));
    let (a, b) = (ids(&d, 0), ids(&d, 1));
    d.fast_path_mut().clear_writes();
    fail(&mut d, a[0]);
    fail(&mut d, b[1]);
    d.flush().unwrap();
    let writes = d.fast_path().writes();
    let first_ring = writes.iter().position(|w| matches!(w, Write::Ring { .. } | Write::Stage { .. })).unwrap();
    let dead: Vec<usize> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w, Write::Backend { alive: false, .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(dead.len(), 2, "{writes:?}");
    assert!(dead.iter().all(|&i| i < first_ring), "{writes:?}");
    assert_eq!(flips(&d), 1);
}

#[test]
fn a_burst_of_events_costs_one_publish() {
    let mut d = director(&(vip(100, 4, "") + &vip(101, 4, "")));
    let (a, b) = (ids(&d, 0), ids(&d, 1));
    d.fast_path_mut().clear_writes();
    for &id in a.iter().take(3).chain(&b[..2]) {
        fail(&mut d, id);
    }
    d.on_health(b[3], true, Some(5), "test: weight 5").unwrap();
    d.on_mac("lo", address(&d, 1, 2), None, "test: no ARP reply").unwrap();
    assert_eq!(d.fast_path().writes(), [], "nothing is written before the flush");
    d.flush().unwrap().expect("a change");
    assert_eq!(flips(&d), 1, "{:?}", d.fast_path().writes());
    assert_eq!(slots(&d, 0), [0, 0, 0, RING]);
    assert_eq!(slots(&d, 1), [0, 0, 0, RING]);
    assert!(d.flush().unwrap().is_none(), "nothing left to write");
}

#[test]
fn a_backend_that_moves_to_another_mac_gets_it_in_its_entry_without_a_ring_build() {
    let mut d = director(&vip(100, 3, ""));
    let id = ids(&d, 0)[1];
    let (before, builds) = (slots(&d, 0), d.ring_builds());
    let moved = [2, 0x16, 0, 0, 0, 0x99];
    assert_ne!(d.fast_path().backend(id).mac, moved);
    d.on_mac("lo", address(&d, 0, 1), Some(moved), "test: moved").unwrap();
    d.flush().unwrap().expect("the entry changed");
    assert_eq!(d.fast_path().backend(id).mac, moved, "{:?}", d.fast_path().writes());
    assert_eq!(d.fast_path().backend(id).flags, BACKEND_F_ALIVE);
    assert_eq!((slots(&d, 0), d.ring_builds()), (before, builds), "the ring stays");
    assert!(d.flush().unwrap().is_none(), "nothing left to write");
}

#[test]
fn drain_undrain_and_weight_commands() {
    let mut d = director(&(vip(100, 3, "") + &vip(101, 3, "")));
    let ids = ids(&d, 0);
    let b1 = address(&d, 0, 1);
    let vip = "10.0.0.100:80".to_owned();
    let before = d.fast_path().seen();

    let r = d.command(&Request::Drain { vip: vip.clone(), backend: b1 });
    assert!(r.ok, "{r:?}");
    assert_eq!(r.message.as_deref(), Some("10.100.0.2: drained on 1 VIP(s)"));
    assert_eq!(slots(&d, 0)[1], 0);
    assert_eq!(d.fast_path().backend(ids[1]).flags, BACKEND_F_ALIVE, "a drained backend keeps its flows");
    assert_eq!(d.status(false).unwrap().vips[0].backends[1].state, "draining");

    let r = d.command(&Request::Undrain { vip: "10.0.0.100".to_owned(), backend: b1 });
    assert!(r.ok, "{r:?}");
    assert_eq!(d.fast_path().seen(), before, "undrained: the ring it had before");

    let r = d.command(&Request::Weight { vip: vip.clone(), backend: b1, weight: 3 });
    assert!(r.ok, "{r:?}");
    let s = slots(&d, 0);
    assert!(s[1] > RING / 2 && s[0] > 0 && s[2] > 0, "weight 3 against 1 and 1: {s:?}");
    assert_eq!(slots(&d, 1).iter().sum::<u32>(), RING, "the other VIP is untouched");

    let flips_before = flips(&d);
    let r = d.command(&Request::Weight { vip: vip.clone(), backend: b1, weight: crate::config::MAX_WEIGHT + 1 });
    assert!(!r.ok && r.error.as_deref().unwrap().contains("out of range"), "{r:?}");
    let r = d.command(&Request::Drain { vip: "10.0.0.101:80/tcp".to_owned(), backend: b1 });
    assert_eq!(r.error.as_deref(), Some("no backend 10.100.0.2 on a VIP matching \"10.0.0.101:80/tcp\""));
    assert_eq!(flips(&d), flips_before, "refused commands write nothing");
}

#[test]
fn a_reload_carries_over_backend_ids_and_state() {
    let mut d = director(&(vip(100, 3, "") + &vip(101, 2, "")));
    let (a, b) = (ids(&d, 0), ids(&d, 1));
    let (a1, a2) = (address(&d, 0, 1), address(&d, 0, 2));
    fail(&mut d, a[0]);
    assert!(d.command(&Request::Drain { vip: "10.0.0.100".to_owned(), backend: a1 }).ok);
    assert!(d.command(&Request::Weight { vip: "10.0.0.100".to_owned(), backend: a2, weight: 4 }).ok);

    // VIP 100 gains a fourth backend; 101 goes; 102 comes.
    let text = vip(100, 3, "") + "\n[[vip.backend]]\naddress = \"10.100.0.9\"\n" + &vip(102, 2, "");
    d.reload(config(&text)).unwrap();
    let s = &d.services()[0];
    assert_eq!(s.backends.iter().map(|b| b.id).take(3).collect::<Vec<_>>(), a, "kept backends keep their ids");
    assert!(!s.backends[0].healthy, "and their health");
    assert!(s.backends[1].admin_drained, "and an operator's drain");
    assert!(s.backends.iter().take(3).all(|b| b.mac.is_some()), "and their MAC");
    assert_eq!(s.backends[2].admin_weight, None, "`lb weight` lasts until the next reload");
    let new = s.backends[3].id;
    assert!(![&a[..], &b[..]].concat().contains(&new), "a new backend takes an unused id: {new}");
    assert_eq!(d.services()[1].vip_index, 1, "a new VIP takes the index of one gone");
    for id in b {
        assert_eq!(d.fast_path().backend(id).flags, 0, "the backends of a VIP gone are dead");
    }
    let gone = d.fast_path().seen().into_iter().filter(|seen| seen.key.addr == v4_key("10.0.0.101")).count();
    assert_eq!(gone, 0);
    // Down and drained stay out; the new backend waits for its MAC.
    assert_eq!(slots(&d, 0), [0, 0, RING, 0]);
    assert!(d.services()[0].backends[3].mac.is_none());
}

fn v4_key(vip: &str) -> [u32; 4] {
    let a: std::net::Ipv4Addr = vip.parse().unwrap();
    lb_common::v4_mapped(u32::from_ne_bytes(a.octets()))
}

#[test]
fn ids_of_a_vip_gone_come_back_last() {
    let mut d = director(&vip(100, 2, ""));
    assert_eq!(ids(&d, 0), [1, 2]);
    // Two ids never used left.
    d.ids = Ids::new(5);
    d.ids.take();
    d.ids.take();
    d.reload(config(&vip(101, 2, ""))).unwrap();
    assert_eq!(ids(&d, 0), [3, 4], "never-used ids first");
    assert_eq!(d.fast_path().backend(1).flags, 0, "dead before it can be reused");
    d.reload(config(&vip(102, 2, ""))).unwrap();
    assert_eq!(ids(&d, 0), [1, 2], "then the oldest freed");
}

#[test]
fn a_reload_that_needs_a_restart_changes_nothing() {
    let mut d = director(&vip(100, 3, ""));
    let (before, seen) = (d.snapshot(), d.fast_path().seen());
    let larger = vip(100, 3, "").replace(&format!("ring_size = {RING}"), "ring_size = 257");
    let e = d.reload(config(&larger)).unwrap_err();
    assert!(matches!(e, DirectorError::NeedsRestart { .. }), "{e}");
    let five: String = (100..105).map(|v| vip(v, 1, "")).collect();
    let e = d.reload(config(&five)).unwrap_err();
    assert!(e.to_string().contains("max_vips"), "{e}");
    assert_eq!(d.snapshot(), before);
    assert_eq!(d.fast_path().seen(), seen);
}

#[test]
fn a_reload_whose_publish_fails_puts_everything_back() {
    let mut d = director(&(vip(100, 3, "") + &vip(101, 2, "")));
    let a = ids(&d, 0);
    fail(&mut d, a[0]);
    d.flush().unwrap();
    let (before, seen) = (d.snapshot(), d.fast_path().seen());
    let text = vip(100, 4, "") + &vip(102, 2, "");
    let known: Vec<u32> = d.services().iter().flat_map(Service::ids).collect();
    let planned = d.plan(config(&text)).unwrap();
    let brought: Vec<u32> = planned.services().iter().flat_map(Service::ids).filter(|id| !known.contains(id)).collect();
    assert_eq!(brought.len(), 3);
    d.fast_path_mut().fail_next_publish();
    let e = d.reload(config(&text)).unwrap_err();
    assert!(matches!(e, DirectorError::FastPath(FastPathError::VipTableFull { .. })), "{e}");
    assert_eq!(d.snapshot(), before);
    assert_eq!(d.fast_path().seen(), seen);
    // The backends the failed file brought are dead, not left alive.
    for id in brought {
        assert_eq!(d.fast_path().backend(id).flags, 0, "backend {id}");
    }
}

#[test]
fn restore_goes_back_to_a_snapshot() {
    let mut d = director(&vip(100, 3, ""));
    let (before, seen) = (d.snapshot(), d.fast_path().seen());
    d.reload(config(&(vip(100, 2, "") + &vip(101, 2, "")))).unwrap();
    assert_ne!(d.fast_path().seen(), seen);
    d.restore(before.clone()).unwrap();
    assert_eq!(d.snapshot(), before);
    assert_eq!(d.fast_path().seen(), seen);
}

#[test]
fn settings_reach_the_fast_path() {
    let mut d = director(&vip(100, 1, ""));
    let text = format!("[global]\nmax_new_flows_per_sec = 5000\n\n{}", vip(100, 1, ""));
    d.reload(config(&text)).unwrap();
    let s = d.fast_path().settings();
    assert_eq!(s.max_new_flows_per_sec, 5000);
    assert_eq!(s.flow_sets, lb_common::flow_sets(OPTS.flows_per_cpu));
}

/// The agent restarted on the maps `d` left: a new director over them.
fn restarted(d: &Director<MemoryMaps>, text: &str) -> Director<MemoryMaps> {
    Director::new(config(text), d.fast_path().restarted()).unwrap()
}

#[test]
fn a_restart_on_the_same_configuration_adopts_without_a_flip() {
    let text = format!("{}{}", vip(100, 3, ""), vip(101, 2, ""));
    let d = director(&text);
    let before = d.fast_path().seen();
    let a = restarted(&d, &text);
    assert_eq!(flips(&a), 0, "{:?}", a.fast_path().writes());
    assert_eq!(ring_copies(&a), 0, "nothing copied into a ring region");
    assert_eq!(a.fast_path().seen(), before, "a packet meets the same");
    for vip in 0..2 {
        assert_eq!(ids(&a, vip), ids(&d, vip), "every backend keeps its id");
        assert_eq!(a.services()[vip].vip_index, d.services()[vip].vip_index);
        assert!(a.services()[vip].backends.iter().all(|b| b.state() == State::Up), "in the ring before any check");
    }
    let targets = crate::agent::targets::health_targets(a.services());
    assert!(targets.iter().all(|t| t.initially_up), "checks start from up");
}

#[test]
fn a_restart_keeps_the_ids_of_the_backends_that_stay_and_retires_the_others() {
    let d = director(&vip(100, 3, ""));
    let old = ids(&d, 0);
    // The second backend is gone, a new one comes.
    let text = vip(100, 3, "").replace("address = \"10.100.0.2\"\n", "address = \"10.100.0.9\"\n");
    let a = restarted(&d, &text);
    let new = ids(&a, 0);
    assert_eq!((new[0], new[2]), (old[0], old[2]), "the staying backends keep their ids");
    assert!(!old.contains(&new[1]), "the new backend gets a never-used id");
    assert_eq!(a.fast_path().backend(old[1]).flags & BACKEND_F_ALIVE, 0, "its flows are re-hashed");
    assert_eq!(a.fast_path().record(old[1]), None, "its id is free");
    let writes = a.fast_path().writes();
    let dead = writes.iter().position(|w| *w == Write::Backend { id: old[1], alive: false }).unwrap();
    let flip = writes.iter().position(|w| *w == Write::Flip).unwrap();
    assert!(dead < flip, "withdrawn before the new ring: {writes:?}");
}

#[test]
fn a_backend_held_dead_waits_for_its_check_after_a_restart() {
    let text = vip(100, 3, "");
    let mut d = director(&text);
    let id = ids(&d, 0)[1];
    fail(&mut d, id);
    d.flush().unwrap();
    let a = restarted(&d, &text);
    let b = &a.services()[0].backends[1];
    assert!(!b.healthy && b.is_down(), "{:?}", b.state());
    let targets = crate::agent::targets::health_targets(a.services());
    assert!(!targets.iter().find(|t| t.id.backend == id).unwrap().initially_up);
    assert_eq!(flips(&a), 0, "the published ring had it out already");
}

#[test]
fn records_follow_reloads() {
    let mut d = director(&vip(100, 2, ""));
    let gone = ids(&d, 0)[1];
    let r = d.fast_path().record(gone).unwrap();
    assert_eq!((r.in_use, r.vip_index), (1, 0));
    d.reload(config(&vip(100, 1, ""))).unwrap();
    assert_eq!(d.fast_path().record(gone), None);
    assert!(d.fast_path().record(ids(&d, 0)[0]).is_some());
}

#[test]
fn the_status_report_lists_the_last_changes_with_their_reasons() {
    let mut d = director(&vip(100, 1, ""));
    let (id, b) = (ids(&d, 0)[0], address(&d, 0, 0));
    let started = d.status(false).unwrap().events.len();
    fail(&mut d, id);
    d.flush().unwrap();
    pass(&mut d, id);
    d.flush().unwrap();
    assert!(d.command(&Request::Drain { vip: "10.0.0.100".to_owned(), backend: b }).ok);
    let events = d.status(false).unwrap().events;
    let seen: Vec<(&str, &str, &str, &str)> = events[started..]
        .iter()
        .map(|e| (e.subject.as_str(), e.from.as_str(), e.to.as_str(), e.reason.as_str()))
        .collect();
    let on = format!("{b} on 10.0.0.100:80/tcp");
    let quorum = "live weight 0 of quorum 1";
    assert_eq!(
        seen,
        [
            (on.as_str(), "up", "down", "check failed: test: refused"),
            ("10.0.0.100:80/tcp", "up", "quorum lost", quorum),
            (on.as_str(), "down", "up", "test"),
            ("10.0.0.100:80/tcp", "quorum lost", "up", "live weight 1 of quorum 1"),
            (on.as_str(), "up", "draining", "drained by operator"),
            ("10.0.0.100:80/tcp", "up", "quorum lost", quorum),
        ]
    );
}
