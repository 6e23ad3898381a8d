//! Tokens as a token sees them: who the presented token is, the tokens of its user in its
//! project, and revoking itself (so a CI job can clean up after itself).
//!
//! Never a secret or a hash, never another user's or project's tokens. There is no route that
//! makes a token: a token never mints another (DESIGN §2); people make them in the web UI or
//! with the admin CLI.

use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hpcsera_api_types::{ErrorBody, TokenInfo, TokenList, TokenSelf};
use hpcsera_store::fmt_ms;

/// Who and what the presented token is.
#[utoipa::path(get, path = "/api/v1/tokens/self", tag = "tokens",
    responses((status = 200, body = TokenSelf), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn token_self(caller: Caller) -> ApiResult<Json<TokenSelf>> {
    let t = caller.0;
    Ok(Json(TokenSelf {
        token_id: t.token_id,
        name: t.token_name,
        user: t.user,
        project: t.project,
        roles: t.roles.to_vec(),
        site: t.site,
        expires_at: t.expires_at.map(fmt_ms),
        created_at: fmt_ms(t.created_at),
    }))
}

/// Revokes the presented token, at once: every later request with it is 401.
#[utoipa::path(delete, path = "/api/v1/tokens/self", tag = "tokens",
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token_self(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<StatusCode> {
    let t = &caller.0;
    state
        .store
        .revoke_token(&t.token_id, Some(t.user_id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tokens of the presented token's user in its project (revoked and expired ones too,
/// oldest first; never secrets). Any valid token may ask; no role is needed.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TokenList>> {
    let t = &caller.0;
    let tokens = state
        .store
        .list_user_tokens(t.user_id, Some(t.project_id))
        .await?
        .into_iter()
        .map(|r| TokenInfo {
            token_id: r.id,
            name: r.name,
            user: r.user,
            project: r.project,
            roles: r.roles.to_vec(),
            site: r.site,
            created_at: fmt_ms(r.created_at),
            expires_at: r.expires_at.map(fmt_ms),
            last_used_at: r.last_used_at.map(fmt_ms),
            revoked_at: r.revoked_at.map(fmt_ms),
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}
