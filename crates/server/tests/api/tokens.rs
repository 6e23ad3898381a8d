//! The token API a token holder uses: listing its user's tokens in its project, revoking
//! itself; and that no route makes a token.

use crate::common::*;
use hpcsera_api_types::{Role, RoleSet};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_token_lists_its_users_tokens_in_its_project_only() {
    let t = TestApp::spawn().await;
    t.store.add_member("alice", "proj-b").await.unwrap();
    let a1 = t.alice().await;
    let _a2 = t
        .user("alice")
        .roles(&[Role::GetJobStatus])
        .site(SITE)
        .token()
        .await;
    let a_in_b = t.user("alice").project("proj-b").token().await;
    let bob = t.user("bob").project("proj-b").token().await;

    let (s, body) = t.get("/api/v1/tokens", &a1).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let tokens = body["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 2, "alice's two proj-a tokens only: {body}");
    for tok in tokens {
        assert_eq!(tok["user"], "alice");
        assert_eq!(tok["project"], "proj-a");
    }
    let restricted = tokens
        .iter()
        .find(|x| x["site"] == SITE)
        .expect("the site token");
    assert_eq!(restricted["roles"], serde_json::json!(["GET_JobStatus"]));
    // Never a secret (nor its hash) of any token.
    let text = body.to_string();
    for secret in [&a1, &a_in_b, &bob] {
        assert!(!text.contains(secret.as_str()), "a secret leaked: {text}");
        assert!(
            !text.contains(&hpcsera_store::hash_token(secret)),
            "a hash leaked"
        );
    }

    // Bob sees only his; alice's proj-b token sees only alice's proj-b token.
    let (_, b) = t.get("/api/v1/tokens", &bob).await;
    let names: Vec<&str> = b["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["user"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|u| *u == "bob"), "{b}");
    let (_, ab) = t.get("/api/v1/tokens", &a_in_b).await;
    assert_eq!(ab["tokens"].as_array().unwrap().len(), 1, "{ab}");
    assert_eq!(ab["tokens"][0]["project"], "proj-b");

    // Without a token: 401.
    let r = t.raw(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_revokes_itself_and_is_refused_afterwards() {
    let t = TestApp::spawn().await;
    let ci = t.user("alice").roles(&[Role::GetJobStatus]).token().await;
    let other = t.alice().await;
    let (s, _) = t.get("/api/v1/tokens/self", &ci).await;
    assert_eq!(s, StatusCode::OK);

    let (s, b) = t.delete("/api/v1/tokens/self", &ci).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = t.get("/api/v1/tokens/self", &ci).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"]["message"], "the token was revoked");
    let (s, _) = t.delete("/api/v1/tokens/self", &ci).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a revoked token cannot act again"
    );

    // The user's other token is untouched and lists the revoked one as revoked.
    let (s, b) = t.get("/api/v1/tokens", &other).await;
    assert_eq!(s, StatusCode::OK);
    let revoked: Vec<_> = b["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["revokedAt"].is_string())
        .collect();
    assert_eq!(revoked.len(), 1, "{b}");
}

/// `POST /tokens` is for a logged-in session (`tokens_session`); a token gets 403 there and
/// no other route makes one.
#[tokio::test]
async fn no_route_makes_a_token() {
    let t = TestApp::spawn().await;
    let a = t.alice().await;
    let before = t.store.list_tokens(None).await.unwrap().len();
    let (s, _) = t
        .send(
            Method::POST,
            "/api/v1/tokens",
            &a,
            Some(serde_json::json!({"name": "x", "roles": ["GET_Job"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (m, p) in [
        (Method::PUT, "/api/v1/tokens"),
        (Method::POST, "/api/v1/tokens/self"),
        (Method::PUT, "/api/v1/tokens/self"),
    ] {
        let (s, _) = t
            .send(
                m.clone(),
                p,
                &a,
                Some(serde_json::json!({"name": "x", "roles": ["GET_Job"]})),
            )
            .await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
    }
    assert_eq!(t.store.list_tokens(None).await.unwrap().len(), before);
    // And the document says that only a session makes one.
    let spec: serde_json::Value = serde_json::from_str(&hpcsera_server::spec_json()).unwrap();
    let tokens = &spec["paths"]["/api/v1/tokens"];
    assert!(tokens["get"].is_object(), "{tokens}");
    assert_eq!(
        tokens["post"]["security"],
        serde_json::json!([{"session": []}]),
        "{tokens}"
    );
    let own = &spec["paths"]["/api/v1/tokens/self"];
    assert!(own["delete"].is_object() && own["post"].is_null(), "{own}");
}

/// A member's roles in a project bound what their tokens there can do, at once and both
/// ways: narrowing them takes the other roles from existing tokens, widening them gives them
/// back, and no token can be made with more.
#[tokio::test]
async fn a_members_roles_bound_their_tokens() {
    let t = TestApp::spawn().await;
    let alice = t.alice().await;
    t.submit(&alice, json!({"label": "a"})).await;

    t.store
        .set_member_roles("alice", "proj-a", RoleSet::from_iter([Role::GetJobStatus]))
        .await
        .unwrap();
    let (s, b) = t
        .post_job(
            &alice,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "c"}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, me) = t.get("/api/v1/tokens/self", &alice).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["roles"], json!(["GET_JobStatus"]), "{me}");
    let (s, _) = t.get("/api/v1/job/findJobsByStatus", &alice).await;
    assert_eq!(s, StatusCode::OK);

    // No new token with a role beyond the member's.
    let e = t
        .store
        .create_token(&hpcsera_store::NewToken {
            user: "alice",
            project: "proj-a",
            name: "more",
            roles: RoleSet::from_iter([Role::GetJobStatus, Role::PostJob]),
            site: None,
            expires_at: None,
        })
        .await
        .expect_err("beyond the member's roles");
    match e {
        hpcsera_store::StoreError::Invalid(f) => {
            assert_eq!(f[0].field, "roles");
            assert!(f[0].problem.contains("POST_Job"), "{}", f[0].problem);
        }
        other => panic!("expected invalid roles, got {other:?}"),
    }
    // Another project's membership is untouched.
    t.store.add_member("alice", "proj-b").await.unwrap();
    let in_b = t.user("alice").project("proj-b").token().await;
    let (_, me_b) = t.get("/api/v1/tokens/self", &in_b).await;
    assert_eq!(me_b["roles"].as_array().map(Vec::len), Some(8), "{me_b}");

    // Widened again: the old token can submit again.
    t.store
        .add_member_with_roles("alice", "proj-a", RoleSet::all())
        .await
        .unwrap();
    t.submit(&alice, json!({"label": "b"})).await;
    assert_eq!(
        t.store
            .set_member_roles("nobody", "proj-a", RoleSet::all())
            .await
            .map_err(|e| e.to_string()),
        Err("user not found".into())
    );
}
