//! Signed code approvals, and the SSH keys of the token's user (read only).
//!
//! Approval is still not a token capability: the signature identifies the person. Any valid
//! token of the project may carry a signed approval here; the server verifies the `SSHSIG`
//! (namespace `hpcsera-code`) over the canonical message, finds the user who registered the
//! signing key, and records the approval as that user's decision through
//! `Store::approve_bundle_signed` (the path of every decision: member of the project, pending,
//! HPC digest equal to the id). Keys are registered by people (web UI, admin CLI), never with
//! a token: a stolen token must not be able to add a key and then approve with it.

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller, CodeId};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use hpcsera_api_types::{CodeBundle, ErrorBody, SignedApproval, UserKeyList};
use hpcsera_approval::ApprovalMessage;
use hpcsera_store::StoreError;

/// Approve a code bundle with a signature: `message` is the canonical approval message
/// (digest, project, sites, optional expiry; README, "Signed approvals") and `signature` an
/// OpenSSH `SSHSIG` over it in the namespace `hpcsera-code` by a key its owner registered. Any
/// valid token of the project may send it: the approval is recorded as the decision of the
/// key's owner, who must be a member of the project. Waiting jobs are queued at once.
#[utoipa::path(post, path = "/api/v1/code/{codeId}/approval", tag = "code",
    params(("codeId" = String, Path, description = "SHA-256 of the bundle")),
    request_body = SignedApproval,
    responses((status = 200, body = CodeBundle, description = "approved"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not pending, or the HPC-side digest is missing or differs"),
        (status = 422, body = ErrorBody, description = "the message or the signature is not acceptable")),
    security(("bearer" = [])))]
pub async fn post_approval(
    State(st): State<AppState>,
    caller: Caller,
    id: CodeId,
    ApiJson(body): ApiJson<SignedApproval>,
) -> ApiResult<Json<CodeBundle>> {
    let token = &caller.0;
    let bundle = record_signed_approval(
        &st,
        (token.project_id, &token.project),
        &id,
        body.message,
        body.signature,
    )
    .await?;
    Ok(Json(bundle))
}

/// Checks a signed approval of bundle `id` in `project` (id, name) and records it as the
/// decision of the key's owner; wakes waiting agents. What `POST /code/{id}/approval` does,
/// and what a web UI form with a pasted signature is to call. Errors name `message` or
/// `signature`.
pub(crate) async fn record_signed_approval(
    st: &AppState,
    (project_id, project): (i64, &str),
    id: &CodeId,
    message: String,
    signature: String,
) -> ApiResult<CodeBundle> {
    st.store.get_bundle(project_id, id.as_str()).await?;
    let parsed = ApprovalMessage::parse(&message)
        .map_err(|e| ApiError::invalid_field("message", e.to_string()))?;
    check_message(st, project_id, project, id, &parsed).await?;
    let verified = hpcsera_approval::verify(message.as_bytes(), &signature)
        .map_err(|e| ApiError::invalid_field("signature", e.to_string()))?;
    let owner = st
        .store
        .key_owner(&verified.fingerprint)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_field(
                "signature",
                format!(
                    "the signing key {} is not registered by anyone here; register its public key first (web UI, SSH keys)",
                    verified.fingerprint
                ),
            )
        })?;
    let signed = SignedApproval {
        message,
        signature,
        key_fingerprint: Some(verified.fingerprint),
    };
    let decision = st
        .store
        .approve_bundle_signed(project, id.as_str(), &owner.user, &signed)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(_) => ApiError::invalid_field(
                "signature",
                format!(
                    "the key's owner {:?} is not a member of project {project:?}",
                    owner.user
                ),
            ),
            other => other.into(),
        })?;
    if !decision.jobs_changed.is_empty() {
        st.events_written();
        st.wake_agents();
    }
    Ok(decision.bundle)
}

/// The message must approve this bundle, in the token's project, on sites the project has,
/// and not be expired already.
async fn check_message(
    st: &AppState,
    project_id: i64,
    project: &str,
    id: &CodeId,
    m: &ApprovalMessage,
) -> ApiResult<()> {
    if m.digest != id.as_str() {
        return Err(ApiError::invalid_field(
            "message",
            format!("it approves the digest {}, not this bundle {id}", m.digest),
        ));
    }
    if m.project != project {
        return Err(ApiError::invalid_field(
            "message",
            format!(
                "it approves project {:?}, but the token is of project {project:?}",
                m.project
            ),
        ));
    }
    let sites = st.store.list_sites(project_id).await?;
    if let Some(unknown) = m
        .sites
        .iter()
        .find(|s| !sites.iter().any(|k| &k.name == *s))
    {
        return Err(ApiError::invalid_field(
            "message",
            format!("it names the site {unknown:?}, which this project does not have"),
        ));
    }
    let now = hpcsera_store::now_ms() / 1000;
    if m.expires.is_some_and(|e| e <= now) {
        return Err(ApiError::invalid_field("message", "it has expired already"));
    }
    Ok(())
}

/// The SSH keys the token's user registered (registering and removing is for people: web UI
/// or admin CLI). Any valid token may read them; `hpcsera code approve --ssh-agent` uses them
/// to choose among the agent's keys.
#[utoipa::path(get, path = "/api/v1/keys", tag = "tokens",
    responses((status = 200, body = UserKeyList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<UserKeyList>> {
    Ok(Json(UserKeyList {
        keys: st.store.list_user_keys(caller.0.user_id).await?,
    }))
}
