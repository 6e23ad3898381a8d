//! Jobs: submission (the inserts are `insert.rs`), reading one job, the rows and their
//! decoding, and the jobs waiting for a code bundle; listings are `listing.rs`. Every query is
//! scoped by project.

use crate::idempotency::{self, KeyRecord, Keys};
use crate::{col, corrupt, fmt_ms, Result, Store, StoreError};
use hpcsera_api_types::{
    GrantedResources, Job, JobStatus, PendingOperation, Resources, SubJobState,
};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Any;
use sqlx::FromRow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The message of the `created` event of a job that waits for its code bundle's approval
/// (a single job's and a sweep member's alike).
pub(crate) const AWAITING_CODE: &str = "waiting for the approval of its code bundle";
/// The columns of a job as stored, in the order of [`JobRow`] and [`JobParts`].
macro_rules! job_columns {
    () => {
        "j.seq, j.id, p.name AS project, s.name AS site, j.job_type, u.name AS owner, \
         j.status, j.parameters, j.resources, j.granted_resources, j.metadata, j.callback_url, j.held, j.pending_op, j.pending_op_at, j.pending_op_by, \
         j.batch_job_id, j.exit_code, j.message, j.sub_jobs, j.created_at, j.updated_at, j.finished_at, \
         j.stdout_bytes, j.stderr_bytes, w.id AS sweep, j.sweep_index"
    };
}

/// The tables of a job's columns: `jobs j` with its project, site, owner and sweep.
macro_rules! job_tables {
    () => {
        "FROM jobs j JOIN projects p ON p.id = j.project_id JOIN sites s ON s.id = j.site_id \
         JOIN users u ON u.id = j.owner_id LEFT JOIN sweeps w ON w.seq = j.sweep_seq"
    };
}

/// The columns of a [`JobRow`], by name.
pub(crate) const JOB_SELECT: &str = concat!("SELECT ", job_columns!(), " ", job_tables!());

/// A job as stored, decoded by column name from [`JOB_SELECT`].
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    seq: i64,
    id: String,
    project: String,
    site: String,
    job_type: String,
    owner: String,
    status: String,
    parameters: String,
    resources: String,
    granted_resources: Option<String>,
    metadata: Option<String>,
    callback_url: Option<String>,
    held: i64,
    pending_op: Option<String>,
    pending_op_at: Option<i64>,
    pending_op_by: Option<String>,
    batch_job_id: Option<String>,
    exit_code: Option<i64>,
    message: Option<String>,
    sub_jobs: String,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    stdout_bytes: i64,
    stderr_bytes: i64,
    sweep: Option<String>,
    sweep_index: Option<i64>,
}

/// A job as stored with its JSON columns parsed: made from a [`JobRow`], or read straight
/// from a page's JSON array (fields in [`crate::listing::PAGE_COLUMNS`]' order).
#[derive(serde::Deserialize)]
pub(crate) struct JobParts {
    pub(crate) seq: i64,
    id: String,
    project: String,
    site: String,
    job_type: String,
    owner: String,
    status: String,
    parameters: Map<String, Value>,
    resources: Resources,
    granted_resources: Option<GrantedResources>,
    metadata: Option<Value>,
    callback_url: Option<String>,
    held: i64,
    pending_op: Option<String>,
    pending_op_at: Option<i64>,
    pending_op_by: Option<String>,
    batch_job_id: Option<String>,
    exit_code: Option<i64>,
    message: Option<String>,
    sub_jobs: Vec<SubJobState>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    stdout_bytes: i64,
    stderr_bytes: i64,
    sweep: Option<String>,
    pub(crate) sweep_index: Option<i64>,
}

/// A validated job to insert.
#[derive(Debug, Clone)]
pub struct NewJobRecord<'a> {
    pub project_id: i64,
    pub owner_id: i64,
    pub site_id: i64,
    pub job_type: &'a str,
    pub parameters: &'a Map<String, Value>,
    /// As validated against the job type.
    pub resources: &'a Resources,
    pub metadata: Option<&'a Value>,
    pub callback_url: Option<&'a str>,
    /// Idempotency key and a hash of the request it came with.
    pub idempotency: Option<(&'a str, String)>,
    pub actor: &'a str,
    /// The job's code parameters: each bundle must exist in the project; while any is not
    /// approved the job is created `awaiting_approval`.
    pub code_refs: &'a [crate::CodeRef],
}

/// A job row to insert ([`Store::insert_job_rows`]): a single job's or a sweep member's.
pub(crate) struct JobInsert<'a> {
    pub id: String,
    pub project_id: i64,
    pub owner_id: i64,
    pub site_id: i64,
    pub job_type: &'a str,
    pub status: JobStatus,
    /// JSON text.
    pub parameters: String,
    /// JSON text.
    pub metadata: Option<String>,
    pub callback_url: Option<&'a str>,
    pub created_at: i64,
    /// A sweep member's sweep (its `seq`) and index.
    pub sweep: Option<(i64, u32)>,
    /// JSON text.
    pub resources: String,
}

/// Result of a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job: Job,
    /// False when an earlier submission with the same idempotency key is returned.
    pub created: bool,
}

/// The names a new job is answered with: its project's, site's and owner's.
#[derive(Debug, Clone)]
pub(crate) struct JobNames {
    pub project: String,
    pub site: String,
    pub owner: String,
}

/// Most (project, site, owner) triples [`NameCache`] holds; a full cache is emptied.
const MAX_CACHED_NAMES: usize = 10_000;

/// The names of (project, site, owner) id triples, so that a submission is answered without
/// reading its job back. Never stale: projects, sites and users are never renamed, and their
/// ids are never reused (`AUTOINCREMENT`, `BIGSERIAL`; nothing deletes a project or a user).
#[derive(Default)]
pub(crate) struct NameCache(RwLock<HashMap<(i64, i64, i64), Arc<JobNames>>>);

impl NameCache {
    fn get(&self, key: (i64, i64, i64)) -> Option<Arc<JobNames>> {
        self.0.read().ok()?.get(&key).cloned()
    }

    fn insert(&self, key: (i64, i64, i64), names: Arc<JobNames>) {
        if let Ok(mut m) = self.0.write() {
            if m.len() >= MAX_CACHED_NAMES {
                m.clear();
            }
            m.insert(key, names);
        }
    }
}

pub(crate) fn job_from_row(r: &AnyRow) -> Result<(i64, Job)> {
    job_from(JobRow::from_row(r)?)
}

pub(crate) fn job_from(r: JobRow) -> Result<(i64, Job)> {
    JobParts {
        seq: r.seq,
        id: r.id,
        project: r.project,
        site: r.site,
        job_type: r.job_type,
        owner: r.owner,
        status: r.status,
        parameters: serde_json::from_str(&r.parameters).map_err(corrupt)?,
        resources: serde_json::from_str(&r.resources).map_err(corrupt)?,
        granted_resources: r
            .granted_resources
            .map(|g| serde_json::from_str(&g))
            .transpose()
            .map_err(corrupt)?,
        metadata: r
            .metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(corrupt)?,
        callback_url: r.callback_url,
        held: r.held,
        pending_op: r.pending_op,
        pending_op_at: r.pending_op_at,
        pending_op_by: r.pending_op_by,
        batch_job_id: r.batch_job_id,
        exit_code: r.exit_code,
        message: r.message,
        sub_jobs: serde_json::from_str(&r.sub_jobs).map_err(corrupt)?,
        created_at: r.created_at,
        updated_at: r.updated_at,
        finished_at: r.finished_at,
        stdout_bytes: r.stdout_bytes,
        stderr_bytes: r.stderr_bytes,
        sweep: r.sweep,
        sweep_index: r.sweep_index,
    }
    .into_job()
}

impl JobParts {
    pub(crate) fn into_job(self) -> Result<(i64, Job)> {
        let r = self;
        let pending_operation = match r.pending_op {
            Some(op) => Some(PendingOperation {
                operation: op.parse().map_err(corrupt)?,
                requested_at: fmt_ms(r.pending_op_at.unwrap_or(0)),
                requested_by: r.pending_op_by.unwrap_or_default(),
            }),
            None => None,
        };
        let job = Job {
            id: r.id,
            project: r.project,
            site: r.site,
            job_type: r.job_type,
            owner: r.owner,
            status: r.status.parse().map_err(corrupt)?,
            parameters: r.parameters,
            resources: r.resources,
            granted_resources: r.granted_resources,
            metadata: r.metadata,
            callback_url: r.callback_url,
            held: r.held != 0,
            pending_operation,
            batch_job_id: r.batch_job_id,
            exit_code: r.exit_code.map(|c| c as i32),
            message: r.message,
            sub_jobs: r.sub_jobs,
            created_at: fmt_ms(r.created_at),
            updated_at: fmt_ms(r.updated_at),
            finished_at: r.finished_at.map(fmt_ms),
            output_bytes: hpcsera_api_types::OutputBytes {
                stdout: r.stdout_bytes.max(0) as u64,
                stderr: r.stderr_bytes.max(0) as u64,
            },
            sweep: r.sweep,
            sweep_index: r.sweep_index.and_then(|i| u32::try_from(i).ok()),
        };
        Ok((r.seq, job))
    }
}

impl Store {
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

    /// Inserts a job in status `queued` (or returns the job an earlier request with the
    /// same idempotency key created).
    pub async fn create_job<'a>(&self, new: &'a NewJobRecord<'_>) -> Result<Submitted> {
        let key = KeyRecord::of(new.project_id, new.owner_id, &new.idempotency);
        let find = |k: KeyRecord<'a>| async move {
            match idempotency::find(&self.pool, Keys::Jobs, &k).await? {
                Some(id) => self.get_job(k.project_id, &id).await.map(Some),
                None => Ok(None),
            }
        };
        let (job, created) = idempotency::create_once(key, find, || async {
            let names = self.job_names(new).await?;
            self.insert_job_grouped(new, names).await
        })
        .await?;
        Ok(Submitted { job, created })
    }

    /// The names of a new job's project, site and owner, from [`NameCache`] (one query the
    /// first time).
    async fn job_names(&self, new: &NewJobRecord<'_>) -> Result<Arc<JobNames>> {
        let key = (new.project_id, new.site_id, new.owner_id);
        if let Some(n) = self.names.get(key) {
            return Ok(n);
        }
        let r = sqlx::query(
            "SELECT p.name AS project, s.name AS site, u.name AS owner FROM projects p, sites s, users u \
             WHERE p.id = $1 AND s.id = $2 AND u.id = $3",
        )
        .bind(new.project_id)
        .bind(new.site_id)
        .bind(new.owner_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("project, site or user"))?;
        let names = Arc::new(JobNames {
            project: col(&r, "project")?,
            site: col(&r, "site")?,
            owner: col(&r, "owner")?,
        });
        self.names.insert(key, Arc::clone(&names));
        Ok(names)
    }

    /// A job of the project (deleted jobs are not found).
    pub async fn get_job(&self, project_id: i64, job_id: &str) -> Result<Job> {
        self.find_job(project_id, job_id, " AND j.deleted_at IS NULL")
            .await
    }

    /// A job of the project, also when it was deleted while an agent held it (for webhooks).
    pub(crate) async fn get_job_any(&self, project_id: i64, job_id: &str) -> Result<Job> {
        self.find_job(project_id, job_id, "").await
    }

    async fn find_job(&self, project_id: i64, job_id: &str, and: &str) -> Result<Job> {
        let r = sqlx::query(&format!(
            "{JOB_SELECT} WHERE j.id = $1 AND j.project_id = $2{and}"
        ))
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        Ok(job_from_row(&r)?.1)
    }

    /// The project's jobs that wait (`awaiting_approval`) for code bundle `code_id`, oldest
    /// first, at most `limit` (1 to 1000).
    pub async fn jobs_awaiting_bundle(
        &self,
        project_id: i64,
        code_id: &str,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "{JOB_SELECT} WHERE j.project_id = $1 AND j.status = $2 AND j.deleted_at IS NULL \
             AND j.seq IN (SELECT c.job_seq FROM job_code c WHERE c.project_id = $1 AND c.code_id = $3) \
             ORDER BY j.seq LIMIT $4"
        ))
        .bind(project_id)
        .bind(JobStatus::AwaitingApproval.as_str())
        .bind(code_id)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(job_from_row(r)?.1)).collect()
    }

    /// How many of the project's jobs wait for each of its code bundles (bundles no job
    /// waits for are left out), in one query.
    pub async fn jobs_awaiting_each_bundle(
        &self,
        project_id: i64,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT c.code_id, COUNT(*) AS n FROM job_code c JOIN jobs j ON j.seq = c.job_seq \
             WHERE c.project_id = $1 AND j.status = $2 AND j.deleted_at IS NULL GROUP BY c.code_id",
        )
        .bind(project_id)
        .bind(JobStatus::AwaitingApproval.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((col(r, "code_id")?, col(r, "n")?)))
            .collect()
    }
}
