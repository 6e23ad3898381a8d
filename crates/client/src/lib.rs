//! The Rust SDK for hpcsera's REST API, and the project's only HTTP client: the CLI and the
//! agent use it.
//!
//! - Typed and async over the shared `hpcsera-api-types`.
//! - Retries with exponential backoff and jitter on connection errors, 429 (honouring
//!   `Retry-After`), 502, 503 and 504 — never on other 4xx, which are answers, not accidents.
//! - Submissions always carry an `Idempotency-Key` (a fresh one unless the caller gives one),
//!   so a retried POST never makes a second job.
//! - The token is never part of `Debug` output or logs.

use hpcsera_api_types as api;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub use api::{Actor, DeliveryStatus, EventKind};
pub use api::{
    AgentPoll, AgentPollReply, ErrorBody, FieldError, Job, JobEvent, JobEventList, JobList,
    JobStatus, JobTypeList, JobTypeSpec, JobUpdate, NewJob, Operation, OperationDone, OutputStream,
    PublishJobTypes, ResultFile, ResultList, Site, SiteList, TokenSelf,
};
pub use api::{CodeBundle, CodeBundleList, CodeStatus, HpcDigest};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{status}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<FieldError>,
    },
    /// The server could not be reached (after retries).
    #[error("cannot reach the server at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server's reply was not what the API promises.
    #[error("unexpected reply from the server: {0}")]
    Decode(String),
    /// The client was set up wrongly (bad URL, bad token characters).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The machine-readable code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Retry policy.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts in all (1: no retries).
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A connection to one hpcsera server with one token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    token: String,
    retry: Retry,
    /// Largest response body read into memory (JSON, output, result files).
    max_body_bytes: u64,
}

/// Default of [`Client::with_max_body_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes of an error response read (its JSON error, or text shown cut).
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A slice of a job's output.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub data: Vec<u8>,
    pub next_offset: u64,
    /// The job has ended and all output was read.
    pub complete: bool,
    pub truncated: bool,
}

/// Filter for [`Client::list_jobs`].
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub statuses: Vec<JobStatus>,
    pub site: Option<String>,
    pub job_type: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl Client {
    /// `base` is the server's URL (`https://hpc.example.org`, with or without `/api/v1`).
    pub fn new(base: &str, token: &str) -> Result<Client> {
        Self::with_timeouts(
            base,
            token,
            Duration::from_secs(10),
            Duration::from_secs(120),
        )
    }

    /// Like [`Client::new`] with explicit connect and request timeouts (a request timeout must
    /// exceed the longest long-poll you make).
    pub fn with_timeouts(
        base: &str,
        token: &str,
        connect: Duration,
        request: Duration,
    ) -> Result<Client> {
        let trimmed = base.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix(api::API_BASE).unwrap_or(trimmed);
        let base = url::Url::parse(&format!("{trimmed}/"))
            .map_err(|e| ClientError::Config(format!("server URL {base:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "server URL {base} must be http or https"
            )));
        }
        let token = token.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Config(
                "the token is empty or has characters a token never has".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .user_agent(concat!("hpcsera-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Client {
            http,
            base,
            token,
            retry: Retry::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Reads response bodies of at most `max` bytes into memory; a larger one is an error
    /// (read in chunks: the rest is never held). Code downloads stream to disk with their own
    /// bound.
    pub fn with_max_body_bytes(mut self, max: u64) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(&format!("{}{path}", api::API_BASE.trim_start_matches('/')))
            .map_err(|e| ClientError::Config(format!("bad path {path:?}: {e}")))
    }

    /// Sends a request with retries; returns the successful response.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let url = self.url(path)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&self.token);
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            rb = match &body {
                Body::None => rb,
                Body::Json(v) => rb.json(v),
                Body::Bytes(b) => rb
                    .header("content-type", "application/octet-stream")
                    .body(b.to_vec()),
            };
            let last = attempt >= self.retry.attempts;
            match rb.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retryable = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if !retryable || last {
                        return Err(api_error(resp).await);
                    }
                    let wait = retry_after(&resp).unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(%status, ?wait, attempt, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) if (e.is_connect() || e.is_timeout() || e.is_request()) && !last => {
                    let wait = self.backoff(attempt);
                    tracing::debug!(error = %e, ?wait, attempt, "retrying after a connection error");
                    tokio::time::sleep(wait).await;
                }
                Err(source) => {
                    return Err(ClientError::Connect {
                        url: url.to_string(),
                        source,
                    })
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .first_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.retry.max_backoff);
        let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.0);
        capped.mul_f64(jitter)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
    ) -> Result<T> {
        let resp = self.send(method, path, body, &[]).await?;
        decode(resp, self.max_body_bytes).await
    }

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
        let key = idempotency_key
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = to_value(job)?;
        let resp = self
            .send(
                Method::POST,
                "/job",
                Body::Json(&body),
                &[("idempotency-key", key)],
            )
            .await?;
        decode(resp, self.max_body_bytes).await
    }

    pub async fn get_job(&self, id: &str) -> Result<Job> {
        self.json(Method::GET, &format!("/job/{}", seg(id)), Body::None)
            .await
    }

    /// One page of jobs (newest first).
    pub async fn list_jobs(&self, q: &JobQuery) -> Result<JobList> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !q.statuses.is_empty() {
            pairs.push((
                "status",
                q.statuses
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        if let Some(s) = &q.site {
            pairs.push(("site", s.clone()));
        }
        if let Some(s) = &q.job_type {
            pairs.push(("jobType", s.clone()));
        }
        if let Some(l) = q.limit {
            pairs.push(("limit", l.to_string()));
        }
        if let Some(c) = &q.cursor {
            pairs.push(("cursor", c.clone()));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
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
        let path = format!(
            "/job/{}/events?after={after}&wait={}",
            seg(id),
            wait_seconds.min(60)
        );
        Ok(self
            .json::<JobEventList>(Method::GET, &path, Body::None)
            .await?
            .events)
    }

    /// Events of all the project's jobs after `after` (resume with the last `seq` seen),
    /// waiting up to `wait_seconds` for one.
    pub async fn project_events(&self, after: i64, wait_seconds: u32) -> Result<Vec<JobEvent>> {
        let path = format!("/events?after={after}&wait={}", wait_seconds.min(60));
        Ok(self
            .json::<JobEventList>(Method::GET, &path, Body::None)
            .await?
            .events)
    }

    pub async fn events(&self, id: &str, after: i64) -> Result<Vec<JobEvent>> {
        let path = format!("/job/{}/events?after={after}", seg(id));
        Ok(self
            .json::<JobEventList>(Method::GET, &path, Body::None)
            .await?
            .events)
    }

    /// Requests cancel, hold or release.
    pub async fn operation(&self, id: &str, op: Operation) -> Result<Job> {
        let body = serde_json::json!({ "operation": op });
        self.json(
            Method::PUT,
            &format!("/job/updateByOperation/{}", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// Deletes a job; `true` when it is cancelled first (it runs) and removed once it ended.
    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        let resp = self
            .send(
                Method::DELETE,
                &format!("/job/{}", seg(id)),
                Body::None,
                &[],
            )
            .await?;
        Ok(resp.status() == StatusCode::ACCEPTED)
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
        use sha2::Digest;
        use std::io::Write;
        let mut resp = self
            .send(Method::GET, &format!("/code/{}", seg(id)), Body::None, &[])
            .await?;
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
                    "the code bundle is larger than {max_bytes} bytes"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io_err)?;
        }
        file.sync_all().map_err(io_err)?;
        Ok((size, hex_lower(&hasher.finalize())))
    }

    /// Reports the digest the agent computed of a pending bundle.
    pub async fn report_hpc_digest(&self, id: &str, sha256: &str) -> Result<CodeBundle> {
        let body = to_value(&HpcDigest {
            sha256: sha256.to_string(),
        })?;
        self.json(
            Method::POST,
            &format!("/code/{}/hpcDigest", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    // --- the agent's side ---

    pub async fn publish_job_types(&self, site: &str, body: &PublishJobTypes) -> Result<()> {
        let body = to_value(body)?;
        self.send(
            Method::PUT,
            &format!("/sites/{}/jobTypes", seg(site)),
            Body::Json(&body),
            &[],
        )
        .await?;
        Ok(())
    }

    pub async fn agent_poll(&self, poll: &AgentPoll) -> Result<AgentPollReply> {
        let body = to_value(poll)?;
        self.json(Method::POST, "/agent/poll", Body::Json(&body))
            .await
    }

    pub async fn operation_done(&self, id: &str, done: &OperationDone) -> Result<Job> {
        let body = to_value(done)?;
        self.json(
            Method::POST,
            &format!("/agent/jobs/{}/operationDone", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// Records what the agent did about a job the server made `lost` (an `agent_cleanup`
    /// event); only the agent token that last held the job may.
    pub async fn agent_cleanup(&self, id: &str, message: &str) -> Result<Job> {
        let body = to_value(&api::AgentCleanup {
            message: message.to_string(),
        })?;
        self.json(
            Method::POST,
            &format!("/agent/jobs/{}/cleanup", seg(id)),
            Body::Json(&body),
        )
        .await
    }

    /// Appends output at `offset`; returns the stream's length on the server.
    pub async fn append_output(
        &self,
        id: &str,
        stream: OutputStream,
        offset: u64,
        data: &[u8],
    ) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Len {
            length: u64,
        }
        let path = format!(
            "/job/{}/output/{}?offset={offset}",
            seg(id),
            stream.as_str()
        );
        let resp = self
            .send(Method::POST, &path, Body::Bytes(data), &[])
            .await?;
        Ok(decode::<Len>(resp, self.max_body_bytes).await?.length)
    }

    pub async fn put_result(&self, id: &str, name: &str, data: &[u8]) -> Result<ResultFile> {
        let path = format!("/job/{}/results/{}", seg(id), path_segs(name));
        let resp = self
            .send(Method::PUT, &path, Body::Bytes(data), &[])
            .await?;
        decode(resp, self.max_body_bytes).await
    }
}

enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
    Bytes(&'a [u8]),
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Percent-encodes one path segment.
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Percent-encodes each `/`-separated segment of a relative path.
fn path_segs(s: &str) -> String {
    s.split('/').map(seg).collect::<Vec<_>>().join("/")
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response, max: u64) -> Result<T> {
    let bytes = read_body(resp, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// A response body of at most `max` bytes, read in chunks; a larger one is an error at the
/// first chunk beyond (or at once when its `Content-Length` says so).
async fn read_body(mut resp: reqwest::Response, max: u64) -> Result<Vec<u8>> {
    let too_large =
        || ClientError::Decode(format!("the server's answer is larger than {max} bytes"));
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
    {
        if data.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// At most `max` bytes of a body (the rest is not read); for error answers.
async fn read_prefix(mut resp: reqwest::Response, max: u64) -> Vec<u8> {
    let mut data = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = (max as usize).saturating_sub(data.len());
        data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if data.len() as u64 >= max {
            break;
        }
    }
    data
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

async fn api_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let text = String::from_utf8_lossy(&read_prefix(resp, MAX_ERROR_BODY_BYTES).await).into_owned();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            fields: b.error.fields,
        },
        Err(_) => ClientError::Api {
            status,
            code: "http_error".into(),
            message: if text.is_empty() {
                format!("HTTP {status}")
            } else {
                text.chars().take(500).collect()
            },
            fields: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_redaction() {
        let c = Client::new("http://h:8080/api/v1/", "hpcs_secret").unwrap();
        assert_eq!(
            c.url("/job/x").unwrap().as_str(),
            "http://h:8080/api/v1/job/x"
        );
        let c = Client::new("https://h/prefix", "hpcs_secret").unwrap();
        assert_eq!(
            c.url("/sites").unwrap().as_str(),
            "https://h/prefix/api/v1/sites"
        );
        assert!(!format!("{c:?}").contains("hpcs_secret"));
        assert!(Client::new("ftp://h", "t").is_err());
        assert!(Client::new("http://h", "bad token").is_err());
        assert!(Client::new("not a url", "t").is_err());
        assert_eq!(path_segs("out/a b.txt"), "out/a%20b.txt");
    }
}
