//! The job resource: submit, list, get, change (a client's change or an agent's report),
//! operations, delete.
//!
//! Handlers check the caller's role and site, validate the body and call the store; the
//! store decides status changes (through the state machine) and scopes every query by the
//! token's project. Nothing here writes SQL or changes a status by itself.

mod change;
pub(crate) mod checks;
mod list;
mod report;
mod submit;
mod visible;

use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiJson, Caller, JobId};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::{ErrorBody, Job, JobUpdate, Operation, OperationRequest, Role};
use hpcsera_store::StoreError;

pub use list::*;
pub use submit::*;
pub(crate) use visible::{narrow_to_token_site, visible_job};

/// A job: status, parameters, what happened. `GET_JobStatus` (clients) or `GET_Job` (agents).
#[utoipa::path(get, path = "/api/v1/job/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_job(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
) -> ApiResult<Json<Job>> {
    caller.require_any(&[Role::GetJobStatus, Role::GetJob])?;
    Ok(Json(visible_job(&st, &caller, &id).await?))
}

/// Change a job. A client (`UPDATE_Job`) changes `parameters`, `metadata` or `callbackUrl`
/// of a job no agent has claimed yet; an agent (`UPDATE_JobStatus`) reports `status`,
/// `exitCode`, `batchJobId`, `message`, `subJobs`. Illegal status transitions are 409.
#[utoipa::path(put, path = "/api/v1/job/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    request_body = JobUpdate,
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_job(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
    ApiJson(body): ApiJson<JobUpdate>,
) -> ApiResult<Json<Job>> {
    if body.is_status_report() {
        caller.require(Role::UpdateJobStatus)?;
        if body.is_client_change() {
            return Err(both_error());
        }
        return report::report_status(st, AgentCaller::from_caller(caller)?, id, body).await;
    }
    caller.require(Role::UpdateJob)?;
    change::change_job(st, caller, id, body).await
}

fn both_error() -> ApiError {
    ApiError::invalid_field(
        "body",
        "a request either reports status (status, exitCode, batchJobId, message, subJobs) or changes the job (parameters, metadata, callbackUrl), not both",
    )
}

/// Request an operation: `cancel`, `hold` or `release`. A job no agent holds yet is
/// cancelled, held or released at once (200); otherwise the operation is recorded and
/// handed to the agent with its next poll (202).
#[utoipa::path(put, path = "/api/v1/job/updateByOperation/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    request_body = OperationRequest,
    responses((status = 200, body = Job, description = "done"), (status = 202, body = Job, description = "handed to the agent"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_by_operation(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
    ApiJson(body): ApiJson<OperationRequest>,
) -> ApiResult<Response> {
    caller.require(Role::UpdateJob)?;
    visible_job(&st, &caller, &id).await?;
    let job = operate(
        &st,
        caller.0.project_id,
        &id,
        body.operation,
        &caller.user_actor(),
    )
    .await?;
    let status = if job.pending_operation.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(job)).into_response())
}

/// Delete a job. A job an agent holds is cancelled first and removed when it has ended
/// (202); any other job is removed at once (204).
#[utoipa::path(delete, path = "/api/v1/job/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    responses((status = 204, description = "deleted"), (status = 202, description = "cancel requested; removed when it ends"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_job(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
) -> ApiResult<StatusCode> {
    caller.require(Role::DeleteJob)?;
    visible_job(&st, &caller, &id).await?;
    let pending = remove(&st, caller.0.project_id, &id, &caller.user_actor()).await?;
    Ok(if pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Requests an operation on a job of the project and wakes whoever waits for it: the agent
/// that holds the job (its next poll hands the operation over) and the event readers. The one
/// path of `PUT /job/updateByOperation/{jobId}` and the web UI's buttons.
pub(crate) async fn operate(
    st: &AppState,
    project_id: i64,
    id: &str,
    op: Operation,
    actor: &str,
) -> Result<Job, StoreError> {
    let job = st
        .store
        .request_operation(project_id, id, op, actor)
        .await?;
    st.wake_agents();
    st.events_written();
    Ok(job)
}

/// Deletes a job of the project (see `Store::delete_job`) and wakes the event readers, and the
/// agent when it must cancel the job first (then `true`). The one path of
/// `DELETE /job/{jobId}` and the web UI's delete button.
pub(crate) async fn remove(
    st: &AppState,
    project_id: i64,
    id: &str,
    actor: &str,
) -> Result<bool, StoreError> {
    let pending = st.store.delete_job(project_id, id, actor).await?;
    st.events_written();
    if pending {
        st.wake_agents();
    }
    Ok(pending)
}
