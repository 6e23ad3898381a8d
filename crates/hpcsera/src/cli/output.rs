//! Printing: stable JSON and aligned tables on stdout. Write errors (a closed pipe) become a
//! [`CliError`], never a panic.
//!
//! Text the server supplies (names, descriptions, messages, errors) can carry terminal escape
//! sequences; every table, key/value line and message goes through [`clean`], which shows
//! control characters as escapes instead of sending them to the terminal. JSON output is
//! escaped by JSON itself; a job's own output (`job logs`, `--follow`) and result files are
//! the job's bytes and pass unchanged.

use super::{CliError, CliResult};
use hpcsera_api_types::resources::units;
use hpcsera_api_types::{
    GrantedResources, Job, JobTypeSpec, ParamKind, ResourceRules, Resources, ResultFile,
};
use serde::Serialize;
use std::io::Write;

/// `s` with every control character shown as an escape (the one rule, in api-types, that the
/// web UI uses too).
pub use hpcsera_api_types::escape_controls as clean;

/// Writes `text` to stdout.
pub fn out(text: &str) -> CliResult<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|_| o.flush())
        .map_err(|e| CliError::other(format!("cannot write to stdout: {e}")))
}

/// Prints a value as pretty JSON and a newline.
pub fn json<T: Serialize>(v: &T) -> CliResult<()> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::other(format!("cannot encode JSON: {e}")))?;
    out(&(text + "\n"))
}

/// Renders rows as left-aligned columns under a header.
pub fn render_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(|c| clean(&c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(c.chars().count())
                    + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut text = line(headers.to_vec());
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> CliResult<()> {
    out(&render_table(headers, rows))
}

/// Key/value lines, keys aligned.
pub fn pairs(items: &[(&str, String)]) -> CliResult<()> {
    out(&render_pairs(items))
}

fn render_pairs(items: &[(&str, String)]) -> String {
    let w = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (k, v) in items {
        s.push_str(&format!("{k:<w$}  {}\n", clean(v)));
    }
    s
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn job_rows(jobs: &[Job]) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            let mut status = j.status.to_string();
            if j.held {
                status.push_str(" (held)");
            }
            vec![
                j.id.clone(),
                status,
                j.site.clone(),
                j.job_type.clone(),
                j.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                j.created_at.clone(),
            ]
        })
        .collect()
}

pub const JOB_HEADERS: [&str; 6] = ["ID", "STATUS", "SITE", "TYPE", "EXIT", "CREATED"];

pub fn job(j: &Job) -> CliResult<()> {
    let mut items = vec![
        ("id", j.id.clone()),
        ("status", j.status.to_string()),
        ("site", j.site.clone()),
        ("type", j.job_type.clone()),
        ("owner", format!("{} (project {})", j.owner, j.project)),
    ];
    if j.held {
        items.push(("held", "yes".into()));
    }
    if let Some(op) = &j.pending_operation {
        items.push((
            "pending",
            format!("{} (requested {})", op.operation.as_str(), op.requested_at),
        ));
    }
    if let Some(c) = j.exit_code {
        items.push(("exit code", c.to_string()));
    }
    if let Some(b) = &j.batch_job_id {
        items.push(("batch job", b.clone()));
    }
    if let Some(m) = &j.message {
        items.push(("message", m.clone()));
    }
    let params: Vec<String> = j
        .parameters
        .iter()
        .map(|(k, v)| format!("{k}={}", compact(v)))
        .collect();
    items.push(("parameters", params.join(" ")));
    if !j.resources.is_empty() {
        items.push(("resources", resources_text(&j.resources)));
    }
    if let Some(g) = &j.granted_resources {
        items.push(("granted", granted_text(g)));
    }
    if let Some(m) = &j.metadata {
        items.push(("metadata", m.to_string()));
    }
    items.push(("created", j.created_at.clone()));
    items.push(("updated", j.updated_at.clone()));
    if let Some(f) = &j.finished_at {
        items.push(("finished", f.clone()));
    }
    pairs(&items)?;
    if !j.sub_jobs.is_empty() {
        out("\n")?;
        let rows = j
            .sub_jobs
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.status.to_string(),
                    s.batch_job_id.clone().unwrap_or_default(),
                    s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    s.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["SUB-JOB", "STATUS", "BATCH ID", "EXIT", "MESSAGE"], rows)?;
    }
    Ok(())
}

/// `node_count=2 memory=4G duration=1h` (units for people; the JSON output has bytes and
/// seconds).
fn resources_text(r: &Resources) -> String {
    r.iter()
        .map(|(n, v)| format!("{n}={}", n.show_value(&v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `node_count 1..4 (default 1), account = proj42, queue_name one of debug|long`.
fn rules_text(rules: &ResourceRules) -> String {
    rules
        .0
        .iter()
        .map(|(n, r)| {
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .and_then(|v| n.parse_value(v).ok())
                    .map(|v| n.show_value(&v))
            };
            if let Some(f) = show(&r.fixed) {
                return format!("{n} = {f}");
            }
            let mut t = n.to_string();
            match (show(&r.minimum), show(&r.maximum)) {
                (Some(a), Some(b)) => t.push_str(&format!(" {a}..{b}")),
                (Some(a), None) => t.push_str(&format!(" >= {a}")),
                (None, Some(b)) => t.push_str(&format!(" <= {b}")),
                (None, None) => {}
            }
            if !r.values.is_empty() {
                t.push_str(&format!(" one of {}", r.values.join("|")));
            }
            if let Some(d) = show(&r.default) {
                t.push_str(&format!(" (default {d})"));
            }
            t
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn granted_text(g: &GrantedResources) -> String {
    let mut parts = Vec::new();
    let mut num = |k: &str, v: Option<u64>, show: fn(u64) -> String| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", show(v)));
        }
    };
    num("node_count", g.node_count, |v| v.to_string());
    num("process_count", g.process_count, |v| v.to_string());
    num("cpu_count", g.cpu_count, |v| v.to_string());
    num("gpu_count", g.gpu_count, |v| v.to_string());
    num("memory", g.memory, units::format_memory);
    num("duration", g.duration, units::format_duration);
    for (k, v) in [
        ("queue_name", &g.queue_name),
        ("account", &g.account),
        ("reservation_id", &g.reservation_id),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(" ")
}

fn kind_text(k: &ParamKind) -> (String, String) {
    let range = |lo: Option<String>, hi: Option<String>| match (lo, hi) {
        (Some(a), Some(b)) => format!("{a}..{b}"),
        (Some(a), None) => format!(">= {a}"),
        (None, Some(b)) => format!("<= {b}"),
        (None, None) => String::new(),
    };
    match k {
        ParamKind::String {
            pattern,
            max_length,
        } => {
            let mut c = Vec::new();
            if let Some(m) = max_length {
                c.push(format!("max {m} chars"));
            }
            if let Some(p) = pattern {
                c.push(format!("pattern {p}"));
            }
            ("string".into(), c.join(", "))
        }
        ParamKind::Integer { minimum, maximum } => (
            "integer".into(),
            range(
                minimum.map(|v| v.to_string()),
                maximum.map(|v| v.to_string()),
            ),
        ),
        ParamKind::Number { minimum, maximum } => (
            "number".into(),
            range(
                minimum.map(|v| v.to_string()),
                maximum.map(|v| v.to_string()),
            ),
        ),
        ParamKind::Boolean => ("boolean".into(), String::new()),
        ParamKind::Enum { values } => ("enum".into(), format!("one of {}", values.join("|"))),
        ParamKind::Code => ("code".into(), "code bundle SHA-256".into()),
    }
}

pub fn job_types(types: &[JobTypeSpec]) -> CliResult<()> {
    let mut s = String::new();
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        if t.description.is_empty() {
            s.push_str(&format!("{}\n", clean(&t.name)));
        } else {
            s.push_str(&format!("{} — {}\n", clean(&t.name), clean(&t.description)));
        }
        let steps: Vec<String> = t
            .sub_jobs
            .iter()
            .map(|sj| {
                let kind = serde_json::to_value(sj.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("{} ({kind})", clean(&sj.name))
            })
            .collect();
        if !steps.is_empty() {
            s.push_str(&format!("  steps: {}\n", steps.join(", ")));
        }
        if !t.resources.is_empty() {
            s.push_str(&format!(
                "  resources: {}\n",
                clean(&rules_text(&t.resources))
            ));
        }
        if t.parameters.is_empty() {
            s.push_str("  no parameters\n");
            continue;
        }
        let rows = t
            .parameters
            .iter()
            .map(|p| {
                let (ty, constraints) = kind_text(&p.kind);
                vec![
                    p.name.clone(),
                    ty,
                    if p.is_required() { "yes" } else { "no" }.to_string(),
                    p.default
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    constraints,
                    p.description.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let t = render_table(
            &[
                "PARAMETER",
                "TYPE",
                "REQUIRED",
                "DEFAULT",
                "BOUNDS",
                "DESCRIPTION",
            ],
            rows,
        );
        for l in t.lines() {
            s.push_str(&format!("  {l}\n"));
        }
    }
    if types.is_empty() {
        s.push_str("the site has no job types\n");
    }
    out(&s)
}

pub fn results(files: &[ResultFile]) -> CliResult<()> {
    let rows = files
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.size.to_string(),
                f.sha256.clone(),
                f.created_at.clone(),
            ]
        })
        .collect();
    table(&["NAME", "SIZE", "SHA256", "CREATED"], rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_is_aligned() {
        let t = super::render_table(
            &["A", "BB"],
            vec![vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        let evil = "a\x1b]0;pwned\x07b\x1b[2J\u{9b}31m\u{202e}c\x7f\nd";
        let shown = r"a\x1b]0;pwned\x07b\x1b[2J\u{9b}31m\u{202e}c\x7f\nd";
        assert_eq!(super::clean(evil), shown);
        assert_eq!(super::clean("plain ünïcode — ok"), "plain ünïcode — ok");
        let t = super::render_table(&["MESSAGE"], vec![vec![evil.to_string()]]);
        assert_eq!(t, format!("MESSAGE\n{shown}\n"));
        let p = super::render_pairs(&[("message", evil.to_string())]);
        assert_eq!(p, format!("message  {shown}\n"));
        assert!(!t.contains('\x1b') && !p.contains('\x1b') && !p.contains('\x07'));
    }
}
