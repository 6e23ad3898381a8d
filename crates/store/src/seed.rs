//! Bulk insertion of synthetic finished jobs, for the benchmark harness (`hpcsera bench seed`)
//! that measures listing with a million jobs stored. The server never calls this.
//!
//! The rows are made by the database itself (one `INSERT … SELECT` over a generated series per
//! batch), so a million jobs take seconds, not a million round trips. They are `completed`
//! jobs without events, output or results: enough for listings and reads, nothing an agent
//! would claim.

use crate::{now_ms, Backend, Result, Store, StoreError};

/// Rows per `INSERT … SELECT` (and per transaction).
const BATCH: i64 = 50_000;

impl Store {
    /// Inserts `n` completed jobs of `job_type` at `site` (created if needed), owned by `user`
    /// in `project`, newest last, with small parameters. Returns how many were inserted.
    pub async fn seed_jobs(
        &self,
        user: &str,
        project: &str,
        site: &str,
        job_type: &str,
        n: i64,
    ) -> Result<i64> {
        self.add_site(site).await?;
        let mut tx = self.begin_write().await?;
        let (uid, pid) = crate::auth::user_and_project(&mut tx.tx, user, project).await?;
        let sid: i64 = crate::col(
            &sqlx::query("SELECT id FROM sites WHERE name = $1")
                .bind(site)
                .fetch_optional(&mut *tx.tx)
                .await?
                .ok_or(StoreError::NotFound("site"))?,
            0,
        )?;
        tx.commit().await?;
        let start = now_ms() - n;
        let mut done = 0;
        while done < n {
            let count = BATCH.min(n - done);
            let mut tx = self.begin_write().await?;
            sqlx::query(&self.seed_sql())
                .bind(count)
                .bind(pid)
                .bind(uid)
                .bind(sid)
                .bind(job_type)
                .bind(start + done)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
            done += count;
        }
        // As after any bulk load: fresh statistics, or PostgreSQL plans for the empty table
        // it last saw until autovacuum catches up.
        sqlx::query("ANALYZE jobs").execute(&self.pool).await?;
        self.drop_stat4_samples().await?;
        Ok(done)
    }

    /// One batch: `$1` rows, project `$2`, owner `$3`, site `$4`, job type `$5`, times from `$6`.
    fn seed_sql(&self) -> String {
        let (series, id) = match self.backend {
            Backend::Postgres => (
                "SELECT g AS i FROM generate_series(1, $1::bigint) g",
                "gen_random_uuid()::text",
            ),
            Backend::Sqlite => (
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1) SELECT i FROM s",
                "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) \
                 || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))",
            ),
        };
        format!(
            "INSERT INTO jobs (id, project_id, owner_id, site_id, job_type, status, parameters, \
             sub_jobs, created_at, updated_at, finished_at, exit_code) \
             SELECT {id}, $2, $3, $4, $5, 'completed', '{{\"steps\":' || CAST(i AS TEXT) || '}}', \
             '[]', $6 + i, $6 + i, $6 + i, 0 FROM ({series}) AS series"
        )
    }
}
