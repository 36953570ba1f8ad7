//! Label key and value syntax, as the API server validates it (apimachinery's
//! `IsQualifiedName` and `IsValidLabelValue`). Owns only the syntax: selectors and object
//! metadata call it, and nothing here knows what a label selects.
//!
//! ```text
//! key:   [prefix "/"] name
//!        prefix: a DNS-1123 subdomain (<= 253, [a-z0-9] with '-' '.' inside, dot-separated)
//!        name:   1..=63 of [A-Za-z0-9], with '-' '_' '.' allowed inside
//! value: empty, or 1..=63 with the same characters as a name
//! ```

/// The longest name part of a key, and the longest value.
const NAME_MAX: usize = 63;
/// The longest DNS-1123 subdomain (the prefix of a key).
const SUBDOMAIN_MAX: usize = 253;

const NAME_RULE: &str =
    "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character";

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, without the length.
fn is_name_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() && b.iter().all(inner)
        }
        _ => false,
    }
}

/// A DNS-1123 label inside a subdomain: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => ok(first) && ok(last) && b.iter().all(|c| ok(c) || *c == b'-'),
        _ => false,
    }
}

/// Checks a label key (also a selector's key); the error says what is wrong, in words.
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(format!(
            "label key {key:?}: at most one '/' (an optional DNS subdomain prefix, '/', a name)"
        ));
    }
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err(format!("label key {key:?}: the prefix before '/' is empty"));
        }
        if p.len() > SUBDOMAIN_MAX || !p.split('.').all(is_dns_label) {
            return Err(format!(
                "label key {key:?}: prefix {p:?} is not a DNS subdomain (at most {SUBDOMAIN_MAX} lowercase alphanumeric characters, '-' or '.', each dot-separated part starting and ending with an alphanumeric character)"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("label key {key:?}: the name part is empty"));
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "label key {key:?}: the name part is {} characters, at most {NAME_MAX} allowed",
            name.len()
        ));
    }
    if !is_name_chars(name) {
        return Err(format!(
            "label key {key:?}: the name part must consist of {NAME_RULE}"
        ));
    }
    Ok(())
}

/// Checks a label value (also a value of an In or NotIn requirement).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > NAME_MAX {
        return Err(format!(
            "label value {value:?} is {} characters, at most {NAME_MAX} allowed",
            value.len()
        ));
    }
    if !is_name_chars(value) {
        return Err(format!(
            "label value {value:?} must be empty or consist of {NAME_RULE}"
        ));
    }
    Ok(())
}

/// The longest DNS-1123 label (a namespace name).
const LABEL_MAX: usize = 63;

/// Checks a name that must be a DNS-1123 label (a namespace's name): at most 63 lowercase
/// alphanumeric characters or '-', starting and ending with an alphanumeric character.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.len() > LABEL_MAX {
        return Err(format!(
            "{name:?} is {} characters, at most {LABEL_MAX} allowed",
            name.len()
        ));
    }
    if !is_dns_label(name) {
        return Err(format!(
            "{name:?} is not a DNS-1123 label (lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character)"
        ));
    }
    Ok(())
}

/// Checks a name that must be a DNS-1123 subdomain (the name of a Pod, NetworkPolicy or
/// Node): at most 253 characters, dot-separated labels of lowercase alphanumeric
/// characters or '-'.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() > SUBDOMAIN_MAX {
        return Err(format!(
            "{name:?} is {} characters, at most {SUBDOMAIN_MAX} allowed",
            name.len()
        ));
    }
    if !name.split('.').all(is_dns_label) {
        return Err(format!(
            "{name:?} is not a DNS-1123 subdomain (lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character)"
        ));
    }
    Ok(())
}

/// Checks every key and value of a label map, in key order (the first problem wins).
pub fn check_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    for (k, v) in labels {
        check_key(k)?;
        check_value(v).map_err(|e| format!("label {k:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_the_api_server_accepts() {
        for key in [
            "a",
            "app",
            "App.Name_1-x",
            "kubernetes.io/metadata.name",
            "example.com/MyName",
            "a-b.c/x",
            "1/2",
            &"k".repeat(63),
            &format!("{}/n", "a".repeat(253)),
        ] {
            assert_eq!(check_key(key), Ok(()), "{key:?}");
        }
    }

    #[test]
    fn keys_the_api_server_refuses() {
        for (key, words) in [
            ("", "empty"),
            ("bad key!", "name part"),
            ("-a", "name part"),
            ("a-", "name part"),
            ("a/b/c", "at most one '/'"),
            ("/a", "prefix"),
            ("a/", "name part is empty"),
            ("Example.com/a", "DNS subdomain"),
            ("ex..com/a", "DNS subdomain"),
            ("-ex.com/a", "DNS subdomain"),
            ("ex_1.com/a", "DNS subdomain"),
        ] {
            let e = check_key(key).expect_err(key);
            assert!(e.contains(words), "{key:?}: {e}");
        }
        let long = "k".repeat(64);
        assert!(check_key(&long).unwrap_err().contains("64 characters"));
        let long_prefix = format!("{}/n", "a".repeat(254));
        assert!(check_key(&long_prefix)
            .unwrap_err()
            .contains("DNS subdomain"));
    }

    #[test]
    fn dns_names() {
        for ok in ["a", "shop-prod", "0", &"a".repeat(63)] {
            assert_eq!(check_dns_label(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "Shop_Prod", "a/b", "a.b", "-a", "a-", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad:?}");
        }
        for ok in ["web-0", "a.b-c.d", &"a".repeat(253)] {
            assert_eq!(check_dns_subdomain(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "web 0",
            "web\"0",
            "a\nb",
            "a..b",
            "Web",
            &"a".repeat(254),
        ] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        for v in ["", "a", "A-1_b.c", &"v".repeat(63)] {
            assert_eq!(check_value(v), Ok(()), "{v:?}");
        }
        for v in ["a b", "-a", "a.", "x/y", "é", &"v".repeat(64)] {
            assert!(check_value(v).is_err(), "{v:?}");
        }
    }
}
