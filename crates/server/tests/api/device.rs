//! The OAuth 2.0 device flow (RFC 8628) over plain HTTP: the two endpoints' answers and errors,
//! the verification page (with the UI tests' cookie-keeping browser), approval, narrowing,
//! denial, expiry, slow_down, one token per device code (also when redeemed concurrently),
//! what a non-member may do, and the limits on guessing user codes. The browser tests
//! (`crates/hpcsera/tests/ui/device.rs`) drive the same flow with a real OAuth library and
//! Chromium.

use crate::common::*;
use crate::ui::{hidden, people, Browser, Page};
use reqwest::header::{CACHE_CONTROL, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CLIENT: &str = "laptop CLI";

/// A server whose device clients poll every second (the default is 5).
async fn app() -> TestApp {
    TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.device.device_poll_seconds = 1;
    })
    .await
}

/// An OAuth answer: status, `Cache-Control`, `Retry-After` and the JSON body.
struct Answer {
    status: StatusCode,
    cache: String,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

async fn form(t: &TestApp, path: &str, fields: &[(&str, &str)]) -> Answer {
    let r = t
        .http
        .post(format!("{}{path}", t.base))
        .form(fields)
        .send()
        .await
        .unwrap();
    let header = |name| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (cache, retry_after) = (
        header(CACHE_CONTROL).unwrap_or_default(),
        header(RETRY_AFTER),
    );
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        cache,
        retry_after,
        body,
    }
}

/// Asks for a device code for `scope`; panics unless 200.
async fn ask(t: &TestApp, scope: &str) -> Value {
    let a = form(
        t,
        "/oauth/device_authorization",
        &[("client_id", CLIENT), ("scope", scope)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.cache, "no-store");
    a.body
}

async fn poll(t: &TestApp, device: &Value) -> Answer {
    form(
        t,
        "/oauth/token",
        &[
            ("grant_type", GRANT),
            ("device_code", device["device_code"].as_str().unwrap()),
            ("client_id", CLIENT),
        ],
    )
    .await
}

/// Opens the verification page for the device's code (logged in as the browser's user).
async fn open(b: &mut Browser<'_>, device: &Value) -> Page {
    let code = device["user_code"].as_str().unwrap();
    b.get(&format!("/ui/device?user_code={code}")).await
}

/// Approves from the request page `page`: `roles` for `lifetime`.
async fn approve(b: &mut Browser<'_>, page: &Page, roles: &[&str], lifetime: &str) -> Page {
    let mut fields: Vec<(&str, &str)> = roles.iter().map(|r| ("role", *r)).collect();
    fields.push(("lifetime", lifetime));
    decide(b, page, "approve", &fields).await
}

/// After the interval, redeems the device code (which must give a token) and asks the server
/// who the token is: the token answer and `GET /tokens/self`.
async fn redeem(t: &TestApp, d: &Value) -> (Value, Value) {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = poll(t, d).await;
    assert_eq!(
        (a.status, a.cache.as_str()),
        (StatusCode::OK, "no-store"),
        "{}",
        a.body
    );
    let (s, me) = t
        .get(
            "/api/v1/tokens/self",
            a.body["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    (a.body, me)
}

/// Opens the login form at `form` and logs in as carol, posting `next`: the form and the answer.
async fn log_in_from(b: &mut Browser<'_>, form: &str, next: &str) -> (Page, Page) {
    let form_page = b.get(form).await;
    let csrf = hidden(&form_page.body, "csrf");
    let fields = [
        ("csrf", csrf.as_str()),
        ("user", "carol"),
        ("password", crate::ui::PASSWORD),
        ("next", next),
    ];
    let answer = b.post("/ui/login", &fields).await;
    (form_page, answer)
}

/// Posts a decision from the request page `page`.
async fn decide(b: &mut Browser<'_>, page: &Page, decision: &str, extra: &[(&str, &str)]) -> Page {
    let csrf = hidden(&page.body, "csrf");
    let code = hidden(&page.body, "user_code");
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("user_code", code.as_str()),
        ("decision", decision),
    ];
    fields.extend_from_slice(extra);
    b.post("/ui/device", &fields).await
}

#[tokio::test]
async fn a_device_request_answers_codes_and_refuses_bad_clients_and_scopes() {
    let t = app().await;
    let d = ask(
        &t,
        "project:proj-a site:testsite lifetime:7d GET_JobStatus POST_Job",
    )
    .await;
    let code = d["user_code"].as_str().unwrap();
    assert_eq!(code.len(), 9, "{code}");
    assert_eq!(&code[4..5], "-");
    assert!(code
        .bytes()
        .all(|b| b == b'-' || b"BCDFGHJKLMNPQRSTVWXZ".contains(&b)));
    assert!(d["device_code"].as_str().unwrap().len() >= 43);
    assert_eq!(d["verification_uri"], format!("{}/ui/device", t.base));
    assert_eq!(
        d["verification_uri_complete"],
        format!("{}/ui/device?user_code={code}", t.base)
    );
    assert_eq!(
        (d["expires_in"].as_u64(), d["interval"].as_u64()),
        (Some(600), Some(1))
    );
}

#[tokio::test]
async fn bad_clients_scopes_and_bodies_are_refused_with_oauth_errors() {
    let t = app().await;
    let long = "x".repeat(65);
    for (client, scope, error) in [
        ("", "project:proj-a GET_Job", "invalid_client"),
        ("a\u{1b}[2Jb", "project:proj-a GET_Job", "invalid_client"),
        ("a\nb", "project:proj-a GET_Job", "invalid_client"),
        (long.as_str(), "project:proj-a GET_Job", "invalid_client"),
        (CLIENT, "", "invalid_scope"),
        (CLIENT, "GET_Job", "invalid_scope"),
        (CLIENT, "project:proj-a", "invalid_scope"),
        (CLIENT, "project:proj-a ADMIN", "invalid_scope"),
        (
            CLIENT,
            "project:proj-a lifetime:366d GET_Job",
            "invalid_scope",
        ),
        (
            CLIENT,
            "project:proj-a site:a site:b GET_Job",
            "invalid_scope",
        ),
    ] {
        let a = form(
            &t,
            "/oauth/device_authorization",
            &[("client_id", client), ("scope", scope)],
        )
        .await;
        assert_eq!(
            (a.status, a.error(), a.cache.as_str()),
            (StatusCode::BAD_REQUEST, error, "no-store"),
            "{client:?} {scope:?}: {}",
            a.body
        );
        assert!(a.body["error_description"].is_string());
    }
    // Sent twice, or not as a form.
    let a = form(
        &t,
        "/oauth/device_authorization",
        &[
            ("client_id", CLIENT),
            ("client_id", "x"),
            ("scope", "project:p GET_Job"),
        ],
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = t
        .http
        .post(format!("{}/oauth/device_authorization", t.base))
        .json(&serde_json::json!({"client_id": CLIENT, "scope": "project:p GET_Job"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn the_token_endpoint_refuses_what_is_not_a_device_code_redemption() {
    let t = app().await;
    let d = ask(&t, "project:proj-a GET_Job").await;
    let device = d["device_code"].as_str().unwrap();
    for (fields, error) in [
        (
            vec![("device_code", device), ("client_id", CLIENT)],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("device_code", device),
                ("client_id", CLIENT),
            ],
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", GRANT), ("client_id", CLIENT)],
            "invalid_request",
        ),
        (
            vec![("grant_type", GRANT), ("device_code", device)],
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", GRANT),
                ("device_code", "not-a-code"),
                ("client_id", CLIENT),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", GRANT),
                ("device_code", device),
                ("client_id", "another client"),
            ],
            "invalid_grant",
        ),
    ] {
        let a = form(&t, "/oauth/token", &fields).await;
        assert_eq!(
            (a.status, a.error(), a.cache.as_str()),
            (StatusCode::BAD_REQUEST, error, "no-store"),
            "{fields:?}: {}",
            a.body
        );
    }
    // None of that was a poll of the real client: its first poll is pending, not slow_down.
    assert_eq!(poll(&t, &d).await.error(), "authorization_pending");
}

#[tokio::test]
async fn an_approved_request_gives_one_ordinary_token_and_every_step_is_audited() {
    let t = app().await;
    people(&t).await;
    let d = ask(&t, "project:proj-a site:testsite GET_JobStatus POST_Job").await;
    let pending = poll(&t, &d).await;
    assert_eq!(
        (pending.status, pending.error()),
        (StatusCode::BAD_REQUEST, "authorization_pending")
    );

    // Not logged in: to the login form, and back to the request after it.
    let mut b = Browser::new(&t);
    let p = open(&mut b, &d).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let login = p.location.unwrap();
    assert!(
        login.starts_with("/ui/login?next=%2Fui%2Fdevice%3Fuser_code%3D"),
        "{login}"
    );
    let code = d["user_code"].as_str().unwrap();
    let next = format!("/ui/device?user_code={code}");
    let (form_page, p) = log_in_from(&mut b, &login, &next).await;
    assert_eq!(hidden(&form_page.body, "next"), next);
    assert_eq!(p.location.as_deref(), Some(next.as_str()), "{}", p.body);

    let page = b.get(&next).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_shows(&[CLIENT, "proj-a", "testsite", "30 days (as asked)", code]);
    for r in [
        hpcsera_api_types::Role::GetJobStatus,
        hpcsera_api_types::Role::PostJob,
    ] {
        assert!(page.body.contains(r.as_str()));
        assert!(
            page.body.contains(&crate::ui::html_escape(r.description())),
            "{r}"
        );
    }
    assert!(
        !page.body.contains("DELETE_Job"),
        "only the roles asked for"
    );
    let done = approve(&mut b, &page, &["GET_JobStatus", "POST_Job"], "30d").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Approved"));

    let (a, me) = redeem(&t, &d).await;
    assert_eq!(a["token_type"], "Bearer");
    assert_eq!(
        a["scope"],
        "project:proj-a site:testsite lifetime:30d GET_JobStatus POST_Job"
    );
    assert_eq!(a["expires_in"], 30 * 86_400);
    assert_eq!(
        (me["user"].as_str(), me["project"].as_str()),
        (Some("carol"), Some("proj-a"))
    );
    assert_eq!(me["name"], CLIENT, "the token carries the client's name");
    assert_eq!(me["site"], SITE);
    assert_eq!(
        me["roles"],
        serde_json::json!(["GET_JobStatus", "POST_Job"])
    );
    // An ordinary token: on the person's tokens page, revocable there.
    assert!(b.get("/ui/tokens").await.body.contains(CLIENT));

    // Redeemed once: the next poll with the same code is refused, and no second token exists.
    let again = poll(&t, &d).await;
    assert_eq!(
        (again.status, again.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(t.store.list_tokens(Some("carol")).await.unwrap().len(), 1);
    // The code cannot be looked up any more either.
    assert_eq!(open(&mut b, &d).await.status, StatusCode::NOT_FOUND);

    // The request, the approval and the token are in the audit log.
    let asked = audited(&t, "/oauth/device_authorization").await;
    assert_eq!(asked.project.as_deref(), Some("proj-a"));
    let approved = audited(&t, "/ui/device/approve").await;
    assert_eq!(approved.user.as_deref(), Some("carol"));
    let issued = audited(&t, "/oauth/token").await;
    assert_eq!(issued.token_id.as_deref(), me["tokenId"].as_str());
}

/// The audit record with `path` (the writer works in batches: waits up to 5 s for it).
async fn audited(t: &TestApp, path: &str) -> hpcsera_store::AuditRecord {
    for _ in 0..50 {
        let found = t.store.recent_audit(200).await.unwrap();
        if let Some(r) = found.into_iter().find(|r| r.path == path) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no audit record of {path}");
}

#[tokio::test]
async fn a_denied_request_answers_access_denied() {
    let t = app().await;
    people(&t).await;
    let d = ask(&t, "project:proj-a GET_JobStatus").await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = open(&mut b, &d).await;
    let done = decide(&mut b, &page, "deny", &[]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Denied"));
    for _ in 0..2 {
        let a = poll(&t, &d).await;
        assert_eq!(
            (a.status, a.error()),
            (StatusCode::BAD_REQUEST, "access_denied")
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(t.store.list_tokens(Some("carol")).await.unwrap().is_empty());
    // Decided: the code shows nothing any more, and cannot be approved afterwards.
    assert_eq!(open(&mut b, &d).await.status, StatusCode::NOT_FOUND);
    let late = approve(&mut b, &page, &["GET_JobStatus"], "30d").await;
    assert_eq!(late.status, StatusCode::NOT_FOUND, "{}", late.body);
    assert_eq!(poll(&t, &d).await.error(), "access_denied");
}

#[tokio::test]
async fn polling_faster_than_the_interval_slows_the_client_down_by_five_seconds_each_time() {
    let t = app().await;
    let d = ask(&t, "project:proj-a GET_JobStatus").await;
    assert_eq!(poll(&t, &d).await.error(), "authorization_pending");
    let a = poll(&t, &d).await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "slow_down")
    );
    assert!(
        a.body["error_description"]
            .as_str()
            .unwrap()
            .contains("wait 6 s"),
        "{}",
        a.body
    );
    // 1.2 s later would have been enough before; now the interval is 6 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let a = poll(&t, &d).await;
    assert_eq!(a.error(), "slow_down");
    assert!(
        a.body["error_description"]
            .as_str()
            .unwrap()
            .contains("wait 11 s"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn an_expired_request_answers_expired_token_and_cannot_be_approved() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.device.device_poll_seconds = 1;
        c.device.device_code_seconds = 2;
    })
    .await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let d = ask(&t, "project:proj-a GET_JobStatus").await;
    assert_eq!(d["expires_in"], 2);
    let page = open(&mut b, &d).await;
    assert_eq!(page.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late = approve(&mut b, &page, &["GET_JobStatus"], "30d").await;
    assert_eq!(late.status, StatusCode::NOT_FOUND, "{}", late.body);
    let a = poll(&t, &d).await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::BAD_REQUEST, "expired_token")
    );
    assert!(t.store.list_tokens(Some("carol")).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_redemptions_of_one_device_code_make_one_token() {
    let t = app().await;
    people(&t).await;
    let d = ask(&t, "project:proj-a GET_JobStatus").await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = open(&mut b, &d).await;
    let done = approve(&mut b, &page, &["GET_JobStatus"], "30d").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let answers = polls_at_once(&t, &d, 16).await;
    let issued = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(issued, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != StatusCode::OK)
            .all(|(_, b)| b["error"] == "invalid_grant"),
        "{answers:?}"
    );
    assert_eq!(t.store.list_tokens(Some("carol")).await.unwrap().len(), 1);
}

/// `n` polls of the device code at once, each on its own task.
async fn polls_at_once(t: &TestApp, d: &Value, n: usize) -> Vec<(StatusCode, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (http, url) = (t.http.clone(), format!("{}/oauth/token", t.base));
        let code = d["device_code"].as_str().unwrap().to_string();
        set.spawn(async move {
            let fields = [
                ("grant_type", GRANT),
                ("device_code", &code),
                ("client_id", CLIENT),
            ];
            let r = http.post(url).form(&fields).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        });
    }
    set.join_all().await
}

#[tokio::test]
async fn narrowing_gives_exactly_the_narrowed_roles_and_lifetime() {
    let t = app().await;
    people(&t).await;
    let d = ask(
        &t,
        "project:proj-a lifetime:7d GET_JobStatus POST_Job UPDATE_Job DELETE_Job",
    )
    .await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = open(&mut b, &d).await;
    assert!(page.body.contains("7 days (as asked)"));
    assert!(
        !page.body.contains("value=\"30d\""),
        "nothing longer than asked is offered"
    );
    // More than asked is refused and changes nothing.
    for extra in [
        vec![("role", "GET_Job"), ("lifetime", "1d")],
        vec![("role", "GET_JobStatus"), ("lifetime", "8d")],
        vec![("lifetime", "1d")],
    ] {
        let p = decide(&mut b, &page, "approve", &extra).await;
        assert_eq!(
            p.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{extra:?}: {}",
            p.body
        );
    }
    assert_eq!(poll(&t, &d).await.error(), "authorization_pending");
    let done = approve(&mut b, &page, &["GET_JobStatus", "DELETE_Job"], "1d").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (a, me) = redeem(&t, &d).await;
    assert_eq!(
        a["scope"],
        "project:proj-a lifetime:1d GET_JobStatus DELETE_Job"
    );
    assert_eq!(a["expires_in"], 86_400);
    assert_eq!(
        me["roles"],
        serde_json::json!(["GET_JobStatus", "DELETE_Job"])
    );
    let expires = hpcsera_store::parse_rfc3339_ms(me["expiresAt"].as_str().unwrap()).unwrap();
    let days = (expires - hpcsera_store::now_ms()) as f64 / 86_400_000.0;
    assert!((0.99..=1.0).contains(&days), "{days}");
}

#[tokio::test]
async fn a_person_cannot_approve_for_a_project_they_are_not_a_member_of() {
    let t = app().await;
    people(&t).await;
    // dave is a member of proj-b only; the request is for proj-a.
    let d = ask(&t, "project:proj-a GET_JobStatus").await;
    let mut b = Browser::logged_in(&t, "dave").await;
    let page = open(&mut b, &d).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("you are not a member"), "{}", page.body);
    assert!(
        !page.body.contains("id=\"approve\""),
        "no approve button: {}",
        page.body
    );
    let p = approve(&mut b, &page, &["GET_JobStatus"], "30d").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("not a member of the project proj-a"));
    assert_eq!(poll(&t, &d).await.error(), "authorization_pending");
    // A project that does not exist is the same.
    let nowhere = ask(&t, "project:nowhere GET_JobStatus").await;
    let page = open(&mut b, &nowhere).await;
    let p = approve(&mut b, &page, &["GET_JobStatus"], "30d").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Denying is always possible.
    let page = open(&mut b, &d).await;
    assert_eq!(
        decide(&mut b, &page, "deny", &[]).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(poll(&t, &d).await.error(), "access_denied");
    assert!(t.store.list_tokens(Some("dave")).await.unwrap().is_empty());
}

#[tokio::test]
async fn guessing_user_codes_is_throttled_per_address_and_for_everyone() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.device.user_code_attempts_per_minute = 3;
        c.device.user_code_attempts_total_per_minute = 5;
        c.connections.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    people(&t).await;
    let d = ask(&t, "project:proj-a GET_JobStatus").await;
    let mut b = Browser::logged_in(&t, "carol").await;
    b.forwarded_for = Some("10.0.0.1".into());
    for i in 1..=4 {
        let p = b.get("/ui/device?user_code=BBBB-BBBB").await;
        if i <= 3 {
            assert_eq!(p.status, StatusCode::NOT_FOUND, "guess {i}");
        } else {
            assert_eq!(
                p.status,
                StatusCode::TOO_MANY_REQUESTS,
                "guess {i}: {}",
                p.body
            );
            let wait: u64 = p.retry_after.expect("Retry-After").parse().unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
        }
    }
    // Even the right code waits at that address.
    assert_eq!(open(&mut b, &d).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address has its own three, until all addresses together used five.
    b.forwarded_for = Some("10.0.0.2".into());
    for _ in 0..2 {
        assert_eq!(
            b.get("/ui/device?user_code=CCCC-CCCC").await.status,
            StatusCode::NOT_FOUND
        );
    }
    b.forwarded_for = Some("10.0.0.3".into());
    assert_eq!(
        open(&mut b, &d).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "global limit"
    );
    // Decision posts carry the code and count too.
    let csrf = b.csrf().await;
    let p = b
        .post(
            "/ui/device",
            &[
                ("csrf", &csrf),
                ("user_code", d["user_code"].as_str().unwrap()),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        poll(&t, &d).await.error(),
        "authorization_pending",
        "nothing was decided"
    );
}

#[tokio::test]
async fn device_requests_are_limited_per_address() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.device.device_requests_per_minute = 2;
    })
    .await;
    ask(&t, "project:proj-a GET_Job").await;
    ask(&t, "project:proj-a GET_Job").await;
    let a = form(
        &t,
        "/oauth/device_authorization",
        &[("client_id", CLIENT), ("scope", "project:proj-a GET_Job")],
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (StatusCode::TOO_MANY_REQUESTS, "slow_down")
    );
    assert!(a.retry_after.is_some());
}

#[tokio::test]
async fn the_metadata_names_the_endpoints_and_the_login_form_only_goes_back_to_the_ui() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.ui.public_url = Some("https://hpc.example.org/".into());
    })
    .await;
    let r = t
        .raw(
            reqwest::Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["issuer"], "https://hpc.example.org");
    assert_eq!(
        m["device_authorization_endpoint"],
        "https://hpc.example.org/oauth/device_authorization"
    );
    assert_eq!(m["token_endpoint"], "https://hpc.example.org/oauth/token");
    assert_eq!(m["grant_types_supported"], serde_json::json!([GRANT]));
    assert_eq!(m["scopes_supported"].as_array().unwrap().len(), 8);
    let d = ask(&t, "project:proj-a GET_Job").await;
    assert_eq!(d["verification_uri"], "https://hpc.example.org/ui/device");

    people(&t).await;
    for bad in [
        "https%3A%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "%2Fui%2F..%2F..%2Fapi",
        "%2Fapi%2Fv1%2Fjob",
    ] {
        let mut b = Browser::new(&t);
        let form = format!("/ui/login?next={bad}");
        let (form_page, p) = log_in_from(&mut b, &form, "https://evil.example").await;
        assert!(!form_page.body.contains("name=\"next\""), "{bad}");
        assert_eq!(p.location.as_deref(), Some("/ui/projects"), "{bad}");
    }
}

#[tokio::test]
async fn roles_beyond_ones_membership_cannot_be_ticked_nor_granted() {
    let t = app().await;
    t.store
        .create_user("erin", Some(crate::ui::PASSWORD), false)
        .await
        .unwrap();
    let only_status: hpcsera_api_types::RoleSet = [hpcsera_api_types::Role::GetJobStatus]
        .into_iter()
        .collect();
    t.store
        .add_member_with_roles("erin", "proj-a", only_status)
        .await
        .unwrap();
    let d = ask(&t, "project:proj-a GET_JobStatus POST_Job").await;
    let mut b = Browser::logged_in(&t, "erin").await;
    let page = open(&mut b, &d).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let post_job = page
        .body
        .split("id=\"role-POST_Job\"")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .expect("the POST_Job box");
    assert!(
        post_job.contains("disabled") && !post_job.contains("checked"),
        "{post_job}"
    );
    assert!(page.body.contains("not part of your membership"));
    // Sent anyway (a forged form): refused, nothing decided.
    let p = approve(&mut b, &page, &["GET_JobStatus", "POST_Job"], "30d").await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("does not include POST_Job"), "{}", p.body);
    assert_eq!(poll(&t, &d).await.error(), "authorization_pending");
    let done = approve(&mut b, &page, &["GET_JobStatus"], "30d").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let (_, me) = redeem(&t, &d).await;
    assert_eq!(me["roles"], serde_json::json!(["GET_JobStatus"]));
}
