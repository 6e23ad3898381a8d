//! The OpenAPI 3 description, generated from the handlers' annotations. A copy is checked
//! in as `openapi.json` at the repository root; a test fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hpcsera — HPC Service API",
        description = "A REST API that lets services use an HPC cluster as their backend. Jobs are instances of job types that a site's agent publishes; tokens carry roles (GET_JobStatus, UPDATE_JobStatus, GET_Job, POST_Code, GET_Code, POST_Job, UPDATE_Job, DELETE_Job) for one user and project.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::routes::post_job,
        crate::routes::find_jobs_by_status,
        crate::routes::update_by_operation,
        crate::routes::get_job,
        crate::routes::put_job,
        crate::routes::delete_job,
        crate::routes::job_events,
        crate::routes::project_events,
        crate::routes::job_deliveries,
        crate::routes::read_output,
        crate::routes::list_results,
        crate::routes::get_result,
        crate::routes::agent_poll,
        crate::routes::operation_done,
        crate::routes::agent_cleanup,
        crate::routes::append_output,
        crate::routes::put_result,
        crate::routes::post_code,
        crate::routes::list_code,
        crate::routes::get_code,
        crate::routes::code_status,
        crate::routes::post_hpc_digest,
        crate::routes::list_sites,
        crate::routes::get_job_types,
        crate::routes::put_job_types,
        crate::routes::token_self,
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Submit, inspect, change and control jobs"),
        (name = "code", description = "Code bundles: upload, status, the agent's download and HPC-side digest (approval is out of band)"),
        (name = "sites", description = "Sites and the job types they offer"),
        (name = "agent", description = "Used by the HPC agent"),
        (name = "tokens", description = "Token introspection"),
        (name = "system", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("hpcs_…")
                    .build(),
            ),
        );
    }
}

/// The spec as pretty JSON (what `/api/v1/openapi.json` serves and the repository keeps).
pub fn spec_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into()) + "\n"
}
