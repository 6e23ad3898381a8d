//! A job's stdout and stderr: the agent appends chunks at an offset; clients read from an
//! offset, optionally waiting for more (long poll).
//!
//! The store keeps the bytes and cuts them at the server's limit. This module must never
//! let anyone but the agent that holds the job write output.

use super::jobs::visible_job;
use super::query::query_i64;
use super::wait::{long_poll, Look};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiBytes, Caller, JobId};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::{ErrorBody, OutputStream, Role};
use hpcsera_store::OutputSlice;
use std::time::Duration;

/// The `{stream}` of an output route.
#[derive(serde::Deserialize)]
pub(crate) struct StreamPath {
    stream: String,
}

impl StreamPath {
    /// `stdout` or `stderr`; anything else is 404 (there is no such resource).
    fn parse(&self) -> ApiResult<OutputStream> {
        self.stream
            .parse()
            .map_err(|e: String| ApiError::NotFound(e))
    }
}

/// Where an output route reads or writes: its `{stream}` and its query (`offset`; a read's
/// `maxBytes` and `wait`), taken as given. [`OutputAt::parse`] checks them after the
/// caller's role, as each handler did before.
pub(crate) struct OutputAt {
    stream: StreamPath,
    query: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for OutputAt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(stream) = Path::<StreamPath>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_field("stream", e.body_text()))?;
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        Ok(OutputAt { stream, query })
    }
}

impl OutputAt {
    /// The stream (see [`StreamPath::parse`]) and `offset` (default 0).
    fn parse(&self) -> ApiResult<(OutputStream, i64)> {
        Ok((self.stream.parse()?, query_i64(&self.query, "offset", 0)?))
    }
}

use crate::api_bounds::MAX_OUTPUT_WAIT;
/// Default and largest `maxBytes` of an output read.
const DEFAULT_READ_BYTES: i64 = 1024 * 1024;
const MAX_READ_BYTES: i64 = 8 * 1024 * 1024;

/// The answer to an output chunk: the stream's length after it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OutputLength {
    /// Bytes of the stream stored so far.
    pub length: i64,
}

/// The agent appends a chunk of a job's stdout or stderr at `offset` (the stream's length
/// as the agent knows it). Resent chunks are skipped; a gap is 409.
#[utoipa::path(post, path = "/api/v1/job/{jobId}/output/{stream}", tag = "agent",
    params(("jobId" = String, Path), ("stream" = String, Path, description = "stdout or stderr"),
        ("offset" = i64, Query, description = "where this chunk starts")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = OutputLength, description = "the stream's new length"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn append_output(
    State(st): State<AppState>,
    agent: AgentCaller,
    id: JobId,
    at: OutputAt,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<OutputLength>> {
    agent.require(Role::UpdateJobStatus)?;
    let (s, offset) = at.parse()?;
    let len = st
        .store
        .append_output(
            &agent.agent_ref(),
            &id,
            s,
            offset,
            &body,
            st.config.limits.max_output_bytes as i64,
        )
        .await?;
    st.output_written();
    Ok(Json(OutputLength { length: len }))
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
    responses((status = 200, description = "the bytes", content_type = "application/octet-stream",
            headers(("X-Next-Offset" = i64, description = "the offset to read from next"),
                ("X-Output-Total" = i64, description = "bytes of the stream stored so far"),
                ("X-Output-Complete" = bool, description = "`true` once the job has ended and nothing more will come"),
                ("X-Output-Truncated" = bool, description = "`true` if the server cut the stream at its limit"))),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read_output(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
    at: OutputAt,
) -> ApiResult<Response> {
    caller.require(Role::GetJobStatus)?;
    let (s, offset) = at.parse()?;
    let max = query_i64(&at.query, "maxBytes", DEFAULT_READ_BYTES)?.clamp(1, MAX_READ_BYTES);
    let wait = query_i64(&at.query, "wait", 0)?;
    if wait > MAX_OUTPUT_WAIT {
        return Err(ApiError::bad_field(
            "wait",
            "must be a whole number of seconds from 0 to 60",
        ));
    }
    visible_job(&st, &caller, &id).await?;
    let project = caller.0.project_id;
    let mark = if wait > 0 {
        Some(st.store.output_mark(project, &id).await?)
    } else {
        None
    };
    let (wait, recheck) = (
        Duration::from_secs(wait as u64),
        st.config.connections.long_poll_recheck,
    );
    let slice = long_poll(&st.output, wait, recheck, || async {
        let slice = st.store.read_output(project, &id, s, offset, max).await?;
        // New bytes, the end, or output of the other stream or a new status: answer, so that
        // the reader looks there.
        let news = !slice.data.is_empty()
            || slice.complete
            || (mark.is_some() && Some(st.store.output_mark(project, &id).await?) != mark);
        Ok(if news {
            Look::Found(slice)
        } else {
            Look::Nothing(slice)
        })
    })
    .await?;
    Ok(output_response(slice))
}

/// The bytes of a slice with the headers that say where the stream stands.
fn output_response(slice: OutputSlice) -> Response {
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
    resp
}
