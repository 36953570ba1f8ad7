//! A borrowed part of a ruleset model: the objects a change to some pods can touch (their
//! chains and sets, the shared sets those chains look up, the dispatch maps, the
//! known-pods sets, the DNS steering's sets), or the whole model.
//!
//! An incremental update diffs two views of this kind, one of the model the kernel holds
//! and one of the new model, so its cost follows the pods a change touched and nothing is
//! copied on the way. Plain data like the model; must not know about netlink.

use crate::graph::PodKey;
use std::collections::BTreeSet;

use super::model::*;
use super::names::{pod_chains, DNS_ALIVE_SET, DNS_POD_SETS, DNS_SERVER_SETS, KNOWN_PODS};

/// The names of the objects a change to some pods can touch, in two models (what the
/// kernel holds and the new model): the pods' own chains and sets, the known-pods sets,
/// and the shared sets their chains look up in either model (so a set they stop using is
/// seen to go, and one they start using to come).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodObjects {
    names: BTreeSet<String>,
}

impl PodObjects {
    /// Found through the pods' chains: every set a pod has or shares is one its chains
    /// look up (its tier sets and the shared NetworkPolicy sets), so a walk of the chains
    /// finds them without spelling out the names a pod could have.
    pub fn of(pods: &BTreeSet<PodKey>, models: &[&Ruleset]) -> PodObjects {
        // The known pods and the DNS steering's sets follow every pod's change (the
        // steering chain, a base chain, is in every view).
        let mut names: BTreeSet<String> = KNOWN_PODS
            .iter()
            .chain(DNS_POD_SETS.iter())
            .chain(DNS_SERVER_SETS.iter())
            .chain([DNS_ALIVE_SET].iter())
            .map(|s| s.to_string())
            .collect();
        for (ns, pod) in pods {
            for chain in pod_chains(ns, pod) {
                for m in models {
                    let Some(c) = m.chain(&chain) else { continue };
                    let base = |s: &&str| m.set(s).is_some_and(|s| s.role.base());
                    names.extend(c.lookups().filter(|s| !base(s)).map(String::from));
                }
                names.insert(chain);
            }
        }
        PodObjects { names }
    }

    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

/// Borrowed objects of one table, in the model's order: sets and maps by name, base
/// chains first and then regular chains by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<'a> {
    pub family: Family,
    pub name: &'a str,
    pub comment: Option<&'a str>,
    pub sets: Vec<&'a Set>,
    pub maps: Vec<&'a Map>,
    pub chains: Vec<&'a Chain>,
}

impl<'a> View<'a> {
    /// Every object of `model`.
    pub fn whole(model: &'a Ruleset) -> View<'a> {
        View {
            family: model.family,
            name: &model.name,
            comment: model.comment.as_deref(),
            sets: model.sets().iter().collect(),
            maps: model.maps().iter().collect(),
            chains: model.chains().iter().collect(),
        }
    }

    /// What a change to some pods can touch in `model` (`objects`): their sets and
    /// chains, the shared sets they look up, the base chains (the input hook comes and goes
    /// with ClusterNetworkPolicy egress tiers), the dispatch and input maps and the
    /// known-pods sets. Found by name lookups, not by a walk of the model.
    pub fn pods(model: &'a Ruleset, objects: &PodObjects) -> View<'a> {
        let names = &objects.names;
        let sets = names.iter().filter_map(|n| model.set(n)).collect();
        let regular = model.regular_chains();
        let chains = model
            .base_chains()
            .iter()
            .chain(names.iter().filter_map(|n| {
                regular
                    .binary_search_by(|c| c.name.as_str().cmp(n))
                    .ok()
                    .map(|i| &regular[i])
            }))
            .collect();
        View {
            family: model.family,
            name: &model.name,
            comment: model.comment.as_deref(),
            sets,
            maps: model.maps().iter().collect(),
            chains,
        }
    }

    /// An owned copy: a model holding just these objects.
    pub fn to_ruleset(&self) -> Ruleset {
        Ruleset::from_parts(
            self.name,
            self.comment.map(str::to_string),
            self.sets.iter().map(|s| (*s).clone()).collect(),
            self.maps.iter().map(|m| (*m).clone()).collect(),
            self.chains.iter().map(|c| (*c).clone()).collect(),
        )
    }
}

/// Makes `target` hold what `source` holds for `pods` (see [`View::pods`]), leaving the
/// rest.
pub fn copy_pods(target: &mut Ruleset, source: &Ruleset, pods: &BTreeSet<PodKey>) {
    let objects = PodObjects::of(pods, &[target, source]);
    let is_pod_object = |name: &str| objects.contains(name);
    let part = View::pods(source, &objects);
    let owned = |v: &[&Set]| v.iter().map(|s| (*s).clone()).collect();
    target.retain_sets(|s| !is_pod_object(&s.name));
    target.merge_sets(owned(&part.sets));
    // The view holds every base chain (the input hook comes and goes with the tiers) and
    // the pods' regular chains.
    target.retain_chains(|c| c.base.is_none() && !is_pod_object(&c.name));
    target.merge_chains(part.chains.iter().map(|c| (*c).clone()).collect());
    target.set_maps(part.maps.iter().map(|m| (*m).clone()).collect());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::input::object_from_value;
    use crate::ruleset::names::{pod_object_names, HELD_SETS};
    use crate::synth::{cluster, Params};

    #[test]
    fn a_pods_view_holds_exactly_its_objects() {
        let objects = cluster(&Params::new(300, 40))
            .into_iter()
            .map(|v| object_from_value(v, "synth").unwrap().unwrap())
            .collect();
        let index = Index::from_objects(objects).unwrap();
        let model = crate::compile(&index, None);
        assert_eq!(View::whole(&model).to_ruleset(), model);

        let graph_pods: Vec<PodKey> = index.pods().map(|p| p.key()).take(3).collect();
        let pods: BTreeSet<PodKey> = graph_pods.into_iter().collect();
        let view = View::pods(&model, &PodObjects::of(&pods, &[&model]));
        let mut names: BTreeSet<String> = pod_object_names(&pods).into_iter().collect();
        for (ns, pod) in &pods {
            for chain in pod_chains(ns, pod).iter().filter_map(|c| model.chain(c)) {
                names.extend(chain.lookups().map(String::from));
            }
        }
        // Every object of those pods, the shared sets their chains look up, the
        // known-pods sets and the maps; nothing else (the held sets are the base chains').
        let want_sets: Vec<&str> = model
            .sets()
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| (names.contains(*n) && !HELD_SETS.contains(n)) || KNOWN_PODS.contains(n))
            .collect();
        let got_sets: Vec<&str> = view.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(got_sets, want_sets);
        let shared = view.sets.iter().filter(|s| s.role.shared()).count();
        assert!(shared > 0, "{got_sets:?}");
        let want_chains: Vec<&str> = model
            .chains()
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| names.contains(*n) || ["forward", "output"].contains(n))
            .collect();
        let got_chains: Vec<&str> = view.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(got_chains, want_chains);
        assert_eq!(view.maps.len(), model.maps().len());
    }
}
