//! The agent's side of jobs: claims with leases, lease renewal and expiry, operations handed
//! to the agent, the holder check every agent write goes through (`lock_held`), and the
//! note an agent leaves on a job that was lost. Output and result files are in `output.rs`.

use crate::transition::{sql_status, LockedJob, WITH_AGENT};
use crate::{col, corrupt, now_ms, Backend, Result, Store, StoreError};
use hpcsera_api_types::{EventKind, Job, JobStatus, Operation};
use sqlx::FromRow;

/// A claim of up to `max_jobs` queued jobs of a site for one agent token.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub token_id: &'a str,
    pub project_id: i64,
    pub site: &'a str,
    pub max_jobs: u32,
    /// Lease of a claim the agent has not confirmed yet.
    pub claim_lease_ms: i64,
    pub actor: &'a str,
}

/// What the lease reaper did to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub job_id: String,
    pub to: JobStatus,
}

/// Who an agent write comes from: the agent token (restricted to `site`) and its project.
/// The server builds it only from a token that is an agent token (`AgentCaller`).
#[derive(Debug, Clone, Copy)]
pub struct AgentRef<'a> {
    pub token_id: &'a str,
    pub project_id: i64,
    pub site: &'a str,
}

/// The row that [`Store::lock_for_agent`] locks, by column name.
#[derive(sqlx::FromRow)]
struct AgentLockRow {
    seq: i64,
    agent_token: Option<String>,
    status: String,
    deleted_at: Option<i64>,
    pending_op: Option<String>,
    stdout_bytes: i64,
    stderr_bytes: i64,
    site: String,
}

/// A job row that an agent write locked and may change: this agent holds it and it has not
/// ended.
#[derive(Debug)]
pub(crate) struct Held {
    pub seq: i64,
    pub status: JobStatus,
    pub deleted: bool,
    pub pending_op: Option<String>,
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
}

impl Store {
    /// Locks a job for a write by an agent and checks, in this order: the job is of the
    /// agent's project and site (else not found, so ids leak nothing), it has not ended (else
    /// a conflict: ended jobs are read-only), and this agent token holds it (else a conflict:
    /// only the holder reports, and only `claim_jobs` makes a holder).
    ///
    /// **Invariant:** every write an agent makes to a job goes through here.
    pub(crate) async fn lock_held(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        agent: &AgentRef<'_>,
        job_id: &str,
    ) -> Result<Held> {
        let r = self.lock_for_agent(tx, agent, job_id).await?;
        let status: JobStatus = r.status.parse().map_err(corrupt)?;
        if status.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "the job is {status}; an ended job takes no more writes"
            )));
        }
        if !status.is_with_agent() {
            return Err(StoreError::Conflict(format!(
                "the job is {status}; only the agent that claimed it (POST /agent/poll) reports on it"
            )));
        }
        if r.agent_token.as_deref() != Some(agent.token_id) {
            return Err(StoreError::Conflict(
                "the job is held by another agent".into(),
            ));
        }
        Ok(Held {
            seq: r.seq,
            status,
            deleted: r.deleted_at.is_some(),
            pending_op: r.pending_op,
            stdout_bytes: r.stdout_bytes,
            stderr_bytes: r.stderr_bytes,
        })
    }

    /// Locks a job of the agent's project and site (another project's or site's job is not
    /// found, so ids leak nothing).
    async fn lock_for_agent(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        agent: &AgentRef<'_>,
        job_id: &str,
    ) -> Result<AgentLockRow> {
        // The site name comes from a subquery so that FOR UPDATE locks only the job's row.
        let r = sqlx::query(&format!(
            "SELECT seq, agent_token, status, deleted_at, pending_op, stdout_bytes, stderr_bytes, \
             (SELECT name FROM sites WHERE id = jobs.site_id) AS site FROM jobs WHERE id = $1 AND project_id = $2{}",
            self.for_update()
        ))
        .bind(job_id)
        .bind(agent.project_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        let r = AgentLockRow::from_row(&r)?;
        if r.site != agent.site {
            return Err(StoreError::NotFound("job"));
        }
        Ok(r)
    }

    /// Claims queued, not held jobs of `site` in the token's project, oldest first. On
    /// PostgreSQL several agents claim concurrently without taking the same job
    /// (`FOR UPDATE SKIP LOCKED`); on SQLite writers are serialised.
    pub async fn claim_jobs(&self, c: &Claim<'_>) -> Result<Vec<Job>> {
        if c.max_jobs == 0 {
            return Ok(Vec::new());
        }
        // Most polls find nothing: answer them with an indexed read, without taking the write
        // lock (SQLite) or starting a write transaction.
        let any = sqlx::query(&format!(
            "SELECT 1 FROM jobs j JOIN sites s ON s.id = j.site_id WHERE s.name = $1 AND j.project_id = $2 \
             AND j.status = {} AND j.held = 0 AND j.deleted_at IS NULL LIMIT 1",
            sql_status(JobStatus::Queued)
        ))
        .bind(c.site)
        .bind(c.project_id)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        // The site is a subquery, not a join, so that FOR UPDATE locks job rows only: agents
        // claiming at the same time skip each other's jobs instead of waiting on the site row.
        let skip_locked = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&format!(
            "SELECT seq FROM jobs WHERE site_id = (SELECT id FROM sites WHERE name = $1) AND project_id = $2 \
             AND status = {} AND held = 0 AND deleted_at IS NULL ORDER BY seq LIMIT $3{skip_locked}",
            sql_status(JobStatus::Queued)
        ))
        .bind(c.site)
        .bind(c.project_id)
        .bind(i64::from(c.max_jobs))
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in &rows {
            let queued = LockedJob {
                seq: col(r, 0)?,
                project_id: c.project_id,
                status: JobStatus::Queued,
            };
            self.transition(&mut tx.tx, &queued, JobStatus::Dispatched, c.actor, None)
                .await?;
            sqlx::query(
                "UPDATE jobs SET agent_token = $1, lease_until = $2, claim_confirmed = 0 WHERE seq = $3",
            )
            .bind(c.token_id)
            .bind(now + c.claim_lease_ms)
            .bind(queued.seq)
            .execute(&mut *tx.tx)
            .await?;
            jobs.push(self.job_in_tx(&mut tx.tx, queued.seq).await?);
        }
        tx.commit().await?;
        Ok(jobs)
    }

    /// Renews the leases of the jobs the token holds among `job_ids` and confirms their
    /// claims. Returns the ids among `job_ids` the token does not hold (any more).
    pub async fn renew_leases(
        &self,
        token_id: &str,
        project_id: i64,
        job_ids: &[String],
        lease_until: i64,
    ) -> Result<Vec<String>> {
        if job_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let mut held = Vec::with_capacity(job_ids.len());
        for chunk in job_ids.chunks(500) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
            let with_agent = WITH_AGENT.as_str();
            let sql = format!(
                "UPDATE jobs SET lease_until = $1, claim_confirmed = 1 WHERE agent_token = $2 AND project_id = $3 \
                 AND status IN {with_agent} AND id IN ({}) RETURNING id",
                list.join(", ")
            );
            let mut q = sqlx::query(&sql)
                .bind(lease_until)
                .bind(token_id)
                .bind(project_id);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for r in q.fetch_all(&mut *tx.tx).await? {
                held.push(col::<String>(&r, 0)?);
            }
        }
        tx.commit().await?;
        Ok(job_ids
            .iter()
            .filter(|id| !held.contains(id))
            .cloned()
            .collect())
    }

    /// Operations requested on jobs the token holds.
    pub async fn pending_operations(
        &self,
        token_id: &str,
        project_id: i64,
    ) -> Result<Vec<(String, Operation)>> {
        let with_agent = WITH_AGENT.as_str();
        let rows = sqlx::query(&format!(
            "SELECT id, pending_op FROM jobs WHERE agent_token = $1 AND project_id = $2 \
             AND status IN {with_agent} AND pending_op IS NOT NULL ORDER BY seq"
        ))
        .bind(token_id)
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let op: String = col(r, "pending_op")?;
                Ok((col(r, "id")?, op.parse().map_err(corrupt)?))
            })
            .collect()
    }

    /// The agent reports that it carried out (or could not carry out) an operation.
    pub async fn operation_done(
        &self,
        agent: &AgentRef<'_>,
        job_id: &str,
        op: Operation,
        ok: bool,
        message: Option<&str>,
        actor: &str,
    ) -> Result<Job> {
        let mut tx = self.begin_write().await?;
        let held = self.lock_held(&mut tx.tx, agent, job_id).await?;
        let seq = held.seq;
        let project_id = agent.project_id;
        let pending = held.pending_op;
        // Only the operation still pending is settled; a newer request stays pending.
        if pending.as_deref() == Some(op.as_str()) {
            sqlx::query("UPDATE jobs SET pending_op = NULL, pending_op_at = NULL, pending_op_by = NULL, updated_at = $1 WHERE seq = $2")
                .bind(now_ms())
                .bind(seq)
                .execute(&mut *tx.tx)
                .await?;
        }
        if ok && matches!(op, Operation::Hold | Operation::Release) {
            sqlx::query("UPDATE jobs SET held = $1 WHERE seq = $2")
                .bind(i64::from(op == Operation::Hold))
                .bind(seq)
                .execute(&mut *tx.tx)
                .await?;
        }
        let kind = if ok {
            EventKind::OperationDone
        } else {
            EventKind::OperationFailed
        };
        let msg = match message {
            Some(m) => format!("{op}: {m}"),
            None => op.to_string(),
        };
        self.add_note(&mut tx.tx, seq, project_id, kind, actor, Some(&msg))
            .await?;
        let job = self.job_in_tx(&mut tx.tx, seq).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// The agent that last held a `lost` job reports what it did about it on its return (for
    /// example that it cancelled the job's batch job): one `agent_cleanup` event; the job
    /// itself is unchanged. Another project's job is not found; a job that is not `lost`, or
    /// that another agent token held, is a conflict.
    pub async fn agent_cleanup(
        &self,
        agent: &AgentRef<'_>,
        job_id: &str,
        message: &str,
        actor: &str,
    ) -> Result<Job> {
        let project_id = agent.project_id;
        let mut tx = self.begin_write().await?;
        // Not `lock_held`: the job has ended, and this is the one note an agent may add then.
        let r = self.lock_for_agent(&mut tx.tx, agent, job_id).await?;
        let seq = r.seq;
        let status: JobStatus = r.status.parse().map_err(corrupt)?;
        if status != JobStatus::Lost {
            return Err(StoreError::Conflict(format!(
                "the job is {status}, not lost: there is nothing to clean up"
            )));
        }
        if r.agent_token.as_deref() != Some(agent.token_id) {
            return Err(StoreError::Conflict("another agent held this job".into()));
        }
        self.add_note(
            &mut tx.tx,
            seq,
            project_id,
            EventKind::AgentCleanup,
            actor,
            Some(message),
        )
        .await?;
        let job = self.job_in_tx(&mut tx.tx, seq).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Ends leases that ran out: an unconfirmed claim is offered again (it provably never
    /// reached the batch system: the agent confirms before it runs anything), carrying out
    /// the operation that was pending on it (a cancel ends it, a hold holds it, a release
    /// releases it); any other job an agent held becomes `lost`.
    pub async fn expire_leases(&self) -> Result<Vec<Expired>> {
        self.expire_leases_of(false).await
    }

    /// Like [`Store::expire_leases`], for unconfirmed claims only: they go back to the
    /// queue, which is safe at any time (the agent confirms a claim before anything runs).
    /// The server does this from its start, before it expires confirmed leases.
    pub async fn expire_unconfirmed_claims(&self) -> Result<Vec<Expired>> {
        self.expire_leases_of(true).await
    }

    async fn expire_leases_of(&self, unconfirmed_only: bool) -> Result<Vec<Expired>> {
        let now = now_ms();
        let mut out = Vec::new();
        for seq in self.expired_lease_candidates(now).await? {
            if let Some(e) = self.expire_lease_if(seq, now, unconfirmed_only).await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Jobs whose lease ran out before `now` (read without a lock; each is decided again
    /// under its row lock by [`Store::expire_lease`]).
    pub(crate) async fn expired_lease_candidates(&self, now: i64) -> Result<Vec<i64>> {
        let with_agent = WITH_AGENT.as_str();
        let rows = sqlx::query(&format!(
            "SELECT seq FROM jobs WHERE lease_until < $1 AND status IN {with_agent} ORDER BY seq LIMIT 1000"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    /// Ends the lease of one job if it still ran out at `now`. Everything it decides on is
    /// read under the row lock: the client may have deleted the job or requested an
    /// operation, or the agent renewed, since the candidates were read.
    #[cfg(test)]
    pub(crate) async fn expire_lease(&self, seq: i64, now: i64) -> Result<Option<Expired>> {
        self.expire_lease_if(seq, now, false).await
    }

    /// [`Store::expire_lease`]; with `unconfirmed_only`, a confirmed claim is left alone.
    async fn expire_lease_if(
        &self,
        seq: i64,
        now: i64,
        unconfirmed_only: bool,
    ) -> Result<Option<Expired>> {
        let mut tx = self.begin_write().await?;
        let with_agent = WITH_AGENT.as_str();
        let r = sqlx::query(&format!(
            "SELECT id, project_id, status, claim_confirmed, deleted_at, pending_op FROM jobs \
             WHERE seq = $1 AND lease_until < $2 AND status IN {with_agent}{}",
            self.for_update()
        ))
        .bind(seq)
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let id: String = col(&r, "id")?;
        let project_id: i64 = col(&r, "project_id")?;
        let from: JobStatus = col::<String>(&r, "status")?.parse().map_err(corrupt)?;
        let confirmed = col::<i64>(&r, "claim_confirmed")? != 0;
        if confirmed && unconfirmed_only {
            return Ok(None);
        }
        let deleted = col::<Option<i64>>(&r, "deleted_at")?.is_some();
        let pending: Option<Operation> = col::<Option<String>>(&r, "pending_op")?
            .map(|p| p.parse().map_err(corrupt))
            .transpose()?;
        let (to, msg, held) = lease_outcome(from, confirmed, deleted, pending);
        let locked = LockedJob {
            seq,
            project_id,
            status: from,
        };
        self.transition(&mut tx.tx, &locked, to, "server", Some(msg))
            .await?;
        // Back in the queue, the job has no holder, lease or pending operation.
        if to == JobStatus::Queued {
            sqlx::query(
                "UPDATE jobs SET agent_token = NULL, lease_until = NULL, pending_op = NULL, pending_op_at = NULL, \
                 pending_op_by = NULL, held = COALESCE($1, held) WHERE seq = $2",
            )
            .bind(held)
            .bind(seq)
            .execute(&mut *tx.tx)
            .await?;
        }
        if let (Some(op), Some(_)) = (pending, held) {
            self.add_note(
                &mut tx.tx,
                seq,
                project_id,
                EventKind::OperationDone,
                "server",
                Some(op.as_str()),
            )
            .await?;
        }
        if deleted && to.is_terminal() {
            crate::changes::remove_job(&mut tx.tx, seq).await?;
        }
        tx.commit().await?;
        Ok(Some(Expired { job_id: id, to }))
    }
}

/// What an expired lease does to a job: an unconfirmed claim (provably never run) goes back
/// to the queue with its pending operation carried out (a delete or cancel ends it, a hold or
/// release sets `held`, the third value); anything else an agent held is lost.
fn lease_outcome(
    from: JobStatus,
    confirmed: bool,
    deleted: bool,
    pending: Option<Operation>,
) -> (JobStatus, &'static str, Option<i64>) {
    let unconfirmed = from == JobStatus::Dispatched && !confirmed;
    match pending {
        _ if !unconfirmed => (
            JobStatus::Lost,
            "the agent's lease ran out and it did not report back",
            None,
        ),
        _ if deleted => (
            JobStatus::Cancelled,
            "deleted before the agent confirmed its claim",
            None,
        ),
        Some(Operation::Cancel) => (
            JobStatus::Cancelled,
            "cancelled before the agent confirmed its claim",
            None,
        ),
        Some(op) => (
            JobStatus::Queued,
            "the agent never confirmed its claim; the job is offered again",
            Some(i64::from(op == Operation::Hold)),
        ),
        None => (
            JobStatus::Queued,
            "the agent never confirmed its claim; the job is offered again",
            None,
        ),
    }
}
