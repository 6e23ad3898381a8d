//! The tokens page: make a token, see one's tokens, revoke one.
//!
//! The same tokens as `hpcsera admin token create` (`Store::create_token`), always for the
//! logged-in user and only in a project the user is a member of (another project is "not
//! found", whether it exists or not). The secret is shown once, on the answer to the form, and
//! never again; the list shows everything else. Expiry is required, in days, at most
//! `--token-max-days`.

use super::{audit, render, role_boxes, show_time, Nav, RoleBox, UiError, UiForm, UiSession};
use crate::routes::tokens::{make_token, revoke_own, TokenAsk};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hpcsera_api_types::{FieldError, Role, RoleSet};
use hpcsera_store::TokenRecord;

pub(crate) struct TokenRow {
    pub id: String,
    pub name: String,
    pub project: String,
    pub roles: String,
    pub site: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    pub state: &'static str,
}

/// What the form had, to show it again with the problems.
#[derive(Default)]
pub(crate) struct Draft {
    pub name: String,
    pub project: String,
    pub site: String,
    pub days: String,
    pub roles: RoleSet,
}

#[derive(Template)]
#[template(path = "ui/tokens.html")]
struct TokensPage {
    nav: Nav,
    projects: Vec<String>,
    draft: Draft,
    role_boxes: Vec<RoleBox>,
    max_days: u32,
    problems: Vec<String>,
    tokens: Vec<TokenRow>,
}

#[derive(Template)]
#[template(path = "ui/token_created.html")]
struct CreatedPage<'a> {
    nav: Nav,
    token: TokenRow,
    secret: &'a str,
}

fn state_of(t: &TokenRecord, now: i64) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

fn row(t: &TokenRecord, now: i64) -> TokenRow {
    TokenRow {
        id: t.id.clone(),
        name: t.name.clone(),
        project: t.project.clone(),
        roles: t
            .roles
            .iter()
            .map(Role::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        site: t.site.clone().unwrap_or_else(|| "any".into()),
        created: show_time(t.created_at),
        last_used: t.last_used_at.map_or_else(|| "never".into(), show_time),
        expires: t.expires_at.map_or_else(|| "never".into(), show_time),
        state: state_of(t, now),
    }
}

async fn page(
    state: &AppState,
    session: &UiSession,
    status: StatusCode,
    draft: Draft,
    problems: Vec<String>,
) -> Result<Response, UiError> {
    let projects = super::access::member_projects(state, session).await?;
    let now = hpcsera_store::now_ms();
    let tokens = state
        .store
        .list_user_tokens(session.rec.user_id, None)
        .await?
        .iter()
        .rev()
        .map(|t| row(t, now))
        .collect();
    let role_boxes = role_boxes(draft.roles);
    Ok(render(
        status,
        &TokensPage {
            nav: Nav::new(session, "tokens"),
            projects,
            draft,
            role_boxes,
            max_days: state.config.ui.token_max_days,
            problems,
            tokens,
        },
    ))
}

/// `GET /ui/tokens`.
pub(crate) async fn tokens_page(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, UiError> {
    let draft = Draft {
        days: state.config.ui.token_default_days.to_string(),
        ..Draft::default()
    };
    page(&state, &session, StatusCode::OK, draft, Vec::new()).await
}

/// Reads the form into a draft; an unknown role name is a problem of its own.
fn read_form(form: &UiForm) -> (Draft, Vec<FieldError>) {
    let mut problems = Vec::new();
    let mut draft = Draft {
        name: form.get("name").unwrap_or("").trim().to_string(),
        project: form.get("project").unwrap_or("").to_string(),
        site: form.get("site").unwrap_or("").trim().to_string(),
        days: form.get("days").unwrap_or("").trim().to_string(),
        roles: RoleSet::EMPTY,
    };
    for r in form.all("role") {
        match Role::ALL.iter().find(|x| x.as_str() == r) {
            Some(role) => draft.roles.insert(*role),
            None => problems.push(FieldError::new("roles", "an unknown role was sent.")),
        }
    }
    (draft, problems)
}

/// A problem of `make_token` as the form says it: "Roles: choose at least one role."
fn problem_text(f: &FieldError) -> String {
    let label = match f.field.as_str() {
        "name" => "Name",
        "roles" => "Roles",
        "site" => "Site",
        "expiresInDays" => "Expires",
        "project" => "Project",
        other => other,
    };
    format!("{label}: {}", f.problem)
}

/// `POST /ui/tokens`: makes the token (the checks of `POST /api/v1/tokens`,
/// `routes::tokens::make_token`) and shows its secret, once.
pub(crate) async fn create(
    State(state): State<AppState>,
    session: UiSession,
    form: UiForm,
) -> Result<Response, UiError> {
    session.check_csrf(&form)?;
    let (draft, pre) = read_form(&form);
    let ask = TokenAsk {
        name: &draft.name,
        project: &draft.project,
        roles: draft.roles,
        site: (!draft.site.is_empty()).then_some(draft.site.as_str()),
        days: draft.days.parse().ok(),
    };
    let made = make_token(&state, session.rec.user_id, &session.rec.user, &ask, pre).await?;
    let (record, secret) = match made {
        Ok(m) => m,
        Err(problems) => {
            let problems = problems.iter().map(problem_text).collect();
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return page(&state, &session, status, draft, problems).await;
        }
    };
    audit(
        &state,
        &session.rec.user,
        Some(&record.project),
        "/ui/tokens",
        StatusCode::CREATED,
    );
    let mut resp = render(
        StatusCode::CREATED,
        &CreatedPage {
            nav: Nav::new(&session, "tokens"),
            token: row(&record, hpcsera_store::now_ms()),
            secret: &secret,
        },
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /ui/tokens/{id}/revoke`: revokes one of the user's tokens in one of its projects.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    session.check_csrf(&form)?;
    let mine = revoke_own(&state, session.rec.user_id, &id)
        .await?
        .ok_or(UiError::NotFound)?;
    let what = "/ui/tokens/revoke";
    Ok(session.changed(&state, Some(&mine.project), what, "/ui/tokens"))
}
