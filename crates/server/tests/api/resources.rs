//! Resources: a job type's rules as an agent publishes them, a client's `resources` checked
//! at `POST /job` (422 naming `resources.<name>`), the job showing what it asked for, and
//! what the batch system granted as the agent reports it.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const RES_TYPE: &str = "mpi";

fn mpi_spec() -> Value {
    json!({
        "name": RES_TYPE,
        "subJobs": [{"name": "run", "kind": "batch"},
                    {"name": "post", "kind": "batch", "resources": {"node_count": 1, "duration": "5m"}}],
        "resources": {
            "node_count": {"minimum": 1, "maximum": 4, "default": 1},
            "process_count": {"maximum": 64},
            "processes_per_node": {},
            "memory": {"maximum": "8G"},
            "duration": {"maximum": "2h", "default": "10m"},
            "queue_name": {"values": ["debug", "long"], "default": "debug"},
            "account": {"fixed": "proj42"}
        }
    })
}

/// A server whose proj-a agent publishes the test type and `mpi`.
async fn app() -> TestApp {
    let t = TestApp::spawn().await;
    let agent = t.agent_token().await;
    let (s, b) = t
        .publish(
            &agent,
            SITE,
            json!({"jobTypes": [job_type_spec(), mpi_spec()]}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    t
}

async fn post(t: &TestApp, token: &str, job_type: &str, resources: Value) -> (StatusCode, Value) {
    let body = json!({"site": SITE, "jobType": job_type, "parameters": {}, "resources": resources});
    let body = if job_type == JOB_TYPE {
        json!({"site": SITE, "jobType": job_type, "parameters": {"label": "x"}, "resources": resources})
    } else {
        body
    };
    t.post_job(token, body).await
}

#[tokio::test]
async fn a_job_shows_the_resources_it_asked_for_with_defaults_and_fixed_values() {
    let t = app().await;
    let alice = t.alice().await;
    let (s, job) = post(
        &t,
        &alice,
        RES_TYPE,
        json!({"node_count": 2, "duration": "1h", "memory": "4G"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    let want = json!({"node_count": 2, "memory": 4u64 << 30, "duration": 3600,
                      "queue_name": "debug", "account": "proj42"});
    assert_eq!(job["resources"], want);
    assert!(job.get("grantedResources").is_none());
    let (s, got) = t.get(&format!("/api/v1/job/{}", id_of(&job)), &alice).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["resources"], want);
    // Nothing given: the defaults and the fixed value.
    let (s, job) = post(&t, &alice, RES_TYPE, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    assert_eq!(
        job["resources"],
        json!({"node_count": 1, "duration": 600, "queue_name": "debug", "account": "proj42"})
    );
    // The fixed value itself may be sent.
    let (s, _) = post(&t, &alice, RES_TYPE, json!({"account": "proj42"})).await;
    assert_eq!(s, StatusCode::CREATED);
    // A type without rules takes none and shows none.
    let (s, job) = post(&t, &alice, JOB_TYPE, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    assert!(job.get("resources").is_none(), "{job}");
    // The published type shows its rules, canonical, and the sub-job's own resources.
    let (s, types) = t
        .get(&format!("/api/v1/sites/{SITE}/jobTypes"), &alice)
        .await;
    assert_eq!(s, StatusCode::OK, "{types}");
    let mpi = types["jobTypes"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["name"] == RES_TYPE))
        .cloned()
        .expect("mpi listed");
    assert_eq!(
        mpi["resources"]["duration"],
        json!({"maximum": 7200, "default": 600})
    );
    assert_eq!(
        mpi["subJobs"][1]["resources"],
        json!({"node_count": 1, "duration": 300})
    );
}

#[tokio::test]
async fn bad_resources_are_422_naming_the_field() {
    let t = app().await;
    let alice = t.alice().await;
    let cases = [
        (
            RES_TYPE,
            json!({"node_count": 5}),
            "resources.node_count",
            "the maximum is 4",
        ),
        (
            RES_TYPE,
            json!({"duration": "3h"}),
            "resources.duration",
            "the maximum is 2h",
        ),
        (
            RES_TYPE,
            json!({"memory": "lots"}),
            "resources.memory",
            "not a memory size",
        ),
        (
            RES_TYPE,
            json!({"queue_name": "gpu"}),
            "resources.queue_name",
            "one of debug, long",
        ),
        (
            RES_TYPE,
            json!({"account": "mine"}),
            "resources.account",
            "fixed at proj42",
        ),
        (
            RES_TYPE,
            json!({"gpus": 1}),
            "resources.gpus",
            "unknown resource",
        ),
        (
            RES_TYPE,
            json!({"reservation_id": "r1"}),
            "resources.reservation_id",
            "does not let clients set",
        ),
        (
            RES_TYPE,
            json!({"node_count": 2, "processes_per_node": 4, "process_count": 6}),
            "resources.process_count",
            "node_count (2)",
        ),
        (
            JOB_TYPE,
            json!({"node_count": 1}),
            "resources.node_count",
            "does not let clients set",
        ),
    ];
    for (jt, resources, field, problem) in cases {
        let (s, b) = post(&t, &alice, jt, resources.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{resources}: {b}");
        assert_eq!(fields(&b), [field], "{resources}: {b}");
        let text = b["error"]["fields"][0]["problem"].as_str().unwrap_or("");
        assert!(text.contains(problem), "{resources}: {text}");
    }
    // Not an object at all: the body is refused as a whole.
    let (s, _) = t
        .post_job(
            &alice,
            json!({"site": SITE, "jobType": RES_TYPE, "resources": [1]}),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    // Problems with parameters and resources come in one answer.
    let (s, b) = t
        .post_job(
            &alice,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"steps": 0, "label": "x"},
                   "resources": {"duration": 60}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["parameters.steps", "resources.duration"]);
}

#[tokio::test]
async fn the_idempotency_key_covers_the_resources() {
    let t = app().await;
    let alice = t.alice().await;
    let body = |n: u64| json!({"site": SITE, "jobType": RES_TYPE, "resources": {"node_count": n}});
    let send = |b: Value| {
        t.http
            .post(format!("{}/api/v1/job", t.base))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "k1")
            .json(&b)
            .send()
    };
    assert_eq!(send(body(2)).await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(send(body(2)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        send(body(3)).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn bad_rules_are_refused_at_publication() {
    let t = TestApp::spawn().await;
    let agent = t.agent_token().await;
    let mut spec = mpi_spec();
    spec["resources"]["node_count"] = json!({"minimum": 8, "maximum": 2});
    spec["resources"]["account"] = json!({"fixed": "a b"});
    let (s, b) = t.publish(&agent, SITE, json!({"jobTypes": [spec]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(
        fields(&b),
        [
            "jobTypes[0].resources.node_count.minimum",
            "jobTypes[0].resources.account.fixed"
        ]
    );
    let mut spec = mpi_spec();
    spec["resources"]["walltime"] = json!({});
    let (s, _) = t.publish(&agent, SITE, json!({"jobTypes": [spec]})).await;
    assert!(s.is_client_error(), "{s}");
}

#[tokio::test]
async fn the_agent_reports_what_the_batch_system_granted() {
    let t = app().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let (s, job) = post(&t, &alice, RES_TYPE, json!({"node_count": 2})).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = id_of(&job);
    t.claim(&agent, &id).await;
    let granted = json!({"node_count": 2, "cpu_count": 8, "duration": 600, "queue_name": "debug"});
    let (s, b) = t
        .report(
            &agent,
            &id,
            json!({"status": "submitted", "batchJobId": "77", "grantedResources": granted}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, got) = t.get(&format!("/api/v1/job/{id}"), &alice).await;
    assert_eq!(got["grantedResources"], granted);
    assert_eq!(got["resources"]["node_count"], 2);
    // A later report without it keeps it; one with it replaces it.
    let (s, _) = t.report(&agent, &id, json!({"status": "running"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, got) = t.get(&format!("/api/v1/job/{id}"), &alice).await;
    assert_eq!(got["grantedResources"], granted);
    let (s, _) = t
        .report(&agent, &id, json!({"grantedResources": {"node_count": 1}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, got) = t.get(&format!("/api/v1/job/{id}"), &alice).await;
    assert_eq!(got["grantedResources"], json!({"node_count": 1}));
    // Names with control characters are refused; a client cannot report at all.
    let (s, b) = t
        .report(
            &agent,
            &id,
            json!({"grantedResources": {"queue_name": "a\u{1b}[2J"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["grantedResources"]);
    let (s, _) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{id}"),
            &alice,
            Some(json!({"grantedResources": {"node_count": 9}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_queued_job_takes_new_resources_checked_like_a_submission() {
    let t = app().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let (_, job) = post(&t, &alice, RES_TYPE, json!({"node_count": 2})).await;
    let id = id_of(&job);
    let path = format!("/api/v1/job/{id}");
    let put = |body: Value| t.send(Method::PUT, &path, &alice, Some(body));
    let (s, b) = put(json!({"resources": {"node_count": 3, "duration": "30m"}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["resources"],
        json!({"node_count": 3, "duration": 1800, "queue_name": "debug", "account": "proj42"})
    );
    let (s, b) = put(json!({"resources": {"node_count": 9}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["resources.node_count"]);
    // A change of other fields keeps the resources.
    let (s, b) = put(json!({"metadata": {"k": 1}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["resources"]["node_count"], 3);
    // Once an agent holds it, no more changes.
    t.claim(&agent, &id).await;
    let (s, _) = put(json!({"resources": {"node_count": 1}})).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_job_page_shows_resources_for_people_and_what_was_granted() {
    let t = app().await;
    crate::ui::people(&t).await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let (_, job) = post(
        &t,
        &alice,
        RES_TYPE,
        json!({"duration": "1h", "memory": "4G"}),
    )
    .await;
    let id = id_of(&job);
    t.claim(&agent, &id).await;
    let (s, _) = t
        .report(
            &agent,
            &id,
            json!({"grantedResources": {"node_count": 1, "queue_name": "debug"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut b = crate::ui::Browser::logged_in(&t, "carol").await;
    let p = b.get(&format!("/ui/projects/proj-a/jobs/{id}")).await;
    assert_eq!(p.status, StatusCode::OK);
    p.assert_shows(&[
        "<dt>duration</dt><dd><code>1h</code>",
        "<dt>memory</dt><dd><code>4G</code>",
        "<dt>account</dt><dd><code>proj42</code>",
        "<dt>granted</dt><dd><code>node_count=1 queue_name=debug</code>",
    ]);
}
