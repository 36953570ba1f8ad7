//! A [`Diff`] as Graphviz (`diff --output dot`, and `graph --output dot` through
//! [`super::allowed`]): each distinct list of sources or destinations
//! is a node (pods treated alike, a node, or outside CIDRs), inside its namespace's
//! cluster when all its pods share one; each change an edge labelled with its protocol and
//! ports, green when it opens, red when it closes (black in `graph`'s). Deterministic: the same diff gives the
//! same bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Diff;

/// At most this many names in a node's label.
const SHOWN: usize = 6;

/// Graphviz's double-quoted string, escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The namespace all of a list's pods share, when it holds only pods of one.
fn namespace(list: &[String]) -> Option<&str> {
    let mut ns = None;
    for item in list {
        let (n, _) = item.split_once('/')?;
        // A CIDR has a slash too, and a digit or colon before it.
        if n.contains(':') || n.parse::<std::net::Ipv4Addr>().is_ok() {
            return None;
        }
        match ns {
            None => ns = Some(n),
            Some(m) if m != n => return None,
            _ => {}
        }
    }
    ns
}

/// A list as a node's label: its first names, and how many more.
fn label(list: &[String]) -> String {
    let mut names: Vec<&str> = list.iter().take(SHOWN).map(String::as_str).collect();
    let more;
    if list.len() > SHOWN {
        more = format!("and {} more", list.len() - SHOWN);
        names.push(&more);
    }
    names.join("\n")
}

impl Diff {
    /// The diff as a Graphviz digraph: opened edges green, closed red.
    pub fn to_dot(&self) -> String {
        self.dot("diff", true)
    }

    /// The connections [`super::allowed`] lists, as a Graphviz digraph of allowed edges.
    pub fn to_dot_allowed(&self) -> String {
        self.dot("allowed", false)
    }

    fn dot(&self, name: &str, coloured: bool) -> String {
        let mut ids: BTreeMap<&[String], usize> = BTreeMap::new();
        let mut order: Vec<&[String]> = Vec::new();
        for c in &self.changes {
            for list in [&c.sources[..], &c.destinations[..]] {
                ids.entry(list).or_insert_with(|| {
                    order.push(list);
                    order.len() - 1
                });
            }
        }
        let mut out = format!(
            "digraph {name} {{\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n  edge [fontsize=9];\n"
        );
        let mut clusters: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, list) in order.iter().enumerate() {
            match namespace(list) {
                Some(ns) => clusters.entry(ns).or_default().push(i),
                None => {
                    let _ = writeln!(out, "  g{i} [label={}];", quoted(&label(list)));
                }
            }
        }
        for (n, (ns, members)) in clusters.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_{n} {{");
            let _ = writeln!(out, "    label={};", quoted(ns));
            for &i in members {
                let _ = writeln!(out, "    g{i} [label={}];", quoted(&label(order[i])));
            }
            out.push_str("  }\n");
        }
        for c in &self.changes {
            let (s, d) = (ids[&c.sources[..]], ids[&c.destinations[..]]);
            let ports: Vec<String> = c
                .ports
                .iter()
                .map(|[lo, hi]| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            let mut text = format!("{} {}", c.protocol, ports.join(","));
            if c.families.len() == 1 {
                text.push_str(&format!(" ({})", c.families[0]));
            }
            let colour = match (coloured, c.opens()) {
                (false, _) => "black",
                (true, true) => "green",
                (true, false) => "red",
            };
            let _ = writeln!(
                out,
                "  g{s} -> g{d} [label={}, color={colour}, fontcolor={colour}];",
                quoted(&text)
            );
        }
        out.push_str("}\n");
        out
    }
}
