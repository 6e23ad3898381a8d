//! One interface for all batch systems, and the only place in the agent that spawns
//! processes.
//!
//! # Invariant: who spawns processes
//!
//! Every child process of the agent is started in this module, and all through one helper,
//! `spawn::spawn` (environment scrub, process group, stdio, output files created without
//! following links): batch-system commands by the [`command::CommandAdapter`] (through
//! [`exec`]), batch scripts of the local adapter by [`local::LocalAdapter`], and login
//! sub-jobs by [`login::run_login`]. None of them builds
//! shell text from data: commands are argv arrays, placeholders are replaced inside single
//! argv entries, and job parameters reach the processes only as environment variables
//! (`HPCSERA_PARAM_<name>`, see [`crate::env`]). The only shell text ever run is text an
//! administrator wrote in the agent's config (a login sub-job's explicit `shell`, or a batch
//! script) plus the fixed header of [`crate::script`].
//!
//! # The adapters
//!
//! * [`command::CommandAdapter`]: a generic adapter driven by command templates (argv
//!   arrays), an output parser and a state table; presets for `slurm`, `pbs` and `lsf`
//!   ([`BatchPreset`]), each command overridable in the config.
//! * [`local::LocalAdapter`]: runs batch scripts as child processes of the agent, for a
//!   machine without a batch system.
//!
//! [`BatchAdapter::status_all`] asks about all of the agent's jobs with ONE batch-system
//! command (never one per job); [`BatchAdapter::commands_spawned`] counts the commands so
//! tests can prove it.
//!
//! # Finished jobs and their exit codes
//!
//! Batch systems forget finished jobs (Slurm after `MinJobAge`, and with accounting off
//! `sacct` knows nothing). So the agent does not depend on them for exit codes: the batch
//! script it renders ([`crate::script`]) writes its exit status to an *exit file* in the job's
//! work dir when it ends. [`BatchJobRef`] carries that path, and status resolution is:
//!
//! 1. the status query (e.g. one `squeue --states=all --jobs=…`) reports the job: its state
//!    is mapped through the state table; for a terminal state the exit code comes from the
//!    exit file (else from the batch system);
//! 2. the job is absent from the query, and its exit file exists: `Completed` (code 0) or
//!    `Failed` (its code);
//! 3. absent and no exit file: ONE accounting query (`sacct`) for all such jobs, when the
//!    preset has one;
//! 4. still nothing: [`BatchState::Unknown`] (the caller decides when that means lost).

pub mod array;
pub mod command;
pub mod exec;
pub mod granted;
pub mod local;
pub mod login;
pub mod parse;
pub mod presets;
pub mod probe;
pub mod resources;
pub(crate) mod spawn;
mod template;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use command::CommandAdapter;
pub use local::LocalAdapter;

/// A boxed future, so that [`BatchAdapter`] can be used as `dyn BatchAdapter`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which batch system (`[batch] preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchPreset {
    Slurm,
    Pbs,
    Lsf,
    /// Batch scripts run as local child processes.
    #[default]
    Local,
}

impl BatchPreset {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchPreset::Slurm => "slurm",
            BatchPreset::Pbs => "pbs",
            BatchPreset::Lsf => "lsf",
            BatchPreset::Local => "local",
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
    /// What the batch system says about one finished batch job (`{id}`), recorded in the
    /// provenance manifest. An empty array disables it.
    pub report: Option<Vec<String>>,
    /// The batch system's version, recorded in the provenance manifest. An empty array
    /// disables it.
    pub version: Option<Vec<String>>,
    /// Extra argv entries given to every submit (e.g. `["--qos=normal"]`), after the
    /// rendered resources and before the sub-job's `options`.
    pub submit_options: Vec<String>,
    /// Overrides of the preset's mapping of resources to submit options, per resource (an
    /// argv array with `{value}`, `{mib}`, `{mib_per_node}`, `{minutes}`, `{hms}`,
    /// `{d_hms}`; empty: not rendered). See [`resources`].
    pub resources: resources::ResourceTemplates,
    /// Overrides of the state table: raw batch-system state → one of `pending`, `held`,
    /// `running`, `completed`, `failed`, `cancelled`, `unknown`.
    pub states: BTreeMap<String, String>,
    /// Timeout for one batch-system command, in seconds.
    pub command_timeout_seconds: Option<u64>,
    /// Submit the members of a sweep as job arrays (default true; presets without arrays,
    /// such as `local`, submit members one by one whatever this says).
    pub arrays: Option<bool>,
    /// Most tasks of one array (default 1000): a larger group is submitted as several arrays.
    pub array_size: Option<u32>,
    /// At most this many tasks of one array run at once (Slurm `%M`, PBS `%M`, LSF `%M`);
    /// unset: no limit.
    pub array_throttle: Option<u32>,
}

/// Default of `[batch] array_size`.
pub const DEFAULT_ARRAY_SIZE: u32 = 1000;

/// What to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRequest {
    /// The rendered batch script ([`crate::script::render_batch_script`]).
    pub script_path: PathBuf,
    /// The job's work dir; the job runs there.
    pub work_dir: PathBuf,
    /// Batch job name; carries the hpcsera job id ([`crate::env::batch_job_name`]) so that a
    /// restarted agent can find the job again.
    pub job_name: String,
    /// Environment for the job (`HPCSERA_*`), passed through the submit command's environment.
    pub env: Vec<(String, String)>,
    /// What the batch job asks for (the job's resources with the sub-job's own on top),
    /// rendered by the adapter as submit options before the config's `submit_options`.
    pub resources: hpcsera_api_types::Resources,
    /// The sub-job's own options (argv entries for the submit command); the adapter puts
    /// the config's `submit_options` before them.
    pub options: Vec<String>,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

/// A batch job the agent tracks: its id and where its script leaves the exit code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchJobRef {
    pub id: String,
    /// The exit file written by the rendered script ([`crate::script::exit_file_path`]).
    pub exit_file: Option<PathBuf>,
}

impl BatchJobRef {
    pub fn new(id: impl Into<String>, exit_file: Option<PathBuf>) -> Self {
        BatchJobRef {
            id: id.into(),
            exit_file,
        }
    }
}

/// The state of a batch job, as the agent understands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BatchState {
    Pending,
    Held,
    Running,
    Completed {
        exit_code: i32,
    },
    Failed {
        exit_code: Option<i32>,
        reason: String,
    },
    Cancelled,
    /// The batch system no longer knows the job and it left no exit code.
    Unknown,
}

impl BatchState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BatchState::Completed { .. } | BatchState::Failed { .. } | BatchState::Cancelled
        )
    }
}

/// The class a raw batch-system state maps to (the state table's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClass {
    Pending,
    Held,
    Running,
    Completed,
    Failed,
    Cancelled,
    Unknown,
}

impl StateClass {
    pub fn parse(s: &str) -> Option<StateClass> {
        Some(match s.to_ascii_lowercase().as_str() {
            "pending" => StateClass::Pending,
            "held" => StateClass::Held,
            "running" => StateClass::Running,
            "completed" => StateClass::Completed,
            "failed" => StateClass::Failed,
            "cancelled" | "canceled" => StateClass::Cancelled,
            "unknown" => StateClass::Unknown,
            _ => return None,
        })
    }
}

/// Why a batch operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {seconds} s and was killed")]
    Timeout { command: String, seconds: u64 },
    #[error("cannot understand the output of `{command}`: {message} (output: {excerpt:?})")]
    Parse {
        command: String,
        message: String,
        excerpt: String,
    },
    #[error("the {adapter} batch adapter does not support {operation}")]
    Unsupported {
        adapter: String,
        operation: &'static str,
    },
    #[error("batch job {id} is not known")]
    NotFound { id: String },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl BatchError {
    /// The `map_err` for a file-system call on `path`: `BatchError::Io` with `context`.
    pub(crate) fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| BatchError::Io {
            context,
            path,
            source,
        }
    }
}

/// One interface for every batch system. Object safe: use `Arc<dyn BatchAdapter>`.
pub trait BatchAdapter: Send + Sync {
    /// `slurm`, `pbs`, `lsf`, `local`.
    fn name(&self) -> &str;

    /// Submits a rendered script; returns the batch system's id for it.
    fn submit<'a>(&'a self, req: &'a SubmitRequest) -> BoxFuture<'a, Result<String, BatchError>>;

    /// The state of all the given jobs with ONE batch-system command (never one per job);
    /// plus at most one accounting query for jobs that vanished without an exit file.
    /// Every given id is in the answer (possibly as [`BatchState::Unknown`]).
    fn status_all<'a>(
        &'a self,
        jobs: &'a [BatchJobRef],
    ) -> BoxFuture<'a, Result<HashMap<String, BatchState>, BatchError>>;

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>>;

    fn hold<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>>;

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>>;

    /// Whether [`BatchAdapter::submit_array`] works; when not, sweep members are submitted
    /// one by one.
    fn supports_arrays(&self) -> bool {
        false
    }

    /// Submits a job array (see [`array`]); returns each member's task id, in order.
    fn submit_array<'a>(
        &'a self,
        _req: &'a array::ArrayRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, BatchError>> {
        Box::pin(async move {
            Err(BatchError::Unsupported {
                adapter: self.name().to_string(),
                operation: "job arrays",
            })
        })
    }

    /// The id of task `index` of the array that a find query showed as `found` (restart
    /// reconciliation of an array submitted before a crash).
    fn array_task_id(&self, found: &str, _index: u32) -> String {
        found.to_string()
    }

    /// For restart reconciliation: the batch jobs whose job name is one of `job_names`
    /// (job name → batch id), in one query.
    fn find_by_name<'a>(
        &'a self,
        job_names: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, BatchError>>;

    /// How many batch-system commands this adapter has spawned so far.
    fn commands_spawned(&self) -> u64;

    /// A signal the adapter fires when one of the batch jobs it started ends, for adapters
    /// that learn of a job's end as it happens and whose [`Self::status_all`] spawns no
    /// command (the local adapter: its jobs are child processes). The agent then moves the
    /// job on at once instead of at its next cycle. `None` (the default, every adapter that
    /// asks a batch system): the end is learnt from the cycle's one status query.
    fn end_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// What the batch system granted batch job `id`, as the last [`Self::status_all`] saw
    /// it (no command of its own); `None` when it said nothing or the adapter cannot tell.
    fn granted(&self, _id: &str) -> Option<hpcsera_api_types::GrantedResources> {
        None
    }

    /// What the batch system says about batch job `id` (the preset's `report` command), for
    /// the provenance manifest; `None` when the adapter has no such command.
    fn report<'a>(
        &'a self,
        _id: &'a str,
        _limits: probe::ProbeLimits,
    ) -> BoxFuture<'a, Option<probe::Probe>> {
        Box::pin(async { None })
    }

    /// The batch system's version (the preset's `version` command), for the provenance
    /// manifest; `None` when the adapter has no such command.
    fn version(&self, _limits: probe::ProbeLimits) -> BoxFuture<'_, Option<probe::Probe>> {
        Box::pin(async { None })
    }
}

/// Builds the adapter the config asks for. `state_dir` is where the local adapter keeps its
/// per-job state files (e.g. `<work_dir>/.local-batch`).
pub fn adapter_from_config(
    cfg: &BatchConfig,
    state_dir: impl Into<PathBuf>,
) -> Result<std::sync::Arc<dyn BatchAdapter>, BatchError> {
    Ok(match cfg.preset {
        BatchPreset::Local => std::sync::Arc::new(LocalAdapter::new(state_dir)?),
        _ => std::sync::Arc::new(CommandAdapter::from_config(cfg)?),
    })
}
