//! The OpenAPI document's frame: title, description, license, tags and the bearer scheme.
//! The paths and schemas come from the route table (`routes`), which starts from this frame;
//! [`to_json`] then adds what every route shares by rule (`responses`: the statuses and
//! headers of the extractors a route takes; `schemas`: formats, bounds, the job type's
//! parameter union, binary bodies; `links`: the job flow).
//!
//! A copy of the whole document is checked in as `openapi.json` at the repository root; a
//! test fails when the two differ. This module must never list routes.

mod links;
mod responses;
mod schemas;

use crate::config::Limits;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hpcsera — HPC Service API",
        description = "A REST API that lets services use an HPC cluster as their backend. Jobs are instances of job types that a site's agent publishes; tokens carry roles (GET_JobStatus, UPDATE_JobStatus, GET_Job, POST_Code, GET_Code, POST_Job, UPDATE_Job, DELETE_Job) for one user and project.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Submit, inspect, change and control jobs"),
        (name = "sweeps", description = "Sweeps: many jobs of one job type in one request (parameter sets or a grid), their counts, members, events and operations on all of them"),
        (name = "code", description = "Code bundles: upload, status, the agent's download and HPC-side digest; approval is out of band: a person decides, or signs an approval with their SSH key"),
        (name = "sites", description = "Sites and the job types they offer"),
        (name = "agent", description = "Used by the HPC agent"),
        (name = "provenance", description = "Signed RO-Crate provenance of ended jobs: the manifest, the crate as a ZIP, and which job made or used a file (by SHA-256)"),
        (name = "tokens", description = "Tokens: who a token is, its user's tokens in its project, revoking itself; a logged-in web UI session lists, makes and revokes its own tokens (tokens are made by people, never by tokens)"),
        (name = "system", description = "Health and metrics"),
        (name = "oauth", description = "OAuth 2.0 Device Authorization Grant (RFC 8628) for headless clients: form bodies, snake_case JSON answers, a person approves in the web UI (/ui/device); RFC 8414 metadata"),
    )
)]
pub(crate) struct ApiDoc;

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
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "hpcsera_session",
                "The web UI's session cookie (`__Host-hpcsera_session` behind https). Requests \
                 that change something also send the session's CSRF token in `X-CSRF-Token`.",
            ))),
        );
    }
}

/// The finished document as pretty JSON: this release's version, the router's wildcard
/// segments (`{*name}`, a relative path) written as OpenAPI's plain parameters (`{name}`),
/// and the rules of `responses`, `schemas` and `links` applied with the server's `limits`.
pub(crate) fn to_json(mut doc: utoipa::openapi::OpenApi, limits: &Limits) -> String {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    let Ok(mut v) = serde_json::to_value(&doc) else {
        return "{}\n".into();
    };
    schemas::apply(&mut v, limits);
    responses::apply(&mut v);
    links::apply(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// Every operation of the document: its path, method and object.
fn operations(doc: &mut Value) -> impl Iterator<Item = (String, String, &mut Value)> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .flat_map(|(path, item)| {
            item.as_object_mut()
                .into_iter()
                .flat_map(|m| m.iter_mut())
                .filter(|(method, _)| {
                    matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch")
                })
                .map(move |(method, op)| (path.clone(), method.clone(), op))
        })
}

/// The component schema `name`, if the document has it.
fn schema<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
}
