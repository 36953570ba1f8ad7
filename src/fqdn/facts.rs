//! What has been learned at run time, as plain data: which addresses count as learned for
//! which `domainNames` rule (policy, index in `spec.egress`), and from which domain name.
//! The DNS proxy's sets hold the same in the kernel; this is what the offline tools
//! (`explain --resolved`, `graph`) and the ruleset evaluator are given instead, so that a
//! test can hand both the same facts and compare their verdicts.
//!
//! Knows nothing of pods, sets or chains.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Learned addresses per `domainNames` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// (policy, rule index) -> address -> the domain name it was learned from.
    rules: BTreeMap<(String, usize), BTreeMap<IpAddr, String>>,
}

impl Learned {
    pub fn new() -> Learned {
        Learned::default()
    }

    /// `addr` counts as learned for rule `rule` of `policy`, from `domain` (the first
    /// domain given for an address is kept).
    pub fn add(&mut self, policy: &str, rule: usize, addr: IpAddr, domain: &str) {
        self.rules
            .entry((policy.to_string(), rule))
            .or_default()
            .entry(addr)
            .or_insert_with(|| domain.to_string());
    }

    /// The domain `addr` was learned from for this rule, if it was.
    pub fn domain(&self, policy: &str, rule: usize, addr: IpAddr) -> Option<&str> {
        self.rules
            .get(&(policy.to_string(), rule))
            .and_then(|m| m.get(&addr))
            .map(String::as_str)
    }

    /// Every (policy, rule) with what it learned, in order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, usize, &BTreeMap<IpAddr, String>)> {
        self.rules.iter().map(|((p, r), m)| (p.as_str(), *r, m))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_per_rule_and_keep_the_first_domain() {
        let mut l = Learned::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        l.add("p", 1, a, "api.example.com");
        l.add("p", 1, a, "other.example.com");
        assert_eq!(l.domain("p", 1, a), Some("api.example.com"));
        assert_eq!(l.domain("p", 0, a), None);
        assert_eq!(l.domain("q", 1, a), None);
        assert_eq!(l.rules().count(), 1);
    }
}
