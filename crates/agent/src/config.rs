//! The agent's TOML config file.
//!
//! The config is the authority on the cluster side: it defines which job types exist, which
//! parameters they take and which commands and batch scripts run for them. The server only
//! learns each job type's [`JobTypeSpec`] (name, description, parameters, sub-job names and
//! kinds); commands and scripts never leave the cluster.
//!
//! [`AgentConfig::load`] reports every problem with the file, the line and column, and the
//! key, as `path:line:col: key: message`. Problems found by deserialisation come from the
//! `toml` crate's spans; problems found afterwards (job type checks, a batch sub-job without
//! a script, a login sub-job with both `command` and `shell`, duplicate names) are located
//! through [`toml::Spanned`] wrappers kept on the job types, parameters and sub-jobs.
//!
//! See the crate docs for a full example file.

use crate::batch::BatchPreset;
use hpcsera_api_types::{JobTypeSpec, ParamSpec, SubJobInfo, SubJobKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
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

/// One problem in a config file, located by line, column and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: PathBuf,
    /// 1-based; 0 when the problem has no position (e.g. the file could not be read).
    pub line: usize,
    pub col: usize,
    /// Dotted key path such as `job_types[0].sub_jobs[1].script`; empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a config (or the token file) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One or more problems in the file, each on its own line.
    #[error("{}", join_problems(.0))]
    Invalid(Vec<ConfigProblem>),
    #[error("cannot read token file {}: {source}", path.display())]
    TokenRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token file {} is readable or writable by group or others (mode {mode:04o}); \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TokenPermissions { path: PathBuf, mode: u32 },
    #[error("token file {} is empty", path.display())]
    TokenEmpty { path: PathBuf },
}

fn join_problems(p: &[ConfigProblem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems of an invalid config (empty for other errors).
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

/// Poll settings (`[poll]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// How long one claim request may wait on the server for a job.
    pub long_poll_seconds: u64,
    /// Pause between claim attempts when the server has nothing (or is unreachable).
    pub idle_interval_seconds: u64,
    /// How often the batch system is asked for the state of all active jobs (one query).
    pub status_interval_seconds: u64,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            long_poll_seconds: 30,
            idle_interval_seconds: 5,
            status_interval_seconds: 10,
        }
    }
}

/// Limits (`[limits]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// At most this many jobs are active (claimed and not finished) at once.
    pub max_active_jobs: usize,
    /// At most this many bytes of each stdout/stderr stream are kept and reported.
    pub max_output_bytes: u64,
    /// At most this many bytes per result file uploaded.
    pub max_result_bytes: u64,
    /// A code bundle with more entries than this is refused.
    pub max_code_entries: u64,
    /// A code bundle that unpacks to more bytes than this is refused (decompression bombs);
    /// also the largest bundle the agent downloads.
    pub max_code_unpacked_bytes: u64,
    /// At most this many bytes of pending code bundles are kept in `<work>/.code/quarantine`
    /// (the oldest go first); bundles no longer pending are removed.
    pub max_quarantine_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_active_jobs: 100,
            max_output_bytes: 10 * 1024 * 1024,
            max_result_bytes: 50 * 1024 * 1024,
            max_code_entries: 10_000,
            max_code_unpacked_bytes: 1024 * 1024 * 1024,
            max_quarantine_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// The batch adapter (`[batch]`). Every command is an argv array (no shell); see
/// [`crate::batch`] for the placeholders.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub preset: BatchPreset,
    pub submit: Option<Vec<String>>,
    pub status: Option<Vec<String>>,
    /// Fallback status query for jobs the status query no longer shows (Slurm: `sacct`).
    /// An empty array disables it.
    pub accounting: Option<Vec<String>>,
    pub cancel: Option<Vec<String>>,
    pub hold: Option<Vec<String>>,
    pub release: Option<Vec<String>>,
    pub find: Option<Vec<String>>,
    /// Extra argv entries given to every submit (e.g. `["--account=proj42"]`).
    pub submit_options: Vec<String>,
    /// Overrides of the state table: raw batch-system state → one of `pending`, `held`,
    /// `running`, `completed`, `failed`, `cancelled`, `unknown`.
    pub states: BTreeMap<String, String>,
    /// Timeout for one batch-system command, in seconds.
    pub command_timeout_seconds: Option<u64>,
}

/// A sub-job as configured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubJobConfig {
    pub name: String,
    pub kind: SubJobKind,
    /// Login: the argv to run, without a shell.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Login: shell text run with `/bin/sh -c` (only when given explicitly); parameters still
    /// reach it only as environment variables.
    #[serde(default)]
    pub shell: Option<String>,
    /// Login: timeout in seconds.
    #[serde(default = "default_login_timeout")]
    pub timeout_seconds: u64,
    /// Batch: the batch script text (references parameters as `$HPCSERA_PARAM_name`).
    #[serde(default)]
    pub script: Option<String>,
    /// Batch: argv entries for the submit command (e.g. `["--time=00:10:00"]`).
    #[serde(default)]
    pub options: Vec<String>,
}

fn default_login_timeout() -> u64 {
    600
}

/// How a login sub-job's command is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCommand {
    /// argv, run directly.
    Argv(Vec<String>),
    /// Shell text for `/bin/sh -c`, configured explicitly.
    Shell(String),
}

impl SubJobConfig {
    /// The login command (after [`AgentConfig::load`] has checked it exists).
    pub fn login_command(&self) -> Option<LoginCommand> {
        match (&self.command, &self.shell) {
            (Some(argv), None) if !argv.is_empty() => Some(LoginCommand::Argv(argv.clone())),
            (None, Some(sh)) => Some(LoginCommand::Shell(sh.clone())),
            _ => None,
        }
    }
}

/// A job type as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTypeConfig {
    pub name: String,
    pub description: String,
    pub parameters: Vec<ParamSpec>,
    pub sub_jobs: Vec<SubJobConfig>,
}

impl JobTypeConfig {
    /// What the agent publishes to the server (no commands, no scripts).
    pub fn spec(&self) -> JobTypeSpec {
        JobTypeSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
            sub_jobs: self
                .sub_jobs
                .iter()
                .map(|s| SubJobInfo {
                    name: s.name.clone(),
                    kind: s.kind,
                })
                .collect(),
        }
    }

    /// Validates a job's parameters against this (the agent's own) definition and returns
    /// them with defaults filled in. The agent calls this again even though the server did.
    pub fn validate_parameters(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<hpcsera_api_types::FieldError>> {
        self.spec().validate_parameters(given)
    }

    pub fn sub_job(&self, name: &str) -> Option<&SubJobConfig> {
        self.sub_jobs.iter().find(|s| s.name == name)
    }
}

/// The whole agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Where the file was read from (for messages).
    pub path: PathBuf,
    pub server_url: String,
    pub token_file: PathBuf,
    pub site: String,
    pub work_dir: PathBuf,
    pub poll: PollConfig,
    pub limits: LimitsConfig,
    pub batch: BatchConfig,
    pub job_types: Vec<JobTypeConfig>,
}

// ---- raw (as in the file, with spans) ---------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server_url: Spanned<String>,
    token_file: Spanned<PathBuf>,
    site: Spanned<String>,
    work_dir: Spanned<PathBuf>,
    #[serde(default)]
    poll: PollConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    batch: BatchConfig,
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
    /// Reads, parses and checks a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<AgentConfig, ConfigError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &src)
    }

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
        if raw.token_file.get_ref().as_os_str().is_empty() {
            problems.push(
                Some(raw.token_file.span()),
                "token_file",
                "must not be empty",
            );
        }
        check_batch(&raw.batch, &mut problems);

        let mut job_types = Vec::new();
        let mut type_names = HashSet::new();
        for (ti, jt) in raw.job_types.into_iter().enumerate() {
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
            // Parameters: check keys, then convert to the api-types shape.
            let mut params = Vec::new();
            let mut param_spans = Vec::new();
            for (pi, p) in jt.parameters.into_iter().enumerate() {
                let span = p.span();
                let table = p.into_inner();
                let pat = format!("{at}.parameters[{pi}]");
                let mut ok = true;
                for k in table.keys() {
                    if !PARAM_KEYS.contains(&k.as_str()) {
                        ok = false;
                        problems.push(
                            Some(span.clone()),
                            format!("{pat}.{k}"),
                            format!("unknown key; expected one of {}", PARAM_KEYS.join(", ")),
                        );
                    }
                }
                if !ok {
                    continue;
                }
                let json = json_of_toml(toml::Value::Table(table));
                match serde_json::from_value::<ParamSpec>(json) {
                    Ok(spec) => {
                        params.push(spec);
                        param_spans.push((pi, span));
                    }
                    Err(e) => problems.push(
                        Some(span),
                        pat,
                        format!("not a valid parameter specification: {e}"),
                    ),
                }
            }
            let mut sub_jobs = Vec::new();
            let mut sub_spans = Vec::new();
            for (si, s) in jt.sub_jobs.into_iter().enumerate() {
                let span = s.span();
                let s = s.into_inner();
                check_sub_job(
                    &s,
                    &format!("{at}.sub_jobs[{si}]"),
                    span.clone(),
                    &mut problems,
                );
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
            let cfg = JobTypeConfig {
                name,
                description: jt.description,
                parameters: params,
                sub_jobs,
            };
            if let Err(errs) = cfg.spec().check() {
                for fe in errs {
                    // Map `parameters[i].x` / `subJobs[i].x` / `name` back to a span.
                    let (span, field) = locate_field(&fe.field, &param_spans, &sub_spans)
                        .unwrap_or_else(|| {
                            let span = if fe.field == "name" {
                                jt.name.span()
                            } else {
                                jt_span.clone()
                            };
                            (span, fe.field.clone())
                        });
                    problems.push(Some(span), format!("{at}.{field}"), fe.problem);
                }
            }
            job_types.push(cfg);
        }

        if !problems.list.is_empty() {
            return Err(ConfigError::Invalid(problems.list));
        }
        Ok(AgentConfig {
            path: path.to_path_buf(),
            server_url,
            token_file: raw.token_file.into_inner(),
            site: raw.site.into_inner(),
            work_dir: raw.work_dir.into_inner(),
            poll: raw.poll,
            limits: raw.limits,
            batch: raw.batch,
            job_types,
        })
    }

    pub fn job_type(&self, name: &str) -> Option<&JobTypeConfig> {
        self.job_types.iter().find(|j| j.name == name)
    }

    /// The job types as published to the server.
    pub fn specs(&self) -> Vec<JobTypeSpec> {
        self.job_types.iter().map(JobTypeConfig::spec).collect()
    }
}

/// Maps a `JobTypeSpec::check` field (`parameters[i].x`, `subJobs[i].x`; indices of the
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
        if crate::batch::StateClass::parse(mapped).is_none() {
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
        SubJobKind::Batch => {
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
        SubJobKind::Login => {
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
            if s.timeout_seconds == 0 {
                problems.push(
                    Some(span),
                    format!("{at}.timeout_seconds"),
                    "must be at least 1",
                );
            }
        }
    }
}

/// Reads the agent's token from `path`, refusing a file that group or others can access
/// (`mode & 0o077 != 0`). Surrounding whitespace (a trailing newline) is trimmed.
pub fn read_token(path: impl AsRef<Path>) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let path = path.as_ref();
    let err = |source| ConfigError::TokenRead {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::TokenPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(err)?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(ConfigError::TokenEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(token)
}
