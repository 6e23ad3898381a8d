//! Token introspection: who the presented token is, and what it may do.
//!
//! Shows the token's own facts only; never its secret or hash, never other tokens.

use crate::error::ApiResult;
use crate::extract::Caller;
use axum::Json;
use hpcsera_api_types::{ErrorBody, TokenSelf};
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
