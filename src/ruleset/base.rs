//! The skeleton every node's table has whatever the policies: the base chains (forward
//! and output, each ending in a jump to dispatch), their first rules (established
//! traffic, held connections) and the held sets. Knows no policy and no pod.

use super::model::*;
use super::names;

/// The first rule of every base chain.
pub(super) fn established() -> Rule {
    Rule::with_comment(
        RuleKind::CtEstablishedAccept,
        "replies and related traffic of allowed connections",
    )
}

/// The held-connection drop of every base chain, after [`established`].
pub(super) fn held(family: IpFamily) -> Rule {
    Rule::with_comment(
        RuleKind::HeldDrop {
            family,
            set: names::HELD_SETS[(family == IpFamily::V6) as usize].into(),
        },
        "packets of connections cut since policy revoked them",
    )
}

/// Every packet of an established connection stops at the first rule of its base chain,
/// as it would in a table holding only that rule: the per-packet cost of nftpol beyond
/// conntrack itself is nothing, and only a connection's first packet goes further.
pub(super) fn base_chains() -> Vec<Chain> {
    let policy = names::CHAIN_DISPATCH.to_string();
    vec![
        Chain {
            name: names::CHAIN_FORWARD.into(),
            base: Some(BaseChain {
                hook: Hook::Forward,
                priority: 0,
                policy: Verdict::Accept,
            }),
            comment: Some("routed and bridged (br_netfilter) pod traffic".into()),
            rules: vec![
                established(),
                held(IpFamily::V4),
                held(IpFamily::V6),
                Rule::new(RuleKind::Jump(policy.clone())),
            ],
        },
        Chain {
            name: names::CHAIN_OUTPUT.into(),
            base: Some(BaseChain {
                hook: Hook::Output,
                priority: 0,
                policy: Verdict::Accept,
            }),
            comment: Some("IPVS sends Service traffic to its backend from here".into()),
            rules: vec![
                established(),
                held(IpFamily::V4),
                held(IpFamily::V6),
                Rule::with_comment(
                    RuleKind::FibSaddrLocalAccept,
                    "the node itself may reach its pods",
                ),
                Rule::new(RuleKind::Jump(policy)),
            ],
        },
    ]
}

/// The held sets (see `RuleKind::HeldDrop`): declared empty, filled by the controller.
pub(super) fn held_sets() -> Vec<Set> {
    [KeyType::Ipv4Addr, KeyType::Ipv6Addr]
        .into_iter()
        .zip(names::HELD_SETS)
        .map(|(addr, name)| Set {
            name: name.into(),
            role: SetRole::Held,
            key: vec![
                addr,
                addr,
                KeyType::InetProto,
                KeyType::InetService,
                KeyType::InetService,
            ],
            interval: false,
            comment: Some("connections cut since policy revoked them, both directions".into()),
            elements: vec![],
            timeout: Some(names::HELD_TIMEOUT_SECS),
            counter: false,
        })
        .collect()
}
