//! Request and response bodies of the REST API (JSON, camelCase).

use crate::jobtype::JobTypeSpec;
use crate::kinds::{Actor, DeliveryStatus, EventKind, SubJobStatus};
use crate::resources::{GrantedResources, Resources};
use crate::role::Role;
use crate::status::{JobStatus, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Body of `POST /job`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewJob {
    /// The site that should run the job.
    pub site: String,
    /// A job type the site publishes.
    pub job_type: String,
    /// Parameter values, checked against the job type (at most 64 KiB as JSON, defaults
    /// filled in).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// What to ask of the batch system, by PSI/J name (`node_count`, `process_count`,
    /// `processes_per_node`, `cpu_cores_per_process`, `gpu_cores_per_process`, `memory`,
    /// `duration`, `queue_name`, `account`, `reservation_id`), within the job type's
    /// `resources` rules (defaults and fixed values filled in). Counts are whole numbers;
    /// `memory` is bytes or a string with a unit (`"4G"`, powers of 1024); `duration` is
    /// seconds or a string (`"1h30m"`, `"90m"`, `"HH:MM:SS"`, `"D-HH:MM:SS"`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub resources: Map<String, Value>,
    /// Free-form JSON the client wants kept with the job (at most 16 KiB), returned verbatim.
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    /// URL the server calls on every status change.
    pub callback_url: Option<String>,
}

/// An operation requested on a job and not yet carried out by the agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingOperation {
    pub operation: Operation,
    pub requested_at: String,
    pub requested_by: String,
}

/// State of one sub-job as the agent reports it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubJobState {
    pub name: String,
    pub status: SubJobStatus,
    pub batch_job_id: Option<String>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    /// What the batch system granted this sub-job's batch job.
    pub granted_resources: Option<GrantedResources>,
}

/// A job.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub project: String,
    pub site: String,
    pub job_type: String,
    /// The user whose token submitted the job.
    pub owner: String,
    pub status: JobStatus,
    /// Parameters as validated, with defaults filled in.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// What the job asks of the batch system, as validated, with the job type's defaults
    /// and fixed values filled in: memory in bytes, duration in seconds. A batch sub-job may
    /// fix its own (see the job type's `subJobs`).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// What the batch system granted the job's latest batch job, as the agent reported it.
    pub granted_resources: Option<GrantedResources>,
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    pub callback_url: Option<String>,
    /// A held job is not handed to an agent (or is held in the batch system) until released.
    pub held: bool,
    pub pending_operation: Option<PendingOperation>,
    pub batch_job_id: Option<String>,
    pub exit_code: Option<i32>,
    /// Why the job is in its status (e.g. the reason it failed).
    pub message: Option<String>,
    #[serde(default)]
    pub sub_jobs: Vec<SubJobState>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// How many bytes of each output stream the server has: where a restarted agent resumes.
    #[serde(default)]
    pub output_bytes: OutputBytes,
    /// The sweep this job is a member of (`POST /sweeps`).
    pub sweep: Option<String>,
    /// The job's index in its sweep (0-based).
    pub sweep_index: Option<u32>,
}

/// Lengths of a job's output streams as stored by the server.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutputBytes {
    pub stdout: u64,
    pub stderr: u64,
}

/// One page of jobs.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `PUT /job/updateByOperation/{jobId}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationRequest {
    pub operation: Operation,
}

/// Body of `PUT /job/{jobId}`. A client (role `UPDATE_Job`) changes `parameters`,
/// `resources`, `metadata` or `callbackUrl` of a job no agent has claimed yet; an agent (role
/// `UPDATE_JobStatus`) reports `status` and what goes with it. One request does one of the two.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobUpdate {
    pub status: Option<JobStatus>,
    pub exit_code: Option<i32>,
    pub batch_job_id: Option<String>,
    pub message: Option<String>,
    pub sub_jobs: Option<Vec<SubJobState>>,
    /// What the batch system granted the job's current batch job (agent).
    pub granted_resources: Option<GrantedResources>,
    /// New parameter values (at most 64 KiB as JSON, defaults filled in).
    #[schema(value_type = Object)]
    pub parameters: Option<Map<String, Value>>,
    /// New resources, replacing the job's (checked as at submission).
    #[schema(value_type = Option<Object>)]
    pub resources: Option<Map<String, Value>>,
    /// New metadata (at most 16 KiB as JSON).
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    pub callback_url: Option<String>,
}

impl JobUpdate {
    /// Whether this is an agent's status report (as opposed to a client's change).
    pub fn is_status_report(&self) -> bool {
        self.status.is_some()
            || self.exit_code.is_some()
            || self.batch_job_id.is_some()
            || self.message.is_some()
            || self.sub_jobs.is_some()
            || self.granted_resources.is_some()
    }
    /// Whether this changes what the client submitted.
    pub fn is_client_change(&self) -> bool {
        self.parameters.is_some()
            || self.resources.is_some()
            || self.metadata.is_some()
            || self.callback_url.is_some()
    }
}

/// One entry of a job's event log.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    /// Increasing sequence number, usable as a resume cursor.
    pub seq: i64,
    pub job_id: String,
    pub at: String,
    pub kind: EventKind,
    pub from_status: Option<JobStatus>,
    pub to_status: Option<JobStatus>,
    pub actor: Actor,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEventList {
    pub events: Vec<JobEvent>,
}

/// What `GET /tokens/self` tells a token holder.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSelf {
    pub token_id: String,
    pub name: String,
    pub user: String,
    pub project: String,
    pub roles: Vec<Role>,
    pub site: Option<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
}

/// A token as `GET /tokens` lists it (never its secret).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub token_id: String,
    pub name: String,
    pub user: String,
    pub project: String,
    pub roles: Vec<Role>,
    pub site: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The tokens of the calling token's user in its project, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// A site (an agent deployment) and its health.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    pub name: String,
    /// When an agent of the site last talked to the server.
    pub last_seen_at: Option<String>,
    pub agent_version: Option<String>,
    pub agent_host: Option<String>,
    /// The public key (`ed25519:…`) the project's agent published: what it signs provenance
    /// with. Get the key you trust from the agent's operator (`hpcsera agent --show-key`).
    pub agent_key: Option<String>,
    pub job_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteList {
    pub sites: Vec<Site>,
}

/// Body of `PUT /sites/{site}/jobTypes`: the complete set of job types a site offers.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishJobTypes {
    pub agent_version: Option<String>,
    pub agent_host: Option<String>,
    /// The agent's public signing key (`ed25519:…`), shown to clients with the site.
    pub agent_key: Option<String>,
    pub job_types: Vec<JobTypeSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeList {
    pub site: String,
    pub job_types: Vec<JobTypeSpec>,
}

/// Body of `POST /agent/poll`: the agent's one call per cycle. It renews the leases of the
/// jobs the agent holds, confirms fresh claims, and waits (long-poll) until there is a job to
/// claim or an operation to carry out, or `waitSeconds` pass.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentPoll {
    /// Jobs the agent is working on; their leases are renewed and their claims confirmed.
    #[serde(default)]
    pub active_job_ids: Vec<String>,
    /// How many new jobs the agent takes now (0: none, only operations and lease renewal).
    #[serde(default)]
    pub max_jobs: u32,
    /// How long to wait for work, at most 60 seconds (0: answer at once).
    #[serde(default)]
    pub wait_seconds: u32,
    pub agent_version: Option<String>,
}

/// An operation for the agent to carry out on a job it holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentOperation {
    pub job_id: String,
    pub operation: Operation,
}

/// Reply to `POST /agent/poll`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPollReply {
    /// Newly claimed jobs (now `dispatched`). The agent confirms each claim with its next
    /// poll (listing it in `activeJobIds`) or a status report before it runs anything; an
    /// unconfirmed claim is offered again when its lease runs out.
    pub jobs: Vec<Job>,
    pub operations: Vec<AgentOperation>,
    /// Of the `activeJobIds`, those the agent no longer holds (ended, lost, or another
    /// agent's); the agent stops working on them.
    pub released_job_ids: Vec<String>,
    /// Seconds a lease lasts from now; poll well within it.
    pub lease_seconds: u64,
    /// Code bundles awaiting approval that jobs of this agent's site reference: the agent
    /// downloads each, computes its SHA-256 itself and reports it
    /// (`POST /code/{codeId}/hpcDigest`), keeping the bytes in quarantine (never unpacked).
    #[serde(default)]
    pub code_to_verify: Vec<String>,
}

/// Body of `POST /agent/jobs/{jobId}/operationDone`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationDone {
    pub operation: Operation,
    /// Whether the batch system carried it out.
    pub ok: bool,
    pub message: Option<String>,
}

/// Body of `POST /agent/jobs/{jobId}/cleanup`: what the agent did about a job the server
/// made `lost` while the agent was away.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentCleanup {
    /// At most 4096 bytes.
    pub message: String,
}

/// Output streams of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

impl std::str::FromStr for OutputStream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(OutputStream::Stdout),
            "stderr" => Ok(OutputStream::Stderr),
            _ => Err(format!("unknown stream {s:?}; streams are stdout, stderr")),
        }
    }
}

/// A result file of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultList {
    pub results: Vec<ResultFile>,
}

/// Whether `name` is an acceptable result file name: relative, `/`-separated segments of
/// letters, digits, `.`, `_`, `-`, no `.`/`..` segments, at most 255 bytes.
pub fn is_valid_result_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// One webhook delivery: a status change of a job POSTed to its `callbackUrl`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub id: i64,
    /// The event delivered (its `seq`).
    pub event_seq: i64,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryList {
    pub deliveries: Vec<WebhookDelivery>,
}

/// The body of a webhook POST. Headers: `X-Hpcsera-Timestamp` (Unix seconds),
/// `X-Hpcsera-Signature: sha256=HEX` = HMAC-SHA256 with the project's webhook secret over
/// `TIMESTAMP + "." + BODY`, `X-Hpcsera-Delivery` (the delivery id).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    pub delivery_id: i64,
    pub project: String,
    pub event: JobEvent,
    /// The job as it is when the delivery is made.
    pub job: Job,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names() {
        for ok in ["a.txt", "out/summary.csv", "x/y/z-1_2.tar.gz", ".hidden"] {
            assert!(is_valid_result_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            ".",
            "a//b",
            "a/",
            "sp ace",
            "a\\b",
            "ü",
            &"a".repeat(256),
        ] {
            assert!(!is_valid_result_name(bad), "{bad:?}");
        }
    }
}

/// Where a code bundle stands: uploaded and waiting for its owner, or decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CodeStatus {
    PendingApproval,
    Approved,
    Rejected,
}

impl CodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeStatus::PendingApproval => "pending_approval",
            CodeStatus::Approved => "approved",
            CodeStatus::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for CodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CodeStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending_approval" => Ok(CodeStatus::PendingApproval),
            "approved" => Ok(CodeStatus::Approved),
            "rejected" => Ok(CodeStatus::Rejected),
            other => Err(format!("unknown code bundle status {other:?}")),
        }
    }
}

/// A code bundle of a project: a tar.gz, content-addressed by its SHA-256. The approval view
/// shows the client-side digest (the id) and the digest the site's agent computed side by side;
/// approval binds that exact digest.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CodeBundle {
    /// SHA-256 of the uploaded bytes (64 lower-case hex digits), as the server computed it.
    pub id: String,
    pub project: String,
    pub size: i64,
    pub status: CodeStatus,
    pub uploaded_by: String,
    pub created_at: String,
    /// SHA-256 the agent computed on the HPC side, once reported.
    pub hpc_sha256: Option<String>,
    pub hpc_reported_at: Option<String>,
    /// Whether the HPC-side digest is known and equal to the id.
    pub digests_match: bool,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    /// The signed approval, when the approval was signed (what an agent with
    /// `require_signature` checks against its own allowed signers; `decidedBy` is the signer).
    pub approval: Option<crate::signed::SignedApproval>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeBundleList {
    pub bundles: Vec<CodeBundle>,
}

/// Body of `POST /code/{codeId}/hpcDigest`: the SHA-256 the agent computed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpcDigest {
    pub sha256: String,
}
