//! Reachability matrices: parsing the `matrix: |` text of a case, and rendering the cells
//! where the kernel, the expectation and `explain` disagree.

use std::collections::BTreeSet;
use std::fmt::Write;

/// One cell of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `.`: the connection must succeed.
    Connect,
    /// `X`: the connection must not succeed.
    Blocked,
    /// `-`: not probed.
    Unprobed,
}

impl Cell {
    pub fn expected(self) -> Option<bool> {
        match self {
            Cell::Connect => Some(true),
            Cell::Blocked => Some(false),
            Cell::Unprobed => None,
        }
    }
}

/// The character for a connection that did (`.`) or did not (`X`) succeed.
pub fn mark(connected: bool) -> char {
    if connected {
        '.'
    } else {
        'X'
    }
}

/// Rows are clients, columns servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `cells[row][col]`.
    pub cells: Vec<Vec<Cell>>,
}

impl Matrix {
    /// Parses the text form: a header `from\to COL...`, then one line per row. Names are
    /// not checked against a cluster here.
    pub fn parse(text: &str) -> Result<Matrix, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let header = lines.next().ok_or("empty matrix")?;
        let mut words = header.split_whitespace();
        if words.next() != Some("from\\to") {
            return Err(format!(
                "matrix header must start with from\\to: {header:?}"
            ));
        }
        let cols: Vec<String> = words.map(str::to_string).collect();
        if cols.is_empty() {
            return Err("matrix header names no columns".into());
        }
        check_unique(&cols, "column")?;
        let mut rows = Vec::new();
        let mut cells = Vec::new();
        for line in lines {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            let row: Vec<Cell> = words
                .map(|w| match w {
                    "." => Ok(Cell::Connect),
                    "X" => Ok(Cell::Blocked),
                    "-" => Ok(Cell::Unprobed),
                    _ => Err(format!(
                        "matrix row {name}: bad cell {w:?} (expected . X or -)"
                    )),
                })
                .collect::<Result<_, _>>()?;
            if row.len() != cols.len() {
                return Err(format!(
                    "matrix row {name} has {} cells for {} columns",
                    row.len(),
                    cols.len()
                ));
            }
            for (c, cell) in row.iter().enumerate() {
                if cols[c] == name && *cell != Cell::Unprobed {
                    return Err(format!(
                        "matrix cell {name} -> {name} is on the diagonal and must be -"
                    ));
                }
            }
            rows.push(name);
            cells.push(row);
        }
        if rows.is_empty() {
            return Err("matrix has no rows".into());
        }
        check_unique(&rows, "row")?;
        Ok(Matrix { rows, cols, cells })
    }

    /// Every probed cell: (row, column, whether it must connect).
    pub fn probed(&self) -> impl Iterator<Item = (usize, usize, bool)> + '_ {
        self.cells.iter().enumerate().flat_map(|(r, row)| {
            row.iter()
                .enumerate()
                .filter_map(move |(c, cell)| Some((r, c, cell.expected()?)))
        })
    }
}

fn check_unique(names: &[String], what: &str) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(format!("matrix {what} {n} appears twice"));
        }
    }
    Ok(())
}

/// What happened in one probed cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub row: usize,
    pub col: usize,
    pub expected: bool,
    pub kernel: bool,
    /// What `explain` predicted, or why it could not say.
    pub explain: Result<bool, String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.kernel == self.expected && self.explain.as_ref() == Ok(&self.kernel)
    }
}

/// A small matrix of the bad cells only (rows and columns that have one), each written
/// as three marks: expected, kernel, explain (`?` when explain failed). `None` when every
/// cell is fine.
pub fn render_diff(m: &Matrix, outcomes: &[Outcome], indent: &str) -> Option<String> {
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok()).collect();
    if bad.is_empty() {
        return None;
    }
    let rows: BTreeSet<usize> = bad.iter().map(|o| o.row).collect();
    let cols: BTreeSet<usize> = bad.iter().map(|o| o.col).collect();
    let cell = |r: usize, c: usize| -> String {
        match bad.iter().find(|o| o.row == r && o.col == c) {
            Some(o) => {
                let explain = match o.explain {
                    Ok(b) => mark(b),
                    Err(_) => '?',
                };
                format!("{}{}{}", mark(o.expected), mark(o.kernel), explain)
            }
            None => "ok".into(),
        }
    };
    let name_w = rows
        .iter()
        .map(|&r| m.rows[r].len())
        .max()
        .unwrap_or(0)
        .max("from\\to".len());
    let mut out = String::new();
    let _ = write!(out, "{indent}{:name_w$}", "from\\to");
    for &c in &cols {
        let _ = write!(out, " {:>w$}", m.cols[c], w = m.cols[c].len().max(3));
    }
    out.push('\n');
    for &r in &rows {
        let _ = write!(out, "{indent}{:name_w$}", m.rows[r]);
        for &c in &cols {
            let _ = write!(out, " {:>w$}", cell(r, c), w = m.cols[c].len().max(3));
        }
        out.push('\n');
    }
    for o in &bad {
        if let Err(e) = &o.explain {
            let _ = writeln!(
                out,
                "{indent}explain {} -> {}: {e}",
                m.rows[o.row], m.cols[o.col]
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "
      from\\to x/a x/b n1
      x/a     -   X   .
      x/b     .   -   -
      ext     X   .   .
";

    #[test]
    fn parse_matrix() {
        let m = Matrix::parse(TEXT).unwrap();
        assert_eq!(m.cols, ["x/a", "x/b", "n1"]);
        assert_eq!(m.rows, ["x/a", "x/b", "ext"]);
        assert_eq!(m.cells[2][0], Cell::Blocked);
        let probed: Vec<_> = m.probed().collect();
        assert_eq!(probed.len(), 6);
        assert!(probed.contains(&(0, 1, false)));
        assert!(probed.contains(&(1, 0, true)));
    }

    #[test]
    fn bad_matrices() {
        for (text, want) in [
            ("", "empty"),
            ("to x/a\nx/a -", "from\\to"),
            ("from\\to x/a x/b\nx/a - .\nx/b .", "1 cells for 2 columns"),
            ("from\\to x/a\nx/a o", "bad cell"),
            ("from\\to x/a\nx/a .", "diagonal"),
            ("from\\to x/a x/a\nx/b . .", "column x/a appears twice"),
            ("from\\to x/a\nx/b .\nx/b .", "row x/b appears twice"),
            ("from\\to x/a", "no rows"),
        ] {
            let err = Matrix::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn diff_shows_bad_cells_only() {
        let m = Matrix::parse(TEXT).unwrap();
        let mut outcomes: Vec<Outcome> = m
            .probed()
            .map(|(row, col, expected)| Outcome {
                row,
                col,
                expected,
                kernel: expected,
                explain: Ok(expected),
            })
            .collect();
        assert_eq!(render_diff(&m, &outcomes, ""), None);
        // ext -> x/b: kernel blocked it, explain agrees with the expectation.
        let o = outcomes
            .iter_mut()
            .find(|o| o.row == 2 && o.col == 1)
            .unwrap();
        o.kernel = false;
        // x/a -> n1: explain failed.
        let o = outcomes
            .iter_mut()
            .find(|o| o.row == 0 && o.col == 2)
            .unwrap();
        o.explain = Err("boom".into());
        let text = render_diff(&m, &outcomes, "  ").unwrap();
        assert_eq!(
            text,
            "  from\\to x/b  n1\n  x/a      ok ..?\n  ext     .X.  ok\n  explain x/a -> n1: boom\n"
        );
    }
}
