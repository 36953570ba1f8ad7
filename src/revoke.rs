//! Revoked means revoked: which conntrack entries a new model no longer allows.
//!
//! ```text
//! batch applied --> Scope (touched local pods' addresses, gone addresses, host addresses)
//!                     |
//! conntrack entries --+--> judge(model, scope, flow) --> Keep | Cut
//! ```
//!
//! Every base chain accepts `ct state established,related` first, so a connection that
//! was allowed when it opened would outlive the policy that allowed it. After each batch
//! the controller dumps the entries of the pods the batch touched and deletes those this
//! module judges revoked. A flow is judged exactly as its first packet would be judged
//! now, by the evaluator of the model the kernel holds ([`crate::ruleset::eval`]): source
//! as the original direction sent it, destination as the reply tuple shows it (after
//! kube-proxy's DNAT: the reply comes *from* the real backend). Before its entry goes, a
//! cut connection is held ([`Flow::held`], `RuleKind::HeldDrop`), so that a packet of it
//! still in flight cannot open a new entry that carries it on.
//!
//! Owns: the judge, the scope of a batch and the memory of which address each local pod
//! had (a pod that is gone takes its connections with it, so a new pod reusing the
//! address inherits none). Must not: talk to the kernel (that is
//! `netlink::conntrack`), or know about Kubernetes beyond the index's pod records.

use crate::index::PodKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::index::Index;
use crate::ruleset::eval::{forward_accepts, input_accepts, Packet};
use crate::ruleset::Ruleset;

/// IP protocol numbers whose conntrack tuples carry ports (`th dport` reads them).
const PORTED_PROTOCOLS: [u8; 4] = [6, 17, 132, 136]; // TCP, UDP, SCTP, UDP-Lite

/// One direction of a conntrack entry, as the kernel's tuple names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 for protocols without ports.
    pub sport: u16,
    pub dport: u16,
}

/// A tracked connection: its original and reply tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub l4proto: u8,
    pub orig: Tuple,
    pub reply: Tuple,
}

impl Flow {
    /// The first packet as the filter hooks saw it: the client's address, and the
    /// server's address and port after destination NAT (the reply tuple's source).
    pub fn first_packet(&self) -> Packet {
        Packet {
            saddr: self.orig.src,
            daddr: self.reply.src,
            l4proto: self.l4proto,
            dport: if PORTED_PROTOCOLS.contains(&self.l4proto) {
                self.reply.sport
            } else {
                0
            },
        }
    }

    /// Both directions of the flow as the forward hook sees its packets, for holding it
    /// once cut (`RuleKind::HeldDrop`): the client's packets go to the real server (DNAT
    /// is done by then, SNAT is not yet), and the server's come back to the client (the
    /// reply's SNAT is undone by then, its DNAT not yet). None for a protocol without
    /// ports, whose packets no held 5-tuple could name.
    pub fn held(&self) -> Option<[Held; 2]> {
        let (client, server) = (self.orig.src, self.reply.src);
        if !PORTED_PROTOCOLS.contains(&self.l4proto) || client.is_ipv4() != server.is_ipv4() {
            return None;
        }
        let (cport, sport) = (self.orig.sport, self.reply.sport);
        let one = |src, dst, sport, dport| Held {
            l4proto: self.l4proto,
            src,
            dst,
            sport,
            dport,
        };
        Some([
            one(client, server, cport, sport),
            one(server, client, sport, cport),
        ])
    }

    /// The two endpoints a filter hook saw: the client and the (real) server.
    pub fn endpoints(&self) -> [IpAddr; 2] {
        [self.orig.src, self.reply.src]
    }
}

/// One direction of a cut connection, as a packet of it reads: the key of a held set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Held {
    pub l4proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// Which entries a batch puts to the judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Addresses of the local pods the batch touched (every local pod on a full sync):
    /// their entries are judged against the new model.
    pub judge: BTreeSet<IpAddr>,
    /// Addresses a local pod had and no longer has (deleted, readdressed, moved away,
    /// finished): every entry involving them is cut.
    pub gone: BTreeSet<IpAddr>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.judge.is_empty() && self.gone.is_empty()
    }

    /// Every address whose entries must be looked at (what the dump asks for).
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.judge.union(&self.gone).copied().collect()
    }
}

/// What to do with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Involves no address of the scope: not ours to judge.
    Untouched,
    /// The new model still allows its first packet (on the forward hook, or on the input
    /// hook for a pod's connection to this node), or it is the node's own traffic
    /// (output hook), always allowed.
    Keep,
    /// The new model refuses its first packet.
    Revoked,
    /// A pod it belonged to is gone.
    Gone,
}

impl Decision {
    pub fn cut(self) -> bool {
        matches!(self, Decision::Revoked | Decision::Gone)
    }
}

/// Judges one entry. `host` holds the node's own addresses: traffic from them takes the
/// output hook and is always allowed (kept unless a pod of it is gone); traffic from a
/// pod to them takes the input hook, judged by the model's input chains (allowed when
/// the pod has no ClusterNetworkPolicy egress tiers).
pub fn judge(model: &Ruleset, scope: &Scope, host: &BTreeSet<IpAddr>, flow: &Flow) -> Decision {
    Judge::new(model, scope, host).decide(flow)
}

/// [`judge`] over many entries of one batch, remembering the verdict of each distinct
/// first packet: the entries of a connection pool or of many clients of one service port
/// differ only in the client's port, which no rule reads, so each such group is walked
/// through the model once.
pub struct Judge<'a> {
    model: &'a Ruleset,
    scope: &'a Scope,
    host: &'a BTreeSet<IpAddr>,
    verdicts: HashMap<(IpAddr, IpAddr, u8, u16), bool>,
}

impl<'a> Judge<'a> {
    pub fn new(model: &'a Ruleset, scope: &'a Scope, host: &'a BTreeSet<IpAddr>) -> Self {
        Judge {
            model,
            scope,
            host,
            verdicts: HashMap::new(),
        }
    }

    /// The decision for one entry (see [`judge`]).
    pub fn decide(&mut self, flow: &Flow) -> Decision {
        let ends = flow.endpoints();
        if ends.iter().any(|a| self.scope.gone.contains(a)) {
            return Decision::Gone;
        }
        if !ends.iter().any(|a| self.scope.judge.contains(a)) {
            return Decision::Untouched;
        }
        let p = flow.first_packet();
        // A pod's connection to this node takes the input hook, which judges it by the
        // pod's ClusterNetworkPolicy egress tiers (and accepts it when it has none); the
        // node's own connections to anything take the output hook and are allowed.
        let to_node = self.host.contains(&p.daddr) && !self.host.contains(&p.saddr);
        if !to_node && ends.iter().any(|a| self.host.contains(a)) {
            return Decision::Keep;
        }
        let model = self.model;
        let accepted = *self
            .verdicts
            .entry((p.saddr, p.daddr, p.l4proto, p.dport))
            .or_insert_with(|| {
                let walked = match to_node {
                    true => input_accepts(model, &p),
                    false => forward_accepts(model, &p),
                };
                // A model that cannot be walked is not one the kernel holds (a built
                // model references only what it has): fail closed, and say so.
                walked.unwrap_or_else(|error| {
                    tracing::error!(%error, ?p, "cannot judge a connection; cutting it");
                    false
                })
            });
        if accepted {
            Decision::Keep
        } else {
            Decision::Revoked
        }
    }
}

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

    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;
    const A: &str = "10.244.1.10";
    const B: &str = "10.244.1.20";
    const C: &str = "10.244.1.30";
    const REMOTE: &str = "10.244.2.40";
    const NODE: &str = "192.168.100.1";
    const VIP: &str = "10.96.0.10";

    fn pod(name: &str, node: &str, ip: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "x", "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
    }

    /// x/a, x/b, x/c on n1 and x/d on n2; b admits only a, on TCP 80; c sends only to b.
    fn index(extra: Vec<Value>) -> Index {
        let mut objects = vec![
            pod("a", "n1", A),
            pod("b", "n1", B),
            pod("c", "n1", C),
            pod("d", "n2", REMOTE),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "b", "namespace": "x"},
                "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                                 "ports": [{"protocol": "TCP", "port": 80}]}]}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "c", "namespace": "x"},
                "spec": {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}}),
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

    /// A flow from `src` to `dst:dport`, answered by `backend:bport` (DNAT when they differ).
    fn flow(proto: u8, src: &str, dst: &str, dport: u16, backend: &str, bport: u16) -> Flow {
        Flow {
            l4proto: proto,
            orig: Tuple {
                src: ip(src),
                dst: ip(dst),
                sport: 40000,
                dport,
            },
            reply: Tuple {
                src: ip(backend),
                dst: ip(src),
                sport: bport,
                dport: 40000,
            },
        }
    }

    fn direct(proto: u8, src: &str, dst: &str, port: u16) -> Flow {
        flow(proto, src, dst, port, dst, port)
    }

    #[test]
    fn judge_table() {
        let index = index(Vec::new());
        let model = crate::compile(&index, Some("n1"));
        let scope = Scope {
            judge: [A, B, C].iter().map(|s| ip(s)).collect(),
            gone: [ip("10.244.1.50")].into(),
        };
        let host: BTreeSet<IpAddr> = [ip(NODE), ip("10.244.1.1")].into();
        use Decision::*;
        let table = [
            ("allowed stays", direct(TCP, A, B, 80), Keep),
            ("source not allowed", direct(TCP, C, B, 80), Revoked),
            ("port not allowed", direct(TCP, A, B, 81), Revoked),
            ("protocol not allowed", direct(UDP, A, B, 80), Revoked),
            ("icmp to an isolated pod", direct(ICMP, A, B, 0), Revoked),
            ("unisolated both ways", direct(TCP, A, C, 9000), Keep),
            ("egress allowed", direct(UDP, C, B, 53), Revoked),
            (
                "egress refused to a remote pod",
                direct(TCP, C, REMOTE, 80),
                Revoked,
            ),
            (
                "remote pod to an open one",
                direct(TCP, REMOTE, A, 80),
                Keep,
            ),
            ("remote pod to b", direct(TCP, REMOTE, B, 80), Revoked),
            // NAT: judged by the backend the reply comes from, on its port.
            (
                "service, allowed backend port",
                flow(TCP, A, VIP, 8080, B, 80),
                Keep,
            ),
            (
                "service, other backend port",
                flow(TCP, A, VIP, 80, B, 81),
                Revoked,
            ),
            (
                "service, client refused",
                flow(TCP, C, VIP, 80, A, 80),
                Revoked,
            ),
            (
                "service, client refused by b",
                flow(TCP, REMOTE, VIP, 80, B, 80),
                Revoked,
            ),
            // The node's own traffic never crosses the forward hook.
            ("node to isolated pod", direct(TCP, NODE, B, 22), Keep),
            (
                "gateway address to isolated pod",
                direct(TCP, "10.244.1.1", B, 8080),
                Keep,
            ),
            ("isolated pod to node", direct(TCP, C, NODE, 10250), Keep),
            // Not about the scope's pods: never touched, even when refused.
            (
                "outside the scope",
                direct(TCP, "10.99.0.1", "10.99.0.2", 80),
                Untouched,
            ),
            (
                "a remote pod's own flow",
                direct(TCP, REMOTE, "10.99.0.2", 80),
                Untouched,
            ),
            // A pod that is gone takes every connection with it.
            (
                "gone, even if allowed",
                direct(TCP, "10.244.1.50", A, 80),
                Gone,
            ),
            (
                "gone as a backend",
                flow(TCP, A, VIP, 80, "10.244.1.50", 80),
                Gone,
            ),
            (
                "gone as a client, host peer",
                direct(TCP, "10.244.1.50", NODE, 80),
                Gone,
            ),
        ];
        let mut memo = Judge::new(&model, &scope, &host);
        for (what, f, want) in table {
            assert_eq!(judge(&model, &scope, &host, &f), want, "{what}: {f:?}");
            assert_eq!(memo.decide(&f), want, "{what} (remembered): {f:?}");
            let mut other_port = f;
            other_port.orig.sport = 1234;
            other_port.reply.dport = 1234;
            assert_eq!(
                memo.decide(&other_port),
                want,
                "{what}, another client port"
            );
            assert_eq!(
                judge(&model, &scope, &host, &f).cut(),
                matches!(want, Revoked | Gone)
            );
        }
    }

    /// A pod's connection to its own node is judged on the input hook: cut when an
    /// egress tier now denies it, kept when NetworkPolicy alone isolates the pod (its
    /// own-node allowance) and for the node's own connections.
    #[test]
    fn a_pod_to_node_flow_is_judged_by_its_egress_tiers() {
        use crate::cnp::{Action, Tier};
        use crate::graph::tiers::{TierOrigin, TierRule};
        use crate::graph::{PeerNode, PeerRef, Ports};
        let mut g = crate::graph::PolicyGraph::build_for(&index(Vec::new()), Some("n1"));
        g.peers.push(PeerNode {
            addrs: crate::addr::AddrSet::from_ips([ip(NODE)]),
            description: "the node".into(),
        });
        let node = PeerRef::Peer(g.peers.len() - 1);
        let a = g.pods.get_mut(&("x".into(), "a".into())).unwrap();
        a.tiers.egress.admin.policies = vec!["no-node".into()];
        a.tiers.egress.admin.rules = vec![TierRule {
            action: Action::Deny,
            peer: node,
            ports: Ports::Any,
            origin: TierOrigin {
                policy: "no-node".into(),
                tier: Tier::Admin,
                priority: 1,
                direction: crate::policy::Direction::Egress,
                rule: Some(0),
                rule_name: None,
                peer: Some(0),
                port_name: None,
            },
        }];
        let model = crate::ruleset::build(&g);
        let scope = Scope {
            judge: [A, B, C].iter().map(|s| ip(s)).collect(),
            gone: BTreeSet::new(),
        };
        let host: BTreeSet<IpAddr> = [ip(NODE)].into();
        use Decision::*;
        for (what, f, want) in [
            ("denied to its node", direct(TCP, A, NODE, 10250), Revoked),
            ("icmp too", direct(ICMP, A, NODE, 0), Revoked),
            (
                "NetworkPolicy only: own node kept",
                direct(TCP, C, NODE, 10250),
                Keep,
            ),
            ("the node's own connection", direct(TCP, NODE, A, 22), Keep),
        ] {
            assert_eq!(judge(&model, &scope, &host, &f), want, "{what}");
        }
    }

    #[test]
    fn judge_agrees_with_a_fresh_first_packet() {
        // The judge is the evaluator itself on the first packet: same verdict for every
        // flow, whichever port and protocol.
        let model = crate::compile(&index(Vec::new()), Some("n1"));
        let scope = Scope {
            judge: [A, B, C].iter().map(|s| ip(s)).collect(),
            gone: BTreeSet::new(),
        };
        for (src, dst) in [(A, B), (B, A), (C, B), (C, A), (REMOTE, B), (A, REMOTE)] {
            for proto in [TCP, UDP, 132] {
                for port in [1, 79, 80, 81, 65535] {
                    let f = direct(proto, src, dst, port);
                    let want = forward_accepts(&model, &f.first_packet()).unwrap();
                    let got = judge(&model, &scope, &BTreeSet::new(), &f);
                    assert_eq!(got == Decision::Keep, want, "{f:?}");
                }
            }
        }
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
