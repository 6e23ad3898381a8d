//! The one place where a job's status changes.
//!
//! **Invariant:** every status write goes through [`Store::transition`], which asks the job
//! state machine (`JobStatus::can_transition_to`), writes the row and appends the status event
//! (which queues the webhook) in the caller's transaction, on a row the caller locked. A change
//! the state machine refuses is a conflict and writes nothing. `git grep "SET status"` in this
//! crate finds this file (and the code bundles' own status, which is not a job's).

use crate::{now_ms, Result, Store, StoreError};
use hpcsera_api_types::{EventKind, JobStatus};
use sqlx::Any;
use std::sync::LazyLock;

/// A status as an SQL literal (`'queued'`). Status names are fixed identifiers, never input.
pub(crate) fn sql_status(s: JobStatus) -> String {
    format!("'{}'", s.as_str())
}

/// The statuses for which `pred` holds, as an SQL list (`('a', 'b')`), made from the state
/// machine so that no query carries a hand-written copy.
fn sql_statuses(pred: fn(JobStatus) -> bool) -> String {
    let names: Vec<String> = JobStatus::ALL
        .into_iter()
        .filter(|s| pred(*s))
        .map(sql_status)
        .collect();
    format!("({})", names.join(", "))
}

/// Statuses in which an agent holds a job.
pub(crate) static WITH_AGENT: LazyLock<String> =
    LazyLock::new(|| sql_statuses(JobStatus::is_with_agent));
/// Statuses in which a job has ended.
pub(crate) static TERMINAL: LazyLock<String> =
    LazyLock::new(|| sql_statuses(JobStatus::is_terminal));

/// A job row that a write transaction has locked (`FOR UPDATE` on PostgreSQL; the write lock
/// on SQLite), with the status it had when locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockedJob {
    pub seq: i64,
    pub project_id: i64,
    pub status: JobStatus,
}

impl Store {
    /// Moves a locked job from its status to `to`, as `actor`, with `message` (recorded on the
    /// event and, when given, as the job's message). A terminal status also sets the finish
    /// time and ends the lease and any pending operation. Returns the job as locked with its
    /// new status.
    pub(crate) async fn transition(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        job: &LockedJob,
        to: JobStatus,
        actor: &str,
        message: Option<&str>,
    ) -> Result<LockedJob> {
        let from = job.status;
        if !from.can_transition_to(to) {
            return Err(StoreError::Conflict(format!(
                "a job cannot go from {from} to {to}"
            )));
        }
        let now = now_ms();
        let terminal = i64::from(to.is_terminal());
        sqlx::query(
            "UPDATE jobs SET status = $1, updated_at = $2, message = COALESCE($3, message), \
             finished_at = CASE WHEN $4 = 1 THEN $2 ELSE finished_at END, \
             lease_until = CASE WHEN $4 = 1 THEN NULL ELSE lease_until END, \
             pending_op = CASE WHEN $4 = 1 THEN NULL ELSE pending_op END, \
             pending_op_at = CASE WHEN $4 = 1 THEN NULL ELSE pending_op_at END, \
             pending_op_by = CASE WHEN $4 = 1 THEN NULL ELSE pending_op_by END WHERE seq = $5",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(message)
        .bind(terminal)
        .bind(job.seq)
        .execute(&mut **tx)
        .await?;
        self.add_event(
            tx,
            job.seq,
            job.project_id,
            EventKind::Status,
            Some(from),
            Some(to),
            actor,
            message,
        )
        .await?;
        Ok(LockedJob { status: to, ..*job })
    }
}

impl Store {
    /// [`Store::transition`] for many locked jobs of one project at once (a whole sweep):
    /// every change is asked of the state machine first (a refused one is a conflict and
    /// nothing is written), then the rows are updated and their status events appended in
    /// chunks, in the caller's transaction.
    pub(crate) async fn transition_many(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        jobs: &[LockedJob],
        to: JobStatus,
        actor: &str,
        message: Option<&str>,
    ) -> Result<()> {
        if let Some(j) = jobs.iter().find(|j| !j.status.can_transition_to(to)) {
            return Err(StoreError::Conflict(format!(
                "a job cannot go from {} to {to}",
                j.status
            )));
        }
        let now = now_ms();
        let terminal = i64::from(to.is_terminal());
        for chunk in jobs.chunks(crate::util::CHUNK) {
            let sql = format!(
                "UPDATE jobs SET status = $1, updated_at = $2, message = COALESCE($3, message), \
                 finished_at = CASE WHEN $4 = 1 THEN $2 ELSE finished_at END, \
                 lease_until = CASE WHEN $4 = 1 THEN NULL ELSE lease_until END, \
                 pending_op = CASE WHEN $4 = 1 THEN NULL ELSE pending_op END, \
                 pending_op_at = CASE WHEN $4 = 1 THEN NULL ELSE pending_op_at END, \
                 pending_op_by = CASE WHEN $4 = 1 THEN NULL ELSE pending_op_by END WHERE seq IN ({})",
                crate::util::in_list(chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql)
                .bind(to.as_str())
                .bind(now)
                .bind(message)
                .bind(terminal);
            for j in chunk {
                q = q.bind(j.seq);
            }
            q.execute(&mut **tx).await?;
        }
        let events: Vec<_> = jobs
            .iter()
            .map(|j| (j.seq, Some(j.status), Some(to)))
            .collect();
        self.add_events_bulk(tx, project_id, &events, EventKind::Status, actor, message)
            .await
    }
}
