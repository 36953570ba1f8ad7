//! The peer cache: NetworkPolicy peers already resolved against the cluster, kept from one
//! refresh of the graph to the next so that a one-pod change does not walk every namespace
//! again for every policy of the pods it touches.
//!
//! Owns: the resolutions (`peer spec in its policy's scope -> peer node`), the egress
//! named-port splits, and which policies use each; and the rules for keeping them right
//! when a pod, a namespace or a policy changes. One owner holds a cache and reports every
//! change to it ([`crate::state::NodeState`]); a graph built in one go gets a fresh one.
//!
//! Must not: decide what a peer holds (that is `compute.rs`, which fills the cache), or
//! change the graph: a pod change that moves a peer's addresses leaves the new addresses
//! here, and the next refresh that needs them interns them.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use super::{describe_peer, PeerId, PeerNode};
use crate::addr::AddrSet;
use crate::index::{implied_labels, Index, PodInfo};
use crate::policy::{Direction, Peer, Policy, PortMatch, Protocol};
use crate::selector::Labels;

/// A policy's peer: its spec, and the policy's namespace when the spec is a podSelector
/// alone (empty otherwise: the rest does not depend on where the policy lives).
pub(super) type PeerKey = (Peer, String);
/// An egress named port: the peer (`None`: every pod), the protocol and the port name.
pub(super) type NamedKey = (Option<PeerKey>, Protocol, String);

/// The cache key of a policy's peer.
pub(super) fn peer_key(spec: &Peer, policy_ns: &str) -> PeerKey {
    let scope = match spec {
        Peer::Pods {
            namespaces: None, ..
        } => policy_ns.to_string(),
        _ => String::new(),
    };
    (spec.clone(), scope)
}

/// What a peer resolves to.
#[derive(Debug, Clone)]
enum Resolution {
    Interned(PeerId),
    /// A pod change moved the addresses; not yet interned in the graph.
    Moved(AddrSet),
}

/// A cached value and the policies (`namespace/name`) whose refreshes used it.
#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    users: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PeerCache {
    resolved: HashMap<PeerKey, Entry<Resolution>>,
    /// Egress named ports -> [(peer of the pods where the name means that port, port)].
    named: HashMap<NamedKey, Entry<Vec<(PeerId, u16)>>>,
}

impl PeerCache {
    /// The cached peer node of `key` for `policy`; `intern` turns moved addresses into
    /// a node of the graph.
    pub(super) fn resolved(
        &mut self,
        key: &PeerKey,
        policy: &str,
        intern: impl FnOnce(AddrSet, String) -> PeerId,
    ) -> Option<PeerId> {
        let entry = self.resolved.get_mut(key)?;
        use_by(&mut entry.users, policy);
        Some(match &mut entry.value {
            Resolution::Interned(id) => *id,
            Resolution::Moved(addrs) => {
                let id = intern(std::mem::take(addrs), describe_peer(&key.0, &key.1));
                entry.value = Resolution::Interned(id);
                id
            }
        })
    }

    pub(super) fn insert_resolved(&mut self, key: PeerKey, policy: &str, id: PeerId) {
        let users = BTreeSet::from([policy.to_string()]);
        let value = Resolution::Interned(id);
        self.resolved.insert(key, Entry { value, users });
    }

    pub(super) fn named(&mut self, key: &NamedKey, policy: &str) -> Option<Vec<(PeerId, u16)>> {
        let entry = self.named.get_mut(key)?;
        use_by(&mut entry.users, policy);
        Some(entry.value.clone())
    }

    pub(super) fn insert_named(&mut self, key: NamedKey, policy: &str, split: Vec<(PeerId, u16)>) {
        let users = BTreeSet::from([policy.to_string()]);
        self.named.insert(
            key,
            Entry {
                value: split,
                users,
            },
        );
    }

    /// How many resolutions and splits the cache holds.
    pub fn len(&self) -> usize {
        self.resolved.len() + self.named.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One pod changed from `old` to `new` (either may be absent; `index` holds `new`).
    /// A peer that gains the pod gains its addresses and one that loses it loses them;
    /// only when another pod claims an address it gave up (an address being reused may
    /// have two owners for a while) is the peer forgotten, to be resolved again. Splits
    /// that may hold the pod are forgotten (they depend on its ports as well).
    pub(crate) fn pod_changed(
        &mut self,
        peers: &[PeerNode],
        index: &Index,
        old: Option<&PodInfo>,
        new: Option<&PodInfo>,
    ) {
        let Some(namespace) = old.or(new).map(|p| p.namespace.as_str()) else {
            return;
        };
        if self.is_empty() {
            return;
        }
        let ns_labels = index.effective_labels(namespace);
        let holds = |key: Option<&PeerKey>, pod: Option<&PodInfo>, static_blocks: bool| {
            pod.is_some_and(|p| {
                p.is_policy_pod() && key.is_none_or(|k| may_hold(k, p, &ns_labels, static_blocks))
            })
        };
        let same_ips = old.map(|p| &p.ips) == new.map(|p| &p.ips);
        let mut forget = Vec::new();
        for (key, entry) in &mut self.resolved {
            let (was, is) = (holds(Some(key), old, true), holds(Some(key), new, true));
            if was == is && (!was || same_ips) {
                continue;
            }
            let kept: &[IpAddr] = match new {
                Some(n) if is => &n.ips,
                _ => &[],
            };
            let gone: Vec<IpAddr> = match old {
                Some(o) if was => o
                    .ips
                    .iter()
                    .copied()
                    .filter(|ip| !kept.contains(ip))
                    .collect(),
                _ => Vec::new(),
            };
            if gone.iter().any(|ip| index.claims(*ip) > 0) {
                // Whether the other claimant belongs to this peer takes a look at it.
                forget.push(key.clone());
                continue;
            }
            let addrs = match &entry.value {
                Resolution::Interned(id) => &peers[*id].addrs,
                Resolution::Moved(addrs) => addrs,
            };
            let moved = addrs
                .subtract(&AddrSet::from_ips(gone))
                .union(&AddrSet::from_ips(kept.iter().copied()));
            entry.value = Resolution::Moved(moved);
        }
        for key in forget {
            self.resolved.remove(&key);
        }
        let same_pod = old == new;
        self.named.retain(|(key, _, _), _| {
            let (was, is) = (
                holds(key.as_ref(), old, false),
                holds(key.as_ref(), new, false),
            );
            was == is && (!was || same_pod)
        });
    }

    /// Forgets the peers whose namespaceSelector selects namespace `name` with its labels
    /// as they were (`old`) but not as they are (`new`), or the other way round; a
    /// namespace not given counts with only its name label.
    pub(crate) fn namespace_changed(
        &mut self,
        name: &str,
        old: Option<&Labels>,
        new: Option<&Labels>,
    ) {
        let implied = implied_labels(name);
        let (old, new) = (old.unwrap_or(&implied), new.unwrap_or(&implied));
        let changes = |key: &PeerKey| match &key.0 {
            Peer::Pods {
                namespaces: Some(sel),
                ..
            } => sel.matches(old) != sel.matches(new),
            _ => false,
        };
        self.resolved.retain(|key, _| !changes(key));
        self.named
            .retain(|(key, _, _), _| !key.as_ref().is_some_and(changes));
    }

    /// A policy changed from `old` to `new`: what only the old version used is forgotten
    /// now, so that no later pod change walks it.
    pub(crate) fn policy_changed(&mut self, old: Option<&Policy>, new: Option<&Policy>) {
        let Some(old) = old else { return };
        let (kept_peers, kept_named) = new.map(keys_of).unwrap_or_default();
        let (peers, named) = keys_of(old);
        let id = old.id();
        for key in peers.difference(&kept_peers) {
            release(&mut self.resolved, key, &id);
        }
        for key in named.difference(&kept_named) {
            release(&mut self.named, key, &id);
        }
    }

    /// The graph renumbered its peers (`renumbering[old] = new`, `None`: dropped).
    /// Resolutions to a dropped peer are forgotten: no pod refers to them.
    pub(crate) fn renumber(&mut self, renumbering: &[Option<PeerId>]) {
        self.resolved.retain(|_, e| match &mut e.value {
            Resolution::Interned(id) => renumbering[*id].map(|new| *id = new).is_some(),
            Resolution::Moved(_) => true,
        });
        self.named.retain(|_, e| {
            e.value.iter_mut().all(|(id, _)| match renumbering[*id] {
                Some(new) => {
                    *id = new;
                    true
                }
                None => false,
            })
        });
    }
}

fn use_by(users: &mut BTreeSet<String>, policy: &str) {
    if !users.contains(policy) {
        users.insert(policy.to_string());
    }
}

fn release<K: std::hash::Hash + Eq, T>(map: &mut HashMap<K, Entry<T>>, key: &K, policy: &str) {
    if let Some(entry) = map.get_mut(key) {
        entry.users.remove(policy);
        if entry.users.is_empty() {
            map.remove(key);
        }
    }
}

/// Every cache key a policy's rules can fill: their peers, and their egress named ports.
fn keys_of(policy: &Policy) -> (BTreeSet<PeerKey>, BTreeSet<NamedKey>) {
    let (mut peers, mut named) = (BTreeSet::new(), BTreeSet::new());
    for dir in [Direction::Ingress, Direction::Egress] {
        for rule in policy.rules(dir).unwrap_or_default() {
            let keys: Vec<Option<PeerKey>> = match &rule.peers {
                None => vec![None],
                Some(list) => list
                    .iter()
                    .map(|s| Some(peer_key(s, &policy.namespace)))
                    .collect(),
            };
            for port in rule.ports.iter().flatten() {
                if let (Direction::Egress, PortMatch::Name(name)) = (dir, &port.port) {
                    for key in &keys {
                        named.insert((key.clone(), port.protocol, name.clone()));
                    }
                }
            }
            peers.extend(keys.into_iter().flatten());
        }
    }
    (peers, named)
}

/// Whether `pod`, in a namespace labelled `ns_labels`, is (or may be) among the pods the
/// peer holds. `static_blocks`: an ipBlock's addresses never depend on pods.
fn may_hold(key: &PeerKey, pod: &PodInfo, ns_labels: &Labels, static_blocks: bool) -> bool {
    match &key.0 {
        Peer::Block { cidr, except } => {
            !static_blocks && {
                let addrs = AddrSet::from_block(cidr, except);
                pod.ips.iter().any(|ip| addrs.contains(*ip))
            }
        }
        Peer::Pods {
            namespaces: None,
            pods,
        } => key.1 == pod.namespace && pods.matches(&pod.labels),
        Peer::Pods {
            namespaces: Some(sel),
            pods,
        } => sel.matches(ns_labels) && pods.matches(&pod.labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;

    #[test]
    fn a_peer_key_holds_the_policy_namespace_only_where_it_matters() {
        let pods = Selector::default();
        let block = Peer::Block {
            cidr: "10.0.0.0/8".parse().unwrap(),
            except: vec![],
        };
        let cases = [
            (
                Peer::Pods {
                    namespaces: None,
                    pods: pods.clone(),
                },
                "x",
            ),
            (
                Peer::Pods {
                    namespaces: Some(Selector::default()),
                    pods,
                },
                "",
            ),
            (block, ""),
        ];
        for (spec, scope) in cases {
            assert_eq!(peer_key(&spec, "x"), (spec.clone(), scope.to_string()));
        }
    }
}
