//! Sweeps: `POST /sweeps` (grid, parameter sets, validation as a whole, idempotency, the
//! maximum), counts, member pages, events, operations on all members, delete; roles and
//! other projects' sweeps.

use crate::common::*;
use hpcsera_api_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn grid_body() -> Value {
    json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "study"},
        "grid": {"steps": [100, 200, 400], "mode": ["fast", "exact"]}})
}

async fn post_sweep(t: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    t.send(Method::POST, "/api/v1/sweeps", token, Some(body))
        .await
}

async fn sweep_of(t: &TestApp, token: &str, body: Value) -> String {
    let (s, b) = post_sweep(t, token, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("sweep id").to_string()
}

async fn sweep_op(t: &TestApp, token: &str, id: &str, op: &str) -> (StatusCode, Value) {
    t.send(
        Method::PUT,
        &format!("/api/v1/sweeps/{id}/operation"),
        token,
        Some(json!({"operation": op})),
    )
    .await
}

fn count(sweep: &Value, status: &str) -> u64 {
    sweep["counts"]["byStatus"][status].as_u64().unwrap_or(999)
}

#[tokio::test]
async fn a_grid_makes_members_in_order_with_counts_and_pages() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let (s, sweep) = post_sweep(&t, &alice, grid_body()).await;
    assert_eq!(s, StatusCode::CREATED, "{sweep}");
    let id = sweep["id"].as_str().unwrap();
    assert_eq!(sweep["members"], 6);
    assert_eq!(count(&sweep, "queued"), 6);
    assert_eq!(count(&sweep, "completed"), 0);
    assert_eq!(sweep["counts"]["ended"], 0);
    assert_eq!(sweep["owner"], "alice");
    let (s, page) = t
        .get(&format!("/api/v1/sweeps/{id}/jobs?limit=4"), &alice)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let jobs = page["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j["sweepIndex"], i as u64);
        assert_eq!(j["sweep"], id);
        assert_eq!(j["parameters"]["label"], "study");
    }
    // Names sorted (mode, steps); steps varies fastest.
    assert_eq!(jobs[0]["parameters"]["mode"], "fast");
    assert_eq!(jobs[1]["parameters"]["steps"], 200);
    assert_eq!(jobs[3]["parameters"]["mode"], "exact");
    let cursor = page["nextCursor"].as_str().expect("more");
    let (_, rest) = t
        .get(
            &format!("/api/v1/sweeps/{id}/jobs?limit=4&cursor={cursor}"),
            &alice,
        )
        .await;
    let rest = rest["jobs"].as_array().unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1]["sweepIndex"], 5);
    assert!(rest.iter().all(|j| j["parameters"]["steps"].is_number()));
    // A member is an ordinary job.
    let member = id_of(&jobs[2]);
    let (s, j) = t.get(&format!("/api/v1/job/{member}"), &alice).await;
    assert_eq!(
        (s, &j["sweep"], &j["sweepIndex"]),
        (StatusCode::OK, &json!(id), &json!(2))
    );
    let (_, listed) = t.get("/api/v1/sweeps", &alice).await;
    assert_eq!(listed["sweeps"][0]["id"], id);
    assert_eq!(listed["sweeps"][0]["counts"]["byStatus"]["queued"], 6);
    // Filter by status; bad queries are 400.
    let (_, none) = t
        .get(&format!("/api/v1/sweeps/{id}/jobs?status=running"), &alice)
        .await;
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0);
    // `status=` too: schemathesis found it accepted as "no filter".
    for q in [
        "status=nope",
        "status=",
        "status=queued,",
        "cursor=zzz",
        "limit=0",
        "other=1",
    ] {
        let (s, _) = t
            .get(&format!("/api/v1/sweeps/{id}/jobs?{q}"), &alice)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
    }
    let (s, _) = t.get("/api/v1/sweeps/not-a-uuid", &alice).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn parameter_sets_override_the_base_and_counts_follow_the_members() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let id = sweep_of(
        &t,
        &alice,
        json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "base", "steps": 5},
            "parameterSets": [{"steps": 7}, {"label": "own"}, {}]}),
    )
    .await;
    let (_, page) = t.get(&format!("/api/v1/sweeps/{id}/jobs"), &alice).await;
    let jobs = page["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["parameters"]["steps"], 7);
    assert_eq!(jobs[0]["parameters"]["label"], "base");
    assert_eq!(jobs[1]["parameters"]["label"], "own");
    assert_eq!(jobs[2]["parameters"]["steps"], 5);
    assert_eq!(
        jobs[2]["parameters"]["mode"], "fast",
        "defaults are filled in"
    );
    // The agent runs one to its end and fails another.
    let first = id_of(&jobs[0]);
    let claimed = t.claim(&agent, &first).await;
    assert_eq!(claimed.len(), 3);
    t.report(
        &agent,
        &id_of(&jobs[0]),
        json!({"status": "completed", "exitCode": 0}),
    )
    .await;
    t.report(
        &agent,
        &id_of(&jobs[1]),
        json!({"status": "failed", "exitCode": 3}),
    )
    .await;
    let (_, sweep) = t.get(&format!("/api/v1/sweeps/{id}"), &alice).await;
    assert_eq!(count(&sweep, "completed"), 1);
    assert_eq!(count(&sweep, "failed"), 1);
    assert_eq!(count(&sweep, "dispatched"), 1);
    assert_eq!(
        (&sweep["counts"]["ended"], &sweep["counts"]["unsuccessful"]),
        (&json!(2), &json!(1))
    );
}

#[tokio::test]
async fn a_sweep_is_validated_as_a_whole_and_lists_its_first_problems() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let sets: Vec<Value> = (0..50)
        .map(|i| json!({"steps": 0, "label": format!("m{i}")}))
        .collect();
    let (s, b) = post_sweep(
        &t,
        &alice,
        json!({"site": SITE, "jobType": JOB_TYPE, "parameterSets": sets}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let f = fields(&b);
    assert_eq!(f.len(), 20, "{b}");
    assert_eq!(f[0], "parameterSets[0].steps");
    assert_eq!(f[19], "parameterSets[19].steps");
    assert_eq!(b["error"]["moreFields"], 30);
    assert!(
        b["error"]["fields"][3]["problem"]
            .as_str()
            .unwrap()
            .contains("member 3"),
        "{b}"
    );
    // A bad grid value is named once, where it was written.
    let (s, b) = post_sweep(
        &t,
        &alice,
        json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x"},
            "grid": {"steps": [10, 5000], "mode": ["fast", "slow"]}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, vec!["grid.mode[1]", "grid.steps[1]"], "{b}");
    // A base problem and an unknown parameter.
    let (s, b) = post_sweep(
        &t,
        &alice,
        json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x", "tag": "BAD"},
            "parameterSets": [{"nope": 1}]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut f = fields(&b);
    f.sort();
    assert_eq!(f, vec!["parameterSets[0].nope", "parameters.tag"], "{b}");
    // Nothing was stored.
    let (_, listed) = t.get("/api/v1/sweeps", &alice).await;
    assert_eq!(listed["sweeps"].as_array().unwrap().len(), 0);
    let (_, jobs) = t.get("/api/v1/job/findJobsByStatus", &alice).await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_shape_site_type_and_size_are_checked() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let base = json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x"}});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (base.clone(), "parameterSets"),
        (with("grid", json!({"steps": []})), "grid"),
        (with("parameterSets", json!([])), "parameterSets"),
        (
            with(
                "grid",
                json!({"steps": (0..101).collect::<Vec<_>>(), "tol": (0..100).collect::<Vec<_>>()}),
            ),
            "grid",
        ),
        (
            json!({"site": "nosite", "jobType": JOB_TYPE, "parameterSets": [{}]}),
            "site",
        ),
        (
            json!({"site": SITE, "jobType": "notype", "parameterSets": [{}]}),
            "jobType",
        ),
        (
            json!({"site": SITE, "jobType": JOB_TYPE, "parameterSets": [{"label": "x"}], "resources": [1]}),
            "resources",
        ),
        (
            json!({"site": SITE, "jobType": JOB_TYPE, "parameterSets": [{"label": "x"}], "callbackUrl": "http://evil.example/"}),
            "callbackUrl",
        ),
    ];
    for (body, field) in cases {
        let (s, b) = post_sweep(&t, &alice, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert!(fields(&b).iter().any(|f| f == field), "{field}: {b}");
    }
    let mut both = with("grid", json!({"steps": [1]}));
    both["parameterSets"] = json!([{}]);
    let (s, _) = post_sweep(&t, &alice, both).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = post_sweep(&t, &alice, with("bogus", json!(1))).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused"
    );
}

#[tokio::test]
async fn ten_thousand_members_are_accepted_in_one_request() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let body = json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "big"},
        "grid": {"steps": (1..=100).collect::<Vec<_>>(), "tol": (0..100).map(|i| f64::from(i) / 100.0).collect::<Vec<_>>()}});
    let started = std::time::Instant::now();
    let (s, sweep) = post_sweep(&t, &alice, body).await;
    assert_eq!(s, StatusCode::CREATED, "{sweep}");
    eprintln!("10,000 members accepted in {:?}", started.elapsed());
    assert_eq!(sweep["members"], 10_000);
    assert_eq!(count(&sweep, "queued"), 10_000);
    let id = sweep["id"].as_str().unwrap();
    let (_, page) = t
        .get(
            &format!("/api/v1/sweeps/{id}/jobs?limit=1000&status=queued"),
            &alice,
        )
        .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1000);
    assert_eq!(page["jobs"][999]["sweepIndex"], 999);
    let (s, r) = sweep_op(&t, &alice, id, "cancel").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["done"], 10_000);
    assert_eq!(count(&r["sweep"], "cancelled"), 10_000);
}

#[tokio::test]
async fn an_idempotency_key_makes_retries_safe() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let send = |body: Value| {
        t.http
            .post(format!("{}/api/v1/sweeps", t.base))
            .bearer_auth(&alice)
            .header("idempotency-key", "sweep-1")
            .json(&body)
            .send()
    };
    let r1 = send(grid_body()).await.unwrap();
    assert_eq!(r1.status(), StatusCode::CREATED);
    let first: Value = r1.json().await.unwrap();
    let r2 = send(grid_body()).await.unwrap();
    assert_eq!(r2.status(), StatusCode::OK);
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    let second: Value = r2.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let mut other = grid_body();
    other["parameters"]["label"] = json!("other");
    let r3 = send(other).await.unwrap();
    assert_eq!(r3.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r3.json().await.unwrap();
    assert_eq!(code(&b), "idempotency_key_reused");
    let (_, jobs) = t.get("/api/v1/job/findJobsByStatus", &alice).await;
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        6,
        "one sweep's members only"
    );
}

#[tokio::test]
async fn operations_reach_every_member_by_the_rules_of_one_job() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let id = sweep_of(&t, &alice, grid_body()).await;
    // Hold all: none is claimed; release: all are.
    let (s, r) = sweep_op(&t, &alice, &id, "hold").await;
    assert_eq!(
        (s, &r["done"], &r["skipped"]),
        (StatusCode::OK, &json!(6), &json!(0)),
        "{r}"
    );
    let (_, again) = sweep_op(&t, &alice, &id, "hold").await;
    assert_eq!(again["skipped"], 6);
    let (_, polled) = t
        .agent_poll(&agent, json!({"maxJobs": 100, "waitSeconds": 0}))
        .await;
    assert_eq!(
        polled["jobs"].as_array().unwrap().len(),
        0,
        "held members are not claimed"
    );
    let (_, r) = sweep_op(&t, &alice, &id, "release").await;
    assert_eq!(r["done"], 6);
    let (_, polled) = t
        .agent_poll(&agent, json!({"maxJobs": 2, "waitSeconds": 0}))
        .await;
    let claimed: Vec<String> = polled["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(claimed.len(), 2);
    t.report(
        &agent,
        &claimed[0],
        json!({"status": "completed", "exitCode": 0}),
    )
    .await;
    // Cancel: 4 queued at once, 1 handed to its agent, 1 ended and skipped.
    let (s, r) = sweep_op(&t, &alice, &id, "cancel").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (&r["done"], &r["handedToAgent"], &r["skipped"]),
        (&json!(4), &json!(1), &json!(1)),
        "{r}"
    );
    assert_eq!(count(&r["sweep"], "cancelled"), 4);
    assert_eq!(count(&r["sweep"], "completed"), 1);
    let (_, j) = t.get(&format!("/api/v1/job/{}", claimed[1]), &alice).await;
    assert_eq!(j["pendingOperation"]["operation"], "cancel");
    // A pending cancel is not replaced by a hold.
    let (_, r) = sweep_op(&t, &alice, &id, "hold").await;
    assert_eq!((&r["done"], &r["skipped"]), (&json!(0), &json!(6)), "{r}");
    let (_, polled) = t
        .agent_poll(
            &agent,
            json!({"activeJobIds": [claimed[1]], "maxJobs": 0, "waitSeconds": 0}),
        )
        .await;
    assert_eq!(polled["operations"][0]["operation"], "cancel", "{polled}");
    let (s, _) = sweep_op(&t, &alice, &id, "explode").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Each member's events: created, then its cancel.
    let (_, ev) = t.get(&format!("/api/v1/sweeps/{id}/events"), &alice).await;
    let ev = ev["events"].as_array().unwrap();
    assert_eq!(ev.iter().filter(|e| e["kind"] == "created").count(), 6);
    assert_eq!(
        ev.iter().filter(|e| e["toStatus"] == "cancelled").count(),
        4
    );
}

#[tokio::test]
async fn sweep_events_long_poll() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let id = sweep_of(&t, &alice, grid_body()).await;
    let (_, ev) = t.get(&format!("/api/v1/sweeps/{id}/events"), &alice).await;
    let last = ev["events"].as_array().unwrap().last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    let waiter = {
        let (http, base, tok, id) = (t.http.clone(), t.base.clone(), alice.clone(), id.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r: Value = json_of(
                http.get(format!(
                    "{base}/api/v1/sweeps/{id}/events?after={last}&wait=20"
                ))
                .bearer_auth(tok),
            )
            .await;
            (started.elapsed(), r)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sweep_op(&t, &alice, &id, "cancel").await;
    let (took, r) = waiter.await.unwrap();
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(!r["events"].as_array().unwrap().is_empty(), "{r}");
    let (s, _) = t
        .get(&format!("/api/v1/sweeps/{id}/events?wait=61"), &alice)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The query is read as a job's events query is: any `after` (a negative one reads from
    // the start), an unknown parameter refused.
    let (s, all) = t
        .get(
            &format!("/api/v1/sweeps/{id}/events?after=-5&limit=1"),
            &alice,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(all["events"].as_array().unwrap().len(), 1, "{all}");
    let (s, b) = t
        .get(&format!("/api/v1/sweeps/{id}/events?since=1"), &alice)
        .await;
    assert_eq!(
        (s, fields(&b)),
        (StatusCode::BAD_REQUEST, vec!["since".to_string()])
    );
}

#[tokio::test]
async fn the_sweep_list_refuses_a_site_that_is_not_a_name() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    sweep_of(&t, &alice, grid_body()).await;
    let (s, b) = t.get("/api/v1/sweeps?site=0.5", &alice).await;
    assert_eq!(
        (s, fields(&b)),
        (StatusCode::BAD_REQUEST, vec!["site".to_string()])
    );
    let (s, b) = t.get(&format!("/api/v1/sweeps?site={SITE}"), &alice).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["sweeps"].as_array().unwrap().len(), 1, "{b}");
}

#[tokio::test]
async fn delete_removes_waiting_members_and_cancels_running_ones() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let id = sweep_of(&t, &alice, grid_body()).await;
    let (_, polled) = t
        .agent_poll(&agent, json!({"maxJobs": 1, "waitSeconds": 0}))
        .await;
    let running = id_of(&polled["jobs"][0]);
    let (_, page) = t.get(&format!("/api/v1/sweeps/{id}/jobs"), &alice).await;
    let waiting = id_of(&page["jobs"][5]);
    let (s, _) = t.delete(&format!("/api/v1/sweeps/{id}"), &alice).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = t.get(&format!("/api/v1/sweeps/{id}"), &alice).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for j in [&running, &waiting] {
        let (s, _) = t.get(&format!("/api/v1/job/{j}"), &alice).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (_, polled) = t
        .agent_poll(
            &agent,
            json!({"activeJobIds": [running], "maxJobs": 0, "waitSeconds": 0}),
        )
        .await;
    assert_eq!(polled["operations"][0]["operation"], "cancel", "{polled}");
    let (s, _) = t
        .report(&agent, &running, json!({"status": "cancelled"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, jobs) = t.get("/api/v1/job/findJobsByStatus", &alice).await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
    // Nothing running: 204, and a second delete is 404.
    let id = sweep_of(&t, &alice, grid_body()).await;
    let (s, _) = t.delete(&format!("/api/v1/sweeps/{id}"), &alice).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t.delete(&format!("/api/v1/sweeps/{id}"), &alice).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn roles_projects_and_sites_guard_every_sweep_route() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let id = sweep_of(&t, &alice, grid_body()).await;
    let all_but = |r: Role| {
        let roles: Vec<Role> = Role::ALL.into_iter().filter(|x| *x != r).collect();
        t.user("alice").roles(&roles).token()
    };
    let no_post = all_but(Role::PostJob).await;
    let (s, _) = post_sweep(&t, &no_post, grid_body()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let no_read = all_but(Role::GetJobStatus).await;
    for path in [
        format!("/api/v1/sweeps/{id}"),
        format!("/api/v1/sweeps/{id}/jobs"),
        format!("/api/v1/sweeps/{id}/events"),
        "/api/v1/sweeps".to_string(),
    ] {
        let (s, _) = t.get(&path, &no_read).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let no_update = all_but(Role::UpdateJob).await;
    let (s, _) = sweep_op(&t, &no_update, &id, "cancel").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let no_delete = all_but(Role::DeleteJob).await;
    let (s, _) = t.delete(&format!("/api/v1/sweeps/{id}"), &no_delete).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Another project, and a token of another site, see nothing.
    let bob = t.user("bob").project("proj-b").token().await;
    let elsewhere = t.user("alice").site("othersite").token().await;
    for tok in [&bob, &elsewhere] {
        for path in [
            format!("/api/v1/sweeps/{id}"),
            format!("/api/v1/sweeps/{id}/jobs"),
            format!("/api/v1/sweeps/{id}/events"),
        ] {
            let (s, _) = t.get(&path, tok).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        }
        let (s, _) = sweep_op(&t, tok, &id, "cancel").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = t.delete(&format!("/api/v1/sweeps/{id}"), tok).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (_, listed) = t.get("/api/v1/sweeps", &bob).await;
    assert_eq!(listed["sweeps"].as_array().unwrap().len(), 0);
    let (s, _) = post_sweep(&t, &elsewhere, grid_body()).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a site-restricted token submits only to its site"
    );
    let (s, _) = t.get("/api/v1/sweeps", "hpcs_not_a_token").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing changed.
    let (_, sweep) = t.get(&format!("/api/v1/sweeps/{id}"), &alice).await;
    assert_eq!(count(&sweep, "queued"), 6);
}

#[tokio::test]
async fn resources_are_checked_by_the_job_types_rules_and_given_to_every_member() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let spec = json!({"name": "mpi", "parameters": [{"name": "n", "type": "integer"}],
        "subJobs": [{"name": "run", "kind": "batch"}],
        "resources": {"node_count": {"minimum": 1, "maximum": 4, "default": 1},
            "duration": {"maximum": "2h", "default": "10m"}, "account": {"fixed": "proj42"}}});
    let (s, b) = t
        .publish(&agent, SITE, json!({"jobTypes": [job_type_spec(), spec]}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let body = |res: Value| json!({"site": SITE, "jobType": "mpi", "grid": {"n": [1, 2]}, "resources": res});
    let (s, sweep) = post_sweep(
        &t,
        &alice,
        body(json!({"node_count": 2, "duration": "30m"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{sweep}");
    assert_eq!(sweep["resources"]["node_count"], 2);
    assert_eq!(sweep["resources"]["account"], "proj42");
    let id = sweep["id"].as_str().unwrap();
    let (_, page) = t.get(&format!("/api/v1/sweeps/{id}/jobs"), &alice).await;
    for j in page["jobs"].as_array().unwrap() {
        assert_eq!(j["resources"]["node_count"], 2, "{j}");
        assert_eq!(j["resources"]["duration"], 1800, "{j}");
        assert_eq!(j["resources"]["account"], "proj42", "{j}");
    }
    let (s, b) = post_sweep(&t, &alice, body(json!({"node_count": 9}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), vec!["resources.node_count"], "{b}");
}
