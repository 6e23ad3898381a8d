//! Extractors whose rejections are [`ApiError`]s (JSON bodies naming the problem): JSON and
//! raw bodies, the bearer-token [`Caller`] and [`AgentCaller`], and the path ids [`JobId`] and
//! [`CodeId`].
//!
//! This is the one place that decides who a caller is (and whether it is an agent) and what
//! a well-formed id looks like. It must never talk to the store beyond authenticating a token,
//! nor decide what a caller may do with a job (handlers and the store do).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use hpcsera_api_types::{FieldError, Role};
use hpcsera_store::{AuthToken, TokenRefusal};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};

/// A JSON body. Syntax errors are 400, type errors 422 naming the field, bodies over the
/// limit 413, a missing `Content-Type: application/json` 415. A whole number written with a
/// fraction (`2.0`) is a JSON Schema `integer`, so an integer field takes it too.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(JSON_ONLY.into()));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "the request body is larger than this server accepts".into(),
                    )
                } else {
                    ApiError::bad_field("body", e.body_text())
                }
            })?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => match with_whole_numbers(&bytes) {
                Some(v) => Ok(ApiJson(v)),
                None => Err(json_rejection(JsonRejection::JsonDataError(e))),
            },
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// What a 415 of a JSON route says.
const JSON_ONLY: &str = "the body must be JSON, sent with Content-Type: application/json";

/// Whether the request says its body is JSON (`application/json` or `application/…+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body as `T` once every whole number written with a fraction (`2.0`, `-3e2`) is an
/// integer; `None` when there is none or it still does not fit. Only tried after a typed read
/// failed, so a body that reads as it is keeps its numbers as sent.
fn with_whole_numbers<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn whole(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                    *v = serde_json::Value::from(f as i64);
                    true
                }
                _ => false,
            },
            // Every element is visited (no short cut): all of them must be converted.
            serde_json::Value::Array(a) => a.iter_mut().map(whole).filter(|c| *c).count() > 0,
            serde_json::Value::Object(m) => m.values_mut().map(whole).filter(|c| *c).count() > 0,
            _ => false,
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !whole(&mut v) {
        return None;
    }
    serde_json::from_value(v).ok()
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonDataError(e) => {
            let path_err = path_error(&e);
            let (field, problem) = match path_err {
                Some(pe) => {
                    let p = pe.path().to_string();
                    (
                        if p == "." { "body".to_string() } else { p },
                        pe.inner().to_string(),
                    )
                }
                None => ("body".to_string(), e.body_text()),
            };
            ApiError::invalid(vec![FieldError::new(field, problem)])
        }
        JsonRejection::JsonSyntaxError(e) => {
            let problem = path_error(&e)
                .map(|pe| pe.inner().to_string())
                .unwrap_or_else(|| e.body_text());
            ApiError::bad_field("body", format!("is not valid JSON: {problem}"))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType(JSON_ONLY.into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the request body is larger than this server accepts".into())
        }
        other => ApiError::bad_field("body", other.body_text()),
    }
}

/// A raw request body; over the route's limit is 413 with a JSON error body.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(
                    "the request body is larger than this server accepts".into(),
                ))
            }
            Err(e) => Err(ApiError::bad_field("body", e.body_text())),
        }
    }
}

/// Finds serde's error, with the path of the field, in a rejection's cause chain.
fn path_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a serde_path_to_error::Error<serde_json::Error>> {
    let mut cur = e.source();
    while let Some(c) = cur {
        if let Some(pe) = c.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            return Some(pe);
        }
        cur = c.source();
    }
    None
}

/// Who made the request, filled by [`Caller`] for the audit log and metrics.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(pub Arc<Mutex<Option<AuthToken>>>);

/// Why a request's token was refused, filled by [`Caller`] for the failure counts (such
/// requests are counted per minute, reason and peer instead of audited one by one).
#[derive(Debug, Clone, Default)]
pub struct RefusalSlot(pub Arc<Mutex<Option<&'static str>>>);

pub use crate::forwarded::Peer;

/// A 401 for `reason`, recorded for the failure counts; 429 once the peer has failed too
/// often (a valid token from the same peer still works: the limit is checked only on failure).
fn refuse(parts: &Parts, state: &AppState, reason: &'static str, message: &str) -> ApiError {
    if let Some(slot) = parts.extensions.get::<RefusalSlot>() {
        if let Ok(mut s) = slot.0.lock() {
            *s = Some(reason);
        }
    }
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or("", |p| p.address.as_str());
    match state.auth_failures.check(peer) {
        Ok(()) => ApiError::Unauthorized(message.into()),
        Err(wait) => ApiError::TooManyAuthFailures(wait),
    }
}

/// The holder of a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller(pub AuthToken);

impl Caller {
    /// 403 unless the token has `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.roles.contains(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token lacks the role {role}"
            )))
        }
    }

    /// 403 unless the token has at least one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.0.roles.contains(*r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "this token needs one of the roles {}",
                names.join(", ")
            )))
        }
    }

    /// Whether the token may act at `site` (tokens without a site restriction may act anywhere).
    pub fn may_use_site(&self, site: &str) -> bool {
        self.0.site.as_deref().is_none_or(|s| s == site)
    }

    /// [`Caller::may_use_site`] as an answer: 403 naming the token's site when it may not.
    pub fn require_site(&self, site: &str) -> ApiResult<()> {
        match &self.0.site {
            Some(restricted) if restricted != site => Err(site_refused(restricted)),
            _ => Ok(()),
        }
    }

    /// How the event log names a client action.
    pub fn user_actor(&self) -> String {
        format!("user:{}", self.0.user)
    }

    /// How the event log names an agent action.
    pub fn agent_actor(&self) -> String {
        format!(
            "agent:{}@{}",
            self.0.user,
            self.0.site.as_deref().unwrap_or("*")
        )
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                refuse(
                    parts,
                    state,
                    "missing",
                    "no bearer token: send Authorization: Bearer <token>",
                )
            })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                refuse(
                    parts,
                    state,
                    "malformed",
                    "the Authorization header must be 'Bearer <token>'",
                )
            })?;
        let token = match state.store.authenticate(secret).await? {
            Ok(t) => t,
            Err(refusal) => {
                let (reason, message) = match refusal {
                    TokenRefusal::Unknown => ("unknown", "the token is not valid"),
                    TokenRefusal::Revoked => ("revoked", "the token was revoked"),
                    TokenRefusal::Expired => ("expired", "the token has expired"),
                    TokenRefusal::Disabled => ("disabled", "the token's user account is disabled"),
                    TokenRefusal::NotAMember => (
                        "not_a_member",
                        "the token's user is no longer a member of its project",
                    ),
                };
                return Err(refuse(parts, state, reason, message));
            }
        };
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            if let Ok(mut s) = slot.0.lock() {
                *s = Some(token.clone());
            }
        }
        // After the audit slot is filled, so that refused requests are audited with the token.
        // Agents are not limited: they make a burst of requests per cycle for the jobs they
        // run, and the site operates them.
        if !is_agent_token(&token) {
            state
                .rate
                .check(&token.token_id)
                .map_err(ApiError::TooManyRequests)?;
        }
        Ok(Caller(token))
    }
}

/// What makes a token an agent token (DESIGN §2): restricted to one site, with `GET_Job`.
/// The one place that decides it.
pub fn is_agent_token(token: &AuthToken) -> bool {
    token.site.is_some() && token.roles.contains(Role::GetJob)
}

/// The holder of an agent token. Every route by which an agent claims or writes takes this
/// extractor (or [`AgentCaller::from_caller`], where one route serves clients and agents), so a
/// token that is not an agent token never gets that far; the store then checks that this
/// agent token holds the job ([`hpcsera_store::AgentRef`]).
#[derive(Debug, Clone)]
pub struct AgentCaller {
    caller: Caller,
    site: String,
}

impl AgentCaller {
    /// 403 unless the caller's token is an agent token.
    pub fn from_caller(caller: Caller) -> Result<Self, ApiError> {
        match (&caller.0.site, is_agent_token(&caller.0)) {
            (Some(site), true) => Ok(AgentCaller {
                site: site.clone(),
                caller,
            }),
            _ => Err(ApiError::Forbidden(
                "this needs an agent token: one restricted to a site (--site) with the role GET_Job"
                    .into(),
            )),
        }
    }

    /// 403 unless the token also has `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        self.caller.require(role)
    }

    /// The site the token is restricted to.
    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn token(&self) -> &AuthToken {
        &self.caller.0
    }

    /// The agent as the store's holder checks see it.
    pub fn agent_ref(&self) -> hpcsera_store::AgentRef<'_> {
        hpcsera_store::AgentRef {
            token_id: &self.caller.0.token_id,
            project_id: self.caller.0.project_id,
            site: &self.site,
        }
    }

    /// How the event log names this agent.
    pub fn actor(&self) -> String {
        self.caller.agent_actor()
    }
}

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        AgentCaller::from_caller(Caller::from_request_parts(parts, state).await?)
    }
}

/// A job id: a UUID, kept hyphenated and lower-case. Built only by [`JobId::parse`], so a
/// handler (or store call) that takes one never sees anything else ("parse, don't validate").
/// As an extractor it reads the path parameter `{jobId}`; anything but a UUID is 400 naming
/// `jobId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId(String);

impl JobId {
    pub fn parse(raw: &str) -> Result<JobId, ApiError> {
        uuid::Uuid::parse_str(raw)
            .map(|u| JobId(u.hyphenated().to_string()))
            .map_err(|_| ApiError::bad_field("jobId", "is not a job id (a UUID)"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for JobId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        JobId::parse(&path_param(parts, state, "jobId").await?)
    }
}

/// A sweep id: a UUID, kept hyphenated and lower-case; as an extractor it reads the path
/// parameter `{sweepId}`, anything but a UUID is 400 naming `sweepId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepId(String);

impl SweepId {
    pub fn parse(raw: &str) -> Result<SweepId, ApiError> {
        uuid::Uuid::parse_str(raw)
            .map(|u| SweepId(u.hyphenated().to_string()))
            .map_err(|_| ApiError::bad_field("sweepId", "is not a sweep id (a UUID)"))
    }
}

impl std::ops::Deref for SweepId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SweepId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        SweepId::parse(&path_param(parts, state, "sweepId").await?)
    }
}

/// A code bundle id: the SHA-256 of the bundle as 64 lower-case hex digits. Built only by
/// [`CodeId::parse`]; as an extractor it reads the path parameter `{codeId}`, anything else
/// is 400 naming `codeId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeId(String);

impl CodeId {
    pub fn parse(raw: &str) -> Result<CodeId, ApiError> {
        if hpcsera_api_types::is_code_id(raw) {
            Ok(CodeId(raw.to_string()))
        } else {
            Err(ApiError::bad_field(
                "codeId",
                "is not a code bundle id (64 lower-case hex digits, the SHA-256 of the bundle)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for CodeId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CodeId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        CodeId::parse(&path_param(parts, state, "codeId").await?)
    }
}

/// The value of the route's path parameter `name` (percent-decoded); 400 naming it when the
/// route has none or it is not UTF-8.
async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, ApiError> {
    let params = axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_field(name, e.body_text()))?;
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| ApiError::bad_field(name, "is missing from the path"))
}

/// The refusal of a site-restricted token at another site.
pub(crate) fn site_refused(restricted: &str) -> ApiError {
    ApiError::Forbidden(format!("this token is restricted to site {restricted:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            site: String,
        }
        let req = Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"site": 5}"#))
            .unwrap();
        let Err(ApiError::Unprocessable { fields, .. }) =
            ApiJson::<B>::from_request(req, &()).await
        else {
            panic!("expected 422");
        };
        assert_eq!(fields[0].field, "site");
    }

    /// A whole number up to 2^53 written with a fraction reads as that integer, however many
    /// digits it has: serde_json's default float parsing may be a unit in the last place off
    /// (`4394869519744090.0` read as `…089.5`), which schemathesis found refused as a
    /// fraction; `float_roundtrip` reads it exactly.
    #[tokio::test]
    async fn large_whole_numbers_with_a_fraction_read_exactly() {
        #[derive(serde::Deserialize, Debug)]
        struct B {
            n: u64,
        }
        for (sent, want) in [
            ("4394869519744090.0", 4_394_869_519_744_090),
            ("4.39486951974409e15", 4_394_869_519_744_090),
            ("9007199254740992.0", 9_007_199_254_740_992),
            ("2.0", 2),
        ] {
            let req = Request::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from(format!(r#"{{"n": {sent}}}"#)))
                .unwrap();
            let got = ApiJson::<B>::from_request(req, &()).await;
            assert_eq!(got.map(|b| b.0.n).ok(), Some(want), "{sent}");
        }
    }
}
