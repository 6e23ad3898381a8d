//! Retention: finished jobs (with their events, output, result files, webhook deliveries and
//! idempotency keys, which cascade) and old audit records are removed after an age.

use crate::transition::TERMINAL;
use crate::{Result, Store};

/// Rows deleted per transaction, so that a large clean-up never holds the write lock long.
const BATCH: i64 = 1000;

impl Store {
    /// Deletes jobs that ended before `before` (Unix ms). Returns how many.
    pub async fn prune_jobs(&self, before: i64) -> Result<u64> {
        let sql = format!(
            "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE finished_at IS NOT NULL \
             AND finished_at < $1 AND status IN {terminal} LIMIT $2)",
            terminal = TERMINAL.as_str()
        );
        let n = self.delete_in_batches(&sql, before).await?;
        // Sweeps whose members have all gone (the sweep rows are small; one statement).
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM sweeps WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.sweep_seq = sweeps.seq)",
        )
        .bind(before)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Deletes audit records older than `before` (Unix ms), and the counts of failed
    /// authentications of that age (few rows: one per minute, reason and peer). Returns how
    /// many audit records went.
    pub async fn prune_audit(&self, before: i64) -> Result<u64> {
        let total = self
            .delete_in_batches(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
                before,
            )
            .await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM auth_failures WHERE minute < $1")
            .bind(before)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(total)
    }

    /// Runs `sql` (a DELETE of at most `$2` rows older than `$1`) one transaction at a time
    /// until a batch deletes fewer than [`BATCH`] rows. Returns how many rows went.
    async fn delete_in_batches(&self, sql: &str, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let r = sqlx::query(sql)
                .bind(before)
                .bind(BATCH)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
            total += r.rows_affected();
            if r.rows_affected() < BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
