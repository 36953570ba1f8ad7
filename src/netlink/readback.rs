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

use super::batch::{attrs, Conn};
use super::encode::{self, NFPROTO_INET};
use super::{sys, NetlinkError};
use crate::ruleset::model::*;

pub(crate) const NLM_F_DUMP: u16 = 0x300;
const MSG_GETTABLE: u16 = 1;
const MSG_GETCHAIN: u16 = 4;
const MSG_GETRULE: u16 = 7;
const MSG_GETSET: u16 = 10;
const MSG_GETSETELEM: u16 = 13;
const NFGENMSG_LEN: usize = 4;
const SET_ANONYMOUS: u32 = 0x1;
const SET_MAP: u32 = 0x8;
const ELEM_INTERVAL_END: u32 = 0x1;

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
    pub elements: Vec<LiveElem>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LiveElem {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    pub flags: u32,
    /// Verdict code and chain, for map elements.
    pub verdict: Option<(u32, Option<String>)>,
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
        .find(|(t, _)| *t == 1)
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

pub(crate) fn read_table(conn: &mut Conn, name: &str) -> Result<Option<LiveTable>, NetlinkError> {
    let tables = request(conn, |seq| {
        sys::Table::new().msg(MSG_GETTABLE, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    let mut live = None;
    for p in &tables {
        let a = attrs(body(p));
        if attr(&a, 1).map(cstr).as_deref() == Some(name) {
            live = Some(LiveTable {
                name: name.to_string(),
                comment: attr(&a, 6).and_then(|u| udata_comment(u, 0)),
                ..Default::default()
            });
        }
    }
    let Some(mut live) = live else {
        return Ok(None);
    };

    let chains = request(conn, |seq| {
        let mut c = sys::Chain::new();
        c.set_str(encode::sys_attr::CHAIN_TABLE, name);
        c.msg(MSG_GETCHAIN, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    for p in &chains {
        let a = attrs(body(p));
        if attr(&a, 1).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let hook = attr(&a, 4).map(|h| {
            let h = attrs(h);
            (
                attr(&h, 1).map(be32).unwrap_or(0),
                attr(&h, 2).map(be32).unwrap_or(0) as i32,
            )
        });
        live.chains.push(LiveChain {
            name: attr(&a, 3).map(cstr).unwrap_or_default(),
            hook,
            policy: attr(&a, 5).map(be32),
            comment: attr(&a, 12).and_then(|u| udata_comment(u, 0)),
            rules: Vec::new(),
        });
    }

    let rules = request(conn, |seq| {
        let mut r = sys::Rule::new();
        r.set_str(encode::sys_attr::RULE_TABLE, name);
        r.msg(MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    for p in &rules {
        let a = attrs(body(p));
        if attr(&a, 1).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let chain = attr(&a, 2).map(cstr).unwrap_or_default();
        let exprs = attr(&a, 4)
            .map(|e| {
                attrs(e)
                    .into_iter()
                    .map(|(_, el)| attr(&attrs(el), 1).map(cstr).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let rule = LiveRule {
            exprs,
            comment: attr(&a, 7).and_then(|u| udata_comment(u, 0)),
        };
        if let Some(c) = live.chains.iter_mut().find(|c| c.name == chain) {
            c.rules.push(rule);
        }
    }

    let sets = request(conn, |seq| {
        encode::set_object(name, "", None).msg(MSG_GETSET, NFPROTO_INET, NLM_F_DUMP, seq)
    })?;
    for p in &sets {
        let a = attrs(body(p));
        if attr(&a, 1).map(cstr).as_deref() != Some(name) {
            continue;
        }
        let flags = attr(&a, 3).map(be32).unwrap_or(0);
        if flags & SET_ANONYMOUS != 0 {
            continue;
        }
        live.sets.push(LiveSet {
            name: attr(&a, 2).map(cstr).unwrap_or_default(),
            flags,
            key_type: attr(&a, 4).map(be32).unwrap_or(0),
            key_len: attr(&a, 5).map(be32).unwrap_or(0),
            comment: attr(&a, 13).and_then(|u| udata_comment(u, 7)),
            elements: Vec::new(),
        });
    }
    live.sets.sort_by(|a, b| a.name.cmp(&b.name));
    for s in &mut live.sets {
        let replies = request(conn, |seq| {
            let mut o = sys::Set::new();
            o.set_str(encode::sys_attr::SET_TABLE, name)
                .set_str(encode::sys_attr::SET_NAME, &s.name);
            o.msg(MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, seq)
        })?;
        for p in &replies {
            let a = attrs(body(p));
            let Some(list) = attr(&a, 3) else { continue };
            for (_, el) in attrs(list) {
                let e = attrs(el);
                let verdict = attr(&e, 2).and_then(|d| {
                    let v = attr(&attrs(d), 2)?;
                    let v = attrs(v);
                    Some((attr(&v, 1).map(be32).unwrap_or(0), attr(&v, 2).map(cstr)))
                });
                s.elements.push(LiveElem {
                    key: attr(&e, 1).map(data_value).unwrap_or_default(),
                    key_end: attr(&e, 10).map(data_value),
                    flags: attr(&e, 3).map(be32).unwrap_or(0),
                    verdict,
                });
            }
        }
        s.elements.sort();
    }
    Ok(Some(live))
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
    let w: usize = match t {
        KeyType::Ipv4Addr => 4,
        KeyType::Ipv6Addr => 16,
        KeyType::InetProto => 1,
        KeyType::InetService => 2,
    };
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
    let mut out = Vec::new();
    if interval && key.len() == 1 {
        // rbtree: start elements and interval-end elements, sorted by key. An end element
        // with no start before it is nft's pad at 0; a start with no end runs to the top.
        let mut sorted: Vec<&LiveElem> = live.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key).then(b.flags.cmp(&a.flags)));
        let mut open: Option<&[u8]> = None;
        for e in sorted {
            if e.flags & ELEM_INTERVAL_END != 0 {
                if let Some(s) = open.take() {
                    out.push(Element {
                        key: split_key(key, s, &minus_one(&e.key))?.into(),
                    });
                }
            } else {
                if let Some(s) = open.take() {
                    // Two starts in a row: the first one ran to the next start.
                    out.push(Element {
                        key: split_key(key, s, &minus_one(&e.key))?.into(),
                    });
                }
                open = Some(&e.key);
            }
        }
        if let Some(s) = open {
            let top = vec![0xff; s.len()];
            out.push(Element {
                key: split_key(key, s, &top)?.into(),
            });
        }
    } else {
        for e in live {
            let end = e.key_end.as_deref().unwrap_or(&e.key);
            out.push(Element {
                key: split_key(key, &e.key, end)?.into(),
            });
        }
    }
    out.sort();
    Some(out)
}

fn verdict_of(v: &Option<(u32, Option<String>)>) -> Option<Verdict> {
    let (code, chain) = v.as_ref()?;
    Some(match *code as i32 {
        0 => Verdict::Drop,
        1 => Verdict::Accept,
        -5 => Verdict::Return,
        -3 => Verdict::Jump(chain.clone()?),
        -4 => Verdict::Goto(chain.clone()?),
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
    let want: usize = model.sets.len() + model.maps.len();
    if live.sets.len() != want {
        return Some(format!(
            "kernel has {} sets and maps, model has {want}",
            live.sets.len()
        ));
    }
    for s in &model.sets {
        let Some(l) = live.sets.iter().find(|l| l.name == s.name) else {
            return Some(format!("set {} is missing", s.name));
        };
        if l.flags & SET_MAP != 0
            || l.flags != encode::set_flags(&s.key, s.interval)
            || l.key_type != encode::set_key_type(&s.key)
            || l.comment != s.comment
        {
            return Some(format!("set {} has another type, flags or comment", s.name));
        }
        match live_elements(&s.key, s.interval, &l.elements) {
            Some(e) if e == s.elements => {}
            Some(e) => {
                return Some(format!(
                    "set {} holds {} elements that differ from the model's {}",
                    s.name,
                    e.len(),
                    s.elements.len()
                ))
            }
            None => return Some(format!("set {} holds undecodable elements", s.name)),
        }
    }
    for m in &model.maps {
        let Some(l) = live.sets.iter().find(|l| l.name == m.name) else {
            return Some(format!("map {} is missing", m.name));
        };
        if l.flags & SET_MAP == 0
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
        if got != m.elements {
            return Some(format!("map {} elements differ from the model", m.name));
        }
    }
    if live.chains.len() != model.chains.len() {
        return Some(format!(
            "kernel has {} chains, model has {}",
            live.chains.len(),
            model.chains.len()
        ));
    }
    for c in &model.chains {
        let Some(l) = live.chains.iter().find(|l| l.name == c.name) else {
            return Some(format!("chain {} is missing", c.name));
        };
        let hook = c.base.as_ref().map(|b| {
            let h = match b.hook {
                Hook::Forward => 2,
                Hook::Output => 3,
            };
            (h, b.priority)
        });
        if l.hook != hook || l.comment != c.comment {
            return Some(format!(
                "chain {} has another hook, priority or comment",
                c.name
            ));
        }
        if let Some(b) = &c.base {
            let want = if b.policy == Verdict::Drop { 0 } else { 1 };
            if l.policy != Some(want) {
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
        for (i, (lr, r)) in l.rules.iter().zip(&c.rules).enumerate() {
            let names = super::exprs::rule_expr_names(&r.kind);
            if lr.exprs != names || lr.comment != r.comment {
                return Some(format!(
                    "rule {} of chain {} differs from the model",
                    i + 1,
                    c.name
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbtree_elements_decode_to_ranges() {
        let k = [KeyType::Ipv4Addr];
        let e = |b: [u8; 4], f| LiveElem {
            key: b.to_vec(),
            key_end: None,
            flags: f,
            verdict: None,
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
    }
}
