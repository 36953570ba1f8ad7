//! ClusterNetworkPolicy `domainNames` rules in a pod's egress chain, and the DNS steering
//! that fills their learned sets.
//!
//! ```text
//! chain egress/<ns>/<pod>
//!   Admin Accept lookups                                   (tier_chain)
//!   for each domainNames rule k, in evaluation order:
//!     ip daddr @…/fqdn<k>-any4 ip daddr @fqdn/<policy>/<rule>/4 return
//!     ip daddr . meta l4proto . th dport @…/fqdn<k>-ports4 ip daddr @fqdn/<policy>/<rule>/4 return
//!     (the same for ip6)
//!   Admin Deny lookups, NetworkPolicy, Baseline            (as before)
//! chain dns-steer (hook prerouting priority mangle), with Options::dns:
//!   ip saddr @dns/pods4 ip daddr @dns/servers4 udp dport @dns/alive
//!     tproxy ip to :<port> meta mark set … accept
//!   (tcp, its SYN only; ip6)
//! chain dns-held (hook prerouting priority dstnat + 10):
//!   meta l4proto tcp socket transparent 1 meta mark set meta mark | <mark> accept
//! chain input: … meta mark & <mark> == <mark> ip saddr vmap @egress4 (ip6) before the
//!   input maps: a steered query is judged by its pod's egress chain
//! ```
//!
//! **First match wins, kept by a region, not by splitting the tier.** Rule k admits a
//! learned address exactly where k is the first Admin rule to match: on k's ports, at
//! addresses no earlier Admin rule (any action, Pass included) claims there. That place
//! is computed at compile time with the tier's own region arithmetic ([`super::regions`]):
//! the earlier rules as claims only (Pass), then an Accept of every address on k's ports;
//! its Accept region is k's "open" region (`fqdn<k>-*` sets, a pod's own). The learned
//! lookup then needs both: destination in the open region and in k's learned set. As a
//! domain rule only accepts, its lookups may sit anywhere after the Admin Accept lookups
//! and before the Admin Deny lookups: what an earlier rule accepts is accepted already,
//! what an earlier rule denies or passes is outside the open region, and what k does not
//! admit falls through to the Deny lookups, NetworkPolicy and Baseline unchanged.
//! Splitting the Admin lookups at k instead would need the earlier Pass regions to skip
//! the rest of the tier (a jump per split) and would change the chains of every pod with
//! such a rule whenever rules move; this adds four lookups per domain rule and no chain.
//! Pods without a domain rule get nothing new (byte-identical chains).
//!
//! **Whose elements.** The learned sets (`fqdn/<policy>/<rule>/4|6`, [`SetRole::Learned`])
//! and `dns/alive` ([`SetRole::DnsAlive`]) are declared empty with `flags timeout`: their
//! elements are the DNS proxy's and the controller's, the diff never compares them, and a
//! set stays while some chain looks it up. `dns/pods4|6` ([`SetRole::DnsPods`]) are the
//! model's: the addresses of the pods that have domain rules.
//!
//! Owns these objects only; where the lookups go in the chain is `tier_chain`'s.

use std::rc::Rc;

use super::memo::Memo;
use super::model::*;
use super::names;
use super::np_elements::one_field_elements;
use super::options::Options;
use super::regions::{Lookups, RegionRule, Regions};
use super::roles::SetKind;
use crate::addr::AddrSet;
use crate::cnp::Action;
use crate::graph::tiers::{DomainEntry, TierRules};
use crate::graph::{PeerRef, PodNode, PolicyGraph, Ports};
use crate::policy::{Direction, Protocol};

/// The open sets of one domain rule, in the order of its lookups.
const KINDS: [SetKind; 4] = [
    SetKind::Any4,
    SetKind::Ports4,
    SetKind::Any6,
    SetKind::Ports6,
];

/// What a domain rule's open region depends on: the earlier rules' peers and ports, and
/// its own ports.
type OpenKey = (Vec<(PeerRef, Ports)>, Ports);

/// Open regions computed once per build for every pod with the same rules before them.
#[derive(Default)]
pub(super) struct Cache(Memo<OpenKey, [Lookups; 2]>);

impl Cache {
    fn open(&self, graph: &PolicyGraph, tier: &TierRules, d: &DomainEntry) -> Rc<[Lookups; 2]> {
        let before = &tier.rules[..d.position];
        let key: OpenKey = (
            before.iter().map(|r| (r.peer, r.ports.clone())).collect(),
            d.ports.clone(),
        );
        self.0.get_or_compute(key, || {
            let everything = AddrSet::everything();
            let mut list: Vec<RegionRule> = before
                .iter()
                .map(|r| RegionRule {
                    // A claim only: whatever it decides, it decides before k.
                    action: Action::Pass,
                    addrs: match r.peer {
                        PeerRef::Any => &everything,
                        PeerRef::Peer(id) => &graph.peers[id].addrs,
                    },
                    ports: &r.ports,
                })
                .collect();
            list.push(RegionRule {
                action: Action::Accept,
                addrs: &everything,
                ports: &d.ports,
            });
            let r = Regions::new(&list);
            [r.v4.accept(), r.v6.accept()]
        })
    }
}

/// The domain rules of `pod`'s egress chain (Admin tier, enforced view).
fn domains(pod: &PodNode) -> &[DomainEntry] {
    &pod.tiers.egress.admin.domains
}

/// Whether `pod` has `domainNames` rules, enforced or audited (its DNS is steered to the
/// proxy: an audited rule learns as an enforced one does, so that what its records say
/// it would admit is what it will admit once enforced).
pub(super) fn has_domains(pod: &PodNode) -> bool {
    !domains(pod).is_empty()
        || pod
            .audited
            .as_deref()
            .is_some_and(|a| !domains(a).is_empty())
}

fn learned_name(d: &DomainEntry, v6: bool) -> String {
    names::learned_set(&d.origin.policy, d.origin.rule.unwrap_or(0), v6)
}

/// A learned set: empty, `flags timeout` with no default (each element has its own).
fn learned_set(d: &DomainEntry, v6: bool) -> Set {
    let rule = d.origin.rule.unwrap_or(0);
    Set {
        name: learned_name(d, v6),
        role: SetRole::Learned,
        key: vec![if v6 {
            KeyType::Ipv6Addr
        } else {
            KeyType::Ipv4Addr
        }],
        interval: false,
        comment: Some(names::comment(&format!(
            "addresses learned from DNS for {} egress[{rule}] (the DNS proxy's)",
            d.origin.policy
        ))),
        elements: Vec::new(),
        timeout: Some(0),
        counter: false,
    }
}

/// The sets of `pod`'s domain rules: its open sets, and the learned sets it looks up
/// (shared: every pod the rule's policy selects gives them, the build keeps one).
/// `audited`: `pod` is a pod's audited view, whose open sets are its own.
pub(super) fn sets(graph: &PolicyGraph, cache: &Cache, pod: &PodNode, audited: bool) -> Vec<Set> {
    let tier = &pod.tiers.egress.admin;
    let mut out = Vec::new();
    for (i, d) in tier.domains.iter().enumerate() {
        let open = cache.open(graph, tier, d);
        for kind in KINDS {
            let (l, addr) = match kind.v6() {
                false => (&open[0], KeyType::Ipv4Addr),
                true => (&open[1], KeyType::Ipv6Addr),
            };
            let (key, elements, on) = match kind.with_ports() {
                false => (
                    vec![addr],
                    one_field_elements(kind.v6(), &l.any),
                    "on any port",
                ),
                true => (
                    vec![addr, KeyType::InetProto, KeyType::InetService],
                    l.boxes.clone(),
                    "on listed ports",
                ),
            };
            out.push(Set {
                name: names::domain_open_set(&pod.namespace, &pod.name, i, kind, audited),
                role: SetRole::DomainOpen(kind),
                key,
                interval: true,
                comment: Some(names::comment(&format!(
                    "pod {} egress: where its domainNames rule {i} decides, {on}",
                    pod.id()
                ))),
                elements,
                timeout: None,
                counter: false,
            });
        }
        out.push(learned_set(d, false));
        out.push(learned_set(d, true));
    }
    out
}

/// The lookups of `pod`'s domain rules, each doing `allow` (logged to `log`), placed
/// after the Admin Accept lookups and before the Admin Deny lookups (`audited` as for
/// [`sets`]).
pub(super) fn rules(
    pod: &PodNode,
    allow: &Verdict,
    log: &Option<LogTarget>,
    audited: bool,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, d) in domains(pod).iter().enumerate() {
        let comment = names::comment(&format!(
            "{}: learned from domainNames {}",
            d.origin,
            d.patterns.join(", ")
        ));
        for kind in KINDS {
            let family = match kind.v6() {
                false => IpFamily::V4,
                true => IpFamily::V6,
            };
            let key = match kind.with_ports() {
                false => LookupKey::Addr,
                true => LookupKey::Ports { ranges: true },
            };
            out.push(Rule::with_comment(
                RuleKind::LearnedLookup {
                    family,
                    key,
                    open: names::domain_open_set(&pod.namespace, &pod.name, i, kind, audited),
                    learned: learned_name(d, kind.v6()),
                    verdict: allow.clone(),
                    log: log.clone(),
                },
                comment.clone(),
            ));
        }
    }
    out
}

/// The chain that keeps a TCP connection the proxy holds with it. After kube-proxy's
/// DNAT (`dstnat`, -100): the proxy's socket has the address DNAT chose, and a lookup
/// before it (by the Service address) would find no socket; the SYN's tproxy would then
/// hand the connection's later packets to the listener, which resets them.
fn held_chain(s: &super::options::DnsSteering) -> Chain {
    Chain {
        name: names::CHAIN_DNS_HELD.into(),
        base: Some(BaseChain {
            hook: Hook::Prerouting,
            priority: -90,
            policy: Verdict::Accept,
        }),
        comment: Some("TCP connections the DNS proxy holds stay with it".into()),
        rules: vec![Rule::new(RuleKind::SteerTransparent { mark: s.mark })],
    }
}

/// The steering chain's rules.
fn steer_chain(s: &super::options::DnsSteering) -> Chain {
    let mut rules = Vec::new();
    for (v6, family) in [(false, IpFamily::V4), (true, IpFamily::V6)] {
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            rules.push(Rule::new(RuleKind::SteerDns {
                family,
                protocol,
                pods: names::DNS_POD_SETS[v6 as usize].into(),
                servers: names::DNS_SERVER_SETS[v6 as usize].into(),
                alive: names::DNS_ALIVE_SET.into(),
                port: s.proxy_port,
                mark: s.mark,
            }));
        }
    }
    Chain {
        name: names::CHAIN_DNS_STEER.into(),
        base: Some(BaseChain {
            hook: Hook::Prerouting,
            priority: -150,
            policy: Verdict::Accept,
        }),
        comment: Some(
            "DNS of pods with domainNames rules -> the DNS proxy, while it is alive".into(),
        ),
        rules,
    }
}

/// The steering chain's sets: the pods whose DNS is steered, the trusted servers, and
/// the proxy's liveness.
fn steer_sets(graph: &PolicyGraph, s: &super::options::DnsSteering) -> Vec<Set> {
    let servers = s.servers.iter().fold(AddrSet::default(), |acc, n| {
        acc.union(&AddrSet::from_block(n, &[]))
    });
    let mut out = Vec::new();
    for (v6, key) in [(false, KeyType::Ipv4Addr), (true, KeyType::Ipv6Addr)] {
        out.push(Set {
            name: names::DNS_SERVER_SETS[v6 as usize].into(),
            role: SetRole::DnsServers,
            key: vec![key],
            interval: true,
            comment: Some("the DNS servers whose answers teach (--dns-server)".into()),
            elements: one_field_elements(v6, if v6 { &servers.v6 } else { &servers.v4 }),
            timeout: None,
            counter: false,
        });
    }
    for (v6, key) in [(false, KeyType::Ipv4Addr), (true, KeyType::Ipv6Addr)] {
        let mut elements: Vec<Element> = graph
            .pods
            .values()
            .filter(|p| has_domains(p))
            .flat_map(|p| p.ips.iter())
            .filter(|ip| ip.is_ipv6() == v6)
            .map(|ip| Element {
                key: Key::from([match ip {
                    std::net::IpAddr::V4(a) => Field::Ipv4(*a, *a),
                    std::net::IpAddr::V6(a) => Field::Ipv6(*a, *a),
                }]),
            })
            .collect();
        elements.sort();
        elements.dedup();
        out.push(Set {
            name: names::DNS_POD_SETS[v6 as usize].into(),
            role: SetRole::DnsPods,
            key: vec![key],
            interval: false,
            comment: Some("pods whose DNS goes through the DNS proxy".into()),
            elements,
            timeout: None,
            counter: false,
        });
    }
    out.push(Set {
        name: names::DNS_ALIVE_SET.into(),
        role: SetRole::DnsAlive,
        key: vec![KeyType::InetService],
        interval: false,
        comment: Some("the DNS port while the DNS proxy is alive (the controller's)".into()),
        elements: Vec::new(),
        timeout: Some(0),
        counter: false,
    });
    out
}

/// Puts the steering objects of `graph` into `model` when `opts.dns` is set and some pod
/// has domain rules (and removes them otherwise): the steering chain and its sets, and
/// in the input chain the rules that send a steered query to its pod's egress chain.
pub(super) fn place(model: &mut Ruleset, graph: &PolicyGraph, opts: &Options) {
    model.retain_chains(|c| c.name != names::CHAIN_DNS_STEER && c.name != names::CHAIN_DNS_HELD);
    model.retain_sets(|s| {
        !matches!(
            s.role,
            SetRole::DnsPods | SetRole::DnsServers | SetRole::DnsAlive
        )
    });
    let Some(steering) = &opts.dns else {
        return;
    };
    if !graph.pods.values().any(has_domains) {
        return;
    }
    for set in steer_sets(graph, steering) {
        model.put_set(set);
    }
    model.put_chain(steer_chain(steering));
    model.put_chain(held_chain(steering));
    // Every pod with domain rules has egress tiers, so the input chain is there.
    if let Some(input) = model.chain(names::CHAIN_INPUT) {
        let mut input = input.clone();
        let at = input
            .rules
            .iter()
            .position(|r| matches!(r.kind, RuleKind::DispatchVmap { .. }))
            .unwrap_or(input.rules.len());
        for (i, (v6, family)) in [(false, IpFamily::V4), (true, IpFamily::V6)]
            .into_iter()
            .enumerate()
        {
            input.rules.insert(
                at + i,
                Rule::with_comment(
                    RuleKind::MarkedDispatch {
                        family,
                        mark: steering.mark,
                        map: names::dispatch_map(Direction::Egress, v6),
                    },
                    "a DNS query steered to the proxy: judged by its pod's egress chain",
                ),
            );
        }
        model.put_chain(input);
    }
}
