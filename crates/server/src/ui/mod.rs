//! The web UI: server-rendered HTML pages under `/ui` for people (log in, see their projects,
//! manage their own tokens, review and approve code bundles, watch and control jobs).
//!
//! Who a request is comes from the session cookie ([`UiSession`]), never from a bearer token;
//! every state-changing form carries the session's CSRF token, compared in constant time
//! ([`UiSession::check_csrf`]) before anything changes. Templates (askama, compiled in,
//! HTML-escaped) live in `crates/server/templates/ui`, the one style sheet and the one small
//! script in `crates/server/assets/ui`, both built into the binary; every page works without
//! the script. Like the API's handlers, these call `Store` methods and never write SQL; every
//! page shows only projects the session's user is a member of now.
//!
//! Cookies: the session cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` (with the
//! `__Host-` name prefix) when the configured public URL is https. The login form has its own
//! short-lived double-submit cookie, since there is no session yet to bind its CSRF token to.

mod access;
mod admin;
mod code;
mod device;
mod job;
mod jobs;
mod keys;
mod live;
mod login;
mod pages;
mod signed;
mod sites;
mod submit;
mod tokens;

use crate::extract::Peer;
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use hpcsera_store::{SessionRecord, StoreError};
use subtle::ConstantTimeEq;

/// The largest form body accepted (the token form is the largest, well below this).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The UI's routes (not in the OpenAPI document: they serve HTML to browsers).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/projects") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/projects") }))
        .route("/ui/login", get(login::login_page).post(login::login))
        .route("/ui/logout", post(login::logout))
        .route(
            "/ui/invite/{secret}",
            get(login::invite_page).post(login::accept_invite),
        )
        .route("/ui/projects", get(pages::projects))
        .route("/ui/tokens", get(tokens::tokens_page).post(tokens::create))
        .route("/ui/tokens/{id}/revoke", post(tokens::revoke))
        .route("/ui/device", get(device::device_page).post(device::decide))
        .route("/ui/keys", get(keys::keys_page).post(keys::add))
        .route("/ui/keys/{id}/delete", post(keys::remove))
        .route("/ui/static/{asset}", get(asset))
        .merge(code::routes())
        .merge(jobs::routes())
        .merge(job::routes())
        .merge(submit::routes())
        .merge(signed::routes())
        .merge(sites::routes())
        .merge(admin::routes())
        .route(
            "/ui/{*rest}",
            axum::routing::any(|| async { UiError::NotFound }),
        )
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers on every UI answer: nothing from elsewhere may run, frame or be loaded; answers are
/// never cached (they show secrets once and per-user data); no referrer leaves the site (an
/// invitation link carries its secret in the path).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

/// The built-in assets: one style sheet, the copy button's script, the live output's script.
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match name.as_str() {
        "style.css" => (
            include_str!("../../assets/ui/style.css"),
            "text/css; charset=utf-8",
        ),
        "copy.js" => (
            include_str!("../../assets/ui/copy.js"),
            "text/javascript; charset=utf-8",
        ),
        "live.js" => (
            include_str!("../../assets/ui/live.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return UiError::NotFound.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The name of the session cookie: `__Host-` prefixed when served over https, so that the
/// browser accepts it only with `Secure`, `Path=/` and no `Domain`.
fn session_cookie_name(state: &AppState) -> &'static str {
    if state.config.ui.https() {
        "__Host-hpcsera_session"
    } else {
        "hpcsera_session"
    }
}

/// A `Set-Cookie` value with the UI's flags; `max_age` in seconds (0 deletes the cookie).
fn cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.ui.https() {
        "; Secure"
    } else {
        ""
    };
    let v =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    // Names and values are ours (base64url secrets), so this cannot fail; an empty cookie
    // would only log the person out.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The logged-in person. Without a live session, a page answers with a redirect to the login
/// form (a form post with 403: its data would be lost anyway).
pub(crate) struct UiSession {
    pub rec: SessionRecord,
    secret: String,
}

impl UiSession {
    /// 403 unless the form carries this session's CSRF token.
    pub fn check_csrf(&self, form: &UiForm) -> Result<(), UiError> {
        match form.get("csrf") {
            Some(t) if same_secret(t, &self.rec.csrf) => Ok(()),
            _ => Err(UiError::Csrf),
        }
    }

    /// After a form changed something: audited as `what` (in `project`, when it is about
    /// one), then on to `to` (303).
    pub fn changed(
        &self,
        state: &AppState,
        project: Option<&str>,
        what: &str,
        to: &str,
    ) -> Response {
        audit(state, &self.rec.user, project, what, StatusCode::SEE_OTHER);
        Redirect::to(to).into_response()
    }
}

impl UiSession {
    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        same_secret(token, &self.rec.csrf)
    }

    /// The live session named by the request's cookie, if any.
    pub async fn from_headers(
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<Option<UiSession>, UiError> {
        let Some(secret) = read_cookie(headers, session_cookie_name(state)) else {
            return Ok(None);
        };
        let rec = state
            .store
            .session(secret, state.config.ui.session_idle_ms())
            .await?;
        Ok(rec.map(|rec| UiSession {
            rec,
            secret: secret.to_string(),
        }))
    }
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match UiSession::from_headers(state, &parts.headers).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/ui/login").into_response())
            }
            Ok(None) => Err(UiError::LoggedOut.into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A URL-encoded form body (repeated names kept: the role checkboxes), at most
/// [`MAX_FORM_BYTES`].
pub(crate) struct UiForm(Vec<(String, String)>);

impl UiForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl UiForm {
    /// Reads a URL-encoded body of at most [`MAX_FORM_BYTES`]; `None` when the request has
    /// another content type or a larger body. (The OAuth endpoints read their forms here too.)
    pub(crate) async fn read(req: Request) -> Option<UiForm> {
        let form_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return None;
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .ok()?;
        Some(UiForm(
            url::form_urlencoded::parse(&body).into_owned().collect(),
        ))
    }
}

impl<S: Send + Sync> FromRequest<S> for UiForm {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        UiForm::read(req)
            .await
            .ok_or_else(|| UiError::BadForm.into_response())
    }
}

/// What a UI request can fail with, each answered with a page saying so.
#[derive(Debug)]
pub(crate) enum UiError {
    Csrf,
    LoggedOut,
    NotFound,
    BadForm,
    TooManyAttempts(u64),
    /// The SSO proxy named a user without an account here.
    NoAccount,
    Internal(StoreError),
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        UiError::Internal(e)
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            UiError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not come from a page of this session (its security token is missing \
                 or wrong). Nothing was changed. Go back, reload the page and try again.",
            ),
            UiError::LoggedOut => (
                StatusCode::FORBIDDEN,
                "Not logged in",
                "Your session has ended. Nothing was changed. Log in again and repeat what you did.",
            ),
            UiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page, or it is not yours to see.",
            ),
            UiError::BadForm => (
                StatusCode::BAD_REQUEST,
                "Bad form",
                "The form could not be read. Go back and try again.",
            ),
            UiError::TooManyAttempts(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "There were too many login attempts for this account or from this address. \
                 Wait a minute and try again.",
            ),
            UiError::NoAccount => (
                StatusCode::FORBIDDEN,
                "No account",
                "You are signed in, but have no account on this server. Ask an administrator \
                 to add you (hpcsera admin user add).",
            ),
            UiError::Internal(e) => {
                tracing::error!(error = %crate::error::chain(e), "web UI request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server error",
                    "Something went wrong on the server. Try again later.",
                )
            }
        };
        let mut resp = render(status, &ErrorPage { title, message });
        if let UiError::TooManyAttempts(wait) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        resp
    }
}

/// A page as an HTML answer.
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a web UI template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// What every page's layout needs: who is logged in, and the CSRF token for the logout form.
pub(crate) struct Nav {
    pub user: String,
    pub csrf: String,
    /// Which entry of the navigation is the current page.
    pub current: &'static str,
    /// Whether to show the admin pages' entry.
    pub admin: bool,
}

impl Nav {
    fn new(s: &UiSession, current: &'static str) -> Nav {
        Nav {
            user: s.rec.user.clone(),
            csrf: s.rec.csrf.clone(),
            current,
            admin: s.rec.is_admin,
        }
    }
}

/// A role as a checkbox of a form, ticked as the form (or the draft) had it.
pub(crate) struct RoleBox {
    pub name: &'static str,
    pub description: &'static str,
    pub checked: bool,
}

/// The eight roles as checkboxes, ticked as `set` has them.
pub(crate) fn role_boxes(set: hpcsera_api_types::RoleSet) -> Vec<RoleBox> {
    hpcsera_api_types::Role::ALL
        .iter()
        .map(|r| RoleBox {
            name: r.as_str(),
            description: r.description(),
            checked: set.contains(*r),
        })
        .collect()
}

/// The client's address, as the API's failure counting sees it.
pub(crate) fn peer(parts: &axum::http::Extensions) -> String {
    parts
        .get::<Peer>()
        .map_or_else(String::new, |p| p.address.clone())
}

/// An audit record for a change made through the UI (there is no token to name).
pub(crate) fn audit(
    state: &AppState,
    user: &str,
    project: Option<&str>,
    path: &str,
    status: StatusCode,
) {
    state
        .audit
        .action(Some(user), project, None, path, status.as_u16());
}

/// A time for people: `2026-12-01 23:54 UTC`.
fn show_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.format(&f).unwrap_or_default()
}

/// A time as the API writes it (RFC 3339), for people.
pub(crate) fn show_rfc3339(t: &str) -> String {
    hpcsera_store::parse_rfc3339_ms(t).map_or_else(|| t.to_string(), show_time)
}

/// A size for people: `812 B`, `4.0 KiB`, `1.5 MiB`.
pub(crate) fn show_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(show_bytes(0), "0 B");
        assert_eq!(show_bytes(1023), "1023 B");
        assert_eq!(show_bytes(4096), "4.0 KiB");
        assert_eq!(show_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(show_bytes(5 << 30), "5.0 GiB");
    }
}
