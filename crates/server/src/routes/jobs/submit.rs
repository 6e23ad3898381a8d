//! `POST /job`: a new job of a site's job type, with parameters and resources validated
//! against the type and an `Idempotency-Key` that makes retries safe.
//!
//! Owns the submission's checks and its idempotency hash; the store writes the job and its
//! first event in one transaction. Never claims or dispatches a job.

use super::checks::{check_callback, check_metadata, check_parameters_size, code_refs};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::{is_valid_name, ErrorBody, Job, JobTypeSpec, NewJob, Role};
use hpcsera_store::{NewJobRecord, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api_bounds::MAX_IDEMPOTENCY_KEY;

/// Schedule a new job: a job type of a site with parameters. An `Idempotency-Key` header
/// makes retries safe: the same key with the same body returns the first job (200), with a
/// different body it is refused (422).
#[utoipa::path(post, path = "/api/v1/job", tag = "jobs",
    request_body = NewJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the submission safe to retry (at most 255 characters)")),
    responses(
        (status = 201, body = Job, description = "created",
            headers(("Location" = String, description = "the job's URL path"))),
        (status = 200, body = Job, description = "an earlier submission with the same Idempotency-Key",
            headers(("Location" = String, description = "the job's URL path"),
                ("Idempotent-Replayed" = String, description = "`true`: this is the earlier job"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_job(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewJob>,
) -> ApiResult<Response> {
    caller.require(Role::PostJob)?;
    caller.require_site(&body.site)?;
    let idempotency_key = idempotency_key(&headers)?;
    let who = Submitter {
        project_id: caller.0.project_id,
        user_id: caller.0.user_id,
        actor: caller.user_actor(),
    };
    let submitted = submit(&st, &who, &body, idempotency_key.as_deref()).await?;
    Ok(submitted_response(&submitted.job, submitted.created))
}

/// Who submits: the token's user and project, or the web UI's logged-in member (whose
/// `POST_Job` the caller has checked, with any site restriction).
pub(crate) struct Submitter {
    pub project_id: i64,
    pub user_id: i64,
    /// How the event log names them (`user:NAME`).
    pub actor: String,
}

/// The submission itself, shared by `POST /job` and the web UI's job form: the job type of
/// the project at the site, its parameters validated (defaults filled), size, metadata and
/// callback checked — every problem one field of a 422 — then the job and its first event
/// stored, and the agents woken.
pub(crate) async fn submit(
    st: &AppState,
    who: &Submitter,
    body: &NewJob,
    idempotency_key: Option<&str>,
) -> ApiResult<hpcsera_store::Submitted> {
    let (site_id, spec) = job_type_of(st, who.project_id, &body.site, &body.job_type).await?;
    let mut errs = Vec::new();
    let params = match spec.validate_parameters(&body.parameters) {
        Ok(p) => p,
        Err(e) => {
            errs.extend(e);
            Default::default()
        }
    };
    let resources = spec
        .validate_resources(&body.resources)
        .unwrap_or_else(|e| {
            errs.extend(e);
            Default::default()
        });
    check_parameters_size(&params, &mut errs);
    check_metadata(body.metadata.as_ref(), &mut errs);
    check_callback(st, body.callback_url.as_deref(), &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    let request_hash = idempotency_key.map(|_| request_hash(body));
    let submitted = st
        .store
        .create_job(&NewJobRecord {
            project_id: who.project_id,
            owner_id: who.user_id,
            site_id,
            job_type: &body.job_type,
            parameters: &params,
            resources: &resources,
            metadata: body.metadata.as_ref(),
            callback_url: body.callback_url.as_deref(),
            idempotency: idempotency_key.zip(request_hash),
            actor: &who.actor,
            code_refs: &code_refs(&spec, &params),
        })
        .await?;
    if submitted.created {
        st.wake_agents();
        st.job_created(submitted.job.callback_url.is_some());
    }
    Ok(submitted)
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters, else 400.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| {
            ApiError::bad_field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
        })
}

/// The site's id and the job type the caller's project may submit there; 422 naming `site`
/// or `jobType` when there is none.
pub(crate) async fn job_type_of(
    st: &AppState,
    project_id: i64,
    site: &str,
    job_type: &str,
) -> ApiResult<(i64, JobTypeSpec)> {
    let no_site = || ApiError::invalid_field("site", format!("there is no site {site:?}"));
    let no_type = || {
        ApiError::invalid_field(
            "jobType",
            format!("site {site:?} has no job type {job_type:?}"),
        )
    };
    if !is_valid_name(site, true) {
        return Err(no_site());
    }
    if !is_valid_name(job_type, true) {
        return Err(no_type());
    }
    match st.store.job_type(site, project_id, job_type).await {
        Ok(x) => Ok(x),
        Err(StoreError::NotFound("site")) => Err(no_site()),
        Err(StoreError::NotFound(_)) => Err(no_type()),
        Err(e) => Err(e.into()),
    }
}

/// 201 with `Location` for a new job; 200 with `Idempotent-Replayed: true` for an earlier
/// submission with the same key.
fn submitted_response(job: &Job, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(job)).into_response();
    resp.headers_mut()
        .insert(header::LOCATION, job_location(&job.id));
    if !created {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// `Location` of a job.
fn job_location(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{}/job/{id}", hpcsera_api_types::API_BASE))
        .unwrap_or_else(|_| HeaderValue::from_static("/"))
}

/// SHA-256 over the request in a canonical form (object keys sorted), so that the same
/// request with keys in another order counts as the same.
pub(crate) fn request_hash(body: &impl serde::Serialize) -> String {
    fn canon(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canon(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canon(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canon(&serde_json::to_value(body).unwrap_or(Value::Null), &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hash_ignores_key_order() {
        let a: NewJob =
            serde_json::from_str(r#"{"site":"s","jobType":"t","parameters":{"a":1,"b":2}}"#)
                .unwrap();
        let b: NewJob =
            serde_json::from_str(r#"{"jobType":"t","parameters":{"b":2,"a":1},"site":"s"}"#)
                .unwrap();
        let c: NewJob =
            serde_json::from_str(r#"{"site":"s","jobType":"t","parameters":{"a":1,"b":3}}"#)
                .unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
