//! The OAuth 2.0 Device Authorization Grant (RFC 8628), wire-compatible so that standard OAuth
//! client libraries work: `POST /oauth/device_authorization` (a client asks for a token and
//! gets a device code and a user code), `POST /oauth/token` (it polls until a person decided,
//! `token.rs`) and the authorization server metadata (RFC 8414).
//!
//! Bodies are forms (`application/x-www-form-urlencoded`); answers are JSON with
//! `Cache-Control: no-store`, errors `{"error", "error_description"}` with status 400 (429 when
//! a client address asks too often). Clients are public: `client_id` is the client's display
//! name, shown to the person who decides on the web UI's verification page (`ui/device.rs`).
//! What is asked for is the `scope` (`hpcsera_api_types::oauth::DeviceScope`). A request
//! creates nothing but the stored request: it does not say whether the project exists (the
//! person sees that). Every step is audited: the request here, the decision in the UI, the
//! token issued in `token.rs`.

pub mod token;

use crate::state::AppState;
use crate::web::UiForm;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::oauth::{
    self, AuthorizationServerMetadata, DeviceAuthorizationRequest, DeviceAuthorizationResponse,
    DeviceScope, OAuthError,
};
use hpcsera_api_types::Role;
use hpcsera_store::{NewDeviceGrant, StoreError};

const DAY_MS: i64 = 86_400_000;

/// An OAuth error answer: 400 (or `status`) with `{"error", "error_description"}` and
/// `Cache-Control: no-store`.
#[derive(Debug)]
pub struct OAuthFailure {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthFailure {
    /// A 400 with the error code `error` (`invalid_request`, `invalid_scope`, …).
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthFailure {
        OAuthFailure {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            retry_after: None,
        }
    }

    /// A 429: this address asks too often; wait `seconds`.
    fn too_many(seconds: u64) -> OAuthFailure {
        OAuthFailure {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(seconds),
            ..OAuthFailure::new(
                "slow_down",
                "too many requests from this address; wait and try again",
            )
        }
    }

    fn internal(e: StoreError) -> OAuthFailure {
        tracing::error!(error = %crate::error::chain(&e), "an OAuth request failed");
        OAuthFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..OAuthFailure::new("server_error", "something went wrong on the server")
        }
    }
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let body = OAuthError {
            error: self.error.into(),
            error_description: Some(self.description),
        };
        let mut resp = no_store((self.status, Json(body)).into_response());
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` on an answer (RFC 6749 §5.1: answers
/// carrying codes and tokens must not be cached).
fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A form body, as OAuth sends it; anything else is `invalid_request`.
pub struct OAuthForm(UiForm);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthFailure;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        UiForm::read(req).await.map(OAuthForm).ok_or_else(|| {
            OAuthFailure::new(
                "invalid_request",
                "the body must be a form (application/x-www-form-urlencoded) of at most 64 KiB",
            )
        })
    }
}

impl OAuthForm {
    /// The one value of parameter `name`: a parameter sent twice is `invalid_request`
    /// (RFC 6749 §3.2).
    fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, OAuthFailure> {
        let mut values = self.0.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthFailure::new(
                "invalid_request",
                format!("the parameter {name} was sent more than once"),
            ));
        }
        Ok(first)
    }

    /// The client's name (`client_id`), checked: missing or unfit is `invalid_client`.
    fn client_id(&self) -> Result<&str, OAuthFailure> {
        let id = self.single("client_id")?.ok_or_else(|| {
            OAuthFailure::new(
                "invalid_client",
                "client_id (the client's display name) is missing",
            )
        })?;
        oauth::check_client_name(id).map_err(|e| OAuthFailure::new("invalid_client", e))?;
        Ok(id)
    }
}

/// The URL people reach the server at: `--public-url`, else the request's scheme and host
/// (`forwarded::Peer`: TLS or a trusted proxy's `X-Forwarded-Proto`/`-Host`, else `Host`),
/// else the listen address.
pub(crate) fn public_base(state: &AppState, ext: &axum::http::Extensions) -> String {
    if let Some(url) = &state.config.ui.public_url {
        return url.trim_end_matches('/').to_string();
    }
    match ext.get::<crate::extract::Peer>() {
        Some(p) => p.base_url(&state.config.listen),
        None => format!("http://{}", state.config.listen),
    }
}

/// The asked lifetime in ms (the server's default token lifetime when the scope names none);
/// `invalid_scope` beyond the longest the server gives.
fn asked_lifetime_ms(state: &AppState, scope: &DeviceScope) -> Result<i64, OAuthFailure> {
    let max_days = i64::from(state.config.ui.token_max_days);
    let ms = match scope.lifetime {
        Some(l) => i64::try_from(l.secs())
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
        None => i64::from(state.config.ui.token_default_days) * DAY_MS,
    };
    if ms > max_days * DAY_MS {
        return Err(OAuthFailure::new(
            "invalid_scope",
            format!("the lifetime is longer than this server gives ({max_days}d)"),
        ));
    }
    Ok(ms)
}

/// A client asks for a token: answers the device code, the user code and where the person
/// decides (RFC 8628 §3.1, §3.2).
#[utoipa::path(post, path = "/oauth/device_authorization", tag = "oauth",
    request_body(content = DeviceAuthorizationRequest,
        content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = DeviceAuthorizationResponse),
        (status = 400, body = OAuthError,
            description = "invalid_request, invalid_client (client_id) or invalid_scope"),
        (status = 429, body = OAuthError,
            description = "slow_down: too many requests from this address, or waiting in all")))]
pub async fn device_authorization(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    form: OAuthForm,
) -> Result<Response, OAuthFailure> {
    let client = form.client_id()?;
    let scope = form.single("scope")?.unwrap_or("");
    let scope = DeviceScope::parse(scope).map_err(|e| OAuthFailure::new("invalid_scope", e))?;
    let lifetime_ms = asked_lifetime_ms(&state, &scope)?;
    // Counted only for requests that would be stored: a refused one costs nothing.
    state
        .device_requests
        .check(&crate::web::peer(&ext))
        .map_err(OAuthFailure::too_many)?;
    let device = &state.config.device;
    let made = state
        .store
        .create_device_grant(&NewDeviceGrant {
            client_name: client,
            project: &scope.project,
            roles: scope.roles,
            site: scope.site.as_deref(),
            lifetime_ms,
            valid_ms: i64::try_from(device.device_code_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            interval_s: i64::try_from(device.device_poll_seconds).unwrap_or(5),
        })
        .await;
    let codes = match made {
        Ok(c) => c,
        Err(StoreError::Conflict(m)) => return Err(OAuthFailure::too_many(60).described(m)),
        Err(e) => return Err(OAuthFailure::internal(e)),
    };
    state.audit.action(
        None,
        Some(&scope.project),
        None,
        oauth::DEVICE_AUTHORIZATION_PATH,
        200,
    );
    let page = format!("{}{}", public_base(&state, &ext), oauth::VERIFICATION_PATH);
    let shown = oauth::format_user_code(&codes.user_code);
    let body = DeviceAuthorizationResponse {
        device_code: codes.device_code,
        verification_uri_complete: format!("{page}?user_code={shown}"),
        verification_uri: page,
        user_code: shown,
        expires_in: device.device_code_seconds,
        interval: device.device_poll_seconds,
    };
    Ok(no_store(Json(body).into_response()))
}

impl OAuthFailure {
    fn described(mut self, description: String) -> OAuthFailure {
        self.description = description;
        self
    }
}

/// The authorization server's metadata (RFC 8414): where the device flow's endpoints are.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = AuthorizationServerMetadata)))]
pub async fn oauth_metadata(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
) -> Json<AuthorizationServerMetadata> {
    let base = public_base(&state, &ext);
    Json(AuthorizationServerMetadata {
        device_authorization_endpoint: format!("{base}{}", oauth::DEVICE_AUTHORIZATION_PATH),
        token_endpoint: format!("{base}{}", oauth::TOKEN_PATH),
        grant_types_supported: vec![oauth::DEVICE_CODE_GRANT.into()],
        response_types_supported: Vec::new(),
        token_endpoint_auth_methods_supported: vec!["none".into()],
        scopes_supported: Role::ALL.iter().map(|r| r.as_str().to_string()).collect(),
        service_documentation: format!("{base}{}/docs/", hpcsera_api_types::API_BASE),
        issuer: base,
    })
}
