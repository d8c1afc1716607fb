//! The `lb` command line. A library module so that the test suite can build
//! the same program under its own name (`lb-under-test`) and run it as a
//! child process in network namespaces. It is the program's `main` in all
//! but name, so it reports errors with anyhow as a `main` does.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use crate::{
    agent::{
        control::{self, Request},
        run::{self as agent, RunOptions, Stopped},
    },
    config::Config,
    lab, trace,
};
use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};

/// Where `lb run` listens unless the configuration says otherwise.
const DEFAULT_SOCKET: &str = "/run/lb/lb.sock";

#[derive(Debug, Parser)]
#[command(name = "lb", version, about = "XDP layer-4 load balancer (DR mode) and its agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: load the fast path, attach it, check the backends and
    /// keep the maps current. SIGHUP or `lb reload` re-reads the file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Also attach to this interface (besides those the VIPs name).
        #[arg(long = "iface")]
        interfaces: Vec<String>,
        /// Log what the fast path decides for each packet to VIP, or for
        /// every packet without one.
        ///
        /// VIP is ADDR, ADDR:PORT or [ADDR]:PORT, optionally followed by /tcp
        /// or /udp. Each record (log target lb::trace) names the client and
        /// the destination, flow-table hit or miss, the backend's id and MAC,
        /// and the verdict's reason (tx, pass_not_vip, drop_no_backend, ...).
        ///
        /// The trace is a program of its own (the balancer plus the records)
        /// that the agent loads instead of the plain one, so it is on from
        /// start to stop of this agent and cannot be switched on from
        /// another process; the plain program has no trace code and costs
        /// nothing for it. Traced, each recorded packet costs a record;
        /// records that do not fit the 128 KiB ring between two reads are
        /// lost. For debugging, not for a busy VIP.
        #[arg(long, value_name = "VIP", num_args = 0..=1)]
        trace: Option<Option<trace::Filter>>,
        /// The bpffs directory the fast path is pinned in (default: the
        /// configuration's `[global] pin_dir`, itself /sys/fs/bpf/lb by
        /// default).
        #[arg(long, value_name = "DIR")]
        pin_dir: Option<PathBuf>,
        /// Detach and remove a fast path pinned with another map layout
        /// (after an upgrade that changed the maps, or a change of
        /// max_vips, ring_size or flows_per_cpu) instead of refusing to
        /// start. Its established flows are re-hashed.
        #[arg(long)]
        discard_pinned: bool,
    },
    /// Make the running agent exit leaving the fast path pinned and
    /// forwarding (VRRP addresses in place, no priority 0 sent), for the
    /// next `lb run` to adopt without a lost packet. Under systemd the
    /// agent's exit status (75) makes the unit start again, with the binary
    /// now installed.
    Restart {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Show VIPs and backends with state, weights, ring share and counters.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Stop sending new flows to a backend; its established flows stay.
    Drain {
        /// The VIP: `ADDR:PORT/PROTO`, `ADDR:PORT` or `ADDR`.
        vip: String,
        backend: std::net::IpAddr,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Undo `lb drain`.
    Undrain {
        vip: String,
        backend: std::net::IpAddr,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Set a backend's weight until the next reload or restart.
    Weight {
        vip: String,
        backend: std::net::IpAddr,
        weight: u32,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Re-read the running agent's configuration file; a bad file is
    /// reported and the running configuration stays.
    Reload {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Take this director out of an ECMP group for maintenance: withdraw
    /// every VIP from the BGP daemon (`[announce]`), wait until the routers
    /// have moved the flows away (the VIPs' packet counters stay flat for
    /// 2 s) or the timeout, then stop the agent as SIGTERM does.
    DrainDirector {
        /// Seconds to wait for the traffic to move away at most.
        #[arg(long, value_name = "S", default_value_t = 30)]
        timeout: u64,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Validate a configuration file and exit: every problem is reported as
    /// file:line:column; the exit status is non-zero if there is any.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Check the file alone, not this machine: skip checking that the
        /// VIPs' interfaces exist and that the scripts exist, can run as
        /// their users and are safe to (for checking a director's file
        /// elsewhere).
        #[arg(long, alias = "no-interfaces")]
        offline: bool,
    },
    /// Print a commented example configuration.
    ExampleConfig,
    /// Translate a keepalived.conf (as keepalived 2.2.7 reads it) into an
    /// lb.toml: warnings and errors go to stderr as file:line:column; the
    /// exit status is non-zero when something could not be carried over.
    Import {
        /// The keepalived.conf; the files it includes are read too.
        file: PathBuf,
        /// The config id `@ID` lines are kept for (keepalived's -i);
        /// default: this machine's host name up to the first dot.
        #[arg(long, short = 'i')]
        config_id: Option<String>,
        /// Write the lb.toml here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The interface that receives a virtual server's traffic when no
        /// vrrp_instance holds its address.
        #[arg(long)]
        interface: Option<String>,
    },
    /// Start a self-contained lab in network namespaces: a client, a director
    /// running the fast path, and three HTTP backends.
    Lab {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Seconds between status tables.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Scale-out instead: three directors behind an ECMP router, each
        /// announcing the VIP over BGP with BIRD 2 (Debian `bird2`); one
        /// leaves midway and no connection breaks.
        #[arg(long)]
        ecmp: bool,
    },
    /// Print a shell completion script for `lb` to stdout.
    ///
    /// For bash: `lb completions bash > /etc/bash_completion.d/lb`.
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages: lb.1 and one per subcommand (lb-run.1, ...)
    /// into DIR, or lb.1 alone to stdout without DIR.
    Man { dir: Option<PathBuf> },
}

/// Parses the command line and runs it; the whole of `lb`.
pub fn main() -> ExitCode {
    crate::logging::init();
    match run(Cli::parse()) {
        Ok(Stopped::Plainly) => ExitCode::SUCCESS,
        Ok(Stopped::ForHandover) => ExitCode::from(agent::HANDOVER_EXIT),
        Err(e) => {
            eprintln!("lb: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Stopped> {
    if let Command::Run { config, interfaces, trace, pin_dir, discard_pinned } = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let trace = trace.map(Option::unwrap_or_default);
        let opts = RunOptions { config, interfaces, trace, pin_dir, discard_pinned };
        return runtime.block_on(agent::run(opts)).context("lb run");
    }
    command(cli.command).map(|()| Stopped::Plainly)
}

fn command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { .. } => unreachable!("run above"),
        Command::Restart { socket } => say(&socket, &Request::Restart),
        Command::Status { json, socket } => {
            let status = control::request(&socket, &Request::Status)?.status.context("no status in the answer")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render());
            }
            Ok(())
        }
        Command::Drain { vip, backend, socket } => say(&socket, &Request::Drain { vip, backend }),
        Command::Undrain { vip, backend, socket } => say(&socket, &Request::Undrain { vip, backend }),
        Command::Weight { vip, backend, weight, socket } => say(&socket, &Request::Weight { vip, backend, weight }),
        Command::Reload { socket } => say(&socket, &Request::Reload),
        Command::DrainDirector { timeout, socket } => {
            let request = Request::DrainDirector { timeout_ms: timeout.saturating_mul(1000) };
            // The agent answers when the drain is over: wait past its timeout.
            let wait = Duration::from_secs(timeout.saturating_add(30));
            let response = control::request_within(&socket, &request, wait)?;
            println!("{}", response.message.unwrap_or_default());
            Ok(())
        }
        Command::Check { config, offline } => check(&config, !offline),
        Command::ExampleConfig => {
            print!("{}", crate::config::EXAMPLE);
            Ok(())
        }
        Command::Import { file, config_id, output, interface } => import(&file, config_id, output, interface),
        Command::Lab { duration, interval, ecmp: true } => lab::ecmp::run(&lab::ecmp::EcmpOptions {
            duration: duration.map(Duration::from_secs),
            interval: Duration::from_secs(interval.max(1)),
            ..lab::ecmp::EcmpOptions::new(std::env::current_exe().context("finding this program to run as the agent")?)
        })
        .map(drop)
        .context("lab"),
        Command::Lab { duration, interval, ecmp: false } => lab::run(lab::LabOptions {
            duration: duration.map(Duration::from_secs),
            interval: Duration::from_secs(interval.max(1)),
            ..lab::LabOptions::new(std::env::current_exe().context("finding this program to run as the agent")?)
        })
        .map(drop)
        .context("lab"),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lb", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir.as_deref()),
    }
}

fn man(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    // As clap_mangen::generate_to does for DIR: `lb help` gets no page, so
    // lb.1 must not point to one.
    let command = Cli::command().disable_help_subcommand(true);
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir).with_context(|| format!("writing the pages into {}", dir.display()))
        }
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout()).context("writing lb.1 to stdout"),
    }
}

fn check(path: &std::path::Path, this_machine: bool) -> anyhow::Result<()> {
    // The diagnostics are the message; anyhow's "error:" prefix would only
    // bury the file:line:column an editor jumps to.
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            anyhow::bail!("{} is not valid", path.display());
        }
    };
    if this_machine && let Err(e) = config.check_interfaces(|name| crate::netdev::index(name).is_ok()) {
        eprintln!("{e}");
        anyhow::bail!("{} names interfaces this machine does not have", path.display());
    }
    if this_machine && let Err(e) = config.check_scripts(crate::script::check_configured) {
        eprintln!("{e}");
        anyhow::bail!("{} names scripts that cannot or must not run", path.display());
    }
    // Legal but suspicious: said, and the file still passes.
    for line in config.warning_lines() {
        eprintln!("{line}");
    }
    let backends: usize = config.vips.iter().map(|v| v.backends.len()).sum();
    println!("{}: OK ({} VIPs, {backends} backends)", path.display(), config.vips.len());
    Ok(())
}

fn import(
    file: &std::path::Path,
    config_id: Option<String>,
    output: Option<PathBuf>,
    interface: Option<String>,
) -> anyhow::Result<()> {
    use crate::import;
    let config_id = match config_id {
        Some(id) => id,
        None => import::default_config_id(
            &std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading this machine's host name")?,
        ),
    };
    let options = import::Options { config_id, settings: import::Settings { interface } };
    let imported = import::import(file, &options, &import::System)?;
    for d in &imported.diagnostics {
        eprintln!("{d}");
    }
    match &output {
        Some(path) => std::fs::write(path, &imported.toml).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{}", imported.toml),
    }
    if !imported.rejected.is_empty() {
        for r in &imported.rejected {
            eprintln!("lb.toml: {r}");
        }
        anyhow::bail!("lb refuses the imported lb.toml: this is a bug in lb import; please report it with the file");
    }
    let errors = imported.diagnostics.iter().filter(|d| d.severity == import::Severity::Error).count();
    if errors > 0 {
        anyhow::bail!("{errors} errors: the lb.toml leaves out what they name (listed at its end)");
    }
    Ok(())
}

fn say(socket: &std::path::Path, request: &Request) -> anyhow::Result<()> {
    let response = control::request(socket, request)?;
    if let Some(message) = response.message {
        println!("{message}");
    }
    Ok(())
}
