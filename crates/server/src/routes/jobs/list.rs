//! `GET /job/findJobsByStatus`: the project's jobs, newest first, filtered, in pages with
//! an opaque cursor.
//!
//! Owns the listing's query and its cursor format; the store bounds a page's size. It must
//! never show a site-restricted token another site's jobs.

use super::narrow_to_token_site;
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::routes::query::{
    decode_cursor, encode_cursor, pairs, parse_limit, parse_time, push_statuses,
};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use hpcsera_api_types::{is_valid_name, ErrorBody, JobList, Role};
use hpcsera_store::JobFilter;

/// List the project's jobs, newest first, optionally by status (repeat `status` or separate
/// with commas), site, job type and creation time. Cursor pagination: pass the reply's
/// `nextCursor` as `cursor`.
#[utoipa::path(get, path = "/api/v1/job/findJobsByStatus", tag = "jobs",
    params(
        ("status" = Option<String>, Query, description = "one or more statuses, comma-separated or repeated"),
        ("site" = Option<String>, Query), ("jobType" = Option<String>, Query),
        ("createdAfter" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("createdBefore" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn find_jobs_by_status(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobList>> {
    caller.require(Role::GetJobStatus)?;
    let mut f = job_filter(&q)?;
    narrow_to_token_site(&caller, &mut f.site)?;
    let (jobs, next) = st.store.list_jobs(caller.0.project_id, &f).await?;
    Ok(Json(JobList {
        jobs,
        next_cursor: next.map(|s| encode_cursor('j', s)),
    }))
}

/// The filter a listing's query asks for (default page: 100 jobs); the web UI's job list
/// reads its query with it too.
pub(crate) fn job_filter(q: &Option<String>) -> ApiResult<JobFilter> {
    let mut f = JobFilter {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in pairs(q)? {
        match k.as_str() {
            "status" => push_statuses(&v, &mut f.statuses)?,
            "site" | "jobType" if !is_valid_name(&v, true) => {
                return Err(ApiError::bad_field(&k, "is not a valid name"))
            }
            "site" => f.site = Some(v),
            "jobType" => f.job_type = Some(v),
            "createdAfter" => f.created_after = Some(parse_time("createdAfter", &v)?),
            "createdBefore" => f.created_before = Some(parse_time("createdBefore", &v)?),
            "limit" => f.limit = parse_limit(&v)?,
            "cursor" => {
                f.before_seq = Some(decode_cursor('j', &v).ok_or_else(|| {
                    ApiError::bad_field("cursor", "is not a cursor this server handed out")
                })?)
            }
            other => return Err(ApiError::bad_field(other, "is not a known query parameter")),
        }
    }
    Ok(f)
}
