//! The agent's configuration: one TOML file, read and validated without
//! touching the machine, so that `lb check` and `lb run` agree on what a
//! file means and a bad file is refused whole, never half-applied.
//!
//! Every problem is reported as `file:line:column: message`, all of them at
//! once when the file parses; a syntax error or a wrong type stops at the
//! first. [`EXAMPLE`] is a commented file that shows every table.

// Layers, bottom-up: a file uses only files listed before it.
//   0. `error`, `types`, then `span`: errors, the validated VIP and check types,
//      positions and the list of problems found.
//   1. `fields`: rules for single values that several tables share
//      (integer ranges, interface names, fall/rise).
//   2. `model`: the file as serde reads it (`value`, then `check`, `vrrp`).
//   3. `duration`: durations as written.
//   4. `check` (health checks) and `vrrp` (the VRRP sections: `route`,
//      `types`, `command`, `virtual_ipaddress`, `virtual_routes`,
//      `warnings`, `instance`, `sync_group`, in that order), then
//      `announce` (`[announce]` and each VIP's `announce`).
//   5. `validate` (the whole file), then this file: `Config` and its API.
// Tests read whole files through `Config::from_str`, so they sit on top.
// Outside the module, only the pure `crate::maglev` and
// `crate::vrrp::packet` are used: no sockets, netlink or BPF maps.

mod announce;
mod check;
mod duration;
mod error;
mod fields;
mod model;
mod span;
mod types;
mod validate;
mod vrrp;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, Diagnostic};
pub use types::{
    Announce, Backend, BodyMatch, Check, CheckKind, DnsCheck, DnsType, Global, HashMode, HttpCheck, MAX_WEIGHT,
    Position, Protocol, ScriptCheck, ScriptCommand, StatusCodes, Tls, UdpCheck, Vip,
};
pub use vrrp::{
    Garp, Notify, RouteKind, Scope, TABLE_MAIN, TrackFastPath, TrackScript, VirtualAddress, VirtualRoute, VrrpInstance,
    VrrpSyncGroup,
};

use span::Problems;

/// A whole agent configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, as given; positions in later errors refer to it.
    pub source: PathBuf,
    pub global: Global,
    /// In file order; a VIP's position here is its `vip_index`.
    pub vips: Vec<Vip>,
    /// The `[[vrrp]]` instances, in file order.
    pub vrrp: Vec<VrrpInstance>,
    /// The `[[vrrp_sync_group]]`s, in file order.
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    /// `[announce]`: VIP routes a BGP daemon exports; `None`: nothing is announced.
    pub announce: Option<Announce>,
    /// What is legal but suspicious (`lb check` prints these and passes).
    pub warnings: Vec<Diagnostic>,
}

/// A commented configuration mirroring a keepalived LVS-DR setup.
pub const EXAMPLE: &str = include_str!("example.toml");

impl Config {
    /// Reads and validates `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_owned(), source })?;
        Config::from_str(&text, path)
    }

    /// Validates `text`; `file` names it in errors.
    pub fn from_str(text: &str, file: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let file = file.as_ref();
        let raw: model::RawConfig = toml::from_str(text).map_err(|e| {
            let mut problems = Problems::default();
            problems.push(e.span().unwrap_or(0..0), toml_message(&e, text));
            problems.into_result(file, text).expect_err("one problem was recorded")
        })?;
        let mut problems = Problems::default();
        let validate::Sections { global, vips, vrrp, vrrp_sync_groups, announce } =
            validate::validate(&raw, text, &mut problems);
        let warnings = problems.warnings(text);
        problems.into_result(file, text)?;
        Ok(Config { source: file.to_owned(), global, vips, vrrp, vrrp_sync_groups, announce, warnings })
    }

    /// Reports every interface the file names that does not exist: a VIP's
    /// `interface` (at its value), and a VRRP instance's `interface`,
    /// `track_interface`, VIP `dev` and route `dev` (at the start of its
    /// `[[vrrp]]` table). Separate from parsing because the answer depends
    /// on the machine (`lb check` on a laptop, `lb run` on the director).
    pub fn check_interfaces(&self, exists: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        let mut errors: Vec<Diagnostic> = self
            .vips
            .iter()
            .filter(|vip| !exists(&vip.interface))
            .map(|vip| Diagnostic {
                line: vip.interface_at.line,
                column: vip.interface_at.column,
                message: format!("unknown interface \"{}\"", vip.interface),
            })
            .collect();
        for v in &self.vrrp {
            let named = std::iter::once(("interface", v.interface.as_str()))
                .chain(v.track_interfaces.iter().map(|i| ("track_interface", i.as_str())))
                .chain(v.virtual_addresses.iter().filter_map(|a| Some(("virtual_ipaddress dev", a.dev.as_deref()?))))
                .chain(v.virtual_routes.iter().filter_map(|r| Some(("virtual_routes dev", r.dev.as_deref()?))));
            let mut said = std::collections::HashSet::new();
            for (what, name) in named {
                if !exists(name) && said.insert(name) {
                    errors.push(Diagnostic {
                        line: v.at.line,
                        column: v.at.column,
                        message: format!("[[vrrp]] {}: {what}: unknown interface \"{name}\"", v.name),
                    });
                }
            }
        }
        errors.sort_by_key(|d| (d.line, d.column));
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Invalid { file: self.source.clone(), errors }) }
    }

    /// Reports every program the configuration would run (script checks,
    /// VRRP track and notify scripts) that `check` refuses, given the
    /// program and the user it runs as: at the script check's `command`, or
    /// at the start of the `[[vrrp]]` / `[[vrrp_sync_group]]` table. Separate
    /// from parsing because the answer depends on the machine.
    pub fn check_scripts(&self, check: impl Fn(&str, &str) -> Result<(), String>) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut report = |at: Position, what: String, program: &str, user: &str| {
            if let Err(problem) = check(program, user)
                && seen.insert((at, program.to_owned(), user.to_owned()))
            {
                errors.push(Diagnostic { line: at.line, column: at.column, message: format!("{what}: {problem}") });
            }
        };
        for vip in &self.vips {
            for b in &vip.backends {
                if let Some(Check { kind: CheckKind::Script(s), .. }) = &b.check {
                    report(s.command_at, format!("script check of {}", b.address), s.command.program(), &s.user);
                }
            }
        }
        let notify = |n: &Notify| -> Vec<(&'static str, String)> {
            [("notify_master", &n.master), ("notify_backup", &n.backup), ("notify_fault", &n.fault)]
                .into_iter()
                .chain([("notify_stop", &n.stop), ("notify", &n.any)])
                .filter_map(|(key, argv)| Some((key, argv.as_ref()?.first()?.clone())))
                .collect()
        };
        for v in &self.vrrp {
            for t in &v.track_scripts {
                let program = t.command.first().map_or("", String::as_str);
                report(v.at, format!("[[vrrp]] {} track_script {}", v.name, t.name), program, &t.user);
            }
            for (key, program) in notify(&v.notify) {
                report(v.at, format!("[[vrrp]] {} {key}", v.name), &program, &v.notify.user);
            }
        }
        for g in &self.vrrp_sync_groups {
            for (key, program) in notify(&g.notify) {
                report(g.at, format!("[[vrrp_sync_group]] {} {key}", g.name), &program, &g.notify.user);
            }
        }
        errors.sort_by_key(|d| (d.line, d.column));
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Invalid { file: self.source.clone(), errors }) }
    }

    /// The warnings as `file:line:column: warning: message` lines.
    pub fn warning_lines(&self) -> Vec<String> {
        let file = self.source.display();
        self.warnings.iter().map(|d| format!("{file}:{}:{}: warning: {}", d.line, d.column, d.message)).collect()
    }

    /// The largest ring of any VIP: the size of one ring region for the
    /// loader (the default ring size when there are no VIPs).
    pub fn max_ring_size(&self) -> u32 {
        self.vips.iter().map(|v| v.ring_size).max().unwrap_or(lb_common::DEFAULT_RING_SIZE)
    }
}

/// The parser's message, made to name what it is about where it does not.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) if message == "duplicate key" => {
            let key = text.get(span).unwrap_or_default().trim();
            format!("duplicate key `{key}`")
        }
        _ => message,
    }
}
