//! Signed provenance: only the agent that holds a job stores its manifest, only before the
//! end, with a signature that verifies, about this job, naming its stored results; clients
//! read it, download the crate and find the job that made a file by its SHA-256 — never a job
//! of another project.

use crate::common::{code, fields, id_of, TestApp};
use ed25519_dalek::{Signer, SigningKey};
use hpcsera_api_types::provenance::{encode_signature, verify_manifest, AgentKey};
use hpcsera_api_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn key(seed: u8) -> (SigningKey, String) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let public = AgentKey(sk.verifying_key().to_bytes()).to_string();
    (sk, public)
}

/// A minimal manifest of `job` naming result files `(name, bytes)` and a code bundle.
fn manifest(job: &str, results: &[(&str, &[u8])], code: &str) -> Vec<u8> {
    let mut graph = vec![
        json!({"@id": "./", "@type": "Dataset", "identifier": job}),
        json!({"@id": format!("urn:uuid:{job}"), "@type": "CreateAction", "endTime": "2024-01-01T00:00:00.000+00:00",
            "result": results.iter().map(|(n, _)| json!({"@id": format!("results/{n}")})).collect::<Vec<_>>(),
            "object": {"@id": format!("#code-{code}")}}),
        json!({"@id": format!("#code-{code}"), "@type": "File", "sha256": code, "contentSize": "10"}),
    ];
    for (n, data) in results {
        graph.push(
            json!({"@id": format!("results/{n}"), "@type": "File", "sha256": sha256_hex(data),
            "contentSize": data.len().to_string()}),
        );
    }
    serde_json::to_vec_pretty(
        &json!({"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}),
    )
    .unwrap()
}

/// `PUT /job/{id}/provenance` with the manifest signed by `sk` (sent with key `public`).
async fn put(
    t: &TestApp,
    token: &str,
    id: &str,
    bytes: &[u8],
    sig: &str,
    public: &str,
) -> (StatusCode, Value) {
    let r = t
        .http
        .put(format!("{}/api/v1/job/{id}/provenance", t.base))
        .bearer_auth(token)
        .header("x-provenance-signature", sig)
        .header("x-provenance-key", public)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn put_result(t: &TestApp, agent: &str, id: &str, name: &str, data: &[u8]) {
    let r = t
        .http
        .put(format!("{}/api/v1/job/{id}/results/{name}", t.base))
        .bearer_auth(agent)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// A job of alice's, claimed by the agent, with `results` uploaded and its manifest stored.
async fn job_with_provenance(
    t: &TestApp,
    alice: &str,
    agent: &str,
    results: &[(&str, &[u8])],
    code: &str,
) -> String {
    let id = id_of(&t.submit(alice, json!({"label": "prov"})).await);
    t.claim(agent, &id).await;
    for (n, d) in results {
        put_result(t, agent, &id, n, d).await;
    }
    let (sk, public) = key(1);
    let bytes = manifest(&id, results, code);
    let sig = encode_signature(&sk.sign(&bytes).to_bytes());
    let (s, b) = put(t, agent, &id, &bytes, &sig, &public).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    id
}

async fn search(t: &TestApp, token: &str, query: &str) -> Value {
    let (s, b) = t.get(&format!("/api/v1/provenance?{query}"), token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

fn job_ids(v: &Value) -> Vec<String> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_signed_manifest_is_served_byte_for_byte_and_its_files_are_found_by_digest() {
    let t = TestApp::spawn().await;
    let (alice, agent) = (t.alice().await, t.agent_token().await);
    let code_sha = "c".repeat(64);
    let data = b"5050\n";
    let first = job_with_provenance(
        &t,
        &alice,
        &agent,
        &[("sum.txt", data), ("out/log.txt", b"ok")],
        &code_sha,
    )
    .await;
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{first}/provenance"),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/ld+json"));
    let sig = r.headers()["x-provenance-signature"]
        .to_str()
        .unwrap()
        .to_string();
    let public = r.headers()["x-provenance-key"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().await.unwrap();
    assert_eq!(
        body.as_ref(),
        manifest(
            &first,
            &[("sum.txt", data), ("out/log.txt", b"ok")],
            &code_sha
        )
    );
    verify_manifest(&AgentKey::parse(&public).unwrap(), &body, &sig).unwrap();
    // The crate: a ZIP that starts with the signed manifest.
    let r = t
        .raw(
            Method::GET,
            &format!("/api/v1/job/{first}/provenance.zip"),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let zip = r.bytes().await.unwrap();
    assert!(zip.starts_with(b"PK\x03\x04"));
    assert!(
        zip.windows(body.len()).any(|w| w == body.as_ref()),
        "the manifest's exact bytes are in the ZIP"
    );
    assert!(
        zip.windows(data.len()).any(|w| w == data),
        "the result file is in the ZIP"
    );
    // Which job made this file?
    let second =
        job_with_provenance(&t, &alice, &agent, &[("sum.txt", data)], &"d".repeat(64)).await;
    let found = search(&t, &alice, &format!("sha256={}", sha256_hex(data))).await;
    assert_eq!(
        job_ids(&found),
        [second.as_str(), first.as_str()],
        "newest first"
    );
    assert_eq!(
        found["jobs"][1]["matches"],
        json!([{"role": "result", "name": "results/sum.txt", "sha256": sha256_hex(data), "size": 5}])
    );
    assert_eq!(found["jobs"][1]["agentKey"], public);
    assert_eq!(found["jobs"][1]["jobType"], "sim");
    // Upper-case hex is the same digest; by code; by code and file; by job type; paged.
    let upper = search(
        &t,
        &alice,
        &format!("sha256={}", sha256_hex(data).to_uppercase()),
    )
    .await;
    assert_eq!(job_ids(&upper).len(), 2);
    assert_eq!(
        job_ids(&search(&t, &alice, &format!("codeSha256={code_sha}")).await),
        [first.as_str()]
    );
    assert_eq!(
        job_ids(&search(&t, &alice, &format!("sha256={code_sha}")).await),
        [first.as_str()],
        "code is an input"
    );
    let both = format!("sha256={}&codeSha256={}", sha256_hex(data), "d".repeat(64));
    assert_eq!(job_ids(&search(&t, &alice, &both).await), [second.as_str()]);
    assert_eq!(job_ids(&search(&t, &alice, "jobType=sim").await).len(), 2);
    assert_eq!(job_ids(&search(&t, &alice, "jobType=other").await).len(), 0);
    let page = search(&t, &alice, &format!("sha256={}&limit=1", sha256_hex(data))).await;
    assert_eq!(job_ids(&page), [second.as_str()]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let next = search(
        &t,
        &alice,
        &format!("sha256={}&limit=1&cursor={cursor}", sha256_hex(data)),
    )
    .await;
    assert_eq!(job_ids(&next), [first.as_str()]);
    assert!(next.get("nextCursor").is_none());
    let later = search(&t, &alice, "endedAfter=2999-01-01T00:00:00Z").await;
    assert_eq!(job_ids(&later).len(), 0);
    // Never a job of another project: bob's search finds nothing, his reads are 404.
    let bob = t.user("bob").project("proj-b").token().await;
    assert_eq!(
        job_ids(&search(&t, &bob, &format!("sha256={}", sha256_hex(data))).await).len(),
        0
    );
    for path in [
        format!("/api/v1/job/{first}/provenance"),
        format!("/api/v1/job/{first}/provenance.zip"),
    ] {
        assert_eq!(t.get(&path, &bob).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    // Bad queries name their field.
    for (q, field) in [
        ("sha256=abc", "sha256"),
        ("codeSha256=zz", "codeSha256"),
        ("color=red", "color"),
        ("cursor=nope", "cursor"),
        ("endedAfter=yesterday", "endedAfter"),
        ("limit=0", "limit"),
    ] {
        let (s, b) = t.get(&format!("/api/v1/provenance?{q}"), &alice).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {b}");
        assert_eq!(fields(&b), [field], "{q}");
    }
    let outsider = t
        .user("alice")
        .project("proj-a")
        .roles(&[Role::PostJob])
        .token()
        .await;
    assert_eq!(
        t.get("/api/v1/provenance", &outsider).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.get(&format!("/api/v1/job/{first}/provenance"), &outsider)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn only_the_holding_agent_stores_a_manifest_and_only_before_the_end() {
    let t = TestApp::spawn().await;
    let (alice, agent) = (t.alice().await, t.agent_token().await);
    let id = id_of(&t.submit(&alice, json!({"label": "x"})).await);
    let (sk, public) = key(1);
    let bytes = manifest(&id, &[], &"c".repeat(64));
    let sig = encode_signature(&sk.sign(&bytes).to_bytes());
    // Not claimed yet: the job is not this agent's to write.
    assert_eq!(
        put(&t, &agent, &id, &bytes, &sig, &public).await.0,
        StatusCode::CONFLICT
    );
    let (s, b) = t.get(&format!("/api/v1/job/{id}/provenance"), &alice).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("when the job ends"),
        "{b}"
    );
    t.claim(&agent, &id).await;
    // Not an agent token; another project's agent.
    assert_eq!(
        put(&t, &alice, &id, &bytes, &sig, &public).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(&t, &t.agent_token_b().await, &id, &bytes, &sig, &public)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // A signature that does not verify: one changed byte, another key, garbage.
    let mut changed = bytes.clone();
    changed[10] ^= 1;
    let (other, other_public) = key(2);
    let resigned = encode_signature(&other.sign(&bytes).to_bytes());
    for (body, sig, public, field) in [
        (&changed, &sig, &public, "x-provenance-signature"),
        (&bytes, &resigned, &public, "x-provenance-signature"),
        (
            &bytes,
            &"AAAA".to_string(),
            &public,
            "x-provenance-signature",
        ),
        (&bytes, &sig, &"rsa:xyz".to_string(), "x-provenance-key"),
        (&bytes, &sig, &other_public, "x-provenance-signature"),
    ] {
        let (s, b) = put(&t, &agent, &id, body, sig, public).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(fields(&b), [field]);
    }
    // About another job; a result file the job does not have; not JSON.
    let sign = |b: &[u8]| encode_signature(&sk.sign(b).to_bytes());
    let elsewhere = manifest("0190c0de-0000-7000-8000-000000000001", &[], &"c".repeat(64));
    let (s, b) = put(&t, &agent, &id, &elsewhere, &sign(&elsewhere), &public).await;
    assert_eq!(
        (s, fields(&b)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["manifest".to_string()]
        ),
        "{b}"
    );
    let missing = manifest(&id, &[("sum.txt", b"5050\n")], &"c".repeat(64));
    let (s, b) = put(&t, &agent, &id, &missing, &sign(&missing), &public).await;
    assert_eq!(
        (s, fields(&b)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["manifest.results/sum.txt".to_string()]
        ),
        "{b}"
    );
    put_result(&t, &agent, &id, "sum.txt", b"5051\n").await;
    let (s, b) = put(&t, &agent, &id, &missing, &sign(&missing), &public).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a different digest: {b}"
    );
    let (s, _) = put(&t, &agent, &id, b"not json", &sign(b"not json"), &public).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // The right one; a changed result afterwards drops it (it must be signed again).
    put_result(&t, &agent, &id, "sum.txt", b"5050\n").await;
    assert_eq!(
        put(&t, &agent, &id, &missing, &sign(&missing), &public)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.get(&format!("/api/v1/job/{id}/provenance"), &alice)
            .await
            .0,
        StatusCode::OK
    );
    put_result(&t, &agent, &id, "sum.txt", b"5050\n").await;
    assert_eq!(
        t.get(&format!("/api/v1/job/{id}/provenance"), &alice)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put(&t, &agent, &id, &missing, &sign(&missing), &public)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // Ended jobs are read-only: the manifest stays, a new one is refused.
    let (s, b) = t
        .report(&agent, &id, json!({"status": "completed", "exitCode": 0}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = put(&t, &agent, &id, &missing, &sign(&missing), &public).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(code(&b), "conflict");
    assert_eq!(
        t.get(&format!("/api/v1/job/{id}/provenance"), &alice)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn jobs_that_end_without_an_agent_say_why_they_have_no_provenance() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    let id = id_of(&t.submit(&alice, json!({"label": "never"})).await);
    let (s, _) = t.operation(&alice, &id, "cancel").await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        format!("/api/v1/job/{id}/provenance"),
        format!("/api/v1/job/{id}/provenance.zip"),
    ] {
        let (s, b) = t.get(&path, &alice).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cancelled before an agent ran it"),
            "{b}"
        );
    }
    let (s, b) = t
        .get(
            "/api/v1/job/00000000-0000-7000-8000-000000000000/provenance",
            &alice,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"]["message"], "job not found");
}

#[tokio::test]
async fn an_agent_publishes_its_key_with_its_job_types() {
    let t = TestApp::spawn().await;
    let agent = t.agent_token().await;
    let (_, public) = key(3);
    let spec = crate::common::job_type_spec();
    let (s, b) = t
        .send(
            Method::PUT,
            &format!("/api/v1/sites/{}/jobTypes", crate::common::SITE),
            &agent,
            Some(json!({"jobTypes": [spec.clone()], "agentKey": public})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, sites) = t.get("/api/v1/sites", &t.alice().await).await;
    assert_eq!(sites["sites"][0]["agentKey"], public);
    let (_, sites_b) = t
        .get(
            "/api/v1/sites",
            &t.user("bob").project("proj-b").token().await,
        )
        .await;
    assert!(
        sites_b["sites"][0].get("agentKey").is_none(),
        "another project's agent key is its own"
    );
    let (s, b) = t
        .send(
            Method::PUT,
            &format!("/api/v1/sites/{}/jobTypes", crate::common::SITE),
            &agent,
            Some(json!({"jobTypes": [spec], "agentKey": "ed25519:short"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(fields(&b), ["agentKey"]);
}
