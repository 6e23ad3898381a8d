//! The statuses every operation shares by rule, from the extractors it takes, so that no
//! route has to list them and none can forget one: the bearer token (`Caller`: 401, 429),
//! path ids (`JobId`, `CodeId`: 400, 404), a query (400), a JSON body (`ApiJson`: 400, 413,
//! 415, 422), a raw body (`ApiBytes`: 400, 413), and 500 for every route that reads the
//! database. Each error answer is an `ErrorBody` with a description of when it happens; 401
//! carries `WWW-Authenticate` and 429 `Retry-After`.
//!
//! Route-specific statuses (403 for a role, 409 for a state) stay in the routes' annotations;
//! this module only adds and describes, it never removes one.

use super::operations;
use serde_json::{json, Map, Value};

/// What each error status means in this API.
fn description(status: &str) -> &'static str {
    match status {
        "400" => "a path, query, header or body value is malformed; `error.fields` names it",
        "401" => "no bearer token, or one that is unknown, revoked, expired or whose user left the project",
        "403" => "the token lacks the role this needs, is restricted to another site, or is not the agent token this needs",
        "404" => "there is no such resource in the token's project (another project's is 404 too)",
        "409" => "the resource is not in a state that allows this (ended, held by another agent, not pending …)",
        "413" => "the body is larger than this server accepts",
        "415" => "the body's Content-Type is not one this operation takes",
        "422" => "the body is well-formed but not acceptable; `error.fields` lists every problem",
        "429" => "too many requests for this token, or too many failed authentications from this address; retry after `Retry-After` seconds",
        "500" => "internal error; the server's log has the cause (quote `error.requestId`)",
        "503" => "the database does not answer",
        _ => "",
    }
}

pub(super) fn apply(doc: &mut Value) {
    for (path, _, op) in operations(doc) {
        let mut add: Vec<&str> = Vec::new();
        if op.get("security").is_some() {
            add.extend(["401", "429"]);
        }
        if path.starts_with("/api/") || path.starts_with("/oauth/") {
            add.push("500");
        }
        let params = op.get("parameters").and_then(Value::as_array);
        let has = |place: &str| {
            params.is_some_and(|ps| ps.iter().any(|p| p["in"] == place && p["name"] != "stream"))
        };
        if has("path") {
            add.extend(["400", "404"]);
        }
        if has("query") || has("header") {
            add.push("400");
        }
        match body_type(op).as_deref() {
            Some("application/json") => add.extend(["400", "413", "415", "422"]),
            Some("application/x-www-form-urlencoded") | None => {}
            Some(_) => add.extend(["400", "413"]),
        }
        // The OAuth endpoints answer RFC 6749's error object, the rest of the API `ErrorBody`.
        let body = if path.starts_with("/oauth/") {
            "OAuthError"
        } else {
            "ErrorBody"
        };
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        for status in add {
            responses
                .entry(status)
                .or_insert_with(|| error_response(status, body));
        }
        describe(responses);
    }
}

/// The content type of an operation's request body, if it takes one.
fn body_type(op: &Value) -> Option<String> {
    op.pointer("/requestBody/content")
        .and_then(Value::as_object)
        .and_then(|c| c.keys().next().cloned())
}

/// An error answer with the schema `body`.
fn error_response(status: &str, body: &str) -> Value {
    json!({
        "description": description(status),
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}},
    })
}

/// Fills the empty descriptions of error answers and adds the headers 401 and 429 carry.
fn describe(responses: &mut Map<String, Value>) {
    for (status, r) in responses.iter_mut() {
        if r.get("description").and_then(Value::as_str) == Some("") {
            r["description"] = json!(description(status));
        }
        let header = match status.as_str() {
            "401" => json!({"WWW-Authenticate": {
                "description": "the scheme to use: `Bearer realm=\"hpcsera\"`",
                "required": true,
                "schema": {"type": "string"}}}),
            "429" => json!({"Retry-After": {
                "description": "seconds to wait before retrying",
                "required": true,
                "schema": {"type": "integer", "minimum": 0}}}),
            _ => continue,
        };
        r["headers"] = header;
    }
}
