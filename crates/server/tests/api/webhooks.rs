//! Webhooks: signed, in order, retried, recorded; callback hosts limited to an allow-list.

use crate::common::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Receiver {
    /// (delivery id, timestamp, signature, body) of every request, successful or not.
    calls: Vec<(String, String, String, Vec<u8>)>,
    /// How many requests to fail with 500 before answering 200.
    fail_first: usize,
}

async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver {
        fail_first,
        ..Default::default()
    }));
    let s = state.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let mut r = s.lock().unwrap();
                r.calls.push((
                    h("x-hpcsera-delivery"),
                    h("x-hpcsera-timestamp"),
                    h("x-hpcsera-signature"),
                    body.to_vec(),
                ));
                if r.calls.len() <= r.fail_first {
                    AxStatus::INTERNAL_SERVER_ERROR
                } else {
                    AxStatus::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), state)
}

async fn app() -> TestApp {
    TestApp::spawn_configured(|c| {
        c.webhooks.callback_allow_hosts = vec!["127.0.0.1:*".into()];
        c.webhooks.retry_base = Duration::from_millis(50);
        c.webhooks.max_attempts = 4;
    })
    .await
}

async fn submit_with_callback(t: &TestApp, tok: &str, url: &str) -> String {
    let (s, b) = t.post_job(tok, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "w"}, "callbackUrl": url})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    id_of(&b)
}

async fn wait_calls(state: &Arc<Mutex<Receiver>>, n: usize) {
    let started = Instant::now();
    while state.lock().unwrap().calls.len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} webhook calls arrived",
            state.lock().unwrap().calls.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(secret: &str, ts: &str, sig: &str, body: &[u8]) -> bool {
    sig == hpcsera_server::webhooks::signature(secret, ts.parse().unwrap(), body)
}

#[tokio::test]
async fn every_transition_is_delivered_signed_and_in_order() {
    let t = app().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let (url, state) = receiver(0).await;
    let id = submit_with_callback(&t, &tok, &url).await;
    t.claim(&agent, &id).await;
    for st in ["dispatched", "running", "completed"] {
        t.report(&agent, &id, json!({"status": st})).await;
    }
    wait_calls(&state, 4).await;
    let secret = t.store.webhook_secret("proj-a").await.unwrap();
    let calls = state.lock().unwrap().calls.clone();
    let mut statuses = Vec::new();
    for (delivery, ts, sig, body) in &calls {
        assert!(
            verify(&secret, ts, sig, body),
            "signature of delivery {delivery}"
        );
        assert!(!verify("wrong", ts, sig, body));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["job"]["id"], id.as_str());
        assert_eq!(v["project"], "proj-a");
        assert_eq!(v["deliveryId"].to_string(), *delivery);
        statuses.push(v["event"]["toStatus"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["queued", "dispatched", "running", "completed"]);
    let started = Instant::now();
    let d = loop {
        let (s, d) = t.get(&format!("/api/v1/job/{id}/deliveries"), &tok).await;
        assert_eq!(s, StatusCode::OK);
        if d["deliveries"][3]["status"] == "delivered" {
            break d;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let list = d["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(
        list.iter()
            .all(|x| x["status"] == "delivered" && x["attempts"] == 1),
        "{d}"
    );
    // Operations without a status change are not delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state.lock().unwrap().calls.len(), 4);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_delivery_on_the_third_try_and_order_is_kept() {
    let t = app().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let (url, state) = receiver(2).await;
    let id = submit_with_callback(&t, &tok, &url).await;
    t.claim(&agent, &id).await;
    wait_calls(&state, 4).await;
    let calls = state.lock().unwrap().calls.clone();
    let ids: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        ids[1], ids[2],
        "the first delivery was tried three times before the next one"
    );
    assert_ne!(ids[2], ids[3]);
    // The receiver saw the fourth call; its outcome is recorded right after.
    let started = Instant::now();
    let d = loop {
        let (_, d) = t.get(&format!("/api/v1/job/{id}/deliveries"), &tok).await;
        if d["deliveries"][1]["status"] == "delivered" {
            break d;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let list = d["deliveries"].as_array().unwrap();
    assert_eq!(list[0]["attempts"], 3);
    assert_eq!(list[0]["status"], "delivered");
    assert_eq!(list[0]["lastStatus"], 200);
    assert_eq!(list[1]["attempts"], 1);
}

#[tokio::test]
async fn deliveries_are_given_up_after_the_last_attempt() {
    let t = app().await;
    let tok = t.alice().await;
    let (url, state) = receiver(usize::MAX).await;
    let id = submit_with_callback(&t, &tok, &url).await;
    wait_calls(&state, 4).await;
    let started = Instant::now();
    loop {
        let (_, d) = t.get(&format!("/api/v1/job/{id}/deliveries"), &tok).await;
        if d["deliveries"][0]["status"] == "failed" {
            assert_eq!(d["deliveries"][0]["attempts"], 4);
            assert!(d["deliveries"][0]["lastError"]
                .as_str()
                .unwrap()
                .contains("500"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state.lock().unwrap().calls.len(), 4, "no fifth attempt");
}

#[tokio::test]
async fn callbacks_outside_the_allow_list_are_refused_at_submission() {
    let t = app().await;
    let tok = t.alice().await;
    for url in [
        "http://10.0.0.1/hook",
        "http://localhost/hook",
        "http://metadata.internal/x",
        "ftp://127.0.0.1/x",
        "not a url",
    ] {
        let (s, b) = t.post_job(&tok, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "w"}, "callbackUrl": url})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {b}");
        assert_eq!(fields(&b), ["callbackUrl"]);
    }
    // With the default config (empty allow-list) every callback is refused.
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let (s, _) = t.post_job(&tok, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "w"}, "callbackUrl": "http://127.0.0.1:9/x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A receiver that accepts connections and never answers.
async fn stalled_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn a_stalled_receiver_does_not_delay_another_projects_delivery() {
    let t = app().await;
    let alice = t.alice().await;
    let stalled = stalled_receiver().await;
    // Project A's receiver hangs on several jobs' deliveries at once.
    for _ in 0..6 {
        submit_with_callback(&t, &alice, &stalled).await;
    }
    // Project B, with its own agent's job types at the site.
    let bob_agent = t
        .user("bob")
        .project("proj-b")
        .roles(&[
            hpcsera_api_types::Role::GetJob,
            hpcsera_api_types::Role::UpdateJobStatus,
        ])
        .site(SITE)
        .token()
        .await;
    let (s, b) = t
        .publish(&bob_agent, SITE, json!({"jobTypes": [job_type_spec()]}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let bob = t.user("bob").project("proj-b").token().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (url, state) = receiver(0).await;
    let started = Instant::now();
    submit_with_callback(&t, &bob, &url).await;
    while state.lock().unwrap().calls.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "project B's delivery waited behind project A's stalled receiver"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_callback_port_is_checked_at_submission_and_delivery() {
    let (url, state) = receiver(0).await;
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.webhooks.callback_allow_hosts =
            vec![format!("127.0.0.1:{port}"), "hooks.example.org".into()];
        c.webhooks.retry_base = Duration::from_millis(50);
        c.webhooks.max_attempts = 2;
    })
    .await;
    let tok = t.alice().await;
    for (callback, ok) in [
        (url.clone(), true),
        (
            format!("http://127.0.0.1:{}/hook", port.wrapping_add(1).max(1)),
            false,
        ),
        ("http://127.0.0.1/hook".to_string(), false),
        ("https://hooks.example.org/h".to_string(), true),
        ("http://hooks.example.org/h".to_string(), true),
        ("https://hooks.example.org:8443/h".to_string(), false),
        ("http://hooks.example.org:22/h".to_string(), false),
    ] {
        let (s, b) = t.post_job(&tok, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "w"}, "callbackUrl": callback})).await;
        if ok {
            assert_eq!(s, StatusCode::CREATED, "{callback}: {b}");
        } else {
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{callback}: {b}");
            assert_eq!(fields(&b), ["callbackUrl"]);
        }
    }
    wait_calls(&state, 1).await;
    // A job whose callback port is not allowed (as if the allow-list changed after it was
    // submitted) gets no call: the port is checked again at delivery.
    let (other_url, other) = receiver(0).await;
    let me = t.store.authenticate(&tok).await.unwrap().unwrap();
    let (site_id, _) = t
        .store
        .job_type(SITE, me.project_id, JOB_TYPE)
        .await
        .unwrap();
    let params = serde_json::Map::from_iter([("label".to_string(), json!("w"))]);
    let job = t
        .store
        .create_job(&hpcsera_store::NewJobRecord {
            project_id: me.project_id,
            owner_id: me.user_id,
            site_id,
            job_type: JOB_TYPE,
            parameters: &params,
            resources: &Default::default(),
            metadata: None,
            callback_url: Some(&other_url),
            idempotency: None,
            actor: "user:alice",
            code_refs: &[],
        })
        .await
        .unwrap()
        .job;
    let started = Instant::now();
    loop {
        let (_, d) = t
            .get(&format!("/api/v1/job/{}/deliveries", job.id), &tok)
            .await;
        if d["deliveries"][0]["status"] == "failed" {
            assert!(
                d["deliveries"][0]["lastError"]
                    .as_str()
                    .unwrap()
                    .contains("allow-list"),
                "{d}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(other.lock().unwrap().calls.is_empty());
}
