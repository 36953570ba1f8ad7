//! How the policy graph reads to a person: `Display` for the graph and its parts
//! (`nftpol graph`, test failures) and [`describe_peer`], the words that name a peer in
//! rule comments and `explain`. Must not decide anything: it prints what the graph holds.
//! Object strings (names, descriptions) are escaped ([`Escaped`]): one line stays one.

use std::fmt;

use super::tiers::PodTiers;
use super::{Origin, PeerRef, PolicyGraph, PortRange, Ports};
use crate::cnp::Tier;
use crate::fqdn::facts::{Listing, Seen};
use crate::policy::{Direction, Peer};
use crate::text::Escaped;

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == 0 && self.end == u16::MAX {
            write!(f, "{}/*", self.protocol)
        } else if self.start == self.end {
            write!(f, "{}/{}", self.protocol, self.start)
        } else {
            write!(f, "{}/{}-{}", self.protocol, self.start, self.end)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = match self.direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        write!(
            f,
            "{} {}[{}]",
            Escaped(&self.policy),
            self.direction,
            self.rule
        )?;
        if let Some(p) = self.peer {
            write!(f, ".{list}[{p}]")?;
        }
        if let Some(n) = &self.port_name {
            write!(f, " port {n:?}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PolicyGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_graph(f, self, None)
    }
}

/// The graph's text with, under each `domainNames` rule, the addresses `learned` holds
/// for it (`graph --resolved`, `graph --learned`), or `learned: none`.
pub struct WithLearned<'a> {
    pub graph: &'a PolicyGraph,
    pub learned: &'a Listing,
}

impl fmt::Display for WithLearned<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_graph(f, self.graph, Some(self.learned))
    }
}

fn write_graph(
    f: &mut fmt::Formatter<'_>,
    g: &PolicyGraph,
    learned: Option<&Listing>,
) -> fmt::Result {
    for (i, p) in g.peers.iter().enumerate() {
        writeln!(f, "peer {i}: {}", Escaped(&p.description))?;
    }
    for pod in g.pods.values() {
        writeln!(f, "pod {}:", Escaped(&pod.id()))?;
        write_view(f, pod, "  ", learned)?;
        if let Some(audited) = &pod.audited {
            writeln!(f, "  audited (nftpol.io/mode: audit), as it would be:")?;
            write_view(f, audited, "    ", learned)?;
        }
    }
    Ok(())
}

/// One view of a pod: its isolation and allows per direction, then its tiers.
fn write_view(
    f: &mut fmt::Formatter<'_>,
    pod: &super::PodNode,
    indent: &str,
    learned: Option<&Listing>,
) -> fmt::Result {
    for dir in [Direction::Ingress, Direction::Egress] {
        match pod.isolation(dir) {
            None => writeln!(f, "{indent}{dir}: not isolated")?,
            Some(iso) => {
                let by = iso.isolated_by.join(", ");
                writeln!(f, "{indent}{dir}: isolated by {}", Escaped(&by))?;
                for a in &iso.allows {
                    let peer = match a.peer {
                        PeerRef::Any => "any".to_string(),
                        PeerRef::Peer(id) => format!("peer {id}"),
                    };
                    let ports = match &a.ports {
                        Ports::Any => "any port".to_string(),
                        Ports::Only(l) => l
                            .iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    };
                    writeln!(f, "{indent}  allow {peer} {ports} <- {}", a.origin)?;
                }
            }
        }
    }
    write_tiers(f, &pod.tiers, indent, learned)
}

/// A peer of a policy as a person would say it: `pods {app=db} in namespaces {team=a}`.
pub fn describe_peer(spec: &Peer, policy_ns: &str) -> String {
    match spec {
        Peer::Pods {
            namespaces: None,
            pods,
        } => format!("pods {{{pods}}} in namespace {policy_ns}"),
        Peer::Pods {
            namespaces: Some(ns),
            pods,
        } => format!("pods {{{pods}}} in namespaces {{{ns}}}"),
        Peer::Block { cidr, except } if except.is_empty() => format!("ipBlock {cidr}"),
        Peer::Block { cidr, except } => {
            let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
            format!("ipBlock {cidr} except {}", ex.join(", "))
        }
    }
}

/// A pod's tiers, only when a ClusterNetworkPolicy selects it (so that the text of a
/// NetworkPolicy-only graph stays what it was).
fn write_tiers(
    f: &mut std::fmt::Formatter<'_>,
    tiers: &PodTiers,
    indent: &str,
    learned: Option<&Listing>,
) -> std::fmt::Result {
    for dir in [Direction::Ingress, Direction::Egress] {
        let side = tiers.side(dir);
        for tier in [Tier::Admin, Tier::Baseline] {
            let rules = side.tier(tier);
            if rules.is_empty() {
                continue;
            }
            let policies = rules.policies.join(", ");
            writeln!(
                f,
                "{indent}{dir} {tier}: {}",
                crate::text::Escaped(&policies)
            )?;
            for (i, r) in rules.rules.iter().enumerate() {
                write_domains(f, rules, i..=i, indent, learned)?;
                let action = r.action.name().to_ascii_lowercase();
                let (peer, ports) = (peer_text(r.peer), ports_text(&r.ports));
                let origin = r.origin.to_string();
                let origin = crate::text::Escaped(&origin);
                writeln!(f, "{indent}  {action} {peer} {ports} <- {origin}")?;
            }
            write_domains(f, rules, rules.rules.len()..=usize::MAX, indent, learned)?;
        }
    }
    Ok(())
}

/// The `domainNames` rules whose place is in `at`, in their place among the rules, each
/// with the addresses `learned` holds for it when given.
fn write_domains(
    f: &mut std::fmt::Formatter<'_>,
    rules: &super::tiers::TierRules,
    at: std::ops::RangeInclusive<usize>,
    indent: &str,
    learned: Option<&Listing>,
) -> std::fmt::Result {
    for d in rules.domains.iter().filter(|d| at.contains(&d.position)) {
        let names = d.patterns.join(", ");
        let origin = d.origin.to_string();
        writeln!(
            f,
            "{indent}  accept domainNames {} {} (addresses learned at run time) <- {}",
            crate::text::Escaped(&names),
            ports_text(&d.ports),
            crate::text::Escaped(&origin)
        )?;
        if let Some(learned) = learned {
            write_learned(f, learned, &d.origin, indent)?;
        }
    }
    Ok(())
}

/// The addresses of one `domainNames` rule, one a line, under it.
fn write_learned(
    f: &mut std::fmt::Formatter<'_>,
    learned: &Listing,
    origin: &super::tiers::TierOrigin,
    indent: &str,
) -> std::fmt::Result {
    let mut none = true;
    for (addr, seen) in learned.rule(&origin.policy, origin.rule.unwrap_or(0)) {
        none = false;
        match seen {
            Seen::Resolved { name } => {
                writeln!(f, "{indent}    learned: {addr} from {}", Escaped(name))?
            }
            Seen::Kernel { left } => {
                let left = match left {
                    Some(t) => format!("{}s left", t.as_secs()),
                    None => "no timeout".to_string(),
                };
                writeln!(
                    f,
                    "{indent}    learned: {addr} from an unknown name (the kernel keeps none), {left}"
                )?
            }
        }
    }
    if none {
        writeln!(f, "{indent}    learned: none")?;
    }
    Ok(())
}

fn peer_text(peer: PeerRef) -> String {
    match peer {
        PeerRef::Any => "any".to_string(),
        PeerRef::Peer(id) => format!("peer {id}"),
    }
}

fn ports_text(ports: &Ports) -> String {
    match ports {
        Ports::Any => "any port".to_string(),
        Ports::Only(l) if l.is_empty() => "no port".to_string(),
        Ports::Only(l) => l
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}
