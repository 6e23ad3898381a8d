//! Logging in and out, and setting a password from a one-time invitation.
//!
//! A failed login says the same thing ("the user name or password is not right") whether the
//! name exists or not, and takes as long (`Store::verify_password` verifies against a dummy
//! hash for unknown names). Attempts are limited per account name and per client address
//! (`--login-attempts-per-minute`); over either, 429 with `Retry-After`, before the password
//! is checked. The login form's CSRF token is a double-submit cookie (there is no session
//! yet); the invitation form is protected by the invitation's own secret in its URL.
//!
//! A page that needs a session sends the browser here with `?next=/ui/…` (the device
//! verification page does, with its code); after the login the browser goes back there. Only
//! local `/ui/` paths are followed ([`safe_next`]), so the login cannot send anyone elsewhere.
//!
//! Behind an SSO reverse proxy (`--trusted-user-header`), `GET /ui/login` starts the session
//! for the user the header names, but only on a connection from a `--trusted-proxy` address
//! (the socket's peer, never a forwarded address) and only for an existing user.

use super::{
    audit, cookie, peer, read_cookie, render, same_secret, session_cookie_name, UiError, UiForm,
    UiSession,
};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The double-submit cookie of the login form.
const LOGIN_COOKIE: &str = "hpcsera_login";
/// The shortest password accepted (the admin CLI's rule too).
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted: argon2 works on any length, but the work must stay bounded.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Most bytes of a user name looked at (names are at most 64 characters).
const MAX_NAME_BYTES: usize = 256;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    user: &'a str,
    /// Where to go after the login (a checked local path, or empty).
    next: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

/// Where a login may send the browser afterwards: a path of the web UI (`/ui/…`), printable
/// ASCII without `//`, `\\` or `..`, at most 512 bytes. Anything else is ignored.
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with("/ui/")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && !next.contains("//")
        && !next.contains("..");
    ok.then_some(next)
}

fn login_form(
    state: &AppState,
    status: StatusCode,
    user: &str,
    next: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let csrf = hpcsera_store::random_secret();
    let mut resp = render(
        status,
        &LoginPage {
            csrf: &csrf,
            user,
            next,
            error,
            notice,
        },
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie(state, LOGIN_COOKIE, &csrf, "/ui/login", 3600),
    );
    resp
}

/// `GET /ui/login`: the form (or the projects page, for someone logged in).
pub(crate) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, UiError> {
    let next = query.get("next").and_then(|n| safe_next(n)).unwrap_or("");
    if UiSession::from_headers(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(after_login(next)).into_response());
    }
    if let Some(name) = proxy_user(&state, &headers, &ext) {
        let user = state
            .store
            .user_by_name(name)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(UiError::NoAccount)?;
        return start_session(&state, &user, next).await;
    }
    let notice = query
        .get("welcome")
        .map(|_| "Your password is set. Log in with it.");
    Ok(login_form(&state, StatusCode::OK, "", next, None, notice))
}

/// `POST /ui/login`: checks the password, starts a session, sets its cookie.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    form: UiForm,
) -> Result<Response, UiError> {
    let expected = read_cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !same_secret(form.get("csrf").unwrap_or(""), expected) {
        return Err(UiError::Csrf);
    }
    let user =
        hpcsera_api_types::cut_to_bytes(form.get("user").unwrap_or("").trim(), MAX_NAME_BYTES);
    let password = form.get("password").unwrap_or("");
    let next = form.get("next").and_then(safe_next).unwrap_or("");
    state
        .login_peers
        .check(&peer(&ext))
        .map_err(UiError::TooManyAttempts)?;
    state
        .login_accounts
        .check(&user.to_lowercase())
        .map_err(UiError::TooManyAttempts)?;
    let found = if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        None
    } else {
        state.store.verify_password(user, password).await?
    };
    let Some(u) = found else {
        return Ok(login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            user,
            next,
            Some("The user name or password is not right."),
            None,
        ));
    };
    start_session(&state, &u, next).await
}

/// The page after a login: `next` when given, else the projects page.
fn after_login(next: &str) -> &str {
    if next.is_empty() {
        "/ui/projects"
    } else {
        next
    }
}

/// Starts a session for `user`: its cookie, and the way to `next` (or the projects page).
async fn start_session(
    state: &AppState,
    user: &hpcsera_store::UserRecord,
    next: &str,
) -> Result<Response, UiError> {
    let ui = &state.config.ui;
    let s = state
        .store
        .create_session(user.id, ui.session_idle_ms(), ui.session_max_ms())
        .await?;
    audit(state, &user.name, None, "/ui/login", StatusCode::SEE_OTHER);
    let mut resp = Redirect::to(after_login(next)).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookie(
            state,
            session_cookie_name(state),
            &s.secret,
            "/",
            ui.session_max_ms() / 1000,
        ),
    );
    h.append(
        header::SET_COOKIE,
        cookie(state, LOGIN_COOKIE, "", "/ui/login", 0),
    );
    Ok(resp)
}

/// The user an SSO proxy names, when the header is configured and the connection comes from a
/// trusted proxy.
fn proxy_user<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
    ext: &axum::http::Extensions,
) -> Option<&'h str> {
    let name = state.config.ui.trusted_user_header.as_deref()?;
    // The socket's peer, never a forwarded address (`forwarded::Peer::via_proxy`).
    if !ext.get::<crate::extract::Peer>()?.via_proxy {
        return None;
    }
    let user = headers.get(name)?.to_str().ok()?.trim();
    (!user.is_empty() && user.len() <= MAX_NAME_BYTES).then_some(user)
}

/// `POST /ui/logout`: ends the session (its cookie is refused from now on).
pub(crate) async fn logout(
    State(state): State<AppState>,
    session: UiSession,
    form: UiForm,
) -> Result<Response, UiError> {
    session.check_csrf(&form)?;
    state.store.delete_session(&session.secret).await?;
    let mut resp = session.changed(&state, None, "/ui/logout", "/ui/login");
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie(&state, session_cookie_name(&state), "", "/", 0),
    );
    Ok(resp)
}

#[derive(Template)]
#[template(path = "ui/invite.html")]
struct InvitePage<'a> {
    user: &'a str,
    error: Option<&'a str>,
}

/// `GET /ui/invite/{secret}`: the form to set a password, while the invitation is valid.
pub(crate) async fn invite_page(
    State(state): State<AppState>,
    Path(secret): Path<String>,
) -> Result<Response, UiError> {
    let user = state
        .store
        .invite_user(&secret)
        .await?
        .ok_or(UiError::NotFound)?;
    Ok(render(
        StatusCode::OK,
        &InvitePage {
            user: &user,
            error: None,
        },
    ))
}

/// `POST /ui/invite/{secret}`: sets the password and uses the invitation up.
pub(crate) async fn accept_invite(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    ext: axum::http::Extensions,
    form: UiForm,
) -> Result<Response, UiError> {
    // Guessing invitations is hopeless (256 bits), but each try may cost an argon2 hash.
    state
        .login_peers
        .check(&peer(&ext))
        .map_err(UiError::TooManyAttempts)?;
    let user = state
        .store
        .invite_user(&secret)
        .await?
        .ok_or(UiError::NotFound)?;
    let password = form.get("password").unwrap_or("");
    let problem = if password.chars().count() < MIN_PASSWORD_CHARS {
        Some("The password must have at least 8 characters.")
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some("The password must have at most 1024 bytes.")
    } else if form.get("confirm") != Some(password) {
        Some("The two passwords differ.")
    } else {
        None
    };
    if let Some(error) = problem {
        return Ok(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &InvitePage {
                user: &user,
                error: Some(error),
            },
        ));
    }
    match state.store.redeem_invite(&secret, password).await {
        Ok(name) => {
            audit(&state, &name, None, "/ui/invite", StatusCode::SEE_OTHER);
            Ok(Redirect::to("/ui/login?welcome=1").into_response())
        }
        Err(hpcsera_store::StoreError::NotFound(_)) => Err(UiError::NotFound),
        Err(e) => Err(e.into()),
    }
}
