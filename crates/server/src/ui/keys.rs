//! The SSH keys page: a person registers the public keys they sign code approvals with, sees
//! them, and removes one (like SSH keys on a code forge).
//!
//! Keys are parsed with `hpcsera_approval::parse_public_key` (certificates and private keys are
//! refused, with a message) and stored through the same store calls as
//! `hpcsera admin user key …`. Only people add keys: there is no token route for it, so a
//! stolen token cannot add a key and then approve code with it.

use super::{render, show_time, Nav, UiError, UiForm, UiSession};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use hpcsera_store::{NewUserKey, StoreError};

/// Longest key name, in characters.
const MAX_KEY_NAME_CHARS: usize = 100;

pub(crate) struct KeyRow {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub algorithm: String,
    pub created_at: String,
}

#[derive(Template)]
#[template(path = "ui/keys.html")]
struct KeysPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    draft_name: String,
    draft_key: String,
    problems: Vec<String>,
}

async fn page(
    state: &AppState,
    session: &UiSession,
    status: StatusCode,
    draft: (String, String),
    problems: Vec<String>,
) -> Result<Response, UiError> {
    let keys = state
        .store
        .list_user_keys(session.rec.user_id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            created_at: hpcsera_store::parse_rfc3339_ms(&k.created_at)
                .map_or(k.created_at.clone(), show_time),
            id: k.id,
            name: k.name,
            fingerprint: k.fingerprint,
            algorithm: k.algorithm,
        })
        .collect();
    Ok(render(
        status,
        &KeysPage {
            nav: Nav::new(session, "keys"),
            keys,
            draft_name: draft.0,
            draft_key: draft.1,
            problems,
        },
    ))
}

/// `GET /ui/keys`.
pub(crate) async fn keys_page(
    State(state): State<AppState>,
    session: UiSession,
) -> Result<Response, UiError> {
    page(
        &state,
        &session,
        StatusCode::OK,
        Default::default(),
        Vec::new(),
    )
    .await
}

/// `POST /ui/keys`: registers a public key for the logged-in person.
pub(crate) async fn add(
    State(state): State<AppState>,
    session: UiSession,
    form: UiForm,
) -> Result<Response, UiError> {
    session.check_csrf(&form)?;
    let name = form.get("name").unwrap_or("").trim().to_string();
    let text = form.get("key").unwrap_or("").trim().to_string();
    let draft = (name.clone(), text.clone());
    let mut problems = Vec::new();
    if name.chars().count() > MAX_KEY_NAME_CHARS || name.chars().any(char::is_control) {
        problems.push(format!(
            "Name: at most {MAX_KEY_NAME_CHARS} characters, on one line."
        ));
    }
    let key = match hpcsera_approval::parse_public_key(&text) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(format!("Public key: {e}."));
            None
        }
    };
    let Some(key) = key.filter(|_| problems.is_empty()) else {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return page(&state, &session, status, draft, problems).await;
    };
    let name = if !name.is_empty() {
        name
    } else if !key.comment.trim().is_empty() {
        key.comment
            .trim()
            .chars()
            .take(MAX_KEY_NAME_CHARS)
            .collect()
    } else {
        key.algorithm.clone()
    };
    let added = state
        .store
        .add_user_key(&NewUserKey {
            user_id: session.rec.user_id,
            name: &name,
            public_key: &key.openssh,
            fingerprint: &key.fingerprint,
            algorithm: &key.algorithm,
        })
        .await;
    match added {
        Ok(_) => {}
        Err(StoreError::Conflict(m)) => {
            let problems = vec![format!("Public key: {m}.")];
            return page(&state, &session, StatusCode::CONFLICT, draft, problems).await;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(session.changed(&state, None, "/ui/keys", "/ui/keys"))
}

/// `POST /ui/keys/{id}/delete`: removes one of the person's keys.
pub(crate) async fn remove(
    State(state): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    session.check_csrf(&form)?;
    match state.store.remove_user_key(session.rec.user_id, &id).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Err(UiError::NotFound),
        Err(e) => return Err(e.into()),
    }
    Ok(session.changed(&state, None, "/ui/keys/delete", "/ui/keys"))
}
