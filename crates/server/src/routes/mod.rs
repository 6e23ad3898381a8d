//! The route table: one list that makes both the router and the OpenAPI document.
//!
//! Every documented route is added here with `routes!(handler)`, which takes the method and
//! the path from the handler's `#[utoipa::path]`; so a route cannot be served without being
//! described, nor described without being served. The handlers live in one module per
//! resource. Each handler checks the role, scopes by the token's project and calls the store;
//! none writes SQL. The few routes outside the document (the document itself and its viewer)
//! are added by [`router`] with plain `route` calls; the web UI's HTML pages (`crate::ui`) are
//! merged in by `app::router`, so that the API does not import the UI.

mod agent;
pub(crate) mod approvals;
mod code;
mod events;
pub(crate) mod jobs;
pub(crate) mod oauth;
mod output;
mod provenance;
pub(crate) mod query;
mod results;
mod sites;
mod sweeps;
mod system;
pub(crate) mod tokens;
pub(crate) mod wait;

use crate::config::Limits;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The documented routes, each once.
fn table(limits: &Limits) -> OpenApiRouter<AppState> {
    // Output chunks and result files are raw bytes, larger than a JSON body may be.
    let blobs = OpenApiRouter::default()
        .routes(routes!(output::read_output, output::append_output))
        .routes(routes!(results::get_result, results::put_result))
        .routes(routes!(
            provenance::get_provenance,
            provenance::put_provenance
        ))
        .layer(DefaultBodyLimit::max(limits.blob_body_bytes()));
    // A sweep of 10,000 parameter sets is larger than other JSON bodies.
    let sweep_posts = OpenApiRouter::default()
        .routes(routes!(sweeps::list_sweeps, sweeps::post_sweep))
        .layer(DefaultBodyLimit::max(limits.sweep_body_bytes()));
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(jobs::post_job))
        .routes(routes!(jobs::find_jobs_by_status))
        .routes(routes!(jobs::update_by_operation))
        .routes(routes!(jobs::get_job, jobs::put_job, jobs::delete_job))
        .routes(routes!(events::job_events))
        .routes(routes!(events::project_events))
        .routes(routes!(events::job_deliveries))
        .routes(routes!(results::list_results))
        .merge(sweep_posts)
        .routes(routes!(sweeps::get_sweep, sweeps::delete_sweep))
        .routes(routes!(sweeps::sweep_jobs))
        .routes(routes!(sweeps::sweep_events))
        .routes(routes!(sweeps::operate_sweep))
        .merge(blobs)
        .routes(routes!(provenance::get_provenance_zip))
        .routes(routes!(provenance::search_provenance))
        .routes(routes!(agent::agent_poll))
        .routes(routes!(agent::operation_done))
        .routes(routes!(agent::agent_cleanup))
        .routes(routes!(code::list_code, code::post_code))
        .routes(routes!(code::get_code))
        .routes(routes!(code::code_status))
        .routes(routes!(code::code_files))
        .routes(routes!(code::post_hpc_digest))
        .routes(routes!(approvals::post_approval))
        .routes(routes!(approvals::list_keys))
        .routes(routes!(sites::list_sites))
        .routes(routes!(sites::get_job_types, sites::put_job_types))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(tokens::token_self, tokens::revoke_token_self))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(oauth::device_authorization))
        .routes(routes!(oauth::token::token))
        .routes(routes!(oauth::oauth_metadata))
}

/// The routes of the whole API, the served OpenAPI document and the documentation viewer
/// (the web UI's routes are merged in by `app::router`).
pub(crate) fn router(limits: &Limits) -> Router<AppState> {
    let (api, doc) = table(limits).split_for_parts();
    let spec = crate::openapi::to_json(doc, limits);
    let base = hpcsera_api_types::API_BASE;
    api.route(
        &format!("{base}/openapi.json"),
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec).into_response() }),
    )
    .route(&format!("{base}/docs"), get(system::docs_index))
    .route(&format!("{base}/docs/"), get(system::docs_index))
    .route(&format!("{base}/docs/{{asset}}"), get(system::docs_asset))
    .fallback(system::api_not_found)
}

/// The OpenAPI 3 description of the API as pretty JSON: what `/api/v1/openapi.json` serves
/// and the repository keeps as `openapi.json`.
pub fn spec_json() -> String {
    let limits = Limits::default();
    crate::openapi::to_json(table(&limits).into_openapi(), &limits)
}
