//! The SDK's retry policy against a real HTTP server that misbehaves on purpose.

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hpcsera_client::{Client, ClientError, Retry};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves `/api/v1/tokens/self`: the first `fail` calls answer `status` (with `Retry-After`
/// when given), then a valid reply. Returns the base URL and the call counter.
async fn flaky(
    fail: u32,
    status: StatusCode,
    retry_after: Option<&'static str>,
) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/api/v1/tokens/self",
        get(move |headers: HeaderMap| {
            let c = c.clone();
            async move {
                assert_eq!(headers["authorization"], "Bearer hpcs_t");
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                if n <= fail {
                    let mut resp = (status, r#"{"error":{"code":"x","message":"try later"}}"#).into_response();
                    if let Some(ra) = retry_after {
                        resp.headers_mut().insert("retry-after", ra.parse().unwrap());
                    }
                    return resp;
                }
                (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    r#"{"tokenId":"t","name":"n","user":"u","project":"p","roles":["POST_Job"],"createdAt":"2026-01-01T00:00:00Z"}"#,
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

fn fast() -> Retry {
    Retry {
        attempts: 4,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let (url, calls) = flaky(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let c = Client::new(&url, "hpcs_t").unwrap().with_retry(fast());
    let me = c.whoami().await.unwrap();
    assert_eq!(me.user, "u");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let (url, calls) = flaky(1, StatusCode::TOO_MANY_REQUESTS, Some("1")).await;
    let c = Client::new(&url, "hpcs_t").unwrap().with_retry(fast());
    let started = Instant::now();
    c.whoami().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited as told"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn never_retries_other_4xx() {
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::UNAUTHORIZED,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::CONFLICT,
    ] {
        let (url, calls) = flaky(10, status, None).await;
        let c = Client::new(&url, "hpcs_t").unwrap().with_retry(fast());
        let err = c.whoami().await.unwrap_err();
        assert_eq!(err.status(), Some(status.as_u16()));
        assert_eq!(err.code(), Some("x"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn gives_up_after_the_last_attempt() {
    let (url, calls) = flaky(10, StatusCode::BAD_GATEWAY, None).await;
    let c = Client::new(&url, "hpcs_t").unwrap().with_retry(fast());
    assert_eq!(c.whoami().await.unwrap_err().status(), Some(502));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn connection_refused_is_a_clear_error() {
    // A socket that is bound but never listens: connections are refused, and the port stays
    // taken for the whole test (a dropped listener's port can be handed to another test's
    // server at once, which then answers this client).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let c = Client::new(&format!("http://{addr}"), "hpcs_t")
        .unwrap()
        .with_retry(fast());
    match c.whoami().await.unwrap_err() {
        ClientError::Connect { url, .. } => assert!(url.contains(&addr.to_string())),
        other => panic!("expected a connection error, got {other:?}"),
    }
}
