//! Task plumbing shared by the health checks and VRRP, below both so that
//! neither imports the other.

use tokio::task::JoinHandle;

/// A task's handle that aborts the task when dropped: the task is cancelled
/// at its next wake-up (or at once when idle), dropping its timer and any
/// attempt in flight. Cheaper than a stop channel every task would poll on
/// every wake-up, and what ties a check's or a script's task to its owner.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
