//! Track scripts run: each on its own task, every `interval`, as its user,
//! reporting success or failure. What the results mean is
//! [`super::tracking`]'s.

use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle, time};

use super::notify::{describe, run_as};
use crate::{config::TrackScript, script::Account};

// The agent names the fast path's health by this path.

/// Runs one script every `interval` and reports `(index, success)`.
pub fn spawn_script(
    instance: String,
    index: usize,
    script: TrackScript,
    account: Account,
    results: mpsc::Sender<(usize, bool)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = time::interval(script.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let success = match run_as(&script.command, account, script.timeout).await {
                Ok(status) if status.success() => true,
                Ok(status) => {
                    tracing::debug!(instance, script = script.name, "track script failed: {}", describe(status));
                    false
                }
                Err(e) => {
                    tracing::debug!(instance, script = script.name, "track script: {e}");
                    false
                }
            };
            if results.send((index, success)).await.is_err() {
                return;
            }
        }
    })
}
