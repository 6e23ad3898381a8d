//! Which project a page under `/ui/projects/{project}/…` is about, and what the logged-in
//! person may do there: the roles of their membership, the most any token of theirs could
//! hold (`Store::member_roles`).
//!
//! A project the person is not a member of is "not found" (404), whether it exists or not,
//! as in the API; a page or form that needs a role the membership lacks is 403. It must never
//! show or do anything in a project from the URL alone.

use super::{render, UiError, UiForm, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_store::StoreError;

/// The project of a page and the person's roles in it.
pub(crate) struct ProjectAccess {
    pub project: String,
    pub project_id: i64,
    pub roles: RoleSet,
}

impl ProjectAccess {
    /// The person's access to `project`: 404 unless they are a member of it now.
    pub async fn of(
        state: &AppState,
        session: &UiSession,
        project: &str,
    ) -> Result<ProjectAccess, PageError> {
        let Some(project_id) = state.store.is_member(session.rec.user_id, project).await? else {
            return Err(UiError::NotFound.into());
        };
        let roles = state
            .store
            .member_roles(session.rec.user_id, project_id)
            .await?
            .ok_or(UiError::NotFound)?;
        Ok(ProjectAccess {
            project: project.to_string(),
            project_id,
            roles,
        })
    }

    /// A page's access: the membership, and one of `roles` (403 without).
    pub async fn for_page(
        state: &AppState,
        session: &UiSession,
        project: &str,
        roles: &'static [Role],
    ) -> Result<ProjectAccess, PageError> {
        let access = ProjectAccess::of(state, session, project).await?;
        access.require_any(roles)?;
        Ok(access)
    }

    /// A form's access: its CSRF token first (before anything is looked at), then as a page.
    pub async fn for_form(
        state: &AppState,
        session: &UiSession,
        form: &UiForm,
        project: &str,
        roles: &'static [Role],
    ) -> Result<ProjectAccess, PageError> {
        session.check_csrf(form)?;
        ProjectAccess::for_page(state, session, project, roles).await
    }

    /// After a form changed something: audited (as `what`), then on to `to` (303).
    pub fn changed(&self, state: &AppState, session: &UiSession, what: &str, to: &str) -> Response {
        session.changed(state, Some(&self.project), what, to)
    }

    /// Whether the membership holds `role`.
    pub fn may(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// 403 unless the membership holds one of `roles`.
    pub fn require_any(&self, roles: &'static [Role]) -> Result<(), PageError> {
        if roles.iter().any(|r| self.may(*r)) {
            Ok(())
        } else {
            Err(PageError::MissingRole(roles))
        }
    }
}

/// What a project page can fail with: the UI's errors, and a missing role.
#[derive(Debug)]
pub(crate) enum PageError {
    Ui(UiError),
    /// The membership holds none of these roles.
    MissingRole(&'static [Role]),
}

impl From<UiError> for PageError {
    fn from(e: UiError) -> Self {
        PageError::Ui(e)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => PageError::Ui(UiError::NotFound),
            e => PageError::Ui(UiError::Internal(e)),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct RoleErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Ui(e) => e.into_response(),
            PageError::MissingRole(roles) => {
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                let message = format!(
                    "Your membership of this project does not allow this (it needs {}). \
                     Nothing was changed. Ask an administrator of the project.",
                    names.join(" or ")
                );
                render(
                    StatusCode::FORBIDDEN,
                    &RoleErrorPage {
                        title: "Not allowed",
                        message: &message,
                    },
                )
            }
        }
    }
}

/// Who may see a project's jobs: the role that reads them in the API.
pub(crate) const READ_ROLES: &[Role] = &[Role::GetJobStatus];

/// The names of the projects the person is a member of (the pages' project switcher).
pub(crate) async fn member_projects(
    state: &AppState,
    session: &UiSession,
) -> Result<Vec<String>, StoreError> {
    Ok(state
        .store
        .user_memberships(session.rec.user_id)
        .await?
        .into_iter()
        .map(|m| m.project)
        .collect())
}

/// The names of the project's sites.
pub(crate) async fn site_names(
    state: &AppState,
    project_id: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(state
        .store
        .list_sites(project_id)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect())
}

/// The navigation's entry `section` (`jobs`, `code`): that page of the person's first project,
/// or the projects page (which says how to become a member) without one.
pub(crate) async fn to_first_project(
    state: &AppState,
    session: &UiSession,
    section: &str,
) -> Result<Response, PageError> {
    let to = match member_projects(state, session).await?.first() {
        Some(p) => format!("/ui/projects/{p}/{section}"),
        None => "/ui/projects".to_string(),
    };
    Ok(Redirect::to(&to).into_response())
}

/// A job id as the URL has it: anything but a UUID names no job (404).
pub(crate) fn job_id(id: &str) -> Result<(), PageError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| UiError::NotFound.into())
}
