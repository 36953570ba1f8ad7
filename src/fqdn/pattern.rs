//! One `domainNames` entry as a matcher: an exact name, or `*.` and a base name that
//! covers every name with one or more labels in front of the base (NPEP-133: "'*' ...
//! matches one or more entire labels ... `*.kubernetes.io` matches ...
//! `latest.blog.kubernetes.io` ..., however `kubernetes.io` ... do[es] not").
//!
//! Comparison is hickory's, label by label and ASCII case-insensitive (RFC 4343); names
//! from the wire and names written with or without a trailing dot compare alike.

use std::fmt;

use hickory_proto::rr::Name;

/// A pattern that cannot be read as a domain name. Validation (`cnp`) refuses these
/// before they get here; the error exists so that no caller has to trust that.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("{0:?} is not a domain name")]
    NotAName(String, #[source] hickory_proto::ProtoError),
    #[error("{0:?}: '*' may only be written as a whole first label, \"*.\"")]
    Wildcard(String),
    #[error("{0:?}: a pattern needs at least one label after \"*.\"")]
    Empty(String),
}

/// An exact name or a `*.` wildcard, as written in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPattern {
    /// As written (shown in explain, graph and logs).
    text: String,
    /// The name after `*.`, absolute and lowercased.
    base: Name,
    wildcard: bool,
}

impl DomainPattern {
    pub fn parse(text: &str) -> Result<DomainPattern, PatternError> {
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err(PatternError::Wildcard(text.to_string()));
        }
        let mut base =
            Name::from_ascii(rest).map_err(|e| PatternError::NotAName(text.to_string(), e))?;
        if base.num_labels() == 0 {
            return Err(PatternError::Empty(text.to_string()));
        }
        base.set_fqdn(true);
        Ok(DomainPattern {
            text: text.to_string(),
            base: base.to_lowercase(),
            wildcard,
        })
    }

    /// Whether the pattern covers `name` (as the pod asked it: absolute or not, any case).
    pub fn matches(&self, name: &Name) -> bool {
        let (n, b) = (name.num_labels(), self.base.num_labels());
        let depth_ok = if self.wildcard { n > b } else { n == b };
        depth_ok && self.base.zone_of(name)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn m(pattern: &str, n: &str) -> bool {
        DomainPattern::parse(pattern).unwrap().matches(&name(n))
    }

    /// The API's own examples, word for word.
    #[test]
    fn the_apis_examples() {
        assert!(m("kubernetes.io", "kubernetes.io"));
        for other in [
            "www.kubernetes.io",
            "blog.kubernetes.io",
            "my-kubernetes.io",
            "wikipedia.org",
        ] {
            assert!(!m("kubernetes.io", other), "{other}");
        }
        assert!(m("blog.kubernetes.io", "blog.kubernetes.io"));
        assert!(!m("blog.kubernetes.io", "www.kubernetes.io"));
        assert!(!m("blog.kubernetes.io", "kubernetes.io"));
        for sub in [
            "www.kubernetes.io",
            "blog.kubernetes.io",
            "latest.blog.kubernetes.io",
        ] {
            assert!(m("*.kubernetes.io", sub), "{sub}");
        }
        assert!(!m("*.kubernetes.io", "kubernetes.io"));
        assert!(!m("*.kubernetes.io", "wikipedia.org"));
    }

    #[test]
    fn whole_labels_only() {
        // A suffix that is not a whole label is another name.
        assert!(!m("*.kubernetes.io", "evilkubernetes.io"));
        assert!(!m("*.kubernetes.io", "www.evilkubernetes.io"));
        assert!(!m("*.kubernetes.io", "kubernetes.io.evil.com"));
        assert!(!m("kubernetes.io", "kubernetes.io.evil.com"));
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        for (p, n) in [
            ("Kubernetes.IO", "kubernetes.io."),
            ("kubernetes.io.", "KUBERNETES.io"),
            ("*.Kubernetes.io.", "WWW.kubernetes.IO."),
            ("*.kubernetes.io", "a.b.c.Kubernetes.Io"),
        ] {
            assert!(m(p, n), "{p} {n}");
        }
        assert!(!m("*.kubernetes.io.", "KUBERNETES.IO."));
    }

    #[test]
    fn star_only_as_the_whole_first_label() {
        assert!(matches!(
            DomainPattern::parse("a.*.io"),
            Err(PatternError::Wildcard(_))
        ));
        assert!(matches!(
            DomainPattern::parse("*.*.io"),
            Err(PatternError::Wildcard(_))
        ));
        // `*foo.io` is no wildcard to the API; as a name its label `*foo` never matches a
        // name the pod can ask for through a resolver, and we refuse it outright.
        assert!(DomainPattern::parse("*foo.io").is_err());
        assert!(DomainPattern::parse("*.").is_err());
        let p = DomainPattern::parse("*.Example.com").unwrap();
        assert!(p.is_wildcard());
        assert_eq!(p.to_string(), "*.Example.com");
    }
}
