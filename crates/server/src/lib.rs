//! hpcsera's API server: the REST API of DESIGN §4 over the [`hpcsera_store::Store`].
//!
//! [`Application`] binds a listener (port 0 in tests) and serves [`router`]. Handlers live
//! in `routes`; each checks its role through [`extract::Caller`] and passes the token's
//! project to the store, which scopes every query by it.

pub mod audit;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
mod routes;
pub mod serve;
pub mod webhooks;

use crate::audit::AuditSink;
use crate::error::REQUEST_ID;
use crate::extract::{AuditSlot, Peer, RefusalSlot};
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hpcsera_store::{AuditRecord, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

/// Settings of the server.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Largest accepted request body of the JSON API, in bytes.
    pub max_body_bytes: usize,
    /// Hosts a job's `callbackUrl` may point at: `host` (default port of the scheme),
    /// `host:port` or `host:*` (empty: none; see `webhooks::callback_allowed`).
    pub callback_allow_hosts: Vec<String>,
    /// How long an agent's lease on a job lasts after each poll or report.
    pub lease_seconds: u64,
    /// How long a fresh claim waits for the agent's confirmation before it is offered again.
    pub claim_lease_seconds: u64,
    /// Most bytes kept of each output stream of a job.
    pub max_output_bytes: usize,
    /// Largest result file.
    pub max_result_bytes: usize,
    /// Most result files per job.
    pub max_result_files: i64,
    /// How often leases are checked for expiry.
    pub reaper_interval: std::time::Duration,
    /// First wait before a failed webhook delivery is tried again (doubling each time).
    pub webhook_retry_base: std::time::Duration,
    /// Attempts of a webhook delivery before it is given up.
    pub webhook_max_attempts: u32,
    /// Requests per second allowed per token (twice that in a burst); 0: no limit.
    pub rate_limit_per_second: u32,
    /// Largest code bundle (tar.gz) accepted by `POST /code`, in bytes.
    pub max_code_bytes: u64,
    /// Where code bundle files live (content-addressed: `<code_dir>/ab/abcdef…`).
    pub code_dir: std::path::PathBuf,
    /// Failed authentications allowed per client address and minute (in bursts of as many)
    /// before they are answered 429; 0: no limit.
    pub auth_failures_per_minute: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (else the socket peer is).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Most open client connections (0: derived from the file limit, see
    /// `serve::default_max_connections`).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may stay idle.
    pub header_read_timeout: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            callback_allow_hosts: Vec::new(),
            lease_seconds: 300,
            claim_lease_seconds: 60,
            max_output_bytes: 64 * 1024 * 1024,
            max_result_bytes: 10 * 1024 * 1024,
            max_result_files: 1000,
            reaper_interval: std::time::Duration::from_secs(10),
            webhook_retry_base: std::time::Duration::from_secs(2),
            webhook_max_attempts: 8,
            rate_limit_per_second: 100,
            max_code_bytes: 50 * 1024 * 1024,
            code_dir: std::path::PathBuf::from("hpcsera-code"),
            auth_failures_per_minute: 60,
            trusted_proxies: Vec::new(),
            max_connections: 0,
            header_read_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("callback_allow_hosts", &self.callback_allow_hosts)
            .field("lease_seconds", &self.lease_seconds)
            .field("claim_lease_seconds", &self.claim_lease_seconds)
            .field("max_code_bytes", &self.max_code_bytes)
            .field("code_dir", &self.code_dir)
            .finish_non_exhaustive()
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
    /// Bumped whenever there may be new work for agents (a job queued, an operation
    /// requested); long-polling agents wait on it.
    pub work: Arc<tokio::sync::watch::Sender<u64>>,
    /// Bumped whenever a job event is written; clients waiting for events wait on it.
    pub events: Arc<tokio::sync::watch::Sender<u64>>,
    /// Bumped whenever output is appended or a status changes; output readers wait on it.
    pub output: Arc<tokio::sync::watch::Sender<u64>>,
    pub rate: Arc<ratelimit::RateLimiter>,
    /// Failed authentications per client address.
    pub auth_failures: Arc<ratelimit::RateLimiter>,
}

impl AppState {
    /// Wakes the agents that wait in a long poll.
    pub fn wake_agents(&self) {
        self.work.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes the clients that wait for job events.
    pub fn events_written(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
        self.output_written();
    }

    /// Wakes the clients that wait for output.
    pub fn output_written(&self) {
        self.output.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    routes::routes(&state.config)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .with_state(state)
}

/// Per request: makes the request id visible to error bodies, records metrics and the
/// audit log entry.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Labels from a fixed set: route templates, known methods (anything else is one label).
    let route =
        metrics::route_label(req.extensions().get::<MatchedPath>().map(|m| m.as_str())).to_string();
    let method_label = metrics::method_label(req.method());
    let method = hpcsera_api_types::cut_to_bytes(req.method().as_str(), 32).to_string();
    let path =
        hpcsera_api_types::cut_to_bytes(req.uri().path(), hpcsera_store::MAX_AUDIT_PATH_BYTES)
            .to_string();
    let peer = audit::peer_address(
        req.extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok()),
        &state.config.trusted_proxies,
    );
    req.extensions_mut().insert(Peer(peer.clone()));
    let refusal = RefusalSlot::default();
    req.extensions_mut().insert(refusal.clone());
    let rid = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = REQUEST_ID.scope(rid.clone(), next.run(req)).await;
    let status = resp.status().as_u16();
    state.metrics.observe(
        &route,
        method_label,
        status,
        started.elapsed().as_secs_f64(),
    );
    let who = slot.0.lock().ok().and_then(|mut s| s.take());
    let refused = refusal.0.lock().ok().and_then(|mut s| s.take());
    if let Some(reason) = refused {
        state
            .audit
            .auth_failure(hpcsera_store::now_ms(), reason, peer);
    } else if who.is_some() {
        state.audit.record(AuditRecord {
            at: hpcsera_store::now_ms(),
            token_id: who.as_ref().map(|t| t.token_id.clone()),
            user: who.as_ref().map(|t| t.user.clone()),
            project: who.as_ref().map(|t| t.project.clone()),
            method,
            path,
            status,
            request_id: Some(rid),
        });
    }
    resp
}

/// A bound, ready-to-serve server.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    audit_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Binds the listener and prepares the state.
    pub async fn build(config: ServerConfig, store: Store) -> std::io::Result<Application> {
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let metrics = Arc::new(Metrics::default());
        let (audit, audit_task) = AuditSink::start(store.clone(), metrics.clone());
        let (work, _) = tokio::sync::watch::channel(0u64);
        let rate = Arc::new(ratelimit::RateLimiter::new(config.rate_limit_per_second));
        let config_auth_failures = config.auth_failures_per_minute;
        let state = AppState {
            store,
            config: Arc::new(config),
            metrics,
            audit,
            work: Arc::new(work),
            events: Arc::new(tokio::sync::watch::channel(0u64).0),
            output: Arc::new(tokio::sync::watch::channel(0u64).0),
            rate,
            auth_failures: Arc::new(ratelimit::RateLimiter::per_minute(config_auth_failures)),
        };
        Ok(Application {
            listener,
            state,
            audit_task,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains the audit queue.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            state,
            audit_task,
        } = self;
        let reaper = tokio::spawn(reap_leases(state.clone()));
        let webhooks = tokio::spawn(webhooks::deliver_webhooks(state.clone()));
        let limits = serve::Limits {
            max_connections: match state.config.max_connections {
                0 => serve::default_max_connections(),
                n => n,
            },
            header_read_timeout: state.config.header_read_timeout,
        };
        tracing::debug!(max_connections = limits.max_connections, "serving");
        let app = router(state);
        serve::serve(listener, app, limits, shutdown).await;
        reaper.abort();
        webhooks.abort();
        let _ = reaper.await;
        let _ = webhooks.await;
        // The router (and with it the last audit sink) is gone: the writer flushes and ends.
        let _ = audit_task.await;
        Ok(())
    }
}

/// Ends expired leases now and then (see `Store::expire_leases`).
async fn reap_leases(state: AppState) {
    // After a start (an upgrade, an outage) agents need one lease period to come back and
    // renew; expiring the leases that ran out while the server was away would call their
    // running jobs lost.
    tokio::time::sleep(std::time::Duration::from_secs(state.config.lease_seconds)).await;
    let mut tick = tokio::time::interval(state.config.reaper_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store.expire_leases().await {
            Ok(expired) if !expired.is_empty() => {
                for e in &expired {
                    tracing::warn!(job = %e.job_id, to = %e.to, "lease expired");
                }
                state.events_written();
                if expired
                    .iter()
                    .any(|e| e.to == hpcsera_api_types::JobStatus::Queued)
                {
                    state.wake_agents();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %error::chain(&e), "lease reaper failed"),
        }
    }
}

/// Where the bytes of a code bundle live: `<code_dir>/ab/abcdef…` (content-addressed; the
/// admin commands delete files by the same rule).
pub fn code_file_path(code_dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    code_dir.join(id.get(..2).unwrap_or("_")).join(id)
}

/// `Location` of a job.
pub(crate) fn job_location(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{}/job/{id}", hpcsera_api_types::API_BASE))
        .unwrap_or_else(|_| HeaderValue::from_static("/"))
}
