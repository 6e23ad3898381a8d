//! Parsing and checking the config text: the raw file shape with spans, and every check
//! that turns a problem into a [`ConfigProblem`] located by line, column and key.
//!
//! This module only reads text; it must never touch the file system or the batch system
//! (the types it fills — [`BatchConfig`], [`SubJobConfig`] — belong to their owners).

use super::{
    AgentConfig, ApprovalConfig, ConfigError, ConfigProblem, JobProvenanceConfig, JobTypeConfig,
    LimitsConfig, PollConfig, ProvenanceConfig, SubJobConfig,
};
use crate::batch::{BatchConfig, BatchPreset, StateClass};
use hpcsera_api_types::{ParamSpec, ResourceRules, SubJobKind};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Keys a `[[job_types.parameters]]` entry may have (the api-types `ParamSpec` JSON shape).
const PARAM_KEYS: &[&str] = &[
    "name",
    "type",
    "pattern",
    "maxLength",
    "minimum",
    "maximum",
    "values",
    "required",
    "default",
    "description",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server_url: Spanned<String>,
    token_file: Spanned<PathBuf>,
    #[serde(default)]
    ca_file: Option<Spanned<PathBuf>>,
    site: Spanned<String>,
    work_dir: Spanned<PathBuf>,
    #[serde(default)]
    poll: PollConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    approval: Option<Spanned<ApprovalConfig>>,
    #[serde(default)]
    batch: BatchConfig,
    #[serde(default)]
    provenance: ProvenanceConfig,
    #[serde(default)]
    job_types: Vec<Spanned<RawJobType>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobType {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    sub_jobs: Vec<Spanned<SubJobConfig>>,
    #[serde(default)]
    resources: Option<Spanned<ResourceRules>>,
    #[serde(default)]
    provenance: Option<Spanned<JobProvenanceConfig>>,
}

/// Line and column (1-based) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

struct Problems<'a> {
    path: &'a Path,
    src: &'a str,
    list: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn push(&mut self, span: Option<Range<usize>>, key: impl Into<String>, msg: impl Into<String>) {
        let (line, col) = span.map_or((0, 0), |s| line_col(self.src, s.start));
        // One problem, one line: multi-line messages (e.g. regex errors) are folded.
        let message = msg.into().split_whitespace().collect::<Vec<_>>().join(" ");
        self.list.push(ConfigProblem {
            path: self.path.to_path_buf(),
            line,
            col,
            key: key.into(),
            message,
        });
    }
}

/// Best-effort dotted key of a toml deserialisation error: the message often names the key
/// (`missing field `script``, `unknown field `foo``); the span locates it.
fn key_of_toml_error(src: &str, span: Option<Range<usize>>, msg: &str) -> String {
    for marker in ["missing field `", "unknown field `", "duplicate key `"] {
        if let Some(i) = msg.find(marker) {
            let rest = &msg[i + marker.len()..];
            if let Some(end) = rest.find('`') {
                return rest[..end].to_string();
            }
        }
    }
    // Otherwise the key on the line of the span (if the span starts at a value), prefixed
    // with the table it is in.
    if let Some(s) = span {
        let start = s.start.min(src.len());
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = &src[line_start..start];
        if let Some(eq) = line.rfind('=') {
            let k = line[..eq].trim();
            if !k.is_empty() && !k.starts_with('[') {
                let table = src[..line_start]
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| l.starts_with('['))
                    .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
                return match table {
                    Some(t) if !t.is_empty() => format!("{t}.{k}"),
                    _ => k.to_string(),
                };
            }
        }
    }
    String::new()
}

fn json_of_toml(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(json_of_toml).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, json_of_toml(v))).collect())
        }
    }
}

impl AgentConfig {
    /// Parses and checks config text; `path` is used in messages only.
    pub fn parse(path: impl AsRef<Path>, src: &str) -> Result<AgentConfig, ConfigError> {
        let path = path.as_ref();
        let mut problems = Problems {
            path,
            src,
            list: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.message().trim().to_string();
                let key = key_of_toml_error(src, e.span(), &msg);
                problems.push(e.span(), key, msg);
                return Err(ConfigError::Invalid(problems.list));
            }
        };
        let server_url = check_top(&raw, &mut problems);
        check_approval(raw.approval.as_ref(), &mut problems);
        let mut type_names = HashSet::new();
        let job_types = raw
            .job_types
            .into_iter()
            .enumerate()
            .map(|(ti, jt)| job_type(ti, jt, &mut type_names, &mut problems))
            .collect();
        if !problems.list.is_empty() {
            return Err(ConfigError::Invalid(problems.list));
        }
        Ok(AgentConfig {
            path: path.to_path_buf(),
            server_url,
            token_file: raw.token_file.into_inner(),
            ca_file: raw.ca_file.map(Spanned::into_inner),
            site: raw.site.into_inner(),
            work_dir: raw.work_dir.into_inner(),
            poll: raw.poll,
            limits: raw.limits,
            approval: raw.approval.map(Spanned::into_inner).unwrap_or_default(),
            batch: raw.batch,
            provenance: raw.provenance,
            job_types,
        })
    }
}

/// `[approval]`: requiring signatures needs the allowed-signers file and the project.
fn check_approval(a: Option<&Spanned<ApprovalConfig>>, problems: &mut Problems<'_>) {
    let Some(a) = a else { return };
    let span = Some(a.span());
    let c = a.get_ref();
    if let Some(p) = &c.project {
        if !hpcsera_api_types::is_valid_name(p, true) {
            problems.push(
                span.clone(),
                "approval.project",
                "is not a valid project name",
            );
        }
    }
    if !c.require_signature {
        return;
    }
    if c.allowed_signers.is_none() {
        problems.push(
            span.clone(),
            "approval.allowed_signers",
            "require_signature needs an OpenSSH allowed-signers file (allowed_signers = \"PATH\")",
        );
    }
    if c.project.is_none() {
        problems.push(
            span,
            "approval.project",
            "require_signature needs the project of this agent's token (project = \"NAME\"): signatures must name it",
        );
    }
}

/// Checks the top-level keys and `[batch]`; returns the server URL, trimmed.
fn check_top(raw: &RawConfig, problems: &mut Problems<'_>) -> String {
    let server_url = raw.server_url.get_ref().trim().to_string();
    if !(server_url.starts_with("https://") || server_url.starts_with("http://")) {
        problems.push(
            Some(raw.server_url.span()),
            "server_url",
            "must be an http:// or https:// URL",
        );
    }
    if !hpcsera_api_types::is_valid_name(raw.site.get_ref(), true) {
        problems.push(
            Some(raw.site.span()),
            "site",
            "must start with a letter or '_' and contain only letters, digits, '_', '-', '.'",
        );
    }
    let work_dir = raw.work_dir.get_ref();
    if work_dir.as_os_str().is_empty() || !work_dir.is_absolute() {
        problems.push(
            Some(raw.work_dir.span()),
            "work_dir",
            "must be an absolute path",
        );
    } else if raw.batch.preset == BatchPreset::Slurm
        && work_dir.to_string_lossy().contains(['%', '\\'])
    {
        problems.push(
            Some(raw.work_dir.span()),
            "work_dir",
            "must not contain '%' or '\\' with the slurm preset (sbatch expands them in \
             output file names)",
        );
    }
    if let Some(ca) = &raw.ca_file {
        if !ca.get_ref().is_absolute() {
            problems.push(Some(ca.span()), "ca_file", "must be an absolute path");
        }
    }
    if raw.token_file.get_ref().as_os_str().is_empty() {
        problems.push(
            Some(raw.token_file.span()),
            "token_file",
            "must not be empty",
        );
    }
    check_batch(&raw.batch, problems);
    server_url
}

/// Checks and converts job type `ti`.
fn job_type(
    ti: usize,
    jt: Spanned<RawJobType>,
    type_names: &mut HashSet<String>,
    problems: &mut Problems<'_>,
) -> JobTypeConfig {
    let jt_span = jt.span();
    let jt = jt.into_inner();
    let at = format!("job_types[{ti}]");
    let name = jt.name.get_ref().clone();
    if !type_names.insert(name.clone()) {
        problems.push(
            Some(jt.name.span()),
            format!("{at}.name"),
            format!("duplicate job type name {name:?}"),
        );
    }
    let (parameters, param_spans) = parameters(&at, jt.parameters, problems);
    let mut sub_jobs = Vec::new();
    let mut sub_spans = Vec::new();
    for (si, s) in jt.sub_jobs.into_iter().enumerate() {
        let span = s.span();
        let s = s.into_inner();
        check_sub_job(&s, &format!("{at}.sub_jobs[{si}]"), span.clone(), problems);
        sub_jobs.push(s);
        sub_spans.push(span);
    }
    if sub_jobs.is_empty() {
        problems.push(
            Some(jt_span.clone()),
            format!("{at}.sub_jobs"),
            "a job type needs at least one sub-job",
        );
    }
    let provenance = match jt.provenance {
        Some(p) => {
            for (key, message) in p.get_ref().problems() {
                problems.push(Some(p.span()), format!("{at}.provenance.{key}"), message);
            }
            p.into_inner()
        }
        None => JobProvenanceConfig::default(),
    };
    let resources_span = jt.resources.as_ref().map(Spanned::span);
    let cfg = JobTypeConfig {
        name,
        description: jt.description,
        parameters,
        sub_jobs,
        resources: jt.resources.map(Spanned::into_inner).unwrap_or_default(),
        provenance,
    };
    if let Err(errs) = cfg.spec().check() {
        for fe in errs {
            // Map `parameters[i].x` / `subJobs[i].x` / `name` back to a span.
            let (span, field) =
                locate_field(&fe.field, &param_spans, &sub_spans).unwrap_or_else(|| {
                    let span = match &resources_span {
                        _ if fe.field == "name" => jt.name.span(),
                        Some(r) if fe.field.starts_with("resources.") => r.clone(),
                        _ => jt_span.clone(),
                    };
                    (span, fe.field.clone())
                });
            problems.push(Some(span), format!("{at}.{field}"), fe.problem);
        }
    }
    cfg
}

/// A job type's parameters: keys checked, then converted to the api-types shape; with the
/// (config index, span) of each one converted.
fn parameters(
    at: &str,
    raw: Vec<Spanned<toml::Table>>,
    problems: &mut Problems<'_>,
) -> (Vec<ParamSpec>, Vec<(usize, Range<usize>)>) {
    let mut params = Vec::new();
    let mut spans = Vec::new();
    for (pi, p) in raw.into_iter().enumerate() {
        let span = p.span();
        let table = p.into_inner();
        let pat = format!("{at}.parameters[{pi}]");
        let unknown: Vec<&String> = table
            .keys()
            .filter(|k| !PARAM_KEYS.contains(&k.as_str()))
            .collect();
        for k in &unknown {
            problems.push(
                Some(span.clone()),
                format!("{pat}.{k}"),
                format!("unknown key; expected one of {}", PARAM_KEYS.join(", ")),
            );
        }
        if !unknown.is_empty() {
            continue;
        }
        let json = json_of_toml(toml::Value::Table(table));
        match serde_json::from_value::<ParamSpec>(json) {
            Ok(spec) => {
                params.push(spec);
                spans.push((pi, span));
            }
            Err(e) => problems.push(
                Some(span),
                pat,
                format!("not a valid parameter specification: {e}"),
            ),
        }
    }
    (params, spans)
}

/// spec) to the span and key of the config entry it came from.
fn locate_field(
    field: &str,
    params: &[(usize, Range<usize>)],
    subs: &[Range<usize>],
) -> Option<(Range<usize>, String)> {
    let split = |prefix: &str| -> Option<(usize, String)> {
        let rest = field.strip_prefix(prefix)?;
        let (i, tail) = rest.split_once(']')?;
        Some((i.parse().ok()?, tail.to_string()))
    };
    if let Some((i, tail)) = split("parameters[") {
        let (orig, span) = params.get(i)?;
        return Some((span.clone(), format!("parameters[{orig}]{tail}")));
    }
    if let Some((i, tail)) = split("subJobs[") {
        return Some((subs.get(i)?.clone(), format!("sub_jobs[{i}]{tail}")));
    }
    None
}

fn check_batch(b: &BatchConfig, problems: &mut Problems<'_>) {
    for (k, v) in [
        ("submit", &b.submit),
        ("status", &b.status),
        ("cancel", &b.cancel),
        ("hold", &b.hold),
        ("release", &b.release),
        ("find", &b.find),
    ] {
        if matches!(v, Some(argv) if argv.is_empty()) {
            problems.push(None, format!("batch.{k}"), "must not be an empty command");
        }
    }
    for (raw, mapped) in &b.states {
        if StateClass::parse(mapped).is_none() {
            problems.push(
                None,
                format!("batch.states.{raw}"),
                format!(
                    "unknown state class {mapped:?}; expected pending, held, running, \
                     completed, failed, cancelled or unknown"
                ),
            );
        }
    }
}

/// The `#!` interpreter of a script when it is not a POSIX-style shell.
fn foreign_interpreter(script: &str) -> Option<String> {
    let first = script.trim_start().lines().next()?;
    let line = first.strip_prefix("#!")?.trim();
    let mut words = line.split_whitespace();
    let mut prog = words.next()?;
    if prog.ends_with("/env") {
        prog = words.find(|w| !w.starts_with('-'))?;
    }
    let base = prog.rsplit('/').next().unwrap_or(prog);
    (!matches!(base, "sh" | "bash" | "dash" | "ksh" | "zsh")).then(|| base.to_string())
}

fn check_sub_job(s: &SubJobConfig, at: &str, span: Range<usize>, problems: &mut Problems<'_>) {
    match s.kind {
        SubJobKind::Batch => check_batch_sub_job(s, at, span, problems),
        SubJobKind::Login => check_login_sub_job(s, at, span, problems),
    }
}

fn check_batch_sub_job(
    s: &SubJobConfig,
    at: &str,
    span: Range<usize>,
    problems: &mut Problems<'_>,
) {
    match &s.script {
        Some(text) if !text.trim().is_empty() => {
            if let Some(interp) = foreign_interpreter(text) {
                problems.push(
                    Some(span.clone()),
                    format!("{at}.script"),
                    format!(
                        "batch scripts are run by bash (the agent adds a header that \
                         records the exit code); call {interp} from the script instead \
                         of using it as the #! interpreter"
                    ),
                );
            }
        }
        Some(_) => problems.push(
            Some(span.clone()),
            format!("{at}.script"),
            "a batch sub-job's script must not be empty",
        ),
        None => problems.push(
            Some(span.clone()),
            format!("{at}.script"),
            "a batch sub-job needs a `script`",
        ),
    }
    for k in [
        ("command", s.command.is_some()),
        ("shell", s.shell.is_some()),
    ]
    .iter()
    .filter(|k| k.1)
    {
        problems.push(
            Some(span.clone()),
            format!("{at}.{}", k.0),
            "only login sub-jobs have a command; a batch sub-job has a `script`",
        );
    }
}

fn check_login_sub_job(
    s: &SubJobConfig,
    at: &str,
    span: Range<usize>,
    problems: &mut Problems<'_>,
) {
    match (&s.command, &s.shell) {
        (Some(_), Some(_)) => problems.push(
            Some(span.clone()),
            format!("{at}.command"),
            "give either `command` (argv, no shell) or `shell`, not both",
        ),
        (None, None) => problems.push(
            Some(span.clone()),
            format!("{at}.command"),
            "a login sub-job needs `command` (argv array) or `shell`",
        ),
        (Some(argv), None) if argv.is_empty() || argv[0].is_empty() => problems.push(
            Some(span.clone()),
            format!("{at}.command"),
            "must name a program",
        ),
        (None, Some(sh)) if sh.trim().is_empty() => problems.push(
            Some(span.clone()),
            format!("{at}.shell"),
            "must not be empty",
        ),
        _ => {}
    }
    if s.script.is_some() {
        problems.push(
            Some(span.clone()),
            format!("{at}.script"),
            "only batch sub-jobs have a script",
        );
    }
    if !s.options.is_empty() {
        problems.push(
            Some(span.clone()),
            format!("{at}.options"),
            "only batch sub-jobs have submit options",
        );
    }
    if !s.resources.is_empty() {
        problems.push(
            Some(span.clone()),
            format!("{at}.resources"),
            "only batch sub-jobs have resources",
        );
    }
    if s.timeout_seconds == 0 {
        problems.push(
            Some(span),
            format!("{at}.timeout_seconds"),
            "must be at least 1",
        );
    }
}
