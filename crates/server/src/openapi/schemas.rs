//! What the derived schemas cannot say by themselves: the job type's parameter as a `oneOf`
//! with a `type` discriminator (serde's flattened tag derives as an `allOf` of a `oneOf`,
//! which generators drop), formats (`date-time` for every `…At`, `uuid` for job and sweep ids, a
//! SHA-256 `pattern` for digests), the bounds the server checks (names, page sizes, waits,
//! poll sizes), and raw bodies as `format: binary`.
//!
//! Every bound here is the server's own constant, so the document cannot be looser or
//! stricter than the check it describes; a bound that cannot be said exactly in JSON Schema
//! (a size in bytes of UTF-8 or of serialised JSON) stays in the field's description.

use super::{operations, schema};
use crate::api_bounds::{
    MAX_EVENT_WAIT, MAX_IDEMPOTENCY_KEY, MAX_OUTPUT_WAIT, MAX_PAGE, MAX_POLL_IDS, MAX_POLL_JOBS,
    MAX_POLL_WAIT,
};
use crate::config::Limits;
use hpcsera_api_types::{JobUpdate, MAX_NAME_LEN};
use serde_json::{json, Map, Value};

/// A SHA-256 as the API writes it: 64 lower-case hex digits.
const SHA256: &str = "^[0-9a-f]{64}$";
/// Text without control characters (what `char::is_control` finds: C0, DEL, C1).
const NO_CONTROLS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// An agent's Ed25519 key as written: `ed25519:` and the base64 of 32 bytes (canonical
/// padding). Necessary, not sufficient: not every 32 bytes are a key.
const AGENT_KEY: &str = "^ed25519:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";
/// An Ed25519 signature in base64: 64 bytes (canonical padding).
const SIGNATURE: &str = "^[A-Za-z0-9+/]{85}[AQgw]==$";

/// A site or job type name (`is_valid_name` with dashes and dots).
fn name_schema() -> Value {
    json!({"type": "string", "pattern": format!("^[A-Za-z_][A-Za-z0-9_.-]{{0,{}}}$", MAX_NAME_LEN - 1),
        "maxLength": MAX_NAME_LEN})
}

pub(super) fn apply(doc: &mut Value, limits: &Limits) {
    param_union(doc);
    job_update_union(doc);
    formats(doc);
    bounds(doc);
    parameters(doc);
    binary_bodies(doc, limits);
}

/// `ParamSpec` as a `oneOf` of one object schema per parameter type (`StringParam`,
/// `IntegerParam`, …), each with the common fields, discriminated by `type`.
fn param_union(doc: &mut Value) {
    let Some(kinds) = schema(doc, "ParamKind").map(Value::take) else {
        return;
    };
    let Some(spec) = schema(doc, "ParamSpec").map(Value::take) else {
        return;
    };
    let common = spec
        .pointer("/allOf/1")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut variants = Vec::new();
    let mut mapping = Map::new();
    for kind in kinds["oneOf"].as_array().into_iter().flatten() {
        let Some(tag) = kind
            .pointer("/properties/type/enum/0")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let name = format!("{}{}Param", tag[..1].to_uppercase(), &tag[1..]);
        let mut properties = common["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        properties.extend(kind["properties"].as_object().cloned().unwrap_or_default());
        let mut required: Vec<Value> = common["required"].as_array().cloned().unwrap_or_default();
        required.extend(kind["required"].as_array().cloned().unwrap_or_default());
        let mut variant = json!({"type": "object", "properties": properties, "required": required});
        if let Some(d) = kind.get("description") {
            variant["description"] = d.clone();
        }
        let reference = format!("#/components/schemas/{name}");
        mapping.insert(tag.to_string(), json!(reference));
        variants.push(json!({"$ref": reference}));
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            schemas.insert(name, variant);
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.remove("ParamKind");
        schemas.insert(
            "ParamSpec".into(),
            json!({
                "description": spec.get("description").cloned().unwrap_or(Value::Null),
                "oneOf": variants,
                "discriminator": {"propertyName": "type", "mapping": mapping},
            }),
        );
    }
}

/// Whether `field` of `JobUpdate` is part of an agent's status report (else of a client's
/// change), as `JobUpdate::is_status_report` decides for a body naming only it: the one
/// classifier, asked, not a second list. `None` when no sample value fits the field.
fn is_report_field(field: &str) -> Option<bool> {
    [json!("queued"), json!(0), json!([]), json!({})]
        .into_iter()
        .find_map(|sample| {
            let mut body = Map::new();
            body.insert(field.to_string(), sample);
            serde_json::from_value::<JobUpdate>(Value::Object(body)).ok()
        })
        .map(|u| u.is_status_report())
}

/// `JobUpdate` as a `oneOf` of `JobStatusReport` (an agent's) and `JobChange` (a client's):
/// one request does one of the two, names at least one field, and sends no `null` (the
/// server reads `null` as absent, so a body of nulls names nothing).
fn job_update_union(doc: &mut Value) {
    let Some(update) = schema(doc, "JobUpdate").map(Value::take) else {
        return;
    };
    let props = update["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let branch = |report: bool, description: &str| {
        let own: Map<String, Value> = props
            .iter()
            .filter(|(k, _)| is_report_field(k) == Some(report))
            .map(|(k, v)| (k.clone(), not_null(v)))
            .collect();
        json!({"type": "object", "description": description, "properties": own,
            "minProperties": 1, "additionalProperties": false})
    };
    let report = branch(
        true,
        "An agent's status report (role `UPDATE_JobStatus`, the agent token holding the job).",
    );
    let change = branch(
        false,
        "A client's change of a job no agent has claimed yet (role `UPDATE_Job`).",
    );
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("JobStatusReport".into(), report);
        schemas.insert("JobChange".into(), change);
        schemas.insert(
            "JobUpdate".into(),
            json!({
                "description": update.get("description").cloned().unwrap_or(Value::Null),
                "oneOf": [{"$ref": "#/components/schemas/JobStatusReport"},
                    {"$ref": "#/components/schemas/JobChange"}],
            }),
        );
    }
}

/// A property's schema without its `null`: `["string", "null"]` is `"string"`, a `oneOf`
/// of `null` and a reference is the reference.
fn not_null(p: &Value) -> Value {
    let mut p = p.clone();
    if let Some(types) = p["type"].as_array() {
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        p["type"] = if rest.len() == 1 {
            rest[0].clone()
        } else {
            Value::Array(rest)
        };
    }
    if let Some(one) = p["oneOf"].as_array() {
        let rest: Vec<Value> = one
            .iter()
            .filter(|s| s["type"] != "null")
            .cloned()
            .collect();
        if rest.len() == 1 {
            return rest[0].clone();
        }
    }
    p
}

/// Every property of every component schema, with its schema and property name.
fn each_property(doc: &mut Value, mut f: impl FnMut(&str, &str, &mut Value)) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (schema_name, s) in schemas.iter_mut() {
        if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
            for (prop, p) in props.iter_mut() {
                f(schema_name, prop, p);
            }
        }
    }
}

/// Sets `key` on a property's schema, or on its items for an array.
fn set(p: &mut Value, key: &str, value: Value) {
    let target = if p["type"] == "array" {
        &mut p["items"]
    } else {
        p
    };
    if let Some(o) = target.as_object_mut() {
        o.insert(key.into(), value);
    }
}

/// Times are RFC 3339 (`…At`), job ids UUIDs, digests SHA-256 hex.
fn formats(doc: &mut Value) {
    each_property(doc, |schema, prop, p| {
        let uuid = matches!(
            prop,
            "jobId" | "sweepId" | "activeJobIds" | "releasedJobIds"
        ) || (matches!(schema, "Job" | "Sweep") && prop == "id");
        let digest = matches!(prop, "sha256" | "hpcSha256" | "codeToVerify")
            || (schema == "CodeBundle" && prop == "id");
        if prop.ends_with("At") {
            set(p, "format", json!("date-time"));
        } else if uuid {
            set(p, "format", json!("uuid"));
        } else if digest {
            set(p, "pattern", json!(SHA256));
        }
    });
}

/// The bounds the handlers check, on the bodies' fields.
fn bounds(doc: &mut Value) {
    // Names a batch system reports beyond the known ones: no control characters (and at most
    // 256 bytes, said in words).
    if let Some(granted) = schema(doc, "GrantedResources") {
        granted["propertyNames"] = json!({"pattern": NO_CONTROLS});
    }
    each_property(doc, |schema, prop, p| match (schema, prop) {
        ("NewJob", "site" | "jobType") => {
            let description = p.get("description").cloned();
            *p = name_schema();
            if let Some(d) = description {
                p["description"] = d;
            }
        }
        ("JobTypeSpec", "name") => *p = name_schema(),
        (s, "name") if s.ends_with("Param") => {
            p["pattern"] = json!(format!("^[A-Za-z_][A-Za-z0-9_]{{0,{}}}$", MAX_NAME_LEN - 1));
        }
        ("AgentPoll" | "PublishJobTypes", "agentVersion" | "agentHost") => {
            p["pattern"] = json!(NO_CONTROLS);
        }
        ("PublishJobTypes", "agentKey") => p["pattern"] = json!(AGENT_KEY),
        ("OperationDone" | "JobStatusReport", "message") | ("JobStatusReport", "batchJobId") => {
            p["pattern"] = json!("^[^\\u0000]*$");
        }
        ("AgentCleanup", "message") => {
            p["minLength"] = json!(1);
            p["pattern"] = json!("^[^\\u0000]*$");
        }
        ("AgentPoll", "maxJobs") => p["maximum"] = json!(MAX_POLL_JOBS),
        ("AgentPoll", "waitSeconds") => p["maximum"] = json!(MAX_POLL_WAIT),
        ("AgentPoll", "activeJobIds") => p["maxItems"] = json!(MAX_POLL_IDS),
        _ => {}
    });
}

/// Path and query parameters: ids, names, page sizes, waits, times, statuses.
fn parameters(doc: &mut Value) {
    for (path, _, op) in operations(doc) {
        let events = path.ends_with("/events");
        for p in op
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(name) = p["name"].as_str().map(str::to_string) else {
                continue;
            };
            let schema = match (p["in"].as_str().unwrap_or(""), name.as_str()) {
                ("path", "jobId" | "sweepId") => json!({"type": "string", "format": "uuid"}),
                ("path", "codeId") | ("query", "sha256" | "codeSha256") => {
                    json!({"type": "string", "pattern": SHA256})
                }
                ("path", "site") | ("query", "site" | "jobType") => name_schema(),
                ("path", "stream") => json!({"type": "string", "enum": ["stdout", "stderr"]}),
                ("path", "name") => json!({"type": "string",
                    "pattern": "^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"}),
                ("query", "limit") => json!({"type": "integer", "minimum": 1,
                    "maximum": MAX_PAGE}),
                ("query", "wait") => json!({"type": "integer", "minimum": 0,
                    "maximum": if events { MAX_EVENT_WAIT } else { MAX_OUTPUT_WAIT as u64 }}),
                ("query", "offset" | "maxBytes") => {
                    json!({"type": "integer", "format": "int64", "minimum": 0})
                }
                ("query", n) if n.starts_with("created") || n.starts_with("ended") => {
                    json!({"type": "string", "format": "date-time"})
                }
                ("header", "Idempotency-Key") => json!({"type": "string",
                    "pattern": format!("^[!-~]([ -~]{{0,{}}}[!-~])?$", MAX_IDEMPOTENCY_KEY - 2)}),
                ("header", "x-provenance-key") => json!({"type": "string", "pattern": AGENT_KEY}),
                ("header", "x-provenance-signature") => {
                    json!({"type": "string", "pattern": SIGNATURE})
                }
                ("query", "status") => {
                    p["style"] = json!("form");
                    p["explode"] = json!(true);
                    json!({"type": "array", "items": {"$ref": "#/components/schemas/JobStatus"}})
                }
                _ => continue,
            };
            p["schema"] = schema;
        }
    }
}

/// Raw request and response bodies (code bundles, output, result files, manifests, crates)
/// as `type: string, format: binary`, with the server's size limits in the description.
fn binary_bodies(doc: &mut Value, limits: &Limits) {
    let binary = json!({"type": "string", "format": "binary"});
    for (path, _, op) in operations(doc) {
        let limit = if path == "/api/v1/code" {
            limits.max_code_bytes as usize
        } else {
            limits.blob_body_bytes()
        };
        if let Some(content) = op
            .pointer_mut("/requestBody/content")
            .and_then(Value::as_object_mut)
        {
            for (ctype, media) in content.iter_mut() {
                if is_json_ld(ctype) {
                    media["schema"] = json_ld();
                } else if !is_structured(ctype) {
                    media["schema"] = binary.clone();
                    op_note(media, limit);
                }
            }
        }
        for (_, r) in op
            .get_mut("responses")
            .and_then(Value::as_object_mut)
            .into_iter()
            .flatten()
        {
            for (ctype, media) in r
                .get_mut("content")
                .and_then(Value::as_object_mut)
                .into_iter()
                .flatten()
            {
                if is_json_ld(ctype) {
                    media["schema"] = json_ld();
                } else if !is_structured(ctype) && ctype != "text/plain" {
                    media["schema"] = binary.clone();
                }
            }
        }
    }
}

/// Whether a body is JSON-LD (a provenance manifest): a JSON object whose exact bytes are
/// what the agent signed.
fn is_json_ld(ctype: &str) -> bool {
    ctype == "application/ld+json"
}

fn json_ld() -> Value {
    json!({"type": "object", "description": "an RO-Crate metadata document (JSON-LD); \
        its exact bytes are what the signature covers"})
}

/// Whether a body of this type is a schema'd document (JSON, a form) rather than bytes.
fn is_structured(ctype: &str) -> bool {
    ctype == "application/json" || ctype == "application/x-www-form-urlencoded"
}

/// Notes a raw body's size limit where generators show it.
fn op_note(media: &mut Value, limit: usize) {
    media["schema"]["description"] = json!(format!("at most {limit} bytes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_update_field_is_a_report_or_a_change() {
        let doc: Value = serde_json::from_str(&crate::routes::spec_json()).unwrap();
        let report = &doc["components"]["schemas"]["JobStatusReport"]["properties"];
        let change = &doc["components"]["schemas"]["JobChange"]["properties"];
        let fields: Vec<&String> = report
            .as_object()
            .unwrap()
            .keys()
            .chain(change.as_object().unwrap().keys())
            .collect();
        for f in ["status", "exitCode", "batchJobId", "message", "subJobs"] {
            assert!(report.get(f).is_some(), "{f} is a report field");
        }
        for f in ["parameters", "metadata", "callbackUrl"] {
            assert!(change.get(f).is_some(), "{f} is a change field");
        }
        let derived = serde_json::to_value(<JobUpdate as utoipa::PartialSchema>::schema()).unwrap();
        let all = derived["properties"].as_object().unwrap();
        assert!(all.len() >= 8, "{derived}");
        for f in all.keys() {
            assert!(fields.contains(&f), "{f} is in one branch");
        }
        assert_eq!(fields.len(), all.len());
    }
}
