//! The agent's side of jobs: claims with leases, lease renewal and expiry, operations handed
//! to the agent, output streams and result files.

use crate::transition::{sql_status, LockedJob, WITH_AGENT};
use crate::{col, corrupt, fmt_ms, now_ms, Backend, Result, Store, StoreError};
use hpcsera_api_types::{EventKind, Job, JobStatus, Operation, OutputStream, ResultFile};
use sha2::{Digest, Sha256};
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

/// A slice of a job's output.
#[derive(Debug, Clone)]
pub struct OutputSlice {
    pub data: Vec<u8>,
    /// Offset to ask for next.
    pub next_offset: i64,
    /// Bytes stored so far.
    pub total: i64,
    /// The job has ended and everything stored was returned: there will be no more.
    pub complete: bool,
    pub truncated: bool,
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
        self.add_event(
            &mut tx.tx,
            seq,
            project_id,
            kind,
            None,
            None,
            actor,
            Some(&msg),
        )
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
        self.add_event(
            &mut tx.tx,
            seq,
            project_id,
            EventKind::AgentCleanup,
            None,
            None,
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
        let now = now_ms();
        let mut out = Vec::new();
        for seq in self.expired_lease_candidates(now).await? {
            if let Some(e) = self.expire_lease(seq, now).await? {
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
    pub(crate) async fn expire_lease(&self, seq: i64, now: i64) -> Result<Option<Expired>> {
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
        let deleted = col::<Option<i64>>(&r, "deleted_at")?.is_some();
        let pending: Option<Operation> = col::<Option<String>>(&r, "pending_op")?
            .map(|p| p.parse().map_err(corrupt))
            .transpose()?;
        let unconfirmed = from == JobStatus::Dispatched && !confirmed;
        let (to, msg) = if unconfirmed && deleted {
            (
                JobStatus::Cancelled,
                "deleted before the agent confirmed its claim",
            )
        } else if unconfirmed && pending == Some(Operation::Cancel) {
            (
                JobStatus::Cancelled,
                "cancelled before the agent confirmed its claim",
            )
        } else if unconfirmed {
            (
                JobStatus::Queued,
                "the agent never confirmed its claim; the job is offered again",
            )
        } else {
            (
                JobStatus::Lost,
                "the agent's lease ran out and it did not report back",
            )
        };
        // A hold or release pending on a job that goes back to the queue takes effect here.
        let held = match (to, pending) {
            (JobStatus::Queued, Some(Operation::Hold)) => Some(1),
            (JobStatus::Queued, Some(Operation::Release)) => Some(0),
            _ => None,
        };
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
            self.add_event(
                &mut tx.tx,
                seq,
                project_id,
                EventKind::OperationDone,
                None,
                None,
                "server",
                Some(op.as_str()),
            )
            .await?;
        }
        if deleted && to.is_terminal() {
            sqlx::query("DELETE FROM jobs WHERE seq = $1")
                .bind(seq)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(Expired { job_id: id, to }))
    }

    /// Appends to a job's output stream at `offset`. Retried chunks (data the server has)
    /// are skipped; a gap is a conflict naming the expected offset. Beyond `max_bytes` the
    /// output is cut and marked truncated. Returns the stream's new length.
    pub async fn append_output(
        &self,
        agent: &AgentRef<'_>,
        job_id: &str,
        stream: OutputStream,
        offset: i64,
        data: &[u8],
        max_bytes: i64,
    ) -> Result<i64> {
        let col_name = match stream {
            OutputStream::Stdout => "stdout_bytes",
            OutputStream::Stderr => "stderr_bytes",
        };
        let mut tx = self.begin_write().await?;
        let held = self.lock_held(&mut tx.tx, agent, job_id).await?;
        let seq = held.seq;
        let len = match stream {
            OutputStream::Stdout => held.stdout_bytes,
            OutputStream::Stderr => held.stderr_bytes,
        };
        if offset > len {
            return Err(StoreError::Conflict(format!(
                "output offset {offset} leaves a gap; the stream has {len} bytes"
            )));
        }
        let skip = (len - offset) as usize;
        if skip >= data.len() {
            return Ok(len);
        }
        let room = (max_bytes - len).max(0) as usize;
        let new = &data[skip..];
        let take = new.len().min(room);
        if take > 0 {
            sqlx::query("INSERT INTO job_output (job_seq, stream, start_at, end_at, data) VALUES ($1, $2, $3, $4, $5)")
                .bind(seq)
                .bind(stream.as_str())
                .bind(len)
                .bind(len + take as i64)
                .bind(&new[..take])
                .execute(&mut *tx.tx)
                .await?;
        }
        let truncated = take < new.len();
        sqlx::query(&format!(
            "UPDATE jobs SET {col_name} = $1, output_truncated = CASE WHEN $2 = 1 THEN 1 ELSE output_truncated END WHERE seq = $3"
        ))
        .bind(len + take as i64)
        .bind(i64::from(truncated))
        .bind(seq)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(len + take as i64)
    }

    /// Reads up to `max` bytes of a job's output from `offset`.
    pub async fn read_output(
        &self,
        project_id: i64,
        job_id: &str,
        stream: OutputStream,
        offset: i64,
        max: i64,
    ) -> Result<OutputSlice> {
        let col_name = match stream {
            OutputStream::Stdout => "stdout_bytes",
            OutputStream::Stderr => "stderr_bytes",
        };
        let r = sqlx::query(&format!(
            "SELECT seq, {col_name} AS total, status, output_truncated FROM jobs WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL"
        ))
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        let seq: i64 = col(&r, "seq")?;
        let total: i64 = col(&r, "total")?;
        let status: JobStatus = col::<String>(&r, "status")?.parse().map_err(corrupt)?;
        let truncated = col::<i64>(&r, "output_truncated")? != 0;
        let offset = offset.clamp(0, total);
        let rows = sqlx::query(
            "SELECT start_at, data FROM job_output WHERE job_seq = $1 AND stream = $2 AND end_at > $3 \
             AND start_at < $4 ORDER BY start_at",
        )
        .bind(seq)
        .bind(stream.as_str())
        .bind(offset)
        .bind(offset + max)
        .fetch_all(&self.pool)
        .await?;
        let mut data = Vec::new();
        for row in &rows {
            let start: i64 = col(row, "start_at")?;
            let chunk: Vec<u8> = col(row, "data")?;
            let from = (offset + data.len() as i64 - start).max(0) as usize;
            let want = (max as usize).saturating_sub(data.len());
            let end = chunk.len().min(from + want);
            if from < end {
                data.extend_from_slice(&chunk[from..end]);
            }
        }
        let next_offset = offset + data.len() as i64;
        Ok(OutputSlice {
            complete: status.is_terminal() && next_offset >= total,
            data,
            next_offset,
            total,
            truncated,
        })
    }

    /// A mark that changes whenever either output stream of a job grows or its status changes
    /// (for readers that wait for output).
    pub async fn output_mark(&self, project_id: i64, job_id: &str) -> Result<(i64, String)> {
        let r = sqlx::query(
            "SELECT stdout_bytes + stderr_bytes AS total, status FROM jobs WHERE id = $1 AND project_id = $2",
        )
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        Ok((col(&r, "total")?, col(&r, "status")?))
    }

    /// Stores (or replaces) a result file of a job the token holds.
    pub async fn put_result(
        &self,
        agent: &AgentRef<'_>,
        job_id: &str,
        name: &str,
        data: &[u8],
        max_files: i64,
    ) -> Result<ResultFile> {
        let mut tx = self.begin_write().await?;
        let seq = self.lock_held(&mut tx.tx, agent, job_id).await?.seq;
        let count: i64 = col(
            &sqlx::query("SELECT COUNT(*) FROM job_results WHERE job_seq = $1 AND name <> $2")
                .bind(seq)
                .bind(name)
                .fetch_one(&mut *tx.tx)
                .await?,
            0,
        )?;
        if count >= max_files {
            return Err(StoreError::Conflict(format!(
                "the job has {count} result files, the most allowed"
            )));
        }
        let sha = hex::encode(Sha256::digest(data));
        let now = now_ms();
        sqlx::query("DELETE FROM job_results WHERE job_seq = $1 AND name = $2")
            .bind(seq)
            .bind(name)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("INSERT INTO job_results (job_seq, name, size, sha256, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(seq)
            .bind(name)
            .bind(data.len() as i64)
            .bind(&sha)
            .bind(data)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(ResultFile {
            name: name.to_string(),
            size: data.len() as u64,
            sha256: sha,
            created_at: fmt_ms(now),
        })
    }

    /// The result files of a job (without their bytes).
    pub async fn list_results(&self, project_id: i64, job_id: &str) -> Result<Vec<ResultFile>> {
        let seq = self.visible_seq(project_id, job_id).await?;
        let rows = sqlx::query("SELECT name, size, sha256, created_at FROM job_results WHERE job_seq = $1 ORDER BY name")
            .bind(seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ResultFile {
                    name: col(r, "name")?,
                    size: col::<i64>(r, "size")? as u64,
                    sha256: col(r, "sha256")?,
                    created_at: fmt_ms(col(r, "created_at")?),
                })
            })
            .collect()
    }

    /// One result file with its bytes.
    pub async fn get_result(
        &self,
        project_id: i64,
        job_id: &str,
        name: &str,
    ) -> Result<(ResultFile, Vec<u8>)> {
        let seq = self.visible_seq(project_id, job_id).await?;
        let r = sqlx::query("SELECT name, size, sha256, created_at, data FROM job_results WHERE job_seq = $1 AND name = $2")
            .bind(seq)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("result file"))?;
        Ok((
            ResultFile {
                name: col(&r, "name")?,
                size: col::<i64>(&r, "size")? as u64,
                sha256: col(&r, "sha256")?,
                created_at: fmt_ms(col(&r, "created_at")?),
            },
            col(&r, "data")?,
        ))
    }

    async fn visible_seq(&self, project_id: i64, job_id: &str) -> Result<i64> {
        let r = sqlx::query(
            "SELECT seq FROM jobs WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
        )
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        col(&r, 0)
    }
}
