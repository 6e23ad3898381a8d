//! What operators see: a real `/metrics` scrape that `promtool check metrics` (Debian package
//! `prometheus`) accepts with no complaint, with jobs by site and status, agents' last contact,
//! webhook deliveries and failures, the audit writer, the pool and build info, long polls
//! apart from request latency; the access log, one JSON line per request with the route
//! template, numbers as numbers and the token's id, never its secret; and forwarding headers
//! believed only from a trusted proxy.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `promtool check metrics` on `text`; (success, what it said).
fn promtool(text: &str) -> (bool, String) {
    crate::approvals::openssh::run_with_input(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
        "promtool (Debian package prometheus)",
    )
}

/// The value of the sample `series` (exact name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_real_scrape_passes_promtool_and_says_what_operators_need() {
    let t = TestApp::spawn_configured(|c| {
        c.webhooks.callback_allow_hosts = vec!["127.0.0.1:*".into()];
        c.webhooks.retry_base = Duration::from_millis(20);
        c.webhooks.max_attempts = 2;
    })
    .await;
    let tok = t.alice().await;
    let agent = t.agent_token().await;
    let first = t.submit(&tok, json!({"label": "a"})).await;
    t.submit(&tok, json!({"label": "b"})).await;
    // Both claimed; then a poll that waits, with nothing to claim.
    assert_eq!(t.claim(&agent, &id_of(&first)).await.len(), 2);
    let (s, b) = t
        .agent_poll(&agent, json!({"maxJobs": 10, "waitSeconds": 1}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["jobs"], json!([]));
    t.submit(&tok, json!({"label": "c"})).await;
    t.submit(&tok, json!({"label": "d"})).await;
    // A callback to a closed port: two failed attempts, then given up.
    let (s, b) = t
        .post_job(
            &tok,
            json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "w"},
                   "callbackUrl": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let mut text = String::new();
    for _ in 0..200 {
        text = t.metrics().await;
        if sample(&text, "hpcsera_webhook_deliveries{status=\"failed\"}") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (ok, said) = promtool(&text);
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");

    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series}:\n{text}"));
    assert_eq!(
        v(&format!(
            "hpcsera_jobs{{site=\"{SITE}\",status=\"queued\"}}"
        )),
        3.0
    );
    assert_eq!(
        v(&format!(
            "hpcsera_jobs{{site=\"{SITE}\",status=\"dispatched\"}}"
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            "hpcsera_jobs{{site=\"{SITE}\",status=\"failed\"}}"
        )),
        0.0
    );
    let age = v(&format!(
        "hpcsera_agent_last_seen_age_seconds{{site=\"{SITE}\"}}"
    ));
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(v("hpcsera_webhook_deliveries{status=\"failed\"}"), 1.0);
    assert!(v("hpcsera_webhook_attempts_total{outcome=\"failed\"}") >= 2.0);
    assert_eq!(v("hpcsera_webhook_deliveries{status=\"pending\"}"), 0.0);
    assert_eq!(v("hpcsera_database_up"), 1.0);
    assert!(v("hpcsera_db_pool_max_connections") >= 1.0);
    assert!(text.contains(&format!(
        "hpcsera_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // The agent's waiting poll is a long poll, not request latency.
    let poll = "route=\"/api/v1/agent/poll\",method=\"POST\"";
    assert!(
        v(&format!(
            "hpcsera_http_long_poll_duration_seconds_count{{{poll}}}"
        )) >= 1.0
    );
    assert!(
        v(&format!(
            "hpcsera_http_long_poll_duration_seconds_bucket{{{poll},le=\"0.25\"}}"
        )) < 1.0
    );
    // The claim's poll did not wait (`waitSeconds: 0`): it is request latency.
    assert!(
        v(&format!(
            "hpcsera_http_request_duration_seconds_count{{{poll}}}"
        )) >= 1.0
    );
    assert!(v("hpcsera_audit_records_written_total") >= 1.0, "{text}");
}

/// A `Write` into a shared buffer, for the log.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The access log of every test of this binary, as JSON lines: a process-wide subscriber
/// (installed once; scoped ones miss events when other tests' threads register the same
/// call sites first).
fn access_log() -> &'static Buffer {
    static LOG: std::sync::OnceLock<Buffer> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("hpcsera::access=info")
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        buf
    })
}

/// Sends a request with the request id `rid` (so its log line can be found among other tests').
async fn traced(
    t: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    rid: &str,
    body: Option<Value>,
) -> reqwest::StatusCode {
    let mut rb = t
        .http
        .request(method, format!("{}{path}", t.base))
        .bearer_auth(token)
        .header("x-request-id", rid);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap().status()
}

#[tokio::test]
async fn the_access_log_has_one_json_line_per_request_without_secrets() {
    let log = access_log();
    let t = TestApp::spawn().await;
    let tok = t.alice().await;
    let run = uuid::Uuid::new_v4().to_string();
    let rid = |what: &str| format!("{run}-{what}");
    let body = json!({"site": SITE, "jobType": JOB_TYPE, "parameters": {"label": "log"}});
    let s = traced(
        &t,
        Method::POST,
        "/api/v1/job",
        &tok,
        &rid("submit"),
        Some(body),
    )
    .await;
    assert_eq!(s, 201);
    let secret = t.store.create_invite("alice", 60_000).await.unwrap();
    let path = format!("/ui/invite/{secret}");
    traced(&t, Method::GET, &path, "", &rid("invite"), None).await;
    let s = traced(
        &t,
        Method::GET,
        "/api/v1/job/findJobsByStatus",
        "hpcs_not_a_token",
        &rid("refused"),
        None,
    )
    .await;
    assert_eq!(s, 401);

    // The lines are written when each answer is complete: wait for the last.
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|l: &Value| {
                l["fields"]["request_id"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&run))
            })
            .collect();
        if lines.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = serde_json::to_string(&lines).unwrap();
    assert_eq!(lines.len(), 3, "one line per request: {text}");
    assert!(lines.iter().all(|l| l["target"] == "hpcsera::access"));
    let line = |what: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["request_id"] == rid(what))
            .map(|l| l["fields"].clone())
            .unwrap_or_else(|| panic!("no {what} line: {text}"))
    };
    let f = line("submit");
    assert_eq!(f["route"], "/api/v1/job");
    assert_eq!(f["method"], "POST");
    assert_eq!(f["status"], 201, "a number: {f}");
    assert!(f["duration_ms"].is_f64(), "{f}");
    assert_eq!(f["long_poll"], false);
    let (_, me) = t.get("/api/v1/tokens/self", &tok).await;
    assert_eq!(f["token"], me["tokenId"], "the token's id: {f}");
    let f = line("invite");
    assert_eq!(
        f["route"], "/ui/invite/{secret}",
        "the template, not the path"
    );
    assert!(f["token"].is_null());
    let f = line("refused");
    assert_eq!(f["status"], 401);
    assert_eq!(f["route"], "/api/v1/job/findJobsByStatus");
    assert!(!text.contains(&tok) && !text.contains(&secret) && !text.contains("hpcs_not_a_token"));
}

/// The URLs the server makes follow a trusted proxy's `X-Forwarded-Proto`/`-Host`, and only a
/// trusted proxy's.
#[tokio::test]
async fn forwarded_scheme_and_host_count_only_from_a_trusted_proxy() {
    async fn token_endpoint(t: &TestApp) -> String {
        let r = t
            .http
            .get(format!("{}/.well-known/oauth-authorization-server", t.base))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "hpc.example.org")
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["token_endpoint"].as_str().unwrap().to_string()
    }
    let behind = TestApp::spawn_configured(|c| {
        c.connections.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    assert_eq!(
        token_endpoint(&behind).await,
        "https://hpc.example.org/oauth/token"
    );
    let direct = TestApp::spawn_configured(|c| {
        c.connections.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let url = token_endpoint(&direct).await;
    assert_eq!(
        url,
        format!("{}/oauth/token", direct.base),
        "headers of an untrusted peer are ignored"
    );
}
