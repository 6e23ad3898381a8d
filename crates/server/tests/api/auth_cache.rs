//! The verified-token cache (`hpcsera_store` `authcache.rs`): a change this server makes is
//! seen by the very next request; a change another process makes (the admin CLI, another
//! replica: here a second store handle on the same database) within `AUTH_RECHECK`.

use crate::common::*;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_store::{Store, AUTH_RECHECK};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// The id of a token, as it tells itself.
async fn id_of_token(t: &TestApp, token: &str) -> String {
    let (s, b) = t.get("/api/v1/tokens/self", token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["tokenId"].as_str().unwrap().to_string()
}

/// Sends GET `path` until it answers `want`; how long that took. Fails after 5 s.
async fn until_status(t: &TestApp, path: &str, token: &str, want: StatusCode) -> Duration {
    let started = Instant::now();
    loop {
        let (s, _) = t.get(path, token).await;
        if s == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} still answers {s}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Warms the cache: the token works, several times.
async fn use_a_few_times(t: &TestApp, token: &str) {
    for _ in 0..3 {
        assert_eq!(t.get("/api/v1/tokens/self", token).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_revocation_here_fails_the_next_request_even_when_cached() {
    let t = TestApp::spawn().await;
    let itself = t.alice().await;
    let by_admin = t.alice().await;
    let other = t.alice().await;
    for tok in [&itself, &by_admin, &other] {
        use_a_few_times(&t, tok).await;
    }
    // A token revokes itself through the API.
    let (s, b) = t.delete("/api/v1/tokens/self", &itself).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = t.get("/api/v1/tokens/self", &itself).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // The server's own store revokes another (as the web UI does).
    let id = id_of_token(&t, &by_admin).await;
    t.store.revoke_token(&id, None).await.unwrap();
    let (s, b) = t.get("/api/v1/tokens/self", &by_admin).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"]["message"], "the token was revoked");
    // The other token still works (a clear costs a lookup, not a refusal).
    assert_eq!(t.get("/api/v1/tokens/self", &other).await.0, StatusCode::OK);
}

#[tokio::test]
async fn narrowing_a_member_here_narrows_cached_tokens_at_once() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    use_a_few_times(&t, &tok).await;
    assert_eq!(
        t.get("/api/v1/job/findJobsByStatus", &tok).await.0,
        StatusCode::OK
    );
    let only: RoleSet = [Role::PostJob].into_iter().collect();
    t.store
        .set_member_roles("alice", "proj-a", only)
        .await
        .unwrap();
    let (s, b) = t.get("/api/v1/job/findJobsByStatus", &tok).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
}

#[tokio::test]
async fn a_revocation_by_another_process_is_seen_within_the_recheck() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    use_a_few_times(&t, &tok).await;
    let cli = Store::connect(&t.db_url).await.unwrap();
    let id = id_of_token(&t, &tok).await;
    cli.revoke_token(&id, None).await.unwrap();
    let took = until_status(&t, "/api/v1/tokens/self", &tok, StatusCode::UNAUTHORIZED).await;
    assert!(
        took <= AUTH_RECHECK + Duration::from_millis(500),
        "seen after {took:?}"
    );
    // It stays refused.
    tokio::time::sleep(AUTH_RECHECK).await;
    let (s, b) = t.get("/api/v1/tokens/self", &tok).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"]["message"], "the token was revoked");
}

#[tokio::test]
async fn a_membership_removed_by_another_process_ends_cached_tokens() {
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let bob = t.user("bob").project("proj-b").token().await;
    use_a_few_times(&t, &tok).await;
    use_a_few_times(&t, &bob).await;
    let cli = Store::connect(&t.db_url).await.unwrap();
    cli.remove_member("alice", "proj-a").await.unwrap();
    let took = until_status(&t, "/api/v1/tokens/self", &tok, StatusCode::UNAUTHORIZED).await;
    assert!(
        took <= AUTH_RECHECK + Duration::from_millis(500),
        "seen after {took:?}"
    );
    // Another member's token is not touched.
    assert_eq!(t.get("/api/v1/tokens/self", &bob).await.0, StatusCode::OK);
}
