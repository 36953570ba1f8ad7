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
//! Owns: the judge and the scope of a batch. Must not: talk to the kernel (that is
//! `netlink::conntrack`), know about Kubernetes, or remember anything between batches
//! (the controller's revoker remembers which address each local pod had, so that a pod
//! that is gone takes its connections with it).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::flow::Flow;
use crate::fqdn::facts::Learned;
use crate::ruleset::eval::{forward_walk_learned, input_walk_learned, Packet};
use crate::ruleset::Ruleset;

/// The first packet of `flow` as the filter hooks saw it: the client's address, and the
/// server's address and port after destination NAT (the reply tuple's source).
pub fn first_packet(flow: &Flow) -> Packet {
    Packet {
        saddr: flow.orig.src,
        daddr: flow.reply.src,
        l4proto: flow.l4proto,
        dport: flow.server_port(),
    }
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
    /// What the DNS proxy learned for `domainNames` rules (the learned sets' elements,
    /// which the model never holds): without it a connection to a learned address is
    /// judged as if nothing had been learned.
    learned: Option<&'a Learned>,
}

impl<'a> Judge<'a> {
    pub fn new(model: &'a Ruleset, scope: &'a Scope, host: &'a BTreeSet<IpAddr>) -> Self {
        Judge {
            model,
            scope,
            host,
            verdicts: HashMap::new(),
            learned: None,
        }
    }

    /// Judges with `learned` in the learned sets (see the field).
    pub fn with_learned(mut self, learned: &'a Learned) -> Self {
        self.learned = Some(learned);
        self
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
        let p = first_packet(flow);
        // A pod's connection to this node takes the input hook, which judges it by the
        // pod's ClusterNetworkPolicy egress tiers (and accepts it when it has none); the
        // node's own connections to anything take the output hook and are allowed.
        let to_node = self.host.contains(&p.daddr) && !self.host.contains(&p.saddr);
        if !to_node && ends.iter().any(|a| self.host.contains(a)) {
            return Decision::Keep;
        }
        let model = self.model;
        let none = Learned::new();
        let learned = self.learned.unwrap_or(&none);
        let accepted = *self
            .verdicts
            .entry((p.saddr, p.daddr, p.l4proto, p.dport))
            .or_insert_with(|| {
                let walked = match to_node {
                    true => input_walk_learned(model, learned, &p),
                    false => forward_walk_learned(model, learned, &p),
                }
                .map(|w| w.accepted);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Tuple;
    use crate::index::Index;
    use crate::input::object_from_value;
    use crate::ruleset::eval::forward_accepts;
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
                    let want = forward_accepts(&model, &first_packet(&f)).unwrap();
                    let got = judge(&model, &scope, &BTreeSet::new(), &f);
                    assert_eq!(got == Decision::Keep, want, "{f:?}");
                }
            }
        }
    }
}
