//! The agent's own routes: the poll (leases, claims, operations, code to verify), the report
//! that an operation was carried out, and the cleanup note for a lost job.
//!
//! Every route here takes an [`AgentCaller`], so a token that is not an agent token never
//! gets in; the store checks that the agent holds the job. Status reports by agents go
//! through `PUT /job/{jobId}` (see `jobs`), not here.

use super::wait::{long_poll, Look};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiJson, JobId};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use hpcsera_api_types::{
    AgentCleanup, AgentOperation, AgentPoll, AgentPollReply, ErrorBody, Job, OperationDone, Role,
};
use hpcsera_store::{now_ms, Claim};
use std::time::Duration;

use crate::api_bounds::{MAX_POLL_IDS, MAX_POLL_JOBS, MAX_POLL_WAIT};
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
    let active = check_poll(&body)?;
    let site = agent.site();
    let token = agent.token();
    let lease_seconds = st.config.leases.lease_seconds;
    // The store calls are boxed so that the poll's state across its wait (`long_poll`)
    // does not reserve room for them: that state is kept per idle agent connection.
    let released = Box::pin(st.store.renew_leases(
        &token.token_id,
        token.project_id,
        &active,
        now_ms() + lease_seconds as i64 * 1000,
    ))
    .await?;
    Box::pin(
        st.store
            .touch_site(site, token.project_id, body.agent_version.as_deref()),
    )
    .await?;
    let actor = agent.actor();
    let wait = Duration::from_secs(u64::from(body.wait_seconds));
    let recheck = st.config.connections.long_poll_recheck;
    let (operations, jobs, code_to_verify) = long_poll(&st.work, wait, recheck, || async {
        let operations = st
            .store
            .pending_operations(&token.token_id, token.project_id)
            .await?;
        let jobs = st
            .store
            .claim_jobs(&Claim {
                token_id: &token.token_id,
                project_id: token.project_id,
                site,
                max_jobs: body.max_jobs,
                claim_lease_ms: st.config.leases.claim_lease_seconds as i64 * 1000,
                actor: &actor,
            })
            .await?;
        if !jobs.is_empty() {
            st.events_written();
        }
        let code = st.store.code_to_verify(token.project_id, site).await?;
        let found = !jobs.is_empty() || !operations.is_empty() || !code.is_empty();
        let all = (operations, jobs, code);
        Ok(if found {
            Look::Found(all)
        } else {
            Look::Nothing(all)
        })
    })
    .await?;
    Ok(Json(AgentPollReply {
        code_to_verify,
        jobs,
        operations: operations
            .into_iter()
            .map(|(job_id, operation)| AgentOperation { job_id, operation })
            .collect(),
        released_job_ids: released,
        lease_seconds,
    }))
}

/// Checks a poll's sizes and labels; the ids of the jobs the agent says it runs, parsed.
fn check_poll(body: &AgentPoll) -> ApiResult<Vec<String>> {
    hpcsera_api_types::check_agent_label("agentVersion", body.agent_version.as_deref())
        .map_err(|e| ApiError::invalid(vec![e]))?;
    if body.wait_seconds > MAX_POLL_WAIT {
        return Err(ApiError::invalid_field(
            "waitSeconds",
            format!("at most {MAX_POLL_WAIT}"),
        ));
    }
    if body.max_jobs > MAX_POLL_JOBS {
        return Err(ApiError::invalid_field(
            "maxJobs",
            format!("at most {MAX_POLL_JOBS}"),
        ));
    }
    if body.active_job_ids.len() > MAX_POLL_IDS {
        return Err(ApiError::invalid_field(
            "activeJobIds",
            format!("at most {MAX_POLL_IDS} ids"),
        ));
    }
    body.active_job_ids
        .iter()
        .map(|id| JobId::parse(id).map(String::from))
        .collect::<ApiResult<_>>()
        .map_err(|_| {
            ApiError::invalid_field("activeJobIds", "holds something that is not a job id")
        })
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
    id: JobId,
    ApiJson(body): ApiJson<OperationDone>,
) -> ApiResult<Json<Job>> {
    agent.require(Role::UpdateJobStatus)?;
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
    id: JobId,
    ApiJson(body): ApiJson<AgentCleanup>,
) -> ApiResult<Json<Job>> {
    agent.require(Role::UpdateJobStatus)?;
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
