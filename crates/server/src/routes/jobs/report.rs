//! The agent half of `PUT /job/{jobId}`: a status report (`status`, `exitCode`,
//! `batchJobId`, `message`, `subJobs`,
//! `grantedResources`) by the agent token that holds the job.
//!
//! Checks sizes here; the store checks that this agent holds the job and asks the state
//! machine about the transition (illegal ones are 409). Never changes a client's fields.

use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, JobId};
use crate::state::AppState;
use axum::Json;
use hpcsera_api_types::{FieldError, Job, JobUpdate};
use hpcsera_store::StatusReport;

/// Most bytes of a queue, account or reservation name in `grantedResources`.
const MAX_GRANTED_TEXT_BYTES: usize = 256;

/// Most bytes of a report's `message`.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The agent half of `PUT /job/{id}`: a report by the agent token that holds the job.
pub(super) async fn report_status(
    st: AppState,
    agent: AgentCaller,
    id: JobId,
    body: JobUpdate,
) -> ApiResult<Json<Job>> {
    let mut errs = Vec::new();
    for (field, v, max) in [
        ("message", &body.message, MAX_MESSAGE_BYTES),
        ("batchJobId", &body.batch_job_id, 200),
    ] {
        match v {
            Some(v) if v.len() > max => errs.push(FieldError::new(
                field,
                format!("is longer than {max} bytes"),
            )),
            Some(v) if v.contains('\0') => {
                errs.push(FieldError::new(field, "contains a NUL character"))
            }
            _ => {}
        }
    }
    if let Some(g) = &body.granted_resources {
        if !g.texts_fit(MAX_GRANTED_TEXT_BYTES) {
            errs.push(FieldError::new(
                "grantedResources",
                format!("names must be at most {MAX_GRANTED_TEXT_BYTES} bytes without control characters"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    let rep = StatusReport {
        status: body.status,
        exit_code: body.exit_code,
        batch_job_id: body.batch_job_id,
        message: body.message,
        sub_jobs: body.sub_jobs,
        granted_resources: body.granted_resources,
    };
    let job = st
        .store
        .report_status(
            &agent.agent_ref(),
            &id,
            hpcsera_store::now_ms() + st.config.leases.lease_seconds as i64 * 1000,
            &agent.actor(),
            &rep,
        )
        .await?;
    st.events_written();
    Ok(Json(job))
}
