//! Signed provenance: the holding agent uploads a job's manifest and signature before it
//! reports the job's end; clients read the manifest (JSON-LD), download the crate as a ZIP
//! (manifest, signature, result files) and search the digest index.
//!
//! The server checks what it can (the signature against the key the agent sent, the
//! manifest names this job, its result files are the stored ones) but is not trusted for
//! any of it: a client verifies the signature with the agent's key it got elsewhere
//! (`hpcsera provenance verify`). Jobs that ended without an agent (cancelled before a claim,
//! lost) have no manifest: 404 saying so. Never lets anyone but the holding agent write.

use super::jobs::{narrow_to_token_site, visible_job};
use super::query::{decode_cursor, encode_cursor, pairs, parse_limit, parse_time};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiBytes, Caller, JobId};
use crate::state::AppState;
use crate::zipstream::ZipStream;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hpcsera_api_types::provenance::{
    verify_manifest, AgentKey, ManifestFacts, ProvenanceSearch, SignatureFile, KEY_HEADER,
    MANIFEST_FILE, MAX_MANIFEST_BYTES, RESULTS_PREFIX, SIGNATURE_FILE, SIGNATURE_HEADER,
};
use hpcsera_api_types::{is_valid_name, ErrorBody, JobStatus, Role};
use hpcsera_store::{NewProvenance, ProvenanceLookup, ProvenanceQuery, StoredProvenance};

/// The media type of a manifest (RO-Crate 1.1, flattened and compacted JSON-LD).
const LD_JSON: &str = "application/ld+json; profile=\"http://www.w3.org/ns/json-ld#flattened http://www.w3.org/ns/json-ld#compacted https://w3id.org/ro/crate\"";

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_field(name, "this header is required"))
}

/// The agent that holds the job stores its signed manifest (replacing an earlier one), before
/// it reports the end. Body: the exact manifest bytes; headers: the base64 Ed25519 signature
/// over them and the agent's public key.
#[utoipa::path(put, path = "/api/v1/job/{jobId}/provenance", tag = "agent",
    params(("jobId" = String, Path),
        ("x-provenance-signature" = String, Header, description = "base64 Ed25519 signature over the body's exact bytes"),
        ("x-provenance-key" = String, Header, description = "the agent's public key, ed25519:<base64>")),
    request_body(content = Vec<u8>, content_type = "application/ld+json"),
    responses((status = 204, description = "stored"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_provenance(
    State(st): State<AppState>,
    agent: AgentCaller,
    id: JobId,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<StatusCode> {
    agent.require(Role::UpdateJobStatus)?;
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a manifest may have at most {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let key = AgentKey::parse(header_text(&headers, KEY_HEADER)?)
        .map_err(|e| ApiError::invalid_field(KEY_HEADER, e.to_string()))?;
    let signature = header_text(&headers, SIGNATURE_HEADER)?;
    verify_manifest(&key, &body, signature)
        .map_err(|e| ApiError::invalid_field(SIGNATURE_HEADER, e.to_string()))?;
    let facts = ManifestFacts::parse(&body)
        .map_err(|e| ApiError::invalid_field("manifest", e.to_string()))?;
    if facts.job_id != id.as_str() {
        return Err(ApiError::invalid_field(
            "manifest",
            format!("is about job {:?}, not this one", facts.job_id),
        ));
    }
    let new = NewProvenance {
        manifest: &body,
        signature: signature.trim(),
        agent_key: &key.to_string(),
        facts: &facts,
    };
    st.store
        .put_provenance(&agent.agent_ref(), &id, &new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The manifest of a visible job (`GET_JobStatus`), or 404 saying why there is none.
async fn stored(st: &AppState, caller: &Caller, id: &str) -> ApiResult<StoredProvenance> {
    caller.require(Role::GetJobStatus)?;
    visible_job(st, caller, id).await?;
    match st.store.provenance(caller.0.project_id, id).await? {
        ProvenanceLookup::Found(p) => Ok(p),
        ProvenanceLookup::Missing(status) => Err(ApiError::NotFound(missing(status))),
    }
}

/// Why a job has no manifest.
fn missing(status: JobStatus) -> String {
    if !status.is_terminal() {
        return format!(
            "the job is {status}; its agent records signed provenance when the job ends"
        );
    }
    let why = match status {
        JobStatus::Lost => "the job was lost: its agent never came back to say what happened, so there is no signed provenance",
        JobStatus::Cancelled => "the job has no signed provenance: it was cancelled before an agent ran it, or its agent recorded none",
        _ => "the job has no signed provenance: no agent ran it, its agent refused it, or its agent recorded none",
    };
    why.to_string()
}

fn signature_headers(resp: &mut Response, p: &StoredProvenance) {
    let h = resp.headers_mut();
    for (name, value) in [(SIGNATURE_HEADER, &p.signature), (KEY_HEADER, &p.agent_key)] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
}

/// The job's signed RO-Crate manifest (`ro-crate-metadata.json`), byte for byte as the agent
/// signed it; the signature and the agent's key are in the `x-provenance-signature` and
/// `x-provenance-key` headers.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/provenance", tag = "provenance",
    params(("jobId" = String, Path)),
    responses((status = 200, description = "the manifest (JSON-LD), the exact bytes the agent signed", content_type = "application/ld+json",
            headers(("x-provenance-signature" = String, description = "base64 Ed25519 signature over the body's exact bytes"),
                ("x-provenance-key" = String, description = "the agent's public key, ed25519:<base64>"))),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such job, or it has no signed provenance (message says why)")),
    security(("bearer" = [])))]
pub async fn get_provenance(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
) -> ApiResult<Response> {
    let p = stored(&st, &caller, &id).await?;
    let mut resp = (StatusCode::OK, p.manifest.clone()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(LD_JSON));
    signature_headers(&mut resp, &p);
    Ok(resp)
}

/// The job's crate as a ZIP: `ro-crate-metadata.json` (the signed bytes),
/// `ro-crate-metadata.json.sig` (algorithm, key, signature) and every result file the
/// manifest names under `results/`. Streamed one file at a time.
#[utoipa::path(get, path = "/api/v1/job/{jobId}/provenance.zip", tag = "provenance",
    params(("jobId" = String, Path)),
    responses((status = 200, description = "the RO-Crate as a ZIP", content_type = "application/zip"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_provenance_zip(
    State(st): State<AppState>,
    caller: Caller,
    id: JobId,
) -> ApiResult<Response> {
    let p = stored(&st, &caller, &id).await?;
    let facts = ManifestFacts::parse(&p.manifest).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let names: Vec<String> = facts.results().map(|(n, _, _)| n.to_string()).collect();
    let mut zip = ZipStream::new();
    let sig = SignatureFile {
        algorithm: "ed25519".into(),
        public_key: p.agent_key.clone(),
        signature: p.signature.clone(),
    };
    let mut head = zip.file(MANIFEST_FILE, &p.manifest);
    head.extend(zip.file(
        SIGNATURE_FILE,
        &serde_json::to_vec_pretty(&sig).unwrap_or_default(),
    ));
    let first =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) });
    let state = (st, p.job_seq, names.into_iter(), Some(zip));
    let rest = futures_util::stream::unfold(state, |(st, seq, mut names, zip)| async move {
        let mut zip = zip?;
        let Some(name) = names.next() else {
            return Some((Ok(Bytes::from(zip.finish())), (st, seq, names, None)));
        };
        let chunk = match st.store.result_data(seq, &name).await {
            Ok(Some((_, data))) => Ok(Bytes::from(
                zip.file(&format!("{RESULTS_PREFIX}{name}"), &data),
            )),
            Ok(None) => Err(std::io::Error::other(format!("result file {name} is gone"))),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if let Err(e) = &chunk {
            tracing::warn!(job_seq = seq, error = %e, "cannot finish a provenance archive");
            return Some((chunk, (st, seq, names, None)));
        }
        Some((chunk, (st, seq, names, Some(zip))))
    });
    use futures_util::StreamExt;
    let mut resp = (StatusCode::OK, Body::from_stream(first.chain(rest))).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.crate.zip\"",
        id.as_str()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Which of the project's jobs made or used a file: jobs whose signed manifest names a file
/// with this SHA-256 (`sha256`: a result, a code bundle or another input), that ran a code
/// bundle (`codeSha256`), of a job type, site and end time; newest first, in pages.
#[utoipa::path(get, path = "/api/v1/provenance", tag = "provenance",
    params(
        ("sha256" = Option<String>, Query, description = "64 lower-case hex digits"),
        ("codeSha256" = Option<String>, Query, description = "a code bundle's SHA-256"),
        ("jobType" = Option<String>, Query), ("site" = Option<String>, Query),
        ("endedAfter" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("endedBefore" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = ProvenanceSearch), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search_provenance(
    State(st): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<ProvenanceSearch>> {
    caller.require(Role::GetJobStatus)?;
    let mut query = search_query(&q)?;
    narrow_to_token_site(&caller, &mut query.site)?;
    let (jobs, next) = st
        .store
        .search_provenance(caller.0.project_id, &query)
        .await?;
    Ok(Json(ProvenanceSearch {
        jobs,
        next_cursor: next.map(|s| encode_cursor('p', s)),
    }))
}

/// A SHA-256 as 64 lower-case hex digits (upper case is accepted and lowered).
fn sha256_param(field: &str, v: &str) -> ApiResult<String> {
    let v = v.trim().to_ascii_lowercase();
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(ApiError::bad_field(
            field,
            "must be a SHA-256: 64 hex digits",
        ))
    }
}

fn search_query(q: &Option<String>) -> ApiResult<ProvenanceQuery> {
    let mut f = ProvenanceQuery {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in pairs(q)? {
        match k.as_str() {
            "sha256" => f.sha256 = Some(sha256_param("sha256", &v)?),
            "codeSha256" => f.code_sha256 = Some(sha256_param("codeSha256", &v)?),
            "site" | "jobType" if !is_valid_name(&v, true) => {
                return Err(ApiError::bad_field(&k, "is not a valid name"))
            }
            "site" => f.site = Some(v),
            "jobType" => f.job_type = Some(v),
            "endedAfter" => f.ended_after = Some(parse_time("endedAfter", &v)?),
            "endedBefore" => f.ended_before = Some(parse_time("endedBefore", &v)?),
            "limit" => f.limit = parse_limit(&v)?,
            "cursor" => {
                f.before_seq = Some(decode_cursor('p', &v).ok_or_else(|| {
                    ApiError::bad_field("cursor", "is not a cursor this server handed out")
                })?)
            }
            other => return Err(ApiError::bad_field(other, "is not a known query parameter")),
        }
    }
    Ok(f)
}
