//! Inserting new jobs: one submission, a group-commit batch (`group_commit.rs`) and a
//! sweep's members, each as a few multi-row statements (jobs, created events, code references,
//! idempotency keys, webhook outbox rows) in the caller's transaction.

use crate::events::BulkEvent;
use crate::idempotency::{self, KeyRecord, Keys};
use crate::jobs::{JobInsert, JobNames, NewJobRecord, AWAITING_CODE};
use crate::util::{values_list, CHUNK};
use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{EventKind, Job, JobStatus};
use sqlx::Any;
use std::collections::HashMap;

impl Store {
    /// Inserts one job in a transaction of its own.
    pub(crate) async fn insert_job(&self, new: &NewJobRecord<'_>, names: &JobNames) -> Result<Job> {
        let mut jobs = self
            .insert_jobs(&[(new.clone(), names)])
            .await
            .map_err(|(e, _)| e)?;
        jobs.pop()
            .ok_or_else(|| corrupt("a job insert returned no job"))
    }

    /// Inserts jobs in one transaction of their own ([`Store::insert_jobs_in_tx`]), all or
    /// none; `Err((e, true))` when the commit itself failed.
    pub(crate) async fn insert_jobs(
        &self,
        jobs: &[(NewJobRecord<'_>, &JobNames)],
    ) -> Result<Vec<Job>, (StoreError, bool)> {
        let mut tx = self.begin_write().await.map_err(|e| (e, false))?;
        self.lock_event_order(&mut tx.tx)
            .await
            .map_err(|e| (e, false))?;
        let inserted = self
            .insert_jobs_in_tx(&mut tx.tx, jobs)
            .await
            .map_err(|e| (e, false))?;
        tx.commit().await.map_err(|e| (e, true))?;
        Ok(inserted)
    }

    /// Inserts jobs with their code references, idempotency keys, `created` events and
    /// webhook outbox rows in `tx`, which holds the event-order lock
    /// ([`Store::lock_event_order`]), and returns them as inserted (nothing is read back).
    /// One multi-row statement per table, whatever the number of jobs (up to
    /// [`crate::util::CHUNK`]): two for jobs without code, idempotency key or callback (the
    /// jobs and their events), one more for each of those that any job has, and one to look
    /// up the bundles of each project whose jobs name code.
    pub(crate) async fn insert_jobs_in_tx(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        jobs: &[(NewJobRecord<'_>, &JobNames)],
    ) -> Result<Vec<Job>> {
        let now = now_ms();
        let statuses = self.new_job_statuses(tx, jobs).await?;
        let rows = job_rows(jobs, &statuses, now)?;
        let seqs = self.insert_job_rows(tx, &rows).await?;
        let code_refs: Vec<(i64, &str, i64, &str)> = jobs
            .iter()
            .zip(&seqs)
            .flat_map(|((new, _), seq)| {
                new.code_refs
                    .iter()
                    .map(move |(param, code)| (*seq, param.as_str(), new.project_id, code.as_str()))
            })
            .collect();
        crate::code_refs::insert_code_refs(tx, &code_refs).await?;
        let keys: Vec<(KeyRecord<'_>, i64)> = jobs
            .iter()
            .zip(&seqs)
            .filter_map(|((new, _), seq)| {
                KeyRecord::of(new.project_id, new.owner_id, &new.idempotency).map(|k| (k, *seq))
            })
            .collect();
        idempotency::insert_many(tx, Keys::Jobs, &keys, now).await?;
        let events: Vec<BulkEvent<'_>> = jobs
            .iter()
            .zip(&seqs)
            .zip(&statuses)
            .map(|(((new, _), seq), status)| {
                created_event(
                    *seq,
                    new.project_id,
                    *status,
                    new.actor,
                    new.callback_url.is_some(),
                )
            })
            .collect();
        self.insert_events_bulk(tx, &events, now).await?;
        Ok(jobs
            .iter()
            .zip(rows)
            .map(|((new, names), row)| as_inserted(new, names, row, now))
            .collect())
    }

    /// The status each new job starts in: `awaiting_approval` while a code bundle it names
    /// is not approved, else `queued`; 422 when it names a bundle its project does not have
    /// or rejected. One bundle lookup per project whose jobs name code.
    async fn new_job_statuses(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        jobs: &[(NewJobRecord<'_>, &JobNames)],
    ) -> Result<Vec<JobStatus>> {
        let mut named: HashMap<i64, Vec<&str>> = HashMap::new();
        for (new, _) in jobs {
            for (_, code) in new.code_refs {
                named.entry(new.project_id).or_default().push(code);
            }
        }
        let mut bundles = HashMap::with_capacity(named.len());
        for (project_id, mut ids) in named {
            ids.sort_unstable();
            ids.dedup();
            bundles.insert(project_id, self.code_statuses(tx, project_id, &ids).await?);
        }
        let none = HashMap::new();
        jobs.iter()
            .map(|(new, _)| {
                let known = bundles.get(&new.project_id).unwrap_or(&none);
                Ok(
                    if crate::code_refs::judge_code_refs(new.code_refs, known)? {
                        JobStatus::Queued
                    } else {
                        JobStatus::AwaitingApproval
                    },
                )
            })
            .collect()
    }

    /// Inserts job rows in multi-row `INSERT`s of [`CHUNK`] rows; returns each row's
    /// sequence number, in the order of `rows` (matched by id: the order of a multi-row
    /// insert's `RETURNING` rows is not guaranteed on PostgreSQL).
    pub(crate) async fn insert_job_rows(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        rows: &[JobInsert<'_>],
    ) -> Result<Vec<i64>> {
        let mut seqs = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO jobs (id, project_id, owner_id, site_id, job_type, status, parameters, \
                 metadata, callback_url, created_at, updated_at, sweep_seq, sweep_index, resources) \
                 VALUES {} RETURNING seq, id",
                values_list(chunk.len(), 14, 1)
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.id.as_str())
                    .bind(r.project_id)
                    .bind(r.owner_id)
                    .bind(r.site_id)
                    .bind(r.job_type)
                    .bind(r.status.as_str())
                    .bind(r.parameters.as_str())
                    .bind(r.metadata.as_deref())
                    .bind(r.callback_url)
                    .bind(r.created_at)
                    .bind(r.created_at)
                    .bind(r.sweep.map(|(seq, _)| seq))
                    .bind(r.sweep.map(|(_, index)| i64::from(index)))
                    .bind(r.resources.as_str());
            }
            let returned = q.fetch_all(&mut **tx).await?;
            let mut by_id = HashMap::with_capacity(returned.len());
            for r in &returned {
                by_id.insert(col::<String>(r, "id")?, col::<i64>(r, "seq")?);
            }
            for r in chunk {
                seqs.push(
                    by_id
                        .remove(&r.id)
                        .ok_or_else(|| corrupt("a job insert returned no sequence number"))?,
                );
            }
        }
        Ok(seqs)
    }
}

/// The rows of new jobs, each with a new id (UUIDv7) and its starting status.
fn job_rows<'a>(
    jobs: &[(NewJobRecord<'a>, &JobNames)],
    statuses: &[JobStatus],
    now: i64,
) -> Result<Vec<JobInsert<'a>>> {
    let mut rows = Vec::with_capacity(jobs.len());
    for ((new, _), status) in jobs.iter().zip(statuses) {
        rows.push(JobInsert {
            id: uuid::Uuid::now_v7().to_string(),
            project_id: new.project_id,
            owner_id: new.owner_id,
            site_id: new.site_id,
            job_type: new.job_type,
            status: *status,
            parameters: serde_json::to_string(new.parameters).map_err(corrupt)?,
            metadata: new
                .metadata
                .map(serde_json::to_string)
                .transpose()
                .map_err(corrupt)?,
            callback_url: new.callback_url,
            created_at: now,
            sweep: None,
            resources: serde_json::to_string(new.resources).map_err(corrupt)?,
        });
    }
    Ok(rows)
}

/// A new job as the API answers it: what the columns hold right after the insert (their
/// defaults for the rest); the store test `a_new_job_is_answered_as_it_reads_back` holds the
/// two together.
fn as_inserted(new: &NewJobRecord<'_>, names: &JobNames, row: JobInsert<'_>, now: i64) -> Job {
    Job {
        id: row.id,
        project: names.project.clone(),
        site: names.site.clone(),
        job_type: new.job_type.to_string(),
        owner: names.owner.clone(),
        status: row.status,
        parameters: new.parameters.clone(),
        resources: new.resources.clone(),
        granted_resources: None,
        metadata: new.metadata.cloned(),
        callback_url: new.callback_url.map(str::to_string),
        held: false,
        pending_operation: None,
        batch_job_id: None,
        exit_code: None,
        message: None,
        sub_jobs: Vec::new(),
        created_at: fmt_ms(now),
        updated_at: fmt_ms(now),
        finished_at: None,
        output_bytes: Default::default(),
        sweep: None,
        sweep_index: None,
    }
}

/// The `created` event of a new job (a single job or a sweep member): a job that waits for
/// its code bundle's approval says so ([`AWAITING_CODE`]).
pub(crate) fn created_event(
    job_seq: i64,
    project_id: i64,
    status: JobStatus,
    actor: &str,
    has_callback: bool,
) -> BulkEvent<'_> {
    BulkEvent {
        job_seq,
        project_id,
        kind: EventKind::Created,
        from: None,
        to: Some(status),
        actor,
        message: (status == JobStatus::AwaitingApproval).then_some(AWAITING_CODE),
        may_have_callback: has_callback,
    }
}
