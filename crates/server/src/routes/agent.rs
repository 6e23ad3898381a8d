use crate::error::{ApiError, ApiResult};
use crate::extract::{job_id, AgentCaller, ApiBytes, ApiJson, Caller};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::{
    is_valid_result_name, AgentCleanup, AgentOperation, AgentPoll, AgentPollReply, ErrorBody, Job,
    OperationDone, OutputStream, ResultFile, ResultList, Role,
};
use hpcsera_store::{now_ms, Claim};
use std::time::Duration;

/// Longest long-poll.
const MAX_WAIT_SECONDS: u32 = 60;
/// How often a waiting poll looks again without a wake-up (other replicas may have queued
/// work; on one server the wake-up comes at once).
const RECHECK: Duration = Duration::from_secs(2);

/// The agent's one call per cycle: renews the leases of the jobs it holds, confirms new
/// claims, hands over operations to carry out, and claims up to `maxJobs` queued jobs of its
/// site — waiting up to `waitSeconds` until there is something to hand over.
#[utoipa::path(post, path = "/api/v1/agent/poll", tag = "agent",
    request_body = AgentPoll,
    responses((status = 200, body = AgentPollReply), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn agent_poll(
    State(st): State<AppState>,
    agent: AgentCaller,
    ApiJson(body): ApiJson<AgentPoll>,
) -> ApiResult<Json<AgentPollReply>> {
    let site = agent.site().to_string();
    hpcsera_api_types::check_agent_label("agentVersion", body.agent_version.as_deref())
        .map_err(|e| ApiError::invalid(vec![e]))?;
    if body.wait_seconds > MAX_WAIT_SECONDS {
        return Err(ApiError::invalid_field(
            "waitSeconds",
            format!("at most {MAX_WAIT_SECONDS}"),
        ));
    }
    if body.max_jobs > 1000 {
        return Err(ApiError::invalid_field("maxJobs", "at most 1000"));
    }
    if body.active_job_ids.len() > 10_000 {
        return Err(ApiError::invalid_field("activeJobIds", "at most 10000 ids"));
    }
    let active: Vec<String> = body
        .active_job_ids
        .iter()
        .map(|id| job_id(id))
        .collect::<ApiResult<_>>()
        .map_err(|_| {
            ApiError::invalid_field("activeJobIds", "holds something that is not a job id")
        })?;
    let token = agent.token();
    let lease_seconds = st.config.lease_seconds;
    let released = st
        .store
        .renew_leases(
            &token.token_id,
            token.project_id,
            &active,
            now_ms() + lease_seconds as i64 * 1000,
        )
        .await?;
    st.store
        .touch_site(&site, token.project_id, body.agent_version.as_deref())
        .await?;
    let mut woken = st.work.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(body.wait_seconds));
    let actor = agent.actor();
    loop {
        let operations = st
            .store
            .pending_operations(&token.token_id, token.project_id)
            .await?;
        let jobs = st
            .store
            .claim_jobs(&Claim {
                token_id: &token.token_id,
                project_id: token.project_id,
                site: &site,
                max_jobs: body.max_jobs,
                claim_lease_ms: st.config.claim_lease_seconds as i64 * 1000,
                actor: &actor,
            })
            .await?;
        let now = tokio::time::Instant::now();
        if !jobs.is_empty() {
            st.events_written();
        }
        let code_to_verify = st.store.code_to_verify(token.project_id, &site).await?;
        if !jobs.is_empty()
            || !operations.is_empty()
            || !code_to_verify.is_empty()
            || now >= deadline
        {
            return Ok(Json(AgentPollReply {
                code_to_verify,
                jobs,
                operations: operations
                    .into_iter()
                    .map(|(job_id, operation)| AgentOperation { job_id, operation })
                    .collect(),
                released_job_ids: released,
                lease_seconds,
            }));
        }
        woken.borrow_and_update();
        let nap = (deadline - now).min(RECHECK);
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// The agent reports that it carried out an operation (or could not).
#[utoipa::path(post, path = "/api/v1/agent/jobs/{jobId}/operationDone", tag = "agent",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    request_body = OperationDone,
    responses((status = 200, body = Job), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn operation_done(
    State(st): State<AppState>,
    agent: AgentCaller,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<OperationDone>,
) -> ApiResult<Json<Job>> {
    agent.require(Role::UpdateJobStatus)?;
    let id = job_id(&raw)?;
    if body
        .message
        .as_ref()
        .is_some_and(|m| m.len() > 4096 || m.contains('\0'))
    {
        return Err(ApiError::invalid_field(
            "message",
            "must be at most 4096 bytes without NUL",
        ));
    }
    let job = st
        .store
        .operation_done(
            &agent.agent_ref(),
            &id,
            body.operation,
            body.ok,
            body.message.as_deref(),
            &agent.actor(),
        )
        .await?;
    st.events_written();
    Ok(Json(job))
}

/// The agent that last held a `lost` job says what it did about it when it came back (it
/// cancelled the job's batch job): an `agent_cleanup` event; the job is unchanged. 409 when the
/// job is not lost or another agent held it.
#[utoipa::path(post, path = "/api/v1/agent/jobs/{jobId}/cleanup", tag = "agent",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    request_body = AgentCleanup,
    responses((status = 200, body = Job), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn agent_cleanup(
    State(st): State<AppState>,
    agent: AgentCaller,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<AgentCleanup>,
) -> ApiResult<Json<Job>> {
    agent.require(Role::UpdateJobStatus)?;
    let id = job_id(&raw)?;
    if body.message.is_empty() || body.message.len() > 4096 || body.message.contains('\0') {
        return Err(ApiError::invalid_field(
            "message",
            "must be 1 to 4096 bytes without NUL",
        ));
    }
    let job = st
        .store
        .agent_cleanup(&agent.agent_ref(), &id, &body.message, &agent.actor())
        .await?;
    st.events_written();
    Ok(Json(job))
}

fn stream(raw: &str) -> ApiResult<OutputStream> {
    raw.parse().map_err(|e: String| ApiError::NotFound(e))
}

fn query_i64(q: &Option<String>, key: &str, default: i64) -> ApiResult<i64> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_field("query", e.to_string()))?;
    match pairs.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_field(key, "must be a whole number ≥ 0")),
    }
}

/// The agent appends a chunk of a job's stdout or stderr at `offset` (the stream's length
/// as the agent knows it). Resent chunks are skipped; a gap is 409.
#[utoipa::path(post, path = "/api/v1/job/{jobId}/output/{stream}", tag = "agent",
    params(("jobId" = String, Path), ("stream" = String, Path, description = "stdout or stderr"),
        ("offset" = i64, Query, description = "where this chunk starts")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "the stream's new length, as JSON {\"length\": N}"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn append_output(
    State(st): State<AppState>,
    agent: AgentCaller,
    Path((raw, s)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<serde_json::Value>> {
    agent.require(Role::UpdateJobStatus)?;
    let id = job_id(&raw)?;
    let s = stream(&s)?;
    let offset = query_i64(&q, "offset", 0)?;
    let len = st
        .store
        .append_output(
            &agent.agent_ref(),
            &id,
            s,
            offset,
            &body,
            st.config.max_output_bytes as i64,
        )
        .await?;
    st.output_written();
    Ok(Json(serde_json::json!({ "length": len })))
}

/// A job's stdout or stderr from `offset` (at most `maxBytes`, default 1 MiB), readable
/// while the job runs. Headers: `X-Next-Offset` (ask from there next), `X-Output-Total`,
/// `X-Output-Complete: true` once the job has ended and nothing more will come,
/// `X-Output-Truncated: true` if the server cut the output at its limit. With `wait`
/// (seconds, at most 60) a read that finds nothing new waits until the job's output grows
/// (either stream) or its status changes, so a follower does not poll.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/output/{stream}", tag = "jobs",
    params(("jobId" = String, Path), ("stream" = String, Path, description = "stdout or stderr"),
        ("offset" = Option<i64>, Query), ("maxBytes" = Option<i64>, Query),
        ("wait" = Option<u64>, Query, description = "seconds to wait for new output (0 to 60)")),
    responses((status = 200, description = "the bytes", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read_output(
    State(st): State<AppState>,
    caller: Caller,
    Path((raw, s)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    caller.require(Role::GetJobStatus)?;
    let id = job_id(&raw)?;
    let s = stream(&s)?;
    let offset = query_i64(&q, "offset", 0)?;
    let max = query_i64(&q, "maxBytes", 1024 * 1024)?.clamp(1, 8 * 1024 * 1024);
    let wait = query_i64(&q, "wait", 0)?;
    if wait > 60 {
        return Err(ApiError::bad_field(
            "wait",
            "must be a whole number of seconds from 0 to 60",
        ));
    }
    super::jobs::visible_job(&st, &caller, &id).await?;
    let project = caller.0.project_id;
    let mut changed = st.output.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait as u64);
    let mark = if wait > 0 {
        Some(st.store.output_mark(project, &id).await?)
    } else {
        None
    };
    let slice = loop {
        changed.borrow_and_update();
        let slice = st.store.read_output(project, &id, s, offset, max).await?;
        let now = tokio::time::Instant::now();
        if !slice.data.is_empty() || slice.complete || now >= deadline {
            break slice;
        }
        // Output of the other stream or a new status: answer, so the reader looks there.
        if mark.is_some() && Some(st.store.output_mark(project, &id).await?) != mark {
            break slice;
        }
        let nap = (deadline - now).min(RECHECK);
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    };
    let mut resp = (StatusCode::OK, slice.data).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("x-next-offset", HeaderValue::from(slice.next_offset));
    h.insert("x-output-total", HeaderValue::from(slice.total));
    h.insert(
        "x-output-complete",
        HeaderValue::from_static(if slice.complete { "true" } else { "false" }),
    );
    h.insert(
        "x-output-truncated",
        HeaderValue::from_static(if slice.truncated { "true" } else { "false" }),
    );
    Ok(resp)
}

fn result_name(name: &str) -> ApiResult<&str> {
    if is_valid_result_name(name) {
        Ok(name)
    } else {
        Err(ApiError::bad_field(
            "name",
            "must be a relative path of letters, digits, '.', '_', '-' segments, without '..'",
        ))
    }
}

/// The agent uploads a result file (replacing one of the same name).
#[utoipa::path(put, path = "/api/v1/job/{jobId}/results/{name}", tag = "agent",
    params(("jobId" = String, Path), ("name" = String, Path, description = "relative path")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ResultFile), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_result(
    State(st): State<AppState>,
    agent: AgentCaller,
    Path((raw, name)): Path<(String, String)>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, Json<ResultFile>)> {
    agent.require(Role::UpdateJobStatus)?;
    let id = job_id(&raw)?;
    let name = result_name(&name)?;
    let file = st
        .store
        .put_result(
            &agent.agent_ref(),
            &id,
            name,
            &body,
            st.config.max_result_files,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(file)))
}

/// The result files of a job.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/results", tag = "jobs",
    params(("jobId" = String, Path)),
    responses((status = 200, body = ResultList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_results(
    State(st): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<ResultList>> {
    caller.require(Role::GetJobStatus)?;
    let id = job_id(&raw)?;
    super::jobs::visible_job(&st, &caller, &id).await?;
    Ok(Json(ResultList {
        results: st.store.list_results(caller.0.project_id, &id).await?,
    }))
}

/// Download a result file.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/results/{name}", tag = "jobs",
    params(("jobId" = String, Path), ("name" = String, Path, description = "relative path")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_result(
    State(st): State<AppState>,
    caller: Caller,
    Path((raw, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Role::GetJobStatus)?;
    let id = job_id(&raw)?;
    let name = result_name(&name)?;
    super::jobs::visible_job(&st, &caller, &id).await?;
    let (file, data) = st.store.get_result(caller.0.project_id, &id, name).await?;
    let mut resp = (StatusCode::OK, data).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}
