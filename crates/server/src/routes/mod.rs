//! The HTTP routes. Each handler: check the role, scope by the token's project, call the store.

mod agent;
mod code;
mod jobs;
mod sites;
mod system;
mod tokens;

use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::Router;

pub(crate) use agent::*;
pub(crate) use code::*;
pub(crate) use jobs::*;
pub(crate) use sites::*;
pub(crate) use system::*;
pub(crate) use tokens::*;

pub fn routes(config: &crate::ServerConfig) -> Router<AppState> {
    let blobs = DefaultBodyLimit::max(config.max_result_bytes.max(1024 * 1024));
    let api = Router::new()
        .route("/job", axum::routing::post(post_job))
        .route("/job/findJobsByStatus", get(find_jobs_by_status))
        .route("/job/updateByOperation/{jobId}", put(update_by_operation))
        .route("/job/{jobId}", get(get_job).put(put_job).delete(delete_job))
        .route("/job/{jobId}/events", get(job_events))
        .route("/events", get(project_events))
        .route("/job/{jobId}/deliveries", get(job_deliveries))
        .route(
            "/job/{jobId}/output/{stream}",
            get(read_output).post(append_output).layer(blobs),
        )
        .route("/job/{jobId}/results", get(list_results))
        .route(
            "/job/{jobId}/results/{*name}",
            get(get_result).put(put_result).layer(blobs),
        )
        .route("/agent/poll", axum::routing::post(agent_poll))
        .route(
            "/agent/jobs/{jobId}/operationDone",
            axum::routing::post(operation_done),
        )
        .route(
            "/agent/jobs/{jobId}/cleanup",
            axum::routing::post(agent_cleanup),
        )
        .route("/code", get(list_code).post(post_code))
        .route("/code/{codeId}", get(get_code))
        .route("/code/{codeId}/status", get(code_status))
        .route(
            "/code/{codeId}/hpcDigest",
            axum::routing::post(post_hpc_digest),
        )
        .route("/sites", get(list_sites))
        .route(
            "/sites/{site}/jobTypes",
            get(get_job_types).put(put_job_types),
        )
        .route("/tokens/self", get(token_self))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_index))
        .route("/docs/", get(docs_index))
        .route("/docs/{asset}", get(docs_asset))
        .fallback(api_not_found);
    Router::new()
        .nest(hpcsera_api_types::API_BASE, api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(api_not_found)
}
