//! The Rust SDK for hpcsera's REST API, and the project's only HTTP client: the CLI and the
//! agent use it.
//!
//! - Typed and async over the shared `hpcsera-api-types`.
//! - Retries with exponential backoff and jitter on connection errors, 429 (honouring
//!   `Retry-After`), 502, 503 and 504 — never on other 4xx, which are answers, not accidents.
//! - Submissions always carry an `Idempotency-Key` (a fresh one unless the caller gives one),
//!   so a retried POST never makes a second job.
//! - The token is never part of `Debug` output or logs.

mod agent;
mod device;
mod http;
mod jobs;
mod provenance;
mod sweeps;

use hpcsera_api_types as api;
use reqwest::StatusCode;
use std::time::Duration;

pub use api::{oauth::Lifetime, Role, RoleSet};
pub use api::{Actor, DeliveryStatus, EventKind};
pub use api::{
    AgentPoll, AgentPollReply, ErrorBody, FieldError, Job, JobEvent, JobEventList, JobList,
    JobStatus, JobTypeList, JobTypeSpec, JobUpdate, NewJob, Operation, OperationDone, OutputStream,
    PublishJobTypes, ResultFile, ResultList, Site, SiteList, TokenSelf,
};
pub use api::{
    CodeBundle, CodeBundleList, CodeFile, CodeFileList, CodeStatus, HpcDigest, SignedApproval,
    UserKey,
};
pub use api::{NewSweep, Sweep, SweepCounts, SweepList, SweepOperationResult};
pub use device::{start_device_flow, DeviceFlow, DeviceRequest, DeviceToken};
pub use provenance::{ProvenanceQuery, SignedManifest};

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
    /// Whether the error may go away by trying again later: the server could not be reached,
    /// or answered 429, 502, 503 or 504 (the SDK already retried).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
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

/// The server's URL (`https://hpc.example.org`, with or without `/api/v1`), as the base that
/// API paths are joined to; only http and https.
pub(crate) fn server_url(base: &str) -> Result<url::Url> {
    let trimmed = base.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(api::API_BASE).unwrap_or(trimmed);
    let url = url::Url::parse(&format!("{trimmed}/"))
        .map_err(|e| ClientError::Config(format!("server URL {base:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!(
            "server URL {url} must be http or https"
        )));
    }
    Ok(url)
}

/// The HTTP client with the SDK's timeouts and user agent.
pub(crate) fn http_client(connect: Duration, request: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .user_agent(concat!("hpcsera-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Config(format!("cannot set up HTTP: {e}")))
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
        let base = server_url(base)?;
        let token = token.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Config(
                "the token is empty or has characters a token never has".into(),
            ));
        }
        let http = http_client(connect, request)?;
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
}
