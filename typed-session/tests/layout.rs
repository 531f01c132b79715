//! The internal imports of both crates (`typed-session` and
//! `typed-session-derive`) run one way: there is no cycle between their
//! files.
//!
//! Each file is parsed with `syn`. Every path that starts at `crate`,
//! `super` or `self`, or at a child module the file declares, is an edge
//! from the file to the file it names: in `use` items of any visibility
//! (grouped ones included: `use crate::{a::X, b::Y}`), and in types and
//! expressions (`crate::frame::frame(..)`). A name the crate root
//! re-exports (`crate::Error`) stands for the module it comes from.
//! Two kinds of edge are left out, each deliberately:
//!
//! * from a file to its own ancestors (`super::Inner` in
//!   `store/file/disk.rs`): a module's children are part of it, as when
//!   one type's `impl` blocks are split across files;
//! * from the crate root, which only declares and re-exports.
//!
//! A file's `#[cfg(test)] mod tests` is a node of its own (`m::tests`), so
//! test code may use anything. Paths inside macro invocations are tokens,
//! not syntax, and are not seen.

// Helpers outside `#[test]` functions too: a failure is a panic with its cause.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

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

/// Every source file of the crate in `src`, by module path.
fn sources(src: &Path) -> BTreeMap<String, String> {
    let mut all = Vec::new();
    files(src, &mut all);
    all.iter()
        .map(|p| {
            (
                module_of(p.strip_prefix(src).unwrap()),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect()
}

/// The paths a `use` tree names, each as its segments.
fn flatten(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            if n.ident != "self" {
                path.push(n.ident.to_string());
            }
            out.push(path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push(path);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                flatten(item, prefix, out);
            }
        }
    }
}

fn is_test_module(m: &syn::ItemMod) -> bool {
    m.attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let text = a.meta.require_list().map(|l| l.tokens.to_string());
            text.is_ok_and(|t| t.trim() == "test")
        }
    })
}

/// What one file's syntax tree names.
struct Collector<'a> {
    /// The file's module.
    file: &'a str,
    /// Inline modules entered, below the file's module.
    inline: Vec<String>,
    /// Inside the file's `#[cfg(test)] mod tests`.
    in_tests: bool,
    /// Child modules the file declares in files of their own.
    children: BTreeSet<String>,
    modules: &'a BTreeSet<String>,
    reexports: &'a BTreeMap<String, String>,
    /// (from node, to module).
    out: Vec<(String, String)>,
}

impl Collector<'_> {
    fn node(&self) -> String {
        match self.in_tests {
            true => format!("{}::tests", self.file),
            false => self.file.to_owned(),
        }
    }

    /// Resolves a path written in this file to the module it names.
    fn target(&self, segs: &[String]) -> Option<String> {
        let first = segs.first()?;
        let here: Vec<String> = self
            .file
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .chain(self.inline.iter().cloned())
            .collect();
        let mut absolute: Vec<String>;
        let mut rest = segs;
        if first == "crate" {
            absolute = Vec::new();
            rest = &segs[1..];
        } else if first == "self" || first == "super" {
            absolute = here.clone();
            while let Some(seg) = rest.first() {
                match seg.as_str() {
                    "self" => {}
                    "super" => {
                        absolute.pop()?;
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        } else if self.inline.is_empty() && self.children.contains(first) {
            absolute = here.clone();
        } else {
            return None;
        }
        absolute.extend(rest.iter().cloned());
        for n in (1..=absolute.len()).rev() {
            let path = absolute[..n].join("::");
            if self.modules.contains(&path) {
                return Some(path);
            }
        }
        self.reexports.get(absolute.first()?).cloned()
    }

    fn name(&mut self, segs: &[String]) {
        if let Some(to) = self.target(segs) {
            let from = self.node();
            // Not to itself, nor to one of its ancestors.
            let ancestor = from == to || from.starts_with(&format!("{to}::")) || to.is_empty();
            if !ancestor {
                self.out.push((from, to));
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        flatten(&item.tree, &mut Vec::new(), &mut paths);
        for path in paths {
            self.name(&path);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_none() {
            return;
        }
        if self.inline.is_empty() && !self.in_tests && is_test_module(item) {
            self.in_tests = true;
            syn::visit::visit_item_mod(self, item);
            self.in_tests = false;
            return;
        }
        self.inline.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.inline.pop();
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.name(&segs);
        syn::visit::visit_path(self, path);
    }
}

/// The import graph of one crate, from its files' sources by module path
/// (the root is `""`).
fn graph(sources: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let parsed: BTreeMap<&String, syn::File> = sources
        .iter()
        .map(|(m, text)| {
            let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{m}: {e}"));
            (m, file)
        })
        .collect();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    // Names the crate root re-exports -> the module they come from.
    let mut reexports = BTreeMap::new();
    if let Some(root) = parsed.get(&String::new()) {
        for item in &root.items {
            if let syn::Item::Use(u) = item {
                let mut paths = Vec::new();
                flatten(&u.tree, &mut Vec::new(), &mut paths);
                for path in paths {
                    if let (Some(module), Some(name)) = (path.first(), path.last()) {
                        reexports
                            .entry(name.clone())
                            .or_insert_with(|| module.clone());
                    }
                }
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &parsed {
        if module.is_empty() {
            continue;
        }
        let children = file
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) if m.content.is_none() => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        let mut collector = Collector {
            file: module,
            inline: Vec::new(),
            in_tests: false,
            children,
            modules: &modules,
            reexports: &reexports,
            out: Vec::new(),
        };
        collector.visit_file(file);
        for (from, to) in collector.out {
            edges.entry(from).or_default().insert(to);
        }
    }
    edges
}

/// A cycle in the graph, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

fn check(crate_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(crate_dir)
        .join("src");
    let edges = graph(&sources(&src));
    if let Some(cycle) = cycle(&edges) {
        panic!("import cycle in {crate_dir}: {}", cycle.join(" -> "));
    }
    for (from, to) in &edges {
        println!(
            "{from} -> {}",
            to.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    edges
}

fn has(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    edges.get(from).is_some_and(|e| e.contains(to))
}

#[test]
fn the_runtime_imports_run_one_way() {
    let edges = check(".");
    // The graph is the crate's: these edges are known to exist.
    assert!(has(&edges, "layer", "service"));
    assert!(has(&edges, "service", "extract"));
    assert!(has(&edges, "extract", "state"));
    assert!(has(&edges, "persist", "backend::seam"), "grouped imports");
    assert!(has(&edges, "private", "schema"), "private.rs is checked");
    assert!(has(&edges, "persist", "frame"), "paths in code");
    // The session core does not know about HTTP responses.
    assert!(!has(&edges, "persist", "rejection"));
    assert!(!has(&edges, "persist::load", "rejection"));
    assert!(!has(&edges, "state", "layer") && !has(&edges, "state", "extract"));
    // Stores know nothing of the runtime's typed copies.
    for store in edges.keys().filter(|m| m.starts_with("store")) {
        assert!(
            !edges[store]
                .iter()
                .any(|to| to.starts_with("backend") || to == "envelope"),
            "{store} -> {:?}",
            edges[store]
        );
    }
}

#[test]
fn the_derive_imports_run_one_way() {
    let edges = check("../typed-session-derive");
    assert!(has(&edges, "expand", "ast"));
}

fn planted(files: &[(&str, &str)]) -> Option<Vec<String>> {
    let sources = files
        .iter()
        .map(|(m, text)| ((*m).to_owned(), (*text).to_owned()))
        .collect();
    cycle(&graph(&sources))
}

#[test]
fn planted_cycles_are_caught() {
    // Through a grouped import and a `pub(crate) use` of a root re-export.
    let found = planted(&[
        ("", "mod a; mod b; pub use a::Thing;"),
        ("a", "use crate::{b::Other, b::More}; pub struct Thing;"),
        (
            "b",
            "pub(crate) use crate::Thing; pub struct Other; pub struct More;",
        ),
    ]);
    assert_eq!(found, Some(vec!["a".into(), "b".into(), "a".into()]));
    // Through a path in an expression, and `super::` between siblings.
    let found = planted(&[
        ("", "mod x;"),
        ("x", "mod p; mod q;"),
        ("x::p", "pub fn f() { crate::x::q::g() }"),
        ("x::q", "use super::p::f; pub fn g() {}"),
    ]);
    assert_eq!(
        found,
        Some(vec!["x::p".into(), "x::q".into(), "x::p".into()])
    );
    // A child naming its parent, and test code, are not cycles.
    let found = planted(&[
        ("", "mod x;"),
        ("x", "mod p; use p::f; pub struct Inner;"),
        (
            "x::p",
            "use super::Inner; pub fn f() {} #[cfg(test)] mod tests { use crate::x::p::f; }",
        ),
    ]);
    assert_eq!(found, None);
}
