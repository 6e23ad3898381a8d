//! A job's result files: the agent that holds the job uploads them by relative name;
//! clients list and download them.
//!
//! Names are checked here (no `..`, no absolute paths); the store keeps the bytes and counts
//! the files. Never lets anyone but the holding agent write.

use super::jobs::visible_job;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiBytes, Caller, JobId};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::{is_valid_result_name, ErrorBody, ResultFile, ResultList, Role};

/// The `{*name}` of a result route: a relative path (the route's wildcard).
#[derive(serde::Deserialize)]
pub(crate) struct ResultPath {
    name: String,
}

impl ResultPath {
    /// The name, if it is a safe relative path; else 400 naming `name`.
    fn parse(&self) -> ApiResult<&str> {
        let name = self.name.as_str();
        if is_valid_result_name(name) {
            return Ok(name);
        }
        Err(ApiError::bad_field(
            "name",
            "must be a relative path of letters, digits, '.', '_', '-' segments, without '..'",
        ))
    }
}

/// The agent uploads a result file (replacing one of the same name).
#[utoipa::path(put, path = "/api/v1/job/{jobId}/results/{*name}", tag = "agent",
    params(("jobId" = String, Path), ("name" = String, Path, description = "relative path")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ResultFile), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_result(
    State(st): State<AppState>,
    agent: AgentCaller,
    id: JobId,
    Path(name): Path<ResultPath>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, Json<ResultFile>)> {
    agent.require(Role::UpdateJobStatus)?;
    let name = name.parse()?;
    let file = st
        .store
        .put_result(
            &agent.agent_ref(),
            &id,
            name,
            &body,
            st.config.limits.max_result_files,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(file)))
}

/// The result files of a job.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/results", tag = "jobs",
    params(("jobId" = String, Path)),
    responses((status = 200, body = ResultList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_results(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
) -> ApiResult<Json<ResultList>> {
    caller.require(Role::GetJobStatus)?;
    visible_job(&st, &caller, &id).await?;
    Ok(Json(ResultList {
        results: st.store.list_results(caller.0.project_id, &id).await?,
    }))
}

/// Download a result file.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/results/{*name}", tag = "jobs",
    params(("jobId" = String, Path), ("name" = String, Path, description = "relative path")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream",
            headers(("ETag" = String, description = "the file's SHA-256 in quotes"))),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_result(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
    Path(name): Path<ResultPath>,
) -> ApiResult<Response> {
    caller.require(Role::GetJobStatus)?;
    let name = name.parse()?;
    visible_job(&st, &caller, &id).await?;
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
