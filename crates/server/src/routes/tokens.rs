//! Tokens over JSON. A token sees who it is, the tokens of its user in its project, and
//! revokes itself (so a CI job can clean up after itself). A logged-in web UI session (its
//! cookie; for changes also its CSRF token in `X-CSRF-Token`) lists, makes and revokes its
//! user's own tokens: the token API the UI's pages use.
//!
//! Never a secret or a hash (but the new secret, once), never another user's or project's
//! tokens. **A token never makes a token** (DESIGN §2): `POST /tokens` with a bearer token is
//! 403; people make tokens logged in (the pages or this API), by the device flow, or with the
//! admin CLI. The checks of a new token are [`make_token`]'s, shared with the tokens page.

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;
use crate::web::UiSession;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use hpcsera_api_types::{
    is_valid_name, ErrorBody, FieldError, RoleSet, TokenCreated, TokenInfo, TokenList,
    TokenRequest, TokenSelf,
};
use hpcsera_store::{fmt_ms, NewToken, StoreError, TokenRecord};

/// Longest token name, in characters.
pub(crate) const MAX_TOKEN_NAME_CHARS: usize = 100;
const DAY_MS: i64 = 86_400_000;

/// Who asks the token routes: a bearer token, or (without an `Authorization` header) a live
/// web UI session.
pub(crate) enum TokenUser {
    Token(Caller),
    Session(UiSession),
}

impl FromRequestParts<AppState> for TokenUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(TokenUser::Token(
                Caller::from_request_parts(parts, state).await?,
            ));
        }
        match UiSession::from_headers(state, &parts.headers).await {
            Ok(Some(s)) => Ok(TokenUser::Session(s)),
            // No session either: as the bearer routes answer (401, counted as a failure).
            Ok(None) => Err(Caller::from_request_parts(parts, state)
                .await
                .err()
                .unwrap_or_else(|| ApiError::Unauthorized("no token or session".into()))),
            Err(_) => Err(ApiError::Unavailable(
                "the session could not be read".into(),
            )),
        }
    }
}

/// 403 unless the request carries the session's CSRF token in `X-CSRF-Token`.
fn require_csrf(session: &UiSession, headers: &HeaderMap) -> ApiResult<()> {
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if sent.is_some_and(|t| session.csrf_matches(t)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "a change made with the session cookie needs the session's CSRF token in \
             X-CSRF-Token (the value of the pages' hidden csrf field)"
                .into(),
        ))
    }
}

/// What a person asks for in a new token (the tokens page's form, or `POST /tokens`).
pub(crate) struct TokenAsk<'a> {
    pub name: &'a str,
    pub project: &'a str,
    pub roles: RoleSet,
    pub site: Option<&'a str>,
    /// Lifetime in days; `None` when what was given is not a number.
    pub days: Option<u32>,
}

/// Makes a token for the person `user_id`/`user`, or says what is wrong with the request
/// (`errs`, problems found before, come first): the name, the roles (at least one, at most
/// the member's), the site, the lifetime (1 to `--token-max-days`) and the project (one of
/// theirs now; another, existing or not, is the same "choose one of your projects").
pub(crate) async fn make_token(
    st: &AppState,
    user_id: i64,
    user: &str,
    ask: &TokenAsk<'_>,
    mut errs: Vec<FieldError>,
) -> Result<Result<(TokenRecord, String), Vec<FieldError>>, StoreError> {
    let max_days = st.config.ui.token_max_days;
    let n = ask.name.chars().count();
    if n == 0 || n > MAX_TOKEN_NAME_CHARS || ask.name.chars().any(char::is_control) {
        errs.push(FieldError::new(
            "name",
            format!("give the token a name of 1 to {MAX_TOKEN_NAME_CHARS} characters."),
        ));
    }
    if ask.roles.is_empty() {
        errs.push(FieldError::new("roles", "choose at least one role."));
    }
    if ask.site.is_some_and(|s| !is_valid_name(s, true)) {
        errs.push(FieldError::new(
            "site",
            "a site name has letters, digits, '_', '-' and '.' (at most 64).",
        ));
    }
    let days = ask.days.filter(|d| (1..=max_days).contains(d));
    if days.is_none() {
        errs.push(FieldError::new(
            "expiresInDays",
            format!("a whole number of days from 1 to {max_days}."),
        ));
    }
    let not_member = || FieldError::new("project", "choose one of your projects.");
    let member = st
        .store
        .user_memberships(user_id)
        .await?
        .iter()
        .any(|m| m.project == ask.project);
    if !member {
        errs.push(not_member());
    }
    if !errs.is_empty() {
        return Ok(Err(errs));
    }
    let expires_at =
        hpcsera_store::now_ms().saturating_add(i64::from(days.unwrap_or(1)).saturating_mul(DAY_MS));
    let made = st
        .store
        .create_token(&NewToken {
            user,
            project: ask.project,
            name: ask.name,
            roles: ask.roles,
            site: ask.site,
            expires_at: Some(expires_at),
        })
        .await;
    match made {
        Ok(m) => Ok(Ok(m)),
        // Roles beyond the member's roles in the project.
        Err(StoreError::Invalid(fields)) => Ok(Err(fields
            .into_iter()
            .map(|f| FieldError::new("roles", f.problem))
            .collect())),
        // The membership ended between the check and the insert.
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Ok(Err(vec![not_member()])),
        Err(e) => Err(e),
    }
}

fn token_info(r: TokenRecord) -> TokenInfo {
    TokenInfo {
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
    }
}

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

/// The tokens of the presented token's user in its project; with the web UI's session
/// cookie instead, the session user's tokens in all their projects. Revoked and expired ones
/// too, oldest first; never secrets. No role is needed.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    who: TokenUser,
) -> ApiResult<Json<TokenList>> {
    let (user_id, project_id) = match &who {
        TokenUser::Token(c) => (c.0.user_id, Some(c.0.project_id)),
        TokenUser::Session(s) => (s.rec.user_id, None),
    };
    let tokens = state
        .store
        .list_user_tokens(user_id, project_id)
        .await?
        .into_iter()
        .map(token_info)
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// Makes a token for the logged-in person (web UI session cookie and `X-CSRF-Token`); the
/// secret is in this answer only. A bearer token is refused (403): a token never makes a
/// token. Problems are a 422 naming `name`, `project`, `roles`, `site` or `expiresInDays`.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = TokenRequest,
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses((status = 201, body = TokenCreated), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    who: TokenUser,
    headers: HeaderMap,
    body: Result<ApiJson<TokenRequest>, ApiError>,
) -> ApiResult<(
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    Json<TokenCreated>,
)> {
    let session = match who {
        TokenUser::Token(_) => {
            return Err(ApiError::Forbidden(
                "a token never makes another token: make tokens in the web UI, with the \
                 device flow (hpcsera login --device) or the admin CLI"
                    .into(),
            ))
        }
        TokenUser::Session(s) => s,
    };
    require_csrf(&session, &headers)?;
    // Read after the checks above, so that a token is refused whatever it sends.
    let ApiJson(body) = body?;
    let mut roles = RoleSet::EMPTY;
    body.roles.iter().for_each(|r| roles.insert(*r));
    let ask = TokenAsk {
        name: body.name.trim(),
        project: &body.project,
        roles,
        site: body.site.as_deref(),
        days: Some(
            body.expires_in_days
                .unwrap_or(state.config.ui.token_default_days),
        ),
    };
    let made = make_token(
        &state,
        session.rec.user_id,
        &session.rec.user,
        &ask,
        Vec::new(),
    )
    .await?
    .map_err(ApiError::invalid)?;
    let (record, secret) = made;
    crate::web::audit(
        &state,
        &session.rec.user,
        Some(&record.project),
        "/api/v1/tokens",
        StatusCode::CREATED,
    );
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokenCreated {
            token: token_info(record),
            secret,
        }),
    ))
}

/// Revokes a token at once. With the web UI's session (and `X-CSRF-Token`): any of the
/// person's own tokens in their projects (another is 404). With a bearer token: only itself
/// (as `DELETE /tokens/self`); another token's id is 403.
#[utoipa::path(delete, path = "/api/v1/tokens/{tokenId}", tag = "tokens",
    params(("tokenId" = String, Path, description = "the token's id"),
        ("X-CSRF-Token" = Option<String>, Header, description = "the session's CSRF token (session only)")),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    who: TokenUser,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> ApiResult<StatusCode> {
    let session = match who {
        TokenUser::Token(c) if c.0.token_id == token_id => {
            state
                .store
                .revoke_token(&c.0.token_id, Some(c.0.user_id))
                .await?;
            return Ok(StatusCode::NO_CONTENT);
        }
        TokenUser::Token(_) => {
            return Err(ApiError::Forbidden(
                "a token revokes only itself; people revoke their tokens in the web UI".into(),
            ))
        }
        TokenUser::Session(s) => s,
    };
    require_csrf(&session, &headers)?;
    let mine = revoke_own(&state, session.rec.user_id, &token_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such token of yours".into()))?;
    crate::web::audit(
        &state,
        &session.rec.user,
        Some(&mine.project),
        "/api/v1/tokens/revoke",
        StatusCode::NO_CONTENT,
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes one of the user's own tokens (one revoked already is the same end): the token, or
/// `None` when the user has no token `token_id`. The session side of `DELETE /tokens/{id}`
/// and the UI's revoke form.
pub(crate) async fn revoke_own(
    state: &AppState,
    user_id: i64,
    token_id: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    let Some(mine) = state
        .store
        .list_user_tokens(user_id, None)
        .await?
        .into_iter()
        .find(|t| t.id == token_id)
    else {
        return Ok(None);
    };
    match state.store.revoke_token(&mine.id, Some(user_id)).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(Some(mine)),
        Err(e) => Err(e),
    }
}
