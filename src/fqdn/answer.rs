//! What one DNS response teaches: the name the pod asked for and the addresses that
//! answer it, each with how long it may be trusted.
//!
//! Only a plain, successful answer to one question teaches anything: a response (QR set)
//! to a standard query, with response code NOERROR and exactly one question of class IN.
//! From the question's name, the answer section is walked: the A and AAAA records of that
//! name, then, if it has a CNAME, the records of the alias, and so on, inside this one
//! message only (NPEP-133 asks no chasing across messages). Records of other names are
//! ignored, so a response whose records do not start at the question teaches nothing;
//! authority and additional sections are never read (glue is not an answer).
//!
//! Bounds, because the sender of the answer chooses its size: at most
//! [`Limits::max_chain`] aliases are followed (a loop stops at the first repeated name),
//! and at most [`Limits::max_addresses`] addresses are taken, the first in the order the
//! answer gives them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData};

/// How far an answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CNAME records followed from the question before giving up.
    pub max_chain: usize,
    /// Addresses taken from one answer.
    pub max_addresses: usize,
}

impl Default for Limits {
    /// Eight aliases (resolvers give up at a similar depth: CDN chains are two or three
    /// long); 128 addresses (NPEP-133 asks for at least 100 per name).
    fn default() -> Limits {
        Limits {
            max_chain: 8,
            max_addresses: 128,
        }
    }
}

/// The lifetime given to a learned address, in seconds: the answer's TTL, raised to `min`
/// (clients cache answers longer than their TTL: glibc-less resolvers, JVMs, connection
/// pools) and lowered to `max` (so that a hostile TTL of 68 years does not pin an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub min: u32,
    pub max: u32,
}

impl Ttl {
    /// The default floor (`--dns-min-ttl`): 30 seconds.
    pub const DEFAULT_MIN: u32 = 30;
    /// The default ceiling: one day.
    pub const DEFAULT_MAX: u32 = 86_400;

    pub fn clamp(self, ttl: u32) -> u32 {
        ttl.max(self.min).min(self.max.max(self.min))
    }
}

impl Default for Ttl {
    fn default() -> Ttl {
        Ttl {
            min: Ttl::DEFAULT_MIN,
            max: Ttl::DEFAULT_MAX,
        }
    }
}

/// One address an answer gives for the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Learned {
    pub addr: IpAddr,
    /// Seconds, after [`Ttl::clamp`]: the smallest TTL on the way from the question to
    /// the address (an alias that expires takes its addresses with it).
    pub ttl: u32,
}

/// A readable answer: the question's name (lowercased, absolute) and its addresses,
/// sorted by address, each once (with the longest lifetime any path gave it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: Name,
    pub addrs: Vec<Learned>,
}

/// Why a response teaches nothing. Not a failure of the proxy: such responses are passed
/// to the pod as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("not a response to a standard query")]
    NotAnAnswer,
    #[error("response code {0}")]
    Failed(ResponseCode),
    #[error("{0} questions (one is read)")]
    Questions(usize),
    #[error("question of class {0} (IN is read)")]
    Class(DNSClass),
}

/// Reads a parsed response. An `Ok` with no addresses is a successful answer that names
/// none (NODATA, or records of other names only).
pub fn read(msg: &Message, limits: Limits, ttl: Ttl) -> Result<Resolved, AnswerError> {
    let meta = &msg.metadata;
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Err(AnswerError::NotAnAnswer);
    }
    if meta.response_code != ResponseCode::NoError {
        return Err(AnswerError::Failed(meta.response_code));
    }
    let [query] = msg.queries.as_slice() else {
        return Err(AnswerError::Questions(msg.queries.len()));
    };
    if query.query_class != DNSClass::IN {
        return Err(AnswerError::Class(query.query_class));
    }
    let mut name = query.name.to_lowercase();
    name.set_fqdn(true);
    let found = walk(msg, &name, limits);
    let addrs = found
        .into_iter()
        .map(|(addr, t)| Learned {
            addr,
            ttl: ttl.clamp(t),
        })
        .collect();
    Ok(Resolved { name, addrs })
}

/// The same name, label by label, case-insensitively.
fn same(a: &Name, b: &Name) -> bool {
    a.num_labels() == b.num_labels() && a.zone_of(b)
}

/// The addresses reachable from `start` through the answer section, each with the
/// smallest TTL on its path (the longest over paths).
fn walk(msg: &Message, start: &Name, limits: Limits) -> BTreeMap<IpAddr, u32> {
    let mut found: BTreeMap<IpAddr, u32> = BTreeMap::new();
    let mut seen: Vec<Name> = vec![start.clone()];
    let mut current = start.clone();
    let mut path_ttl = u32::MAX;
    for _ in 0..=limits.max_chain {
        let mut alias: Option<(&Name, u32)> = None;
        let mut aliases = 0;
        for r in msg.answers.iter().filter(|r| r.dns_class == DNSClass::IN) {
            if !same(&r.name, &current) {
                continue;
            }
            let addr = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                RData::CNAME(c) => {
                    aliases += 1;
                    alias = Some((&c.0, r.ttl));
                    continue;
                }
                _ => continue,
            };
            let t = r.ttl.min(path_ttl);
            if let Some(old) = found.get_mut(&addr) {
                *old = (*old).max(t);
            } else if found.len() < limits.max_addresses {
                found.insert(addr, t);
            }
        }
        // A name has at most one CNAME (RFC 1034 3.6.2); two are a broken or forged
        // answer, and which to believe is not ours to guess.
        let Some((target, t)) = alias.filter(|_| aliases == 1) else {
            break;
        };
        if seen.iter().any(|s| same(s, target)) {
            break;
        }
        current = target.clone();
        seen.push(current.clone());
        path_ttl = path_ttl.min(t);
    }
    found
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
