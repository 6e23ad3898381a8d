//! The web UI's sites page and job form over plain HTTP (the browser tests drive Chromium):
//! job types with their parameters, typed inputs, a submission through the API's checks, 422
//! problems next to their inputs, one job per form, roles, CSRF and non-members.

use crate::common::*;
use crate::ui::{hidden, people, Browser};
use hpcsera_api_types::{Role, RoleSet};
use reqwest::StatusCode;
use serde_json::json;

const FORM: &str = "/ui/projects/proj-a/sites/testsite/sim";

async fn job_count(t: &TestApp) -> usize {
    let (s, body) = t
        .get("/api/v1/job/findJobsByStatus", &t.alice().await)
        .await;
    assert_eq!(s, StatusCode::OK);
    body["jobs"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_sites_page_shows_each_job_type_with_its_parameters_and_agent_health() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let p = b.get("/ui/sites").await;
    assert_eq!(p.location.as_deref(), Some("/ui/projects/proj-a/sites"));
    let p = b.get("/ui/projects/proj-a/sites").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    p.assert_shows(&[
        "id=\"site-testsite\"",
        "a simulation",
        "whole number, 1 to 1000",
        "number, 0 to 1",
        "one of fast, exact",
        "text, matching [a-z][a-z0-9-]*",
        "code bundle (its SHA-256)",
        "stage (login node) → run (batch)",
        &format!("href=\"{FORM}\""),
    ]);
    // The agent published, so it was heard from.
    let seen = p.body.split("class=\"last-seen\">").nth(1).unwrap();
    assert!(!seen.starts_with("never"), "{seen}");

    // A member without POST_Job sees the page without the form.
    let read_only: RoleSet = [Role::GetJobStatus].into_iter().collect();
    t.store
        .set_member_roles("carol", "proj-a", read_only)
        .await
        .unwrap();
    let p = b.get("/ui/projects/proj-a/sites").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(!p.body.contains(FORM) && p.body.contains("a simulation"));
    assert_eq!(b.get(FORM).await.status, StatusCode::FORBIDDEN);

    // Another project's member: nothing of proj-a, whether page or form.
    let mut d = Browser::logged_in(&t, "dave").await;
    for path in ["/ui/projects/proj-a/sites", FORM] {
        let p = d.get(path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!p.body.contains("proj-a"), "{path}");
    }
    let csrf = d.csrf().await;
    let p = d.post(FORM, &[("csrf", &csrf), ("p.label", "x")]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // An unknown job type or site of one's own project: 404 too.
    for path in [
        "/ui/projects/proj-b/sites/testsite/nope",
        "/ui/projects/proj-b/sites/nosite/sim",
        "/ui/projects/proj-b/sites/bad%20name/sim",
    ] {
        assert_eq!(d.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(job_count(&t).await, 0);
}

#[tokio::test]
async fn the_form_has_typed_inputs_and_submits_typed_parameters_once() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let form = b.get(FORM).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    form.assert_shows(&[
        "type=\"number\" id=\"p-steps\" name=\"p.steps\" value=\"10\" step=\"1\" min=\"1\" max=\"1000\"",
        "type=\"number\" id=\"p-tol\" name=\"p.tol\" value=\"\" step=\"any\" min=\"0\" max=\"1\"",
        "<select id=\"p-mode\" name=\"p.mode\">",
        "<option value=\"fast\" selected>fast</option>",
        "type=\"checkbox\" id=\"p-verbose\" name=\"p.verbose\" value=\"true\">",
        "id=\"p-tag\" name=\"p.tag\" value=\"\" pattern=\"[a-z][a-z0-9-]*\">",
        "id=\"p-label\" name=\"p.label\" value=\"\" maxlength=\"200\" required>",
        "id=\"p-code\" name=\"p.code\" value=\"\" class=\"digest\" list=\"bundles\" pattern=\"[0-9a-f]{64}\"",
    ]);
    let csrf = hidden(&form.body, "csrf");
    let key = hidden(&form.body, "idempotency");
    let fields = [
        ("csrf", csrf.as_str()),
        ("idempotency", key.as_str()),
        ("p.label", "from the form"),
        ("p.steps", "12"),
        ("p.tol", "0.5"),
        ("p.verbose", "true"),
        ("p.mode", "exact"),
        ("p.tag", ""),
        ("p.code", ""),
    ];
    let p = b.post(FORM, &fields).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let to = p.location.unwrap();
    let id = to.strip_prefix("/ui/projects/proj-a/jobs/").unwrap();
    let (s, job) = t.get(&format!("/api/v1/job/{id}"), &t.alice().await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        job["parameters"],
        json!({"label": "from the form", "steps": 12, "tol": 0.5, "verbose": true, "mode": "exact"})
    );
    assert_eq!(job["owner"], "carol");
    assert_eq!(b.get(&to).await.status, StatusCode::OK);
    // Posted again (a double click, the back button): the same job, not a second one.
    let again = b.post(FORM, &fields).await;
    assert_eq!(again.location.as_deref(), Some(to.as_str()));
    assert_eq!(job_count(&t).await, 1);
    // The same form with other values: said so, nothing made.
    let mut changed = fields;
    changed[2] = ("p.label", "other");
    let p = b.post(FORM, &changed).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("This form was sent before"), "{}", p.body);
    assert_eq!(job_count(&t).await, 1);
}

#[tokio::test]
async fn bad_values_come_back_with_each_problem_at_its_input_and_nothing_is_made() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let form = b.get(FORM).await;
    let csrf = hidden(&form.body, "csrf");
    let p = b
        .post(
            FORM,
            &[
                ("csrf", &csrf),
                ("idempotency", "k-bad"),
                ("p.label", ""),
                ("p.steps", "5000"),
                ("p.tol", "lots"),
                ("p.tag", "Bad Tag"),
                ("p.mode", "slow"),
                ("p.code", "abc"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    for (field, problem) in [
        ("label", "is required"),
        ("steps", "is 5000; the maximum is 1000"),
        ("tol", "must be a number, not a string"),
        ("tag", "does not match the pattern"),
        ("mode", "must be one of fast, exact"),
        ("code", "must be a code bundle id"),
    ] {
        let at = format!("id=\"e-{field}\">{problem}");
        assert!(p.body.contains(&at), "{at} in {}", p.body);
    }
    // What was typed is shown again, so it can be corrected.
    assert!(p.body.contains("name=\"p.steps\" value=\"5000\""));
    assert!(p.body.contains("name=\"p.tag\" value=\"Bad Tag\""));
    assert!(p
        .body
        .contains("aria-invalid=\"true\" aria-describedby=\"e-steps\""));
    // Without the CSRF token: refused before anything is looked at.
    let p = b
        .post(FORM, &[("idempotency", "k2"), ("p.label", "fine")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("Form refused"));
    // Without POST_Job in the membership: refused.
    let read_only: RoleSet = [Role::GetJobStatus].into_iter().collect();
    t.store
        .set_member_roles("carol", "proj-a", read_only)
        .await
        .unwrap();
    let p = b.post(FORM, &[("csrf", &csrf), ("p.label", "fine")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(job_count(&t).await, 0);
}

#[tokio::test]
async fn resources_have_inputs_from_the_job_types_rules_and_reach_the_job() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mpi = json!({
        "name": "mpi",
        "subJobs": [{"name": "run", "kind": "batch"}],
        "resources": {
            "node_count": {"minimum": 1, "maximum": 4, "default": 1},
            "duration": {"maximum": "2h", "default": "10m"},
            "queue_name": {"values": ["debug", "long"], "default": "debug"},
            "account": {"fixed": "proj42"}
        }
    });
    let agent = t.agent_token().await;
    let (s, b) = t
        .publish(&agent, SITE, json!({"jobTypes": [job_type_spec(), mpi]}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let mut b = Browser::logged_in(&t, "carol").await;
    let p = b.get("/ui/projects/proj-a/sites").await;
    p.assert_shows(&[
        "a whole number, 1 to 4; default 1",
        "a duration such as 1h30m, at most 2h; default 10m",
        "one of debug, long; default debug",
        "fixed: proj42",
    ]);
    let form_path = "/ui/projects/proj-a/sites/testsite/mpi";
    let form = b.get(form_path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    form.assert_shows(&[
        "type=\"number\" id=\"r-node_count\" name=\"r.node_count\" value=\"1\" step=\"1\" min=\"1\" max=\"4\"",
        "id=\"r-duration\" name=\"r.duration\" value=\"10m\"",
        "<select id=\"r-queue_name\" name=\"r.queue_name\">",
        "<span id=\"r-account\">proj42</span>",
    ]);
    let csrf = hidden(&form.body, "csrf");
    // Past the bounds: each problem at its input.
    let p = b
        .post(
            form_path,
            &[
                ("csrf", csrf.as_str()),
                ("idempotency", "r1"),
                ("r.node_count", "9"),
                ("r.duration", "3h"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("id=\"e-r-node_count\">"), "{}", p.body);
    assert!(p.body.contains("id=\"e-r-duration\">"), "{}", p.body);
    assert!(p.body.contains("name=\"r.duration\" value=\"3h\""));
    let p = b
        .post(
            form_path,
            &[
                ("csrf", csrf.as_str()),
                ("idempotency", "r2"),
                ("r.node_count", "2"),
                ("r.duration", "1h30m"),
                ("r.queue_name", "long"),
                ("r.account", "ignored"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let id = p.location.unwrap().rsplit('/').next().unwrap().to_string();
    let (_, job) = t.get(&format!("/api/v1/job/{id}"), &t.alice().await).await;
    assert_eq!(
        job["resources"],
        json!({"node_count": 2, "duration": 5400, "queue_name": "long", "account": "proj42"}),
        "{job}"
    );
}
