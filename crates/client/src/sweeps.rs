//! Sweeps: submit (with an `Idempotency-Key`, as jobs), read with counts, list, member
//! pages, events (long-polled), an operation on every member, delete.

use crate::http::{page_query, seg, Body};
use crate::*;
use reqwest::Method;

impl Client {
    /// Submits a sweep. Without `idempotency_key` a fresh one is used, so retries are safe.
    pub async fn submit_sweep(
        &self,
        sweep: &NewSweep,
        idempotency_key: Option<&str>,
    ) -> Result<Sweep> {
        self.submit_json("/sweeps", sweep, idempotency_key).await
    }

    /// A sweep with its members' counts by status.
    pub async fn get_sweep(&self, id: &str) -> Result<Sweep> {
        self.json(Method::GET, &format!("/sweeps/{}", seg(id)), Body::None)
            .await
    }

    /// One page of the project's sweeps (newest first).
    pub async fn list_sweeps(&self, limit: Option<u32>, cursor: Option<&str>) -> Result<SweepList> {
        let q = page_query(&[], &[], limit, cursor);
        self.json(Method::GET, &format!("/sweeps?{q}"), Body::None)
            .await
    }

    /// One page of a sweep's members in index order, optionally only in `statuses`.
    pub async fn sweep_jobs(
        &self,
        id: &str,
        statuses: &[JobStatus],
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<JobList> {
        let q = page_query(statuses, &[], limit, cursor);
        let path = format!("/sweeps/{}/jobs?{q}", seg(id));
        self.json(Method::GET, &path, Body::None).await
    }

    /// Every member of a sweep, page by page, in index order.
    pub async fn all_sweep_jobs(&self, id: &str) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .sweep_jobs(id, &[], Some(1000), cursor.as_deref())
                .await?;
            out.extend(page.jobs);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Events of a sweep's members after `after`, waiting up to `wait_seconds` (at most 60)
    /// for one when there is none yet.
    pub async fn sweep_events(
        &self,
        id: &str,
        after: i64,
        wait_seconds: u32,
    ) -> Result<Vec<JobEvent>> {
        let path = format!("/sweeps/{}/events", seg(id));
        self.events_at(&path, after, wait_seconds).await
    }

    /// Requests cancel, hold or release on every member.
    pub async fn sweep_operation(&self, id: &str, op: Operation) -> Result<SweepOperationResult> {
        self.operation_at(&format!("/sweeps/{}/operation", seg(id)), op)
            .await
    }

    /// Deletes a sweep; `true` when running members are cancelled first and removed once
    /// they end.
    pub async fn delete_sweep(&self, id: &str) -> Result<bool> {
        self.delete_at(&format!("/sweeps/{}", seg(id))).await
    }
}
