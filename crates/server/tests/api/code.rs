//! Code bundles: upload (streamed, size limit, same bytes → same bundle), roles and projects,
//! the agent's HPC-side digest, jobs that wait for approval, approval and rejection out of
//! band (never by a token).

use crate::common::*;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A small valid tar.gz with one file.
pub(crate) fn bundle(content: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "run.sh", content.as_bytes()).unwrap();
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

pub(crate) fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `POST /code` with these bytes: the status and the body.
pub(crate) async fn upload(t: &TestApp, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = t
        .http
        .post(format!("{}/api/v1/code", t.base))
        .bearer_auth(token)
        .header("content-type", "application/gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn poll(t: &TestApp, agent: &str) -> Value {
    let (s, b) = t.agent_poll(agent, json!({"maxJobs": 10})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// The agent's two calls on a bundle, download and HPC digest, by `token`: their statuses.
async fn agent_code_calls(t: &TestApp, id: &str, token: &str) -> [StatusCode; 2] {
    let (download, _) = t.get(&format!("/api/v1/code/{id}"), token).await;
    let (digest, _) = hpc_digest(t, id, token, id).await;
    [download, digest]
}

/// `POST /code/{id}/hpcDigest` by `token`, reporting `sha256`.
pub(crate) async fn hpc_digest(
    t: &TestApp,
    id: &str,
    token: &str,
    sha256: &str,
) -> (StatusCode, Value) {
    t.send(
        Method::POST,
        &format!("/api/v1/code/{id}/hpcDigest"),
        token,
        Some(json!({ "sha256": sha256 })),
    )
    .await
}

fn roles(r: &[Role]) -> RoleSet {
    r.iter().copied().collect()
}

fn tmp_files(t: &TestApp) -> usize {
    std::fs::read_dir(t.code_dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn same_bytes_same_bundle_and_status_shows_both_digests() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let bytes = bundle("#!/bin/sh\necho hi\n");
    let (s, b) = upload(&t, &alice, bytes.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(id, sha(&bytes));
    assert_eq!(b["status"], "pending_approval");
    assert_eq!(b["size"], bytes.len() as i64);
    assert_eq!(b["uploadedBy"], "alice");
    assert!(b.get("hpcSha256").is_none());
    assert_eq!(b["digestsMatch"], false);
    let (s, b2) = upload(&t, &alice, bytes.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b2["id"], id.as_str());
    // The bytes are kept content-addressed, once.
    let path = t.code_dir.join(&id[..2]).join(&id);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(tmp_files(&t), 0);
    let (s, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["id"], id.as_str());
    let (s, list) = t.get("/api/v1/code", &alice).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["bundles"].as_array().unwrap().len(), 1);
    // Bundles larger than the JSON body limit (1 MiB) are fine up to max_code_bytes.
    let mut big = vec![0x1f, 0x8b];
    big.extend((0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let (s, b4) = upload(&t, &alice, big.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b4}");
    assert_eq!(b4["size"], big.len() as i64);
    assert_eq!(b4["id"], sha(&big).as_str());
    // Another project uploading the same bytes gets its own (pending) bundle.
    let bob = t.user("bob").project("proj-b").token().await;
    let (s, b3) = upload(&t, &bob, bytes).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b3["project"], "proj-b");
}

#[tokio::test]
async fn bad_uploads_are_refused_with_json_errors() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let (s, b) = upload(&t, &alice, b"not gzip at all".to_vec()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["body"]);
    let resp = t
        .http
        .post(format!("{}/api/v1/code", t.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, b) = t.get("/api/v1/code/xyz/status", &alice).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&b), ["codeId"]);
    let (s, _) = t
        .get(&format!("/api/v1/code/{}/status", "0".repeat(64)), &alice)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(tmp_files(&t), 0);
}

#[tokio::test]
async fn over_the_limit_is_413_while_streaming_and_leaves_nothing() {
    let t = TestApp::spawn_configured(|c| {
        c.limits.max_code_bytes = 1024 * 1024;
    })
    .await;
    let alice = t.alice().await;
    // A declared length over the limit is refused before a byte is read.
    let (s, b) = upload(&t, &alice, vec![0x1f; 2 * 1024 * 1024]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(code(&b), "payload_too_large");
    // A chunked body (no length) of 20 MiB: the server answers 413 once it passed 1 MiB, long
    // before the client could have sent it all, and keeps no file.
    let addr = t.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/code HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: application/gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x1fu8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 20 * 1024 * 1024 {
            let frame = format!("{:x}\r\n", chunk.len());
            if wr.write_all(frame.as_bytes()).await.is_err()
                || wr.write_all(&chunk).await.is_err()
                || wr.write_all(b"\r\n").await.is_err()
            {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), rd.read(&mut buf))
        .await
        .expect("the server answers before the upload ends")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    drop(rd);
    let sent = writer.await.unwrap();
    assert!(
        sent < 20 * 1024 * 1024,
        "the whole body was accepted ({sent} bytes)"
    );
    assert_eq!(tmp_files(&t), 0);
    let (_, list) = t.get("/api/v1/code", &alice).await;
    assert_eq!(list["bundles"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn roles_and_projects_are_checked() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let bytes = bundle("echo roles\n");
    let (_, b) = upload(&t, &alice, bytes.clone()).await;
    let id = b["id"].as_str().unwrap().to_string();
    // Upload needs POST_Code.
    let no_post = t
        .user("alice")
        .project("proj-a")
        .roles(&[Role::GetJobStatus, Role::PostJob])
        .token()
        .await;
    let (s, b) = upload(&t, &no_post, bytes.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Status and list need POST_Code, GET_JobStatus or GET_Code.
    let only_job = t
        .user("alice")
        .project("proj-a")
        .roles(&[Role::PostJob])
        .token()
        .await;
    for path in [format!("/api/v1/code/{id}/status"), "/api/v1/code".into()] {
        let (s, _) = t.get(&path, &only_job).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        let (s, _) = t.get(&path, &no_post).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    // Download needs GET_Code and a site-restricted token.
    let (s, _) = t.get(&format!("/api/v1/code/{id}"), &alice).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let unsited = t
        .user("alice")
        .project("proj-a")
        .roles(&[Role::GetCode])
        .token()
        .await;
    let (s, _) = t.get(&format!("/api/v1/code/{id}"), &unsited).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The HPC digest too: only an agent token (site-restricted, GET_Job) reports it, and only
    // one of the site whose waiting job references the bundle.
    let agent_roles = roles(&[Role::GetJob, Role::UpdateJobStatus, Role::GetCode]);
    let unsited_agent = t
        .user("agent")
        .project("proj-a")
        .role_set(agent_roles)
        .token()
        .await;
    let other_site = t
        .user("agent")
        .project("proj-a")
        .role_set(agent_roles)
        .site("othersite")
        .token()
        .await;
    let (s, _) = hpc_digest(&t, &id, &unsited_agent, &id).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = hpc_digest(&t, &id, &other_site, &id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (_, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert!(
        st.get("hpcSha256").is_none() || st["hpcSha256"].is_null(),
        "{st}"
    );
    let no_get_code = t
        .user("agent")
        .project("proj-a")
        .roles(&[Role::GetJob, Role::UpdateJobStatus])
        .site(SITE)
        .token()
        .await;
    assert_eq!(
        agent_code_calls(&t, &id, &no_get_code).await,
        [StatusCode::FORBIDDEN, StatusCode::FORBIDDEN]
    );
    // Another project's token sees nothing: 404, never 403.
    let bob = t.user("bob").project("proj-b").token().await;
    let bob_agent = t.user("bob").project("proj-b").site(SITE).token().await;
    let (s, _) = t.get(&format!("/api/v1/code/{id}/status"), &bob).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        agent_code_calls(&t, &id, &bob_agent).await,
        [StatusCode::NOT_FOUND, StatusCode::NOT_FOUND]
    );
    let (_, list) = t.get("/api/v1/code", &bob).await;
    assert_eq!(list["bundles"].as_array().unwrap().len(), 0);
    // A job of proj-b cannot reference proj-a's bundle.
    let (s, b) = t
        .post_job(
            &bob,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x", "code": id}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["parameters.code"]);
}

/// A sweep's members that name a pending bundle wait for it like a single job, and their
/// `created` event says why (it said nothing before, for a member made in bulk).
#[tokio::test]
async fn sweep_members_wait_for_their_code_and_their_created_event_says_so() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let (_, b) = upload(&t, &alice, bundle("#!/bin/sh\necho member\n")).await;
    let code = b["id"].as_str().unwrap().to_string();
    let single = t
        .submit(&alice, json!({"label": "one", "code": code}))
        .await;
    let (s, sweep) = t
        .send(
            Method::POST,
            "/api/v1/sweeps",
            &alice,
            Some(
                json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"code": code},
                "grid": {"label": ["a", "b", "c"]}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sweep}");
    assert_eq!(
        sweep["counts"]["byStatus"]["awaiting_approval"], 3,
        "{sweep}"
    );
    let (_, page) = t
        .get(
            &format!("/api/v1/sweeps/{}/jobs", sweep["id"].as_str().unwrap()),
            &alice,
        )
        .await;
    let mut ids: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{page}");
    ids.push(id_of(&single));
    for id in ids {
        let (_, ev) = t.get(&format!("/api/v1/job/{id}/events"), &alice).await;
        let created = &ev["events"][0];
        assert_eq!(created["kind"], "created", "{ev}");
        assert_eq!(created["toStatus"], "awaiting_approval", "{ev}");
        assert_eq!(
            created["message"], "waiting for the approval of its code bundle",
            "{id}: {ev}"
        );
    }
}

/// A sweep whose members name a bundle the project does not have, or a rejected one, is
/// refused as a single job would be (the same reasons), naming the first member that uses
/// it; nothing of the sweep is stored.
#[tokio::test]
async fn a_sweep_naming_a_missing_or_rejected_bundle_is_refused_per_member() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let (_, b) = upload(&t, &alice, bundle("#!/bin/sh\nexit 1\n")).await;
    let rejected = b["id"].as_str().unwrap().to_string();
    t.store
        .decide_bundle("proj-a", &rejected, "alice", false, Some("no"))
        .await
        .unwrap();
    let missing = "d".repeat(64);
    for (code, reason) in [
        (
            &missing,
            format!("there is no code bundle {missing} in this project"),
        ),
        (&rejected, format!("code bundle {rejected} was rejected")),
    ] {
        let (s, e) = t
            .send(
                Method::POST,
                "/api/v1/sweeps",
                &alice,
                Some(json!({"site": SITE, "jobType": JOB_TYPE,
                    "parameterSets": [{"label": "a"}, {"label": "b", "code": code}]})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(fields(&e), ["members[1].parameters.code"], "{e}");
        let message = e["error"]["fields"][0]["problem"].as_str().unwrap();
        assert!(message.starts_with(&reason), "{message}");
    }
    let (_, list) = t.get("/api/v1/sweeps", &alice).await;
    assert_eq!(list["sweeps"].as_array().unwrap().len(), 0, "{list}");
    let (_, jobs) = t.get("/api/v1/job/findJobsByStatus", &alice).await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
}

#[tokio::test]
async fn jobs_wait_for_approval_of_the_hpc_digest_and_run_after() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let bytes = bundle("#!/bin/sh\necho approved\n");
    let (_, b) = upload(&t, &alice, bytes.clone()).await;
    let id = b["id"].as_str().unwrap().to_string();
    // Pending and not referenced by a waiting job: the agent may not download it.
    let (s, _) = t.get(&format!("/api/v1/code/{id}"), &agent).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Unknown bundle → 422 naming the parameter.
    let (s, e) = t.post_job(&alice, json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x", "code": "a".repeat(64)}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(fields(&e), ["parameters.code"]);
    // A job referencing the pending bundle waits.
    let job = t.submit(&alice, json!({"label": "x", "code": id})).await;
    assert_eq!(job["status"], "awaiting_approval");
    let jid = id_of(&job);
    // The agent is not given the job, but is asked to verify the code.
    let r = poll(&t, &agent).await;
    assert_eq!(r["jobs"].as_array().unwrap().len(), 0);
    assert_eq!(r["codeToVerify"], json!([id]));
    // Approval before the HPC side reported a digest is refused.
    let e = t
        .store
        .decide_bundle("proj-a", &id, "alice", true, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("conflict"), "{e}");
    // The agent downloads it and reports a digest.
    let resp = t
        .raw(Method::GET, &format!("/api/v1/code/{id}"), Some(&agent))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let got = resp.bytes().await.unwrap();
    assert_eq!(&got[..], &bytes[..]);
    // A wrong digest is recorded and shown as a mismatch; approval is then refused.
    let (s, b) = hpc_digest(&t, &id, &agent, &"b".repeat(64)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["digestsMatch"], false);
    assert!(t
        .store
        .decide_bundle("proj-a", &id, "alice", true, None)
        .await
        .is_err());
    let (s, b) = hpc_digest(&t, &id, &agent, "not hex").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["sha256"]);
    let (s, b) = hpc_digest(&t, &id, &agent, &sha(&got)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert_eq!(st["hpcSha256"], id.as_str());
    assert_eq!(st["digestsMatch"], true);
    let r = poll(&t, &agent).await;
    assert_eq!(r["codeToVerify"], json!([]));
    // Only a member of the project approves.
    let e = t
        .store
        .decide_bundle("proj-a", &id, "bob", true, None)
        .await
        .unwrap_err();
    assert!(matches!(e, hpcsera_store::StoreError::Invalid(_)), "{e}");
    let d = t
        .store
        .decide_bundle("proj-a", &id, "alice", true, Some("looks fine"))
        .await
        .unwrap();
    assert_eq!(d.jobs_changed, vec![jid.clone()]);
    assert!(!d.delete_file);
    let (_, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert_eq!(st["status"], "approved");
    assert_eq!(st["decidedBy"], "alice");
    let (_, j) = t.get(&format!("/api/v1/job/{jid}"), &alice).await;
    assert_eq!(j["status"], "queued");
    let (_, ev) = t.get(&format!("/api/v1/job/{jid}/events"), &alice).await;
    let last = ev["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["toStatus"], "queued");
    assert_eq!(last["actor"], "user:alice");
    // Deciding twice is a conflict.
    assert!(t
        .store
        .decide_bundle("proj-a", &id, "alice", false, None)
        .await
        .is_err());
    // Now the agent gets the job, and the approved bytes.
    let r = poll(&t, &agent).await;
    assert_eq!(r["jobs"][0]["id"], jid.as_str());
    let (s, _) = t.get(&format!("/api/v1/code/{id}"), &agent).await;
    assert_eq!(s, StatusCode::OK);
    // A new job with approved code is queued at once.
    let job = t.submit(&alice, json!({"label": "y", "code": id})).await;
    assert_eq!(job["status"], "queued");
}

#[tokio::test]
async fn rejection_fails_waiting_jobs_and_blocks_the_bundle() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let agent = t.agent_token().await;
    let (_, b) = upload(&t, &alice, bundle("rm -rf /\n")).await;
    let id = b["id"].as_str().unwrap().to_string();
    let job = t.submit(&alice, json!({"label": "x", "code": id})).await;
    let jid = id_of(&job);
    // Rejection needs no HPC digest.
    let d = t
        .store
        .decide_bundle("proj-a", &id, "alice", false, Some("deletes everything"))
        .await
        .unwrap();
    assert_eq!(d.jobs_changed, vec![jid.clone()]);
    assert!(d.delete_file, "no other project keeps these bytes");
    let (_, j) = t.get(&format!("/api/v1/job/{jid}"), &alice).await;
    assert_eq!(j["status"], "failed");
    assert_eq!(
        j["message"],
        format!("code bundle {id} rejected: deletes everything")
    );
    let (s, _) = t.get(&format!("/api/v1/code/{id}"), &agent).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, e) = t
        .post_job(
            &alice,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "x", "code": id}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&e), ["parameters.code"]);
}

#[tokio::test]
async fn changing_a_queued_jobs_code_makes_it_wait_again() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let job = t.submit(&alice, json!({"label": "x"})).await;
    assert_eq!(job["status"], "queued");
    let (_, b) = upload(&t, &alice, bundle("echo new\n")).await;
    let id = b["id"].as_str().unwrap().to_string();
    let (s, j) = t
        .send(
            Method::PUT,
            &format!("/api/v1/job/{}", id_of(&job)),
            &alice,
            Some(json!({"parameters": {"label": "x", "code": id}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["status"], "awaiting_approval");
}

#[tokio::test]
async fn no_token_can_approve_not_even_with_every_role() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let everything = t.user("alice").project("proj-a").site(SITE).token().await;
    let (_, b) = upload(&t, &alice, bundle("echo x\n")).await;
    let id = b["id"].as_str().unwrap().to_string();
    t.submit(&alice, json!({"label": "x", "code": id})).await;
    let (s, _) = hpc_digest(&t, &id, &everything, &id).await;
    assert_eq!(s, StatusCode::OK);
    let body =
        json!({"status": "approved", "approve": true, "user": "alice", "decision": "approve"});
    for tok in [&alice, &everything] {
        for path in [
            format!("/api/v1/code/{id}"),
            format!("/api/v1/code/{id}/status"),
            format!("/api/v1/code/{id}/approve"),
            format!("/api/v1/code/{id}/approval"),
            format!("/api/v1/code/{id}/decision"),
            format!("/api/v1/code/{id}/hpcDigest"),
            "/api/v1/code/approve".to_string(),
        ] {
            for m in [Method::PUT, Method::POST, Method::PATCH] {
                let (s, _) = t.send(m.clone(), &path, tok, Some(body.clone())).await;
                assert!(
                    matches!(
                        s,
                        StatusCode::NOT_FOUND
                            | StatusCode::METHOD_NOT_ALLOWED
                            | StatusCode::FORBIDDEN
                            | StatusCode::UNPROCESSABLE_ENTITY
                            | StatusCode::UNSUPPORTED_MEDIA_TYPE
                            | StatusCode::BAD_REQUEST
                    ),
                    "{m} {path}: {s}"
                );
            }
        }
    }
    let (_, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert_eq!(st["status"], "pending_approval");
    let (_, list) = t
        .get("/api/v1/job/findJobsByStatus?status=queued", &alice)
        .await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn retention_forgets_old_bundles_no_live_job_references() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let bob = t.user("bob").project("proj-b").token().await;
    let (_, used) = upload(&t, &alice, bundle("echo used\n")).await;
    let used = used["id"].as_str().unwrap().to_string();
    let (_, idle) = upload(&t, &alice, bundle("echo idle\n")).await;
    let idle = idle["id"].as_str().unwrap().to_string();
    // proj-b keeps its own copy of the used bytes, unreferenced.
    upload(&t, &bob, bundle("echo used\n")).await;
    t.submit(&alice, json!({"label": "x", "code": used})).await;
    // Nothing is old enough yet.
    assert!(t
        .store
        .prune_bundles(hpcsera_store::now_ms() - 60_000)
        .await
        .unwrap()
        .is_empty());
    let gone = t
        .store
        .prune_bundles(hpcsera_store::now_ms() + 1000)
        .await
        .unwrap();
    // proj-b's copy of `used` is forgotten, but proj-a's waiting job keeps the bytes.
    assert_eq!(gone, vec![idle.clone()]);
    let (s, _) = t.get(&format!("/api/v1/code/{idle}/status"), &alice).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t.get(&format!("/api/v1/code/{used}/status"), &alice).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.get(&format!("/api/v1/code/{used}/status"), &bob).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_servers_data_and_code_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = hpcsera_store::Store::open_data_dir(&data).await.unwrap();
    store.create_user("alice", None, false).await.unwrap();
    store.create_project("proj-a", "").await.unwrap();
    store.add_member("alice", "proj-a").await.unwrap();
    let (_, tok) = store
        .create_token(&hpcsera_store::NewToken {
            user: "alice",
            project: "proj-a",
            name: "t",
            roles: RoleSet::all(),
            site: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let app = hpcsera_server::Application::build(
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            code_dir: data.join("code"),
            ..Default::default()
        },
        store,
    )
    .await
    .unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    tokio::spawn(app.run_until(std::future::pending()));
    let bytes = bundle("#!/bin/sh\necho private\n");
    let id = sha(&bytes);
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/code"))
        .bearer_auth(&tok)
        .header("content-type", "application/gzip")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "data dir");
    for f in ["hpcsera.db", "hpcsera.db-wal", "hpcsera.db-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let code = data.join("code");
    for d in [code.clone(), code.join("tmp"), code.join(&id[..2])] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    assert_eq!(
        mode(&code.join(&id[..2]).join(&id)),
        0o600,
        "the bundle file"
    );
}

/// Whether the bytes of bundle `id` are on disk, intact.
fn bytes_kept(t: &TestApp, id: &str) -> bool {
    std::fs::read(hpcsera_server::code_file_path(&t.code_dir, id)).is_ok_and(|b| sha(&b) == id)
}

#[tokio::test]
async fn a_rejection_in_one_project_never_deletes_bytes_another_project_just_uploaded() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let bob = t.user("bob").project("proj-b").token().await;
    // Deterministic: A's rejection commits, B uploads the same bytes, then A's clean-up runs.
    let bytes = bundle("#!/bin/sh\necho shared\n");
    let id = sha(&bytes);
    assert_eq!(
        upload(&t, &alice, bytes.clone()).await.0,
        StatusCode::CREATED
    );
    let d = t
        .store
        .decide_bundle("proj-a", &id, "alice", false, Some("no"))
        .await
        .unwrap();
    assert!(d.delete_file);
    assert_eq!(upload(&t, &bob, bytes).await.0, StatusCode::CREATED);
    let path = hpcsera_server::code_file_path(&t.code_dir, &id);
    assert!(!t
        .store
        .delete_code_file_if_unkept(&id, &path)
        .await
        .unwrap());
    assert!(bytes_kept(&t, &id), "project B's bundle lost its bytes");
    // Racing: rejection plus clean-up in A while B uploads the same bytes, many times.
    for i in 0..40 {
        let bytes = bundle(&format!("#!/bin/sh\necho {i}\n"));
        let id = sha(&bytes);
        assert_eq!(
            upload(&t, &alice, bytes.clone()).await.0,
            StatusCode::CREATED
        );
        let path = hpcsera_server::code_file_path(&t.code_dir, &id);
        let reject = async {
            tokio::time::sleep(std::time::Duration::from_micros(i * 150)).await;
            let d = t
                .store
                .decide_bundle("proj-a", &id, "alice", false, Some("no"))
                .await
                .unwrap();
            if d.delete_file {
                t.store
                    .delete_code_file_if_unkept(&id, &path)
                    .await
                    .unwrap();
            }
        };
        let (_, (s, b)) = tokio::join!(reject, upload(&t, &bob, bytes));
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert!(
            bytes_kept(&t, &id),
            "round {i}: project B's bundle lost its bytes"
        );
        let (s, b) = t.get(&format!("/api/v1/code/{id}/status"), &bob).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["status"], "pending_approval");
    }
    // Bytes nobody keeps still go.
    let bytes = bundle("#!/bin/sh\necho alone\n");
    let id = sha(&bytes);
    upload(&t, &alice, bytes).await;
    t.store
        .decide_bundle("proj-a", &id, "alice", false, None)
        .await
        .unwrap();
    let path = hpcsera_server::code_file_path(&t.code_dir, &id);
    assert!(t
        .store
        .delete_code_file_if_unkept(&id, &path)
        .await
        .unwrap());
    assert!(!path.exists());
}
