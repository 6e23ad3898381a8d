//! The sites page of a project: each site its agents publish (or an admin listed), the
//! project's agent health there (last seen, version, host), and its job types with their
//! parameters (type, bounds, pattern, values, default, description) and sub-jobs, with a link
//! to each job type's submission form (`submit`) for members with `POST_Job`.
//!
//! Two queries whatever the number of sites and types: `Store::list_sites` (what the API's
//! `GET /sites` answers) and `Store::project_job_types`. Like the API, any member sees it; a
//! non-member gets 404.

use super::access::{member_projects, to_first_project};
use super::access::{PageError, ProjectAccess};
use super::submit::{kind_text, show_value};
use super::{render, show_rfc3339, Nav, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hpcsera_api_types::{JobTypeSpec, ParamSpec, Role, SubJobKind};

/// The sites page and the job form.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/sites", get(first_project))
        .route("/ui/projects/{project}/sites", get(list))
}

/// One parameter as the page describes it.
pub(crate) struct ParamInfo {
    pub name: String,
    pub kind: String,
    pub default: String,
    pub required: bool,
    pub description: String,
}

pub(crate) struct TypeInfo {
    pub name: String,
    pub description: String,
    pub params: Vec<ParamInfo>,
    pub sub_jobs: String,
    /// The resources a client may set, and their rule in words.
    pub resources: Vec<(String, String)>,
}

pub(crate) struct SiteInfo {
    pub name: String,
    pub last_seen: String,
    pub version: String,
    pub host: String,
    pub types: Vec<TypeInfo>,
}

#[derive(Template)]
#[template(path = "ui/sites.html")]
struct SitesPage {
    nav: Nav,
    project: String,
    projects: Vec<String>,
    may_submit: bool,
    sites: Vec<SiteInfo>,
}

fn param_info(p: &ParamSpec) -> ParamInfo {
    ParamInfo {
        name: p.name.clone(),
        kind: kind_text(&p.kind),
        default: p.default.as_ref().map(show_value).unwrap_or_default(),
        required: p.is_required(),
        description: p.description.clone().unwrap_or_default(),
    }
}

fn type_info(t: &JobTypeSpec) -> TypeInfo {
    TypeInfo {
        name: t.name.clone(),
        description: t.description.clone(),
        params: t.parameters.iter().map(param_info).collect(),
        sub_jobs: t
            .sub_jobs
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    SubJobKind::Login => "login node",
                    SubJobKind::Batch => "batch",
                };
                format!("{} ({kind})", s.name)
            })
            .collect::<Vec<_>>()
            .join(" → "),
        resources: t
            .resources
            .0
            .iter()
            .map(|(n, r)| (n.as_str().to_string(), super::submit::resource_text(*n, r)))
            .collect(),
    }
}

/// `/ui/sites`: the first project's sites.
async fn first_project(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, PageError> {
    to_first_project(&state, &session, "sites").await
}

/// `GET /ui/projects/{project}/sites`.
async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Path(project): Path<String>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::of(&state, &session, &project).await?;
    let sites = state.store.list_sites(access.project_id).await?;
    let mut types: std::collections::HashMap<String, Vec<JobTypeSpec>> = Default::default();
    for (site, t) in state.store.project_job_types(access.project_id).await? {
        types.entry(site).or_default().push(t);
    }
    let mut out = Vec::with_capacity(sites.len());
    for s in sites {
        let mine = types.remove(&s.name).unwrap_or_default();
        out.push(SiteInfo {
            last_seen: s
                .last_seen_at
                .as_deref()
                .map_or_else(|| "never".into(), show_rfc3339),
            version: s.agent_version.unwrap_or_else(|| "unknown".into()),
            host: s.agent_host.unwrap_or_default(),
            types: mine.iter().map(type_info).collect(),
            name: s.name,
        });
    }
    let projects = member_projects(&state, &session).await?;
    Ok(render(
        StatusCode::OK,
        &SitesPage {
            nav: Nav::new(&session, "sites"),
            may_submit: access.may(Role::PostJob),
            project: access.project,
            projects,
            sites: out,
        },
    ))
}
