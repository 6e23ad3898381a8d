//! Jobs, their event log and idempotency keys. Every query is scoped by project.

use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{Job, JobEvent, JobStatus, Operation, PendingOperation, SubJobState};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Any;

/// Columns of [`job_from_row`], in order.
const JOB_SELECT: &str = "SELECT j.seq, j.id, p.name, s.name, j.job_type, u.name, j.status, j.parameters, \
     j.metadata, j.callback_url, j.held, j.pending_op, j.pending_op_at, j.pending_op_by, j.batch_job_id, \
     j.exit_code, j.message, j.sub_jobs, j.created_at, j.updated_at, j.finished_at, \
     j.stdout_bytes, j.stderr_bytes \
     FROM jobs j JOIN projects p ON p.id = j.project_id JOIN sites s ON s.id = j.site_id \
     JOIN users u ON u.id = j.owner_id";

/// Advisory lock key that orders event writers on PostgreSQL.
const EVENT_ORDER_LOCK: i64 = 0x0068_7063_6576_656e;

/// A validated job to insert.
#[derive(Debug, Clone)]
pub struct NewJobRecord<'a> {
    pub project_id: i64,
    pub owner_id: i64,
    pub site_id: i64,
    pub job_type: &'a str,
    pub parameters: &'a Map<String, Value>,
    pub metadata: Option<&'a Value>,
    pub callback_url: Option<&'a str>,
    /// Idempotency key and a hash of the request it came with.
    pub idempotency: Option<(&'a str, String)>,
    pub actor: &'a str,
    /// The job's code parameters: each bundle must exist in the project; while any is not
    /// approved the job is created `awaiting_approval`.
    pub code_refs: &'a [crate::CodeRef],
}

/// Result of a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job: Job,
    /// False when an earlier submission with the same idempotency key is returned.
    pub created: bool,
}

/// Filter and page of a job listing (newest first).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub statuses: Vec<JobStatus>,
    pub site: Option<String>,
    pub job_type: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Only jobs older than this sequence number (from the previous page's cursor).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// Page of events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after_seq: i64,
    pub limit: u32,
    /// Only jobs of this site (project streams of site-restricted tokens).
    pub site: Option<String>,
}

/// What an agent reports about a job.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    pub status: Option<JobStatus>,
    pub exit_code: Option<i32>,
    pub batch_job_id: Option<String>,
    pub message: Option<String>,
    pub sub_jobs: Option<Vec<SubJobState>>,
}

/// The fields a client may change on a job no agent holds yet.
#[derive(Debug, Clone, Default)]
pub struct JobChange<'a> {
    pub parameters: Option<&'a Map<String, Value>>,
    pub metadata: Option<&'a Value>,
    pub callback_url: Option<&'a str>,
    /// With new parameters: their code references (the status follows their approval).
    pub code_refs: Option<&'a [crate::CodeRef]>,
}

enum Bind {
    I64(i64),
    Str(String),
}

fn job_from_row(r: &AnyRow) -> Result<(i64, Job)> {
    let status: String = col(r, 6)?;
    let params: String = col(r, 7)?;
    let metadata: Option<String> = col(r, 8)?;
    let pending_op: Option<String> = col(r, 11)?;
    let sub_jobs: String = col(r, 17)?;
    let pending_operation = match pending_op {
        Some(op) => Some(PendingOperation {
            operation: op.parse().map_err(corrupt)?,
            requested_at: fmt_ms(col::<Option<i64>>(r, 12)?.unwrap_or(0)),
            requested_by: col::<Option<String>>(r, 13)?.unwrap_or_default(),
        }),
        None => None,
    };
    let job = Job {
        id: col(r, 1)?,
        project: col(r, 2)?,
        site: col(r, 3)?,
        job_type: col(r, 4)?,
        owner: col(r, 5)?,
        status: status.parse().map_err(corrupt)?,
        parameters: serde_json::from_str(&params).map_err(corrupt)?,
        metadata: metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(corrupt)?,
        callback_url: col(r, 9)?,
        held: col::<i64>(r, 10)? != 0,
        pending_operation,
        batch_job_id: col(r, 14)?,
        exit_code: col::<Option<i64>>(r, 15)?.map(|c| c as i32),
        message: col(r, 16)?,
        sub_jobs: serde_json::from_str(&sub_jobs).map_err(corrupt)?,
        created_at: fmt_ms(col(r, 18)?),
        updated_at: fmt_ms(col(r, 19)?),
        finished_at: col::<Option<i64>>(r, 20)?.map(fmt_ms),
        output_bytes: hpcsera_api_types::OutputBytes {
            stdout: col::<i64>(r, 21)?.max(0) as u64,
            stderr: col::<i64>(r, 22)?.max(0) as u64,
        },
    };
    Ok((col(r, 0)?, job))
}

/// An event from columns seq, at, kind, from_status, to_status, actor, message.
pub(crate) fn event_from_row(r: &AnyRow, job_id: String) -> Result<JobEvent> {
    let status = |i: usize| -> Result<Option<JobStatus>> {
        col::<Option<String>>(r, i)?
            .map(|s| s.parse())
            .transpose()
            .map_err(corrupt)
    };
    Ok(JobEvent {
        seq: col(r, 0)?,
        job_id,
        at: fmt_ms(col(r, 1)?),
        kind: col(r, 2)?,
        from_status: status(3)?,
        to_status: status(4)?,
        actor: col(r, 5)?,
        message: col(r, 6)?,
    })
}

/// The job row a write transaction locks and decides on.
struct Locked {
    seq: i64,
    status: JobStatus,
    held: bool,
    deleted: bool,
    agent_token: Option<String>,
}

impl Store {
    async fn lock_job(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        job_id: &str,
    ) -> Result<Locked> {
        let sql = format!(
            "SELECT seq, status, held, deleted_at, agent_token FROM jobs WHERE id = $1 AND project_id = $2{}",
            self.for_update()
        );
        let r = sqlx::query(&sql)
            .bind(job_id)
            .bind(project_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound("job"))?;
        Ok(Locked {
            seq: col(&r, 0)?,
            status: col::<String>(&r, 1)?.parse().map_err(corrupt)?,
            held: col::<i64>(&r, 2)? != 0,
            deleted: col::<Option<i64>>(&r, 3)?.is_some(),
            agent_token: col(&r, 4)?,
        })
    }

    pub(crate) async fn job_in_tx(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        seq: i64,
    ) -> Result<Job> {
        let r = sqlx::query(&format!("{JOB_SELECT} WHERE j.seq = $1"))
            .bind(seq)
            .fetch_one(&mut **tx)
            .await?;
        Ok(job_from_row(&r)?.1)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn add_event(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        job_seq: i64,
        project_id: i64,
        kind: &str,
        from: Option<JobStatus>,
        to: Option<JobStatus>,
        actor: &str,
        message: Option<&str>,
    ) -> Result<()> {
        // Event sequence numbers must become visible in order, or a reader resuming after
        // seq N could miss an N-1 that commits later. SQLite has one writer; on PostgreSQL the
        // event-writing transactions are serialised from here to their commit.
        if self.backend == crate::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_ORDER_LOCK)
                .execute(&mut **tx)
                .await?;
        }
        let r = sqlx::query(
            "INSERT INTO job_events (job_seq, project_id, at, kind, from_status, to_status, actor, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
        )
        .bind(job_seq)
        .bind(project_id)
        .bind(now_ms())
        .bind(kind)
        .bind(from.map(JobStatus::as_str))
        .bind(to.map(JobStatus::as_str))
        .bind(actor)
        .bind(message)
        .fetch_one(&mut **tx)
        .await?;
        if to.is_some() {
            // The webhook outbox: written with the event, so no status change is missed.
            let event_seq: i64 = col(&r, 0)?;
            crate::webhooks::enqueue(tx, job_seq, event_seq).await?;
        }
        Ok(())
    }

    async fn find_idempotent(
        &self,
        project_id: i64,
        owner_id: i64,
        key: &str,
        hash: &str,
    ) -> Result<Option<Job>> {
        let r = sqlx::query(
            "SELECT k.request_hash, j.id FROM idempotency_keys k JOIN jobs j ON j.seq = k.job_seq \
             WHERE k.project_id = $1 AND k.user_id = $2 AND k.key = $3",
        )
        .bind(project_id)
        .bind(owner_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        if col::<String>(&r, 0)? != hash {
            return Err(StoreError::IdempotencyMismatch);
        }
        let id: String = col(&r, 1)?;
        self.get_job(project_id, &id).await.map(Some)
    }

    /// Inserts a job in status `queued` (or returns the job an earlier request with the
    /// same idempotency key created).
    pub async fn create_job(&self, new: &NewJobRecord<'_>) -> Result<Submitted> {
        if let Some((key, hash)) = &new.idempotency {
            if let Some(job) = self
                .find_idempotent(new.project_id, new.owner_id, key, hash)
                .await?
            {
                return Ok(Submitted {
                    job,
                    created: false,
                });
            }
        }
        match self.insert_job(new).await {
            Ok(job) => Ok(Submitted { job, created: true }),
            // Another request with the same key won the race: answer with its job.
            Err(e) if e.is_unique_violation() && new.idempotency.is_some() => {
                let (key, hash) = new.idempotency.as_ref().ok_or(e)?;
                let job = self
                    .find_idempotent(new.project_id, new.owner_id, key, hash)
                    .await?
                    .ok_or(StoreError::Conflict(
                        "idempotency key is being used concurrently".into(),
                    ))?;
                Ok(Submitted {
                    job,
                    created: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn insert_job(&self, new: &NewJobRecord<'_>) -> Result<Job> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let params = serde_json::to_string(new.parameters).map_err(corrupt)?;
        let metadata = new
            .metadata
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        let mut tx = self.begin_write().await?;
        let status = if self
            .check_code_refs(&mut tx.tx, new.project_id, new.code_refs)
            .await?
        {
            JobStatus::Queued
        } else {
            JobStatus::AwaitingApproval
        };
        let r = sqlx::query(
            "INSERT INTO jobs (id, project_id, owner_id, site_id, job_type, status, parameters, metadata, \
             callback_url, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING seq",
        )
        .bind(&id)
        .bind(new.project_id)
        .bind(new.owner_id)
        .bind(new.site_id)
        .bind(new.job_type)
        .bind(status.as_str())
        .bind(params)
        .bind(metadata)
        .bind(new.callback_url)
        .bind(now)
        .fetch_one(&mut *tx.tx)
        .await?;
        let seq: i64 = col(&r, 0)?;
        self.set_code_refs(&mut tx.tx, seq, new.project_id, new.code_refs)
            .await?;
        if let Some((key, hash)) = &new.idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (project_id, user_id, key, request_hash, job_seq, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new.project_id)
            .bind(new.owner_id)
            .bind(*key)
            .bind(hash.as_str())
            .bind(seq)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        self.add_event(
            &mut tx.tx,
            seq,
            new.project_id,
            "created",
            None,
            Some(status),
            new.actor,
            (status == JobStatus::AwaitingApproval)
                .then_some("waiting for the approval of its code bundle"),
        )
        .await?;
        let job = self.job_in_tx(&mut tx.tx, seq).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// A job of the project (deleted jobs are not found).
    pub async fn get_job(&self, project_id: i64, job_id: &str) -> Result<Job> {
        let r = sqlx::query(&format!(
            "{JOB_SELECT} WHERE j.id = $1 AND j.project_id = $2 AND j.deleted_at IS NULL"
        ))
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        Ok(job_from_row(&r)?.1)
    }

    /// A job of the project, also when it was deleted while an agent held it (for webhooks).
    pub(crate) async fn get_job_any(&self, project_id: i64, job_id: &str) -> Result<Job> {
        let r = sqlx::query(&format!(
            "{JOB_SELECT} WHERE j.id = $1 AND j.project_id = $2"
        ))
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        Ok(job_from_row(&r)?.1)
    }

    /// A page of the project's jobs, newest first, and the sequence number to continue
    /// from when there are more.
    pub async fn list_jobs(
        &self,
        project_id: i64,
        f: &JobFilter,
    ) -> Result<(Vec<Job>, Option<i64>)> {
        let mut sql = format!("{JOB_SELECT} WHERE j.project_id = $1 AND j.deleted_at IS NULL");
        let mut binds = vec![Bind::I64(project_id)];
        let next = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if !f.statuses.is_empty() {
            let list: Vec<String> = f
                .statuses
                .iter()
                .map(|s| next(Bind::Str(s.as_str().into()), &mut binds))
                .collect();
            sql += &format!(" AND j.status IN ({})", list.join(", "));
        }
        if let Some(site) = &f.site {
            sql += &format!(
                " AND s.name = {}",
                next(Bind::Str(site.clone()), &mut binds)
            );
        }
        if let Some(jt) = &f.job_type {
            sql += &format!(
                " AND j.job_type = {}",
                next(Bind::Str(jt.clone()), &mut binds)
            );
        }
        if let Some(t) = f.created_after {
            sql += &format!(" AND j.created_at >= {}", next(Bind::I64(t), &mut binds));
        }
        if let Some(t) = f.created_before {
            sql += &format!(" AND j.created_at < {}", next(Bind::I64(t), &mut binds));
        }
        if let Some(seq) = f.before_seq {
            sql += &format!(" AND j.seq < {}", next(Bind::I64(seq), &mut binds));
        }
        let limit = f.limit.clamp(1, 1000);
        sql += &format!(
            " ORDER BY j.seq DESC LIMIT {}",
            next(Bind::I64(i64::from(limit) + 1), &mut binds)
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = match b {
                Bind::I64(v) => q.bind(v),
                Bind::Str(v) => q.bind(v),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut jobs = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last_seq = None;
        for r in rows.iter().take(limit as usize) {
            let (seq, job) = job_from_row(r)?;
            last_seq = Some(seq);
            jobs.push(job);
        }
        let more = rows.len() > limit as usize;
        Ok((jobs, if more { last_seq } else { None }))
    }

    /// An agent's report. `site` is the agent token's site restriction: a job of another
    /// site is not found. Illegal transitions are `Conflict` and change nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn report_status(
        &self,
        project_id: i64,
        job_id: &str,
        site: Option<&str>,
        token_id: &str,
        lease_until: i64,
        actor: &str,
        rep: &StatusReport,
    ) -> Result<Job> {
        let mut tx = self.begin_write().await?;
        let locked = self.lock_job(&mut tx.tx, project_id, job_id).await?;
        if let Some(site) = site {
            let r = sqlx::query(
                "SELECT s.name FROM jobs j JOIN sites s ON s.id = j.site_id WHERE j.seq = $1",
            )
            .bind(locked.seq)
            .fetch_one(&mut *tx.tx)
            .await?;
            if col::<String>(&r, 0)? != site {
                return Err(StoreError::NotFound("job"));
            }
        }
        let from = locked.status;
        if from.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "the job is {from}; it takes no more reports"
            )));
        }
        let to = rep.status.unwrap_or(from);
        if to != from && !from.can_transition_to(to) {
            return Err(StoreError::Conflict(format!(
                "a job cannot go from {from} to {to}"
            )));
        }
        if from.is_with_agent() && locked.agent_token.as_deref() != Some(token_id) {
            return Err(StoreError::Conflict(
                "the job is held by another agent".into(),
            ));
        }
        if !from.is_with_agent() && to != JobStatus::Dispatched {
            return Err(StoreError::Conflict(format!(
                "the job is {from}; an agent claims it (-> dispatched) before it reports anything else"
            )));
        }
        let now = now_ms();
        let sub_jobs = rep
            .sub_jobs
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        sqlx::query(
            "UPDATE jobs SET status = $1, exit_code = COALESCE($2, exit_code),              batch_job_id = COALESCE($3, batch_job_id), message = COALESCE($4, message),              sub_jobs = COALESCE($5, sub_jobs), updated_at = $6, finished_at = $7,              pending_op = CASE WHEN $8 = 1 THEN NULL ELSE pending_op END, agent_token = $10, lease_until = CASE WHEN $8 = 1 THEN NULL ELSE $11 END, claim_confirmed = 1 WHERE seq = $9",
        )
        .bind(to.as_str())
        .bind(rep.exit_code.map(i64::from))
        .bind(rep.batch_job_id.as_deref())
        .bind(rep.message.as_deref())
        .bind(sub_jobs)
        .bind(now)
        .bind(to.is_terminal().then_some(now))
        .bind(i64::from(to.is_terminal()))
        .bind(locked.seq)
        .bind(token_id)
        .bind(lease_until)
        .execute(&mut *tx.tx)
        .await?;
        if to != from {
            self.add_event(
                &mut tx.tx,
                locked.seq,
                project_id,
                "status",
                Some(from),
                Some(to),
                actor,
                rep.message.as_deref(),
            )
            .await?;
        }
        let job = self.job_in_tx(&mut tx.tx, locked.seq).await?;
        if locked.deleted && to.is_terminal() {
            // The client deleted it while it ran; now that it has ended it goes for good.
            sqlx::query("DELETE FROM jobs WHERE seq = $1")
                .bind(locked.seq)
                .execute(&mut *tx.tx)
                .await?;
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
        let params = ch
            .parameters
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        let metadata = ch
            .metadata
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
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
            sqlx::query("UPDATE jobs SET status = $1 WHERE seq = $2")
                .bind(new_status.as_str())
                .bind(locked.seq)
                .execute(&mut *tx.tx)
                .await?;
            self.add_event(
                &mut tx.tx,
                locked.seq,
                project_id,
                "status",
                Some(locked.status),
                Some(new_status),
                actor,
                Some("its code parameters changed"),
            )
            .await?;
        }
        sqlx::query(
            "UPDATE jobs SET parameters = COALESCE($1, parameters), metadata = COALESCE($2, metadata),              callback_url = COALESCE($3, callback_url), updated_at = $4 WHERE seq = $5",
        )
        .bind(params)
        .bind(metadata)
        .bind(ch.callback_url)
        .bind(now_ms())
        .bind(locked.seq)
        .execute(&mut *tx.tx)
        .await?;
        self.add_event(
            &mut tx.tx, locked.seq, project_id, "updated", None, None, actor, None,
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
        let now = now_ms();
        if from.is_with_agent() {
            sqlx::query(
                "UPDATE jobs SET pending_op = $1, pending_op_at = $2, pending_op_by = $3, updated_at = $2 WHERE seq = $4",
            )
            .bind(op.as_str())
            .bind(now)
            .bind(actor)
            .bind(locked.seq)
            .execute(&mut *tx.tx)
            .await?;
            self.add_event(
                &mut tx.tx,
                locked.seq,
                project_id,
                "operation_requested",
                None,
                None,
                actor,
                Some(op.as_str()),
            )
            .await?;
        } else {
            match op {
                Operation::Cancel => {
                    sqlx::query(
                        "UPDATE jobs SET status = $1, updated_at = $2, finished_at = $2, message = $3 WHERE seq = $4",
                    )
                    .bind(JobStatus::Cancelled.as_str())
                    .bind(now)
                    .bind(format!("cancelled by {actor} before it started"))
                    .bind(locked.seq)
                    .execute(&mut *tx.tx)
                    .await?;
                    self.add_event(
                        &mut tx.tx,
                        locked.seq,
                        project_id,
                        "status",
                        Some(from),
                        Some(JobStatus::Cancelled),
                        actor,
                        Some("cancel"),
                    )
                    .await?;
                }
                Operation::Hold | Operation::Release => {
                    let held = op == Operation::Hold;
                    if held != locked.held {
                        sqlx::query("UPDATE jobs SET held = $1, updated_at = $2 WHERE seq = $3")
                            .bind(i64::from(held))
                            .bind(now)
                            .bind(locked.seq)
                            .execute(&mut *tx.tx)
                            .await?;
                        self.add_event(
                            &mut tx.tx,
                            locked.seq,
                            project_id,
                            "operation_done",
                            None,
                            None,
                            actor,
                            Some(op.as_str()),
                        )
                        .await?;
                    }
                }
            }
        }
        let job = self.job_in_tx(&mut tx.tx, locked.seq).await?;
        tx.commit().await?;
        Ok(job)
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
            self.add_event(
                &mut tx.tx,
                locked.seq,
                project_id,
                "deleted",
                None,
                None,
                actor,
                Some("cancel requested"),
            )
            .await?;
        } else {
            sqlx::query("DELETE FROM jobs WHERE seq = $1")
                .bind(locked.seq)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await?;
        Ok(pending)
    }

    /// The event log of a job, oldest first, after a sequence number.
    pub async fn job_events(
        &self,
        project_id: i64,
        job_id: &str,
        f: &EventFilter,
    ) -> Result<Vec<JobEvent>> {
        let r = sqlx::query(
            "SELECT seq FROM jobs WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
        )
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        let job_seq: i64 = col(&r, 0)?;
        let rows = sqlx::query(
            "SELECT seq, at, kind, from_status, to_status, actor, message FROM job_events              WHERE job_seq = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job_seq)
        .bind(f.after_seq)
        .bind(i64::from(f.limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| event_from_row(r, job_id.to_string()))
            .collect()
    }

    /// Events of all of the project's jobs after `after_seq`, oldest first: the stream a
    /// workflow engine follows, resumable by `seq`.
    pub async fn project_events(&self, project_id: i64, f: &EventFilter) -> Result<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT e.seq, e.at, e.kind, e.from_status, e.to_status, e.actor, e.message, j.id \
             FROM job_events e JOIN jobs j ON j.seq = e.job_seq \
             WHERE e.project_id = $1 AND e.seq > $2 AND j.deleted_at IS NULL \
             AND ($4 IS NULL OR j.site_id = (SELECT id FROM sites WHERE name = $4)) ORDER BY e.seq LIMIT $3",
        )
        .bind(project_id)
        .bind(f.after_seq)
        .bind(i64::from(f.limit.clamp(1, 1000)))
        .bind(f.site.as_deref())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| event_from_row(r, col(r, 7)?)).collect()
    }
}

fn past(op: Operation) -> &'static str {
    match op {
        Operation::Cancel => "cancelled",
        Operation::Hold => "held",
        Operation::Release => "released",
    }
}
