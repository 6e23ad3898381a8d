//! `GET /job/findJobsByStatus`: the project's jobs, newest first, filtered, in pages with
//! an opaque cursor.
//!
//! Owns the listing's query and its cursor format; the store bounds a page's size. It must
//! never show a site-restricted token another site's jobs.

use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::routes::query::{pairs, parse_limit};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use base64::Engine;
use hpcsera_api_types::{is_valid_name, ErrorBody, JobList, JobStatus, Role};
use hpcsera_store::JobFilter;

/// The opaque cursor of a listing page that continues before job `seq` (also the web UI's).
pub(crate) fn encode_cursor(seq: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("j{seq}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix('j')?
        .parse()
        .ok()
}

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
    if let Some(restricted) = &caller.0.site {
        match &f.site {
            Some(s) if s != restricted => {
                return Err(ApiError::Forbidden(format!(
                    "this token is restricted to site {restricted:?}"
                )))
            }
            _ => f.site = Some(restricted.clone()),
        }
    }
    let (jobs, next) = st.store.list_jobs(caller.0.project_id, &f).await?;
    Ok(Json(JobList {
        jobs,
        next_cursor: next.map(encode_cursor),
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
            "status" => {
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    f.statuses.push(
                        s.parse::<JobStatus>()
                            .map_err(|e| ApiError::bad_field("status", e))?,
                    );
                }
            }
            "site" | "jobType" if !is_valid_name(&v, true) => {
                return Err(ApiError::bad_field(&k, "is not a valid name"))
            }
            "site" => f.site = Some(v),
            "jobType" => f.job_type = Some(v),
            "createdAfter" => {
                f.created_after = Some(hpcsera_store::parse_rfc3339_ms(&v).ok_or_else(|| {
                    ApiError::bad_field("createdAfter", "must be an RFC 3339 time")
                })?)
            }
            "createdBefore" => {
                f.created_before = Some(hpcsera_store::parse_rfc3339_ms(&v).ok_or_else(|| {
                    ApiError::bad_field("createdBefore", "must be an RFC 3339 time")
                })?)
            }
            "limit" => f.limit = parse_limit(&v)?,
            "cursor" => {
                f.before_seq = Some(decode_cursor(&v).ok_or_else(|| {
                    ApiError::bad_field("cursor", "is not a cursor this server handed out")
                })?)
            }
            other => return Err(ApiError::bad_field(other, "is not a known query parameter")),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(12345)), Some(12345));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor(""), None);
    }
}
