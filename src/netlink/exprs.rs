//! nft's expressions for each [`RuleKind`]: registers, payload offsets, dependencies.
//!
//! Owns: the expression list of every rule shape, exactly as nft 1.0.6 linearises the
//! rule text in an `inet` table (including the `meta nfproto` dependency before `ip`/`ip6`
//! matches and the register layout of `addr . meta l4proto . th dport` concatenations).
//! Must not: build messages or choose set ids (encode.rs does).

use super::encode::{
    verdict_code, ANON_SET, NFPROTO_IPV4, NFPROTO_IPV6, REG32_00, REG_1, REG_VERDICT,
};
use super::sys::Expr;
use crate::ruleset::model::*;

mod x {
    use nftnl_sys as s;
    pub const META_KEY: u32 = s::NFTNL_EXPR_META_KEY;
    pub const META_DREG: u32 = s::NFTNL_EXPR_META_DREG;
    pub const CMP_SREG: u32 = s::NFTNL_EXPR_CMP_SREG;
    pub const CMP_OP: u32 = s::NFTNL_EXPR_CMP_OP;
    pub const CMP_DATA: u32 = s::NFTNL_EXPR_CMP_DATA;
    pub const PAYLOAD_DREG: u32 = s::NFTNL_EXPR_PAYLOAD_DREG;
    pub const PAYLOAD_BASE: u32 = s::NFTNL_EXPR_PAYLOAD_BASE;
    pub const PAYLOAD_OFFSET: u32 = s::NFTNL_EXPR_PAYLOAD_OFFSET;
    pub const PAYLOAD_LEN: u32 = s::NFTNL_EXPR_PAYLOAD_LEN;
    pub const LOOKUP_SREG: u32 = s::NFTNL_EXPR_LOOKUP_SREG;
    pub const LOOKUP_DREG: u32 = s::NFTNL_EXPR_LOOKUP_DREG;
    pub const LOOKUP_FLAGS: u32 = s::NFTNL_EXPR_LOOKUP_FLAGS;
    pub const LOOKUP_SET: u32 = s::NFTNL_EXPR_LOOKUP_SET;
    pub const LOOKUP_SET_ID: u32 = s::NFTNL_EXPR_LOOKUP_SET_ID;
    pub const IMM_DREG: u32 = s::NFTNL_EXPR_IMM_DREG;
    pub const IMM_VERDICT: u32 = s::NFTNL_EXPR_IMM_VERDICT;
    pub const IMM_CHAIN: u32 = s::NFTNL_EXPR_IMM_CHAIN;
    pub const CT_KEY: u32 = s::NFTNL_EXPR_CT_KEY;
    pub const CT_DREG: u32 = s::NFTNL_EXPR_CT_DREG;
    pub const BITWISE_SREG: u32 = s::NFTNL_EXPR_BITWISE_SREG;
    pub const BITWISE_DREG: u32 = s::NFTNL_EXPR_BITWISE_DREG;
    pub const BITWISE_LEN: u32 = s::NFTNL_EXPR_BITWISE_LEN;
    pub const BITWISE_MASK: u32 = s::NFTNL_EXPR_BITWISE_MASK;
    pub const BITWISE_XOR: u32 = s::NFTNL_EXPR_BITWISE_XOR;
    pub const FIB_DREG: u32 = s::NFTNL_EXPR_FIB_DREG;
    pub const FIB_RESULT: u32 = s::NFTNL_EXPR_FIB_RESULT;
    pub const FIB_FLAGS: u32 = s::NFTNL_EXPR_FIB_FLAGS;
    pub const BYTEORDER_DREG: u32 = s::NFTNL_EXPR_BYTEORDER_DREG;
    pub const BYTEORDER_SREG: u32 = s::NFTNL_EXPR_BYTEORDER_SREG;
    pub const BYTEORDER_OP: u32 = s::NFTNL_EXPR_BYTEORDER_OP;
    pub const BYTEORDER_LEN: u32 = s::NFTNL_EXPR_BYTEORDER_LEN;
    pub const BYTEORDER_SIZE: u32 = s::NFTNL_EXPR_BYTEORDER_SIZE;
}

const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const CT_STATE: u32 = 0;
const CT_STATE_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const FIB_F_SADDR: u32 = 1;
const RTN_LOCAL: u32 = 2;
const BYTEORDER_HTON: u32 = 1;
const IPPROTO_ICMPV6: u8 = 58;

fn meta(key: u32, dreg: u32) -> Expr {
    Expr::new("meta")
        .u32(x::META_KEY, key)
        .u32(x::META_DREG, dreg)
}
fn cmp(op: u32, sreg: u32, data: &[u8]) -> Expr {
    Expr::new("cmp")
        .u32(x::CMP_SREG, sreg)
        .u32(x::CMP_OP, op)
        .data(x::CMP_DATA, data)
}
fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::new("payload")
        .u32(x::PAYLOAD_DREG, dreg)
        .u32(x::PAYLOAD_BASE, base)
        .u32(x::PAYLOAD_OFFSET, offset)
        .u32(x::PAYLOAD_LEN, len)
}
fn immediate(v: &Verdict) -> Expr {
    let (code, chain) = verdict_code(v);
    let e = Expr::new("immediate")
        .u32(x::IMM_DREG, REG_VERDICT)
        .u32(x::IMM_VERDICT, code);
    match chain {
        Some(c) => e.str(x::IMM_CHAIN, c),
        None => e,
    }
}
fn lookup(set: &str, set_id: Option<u32>, dreg: Option<u32>) -> Expr {
    let mut e = Expr::new("lookup")
        .u32(x::LOOKUP_SREG, REG_1)
        .str(x::LOOKUP_SET, set);
    if let Some(id) = set_id {
        e = e.u32(x::LOOKUP_SET_ID, id);
    }
    if let Some(d) = dreg {
        e = e.u32(x::LOOKUP_DREG, d);
    }
    e
}

/// `meta nfproto ipv4|ipv6`: the dependency nft inserts before an `ip`/`ip6` match in an
/// inet table.
fn nfproto(out: &mut Vec<Expr>, f: IpFamily) {
    out.push(meta(META_NFPROTO, REG_1));
    let p = match f {
        IpFamily::V4 => NFPROTO_IPV4,
        IpFamily::V6 => NFPROTO_IPV6,
    };
    out.push(cmp(CMP_EQ, REG_1, &[p]));
}

/// Load the address into register 1: (offset, length) in the network header.
fn addr_payload(f: IpFamily, addr: Addr) -> (u32, u32) {
    match (f, addr) {
        (IpFamily::V4, Addr::Saddr) => (12, 4),
        (IpFamily::V4, Addr::Daddr) => (16, 4),
        (IpFamily::V6, Addr::Saddr) => (8, 16),
        (IpFamily::V6, Addr::Daddr) => (24, 16),
    }
}

/// Resolves set names to the ids of sets created earlier in the same batch (nft sends both;
/// the kernel finds a set added in this transaction by either).
pub(crate) type SetIds<'a> = &'a dyn Fn(&str) -> Option<u32>;

/// The expressions of one rule, in nft's order.
pub(crate) fn rule_exprs(kind: &RuleKind, ids: SetIds, anon_id: Option<u32>) -> Vec<Expr> {
    let mut v = Vec::new();
    match kind {
        RuleKind::CtEstablishedAccept => {
            v.push(
                Expr::new("ct")
                    .u32(x::CT_DREG, REG_1)
                    .u32(x::CT_KEY, CT_STATE),
            );
            v.push(
                Expr::new("bitwise")
                    .u32(x::BITWISE_SREG, REG_1)
                    .u32(x::BITWISE_DREG, REG_1)
                    .u32(x::BITWISE_LEN, 4)
                    .data(x::BITWISE_MASK, &CT_STATE_ESTABLISHED_RELATED.to_ne_bytes())
                    .data(x::BITWISE_XOR, &0u32.to_ne_bytes()),
            );
            v.push(cmp(CMP_NEQ, REG_1, &0u32.to_ne_bytes()));
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::Icmpv6NdAccept => {
            nfproto(&mut v, IpFamily::V6);
            v.push(meta(META_L4PROTO, REG_1));
            v.push(cmp(CMP_EQ, REG_1, &[IPPROTO_ICMPV6]));
            v.push(payload(PAYLOAD_TRANSPORT, 0, 1, REG_1));
            v.push(lookup(ANON_SET, anon_id, None));
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::FibSaddrLocalAccept => {
            v.push(
                Expr::new("fib")
                    .u32(x::FIB_DREG, REG_1)
                    .u32(x::FIB_RESULT, FIB_RESULT_ADDRTYPE)
                    .u32(x::FIB_FLAGS, FIB_F_SADDR),
            );
            v.push(cmp(CMP_EQ, REG_1, &RTN_LOCAL.to_ne_bytes()));
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::Jump(c) => v.push(immediate(&Verdict::Jump(c.clone()))),
        RuleKind::DispatchVmap { family, addr, map } => {
            nfproto(&mut v, *family);
            let (off, len) = addr_payload(*family, *addr);
            v.push(payload(PAYLOAD_NETWORK, off, len, REG_1));
            v.push(lookup(map, ids(map), Some(REG_VERDICT)));
        }
        RuleKind::Lookup {
            family,
            addr,
            key,
            set,
            verdict,
        } => {
            nfproto(&mut v, *family);
            let (off, len) = addr_payload(*family, *addr);
            v.push(payload(PAYLOAD_NETWORK, off, len, REG_1));
            if let LookupKey::Ports { ranges } = key {
                // The concatenation continues in the 32-bit register after the address.
                let proto_reg = REG32_00 + len / 4;
                v.push(meta(META_L4PROTO, proto_reg));
                // Interval sets compare big-endian; nft converts the host-order protocol.
                if *ranges {
                    v.push(
                        Expr::new("byteorder")
                            .u32(x::BYTEORDER_SREG, proto_reg)
                            .u32(x::BYTEORDER_DREG, proto_reg)
                            .u32(x::BYTEORDER_OP, BYTEORDER_HTON)
                            .u32(x::BYTEORDER_LEN, 1)
                            .u32(x::BYTEORDER_SIZE, 2),
                    );
                }
                v.push(payload(PAYLOAD_TRANSPORT, 2, 2, proto_reg + 1));
            }
            v.push(lookup(set, ids(set), None));
            v.push(immediate(verdict));
        }
        RuleKind::DropUnknown {
            family,
            addr,
            cidrs,
            known,
        } => {
            // nft loads the address again for the second match, and marks the negated
            // lookup with NFT_LOOKUP_F_INV.
            nfproto(&mut v, *family);
            let (off, len) = addr_payload(*family, *addr);
            v.push(payload(PAYLOAD_NETWORK, off, len, REG_1));
            v.push(lookup(cidrs, ids(cidrs), None));
            v.push(payload(PAYLOAD_NETWORK, off, len, REG_1));
            v.push(lookup(known, ids(known), None).u32(x::LOOKUP_FLAGS, 1));
            v.push(immediate(&Verdict::Drop));
        }
        RuleKind::Verdict(verdict) => v.push(immediate(verdict)),
    }
    v
}

/// Names of the expressions [`rule_exprs`] emits, for comparing with a read-back rule.
pub(crate) fn rule_expr_names(kind: &RuleKind) -> Vec<&'static str> {
    match kind {
        RuleKind::CtEstablishedAccept => vec!["ct", "bitwise", "cmp", "immediate"],
        RuleKind::Icmpv6NdAccept => {
            vec![
                "meta",
                "cmp",
                "meta",
                "cmp",
                "payload",
                "lookup",
                "immediate",
            ]
        }
        RuleKind::FibSaddrLocalAccept => vec!["fib", "cmp", "immediate"],
        RuleKind::Jump(_) | RuleKind::Verdict(_) => vec!["immediate"],
        RuleKind::DropUnknown { .. } => vec![
            "meta",
            "cmp",
            "payload",
            "lookup",
            "payload",
            "lookup",
            "immediate",
        ],
        RuleKind::DispatchVmap { .. } => vec!["meta", "cmp", "payload", "lookup"],
        RuleKind::Lookup {
            key: LookupKey::Addr,
            ..
        } => {
            vec!["meta", "cmp", "payload", "lookup", "immediate"]
        }
        RuleKind::Lookup {
            key: LookupKey::Ports { ranges: false },
            ..
        } => vec![
            "meta",
            "cmp",
            "payload",
            "meta",
            "payload",
            "lookup",
            "immediate",
        ],
        RuleKind::Lookup {
            key: LookupKey::Ports { ranges: true },
            ..
        } => vec![
            "meta",
            "cmp",
            "payload",
            "meta",
            "byteorder",
            "payload",
            "lookup",
            "immediate",
        ],
    }
}
