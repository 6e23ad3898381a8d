//! The audit writer: request handlers hand records to a bounded channel; one task writes
//! them in batches, so that auditing costs no database round trip on the request path.

use crate::metrics::Metrics;
use hpcsera_store::{AuditRecord, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

const QUEUE: usize = 10_000;
const BATCH: usize = 500;

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    metrics: Arc<Metrics>,
}

impl AuditSink {
    /// Starts the writer task. It ends, after writing what is queued, when every sink is dropped.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> (AuditSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AuditRecord>(QUEUE);
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                if let Err(e) = store.write_audit(&batch).await {
                    tracing::error!(error = %crate::error::chain(&e), n = batch.len(), "could not write audit records");
                }
                batch.clear();
            }
        });
        (AuditSink { tx, metrics }, handle)
    }

    pub fn record(&self, r: AuditRecord) {
        if self.tx.try_send(r).is_err() {
            self.metrics.audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
