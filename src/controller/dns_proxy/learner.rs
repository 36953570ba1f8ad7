//! The production [`Learner`]: from an answer the proxy read, the addresses each
//! `domainNames` rule admits (by `crate::fqdn`), added to that rule's own timeout sets in
//! one kernel batch, awaited. Rules never share sets, so an answer for one rule's name
//! never admits anything through another rule.
//!
//! Only answers from the trusted servers (the cluster DNS, `--dns-server`) teach: the pod
//! chooses where its query goes, and a server of its choosing could claim any address
//! for an allowed name. Other answers are returned to the pod unlearned.
//!
//! Remembers, per (set, address), when the kernel's element expires and which name
//! taught it: an answer never shortens a timeout already given (the kernel would take
//! the shorter one), and what was learned can be listed by domain.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use ipnet::IpNet;

use super::{LearnError, Learner, Lookup};
use crate::fqdn::{self, DomainPattern, Limits, Ttl};
use crate::netlink::LearnedElem;

/// One `domainNames` rule of one policy, as the node enforces it.
#[derive(Debug, Clone)]
pub struct DomainRule {
    /// `policy/rule` (or the rule's index), for logs and listings.
    pub id: String,
    pub patterns: Vec<DomainPattern>,
    /// Its learned-address sets, `flags timeout`, IPv4 and IPv6.
    pub set4: String,
    pub set6: String,
}

/// Where learned elements go: the kernel (a netlink [`crate::netlink::Backend`]) or a
/// test's record. Returns once they are in (acknowledged).
pub trait LearnSink: Send {
    fn add(&mut self, elems: &[LearnedElem]) -> Result<(), LearnError>;
}

/// The kernel, through one netlink socket, in table `table`.
pub struct KernelSink {
    pub table: String,
    pub backend: crate::netlink::Backend,
}

impl LearnSink for KernelSink {
    fn add(&mut self, elems: &[LearnedElem]) -> Result<(), LearnError> {
        self.backend
            .learn(&self.table, elems)
            .map(|_| ())
            .map_err(|e| LearnError::Kernel(Box::new(e)))
    }
}

/// What one address in one set was learned from, and until when the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub domain: String,
    pub until: Instant,
}

pub struct SetLearner {
    rules: Mutex<Arc<Vec<DomainRule>>>,
    servers: Vec<IpNet>,
    limits: Limits,
    ttl: Ttl,
    sink: Arc<Mutex<Box<dyn LearnSink>>>,
    given: Arc<Mutex<HashMap<(String, IpAddr), Given>>>,
}

impl SetLearner {
    pub fn new(servers: Vec<IpNet>, ttl: Ttl, sink: Box<dyn LearnSink>) -> SetLearner {
        SetLearner {
            rules: Mutex::new(Arc::new(Vec::new())),
            servers,
            limits: Limits::default(),
            ttl,
            sink: Arc::new(Mutex::new(sink)),
            given: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Replaces the node's domain rules (on a policy change). What earlier rules learned
    /// stays in their sets until it expires or the sets are deleted.
    pub fn set_rules(&self, rules: Vec<DomainRule>) {
        // A set no rule names any more is deleted with its rule: what it held must be
        // taught anew if the rule comes back.
        let sets: std::collections::HashSet<&str> = rules
            .iter()
            .flat_map(|r| [r.set4.as_str(), r.set6.as_str()])
            .collect();
        self.given
            .lock()
            .expect("given lock")
            .retain(|(set, _), _| sets.contains(set.as_str()));
        *self.rules.lock().expect("rules lock") = Arc::new(rules);
    }

    /// What is held now: (set, address) -> the domain and expiry, expired ones dropped.
    pub fn learned(&self) -> Vec<((String, IpAddr), Given)> {
        let now = Instant::now();
        let mut given = self.given.lock().expect("given lock");
        given.retain(|_, g| g.until > now);
        let mut v: Vec<_> = given.iter().map(|(k, g)| (k.clone(), g.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The elements `lookup` teaches that the kernel does not already hold as long.
    fn elements(&self, lookup: &Lookup, now: Instant) -> Vec<(LearnedElem, Given)> {
        if !self.servers.iter().any(|n| n.contains(&lookup.server.ip())) {
            return Vec::new();
        }
        let Ok(resolved) = fqdn::read(&lookup.answer, self.limits, self.ttl) else {
            return Vec::new();
        };
        let rules = self.rules.lock().expect("rules lock").clone();
        let given = self.given.lock().expect("given lock");
        let domain = resolved.name.to_string();
        let mut out = Vec::new();
        for rule in rules.iter() {
            if !rule.patterns.iter().any(|p| p.matches(&resolved.name)) {
                continue;
            }
            for l in &resolved.addrs {
                let set = if l.addr.is_ipv4() {
                    &rule.set4
                } else {
                    &rule.set6
                };
                let timeout = Duration::from_secs(u64::from(l.ttl));
                let until = now + timeout;
                let key = (set.clone(), l.addr);
                if given.get(&key).is_some_and(|g| g.until >= until) {
                    continue;
                }
                let elem = LearnedElem {
                    set: set.clone(),
                    addr: l.addr,
                    timeout,
                };
                let g = Given {
                    domain: domain.clone(),
                    until,
                };
                out.push((elem, g));
            }
        }
        out
    }
}

impl Learner for SetLearner {
    fn learn(&self, lookup: Lookup) -> BoxFuture<'static, Result<usize, LearnError>> {
        let found = self.elements(&lookup, Instant::now());
        let (sink, given) = (self.sink.clone(), self.given.clone());
        async move {
            if found.is_empty() {
                return Ok(0);
            }
            let elems: Vec<LearnedElem> = found.iter().map(|(e, _)| e.clone()).collect();
            // The netlink round trip blocks; keep it off the proxy's threads.
            tokio::task::spawn_blocking(move || sink.lock().expect("sink lock").add(&elems))
                .await
                .map_err(|_| LearnError::Gone)??;
            let n = found.len();
            let mut given = given.lock().expect("given lock");
            for (e, g) in found {
                given.insert((e.set, e.addr), g);
            }
            Ok(n)
        }
        .boxed()
    }
}

#[cfg(test)]
#[path = "learner_tests.rs"]
mod tests;
