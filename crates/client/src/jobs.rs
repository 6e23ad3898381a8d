//! What clients do: who am I, sites and job types, jobs (submit, read, list, change,
//! operations, delete), events, output, results and code bundles.

use crate::http::{decode, hex_lower, page_query, path_segs, read_body, seg, to_value, Body};
use crate::*;
use reqwest::Method;

impl Client {
    /// Who the token belongs to and what it may do.
    pub async fn whoami(&self) -> Result<TokenSelf> {
        self.json(Method::GET, "/tokens/self", Body::None).await
    }

    pub async fn sites(&self) -> Result<Vec<Site>> {
        Ok(self
            .json::<SiteList>(Method::GET, "/sites", Body::None)
            .await?
            .sites)
    }

    pub async fn job_types(&self, site: &str) -> Result<Vec<JobTypeSpec>> {
        let path = format!("/sites/{}/jobTypes", seg(site));
        Ok(self
            .json::<JobTypeList>(Method::GET, &path, Body::None)
            .await?
            .job_types)
    }

    /// Submits a job. Without `idempotency_key` a fresh one is used, so retries are safe.
    pub async fn submit(&self, job: &NewJob, idempotency_key: Option<&str>) -> Result<Job> {
        self.submit_json("/job", job, idempotency_key).await
    }

    pub async fn get_job(&self, id: &str) -> Result<Job> {
        self.json(Method::GET, &format!("/job/{}", seg(id)), Body::None)
            .await
    }

    /// One page of jobs (newest first).
    pub async fn list_jobs(&self, q: &JobQuery) -> Result<JobList> {
        let query = page_query(
            &q.statuses,
            &[
                ("site", q.site.as_deref()),
                ("jobType", q.job_type.as_deref()),
            ],
            q.limit,
            q.cursor.as_deref(),
        );
        self.json(
            Method::GET,
            &format!("/job/findJobsByStatus?{query}"),
            Body::None,
        )
        .await
    }

    /// A job's events after `after`, waiting up to `wait_seconds` (at most 60) for one when
    /// there is none yet: the way to follow a job without busy polling.
    pub async fn events_wait(
        &self,
        id: &str,
        after: i64,
        wait_seconds: u32,
    ) -> Result<Vec<JobEvent>> {
        let path = format!("/job/{}/events", seg(id));
        self.events_at(&path, after, wait_seconds).await
    }

    /// Events of all the project's jobs after `after` (resume with the last `seq` seen),
    /// waiting up to `wait_seconds` for one.
    pub async fn project_events(&self, after: i64, wait_seconds: u32) -> Result<Vec<JobEvent>> {
        self.events_at("/events", after, wait_seconds).await
    }

    pub async fn events(&self, id: &str, after: i64) -> Result<Vec<JobEvent>> {
        self.events_at(&format!("/job/{}/events", seg(id)), after, 0)
            .await
    }

    /// Requests cancel, hold or release.
    pub async fn operation(&self, id: &str, op: Operation) -> Result<Job> {
        self.operation_at(&format!("/job/updateByOperation/{}", seg(id)), op)
            .await
    }

    /// Deletes a job; `true` when it is cancelled first (it runs) and removed once it ended.
    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        self.delete_at(&format!("/job/{}", seg(id))).await
    }

    /// A client's change of a queued job, or an agent's status report.
    pub async fn update_job(&self, id: &str, update: &JobUpdate) -> Result<Job> {
        let body = to_value(update)?;
        self.json(Method::PUT, &format!("/job/{}", seg(id)), Body::Json(&body))
            .await
    }

    /// Reads a job's output from `offset`.
    pub async fn read_output(
        &self,
        id: &str,
        stream: OutputStream,
        offset: u64,
        max: u64,
    ) -> Result<OutputChunk> {
        self.read_output_wait(id, stream, offset, max, 0).await
    }

    /// Reads a job's output from `offset`; when there is nothing new, waits up to
    /// `wait_seconds` (at most 60) for either stream to grow or the job's status to change.
    pub async fn read_output_wait(
        &self,
        id: &str,
        stream: OutputStream,
        offset: u64,
        max: u64,
        wait_seconds: u32,
    ) -> Result<OutputChunk> {
        let path = format!(
            "/job/{}/output/{}?offset={offset}&maxBytes={max}&wait={}",
            seg(id),
            stream.as_str(),
            wait_seconds.min(60)
        );
        let resp = self.send(Method::GET, &path, Body::None, &[]).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let next_offset = header("x-next-offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ClientError::Decode("no X-Next-Offset header".into()))?;
        let complete = header("x-output-complete").as_deref() == Some("true");
        let truncated = header("x-output-truncated").as_deref() == Some("true");
        let data = read_body(resp, self.max_body_bytes.min(max.saturating_add(1024))).await?;
        Ok(OutputChunk {
            data,
            next_offset,
            complete,
            truncated,
        })
    }

    pub async fn list_results(&self, id: &str) -> Result<Vec<ResultFile>> {
        Ok(self
            .json::<ResultList>(
                Method::GET,
                &format!("/job/{}/results", seg(id)),
                Body::None,
            )
            .await?
            .results)
    }

    pub async fn get_result(&self, id: &str, name: &str) -> Result<Vec<u8>> {
        let path = format!("/job/{}/results/{}", seg(id), path_segs(name));
        let resp = self.send(Method::GET, &path, Body::None, &[]).await?;
        read_body(resp, self.max_body_bytes).await
    }

    // --- code bundles ---

    /// Uploads a code bundle (a tar.gz). Returns the bundle and whether it is new (the
    /// project had these bytes already otherwise).
    pub async fn push_code(&self, tar_gz: &[u8]) -> Result<(CodeBundle, bool)> {
        let resp = self
            .send(Method::POST, "/code", Body::Bytes(tar_gz), &[])
            .await?;
        let created = resp.status() == StatusCode::CREATED;
        Ok((decode(resp, self.max_body_bytes).await?, created))
    }

    /// A bundle's status: both digests, size, decision.
    pub async fn code_status(&self, id: &str) -> Result<CodeBundle> {
        self.json(
            Method::GET,
            &format!("/code/{}/status", seg(id)),
            Body::None,
        )
        .await
    }

    /// Approves a bundle with a signed approval (the canonical message and an `SSHSIG` over
    /// it by a key the signer registered); the server records it as the signer's decision.
    pub async fn approve_code_signed(
        &self,
        id: &str,
        approval: &SignedApproval,
    ) -> Result<CodeBundle> {
        let body = to_value(approval)?;
        self.json(
            Method::POST,
            &format!("/code/{}/approval", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// The SSH keys the token's user registered.
    pub async fn list_keys(&self) -> Result<Vec<UserKey>> {
        Ok(self
            .json::<api::UserKeyList>(Method::GET, "/keys", Body::None)
            .await?
            .keys)
    }

    /// A bundle's files as its archive lists them (read on the server, never unpacked): at
    /// most 1000 entries, `truncated` when there are more.
    pub async fn code_files(&self, id: &str) -> Result<hpcsera_api_types::CodeFileList> {
        self.json(Method::GET, &format!("/code/{}/files", seg(id)), Body::None)
            .await
    }

    /// The project's bundles, newest first.
    pub async fn list_code(&self) -> Result<Vec<CodeBundle>> {
        Ok(self
            .json::<CodeBundleList>(Method::GET, "/code", Body::None)
            .await?
            .bundles)
    }

    /// Downloads a bundle (agent, `GET_Code`) into `dest`, streaming, refusing more than
    /// `max_bytes`. Returns the size and the SHA-256 (hex) of what was written, computed while
    /// writing: the caller compares it with what it expects.
    pub async fn download_code(
        &self,
        id: &str,
        dest: &std::path::Path,
        max_bytes: u64,
    ) -> Result<(u64, String)> {
        self.download(
            &format!("/code/{}", seg(id)),
            dest,
            max_bytes,
            "the code bundle",
        )
        .await
    }

    /// Streams the answer of `GET path` into `dest` (created 0600), refusing more than
    /// `max_bytes` (`what` names it in the error); returns its size and SHA-256 (hex).
    pub(crate) async fn download(
        &self,
        path: &str,
        dest: &std::path::Path,
        max_bytes: u64,
        what: &str,
    ) -> Result<(u64, String)> {
        use sha2::Digest;
        use std::io::Write;
        let mut resp = self.send(Method::GET, path, Body::None, &[]).await?;
        let io_err = |e: std::io::Error| {
            ClientError::Decode(format!("cannot write {}: {e}", dest.display()))
        };
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dest)
                .map_err(io_err)?
        };
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
        {
            size += chunk.len() as u64;
            if size > max_bytes {
                drop(file);
                let _ = std::fs::remove_file(dest);
                return Err(ClientError::Decode(format!(
                    "{what} is larger than {max_bytes} bytes"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io_err)?;
        }
        file.sync_all().map_err(io_err)?;
        Ok((size, hex_lower(&hasher.finalize())))
    }
}
