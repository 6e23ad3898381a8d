//! Sites and their job types: the sites a project sees (with its agent's health), the job
//! types there, and the agent's publication of its set.
//!
//! Job types belong to (site, project): a read or a publication never reaches another
//! project's types. Only an agent token of the site publishes.

use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiJson, Caller};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hpcsera_api_types::provenance::AgentKey;
use hpcsera_api_types::{
    is_valid_name, ErrorBody, FieldError, JobTypeList, PublishJobTypes, SiteList,
};

/// The sites the caller's project sees, with its own agent's health there (last time it was
/// heard from, its version and host) and its own job types' names.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites",
    responses((status = 200, body = SiteList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_sites(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<SiteList>> {
    let mut sites = st.store.list_sites(caller.0.project_id).await?;
    sites.retain(|s| caller.may_use_site(&s.name));
    Ok(Json(SiteList { sites }))
}

/// The job types the caller's project's agents publish for a site, with their parameters.
#[utoipa::path(get, path = "/api/v1/sites/{site}/jobTypes", tag = "sites",
    params(("site" = String, Path, description = "site name")),
    responses((status = 200, body = JobTypeList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_job_types(
    State(st): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
) -> ApiResult<Json<JobTypeList>> {
    if !caller.may_use_site(&site) || !is_valid_name(&site, true) {
        return Err(ApiError::NotFound("site not found".into()));
    }
    let job_types = st.store.job_types(&site, caller.0.project_id).await?;
    Ok(Json(JobTypeList { site, job_types }))
}

/// The agent publishes the complete set of job types it runs for its project at its site
/// (replacing that project's previous set; other projects' job types at the site are
/// untouched). Needs an agent token (`GET_Job`, restricted to that site).
#[utoipa::path(put, path = "/api/v1/sites/{site}/jobTypes", tag = "agent",
    params(("site" = String, Path, description = "site name")),
    request_body = PublishJobTypes,
    responses((status = 204, description = "published"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_job_types(
    State(st): State<AppState>,
    agent: AgentCaller,
    Path(site): Path<String>,
    ApiJson(mut body): ApiJson<PublishJobTypes>,
) -> ApiResult<StatusCode> {
    if !is_valid_name(&site, true) {
        return Err(ApiError::invalid_field("site", "is not a valid site name"));
    }
    if agent.site() != site {
        return Err(ApiError::Forbidden(format!(
            "publishing job types for site {site:?} needs a token restricted to that site"
        )));
    }
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, jt) in body.job_types.iter().enumerate() {
        if let Err(e) = jt.check() {
            errs.extend(
                e.into_iter()
                    .map(|f| FieldError::new(format!("jobTypes[{i}].{}", f.field), f.problem)),
            );
        }
        if !names.insert(jt.name.as_str()) {
            errs.push(FieldError::new(
                format!("jobTypes[{i}].name"),
                format!("duplicate job type {:?}", jt.name),
            ));
        }
    }
    for (field, v) in [
        ("agentVersion", &body.agent_version),
        ("agentHost", &body.agent_host),
    ] {
        if let Err(e) = hpcsera_api_types::check_agent_label(field, v.as_deref()) {
            errs.push(e);
        }
    }
    let key = match body.agent_key.as_deref().map(AgentKey::parse) {
        Some(Err(e)) => {
            errs.push(FieldError::new("agentKey", e.to_string()));
            None
        }
        Some(Ok(k)) => Some(k.to_string()),
        None => None,
    };
    if !errs.is_empty() {
        return Err(ApiError::invalid(errs));
    }
    // Resource rules are kept canonical (bytes, seconds), whoever wrote "4G" or "1h".
    for jt in &mut body.job_types {
        jt.resources = jt.resources.canonical();
    }
    st.store
        .publish_job_types(
            &site,
            agent.token().project_id,
            body.agent_version.as_deref(),
            body.agent_host.as_deref(),
            &body.job_types,
        )
        .await?;
    if let Some(k) = key {
        st.store
            .set_agent_key(&site, agent.token().project_id, &k)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
