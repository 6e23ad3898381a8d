//! The agent's side of the API: claims by long-poll, leases, operations, output, results.

use crate::common::*;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn poll(t: &TestApp, agent: &str, body: Value) -> Value {
    let (s, b) = t.agent_poll(agent, body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Submits a job, lets the agent claim it and report it `status` with a batch job id.
async fn claimed_in_batch(
    t: &TestApp,
    tok: &str,
    agent: &str,
    label: &str,
    status: &str,
    batch_job_id: &str,
) -> String {
    let id = id_of(&t.submit(tok, json!({ "label": label })).await);
    poll(t, agent, json!({"maxJobs": 1})).await;
    t.report(
        agent,
        &id,
        json!({"status": status, "batchJobId": batch_job_id}),
    )
    .await;
    id
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(id_of).collect()
}

#[tokio::test]
async fn poll_claims_queued_jobs_of_its_site_and_project_once() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let a = id_of(&t.submit(&tok, json!({"label": "a"})).await);
    let b = id_of(&t.submit(&tok, json!({"label": "b"})).await);
    let held = id_of(&t.submit(&tok, json!({"label": "h"})).await);
    t.operation(&tok, &held, "hold").await;
    let bob = t.user("bob").project("proj-b").token().await;
    t.submit(&bob, json!({"label": "other project"})).await;

    let r = poll(&t, &agent, json!({"maxJobs": 1})).await;
    assert_eq!(
        ids(&r["jobs"]),
        vec![a.clone()],
        "oldest first, at most maxJobs"
    );
    assert_eq!(r["jobs"][0]["status"], "dispatched");
    assert_eq!(r["jobs"][0]["parameters"]["label"], "a");
    assert_eq!(r["leaseSeconds"], 300);
    let r = poll(&t, &agent, json!({"maxJobs": 10, "activeJobIds": [a]})).await;
    assert_eq!(
        ids(&r["jobs"]),
        vec![b.clone()],
        "held and other projects' jobs are not claimed"
    );
    let r = poll(&t, &agent, json!({"maxJobs": 10, "activeJobIds": [a, b]})).await;
    assert!(ids(&r["jobs"]).is_empty());
    assert!(r["releasedJobIds"].as_array().unwrap().is_empty());
    // Released → claimable.
    t.operation(&tok, &held, "release").await;
    let r = poll(&t, &agent, json!({"maxJobs": 10})).await;
    assert_eq!(ids(&r["jobs"]), vec![held.clone()]);
    let (_, ev) = t.get(&format!("/api/v1/job/{held}/events"), &tok).await;
    let last = ev["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["toStatus"], "dispatched");
    assert_eq!(last["actor"], format!("agent:agent@{SITE}"));
    // The site is seen.
    let (_, sites) = t.get("/api/v1/sites", &tok).await;
    assert!(sites["sites"][0]["lastSeenAt"].is_string());
}

#[tokio::test]
async fn agent_tokens_need_a_site_and_get_job() {
    let t = TestApp::spawn().await;
    let unrestricted = t.user("agent").project("proj-a").token().await;
    let no_role = t
        .user("agent")
        .project("proj-a")
        .roles(&[Role::UpdateJobStatus])
        .site(SITE)
        .token()
        .await;
    for tok in [&unrestricted, &no_role] {
        let (s, _) = t.agent_poll(tok, json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let agent = t.agent_token().await;
    for (body, field) in [
        (json!({"waitSeconds": 61}), "waitSeconds"),
        (json!({"maxJobs": 5000}), "maxJobs"),
        (json!({"activeJobIds": ["nope"]}), "activeJobIds"),
    ] {
        let (s, b) = t.agent_poll(&agent, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields(&b), [field]);
    }
}

#[tokio::test]
async fn long_poll_answers_when_a_job_is_queued() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let started = Instant::now();
    let waiter = {
        let http = t.http.clone();
        let url = format!("{}/api/v1/agent/poll", t.base);
        let agent = agent.clone();
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(agent)
                .json(&json!({"maxJobs": 5, "waitSeconds": 30}))
                .send()
                .await
                .unwrap();
            (Instant::now(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = id_of(&t.submit(&tok, json!({"label": "wake"})).await);
    let (answered, reply) = waiter.await.unwrap();
    assert_eq!(ids(&reply["jobs"]), [job]);
    assert!(
        answered.duration_since(started) < Duration::from_secs(30),
        "answered by the submission, not the timeout"
    );
    // With nothing to do it waits out waitSeconds and answers empty.
    let before = Instant::now();
    let r = poll(&t, &agent, json!({"maxJobs": 5, "waitSeconds": 1})).await;
    assert!(before.elapsed() >= Duration::from_millis(900));
    assert!(ids(&r["jobs"]).is_empty());
}

/// Two replicas of the server on one PostgreSQL database: a job queued on A reaches an
/// agent long-polling on B by LISTEN/NOTIFY, long before B's own re-check (set to 30 s here,
/// so only the notification can explain an answer within seconds). SQLite has one server
/// per database: there is nothing to test.
#[tokio::test]
async fn a_job_queued_on_one_replica_reaches_an_agent_waiting_on_another() {
    let recheck = Duration::from_secs(30);
    let a = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.connections.long_poll_recheck = recheck;
    })
    .await;
    if !a.db_url.starts_with("postgres") {
        eprintln!("SQLite: one server per database, no replicas to notify");
        return;
    }
    let code = tempfile::tempdir().unwrap();
    let b_store = hpcsera_store::Store::connect(&a.db_url).await.unwrap();
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        code_dir: code.path().to_path_buf(),
        ..Default::default()
    };
    config.rate_limits.rate_limit_per_second = 0;
    config.connections.long_poll_recheck = recheck;
    let b = hpcsera_server::Application::build(config, b_store)
        .await
        .unwrap();
    let b_base = format!("http://{}", b.local_addr().unwrap());
    tokio::spawn(b.run_until(std::future::pending()));
    let tok = a.alice().await;
    let agent = a.agent_token().await;
    for round in 0..3 {
        let waiter = {
            let http = a.http.clone();
            let url = format!("{b_base}/api/v1/agent/poll");
            let agent = agent.clone();
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(agent)
                    .json(&json!({"maxJobs": 5, "waitSeconds": 25}))
                    .send()
                    .await
                    .unwrap();
                let at = Instant::now();
                (at, r.status(), r.json::<Value>().await.unwrap())
            })
        };
        // The poll on B has looked once and waits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let queued = Instant::now();
        let job = id_of(
            &a.submit(&tok, json!({"label": format!("replica {round}")}))
                .await,
        );
        let (answered, status, reply) = waiter.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            ids(&reply["jobs"]),
            std::slice::from_ref(&job),
            "round {round}"
        );
        let took = answered.duration_since(queued);
        eprintln!("round {round}: queued on A, claimed on B after {took:?}");
        assert!(
            took < Duration::from_secs(5),
            "round {round}: the claim took {took:?}: B's re-check ({recheck:?}), not A's notification"
        );
        a.report(&agent, &job, json!({"status": "dispatched"}))
            .await;
    }
}

#[tokio::test]
async fn concurrent_agents_never_claim_a_job_twice() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let n = 60;
    let mut submitted = HashSet::new();
    for i in 0..n {
        submitted.insert(id_of(
            &t.submit(&tok, json!({"label": format!("j{i}")})).await,
        ));
    }
    let mut agents = Vec::new();
    for _ in 0..4 {
        let token = t.agent_token().await;
        let http = t.http.clone();
        let url = format!("{}/api/v1/agent/poll", t.base);
        agents.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let r: Value = json_of(
                    http.post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"maxJobs": 3, "activeJobIds": mine})),
                )
                .await;
                let got = ids(&r["jobs"]);
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        }));
    }
    let mut all = Vec::new();
    for a in agents {
        all.extend(a.await.unwrap());
    }
    let unique: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), n, "every job claimed exactly once");
    assert_eq!(unique, submitted);
}

/// Lease settings: a lease of `lease` seconds, a claim's of `claim`, the reaper every `reaper`.
fn leases(lease: u64, claim: u64, reaper: Duration) -> hpcsera_server::config::Leases {
    hpcsera_server::config::Leases {
        lease_seconds: lease,
        claim_lease_seconds: claim,
        reaper_interval: reaper,
    }
}

/// A server with these leases.
async fn with_leases(l: hpcsera_server::config::Leases) -> TestApp {
    TestApp::spawn_configured(|c| c.leases = l).await
}

async fn fast_leases() -> TestApp {
    with_leases(leases(2, 1, Duration::from_millis(200))).await
}

/// A second server on the same database (the first "restarted"), with these leases: its base URL.
async fn restart(t: &TestApp, l: hpcsera_server::config::Leases) -> String {
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        leases: l,
        ..Default::default()
    };
    let app = hpcsera_server::Application::build(config, t.store.clone())
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    tokio::spawn(app.run_until(std::future::pending()));
    base
}

async fn wait_for_status(t: &TestApp, tok: &str, id: &str, status: &str) -> Value {
    for _ in 0..100 {
        let (_, j) = t.get(&format!("/api/v1/job/{id}"), tok).await;
        if j["status"] == status {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} never became {status}");
}

#[tokio::test]
async fn unconfirmed_claims_are_offered_again_and_silent_agents_lose_jobs() {
    let t = fast_leases().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let unconfirmed = id_of(&t.submit(&tok, json!({"label": "u"})).await);
    let r = poll(&t, &agent, json!({"maxJobs": 1})).await;
    assert_eq!(ids(&r["jobs"]), vec![unconfirmed.clone()]);
    // The claim's answer "got lost": the agent never confirms. The job is offered again.
    let j = wait_for_status(&t, &tok, &unconfirmed, "queued").await;
    assert!(j["message"].as_str().unwrap().contains("offered again"));
    let r = poll(&t, &agent, json!({"maxJobs": 1})).await;
    assert_eq!(ids(&r["jobs"]), vec![unconfirmed.clone()]);

    // A confirmed job whose agent goes silent is lost.
    let r = poll(&t, &agent, json!({"activeJobIds": [unconfirmed]})).await;
    assert!(r["releasedJobIds"].as_array().unwrap().is_empty());
    t.report(&agent, &unconfirmed, json!({"status": "running"}))
        .await;
    let j = wait_for_status(&t, &tok, &unconfirmed, "lost").await;
    assert!(j["finishedAt"].is_string());
    // The agent learns it no longer holds it; reports are refused.
    let r = poll(&t, &agent, json!({"activeJobIds": [unconfirmed]})).await;
    assert_eq!(r["releasedJobIds"], json!([unconfirmed]));
    let (s, _) = t
        .report(&agent, &unconfirmed, json!({"status": "completed"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // An agent that keeps polling keeps its job.
    let kept = id_of(&t.submit(&tok, json!({"label": "k"})).await);
    poll(&t, &agent, json!({"maxJobs": 1})).await;
    for _ in 0..6 {
        poll(&t, &agent, json!({"activeJobIds": [kept]})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, j) = t.get(&format!("/api/v1/job/{kept}"), &tok).await;
    assert_eq!(j["status"], "dispatched");
}

#[tokio::test]
async fn operations_reach_the_holding_agent_and_are_acknowledged() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let other_agent = t.agent_token().await;
    let id = claimed_in_batch(&t, &tok, &agent, "op", "submitted", "77").await;
    // Another agent token cannot report on it.
    let (s, _) = t
        .report(&other_agent, &id, json!({"status": "running"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    let waiter = {
        let http = t.http.clone();
        let url = format!("{}/api/v1/agent/poll", t.base);
        let agent = agent.clone();
        let id = id.clone();
        tokio::spawn(async move {
            json_of(
                http.post(url)
                    .bearer_auth(agent)
                    .json(&json!({"activeJobIds": [id], "waitSeconds": 20})),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, _) = t.operation(&tok, &id, "hold").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let r = waiter.await.unwrap();
    assert_eq!(r["operations"], json!([{"jobId": id, "operation": "hold"}]));
    // Another agent cannot acknowledge it; the holder can.
    let ack = json!({"operation": "hold", "ok": true, "message": "scontrol hold 77"});
    let (s, _) = t.operation_done(&other_agent, &id, ack.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, j) = t.operation_done(&agent, &id, ack).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["held"], true);
    assert!(j.get("pendingOperation").is_none());
    let r = poll(&t, &agent, json!({"activeJobIds": [id]})).await;
    assert!(r["operations"].as_array().unwrap().is_empty());
    // A failed operation is recorded as such.
    t.operation(&tok, &id, "release").await;
    let (_, j) = t
        .operation_done(
            &agent,
            &id,
            json!({"operation": "release", "ok": false, "message": "scontrol: permission denied"}),
        )
        .await;
    assert_eq!(j["held"], true);
    let (_, ev) = t.get(&format!("/api/v1/job/{id}/events"), &tok).await;
    let last = ev["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "operation_failed");
    assert_eq!(last["message"], "release: scontrol: permission denied");
}

#[tokio::test]
async fn output_is_appended_in_order_and_readable_while_running() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "out"})).await);
    poll(&t, &agent, json!({"maxJobs": 1})).await;
    t.report(&agent, &id, json!({"status": "running"})).await;
    let append = |offset: usize, data: &'static [u8], token: String| {
        let url = format!("{}/api/v1/job/{id}/output/stdout?offset={offset}", t.base);
        let http = t.http.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .body(data)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(
        append(0, b"line 1\n", agent.clone()).await,
        (StatusCode::OK, json!({"length": 7}))
    );
    assert_eq!(
        append(7, b"line 2\n", agent.clone()).await.1,
        json!({"length": 14})
    );
    // A resent chunk (the reply was lost) is not stored twice; an overlapping one adds the rest.
    assert_eq!(
        append(7, b"line 2\n", agent.clone()).await.1,
        json!({"length": 14})
    );
    assert_eq!(
        append(7, b"line 2\nline 3\n", agent.clone()).await.1,
        json!({"length": 21})
    );
    // A gap is refused.
    assert_eq!(
        append(30, b"x", agent.clone()).await.0,
        StatusCode::CONFLICT
    );
    // Another agent token cannot write.
    assert_eq!(
        append(21, b"x", t.agent_token().await).await.0,
        StatusCode::CONFLICT
    );

    let read = |offset: i64, max: i64| {
        let url = format!(
            "{}/api/v1/job/{id}/output/stdout?offset={offset}&maxBytes={max}",
            t.base
        );
        let http = t.http.clone();
        let tok = tok.clone();
        async move {
            let r = http.get(url).bearer_auth(tok).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let h = r.headers().clone();
            let next: i64 = h["x-next-offset"].to_str().unwrap().parse().unwrap();
            let complete = h["x-output-complete"] == "true";
            (r.bytes().await.unwrap().to_vec(), next, complete)
        }
    };
    assert_eq!(
        read(0, 1 << 20).await,
        (b"line 1\nline 2\nline 3\n".to_vec(), 21, false)
    );
    assert_eq!(read(3, 6).await, (b"e 1\nli".to_vec(), 9, false));
    assert_eq!(read(21, 100).await, (Vec::new(), 21, false));
    // Read in small steps: every byte once, in order.
    let mut got = Vec::new();
    let mut off = 0;
    loop {
        let (data, next, _) = read(off, 5).await;
        if data.is_empty() {
            break;
        }
        got.extend(data);
        off = next;
    }
    assert_eq!(got, b"line 1\nline 2\nline 3\n");
    t.report(&agent, &id, json!({"status": "completed", "exitCode": 0}))
        .await;
    assert!(
        read(21, 100).await.2,
        "complete once the job ended and all was read"
    );
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/output/stderr"),
            Some(&tok),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/output/stdlog"),
            Some(&tok),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let bob = t.user("bob").project("proj-b").token().await;
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/output/stdout"),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn output_beyond_the_limit_is_cut_and_marked() {
    let t = TestApp::spawn_configured(|c| {
        c.limits.max_output_bytes = 10;
    })
    .await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "big"})).await);
    poll(&t, &agent, json!({"maxJobs": 1})).await;
    let r = t
        .http
        .post(format!("{}/api/v1/job/{id}/output/stdout?offset=0", t.base))
        .bearer_auth(&agent)
        .body("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"length": 10}));
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/output/stdout"),
            Some(&tok),
        )
        .await;
    assert_eq!(r.headers()["x-output-truncated"], "true");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");
}

#[tokio::test]
async fn result_files_are_uploaded_listed_and_downloaded() {
    let t = TestApp::spawn_configured(|c| {
        c.limits.max_result_bytes = 2 * 1024 * 1024;
    })
    .await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "res"})).await);
    // Not before the agent holds the job.
    let put = |name: &str, data: Vec<u8>, token: &str| {
        t.http
            .put(format!("{}/api/v1/job/{id}/results/{name}", t.base))
            .bearer_auth(token.to_string())
            .body(data)
            .send()
    };
    assert_eq!(
        put("a.txt", b"x".to_vec(), &agent).await.unwrap().status(),
        StatusCode::CONFLICT
    );
    poll(&t, &agent, json!({"maxJobs": 1})).await;
    let r = put("out/summary.csv", b"a,b\n1,2\n".to_vec(), &agent)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["size"], 8);
    assert_eq!(f["sha256"], sha256_hex(b"a,b\n1,2\n"));
    let big = vec![7u8; 1024 * 1024 + 1];
    assert_eq!(
        put("big.bin", big, &agent).await.unwrap().status(),
        StatusCode::CREATED,
        "bigger than the JSON limit is fine"
    );
    let too_big = vec![0u8; 2 * 1024 * 1024 + 1];
    let r = put("huge.bin", too_big, &agent).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&r.json::<Value>().await.unwrap()), "payload_too_large");
    for bad in [
        "..%2Fescape",
        "a%2F..%2Fb",
        "a%2F%2Fb",
        "sp%20ace",
        "%2Fabs",
    ] {
        assert_eq!(
            put(bad, b"x".to_vec(), &agent).await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let (s, list) = t.get(&format!("/api/v1/job/{id}/results"), &tok).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big.bin", "out/summary.csv"]);
    let r = t
        .http
        .get(format!(
            "{}/api/v1/job/{id}/results/out/summary.csv",
            t.base
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("etag"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"a,b\n1,2\n");
    let (s, _) = t
        .get(&format!("/api/v1/job/{id}/results/missing.txt"), &tok)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let bob = t.user("bob").project("proj-b").token().await;
    let (s, _) = t.get(&format!("/api/v1/job/{id}/results"), &bob).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A client token without UPDATE_JobStatus cannot upload.
    let reader = t
        .user("alice")
        .project("proj-a")
        .roles(&[Role::GetJobStatus])
        .token()
        .await;
    assert_eq!(
        put("x.txt", b"x".to_vec(), &reader).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn event_reads_wait_for_the_next_event() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "ev"})).await);
    let (_, ev) = t.get(&format!("/api/v1/job/{id}/events"), &tok).await;
    let last = ev["events"][0]["seq"].as_i64().unwrap();
    let waiter = {
        let http = t.http.clone();
        let url = format!("{}/api/v1/job/{id}/events?after={last}&wait=30", t.base);
        let tok = tok.clone();
        tokio::spawn(async move {
            let r: Value = json_of(http.get(url).bearer_auth(tok)).await;
            (Instant::now(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    poll(&t, &agent, json!({"maxJobs": 1})).await;
    let (got_at, r) = waiter.await.unwrap();
    assert!(got_at >= sent);
    assert!(
        got_at.duration_since(sent) < Duration::from_secs(30),
        "answered by the event, not the timeout"
    );
    assert_eq!(r["events"][0]["toStatus"], "dispatched");
    // Nothing new: an empty answer after the wait.
    let seq = r["events"][0]["seq"].as_i64().unwrap();
    let before = Instant::now();
    let (s, r) = t
        .get(&format!("/api/v1/job/{id}/events?after={seq}&wait=1"), &tok)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(r["events"].as_array().unwrap().is_empty());
    assert!(before.elapsed() >= Duration::from_millis(900));
    let (s, _) = t
        .get(&format!("/api/v1/job/{id}/events?wait=61"), &tok)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn project_stream_resumed_from_its_cursor_sees_every_event_once() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let bob = t.user("bob").project("proj-b").token().await;
    // A consumer reads part of the stream, "disconnects", and resumes from its cursor while
    // jobs go on changing, concurrently, in several requests at once.
    let producer = {
        let base = t.base.clone();
        let http = t.http.clone();
        let tok = tok.clone();
        let agent = agent.clone();
        let bob = bob.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let body = json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": format!("s{i}")}});
                let j: Value = json_of(
                    http.post(format!("{base}/api/v1/job"))
                        .bearer_auth(&tok)
                        .json(&body),
                )
                .await;
                http.post(format!("{base}/api/v1/job"))
                    .bearer_auth(&bob)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                ids.push(id_of(&j));
            }
            // Only a poll claims; the reports below then move the jobs on concurrently.
            let claimed: Value = json_of(
                http.post(format!("{base}/api/v1/agent/poll"))
                    .bearer_auth(&agent)
                    .json(&json!({"maxJobs": 1000, "waitSeconds": 0})),
            )
            .await;
            assert_eq!(claimed["jobs"].as_array().unwrap().len(), ids.len());
            let mut tasks = Vec::new();
            for id in ids.clone() {
                let http = http.clone();
                let base = base.clone();
                let agent = agent.clone();
                tasks.push(tokio::spawn(async move {
                    for st in ["dispatched", "running", "completed"] {
                        let r = http
                            .put(format!("{base}/api/v1/job/{id}"))
                            .bearer_auth(&agent)
                            .json(&json!({"status": st}))
                            .send()
                            .await
                            .unwrap();
                        assert!(r.status().is_success());
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            ids
        })
    };
    let mut seen: Vec<(i64, String, Option<String>)> = Vec::new();
    let mut cursor = 0;
    let mut reads = 0;
    loop {
        // Read at most 7 at a time and start over with a fresh request each time, as a client
        // that keeps disconnecting would.
        let (s, r) = t
            .get(
                &format!("/api/v1/events?after={cursor}&limit=7&wait=2"),
                &tok,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let evs = r["events"].as_array().unwrap();
        for e in evs {
            let seq = e["seq"].as_i64().unwrap();
            assert!(seq > cursor, "events come in order");
            cursor = seq;
            seen.push((
                seq,
                e["jobId"].as_str().unwrap().to_string(),
                e["toStatus"].as_str().map(String::from),
            ));
        }
        reads += 1;
        if evs.is_empty() && producer.is_finished() {
            break;
        }
        assert!(reads < 1000);
    }
    let ids = producer.await.unwrap();
    // Every job: created(queued), dispatched, running, completed — each exactly once.
    assert_eq!(seen.len(), ids.len() * 4, "{seen:?}");
    for id in &ids {
        let mine: Vec<Option<String>> = seen
            .iter()
            .filter(|e| &e.1 == id)
            .map(|e| e.2.clone())
            .collect();
        assert_eq!(
            mine,
            ["queued", "dispatched", "running", "completed"]
                .map(|s| Some(s.to_string()))
                .to_vec(),
            "job {id}"
        );
    }
    // The other project's stream has only its own events.
    let (_, r) = t.get("/api/v1/events", &bob).await;
    assert_eq!(r["events"].as_array().unwrap().len(), ids.len());
}

#[tokio::test]
async fn output_reads_can_wait_for_new_output() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "w"})).await);
    poll(&t, &agent, json!({"maxJobs": 1})).await;
    let waiter = |stream: &'static str| {
        let url = format!(
            "{}/api/v1/job/{id}/output/{stream}?offset=0&wait=30",
            t.base
        );
        let http = t.http.clone();
        let tok = tok.clone();
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(tok).send().await.unwrap();
            (Instant::now(), r.bytes().await.unwrap().to_vec())
        })
    };
    // A reader of stdout waits, and answers when stdout grows.
    let w = waiter("stdout");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let r = t
        .http
        .post(format!("{}/api/v1/job/{id}/output/stdout?offset=0", t.base))
        .bearer_auth(&agent)
        .body("hello\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (at, data) = w.await.unwrap();
    assert_eq!(data, b"hello\n");
    assert!(
        at.duration_since(sent) < Duration::from_secs(30),
        "woken by the append"
    );
    // A reader of stderr is woken by stdout output too (empty answer: look at the other one).
    let w = waiter("stderr");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    t.http
        .post(format!("{}/api/v1/job/{id}/output/stdout?offset=6", t.base))
        .bearer_auth(&agent)
        .body("more\n")
        .send()
        .await
        .unwrap();
    let (at, data) = w.await.unwrap();
    assert!(data.is_empty());
    assert!(at.duration_since(sent) < Duration::from_secs(30));
    // And by the end of the job.
    let w = waiter("stderr");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    t.report(&agent, &id, json!({"status": "completed", "exitCode": 0}))
        .await;
    let (at, _) = w.await.unwrap();
    assert!(at.duration_since(sent) < Duration::from_secs(30));
    let (s, _) = t
        .get(&format!("/api/v1/job/{id}/output/stdout?wait=61"), &tok)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_restarted_server_gives_agents_one_lease_period_to_come_back() {
    // The first server never reaps; its leases run out while it is "down".
    let t = with_leases(leases(2, 1, Duration::from_secs(3600))).await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let kept = id_of(&t.submit(&tok, json!({"label": "kept"})).await);
    let silent = id_of(&t.submit(&tok, json!({"label": "silent"})).await);
    poll(&t, &agent, json!({"maxJobs": 2})).await;
    for id in [&kept, &silent] {
        t.report(&agent, id, json!({"status": "running"})).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The server comes back (same database) with a fast reaper.
    let base = restart(&t, leases(2, 1, Duration::from_millis(100))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The agent comes back within the grace and renews one job; the other stays silent.
    let r = t
        .http
        .post(format!("{base}/api/v1/agent/poll"))
        .bearer_auth(&agent)
        .json(&json!({"activeJobIds": [kept]}))
        .send()
        .await
        .unwrap();
    let r: Value = r.json().await.unwrap();
    assert!(r["releasedJobIds"].as_array().unwrap().is_empty(), "{r}");
    // From now on it keeps renewing, as a live agent does.
    let renewer = {
        let (http, base, agent, kept) = (t.http.clone(), base.clone(), agent.clone(), kept.clone());
        tokio::spawn(async move {
            loop {
                let _ = http
                    .post(format!("{base}/api/v1/agent/poll"))
                    .bearer_auth(&agent)
                    .json(&json!({"activeJobIds": [kept]}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let started = Instant::now();
    loop {
        let s = t.store.get_job(1, &silent).await.unwrap();
        if s.status.to_string() == "lost" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the silent job is lost after the grace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        t.store.get_job(1, &kept).await.unwrap().status.to_string(),
        "running"
    );
    renewer.abort();
}

// ---- Trust boundaries (issue 8): job types per (site, project), ended jobs, operations. ----

async fn submit_type(t: &TestApp, tok: &str, jt: &str, steps: i64) -> (StatusCode, Value) {
    let body = json!({"site": SITE, "jobType": jt, "parameters": {"label": "x", "steps": steps}});
    t.post_job(tok, body).await
}

#[tokio::test]
async fn two_projects_agents_on_one_site_keep_their_own_job_types_and_health() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let bob = t.user("bob").project("proj-b").token().await;
    let agent_a = t.agent_token().await;
    let agent_b = t.agent_token_b().await;
    let mut loose = job_type_spec();
    loose["parameters"][1]["maximum"] = json!(1_000_000);
    let mut b_only = job_type_spec();
    b_only["name"] = json!("bsim");
    let a_body =
        json!({"agentVersion": "1-a", "agentHost": "a-host", "jobTypes": [job_type_spec()]});
    assert_eq!(
        t.publish(&agent_a, SITE, a_body).await.0,
        StatusCode::NO_CONTENT
    );
    // B publishes a looser "sim" and a type of its own: A's spec and health stay.
    let b_body = json!({"agentVersion": "1-b", "agentHost": "b-host", "jobTypes": [loose, b_only]});
    assert_eq!(
        t.publish(&agent_b, SITE, b_body).await.0,
        StatusCode::NO_CONTENT
    );
    let site_view = |v: Value| {
        v["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == SITE)
            .cloned()
            .unwrap()
    };
    let a_site = site_view(t.get("/api/v1/sites", &alice).await.1);
    assert_eq!(a_site["jobTypes"], json!(["sim"]));
    assert_eq!(a_site["agentHost"], "a-host");
    assert_eq!(a_site["agentVersion"], "1-a");
    let b_site = site_view(t.get("/api/v1/sites", &bob).await.1);
    assert_eq!(b_site["jobTypes"], json!(["bsim", "sim"]));
    assert_eq!(b_site["agentHost"], "b-host");
    // Each project validates against its own spec and runs only its own types.
    let (s, b) = submit_type(&t, &alice, "sim", 5000).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "B's looser spec must not apply to A: {b}"
    );
    let (s, b) = submit_type(&t, &alice, "bsim", 5).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = submit_type(&t, &bob, "sim", 5000).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let bob_job = id_of(&b);
    let (s, b) = submit_type(&t, &alice, "sim", 5).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let alice_job = id_of(&b);
    // Each project's agent claims only its project's jobs.
    assert_eq!(t.claim(&agent_b, &bob_job).await, vec![bob_job.clone()]);
    assert_eq!(t.claim(&agent_a, &alice_job).await, vec![alice_job.clone()]);
    // B wipes its own list: A's is untouched, and A still submits.
    assert_eq!(
        t.publish(&agent_b, SITE, json!({"jobTypes": []})).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, a_types) = t
        .get(&format!("/api/v1/sites/{SITE}/jobTypes"), &alice)
        .await;
    assert_eq!(a_types["jobTypes"].as_array().unwrap().len(), 1);
    assert_eq!(a_types["jobTypes"][0]["parameters"][1]["maximum"], 1000);
    let (_, b_types) = t.get(&format!("/api/v1/sites/{SITE}/jobTypes"), &bob).await;
    assert_eq!(b_types["jobTypes"], json!([]));
    assert_eq!(
        submit_type(&t, &alice, "sim", 5).await.0,
        StatusCode::CREATED
    );
    // B's polls record B's agent only.
    t.agent_poll(&agent_b, json!({"agentVersion": "2-b"})).await;
    assert_eq!(
        site_view(t.get("/api/v1/sites", &alice).await.1)["agentVersion"],
        "1-a"
    );
    assert_eq!(
        site_view(t.get("/api/v1/sites", &bob).await.1)["agentVersion"],
        "2-b"
    );
    // A site that B's agent creates is not listed for A, and its job types are 404 for A.
    let b_elsewhere = t
        .user("bob")
        .project("proj-b")
        .roles(&[Role::GetJob])
        .site("b-site")
        .token()
        .await;
    assert_eq!(
        t.publish(
            &b_elsewhere,
            "b-site",
            json!({"jobTypes": [job_type_spec()]})
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (_, a_sites) = t.get("/api/v1/sites", &alice).await;
    assert!(!a_sites.to_string().contains("b-site"), "{a_sites}");
    assert_eq!(
        t.get("/api/v1/sites/b-site/jobTypes", &alice).await.0,
        StatusCode::NOT_FOUND
    );
    let body = json!({"site": "b-site", "jobType": "sim", "parameters": {"label": "x"}});
    assert_eq!(
        t.post_job(&alice, body).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (_, b_sites) = t.get("/api/v1/sites", &bob).await;
    assert!(b_sites.to_string().contains("b-site"), "{b_sites}");
    // A site an admin adds is listed for everyone.
    t.store.add_site("shared-site").await.unwrap();
    assert!(t
        .get("/api/v1/sites", &alice)
        .await
        .1
        .to_string()
        .contains("shared-site"));
}

async fn append(t: &TestApp, agent: &str, id: &str, offset: u64, data: &[u8]) -> StatusCode {
    t.http
        .post(format!(
            "{}/api/v1/job/{id}/output/stdout?offset={offset}",
            t.base
        ))
        .bearer_auth(agent)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_ended_job_takes_no_more_writes() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &id).await;
    assert_eq!(
        append(&t, &agent, &id, 0, b"before\n").await,
        StatusCode::OK
    );
    let put = |name: &str, data: &'static [u8]| {
        let url = format!("{}/api/v1/job/{id}/results/{name}", t.base);
        let req = t
            .http
            .put(url)
            .bearer_auth(&agent)
            .header("content-type", "application/octet-stream")
            .body(data);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(put("r.txt", b"one").await, StatusCode::CREATED);
    let (s, _) = t.operation(&tok, &id, "hold").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, b) = t
        .report(&agent, &id, json!({"status": "completed", "exitCode": 0}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // After the end: output, result files, operation acknowledgements and reports are 409.
    assert_eq!(
        append(&t, &agent, &id, 7, b"after\n").await,
        StatusCode::CONFLICT
    );
    assert_eq!(put("r.txt", b"replaced").await, StatusCode::CONFLICT);
    assert_eq!(put("new.txt", b"new").await, StatusCode::CONFLICT);
    let (s, _) = t
        .operation_done(&agent, &id, json!({"operation": "hold", "ok": true}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = t
        .report(
            &agent,
            &id,
            json!({"status": "completed", "message": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Nothing changed.
    let (_, j) = t.get(&format!("/api/v1/job/{id}"), &tok).await;
    assert_eq!(j["status"], "completed");
    assert_eq!(j["held"], false);
    assert!(j.get("message").is_none(), "{j}");
    let out = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/output/stdout"),
            Some(&tok),
        )
        .await;
    assert_eq!(out.headers()["x-output-complete"], "true");
    assert_eq!(&out.bytes().await.unwrap()[..], b"before\n");
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/results/r.txt"),
            Some(&tok),
        )
        .await;
    assert_eq!(&r.bytes().await.unwrap()[..], b"one");
    let (_, list) = t.get(&format!("/api/v1/job/{id}/results"), &tok).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn operations_pending_on_a_claim_that_goes_back_to_the_queue_are_carried_out() {
    let t = fast_leases().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    // Three claims that the agent never confirms, each with an operation pending.
    let c = id_of(&t.submit(&tok, json!({"label": "c"})).await);
    let h = id_of(&t.submit(&tok, json!({"label": "h"})).await);
    let r = poll(&t, &agent, json!({"maxJobs": 2})).await;
    assert_eq!(ids(&r["jobs"]), vec![c.clone(), h.clone()]);
    assert_eq!(
        t.operation(&tok, &c, "cancel").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(t.operation(&tok, &h, "hold").await.0, StatusCode::ACCEPTED);
    // A pending cancel is not replaced by a later hold or release: cancel wins.
    let (s, b) = t.operation(&tok, &c, "hold").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, _) = t.operation(&tok, &c, "release").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, j) = t.get(&format!("/api/v1/job/{c}"), &tok).await;
    assert_eq!(j["pendingOperation"]["operation"], "cancel", "{j}");
    // The leases run out: the cancelled one ends, the held one is queued and held.
    let j = wait_for_status(&t, &tok, &c, "cancelled").await;
    assert!(j.get("pendingOperation").is_none(), "{j}");
    let j = wait_for_status(&t, &tok, &h, "queued").await;
    assert_eq!(j["held"], true, "{j}");
    assert!(j.get("pendingOperation").is_none(), "{j}");
    // The next poll hands out neither.
    let r = poll(&t, &agent, json!({"maxJobs": 10})).await;
    assert!(ids(&r["jobs"]).is_empty(), "{r}");
    assert!(r["operations"].as_array().unwrap().is_empty(), "{r}");
    // Released, the held one is claimed again.
    assert_eq!(t.operation(&tok, &h, "release").await.0, StatusCode::OK);
    let r = poll(&t, &agent, json!({"maxJobs": 10})).await;
    assert_eq!(ids(&r["jobs"]), vec![h.clone()]);
    // A pending release on a re-queued claim of a held job releases it.
    let rel = id_of(&t.submit(&tok, json!({"label": "r"})).await);
    let r = poll(&t, &agent, json!({"maxJobs": 1, "activeJobIds": [h]})).await;
    assert_eq!(ids(&r["jobs"]), vec![rel.clone()]);
    assert_eq!(
        t.operation(&tok, &rel, "hold").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.operation(&tok, &rel, "release").await.0,
        StatusCode::ACCEPTED
    );
    let j = wait_for_status(&t, &tok, &rel, "queued").await;
    assert_eq!(j["held"], false, "{j}");
}

#[tokio::test]
async fn an_agent_that_cannot_carry_out_an_operation_leaves_an_event_with_its_reason() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "x"})).await);
    t.claim(&agent, &id).await;
    t.report(&agent, &id, json!({"status": "running"})).await;
    assert_eq!(t.operation(&tok, &id, "hold").await.0, StatusCode::ACCEPTED);
    let (s, j) = t
        .operation_done(
            &agent,
            &id,
            json!({"operation": "hold", "ok": false, "message": "scontrol: Invalid job id"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["held"], false);
    assert!(j.get("pendingOperation").is_none(), "{j}");
    let (_, ev) = t.get(&format!("/api/v1/job/{id}/events"), &tok).await;
    let failed = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "operation_failed")
        .cloned();
    let failed = failed.expect("an operation_failed event");
    assert_eq!(failed["message"], "hold: scontrol: Invalid job id");
    assert!(failed["actor"].as_str().unwrap().starts_with("agent:"));
}

#[tokio::test]
async fn the_agent_that_held_a_lost_job_records_its_cleanup_as_an_event() {
    let t = fast_leases().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = claimed_in_batch(&t, &tok, &agent, "l", "running", "42").await;
    let cleanup = |who: String, body: Value| {
        let t = &t;
        let id = id.clone();
        async move {
            t.send(
                Method::POST,
                &format!("/api/v1/agent/jobs/{id}/cleanup"),
                &who,
                Some(body),
            )
            .await
        }
    };
    // Not lost yet: nothing to clean up.
    let (s, b) = cleanup(agent.clone(), json!({"message": "x"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let before = wait_for_status(&t, &tok, &id, "lost").await;
    // Another agent token of the project, another project's agent, the client token.
    let roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus, Role::GetCode]
        .into_iter()
        .collect();
    for (user, project, refused) in [
        ("alice", "proj-a", StatusCode::CONFLICT),
        ("bob", "proj-b", StatusCode::NOT_FOUND),
    ] {
        let other = t
            .user(user)
            .project(project)
            .role_set(roles)
            .site(SITE)
            .token()
            .await;
        let (s, b) = cleanup(other, json!({"message": "x"})).await;
        assert_eq!(s, refused, "{user} in {project}: {b}");
    }
    let (s, b) = cleanup(tok.clone(), json!({"message": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = cleanup(agent.clone(), json!({"message": ""})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = cleanup(agent.clone(), json!({"message": "a".repeat(4097)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // The agent that held it may: an event; the job is unchanged.
    let (s, j) = cleanup(
        agent.clone(),
        json!({"message": "cancelled batch job 42 of the lost job"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["status"], "lost");
    assert_eq!(j["message"], before["message"]);
    assert_eq!(j["updatedAt"], before["updatedAt"]);
    let (_, ev) = t.get(&format!("/api/v1/job/{id}/events"), &tok).await;
    let last = ev["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "agent_cleanup");
    assert_eq!(last["message"], "cancelled batch job 42 of the lost job");
    assert_eq!(last["actor"], format!("agent:agent@{SITE}"));
}

#[tokio::test]
async fn unconfirmed_claims_go_back_to_the_queue_from_the_servers_start() {
    // Regression: the reaper used to wait a whole lease period after a start before it
    // looked at anything, so a job claimed by an agent that died before confirming waited
    // that long (300 s by default) before another agent could take it.
    let t = with_leases(leases(2, 1, Duration::from_secs(3600))).await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let running = id_of(&t.submit(&tok, json!({"label": "running"})).await);
    let unconfirmed = id_of(&t.submit(&tok, json!({"label": "unconfirmed"})).await);
    poll(&t, &agent, json!({"maxJobs": 2})).await;
    t.report(&agent, &running, json!({"status": "running"}))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A new server with a long grace (30 s) and a fast reaper.
    restart(&t, leases(30, 1, Duration::from_millis(100))).await;
    let started = Instant::now();
    while t
        .store
        .get_job(1, &unconfirmed)
        .await
        .unwrap()
        .status
        .to_string()
        != "queued"
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the unconfirmed claim was not re-queued within the grace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = t.store.get_job(1, &running).await.unwrap();
    assert_eq!(
        r.status.to_string(),
        "running",
        "a confirmed lease keeps its grace"
    );
}

/// A whole number written with a fraction is a JSON Schema `integer` (schemathesis sends
/// `1.0` for an integer field): the server reads it as the integer, and a real fraction is
/// still refused naming the field.
#[tokio::test]
async fn integer_fields_take_whole_numbers_written_with_a_fraction() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let id = id_of(&t.submit(&tok, json!({"label": "a"})).await);
    let r = poll(&t, &agent, json!({"maxJobs": 1.0, "waitSeconds": 0.0})).await;
    assert_eq!(r["jobs"][0]["id"], id.as_str(), "{r}");
    let (s, b) = t
        .agent_poll(&agent, json!({"maxJobs": 1.5, "waitSeconds": 0}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["fields"][0]["field"], "maxJobs", "{b}");
}
