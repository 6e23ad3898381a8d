//! The admin pages (`/ui/admin/…`): users (list, invite, disable/enable, the admin flag),
//! projects (list, create) and their memberships with roles (add, change roles, remove),
//! sites and which projects' agents serve them, and the audit log with filters.
//!
//! Only accounts with the admin flag (`hpcsera admin user add --admin`, `admin user admin
//! NAME`) see them: for everyone else every admin path, page or form, is 404 ("no such page,
//! or not yours to see"), the same answer as another project's page, so the pages do not say
//! they exist. Every form carries the session's CSRF token, checked before anything else.
//! The changes are the admin CLI's own store calls (`create_project`, `add_member_with_roles`,
//! `remove_member`, `set_user_disabled`, `set_user_admin`, `create_invite`, `audit_page`), so
//! the two cannot differ; each change made here is audited as `/ui/admin/…`.

mod audit;
mod projects;
mod users;

use super::{render, Nav, UiError, UiForm, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_store::StoreError;

/// The admin pages' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/admin",
            get(|_: Admin| async { Redirect::to("/ui/admin/users") }),
        )
        .route("/ui/admin/sites", get(sites))
        .merge(users::routes())
        .merge(projects::routes())
        .merge(audit::routes())
}

/// A logged-in administrator. Anyone else: 404 (after the login redirect for no session).
pub(crate) struct Admin(pub UiSession);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = UiSession::from_request_parts(parts, state).await?;
        if session.rec.is_admin {
            Ok(Admin(session))
        } else {
            Err(UiError::NotFound.into_response())
        }
    }
}

impl Admin {
    fn nav(&self) -> Nav {
        Nav::new(&self.0, "admin")
    }

    fn name(&self) -> &str {
        &self.0.rec.user
    }

    /// After a form changed something: audited, then back to `to` (303).
    fn changed(&self, state: &AppState, project: Option<&str>, what: &str, to: &str) -> Response {
        self.0.changed(state, project, what, to)
    }
}

/// The roles a form ticked (`role` fields); `None` for an unknown name.
pub(crate) fn roles_of(form: &UiForm) -> Option<RoleSet> {
    let mut set = RoleSet::EMPTY;
    for r in form.all("role") {
        set.insert(*Role::ALL.iter().find(|x| x.as_str() == r)?);
    }
    Some(set)
}

/// Roles as a short text: "all eight" or the names.
pub(crate) fn roles_text(set: RoleSet) -> String {
    if set == RoleSet::all() {
        "all eight".into()
    } else if set.is_empty() {
        "none".into()
    } else {
        set.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" ")
    }
}

/// A store error of an admin form as the problem to show: what is missing or exists already;
/// anything else is the server's error page.
pub(crate) fn problem_of(e: StoreError) -> Result<String, UiError> {
    match e {
        StoreError::NotFound(what) => Ok(format!("There is no such {what}.")),
        StoreError::Conflict(what) => Ok(format!("That {what}.")),
        StoreError::Invalid(fields) => Ok(fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.problem))
            .collect::<Vec<_>>()
            .join("; ")),
        e => Err(UiError::Internal(e)),
    }
}

pub(crate) struct SiteRow {
    pub name: String,
    pub project: String,
    pub last_seen: String,
    pub version: String,
    pub job_types: String,
}

#[derive(Template)]
#[template(path = "ui/admin_sites.html")]
struct SitesPage {
    nav: Nav,
    sites: Vec<SiteRow>,
}

/// `GET /ui/admin/sites`: every site and each project's agent there (one query, the CLI's
/// `admin site list`).
async fn sites(State(state): State<AppState>, admin: Admin) -> Result<Response, UiError> {
    let sites = state
        .store
        .list_site_projects()
        .await?
        .into_iter()
        .map(|(project, s)| SiteRow {
            project: project.unwrap_or_default(),
            last_seen: s
                .last_seen_at
                .as_deref()
                .map_or_else(|| "never".into(), crate::ui::show_rfc3339),
            version: s.agent_version.unwrap_or_default(),
            job_types: s.job_types.join(", "),
            name: s.name,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &SitesPage {
            nav: admin.nav(),
            sites,
        },
    ))
}
