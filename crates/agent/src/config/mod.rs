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
//!
//! This module owns the agent's own settings (poll, limits, job types); the `[batch]` table's
//! type is the batch module's. It must never start anything or write a file.

mod parse;
mod provenance;

pub use provenance::{
    ContainerConfig, JobProvenanceConfig, ProvenanceCommand, ProvenanceConfig,
    MAX_PROVENANCE_COMMANDS,
};

/// The `[batch]` table and a login sub-job's command are the batch module's types; the
/// config only parses into them.
pub use crate::batch::login::LoginCommand;
pub use crate::batch::BatchConfig;
use hpcsera_api_types::{JobTypeSpec, ParamSpec, ResourceRules, Resources, SubJobInfo, SubJobKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

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

/// Signed approvals (`[approval]`): with `require_signature`, the agent unpacks a code bundle
/// only when its approval carries an SSH signature that verifies against the agent's own
/// `allowed_signers` file and names this site, `project` and the bundle's digest (see
/// `hpcsera_approval`). Off by default: then the agent trusts the server's word that a
/// bundle is approved (and still checks the digest itself).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    pub require_signature: bool,
    /// An OpenSSH allowed-signers file (`ssh-keygen -Y verify -f`); read again for every
    /// bundle, so editing it takes effect without a restart.
    pub allowed_signers: Option<PathBuf>,
    /// The project of this agent's token. The agent's own statement, not the server's: a
    /// signature must name it.
    pub project: Option<String>,
}

/// A sub-job as configured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// Batch: argv entries for the submit command (e.g. `["--constraint=ssd"]`); they come
    /// after the rendered resources, so they win where both set one option.
    #[serde(default)]
    pub options: Vec<String>,
    /// Batch: resources this sub-job fixes for itself, over the job's (e.g. `{ node_count =
    /// 1, duration = "10m" }` for a post-processing step); see [`Resources::overlay`].
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

fn default_login_timeout() -> u64 {
    600
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobTypeConfig {
    pub name: String,
    pub description: String,
    pub parameters: Vec<ParamSpec>,
    pub sub_jobs: Vec<SubJobConfig>,
    /// The resources a client may set, with bounds, defaults and fixed values
    /// (`[job_types.resources]`).
    pub resources: ResourceRules,
    /// What its provenance manifest records besides the usual (`[job_types.provenance]`).
    pub provenance: JobProvenanceConfig,
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
                    resources: s.resources.clone(),
                })
                .collect(),
            resources: self.resources.canonical(),
        }
    }

    /// Checks a job's resources against this (the agent's own) definition again, as the
    /// server did at submission: a job type whose rules changed since refuses the job.
    pub fn validate_resources(
        &self,
        given: &Resources,
    ) -> Result<Resources, Vec<hpcsera_api_types::FieldError>> {
        self.resources.apply(&given.to_map(), &self.name)
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

    /// SHA-256 (hex) of the job type's whole definition as the agent parsed it: name,
    /// description, parameters, sub-jobs with their commands, scripts and options, and the
    /// provenance settings, serialised as JSON in that order. The manifest names it, and
    /// `hpcsera agent --check` prints it, so a reader can tell which definition ran.
    pub fn definition_digest(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex_lower(&sha2::Sha256::digest(json))
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Where the file was read from (for messages).
    pub path: PathBuf,
    pub server_url: String,
    pub token_file: PathBuf,
    /// A PEM file of CA certificates trusted besides the system's (an internal CA that
    /// signed the server's certificate).
    pub ca_file: Option<PathBuf>,
    pub site: String,
    pub work_dir: PathBuf,
    pub poll: PollConfig,
    pub limits: LimitsConfig,
    pub approval: ApprovalConfig,
    pub batch: BatchConfig,
    pub provenance: ProvenanceConfig,
    pub job_types: Vec<JobTypeConfig>,
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

    pub fn job_type(&self, name: &str) -> Option<&JobTypeConfig> {
        self.job_types.iter().find(|j| j.name == name)
    }

    /// The agent's signing key file (`[provenance] key_file`, default
    /// `<work_dir>/.hpcsera-agent.key`).
    pub fn key_file(&self) -> PathBuf {
        self.provenance
            .key_file
            .clone()
            .unwrap_or_else(|| self.work_dir.join(".hpcsera-agent.key"))
    }

    /// The job types as published to the server.
    pub fn specs(&self) -> Vec<JobTypeSpec> {
        self.job_types.iter().map(JobTypeConfig::spec).collect()
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
