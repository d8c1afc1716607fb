//! A director pair half keepalived, half lb, both from one keepalived.conf:
//! keepalived 2.2.7 runs the file as written on director A (VRRP only: this
//! kernel has no IPVS), `lb run` runs what `lb import` made of it on
//! director B. The `@ka` / `@lb` lines give each its priority, as operators
//! write one file for both directors. They form one VRRP pair (one master;
//! failover both ways), and lb forwards the imported virtual server to the
//! file's real servers with the file's weights. Needs root (CAP_BPF,
//! CAP_NET_ADMIN, CAP_NET_RAW); every wait is bounded, and the pair and
//! keepalived are stopped and removed also when the test fails.

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use lb_tests::{
    backend::{PORT, http_get},
    director_pair::{
        A, B, DirectorPair, IF, Lb, Options, STATE_LIMIT, VIP, backend_addr, client_addr, vip, vrrp_state,
    },
    netns::Netns,
    privileges,
};
use serde_json::Value;

use crate::support;

const LB: &str = env!("CARGO_BIN_EXE_lb-under-test");
/// keepalived's name for the instance, in its log and in lb's status.
const INSTANCE: &str = "VI_1";
const WEIGHTS: [u32; 3] = [1, 2, 3];
/// A backup takes over 3 adverts (1 s each) plus skew after the master
/// leaves without priority 0, sooner after a priority-0 advert; slack for a
/// loaded machine.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(8);

/// The file both directors are configured from.
fn keepalived_conf() -> String {
    let real_servers: String = WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "    real_server {} {PORT} {{\n        weight {w}\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n",
                backend_addr(i)
            )
        })
        .collect();
    format!(
        "global_defs {{\n    router_id director\n    vrrp_garp_master_delay 0\n    vrrp_garp_master_repeat 1\n}}\n\
         vrrp_instance {INSTANCE} {{\n    state BACKUP\n    interface {IF}\n    virtual_router_id 62\n\
         @ka priority 100\n@lb priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n\
         virtual_server {VIP} {PORT} {{\n    delay_loop 1\n    lb_algo wrr\n    lb_kind DR\n    protocol TCP\n{real_servers}}}\n"
    )
}

/// keepalived running the VRRP half of a file in a namespace, logging to a
/// file; killed on drop.
struct Keepalived {
    child: Option<Child>,
    log: PathBuf,
}

impl Keepalived {
    fn start(ns: &Netns, conf: &Path, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join("keepalived.log");
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = ns
            .command("keepalived")
            .args(["-n", "-l", "-D", "-P", "-i", "ka", "-f"])
            .arg(conf)
            .arg("-p")
            .arg(dir.join("ka.pid"))
            .arg("-r")
            .arg(dir.join("ka_vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting keepalived")?;
        Ok(Self { child: Some(child), log })
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How often keepalived has logged entering `state`.
    fn entered(&self, state: &str) -> usize {
        self.log().matches(&format!("({INSTANCE}) Entering {state} STATE")).count()
    }

    fn wait_entered(&self, state: &str, n: usize, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.entered(state) < n {
            ensure!(
                start.elapsed() < limit,
                "keepalived did not enter {state} (time {n}) within {limit:?}; its log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lb_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |s| vrrp_state(s) == state
}

/// Which backend answered each of `n` requests from the client.
fn spread(pair: &DirectorPair, n: u16) -> anyhow::Result<BTreeMap<String, usize>> {
    let (client, vip) = (client_addr(), SocketAddr::new(VIP.into(), PORT));
    pair.client().run_in(move || {
        let mut seen = BTreeMap::new();
        for port in 42000..42000 + n {
            let answer =
                http_get(SocketAddr::new(client, port), vip).with_context(|| format!("request from :{port}"))?;
            let body = answer.rsplit("\r\n\r\n").next().unwrap_or_default().trim().to_owned();
            *seen.entry(body).or_insert(0) += 1;
        }
        Ok(seen)
    })
}

#[test]
fn keepalived_and_lb_from_one_file_are_one_pair() {
    let Some(_turn) = support::start(module_path!(), privileges::AGENT) else { return };
    crate::keepalived::ensure_keepalived();
    if let Err(e) = run() {
        panic!("{e:#}");
    }
}

fn run() -> anyhow::Result<()> {
    let lb = Lb::new(LB);
    let mut pair = DirectorPair::new(lb.clone(), Options { tag: "import", ..Options::default() })?;
    let conf = pair.dir().join("keepalived.conf");
    fs::write(&conf, keepalived_conf())?;

    let imported = pair.dir().join("lb.toml");
    let out = lb.run(&[
        "import",
        conf.to_str().context("path")?,
        "--config-id",
        "lb",
        "-o",
        imported.to_str().context("path")?,
    ])?;
    ensure!(out.status.success(), "lb import failed: {}", String::from_utf8_lossy(&out.stderr));
    let toml = fs::read_to_string(&imported)?;
    ensure!(toml.contains("priority = 150"), "the @lb line gave lb its priority:\n{toml}");

    // lb first: a keepalived started alone would become master after its
    // master-down interval, before lb's first advert.
    pair.start_agent_with(B, &toml)?;
    pair.wait(B, "lb master", STATE_LIMIT, lb_is("MASTER"))?;
    let keepalived = Keepalived::start(pair.director_ns(A), &conf, pair.dir())?;
    keepalived.wait_entered("BACKUP", 1, STATE_LIMIT)?;
    // keepalived, the lower priority, stays backup: it never became master.
    thread::sleep(Duration::from_secs(2));
    ensure!(keepalived.entered("MASTER") == 0, "keepalived became master beside lb:\n{}", keepalived.log());

    // The imported virtual server: the file's real servers and weights.
    pair.wait(B, "every real server up", STATE_LIMIT, |s| {
        vip(s, PORT, "tcp")
            .is_some_and(|v| v["backends"].as_array().is_some_and(|b| b.iter().all(|b| b["state"] == "up")))
    })?;
    let status = pair.status(B)?;
    let service = vip(&status, PORT, "tcp").context("no VIP in lb's status")?;
    let mut weights: Vec<(String, u64)> = service["backends"]
        .as_array()
        .context("backends")?
        .iter()
        .map(|b| {
            (b["address"].as_str().unwrap_or_default().to_owned(), b["configured_weight"].as_u64().unwrap_or_default())
        })
        .collect();
    weights.sort();
    let want: Vec<(String, u64)> =
        WEIGHTS.iter().enumerate().map(|(i, w)| (backend_addr(i).to_string(), u64::from(*w))).collect();
    ensure!(weights == want, "backends and weights: {weights:?}, want {want:?}");
    let seen = spread(&pair, 60)?;
    ensure!(seen.len() == WEIGHTS.len(), "every real server answers through lb: {seen:?}");

    // lb leaves (SIGTERM: priority 0): keepalived takes over.
    pair.terminate(B, Duration::from_secs(10))?;
    keepalived.wait_entered("MASTER", 1, TAKEOVER_LIMIT)?;
    ensure!(
        pair.director_ns(A).ip(&["-4", "addr", "show", "dev", IF])?.contains(&format!("{VIP}/24")),
        "keepalived holds the VIP as master"
    );

    // lb comes back with the higher priority and takes over again.
    pair.start_agent_with(B, &toml)?;
    pair.wait(B, "lb master again", TAKEOVER_LIMIT, lb_is("MASTER"))?;
    keepalived.wait_entered("BACKUP", 2, TAKEOVER_LIMIT)?;
    crate::keepalived::assert_no_complaints(&keepalived.log());
    Ok(())
}
