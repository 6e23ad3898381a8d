//! Request and response bodies of the REST API (JSON, camelCase).

use crate::jobtype::{FieldError, JobTypeSpec};
use crate::role::Role;
use crate::status::{JobStatus, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Every error reply: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable, machine-readable code such as `validation_failed`, `not_found`, `conflict`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// For validation errors: each bad field and its problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// The request id (also in the `x-request-id` header), for reports to operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Body of `POST /job`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewJob {
    /// The site that should run the job.
    pub site: String,
    /// A job type the site publishes.
    pub job_type: String,
    /// Parameter values, checked against the job type.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// Free-form JSON the client wants kept with the job (at most 16 KiB), returned verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    /// URL the server calls on every status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubJobState {
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A job.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// A held job is not handed to an agent (or is held in the batch system) until released.
    pub held: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_operation: Option<PendingOperation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the job is in its status (e.g. the reason it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub sub_jobs: Vec<SubJobState>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// One page of jobs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Body of `PUT /job/updateByOperation/{jobId}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationRequest {
    pub operation: Operation,
}

/// Body of `PUT /job/{jobId}`. A client (role `UPDATE_Job`) changes `parameters`,
/// `metadata` or `callbackUrl` of a job no agent has claimed yet; an agent (role
/// `UPDATE_JobStatus`) reports `status` and what goes with it. One request does one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_jobs: Option<Vec<SubJobState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    }
    /// Whether this changes what the client submitted.
    pub fn is_client_change(&self) -> bool {
        self.parameters.is_some() || self.metadata.is_some() || self.callback_url.is_some()
    }
}

/// One entry of a job's event log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    /// Increasing sequence number, usable as a resume cursor.
    pub seq: i64,
    pub job_id: String,
    pub at: String,
    /// `created`, `status`, `operation_requested`, `operation_done`, `updated`, `deleted`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_status: Option<JobStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_status: Option<JobStatus>,
    /// Who caused it: `user:NAME` (through a token), `agent:NAME`, `server`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEventList {
    pub events: Vec<JobEvent>,
}

/// What `GET /tokens/self` tells a token holder.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSelf {
    pub token_id: String,
    pub name: String,
    pub user: String,
    pub project: String,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub created_at: String,
}

/// A site (an agent deployment) and its health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    pub name: String,
    /// When an agent of the site last talked to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_host: Option<String>,
    pub job_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteList {
    pub sites: Vec<Site>,
}

/// Body of `PUT /sites/{site}/jobTypes`: the complete set of job types a site offers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishJobTypes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_host: Option<String>,
    pub job_types: Vec<JobTypeSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeList {
    pub site: String,
    pub job_types: Vec<JobTypeSpec>,
}
