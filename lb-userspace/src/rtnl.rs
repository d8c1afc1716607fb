//! Route netlink through `rtnetlink`: what the neighbour table, the VRRP
//! addresses and routes, and the fast path's attachment check share.
//!
//! An [`Rtnl`] is one connection, created in the network namespace of the
//! thread that opens it (a netlink socket keeps that namespace for its
//! whole life) and driven by a task of its own. Requests are rtnetlink's;
//! the kernel's refusal comes back as the `io::Error` of its errno, so a
//! caller can tell "already there" (`EEXIST`) from a failure.

use std::{future::Future, io, sync::Arc, time::Duration};

use futures::{TryStreamExt as _, channel::mpsc::UnboundedReceiver};
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp},
};
use netlink_sys::{AsyncSocket as _, SocketAddr};
use rtnetlink::{Handle, MulticastGroup};

use crate::task::AbortOnDrop;

/// How long a request may wait for its answer. The kernel answers within
/// the send, so this only matters when something is badly wrong (an answer
/// lost to a receive-queue overrun, one the parser dropped).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What arrives unasked: notifications of the groups subscribed to, answers
/// to requests sent with [`Handle::notify`], and an `NLMSG_OVERRUN` message
/// where the receive queue overflowed and some were lost.
pub type Messages = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// A route netlink connection; dropping its last clone ends its task.
#[derive(Debug, Clone)]
pub struct Rtnl {
    handle: Handle,
    _connection: Arc<AbortOnDrop>,
}

impl Rtnl {
    /// A connection in the calling thread's network namespace, driven on the
    /// current tokio runtime.
    pub fn open() -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("route netlink needs a tokio runtime: {e}")))?;
        Ok(Self::open_on(&runtime, &[], None)?.0)
    }

    /// A connection in the calling thread's network namespace, driven on
    /// `runtime` (which needs its IO driver) and subscribed to `groups`.
    /// `rcvbuf` sizes its receive queue, past `net.core.rmem_max` where the
    /// process may (CAP_NET_ADMIN), so a burst of notifications is less
    /// likely to overrun it.
    pub fn open_on(
        runtime: &tokio::runtime::Handle,
        groups: &[MulticastGroup],
        rcvbuf: Option<usize>,
    ) -> io::Result<(Self, Messages)> {
        // The socket is created here, in this thread's namespace, and
        // registered with `runtime`'s IO driver.
        let _context = runtime.enter();
        let (mut connection, handle, messages) = rtnetlink::new_multicast_connection(groups)?;
        if let Some(size) = rcvbuf {
            let socket = connection.socket_mut().socket_mut();
            if force_rcvbuf(socket, size).is_err() {
                socket.set_rx_buf_sz(size)?;
            }
        }
        let task = runtime.spawn(connection);
        Ok((Self { handle, _connection: Arc::new(AbortOnDrop(task)) }, messages))
    }

    /// rtnetlink's handle, for requests of any kind.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// One link (`ip link show dev IFINDEX`).
    pub async fn link(&self, ifindex: u32) -> io::Result<LinkMessage> {
        let request = self.handle.link().get().match_index(ifindex).execute();
        within(async move {
            futures::pin_mut!(request);
            request.try_next().await
        })
        .await?
        .ok_or_else(|| io::Error::other(format!("no answer about link {ifindex}")))
    }

    /// The name of the interface with index `ifindex`.
    pub async fn link_name(&self, ifindex: u32) -> io::Result<String> {
        let link = self.link(ifindex).await?;
        link.attributes
            .into_iter()
            .find_map(|a| if let LinkAttribute::IfName(name) = a { Some(name) } else { None })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("link {ifindex} has no name")))
    }

    /// The id of the XDP program attached to `ifindex` in any mode (`ip link
    /// show` prints it as `prog/xdp id N`); `None` when there is none.
    pub async fn xdp_prog_id(&self, ifindex: u32) -> io::Result<Option<u32>> {
        Ok(xdp_prog_id(&self.link(ifindex).await?))
    }
}

/// `request`'s outcome within [`REQUEST_TIMEOUT`], the kernel's errno as
/// the `io::Error`.
pub async fn within<T>(request: impl Future<Output = Result<T, rtnetlink::Error>>) -> io::Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(answer) => answer.map_err(io_error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer over route netlink within {REQUEST_TIMEOUT:?}"),
        )),
    }
}

/// The kernel's errno for its refusals; anything else as it is.
pub fn io_error(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other),
    }
}

/// The program id from `IFLA_XDP`, whichever mode it is attached in.
fn xdp_prog_id(link: &LinkMessage) -> Option<u32> {
    let xdp = link.attributes.iter().find_map(|a| if let LinkAttribute::Xdp(x) = a { Some(x) } else { None })?;
    xdp.iter()
        .find_map(|x| match x {
            LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id) | LinkXdp::HwProgId(id) => Some(*id),
            _ => None,
        })
        .filter(|&id| id != 0)
}

/// `SO_RCVBUFFORCE`, which netlink-sys does not offer.
fn force_rcvbuf(socket: &netlink_sys::Socket, size: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads exactly `optlen` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_program_in_any_mode() {
        let mut link = LinkMessage::default();
        assert_eq!(xdp_prog_id(&link), None);
        link.attributes
            .push(LinkAttribute::Xdp(vec![LinkXdp::Attached(netlink_packet_route::link::XdpAttached::None)]));
        assert_eq!(xdp_prog_id(&link), None);
        link.attributes = vec![LinkAttribute::Xdp(vec![
            LinkXdp::Attached(netlink_packet_route::link::XdpAttached::SocketBuffer),
            LinkXdp::ProgId(42),
        ])];
        assert_eq!(xdp_prog_id(&link), Some(42));
        link.attributes = vec![LinkAttribute::Xdp(vec![LinkXdp::DrvProgId(7)])];
        assert_eq!(xdp_prog_id(&link), Some(7));
    }

    #[test]
    fn refusals_keep_their_errno() {
        let mut message = netlink_packet_core::ErrorMessage::default();
        message.code = std::num::NonZeroI32::new(-libc::EEXIST);
        assert_eq!(io_error(rtnetlink::Error::NetlinkError(message)).raw_os_error(), Some(libc::EEXIST));
        assert_eq!(io_error(rtnetlink::Error::RequestFailed).kind(), io::ErrorKind::Other);
    }

    #[tokio::test]
    async fn loopback_over_route_netlink() {
        let rtnl = Rtnl::open().unwrap();
        assert_eq!(rtnl.link_name(1).await.unwrap(), "lo");
        assert_eq!(rtnl.xdp_prog_id(1).await.unwrap(), None);
        assert_eq!(rtnl.link(u32::MAX >> 1).await.unwrap_err().raw_os_error(), Some(libc::ENODEV));
    }
}
