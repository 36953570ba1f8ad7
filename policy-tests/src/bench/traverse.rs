//! How many rules a new connection's first packet traverses in nftpol's ruleset: the
//! forward base chain (established traffic stops at its first rule), the dispatch chain up
//! to the verdict map that jumps, and the pod chain up to the lookup that accepts (or its
//! final drop). Counted on the model by the
//! library's own evaluator (`nftpol::ruleset::eval`), which follows the rule shapes the
//! kernel evaluates; a verdict-map or set lookup is one rule.

pub use nftpol::ruleset::eval::forward_walk as forward;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scenario::{build, PORT};
    use nftpol::ruleset::eval::Packet;

    #[test]
    fn nftpol_first_packet_is_a_few_rules_whatever_the_policies() {
        let mut counts = Vec::new();
        for policies in [50, 400] {
            let s = build(1000, policies, 2);
            let (_, rs) = s.compile().unwrap();
            let p = Packet {
                saddr: s.clients[1].into(),
                daddr: s.server.into(),
                l4proto: 6,
                dport: PORT,
            };
            let w = forward(&rs, &p).unwrap();
            assert!(w.accepted);
            // forward: ct, held4, held6, jump; dispatch: egress4, ingress4 vmap (IPv4
            // before the ND rule and the IPv6 maps); pod chain: any4, exact4 (a hash set:
            // the clients are contiguous, but a short range on one port is spelled out).
            assert_eq!(w.rules, 8);
            counts.push(w.rules);
            let intruder = Packet {
                saddr: s.intruder.into(),
                ..p
            };
            let w = forward(&rs, &intruder).unwrap();
            assert!(!w.accepted);
            assert_eq!(
                w.rules, 14,
                "6 to the pod chain, then any4, exact4, ports4, any6, exact6, ports6, log, drop"
            );
        }
        assert_eq!(counts[0], counts[1]);
    }
}
