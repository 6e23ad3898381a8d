//! The code's shape (issue 9), checked on every run so that it holds by construction, not by
//! convention: no file in `crates/*/src` over 600 lines; no function there over 80 lines unless
//! a comment just above it says why ("Over 80 lines on purpose"); no import circles between
//! sibling modules of a crate (`crate::`, `use crate::{…}` and `super::` references, test
//! code after `#[cfg(test)]` left out). The scans read the source as text: good enough for
//! this code base's style (rustfmt'ed), not a Rust parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;
const WHY: &str = "Over 80 lines on purpose";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `crates/*/src`, with its crate's `src` directory.
fn sources() -> Vec<(PathBuf, PathBuf)> {
    fn walk(dir: &Path, src: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, src, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((p, src.to_path_buf()));
            }
        }
    }
    let mut out = Vec::new();
    for c in std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
    {
        let src = c.path().join("src");
        walk(&src, &src, &mut out);
    }
    assert!(out.len() > 100, "found only {} source files", out.len());
    out
}

/// A line without its comment, string and char literals (so braces in them do not count).
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal ('{', '\n') is skipped; a lifetime ('a) is kept.
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|(f, _)| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:#?}"
    );
}

#[test]
fn no_function_is_over_80_lines_without_saying_why() {
    let mut long = Vec::new();
    for (f, _) in sources() {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let head = t
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ")
                .trim_start_matches("async ")
                .trim_start_matches("const ")
                .trim_start_matches("unsafe ");
            if !head.starts_with("fn ") {
                continue;
            }
            let (mut depth, mut started, mut end) = (0i64, false, i);
            for (j, l) in lines.iter().enumerate().skip(i) {
                let code = code_of(l);
                for c in code.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            started = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                end = j;
                if (started && depth <= 0) || (!started && code.trim_end().ends_with(';')) {
                    break;
                }
            }
            let n = end - i + 1;
            let said = lines[i.saturating_sub(6)..i]
                .iter()
                .any(|l| l.contains(WHY));
            if n > MAX_FN_LINES && !said {
                long.push(format!("{}:{} ({n} lines)", f.display(), i + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:#?}"
    );
}

/// A file's module path inside its crate (`runtime/agent.rs` → `["runtime", "agent"]`).
fn module_of(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module paths a file's (non-test) code refers to, as written (`crate::a::b`,
/// `use crate::{a, b::c}`, `super::x` resolved against the file's own module).
fn references(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .map(code_of)
        .collect::<Vec<_>>()
        .join("\n");
    // `a::b::C;` → [a, b, C]: a segment ends the path where anything but a name follows it.
    let path_after = |s: &str| -> Vec<String> {
        let mut path = Vec::new();
        for part in s.split("::") {
            let name: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let whole = name.len() == part.len();
            if !name.is_empty() {
                path.push(name);
            }
            if !whole || path.is_empty() {
                break;
            }
        }
        path
    };
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", me[..me.len().saturating_sub(1)].to_vec()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let inner = list.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let p = path_after(item.trim());
                    if !p.is_empty() {
                        out.push(base.iter().cloned().chain(p).collect());
                    }
                }
            } else {
                let p = path_after(rest);
                if !p.is_empty() {
                    out.push(base.iter().cloned().chain(p).collect());
                }
            }
        }
    }
    out
}

#[test]
fn no_import_circles_between_modules() {
    let files = sources();
    let mut by_crate: BTreeMap<PathBuf, Vec<&(PathBuf, PathBuf)>> = BTreeMap::new();
    for f in &files {
        by_crate.entry(f.1.clone()).or_default().push(f);
    }
    let mut circles = Vec::new();
    for (src, files) in by_crate {
        let modules: BTreeSet<Vec<String>> = files.iter().map(|(f, s)| module_of(f, s)).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (f, s) in files {
            let me = module_of(f, s);
            if me.iter().any(|p| p == "tests" || p.ends_with("_tests")) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for r in references(&text, &me) {
                // The longest module the reference names.
                let Some(to) = (1..=r.len())
                    .rev()
                    .map(|k| r[..k].to_vec())
                    .find(|p| modules.contains(p))
                else {
                    continue;
                };
                // Compared as siblings under their common parent.
                let common = me.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if common < me.len() && common < to.len() {
                    edges
                        .entry(me[..=common].to_vec())
                        .or_default()
                        .insert(to[..=common].to_vec());
                }
            }
        }
        // A circle: a module that reaches itself.
        for start in edges.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&Vec<String>> = edges[start].iter().collect();
            while let Some(m) = todo.pop() {
                if m == start {
                    circles.push(format!("{}: {}", src.display(), start.join("::")));
                    break;
                }
                if seen.insert(m.clone()) {
                    todo.extend(edges.get(m).into_iter().flatten());
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules in an import circle: {circles:#?}"
    );
}

#[test]
fn the_scans_see_what_they_look_for() {
    // The scanners themselves, on made-up text: a test of the tests, so that a scan that
    // silently finds nothing cannot pass.
    assert_eq!(code_of(r#"let s = "{"; // }"#), "let s = ; ");
    assert_eq!(code_of("let c = '{'; f::<'a>()"), "let c = ; f::<'a>()");
    let me = vec!["runtime".to_string(), "agent".to_string()];
    let refs = references(
        "use crate::{store::Store, util};\nuse super::steps::x;\nfoo::crate_x();\n#[cfg(test)]\nuse crate::hidden;",
        &me,
    );
    assert_eq!(
        refs,
        vec![
            vec!["store".to_string(), "Store".to_string()],
            vec!["util".to_string()],
            vec!["runtime".to_string(), "steps".to_string(), "x".to_string()],
        ]
    );
}
