//! The device verification page (`/ui/device`): a person types the user code a headless client
//! showed (or follows the client's link with the code in it), sees what the client asks for —
//! its name, the project, each role with its description, the site, the lifetime — and
//! approves it, narrowed (fewer roles, a shorter lifetime) if they like, or denies it.
//!
//! A person grants only what they may have: approving for a project they are not a member of
//! is refused, and roles beyond their membership cannot be ticked (and are refused if sent).
//! Typed codes are limited per client address and for everyone together, before the lookup
//! (user codes are short; the limits make guessing one hopeless). The decision form carries the
//! session's CSRF token and the code again, which is looked up (and counted) again. Without a
//! session the page sends the browser to the login form, which comes back here with the code.

use super::login::safe_next;
use super::{audit, peer, render, show_time, Nav, UiError, UiForm, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hpcsera_api_types::oauth::{self, Lifetime};
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_store::{DeviceDecision, DeviceGrantRecord, StoreError};
use std::collections::HashMap;

/// Shorter lifetimes the page offers besides the one asked.
const SHORTER: [u64; 5] = [30 * 86_400, 7 * 86_400, 86_400, 8 * 3_600, 3_600];

pub(crate) struct DeviceRole {
    pub name: &'static str,
    pub description: &'static str,
    /// Within the person's membership roles: may be ticked.
    pub allowed: bool,
    pub checked: bool,
}

pub(crate) struct LifetimeChoice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "ui/device.html")]
struct EntryPage<'a> {
    nav: Nav,
    code: &'a str,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/device_request.html")]
struct RequestPage {
    nav: Nav,
    code: String,
    client: String,
    project: String,
    member: bool,
    site: String,
    asked: String,
    expires: String,
    roles: Vec<DeviceRole>,
    lifetimes: Vec<LifetimeChoice>,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/device_done.html")]
struct DonePage {
    nav: Nav,
    approved: bool,
    client: String,
    project: String,
    roles: String,
    lifetime: String,
}

/// `1 hour`, `8 hours`, `7 days`, `90 minutes`.
fn for_people(l: Lifetime) -> String {
    let s = l.secs();
    let (n, unit) = if s.is_multiple_of(86_400) {
        (s / 86_400, "day")
    } else if s.is_multiple_of(3_600) {
        (s / 3_600, "hour")
    } else {
        ((s / 60).max(1), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn lifetime_of(ms: i64) -> Lifetime {
    Lifetime::from_secs(u64::try_from(ms / 1000).unwrap_or(0))
}

/// The roles `user_id` may grant in `project` (their membership roles): `None` when not a
/// member.
async fn grantable(
    state: &AppState,
    user_id: i64,
    project: &str,
) -> Result<Option<RoleSet>, UiError> {
    let Some(project_id) = state.store.is_member(user_id, project).await? else {
        return Ok(None);
    };
    Ok(state.store.member_roles(user_id, project_id).await?)
}

/// Counts one typed code against the limits (per address and for everyone) and looks it up.
/// `Err` with the page to answer when over a limit or the code is unknown.
async fn lookup(
    state: &AppState,
    session: &UiSession,
    ext: &axum::http::Extensions,
    typed: &str,
) -> Result<Result<(String, DeviceGrantRecord), Response>, UiError> {
    let limited = state
        .user_code_peers
        .check(&peer(ext))
        .and_then(|()| state.user_code_all.check(""));
    if let Err(wait) = limited {
        let problem = format!(
            "Too many codes were tried from your address or on this server. Wait {wait} seconds \
             and try again."
        );
        let mut resp = entry(session, StatusCode::TOO_MANY_REQUESTS, typed, Some(problem));
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(Err(resp));
    }
    let found = match oauth::normalize_user_code(typed) {
        Some(code) => state
            .store
            .device_grant_by_user_code(&code)
            .await?
            .map(|g| (code, g)),
        None => None,
    };
    Ok(found.ok_or_else(|| {
        let problem = "There is no waiting request with this code. Check the code the device \
                       shows (it expires after a few minutes), or start again on the device.";
        entry(session, StatusCode::NOT_FOUND, typed, Some(problem.into()))
    }))
}

fn entry(session: &UiSession, status: StatusCode, code: &str, problem: Option<String>) -> Response {
    let code = hpcsera_api_types::cut_to_bytes(code, 64);
    render(
        status,
        &EntryPage {
            nav: Nav::new(session, "device"),
            code,
            problem,
        },
    )
}

/// `GET /ui/device[?user_code=…]`: the form for the code, or the request it names.
pub(crate) async fn device_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let typed = query.get("user_code").map(|c| c.trim()).unwrap_or("");
    let Some(session) = UiSession::from_headers(&state, &headers).await? else {
        let here = format!(
            "{}?user_code={}",
            oauth::VERIFICATION_PATH,
            url::form_urlencoded::byte_serialize(typed.as_bytes()).collect::<String>()
        );
        let next = safe_next(&here).unwrap_or(oauth::VERIFICATION_PATH);
        let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        return Ok(Redirect::to(&format!("/ui/login?next={next}")).into_response());
    };
    if typed.is_empty() {
        return Ok(entry(&session, StatusCode::OK, "", None));
    }
    let (code, grant) = match lookup(&state, &session, &ext, typed).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let may = grantable(&state, session.rec.user_id, &grant.project).await?;
    let shown = Shown {
        code: &code,
        checked: grant.roles,
        chosen: None,
    };
    Ok(request_page(
        &session,
        &grant,
        may,
        shown,
        Vec::new(),
        StatusCode::OK,
    ))
}

/// What the request page shows of the form: the code, the ticked roles, the chosen lifetime.
struct Shown<'a> {
    code: &'a str,
    checked: RoleSet,
    chosen: Option<Lifetime>,
}

/// The request as the person sees it, with the form as `shown`; `may` are the roles the
/// person may grant (`None`: not a member of the project).
fn request_page(
    session: &UiSession,
    grant: &DeviceGrantRecord,
    may: Option<RoleSet>,
    shown: Shown<'_>,
    problems: Vec<String>,
    status: StatusCode,
) -> Response {
    let allowed = may.unwrap_or(RoleSet::EMPTY);
    let asked = lifetime_of(grant.lifetime_ms);
    let chosen = shown.chosen.unwrap_or(asked);
    let checked = shown.checked;
    let mut lifetimes = vec![asked];
    lifetimes.extend(
        SHORTER
            .iter()
            .map(|s| Lifetime::from_secs(*s))
            .filter(|l| *l < asked),
    );
    let page = RequestPage {
        nav: Nav::new(session, "device"),
        code: oauth::format_user_code(shown.code),
        client: grant.client_name.clone(),
        project: grant.project.clone(),
        member: may.is_some(),
        site: grant.site.clone().unwrap_or_else(|| "any site".into()),
        asked: for_people(asked),
        expires: show_time(grant.expires_at),
        roles: grant
            .roles
            .iter()
            .map(|r| DeviceRole {
                name: r.as_str(),
                description: r.description(),
                allowed: allowed.contains(r),
                checked: allowed.contains(r) && checked.contains(r),
            })
            .collect(),
        lifetimes: lifetimes
            .into_iter()
            .map(|l| LifetimeChoice {
                value: l.to_string(),
                label: if l == asked {
                    format!("{} (as asked)", for_people(l))
                } else {
                    for_people(l)
                },
                selected: l == chosen,
            })
            .collect(),
        problems,
    };
    render(status, &page)
}

/// `POST /ui/device`: the person's decision on the request of the form's code.
pub(crate) async fn decide(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    session: UiSession,
    form: UiForm,
) -> Result<Response, UiError> {
    session.check_csrf(&form)?;
    let typed = form.get("user_code").unwrap_or("");
    let (code, grant) = match lookup(&state, &session, &ext, typed).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let decision = match form.get("decision") {
        Some("deny") => DeviceDecision::Deny,
        Some("approve") => match approval(&state, &session, &code, &grant, &form).await? {
            Ok(d) => d,
            Err(page) => return Ok(page),
        },
        _ => return Err(UiError::BadForm),
    };
    let user = session.rec.user_id;
    match state
        .store
        .decide_device_grant(&grant.id, user, decision)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound("membership")) => {
            return Ok(not_a_member(&session, &code, &grant))
        }
        Err(StoreError::NotFound(_)) => {
            let problem = "This request was decided already, or it expired meanwhile.";
            return Ok(entry(
                &session,
                StatusCode::CONFLICT,
                "",
                Some(problem.into()),
            ));
        }
        // The membership's roles shrank between the page's check and the decision.
        Err(StoreError::Invalid(_)) => {
            let problem = "Your roles in this project changed meanwhile: enter the code again.";
            let status = StatusCode::CONFLICT;
            return Ok(entry(&session, status, &code, Some(problem.into())));
        }
        Err(e) => return Err(e.into()),
    }
    let (path, approved, roles, lifetime) = match decision {
        DeviceDecision::Approve { roles, lifetime_ms } => {
            ("/ui/device/approve", true, roles, lifetime_of(lifetime_ms))
        }
        DeviceDecision::Deny => (
            "/ui/device/deny",
            false,
            grant.roles,
            lifetime_of(grant.lifetime_ms),
        ),
    };
    audit(
        &state,
        &session.rec.user,
        Some(&grant.project),
        path,
        StatusCode::OK,
    );
    let page = DonePage {
        nav: Nav::new(&session, "device"),
        approved,
        client: grant.client_name,
        project: grant.project,
        roles: roles.iter().map(Role::as_str).collect::<Vec<_>>().join(" "),
        lifetime: for_people(lifetime),
    };
    Ok(render(StatusCode::OK, &page))
}

/// Reads an approval: the ticked roles (asked for, and within the person's membership) and
/// the lifetime (at most as asked). `Err` with the page showing the problems.
async fn approval(
    state: &AppState,
    session: &UiSession,
    code: &str,
    grant: &DeviceGrantRecord,
    form: &UiForm,
) -> Result<Result<DeviceDecision, Response>, UiError> {
    let Some(allowed) = grantable(state, session.rec.user_id, &grant.project).await? else {
        return Ok(Err(not_a_member(session, code, grant)));
    };
    let mut problems = Vec::new();
    let mut roles = RoleSet::EMPTY;
    for name in form.all("role") {
        match name.parse::<Role>() {
            Ok(r) if grant.roles.contains(r) && allowed.contains(r) => roles.insert(r),
            Ok(r) if grant.roles.contains(r) => problems.push(format!(
                "Roles: your membership of {} does not include {r}.",
                grant.project
            )),
            _ => problems.push("Roles: a role the client did not ask for was sent.".into()),
        }
    }
    if roles.is_empty() && problems.is_empty() {
        problems.push("Roles: tick at least one role, or deny the request.".into());
    }
    let asked = lifetime_of(grant.lifetime_ms);
    let chosen = form.get("lifetime").and_then(|l| Lifetime::parse(l).ok());
    if chosen.is_none_or(|l| l > asked) {
        problems.push(format!("Lifetime: choose at most {}.", for_people(asked)));
    }
    if !problems.is_empty() {
        let shown = Shown {
            code,
            checked: roles,
            chosen,
        };
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(Err(request_page(
            session,
            grant,
            Some(allowed),
            shown,
            problems,
            status,
        )));
    }
    let secs = chosen.map_or(0, Lifetime::secs);
    Ok(Ok(DeviceDecision::Approve {
        roles,
        lifetime_ms: i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    }))
}

/// 403: the person is not a member of the request's project, so cannot approve it.
fn not_a_member(session: &UiSession, code: &str, grant: &DeviceGrantRecord) -> Response {
    let problem = format!(
        "You are not a member of the project {}, so you cannot approve this request. Deny it, \
         or ask an administrator to add you to the project.",
        grant.project
    );
    let shown = Shown {
        code,
        checked: RoleSet::EMPTY,
        chosen: None,
    };
    request_page(
        session,
        grant,
        None,
        shown,
        vec![problem],
        StatusCode::FORBIDDEN,
    )
}
