//! The admin projects page: every project with its members and their roles (two queries);
//! create a project; add a member with roles, or give an existing member other roles
//! (`add_member_with_roles`: their tokens can do at most these from the next request);
//! remove a member (their tokens of the project stop at once).

use super::{problem_of, roles_of, roles_text, Admin};
use crate::state::AppState;
use crate::ui::{render, show_time, Nav, UiError, UiForm};
use crate::ui::{role_boxes, RoleBox};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hpcsera_api_types::{is_valid_name, RoleSet};

/// Longest project description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/admin/projects", get(projects_page).post(create))
        .route("/ui/admin/projects/{project}/members", post(add_member))
        .route(
            "/ui/admin/projects/{project}/members/{user}/remove",
            post(remove_member),
        )
}

pub(crate) struct MemberRow {
    pub user: String,
    pub roles: String,
    pub since: String,
}

pub(crate) struct ProjectRow {
    pub name: String,
    pub description: String,
    pub members: Vec<MemberRow>,
}

#[derive(Template)]
#[template(path = "ui/admin_projects.html")]
struct ProjectsPage {
    nav: Nav,
    projects: Vec<ProjectRow>,
    users: Vec<String>,
    role_boxes: Vec<RoleBox>,
    /// A problem, and the project whose form it belongs to ("" for the new project form).
    problem: Option<(String, String)>,
}

async fn page(
    state: &AppState,
    admin: &Admin,
    status: StatusCode,
    problem: Option<(String, String)>,
) -> Result<Response, UiError> {
    let mut members = state.store.list_memberships().await?.into_iter().peekable();
    let mut projects = Vec::new();
    // Both lists are by project name from the same database: the members of each project
    // come next in `members`.
    for (name, description, _) in state.store.list_projects().await? {
        let mut row = ProjectRow {
            name,
            description,
            members: Vec::new(),
        };
        while let Some(m) = members.next_if(|m| m.project == row.name) {
            row.members.push(MemberRow {
                user: m.user,
                roles: roles_text(m.roles),
                since: show_time(m.since),
            });
        }
        projects.push(row);
    }
    let users = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| u.name)
        .collect();
    Ok(render(
        status,
        &ProjectsPage {
            nav: admin.nav(),
            projects,
            users,
            role_boxes: role_boxes(RoleSet::all()),
            problem,
        },
    ))
}

/// `GET /ui/admin/projects`.
async fn projects_page(State(state): State<AppState>, admin: Admin) -> Result<Response, UiError> {
    page(&state, &admin, StatusCode::OK, None).await
}

/// The page again with a form's `problem` (about `project`, or a new project when empty), 422.
async fn refused(
    state: &AppState,
    admin: &Admin,
    project: String,
    problem: String,
) -> Result<Response, UiError> {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    page(state, admin, status, Some((project, problem))).await
}

/// `POST /ui/admin/projects` (`name`, `description`): a new project.
async fn create(
    State(state): State<AppState>,
    admin: Admin,
    form: UiForm,
) -> Result<Response, UiError> {
    admin.0.check_csrf(&form)?;
    let name = form.get("name").unwrap_or("").trim();
    let description = form.get("description").unwrap_or("").trim();
    let problem = if !is_valid_name(name, true) {
        "A project name starts with a letter or '_' and has only letters, digits, '_', '-' \
         and '.' (at most 64)."
            .to_string()
    } else if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        format!("A description is one line of at most {MAX_DESCRIPTION_CHARS} characters.")
    } else {
        match state.store.create_project(name, description).await {
            Ok(_) => {
                return Ok(admin.changed(
                    &state,
                    Some(name),
                    "/ui/admin/projects",
                    "/ui/admin/projects",
                ))
            }
            Err(e) => problem_of(e)?,
        }
    };
    refused(&state, &admin, String::new(), problem).await
}

/// `POST /ui/admin/projects/{project}/members` (`user`, `role`…): adds the member with these
/// roles, or sets an existing member's roles to them.
async fn add_member(
    State(state): State<AppState>,
    admin: Admin,
    Path(project): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin.0.check_csrf(&form)?;
    let user = form.get("user").unwrap_or("").trim();
    let problem = match roles_of(&form) {
        None => "An unknown role was sent.".to_string(),
        Some(roles) if roles.is_empty() => "Choose at least one role.".to_string(),
        Some(roles) => match state
            .store
            .add_member_with_roles(user, &project, roles)
            .await
        {
            Ok(()) => {
                let what = format!("/ui/admin/projects/{project}/members");
                return Ok(admin.changed(&state, Some(&project), &what, "/ui/admin/projects"));
            }
            Err(e) => problem_of(e)?,
        },
    };
    refused(&state, &admin, project, problem).await
}

/// `POST /ui/admin/projects/{project}/members/{user}/remove`.
async fn remove_member(
    State(state): State<AppState>,
    admin: Admin,
    Path((project, user)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin.0.check_csrf(&form)?;
    let problem = match state.store.remove_member(&user, &project).await {
        Ok(()) => {
            let what = format!("/ui/admin/projects/{project}/members/remove");
            return Ok(admin.changed(&state, Some(&project), &what, "/ui/admin/projects"));
        }
        Err(e) => problem_of(e)?,
    };
    refused(&state, &admin, project, problem).await
}
