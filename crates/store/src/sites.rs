//! Sites and the job types their agents publish.

use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{JobTypeSpec, Site};

impl Store {
    /// Replaces the job types of `site` (creating the site on first publication) and
    /// records the agent's version and host.
    pub async fn publish_job_types(
        &self,
        site: &str,
        agent_version: Option<&str>,
        agent_host: Option<&str>,
        job_types: &[JobTypeSpec],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let site_id = upsert_site(&mut tx.tx, site, now).await?;
        sqlx::query(
            "UPDATE sites SET agent_version = $1, agent_host = $2, last_seen_at = $3 WHERE id = $4",
        )
        .bind(agent_version)
        .bind(agent_host)
        .bind(now)
        .bind(site_id)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM job_types WHERE site_id = $1")
            .bind(site_id)
            .execute(&mut *tx.tx)
            .await?;
        for jt in job_types {
            let spec = serde_json::to_string(jt).map_err(corrupt)?;
            sqlx::query(
                "INSERT INTO job_types (site_id, name, spec, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(site_id)
            .bind(&jt.name)
            .bind(spec)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }

    /// Creates a site with no job types (admin). Creating an existing site is not an error.
    pub async fn add_site(&self, site: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        upsert_site(&mut tx.tx, site, now_ms()).await?;
        tx.commit().await
    }

    /// Records that an agent of `site` was heard from (and its version, when it says).
    pub async fn touch_site(&self, site: &str, agent_version: Option<&str>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE sites SET last_seen_at = $1, agent_version = COALESCE($2, agent_version) WHERE name = $3",
        )
        .bind(now_ms())
        .bind(agent_version)
        .bind(site)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// All sites with the names of their job types.
    pub async fn list_sites(&self) -> Result<Vec<Site>> {
        let rows = sqlx::query(
            "SELECT s.name, s.last_seen_at, s.agent_version, s.agent_host, jt.name \
             FROM sites s LEFT JOIN job_types jt ON jt.site_id = s.id ORDER BY s.name, jt.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Site> = Vec::new();
        for r in &rows {
            let name: String = col(r, 0)?;
            if out.last().map(|s| &s.name) != Some(&name) {
                out.push(Site {
                    name,
                    last_seen_at: col::<Option<i64>>(r, 1)?.map(fmt_ms),
                    agent_version: col(r, 2)?,
                    agent_host: col(r, 3)?,
                    job_types: Vec::new(),
                });
            }
            if let (Some(jt), Some(last)) = (col::<Option<String>>(r, 4)?, out.last_mut()) {
                last.job_types.push(jt);
            }
        }
        Ok(out)
    }

    /// The job types of a site; `NotFound("site")` when there is no such site.
    pub async fn job_types(&self, site: &str) -> Result<Vec<JobTypeSpec>> {
        let rows = sqlx::query(
            "SELECT s.id, jt.spec FROM sites s LEFT JOIN job_types jt ON jt.site_id = s.id \
             WHERE s.name = $1 ORDER BY jt.name",
        )
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("site"));
        }
        let mut out = Vec::new();
        for r in &rows {
            if let Some(spec) = col::<Option<String>>(r, 1)? {
                out.push(serde_json::from_str(&spec).map_err(corrupt)?);
            }
        }
        Ok(out)
    }

    /// One job type of a site, with the site's id.
    pub async fn job_type(&self, site: &str, name: &str) -> Result<(i64, JobTypeSpec)> {
        let row = sqlx::query(
            "SELECT s.id, jt.spec FROM sites s LEFT JOIN job_types jt ON jt.site_id = s.id AND jt.name = $2 \
             WHERE s.name = $1",
        )
        .bind(site)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("site"))?;
        let spec: Option<String> = col(&row, 1)?;
        let spec = spec.ok_or(StoreError::NotFound("job type"))?;
        Ok((col(&row, 0)?, serde_json::from_str(&spec).map_err(corrupt)?))
    }
}

async fn upsert_site(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    site: &str,
    now: i64,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO sites (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(site)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let r = sqlx::query("SELECT id FROM sites WHERE name = $1")
        .bind(site)
        .fetch_one(&mut **tx)
        .await?;
    col(&r, 0)
}
