//! The token API from a page's own script, in Chromium: `fetch` with the session cookie and
//! the page's CSRF token in `X-CSRF-Token` makes, lists and revokes a token (the page's CSP
//! allows `connect-src 'self'`); without the header the change is refused.

use crate::harness::{Browser, Server, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Runs `fetch(path, {method, body})` in the page with the page's CSRF token when `csrf`;
/// the status and the JSON answer (null when none).
async fn fetch(b: &Browser, method: &str, path: &str, body: Value, csrf: bool) -> (u64, Value) {
    let script = "const [method, path, body, csrf, done] = arguments; \
        const headers = {'Content-Type': 'application/json'}; \
        if (csrf) headers['X-CSRF-Token'] = document.querySelector('input[name=csrf]').value; \
        fetch(path, {method, headers, credentials: 'same-origin', \
                     body: body === null ? undefined : JSON.stringify(body)}) \
          .then(async r => done([r.status, await r.text()]));";
    let out = b
        .client
        .execute_async(script, vec![json!(method), json!(path), body, json!(csrf)])
        .await
        .expect("fetch in the page");
    let status = out[0].as_u64().expect("a status");
    let text = out[1].as_str().unwrap_or("");
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_makes_lists_and_revokes_a_token_over_json_with_its_session() {
    let s = Server::start().await;
    let b = browser!("a_page_makes_lists_and_revokes_a_token_over_json_with_its_session");
    b.login(&s.base, "carol", PASSWORD).await;
    b.wait_for("/ui/projects", "Your projects").await;
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    b.wait_for("/ui/tokens", "csrf").await;
    let ask = json!({"name": "from a script", "project": "proj-a", "roles": ["GET_JobStatus"]});
    let (status, _) = fetch(&b, "POST", "/api/v1/tokens", ask.clone(), false).await;
    assert_eq!(status, 403, "no CSRF header: refused");
    let (status, made) = fetch(&b, "POST", "/api/v1/tokens", ask, true).await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().expect("the secret").to_string();
    let id = made["token"]["tokenId"].as_str().unwrap().to_string();
    assert_eq!(
        s.api_status("/api/v1/tokens/self", &secret).await,
        StatusCode::OK
    );
    let (status, list) = fetch(&b, "GET", "/api/v1/tokens", Value::Null, false).await;
    assert_eq!(status, 200);
    assert_eq!(list["tokens"][0]["name"], "from a script");
    // The tokens page lists it like any other.
    b.goto(&format!("{}/ui/tokens", s.base)).await;
    b.wait_for("/ui/tokens", "from a script").await;
    let path = format!("/api/v1/tokens/{id}");
    let (status, _) = fetch(&b, "DELETE", &path, Value::Null, true).await;
    assert_eq!(status, 204);
    assert_eq!(
        s.api_status("/api/v1/tokens/self", &secret).await,
        StatusCode::UNAUTHORIZED
    );
    b.close().await;
}
