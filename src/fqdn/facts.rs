//! What has been learned at run time, as plain data: which addresses count as learned for
//! which `domainNames` rule (policy, index in `spec.egress`), and from which domain name.
//! The DNS proxy's sets hold the same in the kernel; this is what the offline tools
//! (`explain --resolved`, `graph`) and the ruleset evaluator are given instead, so that a
//! test can hand both the same facts and compare their verdicts. [`Listing`] is what
//! `graph` shows of them: each rule's addresses with what is known of each (the name it
//! came from, or the time it has left in the kernel).
//!
//! Knows nothing of pods, sets or chains.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

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

/// What is known of one address a `domainNames` rule holds, by where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Given as `--resolved NAME=ADDR` (what if a pod resolved NAME): the name, no time.
    Resolved { name: String },
    /// Read from the node's kernel set: the time left (`None`: the element has no
    /// timeout), and no name, as the kernel keeps none.
    Kernel { left: Option<Duration> },
}

/// The addresses of each `domainNames` rule (policy, index in `spec.egress`) that a
/// listing shows, by address (IPv4 first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    rules: BTreeMap<(String, usize), BTreeMap<IpAddr, Seen>>,
}

impl Listing {
    pub fn new() -> Listing {
        Listing::default()
    }

    /// The facts as given by name (`--resolved`).
    pub fn resolved(learned: &Learned) -> Listing {
        let mut out = Listing::new();
        for (policy, rule, addrs) in learned.rules() {
            for (&addr, name) in addrs {
                let name = name.clone();
                out.add(policy, rule, addr, Seen::Resolved { name });
            }
        }
        out
    }

    /// `addr` is held by rule `rule` of `policy` (the first word on an address is kept).
    pub fn add(&mut self, policy: &str, rule: usize, addr: IpAddr, seen: Seen) {
        self.rules
            .entry((policy.to_string(), rule))
            .or_default()
            .entry(addr)
            .or_insert(seen);
    }

    /// The addresses rule `rule` of `policy` holds, in order; none when it holds none.
    pub fn rule(&self, policy: &str, rule: usize) -> impl Iterator<Item = (IpAddr, &Seen)> {
        self.rules
            .get(&(policy.to_string(), rule))
            .into_iter()
            .flatten()
            .map(|(&a, s)| (a, s))
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

    #[test]
    fn a_listing_is_per_rule_in_address_order() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut l = Learned::new();
        l.add("p", 1, ip("2001:db8::1"), "b.example");
        l.add("p", 1, ip("192.0.2.9"), "a.example");
        let mut listing = Listing::resolved(&l);
        let kernel = Seen::Kernel { left: None };
        listing.add("p", 1, ip("192.0.2.9"), kernel.clone());
        listing.add("q", 0, ip("192.0.2.1"), kernel.clone());
        let p1: Vec<_> = listing.rule("p", 1).collect();
        let name = |n: &str| Seen::Resolved { name: n.into() };
        assert_eq!(
            p1,
            [
                (ip("192.0.2.9"), &name("a.example")),
                (ip("2001:db8::1"), &name("b.example"))
            ]
        );
        assert_eq!(listing.rule("q", 0).count(), 1);
        assert_eq!(listing.rule("p", 0).count(), 0);
    }
}
