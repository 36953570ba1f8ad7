//! The table of resource types the fake server knows: group, version, plural, kind and
//! scope, and the lookups by URL path segment and by `apiVersion`/`kind`. A resource
//! served at several versions of one group (a CRD with two served versions) has one row
//! per version and one store: the first row, its storage version.

/// One served resource type (a REST collection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    /// The plural path segment, e.g. `pods`.
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// What `kubectl get ns` and the like resolve through discovery.
    pub short_names: &'static [&'static str],
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods` or `networkpolicies.networking.k8s.io`, as the real server names
    /// resources in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The singular name (lowercased kind).
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }

    /// Whether objects of this type are Events (kept for [`crate::FakeApiServer::events`]).
    pub fn is_event(&self) -> bool {
        self.kind == "Event"
    }
}

/// Every resource type served, in discovery order.
pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true,
        short_names: &["netpol"],
    },
    // The network-policy-api CRD as v0.3.0 installs it: v1beta1 (the storage version,
    // preferred) and v1alpha2, both served, same schema. v0.3.1 dropped the short name;
    // it is kept so that `kubectl get cnp` works against either release's CRD.
    ResourceType {
        group: "policy.networking.k8s.io",
        version: "v1beta1",
        plural: "clusternetworkpolicies",
        kind: "ClusterNetworkPolicy",
        namespaced: false,
        short_names: &["cnp"],
    },
    ResourceType {
        group: "policy.networking.k8s.io",
        version: "v1alpha2",
        plural: "clusternetworkpolicies",
        kind: "ClusterNetworkPolicy",
        namespaced: false,
        short_names: &["cnp"],
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
    },
];

/// Index into [`RESOURCES`] of the collection at `/api[s]/{group}/{version}/{plural}`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Index into [`RESOURCES`] for an object's `apiVersion` and `kind`. Without an
/// `apiVersion`, or `kind` alone, the first type of that kind matches (so `Event` means
/// `v1` Event); the kind is matched case-insensitively, and plurals are accepted too.
pub fn by_kind(api_version: Option<&str>, kind: &str) -> Option<usize> {
    let matches_kind = |r: &ResourceType| r.kind.eq_ignore_ascii_case(kind) || r.plural == kind;
    match api_version {
        Some(av) if !av.is_empty() => RESOURCES
            .iter()
            .position(|r| matches_kind(r) && r.api_version() == av),
        _ => RESOURCES.iter().position(matches_kind),
    }
}

/// The row whose store holds objects of `res`: the first row of the same group and
/// plural (the storage version). Every version reads and writes the same objects.
pub fn storage(res: usize) -> usize {
    let r = &RESOURCES[res];
    RESOURCES
        .iter()
        .position(|s| s.group == r.group && s.plural == r.plural)
        .unwrap_or(res)
}

/// One API group other than core with its versions, the preferred one first.
pub type Group = (&'static str, Vec<&'static str>);

/// The API groups other than core, each once, in table order.
pub fn groups() -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let np = by_path("networking.k8s.io", "v1", "networkpolicies").unwrap();
        assert_eq!(RESOURCES[np].kind, "NetworkPolicy");
        assert_eq!(
            by_kind(Some("networking.k8s.io/v1"), "NetworkPolicy"),
            Some(np)
        );
        assert_eq!(by_kind(None, "NetworkPolicy"), Some(np));
        let ev = by_kind(Some("events.k8s.io/v1"), "Event").unwrap();
        assert_eq!(RESOURCES[ev].group, "events.k8s.io");
        assert_eq!(RESOURCES[by_kind(None, "Event").unwrap()].group, "");
        assert_eq!(by_kind(Some("apps/v1"), "Deployment"), None);
        assert_eq!(
            RESOURCES[by_kind(None, "pod").unwrap()].list_kind(),
            "PodList"
        );
        assert_eq!(
            groups(),
            vec![
                ("networking.k8s.io", vec!["v1"]),
                ("policy.networking.k8s.io", vec!["v1beta1", "v1alpha2"]),
                ("events.k8s.io", vec!["v1"]),
            ]
        );
        let beta = by_kind(
            Some("policy.networking.k8s.io/v1beta1"),
            "ClusterNetworkPolicy",
        )
        .unwrap();
        let alpha = by_path(
            "policy.networking.k8s.io",
            "v1alpha2",
            "clusternetworkpolicies",
        )
        .unwrap();
        assert_ne!(alpha, beta);
        assert_eq!((storage(alpha), storage(beta)), (beta, beta));
        assert_eq!(by_kind(None, "clusternetworkpolicies"), Some(beta));
        assert_eq!(storage(np), np);
    }
}
