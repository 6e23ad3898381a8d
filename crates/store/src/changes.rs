//! Changes to a job after its submission: the holding agent's reports, a client's change of a
//! job that has not started, operations (cancel, hold, release) and deletion. Every status
//! change goes through `Store::transition`; every row is locked before it is decided on.

use crate::transition::LockedJob;
use crate::{corrupt, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{
    EventKind, GrantedResources, Job, JobStatus, Operation, Resources, SubJobState,
};
use serde_json::{Map, Value};
use sqlx::Any;
use sqlx::FromRow;

/// What an agent reports about a job.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    pub status: Option<JobStatus>,
    pub exit_code: Option<i32>,
    pub batch_job_id: Option<String>,
    pub message: Option<String>,
    pub sub_jobs: Option<Vec<SubJobState>>,
    /// What the batch system granted the job's current batch job.
    pub granted_resources: Option<GrantedResources>,
}

/// The fields a client may change on a job no agent holds yet.
#[derive(Debug, Clone, Default)]
pub struct JobChange<'a> {
    pub parameters: Option<&'a Map<String, Value>>,
    /// As validated against the job type (replacing the job's).
    pub resources: Option<&'a Resources>,
    pub metadata: Option<&'a Value>,
    pub callback_url: Option<&'a str>,
    /// With new parameters: their code references (the status follows their approval).
    pub code_refs: Option<&'a [crate::CodeRef]>,
}

/// A value as JSON text for a TEXT column (`None` stays `None`).
fn json_text<T: serde::Serialize>(v: Option<&T>) -> Result<Option<String>> {
    v.map(serde_json::to_string).transpose().map_err(corrupt)
}

impl Locked {
    fn job(&self, project_id: i64) -> LockedJob {
        LockedJob {
            seq: self.seq,
            project_id,
            status: self.status,
        }
    }
}

/// The job row a write transaction locks and decides on.
struct Locked {
    seq: i64,
    status: JobStatus,
    held: bool,
    deleted: bool,
    pending_op: Option<String>,
}

impl Store {
    async fn lock_job(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        job_id: &str,
    ) -> Result<Locked> {
        let sql = format!(
            "SELECT seq, status, held, deleted_at, pending_op FROM jobs WHERE id = $1 AND project_id = $2{}",
            self.for_update()
        );
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i64,
            status: String,
            held: i64,
            deleted_at: Option<i64>,
            pending_op: Option<String>,
        }
        let r = sqlx::query(&sql)
            .bind(job_id)
            .bind(project_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound("job"))?;
        let r = Row::from_row(&r)?;
        Ok(Locked {
            seq: r.seq,
            status: r.status.parse().map_err(corrupt)?,
            held: r.held != 0,
            deleted: r.deleted_at.is_some(),
            pending_op: r.pending_op,
        })
    }

    /// A report by the agent that holds the job (see `lock_held`: another project's or
    /// site's job is not found; an ended job, a job this agent does not hold and illegal
    /// transitions are `Conflict` and change nothing). Claims are not made here: only
    /// `claim_jobs` makes an agent the holder of a job.
    pub async fn report_status(
        &self,
        agent: &crate::AgentRef<'_>,
        job_id: &str,
        lease_until: i64,
        actor: &str,
        rep: &StatusReport,
    ) -> Result<Job> {
        let project_id = agent.project_id;
        let mut tx = self.begin_write().await?;
        let locked = self.lock_held(&mut tx.tx, agent, job_id).await?;
        let from = locked.status;
        let to = rep.status.unwrap_or(from);
        if to != from && matches!(to, JobStatus::Queued | JobStatus::Lost) {
            return Err(StoreError::Conflict(format!(
                "only the server moves a job to {to}"
            )));
        }
        let sub_jobs = json_text(rep.sub_jobs.as_ref())?;
        let granted = json_text(rep.granted_resources.as_ref())?;
        if to != from {
            let held = LockedJob {
                seq: locked.seq,
                project_id,
                status: from,
            };
            self.transition(&mut tx.tx, &held, to, actor, rep.message.as_deref())
                .await?;
        }
        // The report's details; a report also renews the lease and confirms the claim.
        sqlx::query(
            "UPDATE jobs SET exit_code = COALESCE($1, exit_code), batch_job_id = COALESCE($2, batch_job_id), \
             message = COALESCE($3, message), sub_jobs = COALESCE($4, sub_jobs), updated_at = $5, \
             lease_until = CASE WHEN $6 = 1 THEN NULL ELSE $7 END, claim_confirmed = 1, \
             granted_resources = COALESCE($9, granted_resources) WHERE seq = $8",
        )
        .bind(rep.exit_code.map(i64::from))
        .bind(rep.batch_job_id.as_deref())
        .bind(rep.message.as_deref())
        .bind(sub_jobs)
        .bind(now_ms())
        .bind(i64::from(to.is_terminal()))
        .bind(lease_until)
        .bind(locked.seq)
        .bind(granted)
        .execute(&mut *tx.tx)
        .await?;
        let job = self.job_in_tx(&mut tx.tx, locked.seq).await?;
        if locked.deleted && to.is_terminal() {
            // The client deleted it while it ran; now that it has ended it goes for good.
            remove_job(&mut tx.tx, locked.seq).await?;
        }
        tx.commit().await?;
        Ok(job)
    }

    /// A client's change to a job that no agent holds yet.
    pub async fn change_job(
        &self,
        project_id: i64,
        job_id: &str,
        actor: &str,
        ch: &JobChange<'_>,
    ) -> Result<Job> {
        let mut tx = self.begin_write().await?;
        let locked = self.lock_job(&mut tx.tx, project_id, job_id).await?;
        if locked.deleted {
            return Err(StoreError::NotFound("job"));
        }
        if !matches!(
            locked.status,
            JobStatus::Queued | JobStatus::AwaitingApproval
        ) {
            return Err(StoreError::Conflict(format!(
                "the job is {}; only a queued job can be changed",
                locked.status
            )));
        }
        let params = json_text(ch.parameters)?;
        let metadata = json_text(ch.metadata)?;
        let resources = json_text(ch.resources)?;
        // New parameters may reference other code: the status follows their approval.
        let mut new_status = locked.status;
        if let Some(refs) = ch.code_refs {
            new_status = if self.check_code_refs(&mut tx.tx, project_id, refs).await? {
                JobStatus::Queued
            } else {
                JobStatus::AwaitingApproval
            };
            self.set_code_refs(&mut tx.tx, locked.seq, project_id, refs)
                .await?;
        }
        if new_status != locked.status {
            self.transition(
                &mut tx.tx,
                &locked.job(project_id),
                new_status,
                actor,
                Some("its code parameters changed"),
            )
            .await?;
        }
        sqlx::query(
            "UPDATE jobs SET parameters = COALESCE($1, parameters), metadata = COALESCE($2, metadata),              callback_url = COALESCE($3, callback_url), updated_at = $4, \
             resources = COALESCE($6, resources) WHERE seq = $5",
        )
        .bind(params)
        .bind(metadata)
        .bind(ch.callback_url)
        .bind(now_ms())
        .bind(locked.seq)
        .bind(resources)
        .execute(&mut *tx.tx)
        .await?;
        self.add_note(
            &mut tx.tx,
            locked.seq,
            project_id,
            EventKind::Updated,
            actor,
            None,
        )
        .await?;
        let job = self.job_in_tx(&mut tx.tx, locked.seq).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Records an operation. On a job no agent holds it takes effect at once (cancel ends
    /// the job, hold/release set the held flag); otherwise it waits for the agent.
    pub async fn request_operation(
        &self,
        project_id: i64,
        job_id: &str,
        op: Operation,
        actor: &str,
    ) -> Result<Job> {
        let mut tx = self.begin_write().await?;
        let locked = self.lock_job(&mut tx.tx, project_id, job_id).await?;
        if locked.deleted {
            return Err(StoreError::NotFound("job"));
        }
        let from = locked.status;
        if from.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "the job is {from}; it cannot be {}",
                past(op)
            )));
        }
        let note = if from.is_with_agent() {
            Some(self.hand_to_agent(&mut tx.tx, &locked, op, actor).await?)
        } else {
            self.operate_unclaimed(&mut tx.tx, &locked, project_id, op, actor)
                .await?
        };
        if let Some(kind) = note {
            let detail = Some(op.as_str());
            self.add_note(&mut tx.tx, locked.seq, project_id, kind, actor, detail)
                .await?;
        }
        let job = self.job_in_tx(&mut tx.tx, locked.seq).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Records an operation for the agent that holds the job (handed over with its next
    /// poll). Cancel wins: a pending cancel is never replaced by a hold or release. Returns
    /// the event to record.
    async fn hand_to_agent(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        locked: &Locked,
        op: Operation,
        actor: &str,
    ) -> Result<EventKind> {
        if op != Operation::Cancel
            && locked.pending_op.as_deref() == Some(Operation::Cancel.as_str())
        {
            return Err(StoreError::Conflict(format!(
                "a cancel is pending for this job; it cannot be {} any more",
                past(op)
            )));
        }
        sqlx::query(
            "UPDATE jobs SET pending_op = $1, pending_op_at = $2, pending_op_by = $3, updated_at = $2 WHERE seq = $4",
        )
        .bind(op.as_str())
        .bind(now_ms())
        .bind(actor)
        .bind(locked.seq)
        .execute(&mut **tx)
        .await?;
        Ok(EventKind::OperationRequested)
    }

    /// Carries out an operation on a job no agent holds: a cancel ends it, a hold or
    /// release sets its held flag (a held job is not claimed). Returns the event to record
    /// besides the status change's, if any.
    async fn operate_unclaimed(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        locked: &Locked,
        project_id: i64,
        op: Operation,
        actor: &str,
    ) -> Result<Option<EventKind>> {
        if op == Operation::Cancel {
            let why = format!("cancelled by {actor} before it started");
            let job = locked.job(project_id);
            self.transition(tx, &job, JobStatus::Cancelled, actor, Some(&why))
                .await?;
            return Ok(None);
        }
        let held = op == Operation::Hold;
        if held == locked.held {
            return Ok(None);
        }
        sqlx::query("UPDATE jobs SET held = $1, updated_at = $2 WHERE seq = $3")
            .bind(i64::from(held))
            .bind(now_ms())
            .bind(locked.seq)
            .execute(&mut **tx)
            .await?;
        Ok(Some(EventKind::OperationDone))
    }

    /// Deletes a job. A job an agent holds is hidden at once, cancelled through the agent
    /// and removed when it ends: returns `true` then. Otherwise it is removed now.
    pub async fn delete_job(&self, project_id: i64, job_id: &str, actor: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let locked = self.lock_job(&mut tx.tx, project_id, job_id).await?;
        if locked.deleted {
            return Err(StoreError::NotFound("job"));
        }
        let pending = locked.status.is_with_agent();
        if pending {
            let now = now_ms();
            sqlx::query(
                "UPDATE jobs SET deleted_at = $1, pending_op = $2, pending_op_at = $1, pending_op_by = $3, updated_at = $1                  WHERE seq = $4",
            )
            .bind(now)
            .bind(Operation::Cancel.as_str())
            .bind(actor)
            .bind(locked.seq)
            .execute(&mut *tx.tx)
            .await?;
            self.add_note(
                &mut tx.tx,
                locked.seq,
                project_id,
                EventKind::Deleted,
                actor,
                Some("cancel requested"),
            )
            .await?;
        } else {
            remove_job(&mut tx.tx, locked.seq).await?;
        }
        tx.commit().await?;
        Ok(pending)
    }
}

/// Removes a job row (its events, output, results and deliveries cascade).
pub(crate) async fn remove_job(tx: &mut sqlx::Transaction<'static, Any>, seq: i64) -> Result<()> {
    sqlx::query("DELETE FROM jobs WHERE seq = $1")
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn past(op: Operation) -> &'static str {
    match op {
        Operation::Cancel => "cancelled",
        Operation::Hold => "held",
        Operation::Release => "released",
    }
}
