//! Building a job's provenance manifest: an RO-Crate 1.1 metadata document
//! (`ro-crate-metadata.json`) that follows the Process Run Crate profile 0.5.
//!
//! # What it says
//!
//! | entity | `@id` | says |
//! |---|---|---|
//! | metadata descriptor | `ro-crate-metadata.json` | conforms to RO-Crate 1.1 |
//! | root data entity | `./` | `identifier` = the job id; conforms to Process Run Crate 0.5; `hasPart` the result files and code bundles; `mentions` every action |
//! | the job | `urn:uuid:<job id>` (`CreateAction`) | `instrument` the job type, `object` its parameters, resources and code, `result` its result files and exit code, `agent` the submitter, times, `actionStatus`, `error`, the container image; `additionalProperty` host, status, batch system version, the job type's commands |
//! | each sub-job that started | `#subjob-<name>` (`CreateAction`) | `instrument` the sub-job, `result` its exit code (or outcome), `identifier` its batch job id, `additionalProperty` what the batch system reports and `module list` |
//! | the job type | `<server>/api/v1/sites/<site>/jobTypes#<name>` (`SoftwareApplication`) | `softwareVersion` = `sha256:<digest of its definition>`; `softwareRequirements` the agent and the batch system |
//! | result files | `results/<name>` (`File`) | `sha256`, `contentSize`, `encodingFormat` |
//! | code bundles | `#code-<sha256>` (`File`) | `sha256`, `contentSize`, uploader (`author`); its approval an `AuthorizeAction` by the approver |
//! | parameters | `#param-<name>` (`PropertyValue`) | name and value |
//! | resources | `#resource-<name>` (`PropertyValue`, `propertyID` `resource`) | PSI/J name and canonical value (bytes, seconds), in the job's `object` |
//! | people | `#user-<name>` (`Person`) | submitter, uploaders, approvers; `affiliation` the project (`#project-<name>`, `Organization`) |
//! | the site | `#site-<name>` (`Organization`) | the root's `publisher` |
//!
//! Times are UTC as `YYYY-MM-DDTHH:MM:SS.mmm+00:00` (the profile's pattern); single values
//! are not wrapped in arrays (RO-Crate 1.1's compacted form).
//!
//! A pure function of [`RunFacts`]: this module must never do I/O; the caller signs the bytes
//! it returns, unchanged.

use crate::batch::probe::Probe;
use crate::config::JobTypeConfig;
use hpcsera_api_types::{
    CodeBundle, Job, JobStatus, Resources, ResultFile, SubJobKind, SubJobState,
};
use serde_json::{Map, Value};

/// The Process Run Crate profile the manifests conform to.
pub const PROFILE: &str = "https://w3id.org/ro/wfrun/process/0.5";
pub(super) const WFRUN: &str = "https://w3id.org/ro/terms/workflow-run#";

/// The agent that ran the job.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub version: String,
    pub host: String,
    /// The batch adapter (`slurm`, `pbs`, `lsf`, `local`).
    pub batch_system: String,
    /// What the batch system's version command said.
    pub batch_version: Option<Probe>,
}

/// How the job ended, as the agent saw it.
#[derive(Debug, Clone)]
pub struct EndFacts {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub message: String,
    /// When the agent took the job on (Unix ms).
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// One sub-job as it ran.
#[derive(Debug, Clone)]
pub struct SubRun<'a> {
    pub state: &'a SubJobState,
    pub kind: SubJobKind,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// What the batch system reported about its batch job.
    pub report: Option<Probe>,
    /// `module list` as the batch script saw it at its end.
    pub modules: Option<Probe>,
}

/// A code bundle the job ran, as the server describes it (the agent checked its SHA-256
/// itself before unpacking it).
#[derive(Debug, Clone)]
pub struct CodeFacts {
    pub param: String,
    pub bundle: CodeBundle,
}

/// The container image of the job type.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    pub image: String,
    /// `sha256:<hex>`, configured or computed from the image file.
    pub digest: Option<String>,
}

/// Everything a manifest says.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    pub job: &'a Job,
    pub job_type: &'a JobTypeConfig,
    /// The parameters as the agent validated them (defaults filled in).
    pub params: &'a Map<String, Value>,
    /// The resources as the agent validated them (each batch sub-job may fix its own).
    pub resources: &'a Resources,
    /// The server the agent reports to (for the job type's URI).
    pub server_url: &'a str,
    pub agent: AgentFacts,
    pub end: EndFacts,
    pub sub_jobs: Vec<SubRun<'a>>,
    pub code: Vec<CodeFacts>,
    /// The result files the server confirmed, with the digests it computed.
    pub results: Vec<ResultFile>,
    pub container: Option<ContainerFacts>,
    /// The job type's `provenance.commands`, by name.
    pub commands: Vec<(String, Probe)>,
}

/// `YYYY-MM-DDTHH:MM:SS.mmm+00:00` of Unix milliseconds.
pub fn iso_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
