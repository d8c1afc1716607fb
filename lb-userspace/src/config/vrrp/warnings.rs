//! Tracking weights that are legal but can never move the VIPs.

use crate::config::span::{Problems, Span};
use crate::vrrp::packet::PRIORITY_OWNER;

/// What operators trip on most with keepalived's weights: a weight too
/// small to cross the priority gap to the peer never causes a failover, and
/// an address owner's 255 never moves at all. Only warnings: the file is
/// legal, and the peer's priority is a hint (`peer_priority`) the operator
/// may have got wrong.
///
/// With the peer at P and our healthy priority H (the base plus positive
/// weights, at most 254) above it, the peer's backup takes over only when
/// our advertised priority drops below P: a backup accepts an equal one
/// (RFC 5798 section 6.4.2). A weight W fails over iff H - |W| < P.
pub(crate) fn weight_warnings(
    priority: u8,
    peer: Option<(u8, Span)>,
    weights: &[(i32, Span, String)],
    problems: &mut Problems,
) {
    let nonzero = || weights.iter().filter(|(w, _, _)| *w != 0);
    if priority == PRIORITY_OWNER {
        for (w, span, what) in nonzero() {
            problems.warn(
                span.clone(),
                format!(
                    "{what}: weight {w} has no effect: priority 255 (address owner) never changes, so this director \
                     stays master; use weight 0 (FAULT) or a priority below 255"
                ),
            );
        }
        return;
    }
    let Some((peer, peer_span)) = peer else { return };
    let healthy = (i32::from(priority) + nonzero().map(|(w, _, _)| (*w).max(0)).sum::<i32>()).min(254);
    let peer = i32::from(peer);
    if healthy <= peer {
        // The peer is master while we are healthy: our weights decide nothing about failing over from us.
        return;
    }
    let mut useless = 0;
    for (w, span, what) in nonzero() {
        let failing = (healthy - w.abs()).max(1);
        if failing >= peer {
            useless += 1;
            problems.warn(
                span.clone(),
                format!(
                    "{what}: weight {w} can never cause a failover: {healthy} - {} = {failing} is not below \
                     peer_priority {peer} (needs a magnitude of at least {}, or weight 0 for FAULT)",
                    w.abs(),
                    healthy - peer + 1
                ),
            );
        }
    }
    let all = (healthy - nonzero().map(|(w, _, _)| w.abs()).sum::<i32>()).max(1);
    if useless >= 2 && useless == nonzero().count() && all >= peer {
        problems.warn(
            peer_span,
            format!(
                "even all tracked objects failing together leave priority {all}, not below peer_priority {peer}: \
                 tracking can never move the VIPs to the peer"
            ),
        );
    }
}
