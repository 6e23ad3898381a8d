//! The role matrix: every route × each of the eight roles present/absent × own/other
//! project → the expected status.

mod common;

use common::*;
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
            name: "status report",
            method: Method::PUT,
            path: "/api/v1/job/{id}",
            body: Some(json!({"status": "dispatched"})),
            allowed: &[UpdateJobStatus],
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
            name: "publish job types",
            method: Method::PUT,
            path: "/api/v1/sites/testsite/jobTypes",
            body: Some(json!({"jobTypes": [job_type_spec()]})),
            allowed: &[GetJob],
            ok: StatusCode::NO_CONTENT,
            other_project: StatusCode::NO_CONTENT,
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
    let other = t.token("bob", "proj-b", RoleSet::all(), Some(SITE)).await;
    let mut failures = Vec::new();
    for case in cases() {
        for role in Role::ALL {
            let token = t
                .token("alice", "proj-a", [role].into_iter().collect(), Some(SITE))
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
        .token("alice", "proj-a", RoleSet::all(), Some("othersite"))
        .await;
    let (s, b) = t
        .send(
            Method::POST,
            "/api/v1/job",
            &elsewhere,
            Some(json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "a"}})),
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
        .token(
            "agent",
            "proj-a",
            [Role::GetJob].into_iter().collect(),
            None,
        )
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
        .token(
            "agent",
            "proj-a",
            [Role::UpdateJobStatus].into_iter().collect(),
            Some("othersite"),
        )
        .await;
    let (s, _) = t
        .report(&other_agent, &id_of(&job), json!({"status": "dispatched"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
