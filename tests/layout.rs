//! The shape of the source (see the crate docs' `# Layout`): no two modules import each other,
//! and no source file grows past about 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MOST_LINES: usize = 620;

/// Every library source file, as its module path (`protocol::reader`) and its text.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut folders = vec![src.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter(|path| !path.starts_with(src.join("bin")))
        .map(|path| {
            (
                module_path(&src, &path),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect()
}

fn module_path(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The modules `text` names through `crate::`, each as the longest path that is a module.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    text.match_indices("crate::")
        .filter_map(|(at, _)| {
            let path: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = path.split("::").filter(|part| !part.is_empty()).collect();
            (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| modules.contains(candidate))
        })
        .collect()
}

#[test]
fn no_two_modules_import_each_other() {
    let modules = modules();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let edges: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(name, text)| (name.clone(), imports(text, &names)))
        .collect();
    assert!(
        edges["protocol::connection"].contains("protocol::reader"),
        "the check reads imports: {edges:?}"
    );
    let mut circles = Vec::new();
    for (name, imported) in &edges {
        for other in imported {
            // A module's own submodules (its tests) may use it.
            let inside =
                other.starts_with(&format!("{name}::")) || name.starts_with(&format!("{other}::"));
            if !inside && name < other && edges[other].contains(name) {
                circles.push(format!("{name} <-> {other}"));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules importing each other: {circles:?}"
    );
}

#[test]
fn no_source_file_is_past_about_600_lines() {
    let long: Vec<String> = modules()
        .iter()
        .map(|(name, text)| (name, text.lines().count()))
        .filter(|(_, lines)| *lines > MOST_LINES)
        .map(|(name, lines)| format!("{name}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
