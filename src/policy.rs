//! A NetworkPolicy, validated and reduced to what enforcement needs.
//!
//! Converting a `networking.k8s.io/v1` NetworkPolicy into a [`Policy`] is where every
//! semantic check of the spec happens (CIDRs, excepts, ports, protocols, selectors), so
//! that later stages never see an invalid value. The API server's defaulting is applied
//! here too (policyTypes, protocol TCP). Knows nothing of pods or of nftables.

use std::fmt;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::selector::{Selector, SelectorError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The name Kubernetes uses: `TCP`, `UDP`, `SCTP`.
    pub fn parse_k8s(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lowercase, as nft and the command line write it: `tcp`.
    pub fn parse_lower(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The annotation that puts a NetworkPolicy or ClusterNetworkPolicy in audit mode.
pub const MODE_ANNOTATION: &str = "nftpol.io/mode";

/// Whether a policy is enforced or only audited (`nftpol.io/mode: audit`): an audited
/// policy is compiled and judged, never enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }

    /// The mode `annotations` give (`enforce` when the annotation is absent); any value
    /// but `enforce` or `audit` is an error of the annotation's field.
    pub fn from_annotations(
        annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<Mode, FieldError> {
        match annotations
            .and_then(|a| a.get(MODE_ANNOTATION))
            .map(String::as_str)
        {
            None | Some("enforce") => Ok(Mode::Enforce),
            Some("audit") => Ok(Mode::Audit),
            Some(other) => err(
                format!("metadata.annotations[{MODE_ANNOTATION:?}]"),
                format!("unknown mode {other:?} (expected enforce or audit)"),
            ),
        }
    }

    /// The mode of a policy that failed validation: audit only when the annotation says
    /// exactly that (an audited policy never enforces, even fail-closed); enforce
    /// otherwise, so that a mistyped mode fails closed.
    pub fn fail_closed(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Mode {
        Mode::from_annotations(annotations).unwrap_or(Mode::Enforce)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which ports of a protocol a rule port covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// A protocol with no port: every port.
    Any,
    /// `port` alone (start == end) or `port`..=`endPort`.
    Range(u16, u16),
    /// A named port, resolved against the destination pod's container ports.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub protocol: Protocol,
    pub port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Pods chosen by `pods` in the namespaces chosen by `namespaces`; `None` means the
    /// policy's own namespace (a podSelector without a namespaceSelector).
    Pods {
        namespaces: Option<Selector>,
        pods: Selector,
    },
    /// `cidr` minus every `except`.
    Block { cidr: IpNet, except: Vec<IpNet> },
}

/// One ingress or egress rule. `None` peers or ports mean every peer or every port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<Port>>,
}

/// A validated policy. `ingress` is `Some` when the policy isolates the pods it selects for
/// ingress (an empty list then allows nothing); likewise `egress`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    /// `nftpol.io/mode`: an audited policy is judged, not enforced.
    pub mode: Mode,
}

impl Policy {
    /// `namespace/name`, as logs and comments print it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// What is left to enforce of a policy that failed validation: the pods it selects are
    /// isolated in the directions it names, and nothing is allowed (fail closed). `None` when
    /// not even the selector could be read; the caller then isolates the whole namespace.
    pub fn fail_closed(np: &NetworkPolicy) -> Option<Policy> {
        let spec = np.spec.as_ref();
        let pod_selector = match spec.and_then(|s| s.pod_selector.as_ref()) {
            Some(sel) => Selector::parse(sel).ok()?,
            None => Selector::everything(),
        };
        let (ing, eg) = policy_types(np).unwrap_or((true, true));
        Some(Policy {
            namespace: np.metadata.namespace.clone().unwrap_or_default(),
            name: np.metadata.name.clone().unwrap_or_default(),
            pod_selector,
            ingress: ing.then(Vec::new),
            egress: eg.then(Vec::new),
            mode: Mode::fail_closed(np.metadata.annotations.as_ref()),
        })
    }
}

/// A field path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn err<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        problem: problem.into(),
    })
}

fn selector(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    field: &str,
) -> Result<Selector, FieldError> {
    Selector::parse(sel).map_err(|SelectorError { field: f, problem }| FieldError {
        field: format!("{field}.{f}"),
        problem,
    })
}

/// (isolates ingress, isolates egress), with the API server's defaulting.
fn policy_types(np: &NetworkPolicy) -> Result<(bool, bool), FieldError> {
    let Some(spec) = np.spec.as_ref() else {
        return Ok((true, false));
    };
    match spec.policy_types.as_deref() {
        None | Some([]) => Ok((true, spec.egress.as_ref().is_some_and(|e| !e.is_empty()))),
        Some(types) => {
            if types.len() > 2 {
                return err(
                    "spec.policyTypes",
                    format!("{} entries; at most two (Ingress, Egress)", types.len()),
                );
            }
            let (mut i, mut e) = (false, false);
            for (n, t) in types.iter().enumerate() {
                let repeated = |t: &str| {
                    err(
                        format!("spec.policyTypes[{n}]"),
                        format!("{t:?} is given twice"),
                    )
                };
                match t.as_str() {
                    "Ingress" if i => return repeated(t),
                    "Egress" if e => return repeated(t),
                    "Ingress" => i = true,
                    "Egress" => e = true,
                    other => {
                        return err(
                            format!("spec.policyTypes[{n}]"),
                            format!("unknown policy type {other:?} (expected Ingress or Egress)"),
                        )
                    }
                }
            }
            Ok((i, e))
        }
    }
}

/// Parses a CIDR. One with host bits set (`10.0.0.1/24`) means its network, as older API
/// servers stored it; clusters still hold such policies, so it is kept, with a warning.
fn parse_net(s: &str, field: &str, warnings: &mut Vec<FieldError>) -> Result<IpNet, FieldError> {
    match s.parse::<IpNet>() {
        Ok(net) => {
            let canonical = net.trunc();
            if canonical != net {
                warnings.push(FieldError {
                    field: field.into(),
                    problem: format!(
                        "{s} has host bits set; read as {canonical} (current API servers refuse it)"
                    ),
                });
            }
            Ok(canonical)
        }
        Err(_) => err(
            field,
            format!("{s:?} is not a valid CIDR (address/prefix-length)"),
        ),
    }
}

fn peer(
    p: &NetworkPolicyPeer,
    field: &str,
    warnings: &mut Vec<FieldError>,
) -> Result<Peer, FieldError> {
    if let Some(block) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            return err(
                field,
                "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
            );
        }
        let cidr = parse_net(&block.cidr, &format!("{field}.ipBlock.cidr"), warnings)?;
        let mut except = Vec::new();
        for (i, e) in block.except.iter().flatten().enumerate() {
            let f = format!("{field}.ipBlock.except[{i}]");
            let net = parse_net(e, &f, warnings)?;
            let same_family = matches!(
                (&cidr, &net),
                (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
            );
            if !same_family {
                return err(
                    f,
                    format!(
                        "{e} is not of the same address family as cidr {}",
                        block.cidr
                    ),
                );
            }
            if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                return err(f, format!("{e} is not strictly inside cidr {}", block.cidr));
            }
            except.push(net);
        }
        except.sort();
        except.dedup();
        return Ok(Peer::Block { cidr, except });
    }
    let namespaces = p
        .namespace_selector
        .as_ref()
        .map(|s| selector(s, &format!("{field}.namespaceSelector")))
        .transpose()?;
    let pods = match &p.pod_selector {
        Some(s) => selector(s, &format!("{field}.podSelector"))?,
        None if namespaces.is_some() => Selector::everything(),
        None => {
            return err(
                field,
                "a peer needs at least one of podSelector, namespaceSelector or ipBlock",
            )
        }
    };
    Ok(Peer::Pods { namespaces, pods })
}

fn is_port_name(s: &str) -> bool {
    // IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter, no leading,
    // trailing or double '-'.
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn port(p: &NetworkPolicyPort, field: &str) -> Result<Port, FieldError> {
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(s) => match Protocol::parse_k8s(s) {
            Some(proto) => proto,
            None => {
                return err(
                    format!("{field}.protocol"),
                    format!("unknown protocol {s:?} (expected TCP, UDP or SCTP)"),
                )
            }
        },
    };
    let number = |n: i32, f: String| -> Result<u16, FieldError> {
        if (1..=65535).contains(&n) {
            Ok(n as u16)
        } else {
            err(f, format!("{n} is not a port number (1-65535)"))
        }
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return err(format!("{field}.endPort"), "endPort needs port"),
        (Some(IntOrString::Int(n)), end) => {
            let start = number(*n, format!("{field}.port"))?;
            let end = match end {
                None => start,
                Some(e) => {
                    let e = number(e, format!("{field}.endPort"))?;
                    if e < start {
                        return err(
                            format!("{field}.endPort"),
                            format!("endPort {e} is below port {start}"),
                        );
                    }
                    e
                }
            };
            PortMatch::Range(start, end)
        }
        (Some(IntOrString::String(s)), end) => {
            if end.is_some() {
                return err(
                    format!("{field}.endPort"),
                    format!("endPort cannot be used with the named port {s:?}"),
                );
            }
            if s.parse::<i32>().is_ok() {
                // The API server refuses this too: a port name needs a letter.
                return err(
                    format!("{field}.port"),
                    format!("{s:?} is a string of digits: write a port number without quotes, or a port name"),
                );
            } else if is_port_name(s) {
                PortMatch::Name(s.clone())
            } else {
                return err(
                    format!("{field}.port"),
                    format!("{s:?} is neither a port number nor a valid port name"),
                );
            }
        }
    };
    Ok(Port { protocol, port })
}

fn rule(
    peers: Option<&Vec<NetworkPolicyPeer>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    field: &str,
    peer_field: &str,
    warnings: &mut Vec<FieldError>,
) -> Result<Rule, FieldError> {
    let peers = match peers {
        None => None,
        Some(list) if list.is_empty() => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| peer(p, &format!("{field}.{peer_field}[{i}]"), warnings))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ports = match ports {
        None => None,
        Some(list) if list.is_empty() => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(p, &format!("{field}.ports[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Rule { peers, ports })
}

impl TryFrom<&NetworkPolicy> for Policy {
    type Error = FieldError;

    /// [`Policy::parse`] without its warnings.
    fn try_from(np: &NetworkPolicy) -> Result<Self, FieldError> {
        Policy::parse(np).map(|(policy, _)| policy)
    }
}

impl Policy {
    /// Validates a NetworkPolicy. Besides the policy, says what it accepted but a current
    /// API server would not (each a field and the problem), for the caller to warn about.
    pub fn parse(np: &NetworkPolicy) -> Result<(Policy, Vec<FieldError>), FieldError> {
        let mut warnings = Vec::new();
        let policy = Self::parse_into(np, &mut warnings)?;
        Ok((policy, warnings))
    }

    fn parse_into(
        np: &NetworkPolicy,
        warnings: &mut Vec<FieldError>,
    ) -> Result<Policy, FieldError> {
        let namespace = match np.metadata.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => return err("metadata.namespace", "a NetworkPolicy needs a namespace"),
        };
        let name = match np.metadata.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return err("metadata.name", "missing name"),
        };
        let mode = Mode::from_annotations(np.metadata.annotations.as_ref())?;
        let (isolate_in, isolate_eg) = policy_types(np)?;
        let Some(spec) = np.spec.as_ref() else {
            return Ok(Policy {
                namespace,
                name,
                pod_selector: Selector::everything(),
                ingress: Some(Vec::new()),
                egress: None,
                mode,
            });
        };
        let pod_selector = match &spec.pod_selector {
            Some(sel) => selector(sel, "spec.podSelector")?,
            None => Selector::everything(),
        };
        let mut ingress = Vec::new();
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let f = format!("spec.ingress[{i}]");
            ingress.push(rule(
                r.from.as_ref(),
                r.ports.as_ref(),
                &f,
                "from",
                warnings,
            )?);
        }
        let mut egress = Vec::new();
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let f = format!("spec.egress[{i}]");
            egress.push(rule(r.to.as_ref(), r.ports.as_ref(), &f, "to", warnings)?);
        }
        Ok(Policy {
            namespace,
            name,
            pod_selector,
            // Rules of a direction the policy does not isolate are ignored, as the API
            // reference says.
            ingress: isolate_in.then_some(ingress),
            egress: isolate_eg.then_some(egress),
            mode,
        })
    }
}
