//! The revoker's memory: which address each local pod had after the last batch, so that
//! a pod that is gone takes its connections with it (a new pod reusing the address
//! inherits none), and the scope ([`Scope`]) each batch puts to the judge.
//!
//! ```text
//! index + touched pods --Tracker::scope--> Scope { judge, gone } --revoke::Judge--> Keep | Cut
//! ```
//!
//! Owns: the memory between batches. The judging itself is the library's
//! ([`crate::revoke`]), which remembers nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::index::{Index, PodKey};
use crate::revoke::Scope;

/// The local pods' addresses after the last batch: what tells that a pod is gone.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// Local pod -> its addresses when last seen.
    pods: BTreeMap<PodKey, Vec<IpAddr>>,
    /// Address -> the local pod that had it.
    owners: BTreeMap<IpAddr, PodKey>,
}

/// The addresses a pod of `node` is enforced with (none: not a local policy pod).
fn local_addresses(index: &Index, node: &str, key: &PodKey) -> Vec<IpAddr> {
    match index.pod(&key.0, &key.1) {
        Some(p) if p.is_policy_pod() && p.node.as_deref() == Some(node) => p.ips.clone(),
        _ => Vec::new(),
    }
}

impl Tracker {
    /// The scope of a batch that recomputed `touched` (`None`: a full sync, every local
    /// pod), and the memory brought up to date with the index.
    pub fn scope(
        &mut self,
        index: &Index,
        node: &str,
        touched: Option<&BTreeSet<PodKey>>,
    ) -> Scope {
        let keys: BTreeSet<PodKey> = match touched {
            Some(t) => t.clone(),
            None => index
                .pods()
                .filter(|p| p.is_policy_pod() && p.node.as_deref() == Some(node))
                .map(|p| p.key())
                .chain(self.pods.keys().cloned())
                .collect(),
        };
        let mut scope = Scope::default();
        for key in keys {
            let now = local_addresses(index, node, &key);
            let before = self.pods.remove(&key).unwrap_or_default();
            for a in before.iter().filter(|a| !now.contains(a)) {
                scope.gone.insert(*a);
                if self.owners.get(a) == Some(&key) {
                    self.owners.remove(a);
                }
            }
            for a in &now {
                // Another pod held this address: that one is gone, whether or not the
                // batch said so.
                if let Some(old) = self.owners.insert(*a, key.clone()) {
                    if old != key {
                        scope.gone.insert(*a);
                        if let Some(addrs) = self.pods.get_mut(&old) {
                            addrs.retain(|x| x != a);
                        }
                    }
                }
                scope.judge.insert(*a);
            }
            if !now.is_empty() {
                self.pods.insert(key, now);
            }
        }
        scope.judge.retain(|a| !scope.gone.contains(a));
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::object_from_value;
    use serde_json::{json, Value};

    const A: &str = "10.244.1.10";
    const B: &str = "10.244.1.20";
    const C: &str = "10.244.1.30";

    fn pod(name: &str, node: &str, ip: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "x", "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
    }

    /// x/a, x/b, x/c on n1 and x/d on n2.
    fn index(extra: Vec<Value>) -> Index {
        let mut objects = vec![
            pod("a", "n1", A),
            pod("b", "n1", B),
            pod("c", "n1", C),
            pod("d", "n2", "10.244.2.40"),
        ];
        objects.extend(extra);
        let objects = objects
            .into_iter()
            .map(|v| object_from_value(v, "test").unwrap().unwrap())
            .collect();
        Index::from_objects(objects).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tracker_scopes_touched_pods_and_finds_gone_ones() {
        let key = |n: &str| ("x".to_string(), n.to_string());
        let mut t = Tracker::default();
        let first = t.scope(&index(Vec::new()), "n1", None);
        assert_eq!(
            first.judge,
            [ip(A), ip(B), ip(C)].into(),
            "full sync: every local pod"
        );
        assert!(first.gone.is_empty());

        // b deleted: its address is gone; a remote pod is never ours.
        let mut idx = index(Vec::new());
        idx.delete(crate::input::Kind::Pod, Some("x"), "b");
        let s = t.scope(&idx, "n1", Some(&[key("b"), key("d")].into()));
        assert_eq!(s.gone, [ip(B)].into());
        assert!(s.judge.is_empty());

        // A new pod e takes c's address while c's deletion is not in the batch.
        idx.delete(crate::input::Kind::Pod, Some("x"), "c");
        idx.apply(object_from_value(pod("e", "n1", C), "t").unwrap().unwrap())
            .unwrap();
        let s = t.scope(&idx, "n1", Some(&[key("e")].into()));
        assert_eq!(
            s.gone,
            [ip(C)].into(),
            "an address reused: the old owner is gone"
        );
        assert!(
            s.judge.is_empty(),
            "a gone address is cut whole, not judged"
        );

        // Nothing happened to a: judged, nothing gone.
        let s = t.scope(&idx, "n1", Some(&[key("a")].into()));
        assert_eq!((s.judge, s.gone), ([ip(A)].into(), BTreeSet::new()));

        // A full sync after e moved away: e's address is gone.
        let mut moved = idx.clone();
        moved
            .apply(object_from_value(pod("e", "n2", C), "t").unwrap().unwrap())
            .unwrap();
        let s = t.scope(&moved, "n1", None);
        assert_eq!(s.gone, [ip(C)].into());
        assert_eq!(s.judge, [ip(A)].into());
    }
}
