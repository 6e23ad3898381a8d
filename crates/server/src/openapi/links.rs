//! OpenAPI links for the job flow: from a submitted (or read) job to everything a client
//! does next with its id — read it, follow its events and output, list and read its results,
//! request an operation, change or delete it — and from a pushed code bundle to its status.
//! Generators show them as the next calls; schemathesis's stateful phase follows them.

use serde_json::{json, Map, Value};

/// A link: its name, the operationId it leads to, and constant parameters besides `jobId`.
type Next = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Operations a job's id leads to.
const JOB_NEXT: &[Next] = &[
    ("GetJob", "get_job", &[]),
    ("JobEvents", "job_events", &[]),
    ("ReadStdout", "read_output", &[("stream", "stdout")]),
    ("ReadStderr", "read_output", &[("stream", "stderr")]),
    ("ListResults", "list_results", &[]),
    ("Deliveries", "job_deliveries", &[]),
    ("RequestOperation", "update_by_operation", &[]),
    ("ChangeJob", "put_job", &[]),
    ("DeleteJob", "delete_job", &[]),
];

/// The links from an answer whose body is a job (`id`).
fn job_links() -> Value {
    let mut links = Map::new();
    for (name, op, extra) in JOB_NEXT {
        let mut params = Map::new();
        params.insert("jobId".into(), json!("$response.body#/id"));
        for (k, v) in *extra {
            params.insert((*k).into(), json!(v));
        }
        links.insert(
            (*name).into(),
            json!({"operationId": op, "parameters": params}),
        );
    }
    Value::Object(links)
}

pub(super) fn apply(doc: &mut Value) {
    let targets = [
        ("/api/v1/job", "post", &["201", "200"][..]),
        ("/api/v1/job/{jobId}", "get", &["200"][..]),
    ];
    for (path, method, statuses) in targets {
        for status in statuses {
            if let Some(r) = response(doc, path, method, status) {
                r["links"] = job_links();
            }
        }
    }
    let code = json!({
        "CodeStatus": {"operationId": "code_status", "parameters": {"codeId": "$response.body#/id"}},
        "CodeFiles": {"operationId": "code_files", "parameters": {"codeId": "$response.body#/id"}},
    });
    for status in ["200", "201"] {
        if let Some(r) = response(doc, "/api/v1/code", "post", status) {
            r["links"] = code.clone();
        }
    }
    if let Some(r) = response(doc, "/api/v1/job/{jobId}/results", "get", "200") {
        r["links"] = json!({"GetResult": {"operationId": "get_result", "parameters": {
            "jobId": "$request.path.jobId", "name": "$response.body#/results/0/name"}}});
    }
}

/// The response object of `method path` for `status`.
fn response<'a>(
    doc: &'a mut Value,
    path: &str,
    method: &str,
    status: &str,
) -> Option<&'a mut Value> {
    doc.get_mut("paths")?
        .get_mut(path)?
        .get_mut(method)?
        .get_mut("responses")?
        .get_mut(status)
}
