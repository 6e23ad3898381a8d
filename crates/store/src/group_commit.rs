//! Group commit of concurrent submissions: `create_job` hands its insert to one writer task,
//! which puts every submission waiting at that moment (up to [`MAX_BATCH`]) into ONE
//! transaction. A submission is answered only after its transaction committed, so
//! "acknowledged" still means "survives kill -9": nothing is acknowledged early.
//!
//! Why: each job's transaction serialises on the database's write lock (SQLite) or the
//! event-order advisory lock (PostgreSQL) until its commit, which on PostgreSQL waits for the
//! WAL flush. One commit (and one flush) for many jobs is what makes submissions scale with
//! concurrency. The batch is written with one multi-row statement per table
//! (`Store::insert_jobs_in_tx`: the jobs, their events, and their idempotency keys, code
//! references and webhook outbox rows when any has them), so 64 submissions cost a handful of
//! statements, not two or more each: on SQLite each statement is a hand-off to the
//! connection's thread, on PostgreSQL a round trip made while holding the event-order lock.
//!
//! A batch is all or nothing: when any insert in it fails (an idempotency key raced, a code
//! bundle refused), the batch is rolled back and each submission is tried again on its own, so
//! every caller gets its own answer, exactly as without grouping. A failed commit is answered
//! as an error to the whole batch (nothing is retried after a commit attempt).

use crate::jobs::JobNames;
use crate::{corrupt, NewJobRecord, Result, Store};
use hpcsera_api_types::{Job, Resources};
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Most submissions in one transaction.
pub const MAX_BATCH: usize = 64;
/// Submissions waiting for the writer; past this, submitters wait (back-pressure).
const QUEUE: usize = 1024;

/// A [`NewJobRecord`] that owns its values, to cross to the writer task.
struct OwnedJob {
    project_id: i64,
    owner_id: i64,
    site_id: i64,
    job_type: String,
    parameters: Map<String, Value>,
    resources: Resources,
    metadata: Option<Value>,
    callback_url: Option<String>,
    idempotency: Option<(String, String)>,
    actor: String,
    code_refs: Vec<crate::CodeRef>,
    names: Arc<JobNames>,
}

impl OwnedJob {
    fn from_record(n: &NewJobRecord<'_>, names: Arc<JobNames>) -> OwnedJob {
        OwnedJob {
            project_id: n.project_id,
            owner_id: n.owner_id,
            site_id: n.site_id,
            job_type: n.job_type.to_string(),
            parameters: n.parameters.clone(),
            resources: n.resources.clone(),
            metadata: n.metadata.cloned(),
            callback_url: n.callback_url.map(str::to_string),
            idempotency: n
                .idempotency
                .as_ref()
                .map(|(k, h)| (k.to_string(), h.clone())),
            actor: n.actor.to_string(),
            code_refs: n.code_refs.to_vec(),
            names,
        }
    }

    fn record(&self) -> NewJobRecord<'_> {
        NewJobRecord {
            project_id: self.project_id,
            owner_id: self.owner_id,
            site_id: self.site_id,
            job_type: &self.job_type,
            parameters: &self.parameters,
            resources: &self.resources,
            metadata: self.metadata.as_ref(),
            callback_url: self.callback_url.as_deref(),
            idempotency: self
                .idempotency
                .as_ref()
                .map(|(k, h)| (k.as_str(), h.clone())),
            actor: &self.actor,
            code_refs: &self.code_refs,
        }
    }
}

type Request = (OwnedJob, oneshot::Sender<Result<Job>>);

/// The writer's queue, started with the first submission (in the runtime that made it).
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: OnceLock<mpsc::Sender<Request>>,
    /// The most submissions one transaction held (tests check that batches formed).
    #[cfg(test)]
    pub(crate) largest_batch: std::sync::atomic::AtomicUsize,
}

impl Store {
    /// Inserts a job through the group-commit writer; answers after the commit.
    pub(crate) async fn insert_job_grouped(
        &self,
        new: &NewJobRecord<'_>,
        names: Arc<JobNames>,
    ) -> Result<Job> {
        let queue = self.group_commit.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(writer(self.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        if queue
            .send((OwnedJob::from_record(new, Arc::clone(&names)), reply))
            .await
            .is_err()
        {
            // The writer's runtime has ended (a store used from a later runtime): the job
            // never reached it, so insert it here.
            return self.insert_job(new, &names).await;
        }
        answer
            .await
            .map_err(|_| corrupt("the submission writer stopped before answering"))?
    }
}

/// Takes every waiting submission (up to [`MAX_BATCH`]) into one transaction (a handful of
/// multi-row statements, `Store::insert_jobs_in_tx`), answers each.
async fn writer(store: Store, mut rx: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        #[cfg(test)]
        store
            .group_commit
            .largest_batch
            .fetch_max(batch.len(), std::sync::atomic::Ordering::Relaxed);
        let records: Vec<_> = batch
            .iter()
            .map(|(job, _)| (job.record(), &*job.names))
            .collect();
        let result = store.insert_jobs(&records).await;
        drop(records);
        match result {
            Ok(jobs) => {
                for ((_, reply), job) in batch.drain(..).zip(jobs) {
                    let _ = reply.send(Ok(job));
                }
            }
            // One submission: its own answer, whatever failed.
            Err((e, _)) if batch.len() == 1 => {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err((e, true)) => {
                tracing::error!(error = %e, n = batch.len(), "a group commit failed");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(corrupt("the commit of this submission failed")));
                }
            }
            // Rolled back: each on its own, for its own answer.
            Err((_, false)) => {
                for (job, reply) in batch.drain(..) {
                    let _ = reply.send(store.insert_job(&job.record(), &job.names).await);
                }
            }
        }
    }
}
