//! The ClusterNetworkPolicy `domainNames` rules a node enforces, for its DNS proxy: each
//! egress Accept rule with `domainNames` peers, its patterns (all of the rule's
//! `domainNames` peers together: the rule is the unit that owns learned addresses), its
//! place (tier, priority, policy, rule index) and the local pods it is for. A pod is
//! listed under every rule whose policy's subject selects it; the proxy steers the DNS
//! of exactly these pods, and learns for exactly these rules.
//!
//! [`in_graph`] names the same rules as a built graph's pods hold them (what `graph
//! --learned` reads the learned sets of).
//!
//! Pure: reads the index or the graph; knows nothing of sets, chains or the proxy.

use crate::cnp::{Action, Peer, Tier};
use crate::fqdn::DomainPattern;
use crate::index::{Index, PodKey};
use crate::policy::Direction;

/// One `domainNames` rule on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    pub policy: String,
    pub tier: Tier,
    pub priority: i32,
    /// Index in `spec.egress`.
    pub rule: usize,
    pub rule_name: Option<String>,
    pub patterns: Vec<DomainPattern>,
    /// The policy pods on the node (every node's when `None`) its subject selects, sorted.
    pub subjects: Vec<PodKey>,
}

impl DomainRule {
    /// `policy/egress[i]`, as logs and listings name it.
    pub fn id(&self) -> String {
        format!("{}/egress[{}]", self.policy, self.rule)
    }
}

/// The `domainNames` rules that select at least one pod of `node` (every pod when
/// `None`), in evaluation order (tier, priority, policy name, rule index). Policies
/// enforced fail-closed have none (their only rule denies).
pub fn domain_rules(index: &Index, node: Option<&str>) -> Vec<DomainRule> {
    let mut policies: Vec<_> = index
        .cnps()
        .map(|e| &e.policy)
        .filter(|p| !p.fail_closed)
        .collect();
    policies.sort_by(|a, b| (a.tier, a.priority, &a.name).cmp(&(b.tier, b.priority, &b.name)));
    let mut out = Vec::new();
    for policy in policies {
        let mut subjects: Option<Vec<PodKey>> = None;
        for (ri, rule) in policy.rules(Direction::Egress).iter().enumerate() {
            if rule.action != Action::Accept {
                continue;
            }
            let patterns: Vec<DomainPattern> = rule
                .peers
                .iter()
                .filter_map(|p| match p {
                    Peer::DomainNames(d) => Some(d),
                    _ => None,
                })
                .flatten()
                .filter_map(|d| match DomainPattern::parse(d) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(policy = %policy.name, error = %crate::error::Chain(&e), "domain name skipped");
                        None
                    }
                })
                .collect();
            if patterns.is_empty() {
                continue;
            }
            let subjects = subjects.get_or_insert_with(|| selected(index, policy, node));
            if subjects.is_empty() {
                break;
            }
            out.push(DomainRule {
                policy: policy.name.clone(),
                tier: policy.tier,
                priority: policy.priority,
                rule: ri,
                rule_name: rule.name.clone(),
                patterns,
                subjects: subjects.clone(),
            });
        }
    }
    out
}

/// The `domainNames` rules of `graph`'s pods, enforced or audited, as (policy, index in
/// `spec.egress`), sorted.
pub fn in_graph(graph: &super::PolicyGraph) -> std::collections::BTreeSet<(String, usize)> {
    graph
        .pods
        .values()
        .flat_map(|p| std::iter::once(p).chain(p.audited.as_deref()))
        .flat_map(|p| &p.tiers.egress.admin.domains)
        .map(|d| (d.origin.policy.clone(), d.origin.rule.unwrap_or(0)))
        .collect()
}

fn selected(index: &Index, policy: &crate::cnp::ClusterPolicy, node: Option<&str>) -> Vec<PodKey> {
    let mut keys: Vec<PodKey> = index
        .pods()
        .filter(|p| p.is_policy_pod())
        .filter(|p| node.is_none() || p.node.as_deref() == node)
        .filter(|p| {
            let ns = index.effective_labels(&p.namespace);
            super::cnp_rules::subject_selects(&policy.subject, p, &ns)
        })
        .map(|p| p.key())
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {fqdn: "yes"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec: {nodeName: n1}
status: {podIPs: [{ip: 10.0.1.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop}
spec: {nodeName: n2}
status: {podIPs: [{ip: 10.0.2.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: other}
spec: {nodeName: n1}
status: {podIPs: [{ip: 10.0.1.3}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: b-fqdn}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {fqdn: "yes"}}}
  egress:
  - action: Accept
    to: [{networks: [10.9.0.0/16]}]
  - name: vendors
    action: Accept
    to:
    - domainNames: ["*.Vendor.example", api.partner.example.]
    - networks: [10.8.0.0/16]
    - domainNames: [cdn.example]
  - action: Deny
    to: [{networks: [0.0.0.0/0]}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: a-everyone}
spec:
  tier: Admin
  priority: 20
  subject: {namespaces: {}}
  egress:
  - action: Accept
    to: [{domainNames: [status.example]}]
"#;

    fn index() -> Index {
        Index::from_objects(crate::input::parse_str(CLUSTER, "cluster.yaml").unwrap()).unwrap()
    }

    fn summary(rules: &[DomainRule]) -> Vec<(String, Vec<String>, Vec<String>)> {
        rules
            .iter()
            .map(|r| {
                (
                    r.id(),
                    r.patterns.iter().map(|p| p.to_string()).collect(),
                    r.subjects
                        .iter()
                        .map(|(ns, n)| format!("{ns}/{n}"))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn rules_in_evaluation_order_with_their_local_subjects() {
        let idx = index();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summary(&domain_rules(&idx, Some("n1"))),
            [
                (
                    "b-fqdn/egress[1]".to_string(),
                    s(&["*.Vendor.example", "api.partner.example.", "cdn.example"]),
                    s(&["shop/web"])
                ),
                (
                    "a-everyone/egress[0]".to_string(),
                    s(&["status.example"]),
                    s(&["other/db", "shop/web"])
                ),
            ]
        );
        let n2 = domain_rules(&idx, Some("n2"));
        assert_eq!(n2[0].subjects, [("shop".to_string(), "api".to_string())]);
        assert_eq!(n2[0].rule_name.as_deref(), Some("vendors"));
        assert!(domain_rules(&idx, Some("n3")).is_empty());
        assert_eq!(domain_rules(&idx, None)[1].subjects.len(), 3);
    }

    #[test]
    fn a_graph_names_the_rules_of_its_pods() {
        let idx = index();
        let on = |node| in_graph(&crate::graph::PolicyGraph::build_for(&idx, Some(node)));
        let rule = |p: &str, r| (p.to_string(), r);
        assert_eq!(
            on("n1").into_iter().collect::<Vec<_>>(),
            [rule("a-everyone", 0), rule("b-fqdn", 1)]
        );
        assert!(on("n3").is_empty());
    }
}
