//! Sweeps: submit (with an `Idempotency-Key`, as jobs), read with counts, list, member
//! pages, events (long-polled), an operation on every member, delete.

use crate::http::{decode, seg, to_value, Body};
use crate::*;
use reqwest::Method;

impl Client {
    /// Submits a sweep. Without `idempotency_key` a fresh one is used, so retries are safe.
    pub async fn submit_sweep(
        &self,
        sweep: &NewSweep,
        idempotency_key: Option<&str>,
    ) -> Result<Sweep> {
        let key = idempotency_key
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = to_value(sweep)?;
        let resp = self
            .send(
                Method::POST,
                "/sweeps",
                Body::Json(&body),
                &[("idempotency-key", key)],
            )
            .await?;
        decode(resp, self.max_body_bytes).await
    }

    /// A sweep with its members' counts by status.
    pub async fn get_sweep(&self, id: &str) -> Result<Sweep> {
        self.json(Method::GET, &format!("/sweeps/{}", seg(id)), Body::None)
            .await
    }

    /// One page of the project's sweeps (newest first).
    pub async fn list_sweeps(&self, limit: Option<u32>, cursor: Option<&str>) -> Result<SweepList> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(l) = limit {
            q.append_pair("limit", &l.to_string());
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        self.json(Method::GET, &format!("/sweeps?{}", q.finish()), Body::None)
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
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !statuses.is_empty() {
            let s: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            q.append_pair("status", &s.join(","));
        }
        if let Some(l) = limit {
            q.append_pair("limit", &l.to_string());
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        let path = format!("/sweeps/{}/jobs?{}", seg(id), q.finish());
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
        let path = format!(
            "/sweeps/{}/events?after={after}&wait={}",
            seg(id),
            wait_seconds.min(60)
        );
        Ok(self
            .json::<JobEventList>(Method::GET, &path, Body::None)
            .await?
            .events)
    }

    /// Requests cancel, hold or release on every member.
    pub async fn sweep_operation(&self, id: &str, op: Operation) -> Result<SweepOperationResult> {
        let body = serde_json::json!({ "operation": op });
        self.json(
            Method::PUT,
            &format!("/sweeps/{}/operation", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// Deletes a sweep; `true` when running members are cancelled first and removed once
    /// they end.
    pub async fn delete_sweep(&self, id: &str) -> Result<bool> {
        let resp = self
            .send(
                Method::DELETE,
                &format!("/sweeps/{}", seg(id)),
                Body::None,
                &[],
            )
            .await?;
        Ok(resp.status() == StatusCode::ACCEPTED)
    }
}
