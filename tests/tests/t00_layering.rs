//! The workspace's module graph has no cycles: within each crate, no module uses another
//! that uses it back, directly or through others — neither between files nor between
//! the top-level modules (the folders: a domain aggregate, the control plane's `app`,
//! `api`, `store`, ...). A module's use of its own ancestors or descendants is
//! containment, not a dependency, and is not counted; test modules may use anything.
//!
//! The graph is read from the sources: every `crate::…` and `super::…` path (in `use`
//! declarations, brace groups included, and in code) names the deepest module it
//! reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (`["job", "decide"]`).
type Module = Vec<String>;

/// The crates whose sources are checked, relative to the workspace root.
const CRATES: &[&str] = &[
    "proto/src",
    "controlplane/domain/src",
    "controlplane/src",
    "controlplane/server/src",
    "agent/src",
    "cli/src",
    "tests/src",
    "chaos/src",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Every module file of a crate (`lib.rs`/`main.rs` are the root), test-only files left
/// out.
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            let last = parts.last().cloned().unwrap_or_default();
            if ["tests", "testkit"].contains(&last.as_str()) || last.ends_with("_tests") {
                continue;
            }
            if last == "mod" || ((last == "lib" || last == "main") && parts.len() == 1) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.insert(parts, strip_tests(&text));
        }
    }
    out
}

/// The source without its `#[cfg(test)]` items (test modules and test-only imports).
fn strip_tests(text: &str) -> String {
    let mut out = String::new();
    let mut skip_next_item = false;
    let mut depth = 0usize;
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim_start();
        if skipping {
            depth += line.matches('{').count();
            depth = depth.saturating_sub(line.matches('}').count());
            if depth == 0 && (line.contains('}') || line.contains(';')) {
                skipping = false;
            }
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            skip_next_item = true;
            continue;
        }
        if skip_next_item {
            skip_next_item = false;
            let opens = line.matches('{').count();
            let closes = line.matches('}').count();
            if opens > closes {
                depth = opens - closes;
                skipping = true;
            }
            continue;
        }
        // Comments name paths that are not uses.
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expand a `use` tree (`a::{b, c::d}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or("").trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

/// The paths a source refers to: from `use` declarations and from code.
fn paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            out.extend(expand(&after[..end]));
        }
        rest = &after[end..];
    }
    for word in ["crate::", "super::"] {
        let mut rest = text;
        while let Some(i) = rest.find(word) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push(tail[..end].trim_end_matches(':').to_string());
            rest = &tail[word.len()..];
        }
    }
    out
}

/// The deepest module `path`, seen from `from`, reaches.
fn resolve(path: &str, from: &Module, known: &BTreeSet<Module>) -> Option<Module> {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut at: Module = match segs.peek().copied() {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("super") | Some("self") => {
            let mut m = from.clone();
            while let Some(s) = segs.peek().copied() {
                match s {
                    "super" => {
                        m.pop();
                        segs.next();
                    }
                    "self" => {
                        segs.next();
                    }
                    _ => break,
                }
            }
            m
        }
        _ => return None,
    };
    for s in segs {
        let mut next = at.clone();
        next.push(s.to_string());
        if known.contains(&next) {
            at = next;
        } else {
            break;
        }
    }
    Some(at)
}

/// `a` contains `b` or `b` contains `a`.
fn nested(a: &Module, b: &Module) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A cycle in `graph`, if there is one.
fn cycle<T: Ord + Clone + std::fmt::Debug>(graph: &BTreeMap<T, BTreeSet<T>>) -> Option<Vec<T>> {
    fn visit<T: Ord + Clone>(
        n: &T,
        graph: &BTreeMap<T, BTreeSet<T>>,
        state: &mut BTreeMap<T, u8>,
        stack: &mut Vec<T>,
    ) -> Option<Vec<T>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut c = stack[from..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn graphs(
    src: &Path,
) -> (
    BTreeMap<Module, BTreeSet<Module>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mods = modules(src);
    let known: BTreeSet<Module> = mods.keys().cloned().collect();
    let mut files: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        for p in paths(text) {
            let Some(target) = resolve(&p, m, &known) else {
                continue;
            };
            if nested(m, &target) {
                continue;
            }
            files.entry(m.clone()).or_default().insert(target.clone());
            if let (Some(a), Some(b)) = (m.first(), target.first()) {
                if a != b {
                    tops.entry(a.clone()).or_default().insert(b.clone());
                }
            }
        }
    }
    (files, tops)
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = workspace();
    let mut checked = 0;
    for krate in CRATES {
        let src = root.join(krate);
        if !src.exists() {
            continue;
        }
        let (files, tops) = graphs(&src);
        if let Some(c) = cycle(&files) {
            let names: Vec<String> = c.iter().map(|m| format!("::{}", m.join("::"))).collect();
            panic!("{krate}: modules use each other: {}", names.join(" -> "));
        }
        if let Some(c) = cycle(&tops) {
            panic!(
                "{krate}: top-level modules use each other: {}",
                c.join(" -> ")
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 6,
        "only {checked} crates found under {}",
        root.display()
    );
}

#[test]
fn the_checker_finds_a_cycle_between_two_modules() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::{self, B};\npub struct A;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\nfn f() -> crate::a::A { crate::a::A }\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n",
    )
    .unwrap();
    let (files, tops) = graphs(src);
    assert!(cycle(&files).is_some(), "{files:?}");
    assert!(cycle(&tops).is_some(), "{tops:?}");
    // Without b's use of a (a test module's use does not count), no cycle.
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n",
    )
    .unwrap();
    let (files, _) = graphs(src);
    assert!(cycle(&files).is_none(), "{files:?}");
}
