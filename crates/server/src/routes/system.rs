//! The service's own routes: liveness, readiness, metrics, the API documentation and the
//! 404 for unknown paths.
//!
//! No authentication here, so nothing here may reveal a project's data or a secret.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "ready"), (status = 503, body = hpcsera_api_types::ErrorBody)))]
pub async fn readyz(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    st.store.ping().await.map_err(|e| {
        ApiError::Unavailable(format!("database unavailable: {}", crate::error::chain(&e)))
    })?;
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let ops = match st.store.ops_stats().await {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "metrics: the database did not answer");
            None
        }
    };
    let scrape = crate::metrics::Scrape {
        ops,
        pool: st.store.pool_stats(),
        audit_queued: st.audit.queued(),
        now_ms: hpcsera_store::now_ms(),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(&scrape),
    )
        .into_response()
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hpcsera API</title>
<link rel="stylesheet" href="/api/v1/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/v1/docs/swagger-ui-bundle.js"></script>
<script src="/api/v1/docs/init.js"></script>
</body></html>"#;

const DOCS_INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true
});"##;

/// The API documentation (Swagger UI, served from the binary; nothing is fetched elsewhere).
pub async fn docs_index() -> Html<&'static str> {
    Html(DOCS_HTML)
}

/// The Swagger UI's files.
pub async fn docs_asset(Path(asset): Path<String>) -> Response {
    let (ctype, body): (&str, &'static [u8]) = match asset.as_str() {
        "swagger-ui.css" => (
            "text/css",
            include_bytes!("../../assets/vendor/swagger-ui/swagger-ui.css"),
        ),
        "swagger-ui-bundle.js" => (
            "application/javascript",
            include_bytes!("../../assets/vendor/swagger-ui/swagger-ui-bundle.js"),
        ),
        "init.js" => ("application/javascript", DOCS_INIT.as_bytes()),
        _ => {
            return ApiError::NotFound(format!("no documentation asset {asset:?}")).into_response()
        }
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Every path no route matches: 404 with a JSON error body.
pub async fn api_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
