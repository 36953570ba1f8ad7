//! The library's error type: every stage that can refuse input says which file, which
//! object (kind namespace/name), which field and what is wrong.

use std::fmt;

/// Which object an error is about, as `kubectl` would name it: `NetworkPolicy x/allow-web`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{source_name}: cannot read")]
    Read {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{source_name}:{line}:{column}: syntax error: {message}")]
    Syntax {
        source_name: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{source_name}:{line}:{column}: not UTF-8 text: invalid byte at byte offset {offset}")]
    Encoding {
        source_name: String,
        offset: usize,
        line: u64,
        column: u64,
    },
    /// A limit of the parser that guards against expansion attacks (alias bombs, deep
    /// nesting), said in words.
    #[error("{source_name}:{line}:{column}: input refused: {message}")]
    Limit {
        source_name: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{source_name}: document {document}: {message}")]
    Document {
        source_name: String,
        document: usize,
        message: String,
    },
    #[error("{source_name}: {object}: {field}: {problem}")]
    Invalid {
        source_name: String,
        object: Box<ObjectRef>,
        field: String,
        problem: String,
    },
    #[error("{object}: given twice ({first} and {second})")]
    Duplicate {
        object: Box<ObjectRef>,
        first: String,
        second: String,
    },
    #[error("{what}: {problem}")]
    Usage { what: String, problem: String },
    /// A NetworkPolicy whose compiled form is over `--max-elements` (see
    /// `ruleset::over_budget`): the controller enforces it fail-closed; compile refuses it.
    #[error("{policy}: its rules come to {elements} set elements on this node, over --max-elements {max}: it would be enforced fail-closed (isolating the pods it selects, allowing nothing)")]
    OverBudget {
        policy: Box<ObjectRef>,
        elements: usize,
        max: usize,
    },
}

impl Error {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Syntax { .. } => "syntax",
            Error::Encoding { .. } => "encoding",
            Error::Limit { .. } => "limit",
            Error::Document { .. } => "document",
            Error::Invalid { .. } => "invalid",
            Error::Duplicate { .. } => "duplicate",
            Error::Usage { .. } => "usage",
            Error::OverBudget { .. } => "over_budget",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its sources, `a: b: c`, for logs: messages never repeat their source
/// (the source is there to be walked), so a log line that shows only the top message
/// would lose the cause.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod chain_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_shows_every_source_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::Chain(&e).to_string(), "outer: inner");
    }
}
