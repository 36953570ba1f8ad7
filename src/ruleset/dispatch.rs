//! The dispatch maps: each pod address to the chain of the pod in each direction it has
//! one (NetworkPolicy isolation or ClusterNetworkPolicy tiers), built whole or patched
//! for the pods a change touched. Owns the map entries only, not the chains.

use crate::graph::PodKey;
use std::collections::BTreeMap;

use super::model::*;
use super::names;
use super::tier_chain;
use crate::graph::{PodNode, PolicyGraph};
use crate::policy::Direction;

/// A pod's dispatch-map entries: (map name, address -> jump to its chain), for each
/// direction it has a chain in (NetworkPolicy or tiers) and each of its addresses.
fn dispatch_entries(pod: &PodNode) -> Vec<(String, MapElement)> {
    let mut out = Vec::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        if !tier_chain::has_chain(pod, dir) {
            continue;
        }
        let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
        for ip in &pod.ips {
            let field = match ip {
                std::net::IpAddr::V4(a) => Field::Ipv4(*a, *a),
                std::net::IpAddr::V6(a) => Field::Ipv6(*a, *a),
            };
            out.push((
                names::dispatch_map(dir, ip.is_ipv6()),
                MapElement {
                    key: Key::from([field]),
                    verdict: Verdict::Jump(chain.clone()),
                },
            ));
        }
    }
    out
}

/// Replaces the dispatch-map entries of `pods` only, leaving every other pod's entries as
/// they are. Declines (returns false; the caller then rebuilds the maps whole) when two
/// pods claim one address, where [`dispatch_maps`] chooses between them, or when the maps
/// do not end up with exactly one entry per (pod with a chain, direction, address), as after
/// such a choice.
pub(super) fn patch_dispatch_maps(
    model: &mut Ruleset,
    graph: &PolicyGraph,
    pods: &std::collections::BTreeSet<PodKey>,
) -> bool {
    const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];
    let mut seen = std::collections::HashSet::new();
    // [direction][is IPv6]
    let mut expected = [[0usize; 2]; 2];
    for pod in graph.pods.values() {
        for ip in &pod.ips {
            if !seen.insert(*ip) {
                return false;
            }
            for (d, dir) in DIRECTIONS.into_iter().enumerate() {
                if tier_chain::has_chain(pod, dir) {
                    expected[d][ip.is_ipv6() as usize] += 1;
                }
            }
        }
    }
    let touched: std::collections::HashSet<String> = pods
        .iter()
        .flat_map(|(ns, name)| DIRECTIONS.map(|dir| names::pod_chain(dir, ns, name)))
        .collect();
    for (_, elements) in model.maps_elements_mut() {
        elements.retain(|e| !matches!(&e.verdict, Verdict::Jump(c) if touched.contains(c)));
    }
    for pod in pods.iter().filter_map(|key| graph.pods.get(key)) {
        for (name, element) in dispatch_entries(pod) {
            match model.map_elements_mut(&name) {
                Some(elements) => elements.push(element),
                None => return false,
            }
        }
    }
    for (_, elements) in model.maps_elements_mut() {
        elements.sort();
    }
    DIRECTIONS.into_iter().enumerate().all(|(d, dir)| {
        [false, true].into_iter().all(|v6| {
            let name = names::dispatch_map(dir, v6);
            model
                .map(&name)
                .is_some_and(|m| m.elements.len() == expected[d][v6 as usize])
        })
    })
}

pub(super) fn dispatch_maps(graph: &PolicyGraph) -> Vec<Map> {
    let mut map_elements: BTreeMap<String, Vec<MapElement>> = BTreeMap::new();
    for pod in graph.pods.values() {
        for (map, element) in dispatch_entries(pod) {
            map_elements.entry(map).or_default().push(element);
        }
    }
    let mut maps = Vec::new();
    for dir in [Direction::Egress, Direction::Ingress] {
        for v6 in [false, true] {
            let name = names::dispatch_map(dir, v6);
            let mut elements = map_elements.remove(&name).unwrap_or_default();
            elements.sort();
            // Two pods claiming one address (a stale object): keep the first by chain name,
            // so the map stays loadable and the choice is stable.
            elements.dedup_by(|b, a| a.key == b.key);
            maps.push(Map {
                name,
                key: vec![if v6 {
                    KeyType::Ipv6Addr
                } else {
                    KeyType::Ipv4Addr
                }],
                comment: Some(names::comment(&format!("pod address -> its {dir} chain"))),
                elements,
            });
        }
    }
    maps.sort_by(|a, b| a.name.cmp(&b.name));
    maps
}
