//! The Rust SDK for hpcsera's REST API, and the project's only HTTP client: the CLI and the
//! agent use it.
//!
//! - Typed and async over the shared `hpcsera-api-types`.
//! - Retries with exponential backoff and jitter on connection errors, 429 (honouring
//!   `Retry-After`), 502, 503 and 504 — never on other 4xx, which are answers, not accidents.
//! - Submissions always carry an `Idempotency-Key` (a fresh one unless the caller gives one),
//!   so a retried POST never makes a second job.
//! - The token is never part of `Debug` output or logs.
//! - HTTPS with the system's CA certificates and, for an internal CA, a CA file
//!   ([`HttpOptions::ca_file`]); a refused certificate is [`ClientError::Certificate`], whose
//!   message says what to set. Proxies from `HTTPS_PROXY`/`NO_PROXY`.

mod agent;
mod device;
mod http;
mod jobs;
mod provenance;

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
pub use device::{
    start_device_flow, start_device_flow_with, DeviceFlow, DeviceRequest, DeviceToken,
};
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
    /// The server's TLS certificate was refused; `problem` says why and what to set (not
    /// retried: it will not go away by itself).
    #[error("{problem} (server {url})")]
    Certificate {
        url: String,
        problem: String,
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
        // `Certificate` is not: a refused certificate stays refused.
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

/// How the SDK connects to the server.
///
/// HTTPS is checked against the system's CA certificates (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` replace them) plus those of `ca_file`. Proxies come from the environment:
/// `HTTPS_PROXY` (and `HTTP_PROXY`, `ALL_PROXY`), except for the hosts of `NO_PROXY`.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// How long connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long a whole request may take; must exceed the longest long poll made.
    pub request_timeout: Duration,
    /// A PEM file of CA certificates to trust besides the system's: the internal CA that
    /// signed the server's certificate (`--ca-file`, `HPCSERA_CA_FILE`, the agent's `ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            ca_file: None,
        }
    }
}

/// Most bytes of a CA file read (a system bundle is about 200 KiB).
const MAX_CA_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The HTTP client with the SDK's timeouts, CA certificates and user agent.
pub(crate) fn http_client(options: &HttpOptions) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .user_agent(concat!("hpcsera-client/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &options.ca_file {
        for cert in read_ca_file(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ClientError::Config(format!("cannot set up HTTP: {e}")))
}

/// The certificates of a PEM CA bundle; an error names the file and what is wrong.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    use std::io::Read;
    let bad = |what: String| ClientError::Config(format!("CA file {}: {what}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(bad(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&bytes)
        .map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// When `e` is a refused server certificate: what went wrong and what to do about it.
pub(crate) fn certificate_problem(e: &reqwest::Error) -> Option<String> {
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        text.push_str(&c.to_string());
        text.push(' ');
        cause = c.source();
    }
    if !text.contains("invalid peer certificate") {
        return None;
    }
    let hint = "set --ca-file or HPCSERA_CA_FILE (for the agent: ca_file in its config) to the \
                CA bundle that signed the server's certificate";
    Some(if text.contains("UnknownIssuer") {
        format!("the server's certificate is not trusted (unknown issuer): {hint}")
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        "the server's certificate is not valid for this host name: use the name it was \
         issued for in the server URL"
            .to_string()
    } else if text.contains("Expired") {
        "the server's certificate has expired (or this machine's clock is wrong)".to_string()
    } else {
        let detail = text
            .split("invalid peer certificate: ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or("refused");
        format!("the server's certificate is refused ({detail}): {hint}")
    })
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
        let options = HttpOptions {
            connect_timeout: connect,
            request_timeout: request,
            ca_file: None,
        };
        Self::with_options(base, token, &options)
    }

    /// Like [`Client::new`] with [`HttpOptions`]: timeouts and a CA file.
    pub fn with_options(base: &str, token: &str, options: &HttpOptions) -> Result<Client> {
        let base = server_url(base)?;
        let token = token.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Config(
                "the token is empty or has characters a token never has".into(),
            ));
        }
        let http = http_client(options)?;
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
