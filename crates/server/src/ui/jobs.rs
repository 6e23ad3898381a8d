//! The jobs list of a project: filters (status, site, job type), newest first, in pages with
//! the API's opaque cursor; and the navigation's way into a project's pages.
//!
//! The query is read by the API's own `job_filter` (the same names: `status`, `site`,
//! `jobType`, `cursor`, `limit`), so the page and `GET /job/findJobsByStatus` cannot disagree
//! about what a filter means; the page is one `Store::list_jobs` call. Seeing it needs
//! `GET_JobStatus`, the role that reads jobs in the API.

use super::access::{
    member_projects, site_names, to_first_project, PageError, ProjectAccess, READ_ROLES,
};
use super::{render, show_rfc3339, Nav, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hpcsera_api_types::{Job, JobStatus};

/// The jobs pages' routes (a job's own page and its forms are in `job`, its live output in
/// `live`).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/jobs", get(first_project))
        .route("/ui/projects/{project}/jobs", get(list))
}

/// `/ui/jobs`: the first project's jobs.
async fn first_project(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, PageError> {
    to_first_project(&state, &session, "jobs").await
}

/// One row of the list.
pub(crate) struct JobRow {
    pub id: String,
    pub job_type: String,
    pub site: String,
    pub status: &'static str,
    pub held: bool,
    pub pending: Option<&'static str>,
    pub owner: String,
    pub created: String,
    pub updated: String,
}

impl JobRow {
    pub(crate) fn of(j: Job) -> JobRow {
        JobRow {
            status: j.status.as_str(),
            held: j.held,
            pending: j.pending_operation.map(|p| p.operation.as_str()),
            created: show_rfc3339(&j.created_at),
            updated: show_rfc3339(&j.updated_at),
            id: j.id,
            job_type: j.job_type,
            site: j.site,
            owner: j.owner,
        }
    }
}

/// The filters as the form shows them again.
#[derive(Default)]
pub(crate) struct Filters {
    pub status: String,
    pub site: String,
    pub job_type: String,
    pub limit: String,
}

#[derive(Template)]
#[template(path = "ui/jobs.html")]
struct ListPage {
    nav: Nav,
    project: String,
    projects: Vec<String>,
    statuses: [JobStatus; 11],
    sites: Vec<String>,
    filters: Filters,
    problem: Option<String>,
    jobs: Vec<JobRow>,
    /// The link to the next (older) page, with the same filters.
    next: Option<String>,
    /// Whether this is a later page (a link back to the newest).
    paged: bool,
}

/// The query's pairs without empty values (a form sends `site=` for "any"), re-encoded for
/// the API's parser, and the filters to show in the form.
fn clean_query(raw: &Option<String>) -> (Option<String>, Filters) {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut filters = Filters::default();
    let pairs = raw
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.trim().is_empty()) {
        out.append_pair(k, v.trim());
        let shown = match k.as_str() {
            "status" => &mut filters.status,
            "site" => &mut filters.site,
            "jobType" => &mut filters.job_type,
            "limit" => &mut filters.limit,
            _ => continue,
        };
        *shown = v.trim().to_string();
    }
    let q = out.finish();
    ((!q.is_empty()).then_some(q), filters)
}

/// The next page's link: the same filters, the cursor after this page.
fn next_link(project: &str, filters: &Filters, cursor: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("status", &filters.status),
        ("site", &filters.site),
        ("jobType", &filters.job_type),
        ("limit", &filters.limit),
    ] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    q.append_pair("cursor", cursor);
    format!("/ui/projects/{project}/jobs?{}", q.finish())
}

/// `GET /ui/projects/{project}/jobs?status=&site=&jobType=&limit=&cursor=`.
async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, READ_ROLES).await?;
    let (query, filters) = clean_query(&raw);
    let paged = query.as_deref().is_some_and(|q| q.contains("cursor="));
    let (jobs, next, problem, status) = match crate::routes::jobs::job_filter(&query) {
        Ok(f) => {
            let (jobs, next) = state.store.list_jobs(access.project_id, &f).await?;
            let next = next.map(|seq| {
                next_link(
                    &access.project,
                    &filters,
                    &crate::routes::query::encode_cursor('j', seq),
                )
            });
            (jobs, next, None, StatusCode::OK)
        }
        Err(e) => (
            Vec::new(),
            None,
            Some(e.to_string()),
            StatusCode::BAD_REQUEST,
        ),
    };
    let sites = site_names(&state, access.project_id).await?;
    let projects = member_projects(&state, &session).await?;
    Ok(render(
        status,
        &ListPage {
            nav: Nav::new(&session, "jobs"),
            project: access.project,
            projects,
            statuses: JobStatus::ALL,
            sites,
            filters,
            problem,
            jobs: jobs.into_iter().map(JobRow::of).collect(),
            next,
            paged,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filters_are_dropped_and_the_rest_kept_for_the_next_page() {
        let (q, f) = clean_query(&Some("status=running&site=&jobType=+sim+&cursor=".into()));
        assert_eq!(q.as_deref(), Some("status=running&jobType=sim"));
        assert_eq!((f.status.as_str(), f.job_type.as_str()), ("running", "sim"));
        assert_eq!(
            next_link("p", &f, "ajEy"),
            "/ui/projects/p/jobs?status=running&jobType=sim&cursor=ajEy"
        );
        assert_eq!(clean_query(&None).0, None);
    }
}
