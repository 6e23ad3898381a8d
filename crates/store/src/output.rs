//! Job output streams and result files: the agent appends and uploads them (as the job's
//! holder, through `lock_held`), clients read them. Output is kept in chunks by offset, so a
//! resent chunk is skipped and a gap is refused.

use crate::agent::AgentRef;
use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{JobStatus, OutputStream, ResultFile};
use sha2::{Digest, Sha256};

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

impl Store {
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
        // A manifest names the results as they were: it must be made and signed again.
        crate::provenance::drop_provenance(&mut tx.tx, seq).await?;
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

    /// The internal sequence number of a visible (not deleted) job of the project.
    pub(crate) async fn visible_seq(&self, project_id: i64, job_id: &str) -> Result<i64> {
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
