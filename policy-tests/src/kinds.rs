//! Which of a case's objects reach nftpol (every backend, the controller included, judges
//! a case with ClusterNetworkPolicies once nftpol reads them). Owns the one switch that the merge of the ClusterNetworkPolicy
//! input branch flips ([`NFTPOL_READS_CNP`]); knows nothing of how nftpol reads them.
//!
//! Until `nftpol::input` reads `ClusterNetworkPolicy` and `Node` objects (it skips them
//! today, returning `Ok(None)`), the harness keeps them from the index and the backends,
//! and every case holding a ClusterNetworkPolicy is a SKIP with its reason: judging it
//! without the policies would fail every cell it is about.

use serde_json::Value;

/// Whether this build's `nftpol::input` reads ClusterNetworkPolicy and Node objects.
/// Set to `true` when the branch that adds `Kind::ClusterNetworkPolicy` and `Kind::Node`
/// is merged: nothing else in the harness changes.
pub const NFTPOL_READS_CNP: bool = true;

pub const CNP_KIND: &str = "ClusterNetworkPolicy";

/// The `apiVersion`s a case's ClusterNetworkPolicy may have (same schema).
pub const CNP_API_VERSIONS: [&str; 2] = [
    "policy.networking.k8s.io/v1alpha2",
    "policy.networking.k8s.io/v1beta1",
];

/// Why a case with ClusterNetworkPolicies is skipped on every backend of this build.
pub const NOT_READ_YET: &str = "nftpol on this branch does not read ClusterNetworkPolicy yet \
     (policy-tests/src/kinds.rs NFTPOL_READS_CNP)";

fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

pub fn is_cnp(v: &Value) -> bool {
    kind(v) == CNP_KIND
}

/// Whether `v` goes to nftpol's index and the backends in this build.
pub fn for_nftpol(v: &Value) -> bool {
    NFTPOL_READS_CNP || !matches!(kind(v), CNP_KIND | "Node")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter() {
        let cnp = json!({"kind": "ClusterNetworkPolicy"});
        let node = json!({"kind": "Node"});
        let pod = json!({"kind": "Pod"});
        assert!(is_cnp(&cnp) && !is_cnp(&node));
        assert!(for_nftpol(&pod));
        assert_eq!(for_nftpol(&cnp), NFTPOL_READS_CNP);
        assert_eq!(for_nftpol(&node), NFTPOL_READS_CNP);
    }
}
