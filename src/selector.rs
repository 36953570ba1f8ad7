//! Label selectors (`matchLabels` and `matchExpressions`), validated once and matched many
//! times. Owns nothing else: it knows labels, not pods or namespaces.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

/// A validated label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub requirements: Vec<Requirement>,
}

/// What is wrong with a selector, and where inside it (relative field path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub field: String,
    pub problem: String,
}

impl Selector {
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn is_everything(&self) -> bool {
        self.match_labels.is_empty() && self.requirements.is_empty()
    }

    pub fn parse(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let match_labels = selector.match_labels.clone().unwrap_or_default();
        // The API server names the map itself for a bad key or value.
        crate::labels::check_labels(&match_labels).map_err(|problem| SelectorError {
            field: "matchLabels".into(),
            problem,
        })?;
        let mut requirements = Vec::new();
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{i}]");
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError {
                        field: format!("{field}.operator"),
                        problem: format!(
                        "unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                    ),
                    })
                }
            };
            crate::labels::check_key(&expr.key).map_err(|problem| SelectorError {
                field: format!("{field}.key"),
                problem,
            })?;
            for (j, v) in expr.values.iter().flatten().enumerate() {
                crate::labels::check_value(v).map_err(|problem| SelectorError {
                    field: format!("{field}.values[{j}]"),
                    problem,
                })?;
            }
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(SelectorError {
                        field: format!("{field}.values"),
                        problem: format!("operator {} needs at least one value", expr.operator),
                    })
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(SelectorError {
                        field: format!("{field}.values"),
                        problem: format!("operator {} takes no values", expr.operator),
                    })
                }
                _ => {}
            }
            requirements.push(Requirement {
                key: expr.key.clone(),
                operator,
                values,
            });
        }
        requirements.sort();
        requirements.dedup();
        Ok(Selector {
            match_labels,
            requirements,
        })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Selector {
    /// The terms of the selector that `labels` do not satisfy, each as [`Selector`]'s
    /// Display writes it (`pod=b`, `tier in (db,web)`, `!canary`); empty when it matches.
    pub fn unmet(&self, labels: &Labels) -> Vec<String> {
        let pairs = self
            .match_labels
            .iter()
            .filter(|(k, v)| labels.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}={v}"));
        let reqs = self
            .requirements
            .iter()
            .filter(|r| !r.matches(labels))
            .map(|r| r.to_string());
        pairs.chain(reqs).collect()
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values = self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => f.write_str(&self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // Kubernetes: NotIn also matches objects that lack the key.
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_everything() {
            return Ok(());
        }
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.extend(self.requirements.iter().map(|r| r.to_string()));
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: if values.is_empty() {
                    None
                } else {
                    Some(values.iter().map(|v| v.to_string()).collect())
                },
            }]),
        }
    }

    #[test]
    fn operators() {
        let l = labels(&[("pod", "a"), ("tier", "db")]);
        let none = labels(&[]);
        let s = |k, o, v: &[&str]| Selector::parse(&expr(k, o, v)).unwrap();
        assert!(s("pod", "In", &["a", "b"]).matches(&l));
        assert!(!s("pod", "In", &["b"]).matches(&l));
        assert!(!s("pod", "In", &["a"]).matches(&none));
        assert!(!s("pod", "NotIn", &["a"]).matches(&l));
        assert!(s("pod", "NotIn", &["b"]).matches(&l));
        assert!(s("pod", "NotIn", &["a"]).matches(&none));
        assert!(s("tier", "Exists", &[]).matches(&l));
        assert!(!s("tier", "Exists", &[]).matches(&none));
        assert!(!s("tier", "DoesNotExist", &[]).matches(&l));
        assert!(s("tier", "DoesNotExist", &[]).matches(&none));
    }

    #[test]
    fn empty_matches_all_and_labels_are_anded() {
        assert!(Selector::everything().matches(&labels(&[])));
        let sel = Selector::parse(&LabelSelector {
            match_labels: Some(
                [("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into(),
            ),
            match_expressions: None,
        })
        .unwrap();
        assert!(sel.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!sel.matches(&labels(&[("a", "1")])));
    }

    #[test]
    fn unmet_names_each_failing_term() {
        let mut sel = Selector::parse(&expr("tier", "In", &["db", "web"])).unwrap();
        sel.match_labels = [("pod".to_string(), "b".to_string())].into();
        assert_eq!(
            sel.unmet(&labels(&[("pod", "c"), ("tier", "db")])),
            ["pod=b"]
        );
        assert_eq!(sel.unmet(&labels(&[])), ["pod=b", "tier in (db,web)"]);
        assert!(sel
            .unmet(&labels(&[("pod", "b"), ("tier", "web")]))
            .is_empty());
    }

    #[test]
    fn bad_operator_and_values() {
        let e = Selector::parse(&expr("k", "Equals", &["v"])).unwrap_err();
        assert_eq!(e.field, "matchExpressions[0].operator");
        assert!(e.problem.contains("Equals"));
        let e = Selector::parse(&expr("k", "In", &[])).unwrap_err();
        assert_eq!(e.field, "matchExpressions[0].values");
        let e = Selector::parse(&expr("k", "Exists", &["v"])).unwrap_err();
        assert_eq!(e.field, "matchExpressions[0].values");
    }
}
