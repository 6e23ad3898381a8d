//! The OAuth 2.0 device flow (RFC 8628) from the client's side, as one call:
//! [`start_device_flow`] asks the server for a code and returns the [`DeviceFlow`] with the
//! code and the page to show a person; [`DeviceFlow::wait`] then polls the token endpoint at
//! the interval the server gave (5 s longer after each `slow_down`) until the person approved
//! (the token) or denied (`access_denied`), or the code expired (`expired_token`).
//!
//! No token is needed to start: the client names itself (`client_name`, shown to the person)
//! and says what it asks for (the scope). Errors are [`ClientError::Api`] with the OAuth error
//! code as `code`. Device codes and tokens never appear in `Debug` output.

use crate::http::{read_body, read_prefix};
use crate::Result;
use crate::{certificate_problem, http_client, server_url, Client, ClientError, HttpOptions};
use hpcsera_api_types::oauth::{
    DeviceAuthorizationResponse, DeviceScope, Lifetime, OAuthError, TokenResponse,
    DEVICE_AUTHORIZATION_PATH, DEVICE_CODE_GRANT, TOKEN_PATH,
};
use hpcsera_api_types::RoleSet;
use std::time::{Duration, Instant};

/// Most bytes of an answer of the OAuth endpoints read.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// How much longer the interval gets with each `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN: Duration = Duration::from_secs(5);

/// What a device login asks for.
#[derive(Debug, Clone)]
pub struct DeviceRequest<'a> {
    /// The client's name as the person will see it, e.g. `hpcsera CLI on laptop`.
    pub client_name: &'a str,
    pub project: &'a str,
    pub roles: RoleSet,
    /// Restrict the token to one site.
    pub site: Option<&'a str>,
    /// How long the token should live (the server's default when `None`); the person may
    /// shorten it.
    pub lifetime: Option<Lifetime>,
}

/// A started device login: show [`DeviceFlow::user_code`] and
/// [`DeviceFlow::verification_uri`] (or the `_complete` link) to a person, then
/// [`DeviceFlow::wait`].
pub struct DeviceFlow {
    /// The code the person types, e.g. `WDJB-MJHT`.
    pub user_code: String,
    /// The page where the person types it.
    pub verification_uri: String,
    /// The page with the code filled in (for a link or a QR code).
    pub verification_uri_complete: String,
    /// How long the person has.
    pub expires_in: Duration,
    /// The polling interval the server asked for.
    pub interval: Duration,
    device_code: String,
    client_name: String,
    base: url::Url,
    http: reqwest::Client,
    options: HttpOptions,
}

impl std::fmt::Debug for DeviceFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFlow")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The token a device login got: an ordinary hpcsera token.
pub struct DeviceToken {
    pub access_token: String,
    pub expires_in: Duration,
    /// What was granted (the person may have narrowed the request), in the scope syntax.
    pub scope: String,
    base: url::Url,
    options: HttpOptions,
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl DeviceToken {
    /// A client of the same server with this token.
    pub fn client(&self) -> Result<Client> {
        Client::with_options(self.base.as_str(), &self.access_token, &self.options)
    }
}

/// Asks the server at `base` (`https://hpc.example.org`) for a device login; returns the code
/// and page to show and the handle to wait with.
pub async fn start_device_flow(base: &str, request: &DeviceRequest<'_>) -> Result<DeviceFlow> {
    start_device_flow_with(base, request, &HttpOptions::default()).await
}

/// [`start_device_flow`] with [`HttpOptions`] (a CA file), which the token's client keeps.
pub async fn start_device_flow_with(
    base: &str,
    request: &DeviceRequest<'_>,
    options: &HttpOptions,
) -> Result<DeviceFlow> {
    let base = server_url(base)?;
    let flow_options = HttpOptions {
        request_timeout: Duration::from_secs(60),
        ..options.clone()
    };
    let http = http_client(&flow_options)?;
    let scope = DeviceScope {
        project: request.project.to_string(),
        site: request.site.map(str::to_string),
        lifetime: request.lifetime,
        roles: request.roles,
    }
    .to_string();
    let fields = [
        ("client_id", request.client_name),
        ("scope", scope.as_str()),
    ];
    let url = join(&base, DEVICE_AUTHORIZATION_PATH)?;
    let answer: DeviceAuthorizationResponse = post_form(&http, url, &fields).await?;
    Ok(DeviceFlow {
        user_code: answer.user_code,
        verification_uri: answer.verification_uri,
        verification_uri_complete: answer.verification_uri_complete,
        expires_in: Duration::from_secs(answer.expires_in),
        interval: Duration::from_secs(answer.interval.max(1)),
        device_code: answer.device_code,
        client_name: request.client_name.to_string(),
        base,
        http,
        options: options.clone(),
    })
}

impl DeviceFlow {
    /// Waits until the person decided: polls the token endpoint every `interval` (5 s more
    /// after each `slow_down`; a server that cannot be reached is asked again at the next
    /// turn) until the token comes, or an error does (`access_denied`, `expired_token`, …).
    pub async fn wait(self) -> Result<DeviceToken> {
        let deadline = Instant::now() + self.expires_in;
        let mut interval = self.interval;
        let url = join(&self.base, TOKEN_PATH)?;
        let fields = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", self.device_code.as_str()),
            ("client_id", self.client_name.as_str()),
        ];
        loop {
            tokio::time::sleep(interval).await;
            let err = match post_form::<TokenResponse>(&self.http, url.clone(), &fields).await {
                Ok(t) => {
                    return Ok(DeviceToken {
                        access_token: t.access_token,
                        expires_in: Duration::from_secs(t.expires_in),
                        scope: t.scope,
                        base: self.base,
                        options: self.options,
                    })
                }
                Err(e) => e,
            };
            match err.code() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval += SLOW_DOWN,
                _ if err.is_transient() && Instant::now() < deadline => {
                    tracing::debug!(error = %err, "polling the token endpoint again");
                }
                _ => return Err(err),
            }
        }
    }
}

fn join(base: &url::Url, path: &str) -> Result<url::Url> {
    base.join(path.trim_start_matches('/'))
        .map_err(|e| ClientError::Config(format!("bad path {path:?}: {e}")))
}

/// Posts a form to an OAuth endpoint; its JSON answer, or its OAuth error as
/// [`ClientError::Api`] (`code` = the OAuth `error`).
async fn post_form<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: url::Url,
    fields: &[(&str, &str)],
) -> Result<T> {
    let resp =
        http.post(url.clone()).form(fields).send().await.map_err(
            |source| match certificate_problem(&source) {
                Some(problem) => ClientError::Certificate {
                    url: url.to_string(),
                    problem,
                    source,
                },
                None => ClientError::Connect {
                    url: url.to_string(),
                    source,
                },
            },
        )?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        let body = read_body(resp, MAX_ANSWER_BYTES).await?;
        return serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()));
    }
    let body = read_prefix(resp, MAX_ANSWER_BYTES).await;
    Err(match serde_json::from_slice::<OAuthError>(&body) {
        Ok(e) => ClientError::Api {
            status,
            message: e.error_description.unwrap_or_else(|| e.error.clone()),
            code: e.error,
            fields: Vec::new(),
        },
        Err(_) => ClientError::Api {
            status,
            code: "http_error".into(),
            message: String::from_utf8_lossy(&body).chars().take(500).collect(),
            fields: Vec::new(),
        },
    })
}
