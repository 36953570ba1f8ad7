//! How a [`Diff`] prints for people: the closed changes, then the opened ones, each with
//! its protocol and ports, families, sources, destinations and reasons. Object strings
//! are escaped ([`Escaped`]), so no name can forge a line.

use std::fmt;

use super::{Change, Diff};
use crate::text::Escaped;

fn ports(c: &Change) -> String {
    c.ports
        .iter()
        .map(|[lo, hi]| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// At most this many names of a list are printed; `-o json` has them all.
const SHOWN: usize = 12;

fn list(f: &mut fmt::Formatter<'_>, label: &str, items: &[String]) -> fmt::Result {
    let shown = if items.len() > SHOWN {
        SHOWN - 2
    } else {
        items.len()
    };
    write!(f, "  {label} {}", Escaped(&items[..shown].join(", ")))?;
    if shown < items.len() {
        write!(f, ", and {} more (-o json lists them)", items.len() - shown)?;
    }
    writeln!(f)
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no connection changes its verdict");
        }
        writeln!(
            f,
            "{} changes: {} closed, {} opened",
            self.changes.len(),
            self.closed(),
            self.opened()
        )?;
        for (title, opens) in [("closed", false), ("opened", true)] {
            for c in self.changes.iter().filter(|c| c.opens() == opens) {
                writeln!(f)?;
                writeln!(
                    f,
                    "{title}: {} {} ({})",
                    c.protocol,
                    ports(c),
                    c.families.join(", ")
                )?;
                list(f, "from:", &c.sources)?;
                list(f, "to:  ", &c.destinations)?;
                for b in &c.because {
                    writeln!(f, "  {}", Escaped(b))?;
                }
            }
        }
        Ok(())
    }
}
