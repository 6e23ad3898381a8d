//! Service hygiene: tokens, OpenAPI, docs, health, metrics, request ids, audit log.

use crate::common::*;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_store::{now_ms, NewToken};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn token_self_describes_the_token() {
    let t = TestApp::spawn().await;
    let roles: RoleSet = [Role::PostJob, Role::GetJobStatus].into_iter().collect();
    let tok = t
        .user("alice")
        .project("proj-a")
        .role_set(roles)
        .site(SITE)
        .token()
        .await;
    let (s, b) = t.get("/api/v1/tokens/self", &tok).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["user"], "alice");
    assert_eq!(b["project"], "proj-a");
    assert_eq!(b["site"], SITE);
    assert_eq!(b["roles"], json!(["GET_JobStatus", "POST_Job"]));
    assert!(b.get("expiresAt").is_none());
    assert!(!b.to_string().contains(&tok), "the secret is never echoed");
    assert!(tok.starts_with("hpcs_"));
}

#[tokio::test]
async fn expired_revoked_and_orphaned_tokens_fail_at_once() {
    let t = TestApp::spawn().await;
    let (rec, expiring) = t
        .store
        .create_token(&NewToken {
            user: "alice",
            project: "proj-a",
            name: "short",
            roles: RoleSet::all(),
            site: None,
            expires_at: Some(now_ms() + 1500),
        })
        .await
        .unwrap();
    let (s, b) = t.get("/api/v1/tokens/self", &expiring).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["expiresAt"].is_string());
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (s, b) = t.get("/api/v1/tokens/self", &expiring).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("expired"),
        "{b}"
    );
    let _ = rec;

    let tok = t.alice().await;
    let id = t
        .store
        .list_tokens(Some("alice"))
        .await
        .unwrap()
        .last()
        .unwrap()
        .id
        .clone();
    assert_eq!(t.get("/api/v1/tokens/self", &tok).await.0, StatusCode::OK);
    t.store.revoke_token(&id, None).await.unwrap();
    let (s, b) = t.get("/api/v1/tokens/self", &tok).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("revoked"),
        "{b}"
    );
    assert!(
        t.store.revoke_token(&id, None).await.is_err(),
        "revoking twice is an error"
    );

    let tok = t.alice().await;
    t.store.remove_member("alice", "proj-a").await.unwrap();
    let (s, b) = t.get("/api/v1/tokens/self", &tok).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("member"),
        "{b}"
    );
    // A token cannot be made for a non-member, nor with no roles.
    assert!(t
        .store
        .create_token(&NewToken {
            user: "alice",
            project: "proj-a",
            name: "x",
            roles: RoleSet::all(),
            site: None,
            expires_at: None
        })
        .await
        .is_err());
    assert!(t
        .store
        .create_token(&NewToken {
            user: "bob",
            project: "proj-b",
            name: "x",
            roles: RoleSet::EMPTY,
            site: None,
            expires_at: None
        })
        .await
        .is_err());
}

#[tokio::test]
async fn tokens_are_stored_as_hashes_only() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let listed = t.store.list_tokens(None).await.unwrap();
    let debug = format!("{listed:?}");
    assert!(!debug.contains(&tok));
    let hash = hpcsera_store::hash_token(&tok);
    assert_eq!(hash.len(), 64);
    assert_ne!(hash, tok);
}

#[tokio::test]
async fn openapi_is_served_and_matches_the_checked_in_copy() {
    let t = TestApp::spawn().await;
    let served = t.raw(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(served.status(), StatusCode::OK);
    let served = served.text().await.unwrap();
    assert_eq!(served, hpcsera_server::spec_json());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == served,
        "openapi.json differs from the code; run `UPDATE_OPENAPI=1 cargo test -p hpcsera-server --test api openapi` and commit it"
    );
    let spec: Value = serde_json::from_str(&served).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/job",
        "/api/v1/job/findJobsByStatus",
        "/api/v1/job/updateByOperation/{jobId}",
        "/api/v1/job/{jobId}",
        "/api/v1/job/{jobId}/events",
    ] {
        assert!(spec["paths"].get(p).is_some(), "{p} missing from the spec");
    }
    let job = &spec["paths"]["/api/v1/job/{jobId}"];
    assert!(job.get("get").is_some() && job.get("put").is_some() && job.get("delete").is_some());
}

#[tokio::test]
async fn docs_are_served_from_the_binary() {
    let t = TestApp::spawn().await;
    let page = t.raw(Method::GET, "/api/v1/docs", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "init.js"] {
        assert!(html.contains(asset));
        let r = t
            .raw(Method::GET, &format!("/api/v1/docs/{asset}"), None)
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(r.bytes().await.unwrap().len() > 10);
    }
    let r = t
        .raw(Method::GET, "/api/v1/docs/../../etc/passwd", None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_readiness_metrics_and_request_ids() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let r = t.raw(Method::GET, "/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.raw(Method::GET, "/readyz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.raw(Method::GET, "/api/v1/tokens/self", Some(&tok)).await;
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 36);
    // A request id the caller sends is kept.
    let r = t
        .http
        .get(format!("{}/api/v1/job/not-a-uuid", t.base))
        .bearer_auth(&tok)
        .header("x-request-id", "my-trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-trace-123");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["requestId"], "my-trace-123");
    t.submit(&tok, json!({"label": "m"})).await;
    let text = t.metrics().await;
    assert!(
        text.contains(
            r#"hpcsera_http_requests_total{route="/api/v1/job",method="POST",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"hpcsera_http_requests_total{route="/api/v1/job/{jobId}",method="GET",status="400"} 1"#), "{text}");
    assert!(text.contains("hpcsera_http_request_duration_seconds_bucket{route=\"/api/v1/job\",method=\"POST\",le=\"+Inf\"} 1"));
    // Readiness fails when the database is gone.
    t.store.close().await;
    let r = t.raw(Method::GET, "/readyz", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn token_use_is_audited() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    t.submit(&tok, json!({"label": "audit"})).await;
    t.get("/api/v1/job/findJobsByStatus", "hpcs_wrong").await;
    let mut records = Vec::new();
    for _ in 0..50 {
        records = t.store.recent_audit(100).await.unwrap();
        if !t.store.recent_auth_failures(1).await.unwrap().is_empty()
            && records.iter().any(|r| r.status == 201)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let post = records
        .iter()
        .find(|r| r.method == "POST" && r.path == "/api/v1/job")
        .expect("POST audited");
    assert_eq!(post.user.as_deref(), Some("alice"));
    assert_eq!(post.project.as_deref(), Some("proj-a"));
    assert_eq!(post.status, 201);
    assert!(post.request_id.is_some());
    assert!(
        !records.iter().any(|r| r.status == 401),
        "failed attempts are counted, not audited one by one"
    );
    let failures = t.store.recent_auth_failures(10).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, "unknown");
    assert_eq!(failures[0].peer, "127.0.0.1");
    assert_eq!(failures[0].count, 1);
    let tokens = t.store.list_tokens(Some("alice")).await.unwrap();
    assert!(
        tokens.iter().any(|t| t.last_used_at.is_some()),
        "last_used_at recorded"
    );
}

#[tokio::test]
async fn tokens_over_their_rate_get_429_with_retry_after() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 2;
    })
    .await;
    let tok = t.alice().await;
    for _ in 0..4 {
        assert_eq!(
            t.get("/api/v1/tokens/self", &tok).await.0,
            StatusCode::OK,
            "the burst is allowed"
        );
    }
    let r = t.raw(Method::GET, "/api/v1/tokens/self", Some(&tok)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    let b: Value = r.json().await.unwrap();
    assert_eq!(code(&b), "rate_limited");
    // Another token is not affected; after the wait the first one works again.
    let other = t.alice().await;
    assert_eq!(t.get("/api/v1/tokens/self", &other).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(t.get("/api/v1/tokens/self", &tok).await.0, StatusCode::OK);
}

#[tokio::test]
async fn retention_removes_finished_jobs_with_their_data_and_old_audit_records() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let done = id_of(&t.submit(&tok, json!({"label": "done"})).await);
    let live = id_of(&t.submit(&tok, json!({"label": "live"})).await);
    let queued = id_of(&t.submit(&tok, json!({"label": "queued"})).await);
    t.operation(&tok, &queued, "hold").await;
    t.claim(&agent, &done).await;
    t.operation(&tok, &queued, "release").await;
    for id in [&done, &live] {
        t.report(&agent, id, json!({"status": "running"})).await;
    }
    let r = t
        .http
        .post(format!(
            "{}/api/v1/job/{done}/output/stdout?offset=0",
            t.base
        ))
        .bearer_auth(&agent)
        .body("out\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    t.report(&agent, &done, json!({"status": "completed", "exitCode": 0}))
        .await;
    // Nothing ended before an hour ago.
    assert_eq!(t.store.prune_jobs(now_ms() - 3_600_000).await.unwrap(), 0);
    // Everything that has ended by now goes; what runs or waits stays.
    assert_eq!(t.store.prune_jobs(now_ms() + 1).await.unwrap(), 1);
    assert_eq!(
        t.get(&format!("/api/v1/job/{done}"), &tok).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("/api/v1/job/{done}/events"), &tok).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("/api/v1/job/{live}"), &tok).await.1["status"],
        "running"
    );
    assert_eq!(
        t.get(&format!("/api/v1/job/{queued}"), &tok).await.1["status"],
        "queued"
    );
    let (_, ev) = t.get("/api/v1/events", &tok).await;
    assert!(!ev.to_string().contains(&done), "its events are gone too");
    // Audit records: the writer is asynchronous; wait until some exist, then prune them all.
    for _ in 0..50 {
        if !t.store.recent_audit(1).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(t.store.prune_audit(now_ms() - 3_600_000).await.unwrap() == 0);
    assert!(t.store.prune_audit(now_ms() + 1).await.unwrap() > 0);
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let t = TestApp::spawn().await;
    let before = t.metrics().await.len();
    for i in 0..2000u32 {
        let method = reqwest::Method::from_bytes(format!("ZZMETHOD{i}").as_bytes()).unwrap();
        let path = match i % 4 {
            0 => format!("/zzpath{i}"),
            1 => format!("/api/v1/zzpath{i}/x"),
            2 => format!("/api/v1/job/zzpath{i}"),
            _ => "/healthz".to_string(),
        };
        let r = t
            .http
            .request(method, format!("{}{path}", t.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
        // And ordinary methods on unknown paths.
        let r = t.raw(Method::GET, &format!("/zzother{i}"), None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let text = t.metrics().await;
    assert!(
        !text.contains("ZZMETHOD"),
        "a made-up method became a label"
    );
    assert!(
        !text.contains("zzpath") && !text.contains("zzother"),
        "a made-up path became a label"
    );
    assert!(
        text.contains(r#"method="other""#) && text.contains(r#"route="unmatched""#),
        "{text}"
    );
    assert!(
        text.len() < before + 16 * 1024,
        "metrics grew from {before} to {} bytes",
        text.len()
    );
}

#[tokio::test]
async fn a_validation_error_lists_at_most_100_problems_and_counts_the_rest() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    // About 150 KB of unknown parameters with long names.
    let mut params = serde_json::Map::new();
    for i in 0..1500 {
        params.insert(format!("p{i:04}{}", "n".repeat(90)), json!(1));
    }
    let r = t
        .http
        .post(format!("{}/api/v1/job", t.base))
        .bearer_auth(&tok)
        .json(&json!({"site": SITE, "jobType": JOB_TYPE, "parameters": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = r.text().await.unwrap();
    assert!(
        text.len() < 64 * 1024,
        "the error body is {} bytes",
        text.len()
    );
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["error"]["fields"].as_array().unwrap().len(), 100, "{b}");
    // 1500 unknown parameters and the missing required label.
    assert_eq!(
        b["error"]["moreFields"], 1401,
        "{}",
        b["error"]["moreFields"]
    );
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("and 1401 more problems"));
    // A few problems: no count.
    let (s, b) = t
        .post_job(
            &tok,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"steps": 0}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["error"].get("moreFields").is_none(), "{b}");
}

#[tokio::test]
async fn agent_version_and_host_are_bounded_and_free_of_control_characters() {
    let t = TestApp::spawn().await;
    let agent = t.agent_token().await;
    for (v, ok) in [
        ("1.2.3".to_string(), true),
        ("1.2\u{0}3".to_string(), false),
        ("\u{1b}]0;pwned\u{7}".to_string(), false),
        ("x".repeat(201), false),
    ] {
        let (s, b) = t.agent_poll(&agent, json!({"agentVersion": v})).await;
        if ok {
            assert_eq!(s, StatusCode::OK, "{b}");
        } else {
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v:?}: {b}");
            assert_eq!(fields(&b), ["agentVersion"]);
        }
        for field in ["agentVersion", "agentHost"] {
            let (s, b) = t
                .publish(
                    &agent,
                    SITE,
                    json!({"jobTypes": [job_type_spec()], field: v}),
                )
                .await;
            if ok {
                assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
            } else {
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field} {v:?}: {b}");
                assert_eq!(fields(&b), [field]);
            }
        }
    }
    let (s, b) = t.get("/api/v1/sites", &agent).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!b.to_string().contains("pwned"), "{b}");
}

#[tokio::test]
async fn job_parameters_are_bounded_at_submission_and_change() {
    let t = TestApp::spawn().await;
    let agent = t.agent_token().await;
    let free = json!({
        "name": "free",
        "parameters": [{"name": "text", "type": "string"}],
        "subJobs": [{"name": "run", "kind": "batch"}]
    });
    let (s, b) = t
        .publish(&agent, SITE, json!({"jobTypes": [job_type_spec(), free]}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let tok = t.alice().await;
    let submit = |text: String| {
        let t = &t;
        let tok = &tok;
        async move {
            t.post_job(
                tok,
                json!({"site": SITE, "jobType": "free", "parameters": {"text": text}}),
            )
            .await
        }
    };
    let (s, b) = submit("x".repeat(70 * 1024)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["parameters"]);
    let (s, job) = submit("x".repeat(60 * 1024)).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = id_of(&job);
    for (change, field) in [
        (
            json!({"parameters": {"text": "y".repeat(70 * 1024)}}),
            "parameters",
        ),
        (
            json!({"metadata": {"m": "y".repeat(17 * 1024)}}),
            "metadata",
        ),
    ] {
        let (s, b) = t
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/job/{id}"),
                &tok,
                Some(change),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(fields(&b), [field]);
        let (s, b) = t.get(&format!("/api/v1/job/{id}"), &tok).await;
        assert_eq!(s, StatusCode::OK);
        assert!(b["parameters"]["text"].as_str().unwrap().starts_with('x'));
        assert!(b["metadata"].is_null(), "{b}");
    }
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_counted_in_a_few_rows_and_paths_are_cut() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.rate_limits.auth_failures_per_minute = 0;
    })
    .await;
    let long = "x".repeat(2000);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..10 {
        let (http, base, long) = (t.http.clone(), t.base.clone(), long.clone());
        tasks.spawn(async move {
            for i in 0..500 {
                let mut rb = http.get(format!("{base}/api/v1/job/{w}-{i}-{long}"));
                rb = match i % 3 {
                    0 => rb.bearer_auth(format!("hpcs_bad{w}{i}")),
                    1 => rb.header("authorization", "Basic abc"),
                    _ => rb,
                };
                let r = rb.send().await.unwrap();
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut total = 0;
    for _ in 0..100 {
        let f = t.store.recent_auth_failures(100).await.unwrap();
        total = f.iter().map(|c| c.count).sum::<i64>();
        if total == 5000 {
            // Three reasons, one peer, at most two minutes.
            assert!(f.len() <= 6, "{f:?}");
            let reasons: std::collections::BTreeSet<&str> =
                f.iter().map(|c| c.reason.as_str()).collect();
            assert_eq!(reasons, ["malformed", "missing", "unknown"].into());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(total, 5000);
    let audited = t.store.recent_audit(10_000).await.unwrap();
    assert!(
        audited.len() < 5 && !audited.iter().any(|r| r.status == 401),
        "no audit row per failed attempt: {} rows",
        audited.len()
    );
    // Audited paths are cut to 256 bytes.
    let tok = t.alice().await;
    let r = t
        .raw(Method::GET, &format!("/api/v1/job/é{long}"), Some(&tok))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut cut = None;
    for _ in 0..100 {
        let records = t.store.recent_audit(10).await.unwrap();
        cut = records.into_iter().find(|r| r.status == 400);
        if cut.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cut = cut.expect("the request is audited");
    assert!(cut.path.len() <= 256, "{}", cut.path.len());
    assert!(cut.path.starts_with("/api/v1/job/"), "{}", cut.path);
}

#[tokio::test]
async fn failed_authentication_is_limited_per_peer_and_a_good_token_still_works() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.rate_limits.auth_failures_per_minute = 10;
    })
    .await;
    let bad = |n: u32| {
        t.http
            .get(format!("{}/api/v1/tokens/self", t.base))
            .bearer_auth(format!("hpcs_wrong{n}"))
            .send()
    };
    for n in 0..10 {
        assert_eq!(bad(n).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let r = bad(10).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let b: Value = r.json().await.unwrap();
    assert_eq!(code(&b), "rate_limited");
    // A valid token from the same address is not refused.
    let tok = t.alice().await;
    assert_eq!(t.get("/api/v1/tokens/self", &tok).await.0, StatusCode::OK);
    // No token at all counts as a failure too.
    let r = t.raw(Method::GET, "/api/v1/tokens/self", None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Reads until the server closes the connection; the time it took, or None within `limit`.
async fn closed_within(sock: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.connections.header_read_timeout = Duration::from_secs(3);
    })
    .await;
    let addr = t.base.trim_start_matches("http://").to_string();
    // One byte a second: closed by the header-read timeout, not kept open.
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if slow.write_all(&[*b]).await.is_err()
            || closed_within(&mut slow, Duration::from_secs(1)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a connection sending one byte a second stayed open");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    // A keep-alive connection that goes quiet after a request is closed too.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn at_the_connection_cap_the_idlest_connections_make_room() {
    let t = TestApp::spawn_configured(|c| {
        c.rate_limits.rate_limit_per_second = 0;
        c.connections.max_connections = 20;
    })
    .await;
    let addr = t.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        reqwest::Client::new()
            .get(format!("{}/healthz", t.base))
            .send(),
    )
    .await
    .expect("/healthz answers at the cap")
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The oldest idle connections were closed to make room; the newest are open.
    let mut closed = 0;
    for s in idle.iter_mut().take(30) {
        if closed_within(s, std::time::Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 25,
        "only {closed} of the 30 oldest idle connections were closed"
    );
}
