//! keepalived's notify scripts, run as `crate::script` runs every program:
//! directly (no shell), as an unprivileged user, with a bare environment,
//! in its own process group, killed with that group after a timeout.
//!
//! On each state change an instance runs `notify_master` / `notify_backup` /
//! `notify_fault` / `notify_stop` as configured, then `notify` with
//! `INSTANCE name STATE priority` appended (as keepalived 2.2.7 does). The
//! scripts of one instance run one after another, in the order of the
//! changes, on a task of their own so that a slow script never holds up
//! the protocol.

use std::{os::unix::process::ExitStatusExt as _, process::ExitStatus, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle, time};

use super::fsm::State;
use crate::{config::Notify, script::Account};

/// How long a notify script may run before it is killed.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::script::run_as;

/// Describes how a script ended, for logs.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".to_owned(),
    }
}

/// The argv lists to run for entering `state`, in order.
pub fn commands_for(notify: &Notify, instance: &str, state: State, priority: u8) -> Vec<Vec<String>> {
    let own = match state {
        State::Master => &notify.master,
        State::Backup => &notify.backup,
        State::Fault => &notify.fault,
        State::Initialize => &notify.stop,
    };
    let mut out: Vec<Vec<String>> = own.iter().cloned().collect();
    if let Some(any) = &notify.any {
        let mut argv = any.clone();
        argv.extend(["INSTANCE".to_owned(), instance.to_owned(), state.name().to_owned(), priority.to_string()]);
        out.push(argv);
    }
    out
}

/// The argv lists to run for a sync group entering `state`: as for an
/// instance, with `GROUP name STATE 0` (keepalived: "the prio will be
/// indicated as zero for a group").
pub fn group_commands(notify: &Notify, group: &str, state: State) -> Vec<Vec<String>> {
    let mut out = commands_for(notify, group, state, 0);
    if notify.any.is_some()
        && let Some(last) = out.last_mut()
        && let Some(kind) = last.iter_mut().rev().nth(3)
    {
        "GROUP".clone_into(kind);
    }
    out
}

/// Runs one instance's notify scripts in order on a task of its own.
#[derive(Debug)]
pub struct Notifier {
    tx: Option<mpsc::UnboundedSender<Vec<String>>>,
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// `account` is `None` when the instance has no notify script.
    pub fn spawn(instance: String, account: Option<Account>) -> Self {
        let Some(account) = account else { return Self { tx: None, task: None } };
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<String>>();
        let task = tokio::spawn(async move {
            while let Some(argv) = rx.recv().await {
                match run_as(&argv, account, NOTIFY_TIMEOUT).await {
                    Ok(status) if status.success() => {
                        tracing::debug!(instance, script = ?argv, "notify script done");
                    }
                    Ok(status) => {
                        tracing::warn!(instance, script = ?argv, "notify script failed: {}", describe(status));
                    }
                    Err(e) => tracing::warn!(instance, script = ?argv, "notify script: {e}"),
                }
            }
        });
        Self { tx: Some(tx), task: Some(task) }
    }

    /// Queues the scripts.
    pub fn run(&self, commands: Vec<Vec<String>>) {
        if let Some(tx) = &self.tx {
            for argv in commands {
                let _ = tx.send(argv);
            }
        }
    }

    /// Lets the queued scripts finish, for at most `limit`.
    pub async fn finish(mut self, limit: Duration) {
        self.tx = None;
        if let Some(task) = self.task.take()
            && time::timeout(limit, task).await.is_err()
        {
            tracing::warn!("notify scripts still running at shutdown were left behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_order_and_arguments() {
        let notify = Notify {
            master: Some(vec!["/bin/n".into(), "master".into()]),
            any: Some(vec!["/bin/all".into()]),
            ..Notify::default()
        };
        assert_eq!(
            commands_for(&notify, "VI_A", State::Master, 150),
            vec![
                vec!["/bin/n".to_owned(), "master".to_owned()],
                ["/bin/all", "INSTANCE", "VI_A", "MASTER", "150"].map(str::to_owned).to_vec(),
            ]
        );
        assert_eq!(commands_for(&notify, "VI_A", State::Initialize, 150)[0][3], "STOP");
        assert!(commands_for(&Notify::default(), "x", State::Fault, 1).is_empty());
        assert_eq!(
            group_commands(&notify, "G1", State::Master),
            vec![
                vec!["/bin/n".to_owned(), "master".to_owned()],
                ["/bin/all", "GROUP", "G1", "MASTER", "0"].map(str::to_owned).to_vec(),
            ]
        );
    }
}
