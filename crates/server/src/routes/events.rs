//! What happened to jobs: a job's event log, the project's event stream (both long-polled),
//! and a job's webhook deliveries.
//!
//! Read-only: events are written by the store in the transaction of the change they record,
//! never here.

use super::jobs::visible_job;
use super::query::{pairs, parse_limit};
use super::wait::{long_poll, Look};
use crate::api_bounds::MAX_PAGE;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JobId};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use hpcsera_api_types::{ErrorBody, JobEvent, JobEventList, Role, WebhookDeliveryList};
use hpcsera_store::EventFilter;
use std::time::Duration;

/// The webhook deliveries of a job: every status change POSTed to its `callbackUrl`, with
/// attempts and outcome.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/deliveries", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = WebhookDeliveryList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job_deliveries(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
) -> ApiResult<Json<WebhookDeliveryList>> {
    caller.require(Role::GetJobStatus)?;
    visible_job(&st, &caller, &id).await?;
    let deliveries = st.store.job_deliveries(caller.0.project_id, &id).await?;
    Ok(Json(WebhookDeliveryList { deliveries }))
}

/// The query of an event read (a job's, the project's or a sweep's), as the OpenAPI document
/// shows it; [`event_query`] parses it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by utoipa only
pub(crate) struct EventQuery {
    /// only events with a larger seq
    after: Option<i64>,
    /// 1 to 1000, default 1000
    limit: Option<u32>,
    /// seconds to wait for an event when there is none (0 to 60)
    wait: Option<u64>,
}

/// Parses `after`, `limit` and `wait` of an event read (a job's, the project's or a
/// sweep's).
pub(crate) fn event_query(q: &Option<String>) -> ApiResult<(EventFilter, u64)> {
    let mut f = EventFilter {
        after_seq: 0,
        limit: MAX_PAGE,
        site: None,
    };
    let mut wait = 0;
    for (k, v) in pairs(q)? {
        match k.as_str() {
            "after" => {
                f.after_seq = v
                    .parse()
                    .map_err(|_| ApiError::bad_field("after", "must be a whole number"))?
            }
            "limit" => f.limit = parse_limit(&v)?,
            "wait" => {
                wait = v
                    .parse::<u64>()
                    .ok()
                    .filter(|w| *w <= MAX_EVENT_WAIT)
                    .ok_or_else(|| {
                        ApiError::bad_field(
                            "wait",
                            "must be a whole number of seconds from 0 to 60",
                        )
                    })?
            }
            other => return Err(ApiError::bad_field(other, "is not a known query parameter")),
        }
    }
    Ok((f, wait))
}

use crate::api_bounds::MAX_EVENT_WAIT;

/// Reads events; when there are none and `wait` > 0, waits until one is written (or the
/// time is up). Wake-ups come from any event, so every wake-up reads again.
pub(crate) async fn read_events<F, Fut>(
    st: &AppState,
    wait: u64,
    read: F,
) -> ApiResult<Vec<JobEvent>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<JobEvent>, hpcsera_store::StoreError>>,
{
    let recheck = st.config.connections.long_poll_recheck;
    long_poll(&st.events, Duration::from_secs(wait), recheck, || async {
        let events = read().await?;
        Ok(if events.is_empty() {
            Look::Nothing(events)
        } else {
            Look::Found(events)
        })
    })
    .await
}

/// The job's event log: every transition and operation, with time and actor, oldest first.
/// `after` (an event's `seq`) continues a previous read; `wait` (seconds, at most 60) makes
/// the request wait for the next event when there is none yet (long poll), so a waiting client
/// does not busy-poll.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/events", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)"), EventQuery),
    responses((status = 200, body = JobEventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job_events(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobEventList>> {
    caller.require(Role::GetJobStatus)?;
    let (f, wait) = event_query(&q)?;
    visible_job(&st, &caller, &id).await?;
    let project = caller.0.project_id;
    let events = read_events(&st, wait, || st.store.job_events(project, &id, &f)).await?;
    Ok(Json(JobEventList { events }))
}

/// The events of all the project's jobs, oldest first: the stream a workflow engine follows.
/// Resume after a disconnect with `after` = the last `seq` seen: nothing is lost or repeated.
/// `wait` long-polls as for a job's events.
#[utoipa::path(get, path = "/api/v1/events", tag = "jobs",
    params(EventQuery),
    responses((status = 200, body = JobEventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn project_events(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobEventList>> {
    caller.require(Role::GetJobStatus)?;
    let (mut f, wait) = event_query(&q)?;
    f.site = caller.0.site.clone();
    let project = caller.0.project_id;
    let events = read_events(&st, wait, || st.store.project_events(project, &f)).await?;
    Ok(Json(JobEventList { events }))
}
