//! The sweep resource: submit (`submit.rs`), list, get (with counts by status), members (a
//! page in index order), events (long-polled), an operation on every member, delete.
//!
//! Roles are the job roles: `POST_Job` submits, `GET_JobStatus` reads, `UPDATE_Job` operates,
//! `DELETE_Job` deletes. Another project's sweep, or one at a site the token may not use, is
//! 404. Handlers call the store, which decides every member's change through the job state
//! machine; nothing here writes SQL or a status.

mod submit;

use super::events::{event_query, read_events, EventQuery};
use super::query::{decode_cursor, encode_cursor, pairs, parse_limit, push_statuses};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller, SweepId};
use crate::routes::jobs::narrow_to_token_site;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use hpcsera_api_types::{
    is_valid_name, ErrorBody, JobEventList, JobList, OperationRequest, Role, Sweep, SweepList,
    SweepOperationResult,
};

pub use submit::*;

/// Reads a sweep and hides it (404) when the token's site restriction excludes it.
async fn visible_sweep(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Sweep> {
    let sweep = st.store.get_sweep(caller.0.project_id, id).await?;
    if !caller.may_use_site(&sweep.site) {
        return Err(ApiError::NotFound("sweep not found".into()));
    }
    Ok(sweep)
}

/// List the project's sweeps, newest first, each with its counts; `nextCursor` continues.
#[utoipa::path(get, path = "/api/v1/sweeps", tag = "sweeps",
    params(("site" = Option<String>, Query, description = "only sweeps of this site"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = SweepList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_sweeps(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<SweepList>> {
    caller.require(Role::GetJobStatus)?;
    let (mut site, mut limit, mut before) = (None, 100, None);
    for (k, v) in pairs(&q)? {
        match k.as_str() {
            "site" if !is_valid_name(&v, true) => {
                return Err(ApiError::bad_field("site", "is not a valid name"))
            }
            "site" => site = Some(v),
            "limit" => limit = parse_limit(&v)?,
            "cursor" => before = Some(decode_cursor('w', &v).ok_or_else(bad_cursor)?),
            other => return Err(ApiError::bad_field(other, "is not a known query parameter")),
        }
    }
    narrow_to_token_site(&caller, &mut site)?;
    let (sweeps, next) = st
        .store
        .list_sweeps(caller.0.project_id, site.as_deref(), before, limit)
        .await?;
    Ok(Json(SweepList {
        sweeps,
        next_cursor: next.map(|s| encode_cursor('w', s)),
    }))
}

fn bad_cursor() -> ApiError {
    ApiError::bad_field("cursor", "is not a cursor this server handed out")
}

/// A sweep with its members' counts by status (`counts.byStatus`, `ended`, `unsuccessful`).
#[utoipa::path(get, path = "/api/v1/sweeps/{sweepId}", tag = "sweeps",
    params(("sweepId" = String, Path, description = "sweep id (UUID)")),
    responses((status = 200, body = Sweep), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_sweep(
    State(st): State<AppState>,
    caller: Caller,
    id: SweepId,
) -> ApiResult<Json<Sweep>> {
    caller.require(Role::GetJobStatus)?;
    Ok(Json(visible_sweep(&st, &caller, &id).await?))
}

/// A page of the sweep's members (ordinary jobs with `sweep` and `sweepIndex`) in index
/// order, optionally only in some statuses; `nextCursor` continues.
#[utoipa::path(get, path = "/api/v1/sweeps/{sweepId}/jobs", tag = "sweeps",
    params(("sweepId" = String, Path, description = "sweep id (UUID)"),
        ("status" = Option<String>, Query, description = "one or more statuses, comma-separated or repeated"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sweep_jobs(
    State(st): State<AppState>,
    caller: Caller,
    id: SweepId,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobList>> {
    caller.require(Role::GetJobStatus)?;
    let (mut statuses, mut limit, mut after) = (Vec::new(), 100, None);
    for (k, v) in pairs(&q)? {
        match k.as_str() {
            "status" => push_statuses(&v, &mut statuses)?,
            "limit" => limit = parse_limit(&v)?,
            "cursor" => after = Some(decode_cursor('m', &v).ok_or_else(bad_cursor)?),
            other => return Err(ApiError::bad_field(other, "is not a known query parameter")),
        }
    }
    visible_sweep(&st, &caller, &id).await?;
    let (jobs, next) = st
        .store
        .sweep_jobs(caller.0.project_id, &id, &statuses, after, limit)
        .await?;
    Ok(Json(JobList {
        jobs,
        next_cursor: next.map(|i| encode_cursor('m', i)),
    }))
}

/// The events of all the sweep's members, oldest first; `after` continues, `wait` (seconds,
/// at most 60) long-polls for the next one, so a client following a sweep does not busy-poll.
#[utoipa::path(get, path = "/api/v1/sweeps/{sweepId}/events", tag = "sweeps",
    params(("sweepId" = String, Path, description = "sweep id (UUID)"), EventQuery),
    responses((status = 200, body = JobEventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sweep_events(
    State(st): State<AppState>,
    caller: Caller,
    id: SweepId,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobEventList>> {
    caller.require(Role::GetJobStatus)?;
    let (f, wait) = event_query(&q)?;
    visible_sweep(&st, &caller, &id).await?;
    let project = caller.0.project_id;
    let events = read_events(&st, wait, || {
        st.store.sweep_events(project, &id, f.after_seq, f.limit)
    })
    .await?;
    Ok(Json(JobEventList { events }))
}

/// Request an operation (`cancel`, `hold`, `release`) on every member, in one transaction:
/// members no agent holds are changed at once, members an agent holds get it as their
/// pending operation, ended members are skipped. The answer counts each.
#[utoipa::path(put, path = "/api/v1/sweeps/{sweepId}/operation", tag = "sweeps",
    params(("sweepId" = String, Path, description = "sweep id (UUID)")),
    request_body = OperationRequest,
    responses((status = 200, body = SweepOperationResult), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn operate_sweep(
    State(st): State<AppState>,
    caller: Caller,
    id: SweepId,
    ApiJson(body): ApiJson<OperationRequest>,
) -> ApiResult<Json<SweepOperationResult>> {
    caller.require(Role::UpdateJob)?;
    visible_sweep(&st, &caller, &id).await?;
    let counts = st
        .store
        .operate_sweep(
            caller.0.project_id,
            &id,
            body.operation,
            &caller.user_actor(),
        )
        .await?;
    st.wake_agents();
    st.events_written();
    Ok(Json(SweepOperationResult {
        operation: body.operation,
        done: counts.done,
        handed_to_agent: counts.handed_to_agent,
        skipped: counts.skipped,
        sweep: visible_sweep(&st, &caller, &id).await?,
    }))
}

/// Delete a sweep: members no agent holds are removed at once, members an agent holds are
/// cancelled and removed when they end; the sweep is gone at once. 204 when nothing was
/// running, 202 when some members still end.
#[utoipa::path(delete, path = "/api/v1/sweeps/{sweepId}", tag = "sweeps",
    params(("sweepId" = String, Path, description = "sweep id (UUID)")),
    responses((status = 204, description = "deleted"), (status = 202, description = "deleted; running members are cancelled and removed when they end"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_sweep(
    State(st): State<AppState>,
    caller: Caller,
    id: SweepId,
) -> ApiResult<StatusCode> {
    caller.require(Role::DeleteJob)?;
    visible_sweep(&st, &caller, &id).await?;
    let pending = st
        .store
        .delete_sweep(caller.0.project_id, &id, &caller.user_actor())
        .await?;
    st.wake_agents();
    st.events_written();
    Ok(if pending > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NO_CONTENT
    })
}
