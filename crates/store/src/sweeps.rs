//! Sweeps: many jobs of one job type stored in ONE transaction (multi-row inserts in
//! chunks, never one round trip per member), their counts by status (one `GROUP BY` on
//! `jobs(sweep_seq, status)`), member pages in index order, and idempotency keys.
//!
//! Members are ordinary job rows with `sweep_seq` and `sweep_index`; operations and deletion
//! of a whole sweep are in `sweep_ops.rs`. Every query takes the project.

use crate::idempotency::{self, KeyRecord, Keys};
use crate::jobs::JobInsert;
use crate::listing::{Bind, Binds, PageOrder};
use crate::util::in_list;
use crate::{col, corrupt, fmt_ms, now_ms, CodeRef, Result, Store, StoreError};
use hpcsera_api_types::{CodeStatus, Job, JobStatus, Resources, Sweep, SweepCounts};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, FromRow};
use std::collections::HashMap;

/// One validated member to insert.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub index: u32,
    pub parameters: Map<String, Value>,
    pub code_refs: Vec<CodeRef>,
}

/// A validated sweep to insert.
#[derive(Debug, Clone)]
pub struct NewSweepRecord<'a> {
    pub project_id: i64,
    pub owner_id: i64,
    pub site_id: i64,
    pub job_type: &'a str,
    /// The base parameters as sent (kept with the sweep).
    pub parameters: &'a Map<String, Value>,
    /// The validated resources every member asks for.
    pub resources: &'a Resources,
    pub metadata: Option<&'a Value>,
    pub callback_url: Option<&'a str>,
    pub members: &'a [NewMember],
    /// Idempotency key and a hash of the request it came with.
    pub idempotency: Option<(&'a str, String)>,
    pub actor: &'a str,
}

/// Result of a sweep submission.
#[derive(Debug, Clone)]
pub struct SubmittedSweep {
    pub sweep: Sweep,
    /// False when an earlier submission with the same idempotency key is returned.
    pub created: bool,
}

/// A sweep as stored (without its counts).
#[derive(sqlx::FromRow)]
struct SweepRow {
    seq: i64,
    id: String,
    project: String,
    site: String,
    job_type: String,
    owner: String,
    parameters: String,
    resources: Option<String>,
    metadata: Option<String>,
    callback_url: Option<String>,
    members: i64,
    created_at: i64,
}

const SWEEP_SELECT: &str = "SELECT w.seq, w.id, p.name AS project, s.name AS site, w.job_type, \
     u.name AS owner, w.parameters, w.resources, w.metadata, w.callback_url, w.members, w.created_at \
     FROM sweeps w JOIN projects p ON p.id = w.project_id JOIN sites s ON s.id = w.site_id \
     JOIN users u ON u.id = w.owner_id";

fn json_opt(s: Option<String>) -> Result<Option<Value>> {
    s.map(|m| serde_json::from_str(&m))
        .transpose()
        .map_err(corrupt)
}

fn sweep_from(r: SweepRow, counts: SweepCounts) -> Result<(i64, Sweep)> {
    Ok((
        r.seq,
        Sweep {
            id: r.id,
            project: r.project,
            site: r.site,
            job_type: r.job_type,
            owner: r.owner,
            parameters: serde_json::from_str(&r.parameters).map_err(corrupt)?,
            resources: match r.resources {
                Some(t) => serde_json::from_str(&t).map_err(corrupt)?,
                None => Resources::default(),
            },
            metadata: json_opt(r.metadata)?,
            callback_url: r.callback_url,
            members: r.members.max(0) as u64,
            counts,
            created_at: fmt_ms(r.created_at),
        },
    ))
}

impl Store {
    /// Inserts a sweep and all its members (`queued`, or `awaiting_approval` while a code
    /// bundle they name is not approved) with their `created` events, in one transaction; or
    /// returns the sweep an earlier request with the same idempotency key created.
    pub async fn create_sweep<'a>(&self, new: &'a NewSweepRecord<'_>) -> Result<SubmittedSweep> {
        let key = KeyRecord::of(new.project_id, new.owner_id, &new.idempotency);
        let find = |k: KeyRecord<'a>| async move {
            match idempotency::find(&self.pool, Keys::Sweeps, &k).await? {
                Some(id) => self.get_sweep(k.project_id, &id).await.map(Some),
                None => Ok(None),
            }
        };
        let (sweep, created) =
            idempotency::create_once(key, find, || self.insert_sweep(new)).await?;
        Ok(SubmittedSweep { sweep, created })
    }

    async fn insert_sweep(&self, new: &NewSweepRecord<'_>) -> Result<Sweep> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let to_text = |v: Option<&Value>| v.map(serde_json::to_string).transpose();
        let mut tx = self.begin_write().await?;
        let approved = self.sweep_code_status(&mut tx.tx, new).await?;
        let r = sqlx::query(
            "INSERT INTO sweeps (id, project_id, owner_id, site_id, job_type, parameters, resources, metadata, \
             callback_url, members, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
        )
        .bind(&id)
        .bind(new.project_id)
        .bind(new.owner_id)
        .bind(new.site_id)
        .bind(new.job_type)
        .bind(serde_json::to_string(new.parameters).map_err(corrupt)?)
        .bind(serde_json::to_string(new.resources).map_err(corrupt)?)
        .bind(to_text(new.metadata).map_err(corrupt)?)
        .bind(new.callback_url)
        .bind(new.members.len() as i64)
        .bind(now)
        .fetch_one(&mut *tx.tx)
        .await?;
        let sweep_seq: i64 = col(&r, 0)?;
        let created = self
            .insert_members(&mut tx.tx, new, sweep_seq, &approved, now)
            .await?;
        // The members' code references, in multi-row inserts.
        let code_refs: Vec<(i64, &str, i64, &str)> = new
            .members
            .iter()
            .zip(&created)
            .flat_map(|(m, (seq, _, _))| {
                m.code_refs
                    .iter()
                    .map(move |(param, code)| (*seq, param.as_str(), new.project_id, code.as_str()))
            })
            .collect();
        crate::code_refs::insert_code_refs(&mut tx.tx, &code_refs).await?;
        // The `created` events, as a single job's (one multi-row insert per chunk).
        self.lock_event_order(&mut tx.tx).await?;
        let events: Vec<_> = created
            .iter()
            .map(|(seq, _, status)| {
                crate::insert::created_event(
                    *seq,
                    new.project_id,
                    *status,
                    new.actor,
                    new.callback_url.is_some(),
                )
            })
            .collect();
        self.insert_events_bulk(&mut tx.tx, &events, now).await?;
        if let Some(k) = KeyRecord::of(new.project_id, new.owner_id, &new.idempotency) {
            idempotency::insert(&mut tx.tx, Keys::Sweeps, &k, sweep_seq, now).await?;
        }
        tx.commit().await?;
        self.get_sweep(new.project_id, &id).await
    }

    /// The members' job rows (multi-row inserts, [`Store::insert_job_rows`]); returns
    /// `(seq, index, status)` of each, in the order of `new.members`.
    async fn insert_members(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        new: &NewSweepRecord<'_>,
        sweep_seq: i64,
        approved: &HashMap<String, bool>,
        now: i64,
    ) -> Result<Vec<(i64, u32, JobStatus)>> {
        let resources = serde_json::to_string(new.resources).map_err(corrupt)?;
        let mut rows = Vec::with_capacity(new.members.len());
        for m in new.members {
            let ready = m
                .code_refs
                .iter()
                .all(|(_, c)| approved.get(c).copied().unwrap_or(false));
            rows.push(JobInsert {
                id: uuid::Uuid::now_v7().to_string(),
                project_id: new.project_id,
                owner_id: new.owner_id,
                site_id: new.site_id,
                job_type: new.job_type,
                status: if ready {
                    JobStatus::Queued
                } else {
                    JobStatus::AwaitingApproval
                },
                parameters: serde_json::to_string(&m.parameters).map_err(corrupt)?,
                metadata: None,
                callback_url: new.callback_url,
                created_at: now,
                sweep: Some((sweep_seq, m.index)),
                resources: resources.clone(),
            });
        }
        let seqs = self.insert_job_rows(tx, &rows).await?;
        Ok(seqs
            .into_iter()
            .zip(new.members.iter().zip(&rows))
            .map(|(seq, (m, row))| (seq, m.index, row.status))
            .collect())
    }

    /// Whether each code bundle the members name is approved; 422 naming the first member
    /// that names a bundle the project does not have or rejected.
    async fn sweep_code_status(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        new: &NewSweepRecord<'_>,
    ) -> Result<HashMap<String, bool>> {
        let mut first_use: HashMap<&str, (u32, &str)> = HashMap::new();
        for m in new.members {
            for (param, code) in &m.code_refs {
                first_use
                    .entry(code.as_str())
                    .or_insert((m.index, param.as_str()));
            }
        }
        let ids: Vec<&str> = first_use.keys().copied().collect();
        let statuses = self.code_statuses(tx, new.project_id, &ids).await?;
        let mut out = HashMap::new();
        let mut errs = Vec::new();
        for (code, (index, param)) in &first_use {
            let field = format!("members[{index}].parameters.{param}");
            let status = statuses.get(*code);
            match crate::code_refs::code_ref_problem(field, code, status) {
                Some(problem) => errs.push(problem),
                None => {
                    out.insert(code.to_string(), status == Some(&CodeStatus::Approved));
                }
            }
        }
        if !errs.is_empty() {
            errs.sort_by(|a, b| a.field.cmp(&b.field));
            return Err(StoreError::Invalid(errs));
        }
        Ok(out)
    }

    /// Counts of each sweep's members by status, in one `GROUP BY` query.
    async fn sweep_counts(&self, seqs: &[i64]) -> Result<HashMap<i64, SweepCounts>> {
        let mut pairs: HashMap<i64, Vec<(JobStatus, u64)>> = HashMap::new();
        if seqs.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT sweep_seq, status, COUNT(*) AS n FROM jobs WHERE sweep_seq IN ({}) \
             AND deleted_at IS NULL GROUP BY sweep_seq, status",
            in_list(seqs.len(), 1)
        );
        let mut q = sqlx::query(&sql);
        for s in seqs {
            q = q.bind(*s);
        }
        for r in q.fetch_all(&self.pool).await? {
            let status: String = col(&r, "status")?;
            let n: i64 = col(&r, "n")?;
            pairs
                .entry(col(&r, "sweep_seq")?)
                .or_default()
                .push((status.parse().map_err(corrupt)?, n.max(0) as u64));
        }
        Ok(seqs
            .iter()
            .map(|s| {
                let p = pairs.remove(s).unwrap_or_default();
                (*s, SweepCounts::from_pairs(p))
            })
            .collect())
    }

    /// The sequence number of a sweep of the project (404 otherwise).
    pub(crate) async fn sweep_seq(&self, project_id: i64, sweep_id: &str) -> Result<i64> {
        let r = sqlx::query("SELECT seq FROM sweeps WHERE id = $1 AND project_id = $2")
            .bind(sweep_id)
            .bind(project_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("sweep"))?;
        col(&r, "seq")
    }

    /// A sweep of the project with its counts.
    pub async fn get_sweep(&self, project_id: i64, sweep_id: &str) -> Result<Sweep> {
        let r = sqlx::query(&format!(
            "{SWEEP_SELECT} WHERE w.id = $1 AND w.project_id = $2"
        ))
        .bind(sweep_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("sweep"))?;
        let row = SweepRow::from_row(&r)?;
        let mut counts = self.sweep_counts(&[row.seq]).await?;
        let c = counts.remove(&row.seq).unwrap_or_default();
        Ok(sweep_from(row, c)?.1)
    }

    /// A page of the project's sweeps (of `site` only, when given), newest first, and the
    /// sequence number to continue from when there are more. Counts in one query.
    pub async fn list_sweeps(
        &self,
        project_id: i64,
        site: Option<&str>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Sweep>, Option<i64>)> {
        let limit = limit.clamp(1, 1000);
        let rows = sqlx::query(&format!(
            "{SWEEP_SELECT} WHERE w.project_id = $1 AND ($2 IS NULL OR s.name = $2) \
             AND ($3 IS NULL OR w.seq < $3) ORDER BY w.seq DESC LIMIT $4"
        ))
        .bind(project_id)
        .bind(site)
        .bind(before_seq)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() > limit as usize;
        let rows: Vec<SweepRow> = rows
            .iter()
            .take(limit as usize)
            .map(SweepRow::from_row)
            .collect::<Result<_, _>>()?;
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let mut counts = self.sweep_counts(&seqs).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let c = counts.remove(&r.seq).unwrap_or_default();
            out.push(sweep_from(r, c)?.1);
        }
        let next = if more { seqs.last().copied() } else { None };
        Ok((out, next))
    }

    /// A page of a sweep's members in index order, after index `after_index`, optionally
    /// only in `statuses`; and the index to continue after when there are more. Pages end
    /// early past [`crate::listing::MAX_PAGE_BYTES`] of job text, as job listings do.
    pub async fn sweep_jobs(
        &self,
        project_id: i64,
        sweep_id: &str,
        statuses: &[JobStatus],
        after_index: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Job>, Option<i64>)> {
        let sweep_seq = self.sweep_seq(project_id, sweep_id).await?;
        let mut binds = Binds::default();
        let mut cond = format!(
            "j.sweep_seq = {} AND j.project_id = {} AND j.deleted_at IS NULL AND j.sweep_index > {}",
            binds.push(Bind::I64(sweep_seq)),
            binds.push(Bind::I64(project_id)),
            binds.push(Bind::I64(after_index.unwrap_or(-1))),
        );
        if !statuses.is_empty() {
            let list: Vec<String> = statuses
                .iter()
                .map(|s| binds.push(Bind::Str(s.as_str().into())))
                .collect();
            cond += &format!(" AND j.status IN ({})", list.join(", "));
        }
        let (jobs, more) = self
            .job_page(&cond, binds, PageOrder::SweepIndex, limit)
            .await?;
        let next = jobs
            .last()
            .and_then(|(_, j)| j.sweep_index.map(i64::from))
            .filter(|_| more);
        Ok((jobs.into_iter().map(|(_, j)| j).collect(), next))
    }

    /// Events of a sweep's members after `after_seq`, oldest first (resumable by `seq`).
    pub async fn sweep_events(
        &self,
        project_id: i64,
        sweep_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<hpcsera_api_types::JobEvent>> {
        let sweep_seq = self.sweep_seq(project_id, sweep_id).await?;
        let rows = sqlx::query(
            "SELECT e.seq, e.at, e.kind, e.from_status, e.to_status, e.actor, e.message, j.id AS job_id \
             FROM job_events e JOIN jobs j ON j.seq = e.job_seq \
             WHERE e.project_id = $1 AND e.seq > $2 AND j.sweep_seq = $3 AND j.deleted_at IS NULL \
             ORDER BY e.seq LIMIT $4",
        )
        .bind(project_id)
        .bind(after_seq)
        .bind(sweep_seq)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r: &AnyRow| crate::events::event_from_row(r, col(r, "job_id")?))
            .collect()
    }
}
