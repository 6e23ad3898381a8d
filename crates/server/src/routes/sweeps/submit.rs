//! `POST /sweeps`: many jobs of one job type in one request, validated as a whole (a 422
//! lists the first [`MAX_SWEEP_PROBLEMS`] problems, each naming where the bad value was
//! written and the first member it makes bad) and stored in one transaction; an
//! `Idempotency-Key` makes retries safe, as for `POST /job`.
//!
//! Never claims or dispatches a member; the store writes the sweep, its members and their
//! first events together.

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller};
use crate::routes::jobs::checks::{
    check_callback, check_metadata, check_parameters_size, code_refs,
};
use crate::routes::jobs::{idempotency_key, job_type_of, request_hash};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::sweep::{member_problem_field, MemberSpec};
use hpcsera_api_types::{
    ErrorBody, FieldError, JobTypeSpec, NewSweep, Role, Sweep, MAX_SWEEP_MEMBERS,
    MAX_SWEEP_PROBLEMS,
};
use hpcsera_store::{NewMember, NewSweepRecord};
use std::collections::HashSet;

/// Submit a sweep: a job type, base `parameters` (and `resources`) and either
/// `parameterSets` (one member each) or `grid` (one member per combination of values; names
/// in sorted order, the last varies fastest), at most 10,000 members. Every member is
/// validated like `POST /job`; a 422 lists the first 20 problems, each naming the value
/// (`grid.steps[1]`, `parameterSets[3].mode`, `parameters.x`) and the first member it makes
/// bad, and counts the rest in `moreFields`. Nothing is stored unless every member is good.
/// The body may be up to 16 MiB (or `--max-body-bytes`, if larger).
#[utoipa::path(post, path = "/api/v1/sweeps", tag = "sweeps",
    request_body = NewSweep,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the submission safe to retry (at most 255 characters)")),
    responses(
        (status = 201, body = Sweep, description = "created"),
        (status = 200, body = Sweep, description = "an earlier submission with the same Idempotency-Key"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_sweep(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewSweep>,
) -> ApiResult<Response> {
    caller.require(Role::PostJob)?;
    caller.require_site(&body.site)?;
    let idempotency_key = idempotency_key(&headers)?;
    let (site_id, spec) = job_type_of(&st, caller.0.project_id, &body.site, &body.job_type).await?;
    let specs = body.members().map_err(ApiError::invalid)?;
    let mut errs = Vec::new();
    check_metadata(body.metadata.as_ref(), &mut errs);
    check_callback(&st, body.callback_url.as_deref(), &mut errs);
    let resources = spec
        .validate_resources(&body.resources)
        .unwrap_or_else(|e| {
            errs.extend(e);
            Default::default()
        });
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    let members = validate_members(&body, &spec, specs)?;
    let request_hash = idempotency_key.as_ref().map(|_| request_hash(&body));
    let actor = caller.user_actor();
    let submitted = st
        .store
        .create_sweep(&NewSweepRecord {
            project_id: caller.0.project_id,
            owner_id: caller.0.user_id,
            site_id,
            job_type: &body.job_type,
            parameters: &body.parameters,
            resources: &resources,
            metadata: body.metadata.as_ref(),
            callback_url: body.callback_url.as_deref(),
            members: &members,
            idempotency: idempotency_key.as_deref().zip(request_hash),
            actor: &actor,
        })
        .await?;
    if submitted.created {
        st.wake_agents();
        st.events_written();
    }
    Ok(created_response(&submitted.sweep, submitted.created))
}

/// Every member's parameters checked against the job type (defaults filled in, at most
/// 64 KiB each); the problems of the whole sweep as one 422.
fn validate_members(
    body: &NewSweep,
    spec: &JobTypeSpec,
    specs: Vec<MemberSpec>,
) -> ApiResult<Vec<NewMember>> {
    let mut members = Vec::with_capacity(specs.len().min(MAX_SWEEP_MEMBERS));
    let mut problems: Vec<FieldError> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut uncounted = 0;
    for m in specs {
        let mut errs = Vec::new();
        let params = match spec.validate_parameters(&m.parameters) {
            Ok(p) => p,
            Err(e) => {
                errs.extend(e);
                Default::default()
            }
        };
        check_parameters_size(&params, &mut errs);
        for e in errs {
            let field = member_problem_field(body, &m, &e.field);
            // A grid value makes many members bad: it is named once, with the first.
            if !seen.insert(format!("{field}\u{0}{}", e.problem)) {
                continue;
            }
            if problems.len() < MAX_SWEEP_PROBLEMS {
                problems.push(FieldError::new(
                    field,
                    format!("{} (member {})", e.problem, m.index),
                ));
            } else {
                uncounted += 1;
            }
        }
        if problems.is_empty() {
            let code_refs = code_refs(spec, &params);
            members.push(NewMember {
                index: m.index,
                parameters: params,
                code_refs,
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_at_most(
            problems,
            MAX_SWEEP_PROBLEMS,
            uncounted,
        ));
    }
    Ok(members)
}

/// 201 with `Location` for a new sweep; 200 with `Idempotent-Replayed: true` for an earlier
/// submission with the same key.
fn created_response(sweep: &Sweep, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(sweep)).into_response();
    let location = format!("{}/sweeps/{}", hpcsera_api_types::API_BASE, sweep.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if !created {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}
