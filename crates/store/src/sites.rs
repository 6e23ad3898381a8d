//! Sites, and what each project's agents publish for them: job types and agent health.
//!
//! **Invariant:** job types and agent health belong to (site, project). Every function here
//! that reads or writes them takes the project, so one project's agent can never change
//! what another project sees or runs at a site. Site names themselves are global.

use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{JobTypeSpec, Site};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Most job types [`JobTypeCache`] holds; a full cache is emptied.
const MAX_CACHED_JOB_TYPES: usize = 10_000;

/// A job type as [`Store::job_type`] found it: the site's id, the spec, when it was read.
type CachedJobType = (i64, Arc<JobTypeSpec>, Instant);

/// The job types submissions name, by (project, site, name), so that a submission does not
/// read and parse its job type's spec from the database each time. A publication through
/// this process empties it at once (before `publish_job_types` returns, and a lookup that
/// read the database before cannot put its answer in afterwards: the epoch); a publication
/// through another process (another replica) is seen within [`crate::AUTH_RECHECK`], after
/// which an entry is read again. Only found job types are cached.
#[derive(Default)]
pub(crate) struct JobTypeCache {
    entries: RwLock<HashMap<(i64, String, String), CachedJobType>>,
    epoch: AtomicU64,
}

impl JobTypeCache {
    fn get(&self, key: &(i64, String, String)) -> Option<(i64, Arc<JobTypeSpec>)> {
        let entries = self.entries.read().ok()?;
        let (site_id, spec, at) = entries.get(key)?;
        (at.elapsed() < crate::AUTH_RECHECK).then(|| (*site_id, Arc::clone(spec)))
    }

    fn insert(&self, epoch: u64, key: (i64, String, String), site_id: i64, spec: Arc<JobTypeSpec>) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if entries.len() >= MAX_CACHED_JOB_TYPES {
            entries.clear();
        }
        entries.insert(key, (site_id, spec, Instant::now()));
    }

    fn clear(&self) {
        let mut entries = match self.entries.write() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// Whether a project sees a site: an admin listed it for everyone, or the project has an
/// agent or job types there.
const VISIBLE: &str = "(s.listed = 1 OR EXISTS (SELECT 1 FROM site_agents a WHERE a.site_id = s.id AND a.project_id = $1) \
     OR EXISTS (SELECT 1 FROM job_types t WHERE t.site_id = s.id AND t.project_id = $1))";

impl Store {
    /// Replaces the job types that the project's agent publishes for `site` (creating the
    /// site on first publication) and records the agent's version and host for the project.
    pub async fn publish_job_types(
        &self,
        site: &str,
        project_id: i64,
        agent_version: Option<&str>,
        agent_host: Option<&str>,
        job_types: &[JobTypeSpec],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let site_id = upsert_site(&mut tx.tx, site, now).await?;
        sqlx::query(
            "INSERT INTO site_agents (site_id, project_id, agent_version, agent_host, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (site_id, project_id) DO UPDATE SET \
             agent_version = EXCLUDED.agent_version, agent_host = EXCLUDED.agent_host, last_seen_at = EXCLUDED.last_seen_at",
        )
        .bind(site_id)
        .bind(project_id)
        .bind(agent_version)
        .bind(agent_host)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM job_types WHERE site_id = $1 AND project_id = $2")
            .bind(site_id)
            .bind(project_id)
            .execute(&mut *tx.tx)
            .await?;
        for jt in job_types {
            let spec = serde_json::to_string(jt).map_err(corrupt)?;
            sqlx::query(
                "INSERT INTO job_types (site_id, project_id, name, spec, updated_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(site_id)
            .bind(project_id)
            .bind(&jt.name)
            .bind(spec)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        self.job_types.clear();
        Ok(())
    }

    /// Records the public key (`ed25519:…`) the project's agent of `site` published with its
    /// job types (after [`Store::publish_job_types`]).
    pub async fn set_agent_key(&self, site: &str, project_id: i64, key: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE site_agents SET agent_key = $3 WHERE project_id = $2 \
             AND site_id = (SELECT id FROM sites WHERE name = $1)",
        )
        .bind(site)
        .bind(project_id)
        .bind(key)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Creates a site with no job types (admin), listed for every project. Adding an existing
    /// site lists it for everyone and is not an error.
    pub async fn add_site(&self, site: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = upsert_site(&mut tx.tx, site, now_ms()).await?;
        sqlx::query("UPDATE sites SET listed = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Records that the project's agent of `site` was heard from (and its version, when it
    /// says). A site that does not exist yet is left alone: it appears with the first
    /// publication of job types.
    pub async fn touch_site(
        &self,
        site: &str,
        project_id: i64,
        agent_version: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO site_agents (site_id, project_id, agent_version, last_seen_at) \
             SELECT id, $2, $3, $4 FROM sites WHERE name = $1 \
             ON CONFLICT (site_id, project_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at, \
             agent_version = COALESCE(EXCLUDED.agent_version, site_agents.agent_version)",
        )
        .bind(site)
        .bind(project_id)
        .bind(agent_version)
        .bind(now_ms())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The sites the project sees, with the project's agent health and job type names there.
    pub async fn list_sites(&self, project_id: i64) -> Result<Vec<Site>> {
        let rows = sqlx::query(&format!(
            "SELECT s.name, a.last_seen_at, a.agent_version, a.agent_host, a.agent_key, jt.name AS job_type FROM sites s \
             LEFT JOIN site_agents a ON a.site_id = s.id AND a.project_id = $1 \
             LEFT JOIN job_types jt ON jt.site_id = s.id AND jt.project_id = $1 \
             WHERE {VISIBLE} ORDER BY s.name, jt.name"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Site> = Vec::new();
        for r in &rows {
            let name: String = col(r, "name")?;
            if out.last().map(|s| &s.name) != Some(&name) {
                out.push(Site {
                    name,
                    last_seen_at: col::<Option<i64>>(r, "last_seen_at")?.map(fmt_ms),
                    agent_version: col(r, "agent_version")?,
                    agent_host: col(r, "agent_host")?,
                    agent_key: col(r, "agent_key")?,
                    job_types: Vec::new(),
                });
            }
            if let (Some(jt), Some(last)) = (col::<Option<String>>(r, "job_type")?, out.last_mut())
            {
                last.job_types.push(jt);
            }
        }
        Ok(out)
    }

    /// Every site with each project's view of it (admin): one entry per (site, project) that
    /// has an agent or job types there, and one without a project for a site that has none.
    pub async fn list_site_projects(&self) -> Result<Vec<(Option<String>, Site)>> {
        let rows = sqlx::query(
            "SELECT s.name, p.name AS project, a.last_seen_at, a.agent_version, a.agent_host, jt.name AS job_type FROM sites s \
             LEFT JOIN (SELECT site_id, project_id FROM site_agents UNION SELECT site_id, project_id FROM job_types) sp \
             ON sp.site_id = s.id LEFT JOIN projects p ON p.id = sp.project_id \
             LEFT JOIN site_agents a ON a.site_id = s.id AND a.project_id = sp.project_id \
             LEFT JOIN job_types jt ON jt.site_id = s.id AND jt.project_id = sp.project_id \
             ORDER BY s.name, p.name, jt.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(Option<String>, Site)> = Vec::new();
        for r in &rows {
            let name: String = col(r, "name")?;
            let project: Option<String> = col(r, "project")?;
            if out.last().map(|(p, s)| (p, &s.name)) != Some((&project, &name)) {
                out.push((
                    project,
                    Site {
                        name,
                        last_seen_at: col::<Option<i64>>(r, "last_seen_at")?.map(fmt_ms),
                        agent_version: col(r, "agent_version")?,
                        agent_host: col(r, "agent_host")?,
                        agent_key: None,
                        job_types: Vec::new(),
                    },
                ));
            }
            if let (Some(jt), Some((_, last))) =
                (col::<Option<String>>(r, "job_type")?, out.last_mut())
            {
                last.job_types.push(jt);
            }
        }
        Ok(out)
    }

    /// The project's job types at a site; `NotFound("site")` when the project does not see
    /// such a site.
    pub async fn job_types(&self, site: &str, project_id: i64) -> Result<Vec<JobTypeSpec>> {
        let rows = sqlx::query(&format!(
            "SELECT s.id, jt.spec FROM sites s \
             LEFT JOIN job_types jt ON jt.site_id = s.id AND jt.project_id = $1 \
             WHERE s.name = $2 AND {VISIBLE} ORDER BY jt.name"
        ))
        .bind(project_id)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound("site"));
        }
        let mut out = Vec::new();
        for r in &rows {
            if let Some(spec) = col::<Option<String>>(r, "spec")? {
                out.push(serde_json::from_str(&spec).map_err(corrupt)?);
            }
        }
        Ok(out)
    }

    /// All of the project's job types, at every site, by site and name (one query, for the
    /// sites page).
    pub async fn project_job_types(&self, project_id: i64) -> Result<Vec<(String, JobTypeSpec)>> {
        let rows = sqlx::query(
            "SELECT s.name, jt.spec FROM job_types jt JOIN sites s ON s.id = jt.site_id \
             WHERE jt.project_id = $1 ORDER BY s.name, jt.name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let spec: String = col(r, "spec")?;
                Ok((
                    col(r, "name")?,
                    serde_json::from_str(&spec).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    /// One of the project's job types at a site, with the site's id (from [`JobTypeCache`]
    /// when it was read lately).
    pub async fn job_type(
        &self,
        site: &str,
        project_id: i64,
        name: &str,
    ) -> Result<(i64, JobTypeSpec)> {
        let key = (project_id, site.to_string(), name.to_string());
        if let Some((site_id, spec)) = self.job_types.get(&key) {
            return Ok((site_id, (*spec).clone()));
        }
        let epoch = self.job_types.epoch.load(Ordering::Acquire);
        let (site_id, spec) = self.job_type_uncached(site, project_id, name).await?;
        self.job_types
            .insert(epoch, key, site_id, Arc::new(spec.clone()));
        Ok((site_id, spec))
    }

    async fn job_type_uncached(
        &self,
        site: &str,
        project_id: i64,
        name: &str,
    ) -> Result<(i64, JobTypeSpec)> {
        let row = sqlx::query(&format!(
            "SELECT s.id, jt.spec FROM sites s \
             LEFT JOIN job_types jt ON jt.site_id = s.id AND jt.project_id = $1 AND jt.name = $3 \
             WHERE s.name = $2 AND {VISIBLE}"
        ))
        .bind(project_id)
        .bind(site)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("site"))?;
        let spec: Option<String> = col(&row, "spec")?;
        let spec = spec.ok_or(StoreError::NotFound("job type"))?;
        Ok((
            col(&row, "id")?,
            serde_json::from_str(&spec).map_err(corrupt)?,
        ))
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
