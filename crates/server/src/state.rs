//! What every handler can reach: the store, the settings, metrics, the audit sink, the
//! rate limiters and the wake-up channels of the long polls.
//!
//! Shared, cheap to clone, and without logic of its own beyond the wake-ups; it must never
//! hold a request's data.

use crate::audit::AuditSink;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use hpcsera_store::Store;
use std::sync::Arc;

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
    /// Bumped whenever a webhook may have been queued (a status event of a job that may have
    /// a callback URL); the webhook deliverer waits on it.
    pub webhooks: Arc<tokio::sync::watch::Sender<u64>>,
    /// Bumped whenever output is appended or a status changes; output readers wait on it.
    pub output: Arc<tokio::sync::watch::Sender<u64>>,
    pub rate: Arc<RateLimiter>,
    /// Failed authentications per client address.
    pub auth_failures: Arc<RateLimiter>,
    /// Web UI login attempts per account name, and per client address.
    pub login_accounts: Arc<RateLimiter>,
    pub login_peers: Arc<RateLimiter>,
    /// New device login requests per client address (`routes/oauth`).
    pub device_requests: Arc<RateLimiter>,
    /// User codes tried on the verification page per client address, and by everyone (one
    /// bucket, key `""`).
    pub user_code_peers: Arc<RateLimiter>,
    pub user_code_all: Arc<RateLimiter>,
}

impl AppState {
    /// Wakes the agents that wait in a long poll, on this server and (PostgreSQL: NOTIFY,
    /// see `Store::announce_work`) on the other replicas of the database.
    pub fn wake_agents(&self) {
        self.wake_local_agents();
        self.store.announce_work();
    }

    /// Wakes the agents that wait in a long poll on this server only (what another
    /// replica's announcement does here).
    pub fn wake_local_agents(&self) {
        self.work.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes the clients that wait for job events, and the webhook deliverer.
    pub fn events_written(&self) {
        self.wake_event_readers(true);
    }

    /// Wakes the clients that wait for job events after a submission; the webhook deliverer
    /// only when the new job has a callback URL (else nothing was queued for it: without
    /// this, every submission made it read the outbox twice).
    pub fn job_created(&self, has_callback: bool) {
        self.wake_event_readers(has_callback);
    }

    fn wake_event_readers(&self, webhooks: bool) {
        if webhooks {
            self.webhooks.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.events.send_modify(|n| *n = n.wrapping_add(1));
        self.output_written();
    }

    /// Wakes the clients that wait for output.
    pub fn output_written(&self) {
        self.output.send_modify(|n| *n = n.wrapping_add(1));
    }
}
