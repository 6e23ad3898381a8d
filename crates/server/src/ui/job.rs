//! One job's page: what it is (parameters, resources when the job has them, metadata), what
//! happened (sub-jobs, events), its output so far (the last 64 KiB of each stream, followed
//! live by `live`), its result files to download, and the cancel, hold, release and delete
//! buttons.
//!
//! The buttons are shown, and their forms accepted, only for a membership with `UPDATE_Job`
//! (cancel, hold, release) or `DELETE_Job` (delete); they go through the API's own
//! `operate`/`remove` (the store's `request_operation`/`delete_job`, then the wake-ups), after
//! the session's CSRF token. The page itself needs `GET_JobStatus`. Result files are sent as
//! downloads (`attachment`, `application/octet-stream`), never shown as pages of this site.

use super::access::{job_id, PageError, ProjectAccess, READ_ROLES};
use super::{render, show_rfc3339, Nav, UiError, UiForm, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hpcsera_api_types::{escape_controls, Job, Operation, OutputStream, ParamKind, Role};
use hpcsera_store::{EventFilter, StoreError};
use serde_json::Value;

/// How much of each output stream the page shows (the end of it).
pub(crate) const OUTPUT_TAIL_BYTES: i64 = 64 * 1024;
/// Who may cancel, hold and release, and who may delete: the API's roles for them.
const UPDATE: &[Role] = &[Role::UpdateJob];
const DELETE: &[Role] = &[Role::DeleteJob];
/// Most events the page lists (the first ones).
const MAX_EVENTS_SHOWN: u32 = 1000;

/// A job's page, its forms, its result files and its live output.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/projects/{project}/jobs/{id}", get(job_page))
        .route(
            "/ui/projects/{project}/jobs/{id}/operation",
            post(operation),
        )
        .route("/ui/projects/{project}/jobs/{id}/delete", post(delete))
        .route(
            "/ui/projects/{project}/jobs/{id}/results/{*name}",
            get(result_file),
        )
        .route(
            "/ui/projects/{project}/jobs/{id}/live",
            get(super::live::live),
        )
}

pub(crate) struct ParamRow {
    pub name: String,
    pub value: String,
    /// The bundle page to link to, for a code parameter.
    pub code: Option<String>,
}

pub(crate) struct SubRow {
    pub name: String,
    pub status: &'static str,
    pub batch_id: String,
    pub exit_code: String,
    pub message: String,
}

pub(crate) struct EventRow {
    pub seq: i64,
    pub at: String,
    pub kind: &'static str,
    pub change: String,
    pub actor: String,
    pub message: String,
}

pub(crate) struct ResultRow {
    pub name: String,
    pub href: String,
    pub size: String,
    pub sha256: String,
    pub created: String,
}

/// The end of one output stream as the page shows it.
pub(crate) struct OutputView {
    pub text: String,
    /// Where the shown text starts and ends (the live stream continues from `end`).
    pub start: i64,
    pub end: i64,
    pub truncated: bool,
}

#[derive(Template)]
#[template(path = "ui/job.html")]
struct JobPage {
    nav: Nav,
    project: String,
    job: Job,
    status: &'static str,
    created: String,
    updated: String,
    finished: String,
    params: Vec<ParamRow>,
    resources: Vec<(String, String)>,
    metadata: Option<String>,
    sub_jobs: Vec<SubRow>,
    events: Vec<EventRow>,
    events_cut: bool,
    results: Vec<ResultRow>,
    stdout: OutputView,
    stderr: OutputView,
    /// The live output's URL, while the job has not ended.
    live: Option<String>,
    may_update: bool,
    may_delete: bool,
    ended: bool,
    /// Why an operation was refused (shown above the buttons).
    problem: Option<String>,
}

/// `GET /ui/projects/{project}/jobs/{id}`.
async fn job_page(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, READ_ROLES).await?;
    job_id(&id)?;
    page(&state, &session, &access, &id, StatusCode::OK, None).await
}

/// A parameter's value for people: strings as they are (controls escaped), others as JSON.
fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => escape_controls(s).into_owned(),
        other => other.to_string(),
    }
}

/// The parameters, with a link to the bundle of each code parameter (known from the job
/// type, when the site still offers it).
async fn param_rows(state: &AppState, access: &ProjectAccess, job: &Job) -> Vec<ParamRow> {
    let code: Vec<String> = match state
        .store
        .job_type(&job.site, access.project_id, &job.job_type)
        .await
    {
        Ok((_, spec)) => spec
            .parameters
            .into_iter()
            .filter(|p| p.kind == ParamKind::Code)
            .map(|p| p.name)
            .collect(),
        Err(_) => Vec::new(),
    };
    job.parameters
        .iter()
        .map(|(name, v)| ParamRow {
            name: escape_controls(name).into_owned(),
            value: show_value(v),
            code: v
                .as_str()
                .filter(|id| code.contains(name) && hpcsera_api_types::is_code_id(id))
                .map(|id| format!("/ui/projects/{}/code/{id}", access.project)),
        })
        .collect()
}

/// The job's resources as name and value for people (`4G`, `1h30m`), then what the batch
/// system granted (`granted`, as `name=value` pairs in canonical units).
fn resource_rows(job: &Job) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = job
        .resources
        .iter()
        .map(|(n, v)| (n.to_string(), n.show_value(&v)))
        .collect();
    if let Some(Value::Object(g)) = job
        .granted_resources
        .as_ref()
        .and_then(|g| serde_json::to_value(g).ok())
    {
        let text: Vec<String> = g
            .iter()
            .map(|(k, v)| format!("{k}={}", show_value(v)))
            .collect();
        rows.push(("granted".into(), text.join(" ")));
    }
    rows
}

/// The last [`OUTPUT_TAIL_BYTES`] of a stream that holds about `total` bytes.
async fn tail(
    state: &AppState,
    access: &ProjectAccess,
    id: &str,
    stream: OutputStream,
    total: u64,
) -> Result<OutputView, PageError> {
    let start = (total as i64 - OUTPUT_TAIL_BYTES).max(0);
    let slice = state
        .store
        .read_output(access.project_id, id, stream, start, OUTPUT_TAIL_BYTES)
        .await?;
    // A tail may start inside a character: drop its continuation bytes.
    let skip = if start > 0 {
        slice
            .data
            .iter()
            .take(3)
            .take_while(|b| (0x80..0xc0).contains(*b))
            .count()
    } else {
        0
    };
    Ok(OutputView {
        text: String::from_utf8_lossy(&slice.data[skip..]).into_owned(),
        start,
        end: slice.next_offset,
        truncated: slice.truncated,
    })
}

fn sub_rows(job: &Job) -> Vec<SubRow> {
    job.sub_jobs
        .iter()
        .map(|s| SubRow {
            name: s.name.clone(),
            status: s.status.as_str(),
            batch_id: s.batch_job_id.clone().unwrap_or_default(),
            exit_code: s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            message: s.message.clone().unwrap_or_default(),
        })
        .collect()
}

fn event_rows(events: Vec<hpcsera_api_types::JobEvent>) -> Vec<EventRow> {
    events
        .into_iter()
        .map(|e| EventRow {
            seq: e.seq,
            at: show_rfc3339(&e.at),
            kind: e.kind.as_str(),
            change: match (e.from_status, e.to_status) {
                (Some(f), Some(t)) => format!("{f} → {t}"),
                (None, Some(t)) => t.to_string(),
                _ => String::new(),
            },
            actor: e.actor.to_string(),
            message: e.message.unwrap_or_default(),
        })
        .collect()
}

async fn result_rows(
    state: &AppState,
    access: &ProjectAccess,
    id: &str,
) -> Result<Vec<ResultRow>, PageError> {
    Ok(state
        .store
        .list_results(access.project_id, id)
        .await?
        .into_iter()
        .map(|r| ResultRow {
            href: format!(
                "/ui/projects/{}/jobs/{id}/results/{}",
                access.project,
                r.name
                    .split('/')
                    .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
                    .collect::<Vec<String>>()
                    .join("/")
            ),
            size: super::show_bytes(r.size),
            sha256: r.sha256,
            created: show_rfc3339(&r.created_at),
            name: r.name,
        })
        .collect())
}

/// The job's page, with the problem of an operation that was refused.
async fn page(
    state: &AppState,
    session: &UiSession,
    access: &ProjectAccess,
    id: &str,
    status: StatusCode,
    problem: Option<String>,
) -> Result<Response, PageError> {
    let job = state.store.get_job(access.project_id, id).await?;
    let events = state
        .store
        .job_events(
            access.project_id,
            id,
            &EventFilter {
                after_seq: 0,
                limit: MAX_EVENTS_SHOWN,
                site: None,
            },
        )
        .await?;
    let stdout = tail(
        state,
        access,
        id,
        OutputStream::Stdout,
        job.output_bytes.stdout,
    )
    .await?;
    let stderr = tail(
        state,
        access,
        id,
        OutputStream::Stderr,
        job.output_bytes.stderr,
    )
    .await?;
    let ended = job.status.is_terminal();
    let live = (!ended).then(|| {
        format!(
            "/ui/projects/{}/jobs/{id}/live?stdout={}&stderr={}",
            access.project, stdout.end, stderr.end
        )
    });
    let page = JobPage {
        nav: Nav::new(session, "jobs"),
        project: access.project.clone(),
        status: job.status.as_str(),
        created: show_rfc3339(&job.created_at),
        updated: show_rfc3339(&job.updated_at),
        finished: job
            .finished_at
            .as_deref()
            .map(show_rfc3339)
            .unwrap_or_default(),
        params: param_rows(state, access, &job).await,
        resources: resource_rows(&job),
        metadata: job
            .metadata
            .as_ref()
            .and_then(|m| serde_json::to_string_pretty(m).ok()),
        sub_jobs: sub_rows(&job),
        events_cut: events.len() >= MAX_EVENTS_SHOWN as usize,
        events: event_rows(events),
        results: result_rows(state, access, id).await?,
        stdout,
        stderr,
        live,
        may_update: access.may(Role::UpdateJob),
        may_delete: access.may(Role::DeleteJob),
        ended,
        problem,
        job,
    };
    Ok(render(status, &page))
}

/// `POST /ui/projects/{project}/jobs/{id}/operation` (`operation` = cancel, hold, release).
async fn operation(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_form(&state, &session, &form, &project, UPDATE).await?;
    job_id(&id)?;
    let op: Operation = form
        .get("operation")
        .and_then(|o| o.parse().ok())
        .ok_or(UiError::BadForm)?;
    let actor = format!("user:{}", session.rec.user);
    match crate::routes::jobs::operate(&state, access.project_id, &id, op, &actor).await {
        Ok(_) => {}
        Err(StoreError::Conflict(why)) => {
            let problem = format!("The job was not {}: {why}.", past(op));
            return page(
                &state,
                &session,
                &access,
                &id,
                StatusCode::CONFLICT,
                Some(problem),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    let to = format!("/ui/projects/{}/jobs/{id}", access.project);
    Ok(access.changed(&state, &session, &format!("/ui/jobs/{}", op.as_str()), &to))
}

fn past(op: Operation) -> &'static str {
    match op {
        Operation::Cancel => "cancelled",
        Operation::Hold => "held",
        Operation::Release => "released",
    }
}

/// `POST /ui/projects/{project}/jobs/{id}/delete`: deletes the job (an agent that holds it
/// cancels it first), back to the list.
async fn delete(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_form(&state, &session, &form, &project, DELETE).await?;
    job_id(&id)?;
    let actor = format!("user:{}", session.rec.user);
    crate::routes::jobs::remove(&state, access.project_id, &id, &actor).await?;
    let to = format!("/ui/projects/{}/jobs", access.project);
    Ok(access.changed(&state, &session, "/ui/jobs/delete", &to))
}

/// A file name for `Content-Disposition`: the last part of the result's name, only characters
/// that need no quoting.
fn download_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if clean.trim_matches('.').is_empty() {
        "result".into()
    } else {
        clean
    }
}

/// `GET /ui/projects/{project}/jobs/{id}/results/{name}`: a result file, as a download.
async fn result_file(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id, name)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, READ_ROLES).await?;
    job_id(&id)?;
    let (_, bytes) = state
        .store
        .get_result(access.project_id, &id, &name)
        .await?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        download_name(&name)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_need_no_quoting() {
        assert_eq!(download_name("out/data.csv"), "data.csv");
        assert_eq!(download_name("a\"b;c\r\n.txt"), "abc.txt");
        assert_eq!(download_name(".."), "result");
        assert_eq!(download_name("ä"), "result");
    }
}
