//! The import direction, checked: every `crate::` and `super::` path in the library's
//! production code (test modules left out) must point down the stated order of layers,
//! and the submodules of one module must not import each other in a cycle. The harness
//! (`policy-tests`) has no stated order, only the second rule.
//!
//! The order is written here, in one list, so that a change to it is a visible diff.
//! Reading the source rather than asking the compiler keeps the check free of tools: a
//! small lexer blanks comments, strings and character literals, drops `#[cfg(test)] mod`
//! blocks, and collects the first segment after `crate::` and `super::` (through `{}`
//! groups).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's modules, lowest first: each may import only those before it.
const LAYERS: &[&str] = &[
    // Leaves: text escaping, errors, addresses, labels, host facts, synthetic clusters.
    "text",
    "error",
    "addr",
    "labels",
    "host",
    "flow",
    "fqdn",
    "synth",
    // Kubernetes objects and their validation.
    "selector",
    "policy",
    "cnp",
    "input",
    "dump",
    // What the cluster holds, then what is allowed.
    "index",
    "graph",
    "impact",
    "graph_json",
    "explain",
    "change",
    // nftables: the model, then its two renderings.
    "ruleset",
    "script",
    "netlink",
    // One node's state and what follows from its changes.
    "state",
    "revoke",
    "verdict_log",
    "replay",
    "controller",
];

/// Source text with comments, strings and character literals blanked (each replaced by
/// spaces, so that offsets and line numbers stay), as far as imports need.
fn blank(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out: Vec<char> = b.clone();
    let mut i = 0;
    let blank_to = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in out.iter_mut().take(to.min(b.len())).skip(from) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    while i < b.len() {
        let rest = |k: usize| b.get(i + k).copied();
        match b[i] {
            '/' if rest(1) == Some('/') => {
                let end = (i..b.len()).find(|&j| b[j] == '\n').unwrap_or(b.len());
                blank_to(&mut out, i, end);
                i = end;
            }
            '/' if rest(1) == Some('*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == '/' && b.get(j + 1) == Some(&'*') {
                        depth += 1;
                        j += 1;
                    } else if b[j] == '*' && b.get(j + 1) == Some(&'/') {
                        depth -= 1;
                        j += 1;
                    }
                    j += 1;
                }
                blank_to(&mut out, i, j);
                i = j;
            }
            'r' if (rest(1) == Some('"') || rest(1) == Some('#'))
                && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_')) =>
            {
                let hashes = (i + 1..b.len()).take_while(|&j| b[j] == '#').count();
                if b.get(i + 1 + hashes) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let body: String = b[i + 2 + hashes..].iter().collect();
                let end = body
                    .find(&close)
                    .map(|k| i + 2 + hashes + body[..k].chars().count() + close.len())
                    .unwrap_or(b.len());
                blank_to(&mut out, i, end);
                i = end;
            }
            '"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != '"' {
                    j += if b[j] == '\\' { 2 } else { 1 };
                }
                blank_to(&mut out, i, j + 1);
                i = j + 1;
            }
            '\'' => {
                // A character literal ('a', '\n', '\''), not a lifetime ('a).
                let end = if rest(1) == Some('\\') {
                    (i + 2..b.len()).find(|&j| b[j] == '\'').map(|j| j + 1)
                } else if rest(2) == Some('\'') {
                    Some(i + 3)
                } else {
                    None
                };
                match end {
                    Some(e) => {
                        blank_to(&mut out, i, e);
                        i = e;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out.into_iter().collect()
}

/// `src` without its `#[cfg(test)] mod name { ... }` blocks.
fn without_test_modules(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = trimmed.find(['{', ';']);
        match (is_mod, open) {
            (true, Some(o)) if trimmed.as_bytes()[o] == b'{' => {
                out.push_str(&rest[..at]);
                let body = &trimmed[o..];
                let mut depth = 0usize;
                let mut end = body.len();
                for (k, c) in body.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &body[end..];
            }
            _ => {
                out.push_str(&rest[..at + "#[cfg(test)]".len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The first segments of the paths after each `prefix` (`crate::` or `super::`),
/// following one level of `{a::b, c}` groups.
fn targets(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = code[at + prefix.len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        if let Some(id) = ident_at(&group[k..]) {
                            found.insert(id.to_string());
                        }
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else if let Some(id) = ident_at(rest) {
            found.insert(id.to_string());
        }
    }
    found
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// One source file's place: its module path below the crate root (`["ruleset",
/// "build"]`; `mod.rs` names its directory) and its production imports.
struct Source {
    module: Vec<String>,
    crate_refs: BTreeSet<String>,
    super_refs: BTreeSet<String>,
}

fn sources(root: &Path) -> Vec<Source> {
    rust_files(root)
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = without_test_modules(&blank(&text));
            let mut crate_refs = targets(&code, "crate::");
            // `crate::Error` is the root's re-export of `error::Error`.
            if crate_refs.remove("Error") {
                crate_refs.insert("error".into());
            }
            Source {
                module,
                crate_refs,
                super_refs: targets(&code, "super::"),
            }
        })
        .collect()
}

/// Edges between sibling submodules of each module directory: `ruleset/build.rs` using
/// `super::tier_chain` is `ruleset: build -> tier_chain`. `super::` from a `mod.rs` is
/// the level above, and counted as such.
fn sibling_edges(
    srcs: &[Source],
    root: &Path,
) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for s in srcs {
        let Some((me, parent)) = s.module.split_last() else {
            continue;
        };
        let dir = parent.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        for t in &s.super_refs {
            let sibling =
                dir.join(format!("{t}.rs")).exists() || dir.join(t).join("mod.rs").exists();
            if sibling && t != me {
                edges
                    .entry(parent.to_vec())
                    .or_default()
                    .insert((me.clone(), t.clone()));
            }
        }
        // Top-level files: `crate::x` is a sibling edge at the root.
        if parent.is_empty() {
            for t in &s.crate_refs {
                edges
                    .entry(vec![])
                    .or_default()
                    .insert((me.clone(), t.clone()));
            }
        }
    }
    // Submodules of top-level modules import each other through `crate::` too.
    for s in srcs.iter().filter(|s| s.module.len() >= 2) {
        for t in &s.crate_refs {
            edges
                .entry(vec![])
                .or_default()
                .insert((s.module[0].clone(), t.clone()));
        }
    }
    edges
}

/// A cycle in `edges`, if there is one, as the path that closes it.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.iter().filter(|(a, b)| a != b) {
        next.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let from = path.iter().position(|p| *p == n).unwrap();
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n, 1);
        path.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in next.keys() {
        if let Some(c) = visit(n, &next, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn library_modules(root: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

#[test]
fn library_imports_point_down_the_stated_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = library_modules(&root);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    for m in &modules {
        assert!(
            rank(m).is_some(),
            "src/lib.rs declares `{m}`, which tests/layers.rs LAYERS does not place"
        );
    }
    let mut against = Vec::new();
    for s in sources(&root) {
        let Some(top) = s.module.first().filter(|m| modules.contains(m)) else {
            continue; // lib.rs, main.rs and the binary's own modules
        };
        for t in s
            .crate_refs
            .iter()
            .filter(|t| modules.contains(t) && *t != top)
        {
            if rank(t) > rank(top) {
                against.push(format!(
                    "src/{}: {top} imports {t}, a layer above it",
                    s.module.join("/")
                ));
            }
        }
    }
    assert!(
        against.is_empty(),
        "imports against LAYERS:\n{}",
        against.join("\n")
    );
}

#[test]
fn submodules_do_not_import_each_other_in_a_cycle() {
    let mut cycles = Vec::new();
    for dir in ["src", "policy-tests/src"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let srcs = sources(&root);
        for (parent, edges) in sibling_edges(&srcs, &root) {
            if let Some(cycle) = find_cycle(&edges) {
                let at = parent.join("/");
                cycles.push(format!(
                    "{dir}/{at}: {} import each other",
                    cycle.join(" -> ")
                ));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_lexer_sees_imports_and_only_imports() {
    let src = r##"
        use crate::{graph::{A, B}, index, ruleset::model::*};
        // use crate::comment;
        /* use crate::block; /* nested crate::deeper */ */
        let s = "crate::string"; let r = r#"crate::raw"#; let c = '"'; let l: &'a str;
        use super::sibling;
        #[cfg(test)]
        mod tests { use crate::test_only; }
        fn after() { crate::after::f(); }
    "##;
    let code = without_test_modules(&blank(src));
    let got: Vec<String> = targets(&code, "crate::").into_iter().collect();
    assert_eq!(got, ["after", "graph", "index", "ruleset"]);
    let got: Vec<String> = targets(&code, "super::").into_iter().collect();
    assert_eq!(got, ["sibling"]);
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
}
