//! The browser's side of the server, shared by the web UI (`ui/`) and the API routes that
//! also serve browsers (the token routes take a web session instead of a bearer token; the
//! OAuth device flow reads forms): the session extractor [`UiSession`] with its cookie and
//! CSRF check, form bodies ([`UiForm`]), the error page ([`UiError`]), the client's address
//! and the audit record of a change made in a page. It imports neither `ui` nor `routes`.

use crate::extract::Peer;
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hpcsera_store::{SessionRecord, StoreError};
use subtle::ConstantTimeEq;

/// The largest form body accepted (the token form is the largest, well below this).
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

/// The name of the session cookie: `__Host-` prefixed when served over https, so that the
/// browser accepts it only with `Secure`, `Path=/` and no `Domain`.
pub(crate) fn session_cookie_name(state: &AppState) -> &'static str {
    if state.config.ui.https() {
        "__Host-hpcsera_session"
    } else {
        "hpcsera_session"
    }
}

/// A `Set-Cookie` value with the UI's flags; `max_age` in seconds (0 deletes the cookie).
pub(crate) fn cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> HeaderValue {
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
pub(crate) fn read_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The logged-in person. Without a live session, a page answers with a redirect to the login
/// form (a form post with 403: its data would be lost anyway).
pub(crate) struct UiSession {
    pub rec: SessionRecord,
    /// The session cookie's value (the UI's live output and logout use it).
    pub(crate) secret: String,
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
    /// A form of these fields (the UI's unit tests).
    #[cfg(test)]
    pub(crate) fn of(fields: Vec<(String, String)>) -> UiForm {
        UiForm(fields)
    }

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
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
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
