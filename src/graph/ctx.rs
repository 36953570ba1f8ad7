//! One build's or refresh's context: the index, what is resolved at most once per refresh
//! (namespaces, ClusterNetworkPolicy order and resolutions) and the peer cache that
//! outlives it. Owns no semantics: `compute` (NetworkPolicy) and `cnp_rules`
//! (ClusterNetworkPolicy) read and fill it.

use std::collections::HashMap;

use super::peers::PeerCache;
use super::{PeerId, PortRange};
use crate::addr::AddrSet;
use crate::cnp::Peer as CnpPeer;
use crate::index::{CnpEntry, Index, PodInfo};
use crate::policy::Peer;
use crate::selector::Labels;

/// What one build or refresh computes at most once (the namespaces and their labels,
/// ClusterNetworkPolicy resolutions), and the cache of peers that outlives it.
pub(super) struct Ctx<'a, 'c> {
    pub(super) index: &'a Index,
    /// Filled on first use: most refreshes never resolve a namespaceSelector.
    pub(super) namespaces: std::cell::OnceCell<Vec<(&'a str, std::borrow::Cow<'a, Labels>)>>,
    /// ClusterNetworkPolicy order and resolutions, for this refresh only.
    pub(super) cnp: CnpCache<'a>,
    pub(super) peers: &'c mut PeerCache,
}

impl<'a, 'c> Ctx<'a, 'c> {
    pub(super) fn new(index: &'a Index, peers: &'c mut PeerCache) -> Self {
        Ctx {
            index,
            namespaces: std::cell::OnceCell::new(),
            cnp: CnpCache::default(),
            peers,
        }
    }

    /// The policy pods a peer holds.
    pub(super) fn members(&self, spec: Option<&Peer>, policy_ns: &str) -> Vec<&'a PodInfo> {
        match spec {
            None => self.index.pods().filter(|p| p.is_policy_pod()).collect(),
            Some(Peer::Pods { namespaces, pods }) => {
                let ns_names: Vec<&str> = match namespaces {
                    None => vec![policy_ns],
                    Some(sel) => self
                        .namespaces
                        .get_or_init(|| self.index.namespaces_borrowed().collect())
                        .iter()
                        .filter(|(_, labels)| sel.matches(labels))
                        .map(|(n, _)| *n)
                        .collect(),
                };
                let index = self.index;
                ns_names
                    .into_iter()
                    .flat_map(|ns| index.pods_in_namespace(ns))
                    .filter(|p| p.is_policy_pod() && pods.matches(&p.labels))
                    .collect()
            }
            Some(Peer::Block { cidr, except }) => {
                let addrs = AddrSet::from_block(cidr, except);
                self.index
                    .pods()
                    .filter(|p| p.is_policy_pod() && p.ips.iter().any(|ip| addrs.contains(*ip)))
                    .collect()
            }
        }
    }
}

/// What one refresh resolves at most once.
#[derive(Default)]
pub(super) struct CnpCache<'a> {
    /// Every policy, in evaluation order: tier, ascending priority, then name. Equal
    /// priorities are ordered by name, as kube-network-policies does (the API leaves
    /// the choice to the implementation).
    pub(super) order: Option<Vec<&'a CnpEntry>>,
    pub(super) peers: HashMap<CnpPeer, Option<PeerId>>,
    /// Egress named ports: (peer, name) -> [(peer of the pods where the name means
    /// this protocol and port, that port)].
    pub(super) named: HashMap<(CnpPeer, String), Vec<(PeerId, PortRange)>>,
}
