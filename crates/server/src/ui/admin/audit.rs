//! The admin audit page: the audit log newest first, filtered by user, project, action (the
//! start of the request path), and a time range (UTC), in pages of at most 500 with an
//! "older" link (`before`, the last record's id). One `Store::audit_page` query per page,
//! the same as `hpcsera admin audit`.

use super::Admin;
use crate::state::AppState;
use crate::ui::{render, show_time, Nav, UiError};
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hpcsera_store::{parse_rfc3339_ms, AuditQuery, MAX_AUDIT_PAGE};

const DEFAULT_PAGE: u32 = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ui/admin/audit", get(audit_page))
}

pub(crate) struct AuditRow {
    pub at: String,
    pub user: String,
    pub project: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub token: String,
}

/// The filters as the form shows them again.
#[derive(Default)]
pub(crate) struct Filters {
    pub user: String,
    pub project: String,
    pub action: String,
    pub since: String,
    pub until: String,
    pub limit: String,
}

#[derive(Template)]
#[template(path = "ui/admin_audit.html")]
struct AuditPage {
    nav: Nav,
    filters: Filters,
    problem: Option<String>,
    rows: Vec<AuditRow>,
    next: Option<String>,
    paged: bool,
}

/// A time of the form: RFC 3339, or a browser's `datetime-local` (`2026-12-06T12:30`) or a
/// date, read as UTC.
fn parse_time(s: &str) -> Option<i64> {
    parse_rfc3339_ms(s)
        .or_else(|| parse_rfc3339_ms(&format!("{s}:00Z")))
        .or_else(|| parse_rfc3339_ms(&format!("{s}Z")))
        .or_else(|| parse_rfc3339_ms(&format!("{s}T00:00:00Z")))
}

/// The query and the filters to show, or the problem with them.
fn read_query(raw: &Option<String>) -> (Filters, Result<AuditQuery, String>) {
    let mut f = Filters::default();
    let mut before = None;
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let v = v.trim().to_string();
        match k.as_ref() {
            "user" => f.user = v,
            "project" => f.project = v,
            "action" => f.action = v,
            "since" => f.since = v,
            "until" => f.until = v,
            "limit" => f.limit = v,
            "before" => before = Some(v),
            _ => {}
        }
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let time = |name: &str, s: &str| match s {
        "" => Ok(None),
        s => parse_time(s)
            .map(Some)
            .ok_or_else(|| format!("{name}: a time like 2026-12-06T12:30 (UTC)")),
    };
    let q = (|| {
        let limit = match f.limit.as_str() {
            "" => DEFAULT_PAGE,
            l => l
                .parse()
                .ok()
                .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
                .ok_or_else(|| format!("per page: 1 to {MAX_AUDIT_PAGE}"))?,
        };
        let before = match before.as_deref() {
            None | Some("") => None,
            Some(b) => Some(
                b.parse::<i64>()
                    .map_err(|_| "a bad page link".to_string())?,
            ),
        };
        Ok(AuditQuery {
            user: some(&f.user),
            project: some(&f.project),
            action: some(&f.action),
            since: time("from", &f.since)?,
            until: time("until", &f.until)?,
            before,
            limit,
        })
    })();
    (f, q)
}

fn next_link(f: &Filters, before: i64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("user", &f.user),
        ("project", &f.project),
        ("action", &f.action),
        ("since", &f.since),
        ("until", &f.until),
        ("limit", &f.limit),
    ] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    q.append_pair("before", &before.to_string());
    format!("/ui/admin/audit?{}", q.finish())
}

/// `GET /ui/admin/audit?user=&project=&action=&since=&until=&limit=&before=`.
async fn audit_page(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let (filters, q) = read_query(&raw);
    let (rows, next, problem, status, paged) = match q {
        Ok(q) => {
            let records = state.store.audit_page(&q).await?;
            let full = records.len() == q.limit as usize;
            let next = records
                .last()
                .filter(|_| full)
                .map(|(id, _)| next_link(&filters, *id));
            let rows = records
                .into_iter()
                .map(|(_, r)| AuditRow {
                    at: show_time(r.at),
                    user: r.user.unwrap_or_default(),
                    project: r.project.unwrap_or_default(),
                    method: r.method,
                    path: r.path,
                    status: r.status,
                    token: r.token_id.unwrap_or_default(),
                })
                .collect();
            (rows, next, None, StatusCode::OK, q.before.is_some())
        }
        Err(p) => (Vec::new(), None, Some(p), StatusCode::BAD_REQUEST, false),
    };
    Ok(render(
        status,
        &AuditPage {
            nav: admin.nav(),
            filters,
            problem,
            rows,
            next,
            paged,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_reads_times_as_utc_and_keeps_filters_for_the_next_page() {
        assert_eq!(parse_time("1970-01-01T00:01"), Some(60_000));
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time("soon"), None);
        let (f, q) = read_query(&Some(
            "user=carol&since=1970-01-01T00:01&limit=5&before=9".into(),
        ));
        let q = q.unwrap();
        assert_eq!(
            (q.user.as_deref(), q.since, q.limit, q.before),
            (Some("carol"), Some(60_000), 5, Some(9))
        );
        assert_eq!(
            next_link(&f, 4),
            "/ui/admin/audit?user=carol&since=1970-01-01T00%3A01&limit=5&before=4"
        );
        assert!(read_query(&Some("limit=0".into())).1.is_err());
        assert!(read_query(&Some("until=tomorrow".into())).1.is_err());
    }
}
