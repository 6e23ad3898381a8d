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

use crate::state::AppState;
pub(crate) use crate::web::{
    audit, cookie, peer, read_cookie, render, same_secret, session_cookie_name, UiError, UiForm,
    UiSession,
};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

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
