//! `POST /oauth/token`: a device client redeems its device code (RFC 8628 §3.4, §3.5).
//!
//! Until a person decided, the answer is `authorization_pending`; sooner than the interval
//! after the last poll, `slow_down` (and the interval grows by 5 s); then `access_denied`,
//! `expired_token`, or the token (RFC 6749 §5.1) — once: the store redeems the request and
//! makes the token in one transaction under its row lock, so a second redemption, however
//! close, is `invalid_grant`. The token is an ordinary one, named after the client, listed and
//! revocable in the web UI like any other.

use super::{no_store, OAuthFailure, OAuthForm};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::oauth::{
    self, DeviceScope, DeviceTokenRequest, Lifetime, OAuthError, TokenResponse,
};
use hpcsera_store::{DevicePoll, IssuedToken};

/// Longest device code looked at (ours are 43 characters).
const MAX_DEVICE_CODE_BYTES: usize = 128;

/// A device client's token request: the token once a person approved, else why not yet.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = DeviceTokenRequest,
        content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = OAuthError, description = "authorization_pending, slow_down, \
            access_denied, expired_token, invalid_grant, invalid_client, invalid_request or \
            unsupported_grant_type")))]
pub async fn token(
    State(state): State<AppState>,
    form: OAuthForm,
) -> Result<Response, OAuthFailure> {
    match form.single("grant_type")? {
        None => {
            return Err(OAuthFailure::new(
                "invalid_request",
                "grant_type is missing",
            ))
        }
        Some(oauth::DEVICE_CODE_GRANT) => {}
        Some(_) => {
            return Err(OAuthFailure::new(
                "unsupported_grant_type",
                format!(
                    "this server issues tokens only for grant_type={}",
                    oauth::DEVICE_CODE_GRANT
                ),
            ))
        }
    }
    let device_code = form
        .single("device_code")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthFailure::new("invalid_request", "device_code is missing"))?;
    let client = form.client_id()?;
    if device_code.len() > MAX_DEVICE_CODE_BYTES {
        return Err(OAuthFailure::new(
            "invalid_grant",
            "the device code is not known",
        ));
    }
    let polled = state
        .store
        .poll_device_grant(device_code, client)
        .await
        .map_err(OAuthFailure::internal)?;
    let issued = match polled {
        DevicePoll::Issued(issued) => issued,
        DevicePoll::Pending => {
            return Err(OAuthFailure::new(
                "authorization_pending",
                "the person has not decided yet; ask again after the interval",
            ))
        }
        DevicePoll::SlowDown { interval_s } => {
            return Err(OAuthFailure::new(
                "slow_down",
                format!("polled sooner than the interval; wait {interval_s} s between requests"),
            ))
        }
        DevicePoll::Denied => {
            return Err(OAuthFailure::new(
                "access_denied",
                "the person denied the request",
            ))
        }
        DevicePoll::Expired => {
            return Err(OAuthFailure::new(
                "expired_token",
                "the device code expired before a person approved it; start again",
            ))
        }
        DevicePoll::Invalid(why) => return Err(OAuthFailure::new("invalid_grant", why)),
    };
    state.audit.action(
        Some(&issued.token.user),
        Some(&issued.token.project),
        Some(&issued.token.id),
        oauth::TOKEN_PATH,
        200,
    );
    Ok(no_store(Json(token_response(issued)).into_response()))
}

/// The token answer: the secret, its lifetime and what was granted, as a scope.
fn token_response(issued: Box<IssuedToken>) -> TokenResponse {
    let t = &issued.token;
    let lifetime_s = u64::try_from(issued.lifetime_ms / 1000).unwrap_or(0);
    let scope = DeviceScope {
        project: t.project.clone(),
        site: t.site.clone(),
        lifetime: Some(Lifetime::from_secs(lifetime_s)),
        roles: t.roles,
    };
    TokenResponse {
        access_token: issued.secret,
        token_type: "Bearer".into(),
        expires_in: lifetime_s,
        scope: scope.to_string(),
    }
}
