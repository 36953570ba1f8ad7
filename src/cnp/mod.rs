//! A ClusterNetworkPolicy, validated and reduced to what enforcement needs
//! ([`ClusterPolicy`]); the serde shapes are in [`types`].
//!
//! ```text
//! object (JSON value, nulls pruned) --types--> ClusterNetworkPolicy --validate--> ClusterPolicy
//!                                                          \--(invalid)--> fail_closed()
//! ```
//!
//! Validation is the stricter of the two served versions: the v0.2.0 experimental-channel
//! CRD (its schema and CEL rules) plus v1beta1's rule that a CIDR has no host bits, and
//! label selectors checked as `LabelSelectorAsSelector` would. The first problem is
//! reported, with its field path. Knows nothing of pods, nodes or nftables.

pub mod types;

use std::fmt;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::policy::{FieldError, Protocol};
use crate::selector::{Selector, SelectorError};

/// The two tiers a ClusterNetworkPolicy can sit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Before NetworkPolicy.
    Admin,
    /// After NetworkPolicy, for pods it does not isolate in the direction at hand.
    Baseline,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Accept,
    Deny,
    /// Skip the rest of this tier: Admin hands over to NetworkPolicy, Baseline to the
    /// default (allow).
    Pass,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The CRD's `maxItems` for rules, peers, networks, domain names and protocols.
pub const MAX_ITEMS: usize = 25;
/// The CRD's bounds on `spec.priority`.
pub const PRIORITY_MAX: i64 = 1000;
/// The CRD's `maxLength` of a rule name.
const RULE_NAME_MAX: usize = 100;
/// The CRD's `maxLength` of one `networks` entry.
const CIDR_MAX_LEN: usize = 43;

/// Which pods a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Every pod of the namespaces the selector picks.
    Namespaces(Selector),
    /// Pods the pod selector picks in namespaces the namespace selector picks (an
    /// omitted namespaceSelector is every namespace).
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
}

/// One entry of `from`/`to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Every pod of the selected namespaces.
    Namespaces(Selector),
    /// `namespaceSelector` AND `podSelector`; an omitted namespaceSelector is every
    /// namespace (unlike NetworkPolicy, where it is the policy's own).
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    /// Egress only: any address in these CIDRs, pod addresses included.
    Networks(Vec<IpNet>),
    /// Egress only: the InternalIP/ExternalIP addresses of the selected Node objects.
    Nodes(Selector),
    /// Egress only, Accept only. No DNS here: it matches nothing (it can only open, so
    /// matching nothing opens nothing).
    DomainNames(Vec<String>),
}

/// One entry of `protocols`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// `tcp`/`udp`/`sctp` with `destinationPort` `number` (start == end) or `range`.
    Range(Protocol, u16, u16),
    /// `destinationNamedPort`: a container port name on the destination pod, whose
    /// protocol comes from that container port.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub name: Option<String>,
    pub action: Action,
    /// Never empty for a validated rule.
    pub peers: Vec<Peer>,
    /// `None`: every protocol and port (ICMP too).
    pub ports: Option<Vec<Port>>,
}

/// A validated ClusterNetworkPolicy, or the fail-closed remainder of one that is not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterPolicy {
    pub name: String,
    pub tier: Tier,
    pub priority: i32,
    pub subject: Subject,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// The policy could not be compiled: each direction with rules holds one placeholder
    /// rule, and the graph enforces that direction as a Deny of every address and port.
    pub fail_closed: bool,
    /// `nftpol.io/mode`: an audited policy is judged, not enforced.
    pub mode: crate::policy::Mode,
}

impl ClusterPolicy {
    pub fn rules(&self, dir: crate::policy::Direction) -> &[Rule] {
        match dir {
            crate::policy::Direction::Ingress => &self.ingress,
            crate::policy::Direction::Egress => &self.egress,
        }
    }

    /// Whether a peer of some rule is `domainNames` (validated, then matching nothing).
    pub fn has_domain_names(&self) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .flat_map(|r| &r.peers)
            .any(|p| matches!(p, Peer::DomainNames(_)))
    }
}

fn err<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        problem: problem.into(),
    })
}

/// Removes every `null` member of every object, as the API server prunes them from a
/// custom resource before it stores it (an explicit null is an absent field).
pub fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

fn selector(sel: &LabelSelector, field: &str) -> Result<Selector, FieldError> {
    Selector::parse(sel).map_err(|SelectorError { field: f, problem }| FieldError {
        field: format!("{field}.{f}"),
        problem,
    })
}

/// `metadata.name` of a cluster-scoped object: a DNS subdomain.
fn check_name(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
        ));
    }
    Ok(())
}

fn items<'a, T>(
    list: Option<&'a Vec<T>>,
    field: &str,
    required: bool,
) -> Result<&'a [T], FieldError> {
    match list {
        None if required => err(field, "required"),
        None => Ok(&[]),
        Some(l) if l.is_empty() && required => err(field, "needs at least one entry"),
        Some(l) if l.len() > MAX_ITEMS => err(
            field,
            format!("{} entries, at most {MAX_ITEMS} are allowed", l.len()),
        ),
        Some(l) => Ok(l),
    }
}

fn subject(s: Option<&types::Subject>) -> Result<Subject, FieldError> {
    let f = "spec.subject";
    let Some(s) = s else {
        return err(f, "required");
    };
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => Ok(Subject::Namespaces(selector(
            ns,
            &format!("{f}.namespaces"),
        )?)),
        (None, Some(p)) => {
            let (namespaces, pods) = namespaced_pod(p, &format!("{f}.pods"))?;
            Ok(Subject::Pods { namespaces, pods })
        }
        _ => err(f, "needs exactly one of namespaces or pods"),
    }
}

fn namespaced_pod(p: &types::NamespacedPod, f: &str) -> Result<(Selector, Selector), FieldError> {
    let namespaces = match &p.namespace_selector {
        Some(s) => selector(s, &format!("{f}.namespaceSelector"))?,
        None => Selector::everything(),
    };
    let Some(pods) = &p.pod_selector else {
        return err(format!("{f}.podSelector"), "required");
    };
    Ok((namespaces, selector(pods, &format!("{f}.podSelector"))?))
}

/// A CIDR as v1beta1 validates it: `isCIDR(self) && cidr(self) == cidr(self).masked()`.
fn network(s: &str, f: &str) -> Result<IpNet, FieldError> {
    if s.len() > CIDR_MAX_LEN {
        return err(f, format!("longer than {CIDR_MAX_LEN} characters"));
    }
    let net: IpNet = s.parse().or_else(|_| {
        err(
            f,
            format!("{s:?} is not a valid CIDR (address/prefix-length)"),
        )
    })?;
    if net.trunc() != net {
        return err(f, format!("{s} has host bits set (write {})", net.trunc()));
    }
    Ok(net)
}

/// The CRD's DomainName pattern: an optional `*.`, then at least two DNS labels, an
/// optional trailing dot. A label starts and ends with a letter or digit and may hold
/// `-` and `_` inside (`[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?`; the v1alpha2 pattern's
/// `A-z` typo, which also admits `[\]^_` and a backtick first, is not followed).
fn check_domain(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            let ends = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && ends(l.as_bytes().first())
                && ends(l.as_bytes().last())
        })
}

/// One peer, validated like [`rule`]: one arm per peer kind the API has, each naming its
/// field path; kept whole so that the union's "exactly one of" reads as the API states it.
fn peer(p: &types::Peer, f: &str, dir: crate::policy::Direction) -> Result<Peer, FieldError> {
    use crate::policy::Direction::Ingress;
    let set = [
        ("namespaces", p.namespaces.is_some()),
        ("pods", p.pods.is_some()),
        ("networks", p.networks.is_some()),
        ("nodes", p.nodes.is_some()),
        ("domainNames", p.domain_names.is_some()),
    ];
    let given: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    if given.len() != 1 {
        let expected = match dir {
            Ingress => "namespaces or pods",
            _ => "namespaces, pods, networks, nodes or domainNames",
        };
        let got = if given.is_empty() {
            "none".to_string()
        } else {
            given.join(", ")
        };
        return err(f, format!("needs exactly one of {expected} (got {got})"));
    }
    if dir == Ingress && !matches!(given[0], "namespaces" | "pods") {
        return err(
            format!("{f}.{}", given[0]),
            "ingress peers can only be namespaces or pods",
        );
    }
    if let Some(s) = &p.namespaces {
        return Ok(Peer::Namespaces(selector(s, &format!("{f}.namespaces"))?));
    }
    if let Some(np) = &p.pods {
        let (namespaces, pods) = namespaced_pod(np, &format!("{f}.pods"))?;
        return Ok(Peer::Pods { namespaces, pods });
    }
    if let Some(s) = &p.nodes {
        return Ok(Peer::Nodes(selector(s, &format!("{f}.nodes"))?));
    }
    if let Some(list) = &p.networks {
        let field = format!("{f}.networks");
        let list = items(Some(list), &field, true)?;
        let mut nets = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let net = network(s, &format!("{field}[{i}]"))?;
            if nets.contains(&net) {
                return err(format!("{field}[{i}]"), format!("duplicate value {s:?}"));
            }
            nets.push(net);
        }
        nets.sort();
        return Ok(Peer::Networks(nets));
    }
    let field = format!("{f}.domainNames");
    let list = items(p.domain_names.as_ref(), &field, true)?;
    for (i, d) in list.iter().enumerate() {
        if !check_domain(d) {
            return err(
                format!("{field}[{i}]"),
                format!("{d:?} is not a domain name (like example.com or *.example.com)"),
            );
        }
    }
    let mut names = list.to_vec();
    names.sort();
    names.dedup();
    Ok(Peer::DomainNames(names))
}

fn port_number(n: Option<i64>, f: &str) -> Result<u16, FieldError> {
    match n {
        None => err(f, "required"),
        Some(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Some(n) => err(f, format!("{n} is not a port number (1-65535)")),
    }
}

fn protocol(e: &types::ProtocolEntry, f: &str) -> Result<Port, FieldError> {
    let given: Vec<(&str, Option<&types::ProtocolPort>)> = [
        ("tcp", e.tcp.as_ref()),
        ("udp", e.udp.as_ref()),
        ("sctp", e.sctp.as_ref()),
    ]
    .into_iter()
    .filter(|(_, p)| p.is_some())
    .collect();
    match (given.as_slice(), &e.destination_named_port) {
        ([], Some(name)) if name.is_empty() => {
            err(format!("{f}.destinationNamedPort"), "must not be empty")
        }
        ([], Some(name)) => Ok(Port::Named(name.clone())),
        ([(proto, Some(p))], None) => {
            let f = format!("{f}.{proto}");
            let protocol = Protocol::parse_lower(proto).expect("one of tcp, udp, sctp");
            let Some(dp) = &p.destination_port else {
                return err(
                    format!("{f}.destinationPort"),
                    "required (for every port, write range: {start: 1, end: 65535})",
                );
            };
            let f = format!("{f}.destinationPort");
            match (dp.number, &dp.range) {
                (Some(n), None) => {
                    let n = port_number(Some(n), &format!("{f}.number"))?;
                    Ok(Port::Range(protocol, n, n))
                }
                (None, Some(r)) => {
                    let start = port_number(r.start, &format!("{f}.range.start"))?;
                    let end = port_number(r.end, &format!("{f}.range.end"))?;
                    if start >= end {
                        return err(
                            format!("{f}.range"),
                            format!("start {start} must be below end {end} (a single port is written as number)"),
                        );
                    }
                    Ok(Port::Range(protocol, start, end))
                }
                _ => err(f, "needs exactly one of number or range"),
            }
        }
        _ => err(
            f,
            "needs exactly one of tcp, udp, sctp or destinationNamedPort",
        ),
    }
}

/// One rule, validated field by field in the order the API documents them. Longer than a
/// screen on purpose: each check names its field path, and reading them in one place is
/// how a reader compares them with the API's validation.
fn rule(r: &types::Rule, f: &str, dir: crate::policy::Direction) -> Result<Rule, FieldError> {
    use crate::policy::Direction::{Egress, Ingress};
    if let Some(n) = &r.name {
        if n.chars().count() > RULE_NAME_MAX {
            return err(
                format!("{f}.name"),
                format!("longer than {RULE_NAME_MAX} characters"),
            );
        }
    }
    let action = match r.action.as_deref() {
        None => return err(format!("{f}.action"), "required"),
        Some("Accept") => Action::Accept,
        Some("Deny") => Action::Deny,
        Some("Pass") => Action::Pass,
        Some(other) => {
            return err(
                format!("{f}.action"),
                format!("unknown action {other:?} (expected Accept, Deny or Pass)"),
            )
        }
    };
    let (list, other, name) = match dir {
        Ingress => (&r.from, &r.to, "from"),
        Egress => (&r.to, &r.from, "to"),
    };
    if other.is_some() {
        let wrong = if dir == Ingress { "to" } else { "from" };
        return err(
            format!("{f}.{wrong}"),
            format!("{dir} rules have {name}, not {wrong}"),
        );
    }
    let field = format!("{f}.{name}");
    let peers = items(list.as_ref(), &field, true)?
        .iter()
        .enumerate()
        .map(|(i, p)| peer(p, &format!("{field}[{i}]"), dir))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = match &r.protocols {
        None => None,
        Some(list) => {
            let field = format!("{f}.protocols");
            let list = items(Some(list), &field, true)?;
            Some(
                list.iter()
                    .enumerate()
                    .map(|(i, e)| protocol(e, &format!("{field}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    let named = ports
        .iter()
        .flatten()
        .position(|p| matches!(p, Port::Named(_)));
    if let Some(i) = named {
        let bad = peers
            .iter()
            .any(|p| matches!(p, Peer::Networks(_) | Peer::Nodes(_) | Peer::DomainNames(_)));
        if bad {
            return err(
                format!("{f}.protocols[{i}].destinationNamedPort"),
                "a rule with networks, nodes or domainNames peers cannot use destinationNamedPort",
            );
        }
    }
    if action != Action::Accept && peers.iter().any(|p| matches!(p, Peer::DomainNames(_))) {
        return err(field, "domainNames peers are only allowed in Accept rules");
    }
    Ok(Rule {
        name: r.name.clone(),
        action,
        peers,
        ports,
    })
}

/// NPEP-133 scopes `domainNames` to the Admin tier: a NetworkPolicy cannot name a domain,
/// so a namespace admin could not replace a Baseline rule that did (the NPEP's "Goals").
fn baseline_without_domains(egress: &[Rule]) -> Result<(), FieldError> {
    for (ri, rule) in egress.iter().enumerate() {
        if let Some(pi) = rule
            .peers
            .iter()
            .position(|p| matches!(p, Peer::DomainNames(_)))
        {
            return err(
                format!("spec.egress[{ri}].to[{pi}].domainNames"),
                "domainNames peers are only allowed in Admin-tier policies (NPEP-133), not in tier Baseline",
            );
        }
    }
    Ok(())
}

fn typed(value: &Value) -> Result<types::ClusterNetworkPolicy, FieldError> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| FieldError {
        field: e.path().to_string(),
        problem: e.into_inner().to_string(),
    })
}

/// Validates a ClusterNetworkPolicy (a JSON value with nulls pruned).
pub fn parse(value: &Value) -> Result<ClusterPolicy, FieldError> {
    use crate::policy::Direction::{Egress, Ingress};
    let cnp = typed(value)?;
    let name = cnp.metadata.name.clone().unwrap_or_default();
    check_name(&name).or_else(|p| err("metadata.name", p))?;
    let mode = crate::policy::Mode::from_annotations(cnp.metadata.annotations.as_ref())?;
    let Some(spec) = &cnp.spec else {
        return err("spec", "required");
    };
    let tier = match spec.tier.as_deref() {
        None => return err("spec.tier", "required"),
        Some("Admin") => Tier::Admin,
        Some("Baseline") => Tier::Baseline,
        Some(other) => {
            return err(
                "spec.tier",
                format!("unknown tier {other:?} (expected Admin or Baseline)"),
            )
        }
    };
    let priority = match spec.priority {
        None => return err("spec.priority", "required"),
        Some(p) if (0..=PRIORITY_MAX).contains(&p) => p as i32,
        Some(p) => return err("spec.priority", format!("{p} is outside 0..{PRIORITY_MAX}")),
    };
    let subject = subject(spec.subject.as_ref())?;
    let rules = |list: Option<&Vec<types::Rule>>, dir| {
        let f = format!("spec.{dir}");
        items(list, &f, false)?
            .iter()
            .enumerate()
            .map(|(i, r)| rule(r, &format!("{f}[{i}]"), dir))
            .collect::<Result<Vec<_>, _>>()
    };
    let ingress = rules(spec.ingress.as_ref(), Ingress)?;
    let egress = rules(spec.egress.as_ref(), Egress)?;
    if tier == Tier::Baseline {
        baseline_without_domains(&egress)?;
    }
    Ok(ClusterPolicy {
        name,
        tier,
        priority,
        subject,
        ingress,
        egress,
        fail_closed: false,
        mode,
    })
}

/// What is left to enforce of a policy that failed validation: a Deny of everything at
/// its tier and priority, for the pods its subject selects, in the directions it has
/// rules for. What cannot be read is read the safe way: tier Admin, priority 0 (before
/// every valid Admin policy but those of priority 0 named before it), every pod, both
/// directions.
pub fn fail_closed(value: &Value) -> ClusterPolicy {
    let spec = value.get("spec");
    let tier = match spec.and_then(|s| s.get("tier")).and_then(Value::as_str) {
        Some("Baseline") => Tier::Baseline,
        _ => Tier::Admin,
    };
    let priority = spec
        .and_then(|s| s.get("priority"))
        .and_then(Value::as_i64)
        .filter(|p| (0..=PRIORITY_MAX).contains(p))
        .unwrap_or(0) as i32;
    let subject = spec
        .and_then(|s| s.get("subject"))
        .and_then(|s| serde_json::from_value::<types::Subject>(s.clone()).ok())
        .and_then(|s| subject(Some(&s)).ok())
        .unwrap_or(Subject::Namespaces(Selector::everything()));
    // A direction counts as having rules when its list is there and not empty, or when
    // it is there and unreadable.
    let has = |dir: &str| {
        let v = spec.and_then(|s| s.get(dir));
        match (spec, v) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(Value::Array(a))) => !a.is_empty(),
            (Some(_), Some(_)) => true,
        }
    };
    let deny = || Rule {
        name: None,
        action: Action::Deny,
        peers: Vec::new(),
        ports: None,
    };
    let (mut ing, mut eg) = (has("ingress"), has("egress"));
    if !ing && !eg && spec.is_some_and(|s| !s.is_object()) {
        (ing, eg) = (true, true);
    }
    ClusterPolicy {
        name: value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        tier,
        priority,
        subject,
        ingress: if ing { vec![deny()] } else { Vec::new() },
        egress: if eg { vec![deny()] } else { Vec::new() },
        fail_closed: true,
        mode: fail_closed_mode(value),
    }
}

/// The mode of a policy that failed validation (see [`crate::policy::Mode::fail_closed`]).
fn fail_closed_mode(value: &Value) -> crate::policy::Mode {
    let annotation = value
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .and_then(|a| a.get(crate::policy::MODE_ANNOTATION))
        .and_then(Value::as_str);
    match annotation {
        Some("audit") => crate::policy::Mode::Audit,
        _ => crate::policy::Mode::Enforce,
    }
}

/// A ClusterNetworkPolicy as read: its metadata, and the whole object with nulls pruned
/// (validated when the index takes it, so that one that fails can still be enforced
/// fail-closed from what it says).
#[derive(Debug, Clone, PartialEq)]
pub struct CnpObject {
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub value: Value,
}

impl CnpObject {
    /// From a JSON value: prunes nulls and reads the metadata. The error is a field path
    /// and problem.
    pub fn from_value(mut value: Value) -> Result<CnpObject, FieldError> {
        prune_nulls(&mut value);
        let metadata = match value.get("metadata") {
            None => Default::default(),
            Some(m) => serde_path_to_error::deserialize(m.clone()).map_err(|e| FieldError {
                field: format!("metadata.{}", e.path()),
                problem: e.into_inner().to_string(),
            })?,
        };
        Ok(CnpObject { metadata, value })
    }
}
