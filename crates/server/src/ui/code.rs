//! The code bundle pages: a project's bundles, and one bundle — its client-side and HPC-side
//! SHA-256 side by side, its file list, the jobs that wait for it — with the approve and
//! reject forms.
//!
//! A decision goes through `bundles::decide_bundle` (the admin CLI's path: `Store::decide_bundle`
//! and the rejected file's retention) and then wakes the agents' long polls and the event
//! readers at once, which only the server can. Seeing the pages needs one of the roles that
//! may read a bundle's status in the API (`POST_Code`, `GET_JobStatus`, `GET_Code`), as does
//! deciding; the store checks the membership again inside the decision. Nothing here unpacks
//! or runs a bundle: the file list is `bundles::list_bundle_files`, the API's listing.

use super::access::{PageError, ProjectAccess};
use super::{render, show_bytes, show_rfc3339, Nav, UiError, UiForm, UiSession};
use crate::extract::CodeId;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hpcsera_api_types::{is_code_id, CodeBundle, CodeFileList, CodeStatus, Role};
use hpcsera_approval::ApprovalMessage;
use hpcsera_store::StoreError;

/// Who may see a project's bundles and decide on them: the roles of `GET /code/{id}/status`.
pub(crate) const CODE_ROLES: &[Role] = &[Role::PostCode, Role::GetJobStatus, Role::GetCode];
/// Most waiting jobs a bundle's page lists.
const MAX_WAITING_SHOWN: u32 = 200;
/// Longest reason of a decision, in characters.
const MAX_REASON_CHARS: usize = 1000;

/// The code pages' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/code", get(first_project))
        .route("/ui/projects/{project}/code", get(list))
        .route("/ui/projects/{project}/code/{id}", get(bundle))
        .route("/ui/projects/{project}/code/{id}/decision", post(decide))
}

/// `/ui/code` (the navigation's entry): the first project's bundles.
async fn first_project(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, PageError> {
    super::access::to_first_project(&state, &session, "code").await
}

/// How the cluster's digest compares with the upload's.
fn digest_state(b: &CodeBundle) -> &'static str {
    match &b.hpc_sha256 {
        None => "unreported",
        Some(_) if b.digests_match => "match",
        Some(_) => "differs",
    }
}

pub(crate) struct BundleRow {
    pub id: String,
    pub short: String,
    pub status: &'static str,
    pub size: String,
    pub uploaded_by: String,
    pub uploaded: String,
    pub digest: &'static str,
    pub waiting: i64,
}

#[derive(Template)]
#[template(path = "ui/code_list.html")]
struct ListPage {
    nav: Nav,
    project: String,
    projects: Vec<String>,
    bundles: Vec<BundleRow>,
}

/// `GET /ui/projects/{project}/code`: the project's bundles, newest first.
async fn list(
    State(state): State<AppState>,
    session: UiSession,
    Path(project): Path<String>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, CODE_ROLES).await?;
    let waiting = state
        .store
        .jobs_awaiting_each_bundle(access.project_id)
        .await?;
    let bundles = state
        .store
        .list_bundles(access.project_id)
        .await?
        .into_iter()
        .map(|b| BundleRow {
            short: b.id.chars().take(12).collect(),
            status: b.status.as_str(),
            size: show_bytes(b.size.max(0) as u64),
            uploaded_by: b.uploaded_by.clone(),
            uploaded: show_rfc3339(&b.created_at),
            digest: digest_state(&b),
            waiting: waiting.get(&b.id).copied().unwrap_or(0),
            id: b.id,
        })
        .collect();
    let projects = super::access::member_projects(&state, &session).await?;
    Ok(render(
        StatusCode::OK,
        &ListPage {
            nav: Nav::new(&session, "code"),
            project: access.project,
            projects,
            bundles,
        },
    ))
}

pub(crate) struct WaitingRow {
    pub id: String,
    pub job_type: String,
    pub site: String,
    pub owner: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "ui/code_bundle.html")]
struct BundlePage {
    nav: Nav,
    project: String,
    bundle: CodeBundle,
    short: String,
    size: String,
    uploaded: String,
    decided: String,
    digest: &'static str,
    pending: bool,
    waiting: Vec<WaitingRow>,
    files: Option<CodeFileList>,
    /// Why a decision was not made (shown above the forms).
    problem: Option<String>,
    /// The reason as typed, shown again with a problem.
    reason: String,
    max_reason: usize,
    /// The message to sign for an approval with an SSH signature (pending, digests equal).
    signing: Option<Signing>,
}

/// `GET /ui/projects/{project}/code/{id}`.
async fn bundle(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, CODE_ROLES).await?;
    let at = BundleAt::new(&state, &session, &access, &id);
    at.page(StatusCode::OK, None, String::new()).await
}

/// Bundle `id`'s page as the person of `session` sees it in the project of `access`.
#[derive(Clone, Copy)]
pub(super) struct BundleAt<'a> {
    state: &'a AppState,
    session: &'a UiSession,
    access: &'a ProjectAccess,
    id: &'a str,
}

impl<'a> BundleAt<'a> {
    pub(super) fn new(
        state: &'a AppState,
        session: &'a UiSession,
        access: &'a ProjectAccess,
        id: &'a str,
    ) -> Self {
        BundleAt {
            state,
            session,
            access,
            id,
        }
    }

    /// The page with `status`, and the problem of a decision that was refused (with the
    /// reason as it was typed).
    pub(super) async fn page(
        self,
        status: StatusCode,
        problem: Option<String>,
        reason: String,
    ) -> Result<Response, PageError> {
        let BundleAt {
            state,
            session,
            access,
            id,
        } = self;
        if !is_code_id(id) {
            return Err(UiError::NotFound.into());
        }
        let bundle = state.store.get_bundle(access.project_id, id).await?;
        let waiting: Vec<WaitingRow> = state
            .store
            .jobs_awaiting_bundle(access.project_id, id, MAX_WAITING_SHOWN)
            .await?
            .into_iter()
            .map(|j| WaitingRow {
                created: show_rfc3339(&j.created_at),
                id: j.id,
                job_type: j.job_type,
                site: j.site,
                owner: j.owner,
            })
            .collect();
        let signing =
            if bundle.status == CodeStatus::PendingApproval && digest_state(&bundle) == "match" {
                let sites: Vec<String> = waiting.iter().map(|w| w.site.clone()).collect();
                signing(state, access, id, &sites).await?
            } else {
                None
            };
        let path = crate::config::code_file_path(&state.config.code_dir, id);
        let files = match crate::bundles::list_bundle_files(&path).await {
            Ok(list) => Some(list),
            Err(crate::bundles::ListError::Gone) => None,
            Err(crate::bundles::ListError::Io(e)) => {
                tracing::warn!(error = %e, "cannot list a code bundle's files");
                None
            }
        };
        Ok(render(
            status,
            &BundlePage {
                nav: Nav::new(session, "code"),
                project: access.project.clone(),
                short: bundle.id.chars().take(12).collect(),
                size: show_bytes(bundle.size.max(0) as u64),
                uploaded: show_rfc3339(&bundle.created_at),
                decided: bundle
                    .decided_at
                    .as_deref()
                    .map(show_rfc3339)
                    .unwrap_or_default(),
                digest: digest_state(&bundle),
                pending: bundle.status == CodeStatus::PendingApproval,
                bundle,
                waiting,
                files,
                problem,
                reason,
                max_reason: MAX_REASON_CHARS,
                signing,
            },
        ))
    }
}

/// The checks of a form posted about bundle `id` (the session, CSRF, a code role in the
/// project): the person's access and the id, parsed (a malformed one is not found).
pub(super) async fn code_form(
    state: &AppState,
    session: &UiSession,
    form: &UiForm,
    project: &str,
    id: &str,
) -> Result<(ProjectAccess, CodeId), PageError> {
    let access = ProjectAccess::for_form(state, session, form, project, CODE_ROLES).await?;
    let code_id = CodeId::parse(id).map_err(|_| UiError::NotFound)?;
    Ok((access, code_id))
}

/// What the decision form asks for: approve or reject, and the reason (required to reject).
fn read_decision(form: &UiForm) -> Result<(bool, Option<String>), String> {
    let reason = form
        .get("reason")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if let Some(r) = &reason {
        if r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control) {
            return Err(format!(
                "Reason: one line of at most {MAX_REASON_CHARS} characters."
            ));
        }
    }
    match form.get("decision") {
        Some("approve") => Ok((true, reason)),
        Some("reject") if reason.is_some() => Ok((false, reason)),
        Some("reject") => Err(
            "Reason: say why the bundle is rejected; its waiting jobs fail with this reason."
                .into(),
        ),
        _ => Err("Choose approve or reject.".into()),
    }
}

/// `POST /ui/projects/{project}/code/{id}/decision`: approves or rejects the bundle, then
/// wakes the agents (approved jobs are queued) and the event readers (their jobs changed).
async fn decide(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, PageError> {
    let (access, _) = code_form(&state, &session, &form, &project, &id).await?;
    let typed = form.get("reason").unwrap_or("").to_string();
    let at = BundleAt::new(&state, &session, &access, &id);
    let refused = |status, problem: String| at.page(status, Some(problem), typed.clone());
    let (approve, reason) = match read_decision(&form) {
        Ok(d) => d,
        Err(problem) => return refused(StatusCode::UNPROCESSABLE_ENTITY, problem).await,
    };
    let decided = crate::bundles::decide_bundle(
        &state.store,
        &state.config.code_dir,
        &access.project,
        &id,
        &session.rec.user,
        approve,
        reason.as_deref(),
    )
    .await;
    match decided {
        Ok(_) => {}
        Err(StoreError::Conflict(why)) => {
            return refused(StatusCode::CONFLICT, format!("Nothing was decided: {why}.")).await
        }
        // The membership ended meanwhile (the store checks it in the decision's transaction).
        Err(StoreError::Invalid(_)) => return Err(UiError::NotFound.into()),
        Err(e) => return Err(e.into()),
    }
    state.wake_agents();
    state.events_written();
    let what = if approve {
        "/ui/code/approve"
    } else {
        "/ui/code/reject"
    };
    let to = format!("/ui/projects/{}/code/{id}", access.project);
    Ok(access.changed(&state, &session, what, &to))
}

/// What the page offers to sign.
pub(crate) struct Signing {
    /// The canonical message, exactly as it is to be signed.
    pub message: String,
    /// The sites it names, comma-separated (the form's and the download link's `sites`).
    pub sites: String,
}

/// The sites an approval from the page names: those of the jobs waiting for the bundle, or,
/// when none waits, every site the project has.
pub(crate) async fn signing(
    state: &AppState,
    access: &ProjectAccess,
    id: &str,
    waiting_sites: &[String],
) -> Result<Option<Signing>, PageError> {
    let mut sites: Vec<String> = waiting_sites.to_vec();
    if sites.is_empty() {
        sites = super::access::site_names(state, access.project_id).await?;
    }
    Ok(message(id, &access.project, &sites).map(|m| Signing {
        sites: m.sites.join(","),
        message: m.render(),
    }))
}

pub(crate) fn message(id: &str, project: &str, sites: &[String]) -> Option<ApprovalMessage> {
    ApprovalMessage::new(id, project, sites, None).ok()
}
