//! End to end, direct routing: real TCP connections from a client namespace
//! to a VIP, through the XDP director (native mode on a veth), to backends
//! that hold the VIP on lo and answer the client directly. See
//! `lb_tests::lab` for the topology. Needs root (CAP_BPF, CAP_NET_ADMIN).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::ensure;
use lb_common::{BACKEND_F_ALIVE, Backend, Counters, Stat, VIP_KIND_SERVICE, VipKey, hash, proto};
use lb_tests::{
    lab::{self, Addrs, DrLab},
    packet::addr16,
    privileges,
};
use lb_userspace::{
    fast_path::{AttachMode, FastPath, FastPathOptions},
    maglev,
};

use crate::support;

const PORT: u16 = 80;
const RING_SIZE: u32 = 65537;
const OPTS: FastPathOptions = FastPathOptions { max_vips: 2, max_ring_size: RING_SIZE, flows_per_cpu: 65536 };
const TIMEOUT: Duration = Duration::from_secs(1);
/// Client source ports are chosen, not ephemeral: each connection is a
/// distinct 5-tuple, and which backend gets it is known in advance.
const FIRST_SPORT: u16 = 20000;

/// Backends get ids 1.. in lab order; writes them and the VIP's ring.
fn install(dp: &mut FastPath, lab: &DrLab, weights: &[u32]) -> anyhow::Result<Vec<u32>> {
    let mut entries = Vec::new();
    for (i, (&addr, &mac)) in lab.addrs.backends.iter().zip(&lab.backend_macs).enumerate() {
        let id = i as u32 + 1;
        dp.set_backend(id, Backend { mac, flags: BACKEND_F_ALIVE, vip_index: 0 })?;
        let key = match addr {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        entries.push(maglev::Entry { key, weight: weights[i], id });
    }
    let ring = maglev::build(&entries, RING_SIZE)?;
    let key = VipKey { addr: addr16(lab.addrs.vip), port: PORT.to_be(), proto: proto::TCP, kind: VIP_KIND_SERVICE };
    dp.install_vip(&[key], 0, 0, &ring)?;
    Ok(ring)
}

/// The backend id the ring gives a client connection: what the XDP program
/// computes for its SYN.
fn ring_pick(ring: &[u32], client: IpAddr, sport: u16, vip: IpAddr) -> u32 {
    let digest = hash::digest_5tuple(&addr16(client), &addr16(vip), sport.to_be(), PORT.to_be(), proto::TCP);
    ring[hash::ring_slot(digest, ring.len() as u32) as usize]
}

/// Opens `count` connections one after another from the client namespace,
/// each from its own source port, never retried. Returns each port's answer.
/// Connections not started within `budget` count as failures, so the test
/// ends in bounded time even if nothing answers.
fn run_client(lab: &DrLab, count: u16, budget: Duration) -> anyhow::Result<Vec<(u16, Result<String, String>)>> {
    let (client, vip) = (lab.addrs.client, lab.addrs.vip);
    lab.client.run_in(move || {
        let deadline = Instant::now() + budget;
        Ok((FIRST_SPORT..FIRST_SPORT + count)
            .map(|sport| {
                let answer = if Instant::now() < deadline {
                    lab::ask(SocketAddr::new(client, sport), SocketAddr::new(vip, PORT), TIMEOUT)
                        .map_err(|e| e.to_string())
                } else {
                    Err("not attempted: time budget spent".to_owned())
                };
                (sport, answer)
            })
            .collect())
    })
}

fn stat(dp: &FastPath, which: Stat) -> anyhow::Result<Counters> {
    Ok(dp.stats()?.into_iter().find(|(s, _)| *s == which).map(|(_, c)| c).unwrap_or_default())
}

/// Failures grouped by error, with the first few source ports of each.
fn summarize(failures: &[(u16, String)]) -> String {
    let mut by_error: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    for (port, e) in failures {
        by_error.entry(e).or_default().push(*port);
    }
    by_error
        .iter()
        .map(|(e, ports)| format!("{} x {e:?} (ports {:?}...)", ports.len(), &ports[..ports.len().min(5)]))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn ipv4_connections_follow_the_weighted_ring() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    let started = Instant::now();
    const CONNECTIONS: u16 = 600;
    let weights = [1, 2, 3];
    let lab = DrLab::new(Addrs::v4(3))?;
    let servers = lab.start_name_servers(PORT)?;
    // Dropped before `lab`: the links go before their namespaces.
    let _peer = lab.attach_peer_pass()?;
    let mut dp = lab.attach_director(OPTS)?;
    // Generic XDP_TX would go out through the stack instead of the peer's
    // XDP receive path: that would be a different test.
    let modes: Vec<_> = dp.attachments().map(|(iface, mode)| (iface.to_owned(), mode)).collect();
    ensure!(modes == [(lab::IF.to_owned(), AttachMode::Native)], "director attached as {modes:?}");
    let ring = install(&mut dp, &lab, &weights)?;
    let setup = started.elapsed();

    // Nothing else in the lab sends IPv4 to the director, so any growth here
    // is client packets that reached its kernel instead of leaving by
    // XDP_TX: with the VIP removed, each SYN shows up here.
    let director_ip_before = lab::snmp(&lab.director, "Ip", "InReceives")?;
    let run_started = Instant::now();
    let results = run_client(&lab, CONNECTIONS, Duration::from_secs(20))?;
    let run_time = run_started.elapsed();
    let director_ip_after = lab::snmp(&lab.director, "Ip", "InReceives")?;
    // Segments a backend dropped for a bad checksum would explain failures
    // that the director's counters cannot.
    let csum_errors =
        lab.backends.iter().map(|b| lab::snmp(b, "Tcp", "InCsumErrors")).collect::<anyhow::Result<Vec<_>>>()?;
    let served: Vec<u64> = servers.into_iter().map(lab::NameServer::stop).collect();

    let mut answers: BTreeMap<String, u32> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut misrouted = Vec::new();
    for (sport, answer) in &results {
        match answer {
            Ok(name) => {
                *answers.entry(name.clone()).or_default() += 1;
                let expected = format!("b{}", ring_pick(&ring, lab.addrs.client, *sport, lab.addrs.vip));
                if *name != expected {
                    misrouted.push((*sport, name.clone(), expected));
                }
            }
            Err(e) => failures.push((*sport, e.clone())),
        }
    }
    let ok = results.len() - failures.len();
    let ring_share: Vec<f64> =
        (1..=3).map(|id| ring.iter().filter(|&&s| s == id).count() as f64 / ring.len() as f64).collect();
    let stats = dp.stats()?;
    let backend_packets: Vec<u64> =
        (1..=3).map(|id| dp.backend_counters(id).map(|c| c.packets)).collect::<Result<_, _>>()?;
    println!(
        "setup {setup:?}; {CONNECTIONS} connections in {run_time:?}: {ok} answered, {} failed; \
         answers {answers:?}; servers counted {served:?}; ring shares {ring_share:.4?}; \
         backend packets {backend_packets:?}; backend checksum drops {csum_errors:?}; \
         director kernel IPv4 packets {}",
        failures.len(),
        director_ip_after - director_ip_before,
    );
    for (s, c) in &stats {
        if c.packets > 0 {
            println!("  {:<16} {:>8} packets", s.name(), c.packets);
        }
    }
    let failure_summary = summarize(&failures);
    if !failures.is_empty() {
        println!("failures: {failure_summary}");
    }

    ensure!(
        failures.len() * 100 <= usize::from(CONNECTIONS),
        "{} of {CONNECTIONS} connections failed (at most 1% allowed): {failure_summary}",
        failures.len()
    );
    // The ring and the hash are fixed functions of the configuration and the
    // 5-tuple, so every answered connection must come from exactly the
    // backend the ring names for it; none may be answered by another.
    ensure!(misrouted.is_empty(), "connections answered by the wrong backend (port, got, ring says): {misrouted:?}");

    // The 600 tuples are fixed, so this split is the same on every run; the
    // tolerance is what a correct ring and hash need for *any* fixed sample.
    // A backend with share p of the ring gets Binomial(n, p) of n random
    // tuples: the standard deviation of its share is sqrt(p(1-p)/n), at most
    // 2.04 points for p = 1/2 and n = 600 (1.92 for 1/3, 1.52 for 1/6).
    // 6 points is ~2.9 sigma at worst; the chance that a correct ring fails
    // for some backend is below 0.5%, while a ring that ignored the weights
    // (1/3 each) misses by 16.7 points for the heaviest backend.
    let total: u32 = answers.values().sum();
    let weight_sum: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let name = format!("b{}", i + 1);
        let got = f64::from(answers.get(&name).copied().unwrap_or(0)) / f64::from(total);
        let want = f64::from(w) / f64::from(weight_sum);
        ensure!(
            (got - want).abs() <= 0.06,
            "{name} (weight {w}) answered {:.1}% of connections, expected {:.1}% +- 6 points: {answers:?}",
            got * 100.0,
            want * 100.0
        );
    }

    let tx = stat(&dp, Stat::Tx)?.packets;
    // A connection that answered took at least the client's SYN and the ACK
    // completing the handshake through the director.
    ensure!(tx >= 2 * ok as u64, "the director transmitted {tx} packets for {ok} answered connections");
    for (i, &packets) in backend_packets.iter().enumerate() {
        let answered = u64::from(answers.get(&format!("b{}", i + 1)).copied().unwrap_or(0));
        ensure!(packets >= 2 * answered, "backend {} got {packets} packets for {answered} connections", i + 1);
        ensure!(packets > 0, "backend {} got nothing from the director", i + 1);
    }
    let kernel = director_ip_after - director_ip_before;
    ensure!(kernel == 0, "the director's kernel received {kernel} IPv4 packets: client traffic bypassed XDP");
    ensure!(served.iter().sum::<u64>() as usize >= ok, "servers answered fewer connections than the client saw");

    drop(dp);
    println!("total {:?}", started.elapsed());
    Ok(())
}

#[test]
fn ipv6_connections_reach_the_backend() -> anyhow::Result<()> {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return Ok(()) };
    const CONNECTIONS: u16 = 10;
    let lab = DrLab::new(Addrs::v6(1))?;
    let servers = lab.start_name_servers(PORT)?;
    let _peer = lab.attach_peer_pass()?;
    let mut dp = lab.attach_director(OPTS)?;
    install(&mut dp, &lab, &[1])?;

    let results = run_client(&lab, CONNECTIONS, Duration::from_secs(10))?;
    drop(servers);
    let failures: Vec<(u16, String)> = results
        .iter()
        .filter_map(|(port, a)| match a {
            Ok(name) if name == "b1" => None,
            Ok(name) => Some((*port, format!("answered by {name}"))),
            Err(e) => Some((*port, e.clone())),
        })
        .collect();
    let tx = stat(&dp, Stat::Tx)?.packets;
    let backend = dp.backend_counters(1)?.packets;
    println!(
        "IPv6: {} of {CONNECTIONS} answered by b1; tx {tx}, backend packets {backend}",
        results.len() - failures.len()
    );
    ensure!(failures.len() <= 1, "IPv6 connections failed: {}", summarize(&failures));
    let ok = (results.len() - failures.len()) as u64;
    ensure!(tx >= 2 * ok && backend >= 2 * ok, "director counted tx {tx}, backend {backend} for {ok} connections");
    Ok(())
}
