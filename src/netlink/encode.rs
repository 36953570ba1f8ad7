//! Model -> nf_tables netlink messages, mirroring what `nft -f` sends for the same script.
//!
//! Owns: the translation of every model object ([`Ruleset`], sets, maps, chains and each
//! [`RuleKind`]) into libnftnl objects, and the order and flags of the messages in a batch.
//! The expressions, registers, set flags, NFTA_SET_DESC field lengths, key/data types and
//! user data (comments, key byte order, typeof) are the ones `nft --debug=netlink,mnl`
//! shows for nft 1.0.6, so `nft list` prints a netlink-loaded table exactly as a
//! script-loaded one.
//!
//! Must not: do I/O, or decide *which* objects change (that is `diff.rs`). Output is a
//! pure function of the input and the first sequence number: same model, same bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::abi::nftnl_attr;
use super::abi::*;
use super::exprs::{rule_exprs, verdict_code, SetIds, ANON_SET};
use super::sys;
use crate::ruleset::model::*;

/// ICMPv6 neighbour discovery types: router solicit/advert, neighbour solicit/advert,
/// redirect.
const ND_TYPES: [u8; 5] = [133, 134, 135, 136, 137];

/// User data TLVs as libnftnl writes them: type byte, length byte, value.
#[derive(Default)]
pub(crate) struct Udata(Vec<u8>);

impl Udata {
    fn u32(mut self, ty: u8, v: u32) -> Self {
        self.0.extend_from_slice(&[ty, 4]);
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn strz(mut self, ty: u8, s: &str) -> Self {
        // A comment is at most 254 bytes with its NUL (one length byte); the model keeps
        // them far shorter (see ruleset::names::comment).
        let mut b: Vec<u8> = s.bytes().take(253).collect();
        b.push(0);
        self.0.extend_from_slice(&[ty, b.len() as u8]);
        self.0.extend_from_slice(&b);
        self
    }
    fn nest(mut self, ty: u8, inner: Udata) -> Self {
        self.0.extend_from_slice(&[ty, inner.0.len() as u8]);
        self.0.extend_from_slice(&inner.0);
        self
    }
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

fn comment_udata(c: &str) -> Udata {
    // NFTNL_UDATA_{TABLE,CHAIN,RULE}_COMMENT are all the same number.
    Udata::default().strz(NFTNL_UDATA_COMMENT, c)
}

pub(crate) fn key_type_id(t: KeyType) -> u32 {
    match t {
        KeyType::Ipv4Addr => TYPE_IPADDR,
        KeyType::Ipv6Addr => TYPE_IP6ADDR,
        KeyType::InetProto => TYPE_INET_PROTOCOL,
        KeyType::InetService => TYPE_INET_SERVICE,
    }
}

/// Bytes of one key field (before register padding).
pub(crate) fn field_len(t: KeyType) -> u32 {
    match t {
        KeyType::Ipv4Addr => 4,
        KeyType::Ipv6Addr => 16,
        KeyType::InetProto => 1,
        KeyType::InetService => 2,
    }
}

fn byteorder(t: KeyType) -> u32 {
    match t {
        KeyType::InetProto => BYTEORDER_HOST,
        _ => BYTEORDER_BIG,
    }
}

/// NFTA_SET_KEY_TYPE: one type id, or for a concatenation the ids packed TYPE_BITS apart.
pub(crate) fn set_key_type(key: &[KeyType]) -> u32 {
    key.iter()
        .fold(0, |acc, &t| (acc << TYPE_BITS) | key_type_id(t))
}

/// NFTA_SET_KEY_LEN: in a concatenation every field takes whole 32-bit registers.
pub(crate) fn set_key_len(key: &[KeyType]) -> u32 {
    if key.len() == 1 {
        field_len(key[0])
    } else {
        key.iter().map(|&t| field_len(t).div_ceil(4) * 4).sum()
    }
}

/// The flags nft gives a named set of this shape.
pub(crate) fn set_flags(set: &Set) -> u32 {
    let shape = match (set.interval, set.key.len() > 1) {
        (false, _) => 0,
        (true, false) => NFT_SET_INTERVAL,
        (true, true) => NFT_SET_INTERVAL | NFT_SET_CONCAT,
    };
    match set.timeout {
        Some(_) => shape | NFT_SET_TIMEOUT,
        None => shape,
    }
}

/// One field value as key bytes; `pad` rounds it up to whole registers (concatenations).
fn field_bytes(out: &mut Vec<u8>, f: &Field, start: bool, pad: bool) {
    let from = out.len();
    match *f {
        Field::Ipv4(a, b) => out.extend_from_slice(&(if start { a } else { b }).octets()),
        Field::Ipv6(a, b) => out.extend_from_slice(&(if start { a } else { b }).octets()),
        Field::Proto(a, b) => out.push(if start { a } else { b }),
        Field::Port(a, b) => out.extend_from_slice(&(if start { a } else { b }).to_be_bytes()),
    }
    if pad {
        while !(out.len() - from).is_multiple_of(4) {
            out.push(0);
        }
    }
}

pub(crate) fn key_bytes(key: &[Field], start: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    let pad = key.len() > 1;
    for f in key {
        field_bytes(&mut v, f, start, pad);
    }
    v
}

/// `end + 1` of a one-field range, or None when `end` is the top of its space (nft then
/// sends no end element and marks the start element open).
fn one_past(f: &Field) -> Option<Vec<u8>> {
    match *f {
        Field::Ipv4(_, b) => u32::from(b)
            .checked_add(1)
            .map(|v| Ipv4Addr::from(v).octets().to_vec()),
        Field::Ipv6(_, b) => u128::from(b)
            .checked_add(1)
            .map(|v| Ipv6Addr::from(v).octets().to_vec()),
        Field::Proto(_, b) => b.checked_add(1).map(|v| vec![v]),
        Field::Port(_, b) => b.checked_add(1).map(|v| v.to_be_bytes().to_vec()),
    }
}

fn field_zero(t: KeyType) -> Vec<u8> {
    vec![0; field_len(t) as usize]
}

/// The kernel's number for a base chain's hook.
pub(crate) fn hook_number(h: Hook) -> u32 {
    match h {
        Hook::Forward => NF_INET_FORWARD,
        Hook::Output => NF_INET_LOCAL_OUT,
        Hook::Input => NF_INET_LOCAL_IN,
        Hook::Prerouting => NF_INET_PRE_ROUTING,
    }
}

/// Elements for a set of `key`/`interval`, as nft sends them. `pad_zero`: a one-field
/// interval set being filled from empty gets an interval-end element at 0 first when its
/// first range does not start at 0 (nft's segtree does this); `deleting`: deletes send the
/// same elements minus that pad.
pub(crate) fn set_elems(
    key: &[KeyType],
    interval: bool,
    elements: &[Element],
    pad_zero: bool,
) -> Vec<sys::Elem> {
    let mut out = Vec::new();
    if interval && key.len() == 1 {
        if pad_zero {
            if let Some(first) = elements.first() {
                if key_bytes(&first.key, true).iter().any(|&b| b != 0) {
                    let mut e = sys::Elem::new();
                    e.set_data(nftnl_attr::ELEM_KEY, &field_zero(key[0]));
                    e.set_u32(nftnl_attr::ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                    out.push(e);
                }
            }
        }
        for el in elements {
            let mut s = sys::Elem::new();
            s.set_data(nftnl_attr::ELEM_KEY, &key_bytes(&el.key, true));
            match one_past(&el.key[0]) {
                Some(end) => {
                    out.push(s);
                    let mut e = sys::Elem::new();
                    e.set_data(nftnl_attr::ELEM_KEY, &end);
                    e.set_u32(nftnl_attr::ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                    out.push(e);
                }
                None => {
                    let ud = Udata::default()
                        .u32(NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN);
                    s.set_data(nftnl_attr::ELEM_USERDATA, ud.bytes());
                    out.push(s);
                }
            }
        }
    } else {
        for el in elements {
            let mut e = sys::Elem::new();
            e.set_data(nftnl_attr::ELEM_KEY, &key_bytes(&el.key, true));
            if interval {
                // pipapo: one element holds both ends of every field.
                e.set_data(nftnl_attr::ELEM_KEY_END, &key_bytes(&el.key, false));
            }
            out.push(e);
        }
    }
    out
}

pub(crate) fn map_elems(elements: &[MapElement]) -> Vec<sys::Elem> {
    elements
        .iter()
        .map(|el| {
            let mut e = sys::Elem::new();
            e.set_data(nftnl_attr::ELEM_KEY, &key_bytes(&el.key, true));
            let (code, chain) = verdict_code(&el.verdict);
            e.set_u32(nftnl_attr::ELEM_VERDICT, code);
            if let Some(c) = chain {
                e.set_str(nftnl_attr::ELEM_CHAIN, c);
            }
            e
        })
        .collect()
}

/// A set header (no elements) for NEWSET / DELSET / element messages.
pub(crate) fn set_object(table: &str, name: &str, id: Option<u32>) -> sys::Set {
    let mut s = sys::Set::new();
    s.set_str(nftnl_attr::SET_TABLE, table)
        .set_str(nftnl_attr::SET_NAME, name);
    s.set_u32(nftnl_attr::SET_FAMILY, u32::from(NFPROTO_INET));
    if let Some(id) = id {
        s.set_u32(nftnl_attr::SET_ID, id);
    }
    s
}

fn set_header(table: &str, set: &Set, id: u32) -> sys::Set {
    let mut s = set_object(table, &set.name, Some(id));
    s.set_u32(nftnl_attr::SET_FLAGS, set_flags(set));
    // `Some(0)`: no default timeout (each element brings its own).
    if let Some(secs) = set.timeout.filter(|&t| t > 0) {
        s.set_data(
            nftnl_attr::SET_TIMEOUT,
            &(u64::from(secs) * 1000).to_ne_bytes(),
        );
    }
    s.set_u32(nftnl_attr::SET_KEY_TYPE, set_key_type(&set.key));
    s.set_u32(nftnl_attr::SET_KEY_LEN, set_key_len(&set.key));
    let mut ud = Udata::default();
    if set.key.len() > 1 {
        // Field lengths only for a concatenated interval set (pipapo): the kernel refuses
        // them on a set without NFT_SET_CONCAT, and nft sends none for a hash set.
        if set.interval {
            let lens: Vec<u8> = set.key.iter().map(|&t| field_len(t) as u8).collect();
            s.set_data(nftnl_attr::SET_DESC_CONCAT, &lens);
        }
        // nft records a `type a . b` key as a concat expression with no typeof data.
        ud = ud
            .u32(NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_INVALID)
            .nest(
                NFTNL_UDATA_SET_KEY_TYPEOF,
                Udata::default()
                    .u32(NFTNL_UDATA_SET_TYPEOF_EXPR, EXPR_CONCAT)
                    .nest(NFTNL_UDATA_SET_TYPEOF_DATA, Udata::default()),
            );
    } else {
        ud = ud.u32(NFTNL_UDATA_SET_KEYBYTEORDER, byteorder(set.key[0]));
    }
    if let Some(c) = &set.comment {
        ud = ud.strz(NFTNL_UDATA_SET_COMMENT, c);
    }
    s.set_data(nftnl_attr::SET_USERDATA, ud.bytes());
    if set.counter {
        s.add_expr(sys::Expr::new("counter"));
    }
    s
}

fn map_header(table: &str, map: &Map, id: u32) -> sys::Set {
    let mut s = set_object(table, &map.name, Some(id));
    s.set_u32(nftnl_attr::SET_FLAGS, NFT_SET_MAP);
    s.set_u32(nftnl_attr::SET_KEY_TYPE, set_key_type(&map.key));
    s.set_u32(nftnl_attr::SET_KEY_LEN, set_key_len(&map.key));
    s.set_u32(nftnl_attr::SET_DATA_TYPE, NFT_DATA_VERDICT);
    s.set_u32(nftnl_attr::SET_DATA_LEN, 0);
    let mut ud = Udata::default();
    if map.key.len() > 1 {
        let lens: Vec<u8> = map.key.iter().map(|&t| field_len(t) as u8).collect();
        s.set_data(nftnl_attr::SET_DESC_CONCAT, &lens);
        ud = ud
            .u32(NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_INVALID)
            .u32(NFTNL_UDATA_SET_DATABYTEORDER, BYTEORDER_INVALID)
            .nest(
                NFTNL_UDATA_SET_KEY_TYPEOF,
                Udata::default()
                    .u32(NFTNL_UDATA_SET_TYPEOF_EXPR, EXPR_CONCAT)
                    .nest(NFTNL_UDATA_SET_TYPEOF_DATA, Udata::default()),
            );
    } else {
        ud = ud
            .u32(NFTNL_UDATA_SET_KEYBYTEORDER, byteorder(map.key[0]))
            .u32(NFTNL_UDATA_SET_DATABYTEORDER, BYTEORDER_INVALID);
    }
    ud = ud.u32(NFTNL_UDATA_SET_DATA_INTERVAL, 0);
    if let Some(c) = &map.comment {
        ud = ud.strz(NFTNL_UDATA_SET_COMMENT, c);
    }
    s.set_data(nftnl_attr::SET_USERDATA, ud.bytes());
    s
}

/// The anonymous constant set nft builds for `icmpv6 type { nd-... }`.
fn nd_anon_set(table: &str, id: u32) -> sys::Set {
    let mut s = set_object(table, ANON_SET, Some(id));
    s.set_u32(nftnl_attr::SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT);
    s.set_u32(nftnl_attr::SET_KEY_TYPE, TYPE_ICMP6_TYPE);
    s.set_u32(nftnl_attr::SET_KEY_LEN, 1);
    s.set_u32(nftnl_attr::SET_DESC_SIZE, ND_TYPES.len() as u32);
    // typeof payload expression: protocol description icmpv6, its field `type`.
    let ud = Udata::default()
        .u32(NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG)
        .nest(
            NFTNL_UDATA_SET_KEY_TYPEOF,
            Udata::default()
                .u32(NFTNL_UDATA_SET_TYPEOF_EXPR, EXPR_PAYLOAD)
                .nest(
                    NFTNL_UDATA_SET_TYPEOF_DATA,
                    Udata::default()
                        .u32(NFTNL_UDATA_SET_KEY_PAYLOAD_DESC, PROTO_DESC_ICMPV6)
                        .u32(NFTNL_UDATA_SET_KEY_PAYLOAD_TYPE, ICMP6HDR_TYPE),
                ),
        );
    s.set_data(nftnl_attr::SET_USERDATA, ud.bytes());
    for t in ND_TYPES {
        let mut e = sys::Elem::new();
        e.set_data(nftnl_attr::ELEM_KEY, &[t]);
        s.add_elem(e);
    }
    s
}

// ---- the batch ----------------------------------------------------------------------

/// One encoded batch: the bytes for one `sendmsg` and, for every message that asks for an
/// ack, what it was (for error reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// Sequence number -> description, in sequence order.
    pub acked: Vec<(u32, String)>,
    /// Sequence number of the batch-begin message.
    pub begin_seq: u32,
    pub messages: usize,
}

pub(crate) struct Builder {
    pub table: String,
    seq: u32,
    bytes: Vec<u8>,
    acked: Vec<(u32, String)>,
    begin_seq: u32,
    messages: usize,
    next_set_id: u32,
}

impl Builder {
    pub fn new(table: &str, first_seq: u32) -> Self {
        let mut b = Builder {
            table: table.to_string(),
            seq: first_seq,
            bytes: Vec::new(),
            acked: Vec::new(),
            begin_seq: first_seq,
            messages: 0,
            next_set_id: 1,
        };
        let m = sys::batch_marker(true, b.seq);
        b.raw(m);
        b
    }

    fn raw(&mut self, m: Vec<u8>) {
        self.bytes.extend_from_slice(&m);
        self.seq = self.seq.wrapping_add(1);
        self.messages += 1;
    }

    fn push(&mut self, what: String, build: impl FnOnce(u32) -> Vec<u8>) {
        let seq = self.seq;
        let m = build(seq);
        self.acked.push((seq, what));
        self.raw(m);
    }

    pub fn set_id(&mut self) -> u32 {
        let id = self.next_set_id;
        self.next_set_id += 1;
        id
    }

    pub fn finish(mut self) -> Batch {
        let m = sys::batch_marker(false, self.seq);
        self.raw(m);
        Batch {
            bytes: self.bytes,
            acked: self.acked,
            begin_seq: self.begin_seq,
            messages: self.messages,
        }
    }

    fn table_obj(&self, comment: Option<&str>) -> sys::Table {
        let mut t = sys::Table::new();
        t.set_str(nftnl_attr::TABLE_NAME, &self.table)
            .set_u32(nftnl_attr::TABLE_FLAGS, 0);
        if let Some(c) = comment {
            t.set_data(nftnl_attr::TABLE_USERDATA, comment_udata(c).bytes());
        }
        t
    }

    /// `table inet NAME` (create if missing), `delete table`, `table inet NAME { ... }`.
    pub fn replace_table(&mut self, comment: Option<&str>) {
        let t = self.table_obj(None);
        let name = self.table.clone();
        self.push(format!("table inet {name} (ensure)"), |s| {
            t.msg(NFT_MSG_NEWTABLE, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, s)
        });
        let mut d = sys::Table::new();
        d.set_str(nftnl_attr::TABLE_NAME, &self.table);
        self.push(format!("delete table inet {name}"), |s| {
            d.msg(NFT_MSG_DELTABLE, NFPROTO_INET, NLM_F_ACK, s)
        });
        let t = self.table_obj(comment);
        self.push(format!("table inet {name}"), |s| {
            t.msg(NFT_MSG_NEWTABLE, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, s)
        });
    }

    pub fn add_chain(&mut self, c: &Chain) {
        let mut ch = sys::Chain::new();
        ch.set_str(nftnl_attr::CHAIN_TABLE, &self.table)
            .set_str(nftnl_attr::CHAIN_NAME, &c.name);
        if let Some(b) = &c.base {
            ch.set_u32(nftnl_attr::CHAIN_HOOKNUM, hook_number(b.hook))
                .set_s32(nftnl_attr::CHAIN_PRIO, b.priority);
            ch.set_str(nftnl_attr::CHAIN_TYPE, "filter");
            ch.set_u32(nftnl_attr::CHAIN_POLICY, verdict_code(&b.policy).0);
        }
        if let Some(cm) = &c.comment {
            ch.set_data(nftnl_attr::CHAIN_USERDATA, comment_udata(cm).bytes());
        }
        self.push(format!("chain {}", c.name), |s| {
            ch.msg(NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, s)
        });
    }

    pub fn del_chain(&mut self, name: &str) {
        let mut ch = sys::Chain::new();
        ch.set_str(nftnl_attr::CHAIN_TABLE, &self.table)
            .set_str(nftnl_attr::CHAIN_NAME, name);
        self.push(format!("delete chain {name}"), |s| {
            ch.msg(NFT_MSG_DELCHAIN, NFPROTO_INET, NLM_F_ACK, s)
        });
    }

    /// Delete every rule of a chain (DELRULE with a chain and no handle).
    pub fn flush_chain(&mut self, name: &str) {
        let mut r = sys::Rule::new();
        r.set_u32(nftnl_attr::RULE_FAMILY, u32::from(NFPROTO_INET));
        r.set_str(nftnl_attr::RULE_TABLE, &self.table)
            .set_str(nftnl_attr::RULE_CHAIN, name);
        self.push(format!("flush chain {name}"), |s| {
            r.msg(NFT_MSG_DELRULE, NFPROTO_INET, NLM_F_ACK, s)
        });
    }

    /// Append the chain's rules. Rules that need an anonymous set get it just before.
    pub fn add_rules(&mut self, c: &Chain, ids: SetIds) {
        for (i, rule) in c.rules.iter().enumerate() {
            let anon_id = if matches!(rule.kind, RuleKind::Icmpv6NdAccept) {
                let id = self.set_id();
                let s = nd_anon_set(&self.table, id);
                self.push(
                    format!("anonymous set for rule {} of chain {}", i + 1, c.name),
                    |q| s.msg(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, q),
                );
                let what = format!(
                    "elements of anonymous set for rule {} of chain {}",
                    i + 1,
                    c.name
                );
                self.push_elems(&s, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK, &what);
                Some(id)
            } else {
                None
            };
            let mut r = sys::Rule::new();
            r.set_u32(nftnl_attr::RULE_FAMILY, u32::from(NFPROTO_INET));
            r.set_str(nftnl_attr::RULE_TABLE, &self.table)
                .set_str(nftnl_attr::RULE_CHAIN, &c.name);
            for e in rule_exprs(&rule.kind, ids, anon_id) {
                r.add_expr(e);
            }
            if let Some(cm) = &rule.comment {
                r.set_data(nftnl_attr::RULE_USERDATA, comment_udata(cm).bytes());
            }
            let text = format!("{:?}", rule.kind);
            self.push(format!("rule {} of chain {}: {text}", i + 1, c.name), |s| {
                r.msg(
                    NFT_MSG_NEWRULE,
                    NFPROTO_INET,
                    NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
                    s,
                )
            });
        }
    }

    fn push_elems(&mut self, s: &sys::Set, ty: u16, flags: u16, what: &str) {
        let mut seq = self.seq;
        let first = seq;
        let msgs = s.elem_msgs(ty, NFPROTO_INET, flags, || {
            let q = seq;
            seq = seq.wrapping_add(1);
            q
        });
        let n = msgs.len();
        for (i, m) in msgs.into_iter().enumerate() {
            debug_assert_eq!(self.seq, first.wrapping_add(i as u32));
            let what = if n > 1 {
                format!("{what} (message {} of {n})", i + 1)
            } else {
                what.to_string()
            };
            self.push(what, |_| m);
        }
    }

    /// NEWSET with all its elements; returns the set id used in the batch.
    pub fn add_set(&mut self, set: &Set) -> u32 {
        let id = self.set_id();
        let mut s = set_header(&self.table, set, id);
        self.push(format!("set {}", set.name), |q| {
            s.msg(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, q)
        });
        if !set.elements.is_empty() {
            for e in set_elems(&set.key, set.interval, &set.elements, true) {
                s.add_elem(e);
            }
            let what = format!("elements of set {}", set.name);
            self.push_elems(&s, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK, &what);
        }
        id
    }

    pub fn add_map(&mut self, map: &Map) -> u32 {
        let id = self.set_id();
        let mut s = map_header(&self.table, map, id);
        self.push(format!("map {}", map.name), |q| {
            s.msg(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, q)
        });
        if !map.elements.is_empty() {
            for e in map_elems(&map.elements) {
                s.add_elem(e);
            }
            let what = format!("elements of map {}", map.name);
            self.push_elems(&s, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK, &what);
        }
        id
    }

    pub fn del_set(&mut self, name: &str, kind: &str) {
        let s = set_object(&self.table, name, None);
        self.push(format!("delete {kind} {name}"), |q| {
            s.msg(NFT_MSG_DELSET, NFPROTO_INET, NLM_F_ACK, q)
        });
    }

    /// Add (`add`) or delete elements of an existing set or map.
    pub fn set_elements(&mut self, name: &str, kind: &str, add: bool, elems: Vec<sys::Elem>) {
        if elems.is_empty() {
            return;
        }
        let mut s = set_object(&self.table, name, None);
        for e in elems {
            s.add_elem(e);
        }
        let (ty, flags, verb) = if add {
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK, "add")
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_ACK, "delete")
        };
        let what = format!("{verb} elements of {kind} {name}");
        self.push_elems(&s, ty, flags, &what);
    }
}

/// Adds cut connections to the held sets (`names::HELD_SETS`), or with `add` false takes
/// them out; an element already held stays as it is. The set's own timeout expires each.
pub fn held_batch(table: &str, held: &[crate::flow::Held], add: bool, first_seq: u32) -> Batch {
    let mut b = Builder::new(table, first_seq);
    let mut per_family: [Vec<sys::Elem>; 2] = [Vec::new(), Vec::new()];
    for h in held {
        let addr = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => Field::Ipv4(a, a),
            std::net::IpAddr::V6(a) => Field::Ipv6(a, a),
        };
        let key = [
            addr(h.src),
            addr(h.dst),
            Field::Proto(h.l4proto, h.l4proto),
            Field::Port(h.sport, h.sport),
            Field::Port(h.dport, h.dport),
        ];
        let mut e = sys::Elem::new();
        e.set_data(nftnl_attr::ELEM_KEY, &key_bytes(&key, true));
        per_family[h.src.is_ipv6() as usize].push(e);
    }
    for (name, elems) in crate::ruleset::names::HELD_SETS.iter().zip(per_family) {
        b.set_elements(name, "set", add, elems);
    }
    b.finish()
}

/// The full-sync batch: replace the table whole. Objects go in the order nft uses: table,
/// chains (empty, so map elements and jumps can name them), sets and maps with their
/// elements, then rules.
pub fn full_batch(rs: &Ruleset, first_seq: u32) -> Batch {
    full_batch_then(rs, first_seq, |_| {})
}

/// [`full_batch`], with `then` adding more messages before the batch ends (in the same
/// transaction: the elements kept across a full sync, see `learned`).
pub(crate) fn full_batch_then(
    rs: &Ruleset,
    first_seq: u32,
    then: impl FnOnce(&mut Builder),
) -> Batch {
    let mut b = Builder::new(&rs.name, first_seq);
    b.replace_table(rs.comment.as_deref());
    for c in rs.chains() {
        b.add_chain(c);
    }
    let mut ids: Vec<(String, u32)> = Vec::new();
    for s in rs.sets() {
        let id = b.add_set(s);
        ids.push((s.name.clone(), id));
    }
    for m in rs.maps() {
        let id = b.add_map(m);
        ids.push((m.name.clone(), id));
    }
    ids.sort();
    let lookup = |n: &str| {
        ids.binary_search_by(|(k, _)| k.as_str().cmp(n))
            .ok()
            .map(|i| ids[i].1)
    };
    for c in rs.chains() {
        b.add_rules(c, &lookup);
    }
    then(&mut b);
    b.finish()
}
