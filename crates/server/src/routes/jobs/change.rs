//! The client half of `PUT /job/{jobId}`: a change of `parameters`, `resources`, `metadata`
//! or `callbackUrl` by a holder of `UPDATE_Job`.
//!
//! Validates like a submission (the job type's parameters and resources, sizes, the callback
//! allow-list);
//! the store refuses the change once an agent has claimed the job. Never touches status.

use super::checks::{check_callback, check_metadata, check_parameters_size, code_refs};
use super::visible::visible_job;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JobId};
use crate::state::AppState;
use axum::Json;
use hpcsera_api_types::{Job, JobUpdate};
use hpcsera_store::JobChange;

/// Changes a job no agent has claimed yet, as the client asked.
pub(super) async fn change_job(
    st: AppState,
    caller: Caller,
    id: JobId,
    body: JobUpdate,
) -> ApiResult<Json<Job>> {
    if !body.is_client_change() {
        return Err(ApiError::invalid_field("body", "names nothing to change"));
    }
    let job = visible_job(&st, &caller, &id).await?;
    let mut errs = Vec::new();
    let mut refs = None;
    let spec = if body.parameters.is_some() || body.resources.is_some() {
        let (_, spec) = st
            .store
            .job_type(&job.site, caller.0.project_id, &job.job_type)
            .await?;
        Some(spec)
    } else {
        None
    };
    let params = match (&body.parameters, &spec) {
        (Some(p), Some(spec)) => match spec.validate_parameters(p) {
            Ok(v) => {
                check_parameters_size(&v, &mut errs);
                refs = Some(code_refs(spec, &v));
                Some(v)
            }
            Err(e) => {
                errs.extend(e);
                None
            }
        },
        _ => None,
    };
    let resources = match (&body.resources, &spec) {
        (Some(r), Some(spec)) => spec.validate_resources(r).map_err(|e| errs.extend(e)).ok(),
        _ => None,
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
                resources: resources.as_ref(),
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
