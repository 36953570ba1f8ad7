//! Read the packet counters of one chain's rules (`nft list chain` for the counters only).
//!
//! Owns: the filtered rule dump of one chain and finding its `counter` expressions. Must
//! not: change the kernel, or know what a counter counts (the verdict reader does: the
//! denied packets that reached a pod chain's logging rule, logged or not).

use super::abi::nftnl_attr;
use super::abi::*;
use super::batch::{attrs, Conn};
use super::{sys, NetlinkError};

/// A netfilter socket for counter reads, in the network namespace of the calling thread.
pub struct Counters {
    conn: Conn,
}

fn find<'a>(a: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    a.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
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

    /// The sum of the `counter` expressions of chain `chain` of inet table `table`; 0
    /// when the chain (or table) does not exist.
    pub fn chain_packets(&mut self, table: &str, chain: &str) -> Result<u64, NetlinkError> {
        let seq = self.conn.reserve(1);
        let mut r = sys::Rule::new();
        r.set_str(nftnl_attr::RULE_TABLE, table);
        r.set_str(nftnl_attr::RULE_CHAIN, chain);
        let msg = r.msg(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, seq);
        let replies = self.conn.dump(&msg, seq)?;
        Ok(replies.iter().map(|p| rule_packets(p)).sum())
    }
}
