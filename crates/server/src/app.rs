//! The running server: [`Application`] binds the listener and serves the router with its
//! layers (request id, tracing, metrics and audit per request) and the background tasks
//! (lease reaper, webhook delivery).
//!
//! It owns the process-level wiring only; it must never answer a request itself (handlers in
//! `routes` do) nor write to the store except through the tasks it starts.

use crate::audit::AuditSink;
use crate::config::ServerConfig;
use crate::error::{self, REQUEST_ID};
use crate::extract::{AuditSlot, Peer, RefusalSlot};
use crate::forwarded::TlsConnection;
use crate::metrics::{self, Metrics};
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use crate::tls::Tls;
use crate::{routes, serve, webhooks};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderName;
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

/// The whole HTTP application.
///
/// The layers, outermost first, are one stack: each `Router::layer` call wraps every route
/// once more, and each wrap boxes its future (with a copy of the request's slot) per
/// request, which a long poll keeps for its whole wait.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let layers = tower::ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe));
    routes::router(&state.config.limits)
        .merge(crate::ui::router())
        .layer(layers)
        .with_state(state)
}

/// The tracing span of a request names its route template, never the path itself: paths can
/// carry secrets (an invitation link `/ui/invite/{secret}`).
fn request_span(req: &Request) -> tracing::Span {
    let route = metrics::route_label(req.extensions().get::<MatchedPath>().map(|m| m.as_str()));
    tracing::debug_span!("request", method = %req.method(), route = %route)
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
    let peer = Peer::of(
        req.extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        req.extensions().get::<TlsConnection>().is_some(),
        req.headers(),
        &state.config.connections.trusted_proxies,
    );
    let peer_address = peer.address.clone();
    req.extensions_mut().insert(peer);
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
    let (resp, long_poll) =
        metrics::scope_request(REQUEST_ID.scope(rid.clone(), next.run(req))).await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe(
        &route,
        method_label,
        status,
        elapsed.as_secs_f64(),
        long_poll,
    );
    let who = slot.0.lock().ok().and_then(|mut s| s.take());
    access_log(&AccessLine {
        method: &method,
        route: &route,
        status,
        elapsed,
        request_id: &rid,
        token_id: who.as_ref().map(|t| t.token_id.as_str()),
        peer: &peer_address,
        long_poll,
    });
    let refused = refusal.0.lock().ok().and_then(|mut s| s.take());
    if let Some(reason) = refused {
        state
            .audit
            .auth_failure(hpcsera_store::now_ms(), reason, peer_address);
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

/// What the access log says about one request.
struct AccessLine<'a> {
    method: &'a str,
    route: &'a str,
    status: u16,
    elapsed: std::time::Duration,
    request_id: &'a str,
    token_id: Option<&'a str>,
    peer: &'a str,
    long_poll: bool,
}

/// One line per request (target `hpcsera::access`, level info): method, the matched route
/// template (never the raw path, which can hold a secret), status, duration in ms (a number),
/// request id, the token's id (never its secret), the client's address, and whether it was a
/// long poll. `HPCSERA_LOG=info,hpcsera::access=off` silences it.
fn access_log(a: &AccessLine<'_>) {
    let duration_ms = (a.elapsed.as_secs_f64() * 1e6).round() / 1e3;
    tracing::info!(
        target: "hpcsera::access",
        method = a.method,
        route = a.route,
        status = a.status,
        duration_ms,
        request_id = a.request_id,
        token = a.token_id,
        peer = a.peer,
        long_poll = a.long_poll,
        "request"
    );
}

/// A bound, ready-to-serve server.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    audit_task: tokio::task::JoinHandle<()>,
    /// The server's own TLS (`--tls-cert`), reloaded on SIGHUP.
    tls: Option<Arc<Tls>>,
}

impl Application {
    /// Binds the listener and prepares the state.
    pub async fn build(config: ServerConfig, store: Store) -> std::io::Result<Application> {
        let tls = match (&config.tls.tls_cert, &config.tls.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                Tls::load(cert, key).map_err(std::io::Error::other)?,
            )),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let metrics = Arc::new(Metrics::default());
        let (audit, audit_task) = AuditSink::start(store.clone(), metrics.clone());
        let (work, _) = tokio::sync::watch::channel(0u64);
        let rate = Arc::new(RateLimiter::new(config.rate_limits.rate_limit_per_second));
        let config_auth_failures = config.rate_limits.auth_failures_per_minute;
        let logins = config.ui.login_attempts_per_minute;
        let device = config.device.clone();
        let state = AppState {
            store,
            config: Arc::new(config),
            metrics,
            audit,
            work: Arc::new(work),
            events: Arc::new(tokio::sync::watch::channel(0u64).0),
            webhooks: Arc::new(tokio::sync::watch::channel(0u64).0),
            output: Arc::new(tokio::sync::watch::channel(0u64).0),
            rate,
            auth_failures: Arc::new(RateLimiter::per_minute(config_auth_failures)),
            login_accounts: Arc::new(RateLimiter::per_minute(logins)),
            login_peers: Arc::new(RateLimiter::per_minute(logins)),
            device_requests: Arc::new(RateLimiter::per_minute(device.device_requests_per_minute)),
            user_code_peers: Arc::new(RateLimiter::per_minute(
                device.user_code_attempts_per_minute,
            )),
            user_code_all: Arc::new(RateLimiter::per_minute(
                device.user_code_attempts_total_per_minute,
            )),
        };
        Ok(Application {
            listener,
            state,
            audit_task,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the server speaks HTTPS itself.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
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
            tls,
        } = self;
        // Work queued on another replica of the database wakes this server's agents
        // (PostgreSQL LISTEN/NOTIFY); without it they see it at their next re-check.
        let woken = state.clone();
        let work_listener = match state
            .store
            .listen_for_work(move || woken.wake_local_agents())
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %error::chain(&e),
                    "cannot listen for work from other replicas; agents see it at the long polls' re-check");
                None
            }
        };
        let reaper = tokio::spawn(reap_leases(state.clone()));
        let webhooks = tokio::spawn(webhooks::deliver_webhooks(state.clone()));
        let reload = tls
            .clone()
            .map(|t| tokio::spawn(crate::tls::reload_on_hangup(t)));
        let limits = serve::Limits {
            max_connections: match state.config.connections.max_connections {
                0 => serve::default_max_connections(),
                n => n,
            },
            header_read_timeout: state.config.connections.header_read_timeout,
        };
        tracing::debug!(max_connections = limits.max_connections, "serving");
        let app = router(state);
        serve::serve(listener, app, limits, tls, shutdown).await;
        if let Some(r) = reload {
            r.abort();
        }
        reaper.abort();
        webhooks.abort();
        if let Some(l) = work_listener {
            l.abort();
        }
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
    // running jobs lost. Unconfirmed claims are different: nothing ran, so they go back to
    // the queue from the start (else a job claimed by an agent that died before confirming
    // would wait a whole lease period after every server start).
    let grace_end = tokio::time::Instant::now()
        + std::time::Duration::from_secs(state.config.leases.lease_seconds);
    let mut tick = tokio::time::interval(state.config.leases.reaper_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reaped = if tokio::time::Instant::now() < grace_end {
            state.store.expire_unconfirmed_claims().await
        } else {
            state.store.expire_leases().await
        };
        match reaped {
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
