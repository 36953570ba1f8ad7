//! nft's expressions for each [`RuleKind`]: registers, payload offsets, dependencies.
//!
//! Owns: the expression list of every rule shape, exactly as nft 1.0.6 linearises the
//! rule text in an `inet` table (including the `meta nfproto` dependency before `ip`/`ip6`
//! matches and the register layout of `addr . meta l4proto . th dport` concatenations).
//! Must not: build messages or choose set ids (encode.rs does).

use super::abi::nftnl_attr;
use super::abi::*;
use super::sys::Expr;
use crate::ruleset::model::*;

/// The name nft gives the anonymous set of `icmpv6 type { ... }`; the kernel replaces
/// `%d` with a free number.
pub(crate) const ANON_SET: &str = "__set%d";
pub(crate) fn verdict_code(v: &Verdict) -> (u32, Option<&str>) {
    match v {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (NFT_GOTO, Some(c)),
    }
}

fn meta(key: u32, dreg: u32) -> Expr {
    Expr::new("meta")
        .u32(nftnl_attr::META_KEY, key)
        .u32(nftnl_attr::META_DREG, dreg)
}
fn cmp(op: u32, sreg: u32, data: &[u8]) -> Expr {
    Expr::new("cmp")
        .u32(nftnl_attr::CMP_SREG, sreg)
        .u32(nftnl_attr::CMP_OP, op)
        .data(nftnl_attr::CMP_DATA, data)
}
fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::new("payload")
        .u32(nftnl_attr::PAYLOAD_DREG, dreg)
        .u32(nftnl_attr::PAYLOAD_BASE, base)
        .u32(nftnl_attr::PAYLOAD_OFFSET, offset)
        .u32(nftnl_attr::PAYLOAD_LEN, len)
}
fn immediate(v: &Verdict) -> Expr {
    let (code, chain) = verdict_code(v);
    let e = Expr::new("immediate")
        .u32(nftnl_attr::IMM_DREG, NFT_REG_VERDICT)
        .u32(nftnl_attr::IMM_VERDICT, code);
    match chain {
        Some(c) => e.str(nftnl_attr::IMM_CHAIN, c),
        None => e,
    }
}
fn lookup(set: &str, set_id: Option<u32>, dreg: Option<u32>) -> Expr {
    let mut e = Expr::new("lookup")
        .u32(nftnl_attr::LOOKUP_SREG, NFT_REG_1)
        .str(nftnl_attr::LOOKUP_SET, set);
    if let Some(id) = set_id {
        e = e.u32(nftnl_attr::LOOKUP_SET_ID, id);
    }
    if let Some(d) = dreg {
        e = e.u32(nftnl_attr::LOOKUP_DREG, d);
    }
    e
}

/// `ct state established,related`: the mask of the two state bits.
const CT_ESTABLISHED_RELATED: u32 = NF_CT_STATE_ESTABLISHED_BIT | NF_CT_STATE_RELATED_BIT;

/// `ct state <mask>`: load the state, keep the bits of `mask`, match if any is set.
fn ct_state(out: &mut Vec<Expr>, mask: u32) {
    out.push(
        Expr::new("ct")
            .u32(nftnl_attr::CT_DREG, NFT_REG_1)
            .u32(nftnl_attr::CT_KEY, NFT_CT_STATE),
    );
    out.push(
        Expr::new("bitwise")
            .u32(nftnl_attr::BITWISE_SREG, NFT_REG_1)
            .u32(nftnl_attr::BITWISE_DREG, NFT_REG_1)
            .u32(nftnl_attr::BITWISE_LEN, 4)
            .data(nftnl_attr::BITWISE_MASK, &mask.to_ne_bytes())
            .data(nftnl_attr::BITWISE_XOR, &0u32.to_ne_bytes()),
    );
    out.push(cmp(NFT_CMP_NEQ, NFT_REG_1, &0u32.to_ne_bytes()));
}

/// `log prefix "<prefix>" group <group>`: nft sets only what the rule text names (no
/// snaplen, threshold, level or flags), so the instance's copy mode decides what is copied.
fn log(prefix: &str, group: u16) -> Expr {
    Expr::new("log")
        .str(nftnl_attr::LOG_PREFIX, prefix)
        .u16(nftnl_attr::LOG_GROUP, group)
}

/// `limit rate <rate>/second burst <burst> packets`: nft sends every field, flags 0
/// (not `over`).
fn limit(rate: u32, burst: u32) -> Expr {
    Expr::new("limit")
        .u64(nftnl_attr::LIMIT_RATE, rate.into())
        .u64(nftnl_attr::LIMIT_UNIT, LIMIT_UNIT_SECOND)
        .u32(nftnl_attr::LIMIT_BURST, burst)
        .u32(nftnl_attr::LIMIT_TYPE, NFT_LIMIT_PKTS)
        .u32(nftnl_attr::LIMIT_FLAGS, 0)
}

/// `meta nfproto ipv4|ipv6`: the dependency nft inserts before an `ip`/`ip6` match in an
/// inet table.
fn nfproto(out: &mut Vec<Expr>, f: IpFamily) {
    out.push(meta(NFT_META_NFPROTO, NFT_REG_1));
    let p = match f {
        IpFamily::V4 => NFPROTO_IPV4,
        IpFamily::V6 => NFPROTO_IPV6,
    };
    out.push(cmp(NFT_CMP_EQ, NFT_REG_1, &[p]));
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

/// The expressions of one rule, in nft's order: one arm per rule shape, the longer shapes
/// in functions of their own below.
pub(crate) fn rule_exprs(kind: &RuleKind, ids: SetIds, anon_id: Option<u32>) -> Vec<Expr> {
    let mut v = Vec::new();
    match kind {
        RuleKind::CtEstablishedAccept => {
            ct_state(&mut v, CT_ESTABLISHED_RELATED);
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::LogDenied {
            prefix,
            group,
            rate,
            burst,
        } => {
            ct_state(&mut v, NF_CT_STATE_NEW_BIT);
            // nft sends a fresh counter with no attributes (zero packets and bytes).
            v.push(Expr::new("counter"));
            v.push(limit(*rate, *burst));
            v.push(log(prefix, *group));
        }
        RuleKind::Icmpv6NdAccept => {
            nfproto(&mut v, IpFamily::V6);
            v.push(meta(NFT_META_L4PROTO, NFT_REG_1));
            v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &[IPPROTO_ICMPV6]));
            v.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG_1));
            v.push(lookup(ANON_SET, anon_id, None));
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::FibSaddrLocalAccept => {
            v.push(
                Expr::new("fib")
                    .u32(nftnl_attr::FIB_DREG, NFT_REG_1)
                    .u32(nftnl_attr::FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
                    .u32(nftnl_attr::FIB_FLAGS, NFTA_FIB_F_SADDR),
            );
            v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &RTN_LOCAL.to_ne_bytes()));
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::Jump(c) => v.push(immediate(&Verdict::Jump(c.clone()))),
        RuleKind::DispatchVmap { family, addr, map } => {
            address(&mut v, *family, *addr);
            v.push(lookup(map, ids(map), Some(NFT_REG_VERDICT)));
        }
        RuleKind::Lookup { .. } => lookup_exprs(&mut v, kind, ids),
        RuleKind::LookupPair { .. } => pair_exprs(&mut v, kind, ids),
        RuleKind::DropUnknown {
            family,
            addr,
            cidrs,
            known,
        } => {
            // nft loads the address again for the second match, and marks the negated
            // lookup with NFT_LOOKUP_F_INV.
            address(&mut v, *family, *addr);
            v.push(lookup(cidrs, ids(cidrs), None));
            let (off, len) = addr_payload(*family, *addr);
            v.push(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len, NFT_REG_1));
            v.push(lookup(known, ids(known), None).u32(nftnl_attr::LOOKUP_FLAGS, NFT_LOOKUP_F_INV));
            v.push(immediate(&Verdict::Drop));
        }
        RuleKind::HeldDrop { family, set } => held_exprs(&mut v, *family, set, ids),
        RuleKind::LearnedLookup { .. } => learned_exprs(&mut v, kind, ids),
        RuleKind::SteerTransparent { mark } => {
            v.push(meta(NFT_META_L4PROTO, NFT_REG_1));
            v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &[IPPROTO_TCP]));
            v.push(
                Expr::new("socket")
                    .u32(nftnl_attr::SOCKET_KEY, NFT_SOCKET_TRANSPARENT)
                    .u32(nftnl_attr::SOCKET_DREG, NFT_REG_1),
            );
            v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &[1]));
            mark_or(&mut v, *mark);
            v.push(immediate(&Verdict::Accept));
        }
        RuleKind::SteerDns { .. } => steer_exprs(&mut v, kind, ids),
        RuleKind::MarkedDispatch { family, mark, map } => {
            v.push(meta(NFT_META_MARK, NFT_REG_1));
            v.push(bitwise_and(*mark));
            v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &mark.to_ne_bytes()));
            address(&mut v, *family, Addr::Saddr);
            v.push(lookup(map, ids(map), Some(NFT_REG_VERDICT)));
        }
        RuleKind::Verdict(verdict) => v.push(immediate(verdict)),
        RuleKind::Counted(verdict) => {
            v.push(Expr::new("counter"));
            v.push(immediate(verdict));
        }
    }
    v
}

/// `meta nfproto` and the address loaded into register 1.
fn address(v: &mut Vec<Expr>, family: IpFamily, addr: Addr) {
    nfproto(v, family);
    let (off, len) = addr_payload(family, addr);
    v.push(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len, NFT_REG_1));
}

/// `meta l4proto . th dport` into registers `reg` and `port_reg`. Interval sets compare
/// big-endian, so nft converts the host-order protocol first when `ranges`.
fn proto_port(v: &mut Vec<Expr>, [reg, port_reg]: [u32; 2], ranges: bool) {
    v.push(meta(NFT_META_L4PROTO, reg));
    if ranges {
        v.push(
            Expr::new("byteorder")
                .u32(nftnl_attr::BYTEORDER_SREG, reg)
                .u32(nftnl_attr::BYTEORDER_DREG, reg)
                .u32(nftnl_attr::BYTEORDER_OP, NFT_BYTEORDER_HTON)
                .u32(nftnl_attr::BYTEORDER_LEN, 1)
                .u32(nftnl_attr::BYTEORDER_SIZE, 2),
        );
    }
    v.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, port_reg));
}

/// The log and the verdict that end a lookup rule.
fn log_and_verdict(v: &mut Vec<Expr>, log_to: &Option<LogTarget>, verdict: &Verdict) {
    if let Some(t) = log_to {
        v.push(log(&t.prefix, t.group));
    }
    v.push(immediate(verdict));
}

/// `ip saddr [. meta l4proto . th dport] @set verdict`.
fn lookup_exprs(v: &mut Vec<Expr>, kind: &RuleKind, ids: SetIds) {
    let RuleKind::Lookup {
        family,
        addr,
        key,
        set,
        verdict,
        log: log_to,
    } = kind
    else {
        return;
    };
    address(v, *family, *addr);
    if let LookupKey::Ports { ranges } = key {
        // The concatenation continues in the 32-bit register after the address.
        let (_, len) = addr_payload(*family, *addr);
        let proto_reg = NFT_REG32_00 + len / 4;
        proto_port(v, [proto_reg, proto_reg + 1], *ranges);
    }
    v.push(lookup(set, ids(set), None));
    log_and_verdict(v, log_to, verdict);
}

/// `ip saddr @addrs meta l4proto . th dport @ports verdict`.
fn pair_exprs(v: &mut Vec<Expr>, kind: &RuleKind, ids: SetIds) {
    let RuleKind::LookupPair {
        family,
        addr,
        addrs,
        ports,
        ranges,
        verdict,
        log: log_to,
    } = kind
    else {
        return;
    };
    address(v, *family, *addr);
    v.push(lookup(addrs, ids(addrs), None));
    // A new concatenation: nft starts it again in register 1.
    proto_port(v, [reg32(0), reg32(1)], *ranges);
    v.push(lookup(ports, ids(ports), None));
    log_and_verdict(v, log_to, verdict);
}

/// `register 1 = register 1 & mask` (4 bytes).
fn bitwise_and(mask: u32) -> Expr {
    bitwise_and_bytes(&mask.to_ne_bytes())
}

/// `reg1 & mask` over `mask`'s length.
fn bitwise_and_bytes(mask: &[u8]) -> Expr {
    Expr::new("bitwise")
        .u32(nftnl_attr::BITWISE_SREG, NFT_REG_1)
        .u32(nftnl_attr::BITWISE_DREG, NFT_REG_1)
        .u32(nftnl_attr::BITWISE_LEN, mask.len() as u32)
        .data(nftnl_attr::BITWISE_MASK, mask)
        .data(nftnl_attr::BITWISE_XOR, &vec![0u8; mask.len()])
}

/// TCP header flag bits (RFC 9293).
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// `meta mark set meta mark | <mark>`: nft writes `x | c` as `(x & !c) ^ c`.
fn mark_or(v: &mut Vec<Expr>, mark: u32) {
    v.push(meta(NFT_META_MARK, NFT_REG_1));
    v.push(
        Expr::new("bitwise")
            .u32(nftnl_attr::BITWISE_SREG, NFT_REG_1)
            .u32(nftnl_attr::BITWISE_DREG, NFT_REG_1)
            .u32(nftnl_attr::BITWISE_LEN, 4)
            .data(nftnl_attr::BITWISE_MASK, &(!mark).to_ne_bytes())
            .data(nftnl_attr::BITWISE_XOR, &mark.to_ne_bytes()),
    );
    v.push(
        Expr::new("meta")
            .u32(nftnl_attr::META_KEY, NFT_META_MARK)
            .u32(nftnl_attr::META_SREG, NFT_REG_1),
    );
}

/// `ip daddr [. meta l4proto . th dport] @open ip daddr @learned verdict`: the second
/// address match needs no `meta nfproto` again (nft drops the satisfied dependency).
fn learned_exprs(v: &mut Vec<Expr>, kind: &RuleKind, ids: SetIds) {
    let RuleKind::LearnedLookup {
        family,
        key,
        open,
        learned,
        verdict,
        log: log_to,
    } = kind
    else {
        return;
    };
    address(v, *family, Addr::Daddr);
    let (off, len) = addr_payload(*family, Addr::Daddr);
    if let LookupKey::Ports { ranges } = key {
        let proto_reg = NFT_REG32_00 + len / 4;
        proto_port(v, [proto_reg, proto_reg + 1], *ranges);
    }
    v.push(lookup(open, ids(open), None));
    v.push(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len, NFT_REG_1));
    v.push(lookup(learned, ids(learned), None));
    log_and_verdict(v, log_to, verdict);
}

/// `ip saddr @pods udp dport @alive tproxy ip to :port meta mark set meta mark | mark
/// accept`.
fn steer_exprs(v: &mut Vec<Expr>, kind: &RuleKind, ids: SetIds) {
    let RuleKind::SteerDns {
        family,
        protocol,
        pods,
        servers,
        alive,
        port,
        mark,
    } = kind
    else {
        return;
    };
    address(v, *family, Addr::Saddr);
    v.push(lookup(pods, ids(pods), None));
    let (off, len) = addr_payload(*family, Addr::Daddr);
    v.push(payload(NFT_PAYLOAD_NETWORK_HEADER, off, len, NFT_REG_1));
    v.push(lookup(servers, ids(servers), None));
    v.push(meta(NFT_META_L4PROTO, NFT_REG_1));
    v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &[protocol.number()]));
    v.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG_1));
    v.push(lookup(alive, ids(alive), None));
    if *protocol == crate::policy::Protocol::Tcp {
        // `tcp flags & (syn | ack) == syn`: the flags byte is at offset 13.
        v.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1, NFT_REG_1));
        v.push(bitwise_and_bytes(&[TCP_SYN | TCP_ACK]));
        v.push(cmp(NFT_CMP_EQ, NFT_REG_1, &[TCP_SYN]));
    }
    v.push(
        Expr::new("immediate")
            .u32(nftnl_attr::IMM_DREG, NFT_REG_1)
            .data(nftnl_attr::IMM_DATA, &port.to_be_bytes()),
    );
    let nfproto = match family {
        IpFamily::V4 => NFPROTO_IPV4,
        IpFamily::V6 => NFPROTO_IPV6,
    };
    v.push(
        Expr::new("tproxy")
            .u32(nftnl_attr::TPROXY_FAMILY, u32::from(nfproto))
            .u32(nftnl_attr::TPROXY_REG_PORT, NFT_REG_1),
    );
    mark_or(v, *mark);
    v.push(immediate(&Verdict::Accept));
}

/// `ip saddr . ip daddr . meta l4proto . th sport . th dport @held drop`.
fn held_exprs(v: &mut Vec<Expr>, family: IpFamily, set: &str, ids: SetIds) {
    nfproto(v, family);
    let (saddr, len) = addr_payload(family, Addr::Saddr);
    let (daddr, _) = addr_payload(family, Addr::Daddr);
    let words = len / 4;
    let net = NFT_PAYLOAD_NETWORK_HEADER;
    let th = NFT_PAYLOAD_TRANSPORT_HEADER;
    v.push(payload(net, saddr, len, reg32(0)));
    v.push(payload(net, daddr, len, reg32(words)));
    v.push(meta(NFT_META_L4PROTO, reg32(2 * words)));
    v.push(payload(th, 0, 2, reg32(2 * words + 1)));
    v.push(payload(th, 2, 2, reg32(2 * words + 2)));
    v.push(lookup(set, ids(set), None));
    v.push(immediate(&Verdict::Drop));
}

/// The register of the `n`th 32-bit word of a concatenation that starts in register 1,
/// numbered as nft numbers it: a word that starts a 128-bit register by that register.
fn reg32(n: u32) -> u32 {
    if n.is_multiple_of(4) {
        NFT_REG_1 + n / 4
    } else {
        NFT_REG32_00 + n
    }
}

/// Names of the expressions [`rule_exprs`] emits, for comparing with a read-back rule:
/// taken from the encoder itself, so the two cannot disagree. Set names and ids do not
/// change which expressions a rule has, so none are resolved.
pub(crate) fn rule_expr_names(kind: &RuleKind) -> Vec<&'static str> {
    rule_exprs(kind, &|_| None, None)
        .iter()
        .map(Expr::name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft --debug=netlink` lists for each rule shape (nft 1.0.6): the names drift
    /// compares come from `rule_exprs`, so this pins the encoder against nft, not a copy
    /// of itself.
    #[test]
    fn expression_names_are_the_encoders_in_nfts_order() {
        let v4 = IpFamily::V4;
        let lookup = |key| RuleKind::Lookup {
            family: v4,
            addr: Addr::Saddr,
            key,
            set: "s".into(),
            verdict: Verdict::Accept,
            log: None,
        };
        let cases: Vec<(RuleKind, &str)> = vec![
            (RuleKind::CtEstablishedAccept, "ct bitwise cmp immediate"),
            (
                RuleKind::Icmpv6NdAccept,
                "meta cmp meta cmp payload lookup immediate",
            ),
            (RuleKind::FibSaddrLocalAccept, "fib cmp immediate"),
            (RuleKind::Jump("c".into()), "immediate"),
            (RuleKind::Verdict(Verdict::Drop), "immediate"),
            (RuleKind::Counted(Verdict::Drop), "counter immediate"),
            (
                RuleKind::Counted(Verdict::Goto("c".into())),
                "counter immediate",
            ),
            (
                RuleKind::LogDenied {
                    prefix: "d ingress/x/a".into(),
                    group: 9309,
                    rate: 10,
                    burst: 20,
                },
                "ct bitwise cmp counter limit log",
            ),
            (
                RuleKind::Lookup {
                    family: v4,
                    addr: Addr::Saddr,
                    key: LookupKey::Addr,
                    set: "s".into(),
                    verdict: Verdict::Accept,
                    log: Some(LogTarget {
                        prefix: "a ingress/x/a".into(),
                        group: 9309,
                    }),
                },
                "meta cmp payload lookup log immediate",
            ),
            (
                RuleKind::DispatchVmap {
                    family: v4,
                    addr: Addr::Daddr,
                    map: "m".into(),
                },
                "meta cmp payload lookup",
            ),
            (lookup(LookupKey::Addr), "meta cmp payload lookup immediate"),
            (
                lookup(LookupKey::Ports { ranges: false }),
                "meta cmp payload meta payload lookup immediate",
            ),
            (
                lookup(LookupKey::Ports { ranges: true }),
                "meta cmp payload meta byteorder payload lookup immediate",
            ),
            (
                RuleKind::LookupPair {
                    family: v4,
                    addr: Addr::Saddr,
                    addrs: "a".into(),
                    ports: "p".into(),
                    ranges: true,
                    verdict: Verdict::Accept,
                    log: None,
                },
                "meta cmp payload lookup meta byteorder payload lookup immediate",
            ),
            (
                RuleKind::LookupPair {
                    family: v4,
                    addr: Addr::Saddr,
                    addrs: "a".into(),
                    ports: "p".into(),
                    ranges: false,
                    verdict: Verdict::Accept,
                    log: None,
                },
                "meta cmp payload lookup meta payload lookup immediate",
            ),
            (
                RuleKind::DropUnknown {
                    family: v4,
                    addr: Addr::Saddr,
                    cidrs: "c".into(),
                    known: "k".into(),
                },
                "meta cmp payload lookup payload lookup immediate",
            ),
            (
                RuleKind::HeldDrop {
                    family: IpFamily::V6,
                    set: "h".into(),
                },
                "meta cmp payload payload meta payload payload lookup immediate",
            ),
            (
                RuleKind::LearnedLookup {
                    family: v4,
                    key: LookupKey::Ports { ranges: true },
                    open: "o".into(),
                    learned: "l".into(),
                    verdict: Verdict::Return,
                    log: None,
                },
                "meta cmp payload meta byteorder payload lookup payload lookup immediate",
            ),
            (
                RuleKind::SteerTransparent { mark: 0x20_0000 },
                "meta cmp socket cmp meta bitwise meta immediate",
            ),
            (
                RuleKind::SteerDns {
                    family: v4,
                    protocol: crate::policy::Protocol::Udp,
                    pods: "p".into(),
                    servers: "s".into(),
                    alive: "a".into(),
                    port: 9353,
                    mark: 0x20_0000,
                },
                "meta cmp payload lookup payload lookup meta cmp payload lookup immediate tproxy meta bitwise meta immediate",
            ),
            (
                RuleKind::MarkedDispatch {
                    family: v4,
                    mark: 0x20_0000,
                    map: "m".into(),
                },
                "meta bitwise cmp meta cmp payload lookup",
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(rule_expr_names(&kind).join(" "), want, "{kind:?}");
        }
    }
}
