//! Near misses: for one direction of an isolated pod, what each rule of each isolating
//! policy says about a peer and port, the way a person debugs it: the peer matched but
//! not the port (and which ports the rule allows), or the port but not the peer (and
//! which part of the peer failed).
//!
//! ```text
//! check(pod, dir, other, proto/port)
//!   -> [PolicyCheck { policy, error?, rules: [RuleCheck { peer: PeerCheck, port: PortCheck }] }]
//!        PeerCheck: Any | Matched(from[i]) | Missed([PeerMiss { reasons: [PeerReason] }])
//!        PortCheck: Any | Matched | Missed(the ports the rule allows)
//! ```
//!
//! Small pure functions over the validated rules the index holds, one per part of a
//! peer or port. They read the rules, not the graph's merged peers, because only the rule
//! knows which part failed; the graph stays the verdict, and `explain` checks that a
//! rule matches here exactly when the graph allows (tests/near_misses.rs holds that).

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::graph::describe_peer;
use crate::index::{Index, PodInfo};
use crate::policy::{Direction, Peer, Port, PortMatch, Protocol, Rule};
use crate::text::Escaped;

/// What one isolating policy says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyCheck {
    /// `namespace/name`.
    pub policy: String,
    /// Why the policy could not be compiled; it is then enforced with no rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One per rule of the direction, in the policy's order.
    pub rules: Vec<RuleCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCheck {
    /// Index in `spec.ingress` or `spec.egress`.
    pub rule: usize,
    pub peer: PeerCheck,
    pub port: PortCheck,
}

impl RuleCheck {
    /// Both the peer and the port match: the rule allows the connection.
    pub fn allows(&self) -> bool {
        !matches!(self.peer, PeerCheck::Missed { .. })
            && !matches!(self.port, PortCheck::Missed { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PeerCheck {
    /// The rule has no `from`/`to`: every peer.
    Any,
    /// `from[index]`/`to[index]` holds the peer (the first that does).
    Matched { index: usize },
    /// No peer of the rule holds it; why, for each.
    Missed { peers: Vec<PeerMiss> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerMiss {
    /// Index in `from`/`to`.
    pub index: usize,
    /// The peer in words: `pods {pod=b} in namespace x`.
    pub peer: String,
    /// Every part of the peer that failed.
    pub reasons: Vec<PeerReason>,
}

/// One part of a peer that the other side fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerReason {
    /// A pod selector, and the address is no pod's that policy applies to.
    NotAPod {
        address: IpAddr,
    },
    /// A podSelector alone selects in the policy's namespace; the pod lives elsewhere.
    OtherNamespace {
        pod: String,
        namespace: String,
        policy_namespace: String,
    },
    /// The pod's namespace labels fail the namespaceSelector on these terms.
    NamespaceLabels {
        namespace: String,
        selector: String,
        unmet: Vec<String>,
    },
    /// The pod's labels fail the podSelector on these terms.
    PodLabels {
        pod: String,
        selector: String,
        unmet: Vec<String>,
    },
    OutsideCidr {
        address: IpAddr,
        cidr: String,
    },
    InExcept {
        address: IpAddr,
        cidr: String,
        except: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PortCheck {
    /// The rule has no `ports`: every port of every protocol.
    Any,
    Matched,
    /// None of the rule's ports is the one asked; these are what it allows.
    Missed {
        allowed: Vec<RulePort>,
    },
}

/// One entry of a rule's `ports`, as it applies to this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulePort {
    pub protocol: Protocol,
    /// `80`, `8000-8080`, `*` (every port), or the port's name.
    pub port: String,
    /// A named port: the pod it is looked up on (`None`: the destination is not a pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<Option<String>>,
    /// A named port: its number there (`None`: that pod declares no such port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<Option<u16>>,
}

/// The other side of the connection, as the rules see it.
struct Other<'a> {
    ip: IpAddr,
    /// The pod policy applies to that owns the address, if any.
    pod: Option<&'a PodInfo>,
}

/// The pod that policy applies to that owns `ip`.
fn policy_pod(index: &Index, ip: IpAddr) -> Option<&PodInfo> {
    index
        .pods()
        .find(|p| p.is_policy_pod() && p.ips.contains(&ip))
}

/// What every policy in `isolated_by` says, for direction `dir` of `pod`, about the
/// connection with `other` on `protocol`/`port`.
pub fn check(
    index: &Index,
    pod: &PodInfo,
    isolated_by: &[String],
    dir: Direction,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Vec<PolicyCheck> {
    let other = Other {
        ip: other,
        pod: policy_pod(index, other),
    };
    // Named ports are looked up on the destination: the pod itself for ingress.
    let destination = match dir {
        Direction::Ingress => Some(pod),
        Direction::Egress => other.pod,
    };
    isolated_by
        .iter()
        .map(|id| {
            let (ns, name) = id.split_once('/').unwrap_or(("", id));
            let entry = index.policy(ns, name);
            let rules = entry.and_then(|e| e.policy.rules(dir)).unwrap_or_default();
            PolicyCheck {
                policy: id.clone(),
                error: entry.and_then(|e| e.error.clone()),
                rules: rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RuleCheck {
                        rule: i,
                        peer: check_peers(index, &other, r, ns),
                        port: check_ports(destination, r, protocol, port),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn check_peers(index: &Index, other: &Other, rule: &Rule, policy_ns: &str) -> PeerCheck {
    let Some(peers) = &rule.peers else {
        return PeerCheck::Any;
    };
    let mut missed = Vec::new();
    for (i, spec) in peers.iter().enumerate() {
        let reasons = peer_reasons(index, other, spec, policy_ns);
        if reasons.is_empty() {
            return PeerCheck::Matched { index: i };
        }
        missed.push(PeerMiss {
            index: i,
            peer: describe_peer(spec, policy_ns),
            reasons,
        });
    }
    PeerCheck::Missed { peers: missed }
}

/// Why `other` is not among the peers `spec` selects; empty when it is.
fn peer_reasons(index: &Index, other: &Other, spec: &Peer, policy_ns: &str) -> Vec<PeerReason> {
    match spec {
        Peer::Block { cidr, except } => block_reasons(other.ip, cidr, except),
        Peer::Pods { namespaces, pods } => {
            let Some(p) = other.pod else {
                return vec![PeerReason::NotAPod { address: other.ip }];
            };
            let mut reasons = Vec::new();
            match namespaces {
                None if p.namespace != policy_ns => reasons.push(PeerReason::OtherNamespace {
                    pod: format!("{}/{}", p.namespace, p.name),
                    namespace: p.namespace.clone(),
                    policy_namespace: policy_ns.to_string(),
                }),
                None => {}
                Some(sel) => {
                    let unmet = sel.unmet(&index.effective_labels(&p.namespace));
                    if !unmet.is_empty() {
                        reasons.push(PeerReason::NamespaceLabels {
                            namespace: p.namespace.clone(),
                            selector: sel.to_string(),
                            unmet,
                        });
                    }
                }
            }
            let unmet = pods.unmet(&p.labels);
            if !unmet.is_empty() {
                reasons.push(PeerReason::PodLabels {
                    pod: format!("{}/{}", p.namespace, p.name),
                    selector: pods.to_string(),
                    unmet,
                });
            }
            reasons
        }
    }
}

fn block_reasons(ip: IpAddr, cidr: &ipnet::IpNet, except: &[ipnet::IpNet]) -> Vec<PeerReason> {
    if !cidr.contains(&ip) {
        return vec![PeerReason::OutsideCidr {
            address: ip,
            cidr: cidr.to_string(),
        }];
    }
    except
        .iter()
        .filter(|e| e.contains(&ip))
        .map(|e| PeerReason::InExcept {
            address: ip,
            cidr: cidr.to_string(),
            except: e.to_string(),
        })
        .collect()
}

fn check_ports(
    destination: Option<&PodInfo>,
    rule: &Rule,
    protocol: Protocol,
    port: u16,
) -> PortCheck {
    let Some(ports) = &rule.ports else {
        return PortCheck::Any;
    };
    let resolved: Vec<RulePort> = ports.iter().map(|p| rule_port(destination, p)).collect();
    if ports
        .iter()
        .zip(&resolved)
        .any(|(p, r)| port_matches(p, r, protocol, port))
    {
        PortCheck::Matched
    } else {
        PortCheck::Missed { allowed: resolved }
    }
}

/// A rule port with its name, if any, looked up on the destination pod.
fn rule_port(destination: Option<&PodInfo>, p: &Port) -> RulePort {
    let (port, on, number) = match &p.port {
        PortMatch::Any => ("*".to_string(), None, None),
        PortMatch::Range(a, b) if a == b => (a.to_string(), None, None),
        PortMatch::Range(a, b) => (format!("{a}-{b}"), None, None),
        PortMatch::Name(n) => {
            let number = destination.and_then(|d| {
                d.ports
                    .iter()
                    .find(|np| np.name == *n && np.protocol == p.protocol)
                    .map(|np| np.port)
            });
            let on = destination.map(|d| format!("{}/{}", d.namespace, d.name));
            (n.clone(), Some(on), Some(number))
        }
    };
    RulePort {
        protocol: p.protocol,
        port,
        on,
        number,
    }
}

fn port_matches(p: &Port, resolved: &RulePort, protocol: Protocol, port: u16) -> bool {
    p.protocol == protocol
        && match &p.port {
            PortMatch::Any => true,
            PortMatch::Range(a, b) => (*a..=*b).contains(&port),
            PortMatch::Name(_) => resolved.number == Some(Some(port)),
        }
}

// === text ===

impl fmt::Display for RulePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.on, &self.number) {
            (Some(Some(pod)), Some(Some(n))) => {
                let pod = Escaped(pod);
                write!(f, "{}/{:?} (= {n} on {pod})", self.protocol, self.port)
            }
            (Some(Some(pod)), _) => {
                let pod = Escaped(pod);
                write!(
                    f,
                    "{}/{:?} (not declared by {pod})",
                    self.protocol, self.port
                )
            }
            (Some(None), _) => write!(
                f,
                "{}/{:?} (the destination is not a pod, so it has no named ports)",
                self.protocol, self.port
            ),
            _ => write!(f, "{}/{}", self.protocol, self.port),
        }
    }
}

impl fmt::Display for PeerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerReason::NotAPod { address } => {
                write!(f, "{address} is not a pod's address (selectors match pods only)")
            }
            PeerReason::OtherNamespace {
                pod,
                namespace,
                policy_namespace,
            } => write!(
                f,
                "pod {pod} is in namespace {namespace}; a podSelector alone selects pods of {policy_namespace}"
            ),
            PeerReason::NamespaceLabels {
                namespace,
                selector,
                unmet,
            } => write!(
                f,
                "namespace {namespace}'s labels do not match namespaceSelector {{{selector}}} (unmet: {})",
                unmet.join(", ")
            ),
            PeerReason::PodLabels {
                pod,
                selector,
                unmet,
            } => write!(
                f,
                "pod {pod}'s labels do not match podSelector {{{selector}}} (unmet: {})",
                unmet.join(", ")
            ),
            PeerReason::OutsideCidr { address, cidr } => {
                write!(f, "{address} is outside ipBlock cidr {cidr}")
            }
            PeerReason::InExcept {
                address,
                cidr,
                except,
            } => write!(f, "{address} is inside cidr {cidr} but in its except {except}"),
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes one policy's checks, indented by `indent`, for a denied direction.
pub fn write_policy(
    f: &mut fmt::Formatter<'_>,
    indent: &str,
    dir: Direction,
    c: &PolicyCheck,
) -> fmt::Result {
    let peers = match dir {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    if let Some(e) = &c.error {
        writeln!(
            f,
            "{indent}{}: could not be compiled, enforced with no rules: {}",
            Escaped(&c.policy),
            Escaped(e)
        )?;
        return Ok(());
    }
    if c.rules.is_empty() {
        return writeln!(
            f,
            "{indent}{}: no {dir} rules, allows nothing",
            Escaped(&c.policy)
        );
    }
    for r in &c.rules {
        write!(f, "{indent}{} {dir}[{}]: ", Escaped(&c.policy), r.rule)?;
        let peer = match &r.peer {
            PeerCheck::Any => format!("peer matches (every {peers})"),
            PeerCheck::Matched { index } => format!("peer matches ({peers}[{index}])"),
            PeerCheck::Missed { .. } => "peer does not match".into(),
        };
        let port = match &r.port {
            PortCheck::Any => "port matches (every port)".into(),
            PortCheck::Matched => "port matches".into(),
            PortCheck::Missed { allowed } => {
                format!("port does not match: it allows {}", list(allowed))
            }
        };
        writeln!(f, "{peer}; {port}")?;
        if let PeerCheck::Missed { peers: missed } = &r.peer {
            for m in missed {
                let reasons: Vec<String> = m.reasons.iter().map(|r| r.to_string()).collect();
                writeln!(
                    f,
                    "{indent}  {peers}[{}] {}: {}",
                    m.index,
                    Escaped(&m.peer),
                    Escaped(&reasons.join("; "))
                )?;
            }
        }
    }
    Ok(())
}

/// A ClusterNetworkPolicy tier rule that was checked before the tier's decision (or all
/// of them, when none decided) and whose peer holds the other side but whose ports do
/// not cover the connection: the near miss a person looks for first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierMiss {
    /// The rule, as policy-assistant names it.
    pub rule: String,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    /// What the rule covers, as the graph writes ports: `tcp/80`, `udp/1000-2000`.
    pub ports: Vec<String>,
}

impl fmt::Display for TierMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = if self.ports.is_empty() {
            "no port (its named port resolves to nothing here)".to_string()
        } else {
            self.ports.join(", ")
        };
        write!(
            f,
            "{} ({}) holds the peer, but only for {}",
            Escaped(&self.rule),
            self.action,
            Escaped(&ports)
        )
    }
}

/// The near misses of one tier, for a connection with `other` on `protocol`/`port`:
/// rules before the first matching one whose peer holds `other` but not the port.
pub fn tier_misses(
    graph: &crate::graph::PolicyGraph,
    rules: &crate::graph::tiers::TierRules,
    other: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Vec<TierMiss> {
    let mut out: Vec<TierMiss> = Vec::new();
    for r in &rules.rules {
        let peer = graph.peer_contains(r.peer, other);
        if peer && r.ports.contains(protocol, port) {
            break;
        }
        let crate::graph::Ports::Only(list) = &r.ports else {
            continue;
        };
        if !peer {
            continue;
        }
        let rule = r.origin.to_string();
        let ports: Vec<String> = list.iter().map(|p| p.to_string()).collect();
        // A rule with several port entries for one peer shows once.
        match out.iter_mut().find(|m| m.rule == rule) {
            Some(m) => m.ports.extend(ports),
            None => out.push(TierMiss {
                rule,
                action: r.action.name().into(),
                ports,
            }),
        }
    }
    out
}
