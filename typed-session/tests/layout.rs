//! The crate's internal imports run one way: no two files import each
//! other and there is no cycle (through `layer`, `extract`, `handle`,
//! `state`, `schema` or anything else). Checked on the source text: every
//! `crate::` and `super::` path, and a `mod.rs` file's uses of its own
//! child modules, is an edge from the file it is in to the file it names;
//! re-exports (`pub use`) and comments are not.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path of a source file: `backend/server.rs` -> `backend::server`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers of a path starting at `text` (`a::b::C` -> a, b, C).
fn segments(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        out.push(&rest[..end]);
        match rest[end..].strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

#[test]
fn internal_imports_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeMap<String, String> = all
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            (module_of(p.strip_prefix(&src).unwrap()), text)
        })
        .collect();
    // Names the crate root re-exports (`crate::Error`) -> the module they come from.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    let lib = &modules[""];
    for stmt in lib.split(';') {
        let stmt = stmt.trim();
        let Some(body) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        let module = segments(body)
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        for name in body
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
        {
            reexports.entry(name.to_owned()).or_insert(module.clone());
        }
    }
    let resolve = |segs: &[&str]| -> Option<String> {
        for n in (1..=segs.len()).rev() {
            let path = segs[..n].join("::");
            if modules.contains_key(&path) {
                return Some(path);
            }
        }
        reexports.get(*segs.first()?).cloned()
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        // The crate root only declares and re-exports; the macro-support
        // module only re-exports for generated code.
        if module.is_empty() || module == "private" {
            continue;
        }
        let children: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                let l = l.strip_prefix("pub ").unwrap_or(l);
                l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
            })
            .collect();
        let parent: Vec<&str> = module.rsplit_once("::").map_or(vec![], |(p, _)| vec![p]);
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("//")
                || line.starts_with("pub use")
                || line.starts_with("pub(crate) use")
            {
                continue;
            }
            let mut targets = Vec::new();
            for (i, _) in line.match_indices("crate::") {
                if i > 0 && line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue; // `typed_session::`, not `crate::`
                }
                targets.extend(resolve(&segments(&line[i + "crate::".len()..])));
            }
            for (i, _) in line.match_indices("super::") {
                let rest = &line[i + "super::".len()..];
                let after = segments(rest);
                if after.is_empty() && !rest.starts_with('{') {
                    // `use super::*` in a file's own `mod tests`.
                    continue;
                }
                let mut segs: Vec<&str> = parent.clone();
                segs.extend(after);
                targets.extend(resolve(&segs));
            }
            for child in &children {
                if line.contains(&format!("{child}::")) || line.contains(&format!("{child}::{{")) {
                    targets.push(format!("{module}::{child}"));
                }
            }
            for t in targets {
                if &t != module && !module.starts_with(&format!("{t}::tests")) {
                    edges.entry(module.clone()).or_default().insert(t);
                }
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut done, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    // The graph is not empty: the check saw the crate.
    assert!(edges.get("layer").is_some_and(|e| e.contains("extract")));
    assert!(edges.get("extract").is_some_and(|e| e.contains("state")));
    assert!(
        !edges
            .get("state")
            .is_some_and(|e| e.contains("layer") || e.contains("extract"))
    );
    for (from, to) in &edges {
        println!(
            "{from} -> {}",
            to.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}
