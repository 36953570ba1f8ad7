//! Read the live table back through netlink, and compare it with a model (drift).
//!
//! Owns: dump requests for one `inet` table (table, chains, sets and maps with their
//! elements, rules as expression names and comments), parsing the replies (plain
//! attribute walking, no unsafe), and [`drift`]: the first difference between a model
//! and what the kernel holds, in words.
//!
//! Must not: change the kernel. The dumps are separate requests, not one snapshot; a
//! concurrent writer can make a read inconsistent, in which case drift reports a
//! difference and the caller resyncs, which is the safe direction.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::abi::nftnl_attr;
use super::abi::*;
use super::batch::{attrs, Conn};
use super::{encode, exprs};
use super::{sys, NetlinkError};
use crate::ruleset::model::*;

/// The live table as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveTable {
    pub name: String,
    pub comment: Option<String>,
    /// In kernel order.
    pub chains: Vec<LiveChain>,
    /// Named sets and maps (anonymous sets are left out), sorted by name.
    pub sets: Vec<LiveSet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveChain {
    pub name: String,
    /// (hook number, priority) of a base chain.
    pub hook: Option<(u32, i32)>,
    pub policy: Option<u32>,
    pub comment: Option<String>,
    pub rules: Vec<LiveRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveRule {
    /// Expression names in order, e.g. `["meta", "cmp", "payload", "lookup"]`.
    pub exprs: Vec<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveSet {
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub comment: Option<String>,
    /// The set gives every element a `counter`.
    pub counter: bool,
    pub elements: Vec<LiveElem>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LiveElem {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    pub flags: u32,
    /// Verdict code and chain, for map elements.
    pub verdict: Option<(u32, Option<String>)>,
    /// The packets its `counter` counted, in a set with counters (on an interval set's
    /// start elements).
    pub packets: Option<u64>,
    /// Milliseconds until it expires, in a set with `flags timeout`.
    pub expires_ms: Option<u64>,
}

fn be32(v: &[u8]) -> u32 {
    if v.len() >= 4 {
        u32::from_be_bytes([v[0], v[1], v[2], v[3]])
    } else {
        0
    }
}

fn cstr(v: &[u8]) -> String {
    let s = v.split(|&c| c == 0).next().unwrap_or(&[]);
    String::from_utf8_lossy(s).into_owned()
}

/// The comment TLV (`ty`) of a user data blob.
fn udata_comment(mut v: &[u8], ty: u8) -> Option<String> {
    while v.len() >= 2 {
        let (t, l) = (v[0], v[1] as usize);
        if v.len() < 2 + l {
            break;
        }
        if t == ty {
            return Some(cstr(&v[2..2 + l]));
        }
        v = &v[2 + l..];
    }
    None
}

/// NFTA_DATA_VALUE inside a data nest.
fn data_value(v: &[u8]) -> Vec<u8> {
    attrs(v)
        .into_iter()
        .find(|(t, _)| *t == NFTA_DATA_VALUE)
        .map(|(_, d)| d.to_vec())
        .unwrap_or_default()
}

fn body(p: &[u8]) -> &[u8] {
    &p[NFGENMSG_LEN.min(p.len())..]
}

fn attr<'a>(a: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    a.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
}

fn request(
    conn: &mut Conn,
    build: impl FnOnce(u32) -> Vec<u8>,
) -> Result<Vec<Vec<u8>>, NetlinkError> {
    let seq = conn.reserve(1);
    let msg = build(seq);
    conn.dump(&msg, seq)
}

/// Whether table `inet <name>` exists (one dump of the tables; no chains or sets read).
pub(crate) fn has_table(conn: &mut Conn, name: &str) -> Result<bool, NetlinkError> {
    let tables = request(conn, |seq| {
        sys::Table::new().msg(NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    Ok(tables
        .iter()
        .any(|p| live_table(&attrs(body(p)), name).is_some()))
}

pub(crate) fn read_table(conn: &mut Conn, name: &str) -> Result<Option<LiveTable>, NetlinkError> {
    let tables = request(conn, |seq| {
        sys::Table::new().msg(NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    let Some(mut live) = tables
        .iter()
        .find_map(|p| live_table(&attrs(body(p)), name))
    else {
        return Ok(None);
    };
    let chains = request(conn, |seq| {
        let mut c = sys::Chain::new();
        c.set_str(nftnl_attr::CHAIN_TABLE, name);
        c.msg(NFT_MSG_GETCHAIN, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    live.chains = chains
        .iter()
        .filter_map(|p| live_chain(&attrs(body(p)), name))
        .collect();
    let rules = request(conn, |seq| {
        let mut r = sys::Rule::new();
        r.set_str(nftnl_attr::RULE_TABLE, name);
        r.msg(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    for (chain, rule) in rules
        .iter()
        .filter_map(|p| live_rule(&attrs(body(p)), name))
    {
        if let Some(c) = live.chains.iter_mut().find(|c| c.name == chain) {
            c.rules.push(rule);
        }
    }
    let sets = request(conn, |seq| {
        encode::set_object(name, "", None).msg(NFT_MSG_GETSET, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    live.sets = sets
        .iter()
        .filter_map(|p| live_set(&attrs(body(p)), name))
        .collect();
    live.sets.sort_by(|a, b| a.name.cmp(&b.name));
    for s in &mut live.sets {
        let replies = request(conn, |seq| {
            let mut o = sys::Set::new();
            o.set_str(nftnl_attr::SET_TABLE, name)
                .set_str(nftnl_attr::SET_NAME, &s.name);
            o.msg(NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, seq)
        })?;
        s.elements = replies
            .iter()
            .flat_map(|p| live_elems(&attrs(body(p))))
            .collect();
        s.elements.sort();
    }
    Ok(Some(live))
}

type Attrs<'a> = [(u16, &'a [u8])];

/// A table reply: the table `name`, without its chains and sets; `None` for another.
fn live_table(a: &Attrs, name: &str) -> Option<LiveTable> {
    (attr(a, NFTA_TABLE_NAME).map(cstr).as_deref() == Some(name)).then(|| LiveTable {
        name: name.to_string(),
        comment: attr(a, NFTA_TABLE_USERDATA).and_then(|u| udata_comment(u, NFTNL_UDATA_COMMENT)),
        ..Default::default()
    })
}

/// A chain reply of table `name`, without its rules.
fn live_chain(a: &Attrs, table: &str) -> Option<LiveChain> {
    if attr(a, NFTA_CHAIN_TABLE).map(cstr).as_deref() != Some(table) {
        return None;
    }
    let hook = attr(a, NFTA_CHAIN_HOOK).map(|h| {
        let h = attrs(h);
        (
            attr(&h, NFTA_HOOK_HOOKNUM).map(be32).unwrap_or(0),
            attr(&h, NFTA_HOOK_PRIORITY).map(be32).unwrap_or(0) as i32,
        )
    });
    Some(LiveChain {
        name: attr(a, NFTA_CHAIN_NAME).map(cstr).unwrap_or_default(),
        hook,
        policy: attr(a, NFTA_CHAIN_POLICY).map(be32),
        comment: attr(a, NFTA_CHAIN_USERDATA).and_then(|u| udata_comment(u, NFTNL_UDATA_COMMENT)),
        rules: Vec::new(),
    })
}

/// A rule reply of table `name`: its chain and what drift compares.
fn live_rule(a: &Attrs, table: &str) -> Option<(String, LiveRule)> {
    if attr(a, NFTA_RULE_TABLE).map(cstr).as_deref() != Some(table) {
        return None;
    }
    let chain = attr(a, NFTA_RULE_CHAIN).map(cstr).unwrap_or_default();
    // Every item of the list is an NFTA_LIST_ELEM nest holding one expression.
    let exprs = attr(a, NFTA_RULE_EXPRESSIONS)
        .map(|e| {
            attrs(e)
                .into_iter()
                .map(|(_, el)| {
                    attr(&attrs(el), NFTA_EXPR_NAME)
                        .map(cstr)
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let comment = attr(a, NFTA_RULE_USERDATA).and_then(|u| udata_comment(u, NFTNL_UDATA_COMMENT));
    Some((chain, LiveRule { exprs, comment }))
}

/// A set (or map) reply of table `name`, without its elements; `None` for an anonymous
/// set (a rule's own, not the model's).
fn live_set(a: &Attrs, table: &str) -> Option<LiveSet> {
    if attr(a, NFTA_SET_TABLE).map(cstr).as_deref() != Some(table) {
        return None;
    }
    let flags = attr(a, NFTA_SET_FLAGS).map(be32).unwrap_or(0);
    if flags & NFT_SET_ANONYMOUS != 0 {
        return None;
    }
    Some(LiveSet {
        name: attr(a, NFTA_SET_NAME).map(cstr).unwrap_or_default(),
        flags,
        key_type: attr(a, NFTA_SET_KEY_TYPE).map(be32).unwrap_or(0),
        key_len: attr(a, NFTA_SET_KEY_LEN).map(be32).unwrap_or(0),
        comment: attr(a, NFTA_SET_USERDATA).and_then(|u| udata_comment(u, NFTNL_UDATA_SET_COMMENT)),
        counter: has_counter(a, NFTA_SET_EXPR, NFTA_SET_EXPRESSIONS),
        elements: Vec::new(),
    })
}

/// Whether an object's expressions (one in `one`, or a list in `list`) hold a `counter`.
fn has_counter(a: &Attrs, one: u16, list: u16) -> bool {
    counter_packets(a, one, list).is_some()
}

/// The packets of the `counter` among an object's expressions (one in `one`, or a list
/// in `list`): a set's, or an element's.
pub(crate) fn counter_packets(a: &Attrs, one: u16, list: u16) -> Option<u64> {
    let exprs: Vec<&[u8]> = match (attr(a, one), attr(a, list)) {
        (Some(e), _) => vec![e],
        (None, Some(l)) => attrs(l).into_iter().map(|(_, e)| e).collect(),
        (None, None) => return None,
    };
    exprs.into_iter().find_map(|e| {
        let e = attrs(e);
        if attr(&e, NFTA_EXPR_NAME).map(cstr).as_deref() != Some("counter") {
            return None;
        }
        Some(
            attr(&e, NFTA_EXPR_DATA)
                .and_then(|d| attr(&attrs(d), NFTA_COUNTER_PACKETS).map(<[u8]>::to_vec))
                .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)))
                .unwrap_or(0),
        )
    })
}

/// The elements of one set-element reply (nfgenmsg, attributes).
pub(crate) fn live_elems_of(payload: &[u8]) -> Vec<LiveElem> {
    live_elems(&attrs(body(payload)))
}

/// The elements of one set-element reply.
fn live_elems(a: &Attrs) -> Vec<LiveElem> {
    let Some(list) = attr(a, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Vec::new();
    };
    attrs(list)
        .into_iter()
        .map(|(_, el)| {
            let e = attrs(el);
            let verdict = attr(&e, NFTA_SET_ELEM_DATA).and_then(|d| {
                let v = attrs(attr(&attrs(d), NFTA_DATA_VERDICT)?);
                Some((
                    attr(&v, NFTA_VERDICT_CODE).map(be32).unwrap_or(0),
                    attr(&v, NFTA_VERDICT_CHAIN).map(cstr),
                ))
            });
            LiveElem {
                key: attr(&e, NFTA_SET_ELEM_KEY)
                    .map(data_value)
                    .unwrap_or_default(),
                key_end: attr(&e, NFTA_SET_ELEM_KEY_END).map(data_value),
                flags: attr(&e, NFTA_SET_ELEM_FLAGS).map(be32).unwrap_or(0),
                verdict,
                packets: counter_packets(&e, NFTA_SET_ELEM_EXPR, NFTA_SET_ELEM_EXPRESSIONS),
                expires_ms: attr(&e, NFTA_SET_ELEM_EXPIRATION)
                    .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))),
            }
        })
        .collect()
}

// ---- drift ---------------------------------------------------------------------------

fn field_from(t: KeyType, start: &[u8], end: &[u8]) -> Option<Field> {
    Some(match t {
        KeyType::Ipv4Addr => Field::Ipv4(
            Ipv4Addr::from(<[u8; 4]>::try_from(start.get(..4)?).ok()?),
            Ipv4Addr::from(<[u8; 4]>::try_from(end.get(..4)?).ok()?),
        ),
        KeyType::Ipv6Addr => Field::Ipv6(
            Ipv6Addr::from(<[u8; 16]>::try_from(start.get(..16)?).ok()?),
            Ipv6Addr::from(<[u8; 16]>::try_from(end.get(..16)?).ok()?),
        ),
        KeyType::InetProto => Field::Proto(*start.first()?, *end.first()?),
        KeyType::InetService => Field::Port(
            u16::from_be_bytes([*start.first()?, *start.get(1)?]),
            u16::from_be_bytes([*end.first()?, *end.get(1)?]),
        ),
    })
}

fn field_width(t: KeyType, concat: bool) -> usize {
    let w = encode::field_len(t) as usize;
    if concat {
        w.div_ceil(4_usize) * 4
    } else {
        w
    }
}

fn split_key(key: &[KeyType], start: &[u8], end: &[u8]) -> Option<Vec<Field>> {
    let concat = key.len() > 1;
    let mut off = 0;
    let mut out = Vec::new();
    for &t in key {
        let w = field_width(t, concat);
        out.push(field_from(
            t,
            start.get(off..off + w)?,
            end.get(off..off + w)?,
        )?);
        off += w;
    }
    Some(out)
}

/// `bytes - 1` as a big-endian number (the inclusive end before an interval-end key).
fn minus_one(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    for x in v.iter_mut().rev() {
        if *x == 0 {
            *x = 0xff;
        } else {
            *x -= 1;
            break;
        }
    }
    v
}

/// The model elements a live set holds, or None when they cannot be decoded.
pub(crate) fn live_elements(
    key: &[KeyType],
    interval: bool,
    live: &[LiveElem],
) -> Option<Vec<Element>> {
    let counted = counted_elements(key, interval, live)?;
    Some(counted.into_iter().map(|(e, _)| e).collect())
}

/// [`live_elements`] with each element's counted packets (0 without a counter).
pub(crate) fn counted_elements(
    key: &[KeyType],
    interval: bool,
    live: &[LiveElem],
) -> Option<Vec<(Element, u64)>> {
    let mut out = Vec::new();
    if interval && key.len() == 1 {
        // rbtree: start elements and interval-end elements, sorted by key. An end element
        // with no start before it is nft's pad at 0; a start with no end runs to the top.
        let mut sorted: Vec<&LiveElem> = live.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key).then(b.flags.cmp(&a.flags)));
        let mut open: Option<&LiveElem> = None;
        for e in sorted {
            if e.flags & NFT_SET_ELEM_INTERVAL_END != 0 {
                if let Some(s) = open.take() {
                    let key = split_key(key, &s.key, &minus_one(&e.key))?.into();
                    out.push((Element { key }, s.packets.unwrap_or(0)));
                }
            } else {
                if let Some(s) = open.take() {
                    // Two starts in a row: the first one ran to the next start.
                    let key = split_key(key, &s.key, &minus_one(&e.key))?.into();
                    out.push((Element { key }, s.packets.unwrap_or(0)));
                }
                open = Some(e);
            }
        }
        if let Some(s) = open {
            let top = vec![0xff; s.key.len()];
            let key = split_key(key, &s.key, &top)?.into();
            out.push((Element { key }, s.packets.unwrap_or(0)));
        }
    } else {
        for e in live {
            let end = e.key_end.as_deref().unwrap_or(&e.key);
            let key = split_key(key, &e.key, end)?.into();
            out.push((Element { key }, e.packets.unwrap_or(0)));
        }
    }
    out.sort();
    Some(out)
}

fn verdict_of(v: &Option<(u32, Option<String>)>) -> Option<Verdict> {
    let (code, chain) = v.as_ref()?;
    Some(match *code {
        NF_DROP => Verdict::Drop,
        NF_ACCEPT => Verdict::Accept,
        NFT_RETURN => Verdict::Return,
        NFT_JUMP => Verdict::Jump(chain.clone()?),
        NFT_GOTO => Verdict::Goto(chain.clone()?),
        _ => return None,
    })
}

/// The first difference between the model and the live table, in words; None if they
/// agree on everything read back (names, types, flags, comments, elements, chains, hooks,
/// policies, and each rule's expression names and comment).
pub fn drift(model: &Ruleset, live: Option<&LiveTable>) -> Option<String> {
    let Some(live) = live else {
        return Some(format!("table inet {} is missing", model.name));
    };
    if live.comment != model.comment {
        return Some(format!(
            "table comment is {:?}, model has {:?}",
            live.comment, model.comment
        ));
    }
    let want: usize = model.sets().len() + model.maps().len();
    if live.sets.len() != want {
        return Some(format!(
            "kernel has {} sets and maps, model has {want}",
            live.sets.len()
        ));
    }
    let live_set = |name: &str| live.sets.iter().find(|l| l.name == name);
    for s in model.sets() {
        let Some(l) = live_set(&s.name) else {
            return Some(format!("set {} is missing", s.name));
        };
        if let Some(d) = set_drift(s, l) {
            return Some(d);
        }
    }
    for m in model.maps() {
        let Some(l) = live_set(&m.name) else {
            return Some(format!("map {} is missing", m.name));
        };
        if let Some(d) = map_drift(m, l) {
            return Some(d);
        }
    }
    if live.chains.len() != model.chains().len() {
        return Some(format!(
            "kernel has {} chains, model has {}",
            live.chains.len(),
            model.chains().len()
        ));
    }
    for c in model.chains() {
        let Some(l) = live.chains.iter().find(|l| l.name == c.name) else {
            return Some(format!("chain {} is missing", c.name));
        };
        if let Some(d) = chain_drift(c, l) {
            return Some(d);
        }
    }
    None
}

/// How the live set `l` differs from the model's `s` (same name), if it does.
fn set_drift(s: &Set, l: &LiveSet) -> Option<String> {
    if l.flags & NFT_SET_MAP != 0
        || l.flags != encode::set_flags(s)
        || l.key_type != encode::set_key_type(&s.key)
        || l.comment != s.comment
        || l.counter != s.counter
    {
        return Some(format!("set {} has another type, flags or comment", s.name));
    }
    if s.timeout.is_some() {
        // Held flows: the controller's, added as it cuts connections, never the model's.
        return None;
    }
    match live_elements(&s.key, s.interval, &l.elements) {
        Some(e) if e == s.elements => None,
        Some(e) => Some(format!(
            "set {} holds {} elements that differ from the model's {}",
            s.name,
            e.len(),
            s.elements.len()
        )),
        None => Some(format!("set {} holds undecodable elements", s.name)),
    }
}

/// How the live map `l` differs from the model's `m` (same name), if it does.
fn map_drift(m: &Map, l: &LiveSet) -> Option<String> {
    if l.flags & NFT_SET_MAP == 0
        || l.key_type != encode::set_key_type(&m.key)
        || l.comment != m.comment
    {
        return Some(format!("map {} has another type, flags or comment", m.name));
    }
    let mut got = Vec::new();
    for e in &l.elements {
        let (Some(key), Some(v)) = (split_key(&m.key, &e.key, &e.key), verdict_of(&e.verdict))
        else {
            return Some(format!("map {} holds an undecodable element", m.name));
        };
        got.push(MapElement {
            key: key.into(),
            verdict: v,
        });
    }
    got.sort();
    (got != m.elements).then(|| format!("map {} elements differ from the model", m.name))
}

/// How the live chain `l` differs from the model's `c` (same name), if it does.
fn chain_drift(c: &Chain, l: &LiveChain) -> Option<String> {
    let hook = c
        .base
        .as_ref()
        .map(|b| (encode::hook_number(b.hook), b.priority));
    if l.hook != hook || l.comment != c.comment {
        return Some(format!(
            "chain {} has another hook, priority or comment",
            c.name
        ));
    }
    if let Some(b) = &c.base {
        if l.policy != Some(exprs::verdict_code(&b.policy).0) {
            return Some(format!("chain {} has another policy", c.name));
        }
    }
    if l.rules.len() != c.rules.len() {
        return Some(format!(
            "chain {} has {} rules, model has {}",
            c.name,
            l.rules.len(),
            c.rules.len()
        ));
    }
    let differs = l.rules.iter().zip(&c.rules).position(|(lr, r)| {
        lr.exprs != super::exprs::rule_expr_names(&r.kind) || lr.comment != r.comment
    })?;
    Some(format!(
        "rule {} of chain {} differs from the model",
        differs + 1,
        c.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_chain(base: Option<BaseChain>, rules: Vec<Rule>) -> Chain {
        Chain {
            name: "c".into(),
            base,
            comment: None,
            rules,
        }
    }

    /// What read-back would give for `c` if the kernel held it as the model says.
    fn as_held(c: &Chain) -> LiveChain {
        LiveChain {
            name: c.name.clone(),
            hook: c
                .base
                .as_ref()
                .map(|b| (encode::hook_number(b.hook), b.priority)),
            policy: c.base.as_ref().map(|b| exprs::verdict_code(&b.policy).0),
            comment: c.comment.clone(),
            rules: c
                .rules
                .iter()
                .map(|r| LiveRule {
                    exprs: super::super::exprs::rule_expr_names(&r.kind)
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                    comment: r.comment.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn chain_drift_names_the_first_difference() {
        let base = BaseChain {
            hook: Hook::Forward,
            priority: 0,
            policy: Verdict::Accept,
        };
        let drop = Rule::new(RuleKind::Verdict(Verdict::Drop));
        let model = model_chain(Some(base), vec![drop.clone(), drop]);
        let held = as_held(&model);
        type Edit = fn(&mut LiveChain);
        let cases: [(Edit, Option<&str>); 6] = [
            (|_| {}, None),
            (
                |l| l.hook = Some((l.hook.unwrap().0, 10)),
                Some("another hook, priority or comment"),
            ),
            (
                |l| l.comment = Some("x".into()),
                Some("another hook, priority or comment"),
            ),
            (|l| l.policy = Some(NF_DROP), Some("another policy")),
            (|l| l.rules.truncate(1), Some("has 1 rules, model has 2")),
            (
                |l| l.rules[1].exprs.push("counter".into()),
                Some("rule 2 of chain c differs"),
            ),
        ];
        for (edit, want) in cases {
            let mut live = held.clone();
            edit(&mut live);
            let got = chain_drift(&model, &live);
            match want {
                None => assert_eq!(got, None),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{got:?} lacks {w:?}"
                ),
            }
        }
    }

    #[test]
    fn set_replies_of_other_tables_and_anonymous_sets_are_skipped() {
        let anonymous = NFT_SET_ANONYMOUS.to_be_bytes();
        let plain = 0u32.to_be_bytes();
        let cases: [(&[u8], &[u8], Option<&str>); 3] = [
            (b"nftpol\0", &plain, Some("s")),
            (b"other\0", &plain, None),
            (b"nftpol\0", &anonymous, None),
        ];
        for (table, flags, want) in cases {
            let a: Vec<(u16, &[u8])> = vec![
                (NFTA_SET_TABLE, table),
                (NFTA_SET_NAME, b"s\0"),
                (NFTA_SET_FLAGS, flags),
            ];
            let got = live_set(&a, "nftpol").map(|s| s.name);
            assert_eq!(got.as_deref(), want, "{table:?} {flags:?}");
        }
    }

    /// Read-back decodes a verdict with the same numbers encoding sends.
    #[test]
    fn every_verdict_reads_back_as_encoded() {
        for v in [
            Verdict::Accept,
            Verdict::Drop,
            Verdict::Return,
            Verdict::Jump("a".into()),
            Verdict::Goto("b".into()),
        ] {
            let (code, chain) = exprs::verdict_code(&v);
            let live = Some((code, chain.map(str::to_string)));
            assert_eq!(verdict_of(&live), Some(v.clone()), "{v:?}");
        }
        assert_eq!(
            verdict_of(&Some((NFT_JUMP, None))),
            None,
            "a jump names a chain"
        );
        assert_eq!(verdict_of(&Some((7, None))), None, "unknown code");
    }

    #[test]
    fn rbtree_elements_decode_to_ranges() {
        let k = [KeyType::Ipv4Addr];
        let e = |b: [u8; 4], f| LiveElem {
            key: b.to_vec(),
            key_end: None,
            flags: f,
            verdict: None,
            // A start element carries the counter; an end element has none.
            packets: (f == 0).then_some(u64::from(b[0])),
            expires_ms: None,
        };
        let live = vec![
            e([0, 0, 0, 0], 1),
            e([10, 0, 0, 0], 0),
            e([11, 0, 0, 0], 1),
            e([255, 255, 255, 0], 0),
        ];
        let got = live_elements(&k, true, &live).unwrap();
        assert_eq!(
            got,
            vec![
                Element {
                    key: [Field::Ipv4(
                        [10, 0, 0, 0].into(),
                        [10, 255, 255, 255].into()
                    )]
                    .into()
                },
                Element {
                    key: [Field::Ipv4(
                        [255, 255, 255, 0].into(),
                        [255, 255, 255, 255].into()
                    )]
                    .into()
                },
            ]
        );
        let packets: Vec<u64> = counted_elements(&k, true, &live)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(packets, [10, 255], "each range has its start's counter");
    }
}
