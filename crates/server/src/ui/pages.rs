//! The projects page: the projects the logged-in person is a member of.
//!
//! Memberships are per user and project (no per-project role yet: every member may make
//! tokens of any role in the project); the page says since when.

use super::{render, show_time, Nav, UiError, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

pub(crate) struct ProjectRow {
    pub name: String,
    pub description: String,
    pub since: String,
    pub tokens: usize,
}

#[derive(Template)]
#[template(path = "ui/projects.html")]
struct ProjectsPage {
    nav: Nav,
    is_admin: bool,
    projects: Vec<ProjectRow>,
}

/// `GET /ui/projects`.
pub(crate) async fn projects(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, UiError> {
    let memberships = state.store.user_memberships(session.rec.user_id).await?;
    let tokens = state
        .store
        .list_user_tokens(session.rec.user_id, None)
        .await?;
    let now = hpcsera_store::now_ms();
    let projects = memberships
        .into_iter()
        .map(|m| ProjectRow {
            tokens: tokens
                .iter()
                .filter(|t| {
                    t.project == m.project
                        && t.revoked_at.is_none()
                        && t.expires_at.is_none_or(|e| e > now)
                })
                .count(),
            since: show_time(m.since),
            name: m.project,
            description: m.description,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ProjectsPage {
            nav: Nav::new(&session, "projects"),
            is_admin: session.rec.is_admin,
            projects,
        },
    ))
}
