//! Addresses more than one live pod holds: such an address names no one pod.

use std::net::IpAddr;

use crate::index::Index;

/// The addresses that more than one live pod (with an address, not finished, not
/// hostNetwork) holds, each with those pods' `ns/name`, sorted. Such an address cannot
/// name one pod, and only one of them gets its traffic dispatched.
pub fn shared_addresses(index: &Index) -> std::collections::BTreeMap<IpAddr, Vec<String>> {
    let mut holders: std::collections::BTreeMap<IpAddr, Vec<String>> = Default::default();
    for pod in index.pods().filter(|p| p.is_policy_pod()) {
        for ip in &pod.ips {
            holders
                .entry(*ip)
                .or_default()
                .push(format!("{}/{}", pod.namespace, pod.name));
        }
    }
    holders.retain(|_, pods| pods.len() > 1);
    for pods in holders.values_mut() {
        pods.sort();
    }
    holders
}

/// The live pods that hold `ip`, when more than one does.
pub(super) fn ambiguous(index: &Index, ip: IpAddr) -> Option<Vec<String>> {
    let mut pods: Vec<String> = index
        .pods()
        .filter(|p| p.is_policy_pod() && p.ips.contains(&ip))
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    pods.sort();
    (pods.len() > 1).then_some(pods)
}
