//! A reload, all or nothing. Everything that can be worked out is worked out
//! before anything switches: the file read and checked, the director's plan
//! (ids, carried-over state, whether it fits the loaded maps), the checks'
//! and the neighbour watcher's new targets. Then the parts switch one by
//! one, the likeliest to fail first, and a failure at any of them switches
//! the ones already switched back, in reverse order: the agent never serves
//! half of a file. The parts come in through small traits, so tests make
//! each one fail in turn.

use std::{net::IpAddr, path::Path};

use tracing::{error, info};

use super::{
    control::Response,
    director::{Director, DirectorError, Setup},
    maps::FastPathMaps,
    targets::{health_targets, neighbour_targets},
};
use crate::{
    config::{Config, ConfigError, VrrpInstance, VrrpSyncGroup},
    health::{HealthError, Target},
    neigh::NeighError,
    vrrp::runtime::VrrpError,
};

/// The health checks, as a reload switches them.
pub trait HealthTargets {
    /// Checks exactly `targets` from now on; on error nothing changed.
    fn set(&mut self, targets: Vec<Target>) -> Result<(), HealthError>;
}

/// The neighbour watcher, as a reload switches it.
pub trait NeighbourTargets {
    /// Watches exactly `targets` from now on; on error nothing changed.
    fn set(&mut self, targets: Vec<(u32, IpAddr)>) -> Result<(), NeighError>;
}

/// The VRRP instances, as a reload switches them.
pub trait VrrpInstances {
    /// Runs the instances and sync groups of `config`; on error those that
    /// ran before run on unchanged.
    async fn set(&mut self, config: &Config) -> Result<(), VrrpError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Director(#[from] DirectorError),
    #[error("health checks: {0}")]
    Health(#[from] HealthError),
    #[error("neighbour table: {0}")]
    Neigh(#[from] NeighError),
    #[error("VRRP: {0}")]
    Vrrp(#[from] VrrpError),
}

/// The parts of the running agent a reload switches.
#[derive(Debug)]
pub struct Parts<'a, M, H, N, V> {
    pub director: &'a mut Director<M>,
    pub health: &'a mut H,
    pub neighbours: &'a mut N,
    pub vrrp: &'a mut V,
}

/// A part already switched, with what switches it back.
enum Switched {
    Health(Vec<Target>),
    Director(Box<Setup>),
    Neighbours(Vec<(u32, IpAddr)>),
}

/// What the VRRP runtime is started from.
fn vrrp_part(config: &Config) -> (&[VrrpInstance], &[VrrpSyncGroup]) {
    (&config.vrrp, &config.vrrp_sync_groups)
}

/// Reloads the file at `path` (read and checked by `load`; `ifindex`
/// resolves interface names) into every part, or into none. The reply says
/// which.
pub async fn reload<M, H, N, V>(
    parts: Parts<'_, M, H, N, V>,
    path: &Path,
    load: impl FnOnce(&Path) -> Result<Config, ConfigError>,
    ifindex: impl Fn(&str) -> Option<u32>,
) -> Response
where
    M: FastPathMaps,
    H: HealthTargets,
    N: NeighbourTargets,
    V: VrrpInstances,
{
    let Parts { director, health, neighbours, vrrp } = parts;
    let next = match load(path).map_err(ReloadError::from).and_then(|c| Ok(director.plan(c)?)) {
        Ok(next) => next,
        Err(e) => return refused(&e),
    };
    let services = director.services();
    let (old_health, new_health) = (health_targets(services), health_targets(next.services()));
    let (old_neighbours, new_neighbours) =
        (neighbour_targets(services, &ifindex), neighbour_targets(next.services(), &ifindex));
    let vrrp_changed = vrrp_part(next.config()) != vrrp_part(director.config());

    let mut switched = Vec::new();
    let outcome = async {
        // Arming a check can fail (a script user that does not exist, say);
        // the maps and the watcher's channel almost never do.
        health.set(new_health)?;
        switched.push(Switched::Health(old_health));
        let previous = director.snapshot();
        director.apply(next)?;
        switched.push(Switched::Director(Box::new(previous)));
        neighbours.set(new_neighbours)?;
        switched.push(Switched::Neighbours(old_neighbours));
        // Last: it awaits instances that stop, and cannot be taken back.
        if vrrp_changed {
            vrrp.set(director.config()).await?;
        }
        Ok::<_, ReloadError>(())
    }
    .await;
    let Err(e) = outcome else {
        info!(config = %path.display(), "configuration reloaded");
        return Response::ok(format!("reloaded {}", path.display()));
    };
    let mut failed_back = Vec::new();
    for part in switched.into_iter().rev() {
        let back = match part {
            Switched::Health(targets) => health.set(targets).map_err(ReloadError::from),
            Switched::Director(previous) => director.restore(*previous).map_err(ReloadError::from),
            Switched::Neighbours(targets) => neighbours.set(targets).map_err(ReloadError::from),
        };
        if let Err(back) = back {
            failed_back.push(back.to_string());
        }
    }
    if failed_back.is_empty() {
        return refused(&e);
    }
    let message = format!("{e}\nswitching back to the running configuration failed too: {}", failed_back.join("; "));
    error!("reload: {message}");
    Response::error(message)
}

/// The reply to a reload that changed nothing.
fn refused(e: &ReloadError) -> Response {
    Response::error(format!("{e}\nthe running configuration stays in force"))
}

#[cfg(test)]
mod tests;
