//! The ClusterNetworkPolicy object as the API serves it (`policy.networking.k8s.io`
//! v1alpha2 and v1beta1, one schema), as plain serde types: k8s-openapi has none for this
//! CRD. Only shapes live here; what the values mean and whether they are valid is
//! [`super`]'s job. Unknown fields are refused, as `kubectl apply` (strict field
//! validation) refuses them, so that a misspelt field is an error and not a rule that
//! silently matches more than it says.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The two `apiVersion`s that carry the same schema.
pub const API_VERSIONS: [&str; 2] = [
    "policy.networking.k8s.io/v1alpha2",
    "policy.networking.k8s.io/v1beta1",
];

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicy {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<Spec>,
    /// Conditions written by implementations; not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub tier: Option<String>,
    pub priority: Option<i64>,
    pub subject: Option<Subject>,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacedPod {
    pub namespace_selector: Option<LabelSelector>,
    pub pod_selector: Option<LabelSelector>,
}

/// An ingress or an egress rule: ingress has `from`, egress `to`; the other is refused
/// by validation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: Option<String>,
    pub action: Option<String>,
    pub from: Option<Vec<Peer>>,
    pub to: Option<Vec<Peer>>,
    pub protocols: Option<Vec<ProtocolEntry>>,
}

/// Ingress and egress peers in one type, so that an egress-only field in an ingress
/// rule is reported by name rather than as an unknown field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
    pub networks: Option<Vec<String>>,
    pub nodes: Option<LabelSelector>,
    pub domain_names: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolEntry {
    pub tcp: Option<ProtocolPort>,
    pub udp: Option<ProtocolPort>,
    pub sctp: Option<ProtocolPort>,
    pub destination_named_port: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolPort {
    pub destination_port: Option<DestinationPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationPort {
    pub number: Option<i64>,
    pub range: Option<PortRange>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    pub start: Option<i64>,
    pub end: Option<i64>,
}
