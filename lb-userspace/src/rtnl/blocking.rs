//! [`super::Rtnl`] for code that cannot await: a call waits for the
//! kernel's answer, which comes within the send, as a blocking socket's
//! would.
//!
//! The connection runs on a runtime of its own, on a thread that ends with
//! it: a call cannot wait on the caller's runtime, which may be a
//! single-threaded one the call itself is blocking.

use std::{future::Future, io, thread};

use tokio::sync::oneshot;

/// A route netlink connection with blocking calls; dropping it ends its
/// thread.
#[derive(Debug)]
pub struct Rtnl {
    rtnl: super::Rtnl,
    runtime: tokio::runtime::Handle,
    /// Dropped last: ends the thread once the connection's task is gone.
    _stop: oneshot::Sender<()>,
}

impl Rtnl {
    /// A connection in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, runtime) = std::sync::mpsc::sync_channel(1);
        // Built and dropped on its thread: a runtime may not be dropped
        // where the caller may be, inside another one.
        thread::Builder::new().name("rtnl".to_owned()).spawn(
            move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => {
                    let _ = started.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async move {
                        let _ = stopped.await;
                    });
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            },
        )?;
        let runtime = runtime.recv().map_err(|_| io::Error::other("the route netlink thread ended at start"))??;
        let (rtnl, _) = super::Rtnl::open_on(&runtime, &[], None)?;
        Ok(Self { rtnl, runtime, _stop: stop })
    }

    /// The asynchronous connection underneath, for [`Rtnl::block_on`].
    pub fn rtnl(&self) -> &super::Rtnl {
        &self.rtnl
    }

    /// Runs `request` (a request on [`Rtnl::rtnl`]) to its end on the calling
    /// thread. Its timer runs on the connection's runtime, which is not
    /// blocked.
    pub fn block_on<F: Future>(&self, request: F) -> F::Output {
        let _context = self.runtime.enter();
        futures::executor::block_on(request)
    }

    /// [`super::Rtnl::xdp_prog_id`].
    pub fn xdp_prog_id(&self, ifindex: u32) -> io::Result<Option<u32>> {
        self.block_on(self.rtnl.xdp_prog_id(ifindex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_any_runtime() {
        let rtnl = Rtnl::open().unwrap();
        assert_eq!(rtnl.xdp_prog_id(1).unwrap(), None);
        assert_eq!(rtnl.block_on(rtnl.rtnl().link_name(1)).unwrap(), "lo");
    }

    #[tokio::test]
    async fn inside_a_single_threaded_runtime() {
        let rtnl = Rtnl::open().unwrap();
        assert_eq!(rtnl.xdp_prog_id(1).unwrap(), None);
    }
}
