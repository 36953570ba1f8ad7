//! One end's walk through the tiers, as typed data: which tier spoke ([`StepTier`]), what
//! it said ([`Outcome`]) and the rule that matched ([`TierOrigin`]). Rendered here, for
//! `explain`'s text and JSON; deciding is the graph's ([`crate::graph::tiers`]).

use std::fmt;

use serde::{Serialize, Serializer};

use super::miss;
use crate::cnp::{Action, Tier};
use crate::graph::tiers::TierOrigin;
use crate::text::Escaped;

/// The tier of a step: the two ClusterNetworkPolicy tiers, NetworkPolicy between them,
/// and the default after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum StepTier {
    Admin,
    NetworkPolicy,
    Baseline,
    Default,
}

impl StepTier {
    pub fn of(tier: Tier) -> Self {
        match tier {
            Tier::Admin => StepTier::Admin,
            Tier::Baseline => StepTier::Baseline,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StepTier::Admin => "Admin",
            StepTier::NetworkPolicy => "NetworkPolicy",
            StepTier::Baseline => "Baseline",
            StepTier::Default => "Default",
        }
    }
}

impl fmt::Display for StepTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a step said: a tier rule's action, that no rule of the tier matched, or for
/// NetworkPolicy and the default a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Outcome {
    Accept,
    Deny,
    Pass,
    #[serde(rename = "no match")]
    NoMatch,
    #[serde(rename = "allowed")]
    Allowed,
    #[serde(rename = "denied")]
    Denied,
    #[serde(rename = "not isolated")]
    NotIsolated,
}

impl Outcome {
    pub fn of(action: Action) -> Self {
        match action {
            Action::Accept => Outcome::Accept,
            Action::Deny => Outcome::Deny,
            Action::Pass => Outcome::Pass,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accept => "Accept",
            Outcome::Deny => "Deny",
            Outcome::Pass => "Pass",
            Outcome::NoMatch => "no match",
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::NotIsolated => "not isolated",
        }
    }
}

/// What one tier said about one end, in evaluation order; the last step decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierStep {
    pub tier: StepTier,
    /// The rule that matched (printed as policy-assistant names it); `None` when none did.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_text")]
    pub rule: Option<TierOrigin>,
    pub outcome: Outcome,
    /// Extra words: which policies were consulted, or why nothing could match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Rules checked before the decision whose peer matched but not the port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_misses: Vec<miss::TierMiss>,
    /// Set on the step that decided (the last): whether that end allows the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decides: Option<bool>,
}

fn as_text<S: Serializer>(rule: &Option<TierOrigin>, s: S) -> Result<S::Ok, S::Error> {
    match rule {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_none(),
    }
}

impl fmt::Display for TierStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.tier)?;
        if let Some(r) = &self.rule {
            // The origin starts with the tier's name, already written.
            let r = r.to_string();
            let r = r.strip_prefix(&format!("{}: ", self.tier)).unwrap_or(&r);
            write!(f, "{}: ", Escaped(r))?;
        }
        write!(f, "{}", self.outcome.name())?;
        if let Some(n) = &self.note {
            write!(f, " ({})", Escaped(n))?;
        }
        Ok(())
    }
}
