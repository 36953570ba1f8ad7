//! The naive ruleset of configuration (c): what iptables-era implementations load for
//! one pod. One rule per (peer address or CIDR, port) of every policy that selects the
//! pod, in policy order, in one chain, then `drop`; the forward chain accepts established
//! traffic and jumps to the pod's chain. Built from nftpol's policy graph, so it enforces
//! exactly the same allows as (b), IPv4 only (ip6tables would hold the rest).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use nftpol::addr::range_text;
use nftpol::graph::{Isolation, PeerRef, PolicyGraph, Ports};

pub const TABLE: &str = "nftpol-naive";
/// Rules of the forward chain a new connection passes before the pod's chain:
/// `ct state established,related accept`, `ip daddr <pod> jump pod`.
pub const BEFORE: usize = 2;

/// A protocol and destination port range to match (`None`: any).
type PortMatch = (Option<u8>, Option<(u16, u16)>);

/// One rule of the pod's chain: every present match must hold, then accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Inclusive IPv4 source range (a pod's address, or an ipBlock).
    pub saddr: Option<(u32, u32)>,
    /// IP protocol number.
    pub proto: Option<u8>,
    /// Inclusive destination port range.
    pub dport: Option<(u16, u16)>,
    /// `namespace/name` of the policy behind it.
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naive {
    pub pod: Ipv4Addr,
    pub rules: Vec<Rule>,
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

impl Rule {
    fn matches(&self, saddr: Ipv4Addr, proto: u8, dport: u16) -> bool {
        let a = u32::from(saddr);
        self.saddr.is_none_or(|(lo, hi)| lo <= a && a <= hi)
            && self.proto.is_none_or(|p| p == proto)
            && self.dport.is_none_or(|(lo, hi)| lo <= dport && dport <= hi)
    }

    /// The rule as `nft` writes it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some((lo, hi)) = self.saddr {
            let _ = write!(out, "ip saddr {} ", range_text(false, lo.into(), hi.into()));
        }
        match (self.proto, self.dport) {
            (Some(p), Some((lo, hi))) if lo == hi => {
                let _ = write!(out, "{} dport {lo} ", proto_name(p));
            }
            (Some(p), Some((lo, hi))) => {
                let _ = write!(out, "{} dport {lo}-{hi} ", proto_name(p));
            }
            (Some(p), None) => {
                let _ = write!(out, "meta l4proto {} ", proto_name(p));
            }
            (None, _) => {}
        }
        out.push_str("accept");
        out
    }
}

/// `lo..=hi` as single addresses when every one is a pod's, else as itself.
fn expand(lo: u32, hi: u32, pod_ips: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let size = u64::from(hi - lo) + 1;
    if pod_ips.range(lo..=hi).count() as u64 == size {
        (lo..=hi).map(|a| (a, a)).collect()
    } else {
        vec![(lo, hi)]
    }
}

impl Naive {
    /// The rules for `pod` (an IPv4 address of it) from its ingress isolation: allows in
    /// policy order (then rule, peer), each expanded to its address ranges × port ranges.
    /// A range made only of `pod_ips` is one rule per pod, as those implementations list
    /// pods; any other range (an ipBlock) is one rule.
    pub fn ingress(
        graph: &PolicyGraph,
        pod: Ipv4Addr,
        iso: &Isolation,
        pod_ips: &BTreeSet<u32>,
    ) -> Naive {
        let mut allows: Vec<_> = iso.allows.iter().collect();
        allows.sort_by(|a, b| a.origin.cmp(&b.origin));
        let mut rules = Vec::new();
        for a in allows {
            let addrs: Vec<Option<(u32, u32)>> = match a.peer {
                PeerRef::Any => vec![None],
                PeerRef::Peer(id) => graph.peers[id]
                    .addrs
                    .v4
                    .ranges()
                    .iter()
                    .flat_map(|&(lo, hi)| expand(lo as u32, hi as u32, pod_ips))
                    .map(Some)
                    .collect(),
            };
            let ports: Vec<PortMatch> = match &a.ports {
                Ports::Any => vec![(None, None)],
                Ports::Only(list) => list
                    .iter()
                    .map(|r| {
                        let all = r.start == 0 && r.end == u16::MAX;
                        (
                            Some(r.protocol.number()),
                            (!all).then_some((r.start, r.end)),
                        )
                    })
                    .collect(),
            };
            for saddr in &addrs {
                for &(proto, dport) in &ports {
                    rules.push(Rule {
                        saddr: *saddr,
                        proto,
                        dport,
                        policy: a.origin.policy.clone(),
                    });
                }
            }
        }
        Naive { pod, rules }
    }

    /// The 1-based position, in the pod's chain, of the rule that accepts this first
    /// packet; `None` when it is dropped.
    pub fn first_match(&self, saddr: Ipv4Addr, proto: u8, dport: u16) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.matches(saddr, proto, dport))
            .map(|i| i + 1)
    }

    /// An `nft -f` script replacing table `ip nftpol-naive` whole.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * self.rules.len() + 512);
        let _ = writeln!(out, "table ip {TABLE}\ndelete table ip {TABLE}");
        let _ = writeln!(out, "table ip {TABLE} {{");
        out.push_str(
            "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n",
        );
        out.push_str("\t\tct state established,related accept\n");
        let _ = writeln!(out, "\t\tip daddr {} jump pod\n\t}}", self.pod);
        out.push_str("\tchain pod {\n");
        for r in &self.rules {
            let _ = writeln!(out, "\t\t{}", r.text());
        }
        out.push_str("\t\tdrop\n\t}\n}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scenario::{build, NAMESPACE, PORT};
    use nftpol::policy::Direction;

    fn rule(saddr: Option<(u32, u32)>, proto: Option<u8>, dport: Option<(u16, u16)>) -> Rule {
        Rule {
            saddr,
            proto,
            dport,
            policy: "x/p".into(),
        }
    }

    #[test]
    fn rule_text() {
        let a = u32::from(Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(
            rule(Some((a, a)), Some(6), Some((80, 80))).text(),
            "ip saddr 10.0.0.5 tcp dport 80 accept"
        );
        let net = u32::from(Ipv4Addr::new(172, 16, 3, 0));
        assert_eq!(
            rule(Some((net, net + 255)), Some(17), Some((53, 54))).text(),
            "ip saddr 172.16.3.0/24 udp dport 53-54 accept"
        );
        assert_eq!(
            rule(None, Some(132), None).text(),
            "meta l4proto sctp accept"
        );
        assert_eq!(rule(None, None, None).text(), "accept");
    }

    #[test]
    fn pod_ranges_are_one_rule_per_pod() {
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        let pods: BTreeSet<u32> = (base + 2..=base + 4).collect();
        assert_eq!(
            expand(base + 2, base + 4, &pods),
            vec![
                (base + 2, base + 2),
                (base + 3, base + 3),
                (base + 4, base + 4)
            ]
        );
        assert_eq!(expand(base, base + 255, &pods), vec![(base, base + 255)]);
    }

    #[test]
    fn render_and_match() {
        let a = u32::from(Ipv4Addr::new(10, 0, 0, 5));
        let n = Naive {
            pod: Ipv4Addr::new(10, 0, 0, 9),
            rules: vec![
                rule(Some((a, a)), Some(6), Some((80, 80))),
                rule(None, Some(6), Some((443, 443))),
            ],
        };
        let text = n.render();
        assert!(text.starts_with("table ip nftpol-naive\ndelete table ip nftpol-naive\n"));
        assert!(text.contains("\t\tip daddr 10.0.0.9 jump pod\n"));
        assert!(text.contains(
            "\t\tip saddr 10.0.0.5 tcp dport 80 accept\n\t\ttcp dport 443 accept\n\t\tdrop\n"
        ));
        assert_eq!(n.first_match(Ipv4Addr::new(10, 0, 0, 5), 6, 80), Some(1));
        assert_eq!(n.first_match(Ipv4Addr::new(10, 0, 0, 6), 6, 443), Some(2));
        assert_eq!(n.first_match(Ipv4Addr::new(10, 0, 0, 6), 6, 80), None);
        assert_eq!(n.first_match(Ipv4Addr::new(10, 0, 0, 5), 17, 80), None);
    }

    #[test]
    fn clients_come_last_in_the_scenario() {
        let s = build(2000, 60, 2);
        let (graph, _) = s.compile().unwrap();
        let server = graph.pod(NAMESPACE, "server").unwrap();
        let iso = server.isolation(Direction::Ingress).unwrap();
        let n = Naive::ingress(&graph, s.server, iso, &s.pod_ips());
        let total = n.rules.len();
        assert!(total > 100, "only {total} rules");
        assert_eq!(n.first_match(s.clients[0], 6, PORT), Some(total - 1));
        assert_eq!(n.first_match(s.clients[1], 6, PORT), Some(total));
        assert_eq!(n.first_match(s.intruder, 6, PORT), None);
        assert!(n.rules.last().unwrap().policy.ends_with("bench-allow-49"));
    }
}
