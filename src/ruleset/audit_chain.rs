//! The audit chains of a pod direction that audited policies (`nftpol.io/mode: audit`)
//! change: the kernel judges each new connection as enforced, then again as the audited
//! view would, and logs where the two differ. The verdict is always the enforced one.
//!
//! ```text
//! chain egress/<ns>/<pod>              the enforced rules; an allow `goto …/audit-allowed`,
//!                                      a deny `goto …/audit-denied`
//! chain egress/<ns>/<pod>/audit-allowed  the audited view's rules: allow -> return
//!                                        (accept for ingress); deny -> goto …/would-deny
//! chain egress/<ns>/<pod>/audit-denied   the audited view's rules: allow -> goto
//!                                        …/would-allow; deny -> goto …/drop
//! chain egress/<ns>/<pod>/would-deny     ct state new limit … log prefix "wd egress/…"; return
//! chain egress/<ns>/<pod>/would-allow    ct state new limit … log prefix "wa egress/…";
//!                                        goto …/drop
//! chain egress/<ns>/<pod>/drop           the denied log rule; drop
//! ```
//!
//! Pod chains see only packets of new connections (the base chains accept established
//! ones first), so established traffic pays nothing, and pods no audited policy changes
//! have none of this. Owns the audit chains' shape and ends; the rules inside come from
//! `build` (the same code as the enforced view's), and the tier sets of the audited view
//! from `tier_chain`. Must not decide what the audited view allows (the graph does).

use super::model::{Chain, Rule, RuleKind, Verdict};
use super::names::{self, AuditChain, LogVerdict};
use super::options::LogOptions;
use super::tier_chain::Ends;
use crate::graph::PodNode;
use crate::policy::Direction;

/// What an allow does at the end: `return` in the egress chain (the policy chain then
/// checks the destination's ingress), `accept` in the ingress chain.
pub(super) fn final_allow(dir: Direction) -> Verdict {
    match dir {
        Direction::Egress => Verdict::Return,
        Direction::Ingress => Verdict::Accept,
    }
}

fn goto(pod: &PodNode, dir: Direction, which: AuditChain) -> Verdict {
    Verdict::Goto(names::pod_audit_chain(
        dir,
        &pod.namespace,
        &pod.name,
        which,
    ))
}

/// (allow, deny) of the enforced chain of an audited pod direction: each decision goes
/// to the chain that judges it again.
pub(super) fn enforced_ends(pod: &PodNode, dir: Direction) -> (Verdict, Verdict) {
    (
        goto(pod, dir, AuditChain::Allowed),
        goto(pod, dir, AuditChain::Denied),
    )
}

/// The ends of the audited view's rules in the two judging chains: after an enforced
/// allow (`[0]`) and after an enforced deny (`[1]`).
pub(super) fn judge_ends(pod: &PodNode, dir: Direction) -> [Ends; 2] {
    let drop = Verdict::Goto(names::pod_drop_chain(dir, &pod.namespace, &pod.name));
    [
        Ends {
            allow: final_allow(dir),
            deny: goto(pod, dir, AuditChain::WouldDeny),
            log_allowed: None,
        },
        Ends {
            allow: goto(pod, dir, AuditChain::WouldAllow),
            deny: drop,
            log_allowed: None,
        },
    ]
}

/// The four audit chains of `pod` in `dir`, from the audited view's rules for each
/// judging chain (made with [`judge_ends`], in its order).
pub(super) fn chains(
    pod: &PodNode,
    audited: &PodNode,
    dir: Direction,
    judged: [(Ends, Vec<Rule>); 2],
    log: &LogOptions,
) -> Vec<Chain> {
    let id = pod.id();
    let name = |which| names::pod_audit_chain(dir, &pod.namespace, &pod.name, which);
    let mut out = Vec::with_capacity(4);
    let isolated = audited.isolation(dir);
    for ((ends, mut rules), which) in judged
        .into_iter()
        .zip([AuditChain::Allowed, AuditChain::Denied])
    {
        // The audited view's own end: its NetworkPolicy isolation denies what no lookup
        // allowed; without it what falls through is allowed.
        rules.push(match isolated {
            Some(iso) => Rule::with_comment(
                RuleKind::Verdict(ends.deny),
                names::comment(&format!(
                    "audited: isolated by {}",
                    iso.isolated_by.join(", ")
                )),
            ),
            None => Rule::new(RuleKind::Verdict(ends.allow)),
        });
        let what = match which {
            AuditChain::Allowed => "allowed",
            _ => "denied",
        };
        out.push(Chain {
            name: name(which),
            base: None,
            comment: Some(names::comment(&format!(
                "pod {id} {dir}: {what}; as the audited policies would judge it"
            ))),
            rules,
        });
    }
    let chain = names::pod_chain(dir, &pod.namespace, &pod.name);
    let logged = |verdict: LogVerdict, then: Verdict, comment: &str| {
        let mut rules = Vec::new();
        if log.denied {
            rules.push(Rule::new(RuleKind::LogDenied {
                prefix: names::log_prefix(verdict, &chain),
                group: log.group,
                rate: log.rate,
                burst: log.burst,
            }));
        }
        rules.push(Rule::with_comment(
            RuleKind::Verdict(then),
            comment.to_string(),
        ));
        rules
    };
    let drop = Verdict::Goto(names::pod_drop_chain(dir, &pod.namespace, &pod.name));
    out.push(Chain {
        name: name(AuditChain::WouldDeny),
        base: None,
        comment: Some(names::comment(&format!(
            "pod {id} {dir}: audited policies would deny"
        ))),
        rules: logged(LogVerdict::WouldDeny, final_allow(dir), "allowed: enforced"),
    });
    out.push(Chain {
        name: name(AuditChain::WouldAllow),
        base: None,
        comment: Some(names::comment(&format!(
            "pod {id} {dir}: audited policies would allow"
        ))),
        rules: logged(LogVerdict::WouldAllow, drop, "denied: enforced"),
    });
    out
}
