//! Addresses learned from DNS answers (ClusterNetworkPolicy `domainNames`): one batch
//! adds them to their rules' timeout sets, each element with its own timeout, so the
//! kernel expires it when the answer's lifetime ends. Adding an element the set already
//! holds sets its timeout anew (Linux updates an existing element's timeout on add,
//! checked on this kernel, 6.18): the caller must not send a shorter timeout than one
//! already given, or an address still valid through another answer would expire early.
//! Reads them back too: for the revoker, and with the time each has left for `nftpol
//! graph --learned`.

use std::net::IpAddr;
use std::time::Duration;

use super::encode::{key_bytes, Batch, Builder};
use super::sys;
use super::{abi::nftnl_attr, NetlinkError, SyncStats};
use crate::fqdn::facts::{Listing, Seen};
use crate::ruleset::model::Field;
use crate::ruleset::names::learned_set;

/// One learned address for one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedElem {
    /// The set's name in the table (an address set, `flags timeout`, of the address's
    /// family).
    pub set: String,
    pub addr: IpAddr,
    pub timeout: Duration,
}

/// The batch that adds `elems` (grouped by set, in the order given).
pub fn learned_batch(table: &str, elems: &[LearnedElem], first_seq: u32) -> Batch {
    let mut b = Builder::new(table, first_seq);
    let mut sets: Vec<&str> = elems.iter().map(|e| e.set.as_str()).collect();
    sets.sort_unstable();
    sets.dedup();
    for set in sets {
        let of_set = elems.iter().filter(|e| e.set == set).map(|l| {
            let field = match l.addr {
                IpAddr::V4(a) => Field::Ipv4(a, a),
                IpAddr::V6(a) => Field::Ipv6(a, a),
            };
            let mut e = sys::Elem::new();
            e.set_data(nftnl_attr::ELEM_KEY, &key_bytes(&[field], true));
            // A u64 of milliseconds in host order, as libnftnl takes it.
            let ms = u64::try_from(l.timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            e.set_data(nftnl_sys::NFTNL_SET_ELEM_TIMEOUT, &ms.to_ne_bytes());
            e
        });
        b.set_elements(set, "learned set", true, of_set.collect());
    }
    b.finish()
}

/// The batch that adds `port` to the inet_service set `set` for `timeout` (refreshing it
/// when there): the DNS proxy's liveness, which the steering rules look up.
pub fn alive_batch(table: &str, set: &str, port: u16, timeout: Duration, first_seq: u32) -> Batch {
    let mut b = Builder::new(table, first_seq);
    let mut e = sys::Elem::new();
    e.set_data(
        nftnl_attr::ELEM_KEY,
        &key_bytes(&[Field::Port(port, port)], true),
    );
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    e.set_data(nftnl_sys::NFTNL_SET_ELEM_TIMEOUT, &ms.to_ne_bytes());
    b.set_elements(set, "liveness set", true, vec![e]);
    b.finish()
}

impl super::Backend {
    /// Adds (or refreshes) `port` in the liveness set `set` for `timeout`; returns once
    /// the kernel acknowledged it.
    pub fn keep_alive(
        &mut self,
        table: &str,
        set: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<SyncStats, NetlinkError> {
        let n = alive_batch(table, set, port, timeout, 0).messages;
        let first = self.conn.reserve(n);
        self.conn
            .send_batch(&alive_batch(table, set, port, timeout, first))
    }

    /// Adds learned addresses in one batch; returns once the kernel acknowledged it.
    pub fn learn(&mut self, table: &str, elems: &[LearnedElem]) -> Result<SyncStats, NetlinkError> {
        if elems.is_empty() {
            return Ok(SyncStats {
                messages: 0,
                bytes: 0,
                acked: 0,
                elapsed: Duration::ZERO,
            });
        }
        let n = learned_batch(table, elems, 0).messages;
        let first = self.conn.reserve(n);
        self.conn.send_batch(&learned_batch(table, elems, first))
    }
}

/// One element of a learned set, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAddr {
    pub addr: IpAddr,
    /// What is left of its timeout (the kernel's NFTA_SET_ELEM_EXPIRATION); `None`: the
    /// element has no timeout.
    pub left: Option<Duration>,
}

impl super::Backend {
    /// The addresses the learned sets `sets` of table `table` hold now, by set; a set
    /// the kernel does not have holds none. For the revoker: what the kernel admits,
    /// whatever the proxy remembers (it remembers nothing after a restart).
    pub fn learned_addresses(
        &mut self,
        table: &str,
        sets: &[String],
    ) -> Result<Vec<(String, IpAddr)>, NetlinkError> {
        let mut out = Vec::new();
        for set in sets {
            for e in self.learned_elements(table, set)?.unwrap_or_default() {
                out.push((set.clone(), e.addr));
            }
        }
        Ok(out)
    }

    /// The elements of the learned set `set` of table `table`, with the time each has
    /// left; `None` when the kernel has no such set (or no such table).
    pub fn learned_elements(
        &mut self,
        table: &str,
        set: &str,
    ) -> Result<Option<Vec<HeldAddr>>, NetlinkError> {
        let Some(elems) = set_elems(&mut self.conn, table, set)? else {
            return Ok(None);
        };
        let held = elems.into_iter().filter_map(|e| {
            let addr = match e.key.len() {
                4 => <[u8; 4]>::try_from(e.key.as_slice()).map(IpAddr::from).ok(),
                16 => <[u8; 16]>::try_from(e.key.as_slice())
                    .map(IpAddr::from)
                    .ok(),
                _ => None,
            }?;
            let left = e.expires_ms.map(Duration::from_millis);
            Some(HeldAddr { addr, left })
        });
        Ok(Some(held.collect()))
    }

    /// What `nftpol graph --learned` lists: the addresses the learned sets of `rules`
    /// ((ClusterNetworkPolicy, index in `spec.egress`)) hold in table `table`, each with
    /// the time it has left and no name (the kernel keeps none). `None` when the table
    /// does not exist. A rule whose sets the table lacks (this node does not enforce it:
    /// its state is not the one the rules came from) holds none, with a warning.
    pub fn learned_listing<'a>(
        &mut self,
        table: &str,
        rules: impl IntoIterator<Item = &'a (String, usize)>,
    ) -> Result<Option<Listing>, NetlinkError> {
        if !super::readback::has_table(&mut self.conn, table)? {
            return Ok(None);
        }
        let mut out = Listing::new();
        for (policy, rule) in rules {
            let mut missing = Vec::new();
            for v6 in [false, true] {
                let set = learned_set(policy, *rule, v6);
                let Some(held) = self.learned_elements(table, &set)? else {
                    missing.push(set);
                    continue;
                };
                for h in held {
                    out.add(policy, *rule, h.addr, Seen::Kernel { left: h.left });
                }
            }
            if !missing.is_empty() {
                let sets = missing.join(", ");
                tracing::warn!(policy = %policy, rule = *rule, sets = %sets, "table inet {table} has no set {sets}: this node does not enforce {policy} egress[{rule}] (its state differs from the input's)");
            }
        }
        Ok(Some(out))
    }
}

/// The elements of set `set` in table `table` (`None` when there is no such set).
fn set_elems(
    conn: &mut super::batch::Conn,
    table: &str,
    set: &str,
) -> Result<Option<Vec<super::readback::LiveElem>>, NetlinkError> {
    let seq = conn.reserve(1);
    let o = super::encode::set_object(table, set, None);
    let msg = o.msg(
        super::abi::NFT_MSG_GETSETELEM,
        super::abi::NFPROTO_INET,
        super::abi::NLM_F_DUMP,
        seq,
    );
    let replies = conn.dump_found(&msg, seq)?;
    Ok(replies.map(|r| {
        r.iter()
            .flat_map(|p| super::readback::live_elems_of(p))
            .collect()
    }))
}

/// An element of a learned set or of the liveness set, read before a full sync so that
/// the new table holds it again (the raw key, and what was left of its timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kept {
    set: String,
    key: Vec<u8>,
    expires_ms: Option<u64>,
}

/// The elements of the sets of `ruleset` whose elements are the DNS proxy's or the
/// controller's (learned addresses, liveness), as the kernel holds them now. A set the
/// kernel does not have (yet) keeps nothing. Held flows are not kept: a full sync ends
/// them, as before.
pub(crate) fn kept_elements(
    conn: &mut super::batch::Conn,
    ruleset: &crate::ruleset::model::Ruleset,
) -> Result<Vec<Kept>, NetlinkError> {
    use crate::ruleset::model::SetRole;
    let mut out = Vec::new();
    for set in ruleset
        .sets()
        .iter()
        .filter(|s| matches!(s.role, SetRole::Learned | SetRole::DnsAlive))
    {
        let seq = conn.reserve(1);
        let o = super::encode::set_object(&ruleset.name, &set.name, None);
        let msg = o.msg(
            super::abi::NFT_MSG_GETSETELEM,
            super::abi::NFPROTO_INET,
            super::abi::NLM_F_DUMP,
            seq,
        );
        // A set not in the kernel yet (ENOENT) dumps empty: nothing to keep.
        let replies = conn.dump(&msg, seq)?;
        for e in replies
            .iter()
            .flat_map(|p| super::readback::live_elems_of(p))
        {
            out.push(Kept {
                set: set.name.clone(),
                key: e.key,
                expires_ms: e.expires_ms,
            });
        }
    }
    Ok(out)
}

/// Adds `kept` to their sets (created earlier in the same batch), each with the timeout
/// it had left.
pub(crate) fn add_kept(b: &mut Builder, kept: &[Kept]) {
    let mut sets: Vec<&str> = kept.iter().map(|k| k.set.as_str()).collect();
    sets.dedup();
    for set in sets {
        let elems = kept.iter().filter(|k| k.set == set).map(|k| {
            let mut e = sys::Elem::new();
            e.set_data(nftnl_attr::ELEM_KEY, &k.key);
            if let Some(ms) = k.expires_ms {
                e.set_data(nftnl_sys::NFTNL_SET_ELEM_TIMEOUT, &ms.max(1).to_ne_bytes());
            }
            e
        });
        b.set_elements(set, "kept element", true, elems.collect());
    }
}
