//! NetworkPolicy's verdict on one connection, without its reasons: what the readers
//! that judge many connections (`end_allowed`, and with learned facts
//! `domains::end_allowed_learned`) share. Knows nothing of tiers.

use std::net::IpAddr;

use crate::graph::{PodNode, PolicyGraph};
use crate::policy::{Direction, Protocol};

/// NetworkPolicy's verdict for the connection: `None` when it does not isolate `pod` in
/// `dir`; else the own-node allowance or an allow whose peer and ports cover it.
pub(crate) fn np_allows(
    graph: &PolicyGraph,
    pod: &PodNode,
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Option<bool> {
    pod.isolation(dir).map(|iso| {
        pod.host_ips.contains(&other)
            || iso
                .allows
                .iter()
                .any(|a| graph.peer_contains(a.peer, other) && a.ports.contains(protocol, port))
    })
}
