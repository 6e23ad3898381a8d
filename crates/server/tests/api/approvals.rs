//! Signed approvals (`POST /code/{id}/approval`) with signatures made by OpenSSH's own
//! `ssh-keygen -Y sign`: any token of the project carries them, the signature names the
//! person, waiting jobs are queued and waiting agents woken at once; every misfit (digest,
//! project, site, expiry, namespace, key, membership, state) is refused and changes nothing.
//! Also `GET /keys`.

use crate::code::{bundle, upload};
use crate::common::*;
use hpcsera_api_types::Role;
use hpcsera_approval::{parse_public_key, ApprovalMessage};
use hpcsera_store::NewUserKey;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../../../approval/tests/common/openssh.rs"]
pub(crate) mod openssh;

/// Uploads a bundle as alice, submits a job that waits for it and has the agent report the
/// matching digest; returns (bundle id, job id).
async fn pending_bundle(t: &TestApp, content: &str) -> (String, String) {
    let alice = t.alice().await;
    let (s, b) = upload(t, &alice, bundle(content)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let job = t.submit(&alice, json!({"label": "x", "code": id})).await;
    assert_eq!(job["status"], "awaiting_approval");
    let agent = t.agent_token().await;
    let (s, b) = t
        .send(
            Method::POST,
            &format!("/api/v1/code/{id}/hpcDigest"),
            &agent,
            Some(json!({ "sha256": id })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (id, id_of(&job))
}

/// Registers the public key of `key` for `user`.
pub(crate) async fn register(t: &TestApp, user: &str, key: &Path) {
    let k = parse_public_key(&openssh::public_line(key)).unwrap();
    let u = t.store.user_by_name(user).await.unwrap().unwrap();
    t.store
        .add_user_key(&NewUserKey {
            user_id: u.id,
            name: "laptop",
            public_key: &k.openssh,
            fingerprint: &k.fingerprint,
            algorithm: &k.algorithm,
        })
        .await
        .unwrap();
}

fn message(digest: &str, project: &str, sites: &[&str], expires: Option<i64>) -> String {
    let sites: Vec<String> = sites.iter().map(|s| s.to_string()).collect();
    ApprovalMessage::new(digest, project, &sites, expires)
        .unwrap()
        .render()
}

async fn post_approval(
    t: &TestApp,
    token: &str,
    id: &str,
    msg: &str,
    sig: &str,
) -> (StatusCode, Value) {
    t.send(
        Method::POST,
        &format!("/api/v1/code/{id}/approval"),
        token,
        Some(json!({"message": msg, "signature": sig})),
    )
    .await
}

#[tokio::test]
async fn an_ssh_keygen_signature_approves_as_its_owner_and_wakes_the_agent_at_once() {
    let t = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = openssh::ed25519(dir.path(), "alice-key");
    register(&t, "alice", &key).await;
    let (id, jid) = pending_bundle(&t, "echo signed\n").await;
    let msg = message(&id, "proj-a", &[SITE], None);
    let sig = openssh::sign(&key, openssh::NS, &msg);
    // Any valid token of the project carries it: this one has one unrelated role and is
    // another user's. The decision is alice's, whose key signed.
    let carrier = t.user("agent").roles(&[Role::GetJobStatus]).token().await;
    // The agent waits in a long poll; the signed approval wakes it (the re-check is 2 s).
    let agent = t.agent_token().await;
    let poll = async {
        let (s, r) = t
            .agent_poll(&agent, json!({"maxJobs": 10, "waitSeconds": 30}))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        (r, Instant::now())
    };
    let approve = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        (
            post_approval(&t, &carrier, &id, &msg, &sig).await,
            Instant::now(),
        )
    };
    let ((r, answered), ((s, b), started)) = tokio::join!(poll, approve);
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "approved");
    assert_eq!(b["decidedBy"], "alice");
    assert_eq!(b["approval"]["message"], msg.as_str());
    assert_eq!(b["approval"]["signature"], sig.as_str());
    assert_eq!(b["approval"]["keyFingerprint"], openssh::fingerprint(&key));
    assert_eq!(r["jobs"][0]["id"], jid.as_str(), "{r}");
    let after = answered.duration_since(started);
    assert!(
        after < Duration::from_millis(1500),
        "the waiting poll answered {after:?} after the approval"
    );
    // The status shows the signed approval (what agents check).
    let alice = t.alice().await;
    let (_, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert_eq!(st["approval"]["message"], msg.as_str());
    let (_, ev) = t.get(&format!("/api/v1/job/{jid}/events"), &alice).await;
    let queued = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["toStatus"] == "queued")
        .cloned()
        .unwrap();
    assert_eq!(queued["actor"], "user:alice");
    // Approving again is a conflict.
    let (s, _) = post_approval(&t, &alice, &id, &msg, &sig).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn approvals_that_do_not_fit_are_refused_and_change_nothing() {
    let t = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = openssh::ed25519(dir.path(), "alice-key");
    let bobs = openssh::ed25519(dir.path(), "bob-key");
    let stranger = openssh::ed25519(dir.path(), "stranger");
    register(&t, "alice", &key).await;
    register(&t, "bob", &bobs).await;
    let (id, _) = pending_bundle(&t, "echo misfit\n").await;
    let alice = t.alice().await;
    let other = "0".repeat(64);
    let good = message(&id, "proj-a", &[SITE], None);
    let sign = |k: &Path, m: &str| openssh::sign(k, openssh::NS, m);
    // (message, signature, field, problem)
    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            message(&other, "proj-a", &[SITE], None),
            sign(&key, &message(&other, "proj-a", &[SITE], None)),
            "message",
            "not this bundle",
        ),
        (
            message(&id, "proj-b", &[SITE], None),
            sign(&key, &message(&id, "proj-b", &[SITE], None)),
            "message",
            "proj-b",
        ),
        (
            message(&id, "proj-a", &["elsewhere"], None),
            sign(&key, &message(&id, "proj-a", &["elsewhere"], None)),
            "message",
            "does not have",
        ),
        (
            message(&id, "proj-a", &[SITE], Some(1_000_000_000)),
            sign(&key, &message(&id, "proj-a", &[SITE], Some(1_000_000_000))),
            "message",
            "expired",
        ),
        (
            good.replace('\n', "\r\n"),
            sign(&key, &good.replace('\n', "\r\n")),
            "message",
            "line",
        ),
        (
            good.clone(),
            sign(&key, &message(&id, "proj-a", &[SITE, "x"], None)),
            "signature",
            "does not verify",
        ),
        (
            good.clone(),
            openssh::sign(&key, "git", &good),
            "signature",
            "namespace",
        ),
        (
            good.clone(),
            sign(&stranger, &good),
            "signature",
            "not registered",
        ),
        (
            good.clone(),
            sign(&bobs, &good),
            "signature",
            "not a member",
        ),
        (
            good.clone(),
            "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".into(),
            "signature",
            "cannot be read",
        ),
        (good.clone(), "x".repeat(20_000), "signature", "longer"),
    ];
    for (msg, sig, field, problem) in cases {
        let (s, b) = post_approval(&t, &alice, &id, &msg, &sig).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} {problem}: {b}"
        );
        assert_eq!(fields(&b), [field], "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(problem),
            "{problem}: {b}"
        );
    }
    // Missing or unknown fields, no token, a bad id, another project's bundle.
    let (s, b) = t
        .send(
            Method::POST,
            &format!("/api/v1/code/{id}/approval"),
            &alice,
            Some(json!({"message": good})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let sig = sign(&key, &good);
    let r = t
        .raw(Method::POST, &format!("/api/v1/code/{id}/approval"), None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = post_approval(&t, &alice, "nothex", &good, &sig).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let bob = t.user("bob").project("proj-b").token().await;
    let (s, _) = post_approval(&t, &bob, &id, &good, &sig).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, st) = t.get(&format!("/api/v1/code/{id}/status"), &alice).await;
    assert_eq!(st["status"], "pending_approval", "{st}");
    assert!(st.get("approval").is_none());
    // Before the agent reported a digest: 409, as for any approval.
    let (_, b) = upload(&t, &alice, bundle("echo unverified\n")).await;
    let fresh = b["id"].as_str().unwrap().to_string();
    let m = message(&fresh, "proj-a", &[SITE], None);
    let (s, b) = post_approval(&t, &alice, &fresh, &m, &sign(&key, &m)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // The good one is accepted.
    let (s, b) = post_approval(&t, &alice, &id, &good, &sig).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn keys_are_listed_for_the_tokens_user_only_and_cannot_be_added_with_a_token() {
    let t = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key = openssh::ed25519(dir.path(), "alice-key");
    register(&t, "alice", &key).await;
    let alice = t.alice().await;
    let (s, b) = t.get("/api/v1/keys", &alice).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["keys"][0]["fingerprint"], openssh::fingerprint(&key));
    assert_eq!(b["keys"][0]["algorithm"], "ssh-ed25519");
    assert_eq!(b["keys"][0]["name"], "laptop");
    let bob = t.user("bob").project("proj-b").token().await;
    let (_, b) = t.get("/api/v1/keys", &bob).await;
    assert_eq!(b["keys"], json!([]));
    let body = json!({"name": "k", "publicKey": openssh::public_line(&key)});
    for m in [Method::POST, Method::PUT, Method::DELETE] {
        let (s, _) = t
            .send(m.clone(), "/api/v1/keys", &bob, Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m}");
    }
    let r = t.raw(Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A key belongs to one person.
    let k = parse_public_key(&openssh::public_line(&key)).unwrap();
    let bob_id = t.store.user_by_name("bob").await.unwrap().unwrap().id;
    let e = t
        .store
        .add_user_key(&NewUserKey {
            user_id: bob_id,
            name: "mine",
            public_key: &k.openssh,
            fingerprint: &k.fingerprint,
            algorithm: &k.algorithm,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("registered already"), "{e}");
}
