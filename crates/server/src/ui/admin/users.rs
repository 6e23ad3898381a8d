//! The admin users page: every account with its admin flag, whether it is disabled and its
//! projects; an invitation (the one-time link of `hpcsera admin user invite`, shown once);
//! disable/enable and the admin flag. An administrator cannot disable themselves or take
//! their own flag away (they would lock themselves out of these pages).

use super::{problem_of, roles_text, Admin};
use crate::state::AppState;
use crate::ui::{audit, render, show_time, Nav, UiError, UiForm};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

/// How long an invitation made here works (the CLI's default).
const INVITE_VALID_MS: i64 = 72 * 3_600_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/admin/users", get(users_page))
        .route("/ui/admin/users/invite", post(invite))
        .route("/ui/admin/users/{name}/{change}", post(change))
}

pub(crate) struct UserRow {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub created: String,
    pub projects: String,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "ui/admin_users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    problem: Option<String>,
    draft: String,
    /// A new invitation's link, shown once.
    link: Option<String>,
}

async fn page(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    problem: Option<String>,
    draft: String,
    link: Option<String>,
) -> Result<Response, UiError> {
    let mut projects: std::collections::HashMap<String, Vec<String>> = Default::default();
    for m in state.store.list_memberships().await? {
        let shown = format!("{} ({})", m.project, roles_text(m.roles));
        projects.entry(m.user).or_default().push(shown);
    }
    let users = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            projects: projects
                .remove(&u.name)
                .map(|p| p.join(", "))
                .unwrap_or_default(),
            me: u.name == admin.name(),
            admin: u.is_admin,
            disabled: u.disabled,
            created: show_time(u.created_at),
            name: u.name,
        })
        .collect();
    Ok(render(
        status,
        &UsersPage {
            nav: admin.nav(),
            users,
            problem,
            draft,
            link,
        },
    ))
}

/// `GET /ui/admin/users`.
async fn users_page(State(state): State<AppState>, admin: Admin) -> Result<Response, UiError> {
    page(&state, &admin, StatusCode::OK, None, String::new(), None).await
}

/// `POST /ui/admin/users/invite` (`name`): the link, once. Adds the user without a password
/// when there is none.
async fn invite(
    State(state): State<AppState>,
    admin: Admin,
    ext: axum::http::Extensions,
    form: UiForm,
) -> Result<Response, UiError> {
    admin.0.check_csrf(&form)?;
    let name = form.get("name").unwrap_or("").trim().to_string();
    let made = if hpcsera_api_types::is_valid_name(&name, true) {
        match state.store.create_invite(&name, INVITE_VALID_MS).await {
            Ok(s) => Ok(s),
            Err(e) => Err(problem_of(e)?),
        }
    } else {
        Err(
            "A user name starts with a letter or '_' and has only letters, digits, \
             '_', '-' and '.' (at most 64)."
                .to_string(),
        )
    };
    let secret = match made {
        Ok(s) => s,
        Err(problem) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return page(&state, &admin, status, Some(problem), name, None).await;
        }
    };
    audit(
        &state,
        admin.name(),
        None,
        "/ui/admin/users/invite",
        StatusCode::CREATED,
    );
    let link = format!(
        "{}/ui/invite/{secret}",
        crate::routes::oauth::public_base(&state, &ext)
    );
    page(
        &state,
        &admin,
        StatusCode::CREATED,
        None,
        String::new(),
        Some(link),
    )
    .await
}

/// `POST /ui/admin/users/{name}/{disable|enable|make-admin|drop-admin}`.
async fn change(
    State(state): State<AppState>,
    admin: Admin,
    Path((name, change)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin.0.check_csrf(&form)?;
    let own = name == admin.name();
    let r = match change.as_str() {
        "disable" if own => Ok(Err("You cannot disable your own account.")),
        "drop-admin" if own => Ok(Err("You cannot take away your own admin flag.")),
        "disable" => state.store.set_user_disabled(&name, true).await.map(Ok),
        "enable" => state.store.set_user_disabled(&name, false).await.map(Ok),
        "make-admin" => state.store.set_user_admin(&name, true).await.map(Ok),
        "drop-admin" => state.store.set_user_admin(&name, false).await.map(Ok),
        _ => return Err(UiError::NotFound),
    };
    let problem = match r {
        Ok(Ok(())) => {
            let what = format!("/ui/admin/users/{name}/{change}");
            return Ok(admin.changed(&state, None, &what, "/ui/admin/users"));
        }
        Ok(Err(p)) => p.to_string(),
        Err(e) => problem_of(e)?,
    };
    page(
        &state,
        &admin,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(problem),
        String::new(),
        None,
    )
    .await
}
