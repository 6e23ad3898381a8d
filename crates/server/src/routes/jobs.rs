use crate::error::{ApiError, ApiResult};
use crate::extract::{job_id, AgentCaller, ApiJson, Caller};
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use hpcsera_api_types::{
    is_valid_name, ErrorBody, FieldError, Job, JobEvent, JobEventList, JobList, JobStatus,
    JobUpdate, NewJob, OperationRequest, Role,
};
use hpcsera_store::{EventFilter, JobChange, JobFilter, NewJobRecord, StatusReport};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Largest `metadata` object, serialised.
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most bytes of a job's parameters (serialized JSON, defaults filled in), so that a page of
/// jobs stays small.
const MAX_PARAMETERS_BYTES: usize = 64 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Schedule a new job: a job type of a site with parameters. An `Idempotency-Key` header
/// makes retries safe: the same key with the same body returns the first job (200), with a
/// different body it is refused (422).
#[utoipa::path(post, path = "/api/v1/job", tag = "jobs",
    request_body = NewJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the submission safe to retry (at most 255 characters)")),
    responses(
        (status = 201, body = Job, description = "created"),
        (status = 200, body = Job, description = "an earlier submission with the same Idempotency-Key"),
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
    if !caller.may_use_site(&body.site) {
        return Err(ApiError::Forbidden(format!(
            "this token is restricted to site {:?}",
            caller.0.site.as_deref().unwrap_or_default()
        )));
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    )
                })?;
            Some(k.to_string())
        }
    };
    if !is_valid_name(&body.site, true) {
        return Err(ApiError::invalid_field(
            "site",
            format!("there is no site {:?}", body.site),
        ));
    }
    if !is_valid_name(&body.job_type, true) {
        return Err(ApiError::invalid_field(
            "jobType",
            format!("site {:?} has no job type {:?}", body.site, body.job_type),
        ));
    }
    let (site_id, spec) = match st
        .store
        .job_type(&body.site, caller.0.project_id, &body.job_type)
        .await
    {
        Ok(x) => x,
        Err(hpcsera_store::StoreError::NotFound("site")) => {
            return Err(ApiError::invalid_field(
                "site",
                format!("there is no site {:?}", body.site),
            ))
        }
        Err(hpcsera_store::StoreError::NotFound(_)) => {
            return Err(ApiError::invalid_field(
                "jobType",
                format!("site {:?} has no job type {:?}", body.site, body.job_type),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut errs = Vec::new();
    let params = match spec.validate_parameters(&body.parameters) {
        Ok(p) => p,
        Err(e) => {
            errs.extend(e);
            Default::default()
        }
    };
    check_parameters_size(&params, &mut errs);
    check_metadata(body.metadata.as_ref(), &mut errs);
    check_callback(&st, body.callback_url.as_deref(), &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    let request_hash = idempotency_key.as_ref().map(|_| request_hash(&body));
    let actor = caller.user_actor();
    let submitted = st
        .store
        .create_job(&NewJobRecord {
            project_id: caller.0.project_id,
            owner_id: caller.0.user_id,
            site_id,
            job_type: &body.job_type,
            parameters: &params,
            metadata: body.metadata.as_ref(),
            callback_url: body.callback_url.as_deref(),
            idempotency: idempotency_key.as_deref().zip(request_hash),
            actor: &actor,
            code_refs: &code_refs(&spec, &params),
        })
        .await?;
    if submitted.created {
        st.wake_agents();
        st.events_written();
    }
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(&submitted.job)).into_response();
    resp.headers_mut()
        .insert(header::LOCATION, crate::job_location(&submitted.job.id));
    if !submitted.created {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The code parameters of validated parameters: `(name, bundle id)`.
fn code_refs(
    spec: &hpcsera_api_types::JobTypeSpec,
    params: &serde_json::Map<String, Value>,
) -> Vec<hpcsera_store::CodeRef> {
    spec.parameters
        .iter()
        .filter(|p| p.kind == hpcsera_api_types::ParamKind::Code)
        .filter_map(|p| {
            params
                .get(&p.name)
                .and_then(Value::as_str)
                .map(|id| (p.name.clone(), id.to_string()))
        })
        .collect()
}

/// The length of `v` as JSON, without building the text.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

fn check_parameters_size(p: &impl serde::Serialize, errs: &mut Vec<FieldError>) {
    let len = json_len(p);
    if len > MAX_PARAMETERS_BYTES {
        errs.push(FieldError::new(
            "parameters",
            format!("are {len} bytes as JSON; the limit is 64 KiB"),
        ));
    }
}

fn check_metadata(m: Option<&Value>, errs: &mut Vec<FieldError>) {
    if let Some(m) = m {
        if !m.is_object() {
            errs.push(FieldError::new("metadata", "must be a JSON object"));
        } else if serde_json::to_string(m)
            .map(|s| s.len())
            .unwrap_or(usize::MAX)
            > MAX_METADATA_BYTES
        {
            errs.push(FieldError::new("metadata", "is larger than 16 KiB"));
        }
    }
}

fn check_callback(st: &AppState, url: Option<&str>, errs: &mut Vec<FieldError>) {
    let Some(raw) = url else { return };
    let parsed = match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => {
            errs.push(FieldError::new(
                "callbackUrl",
                "must be an absolute http or https URL",
            ));
            return;
        }
    };
    if !crate::webhooks::callback_allowed(&st.config.callback_allow_hosts, &parsed) {
        let host = parsed.host_str().unwrap_or_default();
        let target = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        errs.push(FieldError::new(
            "callbackUrl",
            format!("{target:?} is not in the server's callback allow-list"),
        ));
    }
}

/// SHA-256 over the request in a canonical form (object keys sorted), so that the same
/// request with keys in another order counts as the same.
fn request_hash(body: &NewJob) -> String {
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

/// A page size: 1 to 1000.
fn parse_limit(v: &str) -> ApiResult<u32> {
    v.parse::<u32>()
        .ok()
        .filter(|l| (1..=1000).contains(l))
        .ok_or_else(|| ApiError::bad_field("limit", "must be a whole number from 1 to 1000"))
}

fn encode_cursor(seq: i64) -> String {
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
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_field("query", e.to_string()))?;
    let mut f = JobFilter {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in pairs {
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

/// Reads a job and hides it (404) when the token's site restriction excludes it.
pub(crate) async fn visible_job(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Job> {
    let job = st.store.get_job(caller.0.project_id, id).await?;
    if !caller.may_use_site(&job.site) {
        return Err(ApiError::NotFound("job not found".into()));
    }
    Ok(job)
}

/// A job: status, parameters, what happened. `GET_JobStatus` (clients) or `GET_Job` (agents).
#[utoipa::path(get, path = "/api/v1/job/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_job(
    State(st): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<Job>> {
    caller.require_any(&[Role::GetJobStatus, Role::GetJob])?;
    let id = job_id(&raw)?;
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
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<JobUpdate>,
) -> ApiResult<Json<Job>> {
    if body.is_status_report() {
        caller.require(Role::UpdateJobStatus)?;
        if body.is_client_change() {
            return Err(both_error());
        }
        return report_status(st, AgentCaller::from_caller(caller)?, &raw, body).await;
    }
    caller.require(Role::UpdateJob)?;
    let id = job_id(&raw)?;
    if !body.is_client_change() {
        return Err(ApiError::invalid_field("body", "names nothing to change"));
    }
    let job = visible_job(&st, &caller, &id).await?;
    let mut errs = Vec::new();
    let mut refs = None;
    let params = match &body.parameters {
        Some(p) => {
            let (_, spec) = st
                .store
                .job_type(&job.site, caller.0.project_id, &job.job_type)
                .await?;
            match spec.validate_parameters(p) {
                Ok(v) => {
                    check_parameters_size(&v, &mut errs);
                    refs = Some(code_refs(&spec, &v));
                    Some(v)
                }
                Err(e) => {
                    errs.extend(e);
                    None
                }
            }
        }
        None => None,
    };
    check_metadata(body.metadata.as_ref(), &mut errs);
    check_callback(&st, body.callback_url.as_deref(), &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    let job = st
        .store
        .change_job(
            caller.0.project_id,
            &id,
            &caller.user_actor(),
            &JobChange {
                parameters: params.as_ref(),
                metadata: body.metadata.as_ref(),
                callback_url: body.callback_url.as_deref(),
                code_refs: refs.as_deref(),
            },
        )
        .await?;
    st.wake_agents();
    st.events_written();
    Ok(Json(job))
}

/// The agent half of `PUT /job/{id}`: a report by the agent token that holds the job.
async fn report_status(
    st: AppState,
    agent: AgentCaller,
    raw: &str,
    body: JobUpdate,
) -> ApiResult<Json<Job>> {
    let id = job_id(raw)?;
    let mut errs = Vec::new();
    for (field, v, max) in [
        ("message", &body.message, MAX_MESSAGE_BYTES),
        ("batchJobId", &body.batch_job_id, 200),
    ] {
        match v {
            Some(v) if v.len() > max => errs.push(FieldError::new(
                field,
                format!("is longer than {max} bytes"),
            )),
            Some(v) if v.contains('\0') => {
                errs.push(FieldError::new(field, "contains a NUL character"))
            }
            _ => {}
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    let rep = StatusReport {
        status: body.status,
        exit_code: body.exit_code,
        batch_job_id: body.batch_job_id,
        message: body.message,
        sub_jobs: body.sub_jobs,
    };
    let job = st
        .store
        .report_status(
            &agent.agent_ref(),
            &id,
            hpcsera_store::now_ms() + st.config.lease_seconds as i64 * 1000,
            &agent.actor(),
            &rep,
        )
        .await?;
    st.events_written();
    Ok(Json(job))
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
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<OperationRequest>,
) -> ApiResult<Response> {
    caller.require(Role::UpdateJob)?;
    let id = job_id(&raw)?;
    visible_job(&st, &caller, &id).await?;
    let job = st
        .store
        .request_operation(
            caller.0.project_id,
            &id,
            body.operation,
            &caller.user_actor(),
        )
        .await?;
    st.wake_agents();
    st.events_written();
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
    Path(raw): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::DeleteJob)?;
    let id = job_id(&raw)?;
    visible_job(&st, &caller, &id).await?;
    let pending = st
        .store
        .delete_job(caller.0.project_id, &id, &caller.user_actor())
        .await?;
    st.events_written();
    if pending {
        st.wake_agents();
    }
    Ok(if pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// The webhook deliveries of a job: every status change POSTed to its `callbackUrl`, with
/// attempts and outcome.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/deliveries", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)")),
    responses((status = 200, body = hpcsera_api_types::WebhookDeliveryList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job_deliveries(
    State(st): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<hpcsera_api_types::WebhookDeliveryList>> {
    caller.require(Role::GetJobStatus)?;
    let id = job_id(&raw)?;
    visible_job(&st, &caller, &id).await?;
    let deliveries = st.store.job_deliveries(caller.0.project_id, &id).await?;
    Ok(Json(hpcsera_api_types::WebhookDeliveryList { deliveries }))
}

/// Parses `after`, `limit` and `wait` of an event read.
fn event_query(q: &Option<String>) -> ApiResult<(EventFilter, u64)> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_field("query", e.to_string()))?;
    let mut f = EventFilter {
        after_seq: 0,
        limit: 1000,
        site: None,
    };
    let mut wait = 0;
    for (k, v) in pairs {
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

/// Longest wait of an event read.
const MAX_EVENT_WAIT: u64 = 60;

/// Reads events; when there are none and `wait` > 0, waits until one is written (or the
/// time is up). Wake-ups come from any event, so every wake-up reads again.
async fn read_events<F, Fut>(st: &AppState, wait: u64, read: F) -> ApiResult<Vec<JobEvent>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<JobEvent>, hpcsera_store::StoreError>>,
{
    let mut changed = st.events.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        changed.borrow_and_update();
        let events = read().await?;
        let now = tokio::time::Instant::now();
        if !events.is_empty() || now >= deadline {
            return Ok(events);
        }
        // Another replica may write events too: look again every 2 s at the latest.
        let nap = (deadline - now).min(std::time::Duration::from_secs(2));
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// The job's event log: every transition and operation, with time and actor, oldest first.
/// `after` (an event's `seq`) continues a previous read; `wait` (seconds, at most 60) makes
/// the request wait for the next event when there is none yet (long poll), so a waiting client
/// does not busy-poll.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/events", tag = "jobs",
    params(("jobId" = String, Path, description = "job id (UUID)"),
        ("after" = Option<i64>, Query, description = "only events with a larger seq"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 1000"),
        ("wait" = Option<u64>, Query, description = "seconds to wait for an event when there is none (0 to 60)")),
    responses((status = 200, body = JobEventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job_events(
    State(st): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<JobEventList>> {
    caller.require(Role::GetJobStatus)?;
    let id = job_id(&raw)?;
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
    params(("after" = Option<i64>, Query, description = "only events with a larger seq"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 1000"),
        ("wait" = Option<u64>, Query, description = "seconds to wait for an event when there is none (0 to 60)")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(12345)), Some(12345));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor(""), None);
    }

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
