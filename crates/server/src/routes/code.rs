//! Code bundles: upload (streamed to a file while hashed, refused as soon as it passes the
//! limit), download by the site's agent, status, the file listing, the agent's HPC-side
//! digest, listing.
//!
//! Approval is not here: no token role grants it. A member of the project decides out of
//! band (`hpcsera admin code approve|reject`, later the web UI) through
//! `Store::decide_bundle`. This module must never unpack a bundle, nor serve the bytes of one
//! that is rejected, nor of a pending one to anyone but an agent whose site awaits it.

use crate::error::{ApiError, ApiResult};
use crate::extract::{AgentCaller, ApiJson, Caller, CodeId};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hpcsera_api_types::{
    is_code_id, CodeBundle, CodeBundleList, CodeFileList, CodeStatus, ErrorBody, HpcDigest, Role,
};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Removes a temporary upload file unless it was moved into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates a directory (and its parents) 0700: the code directory is the server's own.
async fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .await
}

fn internal(context: &str, e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("{context}: {e}").into())
}

/// Upload a code bundle: the raw bytes of a tar.gz (`Content-Type: application/gzip` or
/// `application/octet-stream`). Its id is the SHA-256 of the bytes; the same bytes again give
/// the same bundle (200). A new bundle is `pending_approval` until a member of the project
/// approves it out of band, after the site's agent has reported the digest it computed.
#[utoipa::path(post, path = "/api/v1/code", tag = "code",
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses(
        (status = 201, body = CodeBundle, description = "a new bundle"),
        (status = 200, body = CodeBundle, description = "the project has these bytes already"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_code(
    State(st): State<AppState>,
    caller: Caller,
    req: Request,
) -> ApiResult<Response> {
    caller.require(Role::PostCode)?;
    check_content_type(&req)?;
    let upload = receive(&st, req).await?;
    let project_id = caller.0.project_id;
    if let Ok(b) = st.store.get_bundle(project_id, &upload.id).await {
        if b.status == CodeStatus::Rejected {
            // Rejected bytes are not kept (retention), and re-uploading does not revive them.
            return Ok((StatusCode::OK, Json(b)).into_response());
        }
    }
    let path = crate::config::code_file_path(&st.config.code_dir, &upload.id);
    if let Some(parent) = path.parent() {
        private_dir(parent)
            .await
            .map_err(|e| internal("cannot create the code directory", e))?;
    }
    let (bundle, created) = st
        .store
        .create_bundle(project_id, &upload.id, upload.size as i64, caller.0.user_id)
        .await?;
    // The file goes in place only after the row committed: a rejection or prune in another
    // project deletes the same bytes only while no row keeps them (under the same lock), so a
    // file found or put here now stays. Replacing an existing file with the same bytes is
    // harmless (readers keep their open file).
    let id = upload.id.clone();
    upload.place(&path).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(bundle)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/code/{id}", hpcsera_api_types::API_BASE)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// 415 unless the body is sent as a tar.gz or as plain bytes.
fn check_content_type(req: &Request) -> ApiResult<()> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if matches!(
        ct.as_deref(),
        Some("application/gzip" | "application/x-gzip" | "application/octet-stream")
    ) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "a code bundle is a tar.gz sent with Content-Type: application/gzip or application/octet-stream".into(),
        ))
    }
}

/// An upload received into a temporary file: its id (the SHA-256) and size.
struct Upload {
    id: String,
    size: u64,
    tmp: TempFile,
}

impl Upload {
    /// Moves the file to `path`; the temporary file is then no longer removed.
    async fn place(mut self, path: &std::path::Path) -> ApiResult<()> {
        let Some(tmp) = self.tmp.0.take() else {
            return Err(ApiError::Internal("the upload was placed already".into()));
        };
        if let Err(e) = tokio::fs::rename(&tmp, path).await {
            self.tmp.0 = Some(tmp);
            return Err(internal("cannot store the code bundle", e));
        }
        Ok(())
    }
}

/// Streams the body into a temporary file while hashing it, refused (413) as soon as it
/// passes the limit; 422 unless it starts as gzip data.
async fn receive(st: &AppState, req: Request) -> ApiResult<Upload> {
    let max = st.config.limits.max_code_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the code bundle is larger than this server accepts ({max} bytes)"
        ))
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max {
            return Err(too_large());
        }
    }
    let tmp_dir = st.config.code_dir.join("tmp");
    private_dir(&tmp_dir)
        .await
        .map_err(|e| internal("cannot create the code directory", e))?;
    let tmp_path = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
    let tmp = TempFile(Some(tmp_path.clone()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .await
        .map_err(|e| internal("cannot create a temporary file", e))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(2);
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_field("body", e.to_string()))?;
        size += chunk.len() as u64;
        if size > max {
            // Refused while it streams in: never more than one chunk past the limit is read.
            return Err(too_large());
        }
        if head.len() < 2 {
            let want = 2 - head.len();
            head.extend(chunk.iter().take(want));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| internal("cannot write the upload", e))?;
    }
    if head != [0x1f, 0x8b] {
        return Err(ApiError::invalid_field(
            "body",
            "is not gzip data (a code bundle is a tar.gz)",
        ));
    }
    file.sync_all()
        .await
        .map_err(|e| internal("cannot write the upload", e))?;
    Ok(Upload {
        id: hex::encode(hasher.finalize()),
        size,
        tmp,
    })
}

/// The project's code bundles, newest first.
#[utoipa::path(get, path = "/api/v1/code", tag = "code",
    responses((status = 200, body = CodeBundleList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_code(
    State(st): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CodeBundleList>> {
    caller.require_any(&[Role::PostCode, Role::GetJobStatus, Role::GetCode])?;
    Ok(Json(CodeBundleList {
        bundles: st.store.list_bundles(caller.0.project_id).await?,
    }))
}

/// A bundle's status: client-side digest (the id) and HPC-side digest side by side, size, and
/// who decided.
#[utoipa::path(get, path = "/api/v1/code/{codeId}/status", tag = "code",
    params(("codeId" = String, Path, description = "SHA-256 of the bundle")),
    responses((status = 200, body = CodeBundle), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn code_status(
    State(st): State<AppState>,
    caller: Caller,
    id: CodeId,
) -> ApiResult<Json<CodeBundle>> {
    caller.require_any(&[Role::PostCode, Role::GetJobStatus, Role::GetCode])?;
    Ok(Json(st.store.get_bundle(caller.0.project_id, &id).await?))
}

/// A bundle's files as its archive lists them — names, kinds, sizes, modes, link targets —
/// read from the stored tar.gz without unpacking it: what a person reviews before approving.
/// At most 1000 entries and 256 MiB of content are read (`truncated` says when the listing
/// stopped early); a broken archive lists the entries before the problem and names it.
/// The bytes of a rejected bundle are not kept: 404, as for the download.
#[utoipa::path(get, path = "/api/v1/code/{codeId}/files", tag = "code",
    params(("codeId" = String, Path, description = "SHA-256 of the bundle")),
    responses((status = 200, body = CodeFileList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn code_files(
    State(st): State<AppState>,
    caller: Caller,
    id: CodeId,
) -> ApiResult<Json<CodeFileList>> {
    caller.require_any(&[Role::PostCode, Role::GetJobStatus, Role::GetCode])?;
    st.store.get_bundle(caller.0.project_id, &id).await?;
    let path = crate::config::code_file_path(&st.config.code_dir, &id);
    match crate::bundles::list_bundle_files(&path).await {
        Ok(list) => Ok(Json(list)),
        Err(e @ crate::bundles::ListError::Gone) => Err(ApiError::NotFound(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}

/// Download a bundle (the site's agent, `GET_Code`). An approved bundle is served for use; a
/// pending one only while a waiting job of the agent's site references it, so that the agent
/// can compute its digest (it keeps the bytes in quarantine and never unpacks them). Otherwise
/// 409.
#[utoipa::path(get, path = "/api/v1/code/{codeId}", tag = "code",
    params(("codeId" = String, Path, description = "SHA-256 of the bundle")),
    responses((status = 200, description = "the tar.gz", content_type = "application/gzip"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_code(
    State(st): State<AppState>,
    agent: AgentCaller,
    id: CodeId,
) -> ApiResult<Response> {
    agent.require(Role::GetCode)?;
    let site = agent.site();
    let project_id = agent.token().project_id;
    let bundle = st.store.get_bundle(project_id, &id).await?;
    match bundle.status {
        CodeStatus::Approved => {}
        CodeStatus::PendingApproval => {
            if !st
                .store
                .bundle_awaited_at_site(project_id, &id, site)
                .await?
            {
                return Err(ApiError::Conflict(
                    "the code bundle is not approved, and no waiting job of this site references it".into(),
                ));
            }
        }
        CodeStatus::Rejected => {
            return Err(ApiError::Conflict("the code bundle was rejected".into()))
        }
    }
    let path = crate::config::code_file_path(&st.config.code_dir, &id);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(
                "the bytes of this code bundle are no longer kept".into(),
            ))
        }
        Err(e) => return Err(internal("cannot open the code bundle", e)),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| internal("cannot read the code bundle", e))?
        .len();
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/gzip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}

/// The site's agent reports the SHA-256 it computed of a pending bundle (`GET_Code`). The
/// approval view shows it beside the upload's digest; approval requires them to be equal.
#[utoipa::path(post, path = "/api/v1/code/{codeId}/hpcDigest", tag = "code",
    params(("codeId" = String, Path, description = "SHA-256 of the bundle")),
    request_body = HpcDigest,
    responses((status = 200, body = CodeBundle), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_hpc_digest(
    State(st): State<AppState>,
    agent: AgentCaller,
    id: CodeId,
    ApiJson(body): ApiJson<HpcDigest>,
) -> ApiResult<Json<CodeBundle>> {
    agent.require(Role::GetCode)?;
    let site = agent.site();
    let project_id = agent.token().project_id;
    if !is_code_id(&body.sha256) {
        return Err(ApiError::invalid_field(
            "sha256",
            "must be a SHA-256 as 64 lower-case hex digits",
        ));
    }
    st.store.get_bundle(project_id, &id).await?;
    if !st
        .store
        .bundle_awaited_at_site(project_id, &id, site)
        .await?
    {
        return Err(ApiError::Conflict(
            "no waiting job of this site references this code bundle".into(),
        ));
    }
    let bundle = st
        .store
        .report_hpc_digest(project_id, &id, &body.sha256, &agent.actor())
        .await?;
    Ok(Json(bundle))
}
