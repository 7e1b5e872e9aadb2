//! No module of the crate depends on itself through others: each layer can then be read,
//! tested and replaced knowing only what lies below it. A cycle is easy to close without
//! noticing (one `use` in the wrong direction compiles fine), so the source is read here and
//! the module graph checked on every test run.
//!
//! The graph is read from the text, not from the compiler: every path that names a module of
//! the crate (`crate::…`, `super::…`, `self::…`, a child module's name), in `use` trees and
//! inline, in macro bodies too, outside comments and literals. A reference joins the two
//! modules that differ below the nearest module both are in: `crate::a::x` in `b/c.rs` is an
//! edge `b → a` among the crate's top-level modules. A module using its parent, or a parent
//! its children, is no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The graphs that must have no cycle: a parent module (empty for the crate) and which of its
/// children are checked (None for all of them).
const CHECKED: [(&[&str], Option<&[&str]>); 6] = [
    (&[], None),
    (&["api"], None),
    (&["engine"], None),
    (&["lifecycle"], None),
    (&["service"], None),
    // The shared statements stay below the backends that configure them.
    (&["store"], Some(&["sql", "sqlite", "postgres"])),
];

type ModulePath = Vec<String>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A string, byte string or character literal: never a path.
    Literal,
}

/// The tokens of Rust source, without comments; good enough to find paths, not to compile.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c.is_whitespace() {
            i += 1;
        } else if let Some(end) = raw_string_end(&chars, i) {
            out.push(Token::Literal);
            i = end;
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push(Token::Literal);
            i += 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let quote = if c == 'b' { i + 1 } else { i };
            if at(quote + 1) == '\\' {
                i = quote + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                out.push(Token::Literal);
                i += 1;
            } else if at(quote + 2) == '\'' {
                out.push(Token::Literal);
                i = quote + 3;
            } else {
                // A lifetime or a label: its name follows as an identifier.
                i = quote + 1;
            }
        } else if c.is_alphabetic() || c == '_' || (c == '$' && at(i + 1).is_alphabetic()) {
            let start = i;
            i += 1;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token::Sep);
            i += 2;
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// Where a raw (byte) string starting at `i` ends, if one does.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// Every path of a `use` tree starting at `tokens[*i]`, each prefixed with `prefix`.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<ModulePath>) {
    let mut path = prefix.to_vec();
    while let Some(token) = tokens.get(*i) {
        match token {
            Token::Sep => *i += 1,
            Token::Punct('{') => {
                *i += 1;
                while !matches!(tokens.get(*i), Some(Token::Punct('}')) | None) {
                    use_tree(tokens, i, &path, out);
                    if tokens.get(*i) == Some(&Token::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Token::Ident(name) => {
                path.push(name.clone());
                *i += 1;
                if tokens.get(*i) == Some(&Token::Ident("as".into())) {
                    *i += 2;
                }
                if tokens.get(*i) != Some(&Token::Sep) {
                    break;
                }
            }
            Token::Punct('*') => {
                *i += 1;
                break;
            }
            _ => break,
        }
    }
    out.push(path);
}

/// The module path `segments` names when written in `current`; None for anything outside the
/// crate's modules (another crate, a local item, a type's associated item).
fn resolve(
    known: &BTreeSet<ModulePath>,
    current: &[String],
    segments: &[String],
) -> Option<ModulePath> {
    let (first, rest) = segments.split_first()?;
    let mut base = current.to_vec();
    let rest = match first.as_str() {
        "crate" | "$crate" => {
            base.clear();
            rest
        }
        "self" => rest,
        "super" => {
            base.pop();
            let ups = rest.iter().take_while(|s| *s == "super").count();
            for _ in 0..ups {
                base.pop();
            }
            &rest[ups..]
        }
        _ => {
            let mut child = base.clone();
            child.push(first.clone());
            if !known.contains(&child) {
                return None;
            }
            segments
        }
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module graphs: for each parent module, which of its children refers to which, and in
/// which files.
type Graphs = BTreeMap<ModulePath, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>>;

/// The module a source file is, from its path under `src/` (`store/sql/mod.rs` is
/// `store::sql`).
fn module_of(relative: &str) -> ModulePath {
    let mut path: ModulePath = relative
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The graphs of `files`: (path under `src/`, source) of every module file, crate roots left
/// out.
fn graphs(files: &[(String, String)]) -> Graphs {
    let parsed: Vec<(String, ModulePath, Vec<Token>)> = files
        .iter()
        .map(|(name, source)| (name.clone(), module_of(name), tokens(source)))
        .collect();
    let mut known = BTreeSet::new();
    for (_, module, tokens) in &parsed {
        for end in 1..=module.len() {
            known.insert(module[..end].to_vec());
        }
        for window in tokens.windows(3) {
            if let [Token::Ident(m), Token::Ident(name), Token::Punct('{')] = window {
                if m == "mod" {
                    let mut inline = module.clone();
                    inline.push(name.clone());
                    known.insert(inline);
                }
            }
        }
    }
    let mut graphs = Graphs::new();
    for (name, module, tokens) in &parsed {
        let mut record = |current: &[String], target: Option<ModulePath>| {
            let Some(target) = target else { return };
            let shared = current
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if shared == current.len() || shared == target.len() {
                return;
            }
            if !known.contains(&target[..=shared]) {
                return;
            }
            graphs
                .entry(current[..shared].to_vec())
                .or_default()
                .entry(current[shared].clone())
                .or_default()
                .entry(target[shared].clone())
                .or_default()
                .insert(name.clone());
        };
        // Inline modules (`mod tests { … }`) and the brace depth each one closes at.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < tokens.len() {
            let mut current = module.clone();
            current.extend(inline.iter().map(|(m, _)| m.clone()));
            let after_sep = i > 0 && tokens[i - 1] == Token::Sep;
            match &tokens[i] {
                Token::Ident(m) if m == "mod" => {
                    if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) =
                        (tokens.get(i + 1), tokens.get(i + 2))
                    {
                        inline.push((name.clone(), depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                }
                Token::Punct('{') => depth += 1,
                Token::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if inline.last().is_some_and(|(_, at)| *at == depth) {
                        inline.pop();
                    }
                }
                Token::Ident(u) if u == "use" && !after_sep => {
                    let mut paths = Vec::new();
                    i += 1;
                    use_tree(tokens, &mut i, &[], &mut paths);
                    for path in paths {
                        record(&current, resolve(&known, &current, &path));
                    }
                    continue;
                }
                Token::Ident(first) if !after_sep && tokens.get(i + 1) == Some(&Token::Sep) => {
                    let mut segments = vec![first.clone()];
                    i += 1;
                    while let (Some(Token::Sep), Some(Token::Ident(next))) =
                        (tokens.get(i), tokens.get(i + 1))
                    {
                        segments.push(next.clone());
                        i += 2;
                    }
                    record(&current, resolve(&known, &current, &segments));
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    graphs
}

/// Every cycle found in the checked graphs, each as `a → b → … → a` with the files of each
/// step.
fn cycles(graphs: &Graphs) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, only) in CHECKED {
        let parent: ModulePath = parent.iter().map(|s| (*s).to_owned()).collect();
        let Some(graph) = graphs.get(&parent) else {
            continue;
        };
        let checked = |m: &str| only.is_none_or(|only| only.contains(&m));
        let edges = |from: &str| -> Vec<&String> {
            graph
                .get(from)
                .map(|to| to.keys().filter(|t| checked(t)).collect())
                .unwrap_or_default()
        };
        // Depth-first; a module met again while still on the stack closes a cycle.
        let mut done: BTreeSet<&str> = BTreeSet::new();
        for start in graph.keys().filter(|m| checked(m)) {
            if done.contains(start.as_str()) {
                continue;
            }
            let mut stack: Vec<(&str, Vec<&String>)> = vec![(start, edges(start))];
            let mut on_stack: BTreeSet<&str> = [start.as_str()].into();
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let Some(to) = next.pop() else {
                    done.insert(node);
                    on_stack.remove(node);
                    stack.pop();
                    continue;
                };
                let to = to.as_str();
                if on_stack.contains(to) {
                    let from = stack.iter().position(|(m, _)| *m == to).unwrap_or(0);
                    let mut ring: Vec<&str> = stack[from..].iter().map(|(m, _)| *m).collect();
                    ring.push(to);
                    let steps: Vec<String> = ring
                        .windows(2)
                        .map(|pair| {
                            let files: Vec<&str> =
                                graph[pair[0]][pair[1]].iter().map(String::as_str).collect();
                            format!("{} → {} ({})", pair[0], pair[1], files.join(", "))
                        })
                        .collect();
                    let scope = if parent.is_empty() {
                        "crate".to_owned()
                    } else {
                        parent.join("::")
                    };
                    found.push(format!("in {scope}: {}", steps.join("; ")));
                } else if !done.contains(to) {
                    on_stack.insert(to);
                    stack.push((to, edges(to)));
                }
            }
        }
    }
    found
}

/// Every module file of the crate, as (path under `src/`, source).
fn crate_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy();
                let relative = relative.replace('\\', "/");
                // The crate roots: every module is below them.
                if relative != "lib.rs" && relative != "main.rs" {
                    out.push((relative, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
        .collect()
}

fn has_edge(graphs: &Graphs, parent: &[&str], from: &str, to: &str) -> bool {
    let parent: ModulePath = parent.iter().map(|s| (*s).to_owned()).collect();
    graphs
        .get(&parent)
        .and_then(|graph| graph.get(from))
        .is_some_and(|targets| targets.contains_key(to))
}

#[test]
fn the_crate_has_no_module_cycle() {
    let graphs = graphs(&crate_sources());
    // A reader that saw nothing would find no cycle either.
    assert!(has_edge(&graphs, &[], "service", "store"));
    assert!(has_edge(&graphs, &["store"], "sqlite", "sql"));
    let cycles = cycles(&graphs);
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn every_form_of_reference_is_an_edge() {
    let graphs = graphs(&sources(&[
        (
            "a.rs",
            "use crate::{b, c::Thing};\nfn f() { crate::d::go(); }",
        ),
        ("b.rs", "pub(crate) use crate::e::{self as e_mod, f::*};"),
        ("c.rs", "fn f() { let _ = super::f::X; }"),
        ("d.rs", ""),
        ("e.rs", ""),
        ("f.rs", ""),
        ("g/mod.rs", "mod h;\nuse h::Y;\nfn f() { self::h::go(); }"),
        ("g/h.rs", "use super::super::a::Z;\nuse super::Parent;"),
        (
            "ignored.rs",
            "// use crate::a;\n/* crate::b::x /* nested */ crate::c */\n\
             const S: &str = \"crate::d::x\"; const R: &str = r#\"crate::e\"#;\n\
             fn f<'a>(x: &'a str) -> char { let _ = other::crate_like::a::x; '\"' }",
        ),
    ]));
    for (from, to) in [
        ("a", "b"),
        ("a", "c"),
        ("a", "d"),
        ("b", "e"),
        ("c", "f"),
        ("g", "a"),
    ] {
        assert!(has_edge(&graphs, &[], from, to), "{from} → {to}");
    }
    // A module using its child or its parent is no edge.
    assert!(!graphs.contains_key(["g".to_owned()].as_slice()));
    assert!(!graphs[&Vec::new()].contains_key("ignored"));
}

#[test]
fn a_cycle_is_found_and_named() {
    let graphs = graphs(&sources(&[
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "fn f() { crate::c::go(); }"),
        ("c.rs", "use crate::{a};"),
        ("store/mod.rs", "mod sql; mod sqlite;"),
        ("store/sql/mod.rs", "fn f() { super::sqlite::NOW; }"),
        ("store/sqlite/mod.rs", "use super::sql::SqlStore;"),
    ]));
    let cycles = cycles(&graphs);
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(cycles
        .iter()
        .any(|c| c.starts_with("in crate: a → b (a.rs)")));
    assert!(cycles
        .iter()
        .any(|c| c.contains("in store: sql → sqlite (store/sql/mod.rs)")));
}
