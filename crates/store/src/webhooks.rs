//! Webhooks: an outbox of deliveries, written in the same transaction as the job event they
//! announce, and a signing secret per project.

use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{DeliveryStatus, Job, JobEvent, WebhookDelivery};
use rand::distributions::Alphanumeric;
use rand::Rng;

/// A delivery that is due.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub project_id: i64,
    pub job_seq: i64,
    pub event_seq: i64,
    pub url: String,
    pub attempts: i64,
}

impl Store {
    /// The project's webhook signing secret, created on first use.
    pub async fn webhook_secret(&self, project: &str) -> Result<String> {
        let r = sqlx::query("SELECT id, webhook_secret FROM projects WHERE name = $1")
            .bind(project)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("project"))?;
        if let Some(s) = col::<Option<String>>(&r, "webhook_secret")? {
            return Ok(s);
        }
        let id: i64 = col(&r, "id")?;
        let secret: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let mut tx = self.begin_write().await?;
        // Another writer may have set one meanwhile: keep the first.
        sqlx::query(
            "UPDATE projects SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL",
        )
        .bind(&secret)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        let r = sqlx::query("SELECT webhook_secret FROM projects WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        col::<Option<String>>(&r, "id")?.ok_or_else(|| corrupt("webhook secret vanished"))
    }

    /// Deliveries due now: for each job only its oldest pending one, so a receiver sees a
    /// job's transitions in order even across retries.
    pub async fn due_deliveries(&self, limit: u32) -> Result<Vec<DueDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, d.project_id, d.job_seq, d.event_seq, d.url, d.attempts FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries e WHERE e.job_seq = d.job_seq AND e.status = 'pending' AND e.id < d.id) \
             ORDER BY d.id LIMIT $2",
        )
        .bind(now_ms())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: col(r, "id")?,
                    project_id: col(r, "project_id")?,
                    job_seq: col(r, "job_seq")?,
                    event_seq: col(r, "event_seq")?,
                    url: col(r, "url")?,
                    attempts: col(r, "attempts")?,
                })
            })
            .collect()
    }

    /// When the next delivery is due (Unix ms), if any is pending. Only each job's oldest
    /// pending delivery counts: the later ones wait for it, whatever their own time.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>> {
        let r = sqlx::query(
            "SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d WHERE d.status = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries e WHERE e.job_seq = d.job_seq AND e.status = 'pending' AND e.id < d.id)",
        )
        .fetch_one(&self.pool)
        .await?;
        col(&r, 0)
    }

    /// What a delivery announces: the event, the job as it is now, the project's name.
    pub async fn delivery_payload(&self, d: &DueDelivery) -> Result<(JobEvent, Job, String)> {
        let r = sqlx::query(
            "SELECT e.seq, e.at, e.kind, e.from_status, e.to_status, e.actor, e.message, j.id AS job_id, p.name AS project \
             FROM job_events e JOIN jobs j ON j.seq = e.job_seq JOIN projects p ON p.id = j.project_id WHERE e.seq = $1",
        )
        .bind(d.event_seq)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("event"))?;
        let job_id: String = col(&r, "job_id")?;
        let event = crate::events::event_from_row(&r, job_id.clone())?;
        let project: String = col(&r, "project")?;
        let job = self.get_job_any(d.project_id, &job_id).await?;
        Ok((event, job, project))
    }

    /// Records the outcome of an attempt. `retry_at` None with `ok` false gives up.
    pub async fn delivery_attempted(
        &self,
        id: i64,
        ok: bool,
        http_status: Option<u16>,
        error: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let now = now_ms();
        let status = if ok {
            DeliveryStatus::Delivered
        } else if retry_at.is_some() {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Failed
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, last_error = $3, \
             next_attempt_at = $4, delivered_at = $5 WHERE id = $6",
        )
        .bind(status.as_str())
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(retry_at.unwrap_or(now))
        .bind(ok.then_some(now))
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The deliveries of a job, oldest first.
    pub async fn job_deliveries(
        &self,
        project_id: i64,
        job_id: &str,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, d.event_seq, d.url, d.status, d.attempts, d.last_status, d.last_error, d.created_at, \
             d.delivered_at, d.next_attempt_at FROM webhook_deliveries d JOIN jobs j ON j.seq = d.job_seq \
             WHERE j.id = $1 AND j.project_id = $2 AND j.deleted_at IS NULL ORDER BY d.id",
        )
        .bind(job_id)
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: DeliveryStatus =
                    col::<String>(r, "status")?.parse().map_err(corrupt)?;
                Ok(WebhookDelivery {
                    id: col(r, "id")?,
                    event_seq: col(r, "event_seq")?,
                    url: col(r, "url")?,
                    attempts: col::<i64>(r, "attempts")? as u32,
                    last_status: col::<Option<i64>>(r, "last_status")?.map(|s| s as u16),
                    last_error: col(r, "last_error")?,
                    created_at: fmt_ms(col(r, "created_at")?),
                    delivered_at: col::<Option<i64>>(r, "delivered_at")?.map(fmt_ms),
                    next_attempt_at: (status == DeliveryStatus::Pending)
                        .then(|| col::<i64>(r, "next_attempt_at"))
                        .transpose()?
                        .map(fmt_ms),
                    status,
                })
            })
            .collect()
    }
}
