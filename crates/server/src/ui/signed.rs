//! Approving a code bundle with an SSH signature from the browser: the bundle page shows the
//! canonical approval message, offers it as a file with the exact bytes to sign
//! (`ssh-keygen -Y sign -n hpcsera-code -f KEY approval.txt`), and takes the pasted signature.
//!
//! The message is never read back from the form (a browser may change its line breaks): the
//! form carries the sites it names, and the message is rendered again here from the bundle,
//! the project and those sites, as the page showed it. The signature is checked and recorded by
//! `routes::approvals::record_signed_approval`, the API route's own path, so nothing is checked
//! twice or differently; the approval is the decision of the key's owner.

use super::access::{PageError, ProjectAccess};
use super::code::{code_form, message, BundleAt, CODE_ROLES};
use super::{UiError, UiForm, UiSession};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The signing routes of the code pages.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/projects/{project}/code/{id}/approval.txt",
            get(message_file),
        )
        .route(
            "/ui/projects/{project}/code/{id}/signed",
            post(approve_signed),
        )
}

fn sites_of(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(serde::Deserialize)]
pub(crate) struct SitesQuery {
    #[serde(default)]
    sites: String,
}

/// `GET /ui/projects/{project}/code/{id}/approval.txt?sites=a,b`: the message to sign, as a
/// file with exactly its bytes.
pub(crate) async fn message_file(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
    Query(q): Query<SitesQuery>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, CODE_ROLES).await?;
    state.store.get_bundle(access.project_id, &id).await?;
    let Some(m) = message(&id, &access.project, &sites_of(&q.sites)) else {
        return Err(UiError::NotFound.into());
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"approval.txt\"",
            ),
        ],
        m.render(),
    )
        .into_response())
}

/// `POST /ui/projects/{project}/code/{id}/signed`: records an approval signed with the
/// pasted `signature` over the message for `sites`, then shows the bundle.
pub(crate) async fn approve_signed(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, id)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, PageError> {
    let (access, code_id) = code_form(&state, &session, &form, &project, &id).await?;
    // A textarea sends CRLF line breaks; an armored signature has LF.
    let signature = form.get("signature").unwrap_or("").replace("\r\n", "\n");
    let sites = sites_of(form.get("sites").unwrap_or(""));
    let at = BundleAt::new(&state, &session, &access, &id);
    let refused = |status, problem: String| at.page(status, Some(problem), String::new());
    let Some(m) = message(&id, &access.project, &sites) else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The approval names no site of this project.".into(),
        )
        .await;
    };
    if signature.trim().is_empty() {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Signature: paste the whole contents of approval.txt.sig.".into(),
        )
        .await;
    }
    let recorded = crate::routes::approvals::record_signed_approval(
        &state,
        (access.project_id, &access.project),
        &code_id,
        m.render(),
        signature,
    )
    .await;
    match recorded {
        Ok(_) => {
            let to = format!("/ui/projects/{}/code/{id}", access.project);
            Ok(access.changed(&state, &session, "/ui/code/approve-signed", &to))
        }
        Err(ApiError::NotFound(_)) => Err(UiError::NotFound.into()),
        Err(ApiError::Internal(e)) => {
            Err(UiError::Internal(hpcsera_store::StoreError::Corrupt(e.to_string())).into())
        }
        Err(e) => {
            let status = match e {
                ApiError::Conflict(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            refused(status, format!("Nothing was approved: {e}.")).await
        }
    }
}
