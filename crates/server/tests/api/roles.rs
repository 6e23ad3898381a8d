//! The role matrix: every client route × each of the eight roles present/absent × own/other
//! project → the expected status; and every agent write × the holding agent token, tokens
//! with the same roles that are not agent tokens, and agent tokens of another site, of
//! another project and of the same site that do not hold the job.

use crate::common::*;
use hpcsera_api_types::{Role, RoleSet};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    method: Method,
    /// Path; `{id}` is replaced by a fresh job's id.
    path: &'static str,
    body: Option<Value>,
    /// Roles of which one is needed; empty: any valid token.
    allowed: &'static [Role],
    ok: StatusCode,
    /// Status for a token of another project (with every role).
    other_project: StatusCode,
}

fn cases() -> Vec<Case> {
    use Role::*;
    vec![
        Case {
            name: "submit",
            method: Method::POST,
            path: "/api/v1/job",
            body: Some(json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "m"}})),
            allowed: &[PostJob],
            ok: StatusCode::CREATED,
            other_project: StatusCode::CREATED,
        },
        Case {
            name: "list",
            method: Method::GET,
            path: "/api/v1/job/findJobsByStatus?status=queued",
            body: None,
            allowed: &[GetJobStatus],
            ok: StatusCode::OK,
            other_project: StatusCode::OK,
        },
        Case {
            name: "operation",
            method: Method::PUT,
            path: "/api/v1/job/updateByOperation/{id}",
            body: Some(json!({"operation": "hold"})),
            allowed: &[UpdateJob],
            ok: StatusCode::OK,
            other_project: StatusCode::NOT_FOUND,
        },
        Case {
            name: "delete",
            method: Method::DELETE,
            path: "/api/v1/job/{id}",
            body: None,
            allowed: &[DeleteJob],
            ok: StatusCode::NO_CONTENT,
            other_project: StatusCode::NOT_FOUND,
        },
        Case {
            name: "get",
            method: Method::GET,
            path: "/api/v1/job/{id}",
            body: None,
            allowed: &[GetJobStatus, GetJob],
            ok: StatusCode::OK,
            other_project: StatusCode::NOT_FOUND,
        },
        Case {
            name: "client change",
            method: Method::PUT,
            path: "/api/v1/job/{id}",
            body: Some(json!({"parameters": {"label": "changed"}})),
            allowed: &[UpdateJob],
            ok: StatusCode::OK,
            other_project: StatusCode::NOT_FOUND,
        },
        Case {
            name: "events",
            method: Method::GET,
            path: "/api/v1/job/{id}/events",
            body: None,
            allowed: &[GetJobStatus],
            ok: StatusCode::OK,
            other_project: StatusCode::NOT_FOUND,
        },
        Case {
            name: "sites",
            method: Method::GET,
            path: "/api/v1/sites",
            body: None,
            allowed: &[],
            ok: StatusCode::OK,
            other_project: StatusCode::OK,
        },
        Case {
            name: "job types",
            method: Method::GET,
            path: "/api/v1/sites/testsite/jobTypes",
            body: None,
            allowed: &[],
            ok: StatusCode::OK,
            other_project: StatusCode::OK,
        },
        Case {
            name: "token self",
            method: Method::GET,
            path: "/api/v1/tokens/self",
            body: None,
            allowed: &[],
            ok: StatusCode::OK,
            other_project: StatusCode::OK,
        },
    ]
}

#[tokio::test]
async fn role_matrix() {
    let t = TestApp::spawn().await;
    let owner = t.alice().await;
    let other = t.user("bob").project("proj-b").site(SITE).token().await;
    let mut failures = Vec::new();
    for case in cases() {
        for role in Role::ALL {
            let token = t
                .user("alice")
                .project("proj-a")
                .roles(&[role])
                .site(SITE)
                .token()
                .await;
            let job = t.submit(&owner, json!({"label": "x"})).await;
            let path = case.path.replace("{id}", &id_of(&job));
            let (status, body) = t
                .send(case.method.clone(), &path, &token, case.body.clone())
                .await;
            let expected = if case.allowed.is_empty() || case.allowed.contains(&role) {
                case.ok
            } else {
                StatusCode::FORBIDDEN
            };
            if status != expected {
                failures.push(format!(
                    "{} with only {role}: got {status}, expected {expected}: {body}",
                    case.name
                ));
            }
            if expected == StatusCode::FORBIDDEN && code(&body) != "forbidden" {
                failures.push(format!(
                    "{} with only {role}: error code {:?}",
                    case.name,
                    code(&body)
                ));
            }
        }
        // Another project's token with every role never sees proj-a's job.
        let job = t.submit(&owner, json!({"label": "y"})).await;
        let path = case.path.replace("{id}", &id_of(&job));
        let (status, body) = t
            .send(case.method.clone(), &path, &other, case.body.clone())
            .await;
        if status != case.other_project {
            failures.push(format!(
                "{} from another project: got {status}, expected {}: {body}",
                case.name, case.other_project
            ));
        }
        if case.name == "list" && body.to_string().contains(&id_of(&job)) {
            failures.push("another project's listing shows proj-a's job".into());
        }
        // The job of the other-project attempt is untouched.
        let (s, after) = t.get(&format!("/api/v1/job/{}", id_of(&job)), &owner).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{} from another project changed the job: {after}",
            case.name
        );
        assert_eq!(after["status"], "queued");
        assert_eq!(after["held"], false);
        assert_eq!(after["parameters"]["label"], "y");
    }
    assert!(
        failures.is_empty(),
        "role matrix failures:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn no_token_or_bad_token_is_401_everywhere() {
    let t = TestApp::spawn().await;
    let owner = t.alice().await;
    let job = t.submit(&owner, json!({"label": "x"})).await;
    for case in cases() {
        let path = case.path.replace("{id}", &id_of(&job));
        for token in ["", "hpcs_notarealtoken", "Basic abc"] {
            let mut rb = t
                .http
                .request(case.method.clone(), format!("{}{path}", t.base));
            if !token.is_empty() {
                rb = rb.header("authorization", format!("Bearer {token}"));
            }
            if let Some(b) = &case.body {
                rb = rb.json(b);
            }
            let resp = rb.send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{} with {token:?}",
                case.name
            );
            assert!(resp.headers().contains_key("www-authenticate"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(code(&body), "unauthorized");
        }
    }
}

#[tokio::test]
async fn site_restricted_tokens_stay_on_their_site() {
    let t = TestApp::spawn().await;
    let owner = t.alice().await;
    let job = t.submit(&owner, json!({"label": "x"})).await;
    let elsewhere = t
        .user("alice")
        .project("proj-a")
        .site("othersite")
        .token()
        .await;
    let (s, b) = t
        .post_job(
            &elsewhere,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "a"}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = t
        .get(&format!("/api/v1/job/{}", id_of(&job)), &elsewhere)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t
        .get(
            &format!("/api/v1/job/findJobsByStatus?site={SITE}"),
            &elsewhere,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = t.get("/api/v1/job/findJobsByStatus", &elsewhere).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["jobs"].as_array().unwrap().len(), 0);
    // Publishing for a site needs a token restricted to exactly that site.
    let unrestricted = t
        .user("agent")
        .project("proj-a")
        .roles(&[Role::GetJob])
        .token()
        .await;
    let (s, _) = t
        .send(
            Method::PUT,
            "/api/v1/sites/testsite/jobTypes",
            &unrestricted,
            Some(json!({"jobTypes": []})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An agent of another site cannot report on this site's job.
    let other_agent = t
        .user("agent")
        .project("proj-a")
        .roles(&[Role::GetJob, Role::UpdateJobStatus])
        .site("othersite")
        .token()
        .await;
    let (s, _) = t
        .report(&other_agent, &id_of(&job), json!({"status": "dispatched"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// An agent write: what it sends and what the holder gets.
struct AgentCase {
    name: &'static str,
    method: Method,
    /// `{id}` is replaced by the job's id.
    path: &'static str,
    body: AgentBody,
    ok: StatusCode,
}

enum AgentBody {
    Json(Value),
    Bytes(&'static [u8]),
}

fn agent_cases() -> Vec<AgentCase> {
    vec![
        AgentCase {
            name: "status report",
            method: Method::PUT,
            path: "/api/v1/job/{id}",
            body: AgentBody::Json(json!({"status": "running", "message": "m"})),
            ok: StatusCode::OK,
        },
        AgentCase {
            name: "output",
            method: Method::POST,
            path: "/api/v1/job/{id}/output/stdout?offset=0",
            body: AgentBody::Bytes(b"hello\n"),
            ok: StatusCode::OK,
        },
        AgentCase {
            name: "result file",
            method: Method::PUT,
            path: "/api/v1/job/{id}/results/r.txt",
            body: AgentBody::Bytes(b"result"),
            ok: StatusCode::CREATED,
        },
        AgentCase {
            name: "operation done",
            method: Method::POST,
            path: "/api/v1/agent/jobs/{id}/operationDone",
            body: AgentBody::Json(json!({"operation": "hold", "ok": true})),
            ok: StatusCode::OK,
        },
    ]
}

async fn send_agent(t: &TestApp, case: &AgentCase, token: &str, id: &str) -> (StatusCode, Value) {
    let path = case.path.replace("{id}", id);
    match &case.body {
        AgentBody::Json(v) => {
            t.send(case.method.clone(), &path, token, Some(v.clone()))
                .await
        }
        AgentBody::Bytes(b) => {
            let resp = t
                .http
                .request(case.method.clone(), format!("{}{path}", t.base))
                .bearer_auth(token)
                .header("content-type", "application/octet-stream")
                .body(b.to_vec())
                .send()
                .await
                .unwrap();
            let s = resp.status();
            (s, resp.json().await.unwrap_or(Value::Null))
        }
    }
}

/// What an agent write could have changed.
async fn footprint(t: &TestApp, owner: &str, id: &str) -> Value {
    let (_, job) = t.get(&format!("/api/v1/job/{id}"), owner).await;
    let (_, results) = t.get(&format!("/api/v1/job/{id}/results"), owner).await;
    let (_, events) = t.get(&format!("/api/v1/job/{id}/events"), owner).await;
    let out = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{id}/output/stdout"),
            Some(owner),
        )
        .await
        .bytes()
        .await
        .unwrap();
    json!({
        "status": job["status"], "message": job["message"], "held": job["held"],
        "results": results, "events": events["events"].as_array().map(|e| e.len()),
        "stdout": String::from_utf8_lossy(&out),
    })
}

#[tokio::test]
async fn agent_writes_need_the_agent_token_that_holds_the_job() {
    use Role::*;
    let t = TestApp::spawn().await;
    let owner = t.alice().await;
    let agent_roles = [GetJob, UpdateJobStatus, GetCode];
    let holder = t.agent_token().await;
    let refused: Vec<(&str, String, &[StatusCode])> = vec![
        (
            "the same roles without a site (not an agent token)",
            t.user("agent")
                .project("proj-a")
                .role_set(roles(&agent_roles))
                .token()
                .await,
            &[StatusCode::FORBIDDEN],
        ),
        (
            "every role but GET_Job, restricted to the site (not an agent token)",
            t.user("agent")
                .project("proj-a")
                .role_set(Role::ALL.into_iter().filter(|r| *r != GetJob).collect())
                .site(SITE)
                .token()
                .await,
            &[StatusCode::FORBIDDEN],
        ),
        (
            "every role without a site",
            t.user("alice").project("proj-a").token().await,
            &[StatusCode::FORBIDDEN],
        ),
        (
            "an agent token of another site",
            t.user("agent")
                .project("proj-a")
                .role_set(roles(&agent_roles))
                .site("othersite")
                .token()
                .await,
            &[StatusCode::NOT_FOUND],
        ),
        (
            "an agent token of another project",
            t.agent_token_b().await,
            &[StatusCode::NOT_FOUND],
        ),
        (
            "another agent token of the same project and site",
            t.agent_token().await,
            &[StatusCode::CONFLICT],
        ),
    ];
    let mut failures = Vec::new();
    for case in agent_cases() {
        let id = id_of(&t.submit(&owner, json!({"label": "x"})).await);
        t.claim(&holder, &id).await;
        for (who, token, expected) in &refused {
            let before = footprint(&t, &owner, &id).await;
            let (s, b) = send_agent(&t, &case, token, &id).await;
            if !expected.contains(&s) {
                failures.push(format!(
                    "{} by {who}: got {s}, expected {expected:?}: {b}",
                    case.name
                ));
            }
            let after = footprint(&t, &owner, &id).await;
            if before != after {
                failures.push(format!(
                    "{} by {who} changed the job: {before} → {after}",
                    case.name
                ));
            }
        }
        let (s, b) = send_agent(&t, &case, &holder, &id).await;
        if s != case.ok {
            failures.push(format!(
                "{} by the holder: got {s}, expected {}: {b}",
                case.name, case.ok
            ));
        }
    }
    // Claims: only a poll by an agent token of the job's project and site takes a job.
    let id = id_of(&t.submit(&owner, json!({"label": "claim me"})).await);
    for (who, token, _) in &refused {
        if who.starts_with("another agent") {
            continue; // an agent of the job's project and site may claim it
        }
        let (s, b) = t.agent_poll(token, json!({"maxJobs": 10})).await;
        let took = b["jobs"].as_array().is_some_and(|j| !j.is_empty());
        let expect_ok = who.starts_with("an agent token");
        if took || (expect_ok && s != StatusCode::OK) || (!expect_ok && s != StatusCode::FORBIDDEN)
        {
            failures.push(format!("poll by {who}: {s} {b}"));
        }
        let (s, b) = t.report(token, &id, json!({"status": "dispatched"})).await;
        if s.is_success() {
            failures.push(format!("a claim by PUT from {who} was accepted: {b}"));
        }
    }
    let (_, job) = t.get(&format!("/api/v1/job/{id}"), &owner).await;
    assert_eq!(job["status"], "queued", "{job}");
    // Publishing job types: only an agent token of exactly that site.
    for (who, token, _) in &refused {
        let (s, b) = t.publish(token, SITE, json!({"jobTypes": []})).await;
        let ok = who.contains("another project") || who.starts_with("another agent");
        if ok != (s == StatusCode::NO_CONTENT) || (!ok && s != StatusCode::FORBIDDEN) {
            failures.push(format!("publish by {who}: {s} {b}"));
        }
    }
    assert!(
        failures.is_empty(),
        "agent matrix failures:\n{}",
        failures.join("\n")
    );
}

fn roles(r: &[Role]) -> RoleSet {
    r.iter().copied().collect()
}
