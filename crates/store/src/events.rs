//! The job event log: every transition and operation of a job is one row of `job_events`,
//! written in the transaction of the change it records.
//!
//! **Invariant:** sequence numbers become visible in order. A reader that resumes after seq N
//! never misses an N-1 that commits later: SQLite has one writer, and on PostgreSQL event
//! writers hold an advisory lock from the insert to their commit ([`Store::add_event`] is the
//! only place that inserts events). A status event queues the job's webhook in the same
//! transaction (the outbox), so no status change is missed by a restart.

use crate::{col, corrupt, fmt_ms, now_ms, Result, Store};
use hpcsera_api_types::{EventKind, JobEvent, JobStatus};
use sqlx::any::AnyRow;
use sqlx::Any;
use sqlx::FromRow;
use std::collections::HashSet;

/// Advisory lock key that orders event writers on PostgreSQL.
const EVENT_ORDER_LOCK: i64 = 0x0068_7063_6576_656e;

/// Page of events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after_seq: i64,
    pub limit: u32,
    /// Only jobs of this site (project streams of site-restricted tokens).
    pub site: Option<String>,
}

/// An event row, by column name (`seq, at, kind, from_status, to_status, actor, message`).
#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    at: i64,
    kind: String,
    from_status: Option<String>,
    to_status: Option<String>,
    actor: String,
    message: Option<String>,
}

/// An event of the job `job_id` from a row with the columns of an [`EventRow`].
pub(crate) fn event_from_row(r: &AnyRow, job_id: String) -> Result<JobEvent> {
    let r = EventRow::from_row(r)?;
    let status = |s: Option<String>| -> Result<Option<JobStatus>> {
        s.map(|s| s.parse()).transpose().map_err(corrupt)
    };
    Ok(JobEvent {
        seq: r.seq,
        job_id,
        at: fmt_ms(r.at),
        kind: r.kind.parse().map_err(corrupt)?,
        from_status: status(r.from_status)?,
        to_status: status(r.to_status)?,
        actor: r.actor.parse().map_err(corrupt)?,
        message: r.message,
    })
}

/// One event of a bulk insert (see [`Store::insert_events_bulk`]).
pub(crate) struct BulkEvent<'a> {
    pub job_seq: i64,
    pub project_id: i64,
    pub kind: EventKind,
    pub from: Option<JobStatus>,
    pub to: Option<JobStatus>,
    pub actor: &'a str,
    pub message: Option<&'a str>,
    /// False when the caller knows the job has no callback URL (no webhook to queue).
    pub may_have_callback: bool,
}

/// One event to insert (see [`Store::insert_event`]).
pub(crate) struct NewEvent<'a> {
    pub kind: EventKind,
    pub from: Option<JobStatus>,
    pub to: Option<JobStatus>,
    pub actor: &'a str,
    pub message: Option<&'a str>,
}

impl Store {
    /// An event that changes no status (an update, an operation, a deletion, a cleanup).
    pub(crate) async fn add_note(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        job_seq: i64,
        project_id: i64,
        kind: EventKind,
        actor: &str,
        message: Option<&str>,
    ) -> Result<()> {
        self.add_event(tx, job_seq, project_id, kind, None, None, actor, message)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn add_event(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        job_seq: i64,
        project_id: i64,
        kind: EventKind,
        from: Option<JobStatus>,
        to: Option<JobStatus>,
        actor: &str,
        message: Option<&str>,
    ) -> Result<()> {
        self.lock_event_order(tx).await?;
        let event = NewEvent {
            kind,
            from,
            to,
            actor,
            message,
        };
        self.insert_event(tx, job_seq, project_id, event, true)
            .await
    }

    /// Event sequence numbers must become visible in order, or a reader resuming after seq N
    /// could miss an N-1 that commits later. SQLite has one writer; on PostgreSQL the
    /// event-writing transactions are serialised from here to their commit (an advisory
    /// lock; taking it again in the same transaction is a no-op).
    pub(crate) async fn lock_event_order(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
    ) -> Result<()> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_ORDER_LOCK)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Inserts an event in `tx`, which holds the event-order lock
    /// ([`Store::lock_event_order`]). A status event queues the job's webhook too, unless
    /// the caller knows the job has no callback URL (`may_have_callback` false: one statement
    /// less).
    pub(crate) async fn insert_event(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        job_seq: i64,
        project_id: i64,
        e: NewEvent<'_>,
        may_have_callback: bool,
    ) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO job_events (job_seq, project_id, at, kind, from_status, to_status, actor, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
        )
        .bind(job_seq)
        .bind(project_id)
        .bind(now_ms())
        .bind(e.kind.as_str())
        .bind(e.from.map(JobStatus::as_str))
        .bind(e.to.map(JobStatus::as_str))
        .bind(e.actor)
        .bind(e.message)
        .fetch_one(&mut **tx)
        .await?;
        if e.to.is_some() && may_have_callback {
            // The webhook outbox: written with the event, so no status change is missed.
            let event_seq: i64 = col(&r, 0)?;
            enqueue_webhook(tx, job_seq, event_seq).await?;
        }
        Ok(())
    }

    /// Events of many jobs of one project at once (`(job_seq, from, to)` each, one kind,
    /// actor and message), in multi-row inserts in the caller's transaction, under the same
    /// ordering lock as [`Store::add_event`] ([`Store::insert_events_bulk`]).
    pub(crate) async fn add_events_bulk(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        events: &[(i64, Option<JobStatus>, Option<JobStatus>)],
        kind: EventKind,
        actor: &str,
        message: Option<&str>,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.lock_event_order(tx).await?;
        let events: Vec<BulkEvent<'_>> = events
            .iter()
            .map(|(job_seq, from, to)| BulkEvent {
                job_seq: *job_seq,
                project_id,
                kind,
                from: *from,
                to: *to,
                actor,
                message,
                may_have_callback: true,
            })
            .collect();
        self.insert_events_bulk(tx, &events, now_ms()).await
    }

    /// Inserts events (of any jobs, kinds and actors) at `at`, in
    /// multi-row inserts of [`crate::util::CHUNK`] rows in `tx`, which holds the event-order
    /// lock ([`Store::lock_event_order`]). Status events of jobs that may have a callback URL
    /// queue their webhooks in one statement per chunk (none when no event may).
    pub(crate) async fn insert_events_bulk(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        events: &[BulkEvent<'_>],
        at: i64,
    ) -> Result<()> {
        for chunk in events.chunks(crate::util::CHUNK) {
            let sql = format!(
                "INSERT INTO job_events (job_seq, project_id, at, kind, from_status, to_status, actor, message) \
                 VALUES {} RETURNING seq, job_seq, to_status",
                crate::util::values_list(chunk.len(), 8, 1)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.job_seq)
                    .bind(e.project_id)
                    .bind(at)
                    .bind(e.kind.as_str())
                    .bind(e.from.map(JobStatus::as_str))
                    .bind(e.to.map(JobStatus::as_str))
                    .bind(e.actor)
                    .bind(e.message);
            }
            let rows = q.fetch_all(&mut **tx).await?;
            // Matched by job: the order of a multi-row insert's RETURNING rows is not
            // guaranteed on PostgreSQL.
            let webhook_jobs: HashSet<i64> = chunk
                .iter()
                .filter(|e| e.to.is_some() && e.may_have_callback)
                .map(|e| e.job_seq)
                .collect();
            if webhook_jobs.is_empty() {
                continue;
            }
            let mut status_events = Vec::with_capacity(webhook_jobs.len());
            for r in &rows {
                let is_status = col::<Option<String>>(r, "to_status")?.is_some();
                if is_status && webhook_jobs.contains(&col::<i64>(r, "job_seq")?) {
                    status_events.push(col(r, "seq")?);
                }
            }
            enqueue_webhooks(tx, &status_events).await?;
        }
        Ok(())
    }

    /// The event log of a job, oldest first, after a sequence number.
    pub async fn job_events(
        &self,
        project_id: i64,
        job_id: &str,
        f: &EventFilter,
    ) -> Result<Vec<JobEvent>> {
        let job_seq = self.visible_seq(project_id, job_id).await?;
        let rows = sqlx::query(
            "SELECT seq, at, kind, from_status, to_status, actor, message FROM job_events              WHERE job_seq = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job_seq)
        .bind(f.after_seq)
        .bind(i64::from(f.limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| event_from_row(r, job_id.to_string()))
            .collect()
    }

    /// Events of all of the project's jobs after `after_seq`, oldest first: the stream a
    /// workflow engine follows, resumable by `seq`.
    pub async fn project_events(&self, project_id: i64, f: &EventFilter) -> Result<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT e.seq, e.at, e.kind, e.from_status, e.to_status, e.actor, e.message, j.id AS job_id \
             FROM job_events e JOIN jobs j ON j.seq = e.job_seq \
             WHERE e.project_id = $1 AND e.seq > $2 AND j.deleted_at IS NULL \
             AND ($4 IS NULL OR j.site_id = (SELECT id FROM sites WHERE name = $4)) ORDER BY e.seq LIMIT $3",
        )
        .bind(project_id)
        .bind(f.after_seq)
        .bind(i64::from(f.limit.clamp(1, 1000)))
        .bind(f.site.as_deref())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| event_from_row(r, col(r, "job_id")?))
            .collect()
    }
}

/// The webhook outbox: queues a delivery of event `event_seq` when the job has a callback
/// URL (`webhooks.rs` sends it).
async fn enqueue_webhook(
    tx: &mut sqlx::Transaction<'static, Any>,
    job_seq: i64,
    event_seq: i64,
) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO webhook_deliveries (job_seq, project_id, event_seq, url, status, next_attempt_at, created_at) \
         SELECT seq, project_id, $2, callback_url, 'pending', $3, $3 FROM jobs WHERE seq = $1 AND callback_url IS NOT NULL",
    )
    .bind(job_seq)
    .bind(event_seq)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The webhook outbox for many status events at once (see [`enqueue_webhook`]).
async fn enqueue_webhooks(
    tx: &mut sqlx::Transaction<'static, Any>,
    event_seqs: &[i64],
) -> Result<()> {
    if event_seqs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO webhook_deliveries (job_seq, project_id, event_seq, url, status, next_attempt_at, created_at) \
         SELECT j.seq, j.project_id, e.seq, j.callback_url, 'pending', $1, $1 FROM job_events e \
         JOIN jobs j ON j.seq = e.job_seq WHERE e.seq IN ({}) AND j.callback_url IS NOT NULL",
        crate::util::in_list(event_seqs.len(), 2)
    );
    let mut q = sqlx::query(&sql).bind(now_ms());
    for s in event_seqs {
        q = q.bind(*s);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}
