//! ClusterNetworkPolicy `domainNames` compiled (issue 29), on `examples/domain-names.yaml`:
//! the learned-set lookups keep Admin first-match order (an earlier Pass or Deny decides
//! first, the rule's ports bound it, other rules' learned addresses admit nothing here),
//! the steering chain with `Options::dns`, and fail-closed DNS: a steered query is judged
//! on the input hook by its pod's egress chain. Checked with the ruleset evaluator, given
//! what the DNS proxy would have learned; the script with `Options::dns` is a snapshot
//! (`UPDATE_SNAPSHOTS=1` rewrites it) and passes `nft -c` (root).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use nftpol::fqdn::facts::Learned;
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;
use nftpol::ruleset::eval::{forward_walk_learned, input_walk, steered_input_walk, Packet};
use nftpol::ruleset::{self, DnsSteering, Options, RuleKind, Ruleset};

#[path = "common/root.rs"]
mod needs_root;

const POLICY: &str = "shop-egress";
/// `spec.egress[2]`, the domainNames rule.
const RULE: usize = 2;
const WEB: &str = "10.244.1.10";
const BATCH: &str = "10.244.1.11";
const COREDNS: &str = "10.244.2.53";
const TCP: u8 = 6;
const UDP: u8 = 17;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn index() -> Index {
    let path = root().join("examples/domain-names.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    Index::from_objects(nftpol::input::parse_str(&text, "domain-names.yaml").unwrap()).unwrap()
}

fn model(dns: bool) -> Ruleset {
    let graph = PolicyGraph::build_for(&index(), Some("node-1"));
    let opts = Options {
        dns: dns.then(|| DnsSteering {
            servers: vec![
                "10.96.0.10/32".parse().unwrap(),
                "fd00:96::a/128".parse().unwrap(),
            ],
            ..Default::default()
        }),
        ..Options::default()
    };
    ruleset::build_with(&graph, &opts)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn packet(from: &str, to: &str, l4proto: u8, dport: u16) -> Packet {
    Packet {
        saddr: ip(from),
        daddr: ip(to),
        l4proto,
        dport,
    }
}

fn learned(addrs: &[&str]) -> Learned {
    let mut l = Learned::new();
    for a in addrs {
        l.add(POLICY, RULE, ip(a), "api.example.com");
    }
    l
}

fn forward(rs: &Ruleset, l: &Learned, to: &str, proto: u8, port: u16) -> bool {
    forward_walk_learned(rs, l, &packet(WEB, to, proto, port))
        .unwrap()
        .accepted
}

#[test]
fn a_learned_address_is_admitted_where_the_domain_rule_decides() {
    let rs = model(false);
    let all = learned(&["93.184.216.34", "203.0.113.5", "192.0.2.7", "2001:db8::7"]);
    let none = Learned::new();
    let cases = [
        // (destination, proto, port, learned, allowed, why)
        (
            "93.184.216.34",
            TCP,
            443,
            &all,
            true,
            "learned, on the rule's port",
        ),
        (
            "93.184.216.34",
            TCP,
            443,
            &none,
            false,
            "not learned: the TCP Deny after it",
        ),
        (
            "93.184.216.34",
            TCP,
            80,
            &all,
            false,
            "learned, another port: the TCP Deny",
        ),
        (
            "93.184.216.34",
            UDP,
            443,
            &all,
            false,
            "UDP: NetworkPolicy (only DNS)",
        ),
        (
            "203.0.113.5",
            TCP,
            443,
            &all,
            false,
            "an earlier Deny decides first",
        ),
        (
            "192.0.2.7",
            TCP,
            443,
            &all,
            false,
            "an earlier Pass hands it to NetworkPolicy",
        ),
        ("2001:db8::7", TCP, 443, &all, true, "IPv6, learned"),
        (
            "198.51.100.9",
            TCP,
            443,
            &none,
            true,
            "the rule's networks peer, as before",
        ),
    ];
    for (to, proto, port, l, want, why) in cases {
        assert_eq!(
            forward(&rs, l, to, proto, port),
            want,
            "{to} {proto}/{port}: {why}"
        );
    }
    // Another rule's learned addresses admit nothing through this one.
    let mut other = Learned::new();
    other.add(POLICY, 1, ip("93.184.216.34"), "api.example.com");
    other.add("another", RULE, ip("93.184.216.34"), "api.example.com");
    assert!(!forward(&rs, &other, "93.184.216.34", TCP, 443));
}

#[test]
fn pods_without_domain_rules_and_the_script_without_dns_are_unchanged() {
    let rs = model(false);
    // No steering without Options::dns, and no learned lookup outside the subjects.
    assert!(rs.chain(ruleset::names::CHAIN_DNS_STEER).is_none());
    assert!(rs.set(ruleset::names::DNS_ALIVE_SET).is_none());
    let learned_rules = |chain: &str| {
        rs.chain(chain).map_or(0, |c| {
            c.rules
                .iter()
                .filter(|r| matches!(r.kind, RuleKind::LearnedLookup { .. }))
                .count()
        })
    };
    assert_eq!(learned_rules("egress/shop/web-0"), 4);
    assert_eq!(learned_rules("input/shop/web-0"), 4);
    assert_eq!(learned_rules("ingress/shop/web-0"), 0);
    let set = rs
        .set(&ruleset::names::learned_set(POLICY, RULE, false))
        .unwrap();
    assert_eq!((set.timeout, set.elements.len()), (Some(0), 0));
    assert_eq!(set.role, ruleset::SetRole::Learned);
}

#[test]
fn steered_dns_is_judged_by_the_pods_egress_policy() {
    let rs = model(true);
    let none = Learned::new();
    let steered = |from: &str, proto: u8| {
        steered_input_walk(&rs, &none, &packet(from, COREDNS, proto, 53))
            .unwrap()
            .accepted
    };
    // web's NetworkPolicy allows UDP 53 to coredns; batch's allows nothing, and the
    // Admin tier denies every TCP port but 443.
    assert!(steered(WEB, UDP));
    assert!(!steered(BATCH, UDP), "NetworkPolicy denies batch's DNS");
    assert!(
        !steered(WEB, TCP),
        "the Admin TCP Deny holds through the proxy"
    );
    // Not steered (no mark), the same packet on the input hook is a packet to this node:
    // NetworkPolicy's own-node allowance, as before.
    let plain = input_walk(&rs, &packet(BATCH, COREDNS, UDP, 53)).unwrap();
    assert!(plain.accepted);
}

#[test]
fn the_steering_script_matches_its_snapshot() {
    let script = nftpol::script::render(&model(true));
    let path = root().join("tests/snapshots/domain-names.node-1.dns.nft");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &script).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(want == script, "differs (UPDATE_SNAPSHOTS=1 to accept)");
    for line in [
        "\t\ttype filter hook prerouting priority mangle; policy accept;",
        "\t\tmeta l4proto tcp socket transparent 1 meta mark set meta mark | 0x00200000 accept",
        "\t\tip saddr @dns/pods4 ip daddr @dns/servers4 udp dport @dns/alive tproxy ip to :9353 meta mark set meta mark | 0x00200000 accept",
    ] {
        assert!(script.lines().any(|l| l.starts_with(line)), "{line}");
    }
    // Rendered twice, byte for byte.
    assert_eq!(script, nftpol::script::render(&model(true)));
}

#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn the_steering_script_passes_nft_check() {
    needs_root::require_root_and_nft("the_steering_script_passes_nft_check");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dns.nft");
    std::fs::write(&path, nftpol::script::render(&model(true))).unwrap();
    let out = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Change by change (`NodeState`, which recomputes the pods a change touches), the model
/// is the full build's, and the kernel's copy after each pods' batch equals it: a pod
/// joining the steered pods, the domain policy going (its learned sets, the steering)
/// and coming back.
#[test]
fn incremental_changes_give_the_full_build() {
    use nftpol::input::Kind;
    use nftpol::state::{Batch, NodeState};
    let text = std::fs::read_to_string(root().join("examples/domain-names.yaml")).unwrap();
    let objects = nftpol::input::parse_str(&text, "domain-names.yaml").unwrap();
    let opts = Options {
        dns: Some(DnsSteering {
            servers: vec![
                "10.96.0.10/32".parse().unwrap(),
                "fd00:96::a/128".parse().unwrap(),
            ],
            ..Default::default()
        }),
        ..Options::default()
    };
    let cnp_text = text
        .split("\n---\n")
        .find(|d| d.contains("kind: ClusterNetworkPolicy"))
        .unwrap();
    let cnp = nftpol::input::parse_str(cnp_text, "cnp.yaml").unwrap();
    let web1 = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, labels: {app: web}}\nspec: {nodeName: node-1}\nstatus: {phase: Running, podIP: 10.244.1.12, podIPs: [{ip: 10.244.1.12}]}\n";
    let web1 = nftpol::input::parse_str(web1, "web-1.yaml").unwrap();
    let index = Index::from_objects(objects).unwrap();
    let mut state = NodeState::with_options(index, Some("node-1"), opts.clone());
    assert!(matches!(state.batch(), Batch::Full(_)));
    state.acknowledged(true);
    let check = |state: &mut NodeState, step: &str| {
        let graph = PolicyGraph::build_for(state.index(), Some("node-1"));
        assert_eq!(state.model(), &ruleset::build_with(&graph, &opts), "{step}");
        let full = matches!(state.batch(), Batch::Full(_));
        state.acknowledged(full);
        assert_eq!(state.kernel(), Some(state.model()), "{step}: kernel copy");
    };
    for o in web1 {
        state.apply(o).unwrap();
    }
    check(&mut state, "web-1 added");
    let steered = state.model().set(ruleset::names::DNS_POD_SETS[0]).unwrap();
    assert_eq!(steered.elements.len(), 3, "web-0, web-1, batch-0");
    state.delete(Kind::ClusterNetworkPolicy, None, POLICY);
    check(&mut state, "policy deleted");
    assert!(state
        .model()
        .chain(ruleset::names::CHAIN_DNS_STEER)
        .is_none());
    for o in cnp {
        state.apply(o).unwrap();
    }
    check(&mut state, "policy back");
    assert!(state
        .model()
        .chain(ruleset::names::CHAIN_DNS_STEER)
        .is_some());
}

/// The graph's judgement (`explain::domains`, the walk explain and diff use) and the
/// ruleset evaluator, given the same learned facts, agree on every probe: destinations
/// around each rule's edges, ports, both families, facts for the domain rule, for another
/// rule of the same policy and for another policy.
#[test]
fn the_graph_and_the_evaluator_agree_given_the_same_facts() {
    use nftpol::explain::domains::end_allowed_learned;
    use nftpol::policy::{Direction, Protocol};
    let index = index();
    let graph = PolicyGraph::build_for(&index, Some("node-1"));
    let rs = model(false);
    let dests = [
        "93.184.216.34",
        "203.0.113.5",
        "192.0.2.7",
        "198.51.100.9",
        "10.244.2.53",
        "2001:db8::7",
        "fd00:1::99",
    ];
    let facts: Vec<Learned> = vec![Learned::new(), learned(&dests), {
        let mut l = Learned::new();
        for d in dests {
            l.add(POLICY, 3, ip(d), "x.example");
            l.add("elsewhere", RULE, ip(d), "x.example");
        }
        l
    }];
    let web = graph.pod("shop", "web-0").unwrap();
    let mut checked = 0;
    for l in &facts {
        for d in dests {
            for (proto, p) in [(Protocol::Tcp, TCP), (Protocol::Udp, UDP)] {
                for port in [53, 80, 442, 443, 444] {
                    let graph_says = end_allowed_learned(
                        &graph,
                        web,
                        Direction::Egress,
                        ip(d),
                        (proto, port),
                        l,
                    );
                    // The destination is never a pod of this node: its ingress adds nothing.
                    let eval = forward_walk_learned(&rs, l, &packet(WEB, d, p, port));
                    if ip(d).is_ipv6() {
                        let eval = forward_walk_learned(&rs, l, &packet("fd00:1::10", d, p, port));
                        assert_eq!(graph_says, eval.unwrap().accepted, "{d} {proto}/{port}");
                    } else {
                        assert_eq!(graph_says, eval.unwrap().accepted, "{d} {proto}/{port}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 7 * 2 * 5);
}

#[test]
fn explain_names_the_domain_rule_or_reports_a_near_miss() {
    use nftpol::explain::domains::{learned_for, notes, Resolution};
    use nftpol::policy::Protocol;
    let index = index();
    let graph = PolicyGraph::build_for(&index, Some("node-1"));
    let web = graph.pod("shop", "web-0").unwrap();
    let r = Resolution::parse("img.eu.cdn.example.net=93.184.216.34").unwrap();
    assert!(Resolution::parse("cdn.example.net").is_err());
    assert!(Resolution::parse("a.example=not-an-ip").is_err());
    let l = learned_for(web, &[r]);
    assert_eq!(
        l.domain(POLICY, RULE, ip("93.184.216.34")),
        Some("img.eu.cdn.example.net")
    );
    let port = (Protocol::Tcp, 443);
    let said = notes(&graph, web, ip("93.184.216.34"), port, &l);
    assert_eq!(
        said,
        ["domainNames *.cdn.example.net, api.example.com: 93.184.216.34 was learned from img.eu.cdn.example.net"]
    );
    // Not resolved: a near miss that run time decides.
    let said = notes(&graph, web, ip("93.184.216.34"), port, &Learned::new());
    assert_eq!(
        said,
        ["Admin: shop-egress egress[2] vendors to[0] admits addresses learned from names matching *.cdn.example.net, api.example.com at run time"]
    );
    // A name the rule does not cover teaches nothing.
    let other = Resolution::parse("cdn.example.net=93.184.216.34").unwrap();
    assert!(learned_for(web, &[other]).is_empty());
}

/// `nftpol explain --resolved NAME=ADDR`: the first line follows the facts, the Admin step
/// names the domain rule (or the near miss); a malformed value exits 2 naming the flag.
#[test]
fn explain_takes_resolved_names() {
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_nftpol"))
            .args(["explain", "--from", "shop/web-0", "--to", "93.184.216.34"])
            .args(["--port", "tcp/443"])
            .args(extra)
            .arg(root().join("examples/domain-names.yaml"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), stdout, stderr)
    };
    let (code, out, _) = run(&["--resolved", "api.example.com=93.184.216.34"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("allowed\n"), "{out}");
    assert!(out.contains("vendors to[0]: Accept (domainNames"), "{out}");
    assert!(out.contains("learned from api.example.com"), "{out}");
    let (code, out, _) = run(&["--resolved", "example.com=93.184.216.34"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("denied\n"), "{out}");
    assert!(
        out.contains("admits addresses learned from names matching"),
        "{out}"
    );
    let (code, _, err) = run(&["--resolved", "api.example.com"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--resolved"), "{err}");
}

/// `nftpol graph` lists the domain rule in its place, text and JSON.
#[test]
fn graph_lists_domain_rules_with_their_patterns() {
    let graph = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_nftpol"))
            .args(["graph", "--node", "node-1", "-o", format])
            .arg(root().join("examples/domain-names.yaml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = graph("text");
    let want = "    deny peer 1 any port <- Admin: shop-egress egress[1] never to[0]\n    accept domainNames *.cdn.example.net, api.example.com tcp/443 (addresses learned at run time) <- Admin: shop-egress egress[2] vendors to[0]\n    accept peer 2 tcp/443";
    assert!(text.contains(want), "{text}");
    let json: serde_json::Value = serde_json::from_str(&graph("json")).unwrap();
    let found = json.to_string();
    assert!(
        found.contains(r#""domain_rules":[{"patterns":["*.cdn.example.net","api.example.com"],"#),
        "{found}"
    );
}

/// The revocation judge keeps a connection to a learned address when it is told what was
/// learned, and cuts it when it is not (the model never holds learned elements).
#[test]
fn the_revocation_judge_takes_learned_facts() {
    use nftpol::flow::{Flow, Tuple};
    use nftpol::revoke::{Decision, Judge, Scope};
    let rs = model(false);
    let flow = Flow {
        l4proto: TCP,
        orig: Tuple {
            src: ip(WEB),
            dst: ip("93.184.216.34"),
            sport: 40000,
            dport: 443,
        },
        reply: Tuple {
            src: ip("93.184.216.34"),
            dst: ip(WEB),
            sport: 443,
            dport: 40000,
        },
    };
    let scope = Scope {
        judge: [ip(WEB)].into_iter().collect(),
        gone: Default::default(),
    };
    let host = Default::default();
    let facts = learned(&["93.184.216.34"]);
    let mut with = Judge::new(&rs, &scope, &host).with_learned(&facts);
    assert_eq!(with.decide(&flow), Decision::Keep);
    let mut without = Judge::new(&rs, &scope, &host);
    assert_eq!(without.decide(&flow), Decision::Revoked);
}

/// The example's index with `shop-egress` (the domainNames policy) in audit mode.
fn audited_index() -> Index {
    let path = root().join("examples/domain-names.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "metadata: {name: shop-egress}",
        "metadata: {name: shop-egress, annotations: {nftpol.io/mode: audit}}",
    );
    assert!(
        text.contains("nftpol.io/mode: audit"),
        "the example changed"
    );
    Index::from_objects(nftpol::input::parse_str(&text, "domain-names.yaml").unwrap()).unwrap()
}

/// An audited domainNames rule is compiled into the audit chains as the enforced one is
/// into the pod chains (the same open region, the same learned set), and its pods' DNS is
/// steered: so its would-allow and would-deny records count what it learns, and what
/// they say is what enforcing it will do.
#[test]
fn an_audited_domain_rule_learns_and_is_judged_as_enforced() {
    let opts = Options {
        dns: Some(DnsSteering {
            servers: vec!["10.96.0.10/32".parse().unwrap()],
            ..Default::default()
        }),
        ..Options::default()
    };
    let audited = ruleset::build_with(
        &PolicyGraph::build_for(&audited_index(), Some("node-1")),
        &opts,
    );
    let enforced = ruleset::build_with(&PolicyGraph::build_for(&index(), Some("node-1")), &opts);
    let learned4 = ruleset::names::learned_set(POLICY, RULE, false);
    // Each open set of the enforced view has its audited twin, element for element.
    let open: Vec<_> = enforced
        .sets()
        .iter()
        .filter(|s| s.name.contains("/fqdn"))
        .collect();
    assert!(!open.is_empty());
    for s in open {
        let twin = s.name.replace("/fqdn", "/audit-fqdn");
        let a = audited.set(&twin).unwrap_or_else(|| panic!("no {twin}"));
        assert_eq!(a.elements, s.elements, "{twin}");
        assert!(
            audited.set(&s.name).is_none(),
            "{} in the audited build",
            s.name
        );
    }
    // The audit chains look the learned set up through those sets.
    let lookups: Vec<(&str, &str)> = audited
        .chains()
        .iter()
        .flat_map(|c| c.rules.iter().map(move |r| (c.name.as_str(), &r.kind)))
        .filter_map(|(c, k)| match k {
            RuleKind::LearnedLookup { open, learned, .. } if *learned == learned4 => {
                Some((c, open.as_str()))
            }
            _ => None,
        })
        .collect();
    assert!(
        lookups
            .iter()
            .any(|(c, o)| c.contains("web-0") && c.contains("audit") && o.contains("/audit-fqdn")),
        "{lookups:?}"
    );
    assert!(audited.set(&learned4).is_some(), "the learned set exists");
    // Its pods' DNS goes through the proxy, as enforced.
    let pods4 = ruleset::names::DNS_POD_SETS[0];
    assert_eq!(
        audited.set(pods4).map(|s| &s.elements),
        enforced.set(pods4).map(|s| &s.elements)
    );
    assert!(audited.set(pods4).is_some_and(|s| !s.elements.is_empty()));
}
