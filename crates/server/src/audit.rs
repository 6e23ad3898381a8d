//! The audit writer: request handlers hand records to a bounded channel; one task writes
//! them in batches, so that auditing costs no database round trip on the request path.
//!
//! Failed authentications are not audited one by one (a flood of bad tokens would grow the
//! database without bound): the writer counts them per minute, reason and peer address and
//! adds the counts to `auth_failures`.

use crate::metrics::Metrics;
use hpcsera_store::{AuditRecord, AuthFailureCount, Store};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

const QUEUE: usize = 10_000;
const BATCH: usize = 500;

/// What the writer is handed.
#[derive(Debug)]
pub enum AuditEntry {
    /// A request that presented a valid token.
    Record(AuditRecord),
    /// A request whose token was refused.
    AuthFailure {
        at: i64,
        reason: &'static str,
        peer: String,
    },
}

impl AuditEntry {
    /// When it happened (Unix ms).
    fn at(&self) -> i64 {
        match self {
            AuditEntry::Record(r) => r.at,
            AuditEntry::AuthFailure { at, .. } => *at,
        }
    }
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
    metrics: Arc<Metrics>,
}

impl AuditSink {
    /// Starts the writer task. It ends, after writing what is queued, when every sink is dropped.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> (AuditSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(QUEUE);
        let writer_metrics = metrics.clone();
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut records = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let mut failures: HashMap<(i64, &'static str, String), i64> = HashMap::new();
                let oldest = batch.iter().map(AuditEntry::at).min().unwrap_or(0);
                for e in batch.drain(..) {
                    match e {
                        AuditEntry::Record(r) => records.push(r),
                        AuditEntry::AuthFailure { at, reason, peer } => {
                            *failures
                                .entry((at - at.rem_euclid(60_000), reason, peer))
                                .or_default() += 1;
                        }
                    }
                }
                match store.write_audit(&records).await {
                    Ok(()) => {
                        let n = records.len() as u64;
                        writer_metrics.audit_written.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::error!(error = %crate::error::chain(&e), n = records.len(), "could not write audit records");
                    }
                }
                let lag = (hpcsera_store::now_ms() - oldest).max(0);
                writer_metrics
                    .audit_lag_ms
                    .store(lag as u64, Ordering::Relaxed);
                records.clear();
                let counts: Vec<AuthFailureCount> = failures
                    .into_iter()
                    .map(|((minute, reason, peer), count)| AuthFailureCount {
                        minute,
                        reason: reason.to_string(),
                        peer,
                        count,
                    })
                    .collect();
                if let Err(e) = store.count_auth_failures(&counts).await {
                    tracing::error!(error = %crate::error::chain(&e), "could not count failed authentications");
                }
            }
        });
        (AuditSink { tx, metrics }, handle)
    }

    pub fn record(&self, r: AuditRecord) {
        self.send(AuditEntry::Record(r));
    }

    /// Records a step that no token's request shows (a change made in the web UI, a device
    /// login request, a token issued to a device): who did it if known, in which project, the
    /// token it concerns, and a path (cut to the audit's bound) with the status.
    pub fn action(
        &self,
        user: Option<&str>,
        project: Option<&str>,
        token_id: Option<&str>,
        path: &str,
        status: u16,
    ) {
        self.record(AuditRecord {
            at: hpcsera_store::now_ms(),
            token_id: token_id.map(str::to_string),
            user: user.map(str::to_string),
            project: project.map(str::to_string),
            method: "POST".into(),
            path: hpcsera_api_types::cut_to_bytes(path, hpcsera_store::MAX_AUDIT_PATH_BYTES)
                .to_string(),
            status,
            request_id: crate::error::REQUEST_ID.try_with(Clone::clone).ok(),
        });
    }

    /// Entries waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn auth_failure(&self, at: i64, reason: &'static str, peer: String) {
        self.send(AuditEntry::AuthFailure { at, reason, peer });
    }

    fn send(&self, e: AuditEntry) {
        if self.tx.try_send(e).is_err() {
            self.metrics.audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
