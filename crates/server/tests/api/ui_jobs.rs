//! The web UI's jobs pages over plain HTTP (the browser tests drive Chromium): the list with
//! filters and cursor pages, a job's page (parameters, sub-jobs, events, output, result files),
//! its cancel/hold/release/delete forms, the live output stream (Server-Sent Events), CSRF,
//! non-members and bad input.

use crate::common::*;
use crate::ui::{hidden, people, Browser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn job_status(t: &TestApp, id: &str) -> (StatusCode, Value) {
    t.get(&format!("/api/v1/job/{id}"), &t.alice().await).await
}

/// The agent appends `data` to the job's stdout at `offset`.
async fn append(t: &TestApp, agent: &str, id: &str, offset: usize, data: &'static [u8]) {
    let r = t
        .http
        .post(format!(
            "{}/api/v1/job/{id}/output/stdout?offset={offset}",
            t.base
        ))
        .bearer_auth(agent)
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// `GET path` with the browser's cookies (and a `Last-Event-ID`), as a raw response: for
/// downloads and event streams.
async fn with_cookie(
    t: &TestApp,
    b: &Browser<'_>,
    path: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut rb = t
        .http
        .get(format!("{}{path}", t.base))
        .header("cookie", b.cookie_header());
    if let Some(id) = last_event_id {
        rb = rb.header("last-event-id", id);
    }
    rb.send().await.unwrap()
}

/// The "older jobs" link of a list page.
fn older_link(html: &str) -> Option<String> {
    let end = html.find("\" id=\"older\"")?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    Some(html[start..end].replace("&#38;", "&"))
}

/// The job ids of a list page's rows, in order.
fn row_ids(html: &str) -> Vec<String> {
    html.split("<tr id=\"job-")
        .skip(1)
        .map(|s| s[..36].to_string())
        .collect()
}

#[tokio::test]
async fn the_list_filters_by_status_site_and_job_type_and_pages_with_the_cursor() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id_of(
            &t.submit(&alice, json!({"label": format!("j{i}")})).await,
        ));
    }
    let (s, _) = t.operation(&alice, &ids[1], "cancel").await;
    assert_eq!(s, StatusCode::OK);
    let mut b = Browser::logged_in(&t, "carol").await;
    assert_eq!(
        b.get("/ui/jobs").await.location.as_deref(),
        Some("/ui/projects/proj-a/jobs")
    );
    let p = b.get("/ui/projects/proj-a/jobs").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(ids.iter().all(|id| p.body.contains(id.as_str())));

    let p = b
        .get("/ui/projects/proj-a/jobs?status=cancelled&site=&jobType=")
        .await;
    assert!(
        p.body.contains(&ids[1]) && !p.body.contains(&ids[0]),
        "{}",
        p.body
    );
    assert!(p.body.contains("<option value=\"cancelled\" selected>"));
    let p = b
        .get(&format!(
            "/ui/projects/proj-a/jobs?site={SITE}&jobType={JOB_TYPE}"
        ))
        .await;
    assert!(ids.iter().all(|id| p.body.contains(id.as_str())));
    let p = b.get("/ui/projects/proj-a/jobs?jobType=other").await;
    assert!(p.body.contains("No jobs") && !p.body.contains(&ids[0]));

    // Pages of two, newest first, with the same filters on the next page's link.
    let mut seen = Vec::new();
    let mut next = Some("/ui/projects/proj-a/jobs?limit=2&jobType=sim".to_string());
    while let Some(url) = next.take() {
        let p = b.get(&url).await;
        assert_eq!(p.status, StatusCode::OK);
        seen.extend(row_ids(&p.body));
        next = older_link(&p.body);
        if let Some(n) = &next {
            assert!(n.contains("jobType=sim") && n.contains("limit=2"), "{n}");
        }
    }
    let mut all = ids.clone();
    all.reverse();
    assert_eq!(seen, all, "every job once, newest first");

    // A filter that is not right: 400, saying which.
    for (q, field) in [
        ("status=sleeping", "status"),
        ("cursor=zzz", "cursor"),
        ("limit=0", "limit"),
        ("site=a%20b", "site"),
    ] {
        let p = b.get(&format!("/ui/projects/proj-a/jobs?{q}")).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(
            p.body.contains("The filter is not right") && p.body.contains(field),
            "{q}: {}",
            p.body
        );
    }
}

#[tokio::test]
async fn a_job_page_shows_parameters_sub_jobs_events_output_and_result_files() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(
        &t.submit(&alice, json!({"label": "<b>bold</b>", "steps": 7}))
            .await,
    );
    t.claim(&agent, &id).await;
    let (s, _) = t
        .report(&agent, &id, json!({"status": "running", "subJobs": [{"name": "stage", "status": "completed", "exitCode": 0}]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    append(&t, &agent, &id, 0, b"hello <script>alert(1)</script>\n").await;
    let r = t
        .http
        .put(format!("{}/api/v1/job/{id}/results/out/sum.csv", t.base))
        .bearer_auth(&agent)
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let mut b = Browser::logged_in(&t, "carol").await;
    let page = format!("/ui/projects/proj-a/jobs/{id}");
    let p = b.get(&page).await;
    assert_eq!(p.status, StatusCode::OK);
    p.assert_shows(&[
        "id=\"job-status\" class=\"status-running\">running",
        "&#60;b&#62;bold&#60;/b&#62;",
        "<dt>steps</dt><dd><code>7</code>",
        "<th scope=\"row\" data-label=\"Name\">stage</th>",
        "hello &#60;script&#62;alert(1)&#60;/script&#62;",
        "queued → dispatched",
        "user:alice",
        "out/sum.csv",
        &format!("data-live=\"/ui/projects/proj-a/jobs/{id}/live?stdout=32&#38;stderr=0\""),
        "/ui/static/live.js",
        "id=\"cancel\"",
        "id=\"hold\"",
        "id=\"delete\"",
    ]);
    assert!(!p.body.contains("<script>alert"), "output is escaped");

    // A result file is a download, never a page of this site.
    let r = with_cookie(&t, &b, &format!("{page}/results/out/sum.csv"), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"sum.csv\""
    );
    assert_eq!(r.text().await.unwrap(), "a,b\n1,2\n");
    assert_eq!(
        b.get(&format!("{page}/results/missing.txt")).await.status,
        StatusCode::NOT_FOUND
    );

    // An ended job: no live output, no cancel or hold.
    t.report(&agent, &id, json!({"status": "completed", "exitCode": 0}))
        .await;
    let p = b.get(&page).await;
    assert!(!p.body.contains("data-live") && !p.body.contains("id=\"cancel\""));
    assert!(p.body.contains("id=\"delete\"") && p.body.contains("The job has ended."));
}

#[tokio::test]
async fn cancel_hold_release_and_delete_go_through_the_store_with_the_csrf_token() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let queued = id_of(&t.submit(&alice, json!({"label": "q"})).await);
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = format!("/ui/projects/proj-a/jobs/{queued}");
    let csrf = hidden(&b.get(&page).await.body, "csrf");

    // Without the session's token nothing happens.
    for form in [
        vec![("operation", "hold")],
        vec![("csrf", "forged"), ("operation", "hold")],
    ] {
        let p = b.post(&format!("{page}/operation"), &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        let p = b
            .post(&format!("{page}/delete"), &form[..form.len() - 1])
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(job_status(&t, &queued).await.1["held"], false);

    let form = [("csrf", csrf.as_str()), ("operation", "hold")];
    let p = b.post(&format!("{page}/operation"), &form).await;
    assert_eq!(
        (p.status, p.location.as_deref()),
        (StatusCode::SEE_OTHER, Some(page.as_str()))
    );
    assert_eq!(job_status(&t, &queued).await.1["held"], true);
    assert!(b.get(&page).await.body.contains("id=\"release\""));
    let form = [("csrf", csrf.as_str()), ("operation", "release")];
    b.post(&format!("{page}/operation"), &form).await;
    assert_eq!(job_status(&t, &queued).await.1["held"], false);
    for bad in ["explode", ""] {
        let form = [("csrf", csrf.as_str()), ("operation", bad)];
        let p = b.post(&format!("{page}/operation"), &form).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // A job an agent holds: the cancel waits for the agent, whose next poll gets it.
    let running = id_of(&t.submit(&alice, json!({"label": "r"})).await);
    t.claim(&agent, &running).await;
    let page = format!("/ui/projects/proj-a/jobs/{running}");
    let form = [("csrf", csrf.as_str()), ("operation", "cancel")];
    let p = b.post(&format!("{page}/operation"), &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        job_status(&t, &running).await.1["pendingOperation"]["operation"],
        "cancel"
    );
    assert!(b
        .get(&page)
        .await
        .body
        .contains("cancel requested by user:carol"));
    let (s, r) = t
        .send(
            Method::POST,
            "/api/v1/agent/poll",
            &agent,
            Some(json!({"activeJobIds": [running]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(r.to_string().contains("cancel"), "{r}");

    // An operation the job's state refuses: 409, said on the page.
    t.report(&agent, &running, json!({"status": "cancelled"}))
        .await;
    let p = b.post(&format!("{page}/operation"), &form).await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.body.contains("The job was not cancelled"), "{}", p.body);

    // Delete: gone, back to the list.
    let p = b
        .post(&format!("{page}/delete"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(p.location.as_deref(), Some("/ui/projects/proj-a/jobs"));
    assert_eq!(job_status(&t, &running).await.0, StatusCode::NOT_FOUND);
    assert_eq!(b.get(&page).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jobs_pages_show_nothing_of_another_project() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&alice, json!({"label": "secret-label"})).await);
    t.claim(&agent, &id).await;
    let mut dave = Browser::logged_in(&t, "dave").await;
    let csrf = dave.csrf().await;
    let page = format!("/ui/projects/proj-a/jobs/{id}");
    for path in [
        "/ui/projects/proj-a/jobs".to_string(),
        page.clone(),
        format!("{page}/live"),
        format!("{page}/results/x.txt"),
        format!("/ui/projects/proj-b/jobs/{id}"),
    ] {
        let p = dave.get(&path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!p.body.contains("secret-label"));
    }
    let p = dave.get("/ui/projects/proj-b/jobs").await;
    assert!(p.status == StatusCode::OK && !p.body.contains(&id));
    let form = [("csrf", csrf.as_str()), ("operation", "cancel")];
    assert_eq!(
        dave.post(&format!("{page}/operation"), &form).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        dave.post(&format!("{page}/delete"), &form[..1])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let (s, j) = job_status(&t, &id).await;
    assert_eq!((s, j.get("pendingOperation")), (StatusCode::OK, None));
    // The API routes behind these pages, with a token of dave's project: 404 too.
    let bob = t.user("bob").project("proj-b").token().await;
    for path in [
        format!("/api/v1/job/{id}"),
        format!("/api/v1/job/{id}/events"),
        format!("/api/v1/job/{id}/output/stdout"),
        format!("/api/v1/job/{id}/results"),
    ] {
        assert_eq!(t.get(&path, &bob).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    // Not a job id: not found.
    let mut carol = Browser::logged_in(&t, "carol").await;
    assert_eq!(
        carol.get("/ui/projects/proj-a/jobs/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Reads server-sent events until `until` says stop or 10 s pass: `(event, data)` pairs.
async fn events(
    resp: reqwest::Response,
    until: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let mut resp = resp;
    let mut buf = String::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !until(&out) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("events within 10 s")
            .unwrap();
        let Some(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_string();
                }
            }
            if !event.is_empty() {
                out.push((event, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn live_output_streams_new_output_and_status_and_ends_with_the_job() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&alice, json!({"label": "live"})).await);
    t.claim(&agent, &id).await;
    t.report(&agent, &id, json!({"status": "running"})).await;
    append(&t, &agent, &id, 0, b"before\n").await;
    let b = Browser::logged_in(&t, "carol").await;
    let live = format!("/ui/projects/proj-a/jobs/{id}/live");
    let resp = with_cookie(&t, &b, &format!("{live}?stdout=7&stderr=0"), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let feeder = {
        let (http, base, agent, id) = (t.http.clone(), t.base.clone(), agent.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let url = format!("{base}/api/v1/job/{id}/output/stdout?offset=7");
            http.post(url)
                .bearer_auth(&agent)
                .body("später\n")
                .send()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            http.put(format!("{base}/api/v1/job/{id}"))
                .bearer_auth(&agent)
                .json(&json!({"status": "completed", "exitCode": 0}))
                .send()
                .await
                .unwrap();
        })
    };
    let got = events(resp, |e| e.iter().any(|(k, _)| k == "end")).await;
    feeder.await.unwrap();
    assert_eq!(
        got,
        vec![
            ("status".to_string(), r#"{"status":"running"}"#.to_string()),
            ("stdout".to_string(), r#""später\n""#.to_string()),
            (
                "status".to_string(),
                r#"{"status":"completed"}"#.to_string()
            ),
            ("end".to_string(), r#"{"status":"completed"}"#.to_string()),
        ],
        "only the output after the page's offset, then the end"
    );

    // A reconnect names the last event it saw: the stream resumes there.
    let resp = with_cookie(&t, &b, &live, Some("3.0")).await;
    let got = events(resp, |e| e.iter().any(|(k, _)| k == "end")).await;
    assert_eq!(
        got[0],
        ("stdout".to_string(), r#""ore\nspäter\n""#.to_string())
    );
    // Bad offsets are bad input.
    let r = with_cookie(&t, &b, &format!("{live}?stdout=x"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_memberships_roles_decide_what_the_jobs_pages_show_and_allow() {
    use hpcsera_api_types::Role;
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let id = id_of(&t.submit(&alice, json!({"label": "roles"})).await);
    let page = format!("/ui/projects/proj-a/jobs/{id}");
    let set = |roles: &'static [Role]| {
        let store = t.store.clone();
        async move {
            store
                .set_member_roles("carol", "proj-a", roles.iter().copied().collect())
                .await
                .unwrap()
        }
    };
    let mut b = Browser::logged_in(&t, "carol").await;
    let csrf = b.csrf().await;
    let cancel = [("csrf", csrf.as_str()), ("operation", "cancel")];

    // Without GET_JobStatus: nothing to see, nothing to do (403).
    set(&[Role::PostJob, Role::UpdateJob, Role::DeleteJob]).await;
    for path in [
        "/ui/projects/proj-a/jobs".to_string(),
        page.clone(),
        format!("{page}/live"),
        format!("{page}/results/x.txt"),
    ] {
        let p = b.get(&path).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
        assert!(p.body.contains("it needs GET_JobStatus"), "{path}");
    }

    // Reading only: the page, without buttons; the forms are refused.
    set(&[Role::GetJobStatus]).await;
    let p = b.get(&page).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(!p.body.contains("id=\"cancel\"") && !p.body.contains("id=\"delete\""));
    let p = b.post(&format!("{page}/operation"), &cancel).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("UPDATE_Job"), "{}", p.body);
    let p = b.post(&format!("{page}/delete"), &cancel[..1]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("DELETE_Job"));
    assert_eq!(job_status(&t, &id).await.1["status"], "queued");

    // UPDATE_Job: cancel, hold; still no delete.
    set(&[Role::GetJobStatus, Role::UpdateJob]).await;
    let p = b.get(&page).await;
    assert!(p.body.contains("id=\"cancel\"") && !p.body.contains("id=\"delete\""));
    assert_eq!(
        b.post(&format!("{page}/delete"), &cancel[..1]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.post(&format!("{page}/operation"), &cancel).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(job_status(&t, &id).await.1["status"], "cancelled");
}
