//! Read packet counters: of one chain's rules (`nft list chain` for the counters only),
//! of every `counter drop` rule of a table, and of the elements of a set with counters.
//!
//! Owns: the filtered rule and element dumps and finding their `counter` expressions.
//! Must not: change the kernel, or know what a counter counts (the verdict reader does:
//! the denied packets that reached a pod chain's logging rule, logged or not; the
//! controller's traffic totals do for the drop rules and set elements).

use super::abi::nftnl_attr;
use super::abi::*;
use super::batch::{attrs, Conn};
use super::{encode, readback, sys, NetlinkError};
use crate::ruleset::model::{Element, Set};

/// A netfilter socket for counter reads, in the network namespace of the calling thread.
pub struct Counters {
    conn: Conn,
}

fn find<'a>(a: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    a.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
}

/// The chain and packets of a dumped `counter drop` rule (exactly a counter and a drop
/// verdict) of table `table`; None for any other rule.
fn counted_drop(payload: &[u8], table: &str) -> Option<(String, u64)> {
    let a = attrs(payload.get(NFGENMSG_LEN..)?);
    let name = |ty| find(&a, ty).map(|v| v.split(|&c| c == 0).next().unwrap_or(&[]));
    if name(NFTA_RULE_TABLE)? != table.as_bytes() {
        return None;
    }
    let exprs = attrs(find(&a, NFTA_RULE_EXPRESSIONS)?);
    let [(_, counter), (_, verdict)] = exprs.as_slice() else {
        return None;
    };
    let (counter, verdict) = (attrs(counter), attrs(verdict));
    if find(&counter, NFTA_EXPR_NAME) != Some(&b"counter\0"[..])
        || find(&verdict, NFTA_EXPR_NAME) != Some(&b"immediate\0"[..])
    {
        return None;
    }
    let drop = find(&verdict, NFTA_EXPR_DATA)
        .and_then(|d| find(&attrs(d), NFTA_IMMEDIATE_DATA))
        .and_then(|d| find(&attrs(d), NFTA_DATA_VERDICT))
        .and_then(|v| find(&attrs(v), NFTA_VERDICT_CODE))
        .and_then(|c| Some(u32::from_be_bytes(c.get(..4)?.try_into().ok()?)));
    // A drop, or the goto that stands for it in a pod chain with audit chains.
    if drop != Some(NF_DROP) && drop != Some(NFT_GOTO) {
        return None;
    }
    let packets = find(&counter, NFTA_EXPR_DATA)
        .and_then(|d| find(&attrs(d), NFTA_COUNTER_PACKETS))
        .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)))
        .unwrap_or(0);
    let chain = String::from_utf8_lossy(name(NFTA_RULE_CHAIN)?).into_owned();
    Some((chain, packets))
}

/// The packets of every `counter` expression of one dumped rule (nfgenmsg, attributes).
fn rule_packets(payload: &[u8]) -> u64 {
    let Some(body) = payload.get(NFGENMSG_LEN..) else {
        return 0;
    };
    let Some(exprs) = find(&attrs(body), NFTA_RULE_EXPRESSIONS) else {
        return 0;
    };
    let mut total = 0;
    for (_, e) in attrs(exprs) {
        let e = attrs(e);
        if find(&e, NFTA_EXPR_NAME) != Some(&b"counter\0"[..]) {
            continue;
        }
        let packets = find(&e, NFTA_EXPR_DATA)
            .and_then(|d| find(&attrs(d), NFTA_COUNTER_PACKETS))
            .and_then(|v| v.get(..8)?.try_into().ok())
            .map(u64::from_be_bytes);
        total += packets.unwrap_or(0);
    }
    total
}

impl Counters {
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Counters {
            conn: Conn::open()?,
        })
    }

    /// The sum of the `counter` expressions of chain `chain` of inet table `table`, but
    /// for its `counter drop` (the traffic counters', read by [`Counters::drop_packets`]);
    /// 0 when the chain (or table) does not exist.
    pub fn chain_packets(&mut self, table: &str, chain: &str) -> Result<u64, NetlinkError> {
        let seq = self.conn.reserve(1);
        let mut r = sys::Rule::new();
        r.set_str(nftnl_attr::RULE_TABLE, table);
        r.set_str(nftnl_attr::RULE_CHAIN, chain);
        let msg = r.msg(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, seq);
        let replies = self.conn.dump(&msg, seq)?;
        Ok(replies
            .iter()
            .filter(|p| counted_drop(p, table).is_none())
            .map(|p| rule_packets(p))
            .sum())
    }

    /// The packets of every `counter drop` rule of inet table `table` (one rule dump), by
    /// chain (summed, should a chain hold several); empty when the table does not exist.
    /// With `chain`, of that chain only (a dump of its rules alone).
    pub fn drop_packets(
        &mut self,
        table: &str,
        chain: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, u64>, NetlinkError> {
        let seq = self.conn.reserve(1);
        let mut r = sys::Rule::new();
        r.set_str(nftnl_attr::RULE_TABLE, table);
        if let Some(chain) = chain {
            r.set_str(nftnl_attr::RULE_CHAIN, chain);
        }
        let msg = r.msg(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, seq);
        let mut out = std::collections::BTreeMap::new();
        for (chain, packets) in self
            .conn
            .dump(&msg, seq)?
            .iter()
            .filter_map(|p| counted_drop(p, table))
        {
            *out.entry(chain).or_insert(0) += packets;
        }
        Ok(out)
    }

    /// Each element of `set` (as the model declares it: key and interval) of inet table
    /// `table` with the packets its counter counted (0 without one); empty when the set
    /// does not exist.
    pub fn element_packets(
        &mut self,
        table: &str,
        set: &Set,
    ) -> Result<Vec<(Element, u64)>, NetlinkError> {
        let seq = self.conn.reserve(1);
        let o = encode::set_object(table, &set.name, None);
        let msg = o.msg(NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, seq);
        let replies = self.conn.dump(&msg, seq)?;
        let live: Vec<_> = replies
            .iter()
            .flat_map(|p| readback::live_elems_of(p))
            .collect();
        readback::counted_elements(&set.key, set.interval, &live).ok_or_else(|| {
            NetlinkError::Protocol(format!("undecodable elements in set {}", set.name))
        })
    }
}
