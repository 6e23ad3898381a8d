//! The job API: submission and validation, idempotency, pagination, the state machine,
//! operations, deletion, events, verbatim storage.

use crate::common::*;
use hpcsera_store::{JobFilter, NewJobRecord};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

fn new_job(params: Value) -> Value {
    json!({"site": SITE, "jobType": JOB_TYPE, "parameters": params})
}

#[tokio::test]
async fn submit_get_and_defaults() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let resp = t
        .http
        .post(format!("{}/api/v1/job", t.base))
        .bearer_auth(&tok)
        .json(&new_job(json!({"label": "hello"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let job: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/job/{}", id_of(&job)));
    assert_eq!(job["status"], "queued");
    assert_eq!(job["owner"], "alice");
    assert_eq!(job["project"], "proj-a");
    assert_eq!(
        job["parameters"],
        json!({"label": "hello", "steps": 10, "verbose": false, "mode": "fast"})
    );
    let (s, got) = t.get(&location, &tok).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, job);
}

#[tokio::test]
async fn parameter_validation_names_each_bad_field() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["parameters.label"]),
        (json!({"label": "x", "bogus": 1}), vec!["parameters.bogus"]),
        (json!({"label": 7}), vec!["parameters.label"]),
        (json!({"label": "x".repeat(201)}), vec!["parameters.label"]),
        (json!({"label": "x", "steps": 0}), vec!["parameters.steps"]),
        (
            json!({"label": "x", "steps": 1001}),
            vec!["parameters.steps"],
        ),
        (
            json!({"label": "x", "steps": 1.5}),
            vec!["parameters.steps"],
        ),
        (json!({"label": "x", "tol": 1.5}), vec!["parameters.tol"]),
        (json!({"label": "x", "tol": "0.1"}), vec!["parameters.tol"]),
        (
            json!({"label": "x", "verbose": 1}),
            vec!["parameters.verbose"],
        ),
        (
            json!({"label": "x", "mode": "slow"}),
            vec!["parameters.mode"],
        ),
        (
            json!({"label": "x", "tag": "Bad Tag"}),
            vec!["parameters.tag"],
        ),
        (
            json!({"label": "x", "code": "../etc/passwd"}),
            vec!["parameters.code"],
        ),
        (json!({"label": "a\u{0}b"}), vec!["parameters.label"]),
        (
            json!({"steps": "many", "mode": 3}),
            vec!["parameters.label", "parameters.steps", "parameters.mode"],
        ),
    ];
    for (params, expected) in cases {
        let (s, b) = t.post_job(&tok, new_job(params.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{params}: {b}");
        assert_eq!(code(&b), "validation_failed");
        let mut got = fields(&b);
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{params}: {b}");
    }
    // Boundary values are accepted.
    t.submit(
        &tok,
        json!({"label": "", "steps": 1, "tol": 0.0, "tag": "a-1"}),
    )
    .await;
    // A code parameter names a bundle of the project (see tests/code.rs).
    let bundle = json_of(
        t.http
            .post(format!("{}/api/v1/code", t.base))
            .bearer_auth(&tok)
            .header("content-type", "application/gzip")
            .body(vec![0x1f, 0x8b, 0, 0]),
    )
    .await;
    let code_id = bundle["id"].as_str().unwrap().to_string();
    t.submit(
        &tok,
        json!({"label": "x".repeat(200), "steps": 1000, "tol": 1, "code": code_id}),
    )
    .await;
    // Unknown site and job type.
    let (s, b) = t
        .post_job(&tok, json!({"site": "nowhere", "jobType": JOB_TYPE}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["site"]);
    let (s, b) = t
        .post_job(&tok, json!({"site": SITE, "jobType": "nope"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["jobType"]);
    assert_eq!(
        t.store
            .list_jobs(
                1,
                &JobFilter {
                    limit: 100,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .0
            .len(),
        2
    );
}

#[tokio::test]
async fn malformed_requests() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let post = |body: &'static str, ctype: &'static str| {
        t.http
            .post(format!("{}/api/v1/job", t.base))
            .bearer_auth(&tok)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = post("{not json", "application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(code(&b), "bad_request");
    assert!(b["error"]["requestId"].is_string());

    let r = post(r#"{"site": 5, "jobType": "sim"}"#, "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert_eq!(fields(&b), ["site"]);

    let r = post(
        r#"{"site": "s", "jobType": "sim", "surprise": true}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let r = post(
        r#"{"site": "s", "jobType": "sim", "parameters": []}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&r.json::<Value>().await.unwrap()), ["parameters"]);

    let r = post(r#"{"site": "s", "jobType": "sim"}"#, "text/plain")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Over the 1 MiB default body limit.
    let big = json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x".repeat(2 * 1024 * 1024)}});
    let (s, b) = t.post_job(&tok, big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&b), "payload_too_large");

    // Malformed ids and query parameters.
    for path in [
        "/api/v1/job/not-a-uuid",
        "/api/v1/job/1%27%20OR%201=1",
        "/api/v1/job/not-a-uuid/events",
    ] {
        let (s, b) = t.get(path, &tok).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(fields(&b), ["jobId"]);
    }
    let (s, _) = t
        .get(&format!("/api/v1/job/{}", uuid::Uuid::new_v4()), &tok)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for (q, field) in [
        ("status=bogus", "status"),
        // An empty status names none of the enum's values (schemathesis found it accepted).
        ("status=", "status"),
        ("status=queued,,running", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=abc", "cursor"),
        ("createdAfter=yesterday", "createdAfter"),
        ("colour=red", "colour"),
    ] {
        let (s, b) = t
            .get(&format!("/api/v1/job/findJobsByStatus?{q}"), &tok)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {b}");
        assert_eq!(fields(&b), [field], "{q}");
    }
    let (s, b) = t.get("/api/v1/nothing-here", &tok).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(code(&b), "not_found");
}

#[tokio::test]
async fn idempotent_submission() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let send = |key: &'static str, body: Value| {
        t.http
            .post(format!("{}/api/v1/job", t.base))
            .bearer_auth(&tok)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let r1 = send("k1", new_job(json!({"label": "a", "steps": 2})))
        .await
        .unwrap();
    assert_eq!(r1.status(), StatusCode::CREATED);
    let j1: Value = r1.json().await.unwrap();
    // Same key, same body (keys in another order): the same job.
    let r2 = send(
        "k1",
        json!({"parameters": {"steps": 2, "label": "a"}, "jobType": JOB_TYPE, "site": SITE}),
    )
    .await
    .unwrap();
    assert_eq!(r2.status(), StatusCode::OK);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let j2: Value = r2.json().await.unwrap();
    assert_eq!(id_of(&j1), id_of(&j2));
    // Same key, different body: refused.
    let r3 = send("k1", new_job(json!({"label": "b"}))).await.unwrap();
    assert_eq!(r3.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        code(&r3.json::<Value>().await.unwrap()),
        "idempotency_key_reused"
    );
    // Another key: another job. Another user with the same key: another job.
    let r4 = send("k2", new_job(json!({"label": "a", "steps": 2})))
        .await
        .unwrap();
    assert_eq!(r4.status(), StatusCode::CREATED);
    t.store.add_member("bob", "proj-a").await.unwrap();
    let bob = t.user("bob").project("proj-a").token().await;
    let r5 = t
        .http
        .post(format!("{}/api/v1/job", t.base))
        .bearer_auth(&bob)
        .header("idempotency-key", "k1")
        .json(&new_job(json!({"label": "a", "steps": 2})))
        .send()
        .await
        .unwrap();
    assert_eq!(r5.status(), StatusCode::CREATED);
    // A key that is too long is a bad request.
    let long = "k".repeat(256);
    let r6 = t
        .http
        .post(format!("{}/api/v1/job", t.base))
        .bearer_auth(&tok)
        .header("idempotency-key", long)
        .json(&new_job(json!({"label": "a"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r6.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_job() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let http = t.http.clone();
        let url = format!("{}/api/v1/job", t.base);
        let tok = tok.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(tok)
                .header("idempotency-key", "same-key")
                .json(&new_job(json!({"label": "race"})))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status}: {body}"
        );
        if status == StatusCode::CREATED {
            created += 1;
        }
        ids.insert(id_of(&body));
    }
    assert_eq!(ids.len(), 1, "all replies name one job");
    assert_eq!(created, 1, "exactly one request created it");
    let (_, list) = t.get("/api/v1/job/findJobsByStatus", &tok).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pagination_over_ten_thousand_jobs() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let project_id = t
        .store
        .authenticate(&tok)
        .await
        .unwrap()
        .unwrap()
        .project_id;
    let (site_id, _) = t.store.job_type(SITE, project_id, JOB_TYPE).await.unwrap();
    let params = serde_json::Map::new();
    let n = 10_000;
    // Inserted through the store (the API path is covered elsewhere), 8 at a time.
    let mut inserted = Vec::with_capacity(n);
    for chunk in 0..n / 8 {
        let mut batch = Vec::new();
        for _ in 0..8 {
            let store = t.store.clone();
            let params = params.clone();
            batch.push(tokio::spawn(async move {
                store
                    .create_job(&NewJobRecord {
                        project_id: 1,
                        owner_id: 1,
                        site_id,
                        job_type: JOB_TYPE,
                        parameters: &params,
                        resources: &Default::default(),
                        metadata: None,
                        callback_url: None,
                        idempotency: None,
                        actor: "test",
                        code_refs: &[],
                    })
                    .await
                    .unwrap()
                    .job
                    .id
            }));
        }
        for b in batch {
            inserted.push(b.await.unwrap());
        }
        let _ = chunk;
    }
    // Another project's jobs never show up.
    let bob = t.user("bob").project("proj-b").token().await;
    t.submit(&bob, json!({"label": "b"})).await;

    for limit in [1000, 337] {
        let mut seen = Vec::with_capacity(n);
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/v1/job/findJobsByStatus?limit={limit}");
            if let Some(c) = &cursor {
                path += &format!("&cursor={c}");
            }
            let (s, page) = t.get(&path, &tok).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let jobs = page["jobs"].as_array().unwrap();
            assert!(jobs.len() <= limit);
            seen.extend(jobs.iter().map(id_of));
            pages += 1;
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            // A job submitted while paging does not disturb the pages after the first.
            if pages == 2 {
                t.submit(&tok, json!({"label": "late"})).await;
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no job twice (limit {limit})");
        for id in &inserted {
            assert!(unique.contains(id), "job {id} missing (limit {limit})");
        }
        assert_eq!(pages, seen.len().div_ceil(limit));
    }
    // Filters combine with paging.
    let (_, page) = t
        .get(
            "/api/v1/job/findJobsByStatus?status=queued,running&limit=5",
            &tok,
        )
        .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5);
    let (_, page) = t
        .get("/api/v1/job/findJobsByStatus?status=completed", &tok)
        .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 0);
    assert!(page.get("nextCursor").is_none());
}

#[tokio::test]
async fn filters_by_status_site_type_and_time() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let a = t.submit(&tok, json!({"label": "a"})).await;
    let b = t.submit(&tok, json!({"label": "b"})).await;
    let c = t.submit(&tok, json!({"label": "c"})).await;
    // a stays queued: held while the agent claims b and c.
    t.operation(&tok, &id_of(&a), "hold").await;
    assert_eq!(t.claim(&agent, &id_of(&b)).await.len(), 2);
    t.operation(&tok, &id_of(&a), "release").await;
    t.report(&agent, &id_of(&c), json!({"status": "running"}))
        .await;
    let ids =
        |v: &Value| -> Vec<String> { v["jobs"].as_array().unwrap().iter().map(id_of).collect() };
    let (_, l) = t
        .get("/api/v1/job/findJobsByStatus?status=queued", &tok)
        .await;
    assert_eq!(ids(&l), [id_of(&a)]);
    let (_, l) = t
        .get(
            "/api/v1/job/findJobsByStatus?status=dispatched&status=running",
            &tok,
        )
        .await;
    assert_eq!(ids(&l), [id_of(&c), id_of(&b)], "newest first");
    let (_, l) = t
        .get(
            &format!("/api/v1/job/findJobsByStatus?site={SITE}&jobType={JOB_TYPE}"),
            &tok,
        )
        .await;
    assert_eq!(ids(&l).len(), 3);
    let (_, l) = t
        .get("/api/v1/job/findJobsByStatus?jobType=other", &tok)
        .await;
    assert_eq!(ids(&l).len(), 0);
    let created_b = b["createdAt"].as_str().unwrap();
    let (_, l) = t
        .get(
            &format!(
                "/api/v1/job/findJobsByStatus?createdAfter={}",
                created_b.replace(':', "%3A")
            ),
            &tok,
        )
        .await;
    assert!(
        ids(&l).contains(&id_of(&b)) && !ids(&l).contains(&id_of(&a))
            || a["createdAt"] == b["createdAt"]
    );
    let (_, l) = t
        .get(
            "/api/v1/job/findJobsByStatus?createdBefore=2000-01-01T00:00:00Z",
            &tok,
        )
        .await;
    assert_eq!(ids(&l).len(), 0);
}

#[tokio::test]
async fn state_machine_refuses_illegal_transitions() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let job = t.submit(&tok, json!({"label": "x"})).await;
    let id = id_of(&job);
    // queued → running skips the claim: refused, nothing changes.
    let (s, b) = t
        .report(&agent, &id, json!({"status": "running", "exitCode": 3}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(code(&b), "conflict");
    let (_, now) = t.get(&format!("/api/v1/job/{id}"), &tok).await;
    assert_eq!(now["status"], "queued");
    assert!(now.get("exitCode").is_none());
    // The path forward, with a skipped step, after the claim (only a poll claims).
    t.claim(&agent, &id).await;
    for (st, extra) in [
        ("dispatched", json!({})),
        ("submitted", json!({"batchJobId": "42"})),
        ("running", json!({})),
        ("running", json!({"message": "50% done"})),
        ("completed", json!({"exitCode": 0})),
    ] {
        let mut body = extra.clone();
        body["status"] = json!(st);
        let (s, b) = t.report(&agent, &id, body).await;
        assert_eq!(s, StatusCode::OK, "{st}: {b}");
        assert_eq!(b["status"], st);
    }
    let (_, done) = t.get(&format!("/api/v1/job/{id}"), &tok).await;
    assert_eq!(done["batchJobId"], "42");
    assert_eq!(done["exitCode"], 0);
    assert_eq!(done["message"], "50% done");
    assert!(done["finishedAt"].is_string());
    // Terminal: no way back, no operations, no changes.
    for st in ["running", "failed", "queued", "completed"] {
        let (s, _) = t.report(&agent, &id, json!({"status": st})).await;
        assert_eq!(s, StatusCode::CONFLICT, "completed → {st}");
    }
    let (s, _) = t.operation(&tok, &id, "cancel").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{id}"),
            &tok,
            Some(json!({"parameters": {"label": "y"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Backwards on the main path is refused.
    let j2 = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &j2).await;
    t.report(&agent, &j2, json!({"status": "running"})).await;
    let (s, _) = t.report(&agent, &j2, json!({"status": "submitted"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // A running job cannot be changed by the client.
    let (s, _) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{j2}"),
            &tok,
            Some(json!({"parameters": {"label": "y"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = t
        .report(
            &agent,
            &j2,
            json!({"status": "failed", "exitCode": 2, "message": "segfault"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["exitCode"], 2);
    // Mixed or empty updates are refused.
    let j3 = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    let (s, _) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{j3}"),
            &tok,
            Some(json!({"status": "dispatched", "parameters": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{j3}"),
            &tok,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = t.report(&agent, &j3, json!({"status": "exploded"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn client_changes_a_queued_job() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let id = id_of(&t.submit(&tok, json!({"label": "x", "steps": 5})).await);
    let (s, b) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{id}"),
            &tok,
            Some(json!({"parameters": {"label": "y"}, "metadata": {"k": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["parameters"]["label"], "y");
    assert_eq!(
        b["parameters"]["steps"], 10,
        "parameters are replaced as a whole, defaults filled in"
    );
    assert_eq!(b["metadata"], json!({"k": 1}));
    let (s, b) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{id}"),
            &tok,
            Some(json!({"parameters": {"label": "y", "steps": -1}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["parameters.steps"]);
    let (s, b) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{id}"),
            &tok,
            Some(json!({"callbackUrl": "http://127.0.0.1:9/x"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "callback hosts are refused by default"
    );
    assert_eq!(fields(&b), ["callbackUrl"]);
}

#[tokio::test]
async fn operations_on_queued_and_running_jobs() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    // A queued job: hold/release/cancel at once.
    let q = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    let (s, b) = t.operation(&tok, &q, "hold").await;
    assert_eq!((s, b["held"].clone()), (StatusCode::OK, json!(true)));
    let (s, b) = t.operation(&tok, &q, "release").await;
    assert_eq!((s, b["held"].clone()), (StatusCode::OK, json!(false)));
    let (s, b) = t.operation(&tok, &q, "cancel").await;
    assert_eq!(
        (s, b["status"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    assert!(b.get("pendingOperation").is_none());
    let (s, _) = t.operation(&tok, &q, "cancel").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = t.operation(&tok, &q, "explode").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // A running job: recorded for the agent.
    let r = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &r).await;
    t.report(&agent, &r, json!({"status": "running"})).await;
    let (s, b) = t.operation(&tok, &r, "hold").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(b["pendingOperation"]["operation"], "hold");
    assert_eq!(b["pendingOperation"]["requestedBy"], "user:alice");
    let (s, b) = t.operation(&tok, &r, "cancel").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        b["pendingOperation"]["operation"], "cancel",
        "a later operation replaces an earlier one"
    );
    assert_eq!(b["status"], "running");
    let (_, b) = t.report(&agent, &r, json!({"status": "cancelled"})).await;
    assert_eq!(b["status"], "cancelled");
    assert!(
        b.get("pendingOperation").is_none(),
        "ending the job settles the operation"
    );
    // The event log tells the story, with actors.
    let (_, ev) = t.get(&format!("/api/v1/job/{r}/events"), &tok).await;
    let kinds: Vec<(String, String)> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let agent_actor = format!("agent:agent@{SITE}");
    assert_eq!(
        kinds,
        [
            ("created".to_string(), "user:alice".to_string()),
            ("status".into(), agent_actor.clone()),
            ("status".into(), agent_actor.clone()),
            ("operation_requested".into(), "user:alice".into()),
            ("operation_requested".into(), "user:alice".into()),
            ("status".into(), agent_actor),
        ]
    );
    let evs = ev["events"].as_array().unwrap();
    assert_eq!(evs[2]["fromStatus"], "dispatched");
    assert_eq!(evs[2]["toStatus"], "running");
    let third = evs[2]["seq"].as_i64().unwrap();
    let (_, rest) = t
        .get(&format!("/api/v1/job/{r}/events?after={third}"), &tok)
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn delete_queued_and_running_jobs() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let q = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    let (s, _) = t.delete(&format!("/api/v1/job/{q}"), &tok).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t.get(&format!("/api/v1/job/{q}"), &tok).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t.delete(&format!("/api/v1/job/{q}"), &tok).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let r = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &r).await;
    let (s, _) = t.delete(&format!("/api/v1/job/{r}"), &tok).await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "a job an agent holds is cancelled first"
    );
    let (s, _) = t.get(&format!("/api/v1/job/{r}"), &tok).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "hidden from the client at once");
    let (_, l) = t.get("/api/v1/job/findJobsByStatus", &tok).await;
    assert!(!l.to_string().contains(&r));
    // The agent still reports; when the job ends it is gone for good.
    let (s, b) = t.report(&agent, &r, json!({"status": "cancelled"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = t.report(&agent, &r, json!({"status": "running"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn strings_are_stored_and_returned_verbatim() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let nasty = [
        "plain",
        "it's \"quoted\" `backticked`",
        "'; DROP TABLE jobs; --",
        "Robert'); DELETE FROM tokens WHERE ('1'='1",
        "$(rm -rf /) && echo $HOME; `id` | cat > /tmp/x",
        "line1\nline2\r\n\ttabbed \\ backslash",
        "ünïcödé — 日本語 — 🚀 — \u{202e}rtl",
        "%s %n %x {0} {{}} ${x}",
    ];
    for s in nasty {
        let meta = json!({"note": s, "nul": "a\u{0}b", s: [s]});
        let (st, job) = t.post_job(&tok, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": s}, "metadata": meta})).await;
        assert_eq!(st, StatusCode::CREATED, "{s:?}: {job}");
        let (_, got) = t.get(&format!("/api/v1/job/{}", id_of(&job)), &tok).await;
        assert_eq!(got["parameters"]["label"], s);
        assert_eq!(got["metadata"], meta);
        assert_eq!(got["metadata"]["nul"], "a\u{0}b");
    }
    // Reports from the agent too.
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &id).await;
    let msg = "exit 1: can't open '/scratch/ü'; \"quota\" exceeded; '); DROP TABLE jobs; --";
    let (s, b) = t
        .report(&agent, &id, json!({"status": "failed", "message": msg}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, got) = t.get(&format!("/api/v1/job/{id}"), &tok).await;
    assert_eq!(got["message"], msg);
    let (_, ev) = t.get(&format!("/api/v1/job/{id}/events"), &tok).await;
    assert_eq!(ev["events"][2]["message"], msg);
    // A NUL cannot be kept in a plain text column on every database: refused, never a 500.
    let id = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &id).await;
    let (s, b) = t
        .report(
            &agent,
            &id,
            json!({"status": "failed", "message": "a\u{0}b"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["message"]);
    for path in [
        "/api/v1/job/findJobsByStatus?site=a%00b",
        "/api/v1/job/findJobsByStatus?jobType=a%00b",
    ] {
        let (s, _) = t.get(path, &tok).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
    }
    let (s, _) = t.get("/api/v1/sites/a%00b/jobTypes", &tok).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = t
        .post_job(&tok, json!({"site": "a\u{0}b", "jobType": "x\u{0}"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}

#[tokio::test]
async fn metadata_limits() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    for (meta, ok) in [
        (json!({"a": "x".repeat(100)}), true),
        (json!({"a": "x".repeat(17 * 1024)}), false),
        (json!(["not", "an", "object"]), false),
        (json!("string"), false),
    ] {
        let (s, b) = t.post_job(&tok, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x"}, "metadata": meta})).await;
        if ok {
            assert_eq!(s, StatusCode::CREATED, "{b}");
        } else {
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
            assert_eq!(fields(&b), ["metadata"]);
        }
    }
}
