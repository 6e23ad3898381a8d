//! The token API the web UI uses: a logged-in session (cookie + `X-CSRF-Token`) lists, makes
//! and revokes its own tokens over JSON; a token lists its user's tokens in its project and
//! revokes itself only; a token never makes a token.

use crate::common::*;
use crate::ui::{people, Browser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A JSON request with the browser's cookie and, when given, the CSRF header.
async fn with_session(
    t: &TestApp,
    b: &Browser<'_>,
    method: Method,
    path: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = t
        .http
        .request(method, format!("{}{path}", t.base))
        .header("cookie", b.cookie_header());
    if let Some(c) = csrf {
        rb = rb.header("x-csrf-token", c);
    }
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    let r = rb.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_session_makes_lists_and_revokes_its_own_tokens_over_json() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let mut b = Browser::logged_in(&t, "carol").await;
    let csrf = b.csrf().await;
    let ask = json!({"name": "ci", "project": "proj-a", "roles": ["GET_JobStatus", "POST_Job"], "expiresInDays": 3});
    // Without the CSRF header, or with a wrong one: refused, nothing made.
    for bad in [None, Some("forged")] {
        let (s, body) = with_session(
            &t,
            &b,
            Method::POST,
            "/api/v1/tokens",
            bad,
            Some(ask.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    }
    assert!(t.store.list_tokens(Some("carol")).await.unwrap().is_empty());
    let (s, made) = with_session(
        &t,
        &b,
        Method::POST,
        "/api/v1/tokens",
        Some(&csrf),
        Some(ask),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_string();
    let id = made["token"]["tokenId"].as_str().unwrap().to_string();
    assert_eq!(made["token"]["roles"], json!(["GET_JobStatus", "POST_Job"]));
    let (s, me) = t.get("/api/v1/tokens/self", &secret).await;
    assert_eq!((s, me["user"].as_str()), (StatusCode::OK, Some("carol")));
    // Listed for the session (every project of carol's), never with a secret.
    let (s, list) = with_session(&t, &b, Method::GET, "/api/v1/tokens", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["tokens"][0]["tokenId"], id.as_str());
    assert!(!list.to_string().contains(&secret));
    // Problems name their fields.
    let (s, body) = with_session(
        &t,
        &b,
        Method::POST,
        "/api/v1/tokens",
        Some(&csrf),
        Some(json!({"name": "", "project": "proj-b", "roles": [], "expiresInDays": 100000})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&body), ["name", "roles", "expiresInDays", "project"]);
    // Revoked with the session: the secret stops working.
    let path = format!("/api/v1/tokens/{id}");
    assert_eq!(
        with_session(&t, &b, Method::DELETE, &path, None, None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with_session(&t, &b, Method::DELETE, &path, Some(&csrf), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.get("/api/v1/tokens/self", &secret).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Another person's session cannot revoke carol's tokens (404, and it still works).
    let other = t.user("carol").project("proj-a").token().await;
    let other_id = t.get("/api/v1/tokens/self", &other).await.1["tokenId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut d = Browser::logged_in(&t, "dave").await;
    let dave_csrf = d.csrf().await;
    let (s, _) = with_session(
        &t,
        &d,
        Method::DELETE,
        &format!("/api/v1/tokens/{other_id}"),
        Some(&dave_csrf),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(t.get("/api/v1/tokens/self", &other).await.0, StatusCode::OK);
    let (_, list) = with_session(&t, &d, Method::GET, "/api/v1/tokens", None, None).await;
    assert_eq!(list["tokens"], json!([]));
}

#[tokio::test]
async fn a_token_never_makes_a_token_and_revokes_only_itself() {
    let t = TestApp::spawn().await;
    people(&t).await;
    let alice = t.alice().await;
    let ask = json!({"name": "minted", "project": "proj-a", "roles": ["GET_JobStatus"]});
    let (s, body) = t
        .send(Method::POST, "/api/v1/tokens", &alice, Some(ask.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(t
        .store
        .list_tokens(Some("alice"))
        .await
        .unwrap()
        .iter()
        .all(|r| r.name != "minted"));
    // Nor with a session's cookie alongside: the bearer token decides.
    let b = Browser::logged_in(&t, "carol").await;
    let r = t
        .http
        .post(format!("{}/api/v1/tokens", t.base))
        .bearer_auth(&alice)
        .header("cookie", b.cookie_header())
        .json(&ask)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Without anything: 401.
    let r = t
        .http
        .post(format!("{}/api/v1/tokens", t.base))
        .json(&ask)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token revokes another of its user's tokens: 403; itself: 204.
    let second = t.alice().await;
    let second_id = t.get("/api/v1/tokens/self", &second).await.1["tokenId"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = t
        .delete(&format!("/api/v1/tokens/{second_id}"), &alice)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        t.get("/api/v1/tokens/self", &second).await.0,
        StatusCode::OK
    );
    let (s, _) = t
        .delete(&format!("/api/v1/tokens/{second_id}"), &second)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        t.get("/api/v1/tokens/self", &second).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The token list of a token: its user's, in its project only.
    let (s, list) = t.get("/api/v1/tokens", &alice).await;
    assert_eq!(s, StatusCode::OK);
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["user"] == "alice" && t["project"] == "proj-a"));
}
